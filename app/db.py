"""The database session: one scoped session per thread, bound at app start.

Plain SQLAlchemy 2 rather than Flask-SQLAlchemy so that Celery tasks, CLI
commands and benchmarks use the very same session without a request.
"""
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker


class Base(DeclarativeBase):
    pass


session = scoped_session(sessionmaker(expire_on_commit=False))
_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine per URL per process (a worker disposes it after fork)."""
    if url not in _engines:
        kwargs = {"pool_pre_ping": True, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        _engines[url] = engine
    return _engines[url]


def _sqlite_pragmas(dbapi_conn, _record):
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def bind(url: str) -> Engine:
    session.remove()
    engine = engine_for(url)
    session.configure(bind=engine)
    return engine


def dispose_all() -> None:
    """Called in a forked worker: never share pooled connections across fork."""
    for engine in _engines.values():
        engine.dispose(close=False)


def insert(model):
    """INSERT for the bound database's dialect, so callers can use
    ON CONFLICT (both PostgreSQL and SQLite have it)."""
    from sqlalchemy.dialects import postgresql, sqlite
    return (postgresql.insert if is_postgres() else sqlite.insert)(model)


def is_postgres() -> bool:
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def transaction():
    """Commit on success, roll back on error, for code outside a request."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
