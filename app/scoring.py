"""The shell around qualify.scoring: events in, cached scores out.

Each event is scored incrementally under a row lock on its lead, so that the
order events are applied in is the order of their ids; a full recomputation
(`leadflow rescore`) folds the log in id order and gives the same figures.
When the model file changes, a lead's cached state no longer matches its
fingerprint and the next event recomputes that lead from its log.
"""
import copy
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from . import tasks
from .db import session
from .definitions import ReloadingFile
from .leads import record_event
from .models import Event, Lead, ScoreHistory, utcnow
from .qualify import scoring as model_lib

LEAD_ATTRIBUTES = ("email", "country", "company_size", "annual_revenue", "segment", "job_title",
                   "company", "language", "intent")


def model() -> model_lib.ScoringModel:
    holder = current_app.extensions.get("leadflow.scoring")
    if holder is None:
        path = Path(current_app.config["CAMPAIGNS_DIR"]) / "scoring.yaml"
        holder = current_app.extensions["leadflow.scoring"] = ReloadingFile(path, model_lib.load_model, None)
    value = holder.get()
    if value is None:
        raise RuntimeError(f"no valid scoring model: {holder.error}")
    return value


def lead_data(lead: Lead) -> model_lib.LeadData:
    return model_lib.LeadData({name: getattr(lead, name) for name in LEAD_ATTRIBUTES})


def event_data(event: Event) -> model_lib.EventData:
    return model_lib.EventData(kind=event.kind, occurred_at=_aware(event.occurred_at),
                               properties=event.properties or {}, machine=event.machine, key=event.key)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    from datetime import timezone
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _fit_total(scoring_model, name, lead) -> float:
    return sum(points for _, points in model_lib.fit_points(scoring_model, name, lead_data(lead)))


def _totals(lead: Lead, scoring_model, states: dict, as_of: datetime) -> dict[str, float]:
    return {name: model_lib.state_total(scoring_model, name, states[name],
                                        _fit_total(scoring_model, name, lead), as_of)
            for name in scoring_model.scores}


def _set_scores(lead: Lead, scoring_model, totals: dict[str, float]) -> None:
    lead.scores = {name: round(total, 4) for name, total in totals.items()}
    lead.score = totals[scoring_model.mql_score]
    lead.temperature = model_lib.temperature(scoring_model, lead.score)[0]


def _set_totals(lead: Lead, scoring_model, states: dict, as_of: datetime) -> None:
    lead.score_state = {"model": model_lib.fingerprint(scoring_model), "states": states}
    _set_scores(lead, scoring_model, _totals(lead, scoring_model, states, as_of))


def recompute(lead: Lead, as_of: datetime | None = None, scoring_model=None) -> float:
    """Full recomputation of one lead from its event log (in id order)."""
    scoring_model = scoring_model or model()
    events = session.execute(select(Event).where(Event.lead_id == lead.id).order_by(Event.id)).scalars()
    return recompute_from(lead, list(events), as_of or utcnow(), scoring_model)


def recompute_from(lead: Lead, events: list[Event], as_of: datetime, scoring_model) -> float:
    states = {name: model_lib.initial_state() for name in scoring_model.scores}
    for event in events:
        data = event_data(event)
        for name in scoring_model.scores:
            points, rule, states[name] = model_lib.event_points(scoring_model, name, states[name], data)
            if name == scoring_model.mql_score:
                event.points, event.rule = points, rule
    _set_totals(lead, scoring_model, states, as_of)
    return lead.score


def _current_states(lead: Lead, scoring_model) -> dict | None:
    cached = lead.score_state or {}
    if cached.get("model") != model_lib.fingerprint(scoring_model):
        return None
    # A copy: mutating the loaded JSON in place would hide the change from
    # SQLAlchemy, which compares the old value with the new one.
    return copy.deepcopy(cached["states"])


def score_event(lead: Lead, event: Event, scoring_model=None) -> float:
    """Apply one new event to the lead's cached scores; returns the MQL-score
    delta. The lead must be locked by the caller (get_or_create_lead or
    lock_lead)."""
    scoring_model = scoring_model or model()
    before = lead.score or 0.0
    states = _current_states(lead, scoring_model)
    if states is None:  # model changed since this lead was scored
        recompute(lead, scoring_model=scoring_model)
    else:
        data = event_data(event)
        for name in scoring_model.scores:
            points, rule, states[name] = model_lib.event_points(scoring_model, name, states[name], data)
            if name == scoring_model.mql_score:
                event.points, event.rule = points, rule
        _set_totals(lead, scoring_model, states, max(utcnow(), data.occurred_at))
    delta = lead.score - before
    session.add(ScoreHistory(lead_id=lead.id, event_id=event.id, score=lead.score, delta=delta,
                             reason=event.rule or event.kind, at=utcnow()))
    return delta


def refresh_fit(lead: Lead, reason: str = "profile") -> float:
    """Profile answers changed: fit points may have too."""
    scoring_model = model()
    states = _current_states(lead, scoring_model)
    before = lead.score or 0.0
    if states is None:
        recompute(lead, scoring_model=scoring_model)
    else:
        _set_totals(lead, scoring_model, states, utcnow())
    if abs(lead.score - before) > 1e-9:
        session.add(ScoreHistory(lead_id=lead.id, score=lead.score, delta=lead.score - before,
                                 reason=reason, at=utcnow()))
    return lead.score - before


def lock_lead(lead_id: int) -> Lead | None:
    return session.execute(select(Lead).where(Lead.id == lead_id).with_for_update()
                           .execution_options(populate_existing=True)).scalar_one_or_none()


def becomes_mql(scoring_model, lead: Lead, before: float) -> bool:
    """A subscriber or lead at or over the threshold becomes an MQL. A
    recycled one (sales sent it back) needs a fresh crossing, or it would
    bounce straight back to the salesperson who just rejected it."""
    if lead.stage in ("subscriber", "lead"):
        return lead.score >= scoring_model.mql_threshold
    if lead.stage == "recycled":
        return model_lib.crosses_mql(scoring_model, before, lead.score)
    return False


def track(lead: Lead, kind: str, *, key: str | None = None, properties: dict | None = None,
          occurred_at: datetime | None = None, machine: bool = False, source: str | None = None,
          actor: str = "rule:score") -> Event | None:
    """Record an event for a locked lead, score it, and hand the lead to
    sales if it crossed the MQL threshold. Returns None for a duplicate key."""
    event = record_event(lead, kind, key=key, properties=properties, occurred_at=occurred_at,
                         machine=machine)
    if event is None:
        return None
    event.source = source
    scoring_model = model()
    before = lead.score or 0.0
    score_event(lead, event, scoring_model)
    if kind in ("email_opened", "link_clicked"):
        note_engagement(event)
    if becomes_mql(scoring_model, lead, before):
        from .sales.handoff import on_threshold_crossed
        on_threshold_crossed(lead, actor, f"score {lead.score:.0f} crossed {scoring_model.mql_threshold:g}"
                                          f" on {kind}")
    from .nurture.engine import exit_reached_goals
    exit_reached_goals(lead, kind)
    return event


def note_engagement(event: Event) -> None:
    """Keep the first human open and click on the mail itself: branches and
    campaign stats read them there."""
    from sqlalchemy import update

    from .models import Mail
    mail_id = (event.properties or {}).get("message_id")
    if not isinstance(mail_id, int):
        return
    at = event.occurred_at
    if event.machine:
        session.execute(update(Mail).where(Mail.id == mail_id, Mail.machine_opened_at.is_(None))
                        .values(machine_opened_at=at))
        return
    session.execute(update(Mail).where(Mail.id == mail_id, Mail.opened_at.is_(None)).values(opened_at=at))
    if event.kind == "link_clicked":
        session.execute(update(Mail).where(Mail.id == mail_id, Mail.clicked_at.is_(None)).values(clicked_at=at))


def recompute_breakdown(lead: Lead, scoring_model=None) -> list[tuple[str, float]]:
    """Where the MQL score's points come from (fit rules and behaviour rules),
    recomputed from the log for display."""
    scoring_model = scoring_model or model()
    events = session.execute(select(Event).where(Event.lead_id == lead.id).order_by(Event.id)).scalars()
    results = model_lib.compute(scoring_model, lead_data(lead), [event_data(e) for e in events], utcnow())
    return [(label, points) for label, points in results[scoring_model.mql_score].breakdown if points]


def rescore_batch(lead_ids: list[int], scoring_model, as_of: datetime) -> dict:
    """Recompute a batch of leads from their logs in one short transaction
    (rows locked, so live events wait for us rather than interleave).
    Returns counts; the caller commits."""
    from sqlalchemy import update
    leads = {lead.id: lead for lead in session.execute(
        select(Lead).where(Lead.id.in_(lead_ids)).order_by(Lead.id).with_for_update()
        .execution_options(populate_existing=True)).scalars()}
    rows = session.execute(
        select(Event.id, Event.lead_id, Event.kind, Event.properties, Event.machine, Event.occurred_at,
               Event.points, Event.rule)
        .where(Event.lead_id.in_(lead_ids)).order_by(Event.lead_id, Event.id)).all()
    by_lead: dict[int, list] = {}
    for row in rows:
        by_lead.setdefault(row.lead_id, []).append(row)
    changed_events, changed_leads, fingerprint = [], 0, model_lib.fingerprint(scoring_model)
    for lead_id, lead in leads.items():
        states = {name: model_lib.initial_state() for name in scoring_model.scores}
        for row in by_lead.get(lead_id, []):
            data = model_lib.EventData(kind=row.kind, occurred_at=_aware(row.occurred_at),
                                       properties=row.properties or {}, machine=row.machine)
            for name in scoring_model.scores:
                points, rule, states[name] = model_lib.event_points(scoring_model, name, states[name], data)
                if name == scoring_model.mql_score and (points != row.points or rule != row.rule):
                    changed_events.append({"id": row.id, "points": points, "rule": rule})
        before = lead.score or 0.0
        _set_totals(lead, scoring_model, states, as_of)
        if abs(lead.score - before) > 1e-9:
            changed_leads += 1
            session.add(ScoreHistory(lead_id=lead.id, score=lead.score, delta=lead.score - before,
                                     reason="rescore", at=utcnow()))
    if changed_events:
        session.execute(update(Event), changed_events)
    return {"leads": len(leads), "events": len(rows), "changed_leads": changed_leads,
            "changed_events": len(changed_events)}


def decay_scores(as_of: datetime | None = None, batch_size: int = 500) -> int:
    """Bring cached scores to what their behaviour points are worth now:
    between events nothing else would, and a lead who stopped engaging must
    cool off in the leads list and the sales inbox too. Reads the cached
    state, not the log (a lead scored under another model waits for its next
    event or `leadflow rescore`). Writes no history row and never demotes;
    a lead whose negative points wear off may cross the threshold and is then
    handed to sales as on an event. Leads locked by a transaction scoring them
    right now are skipped. Returns how many leads changed."""
    scoring_model, as_of = model(), as_of or utcnow()
    fingerprint = model_lib.fingerprint(scoring_model)
    changed, last_id = 0, 0
    while True:
        leads = session.execute(select(Lead).where(Lead.id > last_id, Lead.score_state.isnot(None))
                                .order_by(Lead.id).limit(batch_size).with_for_update(skip_locked=True)
                                .execution_options(populate_existing=True)).scalars().all()
        if not leads:
            break
        for lead in leads:
            cached = lead.score_state or {}
            if cached.get("model") != fingerprint:
                continue
            totals = _totals(lead, scoring_model, cached["states"], as_of)
            before = lead.score or 0.0
            if abs(totals[scoring_model.mql_score] - before) < 0.005:
                continue
            _set_scores(lead, scoring_model, totals)
            changed += 1
            if becomes_mql(scoring_model, lead, before):
                from .sales.handoff import on_threshold_crossed
                on_threshold_crossed(lead, "rule:score", f"score {lead.score:.0f} crossed "
                                                         f"{scoring_model.mql_threshold:g} as negative points wore off")
        tasks.commit()
        last_id = leads[-1].id
    return changed


def rescore_all(batch_size: int = 500, as_of: datetime | None = None, progress=None) -> dict:
    """`leadflow rescore`: every lead, in id order, one batch per transaction."""
    scoring_model, as_of = model(), as_of or utcnow()
    totals = {"leads": 0, "events": 0, "changed_leads": 0, "changed_events": 0}
    last_id = 0
    while True:
        ids = session.execute(select(Lead.id).where(Lead.id > last_id).order_by(Lead.id)
                              .limit(batch_size)).scalars().all()
        if not ids:
            break
        counts = rescore_batch(ids, scoring_model, as_of)
        session.commit()
        for key in totals:
            totals[key] += counts[key]
        last_id = ids[-1]
        if progress:
            progress(len(ids))
    return totals
