"""How a stored analysis is read: the page's figures (filtered by conversation status, from
the stored per-conversation data — no recomputation, no extra query), the sentiment chart's
geometry (server-rendered SVG), and the Markdown and CSV exports."""

from __future__ import annotations

import csv
import io
import re

from conversations.analysis.engines import HISTOGRAM_BINS, LABELS, distribution
from conversations.models import CampaignAnalysis
from tap import spreadsheet

SCOPES = ("all", "completed")
CHART = {"width": 420, "height": 150, "top": 10, "bottom": 124}
THEME_LIST_LIMIT = 500


def label_for(number: int, *, anonymous: bool, names: dict | None = None, conversation_id=None):
    """'Participant 7' — or, in a campaign that shows names, the participant's name/email."""
    if not anonymous and names and conversation_id in names:
        return names[conversation_id]
    return f"Participant {number}"


def left_out(analysis: CampaignAnalysis, *, anonymous: bool, names: dict) -> list[str]:
    """Who the analysis leaves out because the engine could not analyse their conversation."""
    return [
        label_for(c["number"], anonymous=anonymous, names=names, conversation_id=c["id"])
        for c in analysis.unanalysed
    ]


def included(analysis: CampaignAnalysis, scope: str) -> dict[str, dict]:
    conversations = analysis.conversations or {}
    if scope == "completed":
        return {k: v for k, v in conversations.items() if v.get("status") == "completed"}
    return conversations


def figures(analysis: CampaignAnalysis, scope: str) -> dict:
    """Themes with count and share, and the sentiment distribution, over the conversations in
    `scope` ("all" analysed, or "completed" only)."""
    chosen = included(analysis, scope)
    total = len(chosen)
    themes = []
    for theme in analysis.themes or []:
        members = [c for c in analysis.groupings.get(theme["id"], []) if c in chosen]
        themes.append(
            {
                **theme,
                "count": len(members),
                "share": round(100 * len(members) / total, 1) if total else 0.0,
            }
        )
    themes.sort(key=lambda t: -t["count"])
    sentiment = distribution([c.get("score", 0.0) for c in chosen.values()])
    return {
        "total": total,
        "themes": themes,
        "sentiment": sentiment,
        "chart": chart(sentiment),
        "in_progress": sum(
            1 for c in analysis.conversations.values() if c.get("status") != "completed"
        ),
    }


def chart(sentiment: dict) -> dict:
    """Bars of the score histogram (-1 … 1 in tenths) and a stacked bar of the labels, as
    coordinates for an inline SVG (no script, no style attribute: the CSP allows it)."""
    width, top, bottom = CHART["width"], CHART["top"], CHART["bottom"]
    histogram = sentiment.get("histogram") or [0] * HISTOGRAM_BINS
    peak = max(histogram) or 1
    slot = width / HISTOGRAM_BINS
    bars = []
    for i, n in enumerate(histogram):
        height = round((bottom - top) * n / peak, 1)
        low = -1 + 2 * i / HISTOGRAM_BINS
        tone = "negative" if low + 0.2 <= -0.05 else "positive" if low >= 0.05 else "neutral"
        bars.append(
            {
                "x": round(i * slot + 3, 1),
                "y": round(bottom - height, 1),
                "width": round(slot - 6, 1),
                "height": height,
                "count": n,
                "tone": tone,
                "range": f"{low:+.1f} to {low + 2 / HISTOGRAM_BINS:+.1f}",
                "label_x": round(i * slot + slot / 2, 1),
            }
        )
    total = sentiment.get("total") or 0
    stack, x = [], 0.0
    for label in LABELS:
        n = sentiment.get("counts", {}).get(label, 0)
        w = round(width * n / total, 1) if total else 0
        stack.append(
            {
                "label": label,
                "count": n,
                "x": round(x, 1),
                "width": w,
                "percent": round(100 * n / total) if total else 0,
            }
        )
        x += w
    return {
        "width": width,
        "height": CHART["height"],
        "bottom": bottom,
        "bars": bars,
        "stack": stack,
        "axis": [
            {"x": 0, "text": "-1", "anchor": "start"},
            {"x": width / 2, "text": "0", "anchor": "middle"},
            {"x": width, "text": "+1", "anchor": "end"},
        ],
    }


def theme_members(analysis: CampaignAnalysis, theme_id: str, scope: str) -> tuple[list, int]:
    """The theme's conversations in view, by number: the first THEME_LIST_LIMIT of them, and
    how many there are in all."""
    chosen = included(analysis, scope)
    rows = [
        {"id": conversation_id, **chosen[conversation_id]}
        for conversation_id in analysis.groupings.get(theme_id, [])
        if conversation_id in chosen
    ]
    rows.sort(key=lambda r: r["number"])
    return rows[:THEME_LIST_LIMIT], len(rows)


# --- exports ---------------------------------------------------------------------------------


# Backslash-escaped (CommonMark allows it for any ASCII punctuation): the characters that make
# links and images ([ ]), HTML and autolinks (< >), emphasis, code, strikethrough and table
# cells; and at the start of a paragraph, what would make it a heading, a list or a quote.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
BLOCK_MARK = re.compile(r"^([#>]|[-+](?=\s))")
LIST_NUMBER = re.compile(r"^(\d+)([.)])(?=\s)")


def md(text, *, inline: bool = True) -> str:
    """Text from participants or the model, as Markdown that shows it and does nothing else: a
    quote cannot load an image or plant a link in the creator's viewer. Inline text (a list
    item, a quote, a table cell) is one line."""
    text = MARKDOWN_SPECIAL.sub(r"\\\1", str(text or ""))
    if inline:
        return " ".join(text.split())
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [LIST_NUMBER.sub(r"\1\\\2", BLOCK_MARK.sub(r"\\\1", p)) for p in paragraphs]
    return "\n\n".join(p for p in paragraphs if p)


def markdown(analysis: CampaignAnalysis, *, campaign, anonymous: bool, names: dict) -> str:
    """The analysis as a Markdown report (quotes attributed by pseudonym or name)."""
    out = [f"# Analysis: {md(campaign.name)}", ""]
    engine = "offline analysis" if analysis.engine == "local" else f"{analysis.model}"
    out.append(
        f"_{analysis.conversation_count} conversations · {engine} · generated "
        f"{analysis.generated_at:%Y-%m-%d %H:%M} UTC_"
    )
    skipped = left_out(analysis, anonymous=anonymous, names=names)
    if skipped:
        out += [
            "",
            f"_Left out: {md(', '.join(skipped))} (the model could not analyse "
            f"{'this conversation' if len(skipped) == 1 else 'these conversations'})._",
        ]
    summary = md(analysis.executive_summary, inline=False)
    out += ["", "## Executive summary", "", summary, "", "## Key findings", ""]
    for n, finding in enumerate(analysis.key_findings, 1):
        out.append(f"{n}. **{md(finding['title'])}** — {md(finding.get('detail', ''))}")
        for quote in finding.get("quotes", []):
            who = label_for(
                quote.get("number", 0),
                anonymous=anonymous,
                names=names,
                conversation_id=quote.get("conversation_id"),
            )
            out.append(
                f"   > “{md(quote['text'])}” — {md(who)} (message {md(quote['message_id'])})"
            )
        out.append("")
    out += ["## Themes", "", "| Theme | Conversations | Share |", "|---|---:|---:|"]
    for theme in analysis.themes:
        out.append(f"| {md(theme['label'])} | {theme['count']} | {theme['share']}% |")
    counts = analysis.sentiment_distribution.get("counts", {})
    out += [
        "",
        "## Sentiment",
        "",
        *(f"- {label}: {counts.get(label, 0)}" for label in LABELS),
        f"- mean score: {analysis.sentiment_distribution.get('mean', 0):+.2f} (-1 … +1)",
        "",
    ]
    return "\n".join(out)


def csv_text(analysis: CampaignAnalysis, *, anonymous: bool, names: dict) -> str:
    """One row per analysed conversation: participant, status, sentiment, themes."""
    titles = {t["id"]: t["label"] for t in analysis.themes}
    buffer = io.StringIO()
    buffer.write(spreadsheet.BOM)
    writer = csv.writer(buffer)
    writer.writerow(
        ["conversation_id", "participant", "status", "sentiment_score", "sentiment", "themes"]
    )
    rows = sorted(analysis.conversations.items(), key=lambda kv: kv[1].get("number", 0))
    for conversation_id, data in rows:
        who = label_for(
            data.get("number", 0), anonymous=anonymous, names=names, conversation_id=conversation_id
        )
        themes = "; ".join(titles.get(t, t) for t in data.get("themes", []))
        writer.writerow(
            [
                spreadsheet.cell(cell)
                for cell in (
                    conversation_id,
                    who,
                    data.get("status", ""),
                    f"{data.get('score', 0):.3f}",
                    data.get("label", ""),
                    themes,
                )
            ]
        )
    return buffer.getvalue()
