"""``/leaderboard``: Bradley–Terry ratings of the served models, from the arena's human votes, the LLM-judge battles
(``KAIYUAN_HOME/arena.sqlite``), or both.

Ratings, 95% bootstrap intervals (1000 rounds, seed 0), ranks and win/tie/loss counts are
:func:`kaiyuan.evaluate.arena.leaderboard`'s; the intervals are drawn as an SVG on the server. Human votes count
whether the battle was anonymous or named; a vote whose replies leaked a model's identity is left out (and counted),
as FastChat's ``clean_battle_data`` does. Beside each model: its registered benchmark scores (eval artifacts whose
evaluated model has the served name — for ``base:adapter``, the adapter's name).

A board is cached per (home, source, number of votes, number of judge battles): ``/ui/leaderboard``, which the page
polls every 2 s, costs two ``COUNT(*)`` queries until a vote or battle lands; then its ``version`` changes and the
page swaps in the new fragment.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.arena import (
    STORE_NAME,
    Battle,
    battle_from_record,
    count_stored_battles,
    leaderboard,
    load_stored_battles,
    win_tie_loss,
)
from kaiyuan.home import registry_path
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.web.context import UIState, api_error, current_user, ui_state
from kaiyuan.web.render import error_page, page, templates
from kaiyuan.web.store import UIStore, battle_record

router = APIRouter(include_in_schema=False)

SOURCES = {"both": "Human votes + LLM judge", "human": "Human votes", "judge": "LLM judge"}
ROUNDS, SEED = 1000, 0
CACHE_SIZE = 32
MODEL_KINDS = ("model", "adapter")


# ---------------------------------------------------------------------------------------------- the board


@dataclass(frozen=True)
class Standing:
    """One model's row; ``rating`` and the rest are None while the ratings are not defined."""

    model: str
    battles: int
    wins: int
    ties: int
    losses: int
    rank: int | None = None
    rating: float | None = None
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    value: float
    eval_id: str


@dataclass
class Board:
    source: str
    standings: list[Standing]
    battles: int  # battles rated (or counted, while there are no ratings)
    human_votes: int  # human votes among them
    judge_battles: int  # judge battles among them
    leaked: int  # human votes left out: their replies leaked a model's identity
    unreadable: int = 0  # human votes that are not a valid battle record
    reason: str | None = None  # why there are no ratings (yet)
    skipped_rounds: int = 0
    rounds: int = ROUNDS
    seed: int = SEED
    tasks: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    scores_problem: str | None = None


@dataclass(frozen=True)
class Counts:
    votes: int
    judge_battles: int

    @property
    def version(self) -> str:
        return f"{self.votes}-{self.judge_battles}"


def current_counts(home: Path, store: UIStore) -> Counts:
    return Counts(store.vote_count(), count_stored_battles(home / STORE_NAME))


def human_battles(votes: list[dict[str, Any]]) -> tuple[list[Battle], int, int]:
    """The votes as battles (anonymous and named), leaving out leaked-identity votes: (battles, leaked, unreadable)."""
    battles: list[Battle] = []
    leaked = unreadable = 0
    for vote in votes:
        if vote.get("leaked_identity"):
            leaked += 1
            continue
        try:
            battles.append(battle_from_record(battle_record(vote)))
        except (KeyError, IndexError, TypeError, ValueError, KaiyuanError):
            unreadable += 1
    return battles, leaked, unreadable


def _standings_without_ratings(battles: list[Battle]) -> list[Standing]:
    counts = win_tie_loss(b for b in battles if b.model_a != b.model_b)
    rows = [Standing(model, sum(c.values()), c["wins"], c["ties"], c["losses"]) for model, c in counts.items()]
    return sorted(rows, key=lambda r: (-r.wins, r.losses, r.model))


def build_board(source: str, votes: list[dict[str, Any]], judged: list[Battle]) -> Board:
    """The ratings of ``source``'s battles (human votes, judge battles or both), or the reason there are none."""
    human, leaked, unreadable = human_battles(votes) if source != "judge" else ([], 0, 0)
    judge = judged if source != "human" else []
    battles = [b for b in human + judge if b.model_a != b.model_b]
    board = Board(source, [], len(battles), sum(b.model_a != b.model_b for b in human),
                  sum(b.model_a != b.model_b for b in judge), leaked, unreadable)
    try:
        rated = leaderboard(battles, rounds=ROUNDS, seed=SEED)
    except KaiyuanError as exc:
        board.reason = str(exc)
        board.standings = _standings_without_ratings(battles)
        return board
    board.skipped_rounds = rated.skipped_rounds
    board.standings = [Standing(r.model, r.battles, r.wins, r.ties, r.losses, r.rank, r.rating, r.lower, r.upper)
                       for r in rated.rows]
    return board


# ------------------------------------------------------------------------------------------ benchmark scores


def registry_names(served: str) -> list[str]:
    """The registry names a served model may have: the name itself; for ``base:adapter``, the adapter's."""
    names = [served]
    if ":" in served:
        names.append(served.split(":", 1)[1])
    return names


def _score(evaluation: Artifact) -> Score | None:
    """The headline score of a single-model eval (its first recorded metric); None for a multi-model judge eval."""
    metrics = evaluation.manifest.get("metrics") or {}
    if not isinstance(metrics, dict) or isinstance(metrics.get("models"), dict):
        return None
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "n" and not key.startswith("n_"):
            task = metrics.get("task") if isinstance(metrics.get("task"), str) else evaluation.name.rsplit("@", 1)[-1]
            return Score(task, key, float(value), evaluation.id)
    return None


def model_scores(registry: Registry, served: str, by_name: dict[str, list[Artifact]]) -> dict[str, Score]:
    """The latest score per task of the model (or adapter) registered under ``served``'s name."""
    scores: dict[str, Score] = {}
    for name in registry_names(served):
        for artifact in by_name.get(name, []):
            for evaluation in registry.children(artifact.id, "evaluated_model", "eval"):  # oldest first
                score = _score(evaluation)
                if score is not None:
                    scores[score.task] = score
        if scores:
            break
    return scores


def add_scores(board: Board, home: Path) -> None:
    """Each model's registered benchmark scores ("—" in the page where there are none)."""
    if not registry_path(home).exists():
        return
    try:
        registry = Registry(home)
        by_name: dict[str, list[Artifact]] = {}
        for kind in MODEL_KINDS:
            for artifact in registry.list(kind):
                by_name.setdefault(artifact.name, []).append(artifact)
        board.scores = {s.model: model_scores(registry, s.model, by_name) for s in board.standings}
    except KaiyuanError as exc:
        board.scores, board.scores_problem = {}, str(exc)
    board.tasks = sorted({task for scores in board.scores.values() for task in scores})


# ----------------------------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class ChartRow:
    model: str
    label: str
    y: float
    x_lower: float
    x_upper: float
    x_rating: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    axis_y: float
    rows: list[ChartRow]
    ticks: list[tuple[float, str]]


CHART_WIDTH, LABEL_WIDTH, ROW_HEIGHT, TOP, RIGHT, AXIS_HEIGHT = 960, 320, 28, 8, 24, 34
LABEL_CHARS = 44
MIN_SPAN = 20.0  # rating points the axis spans at least


def nice_step(span: float, target: int = 5) -> float:
    """A 1, 2 or 5 × 10^k step that cuts ``span`` into about ``target`` parts."""
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _intervals(standings: list[Standing]) -> list[tuple[str, float, float, float]]:
    """(model, lower, rating, upper) of the rated models."""
    return [(s.model, s.lower, s.rating, s.upper) for s in standings
            if s.rating is not None and s.lower is not None and s.upper is not None]


def _label(model: str) -> str:
    return model if len(model) <= LABEL_CHARS else model[:LABEL_CHARS - 1] + "…"


def chart(standings: list[Standing]) -> Chart | None:
    """The 95% intervals (a line from lower to upper, a dot at the rating), one row per model, on a shared axis."""
    rated = _intervals(standings)
    if not rated:
        return None
    lo = min(min(lower, rating) for _, lower, rating, _ in rated)
    hi = max(max(upper, rating) for _, _, rating, upper in rated)
    if hi - lo < MIN_SPAN:  # all (nearly) equal: a readable axis around them
        lo, hi = (lo + hi - MIN_SPAN) / 2, (lo + hi + MIN_SPAN) / 2
    step = nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    left, right = LABEL_WIDTH, CHART_WIDTH - RIGHT

    def x(value: float) -> float:
        return round(left + (value - lo) / (hi - lo) * (right - left), 1)

    rows = [ChartRow(model, _label(model), TOP + i * ROW_HEIGHT + ROW_HEIGHT / 2, x(lower), x(upper), x(rating))
            for i, (model, lower, rating, upper) in enumerate(rated)]
    axis_y = TOP + len(rated) * ROW_HEIGHT + 4
    ticks = [(x(lo + i * step), f"{lo + i * step:g}") for i in range(round((hi - lo) / step) + 1)]
    return Chart(CHART_WIDTH, int(axis_y + AXIS_HEIGHT), left, right, axis_y, rows, ticks)


# ----------------------------------------------------------------------------------------------- the cache


Key = tuple[str, str, int, int]
_cache: OrderedDict[Key, tuple[Board, str]] = OrderedDict()
_lock = threading.Lock()


def fragment(board: Board) -> str:
    """The table and chart as ``/ui/leaderboard`` sends them (the page includes the same template), autoescaped."""
    return templates().get_template("leaderboard_board.html").render(board=board, chart=chart(board.standings))


def _key(home: Path, source: str, votes: int, judge_battles: int) -> Key:
    """Only the counts ``source`` reads: a judge board is not fitted again when a vote lands."""
    return str(home), source, votes if source != "judge" else -1, judge_battles if source != "human" else -1


def _compute(ui: UIState, source: str) -> tuple[Key, Board]:
    """A fresh board, keyed by what was actually read (a vote may have landed since it was counted)."""
    votes = ui.store.votes() if source != "judge" else []
    judged = load_stored_battles(ui.home / STORE_NAME) if source != "human" else []
    return _key(ui.home, source, len(votes), len(judged)), build_board(source, votes, judged)


def _remember(key: Key, entry: tuple[Board, str]) -> None:
    _cache[key] = entry
    _cache.move_to_end(key)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)


def cached_board(request: Request, source: str, fresh_scores: bool = False) -> tuple[Board, str, Counts]:
    """The board of ``source``, its fragment and the counts it was looked up by; fitted again only when votes or
    judge battles were added (``fresh_scores``: the benchmark scores are read again, as a page load does)."""
    ui = ui_state(request)
    counts = current_counts(ui.home, ui.store)
    key = _key(ui.home, source, counts.votes, counts.judge_battles)
    with _lock:
        entry = _cache.get(key)
        if entry is not None and not fresh_scores:
            _cache.move_to_end(key)
            return *entry, counts
        key, board = _compute(ui, source) if entry is None else (key, entry[0])
        add_scores(board, ui.home)
        entry = (board, fragment(board))
        _remember(key, entry)
    return *entry, counts


def _unknown_source(source: str) -> str:
    return f"Unknown source {source!r}: choose {', '.join(SOURCES)}."


# ---------------------------------------------------------------------------------------------- the routes


@router.get("/leaderboard")
def leaderboard_page(request: Request, source: str = "both", user: str = Depends(current_user)) -> Response:
    if source not in SOURCES:
        return error_page(request, 400, "No such leaderboard", _unknown_source(source))
    try:
        board, _, counts = cached_board(request, source, fresh_scores=True)
    except KaiyuanError as exc:
        return error_page(request, 500, "The leaderboard cannot be read", str(exc))
    return page(request, "leaderboard.html", active="leaderboard", board=board, chart=chart(board.standings),
                version=counts.version, sources=SOURCES)


@router.get("/ui/leaderboard")
def leaderboard_fragment(request: Request, source: str = "both", user: str = Depends(current_user)) -> Response:
    if source not in SOURCES:
        return api_error(400, _unknown_source(source), "bad_source")
    try:
        _, html, counts = cached_board(request, source)
    except KaiyuanError as exc:
        return api_error(500, str(exc), "leaderboard_failed")
    return JSONResponse({"version": counts.version, "html": html})
