"""Checkpoints and ONNX export (training extra): PyTorch weights <-> .pt checkpoint <-> .onnx + card.

The ONNX initializers keep the PyTorch parameter names, so the shipped .onnx is also the starting point
of `finetune`: its weights load straight back into the network.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from autofunscript.errors import AutofunscriptError
from autofunscript.script.funscript import write_beside
from autofunscript.model.card import ModelCard, ModelConfig, read_card

OPSET = 17


def _torch():
    try:
        import torch
    except ImportError:
        raise AutofunscriptError("training needs PyTorch: pip install 'autofunscript[train]'") from None
    return torch


def _atomic_write_bytes(path: Path, data: bytes, force: bool) -> None:
    if path.exists() and not force:
        raise AutofunscriptError(f"{path}: already exists (use --force to overwrite)")
    tmp = write_beside(path, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(net, card: ModelCard, path: Path, force: bool = True) -> None:
    torch = _torch()
    buffer = io.BytesIO()
    torch.save({"config": asdict(card.config), "training": card.training, "metrics": card.metrics,
                "state_dict": net.state_dict()}, buffer)
    _atomic_write_bytes(Path(path), buffer.getvalue(), force)


def load_checkpoint(path: Path):
    """(network, card) from a .pt checkpoint written by save_checkpoint."""
    torch = _torch()
    from autofunscript.model.net import build

    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
        raw = dict(data["config"])
        raw["inputs"] = tuple(raw["inputs"])
        config = ModelConfig(**raw)
        net = build(config)
        net.load_state_dict(data["state_dict"])
    except FileNotFoundError:
        raise AutofunscriptError(f"{path}: no such checkpoint") from None
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        raise AutofunscriptError(f"{path}: not an autofunscript checkpoint ({str(exc).splitlines()[0]})") from None
    return net.eval(), ModelCard(config=config, training=data.get("training", {}), metrics=data.get("metrics", {}))


def load_onnx_weights(path: Path):
    """(network, card) rebuilt from an exported .onnx and its card (to fine-tune shipped weights)."""
    torch = _torch()
    import onnx
    from onnx import numpy_helper

    from autofunscript.model.infer import card_path
    from autofunscript.model.net import build

    card = read_card(card_path(Path(path)))
    net = build(card.config)
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx and protobuf raise assorted types for a bad file
        raise AutofunscriptError(f"{path}: cannot read ONNX weights ({str(exc).splitlines()[0]})") from None
    stored = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = net.state_dict()
    missing = [name for name in state if name not in stored]
    if missing:
        raise AutofunscriptError(f"{path}: weights do not match its card (missing {missing[0]})")
    net.load_state_dict({name: torch.from_numpy(np.array(stored[name])) for name in state})
    return net.eval(), card


def onnx_bytes(net, steps: int) -> bytes:
    """The network as ONNX with dynamic batch and time axes."""
    torch = _torch()
    net = net.eval()
    example = torch.zeros(1, net.config.spec.n_model_inputs, steps)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of one that needs onnxscript; it exports this net exactly
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=["features"],
                          output_names=["positions", "logits"],
                          dynamic_axes={"features": {0: "batch", 2: "steps"}, "positions": {0: "batch", 2: "steps"},
                                        "logits": {0: "batch", 2: "steps"}})
    return buffer.getvalue()


def max_export_error(net, model: bytes, batch: int = 3, seed: int = 0) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on random input."""
    torch = _torch()
    import onnxruntime as ort

    config = net.config
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, config.spec.n_model_inputs, config.context_steps)).astype(np.float32)
    x[:, config.spec.n_features] = 1.0  # valid
    x[-1, config.spec.n_features, config.context_steps // 2 :] = 0.0  # one padded chunk
    with torch.no_grad():
        expected = [t.numpy() for t in net.eval()(torch.from_numpy(x))]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": x})
    return float(max(np.abs(a - b).max() for a, b in zip(expected, got)))


def export_model(net, card: ModelCard, out: Path, force: bool = False) -> ModelCard:
    """Write `out` (.onnx) and its card (.json) beside it; returns the card as written."""
    from autofunscript.model.infer import card_path
    from autofunscript.model.net import parameter_count

    out = Path(out)
    if out.suffix != ".onnx":
        raise AutofunscriptError(f"{out}: the model file name must end in .onnx")
    if not force:
        for target in (out, card_path(out)):
            if target.exists():
                raise AutofunscriptError(f"{target}: already exists (use --force to overwrite)")
    model = onnx_bytes(net, card.config.context_steps)
    error = max_export_error(net, model)
    if error > 1e-4:
        raise AutofunscriptError(f"{out}: ONNX export differs from PyTorch by {error:.2e}; not written")
    written = ModelCard(config=card.config, training=card.training, metrics=dict(card.metrics),
                        onnx_sha256=hashlib.sha256(model).hexdigest(), parameters=parameter_count(net))
    written.metrics["onnx_max_abs_error"] = float(f"{error:.3g}")
    _atomic_write_bytes(out, model, force=True)
    written.write(card_path(out))
    return written
