"""Normalize step: split at common calendar cutoffs, fit the scaler on train rows, scale.

Writes one artifact: the validated rows in the same (unique_id, ds) order with a `split` column
and the features as float32, in the order y, hist_exog, futr_exog, calendar (futr), stat_exog
encodings; the metadata's `feature_roles` says which is which. The fitted scaler travels in the
artifact's metadata, so whoever reads the rows also has the one object that undoes the scaling
(the registry copies it next to the model). Calendar and stat features are already on a unit
scale (sin/cos, 0/1 flags and one-hots): the scaler passes them through unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Literal

import numpy as np
import pandas as pd

from lstm_model.calendar import calendar_columns
from lstm_model.scaling import SeriesScaler, fit_usable_scaler
from lstm_model.windowing import SPLITS, WindowSpec
from tasks.config import PipelineConfig, SplitConfig
from tasks.runtime import StepResult, pipeline_task, produce_artifact, publish_table, run_logger
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key

TARGET = "y"
IMPUTED = "imputed"
"""Validation's flag for rows it inserted to fill a gap: carried along, never scored."""
# n * 0.7 can land a hair below an integer in floating point (e.g. 56.99999999999999):
# nudge before flooring so a series of 100 rows gets exactly 70 training rows.
_FLOOR_TOLERANCE = 1e-9


Role = Literal["target", "hist", "futr", "stat"]
STAT_SEPARATOR = "="
"""A categorical stat_exog value's one-hot column is `{column}={value}`: the feature names carry
the vocabulary, so predict rebuilds the columns by name."""

_log = logging.getLogger(__name__)


def config_calendar_columns(config: PipelineConfig) -> list[str]:
    """The `cal_*` columns validation generates for this config (none when switched off)."""
    features = config.features
    if not features.calendar and features.holidays_country is None:
        return []
    names = calendar_columns(config.frequency, features.holidays_country)
    return names if features.calendar else [c for c in names if c == "cal_holiday"]


def feature_roles(
    config: PipelineConfig, stat_features: Sequence[str] | None = None
) -> dict[str, Role]:
    """Each feature column's role, in feature order: target, hist_exog, futr_exog, calendar
    (futr: known for any date), stat_exog. The model reads futr columns over the horizon too.

    Categorical stat_exog become one-hot columns whose names depend on the data: pass them
    (`stat_features`, as `stat_feature_names` or the normalized metadata give them); without
    them the stat entries are the config's own stat_exog names.
    """
    stats = config.source.stat_exog if stat_features is None else stat_features
    roles: dict[str, Role] = {TARGET: "target"}
    roles |= {column: "hist" for column in config.source.hist_exog}
    roles |= {column: "futr" for column in config.source.futr_exog}
    roles |= {column: "futr" for column in config_calendar_columns(config)}
    roles |= {column: "stat" for column in stats}
    return roles


def feature_columns(
    config: PipelineConfig, stat_features: Sequence[str] | None = None
) -> list[str]:
    """Target first, then hist, futr, calendar and stat features (see `feature_roles`): the
    target's column index is 0 everywhere downstream."""
    return list(feature_roles(config, stat_features))


def stat_feature_names(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    """The encoded stat_exog features of `frame`: a numeric column as itself, a text column as
    one `{column}={value}` one-hot per distinct value (sorted)."""
    names: list[str] = []
    for column in config.source.stat_exog:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            names.append(column)
            continue
        vocabulary = sorted(str(v) for v in values.dropna().unique())
        names += [f"{column}{STAT_SEPARATOR}{value}" for value in vocabulary]
    return names


def stat_features_among(config: PipelineConfig, features: Sequence[str]) -> list[str]:
    """The stat features in a list of feature names: stat_exog columns and their one-hots."""
    stats = config.source.stat_exog
    prefixes = tuple(f"{column}{STAT_SEPARATOR}" for column in stats)
    return [name for name in features if name in stats or (prefixes and name.startswith(prefixes))]


def encode_stat(
    frame: pd.DataFrame, stat_exog: Sequence[str], features: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """`frame` with the one-hot stat features in `features` built by name from the raw stat_exog
    columns (`store=12` is 1.0 where `store` is "12"), and, per column, the values no feature
    names (unseen in training: all their one-hots are 0). Numeric stat features stay as they are.
    """
    out = frame.copy()
    unseen: dict[str, list[str]] = {}
    for column in stat_exog:
        prefix = f"{column}{STAT_SEPARATOR}"
        names = [name for name in features if name.startswith(prefix)]
        if not names or column not in frame.columns:
            continue
        text = frame[column].astype("str").where(frame[column].notna())
        known = {name[len(prefix) :] for name in names}
        for name in names:
            out[name] = (text == name[len(prefix) :]).to_numpy(dtype=np.float32)
        new = sorted(set(text.dropna().unique()) - known)
        if new:
            unseen[column] = new
            _log.warning(
                "stat_exog %r: value(s) %s not seen in training; their one-hot columns are all 0",
                column,
                new[:10],
            )
    return out, unseen


def passthrough(scaler: SeriesScaler, columns: Sequence[str]) -> SeriesScaler:
    """The scaler with `columns` left unscaled (offset 0, scale 1): features already on a unit
    scale, and stat features that a per-series scaling would flatten to 0."""
    offset, scale = scaler.offset.copy(), scaler.scale.copy()
    for column in columns:
        index = scaler.column_index(column)
        offset[:, index], scale[:, index] = 0.0, 1.0
    return replace(scaler, offset=offset, scale=scale)


class InsufficientDataError(ValueError):
    """Data that passed validation but cannot support a step (no split, no window, no score):
    the message names what is missing and what would do. The CLI prints it as one line."""


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


def split_bounds(n: int, split: SplitConfig) -> tuple[int, int]:
    """Positions, among `n` distinct instants (n >= 3), of the first validation and the first
    test instant: the train and train + validation shares, each split given at least one."""
    if n < len(SPLITS):
        raise InsufficientDataError(
            f"cannot split {n} distinct timestamp(s) into train, validation and test"
        )
    i_train = int(np.clip(np.floor(n * split.train + _FLOOR_TOLERANCE), 1, n - 2))
    i_validation = int(
        np.clip(
            np.floor(n * (split.train + split.validation) + _FLOOR_TOLERANCE), i_train + 1, n - 1
        )
    )
    return i_train, i_validation


def split_sizes(n: int, split: SplitConfig) -> dict[str, int]:
    """Instants of each split when `n` distinct instants are split (`split_bounds`)."""
    i_train, i_validation = split_bounds(n, split)
    return dict(zip(SPLITS, (i_train, i_validation - i_train, n - i_validation), strict=True))


def rows_needed(spec: WindowSpec, split: SplitConfig) -> int:
    """The fewest steps a series must have so that, spanning the whole period, it gets one whole
    window of every split (`WindowSpec.rows_per_split`) at the split shares, and so does any
    longer one: what validation and the window step tell the user when a split has no window."""
    need = spec.rows_per_split()
    shares = dict(zip(SPLITS, (split.train, split.validation, split.test), strict=True))

    def fits(n: int) -> bool:
        return all(size >= need[name] for name, size in split_sizes(n, split).items())

    # Past `bound` every n fits (a floored share loses less than one instant, and the
    # tolerance at most one more), so the answer is where the run of fitting n below it ends.
    n = max(len(SPLITS), math.ceil(max((need[k] + 2) / shares[k] for k in SPLITS)))
    while n > len(SPLITS) and fits(n - 1):
        n -= 1
    return n


def split_cutoffs(ds: pd.Series, split: SplitConfig) -> SplitCutoffs:
    """Cutoffs at the train and train + validation shares of the distinct timestamps of all series.

    Pass the observed (not imputed) timestamps. Every split gets at least one instant.
    """
    instants = np.unique(_utc_instants(ds))
    i_train, i_validation = split_bounds(instants.size, split)
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
    looking at its validation or test rows, so it is left out, and so is a series whose
    training statistics are not finite or absurd (`fit_usable_scaler`); `series_left_out`
    names both, with the reason.
    """
    check_sorted(frame)
    missing = [c for c in config.source.stat_exog if c not in frame.columns]
    if missing:
        raise KeyError(f"validated frame lacks stat_exog column(s) {missing}")
    stat_features = stat_feature_names(frame, config)
    frame, _ = encode_stat(frame, config.source.stat_exog, stat_features)
    features = feature_columns(config, stat_features)
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
    scaler, unusable = fit_usable_scaler(train_rows, features, config.scaling.method)
    if unusable:
        split_frame = split_frame[~split_frame["unique_id"].isin(list(unusable))]
    unit_scale = set(config_calendar_columns(config)) | set(stat_features)
    scaler = passthrough(scaler, [c for c in features if c in unit_scale])
    scaled = scaler.transform(split_frame)
    normalized = scaled[["unique_id", "ds", "split"]].copy()
    for column in features:
        normalized[column] = scaled[column].to_numpy(dtype=np.float32)
    if flags:
        normalized[IMPUTED] = split_frame[IMPUTED].to_numpy(dtype=bool)
    return normalized.reset_index(drop=True), scaler


def series_left_out(
    frame: pd.DataFrame, scaler: SeriesScaler, cutoffs: SplitCutoffs, config: PipelineConfig
) -> dict[str, str]:
    """Series of `frame` that normalize left out, and why: no row before the train cutoff, or
    training statistics that are not finite or absurd (computed again for those series only)."""
    missing = frame[~frame["unique_id"].isin(scaler.series)]
    train = missing[cutoffs.labels(missing["ds"]) == SPLITS[0]]
    features = [c for c in feature_columns(config, stat_feature_names(frame, config)) if c in train]
    _, unusable = fit_usable_scaler(train, features, config.scaling.method)
    late = f"no row before the train cutoff {cutoffs.train_end.isoformat()}"
    return {
        str(series): unusable.get(str(series), late)
        for series in sorted(missing["unique_id"].astype(str).unique())
    }


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
    sections = config.digest("split", "scaling", "source", "features", "frequency")
    return content_key("normalize", sections, validated.sha256, code_version())


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
        roles = feature_roles(config, stat_feature_names(frame, config))
        left_out = series_left_out(frame, scaler, cutoffs, config)
        if left_out:
            logger.warning(
                "%d series left out of training: %s",
                len(left_out),
                "; ".join(f"{sid!r}: {why}" for sid, why in list(left_out.items())[:10]),
            )
            publish_table(
                f"normalize-left-out-{config.name}",
                [{"unique_id": sid, "reason": why} for sid, why in left_out.items()],
                "Series left out of training, and why",
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
            "features": list(roles),
            "feature_roles": roles,
            "splits": {row["split"]: row["rows"] for row in summary},
            "cutoffs": cutoffs.to_dict(),
            "series_left_out": left_out,
        }

    key = normalize_key(config, validated)
    return produce_artifact(config, "normalize", key, [validated], compute)
