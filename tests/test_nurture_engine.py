"""The nurture engine through the database, time driven by `now`."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.db import session
from app.models import Enrollment, Lead, Mail
from app.nurture.engine import run_due
from app.nurture.stats import campaign_totals, step_stats
from tests.capture_data import english_person, person, post_json
from tests.helpers import next_monday_10_paris

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "Chrome/126.0 Safari/537.36"}
MONDAY_10_PARIS = next_monday_10_paris()


def mails(**where):
    query = select(Mail).order_by(Mail.id)
    for key, value in where.items():
        query = query.where(getattr(Mail, key) == value)
    return session.execute(query).scalars().all()


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


@pytest.fixture
def lead_in_campaign(app, client):
    assert post_json(client, "contact", person(email="lea@acme.fr", name="Léa Martin")).status_code == 201
    with app.app_context():
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert (enrollment.campaign, enrollment.step_key, enrollment.status) == ("nurture-fr", "bienvenue", "active")
    return enrollment


def test_first_email_waits_for_the_send_window_then_goes_once(app, lead_in_campaign):
    with app.app_context():
        saturday = MONDAY_10_PARIS - timedelta(days=2)
        assert run_due(saturday) == 0
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert enrollment.due_at.astimezone(timezone.utc) == MONDAY_10_PARIS - timedelta(hours=1)  # opens at 09:00
        assert run_due(MONDAY_10_PARIS) == 1
        assert run_due(MONDAY_10_PARIS) == 0  # at most once
        (mail,) = mails()
        assert mail.status == "outbox" and mail.step_key == "bienvenue" and mail.recipient == "lea@acme.fr"
        assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.headers["List-Unsubscribe"].startswith("<http://127.0.0.1:5000/u/")
        assert "Bonjour Léa," in mail.text and "Bonjour Léa," in mail.html
        assert "12 rue de la Paix" in mail.html and "/t/o/" in mail.html
        assert "https://www.leadflow.example/blog" not in mail.html  # links go through the click redirect
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert (enrollment.step_key, enrollment.waiting) == ("pause-1", True)


def test_engaged_path_opened_and_clicked(app, client, lead_in_campaign):
    # The person opens a while after delivery (a hit seconds after the send is
    # a link scanner's, see the next test); the test clock can't wait, so:
    app.config["TRACK_MACHINE_SECONDS"] = 0
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1
        (welcome,) = mails()
        click = re.search(r'href="(http[^"]+/t/c/[^"]+)"', welcome.html).group(1)
        pixel = re.search(r'src="(http[^"]+/t/o/[^"]+)"', welcome.html).group(1)
    assert client.get(path_of(pixel), headers=BROWSER).status_code == 200
    response = client.get(path_of(click.replace("&amp;", "&")), headers=BROWSER)
    assert response.status_code == 302 and response.location.startswith("https://www.leadflow.example/blog")
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=2)) == 0  # still waiting
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert [m.step_key for m in mails()] == ["bienvenue", "cas-client"]  # clicked: the case study
        lead = session.execute(select(Lead)).scalar_one()
        assert lead.score > 25  # form + fit + open + click
        totals = campaign_totals("nurture-fr")
        assert (totals["sent"], totals["opened"], totals["clicked"]) == (2, 1, 1)
        assert step_stats("nurture-fr")["bienvenue"]["clicked"] == 1


def test_no_engagement_takes_the_short_path(app, lead_in_campaign):
    with app.app_context():
        run_due(MONDAY_10_PARIS)
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert [m.step_key for m in mails()] == ["bienvenue", "relance-courte"]


def test_unsubscribe_by_one_post_stops_everything(app, client, lead_in_campaign):
    with app.app_context():
        run_due(MONDAY_10_PARIS)
        (mail,) = mails()
        url = mail.headers["List-Unsubscribe"].strip("<>")
    response = client.post(path_of(url), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with app.app_context():
        lead = session.execute(select(Lead)).scalar_one()
        assert lead.unsubscribed_at is not None
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert (enrollment.status, enrollment.exit_reason) == ("exited", "unsubscribed")
        assert run_due(MONDAY_10_PARIS + timedelta(days=30)) == 0
        assert campaign_totals("nurture-fr")["unsubscribed"] == 1


def test_forged_unsubscribe_token_is_refused(app, client, lead_in_campaign):
    assert client.post("/u/forged.token.here", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    with app.app_context():
        assert session.execute(select(Lead)).scalar_one().unsubscribed_at is None


def test_no_consent_means_no_enrollment(app, client):
    response = post_json(client, "contact-en", english_person(consent=False))
    assert response.status_code == 201
    with app.app_context():
        assert session.execute(select(func.count()).select_from(Enrollment)).scalar() == 0


def test_becoming_mql_ends_the_enrollment(app, lead_in_campaign):
    from app import tasks
    from app.scoring import lock_lead, track
    with app.app_context():
        lead = session.execute(select(Lead)).scalar_one()
        track(lock_lead(lead.id), "demo_requested", properties={})
        tasks.commit()
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert enrollment.status == "exited" and enrollment.exit_reason.startswith("goal:")
        assert run_due(MONDAY_10_PARIS) == 0


def test_frequency_cap_postpones(app, lead_in_campaign):
    with app.app_context():
        app.config["NURTURE_CAP_EMAILS"] = 1
        run_due(MONDAY_10_PARIS)
        run_due(MONDAY_10_PARIS + timedelta(days=3))
        assert len(mails()) == 1  # cap of 1 a week
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert enrollment.due_at.astimezone(timezone.utc) > MONDAY_10_PARIS + timedelta(days=6)
        assert run_due(MONDAY_10_PARIS + timedelta(days=7, minutes=1)) == 1


def test_a_scanner_clicking_at_delivery_does_not_count_as_engagement(app, client, lead_in_campaign):
    with app.app_context():
        run_due(MONDAY_10_PARIS)
        (welcome,) = mails()
        click = re.search(r'href="(http[^"]+/t/c/[^"]+)"', welcome.html).group(1)
    assert client.get(path_of(click.replace("&amp;", "&"))).status_code == 302  # within seconds of the send
    with app.app_context():
        mail = mails()[0]
        assert mail.clicked_at is None and mail.machine_opened_at is not None
        run_due(MONDAY_10_PARIS + timedelta(days=3))
        assert [m.step_key for m in mails()] == ["bienvenue", "relance-courte"]
        assert campaign_totals("nurture-fr")["machine_opened"] == 1
