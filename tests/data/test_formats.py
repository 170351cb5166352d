import gzip
import json
import subprocess
import sys

import pytest

from kaiyuan.data.formats import DataError, load_records, records_to_jsonl
from tests.conftest import write_jsonl

CANONICAL = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def test_alpaca_with_input_system_and_history(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
        {"instruction": "Again", "input": "", "output": "6", "system": "Be terse.", "history": [["1+1?", "2"]]},
    ], indent=4))
    result = load_records(path)
    assert result.format == "alpaca"
    assert [r.to_dict() for r in result.records] == [
        {"messages": [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]},
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "1+1?"},
                      {"role": "assistant", "content": "2"}, {"role": "user", "content": "Again"},
                      {"role": "assistant", "content": "6"}]},
    ]
    assert [r.line for r in result.records] == [2, 7]  # line where each array element starts


def test_sharegpt_and_messages_give_the_same_canonical_record(tmp_path):
    sharegpt = write_jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}])
    messages = write_jsonl(tmp_path / "m.jsonl", [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                      {"role": "assistant", "content": "Hello!"}]}])
    assert load_records(sharegpt).format == "sharegpt"
    assert load_records(messages).format == "messages"
    assert load_records(sharegpt).records[0].to_dict() == CANONICAL
    assert load_records(messages).records[0].to_dict() == CANONICAL


def test_preference_pairs_plain_and_hh_transcripts_gzipped(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    rows = [{"prompt": "Q?", "chosen": "Good", "rejected": "Bad"},
            {"chosen": "\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Joke?\n\nAssistant: Sure: ...",
             "rejected": "\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Joke?\n\nAssistant: No."}]
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    result = load_records(path)
    assert result.format == "pairs"
    assert result.records[0].to_dict() == {"prompt": [{"role": "user", "content": "Q?"}],
                                           "chosen": [{"role": "assistant", "content": "Good"}],
                                           "rejected": [{"role": "assistant", "content": "Bad"}]}
    assert result.records[1].to_dict() == {
        "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"},
                   {"role": "user", "content": "Joke?"}],
        "chosen": [{"role": "assistant", "content": "Sure: ..."}],
        "rejected": [{"role": "assistant", "content": "No."}]}


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 7}]},
     "messages[1].content: expected a string, got int"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]},
     "messages[1].role: expected one of system, user, assistant, got 'bot'"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "messages: no assistant message to learn from"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "late"},
                   {"role": "assistant", "content": "x"}]}, "messages[1].role: a system message may only come first"),
])
def test_malformed_record_names_file_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "data.jsonl", [CANONICAL, CANONICAL, row])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:3: {message}"


def test_invalid_json_line_and_other_format_in_the_same_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(CANONICAL) + "\n{not json\n" + json.dumps({"instruction": "x", "output": "y"}) + "\n")
    result = load_records(path, collect_all=True)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: json: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:3: messages: expected a list of messages, got NoneType",
    ]
    assert len(result.records) == 1


def test_skip_invalid_writes_rejects_sidecar_and_counts(tmp_path):
    bad = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt"}]}
    path = write_jsonl(tmp_path / "data.jsonl", [CANONICAL, bad, CANONICAL])
    result = load_records(path, skip_invalid=True)
    assert len(result.records) == 2 and result.n_skipped == 1
    assert result.rejects_path == tmp_path / "data.jsonl.rejected.jsonl"
    rejected = [json.loads(line) for line in result.rejects_path.read_text().splitlines()]
    assert rejected == [{"line": 2, "field": "messages", "error": "expected a list of messages, got NoneType",
                         "record": bad}]


def test_rejects_keep_the_raw_text_of_unparsable_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(CANONICAL) + "\n" + '{"messages": [' + "\n")
    result = load_records(path, skip_invalid=True)
    rejected = json.loads(result.rejects_path.read_text())
    assert rejected == {"line": 2, "field": "json", "error": "invalid JSON: Expecting value (column 15)",
                        "record": '{"messages": ['}


def test_convert_to_sharegpt_and_alpaca(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [CANONICAL])
    records = load_records(path).records
    assert json.loads(records_to_jsonl(records, "sharegpt")) == {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    assert json.loads(records_to_jsonl(records, "alpaca")) == {"instruction": "Hi", "input": "", "output": "Hello!"}


def test_cli_validate_exits_2_naming_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [CANONICAL, {"messages": [{"role": "user", "content": None},
                                                                         {"role": "assistant", "content": "x"}]}])
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "data", "validate", str(path)],
                          capture_output=True, text=True, env={**__import__("os").environ, "COLUMNS": "200"})
    assert done.returncode == 2
    assert f"{path}:2: messages[0].content: missing" in done.stderr.splitlines()
    assert f"{path}: 1 valid messages records, 1 invalid" in done.stdout
