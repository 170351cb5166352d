"""Hostile data files: every reader fails with a kaiyuan error naming FILE:LINE (never a traceback, an
"Aborted." or the OOM killer), reads are bounded and streamed, and nothing is dropped silently."""

import gzip
import json
import os
import sys
import time

import pytest

from kaiyuan.data import formats
from kaiyuan.data.formats import DataError, Record, iter_json_objects, load_records, records_to_jsonl
from kaiyuan.errors import KaiyuanError
from tests.conftest import run_cli, write_jsonl

CANONICAL = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
LINE = json.dumps(CANONICAL) + "\n"
DEEP = "[" * 100_000 + "]" * 100_000


def cli(monkeypatch, capsys, *args):
    return run_cli(monkeypatch, capsys, *args)


def gzipped(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


# ------------------------------------------------------------------------------------------- gzip


def test_truncated_gzip_is_a_clear_error_not_aborted(tmp_path, monkeypatch, capsys):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzipped(LINE * 5)[:-8])  # the trailer (CRC, length) is cut off
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:6: file: truncated gzip stream (the file ends before the gzip end-of-stream " \
                              "marker)"
    code, out, err = cli(monkeypatch, capsys, "data", "validate", path)
    assert (code, out) == (2, "")
    assert err == f"error: {info.value}\n"
    assert "Aborted" not in err


def test_gzip_cut_inside_the_compressed_data(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzipped(LINE * 5)[:40])
    with pytest.raises(DataError, match=r"data\.jsonl\.gz:1: file: truncated gzip stream \(the file ends before"):
        load_records(path)


def test_gz_that_is_not_gzip(tmp_path, monkeypatch, capsys):
    path = tmp_path / "data.jsonl.gz"
    path.write_text(LINE)
    message = f"{path}: not a gzip file (it is named .gz but does not start with the gzip magic bytes 1f 8b)"
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == message
    assert cli(monkeypatch, capsys, "data", "validate", path) == (2, "", f"error: {message}\n")


def test_corrupt_gzip_and_trailing_garbage(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzipped(LINE * 5) + b"garbage")
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:6: file: corrupt gzip data (Not a gzipped file (b'ga'))"
    compressed = bytearray(gzipped(LINE * 5))
    compressed[-8] ^= 0xFF  # the CRC
    path.write_bytes(bytes(compressed))
    with pytest.raises(DataError, match=r"data\.jsonl\.gz:6: file: corrupt gzip data \(CRC check failed"):
        load_records(path, collect_all=True)


def test_empty_gz_file_has_no_records(tmp_path):
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(b"")
    result = load_records(path)
    assert (result.records, result.problems) == ([], [])


def test_gzip_is_recognised_by_its_magic_bytes_without_the_suffix(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(gzipped(LINE * 3))
    assert [r.line for r in load_records(path).records] == [1, 2, 3]


# ------------------------------------------------------------------------------------------- nesting, numbers


def test_deeply_nested_json_line_is_one_counted_problem(tmp_path, monkeypatch, capsys):
    path = tmp_path / "deep.jsonl"
    path.write_text(LINE + DEEP + "\n" + LINE)
    result = load_records(path, collect_all=True)
    assert [str(p) for p in result.problems] == [f"{path}:2: json: invalid JSON: nested too deeply to parse"]
    assert [r.line for r in result.records] == [1, 3]
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:2: json: invalid JSON: nested too deeply to parse"
    code, out, err = cli(monkeypatch, capsys, "data", "validate", path)
    assert code == 2
    assert err == f"{path}:2: json: invalid JSON: nested too deeply to parse\n"
    assert out == f"{path}: 2 valid messages records, 1 invalid\n"


def test_deeply_nested_json_array_element(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" + json.dumps(CANONICAL) + ",\n" + DEEP + "]\n")
    result = load_records(path, collect_all=True)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: json: invalid JSON: nested too deeply to parse; the rest of the file is unreadable"]
    assert len(result.records) == 1


def test_deeply_nested_record_in_the_rejects_file(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(LINE + DEEP + "\n")
    result = load_records(path, skip_invalid=True)
    assert json.loads(result.rejects_path.read_text()) == {
        "line": 2, "field": "json", "error": "invalid JSON: nested too deeply to parse", "record": DEEP}


def test_integer_with_too_many_digits(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(LINE + '{"text": ' + "9" * 5000 + "}\n")
    result = load_records(path, collect_all=True)
    assert len(result.records) == 1
    [problem] = result.problems
    assert (problem.line, problem.field) == (2, "json")
    assert problem.message.startswith("invalid JSON: Exceeds the limit (4300 digits) for integer string conversion")


# ------------------------------------------------------------------------------------------- endless, huge


def capped(*args, env=None):
    """Run python ARGS with its address space capped at 2 GiB (a reader that does not stop fails, rather than
    the machine), and a timeout."""
    import resource
    import subprocess

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, preexec_fn=cap,
                          env={**os.environ, "COLUMNS": "1000", **(env or {})})


needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")


@needs_dev_zero
def test_dev_zero_is_refused_within_the_record_limit():
    done = capped("-c", "from kaiyuan.data.formats import load_records; load_records('/dev/zero')")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "kaiyuan.data.formats.DataError: /dev/zero:1: file: a line longer than 64 MiB, the limit for one record (set "
        "KAIYUAN_MAX_RECORD_BYTES to raise it)")


@needs_dev_zero
def test_cli_validate_dev_zero_exits_2():
    done = capped("-m", "kaiyuan.cli", "data", "validate", "/dev/zero", env={"KAIYUAN_MAX_RECORD_BYTES": "1M"})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: /dev/zero:1: file: a line longer than 1 MiB, the limit for one record (set "
                           "KAIYUAN_MAX_RECORD_BYTES to raise it)\n")


@needs_dev_zero
def test_dev_zero_as_plain_text_stops_at_the_file_limit():
    done = capped("-c", "from pathlib import Path; from kaiyuan.data.formats import _open_text; "
                        "_open_text(Path('/dev/zero'))", env={"KAIYUAN_MAX_DATA_BYTES": "3M"})
    assert done.stderr.splitlines()[-1] == (
        "kaiyuan.data.formats.DataError: /dev/zero:1: file: larger than the limit of 3 MiB for one data file (set "
        "KAIYUAN_MAX_DATA_BYTES to raise it)")


def test_file_size_limit_counts_uncompressed_bytes(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzipped(LINE * 1000))  # 94 kB of lines in under 1 kB; line 107 crosses 10 000 bytes
    assert path.stat().st_size < 1000
    with pytest.raises(DataError) as info:
        load_records(path, max_bytes=10_000)
    assert str(info.value) == (f"{path}:107: file: larger than the limit of 10000 bytes uncompressed for one data "
                               "file (set KAIYUAN_MAX_DATA_BYTES to raise it)")
    assert len(load_records(path, max_bytes=len(LINE) * 1000).records) == 1000  # exactly at the limit is fine


def test_record_limit_applies_to_json_array_elements(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "CHUNK", 64)
    path = tmp_path / "long.json"
    big = {"text": "x" * 5000}
    path.write_text("[\n" + json.dumps(CANONICAL) + ",\n" + json.dumps(big) + "\n]\n")
    with pytest.raises(DataError) as info:
        load_records(path, max_record_bytes=1000)
    assert str(info.value) == (f"{path}:3: file: an array element longer than 1000 bytes, the limit for one "
                               "record (set KAIYUAN_MAX_RECORD_BYTES to raise it)")
    assert len(load_records(path, max_record_bytes=6000, collect_all=True).problems) == 1  # text vs messages


def test_a_line_exactly_at_the_record_limit_is_read(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(LINE * 2)
    assert len(load_records(path, max_record_bytes=len(LINE) - 1).records) == 2  # the newline is not counted
    with pytest.raises(DataError, match=r"data\.jsonl:1: file: a line longer than 92 bytes"):
        load_records(path, max_record_bytes=len(LINE) - 2)


@pytest.mark.parametrize("value, message", [
    ("lots", "KAIYUAN_MAX_DATA_BYTES='lots': expected a number of bytes, e.g. 67108864, 64M or 8G"),
    ("0", "KAIYUAN_MAX_DATA_BYTES: a size limit must be a positive number of bytes, got 0"),
])
def test_bad_limit_in_the_environment(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("KAIYUAN_MAX_DATA_BYTES", value)
    with pytest.raises(KaiyuanError) as info:
        load_records(write_jsonl(tmp_path / "d.jsonl", [CANONICAL]))
    assert str(info.value) == message


@pytest.mark.parametrize("text, expected", [("123", 123), ("64K", 64 << 10), ("64M", 64 << 20), ("8G", 8 << 30),
                                            ("2GiB", 2 << 30), (" 1t ", 1 << 40)])
def test_limit_sizes(monkeypatch, text, expected):
    monkeypatch.setenv("KAIYUAN_X", text)
    assert formats.data_limit(None, "KAIYUAN_X", 5) == expected


# ------------------------------------------------------------------------------------------- JSON arrays


def test_json_array_reading_is_linear(tmp_path):
    """20k records: 20 s before (line numbers counted from the start of the file for every element), now
    about as fast as the same records as JSON lines."""
    rows = [CANONICAL] * 20_000
    array, lines = tmp_path / "a.json", tmp_path / "a.jsonl"
    array.write_text(json.dumps(rows, indent=2))
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    started = time.monotonic()
    result = load_records(array)
    elapsed = time.monotonic() - started
    assert len(result.records) == 20_000 and result.records[-1].line == 20_000 * 12 - 10
    assert elapsed < 8, elapsed


def test_json_array_in_small_chunks_keeps_lines_and_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "CHUNK", 3)  # every element and number crosses chunk boundaries
    path = tmp_path / "a.json"
    path.write_text('[\n  {"text": "a"},\n  12345,\n  {"text":\n    "b"},\n  {"text": "c" x}\n]\n')
    assert list(iter_json_objects(path)) == [
        (2, {"text": "a"}, None), (3, 12345, None), (4, {"text": "b"}, None),
        (6, None, "invalid JSON: Expecting ',' delimiter (column 16); the rest of the file is unreadable")]


def test_json_array_errors_name_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"text": "a"}\n{"text": "b"}\n]\n')
    assert list(iter_json_objects(path))[-1] == (3, None, "invalid JSON: expected ',' or ']' after an array element")
    path.write_text('[\n{"text": "a"},\n')
    assert list(iter_json_objects(path))[-1] == (3, None, "invalid JSON: the array is not closed with ']'")
    path.write_text('[{"text": "a"}]\n[{"text": "b"}]\n')  # a second array is not dropped silently
    result = load_records(path, collect_all=True)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: json: invalid JSON: extra data after the array's closing ']'"]


def test_json_array_with_bad_utf8(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n{"text": "a"},\n{"text": "\xff"}]\n')
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:3: file: not valid UTF-8 (invalid start byte)"


# ------------------------------------------------------------------------------------------- lines, records


def test_bad_utf8_line_is_one_counted_problem_and_its_bytes_are_kept(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(LINE.encode() + b'{"text": "caf\xe9"}\n' + LINE.encode())
    result = load_records(path, skip_invalid=True)
    assert len(result.records) == 2 and result.n_skipped == 1
    assert json.loads(result.rejects_path.read_text()) == {
        "line": 2, "field": "json", "error": "not valid UTF-8 (invalid continuation byte at byte 14 of the line)",
        "record": '{"text": "caf\\xe9"}'}


def test_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + LINE.replace("\n", "\r\n").encode() * 2)
    assert [r.to_dict() for r in load_records(path).records] == [CANONICAL, CANONICAL]
    array = tmp_path / "data.json"
    array.write_bytes(b"\xef\xbb\xbf[" + json.dumps(CANONICAL).encode() + b"]")
    assert [r.to_dict() for r in load_records(array).records] == [CANONICAL]


def test_line_separators_inside_strings_do_not_split_records(tmp_path):
    path = tmp_path / "data.jsonl"
    row = {"text": "one\u2028two\x85three\x1cfour"}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [r.text for r in load_records(path).records] == [row["text"]]


def test_sharegpt_speaker_that_is_not_a_string(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": ["human"], "value": "Hi"}]}])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == (f"{path}:1: conversations[0].from: expected one of human, user, gpt, assistant, "
                               "chatgpt, bard, bing, model, system, got ['human']")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "{p}: is a directory, not a data file"),
    (lambda p: None, "{p}: no such file"),
])
def test_unreadable_paths(tmp_path, make, message):
    path = tmp_path / "data.jsonl"
    make(path)
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == message.format(p=path)


def test_writing_a_record_the_format_cannot_hold(tmp_path):
    record = Record([formats.Message("user", "a"), formats.Message("user", "b"), formats.Message("assistant", "c")],
                    line=7)
    with pytest.raises(DataError) as info:
        records_to_jsonl([record], "alpaca", source="in.jsonl")
    assert str(info.value) == ("in.jsonl:7: messages: alpaca needs alternating user/assistant turns (cannot write it "
                               "as alpaca)")
    with pytest.raises(DataError) as info:
        records_to_jsonl([record], "csv")
    assert str(info.value) == "unknown output format 'csv'; expected messages, sharegpt or alpaca"


def test_cli_convert_with_a_bad_gzip_exits_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzipped(LINE * 5)[:-8])
    code, out, err = cli(monkeypatch, capsys, "data", "convert", path, tmp_path / "out.jsonl")
    assert (code, out) == (2, "")
    assert err == (f"error: {path}:6: file: truncated gzip stream (the file ends before the gzip end-of-stream "
                   "marker)\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_lone_surrogate_escape_is_a_counted_problem(tmp_path, monkeypatch, capsys):
    """Valid JSON, but not text: a record with a lone \\ud800 could never be written as UTF-8 (convert and
    training crashed with UnicodeEncodeError); a surrogate pair and an escaped backslash are fine."""
    message = "invalid JSON: a \\u escape is a lone UTF-16 surrogate, which is not text"
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a\\ud800b"}\n{"text": "\\ud83d\\ude00"}\n{"text": "\\\\ud800"}\n')
    result = load_records(path, collect_all=True)
    assert [str(p) for p in result.problems] == [f"{path}:1: json: {message}"]
    assert [r.text for r in result.records] == ["\U0001F600", "\\ud800"]
    array = tmp_path / "data.json"
    array.write_text('[{"text": "a\\udc00"},\n {"text": "ok"}]')
    result = load_records(array, collect_all=True)
    assert [str(p) for p in result.problems] == [f"{array}:1: json: {message}"]
    assert [r.text for r in result.records] == ["ok"]
    out = tmp_path / "out.jsonl"
    code, stdout, err = cli(monkeypatch, capsys, "data", "convert", path, out, "--skip-invalid")
    assert (code, err) == (0, "")
    assert out.read_text(encoding="utf-8") == '{"text": "\U0001F600"}\n{"text": "\\\\ud800"}\n'
    assert json.loads((tmp_path / "data.jsonl.rejected.jsonl").read_text()) == {
        "line": 1, "field": "json", "error": message, "record": '{"text": "a\\ud800b"}'}
