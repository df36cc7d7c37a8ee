"""Predict step: tonight's forecast for every series from the champion model.

Each series' last `look_back` rows are scaled with the champion's scaler, predicted in one batch,
inverse-transformed, and laid on the future frequency grid. The result is written whole to
`{root}/forecasts/{name}/run_date=YYYY-MM-DD/forecast.parquet` with one atomic write, so a rerun
of the same night replaces it, a crash leaves the previous file readable, and other nights are
never touched. Series that cannot be forecast are listed with the reason, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from lstm_model.scaling import SeriesScaler
from tasks.config import PipelineConfig
from tasks.registry import ModelRegistry, ModelVersion
from tasks.runtime import (
    current_flow_run_id,
    pipeline_task,
    publish_markdown,
    publish_table,
    run_logger,
    store_for,
)
from tasks.storage import ArtifactRef, ArtifactStore


class NoChampionError(RuntimeError):
    """Forecasting before any model was promoted."""


class ForecastSummary(BaseModel):
    """What the predict step returns and the UI shows: where the forecast is and what it holds."""

    uri: str
    run_date: str
    model_version: str
    rows: int
    series: int
    horizon: int
    first_ds: str | None
    last_ds: str | None
    skipped: dict[str, str]


@dataclass(frozen=True)
class LastWindows:
    """The inputs for one forecast per series."""

    unique_ids: np.ndarray  # (n,)
    inputs: np.ndarray  # (n, look_back, features), scaled
    last_ds: pd.Series  # last observed timestamp per series, indexed by unique_id


def forecastable(
    frame: pd.DataFrame, scaler: SeriesScaler, look_back: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows of the series we can forecast, and the reasons the others cannot be."""
    lengths = frame.groupby("unique_id", sort=True).size()
    known = set(scaler.series)
    skipped: dict[str, str] = {}
    for series_id, length in lengths.items():
        if series_id not in known:
            skipped[str(series_id)] = "not in the champion's training data (retrain to include it)"
        elif length < look_back:
            skipped[str(series_id)] = f"only {length} rows; the model needs {look_back}"
    return frame[~frame["unique_id"].isin(list(skipped))], skipped


def last_windows(
    frame: pd.DataFrame, scaler: SeriesScaler, input_features: list[str], look_back: int
) -> LastWindows:
    """Each series' final `look_back` rows, scaled, stacked into one batch."""
    tail = frame.groupby("unique_id", sort=True).tail(look_back).sort_values(["unique_id", "ds"])
    scaled = scaler.transform(tail)
    inputs = scaled[input_features].to_numpy(dtype=np.float32)
    return LastWindows(
        unique_ids=tail["unique_id"].to_numpy()[::look_back],
        inputs=inputs.reshape(-1, look_back, len(input_features)),
        last_ds=tail.groupby("unique_id", sort=True)["ds"].max(),
    )


def future_grid(
    last_ds: pd.Series, horizon: int, frequency: str, timezone: str = "UTC"
) -> np.ndarray:
    """(n, horizon) future UTC timestamps on the frequency grid after each series' last one.

    The grid is laid in the source's time zone, as validation checks it: daily data at local
    midnight stays at local midnight across a daylight-saving change.
    """
    offset = pd.tseries.frequencies.to_offset(frequency)
    local = pd.DatetimeIndex(last_ds).tz_convert(timezone)
    steps = [
        (local + offset * k).tz_convert("UTC").tz_localize(None) for k in range(1, horizon + 1)
    ]
    return np.stack([step.to_numpy(dtype="datetime64[ns]") for step in steps], axis=1)


def forecast_frame(
    unique_ids: np.ndarray,
    future_ds: np.ndarray,
    yhat: np.ndarray,
    *,
    model_version: str,
    run_id: str,
    created_at: datetime,
) -> pd.DataFrame:
    """The published forecast: one row per series and horizon step."""
    n, horizon = yhat.shape
    return pd.DataFrame(
        {
            "unique_id": pd.Series(np.repeat(unique_ids, horizon), dtype="str"),
            "ds": pd.to_datetime(future_ds.reshape(-1), utc=True),
            "step": np.tile(np.arange(1, horizon + 1, dtype=np.int16), n),
            "yhat": yhat.reshape(-1).astype(np.float64),
            "model_version": model_version,
            "run_id": run_id,
            "created_at": pd.Timestamp(created_at),
        }
    )


def predict_frame(
    frame: pd.DataFrame,
    champion: ModelVersion,
    frequency: str,
    timezone: str,
    *,
    run_id: str,
    created_at: datetime,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Forecast every forecastable series of a validated frame with a registered model."""
    meta = champion.metadata
    look_back, horizon = int(meta["look_back"]), int(meta["horizon"])
    usable, skipped = forecastable(frame, champion.scaler, look_back)
    if usable.empty:
        return forecast_frame(
            np.array([], dtype=object),
            np.empty((0, horizon), dtype="datetime64[ns]"),
            np.empty((0, horizon)),
            model_version=champion.version,
            run_id=run_id,
            created_at=created_at,
        ), skipped
    windows = last_windows(usable, champion.scaler, list(meta["input_features"]), look_back)
    model = champion.load_model()
    scaled = np.asarray(model.predict(windows.inputs, batch_size=1024, verbose=0))
    yhat = champion.scaler.inverse_target(scaled, windows.unique_ids)
    future = future_grid(windows.last_ds, horizon, frequency, timezone)
    table = forecast_frame(
        windows.unique_ids,
        future,
        yhat,
        model_version=champion.version,
        run_id=run_id,
        created_at=created_at,
    )
    return table, skipped


def forecast_uri(store: ArtifactStore, name: str, run_date: str) -> str:
    return store.uri("forecasts", name, f"run_date={run_date}", "forecast.parquet")


def summary_markdown(summary: ForecastSummary) -> str:
    lines = [
        f"# Forecast for {summary.run_date}",
        "",
        "| | |",
        "|---|---|",
        f"| output | `{summary.uri}` |",
        f"| model version | `{summary.model_version}` |",
        f"| rows | {summary.rows:,} |",
        f"| series | {summary.series:,} |",
        f"| horizon | {summary.horizon} steps |",
        f"| time range | {summary.first_ds} to {summary.last_ds} |",
        f"| series not forecast | {len(summary.skipped)} |",
    ]
    if summary.skipped:
        lines += ["", "## Series not forecast", "", "| series | reason |", "|---|---|"]
        lines += [f"| `{sid}` | {why} |" for sid, why in sorted(summary.skipped.items())]
    return "\n".join(lines)


# Never cached: a rerun of the same night must forecast again (the champion may have changed)
# and replace that night's file whole.
@pipeline_task("predict", task_run_name="predict-{config.name}-{run_date}", cache_policy=NO_CACHE)
def predict_task(config: PipelineConfig, validated: ArtifactRef, run_date: str) -> ForecastSummary:
    """Forecast tonight with the champion and publish the forecast whole, atomically."""
    logger = run_logger()
    store = store_for(config)
    registry = ModelRegistry(store, config.name)
    version = registry.champion_version()
    if version is None:
        raise NoChampionError(
            f"No champion model for pipeline {config.name!r} under {store.root_url}: "
            "train one first with `forecast train` (or `forecast run`)."
        )
    champion = registry.load(version)
    frame, validated_meta = store.read_table(validated)
    table, skipped = predict_frame(
        frame,
        champion,
        config.frequency,
        config.source.timezone,
        run_id=current_flow_run_id() or "local",
        created_at=datetime.now(UTC),
    )
    skipped = {**validated_meta.get("set_aside", {}), **skipped}  # none dropped silently
    uri = forecast_uri(store, config.name, run_date)
    ref = store.write_table(
        "predict",
        version,
        table,
        config_hash=config.digest(),
        inputs=[validated],
        extra={"run_date": run_date, "model_version": version, "skipped": skipped},
        uri=uri,
    )
    summary = ForecastSummary(
        uri=ref.uri,
        run_date=run_date,
        model_version=version,
        rows=len(table),
        series=table["unique_id"].nunique(),
        horizon=int(champion.metadata["horizon"]),
        first_ds=str(table["ds"].min()) if len(table) else None,
        last_ds=str(table["ds"].max()) if len(table) else None,
        skipped=skipped,
    )
    publish_markdown(
        f"forecast-summary-{config.name}", summary_markdown(summary), "Tonight's forecast"
    )
    if skipped:
        publish_table(
            f"forecast-skipped-{config.name}",
            [{"unique_id": sid, "reason": why} for sid, why in sorted(skipped.items())],
            "Series that could not be forecast",
        )
        logger.warning("%d series could not be forecast: %s", len(skipped), sorted(skipped))
    logger.info("Wrote %d rows for %d series to %s", summary.rows, summary.series, summary.uri)
    return summary
