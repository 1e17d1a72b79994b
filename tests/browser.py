"""Shared browser fixtures: one Debian chromium per test session (per xdist
worker), a fresh browser context per test, leadflow on a live server against
PostgreSQL, and a static "company website" on a second origin (embed_port).

Loaded as a plugin by conftest.py (pytest_plugins), so every module shares
one chromium per worker; test modules import only the helpers.

Never downloads a browser: Playwright drives /usr/bin/chromium.
"""
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import migrate
from app.db import session
from tests.helpers import create_pg_database, drop_pg_database, free_port, live_server

CHROMIUM = os.environ.get("LEADFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 10_000  # a step that takes longer than this is a failure, not a slow pass

__all__ = ["CHROMIUM", "Leadflow", "Site", "type_slowly", "wait_until_human", "HUMAN_MS", "TIMEOUT_MS"]

# The too-fast spam rule is 2000 ms between rendering and posting: a person
# takes longer than that; we wait until this much time has passed.
HUMAN_MS = 2300


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh context (no cookies carried between tests) with one page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    yield tab
    context.close()


@pytest.fixture(scope="session")
def browser_pg_url():
    """A PostgreSQL database of this test process alone. The shared pg_url is
    named per xdist worker only, so two pytest runs at once (two people, CI
    jobs on one server) would share, truncate and even drop it under each
    other; the browser tests count rows, so they get their own."""
    url = create_pg_database(f"leadflow_browser_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}")
    migrate.upgrade(url)
    yield url
    drop_pg_database(url)


@dataclass
class Leadflow:
    app: object
    url: str


@pytest.fixture
def leadflow(app_factory, browser_pg_url):
    """leadflow served on a real socket, against PostgreSQL, with BASE_URL
    pointing at itself so the embed script posts back to it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = app_factory(browser_pg_url, BASE_URL=base)
    with live_server(app, port) as url:
        assert url == base
        yield Leadflow(app, url)
    session.remove()


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.pages.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Site:
    """A static website on the embed origin; tests put pages on it."""

    def __init__(self, server, port):
        self.server, self.port = server, port
        self.origin = f"http://127.0.0.1:{port}"

    def put(self, path: str, html: str) -> str:
        self.server.pages[path] = html
        return self.origin + path


@pytest.fixture(scope="session")
def _site_server(embed_port):
    server = ThreadingHTTPServer(("127.0.0.1", embed_port), _SiteHandler)
    server.daemon_threads = True
    server.pages = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def site(_site_server, embed_port):
    _site_server.pages.clear()
    return Site(_site_server, embed_port)


def type_slowly(locator, text: str, delay_ms: int = 12):
    """Click into a field and type key by key, as a person does."""
    locator.click()
    locator.press_sequentially(text, delay=delay_ms)


def wait_until_human(page, since: float, ms: int = HUMAN_MS):
    """Wait until `ms` have passed since `since` (time.monotonic())."""
    left = ms - (time.monotonic() - since) * 1000
    if left > 0:
        page.wait_for_timeout(left)


def login(page, base_url: str, email: str, password: str = "correct horse battery") -> None:
    """Log in through the real form, as a person would (reading it in English,
    whatever the browser's language: the pages after it follow the browser)."""
    page.goto(f"{base_url}/login?lang=en")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def new_tab(browser, locale: str):
    """A fresh context in this locale, its page collecting JavaScript errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    return context, tab


__all__ += ["login", "new_tab"]
