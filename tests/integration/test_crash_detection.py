"""A flow run whose process dies ends Crashed, never Running forever.

Two ways a run dies, two mechanisms (docs/production.md, "When a run dies"):
- the flow process is killed while its worker lives: the worker sees the exit and reports the
  run Crashed at once;
- the machine is lost (worker and flow process die together): nobody is left to report, so the
  server's heartbeat automation (deployments/crash-zombie-flows.yaml) marks it Crashed once the
  run's heartbeats stop.

Both run a small sleeping flow (probe_flows.py) on a server of their own, so the short-fused
automation cannot touch other tests' runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.live_prefect import (
    REPO,
    ZOMBIE_AUTOMATION,
    PrefectServer,
    descendants,
    prefect_server,
)

pytestmark = pytest.mark.integration

POOL = "crash-pool"
DEPLOYMENT = "sleeper/crash-probe"
HEARTBEAT_SECONDS = 30  # the smallest PREFECT_FLOWS_HEARTBEAT_FREQUENCY Prefect accepts
# Two heartbeat periods: a live run on a loaded machine (a late heartbeat) never trips it.
WITHIN_SECONDS = 60


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    workdir = tmp_path_factory.mktemp("crash-server")
    probe_yaml = workdir / "probe.yaml"
    probe_yaml.write_text(
        yaml.safe_dump(
            {
                "pull": [
                    {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
                ],
                "deployments": [
                    {
                        "name": "crash-probe",
                        "entrypoint": "tests/integration/probe_flows.py:sleeper",
                        "work_pool": {"name": POOL},
                    }
                ],
            }
        )
    )
    with prefect_server(workdir) as server:
        server.cli("work-pool", "create", "--type", "process", POOL)
        server.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(probe_yaml))
        yield server


def start_sleeper(server: PrefectServer, tmp_path: Path) -> tuple[str, int]:
    """Run the sleeping flow through the worker; return the run id and its process id."""
    pid_file = tmp_path / "flow.pid"
    run_id = server.run_deployment(DEPLOYMENT, {"seconds": 600, "pid_file": str(pid_file)})
    server.wait_for_state(run_id, frozenset({"RUNNING"}), timeout=90)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the flow never wrote its pid\n" + server.diagnostics(
            run_id
        )
        time.sleep(0.2)
    return run_id, int(pid_file.read_text())


def test_killed_flow_process_is_reported_crashed_by_its_worker(
    crash_server: PrefectServer, tmp_path: Path
) -> None:
    worker = crash_server.start_worker(POOL, "worker-kill-flow")
    try:
        run_id, pid = start_sleeper(crash_server, tmp_path)
        assert pid in descendants(worker.process.pid), "the flow should run as the worker's child"

        os.kill(pid, signal.SIGKILL)
        run = crash_server.wait_for_state(run_id, timeout=30)

        assert run["state_type"] == "CRASHED", crash_server.diagnostics(run_id)
        assert "SIGKILL" in run["state"]["message"]
        assert worker.process.poll() is None, "the worker survives its flow run's death"
    finally:
        worker.stop()  # else it would pick up the next test's run from the same pool


def test_lost_worker_and_flow_are_marked_crashed_by_the_heartbeat_automation(
    crash_server: PrefectServer, tmp_path: Path
) -> None:
    # The shipped automation, with `within` shortened to suit 30 s heartbeats.
    automation = yaml.safe_load(ZOMBIE_AUTOMATION.read_text())
    automation["trigger"]["within"] = WITHIN_SECONDS
    automation_file = tmp_path / "crash-zombie-flows.yaml"
    automation_file.write_text(yaml.safe_dump(automation))
    crash_server.cli("automation", "create", "--from-file", str(automation_file))

    worker = crash_server.start_worker(
        POOL, "worker-lost", env={"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
    )
    run_id, pid = start_sleeper(crash_server, tmp_path)
    heartbeat = "prefect.flow-run.heartbeat"
    deadline = time.monotonic() + 30
    while not crash_server.events(heartbeat, f"prefect.flow-run.{run_id}"):
        assert time.monotonic() < deadline, "no heartbeat event reached the server"
        time.sleep(0.5)

    # The machine is lost: worker and flow die at once and nobody reports anything. Freeze the
    # whole family first, so no process sees another die and reports it.
    family = [worker.process.pid, *descendants(worker.process.pid)]
    assert pid in family
    for member in family:
        os.kill(member, signal.SIGSTOP)
    for member in family:
        os.kill(member, signal.SIGKILL)
    time.sleep(5)
    run = crash_server.flow_run(run_id)
    assert run["state_type"] == "RUNNING", (
        "without the automation the run would stay Running, but it is "
        f"{run['state_type']}: {run['state'].get('message')}\n" + crash_server.diagnostics(run_id)
    )

    run = crash_server.wait_for_state(run_id, timeout=WITHIN_SECONDS + HEARTBEAT_SECONDS + 30)
    assert run["state_type"] == "CRASHED"
    assert run["state"]["message"] == automation["actions"][0]["message"]
