"""Scoring through the database and the hand-off to sales, tasks in-process."""
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app import tasks
from app.db import session
from app.models import Event, Lead, Mail, ScoreHistory, StageChange, WebhookDelivery, utcnow
from app.scoring import lock_lead, recompute, rescore_all, track
from app.webhooks import verify
from tests import factories
from tests.services import HookReceiver


@pytest.fixture
def hooks():
    receiver = HookReceiver().start()
    yield receiver
    receiver.stop()


def play(lead_id, events):
    for kind, properties in events:
        lead = lock_lead(lead_id)
        track(lead, kind, properties=properties)
        tasks.commit()


def test_worked_example_makes_an_mql_and_hands_it_off(app, hooks):
    with app.app_context():
        claire = factories.user()
        factories.webhook(hooks.url)
        lead = factories.lead("lea@acme.fr", name="Léa <b>Martin</b>", company="Acme")
        play(lead.id, factories.WORKED_EXAMPLE)
        lead = session.get(Lead, lead.id, populate_existing=True)
        assert round(lead.score, 6) == 51 and lead.stage == "mql" and lead.temperature == "warm"
        assert lead.owner_id == claire.id and lead.mql_at is not None
        change = session.execute(select(StageChange).where(StageChange.to_stage == "mql")).scalar_one()
        assert change.actor == "rule:score" and "crossed 50" in change.reason
        mail = session.execute(select(Mail)).scalar_one()
        assert (mail.recipient, mail.status) == ("claire.sales@leadflow.example", "outbox")
        assert "score 51" in mail.subject and "LinkedIn" in mail.text and "ebook-2026" in mail.text
        assert "Léa &lt;b&gt;Martin&lt;/b&gt;" in mail.html and "<b>Martin" not in mail.html
        received = hooks.wait_for(1)[0]
        assert verify("hook-secret", received.headers["X-Leadflow-Timestamp"], received.body,
                      received.headers["X-Leadflow-Signature"])
        body = received.json()
        assert body["event"] == "lead.mql" and body["lead"]["email"] == "lea@acme.fr"
        assert body["lead"]["suggested_channel"] == "LinkedIn" and body["lead"]["score"] == 51
        delivery = session.execute(select(WebhookDelivery)).scalar_one()
        assert delivery.status == "delivered" and delivery.log[0]["status"] == 200
        # one history row per scoring event, the last one at 51
        history = session.execute(select(ScoreHistory.score).order_by(ScoreHistory.id)).scalars().all()
        assert len(history) == 6 and round(history[-1], 6) == 51


def test_second_pixel_load_adds_nothing(app):
    with app.app_context():
        lead = factories.lead()
        assert track(lock_lead(lead.id), "email_opened", key="mail:1", properties={"message_id": 1})
        tasks.commit()
        assert track(lock_lead(lead.id), "email_opened", key="mail:1", properties={"message_id": 1}) is None
        tasks.commit()
        assert session.get(Lead, lead.id, populate_existing=True).score == pytest.approx(1, abs=1e-6)


def test_failed_webhook_is_retried_with_backoff_and_logged(app, hooks):
    hooks.status = 500
    with app.app_context():
        factories.webhook(hooks.url)
        lead = factories.lead()
        play(lead.id, factories.WORKED_EXAMPLE)
        delivery = session.execute(select(WebhookDelivery)).scalar_one()
        assert delivery.status == "pending" and delivery.attempts == 1 and delivery.log[0]["status"] == 500
        assert delivery.next_attempt_at > utcnow() + timedelta(seconds=20)
        hooks.status = 200
        from app.sweep import run
        run(now=delivery.next_attempt_at + timedelta(seconds=30))
        delivery = session.get(WebhookDelivery, delivery.id, populate_existing=True)
        assert delivery.status == "delivered" and [e["status"] for e in delivery.log] == [500, 200]


def test_falling_below_does_not_demote_and_recycled_needs_a_fresh_crossing(app):
    with app.app_context():
        lead = factories.lead()
        play(lead.id, factories.WORKED_EXAMPLE)
        play(lead.id, [("unsubscribed", {})])
        lead = session.get(Lead, lead.id, populate_existing=True)
        assert lead.score == pytest.approx(31, abs=1e-6) and lead.stage == "mql"


def test_sla_reminder_and_alert_are_sent_once(app):
    with app.app_context():
        claire = factories.user()
        factories.user("boss@leadflow.example", "Boss", manager=True)
        lead = factories.lead()
        play(lead.id, factories.WORKED_EXAMPLE)
        lead = session.get(Lead, lead.id)
        from app.sales.handoff import check_sla
        assert check_sla(utcnow() + timedelta(hours=3)) == 0
        assert check_sla(utcnow() + timedelta(hours=5)) == 2
        tasks.commit()
        assert check_sla(utcnow() + timedelta(hours=6)) == 0
        recipients = sorted(m.recipient for m in session.execute(select(Mail)).scalars())
        assert recipients == ["boss@leadflow.example", claire.email, claire.email]


def test_each_salesperson_reads_notifications_in_their_own_language(app):
    """The MQL notice and the SLA reminder go to Claire in French (her
    setting); the manager, who chose no language, gets the alert in English."""
    with app.app_context():
        claire = factories.user(language="fr")
        boss = factories.user("boss@leadflow.example", "Boss", manager=True)
        lead = factories.lead(name="Léa Martin", company="Acme")
        play(lead.id, factories.WORKED_EXAMPLE)
        (notice,) = session.execute(select(Mail)).scalars().all()
        assert notice.subject == "Nouveau MQL, tiède\u00a0: Léa Martin (Acme), score 51"
        assert "Bonjour Claire Dupont, un lead qui vous est attribué" in notice.html
        assert 'lang="fr"' in notice.html and "Pourquoi le score est élevé" in notice.html
        assert "Canal suggéré\u00a0: LinkedIn" in notice.text and "Hello" not in notice.text
        from app.sales.handoff import check_sla
        assert check_sla(utcnow() + timedelta(hours=5)) == 2
        tasks.commit()
        reminder = session.execute(select(Mail).where(Mail.recipient == claire.email, Mail.id != notice.id)).scalar_one()
        alert = session.execute(select(Mail).where(Mail.recipient == boss.email)).scalar_one()
        assert reminder.subject.startswith("Rappel\u00a0: MQL en attente depuis plus de 4 h")
        assert "attend depuis plus de 4 heures" in reminder.text
        assert alert.subject == "SLA missed: Léa Martin not accepted within 4 h"
        assert "assigned to Claire Dupont, was not accepted within 4 hours" in alert.html
        assert 'lang="en"' in alert.html and "Why the score is high" in alert.text


def test_a_crm_can_follow_every_stage_change(app, hooks):
    """A webhook subscribed to lead.stage_changed (and not to lead.mql) gets
    one signed post per lifecycle move, in order, with who and why."""
    from app.sales import handoff
    with app.app_context():
        claire = factories.user()
        factories.webhook(hooks.url, events=["lead.stage_changed"])
        lead = factories.lead("crm@acme.fr", name="Léa")
        play(lead.id, factories.WORKED_EXAMPLE)  # lead → mql
        lead = lock_lead(lead.id)
        handoff.reject(lead, claire, "no budget this year")  # mql → recycled
        tasks.commit()
        received = hooks.wait_for(2)
        bodies = [r.json() for r in received]
        assert all(verify("hook-secret", r.headers["X-Leadflow-Timestamp"], r.body,
                          r.headers["X-Leadflow-Signature"]) for r in received)
        assert [b["event"] for b in bodies] == ["lead.stage_changed"] * 2
        assert [(b["change"]["from"], b["change"]["to"]) for b in bodies] == [("lead", "mql"), ("mql", "recycled")]
        assert bodies[1]["change"]["reason"] == "no budget this year"
        assert bodies[1]["change"]["actor"] == f"user:{claire.id}" and bodies[1]["lead"]["email"] == "crm@acme.fr"
        assert session.execute(select(func.count()).select_from(WebhookDelivery)).scalar() == 2  # no lead.mql


def test_round_robin_spreads_mqls(app):
    with app.app_context():
        a = factories.user("a@leadflow.example", "A")
        b = factories.user("b@leadflow.example", "B")
        owners = []
        for i in range(4):
            lead = factories.lead(f"p{i}@acme.de", country="DE")
            play(lead.id, factories.WORKED_EXAMPLE)
            owners.append(session.get(Lead, lead.id, populate_existing=True).owner_id)
        assert owners == [a.id, b.id, a.id, b.id]


def test_territory_assignment(app):
    with app.app_context():
        factories.user("sam.sales@leadflow.example", "Sam")
        claire = factories.user()
        lead = factories.lead("x@acme.fr", country="FR")
        play(lead.id, factories.WORKED_EXAMPLE)
        assert session.get(Lead, lead.id, populate_existing=True).owner_id == claire.id


KINDS = ["page_visited", "article_read", "asset_downloaded", "email_opened", "link_clicked",
         "form_submitted", "unsubscribed", "webinar_registered", "something_unscored"]
event_strategy = st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b", "c"]),
                           st.integers(-400, 400), st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_strategy, max_size=25))
def test_cached_score_equals_recomputation_from_the_log(app, events):
    with app.app_context():
        for model in (ScoreHistory, Event, StageChange, Lead):
            session.query(model).delete()
        session.commit()
        lead = factories.lead("prop@acme.fr", job_title="CEO")
        base = utcnow()
        for kind, value, minutes, machine in events:
            properties = {"article": value, "asset": value, "message_id": value, "url": value,
                          "webinar": value}
            track(lock_lead(lead.id), kind, properties=properties, machine=machine,
                  occurred_at=base + timedelta(minutes=minutes * 60))
            tasks.commit()
        cached = session.get(Lead, lead.id, populate_existing=True)
        cached_scores = dict(cached.scores)
        as_of = max([base] + [base + timedelta(minutes=m * 60) for _, _, m, _ in events])
        again = lock_lead(lead.id)
        recompute(again, as_of=as_of)
        assert again.scores == pytest.approx(cached_scores, rel=1e-6, abs=1e-6)
        session.rollback()


def test_rescore_matches_incremental_and_follows_a_model_change(app, tmp_path):
    with app.app_context():
        for i in range(7):
            lead = factories.lead(f"r{i}@acme.fr")
            play(lead.id, factories.WORKED_EXAMPLE[: i])
        before = {l.id: l.score for l in session.execute(select(Lead)).scalars()}
        counts = rescore_all(batch_size=3)
        assert counts["leads"] == 7
        after = {l.id: l.score for l in session.execute(select(Lead)).scalars()}
        assert after == pytest.approx(before, abs=1e-6)


def test_decay_cools_scores_between_events_without_history(app):
    """Nobody engages for 90 days (the demo MQL score's half-life): the
    cached score and temperature come down to what a recomputation from the
    log gives, without an event, a history row or a demotion."""
    from app.scoring import decay_scores
    with app.app_context():
        factories.user()
        hot = factories.lead("hot@acme.fr")
        play(hot.id, factories.WORKED_EXAMPLE)  # 51: an MQL, warm
        cold = factories.lead("cold@acme.fr")
        play(cold.id, factories.WORKED_EXAMPLE[:3])
        history = session.execute(select(func.count()).select_from(ScoreHistory)).scalar()
        later = utcnow() + timedelta(days=90)
        assert decay_scores(as_of=later, batch_size=1) == 2
        for lead_id in (hot.id, cold.id):
            lead = session.get(Lead, lead_id, populate_existing=True)
            expected = recompute(lead, as_of=later)  # from the log, not written
            session.rollback()
            lead = session.get(Lead, lead_id, populate_existing=True)
            assert lead.score == pytest.approx(expected, abs=1e-3) and lead.score < 30
        hot = session.get(Lead, hot.id)
        assert hot.stage == "mql" and hot.temperature is None  # cooled, never demoted
        assert session.execute(select(func.count()).select_from(ScoreHistory)).scalar() == history
        assert decay_scores(as_of=later) == 0  # nothing left to cool at that moment
        # The next event starts from the decayed value, as a recomputation would.
        play(cold.id, [("webinar_registered", {"webinar": "another"})])
        cold = session.get(Lead, cold.id, populate_existing=True)
        assert cold.score == pytest.approx(recompute(cold), abs=1e-3)


def test_decay_skips_a_lead_being_scored(app):
    """A lead whose row another transaction holds (an event being scored)
    is left to that event; the others are cooled."""
    from sqlalchemy.orm import Session as OrmSession
    from app.scoring import decay_scores
    with app.app_context():
        busy, idle = factories.lead("busy@acme.fr"), factories.lead("idle@acme.fr")
        play(busy.id, factories.WORKED_EXAMPLE[:4])
        play(idle.id, factories.WORKED_EXAMPLE[:4])
        with OrmSession(session.get_bind()) as other, other.begin():
            other.execute(select(Lead).where(Lead.id == busy.id).with_for_update())
            assert decay_scores(as_of=utcnow() + timedelta(days=30)) == 1
        scores = dict(session.execute(select(Lead.email, Lead.score)).all())
        assert scores["idle@acme.fr"] < scores["busy@acme.fr"]
