"""Videos that store a lower frame rate's pictures: generate on 24 fps motion stored at 24, 30 and 60 fps.

Film and much web video is shot at 24 fps and stored at 30 or 60 fps by showing each picture two or three times
(ffmpeg's fps filter does the same here). The accuracy suite's `medium` segments (bench/accuracy.py: the densest
minute of each real script, seed 1) are rendered at 24 fps, then re-encoded at 30 and 60 fps with repeated
frames. The 24 fps clip is the control: the same pictures with no repeats. Prints the mean F1, Pearson, MAE
and actions per script for each rate, and writes JSON (default bench/results/repeated-frames.json). Clips are
cached in bench/cache/repeats.

    python bench/repeated_frames.py [--jobs 2] [--scripts real_01,real_04] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import (ROOT, main_scripts, print_row, print_table, render, run_case, run_grouped,  # noqa: E402
                      summarise)
from autofunscript.script.funscript import read_funscript  # noqa: E402

CACHE = ROOT / "bench" / "cache" / "repeats"
PICTURE_FPS = 24
STORED_FPS = (24, 30, 60)


def clip_for(script: Path, stored_fps: int, seed: int) -> tuple[Path, Path]:
    """The script's segment as 24 fps pictures stored at `stored_fps`, and its truth script."""
    pictures = render(script, "medium", seed, CACHE / f"{script.stem}_s{seed}_{PICTURE_FPS}.mp4", PICTURE_FPS)
    truth = pictures.with_suffix(".funscript")
    if stored_fps == PICTURE_FPS:
        return pictures, truth
    stored = CACHE / f"{script.stem}_s{seed}_{PICTURE_FPS}at{stored_fps}.mp4"
    if not stored.exists():
        partial = stored.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(pictures), "-vf", f"fps={stored_fps}",
                        "-c:v", "libx264", "-crf", "20", str(partial)], check=True)
        partial.rename(stored)
    return stored, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", default="", help="comma-separated script stems (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "repeated-frames.json")
    args = parser.parse_args()
    scripts = main_scripts(args.scripts)
    out_dir = CACHE / "out"
    out_dir.mkdir(parents=True, exist_ok=True)

    def case(rate: str, script: Path) -> dict:
        video, truth = clip_for(script, int(rate), args.seed)
        name = f"{PICTURE_FPS}at{rate}-{script.stem}"
        row = run_case(name, video, truth, "flow", out_dir, [])
        if "error" not in row:
            row["actions"] = int(read_funscript(out_dir / f"{name}.funscript").at.size)
        print_row(row, ("extrema_f1", "pearson", "mae", "actions"))
        return row

    started = time.perf_counter()
    # each script's 24 fps clip first: the cases of all three rates read it
    run_grouped(["render"], scripts, lambda _, script: clip_for(script, PICTURE_FPS, args.seed), args.jobs)
    rows = run_grouped([str(r) for r in STORED_FPS], scripts, case, args.jobs)
    summary = {}
    for rate, group in rows.items():
        summary[f"{PICTURE_FPS} fps stored at {rate}"] = {
            **summarise(group), "actions": float(np.mean([r["actions"] for r in group if "actions" in r] or [0]))}
    print_table(f"{PICTURE_FPS} fps pictures, medium preset, seed {args.seed} (means over {len(scripts)} scripts)",
                summary)
    for name, values in summary.items():
        print(f"{name}: {values['actions']:.0f} actions a script")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "summary": summary,
                                     "cases": rows}, indent=1))
    print(f"\nwrote {args.json} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
