"""Scene cuts and analysis windows over a stream of motion samples, with bounded memory."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from autofunscript.motion.flow import IDENTITY_CAMERA, MotionSample


def frame_rate(times_s: np.ndarray, default: float = 30.0) -> float:
    """Mean frames per second over a run of frame times (`default` for fewer than two distinct times)."""
    if times_s.size > 1 and times_s[-1] > times_s[0]:
        return float((times_s.size - 1) / (times_s[-1] - times_s[0]))
    return default


def crossfade(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Blend two equally long overlapping spans from `previous` to `current` (NaN defers to the other)."""
    ramp = np.linspace(0.0, 1.0, previous.size)
    return np.where(np.isnan(previous), current,
                    np.where(np.isnan(current), previous, previous * (1 - ramp) + current * ramp))


@dataclass(frozen=True)
class Window:
    """Consecutive samples analysed together.

    The first `context` samples are earlier frames of the scene, there only so that a short last window
    has enough motion to find its subject in; its results for them are dropped. The `overlap` samples
    after them repeat the previous window's tail.
    """

    times_s: np.ndarray
    grids: np.ndarray  # (T, rows, cols, 2)
    overlap: int
    starts_scene: bool  # first window after a cut (or of the video)
    images: np.ndarray | None = None  # (T, H, W) analysis frames, when the windower keeps them
    cameras: np.ndarray | None = None  # (T, 2, 3) camera motion from the previous frame (identity if unknown)
    context: int = 0


class CutDetector:
    """A cut is a thumbnail change far above both an absolute floor and the recent typical change.

    Relative to the recent median so that a shaky or busy scene does not fire all the time.
    """

    def __init__(self, floor: float = 0.45, ratio: float = 5.0, history: int = 30) -> None:
        self.floor = floor
        self.ratio = ratio
        self._recent: deque[float] = deque(maxlen=history)

    def is_cut(self, score: float) -> bool:
        typical = statistics.median(self._recent) if self._recent else 0.0  # per frame: NumPy's overhead shows
        cut = score > max(self.floor, self.ratio * typical)
        if not cut:
            self._recent.append(score)
        return cut


class Windower:
    """Groups samples into windows: a new scene starts a new window; long scenes are split into
    windows of `max_s` seconds that overlap by `overlap_s` so they can be blended.

    With `full_tails`, the short window that ends a long scene is analysed with earlier frames of the
    scene in front (as `context`) to make it `max_s` long: a few seconds alone can be dominated by a
    passing motion that a whole window shows to be the lesser one. It keeps up to `max_s` more frames.
    """

    def __init__(self, max_s: float = 60.0, overlap_s: float = 8.0, detect_cuts: bool = True,
                 keep_images: bool = False, full_tails: bool = False) -> None:
        self.max_s = max_s
        self.keep_images = keep_images
        self.full_tails = full_tails
        self._images: list[np.ndarray] = []
        self._cameras: list[np.ndarray] = []
        # frames of the scene before the current window, newest last, for full tails
        self._earlier: deque[tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]] = deque()
        self.overlap_s = overlap_s
        self.cuts = CutDetector() if detect_cuts else None
        self.cut_times: list[float] = []
        self._times: list[float] = []
        self._grids: list[np.ndarray] = []
        self._overlap = 0
        self._new_scene = True
        self._held: list[tuple[MotionSample, np.ndarray | None]] = []  # frames that may repeat the last picture

    def _emit(self, tail: bool = False) -> Window:
        times, grids, images, cameras = self._times, self._grids, self._images, self._cameras
        context = []
        if tail and self.full_tails:
            context = [f for f in self._earlier if f[0] > times[-1] - self.max_s]
            times = [f[0] for f in context] + times
            grids = [f[1] for f in context] + grids
            if self.keep_images:
                images = [f[2] for f in context] + images
                cameras = [f[3] for f in context] + cameras
        return Window(np.asarray(times), np.stack(grids), self._overlap, self._new_scene,
                      np.stack(images) if self.keep_images else None,
                      np.stack(cameras) if self.keep_images else None, len(context))

    def _remember(self, keep: int) -> None:
        """Move the current window's first `keep` frames to the earlier frames (full tails only)."""
        if not self.full_tails:
            return
        images = self._images[:keep] if self.keep_images else [None] * keep
        cameras = self._cameras[:keep] if self.keep_images else [None] * keep
        self._earlier.extend(zip(self._times[:keep], self._grids[:keep], images, cameras))
        while self._earlier and self._earlier[0][0] <= self._times[-1] - self.max_s:
            self._earlier.popleft()

    def push(self, sample: MotionSample, image: np.ndarray | None = None) -> Iterator[Window]:
        """Add one frame's sample (and its analysis image when `keep_images`); yields finished windows.

        A frame whose pixels say it repeats the last picture (MotionSample.repeat) waits for the next one, whose
        flow is measured from the last picture. If that confirms the repeat (MotionSample.repeats_confirmed), the
        frame is left out: the next frame carries the motion. If not, the subject stood still for it (a fast
        stroke's turn between two frames at one height, a swing's end, a rest), and it is kept, without motion.
        Repeats at the end are kept too, so the signal reaches the last frame.
        """
        if sample.repeat:
            self._held.append((sample, image))
            return
        held, self._held = self._held, []
        if held and not sample.repeats_confirmed:
            for repeat, repeat_image in held:
                yield from self._add(repeat, repeat_image)
        yield from self._add(sample, image)

    def _add(self, sample: MotionSample, image: np.ndarray | None) -> Iterator[Window]:
        if self._times and self.cuts is not None and self.cuts.is_cut(sample.cut_score):
            self.cut_times.append(sample.time_s)
            yield self._emit(tail=True)
            self._times, self._grids, self._images, self._cameras = [], [], [], []
            self._earlier.clear()
            self._overlap, self._new_scene = 0, True
            # flow across a cut is meaningless: the new scene starts at rest
            sample = MotionSample(sample.time_s, np.zeros_like(sample.grid), 0.0)
        self._times.append(sample.time_s)
        self._grids.append(sample.grid.astype(np.float16))
        if self.keep_images:
            self._images.append(image)
            self._cameras.append(IDENTITY_CAMERA if sample.camera is None else sample.camera.astype(np.float64))
        if self._times[-1] - self._times[0] >= self.max_s:
            yield self._emit()
            keep = int(np.searchsorted(self._times, self._times[-1] - self.overlap_s))
            self._remember(keep)
            self._times, self._grids = self._times[keep:], self._grids[keep:]
            self._images, self._cameras = self._images[keep:], self._cameras[keep:]
            self._overlap, self._new_scene = len(self._times), False

    def flush(self) -> Iterator[Window]:
        held, self._held = self._held, []
        for sample, image in held:
            yield from self._add(sample, image)
        if len(self._times) > self._overlap:
            yield self._emit(tail=True)
        self._times, self._grids, self._images, self._cameras = [], [], [], []
        self._earlier.clear()
