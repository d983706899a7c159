"""What wraps every request: the API key, and `RequestGuard` — the body read within limits,
the client's departure noticed, a request id, an access log line and metrics.

`RequestGuard` reads the whole body first (bodies here are JSON of at most a few MB): over
the size limit is a 413 whether the client declared a length or streamed chunks; a body
that trickles in slower than the deadline is a 408; a JSON body that is not UTF-8 is a 422.
While the app works, the guard listens for the client leaving: a request whose client hung
up is cancelled, so its texts are taken out of the encoder's queue instead of costing
encoder time (`batching.py`). Every response carries `X-Request-ID` (the client's own if it
sent a sane one), and one JSON line per request goes to the `bertsearch.access` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
import uuid

from .errors import error_response
from .metrics import Metrics

access_log = logging.getLogger("bertsearch.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CLIENT_GONE = 499  # nginx's "client closed request", in logs and metrics


class RequestGuard:
    def __init__(self, app, *, max_body_bytes: int, body_timeout: float, metrics: Metrics):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        sent = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if REQUEST_ID.match(sent) else uuid.uuid4().hex
        started = time.perf_counter()
        state = {"status": 500}

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.started()
        try:
            refusal = None
            try:
                body = await self._body(headers, receive)
                refusal = _unreadable(headers, body)
            except _TooLarge:
                refusal = (413, f"Request body is larger than {self.max_body_bytes} bytes; "
                                f"send fewer or shorter texts per request.")
            except asyncio.TimeoutError:
                refusal = (408, f"The request body did not arrive within "
                                f"{self.body_timeout:g} seconds.")
            if refusal:
                await error_response(scope["path"], *refusal)(scope, receive, tagged_send)
            else:
                await self._run(scope, body, receive, tagged_send, state)
        finally:
            matched = scope.get("route")
            route = getattr(matched, "path_format", None) or getattr(matched, "path", None) \
                or "(unmatched)"
            seconds = time.perf_counter() - started
            self.metrics.finished(route, scope["method"], state["status"], seconds)
            access_log.info(json.dumps({
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "route": route, "status": state["status"], "ms": round(seconds * 1000, 2),
                "client": (scope.get("client") or ["", None])[0]}))

    async def _body(self, headers: dict, receive) -> bytes:
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge()
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _run(self, scope, body: bytes, receive, send, state) -> None:
        """The app, fed the body read; cancelled if the client leaves before the answer."""
        gone = asyncio.Event()
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        app = asyncio.ensure_future(self.app(scope, replay, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({app, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not app.done():  # the client left: stop its work
                app.cancel()
                state["status"] = CLIENT_GONE
            with contextlib.suppress(asyncio.CancelledError):
                await app
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class _TooLarge(Exception):
    pass


def _unreadable(headers: dict, body: bytes) -> tuple[int, str] | None:
    """A JSON body must be UTF-8 (RFC 8259); say so as a 422 instead of a parse error."""
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if body and kind.endswith(b"json"):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return 422, f"The request body is not valid UTF-8 (byte {exc.start}); JSON " \
                        f"must be sent as UTF-8."
    return None


class BearerAuth:
    """Every route but /health, the API docs and the search page (which hold no data) needs
    `Authorization: Bearer <key>` (the scheme in any case, as RFC 7235 has it)."""

    def __init__(self, app, api_key: str, open_paths: set[str], open_prefixes: tuple):
        self.app = app
        self.expected = api_key.encode()
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in self.open_paths \
                and not path.startswith(self.open_prefixes):
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            valid = scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(),
                                                                        self.expected)
            if not valid:  # compare_digest: constant-time in the key
                response = error_response(
                    path, 401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
                    code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)
