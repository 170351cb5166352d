"""Registered artifacts are checked against their manifest before use, and `kaiyuan verify` is an fsck of the home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext

import pytest
from typer.testing import CliRunner

import kaiyuan.hub.registry as registry_module
from kaiyuan.cli import app
from kaiyuan.data.datasets import register_dataset
from kaiyuan.hub import verify as verify_module
from kaiyuan.hub.manifest import Parent, file_sha256
from kaiyuan.hub.registry import HOST_TAG, ArtifactCorruptError, ArtifactWriter, Registry, human_size
from kaiyuan.models import load_model, resolve_model
from tests.conftest import write_jsonl

runner = CliRunner()


def flip_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def write(name, text, parents=()):
    with ArtifactWriter("dataset", name, license="CC0-1.0", source="test", parents=list(parents)) as writer:
        (writer.path / "data.jsonl").write_text(text)
    return writer.artifact


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def corrupted_message(artifact, name="model.safetensors"):
    return (f"artifact {artifact.id}: file {name} does not match its manifest (sha256 "
            f"{file_sha256(artifact.path / name)} expected {artifact.manifest['files'][name]}); run `kaiyuan verify`")


# ------------------------------------------------------------------------------------------------ verified use


def test_a_flipped_byte_in_the_weights_is_refused_before_loading(tiny):
    flip_byte(tiny.path / "model.safetensors")
    message = corrupted_message(tiny)
    for use in (lambda: load_model(tiny.id), lambda: load_model(tiny), lambda: resolve_model("tiny-llama"),
                lambda: resolve_model(tiny.id)):
        with pytest.raises(ArtifactCorruptError) as refused:
            use()
        assert str(refused.value) == message


def test_serving_and_eval_refuse_a_corrupted_model(tiny, tmp_path):
    from kaiyuan.serve.engines.transformers_engine import TransformersEngine

    flip_byte(tiny.path / "model.safetensors")
    with pytest.raises(ArtifactCorruptError) as refused:
        TransformersEngine.from_reference("tiny-llama")
    assert str(refused.value) == corrupted_message(tiny)
    data = write_jsonl(tmp_path / "held.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "hello"}]}])
    result = runner.invoke(app, ["eval", "tiny-llama", "--data", str(data)])
    assert isinstance(result.exception, ArtifactCorruptError) and str(result.exception) == corrupted_message(tiny)
    assert [a.kind for a in Registry().list()].count("eval") == 0


def test_a_corrupted_artifact_is_not_registered_as_a_parent(tiny, home):
    flip_byte(tiny.path / "model.safetensors")
    with pytest.raises(ArtifactCorruptError) as refused:
        register_dataset([{"text": "generated"}], "generated", "CC0-1.0", "test", parents_of=[tiny.id])
    assert str(refused.value) == f"cannot register dataset 'generated': its parent {corrupted_message(tiny)}"
    assert [a.id for a in Registry().list()] == [tiny.id]
    assert sorted(p.name for p in (home / "artifacts").iterdir()) == [tiny.id]


def test_missing_and_extra_files_are_refused(tiny):
    expected = tiny.manifest["files"]["generation_config.json"]
    (tiny.path / "generation_config.json").unlink()
    (tiny.path / "pytorch_model.bin").write_bytes(b"smuggled in")
    with pytest.raises(ArtifactCorruptError) as refused:
        load_model(tiny.id)
    assert str(refused.value) == (
        f"artifact {tiny.id}: file generation_config.json is missing (its manifest lists it with sha256 {expected}); "
        "file pytorch_model.bin is not in its manifest; run `kaiyuan verify`")


def test_the_check_is_cached_by_file_stat_and_sees_every_change(tiny, monkeypatch):
    hashed = []
    original = registry_module.file_sha256

    def counting(path, *args, **kwargs):
        hashed.append(path.name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(registry_module, "file_sha256", counting)
    registry = Registry()
    load_model(tiny.id)
    registry.ensure_intact(tiny)
    assert hashed == []  # hashed while it was written: the check was cached at publish
    weights = tiny.path / "model.safetensors"
    old = weights.stat().st_mtime_ns - 10_000_000_000
    os.utime(weights, ns=(old, old))  # same bytes, new stat: hashed once more, then cached again
    registry.ensure_intact(tiny)
    registry.ensure_intact(tiny)
    assert hashed == ["model.safetensors"]
    flip_byte(weights)
    os.utime(weights, ns=(old, old))  # same size and mtime as the cached check: the ctime still differs
    with pytest.raises(ArtifactCorruptError):
        registry.ensure_intact(tiny)
    assert hashed == ["model.safetensors", "model.safetensors"]


def test_writing_identical_content_replaces_a_damaged_copy(home):
    first = write("d", "one\n")
    (first.path / "data.jsonl").write_text("two\n")
    second = write("d", "one\n")
    assert second.id == first.id and (second.path / "data.jsonl").read_text() == "one\n"
    Registry().ensure_intact(second)
    [kept] = [p for p in (home / "quarantine").iterdir() if p.is_dir()]
    assert kept.name.startswith(first.id + "-") and (kept / "data.jsonl").read_text() == "two\n"
    reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())
    assert reason["artifact"] == first.id and reason["reason"].startswith(
        f"found in the way of a new copy of {first.id}: file data.jsonl does not match its manifest")


def test_a_folder_a_crash_left_unregistered_is_indexed_again_not_rewritten(home):
    write("other", "other\n")
    first = write("d", "one\n")
    inode = (first.path / "data.jsonl").stat().st_ino
    Registry().remove(first.id)
    again = write("d", "one\n")
    assert again.id == first.id and (again.path / "data.jsonl").stat().st_ino == inode
    assert Registry().find_id(first.id) is not None


# ------------------------------------------------------------------------------------------------ kaiyuan verify


def test_verify_a_clean_home(tiny, home):
    result = runner.invoke(app, ["verify"])
    size = sum((tiny.path / name).stat().st_size for name in tiny.manifest["files"])
    assert result.exit_code == 0, result.output
    assert result.output == f"clean: 1 artifact(s), 6 file(s), {human_size(size)} checked in {home}\n"
    data = json.loads(runner.invoke(app, ["verify", "--json"]).output)
    assert data == {"home": str(home), "clean": True, "repair": False, "artifacts": 1, "files_hashed": 6,
                    "bytes_hashed": size, "problems": [], "repaired": 0, "remaining": 0, "notes": []}


def damaged_home(home):
    """A home with one of each problem; returns what was made."""
    made = {name: write(name, f"{name}\n") for name in ("changed", "extra", "orphan", "unindexed")}
    made["dangling"] = write("dangling", "dangling\n", parents=[Parent("model-000000000000", "finetune")])
    (made["changed"].path / "data.jsonl").write_text("tampered\n")
    (made["extra"].path / "notes.txt").write_text("not in the manifest")
    shutil.rmtree(made["orphan"].path)
    Registry().remove(made["unindexed"].id)
    artifacts = home / "artifacts"
    stale = artifacts / f".staging-{HOST_TAG}-{dead_pid()}-{'a' * 32}"
    stale.mkdir()
    (stale / "data.jsonl").write_text("half")
    live = artifacts / f".staging-{HOST_TAG}-{os.getpid()}-{'b' * 32}"
    live.mkdir()
    bad = artifacts / "dataset-ffffffffffff"
    bad.mkdir()
    (bad / "data.jsonl").write_text("no manifest")
    run = home / "runs" / "sft-0123456789ab"
    (run / "checkpoint-1").mkdir(parents=True)
    (run / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}')
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"half")
    old = 1_600_000_000
    for path in (run / "checkpoint-2", run / "checkpoint-2" / "adapter_model.safetensors"):
        os.utime(path, (old, old))
    return made, stale, live, bad, run


def test_verify_reports_exactly_what_is_wrong_and_repair_fixes_it(home):
    made, stale, live, bad, run = damaged_home(home)
    changed, extra, orphan, unindexed = (made[k] for k in ("changed", "extra", "orphan", "unindexed"))
    tampered = file_sha256(changed.path / "data.jsonl")
    pid = stale.name.split("-")[2]
    quarantine_line = "move {} to quarantine/ and un-index it"
    expected = {
        ("staging", f"artifacts/{stale.name}", f"staging folder of a writer that did not finish (its writer (pid "
         f"{pid}) is gone)", "remove it (it was never registered)"),
        ("changed", changed.id, f"file data.jsonl does not match its manifest (sha256 {tampered} expected "
         f"{changed.manifest['files']['data.jsonl']})", quarantine_line.format(changed.id)),
        ("extra", extra.id, "file notes.txt is not in its manifest", quarantine_line.format(extra.id)),
        ("bad-manifest", f"artifacts/{bad.name}", "it has no manifest.json",
         "move the folder to quarantine/ and un-index it"),
        ("unindexed", unindexed.id, f"folder artifacts/{unindexed.id} is not in the registry",
         "index it from its manifest"),
        ("orphan-row", orphan.id, f"is in the registry, but its folder {orphan.path} is gone", "drop its registry row"),
        ("dangling-parent", made["dangling"].id, "its parent model-000000000000 (finetune) is neither registered nor "
         "on disk", None),
        ("incomplete-checkpoint", "runs/sft-0123456789ab/checkpoint-2", "training checkpoint without a complete "
         "trainer_state.json: its save was interrupted, and `--resume` would start from it",
         "remove it (the run resumes from its last complete checkpoint)"),
    }
    result = runner.invoke(app, ["verify", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert {(p["kind"], p["target"], p["detail"], p["repair"]) for p in report["problems"]} == expected
    assert len(report["problems"]) == len(expected) and report["clean"] is False
    assert report["notes"] == [f"artifacts/{live.name}: being written by pid {os.getpid()}; left alone"]
    assert report["artifacts"] == 5  # folders: changed, extra, unindexed, dangling, the one without manifest

    text = runner.invoke(app, ["verify"])
    assert text.exit_code == 1
    lines = text.output.splitlines()
    for kind, target, detail, repair in expected:
        at = lines.index(f"{kind}: {target}: {detail}")
        assert lines[at + 1] == (f"  --repair would: {repair}" if repair else "  --repair cannot fix this")
    # hashed: data.jsonl of changed, extra, unindexed, dangling ("tampered\n", "extra\n", "unindexed\n", "dangling\n")
    assert lines[-2] == f"8 problem(s): 5 artifact(s), 4 file(s), 34 B checked in {home}; `kaiyuan verify --repair` " \
                        "fixes 7 of them"

    repaired = runner.invoke(app, ["verify", "--repair"])
    assert repaired.exit_code == 1  # the dangling parent cannot be repaired
    assert "  repaired: index it from its manifest" in repaired.output
    assert repaired.output.splitlines()[-2].startswith("8 problem(s), 7 repaired, 1 remain: ")
    registry = Registry()
    assert registry.find_id(unindexed.id) is not None and registry.find_id(orphan.id) is None
    assert registry.find_id(changed.id) is None and registry.find_id(extra.id) is None
    assert not stale.exists() and live.exists() and not (run / "checkpoint-2").exists()
    assert (run / "checkpoint-1").exists()
    kept = sorted(p.name.rsplit("-", 2)[0] for p in (home / "quarantine").iterdir() if p.is_dir())
    assert kept == sorted([changed.id, extra.id, bad.name])  # quarantined, never deleted
    assert (home / "quarantine" / next(p for p in os.listdir(home / "quarantine") if p.startswith(changed.id)
                                       and not p.endswith(".json")) / "data.jsonl").read_text() == "tampered\n"

    after = json.loads(runner.invoke(app, ["verify", "--json"]).output)
    assert [(p["kind"], p["target"]) for p in after["problems"]] == [("dangling-parent", made["dangling"].id)]
    assert after["notes"][-1] == "3 folder(s) in quarantine/ kept for inspection (delete them when you no longer " \
                                 "need them)"


def test_a_young_incomplete_checkpoint_is_left_alone(home):
    checkpoint = home / "runs" / "sft-0123456789ab" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_st')  # being written
    report = verify_module.verify_home(repair=True)
    assert report.findings == [] and checkpoint.exists()
    assert report.notes[0].startswith("runs/sft-0123456789ab/checkpoint-3: no complete trainer_state.json yet, last "
                                      "written ")
    assert verify_module.verify_home(repair=True, checkpoint_quiet_seconds=0).findings[0].repaired
    assert not checkpoint.exists()


def test_a_quarantined_parent_is_a_note_not_a_problem(home):
    parent = write("parent", "p\n")
    child = write("child", "c\n", parents=[Parent(parent.id, "dataset")])
    (parent.path / "data.jsonl").write_text("damaged\n")
    assert runner.invoke(app, ["verify", "--repair"]).exit_code == 0
    report = verify_module.verify_home()
    assert report.clean and report.notes[0].startswith(f"{child.id}: its parent {parent.id} (dataset) is in "
                                                       f"quarantine (quarantine/{parent.id}-")


def test_a_progress_bar_only_for_large_homes_on_a_terminal(monkeypatch):
    from rich.progress import Progress

    from kaiyuan.progress import stderr_console

    monkeypatch.setattr(type(stderr_console), "is_terminal", property(lambda self: False))
    assert isinstance(verify_module._hash_progress(verify_module.PROGRESS_MIN_BYTES, True), nullcontext)  # a pipe
    monkeypatch.setattr(type(stderr_console), "is_terminal", property(lambda self: True))
    assert isinstance(verify_module._hash_progress(verify_module.PROGRESS_MIN_BYTES, True), Progress)
    assert isinstance(verify_module._hash_progress(verify_module.PROGRESS_MIN_BYTES - 1, True), nullcontext)
    assert isinstance(verify_module._hash_progress(verify_module.PROGRESS_MIN_BYTES, False), nullcontext)


def test_the_progress_bar_counts_every_byte_hashed(home, monkeypatch):
    made = [write(f"d{i}", f"{i}\n" * 1000) for i in range(3)]
    advanced = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def add_task(self, description, total):
            advanced.append(("total", total))
            return 0

        def advance(self, task, n):
            advanced.append(n)

    monkeypatch.setattr(verify_module, "_hash_progress", lambda total, enabled: Bar())
    report = verify_module.verify_home()
    total = sum((a.path / "data.jsonl").stat().st_size for a in made)
    assert advanced[0] == ("total", total) and sum(advanced[1:]) == total == report.bytes_hashed
