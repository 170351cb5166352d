"""A config dataclass from a mapping (YAML, a recipe, a manifest), with every problem named at once.

The same dataclasses are the CLI's flags (:mod:`kaiyuan.cli.from_config`) and the YAML keys of ``--config`` and
recipes."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin

from kaiyuan.errors import KaiyuanError


def did_you_mean(word: Any, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to a misspelt ``word`` (``'x' or 'y'`` for a
    tie), else ``""``."""
    word = str(word)
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=3)
    if not close:
        return ""
    best = difflib.SequenceMatcher(None, word, close[0]).ratio()
    close = [c for c in close if difflib.SequenceMatcher(None, word, c).ratio() == best]
    return f"; did you mean {' or '.join(map(repr, close))}?"


def _type_ok(hint: Any, value: Any) -> bool:
    allowed = get_args(hint) if get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    for kind in allowed:
        if kind is type(None):
            ok = value is None
        elif get_origin(kind) is Literal:
            ok = value in get_args(kind)
        elif kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, get_origin(kind) or kind)
        if ok:
            return True
    return False


def _choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` (or ``Literal | None``) field, else None."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and get_origin(args[0]) is Literal:
            return get_args(args[0])
    return None


def _expected(hint: Any, value: Any) -> str:
    """What a field takes, in the user's terms: ``expected one of 'lora', 'dora'; got 'lorra'; did you mean
    'lora'?`` for a ``Literal``, else ``expected int | None, got 'all'``."""
    choices = _choices(hint)
    if choices is None:
        return f"expected {hint}, got {value!r}"
    return (f"expected one of {', '.join(map(repr, choices))}; got {value!r}"
            + (did_you_mean(value, choices) if isinstance(value, str) else ""))


def config_problems(cls: type, values: Any, source: str = "config") -> list[str]:
    """Every problem with ``values`` as a ``cls`` (unknown keys, with a "did you mean", wrong types, missing
    required keys), each ``SOURCE: ...``; empty when ``cls(**values)`` is fine."""
    if not isinstance(values, dict):
        return [f"{source}: expected a mapping of option names to values, got {type(values).__name__}"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = []
    unknown = sorted((k for k in values if k not in fields), key=str)
    if unknown:
        hints = [(k, difflib.get_close_matches(str(k), list(fields), n=1)) for k in unknown]
        suggestions = [(k, close[0]) for k, close in hints if close]
        if len(unknown) == 1 and suggestions:
            tail = did_you_mean(unknown[0], fields)
        elif suggestions:
            tail = "; did you mean " + ", ".join(f"{close!r} for {key!r}" for key, close in suggestions) + "?"
        else:
            tail = ""
        problems.append(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; expected {', '.join(fields)}"
                        + tail)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in fields and not _type_ok(hints[name], value):
            problems.append(f"{source}: {name}: {_expected(hints[name], value)}")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        problems.append(f"{source}: missing required key(s) {', '.join(missing)}")
    return problems


def load_config(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build ``cls`` from a mapping, rejecting unknown keys and wrong types with a clear message (every problem,
    one a line)."""
    problems = config_problems(cls, values, source)
    if problems:
        raise KaiyuanError("\n".join(problems))
    return cls(**values)
