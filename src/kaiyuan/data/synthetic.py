"""Synthetic tasks the project generates itself, deterministic from a seed.

``dates``: rewrite a date written in one of many human formats as ISO 8601 (``YYYY-MM-DD``). Small
instruction models get the year, month or day wrong or answer in prose; a short LoRA run teaches it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from kaiyuan.data.datasets import register_dataset
from kaiyuan.dates import DATES_ANSWER_PATTERN, MONTHS, date_example
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Artifact, Registry


def generate_dates(n_train: int, n_heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Train and held-out splits with no prompt in both (and no repeated prompt within one)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[dict] = []
    while len(examples) < n_train + n_heldout:
        example = date_example(rng)
        prompt = example["messages"][0]["content"]
        if prompt in seen:
            continue
        seen.add(prompt)
        examples.append(example)
    return examples[:n_train], examples[n_train:]


def extract_answer(text: str, pattern: str = DATES_ANSWER_PATTERN) -> str | None:
    """The first match of ``pattern`` in ``text`` (the whole stripped text when no pattern is given)."""
    if not pattern:
        return text.strip()
    match = re.search(pattern, text)
    return match.group(0) if match else None


TASKS = {"dates": (generate_dates, DATES_ANSWER_PATTERN)}


def _wrong_date(day: date, rng: random.Random) -> str:
    """A plausible mistake: the base model's typical errors on this task."""
    mistakes = [
        lambda: f"{2022}-{day.month:02d}-{day.day:02d}" if day.year != 2022 else None,  # year drift
        lambda: f"{day.year}-{day.day:02d}-{day.month:02d}" if day.day <= 12 and day.day != day.month else None,
        lambda: (day + timedelta(days=rng.choice([-1, 1]))).isoformat(),
        lambda: f"{MONTHS[day.month - 1]} {day.day}, {day.year}",  # not normalized at all
        lambda: f"{day.year % 100:02d}-{day.month:02d}-{day.day:02d}",
    ]
    while (wrong := rng.choice(mistakes)()) is None:
        pass
    return wrong


def _near_miss_date(day: date, rng: random.Random) -> str:
    """The mistakes a fine-tuned small model still makes: day and month swapped in a numeric date, or the
    day's digits garbled (3 → 30, 2 → 22, 31 → 03)."""
    options = [f"{day.year}-{day.day:02d}-{day.month:02d}"] if day.day <= 12 and day.day != day.month else []
    digits = f"{day.day:02d}"
    for garbled in sorted({digits[::-1], digits[1] + "0", digits[1] * 2, digits[0] * 2}):
        if garbled not in (digits, "00"):
            options.append(f"{day.year}-{day.month:02d}-{garbled}")
    return rng.choice(options)


REJECTED_STYLES = {"typical": _wrong_date, "near-miss": _near_miss_date}


def generate_date_preferences(n: int, seed: int, exclude: set[str] | None = None, style: str = "typical"
                              ) -> list[dict]:
    """Preference pairs for the dates task: chosen = the ISO date, rejected = a ``typical`` mistake of the base
    model (wrong year, prose, …) or a ``near-miss`` (see :func:`_near_miss_date`).

    Prompts in ``exclude`` (the held-out split's) are never used."""
    rng = random.Random(seed)
    pairs: list[dict] = []
    exclude = exclude or set()
    wrong = REJECTED_STYLES[style]
    while len(pairs) < n:
        example = date_example(rng)
        if example["messages"][0]["content"] in exclude:
            continue
        answer = example["messages"][1]["content"]
        rejected = wrong(date.fromisoformat(answer), rng)
        pairs.append({"prompt": [example["messages"][0]],
                      "chosen": [{"role": "assistant", "content": answer}],
                      "rejected": [{"role": "assistant", "content": rejected}]})
    return pairs


@dataclass
class SyntheticConfig:
    task: str = field(default="dates", metadata={"help": "Synthetic task (dates)."})
    n_train: int = field(default=400, metadata={"help": "Training conversations."})
    n_heldout: int = field(default=250, metadata={"help": "Held-out conversations."})
    n_pairs: int = field(default=0, metadata={"help": "Preference pairs (chosen/rejected) to generate too."})
    pairs_style: Literal["typical", "near-miss"] = field(default="typical", metadata={
        "help": "Rejected answers: typical base-model mistakes, or near misses (swapped day/month, garbled day)."})
    seed: int = field(default=0, metadata={"help": "Seed: same seed, same data."})


def run_synthetic(cfg: SyntheticConfig, registry: Registry | None = None) -> dict[str, Artifact]:
    """Generate and register the task's splits (in ``registry``; default KAIYUAN_HOME's): ``train``, ``heldout``
    and (if asked) ``pairs``."""

    if cfg.task not in TASKS:
        raise KaiyuanError(f"unknown synthetic task {cfg.task!r}; expected one of {', '.join(TASKS)}")
    generate, pattern = TASKS[cfg.task]
    train_rows, heldout_rows = generate(cfg.n_train, cfg.n_heldout, cfg.seed)
    source = f"kaiyuan.data.synthetic:{cfg.task}"
    config = {"task": cfg.task, "answer_pattern": pattern, "n_train": cfg.n_train, "n_heldout": cfg.n_heldout}
    out = {
        "train": register_dataset(train_rows, f"{cfg.task}-train", "CC0-1.0", source, {**config, "split": "train"},
                                  seed=cfg.seed, stage="synthetic", registry=registry),
        "heldout": register_dataset(heldout_rows, f"{cfg.task}-heldout", "CC0-1.0", source,
                                    {**config, "split": "heldout"}, seed=cfg.seed, stage="synthetic",
                                    registry=registry),
    }
    if cfg.n_pairs:
        heldout_prompts = {row["messages"][0]["content"] for row in heldout_rows}
        pairs = PREFERENCE_TASKS[cfg.task](cfg.n_pairs, cfg.seed + 1, heldout_prompts, cfg.pairs_style)
        out["pairs"] = register_dataset(pairs, f"{cfg.task}-pairs", "CC0-1.0", source,
                                        {**config, "split": "pairs", "n_pairs": cfg.n_pairs,
                                         "pairs_style": cfg.pairs_style}, seed=cfg.seed + 1, stage="synthetic",
                                        registry=registry)
    return out


PREFERENCE_TASKS = {"dates": generate_date_preferences}
