"""Training (PyTorch extra): labelled clips -> features (cached) -> chunks -> a trained MotionNet.

A data folder holds pairs `name.mp4` + `name.funscript`, the way users label their own videos (VR
clips are recognised by the usual name tokens: _sbs/_lr/_180 side by side, _ou/_tb over-under).
Features of each clip are extracted once through the same tracking pass as inference and cached as
npz, keyed by the files' size and time and the feature spec, so epochs and reruns never re-decode.
Everything random is drawn from the seed, and torch runs deterministic kernels, so a run repeats.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autofunscript.errors import AutofunscriptError
from autofunscript.model.card import ModelCard, ModelConfig
from autofunscript.model.features import FEATURE_RATE, FeatureSpec, augment, model_input, target_positions
from autofunscript.model.router import HEADS, MOTION_TYPES, motion_labels
from autofunscript.model.tracking import TrackRequest, TrackSummary, iter_window_features
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.video import VIDEO_EXTENSIONS

log = logging.getLogger("autofunscript")

MIN_SCRIPT_COVERAGE = 0.5  # a script must reach at least this share of its video's duration
FEATURE_CACHE_VERSION = 1
MIN_WINDOW_STEPS = 30  # windows shorter than a second (a scene cut right after another) teach nothing
DERIVATIVE_WEIGHT = 10.0
CLASS_WEIGHT = 0.3
HINT_RATE = 0.3  # share of training chunks that are given their first position
AUGMENT_RATE = 0.5  # chance of each augmentation (mirror, time reversal) per training chunk
_SBS = {"sbs", "lr", "180", "3dh", "vr"}
_OU = {"ou", "tb", "3dv"}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autofunscript" / "features"


@dataclass(frozen=True)
class TrainingPair:
    video: Path
    script: Path
    eye: str | None  # VR layout from the file name


@dataclass(frozen=True)
class WindowData:
    """One analysis window of a clip: feature rows, truth positions and motion types on the feature grid."""

    values: np.ndarray  # (N, C)
    truth: np.ndarray  # (N,) 0-100
    labels: np.ndarray  # (N,) index into MOTION_TYPES


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 16
    batch: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    validation_share: float = 0.1


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_pearson: float | None
    seconds: float


@dataclass
class TrainResult:
    net: object  # MotionNet
    card: ModelCard
    history: list[EpochLog] = field(default_factory=list)


def eye_from_name(name: str) -> str | None:
    tokens = set(re.split(r"[_\-. ]+", Path(name).stem.lower()))
    if tokens & _SBS:
        return "sbs"
    if tokens & _OU:
        return "ou"
    return None


def find_pairs(data_dir: Path) -> list[TrainingPair]:
    """Every video under `data_dir` with its same-named script; a video without one is an error."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise AutofunscriptError(f"{data_dir}: not a folder")
    videos = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(data_dir).parts))
    if not videos:
        raise AutofunscriptError(f"{data_dir}: no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) to train on")
    pairs = []
    for video in videos:
        script = video.with_suffix(".funscript")
        if not script.is_file():
            raise AutofunscriptError(f"{video}: no {script.name} beside it (each training video needs its script)")
        pairs.append(TrainingPair(video, script, eye_from_name(video.name)))
    return pairs


def _cache_key(pair: TrainingPair, spec: FeatureSpec) -> str:
    parts = [str(FEATURE_CACHE_VERSION), ",".join(spec.inputs), str(pair.eye)]
    for path in (pair.video, pair.script):
        stat = path.stat()
        parts += [str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def check_script_covers(script: Funscript, script_path: Path, video_duration_s: float) -> None:
    if len(script) < 2:
        raise AutofunscriptError(f"{script_path}: has {len(script)} actions; a training script needs its motion")
    reach_s = float(script.at[-1]) / 1000.0
    if video_duration_s > 0 and reach_s < MIN_SCRIPT_COVERAGE * video_duration_s:
        raise AutofunscriptError(f"{script_path}: ends at {reach_s:.1f} s but the video runs {video_duration_s:.1f} s; "
                                 f"script the whole video or cut the video to the scripted part")


def load_clip(pair: TrainingPair, spec: FeatureSpec, cache_dir: Path | None) -> list[WindowData]:
    """Windows of a labelled clip, from the cache when its files are unchanged."""
    from autofunscript.video.stream import probe

    script = read_funscript(pair.script)
    info = probe(pair.video)
    check_script_covers(script, pair.script, info.duration_s)
    cache = cache_dir / f"{pair.video.stem}-{_cache_key(pair, spec)}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            bounds = data["bounds"]
            return [WindowData(data["values"][a:b], data["truth"][a:b], data["labels"][a:b])
                    for a, b in zip(bounds[:-1], bounds[1:])]
    windows = []
    summary = TrackSummary()
    for _, features in iter_window_features(TrackRequest(pair.video, spec, eye=pair.eye), summary):
        truth = script.sample(features.grid_times_s * 1000.0)
        windows.append(WindowData(features.values, truth.astype(np.float32), motion_labels(truth)))
    if summary.interrupted:  # Ctrl+C: the clip was read in part, which must be neither trained on nor cached
        raise KeyboardInterrupt
    if summary.frames < 2:
        raise AutofunscriptError(f"{pair.video}: fewer than 2 frames decoded; cannot train on it")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        bounds = np.cumsum([0] + [w.values.shape[0] for w in windows])
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, values=np.concatenate([w.values for w in windows]),
                 truth=np.concatenate([w.truth for w in windows]),
                 labels=np.concatenate([w.labels for w in windows]), bounds=bounds)
        os.replace(tmp, cache)
    return windows


def load_corpus(pairs: list[TrainingPair], spec: FeatureSpec, cache_dir: Path | None,
                progress: Callable[[int, int, TrainingPair], None] | None = None) -> list[list[WindowData]]:
    clips = []
    for i, pair in enumerate(pairs):
        if progress is not None:
            progress(i, len(pairs), pair)
        clips.append(load_clip(pair, spec, cache_dir))
    return clips


@dataclass(frozen=True)
class Chunks:
    x: np.ndarray  # (B, C, L) model inputs
    target: np.ndarray  # (B, L)
    valid: np.ndarray  # (B, L)
    labels: np.ndarray  # (B, L), -1 on padding


def make_chunks(clips: list[list[WindowData]], config: ModelConfig, rng: np.random.Generator | None) -> Chunks:
    """Chunks of every window: a stride of a third of the context. With `rng` (training) the stride is
    randomly offset per epoch, chunks are mirrored and/or time-reversed, and some get their first
    position as a hint; without it (validation) chunks are fixed."""
    length = config.context_steps
    stride = max(1, length // 3)
    xs, ys, vs, ls = [], [], [], []
    for windows in clips:
        for w in windows:
            n = w.values.shape[0]
            if n < MIN_WINDOW_STEPS:
                continue
            if n <= length:
                starts = [0]
            else:
                offset = int(rng.integers(stride)) if rng is not None else 0
                starts = sorted({*range(offset, n - length + 1, stride), n - length})
            for s in starts:
                span = slice(s, s + length)
                m = min(length, n - s)
                values, truth, labels = w.values[span], w.truth[span], w.labels[span]
                hint = None
                if rng is not None:
                    mirror, reverse = rng.random(2) < AUGMENT_RATE
                    values = augment(values, config.spec, mirror, reverse)
                    if reverse:
                        truth, labels = truth[::-1], labels[::-1]
                    hint = float(truth[0]) if rng.random() < HINT_RATE else None
                xs.append(model_input(values, length, config.spec, hint))
                y = np.zeros(length, np.float32)
                y[:m] = target_positions(truth)
                ys.append(y)
                v = np.zeros(length, np.float32)
                v[:m] = 1.0
                vs.append(v)
                lab = np.full(length, -1, np.int64)
                lab[:m] = labels
                ls.append(lab)
    if not xs:
        raise AutofunscriptError("no training windows of at least a second: are the clips that short?")
    return Chunks(np.stack(xs), np.stack(ys), np.stack(vs), np.stack(ls))


# label -> index of its expert head among the position outputs (0 is the generalist; still has none)
_HEAD_OF_LABEL = np.array([1 + HEADS.index(t) if t in HEADS else -1 for t in MOTION_TYPES])


def losses(net, x, target, valid, labels):
    """Total loss and its parts: generalist and routed expert positions (with their slopes) and types."""
    import torch
    import torch.nn.functional as F

    positions, logits = net(x)
    head_of = torch.from_numpy(_HEAD_OF_LABEL).to(labels.device)
    expert_index = torch.where(labels >= 0, head_of[labels.clamp(min=0)], torch.full_like(labels, -1))
    expert_mask = valid * (expert_index > 0).float()
    expert = positions.gather(1, expert_index.clamp(min=1).unsqueeze(1)).squeeze(1)

    def fitted(pred, mask):
        err = ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
        slope_mask = mask[:, 1:] * mask[:, :-1]
        slope = ((pred.diff(dim=1) - target.diff(dim=1)) ** 2 * slope_mask).sum() / slope_mask.sum().clamp(min=1.0)
        return err + DERIVATIVE_WEIGHT * slope

    general = fitted(positions[:, 0], valid)
    experts = fitted(expert, expert_mask)
    types = F.cross_entropy(logits, labels, ignore_index=-1)
    return general + experts + CLASS_WEIGHT * types, {"general": general, "experts": experts, "types": types}


def _pearson_rows(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    rs = []
    for p, t, v in zip(pred, target, valid):
        keep = v > 0
        p, t = p[keep], t[keep]
        if p.size > 2 and p.std() > 1e-6 and t.std() > 1e-6:
            rs.append(float(np.corrcoef(p, t)[0, 1]))
    return float(np.mean(rs)) if rs else 0.0


def split_validation(n: int, share: float) -> np.ndarray:
    """Indices of held-out clips: every k-th clip, so the split is fixed by the sorted clip list."""
    if n < 5 or share <= 0:
        return np.zeros(0, np.int64)
    step = max(2, int(round(1 / share)))
    return np.arange(step // 2, n, step)


def train(clips: list[list[WindowData]], config: ModelConfig, settings: TrainSettings, init_net=None,
          on_epoch: Callable[[EpochLog], None] | None = None, description: dict | None = None) -> TrainResult:
    """Train from scratch (or from `init_net`, for fine-tuning); keeps the epoch with the best validation loss."""
    import torch

    from autofunscript.model.net import build

    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, settings.threads))
    rng = np.random.default_rng(settings.seed)
    held = set(split_validation(len(clips), settings.validation_share).tolist())
    train_clips = [c for i, c in enumerate(clips) if i not in held]
    val_clips = [c for i, c in enumerate(clips) if i in held]
    val = make_chunks(val_clips, config, None) if val_clips else None

    net = init_net if init_net is not None else build(config)
    steps_per_epoch = math.ceil(make_chunks(train_clips, config, None).x.shape[0] / settings.batch)
    total_steps = max(1, settings.epochs * steps_per_epoch)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = max(1, total_steps // 20)
    # linear warm-up, then cosine decay to zero over the planned steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / total_steps)))))
    history: list[EpochLog] = []
    best_state, best_loss = None, math.inf
    step = 0
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        chunks = make_chunks(train_clips, config, rng)
        order = rng.permutation(chunks.x.shape[0])
        net.train()
        total, count = 0.0, 0
        for i in range(0, order.size, settings.batch):
            if step >= total_steps:
                break
            idx = order[i : i + settings.batch]
            loss, _ = losses(net, torch.from_numpy(chunks.x[idx]), torch.from_numpy(chunks.target[idx]),
                             torch.from_numpy(chunks.valid[idx]), torch.from_numpy(chunks.labels[idx]))
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            step += 1
            total += loss.item() * idx.size
            count += idx.size
        val_loss = val_r = None
        if val is not None:
            val_loss, val_r = evaluate_chunks(net, val)
        entry = EpochLog(epoch, total / max(count, 1), val_loss, val_r, time.perf_counter() - started)
        history.append(entry)
        if on_epoch is not None:
            on_epoch(entry)
        score = val_loss if val_loss is not None else entry.train_loss
        if score < best_loss:
            best_loss = score
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    best = min(history, key=lambda h: h.val_loss if h.val_loss is not None else h.train_loss)
    training = {"settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
                "clips": len(clips), "validation_clips": len(val_clips),
                "train_seconds": round(sum(h.seconds for h in history), 1), "best_epoch": best.epoch,
                **(description or {})}
    metrics = {"val_loss": best.val_loss, "val_pearson": best.val_pearson, "train_loss": best.train_loss}
    return TrainResult(net, ModelCard(config=config, training=training, metrics=metrics), history)


def evaluate_chunks(net, chunks: Chunks) -> tuple[float, float]:
    """Mean loss and mean per-chunk Pearson r of the generalist head on fixed chunks."""
    import torch

    net.eval()
    total, preds = 0.0, []
    with torch.no_grad():
        for i in range(0, chunks.x.shape[0], 64):
            part = slice(i, i + 64)
            x = torch.from_numpy(chunks.x[part])
            loss, _ = losses(net, x, torch.from_numpy(chunks.target[part]), torch.from_numpy(chunks.valid[part]),
                             torch.from_numpy(chunks.labels[part]))
            total += float(loss) * x.shape[0]
            preds.append(net(x)[0][:, 0].numpy())
    pred = np.concatenate(preds)
    return total / chunks.x.shape[0], _pearson_rows(pred, chunks.target, chunks.valid)


def describe_corpus(pairs: list[TrainingPair], clips: list[list[WindowData]]) -> dict:
    steps = sum(w.values.shape[0] for c in clips for w in c)
    labels = np.concatenate([w.labels for c in clips for w in c]) if clips else np.zeros(0, np.int64)
    shares = {t: round(float((labels == i).mean()), 3) if labels.size else 0.0 for i, t in enumerate(MOTION_TYPES)}
    return {"clips": len(pairs), "hours": round(steps / FEATURE_RATE / 3600, 3), "motion_type_shares": shares,
            "vr_clips": sum(p.eye is not None for p in pairs)}



@dataclass(frozen=True)
class ModelFiles:
    """What a training run writes into its output folder."""

    onnx: Path
    card: Path
    checkpoint: Path

    @classmethod
    def in_folder(cls, folder: Path) -> ModelFiles:
        return cls(folder / "motion.onnx", folder / "motion.json", folder / "motion.pt")


def check_config(config: ModelConfig) -> None:
    if not 2.0 <= config.context_s <= 20.0:
        raise AutofunscriptError(f"context {config.context_s:g} s: must be between 2 and 20 seconds")
    try:
        config.spec
    except ValueError:
        raise AutofunscriptError(f"inputs {','.join(config.inputs)}: must be flow plus any of edges, mask, patch")


def _check_writable_folder(folder: Path, option: str) -> None:
    """Refuse a folder that cannot be written: a file in its place, or one that cannot be made or written in."""
    if folder.exists() and not folder.is_dir():
        raise AutofunscriptError(f"{folder}: is a file, not a folder ({option})")
    where = folder if folder.is_dir() else next((p for p in folder.parents if p.is_dir()), Path("."))
    try:
        tempfile.TemporaryDirectory(dir=where).cleanup()
    except OSError as exc:
        raise AutofunscriptError(f"{folder}: cannot write there ({option}: {exc.strerror or exc})") from None


def train_folder(data_dir: Path, out_dir: Path, config: ModelConfig, settings: TrainSettings,
                 cache_dir: Path | None, init_net=None, force: bool = False,
                 on_clip: Callable[[int, int, TrainingPair], None] | None = None,
                 on_epoch: Callable[[EpochLog], None] | None = None) -> tuple[TrainResult, ModelCard, ModelFiles]:
    """Train on the labelled clips in `data_dir`; writes motion.onnx/.json/.pt into `out_dir`."""
    from autofunscript.model.export import export_model, save_checkpoint

    check_config(config)
    out_dir = Path(out_dir)
    files = ModelFiles.in_folder(out_dir)
    if not out_dir.parent.is_dir():
        raise AutofunscriptError(f"{out_dir}: folder {out_dir.parent} does not exist")
    # found now, not after the features and every epoch
    _check_writable_folder(out_dir, "--out")
    if cache_dir is not None:
        _check_writable_folder(Path(cache_dir), "--cache")
    if not force:
        for target in (files.onnx, files.card, files.checkpoint):
            if target.exists():
                raise AutofunscriptError(f"{target}: already exists (use --force to overwrite)")
    pairs = find_pairs(data_dir)
    started = time.perf_counter()
    clips = load_corpus(pairs, config.spec, cache_dir, on_clip)
    description = {"data": describe_corpus(pairs, clips), "feature_seconds": round(time.perf_counter() - started, 1),
                   "fine_tuned_from": None if init_net is None else "shipped weights"}
    result = train(clips, config, settings, init_net, on_epoch, description)
    out_dir.mkdir(exist_ok=True)
    save_checkpoint(result.net, result.card, files.checkpoint)
    card = export_model(result.net, result.card, files.onnx, force=True)
    return result, card, files
