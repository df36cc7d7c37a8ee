"""`forecast versions`, `forecast promote` and `forecast rollback` on real registries.

Versions are saved without training (as tests/test_registry.py does) with the gate's
`decision.json` written as `tasks.register.register` writes it; the commands run in process
through `flows.cli.main`. None of them runs a flow, so none starts a Prefect server.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows import cli, cli_runs
from lstm_model.metrics import OVERALL
from lstm_model.scaling import fit_scaler
from tasks.config import PipelineConfig
from tasks.registry import ModelRegistry
from tasks.storage import ArtifactStore

NAME = "demo"


def overall(**scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": model, "unique_id": OVERALL, "mae": 1.0, "rmse": 1.0, "smape": 1.0, **row}
            for model, row in scores.items()
        ]
    )


@pytest.fixture
def setup(tmp_path: Path, monkeypatch) -> tuple[Path, ModelRegistry]:
    """A config file over a store holding v1 (promoted by the gate), v2 (refused) and v3
    (quantile metrics, no gate decision); v1 is the champion."""

    def no_flow_runs() -> list:
        raise AssertionError("a registry command must not look for Prefect runs")

    monkeypatch.setattr(cli_runs, "crash_orphaned_cli_runs", no_flow_runs)
    config = PipelineConfig(
        name=NAME,
        source={"path": str(tmp_path / "unused.parquet")},
        storage={"root": str(tmp_path)},
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    store = ArtifactStore(str(tmp_path))
    registry = ModelRegistry(store, NAME)
    scaler = fit_scaler(pd.DataFrame({"unique_id": ["a", "a"], "y": [1.0, 2.0]}), ["y"], "standard")
    tables = {
        "v1": overall(lstm={"mase": 0.7}, seasonal_naive={"mase": 0.9}),
        "v2": overall(lstm={"mase": 0.95}, seasonal_naive={"mase": 0.9}),
        "v3": overall(
            lstm={"mase": 0.6, "spl": 0.31, "coverage_80": 0.78}, seasonal_naive={"mase": 0.85}
        ),
    }
    for version, table in tables.items():
        registry.save_version(
            version,
            model_bytes=b"model",
            scaler=scaler,
            metrics=table,
            config=config,
            metadata={"look_back": 3, "horizon": 2},
        )
    with registry.pointer_lock():
        registry.swap_champion(None, "v1", "challenger MASE 0.7000; beats seasonal_naive (0.9000)")
    decisions = {
        "v1": {"promote": True, "reason": "challenger MASE 0.7000; beats seasonal_naive (0.9000)"},
        "v2": {"promote": False, "reason": "challenger MASE 0.9500 does not beat seasonal_naive"},
    }
    for version, decision in decisions.items():
        store.write_json(registry.uri(version, "decision.json"), decision)
    return config_file, registry


def forecast(*args: str) -> int:
    return cli.main(list(args))


def test_registry_commands_run_no_flows() -> None:
    assert {"versions", "promote", "rollback"}.isdisjoint(cli.FLOW_COMMANDS)


def test_versions_lists_newest_first_with_metrics_and_decisions(setup, capsys) -> None:
    config_file, _ = setup
    assert forecast("versions", "--config", str(config_file)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[1].split()
    assert header == ["version", "saved_at", "champion", "mase", "seasonal_naive_mase", "spl"] + [
        "coverage_80"
    ]
    rows = [line.split() for line in lines[2:5]]
    assert [row[0] for row in rows] == ["v3", "v2", "v1"]
    assert rows[0][-4:] == ["0.6000", "0.8500", "0.3100", "0.7800"]
    assert rows[1][-4:] == ["0.9500", "0.9000", "-", "-"]
    assert rows[2][-5:] == ["*", "0.7000", "0.9000", "-", "-"]  # only v1 is the champion
    assert "*" not in rows[0] + rows[1]
    assert "  v3: no gate decision recorded" in lines
    assert "  v2: refused: challenger MASE 0.9500 does not beat seasonal_naive" in lines
    assert "  v1: promoted: challenger MASE 0.7000; beats seasonal_naive (0.9000)" in lines


def test_versions_of_an_empty_registry_says_what_to_run(tmp_path, capsys) -> None:
    config = PipelineConfig(source={"path": "unused.parquet"}, storage={"root": str(tmp_path)})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert forecast("versions", "--config", str(config_file)) == 0
    assert "No model versions" in capsys.readouterr().out


def test_promote_then_rollback_swap_the_champion_and_record_who(setup, capsys) -> None:
    config_file, registry = setup
    assert forecast("promote", "v2", "--config", str(config_file)) == 0
    assert "Champion of demo: v2 (was v1)." in capsys.readouterr().out
    pointer = registry.champion_pointer()
    assert pointer["version"] == "v2" and pointer["previous"] == "v1"
    assert pointer["reason"] == "promoted by forecast promote"
    assert [entry["version"] for entry in pointer["history"]] == ["v1"]
    assert pointer["history"][0]["reason"].startswith("challenger MASE 0.7000")

    assert forecast("promote", "v3", "--config", str(config_file)) == 0
    assert [entry["version"] for entry in registry.champion_history()] == ["v1", "v2"]

    assert forecast("rollback", "--config", str(config_file)) == 0
    assert "Champion of demo: v2 again (was v3)." in capsys.readouterr().out
    pointer = registry.champion_pointer()
    assert pointer["version"] == "v2"
    assert pointer["reason"] == "rolled back by forecast rollback from v3"
    assert [entry["version"] for entry in pointer["history"]] == ["v1"]
    assert registry.decision("v3") is None  # the gate's record of each version is untouched

    assert forecast("rollback", "--config", str(config_file)) == 0
    assert registry.champion_version() == "v1"
    assert forecast("versions", "--config", str(config_file)) == 0
    assert "Champion v1: rolled back by forecast rollback from v2" in capsys.readouterr().out


def test_rollback_without_a_previous_champion_refuses_in_one_line(setup, capsys) -> None:
    config_file, registry = setup
    before = Path(registry.store.path("models", NAME, "champion.json")).read_bytes()
    assert forecast("rollback", "--config", str(config_file)) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"forecast rollback failed: {registry.uri('champion.json')}: no previous champion to "
        "roll back to (the champion is v1)"
    )
    assert Path(registry.store.path("models", NAME, "champion.json")).read_bytes() == before


def test_rollback_follows_a_pointer_written_before_the_history(setup) -> None:
    config_file, registry = setup
    registry.store.write_json(
        registry.uri("champion.json"), {"version": "v2", "previous": "v1", "reason": "gate"}
    )
    assert forecast("rollback", "--config", str(config_file)) == 0
    pointer = registry.champion_pointer()
    assert (pointer["version"], pointer["previous"], pointer["history"]) == ("v1", "v2", [])


@pytest.mark.parametrize(
    ("version", "cause"),
    [
        ("v9", "no complete version 'v9' to promote"),
        ("v4", "no complete version 'v4' to promote"),  # a folder without metadata.json
        ("../v1", "'../v1' is not a valid model version id"),
    ],
)
def test_promote_refuses_an_unknown_or_incomplete_version(setup, capsys, version, cause) -> None:
    config_file, registry = setup
    registry.store.write_bytes(registry.uri("v4", "model.keras"), b"half a save")
    assert forecast("promote", version, "--config", str(config_file)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("forecast promote failed: ") and cause in err
    assert "\n" not in err
    assert registry.champion_version() == "v1"


def test_promote_of_the_champion_changes_nothing(setup, capsys) -> None:
    config_file, registry = setup
    before = registry.champion_pointer()
    assert forecast("promote", "v1", "--config", str(config_file)) == 0
    assert "already the champion" in capsys.readouterr().out
    assert registry.champion_pointer() == before


def blocked_on_flock(lock: Path) -> bool:
    """Whether some process waits for an flock on `lock` (/proc/locks marks waiters "->")."""
    inode = f":{os.stat(lock).st_ino} "
    return any(
        "->" in line and "FLOCK" in line and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
    )


def test_promote_refuses_when_the_champion_changed_meanwhile(setup, capsys) -> None:
    """A training promotes v3 while `forecast promote v2` waits for the lock, after reading v1 as
    the champion: the promote refuses and the training's champion stays."""
    config_file, registry = setup
    lock = Path(registry.store.path("models", NAME, ".champion.lock"))
    codes: list[int] = []
    with registry.pointer_lock():
        command = threading.Thread(
            target=lambda: codes.append(forecast("promote", "v2", "--config", str(config_file)))
        )
        command.start()
        deadline = time.monotonic() + 60
        while not blocked_on_flock(lock):
            assert time.monotonic() < deadline, "the promote never waited for the lock"
            time.sleep(0.05)
        registry.swap_champion("v1", "v3", "the gate, meanwhile")
    command.join(timeout=60)
    assert codes == [1]
    err = capsys.readouterr().err.strip()
    assert err == (
        f"forecast promote failed: {registry.uri('champion.json')}: the champion is v3, not v1 "
        "as compared; v2 was not promoted"
    )
    pointer = registry.champion_pointer()
    assert (pointer["version"], pointer["reason"]) == ("v3", "the gate, meanwhile")


def test_rollback_to_a_version_gc_removed_refuses_in_one_line(setup, capsys) -> None:
    config_file, registry = setup
    assert forecast("promote", "v2", "--config", str(config_file)) == 0
    registry.store.remove(registry.uri("v1"))  # retention removed the former champion
    assert forecast("rollback", "--config", str(config_file)) == 1
    err = capsys.readouterr().err.strip()
    assert err == "forecast rollback failed: cannot promote demo/v1: no complete version"
    assert registry.champion_version() == "v2"
