"""``kaiyuan catalog list|show|search|import``: the world's well-known models — how open they are and what their
licenses allow — from kaiyuan's records joined with three published catalogs (:mod:`kaiyuan.catalog`).
Verdicts are engineering readings of recorded licenses, not legal advice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, echo, err_console, print_json

catalog_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                          help="The catalog of well-known open models: openness and license answers with sources.")

NOT_ADVICE = "An engineering reading of recorded licenses and published catalogs, not legal advice."
VERDICT = {"yes": "[green]yes[/]", "risk": "[yellow]risk[/]", "no": "[red]no[/]"}


@dataclass
class CatalogSearchConfig:
    query: str | None = field(default=None, metadata={
        "argument": True, "help": "Part of the key, name, producer or a Hugging Face id (default: all)."})
    commercial: bool = field(default=False, metadata={
        "flags": ("--commercial",), "help": "Only models whose license verdict allows commercial use (yes)."})
    open_data: bool = field(default=False, metadata={
        "flags": ("--open-data",), "help": "Only models whose training data is open."})
    max_params: float | None = field(default=None, metadata={"help": "Only models of at most this many "
                                                                     "parameters (e.g. 8e9)."})
    mof_class: str | None = field(default=None, metadata={
        "help": "Only models the Model Openness Tool puts at least this open: I, II or III (II keeps II and I)."})
    curated: bool = field(default=False, metadata={
        "flags": ("--curated",), "help": "Only models kaiyuan's own records describe (with lineage)."})
    plot: str | None = field(default=None, metadata={
        "help": "Also write a PNG here: openness vs size, coloured by commercial use."})


@dataclass
class CatalogListConfig:
    plot: str | None = field(default=None, metadata={
        "help": "Also write a PNG here: openness vs size, coloured by commercial use."})
    all: bool = field(default=False, metadata={
        "flags": ("--all",), "help": "Every catalog record, not only the models kaiyuan's records describe."})


@dataclass
class CatalogShowConfig:
    model: str = field(metadata={"argument": True, "help": "Catalog key, alias, Hugging Face id or name."})


@dataclass
class CatalogImportConfig:
    directory: str = field(metadata={"argument": True, "help": "A copy of the catalog (its repository's folder)."})
    format: Literal["mot", "opening-up", "osai-index"] = field(metadata={
        "help": "mot: the Model Openness Tool (models/, rules/); opening-up: Opening up ChatGPT (projects/); "
                "osai-index: the European Open Source AI Index (systems/)."})
    into_package: bool = field(default=False, metadata={
        "flags": ("--into-package",), "help": "Replace the copy shipped in the package (for kaiyuan's "
                                              "developers) instead of this home's."})


def _rows_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("model", "params", "commercial", "license", "MOF", "openness", "open data", "catalogs"):
        table.add_column(column, overflow="fold")
    for r in rows:
        params = f"{r['parameters'] / 1e9:.3g}B" if r["parameters"] else "?"
        openness = f"{r['openness']:.0%} ({r['openness_index']})" if r["openness"] is not None else ""
        table.add_row(Text(f"{r['name']}\n{r['key']}"), params, VERDICT[r["commercial"]], r["license"] or "?",
                      (r["mof_label"] or "").replace(" Model", ""), openness, "yes" if r["open_data"] else "",
                      ", ".join(r["catalogs"]) or "kaiyuan")
    return table


def _finish(rows: list[dict[str, Any]], plot: str | None, json_output: bool, title: str) -> None:
    if plot:
        from kaiyuan.hub.catalog_answers import plot_catalog

        err_console.print(f"plot: {plot_catalog(rows, plot)}", markup=False, highlight=False)
    if json_output:
        print_json(rows)
        return
    console.print(_rows_table(rows, title))
    console.print(f"[dim]{NOT_ADVICE}[/]")


def catalog_search(cfg: CatalogSearchConfig, json_output: bool) -> None:
    from kaiyuan.catalog.store import catalog
    from kaiyuan.hub.catalog_answers import search_catalog

    rows = search_catalog(catalog(), cfg.query or "", cfg.commercial, cfg.open_data, cfg.max_params, cfg.mof_class,
                          cfg.curated)
    _finish(rows, cfg.plot, json_output, f"catalog search: {len(rows)} model(s)")


def catalog_list(cfg: CatalogListConfig, json_output: bool) -> None:
    from kaiyuan.catalog.store import catalog
    from kaiyuan.hub.catalog_answers import search_catalog

    rows = search_catalog(catalog(), curated_only=not cfg.all)
    _finish(rows, cfg.plot, json_output, f"catalog: {len(rows)} model(s)" + ("" if cfg.all else
                                                                            " (--all: every catalog record)"))


def catalog_show(cfg: CatalogShowConfig, json_output: bool) -> None:
    from kaiyuan.catalog.store import catalog
    from kaiyuan.hub.catalog_answers import catalog_openness

    known = catalog()
    answer = catalog_openness(known.get(cfg.model), known)
    if json_output:
        print_json(answer)
        return
    print_catalog_openness(answer)


def print_catalog_openness(answer: dict[str, Any]) -> None:
    """A catalog model's openness and license answer, line by line with its evidence."""
    params = f", {answer['parameters'] / 1e9:.3g}B parameters" if answer["parameters"] else ""
    console.print(Text.assemble((answer["name"], "bold"), f" ({answer['model']}; {answer['producer'] or '?'}, "
                                f"{answer['released'] or '?'}{params})"))
    license = answer["license"]
    console.print(f"commercial use: {VERDICT[license['verdict']]} — weights {license['weights'] or '?'}",
                  highlight=False)
    console.print(f"  {license['summary']}", markup=False, highlight=False)
    mof = answer["mof"]
    if mof:
        c = mof["classification"]
        progress = ", ".join(f"Class {'I' * int(k) if k != '3' else 'III'} {v:.4g}%" for k, v in
                             sorted(c["progress"].items()))
        console.print(f"Model Openness Framework: [bold]{c['label']}[/] ({progress}) — Model Openness Tool, "
                      f"{mof['url']}", highlight=False)
        for comp in mof["components"]:
            if comp["required"] and not comp["counted"]:
                console.print(f"  not met: Class {comp['class']} {comp['name']}: {comp['reason']}", markup=False,
                              highlight=False)
    else:
        console.print("Model Openness Framework: the Model Openness Tool has no file for this model")
    for name, index in answer["openness_index"].items():
        used = " (used)" if name == answer["index_used"] else ""
        console.print(f"{index['catalog']}{used}: {index['score']:g} of {index['max']} — {index['url']}",
                      highlight=False)
        for dim in index["dimensions"].values():
            console.print(f"  {dim['name']}: {dim['rating'] or 'not assessed'}"
                          + (f" — {dim['link']}" if dim["link"] else ""), markup=False, highlight=False)
    console.print(f"index used: {answer['index_why']}", markup=False, highlight=False)
    verdict = "[green]passes[/]" if answer["osaid"]["passes"] else "[red]does not pass[/]"
    console.print(f"Open Source AI Definition 1.0: {verdict}", highlight=False)
    for check in answer["osaid"]["checks"]:
        console.print(f"  {'✓' if check['met'] else '✗'} {check['requirement']}: {check['evidence']}", markup=False,
                      highlight=False)
    for item in answer["tuning_data"]:
        made = f", generated by {item['generated_by']}" if item.get("generated_by") else ""
        console.print(f"tuned on: {item.get('name')} ({item.get('license')}{made}) — {item.get('source')}",
                      markup=False, highlight=False)
    for item in answer["pretraining_data"]:
        console.print(f"pretrained on: {item.get('name')} ({item.get('license')}) — {item.get('source')}",
                      markup=False, highlight=False)
    for claim in answer["claims"]:
        source = claim["source"]
        console.print(f"claim {claim['field']} = {claim['value']} [{source['catalog']}: {source['url'] or ''}]",
                      markup=False, highlight=False)
    for d in answer["disagreements"]:
        console.print(f"the catalogs disagree on {d['field']}: {d['readings']}; used {d['used']} from "
                      f"{d['used_from']} ({d['why']})", markup=False, highlight=False)
    console.print(f"[dim]{NOT_ADVICE}[/]")


def catalog_import(cfg: CatalogImportConfig, json_output: bool) -> None:
    from kaiyuan.catalog.imported import import_catalog
    from kaiyuan.catalog.store import forget_cached_catalog

    imported, changes, path = import_catalog(cfg.directory, cfg.format, into_package=cfg.into_package)
    forget_cached_catalog()
    if json_output:
        print_json({"format": cfg.format, "records": len(imported.records), "written": str(path),
                    "warnings": imported.warnings, "changes": changes.to_dict()})
        return
    for warning in imported.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    echo(f"{imported.name}: {len(imported.records)} records read from {cfg.directory} → {path}")
    if not changes.any:
        echo("no change against the copy in use before")
    for key in changes.added:
        echo(f"added: {key}")
    for key in changes.removed:
        echo(f"removed: {key}")
    for key, fields in changes.changed.items():
        echo(f"changed: {key} ({', '.join(fields)})")
    if changes.rules_changed:
        echo("changed: the Model Openness Tool's rules (components or license lists)")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
    command_from_config(catalog_app, "list", CatalogListConfig, catalog_list,
                        help="The models kaiyuan's records describe (--all: every catalog record), most open first.",
                        json_help="Print JSON rows.")
    command_from_config(catalog_app, "show", CatalogShowConfig, catalog_show,
                        help="One model: MOF class (as the Model Openness Tool computes it), both openness indexes, "
                             "the Open Source AI Definition check, the license verdict — each line with its source.",
                        json_help="Print the answer as JSON.")
    command_from_config(catalog_app, "search", CatalogSearchConfig, catalog_search,
                        help="Which models may we fine-tune and sell, with open training data, that fit our GPU? "
                             "e.g. search --commercial --open-data --max-params 8e9 --mof-class II.",
                        json_help="Print JSON rows.")
    command_from_config(catalog_app, "import", CatalogImportConfig, catalog_import,
                        help="Re-import a newer copy of a published catalog (into this home; it then takes the "
                             "shipped copy's place) and report what changed.",
                        json_help="Print what was read and what changed as JSON.")
