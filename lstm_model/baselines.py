"""Naive and seasonal-naive forecasts on the same windows the model sees.

Both take the target column of the window inputs, shape (n, look_back), and return
(n, horizon), so a model and its baselines are scored on exactly the same windows. A model
that does not beat the seasonal-naive forecast is not worth deploying.
"""

from __future__ import annotations

import numpy as np


def naive_forecast(inputs_target: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value, repeated for every step of the horizon."""
    inputs_target = _as_windows(inputs_target)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return np.repeat(inputs_target[:, -1:], horizon, axis=1)


def seasonal_naive_forecast(inputs_target: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last `season` observed values, repeated (step h gets the value one season before).

    Needs look_back >= season: the window must hold one whole season.
    """
    inputs_target = _as_windows(inputs_target)
    look_back = inputs_target.shape[1]
    if horizon < 1 or season < 1:
        raise ValueError(f"horizon and season must be >= 1, got {horizon} and {season}")
    if look_back < season:
        raise ValueError(f"seasonal naive needs look_back >= season, got {look_back} < {season}")
    columns = look_back - season + np.arange(horizon) % season
    return inputs_target[:, columns]


def _as_windows(inputs_target: np.ndarray) -> np.ndarray:
    inputs_target = np.asarray(inputs_target)
    if inputs_target.ndim != 2 or inputs_target.shape[1] < 1:
        raise ValueError(f"inputs_target must be (n, look_back), got {inputs_target.shape}")
    return inputs_target
