"""Leads, their events and their stage changes: the I/O shell around
qualify/ (which decides) and the database (which remembers)."""
from datetime import datetime

from sqlalchemy import select

from .db import insert, session
from .models import Event, Lead, OwnerChange, StageChange, utcnow
from .qualify.lifecycle import check_move


def get_or_create_lead(email: str, defaults: dict) -> tuple[Lead, bool]:
    """Row-locked lead for this email, created if new. Safe when two
    submissions for the same new email race: the insert does nothing for
    the loser, which then reads (and locks) the winner's row."""
    inserted = session.execute(
        insert(Lead).values(email=email, created_at=utcnow(), updated_at=utcnow(), **defaults)
        .on_conflict_do_nothing(index_elements=["email"]).returning(Lead.id)
    ).scalar()
    lead = session.execute(
        select(Lead).where(Lead.email == email).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    return lead, inserted is not None


def record_event(lead: Lead, kind: str, *, key: str | None = None, properties: dict | None = None,
                 occurred_at: datetime | None = None, machine: bool = False) -> Event | None:
    """Append an event; with a key, a repeat of the same (lead, kind, key) is
    ignored and None is returned."""
    values = dict(lead_id=lead.id, kind=kind, key=key, properties=properties or {},
                  machine=machine, occurred_at=occurred_at or utcnow(), created_at=utcnow())
    event_id = session.execute(
        insert(Event).values(**values)
        .on_conflict_do_nothing(index_elements=["lead_id", "kind", "key"]).returning(Event.id)
    ).scalar()
    return session.get(Event, event_id) if event_id is not None else None


def change_stage(lead: Lead, target: str, actor: str, reason: str | None = None) -> StageChange:
    """Move a lead along its lifecycle, refusing moves the lifecycle forbids,
    and keep who moved it and why."""
    check_move(lead.stage, target)
    change = StageChange(lead_id=lead.id, from_stage=lead.stage, to_stage=target,
                         actor=actor, reason=reason, at=utcnow())
    lead.stage, lead.stage_reason = target, reason
    session.add(change)
    session.flush()
    from . import webhooks
    webhooks.queue("lead.stage_changed", f"stage:{lead.id}:{change.id}", {
        "lead": {"id": lead.id, "email": lead.email, "name": lead.name, "company": lead.company,
                 "stage": lead.stage, "score": round(lead.score or 0, 2), "owner_id": lead.owner_id},
        "change": {"from": change.from_stage, "to": change.to_stage, "actor": actor, "reason": reason,
                   "at": change.at.isoformat()}}, lead.id)
    from .nurture.engine import on_stage_change
    on_stage_change(lead, target)
    return change


def change_owner(lead: Lead, owner_id: int | None, actor: str, reason: str | None = None) -> OwnerChange | None:
    """Give the lead to another salesperson (or to nobody) and keep who did
    it and why; None when the owner stays the same."""
    if owner_id == lead.owner_id:
        return None
    change = OwnerChange(lead_id=lead.id, from_user_id=lead.owner_id, to_user_id=owner_id,
                         actor=actor, reason=reason, at=utcnow())
    lead.owner_id = owner_id
    session.add(change)
    return change
