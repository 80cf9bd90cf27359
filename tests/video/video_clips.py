"""Small test videos written with PyAV: each frame's content and timestamps are chosen by the test."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def level_frames(count: int, width: int = 64, height: int = 48, step: int = 8) -> list[np.ndarray]:
    """Grey BGR frames whose brightness tells their number: frame i is 16 + (step * i) % 224 everywhere."""
    return [np.full((height, width, 3), 16 + (step * i) % 224, np.uint8) for i in range(count)]


def noise_frames(count: int, width: int = 160, height: int = 120, seed: int = 0) -> list[np.ndarray]:
    """Moving textured BGR frames that compress poorly, so the file has many bytes per frame."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    return [np.ascontiguousarray(texture[:, 4 * i % width:][:, :width]) for i in range(count)]


def write_video(path: Path, frames: Sequence[np.ndarray], rate: int = 30, pts: Sequence[int] | None = None,
                time_base: Fraction | None = None, codec: str = "libx264", options: dict | None = None,
                rotation: int = 0, container_options: dict | None = None, pix_fmt: str = "yuv420p",
                audio_seconds: float = 0.0) -> Path:
    """Encode BGR (HxWx3) or grey (HxW) frames; pts (in time_base units, default 1/rate) default to 0, 1, 2, ...

    rotation is the display matrix's counterclockwise angle, as a phone or `ffmpeg -display_rotation` sets it.
    audio_seconds > 0 adds an AAC track starting at time 0.
    """
    time_base = time_base or Fraction(1, rate)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        if audio_seconds:
            _mux_tone(container, audio_seconds, "aac")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24" if image.ndim == 3 else "gray")
            frame.pts = i if pts is None else pts[i]
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio(path: Path, seconds: float = 0.5, codec: str = "aac") -> Path:
    """An audio-only file (m4a with AAC, or wav with PCM) holding a tone."""
    with av.open(str(path), "w") as container:
        _mux_tone(container, seconds, codec)
    return path


def _mux_tone(container: av.container.OutputContainer, seconds: float, codec: str) -> None:
    rate, chunk = 44100, 1024
    tone = (np.sin(np.arange(int(rate * seconds)) * 0.05) * 0.3).astype(np.float32)
    stream = container.add_stream(codec, rate=rate, layout="mono")
    planar = codec == "aac"
    samples = tone[None, :] if planar else (tone * 32767).astype(np.int16)[None, :]
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + chunk]),
                                           format="fltp" if planar else "s16", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
