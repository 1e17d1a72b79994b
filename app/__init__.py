"""leadflow: lead capture, qualification, scoring and nurture."""
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import db
from .config import PROJECT_ROOT, load_settings
from .definitions import ReloadingFile
from .extensions import csrf, limiter


def create_app(overrides: dict | None = None) -> Flask:
    settings = load_settings(overrides)
    app = Flask(__name__, template_folder=str(PROJECT_ROOT / "templates"),
                static_folder=str(PROJECT_ROOT / "static"), instance_path=settings["INSTANCE_PATH"])
    app.config.update(settings)
    if app.config.get("TRUSTED_PROXIES"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]),
                                x_proto=1, x_host=1)

    db.bind(app.config["DATABASE_URL"])
    app.teardown_appcontext(lambda _exc: db.session.remove())

    app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or "memory://"
    # A Redis that hangs must not hold a submission for redis-py's default 5 s
    # per call: give up quickly and let the limiter fall back to memory.
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 0.25, "socket_connect_timeout": 0.25})
    app.config.setdefault("RATELIMIT_ENABLED", app.config.get("RATELIMIT_ENABLED", True))
    limiter.init_app(app)
    csrf.init_app(app)

    from . import tasks
    tasks.configure(app)
    from .i18n import init_i18n
    init_i18n(app)
    _init_definitions(app)
    _register_blueprints(app)
    _register_errors(app)

    from .cli import register
    register(app)
    if app.config.get("EMBEDDED_SCHEDULER") and not app.config["CELERY_BROKER_URL"]:
        tasks.start_embedded_scheduler(app)
    return app


def _init_definitions(app: Flask) -> None:
    from .capture.forms import FormRegistry
    from .qualify.rules import default_rules, load_rules
    app.extensions["leadflow.forms"] = FormRegistry(app.config["FORMS_DIR"])
    app.extensions["leadflow.rules"] = ReloadingFile(
        Path(app.config["FORMS_DIR"]) / "rules.yaml", load_rules, default_rules())
    from .nurture.engine import CampaignRegistry
    app.extensions["leadflow.campaigns"] = CampaignRegistry(app.config["CAMPAIGNS_DIR"])


def _register_blueprints(app: Flask) -> None:
    from .api.views import bp as api_bp
    from .auth import init_auth
    from .auth.views import bp as auth_bp
    from .capture.views import bp as capture_bp
    from .dashboard.views import bp as dashboard_bp
    from .nurture.prefs import bp as prefs_bp
    from .nurture.views import bp as nurture_bp
    from .sales.views import bp as sales_bp
    from .track.views import bp as track_bp
    init_auth(app)
    for blueprint in (capture_bp, track_bp, api_bp, auth_bp, sales_bp, dashboard_bp, prefs_bp, nurture_bp):
        app.register_blueprint(blueprint)
    from .workspace import admin, campaigns, review
    for blueprint in (review.bp, campaigns.bp, admin.bp):
        app.register_blueprint(blueprint)
    from .leads_ui import bp as leads_bp  # /leads, and `leadflow leads import`
    app.register_blueprint(leads_bp)
    from .dashboard.overview import bp as reports_bp  # /overview, `leadflow reports ...`
    app.register_blueprint(reports_bp)


def _wants_json() -> bool:
    return (request.path.endswith("/submit") or request.path.startswith("/api/")
            or request.accept_mimetypes.best == "application/json")


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if _wants_json():
            response = jsonify(error=exc.description, status=exc.code)
            response.status_code = exc.code
            if exc.code == 429:
                response.headers["Retry-After"] = "60"
            return response
        return render_template("pages/error.html", error=exc), exc.code
