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
    interval_coverage,
    mae,
    mase,
    metrics_table,
    pinball_loss,
    quantile_metric_columns,
    quantile_positions,
    rmse,
    scaled_pinball_loss,
    seasonal_naive_scale,
    seasonal_naive_scales,
    smape,
    symmetric_intervals,
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


def test_a_series_with_a_flat_history_makes_overall_mase_nan_not_a_mean_of_the_others():
    scales = pd.Series({"flat": 0.0, "short": np.nan, "ok": 2.0})
    table = metrics_table(
        np.array([[1.0], [2.0], [3.0]]),
        {"m": np.array([[2.0], [4.0], [3.0]])},
        np.array(["flat", "ok", "short"]),
        scales,
    ).set_index("unique_id")
    assert math.isnan(table.loc["flat", "mase"]) and math.isnan(table.loc["short", "mase"])
    assert table.loc["ok", "mase"] == pytest.approx(2.0 / 2.0)
    assert math.isnan(table.loc[OVERALL, "mase"])  # issue 10: never silently left out


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


# -- probabilistic forecasts -----------------------------------------------------------------
QUANTILES = (0.1, 0.5, 0.9)
ACTUAL = np.array([[10.0, 0.0]])
# Per step, the 0.1, 0.5 and 0.9 quantiles.
QUANTILE_FORECAST = np.array([[[8.0, 11.0, 13.0], [-1.0, 0.0, 5.0]]])


def test_pinball_loss_by_hand():
    # Step 1, actual 10: q 0.1 at 8 is 2 below it -> 0.1 * 2; q 0.5 at 11 is 1 above -> 0.5 * 1;
    # q 0.9 at 13 is 3 above -> (1 - 0.9) * 3. Step 2, actual 0: 0.1 * 1, 0, (1 - 0.9) * 5.
    step1 = (0.1 * 2 + 0.5 * 1 + 0.1 * 3) / 3
    step2 = (0.1 * 1 + 0.0 + 0.1 * 5) / 3
    assert pinball_loss(ACTUAL, QUANTILE_FORECAST, QUANTILES) == pytest.approx((step1 + step2) / 2)
    # The median alone is half the absolute error.
    assert pinball_loss(ACTUAL, QUANTILE_FORECAST[..., 1:2], [0.5]) == pytest.approx(0.25)
    insample = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])  # season 2 scale 7/4
    scaled = scaled_pinball_loss(ACTUAL, QUANTILE_FORECAST, QUANTILES, insample, 2)
    assert scaled == pytest.approx((step1 + step2) / 2 / (7 / 4))


def test_quantiles_of_a_perfect_forecast_lose_nothing_and_cover_everything():
    perfect = np.repeat(ACTUAL[..., None], 3, axis=2)
    assert pinball_loss(ACTUAL, perfect, QUANTILES) == 0.0
    table = metrics_table(
        ACTUAL, {"m": ACTUAL}, np.array(["a"]), {"a": 2.0}, {"m": perfect}, QUANTILES
    )
    assert (table["spl"] == 0).all() and (table["coverage_80"] == 1).all()


def test_pinball_loss_checks_shapes_and_quantiles():
    with pytest.raises(ValueError, match="by 2 quantiles"):
        pinball_loss(ACTUAL, QUANTILE_FORECAST, [0.1, 0.9])
    with pytest.raises(ValueError, match="increase strictly"):
        pinball_loss(ACTUAL, QUANTILE_FORECAST, [0.9, 0.5, 0.1])


def test_interval_coverage_matches_a_hand_count():
    actual = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    lower = np.array([[0.0, 2.0, 4.0], [5.0, 0.0, 5.0]])
    upper = np.array([[2.0, 2.0, 5.0], [6.0, 9.0, 5.0]])
    # 1 in [0, 2] yes; 2 in [2, 2] yes (bounds count); 3 in [4, 5] no; 4 in [5, 6] no;
    # NaN left out; 6 in [5, 5] no -> 2 of 5 finite actuals.
    assert interval_coverage(actual, lower, upper) == pytest.approx(2 / 5)
    assert math.isnan(interval_coverage(np.array([np.nan]), np.array([0.0]), np.array([1.0])))
    # A NaN bound at a finite actual is a NaN forecast: NaN, as MAE would be.
    assert math.isnan(interval_coverage(np.array([1.0]), np.array([np.nan]), np.array([2.0])))


def test_symmetric_quantile_pairs_name_the_coverage_columns():
    pairs = symmetric_intervals([0.025, 0.1, 0.2, 0.5, 0.9, 0.975])
    assert [(p.lower, p.upper, p.column) for p in pairs] == [
        (0.025, 0.975, "coverage_95"),
        (0.1, 0.9, "coverage_80"),
    ]
    assert quantile_metric_columns([0.1, 0.5, 0.9]) == ["spl", "coverage_80"]
    assert quantile_metric_columns([0.2, 0.5]) == ["spl"]  # 0.8 missing: no interval
    assert quantile_positions([0.1, 0.5, 0.9], [0.5, 0.9]).tolist() == [1, 2]
    assert quantile_positions([0.1, 0.5, 0.9], [0.05, 0.5]) is None


def test_metrics_table_scores_quantiles_per_series_over_the_mase_scale():
    y_true = np.array([[10.0, 0.0], [10.0, 0.0], [4.0, 4.0]])
    quantile_forecasts = np.concatenate(
        [QUANTILE_FORECAST, QUANTILE_FORECAST, [[[3.0, 4.0, 4.0], [0.0, 2.0, 6.0]]]]
    )
    unique_id = np.array(["a", "a", "b"])
    scales = {"a": 1.0, "b": 4.0}
    table = metrics_table(
        y_true,
        {"prob": quantile_forecasts[..., 1], "point": y_true},
        unique_id,
        scales,
        {"prob": quantile_forecasts},
        QUANTILES,
    )
    assert list(table.columns) == [*METRIC_COLUMNS, "spl", "coverage_80"]
    prob = table[table.model == "prob"].set_index("unique_id")
    a_loss = pinball_loss(y_true[:1], quantile_forecasts[:1], QUANTILES)
    # b: actual 4 and 4; quantiles (3, 4, 4): 0.1 * 1, 0, 0; (0, 2, 6): 0.1 * 4, 0.5 * 2, 0.1 * 2
    b_loss = (0.1 + 0.0 + 0.0 + 0.4 + 1.0 + 0.2) / 6
    assert prob.loc["a", "spl"] == pytest.approx(a_loss / 1.0)
    assert prob.loc["b", "spl"] == pytest.approx(b_loss / 4.0)
    # Overall, every window over its own series' scale, as MASE.
    assert prob.loc[OVERALL, "spl"] == pytest.approx((a_loss + a_loss + b_loss / 4.0) / 3)
    # 80% interval [q0.1, q0.9]: a: 10 in [8, 13] yes, 0 in [-1, 5] yes; b: 4 in [3, 4] yes,
    # 4 in [0, 6] yes -> all covered; the pooled overall too.
    assert (prob["coverage_80"] == 1.0).all()
    # The median-only part of SPL is half of MASE: a cross-check of the scale.
    median = metrics_table(
        y_true,
        {"m": quantile_forecasts[..., 1]},
        unique_id,
        scales,
        {"m": quantile_forecasts[..., 1:2]},
        [0.5],
    ).set_index("unique_id")
    np.testing.assert_allclose(median["spl"], median["mase"] / 2)
    # A point forecaster has no quantile metrics.
    point = table[table.model == "point"]
    assert point["spl"].isna().all() and point["coverage_80"].isna().all()


def test_metrics_table_counts_coverage_by_hand_and_pools_overall():
    y_true = np.array([[1.0, 5.0], [2.0, 2.0], [0.0, 9.0]])
    lower, upper = y_true - 1, y_true + 1
    lower[0, 1] = 6.0  # a's 5 below [6, 7]: out
    upper[2, 1] = 8.5  # b's 9 above [8, 8.5]: out
    quantile_forecasts = np.stack([lower, y_true, upper], axis=2)
    table = metrics_table(
        y_true,
        {"m": y_true},
        np.array(["a", "a", "b"]),
        {"a": 1.0, "b": 1.0},
        {"m": quantile_forecasts},
        QUANTILES,
    ).set_index("unique_id")
    assert table.loc["a", "coverage_80"] == pytest.approx(3 / 4)
    assert table.loc["b", "coverage_80"] == pytest.approx(1 / 2)
    assert table.loc[OVERALL, "coverage_80"] == pytest.approx(4 / 6)


def test_nan_quantile_forecasts_give_nan_metrics_as_nan_point_forecasts_do():
    y_true = np.array([[1.0], [2.0]])
    point = np.array([[1.0], [np.nan]])
    quantile_forecasts = np.stack([point - 1, point, point + 1], axis=2)
    table = metrics_table(
        y_true,
        {"m": point},
        np.array(["a", "b"]),
        {"a": 1.0, "b": 1.0},
        {"m": quantile_forecasts},
        QUANTILES,
    ).set_index("unique_id")
    for column in ("mase", "spl", "coverage_80"):
        assert np.isnan(table.loc["b", column]) and np.isnan(table.loc[OVERALL, column])
        assert not np.isnan(table.loc["a", column])


def test_metrics_table_checks_quantile_forecasts():
    args = (ACTUAL, {"m": ACTUAL}, np.array(["a"]), {"a": 1.0})
    with pytest.raises(ValueError, match="m: quantile forecasts"):
        metrics_table(*args, {"m": QUANTILE_FORECAST[..., :2]}, QUANTILES)
    with pytest.raises(ValueError, match="no point forecasts"):
        metrics_table(*args, {"other": QUANTILE_FORECAST}, QUANTILES)
