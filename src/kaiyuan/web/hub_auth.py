"""Who is looking at the team hub's pages: sign-in with a hub token, sessions and CSRF tokens.

* Sign-in: the visitor pastes a hub token (``kaiyuan hub token create``). The session is a signed (itsdangerous),
  HttpOnly, SameSite=Lax cookie holding the token's sha256 — never the token — which every request looks up again
  (:meth:`kaiyuan.teamhub.meta.HubDB.token_by_hash`): removing the token (``kaiyuan hub token rm``) ends every
  session signed in with it at once. Failed sign-ins per client address are limited (10 a minute).
* CSRF: both forms (sign-in, sign-out) carry an HMAC, under the server's secret, of what the request is bound to:
  the session's token hash, or — for the sign-in form, before there is a session — a random nonce in a cookie of
  its own. The secret is ``ui-secret`` (0600) in the hub's storage folder (:func:`kaiyuan.web.auth.server_secret`),
  so sessions survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

from kaiyuan.serve.guard import SlidingWindowLimit
from kaiyuan.teamhub.meta import HubDB, Token, token_hash

SESSION_COOKIE = "kaiyuan_hub_session"  # not the web UI's cookie names: both may run on one host
LOGIN_COOKIE = "kaiyuan_hub_login"
CSRF_FIELD = "csrf_token"
SESSION_DAYS = 7
NONCE_SECONDS = 3600


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (no ``//host`` or ``https://…``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@dataclass
class HubAuth:
    db: HubDB
    secret: bytes
    login_limit: SlidingWindowLimit = field(default_factory=lambda: SlidingWindowLimit(10, 60.0))

    def __post_init__(self) -> None:
        self._sessions = URLSafeTimedSerializer(self.secret, salt="kaiyuan-hub-session")
        self._nonces = URLSafeTimedSerializer(self.secret, salt="kaiyuan-hub-login")

    # -- sessions ------------------------------------------------------------------------------------------

    def session_cookie(self, token: str) -> str:
        """The cookie value of a session signed in with ``token`` (it holds the token's sha256 only)."""
        return self._sessions.dumps(token_hash(token))

    def session_digest(self, cookies: dict[str, str]) -> str | None:
        """The token hash a request's session cookie holds, or None (missing, forged or expired)."""
        return self._load(self._sessions, cookies.get(SESSION_COOKIE), SESSION_DAYS * 86400)

    def grant(self, cookies: dict[str, str]) -> Token | None:
        """The grant of the signed-in token, or None (no session, or its token was removed)."""
        digest = self.session_digest(cookies)
        return self.db.token_by_hash(digest) if digest else None

    # -- CSRF ----------------------------------------------------------------------------------------------

    def new_nonce(self) -> tuple[str, str]:
        """A fresh pre-session nonce and the cookie value that carries it."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self._nonces.dumps(nonce)

    def login_nonce(self, cookies: dict[str, str]) -> str | None:
        return self._load(self._nonces, cookies.get(LOGIN_COOKIE), NONCE_SECONDS)

    def csrf_token(self, binding: str) -> str:
        return hmac.new(self.secret, f"hub-csrf:{binding}".encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, binding: str | None, offered: str | None) -> bool:
        if not binding or not offered:
            return False
        return hmac.compare_digest(self.csrf_token(binding), offered)

    @staticmethod
    def _load(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> str | None:
        if not value:
            return None
        try:
            loaded = serializer.loads(value, max_age=max_age)
        except BadSignature:
            return None
        return loaded if isinstance(loaded, str) else None
