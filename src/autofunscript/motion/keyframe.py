"""Absolute subject position by masked template matching against a keyframe.

Integrating frame-to-frame flow loses the subject when it is smooth (skin) and fast: the flow inside
a plain surface is underestimated by a speed-dependent factor, and the integral wanders. Here every
frame is compared with one keyframe of its window instead, so errors never accumulate:

1. The ROI found by the flow analysis is turned into a band along the stroke axis (rotated upright).
2. Each frame's band is registered to the keyframe through the chain of camera motions, corrected every
   few frames by registering the background directly to the keyframe.
3. Only pixels that differ between the frame and the keyframe are matched (the subject's old and new
   places); the static background, which would pull the match to zero shift, is left out.
4. The shift along the axis that best explains those pixels is the displacement from the keyframe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

# SciPy is imported inside the functions that use it, to keep its 0.9 s import off the start of a run:
# see pipeline.preload_scipy.

from autofunscript.motion.segments import crossfade
from autofunscript.motion.signal import orient_axis

CHANGE_THRESHOLD = 12.0  # grey levels
MIN_CHANGED_SHARE = 0.004  # below this the frame looks like the keyframe: zero displacement
ACROSS_SLACK = 1  # pixels of search across the axis, for a slightly bent or tilted path
MAX_BAND_PIXELS = 48 * 128  # larger bands are matched at reduced scale
JUMP_CONTEXT = 7  # frames either side that a jump is compared with
JUMP_RATIO = 2.5  # a jump moves this many times the median move around it
RETRY_JUMP_SHARE = 0.01  # a stretch with more jumps than this is measured again from another keyframe
POOR_MATCH = 0.3  # or one whose matches leave more than this share of the change unexplained (median)
CLEARER_MATCH = 0.5  # a retry that leaves under this share of the first's unexplained change is better
# How much less closely a stretch measured again may follow the flow's moves than the first measurement and still
# replace it (measured on the suite: with no slack medium real_04 and real_10 lost r 0.995 -> 0.988 and 0.978, where
# the first measurement was mostly flat with a few jumps and a clean one agreed 0.03 less).
RETRY_AGREEMENT_SLACK = 0.05
# A band whose moves correlate less with the flow's than this is not taken in the flow's place (measured: searched
# directions that beat the flow 0.31 and 0.91, one that did not -0.04). As the bar for any registered band (session
# 19; -0.2 before) it changed none of the suite's flow windows, whose bands agreed 0.24 and up in session 17's log,
# and one 60 s model window (cuts real_08, F1 0.86 -> 0.82). Session 10 had seen bands on their subject at -0.05
# and flow windows off it, on the code of then (before registration and the later band checks).
LOOSE_AGREEMENT = 0.2
# A band on a camera path that registration could not check anywhere in the window (a lens, as in VR; also a
# subject that fills the frame, or strong parallax: see CameraPaths) drifts with the chain of camera motions,
# and is taken only where its moves also follow the flow's this closely (measured on the suite's vr windows:
# 0.68-0.99 where the band was about as good as the flow or better, 0.24-0.37 where the flow was better by
# 0.4-0.6: real_11, 15 reversals a second). Where some stretches registered, their level holds the rest
# (hard real_12's last window, 2 of 4: agreement 0.38, r 0.51 against the flow's 0.22).
UNREGISTERED_AGREEMENT = 0.5
# A track with more jumps than this has lost the subject: the window uses the flow instead. On registered camera
# paths a band under an occluder drifts off without jumping more often, so the bar is low (measured, flow F1 / r:
# hard 0.610 / 0.417 at 3 % -> 0.629 / 0.472, cuts 0.966 / 0.912 -> 0.973 / 0.923, medium unchanged).
JUMPY_SHARE = 0.01
MAX_EXCURSION = 3  # frames: longer stretches off the subject are left to the retries and the jump checks
MAX_SEARCH_SHARE = 0.5  # the subject cannot travel more than this share of the frame (along the axis) from the keyframe
# Below this share of the ROI's gradient energy along the stroke axis the motion cannot be seen (measured:
# thin lines and edges under a shaky camera 0.01-0.04, stroking subjects about 0.3).
MIN_VISIBLE_SHARE = 0.08
# Direct registration to the keyframe: every REGISTER_EVERY-th matched frame, on background corners at least
# BACKGROUND_MARGIN pixels from the ROI (the subject must not count as camera motion).
REGISTER_EVERY = 10
BACKGROUND_MARGIN = 10
MAX_CORNERS = 300
MIN_CORNERS = 20
MIN_TRACKED = 12
MIN_INLIER_SHARE = 0.3
INLIER_PX = 0.5
# Measured share of frames registering: synthetic clips with a hand-held camera 0.87-1.0, a synthetic VR eye
# (lens distortion) 0.23. Below this share a keyframe's path is left as the chain.
MIN_REGISTERED_SHARE = 0.5


_KERNEL = np.ones((3, 3), np.uint8)


class Match(NamedTuple):
    """One frame matched against the keyframe."""

    displacement: float  # along the axis from the keyframe, analysis pixels
    unexplained: float  # share of the change the shift leaves unexplained: a wrong axis explains less
    changed: bool  # the frame differs from the keyframe inside the band (False: nothing to match)


@dataclass(frozen=True)
class BandTrack:
    """A window's subject positions from the band, how much of the window it could see and how often it
    lost the subject."""

    displacement: np.ndarray  # (T,) along the axis, analysis pixels, + = along the axis
    seen: float  # share of the frames that differed from their keyframe inside the band
    jumps: float  # jump_share of the track before brief excursions were bridged: the evidence of losses
    registered: bool  # every stretch was measured on a registered camera path: its level is measured too
    partly_registered: bool  # some stretch was: registration can follow this camera path (unlike a lens's)
    # The displacement as the checks on the track judge it: every frame that stands out of its neighbourhood is
    # flattened, the turns of strokes of about four frames too. Their thresholds were measured on that, and at
    # such speeds the band is often off the subject (motion blur, a VR lens) while its kept turns follow the
    # flow's closely enough to pass (measured with the turns kept: hard, cuts and vr real_11 r 0.58 / 0.94 /
    # 0.97 -> 0.44 / 0.76 / 0.75).
    checked: np.ndarray


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def camera_chain(cameras: np.ndarray, key: int) -> np.ndarray:
    """(T, 3, 3) maps from keyframe coordinates to each frame's, from per-frame motions prev -> current."""
    t = cameras.shape[0]
    steps = np.empty((t, 3, 3))
    steps[:, :2] = cameras
    steps[:, 2] = (0.0, 0.0, 1.0)
    backwards = np.linalg.inv(steps[1 : key + 1])  # batched: one call instead of one per frame
    chain = np.empty((t, 3, 3))
    chain[key] = np.eye(3)
    for i in range(key + 1, t):
        chain[i] = steps[i] @ chain[i - 1]
    for i in range(key - 1, -1, -1):
        chain[i] = backwards[i] @ chain[i + 1]
    return chain


class CameraPaths:
    """For one window, maps from a keyframe's coordinates to each frame's (see camera_chain), with the chain's
    error taken out by registering frames directly to the keyframe.

    The per-frame camera motions come from dense flow, which reads hand-held shake short (at about 0.85 of its
    size on the synthetic clips) and drifts: chained over a keyframe's 8 s the synthetic camera paths were
    2.3-4.9 analysis pixels off, which the band reads as the subject moving. Every REGISTER_EVERY-th frame
    is registered to the keyframe on background corners (tracked by pyramidal Lucas-Kanade from where the
    chain puts them, then a RANSAC similarity): 0.3-0.5 px off. The correction is interpolated between those
    frames. Chains are cached per keyframe and frame span: a window tracks the same keyframes along two
    directions.
    """

    def __init__(self, images: np.ndarray, cameras: np.ndarray, roi_weight: np.ndarray, cell: int) -> None:
        self.images, self.cameras = images, cameras
        height, width = images.shape[1:]
        rows, cols = roi_weight.shape
        roi = np.zeros((height, width), np.uint8)
        roi[: rows * cell, : cols * cell] = cv2.resize((roi_weight > 0.05).astype(np.uint8), (cols * cell, rows * cell),
                                                       interpolation=cv2.INTER_NEAREST)
        margin = np.ones((2 * BACKGROUND_MARGIN + 1,) * 2, np.uint8)
        self.background = ((1 - cv2.dilate(roi, margin)) * 255).astype(np.uint8)
        self._chains: dict[tuple[int, int, int, int], tuple[np.ndarray, bool]] = {}

    def chain(self, key: int, frames: Sequence[int]) -> np.ndarray:
        """(T, 3, 3) maps from keyframe `key` to every frame, registered where `frames` (sorted) will be matched."""
        return self._path(key, frames)[0]

    def registered(self, key: int, frames: Sequence[int]) -> bool:
        """Whether chain(key, frames) could be corrected by registration (see _path)."""
        return self._path(key, frames)[1]

    def _path(self, key: int, frames: Sequence[int]) -> tuple[np.ndarray, bool]:
        # a span and a sample of frames with the same ends are registered at different frames
        cache_key = (key, frames[0], frames[-1], len(frames)) if len(frames) else (key, 0, -1, 0)
        if cache_key not in self._chains:
            self._chains[cache_key] = self._registered(key, frames)
        return self._chains[cache_key]

    def _registered(self, key: int, frames: Sequence[int]) -> tuple[np.ndarray, bool]:
        chain = camera_chain(self.cameras, key)
        corners = cv2.goodFeaturesToTrack(self.images[key], MAX_CORNERS, 0.01, 6, mask=self.background)
        if corners is None or len(corners) < MIN_CORNERS:
            return chain, False  # no background to register on (the subject fills the frame)
        planned, last = [], None
        for i in frames:
            if i != key and (last is None or i - last >= REGISTER_EVERY or i == frames[-1]):
                planned.append(i)
                last = i
        anchors, corrections = [key], [np.eye(3)]
        allowed_failures = (1 - MIN_REGISTERED_SHARE) * len(planned)
        for tried, i in enumerate(planned, start=1):
            found = self._register(key, i, chain[i], corners)
            if found is not None:
                anchors.append(i)
                corrections.append(found @ np.linalg.inv(chain[i]))
            elif tried - (len(anchors) - 1) > allowed_failures:
                # a background a similarity cannot describe (a VR lens, strong parallax): the few frames that
                # register would carry their correction over the frames between, far from where it was measured.
                # Stopped as soon as the share can no longer be reached.
                return chain, False
        order = np.argsort(anchors)
        at, corrections = np.asarray(anchors)[order], np.asarray(corrections)[order]
        every = np.arange(chain.shape[0])
        correction = np.stack([np.interp(every, at, corrections[:, r, c]) for r in range(3) for c in range(3)],
                              axis=1).reshape(-1, 3, 3)
        return correction @ chain, True

    def _register(self, key: int, i: int, guess: np.ndarray, corners: np.ndarray) -> np.ndarray | None:
        """The keyframe -> frame `i` similarity from the background corners, or None where it is unclear."""
        predicted = cv2.perspectiveTransform(corners, guess).astype(np.float32)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(self.images[key], self.images[i], corners, predicted,
                                                    winSize=(15, 15), maxLevel=2, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        tracked = status.ravel() == 1
        if tracked.sum() < MIN_TRACKED:
            return None
        model, inliers = cv2.estimateAffinePartial2D(corners[tracked], moved[tracked], method=cv2.RANSAC,
                                                     ransacReprojThreshold=INLIER_PX, maxIters=200, confidence=0.99)
        if model is None or inliers.mean() < MIN_INLIER_SHARE:
            return None
        return _h(model)


def band_geometry(roi_weight: np.ndarray, axis: tuple[float, float], cell: int) -> tuple[np.ndarray, int, int]:
    """Canonical band (upright along the axis) covering the ROI: 3x3 map canonical -> frame, width, length."""
    a = np.asarray(axis, float)
    a /= np.hypot(*a)
    n = np.array([-a[1], a[0]])
    rows, cols = np.nonzero(roi_weight > 0.2)
    centres = np.stack([(cols + 0.5) * cell, (rows + 0.5) * cell], axis=1)
    along, across = centres @ a, centres @ n
    a_max = along.max() + cell
    a_min = along.min() - cell
    n_min = across.min() - cell
    width = int(np.ceil(across.max() + cell - n_min))
    length = int(np.ceil(a_max - a_min))
    origin = n_min * n + a_max * a  # canonical (0, 0): one corner of the band, "up" end
    to_frame = np.array([[n[0], -a[0], origin[0]], [n[1], -a[1], origin[1]], [0.0, 0.0, 1.0]])
    return to_frame, max(width, 8), max(length, 8)


def _level(band: np.ndarray) -> float:
    """The band's median grey level, from every 4th pixel (plenty); a partition is several times faster
    than np.median on arrays this small."""
    sample = band[::2, ::2].ravel()
    return float(np.partition(sample, sample.size // 2)[sample.size // 2])


def masked_sqdiff(image: np.ndarray, templ: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """cv2.matchTemplate(image, templ, cv2.TM_SQDIFF, mask=mask) for float32 inputs: at each shift, the sum of
    ((templ - image) * mask)^2.

    OpenCV goes through DFTs; a band's search is tall and only a few shifts wide, where a batched matrix
    product over the column shifts is about twice as fast, at the same float32 precision.
    """
    th, tw = templ.shape
    height = image.shape[0]
    rows, cols = height - th + 1, image.shape[1] - tw + 1
    weight = mask * mask
    weighted = weight * templ
    # sum w (t - i)^2 = sum w t^2 - 2 sum (w t) i + sum w i^2: the last two from one product of [i, i^2]
    # with [-2 w t, w] (rows of the image against rows of the template), for every column shift at once
    against = np.empty((2 * tw, th), np.float32)
    np.multiply(weighted.T, -2, out=against[:tw])
    against[tw:] = weight.T
    pairs = np.empty((cols, height, 2 * tw), np.float32)
    for c in range(cols):
        pairs[c, :, :tw] = image[:, c : c + tw]
    np.square(pairs[:, :, :tw], out=pairs[:, :, tw:])
    row_by_row = pairs @ against  # [column shift, image row, template row]
    # the cost at row shift r pairs template row k with image row r + k: a diagonal of row_by_row
    shift_step, step, item = row_by_row.strides
    cost = as_strided(row_by_row, (rows, cols, th), (step, shift_step, step + item)).sum(axis=2)
    return cost + float((weighted * templ).sum())


class BandMatcher:
    """Matches frames of a window against its keyframe inside the ROI band along one axis."""

    def __init__(self, images: np.ndarray, cameras: np.ndarray, roi_weight: np.ndarray,
                 axis: tuple[float, float], cell: int, key: int, chain: np.ndarray | None = None) -> None:
        self.images = images
        height = images.shape[1]
        to_frame, width, length = band_geometry(roi_weight, axis, cell)
        # a large band (motion all over the frame) is matched at reduced scale: the cost stays bounded
        self.scale = min(1.0, float(np.sqrt(MAX_BAND_PIXELS / (width * length))))
        to_frame = to_frame @ np.diag([1 / self.scale, 1 / self.scale, 1.0])
        self.width, self.length = max(8, int(width * self.scale)), max(8, int(length * self.scale))
        # the subject may travel beyond the band the flow saw move: search as far as the frame allows
        extent = abs(axis[0]) * images.shape[2] + abs(axis[1]) * height  # the frame's size along the axis
        self.search = int(MAX_SEARCH_SHARE * extent * self.scale)
        # search-image rows r and columns c map to canonical (c - slack, r - search)
        offset = np.array([[1.0, 0.0, -ACROSS_SLACK], [0.0, 1.0, -self.search], [0.0, 0.0, 1.0]])
        self.size = (self.width + 2 * ACROSS_SLACK, self.length + 2 * self.search)
        chain = camera_chain(cameras, key) if chain is None else chain
        self.maps = (chain @ to_frame @ offset)[:, :2]
        self.key = key
        key_rows = self._across(self._centre_rows(key, self._new_region()))
        self.key_level = _level(key_rows)
        self.key_band = key_rows.astype(np.float32)
        self.key_small = cv2.pyrDown(self.key_band)

    def _warp(self, i: int, region: np.ndarray, first: int, stop: int) -> None:
        """Rows first..stop of frame i's search region, into `region` (uint8, the whole region). The search
        reaches past the frame's edge, where the replicated edge stands in for a subject leaving the picture
        (a black border matched it worse: easy F1 0.997 -> 0.926)."""
        if stop <= first:
            return
        to_frame = self.maps[i].copy()
        to_frame[:, 2] += to_frame[:, 1] * first  # region row `first` is the warp's row 0
        cv2.warpAffine(self.images[i], to_frame, (self.size[0], stop - first), dst=region[first:stop],
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def _centre_rows(self, i: int, region: np.ndarray) -> np.ndarray:
        self._warp(i, region, self.search, self.search + self.length)
        return region[self.search : self.search + self.length]

    def _new_region(self) -> np.ndarray:
        return np.empty((self.size[1], self.size[0]), np.uint8)

    def _across(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, ACROSS_SLACK : ACROSS_SLACK + self.width]

    def match(self, i: int) -> Match:
        if i == self.key:
            return Match(0.0, 1.0, False)
        # the band itself first: frames that look like the keyframe there (the subject at rest, or lost) need
        # no search
        region = self._new_region()
        rows = self._centre_rows(i, region)
        # lighting flicker shifts the whole band: match levels on the median, which the subject barely moves
        flicker = self.key_level - _level(self._across(rows))
        centre = self._across(rows).astype(np.float32)
        centre += flicker
        difference = cv2.absdiff(centre, self.key_band)
        # compression noise flips scattered single pixels; the subject changes whole blobs (0/1 kept in float32:
        # the mask below weighs the match with it)
        changed = cv2.morphologyEx(cv2.threshold(difference, CHANGE_THRESHOLD, 1, cv2.THRESH_BINARY)[1],
                                   cv2.MORPH_OPEN, _KERNEL)
        if cv2.countNonZero(changed) / changed.size < MIN_CHANGED_SHARE:
            return Match(0.0, 1.0, False)
        self._warp(i, region, 0, self.search)
        self._warp(i, region, self.search + self.length, self.size[1])
        region = region.astype(np.float32)
        region += flicker
        mask = cv2.dilate(changed, _KERNEL)
        # matched at half resolution: a quarter of the pixels, and sub-pixel refinement of the best shift
        # keeps the error well under one analysis pixel
        cost = masked_sqdiff(cv2.pyrDown(region), self.key_small, cv2.pyrDown(mask))
        profile = cost.min(axis=1)
        lowest = int(np.argmin(profile))
        # At half resolution a sharp edge aliases: the cost can dip one row either side of the true shift, and
        # the lowest row flips between the two dips while the subject rests. The valley is chosen on the cost
        # itself, the shift inside it (two rows either way) on the cost smoothed [1 2 1], which merges the dips.
        smoothed = np.convolve(np.pad(profile, 1, mode="edge"), (0.25, 0.5, 0.25), mode="valid")
        first = max(0, lowest - 2)
        best = first + int(np.argmin(smoothed[first : lowest + 3]))
        refine = 0.0
        if 0 < best < smoothed.size - 1:
            left, mid, right = smoothed[best - 1 : best + 2]
            curvature = left - 2 * mid + right
            refine = 0.5 * (left - right) / curvature if curvature > 0 else 0.0
        row = 2 * (best + refine)
        unmoved = float((difference**2 * mask).sum())
        unexplained = 4 * float(profile[lowest]) / unmoved if unmoved > 0 else 1.0
        # content found `d` rows higher in the canonical band moved `d` along the axis
        return Match((self.search - row) / self.scale, unexplained, True)


def structure_tensors(images: np.ndarray, rows: int, cols: int, cell: int, samples: int = 8) -> np.ndarray:
    """(3, rows, cols) per-cell sums of the gradient products xx, xy, yy over a few of the frames: which
    directions of motion each cell of the grid can show."""
    tensor = np.zeros((3, rows, cols), np.float64)
    for i in np.unique(np.linspace(0, images.shape[0] - 1, samples).astype(int)):
        image = images[i, : rows * cell, : cols * cell].astype(np.float32)
        gx, gy = cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)
        for k, product in enumerate((gx * gx, gx * gy, gy * gy)):
            tensor[k] += cv2.resize(product, (cols, rows), interpolation=cv2.INTER_AREA)
    return tensor


def visible_share(tensors: np.ndarray, roi_weight: np.ndarray, axis: tuple[float, float]) -> float:
    """Share of the ROI's image gradient energy (see structure_tensors) that lies along `axis`.

    Motion along the axis shows only through gradients in that direction: along a straight edge or a thin
    line it is invisible (the aperture problem), and flow measured there is the solver's noise.
    """
    xx, xy, yy = tensors * roi_weight
    ax, ay = axis
    total = float((xx + yy).sum())
    return float((ax * ax * xx + 2 * ax * ay * xy + ay * ay * yy).sum()) / total if total > 0 else 1.0


def without_aperture_noise(grids: np.ndarray, tensors: np.ndarray) -> np.ndarray:
    """Cell velocities with what the picture cannot show damped: each cell's velocity is mapped through
    its structure tensor scaled to its strongest direction, so motion across an edge passes and motion
    along it is damped by the ratio of the weaker gradient to the stronger (textured cells keep all)."""
    xx, xy, yy = tensors
    strongest = (xx + yy) / 2 + np.sqrt(((xx - yy) / 2) ** 2 + xy**2)
    scale = 1.0 / np.maximum(strongest, 1e-9)
    gain = np.stack([np.stack([xx * scale, xy * scale], -1), np.stack([xy * scale, yy * scale], -1)], -2)
    gain[strongest < 1e-6] = np.eye(2)  # no gradient at all: nothing to say about direction
    return np.einsum("rcij,trcj->trci", gain.astype(np.float32), grids.astype(np.float32))


def choose_axis(images: np.ndarray, cameras: np.ndarray, roi_weight: np.ndarray, first_guess: tuple[float, float],
                cell: int, key: int, samples: int = 16, paths: CameraPaths | None = None) -> tuple[float, float]:
    """The stroke direction whose shifts explain most of the change in a sample of frames.

    Flow directions at a smooth subject's tips are unreliable, so directions every 30 degrees (and the
    flow's guess) are tried on a few frames, then the best one's neighbours 15 degrees either side.
    """
    t = images.shape[0]
    picks = np.unique(np.linspace(0, t - 1, min(samples, t)).astype(int))
    # one keyframe can match badly whatever the axis (see track_band), so each axis is scored from three
    keys = sorted({key, (key + t // 3) % t, (key + 2 * t // 3) % t})
    paths = paths or CameraPaths(images, cameras, roi_weight, cell)

    def unexplained(degrees: float) -> float:
        axis = (np.sin(np.radians(degrees)), -np.cos(np.radians(degrees)))
        scores = []
        for k in keys:
            matcher = BandMatcher(images, cameras, roi_weight, axis, cell, k, chains[k])
            scores += [matcher.match(i).unexplained for i in picks]
        return float(np.mean(scores))

    guess = float(np.degrees(np.arctan2(first_guess[0], -first_guess[1])))
    guess = (guess + 90) % 180 - 90  # an axis and its opposite are the same stroke
    chains = {k: paths.chain(k, picks) for k in keys}
    coarse = {angle: unexplained(angle) for angle in (guess, *range(-90, 90, 30))}
    best = min(coarse, key=coarse.get)
    fine = {angle: unexplained(angle) for angle in (best - 15, best + 15)}
    fine[best] = coarse[best]
    best = min(fine, key=fine.get)
    return tuple(orient_axis(np.array([np.sin(np.radians(best)), -np.cos(np.radians(best))])))


def track_band(images: np.ndarray, cameras: np.ndarray, roi_weight: np.ndarray, axis: tuple[float, float],
               cell: int, rekey_every: int | None = None, overlap: int = 15,
               paths: CameraPaths | None = None, flow: np.ndarray | None = None) -> BandTrack:
    """Displacement along `axis` (analysis pixels, + = along the axis) of the ROI subject for each frame,
    and how often the band saw it move at all (a subject a few pixels wide vanishes in the change mask).

    Every `rekey_every` frames a new keyframe takes over, so slow zoom, pan and lighting changes never
    separate a frame far from its keyframe. Consecutive stretches both measure the `overlap` frames either
    side of the joint: the new one is tied to the previous one by their median difference there, and
    the two are cross-faded over those frames, because frames just after a keyframe differ little from
    it and are the ones it matches worst. `paths` shares the registered camera paths between calls on one
    window (made here when not given). `flow`, the window's integrated flow, is the witness a stretch measured
    again from another keyframe is checked against.
    """
    t = images.shape[0]
    paths = paths or CameraPaths(images, cameras, roi_weight, cell)
    step = rekey_every if rekey_every and rekey_every < t else t
    keys = list(range(0, t, step))

    def measure(key: int, frames: range) -> tuple[np.ndarray, np.ndarray, float]:
        """Displacements over `frames` from `key`, whether the band saw change in each, and the median share of
        that change the matches left unexplained (NaN where it saw none: nothing was matched, well or badly)."""
        matcher = BandMatcher(images, cameras, roi_weight, axis, cell, key, paths.chain(key, frames))
        matches = [matcher.match(i) for i in frames]
        unexplained = [m.unexplained for m in matches if m.changed]
        return (np.array([m.displacement for m in matches]), np.array([m.changed for m in matches]),
                float(np.median(unexplained)) if unexplained else float("nan"))

    def stretch(key: int) -> tuple[np.ndarray, np.ndarray, bool]:
        frames = range(max(0, key - overlap), min(key + step + overlap, t))
        part, changed, unexplained = measure(key, frames)
        chosen = key
        # some keyframes match badly (the subject caught mid-blur, or half out of the band): the stretch
        # jumps, or its matches leave much of the change unexplained; a keyframe elsewhere in the stretch
        # usually does better
        others = dict.fromkeys((min(key + step // 2, t - 1), min(key + step - 1, t - 1)))  # in order, once
        jumps = jump_share(part)
        stretch_flow = None if flow is None else flow[frames.start : frames.stop]
        for other in [k for k in others if k != key]:
            if not worth_retrying(jumps, unexplained):
                break
            retry, retry_changed, retry_unexplained = measure(other, frames)
            retry_jumps = jump_share(retry)
            if (retry_is_better(jumps, unexplained, retry_jumps, retry_unexplained)
                    and (stretch_flow is None or follows_as_closely(retry, part, stretch_flow))):
                part, changed, jumps, unexplained, chosen = retry, retry_changed, retry_jumps, retry_unexplained, other
        return part, changed, paths.registered(chosen, frames)

    # One stretch after another: spread over threads they fought over the GIL (a match is many short OpenCV
    # calls), and the window's analysis already runs beside the decoder. Measured on a 5-minute 1080p clip:
    # generate 5 % less CPU and 7 % faster; a 20 s clip's one window took the same time either way.
    parts = [stretch(key) for key in keys]
    displacement = np.zeros(t)
    seen = 0
    for key, (part, changed, _) in zip(keys, parts):
        first, end = max(0, key - overlap), min(key + step + overlap, t)
        if key > 0:
            shared = min(key + overlap, t) - first  # frames the previous stretch measured too
            part = part + float(np.median(displacement[first : first + shared] - part[:shared]))
            part[:shared] = crossfade(displacement[first : first + shared], part[:shared])
        displacement[first:end] = part
        seen += int(changed[key - first : min(key + step, t) - first].sum())
    bridged = without_excursions(displacement)
    return BandTrack(suppress_spikes(bridged), seen / t, jump_share(suppress_spikes(displacement, keep_recurring=False)),
                     all(registered for *_, registered in parts), any(registered for *_, registered in parts),
                     suppress_spikes(bridged, keep_recurring=False))


def worth_retrying(jumps: float, unexplained: float) -> bool:
    """Whether a stretch (its jump_share, and the median share of the change its matches left unexplained) should
    be measured again from another keyframe."""
    return jumps > RETRY_JUMP_SHARE or unexplained > POOR_MATCH


def retry_is_better(jumps: float, unexplained: float, retry_jumps: float, retry_unexplained: float) -> bool:
    """Whether a stretch measured again should replace the first measurement (before the check against the flow,
    follows_as_closely): it jumps less, or it explains the change clearly better and jumps no more than the larger
    of the first's share and the share a stretch may jump before it is retried. A retry that saw no change (NaN
    unexplained) explains nothing better.

    Measured on the suite (session 22): a keyframe that catches the subject across static lines of the background
    matched a whole stretch of `medium` real_01 leaving 0.54 of the change unexplained, drifting at every trough
    without jumping (r 0.917 against the truth), where another keyframe left 0.21 (r 0.964).
    """
    return retry_jumps < jumps or (retry_jumps <= max(jumps, RETRY_JUMP_SHARE)
                                   and retry_unexplained < CLEARER_MATCH * unexplained)


def suppress_spikes(x: np.ndarray, half: int = 3, k: float = 4.0, keep_recurring: bool = True) -> np.ndarray:
    """Replace single-frame mismatches (the matcher briefly locking onto something else) by the local median.

    A Hampel filter: a sample is replaced only when it is far from the median of its neighbourhood compared
    with how much the neighbourhood itself varies, so fast but real strokes pass untouched. Strokes of about
    four frames are the exception: sampled middle, top, middle, bottom, most of a neighbourhood sits in the
    middle and every turn stands out of it. So a sample is not a spike where others a few frames before it
    and after it stand out the same way (a stroke's turns do; a mismatch is a one-off), unless `keep_recurring`
    is False. Without that, medium real_11 (15 reversals a second) lost a turn in three on some stretches.
    Both sides, because a recurrence on one side only let mismatches through in the vr preset (extrema F1
    0.948 -> 0.945); so within a few frames of the ends of `x` such turns are still flattened.
    """
    if x.size < 2 * half + 1:
        return x
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, half, mode="edge"), 2 * half + 1)
    median = np.median(windows, axis=1)
    spread = 1.4826 * np.median(np.abs(windows - median[:, None]), axis=1)
    floor = 0.5 + 0.02 * np.ptp(x)  # a flat neighbourhood has no spread: do not flag sub-pixel noise
    deviation = x - median
    outlier = np.abs(deviation) > k * np.maximum(spread, floor)
    if keep_recurring and outlier.any():
        reach = 2 * half + 1  # the next turns of strokes up to a neighbourhood long
        around = np.lib.stride_tricks.sliding_window_view(np.pad(deviation, reach), 2 * reach + 1)
        around = np.delete(around, [reach - 1, reach, reach + 1], axis=1)  # itself and a mismatch's twin
        same_way = around * np.sign(deviation)[:, None] >= 0.5 * np.abs(deviation)[:, None]
        outlier &= ~(same_way[:, : reach - 1].any(axis=1) & same_way[:, reach - 1 :].any(axis=1))
    return np.where(outlier, median, x)


def mend_from_flow(band: np.ndarray, flow: np.ndarray, half: int = 3, k: float = 4.0) -> np.ndarray:
    """The band with frames it mismatched on its own taken from the flow.

    At a few samples per stroke (arm circles filmed at 10 fps) every frame moves far, so a mismatched frame
    does not stand out of the band's own neighbourhood (suppress_spikes). Beside the flow scaled to the
    band it does: the difference of the two is slow where both follow the subject (the flow's speed-
    dependent underestimate, its drift), and a flow error integrates into a step, not a spike.
    """
    # the scale from frame-to-frame moves: the flow's wander and steps hardly touch them
    flow_moves, band_moves = np.diff(flow), np.diff(band)
    power = float(flow_moves @ flow_moves)
    gain = float(flow_moves @ band_moves) / power if power > 0 else 0.0
    if gain <= 0:
        return band
    follows = gain * flow
    residual = band - follows
    # the flow turns where the subject does, so a turn of the band does not stand out of the residual: what
    # stands out there, once or every few frames, is a mismatch
    cleaned = suppress_spikes(residual, half, k, keep_recurring=False)
    # Only a single frame off, standing out of both its neighbours, that makes the band turn where the flow
    # does not turn that way: a false reversal pair. Where several frames differ together, or the flow turns
    # there too, the two disagree about the stroke's shape (a sharp turn the flow rounds off), not about a match.
    away = residual - cleaned
    direction = np.sign(away)

    def steps_to(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded = np.pad(x, 1, mode="edge")
        return x - padded[:-2], x - padded[2:]

    def stands_out(x: np.ndarray, margin: np.ndarray | float) -> np.ndarray:
        before, after = steps_to(x)
        return ((np.sign(before) == direction) & (np.sign(after) == direction)
                & (np.minimum(np.abs(before), np.abs(after)) > margin))

    flow_before, flow_after = steps_to(flow)
    flow_turns_too = (np.sign(flow_before) != -direction) & (np.sign(flow_after) != -direction)
    mismatched = (away != 0) & stands_out(residual, np.abs(away) / 2) & stands_out(band, 0.0) & ~flow_turns_too
    return np.where(mismatched, cleaned + follows, band)


def _jumps(x: np.ndarray) -> np.ndarray:
    """Which frame-to-frame moves jump (see jump_share)."""
    from scipy.ndimage import median_filter

    moves = np.abs(np.diff(x))
    around = median_filter(moves, size=2 * JUMP_CONTEXT + 1, mode="nearest")
    return (moves > np.ptp(x) / 3) & (moves > JUMP_RATIO * around)


def without_excursions(x: np.ndarray, max_frames: int = MAX_EXCURSION) -> np.ndarray:
    """Bridge brief excursions: a jump away and a jump back within `max_frames`, ending near where it left.

    The matcher can lock onto something else for a few frames (a blurred transition, a passing object).
    A single frame is caught by suppress_spikes, but two or three frames far off inflate the spread it
    compares with, so they pass it; here they are replaced by a straight line across.
    """
    if x.size < 3 or np.ptp(x) == 0:
        return x
    moves = np.diff(x)
    jumps = np.flatnonzero(_jumps(x))
    out = x.copy()
    for out_at in jumps:
        leap = abs(moves[out_at])
        for back_at in jumps[(jumps > out_at) & (jumps <= out_at + max_frames)]:
            if np.sign(moves[back_at]) != np.sign(moves[out_at]) and abs(x[back_at + 1] - x[out_at]) <= leap / 2:
                out[out_at + 1 : back_at + 1] = np.interp(np.arange(out_at + 1, back_at + 1), [out_at, back_at + 1],
                                                          [x[out_at], x[back_at + 1]])
                break
    return out


def jump_share(x: np.ndarray) -> float:
    """Share of frame-to-frame moves that jump: over a third of the range and several times the moves
    around them. A real stroke speeds up and slows down over frames; the matcher losing the subject
    leaps at once."""
    if x.size < 3 or np.ptp(x) == 0:
        return 0.0
    return float(np.mean(_jumps(x)))


def moves_agreement(band: np.ndarray, flow: np.ndarray, sigma_frames: float = 1.5) -> float:
    """Correlation of the band's and the flow's frame-to-frame moves, both lightly smoothed (1 = same moves)."""
    from scipy.ndimage import gaussian_filter1d

    a = np.diff(gaussian_filter1d(np.asarray(band, float), sigma_frames))
    b = np.diff(gaussian_filter1d(np.asarray(flow, float), sigma_frames))
    if a.size < 3 or not a.std() or not b.std():
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def moves_with(band: np.ndarray, flow: np.ndarray, partly_registered: bool = True) -> bool:
    """False when the band's moves are unrelated to the flow's or run against them, or (`partly_registered`
    False: no stretch of its camera path registered) follow them only loosely.

    The flow may misjudge how far a smooth subject moves, hardly which way: a band that moves the other
    way, or no way in particular, has matched something else. Measured r of the moves: a twisting pocket
    watch's band -0.37; strokes at 15 reversals a second, too blurred for the band, with a point of interest
    on them (hard real_11) 0.08-0.16, at window r 0.2 against the flow's 0.93; the bands the suite's windows
    take 0.24-1.0 (see LOOSE_AGREEMENT). An unregistered one must follow closely (UNREGISTERED_AGREEMENT).
    """
    return moves_agreement(band, flow) > (LOOSE_AGREEMENT if partly_registered else UNREGISTERED_AGREEMENT)


def follows_as_closely(retry: np.ndarray, first: np.ndarray, flow: np.ndarray) -> bool:
    """Whether a stretch measured again from another keyframe follows the flow's moves about as closely as the
    first measurement did.

    A keyframe that holds no subject (caught at one end of its stroke, past the band, or behind an occluder)
    matches nothing in the other frames, so its stretch hardly moves, and it does not jump either: fewer jumps
    alone would take it.
    """
    return moves_agreement(retry, flow) > moves_agreement(first, flow) - RETRY_AGREEMENT_SLACK


def better_direction(first: BandTrack, other: BandTrack, flow: np.ndarray) -> bool:
    """Whether the track along a searched direction should replace the one along the flow's direction.

    On a noisy picture a wrong direction can explain the sampled frames as well, but tracked along it the
    subject is lost now and then: the flow's direction stands unless the other hardly ever loses the subject,
    and clearly less often. A band that misses the subject hardly moves, so it does not jump either: where the
    first track is good enough to be used, the other's moves must also follow the flow's more closely (on the
    suite's 59 windows with a second track, 7 of the 14 it replaced were further from the truth, r 0.04-0.41
    lower, and every one of them was further from the flow's moves too; the one that was closer to the truth
    was closer to the flow). Where the first jumps too often, the other stands in for the flow itself.
    """
    if not (other.jumps <= RETRY_JUMP_SHARE and other.jumps < 0.5 * first.jumps):
        return False
    agreement = moves_agreement(other.checked, flow)
    if first.jumps > JUMPY_SHARE:
        # the first track loses the subject too often to be used: the other replaces the flow itself, and need
        # only follow its moves loosely
        return agreement > LOOSE_AGREEMENT
    return agreement > moves_agreement(first.checked, flow)
