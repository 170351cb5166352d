"""Pages from Jinja2 templates (autoescaped), and markdown rendered safely.

Markdown is rendered by markdown-it-py (CommonMark + tables) with raw HTML off: ``<script>`` or ``<img onerror=…>``
in a model's reply comes out as text, and markdown-it refuses ``javascript:``, ``vbscript:`` and ``data:`` links
(they stay literal text). Code blocks are highlighted by Pygments into CSS classes (no inline style).
"""

from __future__ import annotations

import functools
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

PACKAGE = Path(__file__).parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
NAV = (("chat", "/chat", "Chat"), ("arena", "/arena", "Arena"), ("leaderboard", "/leaderboard", "Leaderboard"),
       ("models", "/models", "Models"), ("compare", "/compare", "Compare"))


def _highlight(code: str, lang: str, _attrs: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, HtmlFormatter(nowrap=True, classprefix="hl-"))


@functools.cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                     "highlight": _highlight}).enable("table").enable("strikethrough")


def markdown(text: str | None) -> Markup:
    """``text`` as safe HTML (raw HTML escaped, dangerous links refused)."""
    # nosec B704: markdown-it with html=False escapes all raw HTML and refuses javascript:/vbscript:/data: links
    return Markup(_markdown().render(text or ""))  # nosec B704


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(TEMPLATES))
    found.env.filters["markdown"] = markdown
    found.env.filters["when"] = when
    found.env.globals["nav"] = NAV
    return found


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered for the current user: every page gets ``user``, ``csrf_token`` and ``active`` (the nav
    entry)."""
    ui = request.app.state.ui
    user = getattr(request.state, "user", None)
    binding = ui.auth.csrf_binding(dict(request.cookies))
    context.setdefault("active", "")
    return templates().TemplateResponse(request, template, {
        "user": user, "local": ui.auth.local, "csrf_token": ui.auth.csrf_token(binding) if binding else "",
        **context}, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """A page that says what went wrong (never a blank page)."""
    try:
        return page(request, "error.html", status=status, title=title, message=message)
    except Exception:  # the template itself failed: still say something  # noqa: BLE001
        return HTMLResponse(f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>", status_code=status)
