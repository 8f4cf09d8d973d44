"""Everything an organisation holds, as one JSON document, streamed in constant memory.

The tables are found, not listed: every concrete subclass of `TenantModel` in any installed
app (campaigns, conversations, metrics, and whatever is added later) is exported, each row
with its own columns. Only credentials are left out — the hashes of participant-link tokens
and API keys, which are useless to the owner and worth attacking to anyone else.

The document is written while the response streams, after TenancyMiddleware's transaction
has ended, so the generator opens its own tenant context (reliability.md, "Streaming
responses"); rows are read with server-side cursors (`.iterator()`), a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from tap.models import TenantModel
from tap.orgs.models import Organization, OrganizationMember, User
from tap.orgs.services import audit
from tap.tenancy import org_context

FORMAT = "tap-organisation-export/1"
# Columns never exported, by name, whatever table they are in: credentials.
SECRET_COLUMNS = frozenset({"token_hash", "key_hash", "password"})
CHUNK_ROWS = 1000


def tenant_models() -> list[type[TenantModel]]:
    """Every concrete tenant model, in a stable order."""
    found = [
        model
        for model in apps.get_models()
        if issubclass(model, TenantModel) and not model._meta.abstract
    ]
    return sorted(found, key=lambda model: model._meta.label_lower)


def exported_columns(model) -> list[str]:
    return [
        field.attname
        for field in model._meta.concrete_fields
        if field.attname not in SECRET_COLUMNS
    ]


def _dump(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def org_export(*, actor: User, org: Organization) -> Iterator[str]:
    """Audit the export now (in the caller's transaction); return the document's chunks."""
    with transaction.atomic():
        audit(
            org_id=org.id,
            actor=actor,
            action="org.exported",
            target=org,
            tables=len(tenant_models()),
        )
    return _document(org_id=org.id)


def _document(*, org_id) -> Iterator[str]:
    with org_context(org_id):
        org = Organization.objects.get(pk=org_id)
        head = {
            "format": FORMAT,
            "exported_at": timezone.now(),
            "organization": {
                "id": org.id,
                "name": org.name,
                "slug": org.slug,
                "created_at": org.created_at,
                "transcript_retention_days": org.transcript_retention_days,
            },
        }
        yield _dump(head)[:-1]  # leave the object open
        yield ',\n"members": ['
        members = (
            OrganizationMember.objects.order_by("created_at", "pk")
            .values("id", "role", "created_at", "user__email", "user__name")
            .iterator(chunk_size=CHUNK_ROWS)
        )
        for i, row in enumerate(members):
            member = {
                "id": row["id"],
                "email": row["user__email"],
                "name": row["user__name"],
                "role": row["role"],
                "joined_at": row["created_at"],
            }
            yield ("\n" if i == 0 else ",\n") + _dump(member)
        yield '\n],\n"tables": {'
        for n, model in enumerate(tenant_models()):
            yield ("\n" if n == 0 else ",\n") + _dump(model._meta.label_lower) + ": ["
            rows = (
                model.objects.order_by("pk")
                .values(*exported_columns(model))
                .iterator(chunk_size=CHUNK_ROWS)
            )
            for i, row in enumerate(rows):
                yield ("\n" if i == 0 else ",\n") + _dump(row)
            yield "\n]"
        yield "\n}}\n"
