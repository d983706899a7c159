"""The server's malloc settings: freed encoder-sized buffers go back to the system instead of
piling up in the heap (what made the server grow under a mixed soak, bench/RESULTS.md)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHURN = textwrap.dedent("""
    import sys
    import numpy as np
    from server.allocator import fix_malloc_thresholds
    if sys.argv[1] == "fixed":
        assert fix_malloc_thresholds()
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    base, keep = rss_mb(), []
    for round in range(30):  # batches of varied shapes, with small objects kept meanwhile
        big = [np.ones(1_000_000 + 37_000 * ((round * 7 + j) % 13), dtype=np.float32)
               for j in range(6)]
        keep.append(np.ones(2000, dtype=np.float32))
        del big
    print(rss_mb() - base)
""")


def retained_mb(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True,
                          check=True, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_large_buffers_return_to_the_system():
    assert retained_mb("fixed") < 8
    assert retained_mb("plain") > 20  # the control: glibc's own moving threshold keeps them
