"""Synthetic clip render speed per preset: rendered frames per wall-clock second over the video's fps.

    .venv/bin/python bench/synth_speed.py [--seconds S] [--rounds N] [--size WxH]

Renders S seconds (default 20) of a generated stroke script at 640x360 30 fps with every preset (vr also
at its 1280x640 default) into a temp folder, the whole job as the CLI does it: planning, drawing,
x264 encoding, writing the truth and sidecar. Keeps each case's best of N rounds (default 2) so other
load on the machine disturbs the figure as little as possible. A ratio above 1 is faster than real time.
The CPU column (seconds of CPU, all threads, per second of video) is what the render costs whatever the
load; on a busy shared machine the wall-clock ratio understates an idle machine's speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from autofunscript.script.funscript import Funscript
from autofunscript.synth import PRESETS, render_clip
from autofunscript.synth.render import parse_size


def stroke_script(seconds: float) -> Funscript:
    rng = np.random.default_rng(0)
    gaps = rng.uniform(200, 800, int(seconds * 4) + 2)
    at = np.concatenate([[0], np.cumsum(gaps)])
    pos = np.where(np.arange(at.size) % 2, rng.uniform(70, 100, at.size), rng.uniform(0, 30, at.size))
    return Funscript(at=at.astype(int), pos=pos.astype(int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    size = parse_size(args.size)
    script = stroke_script(args.seconds + 1)
    cases = [(name, size) for name in PRESETS] + [("vr", PRESETS["vr"].default_size)]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'preset':<8} {'size':>10} {'frames':>7} {'render fps':>11} {'x real time':>12} {'cpu s/video s':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for name, case_size in cases:
            best = best_cpu = float("inf")
            for _ in range(args.rounds):
                start, start_cpu = time.perf_counter(), time.process_time()
                result = render_clip(script, Path(folder) / f"{name}.mp4", preset=name, size=case_size,
                                     duration_s=args.seconds, force=True)
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
            fps = result.frame_count / best
            print(f"{name:<8} {'x'.join(map(str, case_size)):>10} {result.frame_count:>7} {fps:>11.1f} "
                  f"{fps / 30.0:>12.2f} {best_cpu / args.seconds:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
