"""``kaiyuan chat MODEL``: a terminal chat (like ``ollama run``) on the engines ``kaiyuan serve`` runs.

Reads user lines from stdin (with a ``> `` prompt when stdin is a terminal) and streams each reply token by token
to stdout, keeping the conversation; ``/clear`` forgets it, ``/exit`` or end of input quits. The engines (and
torch) are imported only when the command runs.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kaiyuan.cli.output import err_console, library_chatter_to_stderr, results
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.engines.base import SamplingParams

HELP_LINE = "/clear: forget the conversation; /exit (or Ctrl-D): quit"


def pick_engine(engines: dict[str, Any], ref: str) -> Any:
    """The engine a chat talks to: the only one built, else the one served under ``ref``, else the last."""
    if not engines:
        raise KaiyuanError(f"{ref}: no engine to chat with")
    return engines.get(ref) or list(engines.values())[-1]


def chat_command(
    model: Annotated[str, typer.Argument(help="Model or adapter (registry id, id prefix or name, a model dir, a "
                                              ".gguf file or a hub id), as for `kaiyuan serve`.")],
    system: Annotated[str | None, typer.Option(help="System prompt, first in every conversation.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0: greedy (reproducible).")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling: keep the most likely tokens up to this "
                                              "probability mass.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling (temperature > 0).")] = None,
    engine: Annotated[str, typer.Option(help="auto|transformers|llamacpp|vllm (auto: a .gguf file → llamacpp, "
                                             "anything else → transformers).")] = "auto",
) -> None:
    """Chat with a model in the terminal: type a message, the reply streams back token by token. The conversation
    is kept; /clear forgets it, /exit or end of input (Ctrl-D) quits. Lines piped into stdin are the user's
    messages, one a line."""

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
    app.command("chat")(chat_command)
