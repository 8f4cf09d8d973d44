"""Migration operations for row-level security and tenant-safe foreign keys.

Each tenant table gets, in the migration that creates it:
  * ENABLE + FORCE ROW LEVEL SECURITY (FORCE: the owner is not exempt either),
  * one policy FOR ALL with USING and WITH CHECK on `organization_id` against the
    transaction-local `tap.org_id` — wrapped in a scalar sub-select so PostgreSQL reads the
    setting once per statement, and `nullif(…, '')` so "no context" matches no row;
  * composite foreign keys `(organization_id, parent_id) → parent (organization_id, id)`,
    because foreign-key checks bypass RLS: a single-column FK would let org A point at a row
    of org B.
"""

from django.db import migrations

CURRENT_ORG = "(SELECT nullif(current_setting('tap.org_id', true), '')::uuid)"
CURRENT_USER = "(SELECT nullif(current_setting('tap.user_id', true), '')::uuid)"


def enable_rls(table: str, *, using: str | None = None, check: str | None = None):
    using = using or f"organization_id = {CURRENT_ORG}"
    check = check or using
    return migrations.RunSQL(
        sql=f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON {table} FOR ALL
                USING ({using}) WITH CHECK ({check});
        """,
        reverse_sql=f"""
            DROP POLICY IF EXISTS tenant_isolation ON {table};
            ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
            ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
        """,
    )


def tenant_foreign_key(table: str, column: str, parent: str, *, on_delete: str = "CASCADE"):
    name = f"{table}_{column}_tenant_fk"[:63]
    return migrations.RunSQL(
        sql=f"""
            ALTER TABLE {table} ADD CONSTRAINT {name}
                FOREIGN KEY (organization_id, {column})
                REFERENCES {parent} (organization_id, id)
                ON DELETE {on_delete} DEFERRABLE INITIALLY DEFERRED;
        """,
        reverse_sql=f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name};",
    )
