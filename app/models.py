"""SQLAlchemy 2 models. Schema changes go through Alembic (app/migrations)."""
from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def Timestamp(**kw):
    return mapped_column(DateTime(timezone=True), **kw)


class FormRecord(Base):
    """A form definition as last loaded from forms/<slug>.yaml."""
    __tablename__ = "forms"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    language: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict] = mapped_column(JSONType)
    checksum: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[datetime] = Timestamp(default=utcnow)


class Submission(Base):
    """One POST to a form, kept whole whatever its verdict."""
    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    form_slug: Mapped[str] = mapped_column(String(80), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # hosted, iframe, script, api, import
    payload: Mapped[dict] = mapped_column(JSONType)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    # pending (stored, not judged yet), invalid (field errors went back to
    # the person), accepted, excluded, review
    verdict: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reasons: Mapped[list] = mapped_column(JSONType, default=list)
    errors: Mapped[dict | None] = mapped_column(JSONType)
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    fill_ms: Mapped[int | None] = mapped_column(BigInteger)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    created_at: Mapped[datetime] = Timestamp(default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = Timestamp()
    decided_by: Mapped[str | None] = mapped_column(String(120))


class Lead(Base):
    """One person, keyed by normalized email."""
    __tablename__ = "leads"
    # The leads list pages by (sort value, id): one index per sort order.
    __table_args__ = tuple(Index(f"ix_leads_{column}_id", column, "id")
                           for column in ("name", "score", "created_at", "mql_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(300))
    company: Mapped[str | None] = mapped_column(String(300))
    segment: Mapped[str | None] = mapped_column(String(80))
    intent: Mapped[str | None] = mapped_column(String(80))
    job_title: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    pain_point: Mapped[str | None] = mapped_column(Text)
    company_size: Mapped[str | None] = mapped_column(String(40))
    annual_revenue: Mapped[str | None] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(20), default="lead", index=True)
    stage_reason: Mapped[str | None] = mapped_column(Text)
    # The MQL-driving score, cached; always recomputable from the event log.
    score: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    temperature: Mapped[str | None] = mapped_column(String(10))
    # Every named score and the incremental state behind it, per score name,
    # with the fingerprint of the model that built it.
    scores: Mapped[dict] = mapped_column(JSONType, default=dict)
    score_state: Mapped[dict] = mapped_column(JSONType, default=dict)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    mql_at: Mapped[datetime | None] = Timestamp(index=True)
    bant: Mapped[dict | None] = mapped_column(JSONType)
    # Suppression: never mailed again by nurture, whatever a campaign says.
    unsubscribed_at: Mapped[datetime | None] = Timestamp()
    bounced_at: Mapped[datetime | None] = Timestamp()
    # Topics the person opted out of on the preference page.
    opted_out_topics: Mapped[list] = mapped_column(JSONType, default=list)
    timezone: Mapped[str | None] = mapped_column(String(64))
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    first_form: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(String(200))
    medium: Mapped[str | None] = mapped_column(String(200))
    referrer_domain: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[datetime] = Timestamp(default=utcnow, index=True)
    updated_at: Mapped[datetime] = Timestamp(default=utcnow, onupdate=utcnow)

    events = relationship("Event", back_populates="lead", lazy="dynamic")


class Event(Base):
    """Append-only: something a lead did or that happened to it."""
    __tablename__ = "events"
    __table_args__ = (
        # Idempotency: a retried webhook or a pixel loaded twice carries the
        # same key and is stored once.
        UniqueConstraint("lead_id", "kind", "key", name="uq_events_lead_kind_key"),
        Index("ix_events_lead_occurred", "lead_id", "occurred_at"),
        # Campaign stats join unsubscribes to their mail: a small partial index.
        Index("ix_events_unsubscribed", "id", postgresql_where=text("kind = 'unsubscribed'"),
              sqlite_where=text("kind = 'unsubscribed'")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(60))
    key: Mapped[str | None] = mapped_column(String(200))
    properties: Mapped[dict] = mapped_column(JSONType, default=dict)
    machine: Mapped[bool] = mapped_column(Boolean, default=False)
    # Points this event added to the MQL score (undecayed) and the rule that gave them.
    points: Mapped[float] = mapped_column(Float, default=0.0)
    rule: Mapped[str | None] = mapped_column(String(120))
    source: Mapped[str | None] = mapped_column(String(120))  # tracking, api:<token name>, form...
    occurred_at: Mapped[datetime] = Timestamp(default=utcnow)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)

    lead = relationship("Lead", back_populates="events")


class StageChange(Base):
    """Every lifecycle move, with who and why."""
    __tablename__ = "stage_changes"
    __table_args__ = (Index("ix_stage_changes_to_at", "to_stage", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120))  # "rule:exclusion", "user:3", "api:crm"
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = Timestamp(default=utcnow)


class OwnerChange(Base):
    """Every change of a lead's salesperson, with who and why."""
    __tablename__ = "owner_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(120))  # "rule:round-robin", "rule:territory", "user:3"
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = Timestamp(default=utcnow)


class ScoreHistory(Base):
    """The MQL score after each change, for the lead's chart."""
    __tablename__ = "score_history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"))
    score: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = Timestamp(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))  # admin, marketer, sales
    is_manager: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Round-robin: the salesperson assigned longest ago gets the next MQL.
    last_assigned_at: Mapped[datetime | None] = Timestamp()
    created_at: Mapped[datetime] = Timestamp(default=utcnow)

    # Flask-Login
    @property
    def is_authenticated(self):
        return True

    @property
    def is_active(self):
        return self.active

    @property
    def is_anonymous(self):
        return False

    def get_id(self):
        return str(self.id)


class ApiToken(Base):
    """Only a hash is kept; the token is shown once, at creation."""
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)
    last_used_at: Mapped[datetime | None] = Timestamp()
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(120))
    events: Mapped[list] = mapped_column(JSONType, default=lambda: ["lead.mql"])
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)


class WebhookDelivery(Base):
    """One signed POST to one webhook, retried with backoff, every try logged."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "dedupe_key", name="uq_delivery_once"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(60))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    log: Mapped[list] = mapped_column(JSONType, default=list)
    next_attempt_at: Mapped[datetime] = Timestamp(default=utcnow, index=True)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)
    delivered_at: Mapped[datetime | None] = Timestamp()


class Mail(Base):
    """Every email leadflow sends, written before it is sent (the outbox).

    dedupe_key makes each email unique by purpose ("mql:<lead>:<change>",
    later "step:<enrollment>:<step>"): claiming the row is what makes an
    email go out at most once."""
    __tablename__ = "mails"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)  # notification, nurture
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict] = mapped_column(JSONType, default=dict)
    # pending → sending → sent | outbox (no SMTP) | failed | bounced | suppressed
    # (the lead unsubscribed or bounced since it was queued) | unknown (a
    # worker died mid-send: never resent, see mailer.py)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = Timestamp(default=utcnow, index=True)
    claimed_at: Mapped[datetime | None] = Timestamp()
    created_at: Mapped[datetime] = Timestamp(default=utcnow)
    sent_at: Mapped[datetime | None] = Timestamp()
    # Nurture messages: which enrollment step rendered this email.
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="SET NULL"),
                                                      index=True)
    campaign: Mapped[str | None] = mapped_column(String(80), index=True)
    step_key: Mapped[str | None] = mapped_column(String(60))
    # First human open and click (machine traffic apart), for branches and stats.
    opened_at: Mapped[datetime | None] = Timestamp()
    clicked_at: Mapped[datetime | None] = Timestamp()
    machine_opened_at: Mapped[datetime | None] = Timestamp()


class Enrollment(Base):
    """One lead's progress through one campaign."""
    __tablename__ = "enrollments"
    __table_args__ = (
        # The engine's claim: due active enrollments, oldest first.
        Index("ix_enrollments_due", "status", "due_at"),
        # At most one active enrollment per lead per campaign.
        Index("uq_enrollments_active", "campaign", "lead_id", unique=True,
              postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(80), index=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str] = mapped_column(String(60))
    # True while the enrollment sits in a wait step until due_at.
    waiting: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12), default="active")  # active, completed, exited
    exit_reason: Mapped[str | None] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = Timestamp(default=utcnow)
    entered_at: Mapped[datetime] = Timestamp(default=utcnow)
    finished_at: Mapped[datetime | None] = Timestamp()
    # Step keys in the order this enrollment went through them (the version
    # of the campaign it saw), so an edited campaign can be followed.
    path: Mapped[list] = mapped_column(JSONType, default=list)


class CampaignState(Base):
    """Per-campaign switches that live in the database, not in the YAML."""
    __tablename__ = "campaign_states"
    slug: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = Timestamp(default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(120))


class Note(Base):
    """A person's note on a lead (a call summary, a hint for sales)."""
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)


class FormView(Base):
    """How many times a form was shown, per form per day (for acceptance rates)."""
    __tablename__ = "form_views"
    form_slug: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[datetime] = mapped_column(DateTime(timezone=False), primary_key=True)
    views: Mapped[int] = mapped_column(Integer, default=0)


class LeadImport(Base):
    """A CSV file uploaded on the import page, imported by a background task
    (app/leads_ui/importer.py): the file itself, how far the task got, and
    the per-row report so far."""
    __tablename__ = "lead_imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(200))
    form_slug: Mapped[str | None] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(120))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, done, failed
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    mapping: Mapped[dict] = mapped_column(JSONType, default=dict)
    ignored: Mapped[list] = mapped_column(JSONType, default=list)
    results: Mapped[list] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = Timestamp(default=utcnow)
    # Written with every batch: a running import whose worker died goes stale
    # and the sweep hands it to another worker, which resumes after done_rows.
    heartbeat_at: Mapped[datetime | None] = Timestamp()
    finished_at: Mapped[datetime | None] = Timestamp()
