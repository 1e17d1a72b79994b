"""API v1: bearer tokens, POST /events, GET /leads/<email>, the OpenAPI
description and `leadflow tokens ...`."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.db import session
from app.models import ApiToken, Event, Lead, Mail, StageChange
from tests import factories

FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["tokens", *args])


def new_token(app, name="crm") -> str:
    result = cli(app, "create", "--name", name)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def token(app):
    return new_token(app)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def post_event(client, token, body, **headers):
    return client.post("/api/v1/events", data=json.dumps(body) if not isinstance(body, (str, bytes)) else body,
                       headers={"Content-Type": "application/json", **auth(token), **headers})


def count(model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# --- tokens and authentication ------------------------------------------------------

def test_token_cli_create_list_revoke(app):
    plain = new_token(app, "crm")
    assert len(plain) >= 40
    with app.app_context():
        stored = session.execute(select(ApiToken)).scalar_one()
        assert stored.name == "crm" and stored.token_hash != plain and len(stored.token_hash) == 64
    listing = cli(app, "list")
    assert "crm" in listing.output and "active" in listing.output and plain not in listing.output
    assert cli(app, "create", "--name", "crm").exit_code != 0  # one live token per name
    assert cli(app, "revoke", "nobody").exit_code != 0
    assert cli(app, "revoke", "crm").exit_code == 0
    assert "revoked" in cli(app, "list").output
    assert new_token(app, "crm") != plain  # the name is free again


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_malformed_authorization_is_401(client, token, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/api/v1/leads/lea@acme.fr", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["status"] == 401 and "token" in response.json["error"]


def test_wrong_and_revoked_tokens_are_401(app, client, token):
    for wrong in ("nope", token + "x", token.upper(), "é" * 10):
        response = client.get("/api/v1/leads/lea@acme.fr", headers=auth(wrong))
        assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert client.get("/api/v1/leads/lea@acme.fr", headers=auth(token)).status_code == 404
    cli(app, "revoke", "crm")
    response = post_event(client, token, {"email": "lea@acme.fr", "kind": "newsletter_subscribed"})
    assert response.status_code == 401 and "revoked" in response.json["error"]
    with app.app_context():
        assert count(Lead) == 0


def test_last_used_at_is_recorded(app, client, token):
    with app.app_context():
        assert session.execute(select(ApiToken.last_used_at)).scalar() is None
    client.get("/api/v1/leads/lea@acme.fr", headers=auth(token))
    with app.app_context():
        assert session.execute(select(ApiToken.last_used_at)).scalar() is not None


# --- POST /events -----------------------------------------------------------------------

def test_unknown_email_and_a_kind_that_does_not_create_leads_is_404(app, client, token):
    response = post_event(client, token, {"email": "new@acme.fr", "kind": "page_visited",
                                          "properties": {"url": "https://acme.fr/"}})
    assert response.status_code == 404
    assert response.json["error"] == "unknown lead; this kind does not create leads"
    with app.app_context():
        assert count(Lead) == 0 and count(Event) == 0


def test_newsletter_subscription_creates_a_subscriber(app, client, token):
    response = post_event(client, token, {"email": "  Nouveau@ACME.fr ", "kind": "newsletter_subscribed"})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["duplicate"] is False and body["lead_created"] is True
    assert (body["points"], body["score"], body["stage"], body["temperature"]) == (10, 10, "subscriber", None)
    with app.app_context():
        lead = session.execute(select(Lead)).scalar_one()
        assert lead.email == "nouveau@acme.fr" and lead.stage == "subscriber"
        change = session.execute(select(StageChange)).scalar_one()
        assert (change.from_stage, change.to_stage, change.actor) == (None, "subscriber", "api:crm")
        event = session.get(Event, body["event_id"])
        assert event.source == "api:crm" and event.key is None
    # a webinar registration for someone unknown makes a "lead"
    response = post_event(client, token, {"email": "webinar@acme.fr", "kind": "webinar_registered",
                                          "properties": {"webinar": "2026-12-live-demo"}})
    assert response.status_code == 201 and response.json["stage"] == "lead"


def test_idempotency_key_records_once(any_db_url, app_factory):
    app = app_factory(any_db_url)
    client, plain = app.test_client(), new_token(app)
    factories_lead(app)
    body = {"email": "lea@acme.fr", "kind": "asset_downloaded", "properties": {"asset": "ebook-2026"},
            "key": "download-991"}
    first = post_event(client, plain, body)
    again = post_event(client, plain, body)
    assert first.status_code == 201 and first.json["duplicate"] is False and first.json["points"] == 15
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert again.json["event_id"] == first.json["event_id"] and again.json["score"] == 15
    with app.app_context():
        event = session.execute(select(Event)).scalar_one()
        assert event.key == "api:download-991"
    # without a key, every call is an event
    del body["key"]
    assert post_event(client, plain, body).status_code == 201
    assert post_event(client, plain, body).status_code == 201
    with app.app_context():
        assert count(Event) == 3


def factories_lead(app, email="lea@acme.fr", **attributes):
    with app.app_context():
        return factories.lead(email, **attributes).id


@pytest.mark.parametrize("given_at, stored", [
    ("2026-01-15T09:30:00Z", datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc)),
    ("2026-01-15T10:30:00+01:00", datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc)),
    ("2026-01-15T09:30:00.250+00:00", datetime(2026, 1, 15, 9, 30, 0, 250000, tzinfo=timezone.utc)),
])
def test_occurred_at_is_parsed(app, client, token, given_at, stored):
    factories_lead(app)
    response = post_event(client, token, {"email": "lea@acme.fr", "kind": "linkedin_followed",
                                          "occurred_at": given_at})
    assert response.status_code == 201
    with app.app_context():
        assert session.get(Event, response.json["event_id"]).occurred_at == stored


@pytest.mark.parametrize("given_at, words", [
    ("2026-01-15T09:30:00", "time zone"), ("2026-01-15", "time zone"), ("yesterday", "ISO 8601"),
    ("2026-13-01T00:00:00Z", "ISO 8601"), ("1969-12-31T23:59:59Z", "1970"), (1767225600, "string"),
    # the date is computed at collection: a stable id keeps xdist workers agreeing
    pytest.param((datetime.now(timezone.utc) + timedelta(days=2)).isoformat(), "future", id="two-days-ahead"),
])
def test_bad_occurred_at_is_422(app, client, token, given_at, words):
    factories_lead(app)
    response = post_event(client, token, {"email": "lea@acme.fr", "kind": "linkedin_followed",
                                          "occurred_at": given_at})
    assert response.status_code == 422
    (problem,) = response.json["errors"]
    assert problem["field"] == "occurred_at" and words in problem["message"]


@pytest.mark.parametrize("body, field", [
    ({"kind": "page_visited"}, "email"),
    ({"email": "lea@acme.fr"}, "kind"),
    ({"email": "not-an-email", "kind": "page_visited"}, "email"),
    ({"email": 42, "kind": "page_visited"}, "email"),
    ({"email": "lea@acme.fr", "kind": "Page Visited!"}, "kind"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "properties": []}, "properties"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "properties": {"a": {"nested": 1}}}, "properties.a"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "properties": {"a": "x\u0000y"}}, "properties.a"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "properties": {"a": "\ud800"}}, "properties.a"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "properties": {"a": "1e400"}}, "properties.a"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "key": ""}, "key"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "key": 7}, "key"),
    ({"email": "lea@acme.fr", "kind": "page_visited", "score": 100}, "score"),
])
def test_invalid_fields_are_422_and_name_the_field(app, client, token, body, field):
    factories_lead(app)
    raw = json.dumps(body).replace('"1e400"', "1e400")  # a JSON number too large for a float
    response = post_event(client, token, raw)
    assert response.status_code == 422, response.json
    assert any(e["field"].startswith(field) for e in response.json["errors"]), response.json
    assert field.split(".")[0] in response.json["error"]
    with app.app_context():
        assert count(Event) == 0


@pytest.mark.parametrize("raw, content_type, status", [
    ("{not json", "application/json", 400), (b"\xff\xfe{}", "application/json", 400),
    ('{"email": NaN}', "application/json", 400), ("[" * 5000 + "]" * 5000, "application/json", 400),
    ('{"email": "lea@acme.fr", "kind": "x"}', "text/plain", 415),
    ("[]", "application/json", 422), ("null", "application/json", 422),
    ('{"email": "lea@acme.fr", "kind": "x", "properties": {"p": "' + "x" * 70_000 + '"}}',
     "application/json", 413),
])
def test_unreadable_bodies_are_4xx(app, client, token, raw, content_type, status):
    response = client.post("/api/v1/events", data=raw, headers={**auth(token), "Content-Type": content_type})
    assert response.status_code == status and response.json["error"]


@given(body=st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                               max_size=3), max_leaves=10),
    st.fixed_dictionaries(
        {"email": st.sampled_from(["lea@acme.fr", "x", "", "a@b", "é@é.fr", "lea@acme.fr\x00"]) | st.text(max_size=20),
         "kind": st.sampled_from(["newsletter_subscribed", "page_visited", "webinar_registered", "Bad kind"]),
         "properties": st.dictionaries(st.text(max_size=8), st.none() | st.text(max_size=10) | st.integers()
                                       | st.floats() | st.booleans(), max_size=3)},
        optional={"key": st.none() | st.text(max_size=12) | st.integers(),
                  "occurred_at": st.none() | st.text(max_size=30) | st.datetimes().map(lambda d: d.isoformat())})))
@FUZZ
def test_the_api_never_answers_500(client, token, body):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    response = client.post("/api/v1/events", data=raw,
                           headers={**auth(token), "Content-Type": "application/json"})
    assert response.status_code in (200, 201, 400, 404, 413, 422), response.data
    assert response.json["error"] if response.status_code >= 400 else response.json["event_id"]


# --- the worked example, through the API -----------------------------------------------------

WORKED_EXAMPLE = [
    ("newsletter_subscribed", {}),  # first: it is the one that creates the lead
    ("page_visited", {"url": "https://www.acme-site.example/"}),
    ("article_read", {"article": "nurture-101"}),
    ("linkedin_followed", {}),
    ("asset_downloaded", {"asset": "ebook-2026"}),
    ("webinar_registered", {"webinar": "2026-12-live-demo"}),
]


def test_worked_example_through_the_api_makes_an_mql(app, client, token):
    answers = [post_event(client, token, {"email": "camille@acme.fr", "kind": kind, "properties": props})
               for kind, props in WORKED_EXAMPLE]
    assert [a.status_code for a in answers] == [201] * 6
    assert [a.json["points"] for a in answers] == [10, 1, 5, 5, 15, 15]
    last = answers[-1].json
    assert (last["score"], last["stage"], last["temperature"]) == (51, "mql", "warm")
    assert [a.json["stage"] for a in answers[:-1]] == ["subscriber"] * 5
    with app.app_context():
        lead_id = session.execute(select(Lead.id)).scalar_one()
        moves = session.execute(select(StageChange.from_stage, StageChange.to_stage, StageChange.actor)
                                .where(StageChange.lead_id == lead_id).order_by(StageChange.id)).all()
        assert moves == [(None, "subscriber", "api:crm"), ("subscriber", "mql", "rule:score")]
        assert count(Mail) == 0  # no salesperson to tell, but the hand-off ran
    found = client.get("/api/v1/leads/Camille@ACME.fr", headers=auth(token))
    assert found.status_code == 200
    lead = found.json
    assert (lead["email"], lead["stage"], lead["score"], lead["temperature"]) == \
        ("camille@acme.fr", "mql", 51, "warm")
    assert set(lead["scores"]) == {"main", "product_b"} and lead["scores"]["main"] == 51
    assert lead["owner"] is None and lead["mql_at"] and lead["created_at"].endswith("+00:00")
    assert {"name", "company"} <= set(lead)


def test_get_lead_shows_owner_and_profile(app, client, token):
    with app.app_context():
        claire = factories.user()
        lead = factories.lead("lea@acme.fr", name="Léa Martin", company="Acme")
        lead.owner_id = claire.id
        session.commit()
    body = client.get("/api/v1/leads/lea@acme.fr", headers=auth(token)).json
    assert (body["name"], body["company"], body["owner"], body["stage"], body["score"]) == \
        ("Léa Martin", "Acme", "claire.sales@leadflow.example", "lead", 0)


def test_get_unknown_or_invalid_lead(client, token):
    assert client.get("/api/v1/leads/nobody@acme.fr", headers=auth(token)).status_code == 404
    response = client.get("/api/v1/leads/not-an-email", headers=auth(token))
    assert response.status_code == 422 and "email" in response.json["error"]


# --- OpenAPI -------------------------------------------------------------------------------------

def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_describes_both_endpoints(client):
    response = client.get("/api/v1/openapi.json")  # no token needed to read the description
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.1") and spec["info"]["title"]
    assert spec["servers"][0]["url"] == "http://127.0.0.1:5000/api/v1"
    assert set(spec["paths"]) == {"/events", "/leads/{email}"}
    assert spec["components"]["securitySchemes"]["bearer"] == {
        **spec["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearer": []}]
    for ref in set(_refs(spec)):  # every reference resolves
        node = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert "401" in operation["responses"] and "404" in operation["responses"]
            assert all(r["description"] for r in operation["responses"].values())
    assert {"201", "200", "400", "413", "415", "422"} <= set(spec["paths"]["/events"]["post"]["responses"])
    # the schema says what the code accepts
    event_in = spec["components"]["schemas"]["EventIn"]
    assert set(event_in["properties"]) == {"email", "kind", "properties", "key", "occurred_at"}
    assert event_in["additionalProperties"] is False
