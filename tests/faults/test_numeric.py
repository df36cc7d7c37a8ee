"""Issue 10, failure 2: non-finite or absurd numbers never reach a model, a score or a forecast.

A 1e300 / -1e300 pair (or a 1e39) in the real station data is refused by validation, naming the
row; with that check off, the scaler leaves the series out of training instead of saving an
infinite spread; a series without a score makes the overall MASE NaN and the evaluation fail
naming it; a scaler saved with infinite statistics sets its series aside in the forecast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.forecasters import ScaledModelForecaster
from lstm_model.metrics import OVERALL, metrics_table
from lstm_model.scaling import SeriesScaler
from tasks.config import PipelineConfig
from tasks.ingest import read_source
from tasks.normalize import normalize
from tasks.predict import predict_frame
from tasks.registry import ModelRegistry
from tasks.storage import ArtifactStore
from tasks.validate import DataValidationError, validate_frame
from tests.support import HORIZON, SERIES, small_config, write_small_source

STATION = "Austin"


def corrupted_source(folder: Path, values: dict[int, float]) -> Path:
    """The small real source with Austin's row `i` (in time order) set to `values[i]`."""
    path = write_small_source(folder)
    frame = pd.read_parquet(path)
    rows = frame.index[frame["series_id"] == STATION]
    for position, value in values.items():
        frame.loc[rows[position], "target"] = value
    frame.to_parquet(path, index=False)
    return path


def ingested(config: PipelineConfig) -> pd.DataFrame:
    return read_source(config.source)


def local_date(frame: pd.DataFrame, position: int) -> str:
    stamps = frame.loc[frame["unique_id"] == STATION, "ds"].sort_values()
    return stamps.iloc[position].tz_convert("America/Chicago").strftime("%Y-%m-%d")


def test_a_huge_pair_in_training_rows_fails_validation_naming_series_date_and_value(
    tmp_path: Path,
) -> None:
    config = small_config(corrupted_source(tmp_path, {10: 1e300, 11: -1e300}), tmp_path / "s")
    frame = ingested(config)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, config, "stations.parquet")
    message = str(caught.value)
    assert "max_magnitude_ratio" in message
    assert f"series {STATION!r} at {local_date(frame, 10)} (y=1e+300" in message
    assert f"series {STATION!r} at {local_date(frame, 11)} (y=-1e+300" in message
    check = next(c for c in caught.value.report.failures if c.name.startswith("values_within"))
    assert check.unexpected_count == 2


def test_a_1e39_in_test_rows_fails_validation(tmp_path: Path) -> None:
    config = small_config(corrupted_source(tmp_path, {-5: 1e39}), tmp_path / "s")
    frame = ingested(config)
    with pytest.raises(DataValidationError, match=r"'Austin' at .*\(y=1e\+39"):
        validate_frame(frame, config, "stations.parquet")


def test_a_forecast_sets_aside_a_series_with_an_absurd_value_and_goes_on(tmp_path: Path) -> None:
    config = small_config(corrupted_source(tmp_path, {-3: 1e39}), tmp_path / "s")
    validated, report = validate_frame(ingested(config), config, "stations.parquet", "forecast")
    assert "y absurdly far from its median" in report.set_aside[STATION]
    assert set(validated["unique_id"]) == set(SERIES) - {STATION}


def test_the_bundled_station_data_has_no_absurd_value(tmp_path: Path) -> None:
    # The default ratio leaves real data alone: 300 days of three stations, trends and holidays.
    config = small_config(write_small_source(tmp_path), tmp_path / "s")
    _, report = validate_frame(ingested(config), config, "stations.parquet")
    assert report.passed


def test_normalize_leaves_out_a_series_whose_spread_overflows(tmp_path: Path) -> None:
    # The pair planted after validation: the scaler is the guard of its own, whatever passed.
    config = small_config(write_small_source(tmp_path), tmp_path / "s")
    validated, _ = validate_frame(ingested(config), config, "stations.parquet")
    rows = validated.index[validated["unique_id"] == STATION]
    validated.loc[rows[10], "y"], validated.loc[rows[11], "y"] = 1e300, -1e300
    normalized, scaler = normalize(validated, config)
    assert STATION not in scaler.series and STATION not in set(scaler.unique_ids)
    assert np.isfinite(scaler.offset).all() and np.isfinite(scaler.scale).all()
    assert set(normalized["unique_id"]) == set(SERIES) - {STATION}
    features = [c for c in normalized.columns if c not in ("unique_id", "ds", "split")]
    assert np.isfinite(normalized[features].to_numpy(dtype=np.float64)).all()


def test_fit_scaler_computes_the_spread_of_huge_values_without_overflow() -> None:
    from lstm_model.scaling import MAX_STATISTIC, fit_usable_scaler

    frame = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 4, "y": [1.0, 2.0, 3.0, 4.0, 1e300, -1e300, 0.0, 0.0]}
    )
    scaler, unusable = fit_usable_scaler(frame, ["y"])
    assert scaler.series == ("a",)
    # std of (1e300, -1e300, 0, 0) is 7.07e299, not the inf of squaring 1e300
    assert "scale of 7.07e+299, beyond" in unusable["b"] and f"{MAX_STATISTIC:g}" in unusable["b"]


def test_a_series_without_a_score_makes_the_overall_mase_nan() -> None:
    table = metrics_table(
        np.array([[1.0], [2.0]]),
        {"lstm": np.array([[2.0], [4.0]])},
        np.array(["good", "broken"]),
        {"good": 1.0, "broken": math.inf},
    ).set_index("unique_id")
    assert table.loc["good", "mase"] == pytest.approx(1.0)
    assert math.isnan(table.loc["broken", "mase"])
    assert math.isnan(table.loc[OVERALL, "mase"])  # not 1.0, the mean over "good" alone


def test_the_evaluation_fails_naming_each_series_without_a_score() -> None:
    from tasks.evaluate import require_scores

    table = metrics_table(
        np.array([[1.0], [2.0], [3.0]]),
        {"lstm": np.array([[2.0], [np.inf], [3.0]]), "naive": np.array([[1.0], [2.0], [3.0]])},
        np.array(["good", "broken", "flat"]),
        {"good": 1.0, "broken": 1.0, "flat": 0.0},
    )
    with pytest.raises(ValueError, match="2 test series have no finite MASE") as caught:
        require_scores(table, pd.Series({"good": 1.0, "broken": 1.0, "flat": 0.0}), ["lstm"])
    assert "'broken': the lstm forecast is not finite" in str(caught.value)
    assert "'flat': constant training rows (seasonal-naive scale 0)" in str(caught.value)


class Zeros:
    """A model whose scaled output is 0 for every step: the forecast is each series' offset."""

    def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
        return np.zeros((len(inputs), HORIZON))


def test_a_saved_scaler_with_an_infinite_spread_sets_its_series_aside(tmp_path: Path) -> None:
    # What main saved with the model for the 1e300 pair: an infinite scale for that series.
    config = small_config(write_small_source(tmp_path), tmp_path / "s")
    validated, _ = validate_frame(ingested(config), config, "stations.parquet", "forecast")
    ids = np.asarray(sorted(SERIES))
    scaler = SeriesScaler(
        "standard",
        ("y",),
        ids,
        offset=np.array([[2.0], [15.0], [3.0]]),
        scale=np.array([[math.inf], [7.0], [1.0]]),
    )
    forecaster = ScaledModelForecaster(Zeros(), scaler, ["y"], look_back=14, horizon=HORIZON)
    table, skipped = predict_frame(
        validated, forecaster, "D", "America/Chicago", model_version="v-old"
    )
    assert np.isfinite(table["yhat"].to_numpy()).all()
    assert set(table["unique_id"]) == set(SERIES) - {STATION}
    assert "scale of inf (not finite)" in skipped[STATION]


@pytest.mark.usefixtures("prefect_harness")
def test_a_series_in_absurd_units_is_left_out_of_training_and_the_forecast_is_finite(
    tmp_path: Path,
) -> None:
    # Austin in units 1e200 times too small: no value is odd for its own series, so validation
    # passes it, but its statistics (a mean of 2e200, a spread whose square overflows) cannot be
    # used: training goes on without it, and the night forecasts the others, all finite.
    from flows.forecasting import forecast_flow
    from flows.training import training_flow

    path = write_small_source(tmp_path / "data")
    frame = pd.read_parquet(path)
    frame.loc[frame["series_id"] == STATION, "target"] *= 1e200
    frame.to_parquet(path, index=False)
    config = small_config(path, tmp_path / "store")
    registration = training_flow(config, "2016-08-15")
    assert registration.promoted, registration.reason
    store = ArtifactStore(config.storage.root)
    scaler = ModelRegistry(store, config.name).load(registration.version).scaler
    assert np.isfinite(scaler.scale).all() and STATION not in scaler.series
    normalized_meta = store.read_metadata(registration.artifacts["normalize"])
    assert "beyond 1e+30 (absurd training values)" in normalized_meta["series_left_out"][STATION]

    summary = forecast_flow(config, "2016-08-15")
    forecast = pd.read_parquet(summary.uri)
    assert np.isfinite(forecast["yhat"].to_numpy()).all()
    assert STATION not in set(forecast["unique_id"]) and STATION in summary.skipped
