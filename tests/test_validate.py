"""Validation: what is repaired and counted, what is rejected and how the rejection reads."""

from __future__ import annotations

import json
import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.config import (
    FeaturesConfig,
    PipelineConfig,
    SourceConfig,
    StorageConfig,
    ValidationConfig,
    WindowConfig,
)
from tasks.ingest import read_source
from tasks.storage import ArtifactStore
from tasks.validate import (
    DataValidationError,
    report_markdown,
    validate_frame,
    validate_task,
    validation_key,
)

BUNDLED_DATA = Path(__file__).resolve().parent.parent / "data" / "chicago_l_daily.parquet"
SOURCE = "data/rides.parquet"


def series_frame(
    lengths: dict[str, int] | None = None,
    start: str = "2024-01-01",
    freq: str = "D",
    tz: str = "UTC",
    end: str | None = None,
) -> pd.DataFrame:
    """Tidy series on a regular grid, y rising by one per step, one covariate; all starting at
    `start`, or all ending at `end` when given."""
    parts = []
    for number, (series, length) in enumerate((lengths or {"A": 12, "B": 12}).items()):
        span = {"end": end} if end else {"start": start}
        stamps = pd.date_range(**span, periods=length, freq=freq, tz=tz).tz_convert("UTC")
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": series,
                    "ds": stamps.as_unit("us"),
                    "y": np.arange(length, dtype="float64") + 100 * number,
                    "temp": np.arange(length, dtype="float64") % 7,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).astype({"unique_id": "str"})


def make_config(
    tmp_path: Path | None = None, timezone: str = "UTC", **validation
) -> PipelineConfig:
    return PipelineConfig(
        name="test",
        frequency="D",
        source=SourceConfig(path=SOURCE, hist_exog=["temp"], timezone=timezone),
        features=FeaturesConfig(calendar=False),  # test_covariates.py covers the calendar
        validation=ValidationConfig(**validation),
        window=WindowConfig(look_back=4, horizon=2),
        storage=StorageConfig(root=str((tmp_path or Path("/nonexistent")) / "store")),
    )


def short_window(config: PipelineConfig) -> PipelineConfig:
    """`config` with a window that the validation and test splits of 9 or 10 days can hold."""
    return config.model_copy(update={"window": WindowConfig(look_back=2, horizon=1)})


def rejection(frame: pd.DataFrame, config: PipelineConfig | None = None) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, config or make_config(), SOURCE)
    return caught.value


def failed(error: DataValidationError) -> list[str]:
    return [check.name for check in error.report.failures]


# -- passes and repairs ----------------------------------------------------------------------
def test_clean_frame_passes_unchanged():
    frame = series_frame()
    validated, report = validate_frame(frame, make_config(), SOURCE)
    pd.testing.assert_frame_equal(validated, frame.assign(imputed=False))
    assert report.passed and report.rows_in == report.rows_out == 24 and report.series == 2
    assert report.repairs.model_dump() == dict.fromkeys(report.repairs.model_dump(), 0)
    assert {check.engine for check in report.checks} == {"great_expectations", "pandas"}


def test_unsorted_input_is_sorted_and_counted_not_rejected():
    frame = series_frame()
    shuffled = frame.sample(frac=1, random_state=3)
    validated, report = validate_frame(shuffled, make_config(), SOURCE)
    pd.testing.assert_frame_equal(validated, frame.assign(imputed=False))
    assert report.passed and report.repairs.rows_reordered > 0


def test_exact_duplicates_are_dropped_and_counted():
    frame = series_frame()
    doubled = pd.concat([frame, frame.iloc[[3, 15]]], ignore_index=True)
    validated, report = validate_frame(doubled, make_config(), SOURCE)
    pd.testing.assert_frame_equal(validated, frame.assign(imputed=False))
    assert report.repairs.exact_duplicates_dropped == 2 and report.rows_in == 26


def test_short_gap_is_filled_and_counted():
    frame = series_frame()
    holed = frame.drop(index=[4, 5])  # A misses 2024-01-05 and 2024-01-06
    validated, report = validate_frame(holed, make_config(max_gap_fill=2), SOURCE)
    assert report.repairs.gaps_filled == 1 and report.repairs.steps_filled == 2
    assert report.gaps_per_series == {"A": 1}
    assert "| A | 1 |" in report_markdown(report)
    assert len(validated) == 24
    filled = validated.set_index(["unique_id", "ds"]).loc["A"]
    assert filled.loc[pd.Timestamp("2024-01-05", tz="UTC"), "y"] == 4.0  # linear between 3 and 6
    assert filled.loc[pd.Timestamp("2024-01-06", tz="UTC"), "y"] == 5.0
    assert filled.loc[pd.Timestamp("2024-01-06", tz="UTC"), "temp"] == 3.0  # carried forward
    inserted = [pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-06", tz="UTC")]
    assert filled.index[filled["imputed"]].tolist() == inserted
    assert validated["imputed"].dtype == bool and validated["imputed"].sum() == 2
    assert str(validated["ds"].dtype) == "datetime64[us, UTC]"


def test_daily_grid_follows_local_midnight_across_daylight_saving():
    frame = series_frame(start="2024-03-01", tz="America/Chicago", lengths={"A": 20})
    assert frame["ds"].dt.hour.nunique() == 2  # 06:00 UTC before the switch, 05:00 after
    _, report = validate_frame(frame, make_config(timezone="America/Chicago"), SOURCE)
    assert report.passed


def test_bundled_dataset_slice_validates_cleanly():
    source = SourceConfig(
        path=str(BUNDLED_DATA),
        id_column="series_id",
        time_column="timestamp",
        target_column="target",
        hist_exog=["Bulls_Home", "Cubs_Home"],
        timezone="America/Chicago",
    )
    frame = read_source(source)
    sliced = (
        frame[frame["unique_id"].isin(["Addison", "Polk", "Clinton"])]
        .groupby("unique_id")
        .head(400)
    )
    config = PipelineConfig(source=source, validation=ValidationConfig(y_min=0.0))
    validated, report = validate_frame(sliced, config, str(BUNDLED_DATA))
    assert report.passed and len(validated) == 1200 and report.repairs.gaps_filled == 0


def test_bundled_dataset_validates_cleanly_in_full():
    from tasks.config import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "chicago.toml")
    validated, report = validate_frame(read_source(config.source), config, config.source.path)
    assert report.passed and report.rows_out == 113_680 and report.series == 20
    assert report.repairs.rows_reordered == 0 and report.repairs.steps_filled == 0


# -- rejections --------------------------------------------------------------------------------
def test_empty_frame_is_rejected_although_map_checks_pass_on_it():
    error = rejection(series_frame().iloc[:0])
    assert "expect_table_row_count_to_be_between" in failed(error)
    assert "needs at least one row" in str(error) and SOURCE in str(error)


def test_missing_target_column_is_rejected_and_its_checks_skipped():
    error = rejection(series_frame().drop(columns="y"))
    assert failed(error) == ["expect_column_to_exist"]
    assert "column 'y': must exist" in str(error)
    skipped = [c for c in error.report.checks if c.column == "y" and c.status == "skipped"]
    assert skipped and all(c.detail == "column is missing" for c in skipped)


def test_missing_key_column_is_reported_once_not_as_a_crash():
    error = rejection(series_frame().drop(columns="ds"))
    assert failed(error) == ["expect_column_to_exist"]
    assert "column 'ds': must exist" in str(error)


def test_nan_in_target_is_rejected_naming_series_and_date():
    frame = series_frame()
    frame.loc[14, "y"] = np.nan
    error = rejection(frame)
    assert failed(error) == ["expect_column_values_to_not_be_null"]
    assert (
        "column 'y': must not be null (1 failing in 1 series); first: series 'B' at 2024-01-03 (y=nan)"
        in str(error)
    )


def test_inf_in_target_is_rejected_naming_series_and_date():
    frame = series_frame()
    frame.loc[2, "y"] = np.inf
    frame.loc[20, "y"] = -np.inf
    error = rejection(frame)
    assert failed(error) == ["expect_column_values_to_be_between"]
    message = str(error)
    assert "column 'y': must be finite (no inf or -inf) (2 failing in 2 series)" in message
    assert (
        "series 'A' at 2024-01-03 (y=inf)" in message
        and "series 'B' at 2024-01-09 (y=-inf)" in message
    )


def test_conflicting_duplicates_are_rejected_with_both_values():
    frame = series_frame()
    clash = frame.iloc[[7]].assign(y=99.0)
    error = rejection(pd.concat([frame, clash], ignore_index=True))
    assert failed(error) == ["expect_compound_columns_to_be_unique"]
    assert "column 'unique_id, ds': must be unique" in str(error)
    assert "series 'A' at 2024-01-08 (y=7.0 vs 99.0)" in str(error)


def test_gap_longer_than_allowed_is_rejected_naming_series_and_dates():
    frame = series_frame().drop(index=range(16, 20))  # B misses 2024-01-05 .. 2024-01-08
    error = rejection(frame, make_config(max_gap_fill=3))
    assert failed(error) == ["gaps_at_most_max_gap_fill"]
    assert (
        "series 'B' at 2024-01-05 to 2024-01-08 (4 missing steps; trim it to start at 2024-01-09)"
        in str(error)
    )
    assert error.report.repairs.steps_filled == 0 and error.report.gaps_per_series == {"B": 1}


def test_timestamp_off_the_daily_grid_is_rejected():
    frame = series_frame()
    frame.loc[5, "ds"] += pd.Timedelta(hours=12)
    error = rejection(frame)
    assert failed(error) == ["timestamps_on_frequency_grid"]
    assert "series 'A' at 2024-01-06T12:00:00+00:00" in str(error)


def test_series_shorter_than_a_window_is_rejected_naming_it_and_its_length():
    error = rejection(series_frame({"A": 12, "tiny": 5}))
    assert failed(error) == ["series_long_enough"]
    assert "look_back + horizon = 6" in str(error) and "series 'tiny' (length 5)" in str(error)


def test_forecast_validation_sets_short_series_aside_instead_of_rejecting():
    frame = series_frame({"A": 12, "tiny": 5, "stub": 3}, end="2024-01-12")
    validated, report = validate_frame(frame, make_config(), SOURCE, purpose="forecast")
    assert report.passed
    assert report.set_aside == {"stub": "only 3 steps; a forecast needs 4"}  # tiny has look_back
    assert sorted(validated["unique_id"].unique()) == ["A", "tiny"]
    assert report.rows_out == 17
    assert "Series set aside" in report_markdown(report) and "stub" in report_markdown(report)


def test_series_id_with_path_traversal_is_rejected():
    error = rejection(series_frame({"A": 8, "../x": 8}))
    assert failed(error) == ["expect_column_values_to_match_regex"]
    assert "column 'unique_id': ids must be 1 to 128 characters" in str(error)
    assert "(the default validation.id_pattern)" in str(error)
    assert "series '../x' at 2024-01-01" in str(error)


def test_bounds_and_series_cap_come_from_config():
    frame = series_frame()
    error = rejection(frame, make_config(y_max=50.0, max_series=1))
    assert set(failed(error)) == {
        "expect_column_values_to_be_between",
        "expect_column_unique_value_count_to_be_between",
    }
    assert "must lie within [None, 50.0] (12 failing in 1 series)" in str(error)


def test_extra_expectations_from_config_extend_the_suite():
    extra = [
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "temp", "value_set": [0.0, 1.0]},
        }
    ]
    error = rejection(series_frame(), make_config(extra_expectations=extra))
    assert failed(error) == ["expect_column_values_to_be_in_set"]
    assert "column 'temp'" in str(error)


def test_invalid_extra_expectation_is_a_config_error_not_a_data_error():
    extra = [{"type": "expect_no_such_thing", "kwargs": {}}]
    with pytest.raises(ValueError, match="'expect_no_such_thing' is not valid") as caught:
        validate_frame(series_frame(), make_config(extra_expectations=extra), SOURCE)
    assert not isinstance(caught.value, DataValidationError)


def test_error_carries_a_picklable_report_and_renders_markdown():
    frame = series_frame()
    frame.loc[1, "y"] = np.nan
    error = rejection(frame)
    again = pickle.loads(pickle.dumps(error))
    assert again.report == error.report and str(again) == str(error)
    markdown = report_markdown(error.report)
    assert markdown.startswith("# Validation FAILED (1 check(s))")
    assert "| failed | expect_column_values_to_not_be_null | y |" in markdown
    assert "| exact_duplicates_dropped | 0 |" in markdown


def test_bundled_suite_is_plain_gx_json():
    import great_expectations as gx

    suite_json = json.loads(resources.files("tasks").joinpath("suites/default.json").read_text())
    suite = gx.ExpectationSuite(**suite_json)
    assert len(suite.expectations) == len(suite_json["expectations"]) >= 10


# -- the as-of cut -----------------------------------------------------------------------------
def test_as_of_keeps_only_rows_before_local_midnight_of_that_date():
    # daily series at Chicago midnight (06:00 UTC in January): 2024-01-01 .. 2024-01-12
    frame = series_frame({"A": 12, "B": 12}, tz="America/Chicago")
    config = short_window(make_config(timezone="America/Chicago"))
    validated, report = validate_frame(frame, config, SOURCE, as_of="2024-01-10")
    local_days = validated["ds"].dt.tz_convert("America/Chicago").dt.strftime("%Y-%m-%d")
    assert local_days.max() == "2024-01-09" and len(validated) == 18
    assert validated.groupby("unique_id")["y"].max().to_dict() == {"A": 8.0, "B": 108.0}
    assert report.as_of == "2024-01-10" and report.as_of_utc == "2024-01-10T06:00:00+00:00"
    assert report.rows_in == 24 and report.rows_after_as_of == 6 and report.rows_out == 18
    assert "As of 2024-01-10" in report_markdown(report)


def test_as_of_cut_runs_before_the_checks_so_later_bad_rows_do_not_matter():
    frame = series_frame()
    frame.loc[frame["ds"] >= pd.Timestamp("2024-01-11", tz="UTC"), "y"] = np.nan
    rejection(frame)  # without the cut the NaN rows fail training validation
    config = short_window(make_config())
    validated, report = validate_frame(frame, config, SOURCE, as_of="2024-01-11")
    assert report.passed and validated["y"].notna().all() and len(validated) == 20


def test_as_of_that_is_not_a_date_is_refused():
    with pytest.raises(ValueError, match="'2024-13-01' is not a date YYYY-MM-DD"):
        validate_frame(series_frame(), make_config(), SOURCE, as_of="2024-13-01")


def test_validation_key_includes_the_as_of_date():
    from tasks.storage import ArtifactRef

    ref = ArtifactRef(uri="memory://x", sha256="0" * 64, rows=1)
    keys = {
        validation_key(make_config(), ref, "forecast", as_of)
        for as_of in (None, "2024-01-10", "2024-01-11")
    }
    assert len(keys) == 3


# -- forecast triage: series set aside, the night goes on ----------------------------------------
def forecast(frame: pd.DataFrame, config: PipelineConfig | None = None, as_of: str | None = None):
    return validate_frame(frame, config or make_config(), SOURCE, "forecast", as_of)


def forecast_rejection(frame: pd.DataFrame, config: PipelineConfig | None = None):
    with pytest.raises(DataValidationError) as caught:
        forecast(frame, config)
    return caught.value


def four_series() -> pd.DataFrame:
    return series_frame({"A": 12, "B": 12, "C": 12, "D": 12})


def test_forecast_sets_a_stale_and_a_nan_series_aside_and_validates_the_rest():
    frame = four_series()
    frame = frame[~((frame["unique_id"] == "B") & (frame["ds"] > "2024-01-07"))]  # ends 01-07
    frame.loc[(frame["unique_id"] == "C") & (frame["ds"] == "2024-01-05"), "y"] = np.nan
    validated, report = forecast(frame)
    assert report.passed
    assert report.set_aside == {
        "B": "stale: last value at 2024-01-07, 5 steps before the latest; "
        "validation.max_staleness=3",
        "C": "y is NaN or infinite (1 value(s))",
    }
    assert sorted(validated["unique_id"].unique()) == ["A", "D"] and len(validated) == 24
    assert not validated["imputed"].any()
    checks = {check.name: check for check in report.checks}
    assert checks["series_values_usable"].unexpected_count == 1
    assert checks["series_not_stale"].observed == "1 series set aside"
    assert checks["series_set_aside_share"].observed == "2 of 4 series (50%)"
    rejection(frame)  # training still rejects the same data


def test_forecast_sets_aside_inf_covariates_out_of_bounds_and_long_gaps():
    frame = four_series()
    frame.loc[(frame["unique_id"] == "A") & (frame["ds"] == "2024-01-03"), "temp"] = np.inf
    frame.loc[frame["unique_id"] == "B", "y"] -= 1000.0  # below y_min
    frame = frame[~((frame["unique_id"] == "C") & frame["ds"].between("2024-01-04", "2024-01-08"))]
    config = make_config(y_min=0.0, max_set_aside_share=0.75)
    validated, report = forecast(frame, config)
    assert report.set_aside == {
        "A": "temp is NaN or infinite (1 value(s))",
        "B": "y outside [0.0, None] (12 value(s))",
        "C": "gap of 5 missing steps (2024-01-04 to 2024-01-08); validation.max_gap_fill=3",
    }
    assert validated["unique_id"].unique().tolist() == ["D"]


def test_staleness_is_measured_against_the_as_of_date_when_given():
    frame = series_frame({"A": 12, "B": 12, "C": 10})  # A, B end 2024-01-12, C ends 2024-01-10
    _, report = forecast(frame, as_of="2024-01-14")  # latest possible step: 2024-01-13
    assert report.set_aside == {}  # C misses 3 latest steps: allowed
    _, report = forecast(frame, make_config(max_staleness=1), as_of="2024-01-13")
    assert report.set_aside == {
        "C": "stale: last value at 2024-01-10, 2 steps before the latest; "
        "validation.max_staleness=1"
    }
    _, report = forecast(frame, make_config(max_staleness=0))  # no cut: the latest ds, 01-12
    assert list(report.set_aside) == ["C"]


def test_forecast_fails_when_more_than_the_allowed_share_is_set_aside():
    frame = four_series()
    frame.loc[frame["unique_id"].isin(["A", "B", "C"]) & (frame["ds"] == "2024-01-05"), "y"] = (
        np.nan
    )
    error = forecast_rejection(frame)
    assert failed(error) == ["series_set_aside_share"]
    message = str(error)
    assert "at most validation.max_set_aside_share=0.5 of the series may be set aside" in message
    assert "series 'A' (y is NaN or infinite (1 value(s)))" in message
    assert error.report.set_aside.keys() == {"A", "B", "C"}
    _, report = forecast(frame, make_config(max_set_aside_share=0.75))  # 3 of 4 is allowed
    assert report.passed


@pytest.mark.parametrize(
    ("breakage", "check"),
    [
        ("conflict", "expect_compound_columns_to_be_unique"),
        ("off_grid", "timestamps_on_frequency_grid"),
        ("missing_column", "expect_column_to_exist"),
        ("null_key", "expect_column_values_to_not_be_null"),
    ],
)
def test_structural_problems_still_fail_a_forecast(breakage, check):
    frame = four_series()
    if breakage == "conflict":
        frame = pd.concat([frame, frame.iloc[[7]].assign(y=99.0)], ignore_index=True)
    elif breakage == "off_grid":
        frame.loc[5, "ds"] += pd.Timedelta(hours=12)
    elif breakage == "missing_column":
        frame = frame.drop(columns="temp")
    else:
        frame.loc[5, "unique_id"] = None
    assert check in failed(forecast_rejection(frame))


# -- imputed rows and gap filling inside a split -------------------------------------------------
def test_gap_across_the_train_cutoff_carries_the_last_train_value_not_a_later_one():
    # 20 days: train is 2024-01-01 .. 01-14, validation 01-15 .. 01-17 (common cutoffs)
    frame = series_frame({"A": 20, "B": 20})
    missing = ["2024-01-13", "2024-01-14", "2024-01-15"]
    holed = frame[
        ~((frame["unique_id"] == "A") & frame["ds"].isin(pd.to_datetime(missing, utc=True)))
    ]
    validated, report = validate_frame(holed, make_config(), SOURCE)
    a = validated[validated["unique_id"] == "A"].set_index("ds")
    stamps = pd.to_datetime(missing, utc=True)
    assert a.loc[stamps, "y"].tolist() == [11.0, 11.0, 14.0]  # train side: 01-12's 11.0 exactly
    assert a.index[a["imputed"]].tolist() == stamps.tolist()
    assert validated["imputed"].sum() == 3 and report.repairs.steps_filled == 3
    # a forecast has no splits: the same gap is interpolated across
    in_forecast, _ = forecast(holed)
    b = in_forecast[in_forecast["unique_id"] == "A"].set_index("ds")
    assert b.loc[stamps, "y"].tolist() == [12.0, 13.0, 14.0]
    assert b.index[b["imputed"]].tolist() == stamps.tolist()


# -- the task ----------------------------------------------------------------------------------
def ingested_artifact(store: ArtifactStore, frame: pd.DataFrame, name: str = "ingested"):
    return store.write_table("ingest", name, frame, config_hash="test")


def test_validate_task_writes_the_repaired_artifact_with_repair_counts(tmp_path):
    config = make_config(tmp_path)
    store = ArtifactStore(config.storage.root)
    ingested = ingested_artifact(store, series_frame().sample(frac=1, random_state=1))
    ref = validate_task.fn(config, ingested)
    frame, metadata = store.read_table(ref)
    assert ref.uri == store.artifact_uri("validate", validation_key(config, ingested))
    assert (
        metadata["repairs"]["rows_reordered"] > 0 and metadata["inputs"][0]["uri"] == ingested.uri
    )
    pd.testing.assert_frame_equal(frame, series_frame().assign(imputed=False))
    assert validate_task.fn(config, ingested) == ref  # a rerun finds the same artifact


def test_failed_validation_writes_its_report_and_leaves_earlier_artifacts_intact(tmp_path):
    config = make_config(tmp_path)
    store = ArtifactStore(config.storage.root)
    good = validate_task.fn(config, ingested_artifact(store, series_frame(), "good"))
    saved = Path(good.uri).read_bytes()
    bad_frame = series_frame()
    bad_frame.loc[3, "y"] = np.inf
    bad = ingested_artifact(store, bad_frame, "bad")
    with pytest.raises(DataValidationError, match="must be finite"):
        validate_task.fn(config, bad)
    assert Path(good.uri).read_bytes() == saved
    assert len(store.read_table(good)[0]) == 24
    report = store.read_json(
        store.uri("reports", "validation", f"{validation_key(config, bad)}.json")
    )
    assert report["passed"] is False and report["source"] == SOURCE
    assert store.find("validate", validation_key(config, bad)) is None


def test_validate_task_records_the_as_of_cut_in_the_artifact(tmp_path):
    config = make_config(tmp_path)
    store = ArtifactStore(config.storage.root)
    ingested = ingested_artifact(store, series_frame())
    ref = validate_task.fn(config, ingested, "forecast", "2024-01-10")
    frame, metadata = store.read_table(ref)
    assert ref.uri == store.artifact_uri(
        "validate", validation_key(config, ingested, "forecast", "2024-01-10")
    )
    assert metadata["as_of"] == "2024-01-10"
    assert metadata["as_of_utc"] == "2024-01-10T00:00:00+00:00"
    assert metadata["rows_after_as_of"] == 6
    assert frame["ds"].max() == pd.Timestamp("2024-01-09", tz="UTC")
    assert validate_task.fn(config, ingested, "forecast").uri != ref.uri  # no cut, other key
