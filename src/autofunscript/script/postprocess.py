"""Post-processing shared by `generate` and `tune`: from a dense position signal (or an existing script)
to a device-friendly action list: smoothing, reversal picking, simplification, range, speed limit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# SciPy is imported inside the functions that use it, to keep its 0.9 s import off the start of a run:
# see pipeline.preload_scipy.

from autofunscript.errors import AutofunscriptError
from autofunscript.script.extrema import Reversals, find_reversals, turn_centres

DENSE_STEP_MS = 10.0
KNEE = 0.05  # share of the range at each end where local_normalise bends onto the limit (see soft_clip)
# Timing round turns from a dense per-frame signal (see turn_centres): crossings this far below the turn,
# as a share of the smaller swing; only turns with this many frames to either neighbouring reversal; moved
# at most this many frames of the picture (see _picture_interval). Measured over the accuracy suite, with
# _flat_lead_ins: reversals within one frame of the pendulums' sub-frame reference times 67 -> 92 % (pair),
# 89 -> 100 % (green clock), 14 -> 71 % (pocket watch); synthetic presets within 0.005 of before (a longer
# shift moves a hold's reversal into the hold). Lead-ins reached from the centred turn, not its sample:
# pair 92 -> 96 %, the presets within 0.003.
TURN_DEPTH = 0.07
TURN_MIN_FRAMES = 8
TURN_MAX_SHIFT_FRAMES = 2
REPEATED_FRAMES_SHARE = 0.4  # see _picture_interval
STROKE_MIN_SWING = 0.2  # share of the locally fitted range that makes a stroke for stroke_normalise


@dataclass(frozen=True)
class PostSettings:
    """Knobs of the post-processing; every field maps to a CLI option of generate/tune."""

    range: tuple[int, int] = (0, 100)
    max_speed: float = 400.0  # pos/s; 0 disables the limit
    smooth_ms: float = 0.0  # Gaussian sigma; 0 keeps the signal as it is
    simplify: float = 2.0  # max deviation (pos units) of dropped points from the kept line
    min_swing: float = 8.0  # smallest reversal kept, in pos units after range normalisation
    min_interval_ms: float = 60.0  # reversal pairs closer than this are dropped (faster than any device)
    invert: bool = False
    offset_ms: int = 0


@dataclass
class PostReport:
    """What post-processing changed, for the user and for the script's notes."""

    speed_limited_segments: int = 0
    max_speed_before: float = 0.0
    notes: list[str] = field(default_factory=list)


def resample(at_ms: np.ndarray, pos: np.ndarray, step_ms: float = DENSE_STEP_MS) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of a script onto a uniform grid (for smoothing an existing action list)."""
    if at_ms.size < 2:
        return at_ms.astype(float), pos.astype(float)
    grid = np.arange(float(at_ms[0]), float(at_ms[-1]) + step_ms / 2, step_ms)
    return grid, np.interp(grid, at_ms.astype(float), pos.astype(float))


def smooth(times_ms: np.ndarray, pos: np.ndarray, sigma_ms: float) -> np.ndarray:
    """Gaussian smoothing with sigma in ms, on a signal sampled at (near) uniform times."""
    if sigma_ms <= 0 or pos.size < 3:
        return pos.astype(float)
    from scipy.ndimage import gaussian_filter1d

    step = float(np.median(np.diff(times_ms)))
    return gaussian_filter1d(pos.astype(float), sigma=max(sigma_ms / step, 1e-3), mode="nearest")


def robust_normalise(pos: np.ndarray, lo: float, hi: float, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """Map the robust extent of a signal onto [lo, hi] so strokes use the full range (soft-clipped)."""
    if pos.size == 0:
        return pos.astype(float)
    p_lo, p_hi = np.percentile(pos, percentiles)
    if p_hi - p_lo < 1e-9:
        return np.full(pos.shape, (lo + hi) / 2.0)
    return lo + soft_clip((pos - p_lo) / (p_hi - p_lo)) * (hi - lo)


def local_normalise(pos: np.ndarray, lo: float, hi: float, horizon: int, percentile: float = 95.0,
                    min_share: float = 0.5) -> np.ndarray:
    """Map the signal onto [lo, hi] against its running extent over about `horizon` samples (soft-clipped).

    A stroke's depth in pixels changes with zoom and the subject's distance, and a tracker's level
    wanders, so one range for a whole window leaves strokes shallow or pushed to one end. Here the top
    and bottom are running percentiles (over 2 x horizon, so a lone excursion does not set them),
    smoothed over `horizon`; the local extent never drops below `min_share` of the whole signal's, so
    a pause or a run of short strokes is not blown up to full strokes.
    """
    pos = np.asarray(pos, float)
    if pos.size < 10 or horizon < 2:
        return robust_normalise(pos, lo, hi)
    from scipy.ndimage import percentile_filter, uniform_filter1d

    size = 2 * horizon + 1
    top = uniform_filter1d(percentile_filter(pos, percentile, size=size, mode="nearest"), horizon, mode="nearest")
    bottom = uniform_filter1d(percentile_filter(pos, 100 - percentile, size=size, mode="nearest"), horizon,
                              mode="nearest")
    whole_lo, whole_hi = np.percentile(pos, (2.0, 98.0))
    extent = np.maximum(top - bottom, min_share * (whole_hi - whole_lo))
    if not (extent > 1e-9).all():
        return np.full(pos.shape, (lo + hi) / 2.0)
    centre = (top + bottom) / 2
    return lo + soft_clip((pos - centre + extent / 2) / extent) * (hi - lo)


def stroke_normalise(pos: np.ndarray, lo: float, hi: float, horizon: int, min_swing: float = STROKE_MIN_SWING,
                     min_share: float = 0.5) -> np.ndarray:
    """Map each stroke onto [lo, hi] between the levels of its own reversals (soft-clipped).

    For a signal whose level wanders (integrated flow): the top is drawn through the peaks, the bottom
    through the troughs, so a level that wanders from one stroke to the next is followed stroke by stroke
    and a hold keeps the level of the reversal it holds (a running window would pull a long hold to the
    middle). Reversals are found on `local_normalise`'s output over `horizon` (a few strokes), where a
    swing of `min_swing` of the range is a stroke whatever the drift around it. A stroke shallower than
    `min_share` of the median stroke keeps its shallowness instead of being stretched to full depth.
    """
    pos = np.asarray(pos, float)
    reversals = find_reversals(local_normalise(pos, 0.0, 1.0, horizon), min_swing)
    index = _own_extremes(pos, reversals)
    peaks = index[reversals.kind > 0]
    troughs = index[reversals.kind < 0]
    if peaks.size < 2 or troughs.size < 2:
        return local_normalise(pos, lo, hi, horizon)
    frames = np.arange(pos.size)
    top = np.interp(frames, peaks, pos[peaks])
    bottom = np.interp(frames, troughs, pos[troughs])
    depth = top - bottom
    extent = np.maximum(depth, min_share * float(np.median(depth)))
    if not (extent > 1e-9).all():
        return local_normalise(pos, lo, hi, horizon)
    centre = (top + bottom) / 2
    return lo + soft_clip((pos - centre + extent / 2) / extent) * (hi - lo)


def _own_extremes(pos: np.ndarray, reversals: Reversals) -> np.ndarray:
    """Each reversal moved to the signal's own extreme between the midpoints to its neighbours.

    Reversals found on a fitted copy sit where the copy turns, which a moving level can shift by a few
    frames from where the signal itself turns; an envelope drawn through such a point passes below the
    true tip, and the tip is clipped flat (pocket watch F1 1.00 -> 0.89).
    """
    ends = np.concatenate([[0], reversals.index, [pos.size - 1]])
    index = reversals.index.copy()
    for k, kind in enumerate(reversals.kind):
        start, stop = (ends[k] + ends[k + 1]) // 2, (ends[k + 1] + ends[k + 2]) // 2 + 1
        part = pos[start:stop]
        index[k] = start + int(np.argmax(part) if kind > 0 else np.argmin(part))
    return index


def soft_clip(u: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Bound `u` to [0, 1]: linear inside [knee, 1 - knee], bending smoothly onto the limits beyond.

    A hard clip would flatten every tip that overshoots the fitted range, and a reversal on a flat top is
    read at its first sample (when the motion arrived), i.e. early; compressed instead, the tip stays
    the signal's highest point, at its true time.
    """
    u = np.asarray(u, float)
    top = 1 - knee * np.exp(-np.maximum(u - (1 - knee), 0) / knee)
    bottom = knee * np.exp(-np.maximum(knee - u, 0) / knee)
    return np.where(u > 1 - knee, top, np.where(u < knee, bottom, u))


def rescale_range(pos: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of 0..100 onto lo..hi (tune's --range on an existing script)."""
    return lo + pos.astype(float) * (hi - lo) / 100.0


def _rdp_keep(t: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on (time, pos): mask of points to keep; deviation measured in pos units."""
    keep = np.zeros(t.size, bool)
    keep[0] = keep[-1] = True
    stack = [(0, t.size - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        span_t = t[b] - t[a]
        line = x[a] + (x[b] - x[a]) * (t[a + 1 : b] - t[a]) / (span_t if span_t else 1.0)
        dev = np.abs(x[a + 1 : b] - line)
        i = int(np.argmax(dev))
        if dev[i] > eps:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return keep


def drop_quick_wiggles(times_ms: np.ndarray, reversals: np.ndarray, min_interval_ms: float) -> np.ndarray:
    """Remove peak/trough pairs closer than `min_interval_ms`: removing both keeps them alternating."""
    idx = list(reversals.tolist())
    i = 1
    while i < len(idx):
        if times_ms[idx[i]] - times_ms[idx[i - 1]] < min_interval_ms and 0 < i < len(idx) - 1:
            del idx[i - 1 : i + 1]
            i = max(i - 1, 1)
        else:
            i += 1
    return np.asarray(idx, np.int64)


def monotone_between(pos: np.ndarray, anchors: list[int]) -> np.ndarray:
    """`pos` with each stretch between consecutive anchors (sorted indices) replaced by its closest
    one-way fit (isotonic regression, rising or falling as its ends do).

    Between two reversals a signal from video still wiggles by less than the minimum swing (a tracker's
    pixel steps stretched to the range, mostly on holds). As actions those are back-and-forth moves of a
    few positions that a device plays as buzzing; the fit turns them into flats. A stretch between a trough
    and the next peak found by find_reversals never leaves the range between them (it would have confirmed
    a turn), so the reversals keep their values; the clip's first and last samples, which are no turns, can
    move by less than the minimum swing.
    """
    from scipy.optimize import isotonic_regression

    out = np.asarray(pos, float).copy()
    for a, b in zip(anchors[:-1], anchors[1:]):
        if b - a >= 2:
            out[a : b + 1] = isotonic_regression(out[a : b + 1], increasing=bool(out[b] >= out[a])).x
    return out


def to_actions(times_ms: np.ndarray, pos: np.ndarray, settings: PostSettings,
               centre_turns: bool = False, monotone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Dense signal -> actions: every reversal is kept, the shape between them only where it bends.

    `centre_turns` (a per-frame signal from video) times round turns by their middle rather than their
    highest sample, within a couple of frames of it; an existing script's timing is never moved.
    `monotone` flattens wiggles between reversals (see monotone_between); an existing script keeps its
    deliberate small moves (vibration patterns).
    """
    if pos.size < 2:  # nothing to simplify (and a single sample has no segment for the line search)
        return np.rint(times_ms).astype(np.int64), np.clip(np.rint(pos), 0, 100).astype(np.int64)
    found = find_reversals(pos, settings.min_swing).index
    reversals = drop_quick_wiggles(times_ms, found, settings.min_interval_ms)
    anchors = sorted({0, *reversals.tolist(), pos.size - 1})
    # turns too quick to keep as reversals still keep their shape (strokes the frame rate barely resolves);
    # only moves under the minimum swing are flattened
    shaped = monotone_between(pos, sorted({0, *found.tolist(), pos.size - 1})) if monotone else pos
    keep = np.zeros(pos.size, bool)
    for a, b in zip(anchors[:-1], anchors[1:]):
        seg = _rdp_keep(times_ms[a : b + 1], shaped[a : b + 1], settings.simplify)
        keep[a : b + 1] |= seg
    kept = np.flatnonzero(keep)
    times = times_ms[kept].astype(float)
    frame = _picture_interval(times_ms, pos) if centre_turns and pos.size > 1 else None
    if frame:
        centres = turn_centres(times_ms, pos, reversals, TURN_DEPTH, TURN_MIN_FRAMES)
        for n in np.flatnonzero(np.isin(kept, list(centres))):
            # stays within reach of its own frame and half a frame clear of the kept points beside it
            lo = max(times[n] - TURN_MAX_SHIFT_FRAMES * frame, times[n - 1] + frame / 2 if n else -np.inf)
            hi = min(times[n] + TURN_MAX_SHIFT_FRAMES * frame,
                     times[n + 1] - frame / 2 if n + 1 < times.size else np.inf)
            times[n] = min(max(centres[int(kept[n])], lo), hi)
    at = np.rint(times).astype(np.int64)
    p = np.clip(np.rint(shaped[kept]), 0, 100).astype(np.int64)
    unique = np.append(np.diff(at) > 0, True)
    if frame:
        unique &= ~_flat_lead_ins(times, kept, p, reversals, frame)
    return at[unique], p[unique]


def _picture_interval(times_ms: np.ndarray, pos: np.ndarray) -> float:
    """How often the picture changes, in ms: one frame, or more where the video repeats its frames (a 25 fps
    picture stored at 50 fps), so that the limits on moving a turn count pictures, not repeats.

    A repeated frame barely moves the signal next to the frames around it. Measured share of moves under a
    fifth of the larger neighbouring move: 0-0.27 over the accuracy suite, 0.49 on the pocket watch read frame by
    frame (every other frame a repeat). generate leaves out the repeats its flow tracker recognises, so here
    this counts those it cannot (copies an encoder changed too much to tell).
    """
    frame = float(np.median(np.diff(times_ms)))
    moves = np.abs(np.diff(pos))
    if moves.size < 3:
        return frame
    larger_neighbour = np.maximum(moves[:-2], moves[2:])
    repeats = float(np.mean(moves[1:-1] < 0.2 * larger_neighbour))
    return frame / (1.0 - repeats) if repeats > REPEATED_FRAMES_SHARE else frame


def _flat_lead_ins(times: np.ndarray, kept: np.ndarray, p: np.ndarray, reversals: np.ndarray,
                   frame: float) -> np.ndarray:
    """Kept points just before a reversal (within the reach of turn centring) that round to its position.

    A reversal reads at the first action of a flat top, so such a point would put the turn up to two frames
    early again; without it the line from the point before runs straight to the reversal. Further back a
    flat run is a hold, which keeps its start. `times` are the kept points' times with the turns centred: the
    reach counts from where the turn ends up, since centring can move it up to the point (the pair of pendulums:
    a flat trough's sample 133 ms after a kept point, its centre 74 ms).
    """
    reach = (TURN_MAX_SHIFT_FRAMES + 0.5) * frame  # half a frame of slack for timestamp rounding
    lead_in = np.zeros(kept.size, bool)
    for n in np.flatnonzero(np.isin(kept, reversals)):
        m = n - 1
        while m > 0 and p[m] == p[n] and times[n] - times[m] <= reach:
            lead_in[m] = True
            m -= 1
    return lead_in


def speeds(at_ms: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Absolute speed of each action-to-action segment in pos/s."""
    if at_ms.size < 2:
        return np.zeros(0)
    dt = np.diff(at_ms).astype(float) / 1000.0
    return np.abs(np.diff(pos).astype(float)) / np.maximum(dt, 1e-3)


CENTRE_S = 2.0  # too-fast strokes shrink toward their centre line averaged over this long either side


def _stroke_ends(pos: np.ndarray) -> np.ndarray:
    """Indices of the first point, every turn of direction (flat runs count once) and the last point."""
    step = np.sign(np.diff(pos))
    moving = np.flatnonzero(step)
    if moving.size == 0:
        return np.array([0, pos.size - 1])
    turns = moving[1:][step[moving[1:]] != step[moving[:-1]]]  # a turn happens where the next move starts
    return np.unique(np.concatenate([[0], turns, [pos.size - 1]]))


def _shrink_fast_strokes(t_s: np.ndarray, pos: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Scale each too-fast stroke down about the script's slow centre line until it fits in its time.

    A stroke's gain comes from its depth against the distance its duration allows (a single steep
    frame of tracking noise must not flatten it); the centre is the time-average of stroke midpoints over
    CENTRE_S either side, because a wandering centre would outweigh strokes shrunk to a fifth. Gains
    (the smaller of the two strokes meeting at a turn) and centres are set at each turn and interpolated
    in time between turns, so shape and timing stay; only the depth goes.
    """
    ends = _stroke_ends(pos)
    if ends.size < 2:
        return pos
    depth = np.abs(np.diff(pos[ends]))
    gain = np.minimum(1.0, np.add.reduceat(allowed, ends[:-1]) / np.maximum(depth, 1e-9))
    mid = (pos[ends[:-1]] + pos[ends[1:]]) / 2.0
    turn_t = t_s[ends]
    stroke_t = (turn_t[:-1] + turn_t[1:]) / 2.0
    weighted_mid = np.r_[0.0, np.cumsum(mid * np.diff(turn_t))]
    elapsed = np.r_[0.0, np.cumsum(np.diff(turn_t))]
    lo = np.minimum(np.searchsorted(stroke_t, turn_t - CENTRE_S), np.maximum(np.arange(ends.size) - 1, 0))
    hi = np.maximum(np.searchsorted(stroke_t, turn_t + CENTRE_S, "right"), np.minimum(np.arange(ends.size) + 1,
                                                                                       mid.size))
    span = elapsed[hi] - elapsed[lo]
    centre_at_turn = np.where(span > 0, (weighted_mid[hi] - weighted_mid[lo]) / np.maximum(span, 1e-9),
                              pos[ends])
    gain_at_turn = np.minimum(np.r_[gain[0], gain], np.r_[gain, gain[-1]])
    g = np.interp(t_s, turn_t, gain_at_turn)
    c = np.interp(t_s, turn_t, centre_at_turn)
    return c + g * (pos - c)


def limit_speed(at_ms: np.ndarray, pos: np.ndarray, max_speed: float) -> tuple[np.ndarray, int]:
    """Make every segment at most `max_speed` fast, shrinking strokes about their centre.

    Too-fast strokes are first scaled down evenly (see _shrink_fast_strokes); what is left (where gains
    change between strokes) is pulled in pairwise, and a final forward pass guarantees the bound.
    """
    p = pos.astype(float).copy()
    if max_speed <= 0 or p.size < 2:
        return pos.astype(np.int64), 0
    dt = np.maximum(np.diff(at_ms).astype(float) / 1000.0, 1e-3)
    allowed = max_speed * dt
    violating = int((np.abs(np.diff(p)) > allowed + 1e-9).sum())
    for _ in range(4):  # gains change between strokes, which leaves a little; a few passes remove most
        if not (np.abs(np.diff(p)) > allowed + 1e-9).any():
            break
        p = _shrink_fast_strokes(at_ms.astype(float) / 1000.0, p, allowed)
    for _ in range(50):
        d = np.diff(p)
        excess = np.abs(d) - allowed
        if (excess <= 1e-9).all():
            break
        fix = np.where(excess > 0, np.sign(d) * excess / 2.0, 0.0)
        p[:-1] += fix
        p[1:] -= fix
    for i in range(1, p.size):
        lim = allowed[i - 1] * 0.999
        p[i] = np.clip(p[i], p[i - 1] - lim, p[i - 1] + lim)
    # rounding to ints may add up to 1 pos of speed; floor toward the previous point to stay within bound
    out = np.rint(p)
    for i in range(1, out.size):
        if abs(out[i] - out[i - 1]) > allowed[i - 1]:
            out[i] = out[i - 1] + np.sign(out[i] - out[i - 1]) * np.floor(allowed[i - 1])
    return np.clip(out, 0, 100).astype(np.int64), violating


def cut_at_zero(at_ms: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a script at 0 s: the actions before it (from a negative offset, or read with negative times) give way
    to one action at 0 with the position the script has there, as players reject negative times. At least
    one action must lie at or after 0."""
    at_zero = int(np.rint(np.interp(0, at_ms, pos)))
    later = at_ms > 0
    return np.concatenate([[0], at_ms[later]]), np.concatenate([[at_zero], pos[later]]).astype(pos.dtype)


def finish(at_ms: np.ndarray, pos: np.ndarray, settings: PostSettings) -> tuple[np.ndarray, np.ndarray, PostReport]:
    """The last steps every script gets: invert, offset, no time before 0, speed limit."""
    report = PostReport()
    pos = pos.astype(np.int64)
    if settings.invert:
        pos = 100 - pos
    at_ms = at_ms.astype(np.int64) + int(settings.offset_ms)
    if at_ms.size and at_ms[-1] < 0:
        shifted = f" with an offset of {settings.offset_ms} ms" if settings.offset_ms else ""
        last = f"{at_ms[-1]} ms" if at_ms[-1] > -1000 else f"{at_ms[-1] / 1000:.1f} s"
        raise AutofunscriptError(f"every action is before 0 s{shifted} (the last at {last}); nothing to write")
    before_zero = int(np.count_nonzero(at_ms < 0))
    if before_zero:
        at_ms, pos = cut_at_zero(at_ms, pos)
        plural = "" if before_zero == 1 else "s"
        report.notes.append(f"{before_zero} action{plural} before 0 s cut at 0 (players reject negative times)")
    v = speeds(at_ms, pos)
    report.max_speed_before = float(v.max()) if v.size else 0.0
    if settings.max_speed > 0:
        pos, report.speed_limited_segments = limit_speed(at_ms, pos, settings.max_speed)
        if report.speed_limited_segments:
            report.notes.append(f"{report.speed_limited_segments} segments slowed to {settings.max_speed:g} pos/s "
                                f"(fastest was {report.max_speed_before:.0f})")
    return at_ms.astype(np.int64), pos, report


def tune(at_ms: np.ndarray, pos: np.ndarray, settings: PostSettings,
         rescale: bool = True) -> tuple[np.ndarray, np.ndarray, PostReport]:
    """Re-post-process an existing action list: smoothing, simplification, range, then `finish`.

    Without smoothing the original actions are simplified directly, so a hand-made script keeps its
    exact timing; with smoothing it is resampled, smoothed and its reversals picked again.
    """
    if at_ms.size < 2:
        return finish(at_ms, pos, settings)
    if settings.smooth_ms > 0:
        times, dense = resample(at_ms, pos)
        dense = smooth(times, dense, settings.smooth_ms)
        at_ms, pos = to_actions(times, dense, settings)
    elif settings.simplify > 0:
        at_ms, pos = to_actions(at_ms.astype(float), pos.astype(float), settings)
    if rescale:
        pos = np.rint(rescale_range(pos, *settings.range)).astype(np.int64)
    return finish(at_ms, pos, settings)
