"""Chatbot-Arena-style ratings from pairwise battles (FastChat's ``elo_analysis``).

A *battle* is one comparison of two models' answers: ``winner`` is ``model_a``, ``model_b``, ``tie`` or
``tie (bothbad)``. From a list of battles we compute:

* :func:`bradley_terry` — the maximum-likelihood Bradley–Terry ratings, exactly FastChat's
  ``compute_mle_elo``: ``P(a beats b) = 1 / (1 + base ** ((R_b - R_a) / scale))``, a tie counts as half a
  win for each side, no regularisation, and the ratings are anchored so that their mean is ``init_rating``
  (base 10, scale 400, 1000 at the mean). We maximise the log-likelihood with Newton's method ourselves
  instead of fitting scikit-learn's logistic regression (the tests check that both give the same ratings).
* :func:`bootstrap` — 95% intervals from refitting on battles resampled with replacement.
* :func:`online_elo` — FastChat's ``compute_elo``: the classic sequential Elo update, in the order given.
* :func:`leaderboard` — all of the above per model, ranked: rank = 1 + the number of models whose lower
  bound is above this model's upper bound.

Battles are read from FastChat logs (:func:`read_battles`: a JSON array such as ``clean_battle_*.json``,
or JSON lines) or kept in a SQLite store, ``KAIYUAN_HOME/arena.sqlite`` (:func:`store_battles`,
:func:`load_stored_battles`). A battle of a model against itself carries no information about ratings:
reading skips (and counts) them, the fits ignore them. So is a record marked ``leaked_identity: true`` (FastChat's
``clean_battle_data`` rule: a reply named a model, so the vote was not blind): read, left out, counted.
:func:`leaks_identity` is that test for a battle's replies.

The maximum-likelihood ratings exist only when every group of models has won (or tied) at least once
against the rest; otherwise some rating is unbounded and :func:`bradley_terry` says which models are
the problem instead of returning the arbitrary numbers an unconverged solver would.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home
from kaiyuan.hub.manifest import atomic_write_bytes

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
TIES = ("tie", "tie (bothbad)")
SCORE_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}  # model_a's score in a battle
STORE_NAME = "arena.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS battles (
    id INTEGER PRIMARY KEY,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    winner TEXT NOT NULL,
    prompt TEXT,
    answer_a TEXT,
    answer_b TEXT,
    judge TEXT,
    question_id TEXT,
    tstamp REAL
);
"""
MAX_REPORTED_PROBLEMS = 20
# FastChat's clean_battle_data IDENTITY_WORDS (lowercased): a reply containing one may have told who answered
IDENTITY_WORDS = ("vicuna", "lmsys", "koala", "uc berkeley", "open assistant", "laion", "chatglm", "chatgpt", "gpt-4",
                  "openai", "anthropic", "claude", "bard", "palm", "lamda", "google", "llama", "qianwan", "alibaba",
                  "mistral", "zhipu", "keg lab", "01.ai", "ai2", "tülu", "tulu")
MIN_NAME_PART = 3  # shorter parts of a model name ("7b", "v2") would match almost any reply


@dataclass(frozen=True)
class Battle:
    """One pairwise comparison; ``winner`` is one of :data:`WINNERS`."""

    model_a: str
    model_b: str
    winner: str
    prompt: str | None = None
    answer_a: str | None = None
    answer_b: str | None = None
    judge: str | None = None
    tstamp: float | None = None
    question_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("model_a", "model_b"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise KaiyuanError(f"battle: {name}: expected a non-empty model name, got {value!r}")
        if self.winner not in WINNERS:
            raise KaiyuanError(f"battle: winner: expected one of {', '.join(map(repr, WINNERS))}, "
                               f"got {self.winner!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# --------------------------------------------------------------------------------------------- reading


def _name_parts(model_names: Iterable[str]) -> set[str]:
    """Each name, lowercased, with both halves of ``base:adapter`` and the last part of ``org/name``."""
    parts: set[str] = set()
    for name in model_names:
        name = name.lower().strip()
        for half in (name, *name.split(":")):
            parts.update((half, half.rsplit("/", 1)[-1]))
    return {p for p in parts if len(p.strip()) >= MIN_NAME_PART}


def leaks_identity(replies: Iterable[str], model_names: Iterable[str]) -> bool:
    """True when a reply (lowercased) contains one of :data:`IDENTITY_WORDS` or one of the battle's model names
    (also the last part of ``org/name`` and both halves of ``base:adapter``; parts under 3 characters ignored)."""
    words = (*IDENTITY_WORDS, *_name_parts(model_names))
    lowered = [reply.lower() for reply in replies if reply]
    return any(word in reply for reply in lowered for word in words)


@dataclass
class BattleLog:
    """The battles of one file; ``skipped_self_battles`` counts battles of a model against itself,
    ``skipped_leaked_identity`` records marked ``leaked_identity: true`` (both read, left out)."""

    path: Path
    battles: list[Battle] = field(default_factory=list)
    skipped_self_battles: int = 0
    skipped_leaked_identity: int = 0

    def __iter__(self) -> Iterator[Battle]:
        return iter(self.battles)

    def __len__(self) -> int:
        return len(self.battles)


class _BadRecord(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


def _optional_str(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _BadRecord(name, f"expected a string, got {type(value).__name__}")


def _conversation_turns(value: Any) -> tuple[str | None, str | None]:
    """First user message and last assistant message of a FastChat / OpenAI conversation, if it is one."""
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        return None, None
    user = [m.get("content") for m in value if m.get("role") in ("user", "human")]
    assistant = [m.get("content") for m in value if m.get("role") in ("assistant", "gpt")]
    first = user[0] if user and isinstance(user[0], str) else None
    last = assistant[-1] if assistant and isinstance(assistant[-1], str) else None
    return first, last


def battle_from_record(record: Any) -> Battle:
    """A :class:`Battle` from one FastChat battle record; raises ``_BadRecord(field, message)``."""
    if not isinstance(record, dict):
        raise _BadRecord("record", f"expected a JSON object, got {type(record).__name__}")
    for name in ("model_a", "model_b", "winner"):
        if name not in record:
            raise _BadRecord(name, "missing")
    for name in ("model_a", "model_b"):
        value = record[name]
        if not isinstance(value, str) or not value.strip():
            raise _BadRecord(name, f"expected a non-empty model name, got {value!r}")
    winner = record["winner"]
    if winner not in WINNERS:
        raise _BadRecord("winner", f"expected one of {', '.join(map(repr, WINNERS))}, got {winner!r}")
    tstamp = record.get("tstamp")
    if tstamp is not None and (isinstance(tstamp, bool) or not isinstance(tstamp, int | float)):
        raise _BadRecord("tstamp", f"expected a number, got {tstamp!r}")
    question_id = record.get("question_id")
    if question_id is not None and (isinstance(question_id, bool) or not isinstance(question_id, str | int)):
        raise _BadRecord("question_id", f"expected a string or an integer, got {question_id!r}")
    prompt, answer_a = _conversation_turns(record.get("conversation_a"))
    _, answer_b = _conversation_turns(record.get("conversation_b"))
    return Battle(model_a=record["model_a"], model_b=record["model_b"], winner=winner,
                  prompt=_optional_str(record, "prompt") or prompt,
                  answer_a=_optional_str(record, "answer_a") or answer_a,
                  answer_b=_optional_str(record, "answer_b") or answer_b,
                  judge=_optional_str(record, "judge"),
                  tstamp=None if tstamp is None else float(tstamp),
                  question_id=None if question_id is None else str(question_id))


def _leaked_identity(record: dict[str, Any]) -> bool:
    value = record.get("leaked_identity")
    if value is None or isinstance(value, bool):
        return bool(value)
    raise _BadRecord("leaked_identity", f"expected true or false, got {value!r}")


def _records(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for a JSON array (``FILE[#i]``, i from 0) or a JSON-lines file (``FILE:LINE``)."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KaiyuanError(f"{path}:{exc.lineno}: record: invalid JSON: {exc.msg} (column {exc.colno})") from None
        for index, record in enumerate(data):
            yield f"{path}[#{index}]", record
        return
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{path}:{number}"
        try:
            record, end = decoder.raw_decode(line)
        except json.JSONDecodeError as exc:
            yield where, _BadRecord("record", f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if line[end:].strip():
            yield where, _BadRecord("record", "invalid JSON: extra data after the object (one object per line)")
            continue
        yield where, record


def read_battles(path: str | Path) -> BattleLog:
    """Battles from a FastChat log: a JSON array (``clean_battle_*.json``) or JSON lines.

    Needs ``model_a``, ``model_b`` and ``winner`` (one of :data:`WINNERS`); keeps ``judge``, ``tstamp``,
    ``question_id``, ``prompt`` / ``answer_a`` / ``answer_b`` (or the first user and last assistant turn of
    ``conversation_a`` / ``conversation_b``). Malformed records raise :class:`KaiyuanError` naming each as
    ``FILE:LINE: field: message`` (``FILE[#i]: ...`` for element ``i``, counted from 0, of a JSON array).
    Battles of a model against itself, and records with ``leaked_identity: true``, are skipped and counted.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise KaiyuanError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise KaiyuanError(f"{path}: file: not valid UTF-8 ({exc.reason})") from None
    log = BattleLog(path=path)
    problems: list[str] = []
    n_problems = 0
    for where, record in _records(path, text):
        try:
            if isinstance(record, _BadRecord):
                raise record
            battle = battle_from_record(record)
            leaked = _leaked_identity(record)
        except _BadRecord as exc:
            n_problems += 1
            if len(problems) < MAX_REPORTED_PROBLEMS:
                problems.append(f"{where}: {exc}")
            continue
        if leaked:
            log.skipped_leaked_identity += 1
            continue
        if battle.model_a == battle.model_b:
            log.skipped_self_battles += 1
            continue
        log.battles.append(battle)
    if problems:
        more = f"\n… and {n_problems - len(problems)} more bad records" if n_problems > len(problems) else ""
        raise KaiyuanError("\n".join(problems) + more)
    return log


# ----------------------------------------------------------------------------------------------- store


def arena_store_path() -> Path:
    return kaiyuan_home() / STORE_NAME


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.executescript(SCHEMA)
    return conn


def store_battles(battles: Iterable[Battle], path: str | Path | None = None) -> int:
    """Append battles to the store (default ``KAIYUAN_HOME/arena.sqlite``) in one transaction; returns how many."""
    rows = [(b.model_a, b.model_b, b.winner, b.prompt, b.answer_a, b.answer_b, b.judge, b.question_id, b.tstamp)
            for b in battles]
    conn = _connect(Path(path) if path is not None else arena_store_path())
    try:
        with conn:
            conn.executemany("INSERT INTO battles (model_a, model_b, winner, prompt, answer_a, answer_b, judge, "
                             "question_id, tstamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()
    return len(rows)


def load_stored_battles(path: str | Path | None = None) -> list[Battle]:
    """All stored battles in the order they were stored (an empty list when there is no store yet)."""
    path = Path(path) if path is not None else arena_store_path()
    if not path.exists():
        return []
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT id, model_a, model_b, winner, prompt, answer_a, answer_b, judge, tstamp, "
                            "question_id FROM battles ORDER BY id").fetchall()
    finally:
        conn.close()
    battles = []
    for row_id, *values in rows:
        try:
            battles.append(Battle(*values))
        except KaiyuanError as exc:
            raise KaiyuanError(f"{path}: battles id {row_id}: {str(exc).removeprefix('battle: ')}") from None
    return battles


def count_stored_battles(path: str | Path | None = None) -> int:
    """How many battles are stored (0 when there is no store yet): cheap, for polling."""
    path = Path(path) if path is not None else arena_store_path()
    if not path.exists():
        return 0
    conn = _connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM battles").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------- ratings


@dataclass(frozen=True)
class _Indexed:
    """Battles (self-battles left out) as model indices; ``score`` is model_a's score (1, 0 or 0.5)."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, battles: Iterable[Battle]) -> _Indexed:
        kept = [b for b in battles if b.model_a != b.model_b]
        models = sorted({b.model_a for b in kept} | {b.model_b for b in kept})
        index = {m: i for i, m in enumerate(models)}
        return cls(models, np.array([index[b.model_a] for b in kept], dtype=np.int64),
                   np.array([index[b.model_b] for b in kept], dtype=np.int64),
                   np.array([SCORE_A[b.winner] for b in kept], dtype=np.float64))

    def wins(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``wins[i, j]``: wins of i over j as FastChat counts them (a win counts 2, a tie 1 for each side)."""
        p = len(self.models)
        w = np.ones(len(self.a)) if weights is None else weights
        return (np.bincount(self.a * p + self.b, weights=2 * w * self.score, minlength=p * p)
                + np.bincount(self.b * p + self.a, weights=2 * w * (1 - self.score), minlength=p * p)).reshape(p, p)


def _reachable(adjacency: np.ndarray, start: int) -> np.ndarray:
    seen = np.zeros(len(adjacency), dtype=bool)
    seen[start] = True
    frontier = [start]
    while frontier:
        nxt = np.flatnonzero(adjacency[frontier].any(axis=0) & ~seen)
        seen[nxt] = True
        frontier = nxt.tolist()
    return seen


def _unbounded_reason(wins: np.ndarray, models: Sequence[str]) -> str | None:
    """Why the maximum-likelihood ratings do not exist (the "beat or tied" graph is not strongly connected)."""
    beat = wins > 0
    for adjacency, backwards in ((beat, False), (beat.T, True)):
        group = _reachable(adjacency, 0)
        if group.all():
            continue
        # Forwards, ``group`` is closed under "beat": nobody in it beat anyone outside, so the outside never
        # lost to it. Backwards, nobody outside beat anyone in ``group``, so ``group`` never lost to the outside.
        undefeated, others = (group, ~group) if backwards else (~group, group)
        names_undefeated = ", ".join(m for m, u in zip(models, undefeated, strict=True) if u)
        names_others = ", ".join(m for m, o in zip(models, others, strict=True) if o)
        if not (wins[np.ix_(undefeated, others)].any() or wins[np.ix_(others, undefeated)].any()):
            return f"no battles connect {{{names_undefeated}}} with {{{names_others}}}"
        return f"{{{names_undefeated}}} never lost to (or tied with) {{{names_others}}}"
    return None


def _log_likelihood(theta: np.ndarray, wins: np.ndarray) -> float:
    return float(-np.sum(wins * np.logaddexp(0.0, theta[None, :] - theta[:, None])))


def _fit_theta(wins: np.ndarray, tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Maximise ``sum_ij wins[i,j] log sigmoid(theta_i - theta_j)`` with Newton's method; mean(theta) = 0.

    The Hessian is minus the Laplacian of the comparison graph (edge weights ``n_ij s_ij (1 - s_ij)``);
    adding ``11^T / p`` makes it invertible and keeps every step orthogonal to the shift direction.
    Requires a strongly connected "beat or tied" graph (checked by the caller), so the optimum is unique.
    """
    p = len(wins)
    games = wins + wins.T
    shift = np.full((p, p), 1.0 / p)
    theta = np.zeros(p)
    ll = _log_likelihood(theta, wins)
    for _ in range(max_iter):
        s = 0.5 * (1.0 + np.tanh((theta[:, None] - theta[None, :]) / 2))  # sigmoid, stable
        grad = wins.sum(axis=1) - (games * s).sum(axis=1)
        weight = games * s * (1.0 - s)
        laplacian = np.diag(weight.sum(axis=1)) - weight
        step = np.linalg.solve(laplacian + shift, grad)
        t = 1.0
        while True:  # backtracking: the log-likelihood is concave, Newton overshoots only far from the optimum
            candidate = theta + t * step
            candidate_ll = _log_likelihood(candidate, wins)
            if candidate_ll >= ll - 1e-12 * abs(ll) or t < 1e-6:
                break
            t /= 2
        theta, ll = candidate, candidate_ll
        if np.max(np.abs(t * step)) < tol:
            break
    return theta - theta.mean()


def _ratings(theta: np.ndarray, scale: float, base: float, init_rating: float) -> np.ndarray:
    return init_rating + scale * theta / math.log(base)


def bradley_terry(battles: Iterable[Battle], scale: float = 400, base: float = 10,
                  init_rating: float = 1000) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry ratings (FastChat's ``compute_mle_elo``), highest first.

    ``P(a beats b) = 1 / (1 + base ** ((R_b - R_a) / scale))``; a tie is half a win for each side; the mean
    rating is ``init_rating``. Raises :class:`KaiyuanError` when the ratings are unbounded.
    """
    data = _Indexed.of(battles)
    if not data.models:
        raise KaiyuanError("no battles between two different models to rate")
    wins = data.wins()
    reason = _unbounded_reason(wins, data.models)
    if reason:
        raise KaiyuanError(f"Bradley–Terry ratings are unbounded: {reason}; the ratings need battles that "
                           "every group of models both won (or tied) and lost against the others")
    ratings = _ratings(_fit_theta(wins), scale, base, init_rating)
    return dict(sorted(zip(data.models, ratings.tolist(), strict=True), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class BootstrapResult:
    """Bradley–Terry ratings refitted on resampled battles: ``samples[r, i]`` is model ``models[i]`` in round r.

    Rounds whose resample has unbounded ratings (a model that, by chance, never lost or never won) are left
    out and counted in ``skipped_rounds``.
    """

    models: list[str]
    samples: np.ndarray
    rounds: int
    seed: int
    skipped_rounds: int

    def percentile(self, q: float) -> dict[str, float]:
        values = np.percentile(self.samples, q, axis=0)
        return dict(zip(self.models, values.tolist(), strict=True))

    @property
    def lower(self) -> dict[str, float]:
        return self.percentile(2.5)

    @property
    def upper(self) -> dict[str, float]:
        return self.percentile(97.5)

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Per model, the 2.5 and 97.5 percentiles: a 95% interval."""
        lower, upper = self.lower, self.upper
        return {m: (lower[m], upper[m]) for m in self.models}


def bootstrap(battles: Iterable[Battle], rounds: int = 1000, seed: int = 0, scale: float = 400, base: float = 10,
              init_rating: float = 1000) -> BootstrapResult:
    """Refit the ratings on ``rounds`` resamples of the battles (n drawn with replacement: multinomial counts)."""
    if rounds < 1:
        raise KaiyuanError(f"rounds: expected at least 1, got {rounds}")
    data = _Indexed.of(battles)
    if not data.models:
        raise KaiyuanError("no battles between two different models to rate")
    rng = np.random.default_rng(seed)
    n = len(data.a)
    uniform = np.full(n, 1.0 / n)
    samples = []
    for _ in range(rounds):
        wins = data.wins(rng.multinomial(n, uniform).astype(np.float64))
        if _unbounded_reason(wins, data.models):
            continue
        samples.append(_ratings(_fit_theta(wins), scale, base, init_rating))
    if not samples:
        raise KaiyuanError(f"all {rounds} bootstrap resamples have unbounded ratings: too few battles per model")
    return BootstrapResult(data.models, np.array(samples), rounds, seed, rounds - len(samples))


def online_elo(battles: Iterable[Battle], k: float = 4, scale: float = 400, base: float = 10,
               init_rating: float = 1000) -> dict[str, float]:
    """FastChat's ``compute_elo``: sequential Elo updates in the order given (self-battles change nothing)."""
    rating: dict[str, float] = {}
    for battle in battles:
        if battle.model_a == battle.model_b:
            continue
        ra = rating.setdefault(battle.model_a, init_rating)
        rb = rating.setdefault(battle.model_b, init_rating)
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        eb = 1 / (1 + base ** ((ra - rb) / scale))
        sa = SCORE_A[battle.winner]
        rating[battle.model_a] += k * (sa - ea)
        rating[battle.model_b] += k * (1 - sa - eb)
    return rating


# ------------------------------------------------------------------------------------------ leaderboard


def interval_ranks(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Rank = 1 + the number of models whose lower bound is above this model's upper bound."""
    return {m: 1 + sum(lo > upper for other, (lo, _) in intervals.items() if other != m)
            for m, (_, upper) in intervals.items()}


@dataclass(frozen=True)
class LeaderboardRow:
    model: str
    rating: float
    lower: float
    upper: float
    rank: int
    online_elo: float
    battles: int
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Leaderboard:
    """Rows sorted by rating (highest first), with how the intervals were made."""

    rows: list[LeaderboardRow]
    battles: int
    rounds: int
    seed: int
    skipped_rounds: int

    def __iter__(self) -> Iterator[LeaderboardRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> LeaderboardRow:
        return self.rows[index]

    def to_dict(self) -> dict[str, Any]:
        return {"battles": self.battles, "rounds": self.rounds, "seed": self.seed,
                "skipped_rounds": self.skipped_rounds, "models": [row.to_dict() for row in self.rows]}


def leaderboard(battles: Iterable[Battle], rounds: int = 1000, seed: int = 0) -> Leaderboard:
    """Bradley–Terry rating, 95% bootstrap interval, rank, online Elo and win/tie/loss counts per model."""
    battles = [b for b in battles if b.model_a != b.model_b]
    ratings = bradley_terry(battles)
    boot = bootstrap(battles, rounds=rounds, seed=seed)
    intervals = boot.intervals()
    ranks = interval_ranks(intervals)
    elo = online_elo(battles)
    counts = {m: {"wins": 0, "ties": 0, "losses": 0} for m in ratings}
    counts.update(win_tie_loss(battles))
    rows = [LeaderboardRow(model=m, rating=r, lower=intervals[m][0], upper=intervals[m][1], rank=ranks[m],
                           online_elo=elo[m], battles=sum(counts[m].values()), **counts[m])
            for m, r in ratings.items()]
    return Leaderboard(rows=rows, battles=len(battles), rounds=rounds, seed=seed, skipped_rounds=boot.skipped_rounds)


def win_tie_loss(battles: Iterable[Battle]) -> dict[str, dict[str, int]]:
    """Per model: battles won, tied (either kind of tie) and lost."""
    counts: dict[str, dict[str, int]] = {}
    for b in battles:
        for model in (b.model_a, b.model_b):
            counts.setdefault(model, {"wins": 0, "ties": 0, "losses": 0})
        if b.winner in TIES:
            counts[b.model_a]["ties"] += 1
            counts[b.model_b]["ties"] += 1
        else:
            winner, loser = (b.model_a, b.model_b) if b.winner == "model_a" else (b.model_b, b.model_a)
            counts[winner]["wins"] += 1
            counts[loser]["losses"] += 1
    return counts


def plot_leaderboard(rows: Iterable[LeaderboardRow], path: str | Path) -> Path:
    """A PNG of the ratings with their 95% intervals as error bars, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(rows, key=lambda r: (-r.rating, r.model))
    path = Path(path)
    fig = Figure(figsize=(max(6.0, 0.6 * len(rows) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ratings = np.array([r.rating for r in rows])
    errors = np.array([[r.rating - r.lower for r in rows], [r.upper - r.rating for r in rows]])
    ax.errorbar(x, ratings, yerr=np.clip(errors, 0, None), fmt="o", capsize=4)
    ax.set_xticks(x, [r.model for r in rows], rotation=45, ha="right")
    ax.set_ylabel("rating")
    ax.set_title("Bradley–Terry ratings (95% bootstrap intervals)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path
