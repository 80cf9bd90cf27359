"""The naive baseline the generate issue measures against: a whole-frame optical-flow tracker.

Each frame's mean vertical DIS flow over the whole picture (320 px wide, no ROI, no camera compensation, no
band tracking) is integrated, drift-filtered and fitted to the range over 3 s at a time, then goes through
generate's own post-processing, so only the motion measurement differs. Scored like bench/accuracy.py on
its cached clips (rendered on demand).

    python bench/naive_baseline.py [--presets easy,medium,hard] [--scripts real_01,real_05]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import main_scripts, render  # noqa: E402

from autofunscript.motion.signal import _highpass  # noqa: E402
from autofunscript.pipeline import DenseSignal, GenerateOptions, dense_to_script, fit_range  # noqa: E402
from autofunscript.script.evaluate import evaluate  # noqa: E402
from autofunscript.script.funscript import Funscript, read_funscript  # noqa: E402
from autofunscript.video.stream import open_video  # noqa: E402


def whole_frame_script(clip: Path) -> Funscript:
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    previous, upward, times = None, [], []
    with open_video(clip) as stream:
        fps = stream.info.fps or 30.0
        for frame in stream.frames(width=320):
            if previous is None:
                upward.append(0.0)
            else:  # image y grows downwards; upward motion raises the position
                upward.append(-float(flow.calc(previous, frame.image, None)[..., 1].mean()))
            previous = frame.image
            times.append(frame.time_s)
    options = GenerateOptions()
    position = fit_range(_highpass(np.cumsum(upward), fps, options.drift_cutoff_hz), fps, options)
    at, pos, _ = dense_to_script(DenseSignal(np.asarray(times), position, {}), options.post)
    return Funscript(at=at, pos=pos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="easy,medium,hard")
    parser.add_argument("--scripts", default="", help="comma-separated script stems (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scripts = main_scripts()
    if args.scripts:
        scripts = [s for s in scripts if s.stem in set(args.scripts.split(","))]
    for preset in [p for p in args.presets.split(",") if p]:
        scores = []
        for script in scripts:
            clip = render(script, preset, args.seed)
            result = evaluate(whole_frame_script(clip), read_funscript(clip.with_suffix(".funscript")))
            scores.append((result.extrema_f1, result.pearson))
            print(f"{preset}-{script.stem:10s} extrema_f1={result.extrema_f1:.3f} pearson={result.pearson:.3f}",
                  flush=True)
        f1, r = np.mean(scores, axis=0)
        print(f"{preset}: naive whole-frame flow over {len(scores)} clips: F1 {f1:.3f}, Pearson {r:.3f}", flush=True)


if __name__ == "__main__":
    main()
