"""campaigns/sales.yaml: assignment, SLA and the BANT passing rule."""
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CRITERIA = ("budget", "authority", "need", "timeline")


class _Def(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Territory(_Def):
    name: str
    countries: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    owner: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class BantRule(_Def):
    min_met: int = Field(default=3, ge=0, le=4)
    required: tuple[Literal[CRITERIA], ...] = ()  # type: ignore[valid-type]
    timeline_months: int = Field(default=6, ge=0)


class SalesConfig(_Def):
    assignment: Literal["round_robin", "territory"] = "round_robin"
    territories: tuple[Territory, ...] = ()
    sla_hours: float = Field(default=4, gt=0)
    sender: str = "leadflow <leads@leadflow.example>"
    bant: BantRule = BantRule()

    @field_validator("territories")
    @classmethod
    def _named_once(cls, territories):
        names = [t.name for t in territories]
        if len(names) != len(set(names)):
            raise ValueError("territory names must be unique")
        return territories


def load_sales_config(path) -> SalesConfig:
    from ..definitions import load
    return load(SalesConfig, path)


def territory_owner(config: SalesConfig, country: str | None, segment: str | None) -> str | None:
    """Email of the owner of the first territory matching the lead, if any."""
    for territory in config.territories:
        if territory.countries and (country or "").upper() not in territory.countries:
            continue
        if territory.segments and (segment or "") not in territory.segments:
            continue
        if territory.countries or territory.segments:
            return territory.owner
    return None


def bant_passes(rule: BantRule, answers: dict) -> tuple[bool, list[str]]:
    """Which criteria are met, and whether that passes the configured rule."""
    met = [c for c in CRITERIA if criterion_met(rule, c, answers)]
    passes = len(met) >= rule.min_met and all(c in met for c in rule.required)
    return passes, met


def criterion_met(rule: BantRule, criterion: str, answers: dict) -> bool:
    if criterion == "timeline":
        months = answers.get("timeline_months")
        return isinstance(months, int) and 0 <= months <= rule.timeline_months
    return answers.get(criterion) is True
