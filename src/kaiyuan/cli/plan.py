"""``kaiyuan plan``: compute, GPU time and memory of a model, as a table or ``--json``."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.table import Table

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, echo, print_json
from kaiyuan.plan import ASSUMPTIONS, GB, PlanConfig, make_plan

SETTINGS = {"full": "train: full", "lora": "train: LoRA", "qlora": "train: QLoRA",
            "fp16": "infer: fp16", "int8": "infer: int8", "int4": "infer: int4"}


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan plan`` to the ``kaiyuan`` app."""
    command_from_config(app, "plan", PlanConfig, _run_plan,
                        help="Plan a model: Chinchilla-optimal tokens, training FLOPs (6·N·D), GPU-days at an MFU, "
                             "and memory for training (full / LoRA / QLoRA) and inference (fp16 / int8 / int4 with "
                             "KV cache). Example: kaiyuan plan --params 7B --gpu a100.")


def count(value: float) -> str:
    """1.8e9 → '1.8B'."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def gigabytes(value: float) -> str:
    """Three significant figures or more, in at most 6 characters below 1 PB: 0.02, 92.4, 1,213."""
    gb = value / GB
    return f"{gb:,.0f}" if gb >= 100 else f"{gb:.1f}" if gb >= 10 else f"{gb:.2f}"


def _run_plan(cfg: PlanConfig, json_output: bool) -> None:

    plan = make_plan(cfg)
    if json_output:
        print_json(plan.to_dict())
        return
    summary = plan.to_dict()
    compute = Table(title=f"plan: {count(plan.params)} parameters on {count(plan.tokens)} tokens", show_header=False)
    compute.add_column("quantity", style="bold")
    compute.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("parameters (N)", f"{plan.params:,.0f}"),
        ("training tokens (D)", f"{plan.tokens:,.0f} ({summary['tokens_per_param']:.1f} per parameter)"),
        ("Chinchilla-optimal tokens (20·N)", f"{plan.chinchilla_tokens:,.0f}"),
        ("training compute (6·N·D)", f"{plan.training_flops:.3e} FLOPs = {plan.pf_days:,.1f} PF-days"),
        ("accelerator", f"{plan.accelerator.name}: {plan.accelerator.peak_flops / 1e12:,.1f} TFLOP/s dense BF16"),
        ("GPU time at MFU", f"{plan.mfu:.0%}: {summary['gpu_hours']:,.1f} GPU-hours = {summary['gpu_days']:,.2f} "
                            "GPU-days"),
    ]
    for name, value in rows:
        compute.add_row(name, value)
    console.print(compute)
    shape = plan.shape
    # one unwrapped line: the source (a model id or config.json path) stays whole at any width
    echo(f"shape ({shape.source}): {shape.layers} layers, hidden {shape.hidden}, {shape.heads} heads, "
         f"{shape.kv_heads} KV heads × {shape.head_dim}, MLP {shape.intermediate}; "
         f"LoRA r={plan.lora_rank}: {count(summary['lora_params'])} trainable parameters")

    memory = Table(title=f"memory (GB = 10⁹ bytes) for {plan.batch_size} × {plan.context} tokens",
                   box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    # the setting names and the numbers are never wrapped or cut: the table fits 80 columns
    memory.add_column("setting", no_wrap=True, min_width=max(map(len, SETTINGS.values())))
    for column in ("weights", "grad+opt", "activ", "KV", "other", "total", plan.gpu.upper() + "s"):
        memory.add_column(column, justify="right", no_wrap=True)
    estimates = {**plan.training, **plan.inference}
    for key, estimate in estimates.items():
        parts = estimate.parts
        memory.add_row(SETTINGS[key], *(gigabytes(parts[p]) if p in parts else "–" for p in (
            "weights", "trainable_state", "activations", "kv_cache", "overhead")),
            f"[bold]{gigabytes(estimate.total_bytes)}[/]", str(estimate.gpus))
    console.print(memory)
    echo("grad+opt: gradients and optimizer state; activ: activations; other: runtime overhead")
    for assumption in ASSUMPTIONS:
        console.print(f"• {assumption}", markup=False, highlight=False)
