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
    """Unsubscribe events joined to the mail they came from, in SQL (the
    partial index on unsubscribe events keeps this small at 20M events)."""
    message_id = Event.properties["message_id"].as_integer()
    return dict(session.execute(
        select(Mail.step_key, func.count(func.distinct(Event.lead_id)))
        .join(Mail, Mail.id == message_id)
        .where(Event.kind == "unsubscribed", Mail.campaign == slug)
        .group_by(Mail.step_key)).all())


def campaign_totals(slug: str) -> dict:
    enrolled = dict(session.execute(select(Enrollment.status, func.count()).where(Enrollment.campaign == slug)
                                    .group_by(Enrollment.status)).all())
    conversions = dict(session.execute(
        select(StageChange.to_stage, func.count(func.distinct(StageChange.lead_id)))
        .join(Enrollment, and_(Enrollment.lead_id == StageChange.lead_id, Enrollment.campaign == slug,
                               StageChange.at >= Enrollment.entered_at))
        .where(StageChange.to_stage.in_(("mql", "sql"))).group_by(StageChange.to_stage)).all())
    # the campaign's mail figures are the sum of its steps': one scan of its mails
    steps = step_stats(slug).values()
    mail_totals = {key: sum(step[key] for step in steps) for key in
                   ("sent", "delivered", "bounced", "opened", "clicked", "machine_opened", "unsubscribed")}
    return {"enrolled": sum(enrolled.values()), "active": enrolled.get("active", 0),
            "completed": enrolled.get("completed", 0), "exited": enrolled.get("exited", 0),
            **mail_totals, "mql": conversions.get("mql", 0), "sql": conversions.get("sql", 0)}
