"""Funscript model and I/O: tolerant reading, strict OFS-compatible atomic writing.

A script holds its actions as two parallel integer arrays (time in ms, position 0-100) so that
post-processing and evaluation work on NumPy directly; everything else in the file is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofunscript.errors import AutofunscriptError, ScriptFormatError, input_file_size

log = logging.getLogger("autofunscript")

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_ACTIONS = 5_000_000
# Beyond ~10 days an `at` is not a time any video has; it is a corrupt or hostile file.
MAX_ABS_AT_MS = 10 * 24 * 3600 * 1000

# Axis names used for sibling files, and the TCode ids that the v1.1 `axes` array uses for them.
AXIS_IDS = {"L0": "stroke", "L1": "surge", "L2": "sway", "R0": "twist", "R1": "roll", "R2": "pitch",
            "V0": "vib", "A0": "valve", "A1": "suck"}
KNOWN_AXES = tuple(AXIS_IDS.values())

_CORE_KEYS = ("actions", "version", "inverted", "range", "metadata")


@dataclass(eq=False)
class Funscript:
    """One axis of a script: sorted unique `at` (ms) with positions 0-100, plus the file's other content."""

    at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    version: str = "1.0"
    inverted: bool = False
    range: int = 100
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Funscript] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.at = np.asarray(self.at, dtype=np.int64).reshape(-1)
        self.pos = np.asarray(self.pos, dtype=np.int64).reshape(-1)
        if self.at.shape != self.pos.shape:
            raise ValueError("at and pos must have the same length")

    @classmethod
    def from_samples(cls, times_ms: np.ndarray, positions: np.ndarray, **kwargs: Any) -> Funscript:
        """Build a script from float samples: rounds, clamps, sorts and de-duplicates."""
        at, pos = normalise_actions(np.asarray(times_ms, float), np.asarray(positions, float))
        return cls(at=at, pos=pos, **kwargs)

    def __len__(self) -> int:
        return int(self.at.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Funscript):
            return NotImplemented
        return (np.array_equal(self.at, other.at) and np.array_equal(self.pos, other.pos)
                and self.version == other.version and self.inverted == other.inverted
                and self.range == other.range and self.metadata == other.metadata
                and self.extra == other.extra and self.axes == other.axes)

    @property
    def duration_s(self) -> float:
        """Length of the video the script belongs to: metadata duration if sane, else the last action."""
        last_s = float(self.at.max()) / 1000.0 if len(self) else 0.0
        meta = metadata_duration_s(self.metadata.get("duration"), last_s)
        return max(last_s, meta or 0.0)

    def copy_with(self, at: np.ndarray, pos: np.ndarray) -> Funscript:
        """Same file-level content, new actions."""
        return Funscript(at=at, pos=pos, version=self.version, inverted=self.inverted, range=self.range,
                         metadata=dict(self.metadata), extra=dict(self.extra), axes=dict(self.axes))

    def sample(self, times_ms: np.ndarray) -> np.ndarray:
        """Position at arbitrary times by linear interpolation (held flat outside the actions)."""
        if not len(self):
            return np.full(np.shape(times_ms), 50.0)
        return np.interp(times_ms, self.at.astype(float), self.pos.astype(float))


def normalise_actions(at: np.ndarray, pos: np.ndarray, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Round to ints, clamp pos to 0-100, sort by time and keep the last of duplicate times."""
    prefix = f"{source}: " if source else ""
    at_i = np.rint(at).astype(np.int64)
    pos_r = np.rint(pos)
    outside = (pos_r < 0) | (pos_r > 100)
    if outside.any():
        log.warning("%s%d positions outside 0-100 clamped", prefix, int(outside.sum()))
    pos_i = np.clip(pos_r, 0, 100).astype(np.int64)
    if at_i.size and (at_i < 0).any():
        negative = int((at_i < 0).sum())
        log.warning("%s%d action%s before 0 s (kept as read; players reject them, and `tune` cuts them at 0)",
                    prefix, negative, "" if negative == 1 else "s")
    if at_i.size > 1 and (np.diff(at_i) <= 0).any():
        out_of_order = bool((np.diff(at_i) < 0).any())
        order = np.argsort(at_i, kind="stable")
        at_i, pos_i = at_i[order], pos_i[order]
        # keep the last entry written for each time: later edits win, as in editors
        keep = np.append(at_i[1:] != at_i[:-1], True)
        dropped = int((~keep).sum())
        if dropped:
            log.warning("%s%s%d duplicate times dropped", prefix, "actions sorted, " if out_of_order else "", dropped)
        else:
            log.warning("%sactions were not in time order (sorted)", prefix)
        at_i, pos_i = at_i[keep], pos_i[keep]
    return at_i, pos_i


def metadata_duration_s(value: Any, last_action_s: float) -> float | None:
    """Interpret metadata.duration, which tools write in seconds or in milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    value = float(value)
    if last_action_s > 0:
        # A duration in seconds is close to the last action; in ms it is ~1000x it. Read as ms it must still
        # cover the actions: a script that stops early in its video (or was shifted earlier) keeps seconds.
        in_ms = value > 20 * last_action_s and value / 1000.0 >= 0.9 * last_action_s
        return value / 1000.0 if in_ms else value
    return value / 1000.0 if value > 86_400 else value


def _number(value: Any, what: str, source: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScriptFormatError(f"{source}: {what} is {type(value).__name__}, expected a number")
    if not math.isfinite(value):
        raise ScriptFormatError(f"{source}: {what} is not a finite number")
    return float(value)


def _parse_actions(raw: Any, source: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(raw, list):
        raise ScriptFormatError(f"{source}: '{where}' is {type(raw).__name__}, expected a list")
    if len(raw) > MAX_ACTIONS:
        raise ScriptFormatError(f"{source}: '{where}' has {len(raw)} entries, more than {MAX_ACTIONS}")
    at = np.empty(len(raw))
    pos = np.empty(len(raw))
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "at" not in item or "pos" not in item:
            raise ScriptFormatError(f"{source}: {where}[{i}] is not an object with 'at' and 'pos'")
        at[i] = _number(item["at"], f"{where}[{i}].at", source)
        pos[i] = _number(item["pos"], f"{where}[{i}].pos", source)
    if at.size and np.abs(at).max() > MAX_ABS_AT_MS:
        raise ScriptFormatError(f"{source}: '{where}' has an absurd time ({at[np.abs(at).argmax()]:.6g} ms)")
    if at.size and np.abs(pos).max() > 1e6:
        raise ScriptFormatError(f"{source}: '{where}' has an absurd position ({pos[np.abs(pos).argmax()]:.6g})")
    if ((at != np.rint(at)) | (pos != np.rint(pos))).any():
        log.warning("%s: fractional at/pos rounded to integers", source)
    return normalise_actions(at, pos, str(source))


def _parse_version(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.1f}"
    return str(value) if value is not None else "1.0"


def parse_funscript(data: Any, source: Path) -> Funscript:
    """Turn decoded JSON into a Funscript, tolerating what real tools write."""
    if not isinstance(data, dict):
        raise ScriptFormatError(f"{source}: top level is {type(data).__name__}, expected an object")
    if "actions" not in data:
        raise ScriptFormatError(f"{source}: no 'actions' list")
    at, pos = _parse_actions(data["actions"], source, "actions")
    inverted = data.get("inverted", False)
    if not isinstance(inverted, bool):
        raise ScriptFormatError(f"{source}: 'inverted' is {type(inverted).__name__}, expected true/false")
    rng = data.get("range", 100)
    rng = int(_number(rng, "range", source))
    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ScriptFormatError(f"{source}: 'metadata' is {type(metadata).__name__}, expected an object")
    extra = {k: v for k, v in data.items() if k not in _CORE_KEYS and k != "axes"}
    axes: dict[str, Funscript] = {}
    raw_axes = data.get("axes")
    if raw_axes is not None:
        if not isinstance(raw_axes, list):
            raise ScriptFormatError(f"{source}: 'axes' is {type(raw_axes).__name__}, expected a list")
        for i, axis in enumerate(raw_axes):
            if not isinstance(axis, dict) or "actions" not in axis:
                raise ScriptFormatError(f"{source}: axes[{i}] is not an object with 'actions'")
            axis_id = str(axis.get("id", f"axis{i}"))
            name = AXIS_IDS.get(axis_id, axis_id)
            a_at, a_pos = _parse_actions(axis["actions"], source, f"axes[{i}].actions")
            axes[name] = Funscript(at=a_at, pos=a_pos, version=_parse_version(data.get("version")),
                                   extra={k: v for k, v in axis.items() if k not in ("actions", "id")})
    return Funscript(at=at, pos=pos, version=_parse_version(data.get("version")), inverted=inverted,
                     range=rng, metadata=metadata, extra=extra, axes=axes)


def read_funscript(path: str | os.PathLike[str], siblings: bool = False) -> Funscript:
    """Read one funscript; with `siblings`, also attach `stem.<axis>.funscript` files as axes."""
    path = Path(path)
    size = input_file_size(path, ScriptFormatError, "a funscript")
    if size > MAX_FILE_BYTES:
        raise ScriptFormatError(f"{path}: {size / 1e6:.0f} MB is too large for a funscript")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ScriptFormatError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ScriptFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if not text.strip():
        raise ScriptFormatError(f"{path}: empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text[exc.pos :].strip():  # the parser wanted more: the file stops mid-way (a cut-off download or copy)
            raise ScriptFormatError(f"{path}: JSON cut off at line {exc.lineno} (the file ends too early)") from None
        raise ScriptFormatError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ScriptFormatError(f"{path}: JSON nested too deeply") from None
    script = parse_funscript(data, path)
    if siblings:
        for axis, sibling in sibling_paths(path).items():
            if sibling.exists() and axis not in script.axes:
                script.axes[axis] = read_funscript(sibling)
    return script


def axis_path(main_path: Path, axis: str) -> Path:
    """`video.funscript` + 'roll' -> `video.roll.funscript` (the OFS multi-axis naming)."""
    name = main_path.name
    stem = name[: -len(".funscript")] if name.endswith(".funscript") else main_path.stem
    return main_path.with_name(f"{stem}.{axis}.funscript")


def sibling_paths(main_path: Path) -> dict[str, Path]:
    return {axis: axis_path(main_path, axis) for axis in KNOWN_AXES if axis != "stroke"}


def to_json_dict(script: Funscript) -> dict[str, Any]:
    """Strict OFS layout: actions first, ints, then version/inverted/range/metadata, then kept extra keys."""
    metadata = dict(script.metadata)
    metadata["duration"] = int(math.ceil(script.duration_s))
    out: dict[str, Any] = {
        "actions": [{"at": int(a), "pos": int(p)} for a, p in zip(script.at.tolist(), script.pos.tolist())],
        "version": script.version,
        "inverted": bool(script.inverted),
        "range": int(script.range),
        "metadata": metadata,
    }
    for key, value in script.extra.items():
        out.setdefault(key, value)
    return out


def check_output_path(path: Path, force: bool = False, what: str = "output file") -> None:
    """Refuse before any work is done: a folder in the file's place, an existing file (unless forced), or a
    folder that cannot take it."""
    if path.is_dir():
        raise AutofunscriptError(f"{path}: is a folder; give the {what}'s name")
    if path.exists() and not force:
        raise AutofunscriptError(f"{path}: already exists (use --force to overwrite)")
    if path.parent.exists() and not path.parent.is_dir():
        raise AutofunscriptError(f"{path}: {path.parent} is a file, not a folder")
    if not path.parent.is_dir():
        raise AutofunscriptError(f"{path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise AutofunscriptError(f"{path}: folder {path.parent} is not writable")


def write_beside(path: Path, data: str | bytes) -> Path:
    """`data` (text as UTF-8) in a new temp file in `path`'s folder, with the permissions any new file gets, so
    a rename puts it in place at once; returns the temp file's path. Every file the package writes goes so."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise AutofunscriptError(f"{path}: folder {folder} does not exist")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise AutofunscriptError(f"{path}: cannot write ({exc.strerror})") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        # mkstemp makes the file private (0600); what we write should get the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a quota: name the file, not just the error
            raise AutofunscriptError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    return tmp


def atomic_write_text(path: Path, text: str, force: bool = False) -> None:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a file."""
    path = Path(path)
    if path.exists() and not force:
        raise AutofunscriptError(f"{path}: already exists (use --force to overwrite)")
    tmp = write_beside(path, text)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_funscript(script: Funscript, path: str | os.PathLike[str], force: bool = False,
                    replace_axes: bool = False) -> list[Path]:
    """Write the main axis to `path` and every extra axis to its sibling file; returns what was written.

    `replace_axes` overwrites axis files without `force`, for a writer (batch) to which a main script on
    disk marks a finished set, so axis files without one are leftovers of an unfinished run.

    All targets are checked before anything is written, and every file is written in full to a temp file
    before any is renamed into place (the main script last), so a refusal or a full disk never leaves a
    partial set, and a main script on disk means its axis files are there too.
    """
    path = Path(path)
    targets: list[tuple[Path, Funscript]] = [(axis_path(path, axis), axis_script)
                                             for axis, axis_script in script.axes.items()]
    targets.append((path, script))
    if not force:
        for target, _ in (targets[-1:] if replace_axes else targets):
            if target.exists():
                raise AutofunscriptError(f"{target}: already exists (use --force to overwrite)")
    written: list[tuple[Path, Path]] = []
    try:
        for target, item in targets:
            written.append((write_beside(target, json.dumps(to_json_dict(item), separators=(",", ":"))), target))
        for tmp, target in written:
            os.replace(tmp, target)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    return [path] + [target for target, _ in targets[:-1]]
