import math

import cv2
import numpy as np
import pytest

from autofunscript.motion import signal as signal_module
from autofunscript.motion.flow import FlowTracker, MotionSample, remove_camera_leakage
from autofunscript.motion.segments import CutDetector, Windower
from autofunscript.motion.signal import (WindowSignal, _rapid_rhythm, along_the_path, analyse_window, periodicity,
                                         rival_motion, stroke_period)

W, H, FPS = 320, 180, 30.0


def textured(shape, seed):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random(shape) * 255).astype(np.uint8), (0, 0), 1.2)


def render(truth, angle_deg=0.0, shake=0.0, distractor=False, seed=0):
    """Frames of a textured block stroking along an axis tilted by angle_deg from vertical."""
    bg = textured((H + 40, W + 40), seed)
    block = textured((70, 40), seed + 1)
    other = 255 - textured((30, 30), seed + 2)
    phases = np.random.default_rng(seed + 3).uniform(0, 2 * np.pi, 2)
    a = np.deg2rad(angle_deg)
    for i, p in enumerate(truth):
        # hand-held wobble: smooth, so it persists from frame to frame like a subject's motion
        ox, oy = shake * np.sin(2 * np.pi * np.array([2.3, 3.1]) * i / FPS + phases)
        ox, oy = int(round(ox)) + 20, int(round(oy)) + 20
        img = bg[oy : oy + H, ox : ox + W].copy()
        d = (p - 50) * 0.6
        x, y = int(round(140 + d * np.sin(a))), int(round(55 - d * np.cos(a)))
        img[y : y + 70, x : x + 40] = block
        if distractor:
            dx = int(40 + 25 * np.sin(i / FPS * 2 * np.pi * 0.37) + 10 * np.sin(i * 0.05))
            img[110:140, dx : dx + 30] = other
        yield img


def track(frames):
    tracker = FlowTracker()
    return np.stack([tracker.update(f, i / FPS).grid for i, f in enumerate(frames)])


def stroke(seconds=12.0, freq=0.8):
    t = np.arange(0, seconds, 1 / FPS)
    return 50 + 45 * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("angle", [0.0, 25.0, -25.0])
def test_position_follows_tilted_stroke_with_up_positive(angle):
    truth = stroke()
    ws = analyse_window(track(render(truth, angle)), FPS)
    assert np.corrcoef(ws.position, truth)[0, 1] > 0.98
    assert ws.axis[1] < 0  # the axis points up on screen
    assert abs(np.degrees(np.arctan2(ws.axis[0], -ws.axis[1])) - angle) < 8
    assert ws.periodicity > 0.8


def test_camera_shake_is_removed():
    truth = stroke()
    uncompensated = FlowTracker(compensate_camera=False)
    frames = list(render(truth, shake=4.0))  # violent: 4 px swings several times a second
    raw = np.stack([uncompensated.update(f, i / FPS).grid for i, f in enumerate(frames)])
    assert np.corrcoef(analyse_window(raw, FPS).position, truth)[0, 1] < 0.5
    ws = analyse_window(track(frames), FPS)
    assert np.corrcoef(ws.position, truth)[0, 1] > 0.93


def test_slow_subject_wins_over_stronger_flow_noise():
    # flow on a thin line under a shaky camera: strong, but new every frame; the subject strokes slowly
    # (one stroke in 2 s) and moves less per frame than the noise
    rng = np.random.default_rng(0)
    t, rows, cols = 450, 18, 32
    truth = np.sin(2 * np.pi * 0.5 * np.arange(t) / FPS)
    grids = rng.normal(0, 0.05, (t, rows, cols, 2))
    grids[:, 8:13, 10, 1] -= np.gradient(truth)[:, None] * 10  # up on screen (-y) raises the position
    # the noise: one residue shared by the line's cells (it follows the shake) plus a little of their own;
    # about twice the subject's mean speed
    grids[:, 3:6, 16:22, :] += rng.normal(0, 1.0, (t, 1, 1, 2)) + rng.normal(0, 0.2, (t, 3, 6, 2))
    ws = analyse_window(grids.astype(np.float32), FPS)
    rows_in, cols_in = np.nonzero(ws.roi_weight > 0.2)
    assert set(cols_in) == {10} and rows_in.min() >= 8 and rows_in.max() <= 12
    assert np.corrcoef(ws.position, truth)[0, 1] > 0.98


def test_strokes_too_fast_for_the_frame_rate_are_not_taken_for_noise():
    # 15 reversals a second at 30 fps: the velocity flips sign every other frame, like noise; a faint
    # steady motion elsewhere (residue of a slow pan) must not take over
    rng = np.random.default_rng(1)
    t, rows, cols = 450, 18, 32
    truth = np.sin(2 * np.pi * 7.5 * np.arange(t) / FPS + 0.3)
    grids = rng.normal(0, 0.05, (t, rows, cols, 2))
    grids[:, 8:13, 10, 1] -= np.gradient(truth)[:, None] * 3
    grids[:, 15:18, 0:3, 0] += 0.4 * np.sin(2 * np.pi * 0.7 * np.arange(t) / FPS)[:, None, None]
    ws = analyse_window(grids.astype(np.float32), FPS)
    _, cols_in = np.nonzero(ws.roi_weight > 0.2)
    assert set(cols_in) == {10}


def test_strokes_too_fast_for_the_frame_rate_win_over_a_slower_distractor():
    # the same 15 reversals a second, beside a distractor swinging steadily once in 1.7 s with a fifth of
    # the strokes' energy: its motion carries on between frames and the strokes' does not, but the
    # strokes repeat every 4 frames, which flow noise never does
    rng = np.random.default_rng(3)
    t, rows, cols = 450, 18, 32
    seconds = np.arange(t) / FPS
    truth = np.sin(2 * np.pi * 7.5 * seconds + 0.3)
    grids = rng.normal(0, 0.05, (t, rows, cols, 2))
    grids[:, 8:13, 10, 1] -= np.gradient(truth)[:, None] * 3
    grids[:, 6:10, 22:25, 1] += 0.9 * np.sin(2 * np.pi * seconds / 1.7)[:, None, None]
    ws = analyse_window(grids.astype(np.float32), FPS)
    _, cols_in = np.nonzero(ws.roi_weight > 0.2)
    assert set(cols_in) == {10}


def _two_motions(second_cols: slice, second_rows: slice = slice(6, 10), second_gain: float = 0.5) -> np.ndarray:
    """Cell velocities: strokes up and down in rows 4-9 of columns 8-10, and a second vertical rhythm elsewhere."""
    seconds = np.arange(450) / FPS
    grids = np.random.default_rng(4).normal(0, 0.03, (seconds.size, 18, 32, 2))
    grids[:, 4:10, 8:11, 1] += 1.2 * np.sin(2 * np.pi * 0.9 * seconds)[:, None, None]
    grids[:, second_rows, second_cols, 1] += second_gain * np.sin(2 * np.pi * 0.55 * seconds + 1.0)[:, None, None]
    return grids.astype(np.float32)


def test_a_second_body_beside_the_tracked_one_is_reported_with_both_centres():
    grids = _two_motions(slice(22, 25))
    ws = analyse_window(grids, FPS)
    rival = rival_motion(grids, ws, FPS, 0.02, min_energy=0.02)
    assert rival is not None
    assert rival.tracked_xy == pytest.approx((9.5 / 32, 7 / 18), abs=0.04)
    assert rival.other_xy == pytest.approx((23.5 / 32, 8 / 18), abs=0.04)


def test_a_motion_without_rhythm_apart_from_the_tracked_one_is_no_rival(monkeypatch):
    # a patch that jitters in place (flicker, compression noise on texture): moves every frame, goes nowhere
    grids = _two_motions(slice(22, 25), second_gain=0.0)
    jitter = np.diff(np.random.default_rng(8).normal(0, 0.5, grids.shape[0] + 1))
    grids[:, 6:10, 22:25, 1] += jitter[:, None, None].astype(np.float32)
    ws = analyse_window(grids, FPS)
    assert rival_motion(grids, ws, FPS, 0.02, min_energy=0.02) is None
    monkeypatch.setattr(signal_module, "RIVAL_PERIODICITY", 0.0)  # what the rhythm test alone keeps out
    assert rival_motion(grids, ws, FPS, 0.02, min_energy=0.02) is not None


@pytest.mark.parametrize("second_cols, second_rows, gain", [
    (slice(8, 11), slice(11, 15), 0.5),  # along the stroke, right below it: the same body's other end
    (slice(12, 14), slice(6, 10), 0.5),  # beside it, but closer than a body apart
    (slice(22, 25), slice(6, 10), 0.0),  # nothing else moves
], ids=["other end", "close beside", "alone"])
def test_no_rival_where_the_other_motion_is_the_same_body_or_none(second_cols, second_rows, gain):
    grids = _two_motions(second_cols, second_rows, gain)
    ws = analyse_window(grids, FPS)
    assert rival_motion(grids, ws, FPS, 0.02, min_energy=0.02) is None


def test_a_rhythm_of_three_or_four_frames_is_strokes_not_noise():
    frames = np.arange(450)
    assert _rapid_rhythm(np.sin(2 * np.pi * frames / 4 + 0.3))  # 7.5 Hz at 30 fps
    assert _rapid_rhythm(np.sin(2 * np.pi * frames / 3 + 0.3))  # 10 Hz
    assert not _rapid_rhythm(np.random.default_rng(6).normal(size=frames.size))
    # a slow swing with every frame shown twice: its moves vanish every other frame, so they repeat at 2 and
    # 4 frames without reversing in between
    swing = np.sin(2 * np.pi * (frames // 2) / 50)
    doubled = np.diff(swing, prepend=swing[0])
    assert not _rapid_rhythm(doubled)


def test_periodic_subject_wins_over_irregular_distractor():
    truth = stroke()
    ws = analyse_window(track(render(truth, distractor=True)), FPS)
    assert np.corrcoef(ws.position, truth)[0, 1] > 0.95


def test_still_scene_has_no_energy():
    frames = [textured((H, W), 5)] * 60
    ws = analyse_window(track(frames), FPS)
    assert ws.energy < 0.01


def test_periodicity_separates_sine_from_noise():
    t = np.arange(0, 10, 1 / FPS)
    assert periodicity(np.sin(2 * np.pi * t), FPS) > 0.9
    assert periodicity(np.random.default_rng(1).normal(size=t.size), FPS) < 0.3


def test_stroke_period_reads_fast_shallow_strokes_under_a_larger_drift():
    t = np.arange(0, 20, 1 / FPS)
    rng = np.random.default_rng(2)
    # 7.4 Hz strokes (15 reversals a second) a twelfth the size of the integration's wander
    fast = 5 * np.sin(2 * np.pi * 7.4 * t) + 60 * np.sin(2 * np.pi * 0.12 * t) + rng.normal(0, 0.5, t.size)
    assert abs(stroke_period(fast, FPS) - 1 / 7.4) <= 1 / FPS
    assert abs(stroke_period(np.sin(2 * np.pi * 1.2 * t), FPS) - 1 / 1.2) <= 1 / FPS
    assert stroke_period(rng.normal(size=t.size), FPS) is None
    assert stroke_period(rng.normal(size=t.size).cumsum(), FPS) is None  # a random walk has no period


def test_cut_detector_fires_on_scene_change_only():
    tracker = FlowTracker()
    detector = CutDetector()
    scene_a, scene_b = list(render(stroke(2.0), seed=0)), list(render(stroke(2.0), seed=10))
    fired = [detector.is_cut(tracker.update(f, i / FPS).cut_score) for i, f in enumerate(scene_a + scene_b)]
    assert [i for i, cut in enumerate(fired) if cut] == [len(scene_a)]


def test_a_picture_shown_again_is_left_out_and_the_next_one_carries_its_motion():
    frames = list(render(stroke(1.0)))
    rng = np.random.default_rng(7)

    def stored_again(image):  # an encoder's copy: a grey level or two off here and there
        return (image.astype(np.int16) + rng.integers(-2, 3, image.shape)).clip(0, 255).astype(np.uint8)

    # once, twice, three times, four times (a subject at rest), and twice at the very end
    shown = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4]
    images = [frames[k] if i == 0 or k != shown[i - 1] else stored_again(frames[k]) for i, k in enumerate(shown)]
    tracker = FlowTracker()
    samples = [tracker.update(image, i / FPS) for i, image in enumerate(images)]
    assert [s.repeat for s in samples] == [False, False, True, False, True, True, False, True, True, False, False,
                                           True]
    plain = FlowTracker()
    direct = [plain.update(frames[k], k / FPS).grid for k in range(5)]
    # the picture after a repeat is measured from the last new picture, not from the copy
    np.testing.assert_allclose(samples[3].grid, direct[2], atol=1e-4)
    np.testing.assert_allclose(samples[6].grid, direct[3], atol=1e-4)
    assert samples[3].repeats_confirmed and samples[6].repeats_confirmed and not samples[9].repeats_confirmed
    windower = Windower(max_s=math.inf)
    for sample in samples:
        assert not list(windower.push(sample))
    window = next(windower.flush())
    # the repeats of pictures shown twice and three times go; a picture shown four times is a subject at rest, and
    # the last frame stays so that the signal reaches the end
    assert window.times_s.tolist() == [s.time_s for i, s in enumerate(samples) if i not in (2, 4, 5)]


def test_a_new_frame_size_after_a_repeat_starts_afresh():
    frames = list(render(stroke(0.2)))
    tracker = FlowTracker()
    assert [tracker.update(f, i / FPS).repeat for i, f in enumerate(frames[:2] + frames[1:2])] == [False, False, True]
    small = [cv2.resize(f, (W // 2, H // 2)) for f in frames[2:5]]
    samples = [tracker.update(f, (3 + i) / FPS) for i, f in enumerate(small)]
    assert not np.any(samples[0].grid) and samples[0].grid.shape[:2] == (H // 20, W // 20)
    assert not any(s.repeat or s.repeats_confirmed for s in samples)


def test_a_turn_between_two_frames_at_one_height_is_kept_as_a_still_frame():
    # 15 reversals a second at 30 fps: the frames either side of each turn show the subject at one height, the
    # second as unchanged as a repeated picture, but the motion reverses across it
    heights = [10, 40, 70, 70, 40, 10, 10, 40, 70, 70, 40, 10]
    frames = list(render(np.array(heights, float)))
    tracker, windower = FlowTracker(), Windower(max_s=math.inf)
    samples = [tracker.update(f, i / FPS) for i, f in enumerate(frames)]
    assert [i for i, s in enumerate(samples) if s.repeat] == [3, 6, 9]
    for sample in samples:
        list(windower.push(sample))
    assert next(windower.flush()).times_s.size == len(frames)


def test_under_a_moving_camera_an_unchanged_frame_is_a_repeat_even_where_the_motion_turns():
    # a pan that turns around just as a picture is stored twice: the motion reverses across the repeat, which with a
    # still camera would mean a subject standing still for a frame; but a still camera cannot have made this picture
    scene = textured((H, W + 40), 5)
    pan = [0, 3, 6, 9, 9, 6, 3]
    tracker = FlowTracker()
    samples = [tracker.update(np.ascontiguousarray(scene[:, x : x + W]), i / FPS) for i, x in enumerate(pan)]
    assert [s.repeat for s in samples] == [False, False, False, False, True, False, False]
    assert samples[5].repeats_confirmed


def test_windower_splits_at_cuts_and_overlaps_long_scenes():
    windower = Windower(max_s=4.0, overlap_s=1.0)
    tracker = FlowTracker()
    frames = list(render(stroke(6.0), seed=0)) + list(render(stroke(2.0), seed=10))
    windows = []
    for i, f in enumerate(frames):
        windows += list(windower.push(tracker.update(f, i / FPS)))
    windows += list(windower.flush())
    assert windower.cut_times == [pytest.approx(6.0, abs=0.05)]
    assert [w.starts_scene for w in windows] == [True, False, True]
    assert windows[1].overlap == pytest.approx(FPS * 1.0, abs=2)
    assert windows[2].times_s[0] == pytest.approx(6.0, abs=0.05)


def test_full_tails_put_earlier_frames_of_the_scene_in_front_of_a_short_last_window():
    windower = Windower(max_s=4.0, overlap_s=1.0, keep_images=True, full_tails=True)
    cut_at = 270  # scene A: 9 s, so windows 0-4 s, 3-7 s and a 6-9 s tail; then a 2 s scene B
    windows = []
    for i in range(cut_at + 60):
        image = np.full((2, 2), i % 256, np.uint8)  # each frame's image tells which frame it is
        sample = MotionSample(i / FPS, np.zeros((1, 1, 2), np.float32), 5.0 if i == cut_at else 0.0)
        windows += list(windower.push(sample, image))
    windows += list(windower.flush())
    assert [w.starts_scene for w in windows] == [True, False, False, True]
    tail, scene_b = windows[2], windows[3]
    # the tail's own frames start where the previous window's overlap does; context fills it up to 4 s
    own_start = tail.times_s[tail.context]
    assert own_start == pytest.approx(windows[1].times_s[-1] - 1.0, abs=1.5 / FPS)
    assert tail.times_s[-1] - tail.times_s[0] == pytest.approx(4.0, abs=1.5 / FPS)
    assert tail.context == pytest.approx(FPS * (4.0 - (9.0 - own_start)), abs=2)
    assert np.array_equal(tail.images[:, 0, 0], np.round(tail.times_s * FPS).astype(int) % 256)
    assert tail.cameras.shape == (tail.times_s.size, 2, 3)
    # nothing from scene A is context for scene B, and full windows have none
    assert scene_b.context == 0 and scene_b.times_s[0] == pytest.approx(cut_at / FPS)
    assert windows[0].context == windows[1].context == 0


def test_camera_leakage_is_removed_where_it_explains_the_motion_only():
    rng = np.random.default_rng(0)
    t = 600
    shake = np.stack([np.sin(np.arange(t) * 0.9), np.cos(np.arange(t) * 1.7)], axis=1) * 2  # px/frame
    cameras = np.tile(np.eye(2, 3), (t, 1, 1))
    cameras[:, :, 2] = shake
    grids = rng.normal(0, 0.02, (t, 2, 2, 2)).astype(np.float32)
    grids[:, 0, 0] += (0.4 * shake).astype(np.float32)  # an edge whose flow residue follows the camera
    subject = np.sin(np.arange(t) * 2 * np.pi / 30) * 3
    grids[:, 1, 1, 1] += subject.astype(np.float32)  # a subject moving on its own ...
    grids[:, 0, 1, 1] += (subject + 0.5 * shake[:, 1]).astype(np.float32)  # ... even partly in step with the camera
    clean = remove_camera_leakage(grids, cameras)
    assert np.abs(clean[:, 0, 0]).max() < 0.15
    assert np.allclose(clean[:, 1, 1], grids[:, 1, 1], atol=1e-6)
    assert np.allclose(clean[:, 0, 1, 1], grids[:, 0, 1, 1], atol=1e-6)
    still = np.tile(np.eye(2, 3), (t, 1, 1))
    assert remove_camera_leakage(grids, still) is grids  # no camera motion: nothing to remove


@pytest.mark.parametrize("roi_cells", [(4, 17), (13, 19)], ids=["middle and left", "fast middle only"])
def test_a_position_along_the_path_reaches_the_ends_the_roi_does_not_cover(roi_cells):
    # a small bob swings across cells 4-27 of a row; the ROI holds only some cells of its path, as motion
    # energy picks them, so the ROI's own integral stalls at the extremes it does not cover
    fps, t = 30.0, np.arange(300) / 30.0
    x = 15.5 + 11.5 * np.sin(2 * np.pi * t / 2.0)
    grids = np.zeros((t.size, 5, 32, 2), np.float32)
    grids[np.arange(1, t.size), 2, np.floor(x[1:]).astype(int), 0] = np.diff(x)
    roi = np.zeros((5, 32))
    roi[2, slice(*roi_cells)] = 1.0
    velocity = grids[:, 2, :, 0] @ roi[2]
    ws = WindowSignal(np.cumsum(velocity), {}, (1.0, 0.0), roi, 1.0, 1.0)
    turns = np.diff(np.sign(np.diff(x)))
    extremes = [(p0, 1) for p0 in np.flatnonzero(turns < 0) + 1] + [(p0, -1) for p0 in np.flatnonzero(turns > 0) + 1]

    def lateness(position):
        return max(abs(int(np.argmax(kind * position[p0 - 15 : p0 + 16])) - 15) for p0, kind in extremes if p0 >= 15)

    assert lateness(ws.position) > 5  # the cut-off integral tops out when the bob leaves the ROI
    assert lateness(along_the_path(grids, ws, fps)) <= 1


def test_the_path_is_not_stretched_outside_the_users_point_of_interest():
    fps, t = 30.0, np.arange(120) / 30.0
    grids = np.zeros((t.size, 5, 32, 2), np.float32)
    grids[:, 2, 10, 0] = np.sin(2 * np.pi * t)  # motion only beyond the ROI (cells 4-7), along its axis
    roi = np.zeros((5, 32))
    roi[2, 4:8] = 1.0
    ws = WindowSignal(np.zeros(t.size), {}, (1.0, 0.0), roi, 1.0, 1.0)
    assert np.ptp(along_the_path(grids, ws, fps)) > 0  # stretched, it reaches the moving cell
    poi = np.zeros((5, 32))
    poi[:, :10] = 1.0
    assert np.ptp(along_the_path(grids, ws, fps, roi_mask=poi)) == 0


def test_a_roi_over_the_whole_frame_on_a_diagonal_axis_is_stretched_without_error():
    # the reach along a diagonal exceeds the grid's height: shifts past the edge move nothing in
    rng = np.random.default_rng(0)
    grids = rng.normal(size=(60, 18, 32, 2)).astype(np.float32)
    ws = WindowSignal(np.cumsum(grids[:, :, :, 0].mean(axis=(1, 2))), {}, (0.7071, -0.7071), np.ones((18, 32)),
                      1.0, 1.0)
    assert np.isfinite(along_the_path(grids, ws, 30.0)).all()
