"""Read JSON / JSONL (optionally gzipped) in Alpaca, ShareGPT, OpenAI-messages and preference-pair
formats into one canonical record type.

Canonical records (what ``kaiyuan data convert`` writes, one JSON object per line):

* instruction data: ``{"messages": [{"role": ..., "content": ...}, ...]}``
* preference data:  ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``

Every problem is reported as ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import atomic_write_text

FORMATS = ("alpaca", "sharegpt", "messages", "pairs", "text")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system"}


class RecordError(ValueError):
    """One record is malformed: ``field`` names where, ``message`` says what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DataError(KaiyuanError):
    """A data file cannot be read; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Record:
    """One canonical example. For preference data ``messages`` is the prompt."""

    messages: list[Message]
    chosen: list[Message] | None = None
    rejected: list[Message] | None = None
    line: int = 0
    text: str | None = None  # raw text (pretraining) instead of a conversation

    @property
    def is_preference(self) -> bool:
        return self.chosen is not None

    def to_dict(self) -> dict[str, Any]:
        if self.text is not None:
            return {"text": self.text}
        if self.is_preference:
            assert self.chosen is not None and self.rejected is not None
            return {"prompt": [m.to_dict() for m in self.messages],
                    "chosen": [m.to_dict() for m in self.chosen],
                    "rejected": [m.to_dict() for m in self.rejected]}
        return {"messages": [m.to_dict() for m in self.messages]}

    def as_chat(self) -> list[dict[str, str]]:
        """The conversation as chat-template messages (the chosen reply for preference data)."""
        return [m.to_dict() for m in self.messages + (self.chosen or [])]


@dataclass
class Problem:
    path: Path
    line: int
    field: str
    message: str
    raw: Any = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


@dataclass
class LoadResult:
    path: Path
    format: str
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejects_path: Path | None = None

    @property
    def n_skipped(self) -> int:
        return len(self.problems)


# --------------------------------------------------------------------------------------------- reading

MAX_DATA_BYTES_ENV = "KAIYUAN_MAX_DATA_BYTES"
MAX_RECORD_BYTES_ENV = "KAIYUAN_MAX_RECORD_BYTES"
DEFAULT_MAX_DATA_BYTES = 4 << 30  # uncompressed bytes read from one data file
DEFAULT_MAX_RECORD_BYTES = 64 << 20  # one JSON-lines line or one JSON array element
CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_MARGIN = 16  # a value parsed this close to the end of the buffer may continue in the next chunk
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
LONE_SURROGATE = "invalid JSON: a \\u escape is a lone UTF-16 surrogate, which is not text"


def _lone_surrogate(obj: Any, source: str) -> bool:
    """Whether ``obj`` (decoded from ``source``) holds a string with a lone surrogate (valid JSON, not valid
    text: it could never be written as UTF-8). Only looked for when ``source`` has such an escape."""
    if not _SURROGATE_ESCAPE.search(source):
        return False
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError):
        return False
    return False


def _human(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def data_limit(value: int | None, env: str, default: int) -> int:
    """A size limit: ``value`` if given, else the environment variable ``env`` (bytes, or 64M, 8G, …), else
    ``default``."""
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        match = _SIZE.match(raw)
        if not match:
            raise KaiyuanError(f"{env}={raw!r}: expected a number of bytes, e.g. 67108864, 64M or 8G")
        value = int(match[1]) << (10 * "KMGT".find(match[2].upper()) + 10 if match[2] else 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KaiyuanError(f"{env}: a size limit must be a positive number of bytes, got {value!r}")
    return value


class _DataStream:
    """A data file opened for streaming reads: gzip recognised by its magic bytes (a ``.gz`` name without them is
    an error), at most ``max_bytes`` (uncompressed) read, every read error a :class:`DataError` naming the file
    and ``line`` (kept up to date by the reader)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes, self.line, self.total = path, max_bytes, 1, 0
        try:
            raw = open(path, "rb")  # closed by close()
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise DataError(f"{path}: is a directory, not a data file") from None
        except PermissionError:
            raise DataError(f"{path}: permission denied") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot open it ({exc.strerror or exc})") from None
        self._raw = raw
        try:
            magic = raw.peek(2)[:2]
        except OSError as exc:
            raw.close()
            raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        self.gzip = magic == b"\x1f\x8b"
        if path.suffix.lower() == ".gz" and magic and not self.gzip:
            raw.close()
            raise DataError(f"{path}: not a gzip file (it is named .gz but does not start with the gzip magic "
                            "bytes 1f 8b)")
        self._file: Any = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzip else raw

    def __enter__(self) -> _DataStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        self._raw.close()

    def _error(self, message: str) -> DataError:
        return DataError(f"{self.path}:{self.line}: file: {message}")

    def _call(self, method: Callable[[int], bytes], size: int) -> bytes:
        try:
            data = method(size)
        except EOFError:
            raise self._error("truncated gzip stream (the file ends before the gzip end-of-stream marker)") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise self._error(f"corrupt gzip data ({exc})") from None
        except OSError as exc:
            raise self._error(f"cannot read it ({exc.strerror or exc})") from None
        self.total += len(data)
        if self.total > self.max_bytes:
            raise self._error(f"larger than the limit of {_human(self.max_bytes)}{' uncompressed' if self.gzip else ''}"
                              f" for one data file (set {MAX_DATA_BYTES_ENV} to raise it)")
        return data

    def read(self, size: int = CHUNK) -> bytes:
        return self._call(self._file.read, size)

    def lines(self, max_record: int) -> Iterator[tuple[int, bytes]]:
        """``(number, line)`` for every line (with its newline), refusing one longer than ``max_record``."""
        number = 0
        while True:
            number += 1
            self.line = number
            line = self._call(self._file.readline, max_record + 1)
            if not line:
                return
            if len(line) > max_record and not line.endswith(b"\n"):
                raise self._error(f"a line longer than {_human(max_record)}, the limit for one record (set "
                                  f"{MAX_RECORD_BYTES_ENV} to raise it)")
            yield number, line


def _open_text(path: Path, max_bytes: int | None = None) -> str:
    """The whole file as text (a plain-text document), read in bounded chunks."""
    limit = data_limit(max_bytes, MAX_DATA_BYTES_ENV, DEFAULT_MAX_DATA_BYTES)
    chunks = []
    with _DataStream(Path(path), limit) as stream:
        while data := stream.read():
            chunks.append(data)
            stream.line += data.count(b"\n")
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: file: not valid UTF-8 ({exc.reason})") from None


def iter_json_objects(path: Path, max_bytes: int | None = None,
                      max_record_bytes: int | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line, object, error)`` for every record of a JSON array or JSON-lines file (optionally gzipped),
    streaming: at most ``max_bytes`` are read and one record is at most ``max_record_bytes`` (defaults: the
    environment variables ``KAIYUAN_MAX_DATA_BYTES``, ``KAIYUAN_MAX_RECORD_BYTES``, else 4 GiB and 64 MiB).

    ``error`` is a message for a line that does not parse (JSON syntax, UTF-8, nesting); ``object`` is then the
    raw line (so a rejects file loses nothing), or None inside a JSON array. A file that cannot be read on
    (missing, not gzip, truncated or corrupt gzip, over a limit) raises :class:`DataError` ``FILE:LINE: ...``.
    """
    path = Path(path)
    limit = data_limit(max_bytes, MAX_DATA_BYTES_ENV, DEFAULT_MAX_DATA_BYTES)
    max_record = data_limit(max_record_bytes, MAX_RECORD_BYTES_ENV, DEFAULT_MAX_RECORD_BYTES)
    decoder = json.JSONDecoder()
    with _DataStream(path, limit) as stream:
        lines = stream.lines(max_record)
        for number, raw in lines:
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            if raw.lstrip()[:1] == b"[":
                yield from _JsonArray(stream, raw, number, max_record).records()
                return
            yield _json_line(decoder, number, raw)
            break
        for number, raw in lines:
            if raw.strip():
                yield _json_line(decoder, number, raw)


def _json_line(decoder: json.JSONDecoder, number: int, raw: bytes) -> tuple[int, Any, str | None]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "backslashreplace").removesuffix("\n").removesuffix("\r")
        return number, text, f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1} of the line)"
    line = line.removesuffix("\n").removesuffix("\r")
    stripped = line.strip()
    if not stripped:
        return number, line, "invalid JSON: a blank line"  # not reached: callers skip blank lines
    try:
        obj, end = decoder.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return number, line, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return number, line, "invalid JSON: nested too deeply to parse"
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return number, line, f"invalid JSON: {exc}"
    if stripped[end:].strip():
        return number, line, "invalid JSON: extra data after the object (one object per line)"
    if _lone_surrogate(obj, stripped):
        return number, line, LONE_SURROGATE
    return number, obj, None


class _JsonArray:
    """The elements of a JSON array, decoded one at a time from a buffer that is refilled in chunks
    (``json.JSONDecoder.raw_decode`` at an offset), so reading is linear in the file and holds about one
    element in memory. ``line`` is the line at ``pos``; ``col0`` the column of ``buf[0]`` (0-based)."""

    def __init__(self, stream: _DataStream, head: bytes, line: int, max_record: int) -> None:
        self.stream, self.max_record = stream, max_record
        self.decoder = json.JSONDecoder()
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.line, self.col0, self.eof = "", 0, line, 0, False
        self.decoded_lines = line  # line of the next character decoded (for UTF-8 errors)
        self._feed(head)

    def _feed(self, data: bytes, final: bool = False) -> None:
        try:
            text = self.utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            line = self.decoded_lines + data[: max(exc.start, 0)].count(b"\n")
            raise DataError(f"{self.stream.path}:{line}: file: not valid UTF-8 ({exc.reason})") from None
        self.decoded_lines += text.count("\n")
        self.buf += text

    def more(self, at_least: int = 0) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        if self.pos:
            newline = self.buf.rfind("\n", 0, self.pos)
            self.col0 = self.pos - newline - 1 if newline >= 0 else self.col0 + self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        self.stream.line = self.decoded_lines
        data = self.stream.read(max(CHUNK, at_least))
        self.eof = not data
        self._feed(data, final=self.eof)
        return not self.eof

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def where(self, index: int) -> tuple[int, int]:
        """Line and (1-based) column of ``buf[index]``."""
        newline = self.buf.rfind("\n", 0, index)
        column = index - newline if newline >= 0 else self.col0 + index + 1
        return self.line + self.buf.count("\n", self.pos, index), column

    def skip_space(self) -> bool:
        """Move past whitespace; False at the end of the file."""
        while True:
            self.advance(_JSON_SPACE.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return True
            if not self.more():
                return False

    def value(self) -> tuple[Any, int, tuple[int, str] | None]:
        """The value at ``pos`` and where it ends, or ``(line, message)`` for one that does not parse."""
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self.buf) - _MARGIN or exc.msg.startswith("Unterminated string")
                if cut and self._grow():
                    continue
                line, column = self.where(exc.pos)
                return None, 0, (line, f"invalid JSON: {exc.msg} (column {column})")
            except RecursionError:
                return None, 0, (self.line, "invalid JSON: nested too deeply to parse")
            except ValueError as exc:
                return None, 0, (self.line, f"invalid JSON: {exc}")
            if end > len(self.buf) - _MARGIN and self._grow():
                continue  # a number (or anything) ending at the buffer's end may go on in the next chunk
            return obj, end, None

    def _grow(self) -> bool:
        if self.eof:
            return False
        if len(self.buf) - self.pos > self.max_record:
            raise DataError(f"{self.stream.path}:{self.line}: file: an array element longer than "
                            f"{_human(self.max_record)}, the limit for one record (set {MAX_RECORD_BYTES_ENV} to "
                            "raise it)")
        self.more(len(self.buf) - self.pos)  # at least doubles what is buffered: linear however long the element
        return True

    def records(self) -> Iterator[tuple[int, Any, str | None]]:
        unclosed = "invalid JSON: the array is not closed with ']'"
        self.skip_space()
        self.advance(self.pos + 1)  # the '['
        if not self.skip_space():
            yield self.line, None, unclosed
            return
        if self.buf[self.pos] != "]":
            while True:
                line = self.line
                obj, end, error = self.value()
                if error is not None:
                    yield error[0], None, f"{error[1]}; the rest of the file is unreadable"
                    return
                source = self.buf[self.pos:end]
                yield (line, source, LONE_SURROGATE) if _lone_surrogate(obj, source) else (line, obj, None)
                self.advance(end)
                if not self.skip_space():
                    yield self.line, None, unclosed
                    return
                if self.buf[self.pos] == "]":
                    break
                if self.buf[self.pos] != ",":
                    yield self.line, None, "invalid JSON: expected ',' or ']' after an array element"
                    return
                self.advance(self.pos + 1)
                if not self.skip_space():
                    yield self.line, None, unclosed
                    return
        self.advance(self.pos + 1)  # the ']'
        if self.skip_space():
            yield self.line, None, "invalid JSON: extra data after the array's closing ']'"


def detect_format(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "chosen" in obj and "rejected" in obj:
        return "pairs"
    if "instruction" in obj:
        return "alpaca"
    if "text" in obj:
        return "text"
    return None


# --------------------------------------------------------------------------------------------- parsing


def _string(obj: dict[str, Any], key: str, where: str | None = None, required: bool = True) -> str | None:
    where = where or key
    if key not in obj or obj[key] is None:
        if required:
            raise RecordError(where, "missing")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(where, f"expected a string, got {type(value).__name__}")
    return value


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RecordError(f"{where}[{i}]", "only text content parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    if value is None:
        raise RecordError(where, "missing")
    raise RecordError(where, f"expected a string, got {type(value).__name__}")


def _check_conversation(messages: list[Message], where: str, need_assistant: bool = True) -> None:
    if not messages:
        raise RecordError(where, "empty conversation")
    for i, message in enumerate(messages):
        if message.role == "system" and i != 0:
            raise RecordError(f"{where}[{i}].role", "a system message may only come first")
    if need_assistant and not any(m.role == "assistant" for m in messages):
        raise RecordError(where, "no assistant message to learn from")
    for i, message in enumerate(messages):
        if message.role == "assistant" and not message.content.strip():
            raise RecordError(f"{where}[{i}].content", "empty assistant reply")


def parse_messages(value: Any, where: str, need_assistant: bool = True) -> list[Message]:
    if not isinstance(value, list):
        raise RecordError(where, f"expected a list of messages, got {type(value).__name__}")
    messages = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RecordError(f"{where}[{i}]", f"expected an object, got {type(item).__name__}")
        role = item.get("role")
        if role not in ROLES:
            raise RecordError(f"{where}[{i}].role", f"expected one of {', '.join(ROLES)}, got {role!r}")
        messages.append(Message(role, _content(item.get("content"), f"{where}[{i}].content")))
    _check_conversation(messages, where, need_assistant)
    return messages


def parse_alpaca(obj: dict[str, Any]) -> Record:
    """Alpaca ``instruction/input/output`` (also Dolly's ``context/response`` spelling)."""
    instruction = _string(obj, "instruction")
    input_key = "context" if "context" in obj and "input" not in obj else "input"
    output_key = "response" if "response" in obj and "output" not in obj else "output"
    extra = _string(obj, input_key, required=False)
    output = _string(obj, output_key)
    assert instruction is not None and output is not None
    if not output.strip():
        raise RecordError(output_key, "empty assistant reply")
    messages: list[Message] = []
    system = _string(obj, "system", required=False)
    if system:
        messages.append(Message("system", system))
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise RecordError("history", "expected a list of [instruction, response] pairs")
    for i, turn in enumerate(history):
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise RecordError(f"history[{i}]", "expected [instruction, response] strings")
        if not turn[1].strip():  # as for every format: a canonical conversation has no empty reply
            raise RecordError(f"history[{i}][1]", "empty assistant reply")
        messages += [Message("user", turn[0]), Message("assistant", turn[1])]
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages += [Message("user", prompt), Message("assistant", output)]
    return Record(messages)


def parse_sharegpt(obj: dict[str, Any]) -> Record:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise RecordError("conversations", "expected a list of {from, value} turns")
    messages: list[Message] = []
    system = obj.get("system")
    if isinstance(system, str) and system:
        messages.append(Message("system", system))
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"conversations[{i}]", f"expected an object, got {type(turn).__name__}")
        speaker = turn.get("from")
        if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:
            raise RecordError(f"conversations[{i}].from",
                              f"expected one of {', '.join(SHAREGPT_ROLES)}, got {speaker!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RecordError(f"conversations[{i}].value",
                              "missing" if value is None else f"expected a string, got {type(value).__name__}")
        messages.append(Message(SHAREGPT_ROLES[speaker], value))
    _check_conversation(messages, "conversations")
    return Record(messages)


def parse_openai_messages(obj: dict[str, Any]) -> Record:
    return Record(parse_messages(obj.get("messages"), "messages"))


def _parse_transcript(text: str, where: str) -> list[Message]:
    """An HH-RLHF style transcript: ``\\n\\nHuman: ...\\n\\nAssistant: ...``."""
    messages: list[Message] = []
    for chunk in text.split("\n\nHuman: ")[1:] if text.startswith("\n\nHuman: ") else []:
        parts = chunk.split("\n\nAssistant: ")
        messages.append(Message("user", parts[0]))
        messages += [Message("assistant", p) for p in parts[1:]]
    if not messages:
        raise RecordError(where, "expected a message list or a '\\n\\nHuman: ... \\n\\nAssistant: ...' transcript")
    return messages


def _reply(value: Any, where: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(where, "empty reply")
        return [Message("assistant", value)]
    return parse_messages(value, where)


def parse_pair(obj: dict[str, Any]) -> Record:
    if "prompt" not in obj:  # full transcripts: the shared prefix is the prompt
        chosen_text, rejected_text = _string(obj, "chosen"), _string(obj, "rejected")
        chosen = _parse_transcript(chosen_text or "", "chosen")
        rejected = _parse_transcript(rejected_text or "", "rejected")
        if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
            raise RecordError("chosen" if chosen[-1].role != "assistant" else "rejected",
                              "the transcript must end with an assistant reply")
        if chosen[:-1] != rejected[:-1]:
            raise RecordError("rejected", "chosen and rejected transcripts differ before their last reply")
        return Record(chosen[:-1], [chosen[-1]], [rejected[-1]])
    prompt = obj["prompt"]
    if isinstance(prompt, str):
        messages = [Message("user", prompt)]
    else:
        messages = parse_messages(prompt, "prompt", need_assistant=False)
    if messages[-1].role != "user":
        raise RecordError("prompt", "the prompt must end with a user message")
    return Record(messages, _reply(obj.get("chosen"), "chosen"), _reply(obj.get("rejected"), "rejected"))


def parse_text(obj: dict[str, Any]) -> Record:
    text = _string(obj, "text")
    if not (text or "").strip():
        raise RecordError("text", "empty document")
    return Record([], text=text)


PARSERS = {"text": parse_text, "alpaca": parse_alpaca, "sharegpt": parse_sharegpt, "messages": parse_openai_messages,
           "pairs": parse_pair}


def parse_record(obj: Any, fmt: str) -> Record:
    if not isinstance(obj, dict):
        raise RecordError("record", f"expected a JSON object, got {type(obj).__name__}")
    return PARSERS[fmt](obj)


def parse_records(obj: Any, fmt: str) -> list[Record]:
    """The records in one JSON object: one, or one per instance for Self-Instruct style seed tasks
    (``{"instruction", "instances": [{"input", "output"}, ...]}``)."""
    if fmt == "alpaca" and isinstance(obj, dict) and "instances" in obj and "output" not in obj:
        instances = obj["instances"]
        if not isinstance(instances, list) or not instances:
            raise RecordError("instances", "expected a non-empty list of {input, output}")
        records = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise RecordError(f"instances[{i}]", f"expected an object, got {type(instance).__name__}")
            try:
                records.append(parse_alpaca({"instruction": obj.get("instruction"), **instance}))
            except RecordError as exc:
                field = exc.field if exc.field == "instruction" else f"instances[{i}].{exc.field}"
                raise RecordError(field, exc.message) from None
        return records
    return [parse_record(obj, fmt)]


# files that are data but not in a format kaiyuan reads: refused by name instead of as invalid JSON
OTHER_FORMATS = (".csv", ".tsv", ".parquet", ".arrow", ".xlsx", ".xls", ".xml", ".yaml", ".yml", ".html", ".pdf")
READ_FORMATS = ("data files are JSON or JSON lines (.json, .jsonl, optionally .gz) with records in alpaca, sharegpt, "
                "messages or pairs format (or .txt / .md plain text)")


def _check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix in OTHER_FORMATS:
        raise DataError(f"{path}: kaiyuan does not read {suffix} files; {READ_FORMATS}")


def load_records(path: str | Path, fmt: str = "auto", skip_invalid: bool = False,
                 rejects_path: Path | None = None, collect_all: bool = False, max_bytes: int | None = None,
                 max_record_bytes: int | None = None) -> LoadResult:
    """Read every record of ``path``, streaming.

    A malformed record raises :class:`DataError` (``FILE:LINE: field: message``) unless
    ``skip_invalid`` (rejected records go to ``rejects_path``, default ``FILE.rejected.jsonl``, and are
    counted) or ``collect_all`` (problems are returned for a validation report). A file that cannot be read
    on (missing, not gzip, truncated, larger than ``max_bytes``, a record over ``max_record_bytes``; see
    :func:`iter_json_objects`) always raises :class:`DataError`.
    """
    path = Path(path)
    _check_suffix(path)
    if path.suffix in (".txt", ".md"):  # a plain-text file is one document
        text = _open_text(path, max_bytes)
        return LoadResult(path=path, format="text", records=[Record([], text=text, line=1)] if text.strip() else [])
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    result = LoadResult(path=path, format=fmt)
    for line, obj, syntax_error in iter_json_objects(path, max_bytes, max_record_bytes):
        try:
            if syntax_error:
                raise RecordError("json", syntax_error)
            if result.format == "auto":
                detected = detect_format(obj)
                if detected is None:
                    raise RecordError("record", "cannot detect the format: expected 'messages', 'conversations', "
                                      "'instruction'/'output', 'chosen'/'rejected' or 'text' keys")
                result.format = detected
            records = parse_records(obj, result.format)
        except RecordError as exc:
            problem = Problem(path, line, exc.field, exc.message, obj)
            if not (skip_invalid or collect_all):
                raise DataError(str(problem)) from None
            result.problems.append(problem)
            continue
        for record in records:
            record.line = line
            result.records.append(record)
    if skip_invalid and result.problems:
        result.rejects_path = rejects_path or path.with_name(path.name + ".rejected.jsonl")
        write_rejects(result.rejects_path, result.problems)
    return result


def _reject_line(problem: Problem) -> str:
    row = {"line": problem.line, "field": problem.field, "error": problem.message, "record": problem.raw}
    try:
        line = json.dumps(row, ensure_ascii=False)
    except (RecursionError, ValueError):  # nested too deeply to write back: keep the error, say so
        return json.dumps({**row, "record": None, "note": "the record is nested too deeply to copy here"},
                          ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it as its \u escape
        return json.dumps(row)
    return line


def write_rejects(path: Path, problems: list[Problem]) -> None:

    atomic_write_text(path, "\n".join(_reject_line(p) for p in problems) + "\n")


# --------------------------------------------------------------------------------------------- writing


def record_to_format(record: Record, fmt: str) -> dict[str, Any]:
    if fmt in ("messages", "pairs", "text") or record.is_preference or record.text is not None:
        return record.to_dict()
    if fmt == "sharegpt":
        back = {v: k for k, v in {"human": "user", "gpt": "assistant", "system": "system"}.items()}
        return {"conversations": [{"from": back[m.role], "value": m.content} for m in record.messages]}
    if fmt == "alpaca":
        messages = record.messages
        system = messages[0].content if messages[0].role == "system" else None
        turns = messages[1:] if system is not None else messages
        if len(turns) % 2 or any(m.role != ("user", "assistant")[i % 2] for i, m in enumerate(turns)):
            raise RecordError("messages", "alpaca needs alternating user/assistant turns")
        pairs = [[turns[i].content, turns[i + 1].content] for i in range(0, len(turns), 2)]
        out: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
        if system is not None:
            out["system"] = system
        if len(pairs) > 1:
            out["history"] = pairs[:-1]
        return out
    raise ValueError(f"unknown format {fmt!r}")


def records_to_jsonl(records: list[Record], fmt: str = "messages", source: str | Path | None = None) -> str:
    """The records as JSON lines in ``fmt``; a record ``fmt`` cannot express raises :class:`DataError`
    naming ``source`` (the file it came from) and its line."""
    if fmt not in ("messages", "pairs", "text", "sharegpt", "alpaca"):
        raise DataError(f"unknown output format {fmt!r}; expected messages, sharegpt or alpaca")
    lines = []
    for record in records:
        try:
            lines.append(json.dumps(record_to_format(record, fmt), ensure_ascii=False) + "\n")
        except RecordError as exc:
            where = f"{source}:{record.line}" if source is not None else f"line {record.line}"
            raise DataError(f"{where}: {exc.field}: {exc.message} (cannot write it as {fmt})") from None
    return "".join(lines)
