"""Blueprint `dashboard`: the marketer's pages."""
from flask import Blueprint, current_app, render_template, request
from sqlalchemy import func, select

from ..db import session
from ..models import Submission

bp = Blueprint("dashboard", __name__)


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
