"""Fixtures: a fresh PostgreSQL database per test session (per xdist worker),
a SQLite file beside it, and an app bound to either."""
import os
import shutil
from pathlib import Path

import pytest
import yaml

from app import create_app, db, migrate
from app.config import PROJECT_ROOT
from tests.helpers import create_pg_database, drop_pg_database, free_port, truncate_all

os.environ.setdefault("LEADFLOW_INSTANCE", "/tmp/leadflow-test-instance")
# Every test process (and the Celery workers it starts, which inherit the
# environment) gets its own queue: runs sharing a Redis never take each
# other's tasks.
os.environ["CELERY_QUEUE"] = f"leadflow-test-{os.getpid()}"

# Browser fixtures live in one plugin: two modules each defining a session
# chromium would start two Playwright loops in one process, which fails.
pytest_plugins = ["tests.browser"]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_url():
    url = create_pg_database(f"leadflow_test_{_worker()}_{os.getpid()}")
    migrate.upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'leadflow.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def embed_port():
    """The port of the 'company website' that embeds our forms in browser tests."""
    return free_port()


@pytest.fixture(scope="session")
def forms_dir(tmp_path_factory, embed_port):
    """The demo forms, allowed to be embedded from the test site's origin."""
    target = tmp_path_factory.mktemp("forms")
    for path in (PROJECT_ROOT / "forms").glob("*.yaml"):
        shutil.copy(path, target / path.name)
        if path.name == "rules.yaml":
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["allowed_origins"] = [f"http://127.0.0.1:{embed_port}", f"http://localhost:{embed_port}"]
        (target / path.name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def make_app(url, forms_dir, **overrides):
    settings = {"DATABASE_URL": url, "SECRET_KEY": "test-secret", "TESTING": True,
                "FORMS_DIR": str(forms_dir), "RATELIMIT_ENABLED": False,
                "MIN_FILL_MS": 2000, "BASE_URL": "http://127.0.0.1:5000"}
    settings.update(overrides)
    return create_app(settings)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db_url(request, pg_url, sqlite_url):
    """Runs a test once on PostgreSQL and once on SQLite."""
    return pg_url if request.param == "postgresql" else sqlite_url


@pytest.fixture
def app_factory(forms_dir):
    created = []

    def factory(url, **overrides):
        app = make_app(url, forms_dir, **overrides)
        truncate_all(db.session.get_bind())
        created.append(app)
        return app
    yield factory
    db.session.remove()


@pytest.fixture
def app(app_factory, pg_url):
    return app_factory(pg_url)


@pytest.fixture
def client(app):
    return app.test_client()
