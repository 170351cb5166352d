"""The command line as people use it: --version, copyable tables at 80 columns, a compact `license`, every kind
in `models list`, `models du` / `rm` / `gc`, `--print-config`, help that shows defaults, and `kaiyuan chat`."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml

from kaiyuan import __version__
from kaiyuan.hub.manifest import KINDS, Parent
from kaiyuan.hub.registry import HOST_TAG, ArtifactWriter, Registry, human_size
from tests.conftest import run_cli

LONG = "a-dataset-name-long-enough-that-a-table-at-eighty-columns-has-to-wrap-it"


def run_at(width, monkeypatch, capsys, *args):
    """``kaiyuan ARGS`` with the result console ``width`` columns wide (as in an 80-column terminal)."""
    return run_cli(monkeypatch, capsys, *args, width=width)


def make(kind, name, license="Apache-2.0", parents=(), config=None):
    with ArtifactWriter(kind, name, license=license, source="test fixture", config=config or {},
                        parents=[Parent(p.id, r) for p, r in parents]) as writer:
        (writer.path / ("data.jsonl" if kind == "dataset" else "model.safetensors")).write_text(name * 10)
    return writer.artifact


def folder_bytes(path: Path) -> int:
    return sum(os.lstat(os.path.join(root, f)).st_size for root, _, files in os.walk(path) for f in files)


def cells(out: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in out.splitlines():
        parts = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if parts and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{out}")


def on_one_line(text: str, out: str) -> bool:
    return any(text in line for line in out.splitlines())


def verify_clean(monkeypatch, capsys) -> str:
    code, out, err = run_cli(monkeypatch, capsys, "verify")
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("clean: "), out
    return out


# ---------------------------------------------------------------------------------------------- --version


def test_version(home, monkeypatch, capsys):
    assert run_cli(monkeypatch, capsys, "--version") == (0, f"{__version__}\n", "")


def test_help_does_not_import_torch(home):
    code = ("import sys\nfrom kaiyuan.cli import main\nsys.argv = ['kaiyuan', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "KAIYUAN_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert "TORCH False" in done.stderr and " chat " in done.stdout


# ---------------------------------------------------------------------------------------------- tables


@pytest.fixture
def lineage(tiny):
    data = make("dataset", LONG, "CC-BY-NC-4.0")
    adapter = make("adapter", "tiny-llama-sft-with-a-rather-long-name", "Apache-2.0",
                   [(tiny, "adapter"), (data, "dataset")])
    return tiny, data, adapter


def test_ids_are_whole_on_one_line_at_80_columns(lineage, monkeypatch, capsys):
    tiny, data, adapter = lineage
    code, out, _ = run_at(80, monkeypatch, capsys, "models", "list")
    assert code == 0
    assert on_one_line(tiny.id, out) and on_one_line(adapter.id, out) and tiny.id in cells(out, tiny.id)
    assert all(len(line) <= 80 for line in out.splitlines()), out
    code, out, _ = run_at(80, monkeypatch, capsys, "models", "list", "--kind", "dataset")
    assert code == 0 and cells(out, data.id)[:2] == [data.id, "dataset"]

    code, out, _ = run_at(80, monkeypatch, capsys, "models", "show", adapter.id)
    assert code == 0
    assert out.splitlines()[0] == f"{adapter.id} adapter 'tiny-llama-sft-with-a-rather-long-name'  license Apache-2.0"
    assert cells(out, "1")[:3] == ["1", "adapter", tiny.id]
    assert on_one_line(data.id, out)

    code, out, _ = run_at(80, monkeypatch, capsys, "license", adapter.id, "--verbose")
    assert code == 0
    for artifact in (tiny, data, adapter):
        assert on_one_line(artifact.id, out), artifact.id
    code, out, _ = run_at(80, monkeypatch, capsys, "license", adapter.id)
    assert code == 0 and on_one_line(adapter.id, out) and on_one_line(data.id, out)

    code, out, _ = run_at(80, monkeypatch, capsys, "plan", "--model", tiny.id)
    assert code == 0
    assert on_one_line(f"artifacts/{tiny.id}/config.json", out)
    for setting in ("train: full", "train: LoRA", "train: QLoRA", "infer: fp16", "infer: int8", "infer: int4"):
        assert any(line.startswith(f" {setting} ") for line in out.splitlines()), (setting, out)
    code, out, _ = run_at(80, monkeypatch, capsys, "plan", "--params", "405B")
    row = next(line for line in out.splitlines() if line.startswith(" train: full "))
    assert row.split() == ["train:", "full", "810", "5,670", "292", "–", "–", "6,772", "79"]


def test_license_is_compact_by_default_and_json_unchanged(tiny, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "license", "tiny-llama")
    assert code == 0
    assert out.splitlines() == [
        f"tiny-llama ({tiny.id}, model)  license Apache-2.0",
        "commercial use: yes",
        "obligations when you distribute the model or offer it as a service",
        "  • Apache-2.0: give recipients a copy of the license and keep the NOTICE file's attributions",
        "  • Apache-2.0: state significant changes in modified files",
        "1 input(s) checked; --verbose lists them all.",
        "An engineering reading of the recorded licenses, not legal advice."]
    code, verbose, _ = run_cli(monkeypatch, capsys, "license", "tiny-llama", "--verbose")
    assert code == 0 and "inputs (the chain of evidence)" in verbose and cells(verbose, "self")[1] == tiny.id
    _, plain_json, _ = run_cli(monkeypatch, capsys, "license", "tiny-llama", "--json")
    _, verbose_json, _ = run_cli(monkeypatch, capsys, "license", "tiny-llama", "--json", "--verbose")
    from kaiyuan.hub.licenses import license_report

    assert plain_json == verbose_json and json.loads(plain_json) == json.loads(
        json.dumps(license_report("tiny-llama").to_dict()))


def test_license_compact_shows_only_the_inputs_behind_a_risk(lineage, monkeypatch, capsys):
    tiny, data, adapter = lineage
    code, out, _ = run_cli(monkeypatch, capsys, "license", adapter.id)
    assert code == 0 and "commercial use: risk" in out
    assert cells(out, "data (dataset)")[1] == data.id and cells(out, "self")[1] == adapter.id
    assert tiny.id not in out  # the base model causes no risk: --verbose lists it
    _, verbose, _ = run_cli(monkeypatch, capsys, "license", adapter.id, "--verbose")
    assert on_one_line(tiny.id, verbose)


# ---------------------------------------------------------------------------------------------- kinds


def test_models_list_accepts_every_kind_and_rejects_others(tiny, monkeypatch, capsys):
    for kind in KINDS:
        code, out, err = run_cli(monkeypatch, capsys, "models", "list", "--kind", kind, "--json")
        assert (code, err) == (0, ""), kind
        assert [a["kind"] for a in json.loads(out)] == (["model"] if kind == "model" else [])
    code, out, err = run_cli(monkeypatch, capsys, "models", "list", "--kind", "modle")
    assert (code, out) == (2, "")
    assert err == ("error: unknown kind 'modle'; expected one of model, adapter, dataset, eval, export, card; "
                   "did you mean 'model'?\n")
    from typer.testing import CliRunner

    from kaiyuan.cli import app

    result = CliRunner().invoke(app, ["models", "list", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Only this kind: model|adapter|dataset|eval|export|card." in result.output


def test_models_list_has_a_size_column(tiny, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models", "list")
    assert code == 0
    assert cells(out, tiny.id)[:5] == [tiny.id, "model", "tiny-llama", "Apache-2.0",
                                       human_size(folder_bytes(tiny.path))]


# ---------------------------------------------------------------------------------------------- du / rm / gc


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_du_counts_kinds_runs_and_total(tiny, home, monkeypatch, capsys):
    data = make("dataset", "d1")
    checkpoint = home / "runs" / "sft-0123456789ab" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"x" * 12345)
    code, out, _ = run_cli(monkeypatch, capsys, "models", "du", "--json")
    assert code == 0
    usage = json.loads(out)
    assert usage["kinds"] == {"dataset": {"count": 1, "bytes": folder_bytes(data.path)},
                              "model": {"count": 1, "bytes": folder_bytes(tiny.path)}}
    assert usage["runs"] == 12345 and usage["staging"] == 0
    assert usage["total"] == sum(k["bytes"] for k in usage["kinds"].values()) + sum(
        usage[k] for k in ("runs", "cache", "quarantine", "staging", "registry"))
    code, out, _ = run_cli(monkeypatch, capsys, "models", "du")
    assert code == 0
    assert cells(out, "model") == ["model", "1", human_size(folder_bytes(tiny.path))]
    assert cells(out, "runs/") == ["runs/", "", "12.3 KB"]
    assert cells(out, "total") == ["total", "", human_size(usage["total"])]


def test_rm_refuses_a_parent_then_removes_cleanly(home, monkeypatch, capsys):
    base = make("model", "base")
    child = make("adapter", "child", parents=[(base, "adapter")])
    other = make("model", "other")
    code, out, err = run_cli(monkeypatch, capsys, "models", "rm", "base")
    assert (code, out) == (2, "")
    assert err == (f"error: refusing to remove an artifact that other registered artifacts were made from: {base.id} "
                   f"is a parent of {child.id} (adapter 'child'); remove those too, or pass --force\n")
    assert base.path.is_dir() and Registry().find_id(base.id) is not None

    sizes = folder_bytes(child.path), folder_bytes(base.path)
    code, out, _ = run_cli(monkeypatch, capsys, "models", "rm", child.id, "base")
    assert code == 0
    assert out.splitlines() == [f"removed {child.id} (adapter 'child', {human_size(sizes[0])})",
                                f"removed {base.id} (model 'base', {human_size(sizes[1])})"]
    assert not base.path.exists() and not child.path.exists() and other.path.is_dir()
    assert [a.id for a in Registry().list()] == [other.id]
    assert sorted(p.name for p in (home / "artifacts").iterdir()) == [other.id]  # no leftover of the rename
    verify_clean(monkeypatch, capsys)


def test_rm_force_removes_a_parent_and_names_the_orphans(home, monkeypatch, capsys):
    base = make("model", "base")
    child = make("adapter", "child", parents=[(base, "adapter")])
    size = folder_bytes(base.path)
    code, out, _ = run_cli(monkeypatch, capsys, "models", "rm", base.id, "--force")
    assert code == 0
    assert out.splitlines() == [f"removed {base.id} (model 'base', {human_size(size)})",
                                f"  now without their parent {base.id}: {child.id}"]
    assert not base.path.exists() and child.path.is_dir()
    code, out, _ = run_cli(monkeypatch, capsys, "models", "rm", "nothing-like-this")
    assert code == 2
    run_cli(monkeypatch, capsys, "models", "rm", child.id)
    verify_clean(monkeypatch, capsys)


def test_gc_dry_run_lists_then_gc_removes_and_verify_is_clean(home, monkeypatch, capsys):
    from kaiyuan.home import run_dir

    options = {"model": "m", "learning_rate": 0.1}
    trained = make("adapter", "trained", config={"stage": "sft", **options})
    finished = run_dir("sft", options) / "checkpoint-2"
    finished.mkdir(parents=True)
    (finished / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (finished / "optimizer.pt").write_bytes(b"o" * 1000)
    unfinished = home / "runs" / "sft-000000000000" / "checkpoint-1"  # no registered artifact: kept (resumable)
    unfinished.mkdir(parents=True)
    (unfinished / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    cache = home / "runs" / "recipe-cache"
    cache.mkdir()
    (cache / "sft-gone.json").write_text(json.dumps({"artifact": "adapter-000000000000", "merged": ""}))
    (cache / "sft-kept.json").write_text(json.dumps({"artifact": trained.id, "merged": ""}))
    staging = home / "artifacts" / f".staging-{HOST_TAG}-{dead_pid()}-{'0' * 32}"
    staging.mkdir()
    (staging / "half.bin").write_bytes(b"h" * 300)
    temporary = home / "cache" / "tmpabc123"
    temporary.mkdir(parents=True)
    (temporary / "part.gguf").write_bytes(b"g" * 200)
    old = time.time() - 3 * 24 * 3600
    os.utime(temporary / "part.gguf", (old, old))
    os.utime(temporary, (old, old))
    fresh = home / "cache" / "tmpfresh"
    fresh.mkdir()

    run_folder = run_dir("sft", options)
    size = folder_bytes(run_folder)
    gone_size = (cache / "sft-gone.json").stat().st_size
    code, out, _ = run_cli(monkeypatch, capsys, "models", "gc", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        f"would remove {run_folder} ({human_size(size)}): finished run of {trained.id} (adapter 'trained')",
        f"would remove {cache / 'sft-gone.json'} ({human_size(gone_size)}): recipe-cache entry for artifacts no "
        "longer registered: adapter-000000000000",
        f"would remove {staging} (300 B): staging folder of a writer that did not finish (its writer (pid "
        f"{staging.name.split('-')[2]}) is gone)",
        f"would remove {temporary} (200 B): temporary folder untouched for 72 h",
        f"would remove 4 item(s), {human_size(size + gone_size + 500)}"]
    assert run_folder.is_dir() and staging.is_dir() and temporary.is_dir()

    code, out, _ = run_cli(monkeypatch, capsys, "models", "gc", "--json")
    assert code == 0
    assert [Path(i["path"]) for i in json.loads(out)["removed"]] == [run_folder, cache / "sft-gone.json", staging,
                                                                    temporary]
    assert not run_folder.exists() and not staging.exists() and not temporary.exists()
    assert unfinished.is_dir() and (cache / "sft-kept.json").is_file() and fresh.is_dir() and trained.path.is_dir()
    assert run_cli(monkeypatch, capsys, "models", "gc")[1] == "nothing to remove\n"
    verify_clean(monkeypatch, capsys)


# ---------------------------------------------------------------------------------------------- --print-config


def test_print_config_round_trips_and_runs_nothing(home, tmp_path, monkeypatch, capsys):
    from kaiyuan.config import load_config
    from kaiyuan.train.sft import SFTConfig

    code, out, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--learning-rate",
                             "0.01", "--print-config")
    assert code == 0, err
    assert "\ndata: null  # required\n" in out and "\nmodel: tiny-llama\n" in out
    assert "\nlearning_rate: 0.01\n" in out and "\nlora_target_modules: all-linear\n" in out
    assert not (home / "artifacts").exists() or not any((home / "artifacts").iterdir())
    values = yaml.safe_load(out)
    assert list(values) == [f.name for f in dataclasses.fields(SFTConfig)]
    values["data"] = "train.jsonl"
    assert load_config(SFTConfig, values) == SFTConfig(model="tiny-llama", data="train.jsonl", learning_rate=0.01)

    config = tmp_path / "sft.yaml"
    config.write_text(out.replace("data: null  # required", "data: train.jsonl"))
    code, again, _ = run_cli(monkeypatch, capsys, "train", "sft", "--config", config, "--print-config")
    assert code == 0 and again == out.replace("data: null  # required", "data: train.jsonl")


def _filled(cls):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING or (
                f.default_factory is not dataclasses.MISSING and not f.default_factory()):
            hint = hints[f.name]
            args = typing.get_args(hint)
            values[f.name] = (list(args[:1]) if typing.get_origin(hint) is list and args[0] is not str
                              else ["a", "b"] if typing.get_origin(hint) is list
                              else args[0] if typing.get_origin(hint) is typing.Literal else "x")
    return values


def test_print_config_round_trips_for_every_command_built_from_a_config():
    from kaiyuan.cli.from_config import config_yaml
    from kaiyuan.config import load_config
    from kaiyuan.pipeline.demo import DemoConfig
    from kaiyuan.pipeline.stages import STAGES
    from kaiyuan.plan import PlanConfig

    stages = STAGES.values() if isinstance(STAGES, dict) else STAGES
    classes = {s.config for s in stages} | {PlanConfig, DemoConfig}
    assert len(classes) > 10
    for cls in classes:
        given = _filled(cls)
        printed = config_yaml(cls, given)
        assert load_config(cls, yaml.safe_load(printed), cls.__name__) == load_config(cls, given), cls.__name__


# ---------------------------------------------------------------------------------------------- help


def option_help(output):
    """{flag: its whole help entry, lines joined} from click's plain help: an entry starts at a line indented two
    spaces with ``--``; its help continues on lines indented further."""
    options, current = {}, None
    for line in output.splitlines():
        if line.startswith("  --"):
            current = line.split()[0]
            options[current] = line.strip()
        elif current and line.startswith("   ") and line.strip():  # click wraps after hyphens, too
            options[current] += ("" if options[current].endswith("-") else " ") + line.strip()
        else:
            current = None
    return options


def test_training_help_shows_every_flag_and_its_default(home):
    from typer.testing import CliRunner

    from kaiyuan.cli import app
    from kaiyuan.train.sft import SFTConfig

    result = CliRunner().invoke(app, ["train", "sft", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    options = option_help(result.output)
    assert "…" not in result.output  # an 80-column terminal: no option name cut off
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for f in dataclasses.fields(SFTConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in options, flag
        if f.default is dataclasses.MISSING:
            assert options[flag].endswith("[required]"), options[flag]
        elif isinstance(f.default, bool):
            assert options[flag].endswith(f"[default: {flag if f.default else '--no-' + flag[2:]}]"), options[flag]
        elif f.default is not None:
            assert options[flag].endswith(f"[default: {f.default}]"), options[flag]
    assert options["--learning-rate"].endswith("Peak learning rate. [default: 0.0002]")
    assert options["--method"].endswith("[lora|dora|qlora|full|freeze] [default: lora]")
    assert "--print-config" in options and "--gradient-accumulation-steps" in options


def test_demo_help_lists_every_step(home):
    from typer.testing import CliRunner

    from kaiyuan.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    text = " ".join(line.strip().strip("│").strip() for line in result.output.splitlines())
    text = " ".join(text.split())
    source = (Path(__file__).parents[2] / "src/kaiyuan/pipeline/demo.py").read_text()
    assert source.count("    step(") == 9  # the steps listed below are all the demo's steps
    for step in ("1. the base model", "2. synthetic data", "3. evaluate the base model on the held-out split",
                 "4. LoRA SFT", "5. evaluate the tuned model", "6. DPO on the tuned model's near misses",
                 "7. evaluate the aligned model", "8. model card, data cards, license verdict and openness grade",
                 "9. serve the final model"):
        assert step in text, step


# ---------------------------------------------------------------------------------------------- chat


def chat(monkeypatch, capsys, stdin: str, *options):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return run_cli(monkeypatch, capsys, "chat", "tiny-llama", *options)


def test_chat_streams_the_engines_greedy_replies_and_keeps_history(tiny, monkeypatch, capsys):
    from kaiyuan.serve.engine_set import build_engines
    from kaiyuan.serve.engines.base import SamplingParams

    engine = build_engines(["tiny-llama"])["tiny-llama"]
    params = SamplingParams(max_tokens=8, temperature=0.0)
    first = [{"role": "user", "content": "Hello"}]
    reply1 = engine.generate(first, params).text
    second = [*first, {"role": "assistant", "content": reply1}, {"role": "user", "content": "What is 2+2?"}]
    reply2 = engine.generate(second, params).text
    fresh2 = engine.generate([{"role": "user", "content": "What is 2+2?"}], params).text
    assert reply1 and reply2

    seen = []

    class Recording:  # the real engine, recording the conversation each reply is generated from
        model_id = engine.model_id

        def stream(self, messages, params):
            seen.append(([dict(m) for m in messages], params.max_tokens, params.temperature))
            return engine.stream(messages, params)

    import kaiyuan.serve.engine_set as engine_set

    with monkeypatch.context() as patched:
        patched.setattr(engine_set, "build_engines", lambda models, engine="auto", **kw: {"tiny-llama": Recording()})
        code, out, err = chat(monkeypatch, capsys, "Hello\nWhat is 2+2?\n", "--max-tokens", "8")
        assert code == 0, err
        assert out == f"{reply1}\n{reply2}\n"
        assert seen == [(first, 8, 0.0), (second, 8, 0.0)]
        seen.clear()
        code, out, _ = chat(monkeypatch, capsys, "Hello\n/clear\nWhat is 2+2?\n/exit\nHello\n", "--max-tokens", "8")
        assert code == 0 and out == f"{reply1}\n{fresh2}\n"
        assert seen == [(first, 8, 0.0), ([{"role": "user", "content": "What is 2+2?"}], 8, 0.0)]

    code, out, err = chat(monkeypatch, capsys, "Hello\nWhat is 2+2?\n", "--max-tokens", "8")  # real engines
    assert code == 0, err
    assert out == f"{reply1}\n{reply2}\n"
    code, out, _ = chat(monkeypatch, capsys, "Hello\n/clear\nWhat is 2+2?\n/exit\nHello\n", "--max-tokens", "8")
    assert code == 0 and out == f"{reply1}\n{fresh2}\n"

    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    code, out, _ = chat(monkeypatch, capsys, "Hello\n", "--max-tokens", "8", "--system", "Be brief.")
    assert code == 0 and out == engine.generate(system, params).text + "\n"
    code, _, err = chat(monkeypatch, capsys, "", "--engine", "nope")
    assert code == 2 and "unknown engine 'nope'" in err
