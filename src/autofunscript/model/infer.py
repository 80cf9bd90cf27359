"""Model inference on ONNX Runtime: windows of features -> per-frame positions for the shared post-processing.

Each analysis window is cut into chunks of the model's context with 50 % overlap, all chunks of a
window run as one batch, and the chunk outputs are stitched: every chunk predicts positions
normalised over itself, so each new chunk is first fitted (scale and offset) to what is already
stitched on their overlap, then cross-faded in.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from autofunscript.errors import AutofunscriptError
from autofunscript.model.card import ModelCard, read_card
from autofunscript.model.features import FEATURE_RATE, WindowFeatures, model_input
from autofunscript.model.router import HEADS, route
from autofunscript.model.tracking import TrackRequest, TrackSummary, iter_window_features
from autofunscript.motion.segments import Window, frame_rate
from autofunscript.motion.signal import Rival

log = logging.getLogger("autofunscript")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_NAME = "motion"
BATCH_CHUNKS = 32
FIT_SCALE_LIMITS = (0.5, 2.0)
AGREE_S = 3.0  # the model and the flow generator are compared over stretches this long
AGREE_R = (0.3, 0.8)  # correlation at which the flow generator starts to get, and fully gets, FLOW_SHARE
FLOW_SHARE = 0.8


MODEL_ENV = "AUTOFUNSCRIPT_MODEL"  # path of other weights to use instead of the shipped ones


def shipped_model_path() -> Path:
    return WEIGHTS_DIR / f"{SHIPPED_NAME}.onnx"


def default_model_path() -> Path:
    chosen = os.environ.get(MODEL_ENV)
    return Path(chosen) if chosen else shipped_model_path()


def card_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def default_threads() -> int:
    # the decode thread and the flow loop already keep two cores busy; inference is a small share
    return max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class WindowPrediction:
    """Model outputs over a window's feature grid (positions normalised over the window's chunks)."""

    general: np.ndarray  # (N,)
    heads: np.ndarray  # (len(HEADS), N)
    logits: np.ndarray  # (types, N)


@dataclass
class InferenceStats:
    """Where inference time went (for the speed benchmark)."""

    seconds: float = 0.0
    chunks: int = 0


class ModelRunner:
    """A loaded model: its card and an ONNX Runtime session on the CPU (`routing` overrides the card's;
    `flow_blend` False leaves out the flow generator's estimate, see blend_with_flow)."""

    def __init__(self, onnx_path: Path | None = None, threads: int | None = None, routing: bool | None = None,
                 flow_blend: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(onnx_path) if onnx_path else default_model_path()
        if not self.path.is_file():
            raise AutofunscriptError(f"{self.path}: no model weights there")
        self.card: ModelCard = read_card(card_path(self.path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise AutofunscriptError(f"{self.path}: cannot load model ({str(exc).splitlines()[0]})") from None
        # routing can be switched off at inference: every model also has the generalist head
        self.config = self.card.config if routing is None else replace(self.card.config, routing=routing)
        self.length = self.config.context_steps
        self.flow_blend = flow_blend  # see blend_with_flow; off only to measure what it adds

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions, logits = self.session.run(None, {"features": batch.astype(np.float32)})
        return positions, logits

    def predict(self, values: np.ndarray, hint: float | None = None,
                stats: InferenceStats | None = None) -> WindowPrediction:
        """Outputs for a window's feature rows (N, C); `hint` is the known position at its first step."""
        started = time.perf_counter()
        n = values.shape[0]
        starts = chunk_starts(n, self.length)
        inputs = np.stack([model_input(values[s : s + self.length], self.length, self.config.spec,
                                       hint if s == 0 else None) for s in starts])
        outputs = [self.run(inputs[i : i + BATCH_CHUNKS]) for i in range(0, len(starts), BATCH_CHUNKS)]
        positions = np.concatenate([o[0] for o in outputs])
        logits = np.concatenate([o[1] for o in outputs])
        prediction = _stitch(starts, positions, logits, n)
        if stats is not None:
            stats.seconds += time.perf_counter() - started
            stats.chunks += len(starts)
        return prediction

    def positions(self, prediction: WindowPrediction) -> np.ndarray:
        """Per-step position (NaN where a still segment holds) by the configured routing."""
        if self.config.routing:
            return route(prediction.heads, prediction.logits).position
        return prediction.general


def chunk_starts(n: int, length: int) -> list[int]:
    """Starts of chunks of `length` covering n steps with half overlap (the last one flush with the end)."""
    if n <= length:
        return [0]
    starts = list(range(0, n - length, length // 2))
    return starts + [n - length]


def _fit(new: np.ndarray, old: np.ndarray) -> tuple[float, float]:
    """Scale and offset mapping `new` onto `old` in the least-squares sense (scale kept sane)."""
    dn = new - new.mean()
    var = float((dn**2).sum())
    scale = float((dn * (old - old.mean())).sum()) / var if var > 1e-9 else 1.0
    scale = float(np.clip(scale, *FIT_SCALE_LIMITS))
    return scale, float(old.mean() - scale * new.mean())


def _stitch(starts: list[int], positions: np.ndarray, logits: np.ndarray, n: int) -> WindowPrediction:
    """Join chunk outputs (B, P, L) into window outputs: fit each chunk to the stitched overlap, then fade."""
    p_out = np.zeros((positions.shape[1], n))
    l_out = np.zeros((logits.shape[1], n))
    done = 0
    for start, pos, lg in zip(starts, positions, logits):
        end = min(start + pos.shape[1], n)
        pos, lg = pos[:, : end - start].astype(np.float64), lg[:, : end - start]
        overlap = max(0, done - start)
        if overlap:
            scale, offset = _fit(pos[0, :overlap], p_out[0, start:done])
            pos = pos * scale + offset
            ramp = np.linspace(0.0, 1.0, overlap + 2)[1:-1]
            p_out[:, start:done] = p_out[:, start:done] * (1 - ramp) + pos[:, :overlap] * ramp
            l_out[:, start:done] = l_out[:, start:done] * (1 - ramp) + lg[:, :overlap] * ramp
        p_out[:, done:end] = pos[:, overlap:]
        l_out[:, done:end] = lg[:, overlap:]
        done = end
    return WindowPrediction(general=p_out[0], heads=p_out[1 : 1 + len(HEADS)], logits=l_out)


def grid_to_frames(features: WindowFeatures, values: np.ndarray) -> np.ndarray:
    """Per-step values (NaN allowed) -> per-frame values at the window's frame times."""
    grid, frames = features.grid_times_s, features.frame_times_s
    if grid.size == 1:
        return np.full(frames.size, values[0])
    known = ~np.isnan(values)
    if not known.any():
        return np.full(frames.size, np.nan)
    out = np.interp(frames, grid[known], values[known])
    nearest = np.clip(np.rint((frames - grid[0]) * (grid.size - 1) / (grid[-1] - grid[0])).astype(int), 0,
                      grid.size - 1)
    out[~known[nearest]] = np.nan
    return out


def track_with_model(path: Path, options, progress: Callable[[float, float], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, runner: ModelRunner | None = None,
                     stats: InferenceStats | None = None, initial_position: float | None = None):
    """The model's counterpart of pipeline.track_motion: (dense signal, cut times, frames, interrupted).

    `options` is a pipeline.GenerateOptions; `initial_position` (0-100) is the known position at the start.
    """
    from autofunscript.pipeline import _poi_mask_for, checked_end_s

    runner = runner or ModelRunner()
    poi = options.poi
    roi_mask_for = None
    if poi is not None:
        def roi_mask_for(frame_w: int, frame_h: int, source_w: int, source_h: int, cell: int) -> np.ndarray:
            return _poi_mask_for(poi, frame_w, frame_h, source_w, source_h, cell)
    request = TrackRequest(path=Path(path), spec=runner.config.spec, start_s=options.start_s, end_s=options.end_s,
                           eye=options.vr, analysis_width=options.analysis_width,
                           drift_cutoff_hz=options.drift_cutoff_hz, roi_mask_for=roi_mask_for,
                           keep_images=runner.flow_blend,
                           checked_end_s=lambda info: checked_end_s(Path(path), info, options))
    summary = TrackSummary()
    windows = iter_window_features(request, summary, progress, should_stop)
    dense = predict_windows(windows, runner, options, stats, initial_position)
    return dense, summary.cut_times_s, summary.frames, summary.interrupted


def predict_windows(windows: Iterable[tuple[Window, WindowFeatures]], runner: ModelRunner, options,
                    stats: InferenceStats | None = None, initial_position: float | None = None):
    """Model positions for each window, joined like the flow generator's (see window_positions).

    Each window is predicted on a second thread while the next one is decoded (ONNX Runtime and OpenCV
    release the GIL), as the flow generator analyses its windows.
    """
    from autofunscript.pipeline import EXTRA_AXES, _Assembler, _Span

    span = _Span(None, _Assembler(tuple(a for a in options.axes if a in EXTRA_AXES)))
    hint = initial_position  # known only at the start of the first window
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as worker:
        try:
            for window, features in windows:
                span.pending.append((window, worker.submit(window_positions, window, features, runner, options,
                                                           hint, stats, find_rival=True)))
                hint = None
                span.collect(keep=1)
            span.collect()
        finally:
            for _, future in span.pending:  # an error or Ctrl+C: queued predictions are not wanted any more
                future.cancel()
    return span.assembler.result()


def window_positions(window: Window, features: WindowFeatures, runner: ModelRunner, options,
                     hint: float | None = None, stats: InferenceStats | None = None, find_rival: bool = False
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], Rival | None]:
    """One window's per-frame positions, normalised to the output range, its extra axes (0-100), and with
    `find_rival` a second body beside the flow generator's choice (see flow_position; blending models only).

    `options` is a pipeline.GenerateOptions. Extra axes come from the classical analysis of the window; a
    still window (by the flow generator's own test) is all NaN, so the last position is held through it.
    When the window carries its frames, the flow generator's estimate is blended in (blend_with_flow).
    """
    from autofunscript.pipeline import EXTRA_AXES, STILL_ENERGY, fit_range, flow_position
    from autofunscript.script.postprocess import robust_normalise

    axes = tuple(a for a in options.axes if a in EXTRA_AXES)
    if features.classic.energy < STILL_ENERGY:
        nan = np.full(window.times_s.size, np.nan)
        return nan, {name: nan for name in axes}, None
    prediction = runner.predict(features.values, hint, stats)
    position = grid_to_frames(features, runner.positions(prediction))
    moving = ~np.isnan(position)
    rival = None
    if moving.any():
        fps = frame_rate(window.times_s, FEATURE_RATE)
        position[moving] = fit_range(position[moving], fps, options, integrated=False)
        if runner.flow_blend and window.images is not None:
            flow, flow_analysis = flow_position(window, options, features.roi_mask, find_rival)
            rival = flow_analysis.rival
            if flow is not None:
                position[moving] = blend_with_flow(position[moving], flow[moving], fps)
    extra = {name: robust_normalise(features.classic.extra[name], 0, 100) for name in axes}
    return position, extra, rival


def _rolling_correlation(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d  # see pipeline.preload_scipy

    mean_a, mean_b = uniform_filter1d(a, size), uniform_filter1d(b, size)
    covariance = uniform_filter1d(a * b, size) - mean_a * mean_b
    variance = (uniform_filter1d(a * a, size) - mean_a**2) * (uniform_filter1d(b * b, size) - mean_b**2)
    return covariance / np.sqrt(np.maximum(variance, 1e-9))


def blend_with_flow(model: np.ndarray, flow: np.ndarray, fps: float) -> np.ndarray:
    """Average the model's positions with the flow generator's where the two agree.

    Two estimates with different errors, averaged, beat either; where they disagree (a distractor, an
    occluder, camera motion the tracker took for the subject) the flow generator is the one that is
    usually wrong, so the model's stand. Both are already fitted to the output range.
    """
    from scipy.ndimage import uniform_filter1d  # see pipeline.preload_scipy

    size = max(3, round(AGREE_S * fps))
    low, high = AGREE_R
    agreement = np.clip((_rolling_correlation(model, flow, size) - low) / (high - low), 0.0, 1.0)
    weight = FLOW_SHARE * uniform_filter1d(agreement, max(1, size // 2))
    return weight * flow + (1.0 - weight) * model
