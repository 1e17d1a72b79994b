"""API tokens: `Authorization: Bearer <token>`. Only the token's SHA-256 is
stored; the token itself is shown once, when created."""
import hashlib
import secrets
from datetime import timedelta

from flask import request
from sqlalchemy import select

from ..db import session
from ..models import ApiToken, utcnow

# last_used_at is written at most this often per token: a busy integration
# would otherwise make every request wait on the same row lock.
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(name: str) -> tuple[ApiToken, str]:
    """A new token (not committed) and its only plain-text copy."""
    plain = secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=token_hash(plain), created_at=utcnow(), revoked=False)
    session.add(token)
    return token, plain


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 200 or not value.isascii():
        return None
    return value


def authenticate() -> tuple[ApiToken | None, bool]:
    """(the token, whether one was presented at all). Revoked or unknown
    tokens give (None, True)."""
    plain = bearer_token()
    if plain is None:
        return None, bool(request.headers.get("Authorization"))
    token = session.execute(select(ApiToken).where(ApiToken.token_hash == token_hash(plain))
                            ).scalar_one_or_none()
    if token is None or token.revoked:
        session.rollback()
        return None, True
    now = utcnow()
    last = token.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite hands back naive UTC
        last = last.replace(tzinfo=now.tzinfo)
    if last is None or now - last >= TOUCH_EVERY:
        token.last_used_at = now
        session.commit()  # its own short transaction, before the request's work
    return token, True
