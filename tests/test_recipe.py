"""The forecasting recipe's building blocks (issue 9): window-local scaling, the seasonal-naive
reference, non-crossing quantiles, the seed ensemble and future-known inputs.

Each test checks a property that holds by construction, on untrained or hand-set models, so it
needs no training and cannot pass by luck of an optimizer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_model.baselines import seasonal_naive_forecast
from lstm_model.forecasters import ScaledModelForecaster, SeasonalNaive, model_forecaster
from lstm_model.models import (
    ModelSpec,
    build_model,
    calibrated,
    calibration_factors,
    serving_model,
)
from lstm_model.scaling import fit_scaler
from lstm_model.serialization import load_model, save_model

LOOK_BACK, HORIZON, SEASON = 14, 7, 7
QUANTILES = (0.1, 0.5, 0.9)


def windows(n: int = 32, features: int = 3, seed: int = 0, rows: int = LOOK_BACK) -> np.ndarray:
    """Random windows at very different levels and spreads, as real panels have."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(-1e3, 1e4, size=(n, 1, 1))
    spread = rng.uniform(1e-2, 1e3, size=(n, 1, 1))
    return (level + spread * rng.normal(size=(n, rows, features))).astype(np.float32)


def test_window_normalization_round_trips_exactly() -> None:
    from lstm_model.layers import Rescale, WindowNormalization

    past = windows()
    normalized, level, spread = WindowNormalization()(past)
    normalized, level, spread = (np.asarray(t) for t in (normalized, level, spread))
    # Each window's target is centred and scaled by its own statistics, covariates untouched.
    np.testing.assert_allclose(normalized[:, :, 0].mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalized[:, :, 0].std(axis=1), 1.0, rtol=1e-3)
    np.testing.assert_array_equal(normalized[:, :, 1:], past[:, :, 1:])
    back = np.asarray(Rescale()([level, spread, normalized[:, :, 0]]))
    np.testing.assert_allclose(back, past[:, :, 0], rtol=1e-6, atol=1e-6 * np.abs(past).max())
    # A constant window (a closed station's zeros) maps to zeros and back to itself.
    constant = np.full((2, LOOK_BACK, 1), 5.0, dtype=np.float32)
    flat, level, spread = (np.asarray(t) for t in WindowNormalization()(constant))
    np.testing.assert_array_equal(flat, 0.0)
    np.testing.assert_array_equal(np.asarray(Rescale()([level, spread, flat[:, :, 0]])), 5.0)


def test_a_window_normalized_model_follows_the_level_and_scale_of_its_window() -> None:
    """f(a * x + b) = a * f(x) + b on the target: today's level, not the training era's."""
    spec = ModelSpec("multivariate", LOOK_BACK, HORIZON, 1, units=(4,), normalization="window")
    model = build_model(spec, seed=3)
    past = windows(features=1, seed=1)
    shifted = (past * 3.0 + 250.0).astype(np.float32)
    expected = model.predict(past, verbose=0) * 3.0 + 250.0
    np.testing.assert_allclose(model.predict(shifted, verbose=0), expected, rtol=1e-4, atol=1e-2)


RECIPES = {
    "series point": {},
    "window point": {"normalization": "window"},
    "window quantiles": {"normalization": "window", "loss": "pinball", "quantiles": QUANTILES},
    "window quantiles ensemble": {
        "normalization": "window",
        "loss": "pinball",
        "quantiles": QUANTILES,
        "ensemble_size": 3,
    },
    "future inputs": {
        "normalization": "window",
        "loss": "pinball",
        "quantiles": QUANTILES,
        "future_features": (2,),
    },
}


@pytest.mark.parametrize("recipe", RECIPES, ids=list(RECIPES))
def test_the_reference_plus_a_zero_correction_is_seasonal_naive_exactly(recipe: str) -> None:
    spec = ModelSpec(
        "multivariate",
        LOOK_BACK,
        HORIZON,
        3,
        units=(4,),
        reference_season=SEASON,
        **RECIPES[recipe],
    )
    model = serving_model(build_model(spec, seed=5), spec)
    inputs = windows(rows=spec.input_rows)
    output = model.predict(inputs, verbose=0)
    median = output[:, :, QUANTILES.index(0.5)] if spec.quantiles else output
    expected = seasonal_naive_forecast(inputs[:, :LOOK_BACK, 0], HORIZON, SEASON)
    np.testing.assert_array_equal(median, expected.astype(np.float32))


def test_the_untrained_model_forecasts_seasonal_naive_through_the_pipeline_forecaster() -> None:
    """Scaled with the per-series scaler and back, the untrained model is seasonal naive."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(["a", "b"], 60),
            "ds": np.tile(pd.date_range("2026-01-01", periods=60, freq="D"), 2),
            "y": np.concatenate([rng.gamma(2, 50, 60), 1e4 + rng.normal(0, 5, 60)]),
        }
    )
    spec = ModelSpec(
        "multivariate",
        LOOK_BACK,
        HORIZON,
        1,
        units=(4,),
        reference_season=SEASON,
        normalization="window",
        loss="pinball",
        quantiles=QUANTILES,
        ensemble_size=2,
    )
    model = serving_model(build_model(spec, seed=1), spec)
    forecaster = model_forecaster(model, fit_scaler(frame, ["y"]), ["y"], spec)
    ends = np.array([30, 50, 90, 113])
    expected = SeasonalNaive(HORIZON, SEASON).predict(frame, ends)
    np.testing.assert_allclose(forecaster.predict(frame, ends), expected, rtol=1e-6)


@pytest.mark.parametrize("ensemble_size", [1, 3])
def test_quantiles_never_cross_whatever_the_weights(ensemble_size: int) -> None:
    spec = ModelSpec(
        "multivariate",
        LOOK_BACK,
        HORIZON,
        3,
        units=(4,),
        normalization="window",
        loss="pinball",
        quantiles=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95),
        ensemble_size=ensemble_size,
    )
    model = build_model(spec, seed=2)
    served = serving_model(model, spec)
    rng = np.random.default_rng(4)
    for _ in range(3):  # wild weights: large random kernels and biases everywhere
        model.set_weights([rng.normal(0, 3, w.shape).astype(np.float32) for w in model.weights])
        output = served.predict(windows(seed=int(rng.integers(1000))), verbose=0)
        assert output.shape == (32, HORIZON, 7)
        assert np.all(np.diff(output, axis=2) >= 0)
        assert np.all(np.isfinite(output))


def echo_model(spec: ModelSpec):  # noqa: ANN201 - a Keras model
    """A model whose forecast is the future feature itself: the LSTM's contribution is zeroed
    and the head copies future step h to output step h."""
    model = build_model(spec, seed=0)
    head = model.get_layer("forecast")
    kernel, bias = head.get_weights()
    kernel[:] = 0.0
    units = spec.units[-1]
    for step in range(spec.horizon):
        kernel[units + step, step] = 1.0  # inputs: LSTM state, then the flattened future rows
    head.set_weights([kernel, np.zeros_like(bias)])
    return model


def test_future_covariates_reach_the_horizon_inputs_and_nothing_else_does() -> None:
    """A model that echoes a future feature forecasts it; the target in the horizon rows (the
    future being forecast) never reaches the output."""
    rng = np.random.default_rng(9)
    days = 80
    planned = rng.integers(0, 2, size=2 * days).astype(float) * 100.0  # e.g. a planned event
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(["a", "b"], days),
            "ds": np.tile(pd.date_range("2026-01-01", periods=days, freq="D"), 2),
            "y": planned,  # the target happens to be the planned feature: echo must give it
            "event": planned,
            "weather": rng.normal(size=2 * days),
        }
    )
    features = ["y", "weather", "event"]
    spec = ModelSpec("multivariate", LOOK_BACK, HORIZON, 3, units=(4,), future_features=(2,))
    forecaster = model_forecaster(echo_model(spec), fit_scaler(frame, features), features, spec)
    assert isinstance(forecaster, ScaledModelForecaster)
    assert forecaster.future_features == ("event",) and forecaster.input_rows == 21
    # The horizon rows must exist within the origin's series (a's rows are 0-79, b's 80-159).
    ends = np.array([20, 40, 60, 100, 78, 155])
    assert forecaster.supports(frame, ends).tolist() == [True] * 4 + [False] * 2
    ends = np.array([20, 60, 100, 140])  # no window's past overlaps another's horizon
    rows = ends[:, None] + np.arange(HORIZON)
    np.testing.assert_allclose(forecaster.predict(frame, ends), planned[rows], atol=1e-4)
    # Scrambling the horizon rows' target and observed covariate changes nothing ...
    tampered = frame.copy()
    horizon_rows = rows.reshape(-1)
    tampered.loc[horizon_rows, "y"] = np.nan
    tampered.loc[horizon_rows, "weather"] = 1e6
    np.testing.assert_array_equal(
        forecaster.predict(tampered, ends), forecaster.predict(frame, ends)
    )
    # ... while changing the future-known feature changes the forecast accordingly.
    tampered.loc[horizon_rows, "event"] = 100.0 - tampered.loc[horizon_rows, "event"]
    np.testing.assert_allclose(forecaster.predict(tampered, ends), 100.0 - planned[rows], atol=1e-4)


def test_every_recipe_saves_and_loads_in_safe_mode(tmp_path) -> None:  # noqa: ANN001
    spec = ModelSpec(
        "stacked",
        LOOK_BACK,
        HORIZON,
        3,
        units=(4, 3),
        reference_season=SEASON,
        normalization="window",
        loss="pinball",
        quantiles=QUANTILES,
        ensemble_size=2,
        future_features=(1, 2),
    )
    model = serving_model(build_model(spec, seed=1), spec)
    inputs = windows(rows=spec.input_rows)
    path = save_model(model, tmp_path / "model.keras")
    np.testing.assert_array_equal(
        load_model(path).predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )


def test_an_ensemble_trains_its_members_separately_and_serves_their_median() -> None:
    spec = ModelSpec(
        "multivariate",
        LOOK_BACK,
        HORIZON,
        1,
        units=(4,),
        normalization="window",
        loss="pinball",
        quantiles=QUANTILES,
        ensemble_size=3,
    )
    model = build_model(spec, seed=0)
    inputs = windows(features=1)
    members = model.predict(inputs, verbose=0)
    assert members.shape == (32, 3, HORIZON, 3)
    # Members start from different weights (their own seeds), so they disagree ...
    model.fit(inputs, inputs[:, -HORIZON:, 0], epochs=1, verbose=0)
    members = model.predict(inputs, verbose=0)
    assert not np.allclose(members[:, 0], members[:, 1])
    # ... and the served forecast is their median.
    served = serving_model(model, spec).predict(inputs, verbose=0)
    np.testing.assert_allclose(served, np.median(members, axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loss": "pinball"}, "pinball loss and quantiles go together"),
        ({"quantiles": (0.1, 0.9)}, "pinball loss and quantiles go together"),
        ({"loss": "pinball", "quantiles": (0.1, 0.9)}, "include 0.5"),
        ({"loss": "pinball", "quantiles": (0.5, 1.0)}, "lie in (0, 1)"),
        ({"future_features": (0,)}, "column 0 is the target"),
        ({"ensemble_size": 0}, "ensemble_size"),
        ({"normalization": "global"}, "normalization"),
    ],
)
def test_bad_recipe_specs_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelSpec(n_features=3, **fields)


def test_calibration_factors_make_held_out_coverage_nominal() -> None:
    """Intervals half as wide as they should be get stretched back: after calibration, a share
    q of the actuals lies at or below quantile q (on the windows measured), whatever each
    window's level and scale."""
    rng = np.random.default_rng(0)
    n, horizon = 4000, 3
    level = rng.uniform(-50, 500, size=(n, 1))
    scale = rng.uniform(0.5, 20, size=(n, 1))
    actual = level + scale * rng.normal(size=(n, horizon))
    z90 = 1.2815515655446004  # the standard normal's 0.9 quantile
    too_narrow = np.stack(
        [level - 0.5 * z90 * scale, level, level + 0.5 * z90 * scale], axis=2
    ) * np.ones((1, horizon, 1))
    factors = calibration_factors(actual, too_narrow, QUANTILES)
    assert factors[1] == 1.0
    np.testing.assert_allclose(factors[[0, 2]], 2.0, rtol=0.08)
    median = too_narrow[:, :, 1:2]
    fixed = median + (too_narrow - median) * factors
    for k, q in enumerate(QUANTILES):
        assert abs(np.mean(actual <= fixed[:, :, k]) - q) < 0.005
    # A quantile that collapsed onto the median keeps factor 1 instead of dividing by zero.
    flat = np.repeat(level[:, :, None], 3, axis=2) * np.ones((1, horizon, 1))
    assert calibration_factors(actual, flat, QUANTILES).tolist() == [1.0, 1.0, 1.0]


def test_a_calibrated_model_scales_around_the_median_and_never_crosses() -> None:
    spec = ModelSpec(
        "multivariate",
        LOOK_BACK,
        HORIZON,
        1,
        units=(4,),
        normalization="window",
        loss="pinball",
        quantiles=QUANTILES,
    )
    model = build_model(spec, seed=0)
    inputs = windows(features=1)
    raw = model.predict(inputs, verbose=0)
    stretched = calibrated(model, spec, [2.5, 1.0, 0.0]).predict(inputs, verbose=0)
    median = raw[:, :, 1:2]
    np.testing.assert_allclose(stretched[:, :, 1], raw[:, :, 1])
    np.testing.assert_allclose(
        stretched[:, :, 0], (median + 2.5 * (raw - median))[:, :, 0], rtol=1e-5
    )
    np.testing.assert_allclose(stretched[:, :, 2], raw[:, :, 1])  # factor 0: onto the median
    assert np.all(np.diff(stretched, axis=2) >= 0)
