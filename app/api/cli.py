"""`leadflow tokens create|list|revoke`: API tokens for other systems."""
import click
from sqlalchemy import select

from ..db import session
from ..models import ApiToken
from .auth import create_token


def register(bp) -> None:
    @bp.cli.command("create")
    @click.option("--name", required=True, help="Who uses it, e.g. crm. Shown as the event source api:NAME.")
    def create(name):
        """Create a token and print it: the only time it is shown."""
        name = name.strip()
        if not name or len(name) > 120:
            raise click.UsageError("--name must be 1 to 120 characters")
        # One live token per name, so that `revoke NAME` says what it does.
        if _live(name):
            raise click.ClickException(f"a live token named {name!r} exists: revoke it or pick another name")
        _, plain = create_token(name)
        session.commit()
        click.echo(plain)
        click.echo(f"Token {name!r} created. Store it now: it cannot be shown again.", err=True)

    @bp.cli.command("list")
    def list_tokens():
        """Every token: name, created, last used, revoked. Never the token itself."""
        tokens = session.execute(select(ApiToken).order_by(ApiToken.id)).scalars().all()
        if not tokens:
            click.echo("no API tokens")
        for token in tokens:
            used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
            click.echo(f"{token.name}\tcreated {token.created_at.isoformat(timespec='seconds')}"
                       f"\tlast used {used}\t{'revoked' if token.revoked else 'active'}")

    @bp.cli.command("revoke")
    @click.argument("name")
    def revoke(name):
        """Revoke the live token with this name: requests with it get 401 from now on."""
        tokens = _live(name)
        if not tokens:
            raise click.ClickException(f"no live token named {name!r}")
        for token in tokens:
            token.revoked = True
        session.commit()
        click.echo(f"revoked {name!r}")


def _live(name: str) -> list[ApiToken]:
    return session.execute(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked.is_(False))
                           ).scalars().all()
