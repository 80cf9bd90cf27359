"""What each nuisance of the `hard` preset costs the flow generator.

The accuracy suite's `hard` segments (bench/accuracy.py: the densest minute of each real script, seed 1) are
rendered again with one nuisance turned off at a time. A preset's layers draw from their own random
streams, so each variant keeps the stock clip's layout and subject path and differs only in that
nuisance. Each clip is generated and scored as in bench/accuracy.py; prints the means per variant and
writes JSON (default bench/results/nuisance-ablation.json). Rendered clips are cached beside the suite's.

    python bench/nuisance_ablation.py [--jobs 2] [--scripts real_01,real_04] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import (CACHE, ROOT, SEGMENT_S, densest_segment, main_scripts, print_row, print_table,  # noqa: E402
                      render, run_case, run_grouped, summarise)
from autofunscript.synth import PRESETS, render_clip  # noqa: E402

HARD = PRESETS["hard"]
VARIANTS = {
    "no-occluder": replace(HARD, name="hard-no-occluder", occluder=False),
    "no-distractor": replace(HARD, name="hard-no-distractor", distractor=False),
    "no-motion-blur": replace(HARD, name="hard-no-motion-blur", motion_blur=False),
    "full-contrast": replace(HARD, name="hard-full-contrast", contrast=1.0),
}


def clip_for(variant: str, script: Path, seed: int) -> Path:
    if variant == "hard":
        return render(script, "hard", seed)  # the suite's own clip
    clip = CACHE / f"ablation-{variant}" / f"{script.stem}_s{seed}.mp4"
    if not (clip.exists() and clip.with_suffix(".funscript").exists()):
        clip.parent.mkdir(parents=True, exist_ok=True)
        start, duration = densest_segment(script, SEGMENT_S)
        render_clip(script, clip, preset=VARIANTS[variant], seed=seed, start_s=start, duration_s=duration, force=True)
    return clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", default="", help="comma-separated script stems (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "nuisance-ablation.json")
    args = parser.parse_args()

    scripts = main_scripts(args.scripts)
    variants = ["hard", *VARIANTS]
    out_dir = CACHE / "out-ablation"
    out_dir.mkdir(parents=True, exist_ok=True)

    def case(variant: str, script: Path) -> dict:
        clip = clip_for(variant, script, args.seed)
        row = run_case(f"{variant}-{script.stem}", clip, clip.with_suffix(".funscript"), "flow", out_dir, [])
        print_row(row, width=28)
        return row

    per_variant = run_grouped(variants, scripts, case, args.jobs)
    summaries = {variant: summarise(r) for variant, r in per_variant.items()}
    print_table(f"hard, one nuisance off at a time (means over {len(scripts)} scripts, seed {args.seed})", summaries)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "variants": summaries,
                                     "cases": per_variant}, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
