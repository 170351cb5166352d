"""A Registry owns its home: what it writes goes under that home, whatever KAIYUAN_HOME says."""

import json

from kaiyuan.hub.manifest import Manifest, Parent
from kaiyuan.hub.registry import ArtifactWriter, Registry, quarantine, quarantined


def write(registry, kind, name, text, parents=(), stage=None):
    with registry.writer(kind, name, license="CC0-1.0", source="test", parents=list(parents), stage=stage) as writer:
        (writer.path / "data.jsonl").write_text(text)
    return writer.artifact


def test_a_registry_at_an_explicit_home_writes_there_not_under_kaiyuan_home(home, tmp_path):
    other = tmp_path / "other-home"
    registry = Registry(other)
    assert registry.home == other.resolve() and registry.path == other.resolve() / "registry.sqlite"

    made = write(registry, "dataset", "elsewhere", "x\n", stage="synthetic")
    assert made.path == other.resolve() / "artifacts" / made.id and (made.path / "data.jsonl").is_file()
    assert registry.find_id(made.id) == made
    with ArtifactWriter("dataset", "also-elsewhere", license="CC0-1.0", source="test", registry=registry,
                        parents=[Parent(made.id, "dataset")]) as writer:  # the dataclass form, bound the same way
        (writer.path / "data.jsonl").write_text("y\n")
    assert writer.artifact.path.parent == registry.artifacts_dir()
    assert [a.id for a in registry.list()] == [made.id, writer.artifact.id]
    assert not home.exists()  # KAIYUAN_HOME was never even created

    target = quarantine(made.path, "a test", registry, quiet=True)
    assert target.parent == other.resolve() / "quarantine" and quarantined(made.id, registry) == [target]
    assert registry.find_id(made.id) is None
    assert not home.exists()

    assert Registry().list() == [] and list((home / "artifacts").iterdir()) == []  # the environment's: untouched


def test_the_stage_is_recorded_but_not_part_of_the_id(home, tmp_path):
    with_stage = write(Registry(tmp_path / "a"), "dataset", "d", "same\n", stage="synthetic")
    without = write(Registry(tmp_path / "b"), "dataset", "d", "same\n")
    assert with_stage.id == without.id
    assert with_stage.manifest["stage"] == "synthetic" and without.manifest["stage"] is None
    old = json.loads((with_stage.path / "manifest.json").read_text())
    del old["stage"]  # a manifest written before the field existed still loads
    loaded = Manifest.from_dict(old)
    assert loaded.stage is None and f"dataset-{loaded.content_sha256()[:12]}" == with_stage.id


def test_children_by_relation_and_kind_oldest_first(home):
    registry = Registry()
    parent = write(registry, "dataset", "p", "p\n")
    derived = write(registry, "dataset", "derived", "a\n", [Parent(parent.id, "dataset")])
    evaluation = write(registry, "eval", "an-eval", "b\n", [Parent(parent.id, "evaluated_model")])
    export = write(registry, "export", "an-export", "c\n",
                   [Parent(parent.id, "quantized"), Parent(parent.id, "dataset")])
    unrelated = write(registry, "eval", "other-eval", "d\n", [Parent(derived.id, "evaluated_model")])

    def ids(found):
        return [a.id for a in found]

    assert ids(registry.children(parent.id)) == [derived.id, evaluation.id, export.id]  # each once, oldest first
    assert ids(registry.children(parent.id, relation="evaluated_model")) == [evaluation.id]
    assert ids(registry.children(parent.id, relation="dataset")) == [derived.id, export.id]
    assert ids(registry.children(parent.id, kind="export")) == [export.id]
    assert ids(registry.children(parent.id, "dataset", "export")) == [export.id]
    assert ids(registry.children(parent.id, "dataset", "eval")) == []
    assert ids(registry.children(derived.id, kind="eval")) == [unrelated.id]
    assert registry.children(unrelated.id) == []
    # the same answer as the scan of manifests it replaces
    scan = [a for a in registry.list("eval") if {"id": parent.id, "relation": "evaluated_model"}
            in a.manifest["parents"]]
    assert registry.children(parent.id, "evaluated_model", "eval") == scan
