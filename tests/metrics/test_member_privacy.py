"""What a member can work out from the cohorts page and the overview together.

Each test sets up data in which, before the rules of `selectors.cohorts` for members, one
person's (or fewer than five people's) weekly acceptances could be worked out: subtracting the
cohorts' figures from the overview's totals, one cohort's from another's, or one range's from
another's. The review that found them showed each attack working; here each must fail. The
number active in a cohort is known to a member (active share times size), so a figure per active
developer times that number is the cohort's total."""

from __future__ import annotations

import pytest

from tests.metrics.helpers import TAP_CSV, claude_record, copilot_record, ingest, ndjson, write
from tests.metrics.test_pages import url

pytestmark = pytest.mark.django_db
WEEK = {"start": "2026-03-30", "end": "2026-04-05"}  # Monday to Sunday


def load(org, tmp_path, records, teams=()):
    assert ingest(org, write(tmp_path, "w.ndjson", ndjson(records))).status == "succeeded"
    if teams:
        mapping = "github_login,email,name,team\n" + "".join(f"{a},,,{t}\n" for a, t in teams)
        assert ingest(org, write(tmp_path, "map.csv", mapping)).status == "succeeded"


def team_on_copilot(org, tmp_path, team: str, size: int, day: str) -> None:
    """`size` developers ({team}0, {team}1 …) in team `team`, each on Copilot that day."""
    logins = [f"{team}{i}" for i in range(size)]
    load(
        org,
        tmp_path,
        [copilot_record(login, day=day) for login in logins],
        [(login, team) for login in logins],
    )


def on_cursor(org, tmp_path, days) -> None:
    """(day, login, suggestions, acceptances) rows of a tool Tap knows from its own CSV."""
    rows = "".join(f"{day},cursor,{login},,{s},{a},0,1\n" for day, login, s, a in days)
    assert ingest(org, write(tmp_path, "cursor.csv", TAP_CSV + rows)).status == "succeeded"


def member_sees(client, org, query, by):
    """(active in the week, acceptances in the week) from the overview, and per cohort shown
    (active, total acceptances or None where held back) for the first week."""
    overview = client.get(url("overview", org), query).context
    daily = next(c for c in overview["charts"] if c.id == "suggestions")
    week_active = next(c for c in overview["charts"] if c.id == "weekly").rows[0][1]
    cohorts = client.get(url("cohorts", org), {**query, "by": by}).context["cohorts"]
    shown = {}
    for cohort in cohorts:
        if cohort["suppressed"]:
            continue
        week = cohort["weeks"][0]
        n = round(week["active_share"] * cohort["size"] / 100)
        per = week["per_active"]
        shown[cohort["name"]] = (n, None if per is None else round(per * n))
    return week_active, sum(row[2] or 0 for row in daily.rows), shown


def assert_no_few_left_over(active, shown):
    """The developers active that week whose acceptances are in no figure shown: none, or at
    least five (the overview's total less the figures shown is theirs together)."""
    outside = active - sum(n for n, total in shown.values() if total is not None)
    assert outside == 0 or outside >= 5, (active, shown)


def test_a_developer_in_no_team_is_covered(client_for, bob, org_a, tmp_path):
    logins = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]
    records = [copilot_record(login, day="2026-04-01") for login in logins]
    records.append(copilot_record("loner", day="2026-04-01", code_acceptance_activity_count=17))
    load(org_a, tmp_path, records, [(login, login[0]) for login in logins])
    active, _acc, shown = member_sees(client_for(bob), org_a, WEEK, "team")
    assert active == 13
    assert_no_few_left_over(active, shown)


def test_an_api_key_outside_the_tiers_is_covered(client_for, bob, org_a, tmp_path):
    records = [
        copilot_record(f"u{i}", day="2026-04-01", code_generation_activity_count=10 + i)
        for i in range(20)
    ]
    load(org_a, tmp_path, records)
    claude = [claude_record(email=f"u{i}@x.example", date="2026-04-02T00:00:00Z") for i in range(4)]
    key = claude_record(date="2026-04-02T00:00:00Z", accepted=29)
    key["actor"] = {"type": "api_actor", "api_key_name": "ci-bot"}
    assert ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([*claude, key]))).status == "succeeded"
    active, _acc, shown = member_sees(client_for(bob), org_a, WEEK, "tier")
    assert_no_few_left_over(active, shown)


def test_an_api_key_does_not_make_four_people_five(client_for, bob, alice, org_a, tmp_path):
    """Four people and a CI key used Claude Code that week: a member sees no Claude Code
    figure for it (they would be those four's); an admin sees it all."""
    claude = [claude_record(email=f"u{i}@x.example", date="2026-04-02T00:00:00Z") for i in range(4)]
    key = claude_record(date="2026-04-02T00:00:00Z", accepted=29)
    key["actor"] = {"type": "api_actor", "api_key_name": "ci-bot"}
    assert ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([*claude, key]))).status == "succeeded"
    member = client_for(bob).get(url("overview", org_a), WEEK)
    assert "Fewer than 5 developers used Claude Code" in member.content.decode()
    admin = client_for(alice).get(url("overview", org_a), WEEK)
    assert "Fewer than 5 developers" not in admin.content.decode()


def test_overlapping_teams_are_not_both_broken_down(client_for, bob, org_a, tmp_path):
    """Nested GitHub teams: big = d0-d5, sub = d0-d4; big less sub would be d5."""
    teams = [(f"d{i}", "big") for i in range(6)] + [(f"d{i}", "sub") for i in range(5)]
    records = [
        copilot_record(f"d{i}", day="2026-04-01", code_acceptance_activity_count=4 if i < 5 else 23)
        for i in range(6)
    ]
    load(org_a, tmp_path, records, teams)
    response = client_for(bob).get(url("cohorts", org_a), {**WEEK, "by": "team"})
    rows = {c["name"]: c for c in response.context["cohorts"]}
    assert not rows["big"]["suppressed"]
    assert rows["sub"]["suppressed"]
    assert rows["sub"]["overlaps"]
    assert "shares developers with a cohort shown" in response.content.decode()


def test_held_back_teams_that_overlap_count_their_people_once(client_for, bob, org_a, tmp_path):
    teams = [(f"p{i}", t) for i in range(3) for t in "ab"]
    teams += [(f"q{i}", "a") for i in range(3)] + [(f"r{i}", "b") for i in range(3)]
    teams += [(f"c{i}", "c") for i in range(5)]
    records = [
        copilot_record(f"p{i}", day="2026-04-01", code_acceptance_activity_count=i + 1)
        for i in range(3)
    ]
    records += [copilot_record(f"c{i}", day="2026-04-01") for i in range(5)]
    records += [copilot_record(f"{x}{i}", day="2026-03-02") for x in "qr" for i in range(3)]
    load(org_a, tmp_path, records, teams)
    active, _acc, shown = member_sees(client_for(bob), org_a, WEEK, "team")
    assert active == 8
    assert_no_few_left_over(active, shown)


def test_a_tool_hidden_on_the_overview_is_left_out_of_the_cohorts(client_for, bob, org_a, tmp_path):
    logins = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]
    load(
        org_a,
        tmp_path,
        [copilot_record(login, day="2026-04-01") for login in logins],
        [(login, login[0]) for login in logins],
    )
    claude = [claude_record(email="a0@x.example", date="2026-04-02T00:00:00Z", accepted=31)]
    assert ingest(org_a, write(tmp_path, "cc.ndjson", ndjson(claude))).status == "succeeded"
    mapping = "github_login,email,name,team\na0,a0@x.example,,a\n"
    assert ingest(org_a, write(tmp_path, "map2.csv", mapping)).status == "succeeded"
    _active, acc, shown = member_sees(client_for(bob), org_a, WEEK, "team")
    assert sum(total for _n, total in shown.values() if total is not None) == acc


def test_cutting_a_week_two_ways_gives_nothing_away(client_for, bob, org_a, tmp_path):
    """a6 alone active on Wednesday: Monday to Wednesday less Monday to Tuesday would be
    a6's Wednesday. Members' cohorts are in whole weeks, whatever the range."""
    records = [copilot_record(f"a{i}", day="2026-03-30") for i in range(6)]
    records.append(copilot_record("a6", day="2026-04-01", code_acceptance_activity_count=13))
    records += [
        copilot_record(f"b{i}", day=day)
        for i in range(6)
        for day in ("2026-03-30", "2026-03-31", "2026-04-01")
    ]
    teams = [(f"a{i}", "a") for i in range(7)] + [(f"b{i}", "b") for i in range(6)]
    load(org_a, tmp_path, records, teams)
    client = client_for(bob)
    figures = [
        member_sees(client, org_a, {"start": "2026-03-30", "end": end}, "team")[2]
        for end in ("2026-03-31", "2026-04-01")
    ]
    assert figures[0] == figures[1]
    response = client.get(url("cohorts", org_a), {"start": "2026-03-31", "end": "2026-04-01"})
    assert "Weeks are shown whole: Mar 30, 2026 to Apr 5, 2026" in response.content.decode()


def test_usage_tiers_do_not_move_with_the_range(client_for, bob, dave, org_a, tmp_path):
    """u0 moves up to heavy in week 2: tiers of week 1 alone and of weeks 1-2 would differ
    by u0 alone. Members' tiers are the last four weeks of data's, whatever the range."""
    records = [
        copilot_record(
            f"u{i}",
            day="2026-04-01",
            code_generation_activity_count=10 if i < 10 else 20,
            code_acceptance_activity_count=7 if i == 0 else 4,
        )
        for i in range(20)
    ]
    records += [
        copilot_record(
            f"u{i}",
            day="2026-04-08",
            code_generation_activity_count=30 if i == 0 else (10 if i < 10 else 20),
        )
        for i in range(20)
    ]
    load(org_a, tmp_path, records)

    def heavy(client, end):
        query = {"start": "2026-03-30", "end": end, "by": "tier"}
        cohorts = client.get(url("cohorts", org_a), query).context["cohorts"]
        (row,) = [c for c in cohorts if c["name"] == "heavy"]
        return row["size"], row["weeks"][0]["per_active"]

    member = client_for(bob)
    assert heavy(member, "2026-04-05") == heavy(member, "2026-04-12")
    # Admins' tiers follow the range.
    admin = client_for(dave)
    assert heavy(admin, "2026-04-05") != heavy(admin, "2026-04-12")


def test_a_day_few_worked_is_not_shown_to_members(client_for, bob, dave, org_a, tmp_path):
    """Ten developers on Monday and Tuesday, d0 alone on Saturday: a per-day chart would show
    d0's Saturday, and Monday to Sunday less Monday to Friday would too. Members get whole
    weeks; admins still get days."""
    records = [
        copilot_record(f"d{i}", day=day) for i in range(10) for day in ("2026-03-30", "2026-03-31")
    ]
    records.append(
        copilot_record("d0", day="2026-04-04", code_generation_activity_count=37, loc_added_sum=39)
    )
    load(org_a, tmp_path, records)
    member = client_for(bob)
    kpis = [
        member.get(url("overview", org_a), {"start": "2026-03-30", "end": end}).context["kpis"]
        for end in ("2026-04-03", "2026-04-05")
    ]
    assert kpis[0] == kpis[1]
    response = member.get(url("overview", org_a), {"start": "2026-03-30", "end": "2026-04-05"})
    suggestions = next(c for c in response.context["charts"] if c.id == "suggestions")
    assert suggestions.columns[0] == "Week of"
    assert [row[1] for row in suggestions.rows] == [10 * 2 * 10 + 37]
    assert "Figures by whole week" in response.content.decode()
    admin = client_for(dave).get(
        url("overview", org_a), {"start": "2026-03-30", "end": "2026-04-05"}
    )
    days = next(c for c in admin.context["charts"] if c.id == "suggestions")
    assert dict((row[0], row[1]) for row in days.rows)["2026-04-04"] == 37


def test_a_pilot_tools_early_weeks_stay_out_when_the_range_grows(client_for, bob, org_a, tmp_path):
    """d0 tries Cursor alone in week 1; five others use it in week 3. Over weeks 1-3 Cursor
    has enough users for the range, but not for week 1: that week stays out, on the overview
    and in the cohorts (all tools over weeks 1-3 less week 1 alone would be d0's Cursor)."""
    team_on_copilot(org_a, tmp_path, "t", 10, "2026-03-31")
    on_cursor(
        org_a,
        tmp_path,
        [("2026-03-31", "t0", 50, 21), *(("2026-04-14", f"p{i}", 10, 4) for i in range(5))],
    )
    member = client_for(bob)
    three = {"start": "2026-03-30", "end": "2026-04-19"}
    pilot = member.get(url("overview", org_a), {**three, "tool": "cursor"}).context
    suggestions = next(c for c in pilot["charts"] if c.id == "suggestions")
    assert [row[1] for row in suggestions.rows] == [None, None, 50]
    assert pilot["kpis"]["suggestions"] == 50
    week_one = member_sees(member, org_a, WEEK, "team")[2]
    over_three = member_sees(member, org_a, three, "team")[2]
    assert week_one["t"] == over_three["t"]


def test_a_cohorts_all_tools_less_one_tool_gives_nothing_away(client_for, bob, org_a, tmp_path):
    """Team a: six on Copilot, and a0 alone of them on Cursor (which six use in all). The
    team's all-tools week less its Copilot week would be a0's Cursor week."""
    team_on_copilot(org_a, tmp_path, "a", 6, "2026-04-01")
    on_cursor(
        org_a,
        tmp_path,
        [("2026-04-01", login, 20, 9) for login in ["a0", "x0", "x1", "x2", "x3", "x4"]],
    )
    member = client_for(bob)
    all_tools = member_sees(member, org_a, WEEK, "team")[2]
    copilot = member.get(url("cohorts", org_a), {**WEEK, "by": "team", "tool": "copilot"})
    (team_a,) = copilot.context["cohorts"]
    assert team_a["weeks"][0]["per_active"] == 4.0  # Copilot alone: six, shown
    assert all_tools["a"] == (6, None)  # so all tools are held back


def test_a_cell_held_back_in_one_tools_view_is_held_back_in_every_view(
    client_for, bob, org_a, tmp_path
):
    """Teams a and b, six each, all on Copilot; five of a and two of b on Cursor (seven in
    all, so Cursor's week is on the overview). Cursor's view holds back b (two) and then a
    (the week's seven less a's five would be b's two). Were a shown in the all-tools and the
    Copilot views, one less the other would be a's Cursor week, and the overview's Cursor
    week less that, b's two people's: all tools hold it back too, leaving Copilot's alone."""
    team_on_copilot(org_a, tmp_path, "a", 6, "2026-04-01")
    team_on_copilot(org_a, tmp_path, "b", 6, "2026-04-01")
    cursor_users = ["a0", "a1", "a2", "a3", "a4", "b0", "b1"]
    on_cursor(
        org_a,
        tmp_path,
        [("2026-04-01", login, 30, 3 + i) for i, login in enumerate(cursor_users)],
    )
    member = client_for(bob)
    views = {}
    for tool in ["", "copilot", "cursor"]:
        page = member.get(url("cohorts", org_a), {**WEEK, "by": "team", "tool": tool})
        views[tool] = {
            c["name"]: c["weeks"][0]["per_active"] for c in page.context["cohorts"] if c["weeks"]
        }
    assert views["cursor"] == {"a": None, "b": None}
    assert views[""]["a"] is None
    assert views["copilot"]["a"] == 4.0
    # Each cell is held back in no view, or in two or more: no figure follows from others.
    for team in ["a", "b"]:
        assert [views[tool][team] for tool in views].count(None) != 1, views


def test_a_week_left_out_is_no_figure_not_nobody(client_for, bob, dave, org_a, tmp_path):
    """Eight on Copilot one week, three the next: members get no figure for the second week,
    active developers included (0 would say nobody worked); admins get 3."""
    records = [copilot_record(f"d{i}", day="2026-04-01") for i in range(8)]
    records += [copilot_record(f"d{i}", day="2026-04-08") for i in range(3)]
    load(org_a, tmp_path, records)
    query = {"start": "2026-03-30", "end": "2026-04-12"}
    member = client_for(bob).get(url("overview", org_a), query).context
    weekly = next(c for c in member["charts"] if c.id == "weekly")
    assert [n for _week, n in weekly.rows] == [8, None]
    daily = dict(next(c for c in member["charts"] if c.id == "active").rows)
    assert (daily["2026-04-01"], daily["2026-04-08"]) == (8, None)
    admin = client_for(dave).get(url("overview", org_a), query).context
    assert [n for _w, n in next(c for c in admin["charts"] if c.id == "weekly").rows] == [8, 3]


def test_with_every_week_left_out_members_get_the_notice_not_zeros(
    client_for, bob, org_a, tmp_path
):
    load(org_a, tmp_path, [copilot_record(f"d{i}", day="2026-04-01") for i in range(3)])
    member = client_for(bob)
    overview = member.get(url("overview", org_a), WEEK)
    assert overview.context["kpis"] is None
    assert "Fewer than 5 developers used GitHub Copilot in any week" in overview.content.decode()
    cohorts = member.get(url("cohorts", org_a), {**WEEK, "by": "adoption"})
    assert cohorts.context["cohorts"] == []
    assert "Fewer than 5 developers used GitHub Copilot in any week" in cohorts.content.decode()
