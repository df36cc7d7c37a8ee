"""Pure pieces of the predict step: who can be forecast, the future grid, the output table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.forecasters import (
    ScaledModelForecaster,
    SeasonalNaive,
    history_available,
    quantile_column,
)
from lstm_model.scaling import fit_scaler
from lstm_model.statistical import StatsForecastModel
from tasks.config import PipelineConfig
from tasks.predict import (
    FALLBACK_VERSION,
    NoChampionError,
    fallback_version,
    forecast_frame,
    forecastable,
    future_grid,
    predict_frame,
    predict_task,
    series_ends,
    serving_forecaster,
    summary_markdown,
)
from tasks.registry import ModelRegistry
from tasks.storage import ArtifactStore


def frame(lengths: dict[str, int]) -> pd.DataFrame:
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
                "y": np.arange(n, dtype=float),
            }
        )
        for uid, n in lengths.items()
    ]
    return pd.concat(parts, ignore_index=True)


class LastScaledValue:
    """A model whose output is known: each window's last scaled target, for every step."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon

    def predict(self, inputs: np.ndarray, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        return np.repeat(inputs[:, -1:, 0], self.horizon, axis=1)


def noisy_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
                "y": level + rng.standard_normal(n) * spread,
                "x": rng.uniform(0, 1, n),
            }
        )
        for uid, n, level, spread in (("a", 40, 1000.0, 50.0), ("b", 30, 3.0, 0.5))
    ]
    return pd.concat(parts, ignore_index=True)


def test_forecast_values_are_in_original_units() -> None:
    history = noisy_frame()
    # Fitted on the first rows only, so scaled and original values differ a lot.
    scaler = fit_scaler(history.groupby("unique_id").head(20), ["y", "x"], "standard")
    model = ScaledModelForecaster(LastScaledValue(3), scaler, ["y", "x"], look_back=5, horizon=3)
    table, skipped = predict_frame(history, model, "D", "UTC", model_version="v1")
    assert skipped == {}
    last = history.groupby("unique_id")["y"].last()  # computed independently of the model path
    for uid in ("a", "b"):
        rows = table[table["unique_id"] == uid]
        np.testing.assert_allclose(rows["yhat"], [last[uid]] * 3, rtol=1e-6)
        assert rows["ds"].iloc[0] == history.loc[history["unique_id"] == uid, "ds"].max() + (
            pd.Timedelta(days=1)
        )
    assert set(table["model"]) == {"lstm"} and not table["fallback"].any()


def test_unknown_and_short_series_are_skipped_with_reasons() -> None:
    scaler = fit_scaler(frame({"a": 20, "b": 20}), ["y"], "standard")
    model = ScaledModelForecaster(LastScaledValue(2), scaler, ["y"], look_back=10, horizon=2)
    history = frame({"a": 20, "b": 5, "c": 30})
    ids, ends = series_ends(history)
    lengths = np.diff(np.concatenate(([0], ends)))
    supported, skipped = forecastable(history, model, ids, ends, lengths)
    assert ids[supported].tolist() == ["a"] and ends[supported].tolist() == [20]
    assert skipped == {
        "b": "only 5 rows; the model needs 10",
        "c": "not in the champion's training data (retrain to include it)",
    }


def test_future_grid_follows_each_series_last_timestamp() -> None:
    last = pd.Series(pd.to_datetime(["2026-03-01", "2026-03-05"], utc=True), index=["a", "b"])
    grid = future_grid(last, horizon=3, frequency="D")
    assert grid.shape == (2, 3)
    assert pd.Timestamp(grid[1, 0]) == pd.Timestamp("2026-03-06")  # naive UTC
    assert pd.Timestamp(grid[0, 2]) == pd.Timestamp("2026-03-04")
    weekly = future_grid(last[:1], horizon=2, frequency="W-SUN")
    assert [pd.Timestamp(d).day_name() for d in weekly[0]] == ["Sunday", "Sunday"]


def test_forecast_frame_has_one_row_per_series_and_step() -> None:
    ids = np.array(["a", "b"], dtype=object)
    future = np.array(
        [
            pd.date_range("2026-01-01", periods=2).to_numpy(),
            pd.date_range("2026-02-01", periods=2).to_numpy(),
        ]
    )
    table = forecast_frame(
        ids,
        future,
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        model="lstm",
        model_version="v1",
        fallback=False,
    )
    # Nothing that changes between replays of a night (run id, wall-clock time) is in the file.
    assert list(table.columns) == [
        "unique_id",
        "ds",
        "step",
        "yhat",
        "model",
        "model_version",
        "fallback",
    ]
    assert table["unique_id"].tolist() == ["a", "a", "b", "b"]
    assert table["step"].tolist() == [1, 2, 1, 2]
    assert table["yhat"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert str(table["ds"].dt.tz) == "UTC"


def test_daily_grid_stays_at_local_midnight_across_daylight_saving() -> None:
    # Chicago midnight is 06:00 UTC in winter and 05:00 UTC from 2026-03-08 (DST starts).
    last = pd.Series(pd.to_datetime(["2026-03-07 06:00"], utc=True), index=["a"])
    grid = future_grid(last, horizon=3, frequency="D", timezone="America/Chicago")
    assert [str(pd.Timestamp(d)) for d in grid[0]] == [
        "2026-03-08 06:00:00",
        "2026-03-09 05:00:00",
        "2026-03-10 05:00:00",
    ]


def test_without_a_champion_the_fallback_is_seasonal_naive_and_labelled(tmp_path: Path) -> None:
    config = PipelineConfig(
        source={"path": "x.parquet"},
        window={"look_back": 14, "horizon": 10},
        evaluation={"season_length": 7},
        storage={"root": str(tmp_path)},
    )
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), config.name)
    forecaster, version, fallback = serving_forecaster(registry, config)
    assert isinstance(forecaster, SeasonalNaive) and fallback and version == FALLBACK_VERSION
    history = noisy_frame()
    table, skipped = predict_frame(
        history, forecaster, "D", "UTC", model_version=version, fallback=True
    )
    assert skipped == {}
    for uid in ("a", "b"):
        week = history.loc[history["unique_id"] == uid, "y"].to_numpy()[-7:]
        expected = np.concatenate([week, week[:3]])  # step h repeats the value a week before
        np.testing.assert_array_equal(table.loc[table["unique_id"] == uid, "yhat"], expected)
    assert set(table["model"]) == {"seasonal_naive"} and table["fallback"].all()
    off = config.model_copy(
        update={"forecast": config.forecast.model_copy(update={"fallback": False})}
    )
    with pytest.raises(NoChampionError, match="train one first"):
        serving_forecaster(registry, off)


def test_an_auto_theta_fallback_publishes_forecasts_labelled_so(tmp_path: Path) -> None:
    from statsforecast.models import AutoTheta

    config = PipelineConfig(
        source={"path": "x.parquet"},
        window={"look_back": 14, "horizon": 5},
        evaluation={"season_length": 7, "baseline_max_history": 20},
        forecast={"fallback_model": "auto_theta"},
        storage={"root": str(tmp_path)},
    )
    store = ArtifactStore(str(tmp_path))
    forecaster, version, fallback = serving_forecaster(ModelRegistry(store, config.name), config)
    assert isinstance(forecaster, StatsForecastModel) and forecaster.name == "auto_theta"
    assert fallback and version == fallback_version("auto_theta") == "fallback-auto-theta"
    assert fallback_version("seasonal_naive") == FALLBACK_VERSION
    history = noisy_frame()
    validated = store.write_table("validate", "k", history, config_hash=config.digest())
    summary = predict_task.fn(config, validated, "2026-02-10")
    assert summary.fallback and summary.model_version == "fallback-auto-theta"
    assert summary.series == 2 and summary.skipped == {}
    table = pd.read_parquet(summary.uri)
    assert set(table["model"]) == {"auto_theta"} and table["fallback"].all()
    assert set(table["model_version"]) == {"fallback-auto-theta"}
    for uid in ("a", "b"):
        tail = history.loc[history["unique_id"] == uid, "y"].to_numpy()[-20:]
        expected = AutoTheta(season_length=7).forecast(y=tail, h=5)["mean"]
        np.testing.assert_allclose(table.loc[table["unique_id"] == uid, "yhat"], expected)


# -- quantile columns -------------------------------------------------------------------------
QUANTILES = (0.1, 0.5, 0.9)
QUANTILE_COLUMNS = ["yhat_q10", "yhat_q50", "yhat_q90"]


class SeasonalBand:
    """A fake probabilistic forecaster: seasonal naive (season 7) as the median, the median
    -+ `k` times each series' last-week spread as the 0.1 and 0.9 quantiles."""

    name = "band"
    horizon = 3
    look_back = 7
    quantiles = QUANTILES

    def __init__(self, k: float = 1.0) -> None:
        self.k = k

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return history_available(frame, ends, self.look_back)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return SeasonalNaive(self.horizon, 7).predict(frame, ends)

    def predict_quantiles(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        y = frame["y"].to_numpy()[np.asarray(ends)[:, None] - 7 + np.arange(7)]
        spread = self.k * y.std(axis=1)[:, None, None]
        return self.predict(frame, ends)[..., None] + spread * np.array([-1.0, 0.0, 1.0])


def test_quantile_columns_hold_the_forecasters_quantiles_non_crossing() -> None:
    history = noisy_frame()
    band = SeasonalBand(k=1.5)
    table, _ = predict_frame(history, band, "D", "UTC", model_version="v1", quantiles=QUANTILES)
    assert [quantile_column(q) for q in QUANTILES] == QUANTILE_COLUMNS
    assert list(table.columns) == [
        "unique_id",
        "ds",
        "step",
        "yhat",
        *QUANTILE_COLUMNS,
        "model",
        "model_version",
        "fallback",
    ]
    values = table[QUANTILE_COLUMNS].to_numpy()
    assert np.isfinite(values).all()
    assert (np.diff(values, axis=1) >= 0).all()  # non-crossing, every row
    np.testing.assert_array_equal(table["yhat"], table["yhat_q50"])  # yhat is the median
    for uid in ("a", "b"):
        week = history.loc[history["unique_id"] == uid, "y"].to_numpy()[-7:]
        rows = table[table["unique_id"] == uid]
        np.testing.assert_allclose(rows["yhat"], week[:3])
        np.testing.assert_allclose(rows["yhat_q90"] - rows["yhat"], [1.5 * week.std()] * 3)


def test_a_point_forecaster_leaves_the_quantile_columns_nan_with_the_same_schema() -> None:
    history = noisy_frame()
    point, _ = predict_frame(
        history, SeasonalNaive(3, 7), "D", "UTC", model_version="fb", quantiles=QUANTILES
    )
    band, _ = predict_frame(
        history, SeasonalBand(), "D", "UTC", model_version="v1", quantiles=QUANTILES
    )
    assert list(point.columns) == list(band.columns)
    assert (point.dtypes == band.dtypes).all()
    assert point[QUANTILE_COLUMNS].isna().all().all() and point["yhat"].notna().all()
    np.testing.assert_array_equal(point["yhat"], band["yhat"])
    # No quantiles configured: the columns of a point-loss pipeline, as before.
    plain, _ = predict_frame(history, SeasonalBand(), "D", "UTC", model_version="v1")
    assert not any(column.startswith("yhat_q") for column in plain.columns)


def test_crossing_quantiles_are_refused_naming_the_series_and_step() -> None:
    crossing = np.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [2.5, 2.0, 3.0]]])
    with pytest.raises(ValueError, match=r"series 'b', step 2, yhat_q10 = 2.5 > yhat_q50 = 2"):
        forecast_frame(
            np.array(["a", "b"], dtype=object),
            np.zeros((2, 2), dtype="datetime64[ns]"),
            crossing[..., 1],
            model="m",
            model_version="v",
            fallback=False,
            quantiles=QUANTILES,
            yhat_quantiles=crossing,
        )


def test_the_forecast_file_and_summary_carry_the_configured_quantiles(tmp_path: Path) -> None:
    config = PipelineConfig(
        source={"path": "x.parquet"},
        window={"look_back": 14, "horizon": 3},
        evaluation={"season_length": 7},
        model={"quantiles": [0.9, 0.5, 0.1]},
        storage={"root": str(tmp_path)},
    )
    store = ArtifactStore(str(tmp_path))
    validated = store.write_table("validate", "k", noisy_frame(), config_hash=config.digest())
    summary = predict_task.fn(config, validated, "2026-02-10")  # the seasonal-naive fallback
    table = pd.read_parquet(summary.uri)
    assert [c for c in table.columns if c.startswith("yhat_q")] == QUANTILE_COLUMNS
    assert table[QUANTILE_COLUMNS].isna().all().all()
    assert summary.quantile_columns == QUANTILE_COLUMNS and not summary.quantiles_forecast
    assert "yhat_q10, yhat_q50, yhat_q90 (NaN: a point forecaster served)" in summary_markdown(
        summary
    )
