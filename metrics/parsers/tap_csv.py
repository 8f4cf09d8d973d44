"""Tap's own CSVs: daily metrics for any tool, and the identity map (metrics-formats.md §5)."""

from __future__ import annotations

from metrics.parsers.records import (
    Invalid,
    MetricRow,
    TeamRow,
    as_count,
    identifier,
    parse_usage_day,
    plain,
    tool_name,
)

DAILY_HEADER = (
    "date",
    "tool",
    "github_login",
    "email",
    "suggestions",
    "acceptances",
    "completions",
    "sessions",
)
IDENTITY_MAP_HEADER = ("github_login", "email", "name", "team")


def is_daily(columns: set[str]) -> bool:
    return {"date", "tool"} <= columns


def is_identity_map(columns: set[str]) -> bool:
    return {"github_login", "email"} <= columns and "date" not in columns


def missing_daily_columns(columns: set[str]) -> list[str]:
    return [c for c in DAILY_HEADER if c not in columns]


def _email(value: str) -> str:
    email = (value or "").strip().lower()
    if email and ("@" not in email or " " in email or len(email) > 254):
        raise Invalid(f"“{email[:60]}” is not an email address")
    return identifier(email, "email", 254)


def daily_row(line: int, row: dict) -> MetricRow:
    login = (row.get("github_login") or "").strip()
    email = _email(row.get("email"))
    if not login and not email:
        raise Invalid("no identifier: github_login and email are both empty")
    values = {}
    for column in ("suggestions", "acceptances", "completions", "sessions"):
        raw = (row.get(column) or "").strip()
        values[column] = as_count(raw or 0, column)
    return MetricRow(
        line=line,
        date=parse_usage_day((row.get("date") or "").strip(), "date"),
        tool=tool_name(row.get("tool")),
        extras={},
        login=identifier(login, "github_login", 100),
        email=email,
        **values,
    )


def identity_map_row(line: int, row: dict) -> TeamRow:
    login = (row.get("github_login") or "").strip()
    email = _email(row.get("email"))
    if not login and not email:
        raise Invalid("no identifier: github_login and email are both empty")
    return TeamRow(
        line=line,
        login=identifier(login, "github_login", 100),
        email=email,
        name=plain((row.get("name") or "").strip(), 200),
        team=identifier((row.get("team") or "").strip(), "team", 200),
        source="identity_map",
    )
