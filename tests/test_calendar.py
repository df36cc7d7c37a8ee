"""Calendar features: local wall time and local dates across daylight saving, holidays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_model.calendar import calendar_columns, calendar_features

CHICAGO = "America/Chicago"


def hourly(start_utc: str, end_utc: str) -> pd.Series:
    return pd.Series(pd.date_range(start_utc, end_utc, freq="h", tz="UTC"))


def cyclic(value: float, period: float) -> tuple[float, float]:
    angle = 2 * np.pi * value / period
    return float(np.sin(angle)), float(np.cos(angle))


def row_at(features: pd.DataFrame, ds: pd.Series, instant: str) -> pd.Series:
    return features.loc[ds[ds == pd.Timestamp(instant)].index[0]]


def assert_cycle(row: pd.Series, name: str, value: float, period: float) -> None:
    sin, cos = cyclic(value, period)
    assert row[f"cal_{name}_sin"] == pytest.approx(sin, abs=1e-6)
    assert row[f"cal_{name}_cos"] == pytest.approx(cos, abs=1e-6)


def test_columns_follow_the_frequency_and_are_float32() -> None:
    assert calendar_columns("h") == ["cal_hod_sin", "cal_hod_cos", "cal_dow_sin", "cal_dow_cos"]
    assert calendar_columns("D", "US") == [
        "cal_dow_sin",
        "cal_dow_cos",
        "cal_doy_sin",
        "cal_doy_cos",
        "cal_holiday",
    ]
    assert calendar_columns("MS") == ["cal_month_sin", "cal_month_cos"]
    assert calendar_columns("W-SUN") == ["cal_doy_sin", "cal_doy_cos"]
    ds = hourly("2024-01-01", "2024-01-02")
    features = calendar_features(ds, "h", CHICAGO, "US")
    assert list(features.columns) == calendar_columns("h", "US")
    assert (features.dtypes == np.float32).all()
    assert features.index.equals(ds.index)


def test_hour_of_day_follows_local_wall_time_across_spring_forward() -> None:
    ds = hourly("2024-03-10 04:00", "2024-03-10 10:00")
    features = calendar_features(ds, "h", CHICAGO)
    # 07:00 UTC is 01:00 CST; one hour later the clocks jump to 03:00 CDT (02:00 never happens)
    assert_cycle(row_at(features, ds, "2024-03-10 07:00Z"), "hod", 1, 24)
    assert_cycle(row_at(features, ds, "2024-03-10 08:00Z"), "hod", 3, 24)
    assert_cycle(row_at(features, ds, "2024-03-10 10:00Z"), "hod", 5, 24)
    # 05:00 UTC is still Saturday 23:00 in Chicago; 06:00 UTC is Sunday 00:00
    assert_cycle(row_at(features, ds, "2024-03-10 05:00Z"), "dow", 5, 7)
    assert_cycle(row_at(features, ds, "2024-03-10 05:00Z"), "hod", 23, 24)
    assert_cycle(row_at(features, ds, "2024-03-10 06:00Z"), "dow", 6, 7)


def test_hour_of_day_repeats_across_fall_back() -> None:
    ds = hourly("2024-11-03 05:00", "2024-11-03 09:00")
    features = calendar_features(ds, "h", CHICAGO)
    first = row_at(features, ds, "2024-11-03 06:00Z")  # 01:00 CDT
    second = row_at(features, ds, "2024-11-03 07:00Z")  # 01:00 CST, the repeated hour
    assert_cycle(first, "hod", 1, 24)
    assert_cycle(second, "hod", 1, 24)
    assert_cycle(row_at(features, ds, "2024-11-03 08:00Z"), "hod", 2, 24)
    assert_cycle(row_at(features, ds, "2024-11-03 05:00Z"), "hod", 0, 24)
    assert_cycle(row_at(features, ds, "2024-11-03 05:00Z"), "dow", 6, 7)  # Sunday


def test_holidays_follow_the_local_date() -> None:
    ds = hourly("2024-07-04 00:00", "2024-07-05 12:00")
    flags = calendar_features(ds, "h", CHICAGO, "US")["cal_holiday"]
    local = ds.dt.tz_convert(CHICAGO)
    on_the_fourth = (local.dt.month == 7) & (local.dt.day == 4)
    # July 4 local: 2024-07-04 05:00Z to 2024-07-05 04:00Z; 03:00Z on July 5 is still July 4
    assert row_at(flags.to_frame(), ds, "2024-07-05 03:00Z")["cal_holiday"] == 1.0
    assert row_at(flags.to_frame(), ds, "2024-07-04 04:00Z")["cal_holiday"] == 0.0
    np.testing.assert_array_equal(flags.to_numpy(), on_the_fourth.to_numpy(dtype=np.float32))
    assert flags.sum() == 24


def test_thanksgiving_and_a_subdivision_holiday() -> None:
    # local midnights in Chicago, as validated daily rows hold them
    days = pd.date_range("2024-02-10", "2024-11-30", freq="D", tz=CHICAGO).tz_convert("UTC")
    ds = pd.Series(days)
    national = calendar_features(ds, "D", CHICAGO, "US")["cal_holiday"]
    illinois = calendar_features(ds, "D", CHICAGO, "US", "IL")["cal_holiday"]
    local_day = ds.dt.tz_convert(CHICAGO).dt.strftime("%Y-%m-%d")
    flagged_us = set(local_day[national == 1])
    flagged_il = set(local_day[illinois == 1])
    assert {"2024-07-04", "2024-11-28", "2024-05-27"} <= flagged_us  # Thanksgiving, Memorial Day
    # Casimir Pulaski Day (first Monday of March) and Lincoln's Birthday are Illinois holidays
    assert "2024-03-04" not in flagged_us and "2024-03-04" in flagged_il
    assert "2024-02-12" not in flagged_us and "2024-02-12" in flagged_il
    assert flagged_us <= flagged_il
    assert "2024-03-05" not in flagged_il


def test_daily_features_at_local_midnight_across_daylight_saving() -> None:
    days = pd.date_range("2024-03-08", "2024-03-12", freq="D", tz=CHICAGO)
    ds = pd.Series(days.tz_convert("UTC"))  # 06:00Z before the change, 05:00Z after
    assert ds.dt.hour.tolist() == [6, 6, 6, 5, 5]
    features = calendar_features(ds, "D", CHICAGO)
    for position, local in enumerate(days):
        row = features.iloc[position]
        assert_cycle(row, "dow", local.day_of_week, 7)
        assert_cycle(row, "doy", local.day_of_year - 1, 366)  # 2024 is a leap year
    # the same instants read in UTC would be the same dates here, but not at 23:00 local
    late = pd.Series(pd.DatetimeIndex(["2024-03-10 23:00"], tz=CHICAGO).tz_convert("UTC"))
    assert_cycle(calendar_features(late, "D", CHICAGO).iloc[0], "dow", 6, 7)  # Sunday locally


def test_monthly_features_and_naive_input_read_as_utc() -> None:
    ds = pd.Series(pd.date_range("2023-01-01", periods=12, freq="MS"))  # naive: UTC instants
    features = calendar_features(ds, "MS", "UTC")
    for month in range(12):
        assert_cycle(features.iloc[month], "month", month, 12)
