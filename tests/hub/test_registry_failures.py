"""A damaged, truncated, empty or missing registry; staging folders of killed writers; a full disk while writing."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kaiyuan.cli import app, main
from kaiyuan.hub.registry import (
    HOST_TAG,
    STAGING_PATTERN,
    ArtifactWriter,
    DiskFullError,
    Registry,
    RegistryCorruptError,
)

runner = CliRunner()


def write(name, text):
    with ArtifactWriter("dataset", name, license="CC0-1.0", source="test") as writer:
        (writer.path / "data.jsonl").write_text(text)
    return writer.artifact


def damaged(path, detail):
    return (f"the registry {path} is damaged or not a SQLite database ({detail}); rebuild it from the manifests of "
            "the artifacts on disk with `kaiyuan verify --repair` (the damaged file is kept as "
            "registry.sqlite.corrupt-<time>)")


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["kaiyuan", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, "".join(capsys.readouterr().err.split())  # the console wraps long lines


def squeezed(text):
    return "".join(text.split())


def test_a_garbage_registry_is_a_clear_error_naming_the_file(home, monkeypatch, capsys):
    write("a", "a\n")
    path = home / "registry.sqlite"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(RegistryCorruptError) as refused:
        Registry()
    assert str(refused.value) == damaged(path, "file is not a database")
    code, err = run_main(monkeypatch, capsys, "models", "list")
    assert code == 2 and err == squeezed(f"error: {damaged(path, 'file is not a database')}")


def test_a_truncated_registry_is_a_clear_error(home, monkeypatch, capsys):
    for i in range(40):
        write(f"d{i}", f"{i}\n")
    path = home / "registry.sqlite"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryCorruptError) as refused:
        Registry()
    assert str(refused.value) == damaged(path, "database disk image is malformed")
    code, err = run_main(monkeypatch, capsys, "models", "show", "d1")
    assert code == 2 and err == squeezed(f"error: {damaged(path, 'database disk image is malformed')}")


def test_verify_repair_rebuilds_a_damaged_registry_from_the_manifests(home):
    made = [write(f"d{i}", f"{i}\n") for i in range(4)]
    path = home / "registry.sqlite"
    path.write_bytes(b"garbage" * 1000)
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == [
        "registry-damaged: registry.sqlite: damaged or not a SQLite database (file is not a database)",
        "  --repair would: move it aside as registry.sqlite.corrupt-<time> and rebuild the index from the manifests "
        "on disk"]
    result = runner.invoke(app, ["verify", "--repair"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("5 problem(s), 5 repaired, now clean: 4 artifact(s)")
    rebuilt = {a.id: a for a in Registry().list()}
    assert set(rebuilt) == {a.id for a in made}
    assert all(rebuilt[a.id].manifest == a.manifest and rebuilt[a.id].path == a.path for a in made)
    [kept] = [p for p in home.iterdir() if p.name.startswith("registry.sqlite.corrupt-")]
    assert kept.read_bytes() == b"garbage" * 1000
    assert runner.invoke(app, ["verify"]).output.startswith("clean: 4 artifact(s)")


@pytest.mark.parametrize("how", ["zero bytes", "deleted"])
def test_an_empty_or_missing_registry_next_to_artifacts_is_rebuilt(home, capsys, how):
    made = [write(f"d{i}", f"{i}\n") for i in range(3)]
    path = home / "registry.sqlite"
    path.write_bytes(b"") if how == "zero bytes" else path.unlink()
    capsys.readouterr()
    assert sorted(a.id for a in Registry().list()) == sorted(a.id for a in made)
    assert capsys.readouterr().err == (
        f"kaiyuan: the registry {path} was empty, but 3 artifact folder(s) with a manifest are in "
        f"{home / 'artifacts'}: re-indexed 3 from their manifests (`kaiyuan verify` checks their files)\n")
    assert Registry().get("d1").id == made[1].id
    assert capsys.readouterr().err == ""  # once


def test_verify_reports_an_empty_registry_and_repair_reindexes(home):
    made = [write(f"d{i}", f"{i}\n") for i in range(2)]
    (home / "registry.sqlite").write_bytes(b"")
    report = runner.invoke(app, ["verify"])
    assert report.exit_code == 1
    for artifact in made:
        assert (f"unindexed: {artifact.id}: folder artifacts/{artifact.id} is not in the registry (the registry is "
                "empty)") in report.output.splitlines()
    assert runner.invoke(app, ["verify", "--repair"]).exit_code == 0
    assert sorted(a.id for a in Registry(rebuild_if_empty=False).list()) == sorted(a.id for a in made)


# ------------------------------------------------------------------------------------------------ staging


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_staging_folders_name_their_writer(home):
    with ArtifactWriter("dataset", "x", license="CC0-1.0", source="test") as writer:
        match = STAGING_PATTERN.match(writer.path.name)
        assert match and match["host"] == HOST_TAG and int(match["pid"]) == os.getpid()
        (writer.path / "data.jsonl").write_text("x\n")


def test_stale_staging_folders_are_removed_but_not_a_live_writers(home, capsys):
    artifacts = home / "artifacts"
    artifacts.mkdir(parents=True)
    pid = dead_pid()
    other_host = "0" * 8 if HOST_TAG != "0" * 8 else "1" * 8
    folders = {
        "dead": artifacts / f".staging-{HOST_TAG}-{pid}-{'a' * 32}",
        "live": artifacts / f".staging-{HOST_TAG}-{os.getpid()}-{'b' * 32}",
        "old legacy": artifacts / f".staging-{'c' * 32}",
        "young legacy": artifacts / f".staging-{'d' * 32}",
        "other host": artifacts / f".staging-{other_host}-{pid}-{'e' * 32}",
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half written")
    two_days_ago = 1_600_000_000
    for path in (folders["old legacy"] / "model.safetensors", folders["old legacy"]):
        os.utime(path, (two_days_ago, two_days_ago))
    capsys.readouterr()
    write("next", "next\n")
    left = sorted(p.name for p in artifacts.glob(".staging-*"))
    assert left == sorted(folders[k].name for k in ("live", "young legacy", "other host"))
    removed = sorted([folders["dead"], folders["old legacy"]], key=lambda p: p.name)
    why = {folders["dead"]: f"its writer (pid {pid}) is gone"}
    import time

    hours = (time.time() - two_days_ago) / 3600
    why[folders["old legacy"]] = f"untouched for {hours:.0f} h"
    assert capsys.readouterr().err == (
        "kaiyuan: removed 2 stale staging folder(s) of writers that did not finish: "
        + ", ".join(f"{p.name} ({why[p]})" for p in removed) + "\n")


# ------------------------------------------------------------------------------------------------ a full disk


def test_a_full_disk_inside_the_block_is_a_clear_error_and_leaves_nothing(home):
    write("kept", "kept\n")
    with pytest.raises(DiskFullError) as refused:
        with ArtifactWriter("dataset", "big", license="CC0-1.0", source="test") as writer:
            (writer.path / "part-1.jsonl").write_text("written\n")
            failure = OSError(errno.ENOSPC, "No space left on device", str(writer.path / "part-2.jsonl"))
            raise failure
    assert str(refused.value) == (
        f"no space left on device while writing dataset artifact 'big' (file part-2.jsonl) in {home / 'artifacts'}: "
        f"{failure}; nothing was registered and its partial files were removed — free some space and run it again")
    assert [p.name for p in (home / "artifacts").iterdir()] == [Registry().get("kept").id]


def test_a_library_error_that_means_a_full_disk_says_how_far_it_got(home):
    message = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    with pytest.raises(DiskFullError) as refused:
        with ArtifactWriter("model", "tiny", license="Apache-2.0", source="test") as writer:
            (writer.path / "config.json").write_text("{}")
            (writer.path / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError(message)
    assert str(refused.value) == (
        f"no space left on device while writing model artifact 'tiny' (2 file(s), 9 B written so far) in "
        f"{home / 'artifacts'}: {message}; nothing was registered and its partial files were removed — free some "
        "space and run it again")
    assert list((home / "artifacts").iterdir()) == []


def test_a_registry_that_cannot_take_the_row_leaves_no_folder_behind(home, monkeypatch):
    write("kept", "kept\n")

    def full(conn, manifest, path):
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched, pytest.raises(DiskFullError) as refused:
        patched.setattr(Registry, "_insert", staticmethod(full))
        write("late", "late\n")
    assert str(refused.value) == (
        f"no space left on device while writing dataset artifact 'late' (the registry {home / 'registry.sqlite'}) in "
        f"{home / 'artifacts'}: database or disk is full; nothing was registered and its partial files were removed "
        "— free some space and run it again")
    assert [p.name for p in (home / "artifacts").iterdir()] == [Registry().get("kept").id]
    assert runner.invoke(app, ["verify"]).exit_code == 0


def test_other_errors_pass_through_unchanged(home):
    with pytest.raises(RuntimeError, match="^boom$"):
        with ArtifactWriter("dataset", "broken", license="CC0-1.0", source="test") as writer:
            (writer.path / "data.jsonl").write_text("partial")
            raise RuntimeError("boom")
    assert list((home / "artifacts").iterdir()) == []
