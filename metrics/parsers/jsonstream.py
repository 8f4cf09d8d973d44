"""Incremental JSON: the elements of a large top-level array (or of named arrays inside a
top-level object) one at a time, in constant memory, with the line each element starts on.

Each element is decoded by the standard library's C decoder (`JSONDecoder.raw_decode`) from a
sliding buffer; only the element being decoded is ever held whole. That keeps the speed of
`json.loads` (ijson's pure-Python backend is several times slower, and its C backend needs
yajl) and needs no dependency. An element larger than `max_element_chars` is refused rather
than buffered without end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TextIO

CHUNK = 1 << 16
WHITESPACE = " \t\n\r"
_decoder = json.JSONDecoder()


class JSONStreamError(ValueError):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


class _Buffer:
    """A window over a text stream that counts the lines it has moved past."""

    def __init__(self, stream: TextIO, prefix: str = "", max_element_chars: int = 8 << 20):
        self.stream = stream
        self.text = prefix
        self.pos = 0
        self.line = 1
        self.eof = False
        self.max = max_element_chars

    def fill(self, size: int = CHUNK) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(size)
        if not chunk:
            self.eof = True
            return False
        # Drop what was consumed, so the buffer holds at most one element plus a chunk.
        if self.pos:
            self.text = self.text[self.pos :]
            self.pos = 0
        self.text += chunk
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def skip_ws(self) -> str:
        """The next non-whitespace character (not consumed), or '' at the end."""
        while True:
            text, pos = self.text, self.pos
            n = len(text)
            while pos < n and text[pos] in WHITESPACE:
                pos += 1
            self.advance(pos)
            if pos < n:
                return text[pos]
            if not self.fill():
                return ""

    def expect(self, char: str) -> None:
        if self.skip_ws() != char:
            found = self.skip_ws() or "the end of the file"
            raise JSONStreamError(f"broken JSON: expected “{char}”, found “{found}”", self.line)
        self.advance(self.pos + 1)

    def value(self):
        """Decode one JSON value at the current position."""
        self.skip_ws()
        while True:
            try:
                obj, end = _decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.text) - self.pos > self.max:
                    raise JSONStreamError(
                        "a JSON element is larger than the limit", self.line
                    ) from None
                # Grow geometrically: re-decoding a large element per small chunk is quadratic.
                if self.fill(max(CHUNK, len(self.text) - self.pos)):
                    continue
                raise JSONStreamError(
                    f"broken JSON: {exc.msg}", self.line + self.text.count("\n", self.pos, exc.pos)
                ) from None
            # A number (or literal) that ends exactly at the buffer's end may continue in the
            # next chunk: read more and decode again.
            if end == len(self.text) and not self.eof and self.fill():
                continue
            start_line = self.line
            self.advance(end)
            return start_line, obj


def iter_array(buffer: _Buffer) -> Iterator[tuple[int, object]]:
    """The elements of the array starting at the buffer's position: (line, element)."""
    buffer.expect("[")
    if buffer.skip_ws() == "]":
        buffer.advance(buffer.pos + 1)
        return
    while True:
        yield buffer.value()
        nxt = buffer.skip_ws()
        if nxt == ",":
            buffer.advance(buffer.pos + 1)
        elif nxt == "]":
            buffer.advance(buffer.pos + 1)
            return
        else:
            raise JSONStreamError(
                f"broken JSON: expected “,” or “]”, found “{nxt or 'the end of the file'}”",
                buffer.line,
            )


def iter_document(
    stream: TextIO, *, prefix: str = "", stream_keys: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str | None, int, object]]:
    """Walk one JSON document.

    A top-level array yields ("item", None, line, element) per element. A top-level object
    yields ("item", key, line, element) for each element of an array under one of
    `stream_keys` (an empty one as a member), and ("member", key, line, value) for every other
    member. Anything else
    yields one ("value", None, line, value)."""
    buffer = _Buffer(stream, prefix)
    first = buffer.skip_ws()
    if first == "[":
        for line, element in iter_array(buffer):
            yield "item", None, line, element
    elif first == "{":
        buffer.advance(buffer.pos + 1)
        if buffer.skip_ws() == "}":
            buffer.advance(buffer.pos + 1)
        else:
            while True:
                _line, key = buffer.value()
                if not isinstance(key, str):
                    raise JSONStreamError("broken JSON: object key is not a string", buffer.line)
                buffer.expect(":")
                if key in stream_keys and buffer.skip_ws() == "[":
                    start, empty = buffer.line, True
                    for line, element in iter_array(buffer):
                        empty = False
                        yield "item", key, line, element
                    if empty:  # still says what the document is (`{"data": []}`)
                        yield "member", key, start, []
                else:
                    line, value = buffer.value()
                    yield "member", key, line, value
                nxt = buffer.skip_ws()
                if nxt == ",":
                    buffer.advance(buffer.pos + 1)
                    continue
                if nxt == "}":
                    buffer.advance(buffer.pos + 1)
                    break
                raise JSONStreamError(
                    f"broken JSON: expected “,” or “}}”, found “{nxt or 'the end of the file'}”",
                    buffer.line,
                )
    else:
        line, value = buffer.value()
        yield "value", None, line, value
    if buffer.skip_ws():
        raise JSONStreamError("broken JSON: more text after the end of the document", buffer.line)
