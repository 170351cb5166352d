"""``kaiyuan hub serve|token|verify|gc|search``: the team hub — a self-hosted server that Hugging Face clients
(``HF_ENDPOINT=…``) download models and datasets from and push them to.

Their flags are the fields of the dataclasses in :mod:`kaiyuan.teamhub.config`; where each hub keeps its blobs and
metadata is :class:`kaiyuan.teamhub.config.HubLocation`.
"""

from __future__ import annotations

import socket
import time

import typer
from rich.table import Table

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, echo, err_console, print_json
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.config import check_port_free, is_loopback
from kaiyuan.teamhub.config import (
    HubGcConfig,
    HubSearchConfig,
    HubServeConfig,
    HubTokenCreateConfig,
    HubTokenListConfig,
    HubTokenRmConfig,
    HubVerifyConfig,
    url_host,
)
from kaiyuan.teamhub.names import check_part

hub_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                      help="The team hub: a self-hosted Hugging Face-compatible hub for models and datasets "
                           "(clients use it with HF_ENDPOINT=http://HOST:PORT).")
token_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                        help="Access tokens of the hub (HF_TOKEN for its clients; only their hashes are stored).")

SERVE_HELP = ("Serve the hub until SIGTERM: the Hugging Face Hub's download and upload routes (snapshot_download, "
              "from_pretrained, upload_folder, create_repo) over one blob store and one metadata database "
              "(SQLite in --storage by default, PostgreSQL with --database). Public repos are readable by anyone "
              "who can reach it; private repos and every write need a token (`kaiyuan hub token create`). Pages at "
              "/: the repos, searchable, and each one's card, files, lineage, license verdict and openness (sign in "
              "with a token to see private ones).")
CREATE_HELP = ("Create a token and print it once (on stdout: TOKEN=$(kaiyuan hub token create …)); only its "
                     "sha256 is stored, so it cannot be shown again.")
VERIFY_HELP = ("Re-hash every blob of the hub and check that every file of every revision has its blob; names each "
               "corrupt or missing one by repo, revision and path. Exits 1 when anything is wrong.")


# -- serve -------------------------------------------------------------------------------------------------


def client_endpoint(cfg: HubServeConfig) -> str:
    """The HF_ENDPOINT clients should use: the bound address, or this machine's name when bound to all of them."""
    host = socket.gethostname() if cfg.host in ("0.0.0.0", "::", "") else cfg.host  # nosec B104: names, not a bind
    return f"http://{url_host(host)}:{cfg.port}"


def run_hub_serve(cfg: HubServeConfig, json_output: bool = False) -> None:
    """Serve the hub of ``cfg`` until SIGTERM / SIGINT."""
    if not 1 <= cfg.port <= 65535:
        raise KaiyuanError(f"--port {cfg.port}: expected 1–65535")
    if cfg.max_file_bytes < 1:
        raise KaiyuanError("--max-file-bytes must be at least 1")
    location = cfg.location()
    url = location.database_url()
    check_port_free(cfg.host, cfg.port)
    import sqlalchemy as sa
    import uvicorn

    from kaiyuan.teamhub.app import create_hub_app  # heavy: fastapi, sqlalchemy

    try:
        app = create_hub_app(location.storage_dir(), url, max_file_bytes=cfg.max_file_bytes)
    except (sa.exc.SQLAlchemyError, ValueError) as exc:  # ValueError: a URL that does not parse (its port)
        raise location.cannot_open(exc) from exc  # the URL masked, the driver's reason scrubbed of the password
    from kaiyuan.web.hub_pages import mount_hub_pages  # the hub's web pages, at /
    mount_hub_pages(app)
    loopback = is_loopback(cfg.host)
    exposure = "" if loopback else "; reachable beyond this machine: private repos and writes need a token"
    err_console.print(f"hub at {cfg.url()} (storage {location.storage_dir()}, database {location.database_kind()}"
                      f"{exposure})", markup=False, highlight=False, soft_wrap=True)
    err_console.print(f"clients: export HF_ENDPOINT={client_endpoint(cfg)}", markup=False, highlight=False,
                      soft_wrap=True)
    if json_output:
        print_json({"url": cfg.url(), "endpoint": client_endpoint(cfg), "loopback": loopback,
                    **location.describe()})
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")


# -- tokens ------------------------------------------------------------------------------------------------


def token_create(cfg: HubTokenCreateConfig, json_output: bool) -> None:
    if cfg.namespace is not None:
        check_part(cfg.namespace, "--namespace")
    if not cfg.name.strip() or len(cfg.name) > 96:
        raise KaiyuanError("the token's name: expected 1–96 characters")
    token = cfg.location().open_db().create_token(cfg.name, cfg.scope, cfg.namespace)
    if json_output:
        print_json({"name": cfg.name, "scope": cfg.scope, "namespace": cfg.namespace, "token": token})
        return
    echo(token)
    where = f"namespace {cfg.namespace}" if cfg.namespace else "every namespace"
    err_console.print(f"token {cfg.name!r} ({cfg.scope}, {where}): shown once, only its hash is kept — clients use "
                      "it as HF_TOKEN", markup=False, highlight=False, soft_wrap=True)


def token_list(cfg: HubTokenListConfig, json_output: bool) -> None:
    listed = cfg.location().open_db().list_tokens()
    if json_output:
        print_json(listed)
        return
    table = Table(title="hub tokens")
    for column in ("name", "scope", "namespace", "created"):
        table.add_column(column, no_wrap=True)
    for token in listed:
        table.add_row(str(token["name"]), str(token["scope"]), str(token["namespace"] or "(all)"),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(float(token["created_at"]))))  # type: ignore[arg-type]
    console.print(table)


def token_rm(cfg: HubTokenRmConfig, json_output: bool) -> None:
    cfg.location().open_db().remove_token(cfg.name)
    if json_output:
        print_json({"removed": cfg.name})
    else:
        console.print(f"removed token {cfg.name} (it no longer works)", markup=False, highlight=False)


# -- verify ------------------------------------------------------------------------------------------------


def hub_verify(cfg: HubVerifyConfig, json_output: bool) -> None:
    from kaiyuan.teamhub.verify import verify_hub  # heavy: sqlalchemy

    report = verify_hub(cfg.location())
    if json_output:
        print_json(report)
    else:
        for p in report["problems"]:
            named = f" ({', '.join(p['refs'])})" if p["refs"] else ""
            why = "no longer matches its sha256" if p["problem"] == "corrupt" else "is not in the blob store"
            echo(f"{p['problem']}: {p['repo']}@{p['revision']}{named} {p['path']}: blob {p['blob']} {why}")
        for oid in report["corrupt_unreferenced"]:
            echo(f"corrupt: blob {oid} (used by no revision) no longer matches its sha256")
        checked = f"{report['blobs']} blob(s) and {report['revisions']} revision(s) checked in {report['storage']}"
        wrong = len(report["problems"]) + len(report["corrupt_unreferenced"])
        echo(f"clean: {checked}" if report["ok"] else f"{wrong} problem(s): {checked}")
    if not report["ok"]:
        raise typer.Exit(1)


# -- gc ----------------------------------------------------------------------------------------------------

GC_HELP = ("Remove the blobs no revision of any repo holds (a deleted repo's that no other repo shares, LFS uploads "
           "whose commit never came) and the partial uploads, once older than --grace-seconds: a push in flight is "
           "never collected. Deleting a repo frees its bytes only here. --dry-run reports what it would free.")


def hub_gc(cfg: HubGcConfig, json_output: bool) -> None:
    from kaiyuan.teamhub.gc import collect_garbage  # heavy: sqlalchemy, fastapi

    report = collect_garbage(cfg.location(), cfg.grace_seconds, cfg.dry_run)
    if json_output:
        print_json(report)
        return
    verb = "would remove" if report["dry_run"] else "removed"
    for blob in report["removed"]:
        echo(f"{verb} blob {blob['name']} ({blob['size']} bytes, used by no revision)")
    for partial in report["removed_partial"]:
        echo(f"{verb} partial upload {partial['name']} ({partial['size']} bytes)")
    blobs, partial = report["blobs"], report["partial"]
    freed = "would free" if report["dry_run"] else "freed"
    echo(f"{verb} {blobs['removed']} blob(s) and {partial['removed']} partial upload(s): {freed} "
         f"{report['bytes']} bytes; kept {blobs['in_use']} blob(s) in use and {blobs['in_grace']} unused one(s) "
         f"younger than {cfg.grace_seconds:g} s, in {report['storage']}")


# -- search ------------------------------------------------------------------------------------------------

SEARCH_HELP = ("Find the hub's artifacts (each repo's main, as its manifest.json describes it) by name, license, "
               "openness and task. Reads the database directly, so private repos are listed too (marked).")


def hub_search(cfg: HubSearchConfig, json_output: bool) -> None:
    from kaiyuan.teamhub.search import CLASS_NAMES, card_dict, parse_mof_class  # heavy: fastapi, sqlalchemy

    db = cfg.location().open_db()
    cards = db.search(cfg.query or "", cfg.license_allows, parse_mof_class(cfg.min_mof_class), cfg.task)
    db.engine.dispose()
    if json_output:
        print_json([card_dict(c) for c in cards])
        return
    table = Table(title=f"hub search: {len(cards)} repo(s)")
    for column in ("repo", "kind", "name", "license", "commercial", "MOF", "task"):
        table.add_column(column, no_wrap=True)
    for c in cards:
        commercial = "?" if c.commercial is None else "yes" if c.commercial else "no"
        table.add_row(f"{c.repo_id}{' (private)' if c.private else ''}", c.kind, c.name, c.license, commercial,
                      CLASS_NAMES.get(c.mof_class or 0, "?"), c.task or "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
    hub_app.add_typer(token_app, name="token")
    command_from_config(hub_app, "serve", HubServeConfig, run_hub_serve, help=SERVE_HELP,
                        json_help="Also print the hub's address and storage as JSON on stdout.")
    command_from_config(hub_app, "verify", HubVerifyConfig, hub_verify, help=VERIFY_HELP,
                        json_help="Print the report as JSON.")
    command_from_config(hub_app, "gc", HubGcConfig, hub_gc, help=GC_HELP,
                        json_help="Print the report as JSON (what was removed, its bytes, what was kept).")
    command_from_config(hub_app, "search", HubSearchConfig, hub_search, help=SEARCH_HELP,
                        json_help="Print the matching repos as JSON.")
    command_from_config(token_app, "create", HubTokenCreateConfig, token_create, help=CREATE_HELP,
                        json_help="Print {name, scope, namespace, token} as JSON.")
    command_from_config(token_app, "list", HubTokenListConfig, token_list,
                        help="The hub's tokens: name, scope, namespace, created (never the tokens).",
                        json_help="Print JSON.")
    command_from_config(token_app, "rm", HubTokenRmConfig, token_rm, help="Remove a token: it stops working at once.",
                        json_help="Print JSON.")
