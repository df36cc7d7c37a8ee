"""The backtest flow: how well would this configuration have forecast the past, fold by fold."""

from __future__ import annotations

from prefect import flow

from tasks.backtest import backtest_task
from tasks.config import PipelineConfig
from tasks.ingest import ingest_task
from tasks.runtime import dated_run_name, resolve_run_date
from tasks.storage import ArtifactRef
from tasks.validate import validate_task


@flow(
    name="backtest", flow_run_name=dated_run_name("backtest"), log_prints=True, persist_result=False
)
def backtest_flow(config: PipelineConfig, run_date: str | None = None) -> ArtifactRef:
    """Ingest and validate the rows before the run date, then refit and score the model on
    every backtest fold."""
    run_date = resolve_run_date(run_date, config.schedule.timezone)
    ingested = ingest_task(config, run_date)
    validated = validate_task(config, ingested, as_of=run_date)
    return backtest_task(config, validated)
