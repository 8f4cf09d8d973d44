"""`flush` through the owner connection.

The app role may not TRUNCATE (TRUNCATE ignores row-level security), so emptying the
database — which transactional tests do after each test — runs as the table owner. The
`default`, `service` and `owner` aliases are one database: it is emptied once, when `default`
is asked for (every test uses it), and the others' requests are no-ops. Content types and
permissions are not re-created here: Django creates a content type on first use."""

from django.core.management.commands.flush import Command as FlushCommand


class Command(FlushCommand):
    def handle(self, **options):
        if options["database"] != "default":
            return
        options["database"] = "owner"
        options["inhibit_post_migrate"] = True
        return super().handle(**options)
