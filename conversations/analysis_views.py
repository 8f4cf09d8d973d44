"""The campaign analysis page, its progress partial, the Refresh action and the exports,
under /o/<org_slug>/campaigns/<campaign_id>/analysis/.

Members read; admins and owners refresh. The page reads the stored analysis (one row) and
never computes: figures for the status filter come from the stored per-conversation data, so
it costs the same few queries for 10 conversations or 10,000."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify

from campaigns.models import Campaign
from conversations.analysis import report, service, tiers
from conversations.models import CampaignAnalysis, Conversation
from tap.orgs.decorators import org_view

WITHHELD = (
    "This campaign became anonymous after the analysis was made, and the analysis may name "
    "people, so it is not shown. Refresh to analyse it anonymously."
)
VIEW = "campaigns.view_campaign"
MANAGE = "campaigns.manage_campaign"


def _campaign(campaign_id) -> Campaign:
    return get_object_or_404(Campaign.objects.all(), pk=campaign_id)


def _analysis(campaign: Campaign) -> CampaignAnalysis | None:
    return CampaignAnalysis.objects.filter(campaign=campaign).first()


def _names(campaign: Campaign, ids) -> dict:
    """{conversation id: "Name <email>"} for a campaign that shows names; {} when anonymous."""
    if campaign.options.anonymous or not ids:
        return {}
    rows = Conversation.objects.filter(campaign=campaign, pk__in=list(ids)).values_list(
        "pk", "participant__name", "participant__email"
    )
    return {str(pk): (f"{name} <{email}>" if name else email) for pk, name, email in rows}


def _scope(request) -> str:
    scope = request.GET.get("scope", "all")
    return scope if scope in report.SCOPES else "all"


@org_view(VIEW)
def analysis_page(request, campaign_id):
    campaign = _campaign(campaign_id)
    analysis = _analysis(campaign)
    scope = _scope(request)
    anonymous = campaign.options.anonymous
    context = {
        "campaign": campaign,
        "analysis": analysis,
        "scope": scope,
        "anonymous": anonymous,
        "changed": 0,
        "withheld": analysis is not None and service.withheld(campaign=campaign, analysis=analysis),
    }
    if analysis is not None and analysis.has_result and not context["withheld"]:
        theme_id = request.GET.get("theme", "")
        members, members_total = (
            report.theme_members(analysis, theme_id, scope) if theme_id else ([], 0)
        )
        quoted = {q["conversation_id"] for f in analysis.key_findings for q in f.get("quotes", [])}
        left_out = {c["id"] for c in analysis.unanalysed}
        names = _names(campaign, quoted | {m["id"] for m in members} | left_out)
        for finding in analysis.key_findings:
            for quote in finding.get("quotes", []):
                quote["who"] = report.label_for(
                    quote.get("number", 0),
                    anonymous=anonymous,
                    names=names,
                    conversation_id=quote["conversation_id"],
                )
        for member in members:
            member["who"] = report.label_for(
                member["number"], anonymous=anonymous, names=names, conversation_id=member["id"]
            )
        context.update(
            figures=report.figures(analysis, scope),
            theme=next((t for t in analysis.themes if t["id"] == theme_id), None),
            members=members,
            members_total=members_total,
            changed=service.changed_since(campaign=campaign, analysis=analysis),
            by_tier=tiers.breakdown(analysis, timezone.localdate()),
            left_out=report.left_out(analysis, anonymous=anonymous, names=names),
        )
    return render(request, "analysis/page.html", context)


@org_view(VIEW)
def analysis_progress(request, campaign_id):
    """The progress bar, polled by htmx while a run is pending or running. When the run ends
    the page reloads itself (HX-Refresh) to show the new result or the failure."""
    campaign = _campaign(campaign_id)
    analysis = _analysis(campaign)
    if analysis is None or not analysis.in_progress:
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    response = render(
        request, "analysis/partials/progress.html", {"campaign": campaign, "analysis": analysis}
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@org_view(VIEW, write_perm=MANAGE, methods=("POST",))
def analysis_refresh(request, campaign_id):
    campaign = _campaign(campaign_id)
    previous_request = (
        CampaignAnalysis.objects.filter(campaign=campaign)
        .values_list("requested_at", flat=True)
        .first()
    )
    analysis = service.campaign_analyze(actor=request.user, campaign=campaign)
    if (
        analysis.has_result
        and not analysis.in_progress
        and analysis.requested_at == previous_request
    ):
        messages.info(request, "The analysis is already up to date.")
    elif analysis.in_progress and analysis.requested_at == previous_request:
        messages.info(request, "The analysis is already being computed.")
    else:
        messages.success(request, "The analysis is being computed; this page updates itself.")
    return redirect("campaigns:analysis:page", request.org.slug, campaign.pk)


def _export(request, campaign_id, kind: str):
    campaign = _campaign(campaign_id)
    analysis = get_object_or_404(
        CampaignAnalysis.objects.filter(campaign=campaign, generated_at__isnull=False)
    )
    if service.withheld(campaign=campaign, analysis=analysis):
        messages.error(request, WITHHELD)
        return redirect("campaigns:analysis:page", request.org.slug, campaign.pk)
    anonymous = campaign.options.anonymous
    names = _names(campaign, {*analysis.conversations, *(c["id"] for c in analysis.unanalysed)})
    if kind == "md":
        body = report.markdown(analysis, campaign=campaign, anonymous=anonymous, names=names)
        response = HttpResponse(body, content_type="text/markdown; charset=utf-8")
    else:
        body = report.csv_text(analysis, anonymous=anonymous, names=names)
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    filename = f"{slugify(campaign.name) or 'campaign'}-analysis.{kind}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@org_view(VIEW)
def analysis_export_markdown(request, campaign_id):
    return _export(request, campaign_id, "md")


@org_view(VIEW)
def analysis_export_csv(request, campaign_id):
    return _export(request, campaign_id, "csv")
