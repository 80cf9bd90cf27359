"""The keyframe band tracker on a smooth, fast subject, with tilt and camera shake."""

import cv2
import numpy as np
import pytest

from autofunscript.motion.flow import FlowTracker
from autofunscript.motion.keyframe import camera_chain, choose_axis, jump_share, track_band
from autofunscript.motion.signal import analyse_window

W, H, FPS = 320, 180, 30.0


def smooth_blob(length=60, width=26):
    """A shaded capsule with almost no texture, like skin at low resolution."""
    y, x = np.mgrid[0:length, 0:width].astype(np.float32)
    u = (y - length / 2) / (length / 2)
    v = (x - width / 2) / (width / 2)
    inside = (u**2) ** 2 + v**2 < 1
    shade = 150 + 60 * np.cos(v * 1.3)
    return np.where(inside, shade, np.nan).astype(np.float32)


def render(truth, angle_deg=0.0, shake=0.0, seed=0):
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur((rng.random((H + 20, W + 20)) * 255).astype(np.uint8), (0, 0), 2.0)
    blob = smooth_blob()
    a = np.deg2rad(angle_deg)
    frames, cams = [], []
    for p in truth:
        ox, oy = (rng.integers(-int(shake), int(shake) + 1, 2) if shake else (0, 0))
        img = bg[10 + oy : 10 + oy + H, 10 + ox : 10 + ox + W].astype(np.float32)
        d = (p - 50) * 0.8
        x, y = int(round(150 + d * np.sin(a))), int(round(60 - d * np.cos(a)))
        patch = img[y : y + blob.shape[0], x : x + blob.shape[1]]
        img[y : y + blob.shape[0], x : x + blob.shape[1]] = np.where(np.isnan(blob), patch, blob)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def stroke(seconds=8.0, freq=1.5):
    t = np.arange(0, seconds, 1 / FPS)
    return 50 + 45 * np.sin(2 * np.pi * freq * t)


def analyse(frames):
    tracker = FlowTracker()
    samples = [tracker.update(f, i / FPS) for i, f in enumerate(frames)]
    grids = np.stack([s.grid for s in samples])
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    cameras = np.stack([identity if s.camera is None else s.camera for s in samples])
    return analyse_window(grids, FPS), np.stack(frames), cameras


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_keyframe_tracker_follows_a_smooth_fast_subject(angle):
    truth = stroke()
    ws, images, cameras = analyse(render(truth, angle))
    axis = choose_axis(images, cameras, ws.roi_weight, ws.axis, 10, key=0)
    position = track_band(images, cameras, ws.roi_weight, axis, 10)
    assert np.corrcoef(position, truth)[0, 1] > 0.98
    assert axis[1] < 0  # up on screen raises the position
    assert abs(np.degrees(np.arctan2(axis[0], -axis[1])) - angle) <= 15  # candidates are 15 degrees apart
    # displacement is measured in pixels: 0.8 px per position unit here
    assert np.ptp(position) == pytest.approx(0.8 * np.ptp(truth), rel=0.1)


def test_keyframe_tracker_registers_camera_shake():
    truth = stroke()
    ws, images, cameras = analyse(render(truth, shake=2))
    position = track_band(images, cameras, ws.roi_weight, (0.0, -1.0), 10, rekey_every=60)
    assert np.corrcoef(position, truth)[0, 1] > 0.95


def test_camera_chain_composes_forward_and_inverts_backward():
    shift = np.array([[1.0, 0, 2.0], [0, 1.0, -1.0]])
    chain = camera_chain(np.stack([shift] * 4), key=1)
    assert np.allclose(chain[3][:2, 2], [4.0, -2.0])
    assert np.allclose(chain[0][:2, 2], [-2.0, 1.0])
    assert np.allclose(chain[1], np.eye(3))


def test_a_stretch_whose_keyframe_is_spoilt_is_measured_from_another():
    # a flash frame lands on a keyframe: matched against it, every frame of that stretch is lost
    truth = stroke()
    frames = render(truth)
    ws, images, cameras = analyse(frames)
    images = images.copy()
    images[120] = 255
    position = track_band(images, cameras, ws.roi_weight, (0.0, -1.0), 10, rekey_every=60)
    ok = np.arange(truth.size) != 120
    assert np.corrcoef(position[ok], truth[ok])[0, 1] > 0.98
    assert jump_share(position) < 0.01
