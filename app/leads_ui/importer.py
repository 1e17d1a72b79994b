"""CSV import: every row goes through the capture path's own rules.

Each row is stored as a Submission (channel "import", so every input is
kept, with its file, line and raw columns), judged by judge_fields() like a
form post (no fill time and no honeypot in a file: no too-fast check), then
applied with capture.service.apply_to_lead(): accepted rows create or merge
a lead (new answers fill blanks), excluded ones are kept as disqualified
leads, spam and invalid emails make none. Commits go by batch; a batch that
fails is replayed row by row so one bad row costs only itself.

Used by the import page and by `leadflow leads import FILE.csv`.
"""
import csv
import io
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from sqlalchemy import select
from tqdm import tqdm

from .. import db, tasks
from ..capture.forms import FieldDef, Form, FormDef, ThankYou
from ..capture.service import apply_to_lead, judge_fields, storable
from ..db import session
from ..models import Lead, LeadImport, Submission, utcnow
from ..qualify.profile import PROFILE_FIELDS, clean_text, normalize_email
from . import bp

log = logging.getLogger(__name__)

MAX_BYTES = 5 * 1024 * 1024
BATCH = 200
TARGETS = ("email", "name", "first_name", "last_name", "company", "job_title", "segment", "country",
           "phone", "source")
# Lead column sizes: a longer cell is clipped rather than refused.
LIMITS = {"name": 300, "company": 300, "job_title": 300, "segment": 80, "country": 2, "phone": 64,
          "source": 200}
# Common headers, English and French, compared without case, accents or punctuation.
ALIASES = {
    "email": ("email", "e-mail", "email address", "e-mail address", "mail", "courriel",
              "adresse e-mail", "adresse email", "adresse mail", "adresse courriel"),
    "name": ("name", "full name", "fullname", "contact", "contact name", "nom", "nom complet"),
    "first_name": ("first name", "firstname", "given name", "prenom"),
    "last_name": ("last name", "lastname", "surname", "family name", "nom de famille"),
    "company": ("company", "company name", "organization", "organisation", "account", "entreprise",
                "societe", "raison sociale"),
    "job_title": ("job title", "title", "position", "role", "fonction", "poste", "intitule de poste"),
    "segment": ("segment",),
    "country": ("country", "pays"),
    "phone": ("phone", "phone number", "telephone", "tel", "mobile", "portable"),
    "source": ("source", "lead source", "utm source", "origine"),
}


def N_(text: str) -> str:
    """Marks a message for translation; it is translated where it is shown
    (the UI), and shown as is by the CLI."""
    return text


# Per-row notes: (code, params) on each result; the text lives here once.
NOTES = {
    "filled": N_("blanks filled: %(fields)s"),
    "nothing_new": N_("nothing new to fill"),
    "disqualified": N_("kept as a disqualified lead"),
    "left_as": N_("the existing lead stays %(stage)s"),
    "spam": N_("spam: no lead made"),
    "no_email": N_("no email address"),
    "invalid_email": N_("invalid email: %(error)s"),
    "country": N_("country \"%(value)s\" not recognised: left blank"),
    "review": N_("kept for a person to decide (review)"),
    "error": N_("not imported, an error occurred: %(error)s"),
}


class ImportProblem(ValueError):
    """The file as a whole cannot be imported (no email column, bad --map)."""


def _key(header: str) -> str:
    """'Adresse E-mail ' → 'adresse e mail': how headers are compared."""
    folded = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())


_ALIAS_KEYS = {_key(alias): target for target, aliases in ALIASES.items() for alias in aliases}


# --- reading -----------------------------------------------------------------

def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252: what spreadsheets save."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def delimiter(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        found = csv.Sniffer().sniff(text[:65536], delimiters=",;\t").delimiter
        if found in header:
            return found
    except csv.Error:
        pass
    # The sniffer gives up on odd files: count in the header line instead.
    return max(",;\t", key=header.count) if header else ","


def read_csv(data: bytes) -> tuple[list[str], list[tuple[int, dict]]]:
    """(headers, [(line number, {header: cell})]) with blank rows left out.
    Duplicate or empty headers are given unique names so no cell is lost."""
    text = decode(data).replace("\x00", "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter(text))
    headers: list[str] = []
    rows = []
    for cells in reader:
        if not headers:
            if not any(c.strip() for c in cells):
                continue
            headers = _unique([c.strip() or f"column {i + 1}" for i, c in enumerate(cells)])
            continue
        if not any(c.strip() for c in cells):
            continue
        extra = [f"column {i + 1}" for i in range(len(headers), len(cells))]
        rows.append((reader.line_num, dict(zip(headers + extra, cells))))
    return headers, rows


def _unique(headers: list[str]) -> list[str]:
    seen: Counter = Counter()
    result = []
    for header in headers:
        seen[header] += 1
        result.append(header if seen[header] == 1 else f"{header} ({seen[header]})")
    return result


def map_columns(headers: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """{header: target field}. Explicit overrides first (FIELD "ignore" drops
    a column), then the known headers; the first column wins a target."""
    overrides = overrides or {}
    mapping: dict[str, str] = {}
    for column, target in overrides.items():
        if column not in headers:
            raise ImportProblem(f"--map names a column the file does not have: {column!r} "
                                f"(columns: {', '.join(headers)})")
        if target not in TARGETS + ("ignore",):
            raise ImportProblem(f"--map {column}={target}: the field must be one of {', '.join(TARGETS)} or ignore")
        mapping[column] = target
    taken = set(mapping.values())
    for header in headers:
        target = _ALIAS_KEYS.get(_key(header))
        if header not in mapping and target and target not in taken:
            mapping[header] = target
            taken.add(target)
    # "Nom" beside "Prénom" (or "Name" beside "First name") is the last name.
    if "first_name" in taken and "last_name" not in taken:
        for header, target in mapping.items():
            if target == "name" and header not in overrides:
                mapping[header] = "last_name"
    mapping = {h: t for h, t in mapping.items() if t != "ignore"}
    if "email" not in mapping.values():
        raise ImportProblem("no email column found (columns: " + ", ".join(headers)
                            + "); name it with --map COLUMN=email")
    return mapping


# --- countries and choices -----------------------------------------------------

_COUNTRIES: dict[str, str] = {}


def country_code(value: str | None) -> str | None:
    """An ISO 3166 alpha-2 code from a code or an English or French name."""
    if not value:
        return None
    if not _COUNTRIES:
        from babel import Locale
        for language in ("en", "fr"):
            for code, name in Locale(language).territories.items():
                if len(code) == 2 and code.isalpha():
                    _COUNTRIES[_key(name)] = code
                    _COUNTRIES[code.lower()] = code
        _COUNTRIES.update({"uk": "GB", "usa": "US", "us": "US", "england": "GB", "angleterre": "GB"})
    return _COUNTRIES.get(_key(value))


def _choice(form: Form, name: str, value: str | None) -> str | None:
    """A select answer typed by a person ("PME", "pme") → the choice's value."""
    spec = form.field(name)
    if not value or spec is None or not spec.choices:
        return value
    wanted = _key(value)
    for choice in spec.choices:
        if wanted in (_key(choice.value), _key(choice.label)):
            return choice.value
    return value


# --- the form rows are judged under ------------------------------------------------

def import_form(base: Form | None) -> Form:
    """The form given (its intent rules, language and slug), widened with
    the lead fields it lacks, so a file's phone or country column is not
    dropped because the web form does not ask for it. Without a form: a
    built-in one named "import" (English)."""
    if base is None:
        base = Form(slug="import", path="", definition=FormDef(
            title="CSV import", language="en", submit_label="Import", thank_you=ThankYou(),
            fields=(FieldDef(name="email", type="email", label="Email"),)))
    missing = tuple(FieldDef(name=name, type="text", label=name, max_length=LIMITS[name])
                    for name in ("name", "company", "job_title", "segment", "country", "phone")
                    if base.field(name) is None)
    if not missing:
        return base
    return Form(slug=base.slug, path=base.path,
                definition=base.definition.model_copy(update={"fields": base.definition.fields + missing}))


# --- importing ------------------------------------------------------------------

@dataclass
class RowResult:
    line: int
    email: str
    outcome: str  # created, merged, rejected, review
    reasons: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # (code, params)
    lead_id: int | None = None

    def describe(self, translate=None) -> str:
        translate = translate or (lambda text, **params: text % params if params else text)
        return "; ".join(translate(NOTES[code], **params) for code, params in self.notes)


@dataclass
class Report:
    form: str
    mapping: dict
    ignored: list
    results: list = field(default_factory=list)

    @property
    def counts(self) -> dict:
        found = Counter(r.outcome for r in self.results)
        return {outcome: found.get(outcome, 0) for outcome in ("created", "merged", "rejected", "review")}

    def to_csv(self, translate=None) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["line", "email", "outcome", "reasons", "detail", "lead_id"])
        for r in self.results:
            writer.writerow([spreadsheet_safe(v) for v in
                             (r.line, r.email, r.outcome, " ".join(r.reasons), r.describe(translate),
                              r.lead_id or "")])
        return out.getvalue()


def spreadsheet_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ (or a
    tab or carriage return) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def row_fields(form: Form, mapping: dict, raw: dict, notes: list) -> dict:
    """The lead fields a row gives, cleaned and clipped to the columns."""
    values: dict = {}
    for header, target in mapping.items():
        cell = clean_text(raw.get(header))
        if cell and not values.get(target):
            values[target] = cell
    first, last = values.pop("first_name", None), values.pop("last_name", None)
    if not values.get("name") and (first or last):
        values["name"] = " ".join(part for part in (first, last) if part)
    if values.get("country"):
        code = country_code(values["country"])
        if code is None:
            notes.append(("country", {"value": values["country"][:80]}))
        values["country"] = code
    values["segment"] = _choice(form, "segment", values.get("segment"))
    return {k: clean_text(v, LIMITS.get(k)) for k, v in values.items() if v}


def import_row(line: int, raw: dict, mapping: dict, form: Form, rules, actor: str,
               filename: str) -> RowResult:
    notes: list = []
    fields = row_fields(form, mapping, raw, notes)
    email = fields.get("email") or ""
    submission = Submission(
        form_slug=form.slug, channel="import", reasons=[], decided_at=utcnow(), decided_by=actor,
        payload=storable({**fields, "import": {"file": filename, "line": line, "columns": raw}}),
        email=clean_text(email, 320), utm_source=fields.get("source"), created_at=utcnow())
    session.add(submission)
    try:
        normalized = normalize_email(email) if email else None
    except ValueError as exc:
        submission.verdict, submission.errors = "invalid", {"email": [str(exc)]}
        return RowResult(line, email, "rejected", ["invalid_email"],
                         notes + [("invalid_email", {"error": str(exc)})])
    if normalized is None:
        submission.verdict, submission.errors = "invalid", {"email": ["no email address"]}
        return RowResult(line, email, "rejected", ["invalid_email"], notes + [("no_email", {})])

    verdict = judge_fields(form, fields, {}, rules)  # no elapsed_ms, no honeypot: no too-fast check
    submission.verdict, submission.reasons = verdict.verdict, list(verdict.reasons)
    if verdict.verdict == "review":
        return RowResult(line, normalized, "review", list(verdict.reasons), notes + [("review", {})])
    if any(reason.startswith("spam:") for reason in verdict.reasons):
        return RowResult(line, normalized, "rejected", list(verdict.reasons), notes + [("spam", {})])
    session.flush()  # the submission's id keys its form_submitted event
    existing = session.execute(select(Lead).where(Lead.email == normalized)).scalar_one_or_none()
    before = {name: getattr(existing, name) for name in PROFILE_FIELDS} if existing else None
    apply_to_lead(submission, form, fields, verdict, actor)
    lead = session.get(Lead, submission.lead_id)
    if verdict.verdict != "accepted":
        # apply_to_lead disqualifies a new or still-nurtured lead; one further on keeps its stage.
        note = ("disqualified", {}) if lead.stage == "disqualified" else ("left_as", {"stage": lead.stage})
        return RowResult(line, normalized, "rejected", list(verdict.reasons), notes + [note], lead.id)
    if before is None:
        return RowResult(line, normalized, "created", [], notes, lead.id)
    filled = [name for name in PROFILE_FIELDS if not before[name] and getattr(lead, name)]
    note = ("filled", {"fields": ", ".join(filled)}) if filled else ("nothing_new", {})
    return RowResult(line, normalized, "merged", [], notes + [note], lead.id)


def _rollback() -> None:
    session.rollback()
    # Tasks asked for by the rolled-back rows must not be queued by the next commit.
    db.session().info.pop("leadflow.tasks", None)


@dataclass
class Plan:
    """A file read and its columns mapped, ready to import."""
    form: Form
    mapping: dict
    ignored: list
    rows: list  # (line, {header: cell})


def plan(data: bytes, form_slug: str | None = None, overrides: dict | None = None) -> Plan:
    """Read and map a file; raises ImportProblem when it cannot be imported at all."""
    base = None
    if form_slug:
        base = current_app.extensions["leadflow.forms"].get(form_slug)
        if base is None:
            raise ImportProblem(f"no form named {form_slug!r}")
    headers, rows = read_csv(data)
    if not headers:
        raise ImportProblem("the file is empty")
    mapping = map_columns(headers, overrides)
    return Plan(import_form(base), mapping, [h for h in headers if h not in mapping], rows)


def import_rows(chosen: Plan, filename: str, actor: str, rows=None, on_batch=None,
                batch: int = BATCH) -> list[RowResult]:
    """Import the plan's rows (or `rows`, a part of them) batch by batch, one
    transaction each; on_batch(results) runs after each batch's commit."""
    rules = current_app.extensions["leadflow.rules"].get()
    rows = chosen.rows if rows is None else rows
    everything = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        args = (chosen.mapping, chosen.form, rules, actor, filename)
        try:
            results = [import_row(line, raw, *args) for line, raw in chunk]
            tasks.commit()
        except Exception:  # noqa: BLE001 - replayed row by row below, each failure reported
            log.exception("import batch from line %s failed; replaying row by row", chunk[0][0])
            _rollback()
            results = [_one_by_one(line, raw, *args) for line, raw in chunk]
        everything.extend(results)
        if on_batch:
            on_batch(results)
    return everything


def run_import(data: bytes, filename: str, form_slug: str | None = None,
               overrides: dict | None = None, actor: str = "import", progress=None,
               batch: int = BATCH) -> Report:
    """Import a whole file now; returns the per-row report. Raises
    ImportProblem when the file cannot be imported at all."""
    chosen = plan(data, form_slug, overrides)
    report = Report(form=chosen.form.slug, mapping=chosen.mapping, ignored=chosen.ignored)
    report.results = import_rows(chosen, filename, actor, batch=batch,
                                 on_batch=(lambda results: progress(len(results))) if progress else None)
    return report


# --- imports from the page, run by a background task ------------------------------

STALE = timedelta(minutes=10)


def queue_import(data: bytes, filename: str, form_slug: str | None, user_id: int) -> LeadImport:
    """Check the file can be imported at all (raises ImportProblem), keep it,
    and queue its import for after the commit."""
    chosen = plan(data, form_slug)
    job = LeadImport(filename=filename, form_slug=form_slug, user_id=user_id, actor=f"import:user:{user_id}",
                     data=data, status="queued", total_rows=len(chosen.rows), done_rows=0,
                     mapping=chosen.mapping, ignored=chosen.ignored, results=[], created_at=utcnow())
    session.add(job)
    session.flush()
    tasks.after_commit("leadflow.import_leads", job.id)
    return job


def run_queued_import(import_id: int, now=None) -> str:
    """The task: claim the import (a queued one, or a running one whose
    worker stopped beating), import the rows not done yet, recording the
    results after every batch. A crash between a batch's commit and its
    record re-imports that batch on resume: its rows merge into the leads
    they made (no duplicate lead), and their submissions are kept twice."""
    now = now or utcnow()
    job = session.execute(
        select(LeadImport).where(LeadImport.id == import_id, (LeadImport.status == "queued") | _stalled_running(now))
        .with_for_update(skip_locked=True)).scalar_one_or_none()
    if job is None:
        return "not claimed"
    job.status, job.heartbeat_at = "running", utcnow()
    session.commit()
    try:
        chosen = plan(job.data, job.form_slug)
    except ImportProblem as exc:  # the form was removed since the upload
        job.status, job.error, job.finished_at = "failed", str(exc), utcnow()
        session.commit()
        return "failed"

    def record(results):
        job.results = job.results + [asdict(r) for r in results]
        job.done_rows += len(results)
        job.heartbeat_at = utcnow()
        session.commit()
    import_rows(chosen, job.filename, job.actor, rows=chosen.rows[job.done_rows:], on_batch=record)
    job.status, job.finished_at = "done", utcnow()
    session.commit()
    return "done"


def stored_report(job: LeadImport) -> Report:
    return Report(form=job.form_slug or "import", mapping=job.mapping, ignored=job.ignored,
                  results=[RowResult(**result) for result in job.results])


def stalled_imports(now) -> list[int]:
    """For the sweep: imports queued while the broker was down, and running
    ones whose worker stopped beating."""
    return session.execute(select(LeadImport.id).where(
        ((LeadImport.status == "queued") & (LeadImport.created_at < now - timedelta(minutes=1)))
        | _stalled_running(now))).scalars().all()


def _stalled_running(now):
    """A running import whose worker stopped beating: another may take it."""
    return (LeadImport.status == "running") & (LeadImport.heartbeat_at < now - STALE)


def _one_by_one(line, raw, mapping, form, rules, actor, filename) -> RowResult:
    try:
        result = import_row(line, raw, mapping, form, rules, actor, filename)
        tasks.commit()
        return result
    except Exception as exc:  # noqa: BLE001 - the row is reported, and kept below
        _rollback()
        message = str(exc).splitlines()[0][:200]
        # The row is still kept, pending, so nothing in the file is lost.
        session.add(Submission(form_slug=form.slug, channel="import", verdict="pending", reasons=[],
                               payload=storable({"import": {"file": filename, "line": line, "columns": raw}}),
                               errors={"import": [message]}, created_at=utcnow()))
        session.commit()
        return RowResult(line, clean_text(raw.get(_email_header(mapping)), 320) or "", "rejected",
                         ["error"], [("error", {"error": message})])


def _email_header(mapping: dict) -> str:
    return next(h for h, t in mapping.items() if t == "email")


# --- `leadflow leads import` -------------------------------------------------------

def _parse_maps(values) -> dict:
    overrides = {}
    for value in values:
        column, sep, target = value.rpartition("=")
        if not sep or not column:
            raise click.BadParameter(f"{value!r}: write COLUMN=FIELD", param_hint="--map")
        overrides[column.strip()] = target.strip()
    return overrides


@bp.cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--form", "form_slug", metavar="SLUG",
              help="Judge rows with this form's rules, language and slug (default: built-in 'import').")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help=f"Map a column to a field ({', '.join(TARGETS)}, or ignore). Repeatable.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the per-row report (line, email, outcome, reasons, detail) as CSV here.")
def import_command(file: Path, form_slug, maps, report_path):
    """Import leads from a CSV file, judged like form submissions."""
    data = file.read_bytes()
    overrides = _parse_maps(maps)
    total = len(read_csv(data)[1])
    with tqdm(total=total, unit="row", desc="import", disable=None) as bar:
        try:
            report = run_import(data, file.name, form_slug, overrides, actor="import:cli",
                                progress=bar.update)
        except ImportProblem as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo("columns: " + ", ".join(f"{h} → {t}" for h, t in report.mapping.items())
               + (f"; ignored: {', '.join(report.ignored)}" if report.ignored else ""))
    for result in report.results:
        if result.outcome != "created":
            reasons = f" ({', '.join(result.reasons)})" if result.reasons else ""
            click.echo(f"line {result.line}: {result.email or '—'}: {result.outcome}{reasons}"
                       f"{': ' + result.describe() if result.notes else ''}")
    counts = report.counts
    click.echo(f"{len(report.results)} rows: {counts['created']} created, {counts['merged']} merged, "
               f"{counts['rejected']} rejected, {counts['review']} for review")
    if report_path:
        report_path.write_text(report.to_csv(), encoding="utf-8")
        click.echo(f"report written to {report_path}")
