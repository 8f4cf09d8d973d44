"""Reading participant lists: pasted addresses and CSV uploads, with a line-numbered report."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from campaigns.models import Participant

MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_ROWS = 50_000
# An address has at most 254 characters and a name is kept to 200: a longer value is a broken
# file (or not a participant list), whatever limit the csv module holds at the moment (it is
# process-wide, and the metrics parser raises it).
MAX_VALUE_CHARS = 1000


@dataclass
class ParsedList:
    valid: list[tuple[str, str]] = field(default_factory=list)  # (email, name), lower-cased email
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, reason)

    def add(self, line: int, raw: str, email: str, name: str, seen: set[str]) -> None:
        email = email.strip().lower()
        name = " ".join(name.split())[:200]
        longest = Participant._meta.get_field("email").max_length
        if len(email) > longest:  # valid addresses may be longer than Tap keeps
            self.rejected.append((line, raw.strip()[:200], f"longer than {longest} characters"))
            return
        try:
            validate_email(email)
        except ValidationError:
            self.rejected.append((line, raw.strip()[:200], "not a valid email address"))
            return
        if email in seen:
            self.rejected.append((line, raw.strip()[:200], "duplicate in this list"))
            return
        seen.add(email)
        self.valid.append((email, name))


NAME_AND_ADDRESS = re.compile(r"^\s*\"?([^<>\"]*?)\"?\s*<\s*([^<>\s]+)\s*>\s*$")


def _addresses(line: str) -> list[str]:
    """The line cut at commas and semicolons, except inside a quoted name ("Doe, John" <…>,
    as mail programs write "Last, First"). One pass: a pasted "To:" list is one long line."""
    parts, start, quoted = [], 0, False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in ",;" and not quoted:
            parts.append(line[start:index])
            start = index + 1
    parts.append(line[start:])
    return parts


def parse_pasted(text: str) -> ParsedList:
    """One address per line, several per line separated by commas or semicolons, and
    `Name <email>` forms all work."""
    result, seen = ParsedList(), set()
    lines = text.splitlines()
    if len(lines) > MAX_ROWS:
        raise ValidationError(f"At most {MAX_ROWS:,} lines at once.")
    for number, line in enumerate(lines, 1):
        for part in _addresses(line):
            if not part.strip():
                continue
            match = NAME_AND_ADDRESS.match(part)
            name, email = match.groups() if match else ("", part.strip())
            result.add(number, part, email, name, seen)
    return result


def parse_csv(data: bytes) -> ParsedList:
    """A CSV of `email,name` (a header row is optional). UTF-8, with or without BOM."""
    if len(data) > MAX_CSV_BYTES:
        raise ValidationError(
            f"The file is {len(data) / 1_048_576:.1f} MB; the limit is "
            f"{MAX_CSV_BYTES // 1_048_576} MB. Split it into smaller files."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "The file is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again."
        ) from exc
    if "\x00" in text:
        raise ValidationError(
            "The file holds NUL characters, so it is not CSV text (perhaps UTF-16 or a "
            "spreadsheet). Save it as 'CSV UTF-8' and upload it again."
        )
    result, seen = ParsedList(), set()
    # strict: a quote left open would otherwise swallow every line after it without a word.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = 0
    while True:
        line = reader.line_num + 1  # where this row starts: a quoted value may span lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValidationError(f"{_csv_problem(str(exc), line)} Nothing was added.") from exc
        rows += 1
        if rows > MAX_ROWS + 1:
            raise ValidationError(f"At most {MAX_ROWS:,} rows at once.")
        if any(len(value) > MAX_VALUE_CHARS for value in row):
            raise ValidationError(f"{_too_long(line)} Nothing was added.")
        if not row or not any(cell.strip() for cell in row):
            continue
        email = row[0].strip()
        name = row[1].strip() if len(row) > 1 else ""
        if rows == 1 and email.lower() in {"email", "e-mail", "email address"}:
            continue
        result.add(line, ",".join(row), email, name, seen)
    return result


def _too_long(line: int) -> str:
    return f"Line {line}: a value is longer than {MAX_VALUE_CHARS:,} characters."


def _csv_problem(error: str, line: int) -> str:
    if "unexpected end of data" in error:
        return f'Line {line}: a quote (") opens a value that is never closed.'
    if "expected after" in error:
        return f"Line {line}: text follows a closing quote; put the whole value in quotes."
    if "field larger than field limit" in error:
        return _too_long(line)
    return f"Line {line} is not valid CSV ({error})."
