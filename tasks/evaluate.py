"""Evaluate step: the trained model against baselines and the champion on the test windows.

Every model is a `Forecaster` (lstm_model.forecasters) and is scored in original units on the
same test windows: their targets lie after the validation cutoff, their inputs come from the
rows before. MASE is scaled, per series, by the in-sample seasonal-naive error on that series'
training rows. The current champion is scored on the test windows it can forecast (a series it
never saw, or a window shape it cannot take, leaves windows out, never crashes); the challenger
is scored on exactly those windows too, so the gate compares like with like. When the champion
can forecast none of them, the comparison says so and the gate applies its policy.

The statsforecast baselines (`evaluation.baselines`: auto_ets, auto_theta, sf_seasonal_naive)
refit at every window and run within `evaluation.baseline_time_budget_s`: when the time
measured on a first batch of fits says every series would not fit, they are scored on a seeded
sample of series, the challenger is scored on that sample too (`challenger_on_baseline_sample`),
and the metadata, the UI table and the report say so (`BaselineSample`).

Probabilistic forecasts are scored on the same windows: every model that forecasts the
configured quantiles (`model.forecast_quantiles`; the challenger, the champion, the
statsforecast baselines from their own prediction intervals) gets `spl`, the scaled pinball
loss, and `coverage_{level}` per symmetric quantile pair (0.1 and 0.9: `coverage_80`); point
forecasters (our naive and seasonal naive) get NaN there. The gate still decides on MASE.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel

from lstm_model.forecasters import (
    Forecaster,
    ScaledModelForecaster,
    actuals,
    forecast_quantiles_of,
    input_rows,
)
from lstm_model.metrics import (
    OVERALL,
    SPL,
    check_quantiles,
    metrics_table,
    quantile_positions,
    seasonal_naive_scales,
    unscored_series,
)
from lstm_model.statistical import (
    DEFAULT_MAX_HISTORY,
    StatsForecastModel,
    baseline_forecaster,
    forecast_within_budget,
)
from tasks.config import PipelineConfig
from tasks.normalize import InsufficientDataError, encode_stat, load_normalized
from tasks.registry import ModelRegistry, model_from_bytes
from tasks.runtime import (
    StepResult,
    pipeline_task,
    produce_artifact,
    publish_markdown,
    publish_table,
    run_logger,
    store_for,
)
from tasks.storage import ArtifactRef, ArtifactStore, code_version, content_key

CHAMPION = "champion"
CHALLENGER_ON_CHAMPION_WINDOWS = "challenger_on_champion_windows"
"""The challenger's scores on exactly the windows the champion could forecast."""
CHALLENGER_ON_BASELINE_SAMPLE = "challenger_on_baseline_sample"
"""The challenger's scores on the windows of the series sampled for the statsforecast baselines."""
DEFAULT_BASELINES = ("naive", "seasonal_naive")


class BaselineSample(BaseModel):
    """Which series the statsforecast baselines were scored on, and why (kept with the metrics)."""

    models: list[str] = []
    sampled: bool = False
    series: int = 0
    total_series: int = 0
    windows: int = 0
    total_windows: int = 0
    seconds_per_fit: dict[str, float] = {}
    projected_s: float = 0.0
    elapsed_s: float = 0.0
    budget_s: float = 0.0
    workers: int = 1
    cut_at_deadline: bool = False
    note: str = "no statsforecast baseline configured"


@dataclass(frozen=True)
class BaselineBudget:
    """How long the statsforecast baselines may take, and how their series sample is drawn."""

    budget_s: float = math.inf
    seed: int = 0
    n_jobs: int = 1


class ChampionComparison(BaseModel):
    """Whether and how the champion was scored beside the challenger (kept with the metrics)."""

    version: str | None
    comparable: bool
    windows: int = 0
    total_windows: int = 0
    note: str


@dataclass(frozen=True, eq=False)
class EvaluationData:
    """The validated rows in original units and the test windows' origins within them."""

    frame: pd.DataFrame  # unique_id, ds, y, covariates, split; sorted by (unique_id, ds)
    ends: np.ndarray  # (n,) row one past each test window's last input row
    scales: pd.Series  # MASE denominator per series, from training rows
    look_back: int  # the challenger's input rows per window (for plots)

    @property
    def unique_ids(self) -> np.ndarray:
        return self.frame["unique_id"].iloc[self.ends - 1].to_numpy().astype(str)

    def only(self, keep: np.ndarray) -> EvaluationData:
        """The same rows with only the windows where `keep` is true."""
        return EvaluationData(self.frame, self.ends[keep], self.scales, self.look_back)


def evaluation_data(
    validated: pd.DataFrame,
    normalized: pd.DataFrame,
    test_starts: np.ndarray,
    look_back: int,
    season: int,
) -> EvaluationData:
    """Original-unit rows for scoring: the validated rows of the series normalize kept.

    Actuals come from the validated values, not from un-scaling float32 rows.
    """
    kept = validated[validated["unique_id"].isin(normalized["unique_id"].unique())]
    kept = kept.reset_index(drop=True)
    if len(kept) != len(normalized) or not kept["ds"].equals(normalized["ds"]):
        raise ValueError("normalized rows do not line up with the validated rows they came from")
    frame = kept.assign(split=normalized["split"].to_numpy())
    train = frame[frame["split"] == "train"]
    return EvaluationData(
        frame=frame,
        ends=np.asarray(test_starts, dtype=np.int64) + look_back,
        scales=seasonal_naive_scales(train, season),
        look_back=look_back,
    )


def point_and_quantiles(
    forecaster: Forecaster, frame: pd.DataFrame, ends: np.ndarray, quantiles: Sequence[float]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, horizon) point forecasts and, when the forecaster forecasts every one of `quantiles`,
    those (n, horizon, Q), else None; one model call (its point forecast is the median)."""
    own = forecast_quantiles_of(forecaster)
    positions = quantile_positions(own, quantiles) if quantiles and own else None
    if positions is None:
        return forecaster.predict(frame, ends), None
    predict_quantiles = forecaster.predict_quantiles  # type: ignore[attr-defined]
    values = np.asarray(predict_quantiles(frame, ends), dtype=np.float64)
    median = quantile_positions(own, [0.5])
    point = values[..., median[0]] if median is not None else forecaster.predict(frame, ends)
    return point, values[..., positions]


def champion_comparison(
    data: EvaluationData,
    challenger_forecast: np.ndarray,
    champion: Forecaster | None,
    version: str | None,
    horizon: int,
    challenger_quantiles: np.ndarray | None = None,
    quantiles: Sequence[float] = (),
) -> tuple[pd.DataFrame | None, ChampionComparison]:
    """Champion and challenger scored on the windows the champion can forecast (with their
    quantiles, when they forecast `quantiles`)."""
    total = len(data.ends)
    if champion is None:
        return None, ChampionComparison(
            version=None, comparable=False, total_windows=total, note="no champion yet"
        )
    if champion.horizon != horizon:
        return None, ChampionComparison(
            version=version,
            comparable=False,
            total_windows=total,
            note=f"champion forecasts {champion.horizon} steps, the challenger {horizon}",
        )
    usable = champion.supports(data.frame, data.ends)
    if not usable.any():
        return None, ChampionComparison(
            version=version,
            comparable=False,
            total_windows=total,
            note="champion cannot forecast any test window (unknown series, features or "
            "too little history for its look_back)",
        )
    ends = data.ends[usable]
    champion_forecast, champion_quantiles = point_and_quantiles(
        champion, data.frame, ends, quantiles
    )
    quantile_forecasts = {CHAMPION: champion_quantiles}
    if challenger_quantiles is not None:
        quantile_forecasts[CHALLENGER_ON_CHAMPION_WINDOWS] = challenger_quantiles[usable]
    metrics = metrics_table(
        actuals(data.frame, ends, horizon),
        {CHAMPION: champion_forecast, CHALLENGER_ON_CHAMPION_WINDOWS: challenger_forecast[usable]},
        data.unique_ids[usable],
        data.scales,
        _present(quantile_forecasts),
        quantiles,
    )
    note = f"scored on {int(usable.sum())} of {total} test windows"
    if not usable.all():
        left = sorted(
            set(data.unique_ids[~usable].tolist()) - set(data.unique_ids[usable].tolist())
        )
        note += f"; series it cannot forecast: {left[:5]}" if left else ""
    comparison = ChampionComparison(
        version=version,
        comparable=True,
        windows=int(usable.sum()),
        total_windows=total,
        note=note,
    )
    return metrics, comparison


def evaluate_forecasters(
    data: EvaluationData,
    challenger: Forecaster,
    baselines: list[Forecaster],
    champion: Forecaster | None = None,
    champion_version: str | None = None,
    budget: BaselineBudget | None = None,
    quantiles: Sequence[float] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], ChampionComparison, EvaluationData, BaselineSample]:
    """Metrics of challenger and baselines on the same test windows, plus the champion comparison.

    Every model is scored on the windows all of challenger and baselines can forecast (a
    season longer than look_back leaves out test windows with less than a season of history).
    The statsforecast baselines run within `budget` (none: no limit); when only a sample of
    series fits, they are scored on its windows, beside the challenger on the same windows, and
    their `forecasts` are NaN elsewhere. With `quantiles` (None: the challenger's own), the
    models that forecast them also get `spl` and coverage columns (NaN for the others).
    """
    horizon = challenger.horizon
    quantiles = check_quantiles(
        sorted(forecast_quantiles_of(challenger) if quantiles is None else quantiles)
    )
    usable = np.logical_and.reduce(
        [forecaster.supports(data.frame, data.ends) for forecaster in [challenger, *baselines]]
    )
    if len(data.ends) and not usable.any():
        raise InsufficientDataError(
            "no test window has enough history for every model (is evaluation.season_length "
            "longer than the series before the validation cutoff?)"
        )
    data = data.only(usable)
    costly = [b for b in baselines if isinstance(b, StatsForecastModel)]
    forecasts: dict[str, np.ndarray] = {}
    quantile_forecasts: dict[str, np.ndarray | None] = {}
    for forecaster in [challenger, *baselines]:
        if not isinstance(forecaster, StatsForecastModel):
            forecasts[forecaster.name], quantile_forecasts[forecaster.name] = point_and_quantiles(
                forecaster, data.frame, data.ends, quantiles
            )
    sample, sampled, sampled_quantiles, keep = statistical_forecasts(
        data, costly, budget or BaselineBudget(), quantiles
    )
    forecasts.update(sampled)
    quantile_forecasts.update(sampled_quantiles)
    whole = {name: values for name, values in forecasts.items() if name not in sampled}
    if not sample.sampled:
        whole = forecasts
    metrics = metrics_table(
        actuals(data.frame, data.ends, horizon),
        whole,
        data.unique_ids,
        data.scales,
        _present({name: quantile_forecasts.get(name) for name in whole}),
        quantiles,
    )
    parts = [metrics]
    challenger_quantiles = quantile_forecasts[challenger.name]
    if sample.sampled:
        on_sample = {name: quantile_forecasts.get(name) for name in sampled} | {
            CHALLENGER_ON_BASELINE_SAMPLE: challenger_quantiles
        }
        parts.append(
            metrics_table(
                actuals(data.frame, data.ends[keep], horizon),
                {name: values[keep] for name, values in sampled.items()}
                | {CHALLENGER_ON_BASELINE_SAMPLE: forecasts[challenger.name][keep]},
                data.unique_ids[keep],
                data.scales,
                {name: values[keep] for name, values in _present(on_sample).items()},
                quantiles,
            )
        )
    champion_metrics, comparison = champion_comparison(
        data,
        forecasts[challenger.name],
        champion,
        champion_version,
        horizon,
        challenger_quantiles,
        quantiles,
    )
    if champion_metrics is not None:
        parts.append(champion_metrics)
    metrics = pd.concat(parts, ignore_index=True)
    # Keep the order callers know: challenger, baselines as configured, then comparisons.
    forecasts = {f.name: forecasts[f.name] for f in [challenger, *baselines]}
    return metrics, forecasts, comparison, data, sample


def unscored_reason(scale: float | None, model: str) -> str:
    """Why a series has no MASE: its seasonal-naive scale, or else `model`'s forecast."""
    if scale is None or np.isnan(scale):
        return "no seasonal-naive scale (at most evaluation.season_length training rows)"
    if scale == 0:
        return "constant training rows (seasonal-naive scale 0)"
    if not np.isfinite(scale):
        return "seasonal-naive scale not finite (absurd training values)"
    return f"the {model} forecast is not finite"


def require_scores(metrics: pd.DataFrame, scales: pd.Series, models: Sequence[str]) -> None:
    """Fail naming each series without a finite MASE for one of `models` (the challenger and
    the gate's baseline): their overall MASE would not cover every series, and the gate must
    never promote on the series that happen to have a score."""
    reasons: dict[str, str] = {}
    for model, series in unscored_series(metrics, models).items():
        for series_id in series:
            reasons.setdefault(series_id, unscored_reason(scales.get(series_id), model))
    if reasons:
        shown = "; ".join(f"{sid!r}: {why}" for sid, why in list(reasons.items())[:10])
        more = f" (and {len(reasons) - 10} more)" if len(reasons) > 10 else ""
        raise InsufficientDataError(
            f"evaluation: {len(reasons)} test series have no finite MASE, so no overall MASE "
            f"covers every series and the gate cannot decide: {shown}{more}"
        )


def _present(quantile_forecasts: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    return {name: values for name, values in quantile_forecasts.items() if values is not None}


def statistical_forecasts(
    data: EvaluationData,
    models: list[StatsForecastModel],
    budget: BaselineBudget,
    quantiles: Sequence[float] = (),
) -> tuple[BaselineSample, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The statsforecast baselines on the windows their budget allows (NaN on the others),
    their `quantiles` (for the models that forecast them all), and which windows those are."""
    if not models:
        everything = np.ones(len(data.ends), dtype=bool)
        return BaselineSample(total_windows=len(data.ends)), {}, {}, everything
    run = forecast_within_budget(
        models, data.frame, data.ends, budget.budget_s, budget.seed, budget.n_jobs
    )
    forecasts, quantile_forecasts = {}, {}
    for model in models:
        full = np.full((len(data.ends), model.horizon), np.nan)
        full[run.scored] = run.forecasts[model.name]
        forecasts[model.name] = full
        positions = quantile_positions(model.quantiles, quantiles) if quantiles else None
        if positions is not None and model.name in run.quantile_forecasts:
            full = np.full((len(data.ends), model.horizon, len(quantiles)), np.nan)
            full[run.scored] = run.quantile_forecasts[model.name][..., positions]
            quantile_forecasts[model.name] = full
    names = [model.name for model in models]
    per_fit = ", ".join(f"{name} {s:.3f} s" for name, s in run.seconds_per_fit.items())
    if run.sampled:
        note = (
            f"{', '.join(names)} scored on a seeded sample of {run.series} of "
            f"{run.total_series} series ({int(run.scored.sum())} of {len(data.ends)} windows): "
            f"all series would take about {run.projected_s:.0f} s (measured per fit: "
            f"{per_fit}), over evaluation.baseline_time_budget_s = {run.budget_s:g} s"
        )
        if run.cut_at_deadline:
            note += " (fits ran slower than measured: stopped at the budget's end)"
    else:
        note = (
            f"{', '.join(names)} scored on all {run.total_series} series in "
            f"{run.elapsed_s:.1f} s (measured per fit: {per_fit})"
        )
    sample = BaselineSample(
        models=names,
        sampled=run.sampled,
        series=run.series,
        total_series=run.total_series,
        windows=int(run.scored.sum()),
        total_windows=len(data.ends),
        seconds_per_fit=run.seconds_per_fit,
        projected_s=run.projected_s,
        elapsed_s=run.elapsed_s,
        budget_s=run.budget_s if math.isfinite(run.budget_s) else 0.0,
        workers=run.workers,
        cut_at_deadline=run.cut_at_deadline,
        note=note,
    )
    return sample, forecasts, quantile_forecasts, run.scored


def baselines(
    horizon: int,
    season: int,
    names: Sequence[str] = DEFAULT_BASELINES,
    max_history: int = DEFAULT_MAX_HISTORY,
    n_jobs: int = 1,
    quantiles: Sequence[float] = (),
) -> list[Forecaster]:
    return [baseline_forecaster(n, horizon, season, max_history, n_jobs, quantiles) for n in names]


def configured_baselines(config: PipelineConfig, horizon: int) -> list[Forecaster]:
    """The baselines `evaluation.baselines` names, with their history bound and workers, and
    the model's quantiles for those that can forecast them (the statsforecast ones)."""
    ev = config.evaluation
    return baselines(
        horizon,
        ev.season_length,
        ev.baselines,
        ev.baseline_max_history,
        ev.baseline_n_jobs,
        config.model.forecast_quantiles,
    )


def configured_budget(config: PipelineConfig) -> BaselineBudget:
    ev = config.evaluation
    return BaselineBudget(ev.baseline_time_budget_s, ev.baseline_seed, ev.baseline_n_jobs)


def plot_forecasts(
    data: EvaluationData, forecasts: dict[str, np.ndarray], look_back: int, n_series: int
) -> bytes | None:
    """PNG of the last test window of `n_series` series: history, actuals and each forecast;
    None (no plot) for 0 series (`evaluation.plot_series = 0`) or no test window."""
    if n_series < 1 or not len(data.ends):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    y = data.frame["y"].to_numpy(dtype=np.float64)
    horizon = next(iter(forecasts.values())).shape[1]
    history, actual = y[input_rows(data.ends, look_back)], actuals(data.frame, data.ends, horizon)
    series = list(dict.fromkeys(data.unique_ids.tolist()))[:n_series]
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series)), squeeze=False)
    for axis, series_id in zip(axes[:, 0], series, strict=True):
        last = np.flatnonzero(data.unique_ids == series_id)[-1]
        past, future = np.arange(-look_back, 0), np.arange(horizon)
        axis.plot(past, history[last], color="0.5", label="history")
        axis.plot(future, actual[last], color="black", lw=2, label="actual")
        for name, values in forecasts.items():
            axis.plot(future, values[last], lw=1.5, label=name)
        axis.set_title(f"{series_id}: last test window")
        axis.axvline(-0.5, color="0.8", ls="--")
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    axes[0, 0].legend(loc="upper left", ncol=len(forecasts) + 2, fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def probabilistic_columns(metrics: pd.DataFrame) -> list[str]:
    """The scaled-pinball and coverage columns a metrics table holds (none without quantiles)."""
    coverage = [c for c in metrics.columns if str(c).startswith("coverage_")]
    return ([SPL] if SPL in metrics.columns else []) + coverage


def _cell(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.4f}"


def metrics_markdown(
    metrics: pd.DataFrame, plot_uri: str | None, sample: BaselineSample | None = None
) -> str:
    overall = metrics[metrics["unique_id"] == OVERALL].set_index("model")
    extra = probabilistic_columns(metrics)
    titles = ["SPL" if c == SPL else f"{c.removeprefix('coverage_')}% coverage" for c in extra]
    lines = [
        "# Test-split metrics (original units)",
        "",
        "| model | MAE | RMSE | sMAPE | MASE |" + "".join(f" {t} |" for t in titles),
        "|---|---:|---:|---:|---:|" + "---:|" * len(extra),
    ]
    for model, row in overall.iterrows():
        cells = [row.mae, row.rmse, row.smape, row.mase, *(row[c] for c in extra)]
        lines.append(f"| {model} | " + " | ".join(_cell(v) for v in cells) + " |")
    if extra:
        lines += [
            "",
            "SPL: the pinball loss of the forecast quantiles over the MASE scale (a median-only "
            "forecast scores MASE / 2; lower is better). Coverage: the share of actuals inside "
            "the interval between symmetric quantiles (0.1 and 0.9: 80%), best near its level. "
            "– : a point forecaster (no quantiles).",
        ]
    if sample is not None and sample.models:
        heading = "Sampled statistical baselines" if sample.sampled else "Statistical baselines"
        lines += ["", f"**{heading}**: {sample.note}."]
        if sample.sampled:
            lines += [
                f"Their rows (and `{CHALLENGER_ON_BASELINE_SAMPLE}`) cover only the sampled "
                "series' windows; the gate compares the model with them on that sample."
            ]
    if plot_uri:
        lines += ["", f"Plot of actuals against forecasts: `{plot_uri}`"]
    return "\n".join(lines)


def evaluate_key(
    config: PipelineConfig, windows: ArtifactRef, trained: ArtifactRef, champion: str | None
) -> str:
    """Content key: a new champion means a new comparison, never a stale one."""
    return content_key(
        "evaluate",
        config.digest("evaluation"),
        windows.sha256,
        trained.sha256,
        champion,
        code_version(),
    )


def load_trained_model(store: ArtifactStore, trained: ArtifactRef) -> tuple[object, dict]:
    """The model a train artifact points at (checksum verified, safe_mode load), and its metadata."""
    _, meta = store.read_table(trained)
    model = ArtifactRef(**meta["model"])
    return model_from_bytes(store.read_verified(model), model.uri), meta


def load_evaluation(
    store: ArtifactStore,
    windows: ArtifactRef,
    trained: ArtifactRef,
    season: int,
    stat_exog: Sequence[str] = (),
) -> tuple[EvaluationData, ScaledModelForecaster]:
    """The test windows in original units and the trained model as a forecaster (`stat_exog`:
    the raw per-series columns whose one-hot features the model reads)."""
    index, window_meta = store.read_table(windows)
    normalized_ref = ArtifactRef(**window_meta["inputs"][0])
    normalized, scaler, features = load_normalized(store, normalized_ref)
    _, normalized_meta = store.read_table(normalized_ref)
    validated, _ = store.read_table(ArtifactRef(**normalized_meta["inputs"][0]))
    validated, _ = encode_stat(validated, stat_exog, features)
    look_back, horizon = int(window_meta["look_back"]), int(window_meta["horizon"])
    starts = index.loc[index["split"] == "test", "start"].to_numpy(dtype=np.int64)
    data = evaluation_data(validated, normalized, starts, look_back, season)
    model, train_meta = load_trained_model(store, trained)
    challenger = ScaledModelForecaster(
        model,
        scaler,
        list(train_meta["input_features"]),
        look_back,
        horizon,
        quantiles=tuple(float(q) for q in train_meta.get("quantiles", ())),
        future_features=tuple(
            train_meta["input_features"][i] for i in train_meta.get("future_features", ())
        ),
    )
    return data, challenger


def evaluate_models(
    store: ArtifactStore,
    config: PipelineConfig,
    windows: ArtifactRef,
    trained: ArtifactRef,
    champion_version: str | None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], ChampionComparison, EvaluationData, BaselineSample]:
    """Load what the evaluation needs and score challenger, baselines and champion."""
    season = config.evaluation.season_length
    data, challenger = load_evaluation(store, windows, trained, season, config.source.stat_exog)
    registry = ModelRegistry(store, config.name)
    # The champion's model fitted before its own cutoffs: its served model may have been refit
    # on rows that are test windows now, which would flatter it against the challenger.
    champion = (
        registry.forecaster(champion_version, for_evaluation=True) if champion_version else None
    )
    metrics, forecasts, comparison, scored, sample = evaluate_forecasters(
        data,
        challenger,
        configured_baselines(config, challenger.horizon),
        champion,
        champion_version,
        configured_budget(config),
        config.model.forecast_quantiles,
    )
    gate = config.evaluation.gate_must_beat
    require_scores(metrics, scored.scales, [challenger.name, *([gate] if gate != "none" else [])])
    return metrics, forecasts, comparison, scored, sample


@pipeline_task("evaluate")
def evaluate_task(
    config: PipelineConfig, windows: ArtifactRef, trained: ArtifactRef
) -> ArtifactRef:
    """Score model, baselines and champion on the test windows; publish table and plot."""
    champion_version = ModelRegistry(store_for(config), config.name).champion_version()
    key = evaluate_key(config, windows, trained, champion_version)

    def compute(store: ArtifactStore) -> StepResult:
        metrics, forecasts, comparison, data, sample = evaluate_models(
            store, config, windows, trained, champion_version
        )
        plot_uri = None
        png = plot_forecasts(data, forecasts, data.look_back, config.evaluation.plot_series)
        if png is not None:
            plot_uri = store.uri("reports", "evaluate", f"{key}.png")
            store.write_bytes(plot_uri, png)
        champion_note = f"champion {comparison.version}: {comparison.note}"
        if sample.models:
            champion_note += f"; {sample.note}"
        overall = metrics[metrics["unique_id"] == OVERALL]
        publish_table(
            f"metrics-{config.name}",
            overall.drop(columns="unique_id").round(4).to_dict("records"),
            f"Test metrics, model against baselines ({len(data.ends)} windows); {champion_note}",
        )
        publish_markdown(
            f"evaluation-{config.name}",
            metrics_markdown(metrics, plot_uri, sample),
            "Evaluation report",
        )
        run_logger().info(
            "Test metrics (overall):\n%s\n%s", overall.to_string(index=False), champion_note
        )
        return metrics, {
            "champion": comparison.model_dump(),
            "baseline_sample": sample.model_dump(),
            "test_windows": len(data.ends),
            "quantiles": list(config.model.forecast_quantiles),  # spl and coverage scored on
            "plot": plot_uri,
        }

    return produce_artifact(config, "evaluate", key, [windows, trained], compute)
