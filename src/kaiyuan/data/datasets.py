"""Datasets by reference: resolve a registry id, name or file; register records; read a dataset's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaiyuan.data.formats import Record, load_records
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import DATA_FILE, Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry

__all__ = ["DATA_FILE", "dataset_records", "register_dataset", "resolve_dataset"]



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
                            config={"format": loaded.format, "records": len(loaded.records)})


def register_dataset(records: list[Record] | list[dict], name: str, license: str, source: str,
                     config: dict[str, Any] | None = None, seed: int | None = None,
                     parents_of: list[str] | None = None) -> Artifact:
    """Register records as a dataset; ``parents_of`` names models that generated them (relation generator)."""
    rows = [r.to_dict() if isinstance(r, Record) else r for r in records]
    with ArtifactWriter("dataset", name, license=license, source=source, config=config or {}, seed=seed,
                        parents=[Parent(p, "generator") for p in parents_of or []],
                        metrics={"records": len(rows)}) as writer:
        (writer.path / DATA_FILE).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


def dataset_records(artifact: Artifact, registry: Registry | None = None) -> list[Record]:
    """The dataset's records, once its files are checked against its manifest (a damaged dataset is refused,
    naming the file, before anything trains or evaluates on it)."""
    (registry or Registry()).ensure_intact(artifact)
    return load_records(artifact.path / DATA_FILE, "auto").records
