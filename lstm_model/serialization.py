"""Saving and loading models in the `.keras` format, never running code from the file.

A `.keras` file can carry Python code (a `Lambda` layer's bytecode). Keras refuses to
deserialize it under `safe_mode=True`; we always load in safe mode, even when some other code
in the process has called `keras.config.enable_unsafe_deserialization()`, so a planted model
file cannot execute anything. Build models from named layers only (ours do).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


class UnsafeModelError(ValueError):
    """A model file that safe mode refuses to load (it holds code, e.g. a Lambda layer)."""


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Write `model` (architecture, weights, optimizer state) to the local `.keras` file `path`.

    The file appears atomically: written under a temporary name, then renamed, so a reader
    (or a crash) never sees half a model. The parent folder must exist.
    """
    path = Path(path)
    _require_keras_suffix(path)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a `.keras` model in safe mode; `UnsafeModelError` when the file holds code."""
    import keras

    import lstm_model.layers  # noqa: F401 - registers our named layers before reading

    path = Path(path)
    _require_keras_suffix(path)
    try:
        with _forced_safe_mode():
            return keras.saving.load_model(path, safe_mode=True)
    except ValueError as err:
        if "safe_mode" not in str(err):
            raise
        raise UnsafeModelError(
            f"{path}: refused to load: the model holds Python code (e.g. a Lambda layer), "
            "which safe mode never runs. Rebuild it from named layers and save it again."
        ) from err


def _require_keras_suffix(path: Path) -> None:
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved and loaded as .keras files only")


@contextlib.contextmanager
def _forced_safe_mode():
    """Safe mode even if `enable_unsafe_deserialization()` was called: the global flag would
    otherwise override the `safe_mode=True` argument (Keras 3.15 gives the global precedence)."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a future Keras without the scope: the argument alone must do
        yield
        return
    with SafeModeScope(True):
        yield
