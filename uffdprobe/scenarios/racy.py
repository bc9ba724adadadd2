# SPDX-License-Identifier: GPL-2.0-only
"""Racy triggers: a defect whose trigger is a race shows only in some tries, so its scenario repeats the
trigger within a try budget and a time budget. A hit reports the try it took ("on try 19 of 200"), and so
does a try that reached the race and saw the kernel answer it right (Answered: PASS); a run that never hit
reports how many tries it made and the miss probability that leaves, from the hit rate per try measured
on an affected kernel (the table row's Race). The miss probability treats tries as independent, so
declare the lowest rate measured (a loaded machine changes it). Where a deterministic trigger exists,
use it.
"""

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Union

from uffdprobe.verdicts import Outcome, Verdict

#: The parameters (--param NAME=VALUE) that override a racy row's budget.
TRIES, SECONDS = "tries", "race_s"


@dataclass(frozen=True)
class Race:
    """A racy trigger's budget and its measured hit rate (the scenario table row's `race`)."""

    p_hit: float  #: probability that one try hits, on a kernel that has the defect
    measured_on: str  #: where and how p_hit was measured, e.g. "stock 6.1.192: 1 hang in 19 tries"
    tries: int = 200  #: at most this many tries per run (--param tries=N)
    seconds: float = 60.0  #: and no new try after this many seconds (--param race_s=S)

    def __post_init__(self) -> None:
        if not isinstance(self.p_hit, (int, float)) or not 0 < self.p_hit <= 1:
            raise ValueError(f"Race.p_hit must be a probability in (0, 1], got {self.p_hit!r}")
        if not isinstance(self.tries, int) or self.tries < 1 or not self.seconds > 0:
            raise ValueError(f"Race needs tries >= 1 and seconds > 0, got {self.tries!r}, {self.seconds!r}")
        if not isinstance(self.measured_on, str) or not self.measured_on.strip():
            raise ValueError("Race.measured_on must say where p_hit was measured")


@dataclass(frozen=True)
class Answered:
    """What a trigger returns when its try reached the race and the kernel answered it right: the question
    is settled, so the run ends there with PASS (a PASS Outcome or None is a miss, and tries again)."""

    reason: str  #: what the try saw, e.g. "the move met the migration entry and was refused"
    evidence: Dict[str, Any] = field(default_factory=dict)  #: the try's evidence, beside repeat's 'race'


def miss_probability(p_hit: float, tries: int) -> float:
    """The probability that `tries` independent tries all miss on an affected kernel: (1 - p_hit)^tries."""
    return (1.0 - p_hit) ** tries


def tries_needed(p_hit: float, miss: float) -> int:
    """The fewest tries whose miss probability is at most `miss` (for choosing a budget)."""
    if p_hit >= 1:
        return 1
    return max(1, math.ceil(math.log(miss) / math.log(1.0 - p_hit)))


def repeat(ctx: Any, trigger: Callable[[int], Union[None, Outcome, Answered]], race: Optional[Race] = None) -> Outcome:
    """Run trigger(1), trigger(2), ... within the budget of `race` (default: the row's, ctx.race; the
    params 'tries' and 'race_s' override it). A trigger returns None (or a PASS Outcome) when its try
    missed, Answered when its try reached the race and the kernel answered it right (PASS), else the
    Outcome of the hit (any other verdict, ERROR included); a hit or an answer ends the run with its
    verdict and the try it took. Each try is noted before it starts, so a hang the supervisor catches
    inside a try says which try it was. Evidence 'race': tries made, budget, hit_on_try (None unless a
    hit), p_hit, miss_probability (of the tries made, when all missed), stopped_by (hit, answered, tries,
    time)."""
    race = race or getattr(ctx, "race", None)
    if race is None:
        raise ValueError("repeat() needs a Race: give the scenario's table row race=Race(...)")
    budget = int(ctx.params.get(TRIES, race.tries))
    seconds = float(ctx.params.get(SECONDS, race.seconds))
    started = time.monotonic()
    made = 0
    record: Dict[str, Any] = {"tries": budget, "seconds": seconds, "p_hit": race.p_hit, "measured_on": race.measured_on}
    while made < budget and (made == 0 or time.monotonic() - started < seconds):
        made += 1
        ctx.note("race", {**record, "try": made})
        hit = trigger(made)
        if isinstance(hit, Answered) or (hit is not None and hit.verdict is not Verdict.PASS):
            answered = isinstance(hit, Answered)
            record.update(
                tries_made=made,
                hit_on_try=None if answered else made,
                stopped_by="answered" if answered else "hit",
                elapsed_s=round(time.monotonic() - started, 3),
            )
            verdict = Verdict.PASS if isinstance(hit, Answered) else hit.verdict
            return Outcome(verdict, f"{hit.reason} (on try {made} of {budget})", {**hit.evidence, "race": record})
    miss = miss_probability(race.p_hit, made)
    stopped = "tries" if made >= budget else "time"
    record.update(
        tries_made=made,
        hit_on_try=None,
        stopped_by=stopped,
        miss_probability=miss,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    why = "" if stopped == "tries" else f", stopped by the {seconds:g} s time budget"
    return Outcome(
        Verdict.PASS,
        f"no hit in {made} of {budget} tries{why}: an affected kernel misses "
        f"{made} tries with probability {miss:.2g} (p_hit {race.p_hit:g} per try, measured on "
        f"{race.measured_on})",
        {"race": record},
    )
