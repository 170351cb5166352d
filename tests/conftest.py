"""Test fixtures: every test gets its own KAIYUAN_HOME; nothing touches the network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty KAIYUAN_HOME for one test."""
    path = tmp_path / "kaiyuan-home"
    monkeypatch.setenv("KAIYUAN_HOME", str(path))
    return path


@pytest.fixture
def tiny(home):
    """The tiny-llama model artifact, registered in this test's home."""
    from kaiyuan.models import resolve_model

    return resolve_model("tiny-llama")


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(monkeypatch, capsys, *args, width=1000):
    """``kaiyuan ARGS`` in this process, as ``main()`` runs it: (exit code, stdout, stderr), lines unwrapped (the
    result console ``width`` columns wide: 80 for a plain terminal)."""
    import sys

    from kaiyuan import cli as cli_module
    from kaiyuan.cli import output

    monkeypatch.setattr(sys, "argv", ["kaiyuan", *map(str, args)])
    monkeypatch.setattr(output.err_console, "width", 1000)
    monkeypatch.setattr(output.console, "width", width)
    code = 0
    try:
        cli_module.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
