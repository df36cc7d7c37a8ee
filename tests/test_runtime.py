"""What every task shares: which failures are retried, run dates, artifact keys."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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
