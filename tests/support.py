"""Small real data and configs shared by the flow, deployment and benchmark-style tests."""

from __future__ import annotations

from pathlib import Path

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
                "covariates": ["Cubs_Home"],
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
