"""Motion types: labels derived from a truth script (for training the classifier) and routing of each
segment of a prediction to the head specialised in its type.

The types are defined on the position signal itself, so any labelled clip yields classifier labels:
  still      - the position barely moves (also what a scene with no subject or a cut looks like)
  stroke     - regular full strokes: steady reversal rhythm and swing
  grind      - sustained small-amplitude motion (grinding, rocking, small rotation)
  irregular  - moving, but neither regular nor small
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autofunscript.model.features import FEATURE_RATE
from autofunscript.script.extrema import find_reversals

MOTION_TYPES = ("stroke", "grind", "still", "irregular")
HEADS = ("stroke", "grind", "irregular")  # still has no head: its segments hold the last position
STILL = MOTION_TYPES.index("still")

LABEL_HALF_WINDOW_S = 2.5
STILL_RANGE = 8.0  # pos units (p95 - p5) below which a span counts as still
SMALL_RANGE = 35.0
REGULAR_CV = 0.35  # coefficient of variation of half-periods and swings for "regular"
SMOOTH_CLASS_S = 1.0
MIN_SEGMENT_S = 1.0
HEAD_FADE_S = 0.3


def motion_labels(positions: np.ndarray, rate: float = FEATURE_RATE) -> np.ndarray:
    """Motion type index per step of a truth position signal (0-100) sampled at `rate`."""
    n = positions.size
    half = int(round(LABEL_HALF_WINDOW_S * rate))
    rev = find_reversals(positions, STILL_RANGE)
    rev_idx = rev.index
    labels = np.empty(n, np.int64)
    for i in range(n):
        lo, hi = max(0, i - half), min(n, i + half + 1)
        span = positions[lo:hi]
        extent = float(np.percentile(span, 95) - np.percentile(span, 5))
        if extent < STILL_RANGE:
            labels[i] = STILL
            continue
        if extent < SMALL_RANGE:
            labels[i] = MOTION_TYPES.index("grind")
            continue
        inside = rev_idx[(rev_idx >= lo) & (rev_idx < hi)]
        regular = False
        if inside.size >= 4:
            gaps = np.diff(inside).astype(float)
            swings = np.abs(np.diff(positions[inside]))
            regular = gaps.std() / gaps.mean() < REGULAR_CV and swings.std() / swings.mean() < REGULAR_CV
        labels[i] = MOTION_TYPES.index("stroke" if regular else "irregular")
    return labels


@dataclass(frozen=True)
class Routed:
    """Per-step output of routing: the chosen position (NaN where still) and the motion type."""

    position: np.ndarray
    motion_type: np.ndarray  # index into MOTION_TYPES


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of constant runs."""
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [values.size]])
    return [(int(s), int(e), int(values[s])) for s, e in zip(starts, ends)]


def segment_types(logits: np.ndarray, rate: float = FEATURE_RATE) -> np.ndarray:
    """Motion type per step from class logits (C, T): smoothed, then runs shorter than MIN_SEGMENT_S
    join the run before them (or after, at the start) so a segment never flickers between heads."""
    from scipy.ndimage import uniform_filter1d  # see pipeline.preload_scipy

    z = logits - logits.max(axis=0, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=0, keepdims=True)
    probs = uniform_filter1d(probs, size=max(1, int(SMOOTH_CLASS_S * rate)), axis=1, mode="nearest")
    types = probs.argmax(axis=0)
    min_len = int(MIN_SEGMENT_S * rate)
    changed = True
    while changed:
        changed = False
        runs = _runs(types)
        if len(runs) < 2:
            break
        for k, (s, e, _) in enumerate(runs):
            if e - s < min_len:
                types[s:e] = runs[k - 1][2] if k > 0 else runs[k + 1][2]
                changed = True
                break
    return types


def route(heads: np.ndarray, logits: np.ndarray, rate: float = FEATURE_RATE) -> Routed:
    """Combine the expert heads (len(HEADS), T) by the motion type of each segment.

    Neighbouring segments cross-fade over HEAD_FADE_S so changing heads does not jump; still segments
    are NaN, which the pipeline turns into holding the last position.
    """
    from scipy.ndimage import uniform_filter1d  # see pipeline.preload_scipy

    types = segment_types(logits, rate)
    weights = np.zeros_like(heads, dtype=np.float64)
    for k, name in enumerate(HEADS):
        weights[k] = types == MOTION_TYPES.index(name)
    still = types == STILL
    # still steps borrow the stroke head's weight only to keep the fade defined; they end up NaN
    weights[0, still] = 1.0
    weights = uniform_filter1d(weights, size=max(1, int(HEAD_FADE_S * rate)), axis=1, mode="nearest")
    position = (weights * heads).sum(axis=0) / np.maximum(weights.sum(axis=0), 1e-9)
    position[still] = np.nan
    return Routed(position, types)
