"""Decode speed: autofunscript.video frames() against `ffmpeg -f null` on the same file, same run.

    .venv/bin/python bench/decode.py [CLIP_1080P] [--rounds N] [--no-sbs]

Without a clip it encodes (once, cached in bench/cache/) a 20 s 1080p30 H.264 clip of ffmpeg's moving
test pattern with libx264's default preset, and a 10 s 3840x1920 side-by-side VR clip for the eye crop.
Each case runs ffmpeg and ours alternately for several rounds. It prints each one's best fps and their
ratio (ours/ffmpeg), the median of the rounds' ratios (each round's pair ran back to back, under nearly
the same load from other processes), and the CPU time per frame over all threads, which such load
disturbs much less than wall time.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time
from pathlib import Path

from autofunscript.video import open_video

CACHE = Path(__file__).resolve().parent / "cache"
CLIP_1080 = CACHE / "testsrc2_1080p30_20s.mp4"
CLIP_SBS = CACHE / "testsrc2_sbs_3840x1920_10s.mp4"


def make_clip(path: Path, source: list[str], seconds: int) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.mp4")
        print(f"encoding {path.name} (once) ...", flush=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", *source, "-t", str(seconds), "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", str(partial)], check=True)
        partial.rename(path)
    return path


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_run(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `ffmpeg -f null` decoding the file."""
    cpu, start = children_cpu_seconds(), time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - start, children_cpu_seconds() - cpu


def ours_run(path: Path, **frames_args) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, frames) of iterating frames() over the file."""
    with open_video(path) as video:
        cpu, start = time.process_time(), time.perf_counter()
        count = sum(1 for _ in video.frames(**frames_args))
        return time.perf_counter() - start, time.process_time() - cpu, count


def compare(label: str, path: Path, rounds: int, **frames_args) -> None:
    ffmpeg_walls, ffmpeg_cpus, ours_walls, ours_cpus = [], [], [], []
    count = 0
    for _ in range(rounds):
        wall, cpu = ffmpeg_run(path)
        ffmpeg_walls.append(wall)
        ffmpeg_cpus.append(cpu)
        wall, cpu, count = ours_run(path, **frames_args)
        ours_walls.append(wall)
        ours_cpus.append(cpu)
    ffmpeg_fps, ours_fps = count / min(ffmpeg_walls), count / min(ours_walls)
    # each round's pair ran back to back, so its ratio sees nearly the same machine load
    paired = statistics.median(f / o for f, o in zip(ffmpeg_walls, ours_walls))
    print(f"{label:<42} best: ffmpeg {ffmpeg_fps:6.1f} fps  ours {ours_fps:6.1f} fps  ratio {ours_fps / ffmpeg_fps:.2f}"
          f"   median paired ratio {paired:.2f}"
          f"   CPU ms/frame ffmpeg {1000 * min(ffmpeg_cpus) / count:5.2f} ours {1000 * min(ours_cpus) / count:5.2f}"
          f"   ({count} frames, {rounds} rounds)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, help="a 1080p H.264 clip (default: make one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sbs", action="store_true", help="skip the 3840x1920 side-by-side case")
    args = parser.parse_args()

    clip = args.clip or make_clip(CLIP_1080, ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"], 20)
    compare("grey, width 640", clip, args.rounds, width=640)
    compare("grey, width 320, no deblocking (generate)", clip, args.rounds, width=320, deblock=False)
    compare("BGR, width 640", clip, args.rounds, width=640, color=True)
    compare("grey, full size", clip, args.rounds)
    if not args.no_sbs:
        # two different halves (the right one mirrored), as in a real side-by-side VR video
        sbs = make_clip(CLIP_SBS, ["-f", "lavfi", "-i", "testsrc2=size=1920x1920:rate=30",
                                   "-vf", "split[l][r];[r]hflip[m];[l][m]hstack"], 10)
        compare("SBS 3840x1920, left eye, width 640", sbs, args.rounds, width=640, eye="sbs")
        compare("SBS left eye, width 320, no deblocking", sbs, args.rounds, width=320, eye="sbs", deblock=False)


if __name__ == "__main__":
    main()
