"""Train step: fit the configured LSTM on the window artifact, streaming batches.

Writes one artifact: the training history (one row per epoch), whose metadata points at the
saved `.keras` model stored beside it. A killed training resumes from its last backup, kept under
`{root}/checkpoints/{key}` for local stores (Keras backups need a local folder).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_model.models import ModelSpec
from lstm_model.windowing import WindowSpec
from tasks.config import PipelineConfig
from tasks.registry import model_to_bytes
from tasks.runtime import ProgressReporter, StepResult, pipeline_task, produce_artifact, run_logger
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key, sha256_bytes
from tasks.window import WindowedData, load_windows


def model_spec(config: PipelineConfig, window: WindowSpec, n_features: int) -> ModelSpec:
    """The core's model spec from the pipeline config."""
    model = config.model
    units = tuple(model.units)
    if model.preset == "stacked" and len(units) < 2:
        units = (units[0], units[0])
    return ModelSpec(
        preset=model.preset,
        look_back=window.look_back,
        horizon=window.horizon,
        n_features=n_features,
        units=units,
        dropout=model.dropout,
        activation=model.activation,
        loss=model.loss,
        optimizer=model.optimizer,
        learning_rate=model.learning_rate,
        reference_season=(
            config.evaluation.season_length if model.reference == "seasonal_naive" else None
        ),
    )


def input_features(config: PipelineConfig, features: list[str]) -> list[str]:
    """The features the model reads: the target alone for the univariate preset, else all."""
    return features[:1] if config.model.preset == "univariate" else list(features)


def evenly_spaced(starts: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` of `starts`, spread over the whole range (keeps every series in play)."""
    if limit is None or len(starts) <= limit:
        return starts
    picks = np.linspace(0, len(starts) - 1, limit).round().astype(np.int64)
    return starts[picks]


def train_model(
    data: WindowedData,
    config: PipelineConfig,
    backup_dir: str | None,
    on_epoch=None,  # noqa: ANN001 - Callable[[int, dict], None], kept loose for Keras logs
) -> tuple[object, pd.DataFrame]:
    """Build and fit the model; returns it with its per-epoch history table."""
    from lstm_model.models import build_model
    from lstm_model.training import WindowDataset, fit

    feature_index = [data.features.index(f) for f in input_features(config, data.features)]
    spec = model_spec(config, data.spec, len(feature_index))
    training = config.training
    train = WindowDataset(
        data.values,
        evenly_spaced(data.starts["train"], training.max_train_windows),
        data.spec,
        batch_size=training.batch_size,
        shuffle=True,
        seed=training.seed,
        feature_index=feature_index,
    )
    validation = WindowDataset(
        data.values,
        data.starts["validation"],
        data.spec,
        batch_size=max(training.batch_size, 1024),
        shuffle=False,
        seed=training.seed,
        feature_index=feature_index,
    )
    model = build_model(spec, seed=training.seed)
    history = fit(
        model,
        train,
        validation,
        epochs=training.epochs,
        patience=training.patience,
        seed=training.seed,
        backup_dir=backup_dir,
        on_epoch=on_epoch,
    )
    return model, history.to_frame()


def backup_folder(store: ArtifactStore, key: str) -> str:
    """Keras backups need a local folder: inside a local store, else the temp folder."""
    if store.is_local:
        return store.path("checkpoints", key)
    return str(Path(tempfile.gettempdir()) / "forecast-checkpoints" / key)


def train_key(config: PipelineConfig, windows: ArtifactRef) -> str:
    return content_key("train", config.digest("model", "training"), windows.sha256, code_version())


@pipeline_task("train")
def train_task(config: PipelineConfig, windows: ArtifactRef) -> ArtifactRef:
    """Fit the model on the windows; one log line and one progress update per epoch."""
    key = train_key(config, windows)

    def compute(store: ArtifactStore) -> StepResult:
        logger = run_logger()
        data = load_windows(store, windows)
        progress = ProgressReporter(f"training-{config.name}", "Training progress (epochs)")
        epochs = config.training.epochs
        began = time.perf_counter()

        def on_epoch(epoch: int, logs: dict) -> None:
            logger.info(
                "epoch %d/%d: loss %.4f, val_loss %.4f",
                epoch + 1,
                epochs,
                logs.get("loss", float("nan")),
                logs.get("val_loss", float("nan")),
            )
            progress.update(100.0 * (epoch + 1) / epochs)

        model, history = train_model(data, config, backup_folder(store, key), on_epoch)
        progress.update(100.0)
        model_bytes = model_to_bytes(model)
        model_uri = store.uri("artifacts", "train", f"{key}.keras")
        store.write_bytes(model_uri, model_bytes)
        seconds = time.perf_counter() - began
        logger.info("Trained %d epochs in %.0f s; model %s", len(history), seconds, model_uri)
        return history, {
            "model": ArtifactRef(uri=model_uri, sha256=sha256_bytes(model_bytes)).model_dump(),
            "features": data.features,
            "input_features": input_features(config, data.features),
            "look_back": data.spec.look_back,
            "horizon": data.spec.horizon,
            "seconds": seconds,
        }

    return produce_artifact(config, "train", key, [windows], compute)
