"""The model's training corpus, its variants, and the ablation against the flow generator.

    python bench/model_ablation.py corpus --out /work/cache/model-corpus
        renders the synthetic training corpus: 24 s segments of the real scripts in ../shared/data/funscripts
        (never the minute bench/accuracy.py evaluates, never its seed) for every preset, at 320x180
        (VR 640x320 side by side, named _sbs so `train` analyses one eye), with the truth script beside each.
    python bench/model_ablation.py variants --corpus /work/cache/model-corpus --out /work/cache/model-variants
        trains the ablation variants (context length, inputs) with `autofunscript train`; routing needs no
        variant: every model also has the generalist head, so `run` scores each with routing off too.
    python bench/model_ablation.py run --variants /work/cache/model-variants [--presets hard,cuts]
        on bench/accuracy.py's clips (same renders, same evaluate): one tracking pass per clip, then the flow
        generator, the shipped model and each variant on the same windows; prints the README's table.
    python bench/model_ablation.py speed CLIP [--vr sbs]
        times generate --method model on one clip and the share spent in model inference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import PRESETS, SEGMENT_S, densest_segment  # noqa: E402

from autofunscript.model.infer import ModelRunner  # noqa: E402
from autofunscript.script.extrema import find_reversals  # noqa: E402
from autofunscript.script.funscript import read_funscript  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CLIP_S = 24.0
CLIPS_PER_PRESET = {"easy": 16, "medium": 16, "hard": 32, "cuts": 32, "vr": 24}
SIZES = {"vr": (640, 320)}
SMALL = (320, 180)
SEED_BASE = 1000  # bench/accuracy.py renders with seed 1
MIN_REVERSALS = 4  # most segments should move; a few quiet ones teach the still class

# name -> `autofunscript train` options of the ablation variants. They train for 8 epochs (the shipped
# recipe: 16) to fit the machine; "ctx10s" is the shipped recipe at 8 epochs, their reference.
VARIANTS = {
    "ctx10s": ["--epochs", "8"],
    "ctx5s": ["--epochs", "8", "--context", "5"],
    "ctx20s": ["--epochs", "8", "--context", "20"],
    "flow+edges+mask+patch": ["--epochs", "8", "--inputs", "flow,edges,mask,patch"],
}


def training_scripts() -> list[Path]:
    """Every real script, axis files too: each is a different motion to render."""
    return sorted((SHARED / "funscripts").glob("*.funscript"))


def allowed_starts(path: Path, rng: np.random.Generator, count: int) -> list[float]:
    """Starts of `count` CLIP_S segments outside the minute the accuracy benchmark evaluates."""
    script = read_funscript(path)
    at = script.at[script.at >= 0].astype(float) / 1000.0
    pos = script.pos[script.at >= 0]
    main = path.with_name(path.name.split(".")[0] + ".funscript")
    bench_start, bench_len = densest_segment(main, SEGMENT_S)
    lo, hi = at[0], at[-1] - CLIP_S
    rev_t = at[find_reversals(pos, 10).index]
    starts: list[float] = []
    for _ in range(count * 50):
        if len(starts) == count or hi <= lo:
            break
        s = float(rng.uniform(lo, hi))
        if s + CLIP_S > bench_start - 5 and s < bench_start + bench_len + 5:
            continue
        busy = np.searchsorted(rev_t, s + CLIP_S) - np.searchsorted(rev_t, s) >= MIN_REVERSALS
        if busy or rng.random() < 0.1:
            starts.append(round(s, 3))
    return starts


def corpus(out: Path) -> None:
    from autofunscript.synth import render_clip

    out.mkdir(parents=True, exist_ok=True)
    scripts = training_scripts()
    started = time.perf_counter()
    for preset, total in CLIPS_PER_PRESET.items():
        rng = np.random.default_rng(list(PRESETS).index(preset))
        per_script = int(np.ceil(total / len(scripts)))
        plan = [(s, start) for s in scripts for start in allowed_starts(s, rng, per_script)]
        picks = rng.choice(len(plan), size=min(total, len(plan)), replace=False)
        for k, i in enumerate(sorted(picks)):
            script, start = plan[i]
            seed = SEED_BASE + 100 * list(PRESETS).index(preset) + k
            stem = f"{preset}_{script.name.removesuffix('.funscript').replace('.', '-')}_{int(start)}_s{seed}"
            name = f"{stem}_sbs.mp4" if preset == "vr" else f"{stem}.mp4"
            clip = out / name
            if clip.exists() and clip.with_suffix(".funscript").exists():
                continue
            render_clip(script, clip, preset=preset, seed=seed, size=SIZES.get(preset, SMALL), start_s=start,
                        duration_s=CLIP_S, force=True)
            print(f"{time.perf_counter() - started:7.0f} s  {clip.name}", flush=True)
    print(f"corpus: {len(list(out.glob('*.mp4')))} clips in {out}")


def train_variants(corpus_dir: Path, out: Path, threads: int, only: list[str], cache: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, options in VARIANTS.items():
        if only and name not in only:
            continue
        target = out / name / "motion.onnx"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "autofunscript", "train", str(corpus_dir), "--out",
                               str(target.parent), "--threads", str(threads), "--cache", str(cache), "--force",
                               *options], text=True)
        print(f"{name}: exit {done.returncode} in {time.perf_counter() - started:.0f} s", flush=True)


def variant_runners(variants_dir: Path | None) -> dict[str, ModelRunner]:
    """The shipped model with and without routing or the flow generator's estimate, and every trained variant."""
    runners = {"model": ModelRunner(threads=1), "model, no routing": ModelRunner(threads=1, routing=False),
               "model, no flow blend": ModelRunner(threads=1, flow_blend=False)}
    if variants_dir is not None:
        for name in VARIANTS:
            weights = variants_dir / name / "motion.onnx"
            if weights.exists():
                runners[f"variant {name}"] = ModelRunner(weights, threads=1)
    return runners


def evaluate_case(clip: Path, vr: str | None, runners: dict[str, ModelRunner],
                  truth_path: Path | None = None) -> dict[str, dict]:
    """One tracking pass over the clip, then the flow generator and every model on the same windows."""
    from autofunscript import pipeline
    from autofunscript.model.features import FeatureSpec
    from autofunscript.model.tracking import TrackRequest, TrackSummary, iter_window_features
    from autofunscript.pipeline import GenerateOptions, _Assembler, _window_positions, dense_to_script
    from autofunscript.script.evaluate import evaluate
    from autofunscript.script.funscript import Funscript

    union = FeatureSpec(("flow", "edges", "mask", "patch"))
    names = union.channel_names()
    truth = read_funscript(truth_path or clip.with_suffix(".funscript"))
    started = time.perf_counter()
    windows = list(iter_window_features(TrackRequest(clip, union, eye=vr, keep_images=True), TrackSummary()))
    tracking_s = time.perf_counter() - started
    options = GenerateOptions(vr=vr)
    rows: dict[str, dict] = {}

    def score(dense, seconds: float, extra: dict | None = None) -> dict:
        at, pos, _ = dense_to_script(dense, options.post)
        row = evaluate(Funscript(at=at, pos=pos), truth).to_dict()
        return {"extrema_f1": row["extrema_f1"], "pearson": row["pearson"], "mae": row["mae"],
                "seconds": round(seconds, 3), **(extra or {})}

    # the flow generator's estimate of a window is the same for its own row and for every model that blends
    # it in: measured once per window, then looked up
    started = time.perf_counter()
    flow_estimates = {id(window): pipeline.flow_position(window, options, None) for window, _ in windows}
    flow_s = time.perf_counter() - started
    measure = pipeline.flow_position
    pipeline.flow_position = lambda window, opts, roi_mask: flow_estimates[id(window)]
    try:
        assembler = _Assembler(())
        for window, _ in windows:
            assembler.add(window, *_window_positions(window, options, None))
        rows["flow"] = score(assembler.result(), tracking_s + flow_s)
        rows.update(_score_models(windows, runners, names, options, score, tracking_s))
    finally:
        pipeline.flow_position = measure
    return rows


def _score_models(windows, runners, names, options, score, tracking_s) -> dict[str, dict]:
    """Every model on the same windows (their feature columns sliced from the union of inputs)."""
    from autofunscript.model.infer import InferenceStats, predict_windows

    rows = {}
    for name, runner in runners.items():
        columns = [names.index(c) for c in runner.config.spec.channel_names()]
        sliced = [(w, replace(f, values=f.values[:, columns])) for w, f in windows]
        stats = InferenceStats()
        started = time.perf_counter()
        dense = predict_windows(sliced, runner, options, stats)
        rows[name] = score(dense, tracking_s + time.perf_counter() - started, {"inference_s": round(stats.seconds, 3)})
    return rows


def run(variants_dir: Path | None, presets: str, scripts: str, out: Path, real: bool) -> None:
    from accuracy import main_scripts, render

    runners = variant_runners(variants_dir)
    chosen = main_scripts(scripts)
    wanted = [p for p in presets.split(",") if p]
    cases: dict[str, dict[str, dict]] = {}
    for preset in wanted:
        for script in chosen:
            clip = render(script, preset, 1)
            case = f"{preset}-{script.stem}"
            cases[case] = evaluate_case(clip, "sbs" if preset == "vr" else None, runners)
            print(case, " ".join(f"{m}={r['extrema_f1']:.2f}/{r['pearson']:.2f}" for m, r in cases[case].items()),
                  flush=True)
    if real:
        for ref in sorted((ROOT / "bench" / "references").glob("*.funscript")):
            video = SHARED / "videos" / f"{ref.stem}.mp4"
            if video.exists():
                case = f"real-{ref.stem}"
                cases[case] = evaluate_case(video, None, runners, ref)
                print(case, " ".join(f"{m}={r['extrema_f1']:.2f}/{r['pearson']:.2f}" for m, r in cases[case].items()),
                      flush=True)
        wanted.append("real")
    methods = ["flow", *runners]
    print("\nmeans over each column's clips (synthetic: seed 1): extrema F1 / Pearson r")
    print("| method | " + " | ".join(wanted) + " |")
    print("|---|" + "---|" * len(wanted))
    summary: dict[str, dict[str, dict]] = {}
    for method in methods:
        cells = []
        for preset in wanted:
            rows = [cases[c][method] for c in cases if c.startswith(f"{preset}-")]
            f1 = float(np.mean([r["extrema_f1"] for r in rows]))
            r = float(np.mean([r["pearson"] or 0.0 for r in rows]))
            summary.setdefault(method, {})[preset] = {"extrema_f1": round(f1, 4), "pearson": round(r, 4)}
            cells.append(f"{f1:.3f} / {r:.3f}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "summary": summary, "cases": cases}, indent=1))
    print(f"wrote {out}")


def speed(clip: Path, vr: str | None, repeats: int) -> None:
    from autofunscript.model.infer import InferenceStats, track_with_model
    from autofunscript.pipeline import GenerateOptions, dense_to_script

    options = GenerateOptions(method="model", vr=vr)
    runner = ModelRunner()
    for _ in range(repeats):
        stats = InferenceStats()
        started = time.perf_counter()
        dense, _, frames, _ = track_with_model(clip, options, runner=runner, stats=stats)
        dense_to_script(dense, options.post)
        total = time.perf_counter() - started
        print(f"{clip.name}: {frames} frames, generate {total:.2f} s, model inference {stats.seconds:.3f} s "
              f"({100 * stats.seconds / total:.1f} %), {stats.chunks} chunks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("corpus")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("variants")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated variant names")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "autofunscript" / "features")
    p = sub.add_parser("run")
    p.add_argument("--variants", type=Path, default=None)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--scripts", default="", help="comma-separated script stems (default: all)")
    p.add_argument("--real", action="store_true", help="also the real clips with bench/references scripts")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model-ablation.json")
    p = sub.add_parser("speed")
    p.add_argument("clip", type=Path)
    p.add_argument("--vr", choices=["sbs", "ou"], default=None)
    p.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.command == "corpus":
        corpus(args.out)
    elif args.command == "variants":
        train_variants(args.corpus, args.out, args.threads, [v for v in args.only.split(",") if v], args.cache)
    elif args.command == "run":
        run(args.variants, args.presets, args.scripts, args.out, args.real)
    else:
        speed(args.clip, args.vr, args.repeats)


if __name__ == "__main__":
    main()
