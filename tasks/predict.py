"""Predict step: tonight's forecast for every series, from the champion (or the fallback).

Each series' last `look_back` rows go through the champion as a `Forecaster` (scaled with its
own scaler, predicted, brought back to original units) and are laid on the future frequency
grid. Until a model has passed the gate, `forecast.fallback` publishes a forecast by
`forecast.fallback_model` (seasonal naive by default; any evaluation baseline, auto_ets and
auto_theta included) instead, labelled as such in the file (`model`, `fallback`) and in the UI.

The result is written whole to `{root}/forecasts/{name}/run_date=YYYY-MM-DD/forecast.parquet`
with one atomic write, so a rerun of the same night replaces it, a crash leaves the previous
file readable, and other nights are never touched. The file holds nothing that changes from
one replay to the next (no run id, no wall-clock time), so replaying a night with the same
data and model gives the same bytes. Series that cannot be forecast are listed with the
reason, never dropped silently.

Publish guards (`publish_problems`): a night is written only when every `yhat` (and every
filled quantile column) is finite, it forecasts at least `forecast.min_series_share` of the
series in the latest forecast at or before it (that night's own file when replaying it, else the
previous night's; never zero series), and its forecast starts at the night: no series starts
after it (rows at or after the run date were read) and the freshest one starts at most
`validation.max_staleness` steps before it. A night that fails a guard raises PublishGuardError
naming each failed guard, writes nothing and is not retried; the published file stays as it was.

Quantiles: the file has one column per configured quantile (`model.forecast_quantiles`, named
by `quantile_column`: yhat_q10, yhat_q50, yhat_q90), non-crossing, and `yhat` is the median.
A point forecaster (the seasonal-naive fallback, a champion trained with a point loss, one
trained on other quantiles) leaves those columns NaN, so the file's schema is the same every
night whichever model served it; it changes only when the configured quantiles change.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.tseries.frequencies import to_offset
from pydantic import BaseModel

from lstm_model.forecasters import (
    MAX_SCALED_INPUT,
    Forecaster,
    quantile_column,
    series_first_rows,
)
from lstm_model.metrics import check_quantiles
from lstm_model.statistical import baseline_forecaster
from tasks.config import PipelineConfig
from tasks.evaluate import point_and_quantiles
from tasks.normalize import (
    encode_stat,
    feature_roles,
    stat_features_among,
)
from tasks.registry import ModelRegistry
from tasks.runtime import (
    current_flow_run_id,
    pipeline_task,
    publish_markdown,
    publish_table,
    run_logger,
    store_for,
)
from tasks.storage import ArtifactError, ArtifactRef, ArtifactStore
from tasks.validate import as_of_instant, with_calendar

FALLBACK_VERSION = "fallback-seasonal-naive"
"""The `model_version` of a night forecast by the seasonal-naive fallback."""


def fallback_version(model: str) -> str:
    """The `model_version` of a night forecast by the fallback `model` (FALLBACK_VERSION for
    seasonal_naive)."""
    return "fallback-" + model.replace("_", "-")


class NoChampionError(RuntimeError):
    """Forecasting before any model was promoted."""


class PublishGuardError(RuntimeError):
    """Tonight's forecast failed a publish guard: nothing was written, the published file stands.
    Not an OSError, so never retried: the same inputs fail the same way."""


class MissingFutureCovariatesError(ValueError):
    """A futr_exog value needed for the horizon is not known: names the series and dates."""


class ForecastSummary(BaseModel):
    """What the predict step returns and the UI shows: where the forecast is and what it holds."""

    uri: str
    run_date: str
    model_version: str
    fallback: bool = False
    run_id: str | None = None
    rows: int
    series: int
    horizon: int
    first_ds: str | None
    last_ds: str | None
    skipped: dict[str, str]
    quantile_columns: list[str] = []
    """The file's quantile columns; NaN when the serving model is a point forecaster."""
    quantiles_forecast: bool = False
    """Whether the serving model filled the quantile columns."""


def series_ends(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Series ids and the row one past each series' last row (rows sorted by unique_id, ds)."""
    if frame.empty:
        return np.array([], dtype=object), np.array([], dtype=np.int64)
    first = series_first_rows(frame)
    is_last = np.append(first[1:] != first[:-1], True)
    ends = np.flatnonzero(is_last) + 1
    return frame["unique_id"].iloc[ends - 1].to_numpy().astype(str), ends.astype(np.int64)


def forecastable(
    frame: pd.DataFrame,
    forecaster: Forecaster,
    ids: np.ndarray,
    ends: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, dict[str, str]]:
    """Which series (origins `ends`, history `lengths`) the forecaster can forecast, and why
    the others cannot be."""
    supported = forecaster.supports(frame, ends)
    scaler = getattr(forecaster, "scaler", None)
    known = set(getattr(scaler, "series", ids))
    unusable = scaler.unusable() if scaler is not None else {}  # a scaler saved before issue 10
    skipped: dict[str, str] = {}
    for series_id, length in zip(ids[~supported], lengths[~supported], strict=True):
        if series_id in unusable:
            skipped[series_id] = f"the champion's scaler cannot scale it: {unusable[series_id]}"
        elif series_id not in known:
            skipped[series_id] = "not in the champion's training data (retrain to include it)"
        elif length < forecaster.look_back:
            skipped[series_id] = f"only {length} rows; the model needs {forecaster.look_back}"
        else:
            skipped[series_id] = (
                "values far outside the series' training range: scaled inputs beyond "
                f"{MAX_SCALED_INPUT:g} training spreads (a unit error or corrupt values?)"
            )
    return supported, skipped


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


def check_non_crossing(
    unique_ids: np.ndarray, quantiles: Sequence[float], values: np.ndarray
) -> None:
    """Fail, naming the first series and step, where a lower quantile exceeds a higher one."""
    crossing = np.diff(values, axis=2) < 0
    if crossing.any():
        row, step, k = (int(i) for i in np.argwhere(crossing)[0])
        raise ValueError(
            f"quantile forecasts cross: series {unique_ids[row]!r}, step {step + 1}, "
            f"{quantile_column(quantiles[k])} = {values[row, step, k]:g} > "
            f"{quantile_column(quantiles[k + 1])} = {values[row, step, k + 1]:g} "
            f"({int(crossing.any(axis=(1, 2)).sum())} series cross)"
        )


def future_frame(
    ids: np.ndarray,
    future_ds: np.ndarray,
    config: PipelineConfig,
    known: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The horizon rows of series `ids` on the grid `future_ds` ((n, horizon), as `future_grid`
    lays it): unique_id, ds and the futr features, futr_exog from `known` (the rows validation
    kept for the horizon) and calendar generated for these timestamps. A missing futr_exog value
    fails the night, naming the series and the dates.
    """
    n, horizon = future_ds.shape
    frame = pd.DataFrame(
        {
            "unique_id": pd.Series(np.repeat(np.asarray(ids, dtype=object), horizon), dtype="str"),
            "ds": pd.to_datetime(future_ds.reshape(-1), utc=True),
        }
    )
    columns = list(config.source.futr_exog)
    if columns:
        given = pd.DataFrame(columns=["unique_id", "ds", *columns]) if known is None else known
        given = given[["unique_id", "ds", *columns]].astype({"unique_id": "str"})
        given = given.assign(ds=pd.to_datetime(given["ds"], utc=True).astype(frame["ds"].dtype))
        frame = frame.merge(given, on=["unique_id", "ds"], how="left", validate="one_to_one")
        frame[columns] = frame[columns].astype("float64")
        missing_future_values(frame, columns, config.source.timezone)
    return with_calendar(frame, config)  # the same features validation gives the history


def missing_future_values(frame: pd.DataFrame, columns: list[str], timezone: str) -> None:
    """Raise MissingFutureCovariatesError naming each series with an unknown futr_exog value for
    the horizon, its dates and columns (a forecast with made-up covariates is no forecast)."""
    empty = ~np.isfinite(frame[columns].to_numpy(dtype="float64"))
    rows = empty.any(axis=1)
    if not rows.any():
        return
    lines = []
    bad = frame[rows]
    for series, group in bad.groupby("unique_id", sort=True):
        dates = [format_local(stamp, timezone) for stamp in group["ds"]]
        which = sorted(
            {
                c
                for c, hit in zip(
                    columns, empty[rows][bad["unique_id"] == series].any(0), strict=True
                )
                if hit
            }
        )
        shown = ", ".join(dates[:5]) + (f" ({len(dates)} steps)" if len(dates) > 5 else "")
        lines.append(f"  series {series!r}: {', '.join(which)} unknown at {shown}")
        if len(lines) == 10:
            lines.append(f"  ... {bad['unique_id'].nunique() - 10} more series")
            break
    raise MissingFutureCovariatesError(
        "futr_exog values for the forecast horizon are missing; give them as source rows past "
        "each series' last target (target empty) or in source.future_path:\n" + "\n".join(lines)
    )


def format_local(stamp: pd.Timestamp, timezone: str) -> str:
    """A timestamp on the local wall clock; the date alone at local midnight."""
    local = pd.Timestamp(stamp).tz_convert(timezone)
    return local.strftime("%Y-%m-%d") if local == local.normalize() else local.isoformat()


@dataclass(frozen=True)
class HorizonInputs:
    """What a forecaster that reads futr features over the horizon gets: the config (futr_exog,
    calendar), the futr_exog rows validation kept for the horizon, and the stat features to
    copy onto the horizon rows."""

    config: PipelineConfig
    known: pd.DataFrame | None = None
    carry: tuple[str, ...] = ()

    def rows(self, ids: np.ndarray, future_ds: np.ndarray) -> pd.DataFrame:
        return future_frame(ids, future_ds, self.config, self.known)


def reads_horizon(forecaster: Forecaster, config: PipelineConfig) -> bool:
    """Whether the forecaster reads futr features (futr_exog, calendar) of the horizon rows: it
    lists one among its `input_features`. Baselines do not, so they never need future values."""
    futr = {column for column, role in feature_roles(config).items() if role == "futr"}
    return bool(futr & set(getattr(forecaster, "input_features", ()) or ()))


def with_future_rows(
    frame: pd.DataFrame,
    future: pd.DataFrame,
    ids: np.ndarray,
    ends: np.ndarray,
    carry: Sequence[str] = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """`frame` with each series' horizon rows from `future` (sorted by ds) inserted after its
    history, and the new ends: ends[i] is series i's first future row, so rows
    [end - look_back, end + horizon) hold its inputs and then its future covariates.

    Future rows have y and every column `future` lacks empty (NaN; False for flags), except
    `carry` (stat features), copied from the series' last history row. Series not in `ids` get
    no rows.
    """
    ids = np.asarray(ids).astype(str)
    ends = np.asarray(ends, dtype=np.int64)
    if not ids.size:
        return frame, ends
    last_row = pd.Series(ends - 1, index=ids)
    added = future[future["unique_id"].astype(str).isin(ids)].reset_index(drop=True)
    anchor = last_row.loc[added["unique_id"].astype(str).to_numpy()].to_numpy()
    for column in carry:
        added[column] = frame[column].to_numpy()[anchor]
    added = added.reindex(columns=frame.columns)
    for column in frame.columns:
        if pd.api.types.is_bool_dtype(frame[column]):
            added[column] = False
    added = added.astype(frame.dtypes.to_dict())
    # history row r sorts at (r, 0); future step k of a series after its last row at (last, 1+k)
    primary = np.concatenate([np.arange(len(frame)), anchor])
    step = added.groupby(anchor).cumcount().to_numpy() + 1
    secondary = np.concatenate([np.zeros(len(frame), dtype=np.int64), step])
    order = np.lexsort((secondary, primary))
    combined = pd.concat([frame, added], ignore_index=True).iloc[order].reset_index(drop=True)
    shift = np.searchsorted(np.sort(anchor), ends - 1, side="left")
    return combined, ends + shift


def forecast_frame(
    unique_ids: np.ndarray,
    future_ds: np.ndarray,
    yhat: np.ndarray,
    *,
    model: str,
    model_version: str,
    fallback: bool,
    quantiles: Sequence[float] = (),
    yhat_quantiles: np.ndarray | None = None,
) -> pd.DataFrame:
    """The published forecast: one row per series and horizon step, labelled with its model.

    One column per quantile in `quantiles` after `yhat`: `yhat_quantiles` (n, horizon, Q), or
    NaN when None (a point forecaster), so the schema does not depend on the model.
    """
    n, horizon = yhat.shape
    quantiles = check_quantiles(quantiles)
    if yhat_quantiles is None:
        yhat_quantiles = np.full((n, horizon, len(quantiles)), np.nan)
    yhat_quantiles = np.asarray(yhat_quantiles, dtype=np.float64)
    if yhat_quantiles.shape != (n, horizon, len(quantiles)):
        raise ValueError(
            f"quantile forecasts {yhat_quantiles.shape}, expected {(n, horizon, len(quantiles))} "
            f"for quantiles {list(quantiles)}"
        )
    check_non_crossing(unique_ids, quantiles, yhat_quantiles)
    columns = {
        quantile_column(q): yhat_quantiles[..., k].reshape(-1) for k, q in enumerate(quantiles)
    }
    return pd.DataFrame(
        {
            "unique_id": pd.Series(np.repeat(unique_ids, horizon), dtype="str"),
            "ds": pd.to_datetime(future_ds.reshape(-1), utc=True),
            "step": np.tile(np.arange(1, horizon + 1, dtype=np.int16), n),
            "yhat": yhat.reshape(-1).astype(np.float64),
            **columns,
            "model": pd.Series([model] * (n * horizon), dtype="str"),
            "model_version": pd.Series([model_version] * (n * horizon), dtype="str"),
            "fallback": np.full(n * horizon, fallback),
        }
    )


def predict_frame(
    frame: pd.DataFrame,
    forecaster: Forecaster,
    frequency: str,
    timezone: str,
    *,
    model_version: str,
    fallback: bool = False,
    quantiles: Sequence[float] = (),
    horizon_inputs: HorizonInputs | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Forecast every forecastable series of a validated frame (sorted by unique_id, ds).

    With `quantiles`, the table has their columns: the forecaster's quantiles when it forecasts
    them all (then `yhat` is its median), NaN otherwise. With `horizon_inputs` each series'
    horizon rows (futr features) are appended after its history and the forecaster reads rows
    [end - look_back, end + horizon) (`with_future_rows`).
    """
    quantiles = check_quantiles(sorted(quantiles))
    horizon = forecaster.horizon
    ids, ends = series_ends(frame)
    lengths = np.diff(np.concatenate(([0], ends)))
    # iloc first: to_numpy() of a whole zone-aware column builds one object per row.
    last_ds = pd.Series(frame["ds"].iloc[ends - 1].array, index=ids)
    future = future_grid(last_ds, horizon, frequency, timezone)
    if horizon_inputs is not None and ends.size:
        rows = horizon_inputs.rows(ids, future)
        frame, ends = with_future_rows(frame, rows, ids, ends, horizon_inputs.carry)
    supported, skipped = forecastable(frame, forecaster, ids, ends, lengths)
    ids, ends, future = ids[supported], ends[supported], future[supported]
    yhat, yhat_quantiles = np.empty((0, horizon)), None
    if ends.size:
        yhat, yhat_quantiles = point_and_quantiles(forecaster, frame, ends, quantiles)
    table = forecast_frame(
        ids,
        future,
        yhat,
        model=forecaster.name,
        model_version=model_version,
        fallback=fallback,
        quantiles=quantiles,
        yhat_quantiles=yhat_quantiles,
    )
    return table, skipped


def serving_forecaster(
    registry: ModelRegistry, config: PipelineConfig
) -> tuple[Forecaster, str, bool]:
    """The champion as a forecaster, or `forecast.fallback_model` until one passed the gate."""
    version = registry.champion_version()
    if version is not None:
        return registry.forecaster(version), version, False
    if not config.forecast.fallback:
        raise NoChampionError(
            f"No champion model for pipeline {config.name!r} under {registry.uri()}: "
            "train one first with `forecast train` (or `forecast run`), or set "
            "forecast.fallback = true to publish a baseline forecast meanwhile."
        )
    name = config.forecast.fallback_model
    fallback = baseline_forecaster(
        name,
        config.window.horizon,
        config.evaluation.season_length,
        config.evaluation.baseline_max_history,
        config.evaluation.baseline_n_jobs,
        config.model.forecast_quantiles,  # the statsforecast ones fill the quantile columns
    )
    return fallback, fallback_version(name), True


def forecast_uri(store: ArtifactStore, name: str, run_date: str) -> str:
    return store.uri("forecasts", name, f"run_date={run_date}", "forecast.parquet")


PARTITION = re.compile(r"run_date=(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class PublishedForecast:
    """A published forecast file and how many series it holds (the share guard's reference)."""

    uri: str
    series: int


def previous_forecast(store: ArtifactStore, name: str, run_date: str) -> PublishedForecast | None:
    """The latest readable forecast of pipeline `name` at or before `run_date`: the night's own
    file when replaying it (the file a publish would replace), else the latest earlier night's.
    An unreadable file is passed over with a warning: it is no reference to keep."""
    nights = [
        match.group(1)
        for path in store.list("forecasts", name)
        if (match := PARTITION.fullmatch(PurePosixPath(path).name)) and match.group(1) <= run_date
    ]
    for night in sorted(nights, reverse=True):
        uri = forecast_uri(store, name, night)
        if not store.exists(uri):
            continue
        try:
            data = store.read_bytes(uri)
            ids = pq.read_table(io.BytesIO(data), columns=["unique_id"]).column("unique_id")
        except (ArtifactError, pa.ArrowInvalid, OSError) as err:
            run_logger().warning("Not comparing tonight's series with %s: %s", uri, err)
            continue
        return PublishedForecast(uri, len(pc.unique(ids)))
    return None


def publish_problems(
    table: pd.DataFrame,
    skipped: dict[str, str],
    previous: PublishedForecast | None,
    config: PipelineConfig,
    run_date: str,
) -> list[str]:
    """Why tonight's forecast `table` must not be published (empty: publish it): non-finite
    values, too few series against `previous`, a start inconsistent with the night."""
    return (
        non_finite_problems(table, config.model.forecast_quantiles)
        + coverage_problems(table, skipped, previous, config.forecast.min_series_share)
        + start_problems(table, run_date, config)
    )


def non_finite_problems(table: pd.DataFrame, quantiles: Sequence[float]) -> list[str]:
    """`yhat` and each filled quantile column (a point forecaster leaves them all NaN) must be
    finite in every row."""
    filled = [
        column
        for column in (quantile_column(q) for q in sorted(quantiles))
        if table[column].notna().any()
    ]
    problems = []
    for column in ["yhat", *filled]:
        values = table[column].to_numpy(dtype="float64")
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            series = table["unique_id"].to_numpy()[bad].astype(str)
            problems.append(
                f"{column} is not finite in {int(bad.sum())} rows of {len(set(series))} series "
                f"(first: series {str(series[0])!r}, step {table['step'].iat[first]}: "
                f"{values[first]})"
            )
    return problems


def coverage_problems(
    table: pd.DataFrame,
    skipped: dict[str, str],
    previous: PublishedForecast | None,
    min_share: float,
) -> list[str]:
    """No series at all, or fewer than `min_share` of the series `previous` holds."""
    series = table["unique_id"].nunique()
    shown = "; ".join(f"{str(sid)!r}: {why}" for sid, why in sorted(skipped.items())[:3])
    more = ", ..." if len(skipped) > 3 else ""
    not_forecast = f"{len(skipped)} series not forecast" + (f": {shown}{more}" if skipped else "")
    if series == 0:
        return [f"no series forecast ({not_forecast})"]
    if previous is not None and series < min_share * previous.series:
        return [
            f"{series} series forecast, fewer than forecast.min_series_share={min_share:g} of "
            f"the {previous.series} series in {previous.uri} ({not_forecast})"
        ]
    return []


def start_problems(table: pd.DataFrame, run_date: str, config: PipelineConfig) -> list[str]:
    """The forecast must start at the night `run_date` (local midnight in source.timezone):
    no series' last input row (one step before its first forecast) at or after it, which would
    mean the as-of cut did not hold, and the freshest series no staler than validation lets a
    series be (validation.max_staleness steps): else the whole feed ended too early."""
    if table.empty:
        return []
    timezone = config.source.timezone
    offset = to_offset(config.frequency)
    night = as_of_instant(run_date, timezone).tz_convert(timezone)
    first = table.groupby("unique_id", sort=True)["ds"].min()
    starts = pd.DatetimeIndex(first).tz_convert(timezone)
    problems = []
    late = (starts - offset) >= night
    if late.any():
        problems.append(
            f"{int(late.sum())} series start after the night {run_date}: their input reached "
            f"rows at or after its start (first: series {first.index[late][0]!r} starts at "
            f"{format_local(starts[late][0], timezone)})"
        )
    limit = config.validation.max_staleness
    if starts.max() < night - offset * limit:
        problems.append(
            f"the freshest series starts at {format_local(starts.max(), timezone)}, more than "
            f"validation.max_staleness={limit} steps before the night {run_date}: the data ends "
            "too early for this night"
        )
    return problems


def quantile_summary(table: pd.DataFrame, quantiles: Sequence[float]) -> dict[str, object]:
    """The summary's quantile fields: the file's quantile columns and whether any is filled."""
    columns = [quantile_column(q) for q in sorted(quantiles)]
    filled = bool(columns) and bool(table[columns].notna().any().any())
    return {"quantile_columns": columns, "quantiles_forecast": filled}


def summary_markdown(summary: ForecastSummary) -> str:
    lines = [
        f"# Forecast for {summary.run_date}",
        "",
        "| | |",
        "|---|---|",
        f"| output | `{summary.uri}` |",
        f"| model version | `{summary.model_version}` |",
        f"| fallback (a baseline: no model passed the gate yet) | {summary.fallback} |",
        f"| rows | {summary.rows:,} |",
        f"| series | {summary.series:,} |",
        f"| horizon | {summary.horizon} steps |",
        f"| time range | {summary.first_ds} to {summary.last_ds} |",
        f"| series not forecast | {len(summary.skipped)} |",
    ]
    if summary.quantile_columns:
        state = "forecast" if summary.quantiles_forecast else "NaN: a point forecaster served"
        lines.insert(
            -1, f"| quantiles | {', '.join(summary.quantile_columns)} ({state}); yhat: median |"
        )
    if summary.skipped:
        lines += ["", "## Series not forecast", "", "| series | reason |", "|---|---|"]
        lines += [f"| `{sid}` | {why} |" for sid, why in sorted(summary.skipped.items())]
    return "\n".join(lines)


# Never cached: a rerun of the same night must forecast again (the champion may have changed)
# and replace that night's file whole.
@pipeline_task("predict", task_run_name="predict-{config.name}-{run_date}")
def predict_task(config: PipelineConfig, validated: ArtifactRef, run_date: str) -> ForecastSummary:
    """Forecast tonight with the champion (or the fallback) and publish the file atomically."""
    logger = run_logger()
    store = store_for(config)
    for leftover in store.remove_stale_staging("forecasts", config.name) + (
        store.remove_stale_staging("artifacts")
    ):
        logger.warning("Removed %s: staged by a writer killed before its rename", leftover)
    forecaster, version, fallback = serving_forecaster(ModelRegistry(store, config.name), config)
    if fallback:
        logger.warning(
            "No model has passed the gate yet: publishing the %s fallback", forecaster.name
        )
    frame, validated_meta = store.read_table(validated)
    inputs = tuple(getattr(forecaster, "input_features", ()) or ())
    # stat one-hots rebuilt by the names the model was trained with (unseen values: all 0)
    frame, _ = encode_stat(frame, config.source.stat_exog, inputs)
    horizon_inputs = None
    if reads_horizon(forecaster, config):
        known = validated_meta.get("future")
        horizon_inputs = HorizonInputs(
            config,
            None if known is None else store.read_table(ArtifactRef(**known))[0],
            carry=tuple(stat_features_among(config, inputs)),
        )
    table, skipped = predict_frame(
        frame,
        forecaster,
        config.frequency,
        config.source.timezone,
        model_version=version,
        fallback=fallback,
        quantiles=config.model.forecast_quantiles,
        horizon_inputs=horizon_inputs,
    )
    skipped = {**validated_meta.get("set_aside", {}), **skipped}  # none dropped silently
    uri = forecast_uri(store, config.name, run_date)
    previous = previous_forecast(store, config.name, run_date)
    if problems := publish_problems(table, skipped, previous, config, run_date):
        kept = "the file there is left as it was" if store.exists(uri) else "nothing was written"
        raise PublishGuardError(f"Not publishing {uri}: {'; '.join(problems)}; {kept}")
    ref = store.write_table(
        "predict",
        version,
        table,
        config_hash=config.digest(),
        inputs=[validated],
        extra={
            "run_date": run_date,
            "model_version": version,
            "fallback": fallback,
            "skipped": dict(sorted(skipped.items())),
        },
        uri=uri,
        created_at=run_date,  # the night, not the wall clock: replays give the same bytes
    )
    summary = ForecastSummary(
        uri=ref.uri,
        run_date=run_date,
        model_version=version,
        fallback=fallback,
        run_id=current_flow_run_id(),
        rows=len(table),
        series=table["unique_id"].nunique(),
        horizon=forecaster.horizon,
        first_ds=str(table["ds"].min()) if len(table) else None,
        last_ds=str(table["ds"].max()) if len(table) else None,
        skipped=skipped,
        **quantile_summary(table, config.model.forecast_quantiles),
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
