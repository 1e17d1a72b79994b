"""reports: stage spans for the overview

One row per stage change: the span of time a lead spent in the stage it
entered, the move that ended it, when the lead last entered that same stage
before (so that "distinct leads in a period" is a plain filter), the first
SQL after an MQL, and the lead's reporting attributes. The overview's figures (funnel, cohorts, conversion by
source and segment, time in stage, SLA) are plain range scans over it.

`stage_spans_live` computes it from stage_changes (window functions, both
databases). On SQLite, the embedded default with small data, `stage_spans`
is that view. On PostgreSQL it is a table kept in step by triggers: a stage
change, or a change of a lead's reporting attributes, marks the lead in
`report_dirty_leads`, and the next report rebuilds that lead's rows from the
view (app/dashboard/reports.py, refresh()). Nothing is missed when two
transactions commit out of order, since the mark is written in the same
transaction as the change.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

LIVE = """
CREATE VIEW stage_spans_live AS
SELECT c.id, c.lead_id, c.to_stage AS stage, c.at AS entered_at,
       lead(c.at) OVER w AS left_at, lead(c.to_stage) OVER w AS next_stage,
       lag(c.at) OVER (PARTITION BY c.lead_id, c.to_stage ORDER BY c.at, c.id) AS prev_at,
       CASE WHEN c.to_stage = 'mql' THEN min(CASE WHEN c.to_stage = 'sql' THEN c.at END) OVER
            (PARTITION BY c.lead_id ORDER BY c.at, c.id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
       END AS sql_at,
       l.source, l.medium, l.first_form, l.referrer_domain, l.segment
FROM stage_changes c JOIN leads l ON l.id = c.lead_id
WINDOW w AS (PARTITION BY c.lead_id ORDER BY c.at, c.id)
"""

POSTGRES = [
    """CREATE TABLE stage_spans (
        id bigint PRIMARY KEY REFERENCES stage_changes (id) ON DELETE CASCADE,
        lead_id bigint NOT NULL, stage varchar(20) NOT NULL, entered_at timestamptz NOT NULL,
        left_at timestamptz, next_stage varchar(20), prev_at timestamptz, sql_at timestamptz,
        source varchar(200), medium varchar(200), first_form varchar(80), referrer_domain varchar(253),
        segment varchar(80))""",
    # In time order, so that a period is a run of neighbouring pages.
    "INSERT INTO stage_spans SELECT * FROM stage_spans_live ORDER BY entered_at",
    # Covering: funnel, cohorts and SLA read the index alone.
    "CREATE INDEX ix_stage_spans_stage_entered ON stage_spans (stage, entered_at) "
    "INCLUDE (lead_id, prev_at, sql_at, left_at, next_stage)",
    "CREATE INDEX ix_stage_spans_left ON stage_spans (left_at) INCLUDE (stage, entered_at)",
    "CREATE INDEX ix_stage_spans_lead ON stage_spans (lead_id)",
    "CREATE TABLE report_dirty_leads (lead_id bigint PRIMARY KEY)",
    """CREATE FUNCTION report_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO report_dirty_leads VALUES (OLD.lead_id) ON CONFLICT DO NOTHING;
        ELSIF TG_TABLE_NAME = 'leads' THEN
            INSERT INTO report_dirty_leads VALUES (NEW.id) ON CONFLICT DO NOTHING;
        ELSE
            INSERT INTO report_dirty_leads VALUES (NEW.lead_id) ON CONFLICT DO NOTHING;
            IF TG_OP = 'UPDATE' AND OLD.lead_id <> NEW.lead_id THEN
                INSERT INTO report_dirty_leads VALUES (OLD.lead_id) ON CONFLICT DO NOTHING;
            END IF;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER stage_changes_report AFTER INSERT OR UPDATE OR DELETE ON stage_changes "
    "FOR EACH ROW EXECUTE FUNCTION report_mark_dirty()",
    "CREATE TRIGGER leads_report AFTER UPDATE OF source, medium, first_form, referrer_domain, segment ON leads "
    "FOR EACH ROW WHEN ((OLD.source, OLD.medium, OLD.first_form, OLD.referrer_domain, OLD.segment) "
    "IS DISTINCT FROM (NEW.source, NEW.medium, NEW.first_form, NEW.referrer_domain, NEW.segment)) "
    "EXECUTE FUNCTION report_mark_dirty()",
    "ANALYZE stage_spans",
]


def upgrade():
    op.execute(LIVE)
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES:
            op.execute(statement)
    else:
        op.execute("CREATE VIEW stage_spans AS SELECT * FROM stage_spans_live")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS leads_report ON leads")
        op.execute("DROP TRIGGER IF EXISTS stage_changes_report ON stage_changes")
        op.execute("DROP FUNCTION IF EXISTS report_mark_dirty()")
        op.execute("DROP TABLE IF EXISTS report_dirty_leads")
        op.execute("DROP TABLE IF EXISTS stage_spans")
    else:
        op.execute("DROP VIEW IF EXISTS stage_spans")
    op.execute("DROP VIEW IF EXISTS stage_spans_live")
