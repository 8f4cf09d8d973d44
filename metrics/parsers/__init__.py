"""Read a metrics file of any supported format, detected from its content (never its name),
as a stream of records in constant memory.

    with open_metrics_file(path) as parsed:
        parsed.format            # "copilot_users", "claude_code", …
        for item in parsed.items:  # MetricRow | TeamRow | SeatRow | Rejected
            …

gzip is recognised by its magic bytes; text is UTF-8 with or without a BOM, LF or CRLF.
NDJSON and CSV are read line by line, JSON arrays element by element (parsers.jsonstream).
Whole-file problems (unknown or legacy format, not UTF-8, over the size limits) raise
`Refused`; a bad record becomes a `Rejected` with its line number and the rest carries on.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.template.defaultfilters import filesizeformat

from metrics.parsers import claude_code, copilot, tap_csv
from metrics.parsers.jsonstream import JSONStreamError, iter_document
from metrics.parsers.records import (
    Invalid,
    MetricRow,
    Refused,
    Rejected,
    SeatRow,
    SeatTotal,
    TeamRow,
)

__all__ = [
    "FORMAT_LABELS",
    "MetricRow",
    "Parsed",
    "Refused",
    "Rejected",
    "SeatRow",
    "SeatTotal",
    "TeamRow",
    "open_metrics_file",
]

FORMAT_LABELS = {
    "copilot_users": "GitHub Copilot per-user usage report",
    "copilot_user_teams": "GitHub Copilot user-teams report",
    "copilot_seats": "GitHub Copilot seats",
    "copilot_seats_csv": "GitHub Copilot activity report (seats CSV)",
    "claude_code": "Claude Code analytics",
    "tap_csv": "Tap daily metrics CSV",
    "identity_map": "Identity map CSV",
}
UNKNOWN_MESSAGE = (
    "Tap does not recognise this file. It reads: the GitHub Copilot per-user usage report "
    "(NDJSON or a JSON array), Copilot user-teams and seats exports, Claude Code analytics "
    "(a usage-report page, pages, records or NDJSON), Tap's daily metrics CSV "
    "(date,tool,github_login,email,suggestions,acceptances,completions,sessions) and the "
    "identity map CSV (github_login,email,name,team)."
)
MAX_LINE_CHARS = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Parsed:
    format: str
    items: Iterator
    position: callable = field(repr=False, default=lambda: 0)

    @property
    def label(self) -> str:
        return FORMAT_LABELS.get(self.format, self.format)


def _too_large(limit: int) -> str:
    return (
        f"The file is larger than {filesizeformat(limit)} once decompressed. "
        "Split it into several files and upload them together."
    )


class _Limited(io.RawIOBase):
    """Counts decompressed bytes and refuses past the limit (a gzip bomb stops here)."""

    def __init__(self, inner, limit: int):
        self.inner, self.limit, self.seen = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(len(buffer))
        self.seen += len(data)
        if self.seen > self.limit:
            raise Refused(_too_large(self.limit))
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def open_metrics_file(path: str | Path, *, max_decompressed_bytes: int = 4 << 30):
    raw = open(path, "rb")  # noqa: SIM115 - closed in finally
    try:
        magic = raw.read(2)
        raw.seek(0)
        if magic == GZIP_MAGIC:
            inner = gzip.GzipFile(fileobj=raw, mode="rb")
            binary = io.BufferedReader(_Limited(inner, max_decompressed_bytes), 1 << 16)
        else:
            # Its size is known: checked once, read with no counting layer in between.
            if os.fstat(raw.fileno()).st_size > max_decompressed_bytes:
                raise Refused(_too_large(max_decompressed_bytes))
            binary = raw
        # Universal newlines (CRLF read as LF): finding line ends takes readline less than half
        # the time it takes with newline="" (which keeps them as they are). JSON has no raw line
        # breaks inside values; in a CSV a quoted field's CRLF is read as LF.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline=None)
        yield _detect(text, position=raw.tell)
    except (gzip.BadGzipFile, EOFError) as exc:
        raise Refused(
            f"The file looks gzip-compressed but cannot be decompressed ({exc})."
        ) from None
    finally:
        raw.close()


NOT_UTF8 = "The file is not UTF-8 text. Export it again as UTF-8."


def _decoding(iterator: Iterator) -> Iterator:
    """Turn an encoding error anywhere in the stream into a whole-file refusal."""
    try:
        yield from iterator
    except UnicodeDecodeError:
        raise Refused(NOT_UTF8) from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise Refused(f"The file is damaged or truncated ({exc}).") from None


def _detect(text: io.TextIOWrapper, *, position) -> Parsed:
    """The file's format and its items. A byte that is not UTF-8 refuses the file, whether
    it comes while looking (a broken first line reads ahead) or later (`_decoding`)."""
    try:
        return _detect_format(text, position)
    except UnicodeDecodeError:
        raise Refused(NOT_UTF8) from None


def _detect_format(text: io.TextIOWrapper, position) -> Parsed:
    first, skipped = text.readline(MAX_LINE_CHARS), 0
    while first.endswith("\n") and not first.strip():
        first, skipped = text.readline(MAX_LINE_CHARS), skipped + 1
    if not first.strip():
        raise Refused("The file is empty.")
    stripped = first.lstrip()
    if len(first) >= MAX_LINE_CHARS and not first.endswith("\n"):
        # Longer than an NDJSON line may be: a JSON document on one line (an API answer saved
        # as it came, `jq -c`), read as a stream from where this piece of it ends.
        if stripped.startswith(("{", "[")):
            return _json_document(first, text, position)
        raise Refused(
            f"The first line is longer than {MAX_LINE_CHARS >> 20} MB and is not JSON. "
            + UNKNOWN_MESSAGE
        )
    if stripped.startswith("{"):
        record = _object_or_error(first)
        if isinstance(record, dict):
            # One object per line (NDJSON) — or a one-line JSON document.
            fmt = _json_format(record)
            return Parsed(fmt, _decoding(_ndjson(fmt, first, text, skipped)), position)
        if not _broken_within(first):
            # `{` or `{"seats": [`: the start of a document written over several lines.
            return _json_document(first, text, position)
        return _broken_first_lines(first, record, text, skipped, position)
    if stripped.startswith("["):
        return _json_document(first, text, position)
    return _csv(first, text, position, skipped)


# --- JSON ------------------------------------------------------------------------------------

LOOKAHEAD_LINES = 20


def _object_or_error(line: str) -> dict | str:
    try:
        value = json.loads(line)
    except ValueError as exc:
        return f"invalid JSON ({exc.msg})"
    return value if isinstance(value, dict) else "not a JSON object"


def _broken_within(line: str) -> bool:
    """Is the line wrong before its end (garbled, or a string cut off), rather than merely
    unfinished like the first line of a document written over several lines?"""
    text = line.rstrip()
    try:
        json.loads(text)
    except ValueError as exc:
        return exc.pos < len(text)
    return True


def _broken_first_lines(first: str, problem: str, text, skipped: int, position) -> Parsed:
    """The first line opens an object and is broken before its end: NDJSON whose first
    record is cut off or garbled — or a document that is broken anyway. A later line that
    starts with `{` and is an object settles it: NDJSON, and the broken lines before it are
    rejected like any other. Otherwise it is read as a document (and refused where broken)."""
    held, problems = [first], [problem]
    for _ in range(LOOKAHEAD_LINES):
        line = _read_line(text)
        if line is None:
            break
        held.append(line)
        problems.append("")
        if line.startswith("{"):
            record = _object_or_error(line)
            if isinstance(record, dict):
                fmt = _json_format(record)
                return Parsed(
                    fmt, _decoding(_ndjson_after(fmt, held, problems, text, skipped)), position
                )
            problems[-1] = record
        elif line.strip():
            problems[-1] = "invalid JSON (not a JSON object)"
    return _json_document("".join(held), text, position)


def _ndjson_after(fmt: str, held: list, problems: list, text, skipped: int) -> Iterator:
    for offset, (line, problem) in enumerate(zip(held[:-1], problems, strict=False)):
        if line.strip():
            yield Rejected(skipped + offset + 1, problem)
    yield from _ndjson(fmt, held[-1], text, skipped + len(held) - 1)


def _json_format(record: dict) -> str:
    if claude_code.is_page(record) or ("data" in record and isinstance(record["data"], list)):
        return "claude_code"
    if "seats" in record and isinstance(record["seats"], list):
        return "copilot_seats"
    if "assignee" in record:
        return "copilot_seats"
    if copilot.is_legacy(record):
        copilot.refuse_legacy()
    if copilot.is_team_record(record):
        return "copilot_user_teams"
    if copilot.is_user_record(record):
        return "copilot_users"
    if claude_code.is_record(record):
        return "claude_code"
    raise Refused(UNKNOWN_MESSAGE)


def _records(fmt: str, line: int, record, raw: str = "") -> Iterator:
    """One JSON value of a `fmt` file → its items (`raw`: its text, when it is one line)."""
    if not isinstance(record, dict):
        yield Rejected(line, "not a JSON object")
        return
    if fmt == "claude_code" and isinstance(record.get("data"), list):
        for entry in record["data"]:
            yield from _records(fmt, line, entry)
        return
    if fmt == "copilot_seats" and isinstance(record.get("seats"), list):
        yield from _seat_total(record)
        for entry in record["seats"]:
            yield from _records(fmt, line, entry)
        return
    try:
        if fmt == "copilot_users":
            if copilot.is_legacy(record):
                copilot.refuse_legacy()
            yield copilot.user_row(line, record)
        elif fmt == "copilot_user_teams":
            yield copilot.team_row(line, record)
        elif fmt == "copilot_seats":
            yield copilot.seat_row(line, record)
        else:
            yield claude_code.row(line, record)
    except Invalid as exc:
        yield Rejected(line, str(exc))


def _seat_total(members: dict) -> Iterator:
    total = members.get("total_seats")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        yield SeatTotal(total)


def _read_line(text) -> str | None:
    """One physical line, or None at the end; an overlong line is consumed and flagged."""
    line = text.readline(MAX_LINE_CHARS)
    if not line:
        return None
    if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):
        while True:
            rest = text.readline(MAX_LINE_CHARS)
            if not rest or rest.endswith("\n"):
                break
        return "\x00too-long"
    return line


def _ndjson(fmt: str, first: str, text, skipped: int) -> Iterator:
    number, line = skipped, first
    while line is not None:
        number += 1
        if line.strip():
            if line == "\x00too-long":
                yield Rejected(number, f"line longer than {MAX_LINE_CHARS // (1 << 20)} MB")
            else:
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    yield Rejected(number, f"invalid JSON ({exc.msg})")
                else:
                    yield from _records(fmt, number, record, line)
        line = _read_line(text)


def _json_document(first: str, text, position) -> Parsed:
    try:
        return _json_document_head(first, text, position)
    except JSONStreamError as exc:
        # Broken before the first record could be told apart: the whole file fails.
        raise Refused(f"Broken JSON on line {exc.line}: {exc}.") from None


def _json_document_head(first: str, text, position) -> Parsed:
    events = iter_document(text, prefix=first, stream_keys=frozenset({"data", "seats"}))
    try:
        head = next(events)
    except StopIteration:
        raise Refused("The file holds an empty JSON document.") from None
    kind, key, _line, value = head
    if kind == "item" and key is None:
        # A top-level array: its first element says what it is.
        if not isinstance(value, dict):
            raise Refused("The JSON array does not hold objects. " + UNKNOWN_MESSAGE)
        fmt = _json_format(value)
    elif kind == "item":
        fmt = "claude_code" if key == "data" else "copilot_seats"
    elif kind == "member":
        # An object whose arrays come later (or a pretty-printed single record): gather its
        # members until a streamed array shows what it is.
        members = {key: value}
        for event in events:
            kind, key, _line, value = event
            if kind == "item":
                head = event
                fmt = "claude_code" if key == "data" else "copilot_seats"
                break
            members[key] = value
        else:
            fmt = _json_format(members)
            return Parsed(fmt, _decoding(_records(fmt, 1, members)), position)
        # The members gathered come first, as they came (`total_seats` may be among them).
        heads = (*(("member", k, 0, v) for k, v in members.items()), head)
        return Parsed(fmt, _decoding(_document_items(fmt, heads, events)), position)
    else:
        raise Refused(UNKNOWN_MESSAGE)
    return Parsed(fmt, _decoding(_document_items(fmt, (head,), events)), position)


def _document_items(fmt: str, heads: tuple, events) -> Iterator:
    try:
        for kind, key, line, value in _chain(heads, events):
            if kind == "item":
                yield from _records(fmt, line, value)
            elif key == "total_seats" and fmt == "copilot_seats":
                yield from _seat_total({key: value})
    except JSONStreamError as exc:
        # The document cannot be read past this point: the whole file fails.
        raise Refused(f"Broken JSON on line {exc.line}: {exc}.") from None


def _chain(heads: tuple, events):
    yield from heads
    yield from events


# --- CSV -------------------------------------------------------------------------------------


def _csv(first: str, text, position, skipped: int = 0) -> Parsed:
    csv.field_size_limit(1 << 20)
    header = [c.strip().lower() for c in next(csv.reader([first]))]
    columns = set(header)
    if tap_csv.is_daily(columns):
        missing = tap_csv.missing_daily_columns(columns)
        if missing:
            raise Refused(
                "This looks like Tap's daily metrics CSV, but the header lacks "
                + ", ".join(missing)
                + ". The header is: "
                + ",".join(tap_csv.DAILY_HEADER)
                + "."
            )
        fmt, convert = "tap_csv", tap_csv.daily_row
    elif tap_csv.is_identity_map(columns):
        fmt, convert = "identity_map", tap_csv.identity_map_row
    elif "login" in columns and columns & {"last activity at", "last authenticated at"}:
        fmt, convert = "copilot_seats_csv", copilot.seat_csv_row
    else:
        raise Refused(UNKNOWN_MESSAGE)
    # A daily row cut short would read its missing counts as 0 (and replace real ones); an
    # identity map's or a seats list's trailing columns may be left off.
    complete = fmt == "tap_csv"
    rows = _csv_rows(header, text, convert, skipped + 1, complete=complete)
    return Parsed(fmt, _decoding(rows), position)


def _csv_rows(
    header: list[str], text, convert, header_line: int = 1, *, complete: bool = False
) -> Iterator:
    reader = csv.reader(text)
    previous = header_line
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(previous + 1, f"unreadable CSV ({exc})")
            previous = reader.line_num + header_line
            continue
        # line_num counts physical lines read by this reader, after the header's.
        line = previous + 1
        previous = reader.line_num + header_line
        if not any(v.strip() for v in values):
            continue
        if (complete and len(values) < len(header)) or any(
            v.strip() for v in values[len(header) :]
        ):
            yield Rejected(
                line,
                f"{len(values)} values where the header has {len(header)} columns "
                "(a line cut short, or a comma too many?)",
            )
            continue
        row = dict(zip(header, values, strict=False))
        try:
            yield convert(line, row)
        except Invalid as exc:
            yield Rejected(line, str(exc))
