"""Small real data and configs shared by the flow, deployment and benchmark-style tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.config import PipelineConfig

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "data" / "chicago_l_daily.parquet"
SERIES = ["Austin", "Clark_Lake", "Harlem"]
LOOK_BACK, HORIZON = 14, 7


def write_small_source(folder: Path, days: int = 300) -> Path:
    """Three real stations, their last `days` days, one covariate: a fast real data set."""
    frame = pd.read_parquet(BUNDLED, columns=["series_id", "timestamp", "target", "Cubs_Home"])
    frame = frame[frame["series_id"].isin(SERIES)]
    frame = frame[frame["timestamp"] > frame["timestamp"].max() - pd.Timedelta(days=days)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stations.parquet"
    frame.to_parquet(path, index=False)
    return path


def small_config(source: Path, root: Path, **sections: dict) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "flowtest",
            "source": {
                "path": str(source),
                "id_column": "series_id",
                "time_column": "timestamp",
                "target_column": "target",
                "hist_exog": ["Cubs_Home"],
                "timezone": "America/Chicago",
            },
            "window": {"look_back": LOOK_BACK, "horizon": HORIZON},
            "model": {"units": [8]},
            "training": {"epochs": 1, "batch_size": 64},
            "evaluation": {"gate_must_beat": "none", "plot_series": 2},
            "storage": {"root": str(root)},
            **sections,
        }
    )


SETTLE_SECONDS = 120.0
"""How long a test waits for Prefect states to settle: generous, for a busy shared machine."""


def settled_states(
    read: Callable[[], dict[str, Any]],
    expected: Collection[str],
    what: str,
    timeout: float = SETTLE_SECONDS,
) -> dict[str, Any]:
    """Poll `read` (name -> Prefect State) until every expected name is there and final.

    Prefect 3 records task-run states from events, after the flow call returns: one read may
    still see Pending or Running, a run whose state is not recorded yet (None), or miss a run.
    Fails naming what never settled.
    """
    deadline = time.monotonic() + timeout
    while True:
        states = read()
        waiting = [name for name in expected if name not in states]
        waiting += [name for name, state in states.items() if state is None or not state.is_final()]
        if not waiting:
            return states
        if time.monotonic() > deadline:
            shown = {name: getattr(state, "name", state) for name, state in states.items()}
            raise AssertionError(f"{what} not settled after {timeout:.0f} s: {waiting} in {shown}")
        time.sleep(0.25)


def train_small_champion(base: Path, run_date: str) -> PipelineConfig:
    """The small real source under `base` and a store with a champion trained on it (the gate
    is off in `small_config`, so the one epoch's model is promoted). Needs the Prefect harness."""
    from flows.training import training_flow

    config = small_config(write_small_source(base / "data"), base / "store")
    registration = training_flow(config, run_date)
    assert registration.promoted, registration.reason
    return config
