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
# properties and for required keys not among them), items/minItems/maxItems, minLength/maxLength (in code points: a
# surrogate-pair escape is one), enum, const, anyOf, allOf, oneOf with options that provably exclude each other,
# local $ref. Every keyword of a schema holds together: anyOf/oneOf/allOf/$ref are multiplied out with the keywords
# beside them into flat readings (min* the largest, max* the smallest, types intersected, properties merged,
# enum/const literals kept only where the other keywords accept them). Objects with properties accept only those
# keys; a schema without type is taken for the types its keywords are about (properties: an object). Any other
# keyword (minimum, pattern, format, …) is refused with UnsupportedRequestError rather than ignored; annotations
# (title, description, …) are taken. The invariant: text the parser accepts is JSON that matches the schema.

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


class NoValue(UnsupportedRequestError):
    """The schema, or one reading of it (an ``anyOf`` option, a member of a type list), allows no value. A
    union drops such a reading; a schema left with none is refused with this error."""


def _literal_texts(values: list[Any]) -> list[str]:
    """The JSON texts of ``values`` (once each). Values with no JSON text (NaN) and strings holding lone UTF-16
    surrogates (not Unicode, so the output never holds one) are left out."""
    texts = []
    for value in values:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            continue
        if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            texts.append(text)
    return list(dict.fromkeys(texts))


def _literal(values: list[Any], texts: list[str] | None = None) -> Node:
    """The node for the JSON values ``values`` (or for their JSON ``texts``, when given)."""
    texts = _literal_texts(values) if texts is None else texts
    if not texts:
        raise NoValue("an empty enum in the JSON schema allows no value")
    return Node("literal", literals=tuple(texts), min_len=min(map(len, texts)))


# what the decoder enforces, and annotations that constrain nothing; any other keyword is refused, never ignored
FLAT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems",
                           "maxItems", "minLength", "maxLength", "enum", "const"})
ENFORCED_KEYWORDS = FLAT_KEYWORDS | {"anyOf", "oneOf", "allOf", "$ref"}
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs",
                         "definitions", "deprecated", "readOnly", "writeOnly"})
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
TYPE_KEYWORDS = {"object": ("properties", "required", "additionalProperties"), "array": ("items", "minItems",
                 "maxItems"), "string": ("minLength", "maxLength")}
MAX_DEPTH = 40
MAX_READINGS = 64  # a schema is compiled as a union of at most this many combinator-free readings


def unsupported_keyword(schema: Any) -> str | None:
    """The first keyword of ``schema`` (this level; ``compile_schema`` checks every level) not enforced."""
    for key in schema:
        if key not in ENFORCED_KEYWORDS | ANNOTATIONS:
            return key
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality as JSON schema has it (``1 == 1.0``, but ``true != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _common(a: list[Any], b: list[Any]) -> list[Any]:
    return [x for x in a if any(_same(x, y) for y in b)]


def _count(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise UnsupportedRequestError(f"{key} must be a non-negative integer")
    return int(value)


def _resolve(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedRequestError(f"only local $refs are supported, not {ref!r}")
    target = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise UnsupportedRequestError(f"the $ref {ref!r} points nowhere")
        target = target[part]
    return target


def _flat(schema: dict[str, Any]) -> dict[str, Any]:
    """The combinator-free keywords of ``schema``, checked and normalized: ``type`` a tuple of type names,
    ``const`` folded into ``enum``, counts as ints."""
    flat: dict[str, Any] = {}
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for kind in kinds:
            if kind not in TYPES:
                raise UnsupportedRequestError(f"unknown JSON schema type {kind!r}")
        if not kinds:
            raise NoValue("an empty type list allows no value")
        flat["type"] = tuple(dict.fromkeys(kinds))
    if "enum" in schema:
        if not isinstance(schema["enum"], list):
            raise UnsupportedRequestError("enum must be a list")
        flat["enum"] = list(schema["enum"])
    if "const" in schema:
        flat["enum"] = _common(flat.get("enum", [schema["const"]]), [schema["const"]])
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if (count := _count(schema, key)) is not None:
            flat[key] = count
    if "properties" in schema:
        if not isinstance(schema["properties"], dict):
            raise UnsupportedRequestError("properties must be an object")
        flat["properties"] = dict(schema["properties"])
    if "required" in schema:
        if not isinstance(schema["required"], list) or not all(isinstance(n, str) for n in schema["required"]):
            raise UnsupportedRequestError("required must be a list of property names")
        flat["required"] = list(dict.fromkeys(schema["required"]))
    for key in ("additionalProperties", "items"):
        if key in schema:
            if not isinstance(schema[key], bool | dict):
                raise UnsupportedRequestError(f"{key} must be a schema (an object or a boolean)")
            flat[key] = schema[key]
    return flat


def _both(a: Any, b: Any) -> Any:
    """The schema of values that match both ``a`` and ``b``."""
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    if a is False or b is False:
        return False
    return {"allOf": [a, b]}


def _meet(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The flat schema of values that match both flat schemas ``a`` and ``b`` (exactly: no more, no fewer)."""
    out = {**a, **b}
    if "type" in a and "type" in b:
        kinds = [t if t == u else "integer" for t in a["type"] for u in b["type"]
                 if t == u or {t, u} == {"integer", "number"}]
        if not kinds:
            raise NoValue(f"no value has one of the types {list(a['type'])} and one of {list(b['type'])}")
        out["type"] = tuple(dict.fromkeys(kinds))
    if "enum" in a and "enum" in b:
        out["enum"] = _common(a["enum"], b["enum"])
    for key, pick in (("minLength", max), ("minItems", max), ("maxLength", min), ("maxItems", min)):
        if key in a and key in b:
            out[key] = pick(a[key], b[key])
    if "items" in a and "items" in b:
        out["items"] = _both(a["items"], b["items"])
    if any(key in a for key in TYPE_KEYWORDS["object"]) and any(key in b for key in TYPE_KEYWORDS["object"]):
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        extra_a, extra_b = a.get("additionalProperties", True), b.get("additionalProperties", True)
        out["properties"] = {name: _both(props_a.get(name, extra_a), props_b.get(name, extra_b))
                             for name in {**props_a, **props_b}}
        out["additionalProperties"] = _both(extra_a, extra_b)
        out["required"] = list(dict.fromkeys(a.get("required", []) + b.get("required", [])))
    return out


def _product(readings: list[dict[str, Any]], others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Readings matching one of ``readings`` and one of ``others``: each pair met (pairs that allow no value go)."""
    out = []
    for a in readings:
        for b in others:
            try:
                out.append(_meet(a, b))
            except NoValue:
                continue
            if len(out) > MAX_READINGS:
                raise UnsupportedRequestError(f"the JSON schema's anyOf/oneOf/allOf combine into more than "
                                              f"{MAX_READINGS} alternatives")
    return out


def _readings(schema: Any, root: Any, depth: int) -> list[dict[str, Any]]:
    """``schema`` as a union of flat (combinator-free) schemas: its own flat keywords met with its ``$ref``, every
    ``allOf`` member, one ``anyOf`` option and one ``oneOf`` option. Empty: no value matches."""
    if depth > MAX_DEPTH:
        raise UnsupportedRequestError("the JSON schema nests too deeply (or refers to itself)")
    if schema is True:
        return [{}]
    if schema is False:
        return []
    if not isinstance(schema, dict):
        raise UnsupportedRequestError("a JSON schema must be an object")
    keyword = unsupported_keyword(schema)
    if keyword is not None:
        raise UnsupportedRequestError(f"the JSON schema keyword {keyword!r} is not supported (the output could not "
                                      "be held to it)")
    try:
        readings = [_flat(schema)]
    except NoValue:
        return []
    if "$ref" in schema:
        readings = _product(readings, _readings(_resolve(schema["$ref"], root), root, depth + 1))
    if "allOf" in schema:
        if not isinstance(schema["allOf"], list) or not schema["allOf"]:
            raise UnsupportedRequestError("allOf must be a non-empty list")
        for member in schema["allOf"]:
            readings = _product(readings, _readings(member, root, depth + 1))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise UnsupportedRequestError(f"{key} must be a non-empty list")
            options = [r for option in schema[key] for r in _readings(option, root, depth + 1)]
            if key == "oneOf":
                _check_exclusive(schema, root, depth)
            readings = _product(readings, options)
    return readings


# --- proving oneOf options mutually exclusive ---------------------------------------------------------------------
#
# An envelope over-approximates the values a schema matches: the JSON types they can have ("number" split into
# integer and fraction, as JSON schema counts 1.0 an integer), the literals they are among (None: any), and for
# objects, required properties whose values are among known literals (a tag, as in a discriminated union).

BASE_TYPES = frozenset({"object", "array", "string", "integer", "fraction", "boolean", "null"})


class Envelope(NamedTuple):
    types: frozenset[str] = BASE_TYPES
    literals: list[Any] | None = None
    tags: dict[str, list[Any]] = {}  # never mutated

    def meet(self, other: Envelope) -> Envelope:
        literals = self.literals if other.literals is None else other.literals if self.literals is None else \
            _common(self.literals, other.literals)
        tags = {**self.tags, **other.tags}
        for name in self.tags.keys() & other.tags.keys():
            tags[name] = _common(self.tags[name], other.tags[name])
        return Envelope(self.types & other.types, literals, tags)._settled()

    def join(self, other: Envelope) -> Envelope:
        literals = None if self.literals is None or other.literals is None else self.literals + other.literals
        tags = {name: self.tags[name] + other.tags[name] for name in self.tags.keys() & other.tags.keys()}
        return Envelope(self.types | other.types, literals, tags)

    def _settled(self) -> Envelope:
        if self.literals is None:
            return self
        literals = [v for v in self.literals if _base_type(v) in self.types]
        return Envelope(frozenset(map(_base_type, literals)), literals, self.tags)

    def excludes(self, other: Envelope) -> bool:
        """Whether no value can match both (as far as the envelopes tell)."""
        both = self.meet(other)
        if not both.types or (both.literals is not None and not both.literals):
            return True
        return both.types == {"object"} and any(not values for values in both.tags.values())


def _base_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    return {float: "fraction", str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _envelope(schema: Any, root: Any, depth: int) -> Envelope:
    if schema is False:
        return Envelope(frozenset())
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return Envelope()
    env = Envelope()
    kinds = schema.get("type")
    if kinds is not None:
        kinds = set(kinds if isinstance(kinds, list) else [kinds])
        env = Envelope(frozenset(kinds - {"number"} | ({"integer", "fraction"} if "number" in kinds else set())))
    if isinstance(schema.get("enum"), list):
        env = env.meet(Envelope(literals=list(schema["enum"])))
    if "const" in schema:
        env = env.meet(Envelope(literals=[schema["const"]]))
    props, required = schema.get("properties"), schema.get("required")
    if isinstance(props, dict) and isinstance(required, list):
        tags = {}
        for name in required:
            if isinstance(name, str) and name in props:
                literals = _envelope(props[name], root, depth + 1).literals
                if literals is not None:
                    tags[name] = literals
        env = env.meet(Envelope(tags=tags))
    members = list(schema["allOf"]) if isinstance(schema.get("allOf"), list) else []
    if "$ref" in schema:
        try:
            members.append(_resolve(schema["$ref"], root))
        except UnsupportedRequestError:
            pass
    for member in members:
        env = env.meet(_envelope(member, root, depth + 1))
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            options = [_envelope(option, root, depth + 1) for option in schema[key]]
            union = options[0]
            for option in options[1:]:
                union = union.join(option)
            env = env.meet(union)
    return env._settled()


def _check_exclusive(schema: dict[str, Any], root: Any, depth: int) -> None:
    """Refuse a ``oneOf`` whose options are not provably mutually exclusive (the decoder can only hold the output
    to one option; with exclusive options, matching one is matching exactly one)."""
    rest = _envelope({k: v for k, v in schema.items() if k != "oneOf"}, root, depth + 1)
    options = [rest.meet(_envelope(option, root, depth + 1)) for option in schema["oneOf"]]
    for i, a in enumerate(options):
        for j in range(i + 1, len(options)):
            if not a.excludes(options[j]):
                raise UnsupportedRequestError(
                    f"oneOf is supported only with options that exclude each other (different types, different "
                    f"const/enum values, or objects told apart by a required const property); options {i} and {j} "
                    "may both match a value")


# --- compiling ------------------------------------------------------------------------------------------------------

def _union(nodes: list[Node]) -> Node:
    if len(nodes) == 1:
        return nodes[0]
    return Node("union", options=tuple(nodes), min_len=min(n.min_len for n in nodes))


def compile_schema(schema: Any, root: Any = None, depth: int = 0) -> Node:
    """The node for a JSON schema (a dict; ``{}`` or ``True`` is any value). The schema's combinators are
    multiplied out into flat readings (see ``_readings``), each compiled; text the node accepts matches the
    schema, and a keyword or combination it cannot hold the output to is refused (UnsupportedRequestError)."""
    root = schema if root is None else root
    if depth > MAX_DEPTH:
        raise UnsupportedRequestError("the JSON schema nests too deeply (or refers to itself)")
    if schema is True or schema == {}:
        return ANY
    nodes, problem = [], None
    for flat in _readings(schema, root, depth):
        try:
            nodes.append(_compile_flat(flat, root, depth))
        except NoValue as exc:
            problem = exc
    if not nodes:
        raise problem or NoValue("the JSON schema allows no value")
    return _union(nodes)


def _compile_flat(flat: dict[str, Any], root: Any, depth: int, infer: bool = True) -> Node:
    """The node for a flat schema. Without ``type``: the types its keywords are about when ``infer`` (a schema
    with ``properties`` is taken for an object), else every type."""
    if "enum" in flat:
        rest = {k: v for k, v in flat.items() if k != "enum"}
        texts = _literal_texts(flat["enum"])
        if rest:  # keep the literals the rest of the schema accepts
            try:
                check = initial_state(_compile_flat(rest, root, depth, infer=False))
            except NoValue:
                texts = []
            else:
                texts = [t for t in texts if finished(advance(check, t))]
        if not texts:
            raise NoValue("the enum/const in the JSON schema allows no value (with the keywords beside it)")
        return _literal([], texts)
    kinds = flat.get("type")
    if kinds is None:
        kinds = [t for t, keys in TYPE_KEYWORDS.items() if any(k in flat for k in keys)] if infer else []
        if not kinds:
            if not any(k in flat for keys in TYPE_KEYWORDS.values() for k in keys):
                return ANY
            kinds = ["object", "array", "string", "number", "boolean", "null"]
    if "integer" in kinds and "number" in kinds:
        kinds = [k for k in kinds if k != "integer"]
    nodes, problem = [], None
    for kind in kinds:
        try:
            nodes.append(_compile_typed(kind, flat, root, depth))
        except NoValue as exc:
            problem = exc
    if not nodes:
        raise problem or NoValue("the JSON schema allows no value")
    return _union(nodes)


def _compile_typed(kind: str, flat: dict[str, Any], root: Any, depth: int) -> Node:
    sub = lambda s: compile_schema(s, root, depth + 1)  # noqa: E731
    if kind == "object":
        props, required = flat.get("properties", {}), flat.get("required", [])
        extra = flat.get("additionalProperties", True)
        properties = {}
        for name, schema in props.items():
            try:
                properties[name] = sub(schema)
            except NoValue:
                if name in required:
                    raise NoValue(f"the required property {name!r} allows no value") from None
        for name in required:  # a required key without a schema takes what additionalProperties allows
            if name not in props:
                try:
                    properties[name] = sub(extra)
                except NoValue:
                    raise NoValue(f"the required property {name!r} is not allowed by additionalProperties") from None
        if props or properties or extra is False:
            extra_node = None  # only the listed keys (with no properties and no additional ones: only {})
        else:
            try:
                extra_node = sub(extra)
            except NoValue:
                extra_node = None
        node = Node("object", properties=properties, required=frozenset(required), extra=extra_node,
                    keys={name: json.dumps(name, ensure_ascii=False) for name in properties})
        node.min_len = 1 + _tail(node, node.required) - (1 if required else 0)  # "{", the required keys, "}"
        return node
    if kind == "array":
        low, high = flat.get("minItems", 0), flat.get("maxItems")
        try:
            items = sub(flat.get("items", True))
        except NoValue:
            items, high = ANY, 0  # items that allow no value: only []
        if high is not None and high < low:
            raise NoValue("maxItems is below minItems (or the items allow no value)")
        return Node("array", items=items, min_items=low, max_items=high,
                    min_len=2 + low * items.min_len + max(0, low - 1))
    if kind == "string":
        low, high = flat.get("minLength", 0), flat.get("maxLength")
        if high is not None and high < low:
            raise NoValue("maxLength is below minLength")
        return Node("string", min_length=low, max_length=high, min_len=2 + low)
    if kind in ("integer", "number"):
        return Node(kind)
    if kind == "boolean":
        return _literal([True, False])
    return _literal([None])


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
    """Inside a string of ``length`` characters so far (counted only as far as min/maxLength need, in code
    points, as JSON schema counts them); ``escape``: ``\\`` after a backslash, ``u4`` … ``u1`` while hex digits
    of ``\\uXXXX`` are due, ``code`` holding the digits so far. A ``\\u`` escape of a UTF-16 high surrogate
    must be followed by one of a low surrogate (``high`` in between), the pair being one character; a lone
    surrogate (not Unicode) is refused, escaped or raw."""

    node: Node
    length: int
    escape: str
    code: int = 0
    high: bool = False

    def feed(self, ch: str) -> list[tuple[Any, ...]]:
        if self.escape == "\\":
            if ch == "u":
                return [(self._replace(escape="u4", code=0),)]
            return [(self._grown(),)] if ch in '"\\/bfnrt' and not self.high else []
        if self.escape:
            if ch not in HEX:
                return []
            code, left = self.code * 16 + int(ch, 16), int(self.escape[1]) - 1
            low, high = _code_range(code, left)
            if (self.high and (high < 0xDC00 or low > 0xDFFF)) or (not self.high and 0xDC00 <= low <= high <= 0xDFFF):
                return []  # after a high surrogate only a low one; never a lone low one
            if left:
                return [(self._replace(escape=f"u{left}", code=code),)]
            if not self.high and 0xD800 <= code <= 0xDBFF:
                return [(Str(self.node, self.length, "", 0, True),)]
            return [(self._grown(),)]
        if self.high:
            return [(self._replace(escape="\\"),)] if ch == "\\" else []
        if ch == '"':
            return [()] if self.length >= self.node.min_length else []
        if ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF or (self.node.max_length is not None
                                                             and self.length >= self.node.max_length):
            return []
        return [(self._replace(escape="\\"),)] if ch == "\\" else [(self._grown(),)]

    def _grown(self) -> Str:
        cap = max(self.node.min_length, self.node.max_length or 0)
        return Str(self.node, min(self.length + 1, cap), "")

    def can_end(self) -> bool:
        return False

    def residual(self) -> int:
        if not self.escape and not self.high:
            return 1 + max(0, self.node.min_length - self.length)
        if self.escape == "\\":  # a character under way: the rest of it, then the rest of the string
            pending = 5 if self.high else 1
        elif self.escape:
            left = int(self.escape[1])
            low, high = _code_range(self.code, left)
            pending = left + (6 if not self.high and 0xD800 <= low <= high <= 0xDBFF else 0)
        else:
            pending = 6
        return 1 + max(0, self.node.min_length - self.length - 1) + pending


def _code_range(code: int, left: int) -> tuple[int, int]:
    """The codes a ``\\u`` escape can still end as, with hex digits ``code`` so far and ``left`` to come."""
    return code << 4 * left, ((code + 1) << 4 * left) - 1


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
