"""Real Prefect processes for the integration tests: a server, workers, the CLI and the REST API.

Everything runs the way a user runs it: `prefect server start`, `prefect work-pool create`,
`prefect deploy`, `prefect worker start`, `prefect deployment run`, each a subprocess with a
private PREFECT_HOME, talking to 127.0.0.1 only. Every process is started in its own session and
stopped with its whole process tree (flow runs start in sessions of their own, so killing the
worker's group alone would leave them running).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
ZOMBIE_AUTOMATION = REPO / "deployments" / "crash-zombie-flows.yaml"
LOOPBACK = "127.0.0.1"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

# PostgreSQL of this machine kind: local, trust authentication.
PG_ADMIN_DSN = os.environ.get(
    "FORECAST_TEST_PG_ADMIN_DSN", f"postgresql://postgres@{LOOPBACK}:5432/postgres"
)


def require(available: bool, reason: str) -> None:
    """Skip when something the test needs is missing, except in CI, where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    """This process's environment without any PREFECT_* setting, plus a private PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_ENABLE_ONEDNN_OPTS="0",
        PYTHONUNBUFFERED="1",
        NO_PROXY=",".join(filter(None, [env.get("NO_PROXY"), LOOPBACK, "localhost"])),
    )
    return env


# --- processes -------------------------------------------------------------------------------


def _parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    """All processes below `pid`, whatever session or group they moved to."""
    parents = _parent_pids()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass
class Service:
    """A long-running subprocess (server or worker) in its own session, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, wait, then SIGKILL the group and everything that left it."""
        tree = descendants(self.process.pid)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in tree + descendants(self.process.pid):
            _kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def start_service(name: str, args: list[str], env: Mapping[str, str], log: Path) -> Service:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log)


# --- the server ------------------------------------------------------------------------------


@dataclass
class PrefectServer:
    """A running `prefect server start` and what a client needs to reach it."""

    service: Service
    url: str
    home: Path
    auth_string: str | None
    client_env: dict[str, str]
    database: str
    workers: list[Service] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def api(self, authenticated: bool = True) -> httpx.Client:
        headers = {}
        if authenticated and self.auth_string:
            token = base64.b64encode(self.auth_string.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30, trust_env=False)

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180, check=True
    ) -> subprocess.CompletedProcess[str]:
        """Run `prefect ARGS` from the project root as a client of this server."""
        result = subprocess.run(
            [str(PREFECT), *args],
            cwd=REPO,
            env={**self.client_env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`prefect {' '.join(args)}` exited {result.returncode}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def start_worker(self, pool: str, log_name: str, env: Mapping[str, str] | None = None):
        """`prefect worker start --pool POOL`, polling every second so tests do not wait."""
        worker_env = {**self.client_env, "PREFECT_WORKER_QUERY_SECONDS": "1", **(env or {})}
        worker = start_service(
            f"worker {pool}",
            [str(PREFECT), "worker", "start", "--pool", pool, "--type", "process"],
            worker_env,
            self.home.parent / f"{log_name}.log",
        )
        self.workers.append(worker)
        return worker

    def run_deployment(self, name: str, parameters: Mapping[str, Any] | None = None) -> str:
        """`prefect deployment run NAME --params JSON`; returns the new flow run's id."""
        args = ["deployment", "run", name]
        if parameters is not None:
            args += ["--params", json.dumps(parameters)]
        output = self.cli(*args).stdout
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, f"no flow run id in `prefect deployment run` output:\n{output}"
        return match.group(1)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        with self.api() as api:
            response = api.get(f"/flow_runs/{flow_run_id}")
            response.raise_for_status()
            return response.json()

    def flow_run_logs(self, flow_run_id: str, limit: int = 60) -> str:
        with self.api() as api:
            response = api.post(
                "/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": limit},
            )
        if response.status_code != 200:
            return f"(logs unavailable: {response.status_code})"
        return "\n".join(f"{log['level']:>3} {log['message']}" for log in response.json())

    def wait_for_state(
        self, flow_run_id: str, states: frozenset[str] = TERMINAL, timeout: float = 300
    ) -> dict[str, Any]:
        """Poll until the run's state type is one of `states`; fail with the logs otherwise."""
        deadline = time.monotonic() + timeout
        run = self.flow_run(flow_run_id)
        while run["state_type"] not in states:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {run['name']} still {run['state_type']} after {timeout:.0f} s\n"
                    + self.diagnostics(flow_run_id)
                )
            time.sleep(1)
            run = self.flow_run(flow_run_id)
        return run

    def diagnostics(self, flow_run_id: str) -> str:
        parts = [f"--- flow run logs\n{self.flow_run_logs(flow_run_id)}"]
        parts += [f"--- {worker.name} log\n{worker.log_tail()}" for worker in self.workers]
        return "\n".join(parts)

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        with self.api() as api:
            response = api.post(
                "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
            )
            response.raise_for_status()
            return response.json()

    def events(self, event: str, resource_id: str) -> list[dict[str, Any]]:
        with self.api() as api:
            response = api.post(
                "/events/filter",
                json={
                    "filter": {
                        "event": {"name": [event]},
                        "resource": {"id": [resource_id]},
                        "any_resource": None,
                    },
                    "limit": 50,
                },
            )
            response.raise_for_status()
            return response.json()["events"]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.service.stop()


def wait_healthy(service: Service, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/api/health").status_code == 200:
                    return
            time.sleep(0.3)
    state = "exited" if service.process.poll() is not None else f"not healthy in {timeout:.0f} s"
    raise RuntimeError(f"prefect server {state}\n--- server log\n{service.log_tail()}")


@contextlib.contextmanager
def prefect_server(
    workdir: Path,
    *,
    database_url: str | None = None,
    auth_string: str | None = None,
    timeout: float = 120,
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port; always stopped, with its workers."""
    server = start_server(workdir, database_url, auth_string, timeout)
    try:
        yield server
    finally:
        server.stop()


def start_server(
    workdir: Path, database_url: str | None, auth_string: str | None, timeout: float
) -> PrefectServer:
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # another process may take the free port before the server binds
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        # Host and port as settings, not --host/--port flags: the UI derives the API address it
        # calls from the settings, so with flags alone it would call the default port 4200.
        server_env = {
            **base_env(home),
            "PREFECT_SERVER_API_HOST": LOOPBACK,
            "PREFECT_SERVER_API_PORT": str(port),
        }
        if database_url:
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        if auth_string:
            server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        client_env = {**base_env(home), "PREFECT_API_URL": f"{url}/api"}
        if auth_string:
            client_env["PREFECT_API_AUTH_STRING"] = auth_string
        service = start_service(
            "server", [str(PREFECT), "server", "start"], server_env, workdir / "server.log"
        )
        try:
            wait_healthy(service, url, timeout)
        except BaseException:
            service.stop()
            if attempt < 2 and "already in use" in service.log_tail():
                continue
            raise
        return PrefectServer(
            service=service,
            url=url,
            home=home,
            auth_string=auth_string,
            client_env=client_env,
            database=(database_url or "sqlite").split(":", 1)[0],
        )
    raise AssertionError("unreachable")


# --- databases -------------------------------------------------------------------------------


def _pg_execute(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_reachable() -> tuple[bool, str]:
    try:
        _pg_execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means "not usable here"
        return False, f"PostgreSQL at {PG_ADMIN_DSN} is not reachable: {error!r}"
    return True, ""


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database for one server; dropped afterwards."""
    name = f"prefect_it_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
