"""Fixed-window rate limits on a shared cache (Redis) with atomic increments.

Fails open: if Redis is unreachable the request goes through (and a warning is logged), so a
Redis outage never takes logins down with it."""

import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, spec: str) -> "Limit":
        count, seconds = spec.split("/")
        return cls(int(count), int(seconds))


def client_ip(request) -> str:
    """The client's address as rate limits key it: an IPv6 address by its /64, which one
    subscriber holds whole (a new address per request would dodge every limit)."""
    address = request.META.get("REMOTE_ADDR", "")
    header = settings.TAP_CLIENT_IP_HEADER
    if header:
        forwarded = request.META.get(header, "")
        if forwarded:
            # The entry our proxy appended is the last one; anything left of it came from
            # the client and can be forged to dodge the limits.
            address = forwarded.split(",")[-1].strip()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.7 is 192.0.2.7
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


def hit(scope: str, key: str, limit: Limit) -> int | None:
    """Count one attempt. Returns seconds to wait when over the limit, else None."""
    window = int(time.time() // limit.seconds)
    cache_key = f"rl:{scope}:{key}:{window}"
    try:
        cache.add(cache_key, 0, timeout=limit.seconds + 1)
        count = cache.incr(cache_key)
    except Exception:
        logger.warning("rate limit store unavailable; allowing", extra={"scope": scope})
        return None
    if count > limit.count:
        return max(1, limit.seconds - int(time.time()) % limit.seconds)
    return None


def blocked(scope: str, key: str, limit: Limit) -> int | None:
    """Like `hit`, without counting: seconds to wait when already over the limit, else None.

    For limits that count only failures (unknown participant tokens): check before the
    lookup, count after a miss — so a blocked client cannot go on guessing."""
    window = int(time.time() // limit.seconds)
    try:
        count = cache.get(f"rl:{scope}:{key}:{window}", 0)
    except Exception:
        logger.warning("rate limit store unavailable; allowing", extra={"scope": scope})
        return None
    if count >= limit.count:
        return max(1, limit.seconds - int(time.time()) % limit.seconds)
    return None
