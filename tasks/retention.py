"""Retention: what `forecast gc` removes from a store, and why.

Every night writes a full copy of the validated history and nothing else ever removes it. The
plan (`plan_removals`) is a pure function of the store's listing, the registry state and the
time, so its rules are tested without a store; `collect_garbage` reads those three from a store
and removes what the plan names. It never removes a champion, anything in a champion's lineage
or a forecast partition whose run date is inside the retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Literal

from tasks.storage import ArtifactError, ArtifactStore

Kind = Literal["artifact", "report", "checkpoint", "forecast", "model"]

# Each kind's folder under the root, and how deep its removable units sit below it:
# artifacts/{step}/{key}.parquet, reports/{kind}/{file}, checkpoints/{key}/.
_AGED_BY_TIME: dict[Kind, tuple[str, int]] = {
    "artifact": ("artifacts", 2),
    "report": ("reports", 2),
    "checkpoint": ("checkpoints", 1),
}


@dataclass(frozen=True)
class StoredItem:
    """One removable unit of a store: a file, or a folder removed whole."""

    kind: Kind
    uri: str
    path: str
    modified: datetime
    """Last write of the file, or of the newest file in the folder (UTC)."""
    size: int = 0
    pipeline: str | None = None
    """The pipeline name of a forecast partition or a model version."""
    run_date: date | None = None
    version: str | None = None


@dataclass(frozen=True)
class RegistryState:
    """What must survive any retention: each pipeline's champion and everything it came from."""

    champions: dict[str, str]
    """Pipeline name -> champion version."""
    lineage: frozenset[str]
    """Paths of every artifact (and report) the champions' versions were made from."""


@dataclass(frozen=True)
class Removal:
    item: StoredItem
    reason: str


def plan_removals(
    items: Iterable[StoredItem], registry: RegistryState, now: datetime, retention_days: int
) -> list[Removal]:
    """What to delete, each with its reason: whatever is older than `retention_days` and is not
    a champion version, in a champion's lineage, or a forecast for a run date inside the window.

    Age is the run date for forecast partitions and the last write for everything else.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    cutoff = now - timedelta(days=retention_days)
    window = f"older than {retention_days} days"
    removals = []
    for item in items:
        written = f"{item.modified:%Y-%m-%d}"
        if item.kind == "forecast":
            if item.run_date is not None and item.run_date < cutoff.date():
                removals.append(Removal(item, f"run_date {item.run_date} is {window}"))
        elif item.kind == "model":
            if registry.champions.get(item.pipeline or "") == item.version:
                continue
            if item.modified < cutoff:
                removals.append(Removal(item, f"not the champion, saved {written}, {window}"))
        elif not _in_lineage(item.path, registry.lineage) and item.modified < cutoff:
            removals.append(Removal(item, f"last written {written}, {window}"))
    return sorted(removals, key=lambda removal: removal.item.path)


def _in_lineage(path: str, lineage: frozenset[str]) -> bool:
    """A lineage path itself, a folder holding one, or a file inside a lineage folder."""
    return any(
        path == kept or kept.startswith(path + "/") or path.startswith(kept + "/")
        for kept in lineage
    )


# -- reading a store ------------------------------------------------------------------------------
def list_items(store: ArtifactStore) -> list[StoredItem]:
    """Every removable unit under the root; anything this module does not know stays untouched."""
    items: list[StoredItem] = []
    for kind, (folder, depth) in _AGED_BY_TIME.items():
        for parts in _walk(store, (folder,), depth):
            items.append(_item(store, kind, parts))
    for name in _names(store, "forecasts"):
        for partition in _names(store, "forecasts", name):
            run_date = _run_date(partition)
            if run_date is not None:  # a folder that is no partition is not ours to judge
                parts = ("forecasts", name, partition)
                items.append(_item(store, "forecast", parts, pipeline=name, run_date=run_date))
    for name in _names(store, "models"):
        for version in _names(store, "models", name):
            parts = ("models", name, version)
            if store.is_folder(store.path(*parts)):  # champion.json is no version
                items.append(_item(store, "model", parts, pipeline=name, version=version))
    return items


def _names(store: ArtifactStore, *parts: str) -> list[str]:
    return [PurePosixPath(path).name for path in store.list(*parts)]


def _walk(store: ArtifactStore, parts: tuple[str, ...], depth: int) -> Iterator[tuple[str, ...]]:
    for name in _names(store, *parts):
        if depth == 1:
            yield (*parts, name)
        elif store.is_folder(store.path(*parts, name)):
            yield from _walk(store, (*parts, name), depth - 1)


def _item(store: ArtifactStore, kind: Kind, parts: tuple[str, ...], **fields: Any) -> StoredItem:
    path = store.path(*parts)
    modified, size = store.usage(path)
    return StoredItem(kind, store.uri(*parts), path, modified, size, **fields)


def _run_date(partition: str) -> date | None:
    prefix = "run_date="
    if not partition.startswith(prefix):
        return None
    try:
        return date.fromisoformat(partition[len(prefix) :])
    except ValueError:
        return None


def read_registry_state(store: ArtifactStore) -> RegistryState:
    """Every pipeline's champion and its lineage, read from the version's metadata.json.

    Fails (so nothing is removed) when a champion's lineage cannot be read whole: guessing
    would risk deleting what the serving model was made from.
    """
    from tasks.registry import ModelRegistry

    champions: dict[str, str] = {}
    lineage: set[str] = set()
    for name in _names(store, "models"):
        registry = ModelRegistry(store, name)
        version = registry.champion_version()
        if version is None:
            continue
        champions[name] = version
        metadata = store.read_json(registry.uri(version, "metadata.json"))
        if not metadata.get("artifacts"):
            raise ArtifactError(
                f"champion {name}/{version} names no artifacts in its metadata.json, so its"
                " lineage is unknown; nothing removed"
            )
        roots = list(metadata["artifacts"].values())
        roots += [ref["uri"] for ref in metadata.get("data_fingerprint", [])]
        lineage |= artifact_lineage(store, roots)
    return RegistryState(champions=champions, lineage=frozenset(lineage))


def artifact_lineage(store: ArtifactStore, uris: Iterable[str]) -> set[str]:
    """Paths of these artifacts and, recursively, of every artifact, model file and report
    their metadata names (`inputs`, the train step's `model`, the evaluation's `plot`...)."""
    seen: set[str] = set()
    pending = list(uris)
    while pending:
        uri = pending.pop()
        path = store.path_of(uri)
        if path in seen:
            continue
        seen.add(path)
        metadata = _lineage_metadata(store, uri, path)
        pending += list(_referenced_uris(metadata, store.root_url))
    return seen


def _lineage_metadata(store: ArtifactStore, uri: str, path: str) -> dict[str, Any]:
    if not store.exists(uri):
        raise ArtifactError(f"{uri}: in a champion's lineage but missing; nothing removed")
    if not path.startswith(store.path("artifacts") + "/"):
        return {}  # a report, or a source file that happens to live under the root: a leaf
    if store.is_folder(path):  # a bucketed artifact: its manifest describes it
        manifest = f"{uri}/manifest.json"
        return store.read_json(manifest) if store.exists(manifest) else {}
    if path.endswith(".parquet"):
        return store.read_metadata(uri)
    return {}  # a model file: a leaf


def _referenced_uris(metadata: Any, root_url: str) -> Iterator[str]:
    """Every URI under the store's root named anywhere in an artifact's metadata."""
    if isinstance(metadata, dict):
        for value in metadata.values():
            yield from _referenced_uris(value, root_url)
    elif isinstance(metadata, list):
        for value in metadata:
            yield from _referenced_uris(value, root_url)
    elif isinstance(metadata, str) and metadata.startswith(root_url + "/"):
        yield metadata


# -- the executor -------------------------------------------------------------------------------
def collect_garbage(
    store: ArtifactStore, retention_days: int, *, dry_run: bool, now: datetime | None = None
) -> list[Removal]:
    """Plan, then (unless `dry_run`) delete. Returns the plan, in the order it was carried out.

    A rerun that needed a removed artifact recomputes it: the store finds finished work by
    content key, and a missing file is a miss (there is no Prefect cache to name it).
    """
    now = now or datetime.now(UTC)
    registry = read_registry_state(store)  # first: an unreadable lineage removes nothing
    removals = plan_removals(list_items(store), registry, now, retention_days)
    if dry_run:
        return removals
    for removal in removals:
        store.remove(removal.item.path)
    return removals


def removals_text(removals: list[Removal], *, root: str, retention_days: int, dry_run: bool) -> str:
    """One line per removal, then a summary, as `forecast gc` prints it."""
    verb = "would remove" if dry_run else "removed"
    lines = [
        f"{verb:<12}  {removal.item.kind:<10}  {removal.item.uri}  ({removal.reason})"
        for removal in removals
    ]
    freed = sum(removal.item.size for removal in removals) / 1e6
    lines.append(
        f"{len(removals)} item(s) {'would be ' if dry_run else ''}removed ({freed:.1f} MB) from"
        f" {root}: older than {retention_days} days; every champion, its lineage and newer"
        " forecasts kept"
    )
    return "\n".join(lines)
