"""`autofunscript generate` end to end: clips with known motion made here, the real console entry point,
files on disk.

Most runs call the entry point in this process (a fresh interpreter costs seconds of imports per run);
Ctrl+C and the read-only folder need a real child process and get one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import av
import click
import numpy as np
import pytest

from autofunscript import __version__
from autofunscript.cli import VIDEO_TIME, main
from autofunscript.script.evaluate import evaluate
from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.script.postprocess import speeds
from test_pipeline import (FPS, SIZE, Block, Clip, cfr_times, eased, encode, render, sampled_correlation,
                           still_clip, stroke_clip, stroke_plan, texture, triangle, vfr_times)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path) -> Run:
    """`autofunscript ARGS...` through main(), in this process; restores the logger the CLI configures."""
    logger = logging.getLogger("autofunscript")
    saved = logger.handlers[:], logger.level, logger.propagate
    argv = sys.argv
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["autofunscript", *map(str, args)]
    try:
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    return Run(exited.value.code, out.getvalue(), err.getvalue())


def generate_ok(*args: str | Path) -> Run:
    run = run_cli("generate", *args)
    assert run.code == 0, run.err
    assert run.err == ""
    return run


def assert_refused(run: Run, names: Path | str, folder: Path, before: set[str]) -> None:
    """Non-zero exit, the last stderr line one `error:` naming the file, nothing new in the folder."""
    assert run.code != 0
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert lines and lines[-1].startswith("error: ") and str(names) in lines[-1], run.err
    assert all(line.startswith("warning: ") for line in lines[:-1]), run.err
    assert set(os.listdir(folder)) == before


def generated(folder: Path, clip: Path, *options: str, name: str = "out.funscript") -> Funscript:
    """generate CLIP --out FOLDER/NAME OPTIONS..., checked and read back."""
    out = folder / name
    run = generate_ok(clip, "--out", out, *options)
    assert run.out.startswith(f"{out}: ")
    return read_funscript(out)


# ----------------------------------------------------------------------------------------------
# clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def stroke(clips) -> Clip:
    return stroke_clip(clips / "stroke.mp4", duration_s=4.0, seed=0)


@pytest.fixture(scope="module")
def two_blocks(clips) -> tuple[Path, Clip, Clip]:
    """Block A at x=80 and block B at x=240, stroking independently."""
    times = cfr_times(4.0)
    a = eased(times, *stroke_plan(4.0, seed=1))
    b = eased(times, *stroke_plan(4.0, seed=2, min_s=1.0, max_s=1.4))
    path = encode(clips / "two.mp4", render(SIZE, [Block(80, a, seed=3), Block(240, b, seed=4)]), times)
    return path, Clip(path, times, a), Clip(path, times, b)


@pytest.fixture(scope="module")
def base(stroke) -> tuple[Run, Path]:
    """generate with every default: the script lands beside the video."""
    folder = stroke.path.parent / "default"
    folder.mkdir()
    video = folder / "my clip.v2.mp4"
    shutil.copy(stroke.path, video)
    return generate_ok(video), video


@pytest.fixture(scope="module")
def base_script(base) -> Funscript:
    return read_funscript(base[1].with_suffix(".funscript"))


# ----------------------------------------------------------------------------------------------
# results


def test_default_output_is_the_video_stem_beside_it(base):
    run, video = base
    out = video.parent / "my clip.v2.funscript"
    assert sorted(os.listdir(video.parent)) == ["my clip.v2.funscript", "my clip.v2.mp4"]
    assert re.fullmatch(rf"{re.escape(str(out))}: \d+ actions, 120 frames in .*, 0 scene cuts\n"
                        r"(post-processing: .*\n)*", run.out)


def test_stroking_clip_gives_strokes_that_follow_the_truth(stroke, base_script):
    score = evaluate(base_script, stroke.truth())
    assert score.pearson_signed > 0.9
    assert abs(score.shift_ms) <= 40
    assert abs(score.strokes_pred - score.strokes_ref) <= 1 and score.strokes_ref >= 5


def test_file_is_ofs_json_with_duration_creator_and_settings(base):
    data = json.loads(base[1].with_suffix(".funscript").read_text())
    assert list(data)[:5] == ["actions", "version", "inverted", "range", "metadata"]
    assert all(isinstance(a["at"], int) and 0 <= a["pos"] <= 100 for a in data["actions"])
    metadata = data["metadata"]
    assert metadata["duration"] == 4
    assert metadata["creator"] == f"autofunscript {__version__}"
    for setting in ("range=(0, 100)", "max_speed=400", "smooth_ms=0.0", "simplify=2.0", "invert=False",
                    "offset_ms=0"):
        assert setting in metadata["notes"]


def test_out_writes_where_asked(stroke, tmp_path):
    generated(tmp_path, stroke.path, name="elsewhere.funscript")
    assert os.listdir(tmp_path) == ["elsewhere.funscript"]
    assert not stroke.path.with_suffix(".funscript").exists()


def test_force_overwrites(stroke, tmp_path):
    out = tmp_path / "out.funscript"
    out.write_text("not a script")
    script = generated(tmp_path, stroke.path, "--force")
    assert len(script) > 10 and os.listdir(tmp_path) == ["out.funscript"]


def test_invert_flips_the_script(stroke, tmp_path, base_script):
    inverted = generated(tmp_path, stroke.path, "--invert")
    assert sampled_correlation(inverted, base_script) < -0.95
    assert sampled_correlation(inverted, stroke.truth()) < -0.9
    assert "invert=True" in inverted.metadata["notes"]


def test_offset_moves_every_action(stroke, tmp_path, base_script):
    late = generated(tmp_path, stroke.path, "--offset", "250")
    np.testing.assert_array_equal(late.at, base_script.at + 250)
    np.testing.assert_array_equal(late.pos, base_script.pos)
    assert "offset_ms=250" in late.metadata["notes"]


def test_range_keeps_positions_inside_and_uses_it(stroke, tmp_path):
    script = generated(tmp_path, stroke.path, "--range", "20,80")
    assert script.pos.min() >= 20 and script.pos.max() <= 80
    assert script.pos.min() <= 25 and script.pos.max() >= 75
    assert evaluate(script, stroke.truth()).pearson_signed > 0.9


def test_max_speed_caps_every_move(stroke, tmp_path, base_script):
    assert speeds(base_script.at, base_script.pos).max() > 250  # the default limit (400) left faster moves
    script = generated(tmp_path, stroke.path, "--max-speed", "200")
    assert speeds(script.at, script.pos).max() <= 200
    assert "max_speed=200" in script.metadata["notes"]


def test_axes_write_sibling_files(stroke, tmp_path, base_script):
    out = tmp_path / "clip.funscript"
    run = generate_ok(stroke.path, "--out", out, "--axes", "Sway,roll,ROLL")  # names as typed, each once
    assert sorted(os.listdir(tmp_path)) == ["clip.funscript", "clip.roll.funscript", "clip.sway.funscript"]
    assert f"{tmp_path / 'clip.sway.funscript'}: extra axis" in run.out
    main_script = read_funscript(out)
    np.testing.assert_array_equal(main_script.at, base_script.at)
    for axis in ("sway", "roll"):
        script = read_funscript(tmp_path / f"clip.{axis}.funscript")
        assert len(script) >= 2 and script.pos.min() >= 0 and script.pos.max() <= 100
        assert script.at[0] >= 0 and script.at[-1] <= 4000


@pytest.mark.parametrize("start, end", [("1", "3"), ("0:01", "0:00:03.0")])
def test_start_and_end_restrict_the_actions(stroke, tmp_path, start, end):
    script = generated(tmp_path, stroke.path, "--start", start, "--end", end)
    first_frame, last_frame = 1000, round(stroke.times_s[stroke.times_s < 3][-1] * 1000)
    assert script.at[0] == first_frame and script.at[-1] == last_frame
    assert sampled_correlation(script, stroke.truth()) > 0.6


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("12.5", 12.5), ("1:30", 90.0), ("1:02:03.5", 3723.5),
                                           ("0:00:00", 0.0), (" 2:05 ", 125.0)])
def test_times_are_seconds_or_clock_readings(text, seconds):
    assert VIDEO_TIME.convert(text, None, None) == seconds


@pytest.mark.parametrize("text, message", [(text, "is not a time") for text in
                                           ["", "1:", "1:60", "1:2:3:4", "1:-5", "ten", "nan", "inf", "1:30s"]]
                         + [(text, "must not be negative") for text in ["-1", "-0:30", "-1:30"]])
def test_a_time_that_is_neither_is_refused(text, message):
    with pytest.raises(click.BadParameter, match=message):
        VIDEO_TIME.convert(text, None, None)


def test_poi_in_pixels_picks_the_block_there(two_blocks, tmp_path):
    path, a, b = two_blocks
    script = generated(tmp_path, path, "--poi", "80,90")
    assert sampled_correlation(script, a.truth()) > 0.9
    assert sampled_correlation(script, b.truth()) < 0.5


def test_poi_as_fractions_picks_the_block_there(two_blocks, tmp_path):
    path, a, b = two_blocks
    script = generated(tmp_path, path, "--poi", "0.75,0.5")
    assert sampled_correlation(script, b.truth()) > 0.9
    assert sampled_correlation(script, a.truth()) < 0.5


@pytest.mark.parametrize("method", ["flow", "model"])
def test_a_second_body_is_pointed_out_with_the_poi_that_picks_it(two_blocks, tmp_path, method):
    path, a, b = two_blocks
    out = tmp_path / "auto.funscript"
    run = run_cli("generate", path, "--out", out, "--method", method)
    assert run.code == 0 and "Traceback" not in run.err
    warning = run.err.strip()
    assert re.fullmatch(r"warning: another motion with a rhythm of its own, apart from the tracked one \(0:00-0:0[34] "
                        r"tracked [0-9.]+,[0-9.]+, other [0-9.]+,[0-9.]+; 0-1 fractions of the picture, one eye in VR\)\. "
                        r"If the script follows the wrong one, run again with --poi [0-9.]+,[0-9.]+", warning), warning
    suggested = re.search(r"run again with --poi ([0-9.]+),([0-9.]+)$", warning)
    x, y = float(suggested[1]), float(suggested[2])
    tracked_a = sampled_correlation(read_funscript(out), a.truth()) > 0.9
    assert x == pytest.approx(0.75 if tracked_a else 0.25, abs=0.05) and y == pytest.approx(0.5, abs=0.15)
    other = generated(tmp_path, path, "--poi", f"{x},{y}", "--method", method, name="other.funscript")
    assert sampled_correlation(other, (b if tracked_a else a).truth()) > 0.9


def test_vr_side_by_side_analyses_one_eye(clips, tmp_path):
    """Both eyes see the block stroking (the right one shifted by a small disparity); the POI is in eye
    coordinates, so 0.5,0.5 is the middle of the left eye, where the block is."""
    times = cfr_times(3.0)
    positions = eased(times, *stroke_plan(3.0, seed=5))
    left = render(SIZE, [Block(160, positions)], seed=6)
    right = render(SIZE, [Block(154, positions)], seed=6)
    path = encode(clips / "sbs.mp4", [np.hstack([l, r]) for l, r in zip(left, right)], times)
    script = generated(tmp_path, path, "--vr", "sbs", "--poi", "0.5,0.5")
    assert sampled_correlation(script, Clip(path, times, positions).truth()) > 0.9
    assert "vr=sbs" in script.metadata["notes"]



@pytest.mark.parametrize("method", ["flow", "model"])
def test_vr_layout_that_does_not_fit_the_frame_is_warned_of(clips, tmp_path, method):
    square = stroke_clip(clips / "square.mp4", duration_s=2.0, seed=3, size=(240, 240)).path
    run = run_cli("generate", square, "--vr", "sbs", "--out", tmp_path / "out.funscript", "--method", method)
    assert run.code == 0, run.err
    assert run.err.splitlines() == [f"warning: {square}: --vr sbs on a 240x240 frame, which does not look like two "
                                    "pictures side by side; each eye is taken as 120x240"]

def test_rotated_phone_video_is_analysed_upright(clips, tmp_path):
    """Stored landscape, displayed portrait. The POI is in upright pixels and on block A: read without
    the display matrix's turn, that point holds no motion at all."""
    width, height = SIZE[1], SIZE[0]
    times = cfr_times(4.0)
    a = eased(times, *stroke_plan(4.0, seed=7))
    b = eased(times, *stroke_plan(4.0, seed=9, min_s=1.0, max_s=1.4))
    upright = render((width, height), [Block(40, a, seed=3), Block(140, b, seed=4)], margin=100, seed=7)
    stored = [np.ascontiguousarray(np.rot90(image)) for image in upright]  # a quarter turn counterclockwise
    path = encode(clips / "phone.mp4", stored, times, rotation=-90)
    script = generated(tmp_path, path, "--poi", "40,100")
    assert sampled_correlation(script, Clip(path, times, a).truth()) > 0.9
    assert sampled_correlation(script, Clip(path, times, b).truth()) < 0.5


def test_vfr_reversals_follow_the_real_timestamps(clips, tmp_path):
    """Frame rate switching between 20 and 50 fps: reversals must land within a frame of the true time,
    where frame number / average rate would be hundreds of ms off."""
    times = vfr_times(5.0, seed=2)
    period, phase = 1.6, 0.3
    path = encode(clips / "vfr.mp4", render(SIZE, [Block(160, triangle(times, period, phase))]), times)
    script = generated(tmp_path, path)
    found = find_reversals(script.pos.astype(float), 10)
    between = np.delete(script.at, found.index)  # round turns are timed between frames (turn_centres)
    assert between.size > 10 and np.isin(between, np.rint(times * 1000)).all()

    true_reversals = [t for t in np.arange(-phase, 5.0, period / 2) if 0.2 < t < times[-1] - 0.2]
    slowest_frame_s = np.diff(times).max()
    naive_s = np.arange(times.size) * times[-1] / (times.size - 1)
    assert max(abs(naive_s[np.searchsorted(times, t)] - t) for t in true_reversals) > 3 * slowest_frame_s
    found_s = script.at[found.index] / 1000
    for t in true_reversals:
        kind = 1 if round((t + phase) / period * 2) % 2 == 0 else -1  # peaks at whole periods
        same_kind = found_s[found.kind == kind]
        assert np.abs(same_kind - t).min() <= 1.25 * slowest_frame_s, (t, kind, found_s)


def test_corrupt_middle_is_skipped_with_a_warning(stroke, tmp_path):
    video = tmp_path / "damaged.mp4"
    data = bytearray(stroke.path.read_bytes())
    middle = len(data) // 2
    data[middle - 4000 : middle + 4000] = np.random.default_rng(0).integers(0, 256, 8000, np.uint8).tobytes()
    video.write_bytes(bytes(data))
    run = run_cli("generate", video)
    assert run.code == 0, run.err
    warnings = run.err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {video}: skipped "), run.err
    script = read_funscript(tmp_path / "damaged.funscript")
    assert script.at[0] == 0 and script.at[-1] >= 3800
    assert evaluate(script, stroke.truth()).strokes_pred >= 4


@pytest.mark.slow
def test_8k_frames_work(tmp_path):
    """7680x4320 is the largest common size: decoded and scaled down like any other, not refused."""
    width, height = 7680, 4320
    luma = texture(height // 8, width // 8, seed=0)[..., 1].repeat(8, 0).repeat(8, 1)
    sprite = texture(height // 40, width // 64, seed=1)[..., 1].repeat(8, 0).repeat(8, 1)
    video = tmp_path / "8k.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, top in enumerate((1600, 1800, 1600)):  # 200 px here: 8 px in the 320-wide analysis picture
            y = luma.copy()
            y[top : top + sprite.shape[0], 3600 : 3600 + sprite.shape[1]] = sprite
            planes = np.vstack([y, np.full((height // 2, width), 128, np.uint8)])  # I420: Y, then U and V
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    run = run_cli("generate", video)
    assert run.code == 0, run.err
    assert run.out.startswith(f"{tmp_path / '8k.funscript'}: ") and ", 3 frames in " in run.out
    script = read_funscript(tmp_path / "8k.funscript")
    np.testing.assert_array_equal(script.at, [0, 33, 67])


# ----------------------------------------------------------------------------------------------
# bad input: one `error:` line naming the file, non-zero exit, nothing written


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        tone = (np.sin(np.arange(22050) * 0.05) * 0.3).astype(np.float32)[None, :]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _one_frame(path: Path) -> Path:
    return encode(path, render(SIZE, [Block(160, np.array([50.0]))]), np.zeros(1))


BAD_VIDEOS = {
    "not_a_video": lambda folder: _write(folder / "notes.mp4", b"just some text\n" * 200),
    "zero_length": lambda folder: _write(folder / "empty.mp4", b""),
    "truncated_header": lambda folder: _write(folder / "cut.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00"),
    "audio_only": lambda folder: _audio_only(folder / "song.m4a"),
    "one_frame": lambda folder: _one_frame(folder / "single.mp4"),
    "still": lambda folder: still_clip(folder / "still.mp4"),
    "missing": lambda folder: folder / "missing.mp4",
    "folder": lambda folder: _mkdir(folder / "videos.mp4"),
}
BAD_VIDEO_MESSAGES = {
    "not_a_video": "not a video", "zero_length": "empty file", "truncated_header": "not a video",
    "audio_only": "audio only", "one_frame": "fewer than 2 frames", "still": "no motion found",
    "missing": "no such file", "folder": "is a directory",
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("kind", sorted(BAD_VIDEOS))
def test_bad_video_is_one_error_line_and_writes_nothing(kind, tmp_path):
    video = BAD_VIDEOS[kind](tmp_path)
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", video)
    assert_refused(run, video, tmp_path, before)
    assert BAD_VIDEO_MESSAGES[kind] in run.err.splitlines()[-1]
    assert run.out == ""


@pytest.fixture
def copied(stroke, tmp_path) -> Path:
    video = tmp_path / "clip.mp4"
    shutil.copy(stroke.path, video)
    return video


def test_a_script_given_as_the_video_is_refused(tmp_path):
    script = tmp_path / "clip.funscript"
    script.write_text('{"actions": [{"at": 0, "pos": 0}, {"at": 500, "pos": 100}]}')
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", script)
    assert_refused(run, script, tmp_path, before)
    assert "is a funscript, not a video (tune post-processes a script)" in run.err


def test_existing_output_is_kept_without_force(copied, tmp_path):
    out = tmp_path / "clip.funscript"
    out.write_text("mine")
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", copied)
    assert_refused(run, out, tmp_path, before)
    assert "already exists (use --force to overwrite)" in run.err
    assert out.read_text() == "mine"


def test_output_under_a_file_is_refused_as_such(copied, tmp_path):
    out = copied / "clip.funscript"
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", copied, "--out", out)
    assert_refused(run, out, tmp_path, before)
    assert f"{copied} is a file, not a folder" in run.err


def test_existing_axis_file_is_kept_without_force(copied, tmp_path):
    sibling = tmp_path / "clip.roll.funscript"
    sibling.write_text("mine")
    before = set(os.listdir(tmp_path))
    assert_refused(run_cli("generate", copied, "--axes", "roll"), sibling, tmp_path, before)
    assert sibling.read_text() == "mine"


@pytest.mark.parametrize("where", ["missing_folder", "folder_is_a_file", "out_is_a_folder", "out_is_the_video"])
def test_impossible_output_is_refused_before_any_work(copied, tmp_path, where):
    targets = {
        "missing_folder": tmp_path / "nowhere" / "x.funscript",
        "folder_is_a_file": copied / "x.funscript",
        "out_is_a_folder": _mkdir(tmp_path / "scripts"),
        "out_is_the_video": copied,
    }
    out = targets[where]
    before = set(os.listdir(tmp_path))
    for force in ([], ["--force"]):
        assert_refused(run_cli("generate", copied, "--out", out, *force), out, tmp_path, before)


@pytest.mark.parametrize("option", [["--range", "50,50"], ["--range", "0,120"], ["--max-speed", "-1"],
                                    ["--start", "-1"], ["--start", "2", "--end", "1"], ["--axes", "pitch"],
                                    ["--poi", "1,2,3"], ["--poi-size", "0", "--poi", "0.5,0.5"],
                                    # nan passed every check and meant no limit, inf crashed deep in the work
                                    ["--smooth", "nan"], ["--smooth", "inf"], ["--max-speed", "nan"],
                                    ["--simplify", "nan"], ["--poi", "nan,0.5"], ["--poi-size", "inf", "--poi", "1,1"],
                                    # a minute of smoothing for nothing; a script too late to be read back
                                    ["--smooth", "1e9"], ["--offset", "999999999999"],
                                    ["--poi-size", "40"]])
def test_bad_option_is_a_usage_error(copied, tmp_path, option):
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", copied, *option)
    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.splitlines()[-1].startswith("Error: Invalid value")
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("method", ["flow", "model"])
@pytest.mark.parametrize("option, message", [
    (["--start", "10"], "start 10 s is not before the end of the video (4.0 s)"),
    (["--poi", "500,20"], "point of interest 500,20 is outside the 320x180 frame"),
    (["--offset", "-100000"], "before 0 s with an offset of -100000 ms (the video ends at 4.0 s)"),
    # the block strokes in the middle; the corner is still, but the video is not
    (["--poi", "10,10", "--poi-size", "16"], "no motion found in the --poi box at 10,10 (pixels)"),
])
def test_option_that_selects_nothing_names_the_video(copied, tmp_path, option, message, method):
    before = set(os.listdir(tmp_path))
    run = run_cli("generate", copied, *option, "--method", method)
    assert_refused(run, copied, tmp_path, before)
    assert message in run.err


# ----------------------------------------------------------------------------------------------
# real child processes


# Ctrl+C reaches the child as KeyboardInterrupt even where the test runner's shell ignores SIGINT for
# background jobs (a child inherits "ignore", and Python then installs no handler).
CTRL_C_ABLE_MAIN = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "from autofunscript.cli import main; main()")


@pytest.mark.slow
def test_ctrl_c_writes_the_part_done_marked_partial_and_exits_130(tmp_path):
    """The progress bar draws on a terminal (a pty here); once it shows progress, Ctrl+C."""
    times = cfr_times(30.0)
    positions = eased(times, *stroke_plan(30.0, seed=8))
    video = encode(tmp_path / "long.mp4", render((192, 108), [Block(96, positions, width=32, height=24)],
                                                 margin=16), times)
    master, terminal = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_ABLE_MAIN, "generate", str(video)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=terminal, env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(terminal)
    shown = b""
    try:
        deadline = time.monotonic() + 300
        while max([0, *map(int, re.findall(rb"(\d+)%", shown))]) < 5:
            assert child.poll() is None and time.monotonic() < deadline, shown
            if select.select([master], [], [], 1.0)[0]:
                try:
                    shown += os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal, i.e. it ended
                    pytest.fail(f"generate ended before it was interrupted: {shown!r}")
        child.send_signal(signal.SIGINT)
        while True:  # drain the terminal until the child is gone, so it never blocks writing to it
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
        out = child.stdout.read().decode()
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    assert code == 130, shown
    assert b"interrupted: wrote the part done so far" in shown and b"Traceback" not in shown
    assert shown.count(b"stopping: analysing and writing the part read so far") == 1
    script = read_funscript(tmp_path / "long.funscript")
    assert "partial: interrupted at" in script.metadata["notes"]
    assert 2 <= len(script) and script.at[-1] < 29_000
    assert out.startswith(f"{tmp_path / 'long.funscript'}: ")
    assert sorted(os.listdir(tmp_path)) == ["long.funscript", "long.mp4"]


@pytest.mark.slow
def test_unwritable_output_folder_is_refused(stroke, tmp_path):
    """A read-only folder, in a child process that (when root) has given up root's right to write anywhere.
    With --force, as that once skipped the folder checks."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv: no folder is read-only to root")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip("root, and setpriv cannot drop the override capabilities here")
    out = locked / "x.funscript"
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "autofunscript", "generate", str(stroke.path),
                                 "--out", str(out), "--force"], capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    assert_refused(Run(result.returncode, result.stdout, result.stderr), out, locked, set())
    assert result.stderr.splitlines()[-1] == f"error: {out}: folder {locked} is not writable"


def test_initial_position_reaches_the_model_and_is_refused_for_flow(stroke, tmp_path):
    low = generated(tmp_path, stroke.path, "--method", "model", "--initial-position", "0", name="low.funscript")
    high = generated(tmp_path, stroke.path, "--method", "model", "--initial-position", "100", name="high.funscript")
    assert "initial_position=100" in high.metadata["notes"]
    # the hint is one of the model's inputs: it changes the prediction, most near the start
    assert not (np.array_equal(low.at, high.at) and np.array_equal(low.pos, high.pos))
    run = run_cli("generate", stroke.path, "--out", tmp_path / "flow.funscript", "--initial-position", "50")
    assert run.code == 2 and "--method model" in run.err and "Traceback" not in run.err
    assert not (tmp_path / "flow.funscript").exists()
