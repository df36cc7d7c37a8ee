"""The normalize and window steps through `.fn()`: artifacts, metadata, reloading, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.scaling import SeriesScaler
from lstm_model.windowing import WindowSpec
from tasks.config import PipelineConfig, SplitConfig
from tasks.normalize import (
    load_normalized,
    normalize,
    normalize_task,
    observed_ds,
    split_cutoffs,
)
from tasks.storage import ArtifactRef, ArtifactStore
from tasks.window import load_windows, window_index, window_task

LENGTHS = {"alpha": 120, "beta": 90, "gamma": 60}


def validated_frame() -> pd.DataFrame:
    """A small frame in the validated contract: sorted, UTC, float64, no gaps."""
    rng = np.random.default_rng(42)
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range("2023-03-01", periods=rows, freq="D", tz="UTC"),
                "y": 100.0 * (number + 1) + rng.standard_normal(rows) * 10,
                "c1": rng.uniform(0, 1, rows),
                "c2": rng.integers(0, 2, rows).astype(np.float64),
            }
        )
        for number, (uid, rows) in enumerate(LENGTHS.items())
    ]
    return pd.concat(parts, ignore_index=True)


def make_config(root: Path, **window: int) -> PipelineConfig:
    return PipelineConfig(
        name="unit",
        source={"path": "unused.parquet", "hist_exog": ["c1", "c2"]},
        features={"calendar": False},  # these frames skip validation, which adds the calendar
        window={"look_back": 8, "horizon": 3, "stride": 1, **window},
        storage={"root": str(root)},
    )


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "store"))


@pytest.fixture
def validated(store: ArtifactStore) -> ArtifactRef:
    frame = validated_frame()
    return store.write_table("validate", "fixture", frame, config_hash="test")


def test_split_cutoffs_are_shares_of_the_distinct_instants() -> None:
    ds = pd.Series(pd.date_range("2024-01-01", periods=100, freq="D", tz="UTC"))
    cutoffs = split_cutoffs(ds, SplitConfig(train=0.7, validation=0.15))
    assert cutoffs.train_end == pd.Timestamp("2024-03-11", tz="UTC")  # instant 70
    assert cutoffs.validation_end == pd.Timestamp("2024-03-26", tz="UTC")  # instant 85
    labels = pd.Series(cutoffs.labels(ds))
    assert labels.value_counts().to_dict() == {"train": 70, "validation": 15, "test": 15}
    # Zone-aware timestamps in another zone are the same instants.
    assert (cutoffs.labels(ds.dt.tz_convert("America/Chicago")) == labels.to_numpy()).all()
    # Three instants are the least that can be split; each split keeps at least one.
    tiny = split_cutoffs(ds[:3], SplitConfig(train=0.9, validation=0.05))
    assert pd.Series(tiny.labels(ds[:3])).tolist() == ["train", "validation", "test"]
    with pytest.raises(ValueError, match="cannot split 2 distinct"):
        split_cutoffs(ds[:2], SplitConfig())


@pytest.mark.parametrize(
    ("instants", "train", "validation", "expected"),
    [
        # A train share too small for one instant still keeps one train instant...
        (4, 0.1, 0.1, ["train", "validation", "test", "test"]),
        # ...a validation share too small for one instant still keeps one validation instant...
        (10, 0.5, 0.01, ["train"] * 5 + ["validation"] + ["test"] * 4),
        # ...and train + validation a hair below 1 still leaves the last instant to test.
        (10, 0.5, 0.4999999999999, ["train"] * 5 + ["validation"] * 4 + ["test"]),
        (5, 0.9, 0.05, ["train"] * 3 + ["validation", "test"]),
    ],
)
def test_split_cutoffs_keep_every_split_non_empty(
    instants: int, train: float, validation: float, expected: list[str]
) -> None:
    ds = pd.Series(pd.date_range("2024-01-01", periods=instants, freq="D", tz="UTC"))
    cutoffs = split_cutoffs(ds, SplitConfig(train=train, validation=validation))
    assert cutoffs.labels(ds).tolist() == expected
    assert cutoffs.train_end.tzinfo is not None  # the same instant whatever zone compares


def test_split_labels_compare_instants_across_zones_and_resolutions() -> None:
    utc = pd.Series(pd.date_range("2024-03-09 12:00", periods=4, freq="6h", tz="UTC"))
    cutoffs = split_cutoffs(utc, SplitConfig(train=0.5, validation=0.25))
    assert cutoffs.train_end == pd.Timestamp("2024-03-10 00:00", tz="UTC")
    chicago = utc.dt.tz_convert("America/Chicago")
    naive_ns = pd.Series(utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]"))
    for same in (chicago, naive_ns, utc.dt.as_unit("s")):
        assert cutoffs.labels(same).tolist() == ["train", "train", "validation", "test"]
    # One instant: a Timestamp in another zone, and a plain string.
    assert cutoffs.labels(pd.Timestamp("2024-03-09 18:00", tz="America/Chicago")).tolist() == [
        "validation"  # 2024-03-10 00:00 UTC
    ]
    assert cutoffs.labels("2024-03-09 23:59").tolist() == ["train"]


def uneven_frame() -> pd.DataFrame:
    """Two stations: one since 2020, one opened in 2021; both observed to 2021-12-31."""
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(start, "2021-12-31", freq="D", tz="UTC"),
            }
        )
        for uid, start in (("new", "2021-01-01"), ("old", "2020-01-01"))
    ]
    frame = pd.concat(parts, ignore_index=True)
    frame["y"] = np.arange(len(frame), dtype=float) % 17
    return frame


def test_uneven_series_starts_share_the_calendar_cutoffs(tmp_path: Path) -> None:
    frame = uneven_frame()
    config = PipelineConfig(
        name="unit",
        source={"path": "unused.parquet"},
        features={"calendar": False},  # a frame built here, not validated: no calendar columns
        window={"look_back": 7, "horizon": 3},
        storage={"root": str(tmp_path)},
    )
    normalized, _ = normalize(frame, config)
    by_split = normalized.groupby("split")["ds"].agg(["min", "max"])
    # No training row is dated at or after the first validation or test instant of ANY series:
    # per-series 70/15/15 put 'new's training rows inside 'old's test period (350 days here).
    assert by_split.loc["train", "max"] < by_split.loc["validation", "min"]
    assert by_split.loc["validation", "max"] < by_split.loc["test", "min"]
    cutoffs = split_cutoffs(frame["ds"], config.split)
    for _, rows in normalized.groupby("unique_id"):
        train = rows.loc[rows["split"] == "train", "ds"]
        test = rows.loc[rows["split"] == "test", "ds"]
        assert train.max() < cutoffs.train_end <= cutoffs.validation_end <= test.min()
        assert test.max() == pd.Timestamp("2021-12-31", tz="UTC")


def test_a_series_starting_after_the_train_cutoff_is_left_out(tmp_path: Path) -> None:
    frame = uneven_frame()
    late = pd.DataFrame(
        {"unique_id": "late", "ds": pd.date_range("2021-11-01", "2021-12-31", tz="UTC")}
    )
    late["y"] = 1.0
    frame = pd.concat([frame, late], ignore_index=True).sort_values(["unique_id", "ds"])
    config = PipelineConfig(
        name="unit",
        source={"path": "x.parquet"},
        features={"calendar": False},  # a frame built here, not validated: no calendar columns
        window={"look_back": 7},
    )
    normalized, scaler = normalize(frame.reset_index(drop=True), config)
    assert scaler.series == ("new", "old")
    assert "late" not in set(normalized["unique_id"])


def test_normalize_refuses_unsorted_rows(tmp_path: Path) -> None:
    frame = validated_frame()
    with pytest.raises(ValueError, match="sorted"):
        normalize(frame.iloc[::-1], make_config(tmp_path))
    swapped = frame.copy()
    swapped.loc[[0, 1], "ds"] = swapped.loc[[1, 0], "ds"].to_numpy()
    with pytest.raises(ValueError, match="ds repeats or goes back"):
        normalize(swapped, make_config(tmp_path))


def test_normalize_task_writes_the_scaler_with_the_artifact(
    store: ArtifactStore, validated: ArtifactRef, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "store")
    ref = normalize_task.fn(config, validated)
    assert store.exists(ref.uri)
    assert "/artifacts/normalize/" in ref.uri
    assert ref.rows == sum(LENGTHS.values())

    frame, meta = store.read_table(ref)
    assert meta["step"] == "normalize"
    assert meta["inputs"] == [validated.model_dump()]
    assert meta["features"] == ["y", "c1", "c2"]
    assert set(meta["splits"]) == {"train", "validation", "test"}
    assert meta["cutoffs"] == {
        "train_end": "2023-05-24T00:00:00+00:00",  # instant 84 of the 120 days from 2023-03-01
        "validation_end": "2023-06-11T00:00:00+00:00",  # instant 102
    }
    expected_frame, expected_scaler = normalize(validated_frame(), config)
    assert SeriesScaler.from_dict(meta["scaler"]) == expected_scaler

    loaded, scaler, features = load_normalized(store, ref)
    assert scaler == expected_scaler
    assert features == ["y", "c1", "c2"]
    pd.testing.assert_frame_equal(loaded, expected_frame, check_dtype=False)
    assert all(loaded[c].dtype == np.float32 for c in features)

    again = normalize_task.fn(config, validated)
    assert again == ref  # content-addressed: same inputs, same artifact, found not rewritten


def test_window_task_indexes_into_the_normalized_rows(
    store: ArtifactStore, validated: ArtifactRef, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "store", stride=2)
    normalized_ref = normalize_task.fn(config, validated)
    window_ref = window_task.fn(config, normalized_ref)
    assert store.exists(window_ref.uri)

    index, meta = store.read_table(window_ref)
    normalized, _, _ = load_normalized(store, normalized_ref)
    spec = WindowSpec(look_back=8, horizon=3, stride=2)
    pd.testing.assert_frame_equal(index, window_index(normalized, spec))
    assert index["start"].dtype == np.int64
    assert (meta["look_back"], meta["horizon"], meta["stride"]) == (8, 3, 2)
    assert meta["features"] == ["y", "c1", "c2"]
    assert meta["series"] == normalized_ref.uri
    assert meta["inputs"] == [normalized_ref.model_dump()]
    assert meta["windows"] == index["split"].value_counts().to_dict()
    assert all(meta["windows"][name] > 0 for name in ("train", "validation", "test"))

    data = load_windows(store, window_ref)
    assert data.spec == spec
    assert data.features == ["y", "c1", "c2"]
    assert data.values.dtype == np.float32 and data.values.shape == (len(normalized), 3)
    assert data.normalized == normalized_ref
    assert data.scaler == load_normalized(store, normalized_ref)[1]
    for name in ("train", "validation", "test"):
        part = index[index["split"] == name]
        np.testing.assert_array_equal(data.starts[name], part["start"].to_numpy())
        assert data.unique_ids[name].tolist() == part["unique_id"].tolist()

    # Windows gathered from the loaded data equal slices of the normalized frame.
    x, y = data.arrays("validation")
    start = int(data.starts["validation"][1])
    features = normalized[["y", "c1", "c2"]].to_numpy(np.float32)
    np.testing.assert_array_equal(x[1], features[start : start + 8])
    np.testing.assert_array_equal(y[1], features[start + 8 : start + 11, 0])
    # Its targets are validation rows; its inputs may reach back into train rows.
    assert (normalized["split"].iloc[start + 8 : start + 11] == "validation").all()
    assert (normalized["unique_id"].iloc[start : start + 11].nunique()) == 1
    stamps = data.target_ds("validation")[1]
    expected = normalized["ds"].iloc[start + 8 : start + 11].dt.tz_localize(None).to_numpy()
    np.testing.assert_array_equal(stamps, expected)
    batches = list(data.batches("train", batch_size=16, shuffle=True, seed=0))
    assert sum(len(bx) for bx, _ in batches) == len(data.starts["train"])
    assert batches[0][0].shape[1:] == (8, 3) and batches[0][1].shape[1:] == (3,)

    # Original units come back through the scaler carried by the window data.
    originals = data.scaler.inverse_target(y, data.unique_ids["validation"])
    raw = validated_frame()["y"].to_numpy()
    np.testing.assert_allclose(originals[1], raw[start + 8 : start + 11], rtol=1e-5)

    assert window_task.fn(config, normalized_ref) == window_ref
    other = window_task.fn(make_config(tmp_path / "store", stride=1), normalized_ref)
    assert other.uri != window_ref.uri


def test_window_task_fails_clearly_without_training_windows(
    validated: ArtifactRef, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "store", look_back=100, horizon=20)
    normalized_ref = normalize_task.fn(config, validated)
    with pytest.raises(ValueError, match="no training windows"):
        window_task.fn(config, normalized_ref)


def test_imputed_rows_are_carried_and_never_scored(tmp_path: Path) -> None:
    frame = validated_frame()
    frame["imputed"] = False
    alpha = frame.index[frame["unique_id"] == "alpha"]
    filled = alpha[110]  # a test row of alpha (test instants start at day 102)
    frame.loc[filled, "imputed"] = True
    config = make_config(tmp_path)
    normalized, _ = normalize(frame, config)
    assert normalized["imputed"].tolist() == frame["imputed"].tolist()
    index = window_index(normalized, WindowSpec(look_back=8, horizon=3))
    test = index[index["split"] == "test"]
    targets = test["start"].to_numpy()[:, None] + 8 + np.arange(3)
    assert not (targets == filled).any()  # no test window has the filled row as a target
    # ...but the windows around it are still there, and it may be an input.
    inputs = test["start"].to_numpy()[:, None] + np.arange(8)
    assert (inputs == filled).any()
    without_flag = window_index(normalized.drop(columns="imputed"), WindowSpec(8, 3))
    assert len(without_flag[without_flag["split"] == "test"]) == len(test) + 3


def test_imputed_instants_never_set_a_cutoff() -> None:
    ds = pd.Series(pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC"))
    flags = pd.Series([False] * 8 + [True] * 2, dtype=object)  # read from any flag column dtype
    frame = pd.DataFrame({"ds": ds, "imputed": flags})
    assert observed_ds(frame).tolist() == ds[:8].tolist()
    assert observed_ds(frame.drop(columns="imputed")).tolist() == ds.tolist()
    split = SplitConfig(train=0.5, validation=0.25)
    assert split_cutoffs(observed_ds(frame), split).train_end == ds[4]  # of 8, not 10 instants
