"""Reads for the metrics dashboards. Each takes the organisation first and runs a fixed number
of aggregate queries, whatever the number of rows, developers or days (the bench checks it).

The SQL filters on organization_id explicitly (better plans, ready for Citus) on top of RLS."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Max, Q

from metrics.charts import Chart
from metrics.models import (
    CopilotSeat,
    DeveloperIdentity,
    DeveloperTeam,
    MetricIngestionRun,
    tool_label,
)

SMALL_COHORT = 5
DEFAULT_DAYS = 28


@dataclass(frozen=True)
class Filters:
    start: dt.date
    end: dt.date
    tool: str = ""

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def _rows(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def latest_day(org_id) -> dt.date | None:
    rows = _rows(
        "SELECT max(date) FROM daily_developer_metrics WHERE organization_id = %s", [org_id]
    )
    return rows[0][0]


def default_range(org_id, today: dt.date) -> tuple[dt.date, dt.date]:
    """The last four weeks of data (ending at the latest day loaded, so an org whose exports
    lag still sees a full chart)."""
    end = latest_day(org_id) or today
    return end - dt.timedelta(days=DEFAULT_DAYS - 1), end


def tools(org_id) -> list[str]:
    """Tools with any data (a loose index scan: a handful of index probes, not a table scan)."""
    rows = _rows(
        """
        WITH RECURSIVE t(tool) AS (
            SELECT min(tool) FROM daily_developer_metrics WHERE organization_id = %(org)s
            UNION ALL
            SELECT (SELECT min(tool) FROM daily_developer_metrics
                    WHERE organization_id = %(org)s AND tool > t.tool)
            FROM t WHERE t.tool IS NOT NULL
        )
        SELECT tool FROM t WHERE tool IS NOT NULL
        """,
        {"org": org_id},
    )
    return [r[0] for r in rows]


def _tool_clause(f: Filters, alias: str = "") -> str:
    return f" AND {alias}tool = %(tool)s" if f.tool else ""


def _params(org_id, f: Filters) -> dict:
    return {"org": org_id, "start": f.start, "end": f.end, "tool": f.tool}


def _rate(acceptances, suggestions) -> float:
    return round(100 * acceptances / suggestions, 1) if suggestions else 0.0


# --- overview ----------------------------------------------------------------------------------


def _sort_memory() -> None:
    """Exact distinct counts over a range of a large organisation hash a few hundred thousand
    pairs: give this transaction the memory to do it without spilling to disk."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', '64MB', true)")


def overview(org_id, f: Filters) -> dict:
    params = _params(org_id, f)
    _sort_memory()
    per_day_tool = _rows(
        """
        SELECT date, tool, count(*), sum(suggestions), sum(acceptances), sum(completions),
               sum(sessions)
        FROM daily_developer_metrics
        WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
        GROUP BY date, tool
        """,
        params,
    )
    # Distinct active developers per day and per week, from one scan of the range: the
    # (day, developer) pairs, then counted both ways.
    active = _rows(
        f"""
        WITH pairs AS (
            SELECT DISTINCT date, developer_identity_id FROM daily_developer_metrics
            WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
            {_tool_clause(f)}
        )
        SELECT false, date, count(*) FROM pairs GROUP BY date
        UNION ALL
        SELECT true, week, count(DISTINCT developer_identity_id)
        FROM (SELECT date_trunc('week', date)::date AS week, developer_identity_id FROM pairs) w
        GROUP BY week
        """,
        params,
    )
    active_daily = {day: n for weekly, day, n in active if not weekly}
    active_weekly = sorted((week, n) for weekly, week, n in active if weekly)
    adoption = _rows(
        """
        SELECT tool, count(DISTINCT developer_identity_id) FROM daily_developer_metrics
        WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
        GROUP BY ROLLUP (tool)
        """,
        params,
    )
    tools_seen = sorted({tool for _d, tool, *_ in per_day_tool})
    shown = [f.tool] if f.tool else tools_seen
    by_day = defaultdict(lambda: [0, 0, 0, 0])
    by_day_tool = {}
    for day, tool, _active, s, a, c, sess in per_day_tool:
        by_day_tool[(day, tool)] = (s, a, c, sess)
        if tool in shown:
            totals = by_day[day]
            for i, v in enumerate((s, a, c, sess)):
                totals[i] += v
    days = f.days
    totals = [sum(by_day[d][i] for d in days) for i in range(4)]
    charts = [
        Chart(
            "active",
            "Active developers per day",
            ["Day", "Active developers"],
            [[d.isoformat(), active_daily.get(d, 0)] for d in days],
        ),
        Chart(
            "weekly",
            "Active developers per week",
            ["Week of", "Active developers"],
            [[w.isoformat(), n] for w, n in active_weekly],
            kind="bar",
        ),
        Chart(
            "suggestions",
            "Suggestions and acceptances per day",
            ["Day", "Suggestions", "Acceptances"],
            [[d.isoformat(), by_day[d][0], by_day[d][1]] for d in days],
        ),
        Chart(
            "rate",
            "Acceptance rate per day",
            ["Day", "Acceptance rate (%)"],
            [[d.isoformat(), _rate(by_day[d][1], by_day[d][0])] for d in days],
            percent=True,
        ),
        Chart(
            "lines",
            "Lines accepted per day",
            ["Day", "Lines accepted"],
            [[d.isoformat(), by_day[d][2]] for d in days],
        ),
        Chart(
            "sessions",
            "Sessions per tool per day",
            ["Day", *[tool_label(t) for t in shown]],
            [
                [d.isoformat(), *[by_day_tool.get((d, t), (0, 0, 0, 0))[3] for t in shown]]
                for d in days
            ],
        ),
        Chart(
            "adoption",
            "Tool adoption (developers active in the range)",
            ["Tool", "Developers"],
            [[tool_label(t), n] for t, n in adoption if t is not None],
            kind="bar",
        ),
    ]
    everyone = next((n for t, n in adoption if t is None), 0)
    return {
        "charts": [c.render() for c in charts],
        "kpis": {
            "developers": everyone,
            "suggestions": totals[0],
            "acceptances": totals[1],
            "rate": _rate(totals[1], totals[0]),
            "lines": totals[2],
            "sessions": totals[3],
        },
        "tools": tools_seen,
    }


# --- developers (admins) -----------------------------------------------------------------------


def developer_list(org_id, f: Filters, *, search: str = "") -> list[dict]:
    params = _params(org_id, f) | {"q": f"%{search.lower()}%"}
    where = (
        " AND (lower(i.github_login) LIKE %(q)s OR lower(i.email) LIKE %(q)s"
        " OR lower(i.display_name) LIKE %(q)s)"
        if search
        else ""
    )
    rows = _rows(
        f"""
        SELECT i.id, i.display_name, i.github_login, i.email, i.api_key_name,
               coalesce(m.days, 0), coalesce(m.s, 0), coalesce(m.a, 0), coalesce(m.c, 0),
               coalesce(m.sess, 0), m.tools, m.last
        FROM developer_identities i
        LEFT JOIN (
            SELECT developer_identity_id, count(DISTINCT date) AS days, sum(suggestions) AS s,
                   sum(acceptances) AS a, sum(completions) AS c, sum(sessions) AS sess,
                   array_agg(DISTINCT tool) AS tools, max(date) AS last
            FROM daily_developer_metrics
            WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
            {_tool_clause(f)}
            GROUP BY developer_identity_id
        ) m ON m.developer_identity_id = i.id
        WHERE i.organization_id = %(org)s {where}
        ORDER BY coalesce(m.s, 0) DESC, lower(coalesce(nullif(i.display_name, ''), i.github_login,
                 i.email))
        """,
        params,
    )
    return [
        {
            "id": r[0],
            "name": r[1] or r[2] or r[3] or r[4],
            "github_login": r[2],
            "email": r[3],
            "api_key_name": r[4],
            "days": r[5],
            "suggestions": r[6],
            "acceptances": r[7],
            "rate": _rate(r[7], r[6]),
            "lines": r[8],
            "sessions": r[9],
            "tools": [tool_label(t) for t in (r[10] or [])],
            "last": r[11],
        }
        for r in rows
    ]


def developer_detail(org_id, identity: DeveloperIdentity, f: Filters) -> dict:
    params = _params(org_id, f) | {"identity": identity.pk}
    daily = _rows(
        f"""
        SELECT date, tool, suggestions, acceptances, completions, sessions
        FROM daily_developer_metrics
        WHERE organization_id = %(org)s AND developer_identity_id = %(identity)s
          AND date BETWEEN %(start)s AND %(end)s {_tool_clause(f)}
        ORDER BY date, tool
        """,
        params,
    )
    tools_seen = sorted({r[1] for r in daily})
    by = {(r[0], r[1]): r for r in daily}
    days = f.days
    charts = [
        Chart(
            "suggestions",
            "Suggestions per day",
            ["Day", *[tool_label(t) for t in tools_seen]],
            [[d.isoformat(), *[by.get((d, t), (0, 0, 0))[2] for t in tools_seen]] for d in days],
        ),
        Chart(
            "lines",
            "Lines accepted per day",
            ["Day", *[tool_label(t) for t in tools_seen]],
            [[d.isoformat(), *[by.get((d, t), (0,) * 5)[4] for t in tools_seen]] for d in days],
        ),
    ]
    teams = list(
        DeveloperTeam.objects.filter(developer_identity=identity).values_list("team", "source")
    )
    seat = CopilotSeat.objects.filter(developer_identity=identity).first()
    return {
        "charts": [c.render() for c in charts],
        "daily": [
            {
                "date": r[0],
                "tool": tool_label(r[1]),
                "suggestions": r[2],
                "acceptances": r[3],
                "rate": _rate(r[3], r[2]),
                "lines": r[4],
                "sessions": r[5],
            }
            for r in daily
        ],
        "teams": teams,
        "seat": seat,
    }


# --- seats ---------------------------------------------------------------------------------------


def seat_utilisation(org_id, as_of: dt.date) -> dict:
    """Licensed seats, and who used Copilot in the last 7 / 30 days (daily rows or the seat's
    own last activity), and who never did."""
    rows = _rows(
        """
        SELECT s.developer_identity_id, coalesce(nullif(i.display_name, ''), i.github_login),
               i.github_login, s.last_activity_at::date, s.assigned_at::date, m.last
        FROM copilot_seats s
        JOIN developer_identities i ON i.id = s.developer_identity_id
             AND i.organization_id = s.organization_id
        LEFT JOIN LATERAL (
            SELECT max(date) AS last FROM daily_developer_metrics d
            WHERE d.organization_id = s.organization_id
              AND d.developer_identity_id = s.developer_identity_id AND d.tool = 'copilot'
        ) m ON true
        WHERE s.organization_id = %s
        ORDER BY lower(i.github_login)
        """,
        [org_id],
    )
    people = []
    for _pk, name, login, seat_last, assigned, metric_last in rows:
        last = max([d for d in (seat_last, metric_last) if d], default=None)
        people.append(
            {
                "id": _pk,
                "name": name,
                "login": login,
                "assigned": assigned,
                "last": last,
                "active7": bool(last and last > as_of - dt.timedelta(days=7)),
                "active30": bool(last and last > as_of - dt.timedelta(days=30)),
                "never": last is None,
            }
        )
    licensed = len(people)
    active7 = sum(p["active7"] for p in people)
    active30 = sum(p["active30"] for p in people)
    never = sum(p["never"] for p in people)
    chart = Chart(
        "utilisation",
        "Seat utilisation",
        ["Group", "Developers"],
        [
            ["Licensed", licensed],
            ["Active in 7 days", active7],
            ["Active in 30 days", active30],
            ["Inactive 30+ days", licensed - active30 - never],
            ["Never used", never],
        ],
        kind="bar",
    ).render()
    return {
        "licensed": licensed,
        "active7": active7,
        "active30": active30,
        "never": never,
        "idle": [p for p in people if not p["active30"]],
        "chart": chart,
    }


# --- freshness -----------------------------------------------------------------------------------


def freshness(org_id) -> list[dict]:
    rows = _rows(
        """
        WITH RECURSIVE t(tool) AS (
            SELECT min(tool) FROM daily_developer_metrics WHERE organization_id = %(org)s
            UNION ALL
            SELECT (SELECT min(tool) FROM daily_developer_metrics
                    WHERE organization_id = %(org)s AND tool > t.tool)
            FROM t WHERE t.tool IS NOT NULL
        )
        SELECT t.tool,
               (SELECT max(date) FROM daily_developer_metrics d
                WHERE d.organization_id = %(org)s AND d.tool = t.tool),
               (SELECT max(updated_at) FROM daily_developer_metrics d
                WHERE d.organization_id = %(org)s AND d.tool = t.tool
                  AND d.date = (SELECT max(date) FROM daily_developer_metrics e
                                WHERE e.organization_id = %(org)s AND e.tool = t.tool))
        FROM t WHERE t.tool IS NOT NULL ORDER BY t.tool
        """,
        {"org": org_id},
    )
    return [{"tool": tool_label(t), "latest": day, "loaded": loaded} for t, day, loaded in rows]


def recent_runs(limit: int = 20):
    return MetricIngestionRun.objects.select_related("uploaded_by", "api_key").order_by(
        "-created_at"
    )[:limit]


# --- cohorts -------------------------------------------------------------------------------------

TIERS = ("heavy", "moderate", "light", "none")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def cohort_members(org_id, f: Filters, *, by: str) -> dict[str, set]:
    """{cohort name: developer identity ids}: by team, by adoption month (first day with
    usage), or by usage tier — heavy / moderate / light by percentile of suggestions in the
    range among those who used the tool, and none (`TIERS`). Campaigns draw participants from
    these, and the analysis breaks down by tier."""
    params = _params(org_id, f)
    members: dict[str, set] = defaultdict(set)
    if by == "team":
        for identity_id, team in DeveloperTeam.objects.values_list("developer_identity_id", "team"):
            members[team].add(identity_id)
    elif by == "adoption":
        for identity_id, first in _rows(
            f"""
            SELECT developer_identity_id, min(date) FROM daily_developer_metrics
            WHERE organization_id = %(org)s {_tool_clause(f)}
            GROUP BY developer_identity_id
            """,
            params,
        ):
            members[first.strftime("%Y-%m")].add(identity_id)
    else:
        totals = dict(
            _rows(
                f"""
                SELECT developer_identity_id, sum(suggestions) FROM daily_developer_metrics
                WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
                {_tool_clause(f)}
                GROUP BY developer_identity_id
                """,
                params,
            )
        )
        positive = sorted(v for v in totals.values() if v > 0)
        p25, p75 = _percentile(positive, 0.25), _percentile(positive, 0.75)
        everyone = DeveloperIdentity.objects.filter(api_key_name="").values_list("id", flat=True)
        for identity_id in everyone:
            value = totals.get(identity_id, 0)
            tier = (
                "none"
                if value <= 0
                else "heavy"
                if value >= p75
                else "moderate"
                if value >= p25
                else "light"
            )
            members[tier].add(identity_id)
    return members


def cohorts(org_id, f: Filters, *, by: str) -> dict:
    """Cohorts side by side, week by week: developers, active share and acceptances per
    active developer. A cohort of fewer than five developers is not broken down."""
    params = _params(org_id, f)
    _sort_memory()
    weekly = _rows(
        f"""
        SELECT developer_identity_id, date_trunc('week', date)::date AS week,
               sum(suggestions), sum(acceptances)
        FROM daily_developer_metrics
        WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
        {_tool_clause(f)}
        GROUP BY developer_identity_id, week
        """,
        params,
    )
    members = cohort_members(org_id, f, by=by)
    weeks = sorted({w for _i, w, _s, _a in weekly})
    active: dict = defaultdict(set)
    accepted: dict = defaultdict(int)
    for identity_id, week, _s, acceptances in weekly:
        active[(identity_id, week)] = True
        accepted[(identity_id, week)] += acceptances
    order = list(TIERS) if by == "tier" else sorted(members)
    table = []
    shown = []
    for name in order:
        people = members.get(name, set())
        if not people and by == "tier":
            continue
        small = len(people) < SMALL_COHORT
        row = {"name": name, "size": len(people), "suppressed": small, "weeks": []}
        if not small:
            shown.append(name)
            for week in weeks:
                n_active = sum(1 for p in people if (p, week) in active)
                total = sum(accepted.get((p, week), 0) for p in people)
                row["weeks"].append(
                    {
                        "week": week,
                        "active_share": round(100 * n_active / len(people), 1),
                        "per_active": round(total / n_active, 1) if n_active else 0,
                    }
                )
        table.append(row)
    by_name = {r["name"]: r for r in table}
    chart = Chart(
        "cohorts",
        "Share of the cohort active per week",
        ["Week of", *shown],
        [
            [w.isoformat(), *[by_name[n]["weeks"][i]["active_share"] for n in shown]]
            for i, w in enumerate(weeks)
        ],
        percent=True,
    ).render()
    chart2 = Chart(
        "accepted",
        "Acceptances per active developer per week",
        ["Week of", *shown],
        [
            [w.isoformat(), *[by_name[n]["weeks"][i]["per_active"] for n in shown]]
            for i, w in enumerate(weeks)
        ],
    ).render()
    return {"cohorts": table, "charts": [chart, chart2], "weeks": weeks}


# --- identities ----------------------------------------------------------------------------------


def _login_stem(login: str) -> str:
    """Enterprise-managed logins carry a _SHORTCODE suffix: mona_acme → mona."""
    return login.lower().rsplit("_", 1)[0] if "_" in login else login.lower()


def unmatched_identities() -> list[dict]:
    """Identities known by a login only or an email only, not yet reviewed, each with the
    likely other half: same name, or an email whose local part is the login."""
    lonely = list(
        DeveloperIdentity.objects.filter(reviewed=False, api_key_name="")
        .filter(Q(email="") | Q(github_login=""))
        .annotate(days=Count("daily_metrics"), last=Max("daily_metrics__date"))
        .order_by("github_login", "email")
    )
    email_only = [i for i in lonely if i.email and not i.github_login]
    login_only = [i for i in lonely if i.github_login and not i.email]
    by_local = defaultdict(list)
    by_name = defaultdict(list)
    for identity in email_only:
        by_local[identity.email.split("@")[0].lower()].append(identity)
    for identity in lonely:
        name = (identity.display_name or "").strip().lower()
        if name and name not in (identity.github_login.lower(), identity.email.split("@")[0]):
            by_name[name].append(identity)
    result = []
    for identity in login_only + email_only:
        suggestions = []
        if identity.github_login:
            for key in {identity.github_login.lower(), _login_stem(identity.github_login)}:
                for other in by_local.get(key, []):
                    suggestions.append((other, "email local part equals the login"))
        name = (identity.display_name or "").strip().lower()
        for other in by_name.get(name, []):
            if other.pk != identity.pk and (other.email == "") != (identity.email == ""):
                suggestions.append((other, "same name"))
        seen = set()
        unique = []
        for other, why in suggestions:
            if other.pk not in seen:
                seen.add(other.pk)
                unique.append({"identity": other, "why": why})
        result.append({"identity": identity, "suggestions": unique})
    return result
