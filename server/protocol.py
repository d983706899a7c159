"""An HTTP protocol for uvicorn with a deadline on receiving a request's headers.

uvicorn's keep-alive timeout is reset by every byte received, so a client trickling a
header one byte at a time holds a connection open indefinitely (Slowloris), and no ASGI
middleware can see a request before its headers are complete. This wraps uvicorn's own
protocol class: from the moment a connection opens, and again after each response, the
next request's headers must arrive within `header_timeout` seconds or the connection is
closed. The body has its own deadline (`middleware.RequestGuard`).
"""

from __future__ import annotations


def with_header_deadline(header_timeout: float):
    """uvicorn's default HTTP protocol class (httptools if installed, else h11), with the
    deadline; pass it to `uvicorn.run(..., http=...)`."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderDeadlineProtocol(base):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc):
            deadline = getattr(self, "_header_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self):
            previous = getattr(self, "_header_deadline", None)
            if previous is not None:
                previous.cancel()
            armed_for = self.cycle  # a new request replaces the cycle once its headers came
            self._header_deadline = self.loop.call_later(
                header_timeout, self._headers_overdue, armed_for)

        def _headers_overdue(self, armed_for):
            if self.cycle is armed_for and not self.transport.is_closing() and \
                    (armed_for is None or armed_for.response_complete):
                self.logger.warning("Closed a connection whose request headers did not "
                                    "arrive within %g s.", header_timeout)
                self.transport.close()

    return HeaderDeadlineProtocol
