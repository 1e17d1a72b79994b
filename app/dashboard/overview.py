"""Blueprint `reports`: the marketer's overview page and its CSV.

The page and the CSV read the same functions of reports.py for the same
period, so their figures agree."""
import csv
import io
import time
from datetime import date

import click
from babel.numbers import format_percent
from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_babel import format_date, format_decimal, get_locale, gettext, lazy_gettext

from ..auth import role_required
from ..models import utcnow
from . import charts, reports

bp = Blueprint("reports", __name__, cli_group="reports")
bp.cli.help = "The overview's figures: keep stage_spans up to date."

MAX_DAYS = 5 * 366  # a longer period is a typo, not a question

STAGE_LABELS = {"new": lazy_gettext("New leads"), "subscriber": lazy_gettext("Subscriber"),
                "lead": lazy_gettext("Lead"), "mql": lazy_gettext("MQL"), "sal": lazy_gettext("SAL"),
                "sql": lazy_gettext("SQL"), "opportunity": lazy_gettext("Opportunity"),
                "customer": lazy_gettext("Customer"), "disqualified": lazy_gettext("Disqualified"),
                "recycled": lazy_gettext("Recycled"), "lost": lazy_gettext("Lost")}
PRESET_LABELS = {"this_month": lazy_gettext("This month"), "last_month": lazy_gettext("Last month"),
                 "last_90_days": lazy_gettext("Last 90 days"), "this_year": lazy_gettext("This year")}
DIMENSION_LABELS = {"source": lazy_gettext("UTM source / medium"), "form": lazy_gettext("First form"),
                    "referrer": lazy_gettext("Referrer domain"), "segment": lazy_gettext("Segment")}
TABLES = ("funnel", "monthly", "cohort", "sources", "segments", "stages", "sla")


def period_from_args(args, today: date) -> tuple[reports.Period, str | None]:
    """The period asked for by `from` and `to` (YYYY-MM-DD, both included),
    or the last 90 days with a message saying why."""
    default = reports.default_period(today)
    raw_from, raw_to = args.get("from", "").strip(), args.get("to", "").strip()
    if not raw_from and not raw_to:
        return default, None
    try:
        start = date.fromisoformat(raw_from) if raw_from else default.start
        end = date.fromisoformat(raw_to) if raw_to else today
    except ValueError:
        return default, gettext("Dates are written YYYY-MM-DD. Showing the last 90 days.")
    if start > end:
        return default, gettext("The start date is after the end date. Showing the last 90 days.")
    if (end - start).days > MAX_DAYS:
        return default, gettext("Choose a period of at most five years. Showing the last 90 days.")
    return reports.Period(start, end), None


# --- formatting, shared by the template and the charts ----------------------

def percent(share) -> str:
    """41.7% / 41,7 %: one decimal, the locale's own way; '—' for no data."""
    if share is None:
        return "—"
    return format_percent(round(share, 3), locale=str(get_locale()), decimal_quantization=False)


def number(value) -> str:
    return format_decimal(value)


def duration(hours: float) -> str:
    if hours < 48:
        return gettext("%(n)s h", n=format_decimal(round(hours, 1)))
    return gettext("%(n)s days", n=format_decimal(round(hours / 24, 1)))


def month_label(day: date) -> str:
    return format_date(day, "MMM yyyy")


# --- the page ----------------------------------------------------------------

def _sla_hours() -> float:
    from ..sales.handoff import config
    return config().sla_hours


@bp.get("/overview")
@role_required("marketer")
def overview():
    now = utcnow()
    period, error = period_from_args(request.args, now.date())
    presets = reports.presets(now.date())
    funnel = reports.funnel(period)
    reached = funnel["reached"]
    funnel_bars = [(str(STAGE_LABELS["new"]), funnel["created"])] + [
        (str(STAGE_LABELS[s]), reached[s]) for s in reports.FUNNEL]
    monthly = reports.monthly_conversion(period)
    breakdown = reports.breakdown(period)
    cohorts = reports.cohort_table(period, now)
    review_url = url_for("review.queue") if "review.queue" in current_app.view_functions else None
    return render_template(
        "pages/overview.html", period=period, error=error, now=now,
        presets=[(key, PRESET_LABELS[key], p) for key, p in presets.items()],
        funnel=funnel, funnel_rows=reports.funnel_rows(funnel),
        funnel_chart=charts.bar_chart(funnel_bars, gettext("Funnel: leads that reached each stage in the period")),
        within=reports.mql_to_sql_in_period(funnel), monthly=monthly,
        monthly_chart=charts.line_chart(
            [(month_label(m["month"]), round((m["rate"] or 0) * 100, 1)) for m in monthly],
            gettext("MQL→SQL within each month, in percent")),
        cohorts=cohorts, cohort_rate=reports.cohort_rate(cohorts), horizon=reports.COHORT_HORIZON,
        breakdown=breakdown, stages=reports.stage_durations(period),
        sla=reports.sla(period, now, _sla_hours()), campaigns=reports.campaigns_summary(),
        review_waiting=reports.review_waiting(), review_url=review_url,
        heat=charts.heat_colour, stage_labels=STAGE_LABELS, dimension_labels=DIMENSION_LABELS,
        number=number, percent=percent, duration=duration, month_label=month_label, day_label=format_date,
        campaign_url=_campaign_url, period_url=_period_url, csv_url=lambda table: _period_url(period, table))


def _period_url(period: reports.Period, table: str | None = None) -> str:
    args = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    if table:
        return url_for("reports.overview_csv", table=table, **args)
    return url_for("reports.overview", **args)


def _campaign_url(slug: str) -> str | None:
    if "campaigns.detail" in current_app.view_functions:
        return url_for("campaigns.detail", slug=slug)
    return None


# --- the CSV -----------------------------------------------------------------

def _rate(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _cell(value) -> str:
    """A spreadsheet runs a cell that starts with = + - @ as a formula; UTM
    values come from strangers' links, so such text is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(table: str, period: reports.Period, now) -> list[list]:
    """Header and rows of one table; machine-friendly: stage keys, ISO
    months, rates as fractions with four decimals."""
    if table == "funnel":
        return [["stage", "in_period", "current"]] + [
            [r["stage"], "" if r["in_period"] is None else r["in_period"], r["current"]]
            for r in reports.funnel_rows(reports.funnel(period))]
    if table == "monthly":
        return [["month", "mql", "sql", "sql_per_mql"]] + [
            [r["month"].strftime("%Y-%m"), r["mql"], r["sql"], _rate(r["rate"])]
            for r in reports.monthly_conversion(period)]
    if table == "cohort":
        horizon = range(reports.COHORT_HORIZON + 1)
        header = ["mql_month", "mqls"] + [f"sql_by_m{k}" for k in horizon] + [f"share_m{k}" for k in horizon]
        return [header] + [[r["month"].strftime("%Y-%m"), r["mqls"]]
                           + ["" if c is None else c for c in r["converted"]]
                           + [_rate(s) for s in r["shares"]] for r in reports.cohort_table(period, now)]
    if table in ("sources", "segments"):
        names = ("source", "form", "referrer") if table == "sources" else ("segment",)
        rows = [["dimension", "value", "medium", "mql", "sql", "sql_per_mql_in_period",
                 "mql_converted_to_date", "conversion_to_date"]]
        for name, found in reports.breakdown(period, names).items():
            for r in found:
                key = r["key"] + (None,) * (2 - len(r["key"]))
                rows.append([name, _cell(key[0]), _cell(key[1]), r["mql"], r["sql"],
                             _rate(r["rate"]), r["converted"], _rate(r["conversion"])])
        return rows
    if table == "stages":
        return [["stage", "left_in_period", "median_hours"]] + [
            [r["stage"], r["left"], f"{r['median_hours']:.2f}"] for r in reports.stage_durations(period)]
    if table == "sla":
        data = reports.sla(period, now, _sla_hours())
        keys = ("mqls", "on_time", "late", "sent_back", "overdue", "waiting")
        return [["sla_hours", *keys, "compliance"],
                [f"{data['hours']:g}", *(data[k] for k in keys), _rate(data["compliance"])]]
    abort(400, description=gettext("Unknown table. Use one of: %(tables)s.", tables=", ".join(TABLES)))


@bp.get("/overview.csv")
@role_required("marketer")
def overview_csv():
    now = utcnow()
    period, error = period_from_args(request.args, now.date())
    if error:
        abort(400, description=error)
    table = request.args.get("table", "funnel")
    rows = csv_rows(table, period, now)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    filename = f"leadflow-{table}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "private, no-store"})


# --- commands ----------------------------------------------------------------

@bp.cli.command("refresh")
def refresh_command():
    """Rebuild the spans of the leads changed since the last report (run it
    every minute or so, so that a page never has a backlog to catch up)."""
    started = time.perf_counter()
    count = reports.refresh()
    click.echo(f"{count} leads refreshed in {time.perf_counter() - started:.2f} s")


@bp.cli.command("rebuild")
def rebuild_command():
    """Rebuild every span and campaign figure (after a bulk load done with
    triggers off, or to repair)."""
    from ..nurture import stats
    started = time.perf_counter()
    reports.rebuild()
    click.echo(f"stage_spans rebuilt in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    stats.rebuild()
    click.echo(f"campaign figures rebuilt in {time.perf_counter() - started:.1f} s")
