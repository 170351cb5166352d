"""The README's commands are tests (litgpt's test_readme.py is the model): the quick-start block runs as written on
tiny-llama, and every `kaiyuan …` line in the README's code blocks names a real command with real flags."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from kaiyuan.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK = re.compile(r"<!-- quick-start -->\s*```bash\n(?P<body>.*?)```\s*<!-- /quick-start -->", re.S)
BLOCK = re.compile(r"```bash\n(?P<body>.*?)```", re.S)


def quick_start() -> list[str]:
    found = QUICK.search(README.read_text(encoding="utf-8"))
    assert found, "README.md has no <!-- quick-start --> block"
    return [line for line in found["body"].splitlines() if line.strip()]


def readme_commands() -> list[str]:
    lines = []
    for block in BLOCK.finditer(README.read_text(encoding="utf-8")):
        for line in block["body"].splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("kaiyuan "):
                lines.append(command)
    return lines


def resolve(words: list[str]) -> tuple[object, list[str]]:
    """The click command a README line names, and the words naming it."""
    command = typer.main.get_command(app)
    path = []
    for word in words:
        group = hasattr(command, "list_commands")
        found = command.get_command(typer.Context(command), word) if group else None
        if found is None:
            break
        command = found
        path.append(word)
    return command, path


def test_the_quick_start_block_runs_as_written(tmp_path):
    env = {**os.environ, "KAIYUAN_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    bin_dir = Path(sys.executable).parent
    lines = quick_start()
    assert lines[0] == "kaiyuan models create-tiny" and lines[-1] == "kaiyuan verify"
    for line in lines:
        argv = shlex.split(line)
        done = subprocess.run([str(bin_dir / "kaiyuan"), *argv[1:]], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stderr[-3000:]}"
        if argv[1:3] == ["train", "sft"]:
            merged = re.search(r"merged model: (model-[0-9a-f]{12})", done.stdout)[1]
        if argv[1:3] == ["models", "list"]:
            assert merged in done.stdout  # the id the training printed, whole
    assert done.stdout.startswith("clean: ")  # the home the quick start leaves is consistent


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_and_flag_exists(line):
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))[1:]
    command, path = resolve(words)
    assert path, f"{line!r}: no such command"
    assert not hasattr(command, "list_commands"), f"{line!r}: {' '.join(path)} needs a subcommand"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    root = typer.main.get_command(app)
    known |= {opt for param in root.params for opt in param.opts}
    used = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)
    unknown = [flag for flag in used if flag not in known]
    assert not unknown, f"{line!r}: {' '.join(path)} has no {', '.join(unknown)}"


def test_the_readme_names_many_commands():
    assert len(readme_commands()) >= 20
