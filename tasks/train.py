"""Train step: fit the configured LSTM on the window artifact, streaming batches.

Writes one artifact: the training history (one row per epoch and phase), whose metadata points
at the saved `.keras` models stored beside it: `model`, fitted on the train windows and scored on
the test windows, and `served_model`, the same recipe refit on every window up to the cut for
the epoch count chosen on validation (training.refit; otherwise the same model). A killed training resumes from its last backup, kept under
`{root}/checkpoints/{key}` for local stores (Keras backups need a local folder).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_model.models import ModelSpec
from lstm_model.windowing import WindowSpec
from tasks.config import PipelineConfig
from tasks.registry import model_to_bytes
from tasks.runtime import ProgressReporter, StepResult, pipeline_task, produce_artifact, run_logger
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key, sha256_bytes
from tasks.window import WindowedData, load_windows


def model_spec(
    config: PipelineConfig,
    window: WindowSpec,
    n_features: int,
    future_features: tuple[int, ...] = (),
) -> ModelSpec:
    """The core's model spec from the pipeline config (`future_features`: input columns known
    in advance, read over the horizon too)."""
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
        normalization=model.normalization,
        quantiles=model.forecast_quantiles,
        ensemble_size=config.training.ensemble_size,
        future_features=future_features,
    )


def input_features(config: PipelineConfig, features: list[str]) -> list[str]:
    """The features the model reads: the target alone for the univariate preset, else all."""
    return features[:1] if config.model.preset == "univariate" else list(features)


def future_feature_index(inputs: list[str], roles: dict[str, str]) -> tuple[int, ...]:
    """Positions, among the model's inputs, of the columns known in advance (role "futr")."""
    return tuple(i for i, name in enumerate(inputs) if roles.get(name) == "futr")


def evenly_spaced(starts: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` of `starts`, spread over the whole range (keeps every series in play)."""
    if limit is None or len(starts) <= limit:
        return starts
    picks = np.linspace(0, len(starts) - 1, limit).round().astype(np.int64)
    return starts[picks]


@dataclass(frozen=True, eq=False)
class TrainedModels:
    """What training produced: the model scored on the test windows and the one to serve.

    `scored` is fitted on the train windows (early-stopped on validation); `served` is the same
    recipe refit on every window up to the cut for `refit_epochs` epochs (with training.refit),
    else `scored` itself. Both are serving models (an ensemble's median).
    """

    scored: Any
    served: Any
    spec: ModelSpec
    history: pd.DataFrame  # one row per epoch, with a `phase`: "fit" or "refit"
    refit_epochs: int | None
    calibration: np.ndarray | None = None  # per-quantile factors from the validation windows

    @property
    def refit(self) -> bool:
        return self.served is not self.scored


def train_model(
    data: WindowedData,
    config: PipelineConfig,
    backup_dir: str | None,
    on_epoch=None,  # noqa: ANN001 - Callable[[str, int, int, dict], None]
    refit: bool | None = None,
) -> TrainedModels:
    """Fit the model on the train windows, then (training.refit) refit it on all windows.

    The refit runs as many epochs as the fit's best epoch on validation, so the served model
    sees the whole history up to the cut, including its newest level, and no test target is
    ever used to choose anything. `on_epoch(phase, epoch, epochs, logs)` follows both fits;
    `refit` overrides training.refit (a backtest fold needs only the scored model).
    """
    from lstm_model.models import build_model, calibrated, calibration_factors, serving_model
    from lstm_model.training import WindowDataset, fit

    inputs = input_features(config, data.features)
    feature_index = [data.features.index(f) for f in inputs]
    spec = model_spec(
        config, data.spec, len(feature_index), future_feature_index(inputs, data.feature_roles)
    )
    training = config.training

    def dataset(starts: np.ndarray, shuffle: bool, batch_size: int) -> WindowDataset:
        return WindowDataset(
            data.values,
            starts,
            data.spec,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=training.seed,
            feature_index=feature_index,
            input_rows=spec.input_rows,
        )

    def run(phase: str, starts: np.ndarray, validation: Any, epochs: int, backup: str | None):
        def hook(epoch: int, logs: dict) -> None:
            if on_epoch is not None:
                on_epoch(phase, epoch, epochs, logs)

        model = build_model(spec, seed=training.seed)
        history = fit(
            model,
            dataset(evenly_spaced(starts, training.max_train_windows), True, training.batch_size),
            validation,
            epochs=epochs,
            patience=training.patience,
            seed=training.seed,
            backup_dir=backup,
            on_epoch=hook,
        )
        return serving_model(model, spec), history.to_frame().assign(phase=phase), history

    validation_starts = evenly_spaced(data.starts["validation"], training.max_train_windows)
    validation = dataset(validation_starts, False, max(training.batch_size, 1024))
    scored, table, history = run(
        "fit", data.starts["train"], validation, training.epochs, backup_dir
    )
    factors = None
    if spec.quantiles and config.model.calibrate_quantiles:
        factors = calibration_factors(*_predictions(scored, validation), spec.quantiles)
        scored = calibrated(scored, spec, factors)
    if not (training.refit if refit is None else refit):
        return TrainedModels(scored, scored, spec, table, None, factors)
    refit_epochs = (history.best_epoch if history.best_epoch is not None else 0) + 1
    served, refit_table, _ = run(
        "refit",
        data.all_starts(),
        None,
        refit_epochs,
        f"{backup_dir}-refit" if backup_dir else None,
    )
    if factors is not None:  # measured on held-out windows, which the refit has now seen
        served = calibrated(served, spec, factors)
    history_table = pd.concat([table, refit_table], ignore_index=True)
    return TrainedModels(scored, served, spec, history_table, refit_epochs, factors)


def _predictions(model: Any, windows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Actual targets (n, horizon) and the model's outputs for every batch of `windows`."""
    actual, outputs = [], []
    for index in range(len(windows)):
        inputs, targets = windows[index]
        actual.append(targets)
        outputs.append(model.predict(inputs, batch_size=len(inputs), verbose=0))
    return np.concatenate(actual), np.concatenate(outputs)


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
        began = time.perf_counter()

        def on_epoch(phase: str, epoch: int, epochs: int, logs: dict) -> None:
            logger.info(
                "%s epoch %d/%d: loss %.4f%s",
                phase,
                epoch + 1,
                epochs,
                logs.get("loss", float("nan")),
                f", val_loss {logs['val_loss']:.4f}" if "val_loss" in logs else "",
            )
            if phase == "fit":
                progress.update(100.0 * (epoch + 1) / config.training.epochs)

        trained = train_model(data, config, backup_folder(store, key), on_epoch)
        progress.update(100.0)
        refs = {}
        for role, model in (("model", trained.scored), ("served_model", trained.served)):
            model_bytes = model_to_bytes(model)
            suffix = "" if role == "model" else "-served"
            model_uri = store.uri("artifacts", "train", f"{key}{suffix}.keras")
            store.write_bytes(model_uri, model_bytes)
            refs[role] = ArtifactRef(uri=model_uri, sha256=sha256_bytes(model_bytes)).model_dump()
        seconds = time.perf_counter() - began
        logger.info(
            "Trained %d epochs%s in %.0f s; model %s",
            int((trained.history["phase"] == "fit").sum()),
            f", refit {trained.refit_epochs} on all windows" if trained.refit else "",
            seconds,
            refs["served_model"]["uri"],
        )
        spec = trained.spec
        return trained.history, {
            **refs,
            "features": data.features,
            "input_features": input_features(config, data.features),
            "future_features": list(spec.future_features),
            "quantiles": list(spec.quantiles),
            "ensemble_size": spec.ensemble_size,
            "refit_epochs": trained.refit_epochs,
            "calibration": None if trained.calibration is None else trained.calibration.tolist(),
            "look_back": data.spec.look_back,
            "horizon": data.spec.horizon,
            "seconds": seconds,
        }

    return produce_artifact(config, "train", key, [windows], compute)
