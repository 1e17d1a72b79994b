"""The leads list, its CSV export and a lead's page with its actions,
driven through HTTP with CSRF enforced, on PostgreSQL."""
import csv
import io
import re
from datetime import datetime, timedelta, timezone
from html import unescape
from itertools import cycle

import pytest
from sqlalchemy import select

from app.db import session
from app.leads_ui import listing
from app.models import Enrollment, Lead, Mail, Note, OwnerChange, StageChange, Submission, utcnow
from app.scoring import lock_lead, track
from tests import factories
from tests.test_auth import login, make_user, token

SCRIPT = "<script>alert(1)</script>"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
LEAD_LINK = re.compile(r'href="/leads/(\d+)"')


@pytest.fixture
def people(app):
    with app.app_context():
        return {"claire": make_user("claire@leadflow.example", "sales", "Claire Dupont"),
                "sam": make_user("sam@leadflow.example", "sales", "Sam Martin"),
                "mia": make_user("mia@leadflow.example", "marketer", "Mia Marketing"),
                "root": make_user("root@leadflow.example", "admin", "Root")}


def as_user(app, name):
    client = app.test_client()
    assert login(client, f"{name}@leadflow.example").status_code == 302
    return client


def add(app, email, **values):
    """A lead written as is (no scoring): the list only reads columns."""
    with app.app_context():
        lead = Lead(email=email, **{"stage": "lead", "score": 0.0, "created_at": T0, **values})
        session.add(lead)
        session.commit()
        return lead.id


def ids_on(page_html: str) -> list[int]:
    return [int(i) for i in LEAD_LINK.findall(page_html)]


def listed(client, **args) -> list[int]:
    response = client.get("/leads", query_string=args)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return ids_on(response.get_data(as_text=True))


# --- search and filters -----------------------------------------------------------

def test_search_is_case_insensitive_on_name_email_and_company(app, people):
    lea = add(app, "lea@acme.fr", name="Léa MARTIN", company="Acme")
    bob = add(app, "bob@globex.com", name="Bob", company="Globex Industries")
    pct = add(app, "promo@shop.fr", name="100% Promo", company="Shop_Ltd")
    mia = as_user(app, "mia")
    assert listed(mia, q="martin") == [lea]
    assert listed(mia, q="GLOBEX.C") == [bob]
    assert listed(mia, q="industries") == [bob]
    # LIKE's wildcards are taken literally
    assert listed(mia, q="%") == [pct] and listed(mia, q="a_") == [] and listed(mia, q="p_") == [pct]
    assert sorted(listed(mia)) == sorted([lea, bob, pct])


def test_filters_combine(app, people):
    base = dict(segment="pme", source="newsletter", first_form="contact")
    hit = add(app, "hit@a.fr", stage="mql", score=62.0, temperature="warm", owner_id=people["claire"],
              created_at=T0 + timedelta(days=2), **base)
    add(app, "stage@a.fr", stage="lead", score=62.0, temperature="warm", owner_id=people["claire"],
        created_at=T0 + timedelta(days=2), **base)
    low = add(app, "low@a.fr", stage="mql", score=40.0, owner_id=people["claire"],
              created_at=T0 + timedelta(days=2), **base)
    old = add(app, "old@a.fr", stage="mql", score=62.0, temperature="warm", owner_id=people["claire"],
              created_at=T0 - timedelta(days=5), **base)
    add(app, "sam@a.fr", stage="mql", score=62.0, temperature="warm", owner_id=people["sam"],
        created_at=T0 + timedelta(days=2), **base)
    nobody = add(app, "nobody@a.fr", stage="mql", score=90.0, temperature="very_hot", segment="eti",
                 source="linkedin", first_form="contact-en", created_at=T0 + timedelta(days=3))
    mia = as_user(app, "mia")
    args = dict(stage="mql", segment="pme", score_min="50", score_max="70", temperature="warm",
                owner=str(people["claire"]), form="contact", source="newsletter",
                created_from="2026-03-02", created_to="2026-03-03")
    assert listed(mia, **args) == [hit]
    assert listed(mia, owner="none") == [nobody]
    assert listed(mia, temperature="very_hot") == [nobody]
    assert listed(mia, form="contact-en", source="linkedin", segment="eti") == [nobody]
    # "from" starts at midnight UTC, the "to" day is included whole
    day = dict(stage="mql", owner=str(people["claire"]))
    assert sorted(listed(mia, created_from="2026-03-03", created_to="2026-03-03", **day)) == sorted([hit, low])
    assert listed(mia, created_to="2026-03-02", **day) == [old]
    assert listed(mia, created_from="2026-03-04") == [nobody]


def test_unreadable_filter_values_are_ignored_and_said(app, people):
    lead = add(app, "a@a.fr", score=10.0)
    page = as_user(app, "mia").get("/leads?score_min=lots&created_from=yesterday&stage=nope&sort=drop")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and ids_on(html) == [lead]
    assert "Minimum score is not a number: ignored." in html and "Created from is not a date" in html


# --- sorting and keyset pages ----------------------------------------------------------

SORT_CASES = [(sort, desc) for sort in listing.SORTS for desc in (False, True)]


def _expected(leads: list[Lead], sort: str, desc: bool) -> list[int]:
    """The order the list promises: values (then id) in the direction asked,
    NULLs last, by id in the same direction."""
    values = sorted((l for l in leads if getattr(l, sort) is not None),
                    key=lambda l: (getattr(l, sort), l.id), reverse=desc)
    nulls = sorted((l for l in leads if getattr(l, sort) is None), key=lambda l: l.id, reverse=desc)
    return [l.id for l in values + nulls]


@pytest.fixture
def crowd(app, people):
    """130 leads with many equal sort values and some NULL names and mql_at."""
    scores, names = cycle([10.0, 20.0, 20.0, 35.5, 10.0]), cycle(["Alice", None, "Bob", "alice", None, "Zoé"])
    with app.app_context():
        for i in range(130):
            session.add(Lead(email=f"p{i:02d}@crowd.fr", stage="lead", score=next(scores), name=next(names),
                             created_at=T0 + timedelta(hours=i % 4),
                             mql_at=None if i % 3 else T0 + timedelta(days=i % 2)))
        session.commit()
        return session.execute(select(Lead)).scalars().all()


@pytest.mark.parametrize("sort, desc", SORT_CASES)
def test_keyset_walks_every_lead_once_forward_and_back(app, crowd, sort, desc):
    filters = listing.Filters(sort=sort, desc=desc)
    expected = _expected(crowd, sort, desc)
    with app.test_request_context():
        query = listing.filtered(filters)
        pages, after = [], None
        while True:
            page = listing.fetch_page(query, filters, after=after, size=7)
            pages.append([l.id for l in page.rows])
            if not page.next_cursor:
                break
            after = page.next_cursor
        assert [i for p in pages for i in p] == expected
        assert all(len(p) == 7 for p in pages[:-1])
        # and back again from the last page with the "previous" links
        back, before = [pages[-1]], listing.fetch_page(query, filters, after=after, size=7).prev_cursor
        while before:
            page = listing.fetch_page(query, filters, before=before, size=7)
            back.insert(0, [l.id for l in page.rows])
            before = page.prev_cursor
        assert back == pages
        assert [l.id for l in listing.iterate(query, filters, batch=5)] == expected


def test_pages_by_http_links_with_filters_kept(app, crowd):
    mia_client = as_user(app, "mia")
    seen, url = [], "/leads?sort=score&order=asc&score_min=15"
    while url:
        html = mia_client.get(url).get_data(as_text=True)
        seen.extend(ids_on(html))
        found = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = unescape(found.group(1)) if found else None
        if url:
            assert "score_min=15" in url and "sort=score" in url
    expected = _expected([l for l in crowd if l.score >= 15], "score", False)
    assert seen == expected and len(seen) > listing.PAGE_SIZE
    assert "leads match" in html


def test_a_forged_page_link_is_a_400_not_a_500(app, people):
    mia = as_user(app, "mia")
    assert mia.get("/leads?after=not-a-cursor").status_code == 400
    assert mia.get("/leads?sort=score&after=WyJuYW1lIiwiQSIsMV0").status_code == 400  # made for sort=name


def test_count_is_capped(app, people):
    with app.app_context():
        session.add_all([Lead(email=f"c{i}@many.fr", stage="lead", score=0.0) for i in range(listing.COUNT_CAP + 5)])
        session.commit()
    html = as_user(app, "mia").get("/leads").get_data(as_text=True)
    assert f"More than {listing.COUNT_CAP} leads match." in html
    assert len(ids_on(html)) == listing.PAGE_SIZE and 'rel="next"' in html and 'rel="prev"' not in html


# --- who sees what ---------------------------------------------------------------------

def test_sales_see_only_their_leads(app, people):
    mine = add(app, "mine@a.fr", owner_id=people["claire"])
    other = add(app, "other@a.fr", owner_id=people["sam"], name="Sam's lead")
    free = add(app, "free@a.fr")
    claire = as_user(app, "claire")
    assert listed(claire) == [mine]
    assert listed(claire, owner=str(people["sam"])) == [mine]  # the owner filter cannot widen it
    assert claire.get(f"/leads/{mine}").status_code == 200
    assert claire.get(f"/leads/{other}").status_code == 403
    assert claire.get(f"/leads/{free}").status_code == 403
    export = claire.get("/leads.csv").get_data(as_text=True)
    assert "mine@a.fr" in export and "other@a.fr" not in export and "free@a.fr" not in export
    assert claire.post(f"/leads/{other}/notes",
                       data={"csrf_token": token(claire, f"/leads/{mine}"), "body": "hi"}).status_code == 403
    assert claire.get("/leads/import").status_code == 403
    assert sorted(listed(as_user(app, "root"))) == sorted([mine, other, free])


def test_anonymous_is_sent_to_login(app, client):
    assert client.get("/leads").status_code == 302 and client.get("/leads/1").status_code == 302


# --- CSV export --------------------------------------------------------------------------

def test_export_is_the_filtered_set_and_safe_in_a_spreadsheet(app, people):
    add(app, "evil@a.fr", name="=HYPERLINK(\"http://x\")", company="+cmd", job_title="-2+3",
        segment="@SUM(A1)", stage="mql", score=55.5, owner_id=people["claire"], source="newsletter",
        first_form="contact", mql_at=T0)
    with app.app_context():  # more than one keyset batch, many equal scores
        session.add_all([Lead(email=f"bulk{i}@b.fr", stage="mql", score=float(i % 7), created_at=T0)
                         for i in range(1203)])
        session.add(Lead(email="notmql@a.fr", stage="lead", score=0.0))
        session.commit()
    response = as_user(app, "mia").get("/leads.csv?stage=mql&sort=score")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert list(rows[0]) == ["email", "name", "company", "job_title", "segment", "country", "stage", "score",
                             "temperature", "owner", "first_form", "source", "medium", "created_at", "mql_at"]
    assert len(rows) == 1204 and len({r["email"] for r in rows}) == 1204
    assert all(r["stage"] == "mql" for r in rows) and "notmql@a.fr" not in {r["email"] for r in rows}
    evil = next(r for r in rows if r["email"] == "evil@a.fr")
    assert evil["name"] == "'=HYPERLINK(\"http://x\")" and evil["company"] == "'+cmd"
    assert evil["job_title"] == "'-2+3" and evil["segment"] == "'@SUM(A1)"
    assert evil["score"] == "55.5" and evil["owner"] == "claire@leadflow.example"
    assert evil["mql_at"].startswith("2026-03-01T09:00")
    assert rows[0]["email"] == "evil@a.fr"  # sorted by score, descending


# --- a lead's page -----------------------------------------------------------------------

@pytest.fixture
def rich_lead(app, people):
    """A lead with a submission, events, an email, stage changes, and script in every text."""
    with app.app_context():
        lead = factories.lead("lea@acme.fr", name=f"Léa {SCRIPT}", company=f"Acme {SCRIPT}", segment="pme",
                              job_title="CTO", country="FR", language="fr", first_form="contact", consent=True)
        session.add(Submission(form_slug="contact", channel="hosted", payload={"email": "lea@acme.fr"},
                               email="lea@acme.fr", verdict="excluded", reasons=["competitor"], lead_id=lead.id,
                               created_at=utcnow() - timedelta(days=3)))
        lead = lock_lead(lead.id)
        track(lead, "asset_downloaded", key="a1", properties={"asset": f"guide {SCRIPT}"},
              occurred_at=utcnow() - timedelta(days=2))
        session.add(Mail(dedupe_key="m1", kind="nurture", lead_id=lead.id, sender="a@leadflow.example",
                         recipient="lea@acme.fr", subject=f"Welcome {SCRIPT}", html="", text="", status="sent",
                         sent_at=utcnow() - timedelta(days=1), opened_at=utcnow(), campaign="nurture-fr"))
        session.add(StageChange(lead_id=lead.id, from_stage="lead", to_stage="lead",
                                actor=f"user:{people['mia']}", reason=f"why {SCRIPT}", at=utcnow()))
        session.commit()
        return lead.id


def test_lead_page_shows_everything_escaped(app, people, rich_lead):
    response = as_user(app, "mia").get(f"/leads/{rich_lead}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    timeline = html[html.index('id="timeline-heading"'):]
    # newest first: the stage changes (now), the email, the event, the submission (3 days ago)
    order = [timeline.index(s) for s in ("why &lt;script&gt;", "— → lead", "Welcome &lt;script&gt;",
                                         "asset downloaded", "excluded")]
    assert order == sorted(order)
    assert "competitor" in timeline and "points" in timeline and "opened" in timeline and "sent" in timeline
    assert "by Mia Marketing" in timeline  # user:<id> shown as the person's name
    assert 'class="chart"' in html and "Where the score comes from" in html
    assert "Steer this lead" in html and "Change stage" in html


def test_sales_owner_sees_the_page_without_steering(app, people):
    lead_id = add(app, "mine@a.fr", owner_id=people["claire"], stage="mql")
    html = as_user(app, "claire").get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Steer this lead" not in html and "Add a note" in html
    assert f"/sales/leads/{lead_id}" in html  # the salesperson's own actions
    assert as_user(app, "claire").get("/leads/999999").status_code == 404


# --- notes and actions ------------------------------------------------------------------

def post(client, lead_id, action, **data):
    data.setdefault("csrf_token", token(client, f"/leads/{lead_id}"))
    return client.post(f"/leads/{lead_id}/{action}", data=data, follow_redirects=True)


def test_notes_are_added_escaped_and_need_csrf(app, people):
    lead_id = add(app, "n@a.fr", owner_id=people["claire"])
    claire = as_user(app, "claire")
    html = post(claire, lead_id, "notes", body=f"Called {SCRIPT}\nsecond line").get_data(as_text=True)
    assert "Note added." in html and "Called &lt;script&gt;" in html and "Note by Claire Dupont" in html
    assert claire.post(f"/leads/{lead_id}/notes", data={"body": "no token"}).status_code == 400
    assert "a note cannot be empty" in post(claire, lead_id, "notes", body="   ").get_data(as_text=True)
    with app.app_context():
        notes = session.execute(select(Note)).scalars().all()
    assert [(n.body, n.user_id) for n in notes] == [(f"Called {SCRIPT}\nsecond line", people["claire"])]


def test_assign_owner(app, people):
    lead_id = add(app, "o@a.fr")
    mia = as_user(app, "mia")
    assert "Assigned to Sam Martin." in post(mia, lead_id, "owner", owner_id=people["sam"]).get_data(as_text=True)
    with app.app_context():
        assert session.get(Lead, lead_id).owner_id == people["sam"]
    assert "choose an active salesperson" in post(mia, lead_id, "owner", owner_id=people["mia"]).get_data(as_text=True)
    post(mia, lead_id, "owner", owner_id="")
    with app.app_context():
        assert session.get(Lead, lead_id, populate_existing=True).owner_id is None
    sam = as_user(app, "sam")
    assert sam.post(f"/leads/{lead_id}/owner", data={"csrf_token": token(sam, "/leads"),
                                                     "owner_id": people["sam"]}).status_code == 403


def test_owner_changes_are_history_with_who_and_why(app, people):
    """Assigning by hand, by the MQL rule and by accepting: each is a row and
    a line of the lead's timeline; saving the same owner again adds nothing."""
    lead_id = add(app, "h@a.fr", stage="lead")
    mia = as_user(app, "mia")
    post(mia, lead_id, "owner", owner_id=people["sam"], reason=f"knows them {SCRIPT}")
    post(mia, lead_id, "owner", owner_id=people["sam"])
    post(mia, lead_id, "owner", owner_id="", reason="Sam is on leave")
    post(mia, lead_id, "stage", stage="mql")  # handed to sales: the round robin picks someone
    with app.app_context():
        rows = session.execute(select(OwnerChange).where(OwnerChange.lead_id == lead_id)
                               .order_by(OwnerChange.id)).scalars().all()
        picked = session.get(Lead, lead_id, populate_existing=True).owner_id
    assert [(r.from_user_id, r.to_user_id, r.actor, r.reason) for r in rows] == [
        (None, people["sam"], f"user:{people['mia']}", f"knows them {SCRIPT}"),
        (people["sam"], None, f"user:{people['mia']}", "Sam is on leave"),
        (None, picked, "rule:round-robin", "assigned on becoming an MQL")]
    html = mia.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Sam Martin → unassigned, by Mia" in html and "Sam is on leave" in html
    assert "knows them &lt;script&gt;" in html and "<script>alert" not in html
    assert "unassigned → " in html and "by rule:round-robin: assigned on becoming an MQL" in html


def test_stage_change_and_a_refused_one(app, people):
    lead_id = add(app, "s@a.fr", stage="lead")
    mia = as_user(app, "mia")
    html = post(mia, lead_id, "stage", stage="disqualified", reason="duplicate of another").get_data(as_text=True)
    assert "The lead is now disqualified." in html
    with app.app_context():
        change = session.execute(select(StageChange).where(StageChange.lead_id == lead_id)).scalar_one()
        assert (change.from_stage, change.to_stage, change.actor, change.reason) == (
            "lead", "disqualified", f"user:{people['mia']}", "duplicate of another")
    refused = post(mia, lead_id, "stage", stage="customer")
    assert refused.status_code == 200
    assert "Nothing changed: a lead cannot move from disqualified to customer." in refused.get_data(as_text=True)
    with app.app_context():
        assert session.get(Lead, lead_id, populate_existing=True).stage == "disqualified"
    assert "unknown stage" in post(mia, lead_id, "stage", stage="bogus").get_data(as_text=True)


def test_made_an_mql_by_hand_is_handed_to_sales(app, people):
    lead_id = add(app, "m@a.fr", stage="lead")
    post(as_user(app, "mia"), lead_id, "stage", stage="mql")
    with app.app_context():
        lead = session.get(Lead, lead_id, populate_existing=True)
        assert lead.stage == "mql" and lead.mql_at is not None and lead.owner_id in (people["claire"], people["sam"])


def test_enroll_and_remove(app, people):
    lead_id = add(app, "e@a.fr", stage="lead", language="en", consent=True)
    mia = as_user(app, "mia")
    assert "Enrolled in nurture-en." in post(mia, lead_id, "enroll", campaign="nurture-en").get_data(as_text=True)
    with app.app_context():
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert (enrollment.campaign, enrollment.status, enrollment.trigger) == ("nurture-en", "active", "manual")
    html = post(mia, lead_id, "unenroll", enrollment_id=enrollment.id).get_data(as_text=True)
    assert "Removed from nurture-en." in html and "removed by Mia Marketing" in html
    with app.app_context():
        enrollment = session.execute(select(Enrollment)).scalar_one()
        assert enrollment.status == "exited" and enrollment.exit_reason == "removed by Mia Marketing"
    assert "not active" in post(mia, lead_id, "unenroll", enrollment_id=enrollment.id).get_data(as_text=True)
    # the audience is not checked (a French campaign for an English lead), suppression is
    no_consent = add(app, "nc@a.fr", stage="lead", language="en", consent=False)
    assert "no_consent" in post(mia, no_consent, "enroll", campaign="nurture-fr").get_data(as_text=True)
    assert "choose a campaign" in post(mia, lead_id, "enroll", campaign="nope").get_data(as_text=True)


def test_keyset_and_search_on_sqlite_too(app_factory, sqlite_url):
    """The embedded default: same order, same pages, same search."""
    app = app_factory(sqlite_url)
    names = cycle(["Alice", None, "bob", "Bob", None])
    with app.app_context():
        session.add_all([Lead(email=f"s{i}@lite.fr", stage="lead", score=float(i % 3), name=next(names),
                              created_at=T0 + timedelta(minutes=i % 4), mql_at=None if i % 2 else T0)
                         for i in range(40)])
        session.commit()
        leads = session.execute(select(Lead)).scalars().all()
    with app.test_request_context():
        for sort, desc in SORT_CASES:
            filters = listing.Filters(sort=sort, desc=desc)
            query = listing.filtered(filters)
            seen, after = [], None
            while True:
                page = listing.fetch_page(query, filters, after=after, size=6)
                seen.extend(l.id for l in page.rows)
                if not (after := page.next_cursor):
                    break
            assert seen == _expected(leads, sort, desc), (sort, desc)
        found = session.execute(listing.filtered(listing.Filters(q="BOB"))).scalars().all()
        assert len(found) == 16


def test_score_chart_ends_at_the_cooled_score(app, people):
    """Decay writes no history row: the chart adds today's (cooled) score as
    its last point, so the line ends where the card's score stands."""
    from app import tasks
    from app.scoring import decay_scores
    lead_id = add(app, "cool@a.fr", stage="lead")
    with app.app_context():
        for kind, properties in factories.WORKED_EXAMPLE[:3]:
            track(lock_lead(lead_id), kind, properties=properties)
            tasks.commit()
    mia = as_user(app, "mia")

    def line_points():
        html = mia.get(f"/leads/{lead_id}").get_data(as_text=True)
        path = re.search(r'<path d="([^"]+)" fill="none"', html).group(1)
        return path.count("M") + path.count("L")
    assert line_points() == 4  # where it started, then three events
    with app.app_context():
        assert decay_scores(as_of=utcnow() + timedelta(days=60)) == 1
    assert line_points() == 5
