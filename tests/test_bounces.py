"""Bounces: RFC 3464 delivery status notifications (from an mbox or posted
by the mail server) and 5xx/4xx replies at SMTP time. A permanent failure
suppresses the address, whatever campaign it came from; a delay does not."""
import email
import email.policy
import mailbox
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import mailer, tasks
from app.db import session
from app.models import Enrollment, Event, Lead, Mail
from app.nurture.bounces import failed_recipients, ingest_message, original_mail_id
from app.nurture.engine import run_due
from tests.capture_data import english_person, person, post_json
from tests.services import SmtpSink
from tests.helpers import next_monday_10_paris

MONDAY_10_PARIS = next_monday_10_paris()
LEA, JORDAN, CAMILLE = "lea@acme.fr", "jordan@acme-widgets.com", "camille.martin@boulangeries.fr"


# --- building reports as mail servers write them ----------------------------------------

def dsn(recipients, mail_id=None, original="headers", reporting_mta="mx1.acme.fr") -> bytes:
    """A multipart/report; report-type=delivery-status message (RFC 3464), as
    Postfix writes it. `recipients`: (address, action, status[, original
    recipient]). `original`: "headers" (text/rfc822-headers), "message"
    (message/rfc822) or None (no copy of the original)."""
    blocks = []
    for address, action, status, *orcpt in recipients:
        block = [f"Final-Recipient: rfc822; {address}"]
        if orcpt:
            block.append(f"Original-Recipient: rfc822;{orcpt[0]}")
        block += [f"Action: {action}", f"Status: {status}", f"Remote-MTA: dns; {reporting_mta}",
                  f"Diagnostic-Code: smtp; {status[0]}{'50' if status[0] == '5' else '51'} {status} "
                  f"<{address}>: {'Recipient address rejected: User unknown' if status[0] == '5' else 'try later'}"]
        if action == "delayed":
            block.append("Will-Retry-Until: Fri, 4 Dec 2026 09:00:03 +0100 (CET)")
        blocks.append("\n".join(block))
    message_id = f"<lf-{mail_id}@127.0.0.1>" if mail_id is not None else "<CAF=x8Yq@mail.gmail.com>"
    headers = (f"Return-Path: <camille@leadflow.example>\nFrom: Camille de leadflow <camille@leadflow.example>\n"
               f"To: {recipients[0][0]}\nSubject: Vos relances commerciales, sans y penser\n"
               f"Date: Mon, 30 Nov 2026 09:00:01 +0000\nMessage-ID: {message_id}\n"
               f"List-Unsubscribe: <http://127.0.0.1:5000/u/abc>\nMIME-Version: 1.0\n")
    if original == "headers":
        copy = f"Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n{headers}"
    elif original == "message":
        copy = (f"Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n{headers}"
                "Content-Type: text/plain; charset=utf-8\n\nBonjour Léa,\n")
    else:
        copy = None
    failed = any(r[1] == "failed" for r in recipients)
    parts = [
        "Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"This is the mail system at host {reporting_mta}.\n\n"
        + ("I'm sorry to have to inform you that your message could not\nbe delivered to one or more "
           "recipients.\n" if failed else "####################################################################\n"
           "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"),
        f"Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {reporting_mta}\nX-Postfix-Queue-ID: 4dGxyz1abc\n"
        f"X-Postfix-Sender: rfc822; camille@leadflow.example\n"
        f"Arrival-Date: Mon, 30 Nov 2026 10:00:02 +0100 (CET)\n\n" + "\n\n".join(blocks) + "\n",
    ] + ([copy] if copy else [])
    boundary = "4dGxyz1abc.1764493203/mx1.acme.fr"
    body = "".join(f"--{boundary}\n{part}\n" for part in parts) + f"--{boundary}--\n"
    head = (f"Return-Path: <>\nFrom: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\n"
            f"To: camille@leadflow.example\n"
            f"Subject: {'Undelivered Mail Returned to Sender' if failed else 'Delayed Mail (still being retried)'}\n"
            f"Date: Mon, 30 Nov 2026 10:00:03 +0100 (CET)\nMessage-Id: <20261130090003.4dGxyz1abc@{reporting_mta}>\n"
            f"Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
            f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="{boundary}"\n'
            f"Content-Transfer-Encoding: 8bit\n\n"
            "This is a MIME-encapsulated message.\n\n")
    return (head + body).encode("utf-8")


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


SAMPLES = Path(__file__).parent / "data" / "dsn"


def sample(name: str, recipient: str, mail_id: int) -> bytes:
    """tests/data/dsn/<name>.eml: reports as Postfix, Exchange Online and Exim
    write them, for {RECIPIENT} and our mail {MAIL_ID}."""
    text = (SAMPLES / f"{name}.eml").read_bytes()
    return text.replace(b"{RECIPIENT}", recipient.encode()).replace(b"{MAIL_ID}", str(mail_id).encode())


JUNK = [
    b"",
    b"not an email at all \x00\xff\xfe",
    b"From: someone@example.com\nSubject: Out of office\n\nI am away until Monday.\n",
    # a report that says nothing
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
    b"Content-Type: message/delivery-status\n\n--B--\n",
    # a delivery-status with garbage in it
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
    b"Content-Type: message/delivery-status\n\n\xff\xfe: \x00\nAction failed\nStatus: 5\n"
    b"Final-Recipient: rfc822; not-an-address\nAction: failed\nStatus: 5.1.1\n--B--\n",
    # a failure for an address that is no email address
    b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
    b"Final-Recipient: rfc822; lea@@acme..fr\nAction: failed\nStatus: 5.1.1\n",
    # headers pointing to a mail id that does not exist
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
    b"Content-Type: text/rfc822-headers\n\nMessage-ID: <lf-999999999@127.0.0.1>\n--B--\n",
    # unterminated multipart
    b"Content-Type: multipart/report; boundary=B\n\n--B\nContent-Type: message/rfc822\n\n",
]


# --- pure parsing -------------------------------------------------------------------------

def test_a_hard_bounce_names_the_recipient_and_our_mail():
    report = parsed(dsn([(LEA, "failed", "5.1.1")], mail_id=42))
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert failed_recipients(report) == [(LEA, "5.1.1")]
    assert original_mail_id(report) == 42


def test_the_original_may_come_whole_as_message_rfc822():
    report = parsed(dsn([(LEA, "failed", "5.2.1")], mail_id=7, original="message"))
    assert failed_recipients(report) == [(LEA, "5.2.1")]
    assert original_mail_id(report) == 7


def test_a_delay_is_not_a_failure():
    report = parsed(dsn([(LEA, "delayed", "4.4.1")], mail_id=42))
    assert failed_recipients(report) == []
    assert original_mail_id(report) == 42  # it is about our mail, but nothing failed


def test_several_recipients_in_one_report():
    report = parsed(dsn([(LEA, "failed", "5.1.1"), (JORDAN, "delayed", "4.4.7"),
                         (CAMILLE, "failed", "5.2.2"), ("ok@example.com", "delivered", "2.0.0"),
                         ("odd@example.com", "failed", "4.4.7")], mail_id=3))
    assert failed_recipients(report) == [(LEA, "5.1.1"), (CAMILLE, "5.2.2")]


def test_the_address_we_sent_to_counts_not_where_a_forward_led():
    report = parsed(dsn([("lea.martin@gmail.example", "failed", "5.1.1", LEA)], mail_id=5))
    assert failed_recipients(report) == [(LEA, "5.1.1")]


def test_encoded_header_copy_still_names_our_mail():
    raw = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
           b"Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n"
           b"TWVzc2FnZS1JRDogPGxmLTQyQDEyNy4wLjAuMT4K\n--B--\n")  # Message-ID: <lf-42@127.0.0.1>
    assert original_mail_id(parsed(raw)) == 42


def test_someone_elses_message_is_not_ours():
    assert original_mail_id(parsed(dsn([(LEA, "failed", "5.1.1")], mail_id=None))) is None
    assert original_mail_id(parsed(dsn([(LEA, "failed", "5.1.1")], mail_id=None, original=None))) is None
    assert original_mail_id(parsed(b"Content-Type: text/rfc822-headers\n\nMessage-ID: <lf-x1@host>\n")) is None


@pytest.mark.parametrize("name, failed", [
    ("postfix-user-unknown", [(CAMILLE, "5.1.1")]),
    ("exchange-recipient-not-found", [(CAMILLE, "5.1.10")]),  # CRLF, quoted-printable header copy
    ("exim-delayed", []),                                     # a warning: still being retried
])
def test_reports_as_mail_servers_write_them(name, failed):
    report = parsed(sample(name, CAMILLE, 1234))
    assert report.get_content_type() == "multipart/report"
    assert failed_recipients(report) == failed
    assert original_mail_id(report) == 1234


@pytest.mark.parametrize("raw", JUNK)
def test_junk_gives_nothing_and_never_raises(raw):
    message = parsed(raw)
    recipients = failed_recipients(message)
    assert all("@" in address for address, _ in recipients)
    original_mail_id(message)


# --- through the database -------------------------------------------------------------

def sign_up(client, email_address, english=False):
    if english:
        response = post_json(client, "contact-en", english_person(email=email_address))
    else:
        response = post_json(client, "contact", person(email=email_address, name="Léa Martin"))
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.fixture
def three_leads(app, client):
    """Three leads in nurture, each with a first email sent (to the outbox)."""
    sign_up(client, LEA)
    sign_up(client, CAMILLE)
    sign_up(client, JORDAN, english=True)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 3
        return {m.recipient: m.id for m in session.execute(select(Mail)).scalars()}


def lead(address) -> Lead:
    return session.execute(select(Lead).where(Lead.email == address)).scalar_one()


def enrollment_of(address) -> Enrollment:
    return session.execute(select(Enrollment).join(Lead, Lead.id == Enrollment.lead_id)
                           .where(Lead.email == address)).scalar_one()


def bounce_events(address):
    return session.execute(select(Event).where(Event.kind == "email_bounced", Event.lead_id == lead(address).id)
                           ).scalars().all()


def assert_suppressed(address, mail_id, status="5.1.1"):
    suppressed = lead(address)
    assert suppressed.bounced_at is not None
    (event,) = bounce_events(address)
    assert event.points < 0 and event.properties["message_id"] == mail_id
    enrollment = enrollment_of(address)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "suppressed:bounced")
    mail = session.get(Mail, mail_id)
    assert mail.status == "bounced" and status in mail.error


def assert_not_suppressed(address):
    assert lead(address).bounced_at is None
    assert bounce_events(address) == []
    assert enrollment_of(address).status == "active"


def write_mbox(path, messages):
    box = mailbox.mbox(path)
    box.lock()
    try:
        for raw in messages:
            box.add(mailbox.mboxMessage(raw))
        box.flush()
    finally:
        box.unlock()
        box.close()
    return path


def test_ingest_an_mbox_of_reports(app, three_leads, tmp_path):
    path = write_mbox(tmp_path / "bounces.mbox", [
        dsn([(LEA, "failed", "5.1.1")], mail_id=three_leads[LEA]),
        dsn([(JORDAN, "delayed", "4.4.1")], mail_id=three_leads[JORDAN]),
        dsn([(CAMILLE, "failed", "5.2.1"), ("nobody@unknown.example", "failed", "5.1.1")],
            mail_id=three_leads[CAMILLE], original="message"),
        *JUNK,
    ])
    with app.app_context():
        scores = {a: lead(a).score for a in (LEA, CAMILLE, JORDAN)}
    result = app.test_cli_runner().invoke(args=["bounces", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{3 + len(JUNK)} reports read: 2 addresses suppressed, 2 unknown" in result.output
    with app.app_context():
        assert_suppressed(LEA, three_leads[LEA])
        assert_suppressed(CAMILLE, three_leads[CAMILLE], "5.2.1")
        assert lead(LEA).score < scores[LEA] and lead(CAMILLE).score < scores[CAMILLE]
        assert_not_suppressed(JORDAN)  # delayed is not failed
        assert session.get(Mail, three_leads[JORDAN]).status == "outbox"
        assert session.execute(select(func.count()).select_from(Lead)).scalar() == 3  # no lead made up

    # a second read of the same mbox changes nothing
    with app.app_context():
        scores = {a: lead(a).score for a in (LEA, CAMILLE)}
    again = app.test_cli_runner().invoke(args=["bounces", "ingest", str(path)])
    assert again.exit_code == 0, again.output
    with app.app_context():
        assert len(bounce_events(LEA)) == 1 and len(bounce_events(CAMILLE)) == 1
        assert {a: lead(a).score for a in (LEA, CAMILLE)} == scores

        # suppression wins: three weeks later only Jordan gets mail
        before = {m.id for m in session.execute(select(Mail)).scalars()}
        for days in range(1, 22):
            run_due(MONDAY_10_PARIS + timedelta(days=days))
        new = session.execute(select(Mail).where(Mail.id.notin_(before))).scalars().all()
        assert new and {m.recipient for m in new} == {JORDAN}


def test_ingest_an_mbox_of_real_world_reports(app, three_leads, tmp_path):
    path = write_mbox(tmp_path / "samples.mbox", [
        sample("exim-delayed", JORDAN, three_leads[JORDAN]),
        sample("exchange-recipient-not-found", CAMILLE, three_leads[CAMILLE]),
        sample("postfix-user-unknown", LEA, three_leads[LEA]),
    ])
    result = app.test_cli_runner().invoke(args=["bounces", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 reports read: 2 addresses suppressed, 0 unknown" in result.output
    with app.app_context():
        assert_suppressed(CAMILLE, three_leads[CAMILLE], "5.1.10")
        assert_suppressed(LEA, three_leads[LEA])
        assert_not_suppressed(JORDAN)


def test_a_bounce_for_a_mail_of_another_lead_does_not_touch_that_mail(app, three_leads):
    with app.app_context():
        result = ingest_message(dsn([(LEA, "failed", "5.1.1")], mail_id=three_leads[JORDAN]))
        tasks.commit()
        assert result["suppressed"] == [LEA]
        assert lead(LEA).bounced_at is not None
        assert session.get(Mail, three_leads[JORDAN]).status == "outbox"  # not Léa's mail
        assert_not_suppressed(JORDAN)


def test_ingest_reports_the_unknown_and_the_case_of_addresses(app, three_leads):
    with app.app_context():
        result = ingest_message(dsn([("LEA@Acme.FR", "failed", "5.1.1"), ("ghost@nowhere.example", "failed",
                                                                          "5.1.1")], mail_id=three_leads[LEA]))
        tasks.commit()
        assert result == {"suppressed": [LEA], "unknown": ["ghost@nowhere.example"],
                          "message_id": three_leads[LEA]}
        assert_suppressed(LEA, three_leads[LEA])


# --- the inbound endpoint -----------------------------------------------------------------

def api_token(app) -> str:
    from app.api.auth import create_token
    with app.app_context():
        _, plain = create_token("mail-server")
        session.commit()
    return plain


def test_posting_a_report_with_a_token_suppresses(app, client, three_leads):
    token = api_token(app)
    response = client.post("/inbound/bounces", data=dsn([(LEA, "failed", "5.1.1")], mail_id=three_leads[LEA]),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"suppressed": [LEA], "unknown": [], "message_id": three_leads[LEA]}
    with app.app_context():
        assert_suppressed(LEA, three_leads[LEA])
        assert_not_suppressed(CAMILLE)


def test_posting_a_delay_or_junk_suppresses_nothing(app, client, three_leads):
    token = api_token(app)
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/inbound/bounces", data=dsn([(LEA, "delayed", "4.4.1")], mail_id=three_leads[LEA]),
                           headers=headers)
    assert response.status_code == 200 and response.get_json()["suppressed"] == []
    for raw in JUNK[1:]:
        response = client.post("/inbound/bounces", data=raw, headers=headers)
        assert response.status_code == 200, raw
    assert client.post("/inbound/bounces", data=b"", headers=headers).status_code == 400
    with app.app_context():
        assert_not_suppressed(LEA)


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic bWFpbDpzZXJ2ZXI="])
def test_posting_without_a_valid_token_is_refused(app, client, three_leads, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/inbound/bounces", data=dsn([(LEA, "failed", "5.1.1")], mail_id=three_leads[LEA]),
                           headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with app.app_context():
        assert_not_suppressed(LEA)
        assert session.get(Mail, three_leads[LEA]).status == "outbox"


# --- replies at SMTP time -----------------------------------------------------------------

@pytest.fixture
def sink():
    server = SmtpSink().start()
    yield server
    server.stop()


def test_a_5xx_at_smtp_time_bounces_the_mail_and_suppresses_the_lead(app_factory, pg_url, sink):
    sink.reject[LEA] = "550 5.1.1 no such user"
    app = app_factory(pg_url, SMTP_URL=sink.url)
    client = app.test_client()
    sign_up(client, LEA)
    sign_up(client, CAMILLE)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1  # Camille's
        (mail,) = session.execute(select(Mail).where(Mail.recipient == LEA)).scalars().all()
        assert mail.status == "bounced" and mail.error.startswith("550") and "no such user" in mail.error
        assert mail.attempts == 1 and mail.sent_at is None
        assert_suppressed(LEA, mail.id)
        assert_not_suppressed(CAMILLE)
    assert [m.recipients for m in sink.messages] == [[CAMILLE]]
    with app.app_context():  # and Léa gets nothing more, ever
        for days in (3, 10, 20):
            run_due(MONDAY_10_PARIS + timedelta(days=days))
        assert session.execute(select(func.count()).select_from(Mail).where(Mail.recipient == LEA)).scalar() == 1
    assert all(LEA not in m.recipients for m in sink.messages)


def test_a_4xx_at_smtp_time_retries_later_with_backoff(app_factory, pg_url, sink):
    sink.reject[LEA] = "451 4.7.1 try later"
    app = app_factory(pg_url, SMTP_URL=sink.url)
    sign_up(app.test_client(), LEA)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 0
        (mail,) = session.execute(select(Mail)).scalars().all()
        assert (mail.status, mail.attempts) == ("pending", 1)
        assert mail.error.startswith("451") and "try later" in mail.error
        first_retry = mail.next_attempt_at
        # backoff counted from the engine's clock, not the machine's
        assert first_retry == MONDAY_10_PARIS + mailer.backoff(1)
        assert lead(LEA).bounced_at is None and bounce_events(LEA) == []
        assert enrollment_of(LEA).status == "active"  # a delay is no reason to leave the campaign
        mail_id = mail.id

        # not before its time
        assert mailer.deliver(mail_id, sink.url, now=first_retry - timedelta(seconds=1)) == "skipped"
        # still refused: the wait doubles
        assert mailer.deliver(mail_id, sink.url, now=first_retry) == "pending"
        mail = session.get(Mail, mail_id)
        assert mail.attempts == 2
        assert mail.next_attempt_at == first_retry + mailer.backoff(2)  # the wait doubles

        sink.reject.clear()
        later = MONDAY_10_PARIS + timedelta(hours=1)
        assert mailer.deliver(mail_id, sink.url, now=later) == "sent"
        mail = session.get(Mail, mail_id)
        assert (mail.status, mail.attempts, mail.error) == ("sent", 3, None)
        assert mailer.deliver(mail_id, sink.url, now=later + timedelta(hours=1)) == "skipped"  # once
    (received,) = sink.wait_for(lambda m: LEA in m.recipients)
    assert received.message["Message-ID"] == f"<lf-{mail_id}@127.0.0.1>"
    assert len(sink.messages) == 1


def test_a_4xx_backs_off_from_the_clock_deliver_was_given(app_factory, pg_url, sink):
    sink.reject[LEA] = "451 4.7.1 try later"
    app = app_factory(pg_url, SMTP_URL=sink.url)
    sign_up(app.test_client(), LEA)
    with app.app_context():
        run_due(MONDAY_10_PARIS)
        (mail,) = session.execute(select(Mail)).scalars().all()
        assert mail.status == "pending"
        assert mail.next_attempt_at > MONDAY_10_PARIS
        assert mailer.deliver(mail.id, sink.url, now=MONDAY_10_PARIS) == "skipped"
