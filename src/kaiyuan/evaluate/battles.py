"""Anonymous judged arena battles: pairs of models answer a prompt, the MT-bench pairwise judge
(:mod:`kaiyuan.evaluate.judge`) compares the answers in both orders, and the battles with a verdict are stored
for arena ratings (:mod:`kaiyuan.evaluate.arena`) and written as FastChat battle JSONL."""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.chat_backends import ChatBackend
from kaiyuan.evaluate.judge import (
    Question,
    _about,
    _Backends,
    generate_answer,
    grade_pairwise,
    load_judge_prompts,
    load_questions,
)
from kaiyuan.hub.manifest import atomic_write_text
from kaiyuan.hub.registry import Registry
from kaiyuan.progress import progress_bar


@dataclass
class BattleResult:
    battles: list[Any]  # kaiyuan.evaluate.arena.Battle
    unparsable: list[dict[str, Any]]  # comparisons left out: no verdict in one of the two orders
    n_prompts: int
    stored_in: str | None = None
    out: str | None = None

    @property
    def n_unparsable(self) -> int:
        return len(self.unparsable)

    def summary(self) -> dict[str, Any]:
        counts = {w: sum(b.winner == w for b in self.battles) for w in ("model_a", "model_b", "tie")}
        from kaiyuan.evaluate.arena import win_tie_loss

        wins = {m: {"win": c["wins"], "loss": c["losses"], "tie": c["ties"]}
                for m, c in win_tie_loss(self.battles).items()}
        return {"n_prompts": self.n_prompts, "n_battles": len(self.battles), "n_unparsable": self.n_unparsable,
                "winners": counts, "models": dict(sorted(wins.items())), "stored_in": self.stored_in,
                "out": self.out}


def load_prompts(path: str | Path) -> list[Question]:
    """Battle prompts: a JSONL file of MT-bench questions or ``{"prompt": ...}`` lines, or a text file with one
    prompt per line."""
    path = Path(path)
    if path.suffix in (".txt", ".text"):
        if not path.is_file():
            raise KaiyuanError(f"{path}: no such prompts file")
        lines = [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
        prompts = [Question(n, "general", [text]) for n, text in lines if text]
        if not prompts:
            raise KaiyuanError(f"{path}: no prompts")
        return prompts
    return load_questions(path)


def fastchat_battle(battle: Any) -> dict[str, Any]:
    """A battle as a line of FastChat's battle JSON (what its Elo / Bradley–Terry scripts read)."""
    return {"question_id": battle.question_id, "model_a": battle.model_a, "model_b": battle.model_b,
            "winner": battle.winner, "judge": battle.judge, "turn": 1, "anony": True, "tstamp": battle.tstamp,
            "conversation_a": [{"role": "user", "content": battle.prompt},
                               {"role": "assistant", "content": battle.answer_a}],
            "conversation_b": [{"role": "user", "content": battle.prompt},
                               {"role": "assistant", "content": battle.answer_b}]}


def write_battles_jsonl(battles: list[Any], path: str | Path) -> Path:

    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(fastchat_battle(b), ensure_ascii=False) + "\n" for b in battles))
    return path


def run_battles(models: list[str | ChatBackend], prompts: list[Question] | str | Path, judge: str | ChatBackend,
                pairs_per_prompt: int | None = None, seed: int = 0, max_tokens: int = 512,
                judge_max_tokens: int = 2048, judge_model: str | None = None, judge_prompts: str | None = None,
                api_key: str | None = None, out: str | Path | None = None, store: bool = True,
                db_path: str | Path | None = None, registry: Registry | None = None) -> BattleResult:
    """Anonymous judged battles: for each prompt, pairs of models (all pairs, or ``pairs_per_prompt`` random
    ones) answer it (first turn; greedy); the judge compares the answers in both orders without seeing the
    models' names. Battles with a verdict are stored (``arena.store_battles``) and, with ``out``, written as
    FastChat battle JSONL; comparisons without a verdict are left out and counted."""

    registry = registry or Registry()
    questions = load_prompts(prompts) if isinstance(prompts, str | Path) else list(prompts)
    if not questions:
        raise KaiyuanError("no prompts to battle on")
    judge_prompt_set = load_judge_prompts(judge_prompts)
    pool = _Backends(None, api_key, registry)
    contestants: dict[str, ChatBackend] = {}
    for model in models:
        backend = pool.get(model) if isinstance(model, str) else model
        if backend.name in contestants:
            raise KaiyuanError(f"two of the models are named {backend.name!r}; each model battles once")
        contestants[backend.name] = backend
    if len(contestants) < 2:
        raise KaiyuanError(f"a battle needs at least 2 models; got {len(contestants)}")
    if pairs_per_prompt is not None and pairs_per_prompt < 1:
        raise KaiyuanError(f"pairs per prompt must be at least 1; got {pairs_per_prompt}")
    judge_backend = pool.get(judge, judge_model) if isinstance(judge, str) else judge

    rng = random.Random(seed)
    all_pairs = list(itertools.combinations(contestants, 2))
    schedule = []
    for q in questions:
        chosen = all_pairs if pairs_per_prompt is None else rng.sample(all_pairs, min(pairs_per_prompt, len(all_pairs)))
        schedule += [(q, *(pair if rng.random() < 0.5 else pair[::-1])) for pair in chosen]

    from kaiyuan.evaluate.arena import Battle, arena_store_path, store_battles

    answers: dict[tuple[str, str], str] = {}
    battles, unparsable = [], []
    with progress_bar() as progress:
        task = progress.add_task(f"battles judged by {judge_backend.name}", total=len(schedule))
        for q, a, b in schedule:
            for model in (a, b):
                if (model, q.key) not in answers:
                    with _about(q):
                        answers[model, q.key] = generate_answer(contestants[model], q, max_tokens, n_turns=1)[0]
            question = Question(q.question_id, q.category, q.turns[:1], (q.reference or [])[:1] or None)
            with _about(q):
                grade = grade_pairwise(judge_backend, question, [answers[a, q.key]], [answers[b, q.key]],
                                       judge_prompt_set, turn=1, max_tokens=judge_max_tokens)
            if grade.winner == "error":
                unparsable.append({"question_id": q.question_id, "model_a": a, "model_b": b,
                                   "g1_winner": grade.g1_winner, "g2_winner": grade.g2_winner,
                                   "g1_judgment": grade.g1_judgment, "g2_judgment": grade.g2_judgment})
            else:
                battles.append(Battle(model_a=a, model_b=b, winner=grade.winner, prompt=q.turns[0],
                                      answer_a=answers[a, q.key], answer_b=answers[b, q.key],
                                      judge=judge_backend.name, question_id=str(q.question_id), tstamp=time.time()))
            progress.advance(task)
    result = BattleResult(battles, unparsable, len(questions))
    if store and battles:
        store_battles(battles, db_path)
        result.stored_in = str(db_path or arena_store_path())
    if out is not None:
        result.out = str(write_battles_jsonl(battles, out))
    return result
