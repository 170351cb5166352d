"""``kaiyuan serve``'s settings: the flags of the command and the keys of its ``--config`` YAML, in one dataclass.

Light on purpose (no fastapi, uvicorn or torch): the CLI reads it when ``kaiyuan`` starts.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kaiyuan.errors import KaiyuanError

if TYPE_CHECKING:
    from kaiyuan.serve.operations import ServerLimits

EngineKind = Literal["auto", "transformers", "llamacpp", "vllm"]

# Every route the server answers: (method, path, what it is). ``create_app`` serves all but /metrics, which
# ``with_operations`` adds; tests/serve/test_serve_cli.py checks this list against the real app.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v1/models", "the served models"),
    ("POST", "/v1/chat/completions", "chat, with streaming, tools and JSON output"),
    ("POST", "/v1/completions", "raw-text completion, for engines that complete text"),
    ("POST", "/v1/embeddings", "embeddings, for engines that embed"),
    ("GET", "/health", "200 when ready, 503 while draining or when an engine is unhealthy; no key needed"),
    ("GET", "/metrics", "Prometheus metrics; no key needed"),
    ("GET", "/openapi.json", "the OpenAPI schema"),
    ("GET", "/docs", "Swagger UI"),
    ("GET", "/docs/oauth2-redirect", "Swagger UI's OAuth2 redirect"),
    ("GET", "/redoc", "ReDoc"),
)


def routes_help() -> str:
    """The routes, as the paragraph of ``kaiyuan serve --help`` that lists them."""
    return "Routes: " + "; ".join(f"{method} {path} ({what})" for method, path, what in ROUTES) + "."


@dataclass
class ServeConfig:
    models: list[str] = field(metadata={
        "help": "Models and LoRA adapters to serve (registry id/name, dir, hub id; a .gguf file is served by "
                "llama.cpp). An adapter is served as <base>:<adapter>, sharing its base's weights.",
        "argument": True})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind."})
    port: int = field(default=8000, metadata={"help": "Port."})
    api_key: list[str] = field(default_factory=list, metadata={
        "help": "Required API key (repeatable); only its hash is kept."})
    api_key_file: str | None = field(default=None, metadata={"help": "File with one API key per line."})
    max_tokens: int = field(default=256, metadata={"help": "Default max_tokens of a request."})
    max_concurrent: int = field(default=8, metadata={"help": "Requests served at once; more wait in the queue."})
    max_queue: int = field(default=64, metadata={"help": "Requests waiting for a slot; beyond: 503 + Retry-After."})
    max_body_bytes: int = field(default=2_000_000, metadata={"help": "Largest request body (413 beyond)."})
    request_timeout: float = field(default=600.0, metadata={
        "help": "Seconds before a request is cancelled (504)."})
    grace_period: float = field(default=30.0, metadata={
        "help": "On SIGTERM: stop accepting, let requests in flight finish for this many seconds, then cancel "
                "them."})
    engine: EngineKind = field(default="auto", metadata={
        "help": "auto|transformers|llamacpp|vllm (auto: a .gguf file → llamacpp, anything else → transformers)."})
    parallel: int = field(default=8, metadata={
        "help": "Sequences of one model decoded together in one batch (llama.cpp and transformers engines)."})
    prompt_cache: bool = field(default=True, metadata={
        "help": "llama.cpp: reuse a finished sequence's KV cells for the next prompt sharing its prefix."})
    context: int = field(default=2048, metadata={"help": "llama.cpp: context tokens per sequence."})
    ray: bool = field(default=False, metadata={
        "help": "Scale out: serve the app as Ray Serve replicas on a local Ray instance (needs the 'ray' extra).",
        "flags": ("--ray",)})
    replicas: int = field(default=1, metadata={
        "help": "With --ray: number of replicas, each with its own engines."})
    replica_cpus: float = field(default=0.5, metadata={"help": "With --ray: CPUs reserved per replica."})
    replica_gpus: float = field(default=0.0, metadata={"help": "With --ray: GPUs reserved per replica."})
    ray_cpus: int | None = field(default=None, metadata={
        "help": "With --ray: CPUs of the local Ray instance (default: all)."})
    insecure_no_auth: bool = field(default=False, metadata={
        "help": "Allow a non-loopback --host without API keys.", "flags": ("--insecure-no-auth",)})
    ui: bool = field(default=False, metadata={
        "help": "Also serve the web UI at / (chat, arena, leaderboard, models, compare).", "flags": ("--ui",)})
    ui_users: bool = field(default=False, metadata={
        "help": "The UI asks to log in with the users of `kaiyuan users` (needed beyond loopback); without it one "
                "local user, on 127.0.0.1 only.", "flags": ("--ui-users",)})
    arena_weight: list[str] = field(default_factory=list, metadata={
        "help": "NAME=WEIGHT: how often the arena draws a model (repeatable; default 1 each, 0 leaves it out)."})
    arena_turns: int = field(default=3, metadata={"help": "Prompts per arena battle."})
    ui_chat_per_minute: int = field(default=30, metadata={
        "help": "Messages a UI user may send per minute (429 beyond)."})
    ui_votes_per_minute: int = field(default=30, metadata={"help": "Arena votes a UI user may cast per minute."})

    def limits(self) -> ServerLimits:
        """The admission limits of the app (or of each Ray replica)."""
        from kaiyuan.serve.operations import ServerLimits

        return ServerLimits(max_concurrent=self.max_concurrent, max_queue=self.max_queue,
                            max_body_bytes=self.max_body_bytes, request_timeout_s=self.request_timeout)

    def llamacpp_options(self) -> dict[str, Any]:
        """The options of every llama.cpp engine (``LlamaCppEngine.from_path``)."""
        return {"n_ctx": self.context, "n_parallel": self.parallel, "prompt_cache": self.prompt_cache}

    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def arena_weights(self) -> dict[str, float]:
        """``--arena-weight NAME=W`` as a dict; a malformed one is refused, naming it."""
        weights: dict[str, float] = {}
        for item in self.arena_weight:
            name, sep, value = item.rpartition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = -1.0
            if not sep or not name or weight < 0:
                raise KaiyuanError(f"--arena-weight {item!r}: expected NAME=WEIGHT with a weight ≥ 0, e.g. tiny=2")
            weights[name] = weight
        return weights


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Raise a clear :class:`KaiyuanError` when ``host:port`` cannot be listened on (another server holds it), so
    that the failure comes before any model is loaded and before the server says it is serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds it
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise KaiyuanError(f"port {port} on {host} is in use: stop the server holding it or give another "
                                   "--port") from exc
            raise KaiyuanError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc
