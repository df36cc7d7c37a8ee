"""The nightly forecast flow: tonight's data, checked, forecast by the champion, published."""

from __future__ import annotations

from prefect import flow

from tasks.config import PipelineConfig
from tasks.ingest import ingest_task
from tasks.predict import ForecastSummary, predict_task
from tasks.runtime import dated_run_name, nights, resolve_run_date
from tasks.validate import validate_task


@flow(
    name="nightly-forecast",
    flow_run_name=dated_run_name("forecast"),
    log_prints=True,
    persist_result=False,
)
def forecast_flow(config: PipelineConfig, run_date: str | None = None) -> ForecastSummary:
    """Ingest the latest data, validate the rows before the run date, forecast every series,
    write that night's partition."""
    run_date = resolve_run_date(run_date, config.schedule.timezone)
    ingested = ingest_task(config, run_date)
    validated = validate_task(config, ingested, purpose="forecast", as_of=run_date)
    return predict_task(config, validated, run_date)


def backfill(config: PipelineConfig, first: str, last: str) -> list[ForecastSummary]:
    """Replay the nightly forecast for every night from `first` to `last`, in order; each run
    sees only rows before its night and writes only its own partition."""
    return [forecast_flow(config, night) for night in nights(first, last)]
