import json

import pytest

from kaiyuan.hub.manifest import Parent, file_sha256
from kaiyuan.hub.registry import ArtifactWriter, Registry


def write(name, text, parents=(), license="CC0-1.0"):
    with ArtifactWriter("dataset", name, license=license, source="test", parents=list(parents),
                        config={"n": 1}, seed=7) as writer:
        (writer.path / "data.jsonl").write_text(text)
    return writer.artifact


def test_manifest_records_files_parents_and_environment(home):
    artifact = write("a", '{"x": 1}\n')
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    assert manifest["files"] == {"data.jsonl": file_sha256(artifact.path / "data.jsonl")}
    assert manifest["kind"] == "dataset" and manifest["license"] == "CC0-1.0" and manifest["seed"] == 7
    assert manifest["config"] == {"n": 1} and manifest["source"] == "test"
    assert manifest["kaiyuan_version"] == "0.1.0"
    assert set(manifest["library_versions"]) >= {"torch", "transformers", "peft", "trl"}
    assert artifact.id == "dataset-" + manifest["sha256"][:12] == manifest["id"]
    assert artifact.path == home / "artifacts" / artifact.id


def test_failed_write_leaves_nothing_behind(home):
    with pytest.raises(RuntimeError, match="boom"):
        with ArtifactWriter("dataset", "broken", license="CC0-1.0", source="test") as writer:
            (writer.path / "data.jsonl").write_text("partial")
            raise RuntimeError("boom")
    assert list((home / "artifacts").iterdir()) == []
    assert Registry().list() == []


def test_same_content_is_the_same_artifact(home):
    first, second = write("a", "same\n"), write("b", "same\n")
    assert first.id == second.id and len(Registry().list()) == 1


def test_lookup_by_id_prefix_and_newest_name(home):
    old = write("data", "one\n")
    new = write("data", "two\n")
    registry = Registry()
    assert registry.get("data").id == new.id
    assert registry.get(old.id[:14]).id == old.id
    with pytest.raises(Exception, match="no artifact 'nope' in the registry"):
        registry.get("nope")


def test_lineage_walks_back_through_every_parent(home):
    raw = write("raw", "r\n", license="MIT")
    mid = write("mid", "m\n", parents=[Parent(raw.id, "dataset")])
    top = write("top", "t\n", parents=[Parent(mid.id, "merge"), Parent(raw.id, "dataset")])
    lineage = Registry().lineage(top.id)
    assert [(n["id"], n["relation"], n["depth"], n["child"]) for n in lineage] == [
        (mid.id, "merge", 1, top.id), (raw.id, "dataset", 1, top.id), (raw.id, "dataset", 2, mid.id)]
    assert lineage[1]["license"] == "MIT" and lineage[1]["sha256"] == raw.sha256
