"""Markdown for cards, written safely: text that comes from users or models is escaped (:func:`md`, tables),
code goes into fences no backtick run can close (:func:`code_block`, :func:`code`), and YAML metadata is
safe-dumped (:func:`front_matter`)."""

from __future__ import annotations

import re
from typing import Any

import yaml

_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>|~$&#])")
_MARKDOWN_BLOCK_START = re.compile(r"^(\s*)([+=-]|\d+[.)](?=\s|$))")


def md(value: Any) -> str:
    """``value`` as literal markdown text on one line: code spans, emphasis, links, HTML, table pipes, math, entities
    and headings are backslash-escaped, and so is a list or rule marker at the start."""
    text = _MARKDOWN_INLINE.sub(r"\\\1", re.sub(r"\r\n|\r|\n", " ", str(value)))
    match = _MARKDOWN_BLOCK_START.match(text)
    if match:
        marker = match.group(2)
        text = f"{match.group(1)}{marker[:-1]}\\{marker[-1]}{text[match.end():]}"
    return text


def code_block(text: str, language: str = "yaml") -> str:
    """A fenced code block that the text inside cannot close (the fence is longer than any backtick run)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def yaml_text(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000)


def front_matter(metadata: dict[str, Any], body: str) -> str:
    """A README: the YAML metadata block (safe-dumped, never concatenated) and the markdown body."""
    return f"---\n{yaml_text(metadata)}---\n\n{body.rstrip()}\n"


class Markdown(str):
    """Text that is already markdown: :func:`table` does not escape it again."""


def code(text: str) -> Markdown:
    """An inline code span (ids, commands, hashes): its delimiters are longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks, pad = "`" * (longest + 1), " " if "`" in text[:1] + text[-1:] else ""
    return Markdown(f"{ticks}{pad}{text}{pad}{ticks}")


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A GFM table; every cell is escaped with :func:`md` unless it is :class:`Markdown`."""
    def cell(value: Any) -> str:
        return str(value) if isinstance(value, Markdown) else md("" if value is None else value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def bullets(items: list[Any]) -> str:
    return "\n".join(f"- {md(item)}" for item in items)
