"""Evaluation on known forecasters: every number checked against a hand computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from lstm_model.forecasters import (
    Naive,
    ScaledModelForecaster,
    SeasonalNaive,
    forecast_quantiles_of,
    history_available,
    quantile_column,
)
from lstm_model.metrics import OVERALL
from lstm_model.scaling import fit_scaler
from tasks.config import PipelineConfig
from tasks.evaluate import (
    CHALLENGER_ON_CHAMPION_WINDOWS,
    CHAMPION,
    EvaluationData,
    configured_baselines,
    evaluate_forecasters,
    metrics_markdown,
)

HORIZON, LOOK_BACK, SEASON = 2, 4, 2


@dataclass(frozen=True)
class Constant:
    """Forecasts `value` for every step of every window."""

    value: float
    name: str = "lstm"
    look_back: int = LOOK_BACK
    horizon: int = HORIZON

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.ones(len(ends), dtype=bool)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.full((len(ends), self.horizon), self.value)


class LastValue:
    """A 'model' on scaled inputs: the last scaled target, repeated."""

    def predict(self, inputs: np.ndarray, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        return np.repeat(inputs[:, -1:, 0], HORIZON, axis=1)


def panel() -> pd.DataFrame:
    y = {"a": [1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 2.0, 4.0], "b": [10.0, 20.0, 10.0, 20.0, 10.0, 30.0]}
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range("2026-01-01", periods=len(values), tz="UTC"),
                "y": values,
            }
        )
        for uid, values in y.items()
    ]
    return pd.concat(parts, ignore_index=True)


def data() -> EvaluationData:
    frame = panel()
    # Windows: a ends at rows 4 and 6 (targets rows 4-5 and 6-7), b at row 12 (rows 12-13).
    return EvaluationData(
        frame=frame,
        ends=np.array([4, 6, 12]),
        scales=pd.Series({"a": 2.0, "b": 10.0}),
        look_back=LOOK_BACK,
    )


def overall(metrics: pd.DataFrame, model: str, column: str = "mase") -> float:
    row = metrics[(metrics["model"] == model) & (metrics["unique_id"] == OVERALL)]
    return float(row[column].iloc[0])


def test_metrics_match_a_hand_computation() -> None:
    metrics, forecasts, comparison, scored, _ = evaluate_forecasters(
        data(), Constant(2.0), [Naive(HORIZON), SeasonalNaive(HORIZON, SEASON)]
    )
    # Actuals: a [1, 3], a [2, 4], b [10, 30]; seasonal naive (season 2): a [1, 3], [1, 3],
    # b [10, 20]; naive: a [3, 3], [3, 3], b [20, 20]; the constant 2 everywhere.
    np.testing.assert_array_equal(forecasts["seasonal_naive"], [[1, 3], [1, 3], [10, 20]])
    np.testing.assert_array_equal(forecasts["naive"], [[3, 3], [3, 3], [20, 20]])
    # MASE averages each window's MAE over its series' scale: (1/2 + 1/2 + 18/10) / 3.
    assert overall(metrics, "lstm") == pytest.approx((0.5 + 0.5 + 1.8) / 3)
    assert overall(metrics, "seasonal_naive") == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert overall(metrics, "naive") == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert overall(metrics, "lstm", "mae") == pytest.approx((1 + 1 + 1 + 1 + 8 + 28) / 6)
    assert comparison.version is None and not comparison.comparable
    assert len(scored.ends) == 3


def test_the_champion_is_scored_on_the_windows_it_can_forecast() -> None:
    frame = panel()
    # The champion's scaler never saw series "b": it cannot forecast b's window.
    scaler = fit_scaler(frame[frame["unique_id"] == "a"].head(4), ["y"], "standard")
    champion = ScaledModelForecaster(
        LastValue(), scaler, ["y"], LOOK_BACK, HORIZON, name="champion"
    )
    metrics, _, comparison, _, _ = evaluate_forecasters(
        data(), Constant(2.0), [SeasonalNaive(HORIZON, SEASON)], champion, "v1"
    )
    assert comparison.comparable and comparison.version == "v1"
    assert (comparison.windows, comparison.total_windows) == (2, 3)
    assert "['b']" in comparison.note
    # Last values of a before each origin: 3 (row 3) and 3 (row 5), in original units.
    champion_mae = (abs(3 - 1) + abs(3 - 3) + abs(3 - 2) + abs(3 - 4)) / 4
    assert overall(metrics, CHAMPION, "mae") == pytest.approx(champion_mae)
    assert overall(metrics, CHAMPION) == pytest.approx((1.0 / 2 + 1.0 / 2) / 2)
    # The challenger is compared on exactly those two windows of "a".
    assert overall(metrics, CHALLENGER_ON_CHAMPION_WINDOWS) == pytest.approx(0.5)
    rows = metrics[metrics["model"] == CHAMPION]
    assert set(rows["unique_id"]) == {"a", OVERALL}


def test_a_champion_with_another_horizon_or_no_series_is_incomparable() -> None:
    frame = panel()
    scaler = fit_scaler(frame[frame["unique_id"] == "a"].head(4), ["y"], "standard")
    longer = ScaledModelForecaster(LastValue(), scaler, ["y"], LOOK_BACK, HORIZON + 1)
    _, _, comparison, _, _ = evaluate_forecasters(data(), Constant(2.0), [], longer, "v1")
    assert not comparison.comparable
    assert comparison.note == f"champion forecasts {HORIZON + 1} steps, the challenger {HORIZON}"
    other = fit_scaler(pd.DataFrame({"unique_id": ["z", "z"], "y": [1.0, 2.0]}), ["y"])
    stranger = ScaledModelForecaster(LastValue(), other, ["y"], LOOK_BACK, HORIZON)
    metrics, _, comparison, _, _ = evaluate_forecasters(data(), Constant(2.0), [], stranger, "v2")
    assert not comparison.comparable and "cannot forecast any test window" in comparison.note
    assert CHAMPION not in set(metrics["model"])


def test_windows_without_a_season_of_history_are_left_out_for_every_model() -> None:
    # A season of 6 needs 6 rows before the origin: only a's second window (end 6) and b's
    # window (end 12, b starts at row 8: 4 rows) -> only end 6 is kept.
    metrics, forecasts, _, scored, _ = evaluate_forecasters(
        data(), Constant(2.0), [SeasonalNaive(HORIZON, 6)]
    )
    assert scored.ends.tolist() == [6]
    assert forecasts["lstm"].shape == (1, HORIZON)
    assert set(metrics["unique_id"]) == {"a", OVERALL}


@dataclass(frozen=True)
class SeasonalBand:
    """A fake probabilistic forecaster: the median is seasonal naive, the quantiles are the
    median plus `offsets` (one per quantile) times `spread`."""

    spread: float = 1.0
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    offsets: tuple[float, ...] = (-1.0, 0.0, 1.0)
    name: str = "lstm"
    horizon: int = HORIZON
    look_back: int = SEASON
    only_series: str | None = None  # forecasts this series' windows only (a narrow champion)

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        ok = history_available(frame, ends, self.look_back)
        if self.only_series is not None:
            ok &= frame["unique_id"].iloc[np.asarray(ends) - 1].to_numpy() == self.only_series
        return ok

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return SeasonalNaive(self.horizon, SEASON).predict(frame, ends)

    def predict_quantiles(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        offsets = self.spread * np.asarray(self.offsets)
        return self.predict(frame, ends)[..., None] + offsets


# Actuals a [1, 3], a [2, 4], b [10, 30]; seasonal naive a [1, 3], [1, 3], b [10, 20];
# quantiles 0.1 / 0.5 / 0.9 at median - 1, median, median + 1. Pinball per step, summed over
# the three quantiles (q (y - f) above f, (1 - q) (f - y) below):
#   y = median: 0.1 * 1 + 0 + 0.1 * 1 = 0.2;  y = median + 1: 0.1 * 2 + 0.5 * 1 + 0 = 0.7;
#   y = median + 10 (b's 30 against 20): 0.1 * 11 + 0.5 * 10 + 0.9 * 9 = 14.2.
WINDOW_PINBALL = np.array([(0.2 + 0.2) / 6, (0.7 + 0.7) / 6, (0.2 + 14.2) / 6])
WINDOW_SCALE = np.array([2.0, 2.0, 10.0])


def test_quantile_forecasts_are_scored_by_hand_and_point_forecasters_get_nan() -> None:
    metrics, forecasts, _, _, _ = evaluate_forecasters(
        data(), SeasonalBand(), [Naive(HORIZON), SeasonalNaive(HORIZON, SEASON)]
    )
    # The challenger's point forecast is its median.
    np.testing.assert_array_equal(forecasts["lstm"], [[1, 3], [1, 3], [10, 20]])
    assert overall(metrics, "lstm", "spl") == pytest.approx(np.mean(WINDOW_PINBALL / WINDOW_SCALE))
    rows = metrics[metrics["model"] == "lstm"].set_index("unique_id")
    assert rows.loc["a", "spl"] == pytest.approx(WINDOW_PINBALL[:2].mean() / 2.0)
    assert rows.loc["b", "spl"] == pytest.approx(WINDOW_PINBALL[2] / 10.0)
    # 80% interval: a's 1, 3, 2 (in [0, 2]: bounds count) and 4 (in [2, 4]) are inside;
    # b's 10 is, its 30 (against [19, 21]) is not -> a 1, b 1/2, overall 5/6.
    assert (rows.loc["a", "coverage_80"], rows.loc["b", "coverage_80"]) == (1.0, 0.5)
    assert overall(metrics, "lstm", "coverage_80") == pytest.approx(5 / 6)
    # The MASE side is untouched: the median is seasonal naive.
    assert overall(metrics, "lstm") == pytest.approx(overall(metrics, "seasonal_naive"))
    for point in ("naive", "seasonal_naive"):
        assert metrics.loc[metrics["model"] == point, ["spl", "coverage_80"]].isna().all().all()
    report = metrics_markdown(metrics, None)
    assert "| model | MAE | RMSE | sMAPE | MASE | SPL | 80% coverage |" in report
    lines = {line.split(" | ")[0]: line for line in report.splitlines() if line.startswith("| ")}
    assert lines["| seasonal_naive"].endswith(" | – | – |")  # a point forecaster
    assert f"| {overall(metrics, 'lstm', 'spl'):.4f} | 0.8333 |" in report


def test_wider_intervals_cover_more_and_the_evaluation_quantiles_can_be_chosen() -> None:
    band = SeasonalBand(
        quantiles=(0.025, 0.1, 0.5, 0.9, 0.975), offsets=(-12.0, -1.0, 0.0, 1.0, 12.0)
    )
    metrics, _, _, _, _ = evaluate_forecasters(data(), band, [])
    assert overall(metrics, "lstm", "coverage_95") == 1.0  # b's 30 lies in [8, 32]
    assert overall(metrics, "lstm", "coverage_80") == pytest.approx(5 / 6)
    # Scored on a subset of its quantiles, the challenger's SPL is that of the subset alone.
    narrow, _, _, _, _ = evaluate_forecasters(data(), band, [], quantiles=[0.1, 0.5, 0.9])
    assert "coverage_95" not in narrow.columns
    assert overall(narrow, "lstm", "spl") == pytest.approx(np.mean(WINDOW_PINBALL / WINDOW_SCALE))
    # A point challenger with no quantiles asked for: the table keeps its old columns.
    plain, _, _, _, _ = evaluate_forecasters(data(), Constant(2.0), [])
    assert "spl" not in plain.columns


def test_a_forecaster_without_the_evaluated_quantiles_is_not_scored_on_them() -> None:
    other = SeasonalBand(quantiles=(0.25, 0.5, 0.75), name="quartiles")
    metrics, _, _, _, _ = evaluate_forecasters(data(), SeasonalBand(), [other])
    assert not metrics.loc[metrics["model"] == "lstm", "spl"].isna().any()
    assert metrics.loc[metrics["model"] == "quartiles", "spl"].isna().all()


def test_the_champion_and_the_challenger_on_its_windows_get_quantile_metrics() -> None:
    champion = SeasonalBand(spread=2.0, name="champion", only_series="a")
    metrics, _, comparison, _, _ = evaluate_forecasters(data(), SeasonalBand(), [], champion, "v1")
    assert comparison.comparable and comparison.windows == 2
    # On a's two windows: the challenger's pinball is WINDOW_PINBALL[:2]; the champion's
    # quantiles sit 2 from the median: y = median: 0.1 * 2 * 2 = 0.4 per step; y = median + 1:
    # 0.1 * 3 + 0.5 * 1 + 0.1 * 1 = 0.9 per step.
    assert overall(metrics, CHALLENGER_ON_CHAMPION_WINDOWS, "spl") == pytest.approx(
        WINDOW_PINBALL[:2].mean() / 2.0
    )
    assert overall(metrics, CHAMPION, "spl") == pytest.approx((0.4 / 3 + 0.9 / 3) / 2 / 2.0)
    assert overall(metrics, CHAMPION, "coverage_80") == 1.0


def test_quantile_column_names_match_the_forecast_file() -> None:
    # The evaluation and the forecast file name quantiles the same way.
    assert [quantile_column(q) for q in SeasonalBand().quantiles] == [
        "yhat_q10",
        "yhat_q50",
        "yhat_q90",
    ]


def test_configured_statistical_baselines_forecast_the_models_quantiles() -> None:
    def config(**model: object) -> PipelineConfig:
        return PipelineConfig(
            source={"path": "x.parquet"},
            evaluation={"season_length": 7, "baselines": ["seasonal_naive", "auto_ets"]},
            model=model,
        )

    seasonal, ets = configured_baselines(config(quantiles=[0.9, 0.1, 0.5]), 3)
    assert forecast_quantiles_of(ets) == (0.1, 0.5, 0.9)
    assert forecast_quantiles_of(seasonal) == ()  # ours stays a point forecaster
    _, point_ets = configured_baselines(config(loss="mae"), 3)
    assert forecast_quantiles_of(point_ets) == ()  # a point model: no quantiles evaluated
