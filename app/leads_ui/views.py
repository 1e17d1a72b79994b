"""The leads list, a lead's page, its actions and the import page.

Who sees what: marketers and admins see every lead (so do sales managers,
as in the sales inbox); a salesperson sees the leads they own. Actions that
steer a lead (owner, stage, campaigns) are the marketer's and the admin's;
anyone who may see a lead may add a note. Every action locks the lead row,
acts, commits through tasks.commit() and redirects with a flash message.
"""
import csv
import io
from datetime import datetime, timezone

from flask import (Response, abort, current_app, flash, redirect, render_template, request,
                   stream_with_context, url_for)
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import select

from .. import tasks
from ..auth import has_role, role_required
from ..dashboard.charts import line_chart
from ..db import session
from ..leads import change_owner, change_stage
from ..models import (Enrollment, Event, Lead, LeadImport, Mail, Note, OwnerChange, ScoreHistory, StageChange,
                      Submission, User, utcnow)
from ..nurture import decide
from ..nurture import engine
from ..qualify.lifecycle import STAGES, TRANSITIONS, TransitionError
from ..sales import handoff
from ..sales.views import may_view, sees_all
from ..scoring import lock_lead, model
from . import bp, importer, listing

TIMELINE_LIMIT = 200  # newest entries shown per lead; older ones stay in the database
NOTE_MAX = 5000
EXPORT_COLUMNS = ("email", "name", "company", "job_title", "segment", "country", "stage", "score",
                  "temperature", "owner", "first_form", "source", "medium", "created_at", "mql_at")


def _scope() -> int | None:
    """The owner a list is limited to: the salesperson themself, or None (all)."""
    user = current_user
    return None if user.role == "marketer" or sees_all(user) else user.id


def _salespeople(active_only=False) -> list[User]:
    query = select(User).where(User.role == "sales").order_by(User.name, User.id)
    if active_only:
        query = query.where(User.active)
    return session.execute(query).scalars().all()


def _form_slugs() -> list[str]:
    return [form.slug for form in current_app.extensions["leadflow.forms"].all()]


# --- the list ------------------------------------------------------------------

@bp.get("/leads")
@role_required("marketer", "sales")
def index():
    filters = listing.parse_filters(request.args)
    for error in filters.errors:
        flash(str(error), "warning")
    query = listing.filtered(filters, _scope())
    try:
        page = listing.fetch_page(query, filters, request.args.get("after"), request.args.get("before"))
    except listing.BadCursor:
        abort(400, description=gettext("This page link is out of date: start again from the first page."))
    total = listing.count_upto(query)
    names = dict(session.execute(select(User.id, User.name)).all())
    return render_template("pages/leads.html", filters=filters, page=page, names=names,
                           total=total, capped=total > listing.COUNT_CAP, cap=listing.COUNT_CAP,
                           stages=STAGES, temperatures=listing.TEMPERATURES, sorts=listing.SORT_LABELS,
                           owners=_salespeople() if _scope() is None else [], forms=_form_slugs(),
                           args=filters.args(), scoped=_scope() is not None)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):  # numbers are ours: never a formula, keep their sign
        return f"{round(value, 2):g}"
    return importer.spreadsheet_safe(value)


@bp.get("/leads.csv")
@role_required("marketer", "sales")
def export():
    filters = listing.parse_filters(request.args)
    query = listing.filtered(filters, _scope())
    owners = dict(session.execute(select(User.id, User.email)).all())

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        # A BOM so that spreadsheets read the accents as UTF-8.
        buffer.write("\ufeff")
        writer.writerow(EXPORT_COLUMNS)
        for count, lead in enumerate(listing.iterate(query, filters), 1):
            writer.writerow([_csv_value(owners.get(lead.owner_id) if name == "owner" else getattr(lead, name))
                             for name in EXPORT_COLUMNS])
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    stamp = utcnow().strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="leads-{stamp}.csv"',
                             "Cache-Control": "no-store"})


# --- a lead's page -----------------------------------------------------------------

def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive UTC datetimes.
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def _actor(actor: str | None, names: dict) -> str:
    kind, _, ref = (actor or "").partition(":")
    if kind == "user" and ref.isdigit() and int(ref) in names:
        return names[int(ref)]
    return actor or ""


def timeline(lead: Lead, limit: int = TIMELINE_LIMIT) -> list[dict]:
    """Submissions, events, emails, stage and owner changes and notes of one lead,
    newest first: the latest `limit` of each kind, merged, cut to `limit`."""
    def latest(model, when):
        return session.execute(select(model).where(model.lead_id == lead.id)
                               .order_by(when.desc(), model.id.desc()).limit(limit)).scalars().all()
    entries = ([{"kind": "submission", "at": s.created_at, "item": s}
                for s in latest(Submission, Submission.created_at)]
               + [{"kind": "event", "at": e.occurred_at, "item": e} for e in latest(Event, Event.occurred_at)]
               + [{"kind": "mail", "at": m.sent_at or m.created_at, "item": m}
                  for m in latest(Mail, Mail.created_at)]
               + [{"kind": "stage", "at": c.at, "item": c} for c in latest(StageChange, StageChange.at)]
               + [{"kind": "owner", "at": c.at, "item": c} for c in latest(OwnerChange, OwnerChange.at)]
               + [{"kind": "note", "at": n.created_at, "item": n} for n in latest(Note, Note.created_at)])
    for entry in entries:
        entry["at"] = _aware(entry["at"])
    entries.sort(key=lambda e: (e["at"], e["item"].id), reverse=True)
    return entries[:limit]


def _viewable(lead_id: int) -> Lead:
    lead = session.get(Lead, lead_id)
    if lead is None:
        abort(404, description=gettext("No lead with that number."))
    if not may_view(current_user, lead):
        abort(403, description=gettext("This lead belongs to another salesperson."))
    return lead


@bp.get("/leads/<int:lead_id>")
@role_required("marketer", "sales")
def lead_page(lead_id):
    lead = _viewable(lead_id)
    scoring_model = model()
    card = handoff.lead_card(lead)
    history = session.execute(select(ScoreHistory).where(ScoreHistory.lead_id == lead.id)
                              .order_by(ScoreHistory.at.desc(), ScoreHistory.id.desc()).limit(200)).scalars().all()
    history.reverse()
    points = [(_aware(h.at).strftime("%Y-%m-%d"), round(h.score, 1)) for h in history]
    if history:  # where the first change started from, so one change still draws a line
        points.insert(0, (points[0][0], round(history[0].score - history[0].delta, 1)))
        if abs((lead.score or 0) - history[-1].score) >= 0.05:  # cooled since (decay writes no history)
            points.append((utcnow().strftime("%Y-%m-%d"), round(lead.score or 0, 1)))
    chart = line_chart(points, gettext("Score over time"), threshold=scoring_model.mql_threshold)
    names = dict(session.execute(select(User.id, User.name)).all())
    steering = has_role(current_user, "marketer")
    enrollments = session.execute(select(Enrollment).where(Enrollment.lead_id == lead.id)
                                  .order_by(Enrollment.entered_at.desc())).scalars().all()
    active = {e.campaign for e in enrollments if e.status == "active"}
    return render_template(
        "pages/lead_detail.html", lead=lead, card=card, chart=chart, history=history,
        threshold=scoring_model.mql_threshold, entries=timeline(lead), names=names,
        actor=lambda a: _actor(a, names), steering=steering, owner=names.get(lead.owner_id),
        salespeople=_salespeople(active_only=True) if steering else [],
        targets=sorted(TRANSITIONS.get(lead.stage, ()), key=STAGES.index),
        campaigns=sorted((c for c in engine.campaigns().values() if c.slug not in active),
                         key=lambda c: c.slug) if steering else [],
        enrollments=enrollments, note_max=NOTE_MAX,
        sales_page=(lead.owner_id == current_user.id or current_user.role == "admin"
                    or (current_user.role == "sales" and current_user.is_manager)))


# --- actions -----------------------------------------------------------------------

def _change(lead_id: int, do, anchor: str = ""):
    """Lock, act, commit, redirect: the shell of every action. `do` returns
    (message, category); TransitionError or ValueError leave nothing changed."""
    lead = lock_lead(lead_id)
    if lead is None:
        abort(404, description=gettext("No lead with that number."))
    if not may_view(current_user, lead):
        abort(403, description=gettext("This lead belongs to another salesperson."))
    try:
        message, category = do(lead)
    except (TransitionError, ValueError) as exc:
        session.rollback()
        flash(gettext("Nothing changed: %(why)s.", why=str(exc)), "error")
    else:
        tasks.commit()
        flash(message, category)
    return redirect(url_for(".lead_page", lead_id=lead_id) + anchor)


@bp.post("/leads/<int:lead_id>/notes")
@role_required("marketer", "sales")
def add_note(lead_id):
    body = (request.form.get("body") or "").replace("\x00", "").strip()

    def do(lead):
        if not body:
            raise ValueError(gettext("a note cannot be empty"))
        if len(body) > NOTE_MAX:
            raise ValueError(gettext("a note holds at most %(n)d characters", n=NOTE_MAX))
        session.add(Note(lead_id=lead.id, user_id=current_user.id, body=body, created_at=utcnow()))
        return gettext("Note added."), "success"
    return _change(lead_id, do, "#timeline-heading")


@bp.post("/leads/<int:lead_id>/owner")
@role_required("marketer")
def assign(lead_id):
    choice = request.form.get("owner_id", "")
    actor = f"user:{current_user.id}"
    reason = (request.form.get("reason") or "").strip()[:2000] or None

    def do(lead):
        if not choice:
            change_owner(lead, None, actor, reason)
            return gettext("The lead has no owner now."), "success"
        owner = session.get(User, int(choice)) if choice.isdigit() else None
        if owner is None or owner.role != "sales" or not owner.active:
            raise ValueError(gettext("choose an active salesperson"))
        change_owner(lead, owner.id, actor, reason)
        return gettext("Assigned to %(name)s.", name=owner.name), "success"
    return _change(lead_id, do)


@bp.post("/leads/<int:lead_id>/stage")
@role_required("marketer")
def move(lead_id):
    target = request.form.get("stage", "")
    reason = (request.form.get("reason") or "").strip()[:2000] or None
    actor = f"user:{current_user.id}"

    def do(lead):
        if target == "mql" and lead.stage != "mql":
            # By hand or by score, an MQL is handed to sales the same way:
            # mql_at, an owner, the notification and the webhook.
            handoff.on_threshold_crossed(lead, actor, reason or f"made an MQL by {current_user.name}")
        else:
            change_stage(lead, target, actor, reason or f"changed by {current_user.name}")
        return gettext("The lead is now %(stage)s.", stage=target), "success"
    return _change(lead_id, do)


@bp.post("/leads/<int:lead_id>/enroll")
@role_required("marketer")
def enroll(lead_id):
    campaign = engine.campaigns().get(request.form.get("campaign", ""))

    def do(lead):
        if campaign is None:
            raise ValueError(gettext("choose a campaign"))
        if engine.enroll(lead, campaign, "manual", check_audience=False) is None:
            why = decide.suppression(campaign, engine.facts(lead))
            raise ValueError(gettext("not enrolled in %(campaign)s: %(why)s", campaign=campaign.slug,
                                     why=why or gettext("already in it, or its re-entry policy says not yet")))
        return gettext("Enrolled in %(campaign)s.", campaign=campaign.slug), "success"
    return _change(lead_id, do, "#campaigns-heading")


@bp.post("/leads/<int:lead_id>/unenroll")
@role_required("marketer")
def unenroll(lead_id):
    enrollment_id = request.form.get("enrollment_id", "")

    def do(lead):
        enrollment = session.execute(select(Enrollment).where(
            Enrollment.id == int(enrollment_id), Enrollment.lead_id == lead.id,
            Enrollment.status == "active")).scalar_one_or_none() if enrollment_id.isdigit() else None
        if enrollment is None:
            raise ValueError(gettext("this enrollment is not active"))
        engine.finish(enrollment, "exited", f"removed by {current_user.name}", utcnow())
        return gettext("Removed from %(campaign)s.", campaign=enrollment.campaign), "success"
    return _change(lead_id, do, "#campaigns-heading")


# --- import -----------------------------------------------------------------------

@bp.get("/leads/import")
@role_required("marketer")
def import_page():
    return render_template("pages/leads_import.html", forms=_form_slugs(), report=None,
                           max_mb=importer.MAX_BYTES // (1024 * 1024))


@bp.post("/leads/import")
@role_required("marketer")
def import_upload():
    upload = request.files.get("file")
    form_slug = request.form.get("form") or None
    render = dict(forms=_form_slugs(), max_mb=importer.MAX_BYTES // (1024 * 1024), chosen=form_slug)
    if upload is None or not upload.filename:
        flash(gettext("Choose a CSV file to import."), "error")
        return render_template("pages/leads_import.html", report=None, **render), 422
    data = upload.stream.read(importer.MAX_BYTES + 1)
    if len(data) > importer.MAX_BYTES:
        flash(gettext("The file is larger than %(mb)d MB: split it, or use `leadflow leads import`.",
                      mb=render["max_mb"]), "error")
        return render_template("pages/leads_import.html", report=None, **render), 413
    try:
        job = importer.queue_import(data, upload.filename[:200], form_slug, current_user.id)
    except importer.ImportProblem as exc:
        session.rollback()
        flash(gettext("Nothing imported: %(why)s.", why=str(exc)), "error")
        return render_template("pages/leads_import.html", report=None, **render), 422
    tasks.commit()  # with a broker the import runs in a worker; without one, here
    return redirect(url_for("leads.import_status", import_id=job.id), code=303)


def _import_job(import_id: int) -> LeadImport:
    job = session.get(LeadImport, import_id)
    if job is None:
        abort(404, description=gettext("No import with that number."))
    return job


@bp.get("/leads/import/<int:import_id>")
@role_required("marketer")
def import_status(import_id):
    job = _import_job(import_id)
    report = importer.stored_report(job)
    describe = lambda result: result.describe(gettext)  # noqa: E731
    return render_template("pages/leads_import.html", job=job, report=report, describe=describe,
                           filename=job.filename, forms=_form_slugs(),
                           max_mb=importer.MAX_BYTES // (1024 * 1024), chosen=job.form_slug)


@bp.get("/leads/import/<int:import_id>/status.json")
@role_required("marketer")
def import_progress(import_id):
    job = _import_job(import_id)
    return {"status": job.status, "done": job.done_rows, "total": job.total_rows}


@bp.get("/leads/import/<int:import_id>/report.csv")
@role_required("marketer")
def import_report(import_id):
    job = _import_job(import_id)
    body = "\ufeff" + importer.stored_report(job).to_csv(gettext)
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename=import-{job.id}-report.csv"})
