"""The video layer on small videos made here with PyAV: timestamps, geometry, seeking and damage."""

from __future__ import annotations

import logging
import math
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from autofunscript.errors import VideoError
from autofunscript.video import open_video, probe
from autofunscript.video.stream import duration_tag
from video_clips import level_frames, noise_frames, write_audio, write_video


def level_of(image: np.ndarray) -> float:
    return float(image.mean())


def expected_level(i: int, step: int = 8) -> int:
    return 16 + (step * i) % 224


def times_of(path: Path, **frames_args) -> list[float]:
    with open_video(path) as video:
        return [frame.time_s for frame in video.frames(**frames_args)]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def cfr_clip(clip_dir: Path) -> Path:
    """4 s at 30 fps with a keyframe every second; frame i's brightness is expected_level(i, 2)."""
    return write_video(clip_dir / "cfr.mp4", level_frames(120, step=2), options={"g": "30"})


# ---- timestamps ---------------------------------------------------------------------------------


def test_constant_rate_clip_has_exact_times_and_indexes(cfr_clip: Path) -> None:
    info = probe(cfr_clip)
    assert (info.width, info.height, info.rotation, info.has_audio) == (64, 48, 0, False)
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 120 and info.frame_count_exact
    assert info.duration_s == pytest.approx(4.0)
    with open_video(cfr_clip) as video:
        frames = list(video.frames())
    assert [f.index for f in frames] == list(range(120))
    assert [f.time_s for f in frames] == pytest.approx([i / 30 for i in range(120)], abs=1e-9)


def test_variable_rate_times_are_the_written_timestamps(clip_dir: Path) -> None:
    pts_ms = [0, 33, 50, 120, 130, 200, 333, 340, 500, 510, 700, 1000]
    path = write_video(clip_dir / "vfr.mp4", level_frames(len(pts_ms)), pts=pts_ms,
                       time_base=Fraction(1, 1000))
    assert times_of(path) == pytest.approx([p / 1000 for p in pts_ms], abs=1e-6)
    info = probe(path)
    assert info.frame_count == len(pts_ms) and info.frame_count_exact
    assert info.fps == pytest.approx((len(pts_ms) - 1) / 1.0, rel=0.02)  # the average over the timestamps


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "ts"])
def test_late_start_counts_from_the_start_of_the_file(clip_dir: Path, suffix: str) -> None:
    path = write_video(clip_dir / f"late.{suffix}", level_frames(30), pts=[45 + i for i in range(30)])
    times = times_of(path)
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert np.diff(times) == pytest.approx(np.full(29, 1 / 30), abs=1e-3)
    assert probe(path).duration_s == pytest.approx(1.0, abs=0.04)


def test_video_starting_after_the_audio_keeps_its_offset(clip_dir: Path) -> None:
    # A player's clock starts with the earliest stream: the script must follow it, not the video's own start.
    path = write_video(clip_dir / "delayed.mp4", level_frames(30), pts=[15 + i for i in range(30)],
                       audio_seconds=1.5)
    info = probe(path)
    assert info.has_audio
    assert times_of(path)[0] == pytest.approx(0.5, abs=1e-3)
    assert info.duration_s == pytest.approx(1.5, abs=1e-3)


def test_b_frames_come_out_in_presentation_order(clip_dir: Path) -> None:
    path = write_video(clip_dir / "bframes.mp4", level_frames(40, step=5), options={"bf": "3", "g": "20"})
    with av.open(str(path)) as container:
        packet_pts = [p.pts for p in container.demux(video=0) if p.size]
    assert packet_pts != sorted(packet_pts), "the encoder made no B-frames: this test would prove nothing"
    with open_video(path) as video:
        frames = list(video.frames())
    assert [f.time_s for f in frames] == pytest.approx([i / 30 for i in range(40)], abs=1e-9)
    assert [level_of(f.image) for f in frames] == pytest.approx(
        [expected_level(i, 5) for i in range(40)], abs=3)


# ---- geometry -----------------------------------------------------------------------------------


def marker_frame() -> np.ndarray:
    """64 wide, 32 high, dark, with a bright 8x8 square in the top-left corner."""
    image = np.full((32, 64, 3), 20, np.uint8)
    image[:8, :8] = 235
    return image


def bright_corner(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    corners = {"top-left": image[: h // 4, : w // 4], "top-right": image[: h // 4, -w // 4:],
               "bottom-left": image[-h // 4:, : w // 4], "bottom-right": image[-h // 4:, -w // 4:]}
    return max(corners, key=lambda name: corners[name].mean())


@pytest.mark.parametrize(("display_ccw", "clockwise", "corner"), [
    (0, 0, "top-left"),
    # a phone held upright records sideways and asks for a quarter turn clockwise (display matrix -90)
    (-90, 90, "top-right"),
    (90, 270, "bottom-left"),
    (180, 180, "bottom-right"),
])
def test_rotation_metadata_makes_frames_upright(clip_dir: Path, display_ccw: int, clockwise: int,
                                                corner: str) -> None:
    path = write_video(clip_dir / f"rot{display_ccw}.mp4", [marker_frame()] * 3, rotation=display_ccw)
    info = probe(path)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((64, 32) if clockwise in (0, 180) else (32, 64))
    with open_video(path) as video:
        grey = next(video.frames())
        small = next(video.frames(width=16, color=True))
    assert grey.image.shape == (info.height, info.width)
    assert bright_corner(grey.image) == corner
    assert small.image.shape == (16 * info.height // info.width, 16, 3)
    assert bright_corner(small.image) == corner


def test_rotation_matches_ffmpeg_autorotate(clip_dir: Path) -> None:
    ffmpeg = pytest.importorskip("shutil").which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    import subprocess

    path = write_video(clip_dir / "rot_ffmpeg.mp4", [marker_frame()], rotation=-90)
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    theirs = np.frombuffer(raw, np.uint8).reshape(64, 32)
    with open_video(path) as video:
        ours = next(video.frames()).image
    assert np.abs(ours.astype(int) - theirs).mean() < 2


def test_eye_crops_take_the_left_or_top_half(clip_dir: Path) -> None:
    sbs = np.full((48, 128, 3), 40, np.uint8)
    sbs[:, :64] = 200  # left eye bright, right eye dark
    ou = np.full((96, 64, 3), 40, np.uint8)
    ou[:48] = 200  # top eye bright
    sbs_path = write_video(clip_dir / "sbs.mp4", [sbs] * 2)
    ou_path = write_video(clip_dir / "ou.mp4", [ou] * 2)
    with open_video(sbs_path) as video:
        whole = next(video.frames()).image
        left = next(video.frames(eye="sbs")).image
        left_small = next(video.frames(eye="sbs", width=32)).image
    with open_video(ou_path) as video:
        top = next(video.frames(eye="ou")).image
        top_small = next(video.frames(eye="ou", width=32, color=True)).image
    assert whole.shape == (48, 128) and abs(whole[:, 64:].mean() - whole[:, :64].mean()) > 100
    assert left.shape == (48, 64) and left.mean() > 190
    assert left_small.shape == (24, 32) and left_small.mean() > 190  # width is the eye's width
    assert top.shape == (48, 64) and top.mean() > 190
    assert top_small.shape == (24, 32, 3) and top_small.mean() > 190


@pytest.mark.parametrize(("width", "shape"), [(160, (120, 160)), (100, (76, 100)), (64, (48, 64)),
                                              (None, (240, 320))])
def test_width_scales_keeping_the_aspect_with_even_height(clip_dir: Path, width: int | None,
                                                          shape: tuple[int, int]) -> None:
    path = clip_dir / "320x240.mp4"
    if not path.exists():
        write_video(path, noise_frames(2, 320, 240))
    with open_video(path) as video:
        image = next(video.frames(width=width)).image
        assert video.plan(width=width).out_height == shape[0]
    assert image.shape == shape and image.dtype == np.uint8 and image.flags.c_contiguous


def test_grey_equals_bgr_converted_to_grey(clip_dir: Path) -> None:
    y, x = np.mgrid[0:120, 0:160]
    image = np.dstack([x * 255 // 160, y * 255 // 120, (x + y) * 255 // 280]).astype(np.uint8)
    path = write_video(clip_dir / "colour.mp4", [image] * 2, options={"crf": "0"})
    with open_video(path) as video:
        grey = next(video.frames()).image.astype(int)
        bgr = next(video.frames(color=True)).image
    assert bgr.shape == (120, 160, 3)
    assert np.abs(bgr.astype(int) - image).mean() < 6  # colours survive
    difference = np.abs(grey - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int))
    assert difference.mean() < 2 and difference.max() <= 12
    assert grey.min() < 30 and grey.max() > 200  # full range, not limited-range luma


# ---- seeking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start_s", "end_s"), [(2.0, 3.0), (1.51, 2.2), (0.9, None), (3.95, None)])
def test_start_and_end_select_frames_with_exact_indexes(cfr_clip: Path, start_s: float,
                                                        end_s: float | None) -> None:
    with open_video(cfr_clip) as video:
        frames = list(video.frames(start_s=start_s, end_s=end_s))
    first, last = frames[0], frames[-1]
    assert start_s <= first.time_s < start_s + 1 / 30
    assert last.time_s < (end_s if end_s is not None else 4.0)
    assert last.time_s >= (end_s if end_s is not None else 4.0) - 1 / 30 - 1e-9
    assert [f.index for f in frames] == list(range(first.index, first.index + len(frames)))
    for frame in frames:
        assert frame.index == round(frame.time_s * 30)
        assert level_of(frame.image) == pytest.approx(expected_level(frame.index, 2), abs=2)


@pytest.mark.parametrize("suffix", ["mp4", "ts"])
def test_seeking_lands_on_the_first_frame_at_or_after_start_despite_reordering(clip_dir: Path,
                                                                              suffix: str) -> None:
    # At 5 fps a keyframe is presented 0.4-0.6 s after it is decoded, more than the seek margin, and
    # MPEG-TS seeks by timestamp are approximate: seeks that land after the start have to back off.
    path = write_video(clip_dir / f"slow_bframes.{suffix}", level_frames(40, step=5), rate=5,
                       options={"bf": "3", "g": "5"})
    with open_video(path) as video:
        for start_s in np.round(np.arange(0.05, 7.8, 0.3), 2):
            first = next(video.frames(start_s=start_s))
            assert first.index == math.ceil(start_s * 5)
            assert first.time_s == pytest.approx(first.index / 5)
            assert level_of(first.image) == pytest.approx(expected_level(first.index, 5), abs=3)


def test_seeking_without_a_full_index_numbers_frames_by_time(clip_dir: Path) -> None:
    path = write_video(clip_dir / "cfr.mkv", level_frames(90, step=2), options={"g": "30"})
    with open_video(path) as video:
        assert not video.info.frame_count_exact
        assert video.info.frame_count == 90
        frames = list(video.frames(start_s=1.5, end_s=2.0))
    assert frames[0].time_s == pytest.approx(1.5, abs=1e-3) and frames[0].index == 45
    assert [level_of(f.image) for f in frames] == pytest.approx(
        [expected_level(f.index, 2) for f in frames], abs=2)


def test_read_at_returns_the_frame_on_screen(cfr_clip: Path) -> None:
    with open_video(cfr_clip) as video:
        wanted = [1.51, 1.52, 1.6, 3.2, 0.2, 0.0, 3.99, -1.0, 100.0, 2.0 + 1e-9]
        got = [video.read_at(t) for t in wanted]
        small = video.read_at(2.5, width=32, color=True)
    expected = [45, 45, 48, 96, 6, 0, 119, 0, 119, 60]
    assert [f.index for f in got] == expected
    assert [f.time_s for f in got] == pytest.approx([i / 30 for i in expected], abs=1e-9)
    assert [level_of(f.image) for f in got] == pytest.approx([expected_level(i, 2) for i in expected], abs=2)
    assert small.index == 75 and small.image.shape == (24, 32, 3)


def test_stopping_early_ends_the_decode_thread(cfr_clip: Path) -> None:
    threads_before = threading.active_count()
    with open_video(cfr_clip) as video:
        for frame in video.frames():
            if frame.index == 3:
                break
        frames = video.frames()
        next(frames)
        frames.close()
    assert threading.active_count() == threads_before


# ---- errors and damage --------------------------------------------------------------------------


def test_decode_thread_errors_reach_the_caller(tmp_path: Path) -> None:
    path = write_video(tmp_path / "moved.mp4", level_frames(3))
    with open_video(path) as video:
        path.unlink()
        with pytest.raises(VideoError, match=r"moved\.mp4: no such file"):
            list(video.frames())


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match=r"notes\.mp4: not a video"):
        probe(path)


def test_still_image_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "cover.png"
    cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(VideoError, match=r"cover\.png: a still image"):
        probe(path)


@pytest.mark.parametrize(("name", "codec"), [("song.m4a", "aac"), ("song.wav", "pcm_s16le")])
def test_audio_only_file_has_no_video(tmp_path: Path, name: str, codec: str) -> None:
    path = write_audio(tmp_path / name, codec=codec)
    with pytest.raises(VideoError, match=rf"{name}: audio only"):
        open_video(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match=r"empty\.mp4: empty file"):
        probe(empty)
    with pytest.raises(VideoError, match=r"gone\.mp4: no such file"):
        probe(tmp_path / "gone.mp4")


def test_file_without_decodable_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "blank.mp4", noise_frames(10), container_options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    payload = data.index(b"mdat") + 4
    data[payload:] = bytes(len(data) - payload)  # the index stays, every frame's bytes become zeros
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError, match=r"blank\.mp4: no decodable video frames"):
        probe(path)


def test_one_frame_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "still.mp4", level_frames(1))
    info = probe(path)
    assert info.frame_count == 1 and info.duration_s == pytest.approx(1 / 30)
    with open_video(path) as video:
        frames = list(video.frames())
        assert video.read_at(5.0).index == 0
    assert [(f.index, f.time_s) for f in frames] == [(0, 0.0)]


def test_damaged_middle_is_skipped_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_video(tmp_path / "damaged.mp4", noise_frames(60), options={"g": "15"})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="autofunscript"), open_video(path) as video:
        frames = list(video.frames())
    assert 40 <= len(frames) < 60
    assert frames[-1].time_s == pytest.approx(59 / 30)  # decoding went on after the damage
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged.mp4: skipped" in warnings[0]


@pytest.mark.parametrize("kept, vfr", [(0.6, False), (0.8, False), (0.8, True)])
def test_truncated_file_yields_the_frames_before_the_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        kept: float, vfr: bool) -> None:
    # the index at the front (as for streaming) survives the cut, so the file still opens; cut late, the last
    # packets left in the file look like the end of a whole, shorter video (and of a faster one, where the rate
    # varies and is worked out from the first and last frames' times)
    times_s = [(round(i * 1000 / 30) + (4 if i % 3 == 1 else 0)) / 1000 if vfr else i / 30 for i in range(60)]
    timing = {"pts": [round(t * 1000) for t in times_s], "time_base": Fraction(1, 1000)} if vfr else {}
    path = write_video(tmp_path / "cut.mp4", noise_frames(60), container_options={"movflags": "faststart"}, **timing)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    with caplog.at_level(logging.WARNING, logger="autofunscript"), open_video(path) as video:
        assert video.info.fps == pytest.approx(30, abs=0.3)
        assert video.info.duration_s == pytest.approx(2.0, abs=0.02)
        frames = list(video.frames())
    assert 15 <= len(frames) < 60
    assert [f.time_s for f in frames] == pytest.approx(times_s[: len(frames)])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cut.mp4: decoding stopped at" in warnings[0] and "truncated" in warnings[0]



@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_truncated_file_without_a_frame_index_warns_from_its_header(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                     suffix: str) -> None:
    # Matroska and AVI keep no index of every frame in front; the last packets left in a cut file pass for the
    # video's end, and only the header (Matroska's DURATION tag, AVI's frame count) still says how long it was
    path = write_video(tmp_path / f"whole{suffix}", noise_frames(60))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with caplog.at_level(logging.WARNING, logger="autofunscript"):
        for video_path in (path, cut):
            with open_video(video_path) as video:
                assert video.info.duration_s == pytest.approx(2.0, abs=0.05)
                frames = list(video.frames())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert 15 <= len(frames) < 50
    stopped = [w for w in warnings if "decoding stopped at" in w]
    assert len(stopped) == 1 and f"cut{suffix}: decoding stopped at" in stopped[0], warnings
    assert not any(f"whole{suffix}" in w for w in warnings), warnings  # a whole file is not called cut short


@pytest.mark.parametrize("metadata, tag", [({"DURATION": "00:00:02.0"}, "00:00:02.0"),
                                           # mkvmerge's tags, in English, as FFmpeg names them
                                           ({"BPS-eng": "9", "DURATION-eng": "00:00:03.0"}, "00:00:03.0"),
                                           ({"duration": "00:00:04.0"}, "00:00:04.0"),
                                           ({"DURATIONS": "1", "ENCODER": "x"}, None)])
def test_duration_tag_is_found_whatever_its_language(metadata: dict, tag: str | None) -> None:
    assert duration_tag(metadata) == tag


def test_truncated_file_without_its_index_is_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut_noindex.mp4", noise_frames(30))  # index written at the end
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut_noindex\.mp4: not a video or an unknown/damaged format"):
        probe(path)


@pytest.mark.slow
def test_8k_video_decodes_scaled(tmp_path: Path) -> None:
    frame = np.zeros((4320, 7680), np.uint8)
    frame[:, :3840] = 200
    path = write_video(tmp_path / "8k.mp4", [frame, frame], options={"preset": "ultrafast"})
    info = probe(path)
    assert (info.width, info.height) == (7680, 4320)
    with open_video(path) as video:
        images = [f.image for f in video.frames(width=640)]
    assert len(images) == 2 and images[0].shape == (360, 640)
    assert images[0][:, :300].mean() > 190 and images[0][:, 340:].mean() < 20


def test_absurd_frame_size_is_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "huge.mkv", [np.zeros((8200, 8200), np.uint8)], codec="rawvideo",
                       pix_fmt="gray")
    with pytest.raises(VideoError, match=r"huge\.mkv: frame size 8200x8200 is larger than 8192x8192"):
        probe(path)


# ---- real clips whose headers lie (../shared, when present) ---------------------------------------

SHARED_VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"


@pytest.mark.parametrize(("name", "fps", "frame_count"), [
    ("pendulum_green_clock.mp4", 25.0, 301),  # header: 411 frames at 31.5 fps (edit list)
    ("pendulum_pair_grey.mp4", 30000 / 1001, 581),  # header: 631 frames
])
def test_real_clip_timing_comes_from_its_frames(name: str, fps: float, frame_count: int) -> None:
    path = SHARED_VIDEOS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    info = probe(path)
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert info.frame_count == frame_count and info.frame_count_exact
    with open_video(path) as video:
        everything = {round(f.time_s, 6): f.index for f in video.frames(width=32)}
        assert len(everything) == frame_count
        assert max(everything) == pytest.approx(info.duration_s - 1 / fps)
        middle = list(video.frames(start_s=info.duration_s / 2, end_s=info.duration_s / 2 + 0.3, width=32))
    assert middle and all(everything[round(f.time_s, 6)] == f.index for f in middle)


def test_frames_without_deblocking_keep_timing_and_stay_close(clip_dir: Path) -> None:
    # strong compression of moving texture: the deblocking filter has block edges to smooth
    path = write_video(clip_dir / "blocky.mp4", noise_frames(60), options={"crf": "40", "g": "30"})
    with open_video(path) as video:
        deblocked = list(video.frames(width=160))
        analysed = list(video.frames(width=160, deblock=False))
    assert [f.time_s for f in analysed] == [f.time_s for f in deblocked]
    difference = np.array([np.abs(a.image.astype(int) - d.image.astype(int)).mean()
                           for a, d in zip(analysed, deblocked)])
    assert difference.min() > 0, "the filter was not skipped: this test would prove nothing"
    # the error carries into the frames that reference a frame, but each keyframe starts afresh: at this
    # strong compression it stays under 3 grey levels (measured 0.2-2.8)
    assert difference.max() < 3.0
