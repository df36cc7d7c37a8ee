"""Faults in what a rerun reuses: damaged or deleted artifacts, planted Prefect result records,
and permanent I/O errors that must not be retried (issue 10, failures 3, 4 and 7)."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import pkgutil
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flows
import tasks
from tasks.config import PipelineConfig
from tasks.runtime import is_transient_io_error
from tasks.storage import ArtifactError, ArtifactStore, sha256_bytes
from tests.support import HORIZON, SERIES, small_config, write_small_source

NIGHT = "2016-08-12"


# -- retries: permanent errors fail at once ----------------------------------------------------
def wrapped(error: BaseException, outer: BaseException) -> BaseException:
    """`outer` raised from `error`, as a library wraps an OS error in its own."""
    try:
        try:
            raise error
        except BaseException as cause:
            raise outer from cause
    except BaseException as raised:
        return raised


def raised_by_pyarrow(data: bytes) -> BaseException:
    """What pyarrow itself raises reading `data` as Parquet."""
    try:
        pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
    except Exception as error:  # noqa: BLE001 - the error is the point
        return error
    raise AssertionError("pyarrow read the damaged bytes")


def flipped_page() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"y": list(range(1000))}), sink, write_page_checksum=True)
    data = bytearray(sink.getvalue().to_pybytes())
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/store/artifacts/x.parquet"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError(errno.EROFS, "Read-only file system", "/store"),
        OSError(errno.EACCES, "Permission denied", "/store"),  # a PermissionError
        OSError(errno.EPERM, "Operation not permitted"),
        wrapped(OSError(errno.ENOSPC, "No space left on device"), OSError("write failed")),
        wrapped(OSError(errno.EROFS, "Read-only file system"), ConnectionError("flush failed")),
        wrapped(pa.ArrowInvalid("Parquet magic bytes not found"), OSError("read failed")),
        raised_by_pyarrow(b"PAR1" + bytes(64) + b"PAR1"),  # an unreadable footer
        raised_by_pyarrow(flipped_page()),  # OSError: CRC checksum verification failed
        ArtifactError("x.parquet: checksum mismatch"),
    ],
    ids=str,
)
def test_full_read_only_refused_or_corrupt_is_never_retried(error: BaseException) -> None:
    assert not is_transient_io_error(error)


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("read timed out"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        OSError(errno.EIO, "Input/output error"),
        wrapped(TimeoutError("timed out"), OSError("read failed")),
    ],
    ids=str,
)
def test_network_faults_stay_transient(error: BaseException) -> None:
    assert is_transient_io_error(error)


@pytest.mark.usefixtures("prefect_harness")
def test_a_task_failing_with_enospc_fails_after_one_attempt() -> None:
    from prefect import flow

    from tasks.runtime import pipeline_task

    calls = []

    @pipeline_task("full-disk", task_run_name="full-disk", retry_delay_seconds=0)
    def write_to_full_disk() -> None:
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device", "/store/artifacts/x.parquet")

    @flow
    def one() -> str:
        return write_to_full_disk(return_state=True).type.value

    assert one() == "FAILED"
    assert len(calls) == 1  # the default 3 retries are for transient faults only


# -- no Prefect result is ever written or read ------------------------------------------------
def objects_of(package) -> list[tuple[str, object]]:
    found = []
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        loaded = importlib.import_module(module.name)
        found += [(f"{module.name}.{name}", value) for name, value in vars(loaded).items()]
    return found


def test_no_step_or_flow_persists_or_looks_up_prefect_results() -> None:
    from prefect import Flow, Task
    from prefect.cache_policies import NO_CACHE

    steps = {name: obj for name, obj in objects_of(tasks) if isinstance(obj, Task)}
    pipelines = {name: obj for name, obj in objects_of(flows) if isinstance(obj, Flow)}
    assert len(steps) >= 10 and len(pipelines) >= 5
    for name, step in steps.items():
        assert step.persist_result is False, name
        assert step.cache_policy in (None, NO_CACHE), name  # no key: nothing is looked up
        assert step.result_storage_key is None, name
    for name, pipeline in pipelines.items():
        assert pipeline.persist_result is False, name


# -- damaged companions make an artifact a miss ------------------------------------------------
def test_an_artifact_whose_referenced_file_is_damaged_is_not_reused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    model_uri = store.uri("artifacts", "train", "k.keras")
    store.write_bytes(model_uri, b"model bytes")
    model = {"uri": model_uri, "sha256": sha256_bytes(b"model bytes")}
    frame = pd.DataFrame({"loss": [1.0]})
    ref = store.write_table("train", "k", frame, config_hash="c", extra={"model": model})
    assert store.find("train", "k") == ref

    Path(model_uri).write_bytes(b"model bytes, changed")
    assert store.find("train", "k") is None  # reused, it would fail every rerun downstream
    told: list[str] = []
    assert store.find("train", "k", on_damaged=told.append) is None
    assert len(told) == 1 and model_uri in told[0] and "checksum mismatch" in told[0]


def test_an_artifact_naming_another_step_or_key_is_not_reused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    store.write_table("validate", "a", pd.DataFrame({"y": [1.0]}), config_hash="c")
    Path(store.artifact_uri("validate", "b")).write_bytes(
        Path(store.artifact_uri("validate", "a")).read_bytes()
    )
    assert store.find("validate", "b") is None
    told: list[str] = []
    assert store.find("validate", "b", on_damaged=told.append) is None
    assert told == [
        f"damaged artifact {store.artifact_uri('validate', 'b')}: "
        f"{store.artifact_uri('validate', 'b')}: its metadata names another artifact"
    ]


# -- whole flows: a rerun heals ----------------------------------------------------------------
@contextmanager
def task_warnings() -> Iterator[list[str]]:
    """The warnings task runs log while the block runs (what the UI's log tab shows)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler, logger = Collect(), logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def night_config(base: Path) -> PipelineConfig:
    """The small real source and an empty store: the night gets the seasonal-naive fallback,
    so the forecast flow runs ingest, validate and predict without a trained model."""
    return small_config(write_small_source(base / "data"), base / "store")


def validated_file(config: PipelineConfig) -> Path:
    (path,) = (Path(config.storage.root) / "artifacts" / "validate").glob("*.parquet")
    return path


@pytest.mark.usefixtures("prefect_harness")
def test_a_damaged_intermediate_artifact_is_recomputed_on_rerun(tmp_path: Path) -> None:
    from flows.forecasting import forecast_flow

    config = night_config(tmp_path)
    forecast_flow(config, NIGHT)
    path = validated_file(config)
    damaged = bytearray(path.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 16] = bytes(byte ^ 0xFF for byte in damaged[middle : middle + 16])
    path.write_bytes(bytes(damaged))

    with task_warnings() as warnings:
        summary = forecast_flow(config, NIGHT)
    assert summary.rows == len(SERIES) * HORIZON
    assert path.read_bytes() != bytes(damaged)  # rewritten in place (same content key)
    assert pq.read_table(path, page_checksum_verification=True).num_rows > 0
    assert any(str(path) in message and "recomputing" in message for message in warnings)


@pytest.mark.usefixtures("prefect_harness")
def test_a_deleted_intermediate_artifact_is_recomputed_on_rerun(tmp_path: Path) -> None:
    from flows.forecasting import forecast_flow

    config = night_config(tmp_path)
    forecast_flow(config, NIGHT)
    path = validated_file(config)
    path.unlink()

    summary = forecast_flow(config, NIGHT)
    assert summary.rows == len(SERIES) * HORIZON
    assert pq.read_table(path, page_checksum_verification=True).num_rows > 0


class Planted:
    """What an attacker pickles: loading it runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def plant_pickle_record(path: Path, marker: Path) -> None:
    """A Prefect result record naming the pickle serializer, as Prefect itself writes one."""
    from prefect.results import ResultRecord, ResultRecordMetadata
    from prefect.serializers import PickleSerializer

    metadata = ResultRecordMetadata(storage_key=str(path), serializer=PickleSerializer())
    path.write_bytes(ResultRecord(metadata=metadata, result=Planted(marker)).serialize())


@pytest.mark.usefixtures("prefect_harness")
def test_a_planted_pickle_result_record_never_runs(tmp_path: Path) -> None:
    from prefect.settings import (
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        get_current_settings,
        temporary_settings,
    )

    from flows.forecasting import forecast_flow

    results = Path(get_current_settings().results.local_storage_path)
    results.mkdir(parents=True, exist_ok=True)
    config, marker = night_config(tmp_path), tmp_path / "planted-code-ran"
    before = set(results.iterdir())
    # even where an operator made persistence the default
    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        forecast_flow(config, NIGHT)
    written = sorted(set(results.iterdir()) - before)

    # A record under the name of every file the first run wrote (the keys the next run would
    # look up), and under every other name in the folder.
    for path in set(results.iterdir()):
        if path.is_file():
            plant_pickle_record(path, marker)
    try:
        summary = forecast_flow(config, NIGHT)
    finally:  # checked first, whatever the rerun did with what it unpickled
        assert not marker.exists(), "a planted result record ran code"
    assert summary.rows == len(SERIES) * HORIZON
    assert written == []  # nothing for a rerun to look up
