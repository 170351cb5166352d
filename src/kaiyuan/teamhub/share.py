"""``kaiyuan push`` and ``kaiyuan pull``: registry artifacts to and from a hub, with their whole lineage.

Pushing uploads the artifact *and every ancestor it needs* through the Hugging Face upload protocol (the same
``huggingface_hub`` client anyone would use), ancestors first: each artifact becomes one revision of its own repo
(the target as ``namespace/name``, an ancestor as ``namespace/<its name>``), holding exactly its files, its
``manifest.json`` and ``.kaiyuan/lineage.json`` — the id, repo and revision of each of its ancestors.

A model's revision also holds ``.kaiyuan/reports.json``: its license verdict, openness report and lineage graph as
the pushing registry computes them (:func:`reports_of`) — the hub cannot compute them (it has no registry), so its
search (``--min-mof-class``, ``--license-allows``) and pages read them from there.

Pulling downloads a revision and, through its lineage file, every ancestor the local registry lacks; checks every
file against its manifest's sha256 and every manifest against its id; refuses pickle files unless asked; and only
when *everything* checked out moves the folders into the registry and registers them — a tampered or truncated
blob is refused, naming it, and nothing half-pulled is registered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan import __version__
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.known_models import with_catalog
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.manifest import MANIFEST_NAME, Manifest, file_sha256, load_checked_manifest
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.teamhub.names import check_part, check_path, repo_id

LINEAGE_FILE = ".kaiyuan/lineage.json"
ATTACHED_FILE = ".kaiyuan/attached.json"  # the target's cards and evaluations (and what they need)
ATTACHED_KINDS = ("card", "eval")
REPORTS_FILE = ".kaiyuan/reports.json"  # a model's license verdict, openness and lineage graph, as pushed
MODEL_KINDS = ("model", "adapter", "export")  # the kinds `kaiyuan openness` grades
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
Report = Callable[[str], None]


@dataclass
class Shared:
    """One artifact as a hub revision."""

    id: str
    kind: str
    name: str
    repo: str
    revision: str
    skipped: bool = False  # pull: already in the local registry

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "repo": self.repo, "revision": self.revision,
                "skipped": self.skipped}


@dataclass
class ShareResult:
    artifact: Shared
    ancestors: list[Shared] = field(default_factory=list)
    attached: list[Shared] = field(default_factory=list)  # cards and evaluations (and what they need)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact.to_dict(), "ancestors": [a.to_dict() for a in self.ancestors],
                "attached": [a.to_dict() for a in self.attached]}


def _repo_name(name: str) -> str:
    """An artifact name as a repo name: other characters become '-'."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]", "-", name)).replace("..", ".").strip("-._")
    return check_part(cleaned[:96].strip("-._") or "artifact", "repo name")


def ancestors_first(artifact: Artifact, registry: Registry) -> list[Artifact]:
    """Every ancestor of ``artifact``, each after its own parents (so a pull can register them in this order)."""
    ordered: list[Artifact] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        for parent_id, _relation in registry.parents(node_id):
            if parent_id in seen:
                continue
            seen.add(parent_id)
            parent = registry.find_id(parent_id)
            if parent is None:
                raise KaiyuanError(f"{artifact.name} ({artifact.id}): its ancestor {parent_id} is not in this "
                                   "registry, so it cannot be pushed with its lineage")
            visit(parent_id)
            ordered.append(parent)

    visit(artifact.id)
    return ordered


def reports_of(artifact: Artifact, registry: Registry, repos: dict[str, Shared]) -> bytes:
    """``.kaiyuan/reports.json`` of a model: ``license`` (:func:`kaiyuan.hub.licenses.license_report`),
    ``openness`` (:func:`kaiyuan.hub.openness.openness_report`) and ``lineage`` (every ancestor as a node, with the
    hub repo and revision it was pushed to, and the parent → child edges). Deterministic: the same artifact in the
    same registry gives the same bytes (so the same revision)."""
    nodes = {artifact.id: {"id": artifact.id, "kind": artifact.kind, "name": artifact.name, "repo": None,
                           "revision": None}}
    edges = []
    for link in registry.lineage(artifact.id):
        pushed = repos.get(link["id"])
        nodes.setdefault(link["id"], {"id": link["id"], "kind": link["kind"], "name": link["name"],
                                      "repo": pushed.repo if pushed else None,
                                      "revision": pushed.revision if pushed else None})
        edges.append({"parent": link["id"], "child": link["child"], "relation": link["relation"]})
    reports = {"id": artifact.id, "kaiyuan": __version__,
               "license": license_report(artifact.id, with_catalog(registry)).to_dict(),
               "openness": openness_report(artifact.id, registry).to_dict(),
               "lineage": {"nodes": list(nodes.values()), "edges": edges}}
    return json.dumps(reports, indent=1, sort_keys=True, default=str).encode()


def _hf_api(hub_url: str, token: str | None) -> Any:
    from huggingface_hub import HfApi  # heavy: requests, its own modules

    return HfApi(endpoint=hub_url.rstrip("/"), token=token)


@contextmanager
def _git_lfs_uploads() -> Iterator[None]:
    """With ``hf_xet`` installed, huggingface_hub uploads through Xet without asking the server; the hub speaks Git
    LFS, so turn Xet off for the duration (what HF_HUB_DISABLE_XET=1 does for any other client)."""
    import huggingface_hub.constants as constants

    saved = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = saved


@contextmanager
def _hub_errors(hub_url: str) -> Iterator[None]:
    """The client's HTTP errors as one clear line (what the hub said, or that it cannot be reached)."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except KaiyuanError:
        raise
    except Exception as exc:
        chain: list[BaseException] = [exc]
        while chain[-1].__context__ is not None and len(chain) < 8:  # the client re-raises while handling an error
            chain.append(chain[-1].__context__)
        http = next((e for e in chain if isinstance(e, HfHubHTTPError)), None)
        if http is not None:
            said = http.server_message or str(http).splitlines()[0]
            raise KaiyuanError(f"{hub_url}: {said.strip()}") from None
        if isinstance(exc, httpx.HTTPError | OSError):
            raise KaiyuanError(f"cannot reach the hub at {hub_url} ({type(exc).__name__}: {exc}): is `kaiyuan hub "
                               "serve` running there?") from None
        raise


def push(ref: str, target: str, hub_url: str, token: str | None = None, registry: Registry | None = None,
         private: bool = False, report: Report | None = None) -> ShareResult:
    """Push the artifact ``ref`` as ``target`` (``namespace/name``) with every ancestor; returns what went where."""
    with _hub_errors(hub_url):
        return _push(ref, target, hub_url, token, registry, private, report)


def attachments(nodes: list[Artifact], registry: Registry) -> list[Artifact]:
    """The cards and evaluations of ``nodes`` (what their openness grade and model card read), each after the
    ancestors of its own that ``nodes`` lack, in an order a pull can register."""
    known = {n.id for n in nodes}
    found: list[Artifact] = []
    for node in nodes:
        for child in registry.children(node.id):
            if child.kind not in ATTACHED_KINDS or child.id in known:
                continue
            for dep in [*ancestors_first(child, registry), child]:
                if dep.id not in known:
                    known.add(dep.id)
                    found.append(dep)
    return found


def _push(ref: str, target: str, hub_url: str, token: str | None, registry: Registry | None, private: bool,
          report: Report | None) -> ShareResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    registry = registry or Registry()
    artifact = registry.ensure_intact(registry.get(ref))
    target_id = repo_id(target)
    api = _hf_api(hub_url, token)
    pushed: dict[str, Shared] = {}

    def commit(repo: str, operations: list[Any], message: str, description: str) -> str:
        with _git_lfs_uploads():
            return api.create_commit(repo, operations=operations, commit_message=message,
                                     commit_description=description).oid

    def push_one(node: Artifact) -> None:
        registry.ensure_intact(node)
        repo = target_id.id if node is artifact else f"{target_id.namespace}/{_repo_name(node.name)}"
        lineage = [pushed[a.id].to_dict() for a in ancestors_first(node, registry) if a.id in pushed]
        api.create_repo(repo, private=private, exist_ok=True)
        ours = {**{path: node.path / path for path in node.manifest["files"]}, MANIFEST_NAME: node.path / MANIFEST_NAME}
        try:
            present = set(api.list_repo_files(repo))
        except Exception:  # noqa: BLE001 (a new repo without a revision yet)
            present = set()
        operations: list[Any] = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source))
                                 for path, source in sorted(ours.items())]
        operations.append(CommitOperationAdd(path_in_repo=LINEAGE_FILE, path_or_fileobj=_listing(
            node.id, "ancestors", lineage)))
        kept = {LINEAGE_FILE}
        if node.kind in MODEL_KINDS:
            operations.append(CommitOperationAdd(path_in_repo=REPORTS_FILE,
                                                 path_or_fileobj=reports_of(node, registry, pushed)))
            kept.add(REPORTS_FILE)
        stale = sorted(present - set(ours) - kept)  # a previous artifact's files in this repo
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        if report:
            report(f"pushing {node.name} ({node.id}) → {repo}")
        oid = commit(repo, operations, f"kaiyuan {node.kind} {node.id}",
                     f"{node.name}: {node.manifest.get('source', '')}")
        pushed[node.id] = Shared(node.id, node.kind, node.name, repo, oid)

    chain = ancestors_first(artifact, registry)
    for node in [*chain, artifact]:
        push_one(node)
    attached = attachments([*chain, artifact], registry)
    for node in attached:
        push_one(node)
    if attached:  # the target's revision names its cards and evaluations too, so a pull brings them
        entries = [pushed[a.id].to_dict() for a in attached]
        oid = commit(target_id.id, [CommitOperationAdd(path_in_repo=ATTACHED_FILE, path_or_fileobj=_listing(
            artifact.id, "attached", entries))], f"kaiyuan {artifact.kind} {artifact.id}: its cards and evaluations",
            ", ".join(a.id for a in attached))
        pushed[artifact.id].revision = oid
    return ShareResult(pushed[artifact.id], [pushed[a.id] for a in chain], [pushed[a.id] for a in attached])


def _listing(artifact_id: str, key: str, entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"id": artifact_id, key: [{k: v for k, v in e.items() if k != "skipped"} for e in entries]},
                      indent=1, sort_keys=True).encode()


def parse_ref(ref: str) -> tuple[str, str]:
    """``namespace/name[@revision]`` → (repo, revision)."""
    repo, _, revision = ref.partition("@")
    repo_id(repo)
    return repo, revision or "main"


def _verify(folder: Path, expected_id: str | None, allow_pickle: bool, where: str) -> Manifest:
    """The folder's manifest, after checking it names ``expected_id`` and every file matches its sha256."""
    manifest, problem = load_checked_manifest(folder)
    if manifest is None:
        raise KaiyuanError(f"{where}: {problem}: refused")
    if expected_id is not None and manifest.id != expected_id:
        raise KaiyuanError(f"{where}: it holds {manifest.id}, not the {expected_id} its lineage names: refused")
    for path, expected in sorted(manifest.files.items()):
        source = folder / path
        if not source.is_file():
            raise KaiyuanError(f"{where}: {path} is missing: refused")
        found = file_sha256(source)
        if found != expected:
            raise KaiyuanError(f"{where}: {path} does not match its manifest (sha256 {found[:12]}…, the manifest "
                               f"says {expected[:12]}…): tampered or truncated, refused")
        if path.lower().endswith(PICKLE_SUFFIXES) and not allow_pickle:
            raise KaiyuanError(f"{where}: {path} is a pickle file (it can run code when loaded): refused; pass "
                               "--allow-pickle to pull it anyway")
    return manifest


ARTIFACT_ID = re.compile(r"^[a-z]+-[0-9a-f]{12}$")


def _copy_listed(local: Path, staging: Path, where: str) -> Path:
    """Copy the downloaded revision's manifest and the files it lists (nothing else) to ``staging/<id>``."""
    path = local / MANIFEST_NAME
    if not path.is_file():
        raise KaiyuanError(f"{where}: it has no {MANIFEST_NAME}: not a kaiyuan artifact, nothing pulled")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        artifact_id, files = data["id"], data["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KaiyuanError(f"{where}: its {MANIFEST_NAME} cannot be read ({exc}): refused") from None
    if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id) or not isinstance(files, dict):
        raise KaiyuanError(f"{where}: its {MANIFEST_NAME} names no valid artifact id: refused")
    folder = staging / artifact_id
    folder.mkdir()
    for name in [*files, MANIFEST_NAME]:
        relative = check_path(name)  # a manifest cannot point outside its folder
        source = local / relative
        if not source.is_file():
            raise KaiyuanError(f"{where}: {relative} is missing: refused")
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / relative)
    return folder


def pull(ref: str, hub_url: str, token: str | None = None, registry: Registry | None = None,
         allow_pickle: bool = False, report: Report | None = None) -> ShareResult:
    """Pull ``namespace/name[@revision]`` and the ancestors the registry lacks; register them all or none."""
    with _hub_errors(hub_url):
        return _pull(ref, hub_url, token, registry, allow_pickle, report)


def _pull(ref: str, hub_url: str, token: str | None, registry: Registry | None, allow_pickle: bool,
          report: Report | None) -> ShareResult:
    from huggingface_hub import snapshot_download

    registry = registry or Registry()
    repo, revision = parse_ref(ref)
    artifacts_dir = registry.artifacts_dir()
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=artifacts_dir))
    fetched: list[tuple[Manifest, Path]] = []
    try:
        def fetch(repo: str, revision: str, expected_id: str | None) -> tuple[Manifest, dict[str, Any], str]:
            where = f"{repo}@{revision}"
            if report:
                report(f"pulling {where}")
            local = Path(snapshot_download(repo, revision=revision, endpoint=hub_url.rstrip("/"), token=token,
                                           cache_dir=staging / "cache"))
            lineage: dict[str, Any] = {}
            for listing in (LINEAGE_FILE, ATTACHED_FILE):
                if (local / listing).is_file():
                    lineage.update(json.loads((local / listing).read_text(encoding="utf-8")))
            folder = _copy_listed(local, staging, where)
            manifest = _verify(folder, expected_id, allow_pickle, where)
            fetched.append((manifest, folder))
            return manifest, lineage, os.path.basename(str(local))

        top, lineage, top_sha = fetch(repo, revision, None)
        found: dict[str, list[Shared]] = {"ancestors": [], "attached": []}
        for key, listed in found.items():
            for entry in lineage.get(key, []):
                shared = Shared(entry["id"], entry["kind"], entry["name"], entry["repo"], entry["revision"])
                shared.skipped = registry.find_id(entry["id"]) is not None
                if not shared.skipped:
                    fetch(entry["repo"], entry["revision"], entry["id"])
                listed.append(shared)
        ancestors = found["ancestors"]
        # everything checked out: move into the registry, ancestors first, then register
        for manifest, folder in [*fetched[1:], fetched[0]]:
            destination = artifacts_dir / manifest.id
            if destination.exists():
                continue
            os.replace(folder, destination)
            registry.add(manifest, destination)
        return ShareResult(Shared(top.id, top.kind, top.name, repo, top_sha), ancestors, found["attached"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def default_hub() -> str:
    """The hub to talk to: $KAIYUAN_HUB, else $HF_ENDPOINT, else a hub on this machine."""
    return os.environ.get("KAIYUAN_HUB") or os.environ.get("HF_ENDPOINT") or "http://127.0.0.1:8080"


def default_token() -> str | None:
    return os.environ.get("KAIYUAN_HUB_TOKEN") or os.environ.get("HF_TOKEN")


@dataclass
class PushConfig:
    model: str = field(metadata={"argument": True, "help": "Registry id or name of the artifact to push."})
    repo: str = field(metadata={"argument": True, "help": "namespace/name on the hub."})
    hub: str | None = field(default=None, metadata={
        "help": "Hub URL (default $KAIYUAN_HUB, else $HF_ENDPOINT, else http://127.0.0.1:8080)."})
    token: str | None = field(default=None, metadata={
        "help": "Write token (default $KAIYUAN_HUB_TOKEN, else $HF_TOKEN)."})
    private: bool = field(default=False, metadata={"flags": ("--private",),
                                                   "help": "New repos are private (need a read token to see)."})


@dataclass
class PullConfig:
    repo: str = field(metadata={"argument": True, "help": "namespace/name[@revision] (a branch, tag or commit)."})
    hub: str | None = field(default=None, metadata={
        "help": "Hub URL (default $KAIYUAN_HUB, else $HF_ENDPOINT, else http://127.0.0.1:8080)."})
    token: str | None = field(default=None, metadata={
        "help": "Read token for private repos (default $KAIYUAN_HUB_TOKEN, else $HF_TOKEN)."})
    allow_pickle: bool = field(default=False, metadata={
        "flags": ("--allow-pickle",), "help": "Pull pickle files (.bin, .pt, …) too: they can run code when loaded."})
