"""The campaign list: counts, filters, archived hidden by default, paging, constant queries."""

import pytest

from campaigns.models import Campaign
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db


def test_the_list_shows_status_summary_counts_and_rate(org_a, alice, client_for):
    made = creator.campaign(org_a, alice, status="active", mission_summary="Learn about tools.")
    creator.participants_in_bulk(
        org_a, made, 8, statuses=("invited", "in_progress", "completed", "completed")
    )
    response = client_for(alice).get(creator.url("list", org_a))
    assert response.status_code == 200
    (row,) = response.context["page"]
    assert (row.invited_count, row.started_count, row.completed_count) == (8, 6, 4)
    assert row.completion_rate == 50
    html = response.content.decode()
    assert "Learn about tools." in html
    assert "50%" in html
    assert ">Active</span>" in html


def test_members_can_read_but_see_no_new_button(org_a, alice, bob, client_for):
    creator.campaign(org_a, alice)
    response = client_for(bob).get(creator.url("list", org_a))
    assert response.status_code == 200
    assert "New campaign" not in response.content.decode()


def test_filter_by_status_and_search_by_name(org_a, alice, client_for):
    creator.campaign(org_a, alice, name="Onboarding survey", status="active")
    creator.campaign(org_a, alice, name="Tooling", status="paused")
    client = client_for(alice)

    def names(**query):
        page = client.get(creator.url("list", org_a, **query)).context["page"]
        return sorted(c.name for c in page)

    assert names() == ["Onboarding survey", "Tooling"]
    assert names(status="paused") == ["Tooling"]
    assert names(q="onboard") == ["Onboarding survey"]
    assert names(q="nothing like it") == []
    assert client.get(creator.url("list", org_a, status="bogus")).status_code == 200


def test_archived_campaigns_are_hidden_until_asked_for(org_a, alice, client_for):
    creator.campaign(org_a, alice, name="Current")
    creator.campaign(org_a, alice, name="Old", status="archived")
    client = client_for(alice)

    def names(**query):
        return sorted(
            c.name for c in client.get(creator.url("list", org_a, **query)).context["page"]
        )

    assert names() == ["Current"]
    assert names(archived="1") == ["Current", "Old"]
    assert names(status="archived") == ["Old"]


def test_another_orgs_campaigns_never_show(org_a, org_b, alice, charlie, client_for):
    creator.campaign(org_b, charlie, name="Secret plans")
    response = client_for(alice).get(creator.url("list", org_a))
    assert "Secret plans" not in response.content.decode()


def test_the_list_is_paginated(org_a, alice, client_for):
    creator.campaigns_in_bulk(org_a, 30)
    client = client_for(alice)
    first = client.get(creator.url("list", org_a)).context["page"]
    second = client.get(creator.url("list", org_a, page=2)).context["page"]
    assert (len(first), len(second), first.paginator.count) == (25, 5, 30)


QUERY_BOUND = 13


@pytest.mark.parametrize("count", [10, 1000])
def test_query_count_does_not_grow_with_campaigns(
    count, org_a, alice, client_for, django_assert_max_num_queries
):
    creator.campaigns_in_bulk(org_a, count)
    with org_context(org_a.id):
        first = Campaign.objects.order_by("-created_at", "-pk").first()
    creator.participants_in_bulk(org_a, first, 20, statuses=("invited", "completed"))
    client = client_for(alice)
    with django_assert_max_num_queries(QUERY_BOUND):
        response = client.get(creator.url("list", org_a))
    assert response.status_code == 200
    assert len(response.context["page"]) == min(count, 25)
