"""Blueprint `capture`: hosted page, iframe page, embed script, two submit paths."""
import json
import time

from flask import (Blueprint, Response, abort, current_app, jsonify, redirect, render_template,
                   request)
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from ..extensions import csrf, limiter
from ..signing import read_render_token, render_token
from . import service
from .forms import UTM_FIELDS, Form
from .webform import (HONEYPOT, RENDER_TOKEN, build, field_errors, input_attrs, json_formdata,
                      messages)

bp = Blueprint("capture", __name__)
csrf.exempt(bp)  # CSRF is checked by the form itself, after the submission is kept


def registry():
    return current_app.extensions["leadflow.forms"]


def rules():
    return current_app.extensions["leadflow.rules"].get()


def _form_or_404(slug) -> Form:
    form = registry().get(slug)
    if form is None:
        abort(404, description="No form by that name.")
    return form


def _submit_limit():
    return current_app.config["SUBMIT_RATE_LIMIT"]


def _frame_ancestors(form: Form, framed: bool) -> str:
    if not framed:
        return "frame-ancestors 'self'"
    return "frame-ancestors 'self' " + " ".join(form.definition.allowed_origins)


def _render(form: Form, wtform, framed: bool, status=200, notice=None):
    html = render_template("pages/form.html", form=form, wtform=wtform, framed=framed,
                           text=messages(form.definition.language), notice=notice,
                           honeypot=HONEYPOT, utm_fields=UTM_FIELDS, input_attrs=input_attrs)
    response = Response(html, status=status)
    response.headers["Content-Security-Policy"] = _frame_ancestors(form, framed)
    response.headers["Cache-Control"] = "no-store"
    return response


def _count_view(slug: str) -> None:
    """One more view of this form today (for the forms page's rates): one
    upsert, never a reason for the form not to show."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..db import session
    from ..db import insert
    from ..models import FormView, utcnow
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    try:
        session.execute(insert(FormView).values(form_slug=slug, day=day, views=1).on_conflict_do_update(
            index_elements=["form_slug", "day"], set_={"views": FormView.views + 1}))
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        current_app.logger.warning("could not count a view of form %s", slug, exc_info=True)


@bp.get("/f/<slug>")
def hosted(slug):
    form = _form_or_404(slug)
    _count_view(slug)
    wtform = build(form)
    wtform[RENDER_TOKEN].data = render_token(slug)
    for name in UTM_FIELDS:  # a link with ?utm_source=... fills the hidden fields
        if name in wtform and request.args.get(name):
            wtform[name].data = request.args.get(name)[:200]
    return _render(form, wtform, framed=request.args.get("frame") == "1")


def _meta(fields: dict, token: str | None, slug: str) -> service.RequestMeta:
    rendered = read_render_token(token, slug, current_app.config["RENDER_TOKEN_MAX_AGE"])
    fill_ms = int(time.time() * 1000) - rendered if rendered is not None else None
    return service.RequestMeta(
        ip=request.remote_addr, user_agent=request.headers.get("User-Agent"),
        # The script sends the visitor's document.referrer (where they came
        # from); the Referer header would only name the company's own page.
        referrer=(fields.get("referrer") if isinstance(fields.get("referrer"), str) else None)
        or request.headers.get("Referer"),
        fill_ms=fill_ms, honeypot=fields.get(HONEYPOT) if isinstance(fields.get(HONEYPOT), str) else None,
        utm={name: fields.get(name) for name in UTM_FIELDS if isinstance(fields.get(name), str)})


@bp.post("/f/<slug>")
@limiter.limit(_submit_limit)
def post_html(slug):
    form = _form_or_404(slug)
    framed = request.args.get("frame") == "1"
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        error = "Send the form as application/x-www-form-urlencoded."
        _unreadable(form, slug, _raw_text(), error, status=415, channel="iframe" if framed else "hosted")
        abort(415, description=error)
    # NULs dropped here, before anything stores or judges them (see service.storable).
    formdata = MultiDict([(service.storable(key), service.storable(value))
                          for key, value in request.form.items(multi=True)])
    fields = {key: formdata.get(key) for key in formdata.keys()}
    submission = service.store_submission(slug, "iframe" if framed else "hosted", fields,
                                          _meta(fields, fields.get(RENDER_TOKEN), slug),
                                          current_app.config["SECRET_KEY"])
    # In an iframe on another site the session cookie may never be stored
    # (third-party cookies), so the framed form proves itself differently:
    # a valid render token, posted from our own origin (a forged cross-site
    # post carries the attacker's Origin).
    meta = _meta(fields, fields.get(RENDER_TOKEN), slug)
    wtform = build(form, formdata, csrf=not framed)
    text = messages(form.definition.language)
    valid = wtform.validate()
    if framed and (meta.fill_ms is None or not _posted_from_here()):
        wtform.errors.setdefault("csrf_token", []).append("invalid form token")
        valid = False
    if not valid:
        errors = field_errors(wtform)
        service.mark_invalid(submission, errors)
        wtform[RENDER_TOKEN].data = fields.get(RENDER_TOKEN) or render_token(slug)
        expired = set(errors) == {"csrf_token"}
        return _render(form, wtform, framed, status=400 if expired else 422,
                       notice=text["csrf"] if expired else text["fix"])
    service.decide(submission, form, fields, meta, rules())
    thank_you = form.definition.thank_you
    if thank_you.redirect and not framed:
        return redirect(thank_you.redirect, code=303)
    response = _render(form, None, framed)
    return response


# --- the script embed, on another origin ---------------------------------

def _cors(response, form: Form):
    origin = request.headers.get("Origin")
    if origin and origin in form.definition.allowed_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


def _json(form, code, **body):
    return _cors(jsonify(body), form), code


@bp.get("/f/<slug>/embed.js")
def embed_script(slug):
    form = _form_or_404(slug)
    _count_view(slug)
    config = {"slug": slug, "definition": form.as_json(), "token": render_token(slug),
              "submitUrl": current_app.config["BASE_URL"].rstrip("/") + f"/f/{slug}/submit",
              "text": messages(form.definition.language), "honeypot": HONEYPOT}
    # </script> or U+2028 inside a label must not end or break the script.
    payload = json.dumps(config).replace("<", "\\u003c").replace("\u2028", "\\u2028")
    script = render_template("embed/embed.js", config=payload)
    return Response(script, mimetype="text/javascript",
                    headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"})


@bp.route("/f/<slug>/submit", methods=["OPTIONS"])
def submit_preflight(slug):
    form = _form_or_404(slug)
    return _cors(Response(status=204), form)


@bp.post("/f/<slug>/submit")
@limiter.limit(_submit_limit)
def submit_json(slug):
    form = _form_or_404(slug)
    origin = request.headers.get("Origin")
    if origin and origin not in form.definition.allowed_origins and origin != _own_origin():
        return _json(form, 403, error="This form may not be posted from this site.")
    if not request.is_json:
        return _unreadable(form, slug, _raw_text(), "Send JSON with Content-Type: application/json.",
                           status=415)
    try:
        # Lone surrogates, NULs and NaN made storable (and judged) as in service.storable.
        body = service.storable(request.get_json())
    except (BadRequest, RecursionError, service.TooDeep) as exc:
        raw = service.storable(request.get_data(as_text=True))
        return _unreadable(form, slug, raw, "The body is not valid JSON." if isinstance(exc, BadRequest)
                           else f"The body is nested too deeply (at most {service.MAX_DEPTH} levels).")
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return _unreadable(form, slug, body, 'Expected a JSON object {"fields": {...}, "token": "..."}.')
    token = body.get("token") if isinstance(body.get("token"), str) else None
    meta = _meta(fields, token, slug)
    submission = service.store_submission(slug, "script", fields, meta,
                                          current_app.config["SECRET_KEY"])
    formdata, type_errors = json_formdata(fields)
    wtform = build(form, formdata, csrf=False)
    valid = wtform.validate()
    errors = {**field_errors(wtform), **type_errors}
    if not token or meta.fill_ms is None:
        errors["token"] = [messages(form.definition.language)["csrf"]]
    if errors or not valid:
        service.mark_invalid(submission, errors)
        status = 400 if set(errors) == {"token"} else 422
        return _json(form, status, errors=errors, message=messages(form.definition.language)["fix"])
    service.decide(submission, form, fields, meta, rules())
    thank_you = form.definition.thank_you
    return _json(form, 201, result="received", message=thank_you.message,
                 redirect=thank_you.redirect)


def _unreadable(form, slug, raw, error, status=400, channel="script"):
    """Kept as received, and marked invalid: the sender was told, nothing is left to judge."""
    submission = service.store_submission(
        slug, channel, {"_raw": raw, "_content_type": service.storable(request.content_type or "")},
        _meta({}, None, slug), current_app.config["SECRET_KEY"])
    service.mark_invalid(submission, {"_body": [error]})
    return _json(form, status, error=error)


def _raw_text() -> str:
    """The body as text, whatever it claims to be (NULs and bad bytes made storable)."""
    return service.storable(request.get_data().decode("utf-8", errors="replace"))


def _own_origin():
    return request.host_url.rstrip("/")


def _posted_from_here() -> bool:
    origin = request.headers.get("Origin")
    if origin:
        return origin == _own_origin()
    referer = request.headers.get("Referer") or ""
    return referer.startswith(_own_origin() + "/")
