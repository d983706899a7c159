"""A small client of a running `bertsearch serve`, for `bertsearch query --server URL`.

The standard library only: a query sent to a server never loads numpy, torch or the model,
so it answers in a fraction of a second.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from embedder.errors import BertsearchError


class ServerError(BertsearchError):
    """The server refused the request or could not be reached."""


def remote_search(url: str, body: dict, api_key: str | None = None,
                  timeout: float = 60.0) -> dict:
    """POST `body` to `URL/search`; the server's answer as a dictionary.

    Raises:
        ServerError: the server answered an error (its message), or is not there.
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/search", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json",
                 **({"authorization": f"Bearer {api_key}"} if api_key else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ServerError(f"The server answered {exc.code}: {_detail(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(f"Cannot reach a bertsearch server at {url} ({reason}).") from None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return exc.reason
    detail = body.get("detail", body)
    if isinstance(detail, list) and detail:
        first = detail[0]
        return f"{'.'.join(str(p) for p in first.get('loc', [])[1:])}: {first.get('msg')}"
    return str(detail)
