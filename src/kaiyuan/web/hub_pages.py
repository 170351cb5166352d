"""The team hub's web pages (``kaiyuan hub serve``), server-rendered beside its Hugging Face routes.

* ``GET /`` — the hub's repos, models and datasets, those with a kaiyuan manifest (as search indexes them) and
  plain uploads without one, searchable with the filters of ``kaiyuan hub search``: ``q``, ``license_allows=
  commercial``, ``min_mof_class`` (I, II, III), ``task``, and ``type`` (model, dataset). A filter that is not
  allowed: a 400 page saying why.
* ``GET /{namespace}/{name}`` and ``/datasets/{namespace}/{name}`` (``?revision=``, default ``main``) — one repo:
  branches and tags, the files (pickle files flagged; downloads through ``/{repo}/resolve/{sha}/{path}``), the card
  (``README.md``, rendered with raw HTML escaped), the lineage ``kaiyuan push`` recorded, and the license verdict,
  openness and lineage graph the pushing registry computed (:mod:`kaiyuan.web.hub_views`).
* ``GET|POST /login``, ``POST /logout`` — sign in with a hub token (:mod:`kaiyuan.web.hub_auth`): private repos
  show only to a session whose token may read their namespace; to anyone else they do not exist (404).

Assets are served from the package under ``/-/static/`` (``-`` starts no repo name). Every page gets the web UI's
Content-Security-Policy (no inline script: these pages have no script at all) and security headers. The HF routes
are registered first and win; an unknown ``/api/…`` path still answers as the Hub would (JSON 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from kaiyuan.errors import KaiyuanError
from kaiyuan.teamhub.context import Hub, HubError, hub_state
from kaiyuan.teamhub.meta import Card, Commit, Repo, Token
from kaiyuan.teamhub.names import NameError_, RepoId, repo_id
from kaiyuan.teamhub.search import CLASS_NAMES, parse_mof_class, read_manifest
from kaiyuan.web.auth import server_secret
from kaiyuan.web.guard import CSP
from kaiyuan.web.hub_auth import LOGIN_COOKIE, NONCE_SECONDS, SESSION_COOKIE, SESSION_DAYS, HubAuth, safe_next
from kaiyuan.web.hub_views import ancestors, card_view, file_rows, reports_view, revision_link
from kaiyuan.web.model_pages import RISK_PILL, VERDICT_PILL
from kaiyuan.web.render import STATIC, templates

__all__ = ["mount_hub_pages"]

router = APIRouter(include_in_schema=False)
STATIC_PREFIX = "/-/static"
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
RESERVED = frozenset({"api"})  # namespaces whose paths belong to the HF protocol (JSON answers)
NOT_FOUND = "There is no repo {repo} on this hub (or it is private: sign in with a token that may read it)."


def auth_of(request: Request) -> HubAuth:
    return request.app.state.hub_pages


def grant_of(request: Request) -> Token | None:
    """The visitor's grant: the signed-in session's token, else a ``Bearer`` token (curl, scripts)."""
    return auth_of(request).grant(dict(request.cookies)) or hub_state(request).grant(request)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` as a page for this visitor: every page gets ``grant``, the sign-out form's ``csrf_token`` and
    ``static``; and the security headers."""
    auth = auth_of(request)
    grant = context.pop("grant") if "grant" in context else grant_of(request)
    digest = auth.session_digest(dict(request.cookies))
    response = templates().TemplateResponse(request, template, {
        "grant": grant, "signed_in": digest is not None and grant is not None, "static": STATIC_PREFIX,
        "csrf_token": auth.csrf_token(digest) if digest else "", "hub_url": str(request.base_url).rstrip("/"),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context}, status_code=status)
    response.headers.update(HEADERS)
    return response


def error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "hub_error.html", status=status, title=title, message=message)


# ------------------------------------------------------------------------------------------------ the list


@dataclass
class RepoRow:
    repo_id: RepoId
    href: str
    private: bool
    kind: str  # the artifact's kind; "" for a plain upload (no manifest on main)
    name: str
    license: str
    commercial: str  # yes | no | ? | "" (plain upload)
    mof_class: str
    task: str
    updated: float | None


def card_row(card: Card) -> RepoRow:
    commercial = "?" if card.commercial is None else "yes" if card.commercial else "no"
    return RepoRow(card.repo_id, f"/{card.repo_id}", card.private, card.kind, card.name, card.license, commercial,
                   CLASS_NAMES.get(card.mof_class or 0, "?"), card.task or "", card.updated_at)


def plain_row(hub: Hub, repo: Repo) -> RepoRow:
    head = hub.db.resolve(repo, "main")
    return RepoRow(repo.repo_id, f"/{repo.repo_id}", repo.private, "", "", "", "", "", "",
                   head.created_at if head else repo.created_at)


def repo_rows(hub: Hub, grant: Token | None, q: str, license_allows: str | None, min_mof_class: int | None,
              task: str | None, repo_type: str | None) -> list[RepoRow]:
    """The repos this visitor may see that match: the search's cards (exactly what ``db.search`` answers), and —
    when only the name is filtered — the repos without a card, whose name holds ``q``."""
    def can_read(namespace: str) -> bool:
        return grant is not None and grant.can_read(namespace)

    cards = [c for c in hub.db.search(q, license_allows, min_mof_class, task, can_read)
             if repo_type is None or c.repo_id.repo_type == repo_type]
    rows = [card_row(c) for c in cards]
    if license_allows is None and min_mof_class is None and task is None:
        indexed = {c.repo_id for c in hub.db.search()}
        rows += [plain_row(hub, r) for r in hub.db.repos(repo_type) if r.repo_id not in indexed
                 and (not r.private or can_read(r.repo_id.namespace)) and q.lower() in r.repo_id.id.lower()]
    return sorted(rows, key=lambda r: (r.repo_id.namespace, r.repo_id.name, r.repo_id.repo_type))


@router.get("/")
def repos_page(request: Request, q: str = "", license_allows: str = "", min_mof_class: str = "", task: str = "",
               repo_type: str = Query("", alias="type")) -> Response:
    """The hub's repos, filtered as ``kaiyuan hub search`` filters them."""
    filters = {"q": q, "license_allows": license_allows, "min_mof_class": min_mof_class, "task": task,
               "type": repo_type}
    problem = ""
    if license_allows not in ("", "commercial"):
        problem = f"license_allows={license_allows!r}: expected commercial (or nothing)."
    elif repo_type not in ("", "model", "dataset"):
        problem = f"type={repo_type!r}: expected model or dataset (or nothing)."
    try:
        wanted = parse_mof_class(min_mof_class.strip() or None)
    except KaiyuanError as exc:
        problem, wanted = problem or f"min_mof_class: {exc}.", None
    grant = grant_of(request)
    if problem:
        return render(request, "hub_repos.html", status=400, grant=grant, rows=[], filters=filters, problem=problem,
                      classes=CLASS_NAMES)
    rows = repo_rows(hub_state(request), grant, q.strip(), license_allows or None, wanted, task.strip() or None,
                     repo_type or None)
    return render(request, "hub_repos.html", grant=grant, rows=rows, filters=filters, problem="",
                  classes=CLASS_NAMES, filtered=any(filters.values()))


# ------------------------------------------------------------------------------------------------ one repo


@dataclass
class RefRow:
    name: str
    kind: str  # branch | tag
    sha: str
    href: str
    current: bool


def ref_rows(hub: Hub, repo: Repo, sha: str | None) -> list[RefRow]:
    refs = hub.db.refs(repo)
    return [RefRow(name, kind, ref_sha, revision_link(repo.repo_id, name), ref_sha == sha)
            for name, (kind, ref_sha) in sorted(refs.items(), key=lambda item: (item[1][0], item[0] != "main",
                                                                                 item[0]))]


def visible_repo(request: Request, grant: Token | None, repo_type: str, namespace: str, name: str) -> Repo | None:
    """The repo, if this visitor may see it (a private one without a grant for its namespace is not there)."""
    try:
        rid = repo_id(f"{namespace}/{name}", repo_type)
    except NameError_:
        return None
    repo = hub_state(request).db.repo(rid)
    if repo is None or (repo.private and (grant is None or not grant.can_read(rid.namespace))):
        return None
    return repo


def repo_page(request: Request, repo_type: str, namespace: str, name: str, revision: str) -> Response:
    hub, grant = hub_state(request), grant_of(request)
    repo = visible_repo(request, grant, repo_type, namespace, name)
    shown = f"{'datasets/' if repo_type == 'dataset' else ''}{namespace}/{name}"
    if repo is None:
        return error(request, 404, "No such repo", NOT_FOUND.format(repo=shown))
    revision = revision.strip() or "main"
    commit: Commit | None = hub.db.resolve(repo, revision)
    refs = ref_rows(hub, repo, commit.sha if commit else None)
    if commit is None and revision != "main":
        return error(request, 404, "No such revision", f"{shown} has no branch, tag or commit {revision!r}.")
    files = hub.db.files(repo, commit.sha) if commit else []
    by_path = {e.path: e for e in files}
    page_url = revision_link(repo.repo_id, revision)
    lineage, lineage_problem = ancestors(hub, by_path)
    return render(
        request, "hub_repo.html", grant=grant, repo=repo, rid=repo.repo_id, revision=revision, commit=commit,
        refs=refs, files=file_rows(repo.repo_id, commit.sha, files) if commit else [],
        manifest=read_manifest(hub, repo, commit.sha) if commit and "manifest.json" in by_path else None,
        card=card_view(hub, by_path), ancestors=lineage, ancestors_problem=lineage_problem,
        reports=reports_view(hub, by_path, page_url), verdict_pill=VERDICT_PILL, risk_pill=RISK_PILL,
        pull_ref=repo.repo_id.id + ("" if revision == "main" else f"@{revision}"))


@router.get("/datasets/{namespace}/{name}")
def dataset_page(request: Request, namespace: str, name: str, revision: str = "main") -> Response:
    """A dataset repo at ``revision``."""
    return repo_page(request, "dataset", namespace, name, revision)


# ------------------------------------------------------------------------------------------------ sign-in


def login_page(request: Request, next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    """The sign-in form; its CSRF token is bound to a pre-session nonce (kept, or set as a fresh cookie)."""
    auth = auth_of(request)
    nonce = auth.login_nonce(dict(request.cookies))
    cookie = None
    if nonce is None:
        nonce, cookie = auth.new_nonce()
    response = render(request, "hub_login.html", status=status, login_csrf=auth.csrf_token(nonce),
                      next=next_path, message=message)
    if cookie is not None:
        response.set_cookie(LOGIN_COOKIE, cookie, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=NONCE_SECONDS)
    return response


def csrf_refused(request: Request) -> HTMLResponse:
    return error(request, 403, "Refused", "The CSRF token of this form is missing or wrong: reload the page and try "
                                          "again.")


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 (the query's name)
    return login_page(request, safe_next(next))


@router.post("/login")
def login(request: Request, token: str = Form(""), next: str = Form("/"),  # noqa: A002
          csrf_token: str = Form("")) -> Response:
    """Check the pasted token; a valid one starts a session (the cookie holds its sha256, never the token)."""
    auth = auth_of(request)
    if not auth.csrf_valid(auth.login_nonce(dict(request.cookies)), csrf_token):
        return csrf_refused(request)
    client = request.client.host if request.client else "?"
    wait = auth.login_limit.retry_after(client)
    if wait:  # no more guesses get checked until the window has passed
        response = error(request, 429, "Slow down", f"Too many failed sign-ins: wait {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    grant = hub_state(request).db.check_token(token.strip())
    if grant is None:
        auth.login_limit.record(client)
        return login_page(request, safe_next(next), "That token is not valid on this hub.", status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, auth.session_cookie(token.strip()), httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", max_age=SESSION_DAYS * 86400)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    auth = auth_of(request)
    if not auth.csrf_valid(auth.session_digest(dict(request.cookies)), csrf_token):
        return csrf_refused(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# after /login and the dataset pages: two path segments are a model repo
@router.get("/{namespace}/{name}")
def model_page(request: Request, namespace: str, name: str, revision: str = "main") -> Response:
    """A model repo at ``revision`` (a branch, tag or commit)."""
    if namespace in RESERVED:  # e.g. /api/whoami of a client: the HF protocol's own 404, as JSON
        raise HubError(404, f"Not found: /{namespace}/{name}", "NotFound")
    return repo_page(request, "model", namespace, name, revision)


# ------------------------------------------------------------------------------------------------ mounting


def mount_hub_pages(app: FastAPI) -> HubAuth:
    """Add the pages to a hub app (made by :func:`kaiyuan.teamhub.app.create_hub_app`, whose routes keep
    precedence). The cookie and CSRF secret lives in the hub's storage folder (``ui-secret``, 0600)."""
    hub: Hub = app.state.hub
    auth = HubAuth(hub.db, server_secret(hub.storage))
    app.state.hub_pages = auth
    hub.session_grant = lambda request: auth.grant(request.cookies)  # file downloads from the pages, reads only
    app.mount(STATIC_PREFIX, StaticFiles(directory=str(STATIC)), name="hub-static")
    app.include_router(router)
    return auth

