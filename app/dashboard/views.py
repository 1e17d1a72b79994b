"""Blueprint `dashboard`: the marketer's pages."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..auth import check_role
from ..db import session
from ..models import Submission

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
    return forms()


@bp.get("/forms")
def forms():
    registry = current_app.extensions["leadflow.forms"]
    counts = dict(session.execute(
        select(Submission.form_slug, func.count()).group_by(Submission.form_slug)).all())
    base = current_app.config["BASE_URL"] if current_app.config.get("BASE_URL_FIXED") else request.host_url
    return render_template("pages/forms.html", forms=registry.all(), errors=registry.errors,
                           rules_error=current_app.extensions["leadflow.rules"].error,
                           counts=counts,
                           codes={f.slug: embed_codes(f.slug, base, f.definition.title)
                                  for f in registry.all()})
