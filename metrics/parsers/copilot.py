"""GitHub Copilot: the per-user usage report, user-teams rows, seats (JSON and the activity
CSV), and the recognition of legacy organisation-total reports (metrics-formats.md §1-3)."""

from __future__ import annotations

from metrics.models import TOOL_COPILOT
from metrics.parsers.records import (
    Invalid,
    MetricRow,
    Refused,
    SeatRow,
    TeamRow,
    as_count,
    count,
    identifier,
    number,
    parse_day,
    parse_moment,
    parse_usage_day,
    plain,
)

BREAKDOWNS = (
    ("totals_by_ide", "by_ide", ("ide",)),
    ("totals_by_feature", "by_feature", ("feature",)),
    ("totals_by_language_feature", "by_language_feature", ("language", "feature")),
    ("totals_by_language_model", "by_language_model", ("language", "model")),
    ("totals_by_model_feature", "by_model_feature", ("model", "feature")),
)
# Breakdown counters kept, in this order: extras are stored per developer-day, so their size is
# the table's size, and parsing that JSON is most of the database's ingest cost. Each breakdown
# is kept compactly, keyed by its dimensions with the counters as a list:
#   "by_ide": {"vscode": [generated, accepted, loc_added, interactions]}
#   "by_language_feature": {"python": {"code_completion": [generated, accepted, …]}}
# Entries whose counters are all zero are left out (they say nothing).
BREAKDOWN_FIELDS = ("generated", "accepted", "loc_added", "interactions")
FLAGS = (
    "used_agent",
    "used_chat",
    "used_cli",
    "used_copilot_code_review_active",
    "used_copilot_code_review_passive",
    "used_copilot_coding_agent",
    "used_copilot_cloud_agent",
)

LEGACY_MESSAGE = (
    "This is a legacy GitHub Copilot metrics report (organisation totals per day, from "
    "/orgs/{org}/copilot/metrics or /copilot/usage). It holds no per-developer data, so Tap "
    "cannot attribute it to anyone, and GitHub shuts these endpoints down in 2026. Export the "
    "per-user usage-metrics report instead (…/copilot/metrics/reports/users-1-day or "
    "users-28-day, NDJSON) and upload that."
)


def is_user_record(record: dict) -> bool:
    return ("user_login" in record or "user_id" in record) and (
        "day" in record or "code_generation_activity_count" in record
    )


def is_team_record(record: dict) -> bool:
    return ("team_id" in record or "slug" in record) and (
        "user_login" in record or "user_id" in record
    )


def is_legacy(record: dict) -> bool:
    keys = record.keys()
    return not ("user_login" in keys or "user_id" in keys) and (
        "copilot_ide_code_completions" in keys
        or "total_active_users" in keys
        or "total_engaged_users" in keys
        or ("total_suggestions_count" in keys and ("day" in keys or "breakdown" in keys))
    )


def refuse_legacy():
    raise Refused(LEGACY_MESSAGE)


def _identity(record: dict) -> tuple[str, int | None]:
    login = record.get("user_login")
    login = login.strip() if isinstance(login, str) else ""
    user_id = record.get("user_id")
    if isinstance(user_id, str) and user_id.strip().isdigit():
        user_id = int(user_id)
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        user_id = None
    if not login and user_id is None:
        raise Invalid("no identifier: the record has neither user_login nor user_id")
    return identifier(login, "user_login", 100), user_id


def _label(value) -> str:
    if value.__class__ is str and value:
        return value[:100]
    return str(value or "unknown")[:100]


def _breakdown(entries, dimensions) -> dict:
    """Written for speed (it runs for every entry of every record): no helper calls per
    counter. Counters that are not numbers count as 0, as in `number`."""
    kept: dict = {}
    first = dimensions[0]
    second = dimensions[1] if len(dimensions) > 1 else None
    for entry in entries:
        if entry.__class__ is not dict:
            continue
        get = entry.get
        g = get("code_generation_activity_count", 0)
        a = get("code_acceptance_activity_count", 0)
        loc = get("loc_added_sum", 0)
        i = get("user_initiated_interaction_count", 0)
        if g.__class__ is not int:
            g = g if g.__class__ is float else 0
        if a.__class__ is not int:
            a = a if a.__class__ is float else 0
        if loc.__class__ is not int:
            loc = loc if loc.__class__ is float else 0
        if i.__class__ is not int:
            i = i if i.__class__ is float else 0
        if not (g or a or loc or i):
            continue
        key = _label(get(first))
        node = kept
        if second is not None:
            node = kept.get(key)
            if node is None:
                node = kept[key] = {}
            key = _label(get(second))
        seen = node.get(key)
        # The same dimension twice in one record: add them up.
        node[key] = (
            [g + seen[0], a + seen[1], loc + seen[2], i + seen[3]] if seen else [g, a, loc, i]
        )
    return kept


def _extras(record: dict) -> dict:
    """What dashboards use beyond the four counters: interactions, lines suggested/deleted,
    feature flags, credits, the adoption phase, CLI usage and the breakdowns (trimmed)."""
    get = record.get
    extras: dict = {
        "interactions": number(get("user_initiated_interaction_count")),
        "loc_suggested_to_add": number(get("loc_suggested_to_add_sum")),
        "loc_suggested_to_delete": number(get("loc_suggested_to_delete_sum")),
        "loc_deleted": number(get("loc_deleted_sum")),
    }
    used = [key[5:] for key in FLAGS if get(key) is True]
    if used:
        extras["used"] = used
    credits = get("ai_credits_used")
    if isinstance(credits, int | float) and not isinstance(credits, bool):
        extras["ai_credits_used"] = credits
    phase = get("ai_adoption_phase")
    # Its shape varies between sources: keep a label if one is there, never fail on it.
    if isinstance(phase, dict):
        label = phase.get("phase") or phase.get("name") or phase.get("phase_number")
        if label is not None:
            extras["adoption_phase"] = str(label)[:50]
    elif isinstance(phase, str | int):
        extras["adoption_phase"] = str(phase)[:50]
    for source, target, dimensions in BREAKDOWNS:
        entries = get(source)
        if entries and isinstance(entries, list):
            kept = _breakdown(entries, dimensions)
            if kept:
                extras[target] = kept
    cli = get("totals_by_cli")
    if isinstance(cli, dict):
        usage = cli.get("token_usage") if isinstance(cli.get("token_usage"), dict) else {}
        extras["cli"] = {
            "requests": number(cli.get("request_count")),
            "prompts": number(cli.get("prompt_count")),
            "output_tokens": number(usage.get("output_tokens_sum")),
            "prompt_tokens": number(usage.get("prompt_tokens_sum")),
        }
    return extras


def user_row(line: int, record: dict) -> MetricRow:
    login, user_id = _identity(record)
    day = parse_usage_day(record.get("day"), "day")
    suggestions = count(record, "code_generation_activity_count")
    acceptances = count(record, "code_acceptance_activity_count")
    completions = count(record, "loc_added_sum")
    sessions = 0
    cli = record.get("totals_by_cli")
    if isinstance(cli, dict):
        sessions = as_count(cli.get("session_count") or 0, "totals_by_cli.session_count")
    return MetricRow(
        line=line,
        date=day,
        tool=TOOL_COPILOT,
        suggestions=suggestions,
        acceptances=acceptances,
        completions=completions,
        sessions=sessions,
        extras=_extras(record),
        login=login,
        github_id=user_id,
        scope=_scope(record),
    )


def _scope(record: dict) -> tuple:
    return tuple(
        (label, str(value)[:50])
        for key, label in (("organization_id", "organisation"), ("enterprise_id", "enterprise"))
        if (value := record.get(key)) not in (None, "")
    )


def team_row(line: int, record: dict) -> TeamRow:
    login, user_id = _identity(record)
    team = record.get("slug") or record.get("team_slug") or record.get("team_name")
    if not isinstance(team, str) or not team.strip():
        team = str(record.get("team_id") or "")
    if not team:
        raise Invalid("no team: the record has neither slug nor team_id")
    team = identifier(team.strip(), "team", 200)
    day = record.get("day")
    return TeamRow(
        line=line,
        login=login,
        github_id=user_id,
        team=team,
        source="copilot",
        day=parse_usage_day(day, "day") if day not in (None, "") else None,
    )


def seat_row(line: int, seat: dict) -> SeatRow:
    assignee = seat.get("assignee")
    if not isinstance(assignee, dict):
        raise Invalid("seat has no assignee")
    login = assignee.get("login") if isinstance(assignee.get("login"), str) else ""
    github_id = assignee.get("id")
    if isinstance(github_id, bool) or not isinstance(github_id, int) or github_id <= 0:
        github_id = None
    if not login and github_id is None:
        raise Invalid("seat assignee has neither login nor id")
    team = seat.get("assigning_team")
    team_name = ""
    if isinstance(team, dict):
        team_name = plain(team.get("slug") or team.get("name"), 200)
    pending = seat.get("pending_cancellation_date")
    return SeatRow(
        line=line,
        login=identifier(login.strip(), "assignee login", 100),
        github_id=github_id,
        assigned_at=parse_moment(seat.get("created_at")),
        last_activity_at=parse_moment(seat.get("last_activity_at")),
        last_activity_editor=plain(seat.get("last_activity_editor"), 200),
        last_authenticated_at=parse_moment(seat.get("last_authenticated_at")),
        plan_type=plain(seat.get("plan_type"), 50),
        assigning_team=team_name,
        pending_cancellation_date=(
            parse_day(pending, "pending_cancellation_date") if pending else None
        ),
    )


SEATS_CSV_COLUMNS = ("login", "last authenticated at", "last activity at", "last surface used")


def seat_csv_row(line: int, row: dict) -> SeatRow:
    login = (row.get("login") or "").strip()
    if not login or login == "None":
        raise Invalid("no login")
    surface = plain((row.get("last surface used") or "").strip(), 200)
    return SeatRow(
        line=line,
        login=identifier(login, "login", 100),
        last_activity_at=parse_moment((row.get("last activity at") or "").strip()),
        last_authenticated_at=parse_moment((row.get("last authenticated at") or "").strip()),
        last_activity_editor="" if surface == "None" else surface,
    )
