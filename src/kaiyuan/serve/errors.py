"""OpenAI-shaped error responses: the app's exception handlers and the 400s the handlers answer with.

Every error is ``{"error": {"message", "type", "param", "code"}}`` (:func:`kaiyuan.serve.protocol.error_body`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kaiyuan.serve.engines.base import (
    GENERATION_FIELDS,
    UNAPPLIED_FIELDS,
    ContextLengthError,
    EngineUnavailableError,
    UnsupportedRequestError,
)
from kaiyuan.serve.protocol import error_body

ENGINE_ERRORS = (ContextLengthError, UnsupportedRequestError)  # an engine's word that the request cannot be served


def validation_message(errors: list[Any]) -> tuple[str, str | None]:
    """The 400's message and ``param`` for pydantic's errors: the first one, naming the field as OpenAI does."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())[1:]]
    param = ".".join(loc) or None
    kind = first.get("type")
    if kind == "extra_forbidden" and param in UNAPPLIED_FIELDS:
        return (f"{param}: this generation_config field is applied by no engine of this server (those applied: "
                f"{', '.join(GENERATION_FIELDS)})"), param
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if kind == "json_invalid":
        return "We could not parse the JSON body of your request; the API expects a JSON object.", None
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    where = param or ("" if kind == "value_error" else "body")  # a whole-request check says it all
    return (f"{where}: {message}" if where else message), param


def error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def engine_error(exc: Exception, param: str) -> JSONResponse:
    """The 400 for one of :data:`ENGINE_ERRORS`, blaming the engine's ``param`` or else ``param``."""
    code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
    return error_response(400, str(exc), param=getattr(exc, "param", None) or param, code=code)


def model_not_found(name: str, served: Any) -> JSONResponse:
    return error_response(404, f"The model '{name}' does not exist. Available: {', '.join(served)}.",
                          param="model", code="model_not_found")


def model_not_supported(name: str, what: str) -> JSONResponse:
    return error_response(400, f"The model '{name}' does not support {what}.", param="model",
                          code="model_not_supported")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = validation_message(exc.errors())
    return error_response(400, message, param=param)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"Unknown route {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(message, "invalid_request_error"), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _engine_unavailable(request: Request, exc: EngineUnavailableError) -> JSONResponse:
    return error_response(503, str(exc), "server_error", code="engine_unavailable")


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, f"The server had an error while processing your request ({type(exc).__name__}).",
                          "server_error")


def add_error_handlers(app: FastAPI) -> None:
    """Answer validation errors (400), unknown routes and methods (404/405), a stopped engine (503) and anything
    else (500) in OpenAI's shape."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(EngineUnavailableError, _engine_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)
