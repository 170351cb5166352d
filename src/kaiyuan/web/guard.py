"""The web UI's front door, as a pure ASGI middleware (streams and disconnects pass through untouched).

* Every state-changing request to a UI path (anything but GET / HEAD / OPTIONS) must carry the session's CSRF
  token — the ``X-CSRF-Token`` header, or the ``csrf_token`` field of a url-encoded form — or it is refused with
  403 before any route runs.
* Every UI response gets a strict Content-Security-Policy (scripts, styles, fonts and images from this server only,
  no inline script: even a reply that slipped past escaping could not run), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.

The API's paths (:func:`kaiyuan.serve.guard.is_api_path`) are left to :class:`kaiyuan.serve.guard.RequestGuard`.
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from kaiyuan.serve.guard import Receive, Scope, Send, is_api_path, replay
from kaiyuan.web.auth import CSRF_FIELD, CSRF_HEADER, UIAuth

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 1_000_000
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def request_cookies(scope: Scope) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            try:
                parsed = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            cookies.update({key: morsel.value for key, morsel in parsed.items()})
    return cookies


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == wanted:
            return value.decode("latin-1")
    return None


class UIGuard:
    def __init__(self, app: Any, auth: UIAuth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send_with_headers)
            return
        offered = _header(scope, CSRF_HEADER.encode())
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if offered is None and content_type == "application/x-www-form-urlencoded":
            body, more = await _read_body(receive)
            if body is None:
                await _refuse(send_with_headers, 413, "The form is too large.")
                return
            offered = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [None])[0]
            receive = replay([{"type": "http.request", "body": body, "more_body": False}, *more], receive)
        if not self.auth.csrf_valid(request_cookies(scope), offered, login=scope["path"] == "/login"):
            await _refuse(send_with_headers, 403, "The CSRF token of this request is missing or wrong: reload the "
                                                  "page and try again.")
            return
        await self.app(scope, receive, send_with_headers)


async def _read_body(receive: Receive) -> tuple[bytes | None, list[dict[str, Any]]]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_FORM_BYTES:
            return None, []
        if not message.get("more_body", False):
            return b"".join(chunks), []


async def _refuse(send: Send, status: int, message: str) -> None:
    data = json.dumps({"error": {"message": message, "code": "csrf_failed" if status == 403 else "too_large"}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data.encode()})
