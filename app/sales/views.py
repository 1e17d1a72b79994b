"""Blueprint `sales`: the inbox of MQLs and the lead page with the
salesperson's verdicts (accept, reject, BANT, later moves).

Every action locks the lead row, checks the user may act on it, calls the
hand-off function (which records who and why), commits through
tasks.commit() and redirects back with a flash message."""
from datetime import datetime, timezone

from babel.lists import format_list
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import get_locale, lazy_gettext, ngettext, pgettext
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional, ValidationError

from .. import tasks
from ..auth import role_required
from ..db import session
from ..models import Lead, StageChange, User, utcnow
from ..qualify import scoring as model_lib
from ..qualify.lifecycle import TransitionError
from ..scoring import lock_lead, model
from . import handoff
from .config import CRITERIA

bp = Blueprint("sales", __name__, url_prefix="/sales")

# Which action is offered from which stage. The lifecycle has the last word
# (TransitionError); this only keeps the page to the moves sales make.
ACTIONS = {
    "accept": ("mql",),
    "reject": ("mql", "sal"),
    "qualify": ("mql", "sal"),
    "opportunity": ("sql",),
    "customer": ("sql", "opportunity"),
    "lost": ("sal", "sql", "opportunity"),
}
MOVES = ("opportunity", "customer", "lost")

# BANT timeline choices → months stored: the upper bound of the range, so
# "within N months" compares as people mean it; 12+ is past any rule of a year.
TIMELINES = (("3", lazy_gettext("0–3 months")), ("6", lazy_gettext("3–6 months")),
             ("12", lazy_gettext("6–12 months")), ("13", lazy_gettext("12+ months")))
YES_NO = (("yes", lazy_gettext("Yes")), ("no", lazy_gettext("No")))


class ActionForm(FlaskForm):
    """No fields: the CSRF token."""


class RejectForm(FlaskForm):
    reason = TextAreaField(lazy_gettext("Why is it not ready for sales?"),
                           validators=[DataRequired(lazy_gettext("A rejection needs a reason.")), Length(max=2000)])


class MoveForm(FlaskForm):
    target = HiddenField(validators=[AnyOf(MOVES)])
    reason = TextAreaField(lazy_gettext("Reason"), validators=[Length(max=2000)])

    def validate_reason(self, field):
        if self.target.data == "lost" and not (field.data or "").strip():
            raise ValidationError(_("Say why the deal was lost."))


class BantForm(FlaskForm):
    budget = RadioField(lazy_gettext("Budget: is there one?"), choices=YES_NO,
                        validators=[InputRequired(lazy_gettext("Answer yes or no."))])
    budget_amount = StringField(lazy_gettext("Budget amount"), validators=[Optional(), Length(max=100)])
    authority = RadioField(lazy_gettext("Authority: do they decide?"), choices=YES_NO,
                           validators=[InputRequired(lazy_gettext("Answer yes or no."))])
    need = RadioField(lazy_gettext("Need: do they need what we sell?"), choices=YES_NO,
                      validators=[InputRequired(lazy_gettext("Answer yes or no."))])
    timeline = SelectField(lazy_gettext("Timeline: when will they buy?"),
                           choices=[("", lazy_gettext("Choose…")), *TIMELINES],
                           validators=[InputRequired(lazy_gettext("Choose a timeline."))])
    notes = TextAreaField(lazy_gettext("Notes"), validators=[Optional(), Length(max=5000)])

    def answers(self) -> dict:
        return {"budget": self.budget.data == "yes", "budget_amount": self.budget_amount.data or None,
                "authority": self.authority.data == "yes", "need": self.need.data == "yes",
                "timeline_months": int(self.timeline.data), "notes": self.notes.data or None}


# --- who may do what --------------------------------------------------------

def sees_all(user) -> bool:
    return user.role == "admin" or user.is_manager


def may_view(user, lead: Lead) -> bool:
    return user.role == "marketer" or sees_all(user) or lead.owner_id == user.id


def may_act(user, lead: Lead) -> bool:
    # Marketers read only; a salesperson acts on their own leads, a manager on any.
    return user.role == "admin" or (user.role == "sales" and (user.is_manager or lead.owner_id == user.id))


# --- pages ------------------------------------------------------------------

def since(moment: datetime | None, now: datetime) -> str:
    """"3 h 12 min", "2 d 4 h", "5 min": how long an MQL has waited."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:  # SQLite gives naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    minutes = max(0, int((now - moment).total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return _("%(days)d d %(hours)d h", days=days, hours=hours)
    if hours:
        return _("%(hours)d h %(minutes)d min", hours=hours, minutes=minutes)
    return _("%(minutes)d min", minutes=minutes)


@bp.get("/inbox")
@role_required("sales")
def inbox():
    user, now, scoring_model = current_user, utcnow(), model()
    query = select(Lead).where(Lead.stage == "mql")
    if not sees_all(user):
        query = query.where(Lead.owner_id == user.id)
    mqls = []
    for lead in session.execute(query.order_by(Lead.mql_at.asc().nulls_last(), Lead.id)).scalars():
        tier, channel = model_lib.temperature(scoring_model, lead.score or 0)
        mqls.append({"lead": lead, "waiting": since(lead.mql_at, now), "temperature": tier,
                     "channel": channel})
    mine = {stage: session.execute(select(Lead).where(Lead.stage == stage, Lead.owner_id == user.id)
                                   .order_by(Lead.updated_at.desc())).scalars().all()
            for stage in ("sal", "sql", "opportunity")}
    owners = dict(session.execute(select(User.id, User.name)).all()) if sees_all(user) else {}
    return render_template("pages/sales_inbox.html", mqls=mqls, mine=mine, owners=owners,
                           all_mqls=sees_all(user))


@bp.get("/leads/<int:lead_id>")
@role_required("sales", "marketer")
def lead_page(lead_id):
    found = session.get(Lead, lead_id)
    if found is None:
        abort(404, description=_("No lead with that number."))
    if not may_view(current_user, found):
        abort(403, description=_("This lead belongs to another salesperson."))
    return _render(found)


def _render(lead: Lead, **bound):
    """The lead page; `bound` holds a submitted form to show with its errors."""
    changes = session.execute(select(StageChange).where(StageChange.lead_id == lead.id)
                              .order_by(StageChange.at, StageChange.id)).scalars().all()
    names = dict(session.execute(select(User.id, User.name)).all())
    allowed = ({a for a, stages in ACTIONS.items() if lead.stage in stages}
               if may_act(current_user, lead) else set())
    forms = {"accept": ActionForm(formdata=None), "reject": RejectForm(formdata=None),
             "qualify": BantForm(formdata=None), "move": MoveForm(formdata=None), **bound}
    return render_template("pages/sales_lead.html", card=handoff.lead_card(lead), changes=changes,
                           actor=lambda a: _actor_name(a, names), allowed=allowed, forms=forms,
                           owner=names.get(lead.owner_id), timelines=dict(TIMELINES),
                           bant_met=_bant_met, aria=_aria), 422 if bound else 200


def _bant_met(met: list[str] | None) -> str:
    """The BANT criteria met, in words."""
    return ", ".join(criterion_name(c) for c in met or []) or pgettext("bant", "no criterion")


def _aria(field, error_id: str) -> dict:
    """Attributes tying an invalid input to its error message."""
    return {"aria-invalid": "true", "aria-describedby": error_id} if field.errors else {}


def _actor_name(actor: str, names: dict) -> str:
    kind, _, ref = actor.partition(":")
    if kind == "user" and ref.isdigit() and int(ref) in names:
        return names[int(ref)]
    return actor


# --- actions ----------------------------------------------------------------

def _act(lead_id: int, action: str, form: FlaskForm, do):
    """Lock, check, validate, act, commit, redirect: the shell of every action."""
    lead = lock_lead(lead_id)
    if lead is None:
        abort(404, description=_("No lead with that number."))
    if not may_act(current_user, lead):
        abort(403, description=_("You may not change this lead."))
    if not form.validate_on_submit():
        session.rollback()
        flash(_("Nothing changed: see what is missing below."), "error")
        return _render(lead, **{action: form})
    target = form.target.data if isinstance(form, MoveForm) else action
    if lead.stage not in ACTIONS[target]:
        session.rollback()
        flash(_refused(target, stage_name(lead.stage)), "error")
        return redirect(url_for(".lead_page", lead_id=lead_id))
    stage = lead.stage
    try:
        message, category = do(lead)
    except TransitionError:
        session.rollback()
        flash(_("Nothing changed: a lead cannot move from %(from)s to %(to)s.",
                **{"from": stage_name(stage), "to": stage_name(_DESTINATIONS[target])}), "error")
    except ValueError as exc:
        session.rollback()
        flash(_("Nothing changed: %(problem)s.", problem=str(exc)), "error")
    else:
        tasks.commit()
        flash(message, category)
    return redirect(url_for(".lead_page", lead_id=lead_id))


def _refused(target: str, stage: str) -> str:
    """Why the page refuses an action: whole sentences, one per action, so
    that each language can word them its own way."""
    sentences = {
        "accept": _("Nothing changed: a %(stage)s lead cannot be accepted.", stage=stage),
        "reject": _("Nothing changed: a %(stage)s lead cannot be rejected.", stage=stage),
        "qualify": _("Nothing changed: a %(stage)s lead cannot be qualified.", stage=stage),
        "opportunity": _("Nothing changed: a %(stage)s lead cannot be made an opportunity.", stage=stage),
        "customer": _("Nothing changed: a %(stage)s lead cannot be marked won.", stage=stage),
        "lost": _("Nothing changed: a %(stage)s lead cannot be marked lost.", stage=stage)}
    return sentences[target]


# The stage each action moves a lead to.
_DESTINATIONS = {"accept": "sal", "reject": "recycled", "qualify": "sql",
                 "opportunity": "opportunity", "customer": "customer", "lost": "lost"}


def stage_name(stage: str | None) -> str:
    """A stage in words: the code in English (as the pages show it), a
    translation in other languages (same entries as templates/pages/_labels.html)."""
    names = {"subscriber": pgettext("stage", "subscriber"), "lead": pgettext("stage", "lead"),
             "mql": pgettext("stage", "mql"), "sal": pgettext("stage", "sal"), "sql": pgettext("stage", "sql"),
             "opportunity": pgettext("stage", "opportunity"), "customer": pgettext("stage", "customer"),
             "disqualified": pgettext("stage", "disqualified"), "recycled": pgettext("stage", "recycled"),
             "lost": pgettext("stage", "lost")}
    return names.get(stage, stage or "—")


def criterion_name(criterion: str) -> str:
    """A BANT criterion in words (the code in English)."""
    names = {"budget": pgettext("bant", "budget"), "authority": pgettext("bant", "authority"),
             "need": pgettext("bant", "need"), "timeline": pgettext("bant", "timeline")}
    return names.get(criterion, criterion)


@bp.post("/leads/<int:lead_id>/accept")
@role_required("sales")
def accept(lead_id):
    def do(lead):
        handoff.accept(lead, current_user)
        return _("Accepted: the lead is yours (SAL)."), "success"
    return _act(lead_id, "accept", ActionForm(), do)


@bp.post("/leads/<int:lead_id>/reject")
@role_required("sales")
def reject(lead_id):
    form = RejectForm()

    def do(lead):
        handoff.reject(lead, current_user, form.reason.data)
        return _("Rejected: the lead went back to nurture (recycled)."), "success"
    return _act(lead_id, "reject", form, do)


@bp.post("/leads/<int:lead_id>/qualify")
@role_required("sales")
def qualify(lead_id):
    form = BantForm()

    def do(lead):
        stage = lead.stage
        passes, met = handoff.qualify(lead, current_user, form.answers())
        if passes:
            return _("Qualified: the lead is an SQL (BANT met: %(met)s).",
                     met=", ".join(criterion_name(c) for c in met)), "success"
        return _("Not qualified, the lead stays %(stage)s: %(why)s.",
                 stage=stage_name(stage), why=bant_shortfall(met)), "warning"
    return _act(lead_id, "qualify", form, do)


def bant_shortfall(met: list[str]) -> str:
    """Why answers failed the configured BANT rule, in words."""
    rule = handoff.config().bant
    why = [ngettext("%(num)d of %(total)d criteria met (%(names)s)",
                    "%(num)d of %(total)d criteria met (%(names)s)", len(met), total=len(CRITERIA),
                    names=", ".join(criterion_name(c) for c in met) or pgettext("bant", "none"))]
    if len(met) < rule.min_met:
        why.append(ngettext("at least %(num)d is needed", "at least %(num)d are needed", rule.min_met))
    missing = [c for c in rule.required if c not in met]
    if missing:
        why.append(ngettext("%(criteria)s must be met", "%(criteria)s must be met", len(missing),
                            criteria=format_list([criterion_name(c) for c in missing],
                                                 locale=get_locale() or "en")))
    if "timeline" not in met:
        why.append(ngettext("a timeline counts within %(num)d month", "a timeline counts within %(num)d months",
                            rule.timeline_months))
    return pgettext("list separator", "; ").join(why)


@bp.post("/leads/<int:lead_id>/move")
@role_required("sales")
def move(lead_id):
    form = MoveForm()

    def do(lead):
        handoff.move(lead, current_user, form.target.data, (form.reason.data or "").strip() or None)
        return _("Done: the lead is now %(stage)s.", stage=stage_name(form.target.data)), "success"
    return _act(lead_id, "move", form, do)
