"""What a `forecast` command does when the disk, the store or its files fail (issue 10, failures
7, 8 and 9): one line on stderr naming the file and the cause, exit code 1, no traceback unless
`--debug`; a run whose CLI process was killed is marked Crashed by the next command; a malformed
run date never leaves a run Pending with a raw traceback.

The faults run the real command in this process (`flows.cli.main`) on a copy of a store with a
trained champion. Tests run as root here, where permissions stop no write and no disk fills, so
a full disk, a read-only store and a refused write are raised by the store's own write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from tasks.config import PipelineConfig
from tasks.storage import ArtifactError
from tests.integration.live_prefect import descendants
from tests.support import REPO, small_config, train_small_champion, write_small_source

NIGHT = "2016-08-01"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> PipelineConfig:
    return train_small_champion(tmp_path_factory.mktemp("cli-faults"), NIGHT)


def write_config(config: PipelineConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


@pytest.fixture
def store_copy(trained: PipelineConfig, tmp_path: Path) -> tuple[Path, Path]:
    """A config file whose store is a private copy of the trained one, and that store."""
    store = tmp_path / "store"
    shutil.copytree(trained.storage.root, store)
    copy = small_config(Path(trained.source.path), store)
    return write_config(copy, tmp_path / "config.yaml"), store


class Stderr:
    """What a command wrote to stderr: its own lines, and Prefect's console log lines, which
    go to the stream Prefect found when its logging was set up (pytest's capsys never sees it)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], prefect: io.StringIO) -> None:
        self.capsys, self.prefect = capsys, prefect

    def read(self) -> tuple[str, str]:
        """(Prefect's log lines, the CLI's own lines) since the last read."""
        logged = self.prefect.getvalue()
        self.prefect.seek(0)
        self.prefect.truncate()
        return logged, self.capsys.readouterr().err


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Stderr:
    from prefect.logging.handlers import PrefectConsoleHandler

    prefect = io.StringIO()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            monkeypatch.setattr(handler.console, "file", prefect)
    return Stderr(capsys, prefect)


def champion_folder(store: Path) -> Path:
    pointer = json.loads((store / "models" / "flowtest" / "champion.json").read_text())
    return store / "models" / "flowtest" / pointer["version"]


def predict(config_file: Path, *extra: str) -> int:
    return main(["predict", "--config", str(config_file), "--date", NIGHT, *extra])


def failure(console: Stderr, command: str = "predict") -> str:
    """The command's one-line failure, its last line on stderr, checked to come with no
    traceback anywhere (Prefect's log lines included)."""
    logged, printed = console.read()
    assert "Traceback" not in logged + printed, (logged + printed)[-6000:]
    assert printed.strip(), logged[-6000:]
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"forecast {command} failed: "), printed[-3000:]
    return last


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "named", "cause"),
    [
        # fsync or write() on a full disk names no file: the store adds the one it writes
        (errno.ENOSPC, False, "No space left on device (ENOSPC)"),
        (errno.EROFS, True, "Read-only file system (EROFS)"),
        (errno.EACCES, True, "Permission denied (EACCES)"),
    ],
    ids=["ENOSPC", "EROFS", "EACCES"],
)
def test_a_store_that_refuses_writes_ends_in_one_line_naming_the_file_and_the_cause(
    store_copy: tuple[Path, Path], monkeypatch, console, code: int, named: bool, cause: str
) -> None:
    config_file, store = store_copy
    written: list[Path] = []

    def refuse(path: Path, data: bytes) -> None:
        written.append(path)
        raise OSError(code, os.strerror(code), *([str(path)] if named else []))

    monkeypatch.setattr("tasks.storage._atomic_local_write", refuse)
    assert predict(config_file) == 1
    line = failure(console)
    assert line == f"forecast predict failed: {written[0]}: {cause}"
    assert str(written[0]).startswith(str(store))


@pytest.mark.slow
def test_a_corrupt_scaler_ends_in_one_line_naming_it(store_copy, console) -> None:
    config_file, store = store_copy
    scaler = champion_folder(store) / "scaler.parquet"
    scaler.write_bytes(b"PAR1 not a parquet file PAR1")
    assert predict(config_file) == 1
    line = failure(console)
    assert line.startswith(f"forecast predict failed: {scaler}: checksum mismatch")


@pytest.mark.slow
def test_an_invalid_champion_pointer_ends_in_one_line_and_debug_shows_the_traceback(
    store_copy, console
) -> None:
    config_file, store = store_copy
    pointer = store / "models" / "flowtest" / "champion.json"
    pointer.write_text('{"version": ')
    assert predict(config_file) == 1
    assert failure(console).startswith(f"forecast predict failed: {pointer}: not valid JSON")

    with pytest.raises(ArtifactError, match="champion.json: not valid JSON"):
        predict(config_file, "--debug")
    logged, _ = console.read()
    assert "Traceback" in logged  # Prefect's log of the failed task, in full


@pytest.mark.slow
def test_a_model_file_that_is_not_a_keras_zip_ends_in_one_line(store_copy, console) -> None:
    """A damaged version whose metadata agrees with the damage (its checksum passes)."""
    config_file, store = store_copy
    version = champion_folder(store)
    (version / "model.keras").write_bytes(b"not a zip")
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["files"]["model.keras"] = hashlib.sha256(b"not a zip").hexdigest()
    (version / "metadata.json").write_text(json.dumps(metadata))
    assert predict(config_file) == 1
    assert failure(console).startswith(
        f"forecast predict failed: {version / 'model.keras'}: not a .keras zip"
    )


def test_an_unexpected_error_ends_in_one_line_that_points_at_debug(monkeypatch, console) -> None:
    def bug(*args: object) -> None:
        raise KeyError("horizon")

    monkeypatch.setattr("flows.cli._load", bug)
    assert main(["predict", "--date", NIGHT]) == 1
    assert failure(console) == (
        "forecast predict failed: KeyError: 'horizon' (run with --debug for the traceback)"
    )
    with pytest.raises(KeyError):
        main(["predict", "--date", NIGHT, "--debug"])


def test_data_that_cannot_support_a_step_ends_in_its_own_message(monkeypatch, console) -> None:
    """Past validation, "no windows", "no score" and missing horizon covariates are the data's
    fault, not a bug: their message alone, without the --debug hint."""
    from tasks.normalize import InsufficientDataError
    from tasks.predict import MissingFutureCovariatesError

    for error in (
        InsufficientDataError("no validation windows: no series has 7 validation rows"),
        MissingFutureCovariatesError("futr_exog values for the forecast horizon are missing"),
    ):

        def fail(*args: object, error: Exception = error) -> None:
            raise error

        monkeypatch.setattr("flows.cli._load", fail)
        assert main(["train", "--date", NIGHT]) == 1
        assert failure(console, "train") == f"forecast train failed: {error}"


def test_a_config_path_that_cannot_be_read_ends_in_one_line(tmp_path: Path, console) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()
    assert main(["train", "--config", str(folder)]) == 1
    assert failure(console, "train") == f"forecast train failed: {folder}: Is a directory (EISDIR)"


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--date", "2026-02-30"],
        ["data", "--date", ""],
        ["backtest", "--date", "20260101"],
        ["tune", "--date", "2026-01-01T00:00"],
        ["serve", "--date", "２０２６-０１-０１"],
        ["backfill", "--from", "", "--to", "2026-01-01"],
    ],
    ids=["impossible-day", "empty", "no-dashes", "a-time", "fullwidth-digits", "empty-from"],
)
def test_every_command_refuses_a_malformed_date_in_one_line(args: list[str], capsys) -> None:
    assert main(args) == 1
    captured = capsys.readouterr()
    option = args[1]
    assert captured.err.splitlines() == [
        f"forecast {args[0]} failed: {option} {args[2]!r} is not a date YYYY-MM-DD"
    ]
    assert captured.out == ""


def test_a_malformed_run_date_parameter_fails_the_run_naming_the_value(
    trained: PipelineConfig,
) -> None:
    """A deployment's `run_date` parameter (`--param run_date=...`) reaches the flow unchecked:
    the run must fail, naming the value, not stay Pending after a traceback in the run namer."""
    from flows.forecasting import forecast_flow

    state = forecast_flow(trained, "2026-13-01", return_state=True)
    assert state.is_failed()
    assert "'2026-13-01' is not a date YYYY-MM-DD" in state.message


# -- failure 8: a CLI run killed mid-flight ---------------------------------------------------


def test_only_unfinished_runs_of_dead_cli_processes_on_this_host_are_crashed(
    prefect_harness,
) -> None:
    from prefect import flow, get_client
    from prefect.states import Running

    from flows.cli_runs import CLI_TAG, HOST_TAG, PID_TAG, crash_orphaned_cli_runs

    @flow(name="cli-runs-probe")
    def probe() -> None:
        pass

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    here = HOST_TAG + socket.gethostname()
    cases = {
        "dead-here": [CLI_TAG, here, f"{PID_TAG}{dead_pid}"],
        "alive-here": [CLI_TAG, here, f"{PID_TAG}{os.getpid()}"],
        "dead-elsewhere": [CLI_TAG, HOST_TAG + "another-host", f"{PID_TAG}{dead_pid}"],
        "not-the-cli": [here, f"{PID_TAG}{dead_pid}"],
    }
    with get_client(sync_client=True) as client:
        ids = {
            name: client.create_flow_run(probe, name=name, tags=tags, state=Running()).id
            for name, tags in cases.items()
        }
        crashed = crash_orphaned_cli_runs()
        states = {name: client.read_flow_run(run_id).state for name, run_id in ids.items()}
    assert [run.name for run in crashed] == ["dead-here"]
    assert states["dead-here"].is_crashed()
    assert f"the CLI process {dead_pid} that ran it" in states["dead-here"].message
    assert all(
        states[name].is_running() for name in ("alive-here", "dead-elsewhere", "not-the-cli")
    )


def cli_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # the CLI's own embedded server on $PREFECT_HOME's SQLite
    return env


@pytest.mark.slow
def test_a_cli_run_killed_mid_flight_is_marked_crashed_by_the_next_cli_start(
    tmp_path: Path,
) -> None:
    config = small_config(write_small_source(tmp_path / "data"), tmp_path / "store")
    config_file = str(write_config(config, tmp_path / "config.yaml"))
    env = cli_env(tmp_path / "prefect-home")
    command = [sys.executable, "-m", "flows.cli"]

    # 1. A real `forecast predict`, SIGKILLed (with its embedded server) once its run is Running.
    cli = subprocess.Popen(
        [*command, "predict", "--config", config_file, "--date", NIGHT],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    running = threading.Event()

    def watch() -> None:
        for line in cli.stderr:
            seen.append(line)
            if "Beginning flow run" in line:  # logged once the run is Running
                running.set()
        running.set()  # the command ended first: the assertion below says so

    threading.Thread(target=watch, daemon=True).start()
    try:
        running.wait(timeout=300)
        assert any("Beginning flow run" in line for line in seen), "".join(seen)[-3000:]
    finally:
        for pid in [*descendants(cli.pid), cli.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cli.wait(timeout=60)

    # 2. The next command that runs flows (here one that then fails at once) marks it Crashed.
    after = subprocess.run(
        [*command, "backtest", "--config", config_file],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    marked = re.search(
        rf"Marked flow run 'forecast-{NIGHT}' \(([0-9a-f-]+)\) Crashed", after.stderr
    )
    assert marked, after.stderr[-3000:]

    # 3. Read back from the Prefect API, on the same database: Running, then Crashed.
    probe = (
        "import sys; from prefect import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    for s in c.read_flow_run_states(sys.argv[1]): print(s.type.value, s.message or '')\n"
    )
    states = subprocess.run(
        [sys.executable, "-c", probe, marked.group(1)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout.splitlines()
    assert states[-1].startswith("CRASHED") and any(s.startswith("RUNNING") for s in states)
    assert f"the CLI process {cli.pid} that ran it" in states[-1]
