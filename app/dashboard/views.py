"""Blueprint `dashboard`: the marketer's pages."""
from collections import Counter
from datetime import datetime, timedelta

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select, text

from ..auth import check_role
from ..db import is_postgres, session
from ..models import FormView, Submission, utcnow
from ..workspace import reason_label

bp = Blueprint("dashboard", __name__)


@bp.before_request
def _marketers_only():
    """Every dashboard page is a marketing page (admins pass too); a page
    added here later is protected without anyone remembering to."""
    if request.endpoint == "dashboard.home" and current_user.is_authenticated \
            and current_user.role == "sales":
        return redirect(url_for("sales.inbox"))
    return check_role("marketer")


def embed_codes(slug: str, base_url: str, title: str) -> dict[str, str]:
    """The snippets a marketer pastes into the company's site."""
    base = base_url.rstrip("/")
    return {
        "iframe": (f'<iframe src="{base}/f/{slug}?frame=1" title="{title}" data-leadflow-frame="{slug}"'
                   f' style="width:100%;border:0;min-height:640px" loading="lazy"></iframe>\n'
                   "<script>addEventListener(\"message\",function(e){if(e.origin!==\"" + base + "\")return;"
                   "var d=e.data||{};if(d.leadflow===\"resize\"){var f=document.querySelector("
                   "'iframe[data-leadflow-frame=\"'+d.form+'\"]');if(f)f.style.height=d.height+\"px\";}});</script>"),
        "script": (f'<div data-leadflow-form="{slug}"></div>\n'
                   f'<script src="{base}/f/{slug}/embed.js" async></script>'),
        "link": f"{base}/f/{slug}",
    }


@bp.get("/")
def home():
    """A marketer's Monday morning starts on the overview."""
    return redirect(url_for("reports.overview"))


PERIODS = (7, 30, 90, 365)


def period_start(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC, `days - 1` days ago: "the last 30 days" includes today."""
    today = (now or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


def exclusions_by_reason(since: datetime) -> dict[str, Counter]:
    """form slug → reason → excluded submissions giving that reason (a
    submission with two reasons counts once under each)."""
    found: dict[str, Counter] = {}
    if is_postgres():
        rows = session.execute(text(
            "SELECT s.form_slug, r.reason, count(*) FROM submissions s CROSS JOIN LATERAL "
            "jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.reasons) = 'array' THEN s.reasons "
            "ELSE '[]'::jsonb END) AS r(reason) "
            "WHERE s.verdict = 'excluded' AND s.created_at >= :since GROUP BY s.form_slug, r.reason"),
            {"since": since})
        for slug, reason, count in rows:
            found.setdefault(slug, Counter())[reason] = count
        return found
    # SQLite (the embedded default, small volumes): count in Python.
    for slug, reasons in session.execute(select(Submission.form_slug, Submission.reasons).where(
            Submission.verdict == "excluded", Submission.created_at >= since)):
        found.setdefault(slug, Counter()).update(str(r) for r in reasons or () if isinstance(reasons, list))
    return found


def form_figures(since: datetime) -> dict[str, dict]:
    """Per form since `since`: views, submissions (invalid ones apart: they
    went back to the person, who usually sends again), accepted, in review,
    excluded, the two rates and the exclusions by reason."""
    figures: dict[str, dict] = {}

    def of(slug):
        return figures.setdefault(slug, {"views": 0, "submissions": 0, "invalid": 0, "accepted": 0,
                                         "review": 0, "excluded": 0, "reasons": Counter()})
    for slug, views in session.execute(select(FormView.form_slug, func.sum(FormView.views))
                                       .where(FormView.day >= since.replace(tzinfo=None))
                                       .group_by(FormView.form_slug)):
        of(slug)["views"] = int(views or 0)
    for slug, verdict, count in session.execute(
            select(Submission.form_slug, Submission.verdict, func.count())
            .where(Submission.created_at >= since).group_by(Submission.form_slug, Submission.verdict)):
        row = of(slug)
        if verdict == "invalid":
            row["invalid"] += count
            continue
        row["submissions"] += count
        if verdict in ("accepted", "review", "excluded"):
            row[verdict] += count
    for slug, reasons in exclusions_by_reason(since).items():
        of(slug)["reasons"] = reasons
    for row in figures.values():
        row["acceptance"] = row["accepted"] / row["submissions"] if row["submissions"] else None
        row["conversion"] = row["submissions"] / row["views"] if row["views"] else None
    return figures


@bp.get("/forms")
def forms():
    registry = current_app.extensions["leadflow.forms"]
    days = request.args.get("days", 30, type=int)
    days = days if days in PERIODS else 30
    since = period_start(days)
    base = current_app.config["BASE_URL"] if current_app.config.get("BASE_URL_FIXED") else request.host_url
    return render_template("pages/forms.html", forms=registry.all(), errors=registry.errors,
                           rules_error=current_app.extensions["leadflow.rules"].error,
                           figures=form_figures(since), days=days, periods=PERIODS, since=since,
                           reason_label=reason_label,
                           codes={f.slug: embed_codes(f.slug, base, f.definition.title)
                                  for f in registry.all()})
