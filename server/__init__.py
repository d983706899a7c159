"""bertsearch's HTTP server: `create_app(ServerSettings(...))`, served by uvicorn."""

from .app import create_app
from .run import serve
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]
