"""Adding participants from the page: pasted lists and CSV files, the report, bad files."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Participant
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db

MIXED_LIST = """ann@x.example, Bob <bob@x.example>
not an address
"Cee Dee" <cee@x.example>; ANN@x.example
dee@x.example
"""


def participants(org):
    with org_context(org.id):
        return dict(Participant.objects.values_list("email", "name"))


def test_a_mixed_paste_adds_the_good_and_reports_each_bad_line(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    add = creator.url("participants_add", org_a, campaign.pk)
    response = client.post(add, {"addresses": MIXED_LIST})
    assert response.status_code == 302
    assert response["Location"] == add
    page = client.get(add)
    report = page.context["report"]
    assert report["added"] == 4
    assert report["already_there"] == 0
    assert report["rejected"] == [
        [2, "not an address", "not a valid email address"],
        [3, "ANN@x.example", "duplicate in this list"],
    ]
    html = page.content.decode()
    assert "Added 4" in html
    assert "Rejected 2" in html
    assert "Not a valid email address" in html
    assert "Duplicate in this list" in html
    assert participants(org_a) == {
        "ann@x.example": "",
        "bob@x.example": "Bob",
        "cee@x.example": "Cee Dee",
        "dee@x.example": "",
    }
    # The report is shown once.
    assert client.get(add).context["report"] is None


def test_adding_the_same_list_twice_adds_nothing_the_second_time(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    add = creator.url("participants_add", org_a, campaign.pk)
    client.post(add, {"addresses": MIXED_LIST})
    client.get(add)
    client.post(add, {"addresses": MIXED_LIST})
    report = client.get(add).context["report"]
    assert (report["added"], report["already_there"]) == (0, 4)
    assert len(participants(org_a)) == 4


def test_a_csv_upload(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    add = creator.url("participants_add", org_a, campaign.pk)
    upload = SimpleUploadedFile(
        "people.csv", "email,name\r\nzoe@x.example,Zoë\r\nbroken,Bo\r\n".encode(), "text/csv"
    )
    client.post(add, {"csv_file": upload})
    report = client.get(add).context["report"]
    assert report["source"] == "people.csv"
    assert report["added"] == 1
    assert report["rejected"] == [[3, "broken,Bo", "not a valid email address"]]
    assert participants(org_a) == {"zoe@x.example": "Zoë"}


def test_in_an_active_campaign_new_people_are_invited_at_once(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    client = client_for(alice)
    add = creator.url("participants_add", org_a, campaign.pk)
    client.post(add, {"addresses": "new@x.example"})
    assert client.get(add).context["report"]["invited"] == 1
    with org_context(org_a.id):
        assert Participant.objects.get().status == "invited"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a@x.example,A\n" * (20 * 1024 * 1024 // 14 + 1), "the limit is 5 MB"),
        ("email,name\nzoë@x.example,Zoë\n".encode("latin-1"), "not UTF-8"),
        # An open quote used to swallow every later line into one bad row, without a word.
        (
            b'email,name\na@x.example,"Ann\nb@x.example,Bob\nc@x.example,Cy\n',
            "Line 2: a quote (&quot;) opens a value that is never closed. Nothing was added.",
        ),
        (b"a@x.example,A\nb@x.example," + b"x" * 200_000 + b"\n", "Line 2: a value is longer"),
        ("email,name\na@x.example,Ann\n".encode("utf-16-le"), "holds NUL characters"),
        (b"email,name\na@x.example,A\x00nn\n", "holds NUL characters"),
    ],
    ids=["20 MB", "latin-1", "open quote", "huge value", "UTF-16", "NUL"],
)
def test_bad_files_get_a_clear_error_and_add_nothing(org_a, alice, client_for, content, message):
    campaign = creator.campaign(org_a, alice)
    upload = SimpleUploadedFile("people.csv", content, "text/csv")
    response = client_for(alice).post(
        creator.url("participants_add", org_a, campaign.pk), {"csv_file": upload}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert participants(org_a) == {}


def test_an_empty_form_and_both_inputs_at_once_are_refused(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    add = creator.url("participants_add", org_a, campaign.pk)
    assert "Paste some addresses" in client.post(add, {"addresses": "  "}).content.decode()
    upload = SimpleUploadedFile("p.csv", b"a@x.example\n", "text/csv")
    both = client.post(add, {"addresses": "b@x.example", "csv_file": upload})
    assert "not both" in both.content.decode()
    assert participants(org_a) == {}


def test_completed_campaigns_take_no_one_new(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="completed")
    response = client_for(alice).post(
        creator.url("participants_add", org_a, campaign.pk), {"addresses": "a@x.example"}
    )
    assert "cannot be added to a completed campaign" in response.content.decode()
    assert participants(org_a) == {}


def test_members_cannot_add_people(org_a, alice, bob, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(bob)
    add = creator.url("participants_add", org_a, campaign.pk)
    assert client.get(add).status_code == 403
    assert client.post(add, {"addresses": "a@x.example"}).status_code == 403
    assert participants(org_a) == {}
