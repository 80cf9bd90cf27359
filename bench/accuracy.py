"""Accuracy benchmark: generate scripts for ground-truth clips and evaluate them.

Suite: 60 s segments of every real script in ../shared/data/funscripts (the densest minute of each),
rendered with `autofunscript synth` for each preset, plus the real clips in ../shared/data/videos with
the reference scripts in bench/references. Rendered clips are cached in bench/cache/accuracy, so reruns
only pay for generate. Prints a table per preset and per real clip and writes JSON.

`mae_playable` is the MAE against the reference passed through generate's default speed limit (what a
device can play of it), beside `mae` against the reference as written.

A real clip's reference sidecar (bench/references/NAME.json) also gives each reversal's sub-frame time; the
real rows add `within_frame_of_subframe`: the share of those reversals whose nearest same-kind reversal in the
generated script lies within one frame (the sidecar's frame step) of that time, and `count` beside `count_ref`:
the generated script's count of what the reference counts (push-ups, swings...; see counts()).

    python bench/accuracy.py --method flow [--presets easy,hard] [--scripts real_01,real_05] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autofunscript.script.evaluate import evaluate
from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.script.postprocess import PostSettings, finish
from autofunscript.script.stats import DEFAULT_MIN_SWING

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / "cache" / "accuracy"
REFERENCES = ROOT / "bench" / "references"
PRESETS = ("easy", "medium", "hard", "cuts", "vr")
SEGMENT_S = 60.0
METRICS = ("extrema_f1", "pearson", "mae", "mae_playable", "shift_ms", "amplitude_error")
REAL_COUNTS = ("count", "count_ref", "steps", "steps_ref")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autofunscript", *args], capture_output=True, text=True)


def densest_segment(path: Path, length_s: float) -> tuple[float, float]:
    """Start and duration of the window of `length_s` with the most reversals (the script's busiest minute)."""
    script = read_funscript(path)
    at = script.at[script.at >= 0].astype(float) / 1000.0
    pos = script.pos[script.at >= 0]
    span = at[-1] - at[0]
    if span <= length_s:
        return float(at[0]), float(span)
    rev_t = at[find_reversals(pos, 10).index]
    starts = np.arange(at[0], at[-1] - length_s, 5.0)
    counts = np.searchsorted(rev_t, starts + length_s) - np.searchsorted(rev_t, starts)
    return float(starts[int(np.argmax(counts))]), length_s


def main_scripts(only: str = "") -> list[Path]:
    """Real scripts, one per video (sibling axis files are not separate stroke scripts); `only`, comma-separated
    stems, keeps those (all when empty)."""
    files = sorted((SHARED / "funscripts").glob("*.funscript"))
    wanted = set(only.split(",")) if only else None
    return [f for f in files if f.name.count(".") == 1 and (wanted is None or f.stem in wanted)]


def render(script: Path, preset: str, seed: int, clip: Path | None = None, fps: float | None = None) -> Path:
    """The script's densest minute rendered by `synth` (cached; by default as the suite's clip of that preset)."""
    clip = clip or CACHE / preset / f"{script.stem}_s{seed}.mp4"
    if clip.exists() and clip.with_suffix(".funscript").exists():
        return clip
    clip.parent.mkdir(parents=True, exist_ok=True)
    start, duration = densest_segment(script, SEGMENT_S)
    rate = ["--fps", str(fps)] if fps else []
    done = cli("synth", "--script", str(script), "--out", str(clip), "--preset", preset, "--seed", str(seed),
               "--start", f"{start:.3f}", "--duration", f"{duration:.3f}", *rate, "--force")
    if done.returncode != 0:
        raise RuntimeError(f"synth failed for {script.name}/{preset}: {done.stderr.strip()}")
    return clip


def run_case(name: str, video: Path, truth: Path, method: str, out_dir: Path, extra: list[str]) -> dict:
    out = out_dir / f"{name}.funscript"
    started = time.perf_counter()
    done = cli("generate", str(video), "--out", str(out), "--method", method, "--force", *extra)
    elapsed = time.perf_counter() - started
    row: dict = {"case": name, "video": str(video), "seconds": round(elapsed, 2)}
    if done.returncode != 0:
        row["error"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        return row
    generated, reference = read_funscript(out), read_funscript(truth)
    row.update(evaluate(generated, reference).to_dict())
    row["mae_playable"] = evaluate(generated, playable(reference)).mae
    return row


def playable(reference: Funscript) -> Funscript:
    """The reference as a device can play it: through generate's default speed limit (400 pos/s). Many
    hand-made scripts are faster in places, and generate limits its own output the same way."""
    at, pos, _ = finish(reference.at, reference.pos, PostSettings())
    return Funscript(at=at, pos=pos)


def within_frame_of_subframe(script: Path, sidecar: Path) -> float | None:
    """Share of the reference's sub-frame reversal times matched within one frame (see the docstring)."""
    if not sidecar.exists():
        return None
    reference = json.loads(sidecar.read_text())
    generated = read_funscript(script)
    found = find_reversals(generated.pos.astype(float), DEFAULT_MIN_SWING)
    hits = []
    for reversal in reference["reversals"]:
        kind = 1 if reversal["kind"] == "peak" else -1
        times_ms = generated.at[found.index[found.kind == kind]]
        error = np.abs(times_ms - 1000 * reversal["t_s"]).min() if times_ms.size else np.inf
        hits.append(error <= 1000 * reference["frame_step_s"])
    return float(np.mean(hits)) if hits else None


def counts(script: Path, sidecar: Path) -> dict:
    """The generated script's count of what the reference counts (its interior peaks or troughs, as the
    sidecar's `count_of` says; a script's first and last action are not turns), beside the reference's.
    A sidecar that also records steps of a secondary motion (the treadmill's bounce: one low per step)
    gets the script's interior troughs beside that count too."""
    if not sidecar.exists():
        return {}
    reference = json.loads(sidecar.read_text())
    pos = read_funscript(script).pos.astype(float)
    found = find_reversals(pos, DEFAULT_MIN_SWING)
    interior = (found.index > 0) & (found.index < pos.size - 1)
    peaks, troughs = int((interior & (found.kind > 0)).sum()), int((interior & (found.kind < 0)).sum())
    row = {"count": peaks if reference["count_of"] == "peaks" else troughs, "count_ref": reference["count"],
           "count_name": reference["count_name"]}
    if "steps" in reference.get("secondary", {}):
        row.update(steps=troughs, steps_ref=reference["secondary"]["steps"])
    return row


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    summary = {"cases": len(rows), "failed": len(rows) - len(ok),
               "inverted": sum(bool(r.get("inverted")) for r in ok)}
    for key in METRICS:
        values = [r[key] for r in ok if r.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
        if key in ("extrema_f1", "pearson") and values:
            summary[f"{key}_min"] = float(np.min(values))
    return summary


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) and abs(value) < 10 else f"{value:.0f}" if isinstance(value, float) else str(value)


def print_row(row: dict, keys: tuple[str, ...] = METRICS, width: int = 24) -> None:
    """One case's line as it finishes: its name, then its metrics or its error."""
    print(f"{row['case']:{width}s} " + (row.get("error") or " ".join(f"{k}={fmt(row.get(k))}" for k in keys)),
          flush=True)


def run_grouped(groups: list[str], scripts: list[Path], case: Callable[[str, Path], dict],
                jobs: int) -> dict[str, list[dict]]:
    """case(group, script) for every group and script, `jobs` at once; the rows per group, in script order.

    Each case is a generate subprocess; with several at once their 'seconds' include the contention."""
    pairs = [(group, script) for group in groups for script in scripts]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        rows = list(pool.map(lambda pair: case(*pair), pairs))
    grouped: dict[str, list[dict]] = {group: [] for group in groups}
    for (group, _), row in zip(pairs, rows):
        grouped[group].append(row)
    return grouped


def print_table(title: str, rows: dict[str, dict]) -> None:
    cols = ["cases", "failed", "inverted", *METRICS, "extrema_f1_min", "pearson_min"]
    print(f"\n{title}")
    print("| name | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(fmt(row.get(c)) for c in cols) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="flow")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--scripts", default="", help="comma-separated script stems (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-real", action="store_true", help="skip the real clips")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default bench/results/accuracy-METHOD.json)")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once")
    parser.add_argument("--extra", default="", help="extra generate options, space-separated")
    args = parser.parse_args()

    scripts = main_scripts(args.scripts)
    extra = args.extra.split()
    out_dir = CACHE / f"out-{args.method}"
    out_dir.mkdir(parents=True, exist_ok=True)
    presets = [p for p in args.presets.split(",") if p]

    def case(preset: str, script: Path) -> dict:
        clip = render(script, preset, args.seed)
        vr = ["--vr", "sbs"] if preset == "vr" else []
        row = run_case(f"{preset}-{script.stem}", clip, clip.with_suffix(".funscript"), args.method, out_dir,
                       extra + vr)
        print_row(row)
        return row

    per_preset = run_grouped(presets, scripts, case, args.jobs)
    real_rows = []
    if not args.no_real:
        for ref in sorted(REFERENCES.glob("*.funscript")):
            video = SHARED / "videos" / f"{ref.stem}.mp4"
            if video.exists():
                row = run_case(f"real-{ref.stem}", video, ref, args.method, out_dir, extra)
                if "error" not in row:
                    row["within_frame_of_subframe"] = within_frame_of_subframe(out_dir / f"{row['case']}.funscript",
                                                                               ref.with_suffix(".json"))
                    row.update(counts(out_dir / f"{row['case']}.funscript", ref.with_suffix(".json")))
                real_rows.append(row)
                print_row(row, (*METRICS, "within_frame_of_subframe", *REAL_COUNTS))

    summaries = {preset: summarise(rows) for preset, rows in per_preset.items()}
    print_table(f"method={args.method}, per preset (means over {len(scripts)} scripts, seed {args.seed})", summaries)
    if real_rows:
        print_table("real clips", {r["case"]: {**r, "cases": 1, "failed": int("error" in r)} for r in real_rows})
    result = {"method": args.method, "date": time.strftime("%Y-%m-%d"), "seed": args.seed, "presets": summaries,
              "cases": {preset: rows for preset, rows in per_preset.items()}, "real": real_rows}
    target = args.json or ROOT / "bench" / "results" / f"accuracy-{args.method}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
