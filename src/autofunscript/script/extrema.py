"""Reversal points: the peaks and troughs of a position signal that matter to a stroker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reversals:
    """Indices into the signal of alternating peaks (+1) and troughs (-1)."""

    index: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)


def find_reversals(values: np.ndarray, min_swing: float) -> Reversals:
    """Alternating extrema where the signal turns by at least `min_swing` (a zig-zag filter).

    A peak is kept only once the signal has fallen `min_swing` below it (and a trough once it has
    risen as much), so jitter smaller than the swing never creates a reversal. On a flat top the
    first sample is taken: that is when the motion arrived. The first and last samples count as
    reversals when the signal moves at least `min_swing` away from them.
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return Reversals(np.zeros(0, np.int64), np.zeros(0, np.int8))
    index: list[int] = []
    kind: list[int] = []
    hi = lo = 0  # running extremes since the last confirmed reversal
    trend = 0  # +1 rising (looking for a peak), -1 falling, 0 unknown yet
    for i in range(1, n):
        v = x[i]
        if trend >= 0 and v > x[hi]:
            hi = i
        if trend <= 0 and v < x[lo]:
            lo = i
        if trend == 0:
            if x[hi] - x[lo] >= min_swing:
                # the earlier of the two extremes is the starting reversal
                if lo < hi:
                    index.append(lo), kind.append(-1)
                    trend, lo = 1, hi
                else:
                    index.append(hi), kind.append(1)
                    trend, hi = -1, lo
        elif trend > 0 and x[hi] - v >= min_swing:
            index.append(hi), kind.append(1)
            trend, lo = -1, i
        elif trend < 0 and v - x[lo] >= min_swing:
            index.append(lo), kind.append(-1)
            trend, hi = 1, i
    if trend > 0:
        index.append(hi), kind.append(1)
    elif trend < 0:
        index.append(lo), kind.append(-1)
    return Reversals(np.asarray(index, np.int64), np.asarray(kind, np.int8))


def turn_centres(times: np.ndarray, values: np.ndarray, reversals: np.ndarray, depth: float,
                 min_samples: int) -> dict[int, float]:
    """Time of each turn's middle: halfway between where the signal crosses `depth` (a share of the smaller
    neighbouring swing) below the reversal on either side.

    A slow, round turn (a pendulum at the end of its swing) is nearly flat for several samples, so its
    highest sample is decided by noise; the crossings just below it lie on the steeper flanks and are
    measured well. Turns closer than `min_samples` to a neighbouring reversal have too few samples to
    say more than their extreme does and are left out.
    """
    x = np.asarray(values, dtype=float)
    ends = np.concatenate([[0], reversals, [x.size - 1]])
    out: dict[int, float] = {}
    for before, i, after in zip(ends[:-2], reversals, ends[2:]):
        if i - before < min_samples or after - i < min_samples:
            continue
        if x[i] >= max(x[before], x[after]):
            y = x
        elif x[i] <= min(x[before], x[after]):
            y = -x  # a trough, turned into a peak
        else:
            continue
        swing = min(y[i] - y[before : i + 1].min(), y[i] - y[i : after + 1].min())
        if swing <= 0:
            continue
        level = y[i] - depth * swing
        left = before + int(np.flatnonzero(y[before:i] <= level)[-1])  # last sample below, then above
        right = i + int(np.flatnonzero(y[i : after + 1] <= level)[0])  # first sample below again
        out[int(i)] = (_crossing(times, y, left, left + 1, level) + _crossing(times, y, right - 1, right, level)) / 2
    return out


def _crossing(times: np.ndarray, y: np.ndarray, a: int, b: int, level: float) -> float:
    """Time between samples a and b where the straight line between them passes `level`."""
    share = (y[a] - level) / (y[a] - y[b]) if y[a] != y[b] else 0.0
    return float(times[a] + share * (times[b] - times[a]))
