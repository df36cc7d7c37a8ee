"""Forecast accuracy: MAE, RMSE, sMAPE and MASE on (windows, horizon) arrays, and one table.

Pass values in the series' original units (inverse-transform scaled forecasts first): MAE and
RMSE are in those units; sMAPE and MASE are scale-free. `y_true` and `y_pred` have the same
shape, (n, horizon) (any shape works); every element counts once.

Probabilistic forecasts, (n, horizon, Q) arrays of quantiles, are scored by the scaled pinball
loss (`spl`: the pinball loss over the MASE scale, so it is scale-free like MASE; a forecast of
the median alone scores MASE / 2) and by the coverage of each symmetric interval the quantiles
hold (0.1 and 0.9 -> `coverage_80`: the share of actuals inside the 80% interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

OVERALL = "__overall__"
"""The `unique_id` of the row summarizing all series in `metrics_table`."""

METRIC_COLUMNS = ["model", "unique_id", "mae", "rmse", "smape", "mase"]
SPL = "spl"
"""Column of the scaled pinball loss in `metrics_table` (with quantiles)."""


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


@dataclass(frozen=True)
class Interval:
    """A central prediction interval held by two symmetric quantiles: 0.1 and 0.9 -> 80%."""

    lower: float
    upper: float

    @property
    def level(self) -> float:
        """Nominal coverage in percent."""
        return round((self.upper - self.lower) * 100, 6)

    @property
    def column(self) -> str:
        """Its `metrics_table` column: coverage_80, coverage_95, coverage_97.5."""
        return f"coverage_{self.level:g}"


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """`quantiles` as a tuple, after checking they increase strictly inside (0, 1)."""
    values = tuple(float(q) for q in quantiles)
    if any(not 0 < q < 1 for q in values) or any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"quantiles must increase strictly inside (0, 1), got {list(values)}")
    return values


def symmetric_intervals(quantiles: Sequence[float]) -> list[Interval]:
    """The central intervals the quantiles hold, widest first: each q < 0.5 whose 1 - q is
    there too (up to float rounding) gives one."""
    values = check_quantiles(quantiles)
    intervals = []
    for lower in values:
        matches = [q for q in values if q > 0.5 and abs(q - (1 - lower)) < 1e-9]
        if lower < 0.5 and matches:
            intervals.append(Interval(lower, matches[0]))
    return intervals


def quantile_metric_columns(quantiles: Sequence[float]) -> list[str]:
    """The columns `metrics_table` adds for these quantiles: spl, then one coverage per interval."""
    return [SPL, *(interval.column for interval in symmetric_intervals(quantiles))]


def quantile_positions(available: Sequence[float], wanted: Sequence[float]) -> np.ndarray | None:
    """Index into `available` of each of `wanted` (up to float rounding), or None when one of
    `wanted` is missing: a forecaster scored on other quantiles is not comparable."""
    available = np.asarray(available, dtype=np.float64)
    positions = []
    for q in wanted:
        hits = np.flatnonzero(np.isclose(available, q, rtol=0, atol=1e-9))
        if hits.size == 0:
            return None
        positions.append(int(hits[0]))
    return np.asarray(positions, dtype=np.int64)


def _pinball(y_true: np.ndarray, forecasts: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """(n, horizon, Q) pinball loss of each quantile: q (y - f) above it, (1 - q) (f - y) below."""
    y_true = np.asarray(y_true, dtype=np.float64)
    forecasts = np.asarray(forecasts, dtype=np.float64)
    q = np.asarray(check_quantiles(quantiles), dtype=np.float64)
    if forecasts.shape != (*y_true.shape, q.size):
        raise ValueError(
            f"quantile forecasts {forecasts.shape} must be actuals {y_true.shape} "
            f"by {q.size} quantiles"
        )
    if y_true.size == 0:
        raise ValueError("no values to score")
    above = y_true[..., None] - forecasts
    return np.maximum(q * above, (q - 1) * above)


def pinball_loss(
    actual: np.ndarray, quantile_forecasts: np.ndarray, quantiles: Sequence[float]
) -> float:
    """Mean pinball (quantile) loss over windows, steps and quantiles, in the series' units.

    `actual` is (n, horizon), `quantile_forecasts` (n, horizon, Q) for the Q `quantiles`.
    Zero for a forecast whose every quantile equals the actual; NaN propagates (like `mae`).
    """
    return float(np.mean(_pinball(actual, quantile_forecasts, quantiles)))


def scaled_pinball_loss(
    actual: np.ndarray,
    quantile_forecasts: np.ndarray,
    quantiles: Sequence[float],
    insample: np.ndarray,
    season: int,
) -> float:
    """Pinball loss of one series over its MASE scale (`seasonal_naive_scale`); NaN when the
    scale is 0, as for MASE."""
    return _scaled(
        pinball_loss(actual, quantile_forecasts, quantiles),
        seasonal_naive_scale(insample, season),
    )


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of the finite actuals inside [lower, upper], bounds included.

    Actuals that are not finite are left out (NaN when none is left); a NaN bound at a finite
    actual makes the coverage NaN, as a NaN forecast makes MAE NaN.
    """
    actual = np.asarray(actual, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if not actual.shape == lower.shape == upper.shape:
        raise ValueError(f"actual {actual.shape}, lower {lower.shape}, upper {upper.shape} differ")
    inside, counted = _inside(actual, lower, upper)
    total = counted.sum()
    return float(inside.sum() / total) if total else float("nan")


def _inside(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """1.0 where a finite actual lies in [lower, upper], NaN where a bound is NaN there, 0.0 at
    actuals that are not finite (left out); and where the actual counts."""
    counted = np.isfinite(actual)
    with np.errstate(invalid="ignore"):
        inside = ((lower <= actual) & (actual <= upper)).astype(np.float64)
    inside[counted & (np.isnan(lower) | np.isnan(upper))] = np.nan
    inside[~counted] = 0.0
    return inside, counted


def metrics_table(
    y_true: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    unique_id: np.ndarray,
    scales: Mapping[str, float] | pd.Series,
    quantile_forecasts: Mapping[str, np.ndarray] | None = None,
    quantiles: Sequence[float] = (),
) -> pd.DataFrame:
    """Per-series and overall metrics of several models on the same windows, tidy.

    `y_true` and every forecast are (n, horizon); `unique_id` names the series of each of the
    n windows; `scales[uid]` is that series' MASE denominator (`seasonal_naive_scales` of the
    training rows). Returns one row per (model, series) plus a `__overall__` row per model,
    with the columns model, unique_id, mae, rmse, smape, mase. Overall rows pool every window
    (a series with more windows weighs more); overall MASE averages each window's MAE over its
    own series' scale. A series whose scale is 0 or NaN (a constant or too short training
    history) has no MASE (NaN), and neither has any group holding it, the overall row
    included: an overall score never silently averages over only the series that have one
    (`unscored_series` names those without).

    With `quantiles`, the table also has `quantile_metric_columns(quantiles)`: `spl` (the
    pinball loss over the MASE scale, per series and overall exactly as MASE) and each
    interval's coverage (pooled over the group's values, like MAE), for the models in
    `quantile_forecasts` (name -> (n, horizon, Q)); the other models, point forecasters, get
    NaN there.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    unique_id = np.asarray(unique_id).astype(str)
    if unique_id.shape != (y_true.shape[0],):
        raise ValueError(
            f"unique_id needs one entry per window ({y_true.shape[0]}), got {unique_id.shape}"
        )
    quantiles = check_quantiles(quantiles)
    quantile_forecasts = dict(quantile_forecasts or {})
    if quantile_forecasts and not quantiles:
        raise ValueError("quantile forecasts given without their quantiles")
    unknown = sorted(set(quantile_forecasts) - set(forecasts))
    if unknown:
        raise ValueError(f"quantile forecasts of {unknown} have no point forecasts")
    codes, series = pd.factorize(unique_id, sort=True)
    missing = [uid for uid in series if uid not in scales]
    if missing:
        raise KeyError(f"no MASE scale for series {missing[:5]} ({len(missing)} in all)")
    window_scale = np.array([scales[uid] for uid in series], dtype=np.float64)[codes]
    overall = np.zeros_like(codes)
    columns = METRIC_COLUMNS + (quantile_metric_columns(quantiles) if quantiles else [])
    parts = []
    for model, y_pred in forecasts.items():
        errors = np.asarray(y_pred, dtype=np.float64) - y_true
        if errors.shape != y_true.shape:
            raise ValueError(f"{model}: forecast {errors.shape} and y_true {y_true.shape} differ")
        quantile_values = quantile_forecasts.get(model)
        if quantile_values is not None:
            quantile_values = np.asarray(quantile_values, dtype=np.float64)
            if quantile_values.shape != (*y_true.shape, len(quantiles)):
                raise ValueError(
                    f"{model}: quantile forecasts {quantile_values.shape}, expected "
                    f"{(*y_true.shape, len(quantiles))} for quantiles {list(quantiles)}"
                )
        for groups, names in ((codes, list(series)), (overall, [OVERALL])):
            values = _grouped_metrics(groups, len(names), y_true, errors, window_scale)
            if quantiles:
                values |= _grouped_quantile_metrics(
                    groups, len(names), y_true, quantile_values, quantiles, window_scale
                )
            parts.append(pd.DataFrame({"model": model, "unique_id": names} | values))
    table = pd.concat(parts, ignore_index=True)[columns]
    return table.astype({"model": str, "unique_id": str})


def unscored_series(table: pd.DataFrame, models: Sequence[str]) -> dict[str, list[str]]:
    """Per model of `models` in a `metrics_table`, the series whose MASE is not finite: they
    make the model's overall MASE NaN, and an evaluation must say which and why."""
    rows = table[table["model"].isin(list(models)) & (table["unique_id"] != OVERALL)]
    bad = rows[~np.isfinite(rows["mase"].to_numpy(dtype=np.float64))]
    return {str(m): sorted(group["unique_id"].astype(str)) for m, group in bad.groupby("model")}


def _window_scaled(
    groups: np.ndarray, n_groups: int, per_window: np.ndarray, window_scale: np.ndarray
) -> np.ndarray:
    """Per group, the mean over its windows of a window's error over its series' scale: NaN
    when any of its windows belongs to a series whose scale is 0, NaN or inf (MASE undefined
    there, so undefined for the group: never a mean over the other windows)."""
    usable = (window_scale > 0) & np.isfinite(window_scale)
    scaled = np.divide(per_window, window_scale, out=np.full(len(per_window), np.nan), where=usable)
    windows = np.bincount(groups, minlength=n_groups)
    total = np.bincount(groups, weights=scaled, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(windows > 0, total / windows, np.nan)


def _grouped_quantile_metrics(
    groups: np.ndarray,
    n_groups: int,
    y_true: np.ndarray,
    quantile_values: np.ndarray | None,
    quantiles: tuple[float, ...],
    window_scale: np.ndarray,
) -> dict[str, np.ndarray]:
    """`spl` and the coverage columns per group of windows (all NaN for a point forecaster)."""
    intervals = symmetric_intervals(quantiles)
    if quantile_values is None:
        nothing = np.full(n_groups, np.nan)
        return {SPL: nothing} | {interval.column: nothing for interval in intervals}
    n = len(y_true)
    loss = _pinball(y_true, quantile_values, quantiles).reshape(n, -1).mean(axis=1)
    values = {SPL: _window_scaled(groups, n_groups, loss, window_scale)}
    flat = y_true.reshape(n, -1)
    for interval in intervals:
        lower = quantile_values[..., quantiles.index(interval.lower)].reshape(n, -1)
        upper = quantile_values[..., quantiles.index(interval.upper)].reshape(n, -1)
        inside, counted = _inside(flat, lower, upper)
        hits = np.bincount(groups, weights=inside.sum(axis=1), minlength=n_groups)
        points = np.bincount(groups, weights=counted.sum(axis=1), minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[interval.column] = np.where(points > 0, hits / points, np.nan)
    return values


def _grouped_metrics(
    groups: np.ndarray,
    n_groups: int,
    y_true: np.ndarray,
    errors: np.ndarray,
    window_scale: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every metric per group of windows in one pass (np.bincount), not one mask per series.

    Same definitions as `mae`, `rmse`, `smape` over all the group's values, and MASE as the
    mean over the group's windows of window MAE / series scale (NaN when a window's series has
    a scale of 0 or NaN).
    """
    n = len(errors)
    errors = errors.reshape(n, -1)
    y_true = y_true.reshape(n, -1)
    absolute = np.abs(errors)
    denominator = np.abs(y_true) + np.abs(y_true + errors)
    with np.errstate(invalid="ignore"):  # inf / inf: NaN, as it should be
        ratio = np.divide(absolute, denominator, out=np.zeros_like(absolute), where=denominator > 0)
    values = np.bincount(groups, minlength=n_groups) * errors.shape[1]

    def total(per_window: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=per_window, minlength=n_groups)

    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "mae": total(absolute.sum(axis=1)) / values,
            "rmse": np.sqrt(total((errors**2).sum(axis=1)) / values),
            "smape": 200.0 * total(ratio.sum(axis=1)) / values,
            "mase": _window_scaled(groups, n_groups, absolute.mean(axis=1), window_scale),
        }
