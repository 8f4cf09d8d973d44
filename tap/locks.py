"""Named locks for the length of a transaction (PostgreSQL advisory locks)."""

from django.db import connections


def advisory_xact_lock(key: str, *, using: str = "default") -> None:
    """Wait for the lock named `key` and hold it until the current transaction ends: two
    requests doing the same thing at once (a double click) then take turns, and the second
    sees what the first wrote."""
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("an advisory transaction lock needs a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
