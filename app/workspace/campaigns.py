"""Blueprint `campaigns`: every campaign with its status and figures, one
campaign drawn as a flow with per-step figures, pause / resume, and
enrolling the existing leads that match."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import func, select

from ..auth import check_role
from ..db import session
from ..models import CampaignState, Enrollment
from ..nurture.engine import campaigns as defined_campaigns
from ..nurture.engine import enroll_existing, paused, set_paused
from ..nurture.stats import all_campaign_totals, campaign_totals, step_stats
from .flow import cards

bp = Blueprint("campaigns", __name__)


@bp.before_request
def _marketers_only():
    return check_role("marketer")


def _campaign_or_404(slug):
    campaign = defined_campaigns().get(slug)
    if campaign is None:
        abort(404, description=_("No campaign by that name."))
    return campaign


def _errors_by_slug(errors) -> dict[str, list[str]]:
    """A broken file keeps its last good version running: say so on its row."""
    found: dict[str, list[str]] = {}
    for error in errors:
        found.setdefault(error.path.rsplit("/", 1)[-1].removesuffix(".yaml"), []).append(str(error))
    return found


@bp.get("/campaigns")
def index():
    defined = defined_campaigns()  # refreshes the registry, and with it its errors
    errors = current_app.extensions["leadflow.campaigns"].errors
    stopped = paused()
    figures = all_campaign_totals(defined)
    rows = [(campaign, figures[slug]) for slug, campaign in sorted(defined.items())]
    return render_template("pages/campaigns.html", rows=rows, stopped=stopped, errors=errors,
                           broken=_errors_by_slug(errors))


@bp.get("/campaigns/<slug>")
def detail(slug):
    campaign = _campaign_or_404(slug)
    at_step = dict(session.execute(
        select(Enrollment.step_key, func.count()).where(Enrollment.campaign == slug,
                                                        Enrollment.status == "active")
        .group_by(Enrollment.step_key)).all())
    state = session.get(CampaignState, slug)
    errors = _errors_by_slug(current_app.extensions["leadflow.campaigns"].errors).get(slug, [])
    return render_template("pages/campaign.html", campaign=campaign, cards=cards(campaign),
                           totals=campaign_totals(slug), steps=step_stats(slug), at_step=at_step,
                           paused=bool(state and state.paused), state=state, errors=errors)


def _set(slug: str, value: bool):
    _campaign_or_404(slug)
    set_paused(slug, value, f"user:{current_user.id}")  # commits
    flash(_("%(slug)s paused: nothing is sent until it is resumed.", slug=slug) if value
          else _("%(slug)s resumed.", slug=slug), "success")
    return redirect(url_for("campaigns.detail", slug=slug))


@bp.post("/campaigns/<slug>/pause")
def pause(slug):
    return _set(slug, True)


@bp.post("/campaigns/<slug>/resume")
def resume(slug):
    return _set(slug, False)


@bp.post("/campaigns/<slug>/enroll")
def enroll(slug):
    campaign = _campaign_or_404(slug)
    # In id batches with a commit each (see engine.enroll_existing); for a
    # very large base, `leadflow campaigns enroll <slug> --existing` does
    # the same outside a web request.
    count = enroll_existing(campaign)
    flash(ngettext("%(num)d lead enrolled in %(slug)s.", "%(num)d leads enrolled in %(slug)s.",
                   count, slug=slug), "success")
    return redirect(url_for("campaigns.detail", slug=slug))
