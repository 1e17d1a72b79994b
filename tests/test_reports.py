"""The overview's figures, checked against numbers worked out by hand from a
small history of eleven leads (A..K) written with explicit times. The same
numbers are then read from the CSV and from the page.

Times are UTC. The period is Q1 2024; 2024 is a leap year (Feb has 29 days).

    lead created      moves (→ stage at time)                          source / medium       form     referrer        segment
    A    01-02 09:00  mql 01-05 10:00, sal 01-05 12:00, sql 01-20 12:00  google / cpc          contact  www.google.com  smb
    B    01-03 09:00  mql 01-10 09:00, sal 01-10 19:00, sql 02-14 09:00  google / cpc          contact  www.google.com  enterprise
    C    01-04 09:00  mql 01-15 08:00, sal 01-15 09:00, sql 04-02 09:00  linkedin / paid_social ebook   linkedin.com    enterprise
    D    01-05 09:00  mql 01-25 08:00, recycled 01-26 08:00,             linkedin / paid_social contact  -               smb
                      mql 02-10 08:00, sal 02-10 10:00
    E    02-01 09:00  mql 02-03 08:00, sql 02-03 09:00,                  - / -                 contact  -               enterprise
                      opportunity 02-20 09:00, customer 03-10 09:00
    F    01-20 09:00  mql 02-20 08:00 (nobody answers)                   google / cpc          ebook    www.google.com  smb
    G    03-01 09:00  mql 03-05 08:00, sal 03-05 11:00, sql 05-10 09:00  newsletter / email    contact  -               midmarket
    H    03-02 09:00  mql 03-30 20:00, sal 03-31 02:00,                  google / cpc          contact  www.google.com  midmarket
                      disqualified 04-15 09:00
    I    03-03 09:00  (none)                                             google / cpc          contact  www.google.com  smb
    J    2023-11-01   mql 2023-12-10 09:00, sal 2023-12-10 10:00,        linkedin / paid_social contact  linkedin.com    enterprise
         09:00        sql 01-08 10:00
    K    03-31 09:00  mql 03-31 22:00 (nobody answers)                   newsletter / email    ebook    -               smb
"""
import csv
import io
from datetime import date, datetime, timezone
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select, text

from app.dashboard import reports
from app.db import session
from app.models import Lead, StageChange, Submission
from tests.test_auth import login, make_user

Q1 = reports.Period(date(2024, 1, 1), date(2024, 3, 31))
NOW = datetime(2024, 5, 15, 12, 0, tzinfo=timezone.utc)  # the cohort tests' "now"


def at(text: str) -> datetime:
    """'01-05 10:00' is in 2024; a full 'YYYY-MM-DD HH:MM' is taken as is."""
    if len(text) == len("01-05 10:00"):
        text = "2024-" + text
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


GOOGLE, LINKEDIN, NEWSLETTER, DIRECT = ("google", "cpc"), ("linkedin", "paid_social"), ("newsletter", "email"), (None, None)
HISTORY = {
    "a": ("01-02 09:00", GOOGLE, "contact", "www.google.com", "smb",
          [("mql", "01-05 10:00"), ("sal", "01-05 12:00"), ("sql", "01-20 12:00")]),
    "b": ("01-03 09:00", GOOGLE, "contact", "www.google.com", "enterprise",
          [("mql", "01-10 09:00"), ("sal", "01-10 19:00"), ("sql", "02-14 09:00")]),
    "c": ("01-04 09:00", LINKEDIN, "ebook", "linkedin.com", "enterprise",
          [("mql", "01-15 08:00"), ("sal", "01-15 09:00"), ("sql", "04-02 09:00")]),
    "d": ("01-05 09:00", LINKEDIN, "contact", None, "smb",
          [("mql", "01-25 08:00"), ("recycled", "01-26 08:00"), ("mql", "02-10 08:00"), ("sal", "02-10 10:00")]),
    "e": ("02-01 09:00", DIRECT, "contact", None, "enterprise",
          [("mql", "02-03 08:00"), ("sql", "02-03 09:00"), ("opportunity", "02-20 09:00"),
           ("customer", "03-10 09:00")]),
    "f": ("01-20 09:00", GOOGLE, "ebook", "www.google.com", "smb", [("mql", "02-20 08:00")]),
    "g": ("03-01 09:00", NEWSLETTER, "contact", None, "midmarket",
          [("mql", "03-05 08:00"), ("sal", "03-05 11:00"), ("sql", "05-10 09:00")]),
    "h": ("03-02 09:00", GOOGLE, "contact", "www.google.com", "midmarket",
          [("mql", "03-30 20:00"), ("sal", "03-31 02:00"), ("disqualified", "04-15 09:00")]),
    "i": ("03-03 09:00", GOOGLE, "contact", "www.google.com", "smb", []),
    "j": ("2023-11-01 09:00", LINKEDIN, "contact", "linkedin.com", "enterprise",
          [("mql", "2023-12-10 09:00"), ("sal", "2023-12-10 10:00"), ("sql", "01-08 10:00")]),
    "k": ("03-31 09:00", NEWSLETTER, "ebook", None, "smb", [("mql", "03-31 22:00")]),
}


def build_history() -> None:
    for name, (created, (source, medium), form, referrer, segment, moves) in HISTORY.items():
        lead = Lead(email=f"{name}@history.example", name=name.upper(), source=source, medium=medium,
                    first_form=form, referrer_domain=referrer, segment=segment,
                    stage=moves[-1][0] if moves else "lead", created_at=at(created), updated_at=at(created))
        session.add(lead)
        session.flush()
        stage = None
        for target, when in [("lead", created)] + moves:
            session.add(StageChange(lead_id=lead.id, from_stage=stage, to_stage=target, actor="test", at=at(when)))
            stage = target
    session.commit()


@pytest.fixture
def history_app(any_db_url, app_factory):
    """The history above, on PostgreSQL and on SQLite."""
    app = app_factory(any_db_url)
    with app.app_context():
        build_history()
        yield app


# --- hand-computed expectations ------------------------------------------------

# Cohorts: leads by month of their FIRST MQL; share with an SQL by the end of M+k.
#   Jan: A, B, C, D (4).  SQL: A Jan (+0), B Feb (+1), C Apr (+3), D never.
#        by +0: 1 (A) = 1/4; +1: 2 = 2/4; +2: 2/4; +3: 3/4; +4..: 3/4
#   Feb: E, F (2) (D's second MQL is not its first). SQL: E Feb (+0).
#        every column: 1/2
#   Mar: G, H, K (3). SQL: G May (+2).  +0: 0/3, +1: 0/3, +2: 1/3 ...
#   J's first MQL is December 2023: not a cohort of this period.
# With now = 2024-05-15, a column is known when M+k <= May 2024:
#   Jan: +0..+4 (Jan..May); Feb: +0..+3; Mar: +0..+2.
COHORT_MAY = [
    ("2024-01", 4, [1, 2, 2, 3, 3, None, None]),
    ("2024-02", 2, [1, 1, 1, 1, None, None, None]),
    ("2024-03", 3, [0, 0, 1, None, None, None, None]),
]
# Today (long after 2024) every column is known.
COHORT_TODAY = [
    ("2024-01", 4, [1, 2, 2, 3, 3, 3, 3]),
    ("2024-02", 2, [1, 1, 1, 1, 1, 1, 1]),
    ("2024-03", 3, [0, 0, 1, 1, 1, 1, 1]),
]

# Funnel, Q1: created: A..I and K (J was created in 2023) = 10.
# Reached in Q1 (distinct leads): the entry stages (subscriber, lead) are "new leads": None;
#   mql A B C D E F G H K = 9 (D twice, counted once; J's MQL was in December);
#   sal A B C D G H = 6; sql A B E J = 4 (C in April, G in May);
#   opportunity E, customer E, recycled D = 1 each; disqualified: H's is in April = 0.
# Now: lead I; mql F K; sal D; sql A B C G J; customer E; disqualified H.
FUNNEL = [("new", 10, 11), ("subscriber", None, 0), ("lead", None, 1), ("mql", 9, 2), ("sal", 6, 1), ("sql", 4, 5),
          ("opportunity", 1, 0), ("customer", 1, 1), ("disqualified", 0, 1), ("recycled", 1, 0), ("lost", 0, 0)]
# (a) within the period: 4 SQL / 9 MQL = 0.4444
# Month by month: Jan: MQL A B C D = 4, SQL A J = 2 → 0.5; Feb: MQL D E F = 3, SQL B E = 2 → 0.6667;
#                 Mar: MQL G H K = 3, SQL none → 0.
MONTHLY = [("2024-01", 4, 2, 0.5), ("2024-02", 3, 2, 2 / 3), ("2024-03", 3, 0, 0.0)]

# By source: (key, MQL in Q1, SQL in Q1, MQLs of Q1 with an SQL since)
#   google/cpc: MQL A B F H = 4; SQL A B = 2; converted A B = 2
#   linkedin/paid_social: MQL C D = 2; SQL J = 1; converted C (April) = 1
#   newsletter/email: MQL G K = 2; SQL 0; converted G (May) = 1
#   none: MQL E = 1; SQL E = 1; converted E = 1
# Ordered by MQL, then SQL, then name.
BY_SOURCE = [(("google", "cpc"), 4, 2, 2), (("linkedin", "paid_social"), 2, 1, 1),
             (("newsletter", "email"), 2, 0, 1), ((None, None), 1, 1, 1)]
#   contact: MQL A B D E G H = 6; SQL A B E J = 4; converted A B E G = 4
#   ebook: MQL C F K = 3; SQL 0; converted C = 1
BY_FORM = [(("contact",), 6, 4, 4), (("ebook",), 3, 0, 1)]
#   www.google.com: as google/cpc; none: MQL D E G K = 4, SQL E = 1, converted E G = 2;
#   linkedin.com: MQL C = 1, SQL J = 1, converted C = 1
BY_REFERRER = [(("www.google.com",), 4, 2, 2), ((None,), 4, 1, 2), (("linkedin.com",), 1, 1, 1)]
#   smb: MQL A D F K = 4; SQL A = 1; converted A = 1
#   enterprise: MQL B C E = 3; SQL B E J = 3; converted B C E = 3
#   midmarket: MQL G H = 2; SQL 0; converted G = 1
BY_SEGMENT = [(("smb",), 4, 1, 1), (("enterprise",), 3, 3, 3), (("midmarket",), 2, 0, 1)]

# Median time in stage, for leads that LEFT the stage in Q1 (hours):
#   lead: A 3d1h=73, B 7d=168, C 10d23h=263, D 19d23h=479, E 1d23h=47, F Jan 20→Feb 20 less 1 h=743,
#         G 4d-1h=95, H 28d11h=683, K 13 → sorted 13 47 73 95 [168] 263 479 683 743 → 168
#   mql: A 2, B 10, C 1, D 24 (→ recycled) and 2, E 1 (→ sql), G 3, H 6 → 1 1 2 2 | 3 6 10 24 → (2+3)/2 = 2.5
#   sal: A 15d=360, B Jan 10 19:00→Feb 14 09:00 = 35d-10h = 830, J Dec 10 10:00→Jan 8 10:00 = 29d = 696 → 696
#   sql: E Feb 3→Feb 20 = 17d = 408;  opportunity: E Feb 20→Mar 10 = 9+10 = 19d = 456 (leap year)
#   recycled: D Jan 26→Feb 10 = 15d = 360.  Nobody left opportunity... customer, disqualified in Q1.
STAGES = [("lead", 9, 168.0), ("mql", 8, 2.5), ("sal", 3, 696.0), ("sql", 1, 408.0), ("opportunity", 1, 456.0),
          ("recycled", 1, 360.0)]

# SLA 4 h, the ten moves to MQL in Q1, judged by the move after each:
#   on time: A 2h, C 1h, D(2nd) 2h, E 1h (straight to SQL), G 3h = 5
#   late: B 10h, H 6h = 2;  sent back: D(1st) → recycled = 1
#   no answer: F (Feb 20), K (Mar 31 22:00)
# now = 2024-04-01 00:00: F overdue, K waited 2 h: waiting → compliance 5 / (10 - 1) = 0.5556
# now = 2024-05-15: both overdue → 5 / 10 = 0.5
SLA_APRIL = {"mqls": 10, "on_time": 5, "late": 2, "sent_back": 1, "overdue": 1, "waiting": 1}
SLA_MAY = {"mqls": 10, "on_time": 5, "late": 2, "sent_back": 1, "overdue": 2, "waiting": 0}


def shares(counts, size):
    return [None if c is None else c / size for c in counts]


# --- the queries -------------------------------------------------------------

def test_cohort_table_by_hand(history_app):
    table = reports.cohort_table(Q1, NOW)
    assert [(r["month"].strftime("%Y-%m"), r["mqls"], r["converted"]) for r in table] == COHORT_MAY
    assert [r["shares"] for r in table] == [shares(c, n) for _, n, c in COHORT_MAY]
    assert table[0]["shares"][:5] == [0.25, 0.5, 0.5, 0.75, 0.75]
    # (b) at +1: cohorts whose +1 month has ended: all three; (2 + 1 + 0) / (4 + 2 + 3) = 3/9
    assert reports.cohort_rate(table, 1) == {"offset": 1, "mqls": 9, "converted": 3, "rate": 3 / 9}
    # (b) at +4: only January's +4 (May) is known: 3/4
    assert reports.cohort_rate(table, 4)["rate"] == 0.75
    # A cohort whose month has not ended shows its first column to date; later ones are unknown.
    march = reports.cohort_table(reports.Period(date(2024, 3, 1), date(2024, 3, 31)),
                                 datetime(2024, 3, 31, 23, tzinfo=timezone.utc))
    assert march[0]["mqls"] == 3 and march[0]["converted"] == [0] + [None] * 6


def test_funnel_and_rate_within_the_period(history_app):
    data = reports.funnel(Q1)
    assert [(r["stage"], r["in_period"], r["current"]) for r in reports.funnel_rows(data)] == FUNNEL
    assert reports.mql_to_sql_in_period(data) == {"mql": 9, "sql": 4, "rate": 4 / 9}
    monthly = reports.monthly_conversion(Q1)
    assert [(r["month"].strftime("%Y-%m"), r["mql"], r["sql"]) for r in monthly] == [m[:3] for m in MONTHLY]
    assert [r["rate"] for r in monthly] == pytest.approx([m[3] for m in MONTHLY])


def test_breakdown_by_source_and_segment(history_app):
    found = reports.breakdown(Q1)

    def simple(rows):
        return [(r["key"], r["mql"], r["sql"], r["converted"]) for r in rows]
    assert simple(found["source"]) == BY_SOURCE
    assert simple(found["form"]) == BY_FORM
    assert simple(found["referrer"]) == BY_REFERRER
    assert simple(found["segment"]) == BY_SEGMENT
    enterprise = found["segment"][1]
    assert enterprise["rate"] == 1.0 and enterprise["conversion"] == 1.0
    assert found["segment"][0]["rate"] == 0.25 and found["segment"][2]["conversion"] == 0.5


def test_median_time_in_stage(history_app):
    found = reports.stage_durations(Q1)
    assert [(r["stage"], r["left"]) for r in found] == [(s, n) for s, n, _ in STAGES]
    assert [r["median_hours"] for r in found] == pytest.approx([h for _, _, h in STAGES])


def test_sla_compliance(history_app):
    april = reports.sla(Q1, datetime(2024, 4, 1, tzinfo=timezone.utc), 4)
    assert {k: april[k] for k in SLA_APRIL} == SLA_APRIL
    assert april["compliance"] == pytest.approx(5 / 9)
    may = reports.sla(Q1, NOW, 4)
    assert {k: may[k] for k in SLA_MAY} == SLA_MAY and may["compliance"] == 0.5
    # 12 hours: B (10 h) and H (6 h) are in time too → 7 / 10
    assert reports.sla(Q1, NOW, 12)["compliance"] == 0.7


def test_empty_database(any_db_url, app_factory):
    app = app_factory(any_db_url)
    with app.app_context():
        assert reports.mql_to_sql_in_period(reports.funnel(Q1)) == {"mql": 0, "sql": 0, "rate": None}
        assert [r["shares"] for r in reports.cohort_table(Q1, NOW)] == [[None] * 7] * 3
        assert reports.breakdown(Q1) == {"source": [], "form": [], "referrer": [], "segment": []}
        assert reports.stage_durations(Q1) == []
        assert reports.sla(Q1, NOW, 4)["compliance"] is None


# --- the CSV and the page (PostgreSQL, through HTTP) ---------------------------

QUERY = "from=2024-01-01&to=2024-03-31"


@pytest.fixture
def marketer(app):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer", "Mia")
        build_history()
        session.add(Submission(form_slug="contact", channel="hosted", payload={}, verdict="review", reasons=[]))
        session.commit()
    client = app.test_client()
    assert login(client, "mia@leadflow.example").status_code == 302
    return client


def read_csv(client, table):
    response = client.get(f"/overview.csv?table={table}&{QUERY}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f"leadflow-{table}-2024-01-01-2024-03-31.csv" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def rate(text):
    return None if text == "" else float(text)


def test_csv_has_the_same_figures(marketer):
    funnel = read_csv(marketer, "funnel")
    assert [(r["stage"], r["in_period"] and int(r["in_period"]), int(r["current"])) for r in funnel] == \
        [(s, "" if n is None else n, c) for s, n, c in FUNNEL]
    cohort = read_csv(marketer, "cohort")
    assert [(r["mql_month"], int(r["mqls"]), [int(r[f"sql_by_m{k}"]) for k in range(7)]) for r in cohort] \
        == COHORT_TODAY
    assert [[rate(r[f"share_m{k}"]) for k in range(7)] for r in cohort] == \
        [[round(c / n, 4) for c in counts] for _, n, counts in COHORT_TODAY]
    monthly = read_csv(marketer, "monthly")
    assert [(r["month"], int(r["mql"]), int(r["sql"]), rate(r["sql_per_mql"])) for r in monthly] == \
        [(m, a, b, round(r, 4)) for m, a, b, r in MONTHLY]

    def breakdown_rows(rows, dimension):
        return [((r["value"] or None, r["medium"] or None) if dimension == "source" else (r["value"] or None,),
                 int(r["mql"]), int(r["sql"]), int(r["mql_converted_to_date"]))
                for r in rows if r["dimension"] == dimension]
    sources = read_csv(marketer, "sources")
    assert breakdown_rows(sources, "source") == BY_SOURCE
    assert breakdown_rows(sources, "form") == BY_FORM
    assert breakdown_rows(sources, "referrer") == BY_REFERRER
    assert breakdown_rows(read_csv(marketer, "segments"), "segment") == BY_SEGMENT
    stages = read_csv(marketer, "stages")
    assert [(r["stage"], int(r["left_in_period"]), float(r["median_hours"])) for r in stages] == STAGES
    [sla] = read_csv(marketer, "sla")  # today: F and K are long overdue
    assert {k: int(sla[k]) for k in SLA_MAY} == SLA_MAY
    assert sla["sla_hours"] == "4" and sla["compliance"] == "0.5000"


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts."""

    def __init__(self, html):
        super().__init__()
        self.tables, self.current, self.row, self.cell = {}, None, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("id"), [])
        elif tag == "tr" and self.current is not None:
            self.row = []
            self.current.append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_page_shows_the_same_figures(marketer):
    response = marketer.get(f"/overview?{QUERY}", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    tables = Tables(html).tables
    labels = {"new": "New leads", "subscriber": "Subscriber", "lead": "Lead", "mql": "MQL", "sal": "SAL",
              "sql": "SQL", "opportunity": "Opportunity", "customer": "Customer",
              "disqualified": "Disqualified", "recycled": "Recycled", "lost": "Lost"}
    assert tables["funnel-table"][1:] == [[labels[s], "—" if a is None else str(a), str(b)] for s, a, b in FUNNEL]
    # The cohort table: month, size, then each share as a percentage with one decimal.
    assert tables["cohort-table"][1:] == [
        ["Jan 2024", "4", "25%", "50%", "50%", "75%", "75%", "75%", "75%"],
        ["Feb 2024", "2", "50%", "50%", "50%", "50%", "50%", "50%", "50%"],
        ["Mar 2024", "3", "0%", "0%", "33.3%", "33.3%", "33.3%", "33.3%", "33.3%"]]
    assert tables["monthly-table"][1:] == [["Jan 2024", "4", "2", "50%"], ["Feb 2024", "3", "2", "66.7%"],
                                           ["Mar 2024", "3", "0", "0%"]]
    assert text_of(html, "rate-within") == ("Within the period 44.4% "
                                            "4 leads reached SQL in the period ÷ 9 reached MQL in it")
    # (b) at +1, every cohort known today: (2 + 1 + 0) / 9
    assert text_of(html, "rate-cohort").startswith("By cohort, by the end of the next month 33.3% of 9 leads")
    assert tables["by-source"][1:] == [
        ["google / cpc", "4", "2", "50%", "50% (2)"],
        ["linkedin / paid_social", "2", "1", "50%", "50% (1)"],
        ["newsletter / email", "2", "0", "0%", "50% (1)"],
        ["(none) / (none)", "1", "1", "100%", "100% (1)"]]
    assert tables["by-segment"][1:] == [["smb", "4", "1", "25%", "25% (1)"],
                                        ["enterprise", "3", "3", "100%", "100% (3)"],
                                        ["midmarket", "2", "0", "0%", "50% (1)"]]
    assert tables["stages-table"][1:] == [["Lead", "9", "7 days"], ["MQL", "8", "2.5 h"], ["SAL", "3", "29 days"],
                                          ["SQL", "1", "17 days"], ["Opportunity", "1", "19 days"],
                                          ["Recycled", "1", "15 days"]]
    assert tables["sla-table"][1:] == [["Accepted in time", "5"], ["Accepted late", "2"],
                                       ["Sent back without acceptance", "1"],
                                       ["Still waiting, past the deadline", "2"],
                                       ["Still waiting, within the deadline", "0"], ["All", "10"]]
    assert text_of(html, "sla-compliance").startswith("50% of the MQLs of the period were accepted within 4 hours")
    assert text_of(html, "review-waiting") == "1 submission waits for a person to decide. Open the review queue"
    assert '<th scope="col"' in html and '<th scope="row"' in html


VOID = {"br", "hr", "img", "input", "link", "meta", "source", "wbr"}


def text_of(html, element_id) -> str:
    """The text inside the element with this id."""
    class Finder(HTMLParser):
        depth, parts = 0, []

        def handle_starttag(self, tag, attrs):
            if tag not in VOID and (self.depth or dict(attrs).get("id") == element_id):
                self.depth += 1

        def handle_endtag(self, tag):
            if self.depth:
                self.depth -= 1

        def handle_data(self, data):
            if self.depth:
                self.parts.append(data)
    finder = Finder()
    finder.feed(html)
    return " ".join("".join(finder.parts).split())


def test_presets_links_and_default_period(marketer):
    html = marketer.get("/overview").get_data(as_text=True)
    for label in ("This month", "Last month", "Last 90 days", "This year"):
        assert label in html
    assert 'aria-current="true">Last 90 days' in html
    assert "/overview.csv?table=funnel&amp;from=" in html


def test_bad_periods(marketer):
    for query in ("from=2024-13-01&to=2024-03-31", "from=2024-03-31&to=2024-01-01", "from=1990-01-01&to=2024-01-01"):
        response = marketer.get(f"/overview?{query}")
        assert response.status_code == 200 and 'role="alert"' in response.get_data(as_text=True)
        assert marketer.get(f"/overview.csv?table=funnel&{query}").status_code == 400
    assert marketer.get(f"/overview.csv?table=nope&{QUERY}").status_code == 400


def test_csv_quotes_what_a_spreadsheet_would_run(app, marketer):
    with app.app_context():
        lead = Lead(email="x@evil.example", source="=HYPERLINK(\"http://evil.example\")", medium="cpc",
                    stage="mql", created_at=at("02-02 09:00"), updated_at=at("02-02 09:00"))
        session.add(lead)
        session.flush()
        session.add(StageChange(lead_id=lead.id, from_stage="lead", to_stage="mql", actor="test", at=at("02-03 09:00")))
        session.commit()
    values = [r["value"] for r in read_csv(marketer, "sources") if r["dimension"] == "source"]
    assert "'=HYPERLINK(\"http://evil.example\")" in values


def test_only_marketers_and_admins(app, client):
    with app.app_context():
        make_user("sam@leadflow.example", "sales")
        make_user("root@leadflow.example", "admin")
    assert client.get("/overview").status_code == 302
    assert client.get("/overview.csv").status_code == 302
    assert login(client, "sam@leadflow.example").status_code == 302
    assert client.get("/overview").status_code == 403
    assert client.get("/overview.csv?table=funnel").status_code == 403
    admin = app.test_client()
    login(admin, "root@leadflow.example")
    assert admin.get("/overview").status_code == 200


def test_french(marketer):
    response = marketer.get(f"/overview?{QUERY}", headers={"Accept-Language": "fr-FR"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and '<html lang="fr">' in html
    assert "33,3" in html and "janv. 2024" in html  # numbers and months the French way


def test_page_and_csv_on_sqlite(app_factory, sqlite_url):
    """The embedded default: the same page and CSV on SQLite."""
    app = app_factory(sqlite_url)
    with app.app_context():
        make_user("mia@leadflow.example", "marketer", "Mia")
        build_history()
    client = app.test_client()
    assert login(client, "mia@leadflow.example").status_code == 302
    tables = Tables(client.get(f"/overview?{QUERY}").get_data(as_text=True)).tables
    assert tables["stages-table"][2] == ["MQL", "8", "2.5 h"]
    assert tables["cohort-table"][3][:5] == ["Mar 2024", "3", "0%", "0%", "33.3%"]
    [sla] = read_csv(client, "sla")
    assert {k: int(sla[k]) for k in SLA_MAY} == SLA_MAY


# --- the spans table follows the stage changes (PostgreSQL) -------------------

def spans_differ_from_live() -> int:
    """Rows in the table and not in the view, or the other way round."""
    return session.execute(text(
        "SELECT count(*) FROM ((SELECT * FROM stage_spans EXCEPT SELECT * FROM stage_spans_live) UNION ALL "
        "(SELECT * FROM stage_spans_live EXCEPT SELECT * FROM stage_spans)) d")).scalar()


def test_spans_follow_changes_attributes_and_deletions(app):
    with app.app_context():
        build_history()
        assert reports.sla(Q1, NOW, 4)["overdue"] == 2 and spans_differ_from_live() == 0
        f = session.execute(select(Lead).where(Lead.email == "f@history.example")).scalar_one()
        # F is accepted 2 hours after its MQL: in time, and no longer overdue.
        session.add(StageChange(lead_id=f.id, from_stage="mql", to_stage="sal", actor="test", at=at("02-20 10:00")))
        f.stage = "sal"
        session.commit()
        found = reports.sla(Q1, NOW, 4)
        assert (found["on_time"], found["overdue"]) == (6, 1)
        # A lead's segment changes: its MQL moves to the new segment.
        f.segment = "enterprise"
        session.commit()
        segments = {r["key"][0]: r["mql"] for r in reports.breakdown(Q1, ("segment",))["segment"]}
        assert segments == {"smb": 3, "enterprise": 4, "midmarket": 2}
        # A lead is deleted: its spans go with its stage changes.
        session.delete(session.execute(select(Lead).where(Lead.email == "k@history.example")).scalar_one())
        session.commit()
        assert reports.mql_to_sql_in_period(reports.funnel(Q1))["mql"] == 8
        assert spans_differ_from_live() == 0
        session.commit()  # rebuild() truncates: no open transaction may be reading the table
        reports.rebuild()
        assert spans_differ_from_live() == 0 and reports.refresh() == 0


def test_a_change_committed_while_reports_run_is_not_lost(app):
    """The mark is written with the change: a report that started before the
    commit misses it, the next one has it."""
    with app.app_context():
        build_history()
        reports.refresh()
        engine = session.get_bind()
        with engine.connect() as other:
            lead_id = other.execute(text("SELECT id FROM leads WHERE email = 'k@history.example'")).scalar()
            other.execute(text("INSERT INTO stage_changes (lead_id, from_stage, to_stage, actor, at) "
                               "VALUES (:id, 'mql', 'sal', 'test', :at)"), {"id": lead_id, "at": at("03-31 23:00")})
            assert reports.refresh() == 0  # not committed yet: not seen
            other.commit()
        assert reports.sla(Q1, NOW, 4)["on_time"] == 6
        assert spans_differ_from_live() == 0


# --- lead counts per stage and day (migration 0010) -------------------------

def lead_counts_differ_from_live() -> int:
    return session.execute(text(
        "SELECT count(*) FROM ((SELECT stage, created_day, n FROM lead_counts_now WHERE n <> 0 "
        "EXCEPT SELECT * FROM lead_counts_live) UNION ALL "
        "(SELECT * FROM lead_counts_live EXCEPT SELECT stage, created_day, n FROM lead_counts_now)) d")).scalar()


def test_lead_counts_follow_new_leads_stage_moves_and_deletions(app):
    with app.app_context():
        build_history()
        assert lead_counts_differ_from_live() == 0
        funnel = reports.funnel(Q1)
        assert funnel["created"] == session.execute(select(func.count()).select_from(Lead).where(
            Lead.created_at >= datetime(2024, 1, 1, tzinfo=timezone.utc),
            Lead.created_at < datetime(2024, 4, 1, tzinfo=timezone.utc))).scalar()
        leads = session.execute(select(Lead).order_by(Lead.id)).scalars().all()
        leads[0].stage, leads[1].stage = "customer", "lost"
        session.delete(leads[2])
        session.commit()
        assert lead_counts_differ_from_live() == 0
        assert reports.fold_lead_counts() > 0 and lead_counts_differ_from_live() == 0
        current = reports.funnel(Q1)["current"]
        assert current == {stage: session.execute(select(func.count()).select_from(Lead)
                                                  .where(Lead.stage == stage)).scalar() for stage in current}
        session.commit()
        reports.rebuild()
        assert lead_counts_differ_from_live() == 0


def test_lead_counts_under_concurrent_writers(app):
    """Six connections create leads and move them between stages at once,
    with folds in between: the counts equal the table's."""
    import random

    from sqlalchemy.orm import Session

    from tests.helpers import run_together
    with app.app_context():
        engine = session.get_bind()

        def writer(worker: int):
            def write():
                rng = random.Random(worker)
                for n in range(40):
                    with Session(engine) as s, s.begin():
                        lead = Lead(email=f"w{worker}-{n}@counts.example", stage="lead",
                                    created_at=datetime(2024, 1, 1 + n % 28, tzinfo=timezone.utc),
                                    updated_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
                        s.add(lead)
                        s.flush()
                        lead.stage = rng.choice(("mql", "sal", "lead", "disqualified"))
                    if n % 10 == 0:
                        reports.fold_lead_counts()
            return write
        run_together(*(writer(w) for w in range(6)))
        assert lead_counts_differ_from_live() == 0
        assert reports.funnel(reports.Period(date(2024, 1, 1), date(2024, 1, 31)))["created"] == 240
