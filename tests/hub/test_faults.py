"""Fault injection: SIGKILL at random points of artifact writes, registry updates, training checkpoints and an
export (each in a subprocess, after a delay drawn from a fixed seed), and a full disk (a small tmpfs as KAIYUAN_HOME).

After every fault `kaiyuan verify` must report the home clean or exactly what is left to repair (computed here
independently from the disk), `kaiyuan verify --repair` must make it clean, and no committed artifact may be lost.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from kaiyuan.cli import app, main
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import KILL_POINTS, ArtifactWriter, Registry
from kaiyuan.hub.verify import verify_home
from tests.conftest import write_jsonl

runner = CliRunner()
SEEDS = (11, 23, 47, 90)

WRITER = r"""
import random, sys
from kaiyuan.hub.registry import ArtifactWriter
seed = int(sys.argv[1])
rng = random.Random(seed)
for i in range(100_000):
    with ArtifactWriter("dataset", f"w{seed}-{i}", license="CC0-1.0", source="fault test") as writer:
        for part in range(3):
            (writer.path / f"part-{part}.bin").write_bytes(rng.randbytes(rng.randint(1, 300_000)))
    print(writer.artifact.id, flush=True)
"""

REGISTRY_UPDATER = r"""
from kaiyuan.hub.registry import Registry, artifact_folders
registry = Registry()
folders = artifact_folders()
print("ready", flush=True)
while True:
    for folder in folders:
        registry.remove(folder.name)
        registry.reindex(folders)  # one transaction rewriting every row
"""


def start(home, *args, env=None):
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KAIYUAN_HOME": str(home), **(env or {})}, start_new_session=True)


def kill(proc):
    """SIGKILL the child and everything it started; returns its stdout."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate()
    return out


def wait_for(predicate, proc, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("timed out waiting for the child")


def checkpoint_complete(path):
    try:
        return "global_step" in json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False


def left_to_repair(home):
    """What a crash can leave, read straight from the disk: (kind, target) as `kaiyuan verify` names them."""
    artifacts = home / "artifacts"
    staging = {("staging", f"artifacts/{p.name}") for p in artifacts.glob(".staging-*")}
    rows = set()
    if (home / "registry.sqlite").exists():
        with sqlite3.connect(home / "registry.sqlite") as conn:
            rows = {r[0] for r in conn.execute("SELECT id FROM artifacts")}
    folders = {p.name for p in artifacts.iterdir() if p.is_dir() and not p.name.startswith(".")}
    unindexed = {("unindexed", f) for f in folders - rows}
    incomplete = {("incomplete-checkpoint", p.relative_to(home).as_posix())
                  for p in (home / "runs").glob("*/checkpoint-*") if not checkpoint_complete(p)}
    return staging | unindexed | incomplete, folders


def check_after_fault(home, committed, allowed):
    """verify reports exactly what the disk shows; --repair makes it clean; nothing committed is lost. Returns the
    (kind, target) that were repaired."""
    expected, folders = left_to_repair(home)
    report = verify_home(checkpoint_quiet_seconds=0)
    found = {(f.kind, f.target) for f in report.findings}
    assert found == expected, report.to_dict()
    assert {kind for kind, _ in found} <= allowed
    if not found:
        result = runner.invoke(app, ["verify"])
        assert result.exit_code == 0 and result.output.startswith("clean: "), result.output
    repaired = verify_home(repair=True, checkpoint_quiet_seconds=0)
    assert repaired.clean and all(f.repaired for f in repaired.findings), repaired.to_dict()
    result = runner.invoke(app, ["verify", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["problems"] == [], result.output
    registry = Registry()
    for artifact_id in set(committed) | folders:  # committed ones, and any a crash left unregistered: all kept
        registry.ensure_intact(registry.get(artifact_id))
    return found


# ------------------------------------------------------------------------------------------------ SIGKILL


def test_sigkill_during_artifact_writes(home):
    home.mkdir(parents=True)
    committed, repaired = [], set()
    for seed in SEEDS:  # random points
        proc = start(home, "-c", WRITER, str(seed))
        time.sleep(random.Random(seed).uniform(0.4, 1.5))
        committed += kill(proc).split()
        assert proc.returncode == -signal.SIGKILL
        repaired |= {kind for kind, _ in check_after_fault(home, committed, {"staging", "unindexed"})}
    assert len(committed) >= len(SEEDS)
    print(f"artifact writes: {len(SEEDS)} SIGKILLs at random points ({len(committed)} committed before them, "
          f"left to repair: {sorted(repaired) or 'nothing'})")
    expected = {"staging-filled": {"staging"}, "manifest-written": {"staging"}, "renamed": {"unindexed"},
                "registered": set()}
    for number, point in enumerate(KILL_POINTS):  # and each step of a publish, for certain (new content each time)
        proc = start(home, "-c", WRITER, str(100 + number), env={"KAIYUAN_KILL_AT": point})
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL and out == "", err
        found = check_after_fault(home, committed, {"staging", "unindexed"})
        assert {kind for kind, _ in found} == expected[point]
        assert len(found) == len(expected[point])


def test_sigkill_during_registry_updates(home):
    for i in range(12):
        with ArtifactWriter("dataset", f"d{i}", license="CC0-1.0", source="test") as writer:
            (writer.path / "data.jsonl").write_text(f"{i}\n" * 2000)
    committed = [a.id for a in Registry().list()]
    for seed in SEEDS[:3]:
        proc = start(home, "-c", REGISTRY_UPDATER)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(random.Random(seed).uniform(0.05, 0.6))
        kill(proc)
        with sqlite3.connect(home / "registry.sqlite") as conn:  # the hot journal is rolled back: not damaged
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = check_after_fault(home, committed, {"unindexed"})
        assert len(found) <= 1  # at most the one row removed and not yet re-added
        print(f"registry update SIGKILL (seed {seed}): left to repair: {sorted(found) or 'nothing'}")
        assert sorted(a.id for a in Registry().list()) == sorted(committed)


def test_sigkill_during_training_checkpoints(tiny, home):
    from kaiyuan.data.datasets import register_dataset

    rows = [{"messages": [{"role": "user", "content": f"Convert March {d}, 19{d + 10}"},
                          {"role": "assistant", "content": f"19{d + 10}-03-{d:02d}"}]} for d in range(1, 17)]
    data = register_dataset(rows, "dates", "CC0-1.0", "test")
    args = ["-m", "kaiyuan.cli", "train", "sft", "--model", tiny.id, "--data", data.id, "--max-steps", "10",
            "--batch-size", "2", "--checkpoint-steps", "1", "--learning-rate", "0.01", "--seed", "7",
            "--logging-steps", "1", "--resume", "--json"]
    committed = [tiny.id, data.id]

    def checkpoints():
        return sorted((home / "runs").glob("*/checkpoint-*"))

    interrupted = 0
    for seed in SEEDS[:2]:
        rng = random.Random(seed)
        before = len(checkpoints())
        target, delay = before + rng.randint(1, 3), rng.choice([0.0, 0.001, 0.01, 0.05])
        proc = start(home, *args)
        assert wait_for(lambda n=target: len(checkpoints()) >= n, proc), proc.communicate()
        time.sleep(delay)
        kill(proc)
        assert proc.returncode == -signal.SIGKILL
        interrupted += sum(not checkpoint_complete(p) for p in checkpoints())
        young = runner.invoke(app, ["verify"])  # a checkpoint being saved just now is left alone by default
        assert all(line.startswith("note: runs/") for line in young.output.splitlines()
                   if "checkpoint-" in line), young.output
        check_after_fault(home, committed, {"incomplete-checkpoint", "staging", "unindexed"})
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env={**os.environ, "KAIYUAN_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr
    adapter = json.loads(done.stdout)["artifact_id"]
    assert check_after_fault(home, [*committed, adapter], set()) == set()
    assert json.loads(done.stdout)["metrics"]["checkpoints"] == [f"checkpoint-{i}" for i in range(1, 11)]
    print(f"training: {len(SEEDS[:2])} SIGKILLs, {interrupted} checkpoint(s) interrupted mid-save")


def test_sigkill_during_an_export(tiny, home):
    import torch
    from peft import LoraConfig, get_peft_model

    from kaiyuan.models import load_model

    def adapter(seed):
        """A LoRA adapter with random B matrices: each seed merges into a different model."""
        loaded = load_model(tiny)
        torch.manual_seed(seed)
        model = get_peft_model(loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        init_lora_weights=False))
        with ArtifactWriter("adapter", f"tiny-lora-{seed}", license="Apache-2.0", source="test",
                            parents=[Parent(tiny.id, "adapter")]) as writer:
            model.save_pretrained(writer.path)
            loaded.tokenizer.save_pretrained(writer.path)
        return writer.artifact.id

    def export(adapter_id, **env):
        return start(home, "-m", "kaiyuan.cli", "export", adapter_id, "--to", "merged", "--json", env=env)

    committed, found = [tiny.id], []
    artifacts = home / "artifacts"
    for seed in SEEDS[:2]:  # killed while the merged model is being written, or just after
        committed.append(adapter(seed))
        proc = export(committed[-1])
        assert wait_for(lambda: any(artifacts.glob(".staging-*")), proc), proc.communicate()
        time.sleep(random.Random(seed).uniform(0.0, 0.05))
        kill(proc)
        assert proc.returncode == -signal.SIGKILL
        found += sorted(check_after_fault(home, committed, {"staging", "unindexed"}))
    committed.append(adapter(99))
    proc = export(committed[-1], KAIYUAN_KILL_AT="renamed")  # and between the rename and the registry row
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    [(kind, merged_id)] = check_after_fault(home, committed, {"unindexed"})
    assert kind == "unindexed"
    from kaiyuan.export.export import ExportConfig, run_export

    again = run_export(ExportConfig(model=committed[-1], to="merged"))
    assert again.artifact.id == merged_id  # the folder the crash left was indexed, and is reused
    assert check_after_fault(home, [*committed, merged_id], set()) == set()
    print(f"export: 3 SIGKILLs, left to repair: {found + [(kind, merged_id)]}")


# ------------------------------------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """An 8 MiB tmpfs as KAIYUAN_HOME (needs root and mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    home = mount / "home"
    monkeypatch.setenv("KAIYUAN_HOME", str(home))
    yield home
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk, leave=0):
    """Fill the disk, then free ``leave`` bytes."""
    filler = disk / f"filler-{time.monotonic_ns()}.bin"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush when the disk is full
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    try:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    except OSError:
        pass
    return filler


def run_main(monkeypatch, capsys, *args):
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["kaiyuan", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, "".join(captured.err.split())  # the console wraps long lines


def squeezed(text):
    return "".join(text.split())


def assert_consistent(home, kept):
    report = verify_home()
    assert report.findings == [], report.to_dict()
    assert sorted(p.name for p in (home / "artifacts").iterdir()) == sorted(kept)
    registry = Registry()
    assert sorted(a.id for a in registry.list()) == sorted(kept)
    for artifact_id in kept:
        registry.ensure_intact(registry.get(artifact_id))


def test_a_full_disk_fails_every_write_clearly_and_keeps_the_home_consistent(small_disk, tmp_path, monkeypatch,
                                                                             capsys):
    home = small_disk
    small = write_jsonl(tmp_path / "small.jsonl", [{"instruction": "hi", "output": "hello"}])
    code, out, _ = run_main(monkeypatch, capsys, "data", "convert", str(small), str(tmp_path / "small.out.jsonl"),
                            "--register", "small", "--license", "CC0-1.0", "--json")
    assert code == 0
    kept = [json.loads(out)["dataset_id"]]
    artifacts = home / "artifacts"
    tail = "; nothing was registered and its partial files were removed — free some space and run it again"

    filler = fill(home.parent, leave=64 * 1024)
    code, _, err = run_main(monkeypatch, capsys, "models", "create-tiny")
    assert code == 2
    err = err[err.index("error:"):]  # after transformers' progress bars
    written = re.fullmatch(squeezed(
        r"error: no space left on device while writing model artifact 'tiny-llama' \((\d) file\(s\), ([\d.]+ K?B) "
        rf"written so far\) in {re.escape(str(artifacts))}: Error while serializing: I/O error: No space left on "
        r"device \(os error 28\)") + re.escape(squeezed(tail)), err)
    assert written, err
    assert_consistent(home, kept)

    big = write_jsonl(tmp_path / "big.jsonl", [{"instruction": f"question {i} " * 20, "output": "answer " * 20}
                                               for i in range(400)])
    no_byte_left = fill(home.parent)
    code, _, err = run_main(monkeypatch, capsys, "data", "convert", str(big), str(tmp_path / "big.out.jsonl"),
                            "--register", "big")
    assert code == 2
    assert err == squeezed(f"error: no space left on device while writing dataset artifact 'big' (1 file(s), 0 B "
                           f"written so far) in {artifacts}: [Errno 28] No space left on device{tail}")
    assert_consistent(home, kept)
    no_byte_left.unlink()

    original = Registry.add

    def add_on_a_disk_that_just_filled(self, manifest, path):
        fill(home.parent)
        return original(self, manifest, path)

    with monkeypatch.context() as patched:
        patched.setattr(Registry, "add", add_on_a_disk_that_just_filled)
        late = write_jsonl(tmp_path / "late.jsonl", [{"instruction": "late", "output": "yes"}])
        code, _, err = run_main(monkeypatch, capsys, "data", "convert", str(late), str(tmp_path / "late.out.jsonl"),
                                "--register", "late")
    assert code == 2
    assert err == squeezed(f"error: no space left on device while writing dataset artifact 'late' (the registry "
                           f"{home / 'registry.sqlite'}) in {artifacts}: database or disk is full{tail}")
    for extra in home.parent.glob("filler-*.bin"):
        if extra != filler:
            extra.unlink()
    assert_consistent(home, kept)

    filler.unlink()  # space again: the same commands work, and the home is still consistent
    code, out, _ = run_main(monkeypatch, capsys, "models", "create-tiny", "--json")
    assert code == 0
    kept.append(json.loads(out)["id"])
    assert_consistent(home, kept)


def test_a_full_disk_before_the_registry_exists(small_disk, monkeypatch, capsys):
    small_disk.mkdir()
    fill(small_disk.parent)
    code, _, err = run_main(monkeypatch, capsys, "models", "list")
    assert code == 2
    assert err == squeezed(f"error: no space left on device writing the registry {small_disk / 'registry.sqlite'} "
                           "(database or disk is full); free some space and run it again (nothing was changed)")
