"""Datasets by reference: resolve a registry id, name or file; register records; read a dataset's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaiyuan.data.formats import Record, load_records
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import DATA_FILE, Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry

__all__ = ["DATA_FILE", "dataset_records", "register_dataset", "resolve_dataset", "resolve_dataset_records"]



def resolve_dataset(ref: str, registry: Registry | None = None, data_format: str = "auto",
                    license: str = "NOASSERTION") -> Artifact:
    """A registered dataset by id or name, or a JSON/JSONL file (imported into the registry)."""
    registry = registry or Registry()
    found = registry.find(ref)
    if found is not None:
        if found.kind != "dataset":
            raise KaiyuanError(f"{ref!r} is a {found.kind}, not a dataset")
        return found
    path = Path(ref).expanduser()
    if not path.is_file():
        raise KaiyuanError(f"cannot resolve dataset {ref!r}: not a registry id or name, nor a file")
    loaded = load_records(path, data_format)
    return register_dataset(loaded.records, name=path.name, license=license, source=f"file:{path.resolve()}",
                            config={"format": loaded.format, "records": len(loaded.records)}, registry=registry)


def resolve_dataset_records(ref: str, registry: Registry | None = None, data_format: str = "auto",
                            license: str = "NOASSERTION") -> tuple[Artifact, list[Record], str]:
    """(dataset, its records, where they come from) for a registry id / name or a JSON/JSONL file. For a file
    that is imported here, the records are the file's, with its line numbers, and "where" is the file the user
    named, so errors about a record point into it (``FILE:LINE``) rather than into the registry's copy."""
    registry = registry or Registry()
    found = registry.find(ref)
    path = Path(ref).expanduser()
    if found is not None or not path.is_file():
        data = resolve_dataset(ref, registry, data_format, license)
        return data, dataset_records(data, registry), f"{data.id}/{DATA_FILE}"
    loaded = load_records(path, data_format)
    data = register_dataset(loaded.records, name=path.name, license=license, source=f"file:{path.resolve()}",
                            config={"format": loaded.format, "records": len(loaded.records)}, registry=registry)
    return data, loaded.records, str(ref)


def register_dataset(records: list[Record] | list[dict], name: str, license: str, source: str,
                     config: dict[str, Any] | None = None, seed: int | None = None,
                     parents_of: list[str] | None = None, *, stage: str | None = None,
                     registry: Registry | None = None) -> Artifact:
    """Register records as a dataset (in ``registry``; default KAIYUAN_HOME's); ``parents_of`` names models that
    generated them (relation generator); ``stage``: the stage that made them, recorded in the manifest."""
    rows = [r.to_dict() if isinstance(r, Record) else r for r in records]
    with ArtifactWriter("dataset", name, license=license, source=source, config=config or {}, seed=seed,
                        parents=[Parent(p, "generator") for p in parents_of or []],
                        metrics={"records": len(rows)}, stage=stage, registry=registry) as writer:
        (writer.path / DATA_FILE).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


def dataset_records(artifact: Artifact, registry: Registry | None = None) -> list[Record]:
    """The dataset's records, once its files are checked against its manifest (a damaged dataset is refused,
    naming the file, before anything trains or evaluates on it)."""
    (registry or Registry()).ensure_intact(artifact)
    return load_records(artifact.path / DATA_FILE, "auto").records
