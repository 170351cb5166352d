"""Scale-out: the same OpenAI-compatible app as N Ray Serve replicas behind Ray's HTTP proxy.

``run_ray_serve(models, replicas, ...)`` starts a local Ray instance, deploys one ``serve.ingress`` deployment
whose ASGI app is built *inside each replica* (engines loaded there, ``create_app`` wrapped with
``with_operations``), and blocks until SIGINT/SIGTERM. Every response carries ``x-kaiyuan-replica`` with the id of
the replica that answered. Admission limits and ``/metrics`` are per replica.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from kaiyuan.serve.engine_set import build_engines
from kaiyuan.serve.operations import ServerLimits

REPLICA_HEADER = b"x-kaiyuan-replica"
# environment the replicas need to see the driver's registry and offline settings
FORWARDED_ENV_PREFIXES = ("KAIYUAN_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "HUGGINGFACE_")


class ReplicaHeader:
    """ASGI middleware: tags every HTTP response with the id of the replica that produced it."""

    def __init__(self, app: Any, replica_id: Callable[[], str]) -> None:
        self.app, self.replica_id = app, replica_id
        self._id: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._id is None:
            self._id = self.replica_id()
        tag = self._id.encode("latin-1", "replace")

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, tag)]}
            await send(message)

        await self.app(scope, receive, tagged)


def current_replica_id() -> str:
    """This replica's id (``<deployment>#<unique id>``), whatever the Ray version calls it."""
    from ray import serve

    context = serve.get_replica_context()
    replica_id = getattr(context, "replica_id", None)
    if replica_id is not None:
        full = getattr(replica_id, "to_full_id_str", None)
        return full() if callable(full) else str(replica_id)
    return str(getattr(context, "replica_tag", "unknown"))


def app_builder(models: list[str], engine: str, api_key_hashes: list[str], default_max_tokens: int,
                limits: dict[str, Any], llamacpp_options: dict[str, Any] | None = None) -> Callable[[], Any]:
    """A no-argument function (pickled to the replicas) that loads the engines and returns the wrapped app."""

    def build() -> Any:
        from kaiyuan.serve.operations import with_operations
        from kaiyuan.serve.routes import create_app

        engines = build_engines(models, engine, llamacpp_options,
                                max_batch_size=(llamacpp_options or {}).get("n_parallel", 8))
        app = create_app(engines, api_key_hashes, default_max_tokens=default_max_tokens)
        return ReplicaHeader(with_operations(app, ServerLimits(**limits)), current_replica_id)

    return build


def deployment(models: list[str], replicas: int, engine: str = "auto", api_key_hashes: list[str] | None = None,
               default_max_tokens: int = 256, limits: ServerLimits | None = None, num_cpus: float = 0.5,
               num_gpus: float = 0.0, grace_period: float = 30.0, llamacpp_options: dict[str, Any] | None = None
               ) -> Any:
    """The bound Ray Serve application: ``replicas`` copies of the kaiyuan app."""
    from ray import serve

    limits = limits or ServerLimits()
    build = app_builder(list(models), engine, list(api_key_hashes or []), default_max_tokens, asdict(limits),
                        llamacpp_options)
    ingress = serve.ingress(build)(type("KaiyuanReplica", (), {}))
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        options["num_gpus"] = num_gpus
    dep = serve.deployment(
        ingress, name="kaiyuan", num_replicas=replicas, ray_actor_options=options,
        # let our admission control (queue, 503 + Retry-After) decide, not Ray's per-replica cap
        max_ongoing_requests=limits.max_concurrent + limits.max_queue,
        graceful_shutdown_timeout_s=grace_period)
    return dep.bind()


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def start_ray_serve(models: list[str], replicas: int, host: str = "127.0.0.1", port: int = 8000,
                    api_key_hashes: list[str] | None = None, *, engine: str = "auto", default_max_tokens: int = 256,
                    limits: ServerLimits | None = None, num_cpus: int | None = 2, replica_cpus: float = 0.5,
                    replica_gpus: float = 0.0, grace_period: float = 30.0,
                    llamacpp_options: dict[str, Any] | None = None, after_init: Callable[[], None] | None = None
                    ) -> None:
    """Start a local Ray instance and deploy the replicas; returns once they are all up (raises if one fails).
    ``after_init`` runs once Ray is up, before the deployment (to take the signal handlers back from Ray)."""
    import ray
    from ray import serve

    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": forwarded_env()},
             log_to_driver=False)
    if after_init is not None:
        after_init()
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(models, replicas, engine, api_key_hashes, default_max_tokens, limits, replica_cpus,
                         replica_gpus, grace_period, llamacpp_options), name="kaiyuan", route_prefix="/")


def stop_ray_serve() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run_ray_serve(models: list[str], replicas: int, host: str = "127.0.0.1", port: int = 8000,
                  api_key_hashes: list[str] | None = None, on_ready: Callable[[], None] | None = None,
                  **options: Any) -> None:
    """Serve until SIGINT/SIGTERM, then shut the deployment and Ray down."""
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def take_signals() -> None:  # after ray.init, which installs its own SIGTERM handlers (a native one aborts)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())

    try:
        start_ray_serve(models, replicas, host, port, api_key_hashes, after_init=take_signals, **options)
        if on_ready is not None:
            on_ready()
        while not stop.wait(0.5):
            pass
    finally:
        stop_ray_serve()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
