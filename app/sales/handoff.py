"""The hand-off to sales: MQL, assignment, notification, webhook, SLA, and
the salesperson's verdicts (accept, reject, BANT)."""
from datetime import timedelta
from pathlib import Path

from flask import current_app
from flask_babel import force_locale, gettext, pgettext
from sqlalchemy import select

from .. import tasks, webhooks
from ..db import session
from ..definitions import ReloadingFile
from ..emails import queue_mail, render
from ..i18n import LANGUAGES
from ..leads import change_owner, change_stage
from ..models import Event, Lead, User, utcnow
from ..qualify import scoring as model_lib
from .config import SalesConfig, bant_passes, load_sales_config, territory_owner

CHANNEL_LABELS = {"linkedin": "LinkedIn", "email": "email", "phone": "phone"}


def config() -> SalesConfig:
    holder = current_app.extensions.get("leadflow.sales")
    if holder is None:
        path = Path(current_app.config["CAMPAIGNS_DIR"]) / "sales.yaml"
        holder = current_app.extensions["leadflow.sales"] = ReloadingFile(
            path, load_sales_config, SalesConfig())
    return holder.get()


def assign(lead: Lead, cfg: SalesConfig) -> tuple[User | None, str]:
    """Territory owner if one matches, else round robin among active
    salespeople (the one assigned longest ago; the row lock makes two
    concurrent MQLs pick two different people). Returns who, and the rule."""
    if cfg.assignment == "territory":
        email = territory_owner(cfg, lead.country, lead.segment)
        if email:
            owner = session.execute(select(User).where(User.email == email.lower(), User.active,
                                                       User.role == "sales")).scalar_one_or_none()
            if owner:
                owner.last_assigned_at = utcnow()
                return owner, "territory"
    owner = session.execute(
        select(User).where(User.role == "sales", User.active)
        .order_by(User.last_assigned_at.asc().nulls_first(), User.id)
        .limit(1).with_for_update(skip_locked=True)).scalar_one_or_none()
    if owner:
        owner.last_assigned_at = utcnow()
    return owner, "round-robin"


def lead_card(lead: Lead) -> dict:
    """What a salesperson needs to act on an MQL."""
    from ..scoring import model
    scoring_model = model()
    result = scoring_breakdown(lead, scoring_model)
    tier, channel = model_lib.temperature(scoring_model, lead.score or 0)
    recent = session.execute(select(Event).where(Event.lead_id == lead.id)
                             .order_by(Event.occurred_at.desc()).limit(10)).scalars().all()
    return {"lead": lead, "score": round(lead.score or 0), "temperature": tier,
            "channel": CHANNEL_LABELS.get(channel, channel), "breakdown": result,
            "recent": recent, "url": current_app.config["BASE_URL"].rstrip("/") + f"/sales/leads/{lead.id}"}


def scoring_breakdown(lead: Lead, scoring_model) -> list[tuple[str, float]]:
    from ..scoring import recompute_breakdown
    return recompute_breakdown(lead, scoring_model)


def on_threshold_crossed(lead: Lead, actor: str, reason: str) -> None:
    """The lead became an MQL: assign it and tell its salesperson and the CRM.
    Everything is written in the current transaction; the sending is queued
    for after the commit."""
    change = change_stage(lead, "mql", actor, reason)
    lead.mql_at = utcnow()
    cfg = config()
    if lead.owner_id is None:
        owner, rule = assign(lead, cfg)
        if owner is not None:
            change_owner(lead, owner.id, f"rule:{rule}", "assigned on becoming an MQL")
    else:
        owner = session.get(User, lead.owner_id)
    session.flush()
    card = lead_card(lead)
    key = f"mql:{lead.id}:{change.id}"
    if owner is not None:
        with force_locale(mail_language(owner)):
            html, text = render("mql", **card, owner=owner, lang=mail_language(owner))
            subject = _subject(card)
        mail_id = queue_mail(dedupe_key=key, kind="notification", sender=cfg.sender,
                             recipient=owner.email, lead_id=lead.id, user_id=owner.id,
                             subject=subject, html=html, text=text)
        if mail_id:
            tasks.after_commit("leadflow.send_mail", mail_id)
    webhooks.queue("lead.mql", key, webhook_payload(lead, card, owner), lead.id)


def mail_language(user: User) -> str:
    """A salesperson reads their notifications in the language they chose
    for the interface; English when they chose none."""
    return user.language if user.language in LANGUAGES else "en"


def _subject(card) -> str:
    lead = card["lead"]
    who = lead.name or lead.email
    if lead.company:
        who = f"{who} ({lead.company})"
    tier = {"warm": pgettext("temperature", "warm"), "hot": pgettext("temperature", "hot"),
            "very_hot": pgettext("temperature", "very hot")}.get(card["temperature"], gettext("new"))
    return gettext("New MQL, %(tier)s: %(who)s, score %(score)s", tier=tier, who=who, score=card["score"])


def webhook_payload(lead: Lead, card: dict, owner: User | None) -> dict:
    return {"lead": {"id": lead.id, "email": lead.email, "name": lead.name, "company": lead.company,
                     "job_title": lead.job_title, "segment": lead.segment, "country": lead.country,
                     "stage": lead.stage, "score": round(lead.score or 0, 2),
                     "temperature": card["temperature"], "suggested_channel": card["channel"],
                     "mql_at": lead.mql_at.isoformat() if lead.mql_at else None,
                     "owner": owner.email if owner else None, "url": card["url"]},
            "breakdown": [{"rule": label, "points": round(points, 2)} for label, points in card["breakdown"]]}


# --- what sales do with an MQL ------------------------------------------------

def accept(lead: Lead, user: User) -> None:
    change_stage(lead, "sal", f"user:{user.id}", f"accepted by {user.name}")
    if lead.owner_id is None:
        change_owner(lead, user.id, f"user:{user.id}", "took the lead by accepting it")


def reject(lead: Lead, user: User, reason: str) -> None:
    """Back to nurture, with the reason kept."""
    if not reason or not reason.strip():
        raise ValueError("a rejection needs a reason")
    change_stage(lead, "recycled", f"user:{user.id}", reason.strip())


def qualify(lead: Lead, user: User, answers: dict) -> tuple[bool, list[str]]:
    """Record BANT answers; the lead becomes an SQL when they pass the rule."""
    passes, met = bant_passes(config().bant, answers)
    lead.bant = {**answers, "met": met, "passes": passes, "by": user.id, "at": utcnow().isoformat()}
    if passes:
        change_stage(lead, "sql", f"user:{user.id}", "BANT met: " + ", ".join(met))
    return passes, met


def move(lead: Lead, user: User, target: str, reason: str | None) -> None:
    change_stage(lead, target, f"user:{user.id}", reason)


# --- SLA ----------------------------------------------------------------------

def check_sla(now=None) -> int:
    """Remind the owner and alert the managers, once each, for every MQL not
    accepted within the SLA. Returns how many mails were queued."""
    cfg = config()
    now = now or utcnow()
    late = session.execute(select(Lead).where(Lead.stage == "mql",
                                              Lead.mql_at <= now - timedelta(hours=cfg.sla_hours))).scalars()
    managers = session.execute(select(User).where(User.is_manager, User.active)).scalars().all()
    queued = 0
    for lead in late:
        card = lead_card(lead)
        since = lead.mql_at.isoformat()
        owner = session.get(User, lead.owner_id) if lead.owner_id else None
        targets = ([("reminder", owner)] if owner else []) + [("alert", m) for m in managers]
        for kind, user in targets:
            with force_locale(mail_language(user)):
                html, text = render("sla", **card, user=user, kind=kind, hours=cfg.sla_hours,
                                    owner=owner, lang=mail_language(user))
                subject = _sla_subject(kind, lead, cfg.sla_hours)
            mail_id = queue_mail(
                dedupe_key=f"sla-{kind}:{lead.id}:{since}:{user.id}", kind="notification",
                sender=cfg.sender, recipient=user.email, lead_id=lead.id, user_id=user.id,
                subject=subject, html=html, text=text)
            if mail_id:
                tasks.after_commit("leadflow.send_mail", mail_id)
                queued += 1
    return queued


def _sla_subject(kind: str, lead: Lead, hours: float) -> str:
    who, hours = lead.name or lead.email, f"{hours:g}"
    if kind == "reminder":
        return gettext("Reminder: MQL waiting over %(hours)s h: %(who)s", hours=hours, who=who)
    return gettext("SLA missed: %(who)s not accepted within %(hours)s h", who=who, hours=hours)
