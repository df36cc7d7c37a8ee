"""What the CLI prints after a flow: readable tables, read back from storage."""

from __future__ import annotations

import pandas as pd

from lstm_model.metrics import OVERALL
from tasks.config import PipelineConfig
from tasks.predict import ForecastSummary, forecast_uri
from tasks.register import CHALLENGER, Registration
from tasks.registry import ModelRegistry
from tasks.runtime import store_for
from tasks.storage import ArtifactError, parquet_bytes_to_table

QUANTILE_LEGEND = (
    "spl: scaled pinball loss of the quantiles (MASE's scale; lower is better); coverage_L: "
    "share of actuals inside the central L% interval (0.1-0.9 for 80; best near L%); "
    "-: a point forecaster."
)


def metrics_text(metrics: pd.DataFrame) -> str:
    """The overall row of every model: MAE, RMSE, sMAPE, MASE and, when the evaluation scored
    quantiles, spl and the interval coverages (-: a point forecaster)."""
    overall = metrics[metrics["unique_id"] == OVERALL].drop(columns="unique_id")
    text = overall.to_string(index=False, float_format=lambda value: f"{value:.4f}", na_rep="-")
    return text + ("\n" + QUANTILE_LEGEND if "spl" in overall.columns else "")


def versions_text(registry: ModelRegistry, gate_baseline: str) -> str:
    """Every complete version, newest first: when it was saved, whether it is the champion, its
    overall test MASE with the gate baseline's (and spl, coverage_80 when scored), then the
    gate's decision on it with the reason."""
    versions = registry.versions()
    if not versions:
        return f"No model versions in {registry.uri()} yet: run `forecast train` first."
    champion = registry.champion_version()
    rows, decisions = [], []
    for version in reversed(versions):
        metadata = registry.metadata(version)
        overall = registry.metrics(version)
        overall = overall[overall["unique_id"] == OVERALL].set_index("model")
        rows.append(
            {
                "version": version,
                "saved_at": str(metadata.get("saved_at", "-"))[:19],
                "champion": "*" if version == champion else "",
                "mase": _score(overall, CHALLENGER, "mase"),
                f"{gate_baseline}_mase": _score(overall, gate_baseline, "mase"),
                "spl": _score(overall, CHALLENGER, "spl"),
                "coverage_80": _score(overall, CHALLENGER, "coverage_80"),
            }
        )
        decision = registry.decision(version)
        if decision is None:
            decisions.append(f"{version}: no gate decision recorded")
        else:
            verdict = "promoted" if decision.get("promote") else "refused"
            decisions.append(f"{version}: {verdict}: {decision.get('reason')}")
    table = pd.DataFrame(rows).dropna(axis="columns", how="all")
    text = table.to_string(index=False, float_format=lambda value: f"{value:.4f}", na_rep="-")
    pointer = registry.champion_pointer() or {}
    lines = [f"Versions of {registry.name}, newest first (*: the champion)", text]
    lines += ["", "Gate decisions:", *(f"  {line}" for line in decisions)]
    if champion is not None:
        lines += [
            "",
            f"Champion {champion}: {pointer.get('reason')} ({pointer.get('promoted_at')})",
        ]
    return "\n".join(lines)


def _score(overall: pd.DataFrame, model: str, column: str) -> float | None:
    """One overall score of `model`, or None when it was not scored."""
    found = model in overall.index and column in overall.columns
    return float(overall.at[model, column]) if found else None


def print_artifacts(artifacts: dict[str, str]) -> None:
    print("\nArtifacts written:")
    for step, uri in artifacts.items():
        print(f"  {step:<10} {uri}")


def print_registration(config: PipelineConfig, registration: Registration) -> None:
    print_artifacts(registration.artifacts)
    registry = ModelRegistry(store_for(config), config.name)
    print(f"\nTest metrics of {config.name}/{registration.version} (original units, overall):")
    print(metrics_text(registry.metrics(registration.version)))
    verdict = "promoted to champion" if registration.promoted else "NOT promoted"
    print(f"\nModel {registration.version} {verdict}: {registration.reason}.")
    print(f"Serving version: {registration.champion}")


def read_forecast(config: PipelineConfig, run_date: str) -> pd.DataFrame:
    store = store_for(config)
    uri = forecast_uri(store, config.name, run_date)
    return parquet_bytes_to_table(store.read_bytes(uri), uri).to_pandas()


def print_forecast(config: PipelineConfig, summary: ForecastSummary) -> None:
    print(f"\nForecast for {summary.run_date} written to {summary.uri}")
    print(
        f"{summary.rows:,} rows: {summary.series} series x {summary.horizon} steps, "
        f"{summary.first_ds} to {summary.last_ds}, model {summary.model_version}"
    )
    if summary.skipped:
        print(f"Not forecast ({len(summary.skipped)}): {summary.skipped}")
    forecast = read_forecast(config, summary.run_date)
    quantiles = [c for c in forecast.columns if c.startswith("yhat_q")]
    print(forecast[["unique_id", "ds", "step", "yhat", *quantiles]].head(10).to_string(index=False))


def latest_forecast_date(config: PipelineConfig) -> str | None:
    store = store_for(config)
    partitions = [p.rsplit("run_date=", 1)[-1] for p in store.list("forecasts", config.name)]
    return max(partitions) if partitions else None


def print_show(config: PipelineConfig) -> int:
    """The champion's metrics and the latest forecast, or what to run first."""
    registry = ModelRegistry(store_for(config), config.name)
    champion = registry.champion_version()
    if champion is None:
        print(f"No champion model for {config.name!r} yet: run `forecast train` first.")
        return 1
    pointer = registry.champion_pointer() or {}
    print(f"Champion {config.name}/{champion} (promoted {pointer.get('promoted_at')})")
    print(metrics_text(registry.metrics(champion)))
    run_date = latest_forecast_date(config)
    if run_date is None:
        print("\nNo forecast yet: run `forecast predict`.")
        return 0
    try:
        forecast = read_forecast(config, run_date)
    except ArtifactError as err:
        print(f"\nLatest forecast ({run_date}) cannot be read: {err}")
        return 1
    print(f"\nLatest forecast: run_date={run_date}, {len(forecast):,} rows")
    wide = forecast.pivot(index="ds", columns="unique_id", values="yhat")
    print(wide.round(3).to_string(max_cols=8))
    return 0
