"""The overview in a real browser: a marketer reads the funnel, switches the
period, downloads a CSV; the page passes axe in English and in French."""
import csv
from datetime import date

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.a11y import assert_accessible
from tests.browser import TIMEOUT_MS, login
from tests.test_reports import FUNNEL, build_history

pytestmark = pytest.mark.browser


def new_tab(browser, locale: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    return context, tab


@pytest.fixture
def history(leadflow):
    """Mia the marketer, and the eleven leads of Q1 2024 of test_reports."""
    with leadflow.app.app_context():
        factories.user("mia@leadflow.example", "Mia", role="marketer")
        build_history()
    return leadflow


def funnel_cell(page, stage_label: str, column: int):
    row = page.locator("#funnel-table tbody tr").filter(has=page.get_by_role("rowheader", name=stage_label, exact=True))
    return row.locator("td").nth(column)


def test_marketer_reads_switches_and_downloads(browser, history, tmp_path):
    context, page = new_tab(browser, "en-US")
    try:
        login(page, history.url, "mia@leadflow.example")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        expect(page.get_by_role("img", name="Funnel: leads that reached each stage in the period")).to_be_visible()
        # Today's default period (the last 90 days) holds none of 2024's moves; "Now" does.
        expect(funnel_cell(page, "SQL", 1)).to_have_text("5")

        page.get_by_label("From").fill("2024-01-01")
        page.get_by_label("To").fill("2024-03-31")
        page.get_by_role("button", name="Show this period").click()
        expect(page.locator("#period-shown")).to_have_text("January 1, 2024 – March 31, 2024")
        expect(funnel_cell(page, "MQL", 0)).to_have_text("9")
        expect(funnel_cell(page, "SQL", 0)).to_have_text("4")
        expect(page.locator("#rate-within strong")).to_have_text("44.4%")
        expect(page.locator("#cohort-table tbody tr").first.locator("td")).to_have_text(
            ["4", "25%", "50%", "50%", "75%", "75%", "75%", "75%"])
        assert_accessible(page)

        with page.expect_download() as download:
            page.get_by_role("link", name="Download the funnel (CSV)").click()
        saved = tmp_path / "funnel.csv"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "leadflow-funnel-2024-01-01-2024-03-31.csv"
        with saved.open(newline="", encoding="utf-8") as handle:
            assert [(r["stage"], int(r["in_period"] or -1), int(r["current"])) for r in csv.DictReader(handle)] \
                == [(s, -1 if n is None else n, c) for s, n, c in FUNNEL]

        page.get_by_role("navigation", name="Preset periods").get_by_role("link", name="This year").click()
        year = date.today().year
        expect(page.locator("#period-shown")).to_contain_text(f"January 1, {year}")
        expect(page.get_by_role("link", name="This year")).to_have_attribute("aria-current", "true")
        assert not page.js_errors
    finally:
        context.close()


def test_overview_in_french_is_accessible(browser, history):
    context, page = new_tab(browser, "fr-FR")
    try:
        # Log in through the English form (?lang=en), whatever the translations say by then.
        page.goto(f"{history.url}/login?lang=en")
        page.get_by_label("Email").fill("mia@leadflow.example")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        page.goto(f"{history.url}/overview?from=2024-01-01&to=2024-03-31")
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.locator("h1")).to_be_visible()
        expect(page.locator("#rate-within strong")).to_have_text("44,4\u00a0%")  # French numbers
        expect(page.locator("#cohort-table tbody th").first).to_have_text("janv. 2024")
        assert_accessible(page)
        assert not page.js_errors
    finally:
        context.close()
