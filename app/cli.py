"""`leadflow ...` commands (also reachable as `flask --app app ...`)."""
import json
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from . import migrate


def _create_app():
    from . import create_app
    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def main():
    """leadflow: lead capture, scoring and nurture."""


def register(app):
    app.cli.add_command(db_group)
    app.cli.add_command(check)
    app.cli.add_command(forms_group)
    app.cli.add_command(verdicts)


@click.group("db")
def db_group():
    """Database schema."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade():
    """Apply every Alembic migration not yet applied."""
    migrate.upgrade(current_app.config["DATABASE_URL"])
    click.echo("database is up to date")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message):
    """Autogenerate a migration from the models (developers)."""
    migrate.revision(current_app.config["DATABASE_URL"], message)


def _definition_errors(app) -> list:
    from .capture.forms import load_all
    from .definitions import DefinitionError
    from .qualify.rules import load_rules
    _, errors = load_all(app.config["FORMS_DIR"])
    rules_path = Path(app.config["FORMS_DIR"]) / "rules.yaml"
    if rules_path.exists():
        try:
            load_rules(rules_path)
        except DefinitionError as exc:
            errors.append(exc)
    for extra in app.extensions.get("leadflow.checks", []):
        errors.extend(extra())
    return errors


@click.command("check")
@with_appcontext
def check():
    """Validate every form, rule and campaign definition."""
    errors = _definition_errors(current_app)
    for error in errors:
        click.echo(str(error), err=True)
    if errors:
        sys.exit(1)
    click.echo("all definitions are valid")


@click.group("forms")
def forms_group():
    """Capture forms."""


@forms_group.command("load")
@click.option("--base-url", default=None, help="Public URL of leadflow, for the embed codes.")
@with_appcontext
def forms_load(base_url):
    """Validate forms/*.yaml, record them, and print each form's embed codes."""
    from .capture.forms import load_all
    from .dashboard.views import embed_codes
    from .db import session
    from .models import FormRecord, utcnow
    forms, errors = load_all(current_app.config["FORMS_DIR"])
    for error in errors:
        click.echo(f"error: {error}", err=True)
    for form in forms.values():
        record = session.query(FormRecord).filter_by(slug=form.slug).one_or_none() or FormRecord(slug=form.slug)
        record.language, record.title = form.definition.language, form.definition.title
        record.definition, record.checksum, record.loaded_at = form.as_json(), form.checksum, utcnow()
        session.add(record)
        codes = embed_codes(form.slug, base_url or current_app.config["BASE_URL"], form.definition.title)
        click.echo(f"\n== {form.slug} ({form.definition.language}): {codes['link']}")
        click.echo(f"-- iframe:\n{codes['iframe']}\n-- script:\n{codes['script']}")
    session.commit()
    click.echo(f"\n{len(forms)} form(s) loaded, {len(errors)} with errors")
    if errors:
        sys.exit(1)


@click.command("verdicts")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False),
              help="A rules file to try instead of forms/rules.yaml.")
@click.argument("jsonl", type=click.File("r", encoding="utf-8"))
@with_appcontext
def verdicts(rules_path, jsonl):
    """Judge submissions offline: one JSON object in and out per line."""
    from .capture.service import judge_fields
    from .qualify.rules import default_rules, load_rules
    forms = current_app.extensions["leadflow.forms"]
    default_path = Path(current_app.config["FORMS_DIR"]) / "rules.yaml"
    rules = load_rules(rules_path or default_path) if (rules_path or default_path.exists()) else default_rules()
    for number, line in enumerate(jsonl, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            fields, meta = item.get("fields") or {}, item.get("meta") or {}
            if not isinstance(fields, dict) or not isinstance(meta, dict):
                raise ValueError("fields and meta must be objects")
        except (ValueError, AttributeError) as exc:
            click.echo(json.dumps({"line": number, "error": f"unreadable line: {exc}"}), err=True)
            continue
        form = forms.get(str(item.get("form") or ""))
        verdict = judge_fields(form, fields, {"elapsed_ms": meta.get("elapsed_ms"),
                                              "honeypot": meta.get("honeypot")}, rules)
        click.echo(json.dumps({"id": item.get("id"), "verdict": verdict.verdict,
                               "reasons": list(verdict.reasons)}, ensure_ascii=False))
