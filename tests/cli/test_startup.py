"""Fast start-up: the commands people type to look around never import torch or transformers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "llama_cpp", "fastapi", "matplotlib")
PROBE = """
import atexit, sys
def report():
    sys.__stderr__.write("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
atexit.register(report)
sys.argv = ["kaiyuan", *{args!r}]
from kaiyuan.cli import main
main()
"""


def imported_heavy(args: list[str], home) -> tuple[int, list[str], str]:
    env = {**os.environ, "KAIYUAN_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, args=args)], env=env,
                          capture_output=True, text=True, timeout=120)
    line = next(x for x in done.stderr.splitlines() if x.startswith("HEAVY:"))
    return done.returncode, [m for m in line[len("HEAVY:"):].split(",") if m], done.stdout


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    subprocess.run([sys.executable, "-m", "kaiyuan", "models", "create-tiny"], check=True, capture_output=True,
                   env={**os.environ, "KAIYUAN_HOME": str(home)}, timeout=300)
    return home


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "sft", "--help"], ["serve", "--help"],
                                  ["models", "list"], ["license", "tiny-llama"], ["openness", "tiny-llama"],
                                  ["plan", "--params", "7B"], ["verify"]])
def test_looking_around_imports_no_heavy_library(args, tiny_home):
    code, heavy, out = imported_heavy(args, tiny_home)
    assert code == 0, out
    assert heavy == [], f"kaiyuan {' '.join(args)} imported {heavy}"


def test_version_answers_the_version():
    from kaiyuan import __version__

    done = subprocess.run([sys.executable, "-m", "kaiyuan", "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"{__version__}\n")
