"""``kaiyuan chat MODEL``: a terminal chat (like ``ollama run``) on the engines ``kaiyuan serve`` runs.

Reads user lines from stdin (with a ``> `` prompt when stdin is a terminal) and streams each reply token by token
to stdout, keeping the conversation; ``/clear`` forgets it, ``/exit`` or end of input quits. The engines (and
torch) are imported only when the command runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import err_console, library_chatter_to_stderr, results
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.engines.base import SamplingParams

HELP_LINE = "/clear: forget the conversation; /exit (or Ctrl-D): quit"


def pick_engine(engines: dict[str, Any], ref: str) -> Any:
    """The engine a chat talks to: the only one built, else the one served under ``ref``, else the last."""
    if not engines:
        raise KaiyuanError(f"{ref}: no engine to chat with")
    return engines.get(ref) or list(engines.values())[-1]


@dataclass
class ChatConfig:
    model: str = field(metadata={"help": "Model or adapter (registry id, id prefix or name, a model dir, a .gguf "
                                         "file or a hub id), as for `kaiyuan serve`.", "argument": True})
    system: str | None = field(default=None, metadata={"help": "System prompt, first in every conversation."})
    max_tokens: int = field(default=512, metadata={"help": "Longest reply, in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0: greedy (reproducible)."})
    top_p: float = field(default=1.0, metadata={
        "help": "Nucleus sampling: keep the most likely tokens up to this probability mass."})
    seed: int | None = field(default=None, metadata={"help": "Seed for sampling (temperature > 0)."})
    engine: str = field(default="auto", metadata={
        "help": "auto|transformers|llamacpp|vllm (auto: a .gguf file → llamacpp, anything else → transformers)."})


CHAT_HELP = ("Chat with a model in the terminal: type a message, the reply streams back token by token. The "
             "conversation is kept; /clear forgets it, /exit or end of input (Ctrl-D) quits. Lines piped into stdin "
             "are the user's messages, one a line.")


def chat_command(cfg: ChatConfig, json_output: bool = False) -> None:
    """``kaiyuan chat MODEL`` (see CHAT_HELP); ``json_output`` changes nothing: the replies are the output."""
    model, system, max_tokens, temperature = cfg.model, cfg.system, cfg.max_tokens, cfg.temperature
    top_p, seed, engine = cfg.top_p, cfg.seed, cfg.engine
    if max_tokens < 1:
        raise KaiyuanError(f"--max-tokens must be at least 1, got {max_tokens}")
    if temperature < 0:
        raise KaiyuanError(f"--temperature must be at least 0, got {temperature}")
    from kaiyuan.serve.engine_set import build_engines

    with library_chatter_to_stderr():
        chosen = pick_engine(build_engines([model], engine, max_batch_size=1), model)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                            fit_context=True)
    interactive = sys.stdin.isatty()
    if interactive:
        err_console.print(f"chatting with {chosen.model_id}; {HELP_LINE}", markup=False, highlight=False)
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    while True:
        if interactive:
            results.write("> ")
            results.flush()
        line = sys.stdin.readline()
        if not line:  # end of input
            if interactive:
                results.write("\n")
            break
        text = line.rstrip("\r\n")
        command = text.strip()
        if command in ("/exit", "/quit", "/bye"):
            break
        if command == "/clear":
            messages = list(start)
            if interactive:
                err_console.print("(conversation cleared)", highlight=False)
            continue
        if command in ("/help", "/?"):
            err_console.print(HELP_LINE, markup=False, highlight=False)
            continue
        if not command:
            continue
        messages.append({"role": "user", "content": text})
        reply = []
        try:
            with library_chatter_to_stderr():
                for event in chosen.stream(messages, params):
                    if event.text:
                        reply.append(event.text)
                        results.write(event.text)
                        results.flush()
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the chat
            results.write("\n")
            messages.pop()
            continue
        except ValueError as exc:  # ContextLengthError, UnsupportedRequestError: e.g. the conversation no longer fits
            results.write("\n")
            messages.pop()
            err_console.print(f"error: {chosen.model_id}: {exc} (/clear starts over)", markup=False, highlight=False)
            continue
        results.write("\n")
        results.flush()
        messages.append({"role": "assistant", "content": "".join(reply)})


def register(app: typer.Typer) -> None:
    command_from_config(app, "chat", ChatConfig, chat_command, help=CHAT_HELP,
                        json_help="No effect: the replies stream to stdout as text.")
