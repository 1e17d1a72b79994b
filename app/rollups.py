"""Rollups kept by PostgreSQL triggers (migrations 0008 and 0010): triggers
append delta rows in the same transaction as each change, so a figure is
exact the moment the change commits and concurrent writers only insert
(no hot counter row to queue on); fold() adds the deltas into the totals
now and then (the sweep), so reads stay small. Readers use a `*_now` view:
totals plus the deltas not folded yet (on SQLite, the figures counted live)."""
from sqlalchemy import text

from .db import is_postgres, session


def fold_sql(totals: str, deltas: str, keys: tuple[str, ...], figures: tuple[str, ...]) -> str:
    """One statement that moves every delta into the totals, returning how
    many delta rows it moved. Deleting and adding happen in one statement, so
    two concurrent folds never count a row twice."""
    names, key_names = ", ".join(figures), ", ".join(keys)
    return f"""
    WITH moved AS (DELETE FROM {deltas} RETURNING *),
    summed AS (SELECT {key_names}, count(*) AS rows, {', '.join(f'sum({n}) AS {n}' for n in figures)}
               FROM moved GROUP BY {key_names}),
    added AS (INSERT INTO {totals} ({key_names}, {names})
              SELECT {key_names}, {names} FROM summed
              ON CONFLICT ({key_names}) DO UPDATE SET
              {', '.join(f'{n} = {totals}.{n} + excluded.{n}' for n in figures)})
    SELECT coalesce(sum(rows), 0) FROM summed"""


def fold(statement: str) -> int:
    """PostgreSQL: run a fold_sql() statement in a transaction of its own."""
    if not is_postgres():
        return 0
    with session.get_bind().begin() as conn:
        return conn.execute(text(statement)).scalar_one()
