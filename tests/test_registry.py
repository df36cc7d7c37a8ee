"""The registry: versions, the champion pointer, and the promotion gate."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lstm_model.metrics import OVERALL
from lstm_model.scaling import fit_scaler
from tasks.config import EvaluationConfig, PipelineConfig
from tasks.evaluate import BaselineSample, ChampionComparison
from tasks.register import decide_promotion
from tasks.registry import ChampionChanged, ModelRegistry
from tasks.storage import ArtifactError, ArtifactStore, table_to_parquet_bytes

CONFIG = PipelineConfig(source={"path": "unused.parquet"})
REPO = Path(__file__).resolve().parent.parent


NO_CHAMPION = ChampionComparison(version=None, comparable=False, note="no champion yet")
COMPARED = ChampionComparison(
    version="v1", comparable=True, windows=10, total_windows=10, note="scored on 10 of 10"
)
INCOMPARABLE = ChampionComparison(
    version="v1", comparable=False, total_windows=10, note="champion forecasts 7 steps"
)


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
    passed = decide_promotion(metrics(lstm=0.8, seasonal_naive=0.9, naive=1.2), gate, NO_CHAMPION)
    assert passed.promote
    assert passed.reason == "challenger MASE 0.8000; beats seasonal_naive (0.9000); no champion yet"
    ungated = decide_promotion(
        metrics(lstm=5.0), EvaluationConfig(gate_must_beat="none"), NO_CHAMPION
    )
    assert ungated.promote and ungated.reason == "challenger MASE 5.0000; no champion yet"
    refused = decide_promotion(metrics(lstm=0.95, seasonal_naive=0.9, naive=1.2), gate, NO_CHAMPION)
    assert not refused.promote
    assert "does not beat seasonal_naive (0.9000)" in refused.reason
    tie = decide_promotion(metrics(lstm=0.9, seasonal_naive=0.9), gate, NO_CHAMPION)
    assert not tie.promote  # beating means strictly better
    assert decide_promotion(
        metrics(lstm=0.95, naive=1.2), EvaluationConfig(gate_must_beat="naive"), NO_CHAMPION
    ).promote


def test_gate_can_require_beating_a_statistical_baseline() -> None:
    gate = EvaluationConfig(baselines=["seasonal_naive", "auto_ets"], gate_must_beat="auto_ets")
    passed = decide_promotion(
        metrics(lstm=0.8, seasonal_naive=0.7, auto_ets=0.85), gate, NO_CHAMPION
    )
    assert passed.promote
    assert passed.reason == "challenger MASE 0.8000; beats auto_ets (0.8500); no champion yet"
    refused = decide_promotion(
        metrics(lstm=0.9, seasonal_naive=1.5, auto_ets=0.85), gate, NO_CHAMPION
    )
    assert not refused.promote
    assert refused.reason == "challenger MASE 0.9000 does not beat auto_ets (0.8500)"
    missing = decide_promotion(metrics(lstm=0.5, seasonal_naive=0.9), gate, NO_CHAMPION)
    assert not missing.promote and missing.reason == "no finite auto_ets MASE"


def test_a_sampled_baseline_is_compared_on_its_sample() -> None:
    gate = EvaluationConfig(baselines=["naive", "auto_ets"], gate_must_beat="auto_ets")
    sample = BaselineSample(
        models=["auto_ets"], sampled=True, series=2, total_series=10, windows=6, total_windows=30
    )
    where = "on the sample of 2 of 10 series auto_ets was scored on (time budget)"
    # Better than auto_ets over all series, but not on the series auto_ets was scored on.
    table = metrics(lstm=0.8, naive=1.2, auto_ets=0.85, challenger_on_baseline_sample=0.9)
    refused = decide_promotion(table, gate, NO_CHAMPION, sample)
    assert not refused.promote
    assert refused.reason == f"challenger MASE 0.9000 does not beat auto_ets (0.8500) {where}"
    # Worse over all series, better on the sample: the sample decides.
    table = metrics(lstm=0.9, naive=1.2, auto_ets=0.85, challenger_on_baseline_sample=0.8)
    passed = decide_promotion(table, gate, NO_CHAMPION, sample)
    assert passed.promote
    assert passed.reason == (
        f"challenger MASE 0.9000; beats auto_ets (0.8000 against 0.8500 {where}); no champion yet"
    )
    no_row = decide_promotion(metrics(lstm=0.5, auto_ets=0.85), gate, NO_CHAMPION, sample)
    assert not no_row.promote and no_row.reason == f"no finite challenger MASE {where}"
    # A sample of other models leaves a gate on a whole-panel baseline as it was.
    naive_gate = gate.model_copy(update={"gate_must_beat": "naive"})
    assert decide_promotion(table, naive_gate, NO_CHAMPION, sample).reason == (
        "challenger MASE 0.9000; beats naive (1.2000); no champion yet"
    )


def test_gate_refuses_non_finite_scores() -> None:
    gate = EvaluationConfig(gate_must_beat="seasonal_naive")
    for table in (metrics(lstm=float("nan"), seasonal_naive=0.9), metrics(seasonal_naive=0.9)):
        refused = decide_promotion(table, gate, NO_CHAMPION)
        assert not refused.promote
        assert refused.reason == "the evaluation has no finite MASE for the model"
    no_baseline = decide_promotion(
        metrics(lstm=0.5, seasonal_naive=float("nan")), gate, NO_CHAMPION
    )
    assert not no_baseline.promote and no_baseline.reason == "no finite seasonal_naive MASE"
    nan_champion = metrics(
        lstm=0.5, seasonal_naive=0.9, champion=float("nan"), challenger_on_champion_windows=0.5
    )
    decision = decide_promotion(nan_champion, gate, COMPARED)
    assert not decision.promote and "no finite MASE to compare" in decision.reason


def test_gate_refuses_a_model_worse_than_the_champion_beyond_the_margin() -> None:
    gate = EvaluationConfig(gate_must_beat="seasonal_naive", gate_max_regression=0.05)

    def table(on_champion_windows: float) -> pd.DataFrame:
        # The challenger is compared on the champion's windows, not on all windows.
        return metrics(
            lstm=0.60,
            seasonal_naive=0.9,
            champion=0.70,
            challenger_on_champion_windows=on_champion_windows,
        )

    worse = decide_promotion(table(0.80), gate, COMPARED)
    assert not worse.promote and "worse than champion v1's 0.7000" in worse.reason
    edge = decide_promotion(table(0.70 * 1.05 + 1e-9), gate, COMPARED)
    assert not edge.promote
    within = decide_promotion(table(0.73), gate, COMPARED)
    assert within.promote and "within 5.0% of champion v1" in within.reason
    strict = EvaluationConfig(gate_must_beat="seasonal_naive")
    assert decide_promotion(table(0.70), strict, COMPARED).promote  # equal is allowed at 0%
    assert not decide_promotion(table(0.7000001), strict, COMPARED).promote


def test_an_incomparable_champion_follows_the_policy_and_says_so() -> None:
    better_than_baseline = metrics(lstm=0.5, seasonal_naive=0.9)
    refuse = EvaluationConfig(gate_must_beat="seasonal_naive")
    assert refuse.gate_on_incomparable == "refuse"  # the default keeps the champion
    kept = decide_promotion(better_than_baseline, refuse, INCOMPARABLE)
    assert not kept.promote
    assert kept.reason == (
        "champion v1 cannot be compared (champion forecasts 7 steps); "
        "evaluation.gate_on_incomparable = 'refuse' keeps it"
    )
    baseline_only = refuse.model_copy(update={"gate_on_incomparable": "baseline_only"})
    passed = decide_promotion(better_than_baseline, baseline_only, INCOMPARABLE)
    assert passed.promote
    assert passed.reason == (
        "challenger MASE 0.5000; beats seasonal_naive (0.9000); champion v1 cannot be compared "
        "(champion forecasts 7 steps); decided on the baseline alone "
        "(evaluation.gate_on_incomparable = 'baseline_only')"
    )
    worse = decide_promotion(metrics(lstm=0.95, seasonal_naive=0.9), baseline_only, INCOMPARABLE)
    assert not worse.promote


def test_refused_challenger_is_kept_and_the_pointer_stays(tmp_path: Path) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    save(registry, "v1", metrics(lstm=0.7, seasonal_naive=0.9))
    registry.promote("v1", "first")
    pointer = tmp_path / "models" / "demo" / "champion.json"
    before = pointer.read_bytes()

    challenger = metrics(
        lstm=0.85, seasonal_naive=0.9, champion=0.7, challenger_on_champion_windows=0.85
    )
    save(registry, "v2", challenger)
    decision = decide_promotion(challenger, EvaluationConfig(), COMPARED)
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


@pytest.mark.parametrize("file_name", ["model.keras", "scaler.parquet", "metrics.parquet"])
def test_every_changed_version_file_is_refused_on_load(tmp_path: Path, file_name: str) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    save(registry, "v1", metrics(lstm=0.7))
    assert np.isfinite(registry.metrics("v1")["mase"]).all()
    registry.load("v1")
    path = tmp_path / "models" / "demo" / "v1" / file_name
    path.write_bytes(path.read_bytes() + b"tampered")
    loader = registry.metrics if file_name == "metrics.parquet" else registry.load
    with pytest.raises(ArtifactError, match=f"{file_name}: checksum mismatch"):
        loader("v1")


def test_a_different_scaler_file_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    save(registry, "v1", metrics(lstm=0.7))
    other = fit_scaler(
        pd.DataFrame({"unique_id": ["a", "a", "b", "b"], "y": [10.0, 20.0, 30.0, 50.0]}),
        ["y"],
        "standard",
    )

    path = tmp_path / "models" / "demo" / "v1" / "scaler.parquet"
    path.write_bytes(
        table_to_parquet_bytes(pa.Table.from_pandas(other.to_frame(), preserve_index=False))
    )
    with pytest.raises(ArtifactError, match="scaler.parquet: checksum mismatch"):
        registry.load("v1")


@pytest.mark.parametrize(
    "version", ["/etc/models/v1", "../other/v1", "v1/../../x", "a b", "", ".hidden"]
)
def test_a_champion_pointer_outside_the_registry_is_refused(tmp_path: Path, version: str) -> None:
    store = ArtifactStore(str(tmp_path))
    registry = ModelRegistry(store, "demo")
    save(registry, "v1", metrics(lstm=0.7))
    store.write_json(registry.uri("champion.json"), {"version": version})
    with pytest.raises(ArtifactError, match="champion.json: .* is not a valid model version id"):
        registry.champion_version()


def test_a_champion_pointer_to_a_missing_version_or_bad_json_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    registry = ModelRegistry(store, "demo")
    store.write_json(registry.uri("champion.json"), {"version": "v7"})
    with pytest.raises(ArtifactError, match="names version 'v7', which does not exist"):
        registry.champion_version()
    store.write_bytes(registry.uri("champion.json"), b"{not json")
    with pytest.raises(ArtifactError, match="champion.json: not valid JSON"):
        registry.champion_version()


def test_the_pointer_swap_is_a_compare_and_swap(tmp_path: Path) -> None:
    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    for version in ("v1", "v2", "v3"):
        save(registry, version, metrics(lstm=0.7))
    with registry.pointer_lock():
        registry.swap_champion(None, "v1", "first")
    with registry.pointer_lock():
        registry.swap_champion("v1", "v2", "compared with v1")
    pointer = registry.champion_pointer()
    promoted_at = datetime.fromisoformat(pointer.pop("promoted_at"))
    assert promoted_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - promoted_at) < timedelta(minutes=5)
    history = pointer.pop("history")
    assert pointer == {"version": "v2", "previous": "v1", "reason": "compared with v1"}
    assert [(entry["version"], entry["reason"]) for entry in history] == [("v1", "first")]
    stale = f"{registry.uri('champion.json')}: the champion is v2, not v1 as compared; v3 was not"
    with registry.pointer_lock(), pytest.raises(ChampionChanged, match=re.escape(stale)):
        registry.swap_champion("v1", "v3", "compared with a stale champion")
    assert registry.champion_version() == "v2"


def test_the_pointer_lock_excludes_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    registry = ModelRegistry(ArtifactStore(str(tmp_path)), "demo")
    code = (
        "import sys; from tasks.registry import ModelRegistry; from tasks.storage import "
        f"ArtifactStore; r = ModelRegistry(ArtifactStore({str(tmp_path)!r}), 'demo')\n"
        "with r.pointer_lock(): print('locked', flush=True)"
    )
    with registry.pointer_lock():
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        time.sleep(2.0)
        assert child.poll() is None  # still waiting for the lock we hold
    out, _ = child.communicate(timeout=120)
    assert out.strip() == "locked"
