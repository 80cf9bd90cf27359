"""Model features: pooling, resampling, chunk normalisation, windows from a real tracking pass."""

from __future__ import annotations

import numpy as np
import pytest

from autofunscript.model.features import (
    EXTRA_MODEL_INPUTS, FEATURE_RATE, N_FLOW, POOL, FeatureSpec, ImageChannels, ImageRowBuffer, model_input,
    pool_grids, resample_rows, target_positions, uniform_grid, window_features)
from autofunscript.motion.segments import Window


def test_pooling_averages_cells_by_area():
    grids = np.zeros((2, 18, 32, 2))
    grids[0, :9, :, 1] = -3.0  # top half moves up
    pooled = pool_grids(grids)
    assert pooled.shape == (2, *POOL, 2)
    assert np.allclose(pooled[0, :3, :, 1], -3.0) and np.allclose(pooled[0, 3:, :, 1], 0.0)
    # a grid that does not divide evenly (a square VR eye) still averages to the same mean
    square = np.random.default_rng(0).normal(size=(1, 32, 32, 2))
    assert np.isclose(pool_grids(square).mean(), square.mean())


def test_resampling_to_the_feature_rate_is_linear():
    times = np.arange(0, 2.0, 1 / 25)  # 25 fps
    values = np.stack([times * 10, np.ones_like(times)], axis=1)
    grid = uniform_grid(times)
    assert np.isclose(np.diff(grid), 1 / FEATURE_RATE).all()
    assert times[-1] <= grid[-1] < times[-1] + 1 / FEATURE_RATE
    out = resample_rows(times, values, grid)
    inside = grid <= times[-1]
    assert np.allclose(out[inside, 0], grid[inside] * 10) and np.allclose(out[~inside, 0], times[-1] * 10)
    assert np.allclose(out[:, 1], 1.0)


def test_model_input_scales_motion_to_unit_rms_and_marks_padding():
    spec = FeatureSpec()
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, spec.n_features)).astype(np.float32) * 7.0
    x = model_input(values, 60, spec, hint=75.0)
    assert x.shape == (spec.n_model_inputs, 60)
    assert np.isclose(np.sqrt(np.mean(x[:N_FLOW, :40] ** 2)), 1.0, atol=1e-4)
    valid = x[spec.n_features]
    assert valid[:40].all() and not valid[40:].any() and not x[:, 40:].any()
    hint, mask = x[spec.n_features + 1], x[spec.n_features + 2]
    assert hint[0] == pytest.approx(0.5) and mask[0] == 1 and not mask[1:].any()
    # a still chunk is not blown up to unit scale
    still = model_input(np.full((30, spec.n_features), 1e-4, np.float32), 30, spec)
    assert np.abs(still[:N_FLOW]).max() < 0.01


def test_target_is_centred_and_a_still_target_stays_flat():
    t = np.arange(300) / FEATURE_RATE
    moving = target_positions(50 + 50 * np.sin(2 * np.pi * t))
    assert abs(moving.mean()) < 1e-5 and np.isclose(moving.std(), 1.0, atol=1e-3)
    assert np.abs(target_positions(50 + 0.5 * np.sin(2 * np.pi * t))).max() < 0.2


def test_window_features_follow_a_stroking_patch():
    fps, n = 30.0, 150
    times = np.arange(n) / fps
    velocity = np.cos(2 * np.pi * times)  # px per frame, vertical
    grids = np.zeros((n, 18, 32, 2), np.float32)
    grids[:, 6:12, 12:20, 1] = -velocity[:, None, None]  # screen-up is negative y
    spec = FeatureSpec(("flow", "patch"))
    rows = np.random.default_rng(2).normal(size=(n, POOL[0] * POOL[1])).astype(np.float32)
    features = window_features(Window(times, grids, 0, True), spec, rows)
    assert features.values.shape == (uniform_grid(times).size, spec.n_features)
    roi_position = features.values[:, spec.channel_names().index("roi_position")]
    truth = np.sin(2 * np.pi * features.grid_times_s)  # integral of the velocity
    assert abs(np.corrcoef(roi_position, truth)[0, 1]) > 0.95
    assert spec.n_model_inputs == spec.n_features + len(EXTRA_MODEL_INPUTS)


def test_image_channels_and_their_buffer():
    spec = FeatureSpec(("flow", "edges", "mask", "patch"))
    channels = ImageChannels(spec)
    gray = np.zeros((180, 320), np.uint8)
    gray[60:120, 100:200] = 200
    first = channels(gray)
    assert first.shape == (3 * POOL[0] * POOL[1],) and first[:48].max() > 0  # edges of the box
    assert not first[48:96].any()  # no motion mask without a previous frame
    moved = channels(np.roll(gray, 20, axis=0))
    assert moved[48:96].max() > 0
    buffer = ImageRowBuffer(keep_s=1.0)
    for i in range(100):
        buffer.push(i / 10, np.full(2, i, np.float32))
    assert buffer.take(np.array([5.0, 5.1]))[:, 0].tolist() == [50, 51]
    assert buffer.take(np.array([9.9]))[0, 0] == 99
    with pytest.raises(KeyError):
        buffer.take(np.array([1.0]))  # forgotten: older than the next window can need


def test_spec_rejects_unknown_inputs():
    with pytest.raises(ValueError):
        FeatureSpec(("edges",))
    with pytest.raises(ValueError):
        FeatureSpec(("flow", "depth"))


def test_augmentations_are_their_own_inverse_and_mirror_the_flow():
    from autofunscript.model.features import augment

    spec = FeatureSpec(("flow", "edges"))
    names = spec.channel_names()
    values = np.random.default_rng(4).normal(size=(50, spec.n_features)).astype(np.float32)
    for mirror, reverse in ((True, False), (False, True), (True, True)):
        once = augment(values, spec, mirror, reverse)
        assert not np.allclose(once, values)
        assert np.allclose(augment(once, spec, mirror, reverse), values)
    mirrored = augment(values, spec, True, False)
    assert np.array_equal(mirrored[:, names.index("flow_x_2_0")], -values[:, names.index("flow_x_2_7")])
    assert np.array_equal(mirrored[:, names.index("flow_y_2_0")], values[:, names.index("flow_y_2_7")])
    assert np.array_equal(mirrored[:, names.index("edges_1_1")], values[:, names.index("edges_1_6")])
    assert np.array_equal(mirrored[:, names.index("roi_position")], values[:, names.index("roi_position")])
    backwards = augment(values, spec, False, True)
    assert np.array_equal(backwards[0, names.index("roi_velocity")], -values[-1, names.index("roi_velocity")])
    assert np.array_equal(backwards[0, names.index("roi_position")], values[-1, names.index("roi_position")])
