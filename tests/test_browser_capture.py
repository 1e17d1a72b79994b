"""The capture forms in a real browser, used as a person would: embedded on
a page of another origin (iframe and script), hosted, with mistakes, and on
a phone-sized screen."""
import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.dashboard.views import embed_codes
from app.db import session
from app.models import Lead, Submission
from tests.browser import *  # noqa: F403 (fixtures: browser, page, leadflow, site)
from tests.browser import HUMAN_MS, type_slowly, wait_until_human

pytestmark = pytest.mark.browser

FR_THANKS = "Merci ! Nous avons bien reçu votre demande et revenons vers vous très vite."
EN_THANKS = "Thank you! We received your request and will be in touch shortly."


def company_page(base_url: str, iframe: bool = True, script: bool = True) -> str:
    """The company's web page, with the codes a marketer copies from the dashboard."""
    parts = ["<!doctype html><html lang='fr'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Boulangeries Réunies</title></head><body>",
             "<h1>Boulangeries Réunies</h1><p>Notre site, avec vos formulaires.</p>"]
    if iframe:
        parts += ["<section id='by-iframe'>",
                  embed_codes("contact", base_url, "Parlons de votre projet")["iframe"], "</section>"]
    if script:
        parts += ["<section id='by-script'>",
                  embed_codes("contact-en", base_url, "Talk to us")["script"], "</section>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def label(text: str):
    """A label as shown: the text, then an asterisk when the field is required."""
    return re.compile(rf"^\s*{re.escape(text)}(\s*\*)?\s*$")


def fill_french(scope, **overrides):
    """Fill the French contact form (hosted or framed) like a person."""
    values = {"name": "Camille Martin", "company": "Boulangeries Réunies",
              "email": "camille.martin@boulangeries.fr", "job_title": "Directrice marketing",
              "message": "Nous voulons automatiser nos relances."} | overrides
    labels = {"name": "Nom complet", "company": "Entreprise", "email": "Adresse e-mail professionnelle",
              "job_title": "Fonction", "message": "Quel problème cherchez-vous à résoudre ?"}
    for key, text in labels.items():
        if values[key]:
            type_slowly(scope.get_by_label(label(text)), values[key])
    scope.get_by_label("Taille de l'entreprise").select_option(label="PME (11 à 250 salariés)")
    scope.get_by_label("Échanger avec un commercial").click()
    scope.get_by_label("J'accepte de recevoir des e-mails").check()
    return values


def fill_english(scope, **overrides):
    values = {"name": "Jordan Smith", "company": "Acme Widgets", "email": "jordan@acme-widgets.com",
              "job_title": "Head of Growth", "message": "Looking for a nurture tool."} | overrides
    labels = {"name": "Full name", "company": "Company", "email": "Work email",
              "job_title": "Job title", "message": "What problem are you trying to solve?"}
    for key, text in labels.items():
        if values[key]:
            type_slowly(scope.get_by_label(label(text)), values[key])
    scope.get_by_label("Company size").select_option(label="Mid-market (51-1,000)")
    scope.get_by_label("Get a demo or a quote").click()
    scope.get_by_label("I agree to receive emails").check()
    return values


def fresh(stmt):
    session.expire_all()
    return session.execute(stmt)


def test_iframe_and_script_embeds_on_another_origin_make_leads(page, leadflow, site):
    url = site.put("/", company_page(leadflow.url))
    page.goto(url)
    shown = time.monotonic()
    iframe = page.locator('iframe[data-leadflow-frame="contact"]')
    frame = page.frame_locator('iframe[data-leadflow-frame="contact"]')
    embed = page.locator('[data-leadflow-form="contact-en"]')

    # The framed page reports its height; the page's listener sets it.
    page.wait_for_function("() => document.querySelector('iframe[data-leadflow-frame]').style.height !== ''")
    inner = iframe.element_handle().content_frame()
    content = inner.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    assert content > 640 and iframe.evaluate("f => f.style.height") == f"{content}px"
    assert inner.evaluate("document.documentElement.scrollHeight <= innerHeight"), "the iframe scrolls"
    form_height = iframe.evaluate("f => f.getBoundingClientRect().height")

    fill_french(frame)
    fill_english(embed)
    wait_until_human(page, shown)

    frame.get_by_role("button", name="Envoyer").click()
    expect(frame.get_by_role("status")).to_have_text(FR_THANKS)
    embed.get_by_role("button", name="Send").click()
    expect(embed.get_by_role("status")).to_have_text(EN_THANKS)
    assert page.url == url  # the script embed never left the company's page

    # The thank-you page is shorter: the iframe follows it down.
    page.wait_for_function(
        "h => document.querySelector('iframe[data-leadflow-frame]').getBoundingClientRect().height < h",
        arg=form_height)

    leads = {lead.email: lead for lead in fresh(select(Lead)).scalars()}
    assert set(leads) == {"camille.martin@boulangeries.fr", "jordan@acme-widgets.com"}
    camille, jordan = leads["camille.martin@boulangeries.fr"], leads["jordan@acme-widgets.com"]
    assert (camille.stage, camille.first_form, camille.company, camille.segment, camille.intent,
            camille.consent, camille.language) == (
        "lead", "contact", "Boulangeries Réunies", "pme", "contact_sales", True, "fr")
    assert (jordan.stage, jordan.first_form, jordan.segment, jordan.intent, jordan.consent) == (
        "lead", "contact-en", "midmarket", "demo_or_quote", True)
    subs = {s.form_slug: s for s in fresh(select(Submission)).scalars()}
    assert set(subs) == {"contact", "contact-en"}
    assert (subs["contact"].channel, subs["contact"].verdict, subs["contact"].lead_id) == (
        "iframe", "accepted", camille.id)
    assert (subs["contact-en"].channel, subs["contact-en"].verdict, subs["contact-en"].lead_id) == (
        "script", "accepted", jordan.id)
    assert all(s.fill_ms >= HUMAN_MS - 300 for s in subs.values())
    assert subs["contact-en"].referrer == url
    assert page.js_errors == []


def test_hosted_form_shows_errors_beside_the_fields_and_keeps_answers(page, leadflow):
    page.goto(f"{leadflow.url}/f/contact")
    shown = time.monotonic()
    typed = fill_french(page, company="", email="camille.martin@")
    page.get_by_role("button", name="Envoyer").click()
    page.wait_for_load_state()

    summary = page.locator("#error-summary")
    expect(summary).to_have_text("Corrigez les champs signalés puis envoyez à nouveau.")
    expect(summary).to_be_focused()

    email = page.get_by_label("Adresse e-mail professionnelle")
    expect(email).to_have_value("camille.martin@")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_attribute("aria-describedby", "email-error")
    expect(page.locator(".field", has=email).locator(".error")).to_have_text(
        "Saisissez une adresse e-mail valide, par exemple nom@entreprise.fr.")
    expect(page.locator("#email-error")).to_be_visible()

    company = page.get_by_label(label("Entreprise"))
    expect(company).to_have_value("")
    expect(company).to_have_attribute("aria-invalid", "true")
    # Seen as well as announced: the two wrong fields have a red border, the others not.
    border = "e => getComputedStyle(e).borderTopColor"
    assert email.evaluate(border) == company.evaluate(border) == "rgb(179, 38, 30)"
    assert page.get_by_label(label("Nom complet")).evaluate(border) != "rgb(179, 38, 30)"
    expect(page.locator(".field", has=company).locator(".error")).to_have_text("Ce champ est obligatoire.")

    # Everything else is as the person left it, and not marked wrong.
    for text, key in (("Nom complet", "name"), ("Fonction", "job_title"),
                       ("Quel problème cherchez-vous à résoudre ?", "message")):
        field = page.get_by_label(label(text))
        expect(field).to_have_value(typed[key])
        expect(field).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Taille de l'entreprise")).to_have_value("pme")
    expect(page.get_by_label("Échanger avec un commercial")).to_be_checked()
    expect(page.get_by_label("J'accepte de recevoir des e-mails")).to_be_checked()
    assert page.locator(".error").count() == 2

    invalid = fresh(select(Submission)).scalar_one()
    assert invalid.verdict == "invalid" and set(invalid.errors) == {"company", "email"}

    # The person corrects the two fields and sends again: a lead.
    type_slowly(company, "Boulangeries Réunies")
    email.fill("")
    type_slowly(email, "camille.martin@boulangeries.fr")
    wait_until_human(page, shown)
    page.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_role("status")).to_have_text(FR_THANKS)
    lead = fresh(select(Lead)).scalar_one()
    assert (lead.email, lead.company, lead.stage) == ("camille.martin@boulangeries.fr", "Boulangeries Réunies", "lead")
    channels = sorted((s.channel, s.verdict) for s in fresh(select(Submission)).scalars())
    assert channels == [("hosted", "accepted"), ("hosted", "invalid")]
    assert page.js_errors == []


def test_script_embed_shows_errors_inline_without_leaving_the_page(page, leadflow, site):
    url = site.put("/contact", company_page(leadflow.url, iframe=False))
    page.goto(url)
    shown = time.monotonic()
    page.evaluate("window.sameDocument = true")
    embed = page.locator('[data-leadflow-form="contact-en"]')
    fill_english(embed, email="jordan@acme")
    embed.get_by_role("button", name="Send").click()

    email = embed.get_by_label("Work email")
    error = embed.locator(".leadflow-field", has=page.get_by_label("Work email")).locator(".leadflow-error")
    expect(error).to_have_text("Enter a valid email address, like name@company.com.")
    expect(error).to_be_visible()
    expect(email).to_have_attribute("aria-invalid", "true")
    # Screen readers hear "Work email", not "Work email star".
    expect(embed.get_by_role("textbox", name="Work email", exact=True)).to_have_count(1)
    describedby = email.get_attribute("aria-describedby")
    assert describedby and embed.locator(f"#{describedby}").inner_text() == error.inner_text()
    expect(email).to_have_value("jordan@acme")
    expect(embed.get_by_label("Full name")).to_have_value("Jordan Smith")
    expect(embed.get_by_label("Company size")).to_have_value("midmarket")
    expect(embed.get_by_role("alert")).to_be_focused()
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"
    assert embed.locator(".leadflow-error:visible").count() == 1
    assert fresh(select(Submission.verdict, Submission.channel)).all() == [("invalid", "script")]
    # The embed's own default look: errors in red, fields full width.
    assert error.evaluate("e => getComputedStyle(e).color") == "rgb(179, 38, 30)"
    assert email.evaluate("e => getComputedStyle(e).display") == "block"

    email.fill("jordan@acme-widgets.com")
    wait_until_human(page, shown)
    embed.get_by_role("button", name="Send").click()
    expect(embed.get_by_role("status")).to_have_text(EN_THANKS)
    assert page.evaluate("window.sameDocument") is True
    lead = fresh(select(Lead)).scalar_one()
    assert (lead.email, lead.stage) == ("jordan@acme-widgets.com", "lead")
    assert page.js_errors == []


def test_the_site_can_turn_off_the_embed_style(page, leadflow, site):
    """data-leadflow-style="none": no stylesheet is added, the site styles the form."""
    html = company_page(leadflow.url, iframe=False).replace(
        'data-leadflow-form="contact-en"', 'data-leadflow-form="contact-en" data-leadflow-style="none"')
    assert 'data-leadflow-style="none"' in html
    page.goto(site.put("/plain", html))
    embed = page.locator('[data-leadflow-form="contact-en"]')
    expect(embed.get_by_label("Work email")).to_be_visible()
    assert page.locator("#leadflow-embed-style").count() == 0
    assert embed.get_by_label("Work email").evaluate("e => getComputedStyle(e).display") == "inline-block"
    assert page.js_errors == []


def test_hosted_form_is_readable_on_a_phone(browser, leadflow):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, locale="fr-FR")
    try:
        phone = context.new_page()
        phone.goto(f"{leadflow.url}/f/contact")
        phone.screenshot(path="/tmp/leadflow-contact-390.png", full_page=True)
        # No sideways scrolling, and nothing sticks out of the screen.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        wide = phone.evaluate("""() => [...document.querySelectorAll('main *')]
            .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5 && !e.closest('.hp'))
            .map(e => e.tagName + (e.id ? '#' + e.id : ''))""")
        assert wide == []
        # 16 px text in fields (smaller makes phones zoom in), tappable targets.
        sizes = phone.evaluate("""() => [...document.querySelectorAll(
            'main input:not([type=hidden]):not([type=radio]):not([type=checkbox]):not([tabindex="-1"]),'
            + 'main select, main textarea, main button')]
            .map(e => [e.name || e.tagName, parseFloat(getComputedStyle(e).fontSize),
                       e.getBoundingClientRect().height])""")
        assert len(sizes) == 7 and all(size >= 16 for _, size, _ in sizes), sizes
        assert all(height >= 40 for _, _, height in sizes), sizes
        # Radios and the consent box are tapped through their whole label.
        choices = phone.evaluate("""() => [...document.querySelectorAll('main label:has(input[type=radio]),'
            + 'main label:has(input[type=checkbox])')].map(l => [l.textContent.trim(),
              l.getBoundingClientRect().height, l.getBoundingClientRect().width])""")
        assert len(choices) == 6 and all(h >= 24 and w >= 200 for _, h, w in choices), choices
        button = phone.get_by_role("button", name="Envoyer").bounding_box()
        assert button["height"] >= 44, button
        # The required asterisk stays beside the consent text, not at the far edge.
        consent = phone.locator(".checkbox label")
        star = consent.locator(".req").bounding_box()
        text_right = phone.evaluate("""() => {
            const label = document.querySelector('.checkbox label'), rights = [];
            const walk = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
            while (walk.nextNode()) {
              if (walk.currentNode.parentElement.closest('.req') || !walk.currentNode.data.trim()) continue;
              const r = document.createRange(); r.selectNodeContents(walk.currentNode);
              rights.push(...[...r.getClientRects()].map(x => x.right));
            }
            return Math.max(...rights); }""")
        assert star["x"] + star["width"] <= text_right + 1, (star, text_right)

        # Sent empty-handed: the summary is focused and on screen, errors readable.
        phone.get_by_role("button", name="Envoyer").tap()
        summary = phone.locator("#error-summary")
        expect(summary).to_be_focused()
        expect(summary).to_be_in_viewport()
        expect(phone.locator(".field .error")).to_have_count(6)
        phone.screenshot(path="/tmp/leadflow-contact-390-errors.png", full_page=True)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_iframe_on_another_site_can_be_sent(page, leadflow, site):
    site.put("/", company_page(leadflow.url, script=False))
    page.goto(f"http://localhost:{site.port}/")
    shown = time.monotonic()
    frame = page.frame_locator('iframe[data-leadflow-frame="contact"]')
    fill_french(frame)
    wait_until_human(page, shown)
    frame.get_by_role("button", name="Envoyer").click()
    answer = frame.locator("[role=status], [role=alert]")
    expect(answer).to_be_visible()
    assert answer.get_attribute("role") == "status", answer.inner_text()
    assert fresh(select(Lead.email)).scalars().all() == ["camille.martin@boulangeries.fr"]
