"""Chat templates: render conversations and build the assistant-only label mask.

The mask is found from the template itself, so it works with any template (ChatML, Llama 3, Zephyr, …)
and needs no ``{% generation %}`` markers: the text of assistant turn *i* is what rendering
``messages[: i + 1]`` adds to ``messages[:i]`` rendered with the generation prompt. Tokens that start
inside those character spans (the reply and its end-of-turn marker) are the ones trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaiyuan.errors import KaiyuanError


class TemplateError(KaiyuanError):
    pass


@dataclass
class EncodedChat:
    input_ids: list[int]
    assistant_masks: list[int]
    text: str
    assistant_spans: list[tuple[int, int]]


def chat_template_of(tokenizer: Any, chat_template: str | None = None) -> str:
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise TemplateError("the tokenizer has no chat template; pass one (a Jinja string) explicitly")
    return template


PROBE = "\x00kaiyuan-reply\x00"  # a reply no template changes and no header contains


def render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False,
           chat_template: str | None = None) -> str:
    """The conversation as the template renders it. The empty conversation (which transformers refuses) renders
    as ""; with the generation prompt, as what the template puts before a reply that opens a conversation (the
    assistant header, and any system prompt the template injects)."""
    template = chat_template_of(tokenizer, chat_template)
    if not messages:
        if not add_generation_prompt:
            return ""
        probe = tokenizer.apply_chat_template([{"role": "assistant", "content": PROBE}], tokenize=False,
                                              chat_template=template)
        if PROBE not in probe:
            raise TemplateError("the chat template does not render an assistant reply as it is; the assistant "
                                "mask cannot be derived from it")
        return probe[: probe.index(PROBE)]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         chat_template=template)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]],
                    chat_template: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn in it."""
    full = render(tokenizer, messages, chat_template=chat_template)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True, chat_template=chat_template)
        through = render(tokenizer, messages[: i + 1], chat_template=chat_template)
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise TemplateError(
                f"the chat template does not render conversations as prefixes of each other (turn {i}); "
                "the assistant mask cannot be derived from it")
        turn = full[len(before): len(through)]
        spans.append((len(before), len(before) + len(turn.rstrip())))
    return full, spans


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None) -> EncodedChat:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 exactly on assistant tokens."""
    text, spans = assistant_spans(tokenizer, messages, chat_template)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, _end in encoded["offset_mapping"]:
        mask.append(int(any(lo <= start < hi for lo, hi in spans)))
    return EncodedChat(list(encoded["input_ids"]), mask, text, spans)


def prompt_text(tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None) -> str:
    """The prompt for generating the next assistant turn."""
    return render(tokenizer, messages, add_generation_prompt=True, chat_template=chat_template)


def end_of_turn_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an assistant turn: the EOS plus common end-of-turn markers the vocabulary has."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return sorted(ids)
