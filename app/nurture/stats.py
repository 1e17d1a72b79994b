"""Campaign figures, per campaign and per step: the dashboard, the CLI and
the tests read the same queries.

They come from `campaign_figures_now` (migration 0008): on PostgreSQL a
rollup that triggers keep exact in the same transaction as each change, so
a page listing every campaign reads a few rows, not the million mails; on
SQLite a view computing them from the tables. `campaign_figures_live`
computes them from the tables on both, for checking the rollup."""
from sqlalchemy import text

from .. import rollups
from ..db import is_postgres, session
from ..rollups import fold_sql

MAIL_FIGURES = ("sent", "delivered", "bounced", "opened", "clicked", "machine_opened", "unsubscribed")
CAMPAIGN_FIGURES = ("enrolled", "active", "completed", "exited", "mql", "sql")
FIGURES = MAIL_FIGURES + CAMPAIGN_FIGURES


def figure_rows(slugs=None, source: str = "campaign_figures_now") -> dict[tuple[str, str], dict]:
    """(campaign, step key) → figures; step key '' holds the campaign's own."""
    query = f"SELECT campaign, step_key, {', '.join(FIGURES)} FROM {source}"
    params = {}
    if slugs is not None:
        slugs = list(slugs)
        if not slugs:
            return {}
        names = [f":s{i}" for i in range(len(slugs))]
        query += f" WHERE campaign IN ({', '.join(names)})"
        params = {f"s{i}": slug for i, slug in enumerate(slugs)}
    return {(row.campaign, row.step_key): {name: int(getattr(row, name) or 0) for name in FIGURES}
            for row in session.execute(text(query), params)}


def all_step_stats(slugs=None) -> dict[str, dict[str, dict]]:
    """campaign → send step → mails, delivered, bounced, unique opens and
    clicks by people, opens by machines only, unsubscribes from that mail."""
    result: dict[str, dict[str, dict]] = {}
    for (campaign, step), figures in figure_rows(slugs).items():
        if step:
            result.setdefault(campaign, {})[step] = {name: figures[name] for name in MAIL_FIGURES}
    return result


def step_stats(slug: str) -> dict[str, dict]:
    return all_step_stats([slug]).get(slug, {})


def all_campaign_totals(slugs) -> dict[str, dict]:
    """slug → enrolled (by status), the mail figures summed over its steps,
    and the leads that became MQL and SQL after entering it."""
    slugs = list(slugs)
    totals = {slug: dict.fromkeys(FIGURES, 0) for slug in slugs}
    for (campaign, step), figures in figure_rows(slugs).items():
        wanted = CAMPAIGN_FIGURES if step == "" else MAIL_FIGURES
        for name in wanted:
            totals[campaign][name] += figures[name]
    return totals


def campaign_totals(slug: str) -> dict:
    return all_campaign_totals([slug])[slug]


_NAMES = ", ".join(FIGURES)
FOLD = fold_sql("campaign_figures", "campaign_figure_deltas", ("campaign", "step_key"), FIGURES)


def fold() -> int:
    """PostgreSQL: add the deltas written since the last fold into the totals
    (app/rollups.py); returns how many were folded."""
    return rollups.fold(FOLD)


# Every figure from the tables: the sets of people first (their triggers
# write deltas, dropped after), then the totals.
REBUILD = [
    "TRUNCATE campaign_figures, campaign_figure_deltas, campaign_unsubscribes, campaign_conversions",
    "INSERT INTO campaign_unsubscribes SELECT * FROM campaign_unsubscribes_live",
    "INSERT INTO campaign_conversions SELECT * FROM campaign_conversions_live",
    "TRUNCATE campaign_figure_deltas",
    f"INSERT INTO campaign_figures (campaign, step_key, {_NAMES}) SELECT * FROM campaign_figures_live",
]


def rebuild() -> None:
    """PostgreSQL: every figure from the tables (after a bulk load with the
    triggers off, or to repair). Locks the tables it reads against writers."""
    if not is_postgres():
        return
    with session.get_bind().begin() as conn:
        conn.execute(text("LOCK TABLE mails, enrollments, events, stage_changes IN SHARE MODE"))
        for statement in REBUILD:
            conn.execute(text(statement))
