"""Benchmark: batched greedy generation (kaiyuan eval) against one prompt at a time, same run, same model.

Writes the table to benchmarks/RESULTS.md (section "eval batching"). Usage:
    python benchmarks/eval_batching.py [--model smollm2-135m-instruct] [--n 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from kaiyuan.data.synthetic import generate_dates
from kaiyuan.data.templates import prompt_text
from kaiyuan.evaluate.generation import generate_greedy
from kaiyuan.models import load_model

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SECTION = "## eval batching"


def measure(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    outputs = generate_greedy(model, tokenizer, prompts, batch_size, max_new_tokens, f"batch {batch_size}")
    return time.perf_counter() - started, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    loaded = load_model(args.model)
    _, heldout = generate_dates(0, args.n, seed=123)
    prompts = [prompt_text(loaded.tokenizer, row["messages"][:1]) for row in heldout]
    generate_greedy(loaded.model, loaded.tokenizer, prompts[:2], 2, 2, "warm-up")
    one_s, one_out = measure(loaded.model, loaded.tokenizer, prompts, 1, args.max_new_tokens)
    batch_s, batch_out = measure(loaded.model, loaded.tokenizer, prompts, args.batch_size, args.max_new_tokens)
    same = sum(a == b for a, b in zip(one_out, batch_out, strict=True))
    table = (
        f"{SECTION}\n\n"
        f"Greedy decoding of {args.n} held-out `dates` prompts, max {args.max_new_tokens} new tokens, "
        f"model `{args.model}` ({loaded.artifact.id}), {platform.machine()} × {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {date.today().isoformat()}. Baseline: one prompt at a time, same run.\n\n"
        "| mode | seconds | prompts/s | speed-up vs baseline |\n|---|---:|---:|---:|\n"
        f"| one at a time (baseline) | {one_s:.1f} | {args.n / one_s:.2f} | 1.00× |\n"
        f"| batched ({args.batch_size}, left-padded, longest first) | {batch_s:.1f} | {args.n / batch_s:.2f} | "
        f"{one_s / batch_s:.2f}× |\n\n"
        f"Identical outputs in both modes: {same}/{args.n} (left padding can flip near-ties in fp32).\n"
    )
    write_section(SECTION, table)
    print(table)


if __name__ == "__main__":
    main()
