import json

import torch

from kaiyuan.models import load_model
from kaiyuan.train.pretrain import PretrainConfig, pack_documents, run_pretrain
from tests.conftest import write_jsonl


def test_pack_documents_resets_positions_and_skips_first_tokens():
    blocks = pack_documents([[5, 6, 7], [8, 9]], block_size=4, eos_id=1, pad_id=0)
    # stream: 5 6 7 1 | 8 9 1 (pad)
    assert blocks["input_ids"] == [[5, 6, 7, 1], [8, 9, 1, 0]]
    assert blocks["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert blocks["labels"] == [[-100, 6, 7, 1], [-100, 9, 1, -100]]
    spanning = pack_documents([[5, 6, 7, 8, 9]], block_size=4, eos_id=1, pad_id=0)
    assert spanning["input_ids"] == [[5, 6, 7, 8], [9, 1, 0, 0]]
    assert spanning["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 3]]  # the continuation starts afresh
    assert spanning["labels"] == [[-100, 6, 7, 8], [-100, 1, -100, -100]]


def test_packed_documents_do_not_attend_across_boundaries(tiny):
    model = load_model("tiny-llama").model
    first, second = [10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25, 26]
    block = pack_documents([first, second], block_size=16, eos_id=2, pad_id=0)
    ids, positions = torch.tensor(block["input_ids"]), torch.tensor(block["position_ids"])
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]  # as in training
        alone_first = model(input_ids=torch.tensor([first + [2]])).logits[0]
        alone_second = model(input_ids=torch.tensor([second + [2]])).logits[0]
    torch.testing.assert_close(packed[:6], alone_first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[6:14], alone_second, atol=1e-5, rtol=1e-5)


def test_pretrain_on_raw_text(tiny, tmp_path):
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"Document {i}: the open model reads text {i}."}
                                                 for i in range(12)])
    results = [run_pretrain(PretrainConfig(model="tiny-llama", data=str(docs), block_size=32, max_steps=3,
                                           batch_size=2, logging_steps=1, seed=0, data_license="CC0-1.0"))
               for _ in range(2)]
    result = results[0]
    rows = [json.loads(line) for line in (result.artifact.path / "metrics.jsonl").read_text().splitlines()]
    assert results[1].artifact.id == result.artifact.id  # same seed: same weights, same artifact
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["loss"] < rows[0]["loss"]
    assert result.metrics["per_document_attention"] is True and result.metrics["documents"] == 12
    assert result.artifact.kind == "model" and (result.artifact.path / "model.safetensors").is_file()
