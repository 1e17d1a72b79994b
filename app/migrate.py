"""Alembic driven from code, so `leadflow db upgrade` needs no alembic.ini."""
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=True)


def include_object(obj, name, type_, reflected, compare_to):
    """Autogenerate manages what the models define; objects made by hand in
    migrations (reporting tables and views, trigram indexes) are left alone."""
    return not (reflected and compare_to is None)


def drift(connection) -> list:
    """What autogenerate would change: empty when the migrations build
    exactly what the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from . import models  # noqa: F401  (registers the tables)
    from .db import Base
    context = MigrationContext.configure(connection, opts={"include_object": include_object})
    return compare_metadata(context, Base.metadata)
