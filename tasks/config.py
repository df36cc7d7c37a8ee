"""The one typed configuration of a pipeline.

`PipelineConfig` is loaded from a TOML or YAML file with environment overrides, passed to the
flows as their parameter (so the Prefect UI shows and edits it), and hashed into artifact
metadata. No other module reads environment variables or hides defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "FORECAST__"
"""`FORECAST__WINDOW__LOOK_BACK=28` overrides `[window] look_back`; values are parsed as JSON
when they parse (numbers, lists, booleans), otherwise taken as strings."""


DEFAULT_FREQUENCY = "D"
CALENDAR_PREFIX = "cal_"
"""Generated calendar features are named cal_*: a source column may not take such a name."""


@dataclass(frozen=True)
class FrequencyDefaults:
    """What a config leaves out is taken from its frequency: the season and window, in steps."""

    kind: str
    season_length: int
    look_back: int
    horizon: int


# Defaults per kind of time grid, for one step of the kind's unit. The season is the grid's main
# cycle (the week in days, the day in hours, the year in weeks, months or quarters). look_back is a
# few seasons, so the model and seasonal naive (which needs one whole season) see the pattern more
# than once; horizon is the span people plan on: one season, two weeks for daily data, a quarter
# for weekly. Daily keeps the original 56/14/7, so existing configs and the demo do not change.
_KIND_DEFAULTS = {
    # the week; 8 weeks in, 2 weeks out (the M4 competition's daily horizon is 14 too)
    "daily": FrequencyDefaults("daily", 7, 56, 14),
    # the working week; the same 8 weeks in, 2 weeks out
    "business-daily": FrequencyDefaults("business-daily", 5, 40, 10),
    # the day; one week in (so the weekly pattern shows as well), the next day out (day-ahead)
    "hourly": FrequencyDefaults("hourly", 24, 168, 24),
    "half-hourly": FrequencyDefaults("half-hourly", 48, 336, 48),
    # the year of 52 weeks; two years in, a quarter out (M4's weekly horizon 13): a year ahead
    # would need series many years long before one test window fits
    "weekly": FrequencyDefaults("weekly", 52, 104, 13),
    # the year; three years in, a year out
    "monthly": FrequencyDefaults("monthly", 12, 36, 12),
    "quarterly": FrequencyDefaults("quarterly", 4, 12, 4),
}
_DAILY = _KIND_DEFAULTS["daily"]
_HALF_HOUR_NS = 30 * 60 * 10**9
_DEFAULTED = (("evaluation", "season_length"), ("window", "look_back"), ("window", "horizon"))


def _kind_and_units(frequency: str) -> tuple[str, int] | None:
    """The grid's kind and its step in units of that kind ("2h": hourly, 2), or None if unknown."""
    from pandas.tseries import offsets
    from pandas.tseries.frequencies import to_offset

    offset = to_offset(frequency)
    if offset.n < 1:
        return None
    if isinstance(offset, offsets.Day):  # a calendar day in pandas 3 (no longer a Tick)
        return "daily", offset.n
    if type(offset) is offsets.BusinessDay:  # not CustomBusinessDay: its week may not have 5 days
        return "business-daily", offset.n
    if isinstance(offset, offsets.Tick):  # h, 30min, 2h, 90min...: whole half hours only
        half_hours, rest = divmod(offset.nanos, _HALF_HOUR_NS)
        if rest or not half_hours:
            return None
        return ("hourly", half_hours // 2) if half_hours % 2 == 0 else ("half-hourly", half_hours)
    if isinstance(offset, offsets.Week):  # any anchor: W-SUN, W-MON...
        return "weekly", offset.n
    monthly = (
        offsets.MonthBegin,
        offsets.MonthEnd,
        offsets.BusinessMonthBegin,
        offsets.BusinessMonthEnd,
        offsets.CustomBusinessMonthBegin,
        offsets.CustomBusinessMonthEnd,
    )
    if isinstance(offset, monthly):
        return "monthly", offset.n
    quarterly = (
        offsets.QuarterBegin,
        offsets.QuarterEnd,
        offsets.BQuarterBegin,
        offsets.BQuarterEnd,
    )
    if isinstance(offset, quarterly):
        return "quarterly", offset.n
    return None


def frequency_defaults(frequency: str) -> FrequencyDefaults | None:
    """Season, look_back and horizon for a pandas offset alias, or None when there are none.

    A multiple divides the season and scales the window ("2h": 12, 84, 12); it has defaults only
    when the season stays a whole number of at least 2 steps ("2D" and "7D" have none). Raises
    ValueError when `frequency` is not an offset alias.
    """
    found = _kind_and_units(frequency)
    if found is None:
        return None
    kind, units = found
    base = _KIND_DEFAULTS[kind]
    season, rest = divmod(base.season_length, units)
    if rest or season < 2:
        return None
    return FrequencyDefaults(
        kind, season, math.ceil(base.look_back / units), math.ceil(base.horizon / units)
    )


def _given(section: Any) -> dict[str, Any] | None:
    """A section's explicitly given keys (a model's set fields), or None if it is not a section."""
    if section is None:
        return {}
    if isinstance(section, BaseModel):
        return {name: getattr(section, name) for name in section.model_fields_set}
    if isinstance(section, Mapping):
        return dict(section)
    return None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(_Section):
    """Where the raw data is and how its columns map onto `unique_id`, `ds`, `y`."""

    path: str = Field(description="File, folder or glob; a local path or any fsspec URL.")
    format: Literal["parquet", "csv"] = "parquet"
    layout: Literal["long", "wide"] = Field(
        "long", description="long: one row per (series, time); wide: one column per series."
    )
    id_column: str | None = Field("unique_id", description="Series id column (long layout).")
    time_column: str = "ds"
    target_column: str | None = Field("y", description="Target column (long layout).")
    series_columns: list[str] | None = Field(
        None, description="Wide layout: the columns holding series (default: all but time)."
    )
    hist_exog: list[str] = Field(
        default_factory=list,
        description="Observed covariates (weather, sales of other items): read over the past "
        "window only, never over the horizon.",
    )
    futr_exog: list[str] = Field(
        default_factory=list,
        description="Covariates known in advance (planned events, prices, schedules): read over "
        "the past window and the horizon; at forecast time the horizon's values come from rows "
        "past each series' last target (target empty) or from source.future_path.",
    )
    stat_exog: list[str] = Field(
        default_factory=list,
        description="Per-series attributes (store, region, category), constant in each series: "
        "text becomes one-hot columns named 'column=value', numbers stay numbers.",
    )
    future_path: str | None = Field(
        None,
        description="Optional file of future covariate rows (id, time and futr_exog columns; "
        "csv or parquet by suffix; without the id column a row applies to every series).",
    )
    timestamp_format: str | None = Field(
        None, description="strftime format for text timestamps, e.g. '%Y-%m-%d'."
    )
    timezone: str = Field("UTC", description="Zone of naive timestamps; all are stored as UTC.")

    @model_validator(mode="before")
    @classmethod
    def _covariates_is_hist_exog(cls, data: Any) -> Any:
        """`covariates` (before hist/futr/stat existed) was read over the past window only,
        which is what hist_exog means: kept as its deprecated alias so old configs still run."""
        if not isinstance(data, Mapping) or "covariates" not in data:
            return data
        data = dict(data)
        old = data.pop("covariates")
        if data.get("hist_exog"):
            raise ValueError(
                "source.covariates and source.hist_exog are both given: covariates is the "
                "deprecated name of hist_exog; move its columns to hist_exog (observed values) or "
                "futr_exog (known in advance) and remove covariates"
            )
        warnings.warn(
            "source.covariates is deprecated: it now means source.hist_exog (past window only); "
            "rename it, and move columns known in advance to source.futr_exog",
            FutureWarning,
            stacklevel=2,
        )
        data["hist_exog"] = old
        return data

    @model_validator(mode="after")
    def _layout_columns(self) -> SourceConfig:
        if self.layout == "long" and (self.id_column is None or self.target_column is None):
            raise ValueError("layout 'long' needs both id_column and target_column")
        if self.layout == "wide" and self.stat_exog:
            raise ValueError(
                "source.stat_exog needs layout 'long': a wide file has no per-series attribute rows"
            )
        named = {
            "hist_exog": self.hist_exog,
            "futr_exog": self.futr_exog,
            "stat_exog": self.stat_exog,
        }
        seen: dict[str, str] = {}
        reserved = {self.id_column, self.time_column, self.target_column, None}
        for role, columns in named.items():
            for column in columns:
                if column in reserved:
                    raise ValueError(f"source.{role} names {column!r}, the id, time or target")
                if column in seen:
                    raise ValueError(
                        f"column {column!r} is in source.{seen[column]} and source.{role}: "
                        "a covariate has one role"
                    )
                if column.startswith(CALENDAR_PREFIX) or "=" in column:
                    raise ValueError(
                        f"source.{role} column {column!r}: names starting with "
                        f"{CALENDAR_PREFIX!r} or holding '=' are reserved for generated features"
                    )
                seen[column] = role
        return self

    @property
    def exog(self) -> list[str]:
        """Every covariate column read from the source, in feature order: hist, futr, stat."""
        return [*self.hist_exog, *self.futr_exog, *self.stat_exog]

    @property
    def numeric_exog(self) -> list[str]:
        """The time-varying covariates (float64 everywhere): hist_exog then futr_exog."""
        return [*self.hist_exog, *self.futr_exog]


class FeaturesConfig(_Section):
    """Features generated from the timestamps, known for any future date (so futr features)."""

    calendar: bool = Field(
        True,
        description="Calendar features from ds in source.timezone, as sin/cos pairs: hour of day "
        "and day of week (sub-daily), day of week and day of year (daily), week of year "
        "(weekly), month (monthly), quarter (quarterly).",
    )
    holidays_country: str | None = Field(
        None,
        description="Add cal_holiday (1 on public holidays of this country, by the local date), "
        "from the `holidays` library: an ISO code such as 'US', 'DE', 'GB'.",
    )
    holidays_subdivision: str | None = Field(
        None, description="A subdivision of holidays_country (state, province): 'IL', 'BY'."
    )

    @model_validator(mode="after")
    def _holidays_are_known(self) -> FeaturesConfig:
        if self.holidays_subdivision is not None and self.holidays_country is None:
            raise ValueError("features.holidays_subdivision needs features.holidays_country")
        if self.holidays_country is None:
            return self
        import holidays

        supported = holidays.list_supported_countries()
        country = self.holidays_country
        if country not in supported:
            raise ValueError(
                f"features.holidays_country {country!r} is not a country the holidays library "
                f"knows; use an ISO 3166 code such as {', '.join(sorted(supported)[:8])}, ..."
            )
        subdivision = self.holidays_subdivision
        if subdivision is not None and subdivision not in supported[country]:
            raise ValueError(
                f"features.holidays_subdivision {subdivision!r} is not a subdivision of "
                f"{country}; known: {', '.join(supported[country])}"
            )
        return self


class ValidationConfig(_Section):
    """What is repaired (and counted) and what is rejected; see docs/validation.md."""

    max_gap_fill: int = Field(
        3, ge=0, description="Gaps up to this many missing steps are interpolated; longer reject."
    )
    y_min: float | None = None
    y_max: float | None = None
    id_pattern: str = Field(
        # Ordinary names pass ("Main Street (North)", "O'Brien & Sons, Ltd."); refused: empty,
        # over 128 characters, leading or trailing whitespace, "." and "..", path separators,
        # control and invisible direction characters. \Z, not $: $ also matches before a final
        # newline.
        r"^(?=.{1,128}\Z)(?!\s)(?!.*\s\Z)(?!\.\.?\Z)"
        r"[^/\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+\Z",
        description="Series ids must match this regex (Python `re`, searched). The default takes "
        "any printable name of 1 to 128 characters with no leading or trailing whitespace, no "
        "path separator (/ or \\), no control or invisible characters, and not '.' or '..'.",
    )
    max_series: int = Field(100_000, ge=1)
    max_staleness: int = Field(
        3,
        ge=0,
        description="Forecasting: a series missing more than this many latest steps is set aside.",
    )
    max_set_aside_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Forecasting: the night fails when more than this share of series is set aside.",
    )
    max_magnitude_ratio: float | None = Field(
        1e6,
        gt=1,
        description="A y or covariate value farther from its series' median than this many times "
        "the series' typical magnitude (the larger of its interquartile range and |median|; for "
        "a mostly-zero series its median non-zero |value|) is absurd, a corrupt or mis-scaled "
        "value such as 1e300: training fails naming the rows, a forecast sets the series "
        "aside. None: no check.",
    )
    max_failed_rows_shown: int = Field(5, ge=1, le=100)
    extra_expectations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="GX expectations added to the bundled suite, as {'type': ..., 'kwargs': {...}}.",
    )


class WindowConfig(_Section):
    """Steps in and out of the model. In a pipeline, look_back and horizon follow `frequency`
    unless given (see `frequency_defaults`); the defaults here are the daily ones."""

    look_back: int = Field(
        _DAILY.look_back, ge=1, description="Input steps; default from frequency (daily 56)."
    )
    horizon: int = Field(
        _DAILY.horizon, ge=1, description="Forecast steps; default from frequency (daily 14)."
    )
    stride: int = Field(1, ge=1)


class SplitConfig(_Section):
    """Chronological per-series split; the test share is what remains."""

    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_test(self) -> SplitConfig:
        if self.train + self.validation >= 1:
            raise ValueError("train + validation must be below 1 so a test split remains")
        return self

    @property
    def test(self) -> float:
        return 1.0 - self.train - self.validation


class ScalingConfig(_Section):
    method: Literal["standard", "minmax"] = "standard"


class ModelConfig(_Section):
    preset: Literal["univariate", "multivariate", "stacked", "custom"] = "multivariate"
    units: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64])
    dropout: float = Field(0.0, ge=0, lt=1)
    activation: Literal["tanh", "relu"] = Field(
        "tanh", description="tanh keeps the cuDNN kernel on GPU; relu (the seed's) does not."
    )
    loss: Literal["pinball", "mse", "mae", "huber"] = Field(
        "pinball",
        description="pinball: one output per model.quantiles (the median is yhat), trained with "
        "the pinball loss; mse, mae and huber give a point forecast only.",
    )
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9],
        description="Quantiles forecast with loss = pinball; must include the median 0.5.",
    )
    calibrate_quantiles: bool = Field(
        True,
        description="Stretch each quantile's distance from the median so that its coverage on "
        "the validation windows is nominal (the same factors serve the refit model).",
    )
    normalization: Literal["window", "series"] = Field(
        "window",
        description="window: each input window's target is scaled by its own mean and spread "
        "(as RevIN/DeepAR do), so a series' level today matters, not its training-era level; "
        "series: the per-series scaler alone.",
    )
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = Field(3e-3, gt=0)
    reference: Literal["none", "seasonal_naive"] = Field(
        "seasonal_naive",
        description="seasonal_naive: the model learns a correction to the seasonal-naive "
        "forecast (period evaluation.season_length), so untrained it is seasonal naive.",
    )

    @model_validator(mode="after")
    def _quantiles_hold_the_median(self) -> ModelConfig:
        if len(set(self.quantiles)) != len(self.quantiles):
            raise ValueError(f"model.quantiles lists a quantile twice: {self.quantiles}")
        if self.loss == "pinball" and 0.5 not in self.quantiles:
            raise ValueError(
                f"model.quantiles = {self.quantiles} must include 0.5: the median is yhat"
            )
        return self

    @property
    def forecast_quantiles(self) -> tuple[float, ...]:
        """The quantiles the model forecasts, sorted; none for a point loss."""
        return tuple(sorted(self.quantiles)) if self.loss == "pinball" else ()


class TrainingConfig(_Section):
    epochs: int = Field(20, ge=1)
    ensemble_size: int = Field(
        3, ge=1, le=16, description="Seeds trained together; the forecast is their median."
    )
    refit: bool = Field(
        True,
        description="Serve a model refit on the whole history up to the cut for the epoch count "
        "chosen on validation; the model scored on the test windows is fitted on the train rows.",
    )
    batch_size: int = Field(256, ge=1)
    patience: int = Field(3, ge=0)
    seed: int = 42
    max_train_windows: int | None = Field(
        None,
        ge=1,
        description="Cap on training windows per epoch, and on the validation windows scored "
        "after each epoch (both evenly spaced over series and time), for speed.",
    )


BaselineName = Literal["naive", "seasonal_naive", "sf_seasonal_naive", "auto_ets", "auto_theta"]
"""naive and seasonal_naive are ours (numpy, instant); sf_seasonal_naive, auto_ets and
auto_theta are statsforecast's SeasonalNaive, AutoETS and AutoTheta, refitted per window."""


class EvaluationConfig(_Section):
    season_length: int = Field(
        _DAILY.season_length,
        ge=1,
        description="Seasonal-naive period in steps; default from frequency (daily 7).",
    )
    plot_series: int = Field(4, ge=0, description="Series in the evaluation plot; 0: no plot.")
    backtest_folds: int = Field(0, ge=0, description="Rolling-origin folds; 0 disables.")
    baselines: list[BaselineName] = Field(
        default_factory=lambda: ["naive", "seasonal_naive"],
        description="Baselines scored beside the model. The statsforecast ones (auto_ets, "
        "auto_theta, sf_seasonal_naive) fit once per test window: see baseline_time_budget_s.",
    )
    baseline_time_budget_s: float = Field(
        60.0,
        gt=0,
        description="Wall-clock budget for the statsforecast baselines. When the time measured "
        "on a first batch of fits says all series would not fit, they are scored on a seeded "
        "sample of series (and the model on the same sample for the gate); reports say so.",
    )
    baseline_seed: int = Field(0, description="Seed of the series sample order.")
    baseline_n_jobs: int = Field(
        0, ge=0, description="Worker processes for the statsforecast fits; 0: one per core."
    )
    baseline_max_history: int = Field(
        256,
        ge=1,
        description="statsforecast baselines fit on at most this many rows before each origin "
        "(the recent tail): an ETS fit's cost grows with its history.",
    )
    gate_must_beat: BaselineName | Literal["none"] = "seasonal_naive"
    gate_max_regression: float = Field(
        0.0, ge=0, description="Allowed relative MASE loss against the current champion."
    )
    gate_on_incomparable: Literal["refuse", "baseline_only"] = Field(
        "refuse",
        description="When the champion cannot be scored on the test windows (another horizon, "
        "no series in common): refuse keeps it; baseline_only decides on the baseline alone.",
    )

    @model_validator(mode="after")
    def _gate_baseline_is_scored(self) -> EvaluationConfig:
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"evaluation.baselines lists a baseline twice: {self.baselines}")
        if self.gate_must_beat != "none" and self.gate_must_beat not in self.baselines:
            raise ValueError(
                f"evaluation.gate_must_beat = {self.gate_must_beat!r} is not among "
                f"evaluation.baselines {self.baselines}: add it there or set it to 'none'"
            )
        statistical = set(self.baselines) - {"naive", "seasonal_naive"}
        if statistical and self.baseline_max_history < 2 * self.season_length:
            raise ValueError(
                f"evaluation.baseline_max_history = {self.baseline_max_history} is below two "
                f"seasons (evaluation.season_length = {self.season_length})"
            )
        return self


class ForecastConfig(_Section):
    """The nightly forecast."""

    fallback: bool = Field(
        True,
        description="Until a model has passed the gate, publish a forecast by "
        "forecast.fallback_model (labelled as such) instead of failing the night.",
    )
    fallback_model: BaselineName = Field(
        "seasonal_naive",
        description="The fallback's model (any evaluation baseline name); the forecast file's "
        "`model` column names it.",
    )
    min_series_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A night is published only if it forecasts at least this share of the series"
        " in the latest forecast at or before it (that night's own file when replaying it, else "
        "the previous night's); otherwise the night fails and that file is left as it was. "
        "A night with no series forecast is never published.",
    )


class StorageConfig(_Section):
    root: str = Field("var/store", description="Local folder or fsspec URL (s3://bucket/prefix).")
    retention_days: int = Field(
        30,
        ge=1,
        description="`forecast gc` removes what is older: artifacts, reports, checkpoints, forecast"
        " partitions, non-champion model versions (never the champion or its lineage).",
    )


class ScheduleConfig(_Section):
    """When the deployments run (cron in `timezone`); used by `forecast serve`."""

    nightly_forecast_cron: str = "0 2 * * *"
    weekly_retrain_cron: str = "0 3 * * 0"
    timezone: str = "UTC"


TuneLoss = Literal["pinball", "mse", "mae", "huber"]
"""Losses `forecast tune` may try (pinball: quantiles, scored on their median)."""


class TuneConfig(_Section):
    """`forecast tune`: the hyperparameter search (see docs/tuning.md).

    Ranges are [low, high] (inclusive; low = high fixes the value), lists are the choices tried.
    """

    trials: int = Field(20, ge=1, description="Trials at most.")
    time_budget_s: float = Field(
        3600.0,
        gt=0,
        description="No trial starts after this many seconds of search; running trials finish.",
    )
    seed: int = Field(0, description="Seed of the sampler (Optuna's TPE).")
    max_workers: int = Field(
        2, ge=1, description="Trials run at once (threads of the flow's ThreadPoolTaskRunner)."
    )
    look_back: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        min_length=1,
        description="look_back values tried (each gets its own window artifact); default: half, "
        "once and twice window.look_back.",
    )
    units: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [16, 128],
        min_length=2,
        max_length=2,
        description="[low, high] LSTM units per layer (log scale).",
    )
    layers: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 2],
        min_length=2,
        max_length=2,
        description="[low, high] stacked LSTM layers (more than 1: model.preset 'custom').",
    )
    dropout: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: [0.0, 0.3], min_length=2, max_length=2, description="[low, high]."
    )
    learning_rate: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [3e-4, 1e-2],
        min_length=2,
        max_length=2,
        description="[low, high] (log scale).",
    )
    batch_size: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64, 128, 256, 512], min_length=1, description="Choices."
    )
    loss: list[TuneLoss] = Field(
        default_factory=lambda: ["pinball", "mae", "mse", "huber"],
        min_length=1,
        description="Choices.",
    )

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> TuneConfig:
        for name in ("units", "layers", "dropout", "learning_rate"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"tune.{name} = [{low}, {high}]: low must not exceed high")
        return self


class PipelineConfig(_Section):
    """A whole pipeline: data, checks, windows, model, training, gates and storage."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
    frequency: str = Field(
        DEFAULT_FREQUENCY,
        description="pandas offset alias of the time grid: D, h, W-SUN...; it sets the defaults of"
        " evaluation.season_length, window.look_back and window.horizon.",
    )
    source: SourceConfig
    features: FeaturesConfig = FeaturesConfig()
    validation: ValidationConfig = ValidationConfig()
    window: WindowConfig = WindowConfig()
    split: SplitConfig = SplitConfig()
    scaling: ScalingConfig = ScalingConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    forecast: ForecastConfig = ForecastConfig()
    storage: StorageConfig = StorageConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_frequency(cls, data: Any) -> Any:
        """Fill season_length, look_back and horizon from the frequency where they are not given.

        Before validation, so a given value (file, environment, UI) always wins and a missing one
        never takes the section's daily default unnoticed; the filled values are plain fields,
        shown by `model_dump` and hashed by `digest`.
        """
        if not isinstance(data, Mapping):
            return data
        frequency = data.get("frequency", DEFAULT_FREQUENCY)
        sections = {name: _given(data.get(name)) for name in ("window", "evaluation")}
        if not isinstance(frequency, str) or any(v is None for v in sections.values()):
            return data  # field validation names the bad value
        missing = [(name, key) for name, key in _DEFAULTED if key not in sections[name]]
        if not missing:
            return data
        try:
            defaults = frequency_defaults(frequency)
        except ValueError:
            return data  # _frequency_is_known names it
        if defaults is None:
            names = [f"{name}.{key}" for name, key in missing]
            keys = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise ValueError(
                f"frequency {frequency!r} has no default season_length, look_back or horizon "
                "(there are defaults for daily, business-daily, hourly, half-hourly, weekly, "
                "monthly and quarterly grids, and multiples that keep a whole season of at least "
                f"2 steps): set {keys}"
            )
        data = dict(data)
        for name, key in missing:
            sections[name][key] = getattr(defaults, key)
            data[name] = sections[name]
        return data

    @model_validator(mode="after")
    def _frequency_is_known(self) -> PipelineConfig:
        import pandas as pd

        try:
            pd.tseries.frequencies.to_offset(self.frequency)
        except ValueError as err:
            raise ValueError(f"frequency {self.frequency!r} is not a pandas offset alias") from err
        return self

    def digest(self, *sections: str) -> str:
        """sha256 of the whole config, or of the named sections only (for per-step cache keys)."""
        data = self.model_dump(mode="json")
        if sections:
            data = {name: data[name] for name in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class ConfigError(ValueError):
    """A config file that does not load; the message names the file, the key and what is allowed."""


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from `FORECAST__SECTION__KEY=value` variables."""
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        node = overrides
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _parse_env_value(raw)
    return overrides


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_overrides(config: PipelineConfig, overrides: Mapping[str, Any]) -> PipelineConfig:
    """`config` with nested `overrides` applied, validated again as a whole."""
    return PipelineConfig.model_validate(_merge(config.model_dump(), overrides))


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        return yaml.safe_load(text) or {}
    raise ConfigError(f"{path}: config files must end in .toml, .yaml or .yml")


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        # a top-level error's input is the whole config: its message names the value instead
        shown = problem["type"] != "missing" and problem["loc"]
        got = f" (got {problem['input']!r})" if shown else ""
        lines.append(f"  {key}: {problem['msg']}{got}")
    return "\n".join(lines)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read a TOML/YAML config, apply `FORECAST__…` environment overrides, validate.

    Relative `source.path` and `storage.root` are resolved against the config file's folder,
    so a config works from any working directory.
    """
    path = Path(path)
    try:
        data = _read_file(path)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except (tomllib.TOMLDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: cannot parse: {err}") from err
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    data = _resolve_relative_paths(data, path.parent.resolve())
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None


def _is_url(location: str) -> bool:
    return "://" in location


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(data)
    for section, key in (("source", "path"), ("source", "future_path"), ("storage", "root")):
        node = data.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            location = node[key]
            if not _is_url(location) and not Path(location).is_absolute():
                data[section] = {**node, key: os.path.normpath(base / location)}
    return data
