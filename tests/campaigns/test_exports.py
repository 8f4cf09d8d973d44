"""Exports: streamed CSV and JSON of a campaign's messages, formula-safe, anonymity kept."""

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from tap.spreadsheet import cell
from tests.campaigns import creator

pytestmark = pytest.mark.django_db

NASTY = ['=HYPERLINK("http://evil")', "+1 555", "-2+3", "@SUM(A1)", "\tTab", "\rCR", "plain"]


@pytest.fixture
def campaign_with_chat(org_a, alice):
    def make(*, anonymous):
        campaign = creator.campaign(org_a, alice, status="active", anonymous=anonymous)
        people = creator.participants_in_bulk(org_a, campaign, 2)
        creator.conversation(org_a, campaign, people[1], ["Opening?", "=1+1"])
        creator.conversation(org_a, campaign, people[0], ["Opening?", "@me"])
        return campaign

    return make


def read(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def read_csv(response) -> str:
    text = read(response)
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8, names with accents too
    return text[1:]


def test_csv_cells_that_spreadsheets_would_run_are_quoted():
    assert [cell(v) for v in [*NASTY, "-0.25", None]] == [
        '\'=HYPERLINK("http://evil")',
        "'+1 555",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTab",
        "'\rCR",
        "plain",
        "-0.25",  # a plain number cannot be a formula: it stays a number
        "",
    ]


def test_csv_export_streams_every_message_safely(org_a, bob, client_for, campaign_with_chat):
    campaign = campaign_with_chat(anonymous=False)
    response = client_for(bob).get(creator.url("export_csv", org_a, campaign.pk))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(read_csv(response))))
    assert rows[0] == ["participant", "email", "sender", "sent_at", "message"]
    body = rows[1:]
    assert [r[4] for r in body] == ["Opening?", "'=1+1", "Opening?", "'@me"]
    assert [r[2] for r in body] == ["bot", "participant", "bot", "participant"]
    assert body[0][:2] == ["Person 1 <person00001@x.example>", "person00001@x.example"]
    assert body[2][1] == "person00000@x.example"


def test_anonymous_csv_export_names_nobody(org_a, alice, client_for, campaign_with_chat):
    campaign = campaign_with_chat(anonymous=True)
    text = read_csv(client_for(alice).get(creator.url("export_csv", org_a, campaign.pk)))
    assert "x.example" not in text
    assert "Person" not in text
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert [r[0] for r in rows] == ["Participant 1"] * 2 + ["Participant 2"] * 2
    assert {r[1] for r in rows} == {""}


def test_json_export(org_a, alice, client_for, campaign_with_chat):
    campaign = campaign_with_chat(anonymous=False)
    response = client_for(alice).get(creator.url("export_json", org_a, campaign.pk))
    assert response["Content-Type"] == "application/json"
    data = json.loads(read(response))
    assert data["campaign"] == {"id": str(campaign.pk), "name": "Tooling", "anonymous": False}
    assert [m["message"] for m in data["messages"]] == ["Opening?", "=1+1", "Opening?", "@me"]
    assert data["messages"][0]["email"] == "person00001@x.example"


def test_anonymous_json_export_names_nobody(org_a, alice, client_for, campaign_with_chat):
    campaign = campaign_with_chat(anonymous=True)
    text = read(client_for(alice).get(creator.url("export_json", org_a, campaign.pk)))
    assert "x.example" not in text
    data = json.loads(text)
    assert {m["participant"] for m in data["messages"]} == {"Participant 1", "Participant 2"}
    assert all("email" not in m for m in data["messages"])


def test_an_empty_campaign_exports_valid_files(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    assert (
        json.loads(read(client.get(creator.url("export_json", org_a, campaign.pk))))["messages"]
        == []
    )
    assert read_csv(client.get(creator.url("export_csv", org_a, campaign.pk))).strip() == (
        "participant,email,sender,sent_at,message"
    )


def test_exports_of_another_orgs_campaign_are_404(org_a, org_b, alice, charlie, client_for):
    theirs = creator.campaign(org_b, charlie)
    client = client_for(alice)
    assert client.get(creator.url("export_csv", org_a, theirs.pk)).status_code == 404
    assert client.get(creator.url("export_json", org_a, theirs.pk)).status_code == 404
