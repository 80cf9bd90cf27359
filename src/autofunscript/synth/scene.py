"""The plan of a synthetic clip: frame times, scene cuts, where the subject and the other layers are in
every frame, the camera and the lighting, all decided up front from the seed so that rendering a frame
is only image work.

Coordinates: each scene is painted on a "world" canvas slightly larger than one eye's view, so the
camera can shake, pan and zoom without showing an edge; layers are posed in world pixels and the
per-frame camera affine maps world pixels to the eye's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from autofunscript.synth.presets import Preset
from autofunscript.synth.textures import body_sprite, light_direction, occluder_sprite, paint_background, skin_tone

TICKS_PER_SECOND = 90_000  # the usual MPEG clock; exact for 24/25/30/50/60 fps
VFR_INTERVAL_RANGE = (1 / 1.5, 1 / 0.7)  # a frame interval relative to 1/fps
SHUTTER = 0.5  # exposure as a fraction of the nominal frame interval (a 180-degree shutter)
EYE_SIGN = (0.5, -0.5)  # near things sit further right in the left eye
NOISE_FIELDS = 2
NOISE_PAD = 48  # pixels of extra noise field to pick per-frame offsets from

# Independent random streams, so switching one feature (e.g. --vfr) does not repaint the scene.
_STREAMS = {"person": 1, "scene": 2, "timing": 3, "camera": 4, "distractor": 5, "occluder": 6, "noise": 7,
            "cuts": 8, "lighting": 9, "lens": 10}


def stream(seed: int, name: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[name], index])


@dataclass(frozen=True)
class FrameClock:
    """Presentation times of the frames as integer ticks of `time_base`, as they go into the file."""

    pts: np.ndarray
    time_base: Fraction
    rate: Fraction  # nominal frame rate

    @property
    def times_s(self) -> np.ndarray:
        return self.pts * (self.time_base.numerator / self.time_base.denominator)


def frame_clock(duration_s: float, fps: float, vfr: bool, rng: np.random.Generator) -> FrameClock:
    """Constant-rate frames covering the duration, or jittered intervals (some long, like dropped frames)."""
    rate = Fraction(fps).limit_denominator(1001)
    ticks = math.lcm(TICKS_PER_SECOND, rate.numerator)
    if ticks > 2**30:  # an odd rate: a 90 kHz clock is fine, frame times are what the file says anyway
        ticks = TICKS_PER_SECOND
    step = ticks * rate.denominator / rate.numerator
    count = max(1, round(duration_s * fps))
    if vfr:
        intervals = np.rint(rng.uniform(*VFR_INTERVAL_RANGE, int(count * 1.6) + 2) * step)
        pts = np.concatenate([[0], np.cumsum(np.maximum(intervals, 1))]).astype(np.int64)
        pts = pts[pts < count * step]
    else:
        pts = np.rint(np.arange(count) * step).astype(np.int64)
    return FrameClock(pts, Fraction(1, ticks), rate)


@dataclass(frozen=True)
class Stroke:
    """The subject's path in world pixels: centre and scale at position 0 (bottom) and 100 (top)."""

    bottom: np.ndarray
    top: np.ndarray
    angle_deg: float  # sprite rotation at mid-stroke, clockwise on screen
    rock_deg: float  # extra rotation from bottom to top: the body pivots a little as it moves
    scale_bottom: float
    scale_top: float

    def centre(self, pos: np.ndarray) -> np.ndarray:
        f = np.asarray(pos, float)[:, None] / 100.0
        return self.bottom + f * (self.top - self.bottom)

    def scale(self, pos: np.ndarray) -> np.ndarray:
        f = np.asarray(pos, float) / 100.0
        return self.scale_bottom + f * (self.scale_top - self.scale_bottom)

    def angle(self, pos: np.ndarray) -> np.ndarray:
        return self.angle_deg + (np.asarray(pos, float) / 100.0 - 0.5) * self.rock_deg


@dataclass(frozen=True)
class Scene:
    """One camera set-up: its background and how the subject looks and travels in it."""

    background: np.ndarray  # uint8 RGBA world canvas (alpha unused: 4 channels warp faster)
    subject: np.ndarray  # premultiplied RGBA sprite
    stroke: Stroke


@dataclass(frozen=True)
class Layer:
    """A sprite over the background with one pose per frame (world pixels)."""

    sprites: tuple[np.ndarray, ...]
    sprite_index: np.ndarray  # (N,) which sprite a frame shows (scenes may differ)
    centre: np.ndarray  # (N, 2)
    angle_deg: np.ndarray  # (N,)
    scale: np.ndarray  # (N,)
    blur: np.ndarray  # (N, 2) smear vector over the exposure, zeros when sharp
    disparity: float  # how far the layer stands out between the two eyes (vr), world px

    def affine(self, i: int, dx: float = 0.0) -> np.ndarray:
        """2x3 map from sprite pixels to world pixels for frame i."""
        sprite = self.sprites[self.sprite_index[i]]
        return pose_affine(sprite.shape, self.centre[i] + (dx, 0.0), self.angle_deg[i], self.scale[i])


def pose_affine(shape: tuple[int, ...], centre: np.ndarray, angle_deg: float, scale: float) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pivot = np.array([shape[1] / 2, shape[0] / 2])
    return np.hstack([rot, (np.asarray(centre) - rot @ pivot)[:, None]])


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render any frame of a clip, and the truth about it."""

    preset: Preset
    seed: int
    size: tuple[int, int]  # whole frame (W, H)
    eye_size: tuple[int, int]  # one view (W, H): half the width in vr
    clock: FrameClock
    positions: np.ndarray  # (N,) rendered stroke position 0-100 at each frame time
    scenes: tuple[Scene, ...]
    scene_index: np.ndarray  # (N,)
    cut_times_s: tuple[float, ...]  # times of the first frame after each cut
    subject: Layer
    others_behind: tuple[Layer, ...]  # drawn before the subject
    others_front: tuple[Layer, ...]  # drawn over the subject
    cameras: np.ndarray  # (N, eyes, 2, 3) world -> eye pixels
    background_disparity: float
    gain: np.ndarray | None  # (N,) lighting gain, None when lighting is constant
    noise: np.ndarray | None  # (NOISE_FIELDS, 2, H + pad, W + pad, 3) uint8 additive/subtractive sensor noise
    noise_pick: np.ndarray  # (N, 3) field, row offset, column offset
    lens_k: float  # barrel distortion strength (vr), 0 = none

    @property
    def eyes(self) -> int:
        return self.cameras.shape[1]

    @property
    def frame_count(self) -> int:
        return int(self.clock.pts.size)

    def subject_centres(self) -> np.ndarray:
        """(N, eyes, 2) subject centre in whole-frame pixels, through camera, disparity and lens."""
        return np.stack([self._subject_to_frame(self.subject.centre, e) for e in range(self.eyes)], axis=1)

    def subject_boxes(self) -> np.ndarray:
        """(N, 4) x0, y0, x1, y1 in frame pixels around the (first-eye) subject's silhouette rectangle, turned
        and scaled with it: an upright box that holds the subject, a little loose when it is tilted."""
        rects = []
        for sprite in self.subject.sprites:
            x, y, w, h = cv2.boundingRect((sprite[..., 3] > 0.05).astype(np.uint8))
            pivot_x, pivot_y = sprite.shape[1] / 2, sprite.shape[0] / 2
            rects.append((x - pivot_x, y - pivot_y, x + w - pivot_x, y + h - pivot_y))
        rect = np.array(rects)[self.subject.sprite_index]
        a = np.radians(self.subject.angle_deg)
        cos, sin = np.cos(a) * self.subject.scale, np.sin(a) * self.subject.scale
        corners = []
        for ix, iy in ((0, 1), (2, 1), (0, 3), (2, 3)):
            dx, dy = rect[:, ix], rect[:, iy]
            world = self.subject.centre + np.stack([cos * dx - sin * dy, sin * dx + cos * dy], axis=1)
            corners.append(self._subject_to_frame(world, 0))
        stack = np.stack(corners, axis=1)
        return np.hstack([stack.min(axis=1), stack.max(axis=1)])

    def _subject_to_frame(self, world: np.ndarray, eye: int) -> np.ndarray:
        shift = EYE_SIGN[eye] * (self.subject.disparity - self.background_disparity)
        pts = world + (shift, 0.0)
        cam = self.cameras[:, eye]
        eye_px = np.einsum("nij,nj->ni", cam[:, :, :2], pts) + cam[:, :, 2]
        if self.lens_k:
            eye_px = lens_forward(eye_px, self.eye_size, self.lens_k)
        return eye_px + (eye * self.eye_size[0], 0.0)


def lens_forward(points: np.ndarray, eye_size: tuple[int, int], k: float) -> np.ndarray:
    """Where an undistorted eye pixel lands after the barrel distortion that `lens_maps` renders."""
    centre = np.array([(eye_size[0] - 1) / 2, (eye_size[1] - 1) / 2])
    half = min(eye_size) / 2
    rel = (points - centre) / half
    r_src = np.linalg.norm(rel, axis=-1)
    # rendering samples r_src = r (1 + k r^2) / (1 + k); invert it with Newton steps
    target = r_src * (1 + k)
    r = r_src.copy()
    for _ in range(30):
        r -= (r * (1 + k * r**2) - target) / (1 + 3 * k * r**2)
    ratio = np.divide(r, r_src, out=np.ones_like(r), where=r_src > 1e-9)
    return centre + rel * ratio[..., None] * half


def lens_maps(eye_size: tuple[int, int], k: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps for barrel distortion: edge midpoints stay put, the corners fall outside (black)."""
    w, h = eye_size
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    half = min(eye_size) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rx, ry = (x - centre[0]) / half, (y - centre[1]) / half
    factor = (1 + k * (rx**2 + ry**2)) / (1 + k)
    return (centre[0] + rx * factor * half).astype(np.float32), (centre[1] + ry * factor * half).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# planning


def world_margin(preset: Preset, eye_size: tuple[int, int], background_disparity: float) -> int:
    """Border the camera motion may reveal: pan + shake + roll, plus the eyes' horizontal offset."""
    w, h = eye_size
    moving = preset.shake > 0 or preset.drift > 0
    margin = (preset.drift * h + 3 * preset.shake * h + 0.006 * w + 2) if moving else 0.0
    return int(math.ceil(margin + background_disparity))


def make_scene(seed: int, index: int, tone: np.ndarray, eye_size: tuple[int, int], margin: int) -> Scene:
    rng = stream(seed, "scene", index)
    w, h = eye_size
    stroke_len = rng.uniform(0.25, 0.45) * h
    tilt = rng.uniform(-30, 30)
    body_len = rng.uniform(0.28, 0.4) * h
    body_width = body_len * rng.uniform(0.32, 0.45)
    persp = rng.uniform(0.08, 0.2) * rng.choice([-1.0, 1.0])  # one end of the stroke is nearer the camera

    t = math.radians(tilt)
    up = np.array([math.sin(t), -math.cos(t)])
    reach = stroke_len / 2 + body_len / 2 * (1 + abs(persp) / 2)
    half = np.array([reach * abs(up[0]) + body_width / 2 * abs(up[1]),
                     reach * abs(up[1]) + body_width / 2 * abs(up[0])])
    lo = np.maximum(half + 0.03 * h, (0.3 * w, 0.0))
    hi = np.minimum(np.array([w, h]) - half - 0.03 * h, (0.7 * w, h))
    anchor = np.where(lo < hi, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), (w / 2, h / 2)) + margin
    stroke = Stroke(bottom=anchor - up * stroke_len / 2, top=anchor + up * stroke_len / 2,
                    angle_deg=tilt + rng.uniform(-8, 8), rock_deg=rng.uniform(-8, 8), scale_bottom=1 - persp / 2,
                    scale_top=1 + persp / 2)
    subject = body_sprite(rng, body_len, body_width, tone, light_direction(rng))
    swept = (*(anchor - half), *(anchor + half))  # resting body parts stay out of the subject's way
    background = paint_background(rng, h + 2 * margin, w + 2 * margin, tone, keep_clear=swept)
    return Scene(cv2.cvtColor(background, cv2.COLOR_RGB2RGBA), subject, stroke)


def cut_schedule(times_s: np.ndarray, interval_s: tuple[float, float] | None, seed: int,
                 pool: int = 4) -> tuple[np.ndarray, tuple[float, ...]]:
    """Scene index per frame and the time of the first frame after each cut (a new scene each time)."""
    if interval_s is None:
        return np.zeros(times_s.size, np.int64), ()
    rng = stream(seed, "cuts")
    cuts: list[float] = []
    t = 0.0
    while (t := t + rng.uniform(*interval_s)) < times_s[-1]:
        cuts.append(t)
    segment = np.searchsorted(np.array(cuts), times_s, side="right")
    sequence = [0]
    for _ in cuts:
        sequence.append(int(rng.choice([k for k in range(pool) if k != sequence[-1]])))
    starts = np.flatnonzero(np.diff(segment)) + 1
    return np.asarray(sequence)[segment], tuple(float(times_s[i]) for i in starts)


def smooth_wander(rng: np.random.Generator, periods_s: tuple[float, float], terms: int = 3):
    """A smooth irregular signal of time in about [-1, 1]: a few incommensurate sines, drawn once."""
    period = rng.uniform(*periods_s, terms)
    phase = rng.uniform(0, 2 * np.pi, terms)

    def at(t: np.ndarray) -> np.ndarray:
        return np.sin(2 * np.pi * np.asarray(t)[..., None] / period + phase).sum(-1) / math.sqrt(terms * 0.5) / 2

    return at


def _distractor(seed: int, tone: np.ndarray, scene: Scene, times: np.ndarray, eye_size: tuple[int, int],
                margin: int, blur: bool, exposure_s: float) -> Layer:
    """A second limb-like shape with its own rhythm (changing speed, pauses), elsewhere in the frame."""
    rng = stream(seed, "distractor")
    w, h = eye_size
    length = rng.uniform(0.25, 0.4) * h
    sprite = body_sprite(rng, length, length * rng.uniform(0.25, 0.35), tone * rng.uniform(0.85, 1.1, 3),
                         light_direction(rng))
    anchor_x = (scene.stroke.top[0] + scene.stroke.bottom[0]) / 2 - margin
    side = 1.0 if anchor_x < w / 2 else -1.0
    base = np.array([anchor_x + side * rng.uniform(0.22, 0.35) * w, rng.uniform(0.35, 0.65) * h]) + margin
    heading = rng.uniform(0, np.pi)
    direction = np.array([math.cos(heading), math.sin(heading)])
    amplitude = rng.uniform(0.08, 0.16) * h
    f1, f2 = rng.uniform(0.4, 1.5), rng.uniform(1.5, 3.0)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    wander = smooth_wander(rng, (4.0, 15.0))  # bursts of motion and pauses
    angle0 = math.degrees(heading) - 90 + rng.uniform(-20, 20)

    def centre_at(t: np.ndarray) -> np.ndarray:
        envelope = np.clip(0.6 + 1.2 * wander(t), 0, 1)
        swing = amplitude * envelope * (0.75 * np.sin(2 * np.pi * f1 * t + p1) + 0.25 * np.sin(2 * np.pi * f2 * t + p2))
        return base + swing[:, None] * direction

    centre = centre_at(times)
    smear = centre_at(times + exposure_s / 2) - centre_at(times - exposure_s / 2) if blur else np.zeros_like(centre)
    angle = angle0 + 8 * np.sin(2 * np.pi * f1 * times + p1 + 1.0)
    return Layer((sprite,), np.zeros(times.size, np.int64), centre, angle, np.ones(times.size), smear, 0.0)


def _occluder(seed: int, scene: Scene, times: np.ndarray, eye_size: tuple[int, int], margin: int) -> Layer:
    """A foreground bar reaching in from one side, slowly sliding so it covers part of the subject's path
    for roughly a third to a half of the time."""
    rng = stream(seed, "occluder")
    w, h = eye_size
    thickness = rng.uniform(0.15, 0.25) * h
    length = 0.8 * w
    sprite = occluder_sprite(rng, length, thickness)
    stroke = scene.stroke
    along = rng.uniform(0.2, 0.8)
    target = stroke.bottom + along * (stroke.top - stroke.bottom)  # where on the path it reaches in
    side = rng.choice([-1.0, 1.0])
    subject_half_width = scene.subject.shape[1] / 2
    period, phase = rng.uniform(6, 14), rng.uniform(0, 2 * np.pi)
    # how far the bar's tip stops short of the path's centre line; negative = it reaches across
    gap = subject_half_width * (0.4 + 2.0 * np.sin(2 * np.pi * times / period + phase))
    tip_x = target[0] + side * gap
    centre = np.stack([tip_x + side * length / 2, np.full(times.size, target[1])], axis=1)
    angle = np.full(times.size, rng.uniform(-25, 25))
    return Layer((sprite,), np.zeros(times.size, np.int64), centre, angle, np.ones(times.size),
                 np.zeros_like(centre), 0.0)


def _cameras(seed: int, preset: Preset, times: np.ndarray, scene_index: np.ndarray, eye_size: tuple[int, int],
             margin: int, background_disparity: float, eyes: int) -> np.ndarray:
    """World -> eye affine per frame and eye: slow zoom and pan (own phase per scene), hand-held shake."""
    n = times.size
    w, h = eye_size
    rng = stream(seed, "camera")
    zoom = np.ones(n)
    offset = np.zeros((n, 2))
    roll = np.zeros(n)
    if preset.drift > 0:
        scenes = int(scene_index.max()) + 1
        phases = rng.uniform(0, 2 * np.pi, (scenes, 3))[scene_index]
        periods = rng.uniform(15, 40, 3)
        zoom = 1 + preset.drift * (0.5 + 0.5 * np.sin(2 * np.pi * times / periods[0] + phases[:, 0]))
        offset += preset.drift * h * np.sin(2 * np.pi * times[:, None] / periods[1:] + phases[:, 1:])
    if preset.shake > 0:
        amp = preset.shake * h
        for weight in (1.0, 0.6, 0.4):
            freq, phase = rng.uniform(1.5, 6, 2), rng.uniform(0, 2 * np.pi, 2)
            offset += weight * amp * np.sin(2 * np.pi * times[:, None] * freq + phase)
        offset += rng.normal(0, 0.25 * amp, (n, 2)).clip(-0.75 * amp, 0.75 * amp)
        roll = 0.3 * (preset.shake / 0.006) * np.sin(2 * np.pi * times * rng.uniform(0.5, 2) + rng.uniform(0, 6.3))
    look_at = np.array([w / 2 + margin, h / 2 + margin]) + offset
    out_centre = np.array([w / 2, h / 2])
    r = np.radians(roll)
    rotation = np.stack([np.stack([np.cos(r), -np.sin(r)], -1), np.stack([np.sin(r), np.cos(r)], -1)], 1)
    lin = zoom[:, None, None] * rotation
    cams = np.empty((n, eyes, 2, 3))
    for e in range(eyes):
        shifted = look_at - (EYE_SIGN[e] * background_disparity, 0.0)
        cams[:, e, :, :2] = lin
        cams[:, e, :, 2] = out_centre - np.einsum("nij,nj->ni", lin, shifted)
    return cams


def _lighting(seed: int, preset: Preset, times: np.ndarray) -> np.ndarray | None:
    if preset.flicker <= 0:
        return None
    rng = stream(seed, "lighting")
    slow = np.sin(2 * np.pi * times * rng.uniform(0.3, 2.0) + rng.uniform(0, 2 * np.pi))
    return 1 + preset.flicker * (0.7 * slow + 0.3 * rng.uniform(-1, 1, times.size))


def _sensor_noise(seed: int, sigma: float, size: tuple[int, int], n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Two oversized noise fields (as saturating add/subtract pairs) and, per frame, which field and
    which offset into it: many distinct noise patterns for the cost of drawing two."""
    rng = stream(seed, "noise")
    if sigma <= 0:
        return None, np.zeros((n, 3), np.int64)
    w, h = size
    shape = (NOISE_FIELDS, h + NOISE_PAD, w + NOISE_PAD, 3)
    fields = np.rint(rng.standard_normal(shape, dtype=np.float32) * sigma).clip(-255, 255)
    pairs = np.stack([np.maximum(fields, 0), np.maximum(-fields, 0)], axis=1).astype(np.uint8)
    pick = np.stack([rng.integers(0, NOISE_FIELDS, n), *rng.integers(0, NOISE_PAD + 1, (2, n))], axis=1)
    return pairs, pick


def plan_clip(positions_at: Callable[[np.ndarray], np.ndarray], preset: Preset, seed: int, size: tuple[int, int],
              fps: float, duration_s: float, vfr: bool) -> ClipPlan:
    """Lay out a clip. `positions_at(t_s)` gives the stroke position (0-100) at clip times (arrays)."""
    w, h = size
    eyes = 2 if preset.vr else 1
    eye_size = (w // eyes, h)
    clock = frame_clock(duration_s, fps, vfr, stream(seed, "timing"))
    times = clock.times_s
    exposure_s = SHUTTER / fps
    positions = np.asarray(positions_at(times), float)

    lens_rng = stream(seed, "lens")
    background_disparity = lens_rng.uniform(0.008, 0.014) * eye_size[0] if preset.vr else 0.0
    subject_disparity = lens_rng.uniform(0.02, 0.035) * eye_size[0] if preset.vr else 0.0
    lens_k = lens_rng.uniform(0.15, 0.3) if preset.vr else 0.0
    margin = world_margin(preset, eye_size, background_disparity)

    scene_ids, cut_times = cut_schedule(times, preset.cut_interval_s, seed)
    tone = skin_tone(stream(seed, "person"))
    used, scene_index = np.unique(scene_ids, return_inverse=True)  # build only the scenes that appear
    scenes = tuple(make_scene(seed, int(k), tone, eye_size, margin) for k in used)

    centre = np.empty((times.size, 2))
    scale = np.empty(times.size)
    angle = np.empty(times.size)
    smear = np.zeros((times.size, 2))
    for k, scene in enumerate(scenes):
        sel = scene_index == k
        centre[sel] = scene.stroke.centre(positions[sel])
        scale[sel] = scene.stroke.scale(positions[sel])
        angle[sel] = scene.stroke.angle(positions[sel])
        if preset.motion_blur:
            t = times[sel]
            smear[sel] = (scene.stroke.centre(positions_at(t + exposure_s / 2))
                          - scene.stroke.centre(positions_at(t - exposure_s / 2)))
    subject = Layer(tuple(s.subject for s in scenes), scene_index, centre, angle, scale, smear, subject_disparity)

    behind = (_distractor(seed, tone, scenes[0], times, eye_size, margin, preset.motion_blur, exposure_s),) \
        if preset.distractor else ()
    front = (_occluder(seed, scenes[0], times, eye_size, margin),) if preset.occluder else ()
    cameras = _cameras(seed, preset, times, scene_index, eye_size, margin, background_disparity, eyes)
    noise, noise_pick = _sensor_noise(seed, preset.noise_sigma, size, times.size)
    return ClipPlan(preset=preset, seed=seed, size=size, eye_size=eye_size, clock=clock, positions=positions,
                    scenes=scenes, scene_index=scene_index, cut_times_s=cut_times, subject=subject,
                    others_behind=behind, others_front=front, cameras=cameras,
                    background_disparity=background_disparity, gain=_lighting(seed, preset, times),
                    noise=noise, noise_pick=noise_pick, lens_k=lens_k)
