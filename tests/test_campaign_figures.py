"""The campaign figures rollup (migration 0008) always equals the figures
counted from the tables: after random histories, with folds in between,
under concurrent writers on PostgreSQL, and right after the migration."""
import os
import random
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app import migrate
from app.db import is_postgres, session
from app.models import Enrollment, Event, Lead, Mail, StageChange, utcnow
from app.nurture import stats
from tests.helpers import create_pg_database, drop_pg_database, run_together

CAMPAIGNS = ("nurture-fr", "nurture-en")
STEPS = ("bienvenue", "cas-client", "demo")
STATUSES = ("pending", "sending", "sent", "outbox", "bounced", "suppressed", "unknown")


def rollup_and_live() -> tuple[dict, dict]:
    """Both sides, without all-zero rows (a mail sent then taken back leaves
    a zero row in the rollup, and no row in the tables)."""
    def nonzero(rows):
        return {key: figures for key, figures in rows.items() if any(figures.values())}
    return nonzero(stats.figure_rows()), nonzero(stats.figure_rows(source="campaign_figures_live"))


def differences(rollup: dict, live: dict) -> dict:
    """(campaign, step) → {figure: (rollup, live)} where they differ."""
    found = {}
    for key in rollup.keys() | live.keys():
        a, b = rollup.get(key, {}), live.get(key, {})
        diff = {name: (a.get(name, 0), b.get(name, 0)) for name in stats.FIGURES if a.get(name, 0) != b.get(name, 0)}
        if diff:
            found[key] = diff
    return found


def new_mail(lead_id, campaign, step, n, at):
    return Mail(dedupe_key=f"step:{lead_id}:{campaign}:{step}:{n}", kind="nurture", sender="m@x.example",
                recipient=f"{lead_id}@x.example", subject="s", html="h", text="t", headers={},
                status="pending", attempts=0, next_attempt_at=at, created_at=at, lead_id=lead_id,
                campaign=campaign, step_key=step)


def random_history(rng: random.Random, operations: int, fold_every: int) -> None:
    """Leads enter campaigns, get mails whose status moves, open, click,
    unsubscribe (twice, or with a message id that names nothing), and become
    MQL or SQL before or after entering."""
    now = utcnow()
    leads = []
    for i in range(8):
        lead = Lead(email=f"p{i}@figures.example",
                    stage="lead", created_at=now, updated_at=now)
        session.add(lead)
        leads.append(lead)
    session.flush()
    mails, enrollments, active = [], [], set()
    for n in range(operations):
        lead = rng.choice(leads)
        at = now + timedelta(minutes=rng.randint(-600, 600))
        choice = rng.random()
        if choice < 0.15:
            campaign = rng.choice(CAMPAIGNS)
            status = "active" if (campaign, lead.id) not in active else rng.choice(("completed", "exited"))
            enrollment = Enrollment(campaign=campaign, lead_id=lead.id, step_key="bienvenue",
                                    status=status, trigger="test", due_at=at, entered_at=at, path=[])
            session.add(enrollment)
            enrollments.append(enrollment)
            if status == "active":
                active.add((campaign, lead.id))
        elif choice < 0.22 and enrollments:
            enrollment = rng.choice(enrollments)
            if enrollment.status == "active":  # at most one active per lead and campaign
                enrollment.status = rng.choice(("completed", "exited"))
                active.discard((enrollment.campaign, enrollment.lead_id))
        elif choice < 0.45:
            mail = new_mail(lead.id, rng.choice(CAMPAIGNS), rng.choice(STEPS), n, at)
            session.add(mail)
            mails.append(mail)
        elif choice < 0.65 and mails:
            rng.choice(mails).status = rng.choice(STATUSES)
        elif choice < 0.75 and mails:
            mail = rng.choice(mails)
            setattr(mail, rng.choice(("opened_at", "clicked_at", "machine_opened_at")), rng.choice((at, None)))
        elif choice < 0.85:
            session.flush()
            # A message id names a mail sent before (or nothing: a forged link, an API caller's typo).
            message_id = rng.choice([m.id for m in mails] + ["not-a-number", 10**12, None])
            session.add(Event(lead_id=lead.id, kind="unsubscribed", key=f"u{n}", occurred_at=at,
                              properties={"message_id": message_id}))
        else:
            session.add(StageChange(lead_id=lead.id, from_stage="lead", to_stage=rng.choice(("mql", "sql")),
                                    actor="test", at=at))
        if rng.random() < 0.3:
            session.commit()
        if n % fold_every == 0:
            session.commit()
            stats.fold()
    session.commit()


@pytest.mark.parametrize("seed", range(6))
def test_rollup_equals_the_tables_after_random_histories(app, seed):
    with app.app_context():
        random_history(random.Random(seed), operations=300, fold_every=37 + seed * 11)
        rollup, live = rollup_and_live()
        assert differences(rollup, live) == {} and live  # something was counted
        assert stats.fold() > 0 or not session.execute(text("SELECT 1 FROM campaign_figure_deltas")).first()
        assert rollup_and_live()[0] == live  # the same once folded


def test_totals_and_steps_from_the_rollup(app):
    """The shapes the pages read: per step, and per campaign summed."""
    with app.app_context():
        random_history(random.Random(99), operations=200, fold_every=50)
        live = stats.figure_rows(source="campaign_figures_live")
        totals = stats.all_campaign_totals(CAMPAIGNS + ("never-ran",))
        assert totals["never-ran"] == dict.fromkeys(stats.FIGURES, 0)
        for slug in CAMPAIGNS:
            steps = {step: f for (campaign, step), f in live.items() if campaign == slug and step}
            assert stats.step_stats(slug) == {step: {k: f[k] for k in stats.MAIL_FIGURES} for step, f in steps.items()}
            assert totals[slug]["sent"] == sum(f["sent"] for f in steps.values())
            assert totals[slug]["unsubscribed"] == sum(f["unsubscribed"] for f in steps.values())
            assert totals[slug]["enrolled"] == live.get((slug, ""), {}).get("enrolled", 0)
            assert totals[slug]["mql"] == live.get((slug, ""), {}).get("mql", 0)


def test_same_figures_on_sqlite(app_factory, sqlite_url):
    """The embedded default reads the live view through the same functions."""
    app = app_factory(sqlite_url)
    with app.app_context():
        assert not is_postgres()
        random_history(random.Random(7), operations=200, fold_every=1000)
        rollup, live = rollup_and_live()
        assert rollup == live and live and stats.fold() == 0


def make_leads(prefix: str, count: int) -> list[int]:
    now = utcnow()
    leads = [Lead(email=f"{prefix}{i}@figures.example", stage="lead", created_at=now, updated_at=now)
             for i in range(count)]
    session.add_all(leads)
    session.commit()
    return [lead.id for lead in leads]


def test_concurrent_mail_writers_lose_no_figure(app):
    """Six connections send and open mails of the same step at once (one hot
    step, no hot counter row), while folds run."""
    with app.app_context():
        lead_ids, engine, now = make_leads("m", 10), session.get_bind(), utcnow()

        def sender(worker: int):
            def write():
                for n in range(40):
                    with Session(engine) as s, s.begin():
                        mail = new_mail(lead_ids[n % 10], "nurture-fr", "bienvenue", worker * 1000 + n, now)
                        s.add(mail)
                        s.flush()
                        mail.status, mail.opened_at = "sent", now
                    if worker == 0 and n % 10 == 0:
                        stats.fold()
            return write
        run_together(*(sender(w) for w in range(6)))
        rollup, live = rollup_and_live()
        assert differences(rollup, live) == {}
        assert (live[("nurture-fr", "bienvenue")]["sent"], live[("nurture-fr", "bienvenue")]["opened"]) == (240, 240)


def test_enrollment_and_mql_in_concurrent_transactions_count_once(app):
    """A lead enters a campaign in one transaction while it becomes an MQL in
    another, both uncommitted when the other writes: neither trigger sees
    the other's row unless they take turns (the lead's row lock).
    Every one of the 30 leads must count as converted."""
    with app.app_context():
        lead_ids, engine, now = make_leads("c", 30), session.get_bind(), utcnow()
        barrier = threading.Barrier(2)

        def write(make_row):
            def run():
                for lead_id in lead_ids:
                    barrier.wait()
                    with Session(engine) as s, s.begin():
                        s.add(make_row(lead_id))
                        s.flush()
                        time.sleep(0.005)  # the transaction goes on a little before it commits
            return run
        run_together(
            write(lambda lead_id: Enrollment(campaign="nurture-fr", lead_id=lead_id, step_key="bienvenue",
                                             status="active", trigger="test", due_at=now, entered_at=now, path=[])),
            write(lambda lead_id: StageChange(lead_id=lead_id, from_stage="lead", to_stage="mql", actor="t",
                                              at=now + timedelta(seconds=1))))
        rollup, live = rollup_and_live()
        assert live[("nurture-fr", "")]["mql"] == 30
        assert differences(rollup, live) == {}


def test_migration_counts_what_was_there_before():
    """Upgrading a database that already holds mails, enrollments and
    unsubscribes fills the rollup with their figures."""
    url = create_pg_database(f"leadflow_test_figures_{os.getpid()}")
    try:
        migrate.upgrade(url, "0007")
        engine = create_engine(url)
        with Session(engine) as s:
            now = utcnow()
            lead = Lead(email="m@figures.example", stage="lead",
                        created_at=now, updated_at=now)
            s.add(lead)
            s.flush()
            s.add(Enrollment(campaign="nurture-en", lead_id=lead.id, step_key="welcome", status="active",
                             trigger="test", due_at=now, entered_at=now, path=[]))
            mail = new_mail(lead.id, "nurture-en", "welcome", 1, now)
            mail.status, mail.opened_at = "sent", now
            s.add(mail)
            s.flush()
            s.add(Event(lead_id=lead.id, kind="unsubscribed", key="u", properties={"message_id": mail.id}))
            s.add(StageChange(lead_id=lead.id, from_stage="lead", to_stage="mql", actor="t",
                              at=now + timedelta(minutes=1)))
            s.commit()
        migrate.upgrade(url, "head")
        with engine.connect() as conn:
            rows = {(r.campaign, r.step_key): (r.sent, r.opened, r.unsubscribed, r.enrolled, r.mql)
                    for r in conn.execute(text("SELECT * FROM campaign_figures_now"))}
        assert rows == {("nurture-en", "welcome"): (1, 1, 1, 0, 0), ("nurture-en", ""): (0, 0, 0, 1, 1)}
        engine.dispose()
    finally:
        drop_pg_database(url)


def test_a_bulk_enrollment_in_one_statement(app):
    """20,000 enrollments in one INSERT ... SELECT (a data migration, a
    restore): the triggers' per-lead locks must not fill PostgreSQL's lock
    table, as advisory locks did ("out of shared memory")."""
    with app.app_context():
        session.execute(text(
            "INSERT INTO leads (email, stage, score, scores, score_state, consent, opted_out_topics, "
            "created_at, updated_at) SELECT 'bulk' || g || '@figures.example', 'lead', 0, '{}', '{}', true, "
            "'[]', now(), now() FROM generate_series(1, 20000) g"))
        session.execute(text(
            "INSERT INTO enrollments (campaign, lead_id, step_key, waiting, status, trigger, due_at, "
            "entered_at, path) SELECT 'nurture-en', id, 'welcome', false, 'active', 'test', now(), now(), "
            "'[]' FROM leads"))
        session.commit()
        rollup, live = rollup_and_live()
        assert differences(rollup, live) == {} and live[("nurture-en", "")]["enrolled"] == 20000
