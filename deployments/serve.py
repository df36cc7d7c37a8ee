"""Serve the nightly forecast and the weekly retrain from one process (the embedded default).

    python -m deployments.serve [configs/chicago.toml]      # or: forecast serve --config ...

The same two deployments are defined for `prefect deploy` in `deployments/prefect.yaml`.
Each allows one run at a time; a run that comes due while one is active waits its turn.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.forecasting import forecast_flow
from flows.training import training_flow
from tasks.config import PipelineConfig, load_config

ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def build_deployments(config: PipelineConfig) -> list[RunnerDeployment]:
    """`nightly-forecast` and `weekly-retrain`, scheduled in the config's time zone."""
    parameters = {"config": config.model_dump(mode="json")}
    schedule = config.schedule
    return [
        forecast_flow.to_deployment(
            name="nightly-forecast",
            schedules=[Cron(schedule.nightly_forecast_cron, timezone=schedule.timezone)],
            parameters=parameters,
            concurrency_limit=ONE_AT_A_TIME,
            tags=["forecast", config.name],
            description="Every night: forecast every series with the champion model.",
        ),
        training_flow.to_deployment(
            name="weekly-retrain",
            schedules=[Cron(schedule.weekly_retrain_cron, timezone=schedule.timezone)],
            parameters=parameters,
            concurrency_limit=ONE_AT_A_TIME,
            tags=["training", config.name],
            description="Every week: retrain, evaluate against baselines, promote if it passes.",
        ),
    ]


def serve_deployments(config_path: Path) -> None:
    serve(*build_deployments(load_config(config_path)))


if __name__ == "__main__":
    serve_deployments(Path(sys.argv[1] if len(sys.argv) > 1 else "configs/chicago.toml"))
