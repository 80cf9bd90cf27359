"""The generate pipeline on small clips whose motion is known exactly.

The clip makers here are shared with test_generate_cli.py: a textured block moves up and down over a
textured background, so optical flow has something to grip, and its position per frame is the truth.
"""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from autofunscript import __version__, pipeline
from autofunscript.errors import AutofunscriptError
from autofunscript.motion.flow import MotionSample
from autofunscript.motion.keyframe import LOOSE_AGREEMENT, UNREGISTERED_AGREEMENT, moves_agreement
from autofunscript.motion.segments import Windower
from autofunscript.motion.signal import Rival
from autofunscript.pipeline import (DenseSignal, GenerateOptions, RivalSpan, _Assembler, _fill_gaps, describe_rivals,
                                    generate, merge_spans, track_motion)
from autofunscript.script.evaluate import evaluate
from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.script.postprocess import PostSettings, speeds
from autofunscript.synth.render import render_clip

SIZE = (320, 180)
FPS = 30
TIME_BASE = Fraction(1, 90000)
# Pixels between the block's extreme positions and the frame edge. The block moves at most ~7 px per
# frame at 30 fps: faster strokes are a tracking-accuracy question, not what these tests are about.
MARGIN = 30


# ----------------------------------------------------------------------------------------------
# clips with known motion


def texture(height: int, width: int, seed: int, cell: int = 4) -> np.ndarray:
    """Random BGR blocks of `cell` pixels: detail at every scale the flow looks at."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (-(-height // cell), -(-width // cell), 3), dtype=np.uint8)
    return np.ascontiguousarray(small.repeat(cell, 0).repeat(cell, 1)[:height, :width])


def stroke_plan(duration_s: float, seed: int, min_s: float = 0.6, max_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Reversal times and positions: alternately low and high, with irregular stroke lengths and depths
    (so no shift of a whole period or half period lines the motion up with itself)."""
    rng = np.random.default_rng(seed)
    times, positions, t, high = [0.0], [float(rng.uniform(0, 15))], 0.0, True
    while t < duration_s:
        t += float(rng.uniform(min_s, max_s))
        times.append(t)
        positions.append(float(rng.uniform(85, 100) if high else rng.uniform(0, 15)))
        high = not high
    return np.array(times), np.array(positions)


def eased(times_s: np.ndarray, knot_times: np.ndarray, knot_pos: np.ndarray) -> np.ndarray:
    """Cosine-eased moves between knots: the subject slows to rest at every reversal."""
    i = np.clip(np.searchsorted(knot_times, times_s, side="right") - 1, 0, len(knot_times) - 2)
    frac = np.clip((times_s - knot_times[i]) / (knot_times[i + 1] - knot_times[i]), 0, 1)
    return knot_pos[i] + (knot_pos[i + 1] - knot_pos[i]) * (1 - np.cos(np.pi * frac)) / 2


def triangle(times_s: np.ndarray, period_s: float, phase_s: float = 0.0) -> np.ndarray:
    """Constant speed between sharp reversals: 100 at t = -phase_s + k * period_s, 0 half a period later."""
    return 100 * np.abs(((times_s + phase_s) / period_s % 1.0) * 2 - 1)


def cfr_times(duration_s: float, fps: float = FPS) -> np.ndarray:
    return np.arange(round(duration_s * fps)) / fps


def vfr_times(duration_s: float, seed: int, rates: tuple[float, float] = (20, 50), stretch_s: float = 1.25) -> np.ndarray:
    """Frame times that alternate every `stretch_s` between two frame rates, each interval jittered by
    +-15%: frame number / average rate is then hundreds of ms away from the real time. Whole ms, so
    that they are exact in the file's time base."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.0
    while t < duration_s:
        times.append(t)
        t += round(rng.uniform(0.85, 1.15) / rates[int(t / stretch_s) % 2], 3)
    return np.round(times, 3)


@dataclass(frozen=True)
class Block:
    """A textured rectangle centred at `centre_x` whose height in the frame follows `positions` (100 = top)."""

    centre_x: int
    positions: np.ndarray
    width: int = 48
    height: int = 40
    seed: int = 1


def render(size: tuple[int, int], blocks: list[Block], margin: int = MARGIN, seed: int = 0) -> list[np.ndarray]:
    width, height = size
    background = texture(height, width, seed)
    sprites = [texture(b.height, b.width, b.seed) for b in blocks]
    frames = []
    for i in range(len(blocks[0].positions)):
        image = background.copy()
        for block, sprite in zip(blocks, sprites):
            travel = height - 2 * margin - block.height
            top = int(round(margin + (100 - block.positions[i]) / 100 * travel))
            left = block.centre_x - block.width // 2
            image[top : top + block.height, left : left + block.width] = sprite
        frames.append(image)
    return frames


def encode(path: Path, frames: list[np.ndarray], times_s: np.ndarray, rotation: int = 0) -> Path:
    """H.264 mp4 with the given presentation times; `rotation` is the display matrix's counterclockwise
    angle, as phones write it."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        if rotation:
            stream.set_display_rotation(rotation)
        for image, time_s in zip(frames, times_s):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(time_s / TIME_BASE), TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@dataclass(frozen=True)
class Clip:
    """A written clip and the position per frame of the subject a script should follow."""

    path: Path
    times_s: np.ndarray
    positions: np.ndarray

    def truth(self) -> Funscript:
        return Funscript.from_samples(self.times_s * 1000, self.positions)


def stroke_clip(path: Path, duration_s: float = 4.0, seed: int = 0, size: tuple[int, int] = SIZE) -> Clip:
    """One block stroking irregularly in the middle of the frame, 30 fps, some moves faster than 250 pos/s."""
    times = cfr_times(duration_s)
    positions = eased(times, *stroke_plan(duration_s, seed, min_s=0.5, max_s=0.8))
    encode(path, render(size, [Block(size[0] // 2, positions)], seed=seed), times)
    return Clip(path, times, positions)


def still_clip(path: Path, duration_s: float = 1.0) -> Path:
    """Textured but motionless: the same picture in every frame."""
    times = cfr_times(duration_s)
    return encode(path, render(SIZE, [Block(SIZE[0] // 2, np.full(times.size, 50.0))]), times)


def sampled_correlation(a: Funscript, b: Funscript, step_ms: int = 20) -> float:
    """Pearson correlation of two scripts sampled on a common grid (no alignment, no flipping)."""
    start, end = max(a.at[0], b.at[0]), min(a.at[-1], b.at[-1])
    grid = np.arange(start, end, step_ms)
    return float(np.corrcoef(a.sample(grid), b.sample(grid))[0, 1])


# ----------------------------------------------------------------------------------------------
# the pipeline


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Clip:
    return stroke_clip(tmp_path_factory.mktemp("pipeline") / "stroke.mp4")


@pytest.fixture(scope="module")
def result(clip):
    return generate(clip.path)


def test_strokes_follow_the_truth(clip, result):
    score = evaluate(result.script, clip.truth())
    assert score.pearson_signed > 0.9
    assert abs(score.shift_ms) <= 40
    assert abs(score.strokes_pred - score.strokes_ref) <= 1
    assert result.frames == clip.times_s.size and not result.partial


def test_metadata_has_duration_creator_and_settings(clip, result):
    metadata = result.script.metadata
    assert metadata["creator"] == f"autofunscript {__version__}"
    assert metadata["duration"] == math.ceil(clip.times_s[-1])
    assert metadata["title"] == "stroke"
    notes = metadata["notes"]
    for item in (f"generator: autofunscript {__version__}", "method: flow", "range=(0, 100)", "max_speed=400",
                 "invert=False", "offset_ms=0", "scene_cuts: 0"):
        assert item in notes
    assert "partial" not in notes


def test_options_are_recorded_in_the_notes(clip):
    options = GenerateOptions(start_s=1.0, end_s=3.0, post=PostSettings(range=(20, 80), invert=True))
    notes = generate(clip.path, options).script.metadata["notes"]
    for item in ("start_s=1.0", "end_s=3.0", "range=(20, 80)", "invert=True"):
        assert item in notes


def test_start_and_end_bound_the_tracked_frames(clip):
    dense, cuts, frames, interrupted = track_motion(clip.path, GenerateOptions(start_s=1.0, end_s=2.5))
    expected = clip.times_s[(clip.times_s >= 1.0) & (clip.times_s < 2.5)]
    assert frames == expected.size and not interrupted and cuts == []
    np.testing.assert_allclose(dense.times_s, expected, atol=1e-6)


def test_should_stop_ends_tracking_early_and_says_so(clip):
    seen = []

    def progress(done_s: float, total_s: float) -> None:
        seen.append((done_s, total_s))

    dense, _, frames, interrupted = track_motion(clip.path, GenerateOptions(), progress,
                                                 should_stop=lambda: len(seen) >= 45)
    assert interrupted and frames == 45
    assert dense.times_s[-1] == pytest.approx(clip.times_s[44])
    assert seen[-1][1] == pytest.approx(clip.times_s[-1] + 1 / FPS, abs=1e-3)  # total = the video's length


def test_ctrl_c_keeps_what_was_tracked_marked_partial(clip):
    """A real SIGINT to this process in the middle of tracking, as a terminal's Ctrl+C sends it."""
    calls = []

    def progress(done_s: float, total_s: float) -> None:
        calls.append(done_s)
        if len(calls) == 60:
            signal.raise_signal(signal.SIGINT)

    try:
        partial = generate(clip.path, GenerateOptions(), progress)
    except KeyboardInterrupt:
        pytest.fail("Ctrl+C escaped generate() although 2 s had been tracked")
    assert partial.partial
    assert partial.frames == 60
    assert f"partial: interrupted at {clip.times_s[59]:.1f} s" in partial.script.metadata["notes"]
    assert partial.script.at[-1] <= round(clip.times_s[59] * 1000)
    assert sampled_correlation(partial.script, clip.truth()) > 0.5  # the strokes so far (accuracy: tested above)


def test_ctrl_c_after_the_last_frame_is_acknowledged_and_the_script_is_whole(clip, monkeypatch, caplog):
    """Ctrl+C while the last windows are analysed: nothing is left to stop, which is said rather than ignored."""
    whole = generate(clip.path, GenerateOptions())

    real_track_motion = pipeline.track_motion

    def track_then_ctrl_c(*args, **kwargs):
        tracked = real_track_motion(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return tracked

    monkeypatch.setattr(pipeline, "track_motion", track_then_ctrl_c)
    with caplog.at_level(logging.WARNING, logger="autofunscript"):
        late = generate(clip.path, GenerateOptions())
    assert not late.partial and np.array_equal(late.script.at, whole.script.at)
    assert [r.getMessage() for r in caplog.records] == [
        "Ctrl+C came after the whole video was read: writing the complete script"]


def test_second_ctrl_c_interrupts_at_once_and_the_handler_is_restored(clip):
    before = signal.getsignal(signal.SIGINT)
    calls = []

    def progress(done_s: float, total_s: float) -> None:
        calls.append(done_s)
        if len(calls) == 30:
            signal.raise_signal(signal.SIGINT)  # first: stop after this frame
            signal.raise_signal(signal.SIGINT)  # second: now

    with pytest.raises(KeyboardInterrupt):
        generate(clip.path, GenerateOptions(), progress)
    assert len(calls) == 30
    assert signal.getsignal(signal.SIGINT) is before
    assert generate(clip.path, GenerateOptions(end_s=1.0)).frames == 30  # and no stop request lingers


def test_ctrl_c_before_any_motion_is_an_interruption_not_an_error(clip):
    def progress(done_s: float, total_s: float) -> None:
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        generate(clip.path, GenerateOptions(), progress)


def test_still_video_is_refused_naming_the_file(tmp_path):
    path = still_clip(tmp_path / "still.mp4")
    with pytest.raises(AutofunscriptError, match=r"still\.mp4: no motion found"):
        generate(path)


def test_a_point_of_interest_keeps_the_frame_around_it_for_registration_and_matching(tmp_path):
    # a `hard` synthetic clip (noise, blur, a second moving body, an occluding bar, a shaking camera) with the
    # user's point on the subject. The frames were once blacked out outside the point's box: registration then
    # found no background to hold the camera path to, and the box's edge, moving with the camera, was matched
    # as the subject (F1 0.30, r -0.44 here; 0.95 and 0.94 with the whole frame)
    rng = np.random.default_rng(5)
    at, pos, t = [], [], 0.0
    while t < 13:  # strokes of 0.4-1 s between 0-30 and 70-100
        at.append(int(t * 1000))
        pos.append(int(rng.uniform(70, 100) if len(pos) % 2 else rng.uniform(0, 30)))
        t += rng.uniform(0.4, 1.0)
    script = Funscript(at=np.array(at), pos=np.array(pos))
    clip = render_clip(script, tmp_path / "hard.mp4", "hard", seed=2, size=(320, 180), duration_s=12)
    x, y = clip.centres.mean(axis=0) / (320, 180)
    poi = pipeline.Poi(float(x), float(y), relative=True)
    score = evaluate(generate(clip.video, GenerateOptions(poi=poi)).script, clip.truth)
    assert score.extrema_f1 > 0.85 and score.pearson_signed > 0.85


def test_start_after_the_end_and_poi_outside_the_frame_are_refused(clip):
    from autofunscript.pipeline import Poi

    with pytest.raises(AutofunscriptError, match=r"stroke\.mp4: start 9 s is not before the end of the video \(4\.0 s\)"):
        generate(clip.path, GenerateOptions(start_s=9.0))
    with pytest.raises(AutofunscriptError, match=r"stroke\.mp4: point of interest 400,20 is outside the 320x180 frame"):
        generate(clip.path, GenerateOptions(poi=Poi(400, 20)))
    with pytest.raises(AutofunscriptError, match=r"outside the 160x180 frame \(one eye\)"):
        generate(clip.path, GenerateOptions(vr="sbs", poi=Poi(200, 20)))


def test_vfr_actions_sit_on_real_frame_times(tmp_path):
    times = vfr_times(3.0, seed=1)
    positions = triangle(times, 1.6, phase_s=0.3)
    path = encode(tmp_path / "vfr.mp4", render(SIZE, [Block(160, positions)]), times)
    script = generate(path).script
    frame_ms = np.rint(times * 1000).astype(np.int64)
    turns = find_reversals(script.pos.astype(float), 10).index  # round turns are timed between frames
    assert np.isin(np.delete(script.at, turns), frame_ms).all()
    assert script.at[0] == 0 and script.at[-1] == frame_ms[-1]


@pytest.fixture(scope="module")
def repeated_pictures(tmp_path_factory) -> dict[str, Funscript]:
    """The same strokes filmed at 25 fps, stored once at 25 fps and once at 50 fps with every picture twice."""
    folder = tmp_path_factory.mktemp("repeats")
    pictures = np.arange(round(6.0 * 25)) / 25
    frames = render(SIZE, [Block(160, eased(pictures, *stroke_plan(6.0, seed=4)))])
    doubled = np.arange(2 * pictures.size) / 50
    return {"25 fps": generate(encode(folder / "p25.mp4", frames, pictures)).script,
            "50 fps, repeated": generate(encode(folder / "p50.mp4", [f for f in frames for _ in (0, 1)],
                                                doubled)).script}


def test_repeated_pictures_give_the_script_of_the_pictures_not_steps(repeated_pictures):
    # read frame by frame, a picture shown twice holds and then jumps: actions every 20 ms, and each move made
    # at twice its speed. Between the pictures the subject moved on, and so does the script.
    once, twice = repeated_pictures["25 fps"], repeated_pictures["50 fps, repeated"]
    assert twice.at.size <= 1.25 * once.at.size
    assert np.diff(twice.at).min() >= 30
    assert speeds(twice.at, twice.pos).max() <= 1.15 * speeds(once.at, once.pos).max()
    assert sampled_correlation(once, twice) > 0.97


def test_a_subject_a_few_pixels_across_is_followed_by_its_flow(tmp_path):
    # a far-off pendulum bob, 3 px at the analysis size on a smooth backdrop: too small for the band's
    # change mask (which once turned this into a flat script), not for the flow
    times = cfr_times(8.0)
    positions = 50 + 50 * np.sin(2 * np.pi * times / 1.3)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    backdrop = (90 + 40 * np.sin(x / 70) + 20 * np.cos(y / 50)).astype(np.uint8)
    frames = []
    for p in positions:
        frame = cv2.cvtColor(backdrop, cv2.COLOR_GRAY2BGR)
        cv2.circle(frame, (int(round(120 + 0.8 * p)), 90), 1, (20, 20, 20), -1)
        frames.append(frame)
    score = evaluate(generate(encode(tmp_path / "bob.mp4", frames, times)).script,
                     Funscript.from_samples(times * 1000, positions))
    assert score.reversals_pred == score.reversals_ref
    assert score.pearson_signed > 0.85


def test_a_scene_under_a_second_that_the_band_cannot_see_is_held_not_stretched_into_strokes(tmp_path):
    # strokes, then a cut to a smooth backdrop where a faint patch (6 grey levels) bobs for 0.7 s: the flow
    # sees it move, the band's change mask does not. Under a second is too little to tell strokes from noise
    # by the flow alone (it once made full strokes of such a scene), so the last position is held through it.
    times_a = cfr_times(3.0)
    positions = eased(times_a, *stroke_plan(3.0, 2, min_s=0.5, max_s=0.8))
    frames = render(SIZE, [Block(SIZE[0] // 2, positions)])
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    backdrop = 90 + 40 * np.sin(x / 70) + 20 * np.cos(y / 50)
    for i in range(21):
        picture = backdrop.copy()
        top = int(round(75 + 15 * np.sin(2 * np.pi * i / 10)))
        picture[top : top + 30, 150:180] += 6
        frames.append(cv2.cvtColor(picture.astype(np.uint8), cv2.COLOR_GRAY2BGR))
    times = cfr_times(len(frames) / FPS)
    result = generate(encode(tmp_path / "short_scene.mp4", frames, times))
    script = result.script
    last_scene = script.at > 1000 * times_a[-1]
    assert np.unique(script.pos[last_scene]).size == 1
    score = evaluate(Funscript(at=script.at[~last_scene], pos=script.pos[~last_scene]),
                     Funscript.from_samples(times_a * 1000, positions))
    assert score.pearson_signed > 0.9


def test_shallow_strokes_stay_shallow_beside_deep_ones(tmp_path):
    # the band measures each frame's displacement, so a window's shallow strokes keep their depth against
    # its deep ones (fitted over a few seconds at a time they had been blown up to most of the range)
    times = cfr_times(12.0)
    deep = triangle(times, 1.2)
    positions = np.where(times < 6.0, deep, 35 + 0.3 * deep)
    script = generate(encode(tmp_path / "depths.mp4", render(SIZE, [Block(160, positions)]), times)).script
    swing = {}
    for name, (start, end) in {"deep": (1000, 5000), "shallow": (7000, 11000)}.items():
        inside = script.pos[(script.at >= start) & (script.at < end)]
        swing[name] = np.percentile(inside, 95) - np.percentile(inside, 5)
    assert swing["deep"] > 80
    assert 0.2 < swing["shallow"] / swing["deep"] < 0.45


def test_strokes_near_the_top_stay_near_the_top(tmp_path):
    # the band measures positions from keyframes on a registered camera path, so a stretch of strokes high up
    # keeps its level (a window's running middle had pulled them down to the middle of the range)
    times = cfr_times(12.0)
    deep = triangle(times, 1.2)
    positions = np.where(times < 6.0, deep, 60 + 0.4 * deep)
    script = generate(encode(tmp_path / "high.mp4", render(SIZE, [Block(160, positions)]), times)).script
    high = script.pos[(script.at >= 7000) & (script.at < 11000)]
    assert np.percentile(high, 5) > 50  # the strokes' bottoms are at 60 (pulled to the middle: 40)
    assert np.percentile(high, 95) > 90


SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def sample_script() -> Funscript:
    return generate(SAMPLES / "sample.mp4").script


def test_the_bundled_sample_holds_still_through_its_pause(sample_script):
    # README's first command. The subject rests 0.8 s at mid-stroke (7.0-7.8 s); its sharp-edged band aliases at
    # half resolution, and the best row flipped between two dips either side of the true one, 3.5 px apart:
    # four false reversals (F1 0.870, the pause spanning 13 units)
    truth = read_funscript(SAMPLES / "sample.truth.funscript")
    assert evaluate(sample_script, truth).extrema_f1 >= 0.95
    pause = sample_script.sample(np.arange(7050.0, 7750.0, 10.0))
    assert np.ptp(pause) <= 10


def test_generated_actions_move_one_way_between_reversals(sample_script):
    # the tracker's pixel steps, stretched to the range, wiggled the sample's script by a few positions between
    # its turns (28 changes of direction for 18 turns), which a device plays as buzzing
    pos = sample_script.pos.astype(float)
    found = find_reversals(pos, GenerateOptions().post.min_swing).index
    turns = int(((found > 0) & (found < pos.size - 1)).sum())
    moves = np.sign(np.diff(pos))
    moves = moves[moves != 0]
    assert turns >= 15
    assert int((moves[1:] != moves[:-1]).sum()) == turns


def test_the_direction_search_is_skipped_where_the_flow_direction_never_loses_the_subject(clip, monkeypatch):
    # tracked along the flow's direction the block never jumps, so no other direction could be chosen: the
    # search for one (most of a window's matching) is not run and the block is tracked once
    searches, tracks = [], []
    real_search, real_track = pipeline.choose_axis, pipeline.track_band

    def counted_search(*args, **kwargs):
        searches.append(args)
        return real_search(*args, **kwargs)

    def counted_track(*args, **kwargs):
        tracks.append(real_track(*args, **kwargs))
        return tracks[-1]

    monkeypatch.setattr(pipeline, "choose_axis", counted_search)
    monkeypatch.setattr(pipeline, "track_band", counted_track)
    score = evaluate(generate(clip.path).script, clip.truth())
    assert len(tracks) == 1 and tracks[0].jumps == 0
    assert searches == []
    assert score.pearson_signed > 0.9


@pytest.mark.parametrize("partly_registered", [True, False])
def test_a_band_that_registration_never_checked_must_follow_the_flow(clip, monkeypatch, partly_registered):
    # the band carries a motion of its own beside the subject's, so its moves follow the flow's only
    # loosely: where registration checked part of its camera path it is still taken, where it checked none
    # the window falls back to the integrated flow
    real_track, real_fit = pipeline.track_band, pipeline.fit_range
    agreements, band_fits = [], []

    def loosely_following(*args, flow, **kwargs):
        track = real_track(*args, flow=flow, **kwargs)
        frames = np.arange(track.displacement.size)
        own = 0.6 * np.ptp(track.displacement) * np.sin(2 * np.pi * 1.3 * frames / FPS)
        agreements.append(moves_agreement(track.checked + own, flow))
        return replace(track, displacement=track.displacement + own, checked=track.checked + own, registered=False,
                       partly_registered=partly_registered)

    def recorded_fit(position, fps, options, depth_measured=False, **kwargs):
        band_fits.append(depth_measured)
        return real_fit(position, fps, options, depth_measured, **kwargs)

    monkeypatch.setattr(pipeline, "track_band", loosely_following)
    monkeypatch.setattr(pipeline, "fit_range", recorded_fit)
    generate(clip.path)
    assert agreements and all(LOOSE_AGREEMENT < a < UNREGISTERED_AGREEMENT for a in agreements), agreements
    assert band_fits and all(used == partly_registered for used in band_fits)


# ----------------------------------------------------------------------------------------------
# helpers of the pipeline


def test_windows_with_context_assemble_every_frame_once_in_order():
    windower = Windower(max_s=4.0, overlap_s=1.0, full_tails=True)
    assembler = _Assembler(())
    times = np.arange(280) / FPS  # windows 0-4 s, 3-7 s, and a 6-9.3 s tail
    for t in times:
        for window in windower.push(MotionSample(t, np.zeros((1, 1, 2), np.float32), 0.0)):
            assembler.add(window, window.times_s.copy(), {})  # the "position" is the frame time itself
    for window in windower.flush():
        assert window.context > 0
        assembler.add(window, window.times_s.copy(), {})
    dense = assembler.result()
    assert np.array_equal(dense.times_s, times)
    assert np.allclose(dense.position, times)  # cross-fading a signal with itself leaves it unchanged


def test_second_motions_are_told_as_stretches_with_a_poi_for_each_place():
    left, right = (0.30, 0.50), (0.72, 0.48)
    spans = [RivalSpan(0.0, 30.0, Rival(right, left)), RivalSpan(26.0, 56.0, Rival(right, (0.31, 0.52))),
             RivalSpan(52.0, 82.0, Rival(left, right)), RivalSpan(200.0, 230.0, Rival(left, right))]
    text = describe_rivals(spans)
    # the first two windows saw the same two places: one stretch; the third is the swap; the last is apart in time
    assert "(0:00-0:56 tracked 0.72,0.48, other 0.30,0.50; 0:52-1:22 tracked 0.30,0.50, other 0.72,0.48; " \
           "3:20-3:50 tracked 0.30,0.50, other 0.72,0.48;" in text
    assert text.endswith("run again with --poi 0.30,0.50 or --poi 0.72,0.48")
    assert describe_rivals(spans[:1]).endswith("run again with --poi 0.30,0.50")


def test_fill_gaps_holds_the_last_known_position():
    values = np.array([np.nan, np.nan, 30.0, 40.0, np.nan, np.nan, 10.0, np.nan])
    np.testing.assert_array_equal(_fill_gaps(values), [30, 30, 30, 40, 40, 40, 10, 10])
    assert np.isnan(_fill_gaps(np.full(3, np.nan))).all()


def test_merge_spans_lets_later_spans_replace_earlier_ones_where_they_overlap():
    first = (np.array([0, 100, 200, 300]), np.array([0, 100, 0, 100]))
    second = (np.array([150, 250]), np.array([50, 60]))
    at, pos = merge_spans([first, second, (np.zeros(0, np.int64), np.zeros(0, np.int64))])
    np.testing.assert_array_equal(at, [0, 100, 150, 250, 300])
    np.testing.assert_array_equal(pos, [0, 100, 50, 60, 100])


def test_dense_signal_without_motion_is_refused():
    from autofunscript.pipeline import dense_to_script

    dense = DenseSignal(np.arange(10) / 30, np.full(10, np.nan), {})
    with pytest.raises(AutofunscriptError, match="no motion found"):
        dense_to_script(dense, PostSettings())


def test_generate_starts_without_importing_scipy():
    """SciPy's import (0.9 s) is left to preload_scipy, beside the decoder: a top-level SciPy import in a module
    the CLI's generate loads would put it back in front of the first frame."""
    code = ("import sys, autofunscript.cli, autofunscript.pipeline as p, autofunscript.model.infer\n"
            "names = ('scipy.signal', 'scipy.ndimage', 'scipy.optimize')\n"
            "scipy = lambda: sorted(m for m in sys.modules if m in names)\n"
            "print(scipy())\n"
            "p.preload_scipy().join()\n"
            "print(scipy())\n")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.splitlines() == ["[]", "['scipy.ndimage', 'scipy.optimize', 'scipy.signal']"]
