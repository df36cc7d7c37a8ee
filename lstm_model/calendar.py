"""Calendar features from timestamps: known for any date, so the model may read them over the
horizon (futr features), for history and future rows alike from this one function.

The local calendar (wall-clock hour, date, weekday) is taken in the source's time zone, so hourly
data keeps "8 am" at 8 am across a daylight-saving change and a holiday is flagged on its local
date. Cyclic features are sin/cos pairs, so December sits next to January and 23:00 next to 0:00.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries import offsets
from pandas.tseries.frequencies import to_offset

PREFIX = "cal_"
HOLIDAY = "cal_holiday"
_DAY_NS = 24 * 3600 * 10**9

# Which cycles each kind of grid gets: the ones that vary from step to step. A daily grid's hour
# is always 0, a monthly grid's weekday is noise.
_CYCLES = {
    "subdaily": ("hod", "dow"),
    "daily": ("dow", "doy"),
    "weekly": ("doy",),
    "monthly": ("month",),
}


def grid_kind(frequency: str) -> str:
    """subdaily, daily, weekly or monthly (months, quarters, years): which cycles apply."""
    offset = to_offset(frequency)
    if isinstance(offset, offsets.Tick):
        return "subdaily" if offset.nanos < _DAY_NS else "daily"
    if isinstance(offset, offsets.Day | offsets.BusinessDay | offsets.CustomBusinessDay):
        return "daily"
    if isinstance(offset, offsets.Week):
        return "weekly"
    return "monthly"


def calendar_columns(frequency: str, holidays_country: str | None = None) -> list[str]:
    """The `cal_*` column names `calendar_features` returns, known from the settings alone."""
    names = [
        f"{PREFIX}{cycle}_{part}"
        for cycle in _CYCLES[grid_kind(frequency)]
        for part in ("sin", "cos")
    ]
    return [*names, HOLIDAY] if holidays_country else names


def _local_times(ds: pd.Series | pd.DatetimeIndex | Sequence, timezone: str) -> pd.DatetimeIndex:
    """Wall-clock times in `timezone` (naive timestamps are read as UTC instants)."""
    index = pd.DatetimeIndex(ds)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.tz_convert(timezone).tz_localize(None)


def _cycle_position(local: pd.DatetimeIndex, cycle: str) -> np.ndarray:
    """Where each time lies in its cycle, as a fraction in [0, 1)."""
    if cycle == "hod":
        return (local.hour + local.minute / 60 + local.second / 3600).to_numpy() / 24
    if cycle == "dow":
        return local.day_of_week.to_numpy() / 7
    if cycle == "doy":
        days = np.where(local.is_leap_year, 366, 365)
        return (local.day_of_year.to_numpy() - 1) / days
    return (local.month.to_numpy() - 1) / 12


def holiday_flags(
    local: pd.DatetimeIndex, country: str, subdivision: str | None = None
) -> np.ndarray:
    """1.0 where the local date is a public holiday of `country` (and `subdivision`), else 0."""
    import holidays  # only configs that ask for holidays pay its import

    if not len(local):
        return np.zeros(0)
    years = range(int(local.year.min()), int(local.year.max()) + 1)
    calendar = holidays.country_holidays(country, subdiv=subdivision, years=years)
    days = pd.DatetimeIndex(sorted(calendar.keys()))
    return local.normalize().isin(days).astype(np.float64)


def calendar_features(
    ds: pd.Series | pd.DatetimeIndex,
    frequency: str,
    timezone: str,
    holidays_country: str | None = None,
    holidays_subdivision: str | None = None,
) -> pd.DataFrame:
    """float32 `cal_*` columns for timestamps `ds` (UTC instants or zone-aware), on the local
    calendar of `timezone`; indexed like `ds` when it is a Series, so it can be joined."""
    local = _local_times(ds, timezone)
    columns: dict[str, np.ndarray] = {}
    for cycle in _CYCLES[grid_kind(frequency)]:
        angle = 2 * np.pi * _cycle_position(local, cycle)
        columns[f"{PREFIX}{cycle}_sin"] = np.sin(angle)
        columns[f"{PREFIX}{cycle}_cos"] = np.cos(angle)
    if holidays_country:
        columns[HOLIDAY] = holiday_flags(local, holidays_country, holidays_subdivision)
    index = ds.index if isinstance(ds, pd.Series) else pd.RangeIndex(len(local))
    frame = pd.DataFrame(columns, index=index).astype(np.float32)
    return frame[calendar_columns(frequency, holidays_country)]
