"""Model performance from labelled rows, computed with :mod:`sklearn.metrics`."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray | None,
                           classes: Sequence[Any]) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1, and ROC AUC and log loss when probabilities exist.

    Metrics that are undefined for the data (e.g. AUC with a single class present) are
    left out rather than reported as a misleading number.
    """
    from sklearn import metrics as skm

    labels = list(classes)
    k = len(labels)
    idx = {c: i for i, c in enumerate(labels)}
    # Work on class indices: labels may be strings, ints or a mix that sklearn can't type.
    y_idx = np.fromiter((idx.get(v, k) for v in y_true), dtype=np.int64)
    p_idx = np.fromiter((idx.get(v, k) for v in y_pred), dtype=np.int64)
    out: dict[str, float] = {"accuracy": float(skm.accuracy_score(y_idx, p_idx))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(y_idx, p_idx, labels=list(range(k)), average="macro",
                                                         zero_division=0)
    out.update(precision=float(p), recall=float(r), f1=float(f))
    if proba is not None and len(np.unique(y_idx)) > 1 and (y_idx < k).all():
        if k == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_idx, proba[:, 1]))
        elif len(np.unique(y_idx)) == k:
            out["roc_auc"] = float(skm.roc_auc_score(y_idx, proba, multi_class="ovr", labels=list(range(k))))
        out["log_loss"] = float(skm.log_loss(y_idx, proba, labels=list(range(k))))
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MSE, RMSE, MAE, R2 and MAPE."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    mse = float(skm.mean_squared_error(y_true, y_pred))
    out = {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(skm.mean_absolute_error(y_true, y_pred))}
    if len(y_true) > 1:
        out["r2"] = float(skm.r2_score(y_true, y_pred))
    out["mape"] = float(skm.mean_absolute_percentage_error(y_true, y_pred))
    return out
