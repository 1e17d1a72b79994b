"""Blueprint `admin` (admins only): users, API tokens and webhooks.

A token or a webhook secret is shown once, in the answer to the POST that
created it (never in a flash message, which would travel in the session
cookie); only the token's hash is kept."""
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from .. import webhooks
from ..api.auth import create_token
from ..auth import ROLES, check_role
from ..auth.views import create_user
from ..db import session
from ..i18n import LANGUAGES
from ..models import ApiToken, User, Webhook, WebhookDelivery

bp = Blueprint("admin", __name__)

RECENT_DELIVERIES = 25


@bp.before_request
def _admins_only():
    return check_role("admin")


def _page(status: int = 200, **shown_once):
    users = session.execute(select(User).order_by(User.active.desc(), User.email)).scalars().all()
    tokens = session.execute(select(ApiToken).order_by(ApiToken.revoked, ApiToken.id.desc())).scalars().all()
    hooks = session.execute(select(Webhook).order_by(Webhook.id)).scalars().all()
    deliveries = session.execute(select(WebhookDelivery, Webhook.url).join(Webhook)
                                 .order_by(WebhookDelivery.id.desc()).limit(RECENT_DELIVERIES)).all()
    response = render_template("pages/admin.html", users=users, tokens=tokens, hooks=hooks,
                               deliveries=deliveries, roles=ROLES, languages=LANGUAGES,
                               form=request.form if request.method == "POST" else {}, **shown_once)
    # A page holding a secret is not kept by the browser or a proxy.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/admin")
def index():
    return _page()


def _back():
    return redirect(url_for("admin.index"))


# --- users ------------------------------------------------------------------

@bp.post("/admin/users")
def create_user_view():
    form = request.form
    role = form.get("role", "")
    language = form.get("language") or None
    if language is not None and language not in LANGUAGES:
        abort(400, description=_("Unknown language."))
    try:
        user = create_user(form.get("email", ""), form.get("name", "") or form.get("email", ""), role,
                           form.get("password", ""), manager=role == "sales" and form.get("manager") == "1")
    except ValueError as exc:
        flash(_("The user was not created: %(problem)s.", problem=str(exc)), "error")
        return _page(422)
    if language:
        user.language = language
        session.commit()
    flash(_("%(email)s can now log in as %(role)s.", email=user.email, role=user.role), "success")
    return _back()


def _user_or_404(user_id: int) -> User:
    return session.get(User, user_id) or abort(404)


@bp.post("/admin/users/<int:user_id>/active")
def set_active(user_id):
    user = _user_or_404(user_id)
    active = request.form.get("active") == "1"
    if user.id == current_user.id and not active:
        # The one rule that keeps at least one admin: the last active admin is
        # always the one acting, and may not lock everyone out.
        flash(_("You cannot deactivate yourself."), "error")
        return _back()
    user.active = active
    session.commit()
    flash(_("%(email)s reactivated.", email=user.email) if active
          else _("%(email)s deactivated: logged out on their next request.", email=user.email), "success")
    return _back()


@bp.post("/admin/users/<int:user_id>/language")
def set_language(user_id):
    user = _user_or_404(user_id)
    language = request.form.get("language") or None
    if language is not None and language not in LANGUAGES:
        abort(400, description=_("Unknown language."))
    user.language = language
    session.commit()
    flash(_("Language of %(email)s saved.", email=user.email), "success")
    return _back()


# --- API tokens ----------------------------------------------------------------

@bp.post("/admin/tokens")
def create_token_view():
    name = (request.form.get("name") or "").strip()
    if not name or len(name) > 120:
        flash(_("Give the token a name (up to 120 characters), such as the integration using it."), "error")
        return _page(422)
    token, plain = create_token(name)
    session.commit()
    return _page(201, new_token={"name": token.name, "value": plain})


@bp.post("/admin/tokens/<int:token_id>/revoke")
def revoke_token(token_id):
    token = session.get(ApiToken, token_id) or abort(404)
    token.revoked = True
    session.commit()
    flash(_("Token %(name)s revoked: it no longer opens the API.", name=token.name), "success")
    return _back()


# --- webhooks ------------------------------------------------------------------

def valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2000 \
        and not any(c.isspace() for c in url)


@bp.post("/admin/webhooks")
def create_webhook():
    url = (request.form.get("url") or "").strip()
    if not valid_url(url):
        flash(_("Enter the full address of the receiver, starting with https://."), "error")
        return _page(422)
    events = [event for event in webhooks.EVENTS if event in request.form.getlist("events")]
    if not events:
        flash(_("Choose at least one event to send."), "error")
        return _page(422)
    hook = Webhook(url=url, secret=secrets.token_urlsafe(32), events=events, active=True)
    session.add(hook)
    session.commit()
    return _page(201, new_webhook={"url": hook.url, "value": hook.secret})


@bp.post("/admin/webhooks/<int:hook_id>/active")
def set_webhook_active(hook_id):
    hook = session.get(Webhook, hook_id) or abort(404)
    hook.active = request.form.get("active") == "1"
    session.commit()
    flash(_("Webhook %(url)s activated.", url=hook.url) if hook.active
          else _("Webhook %(url)s deactivated: nothing more is sent to it.", url=hook.url), "success")
    return _back()
