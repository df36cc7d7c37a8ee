"""The CLI's own flow runs: tagged with the host and process that run them, so that the next
`forecast` command marks those whose process is gone Crashed.

A flow run that a `forecast` command runs in its own process has nobody to report its death
when that process is killed: no worker watches it, the embedded server dies with it, and
heartbeats only help where a server runs the zombie automation (docs/production.md). Such a
run would show Running for ever. Only runs the CLI tagged on this host are touched: a run of a
worker, of another host or of a live process is never marked.
"""

from __future__ import annotations

import os
import socket

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Crashed

CLI_TAG = "forecast-cli"
HOST_TAG = "cli-host:"
PID_TAG = "cli-pid:"
# Pending too: a run killed between its creation and its start never reaches Running.
UNFINISHED = [StateType.PENDING, StateType.RUNNING]


def cli_run_tags() -> list[str]:
    """The tags of every flow run this process starts: who runs it, where."""
    return [CLI_TAG, HOST_TAG + socket.gethostname(), PID_TAG + str(os.getpid())]


def recorded_pid(tags: list[str]) -> int | None:
    """The process id a run's tags record, or None for a run the CLI did not tag."""
    for tag in tags:
        if tag.startswith(PID_TAG) and tag[len(PID_TAG) :].isdigit():
            return int(tag[len(PID_TAG) :])
    return None


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (signal 0 checks without sending).

    A reused id counts as alive: the run then stays Running rather than a live one crashed.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def crash_orphaned_cli_runs() -> list[FlowRun]:
    """Mark Crashed the unfinished flow runs that a `forecast` process on this host started and
    that outlived it (SIGKILL, out of memory, a reboot); return them."""
    host = socket.gethostname()
    mine = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[CLI_TAG, HOST_TAG + host]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
    )
    crashed = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=mine):
            pid = recorded_pid(run.tags)
            if pid is None or process_alive(pid):
                continue
            message = f"the CLI process {pid} that ran it on {host} is gone"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(run)
    return crashed
