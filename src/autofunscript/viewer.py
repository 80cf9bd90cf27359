"""`autofunscript view`: play a video in an OpenCV window and predict as it goes, steered by the user.

A shell over pipeline.LiveTracker. Three predictions run side by side (whole frame, centre crop, the
user's point of interest) on one optical flow per frame; each frame is decoded once, in colour at
display size, and the grey analysis frame is derived from it. Exports go to ./predictions/ as
`<stem>.funscript`, `<stem>.crop.funscript`, `<stem>.poi.funscript` and the POI log `<stem>.poi.csv`,
numbered `<stem>-2.*`, `<stem>-3.*` ... rather than overwriting an earlier export.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autofunscript import __version__
from autofunscript.clock import format_clock
from autofunscript.errors import AutofunscriptError
from autofunscript.pipeline import GenerateOptions, LivePreview, LiveTracker, Poi
from autofunscript.script.funscript import Funscript, atomic_write_text, write_funscript
from autofunscript.video.stream import Frame, VideoStream, open_video

MAX_DISPLAY = (1280, 720)
MIN_DISPLAY_WIDTH = 640  # smaller videos are enlarged so the status text and graph stay readable
SEEK_BAR_H = 24
PANEL_H = 110
BARS_W = 150
# Wall-clock interval between refreshes of one region's on-screen preview. The regions take turns: one
# preview costs a window analysis (tens of ms), and spreading them keeps playback smooth.
PREVIEW_EVERY_S = 0.5
STATUS_EVERY_S = 1.0  # with drawing off, the window is refreshed this often
MIN_POI_SIZE = 16.0
POI_STEP = 1.25
DELAY_STEP = 0.7
MAX_DELAY_MS = 2000

SEEKS_S = {"b": 600.0, "v": 60.0, "c": -60.0, "x": -600.0, "z": -10.0}
HELP_LINES = (
    "b / v    forward 10 min / 1 min",
    "x / c    back 10 min / 1 min",
    "z        back 10 s",
    "h        hold / release",
    "p        start / stop predicting",
    "click    point of interest (seek bar: jump)",
    "[ / ]    shrink / grow the POI box",
    ", / .    shorter / longer frame delay",
    "d        drawing on / off (faster)",
    "e        export now and keep going",
    "q        quit and export (closing does too)",
    "?        this help",
    "graph    a preview: flow analysis of the last 10 s",
)



@dataclass(frozen=True)
class Region:
    """How one of the three side-by-side predictions is shown and exported."""

    label: str  # on screen
    colour: tuple[int, int, int]  # BGR, of its graph, bar and label
    suffix: str  # file name: <stem><suffix>.funscript
    description: str  # in the exported script's notes


REGIONS = {
    "full": Region("full", (255, 160, 0), "", "whole frame"),
    "crop": Region("crop", (255, 0, 255), ".crop", "centre crop"),
    "poi": Region("poi", (0, 255, 255), ".poi", "point of interest"),
}
POI_BOX_COLOUR = REGIONS["poi"].colour
SEEK_COLOUR = (60, 60, 200)


@dataclass(frozen=True)
class ViewOptions:
    method: str = "flow"
    start_s: float = 0.0
    end_s: float | None = None
    predict: bool = False  # start predicting at once, as if p was pressed
    hold: bool = False  # start on hold at the first frame
    replay_poi: Path | None = None
    out_dir: Path = Path("predictions")


# ----------------------------------------------------------------------------------------------
# POI log


@dataclass(frozen=True)
class PoiEntry:
    """The POI in effect from video time `time_s` on: centre and box size in source pixels."""

    time_s: float
    x: float
    y: float
    size: float


POI_LOG_HEADER = ("time_s", "x", "y", "size")


def format_poi_log(entries: list[PoiEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(POI_LOG_HEADER)
    for e in entries:
        writer.writerow([f"{e.time_s:.3f}", f"{e.x:.1f}", f"{e.y:.1f}", f"{e.size:.1f}"])
    return out.getvalue()


def read_poi_log(path: Path) -> list[PoiEntry]:
    """A POI log written by an earlier session, in time order."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AutofunscriptError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AutofunscriptError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(cell.strip() for cell in rows[0]) != POI_LOG_HEADER:
        raise AutofunscriptError(f"{path}: not a POI log (first line must be {','.join(POI_LOG_HEADER)})")
    entries = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            values = [float(cell) for cell in row]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[3] <= 0:
            raise AutofunscriptError(f"{path}: line {line}: expected four numbers time_s,x,y,size (size > 0)")
        entries.append(PoiEntry(*values))
    return sorted(entries, key=lambda e: e.time_s)


def entry_in_effect(entries: list[PoiEntry], time_s: float) -> int | None:
    """Index of the last entry at or before `time_s` (entries in time order), None before the first."""
    index = bisect.bisect_right([e.time_s for e in entries], time_s + 1e-6) - 1
    return index if index >= 0 else None


# ----------------------------------------------------------------------------------------------
# Window layout: seek bar on top, the frame, a panel with the prediction graph and bars below


def display_width_for(source_w: int, source_h: int) -> int:
    """Width to decode for display: the frame scaled to fit MAX_DISPLAY (small videos enlarged a little)."""
    scale = min(MAX_DISPLAY[0] / source_w, MAX_DISPLAY[1] / source_h)
    if scale > 1:
        scale = min(scale, max(1.0, MIN_DISPLAY_WIDTH / source_w))
    return max(2, 2 * round(source_w * scale / 2))


@dataclass(frozen=True)
class Layout:
    source_w: int
    source_h: int
    frame_w: int  # displayed frame size
    frame_h: int

    @property
    def canvas_size(self) -> tuple[int, int]:
        return self.frame_w, SEEK_BAR_H + self.frame_h + PANEL_H

    @property
    def scale(self) -> float:
        return self.frame_w / self.source_w

    def seek_fraction(self, x: int, y: int) -> float | None:
        """Where a click on the seek bar points, 0-1; None for a click elsewhere."""
        if y >= SEEK_BAR_H:
            return None
        return float(np.clip(x / max(self.frame_w - 1, 1), 0.0, 1.0))

    def to_source(self, x: int, y: int) -> tuple[float, float] | None:
        """A click on the displayed frame in source pixels; None outside the frame."""
        fy = y - SEEK_BAR_H
        if not (0 <= x < self.frame_w and 0 <= fy < self.frame_h):
            return None
        return (x + 0.5) * self.source_w / self.frame_w, (fy + 0.5) * self.source_h / self.frame_h

    def to_display(self, x: float, y: float) -> tuple[int, int]:
        return int(round(x * self.frame_w / self.source_w)), int(round(y * self.frame_h / self.source_h)) + SEEK_BAR_H


# ----------------------------------------------------------------------------------------------
# Export


def export_paths(folder: Path, stem: str) -> dict[str, Path]:
    """The first set of names in `folder` of which no file exists yet: stem.*, then stem-2.*, stem-3.* ..."""
    n = 1
    while True:
        base = stem if n == 1 else f"{stem}-{n}"
        paths = {name: folder / f"{base}{region.suffix}.funscript" for name, region in REGIONS.items()}
        paths["log"] = folder / f"{base}.poi.csv"
        if not any(p.exists() for p in paths.values()):
            return paths
        n += 1


def display_problem() -> str | None:
    """None if a window can be opened here, else why not (Qt aborts the process when it has no display)."""
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY", "")
    if not display:
        return "no display (DISPLAY is not set)"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY={display!r} is not a valid X display"
    try:
        if host in ("", "unix"):
            socket_path = f"/tmp/.X11-unix/X{number}"
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(socket_path)
                except OSError:
                    sock.connect("\0" + socket_path)  # Linux abstract socket, as Xvfb/Xorg also listen on
        else:
            socket.create_connection((host, 6000 + int(number)), timeout=2).close()
    except OSError:
        return f"cannot reach the X display {display}"
    return None


# ----------------------------------------------------------------------------------------------
# The interactive session


class _Session:
    """One viewing session: playback position, user state, prediction and drawing."""

    def __init__(self, video: Path, stream: VideoStream, options: ViewOptions,
                 echo: Callable[[str], None]) -> None:
        info = stream.info
        self.video, self.stream, self.options, self.echo = video, stream, options, echo
        self.window = f"autofunscript view - {video.name}"
        self.start_s = max(0.0, options.start_s)
        self.end_s = min(options.end_s, info.duration_s) if options.end_s is not None else info.duration_s
        if self.start_s >= self.end_s:
            raise AutofunscriptError(f"{video}: nothing to play between {self.start_s:g} s and {self.end_s:g} s "
                                     f"(the video is {info.duration_s:.1f} s long)")
        generate_options = GenerateOptions(method=options.method)
        self.tracker = LiveTracker(generate_options, (info.width, info.height))
        self.tracker.set_region("full", None)
        # centre crop: a column in the middle of the frame, as tall as the frame
        self.tracker.set_region("crop", Poi(0.5, 0.5, info.height / 2, relative=True))
        plan = stream.plan(width=display_width_for(info.width, info.height), color=True)
        self.layout = Layout(info.width, info.height, plan.out_width, plan.out_height)
        self.canvas = np.zeros((self.layout.canvas_size[1], self.layout.canvas_size[0], 3), np.uint8)
        analysis = stream.plan(width=generate_options.analysis_width)
        self.analysis_size = (analysis.out_width, analysis.out_height)
        self.replay = read_poi_log(options.replay_poi) if options.replay_poi else []
        self._replayed: int | None = None

        self.frame: Frame | None = None
        self.frames: Iterator[Frame] | None = None
        self.at_end = False
        self.playing = not options.hold
        self.predicting = options.predict
        self.drawing = True
        self.show_help = False
        self.delay_ms = max(1, round(1000 / info.fps)) if info.fps > 0 else 40
        self.poi: Poi | None = None
        self.poi_size = float(np.clip(info.height / 4, MIN_POI_SIZE, min(info.width, info.height)))
        self.poi_log: list[PoiEntry] = []
        self.clicks: list[tuple[int, int]] = []
        self.previews: dict[str, LivePreview] = {}
        self.fps = 0.0
        self._fps_count, self._fps_since = 0, time.perf_counter()
        self._preview_at = 0.0
        self._preview_turns = itertools.cycle(REGIONS)
        self._drawn_at = 0.0
        self._title = ""
        self.quit = False
        self.window_shown = False
        self._frame_due = 0.0  # perf_counter time at which playback shows the next frame
        self.dirty = True

    # -- playback ------------------------------------------------------------------------------

    def seek(self, time_s: float) -> None:
        """Jump to `time_s` (clamped to the range) and show the frame there, playing or holding."""
        last = max(self.start_s, self.end_s - 1.0 / max(self.stream.info.fps, 1.0))
        time_s = float(np.clip(time_s, self.start_s, last))
        if self.frames is not None:
            self.frames.close()
        self.frames = self.stream.frames(start_s=time_s, end_s=self.end_s, width=self.layout.frame_w, color=True)
        self.tracker.break_spans()
        self.previews.clear()
        self.at_end = False
        self.advance()
        if self.frame is not None and self.window_shown:
            self.echo(f"seek to {format_clock(self.frame.time_s, tenths=True)}")

    def advance(self) -> None:
        assert self.frames is not None
        frame = next(self.frames, None)
        if frame is None:
            if not self.at_end:
                where = f"{self.frame.time_s:.1f} s" if self.frame else f"{self.start_s:g} s"
                self.echo(f"end of video at {where}: holding (seek back with z/c/x or the seek bar, q to quit)")
            self.at_end = True
            self.dirty = True
            return
        self.frame = frame
        self.dirty = True
        self._fps_count += 1
        if self.replay:
            self._apply_replay(frame.time_s)
        if self.predicting:
            self.tracker.push(self._analysis_gray(frame.image), frame.time_s)

    def _analysis_gray(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if (gray.shape[1], gray.shape[0]) != self.analysis_size:
            gray = cv2.resize(gray, self.analysis_size, interpolation=cv2.INTER_AREA)
        return gray

    # -- user input ----------------------------------------------------------------------------

    def on_mouse(self, event: int, x: int, y: int, flags: int, param: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self.clicks.append((x, y))

    def click(self, x: int, y: int) -> None:
        fraction = self.layout.seek_fraction(x, y)
        if fraction is not None:
            self.seek(self.start_s + fraction * (self.end_s - self.start_s))
            return
        point = self.layout.to_source(x, y)
        if point is not None:
            self.set_poi(*point, self.poi_size)

    def set_poi(self, x: float, y: float, size: float) -> None:
        self.poi, self.poi_size = Poi(x, y, size), size
        self.tracker.set_region("poi", self.poi)
        time_s = self.frame.time_s if self.frame else self.start_s
        self.poi_log.append(PoiEntry(time_s, x, y, size))
        self.echo(f"POI at {x:.0f},{y:.0f} (box {size:.0f} px) from {format_clock(time_s, tenths=True)}")
        self.previews.pop("poi", None)
        self._preview_at = 0.0
        self.dirty = True

    def _apply_replay(self, time_s: float) -> None:
        index = entry_in_effect(self.replay, time_s)
        if index is not None and index != self._replayed:
            self._replayed = index
            entry = self.replay[index]
            self.set_poi(entry.x, entry.y, entry.size)

    def key(self, char: str) -> None:
        self.dirty = True
        if char == "q":
            self.quit = True
        elif char in SEEKS_S and self.frame is not None:
            self.seek(self.frame.time_s + SEEKS_S[char])
        elif char == "h":
            self.playing = not self.playing
        elif char == "p":
            self.predicting = not self.predicting
            if not self.predicting:
                self.tracker.break_spans()
                self.previews.clear()
        elif char in "[]":
            size = self.poi_size * (POI_STEP if char == "]" else 1 / POI_STEP)
            size = float(np.clip(size, MIN_POI_SIZE, min(self.layout.source_w, self.layout.source_h)))
            if self.poi is not None:
                self.set_poi(self.poi.x, self.poi.y, size)
            else:
                self.echo(f"POI box {size:.0f} px (click the picture to place it)")
            self.poi_size = size
        elif char in ",.":
            if char == ",":
                self.delay_ms = max(1, int(self.delay_ms * DELAY_STEP))
            else:
                self.delay_ms = min(MAX_DELAY_MS, int(self.delay_ms / DELAY_STEP) + 1)
            self.echo(f"frame delay {self.delay_ms} ms")
        elif char == "d":
            self.drawing = not self.drawing
            self.echo("drawing on" if self.drawing else "drawing off: the picture is refreshed once a second (d: on)")
        elif char == "e":
            self.export_or_report()
        elif char == "?":
            self.show_help = not self.show_help
            self.echo("help shown (? hides it)" if self.show_help else "help hidden")

    # -- export --------------------------------------------------------------------------------

    def export(self) -> None:
        """Write what was predicted so far, and the POI log, under names not used yet."""
        self.echo("exporting: finishing the analysis of the windows played so far ...")
        scripts = {name: self.tracker.script(name) for name in REGIONS}
        scripts = {name: s for name, s in scripts.items() if s is not None and len(s)}
        if not scripts and not self.poi_log:
            self.echo("nothing to export yet (p starts predicting)")
            return
        folder = self.options.out_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutofunscriptError(f"{folder}: cannot create the folder ({exc.strerror})") from None
        paths = export_paths(folder, self.video.stem)
        for name, script in scripts.items():
            self._describe(script, REGIONS[name])
            write_funscript(script, paths[name])
            span_s = (script.at[-1] - script.at[0]) / 1000 if len(script) > 1 else 0.0
            self.echo(f"{paths[name]}: {len(script)} actions over {span_s:.1f} s ({REGIONS[name].label})")
        if not scripts:
            self.echo("no motion predicted yet: only the POI log is written")
        if self.poi_log:
            atomic_write_text(paths["log"], format_poi_log(self.poi_log))
            self.echo(f"{paths['log']}: {len(self.poi_log)} POI changes")

    def export_or_report(self) -> None:
        """The e key: a failed export is reported and playback goes on."""
        try:
            self.export()
        except AutofunscriptError as exc:
            self.echo(f"error: {exc}")

    def _describe(self, script: Funscript, region: Region) -> None:
        script.metadata = {
            "creator": f"autofunscript {__version__}",
            "title": self.video.stem,
            "duration": int(math.ceil(self.stream.info.duration_s)),
            "notes": f"generator: autofunscript {__version__} view; method: {self.options.method}; "
                     f"region: {region.description}",
        }

    # -- drawing -------------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        assert self.frame is not None
        canvas = self.canvas  # every pixel is painted below: reused, not allocated per frame
        top = SEEK_BAR_H
        canvas[top : top + self.layout.frame_h] = self.frame.image
        self._draw_seek_bar(canvas)
        if self.drawing:
            self._draw_tracked(canvas)
            if self.poi is not None:
                self._draw_poi(canvas)
            self._draw_panel(canvas)
            if self.show_help:
                self._draw_help(canvas)
        else:
            canvas[top + self.layout.frame_h :] = 0
            _text(canvas, "drawing off (d): the picture is refreshed once a second", (8, top + self.layout.frame_h + 24))
        return canvas

    def _draw_seek_bar(self, canvas: np.ndarray) -> None:
        assert self.frame is not None
        width = self.layout.frame_w
        canvas[:SEEK_BAR_H] = (40, 40, 40)
        fraction = (self.frame.time_s - self.start_s) / max(self.end_s - self.start_s, 1e-9)
        filled = int(np.clip(fraction, 0, 1) * (width - 1))
        canvas[4 : SEEK_BAR_H - 4, :filled] = SEEK_COLOUR
        canvas[:SEEK_BAR_H, filled : filled + 2] = (255, 255, 255)
        now, end = format_clock(self.frame.time_s, tenths=True), format_clock(self.end_s, tenths=True)
        _text(canvas, f"{now} / {end}", (6, 17))
        flags = [f"{self.fps:.0f} fps", f"delay {self.delay_ms} ms"]
        flags += [f"PREDICTING ({self.options.method})" if self.predicting else "p: predict"]
        flags += ["HOLD" if not self.playing else "", "END" if self.at_end else "", "? help"]
        status = "  ".join(f for f in flags if f)
        (tw, _), _ = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        _text(canvas, status, (max(6, width - tw - 6), 17))

    def _draw_box(self, canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float,
                  colour: tuple[int, int, int], thickness: int) -> None:
        """A rectangle given in source pixels, kept inside the picture (off the seek bar and the panel)."""
        left, top = self.layout.to_display(x0, y0)
        right, low = self.layout.to_display(x1, y1)
        bottom = SEEK_BAR_H + self.layout.frame_h - 1
        cv2.rectangle(canvas, (left, max(top, SEEK_BAR_H)), (right, min(low, bottom)), colour, thickness)

    def _draw_poi(self, canvas: np.ndarray) -> None:
        assert self.poi is not None and self.poi.size is not None
        half = self.poi.size / 2
        self._draw_box(canvas, self.poi.x - half, self.poi.y - half, self.poi.x + half, self.poi.y + half,
                       POI_BOX_COLOUR, 2)

    def _draw_tracked(self, canvas: np.ndarray) -> None:
        """A thin box, in the prediction's colour, around the cells the whole-frame and centre-crop previews
        follow: where the whole-frame prediction settles on the wrong body, that is the cue to click on the
        subject. The POI prediction has its own box, in the same colour, already."""
        if not self.predicting:
            return
        width, height = self.stream.info.width, self.stream.info.height
        for name, region in REGIONS.items():
            preview = self.previews.get(name)
            if name == "poi" or preview is None or preview.roi is None:
                continue
            x0, y0, x1, y1 = preview.roi
            self._draw_box(canvas, x0 * width, y0 * height, x1 * width, y1 * height, region.colour, 1)

    def _draw_panel(self, canvas: np.ndarray) -> None:
        assert self.frame is not None
        top = SEEK_BAR_H + self.layout.frame_h
        width = self.layout.frame_w
        canvas[top:] = (24, 24, 24)
        graph_w = max(width - BARS_W, 60)
        inner_top, inner_h = top + 8, PANEL_H - 16
        cv2.rectangle(canvas, (4, inner_top), (graph_w - 4, inner_top + inner_h), (70, 70, 70), 1)
        if not self.predicting:
            _text(canvas, "press p to predict: full frame, centre crop and POI side by side", (12, top + PANEL_H // 2))
        span_s = self.tracker.preview_s
        for i, (name, region) in enumerate(REGIONS.items()):
            preview = self.previews.get(name)
            times, positions = (preview.times_s, preview.positions) if preview else (np.zeros(0), np.zeros(0))
            known = ~np.isnan(positions) & (times >= self.frame.time_s - span_s) & (times <= self.frame.time_s)
            if known.sum() >= 2:
                xs = 4 + (times[known] - (self.frame.time_s - span_s)) / span_s * (graph_w - 8)
                ys = inner_top + inner_h - positions[known] / 100 * inner_h
                points = np.stack([xs, ys], axis=1).round().astype(np.int32)
                cv2.polylines(canvas, [points], False, region.colour, 1, cv2.LINE_AA)
            bar_x = graph_w + 8 + i * 46
            cv2.rectangle(canvas, (bar_x, inner_top), (bar_x + 22, inner_top + inner_h - 14), (70, 70, 70), 1)
            if known.any():
                level = positions[known][-1] / 100
                bar_top = int(inner_top + (1 - level) * (inner_h - 14))
                cv2.rectangle(canvas, (bar_x + 1, bar_top), (bar_x + 21, inner_top + inner_h - 15), region.colour, -1)
            _text(canvas, region.label, (bar_x - 2, inner_top + inner_h + 2), region.colour, 0.4)

    def _draw_help(self, canvas: np.ndarray) -> None:
        x0, y0 = 20, SEEK_BAR_H + 12
        box_w = min(self.layout.frame_w - 40, 420)
        box_h = min(self.layout.frame_h - 24, 22 * len(HELP_LINES) + 16)
        region = canvas[y0 : y0 + box_h, x0 : x0 + box_w]
        region[:] = (region * 0.25).astype(np.uint8)
        for i, line in enumerate(HELP_LINES):
            _text(canvas, line, (x0 + 12, y0 + 24 + 22 * i))

    # -- main loop -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Update the preview, the fps and the title, and show the picture if anything changed."""
        now = time.perf_counter()
        if now - self._fps_since >= 1.0:
            self.fps = self._fps_count / (now - self._fps_since)
            self._fps_count, self._fps_since = 0, now
            self.dirty = True
        if self.drawing and self.predicting and now - self._preview_at >= PREVIEW_EVERY_S:
            name = next(self._preview_turns)
            self.previews[name] = self.tracker.preview(name)
            self._preview_at = now
            self.dirty = True
            self.take_input(cv2.pollKey())
        title = self.title()
        if title != self._title:
            cv2.setWindowTitle(self.window, title)
            self._title = title
        if not self.dirty or (not self.drawing and now - self._drawn_at < STATUS_EVERY_S):
            return
        cv2.imshow(self.window, self.render())
        self._drawn_at = now
        self.dirty = False

    def title(self) -> str:
        """The window title carries the state and the time in whole seconds (changing at most once a second),
        so both show in task bars and scripts can watch them."""
        state = "at the end" if self.at_end else "playing" if self.playing else "holding"
        clock = format_clock(self.frame.time_s if self.frame else self.start_s)
        return f"autofunscript view - {self.video.name} - {clock} {state}{', predicting' if self.predicting else ''}"

    def take_input(self, key: int) -> None:
        """Handle the clicks collected by the mouse callback, then `key` (a waitKey/pollKey result)."""
        if self.window_closed():
            self.quit = True
            return
        while self.clicks:
            self.click(*self.clicks.pop(0))
        code = key & 0xFFFF  # some backends add modifier bits; codes above 255 are arrows, F-keys ...
        if key != -1 and code < 256:
            self.key(chr(code).lower())

    def window_closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.window, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:  # Qt forgets the window once it is closed
            return True

    def run(self) -> None:
        """Play until q or the window is closed, then export. Ctrl+C exports too."""
        try:
            self.seek(self.start_s)
            if self.frame is None:
                raise AutofunscriptError(f"{self.video}: no frame could be decoded at {self.start_s:g} s")
            # the window appears with its first picture, so it takes input from the moment it is seen
            cv2.namedWindow(self.window, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            cv2.setMouseCallback(self.window, self.on_mouse)
            self.window_shown = True
            self.refresh()
            self._loop()
        except KeyboardInterrupt:
            self.export()
            self.tracker.close()
            raise
        finally:
            if self.frames is not None:
                self.frames.close()
            cv2.destroyAllWindows()
        try:
            self.export()
        finally:
            self.tracker.close()

    def _loop(self) -> None:
        # Qt's waitKey keeps only the last key pressed since the previous call, so input is polled after
        # each slow step too: fewer keys pressed in quick succession are lost.
        while not self.quit:
            playing = self.playing and not self.at_end
            if playing and time.perf_counter() >= self._frame_due:
                # the frame delay paces playback; a key that ends the wait early does not advance a frame
                self._frame_due = time.perf_counter() + self.delay_ms / 1000
                self.advance()
                self.take_input(cv2.pollKey())
                if self.quit:
                    return
            self.refresh()
            if self.playing and not self.at_end:
                wait = max(1, math.ceil((self._frame_due - time.perf_counter()) * 1000))
            else:
                wait = 30
            self.take_input(cv2.waitKey(wait))


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int] = (255, 255, 255),
          scale: float = 0.45) -> None:
    # only ever drawn on dark backgrounds (bars, panel, help box), so no outline is needed
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def view(video: Path, options: ViewOptions = ViewOptions(), echo: Callable[[str], None] = print) -> None:
    """Open the viewer window on `video` until the user quits; exports land in options.out_dir."""
    if video.is_dir():
        raise AutofunscriptError(f"{video}: is a folder, not a video")
    if not video.is_file():
        raise AutofunscriptError(f"{video}: no such file")
    out_dir = options.out_dir
    if out_dir.exists() and not out_dir.is_dir():  # found at the export, it would cost the session
        raise AutofunscriptError(f"{out_dir}: is a file, not a folder; exports go there (move or rename it)")
    with open_video(video) as stream:
        session = _Session(video, stream, options, echo)
        problem = display_problem()
        if problem:
            raise AutofunscriptError(f"{problem}: the viewer needs a window; "
                                     f"use `autofunscript generate {video}` to predict without one")
        session.run()
