"""What every thin Prefect wrapper shares: the task decorator, the store, logging and UI artifacts.

Step functions never import this; only the `@task` wrappers at the bottom of each step module do.
The helpers degrade gracefully outside a Prefect run (a notebook calling `task.fn()`): logs go
to the standard logger and UI artifacts are skipped.
"""

from __future__ import annotations

import errno
import functools
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pyarrow as pa
from prefect import Task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from tasks.config import PipelineConfig
from tasks.storage import ArtifactError, ArtifactRef, ArtifactStore

F = TypeVar("F", bound=Callable[..., Any])

# Prefect's result persistence and cache stay off for every step. A stored result record names
# its own serializer, so whoever can write to the result folder could make a lookup unpickle
# code (even for a JSON task); and a cached reference outlives the artifact it names, so a
# damaged or deleted file would be handed downstream on every rerun. The artifact store gives
# the skip-what-is-done behaviour instead: `produce_artifact` reuses an artifact only after
# reading it back whole, and a task that only reused artifacts ends in a "Cached" state.
_PREFECT_RESULT_OPTIONS = frozenset(
    {
        "cache_policy",
        "cache_key_fn",
        "cache_expiration",
        "refresh_cache",
        "persist_result",
        "result_storage",
        "result_storage_key",
        "result_serializer",
    }
)

# Within one task run: True for each artifact reused, False for each one written.
_ARTIFACT_USES: ContextVar[list[bool] | None] = ContextVar("artifact_uses", default=None)


class PipelineTask(Task):
    """A Prefect task whose direct call returns the step's value also when its run ended in
    the "Cached" state the step returned (Prefect would hand the State itself back)."""

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        outcome = super().__call__(*args, return_state=return_state, **kwargs)
        if isinstance(outcome, State) and not return_state:
            return outcome.result()
        return outcome


def pipeline_task(name: str, **options: Any) -> Callable[[F], F]:
    """The `@task` every step uses: no Prefect result is ever written or read (see above)."""
    refused = sorted(_PREFECT_RESULT_OPTIONS & options.keys())
    if refused:
        raise TypeError(
            f"pipeline task {name!r}: {', '.join(refused)} not allowed; steps never persist or "
            "look up Prefect results (the artifact store skips finished work)"
        )
    defaults: dict[str, Any] = {
        "name": name,
        "task_run_name": name + "-{config.name}",
        "persist_result": False,
        "cache_policy": NO_CACHE,
        "retries": 3,
        "retry_delay_seconds": exponential_backoff(backoff_factor=2),
        "retry_condition_fn": retry_transient_io_only,
    }

    def decorate(fn: F) -> F:
        step = PipelineTask(fn=_shown_cached_when_reused(fn), **{**defaults, **options})
        return step  # type: ignore[return-value]

    return decorate


def _shown_cached_when_reused(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as a task body whose run is named "Cached" in the UI when every artifact it
    produced was already in the store (the rerun of a finished step); outside its own task
    run (a notebook calling `task.fn()`) it returns the plain value."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        uses: list[bool] = []
        token = _ARTIFACT_USES.set(uses)
        try:
            value = fn(*args, **kwargs)
        finally:
            _ARTIFACT_USES.reset(token)
        context = TaskRunContext.get()
        if uses and all(uses) and context is not None and context.task.fn is run:
            return Completed(name="Cached", data=value, message="artifact already in the store")
        return value

    return run


def _note_artifact(reused: bool) -> None:
    uses = _ARTIFACT_USES.get()
    if uses is not None:
        uses.append(reused)


# Errors that retrying cannot fix: a full disk or quota, a read-only store, a refused or missing
# file, and corrupt data (ArtifactError; pyarrow's own errors, including the errno-less OSError
# it raises for a failed page checksum or an unreadable footer). Found anywhere in the chain of
# causes, so a library's wrapper around ENOSPC is not retried either. Timeouts, connection
# errors and other I/O errors (a flaky network filesystem or object store) are retried.
_PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_PERMANENT_ERRORS = (
    ArtifactError,
    pa.ArrowException,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it was raised from or during, each once."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _raised_in_pyarrow(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and "pyarrow" in Path(frame.tb_frame.f_code.co_filename).parts


def _is_permanent(error: BaseException) -> bool:
    if isinstance(error, _PERMANENT_ERRORS):
        return True
    if isinstance(error, OSError):
        return error.errno in _PERMANENT_ERRNOS or (
            error.errno is None and _raised_in_pyarrow(error)
        )
    return False


def is_transient_io_error(error: BaseException) -> bool:
    """Whether retrying might help: an I/O error, none of whose causes is permanent."""
    if any(_is_permanent(cause) for cause in _causes(error)):
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
    wrote one that reads back whole, else `compute(store)` written as that artifact with its
    metadata (replacing a damaged one, with a warning naming the file).

    The key covers the step's settings, its inputs' checksums and the code version, so a hit
    is the same work already done.
    """
    store = store_for(config)
    done = store.find(
        step, key, on_damaged=lambda why: run_logger().warning("%s; recomputing it", why)
    )
    if done is not None:
        run_logger().info("%s: already done for these inputs and code, reusing %s", step, done.uri)
        _note_artifact(reused=True)
        return done
    frame, extra = compute(store)
    written = store.write_table(
        step, key, frame, config_hash=config.digest(), inputs=inputs, extra=extra
    )
    _note_artifact(reused=False)
    return written


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
