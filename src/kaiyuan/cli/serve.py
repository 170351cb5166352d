"""``kaiyuan serve``: the OpenAI-compatible server (plain, or Ray Serve replicas)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kaiyuan.cli.output import err_console
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.guard import check_api_key


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
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not keys and not insecure_no_auth:
        raise KaiyuanError(f"--host {host} serves beyond this machine: give --api-key / --api-key-file / "
                           "KAIYUAN_API_KEY, or --insecure-no-auth to serve without keys")


def serve(
    models: Annotated[list[str], typer.Argument(help="Models and LoRA adapters to serve (registry id/name, dir, hub "
                                                     "id; a .gguf file is served by llama.cpp). An adapter is served "
                                                     "as <base>:<adapter>, sharing its base's weights.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[list[str] | None, typer.Option(help="Required API key (repeatable); only its hash "
                                                           "is kept.")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="File with one API key per line.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Default max_tokens of a request.")] = 256,
    max_concurrent: Annotated[int, typer.Option(help="Requests served at once; more wait in the queue.")] = 8,
    max_queue: Annotated[int, typer.Option(help="Requests waiting for a slot; beyond: 503 + Retry-After.")] = 64,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 beyond).")] = 2_000_000,
    request_timeout: Annotated[float, typer.Option(help="Seconds before a request is cancelled (504).")] = 600.0,
    grace_period: Annotated[float, typer.Option(help="On SIGTERM: stop accepting, let requests in flight finish "
                                                     "for this many seconds, then cancel them.")] = 30.0,
    engine: Annotated[str, typer.Option(help="auto|transformers|llamacpp|vllm (auto: a .gguf file → llamacpp, "
                                             "anything else → transformers).")] = "auto",
    parallel: Annotated[int, typer.Option(help="Sequences of one model decoded together in one batch (llama.cpp "
                                               "and transformers engines).")] = 8,
    prompt_cache: Annotated[bool, typer.Option(help="llama.cpp: reuse a finished sequence's KV cells for the next "
                                                    "prompt sharing its prefix.")] = True,
    context: Annotated[int, typer.Option(help="llama.cpp: context tokens per sequence.")] = 2048,
    ray: Annotated[bool, typer.Option("--ray", help="Scale out: serve the app as Ray Serve replicas on a local Ray "
                                                    "instance (needs the 'ray' extra).")] = False,
    replicas: Annotated[int, typer.Option(help="With --ray: number of replicas, each with its own engines.")] = 1,
    replica_cpus: Annotated[float, typer.Option(help="With --ray: CPUs reserved per replica.")] = 0.5,
    replica_gpus: Annotated[float, typer.Option(help="With --ray: GPUs reserved per replica.")] = 0.0,
    ray_cpus: Annotated[int | None, typer.Option(help="With --ray: CPUs of the local Ray instance "
                                                      "(default: all).")] = None,
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="Allow a non-loopback --host "
                                                                              "without API keys.")] = False,
) -> None:
    """OpenAI-compatible server (/v1/models, /v1/chat/completions with streaming, /health, Prometheus /metrics).

    Also reads an API key from KAIYUAN_API_KEY."""
    from kaiyuan.serve.app import create_app, hash_api_key
    from kaiyuan.serve.operations import ServerLimits, with_operations
    from kaiyuan.serve.server import run_until_signalled

    if engine not in ("auto", "transformers", "llamacpp", "vllm"):
        raise KaiyuanError(f"unknown engine {engine!r}: choose auto, transformers, llamacpp or vllm")
    keys = read_api_keys(api_key, api_key_file)
    check_exposure(host, keys, insecure_no_auth)
    if ray:  # scale-out: each replica loads its own engines
        from kaiyuan.serve.ray_serve import run_ray_serve

        if replicas < 1:
            raise KaiyuanError("--replicas must be at least 1")
        ray_hashes = [hash_api_key(k) for k in keys]
        ray_limits = ServerLimits(max_concurrent=max_concurrent, max_queue=max_queue, max_body_bytes=max_body_bytes,
                                  request_timeout_s=request_timeout)
        run_ray_serve(models, replicas, host, port, ray_hashes, engine=engine, default_max_tokens=max_tokens,
                      limits=ray_limits, num_cpus=ray_cpus, replica_cpus=replica_cpus, replica_gpus=replica_gpus,
                      grace_period=grace_period, llamacpp_options={"n_ctx": context, "n_parallel": parallel,
                                                         "prompt_cache": prompt_cache},
                      on_ready=lambda: err_console.print(
                          f"serving {', '.join(models)} as {replicas} Ray Serve replica(s) at http://{host}:{port}/v1"
                          + (" (API key required)" if ray_hashes else "")))
        return
    from kaiyuan.serve.engine_set import build_engines

    engines = build_engines(models, engine, {"n_ctx": context, "n_parallel": parallel, "prompt_cache": prompt_cache},
                            max_batch_size=parallel)
    hashes = [hash_api_key(k) for k in keys]
    err_console.print(f"serving {', '.join(engines)} at http://{host}:{port}/v1"
                      + (" (API key required)" if hashes else ""))
    limits = ServerLimits(max_concurrent=max_concurrent, max_queue=max_queue, max_body_bytes=max_body_bytes,
                          request_timeout_s=request_timeout)
    api = create_app(engines, hashes, default_max_tokens=max_tokens)
    run_until_signalled(with_operations(api, limits), api.state.drain, host, port, grace_period, engines)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
