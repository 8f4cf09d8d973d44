"""Hostile input, fuzzed with hypothesis: whatever a participant or a creator sends, the
answer is a page or a clear refusal — never a 500 — and nothing is half-written.

(The metrics parsers have their own fuzz test in tests/metrics/.)"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.models import Campaign, Participant
from conversations.models import Conversation, Message
from tap.tenancy import org_context
from tests.campaigns import creator
from tests.campaigns.test_participant_links import active_campaign, link_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLIENT_KEY = re.compile(r'name="client_key" value="([0-9a-f]{32})"')
# Any text: control characters, NUL, combining marks, right-to-left, astral planes …
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
NASTY = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        '=HYPERLINK("http://evil")',
        "\u202eevil",
        "x" * 5001,
        "  \n\t ",
        "{{ request }}",
        "%s%s%s",
    ]
)


@pytest.fixture
def in_chat(client, alice, org_a, settings):
    settings.TAP_PARTICIPANT_POST_RATE = "100000/60"
    active_campaign(org_a, alice, max_follow_ups=10)
    client.get(link_in(mail.outbox[0]))
    return client


def stored(org) -> list[str]:
    with org_context(org.id):
        return list(
            Message.objects.filter(sender="participant")
            .order_by("turn")
            .values_list("body", flat=True)
        )


@FUZZ
@given(body=st.one_of(ANY_TEXT, NASTY))
def test_any_answer_is_stored_exactly_or_refused_clearly(in_chat, org_a, body):
    before = stored(org_a)
    page = in_chat.get("/c/").content.decode()
    key = CLIENT_KEY.search(page).group(1)
    response = in_chat.post(
        "/c/messages/", {"body": body, "client_key": key}, HTTP_HX_REQUEST="true"
    )
    after = stored(org_a)
    assert response.status_code in (200, 422), response.status_code
    if response.status_code == 200:
        assert after == [*before, body.replace("\r\n", "\n").strip()]
    else:
        assert after == before  # refused: nothing written
        assert 'class="invalid-feedback' in response.content.decode() or "alert" in (
            response.content.decode()
        )
    # Ready for the next example: the reply is not what is under test here.
    with org_context(org_a.id):
        Conversation.objects.update(awaiting_reply=False)


@FUZZ
@given(
    name=st.one_of(ANY_TEXT, NASTY),
    mission=st.one_of(ANY_TEXT, NASTY),
    question=st.one_of(ANY_TEXT, NASTY),
    follow_ups=st.one_of(st.integers(-5, 50).map(str), ANY_TEXT),
    language=st.one_of(ANY_TEXT, st.just("English")),
)
def test_any_campaign_form_is_created_whole_or_refused(
    client_for, alice, org_a, name, mission, question, follow_ups, language
):
    client = client_for(alice)
    with org_context(org_a.id):
        before = Campaign.objects.count()
    response = client.post(
        creator.url("create", org_a),
        {
            "name": name,
            "mission": mission,
            "opening_question": question,
            "max_follow_ups": follow_ups,
            "tone": "neutral",
            "language": language,
        },
    )
    assert response.status_code in (200, 302), response.status_code
    with org_context(org_a.id):
        after = Campaign.objects.count()
    if response.status_code == 302:
        assert after == before + 1
        with org_context(org_a.id):
            made = Campaign.objects.order_by("-created_at").first()
        assert made.name == name.strip()
    else:
        assert after == before
        assert "is-invalid" in response.content.decode()


@FUZZ
@given(pasted=st.one_of(ANY_TEXT, NASTY, st.lists(st.emails(), max_size=5).map("\n".join)))
def test_any_pasted_participant_list_adds_only_valid_addresses(client_for, alice, org_a, pasted):
    client = client_for(alice)
    campaign = Campaign.all_objects.using("service").filter(organization=org_a).first()
    if campaign is None:
        campaign = creator.campaign(org_a, alice, status="draft")
    with org_context(org_a.id):
        before = Participant.objects.count()
    response = client.post(
        creator.url("participants_add", org_a, campaign.pk), {"addresses": pasted}
    )
    assert response.status_code in (200, 302), response.status_code
    with org_context(org_a.id):
        emails = list(Participant.objects.values_list("email", flat=True))
    assert len(emails) >= before
    for email in emails:
        assert "@" in email
        assert "\x00" not in email
        assert email == email.strip()


def test_login_next_cannot_leave_the_site(client, alice):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.post(
            f"/accounts/login/?next={target}",
            {"username": alice.email, "password": PASSWORD},
        )
        assert response.status_code == 302
        assert "evil.example" not in response["Location"], target
        client.logout()


def test_password_reset_requests_are_rate_limited_per_client(client, alice):
    for _ in range(10):
        assert client.post("/accounts/password/reset/", {"email": alice.email}).status_code == 302
    refused = client.post("/accounts/password/reset/", {"email": alice.email})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
