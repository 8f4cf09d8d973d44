"""Campaign analysis: one service to ask for it, one runner to compute it.

    campaign_analyze(actor=…, campaign=…)   → the CampaignAnalysis row

If the input hash matches a ready analysis it is returned as is: no engine runs, no AI call.
Otherwise the row is marked pending and an `analysis` outbox job computes it
(`analysis_run`): changed conversations are (re-)extracted and cached by their own hash, then
the campaign is synthesised. The previous ready result stays on the row (and the page) until
the new one replaces it; a failure records its reason next to the old result.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from operator import itemgetter

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign
from conversations.analysis import inputs, tiers
from conversations.analysis.engines import (
    Item,
    LocalEngine,
    NeedsFullRun,
    Result,
    Usage,
    cost_usd,
)
from conversations.models import CampaignAnalysis, Conversation, ConversationAnalysis
from tap import outbox
from tap.ai import AIBadResponse, AIUnavailable, get_backend
from tap.orgs.services import audit
from tap.tenancy import current_org_id, org_context

logger = logging.getLogger(__name__)
S = CampaignAnalysis.Status
TASK = "conversations.analysis_run"
BATCH = 250
# Progress counts extractions, plus this many steps for the synthesis.
SYNTHESIS_STEPS = 1
PREVIOUS_FIELDS = (
    "themes",
    "conversations",
    "key_findings",
    "engine",
    "engine_version",
    "engine_state",
    "options",
    "generated_at",
)


def get_engine():
    """The engine that matches the configured AI backend: Claude with a key, else offline."""
    backend = get_backend()
    if backend.name == "anthropic":
        from conversations.analysis.claude import ClaudeEngine  # noqa: PLC0415

        return ClaudeEngine(backend)
    return _local_engine()


_LOCAL: list[LocalEngine] = []


def _local_engine() -> LocalEngine:
    if not _LOCAL:  # loading VADER's lexicon takes a moment: once per process
        _LOCAL.append(LocalEngine())
    return _LOCAL[0]


def campaign_analyze(
    *,
    actor,
    campaign: Campaign,
    include_in_progress: bool = True,
    force: bool = False,
    run_now: bool = False,
    engine=None,
) -> CampaignAnalysis:
    """Ask for the campaign's analysis. Returns the row: ready and untouched when its hash
    still matches (no recomputation), else pending with a job queued on the `analysis` queue
    (or, with `run_now`, computed before returning — the management command). Unless it was
    just computed here, the row comes without its large result fields (RESULT_FIELDS): read
    them inside the organisation's context."""
    engine = engine or get_engine()
    options = inputs.analysis_options(campaign, include_in_progress=include_in_progress)
    with org_context(campaign.organization_id):
        snap = inputs.snapshot(campaign=campaign, options=options, engine_key=engine.key)
        analysis = _locked_row(campaign)
        # A result that left conversations out is never fresh: a refresh asks about them again.
        fresh = analysis.has_result and analysis.input_hash == snap.hash and not analysis.unanalysed
        if fresh and not force:
            # Nothing the analysis reads has changed since (the hash says so), though rows
            # were touched (a reply that failed, say): the "changed since" notice counts
            # from now, or Refresh could never clear it.
            if snap.taken_at and (analysis.inputs_at is None or snap.taken_at > analysis.inputs_at):
                analysis.inputs_at = snap.taken_at
                analysis.save(update_fields=["inputs_at", "updated_at"])
            return analysis
        already = analysis.in_progress and analysis.pending_hash == snap.hash
        if not (already and not force):
            now = timezone.now()
            analysis.status = S.PENDING
            analysis.pending_hash = snap.hash
            analysis.progress_done = 0
            analysis.progress_total = 0
            analysis.error = ""
            analysis.requested_at = now
            analysis.save(
                update_fields=[
                    "status",
                    "pending_hash",
                    "progress_done",
                    "progress_total",
                    "error",
                    "requested_at",
                    "updated_at",
                ]
            )
            if actor is not None:
                audit(
                    org_id=campaign.organization_id,
                    actor=actor,
                    action="campaign.analysis_requested",
                    target=campaign,
                    conversations=len(snap.conversations),
                )
            if not run_now:
                outbox.enqueue(
                    TASK,
                    queue="analysis",
                    org_id=campaign.organization_id,
                    campaign_id=str(campaign.pk),
                    input_hash=snap.hash,
                    include_in_progress=include_in_progress,
                    full=force,
                )
    if run_now:
        analysis_run(
            campaign_id=str(campaign.pk),
            input_hash=snap.hash,
            include_in_progress=include_in_progress,
            full=force,
            engine=engine,
            raise_errors=True,
            snap=snap,  # read a moment ago, in this process: spare the second read
        )
        with org_context(campaign.organization_id):
            analysis = CampaignAnalysis.objects.get(pk=analysis.pk)
    return analysis


# The result's large JSON stays in the database when the row is only locked and marked.
RESULT_FIELDS = ("conversations", "groupings", "themes", "key_findings", "engine_state")


def _locked_row(campaign: Campaign) -> CampaignAnalysis:
    rows = CampaignAnalysis.objects.select_for_update().defer(*RESULT_FIELDS)
    analysis = rows.filter(campaign=campaign).first()
    if analysis is None:
        try:
            with transaction.atomic():
                CampaignAnalysis.objects.create(
                    organization_id=campaign.organization_id, campaign=campaign
                )
        except IntegrityError:
            pass  # created by a concurrent request
        analysis = rows.get(campaign=campaign)
    return analysis


def _set_progress(analysis_id, **fields) -> None:
    with org_context(current_org_id()):
        CampaignAnalysis.objects.filter(pk=analysis_id).update(**fields, updated_at=timezone.now())


def analysis_run(
    *,
    campaign_id: str,
    input_hash: str,
    include_in_progress: bool = True,
    full: bool = False,
    engine=None,
    raise_errors: bool = False,
    snap: inputs.Snapshot | None = None,
) -> str:
    """Compute a requested analysis (the `analysis` queue's task body; no transaction is open).

    Claims the row (pending or running with this hash: a redelivered job resumes, a
    superseded one stops), extracts the conversations whose own hash changed in batches
    (committed as they go, so a crash resumes where it stopped), synthesises, and stores the
    result — unless a newer request replaced this one meanwhile. A few changed conversations
    are placed into the existing themes when the engine can (`engine.update`); `full` (or a
    large change) re-synthesises from every conversation. Returns the outcome."""
    org_id = current_org_id()
    engine = engine or get_engine()
    with org_context(org_id):
        claimed = CampaignAnalysis.objects.filter(
            campaign_id=campaign_id,
            pending_hash=input_hash,
            status__in=[S.PENDING, S.RUNNING],
        ).update(status=S.RUNNING, started_at=timezone.now(), updated_at=timezone.now())
        if claimed != 1:
            return "superseded"
        campaign = Campaign.objects.get(pk=campaign_id)
        analysis_id = CampaignAnalysis.objects.values_list("pk", flat=True).get(campaign=campaign)
        options = inputs.analysis_options(campaign, include_in_progress=include_in_progress)
        if snap is None or snap.hash != input_hash:
            snap = inputs.snapshot(campaign=campaign, options=options, engine_key=engine.key)
        inputs_at = snap.taken_at
        # Hashes only: results are read later, and only if a full synthesis needs them.
        cached = {
            str(cid): h
            for cid, h in ConversationAnalysis.objects.filter(
                conversation__campaign=campaign, engine=engine.name
            ).values_list("conversation_id", "input_hash")
        }
        previous = CampaignAnalysis.objects.filter(pk=analysis_id).values(*PREVIOUS_FIELDS).first()
    usage = Usage()
    # Conversations the engine could not analyse ({id: number}): left out of this result.
    unanalysed: dict[str, int] = {}
    try:
        todo = [c for c in snap.conversations if cached.get(c.id) != c.hash]
        total = len(todo) + SYNTHESIS_STEPS
        _set_progress(analysis_id, progress_done=0, progress_total=total)
        results: dict[str, dict] = {}
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            with org_context(org_id):
                loaded = inputs.load_conversations(
                    campaign=campaign, included=batch, anonymous=options["anonymous"]
                )
            extracted = engine.extract_many(loaded, campaign.mission)
            rows = []
            outage = None
            for conversation, included, (result, used) in zip(
                loaded, batch, extracted, strict=True
            ):
                usage.add(used)
                if isinstance(result, AIUnavailable):
                    outage = outage or result
                    continue
                if result is None:
                    unanalysed[conversation.id] = conversation.number
                    continue
                results[conversation.id] = result
                rows.append(
                    ConversationAnalysis(
                        organization_id=org_id,
                        conversation_id=conversation.id,
                        engine=engine.name,
                        input_hash=included.hash,
                        result=result,
                        tokens_in=used.tokens_in,
                        tokens_out=used.tokens_out,
                    )
                )
            with org_context(org_id):
                ConversationAnalysis.objects.bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=["organization", "conversation", "engine"],
                    update_fields=["input_hash", "result", "tokens_in", "tokens_out", "updated_at"],
                )
                CampaignAnalysis.objects.filter(pk=analysis_id).update(
                    progress_done=start + len(batch), updated_at=timezone.now()
                )
            if outage is not None:
                raise outage  # after keeping what the batch did get: the retry asks the rest
        analysed = [c for c in snap.conversations if c.id not in unanalysed]
        if unanalysed and not analysed:
            raise AIBadResponse(
                "The model could not analyse any of the conversations: its answers were "
                "invalid twice for each. Refresh to try again."
            )
        context = {
            "campaign": campaign,
            "previous_themes": [t.get("label", "") for t in previous["themes"] or []],
        }
        result = None
        # A conversation the previous result holds and this one does not (erased, expired,
        # left out) rules an update out: its words may be in the themes' labels, keywords
        # and the engine's state, and only a full run takes them out.
        gone = set(previous["conversations"] or {}) - {c.id for c in analysed}
        updatable = (
            not full
            and not gone
            and previous["generated_at"] is not None
            and previous["options"] == snap.options
            and hasattr(engine, "update")
            and engine.can_update(
                previous, total=len(analysed), changed=len(todo) - len(unanalysed)
            )
        )
        if updatable:
            light = [Item(c.id, c.number, c.status, results.get(c.id)) for c in analysed]
            try:
                result, used = engine.update(light, previous, context)
            except NeedsFullRun:
                result = None
        if result is None:
            with org_context(org_id):
                _load_results(results, [c.id for c in analysed], engine.name)
            items = [Item(c.id, c.number, c.status, results[c.id]) for c in analysed]
            result, used = engine.synthesise(items, context)
        usage.add(used)
    except AIUnavailable as exc:
        return _failed(analysis_id, input_hash, exc, usage, raise_errors=raise_errors)
    except Exception as exc:
        logger.exception("analysis failed", extra={"campaign_id": campaign_id})
        _record_failure(analysis_id, input_hash, _failure_message(exc))
        if raise_errors:
            raise
        return "failed"
    # Each conversation's usage tiers as they are now, kept with the result: a breakdown that
    # followed the metrics live would change by one person when one person's usage moved
    # tier, and the two views, one less the other, would be theirs. Read before `_store`
    # locks the row: they are the campaign's metrics queries, not the row's business.
    with org_context(org_id):
        tier_map = tiers.conversation_tiers(campaign, timezone.localdate())
    for conversation_id, data in result.conversations.items():
        data["tiers"] = tier_map.get(conversation_id, {})
    return _store(
        analysis_id,
        input_hash,
        snap,
        result,
        usage,
        engine,
        inputs_at,
        analysed=len(analysed),
        unanalysed=[
            {"id": i, "number": n} for i, n in sorted(unanalysed.items(), key=itemgetter(1))
        ],
    )


def _load_results(results: dict, ids: list[str], engine_name: str) -> None:
    """Fill `results` with the cached extraction of every id it lacks, a chunk at a time."""
    missing = [i for i in ids if i not in results]
    for start in range(0, len(missing), 2000):
        rows = ConversationAnalysis.objects.filter(
            conversation_id__in=missing[start : start + 2000], engine=engine_name
        ).values_list("conversation_id", "result")
        for conversation_id, result in rows:
            results[str(conversation_id)] = result


def _failed(analysis_id, input_hash, exc, usage, *, raise_errors) -> str:
    """A model outage is retried by the outbox (the row says so); a bad answer, or the last
    attempt, fails the run with its reason and keeps the previous result."""
    if not isinstance(exc, AIBadResponse) and not raise_errors and not outbox.is_last_attempt():
        # Only while this request is still the row's: a newer one may have finished
        # meanwhile, and must not be put back to "queued" by a job that will never run again.
        with org_context(current_org_id()):
            CampaignAnalysis.objects.filter(
                pk=analysis_id, pending_hash=input_hash, status__in=[S.PENDING, S.RUNNING]
            ).update(
                status=S.PENDING, error=f"Retrying soon: {exc}"[:2000], updated_at=timezone.now()
            )
        raise exc
    _record_failure(analysis_id, input_hash, str(exc))
    if raise_errors:
        raise exc
    return "failed"


def _failure_message(exc: Exception) -> str:
    """What the page says (members read it too): not the exception's text, which may be a
    model API's raw answer; the detail is in the log."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            "The analysis took longer than a run may. What it read so far is kept: Refresh "
            "to continue where it stopped."
        )
    return (
        "The analysis stopped on an unexpected error, which has been logged. Refresh to "
        "try again; if it fails again, tell your Tap administrator."
    )


def _record_failure(analysis_id, input_hash, reason: str) -> None:
    with org_context(current_org_id()):
        CampaignAnalysis.objects.filter(pk=analysis_id, pending_hash=input_hash).update(
            status=S.FAILED, error=reason[:2000], updated_at=timezone.now()
        )


def analysis_given_up(*, campaign_id, input_hash: str) -> None:
    """The job computing this request was given up without recording why (a worker killed,
    a time limit on every attempt): fail the request, unless a newer one replaced it, so
    that the page stops showing progress and offers Refresh again."""
    CampaignAnalysis.objects.filter(
        campaign_id=campaign_id, pending_hash=input_hash, status__in=[S.PENDING, S.RUNNING]
    ).update(
        status=S.FAILED,
        error="The analysis stopped before it finished. Refresh to try again.",
        updated_at=timezone.now(),
    )


def _store(
    analysis_id,
    input_hash,
    snap,
    result: Result,
    usage: Usage,
    engine,
    inputs_at,
    *,
    analysed: int,
    unanalysed: list[dict],
) -> str:
    with org_context(current_org_id()), transaction.atomic():
        analysis = CampaignAnalysis.objects.select_for_update().get(pk=analysis_id)
        if analysis.pending_hash != input_hash:
            return "superseded"  # a newer request is queued; its job writes the result
        now = timezone.now()
        analysis.themes = result.themes
        analysis.groupings = result.groupings
        analysis.conversations = result.conversations
        analysis.key_findings = result.key_findings
        analysis.sentiment_distribution = result.sentiment_distribution
        analysis.executive_summary = result.executive_summary
        analysis.input_hash = snap.hash
        analysis.options = snap.options
        analysis.engine = engine.name
        analysis.engine_state = result.state
        analysis.engine_version = engine.version
        analysis.model = result.model or engine.model
        analysis.conversation_count = analysed
        analysis.unanalysed = unanalysed
        analysis.inputs_at = inputs_at
        analysis.generated_at = now
        analysis.tokens_in = usage.tokens_in
        analysis.tokens_out = usage.tokens_out
        analysis.cache_read_tokens = usage.cache_read
        analysis.cost_usd = Decimal(
            str(
                cost_usd(
                    usage,
                    price_in=settings.TAP_AI_PRICE_INPUT_PER_MTOK,
                    price_out=settings.TAP_AI_PRICE_OUTPUT_PER_MTOK,
                )
            )
        )
        analysis.status = S.READY
        analysis.error = ""
        analysis.progress_done = analysis.progress_total
        analysis.save()
    return "ready"


# --- reads for the page --------------------------------------------------------------------


def changed_since(*, campaign: Campaign, analysis: CampaignAnalysis) -> int:
    """Conversations with participant answers that are new or changed since the analysis
    read its inputs, plus analysed ones that are gone since (a participant erased, transcripts
    past the retention period): one query."""
    if not analysis.has_result or analysis.inputs_at is None:
        return 0
    analysed = list(analysis.conversations)
    counts = Conversation.objects.filter(campaign=campaign).aggregate(
        changed=Count(
            "pk",
            filter=Q(participant_turns__gt=0)
            & (Q(updated_at__gt=analysis.inputs_at) | Q(created_at__gt=analysis.inputs_at)),
        ),
        still_there=Count("pk", filter=Q(pk__in=analysed or [None])),
    )
    return counts["changed"] + len(analysed) - counts["still_there"]


def withheld(*, campaign: Campaign, analysis: CampaignAnalysis) -> bool:
    """The campaign was made anonymous after this analysis was computed with names: its
    quotes, findings and summary may name people, so it is not shown or exported (a Refresh,
    or the daily run, computes it anonymously)."""
    return (
        analysis.has_result
        and campaign.options.anonymous
        and not (analysis.options or {}).get("anonymous")
    )


# --- beat ----------------------------------------------------------------------------------


def campaigns_analyze_due() -> int:
    """The daily run, inside one organisation: active campaigns whose conversations changed
    since their analysis (or that have none yet) are queued. Returns how many were queued."""
    queued = 0
    for campaign in Campaign.objects.filter(status=Campaign.Status.ACTIVE).order_by("pk"):
        analysis = CampaignAnalysis.objects.filter(campaign=campaign).first()
        has_answers = Conversation.objects.filter(
            campaign=campaign, participant_turns__gt=0
        ).exists()
        if not has_answers:
            continue
        fresh = analysis is not None and analysis.has_result
        if (
            fresh
            and not changed_since(campaign=campaign, analysis=analysis)
            and not withheld(campaign=campaign, analysis=analysis)
        ):
            continue
        before = analysis.pending_hash if analysis else None
        after = campaign_analyze(actor=None, campaign=campaign)
        queued += int(after.in_progress and after.pending_hash != before)
    return queued
