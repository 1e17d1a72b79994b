"""A campaign definition as a flow a person can read: one card per step, in
the order written, each saying what it does and where it goes next.
Pure: takes a Campaign, returns plain data for the template."""
from dataclasses import dataclass, field

from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from ..nurture.campaigns import Campaign, Condition, WaitStep

DAY_NAMES = {"mon": lazy_gettext("Mon"), "tue": lazy_gettext("Tue"), "wed": lazy_gettext("Wed"),
             "thu": lazy_gettext("Thu"), "fri": lazy_gettext("Fri"), "sat": lazy_gettext("Sat"),
             "sun": lazy_gettext("Sun")}


@dataclass
class Card:
    key: str
    kind: str                     # send, wait, branch, exit
    number: int
    subject: str | None = None
    template: str | None = None
    wait: str | None = None
    branches: list[tuple[str, str]] = field(default_factory=list)  # (condition, goto)
    next: str | None = None       # after a send or a wait; None: the enrollment completes
    jumps: bool = False           # next is not the step written below
    joined: bool = False          # the step written above flows into this one (draw the arrow)


def _plural(value: float) -> int:
    # ngettext wants a whole count: 1 is singular, anything else (2, 1.5, 0.5) plural.
    return 1 if value == 1 else 2


def describe_wait(wait: WaitStep) -> str:
    parts = []
    if wait.days:
        parts.append(ngettext("%(count)s day", "%(count)s days", _plural(wait.days), count=f"{wait.days:g}"))
    if wait.hours:
        parts.append(ngettext("%(count)s hour", "%(count)s hours", _plural(wait.hours),
                              count=f"{wait.hours:g}"))
    if wait.minutes:
        parts.append(ngettext("%(count)s minute", "%(count)s minutes", _plural(wait.minutes),
                              count=f"{wait.minutes:g}"))
    text = " ".join(parts)
    if wait.until_days or wait.until_time:
        days = ", ".join(str(DAY_NAMES[d]) for d in wait.until_days)
        at = wait.until_time.strftime("%H:%M") if wait.until_time else ""
        until = (_("until %(days)s at %(at)s", days=days, at=at) if days and at
                 else _("until %(days)s", days=days) if days else _("until the next %(at)s", at=at))
        text = _("%(wait)s, then %(until)s", wait=text, until=until) if text else until
    return text


def describe_condition(when: Condition | None) -> str:
    if when is None:
        return _("otherwise")
    if when.opened is not None:
        return _("opened “%(step)s”", step=when.opened)
    if when.clicked is not None:
        return _("clicked in “%(step)s”", step=when.clicked)
    if when.score_at_least is not None:
        return _("score ≥ %(score)s", score=f"{when.score_at_least:g}")
    if when.stage is not None:
        return _("stage is %(stage)s", stage=when.stage)
    if when.event is not None:
        return _("did “%(event)s” since enrolling", event=when.event)
    name, values = next(iter((when.attribute or {}).items()), ("?", ()))
    return _("%(name)s is %(values)s", name=name, values=" / ".join(values))


def cards(campaign: Campaign) -> list[Card]:
    steps = campaign.definition.steps
    result = []
    for index, step in enumerate(steps):
        card = Card(key=step.key, kind=step.kind, number=index + 1)
        written_next = steps[index + 1].key if index + 1 < len(steps) else None
        if step.send is not None:
            card.subject, card.template = step.send.subject, step.send.template
        elif step.wait is not None:
            card.wait = describe_wait(step.wait)
        elif step.branch is not None:
            card.branches = [(describe_condition(b.when), b.goto) for b in step.branch]
        if step.kind in ("send", "wait"):
            card.next = campaign.following(step.key)
            card.jumps = card.next is not None and card.next != written_next
        if result and result[-1].next == step.key and not result[-1].jumps:
            card.joined = True
        result.append(card)
    return result


def targets(campaign: Campaign) -> set[str]:
    """Every step key something leads to (branches and explicit nexts)."""
    found = set()
    for step in campaign.definition.steps:
        found.update(b.goto for b in step.branch or ())
        if step.next:
            found.add(step.next)
    return found
