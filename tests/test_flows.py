"""Whole flows on a temporary Prefect server: training, nightly forecast, reruns and resume."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.config import PipelineConfig
from tasks.registry import ModelRegistry
from tasks.storage import ArtifactStore
from tests.support import (
    HORIZON,
    LOOK_BACK,
    REPO,
    SERIES,
    settled_states,
    small_config,
    train_small_champion,
    write_small_source,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """A store with a promoted champion, trained once for the module."""
    return train_small_champion(tmp_path_factory.mktemp("trained"), "2026-11-20")


def read_forecast(config: PipelineConfig, run_date: str) -> pd.DataFrame:
    path = Path(config.storage.root) / "forecasts" / config.name / f"run_date={run_date}"
    return pd.read_parquet(path / "forecast.parquet")


def task_states(flow_run_id: str, expected: Collection[str]) -> dict[str, str]:
    """Task name -> state name of one flow run, read back from the Prefect API once settled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name.split("-")[0]: run.state for run in runs}

    states = settled_states(lambda: asyncio.run(read()), expected, f"tasks of {flow_run_id}")
    return {name: state.name for name, state in states.items()}


def test_training_registers_a_champion_with_metrics_against_baselines(trained) -> None:
    registry = ModelRegistry(ArtifactStore(trained.storage.root), trained.name)
    version = registry.champion_version()
    assert version is not None
    metrics = registry.metrics(version)
    assert {"lstm", "naive", "seasonal_naive"} <= set(metrics["model"])
    assert set(SERIES) <= set(metrics["unique_id"])
    meta = registry.load(version).metadata
    assert meta["look_back"] == LOOK_BACK and meta["horizon"] == HORIZON
    # The calendar (on by default) is known in advance: read over the horizon, unlike Cubs_Home.
    calendar = ["cal_dow_sin", "cal_dow_cos", "cal_doy_sin", "cal_doy_cos"]
    assert meta["input_features"] == ["y", "Cubs_Home", *calendar]
    assert meta["future_features"] == calendar
    assert meta["quantiles"] == [0.1, 0.5, 0.9] and meta["ensemble_size"] == 3
    # Refit: the served model and the pre-cutoff model the gate scores it with are both kept.
    assert {"model.keras", "evaluation_model.keras"} <= set(meta["files"])
    assert meta["refit_epochs"] >= 1


def test_forecast_has_one_row_per_series_and_step_on_the_future_grid(trained) -> None:
    from flows.forecasting import forecast_flow

    summary = forecast_flow(trained, "2016-08-15")
    forecast = read_forecast(trained, "2016-08-15")
    assert summary.rows == len(forecast) == len(SERIES) * HORIZON
    assert sorted(forecast["unique_id"].unique()) == SERIES
    assert (
        forecast.groupby("unique_id")["step"]
        .apply(list)
        .map(lambda steps: steps == list(range(1, HORIZON + 1)))
        .all()
    )
    source = pd.read_parquet(trained.source.path)
    last_day = source["timestamp"].max()
    first = forecast.groupby("unique_id")["ds"].min().dt.tz_convert("America/Chicago")
    assert (first.dt.tz_localize(None).dt.normalize() == last_day + pd.Timedelta(days=1)).all()
    assert (
        forecast["ds"]
        .diff()
        .dropna()
        .isin([pd.Timedelta(days=1), -pd.Timedelta(days=HORIZON - 1)])
        .all()
    )
    assert forecast["yhat"].notna().all()
    assert (forecast["model_version"] == summary.model_version).all()


def test_same_date_twice_gives_one_partition_with_identical_forecasts(trained) -> None:
    from flows.forecasting import forecast_flow

    partition = Path(trained.storage.root) / "forecasts" / trained.name / "run_date=2016-08-16"
    first_run = forecast_flow(trained, "2016-08-16")
    first = (partition / "forecast.parquet").read_bytes()
    second_run = forecast_flow(trained, "2016-08-16")
    assert first_run.run_id != second_run.run_id  # it really ran again
    assert [p.name for p in partition.iterdir()] == ["forecast.parquet"]
    assert (partition / "forecast.parquet").read_bytes() == first  # byte-identical replay


TASKS = ("ingest", "validate", "predict")


def test_a_run_failing_at_predict_reruns_with_upstream_tasks_cached(tmp_path: Path) -> None:
    from prefect.client.schemas.objects import StateType

    from flows.forecasting import forecast_flow
    from flows.training import training_flow

    config = small_config(
        write_small_source(tmp_path / "data"), tmp_path / "store", forecast={"fallback": False}
    )
    failed = forecast_flow(config, "2016-08-15", return_state=True)
    assert failed.type == StateType.FAILED
    assert "train one first" in str(failed.message)
    assert task_states(str(failed.state_details.flow_run_id), TASKS) == {
        "ingest": "Completed",
        "validate": "Completed",
        "predict": "Failed",
    }

    training_flow(config, "2026-11-23")  # the fix: a champion now exists
    rerun = forecast_flow(config, "2016-08-15", return_state=True)
    assert rerun.type == StateType.COMPLETED
    assert task_states(str(rerun.state_details.flow_run_id), TASKS) == {
        "ingest": "Cached",
        "validate": "Cached",
        "predict": "Completed",
    }


KILLED_WRITER = """
import os, sys, time
import tasks.storage as storage
from flows.forecasting import forecast_flow
from tasks.config import PipelineConfig

real_replace = os.replace

def stall_before_forecast_rename(src, dst):
    if "forecasts" in str(dst):
        open(sys.argv[2], "w").close()  # tell the test: staged, about to rename
        time.sleep(600)
    real_replace(src, dst)

storage.os.replace = stall_before_forecast_rename
forecast_flow(PipelineConfig.model_validate_json(open(sys.argv[1]).read()), "2016-08-10")
"""


def test_sigkill_during_the_forecast_write_keeps_the_previous_forecast(
    trained, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.forecasting import forecast_flow

    forecast_flow(trained, "2016-08-10")
    target = Path(trained.storage.root) / "forecasts" / trained.name / "run_date=2016-08-10"
    before = (target / "forecast.parquet").read_bytes()
    before_inode = (target / "forecast.parquet").stat().st_ino

    config_file, signal_file = tmp_path / "config.json", tmp_path / "staged"
    config_file.write_text(trained.model_dump_json())
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(config_file), str(signal_file)],
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert child.poll() is None, "the forecast process ended before its write"
            assert time.monotonic() < deadline, "the forecast never reached its write"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert (target / "forecast.parquet").read_bytes() == before  # untouched, still readable
    assert len(pd.read_parquet(target / "forecast.parquet")) == len(SERIES) * HORIZON

    summary = forecast_flow(trained, "2016-08-10")  # the rerun completes and replaces it
    assert summary.rows == len(SERIES) * HORIZON
    # Replaced by a new file (a new inode from the rename) with the same deterministic bytes.
    assert (target / "forecast.parquet").stat().st_ino != before_inode
    assert (target / "forecast.parquet").read_bytes() == before
    visible = [p.name for p in target.iterdir() if not p.name.startswith(".")]
    assert visible == ["forecast.parquet"]  # readers skip the killed run's hidden staging file


def test_forecast_without_a_champion_tells_the_user_to_train(tmp_path: Path) -> None:
    from flows.forecasting import forecast_flow
    from tasks.predict import NoChampionError

    config = small_config(
        write_small_source(tmp_path / "data"), tmp_path / "store", forecast={"fallback": False}
    )
    with pytest.raises(NoChampionError, match="forecast train"):
        forecast_flow(config, "2016-08-11")


def test_without_a_champion_the_night_gets_the_labelled_seasonal_naive_fallback(
    tmp_path: Path,
) -> None:
    from flows.forecasting import forecast_flow

    source = write_small_source(tmp_path / "data")
    config = small_config(source, tmp_path / "store")  # forecast.fallback defaults to on
    summary = forecast_flow(config, "2016-08-12")
    assert summary.fallback and summary.model_version == "fallback-seasonal-naive"
    forecast = read_forecast(config, "2016-08-12")
    assert forecast["fallback"].all() and set(forecast["model"]) == {"seasonal_naive"}
    history = pd.read_parquet(source).sort_values(["series_id", "timestamp"])
    history = history[history["timestamp"] < "2016-08-12"]  # the as-of cut of that night
    for station in SERIES:
        week = history.loc[history["series_id"] == station, "target"].to_numpy()[-7:]
        got = forecast.loc[forecast["unique_id"] == station, "yhat"].to_numpy()
        np.testing.assert_array_equal(got, np.resize(week, HORIZON))


def test_series_the_champion_cannot_forecast_are_listed_not_dropped(trained, tmp_path) -> None:
    from flows.forecasting import forecast_flow

    source = pd.read_parquet(trained.source.path)
    newcomer = source[source["series_id"] == SERIES[0]].assign(series_id="Newcomer")
    shorty = source[source["series_id"] == SERIES[1]].tail(5).assign(series_id="Shorty")
    path = tmp_path / "with-newcomer.parquet"
    pd.concat([source, newcomer, shorty]).to_parquet(path, index=False)
    config = trained.model_copy(
        update={"source": trained.source.model_copy(update={"path": str(path)})}
    )
    summary = forecast_flow(config, "2016-08-17")
    assert summary.skipped == {
        "Newcomer": "not in the champion's training data (retrain to include it)",
        "Shorty": f"only 5 steps; a forecast needs {LOOK_BACK}",
    }
    assert summary.series == len(SERIES)
    assert set(read_forecast(config, "2016-08-17")["unique_id"]) == set(SERIES)
