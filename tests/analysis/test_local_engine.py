"""The offline engine on a small labelled set: it finds the planted themes and tones."""

from collections import Counter

import pytest

from conversations.analysis import service
from conversations.models import CampaignAnalysis
from tap import outbox
from tap.tenancy import org_context
from tests.analysis.helpers import PLANTED, planted_campaign

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def analysed(org, campaign, actor=None):
    with org_context(org.id):
        service.campaign_analyze(actor=actor, campaign=campaign)
    outbox.run_due_inline()
    with org_context(org.id):
        return CampaignAnalysis.objects.get(campaign=campaign)


def test_the_planted_themes_and_tones_are_found(org_a, alice):
    campaign, truth = planted_campaign(org_a, alice)
    analysis = analysed(org_a, campaign, alice)
    assert analysis.status == "ready", analysis.error
    assert analysis.engine == "local"
    assert len(analysis.themes) == 3, [t["label"] for t in analysis.themes]
    # Each theme is one planted theme: every conversation in it carries the same label.
    for theme in analysis.themes:
        members = analysis.groupings[theme["id"]]
        planted, hits = Counter(truth[c] for c in members).most_common(1)[0]
        assert hits == len(members) == 8, (theme["label"], Counter(truth[c] for c in members))
        words = {"review": "review", "docs": "onboarding", "tests": "flaky"}[planted]
        assert words in " ".join(theme["keywords"]) + theme["label"].lower()
        assert theme["share"] == pytest.approx(33.3, abs=0.1)
    tones = {c: v["label"] for c, v in analysis.conversations.items()}
    right = sum(tones[c] == PLANTED[truth[c]][0] for c in truth)
    assert right >= 0.9 * len(truth)
    counts = analysis.sentiment_distribution["counts"]
    assert counts["negative"] >= 14
    assert counts["positive"] >= 7
    # Findings quote real participant messages of the theme's conversations.
    assert analysis.key_findings
    for finding in analysis.key_findings:
        assert finding["quotes"]
        for quote in finding["quotes"]:
            assert quote["conversation_id"] in analysis.groupings[finding["theme"]]
    summary = analysis.executive_summary
    assert len(summary.split()) <= 300
    assert "24 conversations analysed" in summary


def test_the_same_input_gives_the_same_analysis(org_a, alice):
    campaign, _truth = planted_campaign(org_a, alice)
    first = analysed(org_a, campaign)
    with org_context(org_a.id):
        service.campaign_analyze(actor=None, campaign=campaign, force=True)
    outbox.run_due_inline()
    with org_context(org_a.id):
        second = CampaignAnalysis.objects.get(campaign=campaign)
    assert second.generated_at > first.generated_at
    assert (second.themes, second.groupings, second.key_findings, second.executive_summary) == (
        first.themes,
        first.groupings,
        first.key_findings,
        first.executive_summary,
    )


def test_words_in_any_alphabet_stay_whole_and_cjk_sentences_are_quotes():
    """Campaigns run in French or German too: "l'équipe était géniale" must not become the
    terms "quipe", "tait", "g", "niale"; CJK sentences end without a space."""
    from conversations.analysis.engines import SENTENCE, TOKEN, LocalEngine, _words
    from conversations.analysis.inputs import ConversationInput

    assert TOKEN.findall("l'équipe était géniale, größe well-known 42") == [
        "l'équipe",
        "était",
        "géniale",
        "größe",
        "well-known",
    ]
    # Words counted by spaces — by characters only in Chinese and Japanese, which have none.
    assert _words(" ".join(["كلمة"] * 20)) == 20  # Arabic: 20 words, not 40
    assert _words("代码评审太慢了我们每次都要等好几天") == 8
    cjk = "你好。很好\uff01是吗\uff1f"  # full stop, full-width ! and ?
    assert SENTENCE.split(cjk) == ["你好。", "很好\uff01", "是吗\uff1f", ""]
    conversation = ConversationInput(
        "c1",
        1,
        "completed",
        (("m1", "participant", "Les revues de code prennent trop de temps à l'équipe."),),
    )
    result, _usage = LocalEngine().extract(conversation)
    terms = result["terms"].split()
    assert "l'équipe" in terms
    assert "quipe" not in terms
    chinese = "代码评审太慢了\uff0c我们每次都要等好几天才能合并。其他都很好。"
    conversation = ConversationInput("c2", 2, "completed", (("m2", "participant", chinese),))
    result, _usage = LocalEngine().extract(conversation)
    assert [q["text"] for q in result["quotes"]] == [
        "代码评审太慢了\uff0c我们每次都要等好几天才能合并。"
    ]
