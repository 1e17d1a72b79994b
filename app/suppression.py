"""Addresses leadflow must not mail: suppression wins over any campaign."""
from .db import session


def on_hard_bounce(mail, detail: str) -> None:
    """A 5xx at send time: the address is dead. Nurture mail to a lead records
    an email_bounced event (negative points)."""
    if mail.lead_id is None or mail.kind != "nurture":
        return
    from .nurture.bounces import mark_bounced
    from .scoring import lock_lead
    lead = lock_lead(mail.lead_id)
    if lead is not None:
        mark_bounced(lead, detail, mail.id)
    session.flush()


