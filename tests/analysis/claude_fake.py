"""A scripted-by-rule Claude for the analysis engine: answers every extraction and synthesis
request of tests/fakes/anthropic_server.FakeAnthropic from what the request contains, so any
number of conversations and any map-reduce stage gets a valid answer. It also plays the
prompt cache: a request whose cached prefix (tools + system) was seen before reports it as
cache-read tokens, the first one as cache-creation tokens."""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque

from tests.fakes.anthropic_server import tool_use

RULES = [
    ("review", "Slow code review"),
    ("doc", "Helpful documentation"),
    ("onboarding", "Helpful documentation"),
    ("flaky", "Flaky CI tests"),
    ("pipeline", "Flaky CI tests"),
]
LINE = re.compile(r"^\[(m\d+)\] Participant: (.*)$", re.MULTILINE)
LABEL = re.compile(r"^- (.+) \((\d+)\)$", re.MULTILINE)
QUOTE = re.compile(r"^(Q\d+) \(", re.MULTILINE)


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


class Responder(deque):
    """Plug into FakeAnthropic: `fake._script = Responder(fake)`; replies given as `first`
    are sent before the rule-based ones."""

    def __init__(self, fake, first=()):
        super().__init__(first)
        self.fake = fake
        self.prefixes: set[str] = set()
        self.cache_hits = 0

    def __bool__(self):
        return True

    def popleft(self):
        if len(self):
            return super().popleft()
        body = self.fake.requests[-1].body
        tool = body.get("tool_choice", {}).get("name")
        prefix = json.dumps([body.get("tools"), body.get("system")], sort_keys=True)
        key = hashlib.sha256(prefix.encode()).hexdigest()
        content = body["messages"][0]["content"]
        usage = {"input_tokens": _tokens(content), "output_tokens": 60}
        if key in self.prefixes:
            usage["cache_read"] = _tokens(prefix)
            self.cache_hits += 1
        else:
            usage["cache_creation"] = _tokens(prefix)
            self.prefixes.add(key)
        if tool == "record_conversation_analysis":
            return tool_use(tool, extraction(content), **usage)
        return tool_use(tool, synthesis(content), **usage)


def extraction(content: str) -> dict:
    answers = LINE.findall(content)
    text = " ".join(t for _r, t in answers).lower()
    themes = sorted({label for word, label in RULES if word in text}) or ["Other feedback"]
    negative = any(w in text for w in ("slow", "flaky", "terrible", "awful", "hate", "broken"))
    ref, first = answers[0]
    return {
        "themes": themes,
        "sentiment_score": -0.6 if negative else 0.7,
        "sentiment_label": "negative" if negative else "positive",
        "quotes": [{"message_ref": ref, "text": first.split(".")[0]}],
    }


def synthesis(content: str) -> dict:
    labels = [label for label, _n in LABEL.findall(content.split("</input>")[0])]
    refs = QUOTE.findall(content)
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(label.split()[0].capitalize() + " theme", []).append(label)
    return {
        "themes": [{"label": k, "description": "", "merges": v} for k, v in groups.items()],
        "findings": [
            {"title": f"Finding {i}", "detail": "Backed by a quote.", "quote_refs": [ref]}
            for i, ref in enumerate(refs[:3], 1)
        ],
        "executive_summary": "Participants described their experience. " * 5,
    }
