"""Celery: the app, its schedule and its tasks. Tasks are thin: they carry
ids only, call the code in the modules around them, and are idempotent
(every one of them claims its row before acting), so the sweep may re-queue
anything without harm.

With no CELERY_BROKER_URL (the embedded default) tasks run in-process.
"""
import logging
import os
import threading
import time

from celery import Celery, Task
from celery.signals import worker_process_init
from flask import current_app, has_app_context

from . import db

log = logging.getLogger(__name__)
_worker_app = None


def worker_app():
    """One Flask app per worker process, built from the environment."""
    global _worker_app
    if _worker_app is None:
        from . import create_app
        _worker_app = create_app()
    return _worker_app


class AppTask(Task):
    """Runs every task inside an app context and removes the session after."""

    def __call__(self, *args, **kwargs):
        if has_app_context():
            return self.run(*args, **kwargs)
        with worker_app().app_context():
            try:
                return self.run(*args, **kwargs)
            finally:
                db.session.remove()


celery = Celery("leadflow", task_cls=AppTask)


# Scores cool off between events (behaviour points decay): every six hours
# is enough for a half-life counted in days, and one pass reads every lead.
DECAY_EVERY_SECONDS = 6 * 3600.0


def celery_settings(broker: str, queue: str = "celery") -> dict:
    return {
        "broker_url": broker or "memory://",
        # One queue name per deployment (or test session) sharing a broker.
        "task_default_queue": queue or "celery",
        "task_always_eager": not broker,
        "task_ignore_result": True,
        # A task is acknowledged after it ran: a worker killed mid-task leaves
        # it to another worker (the tasks are idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # A worker keeps trying to reach a broker that is down, however long.
        "broker_connection_max_retries": None,
        # Database first, broker second: a publish that fails is not retried
        # for long; the row stays pending and the sweep queues it again.
        "task_publish_retry": False,
        "broker_connection_timeout": 2,
        "broker_transport_options": {"socket_connect_timeout": 2, "socket_timeout": 5},
        "beat_schedule": {
            "sweep": {"task": "leadflow.sweep", "schedule": 30.0},
            "nurture": {"task": "leadflow.nurture_tick", "schedule": 60.0},
            "decay": {"task": "leadflow.decay", "schedule": DECAY_EVERY_SECONDS},
        },
        "timezone": "UTC",
    }


celery.conf.update(celery_settings(os.environ.get("CELERY_BROKER_URL", ""),
                                   os.environ.get("CELERY_QUEUE", "celery")))


def configure(app) -> None:
    configure_broker(app.config["CELERY_BROKER_URL"], app.config["CELERY_QUEUE"])


def configure_broker(broker: str, queue: str = "celery") -> None:
    """Point the Celery app at a broker; an empty URL runs tasks in-process."""
    global _broker_paused_until
    settings = celery_settings(broker, queue)
    if settings["broker_url"] != celery.conf.broker_url:
        _drop_broker_pools()
        _broker_paused_until = 0.0
    celery.conf.update(settings)


def _drop_broker_pools() -> None:
    """Celery keeps its connection and producer pools, made for the broker it
    first published to: without this, an app configured for another broker
    (a second create_app in the same process) would still send there."""
    celery._pool = None
    amqp = celery.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@worker_process_init.connect
def _after_fork(**_kwargs):
    # Pooled connections must never be shared across a fork.
    db.dispose_all()


# --- dispatch: queue after commit, never inside the transaction ------------

def after_commit(task_name: str, *args) -> None:
    """Remember a task to queue once the current transaction commits."""
    db.session().info.setdefault("leadflow.tasks", []).append((task_name, args))


def commit() -> None:
    """Commit, then queue what the transaction asked for. If the broker is
    down the rows stay pending and the sweep queues them later."""
    pending = db.session().info.pop("leadflow.tasks", [])
    db.session.commit()
    for name, args in pending:
        send(name, *args)


# After a failed publish, this process does not try the broker again for a
# while: each try against a dead broker costs its connect timeout (2 s) to
# whoever is waiting (a prospect's submission, a tick). The rows stay
# pending; the sweep queues them once the broker answers again.
BROKER_PAUSE_SECONDS = 10.0
_broker_paused_until = 0.0


def send(name: str, *args) -> None:
    global _broker_paused_until
    if time.monotonic() < _broker_paused_until:
        log.info("broker paused after a failure: %s%r left to the sweep", name, args)
        return
    try:
        celery.tasks[name].delay(*args)
    except Exception as exc:  # broker down: the sweep will pick the row up
        _broker_paused_until = time.monotonic() + BROKER_PAUSE_SECONDS
        log.warning("could not queue %s%r: %s; not trying again for %g s", name, args, exc,
                    BROKER_PAUSE_SECONDS)


# --- tasks -------------------------------------------------------------------

def _moment(iso: str | None):
    from datetime import datetime
    return datetime.fromisoformat(iso) if iso else None


@celery.task(name="leadflow.send_mail")
def send_mail(mail_id: int, now: str | None = None) -> str:
    from .mailer import deliver
    from .suppression import on_hard_bounce
    return deliver(mail_id, current_app.config["SMTP_URL"], on_hard_bounce, _moment(now))


@celery.task(name="leadflow.deliver_webhook")
def deliver_webhook(delivery_id: int, now: str | None = None) -> str:
    from .webhooks import deliver
    return deliver(delivery_id, _moment(now))


@celery.task(name="leadflow.sweep")
def sweep(now: str | None = None) -> dict:
    from .sweep import run
    return run(_moment(now))


@celery.task(name="leadflow.import_leads")
def import_leads(import_id: int, now: str | None = None) -> str:
    from .leads_ui.importer import run_queued_import
    return run_queued_import(import_id, _moment(now))


@celery.task(name="leadflow.decay")
def decay(now: str | None = None) -> int:
    from .scoring import decay_scores
    return decay_scores(_moment(now))


@celery.task(name="leadflow.nurture_tick")
def nurture_tick(now: str | None = None) -> int:
    from .nurture.engine import run_due
    return run_due(_moment(now))


def start_embedded_scheduler(app, every: float = 30.0) -> threading.Thread:
    """Without a broker there is no beat: a daemon thread in the web process
    runs the same periodic tasks."""
    def loop():
        stop = threading.Event()
        decayed_at = time.monotonic()
        while not stop.wait(every):
            names = ["leadflow.sweep", "leadflow.nurture_tick"]
            if time.monotonic() - decayed_at >= DECAY_EVERY_SECONDS:
                names.append("leadflow.decay")
                decayed_at = time.monotonic()
            with app.app_context():
                for name in names:
                    try:
                        celery.tasks[name].apply()
                    except Exception:
                        log.exception("periodic task %s failed", name)
                    finally:
                        db.session.remove()
    thread = threading.Thread(target=loop, name="leadflow-scheduler", daemon=True)
    thread.start()
    return thread
