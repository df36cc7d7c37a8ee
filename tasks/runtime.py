"""What every thin Prefect wrapper shares: the task decorator, the store, logging and UI artifacts.

Step functions never import this; only the `@task` wrappers at the bottom of each step module do.
The helpers degrade gracefully outside a Prefect run (a notebook calling `task.fn()`): logs go
to the standard logger and UI artifacts are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import FlowRunContext, TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from tasks.config import PipelineConfig
from tasks.storage import ArtifactRef, ArtifactStore

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


# Rerunning a flow skips the tasks whose inputs and code are unchanged (Prefect's own cache, so
# the UI shows them as Cached). The store's identity is part of the key: a cached result is a
# reference to an artifact, and after the store is wiped or replaced it must not be trusted.
ARTIFACT_CACHE = INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_store_identity)


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


def resolve_run_date(run_date: str | None) -> str:
    """The run date as YYYY-MM-DD: the one given (validated), or today's (UTC)."""
    return (
        date.fromisoformat(run_date).isoformat()
        if run_date
        else datetime.now(UTC).date().isoformat()
    )


def current_flow_run_id() -> str | None:
    context = FlowRunContext.get()
    if context and context.flow_run:
        return str(context.flow_run.id)
    task_context = TaskRunContext.get()
    if task_context and task_context.task_run.flow_run_id:
        return str(task_context.task_run.flow_run_id)
    return None


def dated_run_name(prefix: str) -> Callable[[], str]:
    """A flow-run namer: `{prefix}-YYYY-MM-DD` from the run's `run_date` parameter (or today)."""

    def name() -> str:
        from prefect.runtime import flow_run

        return f"{prefix}-{resolve_run_date(flow_run.parameters.get('run_date'))}"

    return name
