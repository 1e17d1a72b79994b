"""The nurture engine's shell: enroll leads, claim due enrollments in
batches, apply the pure decisions of decide.py, render and send.

Cost follows the due work: one indexed query claims a batch of due
enrollments (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of
workers on any number of machines never take the same row), and every
other query of the pass is keyed by the ids in that batch.

At most one email per (enrollment, step): the mail row's dedupe key is
`step:<enrollment>:<step>:<visit>`, written in the same transaction that
moves the enrollment past the step; the mailer then claims the row before
the SMTP conversation (see mailer.py for what a crash does).
"""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .. import tasks
from ..db import is_postgres, session
from ..models import CampaignState, Enrollment, Event, Lead, Mail, utcnow
from . import decide
from ..definitions import DefinitionFolder
from .campaigns import Campaign, campaign_files, load_campaign

BATCH = 200


# --- definitions -------------------------------------------------------------

def CampaignRegistry(directory) -> DefinitionFolder:  # noqa: N802 (reads as the class it builds)
    """campaigns/*.yaml, re-read when a file changes."""
    # No throttle: the engine reads it once a pass, and an edit must count at once.
    return DefinitionFolder(lambda: campaign_files(directory), load_campaign, check_every=0)


def campaigns() -> dict[str, Campaign]:
    registry = current_app.extensions.get("leadflow.campaigns")
    if registry is None:
        registry = current_app.extensions["leadflow.campaigns"] = CampaignRegistry(
            current_app.config["CAMPAIGNS_DIR"])
    return registry.items


def set_paused(slug: str, value: bool, who: str) -> None:
    """Pause (nothing is sent; enrollments wait) or resume a campaign; commits."""
    state = session.get(CampaignState, slug) or CampaignState(slug=slug)
    state.paused, state.changed_at, state.changed_by = value, utcnow(), who
    session.add(state)
    session.commit()


def paused() -> set[str]:
    return set(session.execute(select(CampaignState.slug).where(CampaignState.paused)).scalars())


# --- facts about leads -------------------------------------------------------

# What an audience or a branch may test with `attributes:`.
AUDIENCE_ATTRIBUTES = ("segment", "language", "country", "intent", "job_title", "company", "company_size",
                       "annual_revenue", "first_form", "source", "medium", "referrer_domain", "stage")

def facts(lead: Lead) -> decide.LeadFacts:
    config = current_app.config
    return decide.LeadFacts(
        stage=lead.stage, score=lead.score or 0.0,
        attributes={k: getattr(lead, k) for k in AUDIENCE_ATTRIBUTES},
        timezone=decide.timezone_for(lead.timezone, lead.country, config["NURTURE_DEFAULT_TIMEZONE"]),
        consent=bool(lead.consent), unsubscribed=lead.unsubscribed_at is not None,
        bounced=lead.bounced_at is not None, opted_out_topics=tuple(lead.opted_out_topics or ()))


def _cap(lead_ids, now) -> dict[int, tuple]:
    days = current_app.config["NURTURE_CAP_DAYS"]
    rows = session.execute(select(Mail.lead_id, Mail.created_at).where(
        Mail.lead_id.in_(lead_ids), Mail.kind == "nurture", Mail.created_at > now - timedelta(days=days),
        Mail.status.notin_(("bounced", "failed")))).all()
    recent: dict[int, list] = {}
    for lead_id, created in rows:
        recent.setdefault(lead_id, []).append(_aware(created))
    return {lead_id: tuple(times) for lead_id, times in recent.items()}


def _engagement(enrollments: list[Enrollment]) -> dict[int, decide.Engagement]:
    ids = [e.id for e in enrollments]
    opened, clicked = {}, {}
    for enrollment_id, step, was_opened, was_clicked in session.execute(
            select(Mail.enrollment_id, Mail.step_key, Mail.opened_at, Mail.clicked_at)
            .where(Mail.enrollment_id.in_(ids))):
        if was_opened or was_clicked:
            opened.setdefault(enrollment_id, set()).add(step)
        if was_clicked:
            clicked.setdefault(enrollment_id, set()).add(step)
    since = min((e.entered_at for e in enrollments), default=utcnow())
    kinds: dict[int, set] = {}
    for lead_id, kind, occurred in session.execute(
            select(Event.lead_id, Event.kind, Event.occurred_at)
            .where(Event.lead_id.in_({e.lead_id for e in enrollments}), Event.occurred_at >= since)):
        kinds.setdefault(lead_id, []).append((kind, _aware(occurred)))
    result = {}
    for e in enrollments:
        entered = _aware(e.entered_at)
        events = frozenset(k for k, at in kinds.get(e.lead_id, []) if at >= entered)
        result[e.id] = decide.Engagement(frozenset(opened.get(e.id, ())), frozenset(clicked.get(e.id, ())),
                                         events)
    return result


def _aware(moment: datetime) -> datetime:
    from datetime import timezone
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- enrolling -----------------------------------------------------------------

def enroll(lead: Lead, campaign: Campaign, trigger: str, now: datetime | None = None,
           form: str | None = None, check_audience: bool = True) -> Enrollment | None:
    """Enroll a (row-locked) lead unless the audience, suppression or the
    re-entry policy says no."""
    now = now or utcnow()
    lead_facts = facts(lead)
    if check_audience and not decide.audience_matches(campaign, lead_facts, form or lead.first_form):
        return None
    if decide.suppression(campaign, lead_facts):
        return None
    previous = session.execute(select(Enrollment).where(
        Enrollment.lead_id == lead.id, Enrollment.campaign == campaign.slug)
        .order_by(Enrollment.entered_at.desc()).limit(1)).scalar_one_or_none()
    if previous is not None:
        policy = campaign.definition.reentry
        if previous.status == "active" or policy.policy == "never":
            return None
        if policy.policy == "after" and _aware(previous.entered_at) > now - timedelta(days=policy.days):
            return None
    enrollment = Enrollment(campaign=campaign.slug, lead_id=lead.id, step_key=campaign.first_step,
                            waiting=False, status="active", trigger=trigger, due_at=now, entered_at=now,
                            path=[])
    session.add(enrollment)
    session.flush()
    return enrollment


def enroll_matching(lead: Lead, trigger: str, form: str | None = None) -> list[Enrollment]:
    """Every campaign this trigger starts and whose audience the lead is in.
    A paused campaign still enrolls (pausing stops sending, not listening):
    its enrollments wait and go on when it is resumed."""
    enrolled = []
    for campaign in sorted(campaigns().values(), key=lambda c: -c.definition.priority):
        if trigger in campaign.definition.triggers:
            enrollment = enroll(lead, campaign, trigger, form=form)
            if enrollment is not None:
                enrolled.append(enrollment)
    return enrolled


def on_stage_change(lead: Lead, target: str) -> None:
    """A stage change can reach a goal (exit at once) or start a campaign."""
    exit_reached_goals(lead)
    enroll_matching(lead, f"stage:{target}")


def exit_reached_goals(lead: Lead, event_kind: str | None = None) -> int:
    """End at once the enrollments whose goal this lead just reached."""
    active = session.execute(select(Enrollment).where(Enrollment.lead_id == lead.id,
                                                      Enrollment.status == "active")).scalars().all()
    ended = 0
    events = frozenset([event_kind]) if event_kind else frozenset()
    for enrollment in active:
        campaign = campaigns().get(enrollment.campaign)
        if campaign is None:
            continue
        reason = decide.goal_reached(campaign, facts(lead), decide.Engagement(events=events))
        if reason:
            finish(enrollment, "exited", reason, utcnow())
            ended += 1
    return ended


def finish(enrollment: Enrollment, status: str, reason: str, now: datetime) -> None:
    enrollment.status, enrollment.exit_reason, enrollment.finished_at = status, reason, now


# --- the tick ------------------------------------------------------------------

def claim_due(now: datetime, batch: int) -> list[Enrollment]:
    query = (select(Enrollment).where(Enrollment.status == "active", Enrollment.due_at <= now)
             .order_by(Enrollment.due_at).limit(batch))
    if is_postgres():
        query = query.with_for_update(skip_locked=True)
    return session.execute(query).scalars().all()


def run_due(now: datetime | None = None, batch: int = BATCH, max_batches: int | None = None) -> int:
    """One pass of the engine: every due enrollment, batch after batch.
    Returns how many emails were sent (or put in the outbox)."""
    sent = 0
    batches = 0
    clock = now
    while max_batches is None or batches < max_batches:
        now = clock or utcnow()
        mail_ids, claimed = process_batch(now, batch)
        sent += deliver_all(mail_ids, now if clock else None)
        batches += 1
        if claimed < batch:
            break
    return sent


def process_batch(now: datetime, batch: int) -> tuple[list[int], int]:
    """Claim a batch, decide each enrollment, write the outcome and the mail
    rows, commit. Returns the new mail ids and how many were claimed."""
    enrollments = claim_due(now, batch)
    if not enrollments:
        session.commit()
        return [], 0
    leads = {lead.id: lead for lead in session.execute(
        select(Lead).where(Lead.id.in_({e.lead_id for e in enrollments}))).scalars()}
    engagement = _engagement(enrollments)
    caps = _cap(list(leads), now)
    config = current_app.config
    stopped = paused()
    defined = campaigns()
    mail_ids = []
    for enrollment in enrollments:
        campaign = defined.get(enrollment.campaign)
        if campaign is None:
            finish(enrollment, "exited", "campaign_removed", now)
            continue
        if campaign.slug in stopped:
            enrollment.due_at = now + timedelta(minutes=config["NURTURE_PAUSED_RECHECK_MINUTES"])
            continue
        lead = leads[enrollment.lead_id]
        lead_facts = facts(lead)
        position = _position(campaign, enrollment)
        if position is None:
            finish(enrollment, "exited", f"step_removed:{enrollment.step_key}", now)
            continue
        cap = decide.Cap(config["NURTURE_CAP_EMAILS"], config["NURTURE_CAP_DAYS"], caps.get(lead.id, ()))
        decision = decide.advance(campaign, position, lead_facts, engagement[enrollment.id], now, cap)
        mail_id = _apply(enrollment, campaign, lead, decision, now)
        if mail_id is not None:
            mail_ids.append(mail_id)
            caps[lead.id] = caps.get(lead.id, ()) + (now,)
        if mail_id is not None and enrollment.status == "active":
            # settle into the next wait, exit or send (not sent in this pass)
            after = decide.advance(campaign, _position(campaign, enrollment), lead_facts,
                                   engagement[enrollment.id], now, cap, allow_send=False)
            _apply(enrollment, campaign, lead, after, now)
    session.commit()
    return mail_ids, len(enrollments)


def _position(campaign: Campaign, enrollment: Enrollment) -> decide.Position | None:
    key = enrollment.step_key
    waiting = enrollment.waiting
    if campaign.step(key) is None:  # the marketer removed this step
        key = decide.resolve_removed(campaign, decide.Position(key, path=tuple(enrollment.path or ())))
        if key is None:
            return None
        waiting = False
    return decide.Position(key, waiting, _aware(enrollment.due_at), tuple(enrollment.path or ()))


def _apply(enrollment: Enrollment, campaign: Campaign, lead: Lead, decision: decide.Decision,
           now: datetime) -> int | None:
    enrollment.path = list(enrollment.path or []) + list(decision.hops)
    if decision.action == "finish":
        finish(enrollment, decision.status, decision.reason, now)
        return None
    if decision.action == "wait":
        if not enrollment.waiting or enrollment.step_key != decision.step_key:
            enrollment.path = enrollment.path + [decision.step_key]
        enrollment.step_key, enrollment.waiting, enrollment.due_at = decision.step_key, True, decision.due_at
        return None
    if decision.action == "postpone":
        enrollment.step_key, enrollment.waiting, enrollment.due_at = decision.step_key, False, decision.due_at
        return None
    # send
    from .mail import queue_step_mail
    visit = enrollment.path.count(decision.step_key)
    mail_id = queue_step_mail(enrollment, campaign, campaign.step(decision.step_key), lead, visit, now)
    enrollment.path = enrollment.path + [decision.step_key]
    if decision.next_key is None:
        finish(enrollment, "completed", "last step done", now)
    else:
        enrollment.step_key, enrollment.waiting, enrollment.due_at = decision.next_key, False, now
    return mail_id


def deliver_all(mail_ids: list[int], now: datetime | None) -> int:
    """Send the batch's mails from this process, over one reused SMTP
    connection; a mail left pending (transient failure) is retried by the sweep."""
    from ..mailer import deliver
    from ..suppression import on_hard_bounce
    smtp_url = current_app.config["SMTP_URL"]
    sent = 0
    for mail_id in mail_ids:
        if deliver(mail_id, smtp_url, on_hard_bounce, now) in ("sent", "outbox"):
            sent += 1
    return sent


def enroll_existing(campaign: Campaign, limit: int | None = None) -> int:
    """`leadflow campaigns enroll <slug> --existing`: backfill matching leads,
    in id batches so it is safe while the app serves."""
    count, last_id = 0, 0
    while True:
        ids = session.execute(select(Lead.id).where(Lead.id > last_id).order_by(Lead.id).limit(500)).scalars().all()
        if not ids:
            break
        for lead in session.execute(select(Lead).where(Lead.id.in_(ids)).order_by(Lead.id)
                                    .with_for_update()).scalars():
            if enroll(lead, campaign, "manual") is not None:
                count += 1
        tasks.commit()
        last_id = ids[-1]
        if limit is not None and count >= limit:
            break
    return count


def due_count(now: datetime | None = None) -> int:
    return session.execute(select(func.count()).select_from(Enrollment).where(
        Enrollment.status == "active", Enrollment.due_at <= (now or utcnow()))).scalar()
