"""The one config: example files load, environment overrides apply, bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import (
    ConfigError,
    FrequencyDefaults,
    PipelineConfig,
    env_overrides,
    frequency_defaults,
    load_config,
)

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


@pytest.mark.parametrize(
    ("frequency", "season", "look_back", "horizon"),
    [
        ("D", 7, 56, 14),
        ("B", 5, 40, 10),
        ("h", 24, 168, 24),
        ("2h", 12, 84, 12),
        ("30min", 48, 336, 48),
        ("W-SUN", 52, 104, 13),
        ("W-MON", 52, 104, 13),
        ("2W", 26, 52, 7),
        ("MS", 12, 36, 12),
        ("ME", 12, 36, 12),
        ("BMS", 12, 36, 12),
        ("3MS", 4, 12, 4),
        ("QS", 4, 12, 4),
        ("QE-DEC", 4, 12, 4),
        ("BQE", 4, 12, 4),
    ],
)
def test_season_and_window_follow_the_frequency_when_not_given(
    frequency: str, season: int, look_back: int, horizon: int
) -> None:
    config = PipelineConfig(source={"path": "x"}, frequency=frequency)
    assert (config.evaluation.season_length, config.window.look_back, config.window.horizon) == (
        season,
        look_back,
        horizon,
    )
    assert type(config.window.look_back) is int
    assert config.window.look_back >= config.evaluation.season_length  # seasonal naive fits
    dumped = config.model_dump()
    assert dumped["window"]["look_back"] == look_back  # what the Prefect UI shows
    assert dumped["evaluation"]["season_length"] == season
    assert PipelineConfig.model_validate(dumped) == config  # the UI's copy validates the same


def test_frequency_defaults_by_kind() -> None:
    assert frequency_defaults("h") == FrequencyDefaults("hourly", 24, 168, 24)
    assert frequency_defaults("60min") == frequency_defaults("h")
    assert frequency_defaults("90min") == FrequencyDefaults("half-hourly", 16, 112, 16)
    assert frequency_defaults("W") == frequency_defaults("W-SUN")
    # no whole season of at least 2 steps, or a grid without a kind: no defaults
    for frequency in ("2D", "7D", "3W", "24h", "15min", "min", "s", "YE", "YS", "SME", "C"):
        assert frequency_defaults(frequency) is None, frequency
    with pytest.raises(ValueError):
        frequency_defaults("fortnightly")


def test_given_values_win_over_the_frequency(tmp_path: Path) -> None:
    partial = PipelineConfig(
        source={"path": "x"}, frequency="h", window={"horizon": 48}, evaluation={"plot_series": 0}
    )
    assert (partial.window.look_back, partial.window.horizon) == (168, 48)
    assert partial.evaluation.season_length == 24 and partial.evaluation.plot_series == 0
    # a section given as a model counts only its set fields, not its (daily) defaults
    from tasks.config import EvaluationConfig, WindowConfig

    models = PipelineConfig(
        source={"path": "x"},
        frequency="MS",
        window=WindowConfig(stride=2),
        evaluation=EvaluationConfig(season_length=6),
    )
    assert (models.window.look_back, models.window.horizon, models.window.stride) == (36, 12, 2)
    assert models.evaluation.season_length == 6
    # from the file and from the environment
    hourly = tmp_path / "hourly.toml"
    hourly.write_text(
        'frequency = "h"\n[source]\npath = "x.parquet"\n[window]\nlook_back = 72\n'
        "[evaluation]\nseason_length = 168\n"
    )
    config = load_config(hourly, environ={"FORECAST__WINDOW__HORIZON": "36"})
    assert (config.window.look_back, config.window.horizon) == (72, 36)
    assert config.evaluation.season_length == 168
    weekly = load_config(hourly, environ={"FORECAST__FREQUENCY": "W-SUN"})
    assert (weekly.window.look_back, weekly.window.horizon) == (72, 13)
    assert weekly.evaluation.season_length == 168


def test_an_hourly_file_with_only_its_frequency_gets_hourly_defaults(tmp_path: Path) -> None:
    hourly = tmp_path / "hourly.yaml"
    hourly.write_text("frequency: h\nsource:\n  path: x.csv\n  format: csv\n")
    config = load_config(hourly, environ={})
    assert config.evaluation.season_length == 24
    assert (config.window.look_back, config.window.horizon, config.window.stride) == (168, 24, 1)
    digest = config.digest("window", "evaluation")
    assert digest != load_config(hourly, environ={"FORECAST__FREQUENCY": "D"}).digest(
        "window", "evaluation"
    )


def test_daily_defaults_are_unchanged(tmp_path: Path) -> None:
    demo = load_config(REPO / "configs" / "chicago.toml", environ={})
    assert demo.frequency == "D"
    assert (demo.window.look_back, demo.window.horizon, demo.evaluation.season_length) == (
        56,
        14,
        7,
    )
    bare = tmp_path / "bare.toml"
    bare.write_text('[source]\npath = "x.parquet"\n')  # no frequency: daily
    config = load_config(bare, environ={})
    assert (config.window.look_back, config.window.horizon) == (56, 14)
    assert config.evaluation.season_length == 7
    assert config == PipelineConfig(source={"path": config.source.path})


def test_a_frequency_without_defaults_needs_the_values_given(tmp_path: Path) -> None:
    yearly = tmp_path / "yearly.toml"
    yearly.write_text('frequency = "YE"\n[source]\npath = "x.parquet"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(yearly, environ={})
    message = str(raised.value)
    assert "yearly.toml" in message and "frequency 'YE'" in message
    assert "set evaluation.season_length, window.look_back and window.horizon" in message
    assert "'source'" not in message  # the whole config is not dumped into the message
    with pytest.raises(ConfigError, match=r"frequency '2D' .*: set window\.horizon$"):
        load_config(
            yearly,
            environ={
                "FORECAST__FREQUENCY": "2D",
                "FORECAST__WINDOW__LOOK_BACK": "28",
                "FORECAST__EVALUATION__SEASON_LENGTH": "7",
            },
        )
    config = load_config(
        yearly,
        environ={
            "FORECAST__WINDOW__LOOK_BACK": "5",
            "FORECAST__WINDOW__HORIZON": "2",
            "FORECAST__EVALUATION__SEASON_LENGTH": "1",
        },
    )
    assert (config.window.look_back, config.window.horizon, config.evaluation.season_length) == (
        5,
        2,
        1,
    )


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
        PipelineConfig(
            source={"path": "x"},
            evaluation={"baselines": ["seasonal_naive", "auto_ets"], "baseline_max_history": 10},
        )
    # Only statsforecast fits read that history: the cheap baselines do not care.
    PipelineConfig(source={"path": "x"}, evaluation={"baseline_max_history": 10})
    with pytest.raises(ValueError, match=r"forecast\.fallback_model"):
        PipelineConfig(source={"path": "x"}, forecast={"fallback_model": "lstm"})
