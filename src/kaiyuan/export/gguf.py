"""GGUF export with llama.cpp's own converter and quantizer, checked against the transformers model.

**Converter.** ``convert_hf_to_gguf.py`` (llama.cpp, MIT) ships in llama-cpp-python's source distribution, not in
its wheel, so it is located at run time: ``--converter PATH`` or ``$KAIYUAN_GGUF_CONVERTER`` (the script, a
llama.cpp checkout, or a llama-cpp-python sdist ``.tar.gz``); else the sdist of the *installed* llama-cpp-python
version in ``~/.cache/kaiyuan`` or ``<venv>/share/kaiyuan``, whose converter, ``conversion/`` and ``gguf-py/`` are
extracted once into ``KAIYUAN_HOME/cache/llama.cpp``. It runs in a subprocess next to llama.cpp's own gguf-py, so
the GGUF is written by the same llama.cpp that reads it. Two additions: a byte-level BPE tokenizer whose
pre-tokenizer is exactly GPT-2's (no normalizer, GPT-2 regex, no prefix space) but whose hash the converter does
not know is converted as ``gpt-2`` (the tokenization check below verifies it), and ``general.license`` is written
from the registry (the converter's metadata override file cannot set it).

**Quantizer.** ``llama_model_quantize`` from the llama-cpp-python bindings, from an f16 conversion as llama.cpp
does it; a registered f16 export of the same model by the same converter is reused. k-quants need rows of a
multiple of 256 values; llama.cpp then falls back per tensor (q4_K → q5_0, q6_K → q8_0): the tensor types are
recorded.

**Checks** (in the export's manifest metrics): the embedded ``tokenizer.chat_template`` equals the model's;
llama.cpp tokenizes a few prompts exactly as transformers does; greedy continuations equal transformers' (required
for f16, recorded for quantized files); perplexity of both on a short text and its relative drift.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess  # nosec B404: argv lists, never a shell
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import cache_dir
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import load_model

CONVERTER_ENV = "KAIYUAN_GGUF_CONVERTER"
SCRIPT = "convert_hf_to_gguf.py"
SDIST_PARTS = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
FALLBACK_MARKER = "kaiyuan: unknown BPE pre-tokenizer converted as "
CHECK_PROMPTS = ("Convert March 5, 1999 to ISO format:", "The quick brown fox jumps over the lazy dog and")
CHAT_PROMPT = "What is an open source model?"
PERPLEXITY_TEXT = (
    "An open model is more than its weights. Its training data, the code that trained it, the evaluation that "
    "measured it and the license that governs it all decide what others can do with it. Exporting a model to a "
    "single file for a laptop must not change what it says: the file is checked against the original, token by "
    "token, before it is registered. Dates such as 1999-03-05, 2024-11-22 and 2001-01-01 appear in the examples, "
    "and so do plain questions: what is the format, how can I help, please answer with the date only.")
PERPLEXITY_MAX_TOKENS = 256


@dataclass(frozen=True)
class Quant:
    name: str
    llama_ftype: str | None = None  # None: the converter writes it; else llama_model_quantize from f16 to this
    exact_greedy: bool = False  # greedy decoding must equal transformers' token for token


QUANTS = {
    "f16": Quant("f16", exact_greedy=True),
    "q8_0": Quant("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0"),
    "q4_k_m": Quant("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M"),
}


class GGUFCheckError(KaiyuanError):
    """The GGUF file does not reproduce the model it was exported from."""


# ------------------------------------------------------------------------------------------------ converter


@dataclass(frozen=True)
class Converter:
    script: Path
    origin: str  # where it was found
    llama_cpp_python: str | None  # the llama-cpp-python release it came with (None: unknown)
    gguf_py: str | None  # version of the gguf-py beside it
    sha256: str

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "script": str(self.script)}


def installed_llama_cpp_python() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def sdist_dirs() -> list[Path]:
    """Where a downloaded llama-cpp-python sdist is looked for."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaiyuan"
    return [user_cache, Path(sys.prefix) / "share" / "kaiyuan"]


def missing_converter_message(version: str | None) -> str:
    pin = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    return (f"no llama.cpp GGUF converter found: {SCRIPT} ships in llama-cpp-python's source distribution, not in "
            f"its wheel. Download it with\n  python -m pip download --no-deps --no-binary :all: {pin} "
            f"-d {sdist_dirs()[0]}\nor pass --converter PATH (or set {CONVERTER_ENV}) to {SCRIPT}, a llama.cpp "
            "checkout, or a llama-cpp-python sdist .tar.gz")


def locate_converter(explicit: str | None = None) -> Converter:
    """The converter: ``explicit``, else ``$KAIYUAN_GGUF_CONVERTER``, else the installed version's sdist."""
    if explicit:
        return _converter_at(Path(explicit).expanduser(), "--converter")
    if os.environ.get(CONVERTER_ENV):
        return _converter_at(Path(os.environ[CONVERTER_ENV]).expanduser(), f"${CONVERTER_ENV}")
    version = installed_llama_cpp_python()
    if version:
        for directory in sdist_dirs():
            sdist = directory / f"llama_cpp_python-{version}.tar.gz"
            if sdist.is_file():
                return _from_sdist(sdist, f"sdist {sdist}")
    raise KaiyuanError(missing_converter_message(version))


def _converter_at(path: Path, origin: str) -> Converter:
    if path.name.endswith(".tar.gz") and path.is_file():
        return _from_sdist(path, f"sdist {path} ({origin})")
    if path.is_dir():
        for script in (path / SCRIPT, path / "vendor" / "llama.cpp" / SCRIPT):
            if script.is_file():
                return _describe(script, f"{path} ({origin})", None)
    elif path.is_file() and path.suffix == ".py":
        return _describe(path, f"{path} ({origin})", None)
    raise KaiyuanError(f"{path} ({origin}): not {SCRIPT}, a llama.cpp checkout or a llama-cpp-python sdist .tar.gz")


def _describe(script: Path, origin: str, version: str | None) -> Converter:
    pyproject = script.parent / "gguf-py" / "pyproject.toml"
    found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE) if pyproject.is_file() else None
    return Converter(script.resolve(), origin, version, found.group(1) if found else None,
                     hashlib.sha256(script.read_bytes()).hexdigest())


def _from_sdist(sdist: Path, origin: str) -> Converter:
    """Extract llama.cpp's converter, its ``conversion`` package and gguf-py from the sdist (once per home)."""
    stem = sdist.name.removesuffix(".tar.gz")
    version = stem.removeprefix("llama_cpp_python-") if stem.startswith("llama_cpp_python-") else None
    target = cache_dir() / "llama.cpp" / stem
    if not (target / SCRIPT).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=target.parent))
        try:
            _extract_converter(sdist, staging)
            if not (staging / SCRIPT).is_file():
                raise KaiyuanError(f"{sdist}: no vendor/llama.cpp/{SCRIPT} inside")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _describe(target / SCRIPT, origin, version)


def _extract_converter(sdist: Path, out: Path) -> None:
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/", 3)  # <stem>/vendor/llama.cpp/<relative>
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"] or not member.isfile():
                continue
            relative = parts[3]
            if ".." in relative.split("/") or not any(relative == p or (p.endswith("/") and relative.startswith(p))
                                                      for p in SDIST_PARTS):
                continue
            destination = out / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            destination.write_bytes(source.read())


def gpt2_pre_tokenizer(model_dir: Path) -> bool:
    """True when ``tokenizer.json`` splits text exactly as GPT-2 does (llama.cpp's ``gpt-2`` pre-tokenizer)."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return False
    spec = json.loads(path.read_text(encoding="utf-8"))
    pre = spec.get("pre_tokenizer") or {}
    return ((spec.get("model") or {}).get("type") == "BPE" and spec.get("normalizer") is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"))


def run_converter_process(argv: list[str]) -> None:
    """Subprocess entry (``python -m kaiyuan.export.gguf SCRIPT ARGS…``): run llama.cpp's converter."""
    script = Path(argv[0]).resolve()
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))
    if "NO_LOCAL_GGUF" not in os.environ:  # as the script itself does: llama.cpp's gguf-py first
        sys.path.insert(1, str(script.parent / "gguf-py"))
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    text_model = getattr(module, "TextModel", None) or sys.modules["conversion.base"].TextModel
    recognize = text_model.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return recognize(self, tokenizer)
        except NotImplementedError:
            if not gpt2_pre_tokenizer(Path(self.dir_model)):
                raise
            print(f"{FALLBACK_MARKER}gpt-2", file=sys.stderr)
            return "gpt-2"

    text_model.get_vocab_base_pre = get_vocab_base_pre

    metadata_class = sys.modules["gguf"].Metadata  # its override file sets general.license.name, not the license
    load_metadata = metadata_class.load

    def load_with_license(override: Path | None = None, *args: Any, **kwargs: Any) -> Any:
        metadata = load_metadata(override, *args, **kwargs)
        metadata.license = metadata_class.load_metadata_override(override).get("general.license", metadata.license)
        return metadata

    metadata_class.load = staticmethod(load_with_license)
    module.main()


def convert(model_dir: Path, out: Path, outtype: str, converter: Converter, metadata: dict[str, Any]) -> str | None:
    """Convert a transformers model directory to ``out``; returns the pre-tokenizer fallback used, if any."""
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        override = Path(tmp) / "metadata.json"
        override.write_text(json.dumps(metadata), encoding="utf-8")
        done = subprocess.run(  # nosec B603: llama.cpp's converter with our argv list
            [sys.executable, "-m", "kaiyuan.export.gguf", str(converter.script), str(model_dir), "--outfile",
             str(out), "--outtype", outtype, "--metadata", str(override)],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise KaiyuanError(f"{converter.script} could not convert {model_dir} (exit {done.returncode}):\n{tail}")
    found = re.search(re.escape(FALLBACK_MARKER) + r"(\S+)", done.stderr)
    return found.group(1) if found else None


def quantize(source: Path, out: Path, llama_ftype: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, llama_ftype)
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0 or not out.is_file():
        raise KaiyuanError(f"llama_model_quantize({llama_ftype}) failed on {source} (status {status})")


# ------------------------------------------------------------------------------------------------ checks


def read_gguf(path: Path) -> dict[str, Any]:
    """The metadata the checks and the Modelfile need, and the tensor types."""
    import llama_cpp
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def value(key: str) -> Any:
        found = reader.fields.get(key)
        return found.contents() if found is not None else None

    architecture = value("general.architecture")
    file_type = value("general.file_type")
    name = llama_cpp.llama_ftype_name(int(file_type)) if file_type is not None else None
    return {"architecture": architecture, "chat_template": value("tokenizer.chat_template"),
            "context_length": value(f"{architecture}.context_length"), "file_type": name.decode() if name else None,
            "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items()))}


def check_prompts(tokenizer: Any) -> list[tuple[str, list[int], bool]]:
    """(text, transformers token ids, whether special tokens are added) for the greedy and tokenization checks."""
    prompts = [(text, tokenizer(text).input_ids, True) for text in CHECK_PROMPTS]
    if tokenizer.chat_template:
        chat = tokenizer.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}], tokenize=False,
                                             add_generation_prompt=True)
        prompts.insert(0, (chat, tokenizer(chat, add_special_tokens=False).input_ids, False))
    return prompts


def greedy_transformers(model: Any, ids: list[int], n: int) -> tuple[list[int], Any]:
    """``n`` greedy tokens after ``ids`` (no stop at EOS) and the prompt's logits."""
    import torch

    out: list[int] = []
    past, step = None, torch.tensor([ids])
    with torch.no_grad():
        for i in range(n):
            result = model(input_ids=step, past_key_values=past, use_cache=True)
            if i == 0:
                prompt_logits = result.logits[0].float().numpy()
            past = result.past_key_values
            out.append(int(result.logits[0, -1].argmax()))
            step = torch.tensor([[out[-1]]])
    return out, prompt_logits


def greedy_llama(llm: Any, ids: list[int], n: int) -> tuple[list[int], Any]:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    prompt_logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    out: list[int] = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out, prompt_logits


def perplexity(logits: Any, ids: list[int]) -> float:
    """exp(mean NLL) of ``ids[1:]`` given the logits at the positions before them."""
    import numpy as np

    rows = np.asarray(logits[: len(ids) - 1], dtype=np.float64)
    rows = rows - rows.max(-1, keepdims=True)
    log_probs = rows - np.log(np.exp(rows).sum(-1, keepdims=True))
    return float(math.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean()))


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))


@dataclass
class GGUFFacts:
    """What llama.cpp reads from the file (the Modelfile is written from these)."""

    chat_template: str | None
    context_length: int
    add_bos: bool
    bos: str
    eos: str


def check_gguf(path: Path, model: Any, tokenizer: Any, quant: Quant, greedy_tokens: int = 16,
               perplexity_text: str = PERPLEXITY_TEXT) -> tuple[dict[str, Any], list[str], GGUFFacts]:
    """Compare the GGUF file run by llama.cpp with the transformers model: (metrics, failed checks, facts)."""
    import torch
    from llama_cpp import Llama

    info = read_gguf(path)
    context = int(info["context_length"] or 2048)
    text_ids = tokenizer(perplexity_text).input_ids[: min(PERPLEXITY_MAX_TOKENS, context - 1)]
    prompts = check_prompts(tokenizer)
    n_ctx = min(context, max([len(text_ids)] + [len(ids) + greedy_tokens for _, ids, _ in prompts]) + 8)
    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False)
    try:
        tokenization = [llm.tokenize(text.encode(), add_bos=special, special=True) == ids
                        for text, ids, special in prompts]
        greedy, logit_diff = [], 0.0
        for _, ids, _ in prompts:
            expected, hf_logits = greedy_transformers(model, ids, greedy_tokens)
            got, gguf_logits = greedy_llama(llm, ids, greedy_tokens)
            greedy.append((expected, got))
            logit_diff = max(logit_diff, float(abs(hf_logits - gguf_logits).max()))
        llm.reset()
        llm.eval(text_ids)
        ppl_gguf = perplexity(llm.scores, text_ids)
        facts = GGUFFacts(info["chat_template"], context, bool(llm._model.add_bos_token()),
                          llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else "",
                          llm._model.token_get_text(llm.token_eos()) if llm.token_eos() >= 0 else "")
    finally:
        llm.close()
    with torch.no_grad():
        ppl_hf = perplexity(model(input_ids=torch.tensor([text_ids])).logits[0].float().numpy(), text_ids)
    matched = sum(expected == got for expected, got in greedy)
    metrics = {
        "chat_template_embedded": info["chat_template"] == tokenizer.chat_template,
        "tokenization_match": all(tokenization),
        "greedy_match": matched == len(greedy), "greedy_prompts_matched": f"{matched}/{len(greedy)}",
        "greedy_tokens": greedy_tokens,
        # share of greedy tokens generated before the first divergence
        "greedy_prefix_agreement": sum(_common_prefix(e, g) for e, g in greedy) / (greedy_tokens * len(greedy)),
        "prompt_logits_max_abs_diff": logit_diff,
        "perplexity_tokens": len(text_ids), "perplexity_transformers": ppl_hf, "perplexity_gguf": ppl_gguf,
        "perplexity_drift": ppl_gguf / ppl_hf - 1,
        "file_type": info["file_type"], "tensor_types": info["tensor_types"],
    }
    failed = [name for name, ok in (("chat_template_embedded", metrics["chat_template_embedded"]),
                                    ("tokenization_match", metrics["tokenization_match"]),
                                    ("greedy_match", metrics["greedy_match"] or not quant.exact_greedy),
                                    ("perplexity_drift", math.isfinite(metrics["perplexity_drift"]))) if not ok]
    return metrics, failed, facts


# ------------------------------------------------------------------------------------------------ export


@dataclass
class GGUFFile:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    facts: GGUFFacts


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def registered_gguf(source: Artifact, quant: str, converter: Converter, registry: Registry) -> Artifact | None:
    """The newest registered GGUF (or Ollama) export of ``source`` at ``quant`` made by the same converter, whose
    files still match its manifest (a damaged one is not copied into a new export)."""
    for artifact in reversed(registry.children(source.id, "quantized", "export")):
        config, metrics = artifact.manifest.get("config", {}), artifact.manifest.get("metrics", {})
        if (config.get("format") in ("gguf", "ollama") and config.get("source_model") == source.id
                and config.get("quant") == quant and config.get("converter", {}).get("sha256") == converter.sha256
                and not metrics.get("checks_failed") and (artifact.path / config.get("file", "")).is_file()
                and registry.is_intact(artifact)):
            return artifact
    return None


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # artifacts are immutable: sharing the bytes is safe
    except OSError:
        shutil.copyfile(source, target)


def make_gguf(source: Artifact, out: Path, quant: Quant, converter: Converter, registry: Registry
              ) -> tuple[str, str | None]:
    """Write ``out``: a copy of a registered export at this quant, a quantization of a registered f16 export, or a
    fresh conversion (f16 first when quantizing, as llama.cpp does). Returns (how it was made, pre-tokenizer
    fallback)."""
    for reuse_quant in (quant.name, "f16"):
        reused = registered_gguf(source, reuse_quant, converter, registry)
        if reused is None:
            continue
        made_from = reused.path / reused.manifest["config"]["file"]
        fallback = reused.manifest["config"].get("pre_tokenizer_fallback")
        if reuse_quant == quant.name:
            link_or_copy(made_from, out)
            return f"copied from {reused.id}", fallback
        assert quant.llama_ftype is not None
        quantize(made_from, out, quant.llama_ftype)
        return f"quantized from {reused.id}", fallback
    metadata = {"general.name": source.name, "general.license": source.license}
    if quant.llama_ftype is None:
        return "converted", convert(source.path, out, quant.name, converter, metadata)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        intermediate = Path(tmp) / "model-f16.gguf"
        fallback = convert(source.path, intermediate, "f16", converter, metadata)
        quantize(intermediate, out, quant.llama_ftype)
    return "converted to f16, then quantized", fallback


def write_gguf(source: Artifact, directory: Path, quant: str = "f16", converter: str | None = None,
               greedy_tokens: int = 16, perplexity_text: str | None = None, allow_mismatch: bool = False,
               registry: Registry | None = None) -> GGUFFile:
    """Convert (and quantize) ``source`` into ``directory``, then check the file against the transformers model."""

    if quant not in QUANTS:
        raise KaiyuanError(f"unknown quantization {quant!r}: choose {', '.join(QUANTS)}")
    if source.kind != "model":
        raise KaiyuanError(f"{source.id} is a {source.kind}; GGUF export needs a model (merge an adapter first)")
    if greedy_tokens < 1:
        raise KaiyuanError("greedy_tokens must be at least 1")
    registry = registry or Registry()
    spec, found = QUANTS[quant], locate_converter(converter)
    out = directory / f"{file_stem(source.name)}-{quant}.gguf"
    made, fallback = make_gguf(source, out, spec, found, registry)
    loaded = load_model(source, registry)
    metrics, failed, facts = check_gguf(out, loaded.model, loaded.tokenizer, spec, greedy_tokens,
                                        perplexity_text or PERPLEXITY_TEXT)
    if failed and not allow_mismatch:
        raise GGUFCheckError(
            f"the {quant} GGUF of {source.id} failed its checks ({', '.join(failed)}): " + json.dumps(
                {k: metrics[k] for k in ("chat_template_embedded", "tokenization_match", "greedy_prompts_matched",
                                         "perplexity_drift")}) + "; nothing was registered (--allow-mismatch "
            "registers it anyway, with the failures recorded)")
    llama_version = installed_llama_cpp_python()
    config = {"stage": "export", "format": "gguf", "quant": quant, "llama_ftype": spec.llama_ftype,
              "source_model": source.id, "file": out.name, "made": made, "converter": found.record(),
              "pre_tokenizer_fallback": fallback,
              "quantizer": f"llama_cpp.llama_model_quantize (llama-cpp-python {llama_version})"
              if spec.llama_ftype else None, "checked_with": f"llama-cpp-python {llama_version}",
              "greedy_tokens": greedy_tokens, "perplexity_text": "custom" if perplexity_text else "built-in"}
    return GGUFFile(out, config, {**metrics, "checks_failed": failed}, facts)


def export_gguf(source: Artifact, quant: str = "f16", name: str | None = None, converter: str | None = None,
                greedy_tokens: int = 16, perplexity_text: str | None = None, allow_mismatch: bool = False,
                registry: Registry | None = None) -> Artifact:
    """Register ``source`` as a checked GGUF file (kind ``export``, relation ``quantized``)."""
    with ArtifactWriter("export", name or f"{source.name}-{quant}-gguf", license=source.license,
                        source=f"kaiyuan export gguf (llama.cpp {SCRIPT} + llama_model_quantize)",
                        parents=[Parent(source.id, "quantized")], stage="export", registry=registry) as writer:
        made = write_gguf(source, writer.path, quant, converter, greedy_tokens, perplexity_text, allow_mismatch,
                          registry)
        writer.config, writer.metrics, writer.chat_template = made.config, made.metrics, made.facts.chat_template
    assert writer.artifact is not None
    return writer.artifact


if __name__ == "__main__":
    run_converter_process(sys.argv[1:])
