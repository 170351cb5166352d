"""OpenAI-compatible request and response shapes."""

from __future__ import annotations

import base64
import json
import re
import struct
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kaiyuan.serve.engines.base import GENERATION_FIELDS, TokenLogprob

STRICT = ConfigDict(extra="forbid")  # a field we do not apply is refused (400), never silently ignored


class FunctionCall(BaseModel):
    model_config = STRICT

    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    model_config = STRICT

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


# fields OpenAI's clients echo back in an assistant message of the history; taken when empty, refused otherwise
ECHOED_EMPTY_FIELDS = ("refusal", "annotations", "audio", "function_call")


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_echoed_empty_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(k, 0) in (None, []) for k in ECHOED_EMPTY_FIELDS):
            return {k: v for k, v in data.items() if not (k in ECHOED_EMPTY_FIELDS and v in (None, []))}
        return data

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """``{"role", "content"}`` (content always a string), plus tool calls / tool call id when present."""
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.role == "tool" and self.name is not None:
            message["name"] = self.name
        return message


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False


class FunctionDefinition(BaseModel):
    model_config = STRICT

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = STRICT

    type: Literal["function"] = "function"
    function: FunctionDefinition


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = STRICT

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self

    def schema_or_none(self) -> dict[str, Any] | None:
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            assert self.json_schema is not None
            return self.json_schema.schema_
        return None


def _stop_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if len(values) > 4 or any(not s for s in values):
        raise ValueError("stop takes up to 4 non-empty strings")
    return values


class SamplingRequest(BaseModel):
    """What chat and text completions share."""

    model_config = STRICT

    model: str
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)  # not OpenAI's (send it in extra_body); 0 or -1: off
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None  # token id (as a string) → bias in [-100, 100]
    user: str | None = Field(default=None, max_length=256)  # an end user's id, as OpenAI takes it: no effect on output
    # generation_config fields (not OpenAI's: send them in extra_body), over the model's own; see GENERATION_FIELDS
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=100.0)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0, le=1024)
    min_length: int | None = Field(default=None, ge=0)
    min_new_tokens: int | None = Field(default=None, ge=0)
    suppress_tokens: list[int] | None = Field(default=None, max_length=4096)
    begin_suppress_tokens: list[int] | None = Field(default=None, max_length=4096)
    bad_words_ids: list[list[int]] | None = Field(default=None, max_length=1024)
    forced_eos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = None
    exponential_decay_length_penalty: tuple[int, float] | None = None

    @field_validator("bad_words_ids")
    @classmethod
    def _bad_words(cls, value: list[list[int]] | None) -> list[list[int]] | None:
        if value is not None and any(not word or len(word) > 256 for word in value):
            raise ValueError("bad_words_ids takes lists of 1 to 256 token ids")
        return value

    @field_validator("forced_eos_token_id", "eos_token_id")
    @classmethod
    def _token_list(cls, value: int | list[int] | None) -> int | list[int] | None:
        if isinstance(value, list) and not 1 <= len(value) <= 256:
            raise ValueError("takes a token id or a list of 1 to 256 token ids")
        return value

    @field_validator("exponential_decay_length_penalty")
    @classmethod
    def _decay(cls, value: tuple[int, float] | None) -> tuple[int, float] | None:
        if value is not None and (value[0] < 0 or not 1.0 <= value[1] <= 10.0):
            raise ValueError("takes [start index >= 0, decay factor in [1, 10]]")
        return value

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        return _stop_list(value)

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > 1024:
            raise ValueError("logit_bias takes at most 1024 tokens")
        for key, bias in value.items():
            if not key.isascii() or not key.isdigit():
                raise ValueError(f"logit_bias keys must be token ids (non-negative integers), not {key!r}")
            if not -100 <= bias <= 100 or bias != bias:
                raise ValueError(f"logit_bias values must lie in [-100, 100], not {bias!r} (token {key})")
        return value

    def token_bias(self) -> dict[int, float] | None:
        return {int(k): float(v) for k, v in self.logit_bias.items()} if self.logit_bias else None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def generation_fields(self) -> dict[str, Any]:
        """The GENERATION_FIELDS the request sets (JSON lists as lists; the decay penalty a tuple)."""
        return {name: getattr(self, name) for name in GENERATION_FIELDS if getattr(self, name, None) is not None}


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("tool_choice is only allowed when tools are specified")
        return self

    def chat(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.messages]

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    def limit_given(self) -> bool:
        return self.max_completion_tokens is not None or self.max_tokens is not None

    def active_tools(self) -> list[dict[str, Any]]:
        """The tools to offer the model (none with tool_choice "none"), as plain dicts."""
        if not self.tools or self.tool_choice == "none":
            return []
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def forced_tools(self) -> list[Tool]:
        """The tools the reply must call one of: all for "required", the named one, or none."""
        if not self.tools or self.tool_choice in (None, "none", "auto"):
            return []
        if self.tool_choice == "required":
            return self.tools
        choice = self.tool_choice
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str):
            raise ValueError('tool_choice must be "none", "auto", "required" or '
                             '{"type": "function", "function": {"name": ...}}')
        named = [t for t in self.tools if t.function.name == name]
        if not named:
            raise ValueError(f"tool_choice names the function {name!r}, which is not among the tools")
        return named


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _prompt_given(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value

    @model_validator(mode="after")
    def _supported(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        if self.suffix:
            raise ValueError("suffix is not supported")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of is not supported (other than equal to n)")
        return self

    def prompts(self) -> list[str | list[int]]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        return list(prompt)  # type: ignore[arg-type]


class EmbeddingRequest(BaseModel):
    model_config = STRICT

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _input_given(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("input takes at most 2048 items")
        return value

    def inputs(self) -> list[Any]:
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(i, int) for i in self.input):
            return [list(self.input)]
        return list(self.input)


# --- ids ---------------------------------------------------------------------------------------------------------

def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def text_completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# --- logprobs ----------------------------------------------------------------------------------------------------

def chat_logprobs(entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """``choices[].logprobs`` of a chat completion (or chunk)."""
    if entries is None:
        return None
    return {"content": [{"token": e.token, "logprob": e.logprob, "bytes": e.bytes,
                         "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes}
                                          for t in e.top_logprobs]} for e in entries],
            "refusal": None}


def completion_logprobs(entries: list[TokenLogprob] | None, offset: int = 0) -> dict[str, Any] | None:
    """The legacy ``choices[].logprobs`` of a text completion: ``text_offset`` counts characters of the completion
    from ``offset``; each ``top_logprobs`` dict holds the most likely tokens and the chosen one."""
    if entries is None:
        return None
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{**{t.token: t.logprob for t in e.top_logprobs}, e.token: e.logprob} for e in entries],
            "text_offset": offsets}


# --- responses -----------------------------------------------------------------------------------------------------

def chat_choice(index: int, text: str | None, finish_reason: str, logprobs: list[TokenLogprob] | None = None,
                tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": chat_logprobs(logprobs)}


def chat_completion(request_id: str, model: str, choices: list[dict[str, Any]], prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(request_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
               usage: dict[str, int] | None = None, with_choice: bool = True, index: int = 0,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()),
                             "model": model, "choices": []}
    if with_choice:
        chunk["choices"] = [{"index": index, "delta": delta, "finish_reason": finish_reason,
                             "logprobs": chat_logprobs(logprobs)}]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def text_choice(index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": logprobs}


def text_completion(request_id: str, model: str, choices: list[dict[str, Any]],
                    usage_: dict[str, int] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": request_id, "object": "text_completion", "created": int(time.time()),
                            "model": model, "choices": choices}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def embedding_item(index: int, vector: list[float], encoding_format: str) -> dict[str, Any]:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        data: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    else:
        data = vector
    return {"object": "embedding", "index": index, "embedding": data}


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --- tools ---------------------------------------------------------------------------------------------------------

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def tool_call_schema(tools: list[Tool]) -> dict[str, Any]:
    """The JSON schema of a bare ``{"name": ..., "arguments": {...}}`` call of one of ``tools``."""
    options = [{"type": "object", "properties": {"name": {"const": t.function.name},
                                                 "arguments": t.function.parameters or {"type": "object"}},
                "required": ["name", "arguments"]} for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_calls(text: str, names: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """Tool calls in model output — Hermes-style ``<tool_call>{json}</tool_call>`` blocks, or the whole reply as a
    bare ``{"name", "arguments"}`` object (or a list of them) — and the text left over (None if nothing is).
    Calls of unknown functions or with malformed JSON leave the text as it is."""
    def call(obj: Any) -> dict[str, Any] | None:
        if not isinstance(obj, dict) or obj.get("name") not in names:
            return None
        arguments = obj.get("arguments", obj.get("parameters", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return {"id": tool_call_id(), "type": "function", "function": {"name": obj["name"], "arguments": arguments}}

    def parsed(source: str) -> list[dict[str, Any]] | None:
        try:
            value = json.loads(source)
        except ValueError:
            return None
        calls = [call(v) for v in (value if isinstance(value, list) else [value])]
        return calls if calls and all(calls) else None  # type: ignore[return-value]

    if "<tool_call>" in text:
        found = [parsed(m.group(1)) for m in TOOL_CALL.finditer(text)]
        if found and all(found):
            rest = TOOL_CALL.sub("", text).strip()
            return rest or None, [c for calls in found for c in calls or []]
        return text, []
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    calls = parsed(fenced.group(1) if fenced else stripped)
    return (None, calls) if calls else (text, [])
