"""Benchmark: the JSON submit path (POST /f/contact/submit) under gunicorn,
against a floor measured in the same run.

    .venv/bin/python bench/capture.py [--seconds 10] [--threads 4] [--workers 2]

Creates a fresh PostgreSQL database, runs the migrations, then serves
  (a) the real app, `app:create_app()`, configured by environment variables
      as in production (rate limit set out of reach: there is no variable to
      switch it off), and
  (b) bench/bare_app.py: one endpoint doing one INSERT into a table as wide
      as `submissions`, with SQLAlchemy, on the same database,
each with gunicorn's sync workers, and drives both with the same closed-loop
load: valid submissions with aged render tokens signed with the same
SECRET_KEY and unique emails. Prints requests/s, p50/p99 latency, the ratio
real/bare, and checks that every request answered is a stored row (exits 1
otherwise).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from itsdangerous import URLSafeTimedSerializer  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from bench.common import ROOT, create_database, drive, drop_database, gunicorn  # noqa: E402

SECRET = "bench-secret-" + uuid.uuid4().hex
SLUG = "contact"


def aged_token(slug: str, seconds: float = 12) -> str:
    """A render token minted `seconds` ago, as the embed script would hold it."""
    return URLSafeTimedSerializer(SECRET, salt="form-render").dumps(
        {"f": slug, "t": int((time.time() - seconds) * 1000)})


def body_factory(run: str):
    tokens = {}

    def make_body(thread: int, i: int) -> bytes:
        # One token per client, as one page load would give; fill time grows.
        token = tokens.setdefault(thread, aged_token(SLUG))
        fields = {"name": "Camille Martin", "company": "Boulangeries Réunies",
                  "email": f"camille.{run}.{thread}.{i}@boulangeries.fr",
                  "job_title": "Directrice marketing", "segment": "pme", "intent": "contact_sales",
                  "message": "Nous voulons automatiser nos relances.", "consent": True,
                  "utm_source": "newsletter", "utm_medium": "email"}
        return json.dumps({"fields": fields, "token": token}).encode()
    return make_body


def report(result) -> None:
    errors = f", errors {dict(result.errors)}" if result.errors else ""
    print(f"  {result.label:<5} {result.rps:8.1f} req/s   p50 {result.percentile(50) * 1000:7.1f} ms   "
          f"p99 {result.percentile(99) * 1000:7.1f} ms   sent {result.sent}, answered "
          f"{result.completed} {dict(result.statuses)}{errors}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="load duration per app (default 10)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of load before measuring (default 1)")
    parser.add_argument("--database", default="leadflow_bench", help="database to (re)create")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    url = create_database(args.database)
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    failures = []
    try:
        from app import migrate
        from app.models import Lead, Submission
        from bench.bare_app import metadata
        migrate.upgrade(url)
        engine = create_engine(url)
        metadata.create_all(engine)
        shutil.copytree(ROOT / "forms", workdir / "forms")
        (workdir / "instance").mkdir()
        env = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "LEADFLOW_FORMS_DIR": str(workdir / "forms"),
               "LEADFLOW_INSTANCE": str(workdir / "instance"), "SUBMIT_RATE_LIMIT": "1000000/second",
               "REDIS_URL": "", "CELERY_BROKER_URL": "", "BASE_URL": "http://127.0.0.1"}
        log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 (closed with the run)
        print(f"capture bench: {args.seconds:g} s per app after {args.warmup:g} s warm-up, "
              f"{args.threads} client threads, gunicorn --workers {args.workers} (sync), "
              f"PostgreSQL database {args.database}, {os.cpu_count()} CPUs")

        results = {}
        for label, target, ready, table in (
                ("bare", "bench.bare_app:create_app()", "/health", "bare_submissions"),
                ("real", "app:create_app()", f"/f/{SLUG}", "submissions")):
            with gunicorn(target, env, workers=args.workers, ready_path=ready, log=log) as port:
                path = f"/f/{SLUG}/submit"
                warm = drive(label, port, path, body_factory(f"w{label}"), args.warmup, args.threads) \
                    if args.warmup > 0 else None
                result = drive(label, port, path, body_factory(label), args.seconds, args.threads)
            results[label] = result
            report(result)
            # Every request sent (warm-up included) must be an answered 201 and one row.
            sent = result.sent + (warm.sent if warm else 0)
            created = result.statuses[201] + (warm.statuses[201] if warm else 0)
            with engine.connect() as conn:
                rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            print(f"        rows stored {rows} / requests sent {sent} (201 answers {created})")
            if not (rows == sent == created):
                failures.append(f"{label}: {rows} rows stored for {sent} requests sent, {created} answered 201")
            if label == "real":
                with engine.connect() as conn:
                    verdicts = dict(conn.execute(select(Submission.verdict, func.count())
                                                 .group_by(Submission.verdict)).all())
                    leads = conn.execute(select(func.count()).select_from(Lead)).scalar()
                print(f"        verdicts {verdicts}, leads {leads}")
                if set(verdicts) != {"accepted"} or leads != rows:
                    failures.append(f"real: verdicts {verdicts} and {leads} leads for {rows} submissions")

        bare, real = results["bare"], results["real"]
        print(f"  ratio real/bare: throughput {real.rps / bare.rps:.2f}, "
              f"p50 latency {real.percentile(50) / bare.percentile(50):.2f}x, "
              f"p99 latency {real.percentile(99) / bare.percentile(99):.2f}x")
        engine.dispose()
    except BaseException:
        failures.append("the run stopped")
        raise
    finally:
        if failures and (workdir / "gunicorn.log").exists():
            tail = (workdir / "gunicorn.log").read_text(errors="replace")[-3000:]
            print(f"gunicorn log (tail):\n{tail}", file=sys.stderr)
        if not args.keep:
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
