"""Tune step: a hyperparameter search over the LSTM's settings, scored on validation MASE.

The pure parts live here: the search space from `[tune]` (`search_space`, `suggest_params`), a
trial's parameters as config overrides (`tuned_overrides`, `trial_config`), the ask/tell loop
within a trial count and a time budget (`run_study`), the study's table and plot, and the
best-config TOML writer (`toml_text`, `best_config_text`). The thin Prefect tasks at the bottom
train one trial (`tune_trial`) and publish the study (`tune_report_task`); `flows/tune.py` wires
them. `lstm_model` is untouched: a trial trains through `tasks.train.train_model`, called in one
place only, `validation_mase`.

A trial is scored by MASE on the validation windows in original units, with the same per-series
seasonal-naive scale (training rows) as the test metrics (`lstm_model.metrics`). Trials train
the point model once (`training.refit = false`, `training.ensemble_size = 1`) for speed; the
best configuration keeps the base config's refit and ensemble settings.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

from lstm_model.forecasters import Forecaster, SeasonalNaive, actuals, model_forecaster
from lstm_model.metrics import OVERALL, metrics_table
from tasks.config import PipelineConfig, with_overrides
from tasks.evaluate import EvaluationData, evaluation_data
from tasks.normalize import load_normalized
from tasks.runtime import (
    StepResult,
    pipeline_task,
    produce_artifact,
    publish_markdown,
    publish_table,
    run_logger,
    store_for,
)
from tasks.storage import ArtifactError, ArtifactRef, ArtifactStore, code_version, content_key
from tasks.window import WindowedData, load_windows

TRIAL_SETTINGS: dict[str, dict[str, Any]] = {"training": {"refit": False, "ensemble_size": 1}}
"""What every trial sets on top of its parameters, for speed: one model, no refit. The best
config does not carry these: it keeps the base config's production recipe."""

PARAMETERS = ("look_back", "units", "layers", "dropout", "learning_rate", "batch_size", "loss")
"""The searched parameters, in the order they are suggested and shown."""

TUNED_KEYS = (
    "window.look_back",
    "model.preset",
    "model.units",
    "model.dropout",
    "model.learning_rate",
    "model.loss",
    "training.batch_size",
)
"""The config keys a tuned configuration sets (model.preset follows the layer count)."""

TABLE_COLUMNS = ["trial", *PARAMETERS, "validation_mase", "state", "seconds", "error"]


class TuneError(RuntimeError):
    """A search that cannot run or found nothing (every trial failed); the message says why."""


# -- search space ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSpace:
    """The ranges ([low, high]) and choices a study samples from, fixed from the config."""

    look_back: tuple[int, ...]
    units: tuple[int, int]
    layers: tuple[int, int]
    dropout: tuple[float, float]
    learning_rate: tuple[float, float]
    batch_size: tuple[int, ...]
    loss: tuple[str, ...]


def default_look_backs(look_back: int, season: int) -> tuple[int, ...]:
    """Half, once and twice the configured look_back (never below one season)."""
    return tuple(sorted({max(season, look_back // 2), look_back, 2 * look_back}))


def search_space(config: PipelineConfig) -> SearchSpace:
    """The space `[tune]` describes; look_back defaults around `window.look_back`."""
    tune = config.tune
    if config.model.preset == "univariate" and tune.layers[1] > 1:
        raise TuneError(
            f"tune.layers = {tune.layers} tries several LSTM layers, but model.preset "
            "'univariate' is one layer: set tune.layers = [1, 1] or model.preset 'custom'"
        )
    look_back = tune.look_back or default_look_backs(
        config.window.look_back, config.evaluation.season_length
    )
    return SearchSpace(
        look_back=tuple(sorted(set(look_back))),
        units=(tune.units[0], tune.units[1]),
        layers=(tune.layers[0], tune.layers[1]),
        dropout=(tune.dropout[0], tune.dropout[1]),
        learning_rate=(tune.learning_rate[0], tune.learning_rate[1]),
        batch_size=tuple(sorted(set(tune.batch_size))),
        loss=tuple(dict.fromkeys(tune.loss)),
    )


class TrialLike(Protocol):
    """The part of `optuna.Trial` a search space needs (an `optuna.trial.FixedTrial` too)."""

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def suggest_params(trial: TrialLike, space: SearchSpace) -> dict[str, Any]:
    """One point of the space, named as in `PARAMETERS`."""
    return {
        "look_back": int(trial.suggest_categorical("look_back", list(space.look_back))),
        "units": trial.suggest_int("units", *space.units, log=True),
        "layers": trial.suggest_int("layers", *space.layers),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "batch_size": int(trial.suggest_categorical("batch_size", list(space.batch_size))),
        "loss": str(trial.suggest_categorical("loss", list(space.loss))),
    }


def tuned_overrides(params: Mapping[str, Any], base: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The config keys (`TUNED_KEYS`) a point of the space sets, as nested sections.

    Several layers need a multi-layer preset ('custom': one LSTM per units entry); one layer
    keeps a single-layer base preset (univariate, multivariate), else becomes 'custom' too.
    """
    layers = int(params["layers"])
    single = base.model.preset in ("univariate", "multivariate")
    preset = base.model.preset if layers == 1 and single else "custom"
    return {
        "window": {"look_back": int(params["look_back"])},
        "model": {
            "preset": preset,
            "units": [int(params["units"])] * layers,
            "dropout": float(params["dropout"]),
            "learning_rate": float(params["learning_rate"]),
            "loss": str(params["loss"]),
        },
        "training": {"batch_size": int(params["batch_size"])},
    }


def tuned_config(base: PipelineConfig, params: Mapping[str, Any]) -> PipelineConfig:
    """The configuration a point of the space describes (what the best-config file holds)."""
    return with_overrides(base, tuned_overrides(params, base))


def trial_config(base: PipelineConfig, params: Mapping[str, Any]) -> PipelineConfig:
    """What a trial trains with: the tuned config plus `TRIAL_SETTINGS` (one model, no refit)."""
    return with_overrides(tuned_config(base, params), TRIAL_SETTINGS)


# -- scoring --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TuningData:
    """What a trial reads: the windows it trains on and the validation windows in original units."""

    windows: WindowedData
    validation: EvaluationData


def score_validation(data: EvaluationData, forecaster: Forecaster) -> float:
    """Overall MASE (original units, per-series seasonal-naive scale from training rows) of a
    forecaster on the validation windows it supports; `metrics_table`'s definition."""
    if not len(data.ends):
        raise TuneError(
            "no validation windows: no series has a horizon of validation rows after look_back "
            "earlier rows; use a shorter window or a larger split.validation"
        )
    usable = forecaster.supports(data.frame, data.ends)
    if not usable.any():
        raise TuneError(f"{forecaster.name} supports none of the {len(data.ends)} windows")
    data = data.only(usable)
    metrics = metrics_table(
        actuals(data.frame, data.ends, forecaster.horizon),
        {forecaster.name: forecaster.predict(data.frame, data.ends)},
        data.unique_ids,
        data.scales,
    )
    overall = metrics[metrics["unique_id"] == OVERALL]
    return float(overall["mase"].iloc[0])


def validation_mase(data: TuningData, config: PipelineConfig) -> float:
    """Train with `config` on the train windows and score MASE on the validation windows.

    The ONE call into the training recipe (`tasks.train.train_model`): when the recipe changes
    (quantile outputs, ensembles, refit), this adapter is the only place to follow it.
    """
    from tasks.train import input_features, train_model

    windows = data.windows
    trained = train_model(windows, config, backup_dir=None, refit=False)
    forecaster = model_forecaster(
        trained.scored, windows.scaler, input_features(config, windows.features), trained.spec
    )
    return score_validation(data.validation, forecaster)


def normalized_input(store: ArtifactStore, windows: ArtifactRef) -> ArtifactRef:
    """The normalized artifact a window artifact indexes (named in its metadata)."""
    meta = store.read_metadata(windows.uri)
    refs = [ArtifactRef(**ref) for ref in meta.get("inputs", [])]
    named = [ref for ref in refs if ref.uri == meta.get("series")]
    if named or len(refs) == 1:
        return (named or refs)[0]
    raise ArtifactError(f"{windows.uri}: metadata does not name its normalized artifact")


def load_tuning_data(store: ArtifactStore, windows: ArtifactRef, season: int) -> TuningData:
    """The windows and, for scoring, the validated rows behind them with the validation
    windows' origins (as `tasks.evaluate.load_evaluation` does for the test windows)."""
    data = load_windows(store, windows)
    normalized_ref = data.normalized or normalized_input(store, windows)
    normalized, _, _ = load_normalized(store, normalized_ref)
    _, normalized_meta = store.read_table(normalized_ref)
    validated, _ = store.read_table(ArtifactRef(**normalized_meta["inputs"][0]))
    validation = evaluation_data(
        validated, normalized, data.starts["validation"], data.spec.look_back, season
    )
    return TuningData(windows=data, validation=validation)


def seasonal_naive_mase(data: TuningData, season: int) -> float | None:
    """The seasonal-naive forecast's validation MASE: the bar a trial should clear (None when
    it supports no validation window)."""
    naive = SeasonalNaive(horizon=data.windows.spec.horizon, season=season)
    try:
        return score_validation(data.validation, naive)
    except TuneError:
        return None


# -- the study ------------------------------------------------------------------------------
class TrialRecord(BaseModel):
    """One trial as the study table shows it."""

    number: int
    params: dict[str, Any]
    validation_mase: float | None = None
    state: str  # COMPLETE or FAIL
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class StudyPlan:
    """How a search runs: its name, the space, and its limits."""

    name: str
    space: SearchSpace
    trials: int
    time_budget_s: float
    max_workers: int
    seed: int


def study_plan(
    config: PipelineConfig,
    trials: int | None = None,
    time_budget_s: float | None = None,
    now: datetime | None = None,
) -> StudyPlan:
    """The plan from `[tune]`, with the command line's trial count and budget when given."""
    trials = config.tune.trials if trials is None else trials
    budget = config.tune.time_budget_s if time_budget_s is None else time_budget_s
    if trials < 1:
        raise TuneError(f"the trial count must be at least 1, got {trials}")
    if not budget > 0:
        raise TuneError(f"the time budget must be above 0 seconds, got {budget}")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return StudyPlan(
        name=f"tune-{config.name}-{stamp}",
        space=search_space(config),
        trials=trials,
        time_budget_s=float(budget),
        max_workers=config.tune.max_workers,
        seed=config.tune.seed,
    )


def new_study(plan: StudyPlan) -> Any:  # optuna.Study, imported lazily
    """An in-memory minimizing Optuna study with a seeded TPE sampler.

    `constant_liar` keeps trials that run at the same time from being sampled at one point.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=plan.seed, constant_liar=True)
    return optuna.create_study(study_name=plan.name, direction="minimize", sampler=sampler)


F = TypeVar("F")


def first_completed(futures: list[Any]) -> Any:
    """The first of some futures to finish: Prefect futures, or `concurrent.futures` ones."""
    if all(isinstance(future, Future) for future in futures):
        from concurrent.futures import FIRST_COMPLETED, wait

        return next(iter(wait(futures, return_when=FIRST_COMPLETED).done))
    from prefect.futures import as_completed

    return next(as_completed(futures))


def run_study(
    study: Any,
    plan: StudyPlan,
    base: PipelineConfig,
    submit: Callable[[int, PipelineConfig], F],
    clock: Callable[[], float] = time.monotonic,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> list[TrialRecord]:
    """Ask, submit and tell until `plan.trials` trials ran or `plan.time_budget_s` is spent.

    At most `plan.max_workers` trials run at once; no trial starts after the budget, and the
    running ones finish. `submit(number, trial_config)` starts a trial and returns a future of
    its validation MASE; an error (from `submit` or the future) or a non-finite MASE fails that
    trial only. Returns one record per trial, in trial order; seconds are wall time from
    submit to result.
    """
    import optuna

    deadline = clock() + plan.time_budget_s
    running: dict[Any, tuple[Any, dict[str, Any], float]] = {}
    records: list[TrialRecord] = []

    def finish(trial: Any, params: dict[str, Any], began: float, value: Any, error: str | None):
        mase = float(value) if error is None else None
        if mase is not None and not math.isfinite(mase):
            mase, error = None, f"validation MASE is {value} (constant series only?)"
        if error is None:
            study.tell(trial, mase)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        record = TrialRecord(
            number=trial.number,
            params=params,
            validation_mase=mase,
            state="COMPLETE" if error is None else "FAIL",
            seconds=round(clock() - began, 3),
            error=error,
        )
        records.append(record)
        if on_record is not None:
            on_record(record)

    started = 0
    while True:
        while len(running) < plan.max_workers and started < plan.trials and clock() < deadline:
            trial = study.ask()
            params = suggest_params(trial, plan.space)
            began = clock()
            started += 1
            try:
                running[submit(trial.number, trial_config(base, params))] = (trial, params, began)
            except Exception as error:  # noqa: BLE001 - a bad point fails its trial, not the study
                finish(trial, params, began, None, _describe(error))
        if not running:
            break
        done = first_completed(list(running))
        trial, params, began = running.pop(done)
        try:
            value, error = done.result(), None
        except Exception as failure:  # noqa: BLE001 - recorded in the study table
            value, error = None, _describe(failure)
        finish(trial, params, began, value, error)
    return sorted(records, key=lambda record: record.number)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def best_record(records: Sequence[TrialRecord]) -> TrialRecord:
    """The completed trial with the lowest validation MASE (the first of equals)."""
    done = [r for r in records if r.state == "COMPLETE" and r.validation_mase is not None]
    if not done:
        errors = "; ".join(f"trial {r.number}: {r.error}" for r in records[:3])
        raise TuneError(f"no trial completed ({len(records)} failed): {errors}")
    return min(done, key=lambda r: (r.validation_mase, r.number))


def study_table(records: Sequence[TrialRecord]) -> pd.DataFrame:
    """One row per trial: its parameters, validation MASE, state, seconds and error."""
    rows = [
        {
            "trial": r.number,
            **{name: r.params.get(name) for name in PARAMETERS},
            "validation_mase": r.validation_mase,
            "state": r.state,
            "seconds": r.seconds,
            "error": r.error,
        }
        for r in records
    ]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.astype({"validation_mase": "float64", "seconds": "float64"})


def study_text(table: pd.DataFrame) -> str:
    """The study table for a terminal (no error column: it is in the artifact)."""
    shown = table.drop(columns="error")
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4g}")


def history_plot(records: Sequence[TrialRecord], title: str) -> bytes:
    """PNG of the optimization history: each trial's validation MASE and the best so far."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    done = [r for r in records if r.validation_mase is not None]
    numbers = np.array([r.number for r in done], dtype=np.int64)
    values = np.array([r.validation_mase for r in done], dtype=np.float64)
    fig, axis = plt.subplots(figsize=(8, 4))
    axis.scatter(numbers, values, color="tab:blue", label="trial")
    if len(values):
        axis.step(
            numbers, np.minimum.accumulate(values), where="post", color="tab:red", label="best"
        )
    failed = [r.number for r in records if r.validation_mase is None]
    for number in failed:
        axis.axvline(number, color="0.85", ls=":", lw=1)
    axis.set_xlabel("trial")
    axis.set_ylabel("validation MASE")
    axis.set_title(title + (f" ({len(failed)} failed: dotted)" if failed else ""))
    axis.legend(loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def study_markdown(
    plan: StudyPlan,
    table: pd.DataFrame,
    best: TrialRecord,
    config_uri: str,
    plot_uri: str,
    reference: float | None = None,
) -> str:
    """The study for the Prefect UI: the best trial, where its config is, and every trial."""
    lines = [
        f"# Tuning study {plan.name}",
        "",
        f"Best validation MASE **{best.validation_mase:.4f}** (trial {best.number} of "
        f"{len(table)}; limits: {plan.trials} trials, {plan.time_budget_s:g} s).",
    ]
    if reference is not None:
        lines.append(f"Seasonal naive on the base config's validation windows: {reference:.4f}.")
    lines += [
        "",
        f"Best configuration: `{config_uri}`",
        f"Optimization history plot: `{plot_uri}`",
        "",
        "| " + " | ".join(TABLE_COLUMNS[:-1]) + " |",
        "|" + "---:|" * (len(TABLE_COLUMNS) - 1),
    ]
    for row in table.itertuples(index=False):
        cells = [_cell(getattr(row, name)) for name in TABLE_COLUMNS[:-1]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


# -- the best configuration as TOML ---------------------------------------------------------
def _toml_key(key: str) -> str:
    if key and all(ch.isalnum() and ch.isascii() or ch in "_-" for ch in key):
        return key
    return _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def toml_text(data: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """TOML for a config-shaped mapping: top-level values, then one table per section.

    None (absent in TOML) is left out; callers check that the text loads back as intended.
    """
    lines = [f"# {line}" for line in header]
    if lines:
        lines.append("")
    sections = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for key, value in data.items():
        if key not in sections and value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for name, section in sections.items():
        lines += ["", f"[{_toml_key(name)}]"]
        for key, value in section.items():
            if value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _absolute(location: str) -> str:
    return location if "://" in location or os.path.isabs(location) else os.path.abspath(location)


def config_text(config: PipelineConfig, header: Sequence[str] = ()) -> str:
    """A complete config file for `config`, loadable by `load_config` from any folder.

    Local paths are written absolute (load_config would read a relative one against the new
    file's folder). Refused, naming the keys, when the text would not load back as `config`.
    """
    import tomllib

    data = config.model_dump(mode="json")
    data["source"]["path"] = _absolute(data["source"]["path"])
    data["storage"]["root"] = _absolute(data["storage"]["root"])
    text = toml_text(data, header)
    loaded = _flat(PipelineConfig.model_validate(tomllib.loads(text)).model_dump(mode="json"))
    wanted = _flat(data)
    wrong = sorted(
        key for key in loaded.keys() | wanted.keys() if loaded.get(key) != wanted.get(key)
    )
    if wrong:
        raise TuneError(f"the config cannot be written as TOML without changing {wrong}")
    return text


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model.units": [64], ...}: a config dump's values by dotted key."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def best_config_header(plan: StudyPlan, best: TrialRecord, records: Sequence[TrialRecord]) -> list:
    """The comment on top of the best-config file: study, best validation MASE, date."""
    completed = sum(r.state == "COMPLETE" for r in records)
    return [
        "Best configuration found by `forecast tune`.",
        f"study: {plan.name}",
        f"best validation MASE: {best.validation_mase!r} (trial {best.number}; "
        f"{len(records)} trials, {completed} complete)",
        f"date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"tuned keys: {', '.join(TUNED_KEYS)}",
        "Trials trained with training.refit = false and training.ensemble_size = 1; this file "
        "keeps the base config's values of both.",
    ]


def best_config_text(
    base: PipelineConfig, plan: StudyPlan, records: Sequence[TrialRecord]
) -> tuple[TrialRecord, str]:
    """The best trial and the complete config file that sets its parameters on `base`."""
    best = best_record(records)
    return best, config_text(
        tuned_config(base, best.params), best_config_header(plan, best, records)
    )


def write_local_text(path: str | Path, text: str) -> Path:
    """Write a local file atomically (temporary name, then one rename)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)
    return path


# -- Prefect tasks --------------------------------------------------------------------------
class TuneSummary(BaseModel):
    """What `forecast tune` prints: where the study and the best configuration went."""

    study: str
    trials: int
    completed: int
    best_trial: int
    best_validation_mase: float
    best_params: dict[str, Any]
    config_uri: str  # the best configuration (`out`, or the store's reports/tune/)
    table: ArtifactRef  # the study table artifact
    plot_uri: str
    seasonal_naive_mase: float | None = None  # on the base config's validation windows


@pipeline_task("tune-normalized")
def normalized_input_task(config: PipelineConfig, windows: ArtifactRef) -> ArtifactRef:
    """The normalized artifact under the data flow's windows: every look_back re-indexes it."""
    return normalized_input(store_for(config), windows)


def trial_key(config: PipelineConfig, windows: ArtifactRef) -> str:
    """Content key of a trial's score: its whole config (the trial's settings), its windows and
    the code; not its number, so a later study proposing the same settings reuses the score."""
    return content_key("tune-trial", config.digest(), windows.sha256, code_version())


@pipeline_task("tune-trial", task_run_name="tune-trial-{trial}")
def tune_trial(config: PipelineConfig, windows: ArtifactRef, trial: int) -> float:
    """Train one trial's configuration and return its validation MASE (original units); a score
    the store already holds for the same settings, windows and code is read back instead."""

    def compute(store: ArtifactStore) -> StepResult:
        began = time.perf_counter()
        data = load_tuning_data(store, windows, config.evaluation.season_length)
        mase = validation_mase(data, config)
        run_logger().info(
            "trial %d: validation MASE %.4f in %.0f s", trial, mase, time.perf_counter() - began
        )
        return pd.DataFrame({"validation_mase": [mase]}), {}

    score = produce_artifact(config, "tune-trial", trial_key(config, windows), [windows], compute)
    frame, _ = store_for(config).read_table(score)
    return float(frame["validation_mase"].iloc[0])


@pipeline_task("tune-report", task_run_name="tune-report-{config.name}")
def tune_report_task(
    config: PipelineConfig,
    plan: StudyPlan,
    records: list[TrialRecord],
    windows: ArtifactRef,
    out: str | None = None,
) -> TuneSummary:
    """Write the best config (`out`, else the store's reports/tune/), the study table artifact
    and the history plot; publish a table and a markdown artifact."""
    store = store_for(config)
    best, text = best_config_text(config, plan, records)
    season = config.evaluation.season_length
    reference = seasonal_naive_mase(load_tuning_data(store, windows, season), season)
    if out is not None:
        config_uri = str(write_local_text(out, text))
    else:
        config_uri = store.uri("reports", "tune", plan.name, "best.toml")
        store.write_bytes(config_uri, text.encode())
    plot_uri = store.uri("reports", "tune", plan.name, "history.png")
    store.write_bytes(plot_uri, history_plot(records, f"{plan.name}: validation MASE"))
    table = study_table(records)
    summary = {
        "study": plan.name,
        "best_trial": best.number,
        "best_validation_mase": best.validation_mase,
        "best_params": best.params,
        "best_config": config_uri,
        "plot": plot_uri,
        "trials_limit": plan.trials,
        "time_budget_s": plan.time_budget_s,
        "seed": plan.seed,
        "seasonal_naive_mase": reference,
    }
    ref = store.write_table(
        "tune", plan.name, table, config_hash=config.digest(), inputs=[windows], extra=summary
    )
    publish_table(
        f"tune-{config.name}",
        json.loads(table.drop(columns="error").to_json(orient="records")),
        f"Tuning study {plan.name}: one row per trial (validation MASE, original units)",
    )
    publish_markdown(
        f"tune-report-{config.name}",
        study_markdown(plan, table, best, config_uri, plot_uri, reference),
        "Tuning study",
    )
    completed = int((table["state"] == "COMPLETE").sum())
    run_logger().info(
        "Best of %d trials (%d complete): trial %d, validation MASE %.4f; config %s",
        len(records),
        completed,
        best.number,
        best.validation_mase,
        config_uri,
    )
    return TuneSummary(
        study=plan.name,
        trials=len(records),
        completed=completed,
        best_trial=best.number,
        best_validation_mase=float(best.validation_mase),
        best_params=best.params,
        config_uri=config_uri,
        table=ref,
        plot_uri=plot_uri,
        seasonal_naive_mase=reference,
    )
