"""Benchmark: multiple-choice evaluation throughput, kaiyuan eval vs lm-evaluation-harness, same run.

Same model (SmolLM2-135M-Instruct, fp32), same task (MMLU, lm-evaluation-harness's own default ``mmlu``
prompt YAMLs pointed at the local CSVs of ../shared/data/benchmarks/mmlu), same machine. Checks that the
per-question predictions are identical, then writes the table to benchmarks/RESULTS.md.

MMLU's standard run scores the test split with the first 5 dev questions of the subject as examples.
../shared/data holds only the dev split, so the dev rows play both parts here: scored as a "test" split,
and the subject's 5-shot examples (every question of a subject shares one few-shot prefix, as in the
standard run; accuracy is meaningless since each answer is among the examples). Usage:
    python benchmarks/eval_mc_throughput.py [--shots 5] [--subjects 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SECTION = "## multiple-choice eval throughput"
SHARED = Path(os.environ.get("KAIYUAN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def lm_eval_tasks(mmlu_dir: Path, subjects: list[str], out: Path) -> list[str]:
    """lm-evaluation-harness's default mmlu YAMLs, with local JSONL files (the dev rows as the test split and
    as the few-shot split) in place of the hub dataset."""
    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    template = yaml.safe_load((tasks_dir / "_default_template_yaml").read_text())
    names = []
    for subject in subjects:
        with (mmlu_dir / "dev" / f"{subject}_dev.csv").open(encoding="utf-8", newline="") as f:
            rows = [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5])}
                    for r in csv.reader(f)]
        path = out / f"{subject}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files = {"test": str(path), "dev": str(path)}
        spec = {**template, **yaml.safe_load((tasks_dir / f"mmlu_{subject}.yaml").read_text())}
        for key in ("include", "tag", "dataset_name", "task_alias"):
            spec.pop(key, None)
        name = f"bench_mmlu_{subject}"
        spec.update(task=name, dataset_path="json", dataset_kwargs={"data_files": files}, test_split="test",
                    fewshot_split="dev")
        (out / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        names.append(name)
    return names


def run_lm_eval(model, tokenizer, task_dir: Path, names: list[str], shots: int, batch_size: int
                ) -> tuple[float, dict[str, list[int]]]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    manager = TaskManager(include_path=str(task_dir))
    started = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=names, num_fewshot=shots, task_manager=manager, log_samples=True,
                          fewshot_random_seed=1234)
    seconds = time.perf_counter() - started
    preds = {}
    for name in names:
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        preds[name.removeprefix("bench_mmlu_")] = [
            max(range(4), key=lambda i, s=s: (s["filtered_resps"][i][0], -i)) for s in samples]
    return seconds, preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--subjects", type=int, default=20, help="First N subjects (alphabetical).")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
    from kaiyuan.models import load_model, resolve_model

    mmlu_dir = SHARED / "benchmarks" / "mmlu"
    subjects = sorted(p.name[: -len("_dev.csv")] for p in (mmlu_dir / "dev").glob("*_dev.csv"))[: args.subjects]
    work = Path(tempfile.mkdtemp(prefix="kaiyuan-mc-bench-"))
    data_dir = work / "mmlu"
    for part in ("test", "dev"):
        (data_dir / part).mkdir(parents=True, exist_ok=True)
        for subject in subjects:
            source = mmlu_dir / "dev" / f"{subject}_dev.csv"
            (data_dir / part / f"{subject}_{part}.csv").write_bytes(source.read_bytes())
    task_dir = work / "lm_eval_tasks"
    task_dir.mkdir()
    names = lm_eval_tasks(mmlu_dir, subjects, task_dir)

    artifact = resolve_model(args.model)
    loaded = load_model(artifact)
    rows = []
    started = time.perf_counter()
    ours = run_benchmark(BenchmarkConfig(model=artifact.id, task="mmlu", data_dir=str(data_dir), split="test",
                                         shots=args.shots, batch_size=args.batch_size, cache=False), register=False)
    kaiyuan_seconds = time.perf_counter() - started
    our_preds: dict[str, list[int]] = {}
    for p in ours.predictions:
        our_preds.setdefault(p["subject"], []).append(p["pred"])
    n = ours.n
    for label, batch in (("lm-evaluation-harness 0.4.13, batch_size=1 (its default; baseline)", 1),
                         (f"lm-evaluation-harness 0.4.13, batch_size={args.batch_size}", args.batch_size)):
        seconds, preds = run_lm_eval(loaded.model, loaded.tokenizer, task_dir, names, args.shots, batch)
        same = sum(a == b for s in subjects for a, b in zip(preds[s], our_preds[s], strict=True))
        rows.append((label, seconds, same))
    cached_started = time.perf_counter()
    run_benchmark(BenchmarkConfig(model=artifact.id, task="mmlu", data_dir=str(data_dir), split="test",
                                  shots=args.shots, batch_size=args.batch_size), register=False)
    run_benchmark(BenchmarkConfig(model=artifact.id, task="mmlu", data_dir=str(data_dir), split="test",
                                  shots=args.shots, batch_size=args.batch_size), register=False)
    cached_seconds = time.perf_counter() - cached_started  # first fills the cache, second reads it

    baseline = rows[0][1]
    lines = [
        SECTION, "",
        f"MMLU, {len(subjects)} subjects, {n} questions × 4 choices, {args.shots}-shot (the dev rows scored as the "
        f"test split, with the subject's first {args.shots} dev questions as examples: ../shared/data has only dev), "
        f"model `{args.model}` ({artifact.id}) in fp32, {platform.machine()} × {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {date.today()}. Both run lm-evaluation-harness's default `mmlu` prompts; "
        f"baseline = lm-evaluation-harness with its default batch size, same run, same loaded model. kaiyuan's "
        f"accuracy (inflated: the answers are among the examples): {ours.metrics['acc']:.4f}.", "",
        "| harness | seconds | questions/s | speed-up vs baseline | predictions identical to kaiyuan's |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, seconds, same in rows:
        lines.append(f"| {label} | {seconds:.1f} | {n / seconds:.2f} | {baseline / seconds:.2f}× | {same}/{n} |")
    lines.append(f"| kaiyuan eval (few-shot prefix computed once per subject, batch {args.batch_size}, LM head only at "
                 "scored positions) "
                 f"| {kaiyuan_seconds:.1f} | {n / kaiyuan_seconds:.2f} | {baseline / kaiyuan_seconds:.2f}× | "
                 f"{n}/{n} |")
    lines += ["", f"Cache: filling the request cache and re-running took {cached_seconds:.1f} s in all "
                  "(the re-run reads every result from SQLite)."]
    write_section(SECTION, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
