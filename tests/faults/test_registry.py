"""Registry faults (issue 10): a champion pointer that leaves the registry, version files that
are garbage, truncated, of the wrong shape or missing, and what killed saves leave behind.

Each refusal is an ArtifactError (the CLI prints it as one line) naming the file and the cause.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lstm_model.scaling import fit_scaler
from tasks.config import PipelineConfig
from tasks.predict import serving_forecaster
from tasks.registry import UNFINISHED_AGE, ModelRegistry, VersionFileError, model_to_bytes
from tasks.storage import ArtifactError, ArtifactStore, sha256_bytes, table_to_parquet_bytes

CONFIG = PipelineConfig(source={"path": "unused.parquet"})
METRICS = pd.DataFrame({"model": ["lstm"], "unique_id": ["__overall__"], "mase": [0.7]})


def tiny_model_bytes() -> bytes:
    """A real, safe `.keras` model: two named layers."""
    import keras

    inputs = keras.Input(shape=(3, 1))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    return model_to_bytes(keras.Model(inputs, outputs))


def save(registry: ModelRegistry, version: str, model_bytes: bytes = b"unused") -> Path:
    """A complete version whose metadata records the checksum of `model_bytes`, as saved."""
    frame = pd.DataFrame({"unique_id": ["a", "a"], "y": [1.0, 2.0]})
    registry.save_version(
        version,
        model_bytes=model_bytes,
        scaler=fit_scaler(frame, ["y"], "standard"),
        metrics=METRICS,
        config=CONFIG,
        metadata={"look_back": 3, "horizon": 2, "input_features": ["y"]},
    )
    return Path(registry.uri(version))


def replace_file(folder: Path, file_name: str, data: bytes) -> None:
    """Replace a version's file and the checksum metadata.json records for it (a damaged save,
    not a tampered file: the checksum alone cannot tell)."""
    (folder / file_name).write_bytes(data)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"][file_name] = sha256_bytes(data)
    (folder / "metadata.json").write_text(json.dumps(metadata))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(ArtifactStore(str(tmp_path / "store")), "demo")


# -- failure 5: champion.json pointing outside the store --------------------------------------
@pytest.mark.parametrize("kind", ["absolute", "relative", "separator"])
def test_a_champion_pointer_to_a_complete_version_elsewhere_is_refused(
    tmp_path: Path, registry: ModelRegistry, kind: str
) -> None:
    save(registry, "v1")
    elsewhere = save(ModelRegistry(ArtifactStore(str(tmp_path / "other")), "demo"), "v9")
    value = {
        "absolute": str(elsewhere),
        "relative": os.path.relpath(elsewhere, registry.uri()),
        "separator": "v1/../v1",
    }[kind]
    pointer = registry.uri("champion.json")
    Path(pointer).write_text(json.dumps({"version": value}))
    expected = f"{pointer}: {value!r} is not a valid model version id"
    with pytest.raises(ArtifactError, match=re.escape(expected)):
        registry.champion_version()
    with pytest.raises(ArtifactError, match=re.escape(expected)):  # nothing is served from it
        serving_forecaster(registry, CONFIG)


def test_a_champion_pointer_to_an_unfinished_version_is_refused(registry: ModelRegistry) -> None:
    save(registry, "v1")
    unfinished = Path(registry.uri("v2"))
    unfinished.mkdir()
    (unfinished / "model.keras").write_bytes(tiny_model_bytes())  # no metadata.json
    pointer = registry.uri("champion.json")
    Path(pointer).write_text(json.dumps({"version": "v2"}))
    with pytest.raises(ArtifactError, match=re.escape(f"{pointer}: names version 'v2', which")):
        registry.champion_version()


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b'{"version": "v1"', "not valid JSON (Expecting ',' delimiter: line 1 column 17"),
        (b"\x00\x01garbage", "not valid JSON"),
        (b'["v1"]', "expected a JSON object, found list"),
        (b'{"version": 5}', '"version" must be a string, found 5'),
        (b'{"champion": "v1"}', '"version" must be a string, found None'),
    ],
)
def test_an_invalid_champion_pointer_names_the_file_and_cause(
    registry: ModelRegistry, content: bytes, cause: str
) -> None:
    save(registry, "v1")
    pointer = registry.uri("champion.json")
    Path(pointer).write_bytes(content)
    with pytest.raises(VersionFileError, match=re.escape(f"{pointer}: {cause}")):
        registry.champion_version()


# -- failure 7: version files that are not what they should be ---------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_model_file_that_is_no_keras_zip_names_the_file(
    registry: ModelRegistry, damage: str
) -> None:
    good = tiny_model_bytes()
    data = {"garbage": b"not a model at all", "truncated": good[: len(good) // 2], "empty": b""}
    save(registry, "v1", data[damage])
    uri = registry.uri("v1", "model.keras")
    with pytest.raises(VersionFileError, match=re.escape(f"{uri}: not a .keras zip")) as raised:
        registry.forecaster("v1")
    assert "/tmp" not in str(raised.value).replace(uri, "")  # never the temporary copy's path


def test_a_zip_that_is_no_model_names_the_file(registry: ModelRegistry) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    save(registry, "v1", buffer.getvalue())
    uri = registry.uri("v1", "model.keras")
    with pytest.raises(
        VersionFileError, match=re.escape(f"{uri}: not a loadable .keras model (")
    ) as raised:
        registry.forecaster("v1")
    assert "config.json" in str(raised.value)


def test_a_model_with_code_stays_refused_and_names_the_file(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    import keras

    inputs = keras.Input(shape=(3,))
    path = tmp_path / "lambda.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that a lambda is unsafe: that is the point
        keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs)).save(path)
    save(registry, "v1", path.read_bytes())
    uri = registry.uri("v1", "model.keras")
    with pytest.raises(VersionFileError, match=re.escape(f"{uri}: refused to load")):
        registry.forecaster("v1")


def test_a_good_version_still_loads_and_forecasts(registry: ModelRegistry) -> None:
    save(registry, "v1", tiny_model_bytes())
    model = registry.load("v1").load_model()
    assert np.isfinite(model.predict(np.ones((1, 3, 1)), verbose=0)).all()


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"PAR1 garbage PAR1", "not a readable Parquet file"),
        (b"", "not a readable Parquet file"),
        (table_to_parquet_bytes(pa.Table.from_pandas(METRICS)), "not a scaler table (KeyError"),
    ],
)
def test_a_corrupt_scaler_names_the_file(registry: ModelRegistry, data: bytes, cause: str) -> None:
    folder = save(registry, "v1", tiny_model_bytes())
    replace_file(folder, "scaler.parquet", data)
    uri = registry.uri("v1", "scaler.parquet")
    with pytest.raises(VersionFileError, match=re.escape(f"{uri}: {cause}")):
        registry.load("v1")


def test_a_corrupt_metrics_file_names_the_file(registry: ModelRegistry) -> None:
    folder = save(registry, "v1")
    replace_file(folder, "metrics.parquet", b"PAR1 garbage PAR1")
    uri = registry.uri("v1", "metrics.parquet")
    with pytest.raises(VersionFileError, match=re.escape(f"{uri}: not a readable Parquet file")):
        registry.metrics("v1")


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b'{"files": ', "not valid JSON (Expecting value: line 1 column 11"),
        (b"[]", "expected a JSON object, found list"),
        (b'{"files": ["model.keras"]}', 'no "files" object of per-file checksums'),
    ],
)
def test_an_invalid_metadata_file_names_the_file(
    registry: ModelRegistry, content: bytes, cause: str
) -> None:
    folder = save(registry, "v1")
    (folder / "metadata.json").write_bytes(content)
    uri = registry.uri("v1", "metadata.json")
    with pytest.raises(VersionFileError, match=re.escape(f"{uri}: {cause}")):
        registry.load("v1")


@pytest.mark.parametrize("file_name", ["model.keras", "scaler.parquet"])
def test_a_missing_version_file_names_the_file(registry: ModelRegistry, file_name: str) -> None:
    folder = save(registry, "v1", tiny_model_bytes())
    (folder / file_name).unlink()
    uri = registry.uri("v1", file_name)
    with pytest.raises(ArtifactError, match=re.escape(f"{uri}: artifact not found")):
        registry.load("v1")


# -- failure 8: what killed saves leave --------------------------------------------------------
def age(path: Path, by: timedelta) -> None:
    """Set the modification time of `path` and of everything under it `by` into the past."""
    stamp = time.time() - by.total_seconds()
    for item in [path, *path.rglob("*")]:
        os.utime(item, (stamp, stamp))


def test_unfinished_version_folders_and_staged_files_are_removed_once_old(
    registry: ModelRegistry,
) -> None:
    complete = save(registry, "v1", tiny_model_bytes())
    registry.promote("v1", "first")
    root = complete.parent
    old, fresh = root / "v2", root / "v3"
    for folder in (old, fresh):  # killed after two files: no metadata.json
        folder.mkdir()
        (folder / "model.keras").write_bytes(tiny_model_bytes())
        (folder / "scaler.parquet").write_bytes(b"PAR1")
    staged_pointer = root / f".champion.json.{'a' * 32}.tmp"
    staged_decision = complete / f".decision.json.{'b' * 32}.tmp"
    for staged in (staged_pointer, staged_decision):
        staged.write_text("{}")
    for path in (old, staged_pointer, staged_decision):
        age(path, UNFINISHED_AGE + timedelta(minutes=1))
    age(complete / "model.keras", timedelta(days=30))  # a complete version is never a leftover
    assert registry.versions() == ["v1"]  # unfinished folders are never listed

    removed = registry.remove_unfinished()

    assert sorted(removed) == sorted(map(str, (old, staged_pointer, staged_decision)))
    assert not old.exists() and fresh.exists()  # a save still being written is left alone
    assert registry.versions() == ["v1"] and registry.champion_version() == "v1"
    assert (complete / "model.keras").exists() and registry.load("v1").load_model() is not None
    later = datetime.now(UTC) + UNFINISHED_AGE + timedelta(minutes=1)
    assert registry.remove_unfinished(now=later) == [str(fresh)]
