"""`leadflow nurture ...`, `leadflow campaigns ...`, `leadflow bounces ...`."""
from datetime import datetime, timezone

import click
from flask import current_app
from flask.cli import with_appcontext

from ..db import session


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {value}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@click.group("nurture")
def nurture_group():
    """The nurture engine."""


@nurture_group.command("run-due")
@click.option("--now", "now", default=None, help="ISO-8601 time standing in for the clock.")
@with_appcontext
def run_due_command(now):
    """One pass of the engine (what the beat tick runs); prints emails sent."""
    from .engine import run_due
    sent = run_due(_moment(now))
    click.echo(f"sent {sent} emails")


@click.group("campaigns")
def campaigns_group():
    """Nurture campaigns."""


@campaigns_group.command("list")
@with_appcontext
def campaigns_list():
    from .engine import campaigns, paused
    from .stats import all_campaign_totals
    stopped = paused()
    registry = current_app.extensions["leadflow.campaigns"]
    figures = all_campaign_totals(campaigns())
    for slug, campaign in sorted(campaigns().items()):
        totals = figures[slug]
        click.echo(f"{slug}\t{campaign.definition.name}\t{'paused' if slug in stopped else 'running'}\t"
                   f"active {totals['active']}\tsent {totals['sent']}")
    for error in registry.errors:
        click.echo(f"error: {error}", err=True)


@campaigns_group.command("enroll")
@click.argument("slug")
@click.option("--existing", is_flag=True, required=True, help="Enroll the leads already there that match.")
@with_appcontext
def campaigns_enroll(slug, existing):
    """Backfill: enroll existing leads that match the campaign's audience."""
    from .engine import campaigns, enroll_existing
    campaign = campaigns().get(slug)
    if campaign is None:
        raise click.ClickException(f"no campaign '{slug}' (see `leadflow campaigns list`)")
    click.echo(f"enrolled {enroll_existing(campaign)} leads in {slug}")


@campaigns_group.command("pause")
@click.argument("slug")
@with_appcontext
def campaigns_pause(slug):
    from .engine import set_paused
    set_paused(slug, True, "cli")
    click.echo(f"{slug} paused: nothing is sent until it is resumed")


@campaigns_group.command("resume")
@click.argument("slug")
@with_appcontext
def campaigns_resume(slug):
    from .engine import set_paused
    set_paused(slug, False, "cli")
    click.echo(f"{slug} resumed")


@click.group("bounces")
def bounces_group():
    """Delivery status notifications."""


@bounces_group.command("ingest")
@click.argument("mbox", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def bounces_ingest(mbox):
    """Read RFC 3464 reports from an mbox file; suppress failed addresses."""
    from .bounces import ingest_mbox
    totals = ingest_mbox(mbox)
    click.echo(f"{totals['messages']} reports read: {totals['suppressed']} addresses suppressed, "
               f"{totals['unknown']} unknown")
