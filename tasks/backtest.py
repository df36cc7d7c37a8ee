"""Backtest step: a rolling-origin (expanding-window) evaluation over k folds, refit per fold.

The test region is every time step from the validation cutoff on (common calendar instants,
the same for every series), cut into k consecutive blocks. Fold j tests on block j; the
instants before it are its train and validation instants (in the ratio split.train :
split.validation) and the rows after it are dropped, so no fold sees its own future, and no
series' training rows lie inside another series' test block. Each fold fits its own scaler on its own train rows,
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

from lstm_model.forecasters import model_forecaster
from lstm_model.metrics import METRIC_COLUMNS, OVERALL
from lstm_model.scaling import SeriesScaler
from lstm_model.windowing import SPLITS
from tasks.config import PipelineConfig, SplitConfig
from tasks.evaluate import baselines, evaluate_forecasters, evaluation_data
from tasks.normalize import (
    SplitCutoffs,
    assign_splits,
    check_sorted,
    encode_stat,
    feature_columns,
    feature_roles,
    normalize,
    observed_ds,
    split_cutoffs,
    stat_feature_names,
)
from tasks.runtime import (
    StepResult,
    pipeline_task,
    produce_artifact,
    publish_markdown,
    publish_table,
    run_logger,
)
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key
from tasks.train import backup_folder, input_features, train_model
from tasks.window import WindowedData, utc_datetimes, window_index, window_spec

BACKTEST_COLUMNS = ["fold", "cutoff", *METRIC_COLUMNS]
# As in tasks.normalize: n * share can land a hair below an integer in floating point.
_FLOOR_TOLERANCE = 1e-9


class BacktestError(ValueError):
    """A backtest that cannot run as configured; the message says which setting to change."""


# -- folds ----------------------------------------------------------------------------------
def fold_cutoffs(
    ds: pd.Series, fold: int, folds: int, split: SplitConfig
) -> tuple[SplitCutoffs, pd.Timestamp | None]:
    """The calendar cutoffs of fold `fold` (0-based), and the end of its test block.

    The instants from the validation cutoff on (`split_cutoffs` of all the data) are cut into
    `folds` consecutive blocks; fold j tests on block j and splits the instants before it into
    train and validation in the ratio split.train : split.validation. The same instants hold
    for every series; rows at or after the test block's end (None for the last) are dropped.
    """
    if folds < 1:
        raise BacktestError(f"a backtest needs at least 1 fold, got {folds}")
    if not 0 <= fold < folds:
        raise BacktestError(f"fold must be in 0..{folds - 1}, got {fold}")
    instants = np.unique(utc_datetimes(pd.Series(ds)))
    test_begin = np.searchsorted(instants, split_cutoffs(ds, split).validation_end.asm8)
    n_test = instants.size - test_begin
    if n_test < folds:
        raise BacktestError(
            f"the test region has {n_test} time steps, fewer than {folds} folds; use fewer "
            "folds (evaluation.backtest_folds) or a larger test share"
        )
    begin = test_begin + n_test * fold // folds
    end = test_begin + n_test * (fold + 1) // folds
    ratio = split.train / (split.train + split.validation)
    train_end = int(np.clip(np.floor(begin * ratio + _FLOOR_TOLERANCE), 1, begin - 1))

    def instant(i: int) -> pd.Timestamp:
        return pd.Timestamp(instants[i], tz="UTC")

    cutoffs = SplitCutoffs(train_end=instant(train_end), validation_end=instant(begin))
    return cutoffs, instant(end) if end < instants.size else None


def fold_splits(frame: pd.DataFrame, fold: int, folds: int, split: SplitConfig) -> pd.DataFrame:
    """The rows of fold `fold` of `folds` with a `split` column; rows after its test block go.

    `frame` is a validated frame sorted by (unique_id, ds).
    """
    check_sorted(frame)
    cutoffs, test_end = fold_cutoffs(observed_ds(frame), fold, folds, split)
    kept = frame if test_end is None else frame[frame["ds"] < test_end]
    return assign_splits(kept.reset_index(drop=True), cutoffs)


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
@dataclass(frozen=True, eq=False)
class Fold:
    """One fold's rows: validated values, their normalized twin and its window index."""

    frame: pd.DataFrame  # validated rows kept for this fold
    normalized: pd.DataFrame
    scaler: SeriesScaler
    windows: pd.DataFrame  # window index (start, split, unique_id)


def prepare_fold(frame: pd.DataFrame, fold: int, config: PipelineConfig) -> Fold:
    """Split, scale (on this fold's train rows only) and index the windows of one fold."""
    folds = require_folds(config)
    cutoffs, test_end = fold_cutoffs(observed_ds(frame), fold, folds, config.split)
    kept = (frame if test_end is None else frame[frame["ds"] < test_end]).reset_index(drop=True)
    normalized, scaler = normalize(kept, config, cutoffs)
    index = window_index(normalized, window_spec(config))
    counts = index["split"].value_counts()
    for name in SPLITS:
        if int(counts.get(name, 0)) == 0:
            spec = window_spec(config)
            raise BacktestError(
                f"backtest fold {fold} of {folds} has no {name} window (cutoffs "
                f"{cutoffs.train_end.date()} / {cutoffs.validation_end.date()}, look_back "
                f"{spec.look_back} + horizon {spec.horizon}); use fewer folds "
                "(evaluation.backtest_folds), a shorter window or longer series"
            )
    return Fold(kept, normalized, scaler, index)


def fold_windows(fold: Fold, config: PipelineConfig) -> WindowedData:
    """What training reads for one fold: scaled rows and the windows of each split."""
    stat_features = stat_feature_names(fold.frame, config)
    features = feature_columns(config, stat_features)
    by_split = {name: fold.windows[fold.windows["split"] == name] for name in SPLITS}
    return WindowedData(
        values=np.ascontiguousarray(fold.normalized[features].to_numpy(dtype=np.float32)),
        starts={name: part["start"].to_numpy(dtype=np.int64) for name, part in by_split.items()},
        unique_ids={name: part["unique_id"].to_numpy() for name, part in by_split.items()},
        spec=window_spec(config),
        features=features,
        scaler=fold.scaler,
        ds=utc_datetimes(fold.normalized["ds"]),
        feature_roles=feature_roles(config, stat_features),
    )


@dataclass(frozen=True)
class FoldResult:
    """One fold's metrics (tidy, with fold and cutoff) and what it was trained and scored on."""

    fold: int
    cutoff: pd.Timestamp  # the fold's test cutoff, the same instant for every series
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
    prepared = prepare_fold(frame, fold, config)
    data = fold_windows(prepared, config)
    trained = train_model(data, config, backup_dir, refit=False)
    spec, season = data.spec, config.evaluation.season_length
    rows, _ = encode_stat(prepared.frame, config.source.stat_exog, data.features)
    test = evaluation_data(rows, prepared.normalized, data.starts["test"], spec.look_back, season)
    challenger = model_forecaster(
        trained.scored, data.scaler, input_features(config, data.features), trained.spec
    )
    metrics, _, _, test, _ = evaluate_forecasters(test, challenger, baselines(spec.horizon, season))
    cutoff = prepared.normalized.loc[prepared.normalized["split"] == "test", "ds"].min()
    metrics.insert(0, "cutoff", cutoff)
    metrics.insert(0, "fold", fold)
    return FoldResult(
        fold=fold,
        cutoff=cutoff,
        metrics=metrics[BACKTEST_COLUMNS],
        windows={name: int(len(data.starts[name])) for name in SPLITS},
        series_scored=len(np.unique(test.unique_ids)),
        epochs=len(trained.history),
    )


def run_backtest(
    frame: pd.DataFrame,
    config: PipelineConfig,
    backup_root: str | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> list[FoldResult]:
    """Every fold in time order; all folds are checked for windows before any training.

    `backup_root`: a local folder for resumable training backups (one subfolder per fold).
    `on_fold` is called after each fold (the task logs there).
    """
    folds = require_folds(config)
    check_sorted(frame)
    for fold in range(folds):
        prepare_fold(frame, fold, config)  # fails fast, before hours of training
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
    folds = require_folds(config)
    key = backtest_key(config, validated)

    def compute(store: ArtifactStore) -> StepResult:
        logger = run_logger()
        frame, _ = store.read_table(validated)

        def on_fold(result: FoldResult) -> None:
            mase = ", ".join(
                f"{model} {value:.4f}" for model, value in result.overall_mase().items()
            )
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
        with contextlib.suppress(OSError):  # each fold removed its backups; drop the parent
            Path(backup_root).rmdir()
        metrics = backtest_table(results)
        overview = fold_overview(metrics).assign(cutoff=lambda t: t["cutoff"].astype(str))
        publish_table(
            f"backtest-{config.name}",
            overview.round(4).to_dict("records"),
            f"Backtest: overall metrics per fold ({folds} folds, expanding window, refit per fold)",
        )
        publish_markdown(f"backtest-summary-{config.name}", backtest_markdown(metrics), "Backtest")
        return metrics, {
            "folds": folds,
            "fold_info": [result.info() for result in results],
            "summary": backtest_summary(metrics).to_dict("records"),
        }

    return produce_artifact(config, "backtest", key, [validated], compute)
