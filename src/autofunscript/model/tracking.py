"""The model's tracking pass: the same decode -> FlowTracker -> Windower loop as the flow generator,
yielding each window's features as soon as the window closes, so memory stays bounded.

Training (feature extraction of labelled clips) and inference both go through here, so the model
always sees features made the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autofunscript.model.features import FeatureSpec, ImageChannels, ImageRowBuffer, WindowFeatures, window_features
from autofunscript.motion.flow import FlowTracker
from autofunscript.motion.segments import Window, Windower
from autofunscript.video.stream import VideoInfo, open_video

ProgressCallback = Callable[[float, float], None]


@dataclass
class TrackRequest:
    """What to read and how (mirrors the flow generator's options)."""

    path: Path
    spec: FeatureSpec
    start_s: float = 0.0
    end_s: float | None = None
    eye: str | None = None
    analysis_width: int = 320
    drift_cutoff_hz: float = 0.02
    # (frame_w, frame_h, source_w, source_h, cell) -> grid mask; set by callers that have a point of interest
    roi_mask_for: Callable[[int, int, int, int, int], np.ndarray] | None = None
    # windows carry their analysis frames, for the flow generator's band tracking beside the model
    keep_images: bool = False
    # checks the options against the opened video before decoding and returns where reading stops
    checked_end_s: Callable[[VideoInfo], float] | None = None


@dataclass
class TrackSummary:
    """Filled in while iterating: what the pass saw."""

    frames: int = 0
    cut_times_s: list[float] = field(default_factory=list)
    interrupted: bool = False
    duration_s: float = 0.0


def iter_window_features(request: TrackRequest, summary: TrackSummary, progress: ProgressCallback | None = None,
                         should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[Window, WindowFeatures]]:
    tracker = FlowTracker()
    windower = Windower(keep_images=request.keep_images)
    images = ImageChannels(request.spec) if request.spec.image_inputs else None
    buffer = ImageRowBuffer(windower.overlap_s)
    roi_mask = None

    def features(window: Window) -> WindowFeatures:
        rows = buffer.take(window.times_s) if images is not None else None
        return window_features(window, request.spec, rows, request.drift_cutoff_hz, roi_mask)

    with open_video(request.path) as stream:
        info = stream.info
        summary.duration_s = info.duration_s
        if request.checked_end_s is not None:
            end_s = request.checked_end_s(info)
        else:
            end_s = min(request.end_s, info.duration_s) if request.end_s else info.duration_s
        total = max(end_s - request.start_s, 1e-6)
        try:
            for frame in stream.frames(start_s=request.start_s, end_s=request.end_s,
                                       width=request.analysis_width, eye=request.eye):
                if roi_mask is None and request.roi_mask_for is not None:
                    source_w = info.width // 2 if request.eye == "sbs" else info.width
                    source_h = info.height // 2 if request.eye == "ou" else info.height
                    roi_mask = request.roi_mask_for(frame.image.shape[1], frame.image.shape[0], source_w,
                                                    source_h, tracker.cell)
                if images is not None:
                    buffer.push(frame.time_s, images(frame.image))
                sample = tracker.update(frame.image, frame.time_s)
                summary.frames += 1
                for window in windower.push(sample, frame.image):
                    yield window, features(window)
                if progress is not None:
                    progress(frame.time_s - request.start_s, total)
                if should_stop is not None and should_stop():
                    summary.interrupted = True
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
    for window in windower.flush():
        yield window, features(window)
    summary.cut_times_s = list(windower.cut_times)
