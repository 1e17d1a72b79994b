"""Real services for integration tests: an SMTP server (aiosmtpd), an HTTP
receiver for webhooks, and a Celery worker process on Redis."""
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.helpers import free_port


@dataclass
class ReceivedMail:
    sender: str
    recipients: list
    message: email.message.EmailMessage
    raw: bytes


class SmtpSink:
    """aiosmtpd server keeping what it receives. A handler may be told to
    answer a code for some recipients (to test bounces and retries)."""

    def __init__(self):
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        self.reject: dict[str, str] = {}  # recipient → SMTP reply, e.g. "550 no such user"
        # aiosmtpd's Controller refuses port 0: pick a free port first.
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message,
                                              envelope.content))
        return "250 Message accepted"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def wait_for(self, predicate, timeout=20.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no matching email within {timeout} s; got {len(self.messages)}")

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


@dataclass
class ReceivedHook:
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class HookReceiver:
    """A local HTTP server standing in for the CRM. `status` is what it
    answers (set it to 500 to make leadflow retry)."""

    def __init__(self):
        self.received: list[ReceivedHook] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(ReceivedHook(self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leadflow"

    def wait_for(self, count=1, timeout=20.0) -> list[ReceivedHook]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} webhook(s) within {timeout} s, wanted {count}")

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()


class CeleryWorker:
    """A real `celery worker` process for the app, configured through the
    environment as in production."""

    def __init__(self, env: dict, concurrency: int = 2, pool: str = "prefork", beat: bool = False):
        self.env = {**os.environ, **env}
        self.args = [sys.executable, "-m", "celery", "-A", "app.tasks", "worker", "--loglevel", "INFO",
                     "--concurrency", str(concurrency), "--pool", pool, "--without-gossip",
                     "--without-mingle", "--hostname", f"test{free_port()}@%h"]
        if beat:
            self.args.append("--beat")
        self.process = None
        self.output: list[str] = []

    def start(self, timeout=30.0):
        self.process = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def pump():
            for line in self.process.stdout:
                self.output.append(line)
                if " ready." in line:
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("celery worker did not start:\n" + "".join(self.output[-40:]))
        return self

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 20.0) -> list[re.Match]:
        """The log is read by a thread: a line the worker has written may not
        be in `output` yet when the mail it sent has arrived, so wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, "".join(self.output)))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} seen {len(found)} times, wanted {count}:\n"
                                     + "".join(self.output[-40:]))
            time.sleep(0.05)

    def kill(self):
        """SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def redis_db_for_worker() -> int:
    """Each xdist worker gets its own Redis database, so queues never mix."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 1 + int("".join(ch for ch in worker if ch.isdigit()) or 0)
