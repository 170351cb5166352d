"""The readers on real public data from ../shared/data (KAIYUAN_SHARED_DATA); skipped when it is absent."""

import pytest

from kaiyuan.data.formats import load_records
from kaiyuan.home import shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(not (DATA / "DATA.md").is_file(), reason=f"no shared data at {DATA}")


def test_alpaca_subset_counts_and_rejects_empty_outputs(tmp_path):
    result = load_records(DATA / "sft/alpaca_data.first9000.json", skip_invalid=True,
                          rejects_path=tmp_path / "rejects.jsonl")
    assert result.format == "alpaca" and len(result.records) == 8995
    assert [(p.line, p.field, p.message) for p in result.problems][:2] == [
        (p.line, "output", "empty assistant reply") for p in result.problems[:2]]
    assert len(result.problems) == 5 and len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 5
    first = result.records[0].to_dict()["messages"]
    assert first[0] == {"role": "user", "content": "Give three tips for staying healthy."}


def test_hh_rlhf_transcripts_become_prompt_chosen_rejected():
    result = load_records(DATA / "preference/hh_rlhf_harmless_base_test.jsonl.gz", collect_all=True)
    assert result.format == "pairs" and len(result.records) == 2307 and len(result.problems) == 5
    record = result.records[0]
    assert record.messages[-1].role == "user" and record.chosen[0].role == "assistant"
    assert record.chosen != record.rejected


def test_dolly_and_self_instruct_spellings():
    dolly = load_records(DATA / "sft/dolly15k_first12_litgpt_fixture.jsonl")
    assert dolly.format == "alpaca" and len(dolly.records) == 12
    seeds = load_records(DATA / "sft/self_instruct_seed_tasks.jsonl")
    assert len(seeds.records) == 175 and all(len(r.messages) == 2 for r in seeds.records)
