"""The leads workspace in a real browser: a marketer filters, opens a lead
and adds a note; a salesperson sees only their own leads; every page passes
axe in English and in French."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session
from app.models import Note, User
from app.scoring import lock_lead, track
from tests import factories
from tests.a11y import assert_accessible, assert_page_in
from tests.browser import *  # noqa: F403 (fixtures: browser, page, leadflow)
from tests.browser import login, new_tab

pytestmark = pytest.mark.browser


@pytest.fixture
def team(leadflow):
    """A marketer, an admin, two salespeople and a few leads with a history."""
    with leadflow.app.app_context():
        factories.user("mia@leadflow.example", "Mia", role="marketer")
        factories.user("root@leadflow.example", "Root", role="admin")
        claire = factories.user("claire@leadflow.example", "Claire Dupont", role="sales")
        sam = factories.user("sam@leadflow.example", "Sam Martin", role="sales")
        lea = factories.lead("lea@acme.fr", name="Léa Martin", company="Acme <b>SAS</b>", segment="pme",
                             first_form="contact", owner_id=claire.id, consent=True, language="fr")
        track(lock_lead(lea.id), "asset_downloaded", key="a1", properties={"asset": "guide"})
        factories.lead("bob@globex.com", name="Bob Globex", company="Globex", owner_id=sam.id)
        factories.lead("zoe@initech.fr", name="Zoé Initech", company="Initech")
        session.commit()
        return {"lea": lea.id}


def test_marketer_filters_opens_and_notes(browser, leadflow, team):
    context, page = new_tab(browser, "en-US")
    try:
        login(page, leadflow.url, "mia@leadflow.example")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Leads").click()
        rows = page.locator("table.leads tbody tr")
        expect(rows).to_have_count(3)
        page.locator("#q").fill("ACME")
        page.locator("#stage").select_option("lead")
        page.get_by_role("button", name="Show leads").click()
        expect(rows).to_have_count(1)
        expect(page.locator("#q")).to_have_value("ACME")  # the filters stay filled in
        page.get_by_role("link", name="Léa Martin").click()
        expect(page.get_by_role("heading", name="Léa Martin", level=1)).to_be_visible()
        expect(page.get_by_text("Acme <b>SAS</b>")).to_be_visible()  # shown as text, not markup
        expect(page.locator(".timeline")).to_contain_text("asset downloaded")
        page.get_by_label("Add a note").fill("Met her at the trade fair: call in May.")
        page.get_by_role("button", name="Save note").click()
        expect(page.get_by_role("status").filter(has_text="Note added.")).to_be_visible()
        expect(page.locator(".timeline-note").first).to_contain_text("Met her at the trade fair")
        with leadflow.app.app_context():
            assert session.execute(select(Note.body)).scalar_one() == "Met her at the trade fair: call in May."
        assert page.js_errors == []
    finally:
        context.close()


def test_salesperson_sees_only_their_leads(browser, leadflow, team, page):
    login(page, leadflow.url, "claire@leadflow.example")
    page.goto(leadflow.url + "/leads")
    rows = page.locator("table.leads tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Léa Martin")
    expect(page.locator("#owner")).to_have_count(0)  # no owner filter: it is always them
    response = page.goto(leadflow.url + f"/leads/{team['lea'] + 1}")
    assert response.status == 403


@pytest.mark.parametrize("locale, lang", [("en-US", "en"), ("fr-FR", "fr")])
def test_leads_pages_are_accessible(browser, leadflow, team, locale, lang, tmp_path):
    context, page = new_tab(browser, locale)
    try:
        login(page, leadflow.url, "root@leadflow.example")

        for path in ("/leads", "/leads?q=zzz", "/leads?score_min=oops", f"/leads/{team['lea']}", "/leads/import"):
            assert_page_in(page, leadflow.url + path, lang)
        # the import report, after an upload
        page.goto(leadflow.url + "/leads/import")
        page.locator("#file").set_input_files(files=[{
            "name": "salon.csv", "mimeType": "text/csv",
            "buffer": "courriel;nom;société\nnew@client.fr;Nina;Client\nspy@hubspot.com;Spy;HubSpot\n".encode()}])
        page.locator("form.stack button[type=submit]").click()
        expect(page.locator("table.import-report tbody tr")).to_have_count(2)
        assert_accessible(page)
        assert page.js_errors == []
    finally:
        context.close()


def test_import_page_follows_a_running_import(browser, leadflow, team):
    """With a broker the upload only queues the import: its page shows the
    progress (axe-clean), polls, and shows the report once a worker is done."""
    from app.leads_ui import importer
    with leadflow.app.app_context():
        mia = session.execute(select(User.id).where(User.email == "mia@leadflow.example")).scalar_one()
        rows = "email,name\n" + "".join(f"q{i}@queue{i}.fr,Q {i}\n" for i in range(5))
        job = importer.queue_import(rows.encode(), "queued.csv", None, mia)
        session.info.pop("leadflow.tasks", None)  # the worker is this test, below
        session.commit()
        job_id = job.id
    context, page = new_tab(browser, "en-US")
    try:
        login(page, leadflow.url, "mia@leadflow.example")
        page.goto(f"{leadflow.url}/leads/import/{job_id}")
        expect(page.get_by_role("status")).to_have_text("0 of 5 rows imported.")
        assert_accessible(page)
        with leadflow.app.app_context():
            assert importer.run_queued_import(job_id) == "done"
        expect(page.locator("table.import-report tbody tr")).to_have_count(5)
        expect(page.get_by_role("status").first).to_contain_text("5 rows: 5 created")
        assert page.js_errors == []
    finally:
        context.close()
