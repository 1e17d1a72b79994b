"""Addresses leadflow must not mail: suppression wins over any campaign."""
from .db import session
from .models import Lead


def on_hard_bounce(mail, detail: str) -> None:
    """A 5xx at send time: the address is dead. Nurture mail to a lead records
    an email_bounced event (negative points)."""
    if mail.lead_id is None or mail.kind != "nurture":
        return
    from .scoring import lock_lead, track
    lead = lock_lead(mail.lead_id)
    if lead is not None:
        track(lead, "email_bounced", key=f"mail:{mail.id}", properties={"message_id": mail.id,
                                                                        "detail": detail[:300]},
              source="smtp")
    session.flush()


def is_suppressed(lead: Lead) -> bool:
    return lead.stage == "disqualified"
