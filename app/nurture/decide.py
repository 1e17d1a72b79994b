"""The engine's decisions: pure functions over plain data.

`advance()` takes where an enrollment stands, what we know of the lead and
the clock, and says what to do now: send a step's email, wait until a time,
postpone a send (outside the send window, over the frequency cap), or
finish (completed, or exited with a reason). The shell (engine.py) claims
rows, calls this, and writes the result.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .campaigns import DAYS, Campaign, Condition, Window

MAX_HOPS = 50  # branch/exit hops in one decision: guards against goto loops


@dataclass(frozen=True)
class LeadFacts:
    stage: str
    score: float
    attributes: dict
    timezone: str = "UTC"
    consent: bool = True
    unsubscribed: bool = False
    bounced: bool = False
    opted_out_topics: tuple = ()


@dataclass(frozen=True)
class Engagement:
    """What the lead did with this enrollment's emails, and since enrolling."""
    opened: frozenset = frozenset()     # send step keys opened (or clicked) by a person
    clicked: frozenset = frozenset()
    events: frozenset = frozenset()     # event kinds since the enrollment began


@dataclass(frozen=True)
class Position:
    step_key: str
    waiting: bool = False
    due_at: datetime | None = None
    path: tuple = ()                     # step keys already gone through


@dataclass(frozen=True)
class Cap:
    """At most `emails` nurture emails per lead per `days`, across campaigns
    (`emails` 0 or less: no cap)."""
    emails: int = 3
    days: float = 7
    recent: tuple = ()                   # send times of the lead's recent nurture emails


@dataclass(frozen=True)
class Decision:
    action: str                          # send, wait, postpone, finish
    step_key: str | None = None          # the step sent, or the step to resume at
    next_key: str | None = None          # after a send: where the enrollment goes
    due_at: datetime | None = None
    status: str | None = None            # finish: completed or exited
    reason: str | None = None
    hops: tuple = field(default=())      # steps passed through (branches), for the path


def suppression(campaign: Campaign, facts: LeadFacts) -> str | None:
    """Why this lead must not get this campaign's mail, if it must not."""
    if facts.unsubscribed:
        return "unsubscribed"
    if facts.bounced:
        return "bounced"
    if facts.stage == "disqualified":
        return "disqualified"
    if campaign.definition.consent_required and not facts.consent:
        return "no_consent"
    if campaign.definition.topic in facts.opted_out_topics:
        return f"opted_out:{campaign.definition.topic}"
    return None


def goal_reached(campaign: Campaign, facts: LeadFacts, engagement: Engagement) -> str | None:
    for goal in campaign.definition.goals:
        if goal.stage is not None and facts.stage == goal.stage:
            return f"goal:stage:{goal.stage}"
        if goal.event is not None and goal.event in engagement.events:
            return f"goal:event:{goal.event}"
    return None


def condition_holds(condition: Condition, facts: LeadFacts, engagement: Engagement) -> bool:
    if condition.opened is not None:
        return condition.opened in engagement.opened or condition.opened in engagement.clicked
    if condition.clicked is not None:
        return condition.clicked in engagement.clicked
    if condition.score_at_least is not None:
        return facts.score >= condition.score_at_least
    if condition.stage is not None:
        return facts.stage == condition.stage
    if condition.event is not None:
        return condition.event in engagement.events
    return all(str(facts.attributes.get(k) or "") in values for k, values in condition.attribute.items())


def local(now: datetime, timezone: str) -> datetime:
    try:
        return now.astimezone(ZoneInfo(timezone))
    except (KeyError, ValueError):
        return now.astimezone(ZoneInfo("UTC"))


def window_opening(window: Window, timezone: str, now: datetime) -> datetime:
    """`now` if mail may go out now, else the next moment it may (UTC)."""
    here = local(now, timezone)
    for offset in range(8):
        day = (here + timedelta(days=offset)).date()
        if DAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, window.start, tzinfo=here.tzinfo)
        end = datetime.combine(day, window.end, tzinfo=here.tzinfo)
        if offset == 0 and start <= here < end:
            return now
        if here < start:
            return start.astimezone(now.tzinfo)
    return now + timedelta(days=1)  # unreachable with a valid window


def wait_until(wait, timezone: str, now: datetime) -> datetime:
    due = now + timedelta(days=wait.days, hours=wait.hours, minutes=wait.minutes)
    if not (wait.until_days or wait.until_time):
        return due
    here = local(due, timezone)
    at = wait.until_time or here.time().replace(second=0, microsecond=0)
    for offset in range(8):
        day = (here + timedelta(days=offset)).date()
        if wait.until_days and DAYS[day.weekday()] not in wait.until_days:
            continue
        moment = datetime.combine(day, at, tzinfo=here.tzinfo)
        if moment >= here:
            return moment.astimezone(now.tzinfo)
    return due


def cap_frees_at(cap: Cap, now: datetime) -> datetime | None:
    """None if one more email fits under the cap now, else when it will."""
    period = timedelta(days=cap.days)
    recent = sorted(t for t in cap.recent if t > now - period)
    if cap.emails <= 0 or len(recent) < cap.emails:
        return None
    return recent[len(recent) - cap.emails] + period


def advance(campaign: Campaign, position: Position, facts: LeadFacts, engagement: Engagement,
            now: datetime, cap: Cap = Cap(), allow_send: bool = True) -> Decision:
    reason = goal_reached(campaign, facts, engagement)
    if reason:
        return Decision("finish", status="exited", reason=reason)
    reason = suppression(campaign, facts)
    if reason:
        return Decision("finish", status="exited", reason=f"suppressed:{reason}")
    key, hops = position.step_key, []
    if position.waiting:
        if position.due_at is not None and now < position.due_at:
            return Decision("wait", step_key=key, due_at=position.due_at)
        if campaign.step(key) is None:  # see resolve_removed
            return Decision("finish", status="exited", reason=f"step_removed:{key}")
        key = campaign.following(key)
    for _ in range(MAX_HOPS):
        if key is None:
            return Decision("finish", status="completed", reason="last step done", hops=tuple(hops))
        step = campaign.step(key)
        if step is None:
            return Decision("finish", status="exited", reason=f"step_removed:{key}", hops=tuple(hops))
        if step.exit:
            return Decision("finish", status="completed", reason=f"exit step {key}", hops=tuple(hops + [key]))
        if step.branch is not None:
            hops.append(key)
            key = next(b.goto for b in step.branch if b.when is None or condition_holds(b.when, facts, engagement))
            continue
        if step.wait is not None:
            return Decision("wait", step_key=key, due_at=wait_until(step.wait, facts.timezone, now),
                            hops=tuple(hops))
        # a send step
        if not allow_send:
            return Decision("postpone", step_key=key, due_at=now, hops=tuple(hops))
        opening = window_opening(campaign.definition.window, facts.timezone, now)
        if opening > now:
            return Decision("postpone", step_key=key, due_at=opening, reason="send window", hops=tuple(hops))
        frees = cap_frees_at(cap, now)
        if frees is not None:
            return Decision("postpone", step_key=key, due_at=frees, reason="frequency cap", hops=tuple(hops))
        return Decision("send", step_key=key, next_key=campaign.following(key), due_at=now, hops=tuple(hops))
    return Decision("finish", status="exited", reason="branch loop", hops=tuple(hops))


def resolve_removed(campaign: Campaign, position: Position) -> str | None:
    """An enrollment stands at a step the marketer removed: resume at the
    successor (in the new version) of the last step of its path that still
    exists. With an empty path nothing was done yet: start at the (new)
    first step. None: nowhere to go, the enrollment exits."""
    if not position.path:
        return campaign.first_step
    for key in reversed(position.path):
        if campaign.step(key) is not None:
            return campaign.following(key)
    return None


def audience_matches(campaign: Campaign, facts: LeadFacts, form: str | None) -> bool:
    audience = campaign.definition.audience
    attrs = facts.attributes
    checks = [
        not audience.stages or facts.stage in audience.stages,
        not audience.segments or attrs.get("segment") in audience.segments,
        not audience.forms or form in audience.forms,
        not audience.languages or attrs.get("language") in audience.languages,
        not audience.countries or (attrs.get("country") or "").upper() in audience.countries,
        audience.score.min is None or facts.score >= audience.score.min,
        audience.score.max is None or facts.score <= audience.score.max,
        all(str(attrs.get(k) or "") in values for k, values in audience.attributes.items()),
    ]
    return all(checks)


COUNTRY_TIMEZONES = {
    "FR": "Europe/Paris", "BE": "Europe/Brussels", "CH": "Europe/Zurich", "LU": "Europe/Luxembourg",
    "DE": "Europe/Berlin", "ES": "Europe/Madrid", "IT": "Europe/Rome", "NL": "Europe/Amsterdam",
    "PT": "Europe/Lisbon", "GB": "Europe/London", "IE": "Europe/Dublin", "AT": "Europe/Vienna",
    "SE": "Europe/Stockholm", "DK": "Europe/Copenhagen", "NO": "Europe/Oslo", "FI": "Europe/Helsinki",
    "PL": "Europe/Warsaw", "CA": "America/Toronto", "US": "America/New_York", "MA": "Africa/Casablanca",
    "SN": "Africa/Dakar", "TN": "Africa/Tunis", "DZ": "Africa/Algiers", "QC": "America/Montreal",
    "JP": "Asia/Tokyo", "SG": "Asia/Singapore", "IN": "Asia/Kolkata", "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo", "MX": "America/Mexico_City",
}


def timezone_for(explicit: str | None, country: str | None, default: str) -> str:
    """The lead's own timezone if known (and valid), else its country's main
    one, else the default."""
    if explicit:
        try:
            ZoneInfo(explicit)
            return explicit
        except (KeyError, ValueError):
            pass
    return COUNTRY_TIMEZONES.get((country or "").upper(), default)
