"""Property tests for the two submit endpoints, on PostgreSQL.

Thousands of bodies (well-formed ones mixed with junk) go to
`POST /f/contact` (the hosted HTML post) and `POST /f/contact/submit` (the
JSON post of the embed script). Whatever arrives:

  * the answer is never a 5xx: a 2xx for a well-formed post, otherwise a 4xx
    with a readable body (JSON with "error" or "errors" on the JSON path,
    an HTML page on the hosted path);
  * every post the endpoint reads (form content types on the HTML path,
    JSON content type on the JSON path) is kept as one Submission row;
  * every well-formed post is stored, judged (verdict not "pending" nor
    "invalid") and, when accepted, is a lead.

Each example sends a short sequence of posts, so a well-formed submission
often follows junk on the same client and database.
"""
import itertools
import json
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app import db, migrate
from app.db import session
from app.models import Lead, Submission
from app.qualify.profile import normalize_email
from tests.capture_data import aged_token, csrf_from, form_body, person
from tests.helpers import create_pg_database, drop_pg_database

SLUG = "contact"
JSON_URL = f"/f/{SLUG}/submit"
HTML_URL = f"/f/{SLUG}"
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_serial = itertools.count()


@pytest.fixture(scope="module")
def pg_url():
    """A database of this module's own: the checks count rows, so no other
    test session (they share leadflow_test_<worker>) may truncate it meanwhile."""
    url = create_pg_database(f"leadflow_fuzz_{os.getpid()}")
    migrate.upgrade(url)
    yield url
    db.session.remove()
    drop_pg_database(url)


# --- strategies ------------------------------------------------------------

# Any unicode, control characters and NUL included, lone surrogates too
# (JSON can carry "\ud800"; an HTML post cannot, its bytes are decoded).
json_text = st.text(st.characters() | st.characters(categories=["Cs", "Cc"]), max_size=60) | st.sampled_from([
    "\x00", "a\x00b", "\ud800", "x\udfffy", "\u2028", "\ufeff", "<script>alert(1)</script>",
    "' OR 1=1 --", "${jndi:ldap://x}", "{{7*7}}", "\r\n\t", "\u202e", "𝕏" * 10, "   ",
    "Robert'); DROP TABLE submissions;--", "%00", "../../etc/passwd", "<img src=x onerror=alert(1)>",
])
html_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60) | st.sampled_from([
    "\x00", "a\x00b", "<script>alert(1)</script>", "\r\n", "\u202e", "   ", "&amp;&#0;", "%00",
])
huge_text = st.builds(lambda piece, n: (piece or "x") * n,
                      st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=4),
                      st.integers(1_000, 300_000))
field_names = st.sampled_from(["name", "company", "email", "job_title", "segment", "intent",
                               "message", "consent", "website", "lf_token", "csrf_token",
                               "utm_source", "utm_medium", "utm_campaign", "referrer", "phone",
                               "country", "_raw", ""]) | json_text
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | json_text)
json_values = st.recursive(json_scalars,
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(json_text, inner, max_size=4),
                           max_leaves=12)

fr_segments = ["tpe", "pme", "eti", "grand_compte"]
fr_intents = ["contact_sales", "demo_or_quote", "research", "none", "other"]
domains = ["acme-widgets.com", "gmail.com", "boulangeries.fr", "exämple-firma.de",
           "etu.univ-lyon1.fr", "eu.hubspot.com", "mailinator.com", "sub.domaine.co.uk"]
# Text a person may type: anything but NUL (kept out of well-formed posts only
# so that "required" means something) and lone surrogates.
person_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                      min_size=1, max_size=120).filter(lambda s: s.strip())


@st.composite
def well_formed(draw):
    """Fields of a valid submission to /f/contact: required fields filled,
    a real email, a choice offered, consent given."""
    local = draw(st.sampled_from(["camille", "Jean.Dupont", "j+tag", "o'brien", "li_na", "x"]))
    email = f"{local}.{next(_serial)}@{draw(st.sampled_from(domains))}"
    if draw(st.booleans()):
        email = email.upper() if email.isascii() else email
    fields = {"name": draw(person_text), "company": draw(person_text), "email": email,
              "segment": draw(st.sampled_from(fr_segments)),
              "intent": draw(st.sampled_from(fr_intents)), "consent": True}
    optional = {"job_title": person_text, "message": st.text(max_size=4000),
                "utm_source": st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
                "utm_campaign": st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
                "referrer": st.sampled_from(["https://www.example.org/page?q=1", "not a url",
                                            "http://[::1", ""])}
    for name, strategy in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    return fields


token_junk = st.one_of(st.none(), json_values, json_text,
                       st.just(aged_token("contact-en")), st.just(aged_token(SLUG, secret="not-ours")),
                       st.builds(lambda s: aged_token(SLUG, seconds=s), st.floats(-3600, 30)),
                       st.just("x" * 600), st.just(aged_token(SLUG) + "tampered"))


@st.composite
def mutated(draw, base):
    """A valid submission, then a few things broken: fields dropped, set to
    junk of any JSON type, or added."""
    fields = dict(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "junk", "add", "huge"]))
        key = draw(st.sampled_from(sorted(fields))) if fields else "email"
        if action == "drop":
            fields.pop(key, None)
        elif action == "junk":
            fields[key] = draw(json_values)
        elif action == "add":
            fields[draw(field_names)] = draw(json_values)
        else:
            fields[key] = draw(huge_text)
    return fields


raw_json_junk = st.sampled_from([
    b"", b"null", b"[]", b"{}", b'"fields"', b"{not json", b'{"fields": {}}', b'{"fields": []}',
    b'{"fields": null, "token": null}', b'{"fields": {"email": NaN}, "token": Infinity}',
    b'{"fields": {"email": -Infinity, "name": 1e999}}', b'{"fields": {"x": 1' + b"0" * 5000 + b"}}",
    b'{"fields": {"name": "\\u0000", "\\u0000key": "\\u0000"}, "token": "\\u0000"}',
    b'{"fields": {"name": "\\ud800", "\\udfff": "x"}, "token": "\\udbff"}',
    b'{"fields": {"name": "\xff\xfe\xfd"}}', b"\xef\xbb\xbf{\"fields\": {}}",
    b'{"fields": {"email": "a@b.fr"}, "fields": 3}', b"[" * 50_000 + b"]" * 50_000,
    b'{"fields": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
    b'{"fields": {"a": ' + b"[" * 900 + b"]" * 900 + b"}}",
    b'{"fields": {"a": ' + b"[" * 400 + b"]" * 400 + b"}}",
    b"\x00\x00\x00\x00", b"\xff" * 100, b'{"fields": {"name": "a"}}\x00',
])


@st.composite
def json_post(draw):
    """(description, kwargs for client.post, expectation)."""
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "bad_token", "any_json",
                                 "raw_bytes", "content_type", "query"]))
    headers = {}
    token = aged_token(SLUG)
    if kind == "valid":
        body = {"fields": draw(well_formed()), "token": token}
        return kind, {"json": body}, "stored_valid"
    if kind == "mutated":
        body = {"fields": draw(mutated(well_formed())), "token": token}
        return kind, {"json": body}, "stored"
    if kind == "bad_token":
        body = {"fields": draw(well_formed())}
        if draw(st.booleans()):
            body["token"] = draw(token_junk)
        return kind, {"json": body}, "stored"
    if kind == "any_json":
        body = draw(json_values | st.dictionaries(field_names, json_values, max_size=5)
                    | st.fixed_dictionaries({"fields": json_values, "token": token_junk}))
        return kind, {"data": json.dumps(body), "content_type": "application/json"}, "stored"
    if kind == "raw_bytes":
        data = draw(raw_json_junk | st.binary(max_size=300))
        return kind, {"data": data, "content_type": "application/json"}, "stored"
    if kind == "content_type":
        content_type = draw(st.sampled_from([
            "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
            "application/xml", "application/json-patch+json", "application/vnd.api+json",
            "application/json; charset=latin-1", "application/json; charset=utf-16",
            "APPLICATION/JSON", "", "*/*", "application/octet-stream",
        ]) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
        data = draw(st.binary(max_size=200) | st.just(json.dumps(
            {"fields": draw(well_formed()), "token": token}).encode()))
        headers["Content-Type"] = content_type
        return kind, {"data": data, "headers": headers}, "maybe"
    # Random query strings on an otherwise valid post.
    query = draw(st.dictionaries(html_text, html_text, max_size=4) | st.sampled_from(
        [{"frame": "1"}, {"frame": "\x00"}, {"utm_source": "x" * 5000}]))
    body = {"fields": draw(well_formed()), "token": token}
    return kind, {"json": body, "query_string": query}, "stored_valid"


@st.composite
def html_post(draw):
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "any_form", "raw_bytes",
                                 "multipart", "content_type"]))
    if kind == "valid":
        fields = _form(draw(well_formed()))
        return kind, fields, "stored_valid"
    if kind == "mutated":
        fields = _form(draw(well_formed()))
        for _ in range(draw(st.integers(1, 4))):
            action = draw(st.sampled_from(["drop", "junk", "add", "huge", "token", "csrf"]))
            key = draw(st.sampled_from(sorted(fields)))
            if action == "drop":
                fields.pop(key, None)
            elif action == "junk":
                fields[key] = draw(html_text)
            elif action == "add":
                fields[draw(html_text)] = draw(html_text)
            elif action == "huge":
                fields[key] = draw(huge_text)
            elif action == "token":
                fields["lf_token"] = draw(html_text | st.just(aged_token("contact-en")))
            else:
                fields["csrf_token"] = draw(html_text)
        return kind, fields, "stored"
    if kind == "any_form":
        fields = draw(st.dictionaries(field_names.filter(_no_surrogate), html_text, max_size=8))
        return kind, {"_fields": fields, "_csrf": draw(st.booleans())}, "stored"
    if kind == "raw_bytes":
        data = draw(st.binary(max_size=300) | st.sampled_from([
            b"email=%FF%FE&name=%00", b"name=\xff\xfe\x00&email=a@b.fr", b"&&&===&", b"%",
            b"a=" + b"%" * 1000, b"email=" + b"x" * 200_000, b"\x00=\x00",
            b"name=a;name=b&name=c", b"email[]=1&email[]=2", b"=" * 5000,
        ]))
        return kind, {"_data": data, "_ctype": "application/x-www-form-urlencoded"}, "stored"
    if kind == "multipart":
        boundary = draw(st.sampled_from(["b0undary", "", "x" * 300, "\"quoted\""]))
        data = draw(st.sampled_from([
            b"--b0undary\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.fr\r\n--b0undary--\r\n",
            b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.exe\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\x00\r\n--b0undary--\r\n",
            b"--b0undary\r\nContent-Disposition: form-data; name=\"na\x00me\"\r\n\r\n\xff\xfe\r\n--b0undary--\r\n",
            b"--b0undary\r\n\r\n\r\n", b"garbage without boundaries", b"",
            b"--b0undary\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nno end",
        ]) | st.binary(max_size=300))
        ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
        return kind, {"_data": data, "_ctype": ctype}, "stored"
    content_type = draw(st.sampled_from([
        "application/json", "text/plain", "text/html", "application/xml", "", "*/*",
        "application/x-www-form-urlencoded; charset=utf-16",
    ]) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
    data = draw(st.binary(max_size=200) | st.just(b"email=a%40b.fr&name=x"))
    return kind, {"_data": data, "_ctype": content_type}, "maybe"


def _no_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _form(fields: dict) -> dict:
    """JSON-ish fields as a browser posts them (checkbox on = "y")."""
    body = form_body(fields)
    body["lf_token"] = aged_token(SLUG)
    body["_csrf"] = True
    return body


# --- checks ----------------------------------------------------------------

def submission_count() -> int:
    count = session.execute(select(func.count()).select_from(Submission)).scalar()
    session.remove()
    return count


def newest_submission() -> Submission:
    row = session.execute(select(Submission).order_by(Submission.id.desc()).limit(1)).scalar_one()
    session.remove()
    return row


def check_json_answer(response, where):
    assert response.status_code < 500, where
    assert response.is_json, where
    body = response.get_json()
    assert isinstance(body, dict), where
    if response.status_code >= 400:
        message = body.get("error") or body.get("errors")
        assert message, where
        if isinstance(message, dict):
            assert all(isinstance(v, list) and v and all(isinstance(m, str) and m for m in v)
                       for v in message.values()), where


def check_html_answer(response, where):
    assert response.status_code < 500, where
    if response.status_code >= 400:
        text = response.get_data(as_text=True)
        assert response.mimetype in ("text/html", "application/json"), where
        assert len(text) > 20, where


def refused_unread(response, client) -> bool:
    """The one answer that keeps nothing (README): a body over
    MAX_CONTENT_LENGTH, refused with 413 before it is read."""
    if response.status_code != 413:
        return False
    assert response.request.content_length > client.application.config["MAX_CONTENT_LENGTH"]
    return True


def check_well_formed_stored(before: int, fields: dict, where: str):
    assert submission_count() == before + 1, where
    row = newest_submission()
    assert row.verdict in ("accepted", "excluded", "review"), (row.verdict, row.errors, where)
    assert row.email == fields["email"].strip().replace("\x00", "")[:320], where
    if row.verdict == "accepted":
        email = normalize_email(fields["email"])
        lead = session.execute(select(Lead).where(Lead.email == email)).scalar_one()
        session.remove()
        assert row.lead_id == lead.id, where


# --- the properties --------------------------------------------------------

@SETTINGS
@given(posts=st.lists(json_post(), min_size=1, max_size=6))
def test_json_submit_never_fails_and_keeps_what_it_reads(client, posts):
    for kind, kwargs, expect in posts:
        before = submission_count()
        response = client.post(JSON_URL, **kwargs)
        where = f"{kind}: {response.status_code} {response.get_data()[:300]!r} for {_short(kwargs)}"
        event(f"json {kind} -> {response.status_code}")
        check_json_answer(response, where)
        if expect == "stored_valid":
            assert response.status_code == 201, where
            check_well_formed_stored(before, kwargs["json"]["fields"], where)
        elif expect == "stored":
            assert 400 <= response.status_code < 500 or response.status_code == 201, where
            if refused_unread(response, client):  # a huge field of 4-byte characters, \u-escaped
                assert submission_count() == before, where
                continue
            assert submission_count() == before + 1, where
            if response.status_code >= 400:
                assert newest_submission().verdict == "invalid", where
        else:  # some other content type: a 415 and nothing kept, or read as JSON
            assert response.status_code in (201, 400, 415, 422), where
            assert submission_count() == before + 1, where  # a 415 keeps the body too


@SETTINGS
@given(posts=st.lists(html_post(), min_size=1, max_size=6), data=st.data())
def test_html_post_never_fails_and_keeps_what_it_reads(client, posts, data):
    csrf = csrf_from(client.get(HTML_URL).get_data(as_text=True))
    for kind, spec, expect in posts:
        query = data.draw(st.none() | st.dictionaries(html_text, html_text, max_size=3)
                          | st.just({"frame": "1"}), label="query")
        kwargs = {"query_string": query} if query else {}
        if "_data" in spec:
            kwargs.update(data=spec["_data"], content_type=spec["_ctype"])
        else:
            body = dict(spec.get("_fields", spec))
            body.pop("_csrf", None)
            if spec.get("_csrf", False) and "csrf_token" not in body:
                body["csrf_token"] = csrf
            if kind == "valid":
                body["csrf_token"] = csrf
            kwargs["data"] = body
            kwargs["content_type"] = data.draw(st.sampled_from(FORM_TYPES), label="content type")
        # as a browser posting our own page would (a framed post checks it)
        kwargs["headers"] = {"Origin": "http://localhost"}
        before = submission_count()
        response = client.post(HTML_URL, **kwargs)
        where = f"{kind}: {response.status_code} {response.get_data()[:300]!r} for {_short(kwargs)}"
        event(f"html {kind} -> {response.status_code}")
        check_html_answer(response, where)
        if expect == "stored_valid":
            assert response.status_code in (200, 303), where
            check_well_formed_stored(before, spec, where)
        elif expect == "stored":
            assert response.status_code in (200, 303, 400, 413, 422), where
            assert submission_count() == before + (not refused_unread(response, client)), where
        else:
            assert response.status_code in (200, 400, 415, 422), where
            assert submission_count() == before + 1, where  # a 415 keeps the body too


def _short(kwargs) -> str:
    text = repr(kwargs)
    return text if len(text) < 600 else text[:600] + f"... ({len(text)} chars)"


# --- a few bodies worth naming ----------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"fields": {"name": "a\\u0000b", "\\u0000": "\\u0000"}, "token": "x"}',
    b'{"fields": {"name": "\\ud800"}, "token": "x"}',
    b'{"fields": {"email": NaN, "name": Infinity}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"fields": {"name": "\xff"}}',
    b"\x00" * 10,
    b'{"fields": {"a": ' + b"[" * 980 + b"]" * 980 + b'}, "token": "x"}',  # parses, too deep to keep as is
    b'{"fields": {"a": ' + b"[" * 40 + b"]" * 40 + b'}, "token": "x"}',
])
def test_json_bodies_postgresql_would_refuse_are_kept(client, body):
    before = submission_count()
    response = client.post(JSON_URL, data=body, content_type="application/json")
    check_json_answer(response, repr(body[:80]))
    assert response.status_code in (400, 422)
    assert submission_count() == before + 1


def test_numbers_and_surrogates_postgresql_would_refuse_are_kept(client):
    fields = person(email="odd.numbers@acme-widgets.com") | {"big": 10**30, "nan": float("nan"),
                                                             "inf": float("-inf"), "odd": "x\ud83d"}
    response = client.post(JSON_URL, data=json.dumps({"fields": fields, "token": aged_token(SLUG)}),
                           content_type="application/json")
    assert response.status_code == 201, response.get_json()
    row = newest_submission()
    assert row.verdict == "accepted" and row.payload["big"] == 10**30
    assert (row.payload["nan"], row.payload["inf"], row.payload["odd"]) == ("NaN", "-Infinity", "x" + "\ufffd" * 3)
    nested = person(email="nested@acme-widgets.com") | {"extra": [[{"a": [1.5, None, "\x00"]}]] * 3}
    response = client.post(JSON_URL, json={"fields": nested, "token": aged_token(SLUG)})
    assert response.status_code == 422 and response.get_json()["errors"] == {"extra": ["must be a string"]}
    assert newest_submission().payload["extra"][2] == [{"a": [1.5, None, ""]}]


def test_nul_bytes_in_a_well_formed_post_are_dropped_not_fatal(client):
    fields = person(email="nul.bytes@acme-widgets.com", name="Cami\x00lle", message="a\x00b",
                    utm_source="news\x00letter") | {"\x00extra": "\x00"}
    response = client.post(JSON_URL, json={"fields": fields, "token": aged_token(SLUG)})
    assert response.status_code == 201, response.get_json()
    row = newest_submission()
    assert row.verdict == "accepted" and row.payload["name"] == "Camille"
    assert row.payload["message"] == "ab" and row.utm_source == "newsletter"
    html = client.post(HTML_URL, data={"na\x00me": "\x00", "email": "x\x00@y.fr"})
    assert html.status_code == 422
