"""The sales inbox and lead page, driven through HTTP with CSRF enforced, on
PostgreSQL."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.db import session
from app.models import Lead, StageChange, utcnow
from app.sales import views
from tests.test_auth import login, make_user, token

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def people(app):
    """Two salespeople, a sales manager, a marketer and an admin: their ids."""
    with app.app_context():
        return {"claire": make_user("claire@leadflow.example", "sales", "Claire Dupont"),
                "sam": make_user("sam@leadflow.example", "sales", "Sam Martin"),
                "boss": make_user("boss@leadflow.example", "sales", "Boss", manager=True),
                "mia": make_user("mia@leadflow.example", "marketer", "Mia"),
                "root": make_user("root@leadflow.example", "admin", "Root")}


def as_user(app, name):
    client = app.test_client()
    assert login(client, f"{name}@leadflow.example").status_code == 302
    return client


def mql(app, owner_id, email="lea@acme.fr", waited=timedelta(hours=1), stage="mql", **attributes):
    values = {"name": "Léa Martin", "company": "Acme", "score": 60.0, **attributes}
    with app.app_context():
        lead = Lead(email=email, stage=stage, mql_at=utcnow() - waited, owner_id=owner_id, **values)
        session.add(lead)
        session.commit()
        return lead.id


def stored(app, lead_id) -> Lead:
    with app.app_context():
        return session.get(Lead, lead_id, populate_existing=True)


def changes(app, lead_id) -> list[StageChange]:
    with app.app_context():
        return session.execute(select(StageChange).where(StageChange.lead_id == lead_id)
                               .order_by(StageChange.id)).scalars().all()


def act(client, lead_id, action, **data):
    """POST an action with the token from the lead page; follow to the page."""
    data["csrf_token"] = token(client, f"/sales/leads/{lead_id}")
    return client.post(f"/sales/leads/{lead_id}/{action}", data=data, follow_redirects=True)


# --- inbox ------------------------------------------------------------------

def test_mql_shows_in_its_owners_inbox_only(app, people):
    lead_id = mql(app, people["claire"], waited=timedelta(hours=3, minutes=12, seconds=20),
                  company="Acme SAS", score=80.0)
    mql(app, people["claire"], "old@acme.fr", waited=timedelta(days=2), name="Oldest One")
    mql(app, people["sam"], "sam-lead@beta.fr", name="Someone For Sam")
    page = as_user(app, "claire").get("/sales/inbox").get_data(as_text=True)
    assert f'href="/sales/leads/{lead_id}"' in page and "Acme SAS" in page
    assert "3 h 12 min" in page and "hot" in page and "email" in page and "80" in page
    assert page.index("Oldest One") < page.index("Léa Martin")  # oldest MQL first
    assert "Someone For Sam" not in page
    other = as_user(app, "sam").get("/sales/inbox").get_data(as_text=True)
    assert "Someone For Sam" in other and "Léa Martin" not in other


def test_manager_and_admin_see_every_mql(app, people):
    mql(app, people["claire"])
    mql(app, people["sam"], "sam-lead@beta.fr", name="Someone For Sam")
    for who in ("boss", "root"):
        page = as_user(app, who).get("/sales/inbox").get_data(as_text=True)
        assert "Léa Martin" in page and "Someone For Sam" in page and "Claire Dupont" in page


def test_since_reads_like_a_person_would_say_it():
    now = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
    assert views.since(now - timedelta(hours=3, minutes=12, seconds=59), now) == "3 h 12 min"
    assert views.since(now - timedelta(minutes=5), now) == "5 min"
    assert views.since(now - timedelta(days=2, hours=4, minutes=30), now) == "2 d 4 h"
    assert views.since(datetime(2026, 1, 10, 11, 0), now) == "1 h 0 min"  # naive = UTC (SQLite)


# --- who may see and act ------------------------------------------------------

def test_other_salesperson_cannot_see_or_act(app, people):
    lead_id = mql(app, people["claire"])
    sam = as_user(app, "sam")
    assert sam.get(f"/sales/leads/{lead_id}").status_code == 403
    response = sam.post(f"/sales/leads/{lead_id}/accept", data={"csrf_token": token(sam, "/sales/inbox")})
    assert response.status_code == 403 and stored(app, lead_id).stage == "mql"


def test_marketer_reads_but_cannot_accept_or_reject(app, people):
    lead_id = mql(app, people["claire"])
    mia = as_user(app, "mia")
    page = mia.get(f"/sales/leads/{lead_id}").get_data(as_text=True)
    assert "Léa Martin" in page and "Read only" in page and "/accept" not in page
    csrf = token(mia, "/forms")
    assert mia.post(f"/sales/leads/{lead_id}/accept", data={"csrf_token": csrf}).status_code == 403
    assert mia.post(f"/sales/leads/{lead_id}/reject",
                    data={"csrf_token": csrf, "reason": "not for us"}).status_code == 403
    assert stored(app, lead_id).stage == "mql"


def test_actions_need_a_csrf_token(app, people):
    lead_id = mql(app, people["claire"])
    claire = as_user(app, "claire")
    claire.get(f"/sales/leads/{lead_id}")
    assert claire.post(f"/sales/leads/{lead_id}/accept").status_code == 400
    assert claire.post(f"/sales/leads/{lead_id}/reject", data={"reason": "no"}).status_code == 400
    assert stored(app, lead_id).stage == "mql" and len(changes(app, lead_id)) == 0


# --- accept, reject -------------------------------------------------------------

def test_accept_makes_a_sal_and_records_who(app, people):
    lead_id = mql(app, people["claire"])
    claire = as_user(app, "claire")
    page = act(claire, lead_id, "accept").get_data(as_text=True)
    assert "Accepted" in page
    assert stored(app, lead_id).stage == "sal"
    change = changes(app, lead_id)[-1]
    assert (change.from_stage, change.to_stage, change.actor) == ("mql", "sal", f"user:{people['claire']}")
    assert "mql → sal" in page and "Claire Dupont" in page  # the stage history
    inbox = claire.get("/sales/inbox").get_data(as_text=True)
    assert "No MQL is waiting" in inbox and "Léa Martin" in inbox  # now under "accepted"


def test_manager_accepts_an_unassigned_mql_and_owns_it(app, people):
    lead_id = mql(app, None)
    act(as_user(app, "boss"), lead_id, "accept")
    lead = stored(app, lead_id)
    assert lead.stage == "sal" and lead.owner_id == people["boss"]


@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_without_reason_is_refused(app, people, reason):
    lead_id = mql(app, people["claire"])
    claire = as_user(app, "claire")
    response = claire.post(f"/sales/leads/{lead_id}/reject",
                           data={"csrf_token": token(claire, f"/sales/leads/{lead_id}"), "reason": reason})
    assert response.status_code == 422
    assert "A rejection needs a reason." in response.get_data(as_text=True)
    assert stored(app, lead_id).stage == "mql" and changes(app, lead_id) == []


def test_reject_with_reason_recycles_the_lead(app, people):
    lead_id = mql(app, people["claire"])
    claire = as_user(app, "claire")
    page = act(claire, lead_id, "reject", reason="No budget before 2027").get_data(as_text=True)
    assert "back to nurture" in page
    lead = stored(app, lead_id)
    assert lead.stage == "recycled" and lead.stage_reason == "No budget before 2027"
    change = changes(app, lead_id)[-1]
    assert (change.to_stage, change.actor, change.reason) == ("recycled", f"user:{people['claire']}",
                                                              "No budget before 2027")


# --- BANT -----------------------------------------------------------------------

def bant(**answers):
    return {"budget": "yes", "budget_amount": "20 k€", "authority": "no", "need": "yes",
            "timeline": "3", "notes": "", **answers}


def test_bant_passing_makes_an_sql(app, people):
    lead_id = mql(app, people["claire"], stage="sal")
    page = act(as_user(app, "claire"), lead_id, "qualify", **bant()).get_data(as_text=True)
    assert "Qualified" in page and "budget, need, timeline" in page
    lead = stored(app, lead_id)
    assert lead.stage == "sql"
    assert lead.bant["timeline_months"] == 3 and lead.bant["budget"] is True and lead.bant["passes"] is True
    assert lead.bant["budget_amount"] == "20 k€"
    assert changes(app, lead_id)[-1].actor == f"user:{people['claire']}"


@pytest.mark.parametrize("answers, why", [
    ({"need": "no", "authority": "yes"}, "need must be met"),
    ({"timeline": "13"}, "2 of 4 criteria met (budget, need)"),
])
def test_bant_failing_keeps_the_stage_and_says_why(app, people, answers, why):
    lead_id = mql(app, people["claire"], stage="sal")
    page = act(as_user(app, "claire"), lead_id, "qualify", **bant(**answers)).get_data(as_text=True)
    assert "Not qualified, the lead stays sal" in page and why in page
    lead = stored(app, lead_id)
    assert lead.stage == "sal" and lead.bant["passes"] is False


def test_bant_form_needs_every_answer(app, people):
    lead_id = mql(app, people["claire"])
    claire = as_user(app, "claire")
    data = bant(timeline="", csrf_token=token(claire, f"/sales/leads/{lead_id}"))
    del data["need"]
    response = claire.post(f"/sales/leads/{lead_id}/qualify", data=data)
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and "Answer yes or no." in text and "Choose a timeline." in text
    assert stored(app, lead_id).stage == "mql" and stored(app, lead_id).bant is None


# --- later moves --------------------------------------------------------------

def test_sql_to_opportunity_to_customer(app, people):
    lead_id = mql(app, people["claire"], stage="sql")
    claire = as_user(app, "claire")
    act(claire, lead_id, "move", target="opportunity", reason="")
    assert stored(app, lead_id).stage == "opportunity"
    page = act(claire, lead_id, "move", target="customer", reason="Signed 3 years").get_data(as_text=True)
    assert "now customer" in page and stored(app, lead_id).stage == "customer"
    assert [c.to_stage for c in changes(app, lead_id)] == ["opportunity", "customer"]
    assert "Signed 3 years" in page


def test_lost_needs_a_reason(app, people):
    lead_id = mql(app, people["claire"], stage="opportunity")
    claire = as_user(app, "claire")
    response = claire.post(f"/sales/leads/{lead_id}/move", data={
        "csrf_token": token(claire, f"/sales/leads/{lead_id}"), "target": "lost", "reason": " "})
    assert response.status_code == 422 and "Say why the deal was lost." in response.get_data(as_text=True)
    assert stored(app, lead_id).stage == "opportunity"
    act(claire, lead_id, "move", target="lost", reason="Chose a competitor")
    lead = stored(app, lead_id)
    assert lead.stage == "lost" and lead.stage_reason == "Chose a competitor"


def test_move_the_page_does_not_offer_is_a_flash_error(app, people):
    lead_id = mql(app, people["claire"])
    response = act(as_user(app, "claire"), lead_id, "move", target="customer", reason="")
    assert response.status_code == 200
    assert "Nothing changed: a mql lead cannot be marked won." in response.get_data(as_text=True)
    assert stored(app, lead_id).stage == "mql"


def test_transition_error_is_a_flash_not_a_500(app, people, monkeypatch):
    # The page offers accept on an SAL by mistake: the lifecycle still refuses.
    monkeypatch.setitem(views.ACTIONS, "accept", ("mql", "sal"))
    lead_id = mql(app, people["claire"], stage="sal")
    response = act(as_user(app, "claire"), lead_id, "accept")
    assert response.status_code == 200
    assert "Nothing changed: a lead cannot move from sal to sal" in response.get_data(as_text=True)
    assert stored(app, lead_id).stage == "sal" and changes(app, lead_id) == []


def test_unknown_lead_is_404(app, people):
    claire = as_user(app, "claire")
    assert claire.get("/sales/leads/999999").status_code == 404
    assert claire.post("/sales/leads/999999/accept",
                       data={"csrf_token": token(claire, "/sales/inbox")}).status_code == 404


# --- escaping -----------------------------------------------------------------

def test_script_in_lead_fields_is_escaped(app, people):
    lead_id = mql(app, people["claire"], name=SCRIPT, company='<img src=x onerror="alert(2)">',
                  job_title=SCRIPT, pain_point=SCRIPT)
    claire = as_user(app, "claire")
    for page in (claire.get("/sales/inbox").get_data(as_text=True),
                 claire.get(f"/sales/leads/{lead_id}").get_data(as_text=True)):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>" not in page and "<img src=x" not in page
    page = act(claire, lead_id, "reject", reason=SCRIPT).get_data(as_text=True)
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page  # the reason, in the history
