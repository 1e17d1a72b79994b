"""Login, logout, roles and the `leadflow users` commands, on PostgreSQL,
with CSRF enforced as in production."""
import re

import pytest
from sqlalchemy import select

from app.auth import safe_next
from app.db import session
from app.models import User
from tests import factories

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def token(client, path="/login") -> str:
    """The CSRF token of the session, read from a page as a browser would."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return TOKEN.search(response.get_data(as_text=True)).group(1)


def login(client, email, password=PASSWORD, next=None):
    data = {"csrf_token": token(client), "email": email, "password": password}
    if next is not None:
        data["next"] = next
    return client.post("/login", data=data)


def make_user(email, role, name=None, manager=False) -> int:
    return factories.user(email, name or email.split("@")[0], role=role, manager=manager).id


def test_login_then_logout(app, client):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    first = client.get("/forms")
    assert first.status_code == 302 and first.location == "/login?next=/forms"
    response = login(client, "mia@leadflow.example", next="/forms")
    assert response.status_code == 302 and response.location == "/forms"
    page = client.get("/forms")
    assert page.status_code == 200 and "<h1>Forms</h1>" in page.get_data(as_text=True)
    out = client.post("/logout", data={"csrf_token": token(client, "/forms")})
    assert out.status_code == 302 and out.location == "/login"
    assert client.get("/forms").status_code == 302


def test_email_is_case_insensitive_and_password_is_hashed(app, client):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
        stored = session.execute(select(User.password_hash)).scalar_one()
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    assert login(client, "  MIA@Leadflow.example ").status_code == 302


def test_wrong_password_and_unknown_email_get_the_same_answer(app, client):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    wrong = login(client, "mia@leadflow.example", "not the password")
    unknown = login(client, "nobody@leadflow.example", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/forms").status_code == 302  # still not logged in


def test_inactive_user_cannot_log_in_and_is_logged_out(app, client):
    with app.app_context():
        user_id = make_user("mia@leadflow.example", "marketer")
    assert login(client, "mia@leadflow.example").status_code == 302
    with app.app_context():
        session.get(User, user_id).active = False
        session.commit()
    assert client.get("/forms").status_code == 302
    assert "Wrong email or password." in login(client, "mia@leadflow.example").get_data(as_text=True)


def test_login_refuses_a_post_without_csrf_token(app, client):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    client.get("/login")  # a session exists, the token is simply missing
    response = client.post("/login", data={"email": "mia@leadflow.example", "password": PASSWORD})
    assert response.status_code == 400
    forged = client.post("/login", data={"email": "mia@leadflow.example", "password": PASSWORD,
                                         "csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.get("/forms").status_code == 302


def test_logout_needs_post_with_csrf_token(app, client):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    login(client, "mia@leadflow.example")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/forms").status_code == 200  # still logged in


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "\\\\evil.example", "javascript:alert(1)", "http:/evil.example",
                                    "evil.example", "/\t/evil.example"])
def test_next_cannot_leave_the_site(app, client, target):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
    response = login(client, "mia@leadflow.example", next=target)
    assert response.status_code == 302 and response.location == "/"


def test_safe_next_keeps_local_paths():
    assert safe_next("/sales/leads/3?tab=history") == "/sales/leads/3?tab=history"
    assert safe_next("https://evil.example/") is None and safe_next("") is None


def test_sales_user_is_kept_off_marketer_pages(app, client):
    with app.app_context():
        make_user("claire@leadflow.example", "sales")
    login(client, "claire@leadflow.example")
    assert client.get("/forms").status_code == 403
    home = client.get("/")
    assert home.status_code == 302 and home.location == "/sales/inbox"
    inbox = client.get("/sales/inbox").get_data(as_text=True)
    assert 'href="/sales/inbox" aria-current="page"' in inbox and 'href="/forms"' not in inbox  # the nav


def test_marketer_has_no_inbox_and_admin_has_everything(app):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer")
        make_user("root@leadflow.example", "admin")
    marketer, admin = app.test_client(), app.test_client()
    login(marketer, "mia@leadflow.example")
    login(admin, "root@leadflow.example")
    assert marketer.get("/sales/inbox").status_code == 403
    assert marketer.get("/").location.endswith("/overview")  # a marketer's home
    home = marketer.get("/overview").get_data(as_text=True)
    assert 'href="/forms"' in home and 'href="/sales/inbox"' not in home
    for path in ("/overview", "/forms", "/sales/inbox"):
        assert admin.get(path).status_code == 200, path


def test_json_request_gets_401_not_a_redirect(client):
    response = client.get("/sales/inbox", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.get_json()["status"] == 401


def test_login_is_rate_limited(app_factory, pg_url):
    app = app_factory(pg_url, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    statuses = [login(client, "nobody@leadflow.example", "guess").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert client.get("/login").status_code == 200  # only attempts count


# --- leadflow users ... --------------------------------------------------------

def test_cli_creates_and_lists_users(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--email", "Root@Leadflow.example", "--name", "Root",
                                 "--role", "admin", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "create", "--email", "boss@leadflow.example", "--name", "Boss",
                                 "--role", "sales", "--manager"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # the prompt hides it
    listing = runner.invoke(args=["users", "list"]).output
    assert "root@leadflow.example\tRoot\tadmin" in listing
    assert "boss@leadflow.example\tBoss\tsales (manager)" in listing
    assert login(client, "root@leadflow.example").status_code == 302
    assert client.get("/sales/inbox").status_code == 200


@pytest.mark.parametrize("args, message", [
    (["--role", "admin", "--password", "short"], "at least 10 characters"),
    (["--role", "boss", "--password", PASSWORD], "Invalid value for '--role'"),
    (["--role", "admin", "--email", "no-at-sign", "--password", PASSWORD], "not an email address"),
])
def test_cli_refuses_bad_users(app, args, message):
    email = [] if "--email" in args else ["--email", "x@leadflow.example"]
    base = ["users", "create", "--name", "X", *email]
    result = app.test_cli_runner().invoke(args=base + args)
    assert result.exit_code != 0 and message in result.output
    with app.app_context():
        assert session.execute(select(User)).first() is None


def test_cli_refuses_a_duplicate_email_and_mismatched_confirmation(app):
    runner = app.test_cli_runner()
    args = ["users", "create", "--email", "a@leadflow.example", "--name", "A", "--role", "sales"]
    assert runner.invoke(args=args + ["--password", PASSWORD]).exit_code == 0
    again = runner.invoke(args=["users", "create", "--email", "A@leadflow.example", "--name", "A2",
                                "--role", "sales", "--password", PASSWORD])
    assert again.exit_code != 0 and "already exists" in again.output
    mismatch = runner.invoke(args=["users", "create", "--email", "b@leadflow.example", "--name", "B",
                                   "--role", "sales"], input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    with app.app_context():
        assert session.execute(select(User.email).order_by(User.id)).scalars().all() == ["a@leadflow.example"]
