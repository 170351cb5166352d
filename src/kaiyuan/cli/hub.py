"""``kaiyuan models``, ``license``, ``openness``, ``card``, ``reproduce`` and ``verify``: the registry and what it
knows about each model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, echo, err_console, library_chatter_to_stderr, print_json
from kaiyuan.config import did_you_mean
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.card import CardConfig, write_cards
from kaiyuan.hub.licenses import LicenseReport, license_report
from kaiyuan.hub.manifest import KINDS
from kaiyuan.hub.openness import OpennessReport, openness_report
from kaiyuan.hub.registry import Registry, human_size
from kaiyuan.hub.storage import collect_garbage, disk_usage, remove_artifacts, tree_size
from kaiyuan.hub.verify import VerifyConfig, VerifyReport, verify_home
from kaiyuan.models import create_tiny_llama
from kaiyuan.pipeline.reproduce import ArtifactReport, ReproduceConfig, reproduce

models_app = typer.Typer(rich_markup_mode=None, help="Models and artifacts in the registry.", no_args_is_help=True)


def id_column(table: Table, header: str, ids: list[str]) -> None:
    """A column of artifact ids: never wrapped or cut, so each id can be copied from one line at any width."""
    table.add_column(header, no_wrap=True, overflow="ignore", min_width=max([len(header), *map(len, ids)]))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise KaiyuanError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}{did_you_mean(kind, KINDS)}")


@dataclass
class ModelsListConfig:
    kind: str | None = field(default=None, metadata={"help": f"Only this kind: {'|'.join(KINDS)}."})


MODELS_LIST_HELP = ("Artifacts in the registry (models and adapters by default; --kind for others), with their size "
                    "on disk.")


def models_list(cfg: ModelsListConfig, json_output: bool) -> None:
    """``kaiyuan models list`` (see MODELS_LIST_HELP)."""
    kind = cfg.kind
    if kind is not None:
        _check_kind(kind)
    registry = Registry()
    artifacts = registry.list(kind) if kind else [a for a in registry.list() if a.kind in ("model", "adapter")]
    if json_output:
        print_json([a.summary() for a in artifacts])
        return
    table = Table(title=f"registry {registry.path}")
    id_column(table, "id", [a.id for a in artifacts])
    table.add_column("kind", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("license", overflow="fold")
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("created", overflow="fold")
    for a in artifacts:
        table.add_row(a.id, a.kind, a.name, a.license, human_size(tree_size(a.path)),
                      a.created_at.replace("T", " ")[:16])
    console.print(table)


@dataclass
class ModelsShowConfig:
    ref: str = field(metadata={"help": "Artifact id or name.", "argument": True})


MODELS_SHOW_HELP = "An artifact's manifest and its lineage back to base models and datasets."


def models_show(cfg: ModelsShowConfig, json_output: bool) -> None:
    """``kaiyuan models show REF`` (see MODELS_SHOW_HELP)."""
    registry = Registry()
    artifact = registry.get(cfg.ref)
    info = {**artifact.summary(), "manifest": artifact.manifest, "lineage": registry.lineage(artifact.id)}
    if json_output:
        print_json(info)
        return
    echo(f"{artifact.id} {artifact.kind} {artifact.name!r}  license {artifact.license}")
    echo(f"path {artifact.path}\nsha256 {artifact.sha256}\nsource {artifact.manifest.get('source')}")
    if not info["lineage"]:
        echo("lineage: none (made from no registered artifact)")
        return
    table = Table(title="lineage")
    table.add_column("depth", no_wrap=True)
    table.add_column("relation", overflow="fold")
    id_column(table, "id", [node["id"] for node in info["lineage"]])
    for column in ("kind", "name", "license", "sha256"):
        table.add_column(column, overflow="fold")
    for node in info["lineage"]:
        table.add_row(str(node["depth"]), node["relation"], node["id"], node["kind"] or "?", node["name"] or "?",
                      node["license"] or "?", (node["sha256"] or "?")[:16])
    console.print(table)


@dataclass
class CreateTinyConfig:
    template: str = field(default="chatml", metadata={"help": "Chat template: chatml|llama3|zephyr."})
    seed: int = field(default=0, metadata={"help": "Seed for tokenizer corpus and weights."})


CREATE_TINY_HELP = "Create (once) and register a tiny random Llama for tests and quick tries."


def models_create_tiny(cfg: CreateTinyConfig, json_output: bool) -> None:
    """``kaiyuan models create-tiny`` (see CREATE_TINY_HELP)."""
    artifact = create_tiny_llama(template=cfg.template, seed=cfg.seed)
    if json_output:
        print_json(artifact.summary())
    else:
        console.print(f"{artifact.id} ({artifact.name}) at {artifact.path}")


@dataclass
class ModelsDuConfig:
    """``kaiyuan models du`` takes no options but --json (sizes in bytes) and --config."""


MODELS_DU_HELP = ("Disk use of KAIYUAN_HOME: registered artifacts by kind, training runs (runs/: checkpoints and the "
                  "recipe cache), cache/, quarantine/, staging folders, the registry, and the total.")


def models_du(cfg: ModelsDuConfig, json_output: bool) -> None:
    """``kaiyuan models du`` (see MODELS_DU_HELP); --json gives the sizes in bytes."""
    usage = disk_usage()
    if json_output:
        print_json(usage.to_dict())
        return
    table = Table(title=f"disk use of {usage.home}")
    table.add_column("what", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    for kind, entry in usage.kinds.items():
        table.add_row(kind, str(entry["count"]), human_size(entry["bytes"]))
    for what, size in usage.other.items():
        table.add_row(f"{what}/" if what in ("runs", "cache", "quarantine") else what, "", human_size(size))
    table.add_row("[bold]total[/]", "", f"[bold]{human_size(usage.total)}[/]")
    console.print(table)


@dataclass
class ModelsRmConfig:
    refs: list[str] = field(metadata={"help": "Artifacts to remove: registry ids, id prefixes or names.",
                                      "argument": True})
    force: bool = field(default=False, metadata={
        "help": "Remove even artifacts that other registered artifacts were made from (those are left without "
                "that parent).", "flags": ("--force",)})


MODELS_RM_HELP = ("Remove artifacts: their registry rows and folders (a folder registered from outside artifacts/ is "
                  "only un-registered). Refuses an artifact that other registered artifacts were made from, naming "
                  "them, unless --force.")


def models_rm(cfg: ModelsRmConfig, json_output: bool) -> None:
    """``kaiyuan models rm REF...`` (see MODELS_RM_HELP)."""
    removed = remove_artifacts(list(cfg.refs), force=cfg.force)
    if json_output:
        print_json([r.to_dict() for r in removed])
        return
    for r in removed:
        where = "" if r.deleted_folder else f"; its folder {r.path} (outside artifacts/) was left in place"
        echo(f"removed {r.id} ({r.kind} {r.name!r}, {human_size(r.bytes)}){where}")
        if r.orphaned:
            echo(f"  now without their parent {r.id}: {', '.join(r.orphaned)}")


@dataclass
class ModelsGcConfig:
    dry_run: bool = field(default=False, metadata={"help": "Only list what would be removed, with sizes.",
                                                   "flags": ("--dry-run",)})


MODELS_GC_HELP = ("Free disk space: remove the run folders (runs/<stage>-<hash>: checkpoints) of finished runs whose "
                  "artifact is registered, staging leftovers of writers that died, recipe-cache entries of artifacts "
                  "no longer registered and temporary cache folders untouched for a day. Registered artifacts are "
                  "never touched.")


def models_gc(cfg: ModelsGcConfig, json_output: bool) -> None:
    """``kaiyuan models gc`` (see MODELS_GC_HELP)."""
    dry_run = cfg.dry_run
    items = collect_garbage(dry_run=dry_run)
    if json_output:
        print_json({"dry_run": dry_run, "removed" if not dry_run else "would_remove": [i.to_dict() for i in items],
                    "bytes": sum(i.bytes for i in items)})
        return
    verb = "would remove" if dry_run else "removed"
    for item in items:
        echo(f"{verb} {item.path} ({human_size(item.bytes)}): {item.why}")
    echo(f"{verb} {len(items)} item(s), {human_size(sum(i.bytes for i in items))}" if items
         else "nothing to remove")




VERDICT_STYLE = {"yes": "bold green", "no": "bold red", "risk": "bold yellow"}
LEVEL_STYLE = {"blocker": "red", "risk": "yellow", "flag": "cyan"}


@dataclass
class LicenseConfig:
    model: str | None = field(default=None, metadata={
        "help": "A registered artifact (id, prefix or name), a local model folder or .gguf file, or a model of the "
                "catalog (alpaca-7b, meta-llama/Llama-3.1-8B).", "argument": True})
    mot: str | None = field(default=None, metadata={
        "help": "A Model Openness Tool model file (models/*.yml): the terms its release license names, instead of "
                "MODEL."})
    verbose: bool = field(default=False, metadata={
        "help": "The full report: every input in the chain of evidence, with its license terms.",
        "flags": ("--verbose", "-v")})


LICENSE_HELP = ("Derive a model's license terms from its lineage: base models, adapters, merges, quantizations, "
                "datasets, reward / reference models and the models that generated its data. Evaluations and judges "
                "are not inputs. Prints the verdict, the risks (with the inputs that cause them) and the "
                "obligations; --verbose adds every input. An engineering reading of the recorded licenses, not legal "
                "advice.")


def license_command(cfg: LicenseConfig, json_output: bool) -> None:
    """``kaiyuan license MODEL`` (see LICENSE_HELP)."""
    from kaiyuan.hub.catalog_answers import mot_file_subject, resolve_subject, subject_license

    if (cfg.model is None) == (cfg.mot is None):
        raise KaiyuanError("name a MODEL, or a Model Openness Tool file with --mot FILE (one of the two)")
    subject = mot_file_subject(cfg.mot) if cfg.mot is not None else resolve_subject(cfg.model)  # type: ignore[arg-type]
    report = license_report(subject.ref, subject.lineage)
    if json_output:
        print_json(subject_license(subject) if subject.kind != "artifact" else report.to_dict())
        return
    if subject.matched:
        console.print(f"{cfg.model or cfg.mot} {subject.matched}", markup=False, highlight=False)
    print_license_report(report, console, verbose=cfg.verbose)


def _evidence_table(evidence: list[dict]) -> Table:
    table = Table(title="inputs (the chain of evidence)")
    table.add_column("role", overflow="fold")

    def shown(artifact_id: str) -> str:  # a catalog model's data as the model's key (the path names the data)
        return artifact_id.split("#", 1)[0]

    id_column(table, "id", [shown(item["id"]) for item in evidence])
    for column in ("path", "license", "commercial", "share-alike", "open"):
        table.add_column(column, overflow="fold")
    for item in evidence:
        props = item["properties"] or {}
        commercial = {True: "yes", False: "no", None: "?"}[props.get("commercial_use")]
        table.add_row(item["role"] + (f" ({item['via']})" if item["role"] == "data" else ""), shown(item["id"]),
                      Text(item["path_text"]), item["license"] or "missing", commercial,
                      "yes" if props.get("share_alike") else "", "yes" if props.get("open_license") else "")
    return table


def print_license_report(report: LicenseReport, console: Console, verbose: bool = True) -> None:
    style = VERDICT_STYLE[report.verdict]
    console.print(Text.assemble((report.name, "bold"), f" ({report.model_id}, {report.kind})  license ",
                                (report.license, "bold")))
    console.print(f"commercial use: [{style}]{report.verdict}[/]", highlight=False)
    on_risk_paths = {i for risk in report.risks for i in risk.get("path") or []}
    shown = report.evidence if verbose else [e for e in report.evidence if e["id"] in on_risk_paths]
    if shown:
        console.print(_evidence_table(shown))
    if report.risks:
        console.print("[bold]risks[/]")
        for risk in report.risks:
            console.print(Text.assemble("  ", (risk["level"], LEVEL_STYLE[risk["level"]]), f" {risk['message']}"))
            console.print(f"      path: {risk['path_text']}", markup=False, highlight=False)
    if report.obligations:
        console.print("[bold]obligations when you distribute the model or offer it as a service[/]")
        for obligation in report.obligations:
            console.print(f"  • {obligation}", markup=False, highlight=False)
    if report.use_policies:
        console.print("acceptable-use policies: " + "; ".join(report.use_policies), markup=False, highlight=False)
    if report.user_cap:
        console.print(f"user cap: {report.user_cap:,} monthly active users", highlight=False)
    if not verbose:
        console.print(f"[dim]{len(report.evidence)} input(s) checked; --verbose lists them all.[/]", highlight=False)
    console.print("[dim]An engineering reading of the recorded licenses, not legal advice.[/]")


@dataclass
class OpennessConfig:
    model: str | None = field(default=None, metadata={
        "help": "A registered model (id, prefix or name), a local model folder or .gguf file, or a model of the "
                "catalog (alpaca-7b, meta-llama/Llama-3.1-8B-Instruct).", "argument": True})
    mot: str | None = field(default=None, metadata={
        "help": "A Model Openness Tool model file (models/*.yml) to classify as the tool does, instead of MODEL."})


OPENNESS_HELP = ("How open a model is: its Model Openness Framework class (LF AI & Data, arXiv:2403.13784) with the "
                 "missing components and why, the 14-dimension openness index (Liesenfeld & Dingemanse 2024) and the "
                 "Open Source AI Definition 1.0 check — from the manifests and artifact files, and for a model of "
                 "the catalog from the Model Openness Tool (its own classification) and both openness indexes. "
                 "A model made from a catalog base inherits what the catalog knows of it.")


def openness_command(cfg: OpennessConfig, json_output: bool) -> None:
    """``kaiyuan openness MODEL`` (see OPENNESS_HELP)."""
    from kaiyuan.catalog.store import catalog
    from kaiyuan.hub.catalog_answers import mot_file_answer, resolve_subject, subject_openness

    if (cfg.model is None) == (cfg.mot is None):
        raise KaiyuanError("name a MODEL, or a Model Openness Tool file with --mot FILE (one of the two)")
    if cfg.mot is not None:
        answer = mot_file_answer(cfg.mot, catalog().rules)
        if json_output:
            print_json(answer)
        else:
            print_mot_answer(answer)
        return
    subject = resolve_subject(cfg.model)  # type: ignore[arg-type]
    if subject.kind != "artifact":
        answer = subject_openness(subject)
        if json_output:
            print_json(answer)
            return
        from kaiyuan.cli.catalog import print_catalog_openness

        if subject.matched:
            console.print(f"{cfg.model} {subject.matched}", markup=False, highlight=False)
        if subject.kind == "catalog":
            print_catalog_openness(answer)
        else:
            console.print(f"{answer['name']}: {answer['license']['summary']}", markup=False, highlight=False)
            if answer["built_on"]:
                print_catalog_openness(answer["built_on"])
        return
    report = openness_report(subject.ref, subject.lineage)
    if json_output:
        print_json(report.to_dict())
        return
    print_openness_report(report, console)


def print_mot_answer(answer: dict) -> None:
    mof = answer["mof"]
    c = mof["classification"]
    console.print(Text.assemble((answer["model"], "bold"), f" ({answer['producer']}) — {mof['file']}"))
    console.print(f"Model Openness Framework: [bold]{c['label']}[/] (class {c['class']}; progress "
                  + ", ".join(f"{k}: {v:.4g}%" for k, v in sorted(c["progress"].items())) + ")", highlight=False)
    table = Table(title="components, as the Model Openness Tool judges them")
    for column in ("class", "component", "status", "license", "why"):
        table.add_column(column, overflow="fold")
    for comp in mof["components"]:
        table.add_row(str(comp["class"]), comp["name"] + ("" if comp["required"] else " (optional)"), comp["status"],
                      comp["license"] or "", Text(comp["reason"]))
    console.print(table)
    console.print(f"[dim]{answer['disclaimer']}[/]")


def print_openness_report(report: OpennessReport, console: Console) -> None:
    console.print(Text.assemble((report.name, "bold"), f" ({report.model_id}, {report.kind})  license ",
                                (report.license, "bold")))
    reached = report.mof_class or "none (not even Class III)"
    console.print(f"Model Openness Framework: [bold]{reached}[/]", highlight=False)
    for name, step in report.progress.items():
        console.print(f"  {name}: {step['met']} of {step['required']} required components", highlight=False)
    table = Table(title="MOF components")
    for column in ("class", "component", "status", "license", "evidence"):
        table.add_column(column, overflow="fold")
    for c in report.mof_components:
        status = "[green]open[/]" if c["counts"] else "[yellow]not open[/]" if c["present"] else "[red]missing[/]"
        table.add_row(c["class"], c["name"] + ("" if c["required"] else " (optional)"), status, c["license"] or "",
                      Text(c["evidence"]))
    console.print(table)
    index = Table(title=f"openness index: {report.index_score:g} of {report.index_max}")
    for column in ("group", "dimension", "score", "evidence"):
        index.add_column(column, overflow="fold")
    for d in report.index:
        index.add_row(d["group"], d["name"], f"{d['score']:g}", Text(d["evidence"]))
    console.print(index)
    verdict = "[green]passes[/]" if report.osaid["passes"] else "[red]does not pass[/]"
    console.print(f"Open Source AI Definition 1.0: {verdict}")
    for reason in report.osaid["reasons"]:
        console.print(f"  • {reason}", markup=False, highlight=False)
    for note in report.notes:
        console.print(f"[dim]{note}[/]", highlight=False)


CARD_HELP = ("Write Hugging Face cards from the manifests: the model card (license, base model, datasets, tags, a "
             "model-index of every registered evaluation; lineage, license verdict, openness grade, how it was made) "
             "and a data card for each dataset. Each card is registered as its own artifact (kind card) linked to "
             "what it documents, which is how `kaiyuan openness` finds it.")


def card_command(cfg: CardConfig, json_output: bool) -> None:
    """``kaiyuan card MODEL`` (see CARD_HELP); --json prints the card paths and their metadata."""
    cards = write_cards(cfg.model, out=Path(cfg.out) if cfg.out is not None else None)
    if json_output:
        print_json(cards.to_dict())
        return
    for written in ([cards.model] if cards.model else []) + cards.data:
        what = "data card" if written.documents.kind == "dataset" else "model card"
        console.print(f"{what} for {written.documents.name} ({written.documents.id}): {written.card.id}",
                      markup=False, highlight=False)
        console.print(f"    {written.out or written.path}", markup=False, highlight=False)
    for warning in cards.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False, style="yellow")


STATUS_STYLE = {"identical": "green", "input": "cyan", "differs": "red", "cannot reproduce": "yellow"}


REPRODUCE_HELP = ("Re-run every stage that led to MODEL, from its manifests, in a fresh KAIYUAN_HOME; inputs from "
                  "outside (hub models, local dirs, data files) are copied in after checking their sha256. Every "
                  "file's sha256 is then compared with the original's. Exit code 0: all identical; 1: something "
                  "differs or cannot be reproduced.")


def reproduce_command(cfg: ReproduceConfig, json_output: bool) -> None:
    """``kaiyuan reproduce MODEL`` (see REPRODUCE_HELP)."""
    model, home = cfg.model, Path(cfg.home) if cfg.home is not None else None

    def announce(report: ArtifactReport) -> None:
        err_console.print(f"{report.id}: {report.status}", markup=False, highlight=False)

    with library_chatter_to_stderr():
        report = reproduce(model, home=home, on_artifact=announce)
    if json_output:
        print_json(report.to_dict())
    else:
        table = Table(title=f"reproduce {report.target}" + (f" into {report.home}" if report.home else ""))
        for column in ("artifact", "kind", "name", "made by", "status", "details"):
            table.add_column(column, overflow="fold")
        for artifact in report.artifacts:
            details = [f"{d.path}: {d.problem}" for d in artifact.differences]
            details += [artifact.reason] if artifact.reason else []
            details += [f"missing: {', '.join(artifact.missing)}"] if artifact.missing else []
            details += [f"{name} {change}" for name, change in artifact.library_changes.items()]
            style = STATUS_STYLE.get(artifact.status, "")
            table.add_row(artifact.id, artifact.kind or "?", artifact.name or "?", artifact.how,
                          f"[{style}]{artifact.status}[/]", "\n".join(details))
        console.print(table)
        console.print(f"{'identical' if report.ok else 'NOT reproduced'} in {report.seconds:.1f}s")
    if not report.ok:
        raise typer.Exit(1)


VERIFY_HELP = ("Check KAIYUAN_HOME: every artifact file's sha256 against its manifest (changed, missing, extra "
               "files), the registry against the artifact folders, staging leftovers of killed writers, interrupted "
               "training checkpoints, and parents that are neither registered nor on disk. Prints \"clean\", or "
               "each problem and what --repair does about it. Exit code 0: clean (or everything repaired); 1: "
               "problems remain.")


def verify_command(cfg: VerifyConfig, json_output: bool) -> None:
    """``kaiyuan verify`` (see VERIFY_HELP)."""
    report = verify_home(repair=cfg.repair)
    if json_output:
        print_json(report.to_dict())
    else:
        _print(report)
    if not report.clean:
        raise typer.Exit(1)


def _print(report: VerifyReport) -> None:
    out = echo
    for finding in report.findings:
        out(finding.line())
        if finding.repaired:
            out(f"  repaired: {finding.repair}")
        elif finding.repair_error:
            out(f"  NOT repaired ({finding.repair_error}): {finding.repair}")
        elif finding.repair is None:
            out("  --repair cannot fix this")
        else:
            out(f"  --repair would: {finding.repair}")
    checked = (f"{report.artifacts} artifact(s), {report.files_hashed} file(s), {human_size(report.bytes_hashed)} "
               f"checked in {report.home}")
    problems = len(report.findings)
    if not problems:
        out(f"clean: {checked}")
    elif report.repair:
        repaired, remaining = problems - len(report.remaining), len(report.remaining)
        out(f"{problems} problem(s), {repaired} repaired, " + (f"{remaining} remain" if remaining else "now clean")
            + f": {checked}")
    else:
        fixable = sum(f.repair is not None for f in report.findings)
        out(f"{problems} problem(s): {checked}; `kaiyuan verify --repair` fixes {fixable} of them")
    for note in report.notes:
        out(f"note: {note}")


command_from_config(models_app, "list", ModelsListConfig, models_list, help=MODELS_LIST_HELP,
                    json_help="Print JSON.")
command_from_config(models_app, "show", ModelsShowConfig, models_show, help=MODELS_SHOW_HELP,
                    json_help="Print JSON.")
command_from_config(models_app, "create-tiny", CreateTinyConfig, models_create_tiny, help=CREATE_TINY_HELP,
                    json_help="Print JSON.")
command_from_config(models_app, "du", ModelsDuConfig, models_du, help=MODELS_DU_HELP,
                    json_help="Print JSON (bytes).")
command_from_config(models_app, "rm", ModelsRmConfig, models_rm, help=MODELS_RM_HELP,
                    json_help="Print JSON.")
command_from_config(models_app, "gc", ModelsGcConfig, models_gc, help=MODELS_GC_HELP,
                    json_help="Print JSON.")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    command_from_config(app, "license", LicenseConfig, license_command, help=LICENSE_HELP,
                        json_help="Print the report as JSON.")
    command_from_config(app, "openness", OpennessConfig, openness_command, help=OPENNESS_HELP,
                        json_help="Print the report as JSON.")
    command_from_config(app, "card", CardConfig, card_command, help=CARD_HELP,
                        json_help="Print the card paths and their metadata as JSON.")
    command_from_config(app, "reproduce", ReproduceConfig, reproduce_command, help=REPRODUCE_HELP,
                        json_help="Print a JSON report.")
    command_from_config(app, "verify", VerifyConfig, verify_command, help=VERIFY_HELP,
                        json_help="Print a JSON report.")
