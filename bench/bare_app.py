"""The floor for bench/capture.py: a bare Flask app whose one endpoint reads
the same JSON body and does one INSERT, with SQLAlchemy, into a table as wide
as `submissions`, on the same database. No forms, no validation, no verdict,
no lead: what any Flask + PostgreSQL endpoint costs on this machine.

    DATABASE_URL=postgresql+psycopg://... gunicorn "bench.bare_app:create_app()"
"""
import hashlib
import os
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from sqlalchemy import (BigInteger, Column, DateTime, MetaData, String, Table, Text, create_engine,
                        insert)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# The columns of `submissions` (app/models.py), without its foreign key.
bare_submissions = Table(
    "bare_submissions", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("form_slug", String(80), index=True),
    Column("channel", String(16)),
    Column("payload", JSONB),
    Column("email", String(320), index=True),
    Column("verdict", String(16), index=True),
    Column("reasons", JSONB),
    Column("errors", JSONB),
    Column("ip_hash", String(64)),
    Column("user_agent", Text),
    Column("referrer", Text),
    *(Column(name, String(200)) for name in
      ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")),
    Column("fill_ms", BigInteger),
    Column("lead_id", BigInteger, index=True),
    Column("created_at", DateTime(timezone=True), index=True),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(120)),
)


# The columns of `events`, for bench/tracking.py's floor.
bare_events = Table(
    "bare_events", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("lead_id", BigInteger, index=True),
    Column("kind", String(60)),
    Column("key", String(200)),
    Column("properties", JSONB),
    Column("occurred_at", DateTime(timezone=True)),
)


def create_app() -> Flask:
    app = Flask(__name__)
    engine = create_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)

    @app.get("/health")
    def health():
        return "ok"

    @app.post("/f/<slug>/submit")
    def submit(slug):
        body = request.get_json()
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return jsonify(error="Expected a JSON object."), 400
        email = fields.get("email") if isinstance(fields.get("email"), str) else None
        with engine.begin() as conn:
            conn.execute(insert(bare_submissions).values(
                form_slug=slug, channel="script", payload=fields, email=email, verdict="accepted",
                reasons=[], ip_hash=hashlib.sha256((request.remote_addr or "").encode()).hexdigest(),
                user_agent=request.headers.get("User-Agent"), referrer=request.headers.get("Referer"),
                created_at=datetime.now(timezone.utc)))
        return jsonify(result="received"), 201

    @app.get("/bare/hit/<int:n>")
    def hit(n):
        """What a tracking hit costs at the least: one INSERT, a tiny answer."""
        with engine.begin() as conn:
            conn.execute(insert(bare_events).values(
                lead_id=n, kind="email_opened", key=f"mail:{n}", properties={"message_id": n},
                occurred_at=datetime.now(timezone.utc)))
        return "", 204

    return app
