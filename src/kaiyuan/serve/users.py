"""The people who may use the web UI: names and memory-hard password hashes in ``KAIYUAN_HOME/users.sqlite``.

Passwords are hashed with scrypt (RFC 7914; N=2¹⁴, r=8, p=1: 16 MiB and a fraction of a second per check, the
parameters OWASP lists as a minimum) and a random 16-byte salt; only the hash is stored. Checking a password
compares in constant time and costs the same for a name that does not exist, so the answer does not tell which
names are taken. The file is created readable by its owner only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.home import kaiyuan_home

USERS_FILE = "users.sqlite"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
"""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<hash hex>`` of ``password``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, maxmem=64 << 20, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def password_matches(password: str, encoded: str) -> bool:
    """Whether ``password`` hashes to ``encoded`` (constant-time comparison; False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected) // 2, maxmem=64 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


@functools.cache
def _unknown() -> str:
    """Compared against when a name is unknown, so that an unknown name costs as much as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    created_at: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "admin": self.admin, "created_at": self.created_at}


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise KaiyuanError(f"user name {name!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a letter "
                           "or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise KaiyuanError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


class UserStore:
    """The users of one KAIYUAN_HOME (``home``; default the environment's)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home).expanduser().resolve() if home is not None else kaiyuan_home()
        self.path = self.home / USERS_FILE

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # created readable by its owner only: it holds password hashes
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            conn = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise KaiyuanError(f"{self.path}: cannot open the users file ({exc})") from exc
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                conn.executescript(SCHEMA)
                yield conn
        except sqlite3.DatabaseError as exc:
            raise KaiyuanError(f"{self.path}: the users file is damaged ({exc})") from exc
        finally:
            conn.close()

    def add(self, name: str, password: str, admin: bool = False) -> User:
        check_name(name)
        check_password(password)
        user = User(name, admin, datetime.now(UTC).isoformat(timespec="seconds"))
        with self._db() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise KaiyuanError(f"user {name!r} already exists (remove it first: kaiyuan users rm {name})")
            conn.execute("INSERT INTO users (name, password, admin, created_at) VALUES (?, ?, ?, ?)",
                         (name, hash_password(password), int(admin), user.created_at))
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (the same work for an unknown name)."""
        with self._db() as conn:
            row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        matches = password_matches(password, row["password"] if row else _unknown())
        return User(row["name"], bool(row["admin"]), row["created_at"]) if row and matches else None

    def list(self) -> list[User]:
        with self._db() as conn:
            rows = conn.execute("SELECT name, admin, created_at FROM users ORDER BY name").fetchall()
        return [User(r["name"], bool(r["admin"]), r["created_at"]) for r in rows]

    def remove(self, name: str) -> None:
        with self._db() as conn:
            if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"no user {name!r}")
