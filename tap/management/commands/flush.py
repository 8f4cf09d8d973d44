"""`flush` through the owner connection.

The app role may not TRUNCATE (TRUNCATE ignores row-level security), so emptying the
database — which transactional tests do after each test — runs as the table owner."""

from django.core.management.commands.flush import Command as FlushCommand


class Command(FlushCommand):
    def handle(self, **options):
        options["database"] = "owner"
        return super().handle(**options)
