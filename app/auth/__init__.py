"""Users, roles and login (Flask-Login).

Roles: admin (everything), marketer (marketing pages), sales (their inbox
and their leads). A user is let in by `role_required(*roles)`; admin always
passes.
"""
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import LoginManager, current_user

from ..db import session
from ..models import User

ROLES = ("admin", "marketer", "sales")

login_manager = LoginManager()

# The top bar: (label, endpoint, roles besides admin). Links to pages that
# are not registered are left out, so a module can list its page here first.
# (label, endpoint, roles): labels are translated when the bar is drawn.
NAV = ((lazy_gettext("Overview"), "reports.overview", ("marketer",)),
       (lazy_gettext("Leads"), "leads.index", ("marketer", "sales")),
       (lazy_gettext("Review"), "review.queue", ("marketer",)),
       (lazy_gettext("Forms"), "dashboard.forms", ("marketer",)),
       (lazy_gettext("Campaigns"), "campaigns.index", ("marketer",)),
       (lazy_gettext("Outbox"), "nurture.outbox", ("marketer",)),
       (lazy_gettext("Inbox"), "sales.inbox", ("sales",)),
       (lazy_gettext("Admin"), "admin.index", ("admin",)))


def init_auth(app) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)

    def nav_links():
        return [(label, url_for(endpoint)) for label, endpoint, roles in NAV
                if endpoint in app.view_functions and has_role(current_user, *roles)]
    # A function, so that templates rendered outside a request (emails) never run it.
    app.context_processor(lambda: {"nav_links": nav_links})


def _load_user(user_id: str) -> User | None:
    try:
        user = session.get(User, int(user_id))
    except ValueError:
        return None
    # A deactivated user is logged out on their next request.
    return user if user is not None and user.active else None


def wants_json() -> bool:
    return (request.is_json or request.path.startswith("/api/")
            or request.accept_mimetypes.best == "application/json")


def _unauthorized():
    if wants_json():
        return jsonify(error="Log in first.", status=401), 401
    if request.path != "/":  # the front door needs no explanation
        flash(gettext("Please log in to see that page."), "info")
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))


def has_role(user, *roles: str) -> bool:
    return user.is_authenticated and (user.role == "admin" or user.role in roles)


def check_role(*roles: str):
    """None when the current user may go on; otherwise the login redirect
    (or a JSON 401). A logged-in user with the wrong role gets a 403."""
    if not current_user.is_authenticated:
        return _unauthorized()
    if not has_role(current_user, *roles):
        abort(403, description="Your role does not give access to this page.")
    return None


def role_required(*roles: str):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            refused = check_role(*roles)
            return refused if refused is not None else view(*args, **kwargs)
        return wrapped
    return decorator


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host (open redirect), nor
    //host or /\\host, which browsers read as another host."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
