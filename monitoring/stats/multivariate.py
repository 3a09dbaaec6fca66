"""Multivariate drift: PCA reconstruction error.

A change in the joint distribution (a correlation that breaks, say) can leave every
marginal untouched. PCA fitted on half of the reference captures its correlation
structure; the other half calibrates the per-row reconstruction error. A window whose
rows reconstruct worse than the calibration rows (a one-sided test on the mean of the
log error, its standard error scaled by the window size and the calibration size) has
drifted jointly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import stats as ss

from monitoring.stats.sketches import NumericSketch, quantile_edges

_FLOOR = 1e-12


@dataclass(frozen=True)
class PcaDetector:
    """Fitted on numeric features only; missing values are imputed with the reference mean.
    ``ignored``: positions of numeric columns left out (ids, dates: exempt from drift),
    read as if always at the mean."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (k, d)
    cal_mean: float         # calibration log-error mean
    cal_var: float
    cal_n: int
    error_edges: np.ndarray
    ignored: tuple[int, ...] = ()

    @classmethod
    def fit(cls, numeric: np.ndarray, variance: float = 0.9, seed: int = 0,
            ignored: tuple[int, ...] = ()) -> "PcaDetector | None":
        """Fit on one half of ``numeric`` rows, calibrate on the other. None if too few
        rows or fewer than two features that are not ``ignored``."""
        X = np.asarray(numeric, dtype=np.float64)
        n, d = X.shape
        ignored = tuple(sorted(set(ignored)))
        if d - len(ignored) < 2 or n < 40:
            return None
        rng = np.random.default_rng(seed)
        idx = rng.permutation(n)
        fit_rows, cal_rows = X[idx[: n // 2]], X[idx[n // 2:]]
        mean = np.nanmean(fit_rows, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.nanstd(fit_rows, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        Z = np.where(np.isnan(fit_rows), 0.0, (fit_rows - mean) / scale)
        Z[:, list(ignored)] = 0.0  # at the mean: no part in the fit
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        explained = np.cumsum(s**2) / max((s**2).sum(), _FLOOR)
        # at most one component fewer than the columns in play, or every row reconstructs exactly
        k = int(min(max(1, np.searchsorted(explained, variance) + 1), d - len(ignored) - 1))
        det = cls(mean, scale, vt[:k], 0.0, 1.0, 0, np.zeros(0), ignored)
        cal = det.log_errors(cal_rows)
        return cls(mean, scale, vt[:k], float(cal.mean()), float(cal.var(ddof=1)), int(cal.size),
                   quantile_edges(cal, 20), ignored)

    def log_errors(self, numeric: np.ndarray) -> np.ndarray:
        """log of each row's squared reconstruction error (standardised units)."""
        Z = (np.asarray(numeric, dtype=np.float64) - self.mean) / self.scale
        Z = np.where(np.isnan(Z), 0.0, Z)
        if self.ignored:
            Z[:, list(self.ignored)] = 0.0
        resid = Z - (Z @ self.components.T) @ self.components
        return np.log(np.einsum("ij,ij->i", resid, resid) / Z.shape[1] + _FLOOR)

    def empty_sketch(self) -> NumericSketch:
        return NumericSketch(self.error_edges)

    def test(self, window: NumericSketch) -> tuple[float, float]:
        """(effect, p-value): effect is the shift of the window's mean log error in
        calibration standard deviations; p is one-sided (worse reconstruction)."""
        if window.n < 2:
            return 0.0, 1.0
        sd = math.sqrt(max(self.cal_var, _FLOOR))
        se = max(math.sqrt(self.cal_var / window.n + self.cal_var / self.cal_n), _FLOOR)
        z = (window.mean - self.cal_mean) / se
        return float((window.mean - self.cal_mean) / sd), float(ss.norm.sf(z))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "components": self.components.tolist(),
                "cal_mean": self.cal_mean, "cal_var": self.cal_var, "cal_n": self.cal_n,
                "error_edges": self.error_edges.tolist(), **({"ignored": list(self.ignored)} if self.ignored else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PcaDetector":
        return cls(np.asarray(d["mean"]), np.asarray(d["scale"]), np.asarray(d["components"]),
                   float(d["cal_mean"]), float(d["cal_var"]), int(d["cal_n"]), np.asarray(d["error_edges"]),
                   tuple(int(i) for i in d.get("ignored", ())))
