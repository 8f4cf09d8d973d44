"""What parsers yield, and the small validators they share."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

MAX_COUNT = 2**31 - 1


class Refused(Exception):
    """The whole file cannot be ingested (not a format we know, a legacy report, too big…).
    The message is for the person who uploaded it."""


class Invalid(ValueError):
    """One record is wrong: the line is rejected with this reason."""


@dataclass(slots=True)
class MetricRow:
    line: int
    date: date
    tool: str
    suggestions: int
    acceptances: int
    completions: int
    sessions: int
    extras: dict
    login: str = ""
    github_id: int | None = None
    email: str = ""
    api_key_name: str = ""
    name: str = ""
    # The GitHub organisation and enterprise a Copilot record names, as far as it names them
    # (("organisation", "123"), ("enterprise", "9")): one person's usage counts in full in
    # each organisation, so two organisations' reports must never be summed.
    scope: tuple = ()


@dataclass(slots=True)
class TeamRow:
    """A developer's team (identity map or Copilot user-teams); the map also names and links."""

    line: int
    login: str = ""
    github_id: int | None = None
    email: str = ""
    name: str = ""
    team: str = ""
    source: str = "identity_map"
    # The day a Copilot user-teams report lists the membership for (None: not given).
    day: date | None = None


@dataclass(slots=True)
class SeatRow:
    line: int
    login: str
    github_id: int | None = None
    assigned_at: datetime | None = None
    last_activity_at: datetime | None = None
    last_activity_editor: str = ""
    last_authenticated_at: datetime | None = None
    plan_type: str = ""
    assigning_team: str = ""
    pending_cancellation_date: date | None = None
    extras: dict = field(default_factory=dict)


@dataclass(slots=True)
class SeatTotal:
    """A seats listing's own count of its seats (`total_seats`): a file that lists fewer is
    one page of several, not the whole roster."""

    total: int


@dataclass(slots=True)
class Rejected:
    line: int
    reason: str


# --- validators ------------------------------------------------------------------------------

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_day(value, what: str = "date") -> date:
    """A UTC calendar day from `2025-08-08`, `2025-08-08T00:00:00Z` or a timestamp with any
    number of fractional digits; an offset other than UTC is converted to UTC first."""
    if not isinstance(value, str) or len(value) < 10:
        raise Invalid(f"{what} is missing or not a date ({_show(value)})")
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        rest = text[10:]
        if rest[0] not in "Tt ":
            raise ValueError
        if rest.endswith(("Z", "z")) or ("+" not in rest and rest.count("-") == 0):
            # UTC (or naive, taken as UTC): the day is the date part, after checking it.
            return date.fromisoformat(text[:10])
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text))
        return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()
    except ValueError:
        raise Invalid(f"impossible {what} “{text[:40]}”") from None


# Usage is reported for days that have passed: none before this, none after tomorrow (UTC; a
# day that has begun somewhere on Earth). A typo'd year would otherwise become the latest day
# loaded, and with it every dashboard's default range.
FIRST_USAGE_DAY = date(2000, 1, 1)
_tomorrow: list = [-1, date.min]  # [the minute it was read in, tomorrow in UTC]


def _tomorrow_utc() -> date:
    minute = int(time.time()) // 60
    if minute != _tomorrow[0]:  # make the date once a minute, not once a row
        _tomorrow[:] = [minute, datetime.now(UTC).date() + timedelta(days=1)]
    return _tomorrow[1]


def parse_usage_day(value, what: str = "date") -> date:
    """The day a usage record is for (`parse_day`), refused when it has not happened yet or
    lies before any of these tools existed."""
    day = parse_day(value, what)
    if day > _tomorrow_utc():
        raise Invalid(f"{what} {day.isoformat()} is in the future")
    if day < FIRST_USAGE_DAY:
        raise Invalid(f"{what} {day.isoformat()} is before {FIRST_USAGE_DAY.year}")
    return day


def parse_moment(value) -> datetime | None:
    if value in (None, "", "None", "null"):
        return None
    if not isinstance(value, str):
        raise Invalid(f"not a timestamp ({_show(value)})")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"impossible timestamp “{value[:40]}”") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def count(record: dict, key: str, *, default: int = 0, label: str | None = None) -> int:
    """A non-negative whole number from `record[key]` (absent → default)."""
    value = record.get(key)
    if value is None:
        return default
    return as_count(value, label or key)


def as_count(value, label: str) -> int:
    if isinstance(value, bool):
        raise Invalid(f"{label} is not a number ({_show(value)})")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise Invalid(f"{label} is not a whole number ({_show(value)})")
    if value < 0:
        raise Invalid(f"negative {label} ({value})")
    if value > MAX_COUNT:
        raise Invalid(f"{label} is too large ({value})")
    return value


def number(value) -> float | int:
    """A lenient number for extras (never fails a line: extras are informative)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def identifier(value: str, label: str, limit: int) -> str:
    """A developer's (or a team's) name as a file gives it: refused, not cut, when it is too
    long for Tap (two developers cut to the same prefix would become one), or when it holds a
    NUL (PostgreSQL text cannot, and the whole run would fail on it)."""
    if len(value) > limit:
        raise Invalid(f"{label} is longer than {limit} characters ({_show(value)})")
    if "\x00" in value:
        raise Invalid(f"{label} contains a NUL character")
    return value


def plain(value, limit: int) -> str:
    """An informative text (an editor's name, a plan): NULs dropped, cut to fit."""
    return str(value or "").replace("\x00", "")[:limit]


TOOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")


def tool_name(value) -> str:
    text = (value or "").strip().lower().replace(" ", "_")
    if not TOOL_NAME.match(text):
        raise Invalid(
            f"tool “{str(value)[:40]}” is not a tool name (letters, digits, _ . -; up to 50)"
        )
    return text
