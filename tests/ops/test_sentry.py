"""Optional Sentry (SENTRY_DSN): the real SDK, sending to a fake ingest server on loopback,
gets errors without request bodies, cookies or participant tokens."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tap.logging import sentry_before_send

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8"


def test_before_send_strips_bodies_cookies_and_tokens():
    event = {
        "request": {
            "url": f"http://tap.example/c/{TOKEN}/",
            "data": {"body": "My manager ignores me."},
            "cookies": {"sessionid": "s"},
            "headers": {"Cookie": "sessionid=s"},
            "query_string": "since=1",
        },
        "transaction": f"/c/{TOKEN}/",
        "breadcrumbs": {"values": [{"message": f"GET /c/{TOKEN}/", "data": {}}]},
    }
    cleaned = sentry_before_send(event, {})
    assert set(cleaned["request"]) == {"url"}
    text = repr(cleaned)
    assert TOKEN not in text
    assert "My manager" not in text
    assert "[redacted]" in cleaned["request"]["url"]


def test_the_real_sdk_reports_to_the_dsn_without_the_token():
    received: list[bytes] = []

    class Ingest(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        script = (
            "import django, sentry_sdk; django.setup(); "
            f"sentry_sdk.capture_message('link failed: /c/{TOKEN}/'); sentry_sdk.flush(5)"
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tap.settings",
            "SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/1",
        }
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    finally:
        server.shutdown()
    payload = b"".join(received)
    assert b"link failed" in payload  # it arrived …
    assert TOKEN.encode() not in payload  # … without the token
    assert b"[redacted]" in payload
