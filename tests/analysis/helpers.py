"""Campaigns with planted themes and sentiments, for the analysis tests."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from tests.campaigns import creator

# Three planted themes, each with its own words and tone, eight answers each.
PLANTED = {
    "review": (
        "negative",
        [
            "Code review is painfully slow. Pull requests wait days for a reviewer and it is "
            "frustrating.",
            "The review queue is terrible, my pull requests sit for a week before any reviewer "
            "looks.",
            "Waiting on code review blocks me constantly; reviewers are overloaded and slow.",
            "Pull request reviews take forever and the delay makes me angry and unproductive.",
            "Our code review process is broken: slow reviewers, stale pull requests, awful.",
            "I hate how long code review takes. Pull requests rot waiting for a reviewer.",
            "Slow code review is the worst part; a reviewer takes days on small pull requests.",
            "Reviews are a bottleneck, pull requests wait and the reviewer backlog is awful.",
        ],
    ),
    "docs": (
        "positive",
        [
            "The onboarding documentation is excellent, clear and friendly. I love the guides.",
            "Great documentation! The onboarding guides helped me ship in my first week.",
            "I really enjoy the docs, the onboarding tutorial is wonderful and well written.",
            "Documentation is superb and the onboarding guides are clear, helpful and fun.",
            "Onboarding was a delight thanks to excellent documentation and friendly guides.",
            "The guides and documentation are fantastic; onboarding felt easy and pleasant.",
            "Loved the onboarding documentation, the guides are clear and genuinely helpful.",
            "Excellent docs. The onboarding guides are the best I have seen, very helpful.",
        ],
    ),
    "tests": (
        "negative",
        [
            "Flaky tests in the CI pipeline fail randomly and waste hours every week.",
            "The CI pipeline is unreliable, flaky tests break builds and it is so annoying.",
            "Our test suite is flaky; CI fails for no reason and reruns waste my time.",
            "Flaky integration tests make the CI pipeline red half the time, terrible.",
            "CI builds fail because of flaky tests and the pipeline is painfully unreliable.",
            "I waste time rerunning the CI pipeline when flaky tests fail at random.",
            "Unreliable flaky tests ruin the pipeline; CI failures are a constant pain.",
            "The CI pipeline breaks with flaky tests and nobody fixes them, bad experience.",
        ],
    ),
}


def planted_campaign(org, actor, *, anonymous=False, status="active", per_theme=8):
    """A campaign whose conversations each answer with one planted theme (completed)."""
    campaign = creator.campaign(org, actor, status=status, anonymous=anonymous)
    people = creator.participants_in_bulk(org, campaign, per_theme * len(PLANTED))
    truth = {}
    start = timezone.now() - timedelta(days=1)
    i = 0
    for theme, (_tone, answers) in PLANTED.items():
        for answer in answers[:per_theme]:
            conversation = creator.conversation(
                org,
                campaign,
                people[i],
                [creator.QUESTION, answer, "Could you say more?", answer.split(".")[0] + "."],
                start=start + timedelta(minutes=i),
            )
            truth[str(conversation.pk)] = theme
            i += 1
    from conversations.models import Conversation
    from tap.tenancy import org_context

    with org_context(org.id):
        Conversation.objects.filter(campaign=campaign).update(
            status="completed", participant_turns=2
        )
    return campaign, truth
