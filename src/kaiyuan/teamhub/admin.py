"""The Hugging Face Hub's routes for a repo's refs and the repo itself, as ``huggingface_hub`` (2.x) calls them.

- ``HfApi.create_tag`` → ``POST /api/{models|datasets}/NS/NAME/tag/REVISION`` with ``{tag, message}``: the tag at
  that branch, tag or commit; 409 if the name is taken (a tag does not move: delete it, then create it again).
- ``HfApi.delete_tag`` → ``DELETE /api/…/NS/NAME/tag/TAG``.
- ``HfApi.delete_branch`` → ``DELETE /api/…/NS/NAME/branch/BRANCH``; the default branch (``main``) is refused.
- ``HfApi.list_repo_refs`` → ``GET /api/…/NS/NAME/refs``: ``{branches, converts, tags[, pullRequests]}``, each
  ``{name, ref, targetCommit}`` (readable by whoever may read the repo).
- ``HfApi.delete_repo`` → ``DELETE /api/repos/delete`` with ``{name, organization, type}``: the repo's refs,
  commits, their file lists and its search card, in one transaction. Its blobs stay (other repos may hold the same
  bytes): ``kaiyuan hub gc`` removes those no revision holds any more.

Every write needs a write token for the repo's namespace (:meth:`kaiyuan.teamhub.context.Hub.writer`).
"""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from kaiyuan.teamhub.context import Hub, HubError, hub_state, repo_not_found
from kaiyuan.teamhub.meta import ConflictError, Repo
from kaiyuan.teamhub.names import RepoId, repo_id
from kaiyuan.teamhub.upload import api_repo, check_ref_name, default_namespace, json_body, markers_dir, writable

router = APIRouter()

DEFAULT_BRANCH = "main"
REF_PREFIX = {"branch": "refs/heads/", "tag": "refs/tags/"}


def not_found(kind: str, name: str, refs: dict[str, tuple[str, str]]) -> HubError:
    """404 for a branch or tag (``kind``) that is not there, saying so when the name is the other kind of ref."""
    other = refs.get(name, ("", ""))[0]
    hint = f" ({name} is a {other}: delete it with delete_{other})" if other and other != kind else ""
    return HubError(404, f"{kind.capitalize()} not found: {name}{hint}", "RevisionNotFound")


# -- tags ------------------------------------------------------------------------------------------------------


@router.post("/api/{plural}/{namespace}/{name}/tag/{revision:path}")
async def create_tag(plural: str, namespace: str, name: str, revision: str, request: Request) -> dict[str, Any]:
    """``HfApi.create_tag``: tag ``revision`` (a branch, tag or commit; the client sends ``main`` by default)."""
    rid = api_repo(plural, namespace, name)
    body = await json_body(request)
    return await run_in_threadpool(make_tag, hub_state(request), request, rid, revision, body)


def make_tag(hub: Hub, request: Request, rid: RepoId, revision: str, body: dict[str, Any]) -> dict[str, Any]:
    _token, repo = writable(hub, request, rid)
    tag, message = body.get("tag"), body.get("message")
    if not isinstance(tag, str) or not tag or not (message is None or isinstance(message, str)):
        raise HubError(400, "expected {\"tag\": str, \"message\": str | null}", "BadRequest")
    check_ref_name(tag, "tag")
    found = hub.db.resolve(repo, revision)
    if found is None:
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    try:
        hub.db.tag(repo, tag, found.sha)
    except ConflictError as exc:
        raise taken(hub, repo, tag) from exc
    return ref_info("tag", tag, found.sha)


def taken(hub: Hub, repo: Repo, tag: str) -> HubError:
    """409 for a tag name already in use, as the Hub answers it (what ``create_tag(exist_ok=True)`` reads)."""
    kind = hub.db.refs(repo).get(tag, ("tag", ""))[0]
    if kind == "branch":
        return HubError(409, f"Reference already exists: {tag} is a branch", "Conflict")
    return HubError(409, f"Tag already exists: {tag} (a tag does not move: delete it, then create it again)",
                    "Conflict")


@router.delete("/api/{plural}/{namespace}/{name}/tag/{tag:path}")
async def delete_tag(plural: str, namespace: str, name: str, tag: str, request: Request) -> dict[str, Any]:
    """``HfApi.delete_tag``."""
    rid = api_repo(plural, namespace, name)
    await run_in_threadpool(remove_ref, hub_state(request), request, rid, tag, "tag")
    return {"success": True}


# -- branches --------------------------------------------------------------------------------------------------


@router.delete("/api/{plural}/{namespace}/{name}/branch/{branch:path}")
async def delete_branch(plural: str, namespace: str, name: str, branch: str, request: Request) -> dict[str, Any]:
    """``HfApi.delete_branch``: any branch but the default one (its revisions stay reachable by sha until the repo
    is deleted)."""
    rid = api_repo(plural, namespace, name)
    await run_in_threadpool(remove_ref, hub_state(request), request, rid, branch, "branch")
    return {"success": True}


def remove_ref(hub: Hub, request: Request, rid: RepoId, name: str, kind: str) -> None:
    _token, repo = writable(hub, request, rid)
    if kind == "branch" and name == DEFAULT_BRANCH:
        raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH} of {rid}: delete the repo instead "
                            "(HfApi.delete_repo)", "Forbidden")
    if hub.db.delete_ref(repo, name, kind) is None:
        raise not_found(kind, name, hub.db.refs(repo))


# -- refs ------------------------------------------------------------------------------------------------------


@router.get("/api/{plural}/{namespace}/{name}/refs")
def list_refs(plural: str, namespace: str, name: str, request: Request) -> dict[str, Any]:
    """``HfApi.list_repo_refs``: branches and tags (this hub has no converts or pull requests)."""
    hub = hub_state(request)
    repo = hub.readable(request, api_repo(plural, namespace, name))
    listed: dict[str, list[dict[str, str]]] = {"branch": [], "tag": []}
    for ref, (kind, sha) in sorted(hub.db.refs(repo).items()):
        listed[kind].append(ref_info(kind, ref, sha))
    answer: dict[str, Any] = {"branches": listed["branch"], "converts": [], "tags": listed["tag"]}
    if request.query_params.get("include_prs") not in (None, "", "0", "false"):
        answer["pullRequests"] = []
    return answer


def ref_info(kind: str, name: str, sha: str) -> dict[str, str]:
    """One ref as ``GitRefInfo`` reads it."""
    return {"name": name, "ref": REF_PREFIX[kind] + name, "targetCommit": sha}


# -- repos -----------------------------------------------------------------------------------------------------


@router.api_route("/api/repos/delete", methods=["DELETE", "POST"])
async def delete_repo(request: Request) -> dict[str, Any]:
    """``HfApi.delete_repo``: ``{name, organization, type}``; 404 RepoNotFound if it is not there (what
    ``missing_ok=True`` swallows)."""
    body = await json_body(request)
    rid = await run_in_threadpool(remove_repo, hub_state(request), request, body)
    return {"success": True, "deleted": str(rid)}


def remove_repo(hub: Hub, request: Request, body: dict[str, Any]) -> RepoId:
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not (organization is None or isinstance(organization, str)):
        raise HubError(400, "expected {\"name\": str, \"organization\": str | null, \"type\": str | null}",
                       "BadRequest")
    namespace = organization if organization is not None else default_namespace(hub, request)
    rid = repo_id(f"{namespace}/{name}", body.get("type") or "model")
    hub.writer(request, rid.namespace)
    try:
        deleted = hub.db.delete_repo(rid)
    except ConflictError as exc:
        raise HubError(409, str(exc), "Conflict") from exc
    if not deleted:
        raise repo_not_found(rid)
    shutil.rmtree(markers_dir(hub.storage, rid), ignore_errors=True)  # its uploads no longer count as its own
    return rid
