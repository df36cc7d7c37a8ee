"""Integration fixtures: real Prefect servers (SQLite; PostgreSQL with auth) running the pipeline.

Each stack (stacks.py) is started once per session, lazily, and always stopped with its workers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.live_prefect import (
    postgres_database,
    postgres_reachable,
    prefect_server,
    require,
)
from tests.integration.stacks import AUTH_STRING, OUTPUT, PipelineRuns, Stack, deploy_stack


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The default: SQLite in PREFECT_HOME, no authentication (what `make server` runs)."""
    workdir = tmp_path_factory.mktemp("stack-sqlite")
    with prefect_server(workdir) as server:
        yield deploy_stack("sqlite", server, workdir)


@pytest.fixture(scope="session")
def postgresql_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The production set-up: PostgreSQL (a database of its own) and an API auth string."""
    reachable, reason = postgres_reachable()
    require(reachable, reason)
    workdir = tmp_path_factory.mktemp("stack-postgresql")
    with (
        postgres_database() as database_url,
        prefect_server(workdir, database_url=database_url, auth_string=AUTH_STRING) as server,
    ):
        yield deploy_stack("postgresql", server, workdir)


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


@pytest.fixture
def pipeline(stack: Stack) -> PipelineRuns:
    return stack.pipeline()


@pytest.fixture
def output_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Files a test leaves for people (screenshots): in its tmp dir, copied to output/ after."""
    folder = tmp_path / "output"
    folder.mkdir()
    yield folder
    target = OUTPUT / request.node.name.replace("/", "_")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target)
