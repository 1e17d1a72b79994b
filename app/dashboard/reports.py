"""The marketer's figures: funnel, MQL→SQL conversion (within a period and by
cohort), breakdowns by source and segment, time in stage, SLA compliance.

Every function returns plain data (dicts, lists, numbers) that the overview
page, its CSV and the tests all read, so the three always agree.

Stage figures read `stage_spans` (migration 0006): one row per stage change
with the time the lead entered the stage, when and to what it left it, when
it last entered that stage before (prev_at: a lead counts once in a period
by its first entry there, a filter rather than a DISTINCT), the first SQL
after an MQL, and the lead's source, form, referrer and segment. So each
figure is one set-based range scan, whatever the number of leads.
On SQLite it is a view computed on the fly; on PostgreSQL a table that
refresh() brings up to date (the leads whose changes triggers marked) before
every report, so figures always include every committed change.

Periods are whole days in UTC: `start` and `end` are both included. A lead
"reached" a stage in a period when it entered the stage in the period;
counts are of distinct leads.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from statistics import median

from sqlalchemy import (BigInteger, Column, Date, DateTime, MetaData, String, Table, and_, case, cast, func, literal,
                        null, or_, select, text, tuple_, union_all)

from .. import rollups
from ..db import is_postgres, session
from ..rollups import fold_sql
from ..models import Submission
from ..qualify.lifecycle import STAGES

FUNNEL = ("mql", "sal", "sql", "opportunity", "customer")
# Stages a lead is created in: "reached in the period" for them is "New leads".
ENTRY = ("subscriber", "lead")
COHORT_HORIZON = 6  # columns +0 .. +6 months

# Not an ORM model: a view or a derived table, never written by the app itself.
SPANS = Table(
    "stage_spans", MetaData(),
    Column("id", BigInteger, primary_key=True), Column("lead_id", BigInteger), Column("stage", String(20)),
    Column("entered_at", DateTime(timezone=True)), Column("left_at", DateTime(timezone=True)),
    Column("next_stage", String(20)), Column("prev_at", DateTime(timezone=True)),
    Column("sql_at", DateTime(timezone=True)),
    *(Column(name, String) for name in ("source", "medium", "first_form", "referrer_domain", "segment")))
S = SPANS.c

# Leads per current stage and UTC day of creation (migration 0010).
LEAD_COUNTS = Table("lead_counts_now", MetaData(), Column("stage", String(20)), Column("created_day", Date),
                    Column("n", BigInteger))
C = LEAD_COUNTS.c
FOLD_LEAD_COUNTS = fold_sql("lead_counts", "lead_count_deltas", ("stage", "created_day"), ("n",))
REBUILD_LEAD_COUNTS = ["TRUNCATE lead_counts, lead_count_deltas",
                       "INSERT INTO lead_counts SELECT * FROM lead_counts_live"]


# --- periods -----------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included

    @property
    def lo(self) -> datetime:
        return datetime.combine(self.start, time(), timezone.utc)

    @property
    def hi(self) -> datetime:  # excluded
        return datetime.combine(self.end + timedelta(days=1), time(), timezone.utc)

    def months(self) -> list[int]:
        """Month indexes (year * 12 + month - 1) that the period touches."""
        return list(range(month_index(self.start), month_index(self.end) + 1))


def month_index(day: date | datetime) -> int:
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def presets(today: date) -> dict[str, Period]:
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return {"this_month": Period(first, today),
            "last_month": Period(last_month_end.replace(day=1), last_month_end),
            "last_90_days": Period(today - timedelta(days=89), today),
            "this_year": Period(today.replace(month=1, day=1), today)}


def default_period(today: date) -> Period:
    return presets(today)["last_90_days"]


def _in(column, period: Period):
    return and_(column >= period.lo, column < period.hi)


def _first_in(period: Period):
    """Spans that are their lead's first entry into the stage in the period."""
    return and_(_in(S.entered_at, period), or_(S.prev_at.is_(None), S.prev_at < period.lo))


# --- database plumbing ---------------------------------------------------------

def refresh() -> int:
    """PostgreSQL: rebuild the spans of the leads marked since the last call;
    returns how many. In a transaction of its own, so that the work is kept
    whatever the caller does; concurrent callers take turns (advisory lock)."""
    if not is_postgres():
        return 0
    with session.get_bind().begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('leadflow.stage_spans'))"))
        ids = conn.execute(text("DELETE FROM report_dirty_leads RETURNING lead_id")).scalars().all()
        if ids:
            # A condition on lead_id reaches inside the view's windows: only these leads are read.
            conn.execute(text("DELETE FROM stage_spans WHERE lead_id = ANY(:ids)"), {"ids": ids})
            conn.execute(text("INSERT INTO stage_spans SELECT * FROM stage_spans_live WHERE lead_id = ANY(:ids)"),
                         {"ids": ids})
    return len(ids)


def rebuild() -> None:
    """PostgreSQL: every span and lead count from scratch (after a bulk load
    with triggers off). Takes the table's exclusive lock: end the session's
    transaction first."""
    if is_postgres():
        with session.get_bind().begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('leadflow.stage_spans'))"))
            conn.execute(text("DELETE FROM report_dirty_leads"))
            conn.execute(text("TRUNCATE stage_spans"))
            conn.execute(text("INSERT INTO stage_spans SELECT * FROM stage_spans_live ORDER BY entered_at"))
            conn.execute(text("ANALYZE stage_spans"))
            conn.execute(text("LOCK TABLE leads IN SHARE MODE"))
            for statement in REBUILD_LEAD_COUNTS:
                conn.execute(text(statement))


def fold_lead_counts() -> int:
    """PostgreSQL: fold the lead count deltas into the totals (app/rollups.py)."""
    return rollups.fold(FOLD_LEAD_COUNTS)


def _ready() -> None:
    """Up-to-date spans, and settings for reporting queries in this transaction:
    no JIT (compiling these plans costs more than running them: 1.2 s of
    1.7 s measured at a million leads) and room to sort in memory."""
    if is_postgres():
        refresh()
        session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)"))


def _month(column):
    """The month of a timestamp, in UTC: a key that _month_number reads."""
    if is_postgres():
        return func.date_trunc("month", func.timezone("UTC", column))
    return func.strftime("%Y-%m", column)


def _month_number(key) -> int | None:
    if key is None:
        return None
    if isinstance(key, str):  # SQLite: "2024-03"
        year, month = key.split("-")
        return int(year) * 12 + int(month) - 1
    return month_index(key)


def _seconds(later, earlier):
    if is_postgres():
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _rate(part, whole):
    return part / whole if whole else None


# --- funnel ------------------------------------------------------------------

def funnel(period: Period) -> dict:
    """New leads in the period, leads that entered each later stage in it,
    and the number of leads in each stage now."""
    _ready()
    created = session.execute(select(func.coalesce(func.sum(C.n), 0))
                              .where(C.created_day >= period.start, C.created_day <= period.end)).scalar()
    later = [s for s in STAGES if s not in ENTRY]
    reached = dict(session.execute(
        select(S.stage, func.count()).where(S.stage.in_(later), _first_in(period)).group_by(S.stage)).all())
    current = {stage: int(n) for stage, n in session.execute(select(C.stage, func.sum(C.n)).group_by(C.stage))}
    return {"created": created,
            "reached": {stage: reached.get(stage, 0) for stage in later},
            "current": {stage: current.get(stage, 0) for stage in STAGES}}


def funnel_rows(data: dict) -> list[dict]:
    """funnel() as rows: new leads, then every stage in lifecycle order
    (None: the entry stages, counted as new leads)."""
    return ([{"stage": "new", "in_period": data["created"], "current": sum(data["current"].values())}]
            + [{"stage": stage, "in_period": data["reached"].get(stage), "current": data["current"][stage]}
               for stage in STAGES])


def mql_to_sql_in_period(data: dict) -> dict:
    """Rate (a), from funnel(): leads that reached SQL in the period ÷ leads
    that reached MQL in it. Simple, but not the same people when the sales
    cycle is longer than the period (see cohort_table)."""
    mql, sql = data["reached"]["mql"], data["reached"]["sql"]
    return {"mql": mql, "sql": sql, "rate": _rate(sql, mql)}


def monthly_conversion(period: Period) -> list[dict]:
    """Rate (a) month by month, for the months the period touches."""
    _ready()
    # Grouped by a subquery's column: PostgreSQL would not match an expression
    # with bound parameters in SELECT to the same one in GROUP BY.
    # A lead counts once a month: by its first entry into the stage that month.
    moves = (select(S.stage, _month(S.entered_at).label("month"))
             .where(S.stage.in_(("mql", "sql")), _in(S.entered_at, period),
                    or_(S.prev_at.is_(None), _month(S.prev_at) < _month(S.entered_at))).subquery())
    counts = {(stage, _month_number(m)): n for stage, m, n in session.execute(
        select(moves.c.stage, moves.c.month, func.count()).group_by(moves.c.stage, moves.c.month))}
    rows = []
    for m in period.months():
        mql, sql = counts.get(("mql", m), 0), counts.get(("sql", m), 0)
        rows.append({"month": month_start(m), "mql": mql, "sql": sql, "rate": _rate(sql, mql)})
    return rows


# --- cohorts -----------------------------------------------------------------

def cohort_table(period: Period, now: datetime, horizon: int = COHORT_HORIZON) -> list[dict]:
    """Rate (b): leads whose first MQL fell in month M (the whole months the
    period touches), and how many of them reached SQL by the end of month
    M+0 .. M+horizon (counted from their first SQL after that MQL). A cell
    is None while its month has not begun (the current month is shown to
    date) or when the cohort is empty."""
    _ready()
    months = period.months()
    window = Period(month_start(months[0]), month_start(months[-1] + 1) - timedelta(days=1))
    firsts = (select(_month(S.entered_at).label("mql_month"), _month(S.sql_at).label("sql_month"))
              .where(S.stage == "mql", S.prev_at.is_(None), _in(S.entered_at, window)).subquery())
    counts: dict[int, dict] = {}
    for mql_month, sql_month, n in session.execute(
            select(firsts.c.mql_month, firsts.c.sql_month, func.count())
            .group_by(firsts.c.mql_month, firsts.c.sql_month)):
        m, s = _month_number(mql_month), _month_number(sql_month)
        counts.setdefault(m, {})[None if s is None else s - m] = n
    now_month = month_index(now)
    rows = []
    for m in months:
        by_lag = counts.get(m, {})
        size = sum(by_lag.values())
        converted_by = [sum(n for k, n in by_lag.items() if k is not None and k <= offset)
                        for offset in range(horizon + 1)]
        known = [m + offset <= now_month and size > 0 for offset in range(horizon + 1)]
        rows.append({"month": month_start(m), "mqls": size,
                     "converted": [c if ok else None for c, ok in zip(converted_by, known)],
                     "shares": [c / size if ok else None for c, ok in zip(converted_by, known)]})
    return rows


def cohort_rate(rows: list[dict], offset: int = 1) -> dict:
    """One figure from the cohort table: of the MQLs of the cohorts whose
    month M+offset is known, the share that reached SQL by then."""
    known = [r for r in rows if r["converted"][offset] is not None]
    mqls, converted = sum(r["mqls"] for r in known), sum(r["converted"][offset] for r in known)
    return {"offset": offset, "mqls": mqls, "converted": converted, "rate": _rate(converted, mqls)}


# --- breakdowns --------------------------------------------------------------

DIMENSIONS = {"source": ("source", "medium"), "form": ("first_form",), "referrer": ("referrer_domain",),
              "segment": ("segment",)}
_ATTRIBUTES = ("source", "medium", "first_form", "referrer_domain", "segment")


def breakdown(period: Period, dimensions=tuple(DIMENSIONS)) -> dict[str, list[dict]]:
    """Per value of each dimension (UTM source/medium, first form, referrer
    domain, segment): leads that reached MQL and SQL in the period, rate (a)
    SQL ÷ MQL in the period, and of the period's MQL leads how many reached
    SQL after their (first) MQL there, to date. One statement over each
    lead's first MQL and first SQL in the period (see _grouped)."""
    _ready()
    counts = [case((S.stage == "mql", 1), else_=0), case((S.stage == "sql", 1), else_=0),
              case((and_(S.stage == "mql", S.sql_at.isnot(None)), 1), else_=0)]
    where = and_(S.stage.in_(("mql", "sql")), _first_in(period))
    result: dict[str, list[dict]] = {name: [] for name in dimensions}
    for name, key, mql, sql, conv in _grouped(where, counts, dimensions):
        mql, sql, conv = int(mql or 0), int(sql or 0), int(conv or 0)
        result[name].append({"key": key, "mql": mql, "sql": sql, "rate": _rate(sql, mql),
                             "converted": conv, "conversion": _rate(conv, mql)})
    for rows in result.values():
        rows.sort(key=lambda r: (-r["mql"], -r["sql"], tuple(v or "" for v in r["key"])))
    return result


def _grouped(where, counts, dimensions):
    """(dimension, key, *sums of counts) for every value of each dimension,
    in one pass over the spans: GROUPING SETS on PostgreSQL (whose grouping()
    bitmask says which set a row belongs to), one GROUP BY per dimension
    over a CTE on SQLite."""
    sums = [func.sum(count) for count in counts]
    if is_postgres():
        names = [column for column in _ATTRIBUTES if any(column in DIMENSIONS[d] for d in dimensions)]
        columns = [S[column] for column in names]
        sets = [tuple_(*(S[column] for column in DIMENSIONS[name])) for name in dimensions]
        bit = {column: 1 << (len(names) - 1 - index) for index, column in enumerate(names)}
        mask_of = {sum(bit.values()) - sum(bit[column] for column in DIMENSIONS[name]): name
                   for name in dimensions}
        rows = session.execute(select(func.grouping(*columns), *columns, *sums).where(where)
                               .group_by(func.grouping_sets(*sets)))
        for mask, *values in rows:
            name = mask_of[mask]
            attributes = dict(zip(names, values))
            yield (name, tuple(attributes[column] for column in DIMENSIONS[name]), *values[len(names):])
        return
    firsts = select(*(S[name] for name in _ATTRIBUTES), *(c.label(f"c{i}") for i, c in enumerate(counts))) \
        .where(where).cte("firsts")
    per_dimension = []
    for name in dimensions:
        keys = [firsts.c[column] for column in DIMENSIONS[name]]
        padded = keys + [cast(null(), String)] * (2 - len(keys))
        per_dimension.append(select(literal(name).label("dimension"), padded[0], padded[1],
                                    *(func.sum(firsts.c[f"c{i}"]) for i in range(len(counts))))
                             .group_by(*keys))
    for name, key1, key2, *values in session.execute(union_all(*per_dimension)):
        yield (name, (key1, key2) if len(DIMENSIONS[name]) == 2 else (key1,), *values)


# --- time in stage -----------------------------------------------------------

def stage_durations(period: Period) -> list[dict]:
    """Median time spent in each stage by the leads that left it in the
    period, from the change that entered the stage to the one that left it.
    In lifecycle order; stages nobody left are omitted."""
    _ready()
    seconds = _seconds(S.left_at, S.entered_at)
    in_period = _in(S.left_at, period)
    if is_postgres():
        found = {stage: (n, float(mid)) for stage, n, mid in session.execute(
            select(S.stage, func.count(), func.percentile_cont(0.5).within_group(seconds))
            .where(in_period).group_by(S.stage))}
    else:  # SQLite has no percentile: the durations of one period fit in memory
        spans: dict[str, list[float]] = {}
        for stage, value in session.execute(select(S.stage, seconds).where(in_period)):
            spans.setdefault(stage, []).append(float(value))
        found = {stage: (len(values), median(values)) for stage, values in spans.items()}
    return [{"stage": stage, "left": found[stage][0], "median_hours": found[stage][1] / 3600}
            for stage in STAGES if stage in found]


# --- SLA ---------------------------------------------------------------------

def sla(period: Period, now: datetime, hours: float) -> dict:
    """Every move to MQL in the period, judged by the move that followed it:
    accepted (→ sal, or straight → sql) within `hours` or later; sent back
    (recycled, disqualified) without acceptance; or none yet, still waiting
    within or past the deadline. Compliance = accepted in time ÷ the MQLs
    whose deadline has passed or that were answered."""
    _ready()
    limit = hours * 3600
    waited = _seconds(S.left_at, S.entered_at)
    accepted = S.next_stage.in_(("sal", "sql"))
    deadline = now - timedelta(hours=hours)
    buckets = {
        "on_time": and_(accepted, waited <= limit),
        "late": and_(accepted, waited > limit),
        "sent_back": and_(S.next_stage.isnot(None), ~accepted),
        "overdue": and_(S.next_stage.is_(None), S.entered_at <= deadline),
        "waiting": and_(S.next_stage.is_(None), S.entered_at > deadline),
    }
    row = session.execute(
        select(func.count(), *[func.sum(case((cond, 1), else_=0)) for cond in buckets.values()])
        .where(S.stage == "mql", _in(S.entered_at, period))).one()
    result = {"mqls": row[0], "hours": hours}
    result.update({name: int(value or 0) for name, value in zip(buckets, row[1:])})
    result["compliance"] = _rate(result["on_time"], result["mqls"] - result["waiting"])
    return result


# --- the rest of the page ----------------------------------------------------

def review_waiting() -> int:
    return session.execute(select(func.count()).select_from(Submission)
                           .where(Submission.verdict == "review")).scalar()


def campaigns_summary() -> list[dict]:
    """All-time figures of each campaign (app.nurture.stats), with rates."""
    from ..nurture.engine import campaigns
    from ..nurture.stats import all_campaign_totals
    defined = campaigns()
    figures = all_campaign_totals(defined)
    rows = []
    for slug, campaign in sorted(defined.items()):
        totals = figures[slug]
        rows.append({"slug": slug, "name": campaign.definition.name, "sent": totals["sent"],
                     "delivered": totals["delivered"],
                     "open_rate": _rate(totals["opened"], totals["delivered"]),
                     "click_rate": _rate(totals["clicked"], totals["delivered"]),
                     "unsubscribed": totals["unsubscribed"], "mql": totals["mql"]})
    return rows
