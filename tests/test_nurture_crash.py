"""A worker SIGKILLed in the middle of a batch of 1,000 due emails.

The rule (app/mailer.py): a mail row is claimed (pending → sending, committed)
before its SMTP conversation; a row left in `sending` by a dead worker is
never sent again: the sweep marks it `unknown` after SENDING_TIMEOUT. So a
crash can lose at most the emails being sent at that instant, one per worker
process, and never send one twice. Rows rendered but not yet claimed stay
`pending` and the sweep queues them; enrollments not yet claimed stay due and
the next tick takes them.

This test holds the engine to that: 1,000 leads due at Monday 10:00 in Paris,
a worker (two processes, each running a tick) sending to an SMTP server slowed
to ~5 ms a message, killed with SIGKILL (main process and its pool at once)
once a few hundred have arrived; a second worker, the sweep and more ticks
finish the job. Every recipient got its email at most once, and every one got
it or has a row marked `unknown`, whose count is printed.
"""
import asyncio
import os
import re
import signal
import time as clock
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import func, insert, select

from app import tasks
from app.db import session
from app.mailer import SENDING_TIMEOUT
from app.models import Enrollment, Lead, Mail, utcnow
from tests.helpers import REDIS_URL
from tests.services import CeleryWorker, SmtpSink, redis_db_for_worker

pytestmark = pytest.mark.services

LEADS = 1000
KILL_AFTER = 300          # emails received before the kill
CONCURRENCY = 2           # worker processes, each with at most one row in `sending`


def monday_10_paris(weeks_ahead: int = 2) -> datetime:
    paris = ZoneInfo("Europe/Paris")
    today = datetime.now(paris).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 + 7 * weeks_ahead)
    return datetime.combine(monday, time(10, 0), tzinfo=paris).astimezone(timezone.utc)


MONDAY = monday_10_paris()


class SlowSink(SmtpSink):
    """The SMTP sink, a little slow to accept each message (as a real relay
    is), so that the kill lands in the middle of the batch."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def crash(worker: CeleryWorker) -> None:
    """SIGKILL the worker's main process and its pool processes, by pid, as
    a machine going down would."""
    pid = worker.process.pid
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone with its parent (Celery sets PR_SET_PDEATHSIG)
    worker.process.wait(10)


def seed(count: int) -> None:
    """`count` French leads with consent, each enrolled in nurture-fr and due
    now at its first step (core inserts: fast)."""
    now = utcnow()
    lead_ids = session.execute(insert(Lead).returning(Lead.id), [
        {"email": f"lead{i:04d}@crash.example", "name": f"Prénom{i} Nom", "stage": "lead", "score": 10.0,
         "scores": {}, "score_state": {}, "opted_out_topics": [], "consent": True, "language": "fr",
         "first_form": "contact", "created_at": now, "updated_at": now} for i in range(count)]).scalars().all()
    session.execute(insert(Enrollment), [
        {"campaign": "nurture-fr", "lead_id": lead_id, "step_key": "bienvenue", "waiting": False,
         "status": "active", "trigger": "lead_accepted", "due_at": now, "entered_at": now, "path": []}
        for lead_id in lead_ids])
    session.commit()


def statuses() -> Counter:
    counts = Counter(dict(session.execute(select(Mail.status, func.count()).group_by(Mail.status)).all()))
    session.remove()
    return counts


def due(now: datetime) -> int:
    count = session.execute(select(func.count()).select_from(Enrollment).where(
        Enrollment.status == "active", Enrollment.due_at <= now)).scalar()
    session.remove()
    return count


def wait_task(worker: CeleryWorker, task_id: str, timeout: float = 120.0) -> str:
    pattern = re.compile(rf"\[{re.escape(task_id)}\] (succeeded in [0-9.]+s: (.*)|raised .*)$")
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        for line in list(worker.output):
            found = pattern.search(line.rstrip())
            if found:
                assert found.group(1).startswith("succeeded"), line
                return found.group(2)
        clock.sleep(0.05)
    raise AssertionError(f"task {task_id} not done within {timeout} s:\n" + "".join(worker.output[-30:]))


def test_sigkill_mid_batch_sends_each_email_at_most_once_and_loses_at_most_the_ones_in_flight(
        app_factory, pg_url, forms_dir):
    broker = REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db_for_worker()}"
    redis.Redis.from_url(broker).flushdb()
    sink = SlowSink().start()
    settings = {"CELERY_BROKER_URL": broker, "SMTP_URL": sink.url, "BASE_URL": "http://127.0.0.1:5999"}
    app = app_factory(pg_url, **settings)
    env = {"DATABASE_URL": pg_url, "SECRET_KEY": "test-secret", "LEADFLOW_FORMS_DIR": str(forms_dir), **settings}
    first = second = None
    try:
        with app.app_context():
            seed(LEADS)
            assert due(MONDAY) == LEADS

        first = CeleryWorker(env, concurrency=CONCURRENCY).start(timeout=90)
        for _ in range(CONCURRENCY):  # both processes take batches (SKIP LOCKED keeps them apart)
            tasks.celery.send_task("leadflow.nurture_tick", args=[MONDAY.isoformat()])
        deadline = clock.monotonic() + 120
        while len(sink.messages) < KILL_AFTER:
            assert clock.monotonic() < deadline, "".join(first.output[-30:])
            assert first.process.poll() is None
            clock.sleep(0.005)
        crash(first)
        received_at_kill = len(sink.messages)
        with app.app_context():
            at_kill = statuses()
            due_at_kill = due(MONDAY)
        print(f"\nkilled after {received_at_kill} emails received; mail rows then {dict(at_kill)}, "
              f"{due_at_kill} enrollments still due")
        assert received_at_kill < LEADS, "the batch was over before the kill"
        assert at_kill["sending"] <= CONCURRENCY

        # Another worker. The sweep, run later than SENDING_TIMEOUT, marks what
        # the dead one left in `sending` as unknown (never resent) and queues
        # the rows it had rendered but not claimed; ticks take the rest.
        second = CeleryWorker(env, concurrency=CONCURRENCY).start(timeout=90)
        later = MONDAY + SENDING_TIMEOUT + timedelta(minutes=1)
        sweep = wait_task(second, tasks.celery.send_task("leadflow.sweep", args=[later.isoformat()]).id)
        print(f"sweep: {sweep}")
        deadline = clock.monotonic() + 180
        while True:
            ids = [tasks.celery.send_task("leadflow.nurture_tick", args=[later.isoformat()]).id
                   for _ in range(CONCURRENCY)]
            ids.append(tasks.celery.send_task("leadflow.sweep", args=[later.isoformat()]).id)
            for task_id in ids:
                wait_task(second, task_id)
            with app.app_context():
                now_statuses, still_due = statuses(), due(later)
            if still_due == 0 and now_statuses["pending"] == 0 and now_statuses["sending"] == 0:
                break
            assert clock.monotonic() < deadline, (dict(now_statuses), still_due)
            clock.sleep(0.2)
        # Let any send_mail still queued by the last sweep come and go.
        clock.sleep(1)

        with app.app_context():
            final = statuses()
            unknown = set(session.execute(select(Mail.recipient).where(Mail.status == "unknown")).scalars())
            mailed = set(session.execute(select(Mail.recipient)).scalars())
            enrollments = Counter(session.execute(select(Enrollment.step_key)).scalars())
            session.remove()
        with sink.lock:
            received = Counter(r for m in sink.messages for r in m.recipients)
        everyone = {f"lead{i:04d}@crash.example" for i in range(LEADS)}
        twice = {r: n for r, n in received.items() if n > 1}
        lost = unknown - set(received)
        print(f"after recovery: mail rows {dict(final)}; SMTP server received {sum(received.values())} "
              f"emails for {len(received)} recipients; {len(unknown)} row(s) marked unknown, of which "
              f"{len(unknown & set(received))} did reach the server and {len(lost)} were lost")

        assert twice == {}, f"received twice: {twice}"
        assert sum(final.values()) == LEADS and mailed == everyone  # one row per (enrollment, step)
        assert set(final) <= {"sent", "unknown"}, final
        assert set(received) | unknown == everyone
        assert len(received) + len(lost) == LEADS
        assert len(unknown) <= CONCURRENCY, "more rows in flight than worker processes"
        assert enrollments == {"pause-1": LEADS}  # every one moved on to its wait
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        if second is not None:
            print("".join(second.output[-20:]))
        sink.stop()
        redis.Redis.from_url(broker).flushdb()
        tasks.configure_broker("")
