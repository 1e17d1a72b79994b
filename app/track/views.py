"""Blueprint `track`: open pixel, click redirect, page-visit beacon.

  GET  /t/o/<token>.gif   open pixel: email_opened, key mail:<mail id>
  GET  /t/c/<token>       click: link_clicked, key mail:<mail id>:<sha1(url)[:16]>,
                          302 to the signed URL with lf_t=<visitor token> added
  GET  /t/beacon.js       the script for the marketer's site (consent first)
  POST /t/v               a page visit (or a download, a read) from that script

A bad token records nothing and says nothing about why. Machine hits (see
machine.py) are recorded, flagged, under keys of their own, so that a mail
scanner's fetch never uses up the person's own open or click.
"""
import base64
import hashlib
import logging
from datetime import timezone
from typing import Literal

from flask import Blueprint, Response, current_app, redirect, render_template, request
from pydantic import BaseModel, ConfigDict, ValidationError

from .. import scoring, tasks
from ..api.body import BodyError, Properties, Text, read_json
from ..db import session
from ..extensions import csrf, limiter
from ..models import Mail, utcnow
from .machine import machine_reason
from .tokens import MAX_TOKEN_LENGTH, read_click, read_open, read_visitor, with_visitor_token

log = logging.getLogger(__name__)
bp = Blueprint("track", __name__)
csrf.exempt(bp)  # hit by mail clients and other origins; the signed tokens are the check

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1, transparent
NO_STORE = {"Cache-Control": "no-store, max-age=0"}
BEACON_KINDS = ("page_visited", "article_read", "asset_downloaded")
BEACON_MAX_BODY = 8 * 1024


def _seconds_after_send(mail_id: int) -> float | None:
    mail = session.get(Mail, mail_id)
    if mail is None or mail.sent_at is None:
        return None
    sent_at = mail.sent_at
    if sent_at.tzinfo is None:  # SQLite hands back naive UTC
        sent_at = sent_at.replace(tzinfo=timezone.utc)
    return (utcnow() - sent_at).total_seconds()


def _machine(mail_id: int | None) -> str | None:
    return machine_reason(request.user_agent.string, request.method,
                          _seconds_after_send(mail_id) if mail_id else None,
                          float(current_app.config.get("TRACK_MACHINE_SECONDS", 5)))


def _record(lead_id: int, events: list[tuple[str, str | None, dict]], source: str,
            mail_id: int | None = None) -> bool:
    """Record events for a lead, in one transaction; False when the lead is
    gone (deleted since the email went out) or recording failed: a person who
    clicked gets their page even when the database or the scoring model
    doesn't answer."""
    try:
        reason = _machine(mail_id)
        lead = scoring.lock_lead(lead_id)
        if lead is None:
            session.rollback()
            return False
        for kind, key, properties in events:
            if reason:
                key = key and f"{key}:machine"
                properties = {**properties, "machine_reason": reason}
            scoring.track(lead, kind, key=key, properties=properties, machine=reason is not None,
                          source=source)
        tasks.commit()
        return True
    except Exception:
        log.exception("could not record %s for lead %s", [e[0] for e in events], lead_id)
        session.rollback()
        return False


def _opened(mail_id: int) -> tuple[str, str, dict]:
    return "email_opened", f"mail:{mail_id}", {"message_id": mail_id}


@bp.get("/t/o/<token>.gif")  # HEAD too, which Flask adds (and machine.py flags)
def open_pixel(token):
    found = read_open(token)
    if found:
        lead_id, mail_id = found
        _record(lead_id, [_opened(mail_id)], "tracking", mail_id)
    # The GIF whatever happened: a broken image would tell a forger something.
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@bp.get("/t/c/<token>")
def click(token):
    found = read_click(token)
    if not found:
        return Response("Link not found", 404, mimetype="text/plain", headers=NO_STORE)
    lead_id, mail_id, url = found
    url_hash = hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
    # A click implies an open (images blocked, or the pixel not loaded yet);
    # the open's key makes it count once either way.
    recorded = _record(lead_id, [_opened(mail_id),
                                 ("link_clicked", f"mail:{mail_id}:{url_hash}",
                                  {"message_id": mail_id, "url": url})],
                       "tracking", mail_id)
    response = redirect(with_visitor_token(url, lead_id) if recorded else url, 302)
    response.headers.update(NO_STORE)
    return response


# --- the page-visit beacon ----------------------------------------------------

@bp.get("/t/beacon.js")
def beacon_script():
    base = current_app.config["BASE_URL"].rstrip("/")
    script = render_template("track/beacon.js", endpoint=f"{base}/t/v", script_url=f"{base}/t/beacon.js")
    return Response(script, mimetype="text/javascript",
                    headers={"Cache-Control": "public, max-age=3600"})


Token, Url, Title = Text(MAX_TOKEN_LENGTH), Text(2048), Text(500)


class Visit(BaseModel):
    """What beacon.js posts. Only a few low-stakes kinds: the sender is a
    browser, which anyone can script."""
    model_config = ConfigDict(extra="ignore")
    t: Token | None = None
    kind: Literal[BEACON_KINDS] = "page_visited"
    url: Url | None = None
    title: Title | None = None
    referrer: Url | None = None
    properties: Properties(20) = {}


def _beacon_answer(status: int = 204, message: str | None = None) -> Response:
    # No credentials, any origin: the answer carries nothing worth reading.
    return Response(message, status, mimetype="text/plain",
                    headers={"Access-Control-Allow-Origin": "*", **NO_STORE})


def _beacon_limit() -> str:
    return current_app.config.get("BEACON_RATE_LIMIT", "120/minute")


@bp.post("/t/v")
@limiter.limit(_beacon_limit)
def visit():
    # sendBeacon posts text/plain (a "simple" request: no CORS preflight), so
    # the body is read as JSON whatever its Content-Type says.
    try:
        body = Visit.model_validate(read_json(BEACON_MAX_BODY))
    except BodyError as exc:
        return _beacon_answer(exc.status, exc.message)
    except ValidationError as exc:
        return _beacon_answer(400, "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"]
                                             for e in exc.errors()))
    lead_id = read_visitor(body.t)
    if lead_id is None:  # no token, or a bad one: nothing to record, and no hint why
        return _beacon_answer()
    # No key: every visit is an event (the scoring model decides what counts).
    properties = {"url": body.url, "title": body.title, "referrer": body.referrer, **body.properties}
    _record(lead_id, [(body.kind, None, properties)], "beacon")
    return _beacon_answer()
