"""lead counts: leads per current stage and day of creation

The overview's funnel counted every lead by its current stage, and the
leads created in the period, from the leads table: about 150 ms at a million
leads for a year. `lead_counts_now` (stage, created_day, n) answers both from
a few thousand rows. On PostgreSQL it adds up `lead_counts` and the delta rows
that triggers on leads append in the same transaction as each change (the
pattern of migration 0008, see app/rollups.py); on SQLite it counts the
leads table. Days are UTC, as the report periods are.

Also: a covering index for the MQL and SQL spans (the breakdowns read them
alone); and stage_spans is rewritten lead by lead by refresh(); vacuum it sooner
than the default (20 % dead rows) so that its index-only scans stay index-only.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

LIVE = {
    "postgresql": "CREATE VIEW lead_counts_live AS SELECT stage, (created_at AT TIME ZONE 'UTC')::date AS created_day, "
                  "count(*) AS n FROM leads GROUP BY 1, 2",
    "sqlite": "CREATE VIEW lead_counts_live AS SELECT stage, date(created_at) AS created_day, "
              "count(*) AS n FROM leads GROUP BY 1, 2",
}

POSTGRES = [
    "CREATE TABLE lead_counts (stage varchar(20) NOT NULL, created_day date NOT NULL, n bigint NOT NULL DEFAULT 0, "
    "PRIMARY KEY (stage, created_day))",
    "CREATE TABLE lead_count_deltas (id bigserial PRIMARY KEY, stage varchar(20) NOT NULL, "
    "created_day date NOT NULL, n bigint NOT NULL)",
    "CREATE VIEW lead_counts_now AS SELECT stage, created_day, sum(n) AS n FROM ("
    "SELECT stage, created_day, n FROM lead_counts UNION ALL SELECT stage, created_day, n FROM lead_count_deltas"
    ") AS counts GROUP BY stage, created_day",
    """CREATE FUNCTION lead_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO lead_count_deltas (stage, created_day, n)
            VALUES (OLD.stage, (OLD.created_at AT TIME ZONE 'UTC')::date, -1);
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO lead_count_deltas (stage, created_day, n)
            VALUES (NEW.stage, (NEW.created_at AT TIME ZONE 'UTC')::date, 1);
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER leads_counts AFTER INSERT OR DELETE ON leads FOR EACH ROW EXECUTE FUNCTION lead_counts_change()",
    "CREATE TRIGGER leads_counts_update AFTER UPDATE OF stage, created_at ON leads FOR EACH ROW "
    "WHEN ((OLD.stage, OLD.created_at) IS DISTINCT FROM (NEW.stage, NEW.created_at)) "
    "EXECUTE FUNCTION lead_counts_change()",
    # After the trigger: creating it locked leads against writers until commit.
    "INSERT INTO lead_counts SELECT * FROM lead_counts_live",
    # The breakdown by source and segment, and the monthly and cohort figures,
    # read MQL and SQL spans only: a small covering index makes them index-only.
    "CREATE INDEX ix_stage_spans_conversions ON stage_spans (stage, entered_at) INCLUDE (prev_at, sql_at, "
    "source, medium, first_form, referrer_domain, segment) WHERE stage IN ('mql', 'sql')",
    "ALTER TABLE stage_spans SET (autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02)",
]


def upgrade():
    dialect = op.get_bind().dialect.name
    op.execute(LIVE[dialect])
    if dialect == "postgresql":
        for statement in POSTGRES:
            op.execute(statement)
    else:
        op.execute("CREATE VIEW lead_counts_now AS SELECT * FROM lead_counts_live")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stage_spans RESET (autovacuum_vacuum_scale_factor, "
                   "autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor)")
        op.execute("DROP INDEX IF EXISTS ix_stage_spans_conversions")
        op.execute("DROP TRIGGER IF EXISTS leads_counts_update ON leads")
        op.execute("DROP TRIGGER IF EXISTS leads_counts ON leads")
        op.execute("DROP FUNCTION IF EXISTS lead_counts_change()")
        op.execute("DROP VIEW IF EXISTS lead_counts_now")
        op.execute("DROP TABLE IF EXISTS lead_count_deltas")
        op.execute("DROP TABLE IF EXISTS lead_counts")
    else:
        op.execute("DROP VIEW IF EXISTS lead_counts_now")
    op.execute("DROP VIEW IF EXISTS lead_counts_live")
