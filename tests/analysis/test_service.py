"""campaign_analyze: the hash decides (a fresh analysis is returned without running), one new
conversation re-extracts only itself, the run goes through the analysis queue, the triggers
(completion, daily beat), anonymity, and org isolation of the stored rows."""

import json
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from campaigns.models import Participant
from conversations.analysis import service
from conversations.models import CampaignAnalysis, Conversation, ConversationAnalysis
from conversations.tasks import analysis_daily, campaign_completed
from tap import outbox
from tap.models import OutboxJob
from tap.tenancy import org_context
from tests.analysis.helpers import planted_campaign
from tests.campaigns import creator

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def analyse(org, campaign, **kwargs):
    with org_context(org.id):
        analysis = service.campaign_analyze(actor=None, campaign=campaign, **kwargs)
    outbox.run_due_inline()
    return analysis


def stored(org, campaign):
    with org_context(org.id):
        return CampaignAnalysis.objects.get(campaign=campaign)


def cache_times(org, campaign):
    with org_context(org.id):
        return dict(
            ConversationAnalysis.objects.filter(conversation__campaign=campaign).values_list(
                "conversation_id", "updated_at"
            )
        )


def add_conversation(org, campaign, text, n):
    person = creator.participants_in_bulk(org, campaign, 1, start=1000 + n)[0]
    made = creator.conversation(org, campaign, person, [creator.QUESTION, text])
    with org_context(org.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    return made


def test_the_run_is_queued_on_the_analysis_queue(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    with org_context(org_a.id):
        analysis = service.campaign_analyze(actor=alice, campaign=campaign)
    assert analysis.status == "pending"
    job = OutboxJob.objects.using("service").get(task="conversations.analysis_run")
    assert (job.queue, job.kwargs["input_hash"]) == ("analysis", analysis.pending_hash)
    outbox.run_due_inline()
    assert stored(org_a, campaign).status == "ready"


def test_a_fresh_analysis_is_returned_without_running(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    analyse(org_a, campaign)
    first = stored(org_a, campaign)
    jobs = OutboxJob.objects.using("service").filter(task="conversations.analysis_run").count()
    with org_context(org_a.id):
        again = service.campaign_analyze(actor=None, campaign=campaign)
    assert again.status == "ready"
    assert again.input_hash == first.input_hash
    assert OutboxJob.objects.using("service").filter(task="conversations.analysis_run").count() == (
        jobs
    )
    assert stored(org_a, campaign).generated_at == first.generated_at


def test_a_touched_but_unchanged_conversation_stops_counting_as_changed_after_refresh(org_a, alice):
    """A reply that failed touches the conversation without changing what the analysis reads:
    Refresh finds the analysis up to date, and the page's notice goes."""
    campaign, _truth = planted_campaign(org_a, alice, per_theme=1)
    analyse(org_a, campaign)
    with org_context(org_a.id):
        touched = Conversation.objects.filter(campaign=campaign).first()
        Conversation.objects.filter(pk=touched.pk).update(updated_at=timezone.now())
        assert service.changed_since(campaign=campaign, analysis=stored(org_a, campaign)) == 1
    again = analyse(org_a, campaign)
    assert again.status == "ready"
    assert OutboxJob.objects.using("service").filter(task=service.TASK).count() == 1
    with org_context(org_a.id):
        assert service.changed_since(campaign=campaign, analysis=stored(org_a, campaign)) == 0


def test_one_new_conversation_re_extracts_only_itself(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    analyse(org_a, campaign)
    before = cache_times(org_a, campaign)
    assert len(before) == 24
    new = add_conversation(org_a, campaign, "The onboarding docs are wonderful and clear.", 1)
    analyse(org_a, campaign)
    after = cache_times(org_a, campaign)
    assert len(after) == 25
    changed = [c for c in after if before.get(c) != after[c]]
    assert changed == [new.pk]
    assert stored(org_a, campaign).conversation_count == 25


def test_an_edited_message_changes_the_hash(org_a, alice):
    from conversations.models import Message

    campaign, _truth = planted_campaign(org_a, alice)
    analyse(org_a, campaign)
    old_hash = stored(org_a, campaign).input_hash
    with org_context(org_a.id):
        message = Message.objects.filter(conversation__campaign=campaign, sender="participant")[0]
        message.body = "Actually everything is fine."
        message.save(update_fields=["body", "updated_at"])
    analyse(org_a, campaign)
    assert stored(org_a, campaign).input_hash != old_hash


def test_a_newer_request_supersedes_a_queued_one(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    with org_context(org_a.id):
        service.campaign_analyze(actor=None, campaign=campaign)
    add_conversation(org_a, campaign, "Reviews are slow.", 2)
    with org_context(org_a.id):
        second = service.campaign_analyze(actor=None, campaign=campaign)
    outbox.run_due_inline()
    final = stored(org_a, campaign)
    assert (final.status, final.input_hash) == ("ready", second.pending_hash)
    assert final.conversation_count == 25


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (
            RuntimeError("Error code: 400 - {'message': 'prompt is too long', 'key': 'sk-…'}"),
            "stopped on an unexpected error, which has been logged",
        ),
        (SoftTimeLimitExceeded(), "Refresh to continue where it stopped"),
    ],
    ids=["unexpected", "time limit"],
)
def test_a_failed_run_says_what_to_do_not_the_exception(org_a, alice, client_for, error, shown):
    """Members read the page too: an API's raw answer is for the log, not for them."""
    from conversations.analysis.engines import LocalEngine

    class Breaking(LocalEngine):
        def extract_many(self, conversations, mission=""):
            raise error

    campaign, _truth = planted_campaign(org_a, alice, per_theme=2)
    with org_context(org_a.id), pytest.raises(type(error)):
        service.campaign_analyze(actor=None, campaign=campaign, run_now=True, engine=Breaking())
    failed = stored(org_a, campaign)
    assert failed.status == "failed"
    assert shown in failed.error
    assert "400" not in failed.error
    assert "RuntimeError" not in failed.error


def test_an_analysis_whose_worker_died_on_every_attempt_fails_and_can_be_asked_again(org_a, alice):
    """A worker killed mid-run (or past its hard time limit) records nothing itself: once the
    relay gives the job up, the request fails with a reason — not "running" for ever — and
    the next request queues a new run."""
    campaign, _truth = planted_campaign(org_a, alice)
    with org_context(org_a.id):
        asked = service.campaign_analyze(actor=alice, campaign=campaign)
    past = timezone.now() - timedelta(seconds=1)
    jobs = OutboxJob.objects.using("service").filter(task="conversations.analysis_run")
    # Every attempt was taken and the last one's lease ran out: the worker died running it.
    jobs.update(status="running", attempts=5, max_attempts=5, available_at=past)
    outbox.relay_once(publish=lambda job: None)
    assert jobs.get().status == "dead"
    failed = stored(org_a, campaign)
    assert (failed.status, failed.pending_hash) == ("failed", asked.pending_hash)
    assert "Refresh to try again" in failed.error
    with org_context(org_a.id):
        again = service.campaign_analyze(actor=alice, campaign=campaign)
    assert again.status == "pending"
    assert jobs.filter(status="pending").count() == 1
    outbox.run_due_inline()
    assert stored(org_a, campaign).status == "ready"


def test_completed_only_option_changes_what_is_included(org_a, alice):
    campaign, truth = planted_campaign(org_a, alice)
    with org_context(org_a.id):
        Conversation.objects.filter(pk__in=list(truth)[:5]).update(status="active")
    analyse(org_a, campaign, include_in_progress=False)
    assert stored(org_a, campaign).conversation_count == 19
    analyse(org_a, campaign, include_in_progress=True)
    assert stored(org_a, campaign).conversation_count == 24


def test_campaign_completion_queues_the_analysis(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    with org_context(org_a.id):
        campaign_completed.outbox_body(campaign_id=str(campaign.pk))
    assert stored(org_a, campaign).status == "pending"
    outbox.run_due_inline()
    assert stored(org_a, campaign).status == "ready"


def test_the_daily_run_queues_stale_active_campaigns_only(org_a, alice):
    stale, _ = planted_campaign(org_a, alice, per_theme=2)
    fresh, _ = planted_campaign(org_a, alice, per_theme=2)
    done, _ = planted_campaign(org_a, alice, per_theme=2, status="completed")
    analyse(org_a, fresh)
    analyse(org_a, stale)
    add_conversation(org_a, stale, "Flaky CI tests again.", 3)
    assert analysis_daily() == 1
    with org_context(org_a.id):
        assert CampaignAnalysis.objects.get(campaign=stale).status == "pending"
        assert CampaignAnalysis.objects.get(campaign=fresh).status == "ready"
        assert not CampaignAnalysis.objects.filter(campaign=done).exists()


def test_an_analysis_made_with_names_is_withheld_once_the_campaign_is_anonymous(
    org_a, alice, client_for
):
    """Anonymity may be switched on later; an analysis computed before read the names, and
    its quotes and summary may carry them: not shown, not exported, and recomputed."""
    from django.urls import reverse

    from campaigns.models import Campaign

    campaign, _truth = planted_campaign(org_a, alice, per_theme=3)
    with org_context(org_a.id):
        person = Participant.objects.create(
            organization=org_a, campaign=campaign, email="zelda.quist@corp.example", name="Zelda"
        )
    made = creator.conversation(
        org_a, campaign, person, [creator.QUESTION, "Zelda Quist here: code review is slow."]
    )
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    analyse(org_a, campaign)
    assert stored(org_a, campaign).options["anonymous"] is False
    with org_context(org_a.id):
        settings = dict(campaign.settings, anonymous=True)
        Campaign.objects.filter(pk=campaign.pk).update(settings=settings)
        campaign.refresh_from_db()
    client = client_for(alice)
    page = client.get(reverse("campaigns:analysis:page", args=[org_a.slug, campaign.pk]))
    html = page.content.decode()
    assert "became anonymous after the analysis was made" in html
    assert "Executive summary" not in html
    assert "Markdown report" not in html
    for name in ("export_markdown", "export_csv"):
        url = reverse(f"campaigns:analysis:{name}", args=[org_a.slug, campaign.pk])
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1][0].endswith("/analysis/")  # back to the page …
        assert "zelda" not in response.content.decode().lower()  # … which shows no name
        assert "became anonymous after the analysis was made" in response.content.decode()
    # The daily run computes it again, anonymously; then it shows.
    assert analysis_daily() == 1
    outbox.run_due_inline()
    assert stored(org_a, campaign).options["anonymous"] is True
    html = client.get(
        reverse("campaigns:analysis:page", args=[org_a.slug, campaign.pk])
    ).content.decode()
    assert "Executive summary" in html
    assert "zelda" not in html.lower()


@pytest.mark.parametrize(
    ("name", "email", "text", "masked"),
    [
        # A short name is masked whole; its short parts alone are ordinary words ("an", "do").
        ("Jo Ng", "jo.ng@corp.example", "I'm Jo  Ng; ask jo.", "I'm [name]; ask jo."),
        (
            "An Do",
            "an.do@corp.example",
            "I do think an editor helps.",
            "I do think an editor helps.",
        ),
        # No spaces between words: no word boundary to wait for.
        ("王伟", "wang.wei@corp.cn", "我是王伟，我觉得很好。", "我是[name]，我觉得很好。"),  # noqa: RUF001 - the full-width comma is the point
        ("김민수", "minsu@corp.kr", "김민수가 말했다", "[name]가 말했다"),
        # A one-character part of such a name alone is a common word (이: a particle).
        ("이 민준", "mj@corp.kr", "이것이 문제입니다. 이 민준", "이것이 문제입니다. [name]"),
        # An initial is not masked everywhere it occurs as a letter; the rest is.
        ("A. Smith", "asmith@x.example", "a cat, Smith, asmith", "a cat, [name], [name]"),
        # Words that merely contain a name part stay whole.
        ("Jo Ng", "jo.ng@corp.example", "Jonah and Ngaio", "Jonah and Ngaio"),
    ],
)
def test_the_anonymity_scrubber_masks_every_part_of_a_name(name, email, text, masked):
    from conversations.analysis.inputs import _scrubber

    assert _scrubber(name, email)(text) == masked


def test_anonymous_campaigns_keep_names_and_addresses_out(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice, anonymous=True, per_theme=3)
    with org_context(org_a.id):
        person = Participant.objects.create(
            organization=org_a,
            campaign=campaign,
            email="zelda.quist@corp.example",
            name="Zelda Quist",
        )
    made = creator.conversation(
        org_a,
        campaign,
        person,
        [
            creator.QUESTION,
            "I am Zelda Quist, write to zelda.quist@corp.example or boss@corp.example. "
            "Honestly the code review queue is terrible and slow for pull requests.",
        ],
    )
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    analyse(org_a, campaign)
    analysis = stored(org_a, campaign)
    with org_context(org_a.id):
        cached = list(ConversationAnalysis.objects.values_list("result", flat=True))
    blob = json.dumps(
        [analysis.key_findings, analysis.themes, analysis.executive_summary, cached]
    ).lower()
    for secret in ("zelda", "quist", "@corp.example"):
        assert secret not in blob
    client = client_for(alice)
    for name in ("page", "export_markdown", "export_csv"):
        from django.urls import reverse

        body = (
            client.get(reverse(f"campaigns:analysis:{name}", args=[org_a.slug, campaign.pk]))
            .content.decode()
            .lower()
        )
        assert "zelda" not in body
        assert "person0" not in body  # the other participants' addresses either
        assert "participant " in body


def test_the_stored_rows_stay_in_their_organisation(org_a, org_b, alice):
    campaign, _truth = planted_campaign(org_a, alice, per_theme=2)
    analyse(org_a, campaign)
    with org_context(org_b.id):
        assert not CampaignAnalysis.objects.exists()
        assert not ConversationAnalysis.objects.exists()
    with org_context(org_a.id):
        assert ConversationAnalysis.objects.count() == 6
    assert timezone.now()


def test_a_small_change_is_placed_into_the_existing_themes(org_a, alice):
    campaign, truth = planted_campaign(org_a, alice)
    analyse(org_a, campaign)
    before = stored(org_a, campaign)
    assert before.engine_state["drift"] == 0
    docs_theme = next(t for t, members in before.groupings.items() if truth[members[0]] == "docs")
    new = add_conversation(
        org_a, campaign, "The onboarding documentation and guides are excellent and clear.", 4
    )
    analyse(org_a, campaign)
    after = stored(org_a, campaign)
    assert after.engine_state["drift"] == 1
    assert {t["label"] for t in after.themes} == {t["label"] for t in before.themes}
    docs_after = next(
        t["id"]
        for t in after.themes
        if t["label"] == next(x["label"] for x in before.themes if x["id"] == docs_theme)
    )
    assert str(new.pk) in after.groupings[docs_after]
    assert after.conversations[str(new.pk)]["label"] == "positive"
    assert after.conversation_count == 25
    assert "25 conversations analysed" in after.executive_summary


def test_after_an_erasure_the_refresh_keeps_nothing_of_the_erased_words(org_a, alice):
    """An erased participant's words may be a theme's label and keywords and the engine's
    state: the refresh clusters again rather than updating in place; with nobody left it
    shows no result of theirs either (it used to fail on an empty campaign)."""
    from campaigns import privacy

    campaign, _truth = planted_campaign(org_a, alice, per_theme=2)
    person = creator.participants_in_bulk(org_a, campaign, 1, start=900)[0]
    made = creator.conversation(
        org_a, campaign, person, [creator.QUESTION, "Zanzibarian zucchini quarrels. " * 3]
    )
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    analyse(org_a, campaign)
    assert "zanzibarian" in json.dumps(stored(org_a, campaign).engine_state).lower()
    privacy.participant_erase(actor=alice, participant=person)
    analyse(org_a, campaign)
    after = stored(org_a, campaign)
    assert after.status == "ready", after.error
    text = json.dumps(
        [after.engine_state, after.themes, after.key_findings, after.executive_summary]
    )
    assert "zanzibarian" not in text.lower()
    with org_context(org_a.id):
        everyone = list(Participant.objects.filter(campaign=campaign))
    for participant in everyone:
        privacy.participant_erase(actor=alice, participant=participant)
    analyse(org_a, campaign)
    empty = stored(org_a, campaign)
    assert empty.status == "ready", empty.error
    assert (empty.conversation_count, empty.themes, empty.key_findings) == (0, [], [])


def test_many_changes_cluster_everything_again(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    analyse(org_a, campaign)
    for n in range(4):  # 4 of 28 > 10%
        add_conversation(org_a, campaign, "Flaky tests break the CI pipeline again.", 10 + n)
    analyse(org_a, campaign)
    assert stored(org_a, campaign).engine_state["drift"] == 0
