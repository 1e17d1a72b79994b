"""Benchmark: tracking hits (open pixel, click redirect) through gunicorn on
PostgreSQL, against a floor measured in the same run, and the time from the
event that crosses the MQL threshold to the salesperson's email reaching an
SMTP server; optionally `leadflow rescore` on a large log.

    .venv/bin/python bench/tracking.py [--seconds 10] [--threads 4] [--workers 2]
                                       [--rescore-leads 100000 --rescore-events 2000000]

(a) the real app serves /t/o/<token>.gif and /t/c/<token>, each hit on a
    different mail (so every hit records an event, scores it and updates the
    mail), (b) bench/bare_app.py serves GET /bare/hit/<n>: one INSERT into a
    table as wide as `events`. Same closed-loop load for both. Then a Celery
    worker on Redis and an aiosmtpd server: leads one point below the
    threshold get the crossing event through POST /api/v1/events, and the
    time until the salesperson's email arrives is measured.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.common import ROOT, LoadResult, create_database, drive, drop_database, gunicorn  # noqa: E402

SECRET = "bench-secret-" + uuid.uuid4().hex
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
          "Safari/537.36")


def drive_get(label: str, port: int, paths, seconds: float, threads: int) -> LoadResult:
    """GETs as a mail client's browser would send them; paths(thread, i)."""
    return drive(label, port, paths, None, seconds, threads, headers={"User-Agent": CHROME})


def report(result: LoadResult) -> None:
    print(f"  {result.label:<6} {result.rps:8.1f} hits/s   p50 {result.percentile(50) * 1000:7.1f} ms   "
          f"p99 {result.percentile(99) * 1000:7.1f} ms   {dict(result.statuses)}"
          + (f" errors {dict(result.errors)}" if result.errors else ""))


def seed_mails(url: str, leads: int) -> None:
    """`leads` leads with one sent mail each, delivered an hour ago (so a hit
    is a person's, not a scanner's)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO leads (email, stage, score, scores, score_state, consent, opted_out_topics,
                               created_at, updated_at, language)
            SELECT 'bench' || g || '@acme.fr', 'lead', 0, '{}', '{}', true, '[]', now(), now(), 'fr'
            FROM generate_series(1, :n) g"""), {"n": leads})
        conn.execute(text("""
            INSERT INTO mails (dedupe_key, kind, lead_id, sender, recipient, subject, html, text, headers,
                               status, attempts, next_attempt_at, created_at, sent_at)
            SELECT 'bench:' || id, 'nurture', id, 'a@b.c', email, 's', '', '', '{}', 'sent', 1,
                   now(), now() - interval '1 hour', now() - interval '1 hour'
            FROM leads"""))
    engine.dispose()


def token_paths(url: str, env: dict, kind: str):
    """Pre-minted tracking paths: one mail per hit."""
    from app import create_app
    from app.track.tokens import click_url, open_pixel_url
    app = create_app({**{k: v for k, v in env.items() if k != "LEADFLOW_INSTANCE"}, "DATABASE_URL": url})
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, lead_id FROM mails ORDER BY id")).all()
    engine.dispose()
    with app.app_context():
        if kind == "open":
            return [open_pixel_url(lead, mail).split("127.0.0.1", 1)[1] for mail, lead in rows]
        return [click_url(lead, mail, f"https://www.leadflow.example/p/{mail}").split("127.0.0.1", 1)[1]
                for mail, lead in rows]


def crossing_latency(url: str, env: dict, samples: int) -> list[float]:
    """Seconds from the API answer for the crossing event to the email at the SMTP server."""
    from tests.services import CeleryWorker, SmtpSink
    sink = SmtpSink().start()
    broker = "redis://127.0.0.1:6379/14"
    import redis
    redis.Redis.from_url(broker).flushdb()
    settings = {**env, "DATABASE_URL": url, "CELERY_BROKER_URL": broker, "SMTP_URL": sink.url}
    from app import create_app, tasks
    from app.api.auth import create_token
    from app.db import session
    from app.models import User
    app = create_app({**{k: v for k, v in settings.items() if k != "LEADFLOW_INSTANCE"}})
    with app.app_context():
        session.add(User(email="claire.sales@leadflow.example", name="Claire", role="sales",
                         password_hash="x", active=True))
        _, token = create_token("bench")
        session.commit()
    worker = CeleryWorker(settings, concurrency=2).start()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    latencies = []
    try:
        for i in range(samples):
            email = f"crossing{i}@acme.fr"
            for kind, props in (("newsletter_subscribed", {}), ("asset_downloaded", {"asset": "ebook"}),
                                ("webinar_registered", {"webinar": "w1"})):  # 10 + 15 + 15 = 40
                assert client.post("/api/v1/events", json={"email": email, "kind": kind, "properties": props},
                                   headers=headers).status_code == 201
            client.post("/api/v1/events", json={"email": email, "kind": "article_read",
                                                "properties": {"article": "a"}}, headers=headers)
            client.post("/api/v1/events", json={"email": email, "kind": "linkedin_followed"}, headers=headers)
            before = len(sink.messages)
            response = client.post("/api/v1/events", json={"email": email, "kind": "page_visited",
                                                          "properties": {"url": "https://x"}}, headers=headers)
            answered = time.perf_counter()
            assert response.get_json()["stage"] == "mql", response.get_json()
            sink.wait_for(lambda m, n=before: len(sink.messages) > n, timeout=30)
            latencies.append(time.perf_counter() - answered)
    finally:
        worker.stop()
        sink.stop()
        tasks.configure_broker("")
    return latencies


def rescore_timing(url: str, leads: int, events: int) -> None:
    from app import create_app
    from app.scoring import rescore_all
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE leads, events, score_history RESTART IDENTITY CASCADE"))
        conn.execute(text("""
            INSERT INTO leads (email, stage, score, scores, score_state, consent, opted_out_topics,
                               created_at, updated_at, country, job_title)
            SELECT 'r' || g || '@acme.fr', 'lead', 0, '{}', '{}', true, '[]', now(), now(),
                   (ARRAY['FR','DE','US','BE'])[1 + g % 4], (ARRAY['CEO','Engineer','Head of sales'])[1 + g % 3]
            FROM generate_series(1, :n) g"""), {"n": leads})
        conn.execute(text("""
            INSERT INTO events (lead_id, kind, key, properties, machine, points, occurred_at, created_at)
            SELECT 1 + (g % :n),
                   (ARRAY['page_visited','article_read','email_opened','link_clicked','asset_downloaded'])[1 + g % 5],
                   NULL,
                   jsonb_build_object('article', 'a' || (g % 7), 'message_id', g % 11, 'url', 'u' || (g % 3),
                                      'asset', 'x' || (g % 5)),
                   false, 0, now() - (g % 200) * interval '1 day', now()
            FROM generate_series(1, :e) g"""), {"n": leads, "e": events})
        conn.execute(text("ANALYZE leads; ANALYZE events"))
    print(f"  seeded {leads} leads, {events} events in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET})
    with app.app_context():
        started = time.perf_counter()
        counts = rescore_all(batch_size=1000)
        took = time.perf_counter() - started
    print(f"  leadflow rescore: {counts['leads']} leads, {counts['events']} events in {took:.1f} s "
          f"({counts['events'] / took:,.0f} events/s), {counts['changed_leads']} scores changed")
    # The periodic decay pass reads cached states only: its cost per lead.
    from datetime import timedelta

    from app.models import utcnow
    from app.scoring import decay_scores
    with app.app_context():
        started = time.perf_counter()
        cooled = decay_scores(as_of=utcnow() + timedelta(days=7), batch_size=1000)
        took = time.perf_counter() - started
    print(f"  decay pass: {leads} leads in {took:.1f} s ({leads / took:,.0f} leads/s), {cooled} cooled")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crossings", type=int, default=5, help="MQL crossings to time (0: skip)")
    parser.add_argument("--rescore-leads", type=int, default=0)
    parser.add_argument("--rescore-events", type=int, default=0)
    args = parser.parse_args(argv)

    url = create_database("leadflow_bench_tracking")
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    try:
        from app import migrate
        from bench.bare_app import metadata
        migrate.upgrade(url)
        engine = create_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        (workdir / "instance").mkdir()
        env = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "LEADFLOW_INSTANCE": str(workdir / "instance"),
               "REDIS_URL": "", "CELERY_BROKER_URL": "", "BASE_URL": "http://127.0.0.1",
               "LEADFLOW_FORMS_DIR": str(ROOT / "forms")}
        hits = int(args.seconds * 2000 * 2) + 1000  # more mails than any run can hit
        seed_mails(url, hits)
        print(f"tracking bench: {args.seconds:g} s per target, {args.threads} client threads, "
              f"gunicorn --workers {args.workers} (sync), {os.cpu_count()} CPUs, {hits} mails seeded")
        results = {}
        with gunicorn("bench.bare_app:create_app()", env, workers=args.workers, ready_path="/health") as port:
            results["bare"] = drive_get("bare", port, lambda t, i: f"/bare/hit/{t * 1_000_000 + i}",
                                        args.seconds, args.threads)
        opens, clicks = token_paths(url, env, "open"), token_paths(url, env, "click")
        # pixel hits take the first half of the mails, clicks the second: each
        # click is then also the first open of its mail
        half = len(opens) // 2
        per_thread = half // args.threads
        with gunicorn("app:create_app()", env, workers=args.workers, ready_path="/f/contact") as port:
            results["pixel"] = drive_get("pixel", port, lambda t, i: opens[t * per_thread + i],
                                         args.seconds, args.threads)
            results["click"] = drive_get("click", port, lambda t, i: clicks[half + t * per_thread + i],
                                         args.seconds, args.threads)
        for result in results.values():
            report(result)
        for label in ("pixel", "click"):
            print(f"  ratio {label}/bare: throughput {results[label].rps / results['bare'].rps:.2f}")
        with create_engine(url).connect() as conn:
            counted = conn.execute(text("SELECT count(*) FROM events WHERE NOT machine")).scalar()
        expected = results["pixel"].statuses[200] + 2 * results["click"].statuses[302]
        print(f"  events recorded {counted} for {expected} expected (one per open, open + click per click)")
        if args.crossings:
            latencies = crossing_latency(url, env, args.crossings)
            print(f"  crossing → salesperson's email at the SMTP server: median "
                  f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                  f"over {len(latencies)} crossings (Celery worker on Redis)")
        if args.rescore_leads:
            rescore_timing(url, args.rescore_leads, args.rescore_events or args.rescore_leads * 20)
    finally:
        drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
