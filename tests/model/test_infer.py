"""Inference: chunking and stitching, and the shipped model end to end on a stroking clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autofunscript.model.features import FEATURE_RATE, WindowFeatures, uniform_grid
from autofunscript.model.infer import _stitch, chunk_starts, grid_to_frames


@pytest.mark.parametrize("n", [1, 200, 300, 301, 1000, 1799])
def test_chunks_cover_every_step(n: int):
    starts = chunk_starts(n, 300)
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + 300] = True
    assert covered.all() and starts[0] == 0 and all(s + 300 <= max(n, 300) for s in starts)


def test_stitching_undoes_per_chunk_normalisation():
    n, length = 1000, 300
    t = np.arange(n) / FEATURE_RATE
    signal = np.sin(2 * np.pi * 0.8 * t) + 0.3 * np.sin(2 * np.pi * 0.07 * t)
    starts = chunk_starts(n, length)
    rng = np.random.default_rng(0)
    positions, logits = [], []
    for s in starts:
        part = signal[s : s + length]
        z = (part - part.mean()) / part.std()  # what the model predicts: positions normalised per chunk
        positions.append(np.stack([z * rng.uniform(0.8, 1.2)] * 4))
        logits.append(np.zeros((4, length)))
    out = _stitch(starts, np.array(positions), np.array(logits), n)
    assert out.general.shape == (n,) and out.heads.shape == (3, n) and out.logits.shape == (4, n)
    assert np.corrcoef(out.general, signal)[0, 1] > 0.995


def test_grid_values_reach_frames_with_holds_kept():
    frames = np.arange(0, 4.0, 1 / 25)
    grid = uniform_grid(frames)
    values = grid.copy()
    values[30:60] = np.nan  # a still segment: 1 s to 2 s
    features = WindowFeatures(frames, grid, np.zeros((grid.size, 1), np.float32), classic=None)
    out = grid_to_frames(features, values)
    still = (frames > 1.02) & (frames < 1.98)
    assert np.isnan(out[still]).all()
    moving = (frames < 0.98) | (frames > 2.02)
    assert np.allclose(out[moving], frames[moving], atol=1e-6)


@pytest.mark.slow
def test_shipped_model_loads_offline_and_follows_strokes(stroking_clip: Path, monkeypatch):
    import socket

    from autofunscript.model.infer import MODEL_ENV, WEIGHTS_DIR, ModelRunner
    from autofunscript.pipeline import GenerateOptions, generate
    from autofunscript.script.evaluate import evaluate
    from autofunscript.script.funscript import read_funscript

    def no_network(*args, **kwargs):
        raise AssertionError("the model must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    runner = ModelRunner()
    assert runner.path.parent == WEIGHTS_DIR and runner.path.stat().st_size < 20 * 1024 * 1024
    assert runner.card.parameters > 0 and runner.card.config.context_steps > 0
    result = generate(stroking_clip, GenerateOptions(method="model"))
    assert "method: model" in result.script.metadata["notes"]
    score = evaluate(result.script, read_funscript(stroking_clip.with_suffix(".funscript")))
    assert score.pearson > 0.9, score


def test_flow_estimate_is_averaged_in_only_where_it_agrees_with_the_model():
    from autofunscript.model.infer import FLOW_SHARE, blend_with_flow

    fps = 30.0
    t = np.arange(0, 20, 1 / fps)
    model = 50 + 40 * np.sin(2 * np.pi * t)
    # first half: the flow generator sees the same strokes, a little deeper; second half: a distractor
    flow = np.where(t < 10, 50 + 48 * np.sin(2 * np.pi * t), 50 + 40 * np.sin(2 * np.pi * 1.7 * t + 1))
    blended = blend_with_flow(model, flow, fps)
    agree, disagree = (t > 2) & (t < 8), t > 12
    expected = FLOW_SHARE * flow + (1 - FLOW_SHARE) * model
    assert np.abs(blended[agree] - expected[agree]).max() < 0.5
    assert np.abs(blended[disagree] - model[disagree]).max() < 0.5


def test_model_path_blends_the_flow_generators_estimate(stroking_clip: Path):
    from autofunscript.model.infer import ModelRunner, track_with_model
    from autofunscript.pipeline import GenerateOptions, track_motion

    options = GenerateOptions(method="model")
    flow, *_ = track_motion(stroking_clip, options)
    blended, *_ = track_with_model(stroking_clip, options, runner=ModelRunner())
    alone, *_ = track_with_model(stroking_clip, options, runner=ModelRunner(flow_blend=False))
    assert np.allclose(flow.times_s, blended.times_s)

    def r(a, b):
        return np.corrcoef(a, b)[0, 1]

    # both follow the same strokes, so the flow generator's estimate is taken in, and the result moves toward it
    assert r(alone.position, flow.position) > 0.8
    assert r(blended.position, flow.position) > r(alone.position, flow.position) + 0.02
    assert r(blended.position, alone.position) > 0.9
