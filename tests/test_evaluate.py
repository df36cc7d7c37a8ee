"""Evaluation on known forecasters: every number checked against a hand computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from lstm_model.forecasters import Naive, ScaledModelForecaster, SeasonalNaive
from lstm_model.metrics import OVERALL
from lstm_model.scaling import fit_scaler
from tasks.evaluate import (
    CHALLENGER_ON_CHAMPION_WINDOWS,
    CHAMPION,
    EvaluationData,
    evaluate_forecasters,
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
