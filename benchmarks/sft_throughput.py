"""Benchmark: LoRA SFT throughput and peak memory — kaiyuan's answer-positions LM head vs TRL's own loss.

Same model (SmolLM2-135M-Instruct), same data (the demo's `dates` task), same settings, one process per
mode (so peak RSS is per mode), both in this run. Writes the table to benchmarks/RESULTS.md.
    python benchmarks/sft_throughput.py [--examples 128] [--batch-size 8]
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

SECTION = "## SFT throughput"


def worker(mode: str, model_dir: str, examples: int, batch_size: int) -> None:
    from kaiyuan.data.datasets import register_dataset
    from kaiyuan.data.synthetic import generate_dates
    from kaiyuan.train.sft import SFTConfig, run_sft

    train, _ = generate_dates(examples, 0, seed=0)
    data = register_dataset(train, "bench-dates", "CC0-1.0", "benchmark")
    cfg = SFTConfig(model=model_dir, data=data.id, batch_size=batch_size, learning_rate=1e-3,
                    answer_only_head=mode.startswith("kaiyuan"), seed=0, logging_steps=1,
                    precision="bf16" if mode == "kaiyuan-bf16" else "fp32")
    if mode == "trl-defaults":
        metrics = trl_defaults(cfg, train)
    else:
        metrics = run_sft(cfg).metrics
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**metrics, "peak_rss_mib": peak_mib}))


def trl_defaults(cfg, rows: list[dict]) -> dict:
    """Plain TRL: SFTTrainer on conversational prompt/completion data, its own tokenization and defaults,
    with the same model, LoRA, batch size, learning rate, epochs and seed."""
    import time

    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from kaiyuan.data.templates import encode_chat
    from kaiyuan.models import load_model
    from kaiyuan.train.common import lora_config

    loaded = load_model(cfg.model, for_training=True)
    dataset = Dataset.from_dict({"prompt": [r["messages"][:1] for r in rows],
                                 "completion": [r["messages"][1:] for r in rows]})
    args = TRLSFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=cfg.batch_size,
                        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, seed=cfg.seed, logging_steps=1,
                        use_cpu=True, report_to="none", save_strategy="no")
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.tokenizer,
                         peft_config=lora_config(cfg))
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = sum(len(encode_chat(loaded.tokenizer, r["messages"]).input_ids) for r in rows)
    return {"seconds": round(seconds, 1), "tokens_per_epoch": tokens, "final_loss": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--worker", choices=["kaiyuan", "kaiyuan-bf16", "trl", "trl-defaults"])
    parser.add_argument("--model-dir")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model_dir, args.examples, args.batch_size)
        return

    from kaiyuan.models import resolve_model

    base = resolve_model("smollm2-135m-instruct")  # converted once in the user's KAIYUAN_HOME
    results = {}
    for mode in ("trl-defaults", "trl", "kaiyuan", "kaiyuan-bf16"):
        with tempfile.TemporaryDirectory() as home:
            done = subprocess.run(
                [sys.executable, __file__, "--worker", mode, "--model-dir", str(base.path),
                 "--examples", str(args.examples), "--batch-size", str(args.batch_size)],
                env={**os.environ, "KAIYUAN_HOME": home}, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results["trl-defaults"]

    def tps(r: dict) -> float:
        return r["tokens_per_epoch"] / r["seconds"]

    labels = {"trl-defaults": "TRL SFTTrainer defaults (bf16 autocast + gradient checkpointing; baseline)",
              "trl": "TRL SFTTrainer, TRL's loss, on kaiyuan's tokenization and mask, fp32",
              "kaiyuan": "kaiyuan (answer-positions LM head), fp32",
              "kaiyuan-bf16": "kaiyuan (answer-positions LM head), bf16 autocast"}
    lines = [f"| {labels[m]} | {r['seconds']:.1f} | {tps(r):.0f} | {tps(r) / tps(base):.2f}× | "
             f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base['peak_rss_mib']:.2f} | {r['final_loss']:.4f} |"
             for m, r in results.items()]
    table = (
        f"{SECTION}\n\n"
        f"LoRA (r=16, all linear layers) SFT of SmolLM2-135M-Instruct on {args.examples} `dates` examples "
        f"({base['tokens_per_epoch']} tokens), batch {args.batch_size}, lr 1e-3, 1 epoch, fp32, {platform.machine()} "
        f"CPU, {os.cpu_count()} cores, {date.today().isoformat()}; one process per row, all in this run. Baseline: "
        "TRL 1.16's SFTTrainer with its defaults (bf16 mixed precision and gradient checkpointing on) on the same "
        "examples as prompt/completion conversations. The CPU has AVX512-BF16, so bf16 autocast pays off here.\n\n"
        "| trainer | seconds | tokens/s | speed-up | peak RSS (MiB) | memory ratio | final loss |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        "LLaMA-Factory (PyPI `llamafactory` 0.9.5) does not install beside torch 2.13 here: it requires torchvision "
        "and torchaudio (PyPI's torchvision fails to import beside the CPU torch wheel) and pins trl<=0.24, "
        "peft<=0.18.1, datasets<=4.0, accelerate<=1.11, transformers<=5.6, so it has no row.\n"
    )
    write_section(SECTION, table)
    print(table)


if __name__ == "__main__":
    main()
