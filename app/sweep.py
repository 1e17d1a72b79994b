"""The periodic sweep: re-queue work whose task was lost (a broker that was
down, a worker that died before it claimed its row). Database first, broker
second: every row here is the truth, the queue only a hint."""
from datetime import timedelta

from sqlalchemy import select, update

from . import tasks
from .db import session
from .mailer import SENDING_TIMEOUT
from .models import Mail, WebhookDelivery, utcnow

# A row queued moments ago most likely has its task on the way.
GRACE = timedelta(seconds=20)
BATCH = 1000


def run(now=None) -> dict:
    clock = now.isoformat() if now else None  # a stand-in clock travels with the tasks
    now = now or utcnow()
    mails = session.execute(select(Mail.id).where(Mail.status == "pending", Mail.next_attempt_at <= now,
                                                  Mail.created_at <= now - GRACE)
                            .order_by(Mail.next_attempt_at).limit(BATCH)).scalars().all()
    hooks = session.execute(select(WebhookDelivery.id).where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
        WebhookDelivery.created_at <= now - GRACE).limit(BATCH)).scalars().all()
    # A mail claimed long ago and never finished: its worker died mid-send.
    # Never resend it (at most once); mark it for a person to look at.
    stuck = session.execute(update(Mail).where(Mail.status == "sending",
                                               Mail.claimed_at <= now - SENDING_TIMEOUT)
                            .values(status="unknown", error="worker died during sending")
                            .execution_options(synchronize_session=False)).rowcount
    from .sales.handoff import check_sla
    sla = check_sla(now)
    # Keep the reporting spans current between page views (a big import would
    # otherwise leave its backlog to the next person opening the overview).
    from .dashboard.reports import fold_lead_counts, refresh as refresh_reports
    spans = refresh_reports()
    # Fold the rollups' deltas (migrations 0008, 0010) so their reads stay small.
    from .nurture.stats import fold
    folded = fold() + fold_lead_counts()
    from .leads_ui.importer import stalled_imports
    imports = stalled_imports(now)
    tasks.commit()
    for import_id in imports:
        tasks.send("leadflow.import_leads", import_id, clock)
    for mail_id in mails:
        tasks.send("leadflow.send_mail", mail_id, clock)
    for delivery_id in hooks:
        tasks.send("leadflow.deliver_webhook", delivery_id, clock)
    return {"mails": len(mails), "webhooks": len(hooks), "stuck": stuck, "sla": sla, "report_leads": spans,
            "imports": len(imports), "figure_deltas": folded}
