"""Settings from environment variables, with embedded defaults.

Embedded default: SQLite under instance/, tasks run in-process, mail to the
outbox table. Production sets DATABASE_URL, CELERY_BROKER_URL, REDIS_URL.
"""
import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _instance_dir() -> Path:
    path = Path(os.environ.get("LEADFLOW_INSTANCE", PROJECT_ROOT / "instance"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _persistent_secret(instance: Path) -> str:
    """A secret generated once and kept in instance/, so sessions and
    signed tokens survive restarts without anyone choosing a key."""
    key_file = instance / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load_settings(overrides: dict | None = None) -> dict:
    instance = _instance_dir()
    settings = {
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{instance / 'leadflow.db'}"),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _persistent_secret(instance),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", ""),
        "CELERY_QUEUE": os.environ.get("CELERY_QUEUE", "celery"),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "SMTP_URL": os.environ.get("SMTP_URL", ""),
        "BASE_URL": os.environ.get("BASE_URL", "http://localhost:5000"),
        "FORMS_DIR": os.environ.get("LEADFLOW_FORMS_DIR", str(PROJECT_ROOT / "forms")),
        "CAMPAIGNS_DIR": os.environ.get("LEADFLOW_CAMPAIGNS_DIR", str(PROJECT_ROOT / "campaigns")),
        # A post larger than this is refused with 413 before it is read: room for
        # a megabyte in each field of a form, JSON-escaped.
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 8 * 1024 * 1024),
        # Flask refuses a multipart field over 500 kB by default: a megabyte
        # typed in a field of the hosted form would be lost with a 413.
        "MAX_FORM_MEMORY_SIZE": _int("MAX_FORM_MEMORY_SIZE", 8 * 1024 * 1024),
        # Per IP, on the two submit endpoints (Flask-Limiter syntax).
        "SUBMIT_RATE_LIMIT": os.environ.get("SUBMIT_RATE_LIMIT", "30/minute;300/hour"),
        # Fill time below which a submission is spam:too_fast (forms may override).
        "MIN_FILL_MS": _int("MIN_FILL_MS", 2000),
        # How long a signed render token of the embed script stays valid.
        "RENDER_TOKEN_MAX_AGE": _int("RENDER_TOKEN_MAX_AGE", 7 * 24 * 3600),
        # Without a broker, run the periodic tasks in a thread of the web process.
        "EMBEDDED_SCHEDULER": os.environ.get("LEADFLOW_EMBEDDED_SCHEDULER", "") == "1",
        # Tracking: how long open/click tokens count; a hit this soon after
        # delivery is a link scanner's; the beacon's rate; the hosts whose
        # links get the visitor token (empty: every destination).
        "TRACK_TOKEN_MAX_AGE": _int("TRACK_TOKEN_MAX_AGE", 365 * 24 * 3600),
        "TRACK_MACHINE_SECONDS": float(os.environ.get("TRACK_MACHINE_SECONDS", 5)),
        "BEACON_RATE_LIMIT": os.environ.get("BEACON_RATE_LIMIT", "120/minute"),
        "TRACK_VISITOR_HOSTS": tuple(h for h in os.environ.get("TRACK_VISITOR_HOSTS", "").split(",") if h),
        # How far back the rules preview re-judges submissions.
        "RULES_PREVIEW_DAYS": _int("RULES_PREVIEW_DAYS", 30),
        # Nurture: the timezone of a lead whose country we don't know, and the
        # frequency cap across all campaigns (emails per lead per days).
        "NURTURE_DEFAULT_TIMEZONE": os.environ.get("NURTURE_DEFAULT_TIMEZONE", "Europe/Paris"),
        "NURTURE_CAP_EMAILS": _int("NURTURE_CAP_EMAILS", 3),
        "NURTURE_CAP_DAYS": float(os.environ.get("NURTURE_CAP_DAYS", 7)),
        "NURTURE_PAUSED_RECHECK_MINUTES": _int("NURTURE_PAUSED_RECHECK_MINUTES", 15),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,
    }
    if overrides:
        settings.update(overrides)
    return settings
