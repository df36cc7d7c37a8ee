"""Validation: Great Expectations checks plus the time-grid checks GX cannot express.

`validate_frame` repairs what is safe to repair (order, exact duplicates, short gaps), counts each
repair, and rejects everything else with one `DataValidationError` naming the source, column,
series and first offending rows. The GX suite is `tasks/suites/default.json`, extended from config
(covariates, y bounds, id pattern, series cap, `validation.extra_expectations`). The policy is
written down in docs/validation.md.

Rows past a series' last observed target (target empty) are future rows when `source.futr_exog`
is set: the covariates known in advance for the horizon. They are kept out of the checked history
and handed to the forecast by `future_covariate_rows`. The validated frame gets the calendar
features (`features.calendar`, holidays) generated from its timestamps.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Day, Tick
from pydantic import BaseModel, Field

from lstm_model.calendar import calendar_features
from lstm_model.windowing import SPLITS, split_window_starts
from tasks.config import PipelineConfig, ValidationConfig
from tasks.normalize import (
    SplitCutoffs,
    config_calendar_columns,
    rows_needed,
    split_cutoffs,
    split_sizes,
)
from tasks.runtime import (
    StepResult,
    parse_run_date,
    pipeline_task,
    produce_artifact,
    publish_markdown,
    run_logger,
)
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key
from tasks.window import window_spec

KEYS = ["unique_id", "ds"]
Purpose = Literal["training", "forecast"]
SUITE_RESOURCE = "suites/default.json"
IMPUTED = "imputed"
"""Boolean column of every validated frame: True for rows inserted by gap filling."""


class OffendingRow(BaseModel):
    """One row a check refused, as the user would look it up: series, local time, value."""

    unique_id: str | None = None
    ds: str | None = None
    value: str | None = None


class CheckResult(BaseModel):
    """One check's outcome; `rows` holds the first offending rows."""

    name: str
    column: str | None = None
    engine: Literal["great_expectations", "pandas"]
    status: Literal["passed", "failed", "skipped"]
    detail: str = ""
    observed: str | None = None
    unexpected_count: int = 0
    series_count: int = 0
    """Distinct series among the failing rows (0: not counted); `rows` shows the first row of
    each of the first few, so 40 000 bad rows of 4 series read as 4 names, not 40 000 rows."""
    rows: list[OffendingRow] = Field(default_factory=list)


class Repairs(BaseModel):
    """What was changed rather than rejected, so a silent fix is never invisible."""

    rows_reordered: int = 0
    exact_duplicates_dropped: int = 0
    gaps_filled: int = 0
    steps_filled: int = 0


class ValidationReport(BaseModel):
    """Everything a person needs to act on a validation run (rendered in the Prefect UI)."""

    source: str
    passed: bool
    rows_in: int
    rows_out: int
    series: int
    checks: list[CheckResult]
    repairs: Repairs
    gaps_per_series: dict[str, int] = Field(
        default_factory=dict, description="Series with gaps and how many each has (filled or not)."
    )
    set_aside: dict[str, str] = Field(
        default_factory=dict,
        description="Forecasting only: series left out of the output, and why (the rest go on).",
    )
    as_of: str | None = Field(
        None, description="The as-of date: only rows before its local midnight were checked."
    )
    as_of_utc: str | None = Field(None, description="That midnight as a UTC instant.")
    rows_after_as_of: int = Field(0, description="Rows at or after the cut, left out unchecked.")
    future_rows: int = Field(
        0,
        description="Rows before the cut past their series' last target (target empty), kept "
        "out of the history as future covariate rows (source.futr_exog set).",
    )

    @property
    def failures(self) -> list[CheckResult]:
        return [check for check in self.checks if check.status == "failed"]


class DataValidationError(ValueError):
    """Data that failed validation; `.report` holds the whole report."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(failure_message(report))
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))


# -- formatting ------------------------------------------------------------------------------
def format_time(value: Any, timezone: str) -> str | None:
    """A timestamp as the user's local wall time; a date alone when it falls on midnight."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(timezone)
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return stamp.isoformat()


def describe_rows(rows: list[OffendingRow]) -> str:
    """`series 'A' at 2020-01-03 (y=nan)`, comma separated."""
    parts = []
    for row in rows:
        text = f"series {row.unique_id!r}" if row.unique_id is not None else "row"
        if row.ds is not None:
            text += f" at {row.ds}"
        if row.value is not None:
            text += f" ({row.value})"
        parts.append(text)
    return ", ".join(parts)


def failure_message(report: ValidationReport) -> str:
    """One message for the whole rejection: source, then one line per failed check."""
    failures = report.failures
    lines = [f"{report.source}: data failed validation ({len(failures)} check(s) failed)"]
    for check in failures:
        where = f"column {check.column!r}: " if check.column else ""
        line = f"  - {where}{check.detail}"
        if check.unexpected_count:
            spread = f" in {check.series_count} series" if check.series_count else ""
            line += f" ({check.unexpected_count} failing{spread})"
        if check.observed is not None and not check.rows:
            line += f" (observed {check.observed})"
        if check.rows:
            line += f"; first: {describe_rows(check.rows)}"
        lines.append(line)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def _gap_lines(gaps: dict[str, int], shown: int = 20) -> list[str]:
    if not gaps:
        return []
    worst = sorted(gaps.items(), key=lambda item: (-item[1], item[0]))[:shown]
    title = f"## Gaps per series ({len(gaps)} series; the {len(worst)} with most shown)"
    return [
        title,
        "",
        "| series | gaps |",
        "|---|---|",
        *(f"| {_cell(s)} | {n} |" for s, n in worst),
        "",
    ]


def _set_aside_lines(set_aside: dict[str, str], shown: int = 20) -> list[str]:
    if not set_aside:
        return []
    lines = ["## Series set aside (not forecast)", "", "| series | reason |", "|---|---|"]
    lines += [f"| {_cell(sid)} | {why} |" for sid, why in list(set_aside.items())[:shown]]
    if len(set_aside) > shown:
        lines.append(f"| ... | {len(set_aside) - shown} more |")
    return [*lines, ""]


def _as_of_lines(report: ValidationReport) -> list[str]:
    lines = []
    if report.as_of is not None:
        lines += [
            f"As of {report.as_of}: rows before {report.as_of_utc} (UTC) only; "
            f"{report.rows_after_as_of} later rows left out.",
            "",
        ]
    if report.future_rows:
        lines += [
            f"{report.future_rows} rows past their series' last target kept out of the history "
            "as future covariate rows.",
            "",
        ]
    return lines


def report_markdown(report: ValidationReport) -> str:
    """The report as markdown for the Prefect UI: verdict, repairs, then every check."""
    verdict = "passed" if report.passed else f"FAILED ({len(report.failures)} check(s))"
    lines = [
        f"# Validation {verdict}",
        "",
        f"Source: `{report.source}`; rows in {report.rows_in}, rows out {report.rows_out}, "
        f"series {report.series}.",
        "",
        *_as_of_lines(report),
        "## Repairs",
        "",
        "| repair | count |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in report.repairs.model_dump().items()),
        "",
        *_gap_lines(report.gaps_per_series),
        *_set_aside_lines(report.set_aside),
        "## Checks",
        "",
        "| status | check | column | detail | observed | rows | first offending rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in report.checks:
        cells = [
            check.status,
            check.name,
            check.column,
            check.detail,
            check.observed,
            check.unexpected_count or "",
            describe_rows(check.rows),
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


# -- the GX suite ----------------------------------------------------------------------------
@cache
def bundled_suite() -> dict[str, Any]:
    """The suite kept as JSON in the package (tasks/suites/default.json)."""
    return json.loads(resources.files("tasks").joinpath(SUITE_RESOURCE).read_text())


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": f"expect_{kind}", "kwargs": kwargs}


def config_expectations(config: PipelineConfig) -> list[dict[str, Any]]:
    """Expectations that depend on config: covariates, y bounds, id pattern, series cap."""
    rules = config.validation
    finite = sys.float_info.max
    expectations = []
    for column in config.source.numeric_exog:
        expectations += [
            _expect("column_to_exist", column=column),
            _expect("column_values_to_be_of_type", column=column, type_="float64"),
            _expect("column_values_to_not_be_null", column=column),
            _expect(
                "column_values_to_be_between", column=column, min_value=-finite, max_value=finite
            ),
        ]
    for column in config.source.stat_exog:
        expectations += [
            _expect("column_to_exist", column=column),
            _expect("column_values_to_not_be_null", column=column),
        ]
    if rules.y_min is not None or rules.y_max is not None:
        expectations.append(
            _expect(
                "column_values_to_be_between",
                column="y",
                min_value=rules.y_min,
                max_value=rules.y_max,
            )
        )
    expectations += [
        _expect("column_values_to_match_regex", column="unique_id", regex=rules.id_pattern),
        _expect(
            "column_unique_value_count_to_be_between",
            column="unique_id",
            min_value=1,
            max_value=rules.max_series,
        ),
    ]
    return expectations


def is_series_value_check(expectation: dict[str, Any], config: PipelineConfig) -> bool:
    """Whether a bundled or config expectation judges values one series at a time (not null,
    finite, within bounds, id pattern): in a forecast those set a series aside instead."""
    kind, column = expectation["type"], expectation["kwargs"].get("column")
    values = {"y", *config.source.exog}
    if kind in {"expect_column_values_to_not_be_null", "expect_column_values_to_be_between"}:
        return column in values
    return kind == "expect_column_values_to_match_regex" and column == "unique_id"


def suite_definition(config: PipelineConfig, purpose: Purpose = "training") -> dict[str, Any]:
    """The bundled suite plus config-driven and user-added expectations, as GX JSON.

    For a forecast the per-series value checks are left to `series_value_problems` (which sets
    a bad series aside); user-added expectations always run and always fail the night.
    """
    suite = bundled_suite()
    own = [*suite["expectations"], *config_expectations(config)]
    if purpose == "forecast":
        own = [entry for entry in own if not is_series_value_check(entry, config)]
    extra = [dict(entry) for entry in config.validation.extra_expectations]
    return {**suite, "expectations": [*own, *extra]}


def check_extra_expectations(entries: list[dict[str, Any]]) -> None:
    """Fail on a bad `validation.extra_expectations` entry naming it: a config error, not bad data."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    for index, entry in enumerate(entries):
        try:
            ExpectationConfiguration(**entry).to_domain_obj()
        except Exception as err:  # GX raises several unrelated types for a bad entry
            raise ValueError(
                f"validation.extra_expectations[{index}] {entry.get('type')!r} is not valid: {err}"
            ) from err


def build_suite(definition: dict[str, Any]) -> Any:
    """A GX ExpectationSuite from its JSON definition."""
    import great_expectations as gx

    return gx.ExpectationSuite(**definition)


def gx_context() -> Any:
    """An in-memory GX context: no files, no analytics, no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    project = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    return gx.get_context(mode="ephemeral", project_config=project)


_RULES = {
    "expect_table_row_count_to_be_between": "needs at least one row",
    "expect_column_to_exist": "must exist",
    "expect_column_values_to_not_be_null": "must not be null",
    "expect_compound_columns_to_be_unique": "must be unique; rows with the same key and different values conflict",
    "expect_column_unique_value_count_to_be_between": "distinct series must number 1 to validation.max_series",
}


def describe_expectation(kind: str, kwargs: dict[str, Any]) -> str:
    """What an expectation demands, in words a data owner understands."""
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low == -sys.float_info.max and high == sys.float_info.max:
            return "must be finite (no inf or -inf)"
        return f"must lie within [{low}, {high}]"
    if kind == "expect_column_values_to_be_of_type":
        return f"dtype must be {kwargs.get('type_')}"
    if kind == "expect_column_values_to_match_regex":
        if kwargs.get("regex") == ValidationConfig().id_pattern:  # the default, in words
            return (
                "ids must be 1 to 128 characters, with no leading or trailing whitespace, no "
                "path separator (/ or \\), no control or invisible character, and not '.' or "
                "'..' (the default validation.id_pattern)"
            )
        return f"must match validation.id_pattern {kwargs.get('regex')!r}"
    if kind in _RULES:
        return _RULES[kind]
    arguments = {k: v for k, v in kwargs.items() if k not in {"batch_id", "column", "column_list"}}
    return f"{kind}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def value_text(column: str, value: Any) -> str:
    """`y=nan`, `y=inf`: plain numbers, not numpy reprs."""
    if isinstance(value, float | np.floating | int | np.integer):
        return f"{column}={float(value)!r}"
    return f"{column}={value!r}"


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if "raised_exception" not in info:  # keyed by metric: take the first raised one
        info = next((item for item in info.values() if item.get("raised_exception")), {})
    return info.get("exception_message") if info.get("raised_exception") else None


def offending_row(row: Any, column: str | None, timezone: str) -> OffendingRow:
    """A GX unexpected-index entry as series, local time and value (a bare index without keys)."""
    if not isinstance(row, dict):
        return OffendingRow(value=f"index {row}")
    series = row.get("unique_id")
    return OffendingRow(
        unique_id=None if pd.isna(series) else str(series),  # a null id is no series 'nan'
        ds=format_time(row.get("ds"), timezone),
        value=value_text(column, row[column]) if column in row and column not in KEYS else None,
    )


def check_from_gx(result: Any, timezone: str, limit: int) -> CheckResult:
    """One GX result as a CheckResult, its first offending rows named by series and time."""
    expectation = result.expectation_config
    kwargs = dict(expectation.kwargs)
    column = kwargs.get("column") or (
        ", ".join(kwargs["column_list"]) if "column_list" in kwargs else None
    )
    outcome = result.result or {}
    found = outcome.get("unexpected_index_list") or outcome.get("partial_unexpected_index_list")
    firsts = first_row_per_series(found or [])
    rows = [offending_row(row, column, timezone) for row in firsts[:limit]]
    error = _exception_message(result.exception_info)
    observed = outcome.get("observed_value")
    return CheckResult(
        name=expectation.type,
        column=column,
        engine="great_expectations",
        status="passed" if result.success else "failed",
        detail=error or describe_expectation(expectation.type, kwargs),
        observed=None if observed is None else str(observed),
        unexpected_count=int(outcome.get("unexpected_count") or 0),
        series_count=sum(1 for row in firsts if series_of(row) is not None),
        rows=rows,
    )


def series_of(row: Any) -> Any:
    """A GX failing row's series id; None for a bare index or a null id (no series, and
    NaN != NaN would count each null row apart)."""
    key = row.get("unique_id") if isinstance(row, dict) else None
    return None if pd.api.types.is_scalar(key) and pd.isna(key) else key


def first_row_per_series(found: list[Any]) -> list[Any]:
    """The first failing row of each distinct series, in row order (bare indexes kept as is)."""
    seen: set[Any] = set()
    firsts = []
    for row in found:
        key = series_of(row) if isinstance(row, dict) else object()  # bare indexes all kept
        if key not in seen:
            seen.add(key)
            firsts.append(row)
    return firsts


def run_expectations(
    frame: pd.DataFrame, config: PipelineConfig, purpose: Purpose = "training"
) -> list[CheckResult]:
    """Validate `frame` against the suite with GX; checks on a missing column are skipped."""
    check_extra_expectations(config.validation.extra_expectations)
    suite = build_suite(suite_definition(config, purpose))
    limit = config.validation.max_failed_rows_shown
    batch = (
        gx_context()
        .data_sources.add_pandas("series")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result_format = {
        # COMPLETE lists every failing row's keys, so a failure can name its distinct series
        "result_format": "COMPLETE",
        "partial_unexpected_count": limit,
        "unexpected_index_column_names": [key for key in KEYS if key in frame.columns],
    }
    result = batch.validate(suite, result_format=result_format)
    checks = [check_from_gx(item, config.source.timezone, limit) for item in result.results]
    missing = {
        c.column for c in checks if c.name == "expect_column_to_exist" and c.status == "failed"
    }
    return [
        c.model_copy(update={"status": "skipped", "detail": "column is missing"})
        if needs_missing_column(c, missing)
        else conflicts_named(c, frame, config)
        for c in checks
    ]


def needs_missing_column(check: CheckResult, missing: set[str | None]) -> bool:
    """Whether a check only failed because a column it reads is missing (reported once)."""
    if check.name == "expect_column_to_exist" or check.column is None:
        return False
    return any(part in missing for part in check.column.split(", "))


def conflicts_named(check: CheckResult, frame: pd.DataFrame, config: PipelineConfig) -> CheckResult:
    """A failed key-uniqueness check with its conflicting y values, one row per key."""
    if check.name != "expect_compound_columns_to_be_unique" or check.status != "failed":
        return check
    clashing = frame[frame.duplicated(KEYS, keep=False)]
    rows = [
        OffendingRow(
            unique_id=str(series),
            ds=format_time(stamp, config.source.timezone),
            value="y=" + " vs ".join(repr(float(v)) for v in group["y"]),
        )
        for (series, stamp), group in clashing.groupby(KEYS, sort=True)
    ][: config.validation.max_failed_rows_shown]
    return check.model_copy(update={"rows": rows})


# -- the as-of cut ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AsOfCut:
    """The rows an as-of cut keeps, and where it fell (None: no cut)."""

    frame: pd.DataFrame
    as_of: str | None = None
    instant: pd.Timestamp | None = None
    rows_dropped: int = 0


def as_of_instant(as_of: str, timezone: str) -> pd.Timestamp:
    """Local midnight of `as_of` in `timezone` as a UTC instant: the first moment a run for
    that night may not see. A midnight that daylight saving skips moves to the next instant."""
    day = pd.Timestamp(parse_run_date(as_of))
    local = day.tz_localize(timezone, nonexistent="shift_forward", ambiguous=True)
    return local.tz_convert("UTC")


def rows_after_cut(frame: pd.DataFrame, as_of: str | None, timezone: str) -> np.ndarray:
    """(rows,) bool: `ds` at or after local midnight of `as_of` (none without a date or a
    zone-aware ds; NaT is never after, for the null check to name it)."""
    if as_of is None or "ds" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    if not isinstance(frame["ds"].dtype, pd.DatetimeTZDtype):
        return np.zeros(len(frame), dtype=bool)  # the type checks reject it
    return (frame["ds"] >= as_of_instant(as_of, timezone)).to_numpy()


def cut_as_of(frame: pd.DataFrame, as_of: str | None, timezone: str) -> AsOfCut:
    """Only the rows with `ds` strictly before local midnight of `as_of`, before any check runs,
    so a run for night D never sees D or later and any past night can be replayed."""
    if as_of is None:
        return AsOfCut(frame)
    instant = as_of_instant(as_of, timezone)
    late = rows_after_cut(frame, as_of, timezone)
    as_of = parse_run_date(as_of)
    return AsOfCut(frame[~late].reset_index(drop=True), as_of, instant, int(late.sum()))


# -- future rows: covariates known in advance --------------------------------------------------
def pending_rows(frame: pd.DataFrame, config: PipelineConfig) -> np.ndarray:
    """(rows,) bool: the rows past their series' last observed target (all rows of a series with
    none), target empty: future covariate rows, not missing targets. None without futr_exog."""
    needed = {"unique_id", "ds", "y"}
    if not config.source.futr_exog or not needed <= set(frame.columns):
        return np.zeros(len(frame), dtype=bool)
    if not isinstance(frame["ds"].dtype, pd.DatetimeTZDtype):
        return np.zeros(len(frame), dtype=bool)  # the type checks reject it
    observed = frame["y"].notna()
    last = frame["ds"].where(observed).groupby(frame["unique_id"]).transform("max")
    after = (frame["ds"] > last) | (last.isna() & frame["ds"].notna())
    return (after & ~observed & frame["unique_id"].notna()).to_numpy(dtype=bool)


def future_covariate_rows(
    frame: pd.DataFrame, config: PipelineConfig, as_of: str | None = None
) -> pd.DataFrame:
    """unique_id, ds and futr_exog of the rows a forecast as of `as_of` may read for its horizon:
    rows at or after the cut (their targets and observed covariates are never read) and rows
    before it past their series' last target. Sorted and unique by (unique_id, ds)."""
    columns = ["unique_id", "ds", *config.source.futr_exog]
    if not config.source.futr_exog:
        return pd.DataFrame(columns=columns)
    late = rows_after_cut(frame, as_of, config.source.timezone)
    before = frame[~late].reset_index(drop=True)
    future = pd.concat(
        [before[pending_rows(before, config)][columns], frame[late][columns]], ignore_index=True
    )
    future = future.dropna(subset=["unique_id", "ds"]).sort_values(KEYS, kind="stable")
    return future.drop_duplicates(KEYS, keep="first").reset_index(drop=True)


def with_calendar(frame: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """`frame` with the calendar features of its `ds` (features.calendar, holidays) appended."""
    features, columns = config.features, config_calendar_columns(config)
    if not columns:
        return frame
    calendar = calendar_features(
        frame["ds"],
        config.frequency,
        config.source.timezone,
        features.holidays_country,
        features.holidays_subdivision,
    )
    return pd.concat([frame, calendar[columns]], axis=1)


def stat_constant_check(frame: pd.DataFrame, config: PipelineConfig) -> CheckResult:
    """Each stat_exog column must hold one value per series (an attribute, not a time series)."""
    columns = [c for c in config.source.stat_exog if c in frame.columns]
    rows: list[OffendingRow] = []
    failing = 0
    for column in columns:
        counts = frame.groupby("unique_id", sort=True)[column].nunique(dropna=True)
        changing = counts[counts > 1]
        failing += len(changing)
        for series in changing.index[: config.validation.max_failed_rows_shown - len(rows)]:
            values = frame.loc[frame["unique_id"] == series, column].dropna().unique()[:3]
            shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values)
            rows.append(OffendingRow(unique_id=str(series), value=f"{column}: {shown}"))
    return CheckResult(
        name="stat_exog_constant_per_series",
        column=", ".join(columns) or None,
        engine="pandas",
        status="failed" if failing else "passed",
        detail="source.stat_exog columns must hold one value per series",
        unexpected_count=failing,
        rows=rows,
    )


# -- forecast triage: series set aside rather than failing the night -------------------------
def merge_reasons(*found: dict[str, str]) -> dict[str, str]:
    """One reason per series, several joined with '; ', in the order found."""
    merged: dict[str, str] = {}
    for reasons in found:
        for series, why in reasons.items():
            merged[series] = f"{merged[series]}; {why}" if series in merged else why
    return merged


def _count_by_series(ids: pd.Series, bad: np.ndarray, what: str) -> dict[str, str]:
    counts = ids[bad].value_counts(sort=False).sort_index()
    return {str(series): f"{what} ({n} value(s))" for series, n in counts.items()}


def series_value_problems(frame: pd.DataFrame, config: PipelineConfig) -> dict[str, str]:
    """Forecasting: series with NaN/inf in y or a covariate, y outside the bounds, an absurd
    value (`absurd_values`), or an id that breaks `validation.id_pattern` (the checks that
    would otherwise fail the night)."""
    rules = config.validation
    ids = frame["unique_id"]
    found = []
    for column in ["y", *config.source.numeric_exog]:
        values = frame[column].to_numpy(dtype="float64")
        found.append(_count_by_series(ids, ~np.isfinite(values), f"{column} is NaN or infinite"))
    for column in config.source.stat_exog:
        found.append(_count_by_series(ids, frame[column].isna().to_numpy(), f"{column} is empty"))
    y = frame["y"].to_numpy(dtype="float64")
    low = -np.inf if rules.y_min is None else rules.y_min
    high = np.inf if rules.y_max is None else rules.y_max
    outside = np.isfinite(y) & ((y < low) | (y > high))
    found.append(_count_by_series(ids, outside, f"y outside [{rules.y_min}, {rules.y_max}]"))
    for column in ["y", *config.source.numeric_exog]:
        absurd = absurd_values(frame, column, rules.max_magnitude_ratio)
        found.append(_count_by_series(ids, absurd, f"{column} absurdly far from its median"))
    bad_id = ~ids.str.contains(rules.id_pattern, regex=True).to_numpy(dtype=bool)
    found.append({str(s): "id does not match validation.id_pattern" for s in ids[bad_id].unique()})
    return merge_reasons(*found)


def absurd_values(frame: pd.DataFrame, column: str, ratio: float | None) -> np.ndarray:
    """(rows,) bool: finite values farther from their series' median than `ratio` times the
    series' typical magnitude: the larger of its interquartile range and |median| or, for a
    series mostly at zero, its median non-zero |value|. Quantiles ignore one wild value, so a
    1e300 among riders in thousands is caught, while trends, seasons and holiday dips (within
    about 20 typical magnitudes in the bundled and M3 data) stay far below a ratio like 1e6."""
    if ratio is None:
        return np.zeros(len(frame), dtype=bool)
    values = frame[column].astype("float64")
    values = values.where(np.isfinite(values))  # NaN and inf are other checks' business
    ids = frame["unique_id"].to_numpy()
    by_series = values.groupby(ids, sort=False)
    median = by_series.median()
    typical = np.maximum(by_series.quantile(0.75) - by_series.quantile(0.25), median.abs())
    nonzero = values.abs().where(values != 0).groupby(ids, sort=False).median()
    typical = typical.where(typical > 0, nonzero)  # all zeros: NaN, no bound, never absurd
    distance = (values - median.reindex(ids).to_numpy()).abs()
    with np.errstate(invalid="ignore", over="ignore"):
        return (distance > ratio * typical.reindex(ids).to_numpy()).to_numpy(dtype=bool)


def magnitude_check(frame: pd.DataFrame, config: PipelineConfig) -> CheckResult:
    """Training: no y or covariate value may be absurd for its series (`absurd_values`); the
    first offending rows are named with their series' median, for the data owner to compare."""
    ratio = config.validation.max_magnitude_ratio
    columns = ["y", *config.source.numeric_exog]
    rows: list[OffendingRow] = []
    failing = 0
    for column in columns:
        absurd = np.flatnonzero(absurd_values(frame, column, ratio))
        failing += absurd.size
        medians = frame[column].groupby(frame["unique_id"]).median()
        for i in absurd[: config.validation.max_failed_rows_shown - len(rows)]:
            series = frame["unique_id"].iat[i]
            rows.append(
                OffendingRow(
                    unique_id=str(series),
                    ds=format_time(frame["ds"].iat[i], config.source.timezone),
                    value=f"{value_text(column, frame[column].iat[i])}; series median "
                    f"{float(medians[series]):.6g}",
                )
            )
    return CheckResult(
        name="values_within_series_magnitude",
        column=", ".join(columns),
        engine="pandas",
        status="failed" if failing else "passed",
        detail=f"a value may lie at most validation.max_magnitude_ratio={ratio:g} times its "
        "series' typical magnitude from the series' median"
        if ratio is not None
        else "off (validation.max_magnitude_ratio = None)",
        unexpected_count=failing,
        rows=rows,
    )


def latest_step(grid: pd.DatetimeIndex, config: PipelineConfig, cut: pd.Timestamp | None) -> int:
    """The grid position of the latest step the data could hold: the last one before the cut,
    or the latest timestamp in the data when there is no cut."""
    if cut is None or not len(grid):
        return len(grid) - 1
    end = cut.tz_convert(config.source.timezone) - pd.Timedelta(microseconds=1)
    return len(pd.date_range(grid[0], end, freq=to_offset(config.frequency))) - 1


def stale_series(
    frame: pd.DataFrame,
    positions: np.ndarray,
    grid: pd.DatetimeIndex,
    config: PipelineConfig,
    cut: pd.Timestamp | None,
) -> dict[str, str]:
    """Forecasting: series whose last value is more than `validation.max_staleness` steps
    before the latest step (a forecast from them would start from old data)."""
    limit = config.validation.max_staleness
    latest = latest_step(grid, config, cut)
    last = pd.Series(positions, index=frame["unique_id"].to_numpy()).groupby(level=0).max()
    behind = latest - last
    timezone = config.source.timezone
    return {
        str(series): f"stale: last value at {format_time(grid[last[series]], timezone)}, "
        f"{int(steps)} steps before the latest; validation.max_staleness={limit}"
        for series, steps in behind[behind > limit].items()
    }


def long_gap_series(
    gaps: pd.DataFrame, grid: pd.DatetimeIndex, config: PipelineConfig
) -> dict[str, str]:
    """Forecasting: series with a gap longer than `validation.max_gap_fill` (the longest named)."""
    limit = config.validation.max_gap_fill
    long = gaps[gaps["missing"] > limit].sort_values("missing", ascending=False, kind="stable")
    timezone = config.source.timezone
    return {
        str(gap.unique_id): f"gap of {gap.missing} missing steps "
        f"({format_time(grid[gap.before + 1], timezone)} to "
        f"{format_time(grid[gap.after - 1], timezone)}); validation.max_gap_fill={limit}"
        for gap in long.drop_duplicates("unique_id").itertuples()
    }


def set_aside_check(
    name: str, column: str, detail: str, reasons: dict[str, str], config: PipelineConfig
) -> CheckResult:
    """A forecast triage check: it passes, counting and naming the series it set aside."""
    rows = [
        OffendingRow(unique_id=series, value=why)
        for series, why in list(reasons.items())[: config.validation.max_failed_rows_shown]
    ]
    return CheckResult(
        name=name,
        column=column,
        engine="pandas",
        status="passed",
        detail=detail,
        observed=f"{len(reasons)} series set aside" if reasons else None,
        unexpected_count=len(reasons),
        rows=rows,
    )


def share_check(set_aside: dict[str, str], series: int, config: PipelineConfig) -> CheckResult:
    """The night fails when more than `validation.max_set_aside_share` of the series were set
    aside: that many bad series means bad data, not a few bad series."""
    share = config.validation.max_set_aside_share
    failed = series > 0 and len(set_aside) > share * series
    rows = [
        OffendingRow(unique_id=sid, value=why)
        for sid, why in list(set_aside.items())[: config.validation.max_failed_rows_shown]
    ]
    return CheckResult(
        name="series_set_aside_share",
        column="unique_id",
        engine="pandas",
        status="failed" if failed else "passed",
        detail=f"at most validation.max_set_aside_share={share} of the series may be set aside",
        observed=f"{len(set_aside)} of {series} series ({len(set_aside) / max(series, 1):.0%})",
        unexpected_count=len(set_aside) if failed else 0,
        rows=rows if failed else [],
    )


# -- repairs and time-grid checks (what GX cannot express) -----------------------------------
def sort_and_deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, Repairs]:
    """Sorted by (unique_id, ds) with exact duplicate rows dropped, both counted."""
    frame = frame.reset_index(drop=True)
    ordered = frame.sort_values(KEYS, kind="stable")
    reordered = int((ordered.index.to_numpy() != np.arange(len(ordered))).sum())
    duplicated = ordered.duplicated(keep="first").to_numpy()
    repaired = ordered[~duplicated].reset_index(drop=True)
    return repaired, Repairs(
        rows_reordered=reordered, exact_duplicates_dropped=int(duplicated.sum())
    )


def on_grid(local: pd.Series, offset: BaseOffset) -> np.ndarray:
    """Whether each local timestamp can lie on the grid: a 12:00 stamp on a daily grid cannot."""
    wall = local.dt.tz_localize(None)
    if isinstance(offset, Tick | Day):
        return (wall == wall.dt.floor(offset.base)).to_numpy()
    index = pd.DatetimeIndex(wall)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-vectorized offsets warn about speed only
        rolled = (index + offset) - offset
    return (wall == wall.dt.normalize()).to_numpy() & (rolled == index)


def grid_positions(
    frame: pd.DataFrame, config: PipelineConfig
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Each row's step on one grid in `source.timezone` (so days follow local midnight across
    daylight saving); -1 for a timestamp off the grid."""
    offset = to_offset(config.frequency)
    local = frame["ds"].dt.tz_convert(config.source.timezone)
    fits = on_grid(local, offset)
    if not fits.any():
        return np.full(len(frame), -1), pd.DatetimeIndex([], tz=config.source.timezone)
    grid = pd.date_range(local[fits].min(), local.max(), freq=offset)
    positions = grid.get_indexer(local)
    positions[~fits] = -1
    return positions, grid


def offgrid_check(
    frame: pd.DataFrame, positions: np.ndarray, config: PipelineConfig
) -> CheckResult:
    """Timestamps between grid steps are rejected: they are not a gap to fill but wrong data."""
    bad = np.flatnonzero(positions < 0)
    rows = [
        OffendingRow(
            unique_id=str(frame["unique_id"].iat[i]),
            ds=pd.Timestamp(frame["ds"].iat[i]).tz_convert(config.source.timezone).isoformat(),
        )
        for i in bad[: config.validation.max_failed_rows_shown]
    ]
    return CheckResult(
        name="timestamps_on_frequency_grid",
        column="ds",
        engine="pandas",
        status="failed" if len(bad) else "passed",
        detail=f"timestamps must lie on the {config.frequency!r} grid in {config.source.timezone}",
        unexpected_count=len(bad),
        rows=rows,
    )


def find_gaps(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """One row per gap: series, grid steps before and after it, and how many steps are missing."""
    ids = frame["unique_id"].to_numpy()
    same = ids[1:] == ids[:-1]
    missing = positions[1:] - positions[:-1] - 1
    at = np.flatnonzero(same & (missing > 0))
    return pd.DataFrame(
        {
            "unique_id": ids[at],
            "before": positions[at],
            "after": positions[at + 1],
            "missing": missing[at],
        }
    )


def gap_check(gaps: pd.DataFrame, grid: pd.DatetimeIndex, config: PipelineConfig) -> CheckResult:
    """Gaps longer than `max_gap_fill` steps are rejected, naming each series once (its last
    long gap: the one a trim must start after) with the missing dates and the remedies."""
    limit = config.validation.max_gap_fill
    timezone = config.source.timezone
    long = gaps[gaps["missing"] > limit]
    last = long.drop_duplicates("unique_id", keep="last")
    rows = [
        OffendingRow(
            unique_id=str(gap.unique_id),
            ds=f"{format_time(grid[gap.before + 1], timezone)} to "
            f"{format_time(grid[gap.after - 1], timezone)}",
            value=f"{gap.missing} missing steps; trim it to start at "
            f"{format_time(grid[gap.after], timezone)}",
        )
        for gap in last.head(config.validation.max_failed_rows_shown).itertuples()
    ]
    longest = int(gaps["missing"].max()) if len(gaps) else 0
    return CheckResult(
        name="gaps_at_most_max_gap_fill",
        column="ds",
        engine="pandas",
        status="failed" if len(long) else "passed",
        detail=f"gaps may miss at most validation.max_gap_fill={limit} steps; remedies: drop the "
        "series from the source, trim each named series to start after its gap, or raise "
        f"validation.max_gap_fill to {longest} (fills by linear interpolation)",
        observed=f"{len(gaps)} gap(s), longest {longest} step(s)",
        unexpected_count=len(long),
        series_count=len(last),
        rows=rows,
    )


def observed_cutoffs(frame: pd.DataFrame, config: PipelineConfig) -> SplitCutoffs | None:
    """The training splits' common calendar cutoffs over the observed rows (None when the data
    are too short to split; the length check rejects them anyway)."""
    try:
        return split_cutoffs(frame["ds"], config.split)
    except ValueError:
        return None


def fill_gaps(
    frame: pd.DataFrame,
    gaps: pd.DataFrame,
    grid: pd.DatetimeIndex,
    covariates: list[str],
    cutoffs: SplitCutoffs | None = None,
) -> pd.DataFrame:
    """Missing steps inserted and flagged `imputed`: y linearly interpolated, covariates
    carried forward.

    With `cutoffs` (training) no inserted row takes a value from a later split: a row whose
    split differs from that of the next observed value carries the last earlier value forward.
    """
    flagged = frame.assign(**{IMPUTED: False})
    if gaps.empty:
        return flagged
    counts = gaps["missing"].to_numpy()
    starts = np.repeat(gaps["before"].to_numpy() + 1, counts)
    steps = starts + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    added = pd.DataFrame(
        {
            "unique_id": pd.Series(
                np.repeat(gaps["unique_id"].to_numpy(), counts), dtype=frame["unique_id"].dtype
            ),
            "ds": grid[steps].tz_convert("UTC").astype(frame["ds"].dtype),
            IMPUTED: True,
        }
    )
    combined = pd.concat([flagged, added], ignore_index=True)
    combined = combined.sort_values(KEYS, kind="stable").reset_index(drop=True)
    inserted = combined[IMPUTED].to_numpy(dtype=bool)
    # gaps are inside a series, so row-order interpolation never crosses into another series
    y = combined["y"].interpolate(method="linear", limit_area="inside")
    if cutoffs is not None:
        next_observed = combined["ds"].where(~combined[IMPUTED]).bfill()
        crosses = inserted & (cutoffs.labels(combined["ds"]) != cutoffs.labels(next_observed))
        y = y.where(~crosses, combined["y"].ffill())
    combined["y"] = y
    for column in covariates:
        combined.loc[inserted, column] = combined[column].ffill()[inserted]
    return combined[[*frame.columns, IMPUTED]].astype({IMPUTED: bool})


def required_length(config: PipelineConfig, purpose: Purpose) -> int:
    """Training needs one whole window per series (the window step's length); a forecast needs
    only its inputs."""
    spec = window_spec(config)
    return spec.length if purpose == "training" else spec.look_back


def short_series(frame: pd.DataFrame, need: int) -> pd.Series:
    """Length of every series shorter than `need` steps, by id."""
    lengths = frame.groupby("unique_id", sort=True).size()
    return lengths[lengths < need]


def length_check(
    frame: pd.DataFrame, config: PipelineConfig, purpose: Purpose = "training"
) -> CheckResult:
    """Every series must be long enough (after repair): for training, look_back + horizon.

    For a forecast, a short series is set aside rather than failing every other series' night:
    the check passes and says how many were set aside (`ValidationReport.set_aside` names them).
    """
    need = required_length(config, purpose)
    lengths = frame.groupby("unique_id", sort=True).size()
    short = lengths[lengths < need]
    if purpose == "forecast":
        return CheckResult(
            name="series_long_enough",
            column="unique_id",
            engine="pandas",
            status="passed",
            detail=f"a forecast needs look_back = {need} steps; shorter series are set aside",
            observed=f"{len(short)} series set aside" if len(short) else None,
            unexpected_count=len(short),
        )
    rows = [
        OffendingRow(unique_id=str(series), value=f"length {length}")
        for series, length in short.head(config.validation.max_failed_rows_shown).items()
    ]
    return CheckResult(
        name="series_long_enough",
        column="unique_id",
        engine="pandas",
        status="failed" if len(short) else "passed",
        detail=f"each series needs at least look_back + horizon = {need} steps",
        observed=f"shortest {int(lengths.min())}" if len(lengths) else None,
        unexpected_count=len(short),
        rows=rows,
    )


def split_windows_check(
    frame: pd.DataFrame, config: PipelineConfig, cutoffs: SplitCutoffs | None
) -> CheckResult:
    """Training, on the gap-filled frame: train, validation and test must each hold a whole
    window, counted as the window step counts them (`split_window_starts` at the same common
    cutoffs, series without a train row left out as normalize leaves them out), so that what
    validation passes can be trained, early-stopped and scored; the detail gives the split
    sizes and the steps series need."""
    spec, split = window_spec(config), config.split
    instants = frame.loc[~frame[IMPUTED], "ds"].nunique()  # observed steps set the cutoffs
    need = spec.rows_per_split()
    wanted = ", ".join(f"{name} {rows}" for name, rows in need.items())
    detail = (
        f"train, validation and test each need a whole window (look_back {spec.look_back}, "
        f"horizon {spec.horizon}, stride {spec.stride}: rows {wanted})"
    )
    if cutoffs is None:
        counts = dict.fromkeys(SPLITS, 0)
        observed = f"{instants} distinct timestamps cannot be split in three"
    else:
        labels = cutoffs.labels(frame["ds"])
        trained = frame.loc[labels == SPLITS[0], "unique_id"].unique()
        keep = frame["unique_id"].isin(trained).to_numpy()
        codes = pd.Categorical(labels[keep], categories=SPLITS).codes
        unscorable = frame[IMPUTED].to_numpy(dtype=bool)[keep]  # filled targets never score
        _, split_codes = split_window_starts(frame["unique_id"][keep], codes, spec, unscorable)
        counts = dict(zip(SPLITS, np.bincount(split_codes, minlength=3).tolist(), strict=True))
        sizes = ", ".join(f"{k} {v}" for k, v in split_sizes(instants, split).items())
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        observed = f"windows {shown}; the {instants} steps split into {sizes}"
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        detail = (
            f"no whole {' or '.join(empty)} window: {detail}; at split.train = {split.train} "
            f"and split.validation = {split.validation} series need at least "
            f"{rows_needed(spec, split)} steps (or use a shorter window or other split shares)"
        )
    return CheckResult(
        name="windows_in_every_split",
        column="ds",
        engine="pandas",
        status="failed" if empty else "passed",
        detail=detail,
        observed=observed,
    )


def skipped(name: str, column: str) -> CheckResult:
    """A pandas check that could not run because the frame failed a check it depends on."""
    return CheckResult(
        name=name,
        column=column,
        engine="pandas",
        status="skipped",
        detail="needs the checks above to pass",
    )


_STRUCTURAL = {
    "expect_table_row_count_to_be_between",
    "expect_column_to_exist",
    "expect_column_values_to_be_of_type",
    "expect_compound_columns_to_be_unique",
}


def structurally_sound(checks: list[CheckResult]) -> bool:
    """Whether the grid checks can run: rows, columns, dtypes, non-null unique keys."""
    return all(
        check.status != "failed"
        for check in checks
        if check.name in _STRUCTURAL
        or (check.name.endswith("not_be_null") and check.column in KEYS)
    )


_GRID_CHECKS = [
    ("timestamps_on_frequency_grid", "ds"),
    ("gaps_at_most_max_gap_fill", "ds"),
    ("series_long_enough", "unique_id"),
]


@dataclass(frozen=True)
class GridOutcome:
    """What the time-grid checks found: the (maybe gap-filled) frame, checks, gap counts and,
    for a forecast, the series set aside."""

    frame: pd.DataFrame
    checks: list[CheckResult]
    gaps_filled: int = 0
    steps_filled: int = 0
    gaps_per_series: dict[str, int] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)


def grid_checks(
    frame: pd.DataFrame,
    config: PipelineConfig,
    repairable: bool,
    purpose: Purpose = "training",
    cut: pd.Timestamp | None = None,
    set_aside: dict[str, str] | None = None,
) -> GridOutcome:
    """Off-grid, gap and length checks; short gaps are filled only when nothing else failed.

    For a forecast, stale series and series with long gaps join `set_aside` (series already set
    aside for their values) and are left out before gaps are filled; off-grid stays fatal.
    """
    set_aside = dict(set_aside or {})
    positions, grid = grid_positions(frame, config)
    placed = offgrid_check(frame, positions, config)
    if placed.status == "failed":
        checks = [
            placed,
            skipped("gaps_at_most_max_gap_fill", "ds"),
            length_check(frame, config, purpose),
        ]
        return GridOutcome(frame, checks, set_aside=set_aside)
    gaps = find_gaps(frame, positions)
    per_series = {str(k): int(v) for k, v in gaps.groupby("unique_id").size().items()}
    triage: list[CheckResult] = []
    cutoffs = None
    if purpose == "forecast":
        stale = stale_series(frame, positions, grid, config, cut)
        gapped = long_gap_series(gaps, grid, config)
        triage = [
            set_aside_check(
                "series_not_stale",
                "ds",
                f"a series may miss at most validation.max_staleness="
                f"{config.validation.max_staleness} latest steps; staler ones are set aside",
                stale,
                config,
            ),
            set_aside_check(
                "series_gaps_fillable",
                "ds",
                f"series with a gap over validation.max_gap_fill={config.validation.max_gap_fill}"
                " steps are set aside",
                gapped,
                config,
            ),
        ]
        set_aside = merge_reasons(set_aside, stale, gapped)
        keep = ~frame["unique_id"].isin(list(set_aside)).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        gaps = gaps[~gaps["unique_id"].isin(list(set_aside))].reset_index(drop=True)
    elif repairable:
        cutoffs = observed_cutoffs(frame, config)
    spaced = gap_check(gaps, grid, config)
    if spaced.status != "passed" or not repairable:
        return GridOutcome(
            frame,
            [placed, spaced, *triage, length_check(frame, config, purpose)],
            gaps_per_series=per_series,
            set_aside=set_aside,
        )
    filled = fill_gaps(frame, gaps, grid, config.source.exog, cutoffs)
    checks = [placed, spaced, *triage, length_check(filled, config, purpose)]
    if purpose == "training":
        checks.append(split_windows_check(filled, config, cutoffs))
    return GridOutcome(
        filled,
        checks,
        gaps_filled=len(gaps),
        steps_filled=int(gaps["missing"].sum()),
        gaps_per_series=per_series,
        set_aside=set_aside,
    )


def values_triage(
    frame: pd.DataFrame, config: PipelineConfig
) -> tuple[dict[str, str], CheckResult]:
    """Forecasting: the series set aside for their values, and the check that reports them."""
    problems = series_value_problems(frame, config)
    check = set_aside_check(
        "series_values_usable",
        "y",
        "y and covariates finite and y within [validation.y_min, validation.y_max], ids match "
        "validation.id_pattern; other series are set aside",
        problems,
        config,
    )
    return problems, check


def validate_frame(
    frame: pd.DataFrame,
    config: PipelineConfig,
    source: str,
    purpose: Purpose = "training",
    as_of: str | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """The repaired frame (sorted by unique_id, ds, with a boolean `imputed` column) and its
    report; raises DataValidationError.

    `as_of` (YYYY-MM-DD) first keeps only rows before that date's midnight in the source's zone;
    then rows past a series' last target (future covariate rows, with source.futr_exog) are
    kept out. `purpose="forecast"` asks only for look_back steps per series and sets a series
    aside (left out, named in the report) when it is short, stale, has bad values or a long gap;
    the night fails on structural problems or when more than `max_set_aside_share` of series are
    set aside. The calendar features are appended to the validated frame.
    """
    cut = cut_as_of(frame, as_of, config.source.timezone)
    pending = pending_rows(cut.frame, config)
    history = cut.frame[~pending].reset_index(drop=True) if pending.any() else cut.frame
    if all(key in history.columns for key in KEYS):
        work, repairs = sort_and_deduplicate(history)
    else:
        work, repairs = history.reset_index(drop=True), Repairs()
    checks = run_expectations(work, config, purpose)
    if config.source.stat_exog and structurally_sound(checks):
        checks.append(stat_constant_check(work, config))
    if structurally_sound(checks):
        triaged: dict[str, str] = {}
        if purpose == "forecast":
            triaged, values_check = values_triage(work, config)
            checks.append(values_check)
        else:
            checks.append(magnitude_check(work, config))
        repairable = all(c.status != "failed" for c in checks)
        outcome = grid_checks(work, config, repairable, purpose, cut.instant, triaged)
    else:
        outcome = GridOutcome(work, [skipped(name, column) for name, column in _GRID_CHECKS])
    repairs = repairs.model_copy(
        update={"gaps_filled": outcome.gaps_filled, "steps_filled": outcome.steps_filled}
    )
    checks = checks + outcome.checks
    result = outcome.frame
    if IMPUTED not in result.columns:
        result = result.assign(**{IMPUTED: False})
    set_aside = outcome.set_aside
    series = int(work["unique_id"].nunique()) if "unique_id" in work.columns else 0
    if purpose == "forecast" and "unique_id" in result.columns:
        need = required_length(config, purpose)
        short = short_series(result, need)
        set_aside = merge_reasons(
            set_aside,
            {str(sid): f"only {n} steps; a forecast needs {need}" for sid, n in short.items()},
        )
        result = result[~result["unique_id"].isin(list(set_aside))].reset_index(drop=True)
        checks.append(share_check(set_aside, series, config))
    report = ValidationReport(
        source=source,
        passed=all(check.status != "failed" for check in checks),
        rows_in=len(frame),
        rows_out=len(result),
        series=series,
        checks=checks,
        repairs=repairs,
        gaps_per_series=outcome.gaps_per_series,
        set_aside=set_aside,
        as_of=cut.as_of,
        as_of_utc=None if cut.instant is None else cut.instant.isoformat(),
        rows_after_as_of=cut.rows_dropped,
        future_rows=int(pending.sum()),
    )
    if not report.passed:
        raise DataValidationError(report)
    return with_calendar(result, config), report


def validation_key(
    config: PipelineConfig,
    ingested: ArtifactRef,
    purpose: Purpose = "training",
    as_of: str | None = None,
) -> str:
    """Content key: the checks' config (source for its time zone), purpose, as-of date, input
    bytes, code."""
    sections = config.digest("source", "features", "validation", "frequency", "window", "split")
    return content_key("validate", sections, purpose, as_of, ingested.sha256, code_version())


# -- Prefect task ----------------------------------------------------------------------------
@pipeline_task("validate")
def validate_task(
    config: PipelineConfig,
    ingested: ArtifactRef,
    purpose: Purpose = "training",
    as_of: str | None = None,
) -> ArtifactRef:
    """Validate the ingested frame as of a date; publish the report, and on failure also write
    it to the store. A validated artifact for the same input, settings and date is reused."""

    def compute(store: ArtifactStore) -> StepResult:
        log = run_logger()
        frame, _ = store.read_table(ingested)
        future = None
        if purpose == "forecast" and config.source.futr_exog:
            future = store.write_table(
                "validate-future",
                key,
                future_covariate_rows(frame, config, as_of),
                config_hash=config.digest(),
                inputs=[ingested],
                extra={"as_of": as_of, "futr_exog": list(config.source.futr_exog)},
            )
        report_key = f"validation-report-{config.name}"
        try:
            validated, report = validate_frame(frame, config, config.source.path, purpose, as_of)
        except DataValidationError as err:
            publish_markdown(report_key, report_markdown(err.report), "Validation report (failed)")
            report_uri = store.uri("reports", "validation", f"{key}.json")
            store.write_json(report_uri, err.report.model_dump(mode="json"))
            log.error("validation failed; report at %s\n%s", report_uri, err)
            raise
        publish_markdown(report_key, report_markdown(report), "Validation report (passed)")
        log.info(
            "validation passed as of %s: %d rows, %d series, repairs %s, %d series set aside",
            report.as_of or "(no cut)",
            report.rows_out,
            report.series,
            report.repairs,
            len(report.set_aside),
        )
        return validated, {
            "repairs": report.repairs.model_dump(),
            "series": report.series,
            "source": report.source,
            "set_aside": report.set_aside,
            "as_of": report.as_of,
            "as_of_utc": report.as_of_utc,
            "rows_after_as_of": report.rows_after_as_of,
            "future_rows": report.future_rows,
            # the futr_exog values known for the horizon (read by the predict step)
            "future": None if future is None else future.model_dump(),
        }

    key = validation_key(config, ingested, purpose, as_of)
    return produce_artifact(config, "validate", key, [ingested], compute)
