"""One small forecaster interface, implemented by the LSTM and by the baselines alike.

Evaluation, the promotion gate and the nightly flow ask every model the same question: given
a long frame of history in original units (rows sorted by `unique_id`, `ds`) and, per window,
the row one past its last input row (its *origin* `end`), what are the next `horizon` values?
A forecaster answers in original units and says which windows it can answer at all
(`supports`): a champion trained before a series existed, or one needing a longer history,
simply does not support those windows, instead of crashing the evaluation.

Adding a model means one class with `name`, `look_back`, `horizon`, `supports` and `predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from lstm_model.baselines import naive_forecast, seasonal_naive_forecast
from lstm_model.scaling import SeriesScaler
from lstm_model.windowing import segment_bounds

MAX_SCALED_INPUT = 1e6
"""Largest |scaled input| a model forecaster reads: a million training spreads from the series'
training offset is no value of that series. Beyond, the model's float32 sums overflow (from
about 1e36 scaled) or only saturate into a meaningless forecast."""


class Forecaster(Protocol):
    """What every model offers evaluation, the gate and the nightly flow.

    A probabilistic forecaster also has `quantiles` (sorted, with 0.5) and
    `predict_quantiles(frame, ends) -> (n, horizon, len(quantiles))`, non-crossing along the
    last axis; its `predict` is the median. Point forecasters have no `quantiles` attribute or an
    empty one: use `forecast_quantiles_of(forecaster)`.
    """

    name: str
    look_back: int  # rows of history needed before the origin
    horizon: int

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n,) bool: which windows this forecaster can forecast."""
        ...

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon) forecasts in original units for the windows ending before `ends`."""
        ...


def forecast_quantiles_of(forecaster: object) -> tuple[float, ...]:
    """The quantiles a forecaster predicts (empty for a point forecaster)."""
    return tuple(getattr(forecaster, "quantiles", ()) or ())


def quantile_column(quantile: float) -> str:
    """Forecast-file column of a quantile: 0.1 -> "yhat_q10", 0.025 -> "yhat_q2.5"."""
    return f"yhat_q{round(quantile * 100, 6):g}"


def series_first_rows(frame: pd.DataFrame) -> np.ndarray:
    """(rows,) offset of the first row of each row's series (rows sorted by unique_id, ds)."""
    codes, _ = pd.factorize(frame["unique_id"])
    starts, lengths = segment_bounds(codes)
    return np.repeat(starts, lengths)


def history_available(frame: pd.DataFrame, ends: np.ndarray, look_back: int) -> np.ndarray:
    """(n,) bool: the `look_back` rows before each origin all belong to the origin's series."""
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size == 0:
        return np.zeros(0, dtype=bool)
    if ends.min() < 1 or ends.max() > len(frame):
        raise IndexError(f"window ends must lie in [1, {len(frame)}]")
    return ends - look_back >= series_first_rows(frame)[ends - 1]


def input_rows(ends: np.ndarray, look_back: int) -> np.ndarray:
    """(n, look_back) row offsets of each window's inputs."""
    return np.asarray(ends, dtype=np.int64)[:, None] - look_back + np.arange(look_back)


def target_rows(ends: np.ndarray, horizon: int) -> np.ndarray:
    """(n, horizon) row offsets of each window's targets (they must exist in the frame)."""
    return np.asarray(ends, dtype=np.int64)[:, None] + np.arange(horizon)


@dataclass(frozen=True)
class SeasonalNaive:
    """The last `season` observed values, repeated: the baseline every model must beat."""

    horizon: int
    season: int
    name: str = "seasonal_naive"

    @property
    def look_back(self) -> int:
        return self.season

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return history_available(frame, ends, self.look_back)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        history = frame["y"].to_numpy(dtype=np.float64)[input_rows(ends, self.look_back)]
        return seasonal_naive_forecast(history, self.horizon, self.season)


@dataclass(frozen=True)
class Naive:
    """The last observed value, repeated."""

    horizon: int
    name: str = "naive"
    look_back: int = 1

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return history_available(frame, ends, self.look_back)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        history = frame["y"].to_numpy(dtype=np.float64)[input_rows(ends, 1)]
        return naive_forecast(history, self.horizon)


@dataclass(frozen=True, eq=False)
class ScaledModelForecaster:
    """A Keras model (or anything with `predict(inputs)`) on per-series scaled inputs.

    Inputs are the `input_features` of the last `look_back` rows, scaled with the model's own
    scaler; outputs are the scaled target for `horizon` steps (with a last quantile axis when
    the model forecasts `quantiles`), brought back to original units with the same scaler.
    Series the scaler never saw are not supported.

    With `future_features` (input columns known in advance), the model also reads the `horizon`
    rows after the origin: they must be in the frame, in the same series (the nightly forecast
    appends them; in evaluation they are the test rows). Of those rows only the future-known
    columns are passed on; every other value there (the target being forecast) is zeroed.
    """

    model: Any
    scaler: SeriesScaler
    input_features: Sequence[str]
    look_back: int
    horizon: int
    name: str = "lstm"
    batch_size: int = 4096
    quantiles: tuple[float, ...] = ()
    future_features: tuple[str, ...] = ()

    @property
    def input_rows(self) -> int:
        return self.look_back + (self.horizon if self.future_features else 0)

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        ends = np.asarray(ends, dtype=np.int64)
        if not set(self.input_features) <= set(frame.columns):
            return np.zeros(ends.size, dtype=bool)
        known = np.isin(
            frame["unique_id"].iloc[ends - 1].to_numpy().astype(str), self.scaler.series
        )
        usable = history_available(frame, ends, self.look_back) & known
        if self.future_features:
            usable &= future_rows_available(frame, ends, self.horizon)
        usable[usable] = self.inputs_in_range(frame, ends[usable])
        return usable

    def inputs_in_range(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n,) bool: every scaled input of the window lies within MAX_SCALED_INPUT, as the model
        reads it. A value far outside its series' training range (1e39, 1e300: a unit error, a
        corrupt extract) overflows float32 in the model's first layer and comes back NaN, so
        such windows are not supported; the rest of the night is forecast."""
        ends = np.asarray(ends, dtype=np.int64)
        fits = np.ones(ends.size, dtype=bool)
        for begin in range(0, ends.size, self.batch_size):
            with np.errstate(over="ignore", invalid="ignore"):  # the overflow is what we look for
                scaled = self.scaled_inputs(frame, ends[begin : begin + self.batch_size])
            fits[begin : begin + self.batch_size] = (np.abs(scaled) <= MAX_SCALED_INPUT).all(
                axis=(1, 2)
            )
        return fits

    def scaled_inputs(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, input_rows, features) float32 model inputs for the windows before `ends`."""
        ends = np.asarray(ends, dtype=np.int64)
        series = self.scaler.series_index(frame["unique_id"].iloc[ends - 1].to_numpy())
        columns = [self.scaler.column_index(name) for name in self.input_features]
        values = frame[list(self.input_features)].to_numpy(dtype=np.float64)
        offset = self.scaler.offset[series][:, columns][:, None, :]
        scale = self.scaler.scale[series][:, columns][:, None, :]
        rows = np.asarray(ends)[:, None] - self.look_back + np.arange(self.input_rows)
        scaled = (values[rows] - offset) / scale
        if self.future_features:
            hidden = [i for i, f in enumerate(self.input_features) if f not in self.future_features]
            scaled[:, self.look_back :, hidden] = 0.0
        return scaled.astype(np.float32)

    def _outputs(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """The model's outputs in original units: (n, horizon[, quantiles])."""
        ends = np.asarray(ends, dtype=np.int64)
        if not self.supports(frame, ends).all():
            raise ValueError(f"{self.name}: some windows are not supported (see `supports`)")
        shape = (0, self.horizon, len(self.quantiles)) if self.quantiles else (0, self.horizon)
        outputs = [np.empty(shape)]
        for begin in range(0, ends.size, self.batch_size):
            chunk = ends[begin : begin + self.batch_size]
            # One Keras step per chunk: predict's default batch of 32 made the night 10x slower.
            inputs = self.scaled_inputs(frame, chunk)
            scaled = self.model.predict(inputs, batch_size=len(chunk), verbose=0)
            ids = frame["unique_id"].iloc[chunk - 1].to_numpy()
            outputs.append(self.scaler.inverse_target(np.asarray(scaled), ids))
        return np.concatenate(outputs)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon) point forecasts: the median when the model forecasts quantiles."""
        outputs = self._outputs(frame, ends)
        return outputs[:, :, self.quantiles.index(0.5)] if self.quantiles else outputs

    def predict_quantiles(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(n, horizon, len(quantiles)) forecasts, non-crossing (the model builds them so)."""
        if not self.quantiles:
            raise ValueError(f"{self.name}: a point forecaster has no quantiles")
        return self._outputs(frame, ends)


def model_forecaster(
    model: Any,
    scaler: SeriesScaler,
    input_features: Sequence[str],
    spec: Any,
    name: str = "lstm",
) -> ScaledModelForecaster:
    """A trained model as a forecaster, from its `ModelSpec` (quantiles, future inputs)."""
    return ScaledModelForecaster(
        model,
        scaler,
        list(input_features),
        spec.look_back,
        spec.horizon,
        name=name,
        quantiles=tuple(spec.quantiles),
        future_features=tuple(input_features[i] for i in spec.future_features),
    )


def future_rows_available(frame: pd.DataFrame, ends: np.ndarray, horizon: int) -> np.ndarray:
    """(n,) bool: the `horizon` rows from each origin exist and belong to the origin's series."""
    ends = np.asarray(ends, dtype=np.int64)
    first = series_first_rows(frame)
    inside = ends + horizon <= len(frame)
    last = np.minimum(ends + horizon - 1, len(frame) - 1)
    return inside & (first[last] == first[ends - 1])


def actuals(frame: pd.DataFrame, ends: np.ndarray, horizon: int) -> np.ndarray:
    """(n, horizon) observed targets after each origin, in original units."""
    return frame["y"].to_numpy(dtype=np.float64)[target_rows(ends, horizon)]
