"""Keeping a long-running server's memory from creeping up under mixed load.

glibc's malloc raises its mmap threshold every time a large block is freed, up to 32 MB, so
after a while the encoder's activation buffers (a few MB each, a new size for every batch
shape) are carved out of the heap instead of mapped and unmapped. Freed, they leave holes
that the next, differently shaped batch cannot reuse, and the heap never shrinks: the server
grew by hundreds of MB over minutes of mixed requests (bench/RESULTS.md, "Soak"). A fixed
threshold keeps large buffers mapped (returned to the system when freed) and small objects on
the heap, which is what a server that runs for weeks needs. Whoever sets glibc's own
`MALLOC_MMAP_THRESHOLD_` keeps their choice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True if they were set.
    Elsewhere (musl, macOS) or when the user set them through the environment, nothing
    happens."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
