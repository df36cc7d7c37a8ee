"""`forecast tune`: the search space as config overrides, the ask/tell loop, the validation
score, the best-config TOML writer, and the real command on tiny data."""

from __future__ import annotations

import asyncio
import json
import re
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from lstm_model.forecasters import SeasonalNaive
from lstm_model.metrics import mae, seasonal_naive_scale
from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.evaluate import EvaluationData
from tasks.storage import ArtifactStore
from tasks.tune import (
    PARAMETERS,
    TRIAL_SETTINGS,
    StudyPlan,
    TrialRecord,
    TuneError,
    best_record,
    config_text,
    new_study,
    run_study,
    score_validation,
    search_space,
    study_table,
    suggest_params,
    trial_config,
    tuned_config,
)
from tests.support import REPO, write_small_source

# A point model in the base config, so that a tuned loss visibly replaces it.
POINT_MODEL = {"loss": "mae", "normalization": "series", "reference": "none"}
ONE_MODEL = {"ensemble_size": 1, "refit": False}


def base_config(**sections: dict) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "tunes",
            "source": {"path": "/data/x.parquet"},
            "window": {"look_back": 28, "horizon": 7},
            "model": {"units": [32], **POINT_MODEL},
            "training": {"epochs": 3, "ensemble_size": 3, "refit": True},
            **sections,
        }
    )


POINT = {
    "look_back": 14,
    "units": 24,
    "layers": 2,
    "dropout": 0.1,
    "learning_rate": 0.002,
    "batch_size": 128,
    "loss": "huber",
}


# -- search space ---------------------------------------------------------------------------
def test_default_space_centres_look_back_on_the_config() -> None:
    space = search_space(base_config())
    assert space.look_back == (14, 28, 56)
    assert space.units == (16, 128) and space.layers == (1, 2)
    assert set(space.loss) == {"pinball", "mae", "mse", "huber"}


def test_configured_bounds_become_the_space_and_a_reversed_range_is_named() -> None:
    config = base_config(tune={"look_back": [21, 7, 7], "units": [4, 8], "loss": ["mae"]})
    space = search_space(config)
    assert space.look_back == (7, 21) and space.units == (4, 8) and space.loss == ("mae",)
    with pytest.raises(ValueError, match=r"tune.units = \[9, 4\]: low must not exceed high"):
        base_config(tune={"units": [9, 4]})
    with pytest.raises(ValueError, match="tune.loss"):
        base_config(tune={"loss": ["quantile"]})
    assert search_space(base_config(tune={"loss": ["pinball"]})).loss == ("pinball",)


def test_a_point_of_the_space_sets_exactly_the_tuned_keys() -> None:
    base = base_config()
    tuned = tuned_config(base, POINT)
    assert tuned.window.look_back == 14
    assert tuned.model.preset == "custom"  # two layers: one LSTM per units entry
    assert tuned.model.units == [24, 24]
    assert tuned.model.dropout == 0.1 and tuned.model.learning_rate == 0.002
    assert tuned.model.loss == "huber" and tuned.training.batch_size == 128
    # everything else is the base config's, including the production recipe
    assert tuned.training.ensemble_size == 3 and tuned.training.refit is True
    assert tuned.window.horizon == base.window.horizon and tuned.training.epochs == 3
    assert tuned.model.normalization == base.model.normalization


def test_one_layer_keeps_a_single_layer_preset_and_trials_train_one_model_without_refit() -> None:
    base = base_config()
    point = {**POINT, "layers": 1}
    tuned = tuned_config(base, point)
    assert tuned.model.preset == "multivariate" and tuned.model.units == [24]
    trial = trial_config(base, point)
    assert trial.training.refit is TRIAL_SETTINGS["training"]["refit"] is False
    assert trial.training.ensemble_size == 1
    assert trial.model == tuned.model and trial.window == tuned.window


def test_a_univariate_model_refuses_a_multi_layer_space() -> None:
    config = base_config(model={"preset": "univariate", **POINT_MODEL})
    with pytest.raises(TuneError, match=r"tune.layers = \[1, 2\].*univariate"):
        search_space(config)
    assert search_space(base_config(model={"preset": "univariate"}, tune={"layers": [1, 1]}))


def test_suggestions_stay_inside_the_space() -> None:
    space = search_space(base_config(tune={"units": [4, 6], "dropout": [0.0, 0.0]}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = suggest_params(study.ask(), space)
        assert list(params) == list(PARAMETERS)
        assert params["look_back"] in space.look_back and 4 <= params["units"] <= 6
        assert params["dropout"] == 0.0 and params["loss"] in space.loss
        assert 3e-4 <= params["learning_rate"] <= 1e-2
    fixed = optuna.trial.FixedTrial({**POINT, "units": 5, "dropout": 0.0, "look_back": 56})
    assert suggest_params(fixed, space) == {**POINT, "units": 5, "dropout": 0.0, "look_back": 56}


# -- validation score -----------------------------------------------------------------------
def test_validation_score_is_the_mase_of_the_metrics_module() -> None:
    # two series, 12 train rows each, two validation windows of 2 steps per series
    rng = np.random.default_rng(0)
    rows = []
    for uid, level in (("a", 10.0), ("b", 100.0)):
        y = level + rng.normal(0, 1 + level / 10, 16).round(2)
        split = ["train"] * 12 + ["validation"] * 4
        rows.append(pd.DataFrame({"unique_id": uid, "ds": np.arange(16), "y": y, "split": split}))
    frame = pd.concat(rows, ignore_index=True)
    train = frame[frame["split"] == "train"]
    scales = train.groupby("unique_id")["y"].apply(lambda y: seasonal_naive_scale(y.to_numpy(), 2))
    ends = np.array([12, 14, 28, 30])
    data = EvaluationData(frame, ends, scales, look_back=4)
    forecaster = SeasonalNaive(horizon=2, season=2)
    y = frame["y"].to_numpy()
    expected = np.mean(
        [mae(y[end : end + 2], y[end - 2 : end]) / scales[frame["unique_id"][end]] for end in ends]
    )
    assert score_validation(data, forecaster) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(TuneError, match="no validation windows"):
        score_validation(EvaluationData(frame, ends[:0], scales, 4), forecaster)


# -- the ask/tell loop ----------------------------------------------------------------------
def plan(trials: int, budget: float = 1e9, workers: int = 2) -> StudyPlan:
    return StudyPlan(
        name="tune-test",
        space=search_space(base_config(tune={"look_back": [7, 14]})),
        trials=trials,
        time_budget_s=budget,
        max_workers=workers,
        seed=0,
    )


def test_the_loop_runs_the_trial_count_at_most_max_workers_at_once_and_records_failures() -> None:
    def train(number: int, config: PipelineConfig) -> float:
        time.sleep(0.2)  # long enough that an eager loop would submit while trials still run
        if number == 2:
            raise ValueError("no training windows")
        return config.window.look_back / 10 + number  # a MASE the test can predict

    base = base_config()
    submitted: list[PipelineConfig] = []
    futures: list[Future] = []
    busy_at_submit: list[int] = []
    with ThreadPoolExecutor(max_workers=4) as pool:

        def submit(number: int, config: PipelineConfig) -> Future:
            busy_at_submit.append(sum(not future.done() for future in futures))
            submitted.append(config)
            futures.append(pool.submit(train, number, config))
            return futures[-1]

        records = run_study(new_study(plan(5)), plan(5), base, submit)
    assert [r.number for r in records] == [0, 1, 2, 3, 4] and len(submitted) == 5
    # never a third trial while two run (the pool has 4 threads: the loop is the limit)
    assert max(busy_at_submit) <= 1
    assert all(c.training.refit is False and c.training.ensemble_size == 1 for c in submitted)
    failed = records[2]
    assert failed.state == "FAIL" and failed.validation_mase is None
    assert "ValueError: no training windows" in failed.error
    for record in records[:2] + records[3:]:
        assert record.state == "COMPLETE"
        assert record.validation_mase == record.params["look_back"] / 10 + record.number
    assert best_record(records) is records[0]


def test_no_trial_starts_after_the_time_budget() -> None:
    now = [0.0]

    def submit(number: int, config: PipelineConfig) -> Future:
        now[0] += 40.0  # each trial takes 40 "seconds" of a fake clock
        future: Future = Future()
        future.set_result(1.0 + number)
        return future

    records = run_study(
        new_study(plan(10, budget=100.0, workers=1)),
        plan(10, budget=100.0, workers=1),
        base_config(),
        submit,
        clock=lambda: now[0],
    )
    assert len(records) == 3  # started at 0, 40 and 80 s; not at 120 s
    assert [r.seconds for r in records] == [40.0, 40.0, 40.0]


def test_a_search_where_every_trial_failed_says_why() -> None:
    records = [
        TrialRecord(number=0, params=POINT, state="FAIL", seconds=1.0, error="ValueError: boom")
    ]
    with pytest.raises(TuneError, match="no trial completed.*trial 0: ValueError: boom"):
        best_record(records)
    table = study_table(records)
    assert table.loc[0, "state"] == "FAIL" and np.isnan(table.loc[0, "validation_mase"])


# -- the best config as TOML ----------------------------------------------------------------
def test_a_written_config_loads_back_identical_from_any_folder(tmp_path: Path) -> None:
    config = base_config(
        name="tricky-1",
        source={"path": "relative/data.parquet", "hist_exog": ['he said "hi"', "back\\slash"]},
        validation={
            "y_max": 1e6,
            "extra_expectations": [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "y", "min_value": 0},
                }
            ],
        },
        storage={"root": "s3://bucket/prefix"},
        tune={"learning_rate": [1e-05, 0.01], "look_back": [7]},
    )
    text = config_text(config, ["header: ünïcode and = signs"])
    assert text.startswith("# header: ünïcode and = signs\n")
    path = tmp_path / "elsewhere" / "best.toml"
    path.parent.mkdir()
    path.write_text(text)
    loaded = load_config(path, environ={})
    expected = config.model_dump()
    expected["source"]["path"] = str(Path("relative/data.parquet").resolve())  # written absolute
    assert loaded.model_dump() == expected
    assert tomllib.loads(text)["storage"]["root"] == "s3://bucket/prefix"  # URLs stay as given


def test_a_config_toml_cannot_hold_is_refused_naming_the_keys() -> None:
    # TOML has no null: an explicit None where the default is a value would load back changed
    wide = base_config(source={"path": "/x.csv", "layout": "wide", "target_column": None})
    with pytest.raises(TuneError, match=r"source.target_column"):
        config_text(wide)


def test_load_config_refuses_a_tune_section_with_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[source]\npath = "x.parquet"\n[tune]\ntrails = 3\n')
    with pytest.raises(ConfigError, match="tune.trails"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--trials", "0"], "the trial count must be at least 1, got 0"),
        (["--time-budget", "-5"], "the time budget must be above 0 seconds, got -5.0"),
    ],
)
def test_forecast_tune_refuses_bad_limits_before_preparing_any_data(
    option: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    from flows.cli import main

    monkeypatch.setenv("FORECAST__STORAGE__ROOT", str(tmp_path / "store"))
    code = main(["tune", "--config", str(REPO / "configs" / "chicago.toml"), *option])
    assert code == 1
    assert capsys.readouterr().err.strip() == f"forecast tune failed: {message}"
    assert not (tmp_path / "store").exists()  # no flow ran


# -- the real command on tiny data ----------------------------------------------------------
TINY = """
name = "tunetest"

[source]
path = "{source}"
id_column = "series_id"
time_column = "timestamp"
target_column = "target"
hist_exog = ["Cubs_Home"]
timezone = "America/Chicago"

[window]
look_back = 14
horizon = 7

[model]
units = [4]

[training]
epochs = 1
batch_size = 64

[evaluation]
gate_must_beat = "none"

[storage]
root = "{root}"

[tune]
seed = 7
max_workers = 2
look_back = [7, 14]
units = [2, 4]
layers = [1, 2]
batch_size = [32, 64]
"""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_forecast_tune_writes_the_best_trial_as_a_valid_config(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    source = write_small_source(tmp_path / "data")
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY.format(source=source, root=tmp_path / "store"))
    out = tmp_path / "tuned" / "best.toml"

    code = main(
        ["tune", "--config", str(config_path), "--trials", "3", "--out", str(out)]
        + ["--date", "2026-11-20"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"Best configuration written to {out}" in printed

    table_uri = re.search(r"^Study table: (\S+)$", printed, re.MULTILINE).group(1)
    store = ArtifactStore(str(tmp_path / "store"))
    table, meta = store.read_table(store.find("tune", Path(table_uri).stem))
    assert len(table) == 3 and list(table["trial"]) == [0, 1, 2]
    assert (table["state"] == "COMPLETE").all() and (table["seconds"] > 0).all()
    assert set(table["look_back"]) <= {7, 14} and table["units"].between(2, 4).all()
    best = table.loc[table["validation_mase"].idxmin()]

    tuned = load_config(out, environ={})  # a complete, valid config
    assert tuned.window.look_back == best["look_back"]
    assert tuned.model.units == [best["units"]] * best["layers"]
    assert tuned.model.dropout == best["dropout"]
    assert tuned.model.learning_rate == best["learning_rate"]
    assert tuned.training.batch_size == best["batch_size"]
    assert tuned.model.loss == best["loss"]
    base = load_config(config_path, environ={})
    assert tuned.source == base.source and tuned.training.epochs == base.training.epochs

    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    recorded = re.search(r"best validation MASE: (\S+)", "\n".join(header)).group(1)
    assert float(recorded) == table["validation_mase"].min()
    assert any(line.startswith("# study: tune-tunetest-") for line in header)
    assert any(re.match(r"# date: \d{4}-\d\d-\d\dT", line) for line in header)
    assert meta["best_validation_mase"] == float(recorded)
    assert meta["best_config"] == str(out)
    assert meta["seasonal_naive_mase"] > 0 and "Seasonal naive on the validation" in printed
    png = Path(meta["plot"]).read_bytes()
    assert png.startswith(b"\x89PNG") and "/reports/tune/" in meta["plot"]
    published = prefect_artifacts(["tune-tunetest", "tune-report-tunetest"])
    assert published["tune-tunetest"].type == "table"
    rows = published["tune-tunetest"].data
    assert len(json.loads(rows) if isinstance(rows, str) else rows) == 3
    assert published["tune-report-tunetest"].type == "markdown"
    assert f"**{float(recorded):.4f}**" in published["tune-report-tunetest"].data
    assert str(out) in published["tune-report-tunetest"].data


def prefect_artifacts(keys: list[str]) -> dict:
    """The latest Prefect artifact of each key, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> list:
        async with get_client() as client:
            return await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )

    return {artifact.key: artifact for artifact in asyncio.run(read())}
