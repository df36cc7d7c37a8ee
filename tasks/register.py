"""Register step: save the trained model as a version, then let the gate decide on promotion.

The gate compares the challenger with the chosen baseline on every test window and with the
champion on the windows the champion can forecast. When the baseline it must beat is a
statsforecast one scored on a sample of series only (its time budget), the challenger is
compared with it on that same sample, and the reason says so. An incomparable champion (another horizon,
no series in common) is an explicit policy, `evaluation.gate_on_incomparable`: `refuse` keeps
the champion, `baseline_only` decides on the baseline alone; the decision records which.

Registration is never cached (it has side effects) and is idempotent by version: the version
id comes from the trained artifact, so a rerun finds its version saved and decides again. It
first removes what a killed save left in the registry (`ModelRegistry.remove_unfinished`).
The decision and the pointer swap happen under the registry's lock; when the champion changed
since the evaluation (another training promoted meanwhile), the challenger is compared again
with the champion serving now, so two concurrent trainings leave the better one in place.
"""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
from pydantic import BaseModel

from lstm_model.metrics import OVERALL
from lstm_model.scaling import SeriesScaler
from tasks.config import EvaluationConfig, PipelineConfig
from tasks.evaluate import (
    CHALLENGER_ON_BASELINE_SAMPLE,
    CHALLENGER_ON_CHAMPION_WINDOWS,
    CHAMPION,
    BaselineSample,
    ChampionComparison,
    evaluate_models,
)
from tasks.registry import UNFINISHED_AGE, ModelRegistry, new_version_id
from tasks.runtime import pipeline_task, publish_markdown, run_logger, store_for
from tasks.storage import ArtifactRef, ArtifactStore, code_version

CHALLENGER = "lstm"


class Decision(BaseModel):
    """Whether a challenger becomes champion, and why (published to the UI as is)."""

    promote: bool
    reason: str


class Registration(BaseModel):
    """What the register step returns: JSON-safe, shown as the training flow's result."""

    name: str
    version: str
    promoted: bool
    reason: str
    champion: str | None
    artifacts: dict[str, str] = {}
    """Step -> URI of every artifact behind this version, in pipeline order."""


def overall_mase(metrics: pd.DataFrame, model: str) -> float | None:
    """MASE over all series for `model` in a tidy metrics table, or None when absent."""
    rows = metrics[(metrics["model"] == model) & (metrics["unique_id"] == OVERALL)]
    return None if rows.empty else float(rows["mase"].iloc[0])


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def decide_promotion(
    metrics: pd.DataFrame,
    gate: EvaluationConfig,
    comparison: ChampionComparison,
    sample: BaselineSample | None = None,
) -> Decision:
    """Apply the gate to one evaluation: baseline first, then the champion (or the policy).

    A missing or non-finite score is never a pass: it refuses. A baseline scored on a sample
    of series only (`sample`) is compared with the challenger's score on that sample.
    """
    challenger = overall_mase(metrics, CHALLENGER)
    if not _finite(challenger):
        return Decision(promote=False, reason="the evaluation has no finite MASE for the model")
    reasons = [f"challenger MASE {challenger:.4f}"]
    if gate.gate_must_beat != "none":
        baseline = overall_mase(metrics, gate.gate_must_beat)
        if not _finite(baseline):
            return Decision(promote=False, reason=f"no finite {gate.gate_must_beat} MASE")
        mine, where = challenger, ""
        if sample is not None and sample.sampled and gate.gate_must_beat in sample.models:
            mine = overall_mase(metrics, CHALLENGER_ON_BASELINE_SAMPLE)
            where = (
                f" on the sample of {sample.series} of {sample.total_series} series "
                f"{gate.gate_must_beat} was scored on (time budget)"
            )
            if not _finite(mine):
                return Decision(promote=False, reason=f"no finite challenger MASE{where}")
        if not mine < baseline:
            return Decision(
                promote=False,
                reason=f"challenger MASE {mine:.4f} does not beat "
                f"{gate.gate_must_beat} ({baseline:.4f}){where}",
            )
        if where:
            reasons.append(
                f"beats {gate.gate_must_beat} ({mine:.4f} against {baseline:.4f}{where})"
            )
        else:
            reasons.append(f"beats {gate.gate_must_beat} ({baseline:.4f})")
    if comparison.version is None:
        reasons.append("no champion yet")
    elif comparison.comparable:
        champion = overall_mase(metrics, CHAMPION)
        mine = overall_mase(metrics, CHALLENGER_ON_CHAMPION_WINDOWS)
        if not (_finite(champion) and _finite(mine)):
            return Decision(
                promote=False,
                reason=f"no finite MASE to compare with champion {comparison.version}",
            )
        allowed = champion * (1 + gate.gate_max_regression)
        if not mine <= allowed:
            return Decision(
                promote=False,
                reason=f"challenger MASE {mine:.4f} is worse than champion "
                f"{comparison.version}'s {champion:.4f} by more than the allowed "
                f"{gate.gate_max_regression:.1%} ({comparison.note})",
            )
        reasons.append(
            f"within {gate.gate_max_regression:.1%} of champion {comparison.version} "
            f"({mine:.4f} against {champion:.4f}, {comparison.note})"
        )
    elif gate.gate_on_incomparable == "refuse":
        return Decision(
            promote=False,
            reason=f"champion {comparison.version} cannot be compared ({comparison.note}); "
            "evaluation.gate_on_incomparable = 'refuse' keeps it",
        )
    else:
        reasons.append(
            f"champion {comparison.version} cannot be compared ({comparison.note}); decided "
            "on the baseline alone (evaluation.gate_on_incomparable = 'baseline_only')"
        )
    return Decision(promote=True, reason="; ".join(reasons))


def version_of(store: ArtifactStore, trained: ArtifactRef) -> str:
    """The version id of a trained artifact: the same artifact always names the same version."""
    _, meta = store.read_table(trained)
    return new_version_id(trained.sha256, datetime.fromisoformat(meta["created_at"]))


def save_trained_version(
    store: ArtifactStore,
    config: PipelineConfig,
    version: str,
    windows: ArtifactRef,
    trained: ArtifactRef,
    evaluation: ArtifactRef,
) -> None:
    """Write the version folder (once: an existing complete version is left as it is)."""
    registry = ModelRegistry(store, config.name)
    if version in registry.versions():
        return
    metrics, _ = store.read_table(evaluation)
    _, train_meta = store.read_table(trained)
    _, window_meta = store.read_table(windows)
    normalized = ArtifactRef(**window_meta["inputs"][0])
    _, normalized_meta = store.read_table(normalized)
    served = train_meta.get("served_model", train_meta["model"])
    refit = served != train_meta["model"]
    registry.save_version(
        version,
        model_bytes=store.read_verified(ArtifactRef(**served)),
        scaler=SeriesScaler.from_dict(normalized_meta["scaler"]),
        evaluation_model_bytes=(
            store.read_verified(ArtifactRef(**train_meta["model"])) if refit else None
        ),
        metrics=metrics,
        config=config,
        metadata={
            "look_back": train_meta["look_back"],
            "horizon": train_meta["horizon"],
            "features": train_meta["features"],
            "input_features": train_meta["input_features"],
            "future_features": [
                train_meta["input_features"][i] for i in train_meta.get("future_features", [])
            ],
            "quantiles": train_meta.get("quantiles", []),
            "ensemble_size": train_meta.get("ensemble_size", 1),
            "refit_epochs": train_meta.get("refit_epochs"),
            "data_fingerprint": normalized_meta["inputs"],
            "cutoffs": normalized_meta.get("cutoffs"),
            "artifacts": {
                "windows": windows.uri,
                "trained": trained.uri,
                "evaluation": evaluation.uri,
            },
            "code_version": code_version(),
            "config_hash": config.digest(),
        },
    )


def register(
    store: ArtifactStore,
    config: PipelineConfig,
    windows: ArtifactRef,
    trained: ArtifactRef,
    evaluation: ArtifactRef,
) -> tuple[str, Decision]:
    """Save the version, decide against the champion serving *now*, swap the pointer if passed."""
    registry = ModelRegistry(store, config.name)
    version = version_of(store, trained)
    save_trained_version(store, config, version, windows, trained, evaluation)
    metrics, eval_meta = store.read_table(evaluation)
    comparison = ChampionComparison(**eval_meta["champion"])
    sample = BaselineSample(**eval_meta.get("baseline_sample", {}))
    with registry.pointer_lock():
        current = registry.champion_version()
        if current == version:
            decision = Decision(promote=False, reason=f"{version} is already the champion")
        else:
            if comparison.version != current:
                # Promoted meanwhile by another run: compare with the champion serving now.
                metrics, _, comparison, _, sample = evaluate_models(
                    store, config, windows, trained, current
                )
            decision = decide_promotion(metrics, config.evaluation, comparison, sample)
            if decision.promote:
                registry.swap_champion(current, version, decision.reason)
    store.write_json(
        registry.uri(version, "decision.json"),
        {**decision.model_dump(), "champion_compared": comparison.model_dump()},
    )
    return version, decision


def decision_markdown(name: str, version: str, decision: Decision, champion: str | None) -> str:
    verdict = "promoted to champion" if decision.promote else "kept, not promoted"
    return "\n".join(
        [
            f"# Champion decision for `{name}`",
            "",
            f"Challenger `{version}` was **{verdict}**.",
            "",
            f"Reason: {decision.reason}.",
            "",
            f"Serving version now: `{champion}`",
        ]
    )


@pipeline_task("register")
def register_task(
    config: PipelineConfig, windows: ArtifactRef, trained: ArtifactRef, evaluation: ArtifactRef
) -> Registration:
    """Save the trained model as a version; promote it only if it passes the gate."""
    logger = run_logger()
    store = store_for(config)
    registry = ModelRegistry(store, config.name)
    for leftover in registry.remove_unfinished():
        logger.warning(
            "Removed %s: left unfinished by a killed save, untouched for over %s",
            leftover,
            UNFINISHED_AGE,
        )
    version, decision = register(store, config, windows, trained, evaluation)
    champion = registry.champion_version()
    publish_markdown(
        f"champion-decision-{config.name}",
        decision_markdown(config.name, version, decision, champion),
        "Champion decision",
    )
    logger.info(
        "Version %s %s: %s",
        version,
        "promoted" if decision.promote else "not promoted",
        decision.reason,
    )
    upstream = dict(reversed(store.lineage(windows)))  # ingest, validate, normalize, window
    return Registration(
        name=config.name,
        version=version,
        promoted=decision.promote,
        reason=decision.reason,
        champion=champion,
        artifacts={
            **upstream,
            "train": trained.uri,
            "evaluate": evaluation.uri,
            "model": registry.uri(version),
        },
    )
