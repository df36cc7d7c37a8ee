"""The registry: versions, the champion pointer, and the promotion gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.scaling import fit_scaler
from tasks.config import EvaluationConfig, PipelineConfig
from tasks.registry import OVERALL, ModelRegistry, decide_promotion
from tasks.storage import ArtifactError, ArtifactStore

CONFIG = PipelineConfig(source={"path": "unused.parquet"})


def metrics(**overall_mase: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": m, "unique_id": OVERALL, "mae": 1.0, "rmse": 1.0, "smape": 1.0, "mase": v}
            for m, v in overall_mase.items()
        ]
    )


def scaler():
    frame = pd.DataFrame({"unique_id": ["a", "a", "b", "b"], "y": [1.0, 2.0, 3.0, 5.0]})
    return fit_scaler(frame, ["y"], "standard")


def save(registry: ModelRegistry, version: str, table: pd.DataFrame) -> None:
    registry.save_version(
        version,
        model_bytes=f"model {version}".encode(),
        scaler=scaler(),
        metrics=table,
        config=CONFIG,
        metadata={"look_back": 3, "horizon": 2},
    )


def test_gate_requires_beating_the_chosen_baseline() -> None:
    gate = EvaluationConfig(gate_must_beat="seasonal_naive")
    assert decide_promotion(metrics(lstm=0.8, seasonal_naive=0.9, naive=1.2), gate).promote
    refused = decide_promotion(metrics(lstm=0.95, seasonal_naive=0.9, naive=1.2), gate)
    assert not refused.promote
    assert "does not beat seasonal_naive (0.9000)" in refused.reason
    assert decide_promotion(
        metrics(lstm=0.95, naive=1.2), EvaluationConfig(gate_must_beat="naive")
    ).promote


def test_gate_refuses_a_model_worse_than_the_champion_beyond_the_margin() -> None:
    gate = EvaluationConfig(gate_must_beat="seasonal_naive", gate_max_regression=0.05)
    worse = decide_promotion(metrics(lstm=0.80, seasonal_naive=0.9, champion=0.70), gate)
    assert not worse.promote and "worse than the champion's 0.7000" in worse.reason
    within = decide_promotion(metrics(lstm=0.73, seasonal_naive=0.9, champion=0.70), gate)
    assert within.promote and "within 5.0% of the champion" in within.reason


def test_refused_challenger_is_kept_and_the_pointer_stays(tmp_path: Path) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    save(registry, "v1", metrics(lstm=0.7, seasonal_naive=0.9))
    registry.promote("v1", "first")
    pointer = tmp_path / "models" / "demo" / "champion.json"
    before = pointer.read_bytes()

    challenger = metrics(lstm=0.85, seasonal_naive=0.9, champion=0.7)
    save(registry, "v2", challenger)
    decision = decide_promotion(challenger, EvaluationConfig())
    assert not decision.promote
    assert pointer.read_bytes() == before
    assert registry.champion_version() == "v1"
    assert registry.versions() == ["v1", "v2"]  # the challenger is kept, not promoted
    loaded = registry.load("v2")
    assert loaded.model_bytes == b"model v2" and loaded.scaler == scaler()


def test_unfinished_versions_are_not_listed_nor_promotable(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    registry = ModelRegistry(store, "demo")
    store.write_bytes(store.uri("models", "demo", "v9", "model.keras"), b"half")  # no metadata
    assert registry.versions() == []
    with pytest.raises(ArtifactError, match="no complete version"):
        registry.promote("v9", "should fail")
    assert registry.champion_version() is None


def test_a_changed_model_file_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    save(registry, "v1", metrics(lstm=0.7))
    (tmp_path / "models" / "demo" / "v1" / "model.keras").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.load("v1")
    assert np.isfinite(registry.metrics("v1")["mase"]).all()
