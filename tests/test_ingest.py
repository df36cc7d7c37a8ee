"""Ingestion: every supported source shape reads into the contract; every bad input fails clearly."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from tasks.config import PipelineConfig, SourceConfig, StorageConfig
from tasks.ingest import IngestError, ingest_task, read_source, source_fingerprint
from tasks.storage import ArtifactStore

BUNDLED_DATA = Path(__file__).resolve().parent.parent / "data" / "chicago_l_daily.parquet"
CONTRACT = ["unique_id", "ds", "y", "temp"]


def raw_frame(
    series: tuple[str, ...] = ("A", "B"), days: int = 5, start: str = "2024-01-01"
) -> pd.DataFrame:
    """A small long table in the source's own column names (as a user's export would be)."""
    stamps = pd.date_range(start, periods=days, freq="D")
    return pd.DataFrame(
        {
            "station": np.repeat(series, days),
            "date": np.tile(stamps.strftime("%Y-%m-%d"), len(series)),
            "riders": np.arange(days * len(series), dtype=float) + 0.5,
            "temp": np.tile(np.arange(days), len(series)).astype("int8"),
        }
    )


def long_source(path: str | Path, **overrides) -> SourceConfig:
    settings = {
        "path": str(path),
        "format": "csv",
        "id_column": "station",
        "time_column": "date",
        "target_column": "riders",
        "hist_exog": ["temp"],
    }
    return SourceConfig(**{**settings, **overrides})


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- what reads ------------------------------------------------------------------------------
def test_csv_long_file_reads_into_the_contract(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame())
    frame = read_source(long_source(path))
    assert list(frame.columns) == CONTRACT
    assert str(frame["unique_id"].dtype) == "str"
    assert str(frame["ds"].dtype) == "datetime64[us, UTC]"
    assert frame["y"].dtype == "float64" and frame["temp"].dtype == "float64"
    assert len(frame) == 10
    assert frame["ds"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert frame["y"].iloc[3] == 3.5


def test_parquet_long_file_casts_integer_covariates_to_float(tmp_path):
    path = tmp_path / "rides.parquet"
    raw = raw_frame().assign(date=lambda f: pd.to_datetime(f["date"]))
    raw.to_parquet(path)
    frame = read_source(long_source(path, format="parquet"))
    assert list(frame.columns) == CONTRACT
    assert frame["temp"].dtype == "float64"
    assert str(frame["ds"].dtype) == "datetime64[us, UTC]"


def test_naive_timestamps_are_read_in_the_source_timezone_then_stored_as_utc(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame(start="2024-03-09", days=3))
    frame = read_source(long_source(path, timezone="America/Chicago"))
    # local midnight is 06:00 UTC before the DST switch on 2024-03-10 and 05:00 after it
    assert [stamp.hour for stamp in frame["ds"].iloc[:3]] == [6, 6, 5]


def test_explicit_timestamp_format_is_used(tmp_path):
    raw = raw_frame()
    raw["date"] = pd.to_datetime(raw["date"]).dt.strftime("%d/%m/%Y")
    path = write_csv(tmp_path / "rides.csv", raw)
    frame = read_source(long_source(path, timestamp_format="%d/%m/%Y"))
    assert frame["ds"].iloc[1] == pd.Timestamp("2024-01-02", tz="UTC")


def test_non_iso_text_without_a_format_is_refused_not_guessed(tmp_path):
    raw = raw_frame()
    raw["date"] = pd.to_datetime(raw["date"]).dt.strftime("%d/%m/%Y")
    path = write_csv(tmp_path / "rides.csv", raw)
    with pytest.raises(IngestError, match="timestamp_format") as caught:
        read_source(long_source(path))
    assert str(path) in str(caught.value) and "'date'" in str(caught.value)
    assert "line 2: '01/01/2024'" in str(caught.value)


def test_glob_reads_every_match_in_sorted_order(tmp_path):
    write_csv(tmp_path / "b.csv", raw_frame(series=("B",)))
    write_csv(tmp_path / "a.csv", raw_frame(series=("A",)))
    write_csv(tmp_path / "other.txt", raw_frame(series=("X",)))
    frame = read_source(long_source(tmp_path / "*.csv"))
    assert list(frame["unique_id"].unique()) == ["A", "B"]


def test_folder_reads_its_files_of_the_format_and_skips_others(tmp_path):
    for name in ("2024-02", "2024-01"):
        raw = raw_frame(start=f"{name}-01").assign(date=lambda f: pd.to_datetime(f["date"]))
        raw.to_parquet(tmp_path / f"{name}.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "README.md").write_text("notes")
    frame = read_source(long_source(tmp_path, format="parquet"))
    assert len(frame) == 20
    assert frame["ds"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")  # sorted by file name


def test_memory_url_reads_through_fsspec():
    root = f"memory://ingest-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for name in ("a", "b"):
        fs.pipe(
            f"{root}/{name}.csv".removeprefix("memory://"),
            raw_frame(series=(name.upper(),)).to_csv(index=False).encode(),
        )
    try:
        frame = read_source(long_source(f"{root}/*.csv"))
        fingerprint = source_fingerprint(long_source(f"{root}/*.csv"))
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)
    assert list(frame["unique_id"].unique()) == ["A", "B"]
    paths = [entry["path"] for entry in fingerprint]
    assert paths[0].startswith("memory://") and paths[0].endswith(f"{root[9:]}/a.csv")
    assert paths[1].endswith("/b.csv")
    assert all(entry["size"] > 0 and entry["mtime"] for entry in fingerprint)


def test_wide_layout_is_melted_with_column_names_as_series(tmp_path):
    wide = pd.DataFrame(
        {
            "date": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "north": ["1.0", "2.0", "3.0"],
            "south": ["", "5.0", "6.0"],  # south starts a day later: a blank, not a value
            "temp": ["10", "11", "12"],
        }
    )
    path = write_csv(tmp_path / "wide.csv", wide)
    source = SourceConfig(
        path=str(path),
        format="csv",
        layout="wide",
        id_column=None,
        target_column=None,
        time_column="date",
        hist_exog=["temp"],
    )
    frame = read_source(source)
    assert list(frame.columns) == CONTRACT
    assert frame["unique_id"].tolist() == ["north"] * 3 + ["south"] * 2
    assert frame["y"].tolist() == [1.0, 2.0, 3.0, 5.0, 6.0]
    assert frame["temp"].tolist() == [10.0, 11.0, 12.0, 11.0, 12.0]


def test_bundled_dataset_reads_with_its_config():
    source = SourceConfig(
        path=str(BUNDLED_DATA),
        id_column="series_id",
        time_column="timestamp",
        target_column="target",
        hist_exog=["Bulls_Home"],
        timezone="America/Chicago",
    )
    frame = read_source(source)
    assert len(frame) == 113_680 and frame["unique_id"].nunique() == 20
    assert list(frame.columns) == ["unique_id", "ds", "y", "Bulls_Home"]
    assert frame["ds"].dt.tz is not None


def test_dst_offsets_of_the_configured_zone_are_not_mixed_zones(tmp_path):
    text = "station,date,riders,temp\nA,2024-03-09T00:00-06:00,1,0\nA,2024-03-10T00:00-06:00,2,0\nA,2024-03-11T00:00-05:00,3,0\n"
    path = write_text(tmp_path / "dst.csv", text)
    frame = read_source(long_source(path, timezone="America/Chicago"))
    assert [stamp.hour for stamp in frame["ds"]] == [6, 6, 5]


# -- what is refused -------------------------------------------------------------------------
def test_no_matching_file_names_the_path(tmp_path):
    with pytest.raises(IngestError, match="no file matched") as caught:
        read_source(long_source(tmp_path / "missing.csv"))
    assert "missing.csv" in str(caught.value)
    with pytest.raises(IngestError, match=r"no file matched the glob .*\*\.csv"):
        read_source(long_source(tmp_path / "*.csv"))


def test_empty_file_is_refused_naming_it(tmp_path):
    write_csv(tmp_path / "a.csv", raw_frame())
    empty = write_text(tmp_path / "b.csv", "")
    with pytest.raises(IngestError, match=r"empty file \(0 bytes\)") as caught:
        read_source(long_source(tmp_path / "*.csv"))
    assert str(empty) in str(caught.value)


def test_header_only_csv_is_refused_naming_it(tmp_path):
    path = write_text(tmp_path / "rides.csv", "station,date,riders,temp\n")
    with pytest.raises(IngestError, match="no rows") as caught:
        read_source(long_source(path))
    assert str(path) in str(caught.value)


def test_zero_row_parquet_is_refused_naming_it(tmp_path):
    path = tmp_path / "rides.parquet"
    raw_frame().iloc[:0].to_parquet(path)
    with pytest.raises(IngestError, match="no rows") as caught:
        read_source(long_source(path, format="parquet"))
    assert str(path) in str(caught.value)


def test_missing_target_column_names_file_column_and_columns_found(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame().drop(columns="riders"))
    with pytest.raises(IngestError) as caught:
        read_source(long_source(path))
    message = str(caught.value)
    assert str(path) in message and "missing column(s) 'riders'" in message
    assert "columns found: 'station', 'date', 'temp'" in message


def test_column_renamed_in_one_of_several_files_names_that_file(tmp_path):
    good = raw_frame(start="2024-01-01").assign(date=lambda f: pd.to_datetime(f["date"]))
    good.to_parquet(tmp_path / "part-1.parquet")
    renamed = raw_frame(start="2024-01-06").assign(date=lambda f: pd.to_datetime(f["date"]))
    renamed.rename(columns={"temp": "temperature"}).to_parquet(tmp_path / "part-2.parquet")
    with pytest.raises(IngestError) as caught:
        read_source(long_source(tmp_path, format="parquet"))
    message = str(caught.value)
    assert "part-2.parquet" in message and "part-1.parquet" not in message
    assert "missing column(s) 'temp'" in message and "'temperature'" in message


def test_na_text_in_target_is_refused_with_line_and_value(tmp_path):
    text = "station,date,riders,temp\nA,2024-01-01,1.5,0\nA,2024-01-02,N/A,0\nA,2024-01-03,2.5,0\nA,2024-01-04,twelve,0\n"
    path = write_text(tmp_path / "rides.csv", text)
    with pytest.raises(IngestError) as caught:
        read_source(long_source(path))
    message = str(caught.value)
    assert str(path) in message and "column 'riders' has non-numeric values" in message
    assert "line 3: 'N/A'" in message and "line 5: 'twelve'" in message


def test_na_text_in_a_wide_series_names_the_series_column(tmp_path):
    path = write_text(tmp_path / "wide.csv", "date,north,south\n2024-01-01,1,2\n2024-01-02,N/A,3\n")
    source = SourceConfig(
        path=str(path),
        format="csv",
        layout="wide",
        id_column=None,
        target_column=None,
        time_column="date",
    )
    with pytest.raises(IngestError, match=r"column 'north' has non-numeric values: line 3: 'N/A'"):
        read_source(source)


def test_empty_target_cell_is_missing_for_validation_not_an_ingest_error(tmp_path):
    path = write_text(tmp_path / "rides.csv", "station,date,riders,temp\nA,2024-01-01,,0\n")
    frame = read_source(long_source(path))
    assert frame["y"].isna().all()


def test_mixed_time_zones_in_one_file_are_refused(tmp_path):
    text = (
        "station,date,riders,temp\n"
        "A,2024-01-01T00:00+00:00,1,0\n"
        "A,2024-01-02T00:00+00:00,2,0\n"
        "A,2024-01-03T00:00+05:30,3,0\n"
    )
    path = write_text(tmp_path / "rides.csv", text)
    with pytest.raises(IngestError, match="mixed time zones") as caught:
        read_source(long_source(path))
    message = str(caught.value)
    assert "column 'date'" in message and str(path) in message
    assert "line 2: '2024-01-01T00:00+00:00'" in message
    assert "+05:30" in message and "line 4" in message


def test_naive_and_aware_timestamps_mixed_are_refused(tmp_path):
    text = "station,date,riders,temp\nA,2024-01-01T00:00,1,0\nA,2024-01-02T00:00Z,2,0\n"
    path = write_text(tmp_path / "rides.csv", text)
    with pytest.raises(IngestError, match="mixed time zones") as caught:
        read_source(long_source(path))
    assert "naive at" in str(caught.value) and "+00:00 at" in str(caught.value)


def test_mixed_time_zones_across_files_are_refused(tmp_path):
    write_text(tmp_path / "a.csv", "station,date,riders,temp\nA,2024-01-01T00:00+01:00,1,0\n")
    write_text(tmp_path / "b.csv", "station,date,riders,temp\nA,2024-01-02T00:00+02:00,2,0\n")
    with pytest.raises(IngestError, match="mixed time zones") as caught:
        read_source(long_source(tmp_path / "*.csv"))
    assert "a.csv line 2" in str(caught.value) and "b.csv line 2" in str(caught.value)


def test_local_times_skipped_by_daylight_saving_are_refused(tmp_path):
    text = "station,date,riders,temp\nA,2024-03-10 01:00,1,0\nA,2024-03-10 02:30,2,0\n"
    path = write_text(tmp_path / "rides.csv", text)
    with pytest.raises(IngestError, match="skips or repeats") as caught:
        read_source(long_source(path, timezone="America/Chicago"))
    assert "line 3: '2024-03-10 02:30'" in str(caught.value)


def test_truncated_parquet_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "rides.parquet"
    raw_frame().to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="not a readable Parquet file") as caught:
        read_source(long_source(path, format="parquet"))
    assert str(path) in str(caught.value)


# -- the task: content-addressed, and failures leave earlier artifacts alone --------------------
def pipeline_config(source: SourceConfig, root: Path) -> PipelineConfig:
    return PipelineConfig(
        name="test", source=source, storage=StorageConfig(root=str(root / "store"))
    )


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame())
    before = source_fingerprint(long_source(path))
    write_csv(path, raw_frame(days=6))
    after = source_fingerprint(long_source(path))
    assert before != after and before[0]["path"] == str(path)


def test_ingest_task_reuses_its_artifact_until_the_data_change_whatever_the_run_date(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame())
    config = pipeline_config(long_source(path), tmp_path)
    first = ingest_task.fn(config, "2024-06-01")
    assert ingest_task.fn(config, "2024-06-01") == first
    assert ingest_task.fn(config, "2024-06-02") == first  # same bytes: not copied again
    assert "run_date" not in ArtifactStore(config.storage.root).read_table(first)[1]
    write_csv(path, raw_frame(days=6))
    changed = ingest_task.fn(config, "2024-06-01")
    assert changed.uri != first.uri and changed.rows == 12
    frame, metadata = ArtifactStore(config.storage.root).read_table(first)
    assert len(frame) == 10 and metadata["source_files"][0]["path"] == str(path)


def test_failed_ingest_leaves_the_previous_artifact_intact(tmp_path):
    path = write_csv(tmp_path / "rides.csv", raw_frame())
    config = pipeline_config(long_source(path), tmp_path)
    previous = ingest_task.fn(config, "2024-06-01")
    saved = Path(previous.uri).read_bytes()
    write_text(path, "station,date,riders,temp\nA,2024-01-01,N/A,0\n")
    with pytest.raises(IngestError, match="N/A"):
        ingest_task.fn(config, "2024-06-02")
    assert Path(previous.uri).read_bytes() == saved
    frame, _ = ArtifactStore(config.storage.root).read_table(previous)
    assert len(frame) == 10
