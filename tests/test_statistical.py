"""statsforecast baselines: the same forecasts as statsforecast itself, and the time budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from lstm_model import statistical
from lstm_model.forecasters import SeasonalNaive
from lstm_model.metrics import OVERALL, metrics_table
from lstm_model.statistical import (
    STATSFORECAST_MODELS,
    StatsForecastModel,
    baseline_forecaster,
    series_order,
)
from tasks.evaluate import (
    CHALLENGER_ON_BASELINE_SAMPLE,
    BaselineBudget,
    EvaluationData,
    evaluate_forecasters,
    metrics_markdown,
)

HORIZON, SEASON = 3, 7


def panel(lengths: dict[str, int], seed: int = 3) -> pd.DataFrame:
    """Weekly-seasonal noisy series with a level per series (seeded)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (uid, n) in enumerate(lengths.items()):
        t = np.arange(n)
        y = 50.0 + 10 * k + 5 * np.sin(2 * np.pi * t / SEASON) + 0.05 * t + rng.normal(0, 1, n)
        ds = pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC")
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


def statsforecast_directly(name: str, history: pd.DataFrame, horizon: int) -> np.ndarray:
    """statsforecast's own DataFrame API on one series' history: the independent answer."""
    from statsforecast import StatsForecast, models

    cls = getattr(models, STATSFORECAST_MODELS[name])
    frame = history[["unique_id", "ds", "y"]].assign(ds=history["ds"].dt.tz_localize(None))
    result = StatsForecast(models=[cls(season_length=SEASON)], freq="D", n_jobs=1).forecast(
        df=frame, h=horizon
    )
    return result[cls.__name__].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("name", sorted(STATSFORECAST_MODELS))
def test_forecasts_equal_statsforecast_on_the_same_history(name: str) -> None:
    frame = panel({"a": 60, "b": 45})
    # a: origins at rows 30, 41, 57; b (rows 60-104): origins at 60 + 20 and 60 + 42.
    ends = np.array([30, 41, 57, 80, 102])
    model = StatsForecastModel(name, HORIZON, SEASON, max_history=25)
    assert model.supports(frame, ends).all()
    got = model.predict(frame, ends)
    assert got.shape == (5, HORIZON)
    for row, end in enumerate(ends):
        series = frame.loc[: end - 1]
        series = series[series["unique_id"] == frame["unique_id"].iloc[end - 1]]
        expected = statsforecast_directly(name, series.tail(25), HORIZON)
        np.testing.assert_allclose(got[row], expected, rtol=1e-9)
    # Without a bound every earlier row of the series is the history.
    unbounded = StatsForecastModel(name, HORIZON, SEASON, max_history=None)
    expected = statsforecast_directly(name, frame.loc[:56], HORIZON)
    np.testing.assert_allclose(unbounded.predict(frame, np.array([57]))[0], expected, rtol=1e-9)


def test_statsforecast_seasonal_naive_equals_ours() -> None:
    frame = panel({"a": 40, "b": 30})
    ends = np.array([10, 25, 40, 50, 70])
    ours = SeasonalNaive(HORIZON, SEASON).predict(frame, ends)
    theirs = baseline_forecaster("sf_seasonal_naive", HORIZON, SEASON).predict(frame, ends)
    np.testing.assert_allclose(theirs, ours)


def test_a_process_pool_gives_the_same_forecasts(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = panel({"a": 40, "b": 40, "c": 40})
    ends = np.array([30, 35, 70, 75, 110, 115])
    serial = StatsForecastModel("auto_theta", HORIZON, SEASON).predict(frame, ends)
    # A pool only starts when the rest would take longer than its start-up: make it free.
    monkeypatch.setattr(statistical, "pool_startup_s", lambda: 0.0)
    runs = []
    real_run = statistical._run
    monkeypatch.setattr(
        statistical, "_run", lambda tasks, n_jobs: runs.append(n_jobs) or real_run(tasks, n_jobs)
    )
    pooled = StatsForecastModel("auto_theta", HORIZON, SEASON, n_jobs=2).predict(frame, ends)
    assert runs == [2]  # series b and c in two spawned workers, a in process
    np.testing.assert_array_equal(pooled, serial)


def test_short_histories_are_not_supported() -> None:
    frame = panel({"a": 20, "b": 30})
    model = StatsForecastModel("auto_ets", HORIZON, SEASON)
    assert model.look_back == 2 * SEASON
    # a's origin 10 has 10 rows (< 14); b starts at row 20: origin 34 has 14 rows.
    assert model.supports(frame, np.array([10, 14, 33, 34])).tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="not supported"):
        model.predict(frame, np.array([10]))


@dataclass(frozen=True)
class Constant:
    value: float
    name: str = "lstm"
    look_back: int = 1
    horizon: int = HORIZON

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.ones(len(ends), dtype=bool)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.full((len(ends), self.horizon), self.value)


def evaluation(ids: list[str]) -> EvaluationData:
    frame = panel(dict.fromkeys(ids, 40))
    ends = np.concatenate([40 * k + np.array([28, 33, 37]) for k in range(len(ids))])
    scales = pd.Series(dict.fromkeys(ids, 2.0))
    return EvaluationData(frame=frame, ends=ends, scales=scales, look_back=1)


def test_a_tiny_budget_scores_a_seeded_sample_and_says_so() -> None:
    ids = ["s0", "s1", "s2", "s3"]
    data = evaluation(ids)
    theta = StatsForecastModel("auto_theta", HORIZON, SEASON)
    metrics, forecasts, _, scored, sample = evaluate_forecasters(
        data,
        Constant(60.0),
        [SeasonalNaive(HORIZON, SEASON), theta],
        budget=BaselineBudget(budget_s=1e-6, seed=5),
    )
    first = series_order(ids, 5)[0]
    assert sample.sampled and sample.models == ["auto_theta"]
    assert (sample.series, sample.total_series) == (1, 4)
    assert (sample.windows, sample.total_windows) == (3, 12)
    assert sample.seconds_per_fit["auto_theta"] > 0 and sample.budget_s == 1e-6
    assert "sample of 1 of 4 series (3 of 12 windows)" in sample.note
    assert "evaluation.baseline_time_budget_s = 1e-06 s" in sample.note
    # auto_theta is scored on the sampled series only; its forecasts are those of the model.
    keep = scored.unique_ids == first
    assert np.isnan(forecasts["auto_theta"][~keep]).all()
    np.testing.assert_allclose(
        forecasts["auto_theta"][keep], theta.predict(scored.frame, scored.ends[keep])
    )
    rows = metrics[metrics["model"] == "auto_theta"]
    assert set(rows["unique_id"]) == {first, OVERALL}
    # Cheap baselines and the model still cover every window ...
    assert set(metrics.loc[metrics["model"] == "seasonal_naive", "unique_id"]) == {*ids, OVERALL}
    # ... and the model is scored again on the sample, as the gate needs it.
    y = scored.frame["y"].to_numpy()
    actual = y[scored.ends[keep][:, None] + np.arange(HORIZON)]
    on_sample = metrics[
        (metrics["model"] == CHALLENGER_ON_BASELINE_SAMPLE) & (metrics["unique_id"] == OVERALL)
    ]
    assert float(on_sample["mae"].iloc[0]) == pytest.approx(np.abs(actual - 60.0).mean())
    assert float(on_sample["mase"].iloc[0]) == pytest.approx(np.abs(actual - 60.0).mean() / 2)
    report = metrics_markdown(metrics, None, sample)
    assert "Sampled statistical baselines" in report and "sample of 1 of 4 series" in report
    # The same seed draws the same series; another seed, here, another one.
    for seed, same in ((5, True), (1, series_order(ids, 1)[0] == first)):
        _, again, _, _, _ = evaluate_forecasters(
            data, Constant(60.0), [theta], budget=BaselineBudget(budget_s=1e-6, seed=seed)
        )
        assert (~np.isnan(again["auto_theta"][:, 0]) == keep).all() == same
    assert series_order(ids, 1)[0] != first


def test_an_ample_budget_scores_every_series() -> None:
    ids = ["s0", "s1", "s2"]
    data = evaluation(ids)
    theta = StatsForecastModel("auto_theta", HORIZON, SEASON)
    metrics, forecasts, _, scored, sample = evaluate_forecasters(
        data, Constant(60.0), [theta], budget=BaselineBudget(budget_s=600)
    )
    assert not sample.sampled and (sample.series, sample.windows) == (3, 9)
    assert "scored on all 3 series" in sample.note
    assert CHALLENGER_ON_BASELINE_SAMPLE not in set(metrics["model"])
    direct = theta.predict(scored.frame, scored.ends)
    np.testing.assert_allclose(forecasts["auto_theta"], direct)
    expected = metrics_table(
        scored.frame["y"].to_numpy()[scored.ends[:, None] + np.arange(HORIZON)],
        {"auto_theta": direct},
        scored.unique_ids,
        scored.scales,
    )
    got = metrics[metrics["model"] == "auto_theta"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_no_task_starts_after_the_deadline_but_the_first_series_completes() -> None:
    frame = panel({"a": 30})
    task = StatsForecastModel("auto_theta", HORIZON, SEASON)._task(
        statistical._series_work(frame, np.array([20, 25]))[0], np.array([20, 25])
    )
    done = statistical._run_until([task, task, task], 1, deadline=0.0, must=2)
    assert done[2] is None and done[0] is not None
    np.testing.assert_array_equal(done[1], done[0])
