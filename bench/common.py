"""Shared pieces of the benchmarks: a fresh PostgreSQL database, gunicorn
started and stopped by pid, and a closed-loop HTTP load generator."""
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("LEADFLOW_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_conninfo() -> str:
    return make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(name: str) -> str:
    """Drops and creates `name`; returns its SQLAlchemy URL."""
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@contextmanager
def gunicorn(target: str, env: dict, workers: int = 2, ready_path: str = "/", log=None):
    """`gunicorn target` from the venv, sync workers on a free port; yields
    the port once `ready_path` answers. Stopped by its own pid (SIGTERM, then
    SIGKILL after 15 s)."""
    port = free_port()
    command = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "sync",
               "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "60", target]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                               stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn {target} exited with {process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", ready_path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn {target} did not answer {ready_path} within 30 s")
            time.sleep(0.1)
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@dataclass
class LoadResult:
    label: str
    seconds: float
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) < 2:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1]


def drive(label: str, port: int, path, make_body, seconds: float, threads: int,
          headers: dict | None = None) -> LoadResult:
    """Closed loop: `threads` clients, each posting make_body(thread, i) (bytes
    of JSON) as fast as answers come, for `seconds`; with make_body None they
    GET instead. `path` is a string, or path(thread, i) for a path per request.
    Connections are kept alive when the server allows it (sync gunicorn
    workers close them)."""
    result = LoadResult(label, seconds)
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def client(n: int):
        conn, sent, statuses, errors, latencies = None, 0, Counter(), Counter(), []
        start.wait()
        while time.monotonic() < stop_at[0]:
            body = make_body(n, sent) if make_body else None
            target = path(n, sent) if callable(path) else path
            sent += 1
            began = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                if body is None:
                    conn.request("GET", target, headers=headers or {})
                else:
                    conn.request("POST", target, body, {"Content-Type": "application/json", **(headers or {})})
                response = conn.getresponse()
                response.read()
                statuses[response.status] += 1
                latencies.append(time.perf_counter() - began)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            result.sent += sent
            result.statuses.update(statuses)
            result.errors.update(errors)
            result.latencies.extend(latencies)

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    stop_at[0] = began + seconds
    start.wait()
    for worker in workers:
        worker.join()
    result.seconds = time.monotonic() - began
    return result


# --- an SMTP sink in a process of its own ------------------------------------

class _CountingHandler:
    """aiosmtpd handler that only counts what it accepts (no parsing)."""

    def __init__(self, messages, size):
        self.messages, self.size = messages, size

    async def handle_DATA(self, server, session, envelope):
        with self.messages.get_lock():
            self.messages.value += 1
            self.size.value += len(envelope.content)
        return "250 Message accepted"


def _serve_sink(port, messages, size, ready, stop):
    from aiosmtpd.controller import Controller
    controller = Controller(_CountingHandler(messages, size), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


@dataclass
class SinkCounters:
    port: int
    messages: object   # multiprocessing.Value: emails accepted so far
    size: object       # multiprocessing.Value: bytes of those emails

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextmanager
def smtp_sink():
    """An aiosmtpd server in a spawned process (so that it does not share a
    GIL with what is measured), accepting and counting every email; yields
    its SinkCounters. Stopped through an event, then by its own pid."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    port = free_port()
    messages, size = context.Value("q", 0), context.Value("q", 0)
    ready, stop = context.Event(), context.Event()
    process = context.Process(target=_serve_sink, args=(port, messages, size, ready, stop), daemon=True)
    process.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")
        yield SinkCounters(port, messages, size)
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
