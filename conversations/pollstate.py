"""What a waiting chat page's poll compares with, kept in the cache so that most polls are
answered without the database.

A page waiting for the interviewer polls `/c/poll/` every second. The full answer resolves
the session's link, sets the tenant context and reads the conversation; when nothing changed
that is a 204. The poll URL also carries the conversation id, signed, and the full answer
remembers the conversation's state here for `TTL` seconds: the next polls compare with it
and answer 204 at once. Every change to a conversation forgets the state when it commits,
so the poll after a reply (or a failure, the end …) takes the full path and shows it.
Changes that do not go through the services (a campaign paused, conversations closed in
bulk) show within `TTL`.

The signed value also names the session's link (a digest of it), and the fast answer is given
only to the session that holds that link: a 204 or not, to a guessed `since`, would otherwise
tell anyone with the URL how far the conversation has got. The cache is optional: when Redis
is away every poll takes the full path.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from django.core import signing
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

TTL = 10  # seconds
SALT = "conversations.poll"


def _key(conversation_id) -> str:
    return f"chat-state:{conversation_id}"


def _holder(link_hash: str) -> str:
    return hashlib.sha256(f"poll:{link_hash}".encode()).hexdigest()[:16]


def poll_token(conversation_id, link_hash: str) -> str:
    """The conversation id and the session's link, signed, for the poll URL."""
    return signing.Signer(salt=SALT).sign(f"{conversation_id}.{_holder(link_hash)}")


def conversation_from_token(token: str, link_hash: str) -> uuid.UUID | None:
    """The conversation the token names, if this session's link is the one it was made for."""
    try:
        conversation_id, holder = signing.Signer(salt=SALT).unsign(token).split(".")
        if not link_hash or holder != _holder(link_hash):
            return None
        return uuid.UUID(conversation_id)
    except (signing.BadSignature, ValueError):
        return None


def cached(conversation_id) -> str | None:
    try:
        return cache.get(_key(conversation_id))
    except Exception:  # Redis away: take the full path
        logger.warning("poll state unavailable", exc_info=True)
        return None


def remember(conversation_id, state: str) -> None:
    try:
        cache.set(_key(conversation_id), state, TTL)
    except Exception:
        logger.warning("poll state not stored", exc_info=True)


def forget_on_commit(conversation_id) -> None:
    """The conversation is changing: once that commits, polls take the full path again."""

    def forget() -> None:
        try:
            cache.delete(_key(conversation_id))
        except Exception:
            # Redis away: the old state lives at most TTL seconds more.
            logger.warning("poll state not forgotten", exc_info=True)

    transaction.on_commit(forget)
