"""Themes and sentiment by developer usage tier (issue 6 step 8).

Participants linked to a developer identity (campaigns.identities) have a usage tier per AI
tool over the last four weeks of metrics (metrics.selectors.cohort_members). The analysis page
compares tiers side by side — only groups of at least five conversations, so no one's answers
can be picked out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from conversations.analysis.engines import distribution
from conversations.analysis.report import included
from conversations.models import CampaignAnalysis, Conversation
from metrics import selectors

MIN_GROUP = selectors.SMALL_COHORT  # 5
TOOL_LABELS = {"copilot": "Copilot", "claude_code": "Claude Code"}


def conversation_tiers(campaign, today: date) -> dict[str, dict[str, str]]:
    """{conversation id: {tool: tier}} for the campaign's conversations whose participant is
    linked to a developer."""
    pairs = list(
        Conversation.objects.filter(
            campaign=campaign, participant__developer_identity__isnull=False
        ).values_list("pk", "participant__developer_identity_id")
    )
    if not pairs:
        return {}
    org_id = campaign.organization_id
    start, end = selectors.default_range(org_id, today)
    tiers: dict[str, dict[str, str]] = defaultdict(dict)
    for tool in selectors.tools(org_id):
        members = selectors.cohort_members(org_id, selectors.Filters(start, end, tool), by="tier")
        tier_of = {identity: tier for tier, ids in members.items() for identity in ids}
        for conversation_id, identity_id in pairs:
            tiers[str(conversation_id)][tool] = tier_of.get(identity_id, "none")
    return dict(tiers)


def breakdown(analysis: CampaignAnalysis, today: date):
    """Per tool, per tier: conversations, mean sentiment and the three largest themes — for
    groups of at least MIN_GROUP; smaller groups are named but not broken down. Always over
    every conversation analysed, whatever the page's scope: a tier's figures with and without
    the in-progress conversations, one less the other, would be those few people's. The tiers
    are those stored with the analysis (`service._store`), not today's — except for an
    analysis stored before tiers were kept with it, which reads today's until it is redone."""
    chosen = included(analysis, "all")
    if any("tiers" in data for data in chosen.values()):
        tiers = {cid: data.get("tiers") or {} for cid, data in chosen.items()}
    else:
        tiers = conversation_tiers(analysis.campaign, today)
    labels = {t["id"]: t["label"] for t in analysis.themes or []}
    tools = sorted({tool for per in tiers.values() for tool in per})
    result = []
    for tool in tools:
        groups: dict[str, list[str]] = defaultdict(list)
        for conversation_id in chosen:
            tier = tiers.get(conversation_id, {}).get(tool)
            if tier:
                groups[tier].append(conversation_id)
        rows = []
        present = {tier: groups[tier] for tier in selectors.TIERS if groups.get(tier)}
        # A group of fewer than five is not broken down, nor the smallest other while the
        # campaign's totals less the shown groups would give theirs away.
        shown = selectors.broken_down({tier: set(ids) for tier, ids in present.items()})
        for tier, members in present.items():
            if tier not in shown:
                rows.append(
                    {
                        "tier": tier,
                        "size": len(members),
                        "small": len(members) < MIN_GROUP,
                        "suppressed": True,
                    }
                )
                continue
            counts: dict[str, int] = defaultdict(int)
            for conversation_id in members:
                for theme_id in chosen[conversation_id].get("themes", []):
                    counts[theme_id] += 1
            top = sorted(counts.items(), key=lambda item: (-item[1], labels.get(item[0], "")))
            rows.append(
                {
                    "tier": tier,
                    "size": len(members),
                    "suppressed": False,
                    "sentiment": distribution([chosen[c].get("score", 0.0) for c in members]),
                    "themes": [
                        {
                            "label": labels.get(theme_id, theme_id),
                            "share": round(100 * n / len(members)),
                        }
                        for theme_id, n in top[:3]
                    ],
                }
            )
        if any(not row["suppressed"] for row in rows):
            result.append({"tool": TOOL_LABELS.get(tool, tool), "rows": rows})
    return result
