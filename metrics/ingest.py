"""The one ingestion path: files → parsed records → identities → daily rows, seats, teams.

Used by the upload worker, the API worker and `manage.py ingest_metrics` through
`services.run_process`. Everything here runs inside the run's single transaction (the caller
owns it), so a run that fails leaves nothing behind.

Metric rows are COPYed into a temporary staging table in batches and folded into
`daily_developer_metrics` every `Ingest.FOLD_EVERY` rows, so memory stays constant whatever the
file size. The database work runs on a writer thread (`Writer`) while the main thread parses
the next batch. The semantics:

* rows for the same (identity, day, tool) within the run are **summed** (several files of one
  report, Claude Code's local and remote rows): a key seen again goes to a second staging
  table and is added to its first row at the end (`_fold_repeats`);
* a key that already exists with different values is **replaced** and counted;
* a key that exists with the same values is left alone and counted as unchanged — uploading
  the same file again changes nothing and the run says so;
* days that hold no earlier run's rows (the first load, a push of a new day) need none of
  that: they are inserted as they are (`_fresh`).

The rollups the dashboards read (migration 0008) take the run's new rows once, at the end
(`_release_rollups`, migration 0010), rather than at every fold; whatever a transaction still
holds at COMMIT is applied then (migration 0012).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from functools import partial

import orjson
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from metrics.extras import merge_extras
from metrics.models import CopilotSeat, DeveloperIdentity, DeveloperTeam, MetricIngestionRun
from metrics.parsers import MetricRow, Refused, Rejected, SeatRow, SeatTotal, TeamRow
from metrics.parsers.records import MAX_COUNT

logger = logging.getLogger(__name__)

BATCH = 5000
DAILY_FOREIGN_KEYS = (
    "daily_developer_metrics_developer_identity_id_tenant_fk",
    "daily_developer_metrics_ingestion_run_id_tenant_fk",
)
PROGRESS_EVERY_SECONDS = 0.5
# A seat's values as a seats file gives them (`SeatRow`'s fields of the same names).
SEAT_FIELDS = (
    "assigned_at",
    "last_activity_at",
    "last_activity_editor",
    "last_authenticated_at",
    "plan_type",
    "assigning_team",
    "pending_cancellation_date",
)


def progress_key(run_id) -> str:
    return f"metrics:run-progress:{run_id}"


@dataclass
class Outcome:
    rows_total: int = 0
    rows_ingested: int = 0
    rows_rejected: int = 0
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

    def __init__(self, org_id, *, before_write=lambda: None):
        self.org_id = org_id
        # Called before this class writes through the run's connection (the writer thread
        # must be idle then: see `Writer`).
        self.before_write = before_write
        self.by_login: dict[str, uuid.UUID] = {}
        self.by_github_id: dict[int, uuid.UUID] = {}
        self.by_email: dict[str, uuid.UUID] = {}
        self.by_api_key: dict[str, uuid.UUID] = {}
        # What each identity already has: a record may add an identifier it lacks, never
        # replace one silently.
        self.logins: dict[uuid.UUID, str] = {}
        self.emails: dict[uuid.UUID, str] = {}
        self.github_ids: dict[uuid.UUID, int] = {}
        # Former identifiers (lower-cased; a renamed login among them): an older file that
        # still names one is not a rename back, and a row naming only a login finds the
        # developer who had it (`login`).
        self.former: dict[uuid.UUID, set[str]] = {}
        self.by_former: dict[str, set[uuid.UUID]] = {}
        self.pending: list[DeveloperIdentity] = []
        self.created = 0
        rows = DeveloperIdentity.objects.values_list(
            "id", "github_login", "github_user_id", "email", "api_key_name", "aliases"
        )
        for pk, login, github_id, email, key, aliases in rows.iterator(chunk_size=5000):
            self._index(pk, login, github_id, email, key)
            for alias in aliases or ():
                # Merges list the other identity's email and API key name too: not logins.
                alias = str(alias)
                if "@" not in alias and alias.lower() != (key or "").lower():
                    self._remember_former(pk, alias)

    def _index(self, pk, login, github_id, email, key):
        if login:
            self.by_login[login.lower()] = pk
            self.logins[pk] = login
        if github_id:
            self.by_github_id[github_id] = pk
            self.github_ids[pk] = github_id
        if email:
            self.by_email[email.lower()] = pk
            self.emails[pk] = email
        if key:
            self.by_api_key[key.lower()] = pk

    def _remember_former(self, pk, identifier: str) -> None:
        lowered = identifier.lower()
        self.former.setdefault(pk, set()).add(lowered)
        self.by_former.setdefault(lowered, set()).add(pk)

    def merged(self, other, *, into) -> None:
        """Identity `other` was merged into `into` (`services._merge`): its identifiers, known
        and former, are `into`'s now."""
        for index in (self.by_login, self.by_email, self.by_api_key, self.by_github_id):
            for key, value in list(index.items()):
                if value == other:
                    index[key] = into
        for known in (self.logins, self.emails, self.github_ids):
            if other in known:
                known.setdefault(into, known.pop(other))
        for former in self.former.pop(other, ()):
            self._remember_former(into, former)
            self.by_former[former].discard(other)

    def login(self, login: str, *, email_owner=None) -> uuid.UUID | str | None:
        """The identity with this GitHub login now or, failing that, before a rename (for rows
        that name a login without a GitHub id: an older file may still carry the old one); a
        conflict if several developers had it; None if nobody. `email_owner`: the developer
        the row's email names, if any — a former login then counts only if it was theirs (if
        not, the row's developer is the login's new holder)."""
        lowered = login.lower()
        pk = self.by_login.get(lowered)
        if pk is not None:
            return pk
        owners = self.by_former.get(lowered, ())
        if email_owner is not None:
            return email_owner if email_owner in owners else None
        if len(owners) == 1:
            return next(iter(owners))
        if owners:
            return (
                f"the login “{login}” is no developer's in Tap now, and was the login of "
                f"{len(owners)} before; give the GitHub user id, or use the current login"
            )
        return None

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
            self.before_write()
            DeveloperIdentity.objects.bulk_create(self.pending, batch_size=1000)
            self.pending = []

    def _fill(self, pk, **fields) -> None:
        """Write identifiers of an existing identity: one it lacked (a login seen with its id
        …), or its new login after a rename (`_renamed`)."""
        self.flush()
        self.before_write()
        DeveloperIdentity.objects.filter(pk=pk).update(**fields, updated_at=timezone.now())
        self._index(
            pk,
            fields.get("github_login"),
            fields.get("github_user_id"),
            fields.get("email"),
            None,
        )

    def _renamed(self, pk, login: str) -> uuid.UUID | str:
        """GitHub user `pk` now goes by `login` (the numeric id is stable, logins change): the
        identity takes the new login and keeps the old one among its aliases."""
        other = self.by_login.get(login.lower())
        old = self.logins.get(pk, "")
        if other is not None and other != pk:
            return (
                f"GitHub user {self.github_ids[pk]} is “{old}” in Tap, and the login “{login}” "
                "belongs to another developer there; link or merge them on the identities page"
            )
        self.flush()
        self.before_write()
        aliases = DeveloperIdentity.objects.filter(pk=pk).values_list("aliases", flat=True)[0]
        if old and old not in aliases:
            aliases = [*aliases, old]
        self._fill(pk, github_login=login, aliases=aliases)
        if old:
            # The old login is free now: another GitHub user may take it, even in this run.
            if self.by_login.get(old.lower()) == pk:
                del self.by_login[old.lower()]
            self._remember_former(pk, old)
        return pk

    def github(self, login: str, github_id: int | None) -> uuid.UUID | str:
        """The identity of a GitHub user, or a conflict to report."""
        if github_id is not None:
            pk = self.by_github_id.get(github_id)
            if pk is not None:
                lowered = login.lower()
                if (
                    login
                    and lowered != self.logins.get(pk, "").lower()
                    and lowered not in self.former.get(pk, ())
                ):
                    return self._renamed(pk, login)
                return pk
        if login:
            # With a GitHub id (unknown, else found above), a former login is not enough: its
            # new holder may be someone else.
            pk = self.by_login.get(login.lower()) if github_id is not None else self.login(login)
            if isinstance(pk, str):
                return pk
            if pk is not None:
                if github_id is not None:
                    known = self.github_ids.get(pk)
                    if known is not None:  # and not `github_id`: it was looked up first
                        return (
                            f"the login “{login}” belongs to GitHub user {known} in Tap, not "
                            f"{github_id}: the login may have changed hands; check the "
                            "identities page"
                        )
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
        by_email = self.by_email.get(row.email)
        by_login = self.login(row.login, email_owner=by_email)
        if isinstance(by_login, str):
            return by_login
        if by_login and by_email and by_login != by_email:
            return (
                f"github_login “{row.login}” and email “{row.email}” belong to two different "
                "developers in Tap; link them with the identity map first"
            )
        pk = by_login or by_email
        if pk is None:
            return self._new(login=row.login, email=row.email)
        if by_login is None:
            if self.logins.get(pk):
                return (
                    f"email “{row.email}” belongs to the developer with github_login "
                    f"“{self.logins[pk]}” in Tap, not “{row.login}”; fix the row, or change "
                    "the link with the identity map"
                )
            self._fill(pk, github_login=row.login)
        elif by_email is None:
            if self.emails.get(pk):
                return (
                    f"github_login “{row.login}” belongs to the developer with email "
                    f"“{self.emails[pk]}” in Tap, not “{row.email}”; fix the row, or change "
                    "the link with the identity map"
                )
            self._fill(pk, email=row.email)
        return pk


class Writer:
    """The run's database writes — COPY batches into the staging table, fold it into the
    daily table — on a thread of their own, so PostgreSQL stores one batch while Python parses
    the next: with two cores a run takes about as long as the slower of the two, not their sum.

    The thread uses the run's connection, so everything stays in the run's one transaction.
    Only one thread talks to the connection at a time: the main thread calls `drain()` (wait
    until the writer is idle) before it uses the connection itself. The first error stops the
    writer and is raised in the main thread at its next `submit` or `drain`."""

    QUEUED = 4  # batches waiting: bounds memory whatever the file size

    def __init__(self, raw_connection):
        self.connection = raw_connection
        self.jobs: queue.Queue = queue.Queue(maxsize=self.QUEUED)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="metrics-writer", daemon=True)
        self.thread.start()
        TimeSlices.enter()
        self.slices = True

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    with self.connection.cursor() as cursor:
                        job(cursor)
            except BaseException as exc:  # handed to the main thread
                self.error = exc
            finally:
                self.jobs.task_done()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, job) -> None:
        self._raise()
        self.jobs.put(job)

    def drain(self) -> None:
        self.jobs.join()
        self._raise()

    def close(self) -> None:
        """Stop the thread (after the queued jobs, or at once if one failed)."""
        try:
            if self.thread.is_alive():
                self.jobs.put(None)
                self.thread.join()
        finally:
            if self.slices:
                self.slices = False
                TimeSlices.leave()


class TimeSlices:
    """Short GIL time slices while any writer lives.

    Each time PostgreSQL answers (a COPY buffer flushed, a fold done) a writer needs the GIL
    back, and the parser, always busy, gives it up only at the end of its time slice: 5 ms by
    default, several times per batch. With 0.2 ms slices the COPY's share of a run halved
    (200,000 Claude Code records: 2.3-3.4 s -> 1.0-1.2 s; the run 13.1-14.0 s -> 9.5-11.6 s). The
    interval belongs to the process: the first writer to start sets it, the last to stop puts
    the old one back."""

    SHORT = 0.0002
    _lock = threading.Lock()
    _writers = 0
    _before = 0.0

    @classmethod
    def enter(cls) -> None:
        with cls._lock:
            if cls._writers == 0:
                cls._before = sys.getswitchinterval()
                sys.setswitchinterval(cls.SHORT)
            cls._writers += 1

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._writers -= 1
            if cls._writers == 0:
                sys.setswitchinterval(cls._before)


def _copy_job(table: str, text: str):
    def job(cursor) -> None:
        with cursor.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(text)

    return job


class Ingest:
    """Accumulates one run's records; `finish()` writes the rest. Use as a context manager
    (the writer thread stops on the way out, whatever happens)."""

    # Rows staged before they are folded into the daily table (one INSERT … ON CONFLICT).
    FOLD_EVERY = 10_000

    def __init__(self, run: MetricIngestionRun, *, max_errors: int):
        self.run = run
        self.org_id = run.organization_id
        self.max_errors = max_errors
        self.outcome = Outcome()
        self.stage = f"metrics_stage_{uuid.uuid4().hex[:12]}"
        self.repeats_stage = f"{self.stage}_repeats"
        # The earlier values of the rows this run replaced (see `_fold_repeats`).
        self.replaced_stage = f"{self.stage}_replaced"
        self.unfolded = 0
        self.buffer: list[str] = []
        self.repeats: list[str] = []
        self.repeated = 0
        # Every (identity, day, tool) staged so far, as one int each: a key seen again (a
        # report in several parts, Claude Code's local and remote rows) goes to the repeats
        # table and is summed into the first one at the end.
        self.seen: set[int] = set()
        self.identity_numbers: dict[uuid.UUID, int] = {}
        self.tool_numbers: dict[str, int] = {}
        self.seats: dict[uuid.UUID, SeatRow] = {}
        # The GitHub organisation and enterprise the run's Copilot rows come from (see
        # `_check_scope`), and the last row's scope (checked once per change).
        self.scopes: dict[str, str] = {}
        self.last_scope: tuple = ()
        self.saw_seats = False
        # Seat entries read, and the most any listing said it holds (`total_seats`): a page
        # of a paginated listing must not remove the seats of the other pages.
        self.seat_entries = 0
        self.seats_total = 0
        # (identity, source) whose teams this run has restated (`team_add`).
        self.teams_named: set = set()
        # Each Copilot team the run lists, by lower-cased name (`_write_copilot_teams`).
        self.copilot_teams: dict[str, CopilotTeam] = {}
        self.file = ""
        self._last_progress = 0.0
        # (tool, day) pairs this run filled without merging (see `_fresh`).
        self.days_written: set[tuple[str, object]] = set()
        self.batch_days: set[tuple[str, object]] = set()
        self.unfolded_days: set[tuple[str, object]] = set()
        self.prefix = f"{self.org_id}\t{run.pk}\t"
        with connection.cursor() as cursor:
            # Runs of one organisation take turns (held until this run's transaction ends): a
            # second run waits here, then sees the first one's identities and rows, so they
            # never both create one developer or both count a day as fresh. Identity merges
            # and the rollup triggers take the same lock.
            cursor.execute("SELECT tap_metrics_lock(%s)", [str(self.org_id)])
            # Each fold's rows pass through the rollup triggers' transition tables: keep them
            # in memory (for this transaction only).
            cursor.execute("SET LOCAL work_mem = '64MB'")
            # The daily rows' foreign keys are deferred (Django's default), which would queue
            # two checks per row for COMMIT: seconds per 200,000 rows with the parser already
            # done and waiting. Checked at each fold instead, on the writer thread, while the
            # parser reads on; every identity and the run exist before a row names them.
            cursor.execute(f"SET CONSTRAINTS {', '.join(DAILY_FOREIGN_KEYS)} IMMEDIATE")
            # The run's new rows reach the rollups once, at the end (`_release_rollups`), not
            # at every fold: see migration 0010.
            cursor.execute("SELECT tap_rollups_hold()")
            for table in (self.stage, self.repeats_stage):
                cursor.execute(
                    f"CREATE TEMP TABLE {table} (organization_id uuid, ingestion_run_id uuid, "
                    "identity_id uuid, date date, tool text, suggestions bigint, "
                    # text: checked once, on the way into the daily table.
                    "acceptances bigint, completions bigint, sessions bigint, extras text) "
                    "ON COMMIT DROP"
                )
            cursor.execute(
                f"CREATE TEMP TABLE {self.replaced_stage} (id uuid PRIMARY KEY, "
                "suggestions bigint, acceptances bigint, completions bigint, sessions bigint, "
                "extras text, ingestion_run_id uuid, updated_at timestamptz) ON COMMIT DROP"
            )
        connection.ensure_connection()
        self.writer = Writer(connection.connection)
        try:
            self.identities = Identities(self.org_id, before_write=self.writer.drain)
        except BaseException:
            self.writer.close()  # no `with` block to stop it yet
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    # --- reading ---------------------------------------------------------------------------

    def reject(self, line: int, reason: str) -> None:
        self.outcome.rows_rejected += 1
        if len(self.outcome.errors) < self.max_errors:
            self.outcome.errors.append({"file": self.file, "line": line, "reason": reason})
        else:
            self.outcome.errors_omitted += 1

    def add(self, item) -> None:
        if isinstance(item, SeatTotal):  # not a line: what the listing says it holds
            self.seats_total = max(self.seats_total, item.total)
            return
        self.outcome.rows_total += 1
        if isinstance(item, Rejected):
            self.reject(item.line, item.reason)
        elif isinstance(item, MetricRow):
            self._metric(item)
        elif isinstance(item, SeatRow):
            self._seat(item)
        elif isinstance(item, TeamRow):
            self._team(item)

    def _key(self, pk: uuid.UUID, row: MetricRow) -> int:
        number = self.identity_numbers.get(pk)
        if number is None:
            number = self.identity_numbers[pk] = len(self.identity_numbers)
        tool = self.tool_numbers.get(row.tool)
        if tool is None:
            tool = self.tool_numbers[row.tool] = len(self.tool_numbers)
        return (number << 40) | (row.date.toordinal() << 16) | tool

    def _metric(self, row: MetricRow) -> None:
        if row.scope != self.last_scope:  # the same as the last record's, nearly always
            self._check_scope(row.scope)
        pk = self.identities.for_row(row)
        if isinstance(pk, str):
            self.reject(row.line, pk)
            return
        text = orjson.dumps(row.extras).decode()
        if "\\" in text:
            if "\\u0000" in text:
                # PostgreSQL cannot read NUL characters into jsonb (which re-uploads compare).
                self.reject(row.line, "the record contains a NUL character (\\u0000)")
                return
            # JSON text has no raw tabs or line breaks; backslashes are COPY's escape.
            text = text.replace("\\", "\\\\")
        self.outcome.rows_ingested += 1
        line = (
            f"{self.prefix}{pk}\t{row.date.isoformat()}\t{row.tool}\t{row.suggestions}\t"
            f"{row.acceptances}\t{row.completions}\t{row.sessions}\t{text}\n"
        )
        key = self._key(pk, row)
        if key in self.seen:
            self.repeats.append(line)
            if len(self.repeats) >= BATCH:  # a later part may repeat every key
                self._flush()
        else:
            self.seen.add(key)
            self.buffer.append(line)
            self.batch_days.add((row.tool, row.date))
            if len(self.buffer) >= BATCH:
                self._flush()

    def _flush(self) -> None:
        self.identities.flush()
        if self.buffer:
            self.writer.submit(
                partial(self._store, "".join(self.buffer), len(self.buffer), self.batch_days)
            )
            self.buffer = []
            self.batch_days = set()
        if self.repeats:
            self.writer.submit(_copy_job(self.repeats_stage, "".join(self.repeats)))
            self.repeated += len(self.repeats)
            self.repeats = []

    def _check_scope(self, scope: tuple) -> None:
        """All the run's Copilot records come from one organisation's (or enterprise's) report:
        the parts of one report are summed, two reports must not be (a developer's usage
        counts in full in each organisation they belong to). A record that does not say is
        taken to belong."""
        for kind, value in scope:
            known = self.scopes.setdefault(kind, value)
            if known != value:
                raise Refused(
                    f"These files come from the Copilot reports of two GitHub {kind}s ({known} "
                    f"and {value}). A developer's usage counts in full in each organisation "
                    "they belong to, so adding the reports up would count it twice. Upload "
                    "each report on its own (the parts of one report together)."
                )
        self.last_scope = scope

    def _seat(self, row: SeatRow) -> None:
        self.saw_seats = True
        self.seat_entries += 1
        pk = self.identities.github(row.login, row.github_id)
        if isinstance(pk, str):
            self.reject(row.line, pk)
            return
        self.outcome.rows_ingested += 1
        seen = self.seats.get(pk)
        # Enterprise listings name a person once per granting org or team: keep the latest.
        if seen is None or (
            row.last_activity_at is not None
            and (seen.last_activity_at is None or row.last_activity_at > seen.last_activity_at)
        ):
            self.seats[pk] = row

    def _team(self, row: TeamRow) -> None:
        self.writer.drain()
        if row.source == "identity_map":
            from metrics.services import identity_map_row  # noqa: PLC0415

            self.identities.flush()
            problem = identity_map_row(self.identities, row, teams_named=self.teams_named)
            if problem:
                self.reject(row.line, problem)
                return
            self.outcome.rows_ingested += 1
            return
        pk = self.identities.github(row.login, row.github_id)
        if isinstance(pk, str):
            self.reject(row.line, pk)
            return
        self.outcome.rows_ingested += 1
        team = self.copilot_teams.get(row.team.lower())
        if team is None or (row.day and (team.day is None or row.day > team.day)):
            # A report of several days: the team's members on its latest day.
            team = self.copilot_teams[row.team.lower()] = CopilotTeam(row.day)
        elif row.day and team.day and row.day < team.day:
            return
        team.members[pk] = row.team

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
        self.writer.submit(self._fold_rest)
        self.writer.drain()
        self.identities.flush()
        self.outcome.identities_created = self.identities.created
        if self.repeated:
            self._fold_repeats()
        if self.saw_seats:
            self._write_seats()
        if self.copilot_teams:
            self._write_copilot_teams()
        return self.outcome

    def _write_copilot_teams(self) -> None:
        """A user-teams file lists each of its teams' members as they are on its day: someone
        it no longer lists in a team has left it. Teams it does not list (another GitHub
        organisation's, or under GitHub's 5-member floor) are left alone; nobody is removed
        while lines were rejected (a member may be on one of them); and a team Tap knows from
        a later report than this one is left as it is (a file uploaded late must not undo a
        move)."""
        self.identities.flush()
        copilot = DeveloperTeam.Source.COPILOT
        older = []
        with connection.cursor() as cursor:
            for key, team in self.copilot_teams.items():
                cursor.execute(
                    "SELECT max(as_of) FROM developer_teams WHERE source = %s AND lower(team) = %s",
                    [copilot, key],
                )
                latest = cursor.fetchone()[0]
                if team.day and latest and team.day < latest:
                    older.append((next(iter(team.members.values())), latest))
                    continue
                members = [str(m) for m in team.members]
                cursor.execute(
                    "INSERT INTO developer_teams AS t (id, organization_id, "
                    "developer_identity_id, team, source, as_of, created_at, updated_at) "
                    "SELECT gen_random_uuid(), %s, m.id, m.team, %s, %s, now(), now() "
                    "FROM unnest(%s::uuid[], %s::text[]) AS m (id, team) "
                    "ON CONFLICT (organization_id, developer_identity_id, lower(team)) "
                    "DO UPDATE SET as_of = EXCLUDED.as_of, updated_at = now() "
                    "WHERE t.source = EXCLUDED.source",
                    [str(self.org_id), copilot, team.day, members, list(team.members.values())],
                )
                if not self.outcome.rows_rejected:
                    cursor.execute(
                        "DELETE FROM developer_teams WHERE source = %s AND lower(team) = %s "
                        "AND NOT (developer_identity_id = ANY(%s::uuid[]))",
                        [copilot, key, members],
                    )
        if older:
            names = ", ".join(name for name, _latest in older[:10])
            more = f" and {len(older) - 10} more" if len(older) > 10 else ""
            self.outcome.notes.append(
                f"Teams left as they were: {names}{more}. Tap has their members from a later "
                f"user-teams report (the latest of {older[0][1]:%d %b %Y}) than this one."
            )

    def _store(self, text: str, rows: int, days: set, cursor) -> None:
        """Stage one batch (on the writer thread); fold the staged rows every FOLD_EVERY."""
        _copy_job(self.stage, text)(cursor)
        self.unfolded += rows
        self.unfolded_days |= days
        if self.unfolded >= self.FOLD_EVERY:
            self._fold(cursor)

    def _fold_rest(self, cursor) -> None:
        if self.unfolded:
            self._fold(cursor)
        self._release_rollups(cursor)

    @staticmethod
    def _release_rollups(cursor) -> None:
        """The run's held rows into the rollups, in one pass; later writes of the run's
        transaction update them directly again."""
        cursor.execute("SELECT tap_rollups_release()")
        # Every row is checked by now; the rest of the transaction defers them as before.
        cursor.execute(f"SET CONSTRAINTS {', '.join(DAILY_FOREIGN_KEYS)} DEFERRED")

    def _fresh(self, cursor) -> bool:
        """Do the staged rows' days hold no rows of an earlier run (the first load, the push
        of a new day)? Then they need no merging. Days this run filled itself count as fresh:
        with the organisation's writer lock held, no other run adds to them."""
        unknown = self.unfolded_days - self.days_written
        if unknown:
            tools, dates = zip(*unknown, strict=True)
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM daily_tool_rollups r "
                "JOIN unnest(%s::text[], %s::date[]) AS b(tool, date) "
                "ON r.tool = b.tool AND r.date = b.date WHERE r.organization_id = %s)",
                [list(tools), list(dates), str(self.org_id)],
            )
            if cursor.fetchone()[0]:
                return False
        self.days_written |= unknown
        return True

    def _fold(self, cursor) -> None:
        """Staged rows (one per key: repeats are kept apart) into the daily table, in one
        statement (on the writer thread). Fresh days: a plain INSERT, every row new. Else
        new keys are inserted, keys with different values replaced, keys with the same
        values left alone (no write, not returned)."""
        columns = (
            "INSERT INTO daily_developer_metrics AS d (id, organization_id, "
            "developer_identity_id, date, tool, suggestions, acceptances, completions, "
            "sessions, extras, ingestion_run_id, created_at, updated_at) "
            "SELECT gen_random_uuid(), organization_id, identity_id, date, tool, "
            "least(suggestions, 2147483647), least(acceptances, 2147483647), "
            "least(completions, 2147483647), least(sessions, 2147483647), extras::json, "
            f"ingestion_run_id, now(), now() FROM {self.stage}"
        )
        if self._fresh(cursor):
            cursor.execute(columns)
            new, replaced, keys = cursor.rowcount, 0, cursor.rowcount
        else:
            cursor.execute(
                f"""
                WITH written AS (
                    {columns}
                    ON CONFLICT (organization_id, developer_identity_id, date, tool) DO UPDATE
                    SET suggestions = EXCLUDED.suggestions, acceptances = EXCLUDED.acceptances,
                        completions = EXCLUDED.completions, sessions = EXCLUDED.sessions,
                        extras = EXCLUDED.extras, ingestion_run_id = EXCLUDED.ingestion_run_id,
                        updated_at = now()
                    WHERE (d.suggestions, d.acceptances, d.completions, d.sessions)
                          IS DISTINCT FROM (EXCLUDED.suggestions, EXCLUDED.acceptances,
                          EXCLUDED.completions, EXCLUDED.sessions)
                       -- json has no equality: the same text is the same value; other text
                       -- may still be the same value (keys in another order, say).
                       OR (d.extras::text <> EXCLUDED.extras::text
                           AND d.extras::jsonb <> EXCLUDED.extras::jsonb)
                    RETURNING d.id, (xmax = 0) AS inserted
                ),
                -- The replaced rows' earlier values: every part of a WITH sees the table as it
                -- was before the statement.
                earlier AS (
                    INSERT INTO {self.replaced_stage}
                    SELECT o.id, o.suggestions, o.acceptances, o.completions, o.sessions,
                           o.extras::text, o.ingestion_run_id, o.updated_at
                    FROM written w JOIN daily_developer_metrics o ON o.id = w.id
                    WHERE NOT w.inserted
                )
                SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                       (SELECT count(*) FROM {self.stage})
                FROM written
                """
            )
            new, replaced, keys = cursor.fetchone()
        cursor.execute(f"TRUNCATE {self.stage}")
        self.unfolded = 0
        self.unfolded_days = set()
        self.outcome.rows_new += new
        self.outcome.rows_replaced += replaced
        self.outcome.rows_unchanged += keys - new - replaced

    def _fold_repeats(self) -> None:
        """Keys seen more than once in the run: the daily row holds the first one's values
        (written by this run, or an earlier run's identical row left alone); add the others to
        it. A row that was counted unchanged and now changes is counted as replaced; a row this
        run replaced whose parts add up to what it held before (a report in parts, uploaded
        again) gets its earlier row back and is counted unchanged."""
        run = str(self.run.pk)
        # Read a chunk of keys at a time (a server-side cursor): a report in many parts may
        # repeat every key of the run.
        # `cursor` is psycopg's own, as the writer's: with DEBUG on, Django's would keep each
        # statement's text, every chunk's values in it, until the run ends.
        with connection.chunked_cursor() as groups, connection.connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {self.repeats_stage}")
            # A cursor is planned for its first rows by default: here, a walk of the whole
            # daily table in id order, probing the repeats for each row (minutes at 100,000
            # repeats). Planned for all its rows, it joins the repeats to the daily rows.
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1")
            groups.execute(
                f"""
                SELECT d.id, d.ingestion_run_id = %s, d.suggestions, d.acceptances,
                       d.completions, d.sessions, d.extras::text,
                       sum(r.suggestions), sum(r.acceptances), sum(r.completions),
                       sum(r.sessions), array_agg(r.extras),
                       e.suggestions, e.acceptances, e.completions, e.sessions, e.extras,
                       e.ingestion_run_id, e.updated_at
                FROM {self.repeats_stage} r
                JOIN daily_developer_metrics d
                  ON d.organization_id = %s AND d.developer_identity_id = r.identity_id
                 AND d.date = r.date AND d.tool = r.tool
                LEFT JOIN {self.replaced_stage} e ON e.id = d.id
                GROUP BY d.id, e.id
                """,
                [run, str(self.org_id)],
            )
            cursor.execute("RESET cursor_tuple_fraction")
            while chunk := groups.fetchmany(BATCH):
                changed = []
                for pk, ours, *values in chunk:
                    before, extras_text = values[:4], values[4]
                    added, extras_list = values[5:9], values[9]
                    earlier, earlier_extras, earlier_run, earlier_at = (
                        values[10:14],
                        *values[14:],
                    )
                    # int: the sums come back as numeric (Decimal), and one array must hold
                    # values of one type.
                    after = [int(min(MAX_COUNT, a + b)) for a, b in zip(before, added, strict=True)]
                    extras = json.loads(extras_text)
                    total = extras
                    for text in extras_list:
                        total = merge_extras(total, json.loads(text))
                    if after == before and total == extras:
                        continue
                    if (
                        earlier_run is not None
                        and after == earlier
                        and total == json.loads(earlier_extras)
                    ):
                        changed.append((pk, *after, earlier_extras, str(earlier_run), earlier_at))
                        self.outcome.rows_replaced -= 1
                        self.outcome.rows_unchanged += 1
                        continue
                    # orjson, as the staged rows: the same values are the same text.
                    changed.append((pk, *after, orjson.dumps(total).decode(), run, None))
                    if not ours:
                        self.outcome.rows_unchanged -= 1
                        self.outcome.rows_replaced += 1
                if changed:
                    # One statement per chunk: the rollup triggers run once per statement.
                    cursor.execute(
                        "UPDATE daily_developer_metrics d SET suggestions = v.suggestions, "
                        "acceptances = v.acceptances, completions = v.completions, "
                        "sessions = v.sessions, extras = v.extras::json, "
                        "ingestion_run_id = v.run, updated_at = coalesce(v.at, now()) "
                        "FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::bigint[], "
                        "%s::bigint[], %s::text[], %s::uuid[], %s::timestamptz[]) "
                        "AS v (id, suggestions, acceptances, completions, sessions, extras, "
                        "run, at) WHERE d.id = v.id",
                        list(map(list, zip(*changed, strict=True))),
                    )

    def _write_seats(self) -> None:
        """A seats file is the whole roster at one moment: it replaces the previous one."""
        now = timezone.now()
        existing = {
            seat["developer_identity_id"]: seat
            for seat in CopilotSeat.objects.values("id", "developer_identity_id", *SEAT_FIELDS)
        }
        fresh, changed = [], []
        unchanged = 0
        for pk, row in self.seats.items():
            values = {name: getattr(row, name) for name in SEAT_FIELDS}
            seat = CopilotSeat(
                organization_id=self.org_id,
                developer_identity_id=pk,
                ingestion_run_id=self.run.pk,
                updated_at=now,
                **values,
            )
            before = existing.get(pk)
            if before is None:
                fresh.append(seat)
            elif all(before[name] == values[name] for name in SEAT_FIELDS):
                unchanged += 1  # the same roster again: nothing to write
            else:
                seat.id = before["id"]
                changed.append(seat)
        CopilotSeat.objects.bulk_create(fresh, batch_size=1000)
        CopilotSeat.objects.bulk_update(
            changed, [*SEAT_FIELDS, "ingestion_run_id", "updated_at"], batch_size=1000
        )
        unlisted = CopilotSeat.objects.exclude(developer_identity_id__in=self.seats)
        if self.seat_entries < self.seats_total:
            kept = unlisted.count()
            removal = (
                f", {kept} seats not listed were kept (the file lists {self.seat_entries} of "
                f"the {self.seats_total} seats it counts: one page of several? Upload every "
                "page in one run to remove them)"
                if kept
                else ""
            )
        elif self.outcome.rows_rejected:
            # Lines were skipped: a seat missing here may be on one of them. Keep them all
            # until a roster is read in full.
            kept = unlisted.count()
            removal = (
                f", {kept} seats not listed were kept (with lines rejected, the roster may be "
                "incomplete; upload it again in full to remove them)"
                if kept
                else ""
            )
        else:
            removed, _ = unlisted.delete()
            removal = f", {removed} seats no longer listed were removed" if removed else ""
        self.outcome.rows_new += len(fresh)
        self.outcome.rows_replaced += len(changed)
        self.outcome.rows_unchanged += unchanged
        self.outcome.notes.append(f"Seat roster: {len(self.seats)} licensed developers{removal}.")


@dataclass
class CopilotTeam:
    """One team of a Copilot user-teams report: its day and its members ({identity: the
    team's name as given})."""

    day: date | None = None
    members: dict = field(default_factory=dict)


def team_add(
    org_id, identity_id, team: str, source: str, *, replacing: set | None = None, as_of=None
) -> None:
    """Record a team membership. With `replacing` (an identity map: Tap's own statement of a
    developer's teams), the first time a run names the developer the teams an earlier map gave
    them go, so someone who moved team is no longer counted in the old one's cohort; further
    lines add to the new list. `replacing` is the run's set of developers seen so far. Without
    it (merges) the membership is only added."""
    with connection.cursor() as cursor:
        if replacing is not None and (identity_id, source) not in replacing:
            replacing.add((identity_id, source))
            cursor.execute(
                "DELETE FROM developer_teams WHERE developer_identity_id = %s AND source = %s",
                [str(identity_id), source],
            )
        cursor.execute(
            "INSERT INTO developer_teams (id, organization_id, developer_identity_id, team, "
            "source, as_of, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, now(), "
            "now()) ON CONFLICT DO NOTHING",
            [str(uuid.uuid4()), str(org_id), str(identity_id), team, source, as_of],
        )
