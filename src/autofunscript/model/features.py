"""Model inputs: per-frame features from the tracking pass, resampled to a fixed rate.

Everything here is cheap next to decoding and optical flow: the FlowTracker grid pooled to a coarse
layout, the classical generator's ROI signal for the same window (a strong prior the model may use or
overrule), and optional image channels (edge density, a motion mask, a tiny grey patch). Features are
resampled to FEATURE_RATE so one model serves any frame rate, and a model's context is in seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from autofunscript.motion.segments import Window, frame_rate
from autofunscript.motion.signal import WindowSignal, analyse_window

FEATURE_RATE = 30.0  # Hz: the model's time step
POOL = (6, 8)  # rows, cols of the pooled flow grid and of the image channels
IMAGE_INPUTS = ("edges", "mask", "patch")
INPUTS = ("flow", *IMAGE_INPUTS)
ROI_CHANNELS = ("roi_velocity", "roi_position", "roi_sway", "roi_roll", "roi_surge")
# Below this RMS (pixels per 1/30 s) a chunk is treated as still: noise is not amplified to unit scale.
FLOW_FLOOR = 0.05
MOTION_MASK_LEVEL = 12  # grey levels of frame difference that count as moving
CANNY_THRESHOLDS = (60, 150)


@dataclass(frozen=True)
class FeatureSpec:
    """Which inputs a model reads. 'flow' (pooled grid + ROI signal) is always present."""

    inputs: tuple[str, ...] = ("flow",)

    def __post_init__(self) -> None:
        unknown = [name for name in self.inputs if name not in INPUTS]
        if unknown or "flow" not in self.inputs:
            raise ValueError(f"inputs must include 'flow' and come from {INPUTS}, got {self.inputs}")

    @property
    def image_inputs(self) -> tuple[str, ...]:
        return tuple(name for name in IMAGE_INPUTS if name in self.inputs)

    def channel_names(self) -> list[str]:
        """Names of the feature columns, in order (model inputs add `valid`, `hint`, `hint_mask`)."""
        rows, cols = POOL
        names = [f"flow_{axis}_{r}_{c}" for r in range(rows) for c in range(cols) for axis in "xy"]
        names += [*ROI_CHANNELS, "log_energy", "periodicity"]
        for name in self.image_inputs:
            names += [f"{name}_{r}_{c}" for r in range(rows) for c in range(cols)]
        return names

    @property
    def n_features(self) -> int:
        return len(self.channel_names())

    @property
    def n_model_inputs(self) -> int:
        return self.n_features + len(EXTRA_MODEL_INPUTS)


EXTRA_MODEL_INPUTS = ("valid", "hint", "hint_mask")
N_FLOW = 2 * POOL[0] * POOL[1]


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average input cells into output cells by overlap (like INTER_AREA)."""
    edges = np.linspace(0, n_in, n_out + 1)
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j in range(n_in):
            m[i, j] = max(0.0, min(edges[i + 1], j + 1) - max(edges[i], j))
    return m / m.sum(axis=1, keepdims=True)


def pool_grids(grids: np.ndarray) -> np.ndarray:
    """(T, rows, cols, 2) cell velocities -> (T, POOL rows, POOL cols, 2) area averages."""
    _, rows, cols, _ = grids.shape
    pr, pc = _area_matrix(rows, POOL[0]), _area_matrix(cols, POOL[1])
    return np.einsum("ir,trcx,jc->tijx", pr, grids.astype(np.float64), pc)


class ImageChannels:
    """Per-frame image features from the analysis-size grey frame (only those the spec asks for)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.inputs = spec.image_inputs
        self._prev: np.ndarray | None = None

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        size = (POOL[1], POOL[0])
        parts = []
        for name in self.inputs:
            if name == "edges":
                edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
                parts.append(cv2.resize(edges, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)
            elif name == "mask":
                if self._prev is None or self._prev.shape != gray.shape:
                    moving = np.zeros(gray.shape, np.uint8)
                else:
                    moving = (cv2.absdiff(gray, self._prev) > MOTION_MASK_LEVEL).astype(np.uint8) * 255
                parts.append(cv2.resize(moving, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)
            else:  # patch: brightness layout, normalised so exposure changes do not matter
                patch = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
                parts.append((patch - patch.mean()) / (patch.std() + 4.0))
        self._prev = gray
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate([p.reshape(-1) for p in parts]).astype(np.float32)


class ImageRowBuffer:
    """Holds image-feature rows by frame time until the Windower emits the window that contains them."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._rows: deque[tuple[float, np.ndarray]] = deque()

    def push(self, time_s: float, row: np.ndarray) -> None:
        self._rows.append((time_s, row))

    def take(self, times_s: np.ndarray) -> np.ndarray:
        """Rows for exactly these frame times; forgets rows the next window cannot need."""
        lookup = {t: row for t, row in self._rows}
        out = np.stack([lookup[t] for t in times_s.tolist()])
        horizon = float(times_s[-1]) - self.keep_s - 1.0
        while self._rows and self._rows[0][0] < horizon:
            self._rows.popleft()
        return out


@dataclass(frozen=True)
class WindowFeatures:
    """Features of one analysis window on a uniform FEATURE_RATE grid that starts at its first frame."""

    frame_times_s: np.ndarray  # (T,) the window's frame times
    grid_times_s: np.ndarray  # (N,)
    values: np.ndarray  # (N, C) float32, columns as FeatureSpec.channel_names()
    classic: WindowSignal  # the flow generator's analysis of the same window (per frame)
    roi_mask: np.ndarray | None = None  # the point of interest's grid mask that steered it (None: automatic)


def uniform_grid(times_s: np.ndarray) -> np.ndarray:
    """FEATURE_RATE steps from the first frame up to (and just past) the last one."""
    span = float(times_s[-1] - times_s[0]) if times_s.size else 0.0
    return times_s[0] + np.arange(int(np.ceil(span * FEATURE_RATE - 1e-6)) + 1) / FEATURE_RATE


def resample_rows(times_s: np.ndarray, values: np.ndarray, new_times_s: np.ndarray) -> np.ndarray:
    """Linear interpolation of every column of `values` (rows at `times_s`) onto `new_times_s`."""
    if times_s.size == 1:
        return np.repeat(values[:1], new_times_s.size, axis=0)
    right = np.clip(np.searchsorted(times_s, new_times_s, side="right"), 1, times_s.size - 1)
    left = right - 1
    w = np.clip((new_times_s - times_s[left]) / np.maximum(times_s[right] - times_s[left], 1e-9), 0.0, 1.0)
    return values[left] * (1 - w)[:, None] + values[right] * w[:, None]


def window_features(window: Window, spec: FeatureSpec, image_rows: np.ndarray | None = None,
                    drift_cutoff_hz: float = 0.02, roi_mask: np.ndarray | None = None) -> WindowFeatures:
    """Feature rows for a window of the tracking pass (image_rows: ImageChannels output per frame;
    roi_mask: the user's point of interest as a grid mask, which steers the ROI channels)."""
    times = window.times_s
    fps = frame_rate(times, FEATURE_RATE)
    per_step = fps / FEATURE_RATE  # velocities per frame -> per model step
    grids = window.grids.astype(np.float32)
    flow = pool_grids(grids).reshape(times.size, -1) * per_step
    ws = analyse_window(grids, fps, drift_cutoff_hz, roi_mask=roi_mask)
    roi_velocity = np.diff(ws.position, prepend=ws.position[:1]) * per_step
    roi = np.stack([roi_velocity, ws.position, ws.extra["sway"], ws.extra["roll"], ws.extra["surge"]], axis=1)
    log_energy = np.log(np.mean(flow**2, axis=1) + 1e-4)[:, None]
    periodic = np.full((times.size, 1), ws.periodicity)
    columns = [flow, roi, log_energy, periodic]
    if spec.image_inputs:
        if image_rows is None:
            raise ValueError("this feature spec needs image rows")
        columns.append(image_rows)
    rows = np.concatenate(columns, axis=1)
    grid = uniform_grid(times)
    return WindowFeatures(times, grid, resample_rows(times, rows, grid).astype(np.float32), ws, roi_mask)


def _mirror_columns(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Column permutation and signs that mirror features left-right (see augment)."""
    names = spec.channel_names()
    order = np.arange(len(names))
    sign = np.ones(len(names), np.float32)
    rows, cols = POOL
    for i, name in enumerate(names):
        parts = name.split("_")
        if parts[0] == "flow":
            order[i] = names.index(f"flow_{parts[1]}_{parts[2]}_{cols - 1 - int(parts[3])}")
            sign[i] = -1.0 if parts[1] == "x" else 1.0
        elif parts[0] in IMAGE_INPUTS:
            order[i] = names.index(f"{parts[0]}_{parts[1]}_{cols - 1 - int(parts[2])}")
        elif name in ("roi_sway", "roi_roll"):
            sign[i] = -1.0
    return order, sign


def augment(values: np.ndarray, spec: FeatureSpec, mirror: bool, reverse: bool) -> np.ndarray:
    """Training copies of a chunk that are as real as the original.

    mirror: the scene flipped left-right (horizontal velocities, sway and rotation change sign; the stroke
    axis of the mostly vertical strokes does not). reverse: time played backwards (every velocity changes
    sign, positions just run backwards); the caller reverses the truth too.
    """
    out = values.copy()
    if mirror:
        order, sign = _mirror_columns(spec)
        out = out[:, order] * sign
    if reverse:
        out = out[::-1].copy()
        out[:, :N_FLOW + 1] *= -1.0  # pooled flow and roi_velocity
    return out


def model_input(values: np.ndarray, length: int, spec: FeatureSpec, hint: float | None = None) -> np.ndarray:
    """One chunk of feature rows (n <= length) -> the model's (channels, length) input.

    Velocity inputs are divided by the chunk's RMS (floored) so the model sees motion at unit scale
    whatever the subject's size; ROI positions are z-scored over the chunk. Rows past n are padding
    (valid = 0). `hint` is the known position (0-100) at the chunk's first step, if any.
    """
    n, c = values.shape
    x = np.zeros((length, c + len(EXTRA_MODEL_INPUTS)), np.float32)
    if n == 0:
        return x.T
    v = values.astype(np.float64)
    flow = v[:, :N_FLOW]
    x[:n, :N_FLOW] = flow / max(float(np.sqrt(np.mean(flow**2))), FLOW_FLOOR)
    roi = v[:, N_FLOW : N_FLOW + len(ROI_CHANNELS)]
    roi_vel = roi[:, 0]
    x[:n, N_FLOW] = roi_vel / max(float(np.sqrt(np.mean(roi_vel**2))), FLOW_FLOOR)
    rest = roi[:, 1:]
    centred = rest - rest.mean(axis=0)
    scale = np.maximum(centred.std(axis=0), 1e-3)
    x[:n, N_FLOW + 1 : N_FLOW + len(ROI_CHANNELS)] = centred / scale
    x[:n, N_FLOW + len(ROI_CHANNELS) : c] = v[:, N_FLOW + len(ROI_CHANNELS) :]
    x[:n, c] = 1.0
    if hint is not None:
        x[0, c + 1] = (float(hint) - 50.0) / 50.0
        x[0, c + 2] = 1.0
    return x.T


def target_positions(positions: np.ndarray) -> np.ndarray:
    """Training target for a chunk: truth positions (0-100) centred and scaled per chunk.

    The scale is floored so a nearly still chunk has a nearly flat target instead of amplified wiggle.
    """
    centred = positions - positions.mean()
    return (centred / max(float(positions.std()), 5.0)).astype(np.float32)
