"""The artifact store: atomic writes, checksums verified on read, any fsspec URL."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tasks.storage import ArtifactError, ArtifactStore


def frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": ["a"] * n, "y": [float(i) for i in range(n)]})


@pytest.mark.parametrize("root", ["local", "memory://bucket/prefix"])
def test_round_trip_keeps_rows_and_metadata(tmp_path: Path, root: str) -> None:
    store = ArtifactStore(str(tmp_path) if root == "local" else root)
    upstream = store.write_table("ingest", "k0", frame(2), config_hash="c0")
    ref = store.write_table("validate", "k1", frame(), config_hash="c1", inputs=[upstream])
    read, meta = store.read_table(ref)
    pd.testing.assert_frame_equal(read, frame())
    assert meta["step"] == "validate" and meta["rows"] == 5 and meta["config_hash"] == "c1"
    assert meta["inputs"] == [upstream.model_dump()]
    assert meta["code_version"].startswith("0.1.0+")
    assert store.find("validate", "k1") == ref


def test_changed_bytes_are_refused_on_read(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.write_table("ingest", "k", frame(), config_hash="c")
    data = bytearray(Path(ref.uri).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(ref.uri).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        store.read_table(ref)


def test_truncated_file_is_not_trusted_as_a_cache_hit(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.write_table("ingest", "k", frame(), config_hash="c")
    Path(ref.uri).write_bytes(Path(ref.uri).read_bytes()[:40])
    assert store.find("ingest", "k") is None


def test_failed_write_leaves_the_previous_artifact_intact(tmp_path: Path, monkeypatch) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.write_table("ingest", "k", frame(), config_hash="c")
    before = Path(ref.uri).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the write fails just before the rename
    with pytest.raises(OSError, match="disk full"):
        store.write_table("ingest", "k", frame(50), config_hash="c")
    assert Path(ref.uri).read_bytes() == before
    assert store.read_table(ref)[0].shape == (5, 2)
    leftovers = [p for p in Path(ref.uri).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("part", ["..", "../x", "a/../../b", ""])
def test_paths_never_leave_the_root(tmp_path: Path, part: str) -> None:
    with pytest.raises(ArtifactError, match="would leave"):
        ArtifactStore(str(tmp_path)).path("forecasts", part)
