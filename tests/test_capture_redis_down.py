"""A submission never fails because Redis (the rate limits' storage) is down.

A private redis-server (the shared one on 6379 is used by other tests) backs
Flask-Limiter; one submission goes through it, then the server is killed and
the next submission must still be answered 201, stored and made a lead,
quickly (Flask-Limiter falls back to in-memory limits).
"""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis
from sqlalchemy import select

from app import db, migrate
from app.db import session
from app.extensions import limiter
from app.models import Lead, Submission
from tests.capture_data import english_person, person, post_json
from tests.helpers import create_pg_database, drop_pg_database, free_port

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]


@pytest.fixture(scope="module")
def pg_url():
    """A database of this module's own, so that no other test session
    (they share leadflow_test_<worker>) truncates it under our counts."""
    url = create_pg_database(f"leadflow_redis_down_{os.getpid()}")
    migrate.upgrade(url)
    yield url
    db.session.remove()
    drop_pg_database(url)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of our own on a free port: (url, process)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the private redis-server did not start")
            time.sleep(0.05)
    # Flask-Limiter's one global Limiter remembers "storage dead" across the
    # apps a test process builds (init_app does not reset it): start and end
    # each test with a live storage, as a freshly started process would.
    limiter._storage_dead = False
    yield url, process, client
    limiter._storage_dead = False
    if process.poll() is None:
        process.kill()
    process.wait(10)


def stored(email: str) -> Submission:
    row = session.execute(select(Submission).where(Submission.email == email)).scalar_one()
    session.remove()
    return row


def lead(email: str) -> Lead | None:
    row = session.execute(select(Lead).where(Lead.email == email)).scalar_one_or_none()
    session.remove()
    return row


def test_submission_succeeds_when_redis_dies(app_factory, pg_url, private_redis):
    url, process, client = private_redis
    app = app_factory(pg_url, REDIS_URL=url, RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="100/minute")
    assert app.config["RATELIMIT_STORAGE_URI"] == url
    web = app.test_client()

    first = post_json(web, "contact", person(email="before@acme-widgets.com"))
    assert first.status_code == 201, first.get_json()
    assert first.headers.get("X-RateLimit-Remaining") == "99"
    assert any(b"LIMITS" in key for key in client.keys("*")), "the limit was not counted in Redis"
    assert stored("before@acme-widgets.com").verdict == "accepted"

    process.send_signal(signal.SIGKILL)
    process.wait(10)

    started = time.monotonic()
    second = post_json(web, "contact", person(email="after@acme-widgets.com"))
    elapsed = time.monotonic() - started
    assert second.status_code == 201, second.get_data(as_text=True)[:500]
    assert second.get_json()["result"] == "received"
    submission = stored("after@acme-widgets.com")
    assert submission.verdict == "accepted" and submission.lead_id is not None
    assert lead("after@acme-widgets.com").stage == "lead"
    print(f"\nsubmission with Redis killed answered in {elapsed * 1000:.0f} ms")
    assert elapsed < 2, f"the submission took {elapsed:.1f} s with Redis down"

    # Later ones too, on both paths, while the limits count in memory.
    started = time.monotonic()
    for i in range(3):
        response = post_json(web, "contact-en", english_person(email=f"later{i}@acme-widgets.com"))
        assert response.status_code == 201
    assert web.post("/f/contact-en", data={"email": "x"}).status_code == 422
    assert time.monotonic() - started < 2
    assert lead("later2@acme-widgets.com") is not None


def test_the_limit_still_holds_in_memory_when_redis_dies(app_factory, pg_url, private_redis):
    url, process, _client = private_redis
    app = app_factory(pg_url, REDIS_URL=url, RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="3/minute")
    web = app.test_client()
    assert post_json(web, "contact", person(email="r0@acme-widgets.com")).status_code == 201
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    statuses = [post_json(web, "contact", person(email=f"r{i}@acme-widgets.com")).status_code
                for i in range(1, 6)]
    # Memory starts counting afresh: three more pass, then the limit answers.
    assert statuses == [201, 201, 201, 429, 429]
    assert all(stored(f"r{i}@acme-widgets.com").verdict == "accepted" for i in range(4))


def test_submission_is_quick_when_redis_hangs(app_factory, pg_url, private_redis):
    """A Redis that accepts connections but never answers (stopped, or a
    network black hole) must not hold a submission for long either."""
    url, process, _client = private_redis
    app = app_factory(pg_url, REDIS_URL=url, RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="100/minute")
    web = app.test_client()
    assert post_json(web, "contact", person(email="hang0@acme-widgets.com")).status_code == 201
    process.send_signal(signal.SIGSTOP)
    answers = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answers.append(
        post_json(web, "contact", person(email="hang1@acme-widgets.com")).status_code))
    thread.start()
    thread.join(2)
    elapsed = time.monotonic() - started
    process.send_signal(signal.SIGCONT)  # lets a stuck request finish before the next test
    thread.join(30)
    assert answers == [201]
    assert stored("hang1@acme-widgets.com").verdict == "accepted"
    assert elapsed < 2, f"the submission was not answered within {elapsed:.1f} s with Redis hung"
