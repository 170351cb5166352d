"""Benchmark: PPO seconds per step and peak memory on tiny-llama and SmolLM2-135M-Instruct.

One process per model (peak RSS per model). Writes the table to benchmarks/RESULTS.md.
    python benchmarks/ppo_bench.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SECTION = "## PPO"


def worker(model: str, steps: int) -> None:
    from kaiyuan.data.datasets import register_dataset
    from kaiyuan.data.synthetic import generate_dates
    from kaiyuan.train.ppo import PPOConfig, run_ppo

    train, _ = generate_dates(64, 0, seed=0)
    data = register_dataset(train, "bench-dates", "CC0-1.0", "benchmark")
    result = run_ppo(PPOConfig(model=model, data=data.id, reward_function="kaiyuan.train.ppo:dates_exact_reward",
                               steps=steps, batch_size=8, mini_batch_size=4, ppo_epochs=2, max_new_tokens=16, seed=0))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result.metrics, "peak_rss_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    from kaiyuan.models import resolve_model

    models = {"tiny-llama": "tiny-llama", "SmolLM2-135M-Instruct": str(resolve_model("smollm2-135m-instruct").path)}
    results = {}
    for label, ref in models.items():
        with tempfile.TemporaryDirectory() as home:
            done = subprocess.run([sys.executable, __file__, "--worker", ref, "--steps", str(args.steps)],
                                  env={**os.environ, "KAIYUAN_HOME": home}, capture_output=True, text=True, check=True)
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = "\n".join(f"| {label} | {r['seconds_per_step']:.2f} | {r['peak_rss_mib']:.0f} |"
                     for label, r in results.items())
    table = (
        f"{SECTION}\n\n"
        f"kaiyuan's PPO (LoRA r=16, reference = adapter off, value head), {args.steps} steps of 8 prompts × up to 16 "
        f"sampled tokens, 2 PPO epochs of minibatch 4, Python reward; fp32, {platform.machine()} CPU, "
        f"{os.cpu_count()} cores, {date.today().isoformat()}.\n\n"
        "| model | seconds / step | peak RSS (MiB) |\n|---|---:|---:|\n" + rows + "\n"
    )
    write_section(SECTION, table)
    print(table)


if __name__ == "__main__":
    main()
