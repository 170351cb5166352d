"""What every page of the web UI shares: its options and state, the logged-in user, rate limits, the shape of
an endpoint's error. (:mod:`kaiyuan.web.app` mounts the pages.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from kaiyuan.serve.guard import SlidingWindowLimit
from kaiyuan.web.auth import UIAuth
from kaiyuan.web.store import UIStore


@dataclass
class UIOptions:
    """How the UI behaves (``kaiyuan serve --ui`` flags)."""

    users: bool = False  # log-in with the users of `kaiyuan users`; False: one local user (loopback only)
    arena_weights: dict[str, float] = field(default_factory=dict)  # sampling weight of a model in the arena (1)
    arena_turns: int = 3  # prompts per battle
    chat_per_minute: int = 30  # messages a user may send per minute (chat and arena prompts)
    votes_per_minute: int = 30  # arena votes a user may cast per minute


@dataclass
class UIState:
    engines: dict[str, Any]
    options: UIOptions
    store: UIStore
    auth: UIAuth
    home: Path
    default_max_tokens: int = 256
    chat_limit: SlidingWindowLimit = field(init=False)
    vote_limit: SlidingWindowLimit = field(init=False)
    login_limit: SlidingWindowLimit = field(default_factory=lambda: SlidingWindowLimit(10, 60.0))

    def __post_init__(self) -> None:
        self.chat_limit = SlidingWindowLimit(self.options.chat_per_minute, 60.0)
        self.vote_limit = SlidingWindowLimit(self.options.votes_per_minute, 60.0)


class LoginRequired(Exception):
    """No (valid) session: a page redirects to the log-in page, a ``/ui/`` endpoint answers 401."""


class RateLimited(Exception):
    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"Too many {what}: wait {retry_after} s.")
        self.retry_after = retry_after


def ui_state(request: Request) -> UIState:
    return request.app.state.ui


def current_user(request: Request) -> str:
    """The logged-in user (a FastAPI dependency); raises :class:`LoginRequired`."""
    user = ui_state(request).auth.user(dict(request.cookies))
    if user is None:
        raise LoginRequired()
    request.state.user = user
    return user


def check_rate(limit: SlidingWindowLimit, user: str, what: str) -> None:
    """Count one event of ``user`` against ``limit``; raises :class:`RateLimited` (429 + Retry-After) beyond it."""
    wait = limit.retry_after(user)
    if wait:
        raise RateLimited(what, wait)
    limit.record(user)


def api_error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error of a ``/ui/`` endpoint, in the API's shape (the page shows ``error.message``)."""
    return JSONResponse({"error": {"message": message, "code": code}}, status_code=status, headers=headers)
