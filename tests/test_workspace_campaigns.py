"""The campaigns pages: status, figures, errors, the flow, pause / resume,
enrolling existing leads; through HTTP with CSRF enforced, on PostgreSQL."""
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.config import PROJECT_ROOT
from app.db import session
from app.models import CampaignState, Enrollment, Lead, Mail, StageChange, utcnow
from app.nurture.campaigns import load_campaign
from app.nurture.engine import run_due
from app.workspace.flow import cards
from tests import factories
from tests.capture_data import person, post_json
from tests.test_auth import login, make_user, token
from tests.helpers import next_monday_10_paris

MONDAY_10_PARIS = next_monday_10_paris()

BROKEN = """\
name: Broken
language: en
sender: "x <x@leadflow.example>"
postal_address: "12 rue de la Paix, Paris"
steps:
  - key: first
    send: {template: nurture/en/welcome, subject: Hi}
  - key: pick
    branch:
      - {when: {opened: first}, goto: nowhere}
      - {goto: first}
"""


@pytest.fixture
def campaigns_dir(tmp_path):
    target = tmp_path / "campaigns"
    shutil.copytree(PROJECT_ROOT / "campaigns", target)
    (target / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return target


@pytest.fixture
def app(app_factory, pg_url, campaigns_dir):
    return app_factory(pg_url, CAMPAIGNS_DIR=str(campaigns_dir))


@pytest.fixture
def people(app):
    with app.app_context():
        return {"mia": make_user("mia@leadflow.example", "marketer", "Mia"),
                "claire": make_user("claire@leadflow.example", "sales", "Claire")}


@pytest.fixture
def mia(app, people):
    client = app.test_client()
    assert login(client, "mia@leadflow.example").status_code == 302
    return client


def step_block(page: str, key: str) -> str:
    start = page.index(f'id="step-{key}"')
    return page[start:page.index("</li>\n", start)]


def post(client, path, **data):
    data["csrf_token"] = token(client, "/campaigns")
    return client.post(path, data=data, follow_redirects=True)


def test_index_lists_campaigns_with_status_figures_and_errors(app, client, mia):
    assert post_json(client, "contact", person()).status_code == 201  # enrolled in nurture-fr
    with app.app_context():
        session.add(CampaignState(slug="nurture-en", paused=True, changed_at=utcnow()))
        session.commit()
    page = mia.get("/campaigns").get_data(as_text=True)
    fr = page[page.index('id="campaign-nurture-fr"'):page.index("</tr>", page.index('id="campaign-nurture-fr"'))]
    en = page[page.index('id="campaign-nurture-en"'):page.index("</tr>", page.index('id="campaign-nurture-en"'))]
    assert "running" in fr and "paused" in en
    assert re.search(r'data-label="Enrolled">1<', fr) and re.search(r'data-label="Active">1<', fr)
    assert 'role="alert"' in page
    assert "campaigns/broken.yaml:10: steps[1].branch[0].goto: step &#39;pick&#39; goes to unknown step " \
           "&#39;nowhere&#39;" in page


def test_flow_draws_every_step_and_branch_target(app, mia):
    page = mia.get("/campaigns/nurture-en").get_data(as_text=True)
    campaign = load_campaign(PROJECT_ROOT / "campaigns" / "nurture-en.yaml")
    keys = [s.key for s in campaign.definition.steps]
    assert re.findall(r'data-step="([^"]+)"', page) == keys
    for step in campaign.definition.steps:
        for branch in step.branch or ():
            assert f'data-goto="{branch.goto}"' in step_block(page, step.key)
            assert f'href="#step-{branch.goto}"' in step_block(page, step.key)
    engaged = step_block(page, "engaged")
    assert "If clicked in “welcome” → " in engaged and "otherwise → " in engaged
    assert "3 days" in step_block(page, "wait-1") and "10 days" in step_block(page, "wait-4")
    welcome = step_block(page, "welcome")
    assert "Follow-ups that happen by themselves" in welcome and "nurture/en/welcome" in welcome
    assert 'data-next="wait-1"' in welcome
    assert "The enrollment ends here." in step_block(page, "done")
    assert mia.get("/campaigns/nope").status_code == 404


def test_flow_cards_follow_next_and_mark_jumps(app):
    campaign = load_campaign(PROJECT_ROOT / "campaigns" / "nurture-en.yaml")
    with app.test_request_context():
        by_key = {c.key: c for c in cards(campaign)}
    assert by_key["demo"].next == "done" and not by_key["demo"].jumps
    assert by_key["wait-4"].next == "second-chance"
    assert by_key["second-chance"].branches[-1] == ("otherwise", "done")
    assert by_key["nudge"].next == "wait-4"


def test_per_step_figures_and_conversions(app, client, mia):
    assert post_json(client, "contact", person(email="lea@acme.fr")).status_code == 201
    page = mia.get("/campaigns/nurture-fr").get_data(as_text=True)
    assert "At this step now: <strong>1</strong>" in step_block(page, "bienvenue")
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1
        mail = session.execute(select(Mail)).scalar_one()
        mail.opened_at = mail.clicked_at = utcnow()
        lead = session.execute(select(Lead)).scalar_one()
        session.add(StageChange(lead_id=lead.id, from_stage="lead", to_stage="mql", actor="test",
                                at=utcnow() + timedelta(minutes=1)))
        session.commit()
    page = mia.get("/campaigns/nurture-fr").get_data(as_text=True)
    welcome = step_block(page, "bienvenue")
    assert "At this step now: <strong>0</strong>" in welcome
    assert "sent <strong>1</strong> · opened <strong>1</strong>" in welcome
    assert "clicked <strong>1</strong> · unsubscribed <strong>0</strong>" in welcome
    assert "At this step now: <strong>1</strong>" in step_block(page, "pause-1")
    assert re.search(r"Converted to MQL</dt><dd>1<", page)


def test_pause_stops_the_engine_for_that_campaign_and_resume_restarts_it(app, client, mia, people):
    assert post_json(client, "contact", person(email="lea@acme.fr")).status_code == 201
    page = post(mia, "/campaigns/nurture-fr/pause").get_data(as_text=True)
    assert "nurture-fr paused" in page and "Resume the campaign" in page
    with app.app_context():
        state = session.get(CampaignState, "nurture-fr")
        assert state.paused and state.changed_by == f"user:{people['mia']}"
        assert run_due(MONDAY_10_PARIS) == 0
        assert session.execute(select(Mail)).first() is None
    page = post(mia, "/campaigns/nurture-fr/resume").get_data(as_text=True)
    assert "nurture-fr resumed" in page and "Pause the campaign" in page
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(hours=1)) == 1


def test_enroll_existing_matching_leads(app, mia):
    with app.app_context():
        factories.lead("lea@acme.fr", language="fr", consent=True)
        factories.lead("jo@acme.com", language="en", consent=True)
        factories.lead("no@acme.fr", language="fr", consent=False)  # consent required
    page = post(mia, "/campaigns/nurture-fr/enroll").get_data(as_text=True)
    assert "1 lead enrolled in nurture-fr." in page
    with app.app_context():
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert (enrollment.campaign, enrollment.trigger) == ("nurture-fr", "manual")
    assert "0 leads enrolled in nurture-fr." in post(mia, "/campaigns/nurture-fr/enroll").get_data(as_text=True)


def test_roles_and_csrf(app, client, mia, people):
    sales = app.test_client()
    assert login(sales, "claire@leadflow.example").status_code == 302
    for path in ("/campaigns", "/campaigns/nurture-fr"):
        assert sales.get(path).status_code == 403
    sales_token = token(sales, "/sales/inbox")
    for action in ("pause", "resume", "enroll"):
        assert sales.post(f"/campaigns/nurture-fr/{action}", data={"csrf_token": sales_token}).status_code == 403
        assert mia.post(f"/campaigns/nurture-fr/{action}").status_code == 400  # no CSRF token
    with app.app_context():
        assert session.get(CampaignState, "nurture-fr") is None
    assert client.get("/campaigns").status_code == 302


def test_arrows_join_only_steps_that_flow_into_each_other(app):
    campaign = load_campaign(PROJECT_ROOT / "campaigns" / "nurture-en.yaml")
    with app.test_request_context():
        joined = {c.key for c in cards(campaign) if c.joined}
    assert "wait-1" in joined and "engaged" in joined
    assert "guide" not in joined  # after a branch: reached only by its goto
    assert "nudge" not in joined  # after an exit


JUMPY = """\
name: Jumpy
language: en
sender: "x <x@leadflow.example>"
postal_address: "12 rue de la Paix, Paris"
steps:
  - key: hello
    send: {template: nurture/en/welcome, subject: Hello}
    next: later
  - key: skipped
    send: {template: nurture/en/nudge, subject: Never after hello}
  - key: later
    wait: {days: 1, until: {days: [tue, thu], at: "10:00"}}
  - key: check
    branch:
      - {when: {score_at_least: 40}, goto: skipped}
      - {when: {attribute: {segment: [smb, midmarket]}}, goto: skipped}
      - {goto: hello}
"""


def test_flow_of_explicit_next_until_waits_and_conditions(app, tmp_path):
    path = tmp_path / "jumpy.yaml"
    path.write_text(JUMPY, encoding="utf-8")
    with app.test_request_context():
        by_key = {c.key: c for c in cards(load_campaign(path))}
    assert (by_key["hello"].next, by_key["hello"].jumps) == ("later", True)
    assert not by_key["skipped"].joined  # hello jumps over it: no arrow from hello
    assert by_key["later"].joined and by_key["check"].joined
    assert by_key["later"].wait == "1 day, then until Tue, Thu at 10:00"
    assert by_key["check"].branches == [("score ≥ 40", "skipped"), ("segment is smb / midmarket", "skipped"),
                                        ("otherwise", "hello")]
