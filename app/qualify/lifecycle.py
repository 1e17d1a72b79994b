"""Lifecycle stages and the moves allowed between them: pure data."""

STAGES = ("subscriber", "lead", "mql", "sal", "sql", "opportunity", "customer",
          "disqualified", "recycled", "lost")

# from-stage → stages it may move to. Anything else is refused.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"subscriber", "lead", "disqualified"}),
    "subscriber": frozenset({"lead", "mql", "disqualified"}),
    "lead": frozenset({"mql", "disqualified", "subscriber"}),
    "mql": frozenset({"sal", "sql", "recycled", "disqualified"}),
    "sal": frozenset({"sql", "recycled", "disqualified", "lost"}),
    "sql": frozenset({"opportunity", "recycled", "lost", "customer"}),
    "opportunity": frozenset({"customer", "lost", "recycled"}),
    "customer": frozenset(),
    "disqualified": frozenset({"lead", "subscriber"}),  # a person overrides an exclusion
    "recycled": frozenset({"mql", "lead", "disqualified", "lost"}),
    "lost": frozenset({"recycled", "lead"}),
}

# Stages where a new form submission or a fresh score may still change the
# stage automatically; past these, only people move the lead.
NURTURABLE = frozenset({"subscriber", "lead", "recycled", "disqualified"})


def can_move(current: str | None, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class TransitionError(ValueError):
    pass


def check_move(current: str | None, target: str) -> None:
    if target not in STAGES:
        raise TransitionError(f"unknown stage '{target}'")
    if not can_move(current, target):
        raise TransitionError(f"a lead cannot move from {current or 'nothing'} to {target}")
