"""Issue 10, failure 1 and the publish path: a night that cannot be forecast well never replaces
a good forecast; staged files of killed writers are swept; SIGKILL at each point of an atomic
write leaves the previous forecast readable and the rerun publishes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tasks.config import PipelineConfig
from tasks.predict import (
    PublishedForecast,
    PublishGuardError,
    forecast_frame,
    predict_task,
    publish_problems,
)
from tasks.registry import ModelRegistry
from tasks.runtime import is_transient_io_error
from tasks.storage import ArtifactStore, sha256_bytes
from tests.support import REPO, SERIES, train_small_champion

NIGHT = "2016-08-10"  # inside the small source (it ends 2016-08-14)
HOUR = 3600


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_harness,  # noqa: ARG001
) -> PipelineConfig:
    """A store with a champion trained on the small real source and NIGHT's good forecast."""
    from flows.forecasting import forecast_flow

    config = train_small_champion(tmp_path_factory.mktemp("publish"), "2016-08-15")
    assert forecast_flow(config, NIGHT).series == len(SERIES)
    return config


def forecast_path(config: PipelineConfig, night: str) -> Path:
    return Path(
        config.storage.root, "forecasts", config.name, f"run_date={night}", "forecast.parquet"
    )


def with_source(config: PipelineConfig, frame: pd.DataFrame, path: Path) -> PipelineConfig:
    frame.to_parquet(path, index=False)
    return config.model_copy(
        update={"source": config.source.model_copy(update={"path": str(path)})}
    )


def truncated(source: pd.DataFrame) -> pd.DataFrame:
    """Each series' last 5 days before NIGHT: an extract cut short, under look_back (14).
    Validation sets such series aside; the test lets it set them all aside, so the night
    reaches predict with no rows (with the default share, validation itself fails the night)."""
    night = pd.Timestamp(NIGHT)  # naive local wall times, as the source holds them
    keep = (source["timestamp"] < night) & (source["timestamp"] >= night - pd.Timedelta(days=5))
    return source[keep]


def renamed(count: int):
    """The first `count` series under a new id scheme: ids the champion never saw."""

    def rename(source: pd.DataFrame) -> pd.DataFrame:
        new = source["series_id"].isin(SERIES[:count])
        return source.assign(series_id=source["series_id"].where(~new, "v2_" + source["series_id"]))

    return rename


@pytest.mark.slow
@pytest.mark.parametrize(
    ("feed", "why"),
    [
        (truncated, r"no series forecast \(3 series not forecast: 'Austin': only 5 steps; a for"),
        (renamed(3), r"no series forecast \(3 series not forecast: 'v2_Austin': not in the champ"),
        (
            renamed(2),
            r"1 series forecast, fewer than forecast.min_series_share=0.5 of the 3 series in "
            r".*run_date=2016-08-10/forecast.parquet \(2 series not forecast",
        ),
    ],
    ids=["truncated-extract", "all-ids-new", "two-of-three-ids-new"],
)
def test_a_night_forecasting_too_few_series_fails_and_keeps_the_published_file(
    trained: PipelineConfig, tmp_path: Path, capsys: pytest.CaptureFixture, feed, why: str
) -> None:
    from flows.cli import main
    from flows.forecasting import forecast_flow

    published = forecast_path(trained, NIGHT)
    before = published.read_bytes()
    bad = with_source(trained, feed(pd.read_parquet(trained.source.path)), tmp_path / "feed.pq")
    # Validation may set every series aside (only the truncated feed needs it), so what stops
    # the night is the publish guard.
    bad = bad.model_copy(
        update={"validation": bad.validation.model_copy(update={"max_set_aside_share": 1.0})}
    )
    expected = rf"Not publishing {re.escape(str(published))}: {why}"
    with pytest.raises(PublishGuardError, match=expected) as caught:
        forecast_flow(bad, NIGHT)
    assert str(caught.value).endswith("the file there is left as it was")
    assert published.read_bytes() == before
    assert not is_transient_io_error(caught.value)  # the task's retry condition: not retried
    # The command says why in one line and exits 1.
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(bad.model_dump(mode="json")))
    assert main(["predict", "--config", str(config_file), "--date", NIGHT]) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if "failed" in line]
    assert re.match(rf"forecast predict failed: {expected}", line)
    assert published.read_bytes() == before


def fallback_config(root: Path, **sections: dict) -> PipelineConfig:
    """No champion in `root`: the seasonal-naive fallback serves, a real forecaster."""
    return PipelineConfig(
        source={"path": "x.parquet"},
        window={"look_back": 14, "horizon": 3},
        evaluation={"season_length": 7},
        storage={"root": str(root)},
        **sections,
    )


def daily(ends: str, **series: int) -> pd.DataFrame:
    """Series of the given lengths, daily at UTC midnight, all ending on `ends`."""
    rng = np.random.default_rng(3)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": pd.date_range(end=ends, periods=n, freq="D", tz="UTC"),
                    "y": 100 + rng.standard_normal(n),
                }
            )
            for uid, n in series.items()
        ],
        ignore_index=True,
    )


def test_a_forecaster_producing_inf_is_not_published(tmp_path: Path) -> None:
    config = fallback_config(tmp_path)
    store = ArtifactStore(str(tmp_path))
    good = daily("2026-02-09", a=30, b=30)
    summary = predict_task.fn(
        config, store.write_table("validate", "good", good, config_hash="x"), "2026-02-10"
    )
    before = Path(summary.uri).read_bytes()
    bad = good.copy()
    bad.loc[(bad["unique_id"] == "b") & (bad["ds"] >= "2026-02-01"), "y"] = np.inf
    validated = store.write_table("validate", "bad", bad, config_hash="x")
    with pytest.raises(
        PublishGuardError, match=r"yhat is not finite in 3 rows of 1 series \(first: series 'b', s"
    ):
        predict_task.fn(config, validated, "2026-02-10")
    assert Path(summary.uri).read_bytes() == before


def table(ids: list[str], first: str, horizon: int = 3, values: np.ndarray | None = None):
    n = len(ids)
    grid = pd.date_range(first, periods=horizon, freq="D").to_numpy()
    yhat = np.ones((n, horizon)) if values is None else values
    return forecast_frame(
        np.array(ids, dtype=object),
        np.tile(grid, (n, 1)),
        yhat,
        model="m",
        model_version="v",
        fallback=False,
        quantiles=(0.1, 0.5, 0.9),
        yhat_quantiles=yhat[..., None] + np.array([-1.0, 0.0, 1.0]),
    )


def test_publish_problems_name_each_guard() -> None:
    config = fallback_config(Path("/unused"), model={"quantiles": [0.1, 0.5, 0.9]})
    assert publish_problems(table(["a", "b"], "2026-02-10"), {}, None, config, "2026-02-10") == []
    # A filled quantile column must be finite too; NaN yhat is named with its series and step.
    values = np.ones((2, 3))
    values[1, 2] = np.nan
    [yhat, q10, q50, q90] = publish_problems(
        table(["a", "b"], "2026-02-10", values=values), {}, None, config, "2026-02-10"
    )
    assert yhat == "yhat is not finite in 1 rows of 1 series (first: series 'b', step 3: nan)"
    assert q10.startswith("yhat_q10 is not finite in 1 rows") and q90.startswith("yhat_q90")
    # Half of the previous night's series is enough; fewer is not.
    previous = PublishedForecast("/f/run_date=2026-02-09/forecast.parquet", 4)
    assert (
        publish_problems(table(["a", "b"], "2026-02-10"), {}, previous, config, "2026-02-10") == []
    )
    [share] = publish_problems(
        table(["a"], "2026-02-10"), {"c": "why", "d": "why"}, previous, config, "2026-02-10"
    )
    assert share == (
        "1 series forecast, fewer than forecast.min_series_share=0.5 of the 4 series in "
        "/f/run_date=2026-02-09/forecast.parquet (2 series not forecast: 'c': why; 'd': why)"
    )
    # A forecast that starts after the night read rows at or after it.
    [late] = publish_problems(table(["a"], "2026-02-11"), {}, None, config, "2026-02-10")
    assert late == (
        "1 series start after the night 2026-02-10: their input reached rows at or after its "
        "start (first: series 'a' starts at 2026-02-11)"
    )
    # validation.max_staleness = 3: the freshest series may start 3 days before the night.
    assert publish_problems(table(["a"], "2026-02-07"), {}, None, config, "2026-02-10") == []
    [stale] = publish_problems(table(["a"], "2026-02-06"), {}, None, config, "2026-02-10")
    assert stale.startswith("the freshest series starts at 2026-02-06, more than validation.")


def test_stale_staged_files_are_swept_at_the_start_of_predict(tmp_path: Path) -> None:
    config = fallback_config(tmp_path)
    store = ArtifactStore(str(tmp_path))
    validated = store.write_table("validate", "good", daily("2026-02-09", a=30), config_hash="x")
    night = tmp_path / "forecasts" / config.name / "run_date=2026-02-10"
    night.mkdir(parents=True)
    old = night / f".forecast.parquet.{'a' * 32}.tmp"
    fresh = night / f".forecast.parquet.{'b' * 32}.tmp"
    old_artifact = tmp_path / "artifacts" / "validate" / f".k.parquet.{'c' * 32}.tmp"
    not_staged = night / ".notes.tmp"  # not a name `staging_path` gives: never ours to delete
    for path in (old, fresh, old_artifact, not_staged):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 2 * HOUR
    for path in (old, old_artifact, not_staged):
        os.utime(path, (two_hours_ago, two_hours_ago))
    predict_task.fn(config, validated, "2026-02-10")
    assert not old.exists() and not old_artifact.exists()
    assert fresh.exists() and not_staged.exists()  # a live writer's staging file is kept
    assert store.remove_stale_staging("forecasts", older_than=pd.Timedelta(0)) == [str(fresh)]
    assert (night / "forecast.parquet").exists()


# -- SIGKILL on the publish path ----------------------------------------------------------------
CHILD = """
import os, signal, sys
from pathlib import Path

from tasks.config import PipelineConfig
from tasks.ingest import ingest_task
from tasks.predict import predict_task
from tasks.storage import STAGING_NAME
from tasks.validate import validate_task

config_file, night, folder, point = sys.argv[1:]
real_fsync, real_replace = os.fsync, os.replace
renamed = []


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


def fsync(fd):
    path = os.readlink(f"/proc/self/fd/{fd}")
    staged = os.path.dirname(path) == folder and STAGING_NAME.fullmatch(os.path.basename(path))
    if staged and point == "written":
        kill()  # the bytes are written and flushed, not yet fsynced
    real_fsync(fd)
    if (staged and point == "synced") or (path == folder and renamed and point == "dir_synced"):
        kill()


def replace(src, dst):
    real_replace(src, dst)
    if os.path.dirname(dst) == folder:
        renamed.append(dst)
        if point == "renamed":
            kill()  # renamed, the directory not yet fsynced


os.fsync, os.replace = fsync, replace
config = PipelineConfig.model_validate_json(Path(config_file).read_text())
ingested = ingest_task.fn(config, night)
validated = validate_task.fn(config, ingested, purpose="forecast", as_of=night)
predict_task.fn(config, validated, night)
"""

POINTS = ["written", "synced", "renamed", "dir_synced"]
"""Where the child dies: after the staged write (before fsync), after its fsync (before the
rename), after the rename (before the directory fsync), after the directory fsync (before
returning)."""


def nightly(config: PipelineConfig, night: str):
    """The nightly forecast's steps without a Prefect run, as the killed child runs them."""
    from tasks.ingest import ingest_task
    from tasks.validate import validate_task

    ingested = ingest_task.fn(config, night)
    validated = validate_task.fn(config, ingested, purpose="forecast", as_of=night)
    return predict_task.fn(config, validated, night)


def staged_in(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("target", ["forecast", "validated-artifact"])
def test_sigkill_on_the_publish_path_keeps_the_previous_forecast_and_the_rerun_publishes(
    trained: PipelineConfig, tmp_path: Path, target: str, point: str
) -> None:
    night = f"2016-08-0{1 + 4 * (target != 'forecast') + POINTS.index(point)}"  # one per case
    nightly(trained, night)
    published = forecast_path(trained, night)
    before = published.read_bytes()
    store = ArtifactStore(trained.storage.root)
    _, meta = store.read_table(store_ref(store, published))
    validated = Path(meta["inputs"][0]["uri"])
    if target == "forecast":
        folder = published.parent
    else:
        folder = validated.parent
        validated.unlink()  # the night's validation is redone, and killed while written
    # Another retention setting: the same forecast, other bytes (its config hash), so the
    # oracle can tell the old file from the new one.
    changed = trained.model_copy(
        update={"storage": trained.storage.model_copy(update={"retention_days": 31})}
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(changed.model_dump_json())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.run(
        [sys.executable, str(script), str(config_file), night, str(folder), point],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]

    # Oracle: the night's forecast is whole, the old bytes until the forecast's own rename.
    after = published.read_bytes()
    renamed = target == "forecast" and point in {"renamed", "dir_synced"}
    assert (after != before) == renamed
    assert pd.read_parquet(published).groupby("unique_id").size().to_dict() == dict.fromkeys(
        SERIES, 7
    )
    leftovers = staged_in(folder)
    assert len(leftovers) == (point in {"written", "synced"})
    if target != "forecast":
        assert validated.exists() == (point in {"renamed", "dir_synced"})
    registry = ModelRegistry(store, trained.name)
    assert registry.forecaster(registry.champion_version()).horizon == 7  # the champion loads

    # The rerun sweeps what the killed writer staged (once it is old) and publishes.
    for path in leftovers:
        os.utime(path, (time.time() - 2 * HOUR,) * 2)
    summary = nightly(changed, night)
    assert summary.series == len(SERIES) and staged_in(folder) == []
    assert published.read_bytes() != before  # the new settings' file
    if renamed:  # the killed child had published it whole already
        assert published.read_bytes() == after


def store_ref(store: ArtifactStore, path: Path):
    from tasks.storage import ArtifactRef

    return ArtifactRef(uri=str(path), sha256=sha256_bytes(path.read_bytes()), rows=0)
