"""Benchmark: the nurture engine on PostgreSQL.

    .venv/bin/python bench/nurture.py [--emails 2000] [--sizes 10000,100000,1000000] [--due 1000]
                                      [--rounds 3] [--plan] [--keep]

(a) end to end: `run_due` sends --emails due enrollments (claim a batch with
    FOR UPDATE SKIP LOCKED, decide, render, write, then claim each mail row,
    send it over one reused SMTP connection to an aiosmtpd sink running in a
    process of its own, record it as sent), in emails per second;
(b) the floor, in the same run: the sink's own receive rate, from a bare
    smtplib loop over one connection sending the very messages of (a)
    (same sizes, already built), and the ratio (a)/(b);
(c) the tick's cost when the due work is small and the tables are not:
    --due (1,000) due enrollments among each of --sizes leads, in OUTBOX mode
    (no SMTP, to isolate the engine from the mail server): the time of
    `process_batch` x5 (batches of 200: claim, decide, render, write) and of
    delivering those mails to the outbox, with the claim query's own time
    and plan (EXPLAIN ANALYZE: does it use ix_enrollments_due?). Every lead
    but the due ones is enrolled too: 90 % wait at a step due in 1-4 days
    (and already got their first email: one `mails` row each), 10 % have
    completed the campaign (due_at in the past, status completed); each lead
    has one form_submitted event. Seeding uses INSERT ... SELECT
    generate_series, then VACUUM (ANALYZE) and CHECKPOINT (the seed column).
    Each size runs --rounds ticks (the due enrollments are put back between
    rounds) and shows the median: the figures of a shared machine wander.

The clock is a Monday 10:00 in Paris a few weeks ahead (the send window is
open), passed to the engine as `now`. Creates and drops the database
leadflow_bench_nurture (--keep to keep it).
"""
import argparse
import os
import re
import shutil
import smtplib
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, select, text  # noqa: E402

from bench.common import create_database, drop_database, smtp_sink  # noqa: E402

TABLES = "leads, events, enrollments, mails, score_history, stage_changes, submissions"


def monday_10_paris(weeks_ahead: int = 3) -> datetime:
    paris = ZoneInfo("Europe/Paris")
    today = datetime.now(paris).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 + 7 * weeks_ahead)
    return datetime.combine(monday, datetime.min.time().replace(hour=10), tzinfo=paris).astimezone(timezone.utc)


def seed(conn, leads: int, due: int, now: datetime) -> dict:
    """`leads` French leads with consent; the first `due` enrolled and due at
    `now` at nurture-fr's first step, the others enrolled and not due."""
    timings = {}
    params = {"n": leads, "due": due, "now": now}
    steps = [
        ("leads", """
            INSERT INTO leads (email, name, stage, score, scores, score_state, opted_out_topics, consent,
                               language, first_form, created_at, updated_at)
            SELECT 'lead' || g || '@bench.example', 'Prénom' || g || ' Nom', 'lead', 10, '{}', '{}', '[]',
                   true, 'fr', 'contact', :now - interval '10 days', :now - interval '10 days'
            FROM generate_series(1, :n) AS g"""),
        ("events", """
            INSERT INTO events (lead_id, kind, key, properties, machine, points, rule, source, occurred_at,
                                created_at)
            SELECT id, 'form_submitted', 'submission:' || id, '{"form": "contact"}', false, 10,
                   'form_submitted', 'form:contact', :now - interval '10 days', :now - interval '10 days'
            FROM leads"""),
        ("enrollments", """
            INSERT INTO enrollments (campaign, lead_id, step_key, waiting, status, exit_reason, trigger, due_at,
                                     entered_at, finished_at, path)
            SELECT 'nurture-fr', id,
                   CASE WHEN id <= :due THEN 'bienvenue' WHEN id % 10 = 0 THEN 'fin' ELSE 'pause-1' END,
                   id > :due AND id % 10 <> 0,
                   CASE WHEN id > :due AND id % 10 = 0 THEN 'completed' ELSE 'active' END,
                   CASE WHEN id > :due AND id % 10 = 0 THEN 'exit step fin' END,
                   'lead_accepted',
                   CASE WHEN id <= :due THEN :now - (id % 600) * interval '1 second'
                        WHEN id % 10 = 0 THEN :now - interval '2 days'
                        ELSE :now + interval '1 day' + (id % 259200) * interval '1 second' END,
                   :now - interval '10 days',
                   CASE WHEN id > :due AND id % 10 = 0 THEN :now - interval '2 days' END,
                   CASE WHEN id <= :due THEN '[]'::jsonb ELSE '["bienvenue", "pause-1"]'::jsonb END
            FROM leads"""),
        ("mails", """
            INSERT INTO mails (dedupe_key, kind, lead_id, sender, recipient, subject, html, text, headers, status,
                               attempts, next_attempt_at, created_at, sent_at, enrollment_id, campaign, step_key)
            SELECT 'step:' || e.id || ':bienvenue:0', 'nurture', e.lead_id,
                   'Camille de leadflow <camille@leadflow.example>', 'lead' || e.lead_id || '@bench.example',
                   'Vos relances commerciales, sans y penser', '', '', '{}', 'sent', 1,
                   :now - interval '9 days', :now - interval '9 days', :now - interval '9 days', e.id,
                   'nurture-fr', 'bienvenue'
            FROM enrollments e WHERE e.lead_id > :due"""),
    ]
    for name, sql in steps:
        started = time.perf_counter()
        conn.execute(text(sql), params)
        conn.commit()
        timings[name] = time.perf_counter() - started
    # Settle what the bulk load left behind (visibility map, statistics, dirty
    # pages), as a live database would have, so that the tick is not measured
    # against the load's own checkpoint and autovacuum.
    started = time.perf_counter()
    autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
    autocommit.exec_driver_sql("VACUUM (ANALYZE) leads, events, enrollments, mails")
    autocommit.exec_driver_sql("CHECKPOINT")
    timings["vacuum"] = time.perf_counter() - started
    return timings


def reset(conn) -> None:
    conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    conn.commit()


def claim_plan(now: datetime, batch: int = 200) -> tuple[str, float, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the very statement engine.claim_due runs
    (caught on its way to the driver), in a transaction rolled back after:
    (plan, execution ms, index used)."""
    from app.db import session
    from app.nurture.engine import claim_due
    caught = []

    def catch(conn, cursor, statement, parameters, context, executemany):
        caught.append((statement, parameters))
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", catch)
    try:
        claim_due(now, batch)
    finally:
        event.remove(engine, "before_cursor_execute", catch)
        session.rollback()
    statement, parameters = caught[-1]
    connection = session.connection()
    plan = "\n".join(row[0] for row in connection.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters))
    session.rollback()
    ms = float(re.search(r"Execution Time: ([0-9.]+) ms", plan).group(1))
    index = re.search(r"Index (?:Only )?Scan (?:Backward )?using (\w+)", plan)
    return plan, ms, index.group(1) if index else "none (no index scan)"


def statuses() -> dict:
    from app.db import session
    from app.models import Mail
    from sqlalchemy import func
    rows = dict(session.execute(select(Mail.status, func.count()).group_by(Mail.status)).all())
    session.rollback()
    return rows


def end_to_end(app, conn, sink, emails: int, now: datetime) -> tuple[float, list[tuple[str, str, bytes]]]:
    """(a): run_due for `emails` due enrollments to the sink; returns
    (seconds, the messages it sent as (sender, recipient, bytes))."""
    from app.db import session
    from app.mailer import _address, build_message, to_bytes
    from app.models import Mail
    from app.nurture.engine import run_due
    reset(conn)
    seed(conn, emails, emails, now)
    app.config["SMTP_URL"] = sink.url
    before = sink.messages.value
    with app.app_context():
        started = time.perf_counter()
        sent = run_due(now)
        seconds = time.perf_counter() - started
        counts = statuses()
        if sent != emails or counts != {"sent": emails} or sink.messages.value - before != emails:
            raise SystemExit(f"(a) sent {sent}, rows {counts}, sink got {sink.messages.value - before}: "
                             f"expected {emails} of each")
        messages = [(_address(m.sender), m.recipient, to_bytes(build_message(m)))
                    for m in session.execute(select(Mail).order_by(Mail.id)).scalars()]
        session.remove()
    return seconds, messages


def bare_loop(sink, messages) -> float:
    """(b): the same messages, one smtplib connection, nothing else."""
    before = sink.messages.value
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
    started = time.perf_counter()
    for sender, recipient, data in messages:
        client.sendmail(sender, [recipient], data)
    seconds = time.perf_counter() - started
    client.quit()
    if sink.messages.value - before != len(messages):
        raise SystemExit(f"(b) the sink got {sink.messages.value - before} of {len(messages)}")
    return seconds


def reset_due(conn, due: int, now: datetime) -> None:
    """Put the `due` first leads back at their first step, due, for another round."""
    conn.execute(text("DELETE FROM mails WHERE lead_id <= :due"), {"due": due})
    conn.execute(text("""
        UPDATE enrollments SET step_key = 'bienvenue', waiting = false, status = 'active', exit_reason = NULL,
               finished_at = NULL, path = '[]', due_at = :now - (lead_id % 600) * interval '1 second'
        WHERE lead_id <= :due"""), {"due": due, "now": now})
    conn.commit()


def tick_cost(app, conn, leads: int, due: int, now: datetime, rounds: int) -> dict:
    """(c): seed, then `rounds` times: time process_batch x5 and the outbox
    delivery, putting the due enrollments back between rounds."""
    from app.db import session
    from app.nurture.engine import deliver_all, process_batch
    reset(conn)
    seeded = seed(conn, leads, due, now)
    app.config["SMTP_URL"] = ""  # outbox mode: the engine alone
    measured = []
    with app.app_context():
        plan, claim_ms, index = claim_plan(now)
        for round_ in range(rounds):
            if round_:
                reset_due(conn, due, now)
            batches, mail_ids, claimed = 0, [], 0
            started = time.perf_counter()
            while batches < 5:
                ids, count = process_batch(now, 200)
                mail_ids += ids
                claimed += count
                batches += 1
                if count < 200:
                    break
            decided = time.perf_counter() - started
            delivered = deliver_all(mail_ids, now)
            total = time.perf_counter() - started
            counts = statuses()
            if claimed != due or delivered != due or counts.get("outbox") != due:
                raise SystemExit(f"(c) at {leads} leads: claimed {claimed}, delivered {delivered}, rows {counts}")
            measured.append((total, decided, total - decided))
        _, empty_ms, _ = claim_plan(now)  # nothing due any more: an idle tick's claim
        session.remove()
    total, decided, deliver = sorted(measured)[len(measured) // 2]  # the median round
    return {"leads": leads, "seed": seeded, "claim_ms": claim_ms, "index": index, "plan": plan,
            "process": decided, "deliver": deliver, "total": total, "empty_claim_ms": empty_ms,
            "min": min(m[0] for m in measured), "max": max(m[0] for m in measured)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=2000, help="due enrollments for (a) and (b) (default 2000)")
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="lead counts for (c), comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--due", type=int, default=1000, help="due enrollments in (c) (default 1000)")
    parser.add_argument("--database", default="leadflow_bench_nurture", help="database to (re)create")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--rounds", type=int, default=3, help="tick rounds per size in (c), median shown (default 3)")
    parser.add_argument("--plan", action="store_true", help="print the claim query's full plan at each size")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    url = create_database(args.database)
    workdir = tempfile.mkdtemp(prefix="leadflow-bench-nurture-")
    os.environ.setdefault("LEADFLOW_INSTANCE", workdir)
    try:
        from sqlalchemy import create_engine

        from app import create_app, migrate
        migrate.upgrade(url)
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-secret", "CELERY_BROKER_URL": "",
                          "REDIS_URL": "", "SMTP_URL": "", "BASE_URL": "https://leadflow.example",
                          "INSTANCE_PATH": workdir})
        engine = create_engine(url)
        now = monday_10_paris()
        print(f"nurture bench: PostgreSQL database {args.database}, {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f}), clock {now.isoformat()} (Monday 10:00 Europe/Paris)")
        with engine.connect() as conn, smtp_sink() as sink:
            seconds, messages = end_to_end(app, conn, sink, args.emails, now)
            bare = bare_loop(sink, messages)
            size = sum(len(m[2]) for m in messages) / len(messages)
            real_rate, bare_rate = args.emails / seconds, len(messages) / bare
            print(f"\n(a) end to end, run_due -> aiosmtpd: {args.emails} emails in {seconds:.2f} s = "
                  f"{real_rate:8.1f} emails/s  (mean message {size / 1024:.1f} KiB)")
            print(f"(b) bare smtplib loop, same messages:  {len(messages)} emails in {bare:.2f} s = "
                  f"{bare_rate:8.1f} emails/s")
            print(f"    ratio (a)/(b): {real_rate / bare_rate:.2f}")

            if sizes:
                print(f"\n(c) the tick's cost, OUTBOX mode (no SMTP): {args.due} due enrollments among N leads, "
                      f"median of {args.rounds} rounds")
                print(f"    {'leads':>9} {'seed s':>7} {'claim ms':>8}  {'index used':<19} {'5 batches s':>11} "
                      f"{'outbox s':>8} {'tick s':>7} {'(min-max)':>12} {'ms/email':>8} {'idle claim ms':>13}")
            results = []
            for leads in sizes:
                result = tick_cost(app, conn, leads, args.due, now, args.rounds)
                results.append(result)
                print(f"    {leads:>9} {sum(result['seed'].values()):7.1f} {result['claim_ms']:8.2f}  "
                      f"{result['index']:<19} {result['process']:11.2f} {result['deliver']:8.2f} "
                      f"{result['total']:7.2f} {result['min']:5.2f}-{result['max']:<6.2f} "
                      f"{result['total'] * 1000 / args.due:8.2f} {result['empty_claim_ms']:13.2f}", flush=True)
                if args.plan:
                    print(result["plan"])
            if len(results) > 1:
                first, last = results[0], results[-1]
                print(f"    tick at {last['leads']} leads / tick at {first['leads']} leads: "
                      f"{last['total'] / first['total']:.2f}")
            largest = results[-1] if results else None
            if largest:
                print(f"\nclaim query plan at {largest['leads']} leads (EXPLAIN ANALYZE, first batch):")
                print("    " + largest["plan"].replace("\n", "\n    "))
        engine.dispose()
    finally:
        from app import db
        db.session.remove()
        for bound in db._engines.values():
            bound.dispose()
        if not args.keep:
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
