"""analyze_campaign and import_transcripts: the documented format, clear errors, nothing
half-written, and the same service as the page."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from conversations.models import CampaignAnalysis, Conversation, Message
from tap.tenancy import org_context
from tests.analysis.helpers import planted_campaign
from tests.campaigns import creator

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "analysis" / "import"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_analyze_campaign_prints_the_analysis_and_json(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    text = run("analyze_campaign", "--org", org_a.slug, "--campaign", campaign.name)
    assert "Executive summary" in text
    assert "offline analysis" in text
    data = json.loads(
        run("analyze_campaign", "--org", org_a.slug, "--campaign", str(campaign.pk), "--json")
    )
    assert data["status"] == "ready"
    assert data["conversation_count"] == 24
    assert len(data["themes"]) == 3
    with org_context(org_a.id):
        assert CampaignAnalysis.objects.get(campaign=campaign).input_hash == data["input_hash"]


def test_analyze_campaign_errors(org_a, alice):
    with pytest.raises(CommandError, match="No organisation"):
        run("analyze_campaign", "--org", "nope", "--campaign", "x")
    with pytest.raises(CommandError, match="No campaign"):
        run("analyze_campaign", "--org", org_a.slug, "--campaign", "missing")


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_the_templates_import(org_a, alice, kind, tmp_path):
    campaign = creator.campaign(org_a, alice, status="active")
    printed = run("import_transcripts", "--template", kind)
    assert printed == (TEMPLATES / f"transcripts-template.{kind}").read_text()
    path = tmp_path / f"t.{kind}"
    path.write_text(printed)
    out = run("import_transcripts", "--org", org_a.slug, "--campaign", campaign.name, str(path))
    assert "Imported 2 conversations (6 messages)" in out
    with org_context(org_a.id):
        conversations = Conversation.objects.filter(campaign=campaign).select_related("participant")
        assert {c.participant.email for c in conversations} == {
            "ana@example.com",
            "interview-2@imported.invalid",
        }
        ana = conversations.get(participant__email="ana@example.com")
        assert (ana.status, ana.participant_turns) == ("completed", 2)
        turns = list(
            Message.objects.filter(conversation=ana)
            .order_by("created_at")
            .values_list("sender", "turn")
        )
        assert turns == [("bot", 0), ("participant", 1), ("bot", 1), ("participant", 2)]
    # Imported conversations are analysed like Tap's own.
    data = json.loads(
        run("analyze_campaign", "--org", org_a.slug, "--campaign", campaign.name, "--json")
    )
    assert data["conversation_count"] == 2


def test_a_bad_file_imports_nothing_and_lists_its_lines(org_a, alice, tmp_path):
    campaign = creator.campaign(org_a, alice, status="active")
    path = tmp_path / "bad.csv"
    path.write_text(
        "participant,sender,text,time\n"
        "a@x.example,participant,Fine,2026-03-01T10:00:00Z\n"
        "a@x.example,robot,Hello,2026-03-01T10:01:00Z\n"
        ",participant,,yesterday\n"
    )
    with pytest.raises(CommandError) as caught:
        run("import_transcripts", "--org", org_a.slug, "--campaign", campaign.name, str(path))
    message = str(caught.value)
    assert "Nothing was imported" in message
    assert "line 3: sender 'robot'" in message
    assert "line 4: participant is empty; text is empty; time 'yesterday'" in message
    with org_context(org_a.id):
        assert not Conversation.objects.filter(campaign=campaign).exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name,text\nx,y\n", "the columns must be exactly participant, sender, text, time"),
        ('{"participant": "x"}', "must be an array"),
        (
            '[{"participant": "x", "sender": "participant", "text": "t", "time": "2026-01-01", '
            '"extra": 1}]',
            "unknown keys extra",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[]", "no messages"),
    ],
)
def test_malformed_files_are_refused_clearly(org_a, alice, tmp_path, content, expected):
    campaign = creator.campaign(org_a, alice, status="active")
    path = tmp_path / ("f.json" if content.startswith(("[", "{")) else "f.csv")
    path.write_text(content)
    with pytest.raises(CommandError, match=expected):
        run("import_transcripts", "--org", org_a.slug, "--campaign", campaign.name, str(path))


def test_non_utf8_is_refused(org_a, alice, tmp_path):
    campaign = creator.campaign(org_a, alice, status="active")
    path = tmp_path / "latin.csv"
    path.write_bytes("participant,sender,text,time\nä,participant,é,2026-01-01\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8"):
        run("import_transcripts", "--org", org_a.slug, "--campaign", campaign.name, str(path))


def test_a_participant_with_a_conversation_is_not_imported_twice(org_a, alice, tmp_path):
    campaign = creator.campaign(org_a, alice, status="active")
    path = tmp_path / "t.csv"
    path.write_text((TEMPLATES / "transcripts-template.csv").read_text())
    args = ("import_transcripts", "--org", org_a.slug, "--campaign", campaign.name, str(path))
    run(*args)
    with pytest.raises(CommandError, match="already has a conversation"):
        run(*args)
    with org_context(org_a.id):
        assert Conversation.objects.filter(campaign=campaign).count() == 2
