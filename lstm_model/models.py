"""Keras LSTM forecasters: one frozen `ModelSpec` describes a model, `build_model` compiles it.

Every model maps a window of `look_back` rows by `n_features` columns (the target is column 0)
to the next `horizon` target values with one direct multi-step head, `Dense(horizon)`: all steps
come out of one forward pass, so errors do not compound as in recursive one-step forecasting.

The presets reproduce the seed tutorial's three designs; `custom` is any stack of LSTM layers.
Keras is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    import keras

Preset = Literal["univariate", "multivariate", "stacked", "custom"]
Activation = Literal["tanh", "relu"]
Loss = Literal["mse", "mae", "huber"]
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

    def __post_init__(self) -> None:
        # Config files give lists; a tuple keeps the spec hashable and immutable.
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
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
        if self.preset in _SINGLE_LAYER_PRESETS and len(self.units) != 1:
            raise ValueError(
                f"preset {self.preset!r} is one LSTM layer, got units={self.units}; "
                "use preset 'stacked' or 'custom' for several layers"
            )

    @property
    def feature_index(self) -> int | None:
        """Input column(s) the model reads: 0 (the target) for `univariate`, else all (None)."""
        return 0 if self.preset == "univariate" else None


def build_model(spec: ModelSpec, seed: int | None = None) -> keras.Model:
    """A compiled Keras model for `spec`: (batch, look_back, n_features) -> (batch, horizon).

    With a `seed`, every initializer and Dropout layer gets its own seed derived from it, so
    the initial weights and dropout masks are reproducible even when other threads of the
    process (a Prefect client, say) draw from Python's global `random`, which Keras's
    unseeded initializers would otherwise share with them.
    """
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    layer_seeds = iter(np.random.default_rng(seed).integers(1, 2**31 - 1, size=64).tolist())

    def seeded(initializer: type) -> Any:
        return initializer(seed=next(layer_seeds)) if seed is not None else initializer()

    inputs = keras.Input(shape=(spec.look_back, spec.n_features), name="window")
    hidden = inputs
    with_dropout = spec.dropout > 0 or spec.preset == "stacked"
    for depth, units in enumerate(spec.units):
        hidden = keras.layers.LSTM(
            units,
            activation=spec.activation,
            return_sequences=depth < len(spec.units) - 1,
            kernel_initializer=seeded(keras.initializers.GlorotUniform),
            recurrent_initializer=seeded(keras.initializers.Orthogonal),
            name=f"lstm_{depth}",
        )(hidden)
        if with_dropout:
            dropout_seed = next(layer_seeds) if seed is not None else None
            hidden = keras.layers.Dropout(spec.dropout, seed=dropout_seed, name=f"dropout_{depth}")(
                hidden
            )
    if spec.reference_season is None:
        outputs = keras.layers.Dense(
            spec.horizon,
            kernel_initializer=seeded(keras.initializers.GlorotUniform),
            name="forecast",
        )(hidden)
    else:
        correction = keras.layers.Dense(
            spec.horizon, kernel_initializer="zeros", name="correction"
        )(hidden)
        outputs = keras.layers.Add(name="forecast")([seasonal_reference(spec, inputs), correction])
    model = keras.Model(inputs, outputs, name=f"lstm_{spec.preset}")
    model.compile(optimizer=_optimizer(spec), loss=spec.loss)
    return model


def seasonal_reference(spec: ModelSpec, inputs: keras.KerasTensor) -> keras.KerasTensor:
    """The seasonal-naive forecast of the target as a frozen linear layer (no Lambda layer, so
    the model still saves and loads in Keras's safe mode): step h repeats the input step
    look_back - season + h % season of column 0."""
    import keras

    season = int(spec.reference_season or 1)
    selector = np.zeros((spec.look_back * spec.n_features, spec.horizon), dtype=np.float32)
    for step in range(spec.horizon):
        selector[(spec.look_back - season + step % season) * spec.n_features, step] = 1.0
    flat = keras.layers.Flatten(name="window_flat")(inputs)
    reference = keras.layers.Dense(
        spec.horizon, use_bias=False, trainable=False, name="seasonal_reference"
    )
    output = reference(flat)
    reference.set_weights([selector])
    return output


def _optimizer(spec: ModelSpec) -> keras.optimizers.Optimizer:
    import keras

    if spec.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=spec.learning_rate)
    return keras.optimizers.Adam(learning_rate=spec.learning_rate)
