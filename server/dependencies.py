"""What routes depend on: the loaded services, and the error responses they document."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .schemas import ErrorOut, OpenAIError
from .services import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain function on a worker thread, for every request
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

_STATUSES = {400: "Bad request", 401: "Missing or wrong API key", 404: "Not found",
             408: "The body arrived too slowly", 409: "Conflicts with the index",
             413: "Body too large", 422: "Malformed or refused input",
             503: "Not ready, busy or damaged (see Retry-After where given)"}
ERRORS = {code: {"model": ErrorOut, "description": text} for code, text in _STATUSES.items()}
OPENAI_ERRORS = {code: {"model": OpenAIError, "description": text}
                 for code, text in _STATUSES.items()}
