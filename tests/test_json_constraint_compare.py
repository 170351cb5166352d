"""benchmarks/json_constraint_compare.py: its suite is what it says (jsonschema agrees with every label), kaiyuan's
constraint holds to it on the text (no tokenizer needed), and a library that is not installed is skipped."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kaiyuan.serve.engines.base import UnsupportedRequestError
from kaiyuan.serve.engines.json_constraint import advance, compile_schema, finished, initial_state

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "json_constraint_compare.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("json_constraint_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_suite_agrees_with_jsonschema(bench):
    pytest.importorskip("jsonschema")
    bench.check_suite(bench.CASES)
    assert all(valid and invalid for _, _, valid, invalid in bench.CASES)
    assert set(bench.QUICK_CASES) <= {name for name, *_ in bench.CASES}


def test_kaiyuan_is_sound_on_the_suite(bench):
    refused, rejected_valid = [], []
    for name, schema, valid, invalid in bench.CASES:
        try:
            node = compile_schema(schema)
        except UnsupportedRequestError:
            refused.append(name)
            continue
        for text in invalid:
            assert not finished(advance(initial_state(node), text)), (name, text)
        rejected_valid += [(name, t) for t in valid if not finished(advance(initial_state(node), t))]
    # by design: an object with properties takes only those keys
    assert rejected_valid == [("tests/serve: person (llama.cpp)", '{"name":"A","age":2,"x":[1]}')]
    assert "tests/serve: pydantic Item (strict)" not in refused and len(refused) < len(bench.CASES) // 2


@pytest.mark.parametrize("cls, module", [("LLGuidance", "llguidance"), ("OutlinesCore", "outlines_core"),
                                         ("XGrammar", "xgrammar")])
def test_a_missing_library_raises_import_error(bench, monkeypatch, cls, module):
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(ImportError):
        getattr(bench, cls)(tokenizer=None)
