"""Summary figures of one script: how much it moves, how fast, and where it stops.

Speeds are per action-to-action segment in pos/s (|delta pos| / delta t). Time shares are shares of the
*moving time*: segments whose position changes and which are not long gaps, so scripted holds and
pauses neither dilute nor inflate the fast/slow shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript

FAST_POS_PER_S = 400.0  # strokers top out near here; faster moves get cut short
SLOW_POS_PER_S = 33.0  # a full stroke taking 3 s: barely felt
LONG_GAP_MS = 10_000
DEFAULT_MIN_SWING = 10.0


@dataclass(frozen=True)
class Segments:
    """The moves between consecutive actions."""

    duration_ms: np.ndarray
    speed: np.ndarray  # pos/s, always >= 0

    @property
    def moving(self) -> np.ndarray:
        return (self.speed > 0) & (self.duration_ms <= LONG_GAP_MS)


def segments(script: Funscript) -> Segments:
    duration_ms = np.diff(script.at).astype(float)
    speed = np.abs(np.diff(script.pos)) / duration_ms * 1000.0
    return Segments(duration_ms, speed)


def reversal_positions(script: Funscript, min_swing: float = DEFAULT_MIN_SWING) -> np.ndarray:
    """Positions of the script's reversal points, in time order."""
    return script.pos[find_reversals(script.pos, min_swing).index]


def stroke_count(reversal_pos: np.ndarray) -> int:
    """Moves between consecutive reversals: one up-down cycle is two strokes."""
    return max(int(reversal_pos.size) - 1, 0)


def median_amplitude(reversal_pos: np.ndarray) -> float:
    """Median |pos change| between consecutive reversals; 0 for a script without strokes."""
    if reversal_pos.size < 2:
        return 0.0
    return float(np.median(np.abs(np.diff(reversal_pos))))


@dataclass(frozen=True)
class ScriptStats:
    actions: int
    duration_s: float
    first_s: float
    last_s: float
    strokes: int
    moving_s: float
    mean_speed: float  # time-weighted over moving segments
    max_speed: float
    fast_segments: int  # segments above FAST_POS_PER_S
    fast_share: float  # of moving time
    slow_share: float  # of moving time, segments below SLOW_POS_PER_S
    gaps: int  # segments longer than LONG_GAP_MS
    longest_gap_s: float


def script_stats(script: Funscript, min_swing: float = DEFAULT_MIN_SWING) -> ScriptStats:
    seg = segments(script)
    moving = seg.moving
    moving_ms = float(seg.duration_ms[moving].sum())
    distance = float((seg.speed[moving] * seg.duration_ms[moving]).sum()) / 1000.0
    fast = seg.speed > FAST_POS_PER_S
    slow = moving & (seg.speed < SLOW_POS_PER_S)
    gap = seg.duration_ms > LONG_GAP_MS

    def share_of_moving(mask: np.ndarray) -> float:
        return float(seg.duration_ms[mask & moving].sum()) / moving_ms if moving_ms else 0.0

    return ScriptStats(
        actions=len(script),
        duration_s=script.duration_s,
        first_s=float(script.at[0]) / 1000.0 if len(script) else 0.0,
        last_s=float(script.at[-1]) / 1000.0 if len(script) else 0.0,
        strokes=stroke_count(reversal_positions(script, min_swing)),
        moving_s=moving_ms / 1000.0,
        mean_speed=distance / (moving_ms / 1000.0) if moving_ms else 0.0,
        max_speed=float(seg.speed.max()) if seg.speed.size else 0.0,
        fast_segments=int(fast.sum()),
        fast_share=share_of_moving(fast),
        slow_share=share_of_moving(slow),
        gaps=int(gap.sum()),
        longest_gap_s=float(seg.duration_ms[gap].max()) / 1000.0 if gap.any() else 0.0,
    )
