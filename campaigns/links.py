"""Participant links: the one place a participant token is resolved.

The token arrives once, in the emailed URL `/c/<token>/`. It is hashed, resolved through the
`tap_resolve_participant_link` SECURITY DEFINER function (participants have no organisation
until then), exchanged for a session, and the browser is sent to the token-free `/c/`. The
session keeps the hash, and every later request resolves it again, so a revoked link stops
working at once. Unknown, revoked and malformed tokens are all the same 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from django.db import connection
from django.utils import timezone

from campaigns.models import ParticipantLink
from campaigns.services import hash_token

SESSION_KEY = "tap_participant_link"
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{40,64}$")


@dataclass(frozen=True)
class ResolvedLink:
    organization_id: UUID
    participant_id: UUID
    link_id: UUID
    token_hash: str


def resolve_hash(token_hash: str) -> ResolvedLink | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tap_resolve_participant_link(%s)", [token_hash])
        row = cursor.fetchone()
    return ResolvedLink(*row, token_hash) if row else None


def resolve_token(token: str) -> ResolvedLink | None:
    """A token from a URL → the live link it names, or None."""
    if not TOKEN_SHAPE.match(token or ""):
        return None
    return resolve_hash(hash_token(token))


def start_session(request, resolved: ResolvedLink) -> None:
    """Exchange the token for a session: a new session key, holding only the hash."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = resolved.token_hash


def session_hash(request) -> str:
    """The hash of the link this browser's session holds ("" for none), unresolved: for what
    must be tied to the session's link without a database read (conversations.pollstate)."""
    return request.session.get(SESSION_KEY, "")


def from_session(request) -> ResolvedLink | None:
    token_hash = session_hash(request)
    return resolve_hash(token_hash) if token_hash else None


def mark_used(resolved: ResolvedLink) -> None:
    """Inside the link's org context."""
    ParticipantLink.objects.filter(pk=resolved.link_id).update(last_used_at=timezone.now())
