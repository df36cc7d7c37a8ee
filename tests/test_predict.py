"""Pure pieces of the predict step: who can be forecast, the future grid, the output table."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lstm_model.scaling import fit_scaler
from tasks.predict import forecast_frame, forecastable, future_grid


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


def test_unknown_and_short_series_are_skipped_with_reasons() -> None:
    scaler = fit_scaler(frame({"a": 20, "b": 20}), ["y"], "standard")
    usable, skipped = forecastable(frame({"a": 20, "b": 5, "c": 30}), scaler, look_back=10)
    assert sorted(usable["unique_id"].unique()) == ["a"]
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
        model_version="v1",
        run_id="r1",
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert list(table.columns) == [
        "unique_id",
        "ds",
        "step",
        "yhat",
        "model_version",
        "run_id",
        "created_at",
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
