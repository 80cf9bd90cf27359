"""Turn a clip plan into frames and an H.264 mp4, with the truth script and a per-frame sidecar beside it.

Outputs for `clip.mp4`: `clip.funscript` (the truth: one action per frame at the frame's real time, the
rendered position rounded to an integer) and `clip.synth.json` (exact float positions, subject centre
and box in pixels, scene cuts).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from autofunscript.errors import AutofunscriptError
from autofunscript.script.funscript import Funscript, read_funscript, to_json_dict
from autofunscript.synth.presets import Preset, get_preset
from autofunscript.synth.scene import EYE_SIGN, ClipPlan, Layer, lens_maps, plan_clip

log = logging.getLogger("autofunscript")

X264_PRESET = "superfast"  # ~1.7x veryfast's speed, still CABAC and deblocking (realistic artefacts)
X264_THREADS = "2"  # fixed, so the bytes do not depend on the machine's core count
MAX_FPS = 240.0
MIN_SIDE = 32


# ------------------------------------------------------------------------------------------------
# frames


def _line_kernel(smear: np.ndarray) -> np.ndarray:
    """Normalised anti-aliased line along `smear` (pixels): a box blur in the direction of motion."""
    reach = int(math.ceil(np.abs(smear).max() / 2)) + 1
    size = 2 * reach + 1
    kernel = np.zeros((size, size), np.float32)
    sub = 4  # sub-pixel bits for cv2.line, so short smears keep their true length
    p0 = np.rint((reach - smear / 2) * 2**sub).astype(int)
    p1 = np.rint((reach + smear / 2) * 2**sub).astype(int)
    cv2.line(kernel, tuple(p0.tolist()), tuple(p1.tolist()), 1.0, 1, cv2.LINE_AA, shift=sub)
    return kernel / kernel.sum()


def _paste(canvas: np.ndarray, sprite: np.ndarray, affine: np.ndarray, smear: np.ndarray) -> None:
    """Composite a premultiplied sprite onto the RGBA uint8 canvas, warping only the box it covers."""
    h, w = sprite.shape[:2]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) @ affine[:, :2].T + affine[:, 2]
    pad = np.abs(smear).max() / 2 + 2
    x0, y0 = np.maximum(np.floor(corners.min(axis=0) - pad), 0).astype(int)
    x1 = int(min(math.ceil(corners[:, 0].max() + pad), canvas.shape[1]))
    y1 = int(min(math.ceil(corners[:, 1].max() + pad), canvas.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return
    local = affine.copy()
    local[:, 2] -= (x0, y0)
    layer = cv2.warpAffine(sprite, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if np.hypot(*smear) >= 1.0:
        layer = cv2.filter2D(layer, -1, _line_kernel(smear), borderType=cv2.BORDER_CONSTANT)
    # over-compositing in OpenCV calls (about twice as fast as the NumPy expression); the canvas's unused
    # fourth channel is blended along, which costs nothing extra
    roi = canvas[y0:y1, x0:x1]
    keep = cv2.subtract(1.0, layer[..., 3])
    blended = cv2.multiply(roi, cv2.merge([keep, keep, keep, keep]), dtype=cv2.CV_32F)
    cv2.add(blended, layer, dst=blended)
    roi[...] = cv2.convertScaleAbs(blended)


def _draw(canvas: np.ndarray, layer: Layer, i: int, eye: int, background_disparity: float) -> None:
    dx = EYE_SIGN[eye] * (layer.disparity - background_disparity)
    _paste(canvas, layer.sprites[layer.sprite_index[i]], layer.affine(i, dx), layer.blur[i])


def iter_frames(plan: ClipPlan, with_subject: bool = True) -> Iterator[np.ndarray]:
    """RGB uint8 frames of the clip in order. Without the subject: the same clip minus the subject
    (same camera, lighting and noise), a reference for measuring where the subject is.

    Canvases are 4-channel until the end: OpenCV's warps have fast paths for 4 channels, not for 3.
    """
    eye_w, eye_h = plan.eye_size
    margin_free = all(s.background.shape[:2] == (eye_h, eye_w) for s in plan.scenes)
    maps = lens_maps(plan.eye_size, plan.lens_k) if plan.lens_k else None
    contrast = plan.preset.contrast
    for i in range(plan.frame_count):
        views = []
        for eye in range(plan.eyes):
            canvas = plan.scenes[plan.scene_index[i]].background.copy()
            for layer in plan.others_behind:
                _draw(canvas, layer, i, eye, plan.background_disparity)
            if with_subject:
                _draw(canvas, plan.subject, i, eye, plan.background_disparity)
            for layer in plan.others_front:
                _draw(canvas, layer, i, eye, plan.background_disparity)
            if not margin_free:
                canvas = cv2.warpAffine(canvas, plan.cameras[i, eye], plan.eye_size, flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT_101)
            if maps is not None:
                canvas = cv2.remap(canvas, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            views.append(canvas)
        frame = cv2.cvtColor(views[0] if len(views) == 1 else np.hstack(views), cv2.COLOR_RGBA2RGB)
        gain = 1.0 if plan.gain is None else float(plan.gain[i])
        if gain != 1.0 or contrast != 1.0:
            # lighting gain, then contrast squeezed around mid-grey (hazy and washed out when < 1)
            frame = cv2.convertScaleAbs(frame, alpha=gain * contrast, beta=128.0 * (1.0 - contrast))
        if plan.noise is not None:
            field, dy, dx = plan.noise_pick[i]
            brighter, darker = plan.noise[field, :, dy:dy + plan.size[1], dx:dx + plan.size[0]]
            frame = cv2.subtract(cv2.add(frame, brighter), darker)
        yield frame


# ------------------------------------------------------------------------------------------------
# encoding


def encode_frames(frames: Iterator[np.ndarray], plan: ClipPlan, path: Path) -> None:
    """H.264 yuv420p mp4 with each frame at its planned pts (so variable frame rate survives muxing)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=plan.clock.rate)
        stream.width, stream.height = plan.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = plan.clock.time_base
        stream.options = {"preset": X264_PRESET, "crf": str(plan.preset.crf), "threads": X264_THREADS}
        for pts, image in zip(plan.clock.pts.tolist(), frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts
            frame.time_base = plan.clock.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# ------------------------------------------------------------------------------------------------
# the library entry point


@dataclass(frozen=True)
class SynthResult:
    """What was rendered: the files, and the truth per frame."""

    video: Path
    truth_path: Path
    sidecar: Path
    truth: Funscript  # one action per frame, clip time in ms, rounded rendered position
    frame_times_s: np.ndarray  # (N,) real presentation times
    positions: np.ndarray  # (N,) exact rendered positions 0-100
    centres: np.ndarray  # (N, 2) subject centre in frame pixels (left eye in vr)
    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1 around the subject (left eye in vr)
    cut_times_s: tuple[float, ...]
    plan: ClipPlan

    @property
    def frame_count(self) -> int:
        return int(self.frame_times_s.size)


def output_paths(out: Path) -> tuple[Path, Path]:
    """Truth script and sidecar that go beside a rendered clip."""
    return out.with_suffix(".funscript"), out.with_suffix(".synth.json")


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise AutofunscriptError(f"size must look like 640x360, got {text!r}") from None
    return w, h


def _check_request(script: Funscript, label: str, size: tuple[int, int], fps: float, start_s: float,
                   duration_s: float | None) -> float:
    """Validate the inputs; returns the duration to render."""
    if len(script) < 2:
        raise AutofunscriptError(f"{label}: needs at least 2 actions to define a motion, has {len(script)}")
    w, h = size
    if w < MIN_SIDE or h < MIN_SIDE or w % 2 or h % 2:
        raise AutofunscriptError(f"size {w}x{h}: width and height must be even and at least {MIN_SIDE}")
    if not (math.isfinite(fps) and 1.0 <= fps <= MAX_FPS):
        raise AutofunscriptError(f"fps {fps}: must be between 1 and {MAX_FPS:g}")
    end_s = float(script.at.max()) / 1000.0
    if not math.isfinite(start_s) or start_s < 0 or start_s >= end_s:
        raise AutofunscriptError(f"{label}: start {start_s:g} s is outside the script (its last action is at "
                                 f"{end_s:g} s)")
    duration = end_s - start_s if duration_s is None else float(duration_s)
    if not math.isfinite(duration) or duration <= 0:
        raise AutofunscriptError(f"duration {duration_s}: must be a positive number of seconds")
    if start_s + duration > end_s + 1e-6:
        log.warning("%s: script ends at %.3f s; the position is held after it", label, end_s)
    return duration


def plan_from_script(script: Funscript, preset: str | Preset = "easy", seed: int = 0,
                     size: tuple[int, int] | None = None, fps: float = 30.0, start_s: float = 0.0,
                     duration_s: float | None = None, vfr: bool = False, label: str = "script") -> ClipPlan:
    """In-memory plan (for iter_frames) of a clip that follows `script` from `start_s`. `preset` is a preset's
    name or a Preset of one's own (e.g. a stock one with one nuisance turned off, to measure what it costs)."""
    chosen = preset if isinstance(preset, Preset) else get_preset(preset)
    size = tuple(size) if size else chosen.default_size
    duration = _check_request(script, label, size, fps, start_s, duration_s)

    def positions_at(t: np.ndarray) -> np.ndarray:
        return script.sample((start_s + np.asarray(t)) * 1000.0)

    return plan_clip(positions_at, chosen, int(seed), size, float(fps), duration, vfr)


def _sidecar(plan: ClipPlan, video: Path, truth_path: Path, label: str, start_s: float, vfr: bool) -> dict:
    centres = plan.subject_centres()
    frames = {
        "t_s": np.round(plan.clock.times_s, 6).tolist(),
        "pos": np.round(plan.positions, 3).tolist(),
        "scene": plan.scene_index.tolist(),
        "centre_xy": np.round(centres[:, 0], 2).tolist(),
        "box_xyxy": np.round(plan.subject_boxes(), 1).tolist(),
    }
    if plan.eyes == 2:
        frames["centre_right_xy"] = np.round(centres[:, 1], 2).tolist()
    return {"video": video.name, "truth": truth_path.name, "reference": label, "preset": plan.preset.name,
            "seed": plan.seed, "size": list(plan.size), "eye_size": list(plan.eye_size),
            "fps": float(plan.clock.rate), "vfr": vfr, "start_s": start_s, "frame_count": plan.frame_count,
            "cut_times_s": [round(t, 6) for t in plan.cut_times_s], "frames": frames}


def _temp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should be an ordinary file
    return Path(tmp)


def render_clip(script: Funscript | str | os.PathLike[str], out: str | os.PathLike[str], preset: str | Preset = "easy",
                seed: int = 0, size: tuple[int, int] | None = None, fps: float = 30.0, start_s: float = 0.0,
                duration_s: float | None = None, vfr: bool = False, force: bool = False) -> SynthResult:
    """Render a clip whose subject moves as `script` says (from `start_s`, for `duration_s` or to the end);
    `preset` as in plan_from_script.

    Writes `out` (mp4), its truth funscript and sidecar JSON; all three appear together at the end
    (temp files renamed), and nothing is overwritten without `force`.
    """
    label = str(script) if not isinstance(script, Funscript) else "script"
    reference = script if isinstance(script, Funscript) else read_funscript(script)
    out = Path(out)
    truth_path, sidecar_path = output_paths(out)
    if not out.parent.is_dir():
        raise AutofunscriptError(f"{out}: folder {out.parent} does not exist")
    if not isinstance(script, Funscript) and truth_path.resolve() == Path(script).resolve():
        raise AutofunscriptError(f"{out}: its truth script would overwrite the reference {script}")
    if not force:
        for target in (out, truth_path, sidecar_path):
            if target.exists():
                raise AutofunscriptError(f"{target}: already exists (use --force to overwrite)")

    plan = plan_from_script(reference, preset, seed, size, fps, start_s, duration_s, vfr, label)
    times = plan.clock.times_s
    truth = Funscript(at=np.rint(times * 1000).astype(np.int64), pos=np.rint(plan.positions).astype(np.int64),
                      metadata={"title": out.stem, "creator": "autofunscript synth",
                                "description": f"synthetic {plan.preset.name} clip, seed {seed}, following "
                                               f"{Path(label).name} from {start_s:g} s; one action per frame"})
    temps: list[Path] = []
    try:
        temps.append(_temp_beside(out))
        encode_frames(iter_frames(plan), plan, temps[0])
        for text in (json.dumps(to_json_dict(truth), separators=(",", ":")),
                     json.dumps(_sidecar(plan, out, truth_path, label, start_s, vfr), separators=(",", ":"))):
            temps.append(_temp_beside(out))
            temps[-1].write_text(text, encoding="utf-8")
        for tmp, final in zip(temps, (out, truth_path, sidecar_path)):
            os.replace(tmp, final)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    return SynthResult(video=out, truth_path=truth_path, sidecar=sidecar_path, truth=truth, frame_times_s=times,
                       positions=plan.positions, centres=plan.subject_centres()[:, 0], boxes=plan.subject_boxes(),
                       cut_times_s=plan.cut_times_s, plan=plan)
