"""The promotion gate on real stores: new series, incomparable champions, concurrent trainings.

Models here are real Keras models whose forecasts are known (a frozen linear layer that picks
inputs): `seasonal` repeats the last week (as good as seasonal naive), `flat` forecasts each
series' training mean (much worse on daily ridership). So which model is better is known
without training, and every assertion about the gate is deterministic.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model import statistical
from lstm_model.forecasters import SeasonalNaive, actuals
from lstm_model.metrics import OVERALL, metrics_table
from tasks.config import PipelineConfig
from tasks.evaluate import evaluate_task, load_evaluation
from tasks.register import register, version_of
from tasks.registry import ModelRegistry, model_to_bytes
from tasks.storage import ArtifactRef, ArtifactStore, sha256_bytes
from tests.support import BUNDLED, HORIZON, SERIES, small_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def selector_model(look_back: int, n_features: int, horizon: int, season: int | None):
    """Seasonal naive (season given) or a zero forecast in scaled units (the train mean)."""
    import keras

    inputs = keras.Input((look_back, n_features))
    dense = keras.layers.Dense(horizon)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((look_back * n_features, horizon), dtype=np.float32)
    if season is not None:
        for step in range(horizon):
            kernel[(look_back - season + step % season) * n_features, step] = 1.0
    dense.set_weights([kernel, np.zeros(horizon, dtype=np.float32)])
    return model


def trained_artifact(
    store: ArtifactStore, windows: ArtifactRef, season: int | None, tag: str
) -> ArtifactRef:
    """A train artifact for a known model, as the train step would write it."""
    _, meta = store.read_table(windows)
    features = list(meta["features"])
    model = selector_model(meta["look_back"], len(features), meta["horizon"], season)
    data = model_to_bytes(model)
    uri = store.uri("artifacts", "train", f"{tag}.keras")
    store.write_bytes(uri, data)
    return store.write_table(
        "train",
        tag,
        pd.DataFrame({"epoch": [1], "loss": [0.0]}),
        config_hash="test",
        inputs=[windows],
        extra={
            "model": ArtifactRef(uri=uri, sha256=sha256_bytes(data)).model_dump(),
            "features": features,
            "input_features": features,
            "look_back": meta["look_back"],
            "horizon": meta["horizon"],
        },
    )


def source_with(folder: Path, stations: list[str], days: int = 400) -> Path:
    frame = pd.read_parquet(BUNDLED, columns=["series_id", "timestamp", "target", "Cubs_Home"])
    frame = frame[frame["series_id"].isin(stations)]
    frame = frame[frame["timestamp"] > frame["timestamp"].max() - pd.Timedelta(days=days)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{'-'.join(stations)}.parquet"
    frame.to_parquet(path, index=False)
    return path


def gate_config(source: Path, root: Path, name: str, **evaluation: object) -> PipelineConfig:
    return small_config(
        source,
        root,
        name=name,
        evaluation={"gate_must_beat": "none", "plot_series": 0, **evaluation},
    )


def windows_for(config: PipelineConfig) -> ArtifactRef:
    from flows.training import data_flow

    return data_flow(config, "2026-11-20")


def evaluate_and_register(
    config: PipelineConfig, windows: ArtifactRef, season: int | None, tag: str
) -> tuple[str, bool, str]:
    store = ArtifactStore(config.storage.root)
    trained = trained_artifact(store, windows, season, f"{config.name}-{tag}")
    evaluation = evaluate_task.fn(config, windows, trained)
    version, decision = register(store, config, windows, trained, evaluation)
    return version, decision.promote, decision.reason


def test_a_station_added_after_the_champion_is_evaluated_not_crashed(tmp_path: Path) -> None:
    two = gate_config(source_with(tmp_path / "d", SERIES[:2]), tmp_path / "store", "added")
    champion, promoted, _ = evaluate_and_register(two, windows_for(two), 7, "champion")
    assert promoted

    # Harlem is new: the champion's scaler has never seen it.
    three = gate_config(source_with(tmp_path / "d", SERIES), tmp_path / "store", "added")
    windows = windows_for(three)
    store = ArtifactStore(three.storage.root)
    flat = trained_artifact(store, windows, None, "added-flat")
    evaluation = evaluate_task.fn(three, windows, flat)
    metrics, meta = store.read_table(evaluation)
    comparison = meta["champion"]
    assert comparison["version"] == champion and comparison["comparable"]
    assert "'Harlem'" in comparison["note"]
    index, _ = store.read_table(windows)
    test = index[index["split"] == "test"]
    assert comparison["total_windows"] == len(test)
    assert comparison["windows"] == int((test["unique_id"] != "Harlem").sum())
    champion_rows = metrics[metrics["model"] == "champion"]
    assert set(champion_rows["unique_id"]) == {*SERIES[:2], OVERALL}
    # The decision follows the gate on the windows both can forecast: the flat model loses.
    version, decision = register(store, three, windows, flat, evaluation)
    assert not decision.promote and f"worse than champion {champion}" in decision.reason
    assert ModelRegistry(store, "added").champion_version() == champion


@pytest.mark.parametrize("policy", ["refuse", "baseline_only"])
def test_an_incomparable_champion_follows_the_policy(tmp_path: Path, policy: str) -> None:
    source = source_with(tmp_path / "d", SERIES)
    first = gate_config(source, tmp_path / "store", "policy")
    champion, promoted, _ = evaluate_and_register(first, windows_for(first), 7, "champion")
    assert promoted
    # Another horizon: the champion cannot forecast these windows at all.
    shorter = gate_config(
        source, tmp_path / "store", "policy", gate_on_incomparable=policy
    ).model_copy(update={"window": first.window.model_copy(update={"horizon": HORIZON - 2})})
    version, promoted, reason = evaluate_and_register(shorter, windows_for(shorter), 7, policy)
    champion_now = ModelRegistry(ArtifactStore(first.storage.root), "policy").champion_version()
    assert f"champion {champion} cannot be compared" in reason
    assert f"forecasts {HORIZON} steps, the challenger {HORIZON - 2}" in reason
    if policy == "refuse":
        assert not promoted and champion_now == champion
    else:
        assert promoted and champion_now == version and "'baseline_only'" in reason


def evaluated_pair(
    config: PipelineConfig, windows: ArtifactRef
) -> dict[str, tuple[ArtifactRef, ArtifactRef]]:
    """A worse ("flat") and a better ("seasonal") trained model, each evaluated before either
    registers: both compared against the same champion (none yet)."""
    store = ArtifactStore(config.storage.root)
    runs = {}
    for tag, season in (("flat", None), ("seasonal", 7)):
        trained = trained_artifact(store, windows, season, f"{config.name}-{tag}")
        runs[tag] = (trained, evaluate_task.fn(config, windows, trained))
    return runs


def test_two_trainings_in_either_order_leave_the_better_model(tmp_path: Path) -> None:
    source = source_with(tmp_path / "d", SERIES)
    outcomes = {}
    for name, order in (
        ("flat-first", ["flat", "seasonal"]),
        ("seasonal-first", ["seasonal", "flat"]),
    ):
        config = gate_config(source, tmp_path / "store", name)
        windows = windows_for(config)
        store = ArtifactStore(config.storage.root)
        runs = evaluated_pair(config, windows)
        for tag in order:
            register(store, config, windows, *runs[tag])
        outcomes[name] = ModelRegistry(store, name).champion_version()
        assert outcomes[name] == version_of(store, runs["seasonal"][0])
    decision = (Path(tmp_path / "store") / "models" / "seasonal-first").glob("*/decision.json")
    reasons = [p.read_text() for p in decision]
    assert any("worse than champion" in text for text in reasons)  # the late, worse one


def test_concurrent_registrations_leave_the_better_model(tmp_path: Path) -> None:
    config = gate_config(source_with(tmp_path / "d", SERIES), tmp_path / "store", "race")
    windows = windows_for(config)
    store = ArtifactStore(config.storage.root)
    runs = evaluated_pair(config, windows)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def registration(tag: str) -> None:
        try:
            barrier.wait(timeout=60)
            register(ArtifactStore(config.storage.root), config, windows, *runs[tag])
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            errors.append(err)

    threads = [threading.Thread(target=registration, args=(tag,)) for tag in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    champion = ModelRegistry(store, "race").champion_version()
    assert champion == version_of(store, runs["seasonal"][0])


def test_registration_is_idempotent_and_the_evaluation_key_names_the_champion(
    tmp_path: Path,
) -> None:
    config = gate_config(source_with(tmp_path / "d", SERIES), tmp_path / "store", "again")
    windows = windows_for(config)
    store = ArtifactStore(config.storage.root)
    trained = trained_artifact(store, windows, 7, "again-seasonal")
    before = evaluate_task.fn(config, windows, trained)
    version, decision = register(store, config, windows, trained, before)
    assert decision.promote
    again, decision = register(store, config, windows, trained, before)
    assert again == version and not decision.promote and "already the champion" in decision.reason
    assert ModelRegistry(store, "again").versions() == [version]
    # A new champion means a new comparison: the evaluation is not reused.
    after = evaluate_task.fn(config, windows, trained)
    assert after.uri != before.uri
    assert store.read_table(after)[1]["champion"]["version"] == version


def test_the_real_seasonal_naive_gate_refuses_then_promotes(tmp_path: Path) -> None:
    """Whole training flows with the default gate: a barely trained model is refused, a model
    that learns a correction to seasonal naive is promoted (its margin is several percent)."""
    from flows.training import training_flow

    source = source_with(tmp_path / "d", SERIES, days=600)

    def config(**model: object) -> PipelineConfig:
        return small_config(
            source,
            tmp_path / "store",
            name="realgate",
            model={"units": [16], "loss": "mae", **model},
            training={"epochs": 5, "batch_size": 64},
            evaluation={"gate_must_beat": "seasonal_naive", "plot_series": 0},
        )

    # Without the seasonal-naive reference an untrained model is far from seasonal naive.
    refused = training_flow(config(learning_rate=1e-6, reference="none"), "2026-11-20")
    assert not refused.promoted
    assert "does not beat seasonal_naive" in refused.reason and refused.champion is None
    promoted = training_flow(config(reference="seasonal_naive"), "2026-11-20")
    assert promoted.promoted, promoted.reason
    assert "beats seasonal_naive" in promoted.reason and promoted.champion == promoted.version


def test_a_sampled_statistical_baseline_gates_on_its_sample(tmp_path: Path) -> None:
    config = gate_config(
        source_with(tmp_path / "d", SERIES),
        tmp_path / "store",
        "sampled",
        baselines=["seasonal_naive", "auto_theta"],
        gate_must_beat="auto_theta",
        baseline_time_budget_s=1e-6,  # room for the first series only
        baseline_n_jobs=1,
    )
    windows = windows_for(config)
    store = ArtifactStore(config.storage.root)
    trained = trained_artifact(store, windows, 7, "sampled-seasonal")
    evaluation = evaluate_task.fn(config, windows, trained)
    metrics, meta = store.read_table(evaluation)
    sample = meta["baseline_sample"]
    assert sample["sampled"] and (sample["series"], sample["total_series"]) == (1, 3)
    assert sample["models"] == ["auto_theta"] and "sample of 1 of 3 series" in sample["note"]
    sampled = set(metrics.loc[metrics["model"] == "auto_theta", "unique_id"]) - {OVERALL}
    assert len(sampled) == 1 and sampled < set(SERIES)

    def mase(model: str, series: str = OVERALL) -> float:
        rows = metrics[(metrics["model"] == model) & (metrics["unique_id"] == series)]
        return float(rows["mase"].iloc[0])

    # Even one station's test windows exceed the budget: only the timed pilot windows, its
    # first PILOT_FITS, are scored, and the challenger is scored on exactly those windows.
    (station,) = sampled
    assert sample["windows"] == statistical.PILOT_FITS
    data, _ = load_evaluation(store, windows, trained, 7)
    pilot = np.flatnonzero(data.unique_ids == station)[: statistical.PILOT_FITS]
    ends = data.ends[pilot]
    by_hand = metrics_table(
        actuals(data.frame, ends, HORIZON),
        {"seasonal": SeasonalNaive(HORIZON, 7).predict(data.frame, ends)},  # the challenger
        data.unique_ids[pilot],
        data.scales,
    )
    expected = float(by_hand.loc[by_hand["unique_id"] == OVERALL, "mase"].iloc[0])
    assert mase("challenger_on_baseline_sample") == pytest.approx(expected, rel=1e-5)
    _, decision = register(store, config, windows, trained, evaluation)
    where = "on the sample of 1 of 3 series auto_theta was scored on (time budget)"
    assert where in decision.reason
    assert decision.promote == (mase("challenger_on_baseline_sample") < mase("auto_theta"))
