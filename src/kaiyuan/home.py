"""KAIYUAN_HOME: where the registry, artifacts and caches live (default ``~/.kaiyuan``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def kaiyuan_home() -> Path:
    """The home directory, created on first use. ``KAIYUAN_HOME`` overrides the default."""
    home = Path(os.environ.get("KAIYUAN_HOME") or Path.home() / ".kaiyuan").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _folder(home: Path | None, name: str, create: bool = True) -> Path:
    """``<home>/<name>`` (created unless ``create`` is False); ``home`` defaults to :func:`kaiyuan_home`."""
    path = (home if home is not None else kaiyuan_home()) / name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def artifacts_dir(home: Path | None = None) -> Path:
    return _folder(home, "artifacts")


def cache_dir(home: Path | None = None) -> Path:
    return _folder(home, "cache")


def registry_path(home: Path | None = None) -> Path:
    return _folder(home, "registry.sqlite", create=False)


def quarantine_dir(home: Path | None = None) -> Path:
    """Where ``kaiyuan verify --repair`` moves artifacts whose files no longer match their manifest (never deleted)."""
    return _folder(home, "quarantine")


def runs_dir(home: Path | None = None) -> Path:
    """Training runs' checkpoints (``runs/<stage>-<config hash>/checkpoint-N``); not created here."""
    return _folder(home, "runs", create=False)


def run_key(config: dict[str, Any], stage: str) -> str:
    """A run's identity: its stage and options (all but ``resume``), as recorded in a manifest's config."""
    options = {k: v for k, v in config.items() if k not in ("resume", "stage")}
    return hashlib.sha256(json.dumps([stage, options], sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_dir(stage: str, options: dict[str, Any], home: Path | None = None) -> Path:
    """Where a run keeps its checkpoints (in ``home``, default KAIYUAN_HOME): named by a hash of its options, so
    ``--resume`` finds it."""
    return runs_dir(home) / f"{stage}-{run_key(options, stage)}"


def recorded_run_dir(manifest: dict[str, Any], home: Path | None = None) -> Path | None:
    """The run folder a training stage used for an artifact: :func:`run_dir` of the options its manifest records
    (None when it records no training stage)."""
    config = dict(manifest.get("config") or {})
    stage = config.pop("stage", None)
    if not isinstance(stage, str) or not stage or not all(isinstance(k, str) and k.isidentifier() for k in config):
        return None
    return run_dir(stage, config, home)


def shared_data_dir() -> Path:
    """Third-party datasets for tests and demos (never copied into the repository)."""
    return Path(os.environ.get("KAIYUAN_SHARED_DATA", "../shared/data")).expanduser().resolve()
