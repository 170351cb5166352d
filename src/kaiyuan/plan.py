"""``kaiyuan plan``: how much compute and memory a model needs, before renting any of it.

* Tokens: Chinchilla-optimal is about 20 tokens per parameter (Hoffmann et al. 2022, "Training
  Compute-Optimal Large Language Models", Table 3: 70B parameters → 1.4T tokens).
* Training compute: ``6 · N · D`` FLOPs (Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
  §2.1: 2 FLOPs per parameter per token forward, 4 backward). GPT-3 175B on 300B tokens → 3.15e23 FLOPs
  = 3,640 PF-days (Brown et al. 2020, Table D.1).
* GPU time: FLOPs / (peak dense BF16 FLOP/s × MFU); MFU (model FLOPs utilization) of 0.3–0.5 is typical
  of well-tuned training (Chowdhery et al. 2022, PaLM, Table 3).
* Memory: see :data:`ASSUMPTIONS` — every number printed says what it counts.

GB here means 10⁹ bytes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry

CHINCHILLA_TOKENS_PER_PARAM = 20
PF_DAY = 1e15 * 86_400  # FLOPs in one petaFLOP/s-day
GB = 1e9
GIB = 2**30


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: float  # dense BF16 tensor FLOP/s (no structured sparsity)
    memory_bytes: float
    source: str


# Peak *dense* BF16 tensor throughput (vendors' headline figures are often "with sparsity", twice these).
GPUS: dict[str, Accelerator] = {
    "a100": Accelerator("NVIDIA A100 SXM 80GB", 312e12, 80 * GIB,
                        "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
    "h100": Accelerator("NVIDIA H100 SXM 80GB", 989e12, 80 * GIB,
                        "NVIDIA H100 datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity (989 dense), SXM5"),
    "h100-pcie": Accelerator("NVIDIA H100 PCIe 80GB", 756e12, 80 * GIB,
                             "NVIDIA H100 datasheet: BF16 Tensor Core 1,513 TFLOPS with sparsity (756 dense), PCIe"),
    "h200": Accelerator("NVIDIA H200 SXM 141GB", 989e12, 141e9,
                        "NVIDIA H200 datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity (989 dense), 141 GB"),
    "l40s": Accelerator("NVIDIA L40S 48GB", 362.05e12, 48 * GIB,
                        "NVIDIA L40S datasheet: BF16 Tensor Core 362.05 TFLOPS (733 with sparsity)"),
    "l4": Accelerator("NVIDIA L4 24GB", 121e12, 24 * GIB,
                      "NVIDIA L4 datasheet: BF16 Tensor Core 242 TFLOPS with sparsity (121 dense)"),
    "a10": Accelerator("NVIDIA A10 24GB", 125e12, 24 * GIB,
                       "NVIDIA A10 datasheet: BF16 Tensor Core 125 TFLOPS (250 with sparsity)"),
    "rtx4090": Accelerator("NVIDIA GeForce RTX 4090 24GB", 165.2e12, 24 * GIB,
                           "NVIDIA Ada Lovelace architecture whitepaper: FP16/BF16 tensor with FP32 accumulate "
                           "165.2 TFLOPS (330.4 with sparsity)"),
    "rtx3090": Accelerator("NVIDIA GeForce RTX 3090 24GB", 71e12, 24 * GIB,
                           "NVIDIA Ampere GA102 whitepaper: FP16/BF16 tensor with FP32 accumulate 71 TFLOPS "
                           "(142 with sparsity)"),
    "v100": Accelerator("NVIDIA V100 SXM2 32GB (FP16: no BF16)", 125e12, 32 * GIB,
                        "NVIDIA V100 datasheet: 125 TFLOPS tensor (FP16; Volta has no BF16)"),
    "mi300x": Accelerator("AMD Instinct MI300X 192GB", 1307.4e12, 192 * GIB,
                          "AMD Instinct MI300X data sheet: BF16 1,307.4 TFLOPS (2,614.9 with sparsity)"),
    "tpu-v5e": Accelerator("Google Cloud TPU v5e 16GB", 197e12, 16 * GIB,
                           "Google Cloud TPU v5e documentation: 197 TFLOPS BF16 per chip, 16 GiB HBM2"),
    "tpu-v5p": Accelerator("Google Cloud TPU v5p 95GB", 459e12, 95 * GIB,
                           "Google Cloud TPU v5p documentation: 459 TFLOPS BF16 per chip, 95 GiB HBM2e"),
}

# ---------------------------------------------------------------------------------- memory assumptions
# Full fine-tuning with mixed-precision Adam: BF16 weights (2) + BF16 gradients (2) + FP32 master weights,
# Adam momentum and variance (4 + 4 + 4) = 16 bytes per parameter (Rajbhandari et al. 2020, ZeRO, §3.1).
FULL_WEIGHT_BYTES, FULL_GRADIENT_BYTES, FULL_OPTIMIZER_BYTES = 2, 2, 12
FROZEN_BF16_BYTES = 2  # LoRA: the base is frozen in BF16; only the adapter trains (at 16 bytes/param)
# QLoRA: NF4 weights with double quantization = 4 + 0.127 bits per parameter (Dettmers et al. 2023, §3).
NF4_BYTES = (4 + 0.127) / 8
# Inference weights: fp16 = 2 bytes; int8 like llama.cpp Q8_0 (32 int8 + one fp16 scale per block = 8.5 bits);
# int4 like llama.cpp Q4_0 (32 4-bit values + one fp16 scale per block = 4.5 bits).
INFERENCE_WEIGHT_BYTES = {"fp16": 2.0, "int8": 8.5 / 8, "int4": 4.5 / 8}
KV_CACHE_BYTES = 2  # fp16 keys and values
INFERENCE_OVERHEAD = 0.10  # activations, workspace and runtime buffers, as a fraction of the weights
# Activations of one 16-bit layer, per token of a micro-batch, with FlashAttention (no s×s score matrices):
# 34·h bytes (Korthikanti et al. 2022, "Reducing Activation Recomputation", eq. 1 without its 5·a·s/h
# attention term); with gradient checkpointing only each layer's input is kept: 2·h bytes.
ACTIVATION_BYTES_PER_HIDDEN, CHECKPOINTED_BYTES_PER_HIDDEN = 34, 2
# A shape derived from N alone: Llama-like, 12·L·h² non-embedding parameters, width h = 128·L (GPT-3's
# aspect ratio: 96 layers, h = 12,288; Llama-2-7B: 32 layers, h = 4,096) with L a multiple of 4, head_dim 128
# (so L heads), grouped-query attention with 8 KV heads (or the largest power of two dividing the heads),
# SwiGLU MLP of 8/3·h rounded up to a multiple of 256.
ASPECT_RATIO, DEFAULT_HEAD_DIM, MAX_DERIVED_KV_HEADS = 128, 128, 8

ASSUMPTIONS = [
    "GB = 10^9 bytes; GPU memory as sold (GiB); a GPU count is total memory / one GPU's memory, rounded up "
    "(perfect sharding, no communication buffers).",
    "training FLOPs = 6·N·D; GPU time = FLOPs / (peak dense BF16 FLOP/s × MFU).",
    "full fine-tuning: mixed-precision Adam = 16 bytes/param (BF16 weights 2 + BF16 grads 2 + FP32 master, "
    "momentum, variance 12).",
    "LoRA: frozen BF16 weights (2 bytes/param) + adapter on every linear layer of every block at 16 bytes/param.",
    "QLoRA: NF4 weights with double quantization (4.127 bits/param) + the same adapter.",
    "activations: 34·h bytes per token per layer (16-bit, FlashAttention, micro-batch × context tokens), "
    "2·h with gradient checkpointing; logits and CUDA context not counted.",
    "inference: weights at fp16 2 / int8 8.5 bits (Q8_0) / int4 4.5 bits (Q4_0) per param + fp16 KV cache "
    "(2 · layers · kv_heads · head_dim · context · 2 bytes per sequence) + 10 % of the weights for activations "
    "and buffers.",
]

COUNT = re.compile(r"^\s*(?P<number>[0-9][0-9_,]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*(?P<suffix>[kKmMbBgGtT]?)\s*$")
SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str | float, what: str = "params") -> float:
    """``7e9``, ``7B``, ``1.8b``, ``135M``, ``1.4T`` → a positive number."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        stripped = text.strip()
        if stripped.startswith("-") and COUNT.match(stripped[1:]):
            raise KaiyuanError(f"{what} must be positive, got {stripped}")
        match = COUNT.match(stripped)
        if not match:
            raise KaiyuanError(f"{what}: expected a number like 7e9, 7B, 1.8b or 135M, got {text!r}")
        value = float(match["number"].replace(",", "").replace("_", "")) * SUFFIXES[match["suffix"].lower()]
    if not value > 0 or math.isinf(value):
        raise KaiyuanError(f"{what} must be positive, got {text}")
    return value


@dataclass
class PlanConfig:
    params: str | None = field(default=None, metadata={
        "help": "Parameters: 7e9, 7B, 1.8b, 135M (default with --model: counted from its config.json)."})
    tokens: str | None = field(default=None, metadata={
        "help": "Training tokens (default: Chinchilla-optimal, 20 per parameter)."})
    gpu: str = field(default="h100", metadata={"help": f"Accelerator: {', '.join(GPUS)}."})
    mfu: float = field(default=0.4, metadata={"help": "Model FLOPs utilization, in (0, 1]."})
    context: int = field(default=4096, metadata={"help": "Tokens per sequence (activations and KV cache)."})
    batch_size: int = field(default=1, metadata={"help": "Sequences at once (training micro-batch; inference)."})
    model: str | None = field(default=None, metadata={
        "help": "Read the exact shape from a config.json, a model directory or a registered model."})
    layers: int | None = field(default=None, metadata={"help": "Transformer blocks (default: derived)."})
    hidden: int | None = field(default=None, metadata={"help": "Hidden size (default: derived)."})
    kv_heads: int | None = field(default=None, metadata={"help": "Key/value heads (default: derived)."})
    head_dim: int | None = field(default=None, metadata={"help": "Dimension of one attention head (default 128)."})
    lora_rank: int = field(default=16, metadata={"help": "LoRA / QLoRA rank (adapter on all linear layers)."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Training activations with gradient checkpointing (only each layer's input kept)."})


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int | None = None
    tied_embeddings: bool = True
    source: str = "derived from the parameter count"

    def parameters(self) -> int | None:
        """Llama-style parameter count (embeddings, attention, SwiGLU MLP, RMSNorms); None without a vocab."""
        if self.vocab is None:
            return None
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        block = attention + 3 * self.hidden * self.intermediate + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * block + self.hidden

    def lora_parameters(self, rank: int) -> int:
        """Trainable LoRA parameters with an adapter (r·(in + out)) on q, k, v, o, gate, up and down."""
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_block = ((self.hidden + q_out) + 2 * (self.hidden + kv_out) + (q_out + self.hidden)
                     + 2 * (self.hidden + self.intermediate) + (self.intermediate + self.hidden))
        return rank * self.layers * per_block

    def kv_cache_bytes(self, tokens: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * tokens * KV_CACHE_BYTES


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, float]  # bytes: weights, trainable_state, activations, kv_cache, overhead
    gpu_memory_bytes: float

    @property
    def total_bytes(self) -> float:
        return sum(self.parts.values())

    @property
    def gpus(self) -> int:
        return max(1, math.ceil(self.total_bytes / self.gpu_memory_bytes))

    def to_dict(self) -> dict[str, Any]:
        return {**{f"{k}_bytes": round(v) for k, v in self.parts.items()}, "total_bytes": round(self.total_bytes),
                "total_gb": round(self.total_bytes / GB, 3), "gpus": self.gpus}


@dataclass(frozen=True)
class Plan:
    params: float
    tokens: float
    chinchilla_tokens: float
    training_flops: float
    gpu: str
    accelerator: Accelerator
    mfu: float
    context: int
    batch_size: int
    shape: ModelShape
    lora_rank: int
    training: dict[str, MemoryEstimate]
    inference: dict[str, MemoryEstimate]

    @property
    def pf_days(self) -> float:
        return self.training_flops / PF_DAY

    @property
    def gpu_seconds(self) -> float:
        return self.training_flops / (self.accelerator.peak_flops * self.mfu)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params, "tokens": self.tokens, "tokens_per_param": self.tokens / self.params,
            "chinchilla_tokens": self.chinchilla_tokens, "training_flops": self.training_flops,
            "pf_days": self.pf_days, "gpu": {"key": self.gpu, **asdict(self.accelerator)}, "mfu": self.mfu,
            "gpu_hours": self.gpu_seconds / 3600, "gpu_days": self.gpu_seconds / 86_400, "context": self.context,
            "batch_size": self.batch_size, "shape": asdict(self.shape), "lora_rank": self.lora_rank,
            "lora_params": self.shape.lora_parameters(self.lora_rank),
            "memory": {"training": {k: v.to_dict() for k, v in self.training.items()},
                       "inference": {k: v.to_dict() for k, v in self.inference.items()}},
            "assumptions": ASSUMPTIONS,
        }


def accelerator(name: str) -> Accelerator:
    key = name.strip().lower().removeprefix("nvidia-").removeprefix("nvidia ").replace(" ", "").replace("_", "-")
    key = {"h100-sxm": "h100", "a100-80gb": "a100", "4090": "rtx4090", "3090": "rtx3090"}.get(key, key)
    if key not in GPUS:
        raise KaiyuanError(f"unknown gpu {name!r}; choose one of {', '.join(GPUS)}")
    return GPUS[key]


def derived_shape(params: float) -> ModelShape:
    """A plausible Llama-like shape for ``params`` parameters (see ASPECT_RATIO)."""
    layers = max(2, 4 * round((params / (12 * ASPECT_RATIO**2)) ** (1 / 3) / 4))
    hidden = ASPECT_RATIO * layers
    heads = hidden // DEFAULT_HEAD_DIM
    return ModelShape(layers=layers, hidden=hidden, heads=heads, kv_heads=_grouped_kv_heads(heads),
                      head_dim=DEFAULT_HEAD_DIM, intermediate=_swiglu_width(hidden))


def _grouped_kv_heads(heads: int) -> int:
    """The largest power of two up to MAX_DERIVED_KV_HEADS that divides ``heads``."""
    return max(d for d in (1, 2, 4, 8) if d <= MAX_DERIVED_KV_HEADS and heads % d == 0)


def _swiglu_width(hidden: int) -> int:
    return math.ceil(8 * hidden / 3 / 256) * 256


def _first(config: dict[str, Any], *keys: str) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), None)


def shape_from_config(config: dict[str, Any], source: str) -> ModelShape:
    """The shape in a Hugging Face ``config.json`` (Llama-style keys, GPT-2 names as fallback)."""
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):  # multimodal models
        config = config["text_config"]
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    heads = _first(config, "num_attention_heads", "n_head")
    if not (isinstance(layers, int) and isinstance(hidden, int) and isinstance(heads, int)):
        raise KaiyuanError(f"{source}: no num_hidden_layers / hidden_size / num_attention_heads to read a shape from")
    head_dim = _first(config, "head_dim") or hidden // heads
    return ModelShape(layers=layers, hidden=hidden, heads=heads,
                      kv_heads=_first(config, "num_key_value_heads", "n_kv_heads") or heads, head_dim=head_dim,
                      intermediate=_first(config, "intermediate_size", "n_inner") or 4 * hidden,
                      vocab=_first(config, "vocab_size"), tied_embeddings=bool(config.get("tie_word_embeddings", True)),
                      source=source)


def read_model_config(ref: str) -> tuple[dict[str, Any], str]:
    """A config.json file, a model directory, or a registered model (never downloaded)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():

        found = Registry().find(ref)
        if found is None or not (found.path / "config.json").is_file():
            raise KaiyuanError(f"--model {ref!r}: not a config.json, a model directory or a registered model with "
                               "a config.json")
        path = found.path / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except json.JSONDecodeError as exc:
        raise KaiyuanError(f"{path}: not valid JSON: {exc}") from None


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise KaiyuanError(f"{name} must be a positive integer, got {value}")


def resolve_shape(cfg: PlanConfig, params: float | None) -> ModelShape:
    if cfg.model:
        shape = shape_from_config(*read_model_config(cfg.model))
    elif params is not None:
        shape = derived_shape(params)
    else:
        raise KaiyuanError("give --params (e.g. 7B) or --model (a config.json, model directory or registered model)")
    if cfg.layers is None and cfg.hidden is None and cfg.kv_heads is None and cfg.head_dim is None:
        return shape
    hidden, head_dim = cfg.hidden or shape.hidden, cfg.head_dim or shape.head_dim
    if hidden % head_dim:
        raise KaiyuanError(f"hidden {hidden} is not a multiple of head_dim {head_dim}")
    heads = hidden // head_dim
    kv_heads = cfg.kv_heads or (shape.kv_heads if heads == shape.heads else _grouped_kv_heads(heads))
    if kv_heads > heads or heads % kv_heads:
        raise KaiyuanError(f"kv_heads {kv_heads} must divide the {heads} attention heads")
    intermediate = shape.intermediate if hidden == shape.hidden else _swiglu_width(hidden)
    return ModelShape(layers=cfg.layers or shape.layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                      head_dim=head_dim, intermediate=intermediate, vocab=shape.vocab,
                      tied_embeddings=shape.tied_embeddings, source=f"{shape.source}, with overrides")


def make_plan(cfg: PlanConfig) -> Plan:
    """Compute, time and memory for ``cfg`` (every input checked first, with the exact reason)."""
    if not 0 < cfg.mfu <= 1:
        raise KaiyuanError(f"mfu must be in (0, 1], got {cfg.mfu}")
    for name in ("context", "batch_size", "layers", "hidden", "kv_heads", "head_dim", "lora_rank"):
        _positive(name, getattr(cfg, name))
    gpu = accelerator(cfg.gpu)
    params = parse_count(cfg.params, "params") if cfg.params is not None else None
    shape = resolve_shape(cfg, params)
    if params is None:
        counted = shape.parameters()
        if counted is None:
            raise KaiyuanError(f"{shape.source}: no vocab_size to count parameters; give --params")
        params = float(counted)
    chinchilla = CHINCHILLA_TOKENS_PER_PARAM * params
    tokens = parse_count(cfg.tokens, "tokens") if cfg.tokens is not None else chinchilla
    return Plan(params=params, tokens=tokens, chinchilla_tokens=chinchilla, training_flops=6 * params * tokens,
                gpu=cfg.gpu, accelerator=gpu, mfu=cfg.mfu, context=cfg.context, batch_size=cfg.batch_size,
                shape=shape, lora_rank=cfg.lora_rank,
                training=training_memory(params, shape, cfg, gpu.memory_bytes),
                inference=inference_memory(params, shape, cfg.context * cfg.batch_size, gpu.memory_bytes))


def training_memory(params: float, shape: ModelShape, cfg: PlanConfig, gpu_bytes: float
                    ) -> dict[str, MemoryEstimate]:
    per_hidden = CHECKPOINTED_BYTES_PER_HIDDEN if cfg.gradient_checkpointing else ACTIVATION_BYTES_PER_HIDDEN
    activations = per_hidden * shape.hidden * shape.layers * cfg.context * cfg.batch_size
    adapter_state = 16 * shape.lora_parameters(cfg.lora_rank)
    return {
        "full": MemoryEstimate({"weights": FULL_WEIGHT_BYTES * params,
                                "trainable_state": (FULL_GRADIENT_BYTES + FULL_OPTIMIZER_BYTES) * params,
                                "activations": activations}, gpu_bytes),
        "lora": MemoryEstimate({"weights": FROZEN_BF16_BYTES * params, "trainable_state": adapter_state,
                                "activations": activations}, gpu_bytes),
        "qlora": MemoryEstimate({"weights": NF4_BYTES * params, "trainable_state": adapter_state,
                                 "activations": activations}, gpu_bytes),
    }


def inference_memory(params: float, shape: ModelShape, tokens: int, gpu_bytes: float) -> dict[str, MemoryEstimate]:
    kv_cache = shape.kv_cache_bytes(tokens)
    return {precision: MemoryEstimate({"weights": bytes_per_param * params, "kv_cache": kv_cache,
                                       "overhead": INFERENCE_OVERHEAD * bytes_per_param * params}, gpu_bytes)
            for precision, bytes_per_param in INFERENCE_WEIGHT_BYTES.items()}
