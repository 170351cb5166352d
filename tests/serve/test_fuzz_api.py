"""schemathesis against the server's own OpenAPI schema, with the served model's real name in it (an enum), so
generated requests reach generation: no response may be a 5xx, and every error is in OpenAI's shape."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

os.environ.setdefault("KAIYUAN_HOME", "")  # replaced below, before anything is registered


def _app():
    import tempfile

    os.environ["KAIYUAN_HOME"] = tempfile.mkdtemp(prefix="kaiyuan-fuzz-")
    from kaiyuan.models import resolve_model
    from kaiyuan.serve.engines.transformers_engine import TransformersEngine
    from kaiyuan.serve.operations import ServerLimits, with_operations
    from kaiyuan.serve.routes import create_app

    engine = TransformersEngine.from_reference(resolve_model("tiny-llama").id, "tiny", max_batch_size=4)
    engine.context_length = 96  # short replies keep each case quick; longer requests get the 400 they deserve
    app = create_app({"tiny": engine}, default_max_tokens=8)
    return app, with_operations(app, ServerLimits(max_body_bytes=200_000))


API, SERVED = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", SERVED)
CASES: list[int] = []


def _openai_shaped(response) -> None:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@schema.parametrize()
@settings(max_examples=int(os.environ.get("KAIYUAN_FUZZ_EXAMPLES", "120")), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_openai_shaped_errors(case):
    if case.method == "POST" and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "tiny"  # most cases reach generation (the rest are the enum's own checks)
    response = case.call(timeout=120)  # a 2-core box under load can be slow; a hang still fails
    CASES.append(response.status_code)
    assert response.status_code < 500, (response.status_code, response.text[:500], case.body)
    if response.status_code >= 400 and case.path.startswith("/v1/"):
        _openai_shaped(response)


def test_the_schema_names_the_served_model():
    spec = API.openapi()
    models = {name: c["properties"]["model"] for name, c in spec["components"]["schemas"].items()
              if name.endswith("Request")}
    assert models and all(m["enum"] == ["tiny"] for m in models.values())


def test_report_the_cases_fuzzed():
    """Writes the status counts for the closing figures (KAIYUAN_FUZZ_REPORT=path); asserts the run reached
    generation: some cases were answered 200."""
    from collections import Counter

    counts = Counter(CASES)
    if os.environ.get("KAIYUAN_FUZZ_REPORT"):
        with open(os.environ["KAIYUAN_FUZZ_REPORT"], "w") as out:
            out.write(f"{sum(counts.values())} cases: {dict(sorted(counts.items()))}\n")
    if CASES:
        assert counts[200] > 0 and not [c for c in counts if c >= 500]
