"""The Claude engine with the real SDK against the fake Messages API: structured extraction
per conversation (validated, retried, failing clearly), synthesis with quote references,
map-reduce under a small budget, tokens and cost, prompt caching, and the cache that spares
unchanged conversations."""

from collections import deque

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.analysis import service
from conversations.models import CampaignAnalysis, Conversation, ConversationAnalysis, Message
from tap import outbox
from tap.tenancy import org_context
from tests.analysis.claude_fake import Responder
from tests.analysis.helpers import planted_campaign
from tests.campaigns import creator
from tests.fakes.anthropic_server import tool_use

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

EXTRACT = "record_conversation_analysis"
SYNTH = "record_campaign_synthesis"


@pytest.fixture
def claude(fake_claude, settings):
    settings.TAP_ANALYSIS_CONCURRENCY = 1
    return fake_claude


def small_campaign(org, actor, fake):
    campaign, truth = planted_campaign(org, actor, per_theme=1)
    outbox.run_due_inline()  # the campaign's own mission-summary job, off the script
    fake.requests.clear()
    return campaign, truth


def analyse(org, campaign):
    with org_context(org.id):
        service.campaign_analyze(actor=None, campaign=campaign)
    outbox.run_due_inline()
    with org_context(org.id):
        return CampaignAnalysis.objects.get(campaign=campaign)


def extraction(theme, score, quote, ref="m1", **tokens):
    return tool_use(
        EXTRACT,
        {
            "themes": [theme],
            "sentiment_score": score,
            "sentiment_label": "negative" if score < 0 else "positive",
            "quotes": [{"message_ref": ref, "text": quote}],
        },
        **tokens,
    )


def participant_messages(org, campaign):
    with org_context(org.id):
        return {
            str(c): str(m)
            for c, m in Message.objects.filter(
                conversation__campaign=campaign, sender="participant", turn=1
            ).values_list("conversation_id", "pk")
        }


def test_extraction_and_synthesis_store_a_traceable_analysis(org_a, alice, claude):
    campaign, truth = small_campaign(org_a, alice, claude)
    claude.script(
        extraction("Slow reviews", -0.7, "Code review is painfully slow", input_tokens=400),
        extraction("Great docs", 0.8, "The onboarding documentation is excellent"),
        extraction("Flaky CI", -0.5, "Flaky tests in the CI pipeline fail randomly"),
        tool_use(
            SYNTH,
            {
                "themes": [
                    {"label": "Review delays", "description": "Wait", "merges": ["Slow reviews"]},
                    {"label": "Documentation", "merges": ["Great docs"]},
                    {"label": "Unreliable CI", "merges": ["flaky ci"]},
                ],
                "findings": [
                    {"title": "Reviews block work", "detail": "Days.", "quote_refs": ["Q1"]},
                    {"title": "Docs help", "detail": "Loved.", "quote_refs": ["Q2", "Q3"]},
                ],
                "executive_summary": "Reviews are slow; docs are good. " * 80,
            },
            input_tokens=900,
            output_tokens=300,
            cache_read=1200,
        ),
    )
    analysis = analyse(org_a, campaign)
    assert analysis.status == "ready", analysis.error
    assert (analysis.engine, analysis.model) == ("anthropic", "claude-sonnet-5-5")
    labels = {t["label"]: t for t in analysis.themes}
    assert set(labels) == {"Review delays", "Documentation", "Unreliable CI"}
    by_theme = {truth[c]: t for t, members in analysis.groupings.items() for c in members}
    assert labels["Review delays"]["id"] == by_theme["review"]
    assert labels["Unreliable CI"]["id"] == by_theme["tests"]
    messages = participant_messages(org_a, campaign)
    first = analysis.key_findings[0]["quotes"][0]
    assert truth[first["conversation_id"]] == "review"
    assert first["message_id"] == messages[first["conversation_id"]]
    assert len(analysis.executive_summary.split()) <= 300
    assert analysis.tokens_in == 400 + 25 + 25 + 900
    assert analysis.cache_read_tokens == 1200
    assert analysis.cost_usd > 0
    requests = claude.message_requests
    assert len(requests) == 4
    for request in requests:
        body = request.body
        assert body["tool_choice"]["type"] == "tool"
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert campaign.mission in body["system"][0]["text"]
        assert "painfully slow" not in body["system"][0]["text"]
    assert "painfully slow" in requests[0].body["messages"][0]["content"]


def test_a_conversation_answered_invalidly_twice_is_left_out_and_asked_again_next_time(
    org_a, alice, claude, client_for
):
    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = Responder(claude)
    old = analyse(org_a, campaign)
    assert old.status == "ready", old.error
    person = creator.participants_in_bulk(org_a, campaign, 1, start=700)[0]
    made = creator.conversation(org_a, campaign, person, [creator.QUESTION, "Reviews are slow."])
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    claude.requests.clear()
    bad = {"themes": [], "sentiment_score": 3, "sentiment_label": "great", "quotes": []}
    claude._script = Responder(
        claude, first=[tool_use(EXTRACT, bad), tool_use(EXTRACT, {"themes": "x"})]
    )
    analysis = analyse(org_a, campaign)
    # One odd transcript does not fail the campaign's analysis: it is left out, and says so.
    assert analysis.status == "ready", analysis.error
    assert analysis.unanalysed == [{"id": str(made.pk), "number": 4}]
    assert analysis.conversation_count == 3
    assert str(made.pk) not in analysis.conversations
    assert analysis.generated_at > old.generated_at
    tools = [r.body["tool_choice"]["name"] for r in claude.message_requests]
    assert tools == [EXTRACT, EXTRACT, SYNTH]  # the new conversation, asked twice
    assert analysis.tokens_in >= 2 * 25  # the two unusable answers were paid for too
    page = client_for(alice).get(reverse("campaigns:analysis:page", args=[org_a.slug, campaign.pk]))
    notice = page.content.decode().split('id="left-out"')[1].split("</div>")[0]
    assert "1 conversation left out" in notice
    assert person.email in notice  # the campaign shows names
    assert "Refresh asks about it again" in notice
    report = client_for(alice).get(
        reverse("campaigns:analysis:export_markdown", args=[org_a.slug, campaign.pk])
    )
    assert "_Left out:" in report.content.decode()
    # Nothing changed, yet the result is not up to date: a refresh asks about it again.
    claude.requests.clear()
    claude._script = Responder(claude)
    again = analyse(org_a, campaign)
    assert again.status == "ready", again.error
    assert again.unanalysed == []
    assert again.conversation_count == 4
    assert str(made.pk) in again.conversations
    assert [r.body["tool_choice"]["name"] for r in claude.message_requests] == [EXTRACT, SYNTH]


def test_when_no_conversation_can_be_analysed_the_run_fails_keeping_the_old_result(
    org_a, alice, claude
):
    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = Responder(claude)
    old = analyse(org_a, campaign)
    assert old.status == "ready", old.error
    with org_context(org_a.id):
        Message.objects.filter(conversation__campaign=campaign, sender="participant").update(
            body="Changed answer.", updated_at=timezone.now()
        )
    claude._script = deque()
    claude.requests.clear()
    claude.script(*[tool_use(EXTRACT, {"themes": "x"})] * 6)
    analysis = analyse(org_a, campaign)
    assert analysis.status == "failed"
    assert "could not analyse any of the conversations" in analysis.error
    assert len(claude.message_requests) == 6  # three conversations, asked twice each
    assert analysis.themes == old.themes
    assert analysis.generated_at == old.generated_at


def test_a_retry_that_answers_well_succeeds(org_a, alice, claude):
    campaign, _truth = small_campaign(org_a, alice, claude)
    bad = tool_use(EXTRACT, {"themes": ["ok"], "sentiment_score": "high"})
    claude._script = Responder(claude, first=[bad])
    analysis = analyse(org_a, campaign)
    assert analysis.status == "ready", analysis.error
    assert len(claude.message_requests) == 3 + 1 + 1  # one extraction asked twice


def test_fresh_analysis_makes_no_call_and_a_new_conversation_is_the_only_extraction(
    org_a, alice, claude
):
    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = Responder(claude)
    first = analyse(org_a, campaign)
    assert len(claude.message_requests) == 4
    claude.requests.clear()
    with org_context(org_a.id):
        again = service.campaign_analyze(actor=None, campaign=campaign)
    assert again.status == "ready"
    assert outbox.run_due_inline() == 0
    assert claude.message_requests == []
    person = creator.participants_in_bulk(org_a, campaign, 1, start=800)[0]
    made = creator.conversation(org_a, campaign, person, [creator.QUESTION, "Docs are great."])
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    second = analyse(org_a, campaign)
    tools = [r.body["tool_choice"]["name"] for r in claude.message_requests]
    assert tools == [EXTRACT, SYNTH]
    assert "Docs are great" in claude.message_requests[0].body["messages"][0]["content"]
    # The previous labels are offered for reuse (stable themes).
    synthesis = claude.message_requests[1].body["messages"][0]["content"]
    assert "<existing_themes>" in synthesis
    assert all(t["label"] in synthesis for t in first.themes)
    assert second.conversation_count == 4


def test_map_reduce_when_the_input_exceeds_the_budget(org_a, alice, claude, settings):
    campaign, truth = planted_campaign(org_a, alice, per_theme=4)
    outbox.run_due_inline()
    claude.requests.clear()
    claude._script = Responder(claude)
    settings.TAP_ANALYSIS_TOKEN_BUDGET = 200
    analysis = analyse(org_a, campaign)
    assert analysis.status == "ready", analysis.error
    tools = [r.body["tool_choice"]["name"] for r in claude.message_requests]
    assert tools.count(EXTRACT) == 12
    assert tools.count(SYNTH) >= 3  # several map requests and at least one reduce
    for request in claude.message_requests:
        if request.body["tool_choice"]["name"] == SYNTH:
            content = request.body["messages"][0]["content"]
            assert len(content) // 4 <= 200 * 2  # each request near the budget, not the whole
    reduce_inputs = [
        r.body["messages"][0]["content"]
        for r in claude.message_requests
        if "Partial summaries:" in r.body["messages"][0]["content"]
    ]
    assert reduce_inputs
    # Every conversation lands in a theme that holds only its planted kind.
    kinds = {}
    for theme_id, members in analysis.groupings.items():
        kinds[theme_id] = {truth[c] for c in members}
    assert all(len(k) == 1 for k in kinds.values()), kinds
    assert sum(len(m) for m in analysis.groupings.values()) == 12
    assert analysis.key_findings
    assert all(f["quotes"] for f in analysis.key_findings)


def test_many_distinct_labels_are_synthesised_in_parts(org_a, alice, claude, monkeypatch):
    """The synthesis answer lists every label it was given, so its length grows with them: past
    a number of labels the input is split (map-reduce) even far under the token budget."""
    from conversations.analysis import claude as engine

    monkeypatch.setattr(engine, "MAX_LABELS_PER_REQUEST", 2)
    campaign, _truth = planted_campaign(org_a, alice, per_theme=4)
    outbox.run_due_inline()
    claude.requests.clear()
    claude._script = Responder(claude)
    analysis = analyse(org_a, campaign)
    assert analysis.status == "ready", analysis.error
    synth = [r for r in claude.message_requests if r.body["tool_choice"]["name"] == SYNTH]
    assert len(synth) >= 3  # two maps at least, and a reduce
    maps = [
        r.body["messages"][0]["content"]
        for r in synth
        if "Partial summaries:" not in r.body["messages"][0]["content"]
    ]
    assert len(maps) >= 2
    # (A reduce takes two partial results at least, whatever their labels: it converges.)
    assert all(content.split("Quotes:")[0].count("\n- ") <= 2 for content in maps)
    assert sum(len(m) for m in analysis.groupings.values()) == 12
    assert synth[0].body["max_tokens"] == engine.SYNTH_MAX_TOKENS


def test_a_transcript_too_long_for_the_model_is_sent_with_its_middle_left_out(
    org_a, alice, claude, monkeypatch
):
    """An imported transcript can be far longer than the model's context: sent whole, the
    API refuses it and the campaign's analysis fails. Its start and end go, with a note."""
    from conversations.analysis import claude as claude_engine

    monkeypatch.setattr(claude_engine, "TRANSCRIPT_CHARS", 2000)
    campaign, _truth = small_campaign(org_a, alice, claude)
    person = creator.participants_in_bulk(org_a, campaign, 1, start=800)[0]
    bodies = [creator.QUESTION]
    for turn in range(40):
        bodies += [f"Answer {turn}: " + "the build is slow " * 10, f"Follow-up {turn}?"]
    made = creator.conversation(org_a, campaign, person, bodies)
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=40)
    claude._script = Responder(claude)
    analysis = analyse(org_a, campaign)
    assert analysis.status == "ready", analysis.error
    long_one = next(str(r.body) for r in claude.message_requests if "Answer 39" in str(r.body))
    assert "Answer 0:" in long_one  # the start …
    assert "Answer 20:" not in long_one  # … not the middle …
    assert "messages left out for length" in long_one  # … said so …
    assert len(long_one) < 2000 + 3000  # … within the budget (plus the request's own text)


def test_no_name_or_address_reaches_claude_in_an_anonymous_campaign(org_a, alice, claude):
    from campaigns.models import Participant

    campaign, _truth = planted_campaign(org_a, alice, anonymous=True, per_theme=1)
    outbox.run_due_inline()
    claude.requests.clear()
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
        [creator.QUESTION, "Zelda Quist here (zelda.quist@corp.example): reviews are slow."],
    )
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    claude._script = Responder(claude)
    assert analyse(org_a, campaign).status == "ready"
    sent = " ".join(str(r.body) for r in claude.message_requests).lower()
    assert "reviews are slow" in sent
    for secret in ("zelda", "quist", "corp.example", "person0"):
        assert secret not in sent


def test_an_outage_in_a_superseded_run_leaves_the_newer_result_alone(org_a, alice, claude):
    """Run A is slow; Refresh starts B, which finishes; then A meets an outage. A's retry can
    never claim the row (B's request replaced A's), so A must not put it back to "queued":
    the page would poll "Retrying soon" for ever, with Refresh disabled."""
    from tap.ai import AIUnavailable

    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = Responder(claude)
    newer = analyse(org_a, campaign)
    assert newer.status == "ready"
    with org_context(org_a.id), pytest.raises(AIUnavailable):
        service._failed(
            newer.pk,
            "the hash of A's older request",
            AIUnavailable("HTTP 529"),
            service.Usage(),
            raise_errors=False,
        )
    with org_context(org_a.id):
        row = CampaignAnalysis.objects.get(pk=newer.pk)
    assert (row.status, row.error) == ("ready", "")


def test_an_outage_is_retried_by_the_outbox_and_then_fails_keeping_the_result(
    org_a, alice, claude, settings
):
    from django.utils import timezone

    from tap.models import OutboxJob
    from tests.fakes.anthropic_server import error

    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = Responder(claude)
    old = analyse(org_a, campaign)
    person = creator.participants_in_bulk(org_a, campaign, 1, start=900)[0]
    made = creator.conversation(org_a, campaign, person, [creator.QUESTION, "CI is flaky."])
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    claude._script = deque([error(529, retry_after=0)] * 3)
    analysis = analyse(org_a, campaign)
    job = (
        OutboxJob.objects.using("service")
        .filter(task="conversations.analysis_run")
        .latest("created_at")
    )
    assert (job.status, job.attempts) == ("pending", 1)
    assert analysis.status == "pending"
    assert "Retrying soon" in analysis.error
    # The last attempt fails for good: the reason is shown, the old result stays.
    OutboxJob.objects.using("service").filter(pk=job.pk).update(
        available_at=timezone.now(), max_attempts=2
    )
    claude._script = deque([error(529, retry_after=0)] * 3)
    outbox.run_due_inline()
    with org_context(org_a.id):
        failed = CampaignAnalysis.objects.get(campaign=campaign)
    assert failed.status == "failed"
    assert "HTTP 529" in failed.error
    assert (failed.themes, failed.generated_at) == (old.themes, old.generated_at)


def test_an_outage_keeps_the_extractions_already_paid_for(org_a, alice, claude):
    """The model goes away after the first conversation: its extraction is kept, the rest are
    not asked (they would be paid for and thrown away), and the retry asks only for those."""
    from django.utils import timezone

    from tap.models import OutboxJob
    from tests.fakes.anthropic_server import error

    class FirstThenOverloaded(deque):
        def __init__(self, responder):
            super().__init__()
            self.responder, self.answered = responder, 0

        def __bool__(self):
            return True

        def popleft(self):
            self.answered += 1
            if self.answered == 1:
                return self.responder.popleft()
            return error(529, retry_after=0)

    campaign, _truth = small_campaign(org_a, alice, claude)
    claude._script = FirstThenOverloaded(Responder(claude))
    analysis = analyse(org_a, campaign)
    assert analysis.status == "pending"
    assert "Retrying soon" in analysis.error
    assert len(claude.message_requests) == 1 + 3  # 3: the client's own retries; no third
    with org_context(org_a.id):
        assert ConversationAnalysis.objects.filter(conversation__campaign=campaign).count() == 1
    claude.requests.clear()
    claude._script = Responder(claude)
    OutboxJob.objects.using("service").filter(task="conversations.analysis_run").update(
        available_at=timezone.now()
    )
    outbox.run_due_inline()
    with org_context(org_a.id):
        done = CampaignAnalysis.objects.get(campaign=campaign)
    assert done.status == "ready", done.error
    assert done.conversation_count == 3
    tools = [r.body["tool_choice"]["name"] for r in claude.message_requests]
    assert tools == [EXTRACT, EXTRACT, SYNTH]
