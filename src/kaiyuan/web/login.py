"""``/login`` and ``/logout``: sessions for the users of ``kaiyuan users`` (see :mod:`kaiyuan.web.auth`)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.web.auth import LOGIN_COOKIE, SESSION_COOKIE, SESSION_DAYS, safe_next
from kaiyuan.web.context import RateLimited, ui_state
from kaiyuan.web.render import templates

router = APIRouter(include_in_schema=False)


def _login_page(request: Request, next_path: str, error: str = "", status: int = 200) -> Response:
    """The log-in form; its CSRF token is bound to a fresh pre-session nonce (set as a cookie)."""
    ui = ui_state(request)
    nonce = ui.auth.unsign(request.cookies.get(LOGIN_COOKIE)) or secrets.token_urlsafe(16)
    response = templates().TemplateResponse(request, "login.html", {
        "user": None, "local": False, "csrf_token": ui.auth.csrf_token(nonce), "next": next_path, "error": error,
        "active": ""}, status_code=status)
    response.set_cookie(LOGIN_COOKIE, ui.auth.sign(nonce), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 (the query's name)
    ui = ui_state(request)
    if ui.auth.local or ui.auth.user(dict(request.cookies)):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, safe_next(next))


@router.post("/login")
async def login(request: Request, name: str = Form(""), password: str = Form(""),
                next: str = Form("/chat")) -> Response:  # noqa: A002
    ui = ui_state(request)
    if ui.auth.local:
        return RedirectResponse(safe_next(next), status_code=303)
    client = request.client.host if request.client else "?"
    wait = ui.login_limit.retry_after(client)
    if wait:  # no more guesses get checked until the window has passed
        raise RateLimited("failed log-ins", wait)
    assert ui.auth.users is not None
    user = await run_in_threadpool(ui.auth.users.authenticate, name, password)  # scrypt: off the event loop
    if user is None:
        ui.login_limit.record(client)
        return _login_page(request, safe_next(next), "Wrong name or password.", status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    cookie = await run_in_threadpool(ui.auth.start_session, user.name)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        max_age=SESSION_DAYS * 86400)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    ui = ui_state(request)
    ui.auth.end_session(dict(request.cookies))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
