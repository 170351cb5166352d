"""The web UI, mounted on the API's app (``kaiyuan serve MODEL… --ui``): same process, same engines, same limits.

Pages: ``/chat``, ``/arena``, ``/leaderboard``, ``/models``, ``/compare`` (and ``/login``); their JSON and stream
endpoints live under ``/ui/``; assets under ``/static/`` (all served from the package: nothing from the internet).
Generation goes through :func:`kaiyuan.serve.serving_chat.create_chat_completion`, the very handler of
``/v1/chat/completions`` — no second code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from kaiyuan.home import kaiyuan_home
from kaiyuan.serve.users import UserStore
from kaiyuan.web import arena, catalog_pages, chat, compare, leaderboard, login, model_pages
from kaiyuan.web.auth import UIAuth, server_secret
from kaiyuan.web.context import LoginRequired, RateLimited, UIOptions, UIState, api_error
from kaiyuan.web.guard import UIGuard
from kaiyuan.web.render import STATIC, error_page
from kaiyuan.web.store import UIStore

__all__ = ["UIOptions", "UIState", "mount_ui"]


def mount_ui(app: FastAPI, engines: dict[str, Any], options: UIOptions | None = None, home: Path | None = None,
             default_max_tokens: int = 256) -> UIState:
    """Add the UI's pages, endpoints and assets to ``app`` (made by :func:`kaiyuan.serve.routes.create_app` with
    ``with_ui=True``)."""
    home = Path(home) if home is not None else kaiyuan_home()
    options = options or UIOptions()
    store = UIStore(home)
    auth = UIAuth(store, server_secret(home), UserStore(home) if options.users else None)
    state = UIState(engines, options, store, auth, home, default_max_tokens)
    app.state.ui = state
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in (login, chat, arena, leaderboard, model_pages, catalog_pages, compare):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/chat", status_code=303)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.url.path.startswith("/ui/"):
            return api_error(401, "You are not logged in (or your session ended): log in again.", "login_required")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited) -> Response:
        headers = {"Retry-After": str(exc.retry_after)}
        if request.url.path.startswith("/ui/"):
            return api_error(429, str(exc), "rate_limited", headers)
        response = error_page(request, 429, "Slow down", str(exc))
        response.headers.update(headers)
        return response

    app.add_middleware(UIGuard, auth=auth)
    return state
