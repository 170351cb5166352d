"""``kaiyuan serve``: the OpenAI-compatible server (plain, or Ray Serve replicas).

Its flags are the fields of :class:`kaiyuan.serve.config.ServeConfig` (also the keys of ``--config FILE.yaml``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import err_console, print_json
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.config import ServeConfig, check_port_free, is_loopback, routes_help
from kaiyuan.serve.keys import check_api_key, hash_api_key
from kaiyuan.serve.users import UserStore

SERVE_HELP = ("OpenAI-compatible server: chat and text completions (with streaming), embeddings, a health check and "
              "Prometheus metrics. Also reads an API key from KAIYUAN_API_KEY.\n\n" + routes_help()
              + "\n\nWith --ui, also the web UI's pages: /chat, /arena, /leaderboard, /models, /compare and /login.")


def read_api_keys(api_key: list[str] | None, api_key_file: Path | None) -> list[str]:
    """The keys from --api-key, --api-key-file and KAIYUAN_API_KEY; an empty one anywhere is refused (its hash
    would match a request without a key)."""

    try:
        keys = [check_api_key(k, "--api-key") for k in api_key or []]
        if api_key_file is not None:
            try:
                lines = api_key_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise KaiyuanError(f"{api_key_file}: cannot read the API key file ({exc.strerror})") from exc
            found = [line.strip() for line in lines if line.strip()]
            if not found:
                raise KaiyuanError(f"{api_key_file}: the API key file holds no key (one key per line)")
            keys += found
        if "KAIYUAN_API_KEY" in os.environ:
            keys.append(check_api_key(os.environ["KAIYUAN_API_KEY"], "KAIYUAN_API_KEY"))
    except ValueError as exc:
        raise KaiyuanError(str(exc)) from exc
    return keys


def check_exposure(host: str, keys: list[str], insecure_no_auth: bool) -> None:
    """Refuse to serve beyond this machine without API keys, unless asked to in so many words."""
    if not is_loopback(host) and not keys and not insecure_no_auth:
        raise KaiyuanError(f"--host {host} serves beyond this machine: give --api-key / --api-key-file / "
                           "KAIYUAN_API_KEY, or --insecure-no-auth to serve without keys")


def check_ui(cfg: ServeConfig, home: Path | None = None) -> None:
    """The UI's settings make sense: never an open UI beyond loopback; with --ui-users, someone who can log in."""
    if not cfg.ui:
        if cfg.ui_users:
            raise KaiyuanError("--ui-users needs --ui")
        return
    if cfg.ray:
        raise KaiyuanError("--ui is served by the single-process server: leave out --ray")
    if cfg.arena_turns < 1:
        raise KaiyuanError("--arena-turns must be at least 1")
    if cfg.ui_chat_per_minute < 1 or cfg.ui_votes_per_minute < 1:
        raise KaiyuanError("--ui-chat-per-minute and --ui-votes-per-minute must be at least 1")
    cfg.arena_weights()
    if not cfg.ui_users and not is_loopback(cfg.host):
        raise KaiyuanError(f"--ui on --host {cfg.host} would open the UI to the network without log-in: add "
                           "--ui-users (people log in with the accounts of `kaiyuan users add NAME`)")
    if cfg.ui_users and not UserStore(home).list():
        raise KaiyuanError("--ui-users: nobody can log in yet: add a user first with `kaiyuan users add NAME`")


def _announce(cfg: ServeConfig, served: list[str], keyed: bool, json_output: bool, replicas: int | None = None) -> None:
    """The "serving … at http://…" line (stderr), and with --json a summary on stdout."""
    how = f" as {replicas} Ray Serve replica(s)" if replicas is not None else ""
    err_console.print(f"serving {', '.join(served)}{how} at {cfg.url()}" + (" (API key required)" if keyed else ""))
    ui_url = f"http://{cfg.host}:{cfg.port}/" if cfg.ui else None
    if ui_url:
        err_console.print(f"web UI at {ui_url}" + (" (log in with a `kaiyuan users` account)" if cfg.ui_users
                                                   else " (local user, no log-in)"))
    if json_output:
        print_json({"models": served, "url": cfg.url(), "api_key_required": keyed, "replicas": replicas or 1,
                    "ui": ui_url})


def run_serve(cfg: ServeConfig, json_output: bool = False) -> None:
    """Serve ``cfg.models`` until SIGTERM / SIGINT."""
    keys = read_api_keys(cfg.api_key, Path(cfg.api_key_file) if cfg.api_key_file is not None else None)
    check_exposure(cfg.host, keys, cfg.insecure_no_auth)
    check_ui(cfg)
    if cfg.ray and cfg.replicas < 1:
        raise KaiyuanError("--replicas must be at least 1")
    check_port_free(cfg.host, cfg.port)  # before minutes of loading models
    hashes = [hash_api_key(k) for k in keys]
    limits, llamacpp_options = cfg.limits(), cfg.llamacpp_options()
    if cfg.ray:  # scale-out: each replica loads its own engines
        from kaiyuan.serve.ray_serve import run_ray_serve  # heavy: ray

        run_ray_serve(cfg.models, cfg.replicas, cfg.host, cfg.port, hashes, engine=cfg.engine,
                      default_max_tokens=cfg.max_tokens, limits=limits, num_cpus=cfg.ray_cpus,
                      replica_cpus=cfg.replica_cpus, replica_gpus=cfg.replica_gpus, grace_period=cfg.grace_period,
                      llamacpp_options=llamacpp_options,
                      on_ready=lambda: _announce(cfg, cfg.models, bool(hashes), json_output, cfg.replicas))
        return
    # heavy: fastapi/uvicorn (and torch, through the engines)
    from kaiyuan.serve.engine_set import build_engines
    from kaiyuan.serve.operations import with_operations
    from kaiyuan.serve.routes import create_app
    from kaiyuan.serve.server import run_until_signalled

    engines = build_engines(cfg.models, cfg.engine, llamacpp_options, max_batch_size=cfg.parallel)
    check_port_free(cfg.host, cfg.port)  # again: another server may have taken it while the models loaded
    unknown = sorted(set(cfg.arena_weights()) - set(engines))
    if unknown:
        raise KaiyuanError(f"--arena-weight names {', '.join(unknown)}, which is not served (served: "
                           f"{', '.join(engines)})")
    _announce(cfg, list(engines), bool(hashes), json_output)
    api = create_app(engines, hashes, default_max_tokens=cfg.max_tokens, with_ui=cfg.ui)
    if cfg.ui:
        from kaiyuan.web.app import UIOptions, mount_ui  # heavy: fastapi, jinja2

        mount_ui(api, engines, UIOptions(users=cfg.ui_users, arena_weights=cfg.arena_weights(),
                                         arena_turns=cfg.arena_turns, chat_per_minute=cfg.ui_chat_per_minute,
                                         votes_per_minute=cfg.ui_votes_per_minute), default_max_tokens=cfg.max_tokens)
    run_until_signalled(with_operations(api, limits), api.state.drain, cfg.host, cfg.port, cfg.grace_period, engines)


def register(app: typer.Typer) -> None:
    command_from_config(app, "serve", ServeConfig, run_serve, help=SERVE_HELP)
