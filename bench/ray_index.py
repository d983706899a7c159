"""Embedding on Ray vs in process: the same corpus, passages/s, Ray's overhead and scaling.

    python bench/ray_index.py [--files 120] [--gpu]

The first `--files` linux-docs files are indexed four ways into fresh indexes, one after
another, with torch threads pinned so each compares like with like:
  - in process, 1 thread (the baseline for one actor);
  - Ray (a local cluster, `ray.init(num_cpus=2)`), 1 actor of 1 CPU;
  - Ray, 2 actors of 1 CPU each;
  - in process, 2 threads (what `bertsearch index` does on this machine without Ray);
  - with `--gpu`, Ray with 1 GPU actor.
Reported: passages/s, Ray's overhead against in process on one actor (goal <= 15 %) and
the scaling from 1 to 2 single-core actors (efficiency = speed-up / 2, goal >= 0.85). The
whole index build is timed (reading, chunking, writing too), as a user waits for it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import Timer, print_table, shared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()

    import ray
    import torch

    from embedder import Encoder
    from indexer import build_index

    work = Path(tempfile.mkdtemp(prefix="bertsearch-ray-"))
    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:args.files]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    encoder = Encoder.load("default", device="cpu")
    ray.init(num_cpus=2, num_gpus=1 if args.gpu else 0, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")

    runs = [("in process, 1 thread", dict(threads=1)),
            ("Ray, 1 actor x 1 CPU", dict(ray="auto", ray_actors=1)),
            ("Ray, 2 actors x 1 CPU", dict(ray="auto", ray_actors=2)),
            ("in process, 2 threads", dict(threads=2))]
    if args.gpu:
        runs.append(("Ray, 1 GPU actor", dict(ray="auto", ray_actors=1,
                                               ray_gpus_per_actor=1.0)))
    seconds, passages = {}, 0
    for name, options in runs:
        threads = options.pop("threads", 1)
        torch.set_num_threads(threads)
        with Timer() as t:
            report = build_index(work / "docs", work / f"idx-{len(seconds)}", encoder,
                                 **options)
        seconds[name], passages = t.seconds, report.passages_written
        print(f"{name}: {report.passages_written} passages in {t.seconds:.1f}s", flush=True)
    base, one, two = (seconds["in process, 1 thread"], seconds["Ray, 1 actor x 1 CPU"],
                      seconds["Ray, 2 actors x 1 CPU"])
    rows = [[name, s, passages / s, base / s] for name, s in seconds.items()]
    print(f"{args.files} files, {passages} passages")
    print_table(["run", "seconds", "passages/s", "speed vs in process, 1 thread"], rows)
    print(f"Ray overhead on one actor: {one / base - 1:+.1%} (goal <= 15 %); scaling 1 -> 2 "
          f"actors: {one / two:.2f}x, efficiency {one / two / 2:.2f} (goal >= 0.85)")
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
