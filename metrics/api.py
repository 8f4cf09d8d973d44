"""The metrics push API for nightly jobs, authenticated by an organisation API key.

    POST /api/v1/orgs/<slug>/metrics/uploads     multipart `files` (one or more), or a raw
                                                 body with ?filename=…; ?skip_invalid=1
    GET  /api/v1/orgs/<slug>/metrics/runs/<id>   the run's summary

`Authorization: Bearer tap_…`. Missing, wrong or revoked key → 401; a valid key used with
another organisation's slug → 404 (the same answer as an organisation that does not exist)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from metrics import services
from metrics.models import MetricApiKey, MetricIngestionRun
from tap import ratelimit
from tap.orgs.models import Organization
from tap.tenancy import activate_org


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="tap"'
    return response


def _throttled(request) -> JsonResponse | None:
    """Per client address, before the key is even looked at: guessing keys is slow."""
    limit = ratelimit.Limit.parse(settings.TAP_METRICS_API_RATE)
    wait = ratelimit.hit("metrics-api", ratelimit.client_ip(request), limit)
    if not wait:
        return None
    response = _error(429, f"Too many requests; try again in {wait} s.")
    response["Retry-After"] = str(wait)
    return response


def _authenticate(request, slug):
    """(organisation, key) or an error response."""
    throttled = _throttled(request)
    if throttled:
        return None, throttled
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None, _error(401, "Send an organisation API key: Authorization: Bearer <key>.")
    resolved = services.api_key_resolve(secret.strip())
    if resolved is None:
        return None, _error(401, "This API key is not valid (wrong or revoked).")
    if resolved.org_slug != slug:
        return None, _error(404, "No such organisation.")
    activate_org(resolved.organization_id)
    org = get_object_or_404(Organization.objects.all(), pk=resolved.organization_id)
    key = get_object_or_404(MetricApiKey.objects.all(), pk=resolved.key_id)
    return (org, key), None


def _stream(request):
    while chunk := request.read(1 << 16):
        yield chunk


@csrf_exempt
def upload(request, slug):
    if request.method != "POST":
        return _error(405, "POST a file.")
    found, error = _authenticate(request, slug)
    if error:
        return error
    org, key = found
    length = int(request.headers.get("Content-Length") or 0)
    if length > settings.TAP_METRICS_MAX_UPLOAD_BYTES * 20:
        return _error(413, "The request is larger than the upload limit.")
    stored = []
    try:
        if request.content_type == "multipart/form-data":
            uploads = request.FILES.getlist("files") or request.FILES.getlist("file")
            for upload_file in uploads:
                stored.append(
                    services.file_store(
                        org_id=org.id, name=upload_file.name, chunks=upload_file.chunks()
                    )
                )
        elif length:
            name = request.GET.get("filename") or "upload"
            stored.append(services.file_store(org_id=org.id, name=name, chunks=_stream(request)))
        if not stored:
            return _error(400, "No file: send multipart field `files`, or the file as the body.")
        run, created = services.run_queue(
            actor=None,
            org=org,
            files=stored,
            source=MetricIngestionRun.Source.API,
            skip_invalid=request.GET.get("skip_invalid") in ("1", "true", "yes"),
            api_key=key,
        )
    except ValidationError as exc:
        services.files_discard([s.as_json() for s in stored])
        status = 413 if "limit" in " ".join(exc.messages) else 400
        return _error(status, " ".join(exc.messages))
    # At the end: the row stays locked until the request's transaction ends, and the file
    # is in by now (a touch before reading it would hold the key for the whole upload).
    services.api_key_touch(key.pk)
    status_url = request.build_absolute_uri(
        reverse("metrics_api:run", kwargs={"slug": slug, "run_id": run.pk})
    )
    # `created` false: the same file was already queued, and this is its run.
    return JsonResponse(
        {
            "run_id": str(run.pk),
            "status": run.status,
            "status_url": status_url,
            "created": created,
        },
        status=202,
    )


def run_status(request, slug, run_id):
    if request.method != "GET":
        return _error(405, "GET only.")
    found, error = _authenticate(request, slug)
    if error:
        return error
    services.api_key_touch(found[1].pk)
    run = MetricIngestionRun.objects.filter(pk=run_id).first()
    if run is None:
        return _error(404, "No such run.")
    return JsonResponse(run.summary())
