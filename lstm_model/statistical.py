"""Statistical baselines from statsforecast (SeasonalNaive, AutoETS, AutoTheta) as `Forecaster`s.

Each window is one fit: the model is fitted on the rows of the window's series before its
origin and forecasts `horizon` steps. The history is a bounded recent tail (`max_history`
rows, default 256): an ETS fit costs about 0.09 s on 100 rows, 0.6 s on 500 and 0.9 s on 1000
here (synthetic daily series), so a bound keeps the cost of one fit flat across origins and series, which is what
lets `forecast_within_budget` predict the whole run from a first measured batch; it also
keeps tonight's fallback bounded on long histories. Fits run per series, in a process pool
(spawned workers: TensorFlow in the parent is not fork-safe) when more than one core is
given: a spawned worker imports the parent's main script, so a script that calls these with
n_jobs != 1 needs the usual `if __name__ == "__main__":` guard (the `forecast` CLI, Prefect
workers and notebooks are fine). statsforecast is imported lazily: only configurations that
use these models pay for its import (1-3 s here: statsmodels, scipy, numba). Its ETS and
Theta are compiled C++: no numba JIT on these models' path, a first fit costs what later
ones do (measured on the bundled daily data, 256 rows: AutoETS 0.10-0.2 s, AutoTheta
0.01-0.03 s, SeasonalNaive under 1 ms; 1000 rows: 0.4-0.8 s and 0.08-0.18 s).

Given `quantiles`, a model is a probabilistic forecaster: statsforecast's own prediction
intervals in the same fit (level 80 gives the 0.1 and 0.9 quantiles, level 95 the 0.025 and
0.975; any q maps to level 100 |1 - 2q|), and its mean as the 0.5 quantile, so `predict` (the
mean) is the median of `predict_quantiles`. The intervals cost little more than the mean
(measured on 100 rows: AutoETS and AutoTheta alike, SeasonalNaive under 1 ms).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import pandas as pd

from lstm_model.forecasters import (
    Forecaster,
    Naive,
    SeasonalNaive,
    history_available,
    series_first_rows,
)
from lstm_model.metrics import check_quantiles

STATSFORECAST_MODELS = {
    "sf_seasonal_naive": "SeasonalNaive",
    "auto_ets": "AutoETS",
    "auto_theta": "AutoTheta",
}
"""Our baseline name -> the statsforecast.models class it runs."""

DEFAULT_MAX_HISTORY = 256
PILOT_FITS = 4
"""Windows per model fitted first, in process, to measure the time of one fit."""
CHUNK_FITS = 8
"""Windows per task under a budget: the most a deadline can be overrun by is one such chunk."""


_IMPORT_SECONDS: list[float] = []
"""How long importing statsforecast took in this process (measured once, on first use)."""


def pool_startup_s() -> float:
    """Estimated start-up of a spawned worker: the statsforecast import measured here."""
    statsforecast_model("sf_seasonal_naive", 1)
    return _IMPORT_SECONDS[0]


def statsforecast_model(name: str, season: int) -> object:
    """A fresh statsforecast model object for one of our baseline names."""
    if not _IMPORT_SECONDS:
        tick = time.perf_counter()
        import statsforecast.models  # noqa: F401

        _IMPORT_SECONDS.append(time.perf_counter() - tick)
    from statsforecast import models

    if name not in STATSFORECAST_MODELS:
        raise ValueError(
            f"unknown statsforecast baseline {name!r}; known: {list(STATSFORECAST_MODELS)}"
        )
    return getattr(models, STATSFORECAST_MODELS[name])(season_length=season)


def interval_level(quantile: float) -> float:
    """statsforecast's interval level (percent) whose lower or upper bound is `quantile`."""
    level = round(abs(1 - 2 * quantile) * 100, 6)
    return int(level) if level == int(level) else level


def fit_forecast(
    name: str,
    season: int,
    history: np.ndarray,
    horizon: int,
    quantiles: Sequence[float] = (),
) -> np.ndarray:
    """(horizon, 1 + Q): the mean forecast of one model fitted on one history (oldest row
    first), then one column per quantile from its prediction intervals (0.5: the mean)."""
    levels = sorted({interval_level(q) for q in quantiles if q != 0.5})
    with warnings.catch_warnings():
        # statsforecast's own divisions on short or flat histories; the mean is still finite.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = statsforecast_model(name, season).forecast(
            y=np.asarray(history, dtype=np.float64),
            h=horizon,
            **({"level": levels} if levels else {}),
        )
    mean = np.asarray(result["mean"], dtype=np.float64)
    columns = [mean]
    for q in quantiles:
        if q == 0.5:
            columns.append(mean)
        else:
            side = "lo" if q < 0.5 else "hi"
            columns.append(np.asarray(result[f"{side}-{interval_level(q)}"], dtype=np.float64))
    values = np.stack(columns, axis=1)
    if quantiles:
        values[:, 1:] = non_crossing(values[:, 1:], list(quantiles).index(0.5))
    return values


def non_crossing(values: np.ndarray, median: int) -> np.ndarray:
    """Quantiles (..., Q) made monotone outward from the median column, which stays as it is.

    statsforecast's intervals hold the mean, but AutoTheta returns them in float32: rounding
    can put a bound a hair on the wrong side of the float64 mean.
    """
    out = np.array(values, dtype=np.float64)
    out[..., median::-1] = np.minimum.accumulate(out[..., median::-1], axis=-1)
    out[..., median:] = np.maximum.accumulate(out[..., median:], axis=-1)
    return out


def _forecast_series(
    name: str,
    season: int,
    horizon: int,
    max_history: int | None,
    series_id: str,
    y: np.ndarray,
    local_ends: np.ndarray,
    quantiles: tuple[float, ...] = (),
) -> np.ndarray:
    """(len(local_ends), horizon, 1 + Q): one fit per origin of one series, the mean and the
    quantiles (also a pool task)."""
    out = np.empty((len(local_ends), horizon, 1 + len(quantiles)))
    for row, end in enumerate(local_ends):
        begin = 0 if max_history is None else max(0, int(end) - max_history)
        try:
            out[row] = fit_forecast(name, season, y[begin:end], horizon, quantiles)
        except Exception as err:  # name the series and origin, keep the model's message
            raise RuntimeError(
                f"{name} failed on series {series_id!r} at origin row {int(end)}: {err}"
            ) from err
    return out


@dataclass(frozen=True)
class _SeriesWork:
    """The windows of one series: its target values and the windows' origins within them."""

    series_id: str
    y: np.ndarray
    local_ends: np.ndarray  # origins relative to the series' first row
    windows: np.ndarray  # positions of these windows in the caller's `ends`


def _series_work(frame: pd.DataFrame, ends: np.ndarray) -> list[_SeriesWork]:
    """Windows grouped by series, in the order of their first window."""
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size == 0:
        return []
    y = frame["y"].to_numpy(dtype=np.float64)
    first = series_first_rows(frame)[ends - 1]
    ids = frame["unique_id"].iloc[ends - 1].to_numpy().astype(str)
    work = []
    for start in dict.fromkeys(first.tolist()):
        windows = np.flatnonzero(first == start)
        last = int(ends[windows].max())
        work.append(_SeriesWork(ids[windows[0]], y[start:last], ends[windows] - start, windows))
    return work


def _thinned(item: _SeriesWork, pilot: int, extra: int) -> _SeriesWork:
    """`item` with its first `pilot` windows and `extra` more, evenly spaced over the rest."""
    rest = np.arange(pilot, len(item.local_ends))
    picks = rest[np.unique(np.linspace(0, rest.size - 1, extra).round().astype(np.int64))]
    keep = np.concatenate([np.arange(pilot), picks if extra > 0 else picks[:0]])
    return dataclasses.replace(item, local_ends=item.local_ends[keep], windows=item.windows[keep])


def _workers(n_jobs: int) -> int:
    """Worker processes for `n_jobs` (0 or less: the cores this process may run on)."""
    if n_jobs > 0:
        return n_jobs
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, len(cores) if cores else os.cpu_count() or 1)


def _run(
    tasks: list[tuple], n_jobs: int
) -> list[np.ndarray]:  # each task: the arguments of _forecast_series
    """Run per-series fits, in a spawned process pool when more than one worker is useful."""
    workers = min(_workers(n_jobs), len(tasks))
    if workers <= 1:
        return [_forecast_series(*task) for task in tasks]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_forecast_series, *zip(*tasks, strict=True)))


def _run_until(
    tasks: list[tuple], n_jobs: int, deadline: float, must: int
) -> list[np.ndarray | None]:
    """`_run` that starts no task after `deadline` (time.perf_counter) except the first `must`;
    a task not run gives None."""
    done: list[np.ndarray | None] = [None] * len(tasks)
    workers = min(_workers(n_jobs), len(tasks))
    if workers <= 1:
        for index, task in enumerate(tasks):
            if index >= must and time.perf_counter() > deadline:
                break
            done[index] = _forecast_series(*task)
        return done
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_forecast_series, *task) for task in tasks]
        for index, future in enumerate(futures):
            wait = None if index < must else max(0.0, deadline - time.perf_counter())
            try:
                done[index] = future.result(timeout=wait)
            except TimeoutError:
                break
        for future in futures:
            future.cancel()  # those not started; running ones end within one chunk
    return done


@dataclass(frozen=True)
class StatsForecastModel:
    """One statsforecast model refitted at every window origin on the series' recent history.

    With `quantiles` (sorted, with 0.5) it is also a probabilistic forecaster
    (`predict_quantiles`), from the model's own prediction intervals.
    """

    name: str  # sf_seasonal_naive, auto_ets or auto_theta
    horizon: int
    season: int
    max_history: int | None = DEFAULT_MAX_HISTORY
    n_jobs: int = 1  # worker processes; 0: one per core
    quantiles: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in STATSFORECAST_MODELS:
            raise ValueError(f"unknown statsforecast baseline {self.name!r}")
        quantiles = check_quantiles(self.quantiles)
        if quantiles and 0.5 not in quantiles:
            raise ValueError(f"{self.name}: quantiles {list(quantiles)} must include 0.5")
        object.__setattr__(self, "quantiles", quantiles)  # a tuple, whatever was passed
        if self.max_history is not None and self.max_history < self.look_back:
            raise ValueError(f"max_history {self.max_history} < look_back {self.look_back}")

    @property
    def look_back(self) -> int:
        """Rows needed before an origin: a season for seasonal naive; two seasons (and at
        least 8 rows: AutoETS refuses 'tiny datasets' below that) for ETS and Theta."""
        return self.season if self.name == "sf_seasonal_naive" else max(2 * self.season, 8)

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return history_available(frame, ends, self.look_back)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon) mean forecasts (the median of `predict_quantiles`)."""
        return self._forecast(frame, ends)[..., 0]

    def predict_quantiles(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon, Q) quantiles from the model's prediction intervals, non-crossing."""
        if not self.quantiles:
            raise ValueError(f"{self.name}: no quantiles configured")
        return self._forecast(frame, ends)[..., 1:]

    def _forecast(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon, 1 + Q): the mean, then the quantiles, of every window."""
        ends = np.asarray(ends, dtype=np.int64)
        if not self.supports(frame, ends).all():
            raise ValueError(f"{self.name}: some windows are not supported (see `supports`)")
        work = _series_work(frame, ends)
        tasks = [self._task(item, item.local_ends) for item in work]
        workers = min(_workers(self.n_jobs), len(tasks))
        if workers <= 1:
            results = _run(tasks, 1)
        else:  # time the first series here; a pool only pays when the rest costs more
            tick = time.perf_counter()
            results = [_forecast_series(*tasks[0])]
            per_fit = (time.perf_counter() - tick) / len(work[0].local_ends)
            rest = per_fit * sum(len(item.local_ends) for item in work[1:])
            results += _run(tasks[1:], workers if rest > pool_startup_s() else 1)
        out = np.empty((ends.size, self.horizon, 1 + len(self.quantiles)))
        for item, values in zip(work, results, strict=True):
            out[item.windows] = values
        return out

    def _task(self, item: _SeriesWork, local_ends: np.ndarray) -> tuple:
        return (
            self.name,
            self.season,
            self.horizon,
            self.max_history,
            item.series_id,
            item.y,
            local_ends,
            self.quantiles,
        )


@dataclass(frozen=True)
class BudgetedForecasts:
    """Statistical baselines' forecasts on the windows of the series a time budget allowed."""

    forecasts: dict[str, np.ndarray]  # name -> (scored windows, horizon)
    scored: np.ndarray  # (n,) bool over the caller's windows: those forecast
    series: int  # series scored
    total_series: int
    seconds_per_fit: dict[str, float] = field(default_factory=dict)  # measured on the pilot
    projected_s: float = 0.0  # projected time for every series, from the measured fits
    elapsed_s: float = 0.0
    budget_s: float = 0.0
    workers: int = 1
    cut_at_deadline: bool = False  # fits ran slower than measured: series dropped at the deadline
    quantile_forecasts: dict[str, np.ndarray] = field(default_factory=dict)
    """Name -> (scored windows, horizon, Q), for the models with quantiles."""

    @property
    def sampled(self) -> bool:
        return self.series < self.total_series


def _projected(serial_s: float, startup_s: float, n_jobs: int, order: list[str]) -> float:
    """Seconds every series would take, serially or in the pool, whichever is faster."""
    workers = min(_workers(n_jobs), len(order))
    return serial_s if workers <= 1 else min(serial_s, startup_s + serial_s / workers)


def series_order(ids: Sequence[str], seed: int) -> list[str]:
    """The series in a seeded random order (sorted first, so the order is reproducible)."""
    unique = sorted(set(ids))
    return [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]


def forecast_within_budget(
    models: Sequence[StatsForecastModel],
    frame: pd.DataFrame,
    ends: np.ndarray,
    budget_s: float,
    seed: int = 0,
    n_jobs: int = 1,
) -> BudgetedForecasts:
    """Forecast every window of as many series as `budget_s` allows (all when it suffices).

    Series are taken in a seeded random order. The first `PILOT_FITS` windows of the first
    series are fitted in process for every model and timed; from the measured seconds per fit
    (and, for a pool, the measured import time as its start-up) the cost of each further series
    is projected, and the longest prefix of the order that fits the rest of the budget is
    scored. The first series is always scored, so there is something to compare: all its
    windows, or an evenly spaced sample of them when even they alone exceed the budget.
    """
    started = time.perf_counter()
    ends = np.asarray(ends, dtype=np.int64)
    work = {item.series_id: item for item in _series_work(frame, ends)}
    order = series_order(list(work), seed)
    names = [model.name for model in models]
    empty = BudgetedForecasts(
        {name: np.empty((0, m.horizon)) for name, m in zip(names, models, strict=True)},
        np.zeros(ends.size, dtype=bool),
        0,
        len(order),
        budget_s=budget_s,
        quantile_forecasts={
            m.name: np.empty((0, m.horizon, len(m.quantiles))) for m in models if m.quantiles
        },
    )
    if not order or not models:
        return empty
    import_s = pool_startup_s()

    first = work[order[0]]
    pilot = first.local_ends[:PILOT_FITS]
    pilot_values, per_fit = {}, {}
    for model in models:
        tick = time.perf_counter()
        pilot_values[model.name] = _forecast_series(*model._task(first, pilot))
        per_fit[model.name] = (time.perf_counter() - tick) / len(pilot)
    cost_per_window = sum(per_fit.values())
    workers = min(_workers(n_jobs), len(order))
    left = budget_s - (time.perf_counter() - started)
    capacity = left if workers <= 1 else max(left, (left - import_s) * workers)
    # Even the first series alone is over the budget (a long test split, stride 1): score an
    # evenly spaced sample of its windows, the pilot ones included, instead of all of them.
    affordable = int(max(capacity, 0.0) // max(cost_per_window, 1e-9))
    if len(first.local_ends) - len(pilot) > affordable:
        first = _thinned(first, len(pilot), affordable)
        work[order[0]] = first
    windows = {sid: len(work[sid].local_ends) for sid in order}
    chosen, spent = [order[0]], cost_per_window * (windows[order[0]] - len(pilot))
    for sid in order[1:]:
        cost = cost_per_window * windows[sid]
        if spent + cost > capacity:
            break
        chosen.append(sid)
        spent += cost
    if spent <= left:  # a pool would cost its start-up for nothing
        workers = 1

    # Series-major chunks, so that stopping at the deadline leaves whole series done first.
    jobs, keys = [], []
    for sid in chosen:
        item = work[sid]
        rest = item.local_ends[len(pilot) :] if sid == order[0] else item.local_ends
        for begin in range(0, len(rest), CHUNK_FITS):
            for model in models:
                jobs.append(model._task(item, rest[begin : begin + CHUNK_FITS]))
                keys.append((model.name, sid))
    must = sum(1 for _, sid in keys if sid == order[0])  # the first series always completes
    done = _run_until(jobs, workers, started + budget_s, must)
    unfinished = {sid for (_, sid), values in zip(keys, done, strict=True) if values is None}
    if unfinished:  # the fits ran slower than measured: keep the series done in time
        chosen = chosen[: min(chosen.index(sid) for sid in unfinished)]
    results: dict[tuple[str, str], list[np.ndarray]] = {}
    for key, values in zip(keys, done, strict=True):
        if key[1] in chosen:
            results.setdefault(key, []).append(values)

    scored = np.zeros(ends.size, dtype=bool)
    for sid in chosen:
        scored[work[sid].windows] = True
    position = np.cumsum(scored) - 1  # window -> row in the scored forecasts
    forecasts, quantile_forecasts = {}, {}
    for model in models:
        out = np.empty((int(scored.sum()), model.horizon, 1 + len(model.quantiles)))
        for sid in chosen:
            item = work[sid]
            rows = position[item.windows]
            parts = results.get((model.name, sid), [])
            if sid == order[0]:
                parts = [pilot_values[model.name], *parts]
            out[rows] = np.concatenate(parts)
        forecasts[model.name] = out[..., 0]
        if model.quantiles:
            quantile_forecasts[model.name] = out[..., 1:]
    return BudgetedForecasts(
        forecasts,
        scored,
        len(chosen),
        len(order),
        seconds_per_fit=per_fit,
        projected_s=_projected(cost_per_window * sum(windows.values()), import_s, n_jobs, order),
        elapsed_s=time.perf_counter() - started,
        budget_s=budget_s,
        workers=workers,
        cut_at_deadline=bool(unfinished),
        quantile_forecasts=quantile_forecasts,
    )


BASELINE_NAMES = ("naive", "seasonal_naive", *STATSFORECAST_MODELS)


def baseline_forecaster(
    name: str,
    horizon: int,
    season: int,
    max_history: int | None = DEFAULT_MAX_HISTORY,
    n_jobs: int = 1,
    quantiles: Sequence[float] = (),
) -> Forecaster:
    """One baseline by its configured name (evaluation.baselines, forecast.fallback_model).

    With `quantiles` (the median is added), the statsforecast ones forecast those quantiles
    too; our numpy naive and seasonal naive stay point forecasters.
    """
    if name == "naive":
        return Naive(horizon)
    if name == "seasonal_naive":
        return SeasonalNaive(horizon, season)
    if name in STATSFORECAST_MODELS:
        with_median = tuple(sorted({*map(float, quantiles), 0.5})) if quantiles else ()
        return StatsForecastModel(name, horizon, season, max_history, n_jobs, with_median)
    raise ValueError(f"unknown baseline {name!r}; known: {list(BASELINE_NAMES)}")
