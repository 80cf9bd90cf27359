"""The model card: architecture, inputs and training facts stored as JSON beside the ONNX weights.

Torch-free, so inference and the CLI can read a card without the training extra.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autofunscript.errors import AutofunscriptError
from autofunscript.model.features import FEATURE_RATE, FeatureSpec
from autofunscript.model.router import HEADS, MOTION_TYPES
from autofunscript.script.funscript import atomic_write_text

CARD_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network and feed it."""

    inputs: tuple[str, ...] = ("flow",)
    context_s: float = 10.0
    width: int = 64
    integrator: int = 16  # channels of the learned velocity -> position branch
    routing: bool = True  # use the motion-type router at inference (else the generalist head)

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(tuple(self.inputs))

    @property
    def context_steps(self) -> int:
        return int(round(self.context_s * FEATURE_RATE))

    @property
    def dilations(self) -> tuple[int, ...]:
        """Doubling dilations up to a quarter of the context: the receptive field spans about the context."""
        out = [1]
        while out[-1] * 2 <= self.context_steps / 4:
            out.append(out[-1] * 2)
        return tuple(out)

    @property
    def n_positions(self) -> int:
        return 1 + len(HEADS)  # the generalist head, then one per routed motion type

    @property
    def n_classes(self) -> int:
        return len(MOTION_TYPES)


@dataclass
class ModelCard:
    config: ModelConfig
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    onnx_sha256: str = ""
    parameters: int = 0
    version: int = CARD_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["config"]["inputs"] = list(self.config.inputs)
        data["feature_rate_hz"] = FEATURE_RATE
        data["motion_types"] = list(MOTION_TYPES)
        data["heads"] = ["general", *HEADS]
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    def write(self, path: Path, force: bool = True) -> None:
        atomic_write_text(path, self.to_json(), force=force)


def read_card(path: Path) -> ModelCard:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutofunscriptError(f"{path}: no model card (expected beside the .onnx weights)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutofunscriptError(f"{path}: unreadable model card ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != CARD_VERSION or "config" not in data:
        raise AutofunscriptError(f"{path}: not a version {CARD_VERSION} autofunscript model card")
    try:
        raw = dict(data["config"])
        raw["inputs"] = tuple(raw["inputs"])
        config = ModelConfig(**raw)
        config.spec  # validates the inputs
    except (TypeError, ValueError, KeyError) as exc:
        raise AutofunscriptError(f"{path}: bad model config ({exc})") from None
    return ModelCard(config=config, training=data.get("training", {}), metrics=data.get("metrics", {}),
                     onnx_sha256=data.get("onnx_sha256", ""), parameters=int(data.get("parameters", 0)))
