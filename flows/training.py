"""The training flow: the story from raw data to a registered (maybe promoted) model."""

from __future__ import annotations

from prefect import flow

from tasks.config import PipelineConfig
from tasks.evaluate import evaluate_task
from tasks.ingest import ingest_task
from tasks.normalize import normalize_task
from tasks.register import Registration, register_task
from tasks.runtime import dated_run_name, resolve_run_date
from tasks.storage import ArtifactRef
from tasks.train import train_task
from tasks.validate import validate_task
from tasks.window import window_task


@flow(
    name="prepare-data",
    flow_run_name=dated_run_name("prepare"),
    log_prints=True,
    persist_result=False,
)
def data_flow(config: PipelineConfig, run_date: str | None = None) -> ArtifactRef:
    """Ingest, validate the rows before the run date, normalize and window: the windows
    artifact that training reads."""
    run_date = resolve_run_date(run_date, config.schedule.timezone)
    ingested = ingest_task(config, run_date)
    validated = validate_task(config, ingested, as_of=run_date)
    normalized = normalize_task(config, validated)
    return window_task(config, normalized)


@flow(name="training", flow_run_name=dated_run_name("train"), log_prints=True, persist_result=False)
def training_flow(config: PipelineConfig, run_date: str | None = None) -> Registration:
    """Prepare the data, train the LSTM, evaluate it against baselines, register it."""
    # resolved here: the data subflow's own start is not this (maybe scheduled) run's night
    windows = data_flow(config, resolve_run_date(run_date, config.schedule.timezone))
    trained = train_task(config, windows)
    evaluation = evaluate_task(config, windows, trained)
    return register_task(config, windows, trained, evaluation)
