"""What the hub's routes share: its state, tokens, access rules and Hugging Face-shaped errors.

Access: ``Authorization: Bearer <token>`` as HF clients send it (``HF_TOKEN``). A signed-in page session (a cookie
holding a token's hash, :mod:`kaiyuan.web.hub_pages`) counts as that token for reads only. A public repo is readable
by anyone;
a private one only with a token for its namespace — without one it does not exist (404, never 403). Writing needs a
token: none → 401; a read token, or one for another namespace → 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from kaiyuan.teamhub.blobs import BlobStore
from kaiyuan.teamhub.meta import HubDB, Repo, Token
from kaiyuan.teamhub.names import RepoId


class HubError(Exception):
    """An error answered as the Hub answers it: ``X-Error-Code`` and ``X-Error-Message`` headers and
    ``{"error": message}`` (what ``huggingface_hub.utils.hf_raise_for_status`` reads)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def repo_not_found(repo_id: RepoId | str) -> HubError:
    return HubError(404, f"Repository Not Found for url: {repo_id}.", "RepoNotFound")


@dataclass
class Hub:
    db: HubDB
    blobs: BlobStore
    storage: Path
    max_file_bytes: int
    # the grant of a signed-in page session (kaiyuan.web.hub_pages sets it): honoured for reads (GET / HEAD) only,
    # so a browser can download a private repo's files it may see, while every write still needs the header
    session_grant: Callable[[Request], Token | None] | None = field(default=None)

    def grant(self, request: Request) -> Token | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token:
            return self.db.check_token(token)
        if self.session_grant is not None and request.method in ("GET", "HEAD"):
            return self.session_grant(request)
        return None

    def readable(self, request: Request, repo_id: RepoId) -> Repo:
        """The repo, if this request may see it; else 404 (a private repo without a token for it is not there)."""
        repo = self.db.repo(repo_id)
        if repo is None:
            raise repo_not_found(repo_id)
        if repo.private:
            grant = self.grant(request)
            if grant is None or not grant.can_read(repo_id.namespace):
                raise repo_not_found(repo_id)
        return repo

    def writer(self, request: Request, namespace: str) -> Token:
        """The token allowed to write in ``namespace``; else 401 (none) or 403 (read-only, other namespace)."""
        grant = self.grant(request)
        if grant is None:
            raise HubError(401, "Invalid credentials in Authorization header: writing needs a write token "
                                "(`kaiyuan hub token create NAME --scope write`).", "Unauthorized")
        if not grant.can_write(namespace):
            why = "is read-only" if grant.scope != "write" else f"is for namespace {grant.namespace!r}"
            raise HubError(403, f"Your token {grant.name!r} {why}: it cannot write to {namespace!r}.", "Forbidden")
        return grant


def hub_state(request: Request) -> Hub:
    return request.app.state.hub
