"""The review queue and the rules preview, through HTTP with CSRF enforced,
on PostgreSQL."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db import session
from app.models import Enrollment, Event, Lead, StageChange, Submission, utcnow
from app.workspace import review
from tests.capture_data import english_person, person, post_json
from tests.test_auth import login, make_user, token

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def people(app):
    with app.app_context():
        return {"mia": make_user("mia@leadflow.example", "marketer", "Mia"),
                "claire": make_user("claire@leadflow.example", "sales", "Claire"),
                "root": make_user("root@leadflow.example", "admin", "Root")}


def as_user(app, name):
    client = app.test_client()
    assert login(client, f"{name}@leadflow.example").status_code == 302
    return client


def submit(client, slug="contact", **fields) -> int:
    """A submission through the real JSON path; returns its id."""
    assert post_json(client, slug, person(**fields) if slug == "contact" else english_person(**fields)
                     ).status_code in (201, 422)
    return session.execute(select(func.max(Submission.id))).scalar()


def stored(submission_id) -> Submission:
    return session.get(Submission, submission_id, populate_existing=True)


def act(client, **data):
    data["csrf_token"] = token(client, "/review")
    return client.post("/review", data=data, follow_redirects=True)


def in_queue(page: str, submission_id: int) -> bool:
    return f'id="submission-{submission_id}"' in page


# --- the queue ------------------------------------------------------------------

def test_queue_shows_review_and_exclusions_not_spam_unless_asked(app, client, people):
    with app.app_context():
        other = submit(client, intent="other", email="o@boulangeries.fr", message=SCRIPT)
        student = submit(client, email="jean@etu.univ-lyon1.fr")
        spam = submit(client, email="x@yopmail.com")
        accepted = submit(client, email="ok@boulangeries.fr")
        assert [stored(i).verdict for i in (other, student, spam, accepted)] == \
            ["review", "excluded", "excluded", "accepted"]
    mia = as_user(app, "mia")
    page = mia.get("/review").get_data(as_text=True)
    assert in_queue(page, other) and in_queue(page, student)
    assert not in_queue(page, spam) and not in_queue(page, accepted)
    assert page.index(f"submission-{student}") < page.index(f"submission-{other}")  # newest first
    assert "Other intent: a person decides" in page and "Student" in page and "Parlons" in page
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # fields escaped
    with_spam = mia.get("/review?spam=1").get_data(as_text=True)
    assert in_queue(with_spam, spam) and "Spam: throwaway address" in with_spam
    only_review = mia.get("/review?kind=review").get_data(as_text=True)
    assert in_queue(only_review, other) and not in_queue(only_review, student)


def test_queue_is_keyset_paginated(app, people):
    with app.app_context():
        for n in range(review.PAGE + 5):
            session.add(Submission(form_slug="contact", channel="api", payload={"email": f"p{n}@acme.fr"},
                                   email=f"p{n}@acme.fr", verdict="review", reasons=["other_intent"],
                                   created_at=utcnow(), decided_by="rule:capture"))
        session.commit()
        ids = session.execute(select(Submission.id).order_by(Submission.id.desc())).scalars().all()
    mia = as_user(app, "mia")
    first = mia.get("/review").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'id="submission-(\d+)"', first)]
    assert shown == ids[:review.PAGE]
    link = re.search(r'href="(/review\?[^"]*before=\d+[^"]*)"', first).group(1).replace("&amp;", "&")
    second = mia.get(link).get_data(as_text=True)
    assert [int(i) for i in re.findall(r'id="submission-(\d+)"', second)] == ids[review.PAGE:]
    assert "before=" not in second


def test_approving_a_review_item_makes_a_scored_enrolled_lead(app, client, people):
    with app.app_context():
        sid = submit(client, intent="other", email="lea@boulangeries.fr")
        assert session.execute(select(func.count()).select_from(Lead)).scalar() == 0  # review: no lead yet
    mia = as_user(app, "mia")
    page = act(mia, item=f"approve:{sid}").get_data(as_text=True)
    assert "1 submission approved." in page and not in_queue(page, sid)
    with app.app_context():
        submission = stored(sid)
        assert submission.verdict == "accepted" and submission.decided_by == f"user:{people['mia']}"
        assert submission.reasons == ["other_intent"]  # the rules' reasons stay as history
        lead = session.execute(select(Lead).where(Lead.email == "lea@boulangeries.fr")).scalar_one()
        assert submission.lead_id == lead.id and lead.stage == "lead" and lead.score > 0
        assert session.execute(select(Event).where(Event.lead_id == lead.id, Event.kind == "form_submitted")
                               ).scalar_one().key == f"submission:{sid}"
        enrollment = session.execute(select(Enrollment).where(Enrollment.lead_id == lead.id)).scalar_one()
        assert enrollment.campaign == "nurture-fr" and enrollment.status == "active"


def test_approving_an_exclusion_moves_the_disqualified_lead_back(app, client, people):
    with app.app_context():
        sid = submit(client, intent="none", email="paul@boulangeries.fr")
        lead = session.execute(select(Lead)).scalar_one()
        assert (stored(sid).verdict, lead.stage) == ("excluded", "disqualified")
    act(as_user(app, "mia"), item=f"approve:{sid}")
    with app.app_context():
        lead = session.execute(select(Lead)).scalar_one()
        assert lead.stage == "lead"
        move = session.execute(select(StageChange).where(StageChange.lead_id == lead.id)
                               .order_by(StageChange.id.desc()).limit(1)).scalar_one()
        assert (move.from_stage, move.to_stage, move.actor) == ("disqualified", "lead", f"user:{people['mia']}")
        assert stored(sid).reasons == ["no_intent"]
        assert session.execute(select(func.count()).select_from(Enrollment)).scalar() == 1


def test_confirming_an_exclusion_takes_it_off_the_queue(app, client, people):
    with app.app_context():
        sid = submit(client, email="jean@etu.univ-lyon1.fr")
    page = act(as_user(app, "mia"), item=f"exclude:{sid}").get_data(as_text=True)
    assert "1 exclusion confirmed." in page and not in_queue(page, sid)
    with app.app_context():
        submission = stored(sid)
        assert (submission.verdict, submission.decided_by) == ("excluded", f"user:{people['mia']}")
        assert session.execute(select(Lead)).scalar_one().stage == "disqualified"  # left as it was


def test_bulk_actions_and_a_second_decision_is_refused(app, client, people):
    with app.app_context():
        ids = [submit(client, intent="other", email=f"p{n}@boulangeries.fr") for n in range(3)]
    mia = as_user(app, "mia")
    page = act(mia, action="approve", ids=[str(i) for i in ids[:2]]).get_data(as_text=True)
    assert "2 submissions approved." in page
    page = act(mia, action="exclude", ids=[str(i) for i in ids]).get_data(as_text=True)
    assert "1 exclusion confirmed." in page
    assert f"Submission {ids[0]} was already decided." in page
    with app.app_context():
        assert [stored(i).verdict for i in ids] == ["accepted", "accepted", "excluded"]
        assert session.execute(select(func.count()).select_from(Lead)).scalar() == 2
    assert "Tick at least one submission." in act(mia, action="approve").get_data(as_text=True)


def test_roles_and_csrf(app, client, people):
    with app.app_context():
        sid = submit(client, intent="other")
    sales = as_user(app, "claire")
    for path in ("/review", "/review/rules"):
        assert sales.get(path).status_code == 403
    assert sales.post("/review", data={"item": f"approve:{sid}",
                                       "csrf_token": token(sales, "/sales/inbox")}).status_code == 403
    mia = as_user(app, "mia")
    assert mia.post("/review", data={"item": f"approve:{sid}"}).status_code == 400  # no CSRF token
    assert mia.post("/review/rules", data={"rules": ""}).status_code == 400
    with app.app_context():
        assert stored(sid).verdict == "review"
    assert as_user(app, "root").get("/review").status_code == 200
    assert client.get("/review").status_code == 302  # anonymous: to the login page


# --- rules preview ------------------------------------------------------------------

def hand_built(app):
    """Submissions judged as the rules in force would judge them."""
    def add(email, verdict, reasons=(), days_ago=1, intent="demo_or_quote", **extra):
        fields = english_person(email=email, intent=intent, **extra)
        session.add(Submission(form_slug="contact-en", channel="script", payload=fields, email=email,
                               verdict=verdict, reasons=list(reasons), fill_ms=9000,
                               created_at=utcnow() - timedelta(days=days_ago), decided_by="rule:capture"))
    with app.app_context():
        add("jordan@acme-widgets.com", "accepted")                   # → excluded (new competitor)
        add("sam@leadflow.example", "excluded", ["internal"])         # → accepted (no internal domains)
        add("kim@hubspot.com", "excluded", ["competitor"], company="Kim Consulting")  # → accepted
        add("ana@acme-widgets.com", "review", ["other_intent"], intent="other")       # → excluded
        add("lea@boulangeries.fr", "accepted")                       # unchanged
        add("bot@boulangeries.fr", "excluded", ["spam:honeypot"], website="http://spam")  # unchanged
        add("old@acme-widgets.com", "accepted", days_ago=45)         # outside the period
        session.add(Submission(form_slug="contact-en", channel="script", payload={"email": "x"}, email="x",
                               verdict="invalid", reasons=[], created_at=utcnow()))
        session.commit()


PROPOSED = """\
# everyone at acme-widgets.com is a competitor now; no colleague, no other competitor
internal_domains: []
competitor_domains:
  - acme-widgets.com
"""


def test_preview_counts_each_flip(app, people):
    hand_built(app)
    with app.test_request_context():
        result = review.preview(app.extensions["leadflow.rules"].get(), review.parse_rules(PROPOSED),
                                utcnow() - timedelta(days=30))
    assert result.judged == 6 and result.flipped == 4
    assert dict(result.counts) == {("accepted", "excluded"): 1, ("excluded", "accepted"): 2,
                                   ("review", "excluded"): 1, ("accepted", "accepted"): 1,
                                   ("excluded", "excluded"): 1}
    assert sorted(f.submission["email"] for f in result.flips) == \
        ["ana@acme-widgets.com", "jordan@acme-widgets.com", "kim@hubspot.com", "sam@leadflow.example"]
    jordan = next(f for f in result.flips if f.submission["email"] == "jordan@acme-widgets.com")
    assert jordan.after.reasons == ("competitor",)


def test_preview_page_shows_flips_and_saves_nothing(app, people, forms_dir):
    hand_built(app)
    before = (forms_dir / "rules.yaml").read_text(encoding="utf-8")
    mia = as_user(app, "mia")
    form = mia.get("/review/rules").get_data(as_text=True)
    assert "competitor_domains:" in form and "hubspot.com" in form  # the file in force, to edit
    response = mia.post("/review/rules", data={"rules": PROPOSED, "days": "30",
                                               "csrf_token": token(mia, "/review/rules")})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "6 submissions since" in page and "4 would get another verdict" in page
    assert re.search(r'data-flip="accepted-excluded"><td>accepted</td><td><strong>excluded</strong></td><td>1<', page)
    assert re.search(r'data-flip="excluded-accepted">.*?<td>2</td>', page)
    assert "jordan@acme-widgets.com" in page and "old@acme-widgets.com" not in page
    longer = mia.post("/review/rules", data={"rules": PROPOSED, "days": "60",
                                             "csrf_token": token(mia, "/review/rules")}).get_data(as_text=True)
    assert "7 submissions since" in longer and "old@acme-widgets.com" in longer
    assert (forms_dir / "rules.yaml").read_text(encoding="utf-8") == before
    with app.app_context():
        assert session.execute(select(Submission.verdict).where(Submission.email == "jordan@acme-widgets.com")
                               ).scalar() == "accepted"


@pytest.mark.parametrize("text, expected", [
    ("competitor_domains: [hubspot.com\nmax_links: 2\n", "forms/rules.yaml:"),
    ("max_links: 2\ncompetitor_domains:\n  - https://hubspot.com\n",
     "forms/rules.yaml:3: competitor_domains[0]: "),
    ("max_link: 2\n", "forms/rules.yaml:1: max_link: "),
    ("- just\n- a list\n", "forms/rules.yaml:1: the file must hold a mapping"),
])
def test_a_bad_rules_file_is_a_message_not_a_500(app, people, text, expected):
    mia = as_user(app, "mia")
    response = mia.post("/review/rules", data={"rules": text, "csrf_token": token(mia, "/review/rules")})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'role="alert"' in page and expected in page
    assert "hubspot.com" in page or text.startswith(("max_link", "-"))  # the text is kept to fix


# --- the forms page: views, acceptance, exclusions by reason -----------------------

def figure(page: str, slug: str, name: str) -> str:
    block = page[page.index(f'id="figures-{slug}"'):]
    return re.search(rf'data-figure="{name}">([^<]*)<', block).group(1)


def test_forms_page_figures(app_factory, any_db_url):
    """On PostgreSQL (jsonb_array_elements_text) and SQLite (counted in Python)."""
    app = app_factory(any_db_url)
    client = app.test_client()
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    for _ in range(9):
        assert client.get("/f/contact").status_code == 200
    assert client.get("/f/contact/embed.js").status_code == 200
    with app.app_context():
        submit(client, email="a@boulangeries.fr")
        submit(client, email="b@boulangeries.fr")
        submit(client, intent="other", email="c@boulangeries.fr")
        submit(client, email="jean@etu.univ-lyon1.fr")
        submit(client, email="marc@hubspot.com", job_title="Étudiant")   # student and competitor
        submit(client, email="bot@yopmail.com")
        submit(client, email="not an email")                               # invalid: sent back
        session.add(Submission(form_slug="contact", channel="api", payload={}, email="old@x.fr",
                               verdict="excluded", reasons=["internal"],
                               created_at=utcnow() - timedelta(days=45)))
        session.commit()
    mia = app.test_client()
    assert login(mia, "mia@leadflow.example").status_code == 302
    page = mia.get("/forms").get_data(as_text=True)
    assert [figure(page, "contact", n) for n in ("views", "submissions", "accepted", "review", "excluded")] \
        == ["10", "6", "2", "1", "3"]
    assert figure(page, "contact", "acceptance") == "33.3 %"   # 2 accepted / 6 submissions
    assert figure(page, "contact", "conversion") == "60.0 %"   # 6 submissions / 10 views
    assert figure(page, "contact-en", "views") == "0" and figure(page, "contact-en", "acceptance") == "—"
    table = page[page.index('id="exclusions-contact"'):]
    table = table[:table.index("</table>")]
    counts = dict(re.findall(r'data-reason="([^"]+)"><td>[^<]*</td><td>(\d+)</td>', table))
    assert counts == {"student": "2", "competitor": "1", "spam:disposable": "1"}
    assert "1 more was sent back" in page
    year = mia.get("/forms?days=90").get_data(as_text=True)
    assert figure(year, "contact", "excluded") == "4" and 'data-reason="internal"' in year
