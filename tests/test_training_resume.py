"""Resumable training: a killed or interrupted `fit` resumes from its last backup and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_model.models import ModelSpec, build_model
from lstm_model.windowing import WindowSpec, window_starts

# Keras's own weight saving trips a NumPy 2 deprecation inside Keras; nothing of ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
REPO = Path(__file__).resolve().parent.parent
WINDOW = WindowSpec(look_back=8, horizon=3)
SPEC = ModelSpec("multivariate", WINDOW.look_back, WINDOW.horizon, n_features=1, units=(4,))


def datasets(batch_size: int = 16):
    """Seeded one-series training and validation batches (about 25 batches per epoch)."""
    from lstm_model.training import WindowDataset

    steps = np.arange(420)
    values = (np.sin(steps / 5) + 0.1 * np.cos(steps / 3)).astype(np.float32)[:, None]
    starts = window_starts(np.zeros(len(values)), WINDOW)
    train = WindowDataset(values, starts[:400], WINDOW, batch_size, shuffle=True, seed=5)
    validation = WindowDataset(values, starts[400:], WINDOW, 64)
    return train, validation


class Interrupt(Exception):
    pass


def interrupted_at(epoch: int):
    """A callback that crashes `fit` as `epoch` begins, the way a lost process would stop it."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, current: int, logs: dict | None = None) -> None:
            if current == epoch:
                raise Interrupt(f"interrupted at epoch {epoch}")

    return Crash()


def train(backup_dir: Path | None, epochs: int = 4, callbacks=()):
    from lstm_model.training import fit

    model = build_model(SPEC, seed=1)
    history = fit(
        model,
        *datasets(),
        epochs=epochs,
        patience=100,
        seed=1,
        backup_dir=str(backup_dir) if backup_dir else None,
        callbacks=callbacks,
    )
    return model, history


def test_an_interrupted_fit_resumes_where_it_stopped_and_ends_as_if_uninterrupted(tmp_path):
    backup = tmp_path / "backup"
    with pytest.raises(Interrupt):
        train(backup, callbacks=[interrupted_at(2)])
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2

    resumed, history = train(backup)

    assert history.initial_epoch == 2 and history.epochs == [2, 3]
    assert not backup.exists()  # deleted after success
    uninterrupted, full = train(None)
    assert full.epochs == [0, 1, 2, 3]
    # Weights, optimizer state and the per-epoch shuffle all carry over: same result.
    np.testing.assert_allclose(history.val_loss, full.val_loss[2:], rtol=1e-5)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_torn_epoch_file_falls_back_to_the_previous_backup(tmp_path):
    backup = tmp_path / "backup"
    with pytest.raises(Interrupt):
        train(backup, callbacks=[interrupted_at(2)])
    (backup / "training_metadata.json").write_text("")  # killed while writing it

    _, history = train(backup)

    assert history.initial_epoch == 1 and history.epochs == [1, 2, 3]


WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, "tests")
    import keras
    from test_training_resume import EPOCHS, SLEEP_PER_BATCH, train
    from lstm_model.serialization import save_model

    out = Path(sys.argv[1])

    class SlowAndWatched(keras.callbacks.Callback):
        '''Sleeps per batch so the test can kill mid-epoch; says where training is.'''

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(SLEEP_PER_BATCH)
            staging = out / "progress.tmp"
            staging.write_text(json.dumps({"epoch": self.epoch, "batch": batch}))
            os.replace(staging, out / "progress.json")

    model, history = train(out / "backup", epochs=EPOCHS, callbacks=[SlowAndWatched()])
    save_model(model, out / "model.keras")
    summary = {"initial_epoch": history.initial_epoch, "epochs": history.epochs}
    (out / "done.json").write_text(json.dumps(summary))
    """
)
EPOCHS = 5
SLEEP_PER_BATCH = 0.04
BATCHES_PER_EPOCH = 25


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_until_mid_epoch_after_a_backup(worker: subprocess.Popen, out: Path) -> None:
    """Block until at least one epoch is backed up and the next one is half-way through."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the training process ended before it could be killed"
        backup = read_json(out / "backup" / "training_metadata.json")
        progress = read_json(out / "progress.json")
        if (
            backup
            and progress
            and backup["epoch"] >= 1
            and progress["epoch"] == backup["epoch"]
            and 5 <= progress["batch"] <= BATCHES_PER_EPOCH - 8
        ):
            return
        time.sleep(0.02)
    raise AssertionError("training never reached the middle of an epoch after a backup")


@pytest.mark.slow
def test_a_training_process_killed_mid_epoch_resumes_from_its_backup_and_finishes(tmp_path):
    command = [sys.executable, "-c", WORKER, str(tmp_path)]
    worker = subprocess.Popen(command, cwd=REPO)
    try:
        wait_until_mid_epoch_after_a_backup(worker, tmp_path)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    assert not (tmp_path / "done.json").exists()
    backed_up = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"]
    assert 1 <= backed_up < EPOCHS

    subprocess.run(command, cwd=REPO, check=True, timeout=300)

    done = json.loads((tmp_path / "done.json").read_text())
    assert done["initial_epoch"] == backed_up  # resumed, not restarted
    assert done["epochs"] == list(range(backed_up, EPOCHS))  # and ran the rest
    assert not (tmp_path / "backup").exists()
    from lstm_model.serialization import load_model

    assert load_model(tmp_path / "model.keras").output_shape == (None, WINDOW.horizon)
