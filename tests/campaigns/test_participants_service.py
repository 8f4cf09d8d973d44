"""Adding participants: parsing reports, idempotence, bulk without per-row queries."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import services
from campaigns.models import Participant
from campaigns.participant_input import parse_csv, parse_pasted
from tap.tenancy import org_context
from tests.campaigns.test_lifecycle import make_campaign


def test_pasted_lists_accept_lines_commas_and_names():
    parsed = parse_pasted(
        'a@x.example, B <b@x.example>; "Cee Dee" <c@x.example>\nnot an address\nA@X.example\n'
    )
    assert parsed.valid == [("a@x.example", ""), ("b@x.example", "B"), ("c@x.example", "Cee Dee")]
    assert parsed.rejected == [
        (2, "not an address", "not a valid email address"),
        (3, "A@X.example", "duplicate in this list"),
    ]


def test_pasted_names_in_last_first_form_and_overlong_addresses():
    """Mail programs write "Doe, John" <…>: the comma inside the quotes is part of the name.
    An address longer than Tap keeps is a line with its reason, not a failed request."""
    long = "a" * 250 + "@example.com"
    parsed = parse_pasted(
        '"Doe, John" <john.doe@example.com>; "Smith, Jane" <jane@example.com>, k@x.example\n' + long
    )
    assert parsed.valid == [
        ("john.doe@example.com", "Doe, John"),
        ("jane@example.com", "Smith, Jane"),
        ("k@x.example", ""),
    ]
    assert parsed.rejected == [(2, long[:200], "longer than 254 characters")]


def test_csv_with_bom_crlf_and_header():
    parsed = parse_csv("\ufeffemail,name\r\na@x.example,Ann\r\nbad,Bob\r\n".encode())
    assert parsed.valid == [("a@x.example", "Ann")]
    assert parsed.rejected == [(3, "bad,Bob", "not a valid email address")]


def test_csv_line_numbers_count_lines_not_rows():
    parsed = parse_csv(b'email,name\na@x.example,"Ann\nMarie"\nbad,Bob\n')
    assert parsed.valid == [("a@x.example", "Ann Marie")]
    assert parsed.rejected == [(4, "bad,Bob", "not a valid email address")]


def test_bad_files_are_refused_with_a_clear_message():
    with pytest.raises(ValidationError, match="not UTF-8"):
        parse_csv("email\nzoë@x.example\n".encode("latin-1"))
    with pytest.raises(ValidationError, match="limit is 5 MB"):
        parse_csv(b"a@x.example\n" * (2 * 1024 * 1024))


@pytest.mark.django_db
def test_adding_is_idempotent_and_reports_what_was_there(org_a, alice):
    campaign = make_campaign(org_a, alice, participants=())
    with org_context(org_a.id):
        first = services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("a@x.example\nb@x.example")
        )
        second = services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("A@x.example\nc@x.example")
        )
        assert (first.added, second.added) == (2, 1)
        assert second.already_there == ["a@x.example"]
        assert Participant.objects.count() == 3


@pytest.mark.django_db
def test_ten_thousand_at_once_in_a_handful_of_queries(org_a, alice, django_assert_max_num_queries):
    campaign = make_campaign(org_a, alice, participants=())
    text = "\n".join(f"person{i}@x.example" for i in range(10_000))
    parsed = parse_pasted(text)
    with org_context(org_a.id):
        with django_assert_max_num_queries(20):
            report = services.participants_add(actor=alice, campaign=campaign, parsed=parsed)
        assert report.added == 10_000
        assert Participant.objects.count() == 10_000


@pytest.mark.django_db
def test_revoking_links_and_resending(org_a, alice):
    from campaigns.models import CampaignEmail, ParticipantLink

    make_campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        participant = Participant.objects.get()
        services.link_issue(participant=participant)
        services.link_issue(participant=participant)
        email = services.links_revoke(actor=alice, participant=participant, reissue=True)
        assert ParticipantLink.objects.filter(revoked_at=None).count() == 0
        assert (email.kind, email.sequence) == ("invitation", 1)
        CampaignEmail.objects.update(status="sent", sent_at=timezone.now() - timedelta(hours=1))
        again = services.participant_resend(actor=alice, participant=participant)
        assert again.sequence == 2
        assert CampaignEmail.objects.count() == 2
