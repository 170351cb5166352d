"""Helpers shared by the training stages: datasets by reference, devices, metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaiyuan.data.formats import Record, load_records
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry

DATA_FILE = "data.jsonl"


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
                     config: dict[str, Any] | None = None, seed: int | None = None) -> Artifact:
    rows = [r.to_dict() if isinstance(r, Record) else r for r in records]
    with ArtifactWriter("dataset", name, license=license, source=source, config=config or {}, seed=seed,
                        metrics={"records": len(rows)}) as writer:
        (writer.path / DATA_FILE).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


def dataset_records(artifact: Artifact) -> list[Record]:
    return load_records(artifact.path / DATA_FILE, "auto").records


def use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def plot_curve(rows: list[dict[str, Any]], key: str, path: Path, title: str) -> Path | None:
    """A PNG of ``key`` against step; None when no row has the key."""
    points = [(row["step"], row[key]) for row in rows if key in row]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
