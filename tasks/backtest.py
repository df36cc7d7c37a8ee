"""Backtest step: a rolling-origin (expanding-window) evaluation over k folds, refit per fold.

Per series with L rows, the test region is the last floor(L * split.test) rows, cut into k
consecutive blocks. Fold j tests on block j; the rows before it are its train and validation
rows (chronologically, in the ratio split.train : split.validation) and the rows after it are
dropped, so no fold sees its own future. Each fold fits its own scaler on its own train rows,
trains a fresh (seeded) model and scores it against the naive and seasonal-naive baselines on
its test windows, in original units, with MASE scaled on the fold's train rows. The current
champion is not scored: it was trained on rows that are test rows here, so it would not be fair.

Writes one artifact: the tidy metrics of every fold (fold, cutoff, model, unique_id, mae, rmse,
smape, mase), the per-fold overview and the summary (mean and std of overall MASE) in metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_model.metrics import METRIC_COLUMNS, OVERALL, seasonal_naive_scales
from lstm_model.scaling import SeriesScaler, fit_scaler
from lstm_model.windowing import WindowSpec
from tasks.config import PipelineConfig, SplitConfig
from tasks.evaluate import evaluate_windows, predict_windows, test_windows
from tasks.normalize import SPLITS, check_sorted, feature_columns
from tasks.runtime import pipeline_task, publish_markdown, publish_table, run_logger, store_for
from tasks.storage import ArtifactRef, code_version, content_key
from tasks.train import backup_folder, input_features, train_model
from tasks.window import WindowedData, utc_datetimes, window_index, window_spec

BACKTEST_COLUMNS = ["fold", "cutoff", *METRIC_COLUMNS]
# As in tasks.normalize: n * share can land a hair below an integer in floating point.
_FLOOR_TOLERANCE = 1e-9


class BacktestError(ValueError):
    """A backtest that cannot run as configured; the message says which setting to change."""


# -- folds ----------------------------------------------------------------------------------
def _floor(values: np.ndarray) -> np.ndarray:
    return np.floor(values + _FLOOR_TOLERANCE).astype(np.int64)


def fold_sizes(
    rows: np.ndarray, fold: int, folds: int, split: SplitConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test row counts of fold `fold` (0-based) for series of `rows` rows.

    The test region (the last floor(rows * split.test) rows) is cut into `folds` consecutive
    blocks at offsets floor(j * n_test / folds); the rows before block `fold` are split into
    train and validation in the ratio split.train : split.validation, train first. Every
    non-empty series keeps at least one training row so its scaler can be fitted.
    """
    if folds < 1:
        raise BacktestError(f"a backtest needs at least 1 fold, got {folds}")
    if not 0 <= fold < folds:
        raise BacktestError(f"fold must be in 0..{folds - 1}, got {fold}")
    rows = np.asarray(rows, dtype=np.int64)
    n_test = _floor(rows * split.test)
    block_begin = n_test * fold // folds
    block_end = n_test * (fold + 1) // folds
    before = rows - n_test + block_begin
    n_train = _floor(before * (split.train / (split.train + split.validation)))
    n_train = np.where(before > 0, np.clip(n_train, 1, None), 0)
    return n_train, before - n_train, block_end - block_begin


def fold_splits(frame: pd.DataFrame, fold: int, folds: int, split: SplitConfig) -> pd.DataFrame:
    """The rows of fold `fold` of `folds` with a `split` column; rows after its test block go.

    `frame` is a validated frame sorted by (unique_id, ds). Train and validation rows come
    before the fold's test block in every series; the returned rows keep that order.
    """
    check_sorted(frame)
    grouped = frame.groupby("unique_id", sort=False, observed=True)
    position = grouped.cumcount().to_numpy()
    rows = grouped["unique_id"].transform("size").to_numpy()
    n_train, n_validation, n_test = fold_sizes(rows, fold, folds, split)
    labels = np.where(
        position < n_train,
        SPLITS[0],
        np.where(position < n_train + n_validation, SPLITS[1], SPLITS[2]),
    )
    keep = position < n_train + n_validation + n_test
    out = frame.loc[keep].reset_index(drop=True)
    out["split"] = pd.array(labels[keep], dtype="str")
    return out


def series_lengths(frame: pd.DataFrame) -> np.ndarray:
    """Rows per series (one entry per series)."""
    return frame.groupby("unique_id", sort=False, observed=True).size().to_numpy()


def check_folds(rows: np.ndarray, folds: int, split: SplitConfig, spec: WindowSpec) -> None:
    """Fail before any training when some fold would have no train, validation or test window.

    A fold fails when no series has look_back + horizon consecutive rows in that split; series
    shorter than that in one fold are just not scored in it (see the per-series rows).
    """
    needed = spec.length
    for fold in range(folds):
        n_train, n_validation, n_test = fold_sizes(rows, fold, folds, split)
        longest_block = int(n_test.max(initial=0))
        if longest_block < needed:
            raise BacktestError(
                f"backtest fold {fold} of {folds}: its test block is {longest_block} rows long "
                f"(the last {split.test:.0%} of each series cut into {folds} blocks), but one "
                f"test window needs look_back + horizon = {spec.look_back} + {spec.horizon} = "
                f"{needed} rows; use fewer folds (evaluation.backtest_folds) or a larger test "
                "share (lower split.train + split.validation)"
            )
        for name, counts in (("train", n_train), ("validation", n_validation)):
            if int(counts.max(initial=0)) < needed:
                raise BacktestError(
                    f"backtest fold {fold} of {folds}: at most {int(counts.max(initial=0))} "
                    f"{name} rows per series, but one window needs {needed}; use a shorter "
                    "window, fewer folds or longer series"
                )


def require_folds(config: PipelineConfig) -> int:
    """The configured number of folds; 0 means the backtest is disabled."""
    folds = config.evaluation.backtest_folds
    if folds < 1:
        raise BacktestError(
            "the backtest is disabled (evaluation.backtest_folds = 0): set "
            "evaluation.backtest_folds to the number of folds, e.g. 3"
        )
    return folds


# -- one fold -------------------------------------------------------------------------------
def scale_fold(labelled: pd.DataFrame, config: PipelineConfig) -> tuple[np.ndarray, SeriesScaler]:
    """Float32 scaled features of a fold, with the scaler fitted on that fold's train rows only."""
    features = feature_columns(config)
    scaler = fit_scaler(labelled[labelled["split"] == "train"], features, config.scaling.method)
    scaled = scaler.transform(labelled[["unique_id", *features]])
    return np.ascontiguousarray(scaled[features].to_numpy(dtype=np.float32)), scaler


def fold_windows(labelled: pd.DataFrame, fold: int, config: PipelineConfig) -> WindowedData:
    """What training reads for one fold: scaled rows and the windows of each split."""
    values, scaler = scale_fold(labelled, config)
    spec = window_spec(config)
    index = window_index(labelled, spec)
    by_split = {name: index[index["split"] == name] for name in SPLITS}
    return WindowedData(
        values=values,
        starts={name: part["start"].to_numpy(dtype=np.int64) for name, part in by_split.items()},
        unique_ids={name: part["unique_id"].to_numpy() for name, part in by_split.items()},
        spec=spec,
        features=feature_columns(config),
        scaler=scaler,
        ds=utc_datetimes(labelled["ds"]),
    )


@dataclass(frozen=True)
class FoldResult:
    """One fold's metrics (tidy, with fold and cutoff) and what it was trained and scored on."""

    fold: int
    cutoff: pd.Timestamp  # first test timestamp of the fold, over all series
    metrics: pd.DataFrame  # BACKTEST_COLUMNS
    windows: dict[str, int]  # split -> windows
    series_scored: int
    epochs: int

    def overall_mase(self) -> dict[str, float]:
        overall = self.metrics[self.metrics["unique_id"] == OVERALL]
        return dict(zip(overall["model"], overall["mase"], strict=True))

    def info(self) -> dict[str, object]:
        """JSON-safe description for the artifact's metadata."""
        return {
            "fold": self.fold,
            "cutoff": self.cutoff.isoformat(),
            "windows": self.windows,
            "series_scored": self.series_scored,
            "epochs": self.epochs,
        }


def backtest_fold(
    frame: pd.DataFrame, fold: int, config: PipelineConfig, backup_dir: str | None = None
) -> FoldResult:
    """Refit on the rows before fold `fold`'s test block and score model and baselines on it."""
    folds = require_folds(config)
    labelled = fold_splits(frame, fold, folds, config.split)
    data = fold_windows(labelled, fold, config)
    model, history = train_model(data, config, backup_dir)

    starts = data.starts["test"]
    row_ids = labelled["unique_id"].to_numpy()
    test = test_windows(data.values, row_ids, starts, data.spec, data.scaler)
    input_columns = [data.features.index(name) for name in input_features(config, data.features)]
    lstm = data.scaler.inverse_target(
        predict_windows(model, data.values, starts, data.spec, input_columns), test.unique_ids
    )
    season = config.evaluation.season_length
    # MASE's scale from this fold's train rows, in original units (the validated values).
    scales = seasonal_naive_scales(labelled[labelled["split"] == "train"], season)
    metrics, _ = evaluate_windows(test, lstm, scales, season)
    cutoff = labelled.loc[labelled["split"] == "test", "ds"].min()
    metrics.insert(0, "cutoff", cutoff)
    metrics.insert(0, "fold", fold)
    return FoldResult(
        fold=fold,
        cutoff=cutoff,
        metrics=metrics[BACKTEST_COLUMNS],
        windows={name: int(len(data.starts[name])) for name in SPLITS},
        series_scored=len(np.unique(test.unique_ids)),
        epochs=len(history),
    )


def run_backtest(
    frame: pd.DataFrame,
    config: PipelineConfig,
    backup_root: str | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> list[FoldResult]:
    """Every fold in time order; all folds are checked for enough rows before any training.

    `backup_root`: a local folder for resumable training backups (one subfolder per fold).
    `on_fold` is called after each fold (the task logs there).
    """
    folds = require_folds(config)
    check_sorted(frame)
    check_folds(series_lengths(frame), folds, config.split, window_spec(config))
    results = []
    for fold in range(folds):
        backup = str(Path(backup_root) / f"fold-{fold}") if backup_root else None
        result = backtest_fold(frame, fold, config, backup)
        results.append(result)
        if on_fold is not None:
            on_fold(result)
    return results


# -- tables ---------------------------------------------------------------------------------
def backtest_table(results: list[FoldResult]) -> pd.DataFrame:
    """The tidy metrics of all folds, one frame."""
    return pd.concat([result.metrics for result in results], ignore_index=True)


def fold_overview(metrics: pd.DataFrame) -> pd.DataFrame:
    """The overall row of every (fold, model): what the UI table and the CLI show."""
    overall = metrics[metrics["unique_id"] == OVERALL]
    return overall.drop(columns="unique_id").reset_index(drop=True)


def backtest_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) std of the overall MASE of each model across folds."""
    overall = metrics[metrics["unique_id"] == OVERALL]
    summary = overall.groupby("model", sort=False)["mase"].agg(["count", "mean", "std"])
    summary.columns = ["folds", "mase_mean", "mase_std"]
    return summary.reset_index()


def backtest_text(metrics: pd.DataFrame) -> str:
    """Per-fold overall metrics and the MASE summary, as plain text for the CLI."""
    overview = fold_overview(metrics).assign(cutoff=lambda t: t["cutoff"].astype(str))
    lines = [
        "Backtest, overall metrics per fold (original units):",
        overview.to_string(index=False, float_format=lambda value: f"{value:.4f}"),
        "",
        "Overall MASE across folds (mean ± std):",
    ]
    for row in backtest_summary(metrics).itertuples(index=False):
        lines.append(
            f"  {row.model:<15} {row.mase_mean:.4f} ± {row.mase_std:.4f}  ({row.folds} folds)"
        )
    return "\n".join(lines)


def backtest_markdown(metrics: pd.DataFrame) -> str:
    lines = [
        "# Rolling-origin backtest (expanding window, refit per fold)",
        "",
        "| model | folds | MASE mean | MASE std |",
        "|---|---:|---:|---:|",
    ]
    for row in backtest_summary(metrics).itertuples(index=False):
        lines.append(f"| {row.model} | {row.folds} | {row.mase_mean:.4f} | {row.mase_std:.4f} |")
    lines += [
        "",
        "| fold | cutoff | model | MAE | RMSE | sMAPE | MASE |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in fold_overview(metrics).itertuples(index=False):
        lines.append(
            f"| {row.fold} | {row.cutoff} | {row.model} | {row.mae:.4f} | {row.rmse:.4f} "
            f"| {row.smape:.4f} | {row.mase:.4f} |"
        )
    return "\n".join(lines)


# -- Prefect task ---------------------------------------------------------------------------
def backtest_key(config: PipelineConfig, validated: ArtifactRef) -> str:
    sections = config.digest(
        "source", "split", "scaling", "window", "model", "training", "evaluation"
    )
    return content_key("backtest", sections, validated.sha256, code_version())


@pipeline_task("backtest")
def backtest_task(config: PipelineConfig, validated: ArtifactRef) -> ArtifactRef:
    """Run every fold on the validated series; one artifact with all folds' metrics."""
    logger = run_logger()
    folds = require_folds(config)
    store = store_for(config)
    key = backtest_key(config, validated)
    if (done := store.find("backtest", key)) is not None:
        logger.info("Backtest already exists for these inputs and settings: %s", done.uri)
        return done
    frame, _ = store.read_table(validated)

    def on_fold(result: FoldResult) -> None:
        mase = ", ".join(f"{model} {value:.4f}" for model, value in result.overall_mase().items())
        logger.info(
            "fold %d (of %d), cutoff %s: MASE %s (%d test windows of %d series; %d train "
            "windows, %d epochs)",
            result.fold,
            folds,
            result.cutoff.isoformat(),
            mase,
            result.windows["test"],
            result.series_scored,
            result.windows["train"],
            result.epochs,
        )

    backup_root = backup_folder(store, key)
    results = run_backtest(frame, config, backup_root, on_fold)
    with contextlib.suppress(OSError):  # each fold removed its own backups; drop the empty parent
        Path(backup_root).rmdir()
    metrics = backtest_table(results)
    summary = backtest_summary(metrics)
    ref = store.write_table(
        "backtest",
        key,
        metrics,
        config_hash=config.digest(),
        inputs=[validated],
        extra={
            "folds": folds,
            "fold_info": [result.info() for result in results],
            "summary": summary.to_dict("records"),
        },
    )
    overview = fold_overview(metrics).assign(cutoff=lambda t: t["cutoff"].astype(str))
    publish_table(
        f"backtest-{config.name}",
        overview.round(4).to_dict("records"),
        f"Backtest: overall metrics per fold ({folds} folds, expanding window, refit per fold)",
    )
    publish_markdown(f"backtest-summary-{config.name}", backtest_markdown(metrics), "Backtest")
    return ref
