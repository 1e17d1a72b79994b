"""The leads list's query: filters, search and keyset pagination.

Keyset, never OFFSET: a page starts right after the last row of the previous
one, found through the index, so page 10,000 costs what page 1 costs. The
order is always total (sort column, then id), so rows with equal values are
neither skipped nor repeated. A nullable sort column (name, mql_at) is walked
in two index-friendly segments: its values in order, then its NULLs by id.
"""
import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from flask_babel import lazy_gettext
from sqlalchemy import Select, func, select

from ..db import session
from ..models import Lead
from ..qualify.lifecycle import STAGES

PAGE_SIZE = 50
COUNT_CAP = 1000  # counted exactly up to here, shown as "1000+" beyond
TEMPERATURES = ("warm", "hot", "very_hot")
# sort key → (column, may be NULL)
SORTS = {"created_at": (Lead.created_at, False), "score": (Lead.score, False),
         "name": (Lead.name, True), "mql_at": (Lead.mql_at, True)}
SORT_LABELS = {"created_at": lazy_gettext("Created"), "score": lazy_gettext("Score"),
               "name": lazy_gettext("Name"), "mql_at": lazy_gettext("MQL date")}


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Filters:
    q: str = ""
    stage: str = ""
    segment: str = ""
    score_min: float | None = None
    score_max: float | None = None
    temperature: str = ""
    owner: str = ""  # "", "none" (unassigned) or a user id
    form: str = ""
    source: str = ""
    created_from: date | None = None
    created_to: date | None = None
    sort: str = "created_at"
    desc: bool = True
    errors: tuple = field(default=(), compare=False)

    def args(self) -> dict:
        """The query-string arguments that rebuild these filters (for links)."""
        values = {"q": self.q, "stage": self.stage, "segment": self.segment,
                  "score_min": _num(self.score_min), "score_max": _num(self.score_max),
                  "temperature": self.temperature, "owner": self.owner, "form": self.form,
                  "source": self.source,
                  "created_from": self.created_from.isoformat() if self.created_from else "",
                  "created_to": self.created_to.isoformat() if self.created_to else "",
                  "sort": self.sort, "order": "desc" if self.desc else "asc"}
        return {k: v for k, v in values.items() if v not in ("", None)}


def _num(value):
    return "" if value is None else f"{value:g}"


def parse_filters(args) -> Filters:
    """Filters from a query string. A value that cannot be read is dropped
    and named in `errors`, rather than failing the page."""
    errors = []

    def text(name, limit=300):
        return (args.get(name) or "").strip()[:limit]

    def number(name, label):
        raw = text(name, 40)
        if not raw:
            return None
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")):
            errors.append(lazy_gettext("%(field)s is not a number: ignored.", field=label))
            return None
        return value

    def day(name, label):
        raw = text(name, 40)
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            errors.append(lazy_gettext("%(field)s is not a date (YYYY-MM-DD): ignored.", field=label))
            return None

    stage = text("stage")
    temperature = text("temperature")
    owner = text("owner")
    sort = text("sort") or "created_at"
    return Filters(
        q=text("q", 200), stage=stage if stage in STAGES else "", segment=text("segment", 80),
        score_min=number("score_min", lazy_gettext("Minimum score")),
        score_max=number("score_max", lazy_gettext("Maximum score")),
        temperature=temperature if temperature in TEMPERATURES + ("none",) else "",
        owner=owner if owner == "none" or owner.isdigit() else "",
        form=text("form", 80), source=text("source", 200),
        created_from=day("created_from", lazy_gettext("Created from")),
        created_to=day("created_to", lazy_gettext("Created to")),
        sort=sort if sort in SORTS else "created_at", desc=text("order") != "asc", errors=tuple(errors))


def like_pattern(q: str) -> str:
    """'%q%' with LIKE's wildcards in q taken literally (escape character \\)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def filtered(filters: Filters, owner_id: int | None = None) -> Select:
    """SELECT leads matching the filters; owner_id scopes a salesperson to
    their own leads whatever the owner filter says."""
    query = select(Lead)
    if filters.q:
        # lower(col) LIKE '%q%': the form the pg_trgm GIN indexes serve.
        pattern = like_pattern(filters.q)
        query = query.where(func.lower(Lead.email).like(pattern, escape="\\")
                            | func.lower(Lead.name).like(pattern, escape="\\")
                            | func.lower(Lead.company).like(pattern, escape="\\"))
    if filters.stage:
        query = query.where(Lead.stage == filters.stage)
    if filters.segment:
        query = query.where(Lead.segment == filters.segment)
    if filters.score_min is not None:
        query = query.where(Lead.score >= filters.score_min)
    if filters.score_max is not None:
        query = query.where(Lead.score <= filters.score_max)
    if filters.temperature == "none":
        query = query.where(Lead.temperature.is_(None))
    elif filters.temperature:
        query = query.where(Lead.temperature == filters.temperature)
    if owner_id is not None:
        query = query.where(Lead.owner_id == owner_id)
    elif filters.owner == "none":
        query = query.where(Lead.owner_id.is_(None))
    elif filters.owner:
        query = query.where(Lead.owner_id == int(filters.owner))
    if filters.form:
        query = query.where(Lead.first_form == filters.form)
    if filters.source:
        query = query.where(Lead.source == filters.source)
    if filters.created_from:
        query = query.where(Lead.created_at >= _start_of(filters.created_from))
    if filters.created_to:  # the whole "to" day is included
        query = query.where(Lead.created_at < _start_of(filters.created_to + timedelta(days=1)))
    return query


def count_upto(query: Select, cap: int = COUNT_CAP) -> int:
    """How many rows match, counting no further than cap + 1: a bounded
    cost however many leads there are."""
    limited = query.with_only_columns(Lead.id).order_by(None).limit(cap + 1).subquery()
    return session.execute(select(func.count()).select_from(limited)).scalar_one()


# --- cursors -----------------------------------------------------------------

def encode_cursor(filters: Filters, lead: Lead) -> str:
    value = getattr(lead, filters.sort)
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([filters.sort, value, lead.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(filters: Filters, token: str) -> tuple:
    """(value, id) of the row a page starts after. Raises BadCursor."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        sort, value, lead_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("unreadable page link") from exc
    if sort != filters.sort or not isinstance(lead_id, int) or isinstance(lead_id, bool):
        raise BadCursor("page link made for another sort")
    if value is None:
        if not SORTS[sort][1]:
            raise BadCursor("page link without a value")
        return None, lead_id
    try:
        if sort in ("created_at", "mql_at"):
            value = datetime.fromisoformat(value)
        elif sort == "score":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            value = float(value)
        elif not isinstance(value, str):
            raise TypeError
    except (TypeError, ValueError) as exc:
        raise BadCursor("page link with a bad value") from exc
    return value, lead_id


# --- pages -------------------------------------------------------------------

@dataclass
class Page:
    rows: list
    next_cursor: str | None
    prev_cursor: str | None


def fetch_page(query: Select, filters: Filters, after: str | None = None, before: str | None = None,
               size: int = PAGE_SIZE) -> Page:
    """One page of the filtered leads, starting after the cursor `after`
    (forward) or ending before the cursor `before` (backward)."""
    backward = bool(before) and not after
    cursor = decode_cursor(filters, before if backward else after) if (after or before) else None
    rows = walk(query, filters, cursor, backward, size + 1)
    if cursor is not None and not rows:  # the rows around the link went away: start over
        return fetch_page(query, filters, size=size)
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
        return Page(rows, encode_cursor(filters, rows[-1]) if rows else None,
                    encode_cursor(filters, rows[0]) if rows and more else None)
    return Page(rows, encode_cursor(filters, rows[-1]) if rows and more else None,
                encode_cursor(filters, rows[0]) if rows and cursor else None)


def walk(query: Select, filters: Filters, cursor: tuple | None, backward: bool, limit: int) -> list:
    """Up to `limit` leads from the cursor on, nearest first. The list's
    order is: non-NULL values (by value, id), then NULLs (by id); walking
    backward reverses both the order and the segments."""
    column, nullable = SORTS[filters.sort]
    walk_desc = filters.desc != backward
    by_id = Lead.id.desc() if walk_desc else Lead.id.asc()

    def values_segment(bound):
        q = query.order_by(column.desc() if walk_desc else column.asc(), by_id)
        if nullable:
            q = q.where(column.is_not(None))
        if bound is not None:
            value, last_id = bound
            # col >= v first: it is what lets the index start at v.
            if walk_desc:
                q = q.where(column <= value, (column < value) | (Lead.id < last_id))
            else:
                q = q.where(column >= value, (column > value) | (Lead.id > last_id))
        return q

    def nulls_segment(bound):
        q = query.where(column.is_(None)).order_by(by_id)
        if bound is not None:
            q = q.where(Lead.id < bound[1] if walk_desc else Lead.id > bound[1])
        return q

    # Segments in the list's order, then flipped when walking backward.
    segments = [("values", values_segment)] + ([("nulls", nulls_segment)] if nullable else [])
    if backward:
        segments.reverse()
    if cursor is not None:
        where = "nulls" if cursor[0] is None else "values"
        start = [name for name, _ in segments].index(where)
        plan = [(segments[start][1], cursor)] + [(make, None) for _, make in segments[start + 1:]]
    else:
        plan = [(make, None) for _, make in segments]
    rows: list = []
    for make, bound in plan:
        rows.extend(session.execute(make(bound).limit(limit - len(rows))).scalars())
        if len(rows) >= limit:
            break
    return rows


def iterate(query: Select, filters: Filters, batch: int = 1000):
    """Every filtered lead, in the list's order, fetched in keyset batches
    (the CSV export): memory stays at one batch whatever the total."""
    cursor = None
    while True:
        rows = walk(query, filters, cursor, False, batch)
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1]
        cursor = (getattr(last, filters.sort), last.id)

