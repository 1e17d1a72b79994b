"""Signed tracking tokens and the URLs that carry them.

Three kinds, each with its own salt so that one is refused where another is
expected:
  open    {"l": lead id, "m": mail id}               /t/o/<token>.gif
  click   {"l": lead id, "m": mail id, "u": url}     /t/c/<token>
  visitor {"l": lead id}                             ?lf_t=<token> on the destination
The click's destination lives only inside its signed token: the redirect can
never be pointed anywhere else (no open redirect). Tokens are signed, not
encrypted: the lead id is readable, nothing else about the lead is in them.
"""
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadData

from ..signing import serializer

OPEN, CLICK, VISITOR = "track-open", "track-click", "track-visitor"
VISITOR_PARAM = "lf_t"
MAX_TOKEN_LENGTH = 4096  # a click token carries its URL
DEFAULT_MAX_AGE = 365 * 24 * 3600  # people click year-old emails; older links stop counting


def _base() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def _max_age() -> int:
    return int(current_app.config.get("TRACK_TOKEN_MAX_AGE", DEFAULT_MAX_AGE))


def safe_destination(url) -> bool:
    """Only absolute http(s) URLs: never javascript:, data: or a relative path."""
    if not isinstance(url, str) or not url or len(url) > 2048 or any(c in url for c in "\r\n\t\x00"):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def open_pixel_url(lead_id: int, mail_id: int) -> str:
    return f"{_base()}/t/o/{serializer(OPEN).dumps({'l': lead_id, 'm': mail_id})}.gif"


def click_url(lead_id: int, mail_id: int, url: str) -> str:
    """Raises ValueError for a destination that is not an absolute http(s) URL."""
    if not safe_destination(url):
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return f"{_base()}/t/c/{serializer(CLICK).dumps({'l': lead_id, 'm': mail_id, 'u': url})}"


def visitor_token(lead_id: int) -> str:
    return serializer(VISITOR).dumps({"l": lead_id})


def _load(salt: str, token, fields: tuple[str, ...]) -> dict | None:
    """The payload, or None when the token is missing, malformed, forged,
    expired, minted for another purpose or carries the wrong fields."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        data = serializer(salt).loads(token, max_age=_max_age())
    except (BadData, ValueError, TypeError):  # BadData covers bad signature, expiry, bad payload
        return None
    if not isinstance(data, dict) or set(data) != set(fields):
        return None
    for name in ("l", "m"):
        if name in fields and (type(data[name]) is not int or data[name] <= 0):
            return None
    return data


def read_open(token) -> tuple[int, int] | None:
    data = _load(OPEN, token, ("l", "m"))
    return (data["l"], data["m"]) if data else None


def read_click(token) -> tuple[int, int, str] | None:
    data = _load(CLICK, token, ("l", "m", "u"))
    if not data or not safe_destination(data["u"]):
        return None
    return data["l"], data["m"], data["u"]


def read_visitor(token) -> int | None:
    data = _load(VISITOR, token, ("l",))
    return data["l"] if data else None


def with_visitor_token(url: str, lead_id: int) -> str:
    """The destination with lf_t=<visitor token> added to its query: its other
    parameters are kept byte for byte; an lf_t already there is replaced.
    With TRACK_VISITOR_HOSTS set (the marketer's own sites), other hosts get
    the URL unchanged: no lead identifier is handed to third parties."""
    hosts = current_app.config.get("TRACK_VISITOR_HOSTS") or ()
    if isinstance(hosts, str):
        hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    if hosts and (urlsplit(url).hostname or "").lower() not in {h.lower() for h in hosts}:
        return url
    # Spliced by hand rather than through urlunsplit, which may re-spell the URL.
    rest, hash_mark, fragment = url.partition("#")
    path, _, query = rest.partition("?")
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] != VISITOR_PARAM]
    query = "&".join(kept + [f"{VISITOR_PARAM}={visitor_token(lead_id)}"])
    return f"{path}?{query}{hash_mark}{fragment}"
