"""The admin page: users, API tokens, webhooks; through HTTP with CSRF
enforced, on PostgreSQL."""
import re

import pytest
from sqlalchemy import select

from app.api.auth import token_hash
from app.db import session
from app.models import ApiToken, User, Webhook, WebhookDelivery, utcnow
from tests import factories
from tests.test_auth import PASSWORD, login, make_user, token


@pytest.fixture
def people(app):
    with app.app_context():
        return {"root": make_user("root@leadflow.example", "admin", "Root"),
                "mia": make_user("mia@leadflow.example", "marketer", "Mia"),
                "claire": make_user("claire@leadflow.example", "sales", "Claire")}


@pytest.fixture
def root(app, people):
    client = app.test_client()
    assert login(client, "root@leadflow.example").status_code == 302
    return client


def post(client, path, follow=True, **data):
    data["csrf_token"] = token(client, "/admin")
    return client.post(path, data=data, follow_redirects=follow)


def user(app, email) -> User:
    with app.app_context():
        return session.execute(select(User).where(User.email == email)).scalar_one()


def test_create_a_user_who_then_logs_in(app, root):
    page = post(root, "/admin/users", email="Nina@Leadflow.example", name="Nina", role="sales",
                language="fr", manager="1", password="long enough password").get_data(as_text=True)
    assert "nina@leadflow.example can now log in as sales." in page
    nina = user(app, "nina@leadflow.example")
    assert (nina.role, nina.language, nina.is_manager, nina.active) == ("sales", "fr", True, True)
    assert nina.password_hash != "long enough password"
    assert login(app.test_client(), "nina@leadflow.example", "long enough password").status_code == 302


@pytest.mark.parametrize("data, problem", [
    ({"email": "x@leadflow.example", "role": "marketer", "password": "short"}, "at least 10 characters"),
    ({"email": "mia@leadflow.example", "role": "marketer", "password": "long enough password"}, "already exists"),
    ({"email": "x@leadflow.example", "role": "boss", "password": "long enough password"}, "role must be one of"),
])
def test_a_refused_user_is_explained(app, root, data, problem):
    response = post(root, "/admin/users", follow=False, name="X", **data)
    assert response.status_code == 422 and problem in response.get_data(as_text=True)
    assert 'value="x@leadflow.example"' in response.get_data(as_text=True) or data["email"].startswith("mia")


def test_deactivate_logs_out_and_reactivate(app, root, people):
    mia = app.test_client()
    assert login(mia, "mia@leadflow.example").status_code == 302
    page = post(root, f"/admin/users/{people['mia']}/active", active="0").get_data(as_text=True)
    assert "mia@leadflow.example deactivated" in page
    assert mia.get("/forms").status_code == 302  # logged out on the next request
    assert login(app.test_client(), "mia@leadflow.example").status_code == 200  # refused
    post(root, f"/admin/users/{people['mia']}/active", active="1")
    assert user(app, "mia@leadflow.example").active
    assert login(app.test_client(), "mia@leadflow.example").status_code == 302


def test_an_admin_cannot_deactivate_themselves(app, root, people):
    page = post(root, f"/admin/users/{people['root']}/active", active="0").get_data(as_text=True)
    assert "You cannot deactivate yourself." in page and user(app, "root@leadflow.example").active


def test_set_language(app, root, people):
    post(root, f"/admin/users/{people['claire']}/language", language="fr")
    assert user(app, "claire@leadflow.example").language == "fr"
    post(root, f"/admin/users/{people['claire']}/language", language="")
    assert user(app, "claire@leadflow.example").language is None
    assert post(root, f"/admin/users/{people['claire']}/language", language="xx").status_code == 400


def test_token_shown_once_works_then_revoked(app, root):
    response = post(root, "/admin/tokens", follow=False, name="crm")
    page = response.get_data(as_text=True)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    plain = re.search(r'id="new-token-value" class="code" type="text" readonly value="([^"]+)"', page).group(1)
    with app.app_context():
        stored = session.execute(select(ApiToken)).scalar_one()
        assert stored.token_hash == token_hash(plain) and stored.name == "crm"
    assert plain not in root.get("/admin").get_data(as_text=True)  # once
    api = app.test_client()
    headers = {"Authorization": f"Bearer {plain}"}
    assert api.get("/api/v1/leads/nobody@acme.fr", headers=headers).status_code == 404  # let in
    assert "Token crm revoked" in post(root, f"/admin/tokens/{stored.id}/revoke").get_data(as_text=True)
    assert api.get("/api/v1/leads/nobody@acme.fr", headers=headers).status_code == 401
    assert post(root, "/admin/tokens", follow=False, name="").status_code == 422


def test_webhook_create_toggle_and_deliveries(app, root):
    nothing = post(root, "/admin/webhooks", follow=False, url="https://crm.example.com/hooks", events="lead.bogus")
    assert nothing.status_code == 422 and "Choose at least one event" in nothing.get_data(as_text=True)
    response = post(root, "/admin/webhooks", follow=False, url="https://crm.example.com/hooks", events="lead.mql")
    page = response.get_data(as_text=True)
    assert response.status_code == 201
    secret = re.search(r'id="new-webhook-value" class="code" type="text" readonly value="([^"]+)"', page).group(1)
    with app.app_context():
        hook = session.execute(select(Webhook)).scalar_one()
        assert (hook.url, hook.secret, hook.active, hook.events) == \
            ("https://crm.example.com/hooks", secret, True, ["lead.mql"])
        lead = factories.lead()
        session.add(WebhookDelivery(webhook_id=hook.id, lead_id=lead.id, event="lead.mql", dedupe_key="k",
                                    payload={}, status="pending", attempts=3, created_at=utcnow(),
                                    log=[{"attempt": 3, "status": 503}]))
        session.commit()
        hook_id = hook.id
    page = root.get("/admin").get_data(as_text=True)
    assert secret not in page
    deliveries = page[page.index('id="deliveries"'):]
    assert "lead.mql" in deliveries and 'data-label="Attempts">3<' in deliveries and ">503<" in deliveries
    post(root, f"/admin/webhooks/{hook_id}/active", active="0")
    with app.app_context():
        assert not session.get(Webhook, hook_id).active
    for bad in ("ftp://crm.example.com", "crm.example.com", "javascript:alert(1)", "https://"):
        assert post(root, "/admin/webhooks", follow=False, url=bad, events="lead.mql").status_code == 422


def test_only_admins(app, client, people):
    for name in ("mia", "claire"):
        other = app.test_client()
        assert login(other, f"{name}@leadflow.example").status_code == 302
        assert other.get("/admin").status_code == 403
        csrf = token(other, "/sales/inbox" if name == "claire" else "/forms")
        for path in ("/admin/users", "/admin/tokens", "/admin/webhooks",
                     f"/admin/users/{people['root']}/active"):
            assert other.post(path, data={"csrf_token": csrf, "name": "x", "active": "0"}).status_code == 403
    assert client.get("/admin").status_code == 302
    root = app.test_client()
    login(root, "root@leadflow.example", PASSWORD)
    assert root.post("/admin/tokens", data={"name": "no-csrf"}).status_code == 400
    with app.app_context():
        assert session.execute(select(ApiToken)).first() is None
        assert session.get(User, people["root"]).active
