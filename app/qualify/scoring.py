"""Lead scoring: points for what a lead does (behaviour) and who it is (fit).

The model is marketer-owned YAML (campaigns/scoring.yaml, whose comments
explain the shape); this module is pure: plain data in, plain data out.

Rules of the game
-----------------
* Behaviour: each event goes through a score's rules in the order written;
  the first rule whose ``kind`` and ``where`` (property values, compared
  case-insensitively) match decides, so specific rules come first.
  ``once``: every (default) | lead (first time only) | key (once per distinct
  values of the ``per`` properties). ``cap`` bounds the rule's undecayed total
  (``|sum| <= cap``, so negative rules too). Machine-flagged events score 0
  unless the rule says ``include_machine``. Once/key/cap bookkeeping follows
  arrival order. ``EventData.key`` is the store's idempotency key and plays
  no part in scoring.
* Decay: an event's points are worth ``p * 2**(-(T - t) / h)`` with ``t`` its
  occurred_at, ``h`` the score's half_life_days (absent: no decay) and
  ``T = max(as_of, latest occurred_at seen)``: a score is never evaluated
  before its newest event (asking earlier gives its value at that event), so
  decay never inflates points. This sum doesn't depend on order, so late
  events are exact: the incremental state keeps the behaviour total decayed
  to its anchor (the latest occurred_at seen); a newer event decays the total
  to itself and adds its points, an older one adds its points decayed to the
  anchor.
* Fit: per attribute the first matching rule counts; fit never decays.
  ``email_domain`` is derived from ``email`` when absent.
* Incremental == full: folding ``apply_event`` over the events in arrival
  order, then ``state_total``, gives ``compute()``'s total (to float rounding).
  The state is only valid for the model it was built with: compare
  ``fingerprint(model)`` and recompute from the event log when it changes.
* MQL: the score named by ``mql_score`` is an MQL at ``total >= mql_threshold``;
  its temperature is the highest tier whose ``min`` it reaches.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.definitions import DefinitionError, display_path, read_yaml, validate

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "campaigns" / "scoring.yaml"
TIER_ORDER = ("warm", "hot", "very_hot")


# ---------------------------------------------------------------- the model

class _Def(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class BehaviourRule(_Def):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    where: dict[str, str | list[str]] = {}
    points: float
    once: Literal["every", "lead", "key"] = "every"
    per: list[str] | None = None
    cap: float | None = Field(default=None, gt=0)
    include_machine: bool = False
    creates_lead: bool = False
    id: str | None = None

    @field_validator("per", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self):
        if (self.once == "key") != bool(self.per):
            raise ValueError("once: key needs `per` (the property or properties counted once), "
                             "and `per` only goes with once: key")
        if self.id is None:
            self.id = self.kind + "".join(
                f"[{k}={'|'.join(v) if isinstance(v, list) else v}]" for k, v in self.where.items())
        return self


class FitRule(_Def):
    attribute: str
    values: list[str] | None = None
    in_list: str | None = None
    matches: str | None = None
    points: float
    label: str | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value):
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_test(self):
        if sum(t is not None for t in (self.values, self.in_list, self.matches)) != 1:
            raise ValueError("give exactly one of values, in_list, matches")
        if self.label is None:
            self.label = (f"{self.attribute} in [{', '.join(self.values)}]" if self.values is not None
                          else f"{self.attribute} in {self.in_list}" if self.in_list is not None
                          else f"{self.attribute} ~ {self.matches}")
        return self


class Score(_Def):
    half_life_days: float | None = Field(default=None, gt=0)
    behaviour: list[BehaviourRule] = []
    fit: list[FitRule] = []

    @field_validator("behaviour")
    @classmethod
    def _unique_ids(cls, rules):
        ids = [rule.id for rule in rules]
        for rule_id in ids:
            if ids.count(rule_id) > 1:
                raise ValueError(f"two rules have the id {rule_id!r}: give one of them an `id`")
        return rules


class Tier(_Def):
    min: float
    channel: Literal["linkedin", "email", "phone"]


class ScoringModel(_Def):
    lists: dict[str, list[str]] = {}
    scores: dict[str, Score] = Field(min_length=1)
    mql_score: str = Field(default="main", validate_default=True)
    mql_threshold: float
    tiers: dict[Literal["warm", "hot", "very_hot"], Tier] = {}

    @field_validator("mql_score")
    @classmethod
    def _known_score(cls, value, info: ValidationInfo):
        scores = info.data.get("scores")
        if scores is not None and value not in scores:
            raise ValueError(f"unknown score {value!r} named as driving MQL "
                             f"(scores: {', '.join(scores)})")
        return value

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers, info: ValidationInfo):
        mins = [(name, tiers[name].min) for name in TIER_ORDER if name in tiers]
        for (low, low_min), (high, high_min) in zip(mins, mins[1:]):
            if high_min <= low_min:
                raise ValueError(f"tiers must ascend: {high} (min {high_min:g}) "
                                 f"is not above {low} (min {low_min:g})")
        threshold = info.data.get("mql_threshold")
        if mins and threshold is not None and mins[0][1] < threshold:
            raise ValueError(f"tiers start at mql_threshold ({threshold:g}) or above: "
                             f"{mins[0][0]} has min {mins[0][1]:g}")
        return tiers


def load_model(path=DEFAULT_PATH) -> ScoringModel:
    """Load and check a scoring YAML; problems raise DefinitionError."""
    data, lines = read_yaml(path)
    model = validate(ScoringModel, data, path, lines)
    for name, score in model.scores.items():
        for index, rule in enumerate(score.fit):
            if rule.in_list is not None and rule.in_list not in model.lists:
                key = f"scores.{name}.fit[{index}].in_list"
                raise DefinitionError(display_path(path), key,
                                      f"unknown list {rule.in_list!r} (lists: {', '.join(model.lists) or 'none'})",
                                      lines.get(key))
    return model


def fingerprint(model: ScoringModel) -> str:
    """Changes whenever the model does: cached states from another
    fingerprint must be rebuilt from the event log."""
    return hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:16]


# ---------------------------------------------------------------- plain data

@dataclass(frozen=True)
class EventData:
    kind: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    machine: bool = False
    key: str | None = None

    def __post_init__(self):
        if self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")


@dataclass(frozen=True)
class LeadData:
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreResult:
    total: float
    behaviour: float
    fit: float
    breakdown: list[tuple[str, float]]
    temperature: str | None = None   # MQL score only
    channel: str | None = None
    mql: bool = False

    @property
    def rounded(self) -> float:
        return round(self.total, 2)


# ---------------------------------------------------------------- behaviour

def _norm(value) -> str:
    return str(value).strip().casefold()


def _match(score: Score, kind: str, properties: Mapping[str, Any]) -> BehaviourRule | None:
    for rule in score.behaviour:
        if rule.kind == kind and all(
                properties.get(k) is not None
                and _norm(properties[k]) in {_norm(w) for w in (want if isinstance(want, list) else [want])}
                for k, want in rule.where.items()):
            return rule
    return None


def _book(score: Score, rules: dict, event: EventData) -> tuple[float, str | None, dict]:
    """Points this event earns (undecayed) and the updated once/key/cap books."""
    rule = _match(score, event.kind, event.properties)
    if rule is None:
        return 0.0, None, rules
    if event.machine and not rule.include_machine:
        return 0.0, rule.id, rules
    book = rules.get(rule.id, {"n": 0, "sum": 0.0, "keys": []})
    key = (json.dumps([event.properties.get(p) for p in rule.per], default=str)
           if rule.once == "key" else None)
    if (rule.once == "lead" and book["n"]) or key in book["keys"]:
        return 0.0, rule.id, rules
    points = rule.points
    if rule.cap is not None:
        points = math.copysign(min(abs(points), max(rule.cap - abs(book["sum"]), 0.0)), points)
    book = {"n": book["n"] + 1, "sum": book["sum"] + points,
            "keys": book["keys"] + ([key] if key is not None else [])}
    return points, rule.id, {**rules, rule.id: book}


def _decay(score: Score, later: datetime, earlier: datetime) -> float:
    if score.half_life_days is None:
        return 1.0
    return 2.0 ** (-(later - earlier).total_seconds() / 86400 / score.half_life_days)


def initial_state() -> dict:
    """The JSON-serializable per-lead, per-score cache: behaviour total decayed
    to the anchor ``at`` (ISO time of the latest event), and per-rule books."""
    return {"behaviour": 0.0, "at": None, "rules": {}}


def event_points(model: ScoringModel, score_name: str, state: dict,
                 event: EventData) -> tuple[float, str | None, dict]:
    """What this event adds (undecayed points, the rule that matched or None)
    and the new state; the given state is not modified."""
    score = model.scores[score_name]
    points, rule_id, rules = _book(score, state["rules"], event)
    when = event.occurred_at
    anchor = datetime.fromisoformat(state["at"]) if state["at"] else when
    if when >= anchor:
        behaviour, anchor = state["behaviour"] * _decay(score, when, anchor) + points, when
    else:
        behaviour = state["behaviour"] + points * _decay(score, anchor, when)
    return points, rule_id, {"behaviour": behaviour, "at": anchor.isoformat(), "rules": rules}


def apply_event(model: ScoringModel, score_name: str, state: dict, event: EventData) -> tuple[float, dict]:
    points, _, state = event_points(model, score_name, state, event)
    return points, state


def state_total(model: ScoringModel, score_name: str, state: dict, fit: float, as_of: datetime) -> float:
    """Total at as_of from a cached state; fit is the sum of fit_points()."""
    if state["at"] is None:
        return fit
    anchor = datetime.fromisoformat(state["at"])
    return state["behaviour"] * _decay(model.scores[score_name], max(as_of, anchor), anchor) + fit


def creates_lead(model: ScoringModel, kind: str, properties: Mapping[str, Any] | None = None) -> bool:
    """May this event create a lead for an unknown email? Yes if, in any score,
    the rule it matches says creates_lead."""
    return any(rule.creates_lead for score in model.scores.values()
               if (rule := _match(score, kind, properties or {})))


# ---------------------------------------------------------------- fit

def fit_points(model: ScoringModel, score_name: str, lead: LeadData) -> list[tuple[str, float]]:
    attributes = dict(lead.attributes)
    email = str(attributes.get("email") or "")
    if attributes.get("email_domain") is None and "@" in email:
        attributes["email_domain"] = email.rsplit("@", 1)[1]
    earned, done = [], set()
    for rule in model.scores[score_name].fit:
        value = attributes.get(rule.attribute)
        if rule.attribute in done or value is None or not str(value).strip():
            continue
        if rule.matches is not None:
            fits = re.search(rule.matches, str(value)) is not None
        else:
            allowed = rule.values if rule.values is not None else model.lists.get(rule.in_list, [])
            fits = _norm(value) in {_norm(v) for v in allowed}
        if fits:
            done.add(rule.attribute)
            earned.append((rule.label, rule.points))
    return earned


# ---------------------------------------------------------------- results

def temperature(model: ScoringModel, score: float) -> tuple[str | None, str | None]:
    found = (None, None)
    for name in TIER_ORDER:
        tier = model.tiers.get(name)
        if tier is not None and score >= tier.min:
            found = (name, tier.channel)
    return found


def crosses_mql(model: ScoringModel, before: float, after: float) -> bool:
    return before < model.mql_threshold <= after


def compute(model: ScoringModel, lead: LeadData, events: Iterable[EventData],
            as_of: datetime) -> dict[str, ScoreResult]:
    """Every score recomputed from the whole event log (in arrival order)."""
    events = list(events)
    end = max([as_of, *(event.occurred_at for event in events)])
    results = {}
    for name, score in model.scores.items():
        books, earned = {}, {}
        for event in events:
            points, rule_id, books = _book(score, books, event)
            if points:
                earned[rule_id] = earned.get(rule_id, 0.0) + points * _decay(score, end, event.occurred_at)
        fit = fit_points(model, name, lead)
        behaviour, fit_total = sum(earned.values()), sum(p for _, p in fit)
        total = behaviour + fit_total
        is_mql_score = name == model.mql_score
        tier, channel = temperature(model, total) if is_mql_score else (None, None)
        results[name] = ScoreResult(
            total=total, behaviour=behaviour, fit=fit_total,
            breakdown=fit + [(rule.id, earned[rule.id]) for rule in score.behaviour if rule.id in earned],
            temperature=tier, channel=channel,
            mql=is_mql_score and total >= model.mql_threshold)
    return results
