"""The artifact store: one injected object that owns every read and write under the storage root.

Addressed by URL through fsspec (a local folder by default, `s3://…` or any fsspec filesystem
when configured). Writes are atomic: local files are staged, fsynced and renamed; object stores
get a single PUT. Parquet is written with page checksums and with schema metadata describing the
artifact, and verified on read against the sha256 its reference carries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict

METADATA_KEY = b"forecast.artifact"

STAGING_NAME = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
"""A staged file's name: `.{name}.{uuid hex}.tmp` beside its target (see `staging_path`)."""

STALE_STAGING_AGE = timedelta(hours=1)
"""A staged file older than this is a leftover of a killed writer: a live writer renames its
staged file as soon as the bytes are on disk (milliseconds; seconds for the largest forecast on
a slow disk), so an hour is far beyond any write and still cleans up before the next night."""


class ArtifactRef(BaseModel):
    """What tasks pass each other: where an artifact is and what its bytes hash to (JSON-safe)."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    rows: int | None = None


class ArtifactError(RuntimeError):
    """An artifact that is missing, truncated, corrupt or not the one its reference names."""


# What a result depends on: the core and the steps, with the steps' data files (the bundled Great
# Expectations suites decide what validation passes). Not flows/ or deployments/: they only wire
# steps, and every input a task receives is in its cache key already, so a flow, CLI or report
# edit must not throw away every cached artifact.
CODE_PACKAGES = ("lstm_model", "tasks")
CODE_SUFFIXES = (".py", ".json")


@cache
def code_version() -> str:
    """Package version plus a hash of the pipeline's source, so changed code never hits old cache."""
    try:
        version = importlib_metadata.version("lstm-forecast-pipeline")
    except importlib_metadata.PackageNotFoundError:
        version = "0+unknown"
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent
    for package in CODE_PACKAGES:
        for source in sorted((here / package).rglob("*")):
            if source.suffix in CODE_SUFFIXES and "__pycache__" not in source.parts:
                digest.update(source.relative_to(here).as_posix().encode())
                digest.update(source.read_bytes())
    return f"{version}+{digest.hexdigest()[:12]}"


def content_key(*parts: Any) -> str:
    """Stable key from JSON-able parts (step config, input checksums, code version...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_page_checksum=True)
    return buffer.getvalue()


def parquet_bytes_to_table(data: bytes, uri: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data), page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtifactError(f"{uri}: not a readable Parquet file ({err})") from err


class ArtifactStore:
    """Reads and writes artifacts, models and forecasts under one root URL."""

    def __init__(self, root: str) -> None:
        self.root_url = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root_url)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    # -- addressing ---------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path under the root; refuses parts that would climb out of it."""
        for part in parts:
            if part in {"", ".", ".."} or any(p == ".." for p in PurePosixPath(part).parts):
                raise ArtifactError(f"refusing path part {part!r}: it would leave {self.root_url}")
        return str(PurePosixPath(self._root_path, *parts))

    def uri(self, *parts: str) -> str:
        """The URL a user can open: a plain path for local stores, `proto://…` otherwise."""
        path = self.path(*parts)
        if self.is_local:
            return path
        return self.fs.unstrip_protocol(path)

    def _to_path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri)

    def artifact_uri(self, step: str, key: str) -> str:
        return self.uri("artifacts", step, f"{key}.parquet")

    # -- bytes --------------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Atomic write: a reader sees the old content or the new, never a mix."""
        path = self._to_path(uri)
        try:
            if self.is_local:
                _atomic_local_write(Path(path), data)
            else:
                self.fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
                self.fs.pipe_file(path, data)  # one PUT: object stores never show a partial one
        except OSError as err:
            if err.errno is not None and err.filename is None:
                err.filename = path  # a full disk's write() names no file: say which one
            raise

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self.fs.cat_file(self._to_path(uri))
        except FileNotFoundError as err:
            raise ArtifactError(f"{uri}: artifact not found") from err

    def exists(self, uri: str) -> bool:
        return self.fs.exists(self._to_path(uri))

    def write_json(self, uri: str, payload: Mapping[str, Any]) -> None:
        self.write_bytes(uri, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, uri: str) -> dict[str, Any]:
        try:
            return json.loads(self.read_bytes(uri))
        except ValueError as err:  # json's own error names no file
            raise ArtifactError(f"{uri}: not valid JSON ({err})") from err

    def list(self, *parts: str) -> list[str]:
        try:
            return sorted(self.fs.ls(self.path(*parts), detail=False))
        except FileNotFoundError:
            return []

    def path_of(self, uri: str) -> str:
        """The filesystem path a URI of this store names (what `path` and `list` return)."""
        return self._to_path(uri)

    def is_folder(self, path: str) -> bool:
        return self.fs.isdir(path)

    def usage(self, path: str) -> tuple[datetime, int]:
        """When a file, or the newest file in a folder, was last written (UTC), and total bytes."""
        files = self.fs.find(path, detail=True)
        if not files:  # an empty folder
            return self.fs.modified(path), 0
        modified = max(self.fs.modified(name) for name in files)
        return modified, sum(int(info.get("size") or 0) for info in files.values())

    def remove(self, path: str) -> None:
        """Delete a file or a whole folder under the root (retention only; see tasks/retention.py)."""
        self.fs.rm(path, recursive=self.fs.isdir(path))

    def remove_stale_staging(
        self, *parts: str, older_than: timedelta = STALE_STAGING_AGE
    ) -> list[str]:
        """Delete the staged files (`staging_path`) under `parts` last written more than
        `older_than` ago: a writer killed between its write and its rename leaves one behind.
        Returns the removed paths. Object stores stage nothing (one PUT), so there it is a no-op.
        """
        folder = Path(self.path(*parts))
        if not self.is_local or not folder.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for path in sorted(folder.rglob(".*.tmp")):
            if not STAGING_NAME.fullmatch(path.name):
                continue
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(str(path))
            except FileNotFoundError:  # another run's janitor got there first
                continue
        return removed

    # -- tables -------------------------------------------------------------------------------
    def write_table(
        self,
        step: str,
        key: str,
        frame: pd.DataFrame,
        *,
        config_hash: str,
        inputs: Iterable[ArtifactRef] = (),
        extra: Mapping[str, Any] | None = None,
        uri: str | None = None,
        created_at: str | None = None,
    ) -> ArtifactRef:
        """Write `frame` as the artifact of `step` under content key `key` (or at `uri`).

        `created_at` defaults to now; pass a fixed value where the bytes must be reproducible.
        """
        uri = uri or self.artifact_uri(step, key)
        description = {
            "step": step,
            "key": key,
            "config_hash": config_hash,
            "inputs": [ref.model_dump() for ref in inputs],
            "rows": len(frame),
            "code_version": code_version(),
            "created_at": created_at or datetime.now(UTC).isoformat(),
            **(extra or {}),
        }
        table = pa.Table.from_pandas(frame, preserve_index=False)
        schema_metadata = dict(table.schema.metadata or {})
        schema_metadata[METADATA_KEY] = json.dumps(description, default=str).encode()
        data = table_to_parquet_bytes(table.replace_schema_metadata(schema_metadata))
        self.write_bytes(uri, data)
        return ArtifactRef(uri=uri, sha256=sha256_bytes(data), rows=len(frame))

    def read_verified(self, ref: ArtifactRef) -> bytes:
        """The bytes a reference names, refusing any that changed after it was written."""
        data = self.read_bytes(ref.uri)
        actual = sha256_bytes(data)
        if actual != ref.sha256:
            raise ArtifactError(
                f"{ref.uri}: checksum mismatch (expected {ref.sha256[:12]}…, found {actual[:12]}…);"
                " the file changed after it was written"
            )
        return data

    def read_table(self, ref: ArtifactRef) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The frame and its artifact metadata, after checking bytes and page checksums."""
        table = parquet_bytes_to_table(self.read_verified(ref), ref.uri)
        return table.to_pandas(), artifact_metadata(table.schema, ref.uri)

    def read_metadata(self, uri: str) -> dict[str, Any]:
        """An artifact's metadata from its Parquet footer alone: no data read, no checksum."""
        try:
            with self.fs.open(self._to_path(uri), "rb") as handle:
                schema = pq.read_schema(handle)
        except FileNotFoundError as err:
            raise ArtifactError(f"{uri}: artifact not found") from err
        except (pa.ArrowInvalid, OSError) as err:
            raise ArtifactError(f"{uri}: not a readable Parquet file ({err})") from err
        return artifact_metadata(schema, uri)

    def lineage(self, ref: ArtifactRef) -> list[tuple[str, str]]:
        """(step, URI) of an artifact and, following first inputs, the ones it was made from."""
        chain: list[tuple[str, str]] = []
        current: ArtifactRef | None = ref
        while current is not None:
            _, meta = self.read_table(current)
            chain.append((meta["step"], current.uri))
            current = ArtifactRef(**meta["inputs"][0]) if meta["inputs"] else None
        return chain

    # -- finding finished work (the cache) ------------------------------------------------------
    def find(
        self, step: str, key: str, on_damaged: Callable[[str], None] | None = None
    ) -> ArtifactRef | None:
        """The existing artifact for a content key, if a previous run wrote one that reads back
        whole: every page checksum, its own step and key in its metadata, and every file its
        metadata references with a sha256 (a trained model, a validation's future rows).

        Anything less is a damaged leftover: None (it is rewritten, never trusted), and
        `on_damaged` is told why, naming the file.
        """
        uri = self.artifact_uri(step, key)
        try:
            data = self.read_bytes(uri)
        except ArtifactError:
            return None  # not written yet (or removed): nothing to say
        try:
            table = parquet_bytes_to_table(data, uri)
            meta = artifact_metadata(table.schema, uri)
            if (meta.get("step"), meta.get("key")) != (step, key):
                raise ArtifactError(f"{uri}: its metadata names another artifact")
            for companion in referenced_files(meta):
                self.read_verified(companion)
        except ArtifactError as err:
            if on_damaged is not None:
                on_damaged(f"damaged artifact {uri}: {err}")
            return None
        return ArtifactRef(uri=uri, sha256=sha256_bytes(data), rows=table.num_rows)


def referenced_files(meta: Mapping[str, Any]) -> list[ArtifactRef]:
    """The files an artifact's metadata points to with a checksum, other than its inputs (the
    upstream artifacts, which their own steps check)."""
    return [
        ArtifactRef(**value)
        for name, value in meta.items()
        if name != "inputs" and isinstance(value, dict) and {"uri", "sha256"} <= value.keys()
    ]


def artifact_metadata(schema: pa.Schema, uri: str) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ArtifactError(f"{uri}: Parquet file has no forecast artifact metadata")
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise ArtifactError(f"{uri}: its artifact metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ArtifactError(f"{uri}: its artifact metadata is not a JSON object")
    return meta


def staging_path(path: Path) -> Path:
    """Where `path`'s new bytes are staged before the rename: hidden, unique per writer."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _atomic_local_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    try:
        with open(staging, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
