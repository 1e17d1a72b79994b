"""Blueprint `auth`: login, logout, and the `leadflow users ...` commands."""
import click
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import db
from ..extensions import limiter
from ..models import User
from . import ROLES, safe_next

bp = Blueprint("auth", __name__, cli_group="users")
bp.cli.help = "People who log in, and their roles."

MIN_PASSWORD = 10
_dummy_hash = None


class LoginForm(FlaskForm):
    email = StringField(lazy_gettext("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


def _login_limit():
    return current_app.config.get("LOGIN_RATE_LIMIT", "10/minute")


def _password_matches(user: User | None, password: str) -> bool:
    """Checks a hash even for an unknown email, so that the answer takes as
    long either way and does not tell which emails have an account."""
    global _dummy_hash
    if user is None or not user.active:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash("not a password")
        check_password_hash(_dummy_hash, password)
        return False
    return check_password_hash(user.password_hash, password)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    form = LoginForm(next=request.args.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(form.next.data) or url_for("dashboard.home"))
    error = None
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if _password_matches(user, form.password.data):
            target = safe_next(form.next.data) or url_for("dashboard.home")
            session.clear()  # nothing from before the login survives it
            login_user(user)
            return redirect(target)
        error = _("Wrong email or password.")
    elif request.method == "POST":
        error = _("Enter your email and password.")
    return render_template("pages/login.html", form=form, error=error)


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


# --- leadflow users ... --------------------------------------------------------

def create_user(email: str, name: str, role: str, password: str, manager: bool = False) -> User:
    email = email.strip().lower()
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if "@" not in email:
        raise ValueError("that is not an email address")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")
    if db.session.execute(select(User.id).where(User.email == email)).first():
        raise ValueError(f"a user with email {email} already exists")
    user = User(email=email, name=name.strip(), role=role, is_manager=manager, active=True,
                password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


@bp.cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--manager", is_flag=True, help="Sales manager: sees every MQL, gets SLA alerts.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for (hidden) when not given.")
def create_command(email, name, role, manager, password):
    """Create a user (the first one should be an admin)."""
    try:
        user = create_user(email, name, role, password, manager)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {user.role}{' (manager)' if user.is_manager else ''} {user.email} (id {user.id})")


@bp.cli.command("list")
def list_command():
    """List users."""
    for user in db.session.execute(select(User).order_by(User.id)).scalars():
        flags = ", ".join(f for f, on in (("manager", user.is_manager), ("inactive", not user.active)) if on)
        click.echo(f"{user.id}\t{user.email}\t{user.name}\t{user.role}{f' ({flags})' if flags else ''}")
