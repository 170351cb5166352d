"""``kaiyuan verify``: an fsck of KAIYUAN_HOME.

It hashes every file of every artifact against its manifest (changed, missing and extra files), compares the
registry's rows with the artifact folders (rows without a folder, folders without a row, rows that disagree with
their manifest), finds staging folders of writers that died, half-written training checkpoints, and parents that
are neither registered nor on disk. With ``repair`` it fixes what it can without ever losing a committed artifact:
damaged artifacts are quarantined (moved to ``KAIYUAN_HOME/quarantine`` and un-indexed), never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaiyuan.home import artifacts_dir, kaiyuan_home, registry_path, runs_dir
from kaiyuan.hub.manifest import Manifest, load_checked_manifest
from kaiyuan.hub.registry import (
    STAGING_PREFIX,
    Artifact,
    Registry,
    RegistryCorruptError,
    _last_change,
    artifact_folders,
    check_files,
    quarantine,
    quarantined,
    staging_state,
)
from kaiyuan.progress import stderr_console

# a checkpoint folder without a complete trainer_state.json that changed within this many seconds may still be
# being saved by a live trainer: it is left alone
CHECKPOINT_QUIET_SECONDS = 300.0
PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar when there is at least this much to hash
TRAINER_STATE = "trainer_state.json"


@dataclass
class VerifyConfig:
    """``kaiyuan verify``'s flags (and ``--config`` keys)."""

    repair: bool = field(default=False, metadata={
        "help": "Fix what can be fixed without losing a committed artifact: index folders with valid manifests, "
                "drop rows whose folder is gone, remove staging leftovers and interrupted checkpoints, rebuild a "
                "damaged registry, quarantine (never delete) damaged artifacts.", "flags": ("--repair",)})


@dataclass
class Finding:
    """One thing wrong in KAIYUAN_HOME, and what ``--repair`` does about it (None: it cannot)."""

    kind: str
    target: str
    detail: str
    repair: str | None
    repaired: bool = False
    repair_error: str | None = None
    file: str | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("repair",)}

    def line(self) -> str:
        return f"{self.kind}: {self.target}: {self.detail}"


@dataclass
class VerifyReport:
    home: str
    repair: bool
    artifacts: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]

    @property
    def clean(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "clean": self.clean, "repair": self.repair, "artifacts": self.artifacts,
                "files_hashed": self.files_hashed, "bytes_hashed": self.bytes_hashed,
                "problems": [f.to_dict() for f in self.findings],
                "repaired": sum(f.repaired for f in self.findings), "remaining": len(self.remaining),
                "notes": self.notes}


def _checkpoint_complete(path: Path) -> bool:
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def _expected_bytes(folders: list[tuple[Path, Manifest]]) -> int:
    total = 0
    for folder, manifest in folders:
        for name in manifest.files:
            try:
                total += (folder / name).stat().st_size
            except OSError:
                continue
    return total


def _hash_progress(total: int, enabled: bool) -> Any:

    if not enabled or total < PROGRESS_MIN_BYTES or not stderr_console.is_terminal:  # no bar into a pipe or log
        return nullcontext(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(TextColumn("[bold]verify"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=stderr_console, transient=True)


class _Verifier:
    def __init__(self, repair: bool, checkpoint_quiet_seconds: float, progress: bool) -> None:
        self.home = kaiyuan_home()
        self.report = VerifyReport(home=str(self.home), repair=repair)
        self.quiet = checkpoint_quiet_seconds
        self.progress = progress
        self.registry: Registry | None = None
        self.rows: dict[str, Artifact] = {}
        self.actions: list[tuple[list[Finding], Callable[[], None]]] = []
        self.groups: dict[str, int] = {}  # findings that share one repair (an artifact's files): index in actions

    def rel(self, path: Path) -> str:
        return path.relative_to(self.home).as_posix() if path.is_relative_to(self.home) else str(path)

    def add(self, finding: Finding, action: Callable[[], None] | None = None, group: str | None = None) -> None:
        """Record a finding; ``action`` repairs it (findings with the same ``group`` share one action)."""
        self.report.findings.append(finding)
        if action is None:
            return
        if group is not None and group in self.groups:
            self.actions[self.groups[group]][0].append(finding)
            return
        if group is not None:
            self.groups[group] = len(self.actions)
        self.actions.append(([finding], action))

    # -------------------------------------------------------------------------------------- scanning

    def open_registry(self) -> None:
        path = registry_path()
        try:
            self.registry = Registry(rebuild_if_empty=False)
            self.rows = {a.id: a for a in self.registry.list()}
        except RegistryCorruptError as exc:
            self.registry, self.rows = None, {}
            self.add(Finding("registry-damaged", self.rel(path), f"damaged or not a SQLite database ({exc.detail})",
                             f"move it aside as {path.name}.corrupt-<time> and rebuild the index from the "
                             "manifests on disk"), self.rebuild_registry)

    def rebuild_registry(self) -> None:
        path = registry_path()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-journal", "-wal", "-shm"):
            damaged = path.with_name(path.name + suffix)
            if damaged.exists():
                os.replace(damaged, path.with_name(f"{path.name}{suffix}.corrupt-{stamp}"))
        self.registry = Registry(rebuild_if_empty=False)  # a fresh, empty index: the folders are indexed below

    def scan_staging(self) -> None:
        for path in sorted(artifacts_dir().glob(f"{STAGING_PREFIX}*")):
            stale, why = staging_state(path)
            if stale:
                self.add(Finding("staging", self.rel(path), f"staging folder of a writer that did not finish ({why})",
                                 "remove it (it was never registered)"), lambda p=path: shutil.rmtree(p))
            else:
                self.report.notes.append(f"{self.rel(path)}: {why}; left alone")
        for path in sorted(artifacts_dir().iterdir()):
            if not path.is_dir() and not path.name.startswith(STAGING_PREFIX):
                self.add(Finding("stray", self.rel(path), "a file that is not an artifact folder",
                                 "move it to quarantine/"), lambda p=path: self.quarantine(p, "stray file"))

    def scan_folders(self) -> dict[str, Manifest]:
        valid: list[tuple[Path, Manifest]] = []
        for folder in artifact_folders():
            self.report.artifacts += 1
            manifest, problem = load_checked_manifest(folder)
            if manifest is None:
                self.add(Finding("bad-manifest", self.rel(folder), problem or "no manifest",
                                 "move the folder to quarantine/ and un-index it"),
                         lambda f=folder, why=problem: self.quarantine(f, why or "bad manifest"))
            else:
                valid.append((folder, manifest))
        total = _expected_bytes(valid)
        with _hash_progress(total, self.progress) as bar:
            task = bar.add_task("verify", total=total) if bar is not None else None

            def advance(n: int) -> None:
                if bar is not None:
                    bar.advance(task, n)

            for folder, manifest in valid:
                self.check_folder(folder, manifest, advance)
        return {m.id: m for _, m in valid}

    def check_folder(self, folder: Path, manifest: Manifest, advance: Callable[[int], None]) -> None:
        artifact = Artifact.from_manifest(manifest, folder)
        if self.registry is not None:
            result = self.registry.check(artifact, use_cache=False, progress=advance)
        else:
            result, _ = check_files(artifact, progress=advance)
        self.report.files_hashed += result.files_hashed
        self.report.bytes_hashed += result.bytes_hashed
        if not result.ok:
            repair = f"move {manifest.id} to quarantine/ and un-index it"
            why = "; ".join(result.problems())

            def isolate(f: Path = folder, reason: str = why) -> None:
                self.quarantine(f, reason)

            for name, actual, expected in result.changed:
                self.add(Finding("changed", manifest.id, f"file {name} does not match its manifest (sha256 {actual} "
                                 f"expected {expected})", repair, file=name, expected_sha256=expected,
                                 actual_sha256=actual), isolate, group=manifest.id)
            for name, expected in result.missing:
                self.add(Finding("missing", manifest.id, f"file {name} is missing (its manifest lists it with "
                                 f"sha256 {expected})", repair, file=name, expected_sha256=expected),
                         isolate, group=manifest.id)
            for name in result.extra:
                self.add(Finding("extra", manifest.id, f"file {name} is not in its manifest", repair, file=name),
                         isolate, group=manifest.id)
            return
        row = self.rows.get(manifest.id)
        if row is None:
            empty = " (the registry is empty)" if not self.rows and self.registry is not None else ""
            self.add(Finding("unindexed", manifest.id, f"folder {self.rel(folder)} is not in the registry{empty}",
                             "index it from its manifest"), lambda f=folder: self.reindex(f))
        elif row.path != folder or row.sha256 != manifest.content_sha256() or row.manifest != manifest.to_dict():
            what = (f"its registry row points at {row.path}" if row.path != folder
                    else "its registry row differs from its manifest on disk")
            self.add(Finding("stale-row", manifest.id, what, "index it again from its manifest"),
                     lambda f=folder: self.reindex(f))

    def scan_rows(self, on_disk: dict[str, Manifest]) -> None:
        for artifact_id, row in sorted(self.rows.items()):
            if artifact_id in on_disk or (artifacts_dir() / artifact_id).exists():
                continue
            if row.path.is_dir():  # registered from outside artifacts/: check it where it is
                self.check_folder(row.path, Manifest.from_dict(row.manifest), lambda n: None)
                continue
            kept = quarantined(artifact_id)
            where = f"; a copy is in {self.rel(kept[-1])}" if kept else ""
            self.add(Finding("orphan-row", artifact_id, f"is in the registry, but its folder {row.path} is gone{where}",
                             "drop its registry row"), lambda i=artifact_id: self.unindex(i))

    def scan_parents(self, on_disk: dict[str, Manifest]) -> None:
        """Parents named by the manifests on disk that are neither on disk nor registered with a folder (a row
        without a folder is dropped by --repair, so it does not count)."""
        known = set(on_disk) | {i for i, row in self.rows.items() if row.path.is_dir()}
        for child, manifest in sorted(on_disk.items()):
            for parent in manifest.parents:
                if parent.id in known:
                    continue
                kept = quarantined(parent.id)
                if kept:
                    self.report.notes.append(f"{child}: its parent {parent.id} ({parent.relation}) is in quarantine "
                                             f"({self.rel(kept[-1])})")
                    continue
                self.add(Finding("dangling-parent", child, f"its parent {parent.id} ({parent.relation}) is neither "
                                 "registered nor on disk", None))

    def scan_checkpoints(self) -> None:
        runs = runs_dir()
        if not runs.is_dir():
            return
        now = time.time()
        for checkpoint in sorted(runs.glob("*/checkpoint-*")):
            if not checkpoint.is_dir() or _checkpoint_complete(checkpoint):
                continue
            age = now - _last_change(checkpoint)
            if age < self.quiet:
                self.report.notes.append(
                    f"{self.rel(checkpoint)}: no complete {TRAINER_STATE} yet, last written {age:.0f} s ago — perhaps "
                    f"still being saved; left alone (counted as interrupted after {self.quiet:.0f} s)")
                continue
            self.add(Finding("incomplete-checkpoint", self.rel(checkpoint),
                             f"training checkpoint without a complete {TRAINER_STATE}: its save was interrupted, and "
                             "`--resume` would start from it", "remove it (the run resumes from its last complete "
                             "checkpoint)"), lambda p=checkpoint: shutil.rmtree(p))

    def note_quarantine(self) -> None:
        directory = self.home / "quarantine"
        kept = sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        if kept:
            self.report.notes.append(f"{len(kept)} folder(s) in {self.rel(directory)}/ kept for inspection (delete "
                                     "them when you no longer need them)")

    # -------------------------------------------------------------------------------------- repairing

    def quarantine(self, folder: Path, reason: str) -> None:
        quarantine(folder, reason, self.registry, quiet=True)

    def reindex(self, folder: Path) -> None:
        assert self.registry is not None
        _, skipped = self.registry.reindex([folder])
        if skipped:
            raise RuntimeError(skipped[0][1])

    def unindex(self, artifact_id: str) -> None:
        assert self.registry is not None
        self.registry.remove(artifact_id)

    def repair(self) -> None:
        for findings, action in self.actions:
            try:
                action()
            except Exception as exc:  # a repair that fails is reported; the others still run
                for finding in findings:
                    finding.repair_error = f"{type(exc).__name__}: {exc}"
                continue
            for finding in findings:
                finding.repaired = True


def verify_home(repair: bool = False, checkpoint_quiet_seconds: float = CHECKPOINT_QUIET_SECONDS,
                progress: bool = True) -> VerifyReport:
    """Check KAIYUAN_HOME (see the module's docstring); with ``repair``, fix what can be fixed safely."""
    verifier = _Verifier(repair, checkpoint_quiet_seconds, progress)
    verifier.open_registry()
    verifier.scan_staging()
    on_disk = verifier.scan_folders()
    verifier.scan_rows(on_disk)
    verifier.scan_parents(on_disk)
    verifier.scan_checkpoints()
    verifier.note_quarantine()
    if repair:
        verifier.repair()
    return verifier.report


__all__ = ["CHECKPOINT_QUIET_SECONDS", "Finding", "VerifyReport", "verify_home"]
