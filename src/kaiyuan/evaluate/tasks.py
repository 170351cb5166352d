"""Benchmark tasks: read each benchmark's published files and turn every question into an :class:`Item`.

Prompts are character-for-character those of lm-evaluation-harness's default tasks (``mmlu``,
``ceval-valid``, ``cmmlu``, ``gsm8k``, ``piqa``, ``lambada_openai``): a description line, few-shot
examples joined by ``"\\n\\n"``, the question, and continuations after the target delimiter ``" "``.
User tasks are YAML files in lm-evaluation-harness's own task format (a useful subset of it), so a
task written for one runs in the other.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.subjects import CMMLU_SUBJECTS, MMLU_CATEGORIES

ItemKind = Literal["choice", "target", "generate", "rolling"]
LETTERS = ["A", "B", "C", "D"]


@dataclass
class AnswerFilter:
    """lm-evaluation-harness's ``regex`` + ``take_first`` filter: ``group_select`` picks among all matches."""

    name: str
    pattern: str
    group_select: int = 0

    def apply(self, text: str) -> str:
        matches = re.findall(self.pattern, text)
        if not matches:
            return "[invalid]"
        match = matches[self.group_select]
        if isinstance(match, tuple):
            match = next((m for m in match if m), "")
        return match.strip()


@dataclass
class Item:
    """One question. ``choice``: pick the likeliest of ``choices``; ``target``: score one continuation
    (acc = greedy, perplexity); ``generate``: generate until a stop string; ``rolling``: perplexity of
    the whole ``context``."""

    id: str
    subject: str
    kind: ItemKind
    context: str
    choices: list[str] = field(default_factory=list)
    gold: int | str | None = None
    target_delimiter: str = " "
    until: list[str] = field(default_factory=list)
    filters: list[AnswerFilter] = field(default_factory=list)
    ignore_patterns: list[str] = field(default_factory=list)
    ignore_case: bool = False

    def continuations(self) -> list[str]:
        if self.kind == "choice":
            return [self.target_delimiter + c for c in self.choices]
        if self.kind == "target":
            return [str(self.gold)]
        return []


@dataclass
class TaskData:
    name: str
    items: list[Item]
    metrics: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # subject → its categories
    weighting: Literal["questions", "subjects"] = "questions"  # how categories / overall average
    source: str = ""


@dataclass
class PromptFormat:
    """How a document becomes text: lm-evaluation-harness's doc_to_text / doc_to_target / doc_to_choice."""

    doc_to_text: Callable[[dict], str]
    doc_to_target: Callable[[dict], Any]  # index into choices, or the target string
    doc_to_choice: Callable[[dict], list[str]] | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"

    def target_text(self, doc: dict) -> str:
        target = self.doc_to_target(doc)
        if self.doc_to_choice is not None and isinstance(target, int):
            return self.doc_to_choice(doc)[target]
        return str(target)

    def context(self, doc: dict, shots: list[dict]) -> str:
        examples = "".join(self.doc_to_text(s) + self.target_delimiter + self.target_text(s) + self.fewshot_delimiter
                           for s in shots)
        return self.description + examples + self.doc_to_text(doc)


def first_n_shots(pool: list[dict], k: int, doc: dict | None) -> list[dict]:
    """lm-evaluation-harness's ``first_n`` sampler (a document is never its own example)."""
    if k <= 0:
        return []
    return [d for d in pool[:k + 1] if d is not doc][:k]


def seeded_shots(pool: list[dict], k: int, doc: dict | None, rng: random.Random) -> list[dict]:
    """lm-evaluation-harness's default sampler: ``k`` random examples from a seeded generator."""
    if k <= 0:
        return []
    return [d for d in rng.sample(pool, min(k + 1, len(pool))) if d is not doc][:k]


# ------------------------------------------------------------------------------------------------ file readers


def read_csv_rows(path: Path, n_columns: int, header: bool) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    start = 1 if header else 0
    out = []
    for number, row in enumerate(rows[start:], start=start + 1):
        if len(row) < n_columns:
            raise KaiyuanError(f"{path}:{number}: row: expected {n_columns} columns, got {len(row)}")
        out.append(row)
    return out


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise KaiyuanError(f"{path}:{number}: json: invalid JSON: {e.msg} (column {e.colno})") from None
    return rows


def require(doc: dict, key: str, where: str) -> Any:
    if key not in doc:
        raise KaiyuanError(f"{where}: {key}: missing field")
    return doc[key]


def split_dir(data_dir: Path, split: str) -> Path:
    path = data_dir / split
    if not path.is_dir():
        found = sorted(p.name for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
        raise KaiyuanError(f"{path}: no such split directory (found: {', '.join(found) or 'nothing'})")
    return path


def answer_index(value: str, where: str) -> int:
    if value.strip() not in LETTERS:
        raise KaiyuanError(f"{where}: answer: expected one of A, B, C, D, got {value!r}")
    return LETTERS.index(value.strip())


# ------------------------------------------------------------------------------------------------ MMLU family


def _lettered(question: str, options: list[str], answer_cue: str) -> str:
    return question.strip() + "".join(f"\n{letter}. {option}" for letter, option in zip(LETTERS, options,
                                                                                         strict=True)) + answer_cue


def _choice_items(task: str, subject: str, docs: list[dict], pool: list[dict], fmt: PromptFormat, shots: int
                  ) -> list[Item]:
    items = []
    for doc in docs:
        context = fmt.context(doc, first_n_shots(pool, shots, doc if pool is docs else None))
        items.append(Item(id=doc["id"], subject=subject, kind="choice", context=context,
                          choices=fmt.doc_to_choice(doc) if fmt.doc_to_choice else [], gold=fmt.doc_to_target(doc),
                          target_delimiter=fmt.target_delimiter))
    return items


def load_mmlu(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """MMLU: ``<split>/<subject>_<split>.csv`` (question,A,B,C,D,answer; no header); examples from dev."""
    files = sorted(split_dir(data_dir, split).glob(f"*_{split}.csv"))
    if not files:
        raise KaiyuanError(f"{data_dir / split}: no *_{split}.csv files")
    items: list[Item] = []
    for file in files:
        subject = file.name[: -len(f"_{split}.csv")]
        docs = _mmlu_docs(file)
        pool = docs if split == "dev" else (_mmlu_docs(data_dir / "dev" / f"{subject}_dev.csv") if shots else [])
        fmt = PromptFormat(
            doc_to_text=lambda d: _lettered(d["question"], d["choices"], "\nAnswer:"),
            doc_to_target=lambda d: d["answer"], doc_to_choice=lambda d: LETTERS,
            description=f"The following are multiple choice questions (with answers) about "
                        f"{subject.replace('_', ' ')}.\n\n")
        items += _choice_items("mmlu", subject, docs, pool, fmt, shots)
    categories = {s: [MMLU_CATEGORIES.get(s, "other")] for s in {i.subject for i in items}}
    return TaskData("mmlu", items, ["acc", "acc_norm"], categories, "questions", str(data_dir))


def _mmlu_docs(file: Path) -> list[dict]:
    if not file.is_file():
        raise KaiyuanError(f"{file}: missing (few-shot examples come from the dev split)")
    return [{"id": f"{file.stem}:{n}", "question": row[0], "choices": row[1:5],
             "answer": answer_index(row[5], f"{file}:{n}")}
            for n, row in enumerate(read_csv_rows(file, 6, header=False), start=1)]


def load_ceval(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """C-Eval: ``<split>/<subject>_<split>.csv`` (id,question,A,B,C,D,answer[,explanation]) and
    ``subject_mapping.json`` (subject → [English name, Chinese name, category])."""
    mapping_file = data_dir / "subject_mapping.json"
    if not mapping_file.is_file():
        raise KaiyuanError(f"{mapping_file}: missing (C-Eval's subject → [name, 中文名, category] file)")
    mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    files = sorted(split_dir(data_dir, split).glob(f"*_{split}.csv"))
    items: list[Item] = []
    for file in files:
        subject = file.name[: -len(f"_{split}.csv")]
        if subject not in mapping:
            raise KaiyuanError(f"{file}: subject {subject!r} is not in {mapping_file}")
        docs = _ceval_docs(file)
        pool = docs if split == "dev" else (_ceval_docs(data_dir / "dev" / f"{subject}_dev.csv") if shots else [])
        fmt = PromptFormat(doc_to_text=lambda d: _lettered(d["question"], d["choices"], "\n答案："),
                           doc_to_target=lambda d: d["answer"], doc_to_choice=lambda d: LETTERS,
                           description=f"以下是中国关于{mapping[subject][1]}的单项选择题，请选出其中的正确答案。\n\n")
        items += _choice_items("ceval", subject, docs, pool, fmt, shots)
    categories = {s: [mapping[s][2]] for s in {i.subject for i in items}}
    return TaskData("ceval", items, ["acc", "acc_norm"], categories, "subjects", str(data_dir))


def _ceval_docs(file: Path) -> list[dict]:
    if not file.is_file():
        raise KaiyuanError(f"{file}: missing (few-shot examples come from the dev split)")
    rows = read_csv_rows(file, 6, header=True)
    if rows and len(rows[0]) < 7:
        raise KaiyuanError(f"{file}: no answer column (C-Eval's test split has no released answers; use val)")
    return [{"id": f"{file.stem}:{row[0]}", "question": row[1], "choices": row[2:6],
             "answer": answer_index(row[6], f"{file}:{n}")} for n, row in enumerate(rows, start=2)]


def load_cmmlu(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """CMMLU: ``<split>/<subject>.csv`` with header ``,Question,A,B,C,D,Answer``."""
    files = sorted(split_dir(data_dir, split).glob("*.csv"))
    items: list[Item] = []
    for file in files:
        subject = file.stem
        if subject not in CMMLU_SUBJECTS:
            raise KaiyuanError(f"{file}: unknown CMMLU subject {subject!r}")
        docs = _cmmlu_docs(file)
        pool = docs if split == "dev" else (_cmmlu_docs(data_dir / "dev" / f"{subject}.csv") if shots else [])
        fmt = PromptFormat(doc_to_text=lambda d: _lettered(d["question"], d["choices"], "\n答案："),
                           doc_to_target=lambda d: d["answer"], doc_to_choice=lambda d: LETTERS,
                           description=f"以下是关于{CMMLU_SUBJECTS[subject][0]}的单项选择题，请直接给出正确答案的选项。\n\n")
        items += _choice_items("cmmlu", subject, docs, pool, fmt, shots)
    categories = {s: CMMLU_SUBJECTS[s][1] for s in {i.subject for i in items}}
    return TaskData("cmmlu", items, ["acc", "acc_norm"], categories, "subjects", str(data_dir))


def _cmmlu_docs(file: Path) -> list[dict]:
    if not file.is_file():
        raise KaiyuanError(f"{file}: missing (few-shot examples come from the dev split)")
    return [{"id": f"{file.stem}:{row[0]}", "question": row[1], "choices": row[2:6],
             "answer": answer_index(row[6], f"{file}:{n}")}
            for n, row in enumerate(read_csv_rows(file, 7, header=True), start=2)]


# ------------------------------------------------------------------------------------------------ others

GSM8K_FILTERS = [AnswerFilter("strict-match", r"#### (\-?[0-9\.\,]+)"),
                 AnswerFilter("flexible-extract", r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)]
GSM8K_IGNORE = [",", r"\$", r"(?s).*#### ", r"\.$"]


def load_gsm8k(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """GSM8K: ``<split>.jsonl`` of {question, answer ending in ``#### <number>``}; examples from train."""
    file = data_dir / f"{split}.jsonl"
    if not file.is_file():
        raise KaiyuanError(f"{file}: missing")
    docs = [{"id": f"{split}:{n}", **doc} for n, doc in enumerate(read_jsonl(file), start=1)]
    for doc in docs:
        for key in ("question", "answer"):
            require(doc, key, f"{file}:{doc['id'].split(':')[1]}")
    pool = docs if split == "train" else (read_jsonl(data_dir / "train.jsonl") if shots else [])
    rng = random.Random(seed)
    fmt = PromptFormat(doc_to_text=lambda d: f"Question: {d['question']}\nAnswer:", doc_to_target=lambda d: d["answer"])
    items = [Item(id=d["id"], subject="gsm8k", kind="generate",
                  context=fmt.context(d, seeded_shots(pool, shots, d, rng)), gold=d["answer"],
                  until=["Question:", "</s>", "<|im_end|>"], filters=GSM8K_FILTERS,
                  ignore_patterns=GSM8K_IGNORE, ignore_case=True) for d in docs]
    return TaskData("gsm8k", items, ["exact_match"], {}, "questions", str(data_dir))


def load_piqa(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """PIQA: ``<split>.jsonl`` of {goal, sol1, sol2} and ``<split>-labels.lst`` (one 0/1 per line)."""
    file, labels_file = data_dir / f"{split}.jsonl", data_dir / f"{split}-labels.lst"
    for f in (file, labels_file):
        if not f.is_file():
            raise KaiyuanError(f"{f}: missing")
    docs = read_jsonl(file)
    labels = labels_file.read_text().split()
    if len(labels) != len(docs):
        raise KaiyuanError(f"{labels_file}: {len(labels)} labels for {len(docs)} questions in {file}")
    items = []
    rng = random.Random(seed)
    fmt = PromptFormat(doc_to_text=lambda d: f"Question: {d['goal']}\nAnswer:", doc_to_target=lambda d: d["label"],
                       doc_to_choice=lambda d: [d["sol1"], d["sol2"]])
    for n, (doc, label) in enumerate(zip(docs, labels, strict=True), start=1):
        for key in ("goal", "sol1", "sol2"):
            require(doc, key, f"{file}:{n}")
        doc["label"] = int(label)
    for n, doc in enumerate(docs, start=1):
        items.append(Item(id=f"{split}:{n}", subject="piqa", kind="choice",
                          context=fmt.context(doc, seeded_shots(docs, shots, doc, rng)),
                          choices=[doc["sol1"], doc["sol2"]], gold=doc["label"]))
    return TaskData("piqa", items, ["acc", "acc_norm"], {}, "questions", str(data_dir))


def load_lambada(data_dir: Path, split: str, shots: int, seed: int) -> TaskData:
    """LAMBADA (OpenAI version): ``lambada_<split>.jsonl`` or ``<split>.jsonl`` of {text}; the target is the last
    word. Zero-shot only."""
    file = next((f for f in (data_dir / f"lambada_{split}.jsonl", data_dir / f"{split}.jsonl") if f.is_file()), None)
    if file is None:
        raise KaiyuanError(f"{data_dir}: neither lambada_{split}.jsonl nor {split}.jsonl")
    items = []
    for n, doc in enumerate(read_jsonl(file), start=1):
        text = require(doc, "text", f"{file}:{n}")
        words = text.split(" ")
        items.append(Item(id=f"{split}:{n}", subject="lambada", kind="target", context=" ".join(words[:-1]),
                          gold=" " + words[-1]))
    return TaskData("lambada", items, ["acc", "perplexity"], {}, "questions", str(data_dir))


BUILTIN_TASKS: dict[str, Callable[[Path, str, int, int], TaskData]] = {
    "mmlu": load_mmlu, "ceval": load_ceval, "cmmlu": load_cmmlu, "gsm8k": load_gsm8k, "piqa": load_piqa,
    "lambada": load_lambada,
}
DEFAULT_SPLITS = {"mmlu": "test", "ceval": "val", "cmmlu": "test", "gsm8k": "test", "piqa": "valid",
                  "lambada": "test"}


# ------------------------------------------------------------------------------------------------ YAML tasks


def _jinja() -> Any:
    import jinja2

    # nosec B701: renders prompts for a model (plain text), never HTML; escaping would corrupt the prompt
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # nosec B701


def _template_or_field(spec: Any, env: Any, where: str) -> Callable[[dict], Any]:
    """lm-evaluation-harness's rule: a plain field name reads that field; anything else is a Jinja template;
    lists and ints are taken as they are."""
    if isinstance(spec, list | int):
        return lambda doc: spec
    if not isinstance(spec, str):
        raise KaiyuanError(f"{where}: expected a field name, a Jinja template or a list, got {spec!r}")
    template = env.from_string(spec)

    def render(doc: dict) -> Any:
        if spec in doc:
            return doc[spec]
        try:
            return template.render(**doc)
        except Exception as e:  # noqa: BLE001 - jinja raises many kinds; report them all the same way
            raise KaiyuanError(f"{where}: cannot render {spec!r}: {e}") from None

    return render


def _as_choices(value: Any) -> list[str]:
    if isinstance(value, str):
        value = ast.literal_eval(value)
    return [str(v) for v in value]


def _as_target(value: Any, choices: list[str] | None) -> int | str:
    if choices is not None:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        return choices.index(text) if text in choices else text
    return value


def _read_split_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise KaiyuanError(f"{path}: missing")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data["data"]
    return read_jsonl(path)


def load_yaml_task(path: Path, split: str | None, shots: int | None, seed: int) -> TaskData:
    """A task in lm-evaluation-harness's YAML format with local files::

        task: my_task
        dataset_path: json
        dataset_kwargs: {data_files: {test: test.jsonl, dev: dev.jsonl}}   # relative to the YAML
        test_split: test
        fewshot_split: dev
        output_type: multiple_choice            # or generate_until, loglikelihood, loglikelihood_rolling
        description: "..."
        doc_to_text: "{{question}}\\nAnswer:"
        doc_to_choice: ["A", "B"]              # or a field name / template
        doc_to_target: answer
        num_fewshot: 0
        fewshot_config: {sampler: first_n}
        generation_kwargs: {until: ["\\n"]}
        filter_list: [{name: x, filter: [{function: regex, regex_pattern: "..."}, {function: take_first}]}]
    """
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    where = str(path)
    known = {"task", "dataset_path", "dataset_kwargs", "test_split", "validation_split", "fewshot_split",
             "training_split", "output_type", "description", "doc_to_text", "doc_to_target", "doc_to_choice",
             "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_config", "generation_kwargs",
             "filter_list", "metric_list", "metadata", "tag", "should_decontaminate", "doc_to_decontamination_query",
             "repeats", "dataset_name", "subject_field"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise KaiyuanError(f"{where}: unknown key(s) {', '.join(unknown)}")
    files = (spec.get("dataset_kwargs") or {}).get("data_files")
    if not isinstance(files, dict):
        raise KaiyuanError(f"{where}: dataset_kwargs.data_files: expected a mapping of split → local file")
    split = split or spec.get("test_split") or spec.get("validation_split")
    if split not in files:
        raise KaiyuanError(f"{where}: split {split!r} not in dataset_kwargs.data_files ({', '.join(files)})")
    docs = _read_split_file(path.parent / files[split])
    fewshot_split = spec.get("fewshot_split") or spec.get("training_split")
    k = spec.get("num_fewshot", 0) if shots is None else shots
    pool = docs if fewshot_split == split else (_read_split_file(path.parent / files[fewshot_split])
                                                if k and fewshot_split else [])
    if k and not pool:
        raise KaiyuanError(f"{where}: {k}-shot needs a fewshot_split")
    env = _jinja()
    output_type = spec.get("output_type", "multiple_choice")
    choice_fn = _template_or_field(spec["doc_to_choice"], env, f"{where}: doc_to_choice") if "doc_to_choice" in spec \
        else None
    text_fn = _template_or_field(require(spec, "doc_to_text", where), env, f"{where}: doc_to_text")
    target_fn = _template_or_field(require(spec, "doc_to_target", where), env, f"{where}: doc_to_target")
    fmt = PromptFormat(
        doc_to_text=lambda d: str(text_fn(d)),
        doc_to_target=lambda d: _as_target(target_fn(d), _as_choices(choice_fn(d)) if choice_fn else None),
        doc_to_choice=(lambda d: _as_choices(choice_fn(d))) if choice_fn else None,
        description=spec.get("description", ""), target_delimiter=spec.get("target_delimiter", " "),
        fewshot_delimiter=spec.get("fewshot_delimiter", "\n\n"))
    sampler = (spec.get("fewshot_config") or {}).get("sampler", "default")
    rng = random.Random(seed)
    filters = []
    for entry in spec.get("filter_list") or []:
        regex = next((f for f in entry.get("filter", []) if f.get("function") == "regex"), None)
        if regex:
            filters.append(AnswerFilter(entry.get("name", "regex"), regex["regex_pattern"],
                                        regex.get("group_select", 0)))
    subject_field = spec.get("subject_field")
    name = spec.get("task", path.stem)
    items = []
    for n, doc in enumerate(docs, start=1):
        examples = first_n_shots(pool, k, doc) if sampler == "first_n" else seeded_shots(pool, k, doc, rng)
        context = fmt.context(doc, examples)
        subject = str(doc[subject_field]) if subject_field else name
        item_id = f"{split}:{n}"
        if output_type == "multiple_choice":
            if fmt.doc_to_choice is None:
                raise KaiyuanError(f"{where}: multiple_choice needs doc_to_choice")
            items.append(Item(item_id, subject, "choice", context, fmt.doc_to_choice(doc), fmt.doc_to_target(doc),
                              fmt.target_delimiter))
        elif output_type == "loglikelihood":
            items.append(Item(item_id, subject, "target", context, gold=fmt.target_delimiter + fmt.target_text(doc)))
        elif output_type == "loglikelihood_rolling":
            items.append(Item(item_id, subject, "rolling", fmt.doc_to_text(doc)))
        elif output_type == "generate_until":
            until = (spec.get("generation_kwargs") or {}).get("until", ["\n\n"])
            items.append(Item(item_id, subject, "generate", context, gold=fmt.target_text(doc),
                              until=[until] if isinstance(until, str) else list(until), filters=filters))
        else:
            raise KaiyuanError(f"{where}: output_type: expected multiple_choice, loglikelihood, "
                               f"loglikelihood_rolling or generate_until, got {output_type!r}")
    metrics = {"multiple_choice": ["acc", "acc_norm"], "loglikelihood": ["acc", "perplexity"],
               "loglikelihood_rolling": ["word_perplexity", "bits_per_byte"],
               "generate_until": ["exact_match"]}[output_type]
    return TaskData(name, items, metrics, {}, "questions", str(path))


def load_task(task: str, data_dir: Path | None, split: str | None, shots: int | None, seed: int = 1234,
              limit: int | None = None) -> TaskData:
    """A built-in task read from ``data_dir``, or a YAML task file."""
    if task.endswith((".yaml", ".yml")):
        data = load_yaml_task(Path(task), split, shots, seed)
    elif task in BUILTIN_TASKS:
        if data_dir is None:
            raise KaiyuanError(f"--data-dir is required for the built-in task {task!r} (the directory holding its "
                               "published files)")
        default_shots = 5 if task == "gsm8k" else 0
        data = BUILTIN_TASKS[task](Path(data_dir), split or DEFAULT_SPLITS[task],
                                   default_shots if shots is None else shots, seed)
    else:
        raise KaiyuanError(f"unknown task {task!r}; expected one of {', '.join(BUILTIN_TASKS)} or a task .yaml file")
    if not data.items:
        raise KaiyuanError(f"{task}: no questions found in {data.source}")
    if limit is not None:
        data.items = _limit_per_subject(data.items, limit)
    return data


def _limit_per_subject(items: list[Item], limit: int) -> list[Item]:
    """The first ``limit`` questions of every subject (lm-evaluation-harness applies --limit per task)."""
    taken: dict[str, int] = {}
    out = []
    for item in items:
        if taken.get(item.subject, 0) < limit:
            taken[item.subject] = taken.get(item.subject, 0) + 1
            out.append(item)
    return out
