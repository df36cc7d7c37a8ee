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
        """The series the scaler knows (those with training rows), sorted."""
        return tuple(str(uid) for uid in self.unique_ids)

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
    """Fit per-series statistics of `columns` on the rows given (pass training rows only)."""
    if method not in METHODS:
        raise ValueError(f"scaling method must be one of {METHODS}, got {method!r}")
    columns = tuple(columns)
    missing = [c for c in (ID_COLUMN, *columns) if c not in frame.columns]
    if missing:
        raise KeyError(f"frame lacks column(s) {missing} to fit the scaler on")
    grouped = frame[[ID_COLUMN, *columns]].astype({c: np.float64 for c in columns})
    grouped = grouped.groupby(ID_COLUMN, sort=True, observed=True)[list(columns)]
    if method == "standard":
        offset, spread = grouped.mean(), grouped.std(ddof=0)
    else:
        offset = grouped.min()
        spread = grouped.max() - offset
    offset_values = offset.to_numpy(dtype=np.float64)
    spread_values = spread.reindex(offset.index).to_numpy(dtype=np.float64)
    if not np.isfinite(offset_values).all():
        series, column = np.argwhere(~np.isfinite(offset_values))[0]
        raise ValueError(
            f"cannot fit the scaler: series {offset.index[series]!r} has no finite training "
            f"value in column {columns[column]!r}"
        )
    constant = spread_values <= _RELATIVE_ZERO_SPREAD * np.maximum(1.0, np.abs(offset_values))
    return SeriesScaler(
        method=method,
        columns=columns,
        unique_ids=offset.index.to_numpy(dtype=object).astype(str),
        offset=offset_values,
        scale=np.where(constant, 1.0, spread_values),
    )
