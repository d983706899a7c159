"""Running the app under uvicorn, as `bertsearch serve` does."""

from __future__ import annotations

import logging

from .allocator import fix_malloc_thresholds
from .app import create_app
from .protocol import with_header_deadline
from .settings import ServerSettings

GRACEFUL_SHUTDOWN_S = 30  # on SIGTERM/Ctrl-C, in-flight requests get this long to finish


def serve(settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = True) -> None:
    """Serve `create_app(settings)` until interrupted.

    One JSON line per request goes to stderr (`bertsearch.access`, instead of uvicorn's own
    access log) unless `log_level` is above info; request headers must arrive within
    `settings.header_timeout_s` and bodies within `settings.body_timeout_s`; on shutdown,
    requests in flight are finished first; glibc's malloc thresholds are fixed first so
    memory levels off under mixed load (see `allocator`).
    """
    import uvicorn

    fix_malloc_thresholds()
    base = uvicorn.config.LOGGING_CONFIG
    config = {**base,
              "formatters": {**base["formatters"], "json_line": {"format": "%(message)s"}},
              "handlers": {**base["handlers"], "json_lines": {
                  "class": "logging.StreamHandler", "formatter": "json_line",
                  "stream": "ext://sys.stderr"}},
              "loggers": {**base["loggers"], "bertsearch.access": {
                  "handlers": ["json_lines"] if access_log else [],
                  "level": _access_level(log_level),
                  "propagate": False}}}
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                access_log=False, log_config=config,
                http=with_header_deadline(settings.header_timeout_s),
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    logging.shutdown()


def _access_level(log_level: str) -> int:
    """Access lines are INFO records: shown at info and below, silenced by warning and up."""
    level = logging.getLevelName(log_level.upper())
    return max(logging.INFO, level) if isinstance(level, int) else logging.INFO
