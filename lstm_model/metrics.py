"""Forecast accuracy: MAE, RMSE, sMAPE and MASE on (windows, horizon) arrays, and one table.

Pass values in the series' original units (inverse-transform scaled forecasts first): MAE and
RMSE are in those units; sMAPE and MASE are scale-free. `y_true` and `y_pred` have the same
shape, (n, horizon) (any shape works); every element counts once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

OVERALL = "__overall__"
"""The `unique_id` of the row summarizing all series in `metrics_table`."""

METRIC_COLUMNS = ["model", "unique_id", "mae", "rmse", "smape", "mase"]


def _errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    if y_true.size == 0:
        raise ValueError("no values to score")
    return y_pred - y_true


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(y_true, y_pred))))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean(_errors(y_true, y_pred) ** 2)))


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric MAPE in percent, 0..200: mean of 200 |y - ŷ| / (|y| + |ŷ|).

    The M4 competition's definition. A point where both y and ŷ are 0 is a perfect forecast
    and scores 0 (instead of 0/0).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    errors = np.abs(_errors(y_true, y_pred))
    denominator = np.abs(y_true) + np.abs(np.asarray(y_pred, dtype=np.float64))
    ratio = np.divide(errors, denominator, out=np.zeros_like(errors), where=denominator > 0)
    return float(200.0 * np.mean(ratio))


def seasonal_naive_scale(insample: np.ndarray, season: int) -> float:
    """MASE's denominator: in-sample MAE of the seasonal-naive forecast, mean |y_t - y_(t-m)|.

    `insample` is one series' training values in time order; `season` is m (1 = naive).
    """
    insample = np.asarray(insample, dtype=np.float64).ravel()
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    if insample.size <= season:
        raise ValueError(
            f"MASE needs more than season={season} in-sample values, got {insample.size}"
        )
    return float(np.mean(np.abs(insample[season:] - insample[:-season])))


def mase(y_true: np.ndarray, y_pred: np.ndarray, insample: np.ndarray, season: int) -> float:
    """Mean absolute scaled error of one series: MAE / `seasonal_naive_scale(insample, season)`.

    Below 1 means better than the seasonal-naive forecast was in-sample. A constant training
    series has scale 0 and MASE is undefined there: NaN (never inf, never a division warning).
    """
    return _scaled(mae(y_true, y_pred), seasonal_naive_scale(insample, season))


def _scaled(error: float, scale: float) -> float:
    return error / scale if scale > 0 and np.isfinite(scale) else float("nan")


def seasonal_naive_scales(frame: pd.DataFrame, season: int) -> pd.Series:
    """`seasonal_naive_scale` of every series in a tidy frame (`unique_id`, `y`), by id.

    Pass the training rows only, in time order within each series. A series with no more than
    `season` rows gets NaN: its MASE is undefined, like that of a constant series (scale 0).
    """
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    by_series = frame.groupby("unique_id", sort=True)["y"]
    diffs = (frame["y"] - by_series.shift(season)).abs()
    return diffs.groupby(frame["unique_id"], sort=True).mean().rename("scale")


def metrics_table(
    y_true: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    unique_id: np.ndarray,
    scales: Mapping[str, float] | pd.Series,
) -> pd.DataFrame:
    """Per-series and overall metrics of several models on the same windows, tidy.

    `y_true` and every forecast are (n, horizon); `unique_id` names the series of each of the
    n windows; `scales[uid]` is that series' MASE denominator (`seasonal_naive_scales` of the
    training rows). Returns one row per (model, series) plus a `__overall__` row per model,
    with the columns model, unique_id, mae, rmse, smape, mase. Overall rows pool every window
    (a series with more windows weighs more); overall MASE averages each window's MAE over its
    own series' scale, leaving out series whose scale is 0 or NaN (MASE undefined: NaN).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    unique_id = np.asarray(unique_id).astype(str)
    if unique_id.shape != (y_true.shape[0],):
        raise ValueError(
            f"unique_id needs one entry per window ({y_true.shape[0]}), got {unique_id.shape}"
        )
    codes, series = pd.factorize(unique_id, sort=True)
    missing = [uid for uid in series if uid not in scales]
    if missing:
        raise KeyError(f"no MASE scale for series {missing[:5]} ({len(missing)} in all)")
    window_scale = np.array([scales[uid] for uid in series], dtype=np.float64)[codes]
    overall = np.zeros_like(codes)
    parts = []
    for model, y_pred in forecasts.items():
        errors = np.asarray(y_pred, dtype=np.float64) - y_true
        if errors.shape != y_true.shape:
            raise ValueError(f"{model}: forecast {errors.shape} and y_true {y_true.shape} differ")
        for groups, names in ((codes, list(series)), (overall, [OVERALL])):
            parts.append(
                pd.DataFrame(
                    {"model": model, "unique_id": names}
                    | _grouped_metrics(groups, len(names), y_true, errors, window_scale)
                )
            )
    table = pd.concat(parts, ignore_index=True)[METRIC_COLUMNS]
    return table.astype({"model": str, "unique_id": str})


def _grouped_metrics(
    groups: np.ndarray,
    n_groups: int,
    y_true: np.ndarray,
    errors: np.ndarray,
    window_scale: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every metric per group of windows in one pass (np.bincount), not one mask per series.

    Same definitions as `mae`, `rmse`, `smape` over all the group's values, and MASE as the
    mean over the group's windows of window MAE / series scale (windows of series whose scale
    is 0 or NaN left out; NaN when none is left).
    """
    n = len(errors)
    errors = errors.reshape(n, -1)
    y_true = y_true.reshape(n, -1)
    absolute = np.abs(errors)
    denominator = np.abs(y_true) + np.abs(y_true + errors)
    ratio = np.divide(absolute, denominator, out=np.zeros_like(absolute), where=denominator > 0)
    values = np.bincount(groups, minlength=n_groups) * errors.shape[1]

    def total(per_window: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=per_window, minlength=n_groups)

    usable = (window_scale > 0) & np.isfinite(window_scale)
    scaled = np.divide(absolute.mean(axis=1), window_scale, out=np.zeros(n), where=usable)
    usable_windows = total(usable.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "mae": total(absolute.sum(axis=1)) / values,
            "rmse": np.sqrt(total((errors**2).sum(axis=1)) / values),
            "smape": 200.0 * total(ratio.sum(axis=1)) / values,
            "mase": np.where(usable_windows > 0, total(scaled) / usable_windows, np.nan),
        }
