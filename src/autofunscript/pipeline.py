"""The generate pipeline shared by the CLI, the viewer and batch: video in, Funscript out.

decode (scaled grey, one eye for VR) -> optical flow grid per frame -> windows split at scene cuts ->
position per window along the subject's stroke axis -> blended dense signal -> post-processing.
"""

from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from autofunscript import __version__
from autofunscript.clock import format_clock
from autofunscript.errors import AutofunscriptError
from autofunscript.motion.flow import FlowTracker, MotionSample, remove_camera_leakage
from autofunscript.motion.keyframe import (JUMPY_SHARE, MIN_VISIBLE_SHARE, BandTrack, CameraPaths, better_direction,
                                           choose_axis, mend_from_flow, moves_with, structure_tensors, track_band,
                                           visible_share, without_aperture_noise)
from autofunscript.motion.segments import Window, Windower, crossfade, frame_rate
from autofunscript.motion.signal import (Rival, WindowSignal, along_the_path, analyse_window, rival_motion,
                                         stroke_period)
from autofunscript.script.funscript import Funscript
from autofunscript.script.postprocess import (PostReport, PostSettings, finish, limit_speed, local_normalise,
                                             robust_normalise, smooth, stroke_normalise, to_actions)
from autofunscript.video.stream import VideoInfo, open_video

log = logging.getLogger("autofunscript")

# Below this mean squared ROI velocity (analysis px/frame) a window is camera noise, not a subject.
STILL_ENERGY = 0.02
EXTRA_AXES = ("sway", "roll", "surge")
FLOW_CELL = 10  # analysis pixels per motion-grid cell
# Windows keep their analysis frames for keyframe tracking: 30 s of 320x180 grey is about 50 MB at 30 fps;
# the window being filled, the one being analysed and the frames kept for a full last window make three.
WINDOW_S = 30.0
WINDOW_OVERLAP_S = 4.0
AXIS_AGREE_COS = np.cos(np.radians(2))  # band and flow directions closer than this count as the same
# A window shorter than this whose band saw no change is held, not fitted: under a second the flow alone cannot tell
# strokes from noise (no periodicity to weigh), and fitted to the full range its noise became strokes (cuts real_03's
# last scene of 27 frames: 6 false reversals, the flow's moves at r -0.05 against the truth).
SHORT_SCENE_S = 1.0
MIN_BAND_SEEN = 0.2  # measured: a bob 3 px across 0.0, synthetic subjects 0.67-1.0 (the least: long pauses)
REKEY_S = 8.0  # a fresh keyframe this often: slow zoom, pan and lighting drift stay small between keys
LOCAL_RANGE_S = 3.0  # the output range is fitted over about this long (see local_normalise)
STROKES_PER_RANGE = 3  # ... or over this many strokes when they are faster: reversals are found there (stroke_normalise)
BAND_CENTRE_S = 5.0  # an unregistered band window keeps its own depth; its middle follows the running middle over this long


@dataclass(frozen=True)
class Poi:
    """A point of interest in source-frame pixels (or 0-1 fractions when `relative`), with a box size."""

    x: float
    y: float
    size: float | None = None  # box side in source pixels; None = a quarter of the frame height
    relative: bool = False


@dataclass(frozen=True)
class GenerateOptions:
    method: str = "flow"
    start_s: float = 0.0
    end_s: float | None = None
    vr: str | None = None  # "sbs" or "ou": analyse one eye
    poi: Poi | None = None
    axes: tuple[str, ...] = ()
    analysis_width: int = 320
    drift_cutoff_hz: float = 0.02
    post: PostSettings = field(default_factory=PostSettings)
    initial_position: float | None = None  # known position (0-100) at start_s; used by the model


@dataclass(frozen=True)
class RivalSpan:
    """A stretch of the video (one analysis window, with the seconds it shares with the next) where another
    rhythmic motion kept apart from the tracked one."""

    start_s: float
    end_s: float
    rival: Rival


SAME_PLACE = 0.1  # centres closer than this (in 0-1 fractions of the picture) are one place


def describe_rivals(rivals: list[RivalSpan], shown: int = 3) -> str:
    """One line for the user: where another rhythmic motion kept apart from the tracked one, and the --poi that
    picks each place it was seen (both bodies, where the automatic choice went one way and then the other)."""
    def near(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return math.dist(a, b) < SAME_PLACE

    def xy(point: tuple[float, float]) -> str:
        return f"{point[0]:.2f},{point[1]:.2f}"

    merged: list[RivalSpan] = []  # consecutive windows that saw the same two places, as one stretch
    for span in rivals:
        last = merged[-1] if merged else None
        if (last is not None and span.start_s <= last.end_s and near(span.rival.tracked_xy, last.rival.tracked_xy)
                and near(span.rival.other_xy, last.rival.other_xy)):
            merged[-1] = RivalSpan(last.start_s, span.end_s, last.rival)
        else:
            merged.append(span)
    places: list[tuple[float, float]] = []
    for span in merged:
        if not any(near(span.rival.other_xy, place) for place in places):
            places.append(span.rival.other_xy)
    stretches = "; ".join(f"{format_clock(m.start_s)}-{format_clock(m.end_s)} tracked {xy(m.rival.tracked_xy)}, "
                          f"other {xy(m.rival.other_xy)}" for m in merged[:shown])
    more = f"; {len(merged) - shown} more" if len(merged) > shown else ""
    options = " or ".join(f"--poi {xy(place)}" for place in places[:shown])
    return (f"another motion with a rhythm of its own, apart from the tracked one ({stretches}{more}; 0-1 fractions "
            f"of the picture, one eye in VR). If the script follows the wrong one, run again with {options}")


@dataclass
class DenseSignal:
    """Per-frame positions 0-100 (NaN where there was no usable motion) and extra axes."""

    times_s: np.ndarray
    position: np.ndarray
    extra: dict[str, np.ndarray]
    rivals: list[RivalSpan] = field(default_factory=list)


@dataclass
class GenerateResult:
    script: Funscript
    report: PostReport
    frames: int
    seconds_of_video: float
    elapsed_s: float
    cut_times_s: list[float]
    partial: bool = False
    rivals: list[RivalSpan] = field(default_factory=list)  # where the automatic ROI had a second body to choose from


ProgressCallback = Callable[[float, float], None]  # (video seconds done, video seconds total)


def _poi_mask_for(poi: Poi, frame_w: int, frame_h: int, source_w: int, source_h: int, cell: int) -> np.ndarray:
    """Grid mask around the POI: the box, widened along y so a stroking subject stays inside it."""
    scale = frame_w / source_w
    px = poi.x * source_w if poi.relative else poi.x
    py = poi.y * source_h if poi.relative else poi.y
    size = (poi.size if poi.size else source_h / 4) * scale
    rows, cols = frame_h // cell, frame_w // cell
    cy, cx = (np.arange(rows) + 0.5) * cell, (np.arange(cols) + 0.5) * cell
    # the box follows the subject through its stroke: a stroke can carry it two boxes either way
    inside_y = np.abs(cy - py * scale) <= 2 * size
    inside_x = np.abs(cx - px * scale) <= size / 2 + cell
    return (inside_y[:, None] & inside_x[None, :]).astype(float)


def flow_position(window: Window, options: GenerateOptions, roi_mask: np.ndarray | None, find_rival: bool = False
                  ) -> tuple[np.ndarray | None, WindowSignal]:
    """The flow generator's position along the stroke axis for one window, fitted to the output range
    (None when the window is still), and the window's motion analysis; with `find_rival`, and no point of
    interest, that analysis also says where a second body moved (WindowSignal.rival)."""
    fps = frame_rate(window.times_s)
    grids = window.grids.astype(np.float32)
    if window.cameras is not None:
        grids = remove_camera_leakage(grids, window.cameras)
    ws = analyse_window(grids, fps, options.drift_cutoff_hz, roi_mask=roi_mask)
    if window.images is not None and ws.energy >= STILL_ENERGY:
        tensors = structure_tensors(window.images, *ws.roi_weight.shape, FLOW_CELL)
        if visible_share(tensors, ws.roi_weight, ws.axis) < MIN_VISIBLE_SHARE:
            # the strongest motion runs along straight edges or thin lines: flow noise that the picture
            # cannot show (typically under a shaky camera). Searched again with such motion damped everywhere.
            damped_grids = without_aperture_noise(grids, tensors)
            damped = analyse_window(damped_grids, fps, options.drift_cutoff_hz, roi_mask=roi_mask)
            if visible_share(tensors, damped.roi_weight, damped.axis) >= MIN_VISIBLE_SHARE:
                ws, grids = damped, damped_grids
    if ws.energy < STILL_ENERGY:
        return None, ws
    if find_rival and roi_mask is None:  # with a point of interest the user has said which body is meant
        ws = replace(ws, rival=rival_motion(grids, ws, fps, options.drift_cutoff_hz, STILL_ENERGY))
    position = ws.position
    if window.images is not None:
        images = window.images
        # With a point of interest the ROI, and so the band where it starts, already lie in its box. The frame
        # around the box stays whole: registration holds the camera path to the background there, and a frame
        # blacked out beyond the box gave the band the box's edge, moving with the camera, to match instead of
        # the subject.
        paths = CameraPaths(images, window.cameras, ws.roi_weight, FLOW_CELL)

        def track(along: tuple[float, float]) -> BandTrack:
            return track_band(images, window.cameras, ws.roi_weight, along, FLOW_CELL,
                              rekey_every=max(1, int(REKEY_S * fps)), paths=paths, flow=position)

        # the flow found where the subject moves; its position is then measured against keyframes, which
        # needs no integration and so cannot drift. Along the flow's direction first: where that track never
        # jumps no other direction could win below, so the search for one (most of a window's matching) is skipped.
        tracked = track(ws.axis)
        if tracked.jumps > 0:
            axis = choose_axis(images, window.cameras, ws.roi_weight, ws.axis, FLOW_CELL, key=0, paths=paths)
            if abs(float(np.dot(axis, ws.axis))) < AXIS_AGREE_COS:
                along_axis = track(axis)
                if better_direction(tracked, along_axis, position):
                    tracked = along_axis
        if tracked.seen < MIN_BAND_SEEN and window.times_s.size / fps < SHORT_SCENE_S:
            return None, ws  # nothing confirms the flow's motion: held like a still window
        # else the integrated flow, smooth if less exact, is the safer answer: the band lost the subject
        # (jumps), hardly ever saw it change (a subject a few pixels across), moved against the flow's moves
        # or unrelated to them (it matched something else, e.g. the other face of a twisting object), or, on
        # a camera path registration never checked, followed them only loosely
        band = tracked.displacement
        if (tracked.seen >= MIN_BAND_SEEN and tracked.jumps <= JUMPY_SHARE
                and moves_with(tracked.checked, position, tracked.partly_registered)):
            return (fit_range(mend_from_flow(band, position), fps, options, depth_measured=True,
                              level_measured=tracked.registered), ws)
        position = along_the_path(grids, ws, fps, options.drift_cutoff_hz, roi_mask=roi_mask)
    return fit_range(position, fps, options), ws


def fit_range(position: np.ndarray, fps: float, options: GenerateOptions, depth_measured: bool = False,
              level_measured: bool = False, integrated: bool = True) -> np.ndarray:
    """Fit a window's positions to the output range.

    The integrated flow underestimates a smooth subject's motion by a speed-dependent factor and its level
    wanders, so by default each stroke is fitted between its own reversals (stroke_normalise; found over
    a few strokes, at most a few seconds). Other estimates (`integrated=False`: the model's) are fitted
    over a few seconds at a time. The band tracker measures
    each frame's displacement itself (depth_measured): a shallow stroke there is a shallow stroke, so the
    window's own extent is kept. On a registered camera path (level_measured) its level holds too, and a
    stretch of strokes near the top stays near the top: the window's robust extent is the range (MAE
    against a running middle: easy 7.2 -> 6.6, medium 7.6 -> 7.2). Without registration the level drifts
    with the camera chain, and only the middle follows the running middle (over about 10 s).
    """
    if depth_measured and level_measured:
        return robust_normalise(position, *options.post.range)
    if depth_measured:
        return local_normalise(position, *options.post.range, round(BAND_CENTRE_S * fps), min_share=1.0)
    if not integrated:
        return local_normalise(position, *options.post.range, round(LOCAL_RANGE_S * fps))
    period = stroke_period(position, fps)
    horizon_s = LOCAL_RANGE_S if period is None else min(LOCAL_RANGE_S, STROKES_PER_RANGE * period)
    return stroke_normalise(position, *options.post.range, max(2, round(horizon_s * fps)))


def _window_positions(window: Window, options: GenerateOptions, roi_mask: np.ndarray | None,
                      find_rival: bool = False) -> tuple[np.ndarray, dict, Rival | None]:
    position, ws = flow_position(window, options, roi_mask, find_rival)
    if position is None:
        nan = np.full(window.times_s.size, np.nan)
        return nan, {name: nan for name in EXTRA_AXES}, None
    extra = {name: robust_normalise(v, 0, 100) for name, v in ws.extra.items()}
    return position, extra, ws.rival


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Hold the last known position through still spans (the start holds the first known one)."""
    known = ~np.isnan(values)
    if not known.any():
        return values.copy()
    idx = np.where(known, np.arange(values.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    first = int(np.argmax(known))
    out[:first] = out[first]
    return out


class _Assembler:
    """Collects window results into one dense signal per channel, cross-fading window overlaps."""

    def __init__(self, axes: tuple[str, ...]) -> None:
        self.times: list[np.ndarray] = []
        self.channels: dict[str, list[np.ndarray]] = {name: [] for name in ("position", *axes)}
        self.rivals: list[RivalSpan] = []

    def add(self, window: Window, position: np.ndarray, extra: dict[str, np.ndarray], rival: Rival | None = None
            ) -> None:
        n = window.overlap if self.times else 0
        skip = window.context
        if rival is not None:
            self.rivals.append(RivalSpan(float(window.times_s[skip]), float(window.times_s[-1]), rival))
        values = {"position": position[skip:], **{name: v[skip:] for name, v in extra.items()}}
        for name, parts in self.channels.items():
            if n:
                parts[-1] = np.concatenate([parts[-1][:-n], crossfade(parts[-1][-n:], values[name][:n])])
            parts.append(values[name][n:])
        self.times.append(window.times_s[skip + n:])

    def result(self) -> DenseSignal:
        joined = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in self.channels.items()}
        times = np.concatenate(self.times) if self.times else np.zeros(0)
        return DenseSignal(times, joined.pop("position"), joined, self.rivals)


@dataclass
class _Span:
    """Frames analysed in one go. Window analyses run in the background and are assembled in order."""

    windower: Windower | None  # None once the span has ended
    assembler: _Assembler
    pending: deque[tuple[Window, Future]] = field(default_factory=deque)

    def collect(self, keep: float = 0) -> None:
        """Assemble the analysed windows at the front of the queue, waiting for the oldest while more than
        `keep` are pending (each holds its frames); math.inf takes only those already done."""
        while self.pending and (len(self.pending) > keep or self.pending[0][1].done()):
            window, future = self.pending.popleft()
            self.assembler.add(window, *future.result())


def dense_to_script(dense: DenseSignal, post: PostSettings) -> tuple[np.ndarray, np.ndarray, PostReport]:
    """Dense per-frame positions -> post-processed actions."""
    times_ms = dense.times_s * 1000.0
    position = _fill_gaps(dense.position)
    if np.isnan(position).all():
        raise AutofunscriptError("no motion found in the video (still picture?); nothing written")
    position = smooth(times_ms, position, post.smooth_ms)
    at, pos = to_actions(times_ms, position, post, centre_turns=True, monotone=True)
    return finish(at, pos, post)


def _eye_size(info: VideoInfo, vr: str | None) -> tuple[int, int]:
    """The analysed picture's size in source pixels: one eye of a VR frame."""
    return (info.width // 2 if vr == "sbs" else info.width, info.height // 2 if vr == "ou" else info.height)


def checked_end_s(path: Path, info: VideoInfo, options: GenerateOptions) -> float:
    """Where the run stops reading, once the options are checked against the video: a start, offset or POI
    that selects nothing is refused here, before decoding, rather than failing after the work or as a still
    or too-short video; a --vr layout that does not fit the frame's shape is warned of."""
    if options.start_s >= info.duration_s:
        raise AutofunscriptError(f"{path}: start {options.start_s:g} s is not before the end of the video "
                                 f"({info.duration_s:.1f} s)")
    end_s = min(options.end_s, info.duration_s) if options.end_s else info.duration_s
    if end_s * 1000 + options.post.offset_ms < 0:
        raise AutofunscriptError(f"{path}: every action would be before 0 s with an offset of "
                                 f"{options.post.offset_ms} ms (the video ends at {end_s:.1f} s)")
    # side-by-side VR is 2:1 (16:9 for half-width 3D); over-under 1:1 (16:9 for half-height 3D)
    aspect = info.width / info.height
    if (options.vr == "sbs" and aspect < 1.5) or (options.vr == "ou" and aspect > 2):
        eye_width, eye_height = _eye_size(info, options.vr)
        log.warning("%s: --vr %s on a %dx%d frame, which does not look like two pictures %s; each eye is taken as "
                    "%dx%d", path, options.vr, info.width, info.height,
                    "side by side" if options.vr == "sbs" else "one above the other", eye_width, eye_height)
    if options.poi is not None:
        poi = options.poi
        width, height = _eye_size(info, options.vr)
        x, y = (poi.x * width, poi.y * height) if poi.relative else (poi.x, poi.y)
        if not (0 <= x <= width and 0 <= y <= height):
            eye = " (one eye)" if options.vr else ""
            raise AutofunscriptError(f"{path}: point of interest {poi.x:g},{poi.y:g} is outside the "
                                     f"{width}x{height} frame{eye}")
    return end_s


def _flow_tracker() -> FlowTracker:
    return FlowTracker(cell=FLOW_CELL)


def _windower() -> Windower:
    """Generate's windows. LiveTracker makes its windows here too, so live prediction stays generate's."""
    return Windower(max_s=WINDOW_S, overlap_s=WINDOW_OVERLAP_S, keep_images=True, full_tails=True)


def track_motion(path: Path, options: GenerateOptions, progress: ProgressCallback | None = None,
                 should_stop: Callable[[], bool] | None = None) -> tuple[DenseSignal, list[float], int, bool]:
    """Decode and track; returns the dense signal, cut times, frames read and whether it was cut short.

    Each finished window is analysed on a second thread while decoding and flow go on (OpenCV and NumPy
    release the GIL), so the analysis (about a second per window) does not stall the decoder.
    """
    tracker = _flow_tracker()
    windower = _windower()
    span = _Span(windower, _Assembler(tuple(a for a in options.axes if a in EXTRA_AXES)))
    frames = 0
    interrupted = False
    with open_video(path) as stream, ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis") as analysis:
        info = stream.info
        total = max(checked_end_s(path, info, options) - options.start_s, 1e-6)
        roi_mask = None

        def analyse(window: Window) -> None:
            future = analysis.submit(_window_positions, window, options, roi_mask, find_rival=True)
            span.pending.append((window, future))

        try:
            for frame in stream.frames(start_s=options.start_s, end_s=options.end_s,
                                       width=options.analysis_width, eye=options.vr, deblock=False):
                if roi_mask is None and options.poi is not None:
                    roi_mask = _poi_mask_for(options.poi, frame.image.shape[1], frame.image.shape[0],
                                             *_eye_size(info, options.vr), tracker.cell)
                sample = tracker.update(frame.image, frame.time_s)
                frames += 1
                for window in windower.push(sample, frame.image):
                    analyse(window)
                span.collect(keep=1)
                if progress is not None:
                    progress(frame.time_s - options.start_s, total)
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
            for window in windower.flush():
                analyse(window)
            span.collect()
        finally:
            for _, future in span.pending:  # an error or a second Ctrl+C: queued analyses are not wanted any more
                future.cancel()
    return span.assembler.result(), windower.cut_times, frames, interrupted


@contextmanager
def _libraries_single_threaded() -> Iterator[None]:
    """Run OpenCV and BLAS/LAPACK on the calling thread only while tracking: the decoder's threads already keep
    the cores busy, and the libraries' own pools only contend with them (optical flow took 2.1 ms of CPU per
    320x180 frame with OpenCV's pool, 1.3 ms without; OpenBLAS's threads spin while they wait, and a window's
    192x192 eigendecomposition took 12-72 ms with two of them under load, 4-18 ms with one).
    The limit holds for the BLAS libraries loaded when it is set, NumPy's; SciPy's own, which preload_scipy
    loads later, keeps its threads, so the analysis uses no SciPy function that calls BLAS or LAPACK."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(previous)


class _StopRequest:
    """Set by the first Ctrl+C and read by the tracking loop between frames. The first read that finds it set
    says so: the frames read so far are still analysed and written, which can take a few seconds."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._announced = False

    def set(self) -> None:
        self._event.set()  # no output here: a signal handler may interrupt a write to the same stream

    def __call__(self) -> bool:
        if self._event.is_set() and not self._announced:
            self._announced = True
            log.warning("stopping: analysing and writing the part read so far (Ctrl+C again to quit without it)")
        return self._event.is_set()

    def unheard(self) -> bool:
        """Set, but after the last frame was read: tracking had nothing left to stop."""
        return self._event.is_set() and not self._announced


@contextmanager
def _ctrl_c_stops_tracking() -> Iterator[_StopRequest]:
    """The first Ctrl+C asks tracking to stop after the current frame; a second one interrupts at once.

    A KeyboardInterrupt can land anywhere, also between updates of the windows and of their results, which
    then no longer line up; the flag is only read between frames. Left alone outside the main thread and
    where Ctrl+C is ignored (batch workers, background jobs).
    """
    stop = _StopRequest()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
        yield stop
        return
    previous = signal.default_int_handler if previous is None else previous  # None: set outside Python

    def on_ctrl_c(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def preload_scipy() -> threading.Thread:
    """Import the SciPy modules the analysis uses, on a thread of their own; returns the thread.

    SciPy 1.17's signal, ndimage and optimize pull in most of SciPy: 0.9 s of CPU, a third of a 20 s clip's
    run. The library imports them where they are used, so `generate` starts decoding at once and this
    thread imports them beside the decoder. A module still being imported when the analysis needs it is
    waited for by Python's import lock.
    """

    def load() -> None:
        import scipy.ndimage  # noqa: F401
        import scipy.optimize  # noqa: F401
        import scipy.signal  # noqa: F401

    thread = threading.Thread(target=load, name="preload-scipy", daemon=True)
    thread.start()
    return thread


def generate(path: str | Path, options: GenerateOptions = GenerateOptions(),
             progress: ProgressCallback | None = None) -> GenerateResult:
    """Make a funscript for a video. Ctrl+C during tracking returns what was done, marked partial."""
    path = Path(path)
    if options.method not in ("flow", "model"):
        raise AutofunscriptError(f"unknown method {options.method!r} (available: flow, model)")
    started = time.perf_counter()
    preload_scipy()
    with _ctrl_c_stops_tracking() as stop, _libraries_single_threaded():
        if options.method == "model":
            from autofunscript.model.infer import track_with_model  # loads onnxruntime only when asked for

            dense, cuts, frames, interrupted = track_with_model(path, options, progress, should_stop=stop,
                                                                initial_position=options.initial_position)
        else:
            dense, cuts, frames, interrupted = track_motion(path, options, progress, should_stop=stop)
    if stop.unheard():  # otherwise the wait for the last windows' analysis looks as if Ctrl+C went unnoticed
        log.warning("Ctrl+C came after the whole video was read: writing the complete script")
    nothing_tracked = frames < 2 or bool(np.isnan(dense.position).all())
    if nothing_tracked and interrupted:
        raise KeyboardInterrupt  # stopped before any motion was tracked: nothing to keep, not a bad video
    if frames < 2:
        raise AutofunscriptError(f"{path}: fewer than 2 frames to compare; nothing written")
    if nothing_tracked and options.poi is not None:
        poi = options.poi
        unit = "fractions of the frame" if poi.relative else "pixels"
        raise AutofunscriptError(f"{path}: no motion found in the --poi box at {poi.x:g},{poi.y:g} ({unit}); "
                                 "nothing written")
    if nothing_tracked:
        raise AutofunscriptError(f"{path}: no motion found (still picture?); nothing written")
    try:
        at, pos, report = dense_to_script(dense, options.post)
    except AutofunscriptError as exc:  # an offset that leaves nothing after 0 s
        raise AutofunscriptError(f"{path}: {exc}") from None
    seconds = float(dense.times_s[-1] - dense.times_s[0]) if dense.times_s.size else 0.0
    notes = {"generator": f"autofunscript {__version__}", "method": options.method,
             "settings": settings_note(options), "scene_cuts": len(cuts)}
    if interrupted:
        notes["partial"] = f"interrupted at {dense.times_s[-1]:.1f} s"
    if report.notes:
        notes["post"] = "; ".join(report.notes)
    duration = float(dense.times_s[-1]) if dense.times_s.size else 0.0
    script = Funscript(at=at, pos=pos, metadata={"creator": f"autofunscript {__version__}",
                                                 "title": path.stem, "duration": int(np.ceil(duration)),
                                                 "notes": _format_notes(notes)})
    for name in options.axes:
        if name not in dense.extra:
            continue
        axis_post = PostSettings(range=(0, 100), max_speed=options.post.max_speed, simplify=options.post.simplify,
                                 min_swing=options.post.min_swing, offset_ms=options.post.offset_ms)
        a_at, a_pos, _ = dense_to_script(DenseSignal(dense.times_s, dense.extra[name], {}), axis_post)
        script.axes[name] = Funscript(at=a_at, pos=a_pos, metadata={"creator": f"autofunscript {__version__}",
                                                                      "duration": int(np.ceil(duration))})
    return GenerateResult(script=script, report=report, frames=frames, seconds_of_video=seconds,
                          elapsed_s=time.perf_counter() - started, cut_times_s=cuts, partial=interrupted,
                          rivals=dense.rivals)


def settings_note(options: GenerateOptions) -> str:
    """The options as a script's notes name them ("settings: ..."), which batch compares on a rerun."""
    settings = asdict(options)
    post = settings.pop("post")
    items = {**{k: v for k, v in settings.items() if v not in (None, (), "")}, **post}
    return ", ".join(f"{k}={v}" for k, v in items.items())


def _format_notes(notes: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in notes.items())


# ----------------------------------------------------------------------------------------------
# Incremental prediction, for the viewer: the same windows, blending and post-processing as generate,
# fed one frame at a time while playback jumps around.


@dataclass
class _LiveRegion:
    """One region's prediction: its box, and its spans (the last one open while frames come in)."""

    poi: Poi | None
    mask: np.ndarray | None = None
    spans: list[_Span] = field(default_factory=list)

    @property
    def open_span(self) -> _Span | None:
        return self.spans[-1] if self.spans and self.spans[-1].windower is not None else None


@dataclass(frozen=True)
class LivePreview:
    """LiveTracker's quick look at one region: positions over the last seconds and where it saw the subject."""

    times_s: np.ndarray
    positions: np.ndarray  # 0-100, NaN where still
    roi: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1) fractions of the frame; None = none


class LiveTracker:
    """Generate, fed analysis frames one by one, for several regions of the frame at once.

    Flow is computed once per frame and shared; each region (a Poi box, or None for the whole frame) has
    its own windows. Frames form spans: a seek or a stop (`break_spans`) or a new box for a region ends
    them. Each span is analysed exactly like a generate run with `options.method` over the same frames,
    and `script` joins a region's spans, a later span replacing an earlier one where they overlap in time.
    Window analyses (seconds each) run on a background thread so that the caller's frame loop never
    stalls on them.
    """

    def __init__(self, options: GenerateOptions, source_size: tuple[int, int], preview_s: float = 10.0) -> None:
        if options.method not in ("flow", "model"):
            raise AutofunscriptError(f"unknown method {options.method!r} (available: flow, model)")
        self.options = options
        self.source_size = source_size  # (width, height) of the frames Poi coordinates refer to
        self.preview_s = preview_s
        self._model = _LiveModel() if options.method == "model" else None
        self._flow = _flow_tracker()
        self._regions: dict[str, _LiveRegion] = {}
        self._recent: deque[MotionSample] = deque()
        self._frame_shape: tuple[int, int] | None = None
        self._analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-analysis")
        preload_scipy()  # now, not in the first window's analysis in the middle of playback

    def close(self) -> None:
        """Stop the background analysis (what is still queued is dropped)."""
        self._analysis.shutdown(wait=False, cancel_futures=True)

    def set_region(self, name: str, poi: Poi | None) -> None:
        """Predict region `name` over `poi` (None: whole frame) from the next frame on."""
        region = self._regions.get(name)
        if region is None:
            self._regions[name] = _LiveRegion(poi)
        elif region.poi != poi:
            self._end_span(region)
            region.poi, region.mask = poi, None

    def push(self, gray: np.ndarray, time_s: float) -> None:
        """The next frame of playback (grey, analysis size) at video time `time_s`."""
        self._frame_shape = gray.shape[:2]
        sample = self._flow.update(gray, time_s)
        self._recent.append(sample)
        while sample.time_s - self._recent[0].time_s > self.preview_s:
            self._recent.popleft()
        for region in self._regions.values():
            span = region.open_span
            if span is None:
                span = _Span(self._model.windower() if self._model else _windower(), _Assembler(()))
                region.spans.append(span)
            assert span.windower is not None
            for window in span.windower.push(sample, gray):
                self._submit(region, span, window)
            span.collect(keep=math.inf)

    def break_spans(self) -> None:
        """Playback jumped or prediction stopped: end every span; the next frame starts new ones."""
        self._flow.reset()
        self._recent.clear()
        for region in self._regions.values():
            self._end_span(region)

    def preview(self, name: str) -> LivePreview:
        """Provisional positions over the last `preview_s` seconds and the box of the cells that carried them
        (what the automatic choice follows: a viewer draws it, so a user sees when to point at the subject).

        One short window analysed from the flow alone (also for the model method), so it takes milliseconds;
        scripts use the full analysis."""
        region = self._regions.get(name)
        if region is None or len(self._recent) < 3:
            return LivePreview(np.zeros(0), np.zeros(0))
        windower = Windower(max_s=math.inf, detect_cuts=False)
        for sample in self._recent:
            for _ in windower.push(sample):
                pass  # never emits: the window is unbounded
        window = next(windower.flush())
        position, ws = flow_position(window, self.options, self._mask(region))
        if position is None:
            return LivePreview(window.times_s, np.full(window.times_s.size, np.nan))
        rows, cols = np.nonzero(ws.roi_weight > 0)
        if rows.size == 0 or self._frame_shape is None:
            return LivePreview(window.times_s, position)
        cell, (height, width) = self._flow.cell, self._frame_shape
        roi = (cols.min() * cell / width, rows.min() * cell / height, (cols.max() + 1) * cell / width,
               (rows.max() + 1) * cell / height)
        return LivePreview(window.times_s, position, tuple(float(v) for v in roi))

    def script(self, name: str) -> Funscript | None:
        """Everything predicted so far for region `name` as one post-processed script; None if nothing moved.

        Waits for the background analysis of what was fed so far."""
        region = self._regions.get(name)
        if region is None:
            return None
        parts = []
        for dense in (self._span_signal(region, span) for span in region.spans):
            if dense.times_s.size < 2 or np.isnan(dense.position).all():
                continue
            at, pos, _ = dense_to_script(dense, self.options.post)
            parts.append((at, pos))
        if not parts:
            return None
        at, pos = merge_spans(parts)
        pos, _ = limit_speed(at, pos, self.options.post.max_speed)
        return Funscript(at=at, pos=pos)

    def _mask(self, region: _LiveRegion) -> np.ndarray | None:
        if region.poi is None or self._frame_shape is None:
            return None
        if region.mask is None:
            height, width = self._frame_shape
            region.mask = _poi_mask_for(region.poi, width, height, *self.source_size, self._flow.cell)
        return region.mask

    def _positions(self, window: Window, roi_mask: np.ndarray | None) -> tuple[np.ndarray, dict, Rival | None]:
        """A window's analysis, as generate does it with the options' method."""
        if self._model is not None:
            return self._model.positions(window, self.options, roi_mask)
        return _window_positions(window, self.options, roi_mask)

    def _submit(self, region: _LiveRegion, span: _Span, window: Window) -> None:
        future = self._analysis.submit(self._positions, window, self._mask(region))
        span.pending.append((window, future))

    def _end_span(self, region: _LiveRegion) -> None:
        span = region.open_span
        if span is None:
            return
        assert span.windower is not None
        for window in span.windower.flush():
            self._submit(region, span, window)
        span.windower = None

    def _span_signal(self, region: _LiveRegion, span: _Span) -> DenseSignal:
        span.collect()
        if span.windower is None:
            return span.assembler.result()
        # an open span goes on being fed after an export: finish copies of its state
        assembler = copy.deepcopy(span.assembler)
        for window in copy.deepcopy(span.windower).flush():
            assembler.add(window, *self._positions(window, self._mask(region)))
        return assembler.result()


class _LiveModel:
    """The shipped (or chosen) model for LiveTracker, loaded once; onnxruntime is imported only here."""

    def __init__(self) -> None:
        from autofunscript.model.infer import ModelRunner

        self.runner = ModelRunner()
        images = self.runner.config.spec.image_inputs
        if images:
            raise AutofunscriptError(f"{self.runner.path}: this model reads image inputs ({', '.join(images)}), "
                                     "which live prediction does not compute; use `generate --method model`")

    @staticmethod
    def windower() -> Windower:
        # the windows of the model's tracking pass (model/tracking.py), with frames for the flow blend
        return Windower(keep_images=True)

    def positions(self, window: Window, options: GenerateOptions, roi_mask: np.ndarray | None
                  ) -> tuple[np.ndarray, dict, Rival | None]:
        from autofunscript.model.features import window_features
        from autofunscript.model.infer import window_positions

        features = window_features(window, self.runner.config.spec, None, options.drift_cutoff_hz, roi_mask)
        # no initial-position hint: a span starts wherever playback was, not at a position the user knows
        return window_positions(window, features, self.runner, options)


def merge_spans(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Join (at, pos) action lists in the order they were made; each replaces earlier actions within its time range."""
    at = np.zeros(0, np.int64)
    pos = np.zeros(0, np.int64)
    for span_at, span_pos in parts:
        if not span_at.size:
            continue
        outside = (at < span_at[0]) | (at > span_at[-1])
        at = np.concatenate([at[outside], span_at])
        pos = np.concatenate([pos[outside], span_pos])
    order = np.argsort(at, kind="stable")
    return at[order], pos[order]
