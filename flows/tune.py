"""The tuning flow: prepare the data once, search hyperparameters trial by trial, publish the best."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.training import data_flow
from tasks.config import PipelineConfig
from tasks.runtime import dated_run_name, resolve_run_date
from tasks.tune import (
    TuneSummary,
    new_study,
    normalized_input_task,
    run_study,
    study_plan,
    tune_report_task,
    tune_trial,
)
from tasks.window import window_task


@flow(name="tune", flow_run_name=dated_run_name("tune"), log_prints=True, persist_result=False)
def tuning_flow(
    config: PipelineConfig,
    trials: int | None = None,
    time_budget_s: float | None = None,
    out: str | None = None,
    run_date: str | None = None,
) -> TuneSummary:
    """Prepare the windows, then run Optuna trials as parallel `tune-trial` task runs (at most
    `tune.max_workers` at once, within the trial count and time budget), each scored on
    validation MASE; write the best config to `out` and publish the study."""
    windows = data_flow(config, resolve_run_date(run_date, config.schedule.timezone))
    normalized = normalized_input_task(config, windows)
    plan = study_plan(config, trials, time_budget_s)
    study = new_study(plan)
    with ThreadPoolTaskRunner(max_workers=plan.max_workers) as runner:

        def submit(number: int, trial_config: PipelineConfig) -> Any:
            # each look_back gets its own windows over the same rows (content-addressed: once)
            trial_windows = window_task(trial_config, normalized)
            parameters = {"config": trial_config, "windows": trial_windows, "trial": number}
            return runner.submit(tune_trial, parameters=parameters)

        records = run_study(study, plan, config, submit)
    return tune_report_task(config, plan, records, windows, out)
