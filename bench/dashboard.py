"""Benchmark: the dashboard pages at 1,000,000 leads and 20,000,000 events.

    .venv/bin/python bench/dashboard.py [--reseed] [--runs 5] [--leads N] [--events N]

Seeds the PostgreSQL database leadflow_bench_dash (migrations through
app.migrate.upgrade, then INSERT ... SELECT ... FROM generate_series), once:
later runs find the seed's mark (a comment on the database) and only run the
migrations and the measures; --reseed drops and seeds again (several
minutes: the secondary indexes are dropped during the load and built after).

The data, relative to the moment of seeding, with a fixed random seed:
  leads      created over 18 months, more of them recently; ids in creation
             order, as in life; UTM source/medium, first form, referrer
             domain (200, skewed), segment (smb 50 %, midmarket 30 %,
             enterprise 15 %, none 5 %)
  stages     ~10 % become MQL (more often in larger segments) 1-60 days after
             creation; of those 75 % accepted (SAL, most within 4 h), 15 %
             recycled, 5 % disqualified, 5 % never answered; 40 % of SALs
             become SQL (~3 % of leads), half of SQLs an opportunity, a third
             of those a customer; a StageChange row for each move
  events     N events spread over the leads (older leads have more),
             occurring between the lead's creation and the seeding
  submissions one per lead, 50,000 excluded, 2,000 waiting in review
  nurture    40 % of the leads enrolled in a campaign, 3 emails each, 30 %
             opened, 6 % clicked

Then prints, for each dashboard page and CSV that the app has (looked up in
app.view_functions), the server time: the time the Flask test client takes
to produce the response in this process (median of --runs after a warm-up),
against the goal of 500 ms, and as a ratio to two floors measured in the
same run: a `SELECT 1` round trip and a page that touches no table
(GET /login). For /overview, also the time of each query function, the page
without the campaigns summary (app.nurture.stats.campaign_totals), and what
keeping stage_spans (migration 0006) up to date costs: refresh() after 100,
1,000 and 10,000 leads changed. The seed loads with triggers off, then
builds stage_spans whole.
"""
import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.common import PG_ADMIN_URL, ROOT, create_database  # noqa: E402

DATABASE = "leadflow_bench_dash"
GOAL_MS = 500.0
SEED_VERSION = 1
BULK_TABLES = ("leads", "stage_changes", "events", "submissions", "enrollments", "mails")


def database_url() -> str:
    return make_url(PG_ADMIN_URL).set(database=DATABASE).render_as_string(hide_password=False)


def mark(leads: int, events: int) -> str:
    return f"leadflow bench dashboard seed v{SEED_VERSION}: {leads} leads, {events} events"


def current_mark(url: str) -> str | None:
    engine = create_engine(make_url(url).set(database="postgres"))
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :name"),
                {"name": DATABASE}).scalar()
    finally:
        engine.dispose()


# --- seeding -----------------------------------------------------------------

def send_steps() -> dict[str, list[str]]:
    """The first three send steps of each campaign in campaigns/."""
    from app.nurture.campaigns import load_all
    campaigns, _ = load_all(ROOT / "campaigns")
    return {slug: [s.key for s in c.definition.steps if s.send is not None][:3] for slug, c in campaigns.items()}


SEED = [
    # One row per lead with its attributes and the time of each move (NULL:
    # not reached, or not yet at seeding time). ids follow creation order.
    ("plan", """
    CREATE UNLOGGED TABLE bench_plan AS
    WITH raw AS (
        SELECT :now - (548 * power(random(), 1.25)) * interval '1 day' AS created_at,
               random() AS r_source, random() AS r_form, random() AS r_ref, random() AS r_seg, random() AS r_mql,
               random() AS r_sal, random() AS r_sql, random() AS r_opp, random() AS r_cust,
               random() AS d1, random() AS d2, random() AS d3, random() AS d4, random() AS d5
        FROM generate_series(1, :leads)
    ), attrs AS (
        SELECT row_number() OVER (ORDER BY created_at) AS id, *,
            CASE WHEN r_source < .45 THEN 'google' WHEN r_source < .60 THEN 'linkedin'
                 WHEN r_source < .70 THEN 'newsletter' WHEN r_source < .75 THEN 'facebook'
                 WHEN r_source < .80 THEN 'partner' END AS source,
            CASE WHEN r_source < .25 THEN 'cpc' WHEN r_source < .45 THEN 'organic' WHEN r_source < .60 THEN 'paid_social'
                 WHEN r_source < .70 THEN 'email' WHEN r_source < .75 THEN 'paid_social'
                 WHEN r_source < .80 THEN 'referral' END AS medium,
            CASE WHEN r_form < .5 THEN 'contact' WHEN r_form < .7 THEN 'contact-en' WHEN r_form < .85 THEN 'ebook'
                 WHEN r_form < .95 THEN 'webinar' ELSE 'demo' END AS form,
            CASE WHEN r_ref >= .4 THEN 'site' || floor(200 * power((r_ref - .4) / .6, 3)) || '.example' END AS referrer,
            CASE WHEN r_seg < .5 THEN 'smb' WHEN r_seg < .8 THEN 'midmarket' WHEN r_seg < .95 THEN 'enterprise' END
                AS segment,
            CASE WHEN r_seg < .5 THEN .08 WHEN r_seg < .8 THEN .12 WHEN r_seg < .95 THEN .16 ELSE .05 END AS p_mql
        FROM raw
    ), mql AS (
        SELECT *, CASE WHEN r_mql < p_mql AND created_at + (1 + 59 * d1 * d1) * interval '1 day' <= :now
                       THEN created_at + (1 + 59 * d1 * d1) * interval '1 day' END AS mql_at
        FROM attrs
    ), answer AS (
        SELECT *,
            CASE WHEN r_sal < .75 THEN mql_at + 8 * d2 * d2 * interval '1 hour' END AS sal_at,
            CASE WHEN r_sal >= .75 AND r_sal < .90 THEN mql_at + (1 + 4 * d2) * interval '1 day' END AS recycled_at,
            CASE WHEN r_sal >= .90 AND r_sal < .95 THEN mql_at + (2 + 20 * d2) * interval '1 hour' END AS disqualified_at
        FROM mql
    ), later AS (
        SELECT *, CASE WHEN r_sql < .4 THEN sal_at + (1 + 44 * d3) * interval '1 day' END AS sql_at FROM answer
    ), deal AS (
        SELECT *, CASE WHEN r_opp < .5 THEN sql_at + (5 + 25 * d4) * interval '1 day' END AS opp_at FROM later
    )
    SELECT id, created_at, source, medium, form, referrer, segment,
           CASE WHEN source = 'newsletter' THEN 'subscriber' ELSE 'lead' END AS first_stage,
           mql_at,
           CASE WHEN sal_at <= :now THEN sal_at END AS sal_at,
           CASE WHEN recycled_at <= :now THEN recycled_at END AS recycled_at,
           CASE WHEN disqualified_at <= :now THEN disqualified_at END AS disqualified_at,
           CASE WHEN sql_at <= :now AND sal_at <= :now THEN sql_at END AS sql_at,
           CASE WHEN opp_at <= :now AND sql_at <= :now THEN opp_at END AS opp_at,
           CASE WHEN r_cust < .35 AND opp_at + (10 + 80 * d5) * interval '1 day' <= :now AND opp_at <= :now
                THEN opp_at + (10 + 80 * d5) * interval '1 day' END AS customer_at
    FROM deal"""),
    ("leads", """
    INSERT INTO leads (id, email, name, company, segment, job_title, country, language, stage, score, temperature,
                       scores, score_state, opted_out_topics, consent, first_form, source, medium, referrer_domain,
                       mql_at, created_at, updated_at)
    SELECT id, 'lead' || id || '@bench' || (id % 997) || '.example', 'Prénom Nom ' || id, 'Company ' || (id % 50000),
           segment, 'Head of marketing', (ARRAY['FR', 'BE', 'US', 'GB', 'DE'])[1 + id % 5],
           CASE WHEN form = 'contact-en' THEN 'en' ELSE 'fr' END,
           CASE WHEN customer_at IS NOT NULL THEN 'customer' WHEN opp_at IS NOT NULL THEN 'opportunity'
                WHEN sql_at IS NOT NULL THEN 'sql' WHEN sal_at IS NOT NULL THEN 'sal'
                WHEN recycled_at IS NOT NULL THEN 'recycled' WHEN disqualified_at IS NOT NULL THEN 'disqualified'
                WHEN mql_at IS NOT NULL THEN 'mql' ELSE first_stage END,
           CASE WHEN mql_at IS NOT NULL THEN 60 + id % 40 ELSE id % 50 END,
           CASE WHEN mql_at IS NOT NULL THEN 'hot' END,
           '{}', '{}', '[]', true, form, source, medium, referrer, mql_at, created_at,
           greatest(created_at, mql_at, sal_at, recycled_at, disqualified_at, sql_at, opp_at, customer_at)
    FROM bench_plan ORDER BY id"""),
    ("stage_changes", """
    INSERT INTO stage_changes (lead_id, from_stage, to_stage, actor, reason, at)
    SELECT lead_id, from_stage, to_stage, actor, NULL, at FROM (
        SELECT id AS lead_id, NULL AS from_stage, first_stage AS to_stage, 'form:' || form AS actor, created_at AS at
        FROM bench_plan
        UNION ALL SELECT id, first_stage, 'mql', 'rule:score', mql_at FROM bench_plan WHERE mql_at IS NOT NULL
        UNION ALL SELECT id, 'mql', 'sal', 'user:2', sal_at FROM bench_plan WHERE sal_at IS NOT NULL
        UNION ALL SELECT id, 'mql', 'recycled', 'user:2', recycled_at FROM bench_plan WHERE recycled_at IS NOT NULL
        UNION ALL SELECT id, 'mql', 'disqualified', 'user:2', disqualified_at FROM bench_plan
                  WHERE disqualified_at IS NOT NULL
        UNION ALL SELECT id, 'sal', 'sql', 'user:2', sql_at FROM bench_plan WHERE sql_at IS NOT NULL
        UNION ALL SELECT id, 'sql', 'opportunity', 'user:2', opp_at FROM bench_plan WHERE opp_at IS NOT NULL
        UNION ALL SELECT id, 'opportunity', 'customer', 'user:2', customer_at FROM bench_plan
                  WHERE customer_at IS NOT NULL
    ) moves ORDER BY at"""),
    ("submissions", """
    INSERT INTO submissions (form_slug, channel, payload, email, verdict, reasons, utm_source, utm_medium, lead_id,
                             created_at, decided_at)
    SELECT form, 'hosted', jsonb_build_object('email', 'lead' || id || '@bench.example', 'name', 'Prénom Nom ' || id),
           'lead' || id || '@bench.example', 'accepted', CAST('[]' AS jsonb), source, medium, id, created_at, created_at
    FROM bench_plan
    UNION ALL
    SELECT 'contact', 'hosted', jsonb_build_object('email', 'x' || g || '@mailinator.com'), 'x' || g || '@mailinator.com',
           'excluded', '["disposable_domain"]', NULL, NULL, NULL, :now - (g % 500) * interval '1 day', NULL
    FROM generate_series(1, 50000) g
    UNION ALL
    SELECT 'contact', 'hosted', jsonb_build_object('email', 'r' || g || '@student.example'), 'r' || g || '@student.example',
           'review', '["student"]', NULL, NULL, NULL, :now - (g % 30) * interval '1 day', NULL
    FROM generate_series(1, 2000) g"""),
    ("events", """
    INSERT INTO events (lead_id, kind, key, properties, machine, points, rule, source, occurred_at, created_at)
    SELECT e.lead_id, e.kind, 'b' || e.g, '{}', false, CASE WHEN e.kind = 'page_visited' THEN 1 ELSE 5 END, e.kind,
           'tracking', l.created_at + e.rt * (:now - l.created_at), l.created_at + e.rt * (:now - l.created_at)
    FROM (SELECT g, 1 + floor(:leads * power(random(), 1.6))::bigint AS lead_id, random() AS rt,
                 CASE WHEN rk < .35 THEN 'email_opened' WHEN rk < .65 THEN 'page_visited'
                      WHEN rk < .80 THEN 'link_clicked' WHEN rk < .88 THEN 'asset_downloaded'
                      WHEN rk < .95 THEN 'form_submitted' WHEN rk < .99 THEN 'webinar_registered'
                      WHEN rk < .996 THEN 'unsubscribed' ELSE 'bounced' END AS kind
          FROM (SELECT g, random() AS rk FROM generate_series(1, :events) g) k) e
    JOIN bench_plan l ON l.id = e.lead_id"""),
    ("enrollments", """
    INSERT INTO enrollments (campaign, lead_id, step_key, waiting, status, exit_reason, trigger, due_at, entered_at,
                             finished_at, path)
    SELECT CASE WHEN form = 'contact-en' THEN 'nurture-en' ELSE 'nurture-fr' END, id,
           CASE WHEN form = 'contact-en' THEN :en_last ELSE :fr_last END, false,
           CASE WHEN id % 3 = 0 THEN 'active' WHEN id % 3 = 1 THEN 'completed' ELSE 'exited' END,
           CASE WHEN id % 3 = 2 THEN 'goal: stage mql' END, 'lead_accepted',
           created_at + interval '10 days', created_at + interval '1 hour',
           CASE WHEN id % 3 <> 0 THEN created_at + interval '20 days' END, '[]'
    FROM bench_plan WHERE id % 5 < 2"""),
    ("mails", """
    INSERT INTO mails (dedupe_key, kind, lead_id, sender, recipient, subject, html, text, headers, status, attempts,
                       next_attempt_at, created_at, sent_at, enrollment_id, campaign, step_key, opened_at, clicked_at,
                       machine_opened_at)
    SELECT 'step:' || e.id || ':' || k, 'nurture', e.lead_id, 'Camille <camille@leadflow.example>',
           'lead' || e.lead_id || '@bench.example', 'Subject ' || k, '<p>bench</p>', 'bench', '{}',
           CASE WHEN r < .01 THEN 'bounced' ELSE 'sent' END, 1,
           e.entered_at + k * interval '3 days', e.entered_at + k * interval '3 days',
           e.entered_at + k * interval '3 days', e.id, e.campaign,
           CASE WHEN e.campaign = 'nurture-en' THEN (CAST(:en_steps AS text[]))[k] ELSE (CAST(:fr_steps AS text[]))[k] END,
           CASE WHEN r >= .01 AND r < .31 THEN e.entered_at + k * interval '3 days' + interval '2 hours' END,
           CASE WHEN r >= .01 AND r < .07 THEN e.entered_at + k * interval '3 days' + interval '3 hours' END,
           CASE WHEN r >= .9 THEN e.entered_at + k * interval '3 days' + interval '1 minute' END
    FROM enrollments e CROSS JOIN generate_series(1, 3) k CROSS JOIN LATERAL (SELECT random() + 0 * k AS r) x"""),
]


def _secondary_indexes(conn, table: str) -> tuple[list[str], list[str]]:
    """(drop statements, create statements) of the table's indexes and unique
    constraints, the primary key apart: a bulk load is much faster without
    them, and building them after costs one sort each."""
    drops, creates = [], []
    for name, definition in conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"), {"t": table}):
        drops.append(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        creates.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in conn.execute(text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = :t AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"), {"t": table}):
        drops.append(f'DROP INDEX "{name}"')
        creates.append(definition)
    return drops, creates


def seed(url: str, leads: int, events: int) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    steps = send_steps()
    params = {"now": now, "leads": leads, "events": events,
              "en_steps": steps["nurture-en"], "fr_steps": steps["nurture-fr"],
              "en_last": steps["nurture-en"][-1], "fr_last": steps["nurture-fr"][-1]}
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    began = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text("SELECT setseed(0.42)"))
        # Foreign keys are right by construction; their per-row triggers are not needed.
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        conn.execute(text("SET work_mem = '256MB'"))
        rebuild = []
        for table in BULK_TABLES:
            drops, creates = _secondary_indexes(conn, table)
            for statement in drops:
                conn.execute(text(statement))
            rebuild += creates
        for name, sql in SEED:
            started = time.perf_counter()
            conn.execute(text(sql), params)
            print(f"  seeded {name:<14} {time.perf_counter() - started:7.1f} s", flush=True)
        conn.execute(text("DROP TABLE bench_plan"))
        for table in ("leads", "stage_changes", "submissions", "events", "enrollments", "mails"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT coalesce(max(id), 1) FROM {table}))"))
        started = time.perf_counter()
        for statement in rebuild:
            conn.execute(text(statement))
        print(f"  indexes rebuilt    {time.perf_counter() - started:7.1f} s ({len(rebuild)})", flush=True)
        started = time.perf_counter()
        # The triggers that keep stage_spans (migration 0006) were off: build it whole.
        conn.execute(text("TRUNCATE stage_spans"))
        conn.execute(text("INSERT INTO stage_spans SELECT * FROM stage_spans_live ORDER BY entered_at"))
        print(f"  stage_spans built  {time.perf_counter() - started:7.1f} s", flush=True)
        started = time.perf_counter()
        from app.dashboard.reports import REBUILD_LEAD_COUNTS
        from app.nurture.stats import REBUILD  # and the campaign figures and lead counts (0008, 0010)
        for statement in REBUILD + REBUILD_LEAD_COUNTS:
            conn.execute(text(statement))
        print(f"  campaign figures   {time.perf_counter() - started:7.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))  # and the visibility map, for index-only scans
        print(f"  vacuum analyze     {time.perf_counter() - started:7.1f} s", flush=True)
        conn.execute(text(f"COMMENT ON DATABASE {DATABASE} IS '{mark(leads, events)}'"))  # DDL: no parameters
    engine.dispose()
    print(f"  seeded in {time.perf_counter() - began:.0f} s, reference time {now:%Y-%m-%d %H:%M} UTC")


# --- measuring ---------------------------------------------------------------

def figures_upkeep(rows: int = 10_000) -> None:
    """What keeping the campaign figures (migration 0008) costs the writers:
    the same UPDATE of `rows` mails (delivered and opened) with the triggers
    off, then on, then folding the deltas they wrote; rolled back."""
    from app.nurture.stats import FOLD
    engine = create_engine(database_url())
    update = text("UPDATE mails SET status = 'sent', opened_at = now() WHERE id IN (SELECT id FROM mails "
                  "WHERE campaign IS NOT NULL AND opened_at IS NULL ORDER BY id LIMIT :rows)")
    print(f"\nkeeping campaign figures: UPDATE of {rows:,} mails (sent and opened), rolled back")
    with engine.connect() as conn:
        timings: dict[str, float] = {}
        # Off, on, off, on: the first pass warms the cache; each keeps its best.
        for label, role in (("triggers off", "replica"), ("triggers on", "origin")) * 2:
            transaction = conn.begin()
            conn.execute(text(f"SET LOCAL session_replication_role = {role}"))
            started = time.perf_counter()
            conn.execute(update, {"rows": rows})
            timings[label] = min(timings.get(label, float("inf")), (time.perf_counter() - started) * 1000)
            if role == "origin":
                started = time.perf_counter()
                folded = conn.execute(text(FOLD)).scalar_one()
                timings["fold of the deltas"] = (time.perf_counter() - started) * 1000
                timings["deltas folded"] = folded
            transaction.rollback()
        folded = timings.pop("deltas folded")
        for label, ms in timings.items():
            print(f"  {label:<24} {ms:8.1f} ms")
        print(f"  deltas folded            {folded:8,.0f}")
        print(f"  ratio on/off             {timings['triggers on'] / timings['triggers off']:8.2f}×")
    engine.dispose()


def timed(call, runs: int) -> list[float]:
    call()  # warm-up: caches, first compilation of statements
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def marketer_client(app):
    """A test client logged in as a marketer (the session cookie Flask-Login reads)."""
    from app.db import session
    from app.models import User
    from sqlalchemy import select
    with app.app_context():
        user = session.execute(select(User).where(User.email == "bench.marketer@leadflow.example")).scalar()
        if user is None:
            user = User(email="bench.marketer@leadflow.example", name="Bench", role="marketer",
                        password_hash="!", active=True, is_manager=False)
            session.add(user)
            session.commit()
        user_id = user.id
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"], cookie["_fresh"] = str(user_id), True
    return client


def deep_cursor(app) -> str | None:
    """An `after` cursor half-way down the leads list (default sort), built
    with the list's own encoder when it has one."""
    try:
        from app.db import session
        from app.leads_ui import listing
        from app.models import Lead
        from sqlalchemy import select
        with app.app_context():
            lead = session.execute(select(Lead).order_by(Lead.created_at.desc(), Lead.id.desc())
                                   .offset(500_000).limit(1)).scalar()
            return listing.encode_cursor(listing.Filters(), lead) if lead else None
    except (ImportError, AttributeError, TypeError):
        return None


def pages(app, today) -> list[tuple[str, str]]:
    """(label, path) of each page to measure that the app has."""
    year_ago = (today - timedelta(days=364)).isoformat()
    has = app.view_functions
    found = []
    if "reports.overview" in has:
        found += [("overview, last 90 days", "/overview"),
                  ("overview, 12 months", f"/overview?from={year_ago}&to={today.isoformat()}")]
    if "reports.overview_csv" in has:
        found += [(f"overview.csv {t}, 12 months", f"/overview.csv?table={t}&from={year_ago}&to={today.isoformat()}")
                  for t in ("funnel", "monthly", "cohort", "sources", "segments", "stages", "sla")]
    if "leads.index" in has:
        found += [("leads", "/leads"), ("leads ?q=", "/leads?q=nom%20123"),
                  ("leads ?q=&stage=mql", "/leads?q=company%2012&stage=mql")]
        cursor = deep_cursor(app)
        if cursor:
            found.append(("leads, 500,000 rows down", f"/leads?after={cursor}"))
    for endpoint, label, path in (("review.queue", "review", "/review"), ("dashboard.forms", "forms", "/forms"),
                                  ("campaigns.index", "campaigns", "/campaigns")):
        if endpoint in has:
            found.append((label, path))
    return found


def overview_parts(app, runs: int, days: int) -> list[tuple[str, list[float]]]:
    """Each query function behind /overview, for the last `days` days."""
    from app.dashboard import reports
    from app.db import session
    from app.models import utcnow
    now = utcnow()
    period = reports.Period(now.date() - timedelta(days=days - 1), now.date())
    calls = [("funnel", lambda: reports.funnel(period)),
             ("monthly_conversion", lambda: reports.monthly_conversion(period)),
             ("cohort_table", lambda: reports.cohort_table(period, now)),
             ("breakdown", lambda: reports.breakdown(period)),
             ("stage_durations", lambda: reports.stage_durations(period)),
             ("sla", lambda: reports.sla(period, now, 4)),
             ("campaigns_summary", reports.campaigns_summary),
             ("review_waiting", reports.review_waiting)]
    with app.test_request_context():
        results = [(name, timed(call, runs)) for name, call in calls]
        session.remove()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reseed", action="store_true", help="drop the database and seed it again")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    args = parser.parse_args()

    from app import create_app, migrate
    url = database_url()
    if args.reseed or current_mark(url) != mark(args.leads, args.events):
        print(f"seeding {DATABASE}: {args.leads:,} leads, {args.events:,} events")
        create_database(DATABASE)
        migrate.upgrade(url)
        seed(url, args.leads, args.events)
    else:
        print(f"{DATABASE} already seeded ({current_mark(url)}); --reseed to seed again")
        migrate.upgrade(url)  # new indexes land on the existing data, as in production

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "RATELIMIT_ENABLED": False,
                      "EMBEDDED_SCHEDULER": False})
    from app.db import session
    with app.app_context():
        counts = session.execute(text(
            "SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM stage_changes), "
            "(SELECT reltuples::bigint FROM pg_class WHERE relname = 'events')")).one()
        session.remove()
    print(f"leads {counts[0]:,}, stage changes {counts[1]:,}, events ~{counts[2]:,}")

    with app.app_context():
        select_one = statistics.median(timed(lambda: session.execute(text("SELECT 1")).scalar(), 50))
        session.remove()
    anonymous = app.test_client()
    assert anonymous.get("/login").status_code == 200
    login_page = statistics.median(timed(lambda: anonymous.get("/login"), 20))
    print(f"floors: SELECT 1 round trip {select_one:.2f} ms; GET /login (no table) {login_page:.2f} ms\n")

    client = marketer_client(app)
    today = datetime.now(timezone.utc).date()
    print(f"{'page':<36} {'median':>9} {'max':>9} {'× SELECT 1':>11} {'× /login':>9}  goal {GOAL_MS:.0f} ms")
    over = []
    for label, path in pages(app, today):
        statuses = set()

        def get(path=path):
            response = client.get(path)
            statuses.add(response.status_code)
            response.close()
        times = timed(get, args.runs)
        mid = statistics.median(times)
        verdict = "ok" if mid <= GOAL_MS else "OVER"
        if mid > GOAL_MS:
            over.append(label)
        status = "" if statuses == {200} else f"  (status {sorted(statuses)})"
        print(f"{label:<36} {mid:7.1f}ms {max(times):7.1f}ms {mid / select_one:10.0f}× {mid / login_page:8.1f}×"
              f"  {verdict}{status}", flush=True)

    figures_upkeep()

    print("\n/overview, query by query:       last 90 days   12 months")
    parts = {days: overview_parts(app, args.runs, days) for days in (90, 365)}
    for (name, short), (_, long) in zip(parts[90], parts[365]):
        print(f"  {name:<20} {statistics.median(short):13.1f} ms {statistics.median(long):8.1f} ms")

    # What the page costs apart from app.nurture.stats.campaign_totals (its own owner's).
    from app.dashboard import reports
    summary, reports.campaigns_summary = reports.campaigns_summary, lambda: []
    print("\n/overview with the campaigns summary left out:")
    for label, path in pages(app, today)[:2]:
        times = timed(lambda path=path: client.get(path).close(), args.runs)
        print(f"  {label:<34} {statistics.median(times):7.1f} ms")
    reports.campaigns_summary = summary

    print("\nkeeping stage_spans up to date: refresh() after N leads changed")
    for count in (100, 1_000, 10_000):
        with app.app_context():
            session.execute(text("INSERT INTO report_dirty_leads SELECT id FROM leads "
                                 "WHERE id % :step = 0 LIMIT :n ON CONFLICT DO NOTHING"),
                            {"step": max(1, counts[0] // count), "n": count})
            session.commit()
            started = time.perf_counter()
            rebuilt = reports.refresh()
            print(f"  {rebuilt:>6,} leads  {(time.perf_counter() - started) * 1000:8.1f} ms")
            session.remove()
    print("\nall pages within the goal" if not over else f"\nover the goal: {', '.join(over)}")


if __name__ == "__main__":
    main()
