"""Errors as responses, in one place: library errors become 4xx/503 with a sentence, a
malformed request a 422 naming the fields at fault (never echoing the input back), and the
OpenAI-compatible routes (`/v1/...`) answer in OpenAI's error shape, so OpenAI clients show
the message instead of a bare status code.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from embedder.errors import (
    BertsearchError,
    EncoderMismatchError,
    InvalidInputError,
    ModelNotFoundError,
)
from indexer.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexUnavailableError,
)

from .batching import QueueFullError
from .services import DocumentNotFoundError, FeatureUnavailableError

log = logging.getLogger("bertsearch.server")


class BadTokenIdsError(InvalidInputError):
    """Token ids outside the served model's vocabulary (a 400, as OpenAI answers it)."""


ERROR_STATUS = [  # most specific first
    (QueueFullError, 503),
    (FeatureUnavailableError, 501),
    (DocumentNotFoundError, 404),
    (IndexBusyError, 503),
    (IndexReadOnlyError, 409),
    (IndexNotFoundError, 503),
    (IndexUnavailableError, 503),
    (IndexCorruptError, 503),
    (IndexMismatchError, 409),
    (EncoderMismatchError, 409),
    (ModelNotFoundError, 422),
    (BadTokenIdsError, 400),
    (InvalidInputError, 422),
    (BertsearchError, 400),
]
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 503: "server_error", 501: "server_error"}
MAX_MESSAGE_CHARS = 300  # of anything taken from the request, an excerpt at most


def error_response(request_path: str, status: int, message: str, *, param: str | None = None,
                   code: str | None = None, detail=None, headers=None) -> JSONResponse:
    """A JSON error: OpenAI's shape under /v1, else `{"detail": ...}`."""
    if request_path.startswith("/v1/"):
        body = {"error": {"message": message, "type": OPENAI_TYPES.get(status, "api_error"),
                          "param": param, "code": code}}
    else:
        body = {"detail": message if detail is None else detail}
    return JSONResponse(body, status_code=status, headers=headers)


def excerpt(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "…"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BertsearchError)
    async def library_error(request: Request, exc: BertsearchError):
        status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
        busy = isinstance(exc, (QueueFullError, IndexBusyError))
        return error_response(request.url.path, status, _short(str(exc)),
                              headers={"Retry-After": "1"} if busy else None)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        items = [{"loc": [str(p) if not isinstance(p, int) else p for p in error["loc"]],
                  "msg": _short(error["msg"]), "type": error["type"]}
                 for error in exc.errors()[:20]]
        first = items[0] if items else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        return error_response(request.url.path, 422, f"{where}: {first['msg']}",
                              param=where, detail=items)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(request.url.path, exc.status_code, _short(str(exc.detail)),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: logged, never leaked
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500,
                              "Internal error; the server logged it. Please report it.")


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else \
        message[:MAX_MESSAGE_CHARS] + "…"
