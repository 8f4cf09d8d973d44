"""Sign up, log in (rate-limited), password reset through the outbox."""

import re

import pytest
from django.core import mail

from tap import outbox
from tap.models import OutboxJob
from tap.orgs.models import User
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db(databases=["default", "service"])


def test_signup_creates_an_account_logs_in_and_asks_for_an_org(client):
    response = client.post(
        "/accounts/signup/",
        {"name": "Erin", "email": "Erin@Example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/orgs/new/"
    user = User.objects.get()
    assert user.email == "erin@example.com"
    assert client.get("/orgs/new/").status_code == 200


def test_signup_refuses_a_taken_address_in_any_case(client):
    make_user("erin@example.com")
    response = client.post(
        "/accounts/signup/",
        {"email": "ERIN@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_signup_refuses_a_weak_or_mismatched_password(client):
    response = client.post(
        "/accounts/signup/",
        {"email": "erin@example.com", "password1": "12345678", "password2": "12345678"},
    )
    assert "too common" in response.content.decode()
    response = client.post(
        "/accounts/signup/",
        {"email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )
    assert "differ" in response.content.decode()
    assert User.objects.count() == 0


def test_signup_next_cannot_redirect_off_site(client):
    response = client.post(
        "/accounts/signup/?next=https://evil.example/",
        {"email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response["Location"] == "/orgs/new/"


def test_login_is_case_insensitive(client):
    make_user("erin@example.com")
    response = client.post(
        "/accounts/login/", {"username": "ERIN@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302


def test_login_attempts_are_rate_limited(client, settings):
    settings.TAP_LOGIN_RATE = "3/300"
    make_user("erin@example.com")
    for _ in range(3):
        response = client.post(
            "/accounts/login/", {"username": "erin@example.com", "password": "wrong"}
        )
        assert response.status_code == 200
    response = client.post(
        "/accounts/login/", {"username": "erin@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many attempts" in response.content.decode()


def test_failed_logins_are_limited_per_account_from_any_address(client, settings):
    """Guesses spread over many addresses (one per request from an IPv6 block, a botnet):
    each address is under its limit, the account's failures are not."""
    settings.TAP_LOGIN_FAILURES_PER_ACCOUNT = "3/900"
    make_user("erin@example.com")
    for n in range(3):
        response = client.post(
            "/accounts/login/",
            {"username": "Erin@example.com", "password": "wrong"},
            REMOTE_ADDR=f"198.51.100.{n + 1}",
        )
        assert response.status_code == 200
    response = client.post(
        "/accounts/login/",
        {"username": "erin@example.com", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.77",
    )
    assert response.status_code == 429
    # Another account is not held.
    make_user("finn@example.com")
    ok = client.post("/accounts/login/", {"username": "finn@example.com", "password": PASSWORD})
    assert ok.status_code == 302


def test_an_ipv6_client_is_limited_by_its_64_block(rf):
    from tap.ratelimit import client_ip

    a = client_ip(rf.get("/", REMOTE_ADDR="2001:db8:1:2::1"))
    b = client_ip(rf.get("/", REMOTE_ADDR="2001:db8:1:2:ffff:1:2:3"))
    c = client_ip(rf.get("/", REMOTE_ADDR="2001:db8:1:3::1"))
    assert a == b == "2001:db8:1:2::/64"
    assert c != a
    assert client_ip(rf.get("/", REMOTE_ADDR="::ffff:192.0.2.7")) == "192.0.2.7"
    assert client_ip(rf.get("/", REMOTE_ADDR="192.0.2.7")) == "192.0.2.7"


def test_signups_are_rate_limited_per_client(client, settings):
    """Each answer says whether an address has an account: not for free, nor in bulk."""
    settings.TAP_SIGNUP_RATE = "2/3600"
    make_user("erin@example.com")
    for _ in range(2):
        response = client.post(
            "/accounts/signup/",
            {"email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD},
        )
        assert response.status_code == 200
    response = client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not User.objects.filter(email="new@example.com").exists()


def test_login_fails_open_when_redis_is_down(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        }
    }
    make_user("erin@example.com")
    response = client.post(
        "/accounts/login/", {"username": "erin@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_password_reset_is_queued_then_sent_with_a_working_link(client):
    make_user("erin@example.com")
    response = client.post("/accounts/password/reset/", {"email": "ERIN@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []  # never sent from the request
    assert OutboxJob.objects.using("service").filter(task="orgs.send_password_reset").count() == 1
    outbox.run_due_inline()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["erin@example.com"]
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", message.body).group(1)
    response = client.get(link, follow=True)
    assert "Choose a new password" in response.content.decode()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_password_reset_for_an_unknown_address_says_the_same_and_sends_nothing(client):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    outbox.run_due_inline()
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_double_click_on_create_makes_one_organisation(client):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from tap.orgs.selectors import orgs_for_user as mine
    from tap.tenancy import org_context

    def orgs_for_user(user):
        with org_context(None, user_id=user.pk):
            return mine(user=user)

    user = make_user("erin@example.com")
    client.force_login(user)
    first = client.post("/orgs/new/", {"name": "Acme"})
    second = client.post("/orgs/new/", {"name": "Acme"})
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == "/o/acme/"
    assert [o.slug for o in orgs_for_user(user=user)] == ["acme"]
    # Another name, or the same one later, is another organisation.
    client.post("/orgs/new/", {"name": "Acme Labs"})
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        again = client.post("/orgs/new/", {"name": "Acme"})
    assert again["Location"].startswith("/o/acme-")
    assert len(orgs_for_user(user=user)) == 3
