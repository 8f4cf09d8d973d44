"""Demo data for `make run`: organisation `demo` with an owner, an admin and a member.

Idempotent. The demo password is set only when DJANGO_DEBUG is true, so a production
database never gets accounts with a published password."""

from django.conf import settings
from django.core.management.base import BaseCommand

from tap.orgs import services
from tap.orgs.models import Organization, OrganizationMember, Role, User
from tap.tenancy import org_context

DEMO_PASSWORD = "tap-demo"  # noqa: S105 - published demo password, DEBUG only
DEMO_USERS = [
    ("owner@example.com", "Olive Owner", Role.OWNER),
    ("admin@example.com", "Adam Admin", Role.ADMIN),
    ("member@example.com", "Mira Member", Role.MEMBER),
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation and its users."

    def handle(self, *args, **options):
        users = {}
        for email, name, _role in DEMO_USERS:
            user = User.objects.filter(email__iexact=email).first()
            if user is None:
                user = User.objects.create_user(email, None, name=name)
            if settings.DEBUG:
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
            users[email] = user
        owner = users["owner@example.com"]
        with org_context(None, user_id=owner.pk):
            org = Organization.objects.filter(slug="demo").first()
        if org is None:
            org = services.org_create(actor=owner, name="Demo", slug="demo")
            self.stdout.write("created organisation demo")
        with org_context(org.pk, user_id=owner.pk):
            for email, _name, role in DEMO_USERS:
                OrganizationMember.objects.get_or_create(
                    organization=org, user=users[email], defaults={"role": role}
                )
        self.stdout.write(
            self.style.SUCCESS(
                "demo ready: owner@example.com, admin@example.com, member@example.com"
                + (f" (password {DEMO_PASSWORD})" if settings.DEBUG else " (no password set)")
            )
        )
