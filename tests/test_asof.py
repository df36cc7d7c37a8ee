"""A run date is an as-of cut: backfilled nights see only earlier rows, replay identically and
never touch other nights; ingestion is not repeated per date; scheduled runs keep their night."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tasks.config import PipelineConfig
from tasks.storage import ArtifactRef, ArtifactStore, sha256_bytes
from tests.support import HORIZON, SERIES, small_config, train_small_champion, write_small_source

pytestmark = pytest.mark.usefixtures("prefect_harness")

NIGHT = "2016-08-01"  # inside the small source (it ends 2016-08-14)
VALUES = ["unique_id", "ds", "step", "yhat"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """A store with a champion trained on all rows of the small real source."""
    return train_small_champion(tmp_path_factory.mktemp("asof"), "2016-08-15")


def partition(config: PipelineConfig, night: str) -> Path:
    return Path(config.storage.root) / "forecasts" / config.name / f"run_date={night}"


def read_forecast(config: PipelineConfig, night: str) -> pd.DataFrame:
    return pd.read_parquet(partition(config, night) / "forecast.parquet")


def ref_of(store: ArtifactStore, uri: str) -> ArtifactRef:
    """A reference to the artifact at `uri` as it is now."""
    return ArtifactRef(uri=uri, sha256=sha256_bytes(store.read_bytes(uri)), rows=0)


def validated_metadata(config: PipelineConfig, night: str) -> dict:
    """The metadata of the validated artifact the night's forecast was made from."""
    store = ArtifactStore(config.storage.root)
    _, meta = store.read_table(ref_of(store, str(partition(config, night) / "forecast.parquet")))
    _, validated = store.read_table(ArtifactRef(**meta["inputs"][0]))
    return validated


def with_source(config: PipelineConfig, path: Path) -> PipelineConfig:
    return config.model_copy(
        update={"source": config.source.model_copy(update={"path": str(path)})}
    )


def local_dates(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_convert("America/Chicago").dt.strftime("%Y-%m-%d")


def test_a_backfilled_night_uses_no_data_from_that_night_or_later(trained, tmp_path) -> None:
    from flows.forecasting import backfill, forecast_flow

    [summary] = backfill(trained, NIGHT, NIGHT)
    full = read_forecast(trained, NIGHT)
    assert summary.run_date == NIGHT and summary.rows == len(SERIES) * HORIZON
    # the first forecast step is the night itself: the last input row was the day before
    assert set(local_dates(full.groupby("unique_id")["ds"].min())) == {NIGHT}
    meta = validated_metadata(trained, NIGHT)
    assert meta["as_of"] == NIGHT and meta["as_of_utc"] == "2016-08-01T05:00:00+00:00"
    assert meta["rows_after_as_of"] == len(SERIES) * 14  # 2016-08-01 .. 2016-08-14 left out

    source = pd.read_parquet(trained.source.path)
    truncated = source[source["timestamp"] < pd.Timestamp(NIGHT)]  # naive local wall times
    assert len(truncated) < len(source)
    truncated.to_parquet(tmp_path / "truncated.parquet", index=False)
    forecast_flow(with_source(trained, tmp_path / "truncated.parquet"), NIGHT)
    cut_by_hand = read_forecast(trained, NIGHT)
    pd.testing.assert_frame_equal(full[VALUES], cut_by_hand[VALUES])


def test_replaying_a_night_twice_gives_the_same_forecast(trained) -> None:
    from flows.forecasting import backfill

    backfill(trained, "2016-07-20", "2016-07-20")
    first = read_forecast(trained, "2016-07-20")
    first_bytes = (partition(trained, "2016-07-20") / "forecast.parquet").read_bytes()
    backfill(trained, "2016-07-20", "2016-07-20")
    second = read_forecast(trained, "2016-07-20")
    assert len(first) == len(SERIES) * HORIZON
    pd.testing.assert_frame_equal(first[VALUES], second[VALUES])
    # byte identity: needs deterministic forecast files (lead's change)
    if "created_at" not in second.columns:
        second_bytes = (partition(trained, "2016-07-20") / "forecast.parquet").read_bytes()
        assert second_bytes == first_bytes


def test_backfill_command_prints_each_night_and_leaves_other_nights_untouched(
    trained, tmp_path, capsys
) -> None:
    from flows.cli import main

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(trained.model_dump(mode="json")))

    def backfill_command(first: str, last: str) -> list[str]:
        assert main(["backfill", "--config", str(config_file), "--from", first, "--to", last]) == 0
        return capsys.readouterr().out.strip().splitlines()

    def files(nights: tuple[str, ...]) -> dict[str, tuple[bytes, int]]:
        paths = {night: partition(trained, night) / "forecast.parquet" for night in nights}
        return {
            night: (path.read_bytes(), path.stat().st_mtime_ns) for night, path in paths.items()
        }

    earlier = ("2016-07-10", "2016-07-11")
    rows = len(SERIES) * HORIZON
    assert backfill_command(*earlier) == [
        f"{night}  {rows} rows  {partition(trained, night) / 'forecast.parquet'}"
        for night in earlier
    ]
    before = files(earlier)
    assert backfill_command("2016-07-12", "2016-07-12") == [
        f"2016-07-12  {rows} rows  {partition(trained, '2016-07-12') / 'forecast.parquet'}"
    ]
    assert files(earlier) == before
    # each night was forecast from its own cut: its first step is the night itself
    nights = (*earlier, "2016-07-12")
    starts = {night: local_dates(read_forecast(trained, night)["ds"]).min() for night in nights}
    assert starts == {night: night for night in nights}


def test_ingest_is_cached_across_run_dates_and_copied_once(tmp_path) -> None:
    from prefect import flow

    from tasks.ingest import ingest_task

    config = small_config(write_small_source(tmp_path / "data"), tmp_path / "store")

    @flow
    def two_nights() -> tuple[str, str, ArtifactRef, ArtifactRef]:
        first = ingest_task(config, "2016-08-01", return_state=True)
        second = ingest_task(config, "2016-08-02", return_state=True)
        return first.name, second.name, first.result(), second.result()

    first_state, second_state, first, second = two_nights()
    assert (first_state, second_state) == ("Completed", "Cached")
    assert first == second
    assert len(list((Path(config.storage.root) / "artifacts" / "ingest").rglob("*.parquet"))) == 1


def test_a_scheduled_run_prepares_the_data_of_its_scheduled_night(tmp_path) -> None:
    """A real flow run created in a Scheduled state (as a deployment's scheduler does), run by
    the engine: its date is the scheduled start in the schedule's zone, not today in UTC."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from flows.training import data_flow

    config = small_config(
        write_small_source(tmp_path / "data"),
        tmp_path / "store",
        schedule={"timezone": "America/Chicago"},
    )
    # 03:00 UTC on Aug 1 is 22:00 on Jul 31 in Chicago: the night is 2016-07-31
    scheduled = datetime(2016, 8, 1, 3, 0, tzinfo=UTC)

    async def create():
        async with get_client() as client:
            return await client.create_flow_run(
                data_flow,
                parameters={"config": config.model_dump(mode="json")},
                state=Scheduled(scheduled_time=scheduled),
            )

    flow_run = asyncio.run(create())
    windows = run_flow(data_flow, flow_run=flow_run, parameters={"config": config})

    async def read_name() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run.id)).name

    assert asyncio.run(read_name()) == "prepare-2016-07-31"
    store = ArtifactStore(config.storage.root)
    validated, meta = store.read_table(ref_of(store, dict(store.lineage(windows))["validate"]))
    assert meta["as_of"] == "2016-07-31"
    assert local_dates(validated["ds"]).max() == "2016-07-30"


def test_training_with_a_date_learns_only_from_rows_before_it(tmp_path) -> None:
    from flows.training import training_flow

    config = small_config(write_small_source(tmp_path / "data"), tmp_path / "store")
    registration = training_flow(config, NIGHT)
    store = ArtifactStore(config.storage.root)
    validated, meta = store.read_table(ref_of(store, registration.artifacts["validate"]))
    assert meta["as_of"] == NIGHT and meta["rows_after_as_of"] == len(SERIES) * 14
    assert local_dates(validated["ds"]).max() == "2016-07-31"
