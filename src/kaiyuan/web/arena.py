"""The arena: Chatbot Arena's battle of two models on one prompt, side by side, judged by a person's vote.

Anonymous mode (default): two distinct served models are drawn (weights: ``--arena-weight NAME=W``), shown as
"Model A" and "Model B" — their names reach the page only after the vote (the relayed events carry "Model A" /
"Model B" as their ``model``). Named mode: the user picks both and sees the names throughout. Up to
``--arena-turns`` prompts per battle. A vote needs both replies of the latest prompt complete (the user saw them),
is accepted once per battle and only from the battle's own user (anyone else's battle is "not found"). A vote whose
replies name a model (FastChat's identity words or the battle's model names) is kept but marked
``leaked_identity`` and left out of the ratings.

``GET /arena``; ``POST /ui/arena/battles``, ``…/{id}/prompt``, ``…/{id}/reply/{a|b}`` (streamed), ``…/{id}/vote``.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.evaluate.arena import leaks_identity
from kaiyuan.web.context import UIState, api_error, check_rate, current_user, ui_state
from kaiyuan.web.generation import reply_stream
from kaiyuan.web.render import markdown, page
from kaiyuan.web.store import VOTE_TYPES, Battle

router = APIRouter(include_in_schema=False)
SIDES = {"a": 0, "b": 1}
_states_lock = threading.Lock()  # the two sides of a battle finish concurrently: their writes must not race


class NewBattle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["anony", "named"] = "anony"
    model_a: str | None = None
    model_b: str | None = None


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=100_000)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["leftvote", "rightvote", "tievote", "bothbad_vote"]


def draw_pair(models: list[str], weights: dict[str, float]) -> tuple[str, str]:
    """Two distinct models, each drawn with probability proportional to its weight (default 1), in random order
    (FastChat's ``get_battle_pair`` without its targets)."""
    chooser = secrets.SystemRandom()
    pool = [m for m in models if weights.get(m, 1.0) > 0]
    if len(pool) < 2:
        raise ValueError("the arena needs two models with a positive weight")
    first = chooser.choices(pool, [weights.get(m, 1.0) for m in pool])[0]
    rest = [m for m in pool if m != first]
    second = chooser.choices(rest, [weights.get(m, 1.0) for m in rest])[0]
    return (first, second) if chooser.random() < 0.5 else (second, first)


def _public(battle: Battle, reveal: bool = False) -> dict[str, Any]:
    named = battle.mode == "named" or reveal or battle.vote is not None
    return {"battle_id": battle.id, "mode": battle.mode, "turns": battle.turns(),
            "models": list(battle.models) if named else ["Model A", "Model B"]}


@router.get("/arena")
def arena_page(request: Request, mode: str = "anony", user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    mode = "named" if mode == "named" else "anony"
    return page(request, "arena.html", active="arena", mode=mode, models=list(ui.engines),
                max_turns=ui.options.arena_turns, default_max_tokens=ui.default_max_tokens,
                vote_labels=(("leftvote", "👈 A is better"), ("rightvote", "👉 B is better"), ("tievote", "🤝 Tie"),
                             ("bothbad_vote", "👎 Both are bad")))


@router.post("/ui/arena/battles")
def new_battle(body: NewBattle, request: Request, user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    served = list(ui.engines)
    if body.mode == "anony":
        if body.model_a or body.model_b:
            return api_error(400, "An anonymous battle draws its models: leave model_a and model_b out (or use "
                                  "mode named).", "invalid_request")
        try:
            model_a, model_b = draw_pair(served, ui.options.arena_weights)
        except ValueError as exc:
            return api_error(400, f"Cannot start a battle: {exc} (served: {', '.join(served) or 'none'}).",
                             "arena_unavailable")
    else:
        model_a, model_b = body.model_a or "", body.model_b or ""
        for name in (model_a, model_b):
            if name not in ui.engines:
                return api_error(404, f"The model {name!r} is not served here. Served: {', '.join(served)}.",
                                 "model_not_found")
        if model_a == model_b:
            return api_error(400, "Pick two different models.", "invalid_request")
    battle = ui.store.new_battle(user, body.mode, model_a, model_b)
    return JSONResponse(_public(battle))


def _own_battle(ui: UIState, user: str, battle_id: str, voted: tuple[str, str] | None = None
                ) -> Battle | JSONResponse:
    """The user's battle, or the error: 404 for anyone else's; with ``voted`` (message, code), 409 once it has its
    vote."""
    battle = ui.store.battle(user, battle_id)
    if battle is None:
        return api_error(404, f"There is no battle {battle_id!r} of yours.", "not_found")
    if voted is not None and battle.vote is not None:
        return api_error(409, *voted)
    return battle


@router.post("/ui/arena/battles/{battle_id}/prompt")
def add_prompt(battle_id: str, body: Prompt, request: Request, user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    with _states_lock:
        battle = _own_battle(ui, user, battle_id, ("This battle has its vote: start a new battle.", "battle_over"))
        if isinstance(battle, JSONResponse):
            return battle
        if battle.turns() and not battle.answered():
            return api_error(409, "Both models are still answering the last prompt.", "battle_busy")
        if battle.turns() >= ui.options.arena_turns:
            return api_error(409, f"A battle has at most {ui.options.arena_turns} prompts: vote, then start a new "
                                  "battle.", "turn_limit")
        check_rate(ui.chat_limit, user, "messages")
        for state in battle.states:
            state["messages"] += [["user", body.content], ["assistant", None]]
        battle.states[0]["sampling"] = battle.states[1]["sampling"] = {"temperature": body.temperature,
                                                                     "max_tokens": body.max_tokens}
        ui.store.save_states(battle)
    return JSONResponse(_public(battle))


@router.post("/ui/arena/battles/{battle_id}/reply/{side}")
async def side_reply(battle_id: str, side: Literal["a", "b"], request: Request,
                     user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    index = SIDES[side]
    battle = await run_in_threadpool(_own_battle, ui, user, battle_id)
    if isinstance(battle, JSONResponse):
        return battle
    messages = battle.states[index]["messages"]
    if not messages or messages[-1] != ["assistant", None]:
        return api_error(409, f"Model {side.upper()} has no prompt waiting for its reply.", "nothing_to_answer")
    sampling = battle.states[index].get("sampling") or {}
    model = battle.models[index]

    def save(text: str) -> None:
        with _states_lock:
            fresh = ui.store.battle(user, battle_id)
            assert fresh is not None
            fresh.states[index]["messages"][-1][1] = text
            ui.store.save_states(fresh)

    async def on_end(text: str, status: str, error: str | None) -> dict[str, Any]:
        content = text if status != "error" else f"The model failed: {error}"
        await run_in_threadpool(save, content)
        return {"status": status, "html": str(markdown(content)), "side": side}

    shown = model if battle.mode == "named" else f"Model {side.upper()}"
    return await reply_stream(request, model, battle.chat(index), float(sampling.get("temperature", 0.7)),
                              sampling.get("max_tokens"), on_end, hide_model=None if shown == model else shown)


@router.post("/ui/arena/battles/{battle_id}/vote")
def vote(battle_id: str, body: Vote, request: Request, user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    with _states_lock:
        battle = _own_battle(ui, user, battle_id, ("This battle already has your vote: one vote per battle.",
                                                   "already_voted"))
        if isinstance(battle, JSONResponse):
            return battle
        if not battle.turns() or not battle.answered():
            return api_error(409, "Vote once both models have answered.", "not_answered")
        check_rate(ui.vote_limit, user, "votes")
        replies = [text for state in battle.states for role, text in state["messages"] if role == "assistant" and text]
        leaked = battle.mode == "anony" and leaks_identity(replies, battle.models)
        record = ui.store.add_vote(battle, body.type, leaked)
    return JSONResponse({"battle_id": battle.id, "models": list(battle.models), "winner": VOTE_TYPES[body.type],
                         "leaked_identity": leaked, "tstamp": record["tstamp"]})
