"""The hub's metadata — repos, revisions, their files, branches and tags, tokens — in SQLite (the default, a file
in the storage folder) or PostgreSQL (``--database postgresql://…``), through SQLAlchemy Core: one code path.

A revision is immutable and named by its content hash: the sha1 (40 hex digits, what HF clients expect of a
commit) of its files' paths and blob sha256s in order, so the same files are the same revision. Branches and tags
are movable names for a revision. A commit lands in one transaction that also moves its branch, and only if the
branch still points where the committer saw it (``parent``): two concurrent pushes cannot lose each other's work.

Schema migrations are versioned (:data:`MIGRATIONS`, applied in order and recorded in ``schema_version``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.teamhub.names import RepoId

metadata = sa.MetaData()
schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, primary_key=True))
repos = sa.Table(
    "repos", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repo_type", sa.String(16), nullable=False),
    sa.Column("namespace", sa.String(96), nullable=False),
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("private", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("repo_type", "namespace", "name"),
)
commits = sa.Table(
    "commits", metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id"), primary_key=True),
    sa.Column("sha", sa.String(40), primary_key=True),
    sa.Column("parent", sa.String(40)),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(96)),
    sa.Column("created_at", sa.Float, nullable=False),
)
entries = sa.Table(
    "entries", metadata,
    sa.Column("repo_id", sa.Integer, primary_key=True),
    sa.Column("commit_sha", sa.String(40), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("blob", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("lfs", sa.Boolean, nullable=False),
    sa.ForeignKeyConstraint(["repo_id", "commit_sha"], ["commits.repo_id", "commits.sha"]),
)
refs = sa.Table(
    "refs", metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # branch | tag
    sa.Column("sha", sa.String(40), nullable=False),
)
tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(96), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(8), nullable=False),  # read | write
    sa.Column("namespace", sa.String(96)),  # None: every namespace
    sa.Column("created_at", sa.Float, nullable=False),
)
repo_cards = sa.Table(  # what search finds: the manifest.json of each repo's main (kaiyuan.teamhub.search)
    "repo_cards", metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id"), primary_key=True),
    sa.Column("sha", sa.String(40), nullable=False),  # the revision of main it was read from
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("license", sa.String(255), nullable=False),
    sa.Column("commercial", sa.Boolean),  # None: the license's terms are unknown
    sa.Column("mof_class", sa.Integer),  # 1 = Class I (open science) … 3 = Class III (open model); None: unknown
    sa.Column("task", sa.String(96)),
    sa.Column("updated_at", sa.Float, nullable=False),
)
MIGRATIONS: tuple[tuple[sa.Table, ...], ...] = (
    (repos, commits, entries, refs, tokens),  # version 1
    (repo_cards,),  # version 2: search
)
SCOPES = ("read", "write")
# nosec B105: the prefix that marks a hub token, not a token
TOKEN_PREFIX = "kyh_"  # nosec B105


class ConflictError(KaiyuanError):
    """The branch moved since the committer read it (or a name is taken)."""


@dataclass(frozen=True)
class Repo:
    id: int
    repo_id: RepoId
    private: bool
    created_at: float


@dataclass(frozen=True)
class Entry:
    path: str
    blob: str  # sha256 of the content
    size: int
    lfs: bool


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    message: str
    author: str | None
    created_at: float


@dataclass(frozen=True)
class Card:
    """A repo as search lists it: what the manifest.json of its main says."""

    repo_id: RepoId
    private: bool
    sha: str
    kind: str
    name: str
    license: str
    commercial: bool | None
    mof_class: int | None
    task: str | None
    updated_at: float


@dataclass(frozen=True)
class Token:
    name: str
    scope: str
    namespace: str | None

    def can_read(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    def can_write(self, namespace: str) -> bool:
        return self.scope == "write" and self.can_read(namespace)


def revision_sha(files: Iterable[Entry]) -> str:
    """The content hash naming a revision: sha1 over its (path, blob sha256) pairs, sorted by path."""
    listing = [[e.path, e.blob] for e in sorted(files, key=lambda e: e.path)]
    return hashlib.sha1(json.dumps(listing, separators=(",", ":")).encode(), usedforsecurity=False).hexdigest()


def shown_url(url: str) -> str:
    """A database URL fit for messages: its password masked."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("://", 1)[0] + "://…"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HubDB:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def migrate(self) -> int:
        """Apply the migrations not applied yet; returns the schema version."""
        with self.engine.begin() as conn:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            if current > len(MIGRATIONS):
                raise KaiyuanError(f"{shown_url(self.url)}: written by a newer kaiyuan (schema {current}, this one "
                                   f"knows {len(MIGRATIONS)})")
            for number, tables in enumerate(MIGRATIONS[current:], start=current + 1):
                for table in tables:
                    table.create(conn, checkfirst=True)
                conn.execute(schema_version.insert().values(version=number))
            return len(MIGRATIONS)

    # -- repos ---------------------------------------------------------------------------------------------

    def create_repo(self, repo_id: RepoId, private: bool = False, exist_ok: bool = False) -> Repo:
        with self.engine.begin() as conn:
            found = self._repo(conn, repo_id)
            if found is not None:
                if exist_ok:
                    return found
                raise ConflictError(f"{repo_id} already exists")
            now = time.time()
            result = conn.execute(repos.insert().values(repo_type=repo_id.repo_type, namespace=repo_id.namespace,
                                                        name=repo_id.name, private=private, created_at=now))
            return Repo(int(result.inserted_primary_key[0]), repo_id, private, now)

    def _repo(self, conn: sa.Connection, repo_id: RepoId) -> Repo | None:
        row = conn.execute(sa.select(repos).where(repos.c.repo_type == repo_id.repo_type,
                                                  repos.c.namespace == repo_id.namespace,
                                                  repos.c.name == repo_id.name)).first()
        return Repo(row.id, repo_id, bool(row.private), row.created_at) if row else None

    def repo(self, repo_id: RepoId) -> Repo | None:
        with self.engine.connect() as conn:
            return self._repo(conn, repo_id)

    def repos(self, repo_type: str | None = None) -> list[Repo]:
        query = sa.select(repos).order_by(repos.c.namespace, repos.c.name)
        if repo_type is not None:
            query = query.where(repos.c.repo_type == repo_type)
        with self.engine.connect() as conn:
            return [Repo(r.id, RepoId(r.repo_type, r.namespace, r.name), bool(r.private), r.created_at)
                    for r in conn.execute(query)]

    # -- revisions -----------------------------------------------------------------------------------------

    def resolve(self, repo: Repo, revision: str) -> Commit | None:
        """The revision a branch, tag or (full or 7+ character) commit sha names."""
        with self.engine.connect() as conn:
            ref = conn.execute(sa.select(refs.c.sha).where(refs.c.repo_id == repo.id, refs.c.name == revision)
                               ).scalar()
            query = sa.select(commits).where(commits.c.repo_id == repo.id)
            if ref is not None:
                row = conn.execute(query.where(commits.c.sha == ref)).first()
            elif len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
                found = conn.execute(query.where(commits.c.sha.startswith(revision, autoescape=True)).limit(2)).all()
                row = found[0] if len(found) == 1 else None
            else:
                row = None
        return Commit(row.sha, row.parent, row.message, row.author, row.created_at) if row else None

    def files(self, repo: Repo, sha: str) -> list[Entry]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(entries).where(entries.c.repo_id == repo.id, entries.c.commit_sha == sha)
                                .order_by(entries.c.path))
            return [Entry(r.path, r.blob, r.size, bool(r.lfs)) for r in rows]

    def refs(self, repo: Repo) -> dict[str, tuple[str, str]]:
        """name → (kind, sha)."""
        with self.engine.connect() as conn:
            return {r.name: (r.kind, r.sha) for r in conn.execute(sa.select(refs).where(refs.c.repo_id == repo.id))}

    def commit(self, repo: Repo, branch: str, files: list[Entry], message: str, author: str | None,
               parent: str | None | bool = True) -> Commit:
        """Make ``files`` (the whole tree) the new revision of ``branch`` in one transaction. ``parent``: the sha the
        branch must still point at (None: the branch must not exist yet; True: whatever it points at now)."""
        sha = revision_sha(files)
        try:
            return self._commit(repo, branch, files, message, author, parent, sha)
        except sa.exc.IntegrityError as exc:  # another writer created the branch (or this revision) meanwhile
            raise ConflictError(f"{repo.repo_id}@{branch} was written meanwhile: pull and retry") from exc

    def _commit(self, repo: Repo, branch: str, files: list[Entry], message: str, author: str | None,
                parent: str | None | bool, sha: str) -> Commit:
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(refs.c.sha).where(refs.c.repo_id == repo.id, refs.c.name == branch)
                                   .with_for_update()).scalar()
            if parent is not True and parent != current:
                raise ConflictError(f"{repo.repo_id}@{branch} moved to {current} meanwhile (expected {parent}): "
                                    "pull and retry")
            now = time.time()
            known = conn.execute(sa.select(commits.c.sha).where(commits.c.repo_id == repo.id, commits.c.sha == sha)
                                 ).scalar()
            if known is None:
                conn.execute(commits.insert().values(repo_id=repo.id, sha=sha, parent=current, message=message,
                                                     author=author, created_at=now))
                if files:
                    conn.execute(entries.insert(), [{"repo_id": repo.id, "commit_sha": sha, "path": e.path,
                                                     "blob": e.blob, "size": e.size, "lfs": e.lfs} for e in files])
            if current is None:
                conn.execute(refs.insert().values(repo_id=repo.id, name=branch, kind="branch", sha=sha))
            elif conn.execute(refs.update().where(refs.c.repo_id == repo.id, refs.c.name == branch,
                                                  refs.c.sha == current).values(sha=sha, kind="branch")
                              ).rowcount != 1:  # compare-and-set: SQLite has no SELECT … FOR UPDATE
                raise ConflictError(f"{repo.repo_id}@{branch} moved meanwhile (expected {current}): pull and retry")
        return self.resolve(repo, sha) or Commit(sha, current, message, author, now)

    def tag(self, repo: Repo, name: str, sha: str) -> None:
        """Create the tag ``name`` at revision ``sha``: one INSERT, so of two writers racing for a name exactly one
        wins and neither overwrites the other. A name taken (by a tag or a branch) is :class:`ConflictError`: a tag
        does not move (delete it, then create it again)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(refs.insert().values(repo_id=repo.id, name=name, kind="tag", sha=sha))
        except sa.exc.IntegrityError as exc:
            taken = self.refs(repo).get(name)
            if taken is None:  # not the name: the repo was deleted meanwhile
                raise ConflictError(f"{repo.repo_id} was deleted meanwhile") from exc
            raise ConflictError(f"{repo.repo_id}: {taken[0]} {name!r} exists") from exc

    def delete_ref(self, repo: Repo, name: str, kind: str) -> str | None:
        """Remove the branch or tag (``kind``) ``name`` in one statement; the sha it pointed at, or None if there
        was no such ref. A commit racing to move a deleted branch fails its compare-and-set (a conflict)."""
        with self.engine.begin() as conn:
            sha = conn.execute(sa.select(refs.c.sha).where(refs.c.repo_id == repo.id, refs.c.name == name,
                                                           refs.c.kind == kind)).scalar()
            if sha is None:
                return None
            done = conn.execute(refs.delete().where(refs.c.repo_id == repo.id, refs.c.name == name,
                                                    refs.c.kind == kind))
            return sha if done.rowcount == 1 else None

    def delete_repo(self, repo_id: RepoId) -> bool:
        """Remove the repo and all its metadata (refs, commits, their files, its search card) in one transaction;
        whether it existed. Blobs stay: other repos may hold them too (``kaiyuan hub gc`` collects the rest)."""
        try:
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(repos.c.id).where(
                    repos.c.repo_type == repo_id.repo_type, repos.c.namespace == repo_id.namespace,
                    repos.c.name == repo_id.name).with_for_update()).first()  # a commit racing it waits, then fails
                if row is None:
                    return False
                for table in (refs, repo_cards, entries, commits):
                    conn.execute(table.delete().where(table.c.repo_id == row.id))
                conn.execute(repos.delete().where(repos.c.id == row.id))
        except sa.exc.IntegrityError as exc:  # a commit landed between the deletes: nothing was removed
            raise ConflictError(f"{repo_id} was written meanwhile: delete it again") from exc
        return True

    def blobs_in_use(self) -> set[str]:
        """The sha256 of every blob some revision of some repo holds (what ``kaiyuan hub gc`` must keep)."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(entries.c.blob).distinct()).scalars())

    # -- search cards --------------------------------------------------------------------------------------

    def set_card(self, repo: Repo, sha: str, *, kind: str, name: str, license: str, commercial: bool | None,
                 mof_class: int | None = None, task: str | None = None, branch: str = "main") -> bool:
        """Record the card of ``repo`` read from revision ``sha``, unless ``branch`` has moved past ``sha``
        meanwhile (the newer commit indexes itself); returns whether it was recorded."""
        values = {"sha": sha, "kind": kind[:32], "name": name[:255], "license": license[:255],
                  "commercial": commercial, "mof_class": mof_class, "task": task[:96] if task else None,
                  "updated_at": time.time()}
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    head = conn.execute(sa.select(refs.c.sha).where(refs.c.repo_id == repo.id,
                                                                    refs.c.name == branch)).scalar()
                    if head != sha:
                        return False
                    done = conn.execute(repo_cards.update().where(repo_cards.c.repo_id == repo.id).values(**values))
                    if done.rowcount == 0:
                        conn.execute(repo_cards.insert().values(repo_id=repo.id, **values))
                return True
            except sa.exc.IntegrityError:  # another writer inserted the card meanwhile: update it
                if attempt:
                    raise
        return False

    def drop_card(self, repo: Repo) -> None:
        with self.engine.begin() as conn:
            conn.execute(repo_cards.delete().where(repo_cards.c.repo_id == repo.id))

    def card(self, repo: Repo) -> Card | None:
        found = self._cards(sa.true(), repo.id)
        return found[0] if found else None

    def search(self, query: str = "", license_allows: str | None = None, min_mof_class: int | None = None,
               task: str | None = None, can_read: Callable[[str], bool] | None = None) -> list[Card]:
        """The cards whose repo id (``namespace/name``) or artifact name holds ``query`` (any case), filtered:
        ``license_allows="commercial"`` keeps licenses known to allow commercial use; ``min_mof_class`` keeps
        classes at least that open (Class I is the most open: 2 keeps II and I); ``task`` keeps that task.
        Private repos only where ``can_read(namespace)`` (None: every repo, as the CLI on the database sees)."""
        if license_allows not in (None, "commercial"):
            raise KaiyuanError(f"license_allows {license_allows!r}: expected commercial")
        where = sa.true()
        if query:
            needle = query.lower()
            repo_name = sa.func.lower(repos.c.namespace + "/" + repos.c.name)
            where = sa.and_(where, sa.or_(repo_name.contains(needle, autoescape=True),
                                          sa.func.lower(repo_cards.c.name).contains(needle, autoescape=True)))
        if license_allows == "commercial":
            where = sa.and_(where, repo_cards.c.commercial.is_(True))
        if min_mof_class is not None:
            where = sa.and_(where, repo_cards.c.mof_class.is_not(None), repo_cards.c.mof_class <= min_mof_class)
        if task is not None:
            where = sa.and_(where, sa.func.lower(repo_cards.c.task) == task.lower())
        cards = self._cards(where)
        return [c for c in cards if not c.private or (can_read is None or can_read(c.repo_id.namespace))]

    def _cards(self, where: Any, repo_id: int | None = None) -> list[Card]:
        query = (sa.select(repos.c.repo_type, repos.c.namespace, repos.c.name.label("repo_name"), repos.c.private,
                           repo_cards)
                 .select_from(repo_cards.join(repos, repo_cards.c.repo_id == repos.c.id)).where(where)
                 .order_by(repos.c.namespace, repos.c.name, repos.c.repo_type))
        if repo_id is not None:
            query = query.where(repo_cards.c.repo_id == repo_id)
        with self.engine.connect() as conn:
            return [Card(RepoId(r.repo_type, r.namespace, r.repo_name), bool(r.private), r.sha, r.kind, r.name,
                         r.license, r.commercial, r.mof_class, r.task, r.updated_at) for r in conn.execute(query)]

    # -- tokens --------------------------------------------------------------------------------------------

    def create_token(self, name: str, scope: str, namespace: str | None = None) -> str:
        """A new token, returned once; only its sha256 is stored."""
        if scope not in SCOPES:
            raise KaiyuanError(f"--scope {scope!r}: expected read or write")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(tokens.c.id).where(tokens.c.name == name)).first():
                raise ConflictError(f"a token named {name!r} exists (remove it first)")
            conn.execute(tokens.insert().values(name=name, token_hash=token_hash(token), scope=scope,
                                                namespace=namespace, created_at=time.time()))
        return token

    def check_token(self, token: str) -> Token | None:
        """The token's grant, or None. Looked up by hash, then compared in constant time."""
        if not token:
            return None
        offered = token_hash(token)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.token_hash == offered)).first()
        if row is None or not hmac.compare_digest(row.token_hash, offered):
            return None
        return Token(row.name, row.scope, row.namespace)

    def token_by_hash(self, digest: str) -> Token | None:
        """The grant of the token whose sha256 is ``digest`` (what a signed-in page session holds instead of the
        token), or None — also once that token is removed. Compared in constant time."""
        if not isinstance(digest, str) or len(digest) != 64:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.token_hash == digest)).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return Token(row.name, row.scope, row.namespace)

    def list_tokens(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            return [{"name": r.name, "scope": r.scope, "namespace": r.namespace, "created_at": r.created_at}
                    for r in conn.execute(sa.select(tokens).order_by(tokens.c.name))]

    def remove_token(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(tokens.delete().where(tokens.c.name == name)).rowcount == 0:
                raise NotFoundError(f"no token {name!r}")
