"""Synthetic clips, checked by decoding the real mp4 files they produce."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.synth import PRESETS, iter_frames, plan_from_script, render_clip

SMALL = (192, 108)


def reference() -> Funscript:
    """Strokes of changing speed and depth, with a pause, over 30 s."""
    at, pos, t, up = [0], [50], 0, True
    rng = np.random.default_rng(7)
    while t < 30_000:
        t += int(rng.uniform(250, 900))
        at.append(t)
        pos.append(int(rng.uniform(70, 100)) if up else int(rng.uniform(0, 30)))
        up = not up
    at.append(t + 1500)  # a hold
    pos.append(pos[-1])
    return Funscript(at=np.array(at), pos=np.array(pos))


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, av.video.stream.VideoStream]:
    """All frames (RGB) and their presentation times in seconds, as a player sees them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
        info = (stream.average_rate, float(stream.duration * stream.time_base), stream.width, stream.height)
    return frames, np.array(times), info


def test_duration_fps_and_frame_count(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    result = render_clip(reference(), out, size=SMALL, fps=25.0, start_s=3.0, duration_s=2.0)
    frames, times, (rate, duration, width, height) = decode(out)
    assert len(frames) == result.frame_count == 50
    assert rate == 25 and (width, height) == SMALL
    assert duration == pytest.approx(2.0, abs=1e-3)
    np.testing.assert_allclose(times, np.arange(50) / 25.0, atol=1e-6)
    # truth: one action per frame, at the frame's time, the reference position from --start on
    truth = read_funscript(tmp_path / "clip.funscript")
    np.testing.assert_array_equal(truth.at, np.rint(times * 1000))
    expected = reference().sample((3.0 + times) * 1000)
    np.testing.assert_array_equal(truth.pos, np.rint(expected))
    np.testing.assert_allclose(result.positions, expected, atol=1e-9)


def test_easy_subject_moves_as_the_truth_says(tmp_path: Path) -> None:
    """Track the subject in the decoded frames by difference to a subject-free render of the same clip."""
    out = tmp_path / "easy.mp4"
    result = render_clip(reference(), out, preset="easy", seed=3, size=(320, 180), duration_s=4.0)
    frames, _, _ = decode(out)
    empty = iter_frames(result.plan, with_subject=False)
    centroids = []
    for frame, background in zip(frames, empty):
        diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).sum(axis=2)
        # the subject is the one big blob; compression leaves only specks along strong edges
        count, labels, stats, centres = cv2.connectedComponentsWithStats((diff > 45).astype(np.uint8))
        biggest = 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])
        centroids.append(centres[biggest])
    centroids = np.array(centroids)
    # up on screen = higher position, whatever the tilt (it stays within 30 degrees of vertical)
    assert np.corrcoef(-centroids[:, 1], result.truth.pos)[0, 1] >= 0.99
    # the reported per-frame centre is where the subject really is
    assert np.median(np.hypot(*(centroids - result.centres).T)) < 4.0
    assert np.ptp(result.centres[:, 1]) > 0.2 * 180  # a stroke of a good share of the frame height
    # the reported box holds every pixel the subject changes (exact renders, before compression)
    for i, (frame, background) in enumerate(zip(iter_frames(result.plan), iter_frames(result.plan, False))):
        x, y, w, h = cv2.boundingRect((np.abs(frame.astype(np.int16) - background).max(axis=2) > 2).astype(np.uint8))
        x0, y0, x1, y1 = result.boxes[i]
        assert x0 - 1 <= x and y0 - 1 <= y and x + w <= x1 + 1 and y + h <= y1 + 1


def test_same_seed_same_bytes_other_seed_other_video(tmp_path: Path) -> None:
    script = reference()
    paths = [tmp_path / name for name in ("a.mp4", "b.mp4", "c.mp4")]
    for path, seed in zip(paths, (5, 5, 6)):
        render_clip(script, path, preset="hard", seed=seed, size=(128, 72), duration_s=1.0)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c
    frames_a, frames_b = (json.loads((tmp_path / f"{n}.synth.json").read_text())["frames"] for n in "ab")
    assert frames_a == frames_b


def test_a_preset_of_ones_own_changes_only_its_nuisance(tmp_path: Path) -> None:
    # a stock preset with one nuisance off keeps the seed's layout and subject path, so comparing the two
    # measures what that nuisance costs
    script = reference()
    stock, own = tmp_path / "stock.mp4", tmp_path / "own.mp4"
    render_clip(script, stock, preset="hard", seed=4, size=(160, 90), duration_s=2.0)
    render_clip(script, own, preset=replace(PRESETS["hard"], name="hard-unoccluded", occluder=False), seed=4,
                size=(160, 90), duration_s=2.0)
    sides = [json.loads((tmp_path / f"{n}.synth.json").read_text()) for n in ("stock", "own")]
    assert [side["preset"] for side in sides] == ["hard", "hard-unoccluded"]
    assert sides[0]["frames"] == sides[1]["frames"]
    differs = [np.abs(a.astype(int) - b).mean() for a, b in zip(decode(stock)[0], decode(own)[0])]
    assert min(differs) > 1.0  # the occluder is gone from every frame, not only from the sidecar


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_renders_and_decodes(tmp_path: Path, preset: str) -> None:
    size = (256, 128) if preset == "vr" else SMALL
    out = tmp_path / f"{preset}.mp4"
    result = render_clip(reference(), out, preset=preset, seed=1, size=size, duration_s=2.0)
    frames, _, (_, _, width, height) = decode(out)
    assert len(frames) == result.frame_count == 60 and (width, height) == size
    assert all(f.std() > 10 for f in frames)  # a real picture, not a flat field
    centres = result.centres
    assert ((centres >= 0) & (centres < size)).all()
    side = json.loads((tmp_path / f"{preset}.synth.json").read_text())
    assert side["preset"] == preset and len(side["frames"]["centre_xy"]) == result.frame_count


def test_vr_is_side_by_side_two_to_one_with_disparity(tmp_path: Path) -> None:
    plan = plan_from_script(reference(), "vr", duration_s=0.2)
    assert plan.size == (1280, 640)
    out = tmp_path / "vr.mp4"
    result = render_clip(reference(), out, preset="vr", size=(320, 160), duration_s=1.0)
    frames, _, (_, _, width, height) = decode(out)
    assert width == 2 * height
    frame = frames[0].astype(float)
    left, right = frame[:, :160], frame[:, 160:]
    assert frame[:4, :4].max() < 20 and frame[:4, -4:].max() < 20  # lens corners fall outside the image
    assert np.abs(left - right).mean() > 3  # the eyes differ...
    shift = result.plan.subject_centres()[0, 0, 0] - (result.plan.subject_centres()[0, 1, 0] - 160)
    assert 0 < shift < 0.06 * 160  # ...by a small crossed disparity of the near subject


def test_cuts_are_scene_changes_and_truth_continues(tmp_path: Path) -> None:
    out = tmp_path / "cuts.mp4"
    result = render_clip(reference(), out, preset="cuts", seed=2, size=(160, 90), fps=10.0, duration_s=26.0)
    assert result.cut_times_s and all(5 <= t <= 26 for t in result.cut_times_s)
    frames, times, _ = decode(out)
    change = np.array([np.abs(b.astype(float) - a).mean() for a, b in zip(frames, frames[1:])])
    cut_steps = [int(np.argmin(np.abs(times - t))) - 1 for t in result.cut_times_s]
    # the biggest frame-to-frame changes are exactly the reported cuts, far above the shaky-camera norm
    assert sorted(np.argsort(change)[-len(cut_steps):]) == sorted(cut_steps)
    assert change[cut_steps].min() > 3 * np.median(change)
    np.testing.assert_allclose(result.positions, reference().sample(times * 1000), atol=1e-9)
    assert len(set(result.plan.scene_index.tolist())) >= 2


def test_vfr_has_real_uneven_timestamps(tmp_path: Path) -> None:
    out = tmp_path / "vfr.mp4"
    result = render_clip(reference(), out, size=SMALL, fps=30.0, duration_s=3.0, vfr=True)
    frames, times, _ = decode(out)
    intervals = np.diff(times)
    assert len(frames) == result.frame_count
    assert intervals.min() < 0.8 / 30 and intervals.max() > 1.2 / 30
    assert intervals.min() >= 1 / (1.5 * 30) - 1e-3 and intervals.max() <= 1 / (0.7 * 30) + 1e-3
    np.testing.assert_allclose(times, result.frame_times_s, atol=1e-6)
    truth = read_funscript(tmp_path / "vfr.funscript")
    np.testing.assert_array_equal(truth.at, np.rint(times * 1000))


def test_hard_adds_a_distractor_occlusion_and_motion_blur() -> None:
    plan = plan_from_script(reference(), "hard", seed=3, size=SMALL, fps=10.0, duration_s=12.0)
    (distractor,) = plan.others_behind
    assert np.ptp(distractor.centre, axis=0).max() > 0.1 * SMALL[1]
    assert abs(np.corrcoef(distractor.centre[:, 1], plan.positions)[0, 1]) < 0.5  # its own motion
    t_ms = plan.clock.times_s * 1000
    speed = np.abs(reference().sample(t_ms + 5) - reference().sample(t_ms - 5))
    assert np.corrcoef(np.hypot(*plan.subject.blur.T), speed)[0, 1] > 0.9  # smear grows with speed
    # the share of the subject that shows: the foreground bar hides part of it some of the time
    sprite_area = plan.subject.sprites[0][..., 3].sum() * plan.subject.scale**2
    shown = np.array([(np.abs(f.astype(int) - b).sum(axis=2) > 10).sum()
                      for f, b in zip(iter_frames(plan), iter_frames(plan, with_subject=False))]) / sprite_area
    assert shown.min() < 0.7 and np.median(shown) > 0.9
