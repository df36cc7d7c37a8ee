"""Sliding windows over many series, as start indexes into one array of rows.

The window artifact stores one integer per window (its first row) instead of the windows
themselves: a window of look_back + horizon rows would otherwise be stored look_back + horizon
times over. A batch is gathered from the normalized rows with one fancy-indexing call, so training
streams batches with memory bounded by the batch, and no Python loop runs over windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    look_back: int
    horizon: int
    stride: int = 1

    def __post_init__(self) -> None:
        if min(self.look_back, self.horizon, self.stride) < 1:
            raise ValueError(f"look_back, horizon and stride must be >= 1, got {self}")

    @property
    def length(self) -> int:
        return self.look_back + self.horizon


def segment_bounds(segment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths of the runs of equal consecutive values in `segment_ids`."""
    segment_ids = np.asarray(segment_ids)
    if segment_ids.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    changes = np.flatnonzero(segment_ids[1:] != segment_ids[:-1]) + 1
    starts = np.concatenate(([0], changes)).astype(np.int64)
    lengths = np.diff(np.append(starts, segment_ids.size)).astype(np.int64)
    return starts, lengths


def window_starts(segment_ids: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """First row of every window lying wholly inside one run of equal `segment_ids`.

    A run is one series within one split, so no window crosses a series or split boundary.
    Windows start at each run's first row and step by `spec.stride`.
    """
    run_starts, run_lengths = segment_bounds(segment_ids)
    per_run = np.maximum(run_lengths - spec.length, -1) // spec.stride + 1
    total = int(per_run.sum())
    # Offsets 0, stride, 2*stride... within each run, without a Python loop over runs.
    first_of_run = np.repeat(np.cumsum(per_run) - per_run, per_run)
    within = (np.arange(total, dtype=np.int64) - first_of_run) * spec.stride
    return np.repeat(run_starts, per_run) + within


def gather_windows(
    values: np.ndarray, starts: np.ndarray, spec: WindowSpec, target_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, look_back, features) and targets (n, horizon) for the windows at `starts`.

    `values` is (rows, features); the target is column `target_index`.
    """
    starts = np.asarray(starts, dtype=np.int64)
    rows = starts[:, None] + np.arange(spec.length, dtype=np.int64)
    windows = values[rows]  # (n, length, features): one gather, no loop
    return windows[:, : spec.look_back, :], windows[:, spec.look_back :, target_index]
