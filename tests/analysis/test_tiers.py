"""The analysis by developer usage tier: linked participants grouped by their AI-tool usage,
groups under five not broken down."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Participant
from conversations.models import Conversation
from metrics.models import DailyDeveloperMetric, DeveloperIdentity, MetricIngestionRun
from tap.tenancy import org_context
from tests.analysis.helpers import planted_campaign
from tests.analysis.test_page import analysed, url

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def link_with_usage(org, suggestions_by_index: dict[int, int], campaign=None):
    """Every participant (of `campaign`) becomes a developer; those in the map used Claude
    Code that much."""
    today = timezone.localdate()
    with org_context(org.id):
        run = MetricIngestionRun.objects.create(organization=org, file_name="t.ndjson")
        people = Participant.objects.order_by("email")
        people = list(people.filter(campaign=campaign) if campaign else people)
        for index, person in enumerate(people):
            identity = DeveloperIdentity.objects.create(
                organization=org, email=person.email, github_login=f"dev{index}"
            )
            Participant.objects.filter(pk=person.pk).update(developer_identity=identity)
            if index in suggestions_by_index:
                DailyDeveloperMetric.objects.create(
                    organization=org,
                    developer_identity=identity,
                    date=today - timedelta(days=1),
                    tool="claude_code",
                    suggestions=suggestions_by_index[index],
                    ingestion_run=run,
                )
    return len(people)


def test_themes_and_sentiment_by_usage_tier_only_for_groups_of_five(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    total = link_with_usage(org_a, {**dict.fromkeys(range(12), 100), 12: 1, 13: 1, 14: 1})
    analysed(org_a, campaign)
    html = client_for(alice).get(url("page", org_a, campaign)).content.decode()
    assert "By AI-tool usage" in html
    assert '<h3 class="h6 mt-3">Claude Code</h3>' in html
    assert '<td>Heavy</td>\n        <td class="text-end">12</td>' in html
    assert '<td>Light</td>\n        <td class="text-end">fewer than 5</td>' in html
    assert f'<td>None</td>\n        <td class="text-end">{total - 15}</td>' in html


def test_no_breakdown_without_linked_participants(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    analysed(org_a, campaign)
    html = client_for(alice).get(url("page", org_a, campaign)).content.decode()
    assert "By AI-tool usage" not in html


def test_the_breakdown_is_the_same_with_or_without_in_progress_conversations(
    org_a, alice, client_for
):
    """Heavy: twelve, one of them still in progress. Were the breakdown to follow the page's
    scope, heavy with and without the in-progress one, one less the other, would be that
    person's sentiment and themes."""
    campaign, _truth = planted_campaign(org_a, alice)
    link_with_usage(org_a, dict.fromkeys(range(12), 100))
    with org_context(org_a.id):
        first = Participant.objects.order_by("email").first()
        Conversation.objects.filter(participant=first).update(status="active")
    analysed(org_a, campaign)
    client = client_for(alice)
    every = client.get(url("page", org_a, campaign), {"scope": "all"}).context
    completed = client.get(url("page", org_a, campaign), {"scope": "completed"}).context
    assert every["figures"] != completed["figures"]  # the scope does change the figures
    assert every["by_tier"] == completed["by_tier"]
    heavy = every["by_tier"][0]["rows"][0]
    assert (heavy["tier"], heavy["size"]) == ("heavy", 12)


def test_the_breakdown_keeps_the_tiers_of_when_it_was_computed(org_a, alice, client_for):
    """A metrics upload that moves one person out of "heavy" must not change the page: the
    two views, one less the other, would be that person's sentiment and themes. The tiers
    move with the next analysis."""
    from conversations.analysis import service

    campaign, _truth = planted_campaign(org_a, alice)
    link_with_usage(org_a, dict.fromkeys(range(12), 100))
    analysed(org_a, campaign)
    client = client_for(alice)
    before = client.get(url("page", org_a, campaign)).context["by_tier"]
    heavy = before[0]["rows"][0]
    assert (heavy["tier"], heavy["size"]) == ("heavy", 12)
    with org_context(org_a.id):
        first = Participant.objects.order_by("email").first()
        DailyDeveloperMetric.objects.filter(
            developer_identity_id=first.developer_identity_id
        ).delete()
    assert client.get(url("page", org_a, campaign)).context["by_tier"] == before
    with org_context(org_a.id):
        service.campaign_analyze(actor=alice, campaign=campaign, force=True, run_now=True)
    after = client.get(url("page", org_a, campaign)).context["by_tier"]
    assert after[0]["rows"][0]["size"] == 11


def test_an_analysis_stored_before_tiers_were_kept_reads_todays(org_a, alice, client_for):
    """Analyses made before the tiers were stored with them keep their breakdown (from
    today's tiers) until they are computed again."""
    from conversations.models import CampaignAnalysis

    campaign, _truth = planted_campaign(org_a, alice)
    link_with_usage(org_a, dict.fromkeys(range(12), 100))
    analysis = analysed(org_a, campaign)
    older = {
        cid: {k: v for k, v in data.items() if k != "tiers"}
        for cid, data in analysis.conversations.items()
    }
    with org_context(org_a.id):
        CampaignAnalysis.objects.filter(pk=analysis.pk).update(conversations=older)
    by_tier = client_for(alice).get(url("page", org_a, campaign)).context["by_tier"]
    assert (by_tier[0]["rows"][0]["tier"], by_tier[0]["rows"][0]["size"]) == ("heavy", 12)
