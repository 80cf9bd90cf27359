"""From a window of cell velocities to a position signal along the subject's stroke axis.

The subject is the most energetic coherent motion in the window: the leading components of the cell
velocities' covariance over time, ranked by energy weighted by periodicity, so an equally strong but
irregular distractor loses to a stroking subject. When that motion is mostly flow noise (plain areas and
thin lines under a shaky camera: strong, but changing sign from one frame to the next), the search is
made again on the motion that carries on between frames (lag-1 covariance), where noise adds nothing.
Its cells form the ROI; their velocity projected on the dominant axis is integrated into a position, and
slow drift of the integration is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# SciPy is imported inside the functions that use it, to keep its 0.9 s import off the start of a run:
# see pipeline.preload_scipy.

MAX_ACTIVE_CELLS = 96
COMPONENTS = 3
# Motion slower than this (camera pan and zoom residue at the frame's edges) does not choose the subject.
SLOW_MOTION_S = 3.0
# The strongest motion counts as noise below this lag-1 autocorrelation (measured: noise <= 0.11, strokes
# >= 0.42 except 13 reversals/s, ~0.02 at 30 fps) when a steady motion elsewhere has this share of its
# energy (measured: the subject under noise 0.18-0.29, nothing but residue beside fast strokes 0.01-0.03).
MIN_PERSISTENCE = 0.3
MIN_STEADY_SHARE = 0.1
# Strokes too fast for the frame rate (about 3 or 4 whole frames each: 7.5-10 Hz at 30 fps) change sign
# between frames too, but repeat: their moves come back after 3 or 4 frames, reversed in between (measured
# on the suite: autocorrelation 0.90-0.99 at 4 frames, <= -0.89 at 2). Other motion that changes sign between
# frames (flow noise, a slower rhythm) repeats at most 0.49 at 3-4 frames, or without reversing in between
# (a pendulum filmed with every frame shown twice). Periods between whole frames (3.5, 4.5) repeat less and
# are not caught; looking up to 8 frames would catch them, but it also took the arm circles' 5-frame rhythm
# at 10 fps away from the steady search (r 0.981 -> 0.933) and would flip no suite window.
RAPID_REPEAT = 0.8
RAPID_REVERSAL = -0.4


# A second rhythmic motion is another body when its cells keep at least this many cells away from the tracked
# motion's, across the stroke axis (measured on the suite's windows: the other end of the same body 0-3 cells
# beside it; the second body of every `hard` clip 5.7-8.8 cells, whichever of the two was tracked).
RIVAL_GAP_CELLS = 4.5
RIVAL_PERIODICITY = 0.5  # and it has a rhythm (the suite's second bodies 0.64-0.97)


@dataclass(frozen=True)
class Rival:
    """A second body moving in a rhythm beside the tracked motion: the automatic choice between the two may
    be the wrong one. Centres as 0-1 fractions of the analysed picture (one eye in VR), as --poi takes them."""

    tracked_xy: tuple[float, float]
    other_xy: tuple[float, float]


@dataclass(frozen=True)
class WindowSignal:
    """Positions (arbitrary units, drift removed) for each frame of a window, with how they were made."""

    position: np.ndarray  # (T,) along the stroke axis, larger = up (or right for horizontal strokes)
    extra: dict[str, np.ndarray]  # other axes: 'sway' (across the stroke), 'roll' (rotation), 'surge' (scale)
    axis: tuple[float, float]  # unit (dx, dy) image direction that raises the position
    roi_weight: np.ndarray  # (rows, cols) weight of each cell in the ROI
    energy: float  # mean squared ROI velocity (analysis px/frame)^2: ~0 for a still scene
    periodicity: float  # 0..1, autocorrelation peak of the position
    rival: Rival | None = None  # see rival_motion; set by the generator, which looks for one


def _highpass(x: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase high-pass that removes integration drift; linear detrend when the window is short."""
    if x.size < 16 or cutoff_hz <= 0:
        return x - x.mean()
    from scipy import signal as sps

    # the line is fitted here, not by sps.detrend: that solves through SciPy's own BLAS, whose threads
    # pipeline._libraries_single_threaded cannot hold (SciPy loads after it)
    t = np.arange(x.size) - (x.size - 1) / 2
    x = x - x.mean() - t * (t @ x) / (t @ t)
    sos = sps.butter(2, cutoff_hz, btype="highpass", fs=fps, output="sos")
    pad = min(x.size - 1, int(3 * fps / cutoff_hz))
    return sps.sosfiltfilt(sos, x, padtype="even", padlen=pad)


def _autocorrelation(x: np.ndarray) -> np.ndarray | None:
    """Normalised autocorrelation of a signal about its mean at lags 0..n-1 (None: too short or constant)."""
    x = x - x.mean()
    n = x.size
    if n < 8 or not np.any(x):
        return None
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    return ac / ac[0]


def periodicity(x: np.ndarray, fps: float, min_period_s: float = 0.15, max_period_s: float = 6.0) -> float:
    """Height of the strongest autocorrelation peak at a plausible stroke period (0 = none, 1 = perfect)."""
    ac = _autocorrelation(x)
    if ac is None:
        return 0.0
    n = ac.size
    lo = max(1, int(min_period_s * fps))
    hi = min(n - 1, int(max_period_s * fps))
    if hi <= lo:
        return 0.0
    return float(np.clip(ac[lo:hi].max(), 0.0, 1.0))


def stroke_period(x: np.ndarray, fps: float, max_period_s: float = 6.0, min_clarity: float = 0.3) -> float | None:
    """The typical stroke period of a position signal in seconds, or None when no period stands out.

    Read from the autocorrelation of the frame-to-frame moves, not of the position: integration drift
    barely shows in the moves, while it can outweigh fast, shallow strokes in the position. The period is
    the highest peak after the autocorrelation first turns negative (the end of one move's own width).
    """
    ac = _autocorrelation(np.diff(np.asarray(x, float)))
    if ac is None:
        return None
    hi = min(ac.size - 1, int(max_period_s * fps))
    negative = np.flatnonzero(ac[1:hi] < 0)
    if negative.size == 0:
        return None
    start = int(negative[0]) + 1
    lag = start + int(np.argmax(ac[start:hi]))
    return lag / fps if ac[lag] >= min_clarity else None


def orient_axis(axis: np.ndarray) -> np.ndarray:
    """Orient the stroke axis: mostly vertical -> pointing up on screen; mostly horizontal -> pointing right."""
    ax, ay = axis
    if abs(ay) >= abs(ax):
        return axis if ay < 0 else -axis
    return axis if ax > 0 else -axis


def _without_slow_motion(cells: np.ndarray, fps: float) -> np.ndarray:
    """(T, ...) velocities minus their moving average over SLOW_MOTION_S."""
    from scipy.ndimage import uniform_filter1d

    return cells - uniform_filter1d(cells, max(3, round(SLOW_MOTION_S * fps)), axis=0, mode="nearest")


def _lag1_covariance(x: np.ndarray) -> np.ndarray:
    """Symmetrised covariance of a (T, n) signal with itself one frame later: white noise adds ~0."""
    lagged = x[1:].T @ x[:-1]
    return (lagged + lagged.T) / 2


@dataclass(frozen=True)
class _Motion:
    active: np.ndarray  # indices of the cells taking part
    eigvecs: np.ndarray  # component directions over the active cells' (x, y) velocities
    column: int  # the chosen component
    energy: float  # its energy over the window (persistent: the part carried on between frames)
    persistence: float  # its lag-1 autocorrelation: ~0 for flow noise, 0.4-1 for strokes
    rapid: bool  # a rhythm of 3-4 frames: strokes too fast for the frame rate, not noise


def _leading_motion(cells: np.ndarray, fps: float, drift_cutoff_hz: float, roi_mask: np.ndarray | None,
                    persistent: bool) -> _Motion | None:
    """The most energetic motion component of (T, cells, 2) velocities, weighted by periodicity.

    `persistent` counts only motion that carries on from one frame to the next (lag-1 covariance, motion
    slower than SLOW_MOTION_S removed): flow noise adds nothing to it, however strong.
    """
    t = cells.shape[0]
    signal = _without_slow_motion(cells, fps) if persistent else cells
    if persistent:
        energy_per_cell = np.maximum((signal[1:] * signal[:-1]).sum(axis=(0, 2)), 0.0)
    else:
        energy_per_cell = (signal**2).sum(axis=(0, 2))
    if roi_mask is not None:
        energy_per_cell = energy_per_cell * roi_mask.reshape(-1)
    order = np.argsort(energy_per_cell)[::-1]
    if t < 3 or energy_per_cell[order[0]] <= 0:
        return None
    active = order[:MAX_ACTIVE_CELLS]
    active = active[energy_per_cell[active] > 0.05 * energy_per_cell[active[0]]]
    matrix = signal[:, active, :].reshape(t, -1)
    matrix = matrix - matrix.mean(axis=0)
    # components from the small (cells x cells) covariance: cheap, and only the first few are needed
    eigvals, eigvecs = np.linalg.eigh(_lag1_covariance(matrix) if persistent else matrix.T @ matrix)
    best, best_score, best_velocity = 0, -1.0, np.zeros(t)
    for k in range(min(COMPONENTS, eigvals.size)):
        column = eigvals.size - 1 - k
        velocity = matrix @ eigvecs[:, column]
        trace = np.cumsum(velocity)  # component's temporal signal, scaled by its energy
        score = max(eigvals[column], 0.0) * (0.25 + periodicity(_highpass(trace, fps, drift_cutoff_hz), fps))
        if score > best_score:
            best, best_score, best_velocity = column, score, velocity
    power = float(best_velocity @ best_velocity)
    carried = float(best_velocity[1:] @ best_velocity[:-1])
    return _Motion(active, eigvecs, best, carried if persistent else power, carried / power if power > 0 else 0.0,
                   _rapid_rhythm(best_velocity))


def _rapid_rhythm(velocity: np.ndarray) -> bool:
    """Whether a velocity repeats every 3-4 frames, reversing in between."""
    ac = _autocorrelation(velocity)
    if ac is None:
        return False
    return bool(ac[3:5].max() >= RAPID_REPEAT and ac[1:3].min() <= RAPID_REVERSAL)


def _curl_and_divergence(grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vx, vy = grids[..., 0], grids[..., 1]
    dvx_dy, dvx_dx = np.gradient(vx, axis=(1, 2))
    dvy_dy, dvy_dx = np.gradient(vy, axis=(1, 2))
    return dvy_dx - dvx_dy, dvx_dx + dvy_dy


def analyse_window(grids: np.ndarray, fps: float, drift_cutoff_hz: float = 0.02,
                   roi_mask: np.ndarray | None = None, axis: tuple[float, float] | None = None) -> WindowSignal:
    """Position signal for a window of cell velocity grids of shape (T, rows, cols, 2).

    `roi_mask` (rows, cols) restricts the search to a user's point of interest; `axis` forces the
    stroke direction instead of finding it.
    """
    t, rows, cols, _ = grids.shape
    cells = grids.reshape(t, rows * cols, 2).astype(np.float64)
    weights_full = np.zeros(rows * cols)
    found = _leading_motion(cells, fps, drift_cutoff_hz, roi_mask, persistent=False)
    if found is not None and found.persistence < MIN_PERSISTENCE and not found.rapid:
        # the strongest motion changes every frame without a rhythm: flow noise (plain areas, thin lines
        # under a shaky camera), or strokes too fast for the frame rate whose rhythm the flow blurred.
        # Another motion that carries on between frames and is not negligible beside it is the subject;
        # none, and the fast strokes stand.
        steady = _leading_motion(cells, fps, drift_cutoff_hz, roi_mask, persistent=True)
        if steady is not None and steady.energy >= MIN_STEADY_SHARE * found.energy:
            found = steady
    if found is None:  # too few frames, or nothing moves
        zeros = np.zeros(t)
        return WindowSignal(zeros, {"sway": zeros, "roll": zeros, "surge": zeros}, (0.0, -1.0),
                            weights_full.reshape(rows, cols), 0.0, 0.0)
    active, eigvecs, best = found.active, found.eigvecs, found.column
    loadings = eigvecs[:, best].reshape(-1, 2)  # per active cell, the direction it moves in this component
    strength = (loadings**2).sum(axis=1)

    if axis is None:
        # principal direction of the loading vectors, weighted by how much each cell takes part
        cov = (loadings * strength[:, None]).T @ loadings
        eigvals, eigvecs = np.linalg.eigh(cov)
        direction = orient_axis(eigvecs[:, np.argmax(eigvals)])
    else:
        direction = np.asarray(axis, float) / (np.hypot(*axis) or 1.0)

    # ROI: cells that carry the component; signs of loadings matter (a rotating subject has cells
    # moving in opposite directions), so project each cell on the axis with its own sign.
    roi = strength >= 0.2 * strength.max()
    cell_sign = np.sign(loadings[roi] @ direction)
    cell_sign[cell_sign == 0] = 1.0
    # SVD signs are arbitrary: the cells carrying most of the energy define which way is "along"
    cell_sign *= np.sign((strength[roi] * cell_sign).sum()) or 1.0
    w = strength[roi] * cell_sign
    roi_cells = active[roi]
    velocity = cells[:, roi_cells, :] @ direction  # (T, n_roi)
    along = velocity @ w / np.abs(w).sum()
    normal = np.array([-direction[1], direction[0]])
    across = (cells[:, roi_cells, :] @ normal) @ np.abs(w) / np.abs(w).sum()
    curl, div = _curl_and_divergence(grids)
    curl = curl.reshape(t, -1)[:, roi_cells] @ np.abs(w) / np.abs(w).sum()
    div = div.reshape(t, -1)[:, roi_cells] @ np.abs(w) / np.abs(w).sum()

    # a frame's velocity moves the subject from the previous frame to this one, so position is the sum
    position = _highpass(np.cumsum(along), fps, drift_cutoff_hz)
    extra = {name: _highpass(np.cumsum(v), fps, drift_cutoff_hz)
             for name, v in (("sway", across), ("roll", curl), ("surge", div))}
    weights_full[roi_cells] = np.abs(w)
    return WindowSignal(position=position, extra=extra, axis=(float(direction[0]), float(direction[1])),
                        roi_weight=weights_full.reshape(rows, cols) / np.abs(w).max(),
                        energy=float(np.mean(along**2)), periodicity=periodicity(position, fps))


def along_the_path(grids: np.ndarray, ws: WindowSignal, fps: float, drift_cutoff_hz: float = 0.02,
                   roi_mask: np.ndarray | None = None) -> np.ndarray:
    """The window's integrated flow with its ROI stretched along the stroke axis (twice its length each way).

    Motion energy picks the cells where the subject moves fastest; a small subject near the ends of a swing
    moves slowly and leaves those cells, so a position integrated over the ROI alone stops short of the
    ends and catches up when the subject comes back (a pendulum bob's right extremes 0.3-0.4 s late). Each
    added cell moves with the sign of the ROI cell it continues; none is added outside `roi_mask` (a user's
    point of interest).
    """
    from scipy.ndimage import shift

    axis = np.asarray(ws.axis, float)
    along = grids.astype(np.float64) @ axis  # (T, rows, cols)
    roi = ws.roi_weight > 0
    if not roi.any():
        return ws.position
    velocity = np.diff(ws.position, prepend=ws.position[0])
    centred = along - along.mean(axis=0)
    sign = np.sign(np.einsum("trc,t->rc", centred, velocity - velocity.mean()))
    weight = np.where(roi, ws.roi_weight * np.where(sign == 0, 1.0, sign), 0.0)
    ys, xs = np.nonzero(roi)
    # twice the ROI's length along the axis, in cells: where only the fast middle of a swing was picked (a
    # quarter of the path), the ends lie further out than the ROI is long (once: green clock 67 % of the
    # reversals within a frame, twice: 89 %)
    reach = 2 * int(np.ceil(np.ptp(xs * axis[0] + ys * axis[1]))) + 1
    stretched = weight.copy()
    for step in range(1, reach + 1):
        for direction in (1, -1):
            dx, dy = np.rint(direction * step * axis).astype(int)
            shifted = shift(weight, (dy, dx), order=0, mode="constant", cval=0.0)
            fill = (stretched == 0) & (shifted != 0)
            stretched[fill] = shifted[fill]
    if roi_mask is not None:
        stretched = np.where(roi_mask > 0, stretched, weight)
    series = (along * stretched).sum(axis=(1, 2)) / np.abs(stretched).sum()
    return _highpass(np.cumsum(series), fps, drift_cutoff_hz)


def _roi_cells(roi_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) centres (x, y) of an ROI's cells, in cells, and their weights."""
    rows, cols = np.nonzero(roi_weight)
    return np.stack([cols + 0.5, rows + 0.5], axis=1), roi_weight[rows, cols]


def _centre_fraction(roi_weight: np.ndarray) -> tuple[float, float]:
    centres, weight = _roi_cells(roi_weight)
    x, y = weight @ centres / weight.sum()
    return float(x / roi_weight.shape[1]), float(y / roi_weight.shape[0])


def rival_motion(grids: np.ndarray, ws: WindowSignal, fps: float, drift_cutoff_hz: float,
                 min_energy: float) -> Rival | None:
    """The strongest rhythmic motion of the window away from the tracked one, where it is another body.

    The search runs again with the tracked ROI and two cells around it left out (cells next to an ROI often
    still carry a little of its motion). What it finds next to the ROI along the stroke is usually the same
    body (its other end, where the ROI stopped short); what keeps RIVAL_GAP_CELLS away across the stroke is a
    second body, e.g. a second person, which the subject is chosen from only by motion energy and rhythm.
    `ws` is a moving window's analysis (energy at least `min_energy`, so its ROI has cells).
    """
    from scipy.ndimage import binary_dilation

    taken = binary_dilation(ws.roi_weight > 0, iterations=2)
    other = analyse_window(grids, fps, drift_cutoff_hz, roi_mask=(~taken).astype(float))
    if other.energy < min_energy or other.periodicity < RIVAL_PERIODICITY:
        return None
    across = np.array([-ws.axis[1], ws.axis[0]])
    tracked, found = _roi_cells(ws.roi_weight)[0] @ across, _roi_cells(other.roi_weight)[0] @ across
    gap = max(found.min() - tracked.max(), tracked.min() - found.max())
    if gap < RIVAL_GAP_CELLS:
        return None
    return Rival(_centre_fraction(ws.roi_weight), _centre_fraction(other.roi_weight))
