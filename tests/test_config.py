"""The one config: example files load, environment overrides apply, bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import ConfigError, PipelineConfig, env_overrides, load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "configs").glob("*.toml")) + sorted((REPO / "configs").glob("*.y*ml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_loads_and_points_at_existing_data(path: Path) -> None:
    config = load_config(path, environ={})
    assert Path(config.source.path).exists(), config.source.path
    assert Path(config.storage.root).is_absolute()


def test_environment_overrides_nested_keys_with_json_values() -> None:
    config = load_config(
        REPO / "configs" / "chicago.toml",
        environ={
            "FORECAST__WINDOW__LOOK_BACK": "28",
            "FORECAST__MODEL__UNITS": "[32, 16]",
            "FORECAST__STORAGE__ROOT": "memory://bucket/x",
            "UNRELATED": "1",
        },
    )
    assert config.window.look_back == 28
    assert config.model.units == [32, 16]
    assert config.storage.root == "memory://bucket/x"  # URLs are not resolved as paths


def test_env_overrides_ignore_other_variables() -> None:
    assert env_overrides({"HOME": "/root", "FORECAST__A__B": "x"}) == {"a": {"b": "x"}}


def test_invalid_values_name_the_key_and_the_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[source]\npath = "x.parquet"\n[scaling]\nmethod = "zscore"\n[window]\nlook_back = 0\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(bad, environ={})
    message = str(raised.value)
    assert "bad.toml" in message
    assert "scaling.method" in message and "'standard' or 'minmax'" in message
    assert "'zscore'" in message
    assert "window.look_back" in message and "greater than or equal to 1" in message


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("source:\n  path: x.csv\nwindow:\n  lookback: 3\n")
    with pytest.raises(ConfigError, match=r"window\.lookback: Extra inputs are not permitted"):
        load_config(bad, environ={})


def test_missing_file_and_unknown_suffix_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml", environ={})
    other = tmp_path / "config.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match=r"must end in \.toml, \.yaml or \.yml"):
        load_config(other, environ={})


def test_split_must_leave_a_test_share_and_frequency_must_parse() -> None:
    with pytest.raises(ValueError, match="test split remains"):
        PipelineConfig(source={"path": "x"}, split={"train": 0.8, "validation": 0.2})
    with pytest.raises(ValueError, match="not a pandas offset alias"):
        PipelineConfig(source={"path": "x"}, frequency="fortnightly")


def test_digest_changes_with_the_sections_it_covers_only() -> None:
    base = PipelineConfig(source={"path": "x"})
    changed = base.model_copy(update={"training": base.training.model_copy(update={"epochs": 2})})
    assert base.digest() != changed.digest()
    assert base.digest("window", "source") == changed.digest("window", "source")
    assert base.digest("training") != changed.digest("training")


def test_the_gate_baseline_must_be_a_configured_baseline(tmp_path: Path) -> None:
    bad = tmp_path / "gate.toml"
    bad.write_text('[source]\npath = "x.parquet"\n[evaluation]\ngate_must_beat = "auto_ets"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(bad, environ={})
    message = str(raised.value)
    assert "gate.toml" in message
    assert (
        "evaluation.gate_must_beat = 'auto_ets' is not among evaluation.baselines "
        "['naive', 'seasonal_naive']: add it there or set it to 'none'"
    ) in message
    good = load_config(
        bad, environ={"FORECAST__EVALUATION__BASELINES": '["naive", "auto_ets", "auto_theta"]'}
    )
    assert good.evaluation.gate_must_beat == "auto_ets"
    assert good.evaluation.baselines == ["naive", "auto_ets", "auto_theta"]
    none = PipelineConfig(source={"path": "x"}, evaluation={"gate_must_beat": "none"})
    assert none.evaluation.baselines == ["naive", "seasonal_naive"]  # the cheap default
    with pytest.raises(ValueError, match=r"evaluation\.baselines lists a baseline twice"):
        PipelineConfig(source={"path": "x"}, evaluation={"baselines": ["naive", "naive"]})
    with pytest.raises(ValueError, match="evaluation.baselines.0"):
        load_config(bad, environ={"FORECAST__EVALUATION__BASELINES": '["arima"]'})
    with pytest.raises(ValueError, match=r"evaluation\.baseline_max_history = 10 is below two"):
        PipelineConfig(source={"path": "x"}, evaluation={"baseline_max_history": 10})
    with pytest.raises(ValueError, match=r"forecast\.fallback_model"):
        PipelineConfig(source={"path": "x"}, forecast={"fallback_model": "lstm"})
