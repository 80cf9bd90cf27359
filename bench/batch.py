"""Batch throughput: 8 short clips with 1 and with 2 local workers, and the ratio of the two.

    .venv/bin/python bench/batch.py [--clips N] [--seconds S] [--rounds R] [--workers 1,2]

Renders N (default 8) synthetic "easy" clips of S seconds (default 8) at 640x360 30 fps once into
bench/cache/batch/, then for each worker count runs the whole batch as the command does (worker start-up
included) on links to the clips in a fresh temp folder, so every round writes every script. Keeps each
count's best of R rounds (default 2), alternating the counts, so that other load on a shared machine
disturbs the figures as little as possible. Prints clips per minute, seconds of video per second, and
each count's throughput over the first count's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from autofunscript.batch import WRITTEN, find_videos, run_batch
from autofunscript.script.funscript import Funscript
from autofunscript.synth import render_clip

CACHE = Path(__file__).resolve().parent / "cache" / "batch"


def stroke_script(seconds: float, seed: int) -> Funscript:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(250, 700, int(seconds * 4) + 2)
    at = np.concatenate([[0], np.cumsum(gaps)])
    pos = np.where(np.arange(at.size) % 2, rng.uniform(70, 100, at.size), rng.uniform(0, 30, at.size))
    return Funscript(at=at.astype(int), pos=pos.astype(int))


def clips(count: int, seconds: float) -> list[Path]:
    """The cached clips (rendered on first use; their truth scripts stay in the cache folder)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = CACHE / f"easy_{seconds:g}s_{seed}.mp4"
        if not path.exists():
            print(f"rendering {path.name} (once) ...", flush=True)
            render_clip(stroke_script(seconds + 1, seed), path, preset="easy", seed=seed, duration_s=seconds,
                        force=True)
        paths.append(path)
    return paths


def timed_batch(sources: list[Path], workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        for source in sources:
            (Path(folder) / source.name).symlink_to(source)
        start = time.perf_counter()
        result = run_batch(find_videos([Path(folder)]), workers=workers)
        elapsed = time.perf_counter() - start
    failed = [o for o in result.outcomes if o.status != WRITTEN]
    if failed:
        raise SystemExit(f"{len(failed)} clips not written: {failed[0].error or failed[0].status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    sources = clips(args.clips, args.seconds)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{len(sources)} clips of {args.seconds:g} s, 640x360")
    best = {w: float("inf") for w in counts}
    for _ in range(args.rounds):
        for workers in counts:
            best[workers] = min(best[workers], timed_batch(sources, workers))
    base = len(sources) / best[counts[0]]
    print(f"{'workers':>7} {'wall s':>8} {'clips/min':>10} {'video s/s':>10} {'vs ' + str(counts[0]):>6}")
    for workers in counts:
        rate = len(sources) / best[workers]
        print(f"{workers:>7} {best[workers]:>8.1f} {rate * 60:>10.1f} {rate * args.seconds:>10.2f} "
              f"{rate / base:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
