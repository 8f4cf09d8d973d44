"""Shared fixtures: the test database, personas, and helpers for tenant-scoped work.

Personas (style.md): alice owns org A, bob is a member of A, dave an admin of A, charlie an
admin of org B. Data is created through the services, as the product creates it.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from tap.orgs import services
from tap.orgs.models import OrganizationMember, Role, User
from tap.tenancy import org_context

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    """Use the provisioned test database (roles and grants come from tap.devenv): migrate it
    as the owner and empty it. Tests then run as the app role, like production."""
    name = settings.DATABASES["default"]["NAME"]
    assert "test" in name, f"refusing to run tests against database {name!r}"
    with django_db_blocker.unblock():
        call_command("migrate", database="owner", verbosity=0)
        call_command("flush", interactive=False, verbosity=0)
        for alias in connections:
            connections[alias].close()


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.TAP_BASE_URL = "http://testserver"


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.contrib.contenttypes.models import ContentType
    from django.core.cache import cache

    cache.clear()
    # Transactional tests empty the database, content types included (tap's `flush`): forget
    # the ids cached by an earlier test, or the admin's log would point at deleted rows.
    ContentType.objects.clear_cache()


def make_user(email: str, name: str = "") -> User:
    return User.objects.create_user(email, PASSWORD, name=name)


def add_member(org, user, role) -> OrganizationMember:
    with org_context(org.id):
        return OrganizationMember.objects.create(organization=org, user=user, role=role)


@pytest.fixture
def alice(db):
    return make_user("alice@a.example", "Alice")


@pytest.fixture
def bob(db):
    return make_user("bob@a.example", "Bob")


@pytest.fixture
def dave(db):
    return make_user("dave@a.example", "Dave")


@pytest.fixture
def charlie(db):
    return make_user("charlie@b.example", "Charlie")


@pytest.fixture
def org_a(alice, bob, dave):
    org = services.org_create(actor=alice, name="Org A")
    add_member(org, bob, Role.MEMBER)
    add_member(org, dave, Role.ADMIN)
    return org


@pytest.fixture
def org_b(charlie):
    return services.org_create(actor=charlie, name="Org B")


@pytest.fixture
def fake_claude(settings):
    """The anthropic backend, with the real SDK talking to a fake Messages API on loopback."""
    from tap import ai
    from tests.fakes.anthropic_server import FakeAnthropic

    with FakeAnthropic() as fake:
        settings.ANTHROPIC_API_KEY = "sk-ant-test"
        settings.ANTHROPIC_BASE_URL = fake.url
        settings.TAP_AI_TIMEOUT_SECONDS = 5
        ai._backend.cache_clear()
        yield fake
    ai._backend.cache_clear()


@pytest.fixture
def client_for(client):
    """Log a persona in: `client_for(alice)`."""

    def login(user):
        client.force_login(user)
        return client

    return login
