"""One error body and one exception -> status map for the whole API.

Body: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape, so the same
clients read control-plane and gateway errors alike); ``param`` names the field at fault.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from suanli import errors
from suanli.domain.yamldoc import format_path
from suanli.services import compliance

STATUS: list[tuple[type[errors.SuanliError], int, str]] = [
    (errors.ValidationError, 422, "invalid_request_error"),
    (errors.NotFoundError, 404, "not_found_error"),
    (errors.ConflictError, 409, "conflict_error"),
    (errors.AuthenticationError, 401, "authentication_error"),
    (errors.PermissionDeniedError, 403, "permission_error"),
    (errors.CatalogError, 500, "server_error"),
]


def error_body(
    message: str, type_: str, code: str, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def _for(exc: errors.SuanliError) -> tuple[int, str]:
    for cls, status, type_ in STATUS:
        if isinstance(exc, cls):
            return status, type_
    return 500, "server_error"


def _log_refusal(request: Request, exc: errors.PolicyRefusal) -> None:
    """The request's transaction was rolled back; the refusal is recorded in its own."""
    with request.app.state.sessionmaker() as session:
        compliance.log_decisions(session, exc.subject, exc.actor, exc.refusals)
        session.commit()


async def _suanli(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.SuanliError)
    status, type_ = _for(exc)
    extra: dict[str, Any] = {}
    param = None
    if isinstance(exc, errors.ValidationError):
        param = exc.field
        if exc.line is not None:
            extra["line"] = exc.line
    if isinstance(exc, errors.UnknownChipError):
        extra["suggestions"] = exc.suggestions
    if isinstance(exc, errors.PolicyRefusal):
        extra["rules"] = exc.rules
        extra["refusals"] = exc.refusals
        await run_in_threadpool(_log_refusal, request, exc)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        error_body(exc.message, type_, exc.code, param, **extra), status, headers=headers
    )


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append({"param": format_path(loc) or None, "message": msg})
    param = problems[0]["param"] if problems else None
    message = str(problems[0]["message"]) if problems else "invalid request"
    body = error_body(
        f"{param}: {message}" if param else message, "invalid_request_error", "invalid_value", param
    )
    body["error"]["errors"] = problems
    return JSONResponse(body, 422)


async def _integrity(_request: Request, exc: Exception) -> JSONResponse:
    # A unique constraint lost to a concurrent request; nothing was written.
    return JSONResponse(
        error_body("conflicts with a concurrent change; retry", "conflict_error", "conflict"), 409
    )


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(
        error_body(str(exc.detail), type_, f"http_{exc.status_code}"),
        exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.SuanliError, _suanli)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(StarletteHTTPException, _http)
