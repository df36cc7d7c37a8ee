"""The deployments: both load, carry the schedules, and the nightly one really forecasts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deployments.serve import build_deployments
from tasks.config import PipelineConfig, ScheduleConfig, load_config
from tests.support import HORIZON, SERIES, settled_states, small_config, write_small_source

REPO = Path(__file__).resolve().parent.parent


def test_both_deployments_load_with_their_schedules_and_one_run_at_a_time() -> None:
    config = load_config(REPO / "configs" / "chicago.toml", environ={})
    config = config.model_copy(update={"schedule": ScheduleConfig(timezone="America/Chicago")})
    deployments = {d.name: d for d in build_deployments(config)}
    assert set(deployments) == {"nightly-forecast", "weekly-retrain"}
    nightly, weekly = deployments["nightly-forecast"], deployments["weekly-retrain"]
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert weekly.schedules[0].schedule.cron == "0 3 * * 0"
    assert nightly.schedules[0].schedule.timezone == "America/Chicago"
    for deployment in deployments.values():
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        assert PipelineConfig.model_validate(deployment.parameters["config"]) == config


@pytest.mark.usefixtures("prefect_harness")
def test_served_nightly_deployment_writes_the_forecast(tmp_path: Path, monkeypatch) -> None:
    """Register both deployments, trigger the nightly one, let a runner execute it."""
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from flows.training import training_flow

    monkeypatch.chdir(REPO)  # the runner starts the flow from its entrypoint file
    config = small_config(write_small_source(tmp_path / "data"), tmp_path / "store")
    assert training_flow(config, "2026-11-20").promoted
    runner = Runner(query_seconds=1)
    for deployment in build_deployments(config):
        deployment.apply()
        runner.add_deployment(deployment)
    flow_run = run_deployment(
        "nightly-forecast/nightly-forecast", parameters={"run_date": "2016-08-15"}, timeout=0
    )
    asyncio.run(runner.start(run_once=True))  # runs the due flow run in a subprocess, then returns

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:

        def read() -> dict[str, Any]:
            return {"nightly": client.read_flow_run(flow_run.id).state}

        settled_states(read, ["nightly"], f"flow run {flow_run.id}")
        finished = client.read_flow_run(flow_run.id)
    assert finished.state.is_completed(), finished.state
    assert finished.name == "forecast-2016-08-15"
    out = (
        tmp_path / "store" / "forecasts" / config.name / "run_date=2016-08-15" / "forecast.parquet"
    )
    forecast = pd.read_parquet(out)
    assert len(forecast) == len(SERIES) * HORIZON
    assert forecast.groupby("unique_id").size().to_dict() == dict.fromkeys(SERIES, HORIZON)
