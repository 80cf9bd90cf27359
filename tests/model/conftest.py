from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autofunscript.script.funscript import Funscript
from autofunscript.synth import render_clip

SIZE = (320, 180)


def stroke_script(seconds: float, seed: int, pause: bool = True) -> Funscript:
    """Full strokes of varying speed and depth (with a short pause): the kind of motion scripts hold."""
    rng = np.random.default_rng(seed)
    at, pos, t, up = [0], [50], 0, True
    while t < seconds * 1000:
        t += int(rng.uniform(350, 800))
        at.append(t)
        pos.append(int(rng.uniform(75, 100)) if up else int(rng.uniform(0, 25)))
        up = not up
        if pause and len(at) == 9:
            t += 1200
            at.append(t)
            pos.append(pos[-1])
    return Funscript(at=np.array(at), pos=np.array(pos))


def render(folder: Path, name: str, seconds: float, seed: int, preset: str = "easy", pause: bool = True) -> Path:
    clip = folder / f"{name}.mp4"
    render_clip(stroke_script(seconds + 1, seed, pause), clip, preset=preset, seed=seed, size=SIZE, duration_s=seconds)
    clip.with_suffix(".synth.json").unlink()  # keep the folder to pairs, as users have them
    return clip


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Three short labelled clips (video + same-named truth script)."""
    folder = tmp_path_factory.mktemp("corpus")
    for i, preset in enumerate(("easy", "medium", "easy")):
        render(folder, f"clip{i}", 8.0, seed=10 + i, preset=preset)
    return folder


@pytest.fixture(scope="session")
def stroking_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stroking")
    return render(folder, "strokes", 20.0, seed=42, pause=False)
