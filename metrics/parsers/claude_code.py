"""Claude Code analytics records (Admin API usage report, and the Enterprise Analytics API's
`_count` variant) → daily rows (metrics-formats.md §4)."""

from __future__ import annotations

from metrics.models import TOOL_CLAUDE_CODE
from metrics.parsers.records import (
    Invalid,
    MetricRow,
    as_count,
    identifier,
    number,
    parse_usage_day,
)


def is_record(record: dict) -> bool:
    return ("actor" in record or "user" in record) and (
        "core_metrics" in record or "tool_actions" in record or "date" in record
    )


def is_page(record: dict) -> bool:
    return isinstance(record.get("data"), list) and ("has_more" in record or "next_page" in record)


def _pick(container: dict, *keys):
    for key in keys:
        if key in container and container[key] is not None:
            return container[key]
    return None


def _identity(record: dict) -> tuple[str, str]:
    """(email, api key name)."""
    actor = record.get("actor")
    if not isinstance(actor, dict):
        actor = record.get("user") if isinstance(record.get("user"), dict) else {}
    email = actor.get("email_address") or actor.get("email")
    if isinstance(email, str) and email.strip():
        email = email.strip().lower()
        if "@" not in email:
            raise Invalid(f"actor email “{email[:60]}” is not an email address")
        return identifier(email, "actor email", 254), ""
    key_name = actor.get("api_key_name")
    if isinstance(key_name, str) and key_name.strip():
        return "", identifier(key_name.strip(), "api_key_name", 200)
    raise Invalid("no identifier: the actor has neither email_address nor api_key_name")


def row(line: int, record: dict) -> MetricRow:
    email, key_name = _identity(record)
    day = parse_usage_day(record.get("date"), "date")
    core = record.get("core_metrics")
    if not isinstance(core, dict):
        core = record
    sessions = as_count(
        _pick(core, "num_sessions", "distinct_session_count", "session_count") or 0,
        "num_sessions",
    )
    loc = core.get("lines_of_code") if isinstance(core.get("lines_of_code"), dict) else {}
    added = as_count(_pick(loc, "added", "added_count") or 0, "lines_of_code.added")
    removed = as_count(_pick(loc, "removed", "removed_count") or 0, "lines_of_code.removed")
    suggestions = acceptances = 0
    actions = record.get("tool_actions")
    kept_actions = {}
    if isinstance(actions, dict):
        for name, counts in actions.items():
            if not isinstance(counts, dict):
                continue
            accepted = as_count(
                _pick(counts, "accepted", "accepted_count") or 0, f"tool_actions.{name}.accepted"
            )
            rejected = as_count(
                _pick(counts, "rejected", "rejected_count") or 0, f"tool_actions.{name}.rejected"
            )
            suggestions += accepted + rejected
            acceptances += accepted
            kept_actions[str(name)[:60]] = {"accepted": accepted, "rejected": rejected}
    tokens = {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0}
    cost_cents = 0
    # Per model; a model named twice in one record is added up (as Copilot's breakdowns are).
    by_model: dict[str, dict] = {}
    models = record.get("model_breakdown")
    if isinstance(models, list):
        for entry in models:
            if not isinstance(entry, dict):
                continue
            used = entry.get("tokens") if isinstance(entry.get("tokens"), dict) else {}
            cost = entry.get("estimated_cost")
            amount = number(cost.get("amount")) if isinstance(cost, dict) else 0
            model_tokens = {key: number(used.get(key)) for key in tokens}
            for key, value in model_tokens.items():
                tokens[key] += value
            cost_cents += amount
            name = str(entry.get("model") or "")[:100]
            seen = by_model.get(name)
            if seen is None:
                by_model[name] = {"model": name, "cost_cents": amount} | model_tokens
            else:
                seen["cost_cents"] += amount
                for key, value in model_tokens.items():
                    seen[key] += value
    extras = {
        "lines_removed": removed,
        "commits": number(_pick(core, "commits_by_claude_code", "commit_count")),
        "pull_requests": number(_pick(core, "pull_requests_by_claude_code", "pull_request_count")),
        "tokens": tokens,
        "cost_cents": cost_cents,
    }
    if kept_actions:
        extras["tool_actions"] = kept_actions
    if by_model:
        extras["by_model"] = list(by_model.values())
    if key_name:
        extras["api_actor"] = True
    return MetricRow(
        line=line,
        date=day,
        tool=TOOL_CLAUDE_CODE,
        suggestions=suggestions,
        acceptances=acceptances,
        completions=added,
        sessions=sessions,
        extras=extras,
        email=email,
        api_key_name=key_name,
    )
