"""The traffic scenarios of ``vigil simulate``: what the world looks like at each moment of
a run, as a pure function of its progress (0 at the start, 1 at the end).

- ``steady``: rows as the model's validation data has them, true outcomes.
- ``gradual-drift``: the drifted features slide from their reference values to ``shift``
  standard deviations away over the run, and a growing share of outcomes (up to ``flip``)
  no longer follows the old relationship.
- ``sudden-drift``: clean until ``change_at``, then the drifted features jump by ``shift``
  standard deviations and a ``flip`` share of outcomes changes (a new upstream source,
  say): drift, prediction mix and realized performance all move at once.
- ``label-decay``: the inputs stay exactly as they were; a growing share of outcomes (up to
  ``flip``, reached at the end) contradicts the old relationship. Drift stays quiet, the
  label-free estimate stays flat, only the realized performance falls (concept shift).
- ``outage``: between 35 % and 65 % of the run, malformed and oversized requests (4xx)
  and bursts of concurrent large batches (a latency spike); clean before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

SCENARIOS = ("steady", "gradual-drift", "sudden-drift", "label-decay", "outage")
OUTAGE = (0.35, 0.65)


@dataclass(frozen=True)
class Knobs:
    """How strong a scenario is: ``shift`` (standard deviations), ``flip`` (share of
    outcomes that change), ``change_at`` (progress of a sudden change)."""

    shift: float = 3.0
    flip: float = 0.3
    change_at: float = 0.4

    def __post_init__(self) -> None:
        if not 0 <= self.flip <= 1:
            raise ValueError(f"flip must be in [0, 1]; got {self.flip}")
        if not 0 <= self.change_at <= 1:
            raise ValueError(f"change_at must be in [0, 1]; got {self.change_at}")
        if abs(self.shift) > 100:
            raise ValueError(f"shift must be within +-100 standard deviations; got {self.shift}")


@dataclass(frozen=True)
class Moment:
    """The traffic at one moment: ``phase`` (a word for the progress bar), the ``shift`` of
    the drifted features in standard deviations, the ``flip`` share of outcomes that
    contradict the model's old world, and whether an ``outage`` is under way."""

    phase: str
    shift: float = 0.0
    flip: float = 0.0
    outage: bool = False


def _ramp(progress: float, start: float = 0.2) -> float:
    """0 until ``start``, then linearly to 1 at the end."""
    return min(1.0, max(0.0, (progress - start) / (1.0 - start)))


def moment(scenario: str, progress: float, knobs: Knobs = Knobs()) -> Moment:
    """What ``scenario`` sends at ``progress`` (clipped to [0, 1])."""
    p = min(1.0, max(0.0, progress))
    if scenario not in _BY_NAME:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    return _BY_NAME[scenario](p, knobs)


def _steady(p: float, k: Knobs) -> Moment:
    return Moment("steady")


def _gradual(p: float, k: Knobs) -> Moment:
    r = _ramp(p)
    return Moment("drifting" if r > 0 else "steady", shift=k.shift * r, flip=k.flip * r)


def _sudden(p: float, k: Knobs) -> Moment:
    if p < k.change_at:
        return Moment("steady")
    return Moment("drifted", shift=k.shift, flip=k.flip)


def _decay(p: float, k: Knobs) -> Moment:
    r = _ramp(p)
    return Moment("decaying" if r > 0 else "steady", flip=k.flip * r)


def _outage(p: float, k: Knobs) -> Moment:
    if p < OUTAGE[0]:
        return Moment("steady")
    if p < OUTAGE[1]:
        return Moment("outage", outage=True)
    return Moment("recovered")


_BY_NAME: dict[str, Callable[[float, Knobs], Moment]] = {
    "steady": _steady, "gradual-drift": _gradual, "sudden-drift": _sudden, "label-decay": _decay, "outage": _outage}
