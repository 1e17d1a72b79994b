"""Small helpers shared by the tests: ports, databases, live servers."""
import os
import socket
import threading
from contextlib import contextmanager

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

PG_ADMIN_URL = os.environ.get("LEADFLOW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LEADFLOW_TEST_REDIS", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_pg_database(name: str) -> str:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL."""
    admin = make_url(PG_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    """Drop a test database (its engine disposed first), so runs leave none behind."""
    from app.db import _engines
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    admin = make_url(PG_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


# Made by the migrations, not the models: rollups that TRUNCATE's cascade
# does not reach (it fires no row triggers either).
ROLLUP_TABLES = ("campaign_figures", "campaign_figure_deltas", "report_dirty_leads", "lead_counts",
                 "lead_count_deltas")


def truncate_all(engine) -> None:
    from app.db import Base
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables + list(ROLLUP_TABLES))} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@contextmanager
def live_server(app, port: int | None = None):
    """The app served by werkzeug in a thread, on a real socket."""
    port = port or free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


def redis_available() -> bool:
    try:
        import redis
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


def next_monday_10_paris(weeks_ahead: int = 2):
    """A Monday at 10:00 in Paris, at least `weeks_ahead` weeks from now (UTC).
    Tests that drive the nurture engine with a stand-in clock need one in the
    future: enrollments are due from the real time they were made."""
    from datetime import datetime, time, timedelta, timezone
    from zoneinfo import ZoneInfo
    paris = ZoneInfo("Europe/Paris")
    day = datetime.now(paris).date() + timedelta(weeks=weeks_ahead)
    day += timedelta(days=(7 - day.weekday()) % 7)
    return datetime.combine(day, time(10, 0), tzinfo=paris).astimezone(timezone.utc)


def run_together(*writers) -> None:
    """Each writer in its own thread and connection; re-raises their errors."""
    errors = []

    def guarded(writer):
        try:
            writer()
        except Exception as error:  # shown by the assertion below
            errors.append(error)
    threads = [threading.Thread(target=guarded, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
