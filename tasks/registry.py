"""The model registry: versions under `{root}/models/{name}/`, and the champion pointer.

A version folder holds the model (`model.keras`), its scaler, config, metrics, data fingerprint
and code version; `metadata.json` is written last, so a folder without it is an unfinished save
and never listed. `champion.json` names the serving version and changes with one atomic write,
only when the challenger passes the gate.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from lstm_model.metrics import OVERALL
from lstm_model.scaling import SeriesScaler
from tasks.config import EvaluationConfig, PipelineConfig
from tasks.runtime import pipeline_task, publish_markdown, run_logger, store_for
from tasks.storage import (
    ArtifactError,
    ArtifactRef,
    ArtifactStore,
    code_version,
    sha256_bytes,
    table_to_parquet_bytes,
)


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


def decide_promotion(metrics: pd.DataFrame, gate: EvaluationConfig) -> Decision:
    """Apply the gate to one evaluation table (challenger, baselines and maybe the champion).

    The challenger must beat the chosen baseline on MASE, and must not be worse than the
    current champion (scored on the same test windows) by more than `gate_max_regression`.
    """
    challenger = overall_mase(metrics, "lstm")
    if challenger is None:
        return Decision(promote=False, reason="the evaluation has no overall MASE for the model")
    reasons = [f"challenger MASE {challenger:.4f}"]
    if gate.gate_must_beat != "none":
        baseline = overall_mase(metrics, gate.gate_must_beat)
        if baseline is None:
            return Decision(promote=False, reason=f"no {gate.gate_must_beat} baseline to compare")
        if not challenger < baseline:
            return Decision(
                promote=False,
                reason=f"challenger MASE {challenger:.4f} does not beat "
                f"{gate.gate_must_beat} ({baseline:.4f})",
            )
        reasons.append(f"beats {gate.gate_must_beat} ({baseline:.4f})")
    champion = overall_mase(metrics, "champion")
    if champion is not None:
        allowed = champion * (1 + gate.gate_max_regression)
        if challenger > allowed:
            return Decision(
                promote=False,
                reason=f"challenger MASE {challenger:.4f} is worse than the champion's "
                f"{champion:.4f} by more than the allowed {gate.gate_max_regression:.1%}",
            )
        reasons.append(f"within {gate.gate_max_regression:.1%} of the champion ({champion:.4f})")
    else:
        reasons.append("no comparable champion")
    return Decision(promote=True, reason="; ".join(reasons))


def new_version_id(content_key: str, now: datetime | None = None) -> str:
    """Sortable, unique-enough version ids: UTC time, then the training content key."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{content_key[:8]}"


def model_to_bytes(model: Any) -> bytes:
    """A Keras model as `.keras` bytes, for the artifact store (which may not be a local disk)."""
    from lstm_model.serialization import save_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        save_model(model, path)
        return path.read_bytes()


def model_from_bytes(data: bytes) -> Any:
    """The Keras model in `.keras` bytes, loaded with safe_mode=True (no Lambda layers)."""
    from lstm_model.serialization import load_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        return load_model(path)


@dataclass(frozen=True)
class ModelVersion:
    """A saved version, as read back for serving or comparison."""

    name: str
    version: str
    metadata: dict[str, Any]
    scaler: SeriesScaler
    model_bytes: bytes

    def load_model(self) -> Any:
        """The Keras model, always loaded with safe_mode=True."""
        return model_from_bytes(self.model_bytes)


class ModelRegistry:
    """Versions and the champion pointer of one pipeline name, inside an artifact store."""

    def __init__(self, store: ArtifactStore, name: str) -> None:
        self.store = store
        self.name = name

    def uri(self, *parts: str) -> str:
        return self.store.uri("models", self.name, *parts)

    def save_version(
        self,
        version: str,
        *,
        model_bytes: bytes,
        scaler: SeriesScaler,
        metrics: pd.DataFrame,
        config: PipelineConfig,
        metadata: dict[str, Any],
    ) -> str:
        """Write a version folder; metadata.json last marks it complete. Returns its URI."""
        self.store.write_bytes(self.uri(version, "model.keras"), model_bytes)
        self.store.write_bytes(
            self.uri(version, "scaler.parquet"),
            table_to_parquet_bytes(_frame_to_table(scaler.to_frame())),
        )
        self.store.write_bytes(
            self.uri(version, "metrics.parquet"), table_to_parquet_bytes(_frame_to_table(metrics))
        )
        self.store.write_json(self.uri(version, "config.json"), config.model_dump(mode="json"))
        self.store.write_json(
            self.uri(version, "metadata.json"),
            {
                **metadata,
                "name": self.name,
                "version": version,
                "model_sha256": sha256_bytes(model_bytes),
                "saved_at": datetime.now(UTC).isoformat(),
            },
        )
        return self.uri(version)

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        found = []
        for path in self.store.list("models", self.name):
            version = Path(path).name
            if self.store.exists(self.uri(version, "metadata.json")):
                found.append(version)
        return sorted(found)

    def champion_version(self) -> str | None:
        pointer = self.uri("champion.json")
        if not self.store.exists(pointer):
            return None
        return str(self.store.read_json(pointer)["version"])

    def champion_pointer(self) -> dict[str, Any] | None:
        pointer = self.uri("champion.json")
        return self.store.read_json(pointer) if self.store.exists(pointer) else None

    def promote(self, version: str, reason: str) -> None:
        """Point the champion at `version`: one atomic write of a small JSON file."""
        if version not in self.versions():
            raise ArtifactError(f"cannot promote {self.name}/{version}: no complete version")
        self.store.write_json(
            self.uri("champion.json"),
            {"version": version, "reason": reason, "promoted_at": datetime.now(UTC).isoformat()},
        )

    def load(self, version: str) -> ModelVersion:
        model_bytes = self.store.read_bytes(self.uri(version, "model.keras"))
        metadata = self.store.read_json(self.uri(version, "metadata.json"))
        if sha256_bytes(model_bytes) != metadata["model_sha256"]:
            raise ArtifactError(f"{self.uri(version, 'model.keras')}: checksum mismatch")
        scaler_frame = _read_parquet_bytes(
            self.store.read_bytes(self.uri(version, "scaler.parquet"))
        )
        return ModelVersion(
            name=self.name,
            version=version,
            metadata=metadata,
            scaler=SeriesScaler.from_frame(scaler_frame),
            model_bytes=model_bytes,
        )

    def metrics(self, version: str) -> pd.DataFrame:
        return _read_parquet_bytes(self.store.read_bytes(self.uri(version, "metrics.parquet")))


def _frame_to_table(frame: pd.DataFrame):  # noqa: ANN202 - pyarrow type
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def _read_parquet_bytes(data: bytes) -> pd.DataFrame:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data), page_checksum_verification=True).to_pandas()


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
    metrics, eval_meta = store.read_table(evaluation)
    _, train_meta = store.read_table(trained)
    _, window_meta = store.read_table(windows)
    normalized = ArtifactRef(**window_meta["inputs"][0])
    _, normalized_meta = store.read_table(normalized)
    model_bytes = store.read_verified(ArtifactRef(**train_meta["model"]))
    version = new_version_id(trained.sha256)
    registry.save_version(
        version,
        model_bytes=model_bytes,
        scaler=SeriesScaler.from_dict(normalized_meta["scaler"]),
        metrics=metrics,
        config=config,
        metadata={
            "look_back": train_meta["look_back"],
            "horizon": train_meta["horizon"],
            "features": train_meta["features"],
            "input_features": train_meta["input_features"],
            "data_fingerprint": normalized_meta["inputs"],
            "artifacts": {
                "windows": windows.uri,
                "trained": trained.uri,
                "evaluation": evaluation.uri,
            },
            "code_version": code_version(),
            "config_hash": config.digest(),
        },
    )
    decision = decide_promotion(metrics, config.evaluation)
    if decision.promote:
        registry.promote(version, decision.reason)
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
