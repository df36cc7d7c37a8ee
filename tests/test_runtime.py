"""What every task shares: which failures are retried, run dates, artifact keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tasks.ingest import IngestError
from tasks.runtime import (
    RunDateError,
    artifact_key,
    is_transient_io_error,
    nights,
    resolve_run_date,
    run_date_for,
)
from tasks.storage import ArtifactError
from tasks.validate import DataValidationError
from tests.support import REPO, small_config


@pytest.mark.parametrize(
    "error",
    [TimeoutError("read timed out"), ConnectionResetError("peer reset"), OSError("EIO")],
)
def test_transient_io_errors_are_retried(error: BaseException) -> None:
    assert is_transient_io_error(error)


@pytest.mark.parametrize(
    "error",
    [
        ArtifactError("x.parquet: not a readable Parquet file"),  # corrupt: retrying can't help
        FileNotFoundError("x.parquet"),
        PermissionError("denied"),
        IngestError("empty file"),
        ValueError("bad"),
    ],
)
def test_permanent_errors_are_not_retried(error: BaseException) -> None:
    assert not is_transient_io_error(error)


def test_validation_errors_are_not_retried() -> None:
    assert not is_transient_io_error(DataValidationError.__new__(DataValidationError))


def test_run_date_is_checked_and_defaults_to_today() -> None:
    assert resolve_run_date("2026-11-24") == "2026-11-24"
    assert len(resolve_run_date(None)) == 10
    for bad in ("24/11/2026", "2026-13-01", "tomorrow", "20261124", "2026-02-30"):
        with pytest.raises(RunDateError, match=f"{bad!r} is not a date YYYY-MM-DD"):
            resolve_run_date(bad)


def test_run_date_outside_a_flow_run_is_today_in_the_schedule_zone() -> None:
    def today() -> str:
        return datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()  # UTC+14

    before = today()
    resolved = resolve_run_date(None, "Pacific/Kiritimati")
    assert resolved in {before, today()}  # the same date unless midnight passed in between


def test_a_scheduled_run_belongs_to_its_scheduled_night_in_the_schedule_zone() -> None:
    late = datetime(2026, 11, 21, 3, 30, tzinfo=UTC)  # executed a day later, at 15:00 UTC
    now = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    # 03:30 UTC is still the evening of the 20th in Chicago: the UTC date is not the night
    assert run_date_for(late, now, "America/Chicago") == "2026-11-20"
    assert run_date_for(late, now, "UTC") == "2026-11-21"
    assert run_date_for(late, now, "Asia/Tokyo") == "2026-11-21"
    assert run_date_for(None, now, "America/Chicago") == "2026-11-22"  # unscheduled: now
    assert run_date_for(None, datetime(2026, 11, 22, 3, 0), "America/Chicago") == "2026-11-21"


def test_nights_are_every_date_in_order_and_never_reversed() -> None:
    assert nights("2026-02-27", "2026-03-02") == [
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
        "2026-03-02",
    ]
    assert nights("2026-03-01", "2026-03-01") == ["2026-03-01"]
    with pytest.raises(RunDateError, match="2026-03-02 is after the last night 2026-03-01"):
        nights("2026-03-02", "2026-03-01")


def test_artifact_keys_are_lowercase_dashes() -> None:
    assert artifact_key("Validation report", "chicago_L") == "validation-report-chicago-l"


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_tasks_retry_transient_io_but_fail_fast_on_a_corrupt_file() -> None:
    from prefect import flow

    from tasks.runtime import pipeline_task

    calls = {"flaky": 0, "corrupt": 0}
    options = {"retry_delay_seconds": 0}

    @pipeline_task("flaky", task_run_name="flaky", **options)
    def flaky() -> int:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise TimeoutError("object store timed out")
        return calls["flaky"]

    @pipeline_task("corrupt", task_run_name="corrupt", **options)
    def corrupt() -> None:
        calls["corrupt"] += 1
        raise ArtifactError("x.parquet: not a readable Parquet file")

    @flow
    def both() -> tuple[int, bool]:
        return flaky(), corrupt(return_state=True).is_failed()

    assert both() == (3, True)
    assert calls == {"flaky": 3, "corrupt": 1}


def test_a_pipeline_task_refuses_prefect_result_options() -> None:
    from prefect.cache_policies import INPUTS

    from tasks.runtime import pipeline_task

    with pytest.raises(TypeError, match="'probe': cache_policy, persist_result not allowed"):
        pipeline_task("probe", persist_result=True, cache_policy=INPUTS)


VERSION_OF_COPY = "from tasks.storage import code_version; print(code_version())"


def copied_code_version(root: Path) -> str:
    """`code_version()` computed by a fresh process importing the packages copied under `root`."""
    done = subprocess.run(
        [sys.executable, "-c", VERSION_OF_COPY],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def edit_line(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


@pytest.mark.usefixtures("prefect_harness")
def test_editing_the_core_changes_the_code_version_so_a_cached_task_reruns(
    tmp_path: Path, monkeypatch
) -> None:
    from prefect import flow

    import tasks.runtime as runtime
    import tasks.storage as storage
    from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key

    root = tmp_path / "project"
    for package in ("lstm_model", "tasks", "flows"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    unedited = copied_code_version(root)
    assert unedited == code_version()  # the copy is this very code

    edit_line(root / "flows" / "cli.py", "def main(", "def main(  ")  # wiring only: no change
    assert copied_code_version(root) == unedited
    edit_line(root / "lstm_model" / "baselines.py", '"""Naive and', '"""Plain naive and')
    fixed = copied_code_version(root)
    assert fixed != unedited
    edit_line(
        root / "tasks" / "suites" / "default.json",
        '"name": "forecast-default"',
        '"name":  "forecast-default"',
    )  # the GX suite
    assert copied_code_version(root) not in {unedited, fixed}

    calls = []
    config = small_config(tmp_path / "unread.parquet", tmp_path / "store")

    @runtime.pipeline_task("probe", task_run_name="probe")
    def probe(x: int) -> ArtifactRef:
        def compute(store: ArtifactStore) -> runtime.StepResult:
            calls.append(x)
            return pd.DataFrame({"y": [x + 1]}), {}

        # as every step's key does, with the code version read when the task runs
        key = content_key("probe", x, storage.code_version())
        return runtime.produce_artifact(config, "probe", key, [], compute)

    @flow
    def rerun() -> tuple[str, ArtifactRef, ArtifactRef]:
        state = probe(1, return_state=True)
        return state.name, state.result(), probe(1)  # a direct call returns the reference

    monkeypatch.setattr(storage, "code_version", lambda: unedited)
    first, again = rerun(), rerun()
    assert (first[0], again[0]) == ("Completed", "Cached")
    assert first[1] == first[2] == again[1] == again[2]
    monkeypatch.setattr(storage, "code_version", lambda: fixed)  # the same night, after the fix
    assert [rerun()[0], rerun()[0]] == ["Completed", "Cached"]
    assert calls == [1, 1]
