"""JSON-schema-constrained decoding: a character-level JSON parser over a schema, and a logits processor that
masks every token whose text the parser cannot take next. Independent of transformers (the processor only needs
``scores`` as a tensor), so any engine can use it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from kaiyuan.serve.engines.base import UnsupportedRequestError

# --- JSON-schema-constrained decoding ---------------------------------------------------------------------------
#
# A schema is compiled into ``Node``s; the parser state is a set of stacks of frames (a set, because ``anyOf`` can
# leave several readings alive). Feeding a character replaces the top frame with zero or more frames. A number
# or literal that may end hands a character it cannot take on to the frame below. Every frame knows the fewest
# characters that complete it (``residual``), which is how the output is steered to finish within max_tokens.
#
# Supported: type (and lists of types), properties/required, additionalProperties (a schema, for objects without
# properties), items/minItems/maxItems, minLength/maxLength, enum, const, anyOf/oneOf, allOf with one member, local
# $ref. Objects with properties accept only those keys. Any other keyword (minimum, pattern, format, …) is refused
# with UnsupportedRequestError rather than ignored; annotations (title, description, …) are taken.

WHITESPACE = " \t\n\r"
MAX_INDENT = 20


def _whitespace(frame: Any, ch: str) -> list[tuple[Any, ...]]:
    """Whitespace between tokens, as llama.cpp's JSON grammar has it: one space, or a newline and up to 20 spaces
    or tabs of indentation (unbounded runs are how small models loop under a JSON constraint). ``frame.ws``: 0
    before any, -1 after a lone space (no more), k > 0 after a newline and k - 1 indentation characters."""
    ws = frame.ws
    if ws == 0 and ch in " \n":
        return [(frame._replace(ws=-1 if ch == " " else 1),)]
    if 0 < ws <= MAX_INDENT and ch in " \t":
        return [(frame._replace(ws=ws + 1),)]
    return []
DIGITS = "0123456789"
HEX = DIGITS + "abcdefABCDEF"


@dataclass(eq=False)  # compared and hashed by identity, so frames holding nodes stay cheap to hash
class Node:
    kind: str  # object | array | string | integer | number | literal | union
    properties: dict[str, Node] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # property name -> its JSON text
    required: frozenset[str] = frozenset()
    extra: Node | None = None  # object without properties: the schema of every value
    items: Node | None = None
    min_items: int = 0
    max_items: int | None = None
    min_length: int = 0
    max_length: int | None = None
    literals: tuple[str, ...] = ()  # the JSON texts a literal allows (enum, const, true/false, null)
    options: tuple[Node, ...] = ()  # union
    min_len: int = 1  # the fewest characters a value takes


def _any_value() -> Node:
    node = Node("union")
    node.options = (Node("object", extra=node, min_len=2), Node("array", items=node, min_len=2),
                    Node("string", min_len=2), Node("number"), Node("literal", literals=("true", "false", "null"),
                                                                     min_len=4))
    return node


ANY = _any_value()
STRING = Node("string", min_len=2)


def _literal(values: list[Any]) -> Node:
    texts = tuple(dict.fromkeys(json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in values))
    if not texts:
        raise UnsupportedRequestError("an empty enum in the JSON schema allows no value")
    return Node("literal", literals=texts, min_len=min(map(len, texts)))


# what the decoder enforces, and annotations that constrain nothing; any other keyword is refused, never ignored
ENFORCED_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems",
                               "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "allOf",
                               "$ref"})
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs",
                         "definitions", "deprecated", "readOnly", "writeOnly"})


def unsupported_keyword(schema: Any) -> str | None:
    """The first keyword of ``schema`` (this level; ``compile_schema`` checks every level) not enforced."""
    for key in schema:
        if key not in ENFORCED_KEYWORDS | ANNOTATIONS:
            return key
    return None


def compile_schema(schema: Any, root: Any = None, depth: int = 0) -> Node:
    """The node for a JSON schema (a dict; ``{}`` or ``True`` is any value)."""
    root = schema if root is None else root
    if depth > 40:
        raise UnsupportedRequestError("the JSON schema nests too deeply (or refers to itself)")
    if schema is True or schema == {}:
        return ANY
    if not isinstance(schema, dict):
        raise UnsupportedRequestError("a JSON schema must be an object")
    keyword = unsupported_keyword(schema)
    if keyword is not None:
        raise UnsupportedRequestError(f"the JSON schema keyword {keyword!r} is not supported (the output could not "
                                      "be held to it)")
    sub = lambda s: compile_schema(s, root, depth + 1)  # noqa: E731
    if "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedRequestError(f"only local $refs are supported, not {ref!r}")
        target = root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedRequestError(f"the $ref {ref!r} points nowhere")
            target = target[part]
        return sub(target)
    if "const" in schema:
        return _literal([schema["const"]])
    if "enum" in schema:
        if not isinstance(schema["enum"], list):
            raise UnsupportedRequestError("enum must be a list")
        return _literal(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise UnsupportedRequestError(f"{key} must be a non-empty list")
            rest = {k: v for k, v in schema.items() if k != key}
            options = tuple(sub({**rest, **option} if isinstance(option, dict) else option) for option in schema[key])
            return Node("union", options=options, min_len=min(o.min_len for o in options))
    if "allOf" in schema:
        if not isinstance(schema["allOf"], list) or len(schema["allOf"]) != 1:
            raise UnsupportedRequestError("allOf is supported with one member only")
        return sub({**{k: v for k, v in schema.items() if k != "allOf"}, **schema["allOf"][0]})
    kind = schema.get("type")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind is None:
            return ANY
    if isinstance(kind, list):
        options = tuple(sub({**schema, "type": k}) for k in kind)
        if not options:
            raise UnsupportedRequestError("an empty type list allows no value")
        return Node("union", options=options, min_len=min(o.min_len for o in options))
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        if not isinstance(props, dict) or not isinstance(required, list):
            raise UnsupportedRequestError("properties must be an object and required a list")
        properties = {name: sub(s) for name, s in props.items()}
        for name in required:  # a required key without a schema takes any value
            properties.setdefault(name, ANY)
        extra = schema.get("additionalProperties", True)
        if properties or extra is False:
            extra = None  # only the listed keys (with no properties and no additional ones: only {})
        else:
            extra = ANY if extra in (True, None) else sub(extra)
        node = Node("object", properties=properties, required=frozenset(required), extra=extra,
                    keys={name: json.dumps(name, ensure_ascii=False) for name in properties})
        node.min_len = 1 + _tail(node, node.required) - (1 if required else 0)  # "{", the required keys, "}"
        return node
    if kind == "array":
        items = sub(schema.get("items", {}))
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        if high is not None and int(high) < low:
            raise UnsupportedRequestError("maxItems is below minItems")
        return Node("array", items=items, min_items=low, max_items=None if high is None else int(high),
                    min_len=2 + low * items.min_len + max(0, low - 1))
    if kind == "string":
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if high is not None and int(high) < low:
            raise UnsupportedRequestError("maxLength is below minLength")
        return Node("string", min_length=low, max_length=None if high is None else int(high), min_len=2 + low)
    if kind in ("integer", "number"):
        return Node(kind)
    if kind == "boolean":
        return _literal([True, False])
    if kind == "null":
        return _literal([None])
    raise UnsupportedRequestError(f"unknown JSON schema type {kind!r}")


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> Node:
    return compile_schema(json.loads(schema_json))


def compiled_schema(schema: Any) -> Node:
    """``compile_schema`` with the nodes of a schema seen before reused (so are the token masks cached for them)."""
    return _compiled(json.dumps(schema, sort_keys=True))


def _tail(node: Node, names: frozenset[str] | set[str]) -> int:
    """Characters for ``,"key":value`` of each of ``names`` (at their shortest) and the closing brace."""
    return sum(1 + len(node.keys[n]) + 1 + node.properties[n].min_len for n in names) + 1


def _start(node: Node, ch: str) -> list[tuple[Any, ...]]:
    """The frames that replace an expected value of ``node`` when it starts with ``ch``."""
    if node.kind == "union":
        return [frames for option in node.options for frames in _start(option, ch)]
    if node.kind == "object":
        return [(Obj(node, frozenset(), "first", ""),)] if ch == "{" else []
    if node.kind == "array":
        return [(Arr(node, 0, "first"),)] if ch == "[" else []
    if node.kind == "string":
        return [(Str(node, 0, ""),)] if ch == '"' else []
    if node.kind in ("integer", "number"):
        return Num(node, "start").feed(ch)
    return Lit(node.literals, 0).feed(ch)


class Value(NamedTuple):
    """A value of ``node`` is expected (whitespace may come first)."""

    node: Node
    ws: int = 0  # see _whitespace

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        if ch in WHITESPACE:
            return _whitespace(self, ch)
        return _start(self.node, ch)

    def can_end(self) -> bool:
        return False

    def residual(self) -> int:
        return self.node.min_len


class Obj(NamedTuple):
    """Inside an object. ``phase``: first (after ``{``), key (after ``,``), key_text (inside a known key, ``key``
    holding its text so far), colon (after the key ``key``), next (after a value)."""

    node: Node
    seen: frozenset[str]
    phase: str
    key: str
    ws: int = 0

    def candidates(self) -> list[str]:
        return [name for name in self.node.properties if name not in self.seen]

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        node, phase = self.node, self.phase
        if phase == "key_text":
            text = self.key + ch
            names = [n for n in self.candidates() if node.keys[n].startswith(text)]
            done = [n for n in names if node.keys[n] == text]
            if done:
                return [(self._replace(phase="colon", key=done[0]),)]
            return [(self._replace(key=text),)] if names else []
        if ch in WHITESPACE:
            return _whitespace(self, ch)
        if phase in ("first", "key") and ch == '"':
            if not node.properties:  # any key: parse it as a string
                return [(self._replace(phase="colon", key="", ws=0), Str(STRING, 0, ""))] if node.extra else []
            return [(self._replace(phase="key_text", key='"', ws=0),)] if self.candidates() else []
        if phase == "colon" and ch == ":":
            child = node.properties[self.key] if node.properties else node.extra
            return [(Obj(node, self.seen | {self.key}, "next", ""), Value(child))]
        if phase == "next" and ch == "," and (self.candidates() or node.extra is not None):
            return [(self._replace(phase="key", ws=0),)]
        if phase in ("first", "next") and ch == "}" and node.required <= self.seen:
            return [()]
        return []

    def can_end(self) -> bool:
        return False

    def residual(self) -> int:
        node, phase = self.node, self.phase
        if not node.properties:
            extra = node.extra.min_len if node.extra else 0
            return {"first": 1, "key": 2 + 1 + extra + 1, "colon": 1 + extra + 1, "next": 1}[phase]
        missing = node.required - self.seen
        if phase == "next":
            return _tail(node, missing)
        if phase == "first":
            return _tail(node, missing) - (1 if missing else 0)
        if phase == "key":
            if missing:
                return _tail(node, missing) - 1
            return min(len(node.keys[n]) + 1 + node.properties[n].min_len for n in self.candidates()) + 1
        if phase == "colon":
            return 1 + node.properties[self.key].min_len + _tail(node, missing - {self.key})
        return min(len(node.keys[n]) - len(self.key) + 1 + node.properties[n].min_len + _tail(node, missing - {n})
                   for n in self.candidates() if node.keys[n].startswith(self.key))


class Arr(NamedTuple):
    """Inside an array of ``count`` items so far; ``phase``: first (after ``[``) or next (after an item)."""

    node: Node
    count: int
    phase: str
    ws: int = 0

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        node = self.node
        if ch in WHITESPACE:
            return _whitespace(self, ch)
        if ch == "]" and self.count >= node.min_items:
            return [()]
        if self.phase == "first" and node.max_items != 0:
            return [(self._counted(), *frames) for frames in Value(node.items).feed(ch)]
        if self.phase == "next" and ch == "," and (node.max_items is None or self.count < node.max_items):
            return [(self._counted(), Value(node.items))]
        return []

    def _counted(self) -> Arr:
        count = self.count + 1  # past every bound the exact count no longer matters (keeps states few)
        return Arr(self.node, min(count, max(self.node.min_items, self.node.max_items or 0)), "next")

    def can_end(self) -> bool:
        return False

    def residual(self) -> int:
        items, low = self.node.items.min_len, self.node.min_items
        if self.phase == "first":
            return low * items + max(0, low - 1) + 1
        return max(0, low - self.count) * (1 + items) + 1


class Str(NamedTuple):
    """Inside a string of ``length`` characters so far (counted only as far as min/maxLength need); ``escape``:
    ``\\`` after a backslash, ``u4`` … ``u1`` while hex digits of ``\\uXXXX`` are due."""

    node: Node
    length: int
    escape: str

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        if self.escape == "\\":
            if ch == "u":
                return [(self._replace(escape="u4"),)]
            return [(self._grown(),)] if ch in '"\\/bfnrt' else []
        if self.escape:
            if ch not in HEX:
                return []
            left = int(self.escape[1]) - 1
            return [(self._replace(escape=f"u{left}"),)] if left else [(self._grown(),)]
        if ch == '"':
            return [()] if self.length >= self.node.min_length else []
        if ord(ch) < 0x20 or (self.node.max_length is not None and self.length >= self.node.max_length):
            return []
        return [(self._replace(escape="\\"),)] if ch == "\\" else [(self._grown(),)]

    def _grown(self) -> Str:
        cap = max(self.node.min_length, self.node.max_length or 0)
        return Str(self.node, min(self.length + 1, cap), "")

    def can_end(self) -> bool:
        return False

    def residual(self) -> int:
        pending = 1 if self.escape == "\\" else int(self.escape[1]) if self.escape else 0
        return 1 + max(0, self.node.min_length - self.length) + pending


NUMBER_MOVES = {  # phase -> (characters, next phase)
    "start": [("-", "sign"), ("0", "zero"), (DIGITS[1:], "int")],
    "sign": [("0", "zero"), (DIGITS[1:], "int")],
    "int": [(DIGITS, "int"), (".", "dot"), ("eE", "exp")],
    "zero": [(".", "dot"), ("eE", "exp")],
    "dot": [(DIGITS, "frac")],
    "frac": [(DIGITS, "frac"), ("eE", "exp")],
    "exp": [("+-", "exp_sign"), (DIGITS, "exp_digits")],
    "exp_sign": [(DIGITS, "exp_digits")],
    "exp_digits": [(DIGITS, "exp_digits")],
}
INTEGER_PHASES = {"sign", "zero", "int"}
NUMBER_ENDS = {"zero", "int", "frac", "exp_digits"}


class Num(NamedTuple):
    node: Node
    phase: str

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        for chars, phase in NUMBER_MOVES[self.phase]:
            if ch in chars and (self.node.kind == "number" or phase in INTEGER_PHASES):
                return [(self._replace(phase=phase),)]
        return []

    def can_end(self) -> bool:
        return self.phase in NUMBER_ENDS

    def residual(self) -> int:
        return 0 if self.can_end() else 1


class Lit(NamedTuple):
    """Partway (``pos`` characters) through one of the JSON texts ``texts``."""

    texts: tuple[str, ...]
    pos: int

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        left = tuple(t for t in self.texts if len(t) > self.pos and t[self.pos] == ch)
        if not left:
            return []
        if all(len(t) == self.pos + 1 for t in left):
            return [()]
        return [(Lit(left, self.pos + 1),)]

    def can_end(self) -> bool:
        return any(len(t) == self.pos for t in self.texts)

    def residual(self) -> int:
        return min(len(t) - self.pos for t in self.texts)


State = frozenset  # of stacks (tuples of frames, top last)


def initial_state(node: Node) -> State:
    return frozenset({(Value(node, ws=-1),)})  # no whitespace before the value


def step(state: State, ch: str) -> State:
    """The state after one more character (empty: the character is not allowed)."""
    out = set()
    for stack in state:
        while stack:
            top = stack[-1]
            out.update(stack[:-1] + frames for frames in top.feed(ch))
            if not top.can_end():
                break
            stack = stack[:-1]  # a number or literal that may end hands the character to its parent
    return frozenset(out)


def advance(state: State, text: str) -> State:
    for ch in text:
        if not state:
            break
        state = step(state, ch)
    return state


def finished(state: State) -> bool:
    """Whether the text so far is a complete value."""
    return any(all(frame.can_end() for frame in stack) for stack in state)


def residual(state: State) -> int:
    """The fewest characters that complete the value."""
    return min(sum(frame.residual() for frame in stack) for stack in state)


class JsonTokenIndex:
    """Which tokens may come next in a given parser state, found by walking a trie of the token texts (the walk
    stops at the first character the parser rejects). The answer for a state is cached: inside a string the state
    repeats, and that is where almost every token is allowed."""

    def __init__(self, texts: dict[int, str], cache_size: int = 256) -> None:
        self.trie: dict[Any, Any] = {}
        for token_id, text in texts.items():
            node = self.trie
            for ch in text:
                node = node.setdefault(ch, {})
            node.setdefault(None, []).append(token_id)
        self.cache: dict[State, tuple[Any, Any]] = {}
        self.cache_size = cache_size
        self.lock = threading.Lock()

    def options(self, state: State) -> tuple[Any, Any]:
        """Token ids allowed next and, for each, the residual of the state after it (two tensors)."""
        import torch

        with self.lock:
            hit = self.cache.get(state)
        if hit is not None:
            return hit
        allowed: dict[int, int] = {}
        steps: dict[tuple[State, str], State] = {}
        todo = [(self.trie, state)]
        while todo:
            trie, current = todo.pop()
            for ch, child in trie.items():
                if ch is None:
                    continue
                key = (current, ch)
                nxt = steps.get(key)
                if nxt is None:
                    nxt = steps[key] = step(current, ch)
                if not nxt:
                    continue
                if None in child:
                    left = residual(nxt)
                    allowed.update((token_id, left) for token_id in child[None])
                todo.append((child, nxt))
        result = (torch.tensor(list(allowed), dtype=torch.long), torch.tensor(list(allowed.values())))
        with self.lock:
            if len(self.cache) >= self.cache_size:
                self.cache.pop(next(iter(self.cache)))
            self.cache[state] = result
        return result


class JsonLogitsProcessor:
    """Masks every token that would break the JSON (or leave too little room to finish it within the token
    budget); once the value is complete only the end-of-turn tokens remain."""

    def __init__(self, index: JsonTokenIndex, texts: dict[int, str], node: Node, prompt_length: int,
                 max_new_tokens: int, stop_ids: list[int]) -> None:
        self.index, self.texts = index, texts
        self.state = initial_state(node)
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        self.stop_ids = stop_ids
        self.fed = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[0, self.prompt_length:].tolist()
        for token_id in generated[self.fed:]:
            self.state = advance(self.state, self.texts.get(token_id, ""))
        self.fed = len(generated)
        after = self.max_new_tokens - self.fed - 1  # tokens left after this one
        keep = torch.tensor([], dtype=torch.long)
        if self.state:
            ids, left = self.index.options(self.state)
            keep = ids[left <= after - 1]  # leave one token for the end of turn
            if keep.numel() == 0:
                keep = ids[left <= after]
            if keep.numel() == 0 and ids.numel():  # too little room to finish at all: head for the end regardless
                keep = ids[left == left.min()]
        if not self.state or finished(self.state) or keep.numel() == 0:
            keep = torch.cat([keep, torch.tensor(self.stop_ids, dtype=torch.long)])
        keep = keep[keep < scores.shape[-1]].to(scores.device)
        mask = torch.full_like(scores, float("-inf"))
        mask[:, keep] = 0
        return scores + mask
