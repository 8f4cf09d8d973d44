"""What an analysis reads: the included conversations, their hashes, and their messages.

Two hashes make the cache:
  * a conversation's own hash — over its messages' ids, senders and edit times, the
    anonymity setting and the engine — keys the per-conversation extraction cache, so a
    refresh re-extracts only conversations whose messages changed;
  * the campaign's input hash — over the included conversations (id, status, own hash), the
    analysis options and the engine (name, version, model) — says whether the stored
    analysis is still the answer.

Both are computed from one aggregate query in PostgreSQL: a campaign of 100,000 messages sends
10,000 short digests to Python, not 100,000 rows.

Anonymity: the engines never see a participant row. For anonymous campaigns the participant's
name and email, and any email address anywhere in the text, are replaced before the text
leaves this module.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from conversations.models import CAMPAIGN_CLOSED, Message

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NAME_MASK = "[name]"
EMAIL_MASK = "[email]"
# Analyses read at most this many characters of one message (the chat caps answers at 5,000).
MAX_MESSAGE_CHARS = 5000

# Per conversation: a digest of its messages, and whether it has any participant message.
# `organization_id` is filtered explicitly as well as by RLS (plans, and Citus later). A
# conversation the campaign's completion closed is "closed", not "completed": the participant
# did not finish it, and "Completed only" leaves it out.
DIGEST_SQL = """
    SELECT c.id,
           CASE WHEN c.status = 'completed' AND c.end_reason = %s THEN 'closed'
                ELSE c.status END,
           c.number,
           md5(string_agg(m.id::text || ':' || m.sender || ':' ||
                          extract(epoch FROM m.updated_at)::text, ',' ORDER BY m.id)),
           count(*) FILTER (WHERE m.sender = 'participant')
    FROM conversations c
    JOIN messages m ON m.conversation_id = c.id AND m.organization_id = c.organization_id
    WHERE c.organization_id = %s AND c.campaign_id = %s
    GROUP BY c.id, c.status, c.end_reason, c.number
"""


@dataclass(frozen=True)
class Included:
    id: str
    number: int  # the pseudonym number ("Participant 7"), Conversation.number
    status: str
    hash: str


@dataclass
class Snapshot:
    """The inputs of one analysis, as read now."""

    hash: str
    options: dict
    conversations: list[Included] = field(default_factory=list)
    taken_at: datetime | None = None  # just before the read: later changes make it stale

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.conversations]


@dataclass(frozen=True)
class ConversationInput:
    """One conversation as the engines see it: no participant name, no address."""

    id: str
    number: int
    status: str
    # (message id, sender, text), in order
    messages: tuple[tuple[str, str, str], ...]


def analysis_options(campaign: Campaign, *, include_in_progress: bool) -> dict:
    return {
        "include_in_progress": bool(include_in_progress),
        "anonymous": bool(campaign.options.anonymous),
        # The mission frames the model's reading: a new mission is a new analysis.
        "mission": hashlib.sha256(campaign.mission.encode()).hexdigest()[:16],
    }


def snapshot(*, campaign: Campaign, options: dict, engine_key: str) -> Snapshot:
    """The included conversations (those with at least one participant message; only completed
    ones unless `include_in_progress`) and the input hash."""
    taken_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            DIGEST_SQL, [CAMPAIGN_CLOSED, str(campaign.organization_id), str(campaign.pk)]
        )
        rows = cursor.fetchall()
    rows.sort(key=lambda r: r[2])  # by pseudonym number (Conversation.number), oldest first
    included = []
    anonymous = "anon" if options.get("anonymous") else "named"
    for conversation_id, status, number, digest, participant_messages in rows:
        if not participant_messages:
            continue
        if status != "completed" and not options.get("include_in_progress"):
            continue
        own = hashlib.sha256(f"{engine_key}|{anonymous}|{digest}".encode()).hexdigest()
        included.append(Included(str(conversation_id), number, status, own))
    payload = json.dumps(
        [engine_key, options, [(c.id, c.status, c.hash) for c in included]], sort_keys=True
    )
    return Snapshot(hashlib.sha256(payload.encode()).hexdigest(), options, included, taken_at)


def _unspaced(word: str) -> bool:
    """Written in a script whose words are not separated by spaces (Chinese, Japanese), or
    that joins particles to names (Korean): no word boundary to rely on."""
    return any(unicodedata.category(ch) == "Lo" for ch in word)


def _alternation(patterns) -> str:
    """Longest first, so that a whole name wins over its parts."""
    return "|".join(sorted(patterns, key=len, reverse=True))


def _scrubber(name: str, email: str):
    """A function that masks this participant's name and email and any address in a text.

    The whole name is masked ("Jo Ng", short parts included), and each part of three letters
    or more on its own, as a word; a short part alone is left, or "An Do" would take every
    "an" and "do" with it. Names in scripts without spaces (or that join particles to them)
    are masked wherever they appear: the whole name, and its parts of two characters or
    more ("我是王伟")."""
    parts = [w for w in re.split(r"[\s.,_@-]+", f"{name} {email.split('@')[0]}") if w]
    bounded = {re.escape(w) for w in parts if not _unspaced(w) and len(w) >= 3}
    unbounded = {re.escape(w) for w in parts if _unspaced(w) and len(w) >= 2}
    words = name.split()
    if _unspaced(name):
        unbounded.add(r"\s*".join(map(re.escape, words)))  # with or without its spaces
    elif len(words) > 1:
        bounded.add(r"\s+".join(map(re.escape, words)))
    alternatives = []
    if bounded:
        alternatives.append(r"\b(?:" + _alternation(bounded) + r")\b")
    if unbounded:
        alternatives.append(_alternation(unbounded))
    pattern = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    def scrub(text: str) -> str:
        text = EMAIL.sub(EMAIL_MASK, text)
        return pattern.sub(NAME_MASK, text) if pattern is not None else text

    return scrub


def load_conversations(
    *, campaign: Campaign, included: list[Included], anonymous: bool
) -> list[ConversationInput]:
    """The messages of `included` conversations (call in batches of a few hundred)."""
    if not included:
        return []
    by_id = {c.id: c for c in included}
    fields = ["conversation_id", "pk", "sender", "body"]
    if anonymous:  # read only to mask them; never passed on
        fields += ["conversation__participant__name", "conversation__participant__email"]
    rows = (
        Message.objects.filter(conversation_id__in=list(by_id))
        .order_by("conversation_id", "created_at", "turn", "pk")
        .values_list(*fields)
    )
    grouped: dict[str, list] = {}
    scrubbers: dict[str, object] = {}
    # A plain query, not a server-side cursor: a cursor's plan favours the first rows and
    # turns this join into a slow nested loop; a batch is a few thousand short rows.
    for row in rows:
        conversation_id, message_id, sender, body = row[:4]
        key = str(conversation_id)
        text = (body or "")[:MAX_MESSAGE_CHARS]
        if anonymous:
            scrub = scrubbers.get(key)
            if scrub is None:
                scrub = scrubbers[key] = _scrubber(row[4] or "", row[5] or "")
            text = scrub(text)
        grouped.setdefault(key, []).append((str(message_id), sender, text))
    return [
        ConversationInput(c.id, c.number, c.status, tuple(grouped.get(c.id, ()))) for c in included
    ]
