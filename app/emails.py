"""Rendering emails from Jinja templates (HTML + text) and queueing them in
the `mails` outbox. CSS is inlined with css-inline (a maintained Rust-backed
inliner) because many mail clients drop <style> blocks."""
import css_inline
from flask import render_template

from .db import insert, session
from .models import Mail, utcnow

_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


def render(template: str, **context) -> tuple[str, str]:
    """templates/emails/<template>.html and .txt, the HTML with CSS inlined."""
    html = render_template(f"emails/{template}.html", **context)
    text = render_template(f"emails/{template}.txt", **context)
    return _inliner.inline(html), text


def queue_mail(*, dedupe_key: str, kind: str, sender: str, recipient: str, subject: str,
               html: str, text: str, lead_id: int | None = None, user_id: int | None = None,
               headers: dict | None = None, now=None) -> int | None:
    """Insert a pending mail unless one with this dedupe key exists; returns
    the new row's id, or None when it was a duplicate."""
    now = now or utcnow()
    return session.execute(
        insert(Mail).values(dedupe_key=dedupe_key, kind=kind, sender=sender, recipient=recipient,
                      subject=subject, html=html, text=text, lead_id=lead_id, user_id=user_id,
                      headers=headers or {}, status="pending", attempts=0, next_attempt_at=now,
                      created_at=now)
        .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Mail.id)
    ).scalar()
