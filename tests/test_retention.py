"""Retention (`forecast gc`): the plan's rules, then a real store that real flows wrote."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tasks.retention import RegistryState, StoredItem, collect_garbage, plan_removals
from tasks.storage import ArtifactError, ArtifactStore

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(days=31), NOW - timedelta(days=29)


def item(kind: str, path: str, modified: datetime = OLD, **fields) -> StoredItem:
    return StoredItem(kind, uri=path, path=path, modified=modified, **fields)  # type: ignore[arg-type]


def planned(items: list[StoredItem], registry: RegistryState) -> dict[str, str]:
    return {r.item.path: r.reason for r in plan_removals(items, registry, NOW, retention_days=30)}


def test_plan_removes_what_is_older_than_the_retention_and_says_why() -> None:
    registry = RegistryState(champions={"p": "v2"}, lineage=frozenset())
    items = [
        item("artifact", "/s/artifacts/ingest/old.parquet"),
        item("artifact", "/s/artifacts/ingest/new.parquet", RECENT),
        item("report", "/s/reports/evaluate/old.png"),
        item("checkpoint", "/s/checkpoints/old"),
        item("checkpoint", "/s/checkpoints/new", RECENT),
        item("forecast", "/s/forecasts/p/run_date=2026-10-29", run_date=date(2026, 10, 29)),
        # Written long ago, but its run date is inside the window: kept (age is the run date).
        item("forecast", "/s/forecasts/p/run_date=2026-10-30", run_date=date(2026, 10, 30)),
        item("model", "/s/models/p/v1", pipeline="p", version="v1"),
        item("model", "/s/models/p/v2", pipeline="p", version="v2"),  # the champion
        item("model", "/s/models/q/v2", pipeline="q", version="v2"),  # same id, other pipeline
        item("model", "/s/models/p/v3", RECENT, pipeline="p", version="v3"),
    ]
    assert planned(items, registry) == {
        "/s/artifacts/ingest/old.parquet": "last written 2026-10-29, older than 30 days",
        "/s/reports/evaluate/old.png": "last written 2026-10-29, older than 30 days",
        "/s/checkpoints/old": "last written 2026-10-29, older than 30 days",
        "/s/forecasts/p/run_date=2026-10-29": "run_date 2026-10-29 is older than 30 days",
        "/s/models/p/v1": "not the champion, saved 2026-10-29, older than 30 days",
        "/s/models/q/v2": "not the champion, saved 2026-10-29, older than 30 days",
    }


def test_plan_never_removes_the_champions_lineage_however_old() -> None:
    lineage = frozenset(
        {"/s/artifacts/train/k.parquet", "/s/artifacts/train/k.keras", "/s/artifacts/window/b"}
    )
    registry = RegistryState(champions={}, lineage=lineage)
    items = [
        item("artifact", "/s/artifacts/train/k.parquet"),
        item("artifact", "/s/artifacts/train/k.keras"),
        item("artifact", "/s/artifacts/train/k2.parquet"),  # a sibling whose name extends k
        item("artifact", "/s/artifacts/window/b"),  # a bucketed artifact: a folder
        item("artifact", "/s/artifacts/window/bb"),
    ]
    assert set(planned(items, registry)) == {
        "/s/artifacts/train/k2.parquet",
        "/s/artifacts/window/bb",
    }


def test_plan_refuses_a_retention_below_one_day() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_removals([], RegistryState({}, frozenset()), NOW, retention_days=0)


def test_retention_days_is_a_validated_storage_setting() -> None:
    from tasks.config import ConfigError, StorageConfig, load_config

    assert StorageConfig().retention_days == 30
    config = Path(__file__).resolve().parent.parent / "configs" / "chicago.toml"
    assert load_config(config, environ={"FORECAST__STORAGE__RETENTION_DAYS": "7"}).storage == (
        StorageConfig(root=load_config(config, environ={}).storage.root, retention_days=7)
    )
    with pytest.raises(ConfigError, match="storage.retention_days: Input should be greater"):
        load_config(config, environ={"FORECAST__STORAGE__RETENTION_DAYS": "0"})


# -- a real store -------------------------------------------------------------------------------
# The small source ends on 2016-08-14 and a night validates only data close to it (the as-of
# cut), so the store's clock is set to then: written 60 days before, forecasts up to 45 days old.
STORE_NOW = datetime(2016, 8, 17, 4, 0, tzinfo=UTC)


def age_everything(root: Path, now: datetime, days: int) -> None:
    """Backdate every file and folder under `root` to `days` before `now`."""
    stamp = (now - timedelta(days=days)).timestamp()
    for path in root.rglob("*"):
        os.utime(path, (stamp, stamp))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def aged_store(tmp_path_factory: pytest.TempPathFactory, prefect_harness):  # noqa: ARG001
    """Two trainings (one champion, one not), an old and a recent nightly forecast and a stale
    checkpoint, all written 60 days before STORE_NOW."""
    from flows.forecasting import forecast_flow
    from flows.training import training_flow
    from tests.support import small_config, write_small_source

    base = tmp_path_factory.mktemp("retention")
    config = small_config(write_small_source(base / "data"), base / "store")
    old_date, recent_date = date(2016, 7, 3), date(2016, 8, 15)
    registrations = [training_flow(config, night) for night in ("2016-08-01", "2016-08-15")]
    for night in (old_date, recent_date):
        forecast_flow(config, str(night))
    root = Path(config.storage.root)
    (root / "checkpoints" / "stale").mkdir(parents=True)
    (root / "checkpoints" / "stale" / "backup.weights.h5").write_bytes(b"x" * 10)
    age_everything(root, STORE_NOW, days=60)
    return config, root, registrations, old_date, recent_date


def test_gc_dry_run_lists_the_old_and_removes_nothing(aged_store, capsys) -> None:
    from flows.cli import main

    config, root, _, old_date, _ = aged_store
    before = files_under(root)
    config_file = root.parent / "gc.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))

    assert main(["gc", "--config", str(config_file), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert files_under(root) == before
    assert any(
        line.startswith("would remove  forecast") and f"run_date={old_date}" in line
        for line in lines
    )
    assert any(line.startswith("would remove  checkpoint") and "stale" in line for line in lines)
    assert re.fullmatch(
        rf"\d+ item\(s\) would be removed \(\d+\.\d MB\) from {re.escape(str(root))}: older"
        " than 30 days; every champion, its lineage and newer forecasts kept",
        lines[-1],
    )
    assert len(lines) == int(lines[-1].split()[0]) + 1


def test_gc_removes_the_old_and_keeps_the_champion_its_lineage_and_recent_forecasts(
    aged_store,
) -> None:
    from flows.forecasting import forecast_flow
    from tasks.registry import ModelRegistry

    config, root, registrations, old_date, recent_date = aged_store
    store = ArtifactStore(str(root))
    registry = ModelRegistry(store, config.name)
    champion = registry.champion_version()
    other = next(r.version for r in registrations if r.version != champion)
    mine = next(r for r in registrations if r.version == champion)

    removals = collect_garbage(store, config.storage.retention_days, dry_run=False, now=STORE_NOW)

    removed = {r.item.path for r in removals}
    assert removed and not any(Path(path).exists() for path in removed)
    # The champion loads and everything it was made from is still there, however old.
    assert registry.versions() == [champion] and registry.load(champion).scaler is not None
    kept = {step: uri for step, uri in mine.artifacts.items() if step != "model"}
    assert set(kept) == {"ingest", "validate", "normalize", "window", "train", "evaluate"}
    assert all(Path(uri).exists() for uri in kept.values())
    train_meta = store.read_metadata(kept["train"])
    assert Path(train_meta["model"]["uri"]).exists()  # the .keras file the version came from
    assert Path(store.read_metadata(kept["evaluate"])["plot"]).exists()
    # The other version, the old forecast, the stale checkpoint and the rest are gone.
    assert not (root / "models" / config.name / other).exists()
    forecasts = root / "forecasts" / config.name
    assert sorted(p.name for p in forecasts.iterdir()) == [f"run_date={recent_date}"]
    assert not (root / "checkpoints" / "stale").exists()
    other_artifacts = {
        path for path in removed if "/artifacts/" in path and path not in set(kept.values())
    }
    assert other_artifacts, "the other training's artifacts were old and not the champion's"
    # A rerun of the old night recomputes what was removed instead of failing on a missing file.
    summary = forecast_flow(config, str(old_date))
    assert summary.model_version == champion and Path(summary.uri).exists()

    again = collect_garbage(store, config.storage.retention_days, dry_run=False, now=STORE_NOW)
    assert [r.item.path for r in again] == [str(forecasts / f"run_date={old_date}")]


def test_gc_refuses_to_guess_when_the_champions_lineage_is_broken(tmp_path: Path) -> None:
    from tasks.registry import ModelRegistry

    store = ArtifactStore(str(tmp_path / "store"))
    (tmp_path / "store" / "models" / "p" / "v1").mkdir(parents=True)
    store.write_json(store.uri("models", "p", "v1", "metadata.json"), {"artifacts": {}})
    store.write_json(store.uri("models", "p", "champion.json"), {"version": "v1"})
    assert ModelRegistry(store, "p").champion_version() == "v1"
    old = tmp_path / "store" / "artifacts" / "ingest" / "old.parquet"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    age_everything(tmp_path / "store", datetime.now(UTC), days=60)

    with pytest.raises(ArtifactError, match="lineage is unknown; nothing removed"):
        collect_garbage(store, 30, dry_run=False)
    store.write_json(
        store.uri("models", "p", "v1", "metadata.json"),
        {"artifacts": {"windows": store.uri("artifacts", "window", "gone.parquet")}},
    )
    with pytest.raises(ArtifactError, match="gone.parquet: in a champion's lineage but missing"):
        collect_garbage(store, 30, dry_run=False)
    assert old.exists()
