"""Who is asking: log-in, sessions and CSRF tokens of the web UI.

* With users (``kaiyuan serve --ui --ui-users``): a log-in page checks the name and password against
  ``KAIYUAN_HOME/users.sqlite`` (:class:`kaiyuan.serve.users.UserStore`, scrypt). A session is a random 256-bit
  token in a signed (itsdangerous), HttpOnly, SameSite=Lax cookie; only its sha256 is stored, so logging out (or a
  stolen database) ends it for good. Failed log-ins per client address are limited like failed API keys.
* Without: one local user, ``local``; the server refuses that on anything but a loopback interface.
* CSRF: every state-changing request carries a token (the ``X-CSRF-Token`` header, or the ``csrf_token`` field of a
  form) equal to an HMAC of the session token under the server's secret — bound to the session, unknown to any
  other site. :class:`kaiyuan.web.guard.UIGuard` checks it before any route runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from kaiyuan.serve.users import UserStore
from kaiyuan.web.store import UIStore

SESSION_COOKIE = "kaiyuan_session"
LOGIN_COOKIE = "kaiyuan_login"  # a pre-session nonce: the log-in form's CSRF token is bound to it
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOCAL_USER = "local"
SESSION_DAYS = 7
# nosec B105: the name of the file that holds the secret, not a secret
SECRET_FILE = "ui-secret"  # nosec B105


def server_secret(home: Path) -> bytes:
    """The secret that signs cookies and CSRF tokens: 32 random bytes in ``KAIYUAN_HOME/ui-secret`` (0600), made on
    first use, so that sessions survive a restart."""
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ValueError(f"{path}: the UI secret is too short (remove the file: a new one is made)")
    return secret


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no ``//host`` or ``https://…``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/chat"
    return target


@dataclass
class UIAuth:
    store: UIStore
    secret: bytes
    users: UserStore | None  # None: the single local user

    def __post_init__(self) -> None:
        self._signer = URLSafeTimedSerializer(self.secret, salt="kaiyuan-session")

    @property
    def local(self) -> bool:
        return self.users is None

    # -- cookies -------------------------------------------------------------------------------------------

    def sign(self, token: str) -> str:
        return self._signer.dumps(token)

    def unsign(self, value: str | None) -> str | None:
        """The token inside a cookie value, or None when it is missing, forged or older than a session lives."""
        if not value:
            return None
        try:
            token = self._signer.loads(value, max_age=SESSION_DAYS * 86400)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    # -- sessions ------------------------------------------------------------------------------------------

    def start_session(self, user: str) -> str:
        """A new session for ``user``: the cookie value to set."""
        token = secrets.token_urlsafe(32)
        self.store.add_session(token_hash(token), user, SESSION_DAYS * 86400)
        return self.sign(token)

    def session_token(self, cookies: dict[str, str]) -> str | None:
        return self.unsign(cookies.get(SESSION_COOKIE))

    def user(self, cookies: dict[str, str]) -> str | None:
        """The logged-in user of a request (by its cookies), or None."""
        if self.local:
            return LOCAL_USER
        token = self.session_token(cookies)
        return self.store.session_user(token_hash(token)) if token else None

    def end_session(self, cookies: dict[str, str]) -> None:
        token = self.session_token(cookies)
        if token:
            self.store.end_session(token_hash(token))

    # -- CSRF ----------------------------------------------------------------------------------------------

    def csrf_binding(self, cookies: dict[str, str], login: bool = False) -> str | None:
        """What a request's CSRF token is bound to: the session token, the log-in nonce (log-in form), or the
        local user."""
        if self.local:
            return LOCAL_USER
        return self.unsign(cookies.get(LOGIN_COOKIE)) if login else self.session_token(cookies)

    def csrf_token(self, binding: str) -> str:
        return hmac.new(self.secret, f"csrf:{binding}".encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, cookies: dict[str, str], offered: str | None, login: bool = False) -> bool:
        binding = self.csrf_binding(cookies, login)
        if not binding or not offered:
            return False
        return hmac.compare_digest(self.csrf_token(binding), offered)
