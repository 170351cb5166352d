"""``tiny-llama``: a tiny random Llama with a small trained tokenizer and a chat template.

Deterministic from a seed (same seed → byte-identical files), built in seconds on a CPU. For tests and
quick tries of every stage, not for quality.
"""

from __future__ import annotations

import random
from pathlib import Path

from kaiyuan.dates import date_example

CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '</s>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    ),
}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<|begin_of_text|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "</s>"]
EOS_FOR_TEMPLATE = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "zephyr": "</s>"}


def _corpus(seed: int, n: int = 3000) -> list[str]:

    rng = random.Random(seed)
    words = ("the a of to and in is you that it for on with as are this be at or have from by an was what "
             "how can help please answer question user assistant system date format convert reply only "
             "hello world model open source data train evaluate serve license").split()
    lines = []
    for _ in range(n):
        example = date_example(rng)
        lines.append(example["messages"][0]["content"] + " " + example["messages"][1]["content"])
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 20))))
    return lines


def build_tokenizer(seed: int = 0, vocab_size: int = 512, template: str = "chatml"):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_FOR_TEMPLATE[template],
                                   pad_token="<|pad|>", bos_token="<|endoftext|>",  # nosec B106: a token, no password
                                   additional_special_tokens=[t for t in SPECIAL_TOKENS
                                                              if t not in (EOS_FOR_TEMPLATE[template],
                                                                           "<|pad|>", "<|endoftext|>")])
    fast.chat_template = CHAT_TEMPLATES[template]
    return fast


def build_tiny_llama(out_dir: Path, seed: int = 0, template: str = "chatml", hidden_size: int = 64,
                     num_layers: int = 2) -> None:
    """Write a tiny random Llama (safetensors), its tokenizer and chat template to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown template {template!r}; expected one of {', '.join(CHAT_TEMPLATES)}")
    tokenizer = build_tokenizer(seed, template=template)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
