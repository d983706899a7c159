"""Limits on search requests, defined once for Python, the CLI and HTTP alike."""

MAX_K = 1000  # the most hits one search returns
