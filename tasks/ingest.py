"""Ingestion: read the configured source into the long series contract.

One file, a glob or a folder of CSV or Parquet files, local or at any fsspec URL, long or wide,
becomes one frame with exactly `unique_id` (str), `ds` (UTC timestamps), `y` (float64), the
configured hist_exog and futr_exog (float64) and stat_exog (float64, or str when a column holds
text). Rows of `source.future_path` (future values of futr_exog) are added as rows with an empty
target. Anything that cannot be read that way fails with one
`IngestError` naming the file, the column and the first bad rows: nothing is guessed, coerced to
NaN or filled with nulls silently. Each file is checked on its own before files are combined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from tasks.config import PipelineConfig, SourceConfig
from tasks.runtime import (
    StepResult,
    pipeline_task,
    produce_artifact,
    run_logger,
)
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key

SUFFIXES = {"parquet": (".parquet", ".pq", ".parq"), "csv": (".csv", ".csv.gz")}
"""What a folder source picks up, per format (a single file or a glob is taken as named)."""

ISO8601 = "ISO8601"
"""Text timestamps without `source.timestamp_format` must be ISO 8601: no day/month guessing."""

SHOWN = 5
"""How many bad rows an error message quotes."""

_GLOB_CHARS = re.compile(r"[*?\[]")
_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$")


class IngestError(ValueError):
    """Source data that cannot be read into the series contract; names file, column and rows."""


@dataclass(frozen=True)
class SourceFile:
    """One matched file: its filesystem path, the name users see, and its fs info."""

    path: str
    name: str
    info: dict[str, Any]


@dataclass(frozen=True)
class ZoneEvidence:
    """Which UTC offsets a file's text timestamps carry (label -> example) and whether they
    are all the daylight-saving offsets of `source.timezone`."""

    examples: dict[str, str] = field(default_factory=dict)
    follows_zone: bool = True


@dataclass(frozen=True)
class FilePart:
    """One file already in the long contract, plus the evidence for the cross-file zone check."""

    frame: pd.DataFrame
    zones: ZoneEvidence


# -- finding files ---------------------------------------------------------------------------
def display_name(fs: AbstractFileSystem, path: str) -> str:
    """The path as the user wrote it: plain for local files, `proto://...` otherwise."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _is_data_file(path: str, file_format: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and name.lower().endswith(SUFFIXES[file_format])


def matched_files(source: SourceConfig) -> tuple[AbstractFileSystem, list[SourceFile]]:
    """The files a source names, sorted: a glob's matches, a folder's data files, or one file."""
    fs, path = fsspec.core.url_to_fs(source.path)
    if _GLOB_CHARS.search(path):
        infos = fs.glob(path, detail=True)
        found = [info for info in infos.values() if info.get("type") == "file"]
        what = f"no file matched the glob {source.path!r}"
    elif fs.isdir(path):
        found = [
            info
            for info in fs.ls(path, detail=True)
            if info.get("type") == "file" and _is_data_file(info["name"], source.format)
        ]
        what = f"folder {source.path!r} holds no {source.format} files ({', '.join(SUFFIXES[source.format])})"
    else:
        try:
            found = [fs.info(path)]
        except FileNotFoundError:
            found = []
        what = f"no file matched {source.path!r}: it does not exist"
    if not found:
        raise IngestError(what)
    files = [SourceFile(info["name"], display_name(fs, info["name"]), info) for info in found]
    return fs, sorted(files, key=lambda file: file.path)


def _modified(info: dict[str, Any]) -> str | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return None


def future_source(source: SourceConfig) -> SourceConfig | None:
    """`source.future_path` as a source of its own (csv or parquet by its suffix), or None."""
    if source.future_path is None:
        return None
    name = source.future_path.lower()
    file_format = "csv" if name.endswith(SUFFIXES["csv"]) else "parquet"
    return source.model_copy(update={"path": source.future_path, "format": file_format})


def source_fingerprint(source: SourceConfig) -> list[dict[str, Any]]:
    """Path, size and modification time (or ETag) per matched file, the future file's too: new
    data (or a new schedule) changes the key."""
    _, files = matched_files(source)
    future = future_source(source)
    if future is not None:
        files = files + matched_files(future)[1]
    fingerprint = []
    for file in files:
        entry: dict[str, Any] = {
            "path": file.name,
            "size": file.info.get("size"),
            "mtime": _modified(file.info),
        }
        etag = file.info.get("ETag") or file.info.get("etag") or file.info.get("md5Hash")
        if etag is not None:
            entry["etag"] = str(etag).strip('"')
        fingerprint.append(entry)
    return fingerprint


# -- reading one file ------------------------------------------------------------------------
def required_columns(source: SourceConfig) -> list[str]:
    """Columns every file must have; a wide source's series columns only when named in config."""
    if source.layout == "long":
        return [source.id_column, source.time_column, source.target_column, *source.exog]
    return [source.time_column, *source.exog, *(source.series_columns or [])]


def future_columns(source: SourceConfig) -> list[str]:
    """Columns of the future file: id (long layout), time, futr_exog."""
    ids = [source.id_column] if source.layout == "long" else []
    return [*ids, source.time_column, *source.futr_exog]


def check_columns(
    found: list[str], source: SourceConfig, name: str, columns: list[str] | None = None
) -> None:
    """Fail naming the file and the missing columns: pyarrow would fill them with nulls."""
    wanted = required_columns(source) if columns is None else columns
    missing = [column for column in wanted if column not in found]
    if missing:
        raise IngestError(
            f"{name}: missing column(s) {', '.join(map(repr, missing))}; "
            f"columns found: {', '.join(map(repr, found))}"
        )


def read_raw_parquet(
    fs: AbstractFileSystem,
    file: SourceFile,
    source: SourceConfig,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """One Parquet file's needed columns (`columns`, default the source's), after its schema is
    checked."""
    try:
        with fs.open(file.path, "rb") as handle:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)
            names = parquet.schema_arrow.names
            check_columns(names, source, file.name, columns)
            wanted = columns or (
                None
                if source.layout == "wide" and not source.series_columns
                else required_columns(source)
            )
            table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise IngestError(
            f"{file.name}: not a readable Parquet file, truncated or corrupt ({err})"
        ) from err
    return table.to_pandas()


def read_raw_csv(
    fs: AbstractFileSystem,
    file: SourceFile,
    source: SourceConfig,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """One CSV file as text (every cell a string), so values are parsed strictly afterwards."""
    try:
        with fs.open(file.path, "rb", compression="infer") as handle:
            raw = pd.read_csv(
                handle, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
            )
    except pd.errors.EmptyDataError as err:
        raise IngestError(f"{file.name}: empty file (no header, no rows)") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise IngestError(f"{file.name}: not a readable CSV file ({err})") from err
    check_columns(list(raw.columns), source, file.name, columns)
    return raw


def read_raw_file(
    fs: AbstractFileSystem,
    file: SourceFile,
    source: SourceConfig,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """One file as read, refused when empty, unreadable or missing a required column."""
    if file.info.get("size") == 0:
        raise IngestError(f"{file.name}: empty file (0 bytes)")
    reader = read_raw_parquet if source.format == "parquet" else read_raw_csv
    raw = reader(fs, file, source, columns)
    if raw.empty:
        raise IngestError(f"{file.name}: no rows (only a header or an empty table)")
    return raw


# -- parsing values strictly -----------------------------------------------------------------
def row_label(source: SourceConfig, index: int) -> str:
    """Where a row is in its file: CSV line numbers count the header as line 1."""
    return f"line {index + 2}" if source.format == "csv" else f"row {index}"


def _quote_rows(source: SourceConfig, values: pd.Series, mask: np.ndarray) -> str:
    positions = np.flatnonzero(mask)
    shown = ", ".join(f"{row_label(source, int(i))}: {values.iloc[i]!r}" for i in positions[:SHOWN])
    more = f" ({len(positions)} rows in all)" if len(positions) > SHOWN else ""
    return shown + more


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(values) or values.dtype == object


def parse_numbers(values: pd.Series, source: SourceConfig, name: str, column: str) -> pd.Series:
    """float64, refusing any non-numeric text ("N/A", "12,5"): empty cells alone are missing."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64").reset_index(drop=True)
    if not _is_text(values):
        raise IngestError(f"{name}: column {column!r} has type {values.dtype}; expected numbers")
    text = values.astype("str").str.strip()
    missing = (values.isna() | text.eq("")).to_numpy()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
    spelled_nan = text.str.lower().isin({"nan", "+nan", "-nan"}).to_numpy()
    bad = numbers.isna().to_numpy() & ~missing & ~spelled_nan
    if bad.any():
        raise IngestError(
            f"{name}: column {column!r} has non-numeric values: {_quote_rows(source, values, bad)}"
        )
    return numbers.reset_index(drop=True)


def parse_attribute(values: pd.Series, source: SourceConfig, name: str, column: str) -> pd.Series:
    """A stat_exog column: float64 when every value is a number (typed, or text that parses),
    else text (str, stripped; empty cells missing) for one-hot encoding downstream."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64").reset_index(drop=True)
    if not _is_text(values):
        raise IngestError(
            f"{name}: column {column!r} has type {values.dtype}; expected text or numbers"
        )
    text = values.astype("str").str.strip().where(values.notna())
    missing = (text.isna() | text.eq("")).to_numpy()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce")
    if (~missing).any() and not (numbers.isna().to_numpy() & ~missing).any():
        return numbers.astype("float64").reset_index(drop=True)
    return text.where(~missing).astype("str").reset_index(drop=True)


def _offset_label(offset: timedelta | None) -> str:
    if offset is None:
        return "naive"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _normalize_offset_text(text: str) -> str:
    if text == "Z":
        return "+00:00"
    digits = text[1:].replace(":", "")
    return f"{text[0]}{digits[:2]}:{(digits[2:] or '00')}"


def _label_minutes(label: str) -> int:
    sign = -1 if label[0] == "-" else 1
    return sign * (int(label[1:3]) * 60 + int(label[4:6]))


def _zone_offset_minutes(utc: pd.Series, timezone: str) -> pd.Series:
    local = utc.dt.tz_convert(timezone).dt.tz_localize(None)
    return (local - utc.dt.tz_localize(None)) // pd.Timedelta(minutes=1)


def localize(
    naive: pd.Series, source: SourceConfig, name: str, column: str, raw: pd.Series
) -> pd.Series:
    """Naive wall times in `source.timezone` as UTC; DST-ambiguous or skipped times are refused."""
    try:
        return naive.dt.tz_localize(source.timezone).dt.tz_convert("UTC")
    except ValueError:
        probe = naive.dt.tz_localize(source.timezone, ambiguous="NaT", nonexistent="NaT")
        bad = (probe.isna() & naive.notna()).to_numpy()
        raise IngestError(
            f"{name}: column {column!r} has local times that {source.timezone} skips or repeats "
            f"(daylight saving): {_quote_rows(source, raw, bad)}; write them with a UTC offset"
        ) from None


def _unparseable(
    text: pd.Series, missing: np.ndarray, source: SourceConfig, name: str, column: str
) -> IngestError:
    fmt = source.timestamp_format or ISO8601
    probe = pd.to_datetime(text.where(~missing), format=fmt, errors="coerce", utc=True)
    bad = probe.isna().to_numpy() & ~missing
    hint = "" if source.timestamp_format else " (set source.timestamp_format for non-ISO text)"
    return IngestError(
        f"{name}: column {column!r} has timestamps that do not parse as {fmt}{hint}: "
        f"{_quote_rows(source, text, bad)}"
    )


def parse_times_text(
    values: pd.Series, source: SourceConfig, name: str, column: str
) -> tuple[pd.Series, ZoneEvidence]:
    """Text timestamps as UTC, with the offsets they carried (for the mixed-time-zone check).

    pandas 3 raises "Mixed timezones detected" for mixed offsets (and for naive mixed with
    aware) unless `utc=True`, which would silently accept them; so the mixed case is taken
    apart here instead: offsets that are all `source.timezone`'s own (DST) pass, others fail.
    """
    text = values.astype("str").str.strip()
    missing = (values.isna() | text.eq("")).to_numpy()
    first = int(np.flatnonzero(~missing)[0]) if (~missing).any() else 0
    fmt = source.timestamp_format or ISO8601
    try:
        parsed = pd.to_datetime(text.where(~missing), format=fmt)
    except ValueError:
        return _parse_mixed_offsets(text, missing, source, name, column)
    if parsed.dt.tz is None:
        evidence = ZoneEvidence(
            {"naive": f"{name} {row_label(source, first)}: {text.iloc[first]!r}"}, False
        )
        return localize(parsed, source, name, column, text), evidence
    utc = parsed.dt.tz_convert("UTC")
    label = _offset_label(parsed.iloc[first].utcoffset()) if (~missing).any() else "+00:00"
    follows = bool(
        (_zone_offset_minutes(utc, source.timezone)[~missing] == _label_minutes(label)).all()
    )
    example = f"{name} {row_label(source, first)}: {text.iloc[first]!r}"
    return utc, ZoneEvidence({label: example}, follows)


def _parse_mixed_offsets(
    text: pd.Series, missing: np.ndarray, source: SourceConfig, name: str, column: str
) -> tuple[pd.Series, ZoneEvidence]:
    found = text.str.extract(_OFFSET, expand=False)
    labels = found.map(
        lambda text: _normalize_offset_text(text) if isinstance(text, str) else "naive"
    )
    if labels[~missing].nunique() <= 1:
        raise _unparseable(text, missing, source, name, column)
    utc = pd.to_datetime(
        text.where(~missing), format=source.timestamp_format or ISO8601, utc=True, errors="coerce"
    )
    if (utc.isna().to_numpy() & ~missing).any():
        raise _unparseable(text, missing, source, name, column)
    examples = {}
    for label in labels[~missing].unique():
        row = int(np.flatnonzero((labels == label).to_numpy() & ~missing)[0])
        examples[label] = f"{name} {row_label(source, row)}: {text.iloc[row]!r}"
    aware = (labels != "naive").to_numpy() & ~missing
    expected = labels[aware].map(_label_minutes)
    follows = not (labels[~missing] == "naive").any() and bool(
        (_zone_offset_minutes(utc[aware], source.timezone) == expected).all()
    )
    return utc, ZoneEvidence(examples, follows)


def parse_times(
    values: pd.Series, source: SourceConfig, name: str, column: str
) -> tuple[pd.Series, ZoneEvidence]:
    """UTC timestamps: typed ones by their own zone (naive ones in `source.timezone`), text strictly."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        utc = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        utc = localize(values, source, name, column, values.astype("str"))
    elif _is_text(values):
        utc, zones = parse_times_text(values, source, name, column)
        return utc.dt.as_unit("us").reset_index(drop=True), zones
    else:
        raise IngestError(f"{name}: column {column!r} has type {values.dtype}; expected timestamps")
    return utc.dt.as_unit("us").reset_index(drop=True), ZoneEvidence()


def check_time_zones(parts: list[ZoneEvidence], source: SourceConfig) -> None:
    """Refuse text timestamps in mixed zones, within a file or across files (one message)."""
    examples: dict[str, str] = {}
    for zones in parts:
        for label, example in zones.examples.items():
            examples.setdefault(label, example)
    if len(examples) > 1 and not all(zones.follows_zone for zones in parts):
        shown = "; ".join(
            f"{label} at {example}" for label, example in list(examples.items())[:SHOWN]
        )
        raise IngestError(
            f"mixed time zones in column {source.time_column!r}: {shown}. Timestamps must share one "
            f"UTC offset, be all naive (read as source.timezone={source.timezone!r}), or carry "
            f"{source.timezone}'s own daylight-saving offsets"
        )


# -- shaping into the contract ---------------------------------------------------------------
def series_columns(raw: pd.DataFrame, source: SourceConfig) -> list[str]:
    """A wide file's series: the configured ones, else every column but time and covariates."""
    if source.series_columns:
        return list(source.series_columns)
    skip = {source.time_column, *source.exog}
    return [column for column in raw.columns if column not in skip]


def ids_as_text(values: pd.Series) -> pd.Series:
    """Series ids as text; integer ids stay `7`, not `7.0`, even when nulls made them floats."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == whole.round()).all():
            values = values.astype("Int64")
    return values.astype("str").where(values.notna()).reset_index(drop=True)


def long_frame(
    ids: pd.Series, times: pd.Series, target: pd.Series, covariates: dict[str, pd.Series]
) -> pd.DataFrame:
    """The contract's column order and dtypes: unique_id, ds, y, hist, futr and stat exog."""
    frame = pd.DataFrame({"unique_id": ids.reset_index(drop=True), "ds": times, "y": target})
    for column, values in covariates.items():
        frame[column] = values.to_numpy()
    return frame


def standardize(raw: pd.DataFrame, source: SourceConfig, name: str) -> FilePart:
    """One file's raw columns as the long contract, values parsed strictly."""
    times, zones = parse_times(raw[source.time_column], source, name, source.time_column)
    covariates = {c: parse_numbers(raw[c], source, name, c) for c in source.numeric_exog}
    covariates |= {c: parse_attribute(raw[c], source, name, c) for c in source.stat_exog}
    if source.layout == "long":
        ids = ids_as_text(raw[source.id_column])
        target = parse_numbers(raw[source.target_column], source, name, source.target_column)
        return FilePart(long_frame(ids, times, target, covariates), zones)
    names = series_columns(raw, source)
    if not names:
        raise IngestError(
            f"{name}: wide layout but no series columns besides {source.time_column!r}"
        )
    values = [parse_numbers(raw[column], source, name, column) for column in names]
    count = len(raw)
    frame = long_frame(
        pd.Series(np.repeat(np.asarray(names, dtype=object), count), dtype="str"),
        pd.concat([times] * len(names), ignore_index=True),
        pd.concat(values, ignore_index=True),
        {c: pd.concat([v] * len(names), ignore_index=True) for c, v in covariates.items()},
    )
    return FilePart(frame, zones)


def trim_wide_edges(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop a wide table's blank cells before a series starts or after it ends (its padding);
    blanks inside a series stay NaN, for validation to reject."""
    observed = frame["ds"].where(frame["y"].notna())
    grouped = observed.groupby(frame["unique_id"])
    first, last = grouped.transform("min"), grouped.transform("max")
    keep = frame["y"].notna() | ((frame["ds"] > first) & (frame["ds"] < last))
    return frame[keep.to_numpy()].reset_index(drop=True)


def read_future(source: SourceConfig) -> pd.DataFrame | None:
    """`source.future_path` as unique_id (long layout), ds and futr_exog rows, or None."""
    future = future_source(source)
    if future is None:
        return None
    fs, files = matched_files(future)
    parts, zones = [], []
    for file in files:
        raw = read_raw_file(fs, file, future, future_columns(future))
        times, found = parse_times(raw[future.time_column], future, file.name, future.time_column)
        frame = pd.DataFrame({"ds": times})
        if future.layout == "long":
            frame.insert(0, "unique_id", ids_as_text(raw[future.id_column]))
        for column in future.futr_exog:
            frame[column] = parse_numbers(raw[column], future, file.name, column).to_numpy()
        parts.append(frame)
        zones.append(found)
    check_time_zones(zones, future)
    return pd.concat(parts, ignore_index=True)


def _key_text(frame: pd.DataFrame, rows: np.ndarray, source: SourceConfig) -> str:
    shown = [
        f"series {frame['unique_id'].iat[i]!r} at "
        f"{frame['ds'].iat[i].tz_convert(source.timezone).isoformat()}"
        for i in rows[:SHOWN]
    ]
    return ", ".join(shown) + (f" ({len(rows)} in all)" if len(rows) > SHOWN else "")


def merge_future(frame: pd.DataFrame, future: pd.DataFrame, source: SourceConfig) -> pd.DataFrame:
    """The source rows plus the future file's rows for (series, time) keys the source lacks
    (target and other covariates empty); a file without ids applies to every series. Where the
    source has the key too, the file fills only empty futr_exog cells; different values fail."""
    name = source.future_path
    if "unique_id" not in future.columns:
        ids = pd.Series(frame["unique_id"].dropna().unique(), dtype="str")
        future = future.merge(pd.DataFrame({"unique_id": ids}), how="cross")
    doubled = future.duplicated(["unique_id", "ds"], keep=False).to_numpy()
    if doubled.any():
        raise IngestError(
            f"{name}: a series and time appear more than once: "
            f"{_key_text(future, np.flatnonzero(doubled), source)}"
        )
    columns = list(source.futr_exog)
    keyed = frame.reset_index(drop=True).reset_index(names="_row")
    both = keyed[["_row", "unique_id", "ds", *columns]].merge(
        future, on=["unique_id", "ds"], suffixes=("", "_future")
    )
    merged = frame.copy()
    for column in columns:
        ours, theirs = both[column].to_numpy(), both[f"{column}_future"].to_numpy()
        clash = ~np.isnan(ours) & ~np.isnan(theirs) & (ours != theirs)
        if clash.any():
            raise IngestError(
                f"{name}: column {column!r} differs from the source at "
                f"{_key_text(both, np.flatnonzero(clash), source)}"
            )
        fill = np.isnan(ours) & ~np.isnan(theirs)
        merged.loc[both["_row"].to_numpy()[fill], column] = theirs[fill]
    known = pd.MultiIndex.from_frame(frame[["unique_id", "ds"]])
    fresh = ~pd.MultiIndex.from_frame(future[["unique_id", "ds"]]).isin(known)
    added = future[fresh].reindex(columns=frame.columns)
    added = added.astype({c: frame[c].dtype for c in frame.columns if c != "ds"})
    added["ds"] = future.loc[fresh, "ds"].astype(frame["ds"].dtype).to_numpy()
    return pd.concat([merged, added], ignore_index=True)


def read_source(source: SourceConfig) -> pd.DataFrame:
    """Every matched file in the long contract, each checked on its own before they are
    combined, plus the rows of `source.future_path`."""
    fs, files = matched_files(source)
    parts = [standardize(read_raw_file(fs, file, source), source, file.name) for file in files]
    check_time_zones([part.zones for part in parts], source)
    frame = pd.concat([part.frame for part in parts], ignore_index=True)
    if source.layout == "wide":
        frame = trim_wide_edges(frame)
    future = read_future(source)
    return frame if future is None else merge_future(frame, future, source)


def ingest_key(config: PipelineConfig, fingerprint: list[dict[str, Any]]) -> str:
    """Content key over source settings and the files' fingerprint: data that arrived overnight
    is never a cache hit, and an unchanged source is not copied again for another run date
    (the run date is an as-of cut applied by validation, not part of what was read)."""
    return content_key("ingest", config.digest("source", "frequency"), fingerprint, code_version())


# -- Prefect task ----------------------------------------------------------------------------
@pipeline_task("ingest")
def ingest_task(config: PipelineConfig, run_date: str) -> ArtifactRef:
    """Read the source into the long contract once per source state (any run date reuses it)."""
    fingerprint = source_fingerprint(config.source)

    def compute(store: ArtifactStore) -> StepResult:
        frame = read_source(config.source)
        series = int(frame["unique_id"].nunique())
        run_logger().info(
            "ingest for run %s: %d rows, %d series from %d file(s)",
            run_date,
            len(frame),
            series,
            len(fingerprint),
        )
        return frame, {"source_files": fingerprint, "series": series}

    return produce_artifact(config, "ingest", ingest_key(config, fingerprint), [], compute)
