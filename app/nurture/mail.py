"""Rendering one campaign step's email for one lead: personalisation with
safe fallbacks, signed click-tracking links, an open pixel, the sender's
postal address, and RFC 8058 one-click unsubscribe headers."""
import re

from flask import current_app

from ..db import session
from ..emails import queue_mail, render
from ..models import Enrollment, Lead, Mail
from ..track.tokens import click_url, open_pixel_url
from .campaigns import Campaign, Step
from .prefs import preferences_url, unsubscribe_url

LINK = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"]+)(")', re.IGNORECASE)
GREETINGS = {"fr": ("Bonjour {name},", "Bonjour,"), "en": ("Hello {name},", "Hello,")}


def first_name(lead: Lead) -> str | None:
    """The first word of the name, if it looks like a name at all."""
    name = (lead.name or "").strip()
    first = name.split()[0] if name else ""
    return first if first and not any(c in first for c in "@<>/") and len(first) <= 40 else None


def greeting(lead: Lead, language: str) -> str:
    with_name, without = GREETINGS.get(language, GREETINGS["en"])
    name = first_name(lead)
    return with_name.format(name=name) if name else without


def track_links(html: str, lead_id: int, mail_id: int) -> str:
    """Every absolute http(s) link goes through the signed click redirect;
    the unsubscribe and preference links stay direct."""
    def rewrite(match):
        url = match.group(2).replace("&amp;", "&")
        if "/u/" in url and url.startswith(current_app.config["BASE_URL"]):
            return match.group(0)
        return match.group(1) + click_url(lead_id, mail_id, url).replace("&", "&amp;") + match.group(3)
    return LINK.sub(rewrite, html)


def queue_step_mail(enrollment: Enrollment, campaign: Campaign, step: Step, lead: Lead, visit: int,
                    now=None) -> int | None:
    definition = campaign.definition
    dedupe = f"step:{enrollment.id}:{step.key}:{visit}"
    mail_id = queue_mail(dedupe_key=dedupe, kind="nurture", sender=definition.sender, recipient=lead.email,
                         subject=step.send.subject, html="", text="", lead_id=lead.id, now=now)
    if mail_id is None:  # already rendered for this visit of the step
        return None
    unsubscribe = unsubscribe_url(lead.id, mail_id)
    context = {"lead": lead, "greeting": greeting(lead, definition.language), "first_name": first_name(lead),
               "campaign": definition, "unsubscribe_url": unsubscribe,
               "preferences_url": preferences_url(lead.id), "postal_address": definition.postal_address,
               "preheader": step.send.preheader, "lang": definition.language,
               "base_url": current_app.config["BASE_URL"].rstrip("/")}
    html, text = render(step.send.template, **context)
    html = track_links(html, lead.id, mail_id)
    pixel = (f'<img src="{open_pixel_url(lead.id, mail_id)}" width="1" height="1" alt="" '
             'style="display:block;border:0">')
    html = html.replace("</body>", pixel + "</body>", 1)
    domain = current_app.config["BASE_URL"].split("//", 1)[-1].split("/")[0].split(":")[0] or "leadflow.local"
    mail = session.get(Mail, mail_id)
    mail.html, mail.text = html, text
    mail.enrollment_id, mail.campaign, mail.step_key = enrollment.id, campaign.slug, step.key
    mail.headers = {
        "Message-ID": f"<lf-{mail_id}@{domain}>",
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-Leadflow-Campaign": campaign.slug,
    }
    return mail_id
