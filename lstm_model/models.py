"""Keras LSTM forecasters: one frozen `ModelSpec` describes a model, `build_model` compiles it.

Every model maps a window of `look_back` rows by `n_features` columns (the target is column 0)
to the next `horizon` target values with one direct multi-step head, `Dense(horizon)`: all steps
come out of one forward pass, so errors do not compound as in recursive one-step forecasting.

The presets reproduce the seed tutorial's three designs; `custom` is any stack of LSTM layers.
On top of any preset, the spec can ask for the pieces of the forecasting recipe:
- `normalization="window"`: each window's target is scaled by that window's own level and spread
  (RevIN), so a trending series is forecast at today's level, not its training-era level;
- `reference_season`: the model forecasts a correction to seasonal naive, so that an untrained
  model (zero correction) is seasonal naive exactly;
- `quantiles`: one output per quantile, non-crossing by construction, trained with the pinball
  loss; the median is the point forecast;
- `ensemble_size`: members with their own seeds trained side by side; `serving_model` takes the
  median of their outputs;
- `future_features`: the window then also holds the `horizon` rows after the origin, and the
  model reads those rows' future-known columns (and nothing else of them).
Keras is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    import keras

Preset = Literal["univariate", "multivariate", "stacked", "custom"]
Activation = Literal["tanh", "relu"]
Loss = Literal["mse", "mae", "huber", "pinball"]
Normalization = Literal["series", "window"]
Optimizer = Literal["adam", "rmsprop"]

_SINGLE_LAYER_PRESETS = ("univariate", "multivariate")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides a model's architecture and how it is compiled.

    Presets (the seed tutorial's designs, each ending in `Dense(horizon)`):
      - `univariate`: one LSTM layer over the target alone; `n_features` is forced to 1, so feed
        it windows of column 0 only (`WindowDataset(..., feature_index=spec.feature_index)`).
      - `multivariate`: one LSTM layer over the target plus covariates (`n_features` columns).
      - `stacked`: LSTM(return_sequences) -> Dropout -> LSTM -> Dropout -> Dense, at least two
        layers; a single `units` entry is used for both. The tutorial used `dropout=0.2`.
      - `custom`: one LSTM layer per `units` entry, Dropout after each when `dropout > 0`.

    `activation="tanh"` (the default) keeps the fast fused cuDNN kernel on a GPU, which Keras
    picks only for tanh/sigmoid, `recurrent_dropout=0`, `unroll=False` and `use_bias=True` (all
    kept here). `activation="relu"` (the seed's choice) silently falls back to the generic
    kernel on GPU, typically several times slower (not measured here: no GPU), and its
    unbounded cell state can blow up over long windows (loss spikes, NaN) unless the learning
    rate is small; the training benchmark shows its validation error jumping about. On CPU
    both run the same generic kernel at about the same cost per step.
    """

    preset: Preset = "multivariate"
    look_back: int = 56
    horizon: int = 14
    n_features: int = 1
    units: tuple[int, ...] = (64,)
    dropout: float = 0.0
    activation: Activation = "tanh"
    loss: Loss = "mse"
    optimizer: Optimizer = "adam"
    learning_rate: float = 1e-3
    reference_season: int | None = None
    """When set, the model forecasts a correction to the seasonal-naive forecast of this period
    (read from the target, input column 0): the head starts at zero, so an untrained model is
    seasonal naive exactly, and training only has to learn what seasonal naive gets wrong."""
    normalization: Normalization = "series"
    """window: the target of each input window is scaled by the window's mean and spread inside
    the model (and the output scaled back); series: inputs are used as given."""
    quantiles: tuple[float, ...] = ()
    """With loss "pinball": the quantiles forecast, sorted, including 0.5 (the median)."""
    ensemble_size: int = 1
    future_features: tuple[int, ...] = ()
    """Input columns known in advance: read over the `horizon` rows after the origin too."""

    def __post_init__(self) -> None:
        # Config files give lists; a tuple keeps the spec hashable and immutable.
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        object.__setattr__(self, "quantiles", tuple(sorted(float(q) for q in self.quantiles)))
        object.__setattr__(self, "future_features", tuple(int(c) for c in self.future_features))
        self._check_choices()
        self._check_sizes()
        if self.preset == "univariate":
            object.__setattr__(self, "n_features", 1)
        if self.preset == "stacked" and len(self.units) == 1:
            object.__setattr__(self, "units", self.units * 2)

    def _check_choices(self) -> None:
        for name, kind in (
            ("preset", Preset),
            ("activation", Activation),
            ("loss", Loss),
            ("optimizer", Optimizer),
            ("normalization", Normalization),
        ):
            if getattr(self, name) not in get_args(kind):
                raise ValueError(
                    f"{name} must be one of {get_args(kind)}, got {getattr(self, name)!r}"
                )

    def _check_sizes(self) -> None:
        if min(self.look_back, self.horizon, self.n_features) < 1:
            raise ValueError(f"look_back, horizon and n_features must be >= 1, got {self}")
        if not self.units or min(self.units) < 1:
            raise ValueError(f"units must be one or more positive layer sizes, got {self.units}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.reference_season is not None and not 1 <= self.reference_season <= self.look_back:
            raise ValueError(
                f"reference_season must be in [1, look_back={self.look_back}], "
                f"got {self.reference_season}"
            )
        if (self.loss == "pinball") != bool(self.quantiles):
            raise ValueError(
                f"the pinball loss and quantiles go together, got loss {self.loss!r} with "
                f"quantiles {self.quantiles}"
            )
        quantiles = self.quantiles
        if quantiles and not (quantiles[0] > 0 and quantiles[-1] < 1 and 0.5 in quantiles):
            raise ValueError(f"quantiles must lie in (0, 1) and include 0.5, got {quantiles}")
        if len(set(quantiles)) < len(quantiles):
            raise ValueError(f"quantiles must be distinct, got {quantiles}")
        if self.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {self.ensemble_size}")
        if any(not 0 < c < self.n_features for c in self.future_features):
            raise ValueError(
                f"future_features must be covariate columns in [1, {self.n_features - 1}] "
                f"(column 0 is the target), got {self.future_features}"
            )
        if self.preset in _SINGLE_LAYER_PRESETS and len(self.units) != 1:
            raise ValueError(
                f"preset {self.preset!r} is one LSTM layer, got units={self.units}; "
                "use preset 'stacked' or 'custom' for several layers"
            )

    @property
    def input_rows(self) -> int:
        """Rows of the input window: the past, plus the horizon when future inputs are read."""
        return self.look_back + (self.horizon if self.future_features else 0)

    @property
    def feature_index(self) -> int | None:
        """Input column(s) the model reads: 0 (the target) for `univariate`, else all (None)."""
        return 0 if self.preset == "univariate" else None


def build_model(spec: ModelSpec, seed: int | None = None) -> keras.Model:
    """A compiled Keras model for `spec`: (batch, input_rows, n_features) -> forecasts.

    The output is (batch, horizon), with a quantile axis (batch, horizon, Q) when `quantiles`
    are set, and an ensemble axis after the batch (batch, members, ...) when `ensemble_size` > 1
    (train that, serve `serving_model(model, spec)`).

    With a `seed`, every initializer and Dropout layer gets its own seed derived from it, so
    the initial weights and dropout masks are reproducible even when other threads of the
    process (a Prefect client, say) draw from Python's global `random`, which Keras's
    unseeded initializers would otherwise share with them.
    """
    import keras

    from lstm_model import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    layer_seeds = iter(np.random.default_rng(seed).integers(1, 2**31 - 1, size=4096).tolist())

    def seeded(initializer: type) -> Any:
        return initializer(seed=next(layer_seeds)) if seed is not None else initializer()

    window = keras.Input(shape=(spec.input_rows, spec.n_features), name="window")
    past = layers.PastRows(spec.look_back, name="past")(window) if spec.future_features else window
    level = spread = None
    if spec.normalization == "window":
        past, level, spread = layers.WindowNormalization(name="window_normalization")(past)
    future = None
    if spec.future_features:
        future = layers.FutureInputs(spec.look_back, spec.future_features, name="future")(window)
    reference = None
    if spec.reference_season is not None:
        reference = layers.SeasonalReference(
            spec.look_back, spec.horizon, spec.reference_season, name="seasonal_reference"
        )(window)

    def member(prefix: str) -> keras.KerasTensor:
        hidden = _encoder(spec, past, seeded, layer_seeds if seed is not None else None, prefix)
        if future is not None:
            hidden = keras.layers.Concatenate(name=f"{prefix}with_future")([hidden, future])
        outputs = max(len(spec.quantiles), 1)
        corrects = reference is not None
        raw = keras.layers.Dense(
            spec.horizon * outputs,
            # A correction starts at zero: the untrained model is its reference exactly.
            kernel_initializer="zeros" if corrects else seeded(keras.initializers.GlorotUniform),
            name=f"{prefix}{'correction' if corrects else 'forecast'}",
        )(hidden)
        if spec.quantiles:
            raw = keras.layers.Reshape((spec.horizon, outputs), name=f"{prefix}per_quantile")(raw)
            raw = layers.MonotoneQuantiles(spec.quantiles.index(0.5), name=f"{prefix}quantiles")(
                raw
            )
        if spread is not None:
            base = reference if reference is not None else level
            return layers.Rescale(name=f"{prefix}rescaled")([base, spread, raw])
        if reference is not None:
            return layers.AddBase(name=f"{prefix}plus_reference")([reference, raw])
        return raw

    if spec.ensemble_size == 1:
        output = member("")
    else:
        members = [member(f"m{index}_") for index in range(spec.ensemble_size)]
        output = layers.StackMembers(name="members")(members)
    model = keras.Model(window, output, name=f"lstm_{spec.preset}")
    model.compile(optimizer=_optimizer(spec), loss=_loss(spec))
    return model


def serving_model(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """The model to save and serve: the median over the ensemble's members (the model itself
    for one member). It shares the trained model's layers and weights."""
    if spec.ensemble_size == 1:
        return model
    import keras

    from lstm_model import layers

    median = layers.MemberMedian(name="forecast")(model.outputs[0])
    return keras.Model(model.inputs, median, name=f"{model.name}_median")


def calibration_factors(
    actual: np.ndarray, forecasts: np.ndarray, quantiles: Sequence[float]
) -> np.ndarray:
    """(Q,) factors that stretch each quantile's distance from the median so that, on these
    windows, a share q of the actuals lies at or below quantile q (the median's factor is 1).

    `actual` is (n, horizon), `forecasts` (n, horizon, Q). Ratios of distances do not depend on
    a window's level or scale, so scaled and original units give the same factors. A quantile
    with no usable distance (all equal to the median) keeps factor 1; factors are never negative,
    so no quantile crosses the median.
    """
    quantiles = list(quantiles)
    middle = quantiles.index(0.5)
    median = forecasts[:, :, middle]
    factors = np.ones(len(quantiles))
    for k, q in enumerate(quantiles):
        distance = forecasts[:, :, k] - median
        usable = np.isfinite(actual) & (np.abs(distance) > 1e-12)
        if k == middle or not usable.any():
            continue
        ratio = (actual[usable] - median[usable]) / distance[usable]
        # above the median y <= m + f d holds when ratio <= f; below it, when ratio >= f
        level = q if q > 0.5 else 1.0 - q
        factors[k] = max(float(np.quantile(ratio, level)), 0.0)
    return factors


def calibrated(model: keras.Model, spec: ModelSpec, factors: Sequence[float]) -> keras.Model:
    """The serving `model` with its quantiles stretched by `factors` (see calibration_factors)."""
    import keras

    from lstm_model import layers

    layer = layers.QuantileCalibration(spec.quantiles.index(0.5), factors, name="calibration")
    return keras.Model(model.inputs, layer(model.outputs[0]), name=f"{model.name}_calibrated")


def _encoder(
    spec: ModelSpec, past: keras.KerasTensor, seeded: Any, layer_seeds: Any, prefix: str
) -> keras.KerasTensor:
    """The LSTM stack over the past rows, with Dropout as the preset says."""
    import keras

    hidden = past
    with_dropout = spec.dropout > 0 or spec.preset == "stacked"
    for depth, units in enumerate(spec.units):
        hidden = keras.layers.LSTM(
            units,
            activation=spec.activation,
            return_sequences=depth < len(spec.units) - 1,
            kernel_initializer=seeded(keras.initializers.GlorotUniform),
            recurrent_initializer=seeded(keras.initializers.Orthogonal),
            name=f"{prefix}lstm_{depth}",
        )(hidden)
        if with_dropout:
            dropout_seed = next(layer_seeds) if layer_seeds is not None else None
            hidden = keras.layers.Dropout(
                spec.dropout, seed=dropout_seed, name=f"{prefix}dropout_{depth}"
            )(hidden)
    return hidden


def _loss(spec: ModelSpec) -> Any:
    """Keras's own loss for a single point model; ours when quantiles or members need it."""
    if not spec.quantiles and spec.ensemble_size == 1:
        return spec.loss
    from lstm_model.layers import ForecastLoss

    return ForecastLoss(spec.loss, spec.quantiles, members=spec.ensemble_size > 1)


def _optimizer(spec: ModelSpec) -> keras.optimizers.Optimizer:
    import keras

    if spec.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=spec.learning_rate)
    return keras.optimizers.Adam(learning_rate=spec.learning_rate)
