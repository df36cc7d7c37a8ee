"""What every thin Prefect wrapper shares: the task decorator, the store, logging and UI artifacts.

Step functions never import this; only the `@task` wrappers at the bottom of each step module do.
The helpers degrade gracefully outside a Prefect run (a notebook calling `task.fn()`): logs go
to the standard logger and UI artifacts are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.storage import ArtifactStore

F = TypeVar("F", bound=Callable[..., Any])


def pipeline_task(name: str, **options: Any) -> Callable[[F], F]:
    """The `@task` every step uses: results are small JSON references, never pickles."""
    defaults: dict[str, Any] = {
        "name": name,
        "task_run_name": name + "-{config.name}",
        "result_serializer": "json",
        "persist_result": True,
    }
    return task(**{**defaults, **options})  # type: ignore[return-value]


def store_for(config: PipelineConfig) -> ArtifactStore:
    return ArtifactStore(config.storage.root)


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


def current_task_run_id() -> str | None:
    context = TaskRunContext.get()
    return str(context.task_run.id) if context else None
