"""Blueprint `nurture`: the outbox page (embedded default, no SMTP) and the
inbound endpoint for delivery status notifications."""
from flask import Blueprint, abort, current_app, jsonify, render_template, request
from sqlalchemy import select

from .. import tasks
from ..auth import role_required
from ..db import session
from ..extensions import csrf
from ..models import Mail

bp = Blueprint("nurture", __name__)


@bp.get("/outbox")
@role_required("marketer")
def outbox():
    mails = session.execute(select(Mail).order_by(Mail.id.desc()).limit(200)).scalars().all()
    return render_template("pages/outbox.html", mails=mails, smtp=bool(current_app.config["SMTP_URL"]))


@bp.get("/outbox/<int:mail_id>")
@role_required("marketer")
def outbox_mail(mail_id):
    mail = session.get(Mail, mail_id) or abort(404)
    return render_template("pages/outbox_mail.html", mail=mail)


@bp.post("/inbound/bounces")
@csrf.exempt
def inbound_bounce():
    """A delivery status notification (RFC 3464), posted raw by the mail
    server's bounce pipe, authenticated with an API token."""
    from ..api.auth import authenticate
    token, _ = authenticate()
    if token is None:
        return jsonify(error="A valid API token is required."), 401, {"WWW-Authenticate": "Bearer"}
    from .bounces import ingest_message
    raw = request.get_data()
    if not raw:
        return jsonify(error="Post the raw DSN message as the body."), 400
    result = ingest_message(raw)
    tasks.commit()
    return jsonify(result), 200
