"""A salesperson works an MQL in a real browser: inbox, lead card, accept,
BANT; each page passes axe-core in English and in French."""

import pytest
from sqlalchemy import select

from app import tasks
from app.db import session
from app.models import Lead, StageChange
from app.scoring import lock_lead, track
from tests import factories
from tests.a11y import assert_accessible
from tests.browser import login, new_tab

pytestmark = pytest.mark.browser


@pytest.fixture
def mql(leadflow):
    """Claire owns an MQL that became one through the worked example."""
    with leadflow.app.app_context():
        claire = factories.user("claire.sales@leadflow.example", "Claire Dupont", role="sales")
        lead = factories.lead("lea@acme.fr", name="Léa <script>alert(1)</script> Martin", company="Acme",
                              country="FR", job_title="Directrice marketing")
        for kind, properties in factories.WORKED_EXAMPLE:
            track(lock_lead(lead.id), kind, properties=properties)
            tasks.commit()
        lead = session.get(Lead, lead.id, populate_existing=True)
        assert (lead.stage, lead.owner_id) == ("mql", claire.id)
        return lead.id


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_salesperson_accepts_and_qualifies_an_mql(browser, leadflow, mql, locale):
    context, tab = new_tab(browser, locale)
    try:
        login(tab, leadflow.url, "claire.sales@leadflow.example")
        tab.goto(f"{leadflow.url}/sales/inbox")
        assert tab.locator("html").get_attribute("lang") == locale[:2]
        assert tab.get_by_role("link", name="Léa <script>alert(1)</script> Martin").count() == 1  # escaped
        assert_accessible(tab)
        tab.get_by_role("link", name="Léa <script>alert(1)</script> Martin").click()
        tab.wait_for_load_state()
        assert tab.url.endswith(f"/sales/leads/{mql}")
        assert_accessible(tab)
        tab.locator(f"form[action='/sales/leads/{mql}/accept'] button").click()
        tab.wait_for_load_state()
        bant = tab.locator(f"form[action='/sales/leads/{mql}/qualify']")
        for name in ("budget", "need"):
            bant.locator(f"input[name='{name}'][value='yes']").check()
        bant.locator("input[name='authority'][value='no']").check()
        bant.locator("select[name='timeline']").select_option("3")
        bant.locator("button").click()
        tab.wait_for_load_state()
        assert_accessible(tab)
        assert not tab.js_errors
    finally:
        context.close()
    with leadflow.app.app_context():
        moves = session.execute(select(StageChange.to_stage, StageChange.actor)
                                .where(StageChange.lead_id == mql).order_by(StageChange.id)).all()
        assert [stage for stage, _ in moves][-3:] == ["mql", "sal", "sql"]
        assert moves[-1].actor.startswith("user:")
