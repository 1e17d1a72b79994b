"""End to end with real services: PostgreSQL, Redis, a Celery worker
process, an SMTP server and a webhook receiver."""
import io
import time

import pytest
import redis
from sqlalchemy import select

from app import tasks
from app.db import session
from app.models import Lead, Mail, StageChange, WebhookDelivery
from app.sales import handoff
from app.scoring import lock_lead, track
from app.webhooks import verify
from tests import factories
from tests.capture_data import person, post_json
from tests.helpers import REDIS_URL
from tests.services import CeleryWorker, HookReceiver, SmtpSink, redis_db_for_worker
from tests.test_auth import login, token

pytestmark = pytest.mark.services


@pytest.fixture
def stack(app_factory, pg_url, forms_dir):
    broker = REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db_for_worker()}"
    redis.Redis.from_url(broker).flushdb()
    sink, hooks = SmtpSink().start(), HookReceiver().start()
    settings = {"CELERY_BROKER_URL": broker, "SMTP_URL": sink.url, "BASE_URL": "http://127.0.0.1:5999"}
    app = app_factory(pg_url, **settings)
    worker = CeleryWorker({"DATABASE_URL": pg_url, "SECRET_KEY": "test-secret",
                           "LEADFLOW_FORMS_DIR": str(forms_dir), **settings}).start()
    try:
        yield app, sink, hooks, worker
    finally:
        worker.stop()
        print("".join(worker.output[-60:]))  # shown when the test fails
        sink.stop()
        hooks.stop()
        tasks.configure_broker("")


def test_a_lead_crosses_the_threshold_and_sales_hears_of_it(stack):
    app, sink, hooks, worker = stack
    client = app.test_client()
    with app.app_context():
        claire = factories.user()  # owns France in campaigns/sales.yaml
        factories.user("boss@leadflow.example", "Boss", manager=True)
        factories.webhook(hooks.url)
    # A prospect fills the French form (job title and company size add fit points).
    response = post_json(client, "contact", person(email="lea.martin@acme.fr", name="Léa Martin"))
    assert response.status_code == 201
    with app.app_context():
        lead = session.execute(select(Lead)).scalar_one()
        lead.country = "FR"
        session.commit()
        started = None
        for kind, properties in factories.WORKED_EXAMPLE[:4]:
            before = lock_lead(lead.id).score
            track(lock_lead(lead.id), kind, properties=properties)
            started = time.monotonic()
            tasks.commit()
        lead = session.get(Lead, lead.id, populate_existing=True)
        assert lead.stage == "mql", (lead.score, before)
    mail = sink.wait_for(lambda m: claire.email in m.recipients)[0]
    latency = time.monotonic() - started
    assert "Léa Martin" in mail.message["Subject"] and "New MQL" in mail.message["Subject"]
    body = mail.message.get_body(("plain",)).get_content()
    assert "Suggested channel" in body and "lea.martin@acme.fr" in body
    html = mail.message.get_body(("html",)).get_content()
    assert 'style="' in html and "<style" not in html  # CSS inlined
    hook = hooks.wait_for(1)[0]
    assert verify("hook-secret", hook.headers["X-Leadflow-Timestamp"], hook.body,
                  hook.headers["X-Leadflow-Signature"])
    assert hook.json()["lead"]["owner"] == claire.email
    assert latency < 15, f"email took {latency:.1f} s to reach the SMTP server"

    with app.app_context():
        # Sales work the lead: reject (back to nurture), it heats up again, accept, qualify.
        lead = lock_lead(lead.id)
        handoff.reject(lead, claire, "Wrong timing: budget frozen until Q3")
        tasks.commit()
        lead = lock_lead(lead.id)
        assert lead.stage == "recycled"
        # Still over the threshold: more activity does not bounce it straight back...
        track(lead, "article_read", properties={"article": "pricing-explained"})
        tasks.commit()
        assert lock_lead(lead.id).stage == "recycled"
        # ...a fresh crossing does.
        track(lock_lead(lead.id), "unsubscribed", properties={})
        tasks.commit()
        assert lock_lead(lead.id).score < 50
        track(lock_lead(lead.id), "demo_requested", properties={})
        tasks.commit()
        lead = lock_lead(lead.id)
        assert lead.stage == "mql"
        handoff.accept(lead, claire)
        tasks.commit()
        lead = lock_lead(lead.id)
        passed, met = handoff.qualify(lead, claire, {"budget": True, "authority": False, "need": True,
                                                     "timeline_months": 3})
        tasks.commit()
        assert passed and met == ["budget", "need", "timeline"]
        history = session.execute(select(StageChange.from_stage, StageChange.to_stage, StageChange.actor)
                                  .where(StageChange.lead_id == lead.id).order_by(StageChange.id)).all()
        assert [(f, t) for f, t, _ in history] == [
            (None, "lead"), ("lead", "mql"), ("mql", "recycled"), ("recycled", "mql"), ("mql", "sal"),
            ("sal", "sql")]
        assert history[2].actor == f"user:{claire.id}"
    sink.wait_for(lambda m: claire.email in m.recipients and m is not mail)
    hooks.wait_for(2)
    # the worker marks a row sent a moment after the server has the message
    assert eventually(app, lambda: set(session.execute(select(Mail.status)).scalars()) == {"sent"})
    assert eventually(app, lambda: set(session.execute(select(WebhookDelivery.status)).scalars()) == {"delivered"})


def eventually(app, check, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            if check():
                return True
            session.rollback()
        time.sleep(0.05)
    return False


def test_queued_work_survives_a_dead_broker(app_factory, pg_url, forms_dir):
    """Database first, broker second: with the broker unreachable the MQL is
    still recorded and its mail waits as a pending row for the sweep."""
    app = app_factory(pg_url, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        with app.app_context():
            factories.user()
            lead = factories.lead("x@acme.fr", country="FR")
            for kind, properties in factories.WORKED_EXAMPLE:
                track(lock_lead(lead.id), kind, properties=properties)
                started = time.monotonic()
                tasks.commit()
                assert time.monotonic() - started < 10
            assert session.get(Lead, lead.id, populate_existing=True).stage == "mql"
            assert session.execute(select(Mail.status)).scalar_one() == "pending"
            # That failure paused publishing: the next tasks cost nothing to wait for.
            started = time.monotonic()
            for _ in range(20):
                tasks.send("leadflow.sweep")
            assert time.monotonic() - started < 0.5
            # After the pause, the broker is tried again (and found still dead).
            tasks._broker_paused_until = time.monotonic() - 1
            started = time.monotonic()
            tasks.send("leadflow.sweep")
            assert time.monotonic() - started > 0.5 and tasks._broker_paused_until > time.monotonic()
    finally:
        tasks.configure_broker("")


def test_a_page_import_runs_in_the_worker(stack):
    """The import page keeps the file and answers at once; a Celery worker
    imports it (PostgreSQL, Redis) while the status page follows it."""
    app, _sink, _hooks, worker = stack
    client = app.test_client()
    with app.app_context():
        factories.user("mia@leadflow.example", "Mia", role="marketer")
    assert login(client, "mia@leadflow.example").status_code == 302
    rows = "email,name\n" + "".join(f"w{i}@worker{i}.fr,W {i}\n" for i in range(450))
    response = client.post("/leads/import", content_type="multipart/form-data", data={
        "csrf_token": token(client, "/leads/import"), "file": (io.BytesIO(rows.encode()), "big.csv")})
    assert response.status_code == 303
    status_url = response.location
    deadline = time.monotonic() + 60
    while (status := client.get(status_url + "/status.json").get_json())["status"] != "done":
        assert status["status"] in ("queued", "running") and time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status == {"status": "done", "done": 450, "total": 450}
    html = client.get(status_url).get_data(as_text=True)
    assert "450 rows: 450 created, 0 merged, 0 rejected, 0 for review." in html
    assert "Task leadflow.import_leads" in "".join(worker.output)
    with app.app_context():
        assert session.execute(select(Lead).where(Lead.email == "w449@worker449.fr")).scalar_one()
