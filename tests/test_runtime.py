"""What every task shares: which failures are retried, run dates, artifact keys."""

from __future__ import annotations

import pytest

from tasks.ingest import IngestError
from tasks.runtime import artifact_key, is_transient_io_error, resolve_run_date
from tasks.storage import ArtifactError
from tasks.validate import DataValidationError


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
    with pytest.raises(ValueError):
        resolve_run_date("24/11/2026")


def test_artifact_keys_are_lowercase_dashes() -> None:
    assert artifact_key("Validation report", "chicago_L") == "validation-report-chicago-l"


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_tasks_retry_transient_io_but_fail_fast_on_a_corrupt_file() -> None:
    from prefect import flow
    from prefect.cache_policies import NO_CACHE

    from tasks.runtime import pipeline_task

    calls = {"flaky": 0, "corrupt": 0}
    options = {"retry_delay_seconds": 0, "cache_policy": NO_CACHE, "persist_result": False}

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
