"""statsforecast baselines: the same forecasts as statsforecast itself, and the time budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from lstm_model import statistical
from lstm_model.forecasters import SeasonalNaive, forecast_quantiles_of
from lstm_model.metrics import OVERALL, metrics_table, pinball_loss
from lstm_model.statistical import (
    STATSFORECAST_MODELS,
    StatsForecastModel,
    baseline_forecaster,
    non_crossing,
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


def test_a_series_too_long_for_the_budget_is_scored_on_a_spread_of_its_windows() -> None:
    """A long test split (one window a day for years) cannot be fitted whole even for one
    series: an evenly spaced sample of its windows is, and the counts say so."""
    frame = panel({"long": 120, "other": 120})
    ends = np.concatenate([np.arange(30, 110, 2), 120 + np.arange(30, 110, 2)])  # 40 + 40
    data = EvaluationData(
        frame=frame, ends=ends, scales=pd.Series({"long": 2.0, "other": 2.0}), look_back=1
    )
    theta = StatsForecastModel("auto_theta", HORIZON, SEASON)
    _, forecasts, _, scored, sample = evaluate_forecasters(
        data, Constant(60.0), [theta], budget=BaselineBudget(budget_s=1e-6, seed=5)
    )
    first = series_order(["long", "other"], 5)[0]
    assert (sample.series, sample.total_series, sample.total_windows) == (1, 2, 80)
    done = ~np.isnan(forecasts["auto_theta"][:, 0])
    assert done.sum() == sample.windows == statistical.PILOT_FITS < 40
    assert set(scored.unique_ids[done]) == {first}
    assert f"({statistical.PILOT_FITS} of 80 windows)" in sample.note
    np.testing.assert_allclose(
        forecasts["auto_theta"][done], theta.predict(scored.frame, scored.ends[done])
    )


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


# -- prediction intervals as quantiles --------------------------------------------------------
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)


def statsforecast_intervals(name: str, history: pd.DataFrame, horizon: int) -> np.ndarray:
    """(horizon, 5): statsforecast's own lo-95, lo-80, mean, hi-80, hi-95 for one history."""
    from statsforecast import StatsForecast, models

    cls = getattr(models, STATSFORECAST_MODELS[name])
    frame = history[["unique_id", "ds", "y"]].assign(ds=history["ds"].dt.tz_localize(None))
    result = StatsForecast(models=[cls(season_length=SEASON)], freq="D", n_jobs=1).forecast(
        df=frame, h=horizon, level=[80, 95]
    )
    m = cls.__name__
    columns = [f"{m}-lo-95", f"{m}-lo-80", m, f"{m}-hi-80", f"{m}-hi-95"]
    return result[columns].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("name", sorted(STATSFORECAST_MODELS))
def test_quantiles_are_statsforecasts_prediction_intervals(name: str) -> None:
    frame = panel({"a": 60, "b": 45})
    ends = np.array([30, 57, 102])
    model = StatsForecastModel(name, HORIZON, SEASON, max_history=25, quantiles=QUANTILES)
    assert forecast_quantiles_of(model) == QUANTILES
    got = model.predict_quantiles(frame, ends)
    assert got.shape == (3, HORIZON, 5)
    for row, end in enumerate(ends):
        series = frame.loc[: end - 1]
        series = series[series["unique_id"] == frame["unique_id"].iloc[end - 1]]
        expected = statsforecast_intervals(name, series.tail(25), HORIZON)
        # AutoTheta gives its intervals in float32.
        np.testing.assert_allclose(got[row], expected, rtol=1e-6)
    assert (np.diff(got, axis=2) >= 0).all()  # non-crossing
    # The point forecast is the median, and the same as without quantiles.
    np.testing.assert_array_equal(model.predict(frame, ends), got[..., 2])
    plain = StatsForecastModel(name, HORIZON, SEASON, max_history=25)
    np.testing.assert_allclose(plain.predict(frame, ends), got[..., 2], rtol=1e-12)


def test_quantiles_need_the_median_and_baseline_forecaster_adds_it() -> None:
    with pytest.raises(ValueError, match="must include 0.5"):
        StatsForecastModel("auto_ets", HORIZON, SEASON, quantiles=(0.1, 0.9))
    with pytest.raises(ValueError, match="increase strictly"):
        StatsForecastModel("auto_ets", HORIZON, SEASON, quantiles=(0.9, 0.5, 0.1))
    ets = baseline_forecaster("auto_ets", HORIZON, SEASON, quantiles=[0.9, 0.1])
    assert forecast_quantiles_of(ets) == (0.1, 0.5, 0.9)
    assert forecast_quantiles_of(baseline_forecaster("auto_ets", HORIZON, SEASON)) == ()
    # Our numpy baselines stay point forecasters.
    assert forecast_quantiles_of(baseline_forecaster("seasonal_naive", 3, 7, quantiles=[0.1])) == ()
    with pytest.raises(ValueError, match="no quantiles"):
        StatsForecastModel("auto_ets", HORIZON, SEASON).predict_quantiles(panel({"a": 30}), [20])


def test_non_crossing_keeps_the_median_and_orders_outward() -> None:
    # A lower bound a hair above the median and an upper one below the next.
    values = np.array([[1.0, 2.0000001, 2.0, 5.0, 4.0]])
    fixed = non_crossing(values, median=2)
    np.testing.assert_array_equal(fixed, [[1.0, 2.0, 2.0, 5.0, 5.0]])


@dataclass(frozen=True)
class ConstantBand:
    """A fake probabilistic forecaster: `value` as the median, `value` -+ `spread` as the 0.1
    and 0.9 quantiles."""

    value: float
    spread: float
    name: str = "lstm"
    look_back: int = 1
    horizon: int = HORIZON
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.ones(len(ends), dtype=bool)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.full((len(ends), self.horizon), self.value)

    def predict_quantiles(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        offsets = np.array([-self.spread, 0.0, self.spread])
        return self.predict(frame, ends)[..., None] + offsets


def test_statistical_baselines_are_scored_on_their_intervals() -> None:
    ids = ["s0", "s1", "s2"]
    data = evaluation(ids)
    theta = StatsForecastModel("auto_theta", HORIZON, SEASON, quantiles=(0.1, 0.5, 0.9))
    metrics, _, _, scored, sample = evaluate_forecasters(
        data,
        Constant(60.0),
        [theta],
        budget=BaselineBudget(budget_s=600),
        quantiles=[0.1, 0.5, 0.9],
    )
    assert not sample.sampled
    y = scored.frame["y"].to_numpy()[scored.ends[:, None] + np.arange(HORIZON)]
    expected = metrics_table(
        y,
        {"auto_theta": theta.predict(scored.frame, scored.ends)},
        scored.unique_ids,
        scored.scales,
        {"auto_theta": theta.predict_quantiles(scored.frame, scored.ends)},
        (0.1, 0.5, 0.9),
    )
    got = metrics[metrics["model"] == "auto_theta"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert got["spl"].notna().all() and got["coverage_80"].between(0, 1).all()
    # The point challenger has no quantiles: NaN there.
    assert metrics.loc[metrics["model"] == "lstm", "spl"].isna().all()


def test_a_sampled_baselines_quantiles_and_the_challengers_on_the_sample() -> None:
    ids = ["s0", "s1", "s2", "s3"]
    data = evaluation(ids)
    theta = StatsForecastModel("auto_theta", HORIZON, SEASON, quantiles=(0.1, 0.5, 0.9))
    metrics, _, _, scored, sample = evaluate_forecasters(
        data, ConstantBand(60.0, 5.0), [theta], budget=BaselineBudget(budget_s=1e-6, seed=5)
    )
    assert sample.sampled and sample.series == 1
    keep = scored.unique_ids == series_order(ids, 5)[0]
    y = scored.frame["y"].to_numpy()[scored.ends[keep][:, None] + np.arange(HORIZON)]
    band = np.stack([np.full_like(y, 55.0), np.full_like(y, 60.0), np.full_like(y, 65.0)], axis=2)
    on_sample = metrics[
        (metrics["model"] == CHALLENGER_ON_BASELINE_SAMPLE) & (metrics["unique_id"] == OVERALL)
    ].iloc[0]
    # Scale 2.0 for every series in `evaluation`.
    assert on_sample["spl"] == pytest.approx(pinball_loss(y, band, (0.1, 0.5, 0.9)) / 2.0)
    assert on_sample["coverage_80"] == pytest.approx(((y >= 55) & (y <= 65)).mean())
    theta_rows = metrics[metrics["model"] == "auto_theta"]
    assert theta_rows["spl"].notna().all()
    assert len(theta_rows) == 2  # the sampled series and the overall row
