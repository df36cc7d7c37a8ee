"""Metrics and baselines against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstm_model.baselines import naive_forecast, seasonal_naive_forecast
from lstm_model.metrics import (
    METRIC_COLUMNS,
    OVERALL,
    mae,
    mase,
    metrics_table,
    rmse,
    seasonal_naive_scale,
    seasonal_naive_scales,
    smape,
)

Y = np.array([[1.0, 2.0], [3.0, 4.0]])
PRED = np.array([[2.0, 2.0], [3.0, 0.0]])  # errors 1, 0, 0, -4


def test_mae_and_rmse_by_hand():
    assert mae(Y, PRED) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert rmse(Y, PRED) == pytest.approx(math.sqrt((1 + 0 + 0 + 16) / 4))


def test_smape_is_percent_from_0_to_200_by_hand():
    # 200|e| / (|y| + |ŷ|): 200/3, 0, 0, 200 * 4 / 4
    assert smape(Y, PRED) == pytest.approx((200 / 3 + 0 + 0 + 200) / 4)
    assert smape([[1.0]], [[-1.0]]) == pytest.approx(200.0)  # the maximum
    assert smape([[5.0]], [[5.0]]) == 0.0


def test_smape_counts_zero_over_zero_as_a_perfect_point():
    with np.errstate(all="raise"):  # and no division warning on the way
        assert smape([[0.0, 2.0]], [[0.0, 0.0]]) == pytest.approx((0 + 200) / 2)


def test_shapes_must_match_and_not_be_empty():
    with pytest.raises(ValueError, match="shape"):
        mae(Y, PRED[:, :1])
    with pytest.raises(ValueError, match="no values"):
        rmse(np.empty((0, 2)), np.empty((0, 2)))


def test_mase_scale_is_the_in_sample_seasonal_naive_mae():
    insample = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    # season 2: |3-1|, |5-2|, |4-3|, |6-5| -> 7/4; season 1 (naive): 1, 1, 2, 1, 2 -> 7/5
    assert seasonal_naive_scale(insample, 2) == pytest.approx(7 / 4)
    assert seasonal_naive_scale(insample, 1) == pytest.approx(7 / 5)
    assert mase(Y, PRED, insample, 2) == pytest.approx((5 / 4) / (7 / 4))


def test_mase_of_a_constant_training_series_is_nan_not_inf():
    with np.errstate(all="raise"):
        assert math.isnan(mase(Y, PRED, np.ones(10), 7))


def test_mase_needs_more_than_a_season_of_history():
    with pytest.raises(ValueError, match="more than season"):
        seasonal_naive_scale(np.arange(7.0), 7)


def test_naive_repeats_the_last_value():
    inputs = np.array([[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])
    np.testing.assert_array_equal(naive_forecast(inputs, 2), [[3.0, 3.0], [9.0, 9.0]])


def test_seasonal_naive_repeats_the_last_season():
    inputs = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
    # season 3: the last season is 2, 3, 4; horizon 5 wraps around it
    np.testing.assert_array_equal(seasonal_naive_forecast(inputs, 5, 3), [[2, 3, 4, 2, 3]])
    np.testing.assert_array_equal(seasonal_naive_forecast(inputs, 2, 1), naive_forecast(inputs, 2))
    with pytest.raises(ValueError, match="look_back >= season"):
        seasonal_naive_forecast(inputs, 2, 6)


def test_metrics_table_is_tidy_per_series_and_overall_by_hand():
    y_true = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    forecasts = {
        "lstm": np.array([[2.0, 2.0], [3.0, 0.0], [10.0, 12.0]]),
        "naive": y_true.copy(),
    }
    unique_id = np.array(["a", "a", "b"])
    scales = {"a": 1.0, "b": 4.0}

    table = metrics_table(y_true, forecasts, unique_id, scales)

    assert list(table.columns) == METRIC_COLUMNS
    assert list(zip(table.model, table.unique_id, strict=True)) == [
        ("lstm", "a"),
        ("lstm", "b"),
        ("lstm", OVERALL),
        ("naive", "a"),
        ("naive", "b"),
        ("naive", OVERALL),
    ]
    lstm = table[table.model == "lstm"].set_index("unique_id")
    # series a: errors 1, 0, 0, 4 and naive scale 1; series b: errors 0, 2 and scale 4
    assert lstm.loc["a", "mae"] == pytest.approx(5 / 4)
    assert lstm.loc["a", "mase"] == pytest.approx(5 / 4)
    assert lstm.loc["b", "mase"] == pytest.approx(1 / 4)
    assert lstm.loc[OVERALL, "mae"] == pytest.approx(7 / 6)
    assert lstm.loc[OVERALL, "rmse"] == pytest.approx(math.sqrt(21 / 6))
    # every window counts once, scaled by its own series: (1/2 + 4/2) / 1 and (2/2) / 4
    assert lstm.loc[OVERALL, "mase"] == pytest.approx((0.5 / 1 + 2.0 / 1 + 1.0 / 4) / 3)
    assert (table[table.model == "naive"][["mae", "rmse", "smape", "mase"]] == 0).all().all()


def test_metrics_table_leaves_series_with_a_flat_history_out_of_overall_mase():
    scales = pd.Series({"flat": 0.0, "short": np.nan, "ok": 2.0})
    table = metrics_table(
        np.array([[1.0], [2.0], [3.0]]),
        {"m": np.array([[2.0], [4.0], [3.0]])},
        np.array(["flat", "ok", "short"]),
        scales,
    ).set_index("unique_id")
    assert math.isnan(table.loc["flat", "mase"]) and math.isnan(table.loc["short", "mase"])
    assert table.loc[OVERALL, "mase"] == pytest.approx(2.0 / 2.0)


def test_metrics_table_names_series_without_a_scale():
    with pytest.raises(KeyError, match="'b'"):
        metrics_table(np.ones((2, 1)), {"m": np.ones((2, 1))}, np.array(["a", "b"]), {"a": 1.0})


def test_seasonal_naive_scales_of_a_tidy_frame_match_the_single_series_scale():
    a = [1.0, 2.0, 3.0, 5.0, 4.0, 6.0]
    b = [0.0, 4.0, 8.0, 8.0]
    frame = pd.DataFrame({"unique_id": ["b"] * 4 + ["a"] * 6 + ["c"] * 2, "y": b + a + [1.0, 2.0]})
    scales = seasonal_naive_scales(frame, season=2)
    assert list(scales.index) == ["a", "b", "c"]
    assert scales["a"] == pytest.approx(seasonal_naive_scale(np.array(a), 2))
    assert scales["b"] == pytest.approx(seasonal_naive_scale(np.array(b), 2))
    assert math.isnan(scales["c"])  # no more than a season of history
