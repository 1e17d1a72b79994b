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
    app.cli.add_command(rescore)
    app.cli.add_command(decay)
    app.cli.add_command(demo)
    from .nurture.cli import bounces_group, campaigns_group, nurture_group
    for group in (nurture_group, campaigns_group, bounces_group):
        app.cli.add_command(group)


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
    from .qualify.scoring import load_model
    from .sales.config import load_sales_config
    campaigns = Path(app.config["CAMPAIGNS_DIR"])
    for path, loader in ((Path(app.config["FORMS_DIR"]) / "rules.yaml", load_rules),
                         (campaigns / "scoring.yaml", load_model),
                         (campaigns / "sales.yaml", load_sales_config)):
        if path.exists():
            try:
                loader(path)
            except DefinitionError as exc:
                errors.append(exc)
    from .nurture.campaigns import load_all as load_campaigns
    defined, campaign_errors = load_campaigns(campaigns)
    errors.extend(campaign_errors)
    templates = Path(app.template_folder) / "emails"
    for campaign in defined.values():
        for step in campaign.definition.steps:
            for suffix in ("html", "txt"):
                if step.send and not (templates / f"{step.send.template}.{suffix}").exists():
                    errors.append(DefinitionError(
                        f"campaigns/{campaign.slug}.yaml", f"steps.{step.key}.send.template",
                        f"no template templates/emails/{step.send.template}.{suffix}"))
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
    from .capture.service import record_forms
    from .dashboard.views import embed_codes
    from .db import session
    forms, errors = load_all(current_app.config["FORMS_DIR"])
    for error in errors:
        click.echo(f"error: {error}", err=True)
    record_forms(forms.values())
    for form in forms.values():
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


@click.command("rescore")
@click.option("--batch-size", default=500, show_default=True)
@with_appcontext
def rescore(batch_size):
    """Recompute every lead's score from its event log under the current
    model (after editing campaigns/scoring.yaml). Safe while the app serves:
    one short transaction per batch."""
    import time

    from sqlalchemy import func, select
    from tqdm import tqdm

    from .db import session
    from .models import Lead
    from .scoring import rescore_all
    total = session.execute(select(func.count()).select_from(Lead)).scalar()
    started = time.monotonic()
    with tqdm(total=total, unit="lead", disable=None) as bar:
        counts = rescore_all(batch_size, progress=bar.update)
    click.echo(f"rescored {counts['leads']} leads ({counts['events']} events) in "
               f"{time.monotonic() - started:.1f} s: {counts['changed_leads']} scores changed, "
               f"{counts['changed_events']} event points changed")


@click.command("decay")
@with_appcontext
def decay():
    """Cool every cached score down to what its behaviour points are worth
    now (the beat does it every six hours; this is the same pass)."""
    from .scoring import decay_scores
    click.echo(f"{decay_scores()} scores cooled")


@click.command("demo")
@with_appcontext
def demo():
    """Load the demo: forms recorded, and demo users (printed) if none exist."""
    from sqlalchemy import func, select
    from werkzeug.security import generate_password_hash

    from .capture.forms import load_all
    from .capture.service import record_forms
    from .db import session
    from .models import User
    forms, errors = load_all(current_app.config["FORMS_DIR"])
    for error in errors:
        click.echo(f"error: {error}", err=True)
    record_forms(forms.values())
    if not session.execute(select(func.count()).select_from(User)).scalar():
        for email, name, role, manager in DEMO_USERS:
            session.add(User(email=email, name=name, role=role, is_manager=manager,
                             password_hash=generate_password_hash("demo-password"), active=True))
        click.echo("demo users (password: demo-password): " + ", ".join(u[0] for u in DEMO_USERS))
    session.commit()
    click.echo(f"{len(forms)} demo forms loaded: " + ", ".join(f"/f/{slug}" for slug in sorted(forms)))


DEMO_USERS = (
    ("admin@leadflow.example", "Ada Admin", "admin", False),
    ("marketing@leadflow.example", "Maud Marketing", "marketer", False),
    ("claire.sales@leadflow.example", "Claire Dupont", "sales", False),
    ("sam.sales@leadflow.example", "Sam Taylor", "sales", False),
    ("manager@leadflow.example", "Morgan Manager", "sales", True),
)
