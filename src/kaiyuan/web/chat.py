"""The chat page: a private assistant over every served model, conversations kept per user on the server.

``GET /chat`` (a new chat), ``GET /chat/{id}`` (a kept one), ``POST /ui/chat`` (send, edit-and-resend or
regenerate; the reply streams back as server-sent events, see :mod:`kaiyuan.web.generation`),
``POST /ui/conversations/{id}/delete``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.web.context import api_error, check_rate, current_user, ui_state
from kaiyuan.web.generation import reply_stream
from kaiyuan.web.render import error_page, markdown, page
from kaiyuan.web.store import Conversation, Message, new_id

router = APIRouter(include_in_schema=False)
MAX_MESSAGE_CHARS = 100_000


class ChatSend(BaseModel):
    """One press of Send (or Regenerate, or Save & send after an edit)."""

    model_config = ConfigDict(extra="forbid")  # a field is applied or refused, never ignored

    conversation_id: str | None = None
    model: str
    content: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    system: str = Field(default="", max_length=MAX_MESSAGE_CHARS)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    edit: int | None = Field(default=None, ge=0)  # position of the user message replaced; later ones are dropped
    regenerate: bool = False  # drop the last reply and ask again


def _chat_page(request: Request, user: str, conversation: Conversation | None) -> Response:
    ui = ui_state(request)
    models = list(ui.engines)
    return page(request, "chat.html", active="chat", conversation=conversation, models=models,
                conversations=ui.store.conversations(user),
                model=conversation.model if conversation and conversation.model in models else (models or [""])[0],
                default_max_tokens=ui.default_max_tokens)


@router.get("/chat")
def new_chat(request: Request, user: str = Depends(current_user)) -> Response:
    return _chat_page(request, user, None)


@router.get("/chat/{conversation_id}")
def kept_chat(conversation_id: str, request: Request, user: str = Depends(current_user)) -> Response:
    conversation = ui_state(request).store.conversation(user, conversation_id)
    if conversation is None:  # someone else's conversation is "not found" too
        return error_page(request, 404, "No such conversation", f"There is no conversation {conversation_id!r} of "
                                                                "yours.")
    return _chat_page(request, user, conversation)


def _prepare(ui: Any, user: str, send: ChatSend) -> Conversation | JSONResponse:
    """The conversation to reply in, with the user's message stored (or the error to answer); one commit."""
    store = ui.store
    if send.conversation_id is None:
        if send.regenerate or send.edit is not None or not (send.content or "").strip():
            return api_error(400, "A new chat starts with a message.", "invalid_request")
        title = " ".join((send.content or "").split())[:60] or "New chat"
        conversation, new = Conversation(new_id(), user, title, send.model, send.system, time.time()), True
    else:
        found = store.conversation(user, send.conversation_id)
        if found is None:
            return api_error(404, f"There is no conversation {send.conversation_id!r} of yours.", "not_found")
        conversation, new = found, False
        conversation.model, conversation.system = send.model, send.system
    messages = conversation.messages
    message: Message | None = None
    if send.regenerate:
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last_user is None:
            return api_error(400, "There is nothing to regenerate: send a message first.", "invalid_request")
        keep = last_user + 1
    else:
        if not (send.content or "").strip():
            return api_error(400, "The message is empty.", "invalid_request")
        if send.edit is not None and (send.edit >= len(messages) or messages[send.edit].role != "user"):
            return api_error(400, f"Message {send.edit} is not one of your messages in this chat.", "invalid_request")
        keep = send.edit if send.edit is not None else len(messages)
        message = Message("user", send.content or "")
    del messages[keep:]
    if message is not None:
        messages.append(message)
    store.record_turn(conversation, new, keep, message)
    return conversation


@router.post("/ui/chat")
async def send_message(send: ChatSend, request: Request, user: str = Depends(current_user)) -> Response:
    ui = ui_state(request)
    if send.model not in ui.engines:
        return api_error(404, f"The model {send.model!r} is not served here. Served: {', '.join(ui.engines)}.",
                         "model_not_found")
    check_rate(ui.chat_limit, user, "messages")
    prepared = await run_in_threadpool(_prepare, ui, user, send)
    if isinstance(prepared, JSONResponse):
        return prepared
    conversation = prepared

    async def on_end(text: str, status: str, error: str | None) -> dict[str, Any]:
        content = text if status != "error" else f"The model failed: {error}"
        position = await run_in_threadpool(ui.store.append, conversation.id,
                                           Message("assistant", content, send.model, status))
        return {"status": status, "position": position, "html": str(markdown(content)), "model": send.model}

    return await reply_stream(request, send.model, conversation.chat(), send.temperature, send.max_tokens, on_end,
                              first={"conversation_id": conversation.id, "title": conversation.title})


@router.post("/ui/conversations/{conversation_id}/delete")
def delete_conversation(conversation_id: str, request: Request, user: str = Depends(current_user)) -> Response:
    if not ui_state(request).store.delete_conversation(user, conversation_id):
        return api_error(404, f"There is no conversation {conversation_id!r} of yours.", "not_found")
    return JSONResponse({"deleted": conversation_id})
