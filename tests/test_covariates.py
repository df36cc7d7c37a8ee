"""Covariates by role: config keys, future rows (source and future file), the as-of cut, stat
one-hots, feature roles, and the horizon rows a forecaster reads at predict time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_model.calendar import calendar_features
from lstm_model.forecasters import SeasonalNaive
from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.ingest import IngestError, read_source
from tasks.normalize import (
    encode_stat,
    feature_roles,
    normalize,
    normalize_task,
    stat_feature_names,
)
from tasks.predict import (
    HorizonInputs,
    MissingFutureCovariatesError,
    future_frame,
    future_grid,
    predict_frame,
    with_future_rows,
)
from tasks.storage import ArtifactRef, ArtifactStore
from tasks.validate import (
    DataValidationError,
    future_covariate_rows,
    validate_frame,
    validate_task,
)

DAYS = 30


# -- config ------------------------------------------------------------------------------------
def write_config(tmp_path: Path, source: str, features: str = "") -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(f'name = "cov"\n[source]\npath = "data.csv"\n{source}\n{features}\n')
    return path


def test_covariate_keys_load_and_future_path_resolves_against_the_config(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'hist_exog = ["temp"]\nfutr_exog = ["promo"]\nstat_exog = ["region"]\n'
        'future_path = "future/schedule.csv"',
        '[features]\ncalendar = true\nholidays_country = "US"\nholidays_subdivision = "IL"',
    )
    config = load_config(path, environ={})
    assert config.source.hist_exog == ["temp"]
    assert config.source.futr_exog == ["promo"]
    assert config.source.stat_exog == ["region"]
    assert config.source.future_path == str(tmp_path / "future" / "schedule.csv")
    assert (config.features.holidays_country, config.features.holidays_subdivision) == ("US", "IL")


def test_covariates_is_a_deprecated_alias_of_hist_exog(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'covariates = ["temp"]')
    with pytest.warns(FutureWarning, match="source.covariates is deprecated.*hist_exog"):
        config = load_config(path, environ={})
    assert config.source.hist_exog == ["temp"]
    both = write_config(tmp_path, 'covariates = ["temp"]\nhist_exog = ["wind"]')
    with pytest.raises(ConfigError, match="covariates and source.hist_exog are both given"):
        load_config(both, environ={})


@pytest.mark.parametrize(
    ("source", "features", "message"),
    [
        ("", '[features]\nholidays_country = "XX"', "holidays_country 'XX' is not a country"),
        (
            "",
            '[features]\nholidays_country = "US"\nholidays_subdivision = "ZZ"',
            "holidays_subdivision 'ZZ' is not a subdivision of US; known: AK, AL",
        ),
        ("", '[features]\nholidays_subdivision = "IL"', "needs features.holidays_country"),
        (
            'hist_exog = ["promo"]\nfutr_exog = ["promo"]',
            "",
            "'promo' is in source.hist_exog and source.futr_exog",
        ),
        ('futr_exog = ["cal_dow"]', "", "reserved for generated features"),
        ('layout = "wide"\nstat_exog = ["region"]', "", "stat_exog needs layout 'long'"),
    ],
)
def test_bad_covariate_settings_fail_at_load_naming_the_key(
    tmp_path: Path, source: str, features: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, source, features), environ={})


# -- data --------------------------------------------------------------------------------------
def covariate_frame(days: int = DAYS, timezone: str = "UTC") -> pd.DataFrame:
    """Two series in the contract: y, temp (hist), promo (futr), region (text) and size (stat)."""
    stamps = pd.date_range("2024-01-01", periods=days, freq="D", tz=timezone).tz_convert("UTC")
    parts = []
    for number, (uid, region, size) in enumerate([("A", "north", 10.0), ("B", "south", 20.0)]):
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": stamps,
                    "y": np.arange(days, dtype=float) + 100 * number,
                    "temp": np.sin(np.arange(days, dtype=float)),
                    "promo": (np.arange(days) % 3 == 0).astype(float),
                    "region": region,
                    "size": size,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).astype({"unique_id": "str", "region": "str"})


def covariate_config(**features: object) -> PipelineConfig:
    return PipelineConfig(
        name="cov",
        source={
            "path": "unused.csv",
            "format": "csv",
            "hist_exog": ["temp"],
            "futr_exog": ["promo"],
            "stat_exog": ["region", "size"],
        },
        features={"holidays_country": "US", **features},
        window={"look_back": 4, "horizon": 3},
        split={"train": 0.5, "validation": 0.25},
    )


def with_future(frame: pd.DataFrame, last_observed: str) -> pd.DataFrame:
    """Targets (and the observed temp) emptied after `last_observed`: rows known in advance."""
    later = frame["ds"] > pd.Timestamp(last_observed, tz="UTC")
    return frame.assign(y=frame["y"].mask(later), temp=frame["temp"].mask(later))


# -- roles and the normalized artifact ---------------------------------------------------------
def test_feature_roles_order_target_hist_futr_calendar_stat() -> None:
    config = covariate_config()
    assert feature_roles(config) == {
        "y": "target",
        "temp": "hist",
        "promo": "futr",
        "cal_dow_sin": "futr",
        "cal_dow_cos": "futr",
        "cal_doy_sin": "futr",
        "cal_doy_cos": "futr",
        "cal_holiday": "futr",
        "region": "stat",
        "size": "stat",
    }
    roles = feature_roles(config, ["region=north", "region=south", "size"])
    assert list(roles)[-3:] == ["region=north", "region=south", "size"]
    assert {roles[c] for c in ["region=north", "region=south", "size"]} == {"stat"}
    holidays_only = covariate_config(calendar=False)
    assert [c for c in feature_roles(holidays_only) if c.startswith("cal_")] == ["cal_holiday"]
    validated, _ = validate_frame(covariate_frame(), holidays_only, "memory")
    assert [c for c in validated.columns if c.startswith("cal_")] == ["cal_holiday"]


def test_normalized_features_carry_roles_one_hots_by_name_and_unscaled_unit_features() -> None:
    config = covariate_config()
    validated, _ = validate_frame(covariate_frame(), config, "memory")
    stats = stat_feature_names(validated, config)
    assert stats == ["region=north", "region=south", "size"]
    normalized, scaler = normalize(validated, config)
    features = list(feature_roles(config, stats))
    assert list(normalized.columns) == ["unique_id", "ds", "split", *features, "imputed"]
    north = normalized["unique_id"] == "A"
    np.testing.assert_array_equal(normalized.loc[north, "region=north"], 1.0)
    np.testing.assert_array_equal(normalized.loc[north, "region=south"], 0.0)
    np.testing.assert_array_equal(normalized.loc[~north, "size"], 20.0)  # numbers stay numbers
    # calendar and stat features pass the scaler unchanged; y and covariates are scaled
    encoded, _ = encode_stat(validated, config.source.stat_exog, stats)
    for column in ["cal_dow_sin", "cal_holiday", "region=north", "size"]:
        np.testing.assert_allclose(normalized[column], encoded[column].astype(float), atol=1e-6)
    assert scaler.scale[:, scaler.column_index("size")].tolist() == [1.0, 1.0]
    assert not np.allclose(normalized["y"], validated["y"])
    assert normalized.loc[normalized["ds"] == "2024-01-01", "cal_holiday"].eq(1.0).all()


def test_unseen_stat_value_gives_all_zero_one_hots_and_is_logged(caplog) -> None:
    frame = covariate_frame(days=3).assign(region="west")
    with caplog.at_level(logging.WARNING):
        encoded, unseen = encode_stat(frame, ["region"], ["y", "region=north", "region=south"])
    assert unseen == {"region": ["west"]}
    assert encoded[["region=north", "region=south"]].to_numpy().sum() == 0
    assert "not seen in training" in caplog.text and "west" in caplog.text


def test_stat_exog_changing_within_a_series_fails_naming_it() -> None:
    frame = covariate_frame()
    frame.loc[(frame["unique_id"] == "B") & (frame.index % 7 == 0), "region"] = "east"
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, covariate_config(), "memory")
    message = str(caught.value)
    assert "stat_exog columns must hold one value per series" in message
    assert "series 'B'" in message and "'east'" in message and "series 'A'" not in message


# -- future rows -------------------------------------------------------------------------------
def test_future_rows_in_the_source_are_not_missing_targets(tmp_path: Path) -> None:
    frame = with_future(covariate_frame(), "2024-01-25")
    raw = frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d"))
    raw.loc[raw["y"].isna(), ["y", "temp"]] = None
    path = tmp_path / "data.csv"
    raw.to_csv(path, index=False)
    config = covariate_config()
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"path": str(path)})}
    )
    ingested = read_source(config.source)
    assert ingested["y"].isna().sum() == 10  # 5 future days x 2 series, kept by ingest
    validated, report = validate_frame(ingested, config, str(path), purpose="training")
    assert report.future_rows == 10
    assert validated["ds"].max() == pd.Timestamp("2024-01-25", tz="UTC")
    assert validated["y"].notna().all()
    future = future_covariate_rows(ingested, config)
    assert list(future.columns) == ["unique_id", "ds", "promo"]
    assert len(future) == 10 and future["ds"].min() == pd.Timestamp("2024-01-26", tz="UTC")
    # without futr_exog, an empty target at the end is still a missing target
    plain = config.model_copy(update={"source": config.source.model_copy(update={"futr_exog": []})})
    with pytest.raises(DataValidationError, match="must not be null"):
        validate_frame(ingested, plain, str(path))


def test_the_as_of_cut_keeps_future_rows_for_the_horizon_but_never_their_targets() -> None:
    frame = covariate_frame()  # targets observed to 2024-01-30: a replay of an older night
    config = covariate_config()
    validated, report = validate_frame(frame, config, "memory", "forecast", as_of="2024-01-20")
    assert validated["ds"].max() == pd.Timestamp("2024-01-19", tz="UTC")
    assert report.rows_after_as_of == 22
    future = future_covariate_rows(frame, config, as_of="2024-01-20")
    assert future["ds"].min() == pd.Timestamp("2024-01-20", tz="UTC")
    assert set(future.columns) == {"unique_id", "ds", "promo"}  # no y, no observed temp
    expected = frame[frame["ds"] >= pd.Timestamp("2024-01-20", tz="UTC")]["promo"].to_numpy()
    np.testing.assert_array_equal(future["promo"].to_numpy(), expected)


def test_a_future_file_adds_rows_and_a_conflicting_value_fails(tmp_path: Path) -> None:
    history = covariate_frame(days=20)
    path = tmp_path / "data.csv"
    history.assign(ds=history["ds"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    schedule = pd.DataFrame(
        {
            "unique_id": ["A", "A", "B", "B"],
            "ds": ["2024-01-20", "2024-01-21", "2024-01-21", "2024-01-22"],
            "promo": [history["promo"].iat[19], 1.0, 0.0, 1.0],  # 01-20 repeats the source
        }
    )
    future_path = tmp_path / "schedule.csv"
    schedule.to_csv(future_path, index=False)
    source = covariate_config().source.model_copy(
        update={"path": str(path), "future_path": str(future_path)}
    )
    ingested = read_source(source)
    assert len(ingested) == 40 + 3
    added = ingested[ingested["y"].isna()].sort_values(["unique_id", "ds"])
    assert added["promo"].tolist() == [1.0, 0.0, 1.0]
    assert added["region"].isna().all() and added["temp"].isna().all()
    config = covariate_config().model_copy(update={"source": source})
    future = future_covariate_rows(ingested, config, as_of="2024-01-21")
    assert [(u, str(d.date())) for u, d in zip(future["unique_id"], future["ds"], strict=True)] == [
        ("A", "2024-01-21"),
        ("B", "2024-01-21"),
        ("B", "2024-01-22"),
    ]
    validated, report = validate_frame(ingested, config, "memory", "forecast", "2024-01-21")
    assert report.future_rows == 0 and report.rows_after_as_of == 3
    schedule.loc[0, "promo"] = 1 - history["promo"].iat[19]
    schedule.to_csv(future_path, index=False)
    with pytest.raises(IngestError, match="'promo' differs from the source at series 'A' at 2024"):
        read_source(source)


# -- predict: the horizon rows -----------------------------------------------------------------
def last_days(validated: pd.DataFrame) -> pd.Series:
    ends = validated.groupby("unique_id")["ds"].max()
    return pd.Series(ends.array, index=ends.index.astype(str))


def test_a_missing_future_value_fails_the_night_naming_series_and_dates() -> None:
    frame = with_future(covariate_frame(), "2024-01-25")
    config = covariate_config()
    known = future_covariate_rows(frame, config)
    known = known[~((known["unique_id"] == "B") & (known["ds"] >= "2024-01-27"))]
    grid = future_grid(pd.Series(pd.to_datetime(["2024-01-25"] * 2, utc=True)), 3, "D")
    with pytest.raises(MissingFutureCovariatesError) as caught:
        future_frame(np.array(["A", "B"]), grid, config, known)
    message = str(caught.value)
    assert "series 'B': promo unknown at 2024-01-27, 2024-01-28" in message
    assert "series 'A'" not in message
    complete = future_frame(
        np.array(["A", "B"]), grid, config, future_covariate_rows(frame, config)
    )
    assert complete["promo"].notna().all() and len(complete) == 6


def test_future_frame_generates_the_calendar_on_the_future_grid() -> None:
    config = covariate_config()
    last = pd.Series(pd.to_datetime(["2024-07-01"], utc=True))
    grid = future_grid(last, 5, "D", "UTC")
    known = pd.DataFrame(
        {
            "unique_id": "A",
            "ds": pd.date_range("2024-07-02", periods=5, tz="UTC"),
            "promo": [0.0, 1.0, 0.0, 1.0, 0.0],
        }
    )
    rows = future_frame(np.array(["A"]), grid, config, known)
    expected = calendar_features(rows["ds"], "D", "UTC", "US")
    pd.testing.assert_frame_equal(rows[list(expected.columns)], expected)
    assert rows["cal_holiday"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # July 4


@dataclass(frozen=True)
class ReadsHorizon:
    """A stub forecaster that reads promo over [end - look_back, end + horizon)."""

    look_back: int = 4
    horizon: int = 3
    name: str = "stub"
    input_features: tuple[str, ...] = ("y", "promo")

    def supports(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        return np.ones(len(ends), dtype=bool)

    def predict(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        promo = frame["promo"].to_numpy()
        assert frame["y"].to_numpy()[ends - 1].tolist() != [np.nan] * len(ends)
        assert np.isnan(frame["y"].to_numpy()[ends]).all()  # ends[i]: the first future row
        return np.stack([promo[end : end + self.horizon] for end in ends])


def test_with_future_rows_puts_each_series_horizon_after_its_history() -> None:
    config = covariate_config()
    frame = with_future(covariate_frame(), "2024-01-25")
    validated, _ = validate_frame(frame, config, "memory", "forecast", as_of="2024-01-26")
    ids, ends = np.array(["A", "B"]), np.array([25, 50])
    grid = future_grid(last_days(validated).loc[ids], 3, "D")
    rows = future_frame(ids, grid, config, future_covariate_rows(frame, config, "2024-01-26"))
    carried, new_ends = with_future_rows(validated, rows, ids, ends, ("region", "size"))
    assert new_ends.tolist() == [25, 53]
    assert len(carried) == len(validated) + 6
    for uid, end in zip(ids, new_ends, strict=True):
        window = carried.iloc[end - 4 : end + 3]
        assert (window["unique_id"] == uid).all()
        assert window["ds"].is_monotonic_increasing
        assert window["y"].iloc[:4].notna().all() and window["y"].iloc[4:].isna().all()
        assert window["temp"].iloc[4:].isna().all()  # hist_exog is never known ahead
        truth = frame[(frame["unique_id"] == uid) & (frame["ds"] > "2024-01-25")]
        np.testing.assert_array_equal(window["promo"].iloc[4:], truth["promo"].iloc[:3])
        assert (window["region"].iloc[4:] == window["region"].iloc[0]).all()
        assert not window["imputed"].iloc[4:].any()
    # the series order and every history row are unchanged
    history = carried[carried["y"].notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(history, validated)


def test_predict_frame_reads_future_covariates_only_when_asked() -> None:
    config = covariate_config()
    frame = with_future(covariate_frame(), "2024-01-25")
    validated, _ = validate_frame(frame, config, "memory", "forecast", as_of="2024-01-26")
    known = future_covariate_rows(frame, config, "2024-01-26")
    inputs = HorizonInputs(config, known, carry=("region", "size"))
    table, skipped = predict_frame(
        validated, ReadsHorizon(), "D", "UTC", model_version="v", horizon_inputs=inputs
    )
    assert skipped == {}
    truth = frame[frame["ds"] > "2024-01-25"].groupby("unique_id").head(3)
    np.testing.assert_array_equal(table["yhat"].to_numpy(), truth["promo"].to_numpy())
    np.testing.assert_array_equal(table["ds"].to_numpy(), truth["ds"].to_numpy())
    # the old call (no horizon rows) is unchanged for forecasters that read history only
    plain, _ = predict_frame(
        validated, SeasonalNaive(horizon=3, season=2), "D", "UTC", model_version="v"
    )
    last_two = validated.groupby("unique_id")["y"].tail(2).to_numpy().reshape(2, 2)
    np.testing.assert_array_equal(plain["yhat"].to_numpy().reshape(2, 3), last_two[:, [0, 1, 0]])


# -- the tasks: artifacts and their metadata ---------------------------------------------------
def test_tasks_write_the_future_rows_and_the_feature_roles(tmp_path: Path) -> None:
    base = covariate_config()
    config = base.model_copy(
        update={"storage": base.storage.model_copy(update={"root": str(tmp_path / "store")})}
    )
    store = ArtifactStore(config.storage.root)
    frame = with_future(covariate_frame(), "2024-01-25")
    ingested = store.write_table("ingest", "fixture", frame, config_hash="test")
    night = validate_task.fn(config, ingested, "forecast", "2024-01-26")
    validated, meta = store.read_table(night)
    assert {"cal_dow_sin", "cal_holiday"} <= set(validated.columns)
    known, _ = store.read_table(ArtifactRef(**meta["future"]))
    pd.testing.assert_frame_equal(known, future_covariate_rows(frame, config, "2024-01-26"))
    assert meta["future_rows"] == 0 and meta["rows_after_as_of"] == 10
    trained = validate_task.fn(config, ingested)
    assert store.read_table(trained)[1]["future"] is None  # training needs no horizon rows
    normalized = normalize_task.fn(config, trained)
    _, meta = store.read_table(normalized)
    assert meta["feature_roles"] == feature_roles(config, ["region=north", "region=south", "size"])
    assert meta["features"] == list(meta["feature_roles"])
