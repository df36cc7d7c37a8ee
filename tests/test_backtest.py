"""The rolling-origin backtest: exact folds, clear refusals, and a real run through the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lstm_model.metrics import OVERALL
from tasks.backtest import (
    BACKTEST_COLUMNS,
    BacktestError,
    backtest_summary,
    backtest_task,
    fold_splits,
    run_backtest,
)
from tasks.config import PipelineConfig, SplitConfig
from tasks.ingest import ingest_task
from tasks.storage import ArtifactRef, ArtifactStore
from tasks.validate import validate_task
from tests.support import SERIES, small_config, write_small_source

LENGTHS = {"a": 100, "b": 61, "c": 40}
SPLIT = SplitConfig(train=0.6, validation=0.2)  # test share 0.2: 20, 12 and 8 rows
FOLDS = 3
MODELS = ["lstm", "naive", "seasonal_naive"]


def validated_frame() -> pd.DataFrame:
    """Series of unequal lengths in the validated contract (sorted, UTC, float64)."""
    rng = np.random.default_rng(7)
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range("2024-01-01", periods=rows, freq="D", tz="UTC"),
                "y": rng.normal(100 * (number + 1), 5, rows),
                "c1": rng.uniform(0, 1, rows),
            }
        )
        for number, (uid, rows) in enumerate(LENGTHS.items())
    ]
    return pd.concat(parts, ignore_index=True)


def unit_config(root: Path, folds: int, **window: int) -> PipelineConfig:
    return PipelineConfig(
        name="unit",
        source={"path": "unused.parquet", "hist_exog": ["c1"]},
        features={"calendar": False},  # these frames skip validation, which adds the calendar
        window={"look_back": 8, "horizon": 3, **window},
        split=SPLIT.model_dump(),
        evaluation={"backtest_folds": folds},
        storage={"root": str(root)},
    )


def labels_of(part: pd.DataFrame, uid: str) -> list[str]:
    return part.loc[part["unique_id"] == uid, "split"].tolist()


def test_fold_splits_of_one_series_are_exact() -> None:
    frame = validated_frame()
    # 100 instants; the test region is instants [80, 100) in blocks [80, 86), [86, 93),
    # [93, 100); the instants before each block split 0.6 : 0.2, i.e. 75 % train.
    expected = [(60, 20, 6), (64, 22, 7), (69, 24, 7)]
    for fold, (train, validation, test) in enumerate(expected):
        labels = labels_of(fold_splits(frame, fold, FOLDS, SPLIT), "a")
        assert labels == ["train"] * train + ["validation"] * validation + ["test"] * test
    # Shorter series get the same calendar instants, not their own shares: "c" (40 days)
    # is all train in every fold, "b" (61 days) has one validation day in fold 0.
    assert labels_of(fold_splits(frame, 0, FOLDS, SPLIT), "c") == ["train"] * 40
    assert labels_of(fold_splits(frame, 0, FOLDS, SPLIT), "b") == ["train"] * 60 + ["validation"]


def test_folds_are_consecutive_calendar_blocks_with_expanding_train() -> None:
    frame = validated_frame()
    parts = [fold_splits(frame, fold, FOLDS, SPLIT) for fold in range(FOLDS)]
    test_instants, train_ends = [], []
    for part in parts:
        spans = part.groupby("split")["ds"].agg(["min", "max"])
        # Common cutoffs: no series trains on an instant another series validates or tests on.
        assert spans.loc["train", "max"] < spans.loc["validation", "min"]
        assert spans.loc["validation", "max"] < spans.loc["test", "min"]
        assert part["ds"].max() == spans.loc["test", "max"]  # rows after the block are dropped
        test_instants.extend(sorted(part.loc[part["split"] == "test", "ds"].unique()))
        train_ends.append(spans.loc["train", "max"])
    # Together the blocks are exactly the last 20 instants, each once, in order.
    assert test_instants == list(pd.date_range("2024-03-21", periods=20, freq="D", tz="UTC"))
    assert train_ends == sorted(set(train_ends))  # strictly growing: expanding window


def test_fold_splits_keep_the_rows_values_and_refuse_bad_folds() -> None:
    frame = validated_frame()
    part = fold_splits(frame, 1, FOLDS, SPLIT)
    assert list(part.columns) == [*frame.columns, "split"]
    merged = part.merge(frame, on=["unique_id", "ds"], suffixes=("", "_orig"))
    assert len(merged) == len(part)
    np.testing.assert_array_equal(merged["y"], merged["y_orig"])
    np.testing.assert_array_equal(merged["c1"], merged["c1_orig"])
    with pytest.raises(BacktestError, match="fold must be in 0..2"):
        fold_splits(frame, 3, FOLDS, SPLIT)
    with pytest.raises(ValueError, match="sorted"):
        fold_splits(frame.iloc[::-1], 0, FOLDS, SPLIT)


def test_a_test_block_shorter_than_a_window_fails_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.backtest

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before checking the folds")

    monkeypatch.setattr(tasks.backtest, "train_model", no_training)
    # Fold 0's test block is 6 days; a test window needs its 7 targets inside one block.
    with pytest.raises(BacktestError) as caught:
        run_backtest(validated_frame(), unit_config(tmp_path, folds=FOLDS, horizon=7))
    message = str(caught.value)
    assert "fold 0 of 3 has no test window" in message
    assert "look_back 8 + horizon 7" in message and "fewer folds" in message


def test_a_disabled_backtest_says_which_setting_to_change(tmp_path: Path) -> None:
    config = unit_config(tmp_path, folds=0)
    with pytest.raises(BacktestError, match="set evaluation.backtest_folds"):
        run_backtest(validated_frame(), config)
    unused = ArtifactRef(uri=str(tmp_path / "nothing.parquet"), sha256="0" * 64)
    with pytest.raises(BacktestError, match="set evaluation.backtest_folds"):
        backtest_task.fn(config, unused)


@pytest.fixture(scope="module")
def backtested(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, ArtifactRef]:
    """Two folds on three real stations, one epoch: the backtest artifact, made once."""
    base = tmp_path_factory.mktemp("backtest")
    config = small_config(
        write_small_source(base / "data"),
        base / "store",
        evaluation={"backtest_folds": 2, "gate_must_beat": "none", "plot_series": 2},
    )
    validated = validate_task.fn(config, ingest_task.fn(config, "2026-11-20"), as_of="2026-11-20")
    return config, backtest_task.fn(config, validated)


def test_backtest_task_scores_every_fold_against_the_baselines(backtested) -> None:
    config, ref = backtested
    store = ArtifactStore(config.storage.root)
    metrics, meta = store.read_table(ref)
    assert "/artifacts/backtest/" in ref.uri
    assert list(metrics.columns) == BACKTEST_COLUMNS
    overall = metrics[metrics["unique_id"] == OVERALL]
    assert len(overall) == 2 * len(MODELS)
    assert sorted(overall["fold"].unique()) == [0, 1]
    assert set(overall["model"]) == set(MODELS)
    assert len(metrics) == 2 * len(MODELS) * (len(SERIES) + 1)  # every station in every fold
    assert np.isfinite(metrics[["mae", "rmse", "smape", "mase"]].to_numpy()).all()

    cutoffs = overall.groupby("fold")["cutoff"].first()
    assert cutoffs.is_monotonic_increasing and cutoffs.is_unique
    assert str(cutoffs.dt.tz) == "UTC"
    assert meta["folds"] == 2 and meta["step"] == "backtest"
    assert [info["cutoff"] for info in meta["fold_info"]] == [c.isoformat() for c in cutoffs]
    assert all(info["windows"]["test"] > 0 for info in meta["fold_info"])
    # The later fold trains on more windows: the window expands with the origin.
    assert meta["fold_info"][1]["windows"]["train"] > meta["fold_info"][0]["windows"]["train"]
    summary = backtest_summary(metrics)
    assert summary["model"].tolist() == MODELS and (summary["folds"] == 2).all()
    assert meta["summary"] == summary.to_dict("records")
    checkpoints = Path(config.storage.root) / "checkpoints"
    assert not any(checkpoints.iterdir())  # every fold's training backups are cleaned up


def test_backtest_rerun_finds_the_same_artifact(backtested) -> None:
    config, ref = backtested
    validated = validate_task.fn(config, ingest_task.fn(config, "2026-11-20"), as_of="2026-11-20")
    assert backtest_task.fn(config, validated) == ref


def test_cli_backtest_prints_folds_and_summary(
    backtested, prefect_harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    config, ref = backtested
    config_file = tmp_path / "backtest.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["backtest", "--config", str(config_file), "--date", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    assert "Overall MASE across folds (mean ± std):" in out
    assert all(model in out for model in MODELS)
    assert ref.uri in out  # the flow found the artifact the task wrote: same inputs, same key


def test_cli_backtest_disabled_fails_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    config = unit_config(tmp_path, folds=0)
    config_file = tmp_path / "disabled.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["backtest", "--config", str(config_file)]) == 1
    assert "set evaluation.backtest_folds" in capsys.readouterr().err
