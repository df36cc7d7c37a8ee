"""The scaler inverts exactly, learns from training rows only, and survives saving."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstm_model.scaling import SeriesScaler, fit_scaler
from tasks.config import PipelineConfig, SourceConfig
from tasks.normalize import normalize

METHODS = ["standard", "minmax"]
COLUMNS = ["y", "c1", "c2"]


def random_series(seed: int, n_series: int = 5) -> pd.DataFrame:
    """Long frame of series with very different levels and spreads, sorted by unique_id, ds."""
    rng = np.random.default_rng(seed)
    parts = []
    for number in range(n_series):
        rows = int(rng.integers(5, 60))
        level, spread = rng.uniform(-1e4, 1e4), rng.uniform(1e-2, 1e3)
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": f"series-{number}",
                    "ds": pd.date_range("2024-01-01", periods=rows, freq="D", tz="UTC"),
                    "y": level + spread * rng.standard_normal(rows),
                    "c1": rng.uniform(0, 1, rows),
                    "c2": rng.exponential(50.0, rows),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def config_for(method: str = "standard") -> PipelineConfig:
    return PipelineConfig(
        source=SourceConfig(path="unused.parquet", hist_exog=["c1", "c2"]),
        features={"calendar": False},  # these frames skip validation, which adds the calendar
        scaling={"method": method},
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(5))
def test_inverse_of_transform_is_identity(seed: int, method: str) -> None:
    frame = random_series(seed)
    scaler = fit_scaler(frame, COLUMNS, method)
    scaled = scaler.transform(frame)
    restored = scaler.inverse_transform(scaled)
    np.testing.assert_allclose(restored[COLUMNS], frame[COLUMNS], rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(restored[["unique_id", "ds"]], frame[["unique_id", "ds"]])
    # inverse_target, used on (n, horizon) predictions, agrees with the frame inverse.
    n = len(frame)
    predictions = np.stack([scaled["y"].to_numpy(), scaled["y"].to_numpy() * 2], axis=1)
    back = scaler.inverse_target(predictions, frame["unique_id"].to_numpy())
    assert back.shape == (n, 2)
    np.testing.assert_allclose(back[:, 0], frame["y"], rtol=0, atol=1e-6)
    single = scaler.inverse_target(scaled["c2"].to_numpy(), frame["unique_id"], column="c2")
    np.testing.assert_allclose(single, frame["c2"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_scaled_statistics_per_series(method: str) -> None:
    frame = random_series(7)
    scaled = fit_scaler(frame, COLUMNS, method).transform(frame)
    grouped = scaled.groupby("unique_id")[COLUMNS]
    if method == "standard":
        np.testing.assert_allclose(grouped.mean(), 0.0, atol=1e-9)
        np.testing.assert_allclose(grouped.std(ddof=0), 1.0, atol=1e-9)
    else:
        np.testing.assert_allclose(grouped.min(), 0.0, atol=1e-12)
        np.testing.assert_allclose(grouped.max(), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_validation_and_test_rows_do_not_change_the_fit(method: str) -> None:
    frame = random_series(11, n_series=6)
    config = config_for(method)
    normalized, scaler = normalize(frame, config)
    held_out = (normalized["split"] != "train").to_numpy()
    assert held_out.any() and (~held_out).any()

    rng = np.random.default_rng(0)
    perturbed = frame.copy()
    for column in COLUMNS:
        wild = rng.uniform(-1e9, 1e9, held_out.sum())
        perturbed.loc[held_out, column] = wild
    renormalized, rescaler = normalize(perturbed, config)

    assert rescaler == scaler
    train = ~held_out
    pd.testing.assert_frame_equal(renormalized[train], normalized[train])
    # The perturbation did reach the held-out rows: the check above is not vacuous.
    assert not np.allclose(renormalized.loc[held_out, "y"], normalized.loc[held_out, "y"])


def test_normalize_output_layout() -> None:
    frame = random_series(2)
    normalized, scaler = normalize(frame, config_for())
    assert list(normalized.columns) == ["unique_id", "ds", "split", *COLUMNS]
    assert all(normalized[c].dtype == np.float32 for c in COLUMNS)
    pd.testing.assert_frame_equal(normalized[["unique_id", "ds"]], frame[["unique_id", "ds"]])
    assert scaler.columns == tuple(COLUMNS)
    # Inverting the float32 artifact gives float64 original units, up to float32 rounding.
    restored = scaler.inverse_transform(normalized)
    assert all(restored[c].dtype == np.float64 for c in COLUMNS)
    np.testing.assert_allclose(restored[COLUMNS], frame[COLUMNS], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_constant_column_gets_scale_one(method: str) -> None:
    frame = random_series(3)
    frame["c1"] = 0.1  # np.std of repeated 0.1 is ~1e-17, not 0: still "constant"
    frame.loc[frame["unique_id"] == "series-0", "c2"] = 42.0
    scaler = fit_scaler(frame, COLUMNS, method)
    c1, c2 = scaler.column_index("c1"), scaler.column_index("c2")
    assert (scaler.scale[:, c1] == 1.0).all()
    assert scaler.scale[scaler.series_index(["series-0"])[0], c2] == 1.0
    scaled = scaler.transform(frame)
    assert np.isfinite(scaled[COLUMNS].to_numpy()).all()
    np.testing.assert_allclose(scaled["c1"], 0.0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse_transform(scaled)["c1"], 0.1, atol=1e-12)


def test_single_training_row_series_is_constant() -> None:
    frame = random_series(4).groupby("unique_id").head(1)
    scaler = fit_scaler(frame, COLUMNS, "standard")
    assert (scaler.scale == 1.0).all()


def test_unknown_series_is_named() -> None:
    frame = random_series(5, n_series=2)
    scaler = fit_scaler(frame, COLUMNS, "standard")
    stranger = frame.assign(unique_id="newcomer")
    with pytest.raises(KeyError, match="newcomer"):
        scaler.transform(stranger)
    with pytest.raises(KeyError, match="newcomer"):
        scaler.inverse_transform(stranger)
    with pytest.raises(KeyError, match="newcomer"):
        scaler.inverse_target(np.zeros((1, 3)), np.array(["newcomer"]))
    with pytest.raises(KeyError, match="'q'"):
        scaler.inverse_target(np.zeros((1, 3)), np.array(["series-0"]), column="q")
    with pytest.raises(KeyError, match="c2"):
        scaler.transform(frame.drop(columns="c2"))


def test_fit_rejects_bad_input() -> None:
    frame = random_series(6, n_series=2)
    with pytest.raises(ValueError, match="scaling method"):
        fit_scaler(frame, COLUMNS, "robust")  # type: ignore[arg-type]
    frame.loc[frame["unique_id"] == "series-1", "c1"] = np.nan
    with pytest.raises(ValueError, match="series-1.*c1"):
        fit_scaler(frame, COLUMNS, "standard")


@pytest.mark.parametrize("method", METHODS)
def test_frame_round_trip_through_parquet(method: str) -> None:
    scaler = fit_scaler(random_series(8), ["c2", "y", "c1"], method)  # column order is kept
    tidy = scaler.to_frame()
    assert list(tidy.columns) == ["unique_id", "column", "method", "offset", "scale"]
    assert len(tidy) == len(scaler.series) * 3
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(tidy, preserve_index=False), buffer)
    restored = SeriesScaler.from_frame(pq.read_table(io.BytesIO(buffer.getvalue())).to_pandas())
    assert restored == scaler
    assert restored.columns == ("c2", "y", "c1")


@pytest.mark.parametrize("method", METHODS)
def test_dict_round_trip_through_json(method: str) -> None:
    scaler = fit_scaler(random_series(9), COLUMNS, method)
    restored = SeriesScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler
    assert restored.series == scaler.series
    assert restored != fit_scaler(random_series(10), COLUMNS, method)


def test_frame_round_trip_keeps_series_order() -> None:
    payload = fit_scaler(random_series(12, n_series=3), COLUMNS, "standard").to_dict()
    order = [2, 0, 1]
    shuffled = SeriesScaler.from_dict(
        {
            **payload,
            "unique_ids": [payload["unique_ids"][i] for i in order],
            "offset": [payload["offset"][i] for i in order],
            "scale": [payload["scale"][i] for i in order],
        }
    )
    assert SeriesScaler.from_frame(shuffled.to_frame()) == shuffled


def test_inverse_target_refuses_a_row_count_that_does_not_match_the_ids() -> None:
    frame = pd.DataFrame({"unique_id": ["a", "a", "b", "b"], "y": [1.0, 3.0, 10.0, 30.0]})
    scaler = fit_scaler(frame, ["y"], "standard")
    with pytest.raises(ValueError, match="^3 rows of values but 2 series ids$"):
        scaler.inverse_target(np.zeros((3, 4)), ["a", "b"])
    # float32 model outputs come back as float64 original units
    back = scaler.inverse_target(np.array([[1.0], [-1.0]], dtype=np.float32), ["a", "b"])
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, [[3.0], [10.0]])
