"""``kaiyuan``: one subcommand per stage. Parse, call the stage function, print."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kaiyuan import __version__
from kaiyuan.config_cli import command_from_config
from kaiyuan.errors import KaiyuanError
from kaiyuan.json_output import print_json

app = typer.Typer(help="kaiyuan (开源): take an open model from data to a served, fine-tuned model — with "
                       "provenance. Honours KAIYUAN_HOME (default ~/.kaiyuan).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Validate and convert instruction / preference data.", no_args_is_help=True)
train_app = typer.Typer(help="Training stages.", no_args_is_help=True)
models_app = typer.Typer(help="Models and artifacts in the registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")
console = Console()
err_console = Console(stderr=True)


def library_chatter_to_stderr() -> contextlib.AbstractContextManager:
    """Libraries (transformers' Trainer, datasets) print progress to stdout; keep stdout for results."""
    return contextlib.redirect_stdout(sys.stderr)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow loading pickle checkpoints "
                                                                     "(.bin/.pt): only for sources you trust.")]
    = False,
) -> None:
    if allow_pickle:
        os.environ["KAIYUAN_ALLOW_PICKLE"] = "1"
    if version:
        print(__version__)
        raise typer.Exit()


# ------------------------------------------------------------------------------------------------ demo


def _run_demo(cfg: Any, json_output: bool) -> None:
    from kaiyuan.demo import run_demo

    with library_chatter_to_stderr():
        summary = run_demo(cfg)
    if json_output:
        print_json(summary)
    else:
        console.print(f"chat reply: {summary['chat_reply']!r}\nstream reply: {summary['stream_reply']!r}\n"
                      f"loss curve: {summary['loss_curve_png']}")


def _register_stage_commands() -> None:
    from kaiyuan.data.near_misses import NearMissConfig
    from kaiyuan.data.synthetic import SyntheticConfig
    from kaiyuan.demo import DemoConfig
    from kaiyuan.train.stages import TRAINING_STAGES

    command_from_config(app, "demo", DemoConfig, _run_demo,
                        help="Run the whole lifecycle on a real open model: data → eval → LoRA SFT → merge → "
                             "eval → serve; writes $KAIYUAN_HOME/demo/summary.json.")
    for stage in TRAINING_STAGES:
        command_from_config(train_app, stage.name, stage.config_class(), _training_command(stage.run, stage.name),
                            help=stage.help)
    command_from_config(data_app, "synthetic", SyntheticConfig, _run_synthetic,
                        help="Generate and register a synthetic task's train / held-out (/ preference) splits.")
    command_from_config(data_app, "near-misses", NearMissConfig, _run_near_misses,
                        help="Preference pairs from a model's own near misses: at the answer token where it is "
                             "least sure, its best other token is the rejected answer (on-policy hard negatives "
                             "for DPO).")


def _training_command(run: Any, stage: str) -> Any:
    def command(cfg: Any, json_output: bool) -> None:
        from kaiyuan.train.distributed import is_worker, launch

        if getattr(cfg, "nproc", 1) > 1 and not is_worker():
            with library_chatter_to_stderr():
                summary = launch(cfg, stage)
            print_json(summary) if json_output else console.print(summary)
            return
        with library_chatter_to_stderr():
            result = run(cfg)
        if result is None:  # a distributed worker other than rank 0
            return
        if json_output:
            print_json(result.summary())
            return
        console.print(f"{result.artifact.kind}: [bold]{result.artifact.id}[/] ({result.artifact.name})")
        if result.merged:
            console.print(f"merged model: [bold]{result.merged.id}[/]")
        console.print(f"final loss: {result.metrics['final_loss']}")
        for key, path in result.curves.items():
            console.print(f"{key} curve: {path}")

    return command


def _run_synthetic(cfg: Any, json_output: bool) -> None:
    from kaiyuan.data.synthetic import run_synthetic

    produced = run_synthetic(cfg)
    if json_output:
        print_json({name: artifact.summary() for name, artifact in produced.items()})
        return
    for name, artifact in produced.items():
        records = artifact.manifest["metrics"]["records"]
        console.print(f"{name}: [bold]{artifact.id}[/] ({artifact.name}, {records} records)")


def _run_near_misses(cfg: Any, json_output: bool) -> None:
    from kaiyuan.data.near_misses import run_near_misses

    with library_chatter_to_stderr():
        dataset, kept = run_near_misses(cfg)
    metrics = dataset.manifest["metrics"]
    if json_output:
        print_json({**dataset.summary(), "pairs": len(kept), "candidates": metrics["candidates"],
                    "margins": [round(m.margin, 6) for m in kept]})
        return
    console.print(f"near-miss pairs: [bold]{dataset.id}[/] ({len(kept)} of {metrics['candidates']} conversations; "
                  f"largest margin kept {metrics['largest_margin_kept']})")
    for miss in kept[:5]:
        console.print(f"  {miss.row['chosen'][0]['content']!r} vs {miss.row['rejected'][0]['content']!r} "
                      f"(margin {miss.margin:.3f})", markup=False)


@app.command("run")
def run_recipe_command(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML: stages run in order; ${ID.OUTPUT} refers to an "
                                                "earlier stage's artifact.")],
    check: Annotated[bool, typer.Option("--check", help="Only validate the recipe.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse stages that already ran with the same resolved config.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Run a recipe (e.g. recipes/dpo.yaml): every stage's config is checked before the first one runs."""
    from kaiyuan.recipe import load_recipe, plan, run_recipe

    if check:  # every problem of the recipe is reported at once (a RecipeError, one a line)
        planned = plan(load_recipe(recipe), str(recipe))
        console.print(f"{recipe}: {len(planned)} stages OK: " + " → ".join(f"{p.id} ({p.stage})" for p in planned),
                      markup=False, highlight=False)
        return

    def announce(number: int, total: int, step: Any) -> None:
        err_console.rule(f"[bold cyan]stage {number}/{total}: {step.id} ({step.stage})")

    with library_chatter_to_stderr():
        summary = run_recipe(recipe, announce, use_cache=cache)
    if json_output:
        print_json(summary)
        return
    table = Table(title=f"recipe {recipe}")
    for column in ("stage", "outputs"):
        table.add_column(column)
    for step_id, outputs in summary["stages"].items():
        table.add_row(step_id, json.dumps(outputs, default=str))
    console.print(table)


# ------------------------------------------------------------------------------------------------ data


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="JSON / JSONL file (optionally .gz).")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto|alpaca|sharegpt|messages|pairs")] = "auto",
    skip_invalid: Annotated[bool, typer.Option(help="Write rejected records to a sidecar file and go on.")] = False,
    rejects: Annotated[Path | None, typer.Option(help="Sidecar file (default FILE.rejected.jsonl).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check every record; exit 2 naming FILE:LINE: field: message for each malformed one."""
    from kaiyuan.data.formats import load_records

    result = load_records(file, format, skip_invalid=skip_invalid, rejects_path=rejects,
                          collect_all=not skip_invalid)
    report = {"file": str(file), "format": result.format, "valid": len(result.records),
              "invalid": result.n_skipped, "rejects": str(result.rejects_path) if result.rejects_path else None,
              "problems": [str(p) for p in result.problems]}
    if json_output:
        print_json(report)
    else:
        for problem in result.problems[:50]:
            err_console.print(str(problem), markup=False, highlight=False)
        if len(result.problems) > 50:
            err_console.print(f"… and {len(result.problems) - 50} more", markup=False)
        console.print(f"{file}: {report['valid']} valid {result.format} records, {report['invalid']} invalid"
                      + (f" (written to {result.rejects_path})" if result.rejects_path else ""), markup=False)
    if result.problems and not skip_invalid:
        raise typer.Exit(2)


@data_app.command("convert")
def data_convert(
    file: Annotated[Path, typer.Argument(help="Input JSON / JSONL file (optionally .gz).")],
    output: Annotated[Path, typer.Argument(help="Output JSONL file.")],
    source_format: Annotated[str, typer.Option("--from", help="auto|alpaca|sharegpt|messages|pairs")] = "auto",
    target_format: Annotated[str, typer.Option("--to", help="messages|sharegpt|alpaca")] = "messages",
    skip_invalid: Annotated[bool, typer.Option(help="Write rejected records to a sidecar file and go on.")] = False,
    register: Annotated[str | None, typer.Option(help="Also register the result as a dataset with this name.")]
    = None,
    license: Annotated[str, typer.Option(help="SPDX license id of the data (for --register).")] = "NOASSERTION",
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Convert to the canonical format (or ShareGPT / Alpaca), atomically."""
    from kaiyuan.data.formats import load_records, records_to_jsonl
    from kaiyuan.hub.manifest import atomic_write_text

    result = load_records(file, source_format, skip_invalid=skip_invalid)
    atomic_write_text(output, records_to_jsonl(result.records, target_format))
    report: dict[str, Any] = {"input": str(file), "output": str(output), "format": result.format,
                              "records": len(result.records), "skipped": result.n_skipped,
                              "rejects": str(result.rejects_path) if result.rejects_path else None}
    if register:
        from kaiyuan.train.common import register_dataset

        artifact = register_dataset(result.records, register, license, f"file:{file.resolve()}",
                                    {"format": result.format})
        report["dataset_id"] = artifact.id
    if json_output:
        print_json(report)
    else:
        console.print(f"{report['records']} records → {output}" + (
            f"; {report['skipped']} skipped (see {report['rejects']})" if report["skipped"] else "") + (
            f"; registered as {report['dataset_id']}" if register else ""), markup=False)


# ------------------------------------------------------------------------------------------------ eval


@app.command("eval")
def evaluate(
    models: Annotated[list[str], typer.Argument(help="Model(s): registry id/name, local dir, .gguf, hub id (or the "
                                                     "model name served at --base-url). Several → a comparison.")],
    task: Annotated[str | None, typer.Option(help="Benchmark: mmlu, ceval, cmmlu, gsm8k, piqa, lambada, or a task "
                                                  ".yaml (lm-evaluation-harness format).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Directory with the benchmark's published files.")] = None,
    split: Annotated[str | None, typer.Option(help="Split to score (default: the task's test split).")] = None,
    shots: Annotated[int | None, typer.Option(help="Few-shot examples (default: the task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random few-shot sampling.")] = 1234,
    predictions: Annotated[Path | None, typer.Option(help="Write per-question predictions here (JSONL; with "
                                                          "several models: one file per model).")] = None,
    engine: Annotated[str, typer.Option(help="auto | transformers | llamacpp | openai.")] = "auto",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (generation tasks).")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key of --base-url.")] = None,
    png: Annotated[Path | None, typer.Option(help="Bar chart comparing the models (default with several models: "
                                                  "eval-<task>.png).")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse cached request results of the same model.")] = True,
    data: Annotated[str | None, typer.Option(help="Instead of a benchmark: exact match on held-out conversations "
                                                  "(registered dataset or JSON/JSONL).")] = None,
    answer_pattern: Annotated[str | None, typer.Option(help="With --data: regex whose first match is the answer.")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions (of each subject).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 32,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest generation (default 256; --data: 32).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Score models on a benchmark the way lm-evaluation-harness does (acc, acc_norm, exact match, perplexity),
    or exact match on held-out conversations (--data). Results are registered eval artifacts."""
    if (task is None) == (data is None):
        raise KaiyuanError("give either --task (a benchmark) or --data (held-out conversations)")
    if data is not None:
        _exact_match_command(models, data, answer_pattern, limit, batch_size, max_new_tokens or 32, json_output)
        return
    from kaiyuan.evaluate.harness import BenchmarkConfig, plot_comparison, run_benchmark

    results = []
    for model in models:
        target = predictions
        if predictions is not None and len(models) > 1:
            target = predictions.with_name(f"{predictions.stem}-{Path(model).name}{predictions.suffix}")
        cfg = BenchmarkConfig(model=model, task=task, data_dir=str(data_dir) if data_dir else None, split=split,
                              shots=shots, seed=seed, limit=limit, batch_size=batch_size,
                              max_new_tokens=max_new_tokens or 256, engine=engine,  # type: ignore[arg-type]
                              base_url=base_url, api_key=api_key, predictions=str(target) if target else None,
                              cache=cache)
        with library_chatter_to_stderr():
            results.append(run_benchmark(cfg))
    chart = None
    if png is not None or len(results) > 1:
        chart = plot_comparison(results, next(iter(results[0].metrics)), png or Path(f"eval-{results[0].task}.png"))
    if json_output:
        summaries = [r.summary() for r in results]
        print_json({"results": summaries, "png": str(chart) if chart else None} if len(summaries) > 1
                   else summaries[0])
        return
    for result in results:
        _print_benchmark(result)
    if chart:
        console.print(f"chart: {chart}")


def _print_benchmark(result: Any) -> None:
    metrics = list(result.metrics)
    table = Table(title=f"{result.task} — {result.model_id} ({result.n} questions, {result.seconds:.1f}s)")
    for column in ("subject", "n", *metrics):
        table.add_column(column, justify="left" if column == "subject" else "right")
    for subject, row in result.subjects.items():
        table.add_row(subject, str(row["n"]), *(f"{row[m]:.4f}" for m in metrics))
    if len(result.subjects) > 1:
        table.add_section()
        for category, row in result.categories.items():
            table.add_row(f"[bold]{category}[/]", str(row["n"]), *(f"{row[m]:.4f}" for m in metrics))
    table.add_section()
    table.add_row("[bold]overall[/]", str(result.n), *(f"[bold]{result.metrics[m]:.4f}[/]" for m in metrics))
    console.print(table)
    if result.artifact:
        console.print(f"eval artifact {result.artifact.id}")


def _exact_match_command(models: list[str], data: str, answer_pattern: str | None, limit: int | None,
                         batch_size: int, max_new_tokens: int, json_output: bool) -> None:
    from kaiyuan.evaluate.generation import ExactMatchConfig, run_exact_match

    for model in models:
        with library_chatter_to_stderr():
            result = run_exact_match(ExactMatchConfig(model=model, data=data, answer_pattern=answer_pattern,
                                                      limit=limit, batch_size=batch_size,
                                                      max_new_tokens=max_new_tokens))
        if json_output:
            print_json(result.summary())
        else:
            console.print(f"{model}: exact match {result.exact_match:.4f} ({result.n_correct}/{result.n}); "
                          f"eval artifact {result.artifact.id}")


# ------------------------------------------------------------------------------------------------ judge, arena


def _register_judge_and_arena() -> None:
    from kaiyuan.evaluate.arena_cli import arena_app
    from kaiyuan.evaluate.judge_cli import battle_command, judge_command

    app.command("judge", help="Grade models' answers with an LLM judge (MT-bench rules: 1–10 ratings, or "
                              "pairwise in both orders).")(judge_command)
    arena_app.command("battle", help="Anonymous pairwise battles decided by a judge model; stored for ratings.")(
        battle_command)
    app.add_typer(arena_app, name="arena")


_register_judge_and_arena()


# ------------------------------------------------------------------------------------------------ serve


def read_api_keys(api_key: list[str] | None, api_key_file: Path | None) -> list[str]:
    """The keys from --api-key, --api-key-file and KAIYUAN_API_KEY; an empty one anywhere is refused (its hash
    would match a request without a key)."""
    from kaiyuan.serve.guard import check_api_key

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


@app.command("serve")
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


# ------------------------------------------------------------------------------------------------ models


@models_app.command("list")
def models_list(
    kind: Annotated[str | None, typer.Option(help="Only this kind: model|adapter|dataset|eval|export.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Artifacts in the registry (models and adapters by default; --kind for others)."""
    from kaiyuan.hub.registry import Registry

    registry = Registry()
    artifacts = registry.list(kind) if kind else [a for a in registry.list() if a.kind in ("model", "adapter")]
    if json_output:
        print_json([a.summary() for a in artifacts])
        return
    table = Table(title=f"registry {registry.path}")
    for column in ("id", "kind", "name", "license", "created"):
        table.add_column(column, no_wrap=column != "name", overflow="fold")
    for a in artifacts:
        table.add_row(a.id, a.kind, a.name, a.license, a.created_at.replace("T", " ")[:16])
    console.print(table)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="Artifact id or name.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """An artifact's manifest and its lineage back to base models and datasets."""
    from kaiyuan.hub.registry import Registry

    registry = Registry()
    artifact = registry.get(ref)
    info = {**artifact.summary(), "manifest": artifact.manifest, "lineage": registry.lineage(artifact.id)}
    if json_output:
        print_json(info)
        return
    console.print(f"[bold]{artifact.id}[/] {artifact.kind} {artifact.name!r}  license {artifact.license}")
    console.print(f"path {artifact.path}\nsha256 {artifact.sha256}\nsource {artifact.manifest.get('source')}")
    table = Table(title="lineage")
    for column in ("depth", "relation", "id", "kind", "name", "license", "sha256"):
        table.add_column(column)
    for node in info["lineage"]:
        table.add_row(str(node["depth"]), node["relation"], node["id"], node["kind"] or "?", node["name"] or "?",
                      node["license"] or "?", (node["sha256"] or "?")[:16])
    console.print(table)


@models_app.command("create-tiny")
def models_create_tiny(
    template: Annotated[str, typer.Option(help="Chat template: chatml|llama3|zephyr.")] = "chatml",
    seed: Annotated[int, typer.Option(help="Seed for tokenizer corpus and weights.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create (once) and register a tiny random Llama for tests and quick tries."""
    from kaiyuan.models import create_tiny_llama

    artifact = create_tiny_llama(template=template, seed=seed)
    if json_output:
        print_json(artifact.summary())
    else:
        console.print(f"{artifact.id} ({artifact.name}) at {artifact.path}")


_register_stage_commands()


def _register_open_model_commands() -> None:
    """license, openness, card, reproduce, export, plan: the commands that make a model's openness checkable."""
    from kaiyuan import plan_cli
    from kaiyuan.export import export_cli
    from kaiyuan.hub import card_cli, license_cli, openness_cli, reproduce_cli, verify_cli

    for module in (license_cli, openness_cli, card_cli, reproduce_cli, export_cli, plan_cli, verify_cli):
        module.register(app)


_register_open_model_commands()


def main() -> None:
    try:
        app()
    except KaiyuanError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
