"""Issue 12: ordinary series names pass the default id rule, and a rejection names the distinct
offending series (a count and the first few), not one line per row; a long gap names its series,
the missing dates and the remedies."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.validate import validate_frame
from tests.test_validate import SOURCE, failed, make_config, rejection, series_frame

ORDINARY = ["Main Street (North)", "O'Brien & Sons, Ltd.", "Zürich HB", "7.0", "-lead", "a,b"]


@pytest.mark.parametrize("name", ORDINARY)
def test_default_id_pattern_accepts_ordinary_names(name):
    validated, report = validate_frame(series_frame({"A": 16, name: 16}), make_config(), SOURCE)
    assert report.passed
    assert name in set(validated["unique_id"])


@pytest.mark.parametrize(
    "name",
    ["", " lead", "trail ", "..", "a/b", "a\\b", "nul\x00id", "line\n", "\u202eevil", "x" * 129],
)
def test_default_id_pattern_still_refuses_dangerous_ids(name):
    error = rejection(series_frame({"A": 8, name: 8}))
    assert failed(error) == ["expect_column_values_to_match_regex"]


def test_id_failure_names_each_bad_series_once_with_a_count():
    bad = ["a/1", "a/2", "a/3", "a/4"]
    error = rejection(series_frame({"good": 400, **dict.fromkeys(bad, 400)}))
    lines = [line for line in str(error).splitlines() if "validation.id_pattern" in line]
    assert len(lines) == 1
    assert "(1600 failing in 4 series)" in lines[0]
    for name in bad:  # each bad series named once, at its first row
        assert lines[0].count(repr(name)) == 1
        assert f"series {name!r} at 2024-01-01" in lines[0]
    assert len(error.report.failures[0].rows) == 4


def test_value_failure_names_the_first_few_distinct_series():
    frame = series_frame({f"s{i}": 30 for i in range(8)})
    frame["y"] = float("nan")
    error = rejection(frame, make_config(max_failed_rows_shown=3))
    check = next(c for c in error.report.failures if c.column == "y")
    assert check.unexpected_count == 240 and check.series_count == 8
    assert [row.unique_id for row in check.rows] == ["s0", "s1", "s2"]
    assert "(240 failing in 8 series)" in str(error)


def test_long_gap_names_the_series_its_dates_and_the_remedies():
    frame = series_frame({"A": 40, "B": 40})
    drop = (frame["unique_id"] == "B") & frame["ds"].between(
        pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-14", tz="UTC")
    )
    drop |= (frame["unique_id"] == "B") & (frame["ds"] == pd.Timestamp("2024-01-02", tz="UTC"))
    error = rejection(frame[~drop].reset_index(drop=True))
    assert failed(error) == ["gaps_at_most_max_gap_fill"]
    message = str(error)
    assert "(1 failing in 1 series)" in message
    assert (
        "series 'B' at 2024-01-05 to 2024-01-14 (10 missing steps; trim it to start at "
        "2024-01-15)" in message
    )
    assert "raise validation.max_gap_fill to 10" in message
    assert "drop the series from the source" in message
