"""The pipeline on a real Prefect server, deployed and run the way docs/production.md says.

Parametrized over the two stacks (conftest.py): SQLite without auth, PostgreSQL with auth.
Each test reads what the commands produced: deployments as the server stored them, flow run
states, artifacts, and the forecast Parquet the nightly run wrote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.integration.live_prefect import REPO
from tests.integration.stacks import DEPLOY_TIMEZONE, POOL, RUN_DATE, SERIES, PipelineRuns, Stack

pytestmark = pytest.mark.integration

DEPLOYMENTS = {
    "nightly-forecast/nightly-forecast": "0 2 * * *",
    "training/weekly-retrain": "0 3 * * 0",
}


@pytest.mark.parametrize(("deployment", "cron"), DEPLOYMENTS.items())
def test_prefect_deploy_registers_the_yaml_deployments(
    stack: Stack, deployment: str, cron: str
) -> None:
    with stack.server.api() as api:
        response = api.get(f"/deployments/name/{deployment}")
    assert response.status_code == 200, response.text
    stored = response.json()

    # The worker runs the flow from this clone: the build step's `pwd`, resolved at deploy time.
    assert stored["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    assert stored["work_pool_name"] == POOL
    (schedule,) = stored["schedules"]
    assert schedule["schedule"]["cron"] == cron
    assert schedule["schedule"]["timezone"] == DEPLOY_TIMEZONE  # FORECAST_TIMEZONE reached it
    assert stored["parameters"]["config"]["schedule"]["timezone"] == DEPLOY_TIMEZONE
    assert stored["global_concurrency_limit"]["limit"] == 1
    assert stored["concurrency_options"]["collision_strategy"] == "ENQUEUE"


def test_weekly_retrain_run_promotes_a_champion(stack: Stack, pipeline: PipelineRuns) -> None:
    run = pipeline.train
    assert run["state_type"] == "COMPLETED", stack.server.diagnostics(run["id"])
    assert run["name"] == f"train-{RUN_DATE}"
    name = pipeline.config["name"]
    assert (pipeline.store / "models" / name / "champion.json").is_file()
    keys = {artifact["key"] for artifact in stack.server.artifacts(run["id"])}
    assert f"metrics-{name}" in keys


def test_nightly_forecast_run_writes_one_row_per_series_and_step(
    stack: Stack, pipeline: PipelineRuns
) -> None:
    run = pipeline.forecast
    assert run["state_type"] == "COMPLETED", stack.server.diagnostics(run["id"])
    assert run["name"] == f"forecast-{RUN_DATE}"
    horizon = pipeline.config["window"]["horizon"]

    forecast = pd.read_parquet(pipeline.forecast_file)

    assert len(forecast) == len(SERIES) * horizon
    assert sorted(forecast["unique_id"].unique()) == sorted(SERIES)
    ordered = forecast.sort_values(["unique_id", "step"])
    for _, steps in ordered.groupby("unique_id")["step"]:
        assert steps.tolist() == list(range(1, horizon + 1))
    assert np.isfinite(forecast["yhat"].to_numpy()).all()
    # Written by this very run (the file holds no run id: replays of a night are byte-identical).
    written = pd.Timestamp(pipeline.forecast_file.stat().st_mtime, unit="s", tz="UTC")
    assert written >= pd.Timestamp(run["start_time"]), (written, run["start_time"])
    assert not forecast["fallback"].any()

    # Each series' forecast starts one day after its last observation before the run date (an
    # as-of cut; naive times are in the source's zone, stored as UTC), one day a step.
    source = pd.read_parquet(pipeline.config["source"]["path"])
    source = source[source["timestamp"] < pd.Timestamp(RUN_DATE)]
    last = (
        source.groupby("series_id")["timestamp"]
        .max()
        .dt.tz_localize(pipeline.config["source"]["timezone"])
    )
    first = ordered.groupby("unique_id")["ds"].first()
    expected = (last + pd.Timedelta(days=1)).dt.tz_convert("UTC")
    assert (first.sort_index() == expected.sort_index().to_numpy()).all(), (first, expected)
    gaps = ordered.groupby("unique_id")["ds"].diff().dropna()
    assert (gaps == pd.Timedelta(days=1)).all()

    keys = {artifact["key"] for artifact in stack.server.artifacts(run["id"])}
    assert f"forecast-summary-{pipeline.config['name']}" in keys
