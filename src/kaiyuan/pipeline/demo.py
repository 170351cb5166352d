"""``kaiyuan demo``: a real open model from data to a served, fine-tuned model, in one command.

base model → synthetic data → baseline eval → LoRA SFT → merge → eval → DPO on preference pairs → merge →
eval → OpenAI-compatible server → ``$KAIYUAN_HOME/demo/summary.json``. Every step registers its artifact
with a manifest.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kaiyuan.data.near_misses import NearMissConfig, run_near_misses
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.generation import ExactMatchConfig, run_exact_match
from kaiyuan.home import kaiyuan_home
from kaiyuan.hub.card import write_cards
from kaiyuan.hub.catalog_answers import what_the_catalog_changes, why_not
from kaiyuan.hub.known_models import with_catalog
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.manifest import atomic_write_json
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Registry
from kaiyuan.models import SMOLLM2, resolve_model
from kaiyuan.serve.config import is_loopback
from kaiyuan.train.preference import DPOConfig, run_dpo
from kaiyuan.train.sft import SFTConfig, run_sft

DEMO_CHAT_PROMPT = "Convert this date to ISO 8601 format (YYYY-MM-DD). Reply with the date only.\n\nJuly 4th, 1976"
DEMO_STREAM_PROMPT = "Rewrite the date below as YYYY-MM-DD. Answer with the date only.\n\n25 December 2024"


class Reporter(Protocol):
    """How the demo shows its progress (the CLI's is rich; text may carry rich markup such as ``[bold]``)."""

    def rule(self, text: str) -> None: ...

    def print(self, text: str, markup: bool = True) -> None: ...

    def table(self, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None: ...


MARKUP = re.compile(r"\[/?(?:bold|dim|cyan|green|red|yellow)(?: [a-z]+)*\]")


class PlainReporter:
    """Plain text on stderr, markup removed: the demo run as a library call."""

    def rule(self, text: str) -> None:
        self.print(f"── {text} ──")

    def print(self, text: str, markup: bool = True) -> None:
        sys.stderr.write((MARKUP.sub("", text) if markup else text) + "\n")

    def table(self, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        self.print(title, markup=False)
        for row in (columns, *rows):
            self.print("  ".join(row), markup=False)


@dataclass
class DemoConfig:
    model: str = field(default=SMOLLM2, metadata={"help": "Base model to fine-tune."})
    task: str = field(default="dates", metadata={"help": "Synthetic task (dates)."})
    n_train: int = field(default=160, metadata={"help": "Training examples generated (160 = 20 steps of 8: a short "
                                                        "SFT that leaves the alignment step room to show)."})
    n_heldout: int = field(default=250, metadata={"help": "Held-out examples generated."})
    seed: int = field(default=0, metadata={"help": "Seed for data, training and sampling."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs."})
    max_steps: int = field(default=-1, metadata={"help": "Cap on optimizer steps (-1: epochs)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "LoRA learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Training batch size."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    max_new_tokens: int = field(default=16, metadata={"help": "Answer length cap in evaluation."})
    checkpoint_steps: int = field(default=10, metadata={
        "help": "Keep the adapter every N steps (intermediate parameters, for open-science release)."})
    dpo: bool = field(default=True, metadata={"help": "Align the tuned model with DPO on preference pairs."})
    n_pairs: int = field(default=128, metadata={"help": "Preference pairs for DPO: the tuned model's nearest misses "
                                                        "(chosen = the date, rejected = its most likely slip)."})
    n_candidates: int = field(default=512, metadata={"help": "New conversations the tuned model is scored on to "
                                                             "find its near misses."})
    dpo_learning_rate: float = field(default=1e-4, metadata={"help": "DPO learning rate (LoRA)."})
    dpo_beta: float = field(default=0.5, metadata={"help": "DPO beta (higher: stays closer to the tuned model)."})
    dpo_sft_weight: float = field(default=0.0, metadata={"help": "Weight of the chosen answers' NLL (RPO; 0: plain "
                                                               "DPO)."})
    serve: bool = field(default=False, metadata={
        "help": "Keep the server up after the demo requests, with the web UI: the base, tuned and aligned models in "
                "chat and in the arena."})
    host: str = field(default="127.0.0.1", metadata={"help": "Server host."})
    port: int = field(default=0, metadata={"help": "Server port (0: any free port)."})


def run_demo(cfg: DemoConfig, console: Reporter | None = None) -> dict[str, Any]:
    console = console or PlainReporter()
    if cfg.serve and not is_loopback(cfg.host):
        raise KaiyuanError(f"--serve on --host {cfg.host} would open the demo's UI to the network without log-in: "
                           "serve on 127.0.0.1, or serve the models with `kaiyuan serve MODEL… --ui --ui-users`")
    started = time.time()
    registry = Registry()

    n_steps = 9 if cfg.dpo else 7

    def step(number: int, text: str) -> None:
        console.rule(f"[bold cyan]{number}/{n_steps} {text}  [dim]({time.time() - started:.0f}s)")

    step(1, f"base model {cfg.model}")
    base = resolve_model(cfg.model, registry)
    console.print(f"base model: [bold]{base.id}[/] ({base.name}, {base.license})")

    step(2, f"synthetic data: {cfg.task}")
    data = run_synthetic(SyntheticConfig(task=cfg.task, n_train=cfg.n_train, n_heldout=cfg.n_heldout, seed=cfg.seed,
                                         n_pairs=cfg.n_candidates if cfg.dpo else 0, pairs_style="near-miss"))
    train, heldout = data["train"], data["heldout"]
    console.print(f"train: [bold]{train.id}[/] ({cfg.n_train}), held-out: [bold]{heldout.id}[/] ({cfg.n_heldout})"
                  + (f", candidates for preference pairs: [bold]{data['pairs'].id}[/] ({cfg.n_candidates})"
                     if cfg.dpo else ""))

    step(3, "evaluate the base model on the held-out split")
    before = run_exact_match(ExactMatchConfig(model=base.id, data=heldout.id, max_new_tokens=cfg.max_new_tokens),
                             registry)
    console.print(f"base exact match: [bold]{before.exact_match:.3f}[/] ({before.n_correct}/{before.n})")

    step(4, "LoRA SFT (TRL SFTTrainer, assistant-only loss) and merge")
    sft = run_sft(SFTConfig(model=base.id, data=train.id, name=f"{base.name}-{cfg.task}-lora",
                            epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
                            batch_size=cfg.batch_size, lora_r=cfg.lora_r, lora_alpha=2 * cfg.lora_r,
                            merge=True, seed=cfg.seed, checkpoint_steps=cfg.checkpoint_steps), registry)
    assert sft.merged is not None
    console.print(f"adapter: [bold]{sft.artifact.id}[/]  merged model: [bold]{sft.merged.id}[/]  "
                  f"final loss {sft.metrics['final_loss']}")

    step(5, "evaluate the tuned model")
    after = run_exact_match(ExactMatchConfig(model=sft.merged.id, data=heldout.id,
                                             max_new_tokens=cfg.max_new_tokens), registry)
    rows = [("base", base.id, before), ("tuned (LoRA SFT, merged)", sft.merged.id, after)]
    final = sft.merged
    dpo = None
    if cfg.dpo:
        step(6, "DPO on the tuned model's near misses (TRL DPOTrainer), LoRA, merged")
        pairs, misses = run_near_misses(NearMissConfig(model=sft.merged.id, data=data["pairs"].id,
                                                       n_pairs=cfg.n_pairs, name=f"{cfg.task}-near-misses"), registry)
        console.print(f"near-miss pairs: [bold]{pairs.id}[/] ({len(misses)} of {cfg.n_candidates} conversations)")
        console.print("  e.g. " + ", ".join(f"{m.row['chosen'][0]['content']} ≻ {m.row['rejected'][0]['content']}"
                                            for m in misses[:3]), markup=False)
        dpo = run_dpo(DPOConfig(model=sft.merged.id, data=pairs.id, name=f"{base.name}-{cfg.task}-dpo",
                                learning_rate=cfg.dpo_learning_rate, beta=cfg.dpo_beta, sft_weight=cfg.dpo_sft_weight,
                                batch_size=cfg.batch_size, lora_r=cfg.lora_r, lora_alpha=2 * cfg.lora_r,
                                merge=True, seed=cfg.seed, checkpoint_steps=cfg.checkpoint_steps), registry)
        assert dpo.merged is not None
        console.print(f"DPO adapter: [bold]{dpo.artifact.id}[/]  merged model: [bold]{dpo.merged.id}[/]  "
                      f"reward accuracy {dpo.metrics['reward_accuracy']}, margin {dpo.metrics['reward_margin']}")
        step(7, "evaluate the aligned model")
        aligned = run_exact_match(ExactMatchConfig(model=dpo.merged.id, data=heldout.id,
                                                   max_new_tokens=cfg.max_new_tokens), registry)
        rows.append(("tuned + DPO (merged)", dpo.merged.id, aligned))
        final = dpo.merged
    console.table(f"held-out exact match ({cfg.task}, n={after.n})", ("model", "id", "exact match", "correct"),
                  [(label, model_id, f"{result.exact_match:.3f}", f"{result.n_correct}/{result.n}")
                   for label, model_id, result in rows])
    console.print(f"loss curve: {sft.loss_curve_png}")

    step(n_steps - 1, "model card, data cards, license verdict and openness grade of the final model")
    openness = describe_openness(final.id, registry, console)

    step(n_steps, "serve the final model (OpenAI-compatible API)")
    chat_reply, stream_reply = serve_and_ask(final.id, final.name, cfg, console)

    summary = {
        "base_exact_match": before.exact_match, "tuned_exact_match": after.exact_match, "n_heldout": after.n,
        "seconds": round(time.time() - started, 1), "chat_reply": chat_reply, "stream_reply": stream_reply,
        "base_model_id": base.id, "tuned_model_id": sft.merged.id, "adapter_id": sft.artifact.id,
        "dataset_id": train.id, "heldout_dataset_id": heldout.id,
        "loss_curve_png": str(sft.loss_curve_png) if sft.loss_curve_png else None,
        "dpo_exact_match": rows[2][2].exact_match if dpo else None,
        "dpo_model_id": dpo.merged.id if dpo and dpo.merged else None,
        "dpo_adapter_id": dpo.artifact.id if dpo else None, "pairs_dataset_id": pairs.id if dpo else None,
        "served_model_id": final.id, **openness,
    }
    summary_path = kaiyuan_home() / "demo" / "summary.json"
    atomic_write_json(summary_path, summary)
    console.print(f"summary: {summary_path}  ({summary['seconds']:.0f}s in all)")
    if cfg.serve:
        served = [(base.id, base.name), (sft.merged.id, sft.merged.name)]
        served += [(dpo.merged.id, dpo.merged.name)] if dpo and dpo.merged else []
        keep_serving(served, cfg, console)
    return summary


def describe_openness(model_id: str, registry: Registry, console: Reporter) -> dict[str, Any]:
    """Register the model's card and its datasets' cards, then say what its license and openness are."""

    cards = write_cards(model_id, registry, out=kaiyuan_home() / "demo" / "card")
    terms = license_report(model_id, with_catalog(registry))
    openness = openness_report(model_id, registry)
    assert cards.model is not None
    console.print(f"model card: [bold]{cards.model.card.id}[/] → {cards.model.out}; "
                  f"data cards: {', '.join(c.card.id for c in cards.data)}")
    console.print(f"license: [bold]{terms.license}[/], commercial use: [bold]{terms.verdict}[/] — {terms.summary}")
    for obligation in terms.obligations:
        console.print(f"  obligation: {obligation}")
    progress = ", ".join(f"{name} {p['met']}/{p['required']}" for name, p in openness.progress.items())
    console.print(f"openness: [bold]MOF {openness.mof_class or 'no class'}[/] ({progress}); openness index "
                  f"{openness.index_score:g}/{openness.index_max}; OSAID: "
                  f"{'passes' if openness.osaid['passes'] else 'does not pass'}")
    shown: set[tuple[str, str]] = set()  # the classes are cumulative: a component missing below is missing above
    for component in (c for p in openness.progress.values() for c in p["missing"]):
        if (component["class"], component["name"]) not in shown:
            shown.add((component["class"], component["name"]))
            console.print(f"  missing ({component['class']}): {component['name']}: {why_not(component['reason'])}")
    changes = what_the_catalog_changes(model_id, registry)
    for known in changes["known"]:
        data = "; ".join(f"{name} ({license})" for name, license in known["pretraining_data"])
        tuned = "; ".join(f"{name} ({license}" + (f", written by {by})" if by else ")")
                          for name, license, by in known["tuning_data"])
        console.print(f"known to kaiyuan's catalog: [bold]{known['name']}[/] ({known['weights']}; `kaiyuan catalog "
                      f"show {known['key']}`)" + (f" — pretrained on {data}" if data else "")
                      + (f" — tuned on {tuned}" if tuned else ""))
    if changes["known"]:
        (was, now), (mof_was, mof_now) = changes["verdict"], changes["mof_class"]
        console.print(f"what the catalog changes: commercial use {was} → [bold]{now}[/], MOF {mof_was or 'no class'} "
                      f"→ [bold]{mof_now or 'no class'}[/], openness index {changes['index'][0]:g} → "
                      f"{changes['index'][1]:g}")
        for line in changes["new_risks"] + changes["mof_lost"]:
            console.print(f"  because: {line}")
    return {"model_card_id": cards.model.card.id, "model_card": str(cards.model.out),
            "data_card_ids": [c.card.id for c in cards.data], "license": terms.license,
            "commercial_use": terms.verdict, "obligations": terms.obligations, "mof_class": openness.mof_class,
            "openness_index": openness.index_score, "osaid_passes": openness.osaid["passes"],
            "catalog_changes": changes}


def serve_and_ask(model_ref: str, model_name: str, cfg: DemoConfig, console: Reporter) -> tuple[str, str]:
    from openai import OpenAI

    from kaiyuan.serve.engines.transformers_engine import TransformersEngine
    from kaiyuan.serve.routes import create_app
    from kaiyuan.serve.server import BackgroundServer

    engine = TransformersEngine.from_reference(model_ref, model_id=model_name)
    with BackgroundServer(create_app({model_name: engine}), host=cfg.host) as server:
        console.print(f"server up at {server.base_url}")
        client = OpenAI(base_url=server.base_url, api_key="unused")
        reply = client.chat.completions.create(
            model=model_name, messages=[{"role": "user", "content": DEMO_CHAT_PROMPT}], max_tokens=32,
            temperature=0)
        chat_reply = reply.choices[0].message.content or ""
        console.print(f"[bold]chat[/]   {DEMO_CHAT_PROMPT.splitlines()[-1]!r} → {chat_reply!r}")
        pieces = []
        for chunk in client.chat.completions.create(
                model=model_name, messages=[{"role": "user", "content": DEMO_STREAM_PROMPT}], max_tokens=32,
                temperature=0, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        stream_reply = "".join(pieces)
        console.print(f"[bold]stream[/] {DEMO_STREAM_PROMPT.splitlines()[-1]!r} → {stream_reply!r} "
                      f"({len(pieces)} chunks)")
    return chat_reply, stream_reply


def keep_serving(models: list[tuple[str, str]], cfg: DemoConfig, console: Reporter) -> None:
    """Serve ``models`` ((registry ref, served name) pairs) with the API and the web UI until Ctrl-C (local user,
    loopback only unless the host says otherwise)."""
    import uvicorn

    from kaiyuan.serve.engines.transformers_engine import TransformersEngine
    from kaiyuan.serve.operations import with_operations
    from kaiyuan.serve.routes import create_app
    from kaiyuan.web.app import UIOptions, mount_ui

    engines = {name: TransformersEngine.from_reference(ref, model_id=name) for ref, name in models}
    app = create_app(engines, with_ui=True)
    mount_ui(app, engines, UIOptions())
    port = cfg.port or 8000
    console.print(f"serving {', '.join(engines)} at http://{cfg.host}:{port}/v1 and the web UI at "
                  f"http://{cfg.host}:{port}/ (chat, arena, leaderboard, models, compare; Ctrl-C to stop)")
    uvicorn.run(with_operations(app), host=cfg.host, port=port, log_level="warning")


def summary_path() -> Path:
    return kaiyuan_home() / "demo" / "summary.json"
