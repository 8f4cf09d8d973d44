"""The one ingestion path: files → parsed records → identities → daily rows, seats, teams.

Used by the upload worker, the API worker and `manage.py ingest_metrics` through
`services.run_process`. Everything here runs inside the run's single transaction (the caller
owns it), so a run that fails leaves nothing behind.

Metric rows are streamed into a temporary staging table with COPY in batches (constant memory
whatever the file size), then folded into `daily_developer_metrics` by SQL:

* rows for the same (identity, day, tool) within the run are **summed** (several files of one
  report, Claude Code's local and remote rows);
* a key that already exists with different values is **replaced** and counted;
* a key that exists with the same values is left alone and counted as unchanged — uploading
  the same file again changes nothing and the run says so.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from metrics.models import CopilotSeat, DeveloperIdentity, DeveloperTeam, MetricIngestionRun
from metrics.parsers import MetricRow, Rejected, SeatRow, TeamRow

logger = logging.getLogger(__name__)

BATCH = 5000
PROGRESS_EVERY_SECONDS = 0.5


def progress_key(run_id) -> str:
    return f"metrics:run-progress:{run_id}"


# Identifiers and dates inside vendor records: kept from the first part, never summed.
NOT_SUMMED = frozenset(
    {"user_id", "organization_id", "enterprise_id", "team_id", "entity_id_partition"}
)


def merge_extras(left: dict, right: dict) -> dict:
    """Sum two rows' extras: numbers add, flags OR, lists concatenate, objects recurse."""
    merged = dict(left)
    for key, value in right.items():
        if key in NOT_SUMMED:
            merged.setdefault(key, value)
            continue
        if key not in merged:
            merged[key] = value
            continue
        mine = merged[key]
        if isinstance(mine, bool) or isinstance(value, bool):
            merged[key] = bool(mine) or bool(value)
        elif (isinstance(mine, int | float) and isinstance(value, int | float)) or (
            isinstance(mine, list) and isinstance(value, list)
        ):
            merged[key] = mine + value
        elif isinstance(mine, dict) and isinstance(value, dict):
            merged[key] = merge_extras(mine, value)
    return merged


def _copy_text(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


@dataclass
class Outcome:
    rows_total: int = 0
    rows_ingested: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    rows_new: int = 0
    rows_replaced: int = 0
    rows_unchanged: int = 0
    identities_created: int = 0
    errors: list = field(default_factory=list)
    errors_omitted: int = 0
    notes: list = field(default_factory=list)


class Identities:
    """Every identity of the organisation by each identifier (lower-cased), loaded once.

    New identities are created in batches (`flush`) before the rows naming them are staged."""

    def __init__(self, org_id):
        self.org_id = org_id
        self.by_login: dict[str, uuid.UUID] = {}
        self.by_github_id: dict[int, uuid.UUID] = {}
        self.by_email: dict[str, uuid.UUID] = {}
        self.by_api_key: dict[str, uuid.UUID] = {}
        self.pending: list[DeveloperIdentity] = []
        self.created = 0
        rows = DeveloperIdentity.objects.values_list(
            "id", "github_login", "github_user_id", "email", "api_key_name"
        )
        for pk, login, github_id, email, key in rows.iterator(chunk_size=5000):
            self._index(pk, login, github_id, email, key)

    def _index(self, pk, login, github_id, email, key):
        if login:
            self.by_login[login.lower()] = pk
        if github_id:
            self.by_github_id[github_id] = pk
        if email:
            self.by_email[email.lower()] = pk
        if key:
            self.by_api_key[key.lower()] = pk

    def _new(self, *, login="", github_id=None, email="", key="", name="") -> uuid.UUID:
        identity = DeveloperIdentity(
            id=uuid.uuid4(),
            organization_id=self.org_id,
            github_login=login,
            github_user_id=github_id,
            email=email,
            api_key_name=key,
            display_name=name or login or (email.split("@")[0] if email else "") or key,
        )
        self.pending.append(identity)
        self.created += 1
        self._index(identity.id, login, github_id, email, key)
        return identity.id

    def flush(self) -> None:
        if self.pending:
            DeveloperIdentity.objects.bulk_create(self.pending, batch_size=1000)
            self.pending = []

    def _fill(self, pk, **fields) -> None:
        """Give an existing identity an identifier it lacked (login seen with its id …)."""
        self.flush()
        DeveloperIdentity.objects.filter(pk=pk).update(**fields, updated_at=timezone.now())
        self._index(
            pk,
            fields.get("github_login"),
            fields.get("github_user_id"),
            fields.get("email"),
            None,
        )

    def github(self, login: str, github_id: int | None) -> uuid.UUID:
        if github_id is not None:
            pk = self.by_github_id.get(github_id)
            if pk is not None:
                return pk
        if login:
            pk = self.by_login.get(login.lower())
            if pk is not None:
                if github_id is not None:
                    self._fill(pk, github_user_id=github_id)
                return pk
        return self._new(login=login, github_id=github_id)

    def for_row(self, row: MetricRow) -> uuid.UUID | str:
        """The identity a metric row belongs to, or a reason to reject it."""
        if row.api_key_name:
            pk = self.by_api_key.get(row.api_key_name.lower())
            return pk if pk is not None else self._new(key=row.api_key_name)
        if row.github_id is not None or (row.login and not row.email):
            return self.github(row.login, row.github_id)
        if row.email and not row.login:
            pk = self.by_email.get(row.email)
            return pk if pk is not None else self._new(email=row.email)
        # Tap's CSV with both a login and an email.
        by_login = self.by_login.get(row.login.lower())
        by_email = self.by_email.get(row.email)
        if by_login and by_email and by_login != by_email:
            return (
                f"github_login “{row.login}” and email “{row.email}” belong to two different "
                "developers in Tap; link them with the identity map first"
            )
        pk = by_login or by_email
        if pk is None:
            return self._new(login=row.login, email=row.email)
        if by_login is None:
            self._fill(pk, github_login=row.login)
        elif by_email is None:
            self._fill(pk, email=row.email)
        return pk


class Ingest:
    """Accumulates one run's records; `finish()` writes them."""

    def __init__(self, run: MetricIngestionRun, *, max_errors: int):
        self.run = run
        self.org_id = run.organization_id
        self.max_errors = max_errors
        self.outcome = Outcome()
        self.identities = Identities(self.org_id)
        self.stage = f"metrics_stage_{uuid.uuid4().hex[:12]}"
        self.staged = 0
        self.buffer: list[str] = []
        self.seats: dict[uuid.UUID, SeatRow] = {}
        self.saw_seats = False
        self.file = ""
        self._last_progress = 0.0
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE {self.stage} (identity_id uuid, date date, tool text, "
                "suggestions bigint, acceptances bigint, completions bigint, sessions bigint, "
                # text, not jsonb: parsed once, on the way into the daily table.
                "extras text) ON COMMIT DROP"
            )

    # --- reading ---------------------------------------------------------------------------

    def reject(self, line: int, reason: str) -> None:
        self.outcome.rows_rejected += 1
        if len(self.outcome.errors) < self.max_errors:
            self.outcome.errors.append({"file": self.file, "line": line, "reason": reason})
        else:
            self.outcome.errors_omitted += 1

    def add(self, item) -> None:
        self.outcome.rows_total += 1
        if isinstance(item, Rejected):
            self.reject(item.line, item.reason)
        elif isinstance(item, MetricRow):
            self._metric(item)
        elif isinstance(item, SeatRow):
            self._seat(item)
        elif isinstance(item, TeamRow):
            self._team(item)

    def _metric(self, row: MetricRow) -> None:
        pk = self.identities.for_row(row)
        if isinstance(pk, str):
            self.reject(row.line, pk)
            return
        text = row.extras_json or json.dumps(row.extras, separators=(",", ":"))
        if "\\u0000" in text:
            # PostgreSQL's jsonb cannot hold NUL characters.
            self.reject(row.line, "the record contains a NUL character (\\u0000)")
            return
        self.outcome.rows_ingested += 1
        extras = _copy_text(text)
        self.buffer.append(
            f"{pk}\t{row.date.isoformat()}\t{row.tool}\t{row.suggestions}\t{row.acceptances}\t"
            f"{row.completions}\t{row.sessions}\t{extras}\n"
        )
        if len(self.buffer) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        self.identities.flush()
        if not self.buffer:
            return
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {self.stage} FROM STDIN") as copy,
        ):
            copy.write("".join(self.buffer))
        self.staged += len(self.buffer)
        self.buffer = []

    def _seat(self, row: SeatRow) -> None:
        self.saw_seats = True
        pk = self.identities.github(row.login, row.github_id)
        self.outcome.rows_ingested += 1
        seen = self.seats.get(pk)
        # Enterprise listings name a person once per granting org or team: keep the latest.
        if seen is None or (
            row.last_activity_at is not None
            and (seen.last_activity_at is None or row.last_activity_at > seen.last_activity_at)
        ):
            self.seats[pk] = row

    def _team(self, row: TeamRow) -> None:
        if row.source == "identity_map":
            from metrics.services import identity_map_row  # noqa: PLC0415

            self.identities.flush()
            problem = identity_map_row(self.identities, row)
            if problem:
                self.reject(row.line, problem)
                return
            self.outcome.rows_ingested += 1
            return
        pk = self.identities.github(row.login, row.github_id)
        self.identities.flush()
        team_add(self.org_id, pk, row.team, DeveloperTeam.Source.COPILOT)
        self.outcome.rows_ingested += 1

    def progress(self, done_bytes: int, total_bytes: int) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        cache.set(
            progress_key(self.run.pk),
            {"bytes": done_bytes, "total": total_bytes, "rows": self.outcome.rows_total},
            3600,
        )

    # --- writing ---------------------------------------------------------------------------

    def finish(self) -> Outcome:
        self._flush()
        self.identities.flush()
        self.outcome.identities_created = self.identities.created
        if self.staged:
            self._fold()
        if self.saw_seats:
            self._write_seats()
        return self.outcome

    def _fold(self) -> None:
        org, run = str(self.org_id), str(self.run.pk)
        with connection.cursor() as cursor:
            # 1. Keys seen more than once in this run (parts of one report, local + remote
            #    Claude Code rows): sum them into one staged row. Usually few or none.
            cursor.execute(
                f"""
                SELECT identity_id, date, tool, sum(suggestions), sum(acceptances),
                       sum(completions), sum(sessions), array_agg(extras)
                FROM {self.stage} GROUP BY identity_id, date, tool HAVING count(*) > 1
                """
            )
            duplicates = cursor.fetchall()
            if duplicates:
                keys = [(str(i), d, t) for i, d, t, *_rest in duplicates]
                cursor.execute(
                    f"DELETE FROM {self.stage} WHERE (identity_id, date, tool) IN "
                    f"(SELECT * FROM unnest(%s::uuid[], %s::date[], %s::text[]))",
                    [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]],
                )
                merged = []
                for identity_id, day, tool, s, a, c, n, extras_list in duplicates:
                    total: dict = {}
                    for text in extras_list:
                        total = merge_extras(total, json.loads(text))
                    merged.append((identity_id, day, tool, s, a, c, n, json.dumps(total)))
                cursor.executemany(
                    f"INSERT INTO {self.stage} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", merged
                )
            # 2. One statement: new keys are inserted, keys with different values replaced,
            #    keys with the same values left alone (no write, not returned).
            cursor.execute(
                f"""
                WITH written AS (
                    INSERT INTO daily_developer_metrics AS d
                        (id, organization_id, developer_identity_id, date, tool, suggestions,
                         acceptances, completions, sessions, extras, ingestion_run_id,
                         created_at, updated_at)
                    SELECT gen_random_uuid(), %s, identity_id, date, tool,
                           least(suggestions, 2147483647), least(acceptances, 2147483647),
                           least(completions, 2147483647), least(sessions, 2147483647),
                           extras::jsonb, %s, now(), now()
                    FROM {self.stage}
                    ON CONFLICT (organization_id, developer_identity_id, date, tool) DO UPDATE
                    SET suggestions = EXCLUDED.suggestions, acceptances = EXCLUDED.acceptances,
                        completions = EXCLUDED.completions, sessions = EXCLUDED.sessions,
                        extras = EXCLUDED.extras, ingestion_run_id = EXCLUDED.ingestion_run_id,
                        updated_at = now()
                    WHERE (d.suggestions, d.acceptances, d.completions, d.sessions, d.extras)
                          IS DISTINCT FROM (EXCLUDED.suggestions, EXCLUDED.acceptances,
                          EXCLUDED.completions, EXCLUDED.sessions, EXCLUDED.extras)
                    RETURNING (xmax = 0) AS inserted
                )
                SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                       (SELECT count(*) FROM {self.stage})
                FROM written
                """,
                [org, run],
            )
            new, replaced, keys = cursor.fetchone()
            cursor.execute(f"TRUNCATE {self.stage}")
        self.outcome.rows_new += new
        self.outcome.rows_replaced += replaced
        self.outcome.rows_unchanged += keys - new - replaced

    def _write_seats(self) -> None:
        """A seats file is the whole roster at one moment: it replaces the previous one."""
        now = timezone.now()
        existing = dict(CopilotSeat.objects.values_list("developer_identity_id", "id"))
        fresh, changed = [], []
        for pk, row in self.seats.items():
            values = {
                "assigned_at": row.assigned_at,
                "last_activity_at": row.last_activity_at,
                "last_activity_editor": row.last_activity_editor,
                "last_authenticated_at": row.last_authenticated_at,
                "plan_type": row.plan_type,
                "assigning_team": row.assigning_team,
                "pending_cancellation_date": row.pending_cancellation_date,
            }
            seat = CopilotSeat(
                organization_id=self.org_id,
                developer_identity_id=pk,
                ingestion_run_id=self.run.pk,
                updated_at=now,
                **values,
            )
            if pk in existing:
                seat.id = existing[pk]
                changed.append(seat)
            else:
                fresh.append(seat)
        CopilotSeat.objects.bulk_create(fresh, batch_size=1000)
        CopilotSeat.objects.bulk_update(
            changed,
            [
                "assigned_at",
                "last_activity_at",
                "last_activity_editor",
                "last_authenticated_at",
                "plan_type",
                "assigning_team",
                "pending_cancellation_date",
                "ingestion_run_id",
                "updated_at",
            ],
            batch_size=1000,
        )
        removed, _ = CopilotSeat.objects.exclude(developer_identity_id__in=self.seats).delete()
        self.outcome.rows_new += len(fresh)
        self.outcome.rows_replaced += len(changed)
        self.outcome.notes.append(
            f"Seat roster: {len(self.seats)} licensed developers"
            + (f", {removed} seats no longer listed were removed" if removed else "")
            + "."
        )


def team_add(org_id, identity_id, team: str, source: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO developer_teams (id, organization_id, developer_identity_id, team, "
            "source, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, now(), now()) "
            "ON CONFLICT DO NOTHING",
            [str(uuid.uuid4()), str(org_id), str(identity_id), team, source],
        )
