"""Upsert semantics: summed within a run, replaced across runs, a re-upload changes nothing,
a failed run leaves nothing; line-numbered errors; identity resolution and the identity map."""

from __future__ import annotations

import json

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from metrics.models import DailyDeveloperMetric, DeveloperIdentity, DeveloperTeam
from tap.tenancy import org_context
from tests.metrics.helpers import (
    TAP_CSV,
    claude_record,
    copilot_record,
    ingest,
    ndjson,
    rows,
    write,
)

pytestmark = pytest.mark.django_db


def test_one_report_in_two_files_is_summed(org_a, tmp_path):
    part1 = write(tmp_path, "part1.ndjson", ndjson([copilot_record(loc_added_sum=30)]))
    part2 = write(
        tmp_path,
        "part2.ndjson",
        ndjson([copilot_record(code_generation_activity_count=5, loc_added_sum=12)]),
    )
    run = ingest(org_a, part1, part2)
    assert run.status == "succeeded", run.message
    assert run.file_name == "part1.ndjson + 1 more"
    (row,) = rows(org_a)
    assert (row.suggestions, row.acceptances, row.completions) == (15, 8, 42)
    assert row.extras["interactions"] == 4
    # The parts' breakdowns add up counter by counter.
    assert row.extras["by_ide"] == {"vscode": [20, 0, 0, 0]}


def test_same_file_twice_changes_nothing_and_says_so(org_a, tmp_path):
    path = write(tmp_path, "u.ndjson", ndjson([copilot_record(), copilot_record("hubot")]))
    first = ingest(org_a, path)
    before = {(r.pk, r.ingestion_run_id, r.suggestions) for r in rows(org_a)}
    second = ingest(org_a, path)
    assert second.status == "succeeded"
    assert (second.rows_new, second.rows_replaced, second.rows_unchanged) == (0, 0, 2)
    assert "Nothing changed" in second.message
    assert "uploaded before" in second.message
    assert {(r.pk, r.ingestion_run_id, r.suggestions) for r in rows(org_a)} == before
    assert all(r.ingestion_run_id == first.pk for r in rows(org_a))


def test_reports_of_two_github_organisations_are_not_added_up(org_a, tmp_path):
    # One person's usage counts in full in each organisation they belong to.
    paths = [
        write(tmp_path, f"{org}.ndjson", ndjson([copilot_record(organization_id=org)]))
        for org in ("111", "222")
    ]
    run = ingest(org_a, *paths)
    assert run.status == "failed"
    assert "the Copilot reports of two GitHub organisations (111 and 222)" in run.message
    assert rows(org_a) == []
    # Each on its own: the second replaces the first, nothing is doubled.
    for path in paths:
        assert ingest(org_a, path).status == "succeeded"
    assert [r.suggestions for r in rows(org_a)] == [10]
    # The parts of one organisation's report are still added up.
    # (A record that names no organisation, or only the enterprise, is taken to belong.)
    parts = [
        write(tmp_path, f"part{n}.ndjson", ndjson([copilot_record(day="2026-04-02", **ids)]))
        for n, ids in (
            (1, {"organization_id": "111", "enterprise_id": "9"}),
            (2, {"enterprise_id": "9"}),
        )
    ]
    assert ingest(org_a, *parts).status == "succeeded"
    assert [r.suggestions for r in rows(org_a, date="2026-04-02")] == [20]


# Transactional: the command finds the organisation through the service connection.
@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_the_same_file_twice_in_one_run_is_refused(org_a, tmp_path):
    # Parts of one report are summed: one part twice would count everything in it twice.
    path = write(tmp_path, "u.ndjson", ndjson([copilot_record()]))
    again = write(tmp_path, "u-again.ndjson", ndjson([copilot_record()]))
    with pytest.raises(ValidationError, match=r"“u-again\.ndjson” is the same file as “u\.ndjson”"):
        ingest(org_a, path, again)
    with pytest.raises(CommandError, match="is the same file as"):
        call_command("ingest_metrics", "--org", org_a.slug, str(path), str(path))
    assert rows(org_a) == []


def revise_mona(org, tmp_path, **changes):
    """Upload mona's and b's day again, mona's with `changes`: (the run, mona's row)."""
    revised = write(tmp_path, "b.ndjson", ndjson([copilot_record(**changes), copilot_record("b")]))
    run = ingest(org, revised)
    mona = next(r for r in rows(org) if r.developer_identity.github_login == "mona")
    return run, mona


def test_a_revised_day_replaces_and_is_counted(org_a, tmp_path):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record(), copilot_record("b")])))
    run, mona = revise_mona(org_a, tmp_path, code_generation_activity_count=99)
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (0, 1, 1)
    assert mona.suggestions == 99
    assert mona.ingestion_run_id == run.pk


def test_extras_alone_count_as_a_revision_by_value_not_by_text(org_a, tmp_path):
    """Extras are stored as json text: a revision that changes only them replaces the row;
    the same values written as other text (a row saved by the ORM, keys in another order) do
    not."""
    path = write(tmp_path, "a.ndjson", ndjson([copilot_record(), copilot_record("b")]))
    ingest(org_a, path)
    with org_context(org_a.id):
        row = DailyDeveloperMetric.objects.get(developer_identity__github_login="b")
        row.extras = dict(reversed(row.extras.items()))  # the same value, other text
        row.save(update_fields=["extras"])
    run, mona = revise_mona(org_a, tmp_path, user_initiated_interaction_count=9)
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (0, 1, 1)
    assert mona.extras["interactions"] == 9
    assert mona.ingestion_run_id == run.pk


@pytest.mark.parametrize("value", [{"a": [1, 2]}, "1", "plain", 7, [1, "x"]])
def test_extras_read_back_as_stored(org_a, tmp_path, value):
    """Extras live in a json column that psycopg parses itself: whatever JSON value is saved
    comes back as the same value (a string that looks like a number stays a string)."""
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record()])))
    with org_context(org_a.id):
        row = DailyDeveloperMetric.objects.get()
        row.extras = value
        row.save(update_fields=["extras"])
        assert DailyDeveloperMetric.objects.get().extras == value
        assert list(DailyDeveloperMetric.objects.values_list("extras", flat=True)) == [value]


BROKEN = [
    json.dumps(copilot_record()),
    "{not json",
    json.dumps(copilot_record("neg", code_generation_activity_count=-3)),
    json.dumps(copilot_record("baddate", day="2025-13-01")),
    json.dumps({k: v for k, v in copilot_record().items() if k not in ("user_login", "user_id")}),
    json.dumps(copilot_record("fine2")),
]


def test_broken_lines_fail_the_run_with_line_numbers_and_store_nothing(org_a, tmp_path):
    run = ingest(org_a, write(tmp_path, "broken.ndjson", "\n".join(BROKEN) + "\n"))
    assert run.status == "failed"
    assert run.rows_rejected == 4
    by_line = {e["line"]: e["reason"] for e in run.errors}
    assert set(by_line) == {2, 3, 4, 5}
    assert "invalid JSON" in by_line[2]
    assert "negative code_generation_activity_count (-3)" in by_line[3]
    assert "impossible day" in by_line[4]
    assert "no identifier" in by_line[5]
    assert all(e["file"] == "broken.ndjson" for e in run.errors)
    assert rows(org_a) == []
    with org_context(org_a.id):
        # Identities created while reading are rolled back with the rest.
        assert not DeveloperIdentity.objects.exists()


@time_machine.travel("2026-04-10 23:30:00 +0000", tick=False)
@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "u.ndjson",
            ndjson(
                [
                    copilot_record("today", day="2026-04-10"),
                    copilot_record("tomorrow", day="2026-04-11"),  # begun east of UTC
                    copilot_record("typo", day="9999-12-31"),
                    copilot_record("ancient", day="1999-12-31"),
                ]
            ),
        ),
        (
            "c.jsonl",
            ndjson(
                [
                    claude_record("today@x.example", date="2026-04-10T00:00:00Z"),
                    claude_record("tomorrow@x.example", date="2026-04-11T00:00:00Z"),
                    claude_record("typo@x.example", date="2062-04-10T00:00:00Z"),
                    claude_record("ancient@x.example", date="1970-01-01T00:00:00Z"),
                ]
            ),
        ),
        (
            "t.csv",
            TAP_CSV
            + "2026-04-10,cursor,today,,1,1,0,1\n"
            + "2026-04-11,cursor,tomorrow,,1,1,0,1\n"
            + "2026-05-10,cursor,typo,,1,1,0,1\n"
            + "0001-01-01,cursor,ancient,,1,1,0,1\n",
        ),
    ],
)
def test_days_that_have_not_happened_are_rejected(org_a, tmp_path, name, content):
    """A typo'd year would become the latest day loaded — and every dashboard's default
    range — so usage after tomorrow (UTC), or before 2000, is a rejected line."""
    run = ingest(org_a, write(tmp_path, name, content), skip_invalid=True)
    assert run.status == "partial", run.message
    reasons = sorted(e["reason"] for e in run.errors)
    assert len(reasons) == 2
    assert any("is in the future" in r for r in reasons)
    assert any("is before 2000" in r for r in reasons)
    assert sorted(r.date.isoformat() for r in rows(org_a)) == ["2026-04-10", "2026-04-11"]


@pytest.mark.parametrize(
    ("name", "content", "reasons"),
    [
        (
            "t.csv",
            TAP_CSV
            + "2026-04-01,cursor,mona,,10,5,40,2\n"
            + "2026-04-01,cursor,cut\n"  # would read as four zero counts
            + "2026-04-01,cursor,extra,,1,1,1,1,surprise\n"
            + "2026-04-01,cursor,trailing,,1,1,1,1,,\n"  # empty extra cells: fine
            + "2026-04-01,cursor,"
            + "x" * 101
            + ",,1,1,1,1\n",
            {
                3: "3 values where the header has 8 columns",
                4: "9 values where the header has 8 columns",
                6: "github_login is longer than 100 characters",
            },
        ),
        (
            "u.ndjson",
            ndjson(
                [
                    copilot_record("mona"),
                    copilot_record("trailing"),
                    copilot_record("nul\u0000login"),
                    copilot_record("y" * 101),
                ]
            ),
            {
                3: "user_login contains a NUL character",
                4: "user_login is longer than 100 characters",
            },
        ),
        (
            "c.jsonl",
            ndjson(
                [
                    claude_record("mona@x.example"),
                    claude_record("trailing@x.example"),
                    claude_record("a\u0000b@x.example"),
                    claude_record("z" * 250 + "@x.example"),
                ]
            ),
            {
                3: "actor email contains a NUL character",
                4: "actor email is longer than 254 characters",
            },
        ),
    ],
    ids=["tap csv", "copilot", "claude code"],
)
def test_lines_that_do_not_fit_are_rejected_with_their_line(
    org_a, tmp_path, name, content, reasons
):
    """A line cut short must not store zeros over real counts; an identifier too long for
    Tap, or with a NUL, is that line's error, not an internal error failing the whole run."""
    run = ingest(org_a, write(tmp_path, name, content), skip_invalid=True)
    assert run.status == "partial", run.message
    got = {e["line"]: e["reason"] for e in run.errors}
    assert set(got) == set(reasons)
    for line, reason in reasons.items():
        assert reason in got[line]
    identities = {r.developer_identity.label for r in rows(org_a)}
    assert len(identities) == 2


def test_skipping_bad_lines_that_leaves_nothing_is_a_failure(org_a, tmp_path):
    lines = [
        copilot_record("mona", code_generation_activity_count=-1),
        copilot_record("zed", day="2026-02-30"),
    ]
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson(lines)), skip_invalid=True)
    assert run.status == "failed"
    assert "None of the 2 line(s) could be read" in run.message
    assert [e["line"] for e in run.errors] == [1, 2]


def test_skip_invalid_stores_the_good_lines_as_partial(org_a, tmp_path):
    run = ingest(org_a, write(tmp_path, "b.ndjson", "\n".join(BROKEN)), skip_invalid=True)
    assert run.status == "partial"
    assert (run.rows_total, run.rows_ingested, run.rows_rejected) == (6, 2, 4)
    assert {r.developer_identity.github_login for r in rows(org_a)} == {"mona", "fine2"}


def test_errors_are_capped_with_a_count_of_the_rest(org_a, tmp_path, settings):
    settings.TAP_METRICS_MAX_ERRORS = 3
    lines = [json.dumps(copilot_record()), *["{bad"] * 10]
    run = ingest(org_a, write(tmp_path, "b.ndjson", "\n".join(lines)))
    assert run.status == "failed"
    assert len(run.errors) == 3
    assert run.errors_omitted == 7


def test_broken_json_array_fails_with_its_line(org_a, tmp_path):
    text = "[\n" + json.dumps(copilot_record()) + ",\n{broken\n]"
    run = ingest(org_a, write(tmp_path, "a.json", text))
    assert run.status == "failed"
    assert "line 3" in run.message
    assert rows(org_a) == []


def test_a_failure_in_a_later_run_keeps_the_earlier_data(org_a, tmp_path):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record()])))
    bad = write(
        tmp_path, "b.ndjson", ndjson([copilot_record(code_generation_activity_count=1)]) + "x\n"
    )
    assert ingest(org_a, bad).status == "failed"
    (row,) = rows(org_a)
    assert row.suggestions == 10


def test_login_case_and_numeric_id_resolve_to_one_identity(org_a, tmp_path):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("Mona", user_id=7)])))
    ingest(
        org_a,
        write(tmp_path, "b.ndjson", ndjson([copilot_record("mona", user_id=7, day="2026-04-02")])),
    )
    with org_context(org_a.id):
        assert DeveloperIdentity.objects.count() == 1


def test_a_renamed_github_user_keeps_one_identity_under_the_new_login(org_a, tmp_path):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("mona", user_id=7)])))
    renamed = copilot_record("mona-lisa", user_id=7, day="2026-04-02")
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson([renamed])))
    assert run.status == "succeeded", run.message
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert (identity.github_login, identity.github_user_id) == ("mona-lisa", 7)
        assert identity.aliases == ["mona"]
        assert identity.daily_metrics.count() == 2
    # An older file, loaded later, still says "mona": not a rename back.
    older = copilot_record("mona", user_id=7, day="2026-03-31")
    assert ingest(org_a, write(tmp_path, "c.ndjson", ndjson([older]))).status == "succeeded"
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert identity.github_login == "mona-lisa"
        assert identity.daily_metrics.count() == 3


def test_a_row_with_only_a_former_login_finds_the_renamed_developer(org_a, tmp_path):
    """After a rename, an older Tap CSV (login and email) or identity map naming the old login
    adds to the same developer, not a new one."""
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("mona", user_id=7)])))
    renamed = copilot_record("mona-lisa", user_id=7, day="2026-04-02")
    assert ingest(org_a, write(tmp_path, "b.ndjson", ndjson([renamed]))).status == "succeeded"
    tap_csv = TAP_CSV + "2026-04-03,cursor,MONA,mona@corp.example,5,2,9,1\n"
    run = ingest(org_a, write(tmp_path, "c.csv", tap_csv))
    assert run.status == "succeeded", run.errors
    mapping = "github_login,email,name,team\nmona,mona@corp.example,Mona Lisa,web\n"
    run = ingest(org_a, write(tmp_path, "map.csv", mapping))
    assert run.status == "succeeded", run.errors
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert (identity.github_login, identity.email) == ("mona-lisa", "mona@corp.example")
        assert identity.daily_metrics.count() == 3
        assert list(DeveloperTeam.objects.values_list("team", flat=True)) == ["web"]


def _mona_renamed(org, tmp_path):
    ingest(org, write(tmp_path, "a.ndjson", ndjson([copilot_record("mona", user_id=7)])))
    renamed = copilot_record("mona-lisa", user_id=7, day="2026-04-02")
    assert ingest(org, write(tmp_path, "b.ndjson", ndjson([renamed]))).status == "succeeded"
    # Bea, known by email, is the GitHub user who goes by "mona" now.
    bea = [claude_record(email="b@corp.example", date="2026-04-03T00:00:00Z")]
    assert ingest(org, write(tmp_path, "cc.ndjson", ndjson(bea))).status == "succeeded"


@pytest.mark.parametrize(
    "upload",
    [
        ("map.csv", "github_login,email,name,team\nmona,b@corp.example,Bea,web\n"),
        (
            "t.csv",
            TAP_CSV + "2026-04-04,cursor,mona,b@corp.example,5,2,9,1\n",
        ),
    ],
)
def test_a_freed_login_with_another_developers_email_is_that_developers(org_a, tmp_path, upload):
    _mona_renamed(org_a, tmp_path)
    run = ingest(org_a, write(tmp_path, *upload))
    assert run.status == "succeeded", run.errors
    with org_context(org_a.id):
        identities = DeveloperIdentity.objects.order_by("github_login")
        assert [(i.github_login, i.email) for i in identities] == [
            ("mona", "b@corp.example"),
            ("mona-lisa", ""),
        ]


def test_a_merged_api_key_name_is_not_a_former_login(org_a, tmp_path):
    from metrics import services

    ingest(org_a, write(tmp_path, "x.ndjson", ndjson([copilot_record("xavier", user_id=5)])))
    key = claude_record(date="2026-04-03T00:00:00Z")
    key["actor"] = {"type": "api_actor", "api_key_name": "mona"}
    assert ingest(org_a, write(tmp_path, "k.ndjson", ndjson([key]))).status == "succeeded"
    with org_context(org_a.id):
        xavier = DeveloperIdentity.objects.get(github_login="xavier")
        api_key = DeveloperIdentity.objects.get(api_key_name="mona")
        services.identity_merge(actor=None, org=org_a, keep=xavier, other=api_key)
    tap_csv = TAP_CSV + "2026-04-04,cursor,mona,,5,2,9,1\n"
    assert ingest(org_a, write(tmp_path, "t.csv", tap_csv)).status == "succeeded"
    with org_context(org_a.id):
        assert DeveloperIdentity.objects.get(daily_metrics__tool="cursor").github_login == "mona"


def test_a_former_login_of_two_developers_is_a_conflict(org_a, tmp_path):
    with org_context(org_a.id):
        for login, user_id in (("mona-lisa", 7), ("mona-x", 8)):
            DeveloperIdentity.objects.create(
                organization=org_a, github_login=login, github_user_id=user_id, aliases=["Mona"]
            )
    tap_csv = TAP_CSV + "2026-04-03,cursor,mona,,5,2,9,1\n"
    run = ingest(org_a, write(tmp_path, "c.csv", tap_csv))
    assert run.status == "failed"
    assert "was the login of 2 before" in run.errors[0]["reason"]
    with org_context(org_a.id):
        assert DeveloperIdentity.objects.count() == 2


def test_a_freed_login_taken_by_another_github_user_in_the_same_run(org_a, tmp_path):
    """Mona renames to mona-lisa; another GitHub user takes "mona", in the same report."""
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("mona", user_id=7)])))
    records = [
        copilot_record("mona-lisa", user_id=7, day="2026-04-02"),
        copilot_record("mona", user_id=8, day="2026-04-02"),
    ]
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson(records)))
    assert run.status == "succeeded", run.errors
    with org_context(org_a.id):
        logins = DeveloperIdentity.objects.order_by("github_user_id")
        assert [(i.github_login, i.github_user_id) for i in logins] == [
            ("mona-lisa", 7),
            ("mona", 8),
        ]


def test_a_login_that_comes_with_another_github_id_is_a_conflict(org_a, tmp_path):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("mona", user_id=7)])))
    other = copilot_record("MONA", user_id=999, day="2026-04-02")
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson([other])))
    assert run.status == "failed"
    (error,) = run.errors
    assert error["line"] == 1
    assert "belongs to GitHub user 7 in Tap, not 999" in error["reason"]
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert identity.github_user_id == 7
        assert identity.daily_metrics.count() == 1


def test_a_renamed_login_taken_by_another_developer_is_a_conflict(org_a, tmp_path):
    records = [copilot_record("mona", user_id=7), copilot_record("hubot", user_id=8)]
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson(records)))
    clash = copilot_record("hubot", user_id=7, day="2026-04-02")
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson([clash])))
    assert run.status == "failed"
    assert "GitHub user 7 is “mona” in Tap" in run.errors[0]["reason"]
    with org_context(org_a.id):
        assert sorted(DeveloperIdentity.objects.values_list("github_login", flat=True)) == [
            "hubot",
            "mona",
        ]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("mona,other@corp.example", "belongs to the developer with email “mona@corp.example”"),
        ("octo,mona@corp.example", "belongs to the developer with github_login “mona”"),
    ],
)
def test_a_tap_csv_row_never_replaces_an_identifier(org_a, tmp_path, row, problem):
    first = TAP_CSV + "2026-04-01,cursor,mona,mona@corp.example,1,1,1,1\n"
    assert ingest(org_a, write(tmp_path, "a.csv", first)).status == "succeeded"
    run = ingest(org_a, write(tmp_path, "b.csv", TAP_CSV + f"2026-04-02,cursor,{row},2,2,2,2\n"))
    assert run.status == "failed"
    (error,) = run.errors
    assert error["line"] == 2
    assert problem in error["reason"]
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert (identity.github_login, identity.email) == ("mona", "mona@corp.example")


def test_identity_map_merges_and_moves_metrics(org_a, tmp_path, alice):
    ingest(org_a, write(tmp_path, "gh.ndjson", ndjson([copilot_record("mona")])))
    ingest(org_a, write(tmp_path, "cc.ndjson", ndjson([claude_record("Mona@X.example")])))
    with org_context(org_a.id):
        assert DeveloperIdentity.objects.count() == 2
    mapping = "github_login,email,name,team\r\nmona,mona@x.example,Mona Lisa,platform\r\n"
    run = ingest(org_a, write(tmp_path, "map.csv", mapping, bom=True), actor=alice)
    assert run.status == "succeeded", run.message
    assert run.detected_format == "identity_map"
    with org_context(org_a.id):
        (identity,) = DeveloperIdentity.objects.all()
        assert identity.display_name == "Mona Lisa"
        assert (identity.github_login, identity.email) == ("mona", "mona@x.example")
        assert sorted(
            DailyDeveloperMetric.objects.filter(developer_identity=identity).values_list(
                "tool", flat=True
            )
        ) == ["claude_code", "copilot"]
        assert list(DeveloperTeam.objects.values_list("team", flat=True)) == ["platform"]


def test_identity_map_conflict_is_reported_not_guessed(org_a, tmp_path):
    ingest(
        org_a,
        write(
            tmp_path,
            "d.csv",
            TAP_CSV + "2026-04-01,cursor,mona,mona@x.example,1,1,1,1\n",
        ),
    )
    run = ingest(
        org_a, write(tmp_path, "map.csv", "github_login,email,name,team\nmona,other@x.example,,\n")
    )
    assert run.status == "failed"
    assert "already linked to mona@x.example" in run.errors[0]["reason"]
    with org_context(org_a.id):
        assert DeveloperIdentity.objects.get().email == "mona@x.example"


def test_runs_are_isolated_between_organisations(org_a, org_b, tmp_path):
    path = write(tmp_path, "a.ndjson", ndjson([copilot_record()]))
    ingest(org_a, path)
    run_b = ingest(org_b, path)
    # Same file in another org: new there, not "unchanged", and not "uploaded before".
    assert run_b.rows_new == 1
    assert "uploaded before" not in run_b.message
    assert len(rows(org_a)) == len(rows(org_b)) == 1


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_an_organisation_with_metrics_can_be_deleted(org_a, alice, tmp_path):
    from tap.orgs import services as org_services

    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record()])))
    assert (
        DailyDeveloperMetric.all_objects.using("service").filter(organization_id=org_a.id).exists()
    )
    org_services.org_delete(actor=alice, org=org_a)
    assert (
        not DailyDeveloperMetric.all_objects.using("service")
        .filter(organization_id=org_a.id)
        .exists()
    )


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_run_that_still_has_rows_cannot_be_deleted(org_a, tmp_path):
    from django.db import IntegrityError, transaction

    from metrics.models import MetricIngestionRun

    run = ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record()])))
    runs = MetricIngestionRun.all_objects.using("service").filter(pk=run.pk)
    with pytest.raises(IntegrityError), transaction.atomic(using="service"):
        runs.delete()
    assert runs.exists()
    assert len(rows(org_a)) == 1
