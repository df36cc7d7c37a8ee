"""What every thin Prefect wrapper shares: the task decorator, the store, logging and UI artifacts.

Step functions never import this; only the `@task` wrappers at the bottom of each step module do.
The helpers degrade gracefully outside a Prefect run (a notebook calling `task.fn()`): logs go
to the standard logger and UI artifacts are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy, CachePolicy, Inputs
from prefect.context import FlowRunContext, TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from tasks.config import PipelineConfig
from tasks.storage import ArtifactRef, ArtifactStore, code_version

F = TypeVar("F", bound=Callable[..., Any])


def pipeline_task(name: str, **options: Any) -> Callable[[F], F]:
    """The `@task` every step uses: results are small JSON references, never pickles."""
    defaults: dict[str, Any] = {
        "name": name,
        "task_run_name": name + "-{config.name}",
        "result_serializer": "json",
        "persist_result": True,
        "cache_policy": ARTIFACT_CACHE,
        "retries": 3,
        "retry_delay_seconds": exponential_backoff(backoff_factor=2),
        "retry_condition_fn": retry_transient_io_only,
    }
    return task(**{**defaults, **options})  # type: ignore[return-value]


def _store_identity(context: Any, parameters: dict[str, Any]) -> str | None:
    """The identity of the artifact store the task writes to (see `ArtifactStore.identity`)."""
    config = parameters.get("config")
    return store_for(config).identity() if isinstance(config, PipelineConfig) else None


def _code_version(context: Any, parameters: dict[str, Any]) -> str:
    """The project's code version: TASK_SOURCE hashes only the @task wrapper, not what it calls."""
    return code_version()


# Rerunning a flow skips the tasks whose inputs and code are unchanged (Prefect's own cache, so
# the UI shows them as Cached). The store's identity is part of the key: a cached result is a
# reference to an artifact, and after the store is wiped or replaced it must not be trusted. The
# code version is too: a fix in lstm_model/ or in a step function must rerun the same night.
ARTIFACT_CACHE = (
    INPUTS
    + TASK_SOURCE
    + CacheKeyFnPolicy(cache_key_fn=_store_identity)
    + CacheKeyFnPolicy(cache_key_fn=_code_version)
)


def artifact_cache_ignoring(*parameters: str) -> CachePolicy:
    """ARTIFACT_CACHE without some inputs (a run date that must not split the cache).

    Built afresh: subtracting from a compound policy in Prefect 3.9 adds a second Inputs policy
    and keeps the first, so `ARTIFACT_CACHE - "run_date"` would still hash the run date.
    """
    return (
        Inputs(exclude=list(parameters))
        + TASK_SOURCE
        + CacheKeyFnPolicy(cache_key_fn=_store_identity)
        + CacheKeyFnPolicy(cache_key_fn=_code_version)
    )


# I/O errors worth retrying: a flaky network filesystem or object store. A missing, refused or
# corrupt file (ArtifactError, DataValidationError...) fails at once: retrying cannot fix it.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient_io_error(error: BaseException) -> bool:
    if isinstance(error, _PERMANENT_OS_ERRORS):
        return False
    return isinstance(error, (TimeoutError, ConnectionError, OSError))


def retry_transient_io_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a task only when it failed on a transient I/O error."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - we classify whatever the task raised
        return is_transient_io_error(error)
    return False


def store_for(config: PipelineConfig) -> ArtifactStore:
    return ArtifactStore(config.storage.root)


StepResult = tuple[Any, dict[str, Any]]
"""What a step's compute function returns: the artifact's frame and its extra metadata."""


def produce_artifact(
    config: PipelineConfig,
    step: str,
    key: str,
    inputs: list[ArtifactRef],
    compute: Callable[[ArtifactStore], StepResult],
) -> ArtifactRef:
    """The step protocol in one place: the artifact for this content key if a run already
    wrote a readable one, else `compute(store)` written as that artifact with its metadata.

    The key covers the step's settings, its inputs' checksums and the code version, so a hit
    is the same work already done.
    """
    store = store_for(config)
    if (done := store.find(step, key)) is not None:
        run_logger().info("%s: already done for these inputs and code, reusing %s", step, done.uri)
        return done
    frame, extra = compute(store)
    return store.write_table(
        step, key, frame, config_hash=config.digest(), inputs=inputs, extra=extra
    )


def in_prefect_run() -> bool:
    try:
        get_run_context()
    except MissingContextError:
        return False
    return True


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run (shown in the UI), the module logger outside."""
    if in_prefect_run():
        return get_run_logger()
    return logging.getLogger("forecast")


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in raw).strip("-")[:120]


def publish_markdown(key: str, markdown: str, description: str) -> None:
    if in_prefect_run():
        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    if in_prefect_run():
        create_table_artifact(key=artifact_key(key), table=rows, description=description)


class ProgressReporter:
    """A Prefect progress artifact (0-100) that a long step updates; silent outside a run."""

    def __init__(self, key: str, description: str) -> None:
        self._artifact_id = (
            create_progress_artifact(0.0, key=artifact_key(key), description=description)
            if in_prefect_run()
            else None
        )

    def update(self, percent: float) -> None:
        if self._artifact_id is not None:
            update_progress_artifact(self._artifact_id, min(100.0, max(0.0, percent)))


class RunDateError(ValueError):
    """A run date that is not a real calendar date written YYYY-MM-DD."""


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_run_date(text: str) -> str:
    """`text` as a checked YYYY-MM-DD date; anything else ("tomorrow", 2026-13-01) is refused."""
    try:
        if not _ISO_DATE.match(text):
            raise ValueError
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise RunDateError(f"{text!r} is not a date YYYY-MM-DD") from None


def run_date_for(scheduled_start: datetime | None, now: datetime, timezone: str) -> str:
    """The night a run belongs to: its scheduled start (else `now`) as a date in `timezone`.

    A run scheduled for 02:00 in Chicago that starts late, or on a UTC machine where the UTC
    date differs, still belongs to the scheduled local night. Naive datetimes are taken as UTC.
    """
    moment = scheduled_start if scheduled_start is not None else now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


def scheduled_start_time() -> datetime | None:
    """The current flow run's scheduled (expected) start, or None outside a flow run."""
    from prefect.runtime import flow_run

    if flow_run.get_id() is None:
        return None  # prefect.runtime would answer "now" here, hiding that there is no run
    return flow_run.scheduled_start_time


def resolve_run_date(run_date: str | None, timezone: str = "UTC") -> str:
    """The run date as YYYY-MM-DD: the one given (checked), else the run's scheduled date.

    Inside a flow run that is the scheduled start in `timezone` (the schedule's zone), so a
    run replayed or delayed keeps its night; outside a run, today's date in `timezone`.
    """
    if run_date:
        return parse_run_date(run_date)
    return run_date_for(scheduled_start_time(), datetime.now(UTC), timezone)


def nights(first: str, last: str) -> list[str]:
    """Every date from `first` to `last` inclusive, in order; refused when `first` is later."""
    start, end = date.fromisoformat(parse_run_date(first)), date.fromisoformat(parse_run_date(last))
    if start > end:
        raise RunDateError(f"the first night {first} is after the last night {last}")
    return [
        date.fromordinal(day).isoformat() for day in range(start.toordinal(), end.toordinal() + 1)
    ]


def schedule_timezone(config: Any) -> str:
    """The schedule's zone from a flow's `config` parameter (a PipelineConfig or its dict)."""
    if isinstance(config, PipelineConfig):
        return config.schedule.timezone
    if isinstance(config, dict):
        return str((config.get("schedule") or {}).get("timezone") or "UTC")
    return "UTC"


def current_flow_run_id() -> str | None:
    context = FlowRunContext.get()
    if context and context.flow_run:
        return str(context.flow_run.id)
    task_context = TaskRunContext.get()
    if task_context and task_context.task_run.flow_run_id:
        return str(task_context.task_run.flow_run_id)
    return None


def dated_run_name(prefix: str) -> Callable[[], str]:
    """A flow-run namer: `{prefix}-YYYY-MM-DD`, the date `resolve_run_date` gives the run."""

    def name() -> str:
        from prefect.runtime import flow_run

        parameters = flow_run.parameters
        zone = schedule_timezone(parameters.get("config"))
        try:
            night = resolve_run_date(parameters.get("run_date"), zone)
        except RunDateError:
            # Raised here, before the run starts, it would leave the run Pending with a raw
            # traceback; the flow itself fails on the date, naming it, as a Failed run.
            night = "invalid-date"
        return f"{prefix}-{night}"

    return name
