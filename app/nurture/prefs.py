"""Blueprint `prefs`: one-click unsubscribe (RFC 8058) and the preference page.

The token names the lead (and the message it came from); it never expires:
an unsubscribe link must work however old the email is.
"""
from flask import Blueprint, abort, current_app, render_template, request
from itsdangerous import BadData
from sqlalchemy import select

from .. import tasks
from ..db import session
from ..extensions import csrf
from ..models import Enrollment, Lead, utcnow
from ..signing import serializer

bp = Blueprint("prefs", __name__)
csrf.exempt(bp)  # the signed token is the credential; mail clients POST without a form
SALT = "unsubscribe"


def unsubscribe_url(lead_id: int, mail_id: int | None = None) -> str:
    token = serializer(SALT).dumps({"l": lead_id, "m": mail_id})
    return f"{current_app.config['BASE_URL'].rstrip('/')}/u/{token}"


def preferences_url(lead_id: int) -> str:
    return unsubscribe_url(lead_id) + "?preferences=1"


def read(token: str) -> tuple[int, int | None] | None:
    if not token or len(token) > 500:
        return None
    try:
        data = serializer(SALT).loads(token)
    except BadData:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("l"), int):
        return None
    return data["l"], data.get("m") if isinstance(data.get("m"), int) else None


def unsubscribe(lead: Lead, mail_id: int | None, source: str) -> None:
    """Stop all nurture mail at once: the flag is checked at send time, and
    active enrollments end now."""
    from ..scoring import track
    if lead.unsubscribed_at is None:
        lead.unsubscribed_at = utcnow()
        track(lead, "unsubscribed", key="unsubscribed", properties={"message_id": mail_id, "via": source},
              source=source)
    for enrollment in session.execute(select(Enrollment).where(Enrollment.lead_id == lead.id,
                                                               Enrollment.status == "active")).scalars():
        enrollment.status, enrollment.exit_reason, enrollment.finished_at = "exited", "unsubscribed", utcnow()


def _lead_or_404(token: str) -> tuple[Lead, int | None]:
    from ..scoring import lock_lead
    found = read(token)
    lead = lock_lead(found[0]) if found else None
    if lead is None:
        abort(404, description="This link is not valid.")
    return lead, found[1]


@bp.get("/u/<token>")
def page(token):
    lead, _ = _lead_or_404(token)
    return render_template("pages/preferences.html", lead=lead, token=token, topics=_topics(),
                           done=request.args.get("done"))


@bp.post("/u/<token>")
def post(token):
    lead, mail_id = _lead_or_404(token)
    # RFC 8058: the mail client posts List-Unsubscribe=One-Click; our own page
    # posts either that or the topics the person keeps.
    if request.form.get("List-Unsubscribe") == "One-Click" or request.form.get("action") == "unsubscribe_all":
        unsubscribe(lead, mail_id, "one-click" if request.form.get("List-Unsubscribe") else "page")
        tasks.commit()
        if request.form.get("List-Unsubscribe") == "One-Click" and request.form.get("action") is None:
            return "Unsubscribed.", 200, {"Content-Type": "text/plain; charset=utf-8"}
        return render_template("pages/preferences.html", lead=lead, token=token, topics=_topics(), done="all")
    keep = set(request.form.getlist("topic"))
    lead.opted_out_topics = sorted(set(_topics()) - keep)
    if keep and lead.unsubscribed_at is not None:
        lead.unsubscribed_at = None  # the person chose to hear from us again
    tasks.commit()
    return render_template("pages/preferences.html", lead=lead, token=token, topics=_topics(), done="topics")


def _topics() -> dict[str, str]:
    from .engine import campaigns
    topics = {}
    for campaign in campaigns().values():
        topics.setdefault(campaign.definition.topic, campaign.definition.name)
    return topics
