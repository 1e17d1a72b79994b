"""Signed webhook deliveries, retried with backoff, every attempt logged.

Signature: header `X-Leadflow-Signature: sha256=<hex>` where hex is
HMAC-SHA256(secret, "<X-Leadflow-Timestamp>.<raw body>"). The receiver
recomputes it and refuses timestamps older than a few minutes.
"""
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from sqlalchemy import update

from .db import session
from .mailer import backoff
from .models import WebhookDelivery, Webhook, utcnow

MAX_ATTEMPTS = 10
# What a webhook may subscribe to: a new MQL (with the lead card), and every
# lifecycle move (SAL, SQL, recycled, customer, ...) for a CRM to follow.
EVENTS = ("lead.mql", "lead.stage_changed")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def queue(event: str, dedupe_key: str, payload: dict, lead_id: int | None) -> list[WebhookDelivery]:
    """A pending delivery to every active webhook subscribed to the event,
    each sent after the commit."""
    deliveries = []
    for hook in session.query(Webhook).filter_by(active=True):
        if event not in (hook.events or []):
            continue
        delivery = WebhookDelivery(webhook_id=hook.id, lead_id=lead_id, event=event,
                                   dedupe_key=dedupe_key, payload=payload, status="pending",
                                   attempts=0, log=[], next_attempt_at=utcnow(), created_at=utcnow())
        session.add(delivery)
        deliveries.append(delivery)
    if deliveries:
        from . import tasks
        session.flush()
        for delivery in deliveries:
            tasks.after_commit("leadflow.deliver_webhook", delivery.id)
    return deliveries


def deliver(delivery_id: int, now=None) -> str:
    now = now or utcnow()
    claimed = session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                                      WebhookDelivery.next_attempt_at <= now)
        .values(status="sending", attempts=WebhookDelivery.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if not claimed:
        return "skipped"
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    hook = session.get(Webhook, delivery.webhook_id)
    body = json.dumps({"event": delivery.event, "delivery_id": delivery.id, **delivery.payload},
                      default=str).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(hook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "leadflow-webhooks/1",
        "X-Leadflow-Event": delivery.event, "X-Leadflow-Delivery": str(delivery.id),
        "X-Leadflow-Timestamp": timestamp, "X-Leadflow-Signature": sign(hook.secret, timestamp, body)})
    started = time.monotonic()
    entry = {"at": utcnow().isoformat(), "attempt": delivery.attempts}
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            entry["status"] = response.status
    except urllib.error.HTTPError as exc:
        entry["status"] = exc.code
    except (urllib.error.URLError, OSError) as exc:
        entry["error"] = str(getattr(exc, "reason", exc))[:300]
    entry["ms"] = round((time.monotonic() - started) * 1000)
    delivery.log = [*(delivery.log or []), entry]
    if 200 <= entry.get("status", 0) < 300:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
    else:
        delivery.status, delivery.next_attempt_at = "pending", now + backoff(delivery.attempts)
    session.commit()
    return delivery.status
