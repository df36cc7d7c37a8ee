"""Stacks: what docs/production.md tells a user to set up, and the pipeline run on it.

A *stack* is `prefect server start`, a process work pool, `prefect deploy --all --prefect-file
deployments/prefect.yaml` and a worker. The pipeline then runs on it as a user would:
`prefect deployment run` of the weekly retrain (a tiny config, so it trains in seconds and
promotes), then of the nightly forecast.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.live_prefect import PREFECT_YAML, REPO, PrefectServer

POOL = "forecast-pool"  # the work pool deployments/prefect.yaml names
AUTH_STRING = "forecast:integration-secret"
RUN_DATE = "2016-08-01"  # the demo's night: its horizon's home games lie in the bundled data
SERIES = ["Addison", "Ashland", "Austin"]
DEPLOY_TIMEZONE = "America/Chicago"  # FORECAST_TIMEZONE at deploy time: must reach the schedules
OUTPUT = Path(__file__).resolve().parent / "output"  # screenshots for people (git-ignored)


def prefect_yaml_config() -> dict[str, Any]:
    """The `config` parameter exactly as deployments/prefect.yaml declares it (YAML anchors)."""
    document = yaml.safe_load(PREFECT_YAML.read_text())
    return copy.deepcopy(document["deployments"][0]["parameters"]["config"])


def tiny_config(workdir: Path) -> dict[str, Any]:
    """The deployed config, shrunk: 3 stations, ~14 months, 1 epoch of LSTM(8), storage in tmp."""
    import pandas as pd

    frame = pd.read_parquet(REPO / "data" / "chicago_l_daily.parquet")
    frame = frame[frame["series_id"].isin(SERIES) & (frame["timestamp"] >= "2015-06-01")]
    data = workdir / "data" / "chicago_subset.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(data, index=False)

    config = prefect_yaml_config()
    config["name"] = "chicago-l-it"
    config["source"]["path"] = str(data)
    config["storage"]["root"] = str(workdir / "store")
    config["window"] = {"look_back": 14, "horizon": 7, "stride": 1}
    config["model"]["units"] = [8]
    config["training"].update(epochs=1, batch_size=64, patience=0)
    config["evaluation"].update(gate_must_beat="none", plot_series=1, baseline_time_budget_s=3)
    config["schedule"]["timezone"] = "UTC"  # a build-step placeholder in the file
    return config


@dataclass
class PipelineRuns:
    """The retrain and the nightly forecast, run through the deployments on one stack."""

    config: dict[str, Any]
    train: dict[str, Any]
    forecast: dict[str, Any]

    @property
    def store(self) -> Path:
        return Path(self.config["storage"]["root"])

    @property
    def forecast_file(self) -> Path:
        name = self.config["name"]
        return self.store / "forecasts" / name / f"run_date={RUN_DATE}" / "forecast.parquet"


@dataclass
class Stack:
    """A server with the project deployed and a process worker polling its pool."""

    backend: str
    server: PrefectServer
    workdir: Path
    _runs: PipelineRuns | None = field(default=None, repr=False)

    def pipeline(self) -> PipelineRuns:
        """Retrain (promotes a champion), then forecast; run once per stack."""
        if self._runs is None:
            config = tiny_config(self.workdir)
            parameters = {"config": config, "run_date": RUN_DATE}
            train_id = self.server.run_deployment("training/weekly-retrain", parameters)
            train = self.server.wait_for_state(train_id, timeout=420)
            forecast_id = self.server.run_deployment(
                "nightly-forecast/nightly-forecast", parameters
            )
            forecast = self.server.wait_for_state(forecast_id, timeout=300)
            self._runs = PipelineRuns(config=config, train=train, forecast=forecast)
        return self._runs


def deploy_stack(backend: str, server: PrefectServer, workdir: Path) -> Stack:
    """The production path of docs/production.md, command for command."""
    server.cli("work-pool", "create", "--type", "process", POOL)
    server.cli(
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(PREFECT_YAML.relative_to(REPO)),
        env={"FORECAST_TIMEZONE": DEPLOY_TIMEZONE},
    )
    server.start_worker(POOL, "worker")
    return Stack(backend=backend, server=server, workdir=workdir)
