"""Reading a JSON body safely, and the value types it may carry: shared by
the API and the page-visit beacon."""
import json
import math
from datetime import datetime
from typing import Annotated, Any

from flask import request
from pydantic import AfterValidator, Field, PlainValidator, StrictStr


class BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def read_json(limit: int):
    """The request body parsed as JSON, read no further than `limit` bytes.
    Raises BodyError: 413 when larger, 400 when not UTF-8 JSON."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"The body is larger than {limit} bytes.")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(413, f"The body is larger than {limit} bytes.")
    try:
        # ValueError covers bad UTF-8, bad JSON, NaN/Infinity and ints too long to convert.
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise BodyError(400, "The body is not valid JSON.") from None


def _storable_text(value: str) -> str:
    # PostgreSQL's text and JSONB refuse NUL and lone surrogates (JSON may spell "\ud800").
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def Text(max_length: int, min_length: int = 0):
    return Annotated[StrictStr, Field(min_length=min_length, max_length=max_length),
                     AfterValidator(_storable_text)]


def _scalar(value):
    """Property values are flat scalars: what scoring rules can match. One
    plain message instead of pydantic's one per member of a union."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -2**63 <= value < 2**63:
            raise ValueError("integer out of range (64 bits)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("number out of range")
        return value
    if isinstance(value, str):
        if len(value) > 2000:
            raise ValueError("must be at most 2000 characters")
        return _storable_text(value)
    raise ValueError("must be a string, a number, true, false or null (not a list or an object)")


Scalar = Annotated[Any, PlainValidator(_scalar)]


def Properties(max_items: int):
    return Annotated[dict[Text(60, 1), Scalar], Field(max_length=max_items)]


def parse_instant(value: str) -> datetime:
    """ISO 8601 / RFC 3339 with an offset ("Z" or "+02:00"): without one the
    moment would be a guess."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-03-01T09:30:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("needs a time zone offset, e.g. Z or +01:00")
    return moment
