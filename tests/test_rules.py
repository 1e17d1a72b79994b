"""Exclusion rules: spam, students, competitors, colleagues, intent."""
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.definitions import DefinitionError
from app.qualify.rules import (
    Rules, Verdict, default_rules, email_domain, is_gibberish, judge, load_rules,
    normalize_company,
)

RULES_YAML = Path(__file__).resolve().parent.parent / "forms" / "rules.yaml"
INTENTS = {"contact_sales": "accept", "research": "accept", "demo_or_quote": "accept",
           "none": "disqualify", "other": "review"}
HUMAN = {"elapsed_ms": 45_000, "honeypot": ""}


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES_YAML)


def lead(**overrides):
    fields = {"name": "Camille Durand", "company": "Boulangerie Durand",
              "email": "camille@boulangerie-durand.fr", "segment": "smb",
              "intent": "contact_sales", "job_title": "Gérante",
              "message": "Bonjour, je voudrais une démo."}
    fields.update(overrides)
    return fields


def verdict(rules, meta=HUMAN, min_fill_ms=None, **fields):
    return judge(lead(**fields), meta, rules, INTENTS, min_fill_ms=min_fill_ms)


def reasons(rules, **fields):
    return verdict(rules, **fields).reasons


# ------------------------------------------------------------------ accepted

def test_a_genuine_lead_is_accepted(rules):
    assert verdict(rules) == Verdict("accepted", ())


@pytest.mark.parametrize("email", [
    "jean+promo@gmail.com", "marie@orange.fr", "paul@yahoo.fr", "ann@outlook.com",
    "hans@gmx.de", "luc@free.fr", "rose@laposte.net", "JEAN@GMAIL.COM.",
])
def test_free_mail_is_never_a_reason_to_exclude(rules, email):
    assert verdict(rules, email=email) == Verdict("accepted", ())


def test_free_mail_listed_as_competitor_still_does_not_exclude():
    odd = Rules(competitor_domains=frozenset({"gmail.com"}), internal_domains=frozenset({"orange.fr"}))
    assert judge(lead(email="a@gmail.com"), HUMAN, odd, INTENTS).verdict == "accepted"
    assert judge(lead(email="a@orange.fr"), HUMAN, odd, INTENTS).verdict == "accepted"


@pytest.mark.parametrize("name", [
    "Nguyễn Thị Minh", "O'Brien", "Jean-Édouard Dupont", "María José", "Zhang Wei", "李娜",
    "Ólafur Arnalds", "Li", "Ng", "Åsa", "Mkrtchyan", "Schwarzschild", "Hirschsprung",
    "Przybyszewski", "Wolfeschlegelsteinhausenbergerdorff", "Llewellyn", "Aaliyah", "Ayyappan",
    "Tchaikovsky", "Oyelaran-Oyeyinka", "Lulu", "Tintin", "Mohammed bin Rashid", "Søren Kierkegaard",
    "Анна Петрова", "محمد", "Σωκράτης", "Brzęczyszczykiewicz", "X Æ A-12", "J. R. R.",
])
def test_real_names_are_not_gibberish(rules, name):
    assert not is_gibberish(name)
    assert verdict(rules, name=name).verdict == "accepted"


@pytest.mark.parametrize("company", [
    "Qwerty Studio", "Azerty Informatique", "Bonbon", "KPMG", "BNP Paribas", "Booking.com",
    "L'Oréal", "Société Générale", "Crédit Agricole", "株式会社トヨタ",
])
def test_real_companies_are_accepted(rules, company):
    assert verdict(rules, company=company).verdict == "accepted"


# --------------------------------------------------------------------- spam

def test_filled_honeypot_is_spam(rules):
    assert verdict(rules, meta={"elapsed_ms": 9000, "honeypot": "http://x.ru"}) == \
        Verdict("excluded", ("spam:honeypot",))


@pytest.mark.parametrize("honeypot", [None, "", "   "])
def test_empty_honeypot_is_not_spam(rules, honeypot):
    assert verdict(rules, meta={"elapsed_ms": 9000, "honeypot": honeypot}).verdict == "accepted"


def test_too_fast_uses_the_rules_minimum(rules):
    assert verdict(rules, meta={"elapsed_ms": 1999}).reasons == ("spam:too_fast",)
    assert verdict(rules, meta={"elapsed_ms": 2000}).verdict == "accepted"


def test_per_form_min_fill_overrides_the_rules(rules):
    assert verdict(rules, meta={"elapsed_ms": 2500}, min_fill_ms=3000).reasons == ("spam:too_fast",)
    assert verdict(rules, meta={"elapsed_ms": 1500}, min_fill_ms=1000).verdict == "accepted"
    assert verdict(rules, meta={"elapsed_ms": 0}, min_fill_ms=0).verdict == "accepted"


@pytest.mark.parametrize("meta", [{"elapsed_ms": None}, {}, {"elapsed_ms": "fast"}])
def test_unknown_elapsed_time_is_not_too_fast(rules, meta):
    assert verdict(rules, meta=meta).verdict == "accepted"


@pytest.mark.parametrize("email", [
    "bot@mailinator.com", "bot@yopmail.com", "x@10minutemail.com", "x@MAILINATOR.COM.",
    "x@sub.mailinator.com", "a@b@guerrillamail.com",
])
def test_disposable_email_is_spam(rules, email):
    assert verdict(rules, email=email) == Verdict("excluded", ("spam:disposable",))


def test_extra_and_allowed_disposable_domains():
    custom = Rules(extra_disposable_domains=frozenset({"Throwaway.Example"}),
                   allowed_domains=frozenset({"mailinator.com"}))
    assert judge(lead(email="a@throwaway.example"), HUMAN, custom, INTENTS).reasons == ("spam:disposable",)
    assert judge(lead(email="a@eu.throwaway.example"), HUMAN, custom, INTENTS).reasons == ("spam:disposable",)
    assert judge(lead(email="a@mailinator.com"), HUMAN, custom, INTENTS).verdict == "accepted"
    assert judge(lead(email="a@mailinator.com"), HUMAN, default_rules(), INTENTS).verdict == "excluded"


def test_lookalike_of_a_disposable_domain_is_not_spam(rules):
    assert verdict(rules, email="a@notyopmail.com").verdict == "accepted"
    assert verdict(rules, email="a@yopmail.com.acme.fr").verdict == "accepted"


def test_links_above_the_maximum_are_spam(rules):
    two = "Voir https://acme.fr et www.acme.fr/prix"
    three = two + " ou http://www.cheap.ru"
    assert verdict(rules, message=two).verdict == "accepted"
    assert verdict(rules, message=three).reasons == ("spam:links",)
    # "https://www." is one link, not two.
    assert verdict(rules, message="https://www.a.fr https://www.b.fr").verdict == "accepted"
    strict = Rules(max_links=0)
    assert judge(lead(message="see http://a.io"), HUMAN, strict, INTENTS).reasons == ("spam:links",)


@pytest.mark.parametrize("field,value", [
    ("name", "Jean http://casino.ru"), ("name", "<script>alert(1)</script>"),
    ("name", "www.cheap-pills.com"), ("company", "<a href=x>Acme</a>"),
    ("company", "[url=http://x]Acme[/url]"), ("company", "Acme < b>"),
])
def test_markup_in_name_or_company_is_spam(rules, field, value):
    assert "spam:markup_in_identity" in reasons(rules, **{field: value})


@pytest.mark.parametrize("name", [
    "xkqzjvwpt", "asdfghjkl", "dfgdfgdfg", "qsdfghjklm", "qwertyuiop", "zxcvbnm",
    "hahahaha", "aaaaaa", "Asdfgh Jklmnop", "sdfsdf", "poiuytreza",
])
def test_keyboard_mash_name_is_gibberish(rules, name):
    assert verdict(rules, name=name) == Verdict("excluded", ("spam:gibberish",))


def test_mash_company_is_gibberish(rules):
    assert reasons(rules, company="qsdqsdqsd") == ("spam:gibberish",)


def test_one_real_word_keeps_an_identity_from_being_gibberish(rules):
    assert verdict(rules, name="Li xkqzjvwpt").verdict == "accepted"


def test_spam_short_circuits_other_reasons(rules):
    result = judge(lead(email="x@hubspot.com", job_title="Student", intent="none", name="asdfghjkl"),
                   {"elapsed_ms": 10, "honeypot": "yes"}, rules, INTENTS)
    assert result == Verdict("excluded", ("spam:honeypot", "spam:too_fast", "spam:gibberish"))


# ------------------------------------------------------------------ student

@pytest.mark.parametrize("email", [
    "jean@etu.univ-lyon1.fr", "a@student.uni-heidelberg.de", "x@students.mq.edu.au",
    "y@studenti.unimi.it", "z@stud.uni-frankfurt.de", "p@alumnos.upm.es", "q@etud.univ-ubs.fr",
    "r@edu.escp.eu", "s@ETU.Unistra.FR", "t@student.tudelft.nl",
])
def test_student_email_domain(rules, email):
    assert verdict(rules, email=email) == Verdict("excluded", ("student",))


@pytest.mark.parametrize("email", [
    "prof@univ-lyon1.fr", "marie@alumni.univ-lyon1.fr", "x@mq.edu.au", "y@harvard.edu",
    "hr@student.com", "a@studentservices.example", "b@etudes.fr",
])
def test_staff_alumni_and_lookalike_domains_are_not_student(rules, email):
    assert verdict(rules, email=email).verdict == "accepted"


@pytest.mark.parametrize("title", [
    "Student", "PhD student", "Étudiant", "etudiante en master marketing", "ÉTUDIANTE",
    "Estudiante de MBA", "Studentin", "Werkstudent Marketing", "studente", "estudante",
    "Doctorant", "Doktorandin", "PhD candidate", "undergraduate", "Master student @ HEC",
])
def test_student_job_title(rules, title):
    assert verdict(rules, job_title=title) == Verdict("excluded", ("student",))


@pytest.mark.parametrize("title", [
    "Professor", "Enseignant-chercheur", "Student Affairs Director", "Director of Student Services",
    "student recruitment manager", "Responsable vie étudiante", "Maître de conférences",
    "Alternant marketing", "Apprentie chargée de communication", "Stagiaire", "Postdoc",
    "Alumni relations manager", "Studentenwerk", "Head of Student Experience",
])
def test_staff_and_apprentice_titles_are_not_student(rules, title):
    assert verdict(rules, job_title=title).verdict == "accepted"


def test_student_segment(rules):
    assert verdict(rules, segment="student").reasons == ("student",)
    assert verdict(rules, segment="etudiant").reasons == ("student",)
    assert verdict(rules, segment="higher_education").verdict == "accepted"


def test_extra_student_words_from_yaml(tmp_path):
    path = write(tmp_path, "extra_student_words: [lycéen, grad schooler]\n")
    custom = load_rules(path)
    assert judge(lead(job_title="Lycéen"), HUMAN, custom, INTENTS).reasons == ("student",)
    assert judge(lead(job_title="Grad schooler"), HUMAN, custom, INTENTS).reasons == ("student",)
    assert judge(lead(job_title="Student"), HUMAN, custom, INTENTS).reasons == ("student",)


# --------------------------------------------------------------- competitor

@pytest.mark.parametrize("email", [
    "a@hubspot.com", "b@eu.hubspot.com", "c@HubSpot.COM", "d@mail.marketo.com", "e@salesforce.com.",
])
def test_competitor_email_domain(rules, email):
    assert verdict(rules, email=email) == Verdict("excluded", ("competitor",))


@pytest.mark.parametrize("email", [
    "a@nothubspot.com", "b@hubspot.com.evil.io", "c@hubspot.co", "d@hub-spot.com", "e@marketo.community",
])
def test_lookalike_domain_is_not_competitor(rules, email):
    assert verdict(rules, email=email).verdict == "accepted"


@pytest.mark.parametrize("company", [
    "HubSpot", "HUBSPOT France SAS", "HubSpot, Inc.", "Hub Spot", "hubspot gmbh", "HubSpot UK Ltd",
    "Salesforce.com, Inc".replace(".com", ""), "Brevo SAS", "Sendinblue S.A.S.", "ActiveCampaign, LLC",
    "Plézi", "  marketo   EMEA ", "Mautic GmbH & Co. KG", "Pardot United Kingdom",
])
def test_competitor_company_name(rules, company):
    assert verdict(rules, company=company) == Verdict("excluded", ("competitor",))


@pytest.mark.parametrize("company", [
    "HubSpotter Consulting", "Hubspot Partners Agency", "Salesforcery", "Sales Force Recruiting",
    "Marketology", "Brevo Consulting", "Plezi Fans Club", "The Mautic Agency", "SA",
])
def test_company_that_merely_starts_like_a_competitor_is_not_one(rules, company):
    assert verdict(rules, company=company).verdict == "accepted"


def test_normalize_company():
    assert normalize_company("HUBSPOT France SAS") == "hubspot"
    assert normalize_company("Hub-Spot, Inc.") == "hubspot"
    assert normalize_company("Société Générale SA") == "societegenerale"
    assert normalize_company("SA") == "sa"  # never stripped to nothing
    assert normalize_company("Manchester United") == "manchesterunited"
    assert normalize_company("") == ""


def test_rules_built_in_code_are_normalized():
    custom = Rules(competitor_names=("HubSpot SAS", "!!!"), competitor_domains=("HubSpot.com.",))
    assert custom.competitor_names == ("hubspot",)
    assert custom.competitor_domains == frozenset({"hubspot.com"})


def test_unicode_domains_match_their_punycode():
    custom = Rules(competitor_domains=frozenset({"bücher.example"}))
    assert judge(lead(email="a@xn--bcher-kva.example"), HUMAN, custom, INTENTS).reasons == ("competitor",)
    assert judge(lead(email="a@BÜCHER.example"), HUMAN, custom, INTENTS).reasons == ("competitor",)


# ----------------------------------------------------------------- internal

def test_internal_domain_and_subdomain(rules):
    assert verdict(rules, email="me@leadflow.example").reasons == ("internal",)
    assert verdict(rules, email="qa@test.leadflow.example").reasons == ("internal",)
    assert verdict(rules, email="me@notleadflow.example").verdict == "accepted"


# ------------------------------------------------------------------- intent

@pytest.mark.parametrize("intent", ["contact_sales", "research", "demo_or_quote", "unknown_code", "", None])
def test_accepting_or_unknown_intent_gives_no_reason(rules, intent):
    assert verdict(rules, intent=intent).verdict == "accepted"


def test_no_intent_is_excluded(rules):
    assert verdict(rules, intent="none") == Verdict("excluded", ("no_intent",))


def test_other_intent_goes_to_review(rules):
    assert verdict(rules, intent="other") == Verdict("review", ("other_intent",))


def test_review_only_when_nothing_excludes(rules):
    assert verdict(rules, intent="other", email="x@hubspot.com") == Verdict("excluded", ("competitor",))
    assert verdict(rules, intent="other", name="asdfghjkl").reasons == ("spam:gibberish",)


def test_several_exclusion_reasons_in_stable_order(rules):
    result = verdict(rules, email="x@etu.univ-lyon1.fr", company="HubSpot France", intent="none")
    assert result == Verdict("excluded", ("student", "competitor", "no_intent"))
    result = verdict(rules, email="x@leadflow.example", company="Marketo", job_title="PhD student")
    assert result == Verdict("excluded", ("student", "competitor", "internal"))


# ------------------------------------------------------------------- inputs

@pytest.mark.parametrize("email", [None, "", "not-an-email", "jean@", "@", "a@b c.com", "x@" + "a." * 200 + "com"])
def test_missing_or_garbled_email_gives_no_domain_reason(rules, email):
    assert verdict(rules, email=email).verdict == "accepted"


def test_email_domain():
    assert email_domain("Jean+Promo@Example.FR.") == "example.fr"
    assert email_domain("a@b@c.example") == "c.example"
    assert email_domain("nobody") == ""


def test_empty_submission_is_accepted(rules):
    assert judge({}, {}, rules, {}) == Verdict("accepted", ())
    assert judge(dict.fromkeys(lead()), {}, default_rules(), INTENTS) == Verdict("accepted", ())


def test_one_megabyte_fields_are_judged(rules):
    big = "a" * 1_000_000
    huge_message = "Bonjour " * 130_000 + "http://a.io http://b.io http://c.io"
    assert verdict(rules, message="Bonjour " * 130_000).verdict == "accepted"
    assert verdict(rules, name="Jean " * 200_000, company="sa " * 330_000,
                   job_title="(" * 1_000_000, segment="é" * 1_000_000,
                   email="x@" + big).verdict == "accepted"
    assert verdict(rules, name=big).reasons == ("spam:gibberish",)
    assert verdict(rules, message="http://" * 3 + " " * 1_000_000).reasons == ("spam:links",)
    assert verdict(rules, name="<" + " " * 90_000 + "b" + "<" * 900_000).reasons == ("spam:markup_in_identity",)
    # past the scan limit: a form field cannot be that long anyway
    assert verdict(rules, message=huge_message).verdict == "accepted"


text_or_none = st.one_of(st.none(), st.text(max_size=300))
FIELD_NAMES = ("name", "company", "email", "segment", "intent", "job_title", "message")


@settings(max_examples=300, deadline=None)
@given(fields=st.fixed_dictionaries({}, optional={k: text_or_none for k in FIELD_NAMES}),
       elapsed=st.one_of(st.none(), st.integers(), st.floats(), st.text()),
       honeypot=st.one_of(st.none(), st.text(), st.integers()),
       min_fill=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)))
def test_judge_never_raises(fields, elapsed, honeypot, min_fill):
    result = judge(fields, {"elapsed_ms": elapsed, "honeypot": honeypot}, load_rules(RULES_YAML),
                   INTENTS, min_fill_ms=min_fill)
    assert result.verdict in ("accepted", "excluded", "review")
    assert (result.verdict == "accepted") == (result.reasons == ())
    spam = [r for r in result.reasons if r.startswith("spam:")]
    assert not spam or spam == list(result.reasons)


# --------------------------------------------------------------- load_rules

def write(tmp_path, text):
    folder = tmp_path / "forms"
    folder.mkdir(exist_ok=True)
    path = folder / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_rules_file_loads(rules):
    assert "leadflow.example" in rules.internal_domains
    assert "hubspot.com" in rules.competitor_domains
    assert set(rules.competitor_names) >= {"hubspot", "activecampaign", "brevo", "plezi"}
    assert (rules.min_fill_ms, rules.max_links) == (2000, 2)


def test_default_rules():
    rules = default_rules()
    assert rules.competitor_names == () and rules.internal_domains == frozenset()
    assert (rules.min_fill_ms, rules.max_links) == (2000, 2)
    assert judge(lead(email="x@hubspot.com"), HUMAN, rules, INTENTS).verdict == "accepted"


def test_empty_lists_and_null_keys_take_defaults(tmp_path):
    rules = load_rules(write(tmp_path, "internal_domains:\ncompetitor_names: []\nmax_links: 5\n"))
    assert rules.internal_domains == frozenset() and rules.max_links == 5


@pytest.mark.parametrize("value", ["\n  - hubspot.com", ""])  # a list, or empty (null)
def test_unknown_key_is_an_error_naming_it(tmp_path, value):
    path = write(tmp_path, f"min_fill_ms: 2000\n\ncompetitor_domain:{value}\n")
    with pytest.raises(DefinitionError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "rules.yaml:3" in message and "competitor_domain" in message
    assert caught.value.key == "competitor_domain"


def test_wrong_type_is_an_error_naming_line_and_key(tmp_path):
    path = write(tmp_path, "competitor_names: [HubSpot]\nmax_links: 2\nmin_fill_ms: two seconds\n")
    with pytest.raises(DefinitionError) as caught:
        load_rules(path)
    assert "rules.yaml:3" in str(caught.value) and "min_fill_ms" in str(caught.value)
    assert "integer" in str(caught.value)


def test_a_list_given_as_a_word_is_an_error(tmp_path):
    with pytest.raises(DefinitionError, match=r"rules\.yaml:2: competitor_domains"):
        load_rules(write(tmp_path, "max_links: 2\ncompetitor_domains: 3\n"))


@pytest.mark.parametrize("bad", ["https://hubspot.com", "@hubspot.com", "hubspot", "hub spot.com"])
def test_bad_domain_is_an_error_naming_its_line(tmp_path, bad):
    path = write(tmp_path, f"competitor_domains:\n  - marketo.com\n  - \"{bad}\"\n")
    with pytest.raises(DefinitionError) as caught:
        load_rules(path)
    assert "rules.yaml:3" in str(caught.value)
    assert "competitor_domains[1]" in str(caught.value) and "not a domain" in str(caught.value)


def test_free_mail_cannot_be_listed_as_competitor_or_internal(tmp_path):
    with pytest.raises(DefinitionError, match=r"rules\.yaml:1: internal_domains\[0\]: .*free-mail"):
        load_rules(write(tmp_path, "internal_domains: [gmail.com]\n"))


def test_negative_minimum_is_an_error(tmp_path):
    with pytest.raises(DefinitionError, match=r"rules\.yaml:1: max_links"):
        load_rules(write(tmp_path, "max_links: -1\n"))


def test_missing_file_is_a_definition_error(tmp_path):
    with pytest.raises(DefinitionError, match="rules.yaml"):
        load_rules(tmp_path / "forms" / "rules.yaml")
