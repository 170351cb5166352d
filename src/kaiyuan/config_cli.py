"""The config dataclass is the single source of a stage's CLI flags and YAML keys.

``command_from_config(app, "sft", SFTConfig, run)`` adds a typer command whose options are the
dataclass fields (with their help text), plus ``--config FILE.yaml`` (keys = field names; flags given
on the command line win) and ``--json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import typer

from kaiyuan.errors import KaiyuanError


def _option_type(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _option_type(args[0])
    if origin is Literal:
        return str
    return annotation


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
            problems.append(f"{source}: {name}: expected {hints[name]}, got {value!r}")
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


def command_from_config(app: typer.Typer, name: str, cls: type, run: Callable[[Any, bool], None],
                        help: str) -> None:
    params = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        extra = ""
        if get_origin(annotation) is Literal:
            extra = f" [{'|'.join(map(str, get_args(annotation)))}]"
        if f.default is not dataclasses.MISSING and f.default is not None:
            extra += f" [default: {f.default}]"
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            extra += " [required]"
        option_type = _option_type(annotation)
        flags = (f"{flag}/--no-{f.name.replace('_', '-')}",) if option_type is bool else (flag,)
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, *flags, help=f.metadata.get("help", "") + extra),
            annotation=option_type | None))
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                                    default=typer.Option(None, "--config", help="YAML file with these keys.")))
    params.append(inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--json", help="Print a JSON summary.")))

    def command(**kwargs: Any) -> None:
        import yaml

        values: dict[str, Any] = {}
        config_file = kwargs.pop("config")
        json_output = kwargs.pop("json_output")
        if config_file is not None:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
            if not isinstance(loaded, dict):
                raise KaiyuanError(f"{config_file}: expected a mapping of option names to values")
            values.update(loaded)
        values.update({k: v for k, v in kwargs.items() if v is not None})
        cfg = load_config(cls, values, str(config_file or "options"))
        run(cfg, json_output)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    app.command(name, help=help)(command)
