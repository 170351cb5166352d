"""``kaiyuan hub``'s settings: the flags of its commands (and the keys of their ``--config`` YAML), one dataclass a
command, and :class:`HubLocation`, the one place that says where a hub's blobs and metadata live.

Light on purpose (no fastapi, uvicorn or sqlalchemy at import): the CLI reads it when ``kaiyuan`` starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home
from kaiyuan.teamhub.blobs import BlobStore

if TYPE_CHECKING:
    from kaiyuan.teamhub.meta import HubDB

DEFAULT_MAX_FILE_BYTES = 50 << 30
STORAGE_HELP = "The hub's folder: blobs/ and, without --database, hub.sqlite (default: KAIYUAN_HOME/hub)."
DATABASE_ENV = "KAIYUAN_HUB_DATABASE"
QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)")
DATABASE_HELP = ("Metadata database URL: postgresql://USER:PASSWORD@HOST:PORT/DB for a team server (default: "
                 f"${DATABASE_ENV}, else SQLite in the storage folder). Put a password in {DATABASE_ENV} rather than "
                 "on the command line, where ps shows it.")


@dataclass(frozen=True)
class HubLocation:
    """Where a hub keeps its files and its metadata: what ``serve``, ``token``, ``verify`` and ``gc`` all open.
    ``database`` None: the URL in ``$KAIYUAN_HUB_DATABASE`` (a password kept out of ``ps``), else SQLite in the
    storage folder. Messages show the URL only through :meth:`shown_database` (password masked)."""

    storage: str | None = None
    database: str | None = None

    def storage_dir(self) -> Path:
        return Path(self.storage).expanduser().resolve() if self.storage else kaiyuan_home() / "hub"

    def blobs_dir(self) -> Path:
        return self.storage_dir() / "blobs"  # as create_hub_app lays it out

    def configured_database(self) -> str:
        """The database URL as given: ``database``, else ``$KAIYUAN_HUB_DATABASE``, else the SQLite default."""
        return self.database or os.environ.get(DATABASE_ENV) or f"sqlite:///{self.storage_dir() / 'hub.sqlite'}"

    def database_url(self) -> str:
        """The SQLAlchemy URL of the metadata: ``sqlite:///<storage>/hub.sqlite`` by default; a PostgreSQL URL is
        driven by psycopg (``postgresql+psycopg://``). Other databases are refused."""
        url = self.configured_database()
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+psycopg://" + url.removeprefix(plain)
        if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
            raise KaiyuanError(f"--database {self.shown_database()}: expected postgresql://USER@HOST:PORT/DB or "
                               "sqlite:///PATH")
        return url

    def database_kind(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.database_url().startswith("sqlite") else "postgresql"

    def shown_database(self) -> str:
        """The database URL without its password (``USER:***@``, ``?password=***``), for messages."""
        url = QUERY_PASSWORD.sub(r"\1***", self.configured_database())
        scheme, sep, rest = url.partition("://")
        credentials, at, host = rest.rpartition("@")
        if sep and at and ":" in credentials:
            return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
        return url

    def passwords(self) -> set[str]:
        """The password(s) the database URL holds, as written and decoded (none: empty)."""
        url = self.configured_database()
        _scheme, sep, rest = url.partition("://")
        credentials, at, _host = rest.partition("?")[0].rpartition("@")
        found = {m.group(2) for m in QUERY_PASSWORD.finditer(url)}
        if sep and at and ":" in credentials:
            found.add(credentials.split(":", 1)[1])
        return {form for password in found for form in (password, unquote(password))} - {""}

    def scrub(self, text: str) -> str:
        """``text`` (a driver's error message, say) with the database password masked, should it hold it."""
        for password in sorted(self.passwords(), key=len, reverse=True):
            text = text.replace(password, "***")
        return text

    def cannot_open(self, exc: BaseException) -> KaiyuanError:
        """The error for a database that cannot be opened: the URL masked, the driver's reason scrubbed."""
        cause = getattr(exc, "orig", None) or exc
        return KaiyuanError(f"database {self.shown_database()}: cannot open it ({self.scrub(str(cause).strip())})")

    def open_db(self) -> HubDB:
        """The metadata database (migrated to this kaiyuan's schema), or a clear error naming it."""
        import sqlalchemy as sa

        from kaiyuan.teamhub.meta import HubDB  # heavy: sqlalchemy (≈0.3 s at start-up)

        url = self.database_url()
        self.storage_dir().mkdir(parents=True, exist_ok=True)
        try:
            return HubDB(url)
        except (sa.exc.SQLAlchemyError, ValueError) as exc:  # ValueError: a URL that does not parse (its port)
            raise self.cannot_open(exc) from exc

    def open_blobs(self, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> BlobStore:
        return BlobStore(self.blobs_dir(), max_bytes=max_bytes)

    def describe(self) -> dict[str, Any]:
        return {"storage": str(self.storage_dir()), "database": self.database_kind(),
                "database_url": self.shown_database()}


def storage_field() -> Any:
    return field(default=None, metadata={"help": STORAGE_HELP})


def database_field() -> Any:
    return field(default=None, metadata={"help": DATABASE_HELP})


class _Located:
    """A command config with ``storage`` and ``database`` fields."""

    def location(self) -> HubLocation:
        return HubLocation(self.storage, self.database)  # type: ignore[attr-defined]


@dataclass
class HubServeConfig(_Located):
    host: str = field(default="127.0.0.1", metadata={
        "help": "Interface to bind. Beyond loopback (a team server), private repos and every write need a token."})
    port: int = field(default=8080, metadata={"help": "Port."})
    storage: str | None = storage_field()
    database: str | None = database_field()
    max_file_bytes: int = field(default=DEFAULT_MAX_FILE_BYTES, metadata={
        "help": "Largest file one upload may hold (bytes)."})

    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"


@dataclass
class HubTokenCreateConfig(_Located):
    name: str = field(metadata={"argument": True, "help": "The token's name (to list and remove it by)."})
    scope: Literal["read", "write"] = field(metadata={
        "help": "read: download, private repos included; write: also create repos and push."})
    namespace: str | None = field(default=None, metadata={
        "help": "Only repos of this namespace (default: every namespace)."})
    storage: str | None = storage_field()
    database: str | None = database_field()


@dataclass
class HubTokenListConfig(_Located):
    storage: str | None = storage_field()
    database: str | None = database_field()


@dataclass
class HubTokenRmConfig(_Located):
    name: str = field(metadata={"argument": True, "help": "The token to remove (it stops working at once)."})
    storage: str | None = storage_field()
    database: str | None = database_field()


@dataclass
class HubVerifyConfig(_Located):
    storage: str | None = storage_field()
    database: str | None = database_field()


@dataclass
class HubGcConfig(_Located):
    grace_seconds: float = field(default=3600.0, metadata={
        "help": "Keep unreferenced blobs and partial uploads younger than this: an upload whose commit has not "
                "landed yet (LFS objects arrive before the commit that names them) must outlive it."})
    dry_run: bool = field(default=False, metadata={
        "flags": ("--dry-run",), "help": "Only report what would be removed and how many bytes that frees."})
    storage: str | None = storage_field()
    database: str | None = database_field()


@dataclass
class HubSearchConfig(_Located):
    query: str | None = field(default=None, metadata={
        "argument": True, "help": "Part of the repo id (namespace/name) or artifact name, any case (default: all)."})
    license_allows: Literal["commercial"] | None = field(default=None, metadata={
        "help": "Only artifacts whose license is known to allow this use."})
    min_mof_class: str | None = field(default=None, metadata={
        "help": "Only artifacts at least this open in the Model Openness Framework: I (open science, the most "
                "open), II (open tooling) or III (open model); II keeps II and I. Artifacts whose class the hub "
                "does not know are left out."})
    task: str | None = field(default=None, metadata={"help": "Only artifacts of this task (config.task, e.g. dates)."})
    storage: str | None = storage_field()
    database: str | None = database_field()


def url_host(host: str) -> str:
    """``host`` as it is written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
