"""Small factories for test data (in the spirit of CTFd's tests/helpers.py)."""
from datetime import datetime, timedelta, timezone

from werkzeug.security import generate_password_hash

from app.db import session
from app.leads import get_or_create_lead
from app.models import StageChange, User, Webhook, utcnow
from app.scoring import refresh_fit


def user(email="claire.sales@leadflow.example", name="Claire Dupont", role="sales", manager=False,
         password="correct horse battery", language=None):
    found = User(email=email, name=name, role=role, is_manager=manager, active=True, language=language,
                 password_hash=generate_password_hash(password))
    session.add(found)
    session.commit()
    return found


def lead(email="lea@acme.fr", stage="lead", **attributes):
    found, created = get_or_create_lead(email, {"stage": stage, **attributes})
    if created:
        session.add(StageChange(lead_id=found.id, from_stage=None, to_stage=stage, actor="test", at=utcnow()))
        refresh_fit(found, "created")
    session.commit()
    return found


def webhook(url, secret="hook-secret", events=("lead.mql",)):
    hook = Webhook(url=url, secret=secret, events=list(events), active=True)
    session.add(hook)
    session.commit()
    return hook


WORKED_EXAMPLE = [
    ("page_visited", {"url": "https://example.com/"}),
    ("article_read", {"article": "nurture-101"}),
    ("linkedin_followed", {}),
    ("newsletter_subscribed", {}),
    ("asset_downloaded", {"asset": "ebook-2026"}),
    ("webinar_registered", {"webinar": "2026-12-live-demo"}),
]


def at(minutes: float = 0) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)
