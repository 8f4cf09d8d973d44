"""Metrics business actions: ingestion runs, identities and their merging, API keys.

Every state change is here; views, the API, the command and the worker call these."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from psycopg import errors as pg_errors

from campaigns.identities import participants_link
from metrics.ingest import Identities, Ingest, progress_key, team_add
from metrics.models import (
    CopilotSeat,
    DailyDeveloperMetric,
    DeveloperIdentity,
    DeveloperTeam,
    MetricApiKey,
    MetricIngestionRun,
)
from metrics.parsers import FORMAT_LABELS, Refused, TeamRow, open_metrics_file
from tap import outbox
from tap.orgs.services import audit
from tap.tenancy import org_context

logger = logging.getLogger(__name__)
Run = MetricIngestionRun
INGEST_TASK = "metrics.process_run"


# --- files -------------------------------------------------------------------------------------


@dataclass
class StoredFile:
    name: str
    path: str
    size: int
    sha256: str
    keep: bool = False  # the command's own files are never deleted

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "keep": self.keep,
        }


def upload_dir() -> Path:
    return Path(settings.TAP_METRICS_UPLOAD_DIR)


def _safe_name(name: str) -> str:
    base = os.path.basename(name or "upload")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:120] or "upload"


def file_store(*, org_id, name: str, chunks) -> StoredFile:
    """Write an upload (an iterable of byte chunks) where the worker can read it, hashing as
    it goes; refuse past the size limit."""
    limit = settings.TAP_METRICS_MAX_UPLOAD_BYTES
    folder = upload_dir() / str(org_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}-{_safe_name(name)}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ValidationError(
                        f"“{name}” is larger than the {filesizeformat(limit)} limit. Split the "
                        "export into several files (Copilot reports already come in parts) "
                        "and upload them together, or push them through the API."
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredFile(name=name[:200], path=str(path), size=size, sha256=digest.hexdigest())


def file_local(path: str) -> StoredFile:
    """A file the command reads in place."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return StoredFile(
        name=os.path.basename(path),
        path=os.path.abspath(path),
        size=size,
        sha256=digest.hexdigest(),
        keep=True,
    )


def files_discard(files: list[dict]) -> None:
    for stored in files:
        if not stored.get("keep"):
            Path(stored["path"]).unlink(missing_ok=True)


# --- runs --------------------------------------------------------------------------------------


def run_create(
    *,
    actor,
    org,
    files: list[StoredFile],
    source: str,
    skip_invalid: bool = False,
    api_key: MetricApiKey | None = None,
    enqueue: bool = True,
) -> MetricIngestionRun:
    """Record a pending run for `files` and (unless the caller processes it at once) queue
    its processing on the `ingest` queue."""
    if not files:
        raise ValidationError("Choose at least one file.")
    names: dict[str, str] = {}
    for stored in files:
        if stored.sha256 in names:
            # Parts of one report are summed: the same part twice would count twice.
            raise ValidationError(
                f"“{stored.name}” is the same file as “{names[stored.sha256]}”. "
                "Upload each part once."
            )
        names[stored.sha256] = stored.name
    sha, display = _fingerprint(files)
    run = Run(
        organization_id=org.id,
        uploaded_by=actor if actor is not None and actor.is_authenticated else None,
        api_key=api_key,
        source=source,
        file_name=display[:500],
        sha256=sha,
        files=[f.as_json() for f in files],
        skip_invalid=skip_invalid,
    )
    run.save(force_insert=True)
    audit(
        org_id=org.id,
        actor=actor,
        action="metrics.run_created",
        target=run,
        files=[f.name for f in files],
        source=source,
    )
    if enqueue:
        outbox.enqueue(INGEST_TASK, queue="ingest", org_id=org.id, run_id=str(run.pk))
    return run


def run_queue(
    *,
    actor,
    org,
    files: list[StoredFile],
    source: str,
    skip_invalid: bool = False,
    api_key: MetricApiKey | None = None,
) -> tuple[MetricIngestionRun, bool]:
    """Queue a run for uploaded files (the page, the API): (run, True). When the same files
    with the same options are already waiting or being processed — a second click on Upload,
    a nightly job that pushed twice — that run is the answer instead, and the new copies are
    deleted: (run, False). The database holds one such run per file (`runs_one_queued_per_file`),
    so two requests at once get one run too."""
    try:
        with transaction.atomic():
            run = run_create(
                actor=actor,
                org=org,
                files=files,
                source=source,
                skip_invalid=skip_invalid,
                api_key=api_key,
            )
        return run, True
    except IntegrityError:
        queued = (
            Run.objects.filter(
                sha256=_fingerprint(files)[0],
                skip_invalid=skip_invalid,
                status__in=[Run.Status.PENDING, Run.Status.PROCESSING],
            )
            .exclude(source=Run.Source.COMMAND)
            .first()
        )
        if queued is None:
            raise
        files_discard([f.as_json() for f in files])
        return queued, False


def _fingerprint(files: list[StoredFile]) -> tuple[str, str]:
    """A run's sha256 (of its one file, or of its files' own, in any order) and its name."""
    if len(files) == 1:
        return files[0].sha256, files[0].name
    sha = hashlib.sha256("".join(sorted(f.sha256 for f in files)).encode()).hexdigest()
    return sha, f"{files[0].name} + {len(files) - 1} more"


class _Abort(Exception):
    """Roll the run's transaction back; the run is recorded as failed afterwards."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def run_process(*, run_id, org_id) -> MetricIngestionRun | None:
    """Process a pending run, atomically. Returns the finished run (None if another worker
    had already claimed it). Never raises for bad input: the run records it."""
    with org_context(org_id):
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.PENDING).update(
            status=Run.Status.PROCESSING, started_at=timezone.now(), updated_at=timezone.now()
        )
        run = Run.objects.get(pk=run_id)
    if not claimed:
        return None
    ingest = None
    try:
        with org_context(org_id):
            ingest = _ingest(run)
            outcome = ingest.outcome
            if outcome.rows_rejected and not run.skip_invalid:
                raise _Abort(
                    f"{outcome.rows_rejected} line(s) could not be read, so nothing was stored. "
                    "Fix them and upload again, or choose “skip bad lines” to store the rest."
                )
            if outcome.rows_rejected and not outcome.rows_ingested:
                # Skipping bad lines left nothing: a failure, not a partial success.
                raise _Abort(
                    f"None of the {outcome.rows_rejected} line(s) could be read, so nothing "
                    "was stored. The errors below say why."
                )
            _record(
                run,
                ingest,
                status=(Run.Status.PARTIAL if outcome.rows_rejected else Run.Status.SUCCEEDED),
            )
            # Participants whose address belongs to a developer this run made known.
            participants_link()
    except (_Abort, Refused) as exc:
        message = exc.message if isinstance(exc, _Abort) else str(exc)
        with org_context(org_id):
            _record(run, ingest, status=Run.Status.FAILED, message=message, rolled_back=True)
    except Exception:
        logger.exception("metrics run failed", extra={"run_id": str(run_id)})
        with org_context(org_id):
            _record(
                run,
                None,
                status=Run.Status.FAILED,
                rolled_back=True,
                message="Tap hit an internal error while reading this upload; nothing was "
                "stored. The error has been logged.",
            )
    finally:
        files_discard(run.files)
        cache.delete(progress_key(run.pk))
    return run


def _ingest(run: MetricIngestionRun) -> Ingest:
    total = sum(f["size"] for f in run.files) or 1
    done = 0
    # The context stops the ingest's writer thread before the run's transaction ends.
    with Ingest(run, max_errors=settings.TAP_METRICS_MAX_ERRORS) as ingest:
        for stored in run.files:
            ingest.file = stored["name"]
            with open_metrics_file(
                stored["path"], max_decompressed_bytes=settings.TAP_METRICS_MAX_DECOMPRESSED_BYTES
            ) as parsed:
                if run.detected_format and parsed.format != run.detected_format:
                    raise Refused(
                        f"“{stored['name']}” is a {parsed.label}, but the first file is a "
                        f"{FORMAT_LABELS[run.detected_format]}. One upload holds files of one "
                        "report; upload the others separately."
                    )
                run.detected_format = parsed.format
                for count, item in enumerate(parsed.items):
                    ingest.add(item)
                    if count % 1000 == 0:
                        ingest.progress(done + parsed.position(), total)
            done += stored["size"]
        ingest.finish()
    return ingest


def _record(run, ingest, *, status, message="", rolled_back=False) -> None:
    outcome = ingest.outcome if ingest is not None else None
    run.status = status
    run.finished_at = timezone.now()
    if outcome is not None:
        run.rows_total = outcome.rows_total
        run.rows_rejected = outcome.rows_rejected
        run.errors = outcome.errors
        run.errors_omitted = outcome.errors_omitted
        if rolled_back:
            run.rows_ingested = run.rows_new = run.rows_replaced = run.rows_unchanged = 0
            run.identities_created = 0
        else:
            run.rows_ingested = outcome.rows_ingested
            run.rows_new = outcome.rows_new
            run.rows_replaced = outcome.rows_replaced
            run.rows_unchanged = outcome.rows_unchanged
            run.identities_created = outcome.identities_created
            message = _describe(run, outcome)
    run.message = message
    Run.objects.filter(pk=run.pk).update(
        status=run.status,
        detected_format=run.detected_format,
        finished_at=run.finished_at,
        rows_total=run.rows_total,
        rows_ingested=run.rows_ingested,
        rows_rejected=run.rows_rejected,
        rows_new=run.rows_new,
        rows_replaced=run.rows_replaced,
        rows_unchanged=run.rows_unchanged,
        identities_created=run.identities_created,
        errors=run.errors,
        errors_omitted=run.errors_omitted,
        message=run.message,
        updated_at=timezone.now(),
    )
    audit(
        org_id=run.organization_id,
        actor=None,
        action=f"metrics.run_{status}",
        target=run,
        rows_ingested=run.rows_ingested,
        rows_rejected=run.rows_rejected,
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _describe(run, outcome) -> str:
    parts = []
    if run.detected_format == "identity_map":
        parts.append(f"{outcome.rows_ingested} mapping line(s) applied.")
    elif outcome.rows_new or outcome.rows_replaced or outcome.rows_unchanged:
        if not outcome.rows_new and not outcome.rows_replaced:
            parts.append(
                "Nothing changed: every row was already stored with the same values "
                "(this data had been uploaded before)."
            )
        else:
            parts.append(
                f"{_n(outcome.rows_new, 'new row')}, {outcome.rows_replaced} replaced with "
                f"revised values, {outcome.rows_unchanged} unchanged."
            )
    elif outcome.rows_ingested:
        parts.append(f"{outcome.rows_ingested} line(s) applied.")
    else:
        parts.append("The file held no records.")
    previous = (
        Run.objects.filter(sha256=run.sha256, status__in=[Run.Status.SUCCEEDED, Run.Status.PARTIAL])
        .exclude(pk=run.pk)
        .order_by("-created_at")
        .first()
    )
    if previous is not None:
        parts.append(
            "The same file was uploaded before "
            f"({timezone.localtime(previous.created_at):%Y-%m-%d %H:%M})."
        )
    if outcome.identities_created:
        n = outcome.identities_created
        parts.append(f"{n} new developer {'identity' if n == 1 else 'identities'}.")
    if outcome.rows_rejected:
        parts.append(f"{outcome.rows_rejected} bad line(s) skipped.")
    parts.extend(outcome.notes)
    return " ".join(parts)


def runs_sweep() -> int:
    """Runs stuck in processing (the worker died mid-way; its transaction rolled back) are
    failed with a message, so nobody waits on a progress bar for ever, and their uploaded
    files deleted (the redelivered job finds the run claimed and leaves them)."""
    cutoff = timezone.now() - 2 * outbox.lease_for("ingest")
    # A system job across organisations: the service connection, as reliability.md says.
    runs = Run.all_objects.using("service")
    with transaction.atomic(using="service"):
        stuck = list(
            runs.select_for_update(skip_locked=True)
            .filter(status=Run.Status.PROCESSING, started_at__lt=cutoff)
            .values_list("pk", "files")
        )
        runs.filter(pk__in=[pk for pk, _files in stuck]).update(
            status=Run.Status.FAILED,
            finished_at=timezone.now(),
            message="The worker stopped while processing this upload; nothing was stored. "
            "Upload it again.",
            updated_at=timezone.now(),
        )
    for _pk, files in stuck:
        files_discard(files)
    return len(stuck)


# --- identities --------------------------------------------------------------------------------


def identity_map_row(identities: Identities, row: TeamRow, *, teams_named: set) -> str:
    """Apply one identity-map line; returns a conflict to report (nothing done) or ''."""
    login, email = row.login, row.email
    b = identities.by_email.get(email) if email else None
    a = identities.login(login, email_owner=b) if login else None
    if isinstance(a, str):
        return a
    if a and b and a != b:
        problem = _merge(keep_id=a, other_id=b, identities=identities)
        if problem:
            return problem
        pk = a
    elif a or b:
        pk = a or b
        identity = DeveloperIdentity.objects.get(pk=pk)
        if a and email and identity.email and identity.email.lower() != email:
            return f"conflict: login “{login}” is already linked to {identity.email}, not {email}"
        if (
            b
            and login
            and identity.github_login
            and login.lower() not in (identity.github_login.lower(), *identities.former.get(pk, ()))
        ):
            return (
                f"conflict: email {email} is already linked to login "
                f"“{identity.github_login}”, not “{login}”"
            )
        fields = {}
        if email and not identity.email:
            fields["email"] = email
        if login and not identity.github_login:
            fields["github_login"] = login
        if fields:
            identities._fill(pk, **fields)
    else:
        pk = identities._new(login=login, email=email, name=row.name)
        identities.flush()
    if row.name:
        DeveloperIdentity.objects.filter(pk=pk).update(display_name=row.name, reviewed=True)
    else:
        DeveloperIdentity.objects.filter(pk=pk).update(reviewed=True)
    if row.team:
        team_add(
            identities.org_id,
            pk,
            row.team,
            DeveloperTeam.Source.IDENTITY_MAP,
            replacing=teams_named,
        )
    return ""


def _merge(*, keep_id, other_id, identities: Identities | None = None) -> str:
    """Fold identity `other` into `keep`: metrics, seat, teams and identifiers move; a clash
    (both have data for the same day and tool, two GitHub ids) is reported, not guessed."""
    locked = DeveloperIdentity.objects.select_for_update()
    keep, other = locked.filter(pk=keep_id).first(), locked.filter(pk=other_id).first()
    if keep is None or other is None:
        return "one of the two was merged into another developer meanwhile; not merged"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM daily_developer_metrics a "
            "JOIN daily_developer_metrics b ON b.organization_id = a.organization_id "
            "AND b.date = a.date AND b.tool = a.tool "
            "WHERE a.organization_id = %s AND a.developer_identity_id = %s "
            "AND b.developer_identity_id = %s)",
            [str(keep.organization_id), str(keep.pk), str(other.pk)],
        )
        overlap = cursor.fetchone()[0]
    if overlap:
        return (
            f"conflict: {keep.label} and {other.label} both have data for the same day and tool; "
            "not merged"
        )
    for attr in ("github_login", "email", "api_key_name"):
        if (
            getattr(keep, attr)
            and getattr(other, attr)
            and (getattr(keep, attr).lower() != getattr(other, attr).lower())
        ):
            return (
                f"conflict: {keep.label} and {other.label} have different "
                f"{attr.replace('_', ' ')}s; not merged"
            )
    if keep.github_user_id and other.github_user_id and keep.github_user_id != other.github_user_id:
        return (
            f"conflict: {keep.label} and {other.label} have different GitHub user ids; not merged"
        )
    DailyDeveloperMetric.objects.filter(developer_identity=other).update(developer_identity=keep)
    if CopilotSeat.objects.filter(developer_identity=keep).exists():
        CopilotSeat.objects.filter(developer_identity=other).delete()
    else:
        CopilotSeat.objects.filter(developer_identity=other).update(developer_identity=keep)
    for team, source, as_of in DeveloperTeam.objects.filter(developer_identity=other).values_list(
        "team", "source", "as_of"
    ):
        team_add(keep.organization_id, keep.pk, team, source, as_of=as_of)
    aliases = (
        list(keep.aliases)
        + [v for v in (other.github_login, other.email, other.api_key_name) if v]
        + list(other.aliases)
    )
    moved = {
        attr: getattr(other, attr)
        for attr in ("github_login", "email", "api_key_name", "github_user_id")
        if getattr(other, attr) and not getattr(keep, attr)
    }
    # Campaign participants linked to `other` are linked to the developer it now is (deleting
    # it would unlink them: SET_NULL).
    other.participants.update(developer_identity=keep)
    other.delete()  # first: its identifiers are unique per organisation
    for attr, value in moved.items():
        setattr(keep, attr, value)
    keep.aliases = sorted(set(aliases), key=str.lower)
    if not keep.display_name or keep.display_name == keep.github_login:
        keep.display_name = other.display_name or keep.display_name
    keep.reviewed = True
    keep.save(update_fields=[*moved, "aliases", "display_name", "reviewed", "updated_at"])
    if identities is not None:
        identities.merged(other.pk, into=keep.pk)
    return ""


MERGE_LOCK_WAIT = "3s"


def _metrics_lock(org_id, *, wait: str) -> bool:
    """Take the organisation's metrics-writer lock (`tap_metrics_lock`, held to the end of
    the transaction), waiting at most `wait`. Returns False when another run holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [wait])
        try:
            with transaction.atomic():
                cursor.execute("SELECT tap_metrics_lock(%s)", [str(org_id)])
        except OperationalError as exc:
            if not isinstance(exc.__cause__, pg_errors.LockNotAvailable):
                raise
            return False
        finally:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    return True


def identity_merge(*, actor, org, keep: DeveloperIdentity, other: DeveloperIdentity) -> None:
    """An admin confirms that two identities are one developer."""
    if keep.pk == other.pk:
        raise ValidationError("Choose two different identities.")
    with transaction.atomic():
        # Ingestion's lock first, as ingestion takes it before the identities: never the two
        # orders at once (a deadlock). An upload holds it for up to a minute or two: say so
        # rather than keep the admin's page waiting.
        if not _metrics_lock(org.id, wait=MERGE_LOCK_WAIT):
            raise ValidationError(
                "An upload of metrics is being processed right now. Merge again once it has "
                "finished (Uploads shows its progress)."
            )
        labels = (keep.label, other.label)
        problem = _merge(keep_id=keep.pk, other_id=other.pk)
        if problem:
            raise ValidationError(problem[0].upper() + problem[1:] + ".")
        audit(
            org_id=org.id,
            actor=actor,
            action="metrics.identity_merged",
            target=keep,
            kept=labels[0],
            merged=labels[1],
        )


def identity_mark_reviewed(*, actor, org, identity: DeveloperIdentity) -> None:
    DeveloperIdentity.objects.filter(pk=identity.pk).update(
        reviewed=True, updated_at=timezone.now()
    )
    audit(org_id=org.id, actor=actor, action="metrics.identity_reviewed", target=identity)


# --- API keys ----------------------------------------------------------------------------------

KEY_PREFIX = "tap_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, actor, org, name: str) -> tuple[MetricApiKey, str]:
    """A new key; the secret is returned once and only its hash is kept."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the key a name (e.g. the job that uses it)."})
    name = name[:100]
    # Also what a form sent twice (a refresh after creating) runs into: no second key.
    taken = f"A live key is named “{name}” already. Revoke it first, or give this key another name."
    if MetricApiKey.objects.filter(name__iexact=name, revoked_at__isnull=True).exists():
        raise ValidationError({"name": taken})
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = MetricApiKey(
        organization_id=org.id,
        name=name,
        prefix=secret[:12],
        key_hash=hash_key(secret),
        created_by=actor,
    )
    try:
        with transaction.atomic():
            key.save(force_insert=True)
    except IntegrityError as exc:  # the same name at the same moment
        raise ValidationError({"name": taken}) from exc
    audit(org_id=org.id, actor=actor, action="metrics.api_key_created", target=key, name=key.name)
    return key, secret


def api_key_revoke(*, actor, org, key: MetricApiKey) -> None:
    if key.revoked_at:
        return
    MetricApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), updated_at=timezone.now()
    )
    audit(org_id=org.id, actor=actor, action="metrics.api_key_revoked", target=key, name=key.name)


@dataclass(frozen=True)
class ResolvedKey:
    organization_id: uuid.UUID
    org_slug: str
    key_id: uuid.UUID


def api_key_resolve(secret: str) -> ResolvedKey | None:
    """The live key a bearer secret names, through the one SECURITY DEFINER function (the
    request has no organisation until the key is known)."""
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 100:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tap_resolve_metric_api_key(%s)", [hash_key(secret)])
        row = cursor.fetchone()
    return ResolvedKey(*row) if row else None


def api_key_touch(key_id) -> None:
    """Note that the key was used — unless another request holds its row (an upload with
    this key, touching it at its end): waiting would hold this request, and the key's
    revocation behind it, for as long as that one takes. Its own touch says as much."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE metric_api_keys SET last_used_at = now() WHERE id = ("
            "SELECT id FROM metric_api_keys WHERE id = %s FOR UPDATE SKIP LOCKED)",
            [str(key_id)],
        )
