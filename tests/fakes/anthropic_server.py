"""A fake Anthropic Messages API on 127.0.0.1, so the real `anthropic` SDK runs in tests.

The SDK is built on its own HTTP stack (httpx mocks do not intercept it); this speaks the
wire format instead. It records every request and answers from a script:

    with FakeAnthropic() as fake:
        fake.script(text("Hello"), error(529), tool_use("end_conversation", {"reason": "…"}))
        client = anthropic.Anthropic(api_key="test", base_url=fake.url)

When the script runs out it answers with `default` (a plain text reply).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    status: int = 200
    body: dict | None = None
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


def usage(input_tokens=25, output_tokens=12, cache_read=0, cache_creation=0) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
    }


def message(content: list[dict], *, stop_reason="end_turn", model="claude-test", **tokens):
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage(**tokens),
    }


def text(value: str, *, delay: float = 0.0, **tokens) -> Reply:
    return Reply(body=message([{"type": "text", "text": value}], **tokens), delay=delay)


def tool_use(name: str, tool_input: dict, *, preface: str = "", **tokens) -> Reply:
    content = [{"type": "text", "text": preface}] if preface else []
    content.append(
        {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:20]}",
            "name": name,
            "input": tool_input,
        }
    )
    return Reply(body=message(content, stop_reason="tool_use", **tokens))


def error(status: int, message_text: str = "fake failure", *, retry_after: float | None = None):
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message_text},
    }
    return Reply(status=status, body=body, headers=headers)


@dataclass
class Recorded:
    path: str
    headers: dict
    body: dict


class FakeAnthropic:
    def __init__(self, default: Reply | None = None):
        self.default = default or text("Thank you. Could you tell me more about that?")
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                with fake._lock:
                    fake.requests.append(
                        Recorded(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(raw or b"{}"),
                        )
                    )
                    reply = fake._script.popleft() if fake._script else fake.default
                if reply.delay:
                    time.sleep(reply.delay)
                payload = json.dumps(reply.body or {}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1/messages")]

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
