"""Each sample file → the expected rows; detection by content; BOM/CRLF/gzip; legacy refused."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from metrics.models import CopilotSeat, DeveloperIdentity, DeveloperTeam
from tap.tenancy import org_context
from tests.metrics.helpers import (
    SAMPLES,
    TAP_CSV,
    claude_record,
    copilot_record,
    ingest,
    ndjson,
    rows,
    write,
)

pytestmark = pytest.mark.django_db


def sample(tmp_path, name, rename=None):
    target = tmp_path / (rename or name)
    shutil.copy(SAMPLES / name, target)
    return target


def test_copilot_users_ndjson_sample(org_a, tmp_path):
    run = ingest(org_a, sample(tmp_path, "copilot-users-1-day.ndjson"))
    assert run.status == "succeeded", run.message
    assert run.detected_format == "copilot_users"
    assert (run.rows_total, run.rows_ingested, run.rows_new) == (2, 2, 2)
    hubot, octocat = sorted(rows(org_a), key=lambda r: r.developer_identity.github_login)
    assert hubot.developer_identity.github_user_id == 338097
    assert (hubot.suggestions, hubot.acceptances, hubot.completions, hubot.sessions) == (
        25,
        24,
        435,
        2,
    )
    assert hubot.date == dt.date(2026, 4, 25)
    assert hubot.extras["interactions"] == 24
    assert hubot.extras["used"] == ["cli"]
    # Breakdowns are kept compactly: dimensions as keys, counters as
    # [generated, accepted, loc_added, interactions]; all-zero entries ("others") left out.
    assert hubot.extras["by_language_feature"] == {
        "typescript": {"copilot_cli": [23, 23, 330, 0]},
        "markdown": {"copilot_cli": [2, 1, 105, 0]},
    }
    assert hubot.extras["by_feature"] == {"copilot_cli": [25, 24, 435, 24]}
    assert "by_ide" not in hubot.extras  # an empty list in the record
    assert hubot.extras["ai_credits_used"] == 2.5
    assert hubot.extras["adoption_phase"] == "Phase 2"
    assert hubot.extras["cli"]["requests"] == 187
    assert (octocat.suggestions, octocat.sessions) == (0, 16)


def test_copilot_json_array_sample_named_txt(org_a, tmp_path):
    # Detected from content, not from the name.
    run = ingest(org_a, sample(tmp_path, "copilot-user-record-docs-example.json", "export.txt"))
    assert run.status == "succeeded", run.message
    (row,) = rows(org_a)
    assert (row.suggestions, row.acceptances, row.completions, row.sessions) == (1, 1, 8, 2)
    assert list(row.extras["by_ide"]) == ["vscode"]
    assert row.extras["loc_suggested_to_add"] == 10


def test_claude_code_page_sample(org_a, tmp_path):
    run = ingest(org_a, sample(tmp_path, "claude-code-usage-report.json"))
    assert run.status == "succeeded", run.message
    assert run.detected_format == "claude_code"
    (row,) = rows(org_a)
    assert row.developer_identity.email == "user@emaildomain.com"
    assert row.tool == "claude_code"
    # suggestions = Σ(accepted + rejected), acceptances = Σ accepted
    assert (row.suggestions, row.acceptances, row.completions, row.sessions) == (56, 50, 342, 15)
    assert row.extras["commits"] == 8
    assert row.extras["cost_cents"] == 228
    assert row.extras["tokens"]["input"] == 45230 + 23100


def test_claude_local_and_remote_rows_are_summed(org_a, tmp_path):
    path = write(
        tmp_path,
        "cc.ndjson",
        ndjson([claude_record(sessions=2, remote=False), claude_record(sessions=5, remote=True)]),
    )
    run = ingest(org_a, path)
    (row,) = rows(org_a)
    assert run.rows_new == 1
    assert row.sessions == 7
    assert row.extras["commits"] == 2


def test_claude_local_and_remote_rows_add_up_per_model(org_a, tmp_path):
    def record(remote, models):
        entry = claude_record(remote=remote)
        entry["model_breakdown"] = [
            {"model": name, "tokens": {"input": tokens, "output": 1}} for name, tokens in models
        ]
        return entry

    local = record(False, [("claude-sonnet-5", 100), ("claude-haiku-5", 7)])
    remote = record(True, [("claude-sonnet-5", 100)])  # the same entry, from the other half
    run = ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([local, remote])))
    assert run.status == "succeeded", run.message
    (row,) = rows(org_a)
    assert row.extras["tokens"]["input"] == 207
    by_model = {m["model"]: (m["input"], m["output"]) for m in row.extras["by_model"]}
    assert by_model == {"claude-sonnet-5": (200, 2), "claude-haiku-5": (7, 1)}


def test_a_model_named_twice_in_one_claude_record_is_one_entry(org_a, tmp_path):
    entry = claude_record()
    entry["model_breakdown"] = [
        {"model": "m", "tokens": {"input": 1}, "estimated_cost": {"amount": 2}},
        {"model": "m", "tokens": {"input": 3, "output": 4}, "estimated_cost": {"amount": 5}},
        {"tokens": {"input": 6}},
    ]
    run = ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([entry])))
    assert run.status == "succeeded", run.message
    (row,) = rows(org_a)
    assert [
        (m["model"], m["input"], m["output"], m["cost_cents"]) for m in row.extras["by_model"]
    ] == [
        ("m", 4, 4, 7),
        ("", 6, 0, 0),
    ]


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        (
            "claude-empty.json",
            '{\n  "data": [],\n  "has_more": false,\n  "next_page": null\n}\n',
            "claude_code",
        ),
        ("seats-empty.json", '{\n  "total_seats": 0,\n  "seats": [\n  ]\n}\n', "copilot_seats"),
    ],
)
def test_an_empty_export_written_over_several_lines_is_read(org_a, tmp_path, name, text, fmt):
    run = ingest(org_a, write(tmp_path, name, text))
    assert run.status == "succeeded", run.message
    assert (run.detected_format, run.rows_total) == (fmt, 0)


def test_csv_line_numbers_count_blank_lines_before_the_header(org_a, tmp_path):
    text = (
        "\n\n" + TAP_CSV + "2026-04-01,cursor,mona,,10,5,40,2\n2026-04-01,cursor,hubot,,-1,0,0,0\n"
    )
    run = ingest(org_a, write(tmp_path, "daily.csv", text))
    assert run.status == "failed"
    assert [e["line"] for e in run.errors] == [5]


def test_claude_api_actor_becomes_a_key_identity(org_a, tmp_path):
    record = claude_record()
    record["actor"] = {"type": "api_actor", "api_key_name": "ci-bot"}
    ingest(org_a, write(tmp_path, "cc.json", {"data": [record], "has_more": False}))
    (row,) = rows(org_a)
    assert row.developer_identity.api_key_name == "ci-bot"
    assert "API key" in row.developer_identity.label


def test_seats_fill_the_roster_without_daily_rows(org_a, tmp_path):
    run = ingest(org_a, sample(tmp_path, "copilot-seats.json"))
    assert run.status == "succeeded", run.message
    assert run.detected_format == "copilot_seats"
    assert rows(org_a) == []
    with org_context(org_a.id):
        assert CopilotSeat.objects.count() == 9
        seat = CopilotSeat.objects.get(developer_identity__github_login="monalisa")
        assert seat.last_activity_at.year == 2026
        assert seat.assigning_team == "the-a-team"


def test_seats_csv_activity_report(org_a, tmp_path):
    text = (
        "Report Time,Login,Last Authenticated At,Last Activity At,Last Surface Used\n"
        "2026-05-01T00:00:00Z,mona,2026-04-30T10:00:00Z,2026-04-30T11:00:00Z,vscode\n"
        "2026-05-01T00:00:00Z,idle,None,None,None\n"
    )
    run = ingest(org_a, write(tmp_path, "seats.csv", text, bom=True, crlf=True))
    assert run.status == "succeeded", run.message
    assert run.detected_format == "copilot_seats_csv"
    with org_context(org_a.id):
        idle = CopilotSeat.objects.get(developer_identity__github_login="idle")
        assert idle.last_activity_at is None


def test_user_teams_sample(org_a, tmp_path):
    run = ingest(org_a, sample(tmp_path, "copilot-user-teams-1-day.ndjson"))
    assert run.status == "succeeded", run.message
    with org_context(org_a.id):
        teams = sorted(
            DeveloperTeam.objects.values_list("developer_identity__github_login", "team")
        )
    assert teams == [("alice", "backend"), ("alice", "frontend"), ("bob", "frontend")]


def test_a_later_teams_file_moves_people_between_teams(org_a, tmp_path):
    """A user-teams file states each listed developer's teams now: bob moved from frontend
    to backend and must not stay in the frontend cohort; alice, in two teams, stays in both;
    carol, not in the new file (GitHub leaves out teams under 5), keeps hers."""
    day = '"day": "2026-05-08", "organization_id": "999"'
    later = "\n".join(
        [
            f'{{"user_id": 1001, "user_login": "alice", {day}, "team_id": 42, "slug": "frontend"}}',
            f'{{"user_id": 1001, "user_login": "alice", {day}, "team_id": 43, "slug": "backend"}}',
            f'{{"user_id": 1002, "user_login": "bob", {day}, "team_id": 43, "slug": "backend"}}',
        ]
    )
    first = '{"user_id": 1003, "user_login": "carol", "day": "2026-05-07", "organization_id": '
    first += '"999", "team_id": 44, "slug": "data"}\n'
    assert ingest(org_a, sample(tmp_path, "copilot-user-teams-1-day.ndjson")).status == "succeeded"
    assert ingest(org_a, write(tmp_path, "carol.ndjson", first)).status == "succeeded"
    run = ingest(org_a, write(tmp_path, "teams-later.ndjson", later + "\n"))
    assert run.status == "succeeded", run.message
    with org_context(org_a.id):
        teams = sorted(
            DeveloperTeam.objects.values_list("developer_identity__github_login", "team")
        )
    assert teams == [
        ("alice", "backend"),
        ("alice", "frontend"),
        ("bob", "backend"),
        ("carol", "data"),
    ]


def test_a_teams_file_older_than_what_tap_has_changes_nothing_and_says_so(org_a, tmp_path):
    """Team files uploaded out of order: the older one must not undo a later move (bob joined
    backend on the 8th; the 7th's file still lists carol, who left). A report of several
    days takes each team's members on its latest day."""

    def teams_file(name, *rows):
        lines = [
            f'{{"user_id": {uid}, "user_login": "{login}", "day": "{day}", '
            f'"organization_id": "999", "team_id": 1, "slug": "{team}"}}'
            for day, uid, login, team in rows
        ]
        return write(tmp_path, name, "\n".join(lines) + "\n")

    def teams():
        with org_context(org_a.id):
            return sorted(
                DeveloperTeam.objects.values_list("developer_identity__github_login", "team")
            )

    newer = teams_file(
        "8th.ndjson",
        ("2026-05-08", 1001, "alice", "backend"),
        ("2026-05-08", 1002, "bob", "backend"),
    )
    assert ingest(org_a, newer).status == "succeeded"
    older = teams_file(
        "7th.ndjson",
        ("2026-05-07", 1001, "alice", "backend"),
        ("2026-05-07", 1003, "carol", "backend"),
        ("2026-05-07", 1003, "carol", "data"),
    )
    run = ingest(org_a, older)
    assert run.status == "succeeded", run.message
    assert "Teams left as they were: backend." in run.message
    assert "08 May 2026" in run.message
    # A team the later file does not name is the older file's to state.
    assert teams() == [("alice", "backend"), ("bob", "backend"), ("carol", "data")]
    days = teams_file(
        "9th-and-8th.ndjson",
        ("2026-05-09", 1001, "alice", "backend"),
        ("2026-05-08", 1002, "bob", "backend"),
    )
    assert ingest(org_a, days).status == "succeeded"
    assert teams() == [("alice", "backend"), ("carol", "data")]


def test_an_identity_map_line_may_leave_off_its_name_and_team(org_a, tmp_path):
    mapping = "github_login,email,name,team\nmona,mona@x.example\nhubot,hubot@x.example,Hubot\n"
    run = ingest(org_a, write(tmp_path, "map.csv", mapping))
    assert run.status == "succeeded", run.message
    assert run.rows_ingested == 2


def test_another_github_orgs_teams_file_leaves_the_first_ones_teams(org_a, tmp_path):
    """Two GitHub organisations, one teams file each: alice is in a team of each; the second
    file must not take away the first one's (a team it does not list is not its to change)."""

    def row(org, team):
        return (
            f'{{"user_id": 1001, "user_login": "alice", "day": "2026-05-08", '
            f'"organization_id": "{org}", "team_id": 1, "slug": "{team}"}}\n'
        )

    assert ingest(org_a, write(tmp_path, "a.ndjson", row("100", "platform"))).status == "succeeded"
    assert ingest(org_a, write(tmp_path, "b.ndjson", row("200", "research"))).status == "succeeded"
    with org_context(org_a.id):
        teams = sorted(DeveloperTeam.objects.values_list("team", flat=True))
    assert teams == ["platform", "research"]


def test_a_later_identity_map_moves_a_developer_to_their_new_team(org_a, tmp_path):
    mapping = "github_login,email,name,team\nmona,mona@x.example,Mona,web\n"
    assert ingest(org_a, write(tmp_path, "map1.csv", mapping)).status == "succeeded"
    mapping = "github_login,email,name,team\nmona,mona@x.example,Mona,platform\n"
    mapping += "mona,mona@x.example,Mona,security\n"  # two teams in one file: both
    assert ingest(org_a, write(tmp_path, "map2.csv", mapping)).status == "succeeded"
    with org_context(org_a.id):
        teams = sorted(DeveloperTeam.objects.values_list("team", flat=True))
    assert teams == ["platform", "security"]


def test_a_json_document_on_one_line_longer_than_an_ndjson_line(org_a, tmp_path, monkeypatch):
    """A minified export (an API answer saved as it came, `jq -c`) is one line, longer than
    NDJSON lines may be: read as the JSON document it is, not refused as unknown."""
    import metrics.parsers

    monkeypatch.setattr(metrics.parsers, "MAX_LINE_CHARS", 2000)
    records = [copilot_record(f"dev{n}", user_id=n + 1) for n in range(20)]
    text = json.dumps(records, separators=(",", ":"))
    assert len(text) > 2000
    assert "\n" not in text
    run = ingest(org_a, write(tmp_path, "minified.json", text))
    assert run.status == "succeeded", run.message
    assert (run.detected_format, run.rows_ingested) == ("copilot_users", 20)
    monkeypatch.setattr(metrics.parsers, "MAX_LINE_CHARS", 200)
    run = ingest(org_a, write(tmp_path, "long.csv", "x" * 300 + "\n"))
    assert run.status == "failed"
    assert "longer than" in run.message


def test_legacy_org_metrics_are_refused_clearly(org_a, tmp_path):
    run = ingest(org_a, sample(tmp_path, "copilot-legacy-org-metrics.json"))
    assert run.status == "failed"
    assert "legacy GitHub Copilot metrics report" in run.message
    assert "users-1-day" in run.message
    assert rows(org_a) == []


def test_tap_csv_with_bom_crlf_and_gzip(org_a, tmp_path):
    text = TAP_CSV + "2026-04-01,cursor,mona,,10,5,40,2\n2026-04-01,cursor,,eve@x.example,3,1,4,1\n"
    path = write(tmp_path, "daily.csv.gz", text, gz=True, bom=True, crlf=True)
    run = ingest(org_a, path)
    assert run.status == "succeeded", run.message
    assert run.detected_format == "tap_csv"
    got = {
        (r.developer_identity.github_login or r.developer_identity.email, r.suggestions)
        for r in rows(org_a)
    }
    assert got == {("mona", 10), ("eve@x.example", 3)}


def test_gzipped_ndjson_with_bom(org_a, tmp_path):
    from tests.metrics.helpers import copilot_record

    path = write(tmp_path, "u.gz", ndjson([copilot_record()]), gz=True, bom=True, crlf=True)
    run = ingest(org_a, path)
    assert run.status == "succeeded", run.message
    assert len(rows(org_a)) == 1


def test_unknown_file_is_refused_with_what_we_read(org_a, tmp_path):
    run = ingest(org_a, write(tmp_path, "x.csv", "foo,bar\n1,2\n"))
    assert run.status == "failed"
    assert "does not recognise" in run.message
    with org_context(org_a.id):
        assert not DeveloperIdentity.objects.exists()


def test_a_broken_first_ndjson_line_is_rejected_not_the_whole_file(org_a, tmp_path):
    good = [copilot_record("mona"), copilot_record("hubot")]
    whole = json.dumps(copilot_record("octo"))
    cut_off = whole[: whole.index('"day"') + 12]  # a record cut off inside its date
    path = write(tmp_path, "u.ndjson", cut_off + "\n" + ndjson(good))
    failed = ingest(org_a, path)
    assert failed.status == "failed", failed.message
    assert failed.errors, failed.message
    assert [e["line"] for e in failed.errors] == [1]
    assert "invalid JSON" in failed.errors[0]["reason"]
    assert failed.detected_format == "copilot_users"
    partial = ingest(org_a, path, skip_invalid=True)
    assert partial.status == "partial"
    assert partial.rows_new == 2


def test_a_document_whose_first_line_opens_an_array_is_still_a_document(org_a, tmp_path):
    # Not NDJSON: its lines at the start of a line are elements of the seats array.
    text = (
        '{"total_seats": 2, "seats": [\n'
        '{"assignee": {"login": "mona", "id": 1}, "created_at": "2026-01-01T00:00:00Z"},\n'
        '{"assignee": {"login": "hubot", "id": 2}, "created_at": "2026-01-01T00:00:00Z"}\n'
        "]}\n"
    )
    run = ingest(org_a, write(tmp_path, "seats.json", text))
    assert run.status == "succeeded", run.message
    assert run.detected_format == "copilot_seats"
    assert run.rows_ingested == 2


@pytest.mark.parametrize("layout", ["compact", "pretty, total after the seats"])
def test_one_page_of_a_paginated_seats_listing_removes_no_seat(org_a, tmp_path, layout):
    """GitHub lists seats 100 a page; a page on its own says, in `total_seats`, that it is
    not the whole roster, so the seats of the other pages stay."""

    def seat(login, n):
        return {"assignee": {"login": login, "id": n}, "created_at": "2026-01-01T00:00:00Z"}

    def seats():
        with org_context(org_a.id):
            return sorted(
                CopilotSeat.objects.values_list("developer_identity__github_login", flat=True)
            )

    def listing(total, entries):
        if layout == "compact":
            return json.dumps({"total_seats": total, "seats": entries}) + "\n"
        return json.dumps({"seats": entries, "total_seats": total}, indent=2)

    everyone = [seat("mona", 1), seat("zed", 2), seat("idle", 3)]
    assert ingest(org_a, write(tmp_path, "all.json", listing(3, everyone))).status == "succeeded"
    assert seats() == ["idle", "mona", "zed"]
    run = ingest(org_a, write(tmp_path, "page2.json", listing(3, everyone[2:])))
    assert run.status == "succeeded", run.message
    assert seats() == ["idle", "mona", "zed"]
    assert "2 seats not listed were kept (the file lists 1 of the 3 seats it counts" in run.message
    # Every page in one run is the whole roster: a seat no longer listed goes.
    run = ingest(
        org_a,
        write(tmp_path, "p1.json", listing(2, everyone[:1])),
        write(tmp_path, "p2.json", listing(2, everyone[2:])),
    )
    assert run.status == "succeeded", run.message
    assert seats() == ["idle", "mona"]
    assert "1 seats no longer listed were removed" in run.message


def test_a_seats_file_with_rejected_lines_removes_no_seat(org_a, tmp_path):
    """A roster read with lines skipped is incomplete: a seat missing from it may be on a
    rejected line, so none is removed until a roster is read in full."""
    header = "Report Time,Login,Last Authenticated At,Last Activity At,Last Surface Used\n"
    line = "2026-05-01T00:00:00Z,{},2026-04-30T10:00:00Z,{},vscode\n"

    def seats():
        with org_context(org_a.id):
            return sorted(
                CopilotSeat.objects.values_list("developer_identity__github_login", flat=True)
            )

    full = header + "".join(line.format(n, "2026-04-30T11:00:00Z") for n in ("mona", "zed", "idle"))
    assert ingest(org_a, write(tmp_path, "seats1.csv", full)).status == "succeeded"
    assert seats() == ["idle", "mona", "zed"]

    # zed's line is broken, idle's seat was unassigned meanwhile.
    broken = header + line.format("mona", "2026-05-01T09:00:00Z") + line.format("zed", "soon")
    run = ingest(org_a, write(tmp_path, "seats2.csv", broken), skip_invalid=True)
    assert run.status == "partial", run.message
    assert [e["line"] for e in run.errors] == [3]
    assert seats() == ["idle", "mona", "zed"]
    assert "2 seats not listed were kept" in run.message
    with org_context(org_a.id):
        mona = CopilotSeat.objects.get(developer_identity__github_login="mona")
        assert mona.last_activity_at.day == 1  # the good line is stored

    whole = header + line.format("mona", "2026-05-01T09:00:00Z")
    run = ingest(org_a, write(tmp_path, "seats3.csv", whole))
    assert run.status == "succeeded"
    assert seats() == ["mona"]
    assert "2 seats no longer listed were removed" in run.message
