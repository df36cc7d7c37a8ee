"""Training: batches gathered on demand from window starts, and one `fit` with the safety nets.

`WindowDataset` is a `keras.utils.PyDataset` that gathers each batch from the (rows, features)
array with `gather_windows`, so memory is bounded by one batch, not by the number of windows.
`fit` adds early stopping, resumable backups, determinism and a per-epoch hook for the caller
(the Prefect task logs and updates a progress artifact through it).

Keras is imported lazily: `WindowDataset` is created on first access (PEP 562 module
`__getattr__`), so `import lstm_model.training` does not load TensorFlow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_model.windowing import WindowSpec, gather_windows

if TYPE_CHECKING:
    import keras
    import pandas as pd

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainingHistory:
    """What one `fit` call did.

    `epochs` are Keras's zero-based epoch numbers run by this call: after a resume they start at
    `initial_epoch`, not 0. `best_epoch` is the epoch whose weights the model holds at the end
    (lowest `val_loss` seen by this call); None when no epoch ran (resumed after the last one).
    `stopped_epoch` is the epoch after which training stopped early (patience ran out, a NaN
    loss, or a callback), None when it ran all epochs. `samples_per_second` counts training
    samples over training time only (validation excluded).
    """

    epochs: list[int]
    loss: list[float]
    val_loss: list[float]
    initial_epoch: int
    best_epoch: int | None
    best_val_loss: float | None
    stopped_epoch: int | None
    train_seconds: float
    samples_per_second: float
    logs: dict[str, list[float]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: `epoch`, every logged value (loss, val_loss, seconds, ...), `best`."""
        import pandas as pd

        frame = pd.DataFrame({"epoch": self.epochs, **self.logs})
        frame["best"] = frame["epoch"] == self.best_epoch
        return frame


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras, and make TensorFlow ops deterministic.

    Two processes with the same seed, data and code then train to identical weights on CPU.
    Op determinism is process-wide and cannot be switched off again; on GPU it picks
    deterministic (sometimes slower) kernels.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(
    model: keras.Model,
    train: keras.utils.PyDataset,
    validation: keras.utils.PyDataset | None,
    *,
    epochs: int,
    patience: int,
    seed: int,
    backup_dir: str | None = None,
    on_epoch: EpochHook | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainingHistory:
    """Train `model` on `train` (a `WindowDataset`), early-stopping on `validation` loss.

    - Deterministic: `make_deterministic(seed)` runs first, and the window order of each epoch
      depends only on the dataset's seed and the epoch. Build the model with
      `build_model(spec, seed=...)` so that the initial weights repeat too.
    - Early stopping on `val_loss` with `patience`; the model ends with the best epoch's weights.
      A NaN loss stops training too (and the best weights are kept).
    - `backup_dir` (a local folder used for nothing else; deleted after success): the weights,
      optimizer state and epoch are backed up after every epoch (two generations, so a process
      killed while writing one still finds the other), and a rerun of the same call resumes
      after the last backed-up epoch. Early stopping's memory is not backed up: after a resume
      it starts afresh, so patience counts again from the resumed epoch and the weights kept
      at the end are the best of the epochs run after the resume, which may be worse than a
      best epoch seen before the kill.
    - `on_epoch(epoch, logs)` is called after each epoch (after its backup) with `loss`,
      `val_loss`, any compiled metrics, `seconds` (training time of the epoch) and
      `samples_per_second`.
    - `callbacks` are extra Keras callbacks (TensorBoard, a time budget), run after these.
    """
    import keras

    make_deterministic(seed)
    # Without validation (a refit for an epoch count chosen before) every epoch runs and the
    # last one's weights are kept; "best" is then the lowest training loss, for the record.
    early = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation is not None else "loss",
        patience=patience if validation is not None else epochs,
        restore_best_weights=validation is not None,
    )
    recorder = _recorder_class()(train, epochs, on_epoch)
    ours: list[keras.callbacks.Callback] = []
    if backup_dir:
        ours.append(_resilient_backup(backup_dir))
    ours += [keras.callbacks.TerminateOnNaN(), early, recorder]
    model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        shuffle=False,  # WindowDataset shuffles windows itself, reproducibly per epoch
        verbose=0,
        callbacks=[*ours, *callbacks],
    )
    return recorder.history(early)


def _window_dataset_class() -> type:
    """Define `WindowDataset` on first use, so that Keras loads only when training."""
    global _WindowDataset
    if _WindowDataset is not None:
        return _WindowDataset
    import keras

    class WindowDataset(keras.utils.PyDataset):
        """Batches of (inputs, targets) gathered from window starts, shuffled per epoch.

        `values` is the (rows, features) float32 array (target in column 0), `starts` the first
        row of each window (from `window_starts`). Inputs are (batch, look_back, features),
        targets (batch, horizon). `feature_index` keeps only that input column (or columns):
        0 for a univariate model. `input_rows` (default look_back) is how many rows of each
        window are inputs: look_back + horizon for a model with future-known inputs. With `shuffle`, the window order of epoch e is a permutation
        seeded by (seed, e): reruns, and runs resumed from a backup, see the same batches.
        Extra keyword arguments (`workers`, `use_multiprocessing`, `max_queue_size`) go to
        `keras.utils.PyDataset`.
        """

        def __init__(
            self,
            values: np.ndarray,
            starts: np.ndarray,
            spec: WindowSpec,
            batch_size: int,
            shuffle: bool = False,
            seed: int = 0,
            feature_index: int | Sequence[int] | None = None,
            input_rows: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.values = np.asarray(values, dtype=np.float32)
            self.starts = np.asarray(starts, dtype=np.int64)
            if self.values.ndim != 2:
                raise ValueError(f"values must be (rows, features), got {self.values.shape}")
            if self.starts.size == 0:
                raise ValueError("no windows: every series is shorter than look_back + horizon")
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            self.spec = spec
            self.batch_size = int(batch_size)
            self.shuffle = shuffle
            self.seed = seed
            self.feature_index = feature_index
            self.input_rows = input_rows
            self.epoch = 0
            self._order = self._order_for(0)

        @property
        def n_samples(self) -> int:
            """Number of windows in one epoch."""
            return int(self.starts.size)

        def __len__(self) -> int:
            return math.ceil(self.n_samples / self.batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
            inputs, targets = gather_windows(
                self.values, self.starts[picked], self.spec, input_rows=self.input_rows
            )
            if self.feature_index is not None:
                columns = np.atleast_1d(np.asarray(self.feature_index, dtype=np.int64))
                inputs = inputs[:, :, columns]
            return inputs, targets

        def set_epoch(self, epoch: int) -> None:
            """Use the window order of `epoch` for the batches that follow."""
            self.epoch = epoch
            self._order = self._order_for(epoch)

        def on_epoch_end(self) -> None:
            """Keras calls this after every epoch: move on to the next epoch's order."""
            self.set_epoch(self.epoch + 1)

        def _order_for(self, epoch: int) -> np.ndarray:
            if not self.shuffle:
                return np.arange(self.n_samples)
            return np.random.default_rng((self.seed, epoch)).permutation(self.n_samples)

    _WindowDataset = WindowDataset
    return WindowDataset


_WindowDataset: type | None = None
_Recorder: type | None = None


def __getattr__(name: str) -> Any:
    if name == "WindowDataset":
        return _window_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _recorder_class() -> type:
    """Define the recording callback on first use (it subclasses a Keras class)."""
    global _Recorder
    if _Recorder is not None:
        return _Recorder
    import keras

    class Recorder(keras.callbacks.Callback):
        """Times epochs, keeps their logs, pins the dataset's epoch, calls the caller's hook."""

        def __init__(self, train: Any, epochs: int, on_epoch: EpochHook | None) -> None:
            super().__init__()
            self.train = train
            self.total_epochs = epochs
            self.on_epoch = on_epoch
            self.initial_epoch: int | None = None
            self.epochs: list[int] = []
            self.logs: dict[str, list[float]] = {}
            self.train_seconds: list[float] = []
            self.stopped_epoch: int | None = None
            self._started = 0.0
            self._train_end: float | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            # Keras's epoch number, not a count of this process's epochs: a resumed run
            # shuffles its epochs as the uninterrupted run would have.
            if hasattr(self.train, "set_epoch"):
                self.train.set_epoch(epoch)
            self._train_end = None
            self._started = time.perf_counter()

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = (self._train_end or time.perf_counter()) - self._started
            samples = getattr(self.train, "n_samples", math.nan)
            values = {key: float(value) for key, value in (logs or {}).items()}
            values |= {"seconds": seconds, "samples_per_second": samples / max(seconds, 1e-9)}
            self.epochs.append(epoch)
            self.train_seconds.append(seconds)
            for key, value in values.items():
                self.logs.setdefault(key, []).append(value)
            if self.model.stop_training and epoch < self.total_epochs - 1:
                self.stopped_epoch = epoch
            if self.on_epoch is not None:
                self.on_epoch(epoch, values)

        def on_train_begin(self, logs: dict | None = None) -> None:
            # BackupAndRestore (earlier in the list) has set the resumed epoch by now.
            self.initial_epoch = getattr(self.model, "_initial_epoch", None) or 0

        def history(self, early: keras.callbacks.EarlyStopping) -> TrainingHistory:
            seconds = float(sum(self.train_seconds))
            samples = getattr(self.train, "n_samples", math.nan) * len(self.epochs)
            val_loss = self.logs.get("val_loss", [])
            best = early.best_epoch if self.epochs else None
            known = best in self.epochs and len(val_loss) == len(self.epochs)
            best_loss = val_loss[self.epochs.index(best)] if known else None
            return TrainingHistory(
                epochs=list(self.epochs),
                loss=list(self.logs.get("loss", [])),
                val_loss=list(val_loss),
                initial_epoch=self.initial_epoch or 0,
                best_epoch=best,
                best_val_loss=best_loss,
                stopped_epoch=self.stopped_epoch,
                train_seconds=seconds,
                samples_per_second=samples / seconds if seconds > 0 else math.nan,
                logs={key: list(values) for key, values in self.logs.items()},
            )

    _Recorder = Recorder
    return Recorder


def _resilient_backup(backup_dir: str) -> keras.callbacks.Callback:
    """`BackupAndRestore(double_checkpoint=True)` that also survives a torn metadata file.

    Keras falls back to the previous backup generation when the weights file is unreadable
    (OSError), but not when the small epoch file was truncated by a kill (a JSON error), which
    would make every restart fail. This falls back to the previous generation then too.
    """
    import json
    import shutil
    from pathlib import Path

    import keras

    class ResilientBackupAndRestore(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs: dict | None = None) -> None:
            try:
                super().on_train_begin(logs)
            except json.JSONDecodeError:
                previous = Path(f"{self._training_metadata_path}.bkp")
                if previous.exists():
                    shutil.copyfile(f"{self._weights_path}.bkp", self._weights_path)
                    shutil.copyfile(previous, self._training_metadata_path)
                else:
                    # Torn first backup: no epoch to resume, so count epochs from 0 again.
                    Path(self._training_metadata_path).unlink()
                super().on_train_begin(logs)

    return ResilientBackupAndRestore(backup_dir, double_checkpoint=True)
