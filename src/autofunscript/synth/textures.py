"""Procedural images painted once per scene: cluttered backgrounds and skin-shaded body-like sprites.

Sprites are float32 premultiplied RGBA (colour 0-255, alpha 0-1) so that bilinear warping and blurring
never leave dark fringes; backgrounds are uint8 RGB.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

# Skin albedo from light to deep tones (RGB); a subject's tone is a random point on this ramp.
_SKIN_RAMP = np.array([[238, 206, 182], [214, 168, 132], [176, 124, 92], [122, 82, 58], [84, 56, 42]], float)


def fractal_noise(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int = 4,
                  channels: int = 1) -> np.ndarray:
    """Smooth value noise in roughly [-1, 1]: random grids upsampled bicubically, finer octaves weaker."""
    out = np.zeros((h, w, channels), np.float32)
    total = 0.0
    for k in range(octaves):
        n = cells * 2**k
        grid = rng.uniform(-1, 1, (max(2, n * h // max(h, w)), max(2, n * w // max(h, w)), channels))
        layer = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        out += layer.reshape(h, w, channels) * 0.5**k
        total += 0.5**k
    return out / total


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    tone = _SKIN_RAMP[i] * (1 - (t - i)) + _SKIN_RAMP[i + 1] * (t - i)
    return tone * rng.uniform(0.95, 1.05, 3)


def muted_colour(rng: np.random.Generator, value: tuple[float, float] = (0.2, 0.85)) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.55), rng.uniform(*value))
    return (r * 255, g * 255, b * 255)


def body_sprite(rng: np.random.Generator, length: float, width: float, tone: np.ndarray,
                light: np.ndarray) -> np.ndarray:
    """An elongated, slightly tapered limb/torso-like shape with cylinder shading and skin texture.

    Its long axis is the sprite's vertical; the texture (blotches, pores, moles, creases) is baked in, so
    it moves rigidly with the sprite and gives trackers something to lock onto along the axis.
    """
    pad = 3
    # room for the bulge and bend, and for re-centring on the centroid below
    h, w = int(np.ceil(length * 1.2)) + 2 * pad, int(np.ceil(width * 1.7)) + 2 * pad
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (y - (h - 1) / 2) / (length / 2)  # -1 at the top end, +1 at the bottom end
    # an organic silhouette: tapered, a bulge (hip, calf) and a narrowing (waist, knee), slightly bent
    taper = rng.uniform(-0.15, 0.15)
    bulge_at, waist_at = rng.uniform(-0.6, 0.6, 2)
    profile = (1 + rng.uniform(0.05, 0.2) * np.exp(-(((u - bulge_at) / 0.35) ** 2))
               - rng.uniform(0.0, 0.12) * np.exp(-(((u - waist_at) / 0.3) ** 2)))
    half_w = (width / 2) * (1 + taper * u) * (1 - 0.12 * u**2) * profile
    bend = rng.uniform(-0.12, 0.12) * width * (1 - u**2)
    nx = (x - (w - 1) / 2 - bend) / half_w
    r = nx**2 + np.abs(u) ** 4
    # signed distance to the outline, roughly in pixels, for a one-pixel anti-aliased edge
    alpha = np.clip((1 - r) * np.minimum(half_w, length / 2) / 2 + 0.5, 0, 1)

    nxc = np.clip(nx, -1, 1)
    ny = 0.6 * np.clip(u, -1, 1) ** 3
    nz = np.sqrt(np.clip(1 - nxc**2 - ny**2, 0.02, 1))
    normal = np.stack([nxc, ny, nz], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    diffuse = np.clip(normal @ light, 0, 1)
    half_vec = light + np.array([0, 0, 1.0])
    half_vec /= np.linalg.norm(half_vec)
    spec = np.clip(normal @ half_vec, 0, 1) ** 24

    albedo = np.broadcast_to(tone.astype(np.float32), (h, w, 3)).copy()
    albedo *= 1 + 0.07 * fractal_noise(rng, h, w, 3, 3, 3)  # uneven tone
    blotch = np.clip(fractal_noise(rng, h, w, 4, 3), 0, 1)[..., 0]
    albedo[..., 1:] *= (1 - 0.12 * blotch)[..., None]  # reddish patches
    albedo *= 1 + 0.05 * fractal_noise(rng, h, w, max(8, int(length / 6)), 2)  # pores
    marks = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 5))):  # skin creases across the axis
        cy = rng.uniform(0.1, 0.9) * h
        xs = np.linspace(0, w, 8)
        ys = cy + np.cumsum(rng.normal(0, 1.2, xs.size))
        pts = np.stack([xs, ys], 1).round().astype(np.int32)
        cv2.polylines(marks, [pts], False, float(rng.uniform(0.08, 0.16)), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(int(rng.integers(6, 18))):  # moles and freckles
        centre = (int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.05, 0.95) * h))
        cv2.circle(marks, centre, int(rng.integers(1, 3)), float(rng.uniform(0.3, 0.55)), -1, cv2.LINE_AA)
    marks = cv2.GaussianBlur(marks, (0, 0), 0.8)
    albedo *= (1 - marks)[..., None]

    colour = albedo * (0.3 + 0.7 * diffuse)[..., None] + 60 * spec[..., None]
    colour *= (0.8 + 0.2 * nz)[..., None]  # darker rim where the surface turns away
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = np.clip(colour, 0, 255) * alpha[..., None]
    rgba[..., 3] = alpha
    # centre the silhouette's centroid on the sprite's pivot, so "the subject's centre" is unambiguous
    cx, cy = (float((alpha * g).sum() / alpha.sum()) for g in (x, y))
    shift = np.float32([[1, 0, w / 2 - cx], [0, 1, h / 2 - cy]])
    return cv2.warpAffine(rgba, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def light_direction(rng: np.random.Generator) -> np.ndarray:
    v = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.2), 0.8])
    return v / np.linalg.norm(v)


def occluder_sprite(rng: np.random.Generator, length: float, thickness: float) -> np.ndarray:
    """A defocused foreground bar (an arm in a sleeve, a bedpost): striped fabric, soft edges."""
    pad = int(thickness * 0.3) + 3
    h, w = int(thickness) + 2 * pad, int(length) + 2 * pad
    alpha = np.zeros((h, w), np.float32)
    cv2.rectangle(alpha, (pad + int(thickness / 2), pad), (w - pad - int(thickness / 2), h - pad), 1.0, -1)
    cv2.circle(alpha, (w - pad - int(thickness / 2), h // 2), int(thickness / 2), 1.0, -1, cv2.LINE_AA)
    cv2.circle(alpha, (pad + int(thickness / 2), h // 2), int(thickness / 2), 1.0, -1, cv2.LINE_AA)
    base = np.array(muted_colour(rng, (0.15, 0.45)), np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin((x * rng.uniform(0.2, 0.5) + y) * 2 * np.pi / rng.uniform(6, 14))
    shade = 1 - 0.5 * ((y - h / 2) / (h / 2)) ** 2  # round cross-section
    colour = base * (0.8 + 0.2 * stripes)[..., None] * shade[..., None]
    colour *= 1 + 0.1 * fractal_noise(rng, h, w, 4, 3)
    rgba = np.dstack([np.clip(colour, 0, 255) * alpha[..., None], alpha])
    sigma = max(1.0, thickness * 0.06)  # it is close to the lens, hence out of focus
    return cv2.GaussianBlur(rgba, (0, 0), sigma).astype(np.float32)


def paint_background(rng: np.random.Generator, h: int, w: int, tone: np.ndarray,
                     keep_clear: tuple[float, float, float, float] = (0, 0, 0, 0)) -> np.ndarray:
    """A cluttered room: textured wall and patterned bedding, furniture-like shapes, edges, a resting body
    in the subject's skin tone (placed outside the `keep_clear` box x0, y0, x1, y1)."""
    wall_top, wall_bottom = (np.array(muted_colour(rng, (0.35, 0.8))) for _ in range(2))
    grad = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (wall_top * (1 - grad) + wall_bottom * grad) * np.ones((1, w, 1), np.float32)
    img *= 1 + 0.15 * fractal_noise(rng, h, w, 5, 4, 3)

    horizon = int(h * rng.uniform(0.5, 0.75))
    y, x = np.mgrid[horizon:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    wrinkles = fractal_noise(rng, h - horizon, w, 4, 3)[..., 0]
    phase = (x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period + 6 * wrinkles
    pattern = np.sign(np.sin(phase)) if rng.random() < 0.5 else np.sin(phase)
    fabric_a, fabric_b = (np.array(muted_colour(rng)) for _ in range(2))
    mix = (0.5 + 0.5 * pattern)[..., None]
    img[horizon:] = (fabric_a * mix + fabric_b * (1 - mix)) * (1 + 0.25 * wrinkles)[..., None]

    scale = min(h, w)
    surface = fractal_noise(rng, h, w, 12, 3)[..., 0]
    for _ in range(int(rng.integers(18, 34))):  # furniture, frames, objects: each shaded and textured
        colour = muted_colour(rng)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        size = int(rng.uniform(0.03, 0.22) * scale)
        mask = np.zeros((h, w), np.float32)
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 1.0, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(mask, (cx, cy), size // 2, 1.0, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = (size, max(2, int(size * rng.uniform(0.2, 0.7))))
            cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        else:
            poly = (np.array([cx, cy]) + rng.normal(0, size, (5, 2))).astype(np.int32)
            cv2.fillPoly(mask, [poly], 1.0, cv2.LINE_AA)
        bx, by, bw, bh = cv2.boundingRect((mask > 0).astype(np.uint8))
        if bw == 0 or bh == 0:
            continue
        box = (slice(by, by + bh), slice(bx, bx + bw))
        gy, gx = np.mgrid[box].astype(np.float32)
        heading = rng.uniform(0, 2 * np.pi)
        gradient = ((gx - cx) * np.cos(heading) + (gy - cy) * np.sin(heading)) / max(size, 1)
        shade = 1 + rng.uniform(0.1, 0.35) * surface[box] + 0.15 * gradient
        a = mask[box][..., None]
        img[box] = img[box] * (1 - a) + (np.array(colour, np.float32) * shade[..., None]) * a
        if rng.random() < 0.4:
            dark = tuple(c * 0.4 for c in colour)
            cv2.circle(img, (cx, cy), max(2, size // 3), dark, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(12, 30))):  # edges, cables, shelf lines
        p0 = (int(rng.uniform(-0.1, 1.1) * w), int(rng.uniform(-0.1, 1.1) * h))
        p1 = (int(p0[0] + rng.normal(0, 0.3) * w), int(p0[1] + rng.normal(0, 0.3) * h))
        cv2.line(img, p0, p1, muted_colour(rng, (0.05, 0.95)), int(rng.integers(1, 5)), cv2.LINE_AA)

    for _ in range(int(rng.integers(1, 3))):  # a resting body part in the same skin tone as the subject
        length = rng.uniform(0.3, 0.6) * h
        body = body_sprite(rng, length, rng.uniform(0.1, 0.2) * h, tone, light_direction(rng))
        angle = float(rng.uniform(0, 180))
        for _attempt in range(20):
            centre = (rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 1.0) * h)
            gap_x = max(keep_clear[0] - centre[0], centre[0] - keep_clear[2], 0)
            gap_y = max(keep_clear[1] - centre[1], centre[1] - keep_clear[3], 0)
            if math.hypot(gap_x, gap_y) > length / 2:
                break
        else:
            continue
        m = cv2.getRotationMatrix2D((body.shape[1] / 2, body.shape[0] / 2), angle, 1.0)
        m[:, 2] += np.array(centre) - np.array([body.shape[1] / 2, body.shape[0] / 2])
        warped = cv2.warpAffine(body, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        img = img * (1 - warped[..., 3:]) + warped[..., :3]

    img *= 1 + 0.06 * fractal_noise(rng, h, w, max(16, w // 6), 2, 1)  # fine grain of surfaces
    vy, vx = np.ogrid[-1:1:h * 1j, -1:1:w * 1j]
    img *= (1 - 0.25 * (vx**2 + vy**2) / 2)[..., None]  # lens vignetting
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.float32), (0, 0), 0.6)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
