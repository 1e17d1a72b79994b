"""Blueprint `review`: the review queue and the rules preview.

The queue holds what the rules did not settle alone: verdict `review` (a
person decides) and the exclusions no person has looked at yet (spam hidden
unless asked for). A person's decision sets decided_by to `user:<id>`, which
is what takes a submission out of the queue; the rules' reasons stay on the
row, so verdict + decided_by + reasons keep the whole story.
"""
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import String, cast, func, not_, or_, select

from .. import tasks
from ..auth import check_role
from ..capture.service import apply_to_lead, judge_fields
from ..capture.webform import HONEYPOT, RENDER_TOKEN
from ..db import is_postgres, session
from ..definitions import DefinitionError
from ..models import Submission, utcnow
from ..qualify.lifecycle import TransitionError
from ..qualify.rules import Rules, Verdict, load_rules
from . import is_spam, reason_label

bp = Blueprint("review", __name__)

PAGE = 50
MAX_BULK = 200          # ids in one bulk POST
MAX_RULES_CHARS = 200_000
MAX_PREVIEW_ROWS = 50_000  # submissions judged by one preview
SHOWN_FLIPS = 500
HIDDEN_FIELDS = {"csrf_token", RENDER_TOKEN}  # plumbing, not what the person wrote
KINDS = ("all", "review", "excluded")


@bp.before_request
def _marketers_only():
    return check_role("marketer")


@bp.app_template_filter("reason")
def _reason_filter(code):
    return reason_label(code)


# --- the queue ------------------------------------------------------------------

def _undecided_by_people():
    return or_(Submission.decided_by.is_(None), not_(Submission.decided_by.startswith("user:")))


def _filters() -> dict:
    kind = request.values.get("kind", "all")
    return {"kind": kind if kind in KINDS else "all",
            "spam": "1" if request.values.get("spam") == "1" else "",
            "form": (request.values.get("form") or "")[:80]}


def queue_query(kind: str = "all", spam: bool = False, form: str = "", before: int | None = None):
    verdicts = ("review", "excluded") if kind == "all" else (kind,)
    query = select(Submission).where(Submission.verdict.in_(verdicts), _undecided_by_people())
    if not spam:
        # reasons is a JSON list of codes: its text holds "spam: only for spam.
        # Same SQL on PostgreSQL (jsonb::varchar) and SQLite (JSON text).
        query = query.where(not_(func.coalesce(cast(Submission.reasons, String), "").contains('"spam:')))
    if form:
        query = query.where(Submission.form_slug == form)
    if before:
        query = query.where(Submission.id < before)
    # Keyset pagination on the primary key: ids grow with time, so this is
    # newest first, and page N costs what page 1 does.
    return query.order_by(Submission.id.desc()).limit(PAGE + 1)


def shown_fields(payload) -> list[tuple[str, str]]:
    if not isinstance(payload, dict):
        return [("_raw", str(payload))]
    return [(str(k), v if isinstance(v, str) else str(v)) for k, v in payload.items()
            if k not in HIDDEN_FIELDS and v not in (None, "")]


@bp.get("/review")
def queue():
    filters = _filters()
    before = request.args.get("before", type=int)
    rows = session.execute(queue_query(filters["kind"], filters["spam"] == "1", filters["form"],
                                       before)).scalars().all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    registry = current_app.extensions["leadflow.forms"]
    return render_template("pages/review.html", submissions=rows, filters=filters,
                           forms=registry.all(), titles={f.slug: f.definition.title for f in registry.all()},
                           next_before=rows[-1].id if more else None, shown_fields=shown_fields,
                           is_spam=is_spam)


class ReviewError(Exception):
    pass


def _claim(submission_id: int) -> Submission:
    """The submission, row-locked, if it is still waiting for a person."""
    query = select(Submission).where(Submission.id == submission_id)
    if is_postgres():
        query = query.with_for_update()
    submission = session.execute(query).scalar_one_or_none()
    if submission is None or submission.verdict not in ("review", "excluded") \
            or (submission.decided_by or "").startswith("user:"):
        raise ReviewError(_("Submission %(id)s was already decided.", id=submission_id))
    return submission


def approve(submission_id: int, actor: str) -> Submission:
    """A person accepts what the rules held back: the lead is created or
    updated, scored and enrolled exactly as for an accepted submission
    (apply_to_lead also moves a disqualified lead back to `lead` through
    change_stage, and enrolls it through enroll_matching). The rules'
    reasons stay on the row as history. Commits."""
    submission = _claim(submission_id)
    form = current_app.extensions["leadflow.forms"].get(submission.form_slug)
    if form is None:
        raise ReviewError(_("Submission %(id)s: the form %(form)s no longer exists.",
                            id=submission_id, form=submission.form_slug))
    fields = submission.payload if isinstance(submission.payload, dict) else {}
    if not isinstance(fields.get("email"), str):
        raise ReviewError(_("Submission %(id)s has no email address.", id=submission_id))
    try:
        apply_to_lead(submission, form, fields, Verdict("accepted", ()), actor)
    except (ValueError, TransitionError) as exc:  # an unusable email, a stage that cannot move
        raise ReviewError(_("Submission %(id)s: %(problem)s", id=submission_id, problem=str(exc))) from exc
    submission.verdict, submission.decided_at, submission.decided_by = "accepted", utcnow(), actor
    tasks.commit()
    return submission


def exclude(submission_id: int, actor: str) -> Submission:
    """A person confirms the exclusion (or excludes a review item). The lead,
    if any, is left as it is: a "no" to one submission is not a verdict on
    the person. Commits."""
    submission = _claim(submission_id)
    submission.verdict, submission.decided_at, submission.decided_by = "excluded", utcnow(), actor
    tasks.commit()
    return submission


ACTIONS = {"approve": approve, "exclude": exclude}


@bp.post("/review")
def decide():
    filters = _filters()
    back = redirect(url_for("review.queue", **{k: v for k, v in filters.items() if v}))
    # One button per row posts "approve:<id>"; the bulk buttons post an action
    # with the ticked ids. One form, so no nested forms in the page.
    item = request.form.get("item", "")
    if item:
        action, _sep, raw_id = item.partition(":")
        raw_ids = [raw_id]
    else:
        action, raw_ids = request.form.get("action", ""), request.form.getlist("ids")
    if action not in ACTIONS:
        abort(400, description=_("Unknown action."))
    ids = [int(i) for i in raw_ids if i.isdigit()][:MAX_BULK]
    if not ids:
        flash(_("Tick at least one submission."), "warning")
        return back
    actor, done, problems = f"user:{current_user.id}", 0, []
    for submission_id in ids:  # one transaction each: one bad row does not undo the others
        try:
            ACTIONS[action](submission_id, actor)
            done += 1
        except ReviewError as exc:
            session.rollback()
            problems.append(str(exc))
    if done:
        message = (ngettext("%(num)d submission approved.", "%(num)d submissions approved.", done)
                   if action == "approve" else
                   ngettext("%(num)d exclusion confirmed.", "%(num)d exclusions confirmed.", done))
        flash(message, "success")
    for problem in problems[:10]:
        flash(problem, "error")
    return back


# --- rules preview ----------------------------------------------------------------

@dataclass
class Flip:
    submission: dict
    before: Verdict
    after: Verdict


@dataclass
class Preview:
    since: datetime
    judged: int = 0
    counts: Counter = field(default_factory=Counter)  # (before, after) -> submissions
    flips: list[Flip] = field(default_factory=list)
    truncated: bool = False

    @property
    def flipped(self) -> int:
        return sum(n for (before, after), n in self.counts.items() if before != after)


def parse_rules(text: str) -> Rules:
    """The proposed rules, validated by the very loader of forms/rules.yaml
    (from a temporary file of that name, so errors read forms/rules.yaml:LINE)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "forms" / "rules.yaml"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        return load_rules(path)


def preview(current: Rules, proposed: Rules, since: datetime) -> Preview:
    """Judge the judged submissions since `since` with both rule sets, with
    the same judge function as the submit path. Comparing current with
    proposed (rather than with the stored verdict) isolates the change:
    an unchanged file flips nothing, even where a person decided."""
    forms = current_app.extensions["leadflow.forms"]
    result = Preview(since=since)
    query = (select(Submission.id, Submission.form_slug, Submission.payload, Submission.fill_ms,
                    Submission.email, Submission.verdict, Submission.decided_by, Submission.created_at)
             .where(Submission.created_at >= since,
                    Submission.verdict.in_(("accepted", "excluded", "review")))
             .order_by(Submission.id.desc()).limit(MAX_PREVIEW_ROWS + 1)
             .execution_options(yield_per=1000))
    for row in session.execute(query):
        if result.judged == MAX_PREVIEW_ROWS:
            result.truncated = True
            break
        fields = row.payload if isinstance(row.payload, dict) else {}
        honeypot = fields.get(HONEYPOT)
        meta = {"elapsed_ms": row.fill_ms, "honeypot": honeypot if isinstance(honeypot, str) else None}
        form = forms.get(row.form_slug)
        before = judge_fields(form, fields, meta, current)
        after = judge_fields(form, fields, meta, proposed)
        result.judged += 1
        result.counts[(before.verdict, after.verdict)] += 1
        if before.verdict != after.verdict and len(result.flips) < SHOWN_FLIPS:
            result.flips.append(Flip(row._asdict(), before, after))
    return result


def _rules_path() -> Path:
    return Path(current_app.config["FORMS_DIR"]) / "rules.yaml"


@bp.route("/review/rules", methods=["GET", "POST"])
def rules_preview():
    default_days = int(current_app.config.get("RULES_PREVIEW_DAYS", 30))
    if request.method == "GET":
        try:
            text = _rules_path().read_text(encoding="utf-8")
        except OSError:
            text = ""
        return render_template("pages/review_rules.html", text=text, days=default_days,
                               result=None, error=None)
    text = request.form.get("rules", "")
    days = request.form.get("days", default_days, type=int)
    error, result, status = None, None, 200
    if not 1 <= days <= 365:
        error, status, days = _("The period is 1 to 365 days."), 422, default_days
    elif len(text) > MAX_RULES_CHARS:
        error, status = _("The rules are longer than %(n)d characters.", n=MAX_RULES_CHARS), 413
    else:
        try:
            proposed = parse_rules(text)
        except DefinitionError as exc:
            # Shown as the file's own loader words it: file, line, key, problem.
            error, status = str(exc), 422
        else:
            since = utcnow() - timedelta(days=days)
            result = preview(current_app.extensions["leadflow.rules"].get(), proposed, since)
    return render_template("pages/review_rules.html", text=text, days=days, result=result,
                           error=error), status
