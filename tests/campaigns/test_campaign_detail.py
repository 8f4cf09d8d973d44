"""The campaign page: status, progress, actions allowed now, participant table, constant queries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Participant
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db

MIXED = ("pending", "invited", "opened", "in_progress", "completed", "declined", "bounced")


def test_detail_shows_counts_actions_and_participants(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active", mission_summary="Tools, briefly.")
    creator.participants_in_bulk(org_a, campaign, 14, statuses=MIXED)
    response = client_for(alice).get(creator.url("detail", org_a, campaign.pk))
    assert response.status_code == 200
    counts = response.context["counts"]
    assert (counts["total"], counts["invited"], counts["started"], counts["completed"]) == (
        14,
        12,
        4,
        2,
    )
    assert counts["rate"] == 17
    assert [verb for _to, verb in response.context["transitions"]] == ["pause", "complete"]
    html = response.content.decode()
    assert "Tools, briefly." in html
    assert 'value="paused"' in html
    assert 'value="completed"' in html
    assert 'value="archived"' not in html
    assert "Bounced: 550 mailbox unavailable" in html
    assert "Resend invitation" in html
    assert "<progress" in html


def test_members_see_the_page_without_actions(org_a, alice, bob, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    creator.participants_in_bulk(org_a, campaign, 3)
    html = client_for(bob).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert "person00000@x.example" in html
    assert "Resend invitation" not in html
    assert 'name="to"' not in html
    assert "Add participants" not in html


def test_the_participant_table_filters_by_status_and_pages(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    creator.participants_in_bulk(org_a, campaign, 120, statuses=("invited", "completed"))
    client = client_for(alice)
    page = client.get(creator.url("detail", org_a, campaign.pk)).context["page"]
    assert (len(page), page.paginator.count, page.paginator.num_pages) == (50, 120, 3)
    done = client.get(creator.url("detail", org_a, campaign.pk, status="completed"))
    assert done.context["page"].paginator.count == 60
    assert {p.status for p in done.context["page"]} == {"completed"}
    last = client.get(creator.url("detail", org_a, campaign.pk, page=3)).context["page"]
    assert len(last) == 20


def test_anonymous_campaigns_link_no_row_to_a_transcript(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    (participant,) = creator.participants_in_bulk(org_a, campaign, 1)
    conversation = creator.conversation(org_a, campaign, participant, ["Q", "A"])
    html = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert str(conversation.pk) not in html
    assert "Responses are anonymous" in html


def test_anonymous_campaigns_show_no_time_of_activity(org_a, alice, client_for):
    """The minute someone last answered would match their numbered conversation under
    Responses, and so name it: an anonymous campaign's table shows the day of invitation."""
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    (participant,) = creator.participants_in_bulk(org_a, campaign, 1, statuses=("in_progress",))
    active = timezone.localtime().replace(hour=3, minute=17) - timedelta(days=1)
    with org_context(org_a.id):
        Participant.objects.filter(pk=participant.pk).update(last_activity_at=active)
    html = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert "Last activity" not in html
    assert "3:17" not in html
    assert f'datetime="{timezone.localtime(participant.invited_at):%Y-%m-%d}"' in html

    named = creator.campaign(org_a, alice, status="active", name="Named")
    (person,) = creator.participants_in_bulk(org_a, named, 1, statuses=("in_progress",))
    html = client_for(alice).get(creator.url("detail", org_a, named.pk)).content.decode()
    assert timezone.localtime(person.last_activity_at).strftime("%H:%M") in html


def test_a_named_campaign_links_rows_to_their_transcripts(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    (participant,) = creator.participants_in_bulk(org_a, campaign, 1)
    conversation = creator.conversation(org_a, campaign, participant, ["Q", "A"])
    html = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert creator.url("transcript", org_a, campaign.pk, conversation.pk) in html


def test_an_unknown_campaign_is_404(org_a, org_b, alice, charlie, client_for):
    theirs = creator.campaign(org_b, charlie)
    assert client_for(alice).get(creator.url("detail", org_a, theirs.pk)).status_code == 404


QUERY_BOUND = 15


@pytest.mark.parametrize("count", [10, 1000])
def test_query_count_does_not_grow_with_participants(
    count, org_a, alice, client_for, django_assert_max_num_queries
):
    campaign = creator.campaign(org_a, alice, status="active")
    people = creator.participants_in_bulk(org_a, campaign, count, statuses=MIXED)
    for person in people[:5]:
        creator.conversation(org_a, campaign, person, ["Q", "A"])
    client = client_for(alice)
    with django_assert_max_num_queries(QUERY_BOUND):
        response = client.get(creator.url("detail", org_a, campaign.pk))
    assert response.status_code == 200
    assert response.context["counts"]["total"] == count


def test_the_counts_refresh_themselves_while_the_campaign_runs(org_a, alice, bob, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    creator.participants_in_bulk(org_a, campaign, 3, statuses=("invited",))
    counts_url = creator.url("counts", org_a, campaign.pk)
    page = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert f'hx-get="{counts_url}" hx-trigger="every 5s"' in page
    before = client_for(bob).get(counts_url)  # members read them too
    assert before.status_code == 200
    assert "0 of 3 completed" in before.content.decode()
    creator.participants_in_bulk(org_a, campaign, 2, statuses=("completed",), start=3)
    after = client_for(bob).get(counts_url).content.decode()
    assert "2 of 5 completed" in after
    assert 'id="campaign-counts"' in after
    assert "<html" not in after  # the block alone, swapped in place


def test_the_counts_stay_put_when_nothing_can_move(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="completed")
    page = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert 'id="campaign-counts"' in page
    assert "every 5s" not in page
