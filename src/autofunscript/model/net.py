"""The network (PyTorch, training extra only): a bidirectional temporal conv net over feature chunks.

Input (B, C, T) from features.model_input; outputs positions (B, 1 + heads, T) — the generalist head
then one head per routed motion type — and motion-type logits (B, types, T). Convolutions are
centred (non-causal), so every step sees past and future context. A learned velocity -> position
branch (cumulative sum of a few projected channels) gives the net integrated motion, which dilated
convolutions alone cannot carry over many seconds.
"""

from __future__ import annotations

import torch
from torch import nn

from autofunscript.model.card import ModelConfig

# Keeps integrated unit-scale velocities (a few steps per stroke) near unit scale too.
INTEGRATOR_GAIN = 0.1
DROPOUT = 0.1  # the corpus is small next to the network: without it validation loss turns up after a few epochs


class _Block(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.spread = nn.Conv1d(width, width, kernel_size=3, dilation=dilation, padding=dilation)
        self.mix = nn.Conv1d(width, width, kernel_size=1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return (x + self.mix(self.drop(self.act(self.spread(x))))) * valid


class MotionNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n_in = config.spec.n_model_inputs
        self.valid_index = config.spec.n_features  # the `valid` channel follows the features
        self.velocity = nn.Conv1d(n_in, config.integrator, kernel_size=1)
        self.stem = nn.Conv1d(n_in + config.integrator, config.width, kernel_size=1)
        self.blocks = nn.ModuleList(_Block(config.width, d) for d in config.dilations)
        self.act = nn.GELU()
        self.positions = nn.Conv1d(config.width, config.n_positions, kernel_size=1)
        self.logits = nn.Conv1d(config.width, config.n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = x[:, self.valid_index : self.valid_index + 1]
        velocity = self.velocity(x) * valid
        integrated = torch.cumsum(velocity, dim=2) * INTEGRATOR_GAIN
        count = valid.sum(dim=2, keepdim=True).clamp(min=1.0)
        integrated = (integrated - (integrated * valid).sum(dim=2, keepdim=True) / count) * valid
        h = self.stem(torch.cat([x, integrated], dim=1)) * valid
        for block in self.blocks:
            h = block(h, valid)
        h = self.act(h)
        return self.positions(h), self.logits(h)


def build(config: ModelConfig) -> MotionNet:
    return MotionNet(config)


def parameter_count(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))
