"""Per-frame motion measurement: dense DIS optical flow, camera-motion removal, coarse motion grid.

Everything kept per frame is small (a grid of cell velocities and a cut score), so a two-hour video
costs a few hundred bytes per frame and the heavy images are dropped as soon as they are measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB_SIZE = (32, 18)
# Grey levels a pixel must change by to count in MotionSample.changed: more than compression leaves on a
# picture stored again (see script/postprocess.py, repeated_frames).
CHANGE_LEVELS = 6
IDENTITY_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a 2x3 camera motion that moves nothing


@dataclass(frozen=True)
class MotionSample:
    """What one frame contributes: its time, cell velocities since the previous frame, and a cut score."""

    time_s: float
    grid: np.ndarray  # (rows, cols, 2) float32 velocity in analysis pixels per frame, camera motion removed
    cut_score: float  # change of the normalised thumbnail against the previous frame (0 = identical)
    camera: np.ndarray | None = None  # 2x3 similarity taking previous-frame points to this frame's; None = still
    changed: float = 1.0  # share of the pixels that changed by more than CHANGE_LEVELS since the previous frame


def _thumbnail(gray: np.ndarray) -> np.ndarray:
    thumb = cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, std = cv2.meanStdDev(thumb)
    # normalised so that lighting flicker and exposure changes do not look like cuts
    return (thumb - float(mean[0, 0])) / (float(std[0, 0]) + 4.0)


class FlowTracker:
    """Feeds grey frames in order; returns one MotionSample per frame.

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

    def reset(self) -> None:
        """Forget the previous frame (after a seek)."""
        self._prev = None
        self._prev_thumb = None

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
            self._prev, self._prev_thumb = gray, thumb
            self._points = None
            return MotionSample(time_s, np.zeros((rows, cols, 2), np.float32), 0.0)
        cut_score = float(np.abs(thumb - self._prev_thumb).mean())
        changed = cv2.countNonZero(cv2.threshold(cv2.absdiff(self._prev, gray), CHANGE_LEVELS, 1,
                                                 cv2.THRESH_BINARY)[1]) / gray.size
        flow = self._dis.calc(self._prev, gray, None)
        grid = cv2.resize(flow[: rows * self.cell, : cols * self.cell], (cols, rows), interpolation=cv2.INTER_AREA)
        model = None
        if self.compensate_camera:
            model = self._camera_model(flow)
            if model is not None:
                # the camera's flow, evaluated at the cell centres only (cheap)
                centres = self._cell_centres(rows, cols)
                grid = grid - (centres @ (model - IDENTITY_CAMERA).T).astype(np.float32)
        self._prev, self._prev_thumb = gray, thumb
        return MotionSample(time_s, grid.astype(np.float32), cut_score, model, changed)


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
