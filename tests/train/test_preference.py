import json

import pytest

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import generate_date_preferences, generate_dates
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.train.preference import DPOConfig, KTOConfig, ORPOConfig, SimPOConfig, run_dpo, run_preference

# At step 1 the policy equals the reference, so every pair's log-ratio margin is 0 and the loss is known:
# sigmoid: -log σ(0) = ln 2; IPO: (0 - 1/(2β))² = 25 for β = 0.1; hinge: max(0, 1 - β·0) = 1.
FIRST_STEP_LOSS = {"sigmoid": 0.693147, "ipo": 25.0, "hinge": 1.0}


@pytest.fixture
def pairs(tiny):
    return register_dataset(generate_date_preferences(8, seed=2), "date-pairs", "CC0-1.0", "test")


@pytest.mark.parametrize("loss_type", sorted(FIRST_STEP_LOSS))
def test_dpo_losses_start_where_theory_says(tiny, pairs, loss_type):
    result = run_dpo(DPOConfig(model="tiny-llama", data="date-pairs", loss_type=loss_type, beta=0.1, max_steps=2,
                               batch_size=4, logging_steps=1, learning_rate=1e-2, seed=0))
    rows = [json.loads(line) for line in (result.artifact.path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss"] == pytest.approx(FIRST_STEP_LOSS[loss_type], abs=1e-4)
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["loss"] != rows[0]["loss"]  # it learned something
    registry = Registry()
    assert registry.parents(result.artifact.id) == [(tiny.id, "adapter"), (pairs.id, "dataset"),
                                                    (tiny.id, "reference_model")]
    assert {"loss", "rewards/margins", "rewards/accuracies"} == set(result.curves)


def test_dpo_same_seed_same_metrics(tiny, pairs):
    runs = [run_dpo(DPOConfig(model="tiny-llama", data="date-pairs", max_steps=2, batch_size=4, logging_steps=1,
                              learning_rate=1e-2, seed=4)) for _ in range(2)]
    assert [(r.artifact.path / "metrics.jsonl").read_text() for r in runs][0] == \
        (runs[1].artifact.path / "metrics.jsonl").read_text()


def test_dpo_refuses_data_without_pairs_before_training(tiny):
    train, _ = generate_dates(4, 0, seed=0)
    register_dataset(train, "not-pairs", "CC0-1.0", "test")
    with pytest.raises(KaiyuanError, match=r"data.jsonl:1: record: not a preference pair .* DPO learns from pairs"):
        run_dpo(DPOConfig(model="tiny-llama", data="not-pairs", max_steps=1))


@pytest.mark.parametrize("algorithm, config, uses_reference", [
    ("kto", KTOConfig, True), ("orpo", ORPOConfig, False), ("simpo", SimPOConfig, False)])
def test_kto_orpo_simpo_train_and_record_their_reference(tiny, pairs, algorithm, config, uses_reference):
    runs = [run_preference(config(model="tiny-llama", data="date-pairs", max_steps=2, batch_size=4, logging_steps=1,
                                  learning_rate=1e-2, seed=0), algorithm) for _ in range(2)]
    rows = [[json.loads(line) for line in (r.artifact.path / "metrics.jsonl").read_text().splitlines()] for r in runs]
    assert rows[0] == rows[1] and len(rows[0]) == 2  # deterministic
    if algorithm == "kto":  # policy = reference at step 1: every reply's loss is 1 - σ(0) = 0.5
        assert rows[0][0]["loss"] == pytest.approx(0.5, abs=1e-4)
    parents = Registry().parents(runs[0].artifact.id)
    assert ((tiny.id, "reference_model") in parents) is uses_reference
    assert runs[0].artifact.manifest["config"]["stage"] == algorithm


def test_mistake_pairs_are_on_policy_and_record_their_generator(tiny):
    from kaiyuan.data.datasets import dataset_records
    from kaiyuan.data.synthetic import DATES_ANSWER_PATTERN
    from kaiyuan.evaluate.generation import mistake_pairs

    rows, _ = generate_dates(6, 0, seed=9)
    dataset, tried = mistake_pairs("tiny-llama", rows, DATES_ANSWER_PATTERN, max_new_tokens=4)
    records = dataset_records(dataset)
    assert tried == 6 and len(records) == 6  # a random model gets every date wrong
    assert all(r.chosen[0].content == row["messages"][1]["content"] for r, row in zip(records, rows, strict=True))
    assert all(r.rejected[0].content != r.chosen[0].content for r in records)
    assert Registry().parents(dataset.id) == [(tiny.id, "generator")]


def test_dpo_with_an_sft_term_adds_the_chosen_nll(tiny, pairs):
    plain = run_dpo(DPOConfig(model="tiny-llama", data="date-pairs", max_steps=1, batch_size=4, logging_steps=1))
    rpo = run_dpo(DPOConfig(model="tiny-llama", data="date-pairs", max_steps=1, batch_size=4, logging_steps=1,
                            sft_weight=1.0))
    first = [json.loads((r.artifact.path / "metrics.jsonl").read_text().splitlines()[0])["loss"] for r in (plain, rpo)]
    assert first[0] == pytest.approx(0.693147, abs=1e-4)
    assert first[1] > first[0] + 1.0  # + the chosen replies' NLL under a random model (several nats)


def test_near_misses_are_the_models_least_sure_answer_tokens(tiny):
    import torch

    from kaiyuan.data.datasets import dataset_records
    from kaiyuan.data.near_misses import NearMissConfig, find_near_misses, run_near_misses
    from kaiyuan.data.templates import prompt_text
    from kaiyuan.models import load_model

    rows, _ = generate_dates(10, 0, seed=5)
    conversations = register_dataset(rows, "date-conversations", "CC0-1.0", "test")
    dataset, kept = run_near_misses(NearMissConfig(model="tiny-llama", data=conversations.id, n_pairs=4,
                                                   batch_size=3))
    assert len(kept) == 4 and [m.margin for m in kept] == sorted(m.margin for m in kept)
    assert dataset.manifest["metrics"]["candidates"] == 10 and dataset.license == "CC0-1.0"
    assert sorted(Registry().parents(dataset.id)) == sorted([(tiny.id, "generator"), (conversations.id, "dataset")])
    records = dataset_records(dataset)
    assert [r.to_dict() for r in records] == [m.row for m in kept]

    # each slip is the best other token at the least sure position, as one unpadded forward pass finds it
    loaded = load_model(tiny)
    by_prompt = {row["messages"][0]["content"]: row["messages"][1]["content"] for row in rows}
    for miss in kept:
        answer = by_prompt[miss.row["prompt"][0]["content"]]
        assert miss.row["chosen"][0]["content"] == answer
        prompt_ids = loaded.tokenizer(prompt_text(loaded.tokenizer, miss.row["prompt"]),
                                      add_special_tokens=False)["input_ids"]
        answer_ids = loaded.tokenizer(answer, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = loaded.model(torch.tensor([prompt_ids + answer_ids])).logits[0].float()
        probs = logits[len(prompt_ids) - 1:len(prompt_ids) - 1 + len(answer_ids)].softmax(-1)
        step = probs[miss.position].clone()
        reference = float(step[answer_ids[miss.position]])
        step[answer_ids[miss.position]] = -1
        assert miss.margin == pytest.approx(reference - float(step.max()), abs=1e-5)
        slipped = answer_ids[:miss.position] + [int(step.argmax())] + answer_ids[miss.position + 1:]
        assert miss.row["rejected"][0]["content"] == loaded.tokenizer.decode(slipped, skip_special_tokens=True)
    # batching does not change what is found
    again = find_near_misses(loaded.model, loaded.tokenizer, [(r["messages"][:1], r["messages"][1]["content"])
                                                             for r in rows], batch_size=1)
    assert [m.row for m in again[:4]] == [m.row for m in kept]
