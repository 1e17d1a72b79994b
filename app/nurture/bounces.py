"""Delivery status notifications (RFC 3464): a permanent failure suppresses
the address, whatever campaign it came from."""
import email
import email.policy
import mailbox
import re

from sqlalchemy import select

from ..db import session
from ..models import Lead, Mail, utcnow
from ..qualify.profile import normalize_email

OUR_MESSAGE_ID = re.compile(r"<lf-(\d+)@")


def failed_recipients(message) -> list[tuple[str, str]]:
    """(address, status) for every recipient the report says failed
    permanently (Action: failed, Status 5.x.x)."""
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload() or []:
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            # Original-Recipient is the address we sent to; Final-Recipient
            # may be where a forward or alias led it.
            addresses = [_address(block.get(name)) for name in ("Original-Recipient", "Final-Recipient")]
            address = next((a for a in addresses if "@" in a), "")
            if action == "failed" and status.startswith("5") and address:
                found.append((address, status))
    return found


def _address(field) -> str:
    """`rfc822; lea@acme.fr` → lea@acme.fr"""
    return str(field or "").split(";", 1)[-1].strip().strip("<>")


def original_mail_id(message) -> int | None:
    """The id of our mail the report is about, from its Message-ID."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            if part.get_content_type() == "message/rfc822":
                text = part.as_string()
            else:  # a text part: may be base64 or quoted-printable
                text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            match = OUR_MESSAGE_ID.search(text)
            if match:
                return int(match.group(1))
    return None


def ingest_message(raw: bytes) -> dict:
    """Apply one DSN; the caller commits (tasks.commit())."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    mail_id = original_mail_id(message)
    suppressed, unknown = [], []
    for address, status in failed_recipients(message):
        try:
            key = normalize_email(address)
        except ValueError:
            unknown.append(address)
            continue
        if suppress(key, status, mail_id):
            suppressed.append(key)
        else:
            unknown.append(key)
    return {"suppressed": suppressed, "unknown": unknown, "message_id": mail_id}


def suppress(email_address: str, detail: str, mail_id: int | None = None) -> bool:
    from ..scoring import lock_lead, track
    lead_id = session.execute(select(Lead.id).where(Lead.email == email_address)).scalar()
    if lead_id is None:
        return False
    lead = lock_lead(lead_id)
    if mail_id is not None:
        mail = session.get(Mail, mail_id)
        if mail is not None and mail.lead_id == lead.id:
            mail.status, mail.error = "bounced", f"DSN {detail}"
    mark_bounced(lead, detail, mail_id)
    return True


def mark_bounced(lead: Lead, detail: str, mail_id: int | None) -> None:
    """Suppress the address and score the bounce (once per mail)."""
    from ..scoring import track
    from .engine import finish
    from ..models import Enrollment
    if lead.bounced_at is None:
        lead.bounced_at = utcnow()
    track(lead, "email_bounced", key=f"bounce:{mail_id or 'dsn'}",
          properties={"message_id": mail_id, "detail": detail[:300]}, source="bounce")
    for enrollment in session.execute(select(Enrollment).where(Enrollment.lead_id == lead.id,
                                                               Enrollment.status == "active")).scalars():
        finish(enrollment, "exited", "suppressed:bounced", utcnow())


def ingest_mbox(path) -> dict:
    totals = {"messages": 0, "suppressed": 0, "unknown": 0}
    from .. import tasks
    for message in mailbox.mbox(path, factory=None):
        result = ingest_message(message.as_bytes())
        tasks.commit()
        totals["messages"] += 1
        totals["suppressed"] += len(result["suppressed"])
        totals["unknown"] += len(result["unknown"])
    return totals
