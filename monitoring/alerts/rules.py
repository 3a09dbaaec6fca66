"""Alert rules over the monitored series, and the conditions they test.

A rule watches one *series* (a per-window figure: a feature's drift score, the error rate,
realized accuracy...; see :mod:`monitoring.alerts.series`) and fires when its *condition*
holds for enough consecutive windows (and, optionally, for long enough); it resolves after
enough clean windows. Conditions:

- ``above: x`` / ``below: x``: the value crosses a fixed threshold;
- ``outside_band: true``: the series' own calibrated check says the window is abnormal
  (a drift test's Holm-adjusted verdict, the realized metric outside its bootstrap band,
  a binomial test of the error count against the accepted error rate, ...);
- ``relative_change: r`` (with ``direction``): ``|value - reference| / |reference| > r``
  against the reference profile's value (or the validation baseline for performance).

:class:`RuleSpec` checks a rule against its series' registry entry (a band to test, a
reference to compare with, a label to name); :func:`evaluate_condition` judges one
observation. An *instance* is the feature, class or metric the value belongs to (a
per-feature rule has one alert per feature); the state machine per (model, rule, instance)
is :mod:`monitoring.alerts.state`, the default rules :mod:`monitoring.alerts.defaults`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitoring.alerts.series import SERIES, Obs, SeriesName
from monitoring.values import finite_or_none

Severity = Literal["info", "warning", "critical"]

class RuleSpec(BaseModel):
    """One alert rule, as written in the YAML config (``alert_rules``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    series: SeriesName
    label: str | None = Field(None, description="feature, class or metric (None: every one, where the series has them)")
    above: float | None = None
    below: float | None = None
    outside_band: bool | None = None
    relative_change: float | None = Field(None, gt=0)
    direction: Literal["up", "down", "both"] = "both"
    band_rate: float | None = Field(None, gt=0, lt=0.5, description="per-window false-alarm rate of the band test")
    effect_floor: float | None = Field(None, ge=0, description="smallest change the band flags, in the series' "
                                       "floor units (Cohen's h for rates, the metric's units for performance)")
    effect_floors: dict[str, float] = Field(default_factory=dict,
                                            description="effect_floor per feature, class or metric")
    for_windows: int = Field(1, ge=1, le=1000)
    for_seconds: float = Field(0.0, ge=0)
    resolve_windows: int = Field(1, ge=1, le=1000)
    severity: Severity = "warning"
    cooldown_seconds: float = Field(0.0, ge=0)
    repeat_seconds: float | None = Field(None, gt=0, description="re-notify a firing, unacknowledged alert this often")
    enabled: bool = True
    description: str | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> "RuleSpec":
        given = [k for k in ("above", "below", "outside_band", "relative_change") if getattr(self, k) is not None]
        if self.enabled and len(given) != 1:
            raise ValueError(f"rule {self.name!r}: give exactly one condition of above, below, outside_band, "
                             f"relative_change (got {', '.join(given) or 'none'})")
        s = SERIES[self.series]
        if self.outside_band is not None and s.band is None:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no calibrated band; use above/below")
        if self.outside_band is False:
            raise ValueError(f"rule {self.name!r}: outside_band must be true when given")
        if self.relative_change is not None and not s.reference:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no reference value for relative_change")
        if self.band_rate is not None and not s.tunable_rate:
            raise ValueError(f"rule {self.name!r}: series {self.series}'s band has a fixed rate; band_rate does not apply")
        if (self.effect_floor is not None or self.effect_floors) and (not self.outside_band or s.floor_units is None):
            raise ValueError(f"rule {self.name!r}: effect_floor applies to outside_band on a series with a floor "
                             f"({', '.join(k for k, v in SERIES.items() if v.floor_units)})")
        if any(v < 0 for v in self.effect_floors.values()):
            raise ValueError(f"rule {self.name!r}: effect_floors must be >= 0")
        if s.label is None and self.label is not None:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no {self.label!r}; remove label")
        if s.label == "metric" and self.label is None:
            raise ValueError(f"rule {self.name!r}: series {self.series} needs label: the metric (e.g. accuracy)")
        return self

    def condition_text(self) -> str:
        if self.above is not None:
            return f"{self.series} > {self.above:g}"
        if self.below is not None:
            return f"{self.series} < {self.below:g}"
        if self.relative_change is not None:
            sign = {"up": "+", "down": "-", "both": "+/-"}[self.direction]
            return f"{self.series} changes by {sign}{self.relative_change:.0%} from the reference"
        return f"{self.series} outside its band ({SERIES[self.series].band})"


class WebhookSpec(BaseModel):
    """A webhook sink: alert notifications POSTed as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,50}$")
    #: put at the end of the notification's ``text`` (your dashboard or runbook); default: the first trace link
    link: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(5.0, gt=0, le=120)
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or any(ch in k for ch in " :\r\n") or any(ch in val for ch in "\r\n"):
                raise ValueError(f"invalid header {k!r}")
        return v


def evaluate_condition(rule: RuleSpec, obs: Obs) -> bool | None:
    """True (abnormal), False (normal) or None (no data: neither counts)."""
    if rule.outside_band:
        return obs.outside
    v = finite_or_none(obs.value)
    if v is None:
        return None
    if rule.above is not None:
        return v > rule.above
    if rule.below is not None:
        return v < rule.below
    ref = finite_or_none(obs.reference)
    if ref is None:
        return None
    delta = v - ref
    if rule.direction == "up" and delta <= 0 or rule.direction == "down" and delta >= 0:
        return False
    if ref == 0:
        return delta != 0
    return abs(delta) / abs(ref) > rule.relative_change
