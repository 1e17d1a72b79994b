"""The submit path, as a browser or the embed script would use it, on
PostgreSQL and on SQLite."""
import json

import pytest
from sqlalchemy import func, select

from app.db import session
from app.models import Event, Lead, StageChange, Submission
from tests.capture_data import aged_token, csrf_from, english_person, form_body, person, post_json

ORIGIN = None  # set per test from the embed port


@pytest.fixture
def db_app(app_factory, any_db_url):
    return app_factory(any_db_url)


@pytest.fixture
def db_client(db_app):
    return db_app.test_client()


def count(model, *where):
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar()


def test_json_submission_creates_lead_and_event(db_client, embed_port):
    response = post_json(db_client, "contact", person(), origin=f"http://127.0.0.1:{embed_port}")
    assert response.status_code == 201, response.get_json()
    assert response.headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{embed_port}"
    assert "Merci" in response.get_json()["message"]
    lead = session.execute(select(Lead)).scalar_one()
    assert (lead.email, lead.stage, lead.company, lead.segment) == (
        "camille.martin@boulangeries.fr", "lead", "Boulangeries Réunies", "pme")
    assert lead.consent is True and lead.language == "fr" and lead.first_form == "contact"
    submission = session.execute(select(Submission)).scalar_one()
    assert (submission.verdict, submission.channel, submission.lead_id) == ("accepted", "script", lead.id)
    assert submission.fill_ms >= 11000
    event = session.execute(select(Event)).scalar_one()
    assert (event.kind, event.lead_id, event.properties["form"]) == ("form_submitted", lead.id, "contact")
    assert count(StageChange, StageChange.lead_id == lead.id, StageChange.to_stage == "lead") == 1


def test_second_submission_merges_and_fills_blanks(db_client):
    post_json(db_client, "contact", person(job_title="", company="Boulangeries Réunies"))
    post_json(db_client, "contact", person(email="Camille.Martin@BOULANGERIES.fr", company="Autre Nom",
                                           job_title="CMO", intent="demo_or_quote"))
    lead = session.execute(select(Lead)).scalar_one()
    assert lead.company == "Boulangeries Réunies"  # not erased by the later answer
    assert lead.job_title == "CMO"  # a blank filled
    assert lead.intent == "demo_or_quote"  # what they want now
    assert count(Submission) == 2 and count(Event, Event.kind == "form_submitted") == 2


def test_hosted_html_post_with_csrf(db_client):
    page = db_client.get("/f/contact-en?utm_source=newsletter&utm_medium=email")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'value="newsletter"' in html and "frame-ancestors 'self'" == page.headers["Content-Security-Policy"]
    body = form_body(english_person()) | {"csrf_token": csrf_from(html), "lf_token": aged_token("contact-en"),
                                          "utm_source": "newsletter", "utm_medium": "email"}
    response = db_client.post("/f/contact-en", data=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert "Thank you" in response.get_data(as_text=True)
    lead = session.execute(select(Lead)).scalar_one()
    assert (lead.source, lead.medium, lead.stage) == ("newsletter", "email", "lead")
    assert session.execute(select(Submission.channel)).scalar_one() == "hosted"


def test_missing_csrf_keeps_submission_and_asks_again(db_client):
    response = db_client.post("/f/contact-en", data=form_body(english_person()) | {"lf_token": aged_token("contact-en")})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "session expired" in html and 'value="jordan@acme-widgets.com"' in html
    submission = session.execute(select(Submission)).scalar_one()
    assert submission.verdict == "invalid" and submission.payload["email"] == "jordan@acme-widgets.com"
    assert count(Lead) == 0


def test_field_errors_are_per_field_and_localized(db_client):
    response = post_json(db_client, "contact", person(email="pas-une-adresse", name=""))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"email", "name"}
    assert "adresse e-mail valide" in errors["email"][0]
    assert session.execute(select(Submission.verdict)).scalar_one() == "invalid"
    html = db_client.post("/f/contact-en", data={"email": "nope"}).get_data(as_text=True)
    assert 'aria-invalid="true"' in html and "Enter a valid email address" in html


def test_unknown_choice_is_a_field_error(db_client):
    response = post_json(db_client, "contact", person(segment="<script>alert(1)</script>", intent="buy"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"segment", "intent"}


@pytest.mark.parametrize("overrides,verdict,reasons,stage", [
    ({"intent": "none"}, "excluded", ["no_intent"], "disqualified"),
    ({"intent": "other"}, "review", ["other_intent"], None),
    ({"email": "lea@etu.univ-lyon1.fr"}, "excluded", ["student"], "disqualified"),
    ({"email": "paul@eu.hubspot.com"}, "excluded", ["competitor"], "disqualified"),
    ({"company": "HUBSPOT France SAS"}, "excluded", ["competitor"], "disqualified"),
    ({"email": "anne@gmail.com"}, "accepted", [], "lead"),
])
def test_verdicts_on_the_web_path(db_client, overrides, verdict, reasons, stage):
    assert post_json(db_client, "contact", person(**overrides)).status_code == 201
    submission = session.execute(select(Submission)).scalar_one()
    assert (submission.verdict, submission.reasons) == (verdict, reasons)
    lead = session.execute(select(Lead)).scalar_one_or_none()
    assert (lead.stage if lead else None) == stage
    if stage == "disqualified":
        assert lead.stage_reason == ", ".join(reasons)
        assert count(Event) == 0


def test_spam_is_kept_but_makes_no_lead(db_client):
    fields = person() | {"website": "http://spam.example"}
    assert post_json(db_client, "contact", fields).status_code == 201  # no hint to the bot
    too_fast = post_json(db_client, "contact", person(email="x@y.fr"), token=aged_token("contact", 0.3))
    assert too_fast.status_code == 201
    rows = session.execute(select(Submission.verdict, Submission.reasons).order_by(Submission.id)).all()
    assert rows == [("excluded", ["spam:honeypot"]), ("excluded", ["spam:too_fast"])]
    assert count(Lead) == 0


def test_token_for_another_form_or_forged_is_refused(db_client):
    for token in (aged_token("contact-en"), aged_token("contact", secret="not-ours"), "garbage"):
        response = post_json(db_client, "contact", person(), token=token)
        assert response.status_code == 400 and "token" in response.get_json()["errors"]
    assert count(Submission, Submission.verdict == "invalid") == 3 and count(Lead) == 0


def test_html_and_script_in_every_field_are_never_rendered(db_client):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    fields = {key: evil for key in ("name", "company", "job_title", "message")}
    response = db_client.post("/f/contact-en", data=fields | {"email": evil})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_unicode_and_a_megabyte(db_client):
    big = "é" * 400_000  # ~800 kB as UTF-8
    response = post_json(db_client, "contact", person(name="李娜 Nguyễn-O'Brien", message=big))
    assert response.status_code == 422 and set(response.get_json()["errors"]) == {"message"}
    stored = session.execute(select(Submission)).scalar_one()
    assert stored.payload["message"] == big and stored.payload["name"] == "李娜 Nguyễn-O'Brien"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/x-www-form-urlencoded"])
def test_a_megabyte_typed_in_the_hosted_form_is_kept(db_client, content_type):
    """Flask refuses a multipart field over 500 kB unless told otherwise: the
    hosted form must keep a megabyte in a field like the script embed does."""
    from tests.capture_data import csrf_from
    csrf = csrf_from(db_client.get("/f/contact").get_data(as_text=True))
    big = "é" * 600_000  # 1.2 MB as UTF-8
    response = db_client.post("/f/contact", content_type=content_type, headers={"Origin": "http://localhost"},
                              data={**person(email="big@acme-widgets.com", message=big), "csrf_token": csrf,
                                    "consent": "y"})
    assert response.status_code == 422, response.status_code  # too long for the message field, and said so
    stored = session.execute(select(Submission)).scalar_one()
    assert stored.payload["message"] == big


@pytest.mark.parametrize("kwargs,status", [
    ({"data": "x" * (10 * 1024 * 1024), "content_type": "application/json"}, 413),
    ({"data": "name=x", "content_type": "text/plain"}, 415),
    ({"data": "{not json", "content_type": "application/json"}, 400),
    ({"data": json.dumps([1, 2]), "content_type": "application/json"}, 400),
    ({"data": json.dumps({"fields": {"email": {"$ne": 1}}, "token": 5}), "content_type": "application/json"}, 422),
])
def test_bad_bodies_get_a_clear_4xx(db_client, kwargs, status):
    response = db_client.post("/f/contact/submit", **kwargs)
    assert response.status_code == status
    assert response.is_json and response.get_json().get("error") or response.get_json().get("errors")


def test_wrong_origin_and_unknown_form(db_client):
    assert post_json(db_client, "contact", person(), origin="https://evil.example").status_code == 403
    assert db_client.get("/f/nope").status_code == 404
    assert post_json(db_client, "nope", person()).status_code == 404
    preflight = db_client.options("/f/contact/submit", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_iframe_page_may_be_framed_by_allowed_origins(db_client, embed_port):
    response = db_client.get("/f/contact?frame=1")
    csp = response.headers["Content-Security-Policy"]
    assert f"http://127.0.0.1:{embed_port}" in csp and "postMessage" in response.get_data(as_text=True)


def test_embed_script_escapes_the_definition(app_factory, sqlite_url, forms_dir, tmp_path):
    evil = (forms_dir / "contact-en.yaml").read_text().replace("title: Talk to us",
                                                               "title: '</script><script>alert(1)</script>\u2028'")
    assert evil != (forms_dir / "contact-en.yaml").read_text()
    (tmp_path / "evil.yaml").write_text(evil)
    client = app_factory(sqlite_url, FORMS_DIR=str(tmp_path)).test_client()
    response = client.get("/f/evil/embed.js")
    assert response.mimetype == "text/javascript"
    script = response.get_data(as_text=True)
    assert "</script" not in script.lower() and '"slug": "evil"' in script
    assert "\\u003c/script>" in script and "\u2028" not in script


def test_rate_limit_answers_429(app_factory, pg_url):
    client = app_factory(pg_url, RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="3/minute").test_client()
    statuses = [post_json(client, "contact", person(email=f"p{i}@acme.fr")).status_code for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
