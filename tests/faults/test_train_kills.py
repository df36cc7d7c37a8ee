"""SIGKILL of training (issue 10): during an epoch and at each point of registration.

A child process runs the training flow's steps and kills itself (SIGKILL: no cleanup, no
`finally`) at one point. The oracle after each kill: the champion is the one before the kill
(or, killed after the pointer's atomic rename, the new complete version), it loads and
forecasts finite values, every listed version is complete and loads, and a rerun completes and
registers. The steps are called directly (`.fn`): no Prefect server per kill.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.config import PipelineConfig
from tasks.register import Registration
from tasks.registry import UNFINISHED_AGE, ModelRegistry
from tasks.storage import ArtifactStore
from tests.support import REPO, small_config, write_small_source

RUN_DATE = "2016-08-15"  # the day after the small source's last row

# Where the child kills itself; after-* points kill right after that file's atomic write.
AFTER_WRITE = {
    "after-model-file": "model.keras",  # version folder: model.keras written, nothing else
    "after-scaler-file": "scaler.parquet",  # and scaler.parquet, still no metadata.json
    "after-metadata": "metadata.json",  # version complete, not yet decided on nor promoted
    "after-pointer-swap": "champion.json",  # promoted; decision.json not written
}
POINTS = ["during-epoch", *AFTER_WRITE, "before-pointer-rename"]
"""during-epoch: the third batch the first fit reads; before-pointer-rename: champion.json
staged and fsynced, not renamed."""


def config_for(base: Path, seed: int) -> PipelineConfig:
    """The small pipeline; each seed trains another model (a new version), which the gate
    always promotes (no baseline to beat, any regression allowed), so every kill point of
    registration is reached."""
    return small_config(
        base / "data" / "stations.parquet",
        base / "store",
        training={"epochs": 1, "batch_size": 64, "ensemble_size": 1, "seed": seed},
        evaluation={"gate_must_beat": "none", "gate_max_regression": 1e9, "plot_series": 1},
    )


def train_steps(config: PipelineConfig) -> Registration:
    """The training flow's steps, in its order, without a Prefect run."""
    from tasks.evaluate import evaluate_task
    from tasks.ingest import ingest_task
    from tasks.normalize import normalize_task
    from tasks.register import register_task
    from tasks.train import train_task
    from tasks.validate import validate_task
    from tasks.window import window_task

    validated = validate_task.fn(config, ingest_task.fn(config, RUN_DATE), as_of=RUN_DATE)
    windows = window_task.fn(config, normalize_task.fn(config, validated))
    trained = train_task.fn(config, windows)
    evaluation = evaluate_task.fn(config, windows, trained)
    return register_task.fn(config, windows, trained, evaluation)


def arm(point: str) -> None:
    """In the child: make this process SIGKILL itself at `point` (see POINTS)."""
    from lstm_model.training import WindowDataset

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "during-epoch":
        get, batches = WindowDataset.__getitem__, itertools.count(1)

        def get_or_die(dataset: WindowDataset, index: int):  # noqa: ANN202 - a batch
            if next(batches) == 3:
                die()
            return get(dataset, index)

        WindowDataset.__getitem__ = get_or_die
    elif point == "before-pointer-rename":
        replace = os.replace

        def replace_or_die(source: str, target: str) -> None:  # the store's atomic rename
            if str(target).endswith("/champion.json"):
                die()
            replace(source, target)

        os.replace = replace_or_die
    else:
        file_name, write = AFTER_WRITE[point], ArtifactStore.write_bytes

        def write_then_die(store: ArtifactStore, uri: str, data: bytes) -> None:
            write(store, uri, data)
            if "/models/" in uri and uri.endswith(f"/{file_name}"):
                die()

        ArtifactStore.write_bytes = write_then_die


CHILD = """
import sys
from pathlib import Path
from tests.faults.test_train_kills import arm, config_for, train_steps
arm(sys.argv[2])
train_steps(config_for(Path(sys.argv[1]), int(sys.argv[3])))
"""


def run_killed(base: Path, point: str, seed: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(base), point, str(seed)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def forecast_with_champion(config: PipelineConfig) -> pd.DataFrame:
    """Tonight's forecast by the serving champion, as the nightly flow's steps write it."""
    from tasks.ingest import ingest_task
    from tasks.predict import predict_task
    from tasks.validate import validate_task

    validated = validate_task.fn(
        config, ingest_task.fn(config, RUN_DATE), purpose="forecast", as_of=RUN_DATE
    )
    summary = predict_task.fn(config, validated, RUN_DATE)
    return pd.read_parquet(summary.uri)


def assert_serving(config: PipelineConfig, champion: str) -> None:
    """The oracle: `champion` serves and forecasts finite values; every listed version loads."""
    registry = ModelRegistry(ArtifactStore(config.storage.root), config.name)
    assert registry.champion_version() == champion
    for version in registry.versions():  # a partial version is never listed
        registry.load(version)
    forecast = forecast_with_champion(config)
    assert len(forecast) and (forecast["model_version"] == champion).all()
    assert np.isfinite(forecast["yhat"].to_numpy(dtype=float)).all()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store with a first champion, trained once for every kill of this module."""
    base = tmp_path_factory.mktemp("kills")
    write_small_source(base / "data")
    registration = train_steps(config_for(base, seed=0))
    assert registration.promoted, registration.reason
    return base


@pytest.mark.parametrize("point", list(POINTS))
def test_a_training_killed_leaves_the_champion_serving_and_reruns(
    base: Path, point: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(base, seed=list(POINTS).index(point) + 1)
    registry = ModelRegistry(ArtifactStore(config.storage.root), config.name)
    before = registry.champion_version()
    versions = registry.versions()

    child = run_killed(base, point, seed=list(POINTS).index(point) + 1)

    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    # Where it died: a version is complete once metadata.json is written, and only then.
    new = sorted(set(registry.versions()) - set(versions))
    assert len(new) == (point in {"after-metadata", "after-pointer-swap", "before-pointer-rename"})
    folders = [Path(path) for path in registry.store.list("models", config.name)]
    unfinished = [path for path in folders if path.is_dir() and path.name not in new + versions]
    assert bool(unfinished) == (point in {"after-model-file", "after-scaler-file"})
    staged = [path for path in folders if path.name.startswith(".champion.json.")]
    assert bool(staged) == (point == "before-pointer-rename")
    # The rename is the pointer's commit point: after it the new version serves.
    assert_serving(config, new[0] if point == "after-pointer-swap" else before)
    stamp = time.time() - (UNFINISHED_AGE + timedelta(minutes=1)).total_seconds()
    for folder in unfinished:  # as if the next run came the next night
        for item in [folder, *folder.rglob("*")]:
            os.utime(item, (stamp, stamp))

    with caplog.at_level(logging.WARNING, logger="forecast"):
        registration = train_steps(config)

    assert registration.version in registry.versions()
    assert_serving(config, registration.version)
    assert registry.store.exists(registry.uri(registration.version, "decision.json"))
    for folder in unfinished:  # removed by the janitor, then saved whole by the rerun
        assert f"Removed {folder}: left unfinished by a killed save" in caplog.text
