"""What both serving engines share about chat: tool messages for the chat template, the Hermes-style tools
prompt for templates without tools, stop strings in streamed text, and logprob entries aligned with that text."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kaiyuan.serve.engines.base import Generation, StreamEvent, TokenLogprob

TOOLS_SYSTEM_PROMPT = (  # for templates that do not render tools themselves: the Hermes convention, briefly
    "You may call these functions:\n<tools>\n{tools}\n</tools>\n"
    'To call one, reply with <tool_call>{{"name": <function-name>, "arguments": <args-json-object>}}</tool_call>'
)


class LogprobAligner:
    """Hands out token logprobs with the text they produced: a token goes out once all of its text has."""

    def __init__(self) -> None:
        self.pending: list[TokenLogprob] = []
        self.offset = 0  # characters of the tokens handed out

    def take(self, emitted: int, partial: bool = False) -> list[TokenLogprob]:
        """Entries whose text ends within ``emitted`` characters (``partial``: that start within them)."""
        out = []
        while self.pending:
            end = self.offset + len(self.pending[0].token)
            if not (end <= emitted or (partial and self.offset < emitted)):
                break
            out.append(self.pending.pop(0))
            self.offset = end
        return out


def describe_tools(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with the tools described in the system message (added when there is none)."""
    described = TOOLS_SYSTEM_PROMPT.format(tools="\n".join(
        json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in tools))
    messages = list(messages)
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{described}"}
    else:
        messages.insert(0, {"role": "system", "content": described})
    return messages


def template_message(message: dict[str, Any], template: str) -> dict[str, Any]:
    """One message as the template can render it: tool calls with parsed arguments for templates that know them,
    else as ``<tool_call>`` text (and tool results as ``<tool_response>`` user turns), Hermes style."""
    calls, role = message.get("tool_calls"), message["role"]
    if "tool_calls" in template:  # the template renders tool calls and results itself
        if not calls:
            return message
        structured = []
        for call in calls:
            function = dict(call.get("function") or {})
            try:
                function["arguments"] = json.loads(function.get("arguments") or "{}")
            except (TypeError, ValueError):
                pass
            structured.append({**call, "function": function})
        return {**message, "content": message.get("content") or "", "tool_calls": structured}
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"}
    text = message.get("content") or ""
    for call in calls or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = function.get("arguments")
        call_json = json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)
        text += f"\n<tool_call>\n{call_json}\n</tool_call>"
    return {"role": role, "content": text.strip() if calls else text}


class StopTrimmer:
    """Cut streamed text at the first stop string, holding back what might be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.pending += text
        hits = [self.pending.find(s) for s in self.stops if s in self.pending]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        hold = max((len(s) - 1 for s in self.stops), default=0)
        keep = 0
        for size in range(min(hold, len(self.pending)), 0, -1):
            if any(s.startswith(self.pending[-size:]) for s in self.stops):
                keep = size
                break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def collect(events: Iterator[StreamEvent]) -> Generation:
    """A whole generation from its stream: the text joined, the logprob entries in order, the final event's usage."""
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish = None
    for event in events:
        text.append(event.text)
        logprobs.extend(event.logprobs or [])
        finish = event.finish or finish
    assert finish is not None
    finish.text = "".join(text)
    if finish.logprobs is not None:
        finish.logprobs = logprobs
    return finish


class SpecialTokenShield:
    """Message content is text: a control token's spelling inside it (``<|im_end|>``, ``<|im_start|>system``) must
    not become that control token, or a user could forge a system turn. The policy is vLLM's and llama.cpp's
    proposed ``--escape-special-in-input``: only the chat template's own markup is tokenized with special tokens
    parsed; inside message content a special token's text is tokenized as plain text.

    ``shield(messages)`` swaps each special token's text in the messages' content for a placeholder (private-use
    characters around a per-request random nonce, so content cannot spell one); the template renders as usual;
    ``tokenize`` then tokenizes the markup between placeholders with special tokens parsed and each placeholder's
    text without. Content without special-token text is rendered and tokenized exactly as before."""

    def __init__(self, specials: Iterable[str]) -> None:
        texts = sorted({s for s in specials if s}, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, texts))) if texts else None

    def shield(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """``messages`` with special-token text in their content replaced, and the placeholders' texts."""
        literals: dict[str, str] = {}
        if self.pattern is None:
            return messages, literals
        nonce = secrets.token_hex(8)

        def placeholder(match: re.Match[str]) -> str:
            key = f"\ue000{nonce}{len(literals)}\ue001"
            literals[key] = match.group(0)
            return key

        out = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, str) and self.pattern.search(content):
                message = {**message, "content": self.pattern.sub(placeholder, content)}
            out.append(message)
        return out, literals

    @staticmethod
    def tokenize(text: str, literals: dict[str, str], markup: Callable[[str], list[int]],
                 plain: Callable[[str], list[int]]) -> list[int]:
        """Token ids of a prompt rendered from shielded messages: ``markup(part)`` parses special tokens,
        ``plain(part)`` does not."""
        if not literals:
            return markup(text)
        split = re.compile("(" + "|".join(map(re.escape, literals)) + ")")
        ids: list[int] = []
        for i, part in enumerate(split.split(text)):
            if part:
                ids += plain(literals[part]) if i % 2 else markup(part)
        return ids
