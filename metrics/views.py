"""Metrics pages, under /o/<org_slug>/metrics/: dashboards (members read aggregates; admins
and owners also see people), uploads with a live progress bar, identities, API keys."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from metrics import selectors, services
from metrics.charts import csv_response
from metrics.forms import ApiKeyForm, FilterForm, MergeForm, UploadForm
from metrics.models import DeveloperIdentity, MetricApiKey, MetricIngestionRun, tool_label
from metrics.parsers import FORMAT_LABELS
from metrics.parsers.tap_csv import DAILY_HEADER, IDENTITY_MAP_HEADER
from tap import ratelimit
from tap.orgs.decorators import PERMISSION_MESSAGES, org_view
from tap.orgs.views import too_many_requests
from tap.pagination import paginate

VIEW = "metrics.view_metrics"
PEOPLE = "metrics.view_people"
MANAGE = "metrics.manage_metrics"
KEYS = "metrics.manage_api_keys"
# The developers list, a page at a time (the CSV has everyone).
DEVELOPERS_PER_PAGE = 100

PERMISSION_MESSAGES.update(
    {
        PEOPLE: "Per-developer metrics are for admins and owners; members see aggregates.",
        MANAGE: "Only admins and owners can upload metrics and manage identities.",
        KEYS: "Only owners can create and revoke API keys.",
    }
)


def _filters(request):
    start, end = selectors.default_range(request.org.id, timezone.localdate())
    form = FilterForm(request.GET or None, tools=selectors.tools(request.org.id))
    return form, form.filters(start, end)


def _tool_choices(form):
    return [(t, tool_label(t)) for t in form.tools]


def _page(request, template, section, context):
    can = request.user.has_perm
    context.update(
        section="metrics",
        metrics_section=section,
        can_people=can(PEOPLE, request.org),
        can_manage=can(MANAGE, request.org),
        can_keys=can(KEYS, request.org),
    )
    return render(request, template, context)


def _chart_csv(request, charts, prefix):
    wanted = request.GET.get("csv")
    for chart in charts:
        if chart.id == wanted:
            return csv_response(f"{prefix}-{chart.id}.csv", chart.columns, chart.rows)
    raise Http404("No such chart.")


# --- dashboards ----------------------------------------------------------------------------------


@org_view(VIEW)
def overview(request):
    form, f = _filters(request)
    data = selectors.overview(request.org.id, f, people=request.user.has_perm(PEOPLE, request.org))
    if "csv" in request.GET:
        return _chart_csv(request, data["charts"], "overview")
    return _page(
        request,
        "metrics/overview.html",
        "overview",
        {"form": form, "f": f, **data, "tool_choices": _tool_choices(form)},
    )


@org_view(VIEW)
def cohorts(request):
    form, f = _filters(request)
    by = request.GET.get("by", "team")
    if by not in ("team", "adoption", "tier"):
        by = "team"
    data = selectors.cohorts(
        request.org.id, f, by=by, people=request.user.has_perm(PEOPLE, request.org)
    )
    if "csv" in request.GET:
        return _chart_csv(request, data["charts"], f"cohorts-{by}")
    return _page(
        request,
        "metrics/cohorts.html",
        "cohorts",
        {
            "form": form,
            "f": f,
            "by": by,
            "by_params": [("by", by)],
            **data,
            "tool_choices": _tool_choices(form),
        },
    )


@org_view(VIEW)
def seats(request):
    as_of = selectors.latest_day(request.org.id) or timezone.localdate()
    data = selectors.seat_utilisation(request.org.id, max(as_of, timezone.localdate()))
    if "csv" in request.GET:
        return _chart_csv(request, [data["chart"]], "seats")
    return _page(request, "metrics/seats.html", "seats", {**data, "as_of": as_of})


@org_view(VIEW)
def freshness(request):
    runs = selectors.recent_runs(10)
    return _page(
        request,
        "metrics/freshness.html",
        "freshness",
        {"tools": selectors.freshness(request.org.id), "runs": runs, "labels": FORMAT_LABELS},
    )


@org_view(VIEW)
def csv_template(request, kind):
    header = {"daily": DAILY_HEADER, "identity-map": IDENTITY_MAP_HEADER}.get(kind)
    if header is None:
        raise Http404("No such template.")
    example = {
        "daily": [["2026-04-01", "cursor", "mona", "mona@example.com", 12, 5, 40, 2]],
        "identity-map": [["mona", "mona@example.com", "Mona Lisa", "platform"]],
    }[kind]
    return csv_response(f"tap-{kind}-template.csv", list(header), example)


# --- people (admins) -----------------------------------------------------------------------------


@org_view(PEOPLE)
def developers(request):
    form, f = _filters(request)
    search = (request.GET.get("q") or "").strip()[:100]
    people = selectors.developer_list(request.org.id, f, search=search)
    if "csv" in request.GET:
        return csv_response(
            "developers.csv",
            [
                "Developer",
                "GitHub login",
                "Email",
                "Active days",
                "Suggestions",
                "Acceptances",
                "Acceptance rate (%)",
                "Lines accepted",
                "Sessions",
                "Last day",
            ],
            [
                [
                    p["name"],
                    p["github_login"],
                    p["email"],
                    p["days"],
                    p["suggestions"],
                    p["acceptances"],
                    p["rate"],
                    p["lines"],
                    p["sessions"],
                    p["last"] or "",
                ]
                for p in people
            ],
        )
    page = paginate(request, people, DEVELOPERS_PER_PAGE)
    tools = selectors.developer_tools(request.org.id, f, [p["id"] for p in page])
    for person in page:
        person["tools"] = tools.get(person["id"], [])
    return _page(
        request,
        "metrics/developers.html",
        "developers",
        {
            "form": form,
            "f": f,
            "page": page,
            "q": search,
            # The date and tool filters keep the search.
            "search_params": [("q", search)] if search else [],
            "tool_choices": _tool_choices(form),
        },
    )


@org_view(PEOPLE)
def developer(request, identity_id):
    identity = get_object_or_404(DeveloperIdentity.objects.all(), pk=identity_id)
    form, f = _filters(request)
    data = selectors.developer_detail(request.org.id, identity, f)
    if "csv" in request.GET:
        if request.GET["csv"] == "daily":
            return csv_response(
                "developer-daily.csv",
                [
                    "Day",
                    "Tool",
                    "Suggestions",
                    "Acceptances",
                    "Acceptance rate (%)",
                    "Lines accepted",
                    "Sessions",
                ],
                [
                    [
                        d["date"],
                        d["tool"],
                        d["suggestions"],
                        d["acceptances"],
                        d["rate"],
                        d["lines"],
                        d["sessions"],
                    ]
                    for d in data["daily"]
                ],
            )
        breakdowns = [chart for b in data["breakdowns"] for chart in b["charts"]]
        return _chart_csv(request, data["charts"] + breakdowns, "developer")
    return _page(
        request,
        "metrics/developer.html",
        "developers",
        {
            "identity": identity,
            "form": form,
            "f": f,
            **data,
            "tool_choices": _tool_choices(form),
        },
    )


@org_view(PEOPLE)
def identities(request):
    return _page(
        request,
        "metrics/identities.html",
        "identities",
        {"unmatched": selectors.unmatched_identities()[:300]},
    )


@org_view(MANAGE, methods=("POST",))
def identity_merge(request):
    form = MergeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the two identities to merge.")
        return redirect("metrics:identities", request.org.slug)
    scope = DeveloperIdentity.objects.all()
    keep = scope.filter(pk=form.cleaned_data["keep"]).first()
    other = scope.filter(pk=form.cleaned_data["other"]).first()
    if keep is None or other is None:  # a double submit, or another admin was quicker
        messages.error(request, "One of the two was merged already: nothing changed.")
        return redirect("metrics:identities", request.org.slug)
    try:
        services.identity_merge(actor=request.user, org=request.org, keep=keep, other=other)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{other.label} is now part of {keep.label}.")
    return redirect("metrics:identities", request.org.slug)


@org_view(MANAGE, methods=("POST",))
def identity_reviewed(request, identity_id):
    identity = get_object_or_404(DeveloperIdentity.objects.all(), pk=identity_id)
    services.identity_mark_reviewed(actor=request.user, org=request.org, identity=identity)
    messages.success(request, f"{identity.label} stays on its own.")
    return redirect("metrics:identities", request.org.slug)


# --- uploads -------------------------------------------------------------------------------------


@org_view(MANAGE, methods=("GET", "POST"))
def upload(request):
    if request.method == "POST":
        limit = ratelimit.Limit.parse(settings.TAP_METRICS_UPLOAD_RATE)
        wait = ratelimit.hit("metrics-upload", f"{request.org.id}:{request.user.pk}", limit)
        if wait:
            return too_many_requests(request, wait)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        stored = []
        try:
            for upload_file in form.cleaned_data["files"]:
                stored.append(
                    services.file_store(
                        org_id=request.org.id, name=upload_file.name, chunks=upload_file.chunks()
                    )
                )
            run, created = services.run_queue(
                actor=request.user,
                org=request.org,
                files=stored,
                source=MetricIngestionRun.Source.UPLOAD,
                skip_invalid=form.cleaned_data["skip_invalid"],
            )
        except ValidationError as exc:
            for item in stored:
                item.keep = False
            services.files_discard([s.as_json() for s in stored])
            form.add_error("files", exc)
        else:
            if not created:
                messages.info(
                    request, "This upload is already being processed: here is its progress."
                )
            return redirect("metrics:run", request.org.slug, run.pk)
    return _page(
        request,
        "metrics/upload.html",
        "upload",
        {"form": form, "runs": selectors.recent_runs(15), "labels": FORMAT_LABELS},
    )


def _run(run_id) -> MetricIngestionRun:
    return get_object_or_404(MetricIngestionRun.objects.select_related("uploaded_by"), pk=run_id)


def _progress(run):
    from django.core.cache import cache  # noqa: PLC0415

    from metrics.ingest import progress_key  # noqa: PLC0415

    state = cache.get(progress_key(run.pk)) or {}
    total = state.get("total") or 0
    percent = int(100 * state.get("bytes", 0) / total) if total else 0
    return {"percent": min(percent, 99), "rows": state.get("rows", 0)}


@org_view(MANAGE)
def run_detail(request, run_id):
    run = _run(run_id)
    return _page(
        request,
        "metrics/run.html",
        "upload",
        {"run": run, "progress": _progress(run), "labels": FORMAT_LABELS},
    )


@org_view(MANAGE)
def run_progress(request, run_id):
    run = _run(run_id)
    return render(
        request,
        "metrics/partials/run_status.html",
        {"run": run, "progress": _progress(run), "labels": FORMAT_LABELS},
    )


# --- API keys (owners) ---------------------------------------------------------------------------


@org_view(KEYS, methods=("GET", "POST"))
def api_keys(request):
    form = ApiKeyForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            key, secret = services.api_key_create(
                actor=request.user, org=request.org, name=form.cleaned_data["name"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            form = ApiKeyForm()
            # Shown once, in this response only; never stored, never in a redirect URL.
            response = _page(
                request,
                "metrics/api_keys.html",
                "api_keys",
                {
                    "form": form,
                    "keys": MetricApiKey.objects.all(),
                    "secret": secret,
                    "new_key": key,
                },
            )
            response["Cache-Control"] = "no-store"
            return response
    return _page(
        request,
        "metrics/api_keys.html",
        "api_keys",
        {"form": form, "keys": MetricApiKey.objects.all(), "secret": None},
    )


@org_view(KEYS, methods=("POST",))
def api_key_revoke(request, key_id):
    key = get_object_or_404(MetricApiKey.objects.all(), pk=key_id)
    services.api_key_revoke(actor=request.user, org=request.org, key=key)
    messages.success(request, f"The key “{key.name}” is revoked; requests with it now get 401.")
    return redirect("metrics:api_keys", request.org.slug)
