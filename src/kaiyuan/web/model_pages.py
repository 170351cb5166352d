"""``/models``: the registry as pages.

* ``GET /models`` — every registered artifact as a table (name, kind, id, license, created, parents), newest
  first, with a filter by kind (``?kind=model``).
* ``GET /models/{id}`` — one artifact (an id; a name or id prefix redirects to its id): its lineage as an SVG graph
  (:mod:`kaiyuan.web.lineage_svg`), the license verdict with its chain of evidence and obligations
  (:func:`kaiyuan.hub.licenses.license_report`), the openness grade — MOF class, progress towards each class with
  the missing components and why, the openness index with its evidence, OSAID — (:func:`kaiyuan.hub.openness.
  openness_report`), its model card (the registered one, :func:`kaiyuan.hub.openness.card_of`, else a preview of
  what ``kaiyuan card`` would write), its evaluations (score, n, a link to compare), and downloads of its files and
  of its exports' files.
* ``GET /models/{id}/files/{path}`` — one file of an artifact, as a download: only files its manifest lists, only
  inside its folder (``../`` or a link out of it: 404).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.card import eval_result, evaluations, render_data_card, render_model_card
from kaiyuan.hub.known_models import with_catalog
from kaiyuan.hub.licenses import LicenseReport, license_report
from kaiyuan.hub.manifest import KINDS
from kaiyuan.hub.openness import CARD_FILE, OpennessReport, card_of, openness_report
from kaiyuan.hub.registry import Artifact, Registry, human_size
from kaiyuan.web.catalog_pages import known_to_catalog
from kaiyuan.web.compare import compare_url, eval_groups, has_predictions, primary_metric
from kaiyuan.web.context import current_user, ui_state
from kaiyuan.web.lineage_svg import lineage_svg
from kaiyuan.web.render import error_page, page

router = APIRouter(include_in_schema=False)

OPENNESS_KINDS = ("model", "adapter", "export")
VERDICT_PILL = {"yes": "good", "no": "bad", "risk": "warn"}
RISK_PILL = {"blocker": "bad", "risk": "warn", "flag": ""}


def _registry(request: Request) -> Registry:
    return Registry(ui_state(request).home)


def _not_found(request: Request, ref: str, registry: Registry) -> Response:
    return error_page(request, 404, "No such artifact", f"There is no artifact {ref!r} in the registry "
                                                        f"{registry.path} (see the Models page).")


# ------------------------------------------------------------------------------------------------ the list


@dataclass
class ParentLink:
    id: str
    name: str | None  # None: not in the registry
    relation: str


@dataclass
class ArtifactRow:
    artifact: Artifact
    parents: list[ParentLink]
    created: str


def created(artifact: Artifact) -> str:
    """``2026-01-02T03:04:05+00:00`` as ``2026-01-02 03:04 UTC``."""
    try:
        return datetime.fromisoformat(artifact.created_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return artifact.created_at


def artifact_rows(artifacts: list[Artifact], names: dict[str, str]) -> list[ArtifactRow]:
    """The table's rows, newest first, each with its parents named (``names``: id → name of every artifact)."""
    return [ArtifactRow(a, [ParentLink(p["id"], names.get(p["id"]), p["relation"])
                            for p in a.manifest.get("parents") or []], created(a)) for a in reversed(artifacts)]


@router.get("/models")
def models_page(request: Request, kind: str = "", user: str = Depends(current_user)) -> Response:
    """The registry as a table, newest first; ``?kind=`` keeps one kind of artifact."""
    everything = _registry(request).list()
    counts = Counter(a.kind for a in everything)
    kinds = [(k, counts[k]) for k in KINDS if counts[k]] + [(k, n) for k, n in sorted(counts.items()) if k not in KINDS]
    shown = [a for a in everything if not kind or a.kind == kind]
    return page(request, "models.html", active="models", rows=artifact_rows(shown, {a.id: a.name for a in everything}),
                kinds=kinds, kind=kind, total=len(everything))


# ------------------------------------------------------------------------------------------------ one artifact


@dataclass
class FileRow:
    name: str
    size: str
    url: str


@dataclass
class EvalRow:
    evaluation: Artifact
    task: str
    dataset: str
    metric: str
    value: float | None
    n: Any
    compare_url: str | None


@dataclass
class CardView:
    body: str  # markdown, rendered with |markdown
    metadata: str  # the YAML block, shown as text
    card_id: str | None  # the registered card; None: a preview of what `kaiyuan card` would write


def artifact_files(artifact: Artifact) -> list[FileRow]:
    """The files its manifest lists, with their size on disk and download link."""
    rows = []
    for name in sorted(artifact.manifest.get("files") or {}):
        path = artifact.path / name
        size = human_size(path.stat().st_size) if path.is_file() else "missing"
        rows.append(FileRow(name, size, f"/models/{artifact.id}/files/{quote(name)}"))
    return rows


def exports_of(artifact: Artifact, registry: Registry) -> list[tuple[Artifact, list[FileRow]]]:
    """The export artifacts made from it (GGUF, Ollama), each with its files."""
    return [(export, artifact_files(export)) for export in registry.children(artifact.id, kind="export")]


def eval_rows(artifact: Artifact, registry: Registry) -> list[EvalRow]:
    """Its evaluations: the score each recorded, n, and a link comparing it with the other models evaluated on the
    same data (when there are any)."""
    groups = eval_groups(registry)
    rows = []
    for evaluation in evaluations(artifact, registry):
        result = eval_result(evaluation, artifact, registry) or {}
        metric, value = primary_metric(evaluation)
        group = next((g for g in groups if any(e.id == evaluation.id for e in g.evals)), None)
        others = [e for e in group.evals if e.id != evaluation.id] if group else []
        url = compare_url([evaluation, *others]) if has_predictions(evaluation) and others else None
        rows.append(EvalRow(evaluation, str((result.get("task") or {}).get("name", evaluation.name)),
                            str((result.get("dataset") or {}).get("name", "")), metric, value,
                            (evaluation.manifest.get("metrics") or {}).get("n"), url))
    return rows


def split_front_matter(text: str) -> tuple[str, str]:
    """(YAML metadata, markdown body) of a card's README."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end >= 0:
            return text[4:end + 1], text[end + 5:]
    return "", text


def card_view(artifact: Artifact, registry: Registry) -> CardView | None:
    """The registered card of the artifact, else a preview of the card ``kaiyuan card`` would write for it."""
    card = card_of(artifact, registry)
    if card is not None:
        try:
            text = (card.path / CARD_FILE).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return CardView(f"The card {card.id} cannot be read: {exc}", "", card.id)
        metadata, body = split_front_matter(text)
        return CardView(body, metadata, card.id)
    try:
        if artifact.kind in OPENNESS_KINDS:
            rendered = render_model_card(artifact, registry)
        elif artifact.kind == "dataset":
            rendered = render_data_card(artifact, registry)
        else:
            return None
    except KaiyuanError:
        return None
    metadata, body = split_front_matter(rendered.text)
    return CardView(body, metadata, None)


def openness_of(artifact: Artifact, registry: Registry) -> tuple[OpennessReport | None, str]:
    """The openness report, or why there is none (it is assessed for models, adapters and exports)."""
    if artifact.kind not in OPENNESS_KINDS:
        return None, f"Openness is assessed for models, adapters and exports; this is a {artifact.kind}."
    try:
        return openness_report(artifact.id, registry), ""
    except KaiyuanError as exc:
        return None, str(exc)


def license_of(artifact: Artifact, registry: Registry) -> tuple[LicenseReport | None, str]:
    try:
        return license_report(artifact.id, with_catalog(registry)), ""
    except KaiyuanError as exc:
        return None, str(exc)


@router.get("/models/{artifact_id}")
def model_page(request: Request, artifact_id: str, user: str = Depends(current_user)) -> Response:
    """One artifact: lineage graph, license verdict, openness, card, evaluations and downloads."""
    registry = _registry(request)
    artifact = registry.find(artifact_id)
    if artifact is None:
        return _not_found(request, artifact_id, registry)
    if artifact.id != artifact_id:
        return RedirectResponse(f"/models/{artifact.id}", status_code=303)
    licensed, license_problem = license_of(artifact, registry)
    openness, openness_note = openness_of(artifact, registry)
    return page(request, "model.html", active="models", artifact=artifact, created=created(artifact),
                lineage=lineage_svg(artifact, registry), known=known_to_catalog(artifact, registry),
                license=licensed, license_problem=license_problem,
                verdict_pill=VERDICT_PILL, risk_pill=RISK_PILL,
                openness=openness, openness_note=openness_note, card=card_view(artifact, registry),
                evaluations=eval_rows(artifact, registry), files=artifact_files(artifact),
                exports=exports_of(artifact, registry), compare_url=_own_compare_url(artifact, registry))


def _own_compare_url(artifact: Artifact, registry: Registry) -> str | None:
    """For an eval artifact: the comparison with the other evaluations of its data."""
    if not has_predictions(artifact):
        return None
    group = next((g for g in eval_groups(registry) if any(e.id == artifact.id for e in g.evals)), None)
    return compare_url(group.evals) if group and len(group.evals) > 1 else None


# ------------------------------------------------------------------------------------------------ downloads


def artifact_file(artifact: Artifact, name: str) -> Path | None:
    """The file ``name`` of an artifact when its manifest lists it and it lies inside the artifact's folder (after
    resolving ``..`` and links); else None."""
    if name not in (artifact.manifest.get("files") or {}):
        return None
    root = artifact.path.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


@router.get("/models/{artifact_id}/files/{path:path}")
def download(request: Request, artifact_id: str, path: str, user: str = Depends(current_user)) -> Response:
    """A file of a registered artifact, as a download (``application/octet-stream``: never rendered or run as a page
    or script of this site); 404 for anything its manifest does not list or that leads out of its folder."""
    registry = _registry(request)
    artifact = registry.find_id(artifact_id)
    if artifact is None:
        return _not_found(request, artifact_id, registry)
    target = artifact_file(artifact, path)
    if target is None:
        return error_page(request, 404, "No such file", f"{artifact.name} ({artifact.id}) has no file {path!r}.")
    return FileResponse(target, media_type="application/octet-stream", filename=PurePosixPath(path).name)
