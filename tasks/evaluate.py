"""Evaluate step: the trained model against baselines (and the champion) on the test windows.

Everything is scored in original units: the scaled predictions are inverse-transformed with the
scaler of the model that made them. MASE is scaled, per series, by the in-sample seasonal-naive
error on that series' training rows. The current champion, when its window shape and features
match, is scored on the very same test windows, so the registry's gate compares like with like.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_model.baselines import naive_forecast, seasonal_naive_forecast
from lstm_model.metrics import metrics_table, seasonal_naive_scales
from lstm_model.scaling import SeriesScaler
from lstm_model.windowing import WindowSpec, gather_windows
from tasks.config import PipelineConfig
from tasks.normalize import load_normalized
from tasks.registry import OVERALL, ModelRegistry, ModelVersion, model_from_bytes
from tasks.runtime import pipeline_task, publish_markdown, publish_table, run_logger, store_for
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key


@dataclass(frozen=True)
class TestWindows:
    """The test split's windows in original units, with what each model needs to predict them."""

    unique_ids: np.ndarray  # (n,) series of each window
    starts: np.ndarray  # (n,) first row of each window in the normalized frame
    history: np.ndarray  # (n, look_back) target inputs, original units
    actual: np.ndarray  # (n, horizon) targets, original units


def test_windows(
    values: np.ndarray,
    unique_ids: np.ndarray,
    starts: np.ndarray,
    spec: WindowSpec,
    scaler: SeriesScaler,
) -> TestWindows:
    """Gather the test windows and bring their target back to original units."""
    inputs, targets = gather_windows(values, starts, spec)
    window_ids = unique_ids[starts]
    return TestWindows(
        unique_ids=window_ids,
        starts=starts,
        history=scaler.inverse_target(inputs[:, :, 0], window_ids),
        actual=scaler.inverse_target(targets, window_ids),
    )


def predict_windows(
    model: object,
    values: np.ndarray,
    starts: np.ndarray,
    spec: WindowSpec,
    input_columns: list[int],
    batch_size: int = 2048,
) -> np.ndarray:
    """Scaled (n, horizon) predictions, gathered batch by batch to bound memory."""
    outputs = []
    for begin in range(0, len(starts), batch_size):
        inputs, _ = gather_windows(values, starts[begin : begin + batch_size], spec)
        outputs.append(np.asarray(model.predict(inputs[:, :, input_columns], verbose=0)))
    if not outputs:
        return np.empty((0, spec.horizon))
    return np.concatenate(outputs)


def champion_forecast(
    champion: ModelVersion, original: pd.DataFrame, test: TestWindows, spec: WindowSpec
) -> tuple[np.ndarray | None, str]:
    """The champion's forecasts for the same test windows, or None and the reason it can't."""
    meta = champion.metadata
    if (int(meta["look_back"]), int(meta["horizon"])) != (spec.look_back, spec.horizon):
        return None, "champion uses another window shape"
    missing = sorted(set(np.unique(test.unique_ids)) - set(champion.scaler.series))
    if missing:
        return None, f"champion was not trained on series {missing[:5]}"
    features = list(meta["features"])
    if not set(features) <= set(original.columns):
        return None, "champion uses features this data does not have"
    values = champion.scaler.transform(original)[features].to_numpy(dtype=np.float32)
    input_columns = [features.index(name) for name in meta["input_features"]]
    scaled = predict_windows(champion.load_model(), values, test.starts, spec, input_columns)
    return champion.scaler.inverse_target(scaled, test.unique_ids), "scored on the same windows"


def plot_forecasts(test: TestWindows, forecasts: dict[str, np.ndarray], n_series: int) -> bytes:
    """PNG of the last test window of a few series: history, actuals and each forecast."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(test.unique_ids.tolist()))[:n_series]
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series)), squeeze=False)
    for axis, series_id in zip(axes[:, 0], series, strict=True):
        last = np.flatnonzero(test.unique_ids == series_id)[-1]
        look_back, horizon = test.history.shape[1], test.actual.shape[1]
        past, future = np.arange(-look_back, 0), np.arange(horizon)
        axis.plot(past, test.history[last], color="0.5", label="history")
        axis.plot(future, test.actual[last], color="black", lw=2, label="actual")
        for name, values in forecasts.items():
            axis.plot(future, values[last], lw=1.5, label=name)
        axis.set_title(f"{series_id}: last test window")
        axis.axvline(-0.5, color="0.8", ls="--")
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    axes[0, 0].legend(loc="upper left", ncol=len(forecasts) + 2, fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def evaluate_windows(
    test: TestWindows,
    lstm: np.ndarray,
    scales: pd.Series,
    season: int,
    champion: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Metrics for the LSTM, both baselines and maybe the champion, per series and overall."""
    horizon = test.actual.shape[1]
    forecasts = {
        "lstm": lstm,
        "naive": naive_forecast(test.history, horizon),
        "seasonal_naive": seasonal_naive_forecast(test.history, horizon, season),
    }
    if champion is not None:
        forecasts["champion"] = champion
    table = metrics_table(test.actual, forecasts, test.unique_ids, scales)
    return table, forecasts


def metrics_markdown(metrics: pd.DataFrame, plot_uri: str) -> str:
    overall = metrics[metrics["unique_id"] == OVERALL].set_index("model")
    lines = [
        "# Test-split metrics (original units)",
        "",
        "| model | MAE | RMSE | sMAPE | MASE |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, row in overall.iterrows():
        lines.append(
            f"| {model} | {row.mae:.4f} | {row.rmse:.4f} | {row.smape:.4f} | {row.mase:.4f} |"
        )
    lines += ["", f"Plot of actuals against forecasts: `{plot_uri}`"]
    return "\n".join(lines)


def evaluate_key(config: PipelineConfig, windows: ArtifactRef, trained: ArtifactRef) -> str:
    return content_key(
        "evaluate", config.digest("evaluation"), windows.sha256, trained.sha256, code_version()
    )


def load_trained_model(store: ArtifactStore, trained: ArtifactRef) -> tuple[object, dict]:
    """The model a train artifact points at (checksum verified, safe_mode load), and its metadata."""
    _, meta = store.read_table(trained)
    return model_from_bytes(store.read_verified(ArtifactRef(**meta["model"]))), meta


def normalized_ref(store: ArtifactStore, windows: ArtifactRef) -> ArtifactRef:
    """The normalized artifact a window index was built over (its first input)."""
    _, meta = store.read_table(windows)
    return ArtifactRef(**meta["inputs"][0])


@pipeline_task("evaluate")
def evaluate_task(
    config: PipelineConfig, windows: ArtifactRef, trained: ArtifactRef
) -> ArtifactRef:
    """Score model, baselines and champion on the test windows; publish table and plot."""
    logger = run_logger()
    store = store_for(config)
    key = evaluate_key(config, windows, trained)
    if (done := store.find("evaluate", key)) is not None:
        logger.info("Already evaluated: %s", done.uri)
        return done
    normalized, scaler, features = load_normalized(store, normalized_ref(store, windows))
    index, window_meta = store.read_table(windows)
    spec = WindowSpec(window_meta["look_back"], window_meta["horizon"], window_meta["stride"])
    values = normalized[features].to_numpy(dtype=np.float32)
    starts = index.loc[index["split"] == "test", "start"].to_numpy(dtype=np.int64)
    test = test_windows(values, normalized["unique_id"].to_numpy(), starts, spec, scaler)

    model, train_meta = load_trained_model(store, trained)
    input_columns = [features.index(name) for name in train_meta["input_features"]]
    lstm = scaler.inverse_target(
        predict_windows(model, values, starts, spec, input_columns), test.unique_ids
    )
    original = scaler.inverse_transform(normalized)
    season = config.evaluation.season_length
    champion, champion_note = None, "no champion yet"
    registry = ModelRegistry(store, config.name)
    if (version := registry.champion_version()) is not None:
        champion, champion_note = champion_forecast(registry.load(version), original, test, spec)
        champion_note = f"champion {version}: {champion_note}"
    metrics, forecasts = evaluate_windows(
        test,
        lstm,
        seasonal_naive_scales(original[original["split"] == "train"], season),
        season,
        champion,
    )
    plot_uri = store.uri("reports", "evaluate", f"{key}.png")
    store.write_bytes(plot_uri, plot_forecasts(test, forecasts, config.evaluation.plot_series))
    ref = store.write_table(
        "evaluate",
        key,
        metrics,
        config_hash=config.digest(),
        inputs=[windows, trained],
        extra={"plot": plot_uri, "champion": champion_note, "test_windows": len(starts)},
    )
    overall = metrics[metrics["unique_id"] == OVERALL]
    publish_table(
        f"metrics-{config.name}",
        overall.drop(columns="unique_id").round(4).to_dict("records"),
        f"Test metrics, model against baselines ({len(starts)} windows); {champion_note}",
    )
    publish_markdown(
        f"evaluation-{config.name}", metrics_markdown(metrics, plot_uri), "Evaluation report"
    )
    logger.info("Test metrics (overall):\n%s", overall.to_string(index=False))
    return ref
