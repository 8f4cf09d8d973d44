import signal

from django.core.management.base import BaseCommand

from tap.outbox import relay_forever


class Command(BaseCommand):
    help = "Publish outbox jobs to Celery (woken by NOTIFY, polling as a fallback)."

    def add_arguments(self, parser):
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")

    def handle(self, *args, poll, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("outbox relay running")
        relay_forever(poll_seconds=poll, stop=lambda: stopping)
