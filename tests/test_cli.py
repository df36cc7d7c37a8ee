"""The real `forecast` command on every example config (shrunk through environment overrides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks.config import load_config

REPO = Path(__file__).resolve().parent.parent
DEMO_NIGHT = "2016-08-01"  # the Makefile's DEMO_DATE: its home games lie in the bundled data
EXAMPLES = sorted((REPO / "configs").glob("*.toml")) + sorted((REPO / "configs").glob("*.y*ml"))

# Same pipeline, a fraction of the work: a tiny model, one epoch, a few thousand windows.
FAST = {
    "FORECAST__MODEL__UNITS": "[8]",
    "FORECAST__TRAINING__EPOCHS": "1",
    "FORECAST__TRAINING__MAX_TRAIN_WINDOWS": "3000",
    "FORECAST__EVALUATION__GATE_MUST_BEAT": '"none"',
    # AutoETS and AutoTheta still run (a few seconds' sample), as the demo runs them.
    "FORECAST__EVALUATION__BASELINE_TIME_BUDGET_S": "3",
}


def forecast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("config_path", EXAMPLES, ids=lambda p: p.name)
def test_forecast_run_show_and_errors_on_each_example_config(config_path: Path, tmp_path) -> None:
    env = {
        **os.environ,
        **FAST,
        "FORECAST__STORAGE__ROOT": str(tmp_path / "store"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    env.pop("PREFECT_API_URL", None)  # the CLI's own embedded server, as a user gets it
    config = load_config(config_path, environ=env)

    shown = forecast("show", "--config", str(config_path), env=env)
    assert shown.returncode == 1 and "run `forecast train` first" in shown.stdout

    ran = forecast("run", "--config", str(config_path), "--date", DEMO_NIGHT, env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    for step in ("ingest", "validate", "normalize", "window", "train", "evaluate", "model"):
        assert f"  {step} " in ran.stdout, f"artifact of {step} not printed"
    assert "promoted to champion" in ran.stdout
    assert "seasonal_naive" in ran.stdout and "mase" in ran.stdout
    out = Path(config.storage.root) / "forecasts" / config.name / f"run_date={DEMO_NIGHT}"
    assert str(out / "forecast.parquet") in ran.stdout
    forecast_rows = pd.read_parquet(out / "forecast.parquet")
    series = pd.read_parquet(config.source.path, columns=[config.source.id_column]).nunique()
    assert len(forecast_rows) == int(series.iloc[0]) * config.window.horizon

    shown = forecast("show", "--config", str(config_path), env=env)
    assert shown.returncode == 0 and f"Latest forecast: run_date={DEMO_NIGHT}" in shown.stdout

    bad = forecast(
        "run", "--config", str(config_path), env={**env, "FORECAST__SCALING__METHOD": '"zscore"'}
    )
    assert bad.returncode == 2
    assert "scaling.method: Input should be 'standard' or 'minmax'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_help_answers_without_importing_the_heavy_libraries() -> None:
    probe = (
        "import sys; from flows.cli import build_parser; build_parser().format_help();"
        "print(json.dumps([m for m in ('tensorflow', 'prefect', 'great_expectations') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json;" + probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["predict", "--date", "2026-13-01"], "--date '2026-13-01' is not a date YYYY-MM-DD"),
        (["train", "--date", "tomorrow"], "--date 'tomorrow' is not a date YYYY-MM-DD"),
        (
            ["backfill", "--from", "2026-11-01", "--to", "2026-11-31"],
            "--to '2026-11-31' is not a date YYYY-MM-DD",
        ),
        (
            ["backfill", "--from", "2026-11-05", "--to", "2026-11-01"],
            "--from 2026-11-05 is after --to 2026-11-01: nothing to replay",
        ),
    ],
)
def test_a_malformed_date_option_ends_in_one_clear_line(args: list[str], line: str) -> None:
    config = str(REPO / "configs" / "chicago.toml")
    done = forecast(*args, "--config", config, env=dict(os.environ))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"forecast {args[0]} failed: {line}"]
    assert done.stdout == ""


def test_cli_gives_the_embedded_server_time_to_start_unless_told_otherwise(monkeypatch) -> None:
    from flows.cli import _quiet_environment

    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    _quiet_environment()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "300"
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    _quiet_environment()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45"


def test_an_embedded_server_that_never_starts_fails_in_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    """A real start-up failure: a zero timeout makes Prefect give up before the first health check."""
    env = {
        **os.environ,
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0",
        "FORECAST__STORAGE__ROOT": str(tmp_path / "store"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    env.pop("PREFECT_API_URL", None)
    done = forecast("predict", "--config", "configs/chicago.toml", "--date", "2026-11-24", env=env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("forecast predict")]
    assert line == (
        "forecast predict failed: the temporary Prefect server did not start within 0 s"
        " (a busy machine?): raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a"
        " server with `make server` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
    )
    assert not (tmp_path / "store" / "artifacts").exists()  # nothing ran
