"""Build the reference (ground-truth) funscripts for the real clips in ../shared/data/videos.

    .venv/bin/python bench/make_references.py [--videos DIR] [--out DIR] [--sheets DIR] [--force]

For every clip this decodes all frames with PyAV, measures one motion per frame with a small
clip-specific tracker (OpenCV + NumPy, constants verified by eye, see the comments), maps it to
0-100, finds the reversals and writes `<stem>.funscript` plus a `<stem>.json` sidecar (method,
counts, reversal times with their frames, the per-frame track). Times are the decoded frame
timestamps relative to the stream start, never index/fps: the headers of these clips are wrong.

Pendulum scripts have one action per decoded frame. Exercise scripts are the reversal points
plus the in-between frames needed to keep the curve within a few positions (and holds where the
body rests or where nothing can be tracked). `--sheets` saves one PNG per clip with the tracked
point drawn on the frame of every reversal, which is how the constants below were checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import savgol_filter

from autofunscript.errors import AutofunscriptError
from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript, atomic_write_text, write_funscript

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "videos"
DEFAULT_OUT = REPO / "bench" / "references"
# Robust ends of the track: the provisional 0-100 scale on which reversals are looked for.
MAP_PERCENTILES = (2.0, 98.0)
# How far (pos units) an exercise script may stray from the per-frame track between kept points.
SCRIPT_TOLERANCE = 3.0
# A rest (push-ups) is where the smoothed track stays within this many pos of its extreme.
HOLD_TOLERANCE = 3.0
# Depth below an extreme (pos units) of the level crossings used to cross-check reversal times.
CROSSING_DEPTH = 30.0


# ---------------------------------------------------------------------------------------------
# decoding


@dataclass(frozen=True)
class Timing:
    """Decoded presentation times of every frame, relative to the stream start."""

    times_s: np.ndarray

    @property
    def frame_step_s(self) -> float:
        return float(np.median(np.diff(self.times_s)))

    @property
    def duration_s(self) -> float:
        """What a player shows: the last frame lasts one nominal step."""
        return float(self.times_s[-1] + self.frame_step_s)

    def frame_at(self, t: float) -> int:
        """The frame on screen at time t (its pts <= t < next pts)."""
        return int(np.clip(np.searchsorted(self.times_s, t + 1e-9, side="right") - 1, 0, self.times_s.size - 1))

    def nearest_frame(self, t: float) -> int:
        return int(np.argmin(np.abs(self.times_s - t)))


def decode(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s from stream start, BGR frame) for every decoded frame."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise AutofunscriptError(f"{path}: cannot open video ({exc})") from None
    with container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        for frame in container.decode(stream):
            yield float(frame.time) - start, frame.to_ndarray(format="bgr24")


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------------------------------------
# trackers: each takes the decoded frames and returns one raw value per frame


@dataclass
class Track:
    """Raw per-frame measure (NaN where not tracked) and the image points it came from."""

    raw: np.ndarray
    points: np.ndarray  # (frames, k, 2) pixel positions to draw on verification sheets
    extra: dict = field(default_factory=dict)


def _weighted_centroid(weights: np.ndarray, x0: int, y0: int) -> tuple[float, float]:
    ys, xs = np.mgrid[y0:y0 + weights.shape[0], x0:x0 + weights.shape[1]]
    total = float(weights.sum())
    return float((weights * xs).sum() / total), float((weights * ys).sum() / total)


# Green clock: the bob is a small metal sphere, sharp at the extremes and a blurred streak
# mid-swing. Box (x0, y0, x1, y1) holds its whole arc and nothing else that moves except the
# stopwatch hand at the right, cut off by the half-plane right of the line HAND_LINE (checked on
# frames 0-11 where the hand moves, and at the right extremes where the bob comes within ~25 px of
# the fingertips). Background = per-pixel median of the box over the clip.
GREEN_BOX = (250, 470, 900, 620)
GREEN_HAND_LINE = ((805, 585), (870, 500))
GREEN_DIFF_MIN = 20  # max-channel difference from the median; the body of the bob is 25-60, noise < 10


def track_green_clock(frames: Iterator[np.ndarray]) -> Track:
    x0, y0, x1, y1 = GREEN_BOX
    crops = np.stack([f[y0:y1, x0:x1] for f in frames]).astype(np.int16)
    median = np.median(crops, axis=0)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    (ax, ay), (bx, by) = GREEN_HAND_LINE
    allowed = ((xs - ax) * (by - ay) - (ys - ay) * (bx - ax)) > 0
    kernel = np.ones((3, 3), np.uint8)  # drops the 1-2 px string, keeps the bob and its streak
    points: list[tuple[float, float]] = []
    for crop in crops:
        diff = np.abs(crop - median).max(axis=2)
        diff[~allowed] = 0
        mask = cv2.morphologyEx((diff > GREEN_DIFF_MIN).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, labels, stats, centres = cv2.connectedComponentsWithStats(mask)
        candidates = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= 8]
        if not points:
            # frame 0: the bob (x~460) is left of every other change in the box
            best = min(candidates, key=lambda k: centres[k][0])
        else:
            # constant-velocity prediction: the hand or a reflection never wins over the bob's path
            px, py = points[-1] if len(points) < 2 else (2 * np.array(points[-1]) - np.array(points[-2]))
            best = min(candidates, key=lambda k: (centres[k][0] + x0 - px) ** 2 + (centres[k][1] + y0 - py) ** 2)
        # cap the specular highlight so the centroid follows the sphere, not the reflection
        weights = np.where(labels == best, np.minimum(diff, 60), 0).astype(float)
        points.append(_weighted_centroid(weights, x0, y0))
    pts = np.asarray(points)
    return Track(raw=pts[:, 0], points=pts[:, None, :])


# Pair: the left (large-amplitude) panel's dark ball on a grey wall. Box = the collector's rows
# 170-315 inside the left panel; gray < 100 is the ball (wall ~180, string too thin to survive the
# 5 px opening, the hand that releases it in frames 0-4 is lighter than 100).
PAIR_LEFT_BOX = (16, 170, 246, 316)
PAIR_DARK_MAX = 100


def track_pendulum_pair(frames: Iterator[np.ndarray]) -> Track:
    x0, y0, x1, y1 = PAIR_LEFT_BOX
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    points = []
    for frame in frames:
        gray = _gray(frame[y0:y1, x0:x1]).astype(float)
        mask = cv2.morphologyEx((gray < PAIR_DARK_MAX).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        ball = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        # darker = more certainly ball; the soft edge gives the sub-pixel part
        weights = (labels == ball) * np.clip(PAIR_DARK_MAX + 20 - gray, 0, 40)
        points.append(_weighted_centroid(weights, x0, y0))
    pts = np.asarray(points)
    return Track(raw=pts[:, 0], points=pts[:, None, :])


# Pocket watch: shallow depth of field, so the watch (and its chain) is the only sharp thing in
# rows 150-520 (its centre stays in rows 240-370, radius ~70 px). Sharpness = blurred |Laplacian|;
# a 41 px opening removes the chain and the candle's edge and leaves the watch disc. The clip is
# 25 fps material stored at 50 fps: almost every odd frame repeats the previous one.
WATCH_ROWS = (150, 520)
WATCH_OPENING_PX = 41
REPEAT_MAX_DIFF = 0.5  # mean |gray difference| of a repeated frame: 0.01-0.35, of a new one >= 1.2


def track_pocket_watch(frames: Iterator[np.ndarray]) -> Track:
    r0, r1 = WATCH_ROWS
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (WATCH_OPENING_PX, WATCH_OPENING_PX))
    points, repeated = [], []
    previous = None
    for frame in frames:
        gray_full = _gray(frame)
        repeated.append(previous is not None and
                        float(np.abs(gray_full.astype(np.int16) - previous).mean()) < REPEAT_MAX_DIFF)
        previous = gray_full.astype(np.int16)
        gray = gray_full[r0:r1].astype(np.float32)
        sharp = cv2.GaussianBlur(np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3)), (0, 0), 6)
        threshold = max(3 * float(np.median(sharp)), 8.0)  # the grainy first second has a higher floor
        mask = cv2.morphologyEx((sharp > threshold).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        watch = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        ys, xs = np.nonzero(labels == watch)
        points.append((float(xs.mean()), float(ys.mean()) + r0))
    pts = np.asarray(points)
    return Track(raw=pts[:, 0], points=pts[:, None, :], extra={"repeated": np.asarray(repeated)})


# Push-ups: frames 0-57 are the blurred intro with the "1. BODY POSITION" overlay (frame 58 is a
# hard cut to the sharp shot: mean frame difference 22.6 against < 2.5 around it). Frame 363 is a
# jump cut in time with the identical camera framing (background phase correlation 362->363:
# shift < 0.01 px), so screen heights stay comparable. Measure: the top edge of the skin silhouette
# (head, neck, shoulders) averaged over columns 150-420, which only the man's upper body crosses.
PUSHUP_FIRST_SHARP_FRAME = 58
PUSHUP_COLUMNS = (150, 420)


def track_pushups(frames: Iterator[np.ndarray]) -> Track:
    c0, c1 = PUSHUP_COLUMNS
    kernel = np.ones((5, 5), np.uint8)
    raw, points = [], []
    for index, frame in enumerate(frames):
        if index < PUSHUP_FIRST_SHARP_FRAME:
            raw.append(np.nan)
            points.append(((np.nan, np.nan), (np.nan, np.nan)))
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(frame[:, c0:c1]), cv2.COLOR_BGR2HSV)
        skin = ((hsv[..., 0] <= 22) & (hsv[..., 1] >= 70) & (hsv[..., 2] >= 70)).astype(np.uint8)
        skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, kernel)
        covered = skin.any(axis=0)
        top = float(np.argmax(skin, axis=0)[covered].mean())
        raw.append(top)
        points.append(((c0, top), (c1, top)))
    return Track(raw=np.asarray(raw), points=np.asarray(points))


# Treadmill: the runner's head is a dark silhouette against the bright window in rows 10-60,
# columns 270-350 (the window mullion at x~355 stays outside). Its horizontal sway alternates with
# the stance leg, one cycle per stride. The camera drifts a few px; its shift is measured by phase
# correlation of the window and building at the right (rows 0-250, columns 400-640) against frame 0.
TREAD_HEAD_BOX = (270, 10, 350, 60)
TREAD_CAMERA_BOX = (400, 0, 640, 250)


def track_treadmill(frames: Iterator[np.ndarray]) -> Track:
    x0, y0, x1, y1 = TREAD_HEAD_BOX
    cx0, cy0, cx1, cy1 = TREAD_CAMERA_BOX
    reference = None
    raw, bounce, points = [], [], []
    for frame in frames:
        gray = _gray(frame).astype(np.float32)
        patch = gray[cy0:cy1, cx0:cx1]
        if reference is None:
            reference = patch
        (shift_x, shift_y), _ = cv2.phaseCorrelate(reference, patch)
        darkness = np.clip((170 - gray[y0:y1, x0:x1]) / 100, 0, 1)
        head_x, _ = _weighted_centroid(darkness, x0, y0)
        # head top: sub-pixel crossing of gray 120 in the 11 columns around the head centre
        column = int(round(head_x))
        tops = []
        for x in range(column - 5, column + 6):
            profile = gray[5:70, x]
            j = int(np.argmax(profile < 120))
            above, at = float(profile[j - 1]), float(profile[j])
            tops.append(5 + j - 1 + (above - 120) / (above - at))
        top = float(np.mean(tops))
        raw.append(head_x - shift_x)
        bounce.append(top - shift_y)
        points.append((head_x, top))
    return Track(raw=np.asarray(raw), points=np.asarray(points)[:, None, :],
                 extra={"head_top_y": np.asarray(bounce)})


# Arm circles: both hands move in phase (correlation 0.93); each is tracked in a 38 px column band
# at the frame edge (the left fingertips leave the frame, so a band, not a blob centroid) as the
# centroid of pixels that differ from the clip's per-pixel median (the wall) by more than 15.
ARM_BANDS = ((2, 40), (440, 478))
ARM_ROWS = (260, 440)


def track_arm_circles(frames: Iterator[np.ndarray]) -> Track:
    r0, r1 = ARM_ROWS
    bands = np.stack([np.concatenate([f[r0:r1, a:b] for a, b in ARM_BANDS], axis=1) for f in frames])
    bands = bands.astype(np.int16)
    median = np.median(bands, axis=0)
    rows = np.arange(r0, r1, dtype=float)[:, None]
    width = ARM_BANDS[0][1] - ARM_BANDS[0][0]
    raw, points = [], []
    for crop in bands:
        weights = np.clip(np.abs(crop - median).max(axis=2) - 15, 0, 40)
        hands = []
        for side, (a, b) in enumerate(ARM_BANDS):
            w = weights[:, side * width:(side + 1) * width]
            hands.append(((a + b) / 2, float((w * rows).sum() / w.sum())))
        raw.append((hands[0][1] + hands[1][1]) / 2)
        points.append(hands)
    return Track(raw=np.asarray(raw), points=np.asarray(points))


# ---------------------------------------------------------------------------------------------
# clip specifications


@dataclass(frozen=True)
class ClipSpec:
    stem: str
    tracker: Callable[[Iterator[np.ndarray]], Track]
    kind: str  # "pendulum": one action per frame; "exercise": reversal points + shape points
    axis: str  # which motion the position follows, in words
    raw_unit: str
    up_is_larger_raw: bool  # True: larger raw value = pos 100
    refine: str  # "quadratic" fit around each extreme, "sine" fit (sparse samples), "hold" midpoint
    half_window_s: float  # fit half-width (~12-16 % of the period) or hold search range
    smooth_frames: int  # Savitzky-Golay window for finding extremes (1 = none)
    min_swing: float  # zig-zag threshold in pos units
    count_of: str  # which reversals are counted: "peaks" or "troughs"
    count_name: str
    sheet_margin_px: int | None  # crop around the tracked point on verification sheets (None: whole frame)
    method: str
    verification: str


SPECS = (
    ClipSpec(
        "pendulum_green_clock", track_green_clock, "pendulum",
        "horizontal bob position (right extreme = 100, left = 0)", "px, bob x in the 1280x720 frame",
        True, "quadratic", 0.16, 5, 40, "peaks", "full swings", 110,
        "difference from the per-pixel median background in a fixed box around the bob's arc, stopwatch "
        "hand masked by a half-plane, 3 px opening against the string, highlight-capped weighted centroid of "
        "the component nearest the constant-velocity prediction",
        "tracked point drawn on every reversal frame and on mid-swing streak frames (bob centre within ~2 px); "
        "extreme times match SOURCES.md (left 0.24, 1.56, ... 10.92 s, right 0.92 ... 11.56 s)",
    ),
    ClipSpec(
        "pendulum_pair_grey", track_pendulum_pair, "pendulum",
        "horizontal position of the left (large-amplitude) ball (right extreme = 100, left = 0)",
        "px, left ball x in the 480x360 frame",
        True, "quadratic", 0.2, 5, 40, "peaks", "full swings", 110,
        "darkness threshold (gray < 100) in the left panel's box, 5 px opening, darkness-weighted centroid",
        "tracked point drawn on reversal frames; agrees with the collector's track CSV (see csv_comparison: "
        "only frames 0-4 differ, where the collector's median took in the releasing hand); right-extreme "
        "times match SOURCES.md",
    ),
    ClipSpec(
        "pendulum_pocket_watch", track_pocket_watch, "pendulum",
        "horizontal watch position on screen (right extreme = 100, left = 0)", "px, watch x in the 1366x576 frame",
        True, "quadratic", 0.26, 5, 40, "peaks", "full swings", 110,
        "sharpness (blurred |Laplacian|) segmentation: only the watch is in focus; 41 px opening removes the "
        "chain; centroid of the largest sharp blob. Repeated frames (25 fps material in a 50 fps stream) are "
        "left out of the reversal fits",
        "tracked point drawn on reversal frames (on the watch centre incl. when it passes the candle); the "
        "right extremes are at 0.98, 3.07, 5.24, 7.37 s, not the rounder 0.9, 2.9, 4.9, 7.0 s of SOURCES.md "
        "(period 2.13 s, checked frame by frame)",
    ),
    ClipSpec(
        "pushups", track_pushups, "exercise",
        "height of the upper body (head/shoulder silhouette top edge): up = 100, chest at the floor = 0",
        "px, mean top-edge row over columns 150-420 of the 1280x720 frame",
        False, "hold", 1.0, 7, 35, "troughs", "push-ups", None,
        "skin-colour mask (HSV), top edge of the silhouette per column averaged over a band the upper body "
        "crosses; the intro (frames 0-57, blurred, text overlay) is not tracked and held at the first tracked "
        "position",
        "tracked edge drawn on every reversal frame; 4 bottoms at the bottom phases listed in SOURCES.md; "
        "the jump cut at frame 363 keeps the camera framing, so the 4th rep is genuinely shallower",
    ),
    ClipSpec(
        "treadmill_run", track_treadmill, "exercise",
        "lateral sway of the runner's head = alternating stance leg, one stroke per stride "
        "(head at its rightmost = 100, leftmost = 0)", "px, head x in the 640x360 frame minus camera shift",
        True, "quadratic", 0.12, 5, 35, "peaks", "strides (gait cycles)", 110,
        "darkness-weighted centroid of the head silhouette against the window, minus the camera's horizontal "
        "shift (phase correlation of the background)",
        "tracked head drawn on reversal frames; legs checked at peaks/troughs: head rightmost when the runner's "
        "right foot (image right, seen from behind) is in stance, leftmost on the left foot; period 0.76 s "
        "matches the gait cycle in SOURCES.md",
    ),
    ClipSpec(
        "arm_circles", track_arm_circles, "exercise",
        "vertical hand position (hands at the top of the circle = 100, bottom = 0)",
        "px, mean of both hands' y in the 480x848 frame",
        False, "sine", 0.2, 1, 35, "troughs", "arm circles", 110,
        "centroid of the pixels differing from the wall (per-pixel median) in a column band at each hand, "
        "both hands averaged; reversals from a fixed-period sine fit over 5 frames (only ~5 frames per circle)",
        "tracked hands drawn on reversal frames; period 0.48 s and ~11 circles as in SOURCES.md",
    ),
)


# ---------------------------------------------------------------------------------------------
# signal -> reversals -> script


@dataclass(frozen=True)
class Reversal:
    kind: str  # "peak" (pos 100 side) or "trough"
    t_s: float
    pos: float
    hold: tuple[float, float] | None = None


def robust_ends(raw: np.ndarray, up_is_larger: bool) -> tuple[float, float]:
    """Raw values to call 0 and 100 while looking for reversals: robust percentiles of the track."""
    lo, hi = np.nanpercentile(raw, MAP_PERCENTILES)
    return (float(lo), float(hi)) if up_is_larger else (float(hi), float(lo))


def rescale(values: np.ndarray | float, bottom: float, top: float) -> np.ndarray:
    """Linear map with `bottom` -> 0 and `top` -> 100 (not clipped)."""
    return (np.asarray(values, float) - bottom) / (top - bottom) * 100.0


def _quadratic_extreme(t: np.ndarray, y: np.ndarray, t0: float, half: float) -> tuple[float, float] | None:
    """Vertex of a parabola fitted within +-half of the estimate, re-centred until it settles."""
    centre = t0
    for _ in range(4):
        sel = np.abs(t - centre) <= half
        if sel.sum() < 4:
            return None
        a, b, c = np.polyfit(t[sel] - centre, y[sel], 2)
        if a == 0:
            return None
        shift = -b / (2 * a)
        if abs(shift) > half:
            return None
        centre += shift
    return centre, float(c - b * b / (4 * a))


def _sine_extreme(t: np.ndarray, y: np.ndarray, t0: float, half: float, period: float,
                  peak: bool) -> tuple[float, float] | None:
    """Extreme of y ~ a + b cos(w(t-t0)) + c sin(w(t-t0)) fitted within +-half (period known)."""
    w = 2 * math.pi / period
    sel = np.abs(t - t0) <= half + 1e-9
    if sel.sum() < 4:
        return None
    dt = t[sel] - t0
    design = np.column_stack([np.ones_like(dt), np.cos(w * dt), np.sin(w * dt)])
    (a, b, c), *_ = np.linalg.lstsq(design, y[sel], rcond=None)
    amplitude, phase = math.hypot(b, c), math.atan2(c, b)  # b cos + c sin = A cos(w dt - phase)
    shift = phase / w if peak else (phase + math.pi) / w
    shift = (shift + period / 2) % period - period / 2
    if abs(shift) > half:
        return None
    return t0 + shift, a + amplitude if peak else a - amplitude


def find_clip_reversals(spec: ClipSpec, t: np.ndarray, pos: np.ndarray, use: np.ndarray,
                        ) -> tuple[list[Reversal], list[Reversal]]:
    """Interior reversals and, separately, extremes too close to the tracked span's ends to call."""
    t_u, p_u = t[use], pos[use]
    smooth = p_u if spec.smooth_frames <= 1 else savgol_filter(p_u, spec.smooth_frames, 2)
    zigzag = find_reversals(smooth, spec.min_swing)
    period = float(np.median(np.diff(t_u[zigzag.index]))) * 2 if len(zigzag) > 2 else 0.0
    if spec.refine == "sine" and period <= 0:
        raise AutofunscriptError(f"{spec.stem}: too few reversals to estimate the period")
    inner: list[Reversal] = []
    edge: list[Reversal] = []
    for index, sign in zip(zigzag.index.tolist(), zigzag.kind.tolist()):
        kind = "peak" if sign > 0 else "trough"
        at_end = index in (0, t_u.size - 1)
        if spec.refine == "hold":
            extreme = float(smooth[index])
            near = np.abs(smooth - extreme) <= HOLD_TOLERANCE
            lo = hi = index
            while lo > 0 and near[lo - 1] and t_u[index] - t_u[lo - 1] <= spec.half_window_s:
                lo -= 1
            while hi < t_u.size - 1 and near[hi + 1] and t_u[hi + 1] - t_u[index] <= spec.half_window_s:
                hi += 1
            found = Reversal(kind, float((t_u[lo] + t_u[hi]) / 2), extreme, (float(t_u[lo]), float(t_u[hi])))
            at_end = at_end or lo == 0 or hi == t_u.size - 1
        else:
            fit = (_quadratic_extreme(t_u, p_u, float(t_u[index]), spec.half_window_s) if spec.refine == "quadratic"
                   else _sine_extreme(t_u, p_u, float(t_u[index]), spec.half_window_s, period, sign > 0))
            # a fit needs data on both sides: an extreme in the last half-window is not a reversal yet
            at_end = (at_end or fit is None or fit[0] - t_u[0] < spec.half_window_s / 2
                      or t_u[-1] - fit[0] < spec.half_window_s / 2)
            t_rev, p_rev = fit if fit is not None else (float(t_u[index]), float(p_u[index]))
            # a sampled frame cannot lie beyond the true extreme (sparse sine fits undershoot)
            p_rev = max(p_rev, float(p_u[index])) if sign > 0 else min(p_rev, float(p_u[index]))
            found = Reversal(kind, float(t_rev), float(p_rev))
        (edge if at_end else inner).append(found)
    return inner, edge


def crossing_offsets_ms(t: np.ndarray, p: np.ndarray, reversals: list[Reversal], depth: float) -> list:
    """Independent check of each fitted time: the midpoint of the two crossings `depth` below the
    extreme (fast, well-timed moments) minus the fitted time; ~0 for a symmetric swing."""
    offsets: list = []
    for rev in reversals:
        inside = (p - (rev.pos - depth)) if rev.kind == "peak" else ((rev.pos + depth) - p)  # > 0 near it
        centre = int(np.clip(np.searchsorted(t, rev.t_s), 1, t.size - 2))
        a, b = centre - 1, centre
        while a > 0 and inside[a] > 0:
            a -= 1
        while b < t.size - 1 and inside[b] > 0:
            b += 1
        if inside[a] > 0 or inside[b] > 0 or inside[a + 1] <= 0 or inside[b - 1] <= 0:
            offsets.append(None)
            continue
        rise = t[a] + (t[a + 1] - t[a]) * -inside[a] / (inside[a + 1] - inside[a])
        fall = t[b - 1] + (t[b] - t[b - 1]) * inside[b - 1] / (inside[b - 1] - inside[b])
        offsets.append(round(((rise + fall) / 2 - rev.t_s) * 1000, 1))
    return offsets


def _simplify(t: np.ndarray, p: np.ndarray, keep: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on the position axis: points needed to stay within `tolerance` of the track."""
    keep = keep.copy()
    anchors = np.flatnonzero(keep)
    stack = list(zip(anchors[:-1], anchors[1:]))
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        inner = np.arange(a + 1, b)
        line = p[a] + (p[b] - p[a]) * (t[inner] - t[a]) / (t[b] - t[a])
        error = np.abs(p[inner] - line)
        worst = int(np.argmax(error))
        if error[worst] > tolerance:
            m = int(inner[worst])
            keep[m] = True
            stack += [(a, m), (m, b)]
    return keep


def exercise_actions(t: np.ndarray, pos: np.ndarray, tracked: np.ndarray, reversals: list[Reversal],
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reversal (and hold) points plus the frames needed to follow the track in between."""
    t_tr, p_tr = t[tracked], pos[tracked]
    forced_t = [t_tr[0], t_tr[-1]]
    forced_p = [p_tr[0], p_tr[-1]]
    for rev in reversals:
        times = rev.hold if rev.hold and rev.hold[1] > rev.hold[0] else (rev.t_s,)
        forced_t += list(times)
        forced_p += [rev.pos] * len(times)
    # frames inside a hold are represented by its two end points, and a frame a few ms from a
    # reversal point adds nothing but a spurious jump
    step = float(np.median(np.diff(t_tr)))
    skip = np.zeros(t_tr.size, bool)
    for rev in reversals:
        if rev.hold:
            skip |= (t_tr >= rev.hold[0]) & (t_tr <= rev.hold[1])
        else:
            skip |= np.abs(t_tr - rev.t_s) < 0.3 * step
    all_t = np.concatenate([t_tr[~skip], forced_t])
    all_p = np.concatenate([p_tr[~skip], forced_p])
    all_keep = np.concatenate([np.zeros((~skip).sum(), bool), np.ones(len(forced_t), bool)])
    order = np.lexsort((~all_keep, all_t))  # at equal times the forced point comes first
    all_t, all_p, all_keep = all_t[order], all_p[order], all_keep[order]
    unique = np.append(True, np.diff(all_t) > 1e-6)
    all_t, all_p, all_keep = all_t[unique], all_p[unique], all_keep[unique]
    keep = _simplify(all_t, all_p, all_keep, SCRIPT_TOLERANCE)
    at, p = all_t[keep], all_p[keep]
    if t[0] < t_tr[0]:  # untracked lead-in (pushups intro): hold the first tracked position
        at, p = np.concatenate([[t[0]], at]), np.concatenate([[p[0]], p])
    return at, p


# ---------------------------------------------------------------------------------------------
# per clip


def _round(values: np.ndarray, digits: int) -> list:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_reference(spec: ClipSpec, video: Path) -> tuple[Funscript, dict, Track, Timing, list[Reversal]]:
    times: list[float] = []

    def frames() -> Iterator[np.ndarray]:
        for t, image in decode(video):
            times.append(t)
            yield image

    track = spec.tracker(frames())
    timing = Timing(np.asarray(times))
    t = timing.times_s
    tracked = np.isfinite(track.raw)
    use = tracked & ~track.extra.get("repeated", np.zeros(t.size, bool))
    # Reversals are found on a percentile scale; the final scale puts the most extreme reversal
    # (edge extremes included) at exactly 0 and 100, so no extreme is clipped flat (a flat top would
    # blur the reversal time).
    bottom, top = robust_ends(track.raw[tracked], spec.up_is_larger_raw)
    found, found_edge = find_clip_reversals(spec, t, np.where(tracked, rescale(track.raw, bottom, top), 0.0), use)
    low = min((r.pos for r in found + found_edge if r.kind == "trough"), default=0.0)
    high = max((r.pos for r in found + found_edge if r.kind == "peak"), default=100.0)
    raw_at_0, raw_at_100 = (bottom + (top - bottom) * v / 100 for v in (low, high))
    pos = np.clip(rescale(track.raw, raw_at_0, raw_at_100), 0.0, 100.0)

    def final(rev: Reversal) -> Reversal:
        return Reversal(rev.kind, rev.t_s, float(np.clip(rescale(rev.pos, low, high), 0, 100)), rev.hold)

    reversals, edge = [final(r) for r in found], [final(r) for r in found_edge]

    if spec.kind == "pendulum":
        at_s, script_pos = t, pos
    else:
        smooth = pos.copy()
        if spec.smooth_frames > 1:
            smooth[tracked] = savgol_filter(pos[tracked], spec.smooth_frames, 2)
        at_s, script_pos = exercise_actions(t, smooth, tracked, reversals)
    script = Funscript.from_samples(np.asarray(at_s) * 1000.0, np.asarray(script_pos), metadata={
        "title": spec.stem, "creator": "bench/make_references.py",
        "description": f"reference: {spec.axis}", "duration": timing.duration_s})

    peaks = [r for r in reversals if r.kind == "peak"]
    troughs = [r for r in reversals if r.kind == "trough"]

    def describe(rev: Reversal) -> dict:
        item = {"kind": rev.kind, "t_s": round(rev.t_s, 6), "frame": timing.frame_at(rev.t_s),
                "nearest_frame": timing.nearest_frame(rev.t_s), "pos": round(rev.pos, 1)}
        if rev.hold:
            item["hold_s"] = [round(rev.hold[0], 6), round(rev.hold[1], 6)]
        return item

    sidecar: dict = {
        "clip": video.name,
        "clip_sha256": _sha256(video),
        "made_by": "bench/make_references.py",
        "kind": spec.kind,
        "axis": spec.axis,
        "method": spec.method,
        "verification": spec.verification,
        "raw_unit": spec.raw_unit,
        "mapping": {"raw_at_0": round(raw_at_0, 3), "raw_at_100": round(raw_at_100, 3),
                    "rule": "linear; the most extreme trough = 0, peak = 100 (reversals found on a "
                            f"{MAP_PERCENTILES[0]:g}-{MAP_PERCENTILES[1]:g} percentile scale first)"},
        "decoded_frames": int(t.size),
        "first_pts_s": round(float(t[0]), 6),
        "last_pts_s": round(float(t[-1]), 6),
        "frame_step_s": round(timing.frame_step_s, 6),
        "decoded_duration_s": round(timing.duration_s, 6),
        "count": len(peaks if spec.count_of == "peaks" else troughs),
        "count_name": spec.count_name,
        "count_of": spec.count_of,
        "peaks": len(peaks),
        "troughs": len(troughs),
        "reversals": [describe(r) for r in reversals],
        "edge_extremes": [describe(r) for r in edge],
        "holds": [],
        "track": {"t_s": _round(t, 6), "raw": _round(track.raw, 3), "pos": _round(pos, 2)},
    }
    if not tracked.all():
        first = int(np.argmax(tracked))
        sidecar["holds"].append({"from_s": 0.0, "to_s": round(float(t[first]), 6), "frames": [0, first - 1],
                                 "reason": "blurred intro with a text overlay: not tracked, held at the first "
                                           "tracked position"})
    sidecar["holds"] += [{"from_s": round(r.hold[0], 6), "to_s": round(r.hold[1], 6),
                          "reason": f"at the {r.kind} (within {HOLD_TOLERANCE:g} pos of it)"}
                         for r in reversals if r.hold and r.hold[1] > r.hold[0]]
    if "repeated" in track.extra:
        repeated = track.extra["repeated"]
        sidecar["repeated_frames"] = {"count": int(repeated.sum()),
                                      "note": "frames that repeat the previous image; kept in the script "
                                              "(one action per decoded frame), left out of reversal fits",
                                      "frames": np.flatnonzero(repeated).tolist()}
    if "head_top_y" in track.extra:
        bounce = track.extra["head_top_y"]
        bounce_pos = rescale(bounce, *robust_ends(bounce, up_is_larger=False))
        steps = find_reversals(savgol_filter(bounce_pos, 5, 2), 35)
        lows = [int(i) for i, k in zip(steps.index, steps.kind) if k < 0 and 0 < i < t.size - 1]
        sidecar["secondary"] = {
            "name": "vertical bounce (head top, one low per step): not followed, too fast for a stroker "
                    "(2.6 Hz needs > 1000 pos/s for full strokes)",
            "steps": len(lows), "step_low_frames": lows,
            "head_top_y_px": _round(bounce, 3)}
    if spec.refine != "hold":
        offsets = crossing_offsets_ms(t[use], pos[use], reversals, CROSSING_DEPTH)
        known = [abs(v) for v in offsets if v is not None]
        sidecar["crossing_check"] = {
            "what": f"midpoint of the two crossings {CROSSING_DEPTH:g} pos inside each extreme minus the fitted "
                    "reversal time, in ms (independent of the fit; ~0 for a symmetric swing)",
            "offsets_ms": offsets, "max_abs_ms": max(known) if known else None}
    if spec.stem == "pendulum_pair_grey":
        sidecar["csv_comparison"] = compare_with_collector(video.with_name(f"{spec.stem}.track.csv"), track.raw)
    return script, sidecar, track, timing, reversals


def compare_with_collector(csv_path: Path, left_x: np.ndarray) -> dict:
    """Differences between our left-ball track and the collector's per-frame CSV."""
    if not csv_path.exists():
        return {"available": False}
    lines = [line for line in csv_path.read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split(",")
    column = header.index("left_bob_x_px")
    theirs = np.asarray([float(line.split(",")[column]) for line in lines[1:]])
    if theirs.size != left_x.size:
        return {"available": True, "rows": int(theirs.size), "frames": int(left_x.size), "note": "length differs"}
    diff = left_x - theirs
    big = np.flatnonzero(np.abs(diff) > 3)
    return {"available": True, "mean_px": round(float(diff.mean()), 3), "sd_px": round(float(diff.std()), 3),
            "max_abs_px": round(float(np.abs(diff).max()), 2), "frames_over_3px": big.tolist(),
            "sd_px_without_those": round(float(np.delete(diff, big).std()), 3)}


SHEET_TILE_WIDTH = 400
SHEET_TILE_HEIGHT = 300


def save_sheet(video: Path, spec: ClipSpec, track: Track, timing: Timing, reversals: list[Reversal],
               out: Path) -> None:
    """One PNG: the frame of every reversal with the tracked point(s) drawn, for checking by eye."""
    wanted = {timing.nearest_frame(r.t_s): r for r in reversals}
    tiles = []
    for index, (_, image) in enumerate(decode(video)):
        if index not in wanted:
            continue
        image = image.copy()
        points = track.points[index][np.isfinite(track.points[index][:, 0])]
        for x, y in points:
            cv2.drawMarker(image, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 16, 1)
        if len(points) == 2:  # two hands, or the ends of the measured band: their mean is the measure
            cv2.line(image, tuple(int(v) for v in points[0]), tuple(int(v) for v in points[1]), (0, 0, 255), 1)
        # native-resolution crop around the point(s), so a few pixels of error are visible
        height, width = image.shape[:2]
        if points.size and spec.sheet_margin_px is not None:
            margin = spec.sheet_margin_px
            (left, top), (right, bottom) = points.min(axis=0) - margin, points.max(axis=0) + margin
            image = image[max(int(top), 0):min(int(bottom), height), max(int(left), 0):min(int(right), width)]
        scale = SHEET_TILE_WIDTH / image.shape[1]
        tile = cv2.resize(image, None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        canvas = np.zeros((SHEET_TILE_HEIGHT, SHEET_TILE_WIDTH, 3), np.uint8)
        canvas[:min(tile.shape[0], SHEET_TILE_HEIGHT)] = tile[:SHEET_TILE_HEIGHT]
        tile = canvas
        rev = wanted[index]
        cv2.putText(tile, f"{index} {rev.kind} {rev.t_s:.3f}s", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 255), 1)
        tiles.append(tile)
    if not tiles:
        return
    per_row = 4
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % per_row)
    rows = [np.concatenate(tiles[i:i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    cv2.imwrite(str(out), np.concatenate(rows, axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--sheets", type=Path, help="folder for verification PNGs (reversal frames, point drawn)")
    parser.add_argument("--only", nargs="*", help="clip stems to build (default: all)")
    parser.add_argument("--force", action="store_true", help="overwrite existing references")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for spec in SPECS:
            if args.only and spec.stem not in args.only:
                continue
            video = args.videos / f"{spec.stem}.mp4"
            if not video.exists():
                raise AutofunscriptError(f"{video}: no such clip")
            script, sidecar, track, timing, reversals = build_reference(spec, video)
            write_funscript(script, args.out / f"{spec.stem}.funscript", force=args.force)
            atomic_write_text(args.out / f"{spec.stem}.json", json.dumps(sidecar, indent=1) + "\n", force=args.force)
            if args.sheets:
                args.sheets.mkdir(parents=True, exist_ok=True)
                save_sheet(video, spec, track, timing, reversals, args.sheets / f"{spec.stem}.png")
            print(f"{spec.stem}: {sidecar['count']} {spec.count_name} ({sidecar['peaks']} peaks, "
                  f"{sidecar['troughs']} troughs, {len(sidecar['edge_extremes'])} edge extremes), "
                  f"{len(script)} actions, {sidecar['decoded_frames']} frames, {sidecar['decoded_duration_s']:.3f} s")
    except AutofunscriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
