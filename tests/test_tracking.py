"""Tracking: signed tokens, the open pixel, the click redirect, machine
detection and the page-visit beacon."""
import base64
import hashlib
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import delete, func, select

from app.db import session
from app.models import Event, Lead, Mail, utcnow
from app.signing import serializer
from app.track import tokens
from app.track.machine import is_machine, machine_reason
from tests import factories
from tests.browser import *  # noqa: F403 (fixtures: browser, leadflow, site)

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
HUMAN = {"User-Agent": CHROME}
DEST = "https://www.acme-site.example/pricing?utm_source=nurture&q=a%20b&x=%C3%A9#plans"
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def sent_mail(lead_id, minutes_ago=60.0) -> int:
    mail = Mail(dedupe_key=f"test:{lead_id}:{time.monotonic_ns()}", kind="nurture", lead_id=lead_id,
                sender="news@leadflow.example", recipient="lea@acme.fr", subject="Hello", html="<p>Hi</p>",
                text="Hi", status="sent", sent_at=utcnow() - timedelta(minutes=minutes_ago))
    session.add(mail)
    session.commit()
    return mail.id


def events(kind=None):
    query = select(Event).order_by(Event.id)
    if kind:
        query = query.where(Event.kind == kind)
    return session.execute(query).scalars().all()


def score_of(lead_id) -> float:
    return session.get(Lead, lead_id, populate_existing=True).score


def path_of(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def lead_and_mail(app):
    with app.app_context():
        lead = factories.lead()
        yield lead.id, sent_mail(lead.id)


# --- machine detection: a pure function ---------------------------------------

@pytest.mark.parametrize("agent", [
    CHROME,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Microsoft Outlook 16.0.17425; Pro)",
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36",
])
def test_people_are_not_machines(agent):
    assert machine_reason(agent, "GET", seconds_after_send=3600) is None
    assert machine_reason(agent, "GET", seconds_after_send=None) is None


@pytest.mark.parametrize("agent", [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0)", "Slackbot-LinkExpanding 1.0", "facebookexternalhit/1.1",
    "Barracuda Sentinel (EE)", "Mimecast-URL-Protect/1.0", "Proofpoint URL Defense",
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "Microsoft Office Existence Discovery",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0", "python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0 Safari/537.36",
    "", None, "   ",
])
def test_scanners_proxies_and_bots_are_machines(agent):
    assert is_machine(agent, "GET", seconds_after_send=3600)


def test_head_requests_and_hits_right_after_sending_are_machines():
    assert machine_reason(CHROME, "HEAD") == "HEAD request"
    assert machine_reason(CHROME, "GET", seconds_after_send=2) == "within 5 s of sending"
    assert machine_reason(CHROME, "GET", seconds_after_send=-1)  # before our send even returned
    assert machine_reason(CHROME, "GET", seconds_after_send=5) is None
    assert machine_reason(CHROME, "GET", seconds_after_send=20, human_seconds=30)


# --- tokens ---------------------------------------------------------------------

def test_urls_are_absolute_and_tokens_round_trip(app):
    with app.test_request_context():
        pixel = tokens.open_pixel_url(7, 42)
        link = tokens.click_url(7, 42, DEST)
        assert pixel.startswith("http://127.0.0.1:5000/t/o/") and pixel.endswith(".gif")
        assert link.startswith("http://127.0.0.1:5000/t/c/")
        assert tokens.read_open(path_of(pixel)[len("/t/o/"):-len(".gif")]) == (7, 42)
        assert tokens.read_click(path_of(link)[len("/t/c/"):]) == (7, 42, DEST)
        assert tokens.read_visitor(tokens.visitor_token(7)) == 7


@pytest.mark.parametrize("url", ["javascript:alert(1)", "/relative", "//evil.example/", "data:text/html,x",
                                 "https://", "ftp://files.example/x", "https://a.example/\r\nSet-Cookie: x=1"])
def test_only_absolute_http_urls_can_be_signed(app, url):
    with app.app_context():
        with pytest.raises(ValueError):
            tokens.click_url(1, 1, url)


def _tamper(token: str) -> str:
    """Same signature, another payload byte."""
    payload, rest = token.split(".", 1)
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return f"{flipped}.{rest}"


def _other_url_same_signature(token: str, url: str) -> str:
    """The click payload re-encoded with another destination, signature kept."""
    payload, rest = token.split(".", 1)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["u"] = url
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{forged}.{rest}"


def test_forged_altered_swapped_malformed_and_expired_tokens_are_refused(app, monkeypatch):
    with app.app_context():
        open_token = serializer(tokens.OPEN).dumps({"l": 1, "m": 2})
        click_token = serializer(tokens.CLICK).dumps({"l": 1, "m": 2, "u": DEST})
        visitor = tokens.visitor_token(1)
        forged = URLSafeTimedSerializer("not-our-secret", salt=tokens.OPEN).dumps({"l": 1, "m": 2})
        assert tokens.read_open(open_token) == (1, 2)
        assert tokens.read_open(forged) is None
        assert tokens.read_open(_tamper(open_token)) is None
        assert tokens.read_click(_other_url_same_signature(click_token, "https://evil.example/")) is None
        # swapped: each kind refused where another is expected
        assert tokens.read_click(open_token) is None and tokens.read_open(click_token) is None
        assert tokens.read_open(visitor) is None and tokens.read_visitor(open_token) is None
        # the salt alone tells them apart, even with the right shape
        assert tokens.read_click(serializer(tokens.OPEN).dumps({"l": 1, "m": 2, "u": DEST})) is None
        assert tokens.read_visitor(serializer(tokens.CLICK).dumps({"l": 1})) is None
        for junk in ("", "x", "a.b.c", "é" * 10, "\ud800", "A" * 5000, None, 12, ["x"]):
            assert tokens.read_open(junk) is None and tokens.read_click(junk) is None
        # signed by us but not a shape we mint
        for payload in ({"l": "1", "m": 2}, {"l": True, "m": 2}, {"l": 0, "m": 2}, {"l": 1}, [1, 2],
                        {"l": 1, "m": 2, "x": 3}):
            assert tokens.read_open(serializer(tokens.OPEN).dumps(payload)) is None
        assert tokens.read_click(serializer(tokens.CLICK).dumps(
            {"l": 1, "m": 2, "u": "javascript:alert(1)"})) is None
        # expired: minted longer ago than TRACK_TOKEN_MAX_AGE
        monkeypatch.setattr(TimestampSigner, "get_timestamp",
                            lambda self: int(time.time()) - tokens.DEFAULT_MAX_AGE - 60)
        old = serializer(tokens.OPEN).dumps({"l": 1, "m": 2})
        monkeypatch.undo()
        assert tokens.read_open(old) is None
        app.config["TRACK_TOKEN_MAX_AGE"] = tokens.DEFAULT_MAX_AGE * 2
        assert tokens.read_open(old) == (1, 2)


def test_visitor_token_is_added_keeping_the_other_parameters_exactly(app):
    with app.app_context():
        out = tokens.with_visitor_token(DEST, 9)
        assert out.startswith("https://www.acme-site.example/pricing?utm_source=nurture&q=a%20b&x=%C3%A9&lf_t=")
        assert out.endswith("#plans")
        assert tokens.read_visitor(parse_qs(urlsplit(out).query)["lf_t"][0]) == 9
        replaced = tokens.with_visitor_token("https://a.example/?lf_t=old&b=1", 9)
        assert replaced.count("lf_t=") == 1 and "old" not in replaced and "?b=1&lf_t=" in replaced
        assert tokens.with_visitor_token("https://a.example", 9).startswith("https://a.example?lf_t=")
        app.config["TRACK_VISITOR_HOSTS"] = "www.acme-site.example"
        assert "lf_t=" in tokens.with_visitor_token(DEST, 9)
        assert tokens.with_visitor_token("https://www.linkedin.com/company/acme", 9) == \
            "https://www.linkedin.com/company/acme"


# --- the open pixel -----------------------------------------------------------------

def test_pixel_loaded_twice_records_one_open(any_db_url, app_factory):
    app = app_factory(any_db_url)
    client = app.test_client()
    with app.app_context():
        lead_id = factories.lead().id
        mail_id = sent_mail(lead_id)
        url = tokens.open_pixel_url(lead_id, mail_id)
        for _ in range(2):
            response = client.get(path_of(url), headers=HUMAN)
            assert response.status_code == 200 and response.mimetype == "image/gif"
            assert response.data.startswith(b"GIF89a") and len(response.data) < 64
            assert "no-store" in response.headers["Cache-Control"]
        (opened,) = events()
        assert (opened.kind, opened.key, opened.properties, opened.machine, opened.source) == \
            ("email_opened", f"mail:{mail_id}", {"message_id": mail_id}, False, "tracking")
        assert score_of(lead_id) == pytest.approx(1)


def test_bad_pixel_tokens_still_get_the_gif_and_record_nothing(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        good = path_of(tokens.open_pixel_url(lead_id, mail_id))[len("/t/o/"):-len(".gif")]
        click = path_of(tokens.click_url(lead_id, mail_id, DEST))[len("/t/c/"):]
        for token in (_tamper(good), click, "nonsense", "a.b.c", "%00", "x" * 5000):
            response = client.get(f"/t/o/{token}.gif", headers=HUMAN)
            assert response.status_code == 200 and response.data.startswith(b"GIF89a")
        assert events() == []


def test_machine_open_is_flagged_scores_nothing_and_leaves_the_persons_open(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        url = path_of(tokens.open_pixel_url(lead_id, mail_id))
        client.get(url, headers={"User-Agent": "Mozilla/5.0"})  # Apple Mail Privacy Protection
        client.get(url, headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
        client.head(url, headers=HUMAN)
        (machine,) = events()
        assert machine.machine and machine.points == 0 and machine.key == f"mail:{mail_id}:machine"
        assert "Apple" in machine.properties["machine_reason"]
        assert score_of(lead_id) == 0
        client.get(url, headers=HUMAN)  # the person opens it later: that counts
        assert [e.machine for e in events()] == [True, False] and score_of(lead_id) == pytest.approx(1)


def test_hit_right_after_sending_is_a_machine(client, app):
    with app.app_context():
        lead_id = factories.lead().id
        mail_id = sent_mail(lead_id, minutes_ago=0)
        client.get(path_of(tokens.click_url(lead_id, mail_id, DEST)), headers=HUMAN)
        assert [e.machine for e in events()] == [True, True]
        assert events()[0].properties["machine_reason"] == "within 5 s of sending"
        assert score_of(lead_id) == 0


# --- the click redirect ---------------------------------------------------------------

def test_click_redirects_to_the_signed_url_with_lf_t_and_implies_an_open(any_db_url, app_factory):
    app = app_factory(any_db_url)
    client = app.test_client()
    with app.app_context():
        lead_id = factories.lead().id
        mail_id = sent_mail(lead_id)
        response = client.get(path_of(tokens.click_url(lead_id, mail_id, DEST)), headers=HUMAN)
        assert response.status_code == 302 and "no-store" in response.headers["Cache-Control"]
        location = response.headers["Location"]
        before, _, token = location.partition("&lf_t=")
        assert before == DEST.split("#")[0] and token.endswith("#plans")
        assert tokens.read_visitor(token.removesuffix("#plans")) == lead_id
        opened, clicked = events()
        url_hash = hashlib.sha1(DEST.encode()).hexdigest()[:16]
        assert (opened.kind, opened.key) == ("email_opened", f"mail:{mail_id}")
        assert (clicked.kind, clicked.key, clicked.properties) == \
            ("link_clicked", f"mail:{mail_id}:{url_hash}", {"message_id": mail_id, "url": DEST})
        assert score_of(lead_id) == pytest.approx(1 + 3)
        # the same link again, and the pixel afterwards: nothing new
        assert client.get(path_of(tokens.click_url(lead_id, mail_id, DEST)), headers=HUMAN).status_code == 302
        client.get(path_of(tokens.open_pixel_url(lead_id, mail_id)), headers=HUMAN)
        assert len(events()) == 2
        # another link of the same message is another click
        client.get(path_of(tokens.click_url(lead_id, mail_id, "https://www.acme-site.example/blog")),
                   headers=HUMAN)
        assert [e.kind for e in events()] == ["email_opened", "link_clicked", "link_clicked"]


def test_bad_click_tokens_get_a_plain_404_and_never_a_redirect(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        good = path_of(tokens.click_url(lead_id, mail_id, DEST))[len("/t/c/"):]
        pixel = path_of(tokens.open_pixel_url(lead_id, mail_id))[len("/t/o/"):-len(".gif")]
        forged = URLSafeTimedSerializer("guess", salt=tokens.CLICK).dumps(
            {"l": lead_id, "m": mail_id, "u": "https://evil.example/"})
        bad = [_tamper(good), _other_url_same_signature(good, "https://evil.example/"), pixel,
               tokens.visitor_token(lead_id), forged, "x", "a.b.c", "A" * 5000,
               "x?next=https://evil.example/"]
        for token in bad:
            response = client.get(f"/t/c/{token}", headers=HUMAN)
            assert response.status_code == 404, token
            assert response.data == b"Link not found" and response.mimetype == "text/plain"
            assert "Location" not in response.headers
        assert events() == []
        # parameters beside a good token change nothing: the URL comes from the token only
        response = client.get(f"/t/c/{good}?url=https://evil.example/&next=//evil.example", headers=HUMAN)
        assert response.headers["Location"].startswith(DEST.split("#")[0] + "&lf_t=")


def test_machine_click_is_flagged_and_scores_zero(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        url = path_of(tokens.click_url(lead_id, mail_id, DEST))
        assert client.get(url, headers={"User-Agent": "Mimecast-URL-Protect/1.0"}).status_code == 302
        assert client.head(url, headers=HUMAN).status_code == 302
        assert [(e.kind, e.machine, e.points) for e in events()] == \
            [("email_opened", True, 0), ("link_clicked", True, 0)]
        assert score_of(lead_id) == 0
        client.get(url, headers=HUMAN)  # the person clicks after the scanner: it still counts
        assert score_of(lead_id) == pytest.approx(4)


def test_deleted_lead_records_nothing_but_the_link_still_works(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        click, pixel = tokens.click_url(lead_id, mail_id, DEST), tokens.open_pixel_url(lead_id, mail_id)
        session.execute(delete(Lead).where(Lead.id == lead_id))
        session.commit()
        response = client.get(path_of(click), headers=HUMAN)
        assert response.status_code == 302 and response.headers["Location"] == DEST  # no lf_t
        assert client.get(path_of(pixel), headers=HUMAN).data.startswith(b"GIF89a")
        assert session.scalar(select(func.count(Event.id))) == 0


# --- the beacon -------------------------------------------------------------------------

def beacon(client, body, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/t/v", data=data, headers={"Content-Type": "text/plain;charset=UTF-8",
                                                   "User-Agent": CHROME, **headers})


def test_beacon_script_documents_consent_and_posts_to_us(client):
    response = client.get("/t/beacon.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    script = response.get_data(as_text=True)
    assert "leadflow.consent(true)" in script.split("*/")[0]
    assert "window.leadflowConsent = true" in script.split("*/")[0]
    assert '"http://127.0.0.1:5000/t/v"' in script and "sendBeacon" in script


def test_beacon_without_a_good_token_records_nothing(client, app):
    with app.app_context():
        lead_id = factories.lead().id
        forged = URLSafeTimedSerializer("guess", salt=tokens.VISITOR).dumps({"l": lead_id})
        open_token = serializer(tokens.OPEN).dumps({"l": lead_id, "m": 1})
        for body in ({"kind": "page_visited", "url": "https://a.example/"}, {"t": None},
                     {"t": forged}, {"t": open_token}, {"t": "junk"}):
            response = beacon(client, body)
            assert response.status_code == 204 and response.headers["Access-Control-Allow-Origin"] == "*"
        assert events() == []


def test_beacon_with_a_token_records_visits_and_downloads(any_db_url, app_factory):
    app = app_factory(any_db_url)
    client = app.test_client()
    with app.app_context():
        lead_id = factories.lead().id
        token = tokens.visitor_token(lead_id)
        seen = {"t": token, "url": "https://www.acme-site.example/pricing", "title": "Pricing",
                "referrer": "https://mail.example/"}
        assert beacon(client, {**seen, "kind": "page_visited"}).status_code == 204
        assert beacon(client, seen).status_code == 204  # kind defaults to page_visited
        assert beacon(client, {**seen, "kind": "asset_downloaded",
                               "properties": {"asset": "pricing-sheet"}}).status_code == 204
        visit, again, download = events()
        assert (visit.kind, visit.key, visit.source, visit.machine) == ("page_visited", None, "beacon", False)
        assert visit.properties == {"url": seen["url"], "title": "Pricing", "referrer": "https://mail.example/"}
        assert again.kind == "page_visited" and again.points == 0  # every visit kept; the first scores
        assert download.properties["asset"] == "pricing-sheet" and download.points == 20
        assert score_of(lead_id) == pytest.approx(21)


def test_beacon_refuses_bad_bodies_with_a_4xx(client, app):
    with app.app_context():
        token = tokens.visitor_token(factories.lead().id)
        cases = [
            ("not json", 400), (b"\xff\xfe", 400), ("[1, 2]", 400), ('{"t": NaN}', 400),
            ({"t": token, "kind": "demo_requested"}, 400),  # not a kind a browser may send
            ({"t": token, "url": ["x"]}, 400), ({"t": token, "properties": {"a": {"b": 1}}}, 400),
            ({"t": token, "properties": {f"k{i}": i for i in range(30)}}, 400),
            ({"t": token, "title": "a\x00b"}, 400), ({"t": token, "title": "\ud800"}, 400),
            ({"t": token, "title": "x" * 20_000}, 413), ("[" * 3000 + "]" * 3000, 400),
        ]
        for body, status in cases:
            assert beacon(client, body).status_code == status, body
        assert events() == []


@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                               max_size=4), max_leaves=12),
    st.fixed_dictionaries({"kind": st.sampled_from(["page_visited", "article_read", "x"]),
                           "url": st.none() | st.text(max_size=40),
                           "properties": st.dictionaries(st.text(max_size=10),
                                                         st.none() | st.text(max_size=20) | st.floats(),
                                                         max_size=3)})))
@FUZZ
def test_beacon_never_answers_500(client, body):
    response = beacon(client, body if isinstance(body, bytes) else json.dumps(body))
    assert response.status_code in (204, 400, 413)


def test_beacon_is_rate_limited(app_factory, pg_url):
    app = app_factory(pg_url, RATELIMIT_ENABLED=True, BEACON_RATE_LIMIT="3/minute")
    client = app.test_client()
    statuses = [beacon(client, {"t": None}).status_code for _ in range(5)]
    assert statuses == [204, 204, 204, 429, 429]


def test_click_then_beacon_follows_the_lead_onto_the_site(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        location = client.get(path_of(tokens.click_url(lead_id, mail_id, DEST)), headers=HUMAN).headers["Location"]
        lf_t = parse_qs(urlsplit(location).query)["lf_t"][0]
        beacon(client, {"t": lf_t, "url": DEST.split("?")[0], "title": "Pricing"})
        assert [e.kind for e in events()] == ["email_opened", "link_clicked", "page_visited"]
        assert events()[-1].lead_id == lead_id


# --- beacon.js in a real browser, on the marketer's site (another origin) ----------------

def wait_for_kinds(app, lead_id, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            kinds = session.execute(select(Event.kind).where(Event.lead_id == lead_id)
                                    .order_by(Event.id)).scalars().all()
            session.rollback()
            if len(kinds) >= count or time.monotonic() > deadline:
                return kinds
            time.sleep(0.1)


@pytest.mark.browser
def test_beacon_sends_nothing_before_consent_then_follows_the_lead(browser, leadflow, site):
    script = f"<script src='{leadflow.url}/t/beacon.js'></script>"
    site.put("/landing", f"<!doctype html><title>Landing</title><h1>Offer</h1>{script}")
    site.put("/next", f"<!doctype html><title>Next</title><script>window.leadflowConsent = true</script>{script}")
    with leadflow.app.app_context():
        lead_id = factories.lead().id
        link = tokens.click_url(lead_id, sent_mail(lead_id), site.origin + "/landing?utm_source=nurture#top")
    context = browser.new_context(user_agent=CHROME)  # HeadlessChrome would be flagged a machine
    tab = context.new_page()
    errors, posts = [], []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda request: posts.append(request.url) if request.url.endswith("/t/v") else None)
    try:
        tab.goto(link)
        # lf_t is out of the address bar at once; the other parameters stay as written
        assert tab.url == site.origin + "/landing?utm_source=nurture#top"
        assert tab.evaluate('leadflow.track("asset_downloaded", {asset: "pricing-sheet"})') is False
        tab.wait_for_timeout(500)
        assert posts == [] and tab.evaluate("window.localStorage.length") == 0
        assert wait_for_kinds(leadflow.app, lead_id, 2, timeout=0) == ["email_opened", "link_clicked"]

        tab.evaluate("leadflow.consent(true)")
        assert wait_for_kinds(leadflow.app, lead_id, 3)[2:] == ["page_visited"]
        assert tab.evaluate("window.localStorage.getItem('leadflow.visitor')")

        tab.goto(site.origin + "/next")  # no lf_t here: the stored token says who it is
        tab.evaluate('leadflow.track("asset_downloaded", {asset: "pricing-sheet"})')
        assert wait_for_kinds(leadflow.app, lead_id, 5)[3:] == ["page_visited", "asset_downloaded"]
        with leadflow.app.app_context():
            visit = session.execute(select(Event).where(Event.kind == "page_visited")
                                    .order_by(Event.id.desc()).limit(1)).scalar_one()
            assert visit.properties["url"] == site.origin + "/next" and visit.properties["title"] == "Next"
            assert not visit.machine and score_of(lead_id) == pytest.approx(1 + 3 + 1 + 20)

        tab.evaluate("leadflow.consent(false)")  # withdrawn: the token is gone
        assert tab.evaluate("window.localStorage.length") == 0
        assert tab.evaluate('leadflow.track("article_read", {article: "x"})') is False
        assert errors == []
    finally:
        context.close()


def test_click_to_a_non_ascii_url_redirects_with_an_ascii_location(client, app, lead_and_mail):
    lead_id, mail_id = lead_and_mail
    with app.app_context():
        url = "https://exämple.fr/été?q=ü&r=a b"
        response = client.get(path_of(tokens.click_url(lead_id, mail_id, url)), headers=HUMAN)
        assert response.status_code == 302
        location = response.headers["Location"]
        assert location.isascii() and location.startswith("https://xn--exmple-cua.fr/%C3%A9t%C3%A9?q=")
        assert events("link_clicked")[0].properties["url"] == url


def test_a_failure_to_record_never_stops_the_person(client, app, lead_and_mail, monkeypatch):
    lead_id, mail_id = lead_and_mail

    def broken(*args, **kwargs):
        raise RuntimeError("no valid scoring model")
    monkeypatch.setattr("app.scoring.track", broken)
    with app.app_context():
        response = client.get(path_of(tokens.click_url(lead_id, mail_id, DEST)), headers=HUMAN)
        assert response.status_code == 302 and response.headers["Location"] == DEST
        assert client.get(path_of(tokens.open_pixel_url(lead_id, mail_id)), headers=HUMAN).status_code == 200
        assert beacon(client, {"t": tokens.visitor_token(lead_id)}).status_code == 204
        assert events() == []
