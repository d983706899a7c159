"""bertsearch's HTTP server: `create_app(ServerSettings(...))`, served by uvicorn (`serve`).

Names are imported on first use, so `server.client` (the CLI's `query --server`) does not
load FastAPI, the indexer or the model.
"""

import importlib

_EXPORTS = {"create_app": "app", "serve": "run", "ServerSettings": "settings"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
