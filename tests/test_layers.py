"""The layers and the no-cycles rule (docs/architecture.md), as `make lint` checks them, and the rule that a kaiyuan
module is imported inside a function only when it wraps a heavy library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kaiyuan"
# kaiyuan modules that import torch / transformers / trl / fastapi / llama_cpp / ray / numpy at module level: they
# are imported where they are used, like the libraries they wrap, so that the CLI starts fast
HEAVY = {
    "kaiyuan.train.ppo_algorithm", "kaiyuan.train.answer_loss", "kaiyuan.evaluate.arena",
    "kaiyuan.serve.routes", "kaiyuan.serve.server", "kaiyuan.serve.ray_serve", "kaiyuan.serve.operations",
    "kaiyuan.serve.streaming", "kaiyuan.serve.engine_set", "kaiyuan.serve.engines.llamacpp_engine",
    "kaiyuan.serve.engines.transformers_engine", "kaiyuan.serve.engines.transformers_batching",
    "kaiyuan.serve.engines.vllm_engine", "kaiyuan.serve.serving_chat", "kaiyuan.serve.serving_completion",
    "kaiyuan.serve.engines.generation_processors",  # torch, transformers
    "kaiyuan.serve.serving_embedding", "kaiyuan.web.app", "kaiyuan.web.arena", "kaiyuan.web.chat",
    "kaiyuan.web.compare", "kaiyuan.web.leaderboard", "kaiyuan.web.login", "kaiyuan.web.model_pages",
    "kaiyuan.web.hub_pages",
    # fastapi; sqlalchemy (≈0.3 s more at every start)
    "kaiyuan.teamhub.app", "kaiyuan.teamhub.meta", "kaiyuan.teamhub.search", "kaiyuan.teamhub.verify",
    "kaiyuan.teamhub.gc",
    # the catalog: ≈1 s to parse the three imported catalogs, and only the commands that answer from it need it
    "kaiyuan.catalog.store", "kaiyuan.catalog.imported", "kaiyuan.hub.catalog_answers", "kaiyuan.cli.catalog",
}


def test_import_contracts_are_kept():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "0 broken" in done.stdout


def function_level_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kaiyuan"):
                    found.append((str(path.relative_to(ROOT)), node.lineno, node.module))
    return found


def test_kaiyuan_modules_are_imported_inside_functions_only_when_heavy():
    dodged = [f"{path}:{line}: from {module} import …" for path, line, module in function_level_imports()
              if module not in HEAVY]
    assert dodged == []


def test_only_the_cli_builds_tables_or_consoles():
    """Library code reports through return values, callbacks and kaiyuan.progress (its own progress bars); the
    tables and consoles people read are built in kaiyuan.cli."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("cli/") or relative == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in ("rich.table", "rich.console"):
                offenders.append(f"{relative}:{node.lineno}: from {node.module} import …")
    assert offenders == []
