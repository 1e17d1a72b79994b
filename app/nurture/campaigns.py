"""Campaign definitions: campaigns/<slug>.yaml, validated on load.

Steps are addressed by their key, never by position, so a marketer can edit
a running campaign: an enrollment standing at a step that no longer exists
moves on to the successor, in the new version, of the last step of its path
that still exists (the new first step if it had not started), else it exits
with reason `step_removed:<key>` (see decide.resolve_removed).
"""
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..definitions import DefinitionError, load, load_each
from ..qualify.lifecycle import STAGES

NOT_CAMPAIGNS = {"scoring.yaml", "sales.yaml"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEY = r"^[a-z0-9][a-z0-9_-]{0,59}$"
TRIGGERS = ("lead_accepted", "manual") + tuple(f"stage:{s}" for s in STAGES)


class _Def(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _quoted_time(value):
    """YAML reads an unquoted 10:00 as the number 600 (base 60), which
    pydantic would take for 00:10: refuse numbers, say what to write."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and 0 <= value < 24 * 60:
            written = f"{value // 60:02d}:{value % 60:02d}"
            raise ValueError(f'write times in quotes, "{written}": unquoted, YAML reads {written} '
                             f"as the number {value}")
        raise ValueError(f'a time is written in quotes, "HH:MM", not as the number {value}')
    return value


class ScoreRange(_Def):
    min: float | None = None
    max: float | None = None


class Audience(_Def):
    stages: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    score: ScoreRange = ScoreRange()
    # Attribute → allowed values, e.g. {intent: [research, contact_sales]}.
    attributes: dict[str, tuple[str, ...]] = {}

    @field_validator("countries")
    @classmethod
    def _upper_countries(cls, countries):
        return tuple(c.upper() for c in countries)  # lead countries are compared upper-case

    @field_validator("languages")
    @classmethod
    def _lower_languages(cls, languages):
        return tuple(language.lower() for language in languages)  # as forms and campaigns write them

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages):
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s): {', '.join(unknown)} (expected {', '.join(STAGES)})")
        return stages


class Window(_Def):
    """When mail may go out, in the lead's timezone."""
    days: tuple[Literal[DAYS], ...] = ("mon", "tue", "wed", "thu", "fri")  # type: ignore[valid-type]
    start: time = time(9, 0)
    end: time = time(18, 0)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value):
        return _quoted_time(value)

    @model_validator(mode="after")
    def _ordered(self):
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if not self.days:
            raise ValueError("at least one day")
        return self


class SendStep(_Def):
    template: str = Field(pattern=r"^[a-z0-9_/-]+$")
    subject: str = Field(min_length=1, max_length=200)
    preheader: str = ""


class WaitStep(_Def):
    days: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    minutes: float = Field(default=0, ge=0)
    # Or wait until a weekday/time: {until: {days: [tue], at: "10:00"}}
    until_days: tuple[Literal[DAYS], ...] = ()  # type: ignore[valid-type]
    until_time: time | None = None

    @field_validator("until_time", mode="before")
    @classmethod
    def _quoted(cls, value):
        return _quoted_time(value)

    @model_validator(mode="before")
    @classmethod
    def _until(cls, data):
        """`until: {days: [tue], at: "10:00"}` is how the YAML spells it."""
        if not isinstance(data, dict) or "until" not in data:
            return data
        data = dict(data)
        until = data.pop("until")
        if not isinstance(until, dict) or not until or set(until) - {"days", "at"}:
            raise ValueError('until is written {days: [tue], at: "10:00"} (days, at or both)')
        if "until_days" in data or "until_time" in data:
            raise ValueError("write either until or until_days/until_time, not both")
        if "days" in until:
            data["until_days"] = until["days"]
        if "at" in until:
            data["until_time"] = until["at"]
        return data

    @model_validator(mode="after")
    def _something(self):
        if not (self.days or self.hours or self.minutes or self.until_days or self.until_time):
            raise ValueError("a wait needs a duration (days/hours/minutes) or until_days/until_time")
        return self


class Condition(_Def):
    opened: str | None = None        # a send step's key
    clicked: str | None = None
    score_at_least: float | None = None
    stage: str | None = None
    attribute: dict[str, tuple[str, ...]] | None = None
    event: str | None = None         # the lead has an event of this kind since enrolling

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"a condition tests exactly one thing, got {', '.join(given) or 'nothing'}")
        return self


class Branch(_Def):
    when: Condition | None = None    # None: the `otherwise` branch
    goto: str


class Step(_Def):
    key: str = Field(pattern=KEY)
    send: SendStep | None = None
    wait: WaitStep | None = None
    branch: tuple[Branch, ...] | None = None
    exit: bool | None = None
    next: str | None = None          # default: the step written after this one

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("send", "wait", "branch", "exit") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step is exactly one of send, wait, branch, exit; got {', '.join(kinds) or 'none'}")
        if self.branch is not None:
            if not self.branch or self.branch[-1].when is not None:
                raise ValueError("a branch ends with an `otherwise` entry (goto without when)")
            if any(b.when is None for b in self.branch[:-1]):
                raise ValueError("only the last branch entry may omit `when`")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("send", "wait", "branch", "exit") if getattr(self, k) is not None)


class Goal(_Def):
    """Reaching a goal ends the enrollment at once."""
    stage: str | None = None
    event: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.stage is None) == (self.event is None):
            raise ValueError("a goal is either a stage or an event")
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(f"unknown stage '{self.stage}'")
        return self


class Reentry(_Def):
    policy: Literal["never", "after", "always"] = "never"
    days: float = Field(default=0, ge=0)


class CampaignDef(_Def):
    name: str = Field(min_length=1, max_length=200)
    language: str = Field(pattern=r"^[a-z]{2}$")
    topic: str = Field(default="nurture", pattern=KEY)
    priority: int = 0
    sender: str = Field(min_length=3)
    postal_address: str = Field(min_length=5)
    triggers: tuple[str, ...] = ("lead_accepted",)
    audience: Audience = Audience()
    window: Window = Window()
    goals: tuple[Goal, ...] = ()
    reentry: Reentry = Reentry()
    consent_required: bool = True
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("triggers")
    @classmethod
    def _known_triggers(cls, triggers):
        for trigger in triggers:
            if trigger not in TRIGGERS:
                raise ValueError(f"unknown trigger '{trigger}' (expected lead_accepted, manual or stage:<stage>)")
        return triggers

    @model_validator(mode="after")
    def _references(self):
        """Step keys are unique and every reference names a step (a send
        step for opened/clicked). Each problem is located at the key that
        holds it, so the error names its line."""
        problems = []  # (location, message, input)
        keys = [s.key for s in self.steps]
        sends = {s.key for s in self.steps if s.send is not None}
        for index, step in enumerate(self.steps):
            if step.key in keys[:index]:
                problems.append((("steps", index, "key"),
                                 f"step keys must be unique: '{step.key}' is already step {keys.index(step.key) + 1}",
                                 step.key))
            if step.next is not None and step.next not in keys:
                problems.append((("steps", index, "next"),
                                 f"step '{step.key}' goes to unknown step '{step.next}'", step.next))
            for b, branch in enumerate(step.branch or ()):
                if branch.goto not in keys:
                    problems.append((("steps", index, "branch", b, "goto"),
                                     f"step '{step.key}' goes to unknown step '{branch.goto}'", branch.goto))
                for test in ("opened", "clicked"):
                    ref = getattr(branch.when, test) if branch.when is not None else None
                    if ref is not None and ref not in sends:
                        problems.append((("steps", index, "branch", b, "when", test),
                                         f"step '{step.key}' tests '{ref}', which is not a send step", ref))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("value_error", "{message}", {"message": message}),
                                 loc=loc, input=value)
                for loc, message, value in problems])
        return self


@dataclass(frozen=True)
class Campaign:
    slug: str
    definition: CampaignDef
    path: str

    def step(self, key: str) -> Step | None:
        return next((s for s in self.definition.steps if s.key == key), None)

    def following(self, key: str) -> str | None:
        """The step after `key`: its explicit `next`, else the one written after it."""
        keys = [s.key for s in self.definition.steps]
        step = self.step(key)
        if step is not None and step.next:
            return step.next
        index = keys.index(key) if key in keys else -1
        return keys[index + 1] if 0 <= index < len(keys) - 1 else None

    @property
    def first_step(self) -> str:
        return self.definition.steps[0].key


def campaign_files(directory) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.yaml") if p.name not in NOT_CAMPAIGNS)


def load_campaign(path: Path) -> Campaign:
    path = Path(path)
    if not re.match(KEY, path.stem):
        raise DefinitionError(f"{path.parent.name}/{path.name}", "", "file name must be a slug")
    return Campaign(slug=path.stem, definition=load(CampaignDef, path), path=str(path))


def load_all(directory) -> tuple[dict[str, Campaign], list[DefinitionError]]:
    return load_each(campaign_files(directory), load_campaign)
