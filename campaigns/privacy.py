"""Erasing a participant: their messages, conversation and identity, for good.

Unlike `services.participant_remove` (taking someone out of a campaign), an erasure leaves no
personal data behind: the participant row (email, name), their links, their email rows, their
conversation with every message and its per-conversation analysis are deleted, and their
address is also struck from the earlier audit rows that named them. The erasure's own audit
row holds only ids and counts.

It runs as one transaction on the service connection, as `org_delete` does: the app role may
insert audit rows but never change them, and the scrub must. Every statement still filters on
the organisation explicitly.

The campaign's analysis is not touched here (conversations owns it). Its input hash covers
the included conversations' ids (conversations/analysis/inputs.py), so after an erasure the
stored analysis no longer matches its inputs and the next `campaign_analyze` recomputes it;
until then the old result, which may quote the erased person, is still shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower

from campaigns.models import Participant
from tap.orgs.models import AuditEvent

SERVICE = "service"
ERASED = "[erased]"
# Audit actions whose `data` may carry a participant's address (campaigns/services.py).
PARTICIPANT_ACTIONS = "participant."


@dataclass(frozen=True)
class Erasure:
    conversations: int
    messages: int
    links: int
    emails: int
    audit_rows_scrubbed: int


def participant_erase(*, actor, participant: Participant) -> Erasure:
    """Delete the participant, their conversation, messages, links and email rows, and strike
    their address from earlier audit rows; audit the erasure with ids and counts only."""
    org_id, campaign_id, participant_id = (
        participant.organization_id,
        participant.campaign_id,
        participant.pk,
    )
    conversation_model = apps.get_model("conversations", "Conversation")
    with transaction.atomic(using=SERVICE):
        # Lock order as in a chat post (conversation, then participant): an erasure racing a
        # message waits for it, then deletes it too.
        list(
            conversation_model.all_objects.using(SERVICE)
            .select_for_update()
            .filter(organization_id=org_id, participant_id=participant_id)
            .values_list("pk", flat=True)
        )
        row = (
            Participant.all_objects.using(SERVICE)
            .select_for_update()
            .filter(organization_id=org_id, campaign_id=campaign_id, pk=participant_id)
            .first()
        )
        if row is None:
            raise ValidationError(
                "This participant was already removed; there is nothing to erase."
            )
        scrubbed = _scrub_audit(org_id=org_id, participant=row)
        _total, deleted = row.delete()
        erasure = Erasure(
            conversations=deleted.get("conversations.Conversation", 0),
            messages=deleted.get("conversations.Message", 0),
            links=deleted.get("campaigns.ParticipantLink", 0),
            emails=deleted.get("campaigns.CampaignEmail", 0),
            audit_rows_scrubbed=scrubbed,
        )
        AuditEvent(
            organization_id=org_id,
            actor=actor if actor is not None and actor.is_authenticated else None,
            action="participant.erased",
            target_type="campaigns.campaign",
            target_id=str(campaign_id),
            # Ids and counts only: the participant id now names nothing.
            data={"participant_id": str(participant_id), **erasure.__dict__},
        ).save(using=SERVICE, force_insert=True)
    return erasure


def _scrub_audit(*, org_id, participant: Participant) -> int:
    """Replace the participant's address in earlier audit rows about them: rows whose target
    is the participant, and participant actions on their campaign that name the address.
    Member events (a participant may also be a member) are left alone."""
    events = (
        AuditEvent.all_objects.using(SERVICE)
        .filter(organization_id=org_id)
        .alias(named=Lower(KT("data__email")))
    )
    about_them = Q(target_type="campaigns.participant", target_id=str(participant.pk))
    naming_them = Q(
        target_type="campaigns.campaign",
        target_id=str(participant.campaign_id),
        action__startswith=PARTICIPANT_ACTIONS,
        named=participant.email.lower(),
    )
    scrubbed = 0
    for event in events.filter(about_them | naming_them).select_for_update():
        data = dict(event.data or {})
        for key in ("email", "name"):
            if key in data:
                data[key] = ERASED
        AuditEvent.all_objects.using(SERVICE).filter(pk=event.pk).update(data=data)
        scrubbed += 1
    return scrubbed


class EraseConfirmForm(forms.Form):
    """Typing the address is the confirmation: an erasure cannot be undone."""

    confirm = forms.CharField(label="Type the participant's email address to confirm")

    def __init__(self, *args, participant: Participant, **kwargs):
        super().__init__(*args, **kwargs)
        self.participant = participant

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value.lower() != self.participant.email.lower():
            raise forms.ValidationError(
                f"Type {self.participant.email} exactly to confirm; nothing was erased."
            )
        return value
