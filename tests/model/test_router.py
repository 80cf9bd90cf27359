"""Motion types from truth positions, and routing of segments to heads."""

from __future__ import annotations

import numpy as np

from autofunscript.model.features import FEATURE_RATE
from autofunscript.model.router import HEADS, MOTION_TYPES, motion_labels, route, segment_types

T = np.arange(int(12 * FEATURE_RATE)) / FEATURE_RATE


def majority(labels: np.ndarray) -> str:
    return MOTION_TYPES[np.bincount(labels, minlength=len(MOTION_TYPES)).argmax()]


def test_labels_of_typical_signals():
    assert majority(motion_labels(50 + 45 * np.sin(2 * np.pi * T))) == "stroke"
    assert majority(motion_labels(np.full(T.size, 40.0))) == "still"
    assert majority(motion_labels(50 + 10 * np.sin(2 * np.pi * 2 * T))) == "grind"
    rng = np.random.default_rng(3)
    # full-depth reversals at random times and heights
    at = np.cumsum(rng.uniform(0.15, 1.6, 40))
    irregular = np.interp(T, at, rng.uniform(0, 100, 40))
    assert majority(motion_labels(irregular)) == "irregular"


def test_a_pause_inside_strokes_is_still():
    pos = 50 + 45 * np.sin(2 * np.pi * T)
    pos[120:270] = pos[120]
    labels = motion_labels(pos)
    assert MOTION_TYPES[labels[195]] == "still" and MOTION_TYPES[labels[20]] == "stroke"


def logits_for(types: list[tuple[str, int]]) -> np.ndarray:
    seq = np.concatenate([np.full(n, MOTION_TYPES.index(name)) for name, n in types])
    logits = np.full((len(MOTION_TYPES), seq.size), -4.0)
    logits[seq, np.arange(seq.size)] = 4.0
    return logits


def test_short_flickers_join_their_neighbour():
    types = segment_types(logits_for([("stroke", 90), ("irregular", 10), ("stroke", 90)]))
    assert (types == MOTION_TYPES.index("stroke")).all()


def test_route_picks_each_segments_head_and_holds_when_still():
    logits = logits_for([("stroke", 90), ("still", 60), ("irregular", 90)])
    heads = np.stack([np.full(240, 1.0 + k) for k in range(len(HEADS))])
    routed = route(heads, logits)
    assert np.isclose(routed.position[:80], 1.0 + HEADS.index("stroke")).all()
    assert np.isnan(routed.position[95:145]).all()
    assert np.isclose(routed.position[-70:], 1.0 + HEADS.index("irregular")).all()
