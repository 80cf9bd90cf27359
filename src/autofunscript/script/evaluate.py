"""Compare a predicted script with a reference script (the definitions are in README "Metrics").

The prediction is first aligned (best time shift, polarity) so that one systematic offset or an
upside-down script does not hide how well the motion itself was captured; the alignment is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript
from autofunscript.script.stats import DEFAULT_MIN_SWING, median_amplitude, script_stats, stroke_count

GRID_MS = 20
MAX_SHIFT_MS = 1000
SHIFT_PENALTY_PER_S = 0.02
MATCH_MS = 100
INVERTED_MIN_R = 0.3  # below this the sign of r says nothing about polarity
DEFAULT_FPS = 30.0
# (max time error ms, max pos error) per tier; `frame` uses one frame as its time limit
CLOSE_LIMITS = (66.0, 7.0)
NEAR_LIMITS = (133.0, 15.0)
FRAME_POS_LIMIT = 3.0


@dataclass(frozen=True)
class Tiers:
    """Reference reversals bucketed by how well the nearest same-kind predicted reversal hits them."""

    frame: int
    close: int
    near: int
    miss: int

    def to_dict(self) -> dict[str, dict[str, float]]:
        total = self.frame + self.close + self.near + self.miss
        return {name: {"count": count, "share": round(count / total, 4) if total else 0.0}
                for name, count in asdict(self).items()}


@dataclass(frozen=True)
class Evaluation:
    mae: float | None  # None: the prediction does not overlap the reference at all
    rmse: float | None
    pearson: float | None
    pearson_signed: float | None
    shift_ms: int  # positive: the prediction is late
    inverted: bool
    coverage: float  # share of the reference grid inside the aligned prediction's span
    extrema_precision: float
    extrema_recall: float
    extrema_f1: float
    reversals_ref: int
    reversals_pred: int
    reversals_matched: int
    strokes_ref: int
    strokes_pred: int
    amplitude_error: float
    tiers: Tiers
    speed_violations: int
    speed_violation_share: float

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            out[key] = round(value, 4) if isinstance(value, float) else value
        out["tiers"] = self.tiers.to_dict()
        return out


@dataclass(frozen=True)
class _Points:
    """Reversal points of one script: times (ms), positions and kinds (+1 peak, -1 trough)."""

    at: np.ndarray
    pos: np.ndarray
    kind: np.ndarray

    @classmethod
    def of(cls, script: Funscript, min_swing: float) -> _Points:
        rev = find_reversals(script.pos, min_swing)
        return cls(script.at[rev.index], script.pos[rev.index], rev.kind)

    def within(self, start_ms: float, end_ms: float) -> _Points:
        keep = (self.at >= start_ms) & (self.at <= end_ms)
        return _Points(self.at[keep], self.pos[keep], self.kind[keep])

    def __len__(self) -> int:
        return int(self.at.size)


def _played(script: Funscript) -> Funscript:
    """The part a player plays: from 0 s on. A script read with a day of negative times (a wrapped timestamp)
    would otherwise stretch the scoring grid over that day."""
    from autofunscript.script.postprocess import cut_at_zero

    if not len(script) or script.at[0] >= 0:
        return script
    if script.at[-1] < 0:
        return script.copy_with(script.at[:0], script.pos[:0])
    return script.copy_with(*cut_at_zero(script.at, script.pos))


def evaluate(pred: Funscript, ref: Funscript, min_swing: float = DEFAULT_MIN_SWING,
             fps: float = DEFAULT_FPS) -> Evaluation:
    """Score `pred` against `ref` over the reference's span from 0 s on (times before 0 are never played)."""
    pred, ref = _played(pred), _played(ref)
    grid = np.arange(ref.at[0], ref.at[-1] + 1, GRID_MS, dtype=float) if len(ref) else np.zeros(0)
    ref_on_grid = ref.sample(grid)
    shift_ms, r = _best_shift(grid, ref_on_grid, pred)
    inverted = r is not None and r < 0 and abs(r) > INVERTED_MIN_R
    aligned = Funscript(at=pred.at - shift_ms, pos=100 - pred.pos if inverted else pred.pos)

    covered = _inside_span(grid, aligned)
    error = aligned.sample(grid[covered]) - ref_on_grid[covered]
    mae = float(np.abs(error).mean()) if error.size else None
    rmse = float(np.sqrt((error**2).mean())) if error.size else None

    ref_points = _Points.of(ref, min_swing)
    pred_points = _Points.of(aligned, min_swing)
    if len(ref):
        # outside the reference's span there is nothing to be right or wrong about
        pred_points = pred_points.within(ref.at[0] - MATCH_MS, ref.at[-1] + MATCH_MS)
    matched = _match_count(ref_points, pred_points, MATCH_MS)
    precision = _ratio(matched, len(pred_points), len(ref_points))
    recall = _ratio(matched, len(ref_points), len(pred_points))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    speed = script_stats(pred)
    return Evaluation(
        mae=mae,
        rmse=rmse,
        pearson=abs(r) if r is not None else None,
        pearson_signed=r,
        shift_ms=shift_ms,
        inverted=inverted,
        coverage=float(covered.mean()) if grid.size else 0.0,
        extrema_precision=precision,
        extrema_recall=recall,
        extrema_f1=f1,
        reversals_ref=len(ref_points),
        reversals_pred=len(pred_points),
        reversals_matched=matched,
        strokes_ref=stroke_count(ref_points.pos),
        strokes_pred=stroke_count(pred_points.pos),
        amplitude_error=median_amplitude(pred_points.pos) - median_amplitude(ref_points.pos),
        tiers=_tiers(ref_points, pred_points, 1000.0 / fps),
        speed_violations=speed.fast_segments,
        speed_violation_share=speed.fast_share,
    )


def _inside_span(times: np.ndarray, script: Funscript) -> np.ndarray:
    if not len(script):
        return np.zeros(times.shape, bool)
    return (times >= script.at[0]) & (times <= script.at[-1])


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2:
        return None
    sx, sy = x.std(), y.std()
    if sx < 1e-9 or sy < 1e-9:
        return 0.0  # a flat signal has no linear relation to anything
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def _best_shift(grid: np.ndarray, ref_on_grid: np.ndarray, pred: Funscript) -> tuple[int, float | None]:
    """Shift s (ms, multiple of GRID_MS) maximising |r| between ref(t) and pred(t + s) where both exist.

    Each second of shift costs SHIFT_PENALTY_PER_S of |r|: on periodic motion a shift of half a period
    with flipped polarity fits almost as well as the true alignment, and the smaller shift is the
    honest reading. Returns (0, None) when no shift gives two overlapping grid points.
    """
    steps = MAX_SHIFT_MS // GRID_MS
    if not grid.size or not len(pred):
        return 0, None
    # pred sampled once on the grid extended by the largest shift both ways; a shift is then a slice
    wide = grid[0] + GRID_MS * np.arange(-steps, grid.size + steps)
    pred_wide = pred.sample(wide)
    pred_valid = _inside_span(wide, pred)
    best_shift, best_r, best_score = 0, None, 0.0
    for step in sorted(range(-steps, steps + 1), key=abs):
        window = slice(step + steps, step + steps + grid.size)
        valid = pred_valid[window]
        r = _pearson(ref_on_grid[valid], pred_wide[window][valid])
        if r is None:
            continue
        score = abs(r) - SHIFT_PENALTY_PER_S * abs(step * GRID_MS) / 1000.0
        if best_r is None or score > best_score:
            best_shift, best_r, best_score = step * GRID_MS, r, score
    return best_shift, best_r


def _ratio(matched: int, count: int, other_count: int) -> float:
    if count:
        return matched / count
    return 1.0 if other_count == 0 else 0.0


def _match_count(ref: _Points, pred: _Points, tolerance_ms: float) -> int:
    """One-to-one matches of same-kind reversals within the tolerance, closest pairs first."""
    low = np.searchsorted(pred.at, ref.at - tolerance_ms, side="left")
    high = np.searchsorted(pred.at, ref.at + tolerance_ms, side="right")
    pairs = [(abs(int(pred.at[j]) - int(ref.at[i])), i, j)
             for i in range(len(ref)) for j in range(low[i], high[i]) if pred.kind[j] == ref.kind[i]]
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
    return len(used_ref)


def _tiers(ref: _Points, pred: _Points, frame_ms: float) -> Tiers:
    dt = np.full(len(ref), np.inf)
    dp = np.full(len(ref), np.inf)
    for kind in (-1, 1):
        ref_idx = np.flatnonzero(ref.kind == kind)
        pred_idx = np.flatnonzero(pred.kind == kind)
        if not ref_idx.size or not pred_idx.size:
            continue
        pred_at = pred.at[pred_idx]
        after = np.clip(np.searchsorted(pred_at, ref.at[ref_idx]), 0, pred_idx.size - 1)
        before = np.clip(after - 1, 0, pred_idx.size - 1)
        dist_after = np.abs(pred_at[after] - ref.at[ref_idx])
        dist_before = np.abs(pred_at[before] - ref.at[ref_idx])
        nearest = pred_idx[np.where(dist_before <= dist_after, before, after)]
        dt[ref_idx] = np.minimum(dist_before, dist_after)
        dp[ref_idx] = np.abs(pred.pos[nearest] - ref.pos[ref_idx])
    frame = (dt <= frame_ms) & (dp < FRAME_POS_LIMIT)
    close = ~frame & (dt < CLOSE_LIMITS[0]) & (dp < CLOSE_LIMITS[1])
    near = ~frame & ~close & (dt < NEAR_LIMITS[0]) & (dp < NEAR_LIMITS[1])
    miss = ~(frame | close | near)
    return Tiers(int(frame.sum()), int(close.sum()), int(near.sum()), int(miss.sum()))
