"""End-to-end speed and memory of `generate`, against ffmpeg decoding the same file in the same run.

    .venv/bin/python bench/speed.py [--rounds N] [--skip-long] [--long-minutes M] [--method flow|model]

1. 1080p30 H.264 (20 s, ffmpeg's moving test pattern), a 60 s 1080p30 `synth` clip (medium preset: a
   subject stroking irregularly, camera shake and drift), the same clip 5 times over (5 min, joined without
   re-encoding) and a 3840x1920 side-by-side VR clip (--vr sbs): generate's throughput (frames/s) /
   `ffmpeg -f null` throughput, and the CPU time each used. generate is timed twice: in-process (the whole
   pipeline, its imports done) and as the `autofunscript generate` command, which is what a user waits for
   and is like for like with the ffmpeg command (Python's start, imports, writing). Rounds alternate and each
   side keeps its best, so other load on the machine disturbs the ratio least. The test pattern has no
   subject, so the band tracker loses it in every window and does the most work there; the synth clip is
   what generate meets in use, over several overlapping windows. On a short clip the last window is
   analysed after the last frame is decoded; the 5-minute clip shows the rate generate sustains.
2. Memory: peak RSS of `autofunscript generate` (a subprocess) on a long low-resolution clip (default 120
   minutes, 320x180), sampled along the run to show it stays flat.
Clips are encoded once into bench/cache/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import CACHE, CLIP_1080, CLIP_SBS, children_cpu_seconds, ffmpeg_run, make_clip  # noqa: E402

import numpy as np  # noqa: E402

from autofunscript.pipeline import GenerateOptions, generate  # noqa: E402
from autofunscript.script.funscript import Funscript, write_funscript  # noqa: E402


def generate_run(path: Path, options: GenerateOptions) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of every thread, frames) of one in-process generate."""
    cpu, started = time.process_time(), time.perf_counter()
    result = generate(path, options)
    return time.perf_counter() - started, time.process_time() - cpu, result.frames


def command_run(path: Path, options: GenerateOptions) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the `autofunscript generate` command, from its start to its exit: what a
    user waits for, with Python's start, the imports and the writing of the script."""
    args = ["--method", options.method] + (["--vr", options.vr] if options.vr else [])
    with tempfile.TemporaryDirectory() as tmp:
        cpu, started = children_cpu_seconds(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "autofunscript", "generate", str(path), "--out",
                        str(Path(tmp) / "out.funscript"), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - started, children_cpu_seconds() - cpu


def compare(label: str, path: Path, options: GenerateOptions, rounds: int) -> None:
    """ffmpeg, generate in-process and the generate command in turn; each side keeps its fastest round."""
    best_ffmpeg = best_ours = best_command = (float("inf"), 0.0)  # (wall, CPU)
    frames = 0
    for _ in range(rounds):
        best_ffmpeg = min(best_ffmpeg, ffmpeg_run(path))
        wall, cpu, frames = generate_run(path, options)
        best_ours = min(best_ours, (wall, cpu))
        best_command = min(best_command, command_run(path, options))
    ffmpeg_fps, ours_fps, command_fps = (frames / best[0] for best in (best_ffmpeg, best_ours, best_command))
    print(f"{label}: ffmpeg -f null {ffmpeg_fps:.0f} fps, generate {ours_fps:.0f} fps, "
          f"ratio {ours_fps / ffmpeg_fps:.2f}; CPU {best_ffmpeg[1]:.1f} s / {best_ours[1]:.1f} s; "
          f"the command {command_fps:.0f} fps, ratio {command_fps / ffmpeg_fps:.2f}, CPU {best_command[1]:.1f} s",
          flush=True)


def synth_clip(seconds: int = 60) -> Path:
    """A 1080p30 medium-preset clip of irregular strokes (0.35-1.2 s each, some shallow, a few pauses),
    rendered once into bench/cache/ from a script made here (the bench needs nothing from ../shared)."""
    clip = CACHE / f"synth_medium_1080p30_{seconds}s.mp4"
    if clip.exists():
        return clip
    rng = np.random.default_rng(7)
    times_s, positions, t, high = [0.0], [10.0], 0.0, True
    while t < seconds + 1:
        t += rng.uniform(1.0, 2.5) if rng.random() < 0.05 else rng.uniform(0.35, 1.2)  # now and then a pause
        depth = rng.uniform(30, 60) if rng.random() < 0.2 else rng.uniform(70, 100)
        times_s.append(t)
        positions.append(50 + (depth / 2 if high else -depth / 2))
        high = not high
    script = CACHE / "synth_medium_strokes.funscript"
    CACHE.mkdir(parents=True, exist_ok=True)
    write_funscript(Funscript.from_samples(np.array(times_s) * 1000, np.array(positions)), script, force=True)
    print(f"rendering {clip.name} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "autofunscript", "synth", "--script", str(script), "--out", str(clip),
                    "--preset", "medium", "--seed", "1", "--size", "1920x1080", "--duration", str(seconds)],
                   check=True, stdout=subprocess.DEVNULL)
    return clip


def repeated_clip(clip: Path, copies: int) -> Path:
    """`clip` played `copies` times in one file, joined without re-encoding (cached in bench/cache/)."""
    joined = CACHE / f"{clip.stem}_x{copies}.mp4"
    if joined.exists():
        return joined
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "parts.txt"
        listing.write_text(f"file '{clip.resolve()}'\n" * copies)
        partial = joined.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-c", "copy", str(partial)], check=True)
        partial.rename(joined)
    return joined


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(minutes: int, method: str) -> None:
    clip = make_clip(CACHE / f"testsrc2_180p30_{minutes}min.mp4",
                     ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-preset", "ultrafast"], minutes * 60)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "long.funscript"
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "autofunscript", "generate", str(clip), "--out", str(out),
                                 "--method", method],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples: list[tuple[float, int]] = []
        while proc.poll() is None:
            samples.append((time.perf_counter() - started, rss_kib(proc.pid)))
            time.sleep(2.0)
        elapsed = time.perf_counter() - started
    peak = max(kib for _, kib in samples) / 1024
    quarter = [kib / 1024 for t, kib in samples if t > elapsed * 0.25]
    by_quarter = [max((kib for t, kib in samples if q * elapsed / 4 <= t < (q + 1) * elapsed / 4), default=0) / 1024
                  for q in range(4)]
    print(f"memory ({method}) on a {minutes} min 320x180 clip: peak RSS {peak:.0f} MB; after the first quarter "
          f"{min(quarter):.0f}-{max(quarter):.0f} MB; peak per quarter of the run "
          f"{' / '.join(f'{mb:.0f}' for mb in by_quarter)} MB (flat if close); {elapsed:.0f} s "
          f"({minutes * 60 / elapsed:.1f}x real time), exit {proc.returncode}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-long", action="store_true", help="skip the long-clip memory run")
    parser.add_argument("--long-minutes", type=int, default=120)
    parser.add_argument("--method", choices=("flow", "model"), default="flow", help="generate method for every run")
    args = parser.parse_args()
    clip = make_clip(CLIP_1080, ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"], 20)
    sbs = make_clip(CLIP_SBS, ["-f", "lavfi", "-i", "testsrc2=size=1920x1920:rate=30",
                               "-vf", "split[l][r];[r]hflip[m];[l][m]hstack"], 10)
    compare(f"1080p30 H.264 ({args.method})", clip, GenerateOptions(method=args.method), args.rounds)
    synth = synth_clip()
    compare(f"1080p30 H.264 synth, 60 s ({args.method})", synth, GenerateOptions(method=args.method), args.rounds)
    compare(f"1080p30 H.264 synth, 5 min ({args.method})", repeated_clip(synth, 5),
            GenerateOptions(method=args.method), args.rounds)
    compare(f"3840x1920 VR sbs ({args.method})", sbs, GenerateOptions(method=args.method, vr="sbs"), args.rounds)
    if not args.skip_long:
        memory(args.long_minutes, args.method)


if __name__ == "__main__":
    main()
