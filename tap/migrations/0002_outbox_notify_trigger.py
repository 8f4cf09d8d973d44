from django.db import migrations

# The relay sleeps on LISTEN tap_outbox. A statement trigger sends the NOTIFY, so every
# enqueue is one round trip (the INSERT) instead of two; PostgreSQL still delivers it only
# when the transaction commits, and folds duplicates within a transaction into one.
NOTIFY = """
CREATE FUNCTION tap_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tap_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_jobs_notify AFTER INSERT ON outbox_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tap_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("tap", "0001_initial")]

    operations = [
        migrations.RunSQL(
            NOTIFY,
            reverse_sql="""
                DROP TRIGGER outbox_jobs_notify ON outbox_jobs;
                DROP FUNCTION tap_outbox_notify();
            """,
        ),
    ]
