"""Issue 10, failure 6: whatever validation accepts, training can train on, and settings that
say "nothing" (plot_series = 0) are honoured.

Three real stations x 30 days passed the length check (look_back + horizon = 21) but left no
whole validation window, and training then crashed with a false message. Validation now counts
windows per split with the window step's own function at the same cutoffs, and says how many
steps series need at these split shares (`rows_needed`, shared with the window step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.windowing import WindowSpec
from tasks.config import PipelineConfig, SplitConfig
from tasks.evaluate import EvaluationData, plot_forecasts
from tasks.ingest import read_source
from tasks.normalize import normalize, normalize_task, split_cutoffs
from tasks.storage import ArtifactStore
from tasks.validate import DataValidationError, validate_frame
from tasks.window import window_index, window_spec, window_task
from tests.support import small_config, write_small_source


def stations(tmp_path: Path, days: int, **sections: dict) -> PipelineConfig:
    """small_config (look_back 14, horizon 7) on the last `days` days of three real stations."""
    return small_config(write_small_source(tmp_path / "data", days), tmp_path / "store", **sections)


def test_thirty_days_fail_validation_with_the_real_reason(tmp_path: Path) -> None:
    config = stations(tmp_path, days=30)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(read_source(config.source), config, "stations.parquet")
    message = str(caught.value)
    assert "no whole validation or test window" in message
    assert "the 30 steps split into train 21, validation 4, test 5" in message
    assert "rows train 21, validation 7, test 7" in message
    assert "series need at least 44 steps" in message


@pytest.mark.usefixtures("prefect_harness")
def test_training_thirty_days_stops_at_validation_not_in_the_trainer(tmp_path: Path) -> None:
    from flows.training import training_flow

    config = stations(tmp_path, days=30)
    with pytest.raises(DataValidationError, match="no whole validation or test window"):
        training_flow(config, "2016-08-15")
    assert not (tmp_path / "store" / "artifacts" / "train").exists()


@pytest.mark.parametrize("days", [21, 30, 43, 44, 47, 60])
def test_validation_passes_exactly_when_every_split_has_a_window(tmp_path: Path, days: int) -> None:
    config = stations(tmp_path, days=days)
    try:
        validated, _ = validate_frame(read_source(config.source), config, "stations.parquet")
    except DataValidationError:
        validated = None
    # What the window step would index on these rows, validation or not.
    frame, _ = validate_frame(
        read_source(config.source),
        config.model_copy(update={"window": config.window.model_copy(update={"look_back": 1})}),
        "stations.parquet",
        "forecast",
    )
    frame = frame.assign(imputed=False)
    normalized, _ = normalize(frame, config, split_cutoffs(frame["ds"], config.split))
    counts = window_index(normalized, window_spec(config))["split"].value_counts()
    every_split = all(counts.get(name, 0) > 0 for name in ("train", "validation", "test"))
    assert (validated is not None) == every_split


@pytest.mark.parametrize(
    ("look_back", "horizon", "stride", "train", "validation"),
    [(14, 7, 1, 0.7, 0.15), (56, 14, 1, 0.7, 0.15), (36, 12, 1, 0.7, 0.15), (14, 7, 3, 0.5, 0.25)],
)
def test_rows_needed_gives_every_split_a_window_however_long_the_series(
    look_back: int, horizon: int, stride: int, train: float, validation: float
) -> None:
    from tasks.normalize import rows_needed

    spec = WindowSpec(look_back, horizon, stride)
    split = SplitConfig(train=train, validation=validation)
    need = rows_needed(spec, split)
    assert need >= spec.length + 2 * horizon
    for days in range(need, need + 60):
        frame = pd.DataFrame(
            {
                "unique_id": "a",
                "ds": pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC"),
                "split": "train",
            }
        )
        frame["split"] = split_cutoffs(frame["ds"], split).labels(frame["ds"])
        counts = window_index(frame, spec)["split"].value_counts()
        assert all(counts.get(name, 0) > 0 for name in ("train", "validation", "test")), days


def test_the_window_step_refuses_no_validation_window_naming_why(tmp_path: Path) -> None:
    # Rows that skipped the validation above (a short window there): the window step is the
    # last stop before training and must fail with the reason, not hand the trainer nothing.
    config = stations(tmp_path, days=30)
    lenient = config.model_copy(update={"window": config.window.model_copy(update={"horizon": 1})})
    validated, _ = validate_frame(read_source(config.source), lenient, "stations.parquet")
    store = ArtifactStore(config.storage.root)
    ref = store.write_table("validate", "thirty-days", validated, config_hash="test")
    normalized = normalize_task.fn(config, ref)
    with pytest.raises(ValueError, match="no validation and no test windows") as caught:
        window_task.fn(config, normalized)
    assert "need at least 44 steps" in str(caught.value)


def test_plot_series_zero_means_no_plot() -> None:
    frame = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC"),
            "y": np.arange(10.0),
        }
    )
    data = EvaluationData(frame, np.array([8]), pd.Series({"a": 1.0}), look_back=4)
    forecasts = {"lstm": np.array([[8.0, 9.0]])}
    assert plot_forecasts(data, forecasts, look_back=4, n_series=0) is None
    assert plot_forecasts(data, forecasts, look_back=4, n_series=1).startswith(b"\x89PNG")
