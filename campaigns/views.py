"""The creator's campaign pages, under /o/<org_slug>/campaigns/.

Thin views: `@org_view` checks the permission, a scoped fetch finds the row (another org's is a
404), a form converts the input, one service acts, and a POST ends in a redirect."""

from __future__ import annotations

import csv
import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify

from campaigns import identities, privacy, selectors, services
from campaigns.forms import (
    CampaignEditForm,
    CampaignFilterForm,
    CampaignForm,
    ParticipantFilterForm,
    ParticipantsAddForm,
)
from campaigns.models import Campaign, Participant
from campaigns.participant_input import parse_csv, parse_pasted
from conversations.models import Conversation
from tap import spreadsheet
from tap.ai import get_backend
from tap.orgs.decorators import org_view
from tap.orgs.views import apply_errors
from tap.pagination import paginate
from tap.tenancy import org_context

VIEW = "campaigns.view_campaign"
MANAGE = "campaigns.manage_campaign"
CAMPAIGNS_PER_PAGE = 25
PARTICIPANTS_PER_PAGE = 50
# The add report keeps this many rejected lines for the page; the count is always exact.
REPORT_LINES = 500


def _campaign(campaign_id) -> Campaign:
    return get_object_or_404(Campaign.objects.all(), pk=campaign_id)


def _participant(campaign: Campaign, participant_id) -> Participant:
    participant = get_object_or_404(
        Participant.objects.filter(campaign=campaign), pk=participant_id
    )
    participant.campaign = campaign  # the services read it; spare the query
    return participant


def _to_detail(request, campaign: Campaign):
    return redirect("campaigns:detail", request.org.slug, campaign.pk)


def _offline_interviewer() -> bool:
    """Without an API key the deterministic offline interviewer answers: say so to creators."""
    return get_backend().name == "local"


def _error(request, exc: ValidationError) -> None:
    messages.error(request, " ".join(exc.messages))


# --- campaigns -------------------------------------------------------------------------------


@org_view(VIEW)
def campaign_list(request):
    filters = CampaignFilterForm(request.GET or None)
    wanted = filters.cleaned_data if filters.is_valid() else {}
    campaigns = selectors.campaign_list(
        org=request.org,
        status=wanted.get("status", ""),
        search=wanted.get("q", ""),
        include_archived=wanted.get("archived", False),
    )
    page = paginate(request, campaigns, CAMPAIGNS_PER_PAGE)
    for campaign in page:
        campaign.completion_rate = selectors.completion_rate(
            campaign.completed_count, campaign.invited_count
        )
    return render(
        request,
        "campaigns/list.html",
        {"filters": filters, "page": page, "filtered": bool(wanted and any(wanted.values()))},
    )


@org_view(MANAGE, methods=("GET", "POST"))
def campaign_create(request):
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            campaign = services.campaign_create(
                actor=request.user,
                org=request.org,
                name=data["name"],
                mission=data["mission"],
                opening_question=data["opening_question"],
                settings=data["settings"],
                closes_at=data["closes_at"],
                once_within=services.CREATE_AGAIN_AFTER,  # a second click: the same one
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"“{campaign.name}” was created. Now add participants.")
            return redirect("campaigns:participants_add", request.org.slug, campaign.pk)
    return render(request, "campaigns/form.html", {"form": form, "campaign": None})


@org_view(MANAGE, methods=("GET", "POST"))
def campaign_edit(request, campaign_id):
    campaign = _campaign(campaign_id)
    form = CampaignEditForm(request.POST or None, initial=CampaignForm.initial_for(campaign))
    if services.anonymity_locked(campaign):
        form.fields["anonymous"].disabled = True
        form.fields["anonymous"].help_text = services.ANONYMITY_LOCKED
    if campaign.status == Campaign.Status.COMPLETED:
        for name, field in form.fields.items():
            field.disabled = name not in services.COMPLETED_EDITABLE
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.campaign_update(
                actor=request.user,
                campaign=campaign,
                name=data["name"],
                mission=data["mission"],
                opening_question=data["opening_question"],
                settings=data["settings"],
                closes_at=data["closes_at"],
                mission_summary=data["mission_summary"],
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Campaign saved.")
            return _to_detail(request, campaign)
    return render(
        request,
        "campaigns/form.html",
        {
            "form": form,
            "campaign": campaign,
            "frozen": selectors.campaign_has_responses(campaign=campaign),
            "completed": campaign.status == Campaign.Status.COMPLETED,
        },
    )


@org_view(VIEW)
def campaign_detail(request, campaign_id):
    campaign = _campaign(campaign_id)
    filters = ParticipantFilterForm(request.GET or None)
    status = filters.cleaned_data["status"] if filters.is_valid() else ""
    participants = selectors.campaign_participants(campaign=campaign, status=status)
    page = paginate(request, participants, PARTICIPANTS_PER_PAGE)
    counts = selectors.participant_status_counts(campaign=campaign)
    return render(
        request,
        "campaigns/detail.html",
        {
            "campaign": campaign,
            "options": campaign.options,
            "offline_interviewer": _offline_interviewer(),
            "counts": counts,
            "transitions": services.allowed_transitions(campaign),
            "status": status,
            "status_tabs": [
                (value, label, counts["by_status"][value])
                for value, label in Participant.Status.choices
            ],
            "page": page,
        },
    )


@org_view(VIEW)
def campaign_counts(request, campaign_id):
    """The detail page's counts, which poll this while the campaign is active."""
    campaign = _campaign(campaign_id)
    counts = selectors.participant_status_counts(campaign=campaign)
    return render(
        request, "campaigns/partials/campaign_counts.html", {"campaign": campaign, "counts": counts}
    )


TRANSITION_NOTES = {
    "activate": "Invitations are on their way.",
    "pause": "Links now show a “paused” page until you resume.",
    "complete": "Open conversations are being closed.",
    "archive": "It is now read-only and hidden from the campaign list.",
}


# Moves that cannot be undone: the button asks first (a page, as for removing a participant).
CONFIRMED_MOVES = {"complete", "archive"}


@org_view(VIEW, write_perm=MANAGE, methods=("POST",))
def campaign_transition(request, campaign_id):
    campaign = _campaign(campaign_id)
    target = request.POST.get("to", "")
    verb = services.TRANSITIONS.get((campaign.status, target))
    if verb in CONFIRMED_MOVES and request.POST.get("confirm") != "1":
        open_conversations = Conversation.objects.filter(
            campaign=campaign, status=Conversation.Status.ACTIVE
        ).count()
        return render(
            request,
            "campaigns/transition_confirm.html",
            {
                "campaign": campaign,
                "target": target,
                "verb": verb,
                "open_conversations": open_conversations,
            },
        )
    try:
        services.campaign_transition(actor=request.user, campaign=campaign, to=target)
    except ValidationError as exc:
        _error(request, exc)
    else:
        done = f"Campaign {verb}d." if verb else "Campaign updated."
        messages.success(request, f"{done} {TRANSITION_NOTES.get(verb, '')}".strip())
    return _to_detail(request, campaign)


# --- participants ----------------------------------------------------------------------------


def _report_for_session(report: services.AddReport, source: str) -> dict:
    return {
        "source": source,
        "added": report.added,
        "invited": report.invited,
        "linked": report.linked,
        "already_there": len(report.already_there),
        "already_sample": report.already_there[:20],
        "rejected_total": len(report.rejected),
        "rejected": [list(row) for row in report.rejected[:REPORT_LINES]],
    }


@org_view(MANAGE, methods=("GET", "POST"))
def participants_add(request, campaign_id):
    campaign = _campaign(campaign_id)
    session_key = f"campaigns:add-report:{campaign.pk}"
    form = ParticipantsAddForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["csv_file"]
        try:
            if upload:
                parsed = parse_csv(upload.read())
            else:
                parsed = parse_pasted(form.cleaned_data["addresses"])
            report = services.participants_add(actor=request.user, campaign=campaign, parsed=parsed)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            # POST → redirect → GET: the report waits in the session for the next page.
            source = upload.name if upload else "pasted list"
            request.session[session_key] = _report_for_session(report, source)
            return redirect("campaigns:participants_add", request.org.slug, campaign.pk)
    report = request.session.pop(session_key, None) if request.method == "GET" else None
    return render(
        request,
        "campaigns/participants_add.html",
        {
            "campaign": campaign,
            "form": form,
            "report": report,
            # Groups of developers from the organisation's metrics (campaigns.identities).
            "cohorts": identities.cohort_choices(request.org.id, timezone.localdate()),
        },
    )


@org_view(MANAGE, methods=("POST",))
def participants_from_cohort(request, campaign_id):
    """Add a developer cohort (seats never used, heavy Claude Code users, a team …)."""
    campaign = _campaign(campaign_id)
    cohort = request.POST.get("cohort", "")
    try:
        report = services.participants_from_cohort(
            actor=request.user, campaign=campaign, cohort=cohort, today=timezone.localdate()
        )
    except ValidationError as exc:
        _error(request, exc)
    else:
        request.session[f"campaigns:add-report:{campaign.pk}"] = _report_for_session(
            report, identities.cohort_label(cohort)
        )
    return redirect("campaigns:participants_add", request.org.slug, campaign.pk)


@org_view(VIEW, write_perm=MANAGE, methods=("POST",))
def participant_resend(request, campaign_id, participant_id):
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    try:
        services.participant_resend(actor=request.user, participant=participant)
    except ValidationError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"A new invitation to {participant.email} is on its way.")
    return _to_detail(request, campaign)


@org_view(VIEW, write_perm=MANAGE, methods=("POST",))
def participant_unlink(request, campaign_id, participant_id):
    """A wrong developer match (campaigns.identities): unlink it for good."""
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    identities.participant_identity_unlink(actor=request.user, participant=participant)
    messages.success(request, f"{participant.email} is no longer linked to a developer.")
    return _to_detail(request, campaign)


@org_view(VIEW, write_perm=MANAGE, methods=("POST",))
def participant_revoke(request, campaign_id, participant_id):
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    # A fresh link goes out only where an invitation could; elsewhere revoking stands alone.
    reissue = campaign.status == Campaign.Status.ACTIVE and participant.status not in (
        Participant.Status.DECLINED,
        Participant.Status.COMPLETED,
    )
    try:
        services.links_revoke(actor=request.user, participant=participant, reissue=reissue)
    except ValidationError as exc:
        _error(request, exc)
    else:
        messages.success(
            request,
            f"Every link of {participant.email} was revoked."
            + (" A new one is on its way." if reissue else ""),
        )
    return _to_detail(request, campaign)


@org_view(MANAGE, methods=("GET", "POST"))
def participant_remove(request, campaign_id, participant_id):
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    refused = services.removal_refused(campaign)
    if request.method == "GET" and refused:
        messages.error(request, refused)
        return _to_detail(request, campaign)
    if request.method == "POST":
        try:
            services.participant_remove(actor=request.user, participant=participant)
        except ValidationError as exc:
            _error(request, exc)
        else:
            messages.success(request, f"{participant.email} was removed from the campaign.")
        return _to_detail(request, campaign)
    return render(
        request,
        "campaigns/participant_remove.html",
        {
            "campaign": campaign,
            "participant": participant,
            "conversation_id": selectors.participant_conversation_id(participant=participant),
        },
    )


# --- responses: transcripts and exports ------------------------------------------------------


@org_view(VIEW)
def responses(request, campaign_id):
    campaign = _campaign(campaign_id)
    conversations = selectors.campaign_conversations(campaign=campaign)
    page = paginate(request, conversations, PARTICIPANTS_PER_PAGE)
    anonymous = campaign.options.anonymous
    for conversation in page:
        conversation.label = selectors.speaker_label(
            anonymous=anonymous,
            number=conversation.number,
            name=conversation.participant.name,
            email=conversation.participant.email,
        )
    return render(
        request,
        "campaigns/responses.html",
        {"campaign": campaign, "page": page, "anonymous": anonymous},
    )


@org_view(VIEW)
def transcript(request, campaign_id, conversation_id):
    campaign = _campaign(campaign_id)
    conversation = get_object_or_404(
        Conversation.objects.filter(campaign=campaign).select_related("participant"),
        pk=conversation_id,
    )
    anonymous = campaign.options.anonymous
    label = selectors.speaker_label(
        anonymous=anonymous,
        number=conversation.number if anonymous else 0,
        name=conversation.participant.name,
        email=conversation.participant.email,
    )
    # While the conversation runs the page polls itself; htmx gets just the live part.
    live = request.headers.get("HX-Request") == "true"
    response = render(
        request,
        "campaigns/partials/transcript_live.html" if live else "campaigns/transcript.html",
        {
            "campaign": campaign,
            "conversation": conversation,
            "label": label,
            "speaker": label if anonymous else conversation.participant.display_name,
            "anonymous": anonymous,
            "participant": None if anonymous else conversation.participant,
            "chat": selectors.conversation_messages(conversation=conversation),
            "offline_interviewer": _offline_interviewer(),
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@org_view(VIEW)
def participant_transcript(request, campaign_id, participant_id):
    """The participant table's way in. In an anonymous campaign it leads nowhere: a transcript
    reached from a named row would no longer be anonymous."""
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    anonymous = campaign.options.anonymous
    conversation = (
        None if anonymous else selectors.participant_conversation_id(participant=participant)
    )
    if conversation is not None:
        return redirect("campaigns:transcript", request.org.slug, campaign.pk, conversation)
    return render(
        request,
        "campaigns/transcript.html",
        {
            "campaign": campaign,
            "conversation": None,
            "anonymous": anonymous,
            "participant": None if anonymous else participant,
            "label": "" if anonymous else participant.display_name,
        },
    )


def _export_lines(*, org_id, campaign: Campaign, anonymous: bool):
    """(label, email, sender, sent_at, body) per message. Runs while the response streams,
    after TenancyMiddleware's transaction has ended, so it opens its own tenant context."""
    with org_context(org_id):
        numbers = selectors.conversation_numbers(campaign=campaign)
        for conversation_id, sender, created_at, body, name, email in selectors.export_rows(
            campaign=campaign
        ):
            label = selectors.speaker_label(
                anonymous=anonymous, number=numbers.get(conversation_id, 0), name=name, email=email
            )
            yield label, "" if anonymous else email, sender, created_at.isoformat(), body


def _csv_stream(**kwargs):
    writer = csv.writer(spreadsheet.Echo())
    yield spreadsheet.BOM + writer.writerow(
        ["participant", "email", "sender", "sent_at", "message"]
    )
    for row in _export_lines(**kwargs):
        yield writer.writerow([spreadsheet.cell(value) for value in row])


def _json_stream(*, campaign: Campaign, anonymous: bool, **kwargs):
    head = {"id": str(campaign.pk), "name": campaign.name, "anonymous": anonymous}
    yield '{"campaign": ' + json.dumps(head) + ', "messages": ['
    first = True
    for label, email, sender, sent_at, body in _export_lines(
        campaign=campaign, anonymous=anonymous, **kwargs
    ):
        item = {"participant": label, "sender": sender, "sent_at": sent_at, "message": body}
        if not anonymous:
            item["email"] = email
        yield ("\n" if first else ",\n") + json.dumps(item, ensure_ascii=False)
        first = False
    yield "\n]}\n"


EXPORTS = {
    "csv": (_csv_stream, "text/csv; charset=utf-8"),
    "json": (_json_stream, "application/json"),
}


def _export(request, campaign_id, kind):
    campaign = _campaign(campaign_id)
    stream, content_type = EXPORTS[kind]
    response = StreamingHttpResponse(
        stream(org_id=request.org.id, campaign=campaign, anonymous=campaign.options.anonymous),
        content_type=content_type,
    )
    filename = f"{slugify(campaign.name) or 'campaign'}-messages.{kind}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@org_view(VIEW)
def export_csv(request, campaign_id):
    return _export(request, campaign_id, "csv")


@org_view(VIEW)
def export_json(request, campaign_id):
    return _export(request, campaign_id, "json")


@org_view(MANAGE, methods=("GET", "POST"))
def participant_erase(request, campaign_id, participant_id):
    """Erase a participant for good (campaigns/privacy.py): typed confirmation, then one
    transaction; the campaign page says what went."""
    campaign = _campaign(campaign_id)
    participant = _participant(campaign, participant_id)
    form = privacy.EraseConfirmForm(request.POST or None, participant=participant)
    if request.method == "POST" and form.is_valid():
        try:
            erased = privacy.participant_erase(actor=request.user, participant=participant)
        except ValidationError as exc:
            _error(request, exc)
        else:
            messages.success(
                request,
                f"A participant was erased: {erased.messages} messages, "
                f"{erased.conversations} conversation(s) and their identity are gone.",
            )
        return _to_detail(request, campaign)
    return render(
        request,
        "campaigns/participant_erase.html",
        {
            "campaign": campaign,
            "participant": participant,
            "form": form,
            "conversation_id": selectors.participant_conversation_id(participant=participant),
        },
    )
