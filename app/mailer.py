"""Sending the rows of the `mails` outbox: SMTP when SMTP_URL is set, else the
outbox page shows them as the recipient would see them.

At most once per row: a worker claims the row (pending → sending) in its own
committed transaction before the SMTP conversation starts. A worker that dies
after the claim leaves the row in `sending`; the sweep never sends such a row
again but marks it `unknown` after SENDING_TIMEOUT, to be counted and looked
at. So a crash can lose an email (if it died before the server accepted it),
never send one twice.
"""
import io
import smtplib
import ssl
import threading
from dataclasses import dataclass
from datetime import timedelta
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import update

from .db import session
from .models import Lead, Mail, utcnow

# Bodies are encoded under the SMTP policy (lines of 78), but headers are
# written without folding: Python would otherwise fold or RFC 2047-encode a
# long List-Unsubscribe URL, which breaks it. Every header stays far below
# SMTP's 998-character line limit (subjects are cut at 250 characters).
WIRE_POLICY = SMTP_POLICY.clone(max_line_length=None)
MAX_ATTEMPTS = 8
SENDING_TIMEOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool
    starttls: bool


def parse_smtp_url(url: str) -> SmtpSettings:
    """smtp://user:pass@host:port, smtps://..., smtp://...?starttls=1"""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme}://")
    query = parse_qs(parts.query)
    secure = parts.scheme == "smtps"
    return SmtpSettings(
        host=parts.hostname or "localhost", port=parts.port or (465 if secure else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=secure, starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"))


class SmtpConnection:
    """One SMTP connection per thread, reused across emails and reopened when
    the server has closed it."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._local = threading.local()

    def _open(self):
        s = self.settings
        if s.ssl:
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=30, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=30)
            if s.starttls:
                client.starttls(context=ssl.create_default_context())
        if s.username:
            client.login(s.username, s.password or "")
        return client

    def client(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            try:
                if client.noop()[0] == 250:
                    return client
            except smtplib.SMTPException:
                pass
            except OSError:
                pass
        self._local.client = self._open()
        return self._local.client

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        try:
            self.client().sendmail(sender, [recipient], to_bytes(message))
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            self._local.client = None
            raise

    def close(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._local.client = None


_connections: dict[str, SmtpConnection] = {}


def connection_for(url: str) -> SmtpConnection:
    if url not in _connections:
        _connections[url] = SmtpConnection(parse_smtp_url(url))
    return _connections[url]


def build_message(mail: Mail, domain: str = "leadflow.local") -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = mail.sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject[:250]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = (mail.headers or {}).get("Message-ID") or make_msgid(
        idstring=f"lf{mail.id}", domain=domain)
    for name, value in (mail.headers or {}).items():
        if name != "Message-ID":
            message[name] = value
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out, policy=WIRE_POLICY).flatten(message)
    return out.getvalue()


def claim(mail_id: int, now=None) -> Mail | None:
    """pending → sending, committed, or None if another worker has it."""
    now = now or utcnow()
    claimed = session.execute(
        update(Mail).where(Mail.id == mail_id, Mail.status == "pending", Mail.next_attempt_at <= now)
        .values(status="sending", claimed_at=now, attempts=Mail.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return session.get(Mail, mail_id, populate_existing=True) if claimed else None


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))


def deliver(mail_id: int, smtp_url: str, on_hard_bounce=None, now=None) -> str:
    """Send one claimed mail; returns its new status. `now` stands in for the
    clock (tests, `--now`)."""
    mail = claim(mail_id, now)
    if mail is None:
        return "skipped"
    suppressed = _suppressed(mail)
    if suppressed:  # since the mail was rendered: suppression wins at send time
        mail.status, mail.error = "suppressed", suppressed
        session.commit()
        return mail.status
    if not smtp_url:
        mail.status, mail.sent_at = "outbox", utcnow()
        session.commit()
        return mail.status
    try:
        message = build_message(mail)
    except Exception as exc:  # a bug, not a delivery problem: never retried blindly
        mail.status, mail.error = "failed", f"could not build the message: {exc!r}"
        session.commit()
        return mail.status
    try:
        connection_for(smtp_url).send(message, _address(mail.sender), mail.recipient)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return _failed(mail, code, text, on_hard_bounce, now)
    except smtplib.SMTPResponseException as exc:
        return _failed(mail, exc.smtp_code, exc.smtp_error, on_hard_bounce, now)
    except (smtplib.SMTPException, OSError) as exc:
        return _retry(mail, f"{type(exc).__name__}: {exc}", now)
    mail.status, mail.sent_at, mail.error = "sent", utcnow(), None
    session.commit()
    return mail.status


def _suppressed(mail: Mail) -> str | None:
    """Why this nurture mail must not go out any more (its lead unsubscribed,
    bounced or was disqualified after it was rendered), if it must not."""
    if mail.kind != "nurture" or mail.lead_id is None:
        return None
    lead = session.get(Lead, mail.lead_id, populate_existing=True)
    if lead is None:
        return None
    if lead.unsubscribed_at is not None:
        return "suppressed: unsubscribed"
    if lead.bounced_at is not None:
        return "suppressed: bounced"
    if lead.stage == "disqualified":
        return "suppressed: disqualified"
    return None


def _address(sender: str) -> str:
    from email.utils import parseaddr
    return parseaddr(sender)[1] or sender


def _failed(mail: Mail, code: int, text, on_hard_bounce, now=None) -> str:
    detail = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
    if 400 <= code < 500:
        return _retry(mail, detail, now)
    mail.status, mail.error = "bounced", detail
    if on_hard_bounce is not None:
        on_hard_bounce(mail, detail)
    session.commit()
    return mail.status


def _retry(mail: Mail, detail: str, now=None) -> str:
    if mail.attempts >= MAX_ATTEMPTS:
        mail.status = "failed"
    else:
        mail.status, mail.next_attempt_at = "pending", (now or utcnow()) + backoff(mail.attempts)
    mail.error = detail
    session.commit()
    return mail.status
