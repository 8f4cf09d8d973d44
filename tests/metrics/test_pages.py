"""Dashboards: members see aggregates only, admins see people; charts come with a table and a
formula-safe CSV; small cohorts are not broken down; query counts do not grow with data."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from metrics import extras, services
from metrics.models import DeveloperIdentity
from tap.tenancy import org_context
from tests.metrics.helpers import TAP_CSV, claude_record, copilot_record, ingest, ndjson, write

pytestmark = pytest.mark.django_db


def url(name, org, *args):
    return reverse(f"metrics:{name}", args=[org.slug, *args])


def load(org, tmp_path, developers=6, days=3, prefix="dev"):
    records = [
        copilot_record(
            f"{prefix}{i}", day=f"2026-04-0{d + 1}", code_generation_activity_count=10 + i
        )
        for i in range(developers)
        for d in range(days)
    ]
    return ingest(org, write(tmp_path, f"{prefix}.ndjson", ndjson(records)))


def test_member_sees_the_overview_with_charts_and_tables(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path)
    response = client_for(bob).get(url("overview", org_a))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<svg" in body
    assert "<polyline" in body
    assert "Active developers per day" in body
    assert "<details" in body  # the table under each chart
    assert response.context["kpis"]["developers"] == 6
    assert response.context["kpis"]["suggestions"] == sum(10 + i for i in range(6)) * 3
    # Members never get per-person links or tabs.
    assert url("developers", org_a) not in body


def test_filters_by_tool_and_range(client_for, dave, org_a, tmp_path):
    load(org_a, tmp_path)
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record(date="2026-04-02")])))
    client = client_for(dave)
    response = client.get(url("overview", org_a), {"tool": "claude_code"})
    assert response.context["kpis"]["suggestions"] == 8
    # Active developers counts the chosen tool's, not everyone's.
    assert response.context["kpis"]["developers"] == 1
    assert dict(response.context["charts"][0].rows)["2026-04-02"] == 1
    response = client.get(url("overview", org_a), {"start": "2026-04-01", "end": "2026-04-01"})
    assert response.context["kpis"]["developers"] == 6
    assert len(response.context["charts"][0].rows) == 1
    assert b"filter-problems" not in response.content


def test_a_week_the_range_cuts_says_how_many_of_its_days_count(client_for, dave, org_a, tmp_path):
    """Admins' ranges need not be whole weeks: a cut week's bar must not read as a drop."""
    load(org_a, tmp_path)  # Wednesday 1 to Friday 3 April 2026
    client = client_for(dave)
    cut = client.get(url("overview", org_a), {"start": "2026-04-01", "end": "2026-04-03"})
    weekly = next(c for c in cut.context["charts"] if c.id == "weekly")
    assert weekly.rows == [["2026-03-30 (3 of 7 days)", 6]]
    whole = client.get(url("overview", org_a), {"start": "2026-03-30", "end": "2026-04-05"})
    weekly = next(c for c in whole.context["charts"] if c.id == "weekly")
    assert weekly.rows == [["2026-03-30", 6]]
    cohorts = client.get(
        url("cohorts", org_a), {"by": "adoption", "start": "2026-04-01", "end": "2026-04-03"}
    )
    assert "2026-03-30 (3 of 7 days)" in cohorts.content.decode()


def test_the_date_and_tool_filters_keep_the_developer_search(client_for, dave, org_a, tmp_path):
    load(org_a, tmp_path)
    page = client_for(dave).get(url("developers", org_a), {"q": "dev1"}).content.decode()
    filters = page.split('aria-label="Filter metrics"')[1].split("</form>")[0]
    assert '<input type="hidden" name="q" value="dev1">' in filters


def test_a_tool_fewer_than_five_used_is_left_out_for_members(
    client_for, bob, dave, org_a, tmp_path
):
    load(org_a, tmp_path)  # six Copilot users, 10..15 suggestions a day for three days
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record(date="2026-04-02")])))
    copilot = sum(10 + i for i in range(6)) * 3
    member = client_for(bob)
    alone = member.get(url("overview", org_a), {"tool": "claude_code"})
    assert alone.context["kpis"] is None
    assert alone.context["charts"] == []
    assert "Fewer than 5 developers used Claude Code" in alone.content.decode()
    assert (
        member.get(url("overview", org_a), {"tool": "claude_code", "csv": "sessions"}).status_code
        == 404
    )
    # With all tools, its figures are not in the totals (else: totals less Copilot's).
    everything = member.get(url("overview", org_a))
    assert everything.context["kpis"]["suggestions"] == copilot
    assert everything.context["hidden"] == ["Claude Code (1 week)"]
    sessions = next(c for c in everything.context["charts"] if c.id == "sessions")
    assert sessions.columns == ["Week of", "GitHub Copilot"]
    adoption = next(c for c in everything.context["charts"] if c.id == "adoption")
    assert [row[0] for row in adoption.rows] == ["GitHub Copilot"]
    assert "fewer than 5 developers used it: Claude Code (1 week)" in (everything.content.decode())
    # Nor are its developer's active days counted (all tools less Copilot would give them).
    assert everything.context["kpis"]["developers"] == 6
    active = next(c for c in everything.context["charts"] if c.id == "active")
    assert dict(active.rows)["2026-04-02"] == 6
    weekly = next(c for c in everything.context["charts"] if c.id == "weekly")
    assert [n for _week, n in weekly.rows if n] == [6]
    # Nor are cohorts broken down for it.
    cohorts = member.get(url("cohorts", org_a), {"by": "adoption", "tool": "claude_code"})
    assert cohorts.context["cohorts"] == []
    assert "Fewer than 5 developers used Claude Code" in cohorts.content.decode()
    # Admins and owners see everything.
    admin_client = client_for(dave)
    admin = admin_client.get(url("overview", org_a))
    assert admin.context["kpis"]["suggestions"] == copilot + 8
    assert admin.context["kpis"]["developers"] == 7
    assert (
        dict(next(c for c in admin.context["charts"] if c.id == "active").rows)["2026-04-02"] == 7
    )
    assert admin.context["hidden"] == []
    cohorts = admin_client.get(url("cohorts", org_a), {"by": "adoption", "tool": "claude_code"})
    assert [c["name"] for c in cohorts.context["cohorts"]] == ["2026-04"]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"start": "9999-12-31", "end": "9999-12-31"}, "Choose a day between"),
        ({"start": "0001-01-01", "end": "0001-01-03"}, "Choose a day between"),
        ({"start": "2026-04-0a"}, "Enter a valid date."),
        ({"tool": "nonsense"}, "No metrics for a tool called “nonsense”"),
    ],
)
@pytest.mark.parametrize("name", ["overview", "cohorts", "developers"])
def test_bad_filters_say_so_and_fall_back_to_the_defaults(
    name, params, problem, client_for, alice, org_a, tmp_path
):
    load(org_a, tmp_path)
    response = client_for(alice).get(url(name, org_a), params)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="filter-problems"' in body
    assert problem in body
    f = response.context["f"]
    assert (str(f.start), str(f.end), f.tool) == ("2026-03-07", "2026-04-03", "")


def test_a_bad_field_leaves_the_good_ones_applied(client_for, alice, org_a, tmp_path):
    load(org_a, tmp_path)
    response = client_for(alice).get(
        url("overview", org_a), {"start": "2026-04-0a", "end": "2026-04-02", "tool": "copilot"}
    )
    f = response.context["f"]
    assert (str(f.start), str(f.end), f.tool) == ("2026-03-06", "2026-04-02", "copilot")
    assert "“From”: Enter a valid date." in response.content.decode()


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"end": "2026-01-31"}, ("2026-01-04", "2026-01-31")),
        ({"start": "2026-01-01"}, ("2026-01-01", "2026-04-03")),
        ({"start": "2026-05-01"}, ("2026-05-01", "2026-05-28")),
        ({"start": "2026-04-02", "end": "2026-04-01"}, ("2026-04-01", "2026-04-02")),
    ],
)
def test_one_end_of_the_range_given(client_for, alice, org_a, tmp_path, params, shown):
    load(org_a, tmp_path)  # data up to 2026-04-03: the default is the 28 days to it
    response = client_for(alice).get(url("overview", org_a), params)
    f = response.context["f"]
    assert (str(f.start), str(f.end)) == shown
    swapped = "“From” came after “To”" in response.content.decode()
    assert swapped == (len(params) == 2)


def test_a_range_longer_than_a_year_is_cut_and_says_so(client_for, alice, org_a, tmp_path):
    load(org_a, tmp_path)
    response = client_for(alice).get(
        url("overview", org_a), {"start": "2020-01-01", "end": "2026-04-03"}
    )
    f = response.context["f"]
    assert (str(f.start), str(f.end)) == ("2025-04-03", "2026-04-03")
    assert "At most 366 days at a time" in response.content.decode()


def test_chart_csv_download(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path)
    response = client_for(bob).get(url("overview", org_a), {"csv": "suggestions"})
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "Week of,Suggestions,Acceptances"  # members get weeks
    assert len(lines) > 1


def test_csv_is_safe_from_formula_injection(client_for, alice, org_a, tmp_path):
    text = TAP_CSV + "2026-04-01,cursor,=cmd|calc,,1,1,1,1\n"
    ingest(org_a, write(tmp_path, "evil.csv", text))
    response = client_for(alice).get(url("developers", org_a), {"csv": "1"})
    body = response.content.decode()
    assert "'=cmd|calc" in body
    assert "\n=cmd" not in body
    assert ",=cmd" not in body


def test_members_cannot_see_people(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path)
    client = client_for(bob)
    with org_context(org_a.id):
        identity = DeveloperIdentity.objects.first()
    assert client.get(url("developers", org_a)).status_code == 403
    assert client.get(url("developer", org_a, identity.pk)).status_code == 403
    assert client.get(url("identities", org_a)).status_code == 403


def test_admin_sees_developer_page_with_linked_identities(client_for, dave, org_a, tmp_path):
    load(org_a, tmp_path)
    with org_context(org_a.id):
        identity = DeveloperIdentity.objects.get(github_login="dev1")
    response = client_for(dave).get(url("developer", org_a, identity.pk))
    assert response.status_code == 200
    assert len(response.context["daily"]) == 3
    assert b"<svg" in response.content


def _counts(generated, accepted, prompts=0):
    return {
        "code_generation_activity_count": generated,
        "code_acceptance_activity_count": accepted,
        "loc_added_sum": accepted * 2,
        "user_initiated_interaction_count": prompts,
    }


def test_developer_page_breaks_each_tool_down_from_its_exports(client_for, dave, org_a, tmp_path):
    """The exports' breakdowns, summed over the developer's days in the range: Copilot by IDE,
    feature, language (over its features) and model; Claude Code's tool actions, tokens and
    cost. Each chart has its CSV; a day outside the range counts nowhere."""

    def copilot_day(day, vscode, jetbrains):
        return copilot_record(
            "mona",
            day=day,
            user_id=7,
            used_chat=True,
            used_agent=day == "2026-04-01",
            ai_credits_used=1.25,
            totals_by_ide=[
                {"ide": "vscode", **_counts(vscode, 4, 1)},
                {"ide": "jetbrains", **_counts(jetbrains, 1)},
            ],
            totals_by_feature=[{"feature": "chat_panel_agent_mode", **_counts(3, 2, 5)}],
            totals_by_language_feature=[
                {"language": "python", "feature": "code_completion", **_counts(6, 3)},
                {"language": "python", "feature": "chat_panel_ask_mode", **_counts(2, 1)},
                {"language": "go", "feature": "code_completion", **_counts(9, 0)},
            ],
            totals_by_model_feature=[{"model": "gpt-4.1", "feature": "agent", **_counts(3, 2)}],
        )

    def claude_day(date, cost):
        record = claude_record("mona@x.example", date=date, accepted=7)
        record["tool_actions"]["write_tool"] = {"accepted": 2, "rejected": 3}
        record["model_breakdown"] = [
            {
                "model": "claude-sonnet-4-5",
                "tokens": {"input": 100, "output": 40, "cache_read": 900, "cache_creation": 0},
                "estimated_cost": {"amount": cost, "currency": "USD"},
            }
        ]
        return record

    copilot = [
        copilot_day("2026-04-01", 10, 5),
        copilot_day("2026-04-02", 20, 0),
        copilot_day("2026-05-20", 1000, 1000),  # outside the range
    ]
    claude = [claude_day("2026-04-01", 42), claude_day("2026-04-03", 100)]
    mapping = "github_login,email,name,team\nmona,mona@x.example,Mona,\n"
    for name, content in (
        ("map.csv", mapping),
        ("copilot.ndjson", ndjson(copilot)),
        ("claude.ndjson", ndjson(claude)),
    ):
        assert ingest(org_a, write(tmp_path, name, content)).status == "succeeded"
    with org_context(org_a.id):
        identity = DeveloperIdentity.objects.get(github_login="mona")
    client = client_for(dave)
    page = url("developer", org_a, identity.pk)
    response = client.get(page, {"start": "2026-04-01", "end": "2026-04-10"})
    copilot_b, claude_b = response.context["breakdowns"]
    charts = {c.id: c for b in (copilot_b, claude_b) for c in b["charts"]}
    # [generated, accepted, lines added, prompts], most generated first.
    assert charts["copilot-ide"].rows == [["vscode", 30, 8, 16, 2], ["jetbrains", 5, 2, 4, 0]]
    assert charts["copilot-feature"].rows == [["Chat panel agent mode", 6, 4, 8, 10]]
    # GitHub gives no prompts by language: no column of zeros.
    assert charts["copilot-language"].rows == [["go", 18, 0, 0], ["python", 16, 8, 16]]
    assert charts["copilot-model"].rows == [["gpt-4.1", 6, 4, 8, 0]]
    # Days each feature was used, in one order whatever the export's.
    assert copilot_b["figures"] == [
        ("Chat and agent prompts", 4),
        ("AI credits used", 2.5),
        ("Days using chat", 2),
        ("Days using agent mode", 1),
    ]
    assert charts["claude-actions"].rows == [["Edit", 14, 2], ["Write", 4, 6]]
    assert charts["claude-tokens"].rows == [["claude-sonnet-4-5", 200, 80, 1800, 0]]
    assert charts["claude-cost"].rows == [["claude-sonnet-4-5", 1.42]]
    assert dict(claude_b["figures"]) == {
        "Lines removed": 10,
        "Commits": 2,
        "Estimated cost (USD)": 1.42,
        "Input tokens": 200,
        "Output tokens": 80,
        "Cache read tokens": 1800,
    }
    body = response.content.decode()
    assert "GitHub Copilot by language" in body
    assert "Claude Code tokens by model" in body
    assert '<dd class="fs-5 mb-0">1,800</dd>' in body  # cache read tokens, grouped
    download = client.get(
        page, {"start": "2026-04-01", "end": "2026-04-10", "csv": "copilot-language"}
    )
    assert download.content.decode("utf-8-sig").splitlines() == [
        "Language,Generated,Accepted,Lines added",
        "go,18,0,0",
        "python,16,8,16",
    ]
    # One tool chosen: only its breakdown.
    response = client.get(page, {"start": "2026-04-01", "end": "2026-04-10", "tool": "claude_code"})
    assert [b["tool"] for b in response.context["breakdowns"]] == ["Claude Code"]


def test_claude_code_names_shown_alike_are_one_bar_and_costs_are_to_the_cent(
    client_for, dave, org_a, tmp_path
):
    """One record may name a model twice, or models without a name; `edit_tool` and `edit`
    both read "Edit". Each is one bar, whatever the range holds; cents that are not whole
    add up to dollars without float noise."""
    record = claude_record("kim@x.example")
    record["tool_actions"] = {
        "edit_tool": {"accepted": 7, "rejected": 1},
        "edit": {"accepted": 1, "rejected": 0},
    }
    record["model_breakdown"] = [
        {"model": "m", "tokens": {"input": 1}, "estimated_cost": {"amount": 20.2}},
        {"model": "m", "tokens": {"input": 2}, "estimated_cost": {"amount": 10.1}},
        {"tokens": {"input": 3}, "estimated_cost": {"amount": 0}},
        {"model": "", "tokens": {"input": 4}, "estimated_cost": {"amount": 0}},
    ]
    assert ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([record]))).status == "succeeded"
    with org_context(org_a.id):
        identity = DeveloperIdentity.objects.get(email="kim@x.example")
    response = client_for(dave).get(
        url("developer", org_a, identity.pk), {"start": "2026-04-01", "end": "2026-04-01"}
    )
    (claude,) = response.context["breakdowns"]
    charts = {c.id: c for c in claude["charts"]}
    assert charts["claude-actions"].rows == [["Edit", 8, 1]]
    assert charts["claude-tokens"].rows == [["m", 3, 0, 0, 0], ["unknown", 7, 0, 0, 0]]
    assert charts["claude-cost"].rows == [["m", 0.3]]
    assert dict(claude["figures"])["Estimated cost (USD)"] == 0.3


def test_a_long_breakdown_keeps_its_largest_and_sums_the_rest():
    summed = extras.total(
        [
            {"by_ide": {f"ide{i}": [i, 0, 0, 0] for i in range(1, 13)}},
            {"by_ide": {"ide1": [100, 1, 0, 0]}},
        ]
    )
    rows = extras.breakdown(summed, "by_ide", shown=4)
    assert rows == [
        ("ide1", [101, 1, 0, 0]),
        ("ide12", [12, 0, 0, 0]),
        ("ide11", [11, 0, 0, 0]),
        ("Other (9)", [sum(range(2, 11)), 0, 0, 0]),
    ]


def test_another_orgs_identity_is_404(client_for, charlie, alice, org_a, org_b, tmp_path):
    load(org_a, tmp_path)
    with org_context(org_a.id):
        identity = DeveloperIdentity.objects.first()
    # charlie is admin of B: A's identity through B's URL is a plain 404.
    response = client_for(charlie).get(url("developer", org_b, identity.pk))
    assert response.status_code == 404


def test_small_cohorts_are_not_broken_down(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path, developers=12)
    teams = ["big"] * 6 + ["mid"] * 5 + ["tiny"]
    mapping = "github_login,email,name,team\n" + "".join(
        f"dev{i},,,{team}\n" for i, team in enumerate(teams)
    )
    assert ingest(org_a, write(tmp_path, "map.csv", mapping)).status == "succeeded"
    response = client_for(bob).get(url("cohorts", org_a), {"by": "team"})
    cohorts = {c["name"]: c for c in response.context["cohorts"]}
    assert cohorts["big"]["suppressed"] is False
    assert cohorts["big"]["weeks"]
    assert cohorts["tiny"]["suppressed"] is True
    assert cohorts["tiny"]["weeks"] == []
    # Shown, "mid" would give "tiny" away: the totals less "big" and "mid" are its figures.
    assert cohorts["mid"]["suppressed"] is True
    assert cohorts["mid"]["weeks"] == []
    assert cohorts["mid"]["size"] == 5
    assert response.context["charts"][0].columns == ["Week of", "big"]
    body = response.content.decode()
    assert "fewer than 5" in body
    assert "would give away those of the small cohorts" in body


def test_a_week_with_fewer_than_five_active_gives_members_no_per_developer_figure(
    client_for, bob, dave, org_a, tmp_path
):
    """A team of six with two active in a week: their acceptances per active developer would
    be those two's. Members get a gap (table and chart); admins, who see people, the figure."""
    records = (
        [
            copilot_record(f"dev{i}", day="2026-04-01", code_acceptance_activity_count=3 + i)
            for i in range(2)
        ]
        + [copilot_record(f"dev{i}", day="2026-04-07") for i in range(6)]
        # Five others that week, in no team: Copilot's week has at least five users.
        + [copilot_record(f"other{i}", day="2026-04-01") for i in range(5)]
    )
    assert ingest(org_a, write(tmp_path, "weeks.ndjson", ndjson(records))).status == "succeeded"
    mapping = "github_login,email,name,team\n" + "".join(f"dev{i},,,web\n" for i in range(6))
    assert ingest(org_a, write(tmp_path, "map.csv", mapping)).status == "succeeded"
    query = {"by": "team", "start": "2026-03-30", "end": "2026-04-12"}

    member = client_for(bob).get(url("cohorts", org_a), query)
    (web,) = member.context["cohorts"]
    assert [(w["active_share"], w["per_active"]) for w in web["weeks"]] == [
        (33.3, None),
        (100.0, 4.0),
    ]
    per_active = member.context["charts"][1]
    assert [row[1] for row in per_active.rows] == [None, 4.0]
    # One week with a figure, next to one without: a dot, not a line down to 0.
    (line,) = per_active.svg["lines"]
    assert (line["segments"], len(line["dots"])) == ([], 1)
    body = member.content.decode()
    assert "33.3% · —" in body
    assert "fewer than 5 of the cohort were active" in body
    csv = client_for(bob).get(url("cohorts", org_a), {**query, "csv": "accepted"})
    assert csv.content.decode("utf-8-sig").splitlines()[1:] == ["2026-03-30,", "2026-04-06,4.0"]

    admin = client_for(dave).get(url("cohorts", org_a), query)
    (web,) = admin.context["cohorts"]
    assert [w["per_active"] for w in web["weeks"]] == [3.5, 4.0]
    assert "fewer than 5 of the cohort were active" not in admin.content.decode()


def test_a_week_whose_left_out_developers_are_few_holds_back_a_shown_figure_too(
    client_for, bob, dave, org_a, tmp_path
):
    """Teams a (7), b (6), c (2): c is too small, and b is held back with it. In the second
    week all of a and one of c were active: the week's totals less a's would be that one
    person's, so members get no figure for a that week either."""
    teams = ["a"] * 7 + ["b"] * 6 + ["c"] * 2
    second_week = [i for i, team in enumerate(teams) if team == "a"] + [13]
    records = [copilot_record(f"dev{i}", day="2026-04-01") for i in range(len(teams))] + [
        copilot_record(f"dev{i}", day="2026-04-07") for i in second_week
    ]
    assert ingest(org_a, write(tmp_path, "weeks.ndjson", ndjson(records))).status == "succeeded"
    mapping = "github_login,email,name,team\n" + "".join(
        f"dev{i},,,{team}\n" for i, team in enumerate(teams)
    )
    assert ingest(org_a, write(tmp_path, "map.csv", mapping)).status == "succeeded"
    query = {"by": "team", "start": "2026-03-30", "end": "2026-04-12"}

    member = client_for(bob).get(url("cohorts", org_a), query)
    shown = [c for c in member.context["cohorts"] if not c["suppressed"]]
    assert [c["name"] for c in shown] == ["a"]
    assert [w["per_active"] for w in shown[0]["weeks"]] == [4.0, None]
    admin = client_for(dave).get(url("cohorts", org_a), query)
    (a,) = [c for c in admin.context["cohorts"] if not c["suppressed"]]
    assert [w["per_active"] for w in a["weeks"]] == [4.0, 4.0]


def test_a_line_chart_leaves_a_gap_where_there_is_no_figure():
    from metrics.charts import Chart

    chart = Chart(
        "t", "T", ["Day", "Rate (%)"], [["a", 10], ["b", None], ["c", 20], ["d", 40]]
    ).render()
    (line,) = chart.svg["lines"]
    assert len(line["segments"]) == 1
    assert len(line["segments"][0].split()) == 2  # c and d joined; a on its own
    assert len(line["dots"]) == 1
    assert '<td class="text-end">—</td>' in str(chart.table_body)
    bars = Chart("b", "B", ["Day", "n"], [["a", 1], ["b", None]], kind="bar").render()
    assert len(bars.svg["bars"]) == 1
    # A share of 0 % is drawn on a scale of 0 to 100 %, not 0 to 1 %.
    zero = Chart("z", "Z", ["Week", "Share"], [["a", 0.0]], percent=True).render()
    assert [t["label"] for t in zero.svg["ticks"]] == ["0%", "25%", "50%", "75%", "100%"]
    # No figure anywhere: "No data in this range", not empty axes.
    for kind in ("line", "bar"):
        assert Chart("n", "N", ["Day", "n"], [["a", None]], kind=kind).render().svg["empty"]
        assert Chart("n", "N", ["Day", "n"], [], kind=kind).render().svg["empty"]


def test_a_day_without_suggestions_has_no_acceptance_rate(client_for, dave, org_a, tmp_path):
    load(org_a, tmp_path)  # 2026-04-01 to 2026-04-03
    response = client_for(dave).get(
        url("overview", org_a), {"start": "2026-03-31", "end": "2026-04-01"}
    )
    rate = next(c for c in response.context["charts"] if c.id == "rate")
    assert rate.rows[0] == ["2026-03-31", None]
    assert rate.rows[1][1] == pytest.approx(40.0, abs=20)
    empty = client_for(dave).get(
        url("overview", org_a), {"start": "2026-03-01", "end": "2026-03-02"}
    )
    assert empty.context["kpis"]["rate"] is None
    assert "—</dd>" in empty.content.decode()


@pytest.mark.parametrize(
    ("sizes", "counted", "shown"),
    [
        ({"a": 6, "b": 5}, None, ["a", "b"]),
        ({"a": 6, "b": 5, "c": 4}, None, ["a"]),  # c alone would be the total less a and b
        ({"a": 6, "b": 5, "c": 4, "d": 1}, None, ["a", "b"]),  # c and d: five together
        ({"a": 6, "b": 5, "c": 2, "d": 2}, None, ["a"]),
        ({"a": 4}, None, []),
        # A tier of "none" adds nothing to the totals: hiding it would hide nothing.
        ({"heavy": 2, "light": 6, "none": 9}, ["heavy", "light"], ["none"]),
        ({"heavy": 5, "light": 6, "none": 1}, ["heavy", "light"], ["heavy", "light"]),
    ],
)
def test_broken_down_hides_the_complement_of_small_groups(sizes, counted, shown):
    from metrics.selectors import broken_down

    start = 0
    groups = {}
    for name, size in sizes.items():
        groups[name] = set(range(start, start + size))
        start += size
    assert broken_down(groups, counted=counted) == shown


def test_usage_tiers_and_adoption_cohorts_render(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path, developers=12)
    client = client_for(bob)
    tiers = client.get(url("cohorts", org_a), {"by": "tier", "tool": "copilot"})
    names = [c["name"] for c in tiers.context["cohorts"]]
    assert "heavy" in names
    assert "light" in names
    assert sum(c["size"] for c in tiers.context["cohorts"]) == 12
    adoption = client.get(url("cohorts", org_a), {"by": "adoption"})
    assert [c["name"] for c in adoption.context["cohorts"]] == ["2026-04"]


def test_seats_utilisation(client_for, bob, dave, org_a, tmp_path):
    load(org_a, tmp_path, developers=2)
    seats = {
        "total_seats": 3,
        "seats": [
            # The usage report's user ids, as GitHub would give them (a login that came with
            # another id would be reported as a conflict).
            {
                "assignee": {"login": "dev0", "id": copilot_record("dev0")["user_id"]},
                "created_at": "2026-01-01T00:00:00Z",
                "last_activity_at": None,
            },
            {"assignee": {"login": "dev1"}, "last_activity_at": None},
            {"assignee": {"login": "ghost", "id": 3}, "last_activity_at": None},
        ],
    }
    assert ingest(org_a, write(tmp_path, "seats.json", json.dumps(seats))).status == "succeeded"
    response = client_for(bob).get(url("seats", org_a))
    assert response.context["licensed"] == 3
    assert response.context["never"] == 1
    assert b"ghost" not in response.content  # names are for admins
    response = client_for(dave).get(url("seats", org_a))
    assert b"ghost" in response.content
    # The same roster again changes nothing and says so; a changed seat is replaced.
    again = ingest(org_a, write(tmp_path, "seats-again.json", json.dumps(seats) + "\n"))
    assert (again.rows_new, again.rows_replaced, again.rows_unchanged) == (0, 0, 3)
    assert "Nothing changed" in again.message
    seats["seats"][2]["last_activity_at"] = "2026-04-02T10:00:00Z"
    revised = ingest(org_a, write(tmp_path, "seats-revised.json", json.dumps(seats)))
    assert (revised.rows_new, revised.rows_replaced, revised.rows_unchanged) == (0, 1, 2)


def test_freshness_lists_latest_day_per_tool(client_for, bob, org_a, tmp_path):
    load(org_a, tmp_path)
    response = client_for(bob).get(url("freshness", org_a))
    (row,) = response.context["tools"]
    assert str(row["latest"]) == "2026-04-03"


def test_unmatched_identities_suggest_and_merge(client_for, dave, org_a, tmp_path):
    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record("mona")])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record("mona@x.example")])))
    client = client_for(dave)
    response = client.get(url("identities", org_a))
    entry = next(u for u in response.context["unmatched"] if u["identity"].github_login == "mona")
    (suggestion,) = entry["suggestions"]
    assert suggestion["identity"].email == "mona@x.example"
    response = client.post(
        url("identity_merge", org_a),
        {"keep": entry["identity"].pk, "other": suggestion["identity"].pk},
    )
    assert response.status_code == 302
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert identity.daily_metrics.count() == 2


@pytest.mark.parametrize(
    ("login", "email", "why"),
    [
        ("mona-lisa", "mona.lisa@x.example", "but for . - _ or a +tag"),
        ("monalisa", "mona.lisa+github@x.example", "but for . - _ or a +tag"),
        ("mona_acme", "mona@x.example", "equals the login"),  # enterprise-managed login
    ],
)
def test_a_login_and_an_email_that_differ_in_punctuation_are_suggested(
    client_for, dave, org_a, tmp_path, login, email, why
):
    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record(login)])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record(email)])))
    ingest(org_a, write(tmp_path, "o.ndjson", ndjson([claude_record("lisa@x.example")])))
    response = client_for(dave).get(url("identities", org_a))
    entry = next(u for u in response.context["unmatched"] if u["identity"].github_login == login)
    (suggestion,) = entry["suggestions"]
    assert suggestion["identity"].email == email
    assert why in suggestion["why"]
    # And the other way round, on the email's row.
    entry = next(u for u in response.context["unmatched"] if u["identity"].email == email)
    assert [s["identity"].github_login for s in entry["suggestions"]] == [login]


def test_a_merge_keeps_the_campaign_participants_linked(client_for, alice, dave, org_a, tmp_path):
    from campaigns import services as campaign_services
    from campaigns.models import Participant
    from campaigns.participant_input import parse_pasted
    from tests.campaigns import creator

    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record("mona")])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record("mona@x.example")])))
    campaign = creator.campaign(org_a, alice)
    with org_context(org_a.id):
        campaign_services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("mona@x.example")
        )
        by_email = DeveloperIdentity.objects.get(email="mona@x.example")
        by_login = DeveloperIdentity.objects.get(github_login="mona")
        assert Participant.objects.get().developer_identity_id == by_email.pk
    # The login's identity is kept, the email's merged into it (and deleted).
    response = client_for(dave).post(
        url("identity_merge", org_a), {"keep": by_login.pk, "other": by_email.pk}
    )
    assert response.status_code == 302
    with org_context(org_a.id):
        participant = Participant.objects.get()
        assert participant.developer_identity_id == by_login.pk
        assert participant.identity_unlinked is False


def test_merging_twice_says_it_was_merged_already(client_for, dave, org_a, tmp_path):
    """A double submit (or two admins at once): the second finds the identity gone."""
    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record("mona")])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record("mona@x.example")])))
    with org_context(org_a.id):
        keep = DeveloperIdentity.objects.get(github_login="mona")
        other = DeveloperIdentity.objects.get(email="mona@x.example")
    client = client_for(dave)
    form = {"keep": keep.pk, "other": other.pk}
    assert client.post(url("identity_merge", org_a), form).status_code == 302
    again = client.post(url("identity_merge", org_a), form, follow=True)
    assert again.status_code == 200
    assert "One of the two was merged already: nothing changed." in again.content.decode()
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert identity.daily_metrics.count() == 2
    # The service says the same to a caller holding the stale rows.
    with org_context(org_a.id), pytest.raises(ValidationError, match="merged into another"):
        services.identity_merge(actor=dave, org=org_a, keep=keep, other=other)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_merge_during_an_upload_says_so_instead_of_waiting(
    client_for, dave, org_a, tmp_path, monkeypatch
):
    """An upload holds the organisation's metrics lock for its whole run: the merge takes it
    first (never a deadlock with the run), gives up after a moment, and changes nothing."""
    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record("mona")])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record("mona@x.example")])))
    with org_context(org_a.id):
        keep = DeveloperIdentity.objects.get(github_login="mona")
        other = DeveloperIdentity.objects.get(email="mona@x.example")
    monkeypatch.setattr(services, "MERGE_LOCK_WAIT", "200ms")
    with psycopg.connect(**connection.get_connection_params()) as upload:
        upload.execute("SELECT tap_metrics_lock(%s)", [str(org_a.id)])  # held until rollback
        response = client_for(dave).post(
            url("identity_merge", org_a), {"keep": keep.pk, "other": other.pk}, follow=True
        )
        assert "An upload of metrics is being processed right now" in response.content.decode()
        with org_context(org_a.id):
            assert DeveloperIdentity.objects.count() == 2
        upload.rollback()
    with org_context(org_a.id):
        services.identity_merge(actor=dave, org=org_a, keep=keep, other=other)
        assert DeveloperIdentity.objects.count() == 1


def test_csv_templates(client_for, bob, org_a):
    response = client_for(bob).get(url("csv_template", org_a, "daily"))
    assert response.content.decode("utf-8-sig").splitlines()[0] == (
        "date,tool,github_login,email,suggestions,acceptances,completions,sessions"
    )


@pytest.mark.parametrize("name", ["overview", "cohorts", "seats", "developers"])
def test_query_count_does_not_grow_with_data(name, client_for, alice, org_a, tmp_path):
    client = client_for(alice)
    load(org_a, tmp_path, developers=2, days=1, prefix="a")
    with CaptureQueriesContext(connection) as small:
        assert client.get(url(name, org_a)).status_code == 200
    load(org_a, tmp_path, developers=30, days=7, prefix="b")
    with CaptureQueriesContext(connection) as large:
        assert client.get(url(name, org_a)).status_code == 200
    assert len(large) == len(small)


def test_the_developers_list_is_paginated_and_the_csv_has_everyone(
    client_for, alice, org_a, tmp_path, monkeypatch
):
    monkeypatch.setattr("metrics.views.DEVELOPERS_PER_PAGE", 3)
    load(org_a, tmp_path, developers=7, days=1)
    client = client_for(alice)
    first = client.get(url("developers", org_a), {"start": "2026-04-01", "end": "2026-04-01"})
    # Most suggestions first: dev6 has 16, dev0 has 10.
    assert [p["github_login"] for p in first.context["page"]] == ["dev6", "dev5", "dev4"]
    assert [p["tools"] for p in first.context["page"]] == [["GitHub Copilot"]] * 3
    assert "1\u20133 of 7 developers" in first.content.decode()
    last = client.get(
        url("developers", org_a), {"start": "2026-04-01", "end": "2026-04-01", "page": "99"}
    )
    assert [p["github_login"] for p in last.context["page"]] == ["dev0"]
    assert 'aria-label="Developer pages"' in last.content.decode()
    csv = client.get(url("developers", org_a), {"start": "2026-04-01", "csv": "1"})
    assert len(csv.content.decode().strip().splitlines()) == 1 + 7


def test_a_chart_table_escapes_its_cells_and_shows_numbers_as_the_template_would():
    from metrics.charts import Chart

    chart = Chart("t", "T", ["Team", "Developers", "Rate (%)"], [["<b>ops</b>", 1234, 40.5]])
    assert str(chart.table_body) == (
        '<tr><th scope="row" class="fw-normal">&lt;b&gt;ops&lt;/b&gt;</th>'
        '<td class="text-end">1234</td><td class="text-end">40.5</td></tr>'
    )


def test_developers_who_tie_keep_one_order_so_each_is_on_exactly_one_page(
    client_for, alice, org_a, monkeypatch
):
    """Same name, no activity: only the id tells them apart. Each page is its own query, so
    without a total order a developer could show twice or never."""
    monkeypatch.setattr("metrics.views.DEVELOPERS_PER_PAGE", 100)
    # Stored in the reverse of id order, and enough of them that PostgreSQL's sort does not
    # keep ties in the order it read them.
    ids = [uuid.UUID(int=n) for n in range(300, 0, -1)]
    with org_context(org_a.id):
        DeveloperIdentity.objects.bulk_create(
            DeveloperIdentity(
                id=pk, organization=org_a, email=f"sam{pk.int}@x.example", display_name="Sam"
            )
            for pk in ids
        )
    client = client_for(alice)
    shown = [
        p["id"]
        for n in (1, 2, 3)
        for p in client.get(url("developers", org_a), {"page": n}).context["page"]
    ]
    assert shown == sorted(ids)


def test_a_search_that_matches_nobody_asks_no_tools(client_for, alice, org_a, tmp_path):
    load(org_a, tmp_path)
    client = client_for(alice)
    client.get(url("developers", org_a), {"q": "dev1"})  # warm the session and the caches
    with CaptureQueriesContext(connection) as found:
        client.get(url("developers", org_a), {"q": "dev1"})
    with CaptureQueriesContext(connection) as none:
        response = client.get(url("developers", org_a), {"q": "nobody-at-all"})
    assert list(response.context["page"]) == []
    assert len(none) == len(found) - 1
