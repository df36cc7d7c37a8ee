"""The named Keras layers of the forecasting models (importing this module imports Keras).

Each layer is a small, registered class instead of a `Lambda`, so a saved model loads in
Keras's safe mode, which never runs code from the file. `lstm_model.serialization.load_model`
imports this module first, so the classes are known when a model is read back.

Conventions: the input window is (batch, rows, features) with the target in column 0; its first
`look_back` rows are the past, the rows after them (when a model reads future inputs) are the
horizon. Everything here is arithmetic on those tensors, no state besides the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

PACKAGE = "lstm_model"
WINDOW_EPSILON = 1e-5
"""Added to a window's variance before the square root (as RevIN does): a constant window, such
as a run of zeros while a station is closed, gets a tiny spread instead of a division by zero."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class PastRows(keras.layers.Layer):
    """The first `look_back` rows of the window: what is known at the forecast origin."""

    def __init__(self, look_back: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.look_back = int(look_back)

    def call(self, window: Any) -> Any:
        return window[:, : self.look_back, :]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "look_back": self.look_back}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FutureInputs(keras.layers.Layer):
    """The horizon rows' future-known columns (`columns`), flattened: (batch, horizon * k).

    Only these columns of the horizon rows are ever read, so the target and the observed-only
    covariates of those rows (the future being forecast) cannot leak into the forecast.
    """

    def __init__(self, look_back: int, columns: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.look_back = int(look_back)
        self.columns = [int(c) for c in columns]

    def call(self, window: Any) -> Any:
        future = ops.take(window[:, self.look_back :, :], self.columns, axis=2)
        return ops.reshape(future, (-1, future.shape[1] * len(self.columns)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "look_back": self.look_back, "columns": self.columns}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowNormalization(keras.layers.Layer):
    """Scale the target column of each past window by that window's own mean and spread.

    Returns (normalized past, level (batch, 1), spread (batch, 1)); `Rescale` undoes it on the
    output. A series forecast today is then seen at today's level, whatever its level was when
    the per-series scaler was fitted (RevIN, Kim et al. 2022; DeepAR's per-window scale).
    """

    def __init__(self, epsilon: float = WINDOW_EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, past: Any) -> tuple[Any, Any, Any]:
        target = past[:, :, 0]
        level = ops.mean(target, axis=1, keepdims=True)
        spread = ops.sqrt(ops.var(target, axis=1, keepdims=True) + self.epsilon)
        normalized = (target - level) / spread
        return ops.concatenate([normalized[:, :, None], past[:, :, 1:]], axis=2), level, spread

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeasonalReference(keras.layers.Layer):
    """The seasonal-naive forecast of the target from the past rows: step h repeats row
    look_back - season + h % season of column 0. A gather, not a matrix product, so a NaN in a
    row it does not read (a future target) never reaches the output."""

    def __init__(self, look_back: int, horizon: int, season: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.look_back, self.horizon, self.season = int(look_back), int(horizon), int(season)

    def call(self, window: Any) -> Any:
        rows = [self.look_back - self.season + step % self.season for step in range(self.horizon)]
        return ops.take(window[:, :, 0], rows, axis=1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "look_back": self.look_back,
            "horizon": self.horizon,
            "season": self.season,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MonotoneQuantiles(keras.layers.Layer):
    """(batch, horizon, Q) raw outputs to non-crossing quantiles, by construction.

    Column `median_index` is the median; each quantile above it adds a softplus (> 0) step to
    the one below, each quantile below subtracts one from the one above. Sorted quantiles in,
    sorted quantiles out, whatever the weights.
    """

    def __init__(self, median_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.median_index = int(median_index)

    def call(self, raw: Any) -> Any:
        m = self.median_index
        median = raw[:, :, m : m + 1]
        above = median + ops.cumsum(ops.softplus(raw[:, :, m + 1 :]), axis=2)
        below_steps = ops.flip(ops.softplus(raw[:, :, :m]), axis=2)
        below = ops.flip(median - ops.cumsum(below_steps, axis=2), axis=2)
        return ops.concatenate([below, median, above], axis=2)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "median_index": self.median_index}


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantileCalibration(keras.layers.Layer):
    """Stretch each quantile's distance from the median by a factor measured on validation
    windows (`calibration_factors`), then sort: a model whose intervals came out too narrow
    (or wide) on held-out data is corrected once, and the quantiles still never cross."""

    def __init__(self, median_index: int, factors: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.median_index = int(median_index)
        self.factors = [float(f) for f in factors]

    def call(self, quantiles: Any) -> Any:
        m = self.median_index
        median = quantiles[..., m : m + 1]
        factors = ops.convert_to_tensor(self.factors, dtype=quantiles.dtype)
        return ops.sort(median + (quantiles - median) * factors, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "median_index": self.median_index,
            "factors": self.factors,
        }


def _broadcast_to_rank(values: Any, rank: int) -> Any:
    """(batch, horizon) or (batch, 1) values with trailing axes added up to `rank`."""
    while len(values.shape) < rank:
        values = ops.expand_dims(values, -1)
    return values


@keras.saving.register_keras_serializable(package=PACKAGE)
class Rescale(keras.layers.Layer):
    """`base + spread * output`: a normalized output (batch, horizon[, Q]) back to the input's
    units. `base` is (batch, horizon) (a reference forecast) or (batch, 1) (the window level);
    with zero output the result is `base` exactly."""

    def call(self, inputs: Sequence[Any]) -> Any:
        base, spread, output = inputs
        rank = len(output.shape)
        return _broadcast_to_rank(base, rank) + _broadcast_to_rank(spread, rank) * output


@keras.saving.register_keras_serializable(package=PACKAGE)
class AddBase(keras.layers.Layer):
    """`base + output` with `base` (batch, horizon) broadcast over a quantile axis."""

    def call(self, inputs: Sequence[Any]) -> Any:
        base, output = inputs
        return _broadcast_to_rank(base, len(output.shape)) + output


@keras.saving.register_keras_serializable(package=PACKAGE)
class StackMembers(keras.layers.Layer):
    """The ensemble members' outputs stacked on axis 1: (batch, members, horizon[, Q])."""

    def call(self, members: Sequence[Any]) -> Any:
        return ops.stack(list(members), axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberMedian(keras.layers.Layer):
    """The median over the ensemble axis 1. Order-preserving per element, so the median of
    non-crossing quantiles is non-crossing."""

    def call(self, stacked: Any) -> Any:
        return ops.median(stacked, axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ForecastLoss(keras.losses.Loss):
    """Point (mse, mae, huber) or pinball loss of (batch, horizon) targets against outputs
    (batch, [members,] horizon[, Q]); each member is scored on its own, so members train as
    independent models that share only their batches."""

    def __init__(
        self,
        kind: str = "mse",
        quantiles: Sequence[float] = (),
        members: bool = False,
        name: str = "forecast_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.kind = kind
        self.quantiles = [float(q) for q in quantiles]
        self.members = bool(members)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.members:
            y_true = ops.expand_dims(y_true, 1)
        if self.quantiles:
            y_true = ops.expand_dims(y_true, -1)
        error = y_true - y_pred
        if self.kind == "pinball":
            q = ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
            loss = ops.maximum(q * error, (q - 1.0) * error)
        elif self.kind == "mae":
            loss = ops.abs(error)
        elif self.kind == "huber":
            small = ops.abs(error) <= 1.0
            loss = ops.where(small, 0.5 * error**2, ops.abs(error) - 0.5)
        else:
            loss = error**2
        return ops.mean(ops.reshape(loss, (ops.shape(loss)[0], -1)), axis=1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kind": self.kind,
            "quantiles": self.quantiles,
            "members": self.members,
        }
