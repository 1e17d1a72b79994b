"""The workspace in a real browser: a marketer approves a review item,
pauses a campaign and copies an embed code; every page passes axe in
English and in French."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session
from app.models import CampaignState, Submission
from tests import factories
from tests.a11y import assert_accessible, assert_page_in
from tests.browser import *  # noqa: F403 (fixtures: browser, page, leadflow)
from tests.browser import login, new_tab
from tests.capture_data import person, post_json

pytestmark = pytest.mark.browser


def review_item(leadflow) -> int:
    assert post_json(leadflow.app.test_client(), "contact",
                     person(intent="other", email="lea@boulangeries.fr")).status_code == 201
    with leadflow.app.app_context():
        return session.execute(select(Submission.id)).scalar_one()


def test_marketer_approves_pauses_and_copies(browser, leadflow):
    with leadflow.app.app_context():
        factories.user("mia@leadflow.example", "Mia", role="marketer")
    submission_id = review_item(leadflow)
    context, page = new_tab(browser, "en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=leadflow.url)
    try:
        login(page, leadflow.url, "mia@leadflow.example")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Review").click()
        expect(page.get_by_role("heading", name="Review", level=1)).to_be_visible()
        page.get_by_role("button", name=f"Approve #{submission_id}").click()
        expect(page.get_by_role("status").filter(has_text="1 submission approved.")).to_be_visible()
        expect(page.locator(f"#submission-{submission_id}")).to_have_count(0)
        with leadflow.app.app_context():
            assert session.get(Submission, submission_id).verdict == "accepted"

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
        page.get_by_role("link", name="Nurture nouveaux leads (FR)").click()
        page.get_by_role("button", name="Pause the campaign").click()
        expect(page.get_by_text("nurture-fr paused: nothing is sent until it is resumed.")).to_be_visible()
        expect(page.get_by_role("button", name="Resume the campaign")).to_be_visible()
        with leadflow.app.app_context():
            assert session.get(CampaignState, "nurture-fr").paused

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Forms").click()
        button = page.locator("#form-contact").get_by_role("button", name="Copy Embed with a script")
        button.focus()
        page.keyboard.press("Enter")  # keyboard, not only the mouse
        expect(page.locator("#script-contact-status")).to_have_text("Copied to the clipboard.")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied == page.locator("#script-contact").input_value()
        assert f'<script src="{leadflow.url}/f/contact/embed.js" async></script>' in copied
        assert page.js_errors == []
    finally:
        context.close()


@pytest.mark.parametrize("locale, lang", [("en-US", "en"), ("fr-FR", "fr")])
def test_every_workspace_page_is_accessible(browser, leadflow, locale, lang):
    with leadflow.app.app_context():
        factories.user("root@leadflow.example", "Root", role="admin")
    review_item(leadflow)
    context, page = new_tab(browser, locale)
    try:
        login(page, leadflow.url, "root@leadflow.example")

        for path in ("/review", "/review?spam=1", "/review/rules", "/campaigns", "/campaigns/nurture-en",
                     "/forms", "/admin"):
            assert_page_in(page, leadflow.url + path, lang)
        # The pages as they are after an action: a preview's result, a secret shown once.
        page.goto(leadflow.url + "/review/rules")
        page.locator("#rules").fill("competitor_domains: [boulangeries.fr]\n")
        page.locator("form.stack button[type=submit]").click()
        expect(page.locator("#preview-result")).to_be_visible()
        assert_accessible(page)
        page.locator("#rules").fill("competitor_domains: [https://x]\n")
        page.locator("form.stack button[type=submit]").click()
        expect(page.locator("#rules-error")).to_contain_text(re.compile(r"forms/rules\.yaml:1"))
        assert_accessible(page)
        page.goto(leadflow.url + "/admin")
        page.locator("#token-name").fill("crm")
        page.locator("#token-name").press("Enter")
        expect(page.locator("#new-token-value")).to_be_visible()
        assert_accessible(page)
        assert page.js_errors == []
    finally:
        context.close()
