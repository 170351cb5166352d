"""The benchmark harness: prompts and per-question predictions equal lm-evaluation-harness's own."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

SHARED = Path(os.environ.get("KAIYUAN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
BENCH = SHARED / "benchmarks"
needs_shared = pytest.mark.skipif(not (BENCH / "mmlu").is_dir(), reason="../shared/data not present")


def lm_eval_task_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def lm_eval_task(benchmark: str, subject: str, files: dict[str, str], name: str) -> dict:
    """lm-evaluation-harness's own YAML of one subject (its default template + subject file), pointed at local
    JSONL files instead of the hub."""
    tasks = lm_eval_task_dir()
    template, subject_file = {
        "mmlu": ("mmlu/default/_default_template_yaml", f"mmlu/default/mmlu_{subject}.yaml"),
        "ceval": ("ceval/_default_ceval_yaml", f"ceval/ceval-valid_{subject}.yaml"),
        "cmmlu": ("cmmlu/_default_template_yaml", f"cmmlu/cmmlu_{subject}.yaml"),
    }[benchmark]
    spec = {**yaml.safe_load((tasks / template).read_text()), **yaml.safe_load((tasks / subject_file).read_text())}
    for key in ("include", "tag", "dataset_name", "validation_split", "task_alias"):
        spec.pop(key, None)
    spec.update(task=name, dataset_path="json", dataset_kwargs={"data_files": files}, test_split="test",
                fewshot_split="dev")
    return spec


def docs_of(benchmark: str, path: Path) -> list[dict]:
    """A published CSV as the hub dataset's rows (the fields lm-evaluation-harness's templates use)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if benchmark == "mmlu":
        return [{"question": r[0], "subject": "", "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in rows]
    if benchmark == "ceval":
        return [{"id": r[0], "question": r[1], "A": r[2], "B": r[3], "C": r[4], "D": r[5], "answer": r[6],
                 "explanation": r[7]} for r in rows[1:]]
    return [{"Question": r[1], "A": r[2], "B": r[3], "C": r[4], "D": r[5], "Answer": r[6]} for r in rows[1:]]


def csv_name(benchmark: str, subject: str, split: str) -> str:
    return f"{subject}.csv" if benchmark == "cmmlu" else f"{subject}_{split}.csv"


def run_lm_eval(model, tokenizer, task_dir: Path, tasks: list[str], shots: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1, device="cpu")
    out = simple_evaluate(model=lm, tasks=tasks, num_fewshot=shots,
                          task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
                          random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                          fewshot_random_seed=1234)
    return out["samples"]


@needs_shared
@pytest.mark.parametrize("benchmark,subjects,shots", [
    ("mmlu", ["abstract_algebra", "world_religions"], 0),
    ("mmlu", ["high_school_physics"], 3),
    ("ceval", ["computer_network", "law"], 2),
    ("cmmlu", ["agronomy", "chinese_history"], 2),
])
def test_predictions_equal_lm_evaluation_harness(tmp_path, tiny, benchmark, subjects, shots):
    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.models import load_model

    data_dir, task_dir = tmp_path / benchmark, tmp_path / "lm_eval_tasks"
    task_dir.mkdir()
    names = {}
    for subject in subjects:
        source = BENCH / benchmark / "dev" / csv_name(benchmark, subject, "dev")
        files = {}
        for split in ("test", "dev"):  # scored questions: the dev rows; few-shot examples: the dev rows too
            (data_dir / split).mkdir(parents=True, exist_ok=True)
            (data_dir / split / csv_name(benchmark, subject, split)).write_bytes(source.read_bytes())
            jsonl = tmp_path / f"{subject}_{split}.jsonl"
            jsonl.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs_of(benchmark, source)))
            files[split] = str(jsonl)
        names[subject] = f"parity_{benchmark}_{subject}"
        (task_dir / f"{names[subject]}.yaml").write_text(
            yaml.safe_dump(lm_eval_task(benchmark, subject, files, names[subject]), allow_unicode=True))
    if benchmark == "ceval":
        (data_dir / "subject_mapping.json").write_bytes((BENCH / "ceval" / "subject_mapping.json").read_bytes())

    loaded = load_model(tiny)
    samples = run_lm_eval(loaded.model, loaded.tokenizer, task_dir, list(names.values()), shots)
    ours = run_benchmark(BenchmarkConfig(model=tiny.id, task=benchmark, data_dir=str(data_dir), split="test",
                                         shots=shots, batch_size=4))
    from kaiyuan.evaluate.tasks import load_task

    items = {i.id: i for i in load_task(benchmark, data_dir, "test", shots).items}
    compared = 0
    for subject in subjects:
        theirs = sorted(samples[names[subject]], key=lambda s: s["doc_id"])
        mine = [p for p in ours.predictions if p["subject"] == subject]
        assert len(theirs) == len(mine) == 5
        for sample, prediction in zip(theirs, mine, strict=True):
            contexts = {a[0] for a in sample["arguments"]}
            assert contexts == {items[prediction["id"]].context}  # character for character
            assert [a[1] for a in sample["arguments"]] == [" A", " B", " C", " D"]
            lls = [r[0] for r in sample["filtered_resps"]]
            assert prediction["loglikelihoods"] == pytest.approx(lls, abs=1e-4)
            assert prediction["acc"] == sample["acc"]
            assert prediction["acc_norm"] == sample.get("acc_norm", prediction["acc_norm"])  # mmlu: acc only
            compared += 1
    assert compared == 5 * len(subjects)


def test_rolling_windows_equal_lm_evaluation_harness():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from kaiyuan.evaluate.language_model import rolling_windows

    for n_tokens in (1, 5, 7, 8, 9, 23):
        tokens = list(range(100, 100 + n_tokens))
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 0, 8, 1)]
        assert list(rolling_windows(tokens, 0, 8)) == theirs


def test_gsm8k_answers_extracted_like_lm_evaluation_harness(tmp_path):
    from kaiyuan.evaluate.harness import score_generation
    from kaiyuan.evaluate.tasks import load_task

    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "A car costs $1,200 and a bike $300. Total?", "answer": "1200 + 300 = 1500\n#### 1,500"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task("gsm8k", tmp_path, "test", 1)
    first, second = data.items
    assert first.context == ("Question: A car costs $1,200 and a bike $300. Total?\nAnswer: 1200 + 300 = 1500\n"
                             "#### 1,500\n\nQuestion: Tom has 3 apples and buys 4. How many?\nAnswer:")
    assert first.until == ["Question:", "</s>", "<|im_end|>"]
    scored = score_generation(first, " 3 + 4 = 7.\n#### 7")
    assert scored["answers"] == {"strict-match": "7", "flexible-extract": "7"}
    assert scored["exact_match"] == 1.0
    scored = score_generation(second, " The total is $1,500.")
    assert scored["answers"] == {"strict-match": "[invalid]", "flexible-extract": "1500"}
    assert (scored["exact_match,strict-match"], scored["exact_match,flexible-extract"]) == (0.0, 1.0)


def write_yaml_task(tmp_path: Path, output_type: str = "multiple_choice") -> Path:
    docs = [{"q": "Is the sky blue?", "label": 0}, {"q": "Is fire cold?", "label": 1},
            {"q": "Do fish swim?", "label": 0}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    spec = {"task": "yesno", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "test.jsonl"}},
            "test_split": "test", "fewshot_split": "test", "fewshot_config": {"sampler": "first_n"},
            "output_type": output_type, "description": "Answer yes or no.\n\n", "doc_to_text": "Q: {{q}}\nA:",
            "doc_to_choice": ["yes", "no"], "doc_to_target": "label"}
    path = tmp_path / "yesno.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_yaml_task_prompts_and_exact_scores(tmp_path, tiny):
    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.evaluate.tasks import load_task

    path = write_yaml_task(tmp_path)
    items = load_task(str(path), None, None, 1).items
    assert items[0].context == "Answer yes or no.\n\nQ: Is fire cold?\nA: no\n\nQ: Is the sky blue?\nA:"
    assert items[1].context == "Answer yes or no.\n\nQ: Is the sky blue?\nA: yes\n\nQ: Is fire cold?\nA:"
    assert [i.continuations() for i in items] == [[" yes", " no"]] * 3 and [i.gold for i in items] == [0, 1, 0]

    cfg = BenchmarkConfig(model=tiny.id, task=str(path), shots=1, predictions=str(tmp_path / "p.jsonl"))
    first = run_benchmark(cfg)
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["id"] for p in lines] == ["test:1", "test:2", "test:3"]
    for p in lines:  # acc and acc_norm follow from the recorded log-likelihoods exactly
        lls = p["loglikelihoods"]
        assert p["pred"] == (0 if lls[0] >= lls[1] else 1)
        assert p["pred_norm"] == (0 if lls[0] / 3 >= lls[1] / 2 else 1)
        assert p["acc"] == float(p["pred"] == p["gold"])
    assert first.metrics["acc"] == sum(p["acc"] for p in lines) / 3
    assert first.artifact.manifest["parents"] == [{"id": tiny.id, "relation": "evaluated_model"}]

    from kaiyuan.evaluate import harness
    from kaiyuan.evaluate.language_model import TransformersLM

    passes = []
    original = harness.open_language_model

    def spy(cfg, registry):
        lm, model_id, artifact = original(cfg, registry)
        passes.append(lm)
        return lm, model_id, artifact

    harness.open_language_model = spy
    try:
        again = run_benchmark(cfg)
    finally:
        harness.open_language_model = original
    assert isinstance(passes[0], TransformersLM) and passes[0].forward_passes == 0  # every request from the cache
    assert again.predictions == first.predictions


def test_bad_benchmark_files_name_file_line_and_field(tmp_path):
    from kaiyuan.errors import KaiyuanError
    from kaiyuan.evaluate.tasks import load_task

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "anatomy_dev.csv").write_text("What?,a,b,c,d,A\nWhy?,a,b,c,d,E\n")
    with pytest.raises(KaiyuanError) as error:
        load_task("mmlu", tmp_path, "dev", 0)
    assert str(error.value) == f"{tmp_path / 'dev' / 'anatomy_dev.csv'}:2: answer: expected one of A, B, C, D, got 'E'"
    with pytest.raises(KaiyuanError) as error:
        load_task("mmlu", tmp_path, "test", 0)
    assert str(error.value) == f"{tmp_path / 'test'}: no such split directory (found: dev)"
    with pytest.raises(KaiyuanError) as error:
        load_task("mmlu", None, "dev", 0)
    assert "--data-dir is required" in str(error.value)


@needs_shared
def test_cli_eval_prints_subjects_categories_and_json(home, tiny, tmp_path):
    from typer.testing import CliRunner

    from kaiyuan.cli import app

    mmlu = tmp_path / "mmlu"
    (mmlu / "dev").mkdir(parents=True)
    for subject in ("astronomy", "marketing"):
        name = f"{subject}_dev.csv"
        (mmlu / "dev" / name).write_bytes((BENCH / "mmlu" / "dev" / name).read_bytes())
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "tiny-llama", "--task", "mmlu", "--data-dir", str(mmlu), "--split", "dev",
                                 "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 4 and set(report["subjects"]) == {"astronomy", "marketing"}
    assert set(report["categories"]) == {"other", "stem"}  # lm-evaluation-harness groups
    assert report["metrics"]["acc"] == (report["subjects"]["marketing"]["acc"] * 2
                                        + report["subjects"]["astronomy"]["acc"] * 2) / 4
    result = runner.invoke(app, ["eval", "tiny-llama", "--task", "mmlu", "--data-dir", str(mmlu), "--split", "dev",
                                 "--limit", "2"])
    assert result.exit_code == 0 and "overall" in result.stdout and "astronomy" in result.stdout


def test_generation_task_against_an_openai_compatible_endpoint(tmp_path, home):
    """Generation tasks run against any OpenAI-compatible URL: the context is the prompt, greedy, stop strings."""
    from fastapi import FastAPI

    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.serve.server import BackgroundServer

    seen = []
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    def completions(body: dict) -> dict:
        seen.append(body)
        text = " 3 + 4 = 7\n#### 7\n\nQuestion: next" if "apples" in body["prompt"] else " I think 12.\nQuestion:"
        return {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]}

    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "#### 7"},
            {"question": "What is 5 + 6?", "answer": "#### 11"}]
    for split in ("test", "train"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with BackgroundServer(app) as server:
        result = run_benchmark(BenchmarkConfig(model="served", task="gsm8k", data_dir=str(tmp_path), shots=0,
                                               base_url=server.base_url, max_new_tokens=64))
    assert [s["prompt"] for s in seen] == ["Question: Tom has 3 apples and buys 4. How many?\nAnswer:",
                                           "Question: What is 5 + 6?\nAnswer:"]
    assert all(s["temperature"] == 0 and s["max_tokens"] == 64 and s["stop"] == ["Question:", "</s>", "<|im_end|>"]
               for s in seen)
    assert [p["answers"] for p in result.predictions] == [{"strict-match": "7", "flexible-extract": "7"},
                                                          {"strict-match": "[invalid]", "flexible-extract": "12"}]
    assert result.metrics == {"exact_match": 0.5}
    assert result.artifact.manifest["parents"] == []  # an endpoint is no registry model


def test_several_models_give_a_comparison_chart(tmp_path, home):
    from typer.testing import CliRunner

    from kaiyuan.cli import app

    task = write_yaml_task(tmp_path)
    chart = tmp_path / "compare.png"
    result = CliRunner().invoke(app, ["eval", "tiny-llama", "tiny-llama@1", "--task", str(task), "--png", str(chart),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["n"] for r in report["results"]] == [3, 3] and report["png"] == str(chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shared_few_shot_prefix_is_computed_once_with_the_same_scores(tiny):
    from kaiyuan.evaluate.language_model import TransformersLM, prefix_groups
    from kaiyuan.models import load_model

    assert prefix_groups({(1, 2, 3, 4): 1, (1, 2, 3, 5, 6): 2, (9, 9): 1}, 2) == [
        (3, [(1, 2, 3, 4), (1, 2, 3, 5, 6)]), (0, [(9, 9)])]
    assert prefix_groups({(1, 2, 3, 4): 1, (1, 2, 3, 5, 6): 2}, 4) == [(0, [(1, 2, 3, 4)]), (0, [(1, 2, 3, 5, 6)])]

    loaded = load_model(tiny)
    shots = "".join(f"Convert date {n}: July {n}, 1976\nAnswer: 1976-07-{n:02d}\n\n" for n in range(1, 6))
    requests = [(shots + f"Convert date: {q}\nAnswer:", c) for q in ("May 3, 2001", "June 9, 1999", "4 Jan 2020")
                for c in (" 2001-05-03", " 1999-06-09", " yes")]
    plain = TransformersLM(loaded.model, loaded.tokenizer, tiny.id, batch_size=2, cache=False)
    plain.min_shared_prefix = 10**9
    shared = TransformersLM(loaded.model, loaded.tokenizer, tiny.id, batch_size=2, cache=False)
    expected, got = plain.loglikelihood(requests), shared.loglikelihood(requests)
    assert [g for _, g in got] == [g for _, g in expected]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected], abs=1e-4)
    assert shared.forward_passes == 1 + plain.forward_passes  # the shared prefix once, then the same batches


def test_llamacpp_engine_scores_a_gguf_like_the_transformers_engine(tmp_path, home):
    """The same task on SmolLM2's GGUF: llama.cpp (quantized compute) and transformers (dequantized) agree."""
    pytest.importorskip("llama_cpp")
    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    task = write_yaml_task(tmp_path)
    by_llamacpp = run_benchmark(BenchmarkConfig(model=str(gguf), task=str(task), engine="llamacpp"), register=False)
    by_transformers = run_benchmark(BenchmarkConfig(model=str(gguf), task=str(task), engine="transformers"),
                                    register=False)
    assert by_llamacpp.model_id.startswith("gguf-")
    assert [p["pred"] for p in by_llamacpp.predictions] == [p["pred"] for p in by_transformers.predictions]
    for ours, theirs in zip(by_llamacpp.predictions, by_transformers.predictions, strict=True):
        assert ours["loglikelihoods"] == pytest.approx(theirs["loglikelihoods"], abs=0.5)


def test_piqa_and_lambada_read_their_published_formats(tmp_path, tiny):
    import math

    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.evaluate.tasks import load_task

    piqa = tmp_path / "piqa"
    piqa.mkdir()
    goals = [{"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Paint the lid."},
             {"goal": "Dry wet hands", "sol1": "Use a wet towel.", "sol2": "Use a dry towel."}]
    (piqa / "valid.jsonl").write_text("".join(json.dumps(g) + "\n" for g in goals))
    (piqa / "valid-labels.lst").write_text("0\n1\n")
    items = load_task("piqa", piqa, None, 0).items
    assert [(i.context, i.choices, i.gold) for i in items] == [
        ("Question: Open a jar\nAnswer:", ["Twist the lid.", "Paint the lid."], 0),
        ("Question: Dry wet hands\nAnswer:", ["Use a wet towel.", "Use a dry towel."], 1)]
    (piqa / "valid-labels.lst").write_text("0\n")
    with pytest.raises(Exception) as error:
        load_task("piqa", piqa, None, 0)
    assert str(error.value) == f"{piqa / 'valid-labels.lst'}: 1 labels for 2 questions in {piqa / 'valid.jsonl'}"

    lambada = tmp_path / "lambada"
    lambada.mkdir()
    texts = ["the model can help you convert the date", "please answer the question user"]
    (lambada / "lambada_test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    result = run_benchmark(BenchmarkConfig(model=tiny.id, task="lambada", data_dir=str(lambada)), register=False)
    assert [p["gold"] for p in result.predictions] == [" date", " user"]
    lls = [p["loglikelihood"] for p in result.predictions]
    assert result.metrics["perplexity"] == pytest.approx(math.exp(-(lls[0] + lls[1]) / 2))
    assert result.metrics["acc"] == sum(p["acc"] for p in result.predictions) / 2


def test_tables_and_chart_legends_name_the_models(tmp_path, home, monkeypatch):
    from matplotlib.axes import Axes
    from typer.testing import CliRunner

    from kaiyuan.cli import app

    legends = []
    bar = Axes.bar
    monkeypatch.setattr(Axes, "bar", lambda self, *a, **k: legends.append(k.get("label")) or bar(self, *a, **k))
    task = write_yaml_task(tmp_path)
    result = CliRunner().invoke(app, ["eval", "tiny-llama", "tiny-llama@1", "--task", str(task), "--png",
                                      str(tmp_path / "compare.png"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["results"]
    names = [(r["model_name"], r["model_id"]) for r in report]
    assert [name for name, _ in names] == ["tiny-llama", "tiny-llama@1"]
    assert legends == [f"{name} ({model_id})" for name, model_id in names]
    text = CliRunner().invoke(app, ["eval", "tiny-llama", "--task", str(task)], terminal_width=200)
    assert f"tiny-llama ({names[0][1]})" in text.stdout
