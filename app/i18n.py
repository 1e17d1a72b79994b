"""French and English throughout the interface (Flask-Babel): the user's own
setting first, then the browser's language, then English."""
from flask import request
from flask_babel import Babel, get_locale
from flask_login import current_user

from .config import PROJECT_ROOT

LANGUAGES = ("en", "fr")
babel = Babel()


def select_locale() -> str:
    language = getattr(current_user, "language", None) if current_user else None
    if language in LANGUAGES:
        return language
    if request.args.get("lang") in LANGUAGES:
        return request.args["lang"]
    return request.accept_languages.best_match(LANGUAGES) or "en"


def init_i18n(app) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(PROJECT_ROOT / "translations"))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
