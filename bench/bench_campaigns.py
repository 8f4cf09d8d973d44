"""Creator pages at scale: the campaign list with 1,000 campaigns and a campaign's detail page
with 10,000 participants — median render time and SQL queries per page — next to a trivial
page of the same app (`/ping`) rendered the same way in the same run; and the wall time of
adding 10,000 participants by pasting them.

Pages are rendered in-process through Django's test client (the whole middleware stack,
tenant transaction included, without HTTP), so the figures are the app's own cost. The data
lives in a throw-away organisation of the dev database, deleted at the end.
"""

from __future__ import annotations

import statistics
import time
import uuid

from bench.lib import django_setup

ROUNDS = 15
CAMPAIGNS = 1_000
PARTICIPANTS = 10_000


def timed_get(client, url: str, rounds: int = ROUNDS) -> dict:
    from django.db import connections

    client.get(url)  # warm caches and templates
    times = []
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    # An execute wrapper, not CaptureQueriesContext: request_started resets the query log.
    with connections["default"].execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "queries": len(queries)}


def run() -> dict:
    django_setup()
    from django.test import Client

    from campaigns.models import Campaign, Participant
    from tap.orgs import services as org_services
    from tap.orgs.models import User
    from tap.tenancy import org_context

    suffix = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-{suffix}@bench.example", None, name="Bench")
    org = org_services.org_create(actor=user, name=f"bench-campaigns-{suffix}")
    try:
        with org_context(org.id):
            Campaign.objects.bulk_create(
                [
                    Campaign(
                        organization=org,
                        name=f"Campaign {i:04d}",
                        mission="Learn how engineers use AI tools day to day.",
                        mission_summary="Learn how engineers use AI tools.",
                        opening_question="How did you use AI tools this week?",
                        status=["draft", "active", "paused", "completed"][i % 4],
                    )
                    for i in range(CAMPAIGNS)
                ],
                batch_size=1000,
            )
            big = Campaign.objects.filter(status="active").first()
            statuses = ["invited", "opened", "in_progress", "completed", "declined"]
            Participant.objects.bulk_create(
                [
                    Participant(
                        organization=org,
                        campaign=big,
                        email=f"person{i}@bench.example",
                        status=statuses[i % len(statuses)],
                    )
                    for i in range(PARTICIPANTS)
                ],
                batch_size=2000,
            )
            paste_target = Campaign.objects.filter(status="draft").first()
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        base = f"/o/{org.slug}/campaigns/"
        figures = {
            "trivial_page": timed_get(client, "/ping"),
            "campaign_list_1000": timed_get(client, base),
            "campaign_detail_10000_participants": timed_get(client, f"{base}{big.pk}/"),
        }
        trivial = figures["trivial_page"]["median_ms"]
        for key in ("campaign_list_1000", "campaign_detail_10000_participants"):
            figures[key]["x_trivial"] = round(figures[key]["median_ms"] / trivial, 1)

        text = "\n".join(f"new{i}@bench.example" for i in range(PARTICIPANTS))
        started = time.perf_counter()
        response = client.post(f"{base}{paste_target.pk}/participants/add/", {"addresses": text})
        figures["paste_10000_participants_s"] = round(time.perf_counter() - started, 2)
        assert response.status_code == 302, response.status_code
        with org_context(org.id):
            added = Participant.objects.filter(campaign=paste_target).count()
        assert added == PARTICIPANTS, added
        return figures
    finally:
        org_services.org_delete(actor=user, org=org)
        user.delete(using="service")  # cascades into audit rows the app role may not touch
