"""Test data for the capture path."""
import re
import time

from itsdangerous import URLSafeTimedSerializer


def aged_token(slug: str, seconds: float = 12, secret: str = "test-secret") -> str:
    """A render token minted `seconds` ago, as if a person took that long."""
    return URLSafeTimedSerializer(secret, salt="form-render").dumps(
        {"f": slug, "t": int((time.time() - seconds) * 1000)})


def person(**overrides) -> dict:
    fields = {"name": "Camille Martin", "company": "Boulangeries Réunies", "email": "camille.martin@boulangeries.fr",
              "job_title": "Directrice marketing", "segment": "pme", "intent": "contact_sales",
              "message": "Nous voulons automatiser nos relances.", "consent": True}
    fields.update(overrides)
    return fields


def english_person(**overrides) -> dict:
    fields = {"name": "Jordan Smith", "company": "Acme Widgets", "email": "jordan@acme-widgets.com",
              "job_title": "Head of Growth", "segment": "midmarket", "intent": "demo_or_quote",
              "message": "Looking for a nurture tool.", "consent": True}
    fields.update(overrides)
    return fields


def post_json(client, slug, fields, token=None, origin=None, **kw):
    headers = {"Origin": origin} if origin else {}
    return client.post(f"/f/{slug}/submit", json={"fields": fields, "token": token or aged_token(slug)},
                       headers=headers, **kw)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def form_body(fields: dict) -> dict:
    body = {}
    for key, value in fields.items():
        if value is True:
            body[key] = "y"
        elif value not in (False, None):
            body[key] = value
    return body
