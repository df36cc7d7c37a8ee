"""Window step: index every (look_back + horizon) window of the normalized rows, per split.

Why windows are an index and not a tensor
-----------------------------------------
The artifact holds one row per window: `start` (the window's first row in the normalized
artifact), `split` and `unique_id`. The windows themselves are never written:

- Storage: a materialized window repeats look_back + horizon rows of every feature, so a tensor
  artifact would be about look_back + horizon times the normalized data (70x for the Chicago
  config). The index costs one int64 per window (8 bytes, against 70 x 6 x 4 = 1,680 for the
  window's float32 values), so it is smaller than the normalized data it points into.
- Speed: a batch is gathered from the normalized float32 rows with one fancy-indexing call
  (`lstm_model.windowing.gather_windows`), no Python loop over windows: faster than the seed's
  per-window loop by the factor `benchmarks/bench_windowing.py` measures.
- Memory: training streams batches (`WindowedData.batches`), so memory is the normalized rows
  plus one batch, whatever the number of windows; the seed held every window in RAM at once.
- Correctness: windows never cross a series. A training window lies wholly in train rows; a
  validation or test window has all its targets in that split and takes its inputs from the
  rows before them (the past is known at the forecast origin), so short series are still
  scored. Evaluation windows with an imputed target are left out: filled values are not actuals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lstm_model.scaling import SeriesScaler
from lstm_model.windowing import (
    SPLITS,
    WindowSpec,
    gather_windows,
    iter_batches,
    split_window_starts,
)
from tasks.config import PipelineConfig, SplitConfig
from tasks.normalize import IMPUTED, InsufficientDataError, load_normalized, rows_needed
from tasks.runtime import StepResult, pipeline_task, produce_artifact, publish_table, run_logger
from tasks.storage import ArtifactError, ArtifactRef, ArtifactStore, code_version, content_key


def window_spec(config: PipelineConfig) -> WindowSpec:
    window = config.window
    return WindowSpec(look_back=window.look_back, horizon=window.horizon, stride=window.stride)


def window_index(normalized: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """One row per window: `start` row offset into `normalized`, its `split` and `unique_id`.

    The rules are `split_window_starts`': training windows inside train rows, evaluation
    windows labelled by their targets' split with inputs from earlier rows, imputed targets
    never scored.
    """
    codes = pd.Categorical(normalized["split"], categories=SPLITS).codes
    imputed = normalized[IMPUTED].to_numpy(dtype=bool) if IMPUTED in normalized.columns else None
    starts, split_codes = split_window_starts(normalized["unique_id"], codes, spec, imputed)
    return pd.DataFrame(
        {
            "start": starts.astype(np.int64),
            "split": pd.array(np.asarray(SPLITS, dtype=object)[split_codes], dtype="str"),
            "unique_id": normalized["unique_id"].iloc[starts].to_numpy(),
        }
    )


def windows_per_split(index: pd.DataFrame) -> dict[str, int]:
    counts = index["split"].value_counts()
    return {name: int(counts.get(name, 0)) for name in SPLITS}


def require_training_windows(counts: dict[str, int], spec: WindowSpec) -> None:
    """Fail here, with the reason, rather than in the trainer with an empty dataset."""
    if counts["train"] == 0:
        raise InsufficientDataError(
            f"no training windows: no series has {spec.length} consecutive train rows "
            f"(look_back {spec.look_back} + horizon {spec.horizon}) before the train cutoff; "
            "use a shorter window, a larger split.train or longer series"
        )


def require_evaluation_windows(
    counts: dict[str, int], spec: WindowSpec, split: SplitConfig
) -> None:
    """Training early-stops on validation windows and is scored on test windows: fail here,
    naming the split and what a window of it needs, rather than in the trainer or the gate."""
    empty = [name for name in SPLITS[1:] if counts[name] == 0]
    if empty:
        need = spec.rows_per_split()
        raise InsufficientDataError(
            f"no {' and no '.join(empty)} windows: no series has "
            f"{' / '.join(str(need[name]) for name in empty)} {' / '.join(empty)} rows "
            f"(horizon {spec.horizon}, stride {spec.stride}) after {spec.look_back} earlier "
            f"rows (look_back); series spanning the whole period need at least "
            f"{rows_needed(spec, split)} steps at split.train = {split.train} and "
            f"split.validation = {split.validation}"
        )


@dataclass(frozen=True, eq=False)
class WindowedData:
    """What training and evaluation read: the normalized rows plus window starts per split."""

    values: np.ndarray  # (rows, features) float32, normalized, in the artifact's row order
    starts: dict[str, np.ndarray]  # split -> (n,) int64 first row of each window
    unique_ids: dict[str, np.ndarray]  # split -> (n,) series of each window
    spec: WindowSpec
    features: list[str]  # column order of `values`; the target is features[target_index]
    scaler: SeriesScaler  # fitted on train rows; `inverse_target` undoes the scaling
    ds: np.ndarray  # (rows,) timestamp of each row, datetime64 in UTC
    target_index: int = 0
    normalized: ArtifactRef | None = None  # the rows' artifact, when they came from the store
    feature_roles: dict[str, str] = field(default_factory=dict)  # column -> target|hist|futr|stat

    def all_starts(self) -> np.ndarray:
        """Every labelled window up to the cut, in row order: what a refit trains on."""
        return np.sort(np.concatenate([self.starts[name] for name in SPLITS]))

    def batches(
        self, split: str, batch_size: int, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Streamed (inputs, targets) float32 batches of one split."""
        return iter_batches(
            self.values, self.starts[split], self.spec, batch_size, shuffle, seed, self.target_index
        )

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """All (inputs, targets) of one split at once: for evaluation-sized splits."""
        return gather_windows(self.values, self.starts[split], self.spec, self.target_index)

    def target_ds(self, split: str) -> np.ndarray:
        """(n, horizon) timestamps of each window's target steps, for labelling forecasts."""
        steps = np.arange(self.spec.look_back, self.spec.length, dtype=np.int64)
        return self.ds[self.starts[split][:, None] + steps]


def window_key(config: PipelineConfig, normalized: ArtifactRef) -> str:
    return content_key("window", config.digest("window"), normalized.sha256, code_version())


def utc_datetimes(ds: pd.Series) -> np.ndarray:
    # numpy has no time zones: store UTC wall times so arithmetic and comparisons stay exact.
    if getattr(ds.dt, "tz", None) is not None:
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    return ds.to_numpy()


def _normalized_ref(meta: dict, window_uri: str) -> ArtifactRef:
    refs = [ArtifactRef(**ref) for ref in meta.get("inputs", [])]
    for ref in refs:
        if ref.uri == meta.get("series"):
            return ref
    if len(refs) == 1:
        return refs[0]
    raise ArtifactError(f"{window_uri}: metadata does not name its normalized artifact")


def load_windows(store: ArtifactStore, window_ref: ArtifactRef) -> WindowedData:
    """Read the window index and the normalized rows it points into (both checksum-verified)."""
    index, meta = store.read_table(window_ref)
    normalized_ref = _normalized_ref(meta, window_ref.uri)
    frame, scaler, features = load_normalized(store, normalized_ref)
    roles = store.read_metadata(normalized_ref.uri).get("feature_roles", {})
    spec = WindowSpec(meta["look_back"], meta["horizon"], meta["stride"])
    if len(index) and int(index["start"].max()) + spec.length > len(frame):
        raise ArtifactError(
            f"{window_ref.uri}: windows reach past the {len(frame)} rows of {normalized_ref.uri}"
        )
    by_split = {name: index[index["split"] == name] for name in SPLITS}
    return WindowedData(
        values=np.ascontiguousarray(frame[features].to_numpy(dtype=np.float32)),
        starts={name: part["start"].to_numpy(dtype=np.int64) for name, part in by_split.items()},
        unique_ids={name: part["unique_id"].to_numpy() for name, part in by_split.items()},
        spec=spec,
        features=features,
        scaler=scaler,
        ds=utc_datetimes(frame["ds"]),
        normalized=normalized_ref,
        target_index=features.index("y"),
        feature_roles=dict(roles),
    )


@pipeline_task("window")
def window_task(config: PipelineConfig, normalized: ArtifactRef) -> ArtifactRef:
    """Index the windows of every split; the index points into the normalized artifact."""

    def compute(store: ArtifactStore) -> StepResult:
        logger = run_logger()
        frame, _, features = load_normalized(store, normalized)
        spec = window_spec(config)
        index = window_index(frame, spec)
        counts = windows_per_split(index)
        require_training_windows(counts, spec)
        require_evaluation_windows(counts, spec, config.split)
        logger.info(
            "Indexed %s windows (look_back %d, horizon %d, stride %d): %s",
            f"{len(index):,}",
            spec.look_back,
            spec.horizon,
            spec.stride,
            ", ".join(f"{name} {count:,}" for name, count in counts.items()),
        )
        publish_table(
            f"window-{config.name}",
            [{"split": name, "windows": count} for name, count in counts.items()],
            "Windows per split (evaluation windows are labelled by their targets)",
        )
        return index, {
            "look_back": spec.look_back,
            "horizon": spec.horizon,
            "stride": spec.stride,
            "features": features,
            "windows": counts,
            "series": normalized.uri,
        }

    key = window_key(config, normalized)
    return produce_artifact(config, "window", key, [normalized], compute)
