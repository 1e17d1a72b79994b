"""Campaign figures, per campaign and per step, straight from the tables:
the dashboard, the CLI and the tests read the same queries.

Each query groups by campaign, so the figures of every campaign come from
one scan of the mails (a page listing all campaigns pays once, not once
per campaign)."""
from sqlalchemy import and_, case, func, select

from ..db import session
from ..models import Enrollment, Event, Mail, StageChange

DELIVERED = ("sent", "outbox")
MAIL_FIGURES = ("sent", "delivered", "bounced", "opened", "clicked", "machine_opened", "unsubscribed")


def _mail_counts():
    return [
        func.count().label("sent"),
        func.sum(case((Mail.status.in_(DELIVERED), 1), else_=0)).label("delivered"),
        func.sum(case((Mail.status == "bounced", 1), else_=0)).label("bounced"),
        func.sum(case((Mail.opened_at.isnot(None), 1), else_=0)).label("opened"),
        func.sum(case((Mail.clicked_at.isnot(None), 1), else_=0)).label("clicked"),
        func.sum(case((and_(Mail.machine_opened_at.isnot(None), Mail.opened_at.is_(None)), 1),
                      else_=0)).label("machine_opened"),
    ]


def _only(column, slugs):
    return column.in_(slugs) if slugs is not None else column.isnot(None)


def all_step_stats(slugs=None) -> dict[str, dict[str, dict]]:
    """campaign → send step → mails, delivered, bounced, unique opens and
    clicks by people, opens by machines only, unsubscribes from that mail."""
    rows = session.execute(select(Mail.campaign, Mail.step_key, *_mail_counts())
                           .where(_only(Mail.campaign, slugs)).group_by(Mail.campaign, Mail.step_key)).all()
    unsubscribes = _unsubscribes_by_step(slugs)
    result: dict[str, dict[str, dict]] = {}
    for row in rows:
        figures = {key: int(getattr(row, key) or 0) for key in MAIL_FIGURES if key != "unsubscribed"}
        figures["unsubscribed"] = unsubscribes.get((row.campaign, row.step_key), 0)
        result.setdefault(row.campaign, {})[row.step_key] = figures
    return result


def step_stats(slug: str) -> dict[str, dict]:
    return all_step_stats([slug]).get(slug, {})


def _unsubscribes_by_step(slugs) -> dict[tuple[str, str], int]:
    """Unsubscribe events joined to the mail they came from, in SQL (the
    partial index on unsubscribe events keeps this small at 20M events)."""
    message_id = Event.properties["message_id"].as_integer()
    rows = session.execute(
        select(Mail.campaign, Mail.step_key, func.count(func.distinct(Event.lead_id)))
        .join(Mail, Mail.id == message_id)
        .where(Event.kind == "unsubscribed", _only(Mail.campaign, slugs))
        .group_by(Mail.campaign, Mail.step_key)).all()
    return {(campaign, step): count for campaign, step, count in rows}


def all_campaign_totals(slugs) -> dict[str, dict]:
    """slug → enrolled (by status), the mail figures summed over its steps,
    and conversions to MQL and SQL after entering it."""
    slugs = list(slugs)
    enrolled: dict[str, dict] = {}
    for campaign, status, count in session.execute(
            select(Enrollment.campaign, Enrollment.status, func.count())
            .where(Enrollment.campaign.in_(slugs)).group_by(Enrollment.campaign, Enrollment.status)):
        enrolled.setdefault(campaign, {})[status] = count
    conversions: dict[str, dict] = {}
    for campaign, stage, count in session.execute(
            select(Enrollment.campaign, StageChange.to_stage, func.count(func.distinct(StageChange.lead_id)))
            .join(Enrollment, and_(Enrollment.lead_id == StageChange.lead_id, Enrollment.campaign.in_(slugs),
                                   StageChange.at >= Enrollment.entered_at))
            .where(StageChange.to_stage.in_(("mql", "sql")))
            .group_by(Enrollment.campaign, StageChange.to_stage)):
        conversions.setdefault(campaign, {})[stage] = count
    steps = all_step_stats(slugs)
    totals = {}
    for slug in slugs:
        by_status, step_figures = enrolled.get(slug, {}), steps.get(slug, {}).values()
        totals[slug] = {
            "enrolled": sum(by_status.values()), "active": by_status.get("active", 0),
            "completed": by_status.get("completed", 0), "exited": by_status.get("exited", 0),
            **{key: sum(step[key] for step in step_figures) for key in MAIL_FIGURES},
            "mql": conversions.get(slug, {}).get("mql", 0), "sql": conversions.get(slug, {}).get("sql", 0)}
    return totals


def campaign_totals(slug: str) -> dict:
    return all_campaign_totals([slug])[slug]
