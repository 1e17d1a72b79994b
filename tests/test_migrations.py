"""The migrations build exactly what the models describe, on both databases
(objects made by hand in migrations, such as reporting tables, views and
trigram indexes, are left out)."""
from sqlalchemy import create_engine

from app.migrate import drift


def test_migrations_match_the_models(any_db_url):
    engine = create_engine(any_db_url)
    with engine.connect() as conn:
        assert drift(conn) == []
    engine.dispose()
