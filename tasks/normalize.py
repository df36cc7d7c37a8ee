"""Normalize step: split at common calendar cutoffs, fit the scaler on train rows, scale.

Writes one artifact: the validated rows in the same (unique_id, ds) order with a `split` column
and the features as float32. The fitted scaler travels in the artifact's metadata, so whoever
reads the rows also has the one object that undoes the scaling (the registry copies it next to
the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import numpy as np
import pandas as pd

from lstm_model.scaling import SeriesScaler, fit_scaler
from lstm_model.windowing import SPLITS
from tasks.config import PipelineConfig, SplitConfig
from tasks.runtime import StepResult, pipeline_task, produce_artifact, publish_table, run_logger
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key

TARGET = "y"
IMPUTED = "imputed"
"""Validation's flag for rows it inserted to fill a gap: carried along, never scored."""
# n * 0.7 can land a hair below an integer in floating point (e.g. 56.99999999999999):
# nudge before flooring so a series of 100 rows gets exactly 70 training rows.
_FLOOR_TOLERANCE = 1e-9


def feature_columns(config: PipelineConfig) -> list[str]:
    """Target first, then covariates: the target's column index is 0 everywhere downstream."""
    return [TARGET, *config.source.covariates]


@dataclass(frozen=True)
class SplitCutoffs:
    """Common calendar cutoffs, the same instants for every series (UTC).

    A row is train when `ds < train_end`, validation when `train_end <= ds < validation_end`,
    test otherwise. Per-series proportions would put one series' training rows inside another
    series' test period when series start on different dates (look-ahead across series).
    """

    train_end: pd.Timestamp
    validation_end: pd.Timestamp

    def labels(self, ds: pd.Series) -> np.ndarray:
        """The split name of every timestamp in `ds`."""
        instants = _utc_instants(ds)
        return np.where(
            instants < _utc_instants(self.train_end),
            SPLITS[0],
            np.where(instants < _utc_instants(self.validation_end), SPLITS[1], SPLITS[2]),
        )

    def to_dict(self) -> dict[str, str]:
        return {
            "train_end": self.train_end.isoformat(),
            "validation_end": self.validation_end.isoformat(),
        }


def _utc_instants(ds: object) -> np.ndarray:
    """Nanoseconds since the epoch of timestamps in any zone (naive ones taken as UTC), so
    instants compare exactly whatever zone or resolution each side carries."""
    stamps = pd.to_datetime(ds)
    index = pd.DatetimeIndex([stamps] if isinstance(stamps, pd.Timestamp) else stamps)
    return index.as_unit("ns").asi8


def split_cutoffs(ds: pd.Series, split: SplitConfig) -> SplitCutoffs:
    """Cutoffs at the train and train + validation shares of the distinct timestamps of all series.

    Pass the observed (not imputed) timestamps. Every split gets at least one instant.
    """
    instants = np.unique(_utc_instants(ds))
    if instants.size < len(SPLITS):
        raise ValueError(
            f"cannot split {instants.size} distinct timestamp(s) into train, validation and test"
        )
    n = instants.size
    i_train = int(np.clip(np.floor(n * split.train + _FLOOR_TOLERANCE), 1, n - 2))
    i_validation = int(
        np.clip(
            np.floor(n * (split.train + split.validation) + _FLOOR_TOLERANCE), i_train + 1, n - 1
        )
    )
    return SplitCutoffs(
        train_end=pd.Timestamp(instants[i_train], tz=UTC),
        validation_end=pd.Timestamp(instants[i_validation], tz=UTC),
    )


def observed_ds(frame: pd.DataFrame) -> pd.Series:
    """Timestamps of observed rows: imputed rows (validation's gap filling) never set a cutoff."""
    if IMPUTED in frame.columns:
        return frame["ds"][~frame[IMPUTED].astype(bool)]
    return frame["ds"]


def assign_splits(frame: pd.DataFrame, cutoffs: SplitCutoffs) -> pd.DataFrame:
    """A copy of `frame` with a `split` column from common calendar cutoffs."""
    out = frame.copy()
    out["split"] = cutoffs.labels(frame["ds"])
    return out


def check_sorted(frame: pd.DataFrame) -> None:
    """Windows are row offsets, so rows must be in (unique_id, ds) order with no repeats."""
    ids = frame["unique_id"]
    if not ids.is_monotonic_increasing:
        raise ValueError("normalize needs rows sorted by unique_id, ds (unique_id is not sorted)")
    codes, _ = pd.factorize(ids)  # integer comparison instead of per-element string compares
    same_series = codes[1:] == codes[:-1]
    ds = frame["ds"].to_numpy(dtype="datetime64[ns]")  # integers, not Timestamp objects
    if (same_series & (ds[1:] <= ds[:-1])).any():
        raise ValueError("normalize needs rows sorted by unique_id, ds (ds repeats or goes back)")


def normalize(
    frame: pd.DataFrame, config: PipelineConfig, cutoffs: SplitCutoffs | None = None
) -> tuple[pd.DataFrame, SeriesScaler]:
    """Split at common cutoffs, fit the scaler on train rows only, scale features to float32.

    A series with no row before the train cutoff (it started later) cannot be scaled without
    looking at its validation or test rows, so it is left out; `series_without_train_rows`
    names them for the log.
    """
    check_sorted(frame)
    features = feature_columns(config)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise KeyError(f"validated frame lacks feature column(s) {missing}")
    cutoffs = cutoffs or split_cutoffs(observed_ds(frame), config.split)
    flags = [IMPUTED] if IMPUTED in frame.columns else []
    split_frame = assign_splits(frame[["unique_id", "ds", *features, *flags]], cutoffs)
    is_train = split_frame["split"] == SPLITS[0]
    trained_ids = split_frame.loc[is_train, "unique_id"].unique()
    split_frame = split_frame[split_frame["unique_id"].isin(trained_ids)]
    # The one leakage guard: validation and test rows never reach the statistics.
    train_rows = split_frame[split_frame["split"] == SPLITS[0]]
    scaler = fit_scaler(train_rows, features, config.scaling.method)
    scaled = scaler.transform(split_frame)
    normalized = scaled[["unique_id", "ds", "split"]].copy()
    for column in features:
        normalized[column] = scaled[column].to_numpy(dtype=np.float32)
    if flags:
        normalized[IMPUTED] = split_frame[IMPUTED].to_numpy(dtype=bool)
    return normalized.reset_index(drop=True), scaler


def series_without_train_rows(frame: pd.DataFrame, scaler: SeriesScaler) -> list[str]:
    """Series of `frame` that normalize left out: none of their rows lies before the cutoff."""
    return sorted(set(frame["unique_id"].astype(str)) - set(scaler.series))


def split_summary(normalized: pd.DataFrame) -> list[dict[str, object]]:
    """Rows and series per split, for the log and the UI table."""
    counts = normalized.groupby("split", observed=True)["unique_id"].agg(["size", "nunique"])
    return [
        {
            "split": name,
            "rows": int(counts["size"].get(name, 0)),
            "series": int(counts["nunique"].get(name, 0)),
        }
        for name in SPLITS
    ]


def normalize_key(config: PipelineConfig, validated: ArtifactRef) -> str:
    return content_key(
        "normalize", config.digest("split", "scaling", "source"), validated.sha256, code_version()
    )


def load_normalized(
    store: ArtifactStore, ref: ArtifactRef
) -> tuple[pd.DataFrame, SeriesScaler, list[str]]:
    """The normalized rows, the scaler fitted on their train split, and the feature columns."""
    frame, meta = store.read_table(ref)
    return frame, SeriesScaler.from_dict(meta["scaler"]), list(meta["features"])


@pipeline_task("normalize")
def normalize_task(config: PipelineConfig, validated: ArtifactRef) -> ArtifactRef:
    """Scale the validated series; the scaler is saved inside the artifact's metadata."""

    def compute(store: ArtifactStore) -> StepResult:
        logger = run_logger()
        frame, _ = store.read_table(validated)
        cutoffs = split_cutoffs(observed_ds(frame), config.split)
        normalized, scaler = normalize(frame, config, cutoffs)
        left_out = series_without_train_rows(frame, scaler)
        if left_out:
            logger.warning(
                "%d series start after the train cutoff %s and are left out of training: %s",
                len(left_out),
                cutoffs.train_end,
                left_out[:10],
            )
        summary = split_summary(normalized)
        logger.info(
            "Normalized %d rows of %d series (%s scaling fitted on rows before %s): %s",
            len(normalized),
            len(scaler.unique_ids),
            scaler.method,
            cutoffs.train_end,
            ", ".join(f"{row['split']} {row['rows']}" for row in summary),
        )
        publish_table(f"normalize-{config.name}", summary, "Rows and series per split")
        return normalized, {
            "scaler": scaler.to_dict(),
            "features": feature_columns(config),
            "splits": {row["split"]: row["rows"] for row in summary},
            "cutoffs": cutoffs.to_dict(),
            "series_without_train_rows": left_out,
        }

    key = normalize_key(config, validated)
    return produce_artifact(config, "normalize", key, [validated], compute)
