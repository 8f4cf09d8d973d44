"""Reads for the metrics dashboards. Each takes the organisation first and runs a fixed number
of aggregate queries, whatever the number of rows, developers or days (the bench checks it).

They read rollups of `daily_developer_metrics` that the database keeps exact (triggers,
metrics/migrations/0008), never the daily rows themselves (but for one developer's page):

* `daily_tool_rollups`: per day and tool, developers and sums — charts, KPIs, tools;
* `weekly_developer_tool_rollups`: per week, developer and tool, a mask of the days with a row,
  the week's totals and running totals within it — distinct developers of one tool, the tools
  each developer used, sums over a cut week;
* `weekly_developer_rollups`: per week and developer, the mask of days with any tool and the
  week's totals — distinct developers and per-developer sums across tools.

A range that starts or ends mid-week takes from the weeks it cuts only their days inside it
(`_range_rows`: a mask of those days, and two running totals per counter), so every figure is
exactly what the daily rows give, from a seventh of the rows or fewer.

The SQL filters on organization_id explicitly (better plans, ready for Citus) on top of RLS."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, replace

from django.db import connection
from django.db.models import Q

from metrics import extras
from metrics.charts import Chart
from metrics.models import (
    KEY_ONLY,
    KEY_ONLY_SQL,
    TOOL_CLAUDE_CODE,
    TOOL_COPILOT,
    CopilotSeat,
    DeveloperIdentity,
    DeveloperTeam,
    MetricIngestionRun,
    tool_label,
)
from tap.tenancy import require_org_id

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
    rows = _rows("SELECT max(date) FROM daily_tool_rollups WHERE organization_id = %s", [org_id])
    return rows[0][0]


def default_range(org_id, today: dt.date) -> tuple[dt.date, dt.date]:
    """The last four weeks of data (ending at the latest day loaded, so an org whose exports
    lag still sees a full chart)."""
    end = latest_day(org_id) or today
    return end - dt.timedelta(days=DEFAULT_DAYS - 1), end


def tools(org_id) -> list[str]:
    """Tools with any data (a few hundred rollup rows per year, not the daily rows)."""
    rows = _rows(
        "SELECT DISTINCT tool FROM daily_tool_rollups WHERE organization_id = %s ORDER BY tool",
        [org_id],
    )
    return [r[0] for r in rows]


def _tool_clause(f: Filters, alias: str = "") -> str:
    return f" AND {alias}tool = %(tool)s" if f.tool else ""


def _params(org_id, f: Filters) -> dict:
    first_week = f.start - dt.timedelta(days=f.start.weekday())
    last_week = f.end - dt.timedelta(days=f.end.weekday())
    # Weeks wholly inside the range, and the (at most two) weeks its ends cut.
    whole_first = f.start if f.start == first_week else first_week + dt.timedelta(days=7)
    whole_last = last_week if f.end.weekday() == 6 else last_week - dt.timedelta(days=7)
    cut = {w for w in (first_week, last_week) if not whole_first <= w <= whole_last}
    return {
        "org": org_id,
        "start": f.start,
        "end": f.end,
        "tool": f.tool,
        "whole_first": whole_first,
        "whole_last": whole_last,
        "cut_weeks": sorted(cut),
        "whole_weeks": [
            whole_first + dt.timedelta(days=7 * i)
            for i in range((whole_last - whole_first).days // 7 + 1)
        ],
    }


def _rate(acceptances, suggestions) -> float | None:
    """Acceptances as a percentage of suggestions; None (no figure, not 0 %) without any."""
    return round(100 * acceptances / suggestions, 1) if suggestions else None


# --- the weekly rollups ------------------------------------------------------------------------

TOOL_WEEKLY = "weekly_developer_tool_rollups"
WEEKLY = "weekly_developer_rollups"
# Day of the week, Monday 0, as the rollups count it (2000-01-03 was a Monday).
_DOW = "(((date - date '2000-01-03') %% 7 + 7) %% 7)"

# A weekly row of a week the range cuts: its days inside [start, end], from day `lo` to day
# `hi` of the week, (2 << hi) - (1 << lo) (`week` is a Monday; date - date counts days); and a
# counter over those days, the running total at `hi` minus the one before `lo` (`[0]` of a
# 1-based array is NULL: nothing before).
_LO = "greatest(0, %(start)s - week)"
_HI = "least(6, %(end)s - week)"
_IN_RANGE = f"(days & ((2 << {_HI}) - (1 << {_LO})))"
_COUNTER = {"suggestions": 1, "acceptances": 2, "completions": 3, "sessions": 4}


def _cut_sum(counter: str) -> str:
    totals = f"totals_upto[{_COUNTER[counter]}]"
    return f"({totals}[{_HI} + 1] - coalesce({totals}[{_LO}], 0))"


def _range_parts(f: Filters, *counters: str, per_tool: bool = False, developers: bool = False):
    """The two halves of `_range_rows`: (the weeks wholly inside the range, the weeks its ends
    cut). With `developers`, only the developers of `%(ids)s`, and the whole weeks are listed
    one by one, so that the primary key (organisation, week, developer …) finds each one's
    weeks rather than every developer's rows of the range being scanned for them."""
    tool = " AND tool = %(tool)s" if f.tool else ""
    weeks = (
        "week = ANY(%(whole_weeks)s::date[])"
        if developers
        else "week BETWEEN %(whole_first)s AND %(whole_last)s"
    )
    only = " AND developer_identity_id = ANY(%(ids)s::uuid[])" if developers else ""
    keys = ["developer_identity_id AS developer", "week", *(["tool"] if per_tool else [])]
    whole = ", ".join([*keys, "days::int AS days", *counters])
    if per_tool or f.tool:
        table = TOOL_WEEKLY
        cut = ", ".join(
            [*keys, f"{_IN_RANGE} AS days", *(f"{_cut_sum(c)} AS {c}" for c in counters)]
        )
        group = ""
    else:
        table = WEEKLY
        cut = ", ".join(
            [
                *keys,
                f"bit_or({_IN_RANGE}) AS days",
                *(f"sum({_cut_sum(c)}) AS {c}" for c in counters),
            ]
        )
        group = "GROUP BY developer_identity_id, week"
    return (
        f"SELECT {whole} FROM {table} WHERE organization_id = %(org)s{tool} AND {weeks}{only}",
        f"""SELECT * FROM (
            SELECT {cut} FROM {TOOL_WEEKLY}
            WHERE organization_id = %(org)s{tool} AND week = ANY(%(cut_weeks)s::date[]){only}
            {group}
        ) cut WHERE days <> 0""",
    )


def _range_rows(f: Filters, *counters: str, per_tool: bool = False, developers: bool = False):
    """A subquery: the weekly rows of the range, one per developer and week (and tool, with
    `per_tool`; with a tool chosen, only its rows) — `developer`, `week`, `days` (those inside
    the range, never none) and each of `counters` over those days. Weeks wholly inside the
    range read the stored mask and week totals; the weeks its ends cut are computed from the
    per-tool running totals (across tools: their days OR-ed, their sums added)."""
    whole, cut = _range_parts(f, *counters, per_tool=per_tool, developers=developers)
    return f"({whole} UNION ALL {cut})"


def _developer_totals(f: Filters, *counters: str) -> str:
    """A subquery: one row per developer active in the range — `developer`, `days` (days
    active), `last` (the last of them) and each of `counters` over the range.

    Each half of the range is summed per developer on its own — the whole weeks straight from
    the stored rows, in one pass the database can share between workers — and the two are
    joined, which takes 40 % less time than grouping the weekly rows of both together."""
    whole, cut = _range_parts(f, *counters)
    sums = ", ".join(
        [
            f"sum({_DAY_COUNT}[days + 1]) AS days",
            f"max(week + {_LAST_DAY}[days + 1]) AS last",
            *(f"sum({c}) AS {c}" for c in counters),
        ]
    )
    both = ", ".join(
        [
            "coalesce(w.developer, k.developer) AS developer",
            "(coalesce(w.days, 0) + coalesce(k.days, 0))::int AS days",
            "greatest(w.last, k.last) AS last",
            *(f"(coalesce(w.{c}, 0) + coalesce(k.{c}, 0))::bigint AS {c}" for c in counters),
        ]
    )
    return f"""(
        SELECT {both}
        FROM (SELECT developer, {sums} FROM ({whole}) r GROUP BY developer) w
        FULL JOIN (SELECT developer, {sums} FROM ({cut}) r GROUP BY developer) k
          ON k.developer = w.developer
    )"""


def _by_mask(values) -> str:
    """A constant array indexed by a 7-day mask + 1 (cheaper than computing it per row)."""
    return "('{" + ",".join(str(v) for v in values) + "}'::int[])"


# Days in a mask; its first day, its last day (0-6).
_DAY_COUNT = _by_mask(bin(m).count("1") for m in range(128))
_FIRST_DAY = _by_mask(((m & -m).bit_length() - 1) % 7 for m in range(128))
_LAST_DAY = _by_mask(max(m.bit_length() - 1, 0) for m in range(128))


# --- overview ----------------------------------------------------------------------------------


def _kpis(developers: int, totals: list) -> dict:
    """The overview's headline figures: active developers, and the four counters' totals."""
    suggestions, acceptances, lines, sessions = totals
    return {
        "developers": developers,
        "suggestions": suggestions,
        "acceptances": acceptances,
        "rate": _rate(acceptances, suggestions),
        "lines": lines,
        "sessions": sessions,
    }


def _whole_weeks(f: Filters) -> Filters:
    """The range from the Monday of its first week to the Sunday of its last."""
    return replace(
        f,
        start=f.start - dt.timedelta(days=f.start.weekday()),
        end=f.end + dt.timedelta(days=6 - f.end.weekday()),
    )


def _week_days(week: dt.date, f: Filters) -> int:
    """How many days of the week starting `week` the range `f` counts."""
    return (min(week + dt.timedelta(days=6), f.end) - max(week, f.start)).days + 1


def _week_label(week: dt.date, f: Filters) -> str:
    """A week's label in a weekly chart: its Monday, and, for a week the range cuts (admins'
    ranges need not be whole weeks), how many of its days count — a bar of two days is not
    a drop in use."""
    days = _week_days(week, f)
    return week.isoformat() if days >= 7 else f"{week.isoformat()} ({days} of 7 days)"


def _tool_weeks(org_id, f: Filters) -> list[tuple]:
    """Per week of the whole-week range `f` and tool (only `f.tool`, if chosen): (week, tool,
    developers, suggestions, acceptances, completions, sessions). An identity known only by an
    API key (a CI job's, or anyone's) is not counted among the developers: four people and a
    key are four, too few for a member to see their figures."""
    return _rows(
        f"""
        SELECT r.week, r.tool, count(*) FILTER (WHERE k.id IS NULL),
               sum(r.suggestions)::bigint, sum(r.acceptances)::bigint,
               sum(r.completions)::bigint, sum(r.sessions)::bigint
        FROM {TOOL_WEEKLY} r
        LEFT JOIN developer_identities k
          ON k.id = r.developer_identity_id AND k.organization_id = r.organization_id
             AND {KEY_ONLY_SQL.format(t="k")}
        WHERE r.organization_id = %(org)s AND r.week BETWEEN %(whole_first)s AND %(whole_last)s
              {_tool_clause(f, "r.")}
        GROUP BY r.week, r.tool
        ORDER BY r.week, r.tool
        """,
        _params(org_id, f),
    )


@dataclass
class _Cells:
    """The (week, tool) cells of a whole-week range (`_tool_weeks` rows: `every`), and those a
    viewer who may not see people is shown: the ones at least `SMALL_COHORT` developers used."""

    every: list[tuple]

    @property
    def shown(self) -> list[tuple]:
        return [c for c in self.every if c[2] >= SMALL_COHORT]

    @property
    def all_shown(self) -> bool:
        return all(c[2] >= SMALL_COHORT for c in self.every)

    @property
    def params(self) -> dict:
        return {"cell_weeks": [c[0] for c in self.shown], "cell_tools": [c[1] for c in self.shown]}

    @property
    def join(self) -> str:
        """A JOIN that keeps the rows `r` (week, tool) of the cells shown; none when every cell
        is (nearly always): the join's rows are estimated at a few per cell, so the planner
        sorts them, to disk, where it would hash the range's rows."""
        if self.all_shown:
            return ""
        return """
            JOIN unnest(%(cell_weeks)s::date[], %(cell_tools)s::text[]) AS c (week, tool)
              ON c.week = r.week AND c.tool = r.tool"""


def _members_overview(org_id, f: Filters) -> dict:
    """The overview for a viewer who may not see people: by whole week, and without the weeks
    of a tool that fewer than `SMALL_COHORT` developers used — a weekend's or a pilot's
    figures would be those few's, read off the chart or as the difference of two ranges. Every
    figure is a sum of (week, tool) cells of at least five developers, so no difference of two
    gives fewer away. Active developers stay per day too (counts, not figures), over the weeks
    and tools shown."""
    f = _whole_weeks(f)
    cells = _Cells(_tool_weeks(org_id, f))
    shown = cells.shown
    left_out: dict = defaultdict(int)
    for _week, tool, n, *_ in cells.every:
        if n < SMALL_COHORT:
            left_out[tool] += 1
    weeks = [f.start + dt.timedelta(days=7 * i) for i in range(len(f.days) // 7)]
    hidden = [
        f"{tool_label(t)} ({n} week{'s' if n > 1 else ''})" for t, n in sorted(left_out.items())
    ]
    tools_seen = sorted({t for _w, t, *_ in cells.every})
    base = {"tools": tools_seen, "hidden": hidden, "widened": f}
    if cells.every and not shown:  # every week of every tool left out: no figure at all
        every = ", ".join(tool_label(t) for t in tools_seen)
        return {"charts": [], "kpis": None, **base, "hidden": [every]}
    # A developer's active days in a week: one row of the all-tools rollup when every cell is
    # shown (as in `overview`), else their days in the cells shown, OR-ed across tools.
    in_cells = f"SELECT developer, r.week, r.tool, days FROM {_range_rows(f, per_tool=True)} r"
    in_cells += cells.join
    if cells.all_shown:
        whole, _cut = _range_parts(f)  # no cut weeks: `f` is whole weeks
        weeks_used = f"SELECT week, days, count(*) FROM ({whole}) w GROUP BY week, days"
    else:
        weeks_used = f"""
            SELECT week, days, count(*) FROM (
                SELECT developer, week, bit_or(days) AS days FROM ({in_cells}) r
                GROUP BY developer, week
            ) w GROUP BY week, days"""
    active = _rows(
        f"""
        WITH used AS MATERIALIZED (
            SELECT tool, developer FROM ({in_cells}) r GROUP BY tool, developer
        )
        SELECT 0, week, days, NULL, count FROM ({weeks_used}) w
        UNION ALL
        SELECT 1, NULL, NULL, tool, count(*) FROM used GROUP BY tool
        UNION ALL
        SELECT 2, NULL, NULL, NULL, count(*) FROM (SELECT developer FROM used GROUP BY developer) d
        """,
        _params(org_id, f) | cells.params,
    )
    active_daily, active_weekly, adoption, everyone = _active_counts(active)
    # Weeks with data but no cell shown: no figure (not 0 active), their days neither.
    for week in {c[0] for c in cells.every} - {c[0] for c in shown}:
        active_weekly[week] = None
        for k in range(7):
            active_daily[week + dt.timedelta(days=k)] = None
    by_week: dict = {}
    by_week_tool = {}
    for week, tool, _n, *values in shown:
        by_week_tool[(week, tool)] = values
        totals = by_week.setdefault(week, [0, 0, 0, 0])
        for i, v in enumerate(values):
            totals[i] += v
    totals = [sum(t[i] for t in by_week.values()) for i in range(4)]
    none = [None] * 4
    shown_tools = sorted({t for _w, t, *_ in shown})
    charts = [
        Chart(
            "active",
            "Active developers per day",
            ["Day", "Active developers"],
            [[d.isoformat(), active_daily.get(d, 0)] for d in f.days],
        ),
        Chart(
            "weekly",
            "Active developers per week",
            ["Week of", "Active developers"],
            [[w.isoformat(), active_weekly.get(w, 0)] for w in weeks],
            kind="bar",
        ),
        Chart(
            "suggestions",
            "Suggestions and acceptances per week",
            ["Week of", "Suggestions", "Acceptances"],
            [[w.isoformat(), *by_week.get(w, none)[:2]] for w in weeks],
            kind="bar",
        ),
        Chart(
            "rate",
            "Acceptance rate per week",
            ["Week of", "Acceptance rate (%)"],
            [
                [w.isoformat(), _rate(by_week[w][1], by_week[w][0]) if w in by_week else None]
                for w in weeks
            ],
            percent=True,
        ),
        Chart(
            "lines",
            "Lines accepted per week",
            ["Week of", "Lines accepted"],
            [[w.isoformat(), by_week.get(w, none)[2]] for w in weeks],
            kind="bar",
        ),
        Chart(
            "sessions",
            "Sessions per tool per week",
            ["Week of", *[tool_label(t) for t in shown_tools]],
            [
                [w.isoformat(), *[by_week_tool.get((w, t), none)[3] for t in shown_tools]]
                for w in weeks
            ],
            kind="bar",
        ),
        Chart(
            "adoption",
            "Tool adoption (developers active in the weeks shown)",
            ["Tool", "Developers"],
            [[tool_label(t), n] for t, n in adoption],
            kind="bar",
        ),
    ]
    return {
        "charts": [c.render() for c in charts],
        "kpis": _kpis(everyone, totals),
        **base,
    }


def overview(org_id, f: Filters, *, people: bool = True) -> dict:
    """The organisation's totals per day and week; for a viewer who may not see people
    (`people` false: members), `_members_overview`."""
    if not people:
        return _members_overview(org_id, f)
    params = _params(org_id, f)
    per_day_tool = _rows(
        """
        SELECT date, tool, developers, suggestions, acceptances, completions, sessions
        FROM daily_tool_rollups
        WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s
        """,
        params,
    )
    # Distinct active developers: per week and set of days active in the range, how many
    # developers (counted per day and per week below); and per tool, who used it in the range.
    # Each half of the range is grouped on its own (see `_developer_totals`): the whole and the
    # cut weeks are different weeks, and a developer's tools from both are merged by UNION.
    whole, cut = _range_parts(f)
    whole_used, cut_used = _range_parts(replace(f, tool=""), per_tool=True)
    active = _rows(
        f"""
        WITH used AS MATERIALIZED (
            SELECT tool, developer FROM ({whole_used}) r GROUP BY tool, developer
            UNION
            SELECT tool, developer FROM ({cut_used}) r GROUP BY tool, developer
        )
        SELECT 0, week, days, NULL, count(*) FROM ({whole}) r GROUP BY week, days
        UNION ALL
        SELECT 0, week, days, NULL, count(*) FROM ({cut}) r GROUP BY week, days
        UNION ALL
        SELECT 1, NULL, NULL, tool, count(*) FROM used GROUP BY tool
        UNION ALL
        SELECT 2, NULL, NULL, NULL, count(DISTINCT developer) FROM used
        {"WHERE tool = %(tool)s" if f.tool else ""}
        """,
        params,
    )
    active_daily, active_weekly, adoption, everyone = _active_counts(active)
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
            [[_week_label(w, f), n] for w, n in sorted(active_weekly.items())],
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
            [[tool_label(t), n] for t, n in adoption],
            kind="bar",
        ),
    ]
    return {
        "charts": [c.render() for c in charts],
        "kpis": _kpis(everyone, totals),
        "tools": tools_seen,
        "hidden": [],
    }


def _active_counts(rows) -> tuple[dict, dict, list, int]:
    """The overviews' active-developer rows — (0, week, days mask, None, developers),
    (1, None, None, tool, developers), (2, None, None, None, developers) — as (per day, per
    week, [(tool, developers)], everyone)."""
    daily: dict = defaultdict(int)
    weekly: dict = defaultdict(int)
    adoption, everyone = [], 0
    for kind, week, days, tool, n in rows:
        if kind == 0:
            _count_active(daily, weekly, week, days, n)
        elif kind == 1:
            adoption.append((tool, n))
        else:
            everyone = n
    return daily, weekly, sorted(adoption), everyone


def _count_active(daily: dict, weekly: dict, week, days: int, n: int) -> None:
    """Add `n` developers active on the days of mask `days` of `week` (Monday = bit 0)."""
    weekly[week] += n
    for k in range(7):
        if days & (1 << k):
            daily[week + dt.timedelta(days=k)] += n


# --- developers (admins) -----------------------------------------------------------------------


def developer_list(org_id, f: Filters, *, search: str = "") -> list[dict]:
    """Every developer (matching `search`) with their activity in the range, most suggestions
    first. The tools each used are asked for separately, for the rows shown
    (`developer_tools`): a page of a hundred, not every developer of a long range."""
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
               coalesce(m.days, 0), coalesce(m.suggestions, 0), coalesce(m.acceptances, 0),
               coalesce(m.completions, 0), coalesce(m.sessions, 0), m.last
        FROM developer_identities i
        LEFT JOIN {_developer_totals(f, *_COUNTER)} m ON m.developer = i.id
        WHERE i.organization_id = %(org)s {where}
        -- Ties broken down to the id: pages are separate queries, and a developer must land
        -- on exactly one of them.
        ORDER BY coalesce(m.suggestions, 0) DESC,
                 lower(coalesce(nullif(i.display_name, ''), nullif(i.github_login, ''),
                                nullif(i.email, ''), i.api_key_name)),
                 i.id
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
            "last": r[10],
        }
        for r in rows
    ]


def developer_tools(org_id, f: Filters, identity_ids) -> dict:
    """{identity id: the labels of the tools it used in the range (with a tool chosen: that
    one)}, for these developers; one without activity is left out."""
    if not identity_ids:  # an empty page (a search that matched nobody): nothing to scan
        return {}
    rows = _rows(
        f"""
        SELECT developer, array_agg(DISTINCT tool ORDER BY tool)
        FROM {_range_rows(f, per_tool=True, developers=True)} r
        GROUP BY developer
        """,
        _params(org_id, f) | {"ids": list(identity_ids)},
    )
    return {developer: [tool_label(t) for t in tools] for developer, tools in rows}


def developer_detail(org_id, identity: DeveloperIdentity, f: Filters) -> dict:
    params = _params(org_id, f) | {"identity": identity.pk}
    daily = _rows(
        f"""
        SELECT date, tool, suggestions, acceptances, completions, sessions, extras
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
        "breakdowns": _breakdowns(daily),
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


def _breakdowns(daily: list[tuple]) -> list[dict]:
    """What a developer's exports say beyond the four counters, summed over the range, per
    tool: figures (label, value) and bar charts (each with its table and CSV)."""
    by_tool = defaultdict(list)
    for row in daily:
        if isinstance(row[6], dict):
            by_tool[row[1]].append(row[6])
    found = []
    if by_tool[TOOL_COPILOT]:
        found.append(_copilot_breakdown(by_tool[TOOL_COPILOT]))
    if by_tool[TOOL_CLAUDE_CODE]:
        found.append(_claude_breakdown(by_tool[TOOL_CLAUDE_CODE]))
    for b in found:
        b["charts"] = [c.render() for c in b["charts"] if c.rows]
    return [b for b in found if b["figures"] or b["charts"]]


def _by_label(rows: list[list]) -> list[list]:
    """Rows of the same label (first cell) as one, their figures added up, in the order first
    seen: two names a page shows alike (`edit_tool` and `edit`) are one bar, not two."""
    grouped: dict = {}
    for label, *values in rows:
        seen = grouped.get(label)
        grouped[label] = (
            values if seen is None else [a + b for a, b in zip(seen, values, strict=True)]
        )
    return [[label, *values] for label, values in grouped.items()]


COUNTER_COLUMNS = ["Generated", "Accepted", "Lines added", "Prompts"]
# (extras key, chart id, what the first column names, title, columns shown). GitHub gives no
# prompts by language: that column would be all zeros.
COPILOT_BREAKDOWNS = (
    ("by_ide", "copilot-ide", "IDE", "GitHub Copilot by IDE", 4),
    ("by_feature", "copilot-feature", "Feature", "GitHub Copilot by feature", 4),
    ("by_language_feature", "copilot-language", "Language", "GitHub Copilot by language", 3),
    ("by_model_feature", "copilot-model", "Model", "GitHub Copilot by model", 4),
)
# Copilot's `used_*` flags (`parsers.copilot.FLAGS`) as the days they count.
USED_LABELS = {
    "chat": "Days using chat",
    "agent": "Days using agent mode",
    "cli": "Days using the CLI",
    "copilot_coding_agent": "Days using the coding agent",
    "copilot_cloud_agent": "Days using the cloud agent",
    "copilot_code_review_active": "Days asking for code review",
    "copilot_code_review_passive": "Days with automatic code review",
}


def _copilot_breakdown(rows: list[dict]) -> dict:
    summed = extras.total(rows)
    cli = summed.get("cli") if isinstance(summed.get("cli"), dict) else {}
    days_used = defaultdict(int)
    for row in rows:
        for flag in row.get("used") or ():
            days_used[flag] += 1
    figures = [
        # Sums of floats (credits) to the cent: 27.740000000000002 is 27.74.
        (label, value)
        for label, key in (
            ("Chat and agent prompts", "interactions"),
            ("Lines suggested", "loc_suggested_to_add"),
            ("Lines deleted", "loc_deleted"),
            ("AI credits used", "ai_credits_used"),
        )
        if (value := round(summed.get(key) or 0, 2))
    ]
    order = list(USED_LABELS)
    figures += [
        (USED_LABELS.get(flag, f"Days using {extras.words(flag).lower()}"), days_used[flag])
        for flag in sorted(
            days_used, key=lambda f: (order.index(f) if f in order else len(order), f)
        )
    ]
    figures += [
        (label, cli[key])
        for label, key in (("CLI requests", "requests"), ("CLI prompts", "prompts"))
        if cli.get(key)
    ]
    charts = [
        Chart(
            chart_id,
            title,
            [dimension, *COUNTER_COLUMNS[:shown]],
            _by_label(
                [
                    [extras.words(label) if dimension == "Feature" else label, *counters[:shown]]
                    for label, counters in extras.breakdown(summed, key)
                ]
            ),
            kind="bar",
        )
        for key, chart_id, dimension, title, shown in COPILOT_BREAKDOWNS
    ]
    return {"tool": tool_label(TOOL_COPILOT), "figures": figures, "charts": charts}


def _claude_breakdown(rows: list[dict]) -> dict:
    summed = extras.total(rows)
    tokens = summed.get("tokens") if isinstance(summed.get("tokens"), dict) else {}
    figures = [
        (label, summed[key])
        for label, key in (
            ("Lines removed", "lines_removed"),
            ("Commits", "commits"),
            ("Pull requests", "pull_requests"),
        )
        if summed.get(key)
    ]
    if cost := round((summed.get("cost_cents") or 0) / 100, 2):
        figures.append(("Estimated cost (USD)", cost))
    figures += [
        (f"{extras.words(key)} tokens", tokens[key])
        for key in ("input", "output", "cache_read", "cache_creation")
        if tokens.get(key)
    ]
    actions = summed.get("tool_actions") if isinstance(summed.get("tool_actions"), dict) else {}
    actions_rows = _by_label(
        [
            [extras.words(name), counts.get("accepted", 0), counts.get("rejected", 0)]
            for name, counts in actions.items()
            if isinstance(counts, dict)
        ]
    )
    actions_rows.sort(key=lambda row: (-row[1] - row[2], row[0]))
    # Rows stored before the parser added up a model named twice in one record still hold it
    # twice; a model called "unknown" and unnamed ones read alike.
    models = _by_label(
        [
            [m.get("model") or "unknown", m.get("cost_cents", 0)]
            + [m.get(k, 0) for k in ("input", "output", "cache_read", "cache_creation")]
            for m in summed.get("by_model") or ()
            if isinstance(m, dict)
        ]
    )
    models.sort(key=lambda row: (-row[1], row[0]))
    charts = [
        Chart(
            "claude-actions",
            "Claude Code tool actions",
            ["Tool", "Accepted", "Rejected"],
            actions_rows,
            kind="bar",
        ),
        Chart(
            "claude-tokens",
            "Claude Code tokens by model",
            ["Model", "Input", "Output", "Cache read", "Cache creation"],
            [[model, *tokens] for model, _cents, *tokens in models],
            kind="bar",
        ),
        Chart(
            "claude-cost",
            "Claude Code estimated cost by model (USD)",
            ["Model", "Estimated cost (USD)"],
            [[model, round(cents / 100, 2)] for model, cents, *_tokens in models if cents],
            kind="bar",
        ),
    ]
    return {"tool": tool_label(TOOL_CLAUDE_CODE), "figures": figures, "charts": charts}


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
    """Per tool, its latest day and when that day's data was last written: the daily rows of
    that day, found through the weekly rollup (who had a row that day) and the unique index."""
    rows = _rows(
        """
        WITH latest AS (
            SELECT tool, max(date) AS day FROM daily_tool_rollups
            WHERE organization_id = %(org)s GROUP BY tool
        )
        SELECT l.tool, l.day,
               (SELECT max(d.updated_at)
                FROM weekly_developer_tool_rollups w
                JOIN daily_developer_metrics d
                  ON d.organization_id = w.organization_id
                 AND d.developer_identity_id = w.developer_identity_id
                 AND d.date = l.day AND d.tool = w.tool
                WHERE w.organization_id = %(org)s
                  AND w.week = l.day - (((l.day - date '2000-01-03') %% 7 + 7) %% 7)
                  AND w.tool = l.tool
                  AND w.days & (1 << (((l.day - date '2000-01-03') %% 7 + 7) %% 7)) <> 0)
        FROM latest l ORDER BY l.tool
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


def broken_down(groups: dict[str, set], *, counted=None, disjoint: bool = False) -> list[str]:
    """The groups that may be broken down, in `groups`' order: those of at least
    `SMALL_COHORT` members — less the smallest of them while the groups left out hold fewer
    than `SMALL_COHORT` members together, since the figures of those few would be the total's
    less the shown groups'. `counted`: the groups whose members add to totals (default: all;
    a usage tier of "none" adds nothing). `disjoint`: nor a group that shares members with a
    larger one shown (two overlapping groups' figures, one less the other, are those of the
    members in one only)."""
    counts = set(groups) if counted is None else set(counted)
    shown = [name for name, members in groups.items() if len(members) >= SMALL_COHORT]
    if disjoint:
        kept: set = set()
        for name in sorted(shown, key=lambda n: -len(groups[n])):
            if groups[name] & kept:
                shown.remove(name)
            else:
                kept |= groups[name]
    hidden = set().union(*(groups[n] for n in groups if n not in shown and n in counts))
    while hidden and len(hidden) < SMALL_COHORT:
        candidates = [n for n in shown if n in counts]
        if not candidates:
            break
        smallest = min(candidates, key=lambda n: len(groups[n]))
        shown.remove(smallest)
        hidden |= groups[smallest]
    return shown


def _held_back(shown: list[str], weeks: list, counts: dict, also: set = frozenset()) -> set[tuple]:
    """For a viewer who may not see people: the (shown cohort's index, week) cells whose
    acceptances per active developer are left out. Those of fewer than `SMALL_COHORT` active
    developers, as they would be those few's; then, week by week, the next smallest while the
    developers active that week but in no figure shown (in held-back cells, cohorts not broken
    down, or none) are 1 to 4: the week's totals less the figures shown would be theirs.
    `counts[(index, week)]`: (active, acceptances), index -1 for everyone; `also`: cells to
    hold back for another reason. The shown cohorts are disjoint
    (`broken_down(disjoint=True)`), so their active developers add up."""
    held = set()
    for week in weeks:
        cover = counts.get((-1, week), (0, 0))[0]
        rest = []
        for index in range(len(shown)):
            n_active = counts.get((index, week), (0, 0))[0]
            if 0 < n_active < SMALL_COHORT or (n_active and (index, week) in also):
                held.add((index, week))
            elif n_active:
                cover -= n_active
                rest.append((n_active, index))
        rest.sort()
        while 0 < cover < SMALL_COHORT and rest:
            n_active, index = rest.pop(0)
            held.add((index, week))
            cover += n_active
    return held


def _held_in_other_views(org_id, f: Filters, shown: list[str], params: dict, *, same_members):
    """For a viewer who may not see people, with several tools shown: the (cohort index,
    week) cells of the view of `f.tool` to hold back because of the other views of the same
    cohorts. A cohort's week in all tools is the sum of its weeks in each tool, so were a
    cell held back (`_held_back`, each view with its own totals) in one view only, the other
    views' figures would give it: it is then held back in a second view too — all tools, or,
    where all tools held it, the tool fewest of the cohort used that week. And in the
    all-tools view, a cohort's week with 1 to 4 of its developers on some tool is held back:
    its figure less that of the other tools would be those few's. `same_members`: the
    cohorts have the same members whatever the tool (teams; adoption months and usage tiers
    follow the tool, so other views' cohorts are other groups, and only the last rule
    applies)."""
    if f.tool and not same_members:
        return set()
    every_tool = replace(f, tool="")
    cells = _Cells(_tool_weeks(org_id, every_tool))
    if len({tool for _w, tool, *_ in cells.shown}) < 2:
        return set()  # one tool: its view is the all-tools view
    rows = _rows(
        f"""
        WITH d AS MATERIALIZED (
            SELECT developer, r.week, r.tool, sum(acceptances)::bigint AS acceptances
            FROM {_range_rows(every_tool, "acceptances", per_tool=True)} r {cells.join}
            GROUP BY developer, r.week, r.tool
        ), c AS (
            SELECT -1 AS cohort, d.* FROM d
            UNION ALL
            SELECT m.cohort, d.*
            FROM d
            JOIN (
                SELECT developer, cohort
                FROM unnest(%(people)s::uuid[], %(cohort)s::int[]) AS m (developer, cohort)
                GROUP BY developer, cohort
            ) m ON m.developer = d.developer
        )
        SELECT cohort, week, tool, count(DISTINCT developer), sum(acceptances)::bigint
        FROM c
        GROUP BY GROUPING SETS ((cohort, week, tool), (cohort, week))
        """,
        _params(org_id, every_tool)
        | cells.params
        | {"people": params["people"], "cohort": params["cohort"]},
    )
    views: dict[str, dict] = defaultdict(dict)
    few_of_a_tool = set()
    for cohort, week, tool, n_active, acceptances in rows:
        views[tool or ""][(cohort, week)] = (n_active, acceptances)
        if tool and cohort >= 0 and n_active < SMALL_COHORT:
            few_of_a_tool.add((cohort, week))
    held = {
        tool: _held_back(
            shown,
            sorted(week for cohort, week in counts if cohort == -1),
            counts,
            also=set() if tool else few_of_a_tool,
        )
        for tool, counts in views.items()
    }
    if not same_members:
        return held[""]
    for cell in set().union(*held.values()):
        hidden = [tool for tool in views if cell in held[tool]]
        if len(hidden) != 1:
            continue
        if hidden[0]:
            held[""].add(cell)
            continue
        used = [(views[t][cell][0], t) for t in views if t and views[t].get(cell, (0, 0))[0]]
        if used:
            held[min(used)[1]].add(cell)
    return held.get(f.tool, set())


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
            SELECT developer_identity_id, min(week + {_FIRST_DAY}[days + 1])
            FROM {TOOL_WEEKLY if f.tool else WEEKLY}
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
                SELECT developer, suggestions FROM {_developer_totals(f, "suggestions")} r
                """,
                params,
            )
        )
        positive = sorted(v for v in totals.values() if v > 0)
        p25, p75 = _percentile(positive, 0.25), _percentile(positive, 0.75)
        everyone = DeveloperIdentity.objects.exclude(KEY_ONLY).values_list("id", flat=True)
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


def cohorts(org_id, f: Filters, *, by: str, people: bool = True) -> dict:
    """Cohorts side by side, week by week: developers, active share and acceptances per
    active developer. A cohort of fewer than five developers is not broken down. For a
    viewer who may not see people, as on their overview (`_members_overview`): whole weeks,
    without a tool's weeks that fewer than five used; usage tiers of a fixed window; teams
    that overlap a larger one shown not broken down; and a week's figure held back where it
    would be, or with the totals would give away, fewer than five people's (`_held_back`)."""
    widened = cells = None
    if not people:
        # Whole weeks only (figures of a week cut two ways, one less the other, would be those
        # of the days in between), and only the weeks of a tool that at least five used.
        f = widened = _whole_weeks(f)
        cells = _Cells(_tool_weeks(org_id, f))
        if cells.every and not cells.shown:
            every = tool_label(f.tool) or ", ".join(
                tool_label(t) for t in sorted({t for _w, t, *_ in cells.every})
            )
            return {"cohorts": [], "charts": [], "weeks": [], "hidden": every}
    # Usage tiers follow the range for admins; for members they are those of the last four
    # weeks of data, whatever the range: tiers that moved with it would let the same week
    # be read off two groups that differ by a few people.
    tier_range = f
    if not people and by == "tier":
        start, end = default_range(org_id, f.end)
        tier_range = replace(f, start=start, end=end)
    members = cohort_members(org_id, tier_range, by=by)
    order = [name for name in TIERS if members.get(name)] if by == "tier" else sorted(members)
    shown = broken_down(
        {name: members[name] for name in order},
        counted={t for t in TIERS if t != "none"} if by == "tier" else None,
        disjoint=not people,
    )
    # Who is in which shown cohort (a developer can be in several teams), for the database to
    # count per cohort and week: developers active in the week's days inside the range, and
    # their acceptances on those days; and everyone's (cohort -1), for `_held_back`. For
    # members, without the tools fewer than five used in the range (as on the overview).
    pairs = [(p, i) for i, name in enumerate(shown) for p in members[name]]
    params = _params(org_id, f) | {
        "people": [p for p, _i in pairs],
        "cohort": [i for _p, i in pairs],
    }
    weekly_rows = f"SELECT developer, week, acceptances FROM {_range_rows(f, 'acceptances')} r"
    everyone = in_cells = ""
    if cells is not None:
        everyone = "SELECT -1, week, count(*), sum(acceptances)::bigint FROM d GROUP BY week"
        everyone = f"UNION ALL {everyone}"
        params |= cells.params
        in_cells = cells.join
    if in_cells:
        weekly_rows = f"""
            SELECT developer, r.week, sum(acceptances)::bigint AS acceptances
            FROM {_range_rows(f, "acceptances", per_tool=True)} r {in_cells}
            GROUP BY developer, r.week"""
    weekly = _rows(
        f"""
        WITH d AS MATERIALIZED ({weekly_rows})
        SELECT NULL::int, date - {_DOW} AS week, 0, 0 FROM daily_tool_rollups
        WHERE organization_id = %(org)s AND date BETWEEN %(start)s AND %(end)s {_tool_clause(f)}
        GROUP BY 2
        {everyone}
        UNION ALL
        SELECT m.cohort, d.week, count(*), sum(d.acceptances)::bigint
        FROM d
        JOIN (
            -- Grouped (the pairs are distinct anyway) so that the planner estimates the join
            -- from the pairs' count, and hashes them rather than sorting every weekly row.
            SELECT developer, cohort
            FROM unnest(%(people)s::uuid[], %(cohort)s::int[]) AS m (developer, cohort)
            GROUP BY developer, cohort
        ) m ON m.developer = d.developer
        GROUP BY m.cohort, d.week
        """,
        params,
    )
    weeks = sorted({w for cohort, w, _n, _a in weekly if cohort is None})
    counts = {(cohort, w): (n, a) for cohort, w, n, a in weekly if cohort is not None}
    held = set()
    if not people:
        held = _held_back(shown, weeks, counts) | _held_in_other_views(
            org_id, f, shown, params, same_members=by == "team"
        )
    cell_weeks = {c[0] for c in cells.shown} if cells is not None else set()
    table = []
    for name in order:
        small = len(members[name]) < SMALL_COHORT
        row = {
            "name": name,
            "size": len(members[name]),
            "suppressed": name not in shown,
            "small": small,
            # Held back for sharing developers with a cohort shown (members only).
            "overlaps": name not in shown
            and not small
            and not people
            and any(members[name] & members[other] for other in shown),
            "weeks": [],
        }
        if name in shown:
            index = shown.index(name)
            for week in weeks:
                n_active, total = counts.get((index, week), (0, 0))
                row["weeks"].append(
                    {
                        "week": week,
                        # No figure for a week whose every tool is left out (members).
                        "active_share": (
                            round(100 * n_active / len(members[name]), 1)
                            if cells is None or week in cell_weeks
                            else None
                        ),
                        # No figure with nobody active, nor where it is held back.
                        "per_active": (
                            round(total / n_active, 1)
                            if n_active and (index, week) not in held
                            else None
                        ),
                    }
                )
        table.append(row)
    by_name = {r["name"]: r for r in table}
    chart = Chart(
        "cohorts",
        "Share of the cohort active per week",
        ["Week of", *shown],
        [
            [_week_label(w, f), *[by_name[n]["weeks"][i]["active_share"] for n in shown]]
            for i, w in enumerate(weeks)
        ],
        percent=True,
    ).render()
    chart2 = Chart(
        "accepted",
        "Acceptances per active developer per week",
        ["Week of", *shown],
        [
            [_week_label(w, f), *[by_name[n]["weeks"][i]["per_active"] for n in shown]]
            for i, w in enumerate(weeks)
        ],
    ).render()
    # Nothing to draw when every cohort is held back.
    return {
        "cohorts": table,
        "charts": [chart, chart2] if shown else [],
        "weeks": weeks,
        # The table's column heads: each week, with the days of it the range counts if cut.
        "week_heads": [(w, _week_days(w, f)) for w in weeks],
        "widened": widened,
        "tiers_from": tier_range if tier_range is not f else None,
    }


# --- identities ----------------------------------------------------------------------------------


def _login_stem(login: str) -> str:
    """Enterprise-managed logins carry a _SHORTCODE suffix: mona_acme → mona."""
    return login.lower().rsplit("_", 1)[0] if "_" in login else login.lower()


def _loose(text: str) -> str:
    """A login or an email's local part with what tells them apart in practice taken out: a
    +tag, and dots, dashes and underscores (GitHub logins have no dots: mona.lisa@ is likely
    mona-lisa or monalisa)."""
    return re.sub(r"[._-]", "", text.lower().split("+", 1)[0])


def unmatched_identities() -> list[dict]:
    """Identities known by a login only or an email only, not yet reviewed, each with the
    likely other half: same name, or an email whose local part is the login (or is it but
    for a +tag, dots, dashes and underscores)."""
    lonely = list(
        DeveloperIdentity.objects.filter(reviewed=False, api_key_name="")
        .filter(Q(email="") | Q(github_login=""))
        .order_by("github_login", "email")
    )
    # Their daily rows (one per day and tool) and last day, from the weekly per-tool rollup.
    stats = {
        identity_id: (rows, last)
        for identity_id, rows, last in _rows(
            f"""
            SELECT developer_identity_id, sum({_DAY_COUNT}[days + 1])::int,
                   max(week + {_LAST_DAY}[days + 1])
            FROM {TOOL_WEEKLY}
            WHERE organization_id = %s AND developer_identity_id = ANY(%s::uuid[])
            GROUP BY developer_identity_id
            """,
            [require_org_id(), [i.pk for i in lonely]],
        )
    }
    for identity in lonely:
        identity.days, identity.last = stats.get(identity.pk, (0, None))
    email_only = [i for i in lonely if i.email and not i.github_login]
    login_only = [i for i in lonely if i.github_login and not i.email]
    by_local = defaultdict(list)
    by_loose = defaultdict(list)
    by_name = defaultdict(list)
    for identity in email_only:
        local = identity.email.split("@")[0].lower()
        by_local[local].append(identity)
        by_loose[_loose(local)].append(identity)
    for identity in lonely:
        name = (identity.display_name or "").strip().lower()
        if name and name not in (identity.github_login.lower(), identity.email.split("@")[0]):
            by_name[name].append(identity)
    result = []
    # Login-to-email matches, each suggested on both sides.
    matched = defaultdict(list)
    for identity in login_only:
        keys = {identity.github_login.lower(), _login_stem(identity.github_login)}
        found = [
            (other, "email local part equals the login") for k in keys for other in by_local[k]
        ]
        found += [
            (other, "email local part is the login, but for . - _ or a +tag")
            for k in {_loose(k) for k in keys}
            for other in by_loose[k]
        ]
        for other, why in found:
            matched[identity.pk].append((other, why))
            matched[other.pk].append((identity, why))
    for identity in login_only + email_only:
        suggestions = list(matched[identity.pk])
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
