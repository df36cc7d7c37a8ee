"""Per-series, per-column scaling: one fit/transform/inverse object saved with the model.

Each series gets its own statistics (as in Darts and Nixtla), so a station with 20k riders a day
and one with 500 both reach the network on the same scale. The statistics are fitted on training
rows only; validation and test rows are transformed with them, never used to fit them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

ScalingMethod = Literal["standard", "minmax"]
METHODS: tuple[str, ...] = ("standard", "minmax")
ID_COLUMN = "unique_id"

# A spread this small relative to the level is floating-point noise of a constant column
# (np.std of [0.1, 0.1, 0.1] is ~1e-17, not 0): dividing by it would blow values up to ~1e16.
_RELATIVE_ZERO_SPREAD = 1e-12

MAX_STATISTIC = 1e30
"""Largest |offset| or scale a series may have. The model reads and writes float32 (largest
3.4e38): a forecast is the model's output times the scale plus the offset, so statistics beyond
this leave too little head room for an output of a few units, and no real series lives there
(1e30 riders, euros or kWh); such statistics come from corrupt values (1e300, a unit error)."""


@dataclass(frozen=True, eq=False)
class SeriesScaler:
    """`scaled = (x - offset) / scale`, with one (offset, scale) per series and column.

    standard: offset = mean, scale = population std; minmax: offset = min, scale = max - min.
    A constant column gets scale 1, so it maps to 0 instead of dividing by zero.
    """

    method: ScalingMethod
    columns: tuple[str, ...]
    unique_ids: np.ndarray  # (series,) str, sorted
    offset: np.ndarray  # (series, columns) float64
    scale: np.ndarray  # (series, columns) float64, > 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"scaling method must be one of {METHODS}, got {self.method!r}")
        shape = (len(self.unique_ids), len(self.columns))
        if self.offset.shape != shape or self.scale.shape != shape:
            raise ValueError(
                f"offset {self.offset.shape} and scale {self.scale.shape} must both be {shape}"
            )
        if len(set(self.unique_ids.tolist())) != len(self.unique_ids):
            raise ValueError("scaler series ids must be unique")
        if not (np.all(np.isfinite(self.offset)) and np.all(self.scale > 0)):
            raise ValueError("scaler statistics must be finite with positive scales")

    # -- lookups ------------------------------------------------------------------------------
    @property
    def series(self) -> tuple[str, ...]:
        """The series the scaler can scale (those with training rows and usable statistics:
        see `unusable`), sorted: a forecaster supports only these."""
        unusable = self.unusable()
        return tuple(str(uid) for uid in self.unique_ids if str(uid) not in unusable)

    def series_index(self, unique_ids: np.ndarray | pd.Series | Sequence[str]) -> np.ndarray:
        """Row of each id in the statistics; unknown series raise a KeyError that names them."""
        index = pd.Index(self.unique_ids).get_indexer(pd.Index(np.asarray(unique_ids)))
        if (index < 0).any():
            unknown = pd.unique(np.asarray(unique_ids)[index < 0])
            shown = ", ".join(repr(str(uid)) for uid in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise KeyError(
                f"series {shown}{more} not seen when the scaler was fitted "
                f"({len(self.unique_ids)} series known): it had no training rows"
            )
        return index

    def unusable(self) -> dict[str, str]:
        """Series whose statistics cannot bring a forecast back to finite original units, with
        the reason: a forecast sets them aside (a scaler saved before training left such series
        out may still hold them)."""
        return unusable_statistics(self.unique_ids, self.columns, self.offset, self.scale)

    def column_index(self, column: str) -> int:
        try:
            return self.columns.index(column)
        except ValueError:
            raise KeyError(
                f"column {column!r} is not scaled; scaled: {list(self.columns)}"
            ) from None

    # -- transforms ---------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with the scaled columns standardized per series (float64)."""
        rows, values = self._rows_and_values(frame)
        return self._with_values(frame, (values - self.offset[rows]) / self.scale[rows])

    def inverse_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with the scaled columns back in original units (float64)."""
        rows, values = self._rows_and_values(frame)
        return self._with_values(frame, values * self.scale[rows] + self.offset[rows])

    def inverse_target(
        self, values: np.ndarray, unique_ids: np.ndarray | Sequence[str], column: str = "y"
    ) -> np.ndarray:
        """Original units of scaled `values` (n,) or (n, horizon), row i belonging to series i.

        The result is float64 (the statistics are), whatever the dtype of `values`."""
        values = np.asarray(values)
        rows = self.series_index(unique_ids)
        if values.shape[0] != rows.size:
            raise ValueError(f"{values.shape[0]} rows of values but {rows.size} series ids")
        col = self.column_index(column)
        # Broadcast one (scale, offset) per row over any trailing horizon axes.
        shape = (rows.size,) + (1,) * (values.ndim - 1)
        scale = self.scale[rows, col].reshape(shape)
        offset = self.offset[rows, col].reshape(shape)
        return values * scale + offset

    def _rows_and_values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        missing = [c for c in (ID_COLUMN, *self.columns) if c not in frame.columns]
        if missing:
            raise KeyError(f"frame lacks column(s) {missing} needed by the scaler")
        rows = self.series_index(frame[ID_COLUMN].to_numpy())
        return rows, frame[list(self.columns)].to_numpy(dtype=np.float64)

    def _with_values(self, frame: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
        out = frame.copy()
        out[list(self.columns)] = values
        return out

    # -- persistence --------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Tidy statistics, one row per (series, column): saved as Parquet next to a model."""
        n_series, n_columns = self.offset.shape
        return pd.DataFrame(
            {
                ID_COLUMN: np.repeat(self.unique_ids.astype(str), n_columns),
                "column": np.tile(np.asarray(self.columns, dtype=str), n_series),
                "method": np.full(n_series * n_columns, self.method),
                "offset": self.offset.reshape(-1),
                "scale": self.scale.reshape(-1),
            }
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SeriesScaler:
        """Inverse of `to_frame`; series and columns keep their order of first appearance."""
        methods = pd.unique(frame["method"])
        if len(methods) != 1:
            raise ValueError(f"scaler table must hold one method, found {list(methods)}")
        series = pd.unique(frame[ID_COLUMN])
        columns = tuple(str(c) for c in pd.unique(frame["column"]))

        def wide(statistic: str) -> np.ndarray:
            table = frame.pivot(index=ID_COLUMN, columns="column", values=statistic)
            return table.reindex(index=series, columns=list(columns)).to_numpy(dtype=np.float64)

        return cls(
            method=str(methods[0]),  # type: ignore[arg-type]
            columns=columns,
            unique_ids=np.asarray(series, dtype=object).astype(str),
            offset=wide("offset"),
            scale=wide("scale"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Python floats round-trip exactly through JSON)."""
        return {
            "method": self.method,
            "columns": list(self.columns),
            "unique_ids": [str(uid) for uid in self.unique_ids],
            "offset": self.offset.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> SeriesScaler:
        n_columns = len(payload["columns"])
        return cls(
            method=payload["method"],
            columns=tuple(payload["columns"]),
            unique_ids=np.asarray(payload["unique_ids"], dtype=str),
            offset=np.asarray(payload["offset"], dtype=np.float64).reshape(-1, n_columns),
            scale=np.asarray(payload["scale"], dtype=np.float64).reshape(-1, n_columns),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeriesScaler):
            return NotImplemented
        return (
            self.method == other.method
            and self.columns == other.columns
            and np.array_equal(self.unique_ids, other.unique_ids)
            and np.array_equal(self.offset, other.offset)
            and np.array_equal(self.scale, other.scale)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: equal by value, not hashable


def fit_scaler(
    frame: pd.DataFrame, columns: Sequence[str], method: ScalingMethod = "standard"
) -> SeriesScaler:
    """Fit per-series statistics of `columns` on the rows given (pass training rows only).

    Raises ValueError naming a series whose statistics are unusable (see `fit_usable_scaler`)."""
    scaler, unusable = fit_usable_scaler(frame, columns, method)
    if unusable:
        series, why = next(iter(unusable.items()))
        raise ValueError(f"cannot fit the scaler: series {series!r}: {why}")
    return scaler


def fit_usable_scaler(
    frame: pd.DataFrame, columns: Sequence[str], method: ScalingMethod = "standard"
) -> tuple[SeriesScaler, dict[str, str]]:
    """Per-series statistics of `columns`, leaving out (with the reason, by id) every series
    whose statistics are not finite or beyond MAX_STATISTIC: training goes on without them."""
    if method not in METHODS:
        raise ValueError(f"scaling method must be one of {METHODS}, got {method!r}")
    columns = tuple(columns)
    missing = [c for c in (ID_COLUMN, *columns) if c not in frame.columns]
    if missing:
        raise KeyError(f"frame lacks column(s) {missing} to fit the scaler on")
    ids = frame[ID_COLUMN]
    values = frame[list(columns)].astype(np.float64)
    # Statistics of values divided by their series' largest |value|, scaled back after: squares
    # of 1e300 overflow to inf, so a plain std of a 1e300 / -1e300 pair would be inf, not 1e300.
    peak = values.abs().groupby(ids, sort=True, observed=True).max()
    peak = peak.where((peak > 0) & np.isfinite(peak), 1.0)
    grouped = (values / peak.reindex(ids.to_numpy()).to_numpy()).groupby(ids.to_numpy(), sort=True)
    if method == "standard":
        offset, spread = grouped.mean() * peak.to_numpy(), grouped.std(ddof=0) * peak.to_numpy()
    else:
        offset = grouped.min() * peak.to_numpy()
        spread = (grouped.max() - grouped.min()) * peak.to_numpy()
    unique_ids = offset.index.to_numpy(dtype=object).astype(str)
    offset_values = offset.to_numpy(dtype=np.float64)
    spread_values = spread.reindex(offset.index).to_numpy(dtype=np.float64)
    unusable = unusable_statistics(unique_ids, columns, offset_values, spread_values)
    keep = ~np.isin(unique_ids, list(unusable))
    offset_values, spread_values = offset_values[keep], spread_values[keep]
    constant = spread_values <= _RELATIVE_ZERO_SPREAD * np.maximum(1.0, np.abs(offset_values))
    scaler = SeriesScaler(
        method=method,
        columns=columns,
        unique_ids=unique_ids[keep],
        offset=offset_values,
        scale=np.where(constant, 1.0, spread_values),
    )
    return scaler, unusable


def unusable_statistics(
    unique_ids: np.ndarray, columns: Sequence[str], offset: np.ndarray, scale: np.ndarray
) -> dict[str, str]:
    """Series (rows of `offset` and `scale`) whose statistics are not finite or beyond
    MAX_STATISTIC, with the first such statistic as the reason."""
    reasons: dict[str, str] = {}
    for name, values in (("offset", offset), ("scale", scale)):
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(values) <= MAX_STATISTIC)  # NaN compares False: bad too
        for row, col in zip(*np.nonzero(bad), strict=True):
            series = str(unique_ids[row])
            if series in reasons:
                continue
            value, column = float(values[row, col]), columns[col]
            if np.isnan(value) and name == "offset":
                reasons[series] = f"no finite training value in column {column!r}"
            elif np.isfinite(value):
                reasons[series] = (
                    f"column {column!r} has a {name} of {value:.3g}, beyond {MAX_STATISTIC:g} "
                    "(absurd training values)"
                )
            else:
                reasons[series] = f"column {column!r} has a {name} of {value} (not finite)"
    return reasons
