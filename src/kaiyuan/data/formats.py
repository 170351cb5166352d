"""Read JSON / JSONL (optionally gzipped) in Alpaca, ShareGPT, OpenAI-messages and preference-pair
formats into one canonical record type.

Canonical records (what ``kaiyuan data convert`` writes, one JSON object per line):

* instruction data: ``{"messages": [{"role": ..., "content": ...}, ...]}``
* preference data:  ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``

Every problem is reported as ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError

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


def _open_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: file: not valid UTF-8 ({exc.reason})") from None


def iter_json_objects(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line, object, error)`` for every record of a JSON array or JSON-lines file.

    ``error`` is a JSON syntax message for a line that does not parse; ``object`` is then the raw line
    (so a rejects file loses nothing), or None inside a JSON array.
    """
    text = _open_text(Path(path))
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_array(text)
        return
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj, end = decoder.raw_decode(line.strip())
        except json.JSONDecodeError as exc:
            yield number, line, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        if line.strip()[end:].strip():
            yield number, line, "invalid JSON: extra data after the object (one object per line)"
            continue
        yield number, obj, None


def _iter_json_array(text: str) -> Iterator[tuple[int, Any, str | None]]:
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    length = len(text)

    def skip_space(i: int) -> int:
        while i < length and text[i] in " \t\r\n":
            i += 1
        return i

    index = skip_space(index)
    if index < length and text[index] == "]":
        return
    while index < length:
        line = text.count("\n", 0, index) + 1
        try:
            obj, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno}); the rest of the file is unreadable"
            return
        yield line, obj, None
        index = skip_space(index)
        if index < length and text[index] == ",":
            index = skip_space(index + 1)
        elif index < length and text[index] == "]":
            return
        else:
            line = text.count("\n", 0, index) + 1
            yield line, None, "invalid JSON: expected ',' or ']' after an array element"
            return
    yield text.count("\n") + 1, None, "invalid JSON: the array is not closed with ']'"


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
        if speaker not in SHAREGPT_ROLES:
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


def load_records(path: str | Path, fmt: str = "auto", skip_invalid: bool = False,
                 rejects_path: Path | None = None, collect_all: bool = False) -> LoadResult:
    """Read every record of ``path``.

    A malformed record raises :class:`DataError` (``FILE:LINE: field: message``) unless
    ``skip_invalid`` (rejected records go to ``rejects_path``, default ``FILE.rejected.jsonl``, and are
    counted) or ``collect_all`` (problems are returned for a validation report).
    """
    path = Path(path)
    if path.suffix in (".txt", ".md"):  # a plain-text file is one document
        text = _open_text(path)
        return LoadResult(path=path, format="text", records=[Record([], text=text, line=1)] if text.strip() else [])
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    result = LoadResult(path=path, format=fmt)
    for line, obj, syntax_error in iter_json_objects(path):
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


def write_rejects(path: Path, problems: list[Problem]) -> None:
    from kaiyuan.hub.manifest import atomic_write_text

    lines = [json.dumps({"line": p.line, "field": p.field, "error": p.message, "record": p.raw},
                        ensure_ascii=False) for p in problems]
    atomic_write_text(path, "\n".join(lines) + "\n")


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


def records_to_jsonl(records: list[Record], fmt: str = "messages") -> str:
    return "".join(json.dumps(record_to_format(r, fmt), ensure_ascii=False) + "\n" for r in records)
