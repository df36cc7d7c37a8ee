"""The model registry: versions under `{root}/models/{name}/`, and the champion pointer.

A version folder holds the model (`model.keras`), its scaler, config and metrics;
`metadata.json`, written last, records the sha256 of each of those files (verified on every
load) with the data fingerprint and code version, so a folder without it is an unfinished save
and never listed. `champion.json` names the serving version. It changes only through
`swap_champion`, a compare-and-swap under the registry's lock: the pointer must still name the
champion the caller compared against, so two concurrent trainings cannot both win. The pointer
also keeps `history`, the earlier champions (oldest first) that `roll_back` returns to; a pointer
written before the history was kept counts its "previous" as the only one.

A file that exists but cannot be read as what it should be (not a `.keras` zip, not Parquet, not
the JSON object expected) is a `VersionFileError` naming the file and the cause. A save killed
mid-way leaves a folder without `metadata.json`; `remove_unfinished` deletes it at the next
registration once it is older than `UNFINISHED_AGE`.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_model.forecasters import ScaledModelForecaster
from lstm_model.scaling import SeriesScaler
from tasks.config import PipelineConfig
from tasks.storage import (
    ArtifactError,
    ArtifactStore,
    sha256_bytes,
    table_to_parquet_bytes,
)

VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
"""Version ids are plain names: no separator, no absolute path, nothing that leaves the folder."""

VERSION_FILES = ("model.keras", "scaler.parquet", "metrics.parquet", "config.json")
"""The files of a version whose sha256 `metadata.json` records and `load` verifies."""
EVALUATION_MODEL = "evaluation_model.keras"
"""A refit version's model fitted before its own validation cutoff: the gate scores a champion
with it, since the served model (refit on the whole history) has seen later test windows."""

UNFINISHED_AGE = timedelta(hours=1)
"""How long after its last write a version folder without `metadata.json` is a leftover.
`save_version` writes bytes already in memory, in seconds, so a folder a concurrent run is still
writing is never this old; an hour leaves room for a slow object store."""

STAGED = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
"""A file the store staged for an atomic write (see tasks.storage): left when a write is killed."""


class VersionFileError(ArtifactError):
    """A registry file that exists but is not what it should be: corrupt, truncated, garbage or
    of the wrong shape. Permanent: reading it again gives the same bytes."""


class ChampionChanged(ArtifactError):
    """The champion pointer no longer names the version a promotion was compared against."""


class NoPreviousChampion(ArtifactError):
    """A rollback asked of a champion pointer that records no earlier champion."""


def check_version_id(version: str, where: str) -> str:
    """`version` if it is a plain version id; an ArtifactError naming `where` otherwise."""
    if not VERSION_ID.fullmatch(version) or ".." in version:
        raise ArtifactError(f"{where}: {version!r} is not a valid model version id")
    return version


def new_version_id(content_key: str, created: datetime) -> str:
    """Sortable version ids: the trained artifact's UTC creation time, then its checksum.

    Derived from the trained artifact alone, so registering the same model twice names the
    same version (registration is idempotent by version).
    """
    return f"{created.astimezone(UTC):%Y%m%dT%H%M%SZ}-{content_key[:8]}"


def model_to_bytes(model: Any) -> bytes:
    """A Keras model as `.keras` bytes, for the artifact store (which may not be a local disk)."""
    from lstm_model.serialization import save_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        save_model(model, path)
        return path.read_bytes()


def model_from_bytes(data: bytes, uri: str) -> Any:
    """The Keras model in `.keras` bytes read from `uri`, loaded with safe_mode=True (no Lambda
    layers); a `VersionFileError` naming `uri` when the bytes are no loadable model."""
    from lstm_model.serialization import UnsafeModelError, load_model

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise VersionFileError(f"{uri}: not a .keras zip ({len(data)} bytes, {data[:8]!r}...)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        try:
            return load_model(path)
        except UnsafeModelError as err:
            raise VersionFileError(
                f"{uri}: refused to load: the model holds Python code (e.g. a Lambda layer), "
                "which safe mode never runs"
            ) from err
        # What Keras raises for a zip that is no model (missing config.json, bad JSON, unknown
        # class, no weights); its message names the temporary copy, so name the store's file.
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, EOFError) as err:
            cause = str(err).replace(str(path), "the file")
            raise VersionFileError(f"{uri}: not a loadable .keras model ({cause})") from err


@dataclass(frozen=True)
class ModelVersion:
    """A saved version, as read back for serving or comparison."""

    name: str
    version: str
    metadata: dict[str, Any]
    scaler: SeriesScaler
    model_bytes: bytes
    model_uri: str

    def load_model(self) -> Any:
        """The Keras model, always loaded with safe_mode=True."""
        return model_from_bytes(self.model_bytes, self.model_uri)

    def forecaster(self, name: str = "lstm") -> ScaledModelForecaster:
        return ScaledModelForecaster(
            model=self.load_model(),
            scaler=self.scaler,
            input_features=list(self.metadata["input_features"]),
            look_back=int(self.metadata["look_back"]),
            horizon=int(self.metadata["horizon"]),
            name=name,
            quantiles=tuple(float(q) for q in self.metadata.get("quantiles", ())),
            future_features=tuple(self.metadata.get("future_features", ())),
        )


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
        evaluation_model_bytes: bytes | None = None,
        metrics: pd.DataFrame,
        config: PipelineConfig,
        metadata: dict[str, Any],
    ) -> str:
        """Write a version folder; metadata.json last marks it complete. Returns its URI."""
        check_version_id(version, self.uri())
        files = {
            "model.keras": model_bytes,
            "scaler.parquet": table_to_parquet_bytes(_frame_to_table(scaler.to_frame())),
            "metrics.parquet": table_to_parquet_bytes(_frame_to_table(metrics)),
            "config.json": json.dumps(config.model_dump(mode="json"), indent=2).encode(),
        }
        if evaluation_model_bytes is not None:
            files[EVALUATION_MODEL] = evaluation_model_bytes
        for file_name, data in files.items():
            self.store.write_bytes(self.uri(version, file_name), data)
        self.store.write_json(
            self.uri(version, "metadata.json"),
            {
                **metadata,
                "name": self.name,
                "version": version,
                "files": {file_name: sha256_bytes(data) for file_name, data in files.items()},
                "saved_at": datetime.now(UTC).isoformat(),
            },
        )
        return self.uri(version)

    def read_file(self, version: str, file_name: str, metadata: dict[str, Any]) -> bytes:
        """One file of a version, refused unless its sha256 is the one metadata.json records."""
        uri = self.uri(version, file_name)
        expected = metadata.get("files", {}).get(file_name)
        if expected is None:
            raise ArtifactError(
                f"{self.uri(version, 'metadata.json')}: no checksum for {file_name} (saved by an "
                "older release without per-file checksums: retrain to replace it)"
            )
        data = self.store.read_bytes(uri)
        if sha256_bytes(data) != expected:
            raise ArtifactError(
                f"{uri}: checksum mismatch; the file changed after the version was saved"
            )
        return data

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        found = []
        for path in self.store.list("models", self.name):
            version = Path(path).name
            if self.store.exists(self.uri(version, "metadata.json")):
                found.append(version)
        return sorted(found)

    def champion_version(self) -> str | None:
        """The serving version: a plain id (no path, no separator) of a complete version of
        this name, or None before any promotion."""
        pointer = self.champion_pointer()
        if pointer is None:
            return None
        uri = self.uri("champion.json")
        version = check_version_id(pointer["version"], uri)
        if version not in self.versions():
            raise ArtifactError(
                f"{uri}: names version {version!r}, which does not exist among the complete "
                f"versions of {self.uri()}"
            )
        return version

    def champion_pointer(self) -> dict[str, Any] | None:
        """`champion.json` as read: a JSON object whose "version" is a string."""
        pointer = self.uri("champion.json")
        if not self.store.exists(pointer):
            return None
        payload = self._read_json(pointer)
        if not isinstance(payload.get("version"), str):
            raise VersionFileError(
                f'{pointer}: "version" must be a string, found {payload.get("version")!r}'
            )
        return payload

    def _read_json(self, uri: str) -> dict[str, Any]:
        """A registry JSON file that must hold an object."""
        try:
            payload = json.loads(self.store.read_bytes(uri))
        except ValueError as err:  # json's message says where: "line 1 column 2 (char 1)"
            raise VersionFileError(f"{uri}: not valid JSON ({err})") from err
        if not isinstance(payload, dict):
            raise VersionFileError(f"{uri}: expected a JSON object, found {type(payload).__name__}")
        return payload

    def remove_unfinished(self, now: datetime | None = None) -> list[str]:
        """Delete what killed saves left, once `UNFINISHED_AGE` old: version folders without
        `metadata.json`, and files staged for an atomic write that never got renamed.

        Returns the store paths removed. Never touches a complete version's files.
        """
        cutoff = (now or datetime.now(UTC)) - UNFINISHED_AGE
        leftovers = []
        for path in self.store.list("models", self.name):
            entry = Path(path).name
            if self.store.is_folder(path):
                if self.store.exists(self.uri(entry, "metadata.json")):
                    leftovers += [
                        inner
                        for inner in self.store.list("models", self.name, entry)
                        if STAGED.fullmatch(Path(inner).name)
                    ]
                else:
                    leftovers.append(path)
            elif STAGED.fullmatch(entry):
                leftovers.append(path)
        removed = []
        for path in leftovers:
            if self.store.usage(path)[0] < cutoff:
                self.store.remove(path)
                removed.append(path)
        return removed

    @contextlib.contextmanager
    def pointer_lock(self) -> Iterator[None]:
        """Hold the registry's lock while comparing against the champion and swapping it.

        On a local disk this is an exclusive `flock` on `models/{name}/.champion.lock`, which
        the OS releases even when the holder is killed. Object stores have no lock here:
        `swap_champion` then re-reads the pointer just before writing (a conditional write on
        object stores is issue 11's work).
        """
        if not self.store.is_local:
            yield
            return
        path = self.store.path("models", self.name, ".champion.lock")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def champion_history(self) -> list[dict[str, Any]]:
        """The earlier champions, oldest first: each `{"version", "reason", "promoted_at"}` as
        its pointer recorded them. A pointer written before the history was kept yields its
        "previous" alone."""
        pointer = self.champion_pointer()
        if pointer is None:
            return []
        history = pointer.get("history")
        if history is None:
            previous = pointer.get("previous")
            return [{"version": previous}] if isinstance(previous, str) else []
        if not isinstance(history, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("version"), str) for entry in history
        ):
            raise VersionFileError(
                f'{self.uri("champion.json")}: "history" must be a list of objects with a '
                f'"version" string, found {history!r}'
            )
        return history

    def swap_champion(
        self,
        expected: str | None,
        version: str,
        reason: str,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        """Point the champion at `version` if it still names `expected` (call under the lock).

        The pointer's history gains the replaced champion unless `history` is given (a
        rollback passes the history without the champion it returns to)."""
        if version not in self.versions():
            raise ArtifactError(f"cannot promote {self.name}/{version}: no complete version")
        current = self.champion_version()
        if current != expected:
            raise ChampionChanged(
                f"{self.uri('champion.json')}: the champion is {current}, not {expected} as "
                f"compared; {version} was not promoted"
            )
        if history is None:
            pointer = self.champion_pointer()
            replaced = (
                []
                if pointer is None
                else [
                    {
                        key: pointer[key]
                        for key in ("version", "reason", "promoted_at")
                        if key in pointer
                    }
                ]
            )
            history = self.champion_history() + replaced
        self.store.write_json(
            self.uri("champion.json"),
            {
                "version": version,
                "previous": expected,
                "reason": reason,
                "promoted_at": datetime.now(UTC).isoformat(),
                "history": history,
            },
        )

    def roll_back(self, expected: str | None, by: str) -> str:
        """Make the champion before `expected` the champion again (call under the lock);
        returns it. `by` names who asked, for the pointer's reason."""
        history = self.champion_history()
        if expected is None or not history:
            raise NoPreviousChampion(
                f"{self.uri('champion.json')}: no previous champion to roll back to "
                f"(the champion is {expected})"
            )
        target = history[-1]["version"]
        self.swap_champion(
            expected, target, f"rolled back by {by} from {expected}", history=history[:-1]
        )
        return target

    def promote(self, version: str, reason: str) -> None:
        """Point the champion at `version` whatever it names now (an operator's decision)."""
        with self.pointer_lock():
            self.swap_champion(self.champion_version(), version, reason)

    def metadata(self, version: str) -> dict[str, Any]:
        check_version_id(version, self.uri())
        uri = self.uri(version, "metadata.json")
        metadata = self._read_json(uri)
        if not isinstance(metadata.get("files", {}), dict):
            raise VersionFileError(f'{uri}: no "files" object of per-file checksums')
        return metadata

    def load(self, version: str, for_evaluation: bool = False) -> ModelVersion:
        """A complete version with every file's checksum verified. `for_evaluation`: its model
        fitted before its validation cutoff, when it was refit (else the served model)."""
        metadata = self.metadata(version)
        evaluation = for_evaluation and EVALUATION_MODEL in metadata.get("files", {})
        model_file = EVALUATION_MODEL if evaluation else "model.keras"
        model_bytes = self.read_file(version, model_file, metadata)
        scaler_uri = self.uri(version, "scaler.parquet")
        scaler_frame = _read_parquet_bytes(
            self.read_file(version, "scaler.parquet", metadata), scaler_uri
        )
        try:
            scaler = SeriesScaler.from_frame(scaler_frame)
        except (KeyError, ValueError) as err:
            raise VersionFileError(f"{scaler_uri}: not a scaler table ({err!r})") from err
        return ModelVersion(
            name=self.name,
            version=version,
            metadata=metadata,
            scaler=scaler,
            model_bytes=model_bytes,
            model_uri=self.uri(version, model_file),
        )

    def decision(self, version: str) -> dict[str, Any] | None:
        """The gate's `decision.json` of a version ({"promote", "reason", ...}), or None when
        the gate never decided on it (a version saved outside the training flow)."""
        uri = self.uri(check_version_id(version, self.uri()), "decision.json")
        return self._read_json(uri) if self.store.exists(uri) else None

    def metrics(self, version: str) -> pd.DataFrame:
        metadata = self.metadata(version)
        uri = self.uri(version, "metrics.parquet")
        return _read_parquet_bytes(self.read_file(version, "metrics.parquet", metadata), uri)

    def forecaster(self, version: str, for_evaluation: bool = False) -> ScaledModelForecaster:
        """A version as a forecaster (see lstm_model.forecasters), named "champion"."""
        return self.load(version, for_evaluation).forecaster(name="champion")


def _frame_to_table(frame: pd.DataFrame):  # noqa: ANN202 - pyarrow type
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def _read_parquet_bytes(data: bytes, uri: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data), page_checksum_verification=True).to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        raise VersionFileError(f"{uri}: not a readable Parquet file ({err})") from err
