"""KAIYUAN_HOME: where the registry, artifacts and caches live (default ``~/.kaiyuan``)."""

from __future__ import annotations

import os
from pathlib import Path


def kaiyuan_home() -> Path:
    """The home directory, created on first use. ``KAIYUAN_HOME`` overrides the default."""
    home = Path(os.environ.get("KAIYUAN_HOME") or Path.home() / ".kaiyuan").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def artifacts_dir() -> Path:
    path = kaiyuan_home() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    path = kaiyuan_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return kaiyuan_home() / "registry.sqlite"


def quarantine_dir() -> Path:
    """Where ``kaiyuan verify --repair`` moves artifacts whose files no longer match their manifest (never deleted)."""
    path = kaiyuan_home() / "quarantine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Training runs' checkpoints (``runs/<stage>-<config hash>/checkpoint-N``); not created here."""
    return kaiyuan_home() / "runs"


def shared_data_dir() -> Path:
    """Third-party datasets for tests and demos (never copied into the repository)."""
    return Path(os.environ.get("KAIYUAN_SHARED_DATA", "../shared/data")).expanduser().resolve()
