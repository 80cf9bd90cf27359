"""OFS-style overview picture: a heat bar coloured by stroke speed above the position graph.

Columns cover equal slices of the video (0 to the script's duration). The bar shows the mean speed
in each slice (distance travelled / slice length), so a slice with many fast strokes is red even when
it is much wider than one stroke; the graph shows the min-max envelope of the position in each slice.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from autofunscript.errors import AutofunscriptError
from autofunscript.script.funscript import Funscript, write_beside

MIN_SIZE = 16
# speed (pos/s) -> colour (B, G, R): slow blue/cyan, medium green/yellow, fast orange/red
_SPEED_STOPS = np.array([1.0, 60.0, 130.0, 200.0, 280.0, 360.0, 450.0])
_SPEED_COLOURS = np.array([
    (160, 40, 20), (255, 110, 30), (230, 210, 0), (60, 200, 40), (0, 220, 240), (0, 140, 255), (20, 20, 230),
], dtype=float)
_BACKGROUND = (24, 24, 24)
_GRID = (64, 64, 64)
_LINE = (235, 235, 235)
_BAR_SHARE = 0.25


def speed_colours(speed: np.ndarray) -> np.ndarray:
    """BGR uint8 colour per speed; black where the script does not move."""
    speed = np.asarray(speed, float)
    colours = np.stack([np.interp(speed, _SPEED_STOPS, _SPEED_COLOURS[:, c]) for c in range(3)], axis=-1)
    colours[speed < _SPEED_STOPS[0]] = 0
    return colours.round().astype(np.uint8)


def _column_edges(script: Funscript, width: int) -> np.ndarray:
    end_ms = max(script.duration_s * 1000.0, 1.0)
    return np.linspace(0.0, end_ms, width + 1)


def _column_speeds(script: Funscript, edges: np.ndarray) -> np.ndarray:
    if len(script) < 2:
        return np.zeros(edges.size - 1)
    travelled = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(script.pos)))])
    distance = np.diff(np.interp(edges, script.at.astype(float), travelled))
    return distance / np.diff(edges) * 1000.0


def _column_envelope(script: Funscript, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest position reached in each column."""
    at_edges = script.sample(edges)
    low = np.minimum(at_edges[:-1], at_edges[1:])
    high = np.maximum(at_edges[:-1], at_edges[1:])
    inside = (script.at >= edges[0]) & (script.at < edges[-1])
    column = np.searchsorted(edges, script.at[inside], side="right") - 1
    np.minimum.at(low, column, script.pos[inside])
    np.maximum.at(high, column, script.pos[inside])
    return low, high


def render_heatmap(script: Funscript, width: int, height: int) -> np.ndarray:
    """The picture as a BGR uint8 array of shape (height, width, 3)."""
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(f"heatmap must be at least {MIN_SIZE}x{MIN_SIZE} pixels, got {width}x{height}")
    image = np.zeros((height, width, 3), np.uint8)
    edges = _column_edges(script, width)
    bar_height = max(4, round(height * _BAR_SHARE))
    image[:bar_height] = speed_colours(_column_speeds(script, edges))[None, :, :]

    graph_top = bar_height + 1  # one black row keeps the bar and graph apart
    graph = image[graph_top:]
    graph[:] = _BACKGROUND
    margin = 2
    usable = graph.shape[0] - 2 * margin - 1

    def row_of(pos: np.ndarray | float) -> np.ndarray:
        return np.rint(margin + (1.0 - np.asarray(pos, float) / 100.0) * usable).astype(int)

    for level in (0, 50, 100):
        y = int(row_of(level))
        cv2.line(graph, (0, y), (width - 1, y), _GRID, 1)
    if len(script):
        low, high = _column_envelope(script, edges)
        top, bottom = row_of(high), row_of(low)
        bottom = np.maximum(bottom, top + 1)  # at least two pixels, so flat stretches stay visible
        # columns wholly before the first or after the last action stay empty: the script ends there
        scripted = (edges[1:] >= script.at[0]) & (edges[:-1] <= script.at[-1])
        rows = np.arange(graph.shape[0])[:, None]
        graph[(rows >= top[None, :]) & (rows <= bottom[None, :]) & scripted[None, :]] = _LINE
    return image


def write_heatmap(script: Funscript, path: str | os.PathLike[str], width: int, height: int,
                  force: bool = False) -> Path:
    """Render and save as PNG via a temp file and rename; refuses to overwrite without `force`."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise AutofunscriptError(f"{path}: is a folder; give the PNG file's name (such as {path / 'heatmap.png'})")
    if path.suffix.lower() != ".png":
        raise AutofunscriptError(f"{path}: the heatmap is written as PNG, name the file *.png")
    if folder.exists() and not folder.is_dir():
        raise AutofunscriptError(f"{path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise AutofunscriptError(f"{path}: folder {folder} does not exist")
    if path.exists() and not force:
        raise AutofunscriptError(f"{path}: already exists (use --force to overwrite)")
    ok, encoded = cv2.imencode(".png", render_heatmap(script, width, height))
    if not ok:
        raise AutofunscriptError(f"{path}: PNG encoding failed")
    tmp = write_beside(path, encoded.tobytes())
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise AutofunscriptError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
