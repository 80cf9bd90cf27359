"""Per-frame motion measurement: dense DIS optical flow, camera-motion removal, coarse motion grid.

Everything kept per frame is small (a grid of cell velocities and a cut score), so a two-hour video
costs a few hundred bytes per frame and the heavy images are dropped as soon as they are measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB_SIZE = (32, 18)
# A frame that shows the previous picture again (a 25 fps video stored at 50 fps, 24 fps at 30 or 60) holds no
# moment of motion of its own: read as one, the subject stops on it and jumps on the next picture, so a script
# steps (192 actions for the pocket watch clip's 4 swings, each move at twice its speed) and the motion analysis
# sees every other frame still. Such a frame changes almost no pixel by more than REPEAT_LEVELS grey levels (share
# of the analysis pixels, measured): the pocket watch (25 fps stored at 50) repeats at 0.002 % or less (one at
# 0.15 %) against 1.5 % or more for its new pictures; a block moving on a still background, encoded by x264's
# ultrafast preset, 0.04 % or less (0.2 % next to a keyframe) against 0.8 %. A conversion shows a picture at most
# 3 times (24 fps at 60), so a longer run of unchanged frames is a subject at rest and is kept. A subject standing
# still for a frame at its turn changes as little (the pendulums at some of their turns: the pair 0-0.14 % against
# 0.5-0.9 %, the green clock 0.01-0.05 % against 0.4 %; a fast stroke whose turn falls between two frames at one
# height, 0): the two are told apart by the motion around them (see MotionSample.repeats_confirmed). The first
# repeat after the start, a seek or a still stretch is not marked: there is no new picture's change to compare with.
REPEAT_LEVELS = 6
REPEAT_MAX_CHANGE = 0.002  # a share: 0.2 % of the pixels
REPEAT_RATIO = 0.25  # and under this share of what the last new picture changed
MAX_REPEATS = 2
CAMERA_STILL_PX = 0.25  # analysis pixels the frame's corners move at most under a still camera
IDENTITY_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a 2x3 camera motion that moves nothing


@dataclass(frozen=True)
class MotionSample:
    """What one frame contributes: its time, cell velocities since the last new picture (the previous frame
    unless that one repeated a picture), and a cut score."""

    time_s: float
    grid: np.ndarray  # (rows, cols, 2) float32 velocity in analysis pixels per frame, camera motion removed
    cut_score: float  # change of the normalised thumbnail against the last new picture (0 = identical)
    camera: np.ndarray | None = None  # 2x3 similarity taking the last picture's points to this frame's; None = still
    repeat: bool = False  # the pixels say: the last picture again (see REPEAT_MAX_CHANGE); no motion measured
    # For a new picture after `repeat` frames: whether they did repeat a picture. A moving camera changes every new
    # picture, so under camera motion (more than CAMERA_STILL_PX) they did; with a still camera, they did where the
    # motion goes on the same way across them, and where it turns there, or stops (a run longer than MAX_REPEATS),
    # the subject stood still for them.
    repeats_confirmed: bool = False


def _thumbnail(gray: np.ndarray) -> np.ndarray:
    thumb = cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, std = cv2.meanStdDev(thumb)
    # normalised so that lighting flicker and exposure changes do not look like cuts
    return (thumb - float(mean[0, 0])) / (float(std[0, 0]) + 4.0)


class FlowTracker:
    """Feeds grey frames in order; returns one MotionSample per frame (a repeated picture marked as such).

    The grid holds flow averaged over cells of `cell` pixels. Global camera motion (shake, pan, zoom)
    is fitted as a similarity transform on a sparse set of flow vectors with RANSAC and subtracted,
    so only motion relative to the scene remains.
    """

    def __init__(self, cell: int = 10, compensate_camera: bool = True) -> None:
        self.cell = cell
        self.compensate_camera = compensate_camera
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._prev: np.ndarray | None = None
        self._prev_thumb: np.ndarray | None = None
        self._points: np.ndarray | None = None
        self._centres: np.ndarray | None = None
        self._picture_change = 0.0  # share of the pixels the last new picture changed
        self._picture_flow: np.ndarray | None = None  # the last new picture's cell flow, camera motion included
        self._repeats = 0  # frames in a row that showed the last picture again

    def reset(self) -> None:
        """Forget the previous frame (after a seek)."""
        self._prev = None
        self._prev_thumb = None
        self._picture_change, self._picture_flow, self._repeats = 0.0, None, 0

    def _cell_centres(self, rows: int, cols: int) -> np.ndarray:
        """(rows, cols, 3) homogeneous centres of the grid cells in analysis pixels, made once per frame size."""
        if self._centres is None or self._centres.shape[:2] != (rows, cols):
            ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64) + 0.5
            self._centres = np.stack([xs * self.cell, ys * self.cell, np.ones_like(xs)], axis=-1)
        return self._centres

    def _sample_points(self, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        ys, xs = np.mgrid[h * 0.05 : h * 0.95 : 12j, w * 0.05 : w * 0.95 : 20j]
        return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)

    def _camera_model(self, flow: np.ndarray) -> np.ndarray | None:
        """2x3 similarity transform of the background between the two frames, or None if unclear."""
        if self._points is None or self._points.shape[0] == 0:
            self._points = self._sample_points(flow.shape[:2])
        pts = self._points
        xi = pts[:, 0].astype(np.int32)
        yi = pts[:, 1].astype(np.int32)
        moved = pts + flow[yi, xi]
        model, inliers = cv2.estimateAffinePartial2D(pts, moved, method=cv2.RANSAC, ransacReprojThreshold=0.5,
                                                     maxIters=200, confidence=0.99)
        if model is None or inliers is None or inliers.mean() < 0.35:
            return None  # no dominant background: do not guess a camera motion
        return model

    def update(self, gray: np.ndarray, time_s: float) -> MotionSample:
        thumb = _thumbnail(gray)
        rows, cols = gray.shape[0] // self.cell, gray.shape[1] // self.cell
        if self._prev is None or self._prev.shape != gray.shape:
            self.reset()  # a new frame size starts afresh, as after a seek
            self._prev, self._prev_thumb = gray, thumb
            self._points = None
            return MotionSample(time_s, np.zeros((rows, cols, 2), np.float32), 0.0)
        cut_score = float(np.abs(thumb - self._prev_thumb).mean())
        changed = cv2.countNonZero(cv2.threshold(cv2.absdiff(self._prev, gray), REPEAT_LEVELS, 1,
                                                 cv2.THRESH_BINARY)[1]) / gray.size
        if (changed <= REPEAT_MAX_CHANGE and changed < REPEAT_RATIO * self._picture_change
                and self._repeats < MAX_REPEATS):
            # the next new picture's motion is measured from the last one, so nothing is lost
            self._repeats += 1
            return MotionSample(time_s, np.zeros((rows, cols, 2), np.float32), cut_score, repeat=True)
        flow = self._dis.calc(self._prev, gray, None)
        grid = cv2.resize(flow[: rows * self.cell, : cols * self.cell], (cols, rows), interpolation=cv2.INTER_AREA)
        model = self._camera_model(flow) if self.compensate_camera else None
        # a run that goes on unchanged past MAX_REPEATS frames is a subject at rest, whatever the flow's noise says
        confirmed = self._repeats > 0 and changed > REPEAT_MAX_CHANGE and (
            _camera_moves(model, gray.shape)
            or (self._picture_flow is not None and float(self._picture_flow.ravel() @ grid.ravel()) > 0.0))
        self._picture_change, self._picture_flow, self._repeats = changed, grid, 0
        if model is not None:
            # the camera's flow, evaluated at the cell centres only (cheap)
            centres = self._cell_centres(rows, cols)
            grid = grid - (centres @ (model - IDENTITY_CAMERA).T).astype(np.float32)
        self._prev, self._prev_thumb = gray, thumb
        return MotionSample(time_s, grid.astype(np.float32), cut_score, model, repeats_confirmed=confirmed)


def _camera_moves(model: np.ndarray | None, shape: tuple[int, int]) -> bool:
    """Whether a 2x3 camera motion moves a corner of a frame of `shape` (rows, cols) by over CAMERA_STILL_PX."""
    if model is None:
        return False
    h, w = shape
    corners = np.array([[0.0, 0.0, 1.0], [w, 0.0, 1.0], [0.0, h, 1.0], [w, h, 1.0]])
    return bool(np.abs(corners @ (model - IDENTITY_CAMERA).T).max() > CAMERA_STILL_PX)


def remove_camera_leakage(grids: np.ndarray, cameras: np.ndarray, min_explained: float = 0.3) -> np.ndarray:
    """Cell velocities minus what merely follows the camera's shake, for a window of frames.

    Flow on thin lines and plain edges is ambiguous along the edge, so camera compensation leaves a
    residue there that moves in step with the camera: periodic under hand-held shake, it can outscore
    the subject. Per cell and component, the part linearly explained by the camera translation is
    removed, but only where it explains at least `min_explained` of that motion's variance: a subject
    that moves on its own keeps its motion even when the camera happens to move in time with it.
    """
    t = grids.shape[0]
    translation = cameras[:, :, 2] - cameras[:, :, 2].mean(axis=0)  # (T, 2) camera shift per frame
    spread = translation.std(axis=0)
    useful = spread > 0.05  # analysis px/frame: below this there is no shake to leak
    if t < 20 or not useful.any():
        return grids
    x = translation[:, useful] / spread[useful]
    y = grids.reshape(t, -1).astype(np.float64)
    y = y - y.mean(axis=0)
    coef = np.linalg.solve(x.T @ x + 0.01 * t * np.eye(x.shape[1]), x.T @ y)  # lightly ridged least squares
    fitted = x @ coef
    explained = 1 - ((y - fitted) ** 2).sum(axis=0) / np.maximum((y**2).sum(axis=0), 1e-12)
    fitted[:, explained < min_explained] = 0.0
    return grids - fitted.reshape(grids.shape).astype(np.float32)
