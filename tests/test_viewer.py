"""`autofunscript view`: live prediction, POI logs, export names, and real windows driven on Xvfb with xdotool."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from autofunscript.errors import AutofunscriptError
from autofunscript.pipeline import GenerateOptions, LiveTracker, Poi, generate, merge_spans
from autofunscript.script.extrema import find_reversals
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.video.stream import open_video
from autofunscript.viewer import (POI_BOX_COLOUR, REGIONS, SEEK_BAR_H, SEEK_COLOUR, Layout, PoiEntry,
                                  display_problem, display_width_for, entry_in_effect, export_paths, format_poi_log,
                                  read_poi_log)

CLIP_SIZE = (1600, 900)  # wider than the 1280 px display, so clicks must be mapped back to source pixels
CLIP_FPS = 25
CLIP_SECONDS = 8.0
# Two textured blocks bob up and down: (centre x as a fraction of the width, Hz, amplitude as a fraction of the
# height). The fast, big one dominates the whole frame; the slow one on the right is what the POI clicks pick.
FAST = (0.3, 1.5, 0.12)
SLOW = (0.7, 0.5, 0.06)
BLOCK = (CLIP_SIZE[0] // 8, CLIP_SIZE[1] // 4)
# Where the slow block rests, in source pixels and in window pixels (display scale 1280 / 1600 under the seek bar).
SLOW_SOURCE = (SLOW[0] * CLIP_SIZE[0], CLIP_SIZE[1] / 2)
SLOW_CLICK = (round(SLOW_SOURCE[0] * 0.8), round(SLOW_SOURCE[1] * 0.8) + SEEK_BAR_H)


def make_clip(path: Path) -> None:
    rng = np.random.default_rng(7)
    w, h = CLIP_SIZE
    background = cv2.resize(rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_NEAREST)
    block = cv2.resize(rng.integers(0, 255, (BLOCK[1] // 6, BLOCK[0] // 6, 3), dtype=np.uint8), BLOCK,
                       interpolation=cv2.INTER_NEAREST)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(int(CLIP_SECONDS * CLIP_FPS)):
            t = i / CLIP_FPS
            image = background.copy()
            for cx, hz, amplitude in (FAST, SLOW):
                top = int(h / 2 + amplitude * h * np.sin(2 * np.pi * hz * t) - BLOCK[1] / 2)
                left = int(cx * w - BLOCK[0] / 2)
                image[top : top + BLOCK[1], left : left + BLOCK[0]] = block
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("view") / "clip.mp4"
    make_clip(path)
    return path


def strokes_per_second(script: Funscript) -> float:
    """Reversals per second; the first and last action are not reversals, though the finder reports them."""
    index = find_reversals(script.pos.astype(float), 20.0).index
    inside = index[(index > 0) & (index < len(script) - 1)]
    return inside.size / ((script.at[-1] - script.at[0]) / 1000.0)


# ----------------------------------------------------------------------------------------------
# Live prediction (pipeline.LiveTracker) without a window


def feed(tracker: LiveTracker, clip: Path, start_s: float = 0.0, end_s: float | None = None) -> None:
    with open_video(clip) as video:
        for frame in video.frames(start_s=start_s, end_s=end_s, width=tracker.options.analysis_width):
            tracker.push(frame.image, frame.time_s)


@pytest.mark.slow
def test_live_prediction_is_generate_fed_frame_by_frame(clip):
    options = GenerateOptions(end_s=5.0)
    tracker = LiveTracker(options, CLIP_SIZE)
    tracker.set_region("full", None)
    tracker.set_region("poi", Poi(*SLOW_SOURCE, CLIP_SIZE[1] / 4))
    feed(tracker, clip, end_s=options.end_s)
    full, poi = tracker.script("full"), tracker.script("poi")
    expected = generate(clip, options).script
    np.testing.assert_array_equal(full.at, expected.at)
    np.testing.assert_array_equal(full.pos, expected.pos)
    # the whole frame follows the dominant fast block (3 reversals/s), the POI the slow one (1/s)
    assert strokes_per_second(full) == pytest.approx(2 * FAST[1], rel=0.25)
    assert strokes_per_second(poi) == pytest.approx(2 * SLOW[1], rel=0.3)
    preview = tracker.preview("poi")
    times, positions = preview.times_s, preview.positions
    assert times[-1] == pytest.approx(options.end_s - 1 / CLIP_FPS, abs=1e-3)
    assert times[-1] - times[0] <= tracker.preview_s + 1e-9
    assert np.nanmax(positions) - np.nanmin(positions) > 50
    # each preview outlines the block it follows (fractions of the frame): a user sees which one that is
    for name, (centre_x, _, amplitude) in (("full", FAST), ("poi", SLOW)):
        x0, y0, x1, y1 = tracker.preview(name).roi
        assert x0 < centre_x < x1 and x1 - x0 < 0.25
        assert y0 < 0.5 + amplitude and y1 > 0.5 - amplitude


@pytest.mark.slow
def test_spans_around_a_seek_merge_into_one_script(clip):
    def tracker_over(*ranges):
        tracker = LiveTracker(GenerateOptions(), CLIP_SIZE)
        tracker.set_region("full", None)
        for start, end in ranges:
            feed(tracker, clip, start, end)
            tracker.break_spans()
        return tracker.script("full")

    merged = tracker_over((0.0, 3.0), (2.0, 5.0))
    later = tracker_over((2.0, 5.0))
    assert (np.diff(merged.at) > 0).all()
    assert merged.at[0] == 0 and merged.at[-1] == later.at[-1]
    # the later span replaces the earlier one where they overlap (the junction may be slowed down)
    after = merged.at >= later.at[0]
    assert after.sum() == len(later)
    assert (merged.pos[after] == later.pos).mean() > 0.9


def test_merge_spans_later_wins_inside_its_range():
    at, pos = merge_spans([(np.array([0, 100, 200, 300]), np.array([0, 100, 0, 100])),
                           (np.array([150, 250]), np.array([50, 60])),
                           (np.array([], np.int64), np.array([], np.int64))])
    assert at.tolist() == [0, 100, 150, 250, 300]
    assert pos.tolist() == [0, 100, 50, 60, 100]


@pytest.mark.slow
def test_live_model_prediction_is_generate_model_fed_frame_by_frame(clip):
    options = GenerateOptions(method="model", end_s=5.0)
    tracker = LiveTracker(options, CLIP_SIZE)
    tracker.set_region("full", None)
    feed(tracker, clip, end_s=options.end_s)
    live = tracker.script("full")
    expected = generate(clip, options).script
    np.testing.assert_array_equal(live.at, expected.at)
    np.testing.assert_array_equal(live.pos, expected.pos)
    assert strokes_per_second(live) == pytest.approx(2 * FAST[1], rel=0.25)


def test_live_model_refuses_a_model_with_image_inputs(tmp_path, monkeypatch):
    from autofunscript.model.infer import MODEL_ENV, card_path, shipped_model_path

    weights = tmp_path / "edges.onnx"
    shutil.copy(shipped_model_path(), weights)
    card = json.loads(card_path(shipped_model_path()).read_text())
    card["config"]["inputs"] = ["flow", "edges"]
    card_path(weights).write_text(json.dumps(card))
    monkeypatch.setenv(MODEL_ENV, str(weights))
    with pytest.raises(AutofunscriptError, match="image inputs \\(edges\\)") as caught:
        LiveTracker(GenerateOptions(method="model"), CLIP_SIZE)
    assert str(weights) in str(caught.value) and "\n" not in str(caught.value)


# ----------------------------------------------------------------------------------------------
# Viewer pieces without a window


def test_poi_log_round_trip_and_replay_lookup(tmp_path):
    entries = [PoiEntry(0.48, 1120.6, 450.6, 225.0), PoiEntry(2.0, 300.0, 200.5, 281.2)]
    path = tmp_path / "clip.poi.csv"
    path.write_text(format_poi_log(entries[::-1]))
    loaded = read_poi_log(path)
    assert loaded == entries
    assert [entry_in_effect(loaded, t) for t in (0.0, 0.48, 1.9, 2.0, 99.0)] == [None, 0, 0, 1, 1]


@pytest.mark.parametrize("text, problem", [("", "not a POI log"), ("x,y\n1,2\n", "not a POI log"),
                                           ("time_s,x,y,size\n1,2,3\n", "line 2"),
                                           ("time_s,x,y,size\n1,2,3,4\n1,2,three,4\n", "line 3"),
                                           ("time_s,x,y,size\n1,2,3,0\n", "line 2")])
def test_bad_poi_log_is_a_one_line_error(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AutofunscriptError, match=problem) as caught:
        read_poi_log(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_export_names_never_reuse_an_existing_file(tmp_path):
    first = export_paths(tmp_path, "clip")
    assert first["full"].name == "clip.funscript" and first["poi"].name == "clip.poi.funscript"
    assert first["crop"].name == "clip.crop.funscript" and first["log"].name == "clip.poi.csv"
    first["log"].write_text("")  # any one file of a set taken moves the whole set on
    assert {p.name for p in export_paths(tmp_path, "clip").values()} == {
        "clip-2.funscript", "clip-2.crop.funscript", "clip-2.poi.funscript", "clip-2.poi.csv"}


def test_layout_maps_window_pixels_to_source_pixels():
    assert display_width_for(1600, 900) == 1280
    assert display_width_for(3840, 1920) == 1280
    assert display_width_for(1080, 1920) == 404  # portrait: the height limits
    assert display_width_for(320, 180) == 640  # small videos are enlarged to stay readable
    layout = Layout(1600, 900, 1280, 720)
    assert layout.seek_fraction(640, SEEK_BAR_H - 1) == pytest.approx(0.5, abs=1e-3)
    assert layout.seek_fraction(640, SEEK_BAR_H) is None
    assert layout.to_source(0, SEEK_BAR_H) == pytest.approx((0.625, 0.625))
    assert layout.to_source(1279, SEEK_BAR_H + 719) == pytest.approx((1599.375, 899.375))
    assert layout.to_source(100, SEEK_BAR_H + 720) is None  # the graph panel under the frame
    assert layout.to_display(*layout.to_source(896, 384)) == (896, 384)


def run_main(*args: str, capsys) -> tuple[int, str]:
    """The console entry point in this process: (exit code, stderr)."""
    from autofunscript.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["autofunscript", *args])
        with pytest.raises(SystemExit) as exited:
            main()
    return exited.value.code, capsys.readouterr().err


def test_without_a_display_the_error_suggests_generate(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # restored afterwards (the view command sets it)
    monkeypatch.delenv("DISPLAY", raising=False)
    code, err = run_main("view", str(clip), capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no display") and "autofunscript generate" in lines[0]
    assert not (tmp_path / "predictions").exists()
    monkeypatch.setenv("DISPLAY", ":4242")  # set, but nobody serves it: Qt would abort the process
    assert "cannot reach the X display :4242" in display_problem()


def test_a_file_where_exports_go_or_a_folder_as_video_is_refused_before_the_window(clip, tmp_path, monkeypatch,
                                                                                    capsys):
    """Found only at the export, a file named `predictions` cost the whole session."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    (tmp_path / "predictions").write_text("not a folder")
    code, err = run_main("view", str(clip), capsys=capsys)
    assert code == 2
    assert err.strip() == "error: predictions: is a file, not a folder; exports go there (move or rename it)"
    code, err = run_main("view", str(tmp_path), capsys=capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path}: is a folder, not a video"


# ----------------------------------------------------------------------------------------------
# Real windows: Xvfb + xdotool, screen grabs and window closing through libX11


@pytest.fixture  # a fresh X server per test: no window of an earlier test can be grabbed or sent keys
def xdisplay():
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing or ctypes.util.find_library("X11") is None:
        pytest.skip(f"window tests need Xvfb, xdotool and libX11 (missing: {', '.join(missing) or 'libX11'}; "
                    "scripts/setup installs them)")
    read_fd, write_fd = os.pipe()
    # -noreset: by default the server resets when its last client disconnects, and a reset drops every
    # connection still in its handshake. The tests' short-lived xdotool clients come and go while the viewer
    # connects, so the viewer's Qt sometimes died with "could not connect to display" (about 1 start in 8).
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp",
                               "-noreset"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20)
        number = os.read(read_fd, 32).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.fail("Xvfb did not report a display number within 20 s")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(timeout=10)


class X11:
    """The few libX11 calls the tests need: grab a window's pixels, ask a window to close (as a window manager)."""

    class _Image(ctypes.Structure):
        _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                    ("format", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte)), ("byte_order", ctypes.c_int),
                    ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int),
                    ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int)]

    class _ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class _Event(ctypes.Union):
        pass

    _Event._fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]

    def __init__(self, display: str) -> None:
        lib = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11"))
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XGetImage.restype = ctypes.POINTER(self._Image)
        lib.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                  ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
        lib.XInternAtom.restype = ctypes.c_ulong
        lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                                   ctypes.POINTER(self._Event)]
        lib.XFlush.argtypes = [ctypes.c_void_p]
        lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        lib.XFree.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.display = lib.XOpenDisplay(display.encode())
        assert self.display, f"cannot open X display {display}"

    def close(self) -> None:
        self.lib.XCloseDisplay(self.display)

    def grab(self, window: int, width: int, height: int) -> np.ndarray:
        """The window's pixels as BGR (24-bit Xvfb screens are 32 bits per pixel, BGRX in memory)."""
        image = self.lib.XGetImage(self.display, window, 0, 0, width, height, 0xFFFFFFFF, 2)  # ZPixmap
        assert image, "XGetImage failed"
        info = image.contents
        rows, cols, stride, bits = info.height, info.width, info.bytes_per_line, info.bits_per_pixel
        raw = np.ctypeslib.as_array(info.data, shape=(rows * stride,)).copy()
        self.lib.XFree(info.data)
        self.lib.XFree(image)
        assert bits == 32
        return raw.reshape(rows, stride)[:, : cols * 4].reshape(rows, cols, 4)[..., :3]

    def request_close(self, window: int) -> None:
        """What a window manager sends when the user clicks the close button: WM_DELETE_WINDOW."""
        event = self._Event()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = self.lib.XInternAtom(self.display, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = self.lib.XInternAtom(self.display, b"WM_DELETE_WINDOW", 0)
        self.lib.XSendEvent(self.display, window, 0, 0, ctypes.byref(event))
        self.lib.XFlush(self.display)


class Viewer:
    """`autofunscript view` in a subprocess on the test's X display, with its window and output lines."""

    def __init__(self, display: str, cwd: Path, *args: str, width: int = 1280) -> None:
        self.display = display
        self.proc = subprocess.Popen([sys.executable, "-m", "autofunscript", "view", *args], cwd=cwd,
                                     env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        # input counts once the window shows its first picture at its final size
        deadline = time.monotonic() + 60
        self.window = ""
        while not self.window or f"WIDTH={width}" not in self.xdotool("getwindowgeometry", "--shell", self.window):
            if self.proc.poll() is not None:
                pytest.fail(f"the viewer exited with {self.proc.returncode} before showing its window: {self.stderr()}")
            assert time.monotonic() < deadline, "the viewer window never showed a picture"
            time.sleep(0.05)
            if not self.window:
                found = subprocess.run(["xdotool", "search", "--onlyvisible", "--pid", str(self.proc.pid), "--name",
                                        "autofunscript view"], env={**os.environ, "DISPLAY": display},
                                       capture_output=True, text=True, timeout=10).stdout.split()
                self.window = found[0] if found else ""
        self._wait_for_first_picture(width, deadline)

    def _wait_for_first_picture(self, width: int, deadline: float) -> None:
        """Until the window shows its seek bar (never black once painted).

        Qt 5.15 on an X server without a window manager now and then never paints a freshly mapped window:
        it misses the exposure and drops every later paint until the window is exposed again (about one
        start in ten under CPU load; the window stays black for minutes, keys still work). A window
        manager maps windows itself and users never see this; here the test re-maps a window that stays
        black, which exposes it again."""
        x11 = X11(self.display)
        try:
            remap_at = time.monotonic() + 3
            while not x11.grab(int(self.window), width, SEEK_BAR_H).any():
                assert time.monotonic() < deadline, "the viewer window never showed a picture"
                if time.monotonic() > remap_at:
                    self.xdotool("windowunmap", "--sync", self.window)
                    self.xdotool("windowmap", "--sync", self.window)
                    remap_at = time.monotonic() + 3
                time.sleep(0.05)
        finally:
            x11.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def xdotool(self, *args: str, timeout: float = 10) -> str:
        result = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": self.display},
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"xdotool {args}: {result.stderr}"
        return result.stdout

    def press(self, key: str, line: str | None = None, title: str | None = None, resend_after_s: float = 15) -> str | None:
        """Send one key and wait until the viewer shows it took it: an output line or the window title.

        Qt's waitKey reports only the last key since its previous call, so a key sent before the viewer
        took the one before it can be lost: one key at a time, each acknowledged. Qt on a bare X server
        also drops a sent key now and then under load (once in CI an `e` never reached the viewer while
        playback went on), so a key not acknowledged within `resend_after_s` is sent again, twice at most.
        Returns the line."""
        assert line is not None or title is not None, "every key needs an acknowledgement to wait for"
        for attempt in range(3):
            self.xdotool("key", "--window", self.window, key)
            last = attempt == 2
            if title is not None:
                if self.wait_title(title, timeout=30 if last else resend_after_s, fail=last) is None:
                    continue
                if line is None:
                    return None
            found = self.wait_for(line, timeout=120 if last else resend_after_s, fail=last)
            if found:
                return found[0]
        return None

    def click(self, x: int, y: int) -> None:
        self.xdotool("mousemove", "--window", self.window, str(x), str(y), "click", "1")

    def wait_for(self, text: str, count: int = 1, timeout: float = 120, fail: bool = True) -> list[str]:
        """The next `count` output lines containing `text`; on timeout the test fails with all output so
        far, or with fail=False the lines found so far are returned (the viewer exiting always fails)."""
        deadline = time.monotonic() + timeout
        matches = []
        while len(matches) < count:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                if not fail:
                    return matches
                line = None
            if line is None:
                pytest.fail(f"no {text!r} in the viewer's output: {self.seen}; stderr: {self.stderr()}")
            self.seen.append(line)
            if text in line:
                matches.append(line)
        return matches

    def wait_title(self, text: str, timeout: float = 30, fail: bool = True) -> str | None:
        """Wait until the window title (which shows the viewer's state) contains `text` (None on timeout
        with fail=False)."""
        deadline = time.monotonic() + timeout
        while text not in (title := self.xdotool("getwindowname", self.window)):
            if time.monotonic() > deadline:
                assert not fail, f"window title {title.strip()!r} never showed {text!r}"
                return None
            time.sleep(0.05)
        return title

    def wait_clock(self, seconds: int, timeout: float = 60) -> None:
        """Wait until playback has reached `seconds` (the title shows the time in whole seconds)."""
        deadline = time.monotonic() + timeout
        while (shown := clock_seconds(self.xdotool("getwindowname", self.window))) < seconds:
            assert time.monotonic() < deadline, f"playback stayed at {shown} s, never reached {seconds} s"
            time.sleep(0.05)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def finish(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def clock_seconds(text: str) -> float:
    """The first m:ss(.s) or h:mm:ss(.s) time in `text`, in seconds."""
    found = re.search(r"\b(\d+(?::\d\d)+(?:\.\d)?)\b", text)
    assert found, f"no time in {text!r}"
    return sum(float(part) * 60**i for i, part in enumerate(reversed(found.group(1).split(":"))))


SESSION_END_S = 5.0


@pytest.mark.display
@pytest.mark.slow
def test_interactive_session_exports_three_predictions_and_the_poi_log(clip, xdisplay, tmp_path):
    with Viewer(xdisplay, tmp_path, str(clip), "--hold", "--end", str(SESSION_END_S)) as viewer:
        # each step waits for the viewer to show it took the input (title or output), not for a time
        viewer.press("p", title="holding, predicting")
        viewer.press("h", title="playing")
        viewer.wait_clock(1)  # a second of the whole frame predicted before the POI is placed
        viewer.press("h", title="holding")
        viewer.click(*SLOW_CLICK)
        poi_at_s = clock_seconds(viewer.wait_for("POI at")[0].rpartition(" from ")[2])
        viewer.press("bracketright", line="POI at")
        viewer.press("h", title="playing")
        viewer.wait_clock(math.floor(poi_at_s) + 2)  # over a second of the POI predicted before the export
        viewer.press("e", line="exporting:")
        early = viewer.wait_for("actions over", count=3)
        viewer.wait_for("end of video")  # playback is real time at best, slower on a busy machine
        viewer.press("q", line="exporting:")
        final = viewer.wait_for("actions over", count=3)
        viewer.wait_for("POI changes")
        assert viewer.finish() == 0, viewer.stderr()
    out = tmp_path / "predictions"
    assert sorted(p.name for p in out.iterdir()) == [
        "clip-2.crop.funscript", "clip-2.funscript", "clip-2.poi.csv", "clip-2.poi.funscript",
        "clip.crop.funscript", "clip.funscript", "clip.poi.csv", "clip.poi.funscript"]
    assert all(line.startswith(str(Path("predictions", "clip."))) for line in early)
    assert all(line.startswith(str(Path("predictions", "clip-2."))) for line in final)
    full, crop, poi = (read_funscript(out / f"clip-2{suffix}.funscript") for suffix in ("", ".crop", ".poi"))
    assert len(crop) > 10
    assert full.metadata["title"] == "clip" and "whole frame" in full.metadata["notes"]
    # each prediction has its own timestamps: the POI one starts at the click, a second after the full frame's
    assert full.at[0] < 200 and poi.at[0] >= 1000
    assert strokes_per_second(full) == pytest.approx(2 * FAST[1], rel=0.3)
    assert strokes_per_second(poi) < 0.6 * strokes_per_second(full)
    # the mid-way export stopped where playback was then; the final one runs to the end of the clip
    assert read_funscript(out / "clip.funscript").at[-1] < full.at[-1] - 1000
    assert full.at[-1] >= (SESSION_END_S - 0.2) * 1000
    log = read_poi_log(out / "clip-2.poi.csv")
    assert [e.size for e in log] == pytest.approx([CLIP_SIZE[1] / 4, CLIP_SIZE[1] / 4 * 1.25], rel=1e-3)
    assert all(e.x == pytest.approx(SLOW_SOURCE[0], abs=2) and e.y == pytest.approx(SLOW_SOURCE[1], abs=2)
               for e in log)
    assert log[0].time_s == log[1].time_s == pytest.approx(poi_at_s, abs=0.05)
    assert 1.0 <= poi_at_s < 2.0


@pytest.mark.display
def test_overlay_is_drawn_and_closing_the_window_saves(clip, xdisplay, tmp_path):
    x11 = X11(xdisplay)
    try:
        with Viewer(xdisplay, tmp_path, str(clip), "--predict") as viewer:
            viewer.click(*SLOW_CLICK)
            viewer.wait_for("POI at")
            viewer.press("question", line="help shown")
            width, height = 1280, SEEK_BAR_H + 720 + 110
            box_half = round(CLIP_SIZE[1] / 4 * 0.8 / 2)
            deadline = time.monotonic() + 30  # window analysis runs in the background and may lag on a busy machine
            while True:
                shot = x11.grab(int(viewer.window), width, height)
                box_edge = shot[SLOW_CLICK[1] - box_half + 5 : SLOW_CLICK[1] + box_half - 5, SLOW_CLICK[0] - box_half]
                box_drawn = (np.abs(box_edge.astype(int) - POI_BOX_COLOUR).max(axis=1) < 40).mean() > 0.9
                help_box = shot[SEEK_BAR_H + 20 : SEEK_BAR_H + 260, 30:400]
                help_drawn = np.median(help_box) < 60 and (help_box.min(axis=2) > 200).mean() > 0.01
                graph = shot[SEEK_BAR_H + 720 :, : 1280 - 150]
                graphs_drawn = (np.abs(graph.astype(int) - (255, 160, 0)).max(axis=2) < 60).sum() > 50
                if box_drawn and help_drawn and graphs_drawn:
                    break
                if time.monotonic() > deadline:
                    cv2.imwrite(str(tmp_path / "overlay.png"), shot)
                    pytest.fail(f"overlay not drawn (POI box {box_drawn}, help {help_drawn}, graph {graphs_drawn}); "
                                f"screen grab in {tmp_path / 'overlay.png'}")
                time.sleep(0.3)
            seek_bar = shot[4 : SEEK_BAR_H - 4]
            assert (np.abs(seek_bar.astype(int) - SEEK_COLOUR).max(axis=2) < 30).any()
            video_area = shot[SEEK_BAR_H + 300 : SEEK_BAR_H + 700, 500:700]
            assert video_area.std() > 20  # the frame itself shows under the overlay
            x11.request_close(int(viewer.window))
            viewer.wait_for("actions over")
            assert viewer.finish() == 0, viewer.stderr()
    finally:
        x11.close()
    assert (tmp_path / "predictions" / "clip.funscript").is_file()
    assert (tmp_path / "predictions" / "clip.poi.csv").is_file()


@pytest.mark.display
@pytest.mark.slow
def test_replayed_poi_log_steers_the_poi_prediction(clip, xdisplay, tmp_path):
    log = tmp_path / "session.poi.csv"
    log.write_text(format_poi_log([PoiEntry(0.5, *SLOW_SOURCE, CLIP_SIZE[1] / 4)]))
    with Viewer(xdisplay, tmp_path, str(clip), "--predict", "--replay-poi", str(log), "--end", "5") as viewer:
        for delay_ms in (28, 19, 13):  # shorter frame delay: faster than real time
            viewer.press("comma", line=f"frame delay {delay_ms} ms")
        viewer.wait_for("end of video")
        time.sleep(1.5)  # the previews take turns every half second: each has been redrawn on the last frame
        # the whole-frame prediction outlines what it follows in its colour: the fast block, whose centre the
        # 1280 px wide display shows at x 384
        picture = X11(xdisplay).grab(int(viewer.window), 1280, SEEK_BAR_H + 720)[SEEK_BAR_H:]
        ys, xs = np.nonzero((picture == REGIONS["full"].colour).all(axis=2))
        assert xs.size > 100 and abs(np.median(xs) - FAST[0] * 1280) < 1280 / 16
        viewer.press("q", line="exporting:")
        viewer.wait_for("POI changes")
        assert viewer.finish() == 0, viewer.stderr()
    out = tmp_path / "predictions"
    full, poi = read_funscript(out / "clip.funscript"), read_funscript(out / "clip.poi.funscript")
    assert poi.at[0] >= 500 and full.at[-1] < 5000
    assert strokes_per_second(poi) < 0.6 * strokes_per_second(full)
    replayed = read_poi_log(out / "clip.poi.csv")
    assert len(replayed) == 1 and replayed[0].x == pytest.approx(SLOW_SOURCE[0], abs=0.1)


@pytest.mark.display
@pytest.mark.slow
def test_seek_bar_and_seek_keys_work_while_holding_and_spans_merge(clip, xdisplay, tmp_path):
    with Viewer(xdisplay, tmp_path, str(clip), "--predict", "--hold", "--end", "5") as viewer:
        for delay_ms in (28, 19, 13):  # shorter frame delay: faster than real time
            viewer.press("comma", line=f"frame delay {delay_ms} ms")
        viewer.click(640, SEEK_BAR_H // 2)  # the middle of the seek bar: 2.5 s, still holding
        assert clock_seconds(viewer.wait_for("seek to")[0]) == pytest.approx(2.5, abs=0.05)
        viewer.press("h", title="playing")
        viewer.wait_for("end of video")
        viewer.press("e", line="exporting:")
        viewer.wait_for("actions over", count=2)
        assert viewer.press("z", line="seek to") == "seek to 0:00.0"  # back 10 s: clamped to the start
        viewer.wait_title(" playing")  # no longer at the end
        viewer.wait_for("end of video")
        viewer.press("q", line="exporting:")
        viewer.wait_for("actions over", count=2)
        assert viewer.finish() == 0, viewer.stderr()
    out = tmp_path / "predictions"
    after_seek_bar = read_funscript(out / "clip.funscript")
    assert after_seek_bar.at[0] == pytest.approx(2500, abs=100)
    merged = read_funscript(out / "clip-2.funscript")
    assert merged.at[0] <= 40 and merged.at[-1] >= 4800
    assert (np.diff(merged.at) > 0).all()
    assert strokes_per_second(merged) == pytest.approx(2 * FAST[1], rel=0.3)
    assert not (out / "clip.poi.funscript").exists()  # no POI was clicked: no POI prediction


LONG_SIZE = (160, 90)  # shown 4x enlarged: 640x360
LONG_SECONDS = 690  # 11.5 minutes at one frame a second


def minute_grey(minute: int) -> int:
    return 10 + 20 * minute


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """11.5 minutes of flat grey frames whose level tells the minute: long enough for every seek key, cheap to
    make and to decode (690 tiny frames)."""
    path = tmp_path_factory.mktemp("view-long") / "long.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = *LONG_SIZE, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "120"}
        for second in range(LONG_SECONDS):
            image = np.full((LONG_SIZE[1], LONG_SIZE[0], 3), minute_grey(second // 60), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.display
@pytest.mark.slow
def test_seek_delay_drawing_and_poi_size_keys(long_clip, xdisplay, tmp_path):
    x11 = X11(xdisplay)
    frame_w, frame_h = 640, 360

    def wait_for_picture(check, what: str) -> None:
        """Until a grab of the window passes `check` (Qt paints a moment after the viewer reports a change)."""
        deadline = time.monotonic() + 20
        while not check(shot := x11.grab(int(viewer.window), frame_w, SEEK_BAR_H + frame_h + 110)):
            if time.monotonic() > deadline:
                cv2.imwrite(str(tmp_path / "shot.png"), shot)
                pytest.fail(f"the window never showed {what}; screen grab in {tmp_path / 'shot.png'}")
            time.sleep(0.05)

    def shows_minute(minute: int) -> None:
        centre = (SEEK_BAR_H + frame_h // 2, frame_w // 4)  # left of the POI box
        wait_for_picture(lambda shot: abs(int(shot[centre].mean()) - minute_grey(minute)) <= 4, f"minute {minute}")

    try:
        with Viewer(xdisplay, tmp_path, str(long_clip), "--hold", width=frame_w) as viewer:
            assert viewer.press("period", line="frame delay") == "frame delay 1429 ms"  # 1 fps: 1000 ms
            assert viewer.press("comma", line="frame delay") == "frame delay 1000 ms"
            # seeks while holding land on exact frames, clamped to the video
            for key, landed, minute in (("b", "10:00.0", 10), ("v", "11:00.0", 11), ("v", "11:29.0", 11),
                                        ("c", "10:29.0", 10), ("x", "0:29.0", 0), ("x", "0:00.0", 0),
                                        ("v", "1:00.0", 1)):
                assert viewer.press(key, line="seek to") == f"seek to {landed}"
                shows_minute(minute)
            viewer.wait_title("1:00 holding")
            viewer.click(frame_w // 2, SEEK_BAR_H + frame_h // 2)
            assert viewer.wait_for("POI at")[0] == "POI at 80,45 (box 22 px) from 1:00.0"
            assert viewer.press("bracketleft", line="POI at") == "POI at 80,45 (box 18 px) from 1:00.0"
            panel = (SEEK_BAR_H + frame_h + 106, frame_w - 5)  # a corner of the graph panel, away from text
            wait_for_picture(lambda shot: (shot[panel] == 24).all(), "the graph panel")
            assert viewer.press("d", line="drawing").startswith("drawing off")
            wait_for_picture(lambda shot: (shot[panel] == 0).all(), "drawing off")
            assert viewer.press("d", line="drawing") == "drawing on"
            wait_for_picture(lambda shot: (shot[panel] == 24).all(), "drawing on again")
            viewer.press("q", line="POI changes")
            assert viewer.finish() == 0, viewer.stderr()
    finally:
        x11.close()
    # nothing was predicted (p was never pressed): only the POI log is written
    out = tmp_path / "predictions"
    assert sorted(p.name for p in out.iterdir()) == ["long.poi.csv"]
    log = read_poi_log(out / "long.poi.csv")
    assert [(e.time_s, round(e.x), round(e.y), e.size) for e in log] == [(60.0, 80, 45, 22.5), (60.0, 80, 45, 18.0)]


@pytest.mark.display
@pytest.mark.slow
def test_model_method_predicts_live_and_exports(clip, xdisplay, tmp_path):
    with Viewer(xdisplay, tmp_path, str(clip), "--method", "model", "--predict", "--end", "5") as viewer:
        for delay_ms in (28, 19, 13):  # shorter frame delay: faster than real time
            viewer.press("comma", line=f"frame delay {delay_ms} ms")
        viewer.wait_for("end of video")
        viewer.press("q", line="exporting:")
        assert len(viewer.wait_for("actions over", count=2)) == 2  # whole frame and centre crop
        assert viewer.finish() == 0, viewer.stderr()
    full = read_funscript(tmp_path / "predictions" / "clip.funscript")
    assert "method: model" in full.metadata["notes"]
    assert full.at[0] <= 40 and full.at[-1] >= 4800
    assert strokes_per_second(full) == pytest.approx(2 * FAST[1], rel=0.3)
