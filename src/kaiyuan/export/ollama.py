"""Ollama export: the checked GGUF file plus a Modelfile (FROM, TEMPLATE, PARAMETER, LICENSE).

Ollama templates are Go templates, not Jinja. The model's Jinja chat template is recognized as one of a few
families (ChatML, Llama 3, Gemma, Zephyr) and each family's Go template is generated from one description of its
turns, which also renders the check conversations in Python: the export records whether the Jinja template and
the generated one render them identically. An unrecognized template is an error unless ``--template`` names a
family or a file holding an Ollama Go template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan import __version__
from kaiyuan.errors import KaiyuanError
from kaiyuan.export.gguf import GGUFFacts, write_gguf
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import load_tokenizer

DEFAULT_TEMPERATURE = 0.7  # when the model's generation_config.json names none
MAX_NUM_CTX = 4096
WEIGHT_RELATIONS = ("base_model", "finetune", "adapter", "merge", "quantized")
LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENCE.txt")
GENERATION_PARAMETERS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                         "repetition_penalty": "repeat_penalty"}
CHECK_CONVERSATIONS = {
    "without_system": [{"role": "user", "content": "Convert March 5, 1999 to ISO format."},
                       {"role": "assistant", "content": "1999-03-05"},
                       {"role": "user", "content": "And May 1, 2001?"}],
    "with_system": [{"role": "system", "content": "Reply with the date only."},
                    {"role": "user", "content": "Convert March 5, 1999 to ISO format."},
                    {"role": "assistant", "content": "1999-03-05"},
                    {"role": "user", "content": "And May 1, 2001?"}],
}


@dataclass(frozen=True)
class TemplateFamily:
    name: str
    marker: str  # text that identifies the family in a Jinja template
    turn: str  # one message, with {role} and {content}
    generation: str  # what add_generation_prompt appends
    stops: tuple[str, ...]
    prefix: str = ""  # text the template writes before the first message (unless it is the BOS llama.cpp adds)
    roles: tuple[tuple[str, str], ...] = ()  # role renames (Gemma: assistant → model)

    def render(self, messages: list[dict[str, str]], prefix: str, system: str | None = None) -> str:
        """The text Ollama makes of ``messages`` (with the generation prompt) from the generated Go template, and
        ``system`` as the Modelfile's SYSTEM (Ollama puts it first when the conversation has no system message)."""
        if system is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
        roles = dict(self.roles)
        turns = (self.turn.replace("{role}", roles.get(m["role"], m["role"])).replace("{content}", m["content"])
                 for m in messages)
        return prefix + "".join(turns) + self.generation

    def default_system(self, rendered: str, messages: list[dict[str, str]], prefix: str) -> str | None:
        """The system message a Jinja template adds to a conversation without one (SmolLM2, Qwen …), if any."""
        rest = self.render(messages, "")
        head = rendered[len(prefix):len(rendered) - len(rest)] if rendered.endswith(rest) else ""
        before, _, after = self.turn.replace("{role}", dict(self.roles).get("system", "system")).partition("{content}")
        if (not rendered.startswith(prefix) or len(head) < len(before) + len(after) or not head.startswith(before)
                or not head.endswith(after)):
            return None
        return head[len(before):len(head) - len(after)]

    def go_template(self, prefix: str) -> str:
        role = "{{ .Role }}"
        if self.roles:
            role = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{old}" }}}}{new}'
                           for i, (old, new) in enumerate(self.roles)) + "{{ else }}{{ .Role }}{{ end }}"
        turn = self.turn.replace("{role}", role).replace("{content}", "{{ .Content }}")
        return f"{prefix}{{{{ range .Messages }}}}{turn}{{{{ end }}}}{self.generation}"


FAMILIES = (
    TemplateFamily("chatml", "<|im_start|>", "<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n",
                   ("<|im_start|>", "<|im_end|>")),
    TemplateFamily("llama3", "<|start_header_id|>", "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
                   "<|start_header_id|>assistant<|end_header_id|>\n\n",
                   ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), prefix="<|begin_of_text|>"),
    TemplateFamily("gemma", "<start_of_turn>", "<start_of_turn>{role}\n{content}<end_of_turn>\n",
                   "<start_of_turn>model\n", ("<start_of_turn>", "<end_of_turn>"),
                   roles=(("assistant", "model"), ("system", "user"))),
    TemplateFamily("zephyr", "<|assistant|>", "<|{role}|>\n{content}</s>\n", "<|assistant|>\n",
                   ("<|system|>", "<|user|>", "<|assistant|>", "</s>")),
)


def detect_family(jinja_template: str | None) -> TemplateFamily | None:
    for family in FAMILIES:
        if jinja_template and family.marker in jinja_template:
            return family
    return None


@dataclass
class OllamaTemplate:
    text: str  # the Go template
    stops: tuple[str, ...]
    family: str  # a family name, or "custom"
    check: dict[str, bool | None]  # per check conversation: Jinja and Go render the same (None: not checked)
    system: str | None = None  # the default system message (the Modelfile's SYSTEM)


def _family_by_name(name: str) -> TemplateFamily | None:
    return next((f for f in FAMILIES if f.name == name), None)


def translate_template(tokenizer: Any, facts: GGUFFacts, template: str | None = None) -> OllamaTemplate:
    """The Ollama template for the model: its Jinja template's family, or ``template`` (a family name or a file)."""
    family = _family_by_name(template) if template else detect_family(tokenizer.chat_template)
    if template and family is None:
        path = Path(template).expanduser()
        if not path.is_file():
            raise KaiyuanError(f"--template {template!r}: neither a template family "
                               f"({', '.join(f.name for f in FAMILIES)}) nor a file with an Ollama Go template")
        return OllamaTemplate(path.read_text(encoding="utf-8"), (facts.eos,), "custom",
                              dict.fromkeys(CHECK_CONVERSATIONS))
    if family is None:
        raise KaiyuanError(
            "cannot translate the model's chat template to an Ollama template: it is none of "
            f"{', '.join(f.name for f in FAMILIES)}; pass --template with a family name or a file holding an Ollama "
            "Go template" + ("" if tokenizer.chat_template else " (the model has no chat template)"))
    rendered = {}
    for key, messages in CHECK_CONVERSATIONS.items():
        try:
            rendered[key] = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # e.g. a template that refuses system messages
            rendered[key] = None
    first = rendered["without_system"] or ""
    best: tuple[str, str | None, dict[str, bool | None]] | None = None
    for prefix in dict.fromkeys(p for p in ("", family.prefix, facts.bos) if first.startswith(p)):
        # the text before the first message: nothing, the family's own (<|begin_of_text|>) or the BOS token
        system = family.default_system(first, CHECK_CONVERSATIONS["without_system"], prefix)
        check: dict[str, bool | None] = {
            key: text is not None and text == family.render(CHECK_CONVERSATIONS[key], prefix, system)
            for key, text in rendered.items()}
        if best is None or sum(map(bool, check.values())) > sum(map(bool, best[2].values())):
            best = (prefix, system, check)
    assert best is not None
    prefix, system, check = best
    if template is None and not any(check.values()):
        raise KaiyuanError(
            f"the model's chat template looks like {family.name} but renders the check conversations differently "
            f"from it; pass --template with a family name or a file holding an Ollama Go template")
    go_prefix = "" if facts.add_bos and prefix == facts.bos else prefix  # llama.cpp adds that BOS itself
    return OllamaTemplate(family.go_template(go_prefix), family.stops, family.name, check, system)


def sampling_parameters(model_dir: Path, facts: GGUFFacts) -> dict[str, Any]:
    """PARAMETER lines: sampling defaults from generation_config.json, and the context length (capped)."""
    config_file = model_dir / "generation_config.json"
    generation = json.loads(config_file.read_text()) if config_file.is_file() else {}
    parameters = {ollama: generation[hf] for hf, ollama in GENERATION_PARAMETERS.items()
                  if generation.get(hf) is not None}
    parameters.setdefault("temperature", DEFAULT_TEMPERATURE)
    parameters["num_ctx"] = min(facts.context_length, MAX_NUM_CTX)
    return parameters


def license_text(source: Artifact, registry: Registry) -> str:
    """The first license file of the model or the models it was made from, else the SPDX identifier."""
    directories = [source.path] + [registry.get(node["id"]).path for node in registry.lineage(source.id)
                                   if node["relation"] in WEIGHT_RELATIONS and not node.get("missing")]
    for directory in directories:
        for name in LICENSE_FILES:
            if (directory / name).is_file():
                return (directory / name).read_text(encoding="utf-8", errors="replace").strip()
    return f"SPDX-License-Identifier: {source.license}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(text: str) -> str:
    return '"""' + text.replace('"""', "'''") + '"""'  # the delimiter of a Modelfile block cannot appear inside


def modelfile(gguf_name: str, template: OllamaTemplate, parameters: dict[str, Any], license: str,
              header: str) -> str:
    lines = [f"# {header}", f"FROM ./{gguf_name}", f"TEMPLATE {_block(template.text)}"]
    if template.system is not None:
        lines.append(f"SYSTEM {_block(template.system)}")
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in template.stops]
    lines += [f"PARAMETER {key} {value}" for key, value in parameters.items()]
    lines.append(f"LICENSE {_block(license)}")
    return "\n".join(lines) + "\n"


def export_ollama(source: Artifact, quant: str = "f16", name: str | None = None, template: str | None = None,
                  converter: str | None = None, greedy_tokens: int = 16, perplexity_text: str | None = None,
                  allow_mismatch: bool = False, registry: Registry | None = None) -> Artifact:
    """Register the checked GGUF with its Modelfile and LICENSE (kind ``export``, relation ``quantized``).

    Create the Ollama model with ``ollama create NAME -f <artifact>/Modelfile``."""
    registry = registry or Registry()
    tokenizer = load_tokenizer(source.path)
    if (_family_by_name(template) if template else detect_family(tokenizer.chat_template)) is None:
        translate_template(tokenizer, GGUFFacts(None, 0, False, "", ""), template)  # unknown: fail before converting
    with registry.writer("export", name or f"{source.name}-{quant}-ollama", license=source.license,
                         source="kaiyuan export ollama (GGUF + Modelfile)", stage="export",
                         parents=[Parent(source.id, "quantized")]) as writer:
        made = write_gguf(source, writer.path, quant, converter, greedy_tokens, perplexity_text, allow_mismatch,
                          registry)
        translated = translate_template(tokenizer, made.facts, template)
        license = license_text(source, registry)
        header = f"{source.name} ({source.id}) as a {quant} GGUF, exported by kaiyuan {__version__}"
        (writer.path / "Modelfile").write_text(
            modelfile(made.path.name, translated, sampling_parameters(source.path, made.facts), license, header),
            encoding="utf-8")
        (writer.path / "LICENSE").write_text(license + "\n", encoding="utf-8")
        writer.config = {**made.config, "format": "ollama", "template_family": translated.family,
                         "template_argument": template, "default_system": translated.system}
        writer.metrics = {**made.metrics, "ollama_template_check": translated.check}
        writer.chat_template = made.facts.chat_template
    assert writer.artifact is not None
    return writer.artifact
