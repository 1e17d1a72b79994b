"""Exclusion rules: is one form submission spam, a student, a competitor,
a colleague, or out of scope?  Pure functions; only load_rules() reads a file.

judge() returns a Verdict:
  * any spam:* reason      -> "excluded", spam reasons only (spam short-circuits)
  * student / competitor / internal / no_intent -> "excluded", all of those
  * other_intent           -> "review"
  * otherwise              -> "accepted"

Every text is clipped to SCAN_LIMIT characters and scanned with linear
regexes (no nested quantifiers), so a 1 MB field is judged in milliseconds.
"""
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from disposable_email_domains import blocklist as DISPOSABLE
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..definitions import load

SCAN_LIMIT = 100_000  # the largest max_length a form field may declare

# Never excluded, whatever a blocklist or a rules file says.
FREE_MAIL = frozenset("""
    gmail.com googlemail.com outlook.com outlook.fr hotmail.com hotmail.fr live.com live.fr
    msn.com yahoo.com yahoo.fr yahoo.co.uk aol.com icloud.com me.com proton.me protonmail.com
    orange.fr wanadoo.fr free.fr sfr.fr neuf.fr bbox.fr laposte.net
    gmx.de gmx.net gmx.fr gmx.com web.de t-online.de libero.it mail.com
""".split())

# Sub-domain labels universities give their students (jean@etu.univ-lyon1.fr,
# x@studenti.unimi.it, y@alumnos.upm.es). "alumni" means graduates: not here.
STUDENT_LABELS = frozenset("""
    etu etud etudiant etudiants student students stud studenti studenten
    alumnos estudiantes alunos
""".split())

# Job-title / segment words meaning "student" (accents folded, lowercase).
# Doctoral candidates count as students; apprentices (alternant, apprenti,
# Azubi) and interns do not: they work for a company that may buy.
# "alumna" is left out: in English it means a graduate.
STUDENT_WORDS = frozenset("""
    student students studentin studentinnen studenten studente studentessa studenti
    etudiant etudiante etudiants etudiantes estudiante estudiantes estudante estudantes
    alumno alumnos aluno aluna alunos alunas eleve eleves studierende studierender
    undergraduate undergrad doctorant doctorante doctorants doctorantes doktorand doktorandin
    dottorando dottoranda doctorando doctoranda doutorando doutoranda promovendus
""".split()) | {"phd candidate", "doctoral candidate"}

# A title holding one of these is about students, not by one:
# "Director of Student Services", "Responsable vie étudiante".
STAFF_WORDS = frozenset("""
    director directeur directrice direktor direktorin directora direttore direttrice diretor diretora
    manager head chief officer lead coordinator coordinateur coordinatrice coordinador coordinadora
    coordinatore advisor adviser counselor counsellor conseiller conseillere services service affairs
    recruitment recruiter recrutement admissions admission relations responsable charge chargee
    professor professeur professeure professorin professore professoressa profesor profesora
    lecturer teacher enseignant enseignante docent docente hoogleraar maitre dean doyen
    administrator administrateur administratrice staff specialist leiter leiterin referent referente
    gestionnaire secretary secretaire supervisor superviseur
""".split())

# Dropped from the end of company names before comparing ("HubSpot France SAS").
LEGAL_FORMS = ("sas sarl sa sasu eurl gmbh ag inc llc ltd limited corp corporation plc bv nv spa srl sl oy ab co kg").split()
PLACE_WORDS = ("france deutschland germany uk gb europe emea usa us spain espana italy italia benelux belgium belgique "
               "nederland netherlands schweiz suisse switzerland austria osterreich ireland canada nordics dach apac "
               "latam americas international group groupe holding").split() + [
    "united kingdom", "great britain", "united states", "north america"]
_SUFFIXES: dict[str, list[tuple[str, ...]]] = {}  # last word -> suffixes ending with it
for _phrase in LEGAL_FORMS + PLACE_WORDS:
    _SUFFIXES.setdefault(_phrase.split()[-1], []).append(tuple(_phrase.split()))

VERDICTS = ("accepted", "excluded", "review")
SPAM_ORDER = ("spam:honeypot", "spam:too_fast", "spam:disposable", "spam:links",
              "spam:markup_in_identity", "spam:gibberish")
EXCLUSION_ORDER = ("student", "competitor", "internal", "no_intent")

_URL = re.compile(r"(?:https?|ftp)://(?:www\.)?|\bwww\.", re.I)
_MARKUP = re.compile(r"://|\bwww\.|<\s*[a-z/!?]|\[/?url\b|href\s*=|javascript:", re.I)
_LETTERS = re.compile(r"[^\W\d_]+")
_WORDS = re.compile(r"[^\W_]+")
_SAME_4 = re.compile(r"(.)\1{3}")
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_VOWELS = frozenset("aeiouy")
# Six keys in a row on QWERTY/AZERTY/QWERTZ (either direction), or six
# letters of the alphabet: no name holds such a run.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn",
         "qwertzuiop", "yxcvbnm", "abcdefghijklmnopqrstuvwxyz")
_RUNS = frozenset(r[i:i + 6] for row in _ROWS for r in (row, row[::-1]) for i in range(len(r) - 5))
_KEYBOARD_WORDS = {"qwerty", "azerty", "qwertz"}  # real words (company "Qwerty Studio")


# ---------------------------------------------------------------- normalizing

def fold(text: str) -> str:
    """Lowercase without accents: "Étudiante" -> "etudiante"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalize_domain(domain: str) -> str:
    """Lowercase, no trailing dot, IDNA (punycode) form as in the blocklist;
    "" when it cannot be a domain."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > 253 or any(c.isspace() for c in domain):
        return ""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:  # empty or over-long label: keep it, it will simply match nothing
        return domain


def email_domain(email: str | None) -> str:
    """The normalized part after the last "@", or "" (no validation here)."""
    if not email or "@" not in email:
        return ""
    return normalize_domain(email.rpartition("@")[2])


def normalize_company(name: str) -> str:
    """Compare key for company names: "HUBSPOT France SAS", "HubSpot, Inc."
    and "Hub Spot" all give "hubspot". Folds case and accents, drops
    punctuation and spacing, and trailing legal forms and country words
    (never the whole name)."""
    text = re.sub(r"[.'’`]", "", fold(name))  # S.A.S. -> sas, O'Neil -> oneil
    words = _WORDS.findall(text)
    stripped = True
    while stripped:
        stripped = False
        for suffix in _SUFFIXES.get(words[-1] if words else "", ()):
            if len(words) > len(suffix) and tuple(words[-len(suffix):]) == suffix:
                del words[-len(suffix):]
                stripped = True
                break
    return "".join(words)


def _within(domain: str, domains: frozenset[str]) -> bool:
    """domain is one of domains or a subdomain of one (label boundary:
    eu.hubspot.com yes, nothubspot.com and hubspot.com.evil.io no)."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in domains for i in range(len(labels) - 1))


# ---------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Rules:
    """Exclusion settings. Values are normalized on construction, so
    Rules(competitor_names=("HubSpot SAS",)) works as well as load_rules()."""
    internal_domains: frozenset[str] = frozenset()
    competitor_domains: frozenset[str] = frozenset()
    competitor_names: tuple[str, ...] = ()
    min_fill_ms: int = 2000
    max_links: int = 2  # more URLs than this in the message = spam:links
    extra_disposable_domains: frozenset[str] = frozenset()
    allowed_domains: frozenset[str] = frozenset()  # never flagged disposable
    student_words: frozenset[str] = field(default=STUDENT_WORDS, repr=False)

    def __post_init__(self):
        def domains(values: Iterable[str]) -> frozenset[str]:
            return frozenset(d for d in map(normalize_domain, values) if d)
        for name in ("internal_domains", "competitor_domains",
                     "extra_disposable_domains", "allowed_domains"):
            object.__setattr__(self, name, domains(getattr(self, name)))
        names = (n for n in map(normalize_company, self.competitor_names) if n)
        object.__setattr__(self, "competitor_names", tuple(dict.fromkeys(names)))
        words = (" ".join(_WORDS.findall(fold(w))) for w in self.student_words)
        object.__setattr__(self, "student_words", frozenset(w for w in words if w))


def default_rules() -> Rules:
    return Rules()


def _domain(value: str) -> str:
    if not _DOMAIN.fullmatch(normalize_domain(value)):
        raise ValueError(f"'{value}' is not a domain: write it like example.com (no @, no https://)")
    return value


def _not_free_mail(value: str) -> str:
    if normalize_domain(value) in FREE_MAIL:
        raise ValueError(f"'{value}' is a free-mail provider: listing it would exclude everyone who uses it")
    return value


Domain = Annotated[str, AfterValidator(_domain)]
OwnedDomain = Annotated[str, AfterValidator(_domain), AfterValidator(_not_free_mail)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class RulesFile(BaseModel):
    """forms/rules.yaml, as marketers write it."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    internal_domains: tuple[OwnedDomain, ...] = ()
    competitor_domains: tuple[OwnedDomain, ...] = ()
    competitor_names: tuple[Text, ...] = ()
    min_fill_ms: int = Field(default=2000, ge=0, strict=True)
    max_links: int = Field(default=2, ge=0, strict=True)
    extra_disposable_domains: tuple[Domain, ...] = ()
    allowed_domains: tuple[Domain, ...] = ()
    extra_student_words: tuple[Text, ...] = ()  # added to the built-in STUDENT_WORDS

    @model_validator(mode="before")
    @classmethod
    def _empty_keys_take_defaults(cls, data):
        # "competitor_names:" with every item commented out is null in YAML.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


def load_rules(path) -> Rules:
    """Load and validate forms/rules.yaml; raises DefinitionError naming the
    file, line, key and problem."""
    spec = load(RulesFile, Path(path))
    return Rules(internal_domains=spec.internal_domains,
                 competitor_domains=spec.competitor_domains,
                 competitor_names=spec.competitor_names,
                 min_fill_ms=spec.min_fill_ms,
                 max_links=spec.max_links,
                 extra_disposable_domains=spec.extra_disposable_domains,
                 allowed_domains=spec.allowed_domains,
                 student_words=STUDENT_WORDS | set(spec.extra_student_words))


# -------------------------------------------------------------------- checks

def is_disposable(domain: str, rules: Rules) -> bool:
    if not domain or _within(domain, FREE_MAIL | rules.allowed_domains):
        return False
    return _within(domain, DISPOSABLE) or _within(domain, rules.extra_disposable_domains)


def count_links(text: str, stop_after: int | None = None) -> int:
    """URLs (scheme:// or www.) in text; stops counting past stop_after."""
    count = 0
    for _ in _URL.finditer(text):
        count += 1
        if stop_after is not None and count > stop_after:
            break
    return count


def _is_mash(word: str) -> bool:
    """Keyboard mash in one ASCII word. Deliberately narrow: a missed spam
    is cheaper than a lost lead named Nguyễn or Ng."""
    word = word.lower()
    if word in _KEYBOARD_WORDS:
        return False
    n = len(word)
    period = (word + word).find(word, 1)  # length of the shortest repeated chunk
    return ((n >= 6 and not _VOWELS & set(word))             # xkqzjvwpt
            or (n >= 6 and n // period >= 3)                 # dfgdfgdfg, hahaha
            or bool(_SAME_4.search(word))                    # aaaa
            or any(word[i:i + 6] in _RUNS for i in range(n - 5)))  # asdfghjkl


def is_gibberish(text: str) -> bool:
    """Every word is a mash. Words with any non-ASCII letter (Nguyễn, 李娜,
    Ólafur) are never a mash, so non-Latin scripts are never gibberish."""
    words = _LETTERS.findall(text)
    return bool(words) and all(w.isascii() and _is_mash(w) for w in words)


def is_student_domain(domain: str) -> bool:
    """A student label among the sub-domains (etu.univ-lyon1.fr,
    students.mq.edu.au), not the registrable name itself (student.com is a
    company). Also edu.<school>.<tld>: French grandes écoles (ESCP, emlyon,
    ESIEE, De Vinci) give students @edu.<school> and staff @<school>."""
    labels = domain.split(".")
    return (any(label in STUDENT_LABELS for label in labels[:-2])
            or (len(labels) >= 3 and labels[0] == "edu"))


def says_student(text: str, rules: Rules) -> bool:
    """A job title or segment naming a student ("PhD student", "Étudiante en
    master", "Werkstudent") and no staff role ("Student Affairs Director")."""
    words = _WORDS.findall(fold(text))
    if not words or STAFF_WORDS.intersection(words):
        return False
    padded = f" {' '.join(words)} "
    return (any(w.endswith(("student", "studentin")) for w in words)  # German compounds
            or any(f" {phrase} " in padded for phrase in rules.student_words))


# --------------------------------------------------------------------- judge

@dataclass(frozen=True)
class Verdict:
    verdict: str  # "accepted" | "excluded" | "review"
    reasons: tuple[str, ...]


def _text(value) -> str:
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value))[:SCAN_LIMIT]


def spam_reasons(fields: Mapping[str, str | None], meta: Mapping[str, object],
                 rules: Rules, min_fill_ms: int | None = None) -> list[str]:
    reasons = []
    if _text(meta.get("honeypot")).strip():
        reasons.append("spam:honeypot")
    elapsed = meta.get("elapsed_ms")
    limit = rules.min_fill_ms if min_fill_ms is None else min_fill_ms
    if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) and elapsed < limit:
        reasons.append("spam:too_fast")
    if is_disposable(email_domain(_text(fields.get("email"))), rules):
        reasons.append("spam:disposable")
    if count_links(_text(fields.get("message")), rules.max_links) > rules.max_links:
        reasons.append("spam:links")
    identity = [_text(fields.get("name")), _text(fields.get("company"))]
    if any(_MARKUP.search(t) for t in identity):
        reasons.append("spam:markup_in_identity")
    if any(is_gibberish(t) for t in identity):
        reasons.append("spam:gibberish")
    return reasons


def judge(fields: Mapping[str, str | None], meta: Mapping[str, object], rules: Rules,
          intent_dispositions: Mapping[str, str], min_fill_ms: int | None = None) -> Verdict:
    """The exclusion verdict on one submission. min_fill_ms, when given,
    overrides rules.min_fill_ms (per-form setting)."""
    spam = spam_reasons(fields, meta, rules, min_fill_ms)
    if spam:
        return Verdict("excluded", tuple(spam))

    domain = email_domain(_text(fields.get("email")))
    if _within(domain, FREE_MAIL):  # free mail is never a reason to exclude
        domain = ""
    company = normalize_company(_text(fields.get("company")))
    disposition = intent_dispositions.get(_text(fields.get("intent")).strip())

    found = {
        "student": bool(domain) and is_student_domain(domain)
                   or says_student(_text(fields.get("job_title")), rules)
                   or says_student(_text(fields.get("segment")), rules),
        "competitor": bool(domain) and _within(domain, rules.competitor_domains)
                      or bool(company) and company in rules.competitor_names,
        "internal": bool(domain) and _within(domain, rules.internal_domains),
        "no_intent": disposition == "disqualify",
    }
    excluded = tuple(reason for reason in EXCLUSION_ORDER if found[reason])
    if excluded:
        return Verdict("excluded", excluded)
    if disposition == "review":
        return Verdict("review", ("other_intent",))
    return Verdict("accepted", ())
