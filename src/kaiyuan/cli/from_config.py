"""The config dataclass is the single source of a command's flags and YAML keys.

``command_from_config(app, "sft", SFTConfig, run)`` adds a typer command whose options are the
dataclass fields (with their help text), plus ``--config FILE.yaml`` (keys = field names; flags given
on the command line win), ``--json`` and ``--print-config`` (the full config as YAML for ``--config``; runs
nothing). A field with ``metadata={"argument": True}`` is a positional
argument; ``metadata={"flags": ("--to",)}`` names its flags.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import typer
import yaml

from kaiyuan.cli.output import results
from kaiyuan.config import load_config
from kaiyuan.errors import KaiyuanError


def _option_type(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _option_type(args[0])
    if origin is Literal:
        return str
    return annotation



def _field_default(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for ``default_factory``), or ``dataclasses.MISSING`` if required."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _default_text(f: dataclasses.Field) -> str:
    default = _field_default(f)
    if default is dataclasses.MISSING:
        return " [required]"
    if default is None or default == [] or default == {}:
        return ""
    if isinstance(default, bool):
        if f.metadata.get("flags"):  # a plain switch (--ray): off unless given
            return " [default: on]" if default else ""
        return f" [default: {'--' if default else '--no-'}{f.name.replace('_', '-')}]"
    return f" [default: {default}]"


def _yaml_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_yaml_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    return value


def config_yaml(cls: type, values: dict[str, Any]) -> str:
    """The full config of ``cls`` as YAML for ``--config``: ``values`` where given, else each field's default; a
    required field that is not given is ``null`` with a ``# required`` comment. Each key has its help as a comment."""
    lines = [f"# {cls.__name__}: pass this file with --config (flags given on the command line win)"]
    for f in dataclasses.fields(cls):
        help_text = " ".join(str(f.metadata.get("help", "")).split())
        if help_text:
            lines.append(f"# {help_text}")
        value = values[f.name] if f.name in values else _field_default(f)
        if value is dataclasses.MISSING:
            lines.append(f"{f.name}: null  # required")
            continue
        dumped = yaml.safe_dump(_yaml_value(value), default_flow_style=True, allow_unicode=True, width=1_000_000)
        lines.append(f"{f.name}: {dumped.rstrip().removesuffix('...').rstrip()}")
    return "\n".join(lines) + "\n"


def config_parameters(cls: type) -> list[inspect.Parameter]:
    """One typer parameter per field of ``cls``: ``--field-name`` options (``--x/--no-x`` for booleans), or a
    positional argument where the field's metadata says ``argument``."""
    params = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        extra = ""
        if get_origin(annotation) is Literal:
            extra = f" [{'|'.join(map(str, get_args(annotation)))}]"
        extra += _default_text(f)
        option_type = _option_type(annotation)
        help_text = f.metadata.get("help", "") + extra  # plain help (rich_markup_mode=None): [default: …] as is
        if f.metadata.get("argument"):
            # optional for typer even when the config requires it: a --config file may give it; a missing one is
            # reported by load_config with the rest ("missing required key(s) …")
            default: Any = typer.Argument(None, help=help_text, show_default=False, metavar=f.name.upper())
        else:
            flag = "--" + f.name.replace("_", "-")
            flags = f.metadata.get("flags") or ((f"{flag}/--no-{f.name.replace('_', '-')}",) if option_type is bool
                                                else (flag,))
            default = typer.Option(None, *flags, help=help_text, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=option_type | None))
    return params


def read_config_file(config_file: Path) -> dict[str, Any]:
    """The mapping in a ``--config`` YAML file, or a clear error naming the file."""
    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise KaiyuanError(f"{config_file}: cannot read the config file ({exc.strerror})") from exc
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KaiyuanError(f"{config_file}: not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise KaiyuanError(f"{config_file}: expected a mapping of option names to values")
    return loaded


def command_from_config(app: typer.Typer, name: str, cls: type, run: Callable[[Any, bool], None],
                        help: str, json_help: str = "Print a JSON summary.", **command_options: Any) -> None:
    """Add command ``name`` to ``app``: its options are the fields of ``cls`` (see the module's docstring), plus
    ``--config``, ``--json`` (with ``json_help``) and ``--print-config``; it calls ``run(cfg, json_output)``."""
    params = config_parameters(cls)
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                                    default=typer.Option(None, "--config", help="YAML file with these keys.")))
    params.append(inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--json", help=json_help)))
    params.append(inspect.Parameter("print_config", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--print-config",
                                                         help="Print the full config (defaults, --config file and "
                                                              "flags merged) as YAML for --config, and exit without "
                                                              "running anything.")))
    hints = typing.get_type_hints(cls)
    list_fields = {f.name for f in dataclasses.fields(cls) if get_origin(_option_type(hints[f.name])) is list}

    def command(**kwargs: Any) -> None:
        values: dict[str, Any] = {}
        config_file = kwargs.pop("config")
        json_output = kwargs.pop("json_output")
        print_config = kwargs.pop("print_config")
        if config_file is not None:
            values.update(read_config_file(config_file))
        values.update({k: list(v) if k in list_fields else v for k, v in kwargs.items()
                       if v is not None and not (k in list_fields and not v)})
        if print_config:
            results.write(config_yaml(cls, values))
            results.flush()
            return
        cfg = load_config(cls, values, str(config_file or name))
        run(cfg, json_output)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    app.command(name, help=help, **command_options)(command)
