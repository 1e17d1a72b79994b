"""Blueprint `api`: /api/v1 for other systems (CRM, webinar tool, shop).

POST /events records an event (scored, possibly handing the lead to sales);
GET /leads/<email> reads a lead; GET /openapi.json describes both. Bearer
tokens: `leadflow tokens create|list|revoke` (app/api/cli.py).
"""
from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from sqlalchemy import select

from .. import scoring, tasks
from ..db import session
from ..extensions import csrf
from ..leads import get_or_create_lead
from ..models import Event, Lead, StageChange, User, utcnow
from ..qualify.profile import normalize_email
from ..qualify.scoring import creates_lead
from . import cli, openapi
from .auth import authenticate
from .body import BodyError, Properties, Text, parse_instant, read_json

bp = Blueprint("api", __name__, url_prefix="/api/v1", cli_group="tokens")
csrf.exempt(bp)  # bearer tokens, no cookies: nothing for CSRF to forge
cli.register(bp)

MAX_BODY = 64 * 1024
# A lead created by the API starts here; every other creating kind makes a "lead".
CREATED_STAGE = {"newsletter_subscribed": "subscriber"}
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
CLOCK_SKEW = timedelta(minutes=5)


def error(status: int, message: str, **extra):
    response = jsonify(error=message, status=status, **extra)
    response.status_code = status
    return response


@bp.before_request
def require_token():
    if request.endpoint == "api.openapi_json":
        return None
    token, presented = authenticate()
    if token is None:
        response = error(401, "This API token is unknown or revoked." if presented
                         else "A valid API token is required: Authorization: Bearer <token>.")
        # RFC 6750: name the scheme; say invalid_token when one was sent.
        response.headers["WWW-Authenticate"] = 'Bearer realm="leadflow"' + (
            ', error="invalid_token"' if presented else "")
        return response
    g.api_token_name = token.name
    return None


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.spec(current_app.config["BASE_URL"]))


EmailText, KeyText, InstantText, EventProperties = Text(320, 1), Text(190, 1), Text(64, 1), Properties(50)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailText
    kind: StrictStr = Field(pattern=r"^[a-z][a-z0-9_]{0,59}$")
    properties: EventProperties = {}
    key: KeyText | None = None
    occurred_at: InstantText | None = None

    @field_validator("occurred_at")
    @classmethod
    def _instant(cls, value):
        if value is None:
            return None
        moment = parse_instant(value)
        if not EARLIEST <= moment <= utcnow() + CLOCK_SKEW:
            raise ValueError("must be after 1970 and not in the future")
        return value


def _validation_errors(exc: ValidationError) -> list[dict]:
    return [{"field": ".".join(str(part) for part in item["loc"]) or "(body)",
             "message": item["msg"].removeprefix("Value error, ")} for item in exc.errors()]


def _invalid(errors: list[dict]):
    return error(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


@bp.post("/events")
def post_event():
    if not request.is_json:
        return error(415, "Send JSON with Content-Type: application/json.")
    try:
        data = read_json(MAX_BODY)
        if not isinstance(data, dict):
            return _invalid([{"field": "(body)", "message": "must be a JSON object"}])
        body = EventIn.model_validate(data)
    except BodyError as exc:
        return error(exc.status, exc.message)
    except ValidationError as exc:
        return _invalid(_validation_errors(exc))
    try:
        email = normalize_email(body.email)
    except ValueError as exc:
        return _invalid([{"field": "email", "message": str(exc)}])

    source = f"api:{g.api_token_name}"
    lead_id = session.execute(select(Lead.id).where(Lead.email == email)).scalar()
    lead = scoring.lock_lead(lead_id) if lead_id is not None else None
    created = False
    if lead is None:
        if not creates_lead(scoring.model(), body.kind, body.properties):
            session.rollback()
            return error(404, "unknown lead; this kind does not create leads")
        stage = CREATED_STAGE.get(body.kind, "lead")
        lead, created = get_or_create_lead(email, {"stage": stage})
        if created:
            session.add(StageChange(lead_id=lead.id, from_stage=None, to_stage=stage, actor=source,
                                    reason=f"{body.kind} via the API", at=utcnow()))

    # Prefixed so that a caller's key never collides with leadflow's own
    # (mail:<id>, submission:<id>); not per token, so a rotated token keeps it.
    key = f"api:{body.key}" if body.key is not None else None
    occurred_at = parse_instant(body.occurred_at) if body.occurred_at else None
    event = scoring.track(lead, body.kind, key=key, properties=body.properties,
                          occurred_at=occurred_at, source=source)
    duplicate = event is None
    if duplicate:
        event = session.execute(select(Event).where(Event.lead_id == lead.id, Event.kind == body.kind,
                                                    Event.key == key)).scalar_one()
    answer = {"event_id": event.id, "points": event.points or 0.0, "score": round(lead.score or 0.0, 2),
              "stage": lead.stage, "temperature": lead.temperature, "duplicate": duplicate,
              "lead_created": created}
    tasks.commit()
    return jsonify(answer), 200 if duplicate else 201


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


@bp.get("/leads/<email>")
def get_lead(email):
    try:
        email = normalize_email(email)
    except ValueError as exc:
        return error(422, f"not an email address: {exc}")
    lead = session.execute(select(Lead).where(Lead.email == email)).scalar_one_or_none()
    if lead is None:
        return error(404, "no lead has this email")
    owner = session.get(User, lead.owner_id) if lead.owner_id else None
    return jsonify({
        "id": lead.id, "email": lead.email, "name": lead.name, "company": lead.company,
        "job_title": lead.job_title, "country": lead.country, "segment": lead.segment,
        "stage": lead.stage, "score": round(lead.score or 0.0, 2), "temperature": lead.temperature,
        "scores": {name: round(value, 2) for name, value in (lead.scores or {}).items()},
        "owner": owner.email if owner else None,
        "mql_at": _iso(lead.mql_at), "created_at": _iso(lead.created_at),
    })
