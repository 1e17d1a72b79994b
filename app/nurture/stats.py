"""Campaign figures, per campaign and per step, straight from the tables:
the dashboard, the CLI and the tests read the same queries."""
from sqlalchemy import and_, case, func, select

from ..db import session
from ..models import Enrollment, Event, Mail, StageChange

DELIVERED = ("sent", "outbox")


def _mail_counts(*where):
    return [
        func.count().label("mails"),
        func.sum(case((Mail.status.in_(DELIVERED), 1), else_=0)).label("delivered"),
        func.sum(case((Mail.status == "bounced", 1), else_=0)).label("bounced"),
        func.sum(case((Mail.opened_at.isnot(None), 1), else_=0)).label("opened"),
        func.sum(case((Mail.clicked_at.isnot(None), 1), else_=0)).label("clicked"),
        func.sum(case((and_(Mail.machine_opened_at.isnot(None), Mail.opened_at.is_(None)), 1),
                      else_=0)).label("machine_only"),
    ]


def step_stats(slug: str) -> dict[str, dict]:
    """Per send step: mails, delivered, bounced, unique opens and clicks by
    people, opens by machines only, unsubscribes from that step's mail."""
    rows = session.execute(select(Mail.step_key, *_mail_counts()).where(Mail.campaign == slug)
                           .group_by(Mail.step_key)).all()
    unsubscribes = _unsubscribes_by_step(slug)
    return {row.step_key: {"sent": row.mails, "delivered": row.delivered or 0, "bounced": row.bounced or 0,
                           "opened": row.opened or 0, "clicked": row.clicked or 0,
                           "machine_opened": row.machine_only or 0,
                           "unsubscribed": unsubscribes.get(row.step_key, 0)}
            for row in rows}


def _unsubscribes_by_step(slug: str) -> dict[str, int]:
    mails = {mail_id: step for mail_id, step in session.execute(
        select(Mail.id, Mail.step_key).where(Mail.campaign == slug))}
    counts: dict[str, int] = {}
    if not mails:
        return counts
    for properties, in session.execute(select(Event.properties).where(
            Event.kind == "unsubscribed", Event.lead_id.in_(
                select(Mail.lead_id).where(Mail.campaign == slug)))):
        step = mails.get((properties or {}).get("message_id"))
        if step:
            counts[step] = counts.get(step, 0) + 1
    return counts


def campaign_totals(slug: str) -> dict:
    enrolled = dict(session.execute(select(Enrollment.status, func.count()).where(Enrollment.campaign == slug)
                                    .group_by(Enrollment.status)).all())
    mails = session.execute(select(*_mail_counts()).where(Mail.campaign == slug)).one()
    conversions = dict(session.execute(
        select(StageChange.to_stage, func.count(func.distinct(StageChange.lead_id)))
        .join(Enrollment, and_(Enrollment.lead_id == StageChange.lead_id, Enrollment.campaign == slug,
                               StageChange.at >= Enrollment.entered_at))
        .where(StageChange.to_stage.in_(("mql", "sql"))).group_by(StageChange.to_stage)).all())
    steps = step_stats(slug)
    return {"enrolled": sum(enrolled.values()), "active": enrolled.get("active", 0),
            "completed": enrolled.get("completed", 0), "exited": enrolled.get("exited", 0),
            "sent": mails.mails, "delivered": mails.delivered or 0, "bounced": mails.bounced or 0,
            "opened": mails.opened or 0, "clicked": mails.clicked or 0,
            "machine_opened": mails.machine_only or 0,
            "unsubscribed": sum(s["unsubscribed"] for s in steps.values()),
            "mql": conversions.get("mql", 0), "sql": conversions.get("sql", 0)}
