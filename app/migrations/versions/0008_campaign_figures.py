"""campaign figures: a rollup per campaign and step

The campaign figures (mails sent, delivered, bounced, opened, clicked, opened
by machines only; people who unsubscribed from a mail; leads enrolled, by
status; leads that became MQL or SQL after entering) were counted from the
mails, events, enrollments and stage changes on every page view: about a
second at a million leads. This keeps them as a rollup.

`campaign_figures_live` computes them from the base tables (both databases).
`campaign_figures_now` is what the app reads. On SQLite, the embedded
default with small data, it is the live view. On PostgreSQL it adds up
`campaign_figures` (folded totals) and `campaign_figure_deltas`, rows that
triggers append in the same transaction as each change, so the figures are
exact as soon as the change commits, and concurrent writers never wait on
one hot counter row (they only insert). The sweep folds the deltas into the
totals (app/nurture/stats.py, fold()).

"Distinct people" figures (unsubscribed, mql, sql) go through the sets
`campaign_unsubscribes` and `campaign_conversions`: a row inserted there for
the first time is what counts one more. A conversion joins a stage change
and an enrollment of the same lead, written by different transactions, so
both triggers lock the lead's row before looking for the other (a row lock,
not an advisory one: a bulk insert of enrollments would fill the lock table).

Step key '' holds a campaign's own figures (enrollments, conversions).

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

FIGURES = ("sent", "delivered", "bounced", "opened", "clicked", "machine_opened", "unsubscribed",
           "enrolled", "active", "completed", "exited", "mql", "sql")


def _row(**ones) -> str:
    """A select list of every figure: 0, or the expression given."""
    return ", ".join(f"{ones.get(name, '0')} AS {name}" for name in FIGURES)


def mail_row(record: str = "", sign: str = "") -> str:
    """The figures one mail adds (record: "" for the table's columns, "NEW."
    or "OLD." in a trigger; sign "-" to take them away)."""
    def flag(condition: str) -> str:
        return f"{sign}CASE WHEN {condition} THEN 1 ELSE 0 END"
    r = record
    return _row(sent=f"{sign}1", delivered=flag(f"{r}status IN ('sent', 'outbox')"),
                bounced=flag(f"{r}status = 'bounced'"), opened=flag(f"{r}opened_at IS NOT NULL"),
                clicked=flag(f"{r}clicked_at IS NOT NULL"),
                machine_opened=flag(f"{r}machine_opened_at IS NOT NULL AND {r}opened_at IS NULL"))


def enrollment_row(record: str = "", sign: str = "") -> str:
    def flag(status: str) -> str:
        return f"{sign}CASE WHEN {record}status = '{status}' THEN 1 ELSE 0 END"
    return _row(enrolled=f"{sign}1", active=flag("active"), completed=flag("completed"), exited=flag("exited"))


SUMS = ", ".join(f"sum({name}) AS {name}" for name in FIGURES)

MESSAGE_ID = {
    "postgresql": "CASE WHEN e.properties->>'message_id' ~ '^[0-9]{1,18}$' "
                  "THEN (e.properties->>'message_id')::bigint END",
    "sqlite": "CAST(json_extract(e.properties, '$.message_id') AS INTEGER)",
}


def live_views(dialect: str) -> list[str]:
    return [
        f"""CREATE VIEW campaign_unsubscribes_live AS
        SELECT DISTINCT m.campaign, coalesce(m.step_key, '') AS step_key, e.lead_id
        FROM events e JOIN mails m ON m.id = {MESSAGE_ID[dialect]}
        WHERE e.kind = 'unsubscribed' AND m.campaign IS NOT NULL""",
        """CREATE VIEW campaign_conversions_live AS
        SELECT DISTINCT en.campaign, c.to_stage AS stage, c.lead_id
        FROM stage_changes c JOIN enrollments en ON en.lead_id = c.lead_id AND c.at >= en.entered_at
        WHERE c.to_stage IN ('mql', 'sql')""",
        f"""CREATE VIEW campaign_figures_live AS
        SELECT campaign, step_key, {SUMS} FROM (
            SELECT campaign, coalesce(step_key, '') AS step_key, {mail_row()} FROM mails WHERE campaign IS NOT NULL
            UNION ALL SELECT campaign, step_key, {_row(unsubscribed="1")} FROM campaign_unsubscribes_live
            UNION ALL SELECT campaign, '' AS step_key, {enrollment_row()} FROM enrollments
            UNION ALL SELECT campaign, '' AS step_key,
                {_row(mql="CASE WHEN stage = 'mql' THEN 1 ELSE 0 END",
                      sql="CASE WHEN stage = 'sql' THEN 1 ELSE 0 END")} FROM campaign_conversions_live
        ) AS figures GROUP BY campaign, step_key""",
    ]


COLUMNS = ", ".join(f"{name} bigint NOT NULL DEFAULT 0" for name in FIGURES)
NAMES = ", ".join(FIGURES)


POSTGRES = [
    f"CREATE TABLE campaign_figures (campaign varchar(80) NOT NULL, step_key varchar(60) NOT NULL, "
    f"{COLUMNS}, PRIMARY KEY (campaign, step_key))",
    f"CREATE TABLE campaign_figure_deltas (id bigserial PRIMARY KEY, campaign varchar(80) NOT NULL, "
    f"step_key varchar(60) NOT NULL, {COLUMNS})",
    "CREATE TABLE campaign_unsubscribes (campaign varchar(80) NOT NULL, step_key varchar(60) NOT NULL, "
    "lead_id bigint NOT NULL REFERENCES leads (id) ON DELETE CASCADE, PRIMARY KEY (campaign, step_key, lead_id))",
    "CREATE TABLE campaign_conversions (campaign varchar(80) NOT NULL, stage varchar(20) NOT NULL, "
    "lead_id bigint NOT NULL REFERENCES leads (id) ON DELETE CASCADE, PRIMARY KEY (campaign, stage, lead_id))",
    "CREATE INDEX ix_campaign_conversions_lead ON campaign_conversions (lead_id)",
    "CREATE INDEX ix_campaign_unsubscribes_lead ON campaign_unsubscribes (lead_id)",
    f"""CREATE VIEW campaign_figures_now AS
    SELECT campaign, step_key, {SUMS} FROM (
        SELECT campaign, step_key, {NAMES} FROM campaign_figures
        UNION ALL SELECT campaign, step_key, {NAMES} FROM campaign_figure_deltas
    ) AS figures GROUP BY campaign, step_key""",
    # Mails: the difference an insert, update or delete makes, one delta row.
    f"""CREATE FUNCTION campaign_figures_mail() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.campaign IS NOT DISTINCT FROM NEW.campaign
                AND OLD.step_key IS NOT DISTINCT FROM NEW.step_key THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, {NAMES})
            SELECT NEW.campaign, coalesce(NEW.step_key, ''), {", ".join(f"n.{f} - o.{f}" for f in FIGURES)}
            FROM (SELECT {mail_row("NEW.")}) AS n, (SELECT {mail_row("OLD.")}) AS o
            WHERE ({", ".join(f"n.{f}" for f in FIGURES)}) IS DISTINCT FROM ({", ".join(f"o.{f}" for f in FIGURES)});
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.campaign IS NOT NULL THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, {NAMES})
            SELECT OLD.campaign, coalesce(OLD.step_key, ''), {mail_row("OLD.", "-")};
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.campaign IS NOT NULL THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, {NAMES})
            SELECT NEW.campaign, coalesce(NEW.step_key, ''), {mail_row("NEW.")};
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER mails_figures_insert AFTER INSERT ON mails FOR EACH ROW "
    "WHEN (NEW.campaign IS NOT NULL) EXECUTE FUNCTION campaign_figures_mail()",
    "CREATE TRIGGER mails_figures_delete AFTER DELETE ON mails FOR EACH ROW "
    "WHEN (OLD.campaign IS NOT NULL) EXECUTE FUNCTION campaign_figures_mail()",
    "CREATE TRIGGER mails_figures_update AFTER UPDATE ON mails FOR EACH ROW "
    "WHEN ((OLD.campaign IS NOT NULL OR NEW.campaign IS NOT NULL) AND "
    "(OLD.campaign, OLD.step_key, OLD.status, OLD.opened_at IS NULL, OLD.clicked_at IS NULL, "
    "OLD.machine_opened_at IS NULL) IS DISTINCT FROM (NEW.campaign, NEW.step_key, NEW.status, "
    "NEW.opened_at IS NULL, NEW.clicked_at IS NULL, NEW.machine_opened_at IS NULL)) "
    "EXECUTE FUNCTION campaign_figures_mail()",
    # Enrollments: counts by status; a new one may also meet an earlier stage change.
    f"""CREATE FUNCTION campaign_figures_enrollment() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, {NAMES})
            SELECT OLD.campaign, '', {enrollment_row("OLD.", "-")};
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, {NAMES})
            SELECT NEW.campaign, '', {enrollment_row("NEW.")};
        END IF;
        IF TG_OP = 'INSERT' THEN
            PERFORM 1 FROM leads WHERE id = NEW.lead_id FOR NO KEY UPDATE;
            INSERT INTO campaign_conversions (campaign, stage, lead_id)
            SELECT DISTINCT NEW.campaign, c.to_stage, NEW.lead_id FROM stage_changes c
            WHERE c.lead_id = NEW.lead_id AND c.to_stage IN ('mql', 'sql') AND c.at >= NEW.entered_at
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER enrollments_figures AFTER INSERT OR DELETE ON enrollments FOR EACH ROW "
    "EXECUTE FUNCTION campaign_figures_enrollment()",
    "CREATE TRIGGER enrollments_figures_update AFTER UPDATE ON enrollments FOR EACH ROW "
    "WHEN ((OLD.campaign, OLD.status) IS DISTINCT FROM (NEW.campaign, NEW.status)) "
    "EXECUTE FUNCTION campaign_figures_enrollment()",
    """CREATE FUNCTION campaign_figures_stage_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM leads WHERE id = NEW.lead_id FOR NO KEY UPDATE;
        INSERT INTO campaign_conversions (campaign, stage, lead_id)
        SELECT DISTINCT en.campaign, NEW.to_stage, NEW.lead_id FROM enrollments en
        WHERE en.lead_id = NEW.lead_id AND en.entered_at <= NEW.at
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER stage_changes_figures AFTER INSERT ON stage_changes FOR EACH ROW "
    "WHEN (NEW.to_stage IN ('mql', 'sql')) EXECUTE FUNCTION campaign_figures_stage_change()",
    f"""CREATE FUNCTION campaign_figures_unsubscribe() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO campaign_unsubscribes (campaign, step_key, lead_id)
        SELECT m.campaign, coalesce(m.step_key, ''), NEW.lead_id
        FROM (SELECT NEW.properties AS properties) AS e JOIN mails m ON m.id = {MESSAGE_ID["postgresql"]}
        WHERE m.campaign IS NOT NULL AND NEW.lead_id IS NOT NULL
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER events_figures AFTER INSERT ON events FOR EACH ROW "
    "WHEN (NEW.kind = 'unsubscribed') EXECUTE FUNCTION campaign_figures_unsubscribe()",
    """CREATE FUNCTION campaign_figures_unsubscriber() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, unsubscribed)
            VALUES (NEW.campaign, NEW.step_key, 1);
        ELSE
            INSERT INTO campaign_figure_deltas (campaign, step_key, unsubscribed)
            VALUES (OLD.campaign, OLD.step_key, -1);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION campaign_figures_converted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO campaign_figure_deltas (campaign, step_key, mql, sql)
            VALUES (NEW.campaign, '', (NEW.stage = 'mql')::int, (NEW.stage = 'sql')::int);
        ELSE
            INSERT INTO campaign_figure_deltas (campaign, step_key, mql, sql)
            VALUES (OLD.campaign, '', -(OLD.stage = 'mql')::int, -(OLD.stage = 'sql')::int);
        END IF;
        RETURN NULL;
    END $$""",
    # A row entering (or leaving) a set counts one person more (or less).
    "CREATE TRIGGER campaign_unsubscribes_figures AFTER INSERT OR DELETE ON campaign_unsubscribes "
    "FOR EACH ROW EXECUTE FUNCTION campaign_figures_unsubscriber()",
    "CREATE TRIGGER campaign_conversions_figures AFTER INSERT OR DELETE ON campaign_conversions "
    "FOR EACH ROW EXECUTE FUNCTION campaign_figures_converted()",
]

# Filled after the triggers exist: creating them locked the tables against
# writers, so nothing changes between the fill and the first delta.
FILL = [
    "INSERT INTO campaign_unsubscribes SELECT * FROM campaign_unsubscribes_live",
    "INSERT INTO campaign_conversions SELECT * FROM campaign_conversions_live",
    "DELETE FROM campaign_figure_deltas",
    f"INSERT INTO campaign_figures (campaign, step_key, {NAMES}) SELECT * FROM campaign_figures_live",
]


def upgrade():
    dialect = op.get_bind().dialect.name
    for statement in live_views(dialect):
        op.execute(statement)
    if dialect == "postgresql":
        for statement in POSTGRES + FILL:
            op.execute(statement)
    else:
        op.execute("CREATE VIEW campaign_figures_now AS SELECT * FROM campaign_figures_live")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table, trigger in (("campaign_conversions", "campaign_conversions_figures"),
                               ("campaign_unsubscribes", "campaign_unsubscribes_figures"),
                               ("events", "events_figures"), ("stage_changes", "stage_changes_figures"),
                               ("enrollments", "enrollments_figures_update"), ("enrollments", "enrollments_figures"),
                               ("mails", "mails_figures_update"), ("mails", "mails_figures_delete"),
                               ("mails", "mails_figures_insert")):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for function in ("converted", "unsubscriber", "unsubscribe", "stage_change", "enrollment", "mail"):
            op.execute(f"DROP FUNCTION IF EXISTS campaign_figures_{function}()")
        op.execute("DROP VIEW IF EXISTS campaign_figures_now")
        for table in ("campaign_conversions", "campaign_unsubscribes", "campaign_figure_deltas", "campaign_figures"):
            op.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        op.execute("DROP VIEW IF EXISTS campaign_figures_now")
    for view in ("campaign_figures_live", "campaign_conversions_live", "campaign_unsubscribes_live"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
