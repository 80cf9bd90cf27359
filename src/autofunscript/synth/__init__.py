"""Synthetic ground-truth videos: a textured body-like subject that moves exactly as a reference script says."""

from autofunscript.synth.presets import PRESETS, Preset, get_preset
from autofunscript.synth.render import SynthResult, iter_frames, plan_from_script, render_clip
from autofunscript.synth.scene import ClipPlan

__all__ = ["PRESETS", "ClipPlan", "Preset", "SynthResult", "get_preset", "iter_frames", "plan_from_script",
           "render_clip"]
