"""The analysis page: what it shows, who may refresh, the stale notice, the progress partial,
the failure kept next to the old result, exports, and a constant number of queries."""

import csv
import io
import re

import pytest
from django.db import connections
from django.urls import reverse

from campaigns.models import Campaign
from conversations.analysis import service
from conversations.models import CampaignAnalysis, Conversation
from tap import outbox
from tap.tenancy import org_context
from tests.analysis.helpers import planted_campaign
from tests.campaigns import creator

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def url(name, org, campaign, **query):
    path = reverse(f"campaigns:analysis:{name}", args=[org.slug, campaign.pk])
    if query:
        from urllib.parse import urlencode

        path += "?" + urlencode(query)
    return path


def analysed(org, campaign):
    with org_context(org.id):
        service.campaign_analyze(actor=None, campaign=campaign)
    outbox.run_due_inline()
    with org_context(org.id):
        return CampaignAnalysis.objects.get(campaign=campaign)


def count_queries(client, path):
    queries = []

    def record(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(record):
        response = client.get(path)
    assert response.status_code == 200
    return len(queries), response


def test_the_page_shows_summary_findings_themes_and_chart(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    analysis = analysed(org_a, campaign)
    response = client_for(alice).get(url("page", org_a, campaign))
    html = response.content.decode()
    assert response.status_code == 200
    assert "offline analysis" in html
    assert "Executive summary" in html
    assert analysis.executive_summary[:40] in html
    for theme in analysis.themes:
        assert theme["label"] in html
    quote = analysis.key_findings[0]["quotes"][0]
    transcript = reverse(
        "campaigns:transcript", args=[org_a.slug, campaign.pk, quote["conversation_id"]]
    )
    assert f"{transcript}#m-{quote['message_id']}" in html
    assert "<svg" in html
    assert 'class="bar bar-negative"' in html
    # The quote's anchor exists on the transcript page.
    page = client_for(alice).get(transcript).content.decode()
    assert f'id="m-{quote["message_id"]}"' in page


def test_clicking_a_theme_lists_its_conversations(org_a, alice, client_for):
    campaign, truth = planted_campaign(org_a, alice)
    analysis = analysed(org_a, campaign)
    theme = analysis.themes[0]
    html = client_for(alice).get(url("page", org_a, campaign, theme=theme["id"])).content.decode()
    assert 'id="theme-conversations"' in html
    for conversation_id in analysis.groupings[theme["id"]]:
        link = reverse("campaigns:transcript", args=[org_a.slug, campaign.pk, conversation_id])
        assert link in html
    others = [c for c in truth if c not in analysis.groupings[theme["id"]]]
    assert reverse("campaigns:transcript", args=[org_a.slug, campaign.pk, others[0]]) not in html


def test_a_theme_longer_than_the_list_says_its_real_count(org_a, alice, client_for, monkeypatch):
    """The list stops at a limit; the heading counts every conversation of the theme in view,
    and the listed ones are the first by number, whatever the scope."""
    from conversations.analysis import report

    monkeypatch.setattr(report, "THEME_LIST_LIMIT", 3)
    campaign, _truth = planted_campaign(org_a, alice)
    analysis = analysed(org_a, campaign)
    theme = analysis.themes[0]
    members = analysis.groupings[theme["id"]]
    assert len(members) > 3
    first = sorted(members, key=lambda c: analysis.conversations[c]["number"])[:3]
    html = client_for(alice).get(url("page", org_a, campaign, theme=theme["id"])).content.decode()
    assert f"{len(members)} conversations" in html
    assert "the first 3 are listed" in html
    listed = re.findall(r"/responses/([0-9a-f-]{36})/", html.split('id="theme-conversations"')[1])
    assert listed == first


def test_completed_only_filter_recounts_from_the_stored_analysis(org_a, alice, bob, client_for):
    campaign, truth = planted_campaign(org_a, alice)
    some = list(truth)[:4]
    with org_context(org_a.id):
        Conversation.objects.filter(pk__in=some).update(status="active")
    analysis = analysed(org_a, campaign)
    assert analysis.conversation_count == 24
    client = client_for(bob)
    everything = client.get(url("page", org_a, campaign, scope="all")).context["figures"]
    completed = client.get(url("page", org_a, campaign, scope="completed")).context["figures"]
    assert (everything["total"], completed["total"]) == (24, 20)
    assert sum(t["count"] for t in completed["themes"]) == 20
    assert completed["sentiment"]["total"] == 20


def test_completed_only_leaves_out_conversations_the_campaigns_end_cut_short(
    org_a, alice, bob, client_for
):
    """Completing a campaign closes its open conversations; they were not finished by their
    participants, so "Completed only" does not count them."""
    from conversations.tasks import campaign_completed

    campaign, truth = planted_campaign(org_a, alice)
    some = list(truth)[:3]
    with org_context(org_a.id):
        Conversation.objects.filter(pk__in=some).update(status="active")
        Campaign.objects.filter(pk=campaign.pk).update(status="completed")
        campaign_completed.outbox_body(campaign_id=str(campaign.pk))  # closes them; analysis queued
    outbox.run_due_inline()
    with org_context(org_a.id):
        analysis = CampaignAnalysis.objects.get(campaign=campaign)
    assert analysis.conversation_count == 24
    statuses = sorted(c["status"] for c in analysis.conversations.values())
    assert statuses.count("closed") == 3
    client = client_for(bob)
    completed = client.get(url("page", org_a, campaign, scope="completed"))
    assert completed.context["figures"]["total"] == 21
    everything = client.get(url("page", org_a, campaign, scope="all")).content.decode()
    assert "3 of those analysed were not finished" in everything


def test_query_count_is_constant(org_a, alice, client_for):
    small, _ = planted_campaign(org_a, alice, per_theme=2)
    large, _ = planted_campaign(org_a, alice, per_theme=8)
    analysed(org_a, small)
    analysed(org_a, large)
    client = client_for(alice)
    counts = []
    for campaign in (small, large):
        theme = client.get(url("page", org_a, campaign)).context["figures"]["themes"][0]["id"]
        counts.append(count_queries(client, url("page", org_a, campaign, theme=theme))[0])
    assert counts[0] == counts[1], counts
    assert counts[0] <= 13  # 12, plus the linked-developer lookup of the usage breakdown


def test_stale_notice_counts_new_conversations(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    analysed(org_a, campaign)
    client = client_for(alice)
    assert "since this analysis" not in client.get(url("page", org_a, campaign)).content.decode()
    people = creator.participants_in_bulk(org_a, campaign, 4, start=500)
    for person in people:
        made = creator.conversation(org_a, campaign, person, [creator.QUESTION, "Docs are great."])
        with org_context(org_a.id):
            Conversation.objects.filter(pk=made.pk).update(participant_turns=1)
    html = client.get(url("page", org_a, campaign)).content.decode()
    assert "4 conversations</strong> since this analysis" in html


def test_stale_notice_counts_erased_conversations_too(org_a, alice, client_for):
    from campaigns import privacy
    from campaigns.models import Participant

    campaign, _truth = planted_campaign(org_a, alice)
    analysed(org_a, campaign)
    with org_context(org_a.id):
        talked = Participant.objects.filter(conversation__participant_turns__gt=0)
        gone = list(talked.order_by("email")[:2])
    for participant in gone:
        privacy.participant_erase(actor=alice, participant=participant)
    html = client_for(alice).get(url("page", org_a, campaign)).content.decode()
    assert "2 conversations</strong> since this analysis" in html


def test_members_read_but_cannot_refresh(org_a, alice, bob, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    client = client_for(bob)
    html = client.get(url("page", org_a, campaign)).content.decode()
    assert "No analysis yet" in html
    assert "Analyse now" not in html
    assert client.post(url("refresh", org_a, campaign)).status_code == 403
    with org_context(org_a.id):
        assert not CampaignAnalysis.objects.exists()


def test_refresh_queues_shows_progress_then_the_result(org_a, alice, dave, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    client = client_for(dave)
    response = client.post(url("refresh", org_a, campaign))
    assert response.status_code == 302
    html = client.get(url("page", org_a, campaign)).content.decode()
    assert 'id="analysis-progress"' in html
    assert 'hx-trigger="every 2s"' in html
    partial = client.get(url("progress", org_a, campaign), HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert b"<progress" in partial.content
    outbox.run_due_inline()
    done = client.get(url("progress", org_a, campaign), HTTP_HX_REQUEST="true")
    assert (done.status_code, done["HX-Refresh"]) == (204, "true")
    html = client.get(url("page", org_a, campaign)).content.decode()
    assert "Executive summary" in html
    assert 'id="analysis-progress"' not in html
    # A second refresh with nothing changed does nothing.
    client.post(url("refresh", org_a, campaign))
    assert outbox.run_due_inline() == 0
    assert "already up to date" in client.get(url("page", org_a, campaign)).content.decode()


def test_a_failure_shows_its_reason_and_keeps_the_old_result(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice)
    old = analysed(org_a, campaign)
    with org_context(org_a.id):
        CampaignAnalysis.objects.filter(pk=old.pk).update(
            status="failed", error="the model's analysis of conversation 3 did not match"
        )
    html = client_for(alice).get(url("page", org_a, campaign)).content.decode()
    assert "The last analysis failed" in html
    assert "did not match" in html
    assert old.executive_summary[:40] in html


def test_exports_markdown_and_formula_safe_csv(org_a, alice, client_for):
    campaign, _truth = planted_campaign(org_a, alice, per_theme=3)
    person = creator.participants_in_bulk(org_a, campaign, 1, start=900)[0]
    made = creator.conversation(
        org_a, campaign, person, [creator.QUESTION, '=HYPERLINK("http://x") the docs are great']
    )
    with org_context(org_a.id):
        Conversation.objects.filter(pk=made.pk).update(status="completed", participant_turns=1)
    analysis = analysed(org_a, campaign)
    with org_context(org_a.id):
        CampaignAnalysis.objects.filter(pk=analysis.pk).update(
            themes=[{**analysis.themes[0], "label": "=cmd|' /C calc'!A0"}, *analysis.themes[1:]]
        )
    client = client_for(alice)
    md = client.get(url("export_markdown", org_a, campaign))
    assert md["Content-Type"].startswith("text/markdown")
    assert b"## Executive summary" in md.content
    assert b"## Key findings" in md.content
    response = client.get(url("export_csv", org_a, campaign))
    assert response.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "conversation_id",
        "participant",
        "status",
        "sentiment_score",
        "sentiment",
        "themes",
    ]
    assert len(rows) == 1 + 10
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)
    assert any(cell.startswith("'=cmd") for cell in cells)
    assert any(row[3].startswith("-") for row in rows[1:])  # numbers stay numbers


def test_the_markdown_report_shows_participants_words_and_runs_nothing(org_a, alice, client_for):
    """A quote or a model-written text opened in a Markdown viewer must not load an image,
    plant a link or HTML, or break the report's lists and table."""
    campaign, _truth = planted_campaign(org_a, alice, per_theme=3)
    analysis = analysed(org_a, campaign)
    planted = (
        "![x](https://tracker.example/p.png) <img src=x onerror=alert(1)> [click](http://evil)"
    )
    finding = analysis.key_findings[0]
    finding["detail"] = "Line one\n\n## not a heading"
    finding["quotes"] = (
        [{**finding["quotes"][0], "text": planted}]
        if finding.get("quotes")
        else [
            {
                "conversation_id": next(iter(analysis.conversations)),
                "number": 1,
                "message_id": "m1",
                "text": planted,
            }
        ]
    )
    with org_context(org_a.id):
        CampaignAnalysis.objects.filter(pk=analysis.pk).update(
            key_findings=[finding, *analysis.key_findings[1:]],
            executive_summary="1. Not a list\n\n# Not a heading either",
            themes=[{**analysis.themes[0], "label": "a | b"}, *analysis.themes[1:]],
        )
    text = client_for(alice).get(url("export_markdown", org_a, campaign)).content.decode()
    assert "![x](" not in text
    assert not re.search(r"(?<!\\)[<\[]", text)  # no unescaped HTML, link or image
    assert "[click](" not in text
    assert "\\!\\[x\\]" not in text  # one escape, not two
    assert "!\\[x\\](https://tracker.example/p.png) \\<img src=x onerror=alert(1)\\>" in text
    assert "\n## not a heading" not in text  # the detail stays on its list item
    assert "1\\. Not a list" in text
    assert "\\# Not a heading either" in text
    assert "| a \\| b |" in text  # one table cell, not two


def test_export_before_any_analysis_is_404(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    assert client_for(alice).get(url("export_csv", org_a, campaign)).status_code == 404
