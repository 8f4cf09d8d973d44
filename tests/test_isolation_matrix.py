"""Every organisation-scoped URL, discovered from the URL conf (new views are covered the day
they are added): another org's user gets 404, an anonymous visitor the login page, and a
member 403 on every write."""

from __future__ import annotations

import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

# Writes a plain member may make (everything else that accepts POST needs admin or owner).
MEMBER_WRITES = {"orgs:leave"}

SAMPLE_VALUES = {"uuid": lambda: str(uuid.uuid4()), "int": lambda: "1"}


def org_scoped_patterns():
    """(name, kwarg converters, view) for every named pattern whose route holds org_slug."""
    found = []

    def walk(patterns, namespace, converters):
        for p in patterns:
            here = {**converters, **p.pattern.converters}
            if isinstance(p, URLResolver):
                ns = (
                    f"{namespace}:{p.namespace}"
                    if namespace and p.namespace
                    else (p.namespace or namespace)
                )
                walk(p.url_patterns, ns, here)
            elif isinstance(p, URLPattern) and "org_slug" in here:
                assert p.name, f"org-scoped pattern {p.pattern} has no name"
                found.append((f"{namespace}:{p.name}" if namespace else p.name, here, p.callback))

    walk(get_resolver().url_patterns, "", {})
    return found


PATTERNS = org_scoped_patterns()
IDS = [name for name, _c, _v in PATTERNS]


def url_for(name, converters, org):
    kwargs = {}
    for key, converter in converters.items():
        if key == "org_slug":
            kwargs[key] = org.slug
        else:
            kind = type(converter).__name__.replace("Converter", "").lower()
            kwargs[key] = SAMPLE_VALUES.get(kind, lambda: "x")()
    return reverse(name, kwargs=kwargs)


def test_the_matrix_found_the_org_pages():
    assert len(PATTERNS) >= 10
    assert "orgs:members" in IDS


@pytest.mark.parametrize(("name", "converters", "view"), PATTERNS, ids=IDS)
def test_every_org_view_declares_its_permission(name, converters, view):
    assert hasattr(view, "tap_permissions"), f"{name} is not wrapped in @org_view"


@pytest.mark.parametrize(("name", "converters", "view"), PATTERNS, ids=IDS)
def test_another_orgs_user_gets_404(name, converters, view, org_a, org_b, charlie, client):
    client.force_login(charlie)
    url = url_for(name, converters, org_a)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404


@pytest.mark.parametrize(("name", "converters", "view"), PATTERNS, ids=IDS)
def test_anonymous_gets_the_login_page(name, converters, view, org_a, client):
    url = url_for(name, converters, org_a)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(("name", "converters", "view"), PATTERNS, ids=IDS)
def test_a_member_cannot_write(name, converters, view, org_a, bob, client):
    client.force_login(bob)
    url = url_for(name, converters, org_a)
    methods = view.tap_permissions["methods"]
    status = client.post(url).status_code
    if "POST" not in methods:
        assert status == 405
    elif name in MEMBER_WRITES:
        assert status in (302, 200)
    else:
        assert status == 403


@pytest.mark.parametrize(("name", "converters", "view"), PATTERNS, ids=IDS)
def test_an_unknown_org_is_404_for_everyone(name, converters, view, org_a, alice, client):
    client.force_login(alice)
    url = url_for(name, converters, org_a).replace(f"/o/{org_a.slug}/", "/o/no-such-org/")
    assert client.get(url).status_code == 404
