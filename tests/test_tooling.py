"""The tooling around the code: CI's entry point, the Makefile's environment, the test set-up."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, settled_states

TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def stub_commands(folder: Path, script: str, *names: str) -> Path:
    """Executables in `folder` that each run the same shell `script` (stand-ins for make, ruff...)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\n" + script + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def test_ci_entry_point_runs_make_test_with_ci_set_by_itself(tmp_path: Path) -> None:
    stubs = stub_commands(tmp_path / "bin", 'echo "$(basename "$0") $* CI=${CI:-unset}"', "make")
    stub_commands(stubs, "exit 0", "chromium", "chromedriver")  # present: no apt-get
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{stubs}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        [str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["make test CI=true"]


def test_makefile_gives_the_embedded_server_minutes_unless_told_otherwise(tmp_path: Path) -> None:
    """`make lint` with stand-in tools reports the start-up timeout its commands see."""
    stubs = stub_commands(tmp_path / "bin", f'echo "${TIMEOUT_VARIABLE}"', "ruff")
    (stubs / ".installed").touch()  # newer than pyproject.toml: make installs nothing
    env = {k: v for k, v in os.environ.items() if k != TIMEOUT_VARIABLE}

    def lint(environ: dict[str, str]) -> list[str]:
        done = subprocess.run(
            ["make", "--no-print-directory", "-s", "-C", str(REPO), f"BIN={stubs}", "lint"],
            env=environ,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    assert lint(env) == ["300", "300"]  # ruff check, ruff format --check
    assert lint({**env, TIMEOUT_VARIABLE: "45"}) == ["45", "45"]  # a user's value wins


def test_test_servers_get_minutes_to_start() -> None:
    """conftest.py's default reaches Prefect's settings (the session harness reads it too)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() >= 300


def test_state_reads_wait_until_every_expected_run_is_final() -> None:
    """The reads a busy machine gave: a run with no state yet, one still Pending, then the last
    one not yet recorded."""
    from prefect.states import Completed, Failed, Pending, Running

    reads = iter(
        [
            {"ingest": None, "validate": None},
            {"ingest": Completed(), "validate": Pending()},
            {"ingest": Completed(), "validate": Running()},
            {"ingest": Completed(), "validate": Completed(name="Cached")},
            {"ingest": Completed(), "validate": Completed(name="Cached"), "predict": Failed()},
            {
                "ingest": Completed(),
                "validate": Completed(name="Cached"),
                "predict": Completed(),
            },  # never read
        ]
    )
    states = settled_states(lambda: next(reads), ["ingest", "validate", "predict"], "test")
    assert {name: state.name for name, state in states.items()} == {
        "ingest": "Completed",
        "validate": "Cached",
        "predict": "Failed",
    }


def test_state_reads_that_never_settle_fail_naming_the_stragglers() -> None:
    from prefect.states import Completed, Running

    with pytest.raises(AssertionError, match=r"tasks not settled after 0 s: \['train'\]"):
        settled_states(lambda: {"ingest": Completed(), "train": Running()}, [], "tasks", 0.3)


def test_make_mutation_runs_mutmut_on_a_subset_then_prints_the_score(tmp_path: Path) -> None:
    stubs = stub_commands(tmp_path / "bin", 'echo "$(basename "$0") $*"', "mutmut", "python")
    (stubs / ".installed").touch()
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "-C", str(REPO), f"BIN={stubs}", "mutation"]
        + ["MUTATE=lstm_model/scaling.py tasks/window.py", "MUTATION_JOBS=2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "mutmut run --max-children 2 lstm_model.scaling.* tasks.window.*",
        "python tools/mutation_score.py lstm_model/scaling.py tasks/window.py",
    ]


def test_mutation_score_counts_timeouts_as_kills_and_untested_code_as_survivors() -> None:
    from tools.mutation_score import score_report

    statuses = {
        "lstm_model.scaling.x_fit__mutmut_1": "killed",
        "lstm_model.scaling.x_fit__mutmut_2": "timeout",
        "lstm_model.scaling.x_fit__mutmut_3": "survived",
        "lstm_model.scaling.x_fit__mutmut_4": "no tests",
        "lstm_model.scaling.x_fit__mutmut_5": "not checked",
        "lstm_model.scaling_extra.x_f__mutmut_1": "survived",  # another module: not a prefix
        "tasks.window.x_w__mutmut_1": "survived",
    }
    lines, score = score_report(statuses, ["lstm_model/scaling.py"])
    assert score == 0.5
    assert lines == [
        "mutants: 1 killed, 1 no tests, 1 not checked, 1 survived, 1 timeout",
        "  survived  lstm_model.scaling.x_fit__mutmut_3",
        "  no tests  lstm_model.scaling.x_fit__mutmut_4",
        "(see one with: mutmut show NAME)",
        "mutation score: 2/4 = 50.0%",
    ]
    assert score_report(statuses, [])[1] == 2 / 6
    assert score_report({"a.b.x__mutmut_1": "not checked"}, [])[1] is None


def test_mutation_runs_only_fast_unit_tests_over_files_that_exist() -> None:
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert settings["process_isolation"] == "forkserver"  # TensorFlow is not fork-safe
    for pattern in settings["only_mutate"]:
        assert list(REPO.glob(pattern)), pattern
    for test_file in settings["pytest_add_cli_args_test_selection"]:
        text = (REPO / test_file).read_text()
        assert "prefect_harness" not in text and "flows." not in text, test_file
