"""The nurture engine end to end, with real services: PostgreSQL, Redis, a
Celery worker process (and its beat), an SMTP server (aiosmtpd) that
receives what leadflow sends, and the app served on a real socket so that
the tracking and unsubscribe URLs found in the received emails are fetched
as they are.

Time is driven by a controllable clock, not by sleeping: the test sends the
`leadflow.nurture_tick` task with an ISO `now` (what beat sends without
one) and waits for the worker to report that very task done.
`test_beat_runs_the_nurture_tick_on_its_schedule` shows that beat's own
schedule drives the same task with the real clock.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time as clock
from datetime import datetime, time, timedelta, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import redis
import requests
import yaml
from sqlalchemy import select

from app import tasks
from app.config import PROJECT_ROOT
from app.db import session
from app.models import Enrollment, Lead, Mail
from app.scoring import lock_lead, track
from tests import factories
from tests.capture_data import english_person, person, post_json
from tests.helpers import REDIS_URL, free_port, live_server
from tests.services import CeleryWorker, SmtpSink, redis_db_for_worker

pytestmark = pytest.mark.services

CHROME = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/131.0.0.0 Safari/537.36"}
LEA, JORDAN, SALES = "lea.martin@acme.fr", "jordan@acme-widgets.com", "claire.sales@leadflow.example"


def monday_10_paris(weeks_ahead: int = 2) -> datetime:
    """A Monday 10:00 in Paris (inside the send window), weeks after the real
    clock: enrollments made now are due by then."""
    paris = ZoneInfo("Europe/Paris")
    today = datetime.now(paris).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 + 7 * weeks_ahead)
    return datetime.combine(monday, time(10, 0), tzinfo=paris).astimezone(timezone.utc)


MONDAY = monday_10_paris()


# --- services ---------------------------------------------------------------------

class RedisServer:
    """A private redis-server (the shared one must never be stopped), started
    and SIGKILLed by its own pid, restartable on the same port."""

    def __init__(self, directory):
        self.port, self.directory, self.process = free_port(), str(directory), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        deadline = clock.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or clock.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("the private redis-server did not start")
                clock.sleep(0.05)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)


class Stack:
    """The web app (served on BASE_URL), the SMTP sink and a worker process."""

    def __init__(self, app, sink, worker, base_url):
        self.app, self.sink, self.worker, self.base_url = app, sink, worker, base_url
        self.client = app.test_client()

    # The worker logs "Task <name>[<id>] succeeded in <s>s: <result>" once a
    # task is done: that is how the test knows a tick ran, without sleeping.
    def run(self, name: str, *args, timeout: float = 120.0) -> str:
        task_id = tasks.celery.send_task(name, args=list(args)).id
        return self.wait_task(task_id, timeout)

    def wait_task(self, task_id: str, timeout: float = 120.0) -> str:
        pattern = re.compile(rf"\[{re.escape(task_id)}\] (succeeded in [0-9.]+s: (.*)|raised .*)$")
        deadline = clock.monotonic() + timeout
        while clock.monotonic() < deadline:
            for line in list(self.worker.output):
                found = pattern.search(line.rstrip())
                if found:
                    assert found.group(1).startswith("succeeded"), line
                    return found.group(2)
            clock.sleep(0.05)
        raise AssertionError(f"task {task_id} not done within {timeout} s:\n" + "".join(self.worker.output[-30:]))

    def tick(self, now: datetime) -> int:
        return int(self.run("leadflow.nurture_tick", now.isoformat()))

    def received(self, recipient: str) -> list:
        with self.sink.lock:
            return [m for m in self.sink.messages if recipient in m.recipients]

    def wait_mail(self, recipient: str, count: int, timeout: float = 60.0) -> list:
        deadline = clock.monotonic() + timeout
        while clock.monotonic() < deadline:
            found = self.received(recipient)
            if len(found) >= count:
                return found
            clock.sleep(0.05)
        raise AssertionError(f"{len(self.received(recipient))} email(s) to {recipient} within {timeout} s, "
                             f"wanted {count}")


@pytest.fixture
def start_stack(app_factory, pg_url, forms_dir, tmp_path):
    """start_stack(broker=None, beat=False, campaigns_dir=None) → Stack.
    The broker defaults to this xdist worker's database on the shared Redis."""
    started = []

    def start(broker=None, beat=False, campaigns_dir=None, concurrency=2):
        broker = broker or REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db_for_worker()}"
        redis.Redis.from_url(broker).flushdb()
        sink = SmtpSink().start()
        port = free_port()
        settings = {"CELERY_BROKER_URL": broker, "SMTP_URL": sink.url, "BASE_URL": f"http://127.0.0.1:{port}"}
        if campaigns_dir:
            settings["CAMPAIGNS_DIR"] = str(campaigns_dir)
        # The person opens and clicks seconds after the send; a hit that soon
        # is a mail scanner's unless this says otherwise (the test can't wait).
        app = app_factory(pg_url, TRACK_MACHINE_SECONDS=0, **settings)
        env = {"DATABASE_URL": pg_url, "SECRET_KEY": "test-secret", "LEADFLOW_FORMS_DIR": str(forms_dir),
               **settings}
        if campaigns_dir:
            env["LEADFLOW_CAMPAIGNS_DIR"] = str(campaigns_dir)
        worker = CeleryWorker(env, concurrency=concurrency, beat=beat)
        if beat:
            # The production schedule with shorter intervals, and beat's state
            # file out of the working tree.
            (tmp_path / "fastbeat.py").write_text(textwrap.dedent("""\
                from app.tasks import celery
                for entry in celery.conf.beat_schedule.values():
                    entry["schedule"] = 1.0
                """))
            worker.env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(PROJECT_ROOT)])
            worker.args[worker.args.index("app.tasks")] = "fastbeat"
            worker.args += ["--schedule", str(tmp_path / "beat-schedule")]
        server = live_server(app, port)
        base_url = server.__enter__()
        stack = Stack(app, sink, worker, base_url)
        started.append((stack, server, broker))
        worker.start(timeout=90)
        return stack

    yield start
    for stack, server, broker in started:
        stack.worker.stop()
        print("".join(stack.worker.output[-80:]))  # shown when the test fails
        server.__exit__(None, None, None)
        stack.sink.stop()
        try:
            redis.Redis.from_url(broker, socket_timeout=1, socket_connect_timeout=1).flushdb()
        except redis.RedisError:
            pass
    tasks.configure_broker("")


# --- helpers -------------------------------------------------------------------------

def enrollment_of(email: str) -> Enrollment:
    row = session.execute(select(Enrollment).join(Lead, Lead.id == Enrollment.lead_id)
                          .where(Lead.email == email).order_by(Enrollment.id.desc())).scalars().first()
    session.remove()
    return row


def lead_of(email: str) -> Lead:
    row = session.execute(select(Lead).where(Lead.email == email)).scalar_one()
    session.remove()
    return row


def parts(message) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "text/html"], types
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def unsubscribe_header(received, base_url: str) -> str:
    """The List-Unsubscribe URL as written on the wire: one line, unfolded,
    exactly <http://.../u/<token>>."""
    raw = received.raw.replace(b"\r\n", b"\n")
    found = re.findall(rb"^List-Unsubscribe: (.*)\n(?![ \t])", raw, re.MULTILINE)
    assert len(found) == 1, raw[:2000]
    value = found[0].decode("ascii")
    match = re.fullmatch(rf"<({re.escape(base_url)}/u/[A-Za-z0-9._-]+)>", value)
    assert match, f"List-Unsubscribe is {value!r}"
    assert re.search(rb"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\n", raw, re.MULTILINE)
    return match.group(1)


def check_nurture_mail(received, base_url: str, greeting: str, subject: str) -> tuple[str, str]:
    message = received.message
    assert message["Subject"] == subject
    assert re.fullmatch(r"<lf-\d+@[^>]+>", message["Message-ID"] or ""), message["Message-ID"]
    text, html = parts(message)
    assert greeting in text and greeting in html
    assert "12 rue de la Paix, 75002 Paris" in text and "12 rue de la Paix, 75002 Paris" in html
    unsubscribe_header(received, base_url)
    return text, html


def tracking_urls(html: str, base_url: str) -> tuple[str, str]:
    """The open pixel and the first click-tracked link of a received email."""
    pixel = re.search(rf'<img src="({re.escape(base_url)}/t/o/[^"]+\.gif)"', html).group(1)
    click = re.search(rf'href="({re.escape(base_url)}/t/c/[^"]+)"', html).group(1)
    return pixel, click.replace("&amp;", "&")


# --- the acceptance ------------------------------------------------------------

def test_a_lead_is_nurtured_by_the_worker_until_it_becomes_an_mql(start_stack):
    stack = start_stack()
    web, base = stack.client, stack.base_url
    with stack.app.app_context():
        factories.user()  # Claire, sales for France: she hears of the MQL

    # Two prospects fill the demo forms: both are enrolled, nothing is sent yet.
    assert post_json(web, "contact", person(email=LEA, name="Léa Martin")).status_code == 201
    assert post_json(web, "contact-en", english_person(email=JORDAN, name="Jordan Smith")).status_code == 201
    with stack.app.app_context():
        assert (enrollment_of(LEA).campaign, enrollment_of(LEA).step_key) == ("nurture-fr", "bienvenue")
        assert (enrollment_of(JORDAN).campaign, enrollment_of(JORDAN).step_key) == ("nurture-en", "welcome")
        score_at_start = lead_of(LEA).score

    # Monday 10:00 in Paris: the worker's tick sends each first email, once.
    assert stack.tick(MONDAY) == 2
    assert stack.tick(MONDAY) == 0
    (welcome,) = stack.wait_mail(LEA, 1)
    (hello,) = stack.wait_mail(JORDAN, 1)
    _, html = check_nurture_mail(welcome, base, "Bonjour Léa,", "Vos relances commerciales, sans y penser")
    check_nurture_mail(hello, base, "Hello Jordan,", "Follow-ups that happen by themselves")

    # Léa opens it and clicks its link, with a browser, through the tracking URLs it carries.
    pixel, click = tracking_urls(html, base)
    opened = requests.get(pixel, headers=CHROME, timeout=10)
    assert opened.status_code == 200 and opened.headers["Content-Type"] == "image/gif"
    clicked = requests.get(click, headers=CHROME, allow_redirects=False, timeout=10)
    assert clicked.status_code == 302
    landing = clicked.headers["Location"]
    assert landing.startswith("https://www.leadflow.example/blog/qualifier-un-lead")
    visitor = parse_qs(urlsplit(landing).query)["lf_t"][0]
    with stack.app.app_context():
        after_click = lead_of(LEA).score
        assert after_click > score_at_start + 3.99  # open 1 + click 3 (decay trims a hair)
        mail = session.execute(select(Mail).where(Mail.recipient == LEA)).scalar_one()
        assert mail.opened_at is not None and mail.clicked_at is not None and mail.machine_opened_at is None
        session.remove()

    # Three days on: Léa engaged, so she gets the case study; Jordan did not, the short nudge.
    assert stack.tick(MONDAY + timedelta(days=2)) == 0
    assert stack.tick(MONDAY + timedelta(days=3, minutes=1)) == 2
    (_, case_study) = stack.wait_mail(LEA, 2)
    (_, nudge) = stack.wait_mail(JORDAN, 2)
    check_nurture_mail(case_study, base, "Bonjour Léa,", "Comment Boulangeries Réunies a doublé ses rendez-vous")
    check_nurture_mail(nudge, base, "Hello Jordan,", "One quick tip")

    # On the site (the visitor token the redirect added), she downloads the
    # pricing sheet and a white paper: her score crosses the MQL threshold.
    for kind, properties in (("page_visited", {}), ("asset_downloaded", {"asset": "pricing-sheet"}),
                             ("asset_downloaded", {"asset": "livre-blanc-relances"})):
        answer = requests.post(f"{base}/t/v", data=json.dumps({"t": visitor, "kind": kind,
                                                               "url": "https://www.leadflow.example/tarifs",
                                                               "properties": properties}),
                               headers={**CHROME, "Content-Type": "text/plain;charset=UTF-8"}, timeout=10)
        assert answer.status_code == 204
    with stack.app.app_context():
        lead = lead_of(LEA)
        assert lead.score > after_click and lead.stage == "mql", (lead.score, lead.stage)
        enrollment = enrollment_of(LEA)
        assert (enrollment.status, enrollment.exit_reason) == ("exited", "goal:stage:mql")
    # Sales hear of it (the notification went through the broker and the worker).
    (notice,) = stack.wait_mail(SALES, 1)
    assert "New MQL" in notice.message["Subject"] and "Léa Martin" in notice.message["Subject"]

    # Weeks go by: nothing more for Léa; Jordan's sequence runs to its end.
    for days in (7, 14, 35):
        stack.tick(MONDAY + timedelta(days=days))
    with stack.app.app_context():
        assert (enrollment_of(JORDAN).status, enrollment_of(JORDAN).exit_reason) == ("completed", "exit step done")
    assert [m.message["Subject"] for m in stack.received(LEA)] == [
        "Vos relances commerciales, sans y penser", "Comment Boulangeries Réunies a doublé ses rendez-vous"]
    assert len(stack.received(JORDAN)) == 2 and len(stack.received(SALES)) == 1
    wait_all_sent(stack)


def test_one_click_unsubscribe_from_the_received_header_stops_everything(start_stack):
    stack = start_stack()
    web, base = stack.client, stack.base_url
    assert post_json(web, "contact", person(email=LEA, name="Léa Martin")).status_code == 201
    assert post_json(web, "contact-en", english_person(email=JORDAN, name="Jordan Smith")).status_code == 201
    assert stack.tick(MONDAY) == 2
    (hello,) = stack.wait_mail(JORDAN, 1)
    url = unsubscribe_header(hello, base)

    # Forged or tampered tokens are refused and change nothing.
    token = url.rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (f"{base}/u/forged.token.here", f"{base}/u/{tampered}"):
        answer = requests.post(bad, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert answer.status_code == 404, bad
    with stack.app.app_context():
        assert lead_of(JORDAN).unsubscribed_at is None

    # RFC 8058: one POST, as a mail client sends it, no cookie, no page.
    answer = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 200
    with stack.app.app_context():
        assert lead_of(JORDAN).unsubscribed_at is not None
        enrollment = enrollment_of(JORDAN)
        assert (enrollment.status, enrollment.exit_reason) == ("exited", "unsubscribed")

    # The clock moves on: Léa's sequence goes on, Jordan gets nothing more.
    assert stack.tick(MONDAY + timedelta(days=3, minutes=1)) == 1
    for days in (14, 35):
        stack.tick(MONDAY + timedelta(days=days))
    assert len(stack.wait_mail(LEA, 2)) == 2
    assert len(stack.received(JORDAN)) == 1


def test_an_unsubscribe_wins_over_an_email_already_rendered(start_stack):
    """Suppression wins at send time, not only when the engine decides: an
    email rendered before the person unsubscribed (here held back by a
    temporary SMTP refusal, then retried by the sweep) is not sent."""
    stack = start_stack()
    assert post_json(stack.client, "contact-en", english_person(email=JORDAN, name="Jordan Smith")).status_code == 201
    stack.sink.reject[JORDAN] = "451 4.7.1 Try again later"
    assert stack.tick(MONDAY) == 0
    with stack.app.app_context():
        mail = session.execute(select(Mail).where(Mail.recipient == JORDAN)).scalar_one()
        assert (mail.status, mail.attempts) == ("pending", 1), (mail.status, mail.error)
        url = mail.headers["List-Unsubscribe"].strip("<>")
        session.remove()
    assert requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200
    del stack.sink.reject[JORDAN]
    result = stack.run("leadflow.sweep", (MONDAY + timedelta(minutes=1)).isoformat())
    assert "'mails': 1" in result
    with stack.app.app_context():
        deadline = clock.monotonic() + 20
        while (status := session.execute(select(Mail.status).where(Mail.recipient == JORDAN)).scalar_one()) \
                == "pending" or status == "sending":
            session.remove()
            assert clock.monotonic() < deadline
            clock.sleep(0.1)
        session.remove()
    assert stack.received(JORDAN) == [], "mailed after unsubscribing"
    assert status == "suppressed"


def test_run_due_from_the_cli_with_a_stand_in_clock(app_factory, pg_url):
    """`leadflow nurture run-due --now ...`, what an operator (or cron without
    a broker) runs: the same engine, the clock given on the command line."""
    app = app_factory(pg_url)  # no SMTP: the outbox
    assert post_json(app.test_client(), "contact", person(email=LEA, name="Léa Martin")).status_code == 201
    runner = app.test_cli_runner()
    saturday = MONDAY - timedelta(days=2)
    assert runner.invoke(args=["nurture", "run-due", "--now", saturday.isoformat()]).output.strip() == "sent 0 emails"
    assert runner.invoke(args=["nurture", "run-due", "--now", MONDAY.isoformat()]).output.strip() == "sent 1 emails"
    assert runner.invoke(args=["nurture", "run-due", "--now", MONDAY.isoformat()]).output.strip() == "sent 0 emails"
    with app.app_context():
        mail = session.execute(select(Mail)).scalar_one()
        assert (mail.status, mail.step_key) == ("outbox", "bienvenue")
        session.remove()


def test_the_open_pixel_leaves_the_html_well_formed(app_factory, pg_url):
    app = app_factory(pg_url)
    assert post_json(app.test_client(), "contact", person(email=LEA, name="Léa Martin")).status_code == 201
    assert "sent 1" in app.test_cli_runner().invoke(args=["nurture", "run-due", "--now", MONDAY.isoformat()]).output
    with app.app_context():
        html = session.execute(select(Mail.html)).scalar_one()
        session.remove()
    assert "&lt;/body&gt;" not in html and re.search(r'<img src="[^"]+/t/o/[^"]+" [^>]*></body>', html)


def test_beat_runs_the_nurture_tick_on_its_schedule(start_stack, tmp_path):
    """No task sent by the test: the worker's beat sends `leadflow.nurture_tick`
    (on the production schedule, its interval shortened to 1 s) and the tick,
    with the real clock, mails a lead enrolled by the form. The campaign's send
    window is opened to every hour of every day so that this holds at any time."""
    campaigns = tmp_path / "campaigns"
    shutil.copytree(PROJECT_ROOT / "campaigns", campaigns)
    definition = yaml.safe_load((campaigns / "nurture-fr.yaml").read_text(encoding="utf-8"))
    definition["window"] = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                            "start": "00:00", "end": "23:59:59"}
    (campaigns / "nurture-fr.yaml").write_text(yaml.safe_dump(definition, allow_unicode=True), encoding="utf-8")
    stack = start_stack(beat=True, campaigns_dir=campaigns)

    assert post_json(stack.client, "contact", person(email=LEA, name="Léa Martin")).status_code == 201
    (welcome,) = stack.wait_mail(LEA, 1, timeout=30)
    check_nurture_mail(welcome, stack.base_url, "Bonjour Léa,", "Vos relances commerciales, sans y penser")
    stack.worker.wait_log(r"Sending due task nurture \(leadflow\.nurture_tick\)")
    tick = r"Task leadflow\.nurture_tick\[[^\]]+\] succeeded in [0-9.]+s: (\d+)"
    stack.worker.wait_log(tick.replace(r"(\d+)", r"1\b"))  # the tick that sent it
    # More ticks come and go: at most once.
    seen = len(stack.worker.wait_log(tick))
    stack.worker.wait_log(tick, count=seen + 2)
    assert len(stack.received(LEA)) == 1
    with stack.app.app_context():
        enrollment = enrollment_of(LEA)
        assert (enrollment.step_key, enrollment.waiting) == ("pause-1", True)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_nothing_is_lost_while_the_broker_is_down(start_stack, tmp_path):
    """The broker (a private redis-server) is SIGKILLed while leads are due and
    while the web app commits work that queues tasks: the app still takes
    submissions, the rows wait in the database, and once a redis-server is
    back on the same port the worker reconnects and beat's tick plus the
    sweep deliver every due email exactly once."""
    broker = RedisServer(tmp_path).start()
    try:
        stack = start_stack(broker=broker.url)
        web = stack.client
        with stack.app.app_context():
            factories.user()
        assert post_json(web, "contact", person(email=LEA, name="Léa Martin")).status_code == 201
        assert post_json(web, "contact-en", english_person(email=JORDAN, name="Jordan Smith")).status_code == 201

        broker.kill()

        # The web app goes on: a new lead is taken and enrolled, another one
        # becomes an MQL (its notification is queued after the commit)...
        started = clock.monotonic()
        assert post_json(web, "contact", person(email="noe@acme.fr", name="Noé Petit")).status_code == 201
        assert post_json(web, "contact", person(email="mql@acme.fr", name="Max Leroy")).status_code == 201
        with stack.app.app_context():
            lead = lead_of("mql@acme.fr")
            track(lock_lead(lead.id), "demo_requested", properties={})
            tasks.commit()
            assert lead_of("mql@acme.fr").stage == "mql"
        # ...and beat's tick cannot reach the worker.
        tasks.send("leadflow.nurture_tick", MONDAY.isoformat())
        tasks.send("leadflow.sweep", MONDAY.isoformat())
        elapsed = clock.monotonic() - started
        assert elapsed < 30, f"the web app took {elapsed:.1f} s with the broker down"
        clock.sleep(2)  # the worker finds out the broker is gone
        assert stack.worker.process.poll() is None
        with stack.app.app_context():
            rows = session.execute(select(Mail.recipient, Mail.status)).all()
            assert rows == [(SALES, "pending")], rows
            due = {e: enrollment_of(e) for e in (LEA, JORDAN, "noe@acme.fr")}
            assert all(e.status == "active" and not e.waiting for e in due.values())
            assert enrollment_of("mql@acme.fr").exit_reason == "goal:stage:mql"
        assert stack.sink.messages == []

        broker.start()  # same port, empty: what was queued before the crash is gone

        # As beat would: tick and sweep every couple of seconds until it is all
        # out. The tick runs on the test's clock (Monday 10:00 in Paris); the
        # sweep on the real one, a minute on (past its grace period): a sweep
        # weeks ahead would also, rightly, remind Claire of her MQL's SLA.
        expected = {LEA: 1, JORDAN: 1, "noe@acme.fr": 1, SALES: 1}
        started, rounds = clock.monotonic(), 0
        while True:
            counts = {r: len(stack.received(r)) for r in expected}
            if counts == expected:
                break
            assert clock.monotonic() < started + 90, (counts, debug_rows(stack))
            for name, now in (("leadflow.nurture_tick", MONDAY), ("leadflow.sweep", sweep_clock())):
                try:
                    tasks.celery.send_task(name, args=[now.isoformat()])
                except Exception:  # the producer's connection died with the old server
                    pass
            rounds += 1
            clock.sleep(2)
        recovered = clock.monotonic() - started
        # A few more rounds, ticks and sweeps side by side on the worker's
        # two processes: still exactly one of each.
        for _ in range(3):
            done = [tasks.celery.send_task("leadflow.nurture_tick", args=[MONDAY.isoformat()]).id,
                    tasks.celery.send_task("leadflow.sweep", args=[sweep_clock().isoformat()]).id,
                    tasks.celery.send_task("leadflow.nurture_tick", args=[MONDAY.isoformat()]).id]
            for task_id in done:
                stack.wait_task(task_id)
        assert {r: len(stack.received(r)) for r in expected} == expected
        assert len(stack.sink.messages) == 4
        assert "New MQL" in stack.received(SALES)[0].message["Subject"]
        wait_all_sent(stack)
        print(f"\nbroker down: 2 submissions, an MQL and 2 task sends took {elapsed:.2f} s; broker back: "
              f"everything out {recovered:.1f} s later, after {rounds} tick/sweep round(s)")
    finally:
        broker.kill()


def wait_all_sent(stack, timeout: float = 30.0) -> None:
    """Every mail row `sent`. The SMTP server has a message a moment before
    the worker records it as sent: poll rather than read once."""
    deadline = clock.monotonic() + timeout
    while True:
        with stack.app.app_context():
            found = set(session.execute(select(Mail.status)).scalars())
            session.remove()
        if found == {"sent"}:
            return
        assert clock.monotonic() < deadline, found
        clock.sleep(0.05)


def sweep_clock() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=1)


def debug_rows(stack):
    with stack.app.app_context():
        rows = session.execute(select(Mail.id, Mail.recipient, Mail.status, Mail.attempts, Mail.error,
                                      Mail.created_at, Mail.sent_at)).all()
        session.remove()
    return rows
