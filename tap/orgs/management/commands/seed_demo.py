"""Demo data for `make run`: organisation `demo` with an owner, an admin and a member, and an
active campaign whose five participants have been invited but have not started.

Idempotent. The demo password is set only when DJANGO_DEBUG is true, so a production
database never gets accounts with a published password."""

from django.conf import settings
from django.core.management.base import BaseCommand

from campaigns import services as campaign_services
from campaigns.models import Campaign
from campaigns.participant_input import parse_pasted
from metrics import demo as metrics_demo
from tap.orgs import services
from tap.orgs.models import Organization, OrganizationMember, Role, User
from tap.tenancy import org_context

DEMO_PASSWORD = "tap-demo"  # noqa: S105 - published demo password, DEBUG only
DEMO_USERS = [
    ("owner@example.com", "Olive Owner", Role.OWNER),
    ("admin@example.com", "Adam Admin", Role.ADMIN),
    ("member@example.com", "Mira Member", Role.MEMBER),
]
DEMO_CAMPAIGN = "Developer experience with AI tools"
DEMO_MISSION = (
    "Understand how our engineers use AI coding assistants day to day: where they save time, "
    "where they get in the way, and what would make them more useful."
)
DEMO_OPENING_QUESTION = (
    "Think of the last time an AI tool helped you, or got in your way, while you were coding. "
    "What happened?"
)
DEMO_PARTICIPANTS = [f"p{n}@example.com" for n in range(1, 6)]


FINISHED = [
    (
        "f1@example.com",
        "Farah Ali",
        [
            (
                "I use Copilot mostly for tests. It writes the boring cases and I review them.",
                "What do you check before you accept a generated test?",
            ),
            ("That it fails for the right reason. Half the time it asserts nothing useful.", ""),
        ],
    ),
    (
        "f2@example.com",
        "Greg Olsen",
        [
            (
                "Claude Code saved me hours on a migration, but code review got slower because "
                "the diffs are huge.",
                "What would make those reviews easier?",
            ),
            ("Smaller pull requests, and a rule that the author explains what the AI wrote.", ""),
        ],
    ),
    (
        "f3@example.com",
        "Hana Sato",
        [
            (
                "Honestly I stopped using it. The suggestions for our internal framework are wrong "
                "and it wastes my time.",
                "Where did it go wrong most often?",
            ),
            ("Anything touching our deployment config. The docs for it are outdated too.", ""),
        ],
    ),
    (
        "f4@example.com",
        "Ivan Petrov",
        [
            (
                "Great for onboarding: I asked it to explain the billing service on my first week.",
                "What did it get right, and what not?",
            ),
            ("It explained the code well but could not know why things were built that way.", ""),
        ],
    ),
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
        with org_context(org.pk, user_id=owner.pk):
            self._campaign(org, owner)
        # Step 7 of the metrics issue: a few weeks of Copilot and Claude Code usage.
        if metrics_demo.seed(org):
            self.stdout.write("loaded demo metrics")
        self.stdout.write(
            self.style.SUCCESS(
                "demo ready: owner@example.com, admin@example.com, member@example.com"
                + (f" (password {DEMO_PASSWORD})" if settings.DEBUG else " (no password set)")
            )
        )

    def _campaign(self, org, owner) -> None:
        """The demo campaign, active, with p1…p5 invited (their emails go through the outbox
        to the development mail sink). Running again adds nothing."""
        campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
        if campaign is None:
            campaign = campaign_services.campaign_create(
                actor=owner,
                org=org,
                name=DEMO_CAMPAIGN,
                mission=DEMO_MISSION,
                opening_question=DEMO_OPENING_QUESTION,
            )
            self.stdout.write(f"created campaign {DEMO_CAMPAIGN!r}")
        if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.ARCHIVED):
            return  # someone finished it by hand: leave it be
        # Idempotent: addresses already there are skipped (and in an active campaign the
        # new ones are invited straight away).
        campaign_services.participants_add(
            actor=owner, campaign=campaign, parsed=parse_pasted("\n".join(DEMO_PARTICIPANTS))
        )
        if campaign.status == Campaign.Status.DRAFT:
            campaign_services.campaign_transition(
                actor=owner, campaign=campaign, to=Campaign.Status.ACTIVE
            )
        self._finished_conversations(org, campaign)

    def _finished_conversations(self, org, campaign) -> None:
        """A few participants who already finished, so analysis has something to read.
        Written directly (they were never emailed: this is history, not a new invitation)."""
        from datetime import timedelta  # noqa: PLC0415

        from django.utils import timezone  # noqa: PLC0415

        from campaigns.models import Participant  # noqa: PLC0415
        from conversations.models import Conversation, Message  # noqa: PLC0415

        started = timezone.now() - timedelta(days=2)
        for index, (email, name, answers) in enumerate(FINISHED):
            participant, created = Participant.objects.get_or_create(
                organization=org,
                campaign=campaign,
                email=email,
                defaults={
                    "name": name,
                    "status": Participant.Status.COMPLETED,
                    "invited_at": started,
                    "opened_at": started,
                },
            )
            if not created:
                continue
            at = started + timedelta(hours=index)
            conversation = Conversation.objects.create(
                organization=org,
                campaign=campaign,
                participant=participant,
                status=Conversation.Status.COMPLETED,
                end_reason="mission covered",
            )
            turns = [("bot", campaign.opening_question)]
            for answer, follow_up in answers:
                turns += [("participant", answer), ("bot", follow_up)]
            turns[-1] = ("bot", campaign.options.closing_message)
            for number, (sender, body) in enumerate(turns):
                at += timedelta(minutes=2)
                Message.objects.create(
                    organization=org,
                    conversation=conversation,
                    sender=sender,
                    body=body,
                    client_key=f"seed-{number}",
                    turn=(number + 1) // 2,  # bot 0 asks, participant 1 answers, bot 1 …
                    created_at=at,
                    model="offline" if sender == "bot" else "",
                )
            Conversation.objects.filter(pk=conversation.pk).update(
                last_activity_at=at,
                ended_at=at,
                participant_turns=len(answers),
                follow_ups_asked=len(answers) - 1,
            )
            Participant.objects.filter(pk=participant.pk).update(last_activity_at=at)
