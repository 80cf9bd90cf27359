"""Difficulty presets for synthetic clips: which nuisances a clip has and how strong they are."""

from __future__ import annotations

from dataclasses import dataclass, replace

from autofunscript.errors import AutofunscriptError


@dataclass(frozen=True)
class Preset:
    """Realism knobs. Amplitudes are fractions of the frame height unless said otherwise."""

    name: str
    crf: int  # x264 constant rate factor: higher = stronger compression artefacts
    shake: float = 0.0  # hand-held camera jitter amplitude
    drift: float = 0.0  # slow zoom (relative) and pan amplitude
    noise_sigma: float = 0.0  # sensor noise, in 8-bit levels
    flicker: float = 0.0  # relative lighting gain swing
    distractor: bool = False  # a second body-like shape with its own motion
    occluder: bool = False  # a blurred foreground object that covers part of the subject at times
    motion_blur: bool = False  # subject and distractor smeared by their speed over a half-frame shutter
    contrast: float = 1.0  # 1 = full; lower compresses the tones towards a hazy grey
    cut_interval_s: tuple[float, float] | None = None  # scene cuts every uniform(lo, hi) seconds
    vr: bool = False  # side-by-side stereo with barrel distortion
    default_size: tuple[int, int] = (640, 360)


EASY = Preset("easy", crf=20)
MEDIUM = replace(EASY, name="medium", crf=28, shake=0.006, drift=0.04, noise_sigma=4.0, flicker=0.06)
HARD = replace(MEDIUM, name="hard", crf=30, noise_sigma=6.0, distractor=True, occluder=True, motion_blur=True,
               contrast=0.5)
CUTS = replace(MEDIUM, name="cuts", cut_interval_s=(5.0, 20.0))
# VR footage is a near-static head-mounted POV: medium realism, no cuts, the stereo layout is the challenge.
VR = replace(MEDIUM, name="vr", vr=True, default_size=(1280, 640))

PRESETS: dict[str, Preset] = {p.name: p for p in (EASY, MEDIUM, HARD, CUTS, VR)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise AutofunscriptError(f"unknown synth preset {name!r} (choose from {', '.join(PRESETS)})") from None
