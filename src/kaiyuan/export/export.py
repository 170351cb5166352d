"""The export stage: its config and run function (``kaiyuan export MODEL --to merged|gguf|ollama``).

An adapter is merged into its base first (the merge is checked and registered); a model is exported as it is.
Every export is a registered artifact whose manifest records its checks: the merge's logit difference, the GGUF's
embedded chat template, tokenization and greedy agreement with transformers, and perplexity drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.errors import KaiyuanError
from kaiyuan.export.gguf import export_gguf
from kaiyuan.export.merge import merge_adapter
from kaiyuan.export.ollama import export_ollama
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import resolve_model

TARGETS = ("merged", "gguf", "ollama")
QUANT_NAMES = ("f16", "q8_0", "q4_k_m")
CHECK_KEYS = ("merge_max_abs_logit_diff", "merge_logit_tolerance", "chat_template_embedded", "tokenization_match",
              "greedy_match", "greedy_prompts_matched", "greedy_prefix_agreement", "prompt_logits_max_abs_diff",
              "perplexity_transformers", "perplexity_gguf", "perplexity_drift", "file_type", "tensor_types",
              "ollama_template_check", "checks_failed")


@dataclass
class ExportConfig:
    model: str = field(metadata={"argument": True, "help": "Model or LoRA adapter: registry id/name, local dir, "
                                         "hub id, tiny-llama. An adapter is merged into its base first."})
    to: Literal["merged", "gguf", "ollama"] = field(metadata={"flags": ("--to",),
        "help": "merged (adapter folded into its base), gguf (llama.cpp file), or ollama (GGUF + Modelfile)."})
    quant: Literal["f16", "q8_0", "q4_k_m"] = field(default="f16", metadata={
        "help": "GGUF weights: f16, q8_0 or q4_k_m (llama.cpp falls back per tensor where rows are not a multiple "
                "of 256)."})
    name: str | None = field(default=None, metadata={"help": "Name of the registered export."})
    converter: str | None = field(default=None, metadata={
        "help": "llama.cpp's convert_hf_to_gguf.py, a llama.cpp checkout or a llama-cpp-python sdist .tar.gz "
                "(default: $KAIYUAN_GGUF_CONVERTER, else the installed version's sdist in ~/.cache/kaiyuan)."})
    template: str | None = field(default=None, metadata={
        "help": "Ollama: template family (chatml, llama3, gemma, zephyr) or a file with an Ollama Go template "
                "(default: recognized from the model's chat template)."})
    tolerance: float | None = field(default=None, metadata={
        "help": "Merge: largest allowed logit difference between the merged model and base + adapter "
                "(default by dtype: 1e-3 for float32)."})
    greedy_tokens: int = field(default=16, metadata={"help": "GGUF check: greedy tokens compared per prompt."})
    perplexity_text: str | None = field(default=None, metadata={
        "help": "GGUF check: UTF-8 text file to measure perplexity drift on (default: a built-in paragraph)."})
    allow_mismatch: bool = field(default=False, metadata={"flags": ("--allow-mismatch",),
        "help": "Register the GGUF even when a check fails (the failures are recorded)."})


@dataclass
class ExportResult:
    to: str
    artifact: Artifact
    merged: Artifact | None = None  # the merged model, when the input was an adapter

    def file(self) -> Path:
        name = self.artifact.manifest["config"].get("file")
        return self.artifact.path / name if name else self.artifact.path

    def checks(self) -> dict[str, Any]:
        found = dict(self.merged.manifest["metrics"]) if self.merged else {}
        found.update(self.artifact.manifest["metrics"])
        return {key: found[key] for key in CHECK_KEYS if key in found}

    def summary(self) -> dict[str, Any]:
        data = {**self.artifact.summary(), "to": self.to, "quant": self.artifact.manifest["config"].get("quant"),
                "file": str(self.file()), "merged_model_id": self.merged.id if self.merged else None,
                "checks": self.checks()}
        if self.to == "ollama":
            data["ollama_create"] = f"ollama create {self.artifact.name} -f {self.artifact.path / 'Modelfile'}"
        return data


def run_export(cfg: ExportConfig, registry: Registry | None = None) -> ExportResult:

    if cfg.to not in TARGETS:
        raise KaiyuanError(f"unknown export target {cfg.to!r}: choose merged, gguf or ollama")
    if cfg.quant not in QUANT_NAMES:
        raise KaiyuanError(f"unknown quantization {cfg.quant!r}: choose f16, q8_0 or q4_k_m")
    registry = registry or Registry()
    text = Path(cfg.perplexity_text).read_text(encoding="utf-8") if cfg.perplexity_text else None
    source = resolve_model(cfg.model, registry)
    merged = None
    if source.kind == "adapter":

        merged = source = merge_adapter(source, registry, name=cfg.name if cfg.to == "merged" else None,
                                        tolerance=cfg.tolerance)
    elif cfg.to == "merged":
        raise KaiyuanError(f"{cfg.model!r} is a model, not a LoRA adapter: there is nothing to merge "
                           "(export it with --to gguf or --to ollama)")
    if cfg.to == "merged":
        return ExportResult(cfg.to, source, merged)
    options = {"quant": cfg.quant, "name": cfg.name, "converter": cfg.converter, "greedy_tokens": cfg.greedy_tokens,
               "perplexity_text": text, "allow_mismatch": cfg.allow_mismatch, "registry": registry}
    if cfg.to == "gguf":

        return ExportResult(cfg.to, export_gguf(source, **options), merged)

    return ExportResult(cfg.to, export_ollama(source, template=cfg.template, **options), merged)


def describe_checks(checks: dict[str, Any]) -> list[str]:
    lines = []
    if "merge_max_abs_logit_diff" in checks:
        tolerance = checks.get("merge_logit_tolerance")
        lines.append(f"merge: max |logit diff| vs base + adapter {checks['merge_max_abs_logit_diff']:.3g}"
                     + (f" (tolerance {tolerance:g})" if tolerance is not None else " (not enforced)"))
    if "greedy_match" in checks:
        yes = {True: "yes", False: "NO"}
        lines += [f"chat template embedded: {yes[checks['chat_template_embedded']]}; tokenization matches "
                  f"transformers: {yes[checks['tokenization_match']]}",
                  f"greedy decoding equals transformers: {checks['greedy_prompts_matched']} prompts "
                  f"({checks['greedy_prefix_agreement']:.1%} of tokens before the first divergence); "
                  "prompt logits max |diff| "
                  f"{checks['prompt_logits_max_abs_diff']:.3g}",
                  f"perplexity: transformers {checks['perplexity_transformers']:.4f}, GGUF "
                  f"{checks['perplexity_gguf']:.4f} (drift {checks['perplexity_drift']:+.4%})",
                  f"file type {checks['file_type']}; tensors {checks['tensor_types']}"]
    if "ollama_template_check" in checks:
        lines.append(f"Ollama template renders like the model's: {checks['ollama_template_check']}")
    if checks.get("checks_failed"):
        lines.append(f"FAILED (registered with --allow-mismatch): {', '.join(checks['checks_failed'])}")
    return lines
