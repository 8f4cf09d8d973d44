"""Importing transcripts of interviews done elsewhere, so they are analysed with Tap's own.

One format, two encodings — one record per message:

    participant  who answered: an email address, or any label ("Interview 3")
    sender       "participant", or "interviewer" (also "bot")
    text         the message
    time         ISO 8601, e.g. 2026-03-01T14:05:00Z (no offset = UTC)

CSV: a header row with exactly these four columns (any order), UTF-8. JSON: an array of
objects with these four keys (nothing else). Templates: templates/analysis/import/.

Messages are grouped into one conversation per participant and ordered by time. Each becomes a
completed conversation of the campaign, and a participant (status completed, never invited)
whose address is the given email, or `<label>@imported.invalid` for a label. Consecutive
interviewer messages are joined into one. Validation is that of an upload: size and row
limits, strict UTF-8, known columns only, every row checked with its line number — and any
error imports nothing.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.text import slugify

from campaigns.models import Campaign, Participant
from conversations.models import Conversation, Message
from tap.orgs.services import audit

FIELDS = ("participant", "sender", "text", "time")
SENDERS = {"participant": "participant", "interviewer": "bot", "bot": "bot"}
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
MAX_TEXT = 20_000
MAX_LABEL = 200
ERRORS_SHOWN = 20
IMPORTED_DOMAIN = "imported.invalid"


@dataclass(frozen=True)
class Row:
    line: int
    participant: str
    sender: str
    text: str
    time: datetime


@dataclass
class ImportReport:
    conversations: int
    messages: int


class TranscriptImportError(ValidationError):
    """A file that cannot be imported; `.messages` lists the reasons with line numbers."""


def _fail(errors: list[str]):
    shown = errors[:ERRORS_SHOWN]
    if len(errors) > ERRORS_SHOWN:
        shown.append(f"… and {len(errors) - ERRORS_SHOWN} more errors.")
    raise TranscriptImportError(shown)


def _time(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)  # ValueError on anything else
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse(data: bytes, *, filename: str) -> list[Row]:
    """Rows of a CSV or JSON file (by extension, else by its first character), validated."""
    if len(data) > MAX_BYTES:
        _fail([f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB."])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail([f"The file is not UTF-8 (byte {exc.start})."])
    kind = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if kind not in ("csv", "json"):
        kind = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    records = _json_records(text) if kind == "json" else _csv_records(text)
    errors: list[str] = []
    rows: list[Row] = []
    for line, record in records:
        problems = []
        participant = (record.get("participant") or "").strip()
        sender = (record.get("sender") or "").strip().lower()
        body = (record.get("text") or "").strip()
        when = None
        if not participant:
            problems.append("participant is empty")
        elif len(participant) > MAX_LABEL:
            problems.append(f"participant is longer than {MAX_LABEL} characters")
        if sender not in SENDERS:
            problems.append(f"sender {sender!r} is not participant or interviewer")
        if not body:
            problems.append("text is empty")
        elif len(body) > MAX_TEXT:
            problems.append(f"text is longer than {MAX_TEXT:,} characters")
        try:
            when = _time(record.get("time") or "")
        except ValueError:
            problems.append(f"time {record.get('time')!r} is not an ISO 8601 date and time")
        if problems:
            errors.append(f"line {line}: " + "; ".join(problems) + ".")
        else:
            rows.append(Row(line, participant, SENDERS[sender], body, when))
        if len(rows) + len(errors) > MAX_ROWS:
            _fail([f"The file has more than {MAX_ROWS:,} messages."])
    if errors:
        _fail(errors)
    if not rows:
        _fail(["The file has no messages."])
    return rows


def _csv_records(text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if sorted(header) != sorted(FIELDS):
        _fail(
            [
                f"line 1: the columns must be exactly {', '.join(FIELDS)} "
                f"(found: {', '.join(header) or 'none'})."
            ]
        )
    reader.fieldnames = header
    for record in reader:
        if None in record:
            _fail([f"line {reader.line_num}: more cells than columns."])
        yield reader.line_num, record


def _json_records(text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail([f"line {exc.lineno}: not valid JSON ({exc.msg})."])
    except RecursionError:
        _fail(["The JSON is nested too deeply."])
    if not isinstance(data, list):
        _fail(["The JSON must be an array of message objects."])
    for index, record in enumerate(data, 1):
        where = f"message {index}"
        if not isinstance(record, dict):
            _fail([f"{where}: not an object."])
        extra = set(record) - set(FIELDS)
        if extra:
            _fail([f"{where}: unknown keys {', '.join(sorted(extra))}."])
        if not all(isinstance(record.get(k, ""), str) for k in FIELDS):
            _fail([f"{where}: every value must be a string."])
        yield index, record


def _email_for(label: str) -> str:
    try:
        validate_email(label)
        return label.lower()
    except ValidationError:
        slug = slugify(label)[:50] or uuid.uuid5(uuid.NAMESPACE_URL, label).hex[:12]
        return f"{slug}@{IMPORTED_DOMAIN}"


def transcripts_import(*, actor, campaign: Campaign, rows: list[Row], source: str) -> ImportReport:
    """Create one completed conversation per participant, all or nothing."""
    if campaign.status == Campaign.Status.ARCHIVED:
        raise TranscriptImportError(["The campaign is archived: nothing can be added to it."])
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.participant, []).append(row)
    emails: dict[str, str] = {}
    errors = []
    for label in grouped:
        email = _email_for(label)
        if email in emails.values():
            errors.append(f"participants {label!r} and another label map to the same {email}.")
        emails[label] = email
    existing = {
        email.lower()
        for email in Conversation.objects.filter(campaign=campaign).values_list(
            "participant__email", flat=True
        )
    }
    for label, email in emails.items():
        if email in existing:
            errors.append(f"participant {label!r} already has a conversation in this campaign.")
    if errors:
        _fail(errors)
    messages = 0
    with transaction.atomic():
        for label, group in grouped.items():
            group.sort(key=lambda r: (r.time, r.line))
            participant = Participant.objects.filter(
                campaign=campaign, email__iexact=emails[label]
            ).first() or Participant.objects.create(
                organization_id=campaign.organization_id,
                campaign=campaign,
                email=emails[label],
                name="" if "@" in label else label[:200],
            )
            Participant.objects.filter(pk=participant.pk).update(
                status=Participant.Status.COMPLETED, last_activity_at=group[-1].time
            )
            conversation = Conversation.objects.create(
                organization_id=campaign.organization_id,
                campaign=campaign,
                participant=participant,
                status=Conversation.Status.COMPLETED,
                created_at=group[0].time,
                last_activity_at=group[-1].time,
                ended_at=group[-1].time,
                end_reason="imported",
            )
            made, turn = _messages(conversation, group)
            Message.objects.bulk_create(made, batch_size=1000)
            Conversation.objects.filter(pk=conversation.pk).update(participant_turns=turn)
            messages += len(made)
        audit(
            org_id=campaign.organization_id,
            actor=actor,
            action="campaign.transcripts_imported",
            target=campaign,
            source=source[:200],
            conversations=len(grouped),
            messages=messages,
        )
    return ImportReport(conversations=len(grouped), messages=messages)


def _messages(conversation: Conversation, group: list[Row]) -> tuple[list[Message], int]:
    """Messages with turn numbers like the chat's: the participant's n-th answer is turn n;
    interviewer messages belong to the last answered turn (0 before the first answer), and
    consecutive ones are joined so a turn has one interviewer message."""
    made: list[Message] = []
    turn = 0
    for index, row in enumerate(group):
        if row.sender == "participant":
            turn += 1
        elif made and made[-1].sender == "bot" and made[-1].turn == turn:
            made[-1].body += "\n\n" + row.text
            continue
        made.append(
            Message(
                organization_id=conversation.organization_id,
                conversation=conversation,
                sender=row.sender,
                body=row.text,
                client_key=f"import-{index}",
                turn=turn,
                created_at=row.time,
            )
        )
    return made, turn
