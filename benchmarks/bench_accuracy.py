"""Accuracy: the pipeline's LSTM against statsforecast's baselines and NeuralForecast's NHITS.

One run scores, on each panel, the same forecast windows by:

  lstm            the pipeline's default config (its seed ensemble: training.ensemble_size),
                  trained through the pipeline's own step functions (`fit_pipeline_forecaster`)
  lstm_single     the same config with training.ensemble_size = 1
  seasonal_naive  statsforecast SeasonalNaive  } refitted at every origin on the series' recent
  auto_ets        statsforecast AutoETS        } history (evaluation.baseline_max_history rows,
  auto_theta      statsforecast AutoTheta      } the pipeline's own bound), one process
  nhits           NeuralForecast NHITS (MQLoss, the 0.1/0.5/0.9 quantiles as level 80), trained
                  once at the LSTM's wall-clock budget: timed pilot fits measure seconds per
                  step and set-up, max_steps is sized so the fit takes about the default LSTM's
                  measured fit time, and Lightning's max_time (that same time) is the hard stop.
                  Its inputs: look_back steps (input_size), the config's covariates as
                  hist_exog (as the LSTM reads them: inside the input window), robust scaling.

Panels
  chicago  the bundled Chicago L panel (configs/chicago.toml): 4 rolling origins of 14 days at
           its end (end-56d, end-42d, end-28d, end-14d). The LSTM and NHITS train once on the
           rows before the first origin, as the nightly service does, and forecast each origin
           from the rows before it.
  m3       M3 monthly (1,428 series, read from ../shared/data beside the repo or --m3 PATH, never
           copied into the repo): one origin, the official 18-month test block. Config: frequency
           MS with the pipeline's monthly defaults (season 12) except horizon 18 and look_back
           24: the default 36 + 18 = 54 rows exceed the shortest series' 48 training months, so
           those series would never give a training window; 24 is two seasons (what seasonal
           naive and the model need to see the yearly cycle twice) and 24 + 18 = 42 <= 48 leaves
           every series training windows on its whole history. Chosen from the data's shape, not
           tuned on the test block.

Metrics, per model over all windows (n windows x horizon values), in original units:
  MASE            `lstm_model.metrics`: per series, MAE / in-sample seasonal-naive MAE of the
                  rows before the (first) origin (season 7 for chicago, 12 for m3)
  sMAPE           `lstm_model.metrics` (percent, 0..200)
  scaled pinball  mean over the quantiles 0.1, 0.5, 0.9 of the pinball loss over the same scale
  coverage 80     share of actuals within [q0.1, q0.9]
  wall s          fit + predict of every origin
Point forecasts are the median (LSTM with quantiles, NHITS) or the mean (statsforecast, whose
80% intervals are symmetric about it). A point forecaster gets NaN pinball and coverage.
Then ratios against SeasonalNaive and AutoETS and the issue's goals for the default LSTM:
beats AutoETS on MASE, at least level with NHITS, beats SeasonalNaive by >= 10%, 80% coverage
within 75-85%. The machine load (os.getloadavg) is printed at start and end: the machine is
shared and the wall times move with it.

Flags: --panels chicago,m3; --quick (a smoke run: 3 Chicago and 24 M3 series, 1 epoch, 2,048
training windows, 5 NHITS steps); --out FILE (.json or .md: the tables written there too);
--m3 PATH. A full run takes tens of minutes on 2 cores (two LSTMs and NHITS per panel).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lstm_model.forecasters import Forecaster, forecast_quantiles_of, model_forecaster  # noqa: E402
from lstm_model.metrics import OVERALL, metrics_table, seasonal_naive_scales  # noqa: E402
from tasks.config import PipelineConfig, load_config, with_overrides  # noqa: E402
from tasks.ingest import read_source  # noqa: E402
from tasks.normalize import (  # noqa: E402
    SplitCutoffs,
    check_sorted,
    feature_columns,
    feature_roles,
    normalize,
    observed_ds,
    stat_feature_names,
)
from tasks.train import input_features, train_model  # noqa: E402
from tasks.validate import with_calendar  # noqa: E402
from tasks.window import (  # noqa: E402
    WindowedData,
    require_training_windows,
    utc_datetimes,
    window_index,
    window_spec,
    windows_per_split,
)

REPO = Path(__file__).resolve().parents[1]
CHICAGO_CONFIG = REPO / "configs" / "chicago.toml"
DEFAULT_M3 = REPO.parent / "shared" / "data" / "m3_monthly.parquet"
PANELS = ("chicago", "m3")

QUANTILES = (0.1, 0.5, 0.9)
LEVEL = 80  # the central interval [q0.1, q0.9]
COVERAGE_GOAL = (0.75, 0.85)
SNAIVE_MARGIN = 0.9  # "beats SeasonalNaive by >= 10%": MASE ratio at most 0.9

CHICAGO_ORIGINS = 4
M3_HORIZON = 18
M3_LOOK_BACK = 24  # see the module docstring: two seasons, and 24 + 18 <= 48 training months
M3_COLUMNS = {"series_id", "timestamp", "target", "is_test"}

QUICK_SERIES = {"chicago": 3, "m3": 24}
QUICK_TRAINING = {"epochs": 1, "max_train_windows": 2048}
QUICK_NHITS_STEPS = 5
NHITS_PILOT_STEPS = (10, 30)  # two pilot fits: seconds per step and set-up
NHITS_MAX_STEPS = 100_000  # cap when sizing by the pilot; the budget decides
SEED = 42

STATSFORECAST = {
    "seasonal_naive": "SeasonalNaive",
    "auto_ets": "AutoETS",
    "auto_theta": "AutoTheta",
}
LSTM_MODELS = ("lstm", "lstm_single")
ALL_MODELS = (*LSTM_MODELS, *STATSFORECAST, "nhits")


# -- the pipeline's model ---------------------------------------------------------------------
def fit_pipeline_forecaster(frame: pd.DataFrame, config: PipelineConfig) -> Forecaster:
    """Train the pipeline's model on `frame` (contract rows, sorted by unique_id, ds) with
    `config`, and return the model it would serve, as a Forecaster.

    The rows are split at one common calendar cutoff into train and validation in the ratio
    split.train : split.validation (no test split: the benchmark's origins are the test), then
    the pipeline's own steps run: calendar features (as validation adds them), normalize,
    window_index and train_model (fit, quantile calibration on validation, refit on every
    window up to the cut when training.refit). The served model is returned, as the nightly
    service would use it.
    """
    frame = with_calendar(frame, config)
    check_sorted(frame)
    instants = np.unique(utc_datetimes(observed_ds(frame)))
    if instants.size < 3:
        raise ValueError(f"cannot train on {instants.size} distinct timestamp(s)")
    split = config.split
    share = split.train / (split.train + split.validation)
    i_train = int(np.clip(math.floor(instants.size * share + 1e-9), 1, instants.size - 1))
    cutoffs = SplitCutoffs(
        train_end=pd.Timestamp(instants[i_train], tz=UTC),
        validation_end=pd.Timestamp(instants[-1], tz=UTC) + pd.Timedelta(1, "us"),
    )
    normalized, scaler = normalize(frame, config, cutoffs)
    spec = window_spec(config)
    index = window_index(normalized, spec)
    require_training_windows(windows_per_split(index), spec)
    stat_features = stat_feature_names(frame, config)
    features = feature_columns(config, stat_features)
    by_split = {name: index[index["split"] == name] for name in ("train", "validation", "test")}
    data = WindowedData(
        values=np.ascontiguousarray(normalized[features].to_numpy(dtype=np.float32)),
        starts={name: part["start"].to_numpy(dtype=np.int64) for name, part in by_split.items()},
        unique_ids={name: part["unique_id"].to_numpy() for name, part in by_split.items()},
        spec=spec,
        features=features,
        scaler=scaler,
        ds=utc_datetimes(normalized["ds"]),
        feature_roles=feature_roles(config, stat_features),
    )
    trained = train_model(data, config, backup_dir=None)
    return model_forecaster(trained.served, scaler, input_features(config, features), trained.spec)


def parse_setting(text: str) -> dict[str, Any]:
    """`section.key=value` (value as JSON when it parses, else a string) as nested overrides."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ValueError(f"--set {text!r}: expected section.key=value, e.g. model.loss=mae")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return {parts[0]: {parts[1]: value}}


def lstm_configs(
    config: PipelineConfig, quick: bool, settings: Sequence[str] = ()
) -> dict[str, PipelineConfig]:
    """The default config (its seed ensemble) and the same with one member; `settings`
    (`section.key=value`, for ablations) change both."""
    if quick:
        config = with_overrides(config, {"training": QUICK_TRAINING})
    for setting in settings:
        config = with_overrides(config, parse_setting(setting))
    return {
        "lstm": config,
        "lstm_single": with_overrides(config, {"training": {"ensemble_size": 1}}),
    }


# -- panels -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Panel:
    """Contract rows (unique_id, ds in UTC, y, covariates; sorted) and the forecast origins.

    Every series has a window at every origin: `horizon` actual rows from the origin on.
    """

    name: str
    frame: pd.DataFrame
    origins: tuple[np.datetime64, ...]  # UTC, first target step of each window
    horizon: int
    season: int
    frequency: str  # pandas alias, for statsforecast and NeuralForecast
    timezone: str  # local calendar of the grid (statsforecast and NHITS get naive local times)
    look_back: int  # the LSTM's input rows; NHITS's input_size
    covariates: tuple[str, ...] = ()
    config: PipelineConfig | None = None  # the LSTM's (None: no LSTM on this panel)
    max_history: int = 256  # statsforecast fits on at most this many recent rows
    notes: tuple[str, ...] = ()

    @property
    def ds_utc(self) -> np.ndarray:
        return utc_datetimes(self.frame["ds"])

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """(n,) origin row of each window (origin-major, series sorted) and its origin number."""
        ds, ids = self.ds_utc, self.frame["unique_id"].to_numpy().astype(str)
        series = np.unique(ids)
        ends, folds = [], []
        for fold, origin in enumerate(self.origins):
            rows = np.flatnonzero(ds == origin)
            last = np.minimum(rows + self.horizon - 1, len(ids) - 1)
            whole = (ids[last] == ids[rows]) & (rows + self.horizon <= len(ids)) & (rows > 0)
            whole &= ids[np.maximum(rows - 1, 0)] == ids[rows]
            found = set(ids[rows[whole]])
            missing = [uid for uid in series if uid not in found]
            if missing:
                raise ValueError(
                    f"{self.name}: series {missing[:5]} ({len(missing)} in all) lack history "
                    f"before, or {self.horizon} rows from, origin {pd.Timestamp(origin)}"
                )
            ends.append(rows)
            folds.append(np.full(rows.size, fold))
        return np.concatenate(ends), np.concatenate(folds)

    def before(self, origin: np.datetime64) -> pd.DataFrame:
        """The rows before `origin` (UTC), still sorted."""
        return self.frame[self.ds_utc < origin].reset_index(drop=True)

    def scales(self) -> pd.Series:
        """MASE denominator per series: seasonal-naive MAE of the rows before the first origin."""
        return seasonal_naive_scales(self.before(self.origins[0]), self.season)

    def local(self, frame: pd.DataFrame) -> pd.DataFrame:
        """unique_id, ds (naive local times), y and covariates, for statsforecast and NHITS."""
        out = frame[["unique_id", "ds", "y", *self.covariates]].copy()
        ds = out["ds"]
        if getattr(ds.dt, "tz", None) is not None:
            out["ds"] = ds.dt.tz_convert(self.timezone).dt.tz_localize(None)
        out["unique_id"] = out["unique_id"].astype(str)
        return out


def spread_ids(ids: Sequence[str], count: int) -> list[str]:
    """`count` of the sorted ids, evenly spread (deterministic), for --quick."""
    unique = sorted(set(ids))
    if count >= len(unique):
        return unique
    return [unique[i] for i in np.linspace(0, len(unique) - 1, count).round().astype(int)]


def keep_series(frame: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    return frame[frame["unique_id"].isin(list(ids))].reset_index(drop=True)


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def chicago_panel(quick: bool, config_path: Path = CHICAGO_CONFIG) -> Panel:
    """The bundled Chicago L panel, 4 origins of 14 days at its end."""
    config = load_config(config_path)
    frame = sorted_frame(read_source(config.source))
    if quick:
        frame = keep_series(frame, spread_ids(frame["unique_id"], QUICK_SERIES["chicago"]))
    horizon = config.window.horizon
    instants = np.unique(utc_datetimes(frame["ds"]))
    origins = tuple(instants[-k * horizon] for k in range(CHICAGO_ORIGINS, 0, -1))
    return Panel(
        name="chicago",
        frame=frame,
        origins=origins,
        horizon=horizon,
        season=config.evaluation.season_length,
        frequency=config.frequency,
        timezone=config.source.timezone,
        look_back=config.window.look_back,
        covariates=tuple(config.source.hist_exog),  # NHITS reads them as hist_exog too
        config=config,
        max_history=config.evaluation.baseline_max_history,
        notes=(f"config {config_path.relative_to(REPO)}",),
    )


def m3_config(path: Path) -> PipelineConfig:
    """Monthly defaults (season 12) except horizon 18 (M3's) and look_back 24 (docstring)."""
    return PipelineConfig.model_validate(
        {
            "name": "m3-monthly",
            "frequency": "MS",
            "source": {
                "path": str(path),
                "id_column": "series_id",
                "time_column": "timestamp",
                "target_column": "target",
            },
            "window": {"look_back": M3_LOOK_BACK, "horizon": M3_HORIZON},
            # M3 ships no dates: its synthetic months carry no calendar (data/README.md).
            "features": {"calendar": False},
        }
    )


def m3_panel(path: Path, quick: bool) -> Panel:
    """M3 monthly with its official test block (is_test: the last 18 months of every series)."""
    config = m3_config(path)
    raw = pd.read_parquet(path)
    missing = M3_COLUMNS - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {list(raw.columns)}")
    test = raw[raw["is_test"].astype(bool)]
    first_test = test.groupby("series_id")["timestamp"].min()
    test_rows = test.groupby("series_id").size()
    if first_test.nunique() != 1 or (test_rows != M3_HORIZON).any():
        raise ValueError(
            f"{path}: the test block must be the same {M3_HORIZON} months for every series; "
            f"first test months {first_test.unique()[:5]}, test rows {test_rows.unique()[:5]}"
        )
    origin = pd.Timestamp(first_test.iloc[0])
    late_train = raw[~raw["is_test"].astype(bool) & (raw["timestamp"] >= origin)]
    if len(late_train):
        raise ValueError(f"{path}: training rows at or after the test block {late_train.head()}")
    frame = sorted_frame(read_source(config.source))
    if quick:
        frame = keep_series(frame, spread_ids(frame["unique_id"], QUICK_SERIES["m3"]))
    origin_utc = utc_datetimes(pd.Series([origin.tz_localize("UTC")]))[0]
    return Panel(
        name="m3",
        frame=frame,
        origins=(origin_utc,),
        horizon=M3_HORIZON,
        season=config.evaluation.season_length,
        frequency=config.frequency,
        timezone="UTC",
        look_back=config.window.look_back,
        config=config,
        max_history=config.evaluation.baseline_max_history,
        notes=(f"data {path}", f"look_back {M3_LOOK_BACK}, horizon {M3_HORIZON}"),
    )


# -- metrics ----------------------------------------------------------------------------------
def _usable_scale(scale: np.ndarray) -> np.ndarray:
    return (scale > 0) & np.isfinite(scale)


def scaled_pinball(
    y_true: np.ndarray, forecasts: np.ndarray, quantiles: Sequence[float], scale: np.ndarray
) -> float:
    """Mean over windows of (mean over steps and quantiles of the pinball loss) / window scale.

    `y_true` (n, horizon), `forecasts` (n, horizon, len(quantiles)), `scale` (n,) the MASE
    denominator of each window's series; windows whose scale is 0 or NaN are left out, as MASE
    does. TODO: moves to lstm_model.metrics at merge (another helper is adding it there).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    forecasts = np.asarray(forecasts, dtype=np.float64)
    tau = np.asarray(quantiles, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if forecasts.shape != (*y_true.shape, tau.size) or scale.shape != y_true.shape[:1]:
        raise ValueError(
            f"y_true {y_true.shape}, forecasts {forecasts.shape}, {tau.size} quantiles and "
            f"scale {scale.shape} do not fit together"
        )
    error = y_true[..., None] - forecasts
    loss = np.maximum(tau * error, (tau - 1.0) * error).reshape(len(y_true), -1).mean(axis=1)
    usable = _usable_scale(scale)
    if not usable.any():
        return float("nan")
    return float(np.mean(loss[usable] / scale[usable]))


def interval_coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals within [lower, upper] (bounds included), over every value.

    TODO: moves to lstm_model.metrics at merge (another helper is adding it there).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if not y_true.shape == lower.shape == upper.shape:
        raise ValueError(f"y_true {y_true.shape}, lower {lower.shape}, upper {upper.shape} differ")
    if y_true.size == 0:
        raise ValueError("no values to score")
    return float(np.mean((lower <= y_true) & (y_true <= upper)))


@dataclass
class ModelRun:
    """One model's forecasts of every window of a panel and what they cost."""

    name: str
    point: np.ndarray  # (n, horizon)
    quantiles: np.ndarray | None  # (n, horizon, 3) for QUANTILES, or None (point forecaster)
    fit_s: float
    predict_s: float
    note: str = ""

    @property
    def wall_s(self) -> float:
        return self.fit_s + self.predict_s


def score_runs(
    y_true: np.ndarray, unique_ids: np.ndarray, scales: pd.Series, runs: Sequence[ModelRun]
) -> pd.DataFrame:
    """One row per model: MASE, sMAPE, scaled pinball, 80% coverage, wall time, and ratios of
    MASE against seasonal_naive and auto_ets (when they ran)."""
    table = metrics_table(y_true, {run.name: run.point for run in runs}, unique_ids, scales)
    overall = table[table["unique_id"] == OVERALL].set_index("model")
    window_scale = scales.reindex(np.asarray(unique_ids).astype(str)).to_numpy(dtype=np.float64)
    rows = []
    for run in runs:
        q = run.quantiles
        rows.append(
            {
                "model": run.name,
                "mase": float(overall.loc[run.name, "mase"]),
                "smape": float(overall.loc[run.name, "smape"]),
                "scaled_pinball": (
                    float("nan")
                    if q is None
                    else scaled_pinball(y_true, q, QUANTILES, window_scale)
                ),
                "coverage_80": (
                    float("nan") if q is None else interval_coverage(y_true, q[..., 0], q[..., -1])
                ),
                "wall_s": run.wall_s,
                "fit_s": run.fit_s,
                "predict_s": run.predict_s,
                "note": run.note,
            }
        )
    result = pd.DataFrame(rows)
    for baseline in ("seasonal_naive", "auto_ets"):
        matched = result.loc[result["model"] == baseline, "mase"]
        base = float(matched.iloc[0]) if len(matched) else float("nan")
        result[f"mase_vs_{baseline}"] = result["mase"] / base
    return result


# -- the models -------------------------------------------------------------------------------
def statsforecast_forecast(
    name: str, season: int, history: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo-80, hi-80), each (horizon,), of one statsforecast model fitted on `history`."""
    from statsforecast import models

    model = getattr(models, STATSFORECAST[name])(season_length=season)
    with warnings.catch_warnings():
        # statsforecast's own divisions on short or flat histories; the results stay finite.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = model.forecast(y=np.asarray(history, dtype=np.float64), h=horizon, level=[LEVEL])
    return result["mean"], result[f"lo-{LEVEL}"], result[f"hi-{LEVEL}"]


def run_statsforecast(panel: Panel, name: str, ends: np.ndarray) -> ModelRun:
    """One fit per window on the series' last `max_history` rows before the origin."""
    import statsforecast.models  # noqa: F401 - imported before the clock starts

    y = panel.frame["y"].to_numpy(dtype=np.float64)
    ids = panel.frame["unique_id"].to_numpy()
    first = pd.Series(np.arange(len(y))).groupby(ids).transform("min").to_numpy()
    out = np.empty((len(ends), panel.horizon, len(QUANTILES)))
    began = time.perf_counter()
    for row, end in enumerate(ends):
        begin = max(int(first[end]), int(end) - panel.max_history)
        mean, low, high = statsforecast_forecast(name, panel.season, y[begin:end], panel.horizon)
        out[row] = np.stack([low, mean, high], axis=-1)
    seconds = time.perf_counter() - began
    return ModelRun(
        name,
        out[..., 1],
        out,
        fit_s=seconds,
        predict_s=0.0,
        note=f"refit per origin on <= {panel.max_history} rows; fit+predict in one call",
    )


def run_lstm(panel: Panel, name: str, config: PipelineConfig, ends: np.ndarray) -> ModelRun:
    """Train once on the rows before the first origin, forecast every origin."""
    began = time.perf_counter()
    forecaster = fit_pipeline_forecaster(panel.before(panel.origins[0]), config)
    frame = with_calendar(panel.frame, config)  # the horizon rows' calendar, as the night has it
    fit_s = time.perf_counter() - began
    if forecaster.horizon != panel.horizon:
        raise ValueError(f"{name}: horizon {forecaster.horizon}, panel {panel.horizon}")
    supported = forecaster.supports(frame, ends)
    if not supported.all():
        lost = frame["unique_id"].iloc[ends[~supported]].unique()
        raise ValueError(f"{name} cannot forecast series {list(lost[:5])} ({len(lost)} in all)")
    began = time.perf_counter()
    have = forecast_quantiles_of(forecaster)
    quantiles = None
    if set(QUANTILES) <= set(have):
        every = forecaster.predict_quantiles(frame, ends)
        quantiles = every[..., [have.index(q) for q in QUANTILES]]
        point = quantiles[..., QUANTILES.index(0.5)]
    else:
        point = forecaster.predict(frame, ends)
    predict_s = time.perf_counter() - began
    training = config.training
    note = (
        f"loss {config.model.loss}, normalization {config.model.normalization}, reference "
        f"{config.model.reference}, ensemble {training.ensemble_size}, refit {training.refit}, "
        f"epochs <= {training.epochs}"
    )
    return ModelRun(name, np.asarray(point), quantiles, fit_s, predict_s, note)


@dataclass(frozen=True)
class NhitsBudget:
    """How NHITS's training is limited: seconds (Lightning's max_time) and max_steps."""

    seconds: float
    max_steps: int
    how: str


def nhits_model(panel: Panel, max_steps: int, max_seconds: float | None) -> Any:
    from neuralforecast.losses.pytorch import MQLoss
    from neuralforecast.models import NHITS

    trainer: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }
    if max_seconds is not None:
        trainer["max_time"] = timedelta(seconds=max(1.0, max_seconds))
    return NHITS(
        h=panel.horizon,
        input_size=panel.look_back,
        hist_exog_list=list(panel.covariates) or None,
        loss=MQLoss(level=[LEVEL]),
        scaler_type="robust",  # per-window scaling, as the series differ in level by 1000x
        max_steps=max_steps,
        random_seed=SEED,
        **trainer,
    )


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines and deprecation warnings off (steps run are reported instead)."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", module=r"(pytorch_lightning|lightning_fabric|neuralforecast)"
        )
        warnings.filterwarnings("ignore", message=r".*(LeafSpec|val_check_steps).*")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def fit_nhits(panel: Panel, train: pd.DataFrame, max_steps: int, max_seconds: float | None) -> Any:
    """A NeuralForecast holding one NHITS fitted on `train` (naive local times)."""
    from neuralforecast import NeuralForecast

    with quiet_lightning():
        model = nhits_model(panel, max_steps, max_seconds)
        forecaster = NeuralForecast(models=[model], freq=panel.frequency)
        forecaster.fit(df=train, val_size=0)
    return forecaster


def steps_trained(forecaster: Any) -> int | None:
    """Optimizer steps NHITS ran (neuralforecast records one training-loss entry per step)."""
    trajectory = getattr(forecaster.models[0], "train_trajectories", None)
    return len(trajectory) if trajectory else None


def nhits_budget(panel: Panel, train: pd.DataFrame, seconds: float, quick: bool) -> NhitsBudget:
    """max_steps sized so NHITS's fit takes about `seconds`, from timed pilot fits.

    A fit costs set-up (dataset, trainer) plus steps; one pilot of N steps cannot tell them
    apart (measured on M3: 30 steps took 29 s, then 31 steps took 5 s). So after a 1-step
    warm-up (one-time costs), fits of two step counts give seconds per step (the difference)
    and set-up; max_steps fills the budget after set-up. On a loaded machine the difference can
    come out near zero: then the longer pilot's seconds per step, set-up included, are used.
    The pilots are not counted as NHITS's wall time; Lightning's max_time stops the fit at
    `seconds` whatever the estimate (steps run are reported).
    """
    if quick:
        return NhitsBudget(
            seconds,
            QUICK_NHITS_STEPS,
            f"--quick: {QUICK_NHITS_STEPS} steps, max_time {seconds:.0f} s",
        )
    began = time.perf_counter()
    fit_nhits(panel, train, 1, None)
    (few, many), took = NHITS_PILOT_STEPS, []
    for steps in NHITS_PILOT_STEPS:
        tick = time.perf_counter()
        fit_nhits(panel, train, steps, None)
        took.append(time.perf_counter() - tick)
    per_step = (took[1] - took[0]) / (many - few)
    setup = max(0.0, took[0] - few * per_step)
    if per_step < 0.1 * took[1] / many:  # noise of a loaded machine: the longer pilot alone
        per_step, setup = took[1] / many, 0.0
    steps = int(min(NHITS_MAX_STEPS, max(1, (seconds - setup) / per_step)))
    pilots_s = time.perf_counter() - began
    return NhitsBudget(
        seconds,
        steps,
        f"pilot fits of 1, {few} and {many} steps ({pilots_s:.0f} s, not counted): "
        f"{per_step:.3f} s/step + {setup:.1f} s set-up -> max_steps {steps}; Lightning "
        f"max_time {seconds:.0f} s (the default LSTM's fit) as hard stop",
    )


def run_nhits(
    panel: Panel, ends: np.ndarray, folds: np.ndarray, budget_s: float, quick: bool
) -> ModelRun:
    """Train once on the rows before the first origin at `budget_s`, forecast every origin."""
    import neuralforecast  # noqa: F401 - imported before the clock starts

    train = panel.local(panel.before(panel.origins[0]))
    budget = nhits_budget(panel, train, budget_s, quick)
    began = time.perf_counter()
    forecaster = fit_nhits(panel, train, budget.max_steps, budget.seconds)
    fit_s = time.perf_counter() - began
    steps = steps_trained(forecaster)
    began = time.perf_counter()
    ids = panel.frame["unique_id"].to_numpy().astype(str)
    out = np.empty((len(ends), panel.horizon, len(QUANTILES)))
    columns = [f"NHITS-lo-{LEVEL}", "NHITS-median", f"NHITS-hi-{LEVEL}"]
    for fold, origin in enumerate(panel.origins):
        history = panel.local(panel.before(origin))
        with quiet_lightning():
            predicted = forecaster.predict(df=history)
        predicted = predicted.sort_values(["unique_id", "ds"], kind="stable")
        values = predicted[columns].to_numpy(dtype=np.float64)
        series = predicted["unique_id"].astype(str).to_numpy()[:: panel.horizon]
        values = values.reshape(len(series), panel.horizon, len(columns))
        rows = np.flatnonzero(folds == fold)
        position = pd.Index(series).get_indexer(ids[ends[rows]])
        if (position < 0).any():
            raise ValueError(f"nhits: no forecast for some series at origin {fold}")
        out[rows] = values[position]
    predict_s = time.perf_counter() - began
    out = np.sort(out, axis=-1)  # MQLoss heads can cross; the contract is non-crossing
    note = f"{budget.how}; trained {steps} steps in {fit_s:.0f} s" if steps else budget.how
    return ModelRun("nhits", out[..., 1], out, fit_s, predict_s, note)


# -- one panel --------------------------------------------------------------------------------
@dataclass
class PanelResult:
    panel: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    windows: int = 0
    series: int = 0


def run_panel(
    panel: Panel,
    models: Sequence[str] = ALL_MODELS,
    quick: bool = False,
    nhits_budget_s: float | None = None,
    log: Callable[[str], None] = print,
    settings: Sequence[str] = (),
) -> PanelResult:
    """Every model of `models` on the panel's windows, scored.

    NHITS gets the default LSTM's measured fit time as its budget, or `nhits_budget_s` when
    the LSTM is not run.
    """
    unknown = set(models) - set(ALL_MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {ALL_MODELS}")
    ends, folds = panel.ends()
    y_true = panel.frame["y"].to_numpy(dtype=np.float64)[ends[:, None] + np.arange(panel.horizon)]
    unique_ids = panel.frame["unique_id"].to_numpy().astype(str)[ends]
    notes = list(panel.notes)
    runs: list[ModelRun] = []
    for name in STATSFORECAST:
        if name in models:
            log(f"[{panel.name}] {name} ...")
            runs.append(run_statsforecast(panel, name, ends))
    if any(name in models for name in LSTM_MODELS):
        if panel.config is None:
            raise ValueError(f"{panel.name}: no pipeline config, cannot train the LSTM")
        configs = lstm_configs(panel.config, quick, settings)
        done: dict[str, ModelRun] = {}
        for name in LSTM_MODELS:
            if name not in models:
                continue
            twin = next((k for k in done if configs[k].digest() == configs[name].digest()), None)
            if twin is not None:  # same config (while the overrides force one member): reuse
                first = done[twin]
                run = ModelRun(name, first.point, first.quantiles, first.fit_s, first.predict_s)
                run.note = f"same config as {twin} (not retrained): {first.note}"
            else:
                log(f"[{panel.name}] {name} training ...")
                run = run_lstm(panel, name, configs[name], ends)
            done[name] = run
            runs.append(run)
        if "lstm" in done:
            nhits_budget_s = done["lstm"].fit_s
    if "nhits" in models:
        if nhits_budget_s is None:
            raise ValueError("nhits needs the LSTM's fit time or nhits_budget_s as its budget")
        log(f"[{panel.name}] nhits training (budget {nhits_budget_s:.0f} s) ...")
        runs.append(run_nhits(panel, ends, folds, nhits_budget_s, quick))
    table = score_runs(y_true, unique_ids, panel.scales(), runs)
    return PanelResult(
        panel.name, table, notes, windows=len(ends), series=len(np.unique(unique_ids))
    )


# -- goals and output -------------------------------------------------------------------------
def goal_checks(table: pd.DataFrame, model: str = "lstm") -> dict[str, bool | None]:
    """The issue's goals for `model` on one panel; None where a needed model did not run."""
    by = table.set_index("model")

    def mase(name: str) -> float | None:
        return float(by.loc[name, "mase"]) if name in by.index else None

    own, ets, nhits, snaive = mase(model), mase("auto_ets"), mase("nhits"), mase("seasonal_naive")
    coverage = float(by.loc[model, "coverage_80"]) if model in by.index else float("nan")

    def check(ok: Callable[[], bool], *needed: float | None) -> bool | None:
        if own is None or any(value is None or not np.isfinite(value) for value in needed):
            return None
        return bool(ok())

    return {
        "beats AutoETS on MASE": check(lambda: own < ets, ets),
        "at least level with NHITS on MASE": check(lambda: own <= nhits, nhits),
        "beats SeasonalNaive by >= 10% on MASE": check(
            lambda: own <= SNAIVE_MARGIN * snaive, snaive
        ),
        "80% coverage within 75-85%": check(
            lambda: COVERAGE_GOAL[0] <= coverage <= COVERAGE_GOAL[1], coverage
        ),
    }


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """The scores as a markdown table (printed, and written by --out)."""
    columns = [
        ("model", "model", 0),
        ("mase", "MASE", 3),
        ("smape", "sMAPE %", 2),
        ("scaled_pinball", "scaled pinball", 3),
        ("coverage_80", "coverage 80", 3),
        ("mase_vs_seasonal_naive", "MASE / SeasonalNaive", 3),
        ("mase_vs_auto_ets", "MASE / AutoETS", 3),
        ("wall_s", "wall s", 1),
    ]
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for _, row in table.iterrows():
        cells = [_cell(row[key], digits) for key, _, digits in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mark(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def panel_report(result: PanelResult) -> str:
    lines = [
        f"## {result.panel}: {result.series} series, {result.windows} windows",
        "",
        markdown_table(result.table),
        "",
    ]
    lines += [
        f"- {run['model']}: {run['note']}" for _, run in result.table.iterrows() if run["note"]
    ]
    lines += [f"- {note}" for note in result.notes]
    lines += ["", "Goals (lstm):"]
    lines += [f"- {goal}: {_mark(ok)}" for goal, ok in goal_checks(result.table).items()]
    return "\n".join(lines)


def overall_goals(results: Sequence[PanelResult]) -> dict[str, bool | None]:
    """Each goal over every panel run: yes only when it holds on all of them."""
    merged: dict[str, bool | None] = {}
    for result in results:
        for goal, ok in goal_checks(result.table).items():
            if goal not in merged:
                merged[goal] = ok
            elif merged[goal] is None or ok is None:
                merged[goal] = None
            else:
                merged[goal] = merged[goal] and ok
    return merged


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def write_out(
    path: Path, results: Sequence[PanelResult], header: dict[str, Any], text: str
) -> None:
    """--out: JSON (.json) or markdown (.md)."""
    if path.suffix == ".md":
        path.write_text(text + "\n")
        return
    if path.suffix != ".json":
        raise ValueError(f"--out {path}: use a .json or .md file")
    payload = {
        **header,
        "panels": {
            result.panel: {
                "series": result.series,
                "windows": result.windows,
                "rows": json.loads(result.table.to_json(orient="records")),
                "notes": result.notes,
                "goals": goal_checks(result.table),
            }
            for result in results
        },
        "goals_all_panels": overall_goals(results),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panels", default=",".join(PANELS), help="comma-separated: chicago,m3")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, help="also write the tables to FILE (.json or .md)")
    parser.add_argument("--m3", type=Path, default=DEFAULT_M3, help="M3 monthly parquet file")
    parser.add_argument(
        "--models", default=",".join(ALL_MODELS), help=f"comma-separated, from {ALL_MODELS}"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change the LSTM configs (repeatable), for ablations: --set model.normalization=series",
    )
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if set(args.models) - set(ALL_MODELS):
        parser.error(f"unknown model(s) {sorted(set(args.models) - set(ALL_MODELS))}")
    for setting in args.settings:
        try:
            parse_setting(setting)
        except ValueError as err:
            parser.error(str(err))
    args.panels = [name.strip() for name in args.panels.split(",") if name.strip()]
    unknown = set(args.panels) - set(PANELS)
    if unknown:
        parser.error(f"unknown panel(s) {sorted(unknown)}; choose from {PANELS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = load_line()
    print(f"bench_accuracy {started}{' (--quick)' if args.quick else ''}: {load_start}")
    if args.settings:
        print(f"LSTM settings changed: {', '.join(args.settings)}")
    results = []
    for name in args.panels:
        if name == "m3" and not args.m3.is_file():
            print(f"\nSkipping m3: {args.m3} not found (pass --m3 PATH to the M3 monthly parquet)")
            continue
        began = time.perf_counter()
        panel = chicago_panel(args.quick) if name == "chicago" else m3_panel(args.m3, args.quick)
        result = run_panel(panel, args.models, quick=args.quick, settings=args.settings)
        results.append(result)
        print("\n" + panel_report(result))
        print(f"({name} took {time.perf_counter() - began:.0f} s; now {load_line()})", flush=True)
    load_end = load_line()
    summary = ["", "## Goals over all panels run (lstm)"]
    summary += [f"- {goal}: {_mark(ok)}" for goal, ok in overall_goals(results).items()]
    summary += ["", f"Load at start: {load_start}", f"Load at end: {load_end}"]
    print("\n".join(summary))
    if args.out:
        header = {
            "started": started,
            "quick": args.quick,
            "load_start": load_start,
            "load_end": load_end,
        }
        text = "\n\n".join(panel_report(result) for result in results) + "\n" + "\n".join(summary)
        write_out(args.out, results, header, text)
        print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
