"""Signed tokens (itsdangerous): the form render token now, tracking links later.

Each use has its own salt, so a token minted for one purpose is refused by
every other.
"""
import time

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


def serializer(salt: str, secret: str | None = None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret or current_app.config["SECRET_KEY"], salt=salt)


def render_token(slug: str) -> str:
    """Names the form and the moment it was rendered (for the fill-time check)."""
    return serializer("form-render").dumps({"f": slug, "t": int(time.time() * 1000)})


def read_render_token(token: str, slug: str, max_age: int) -> int | None:
    """Returns the render time in ms, or None when the token is missing,
    forged, expired or minted for another form."""
    if not token or not isinstance(token, str) or len(token) > 500:
        return None
    try:
        data = serializer("form-render").loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or data.get("f") != slug or not isinstance(data.get("t"), int):
        return None
    return data["t"]
