"""Heat bar colours and position graph of the overview picture, and its safe writing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

from autofunscript.errors import AutofunscriptError
from autofunscript.script.funscript import Funscript, read_funscript, write_funscript
from autofunscript.script.heatmap import render_heatmap, speed_colours, write_heatmap

WIDTH, HEIGHT = 400, 120


def sections() -> Funscript:
    """0-10 s fast strokes (800 pos/s), 10-20 s slow (40 pos/s), 20-30 s held still, 30-40 s no actions."""
    fast_at = np.arange(0, 10_001, 100)
    slow_at = np.arange(12_000, 20_001, 2000)
    at = np.concatenate([fast_at, slow_at, [30_000]])
    pos = np.concatenate([np.where(np.arange(fast_at.size) % 2, 90, 10),
                          np.where(np.arange(slow_at.size) % 2, 90, 10), [10]])
    return Funscript(at=at, pos=pos, metadata={"duration": 40})


def test_bar_colour_follows_speed():
    image = render_heatmap(sections(), WIDTH, HEIGHT)
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    bar = image[5].astype(int)  # one row of the heat bar; 10 px per second
    blue, red = bar[:, 0], bar[:, 2]
    assert (red[10:90] > 200).all() and (blue[10:90] < 60).all()  # fast: red
    assert (blue[125:195] > 150).all() and (red[125:195] < 60).all()  # slow: blue
    assert (bar[205:400] == 0).all()  # held and after the last action: black


def test_graph_spans_the_strokes_and_follows_holds():
    image = render_heatmap(sections(), WIDTH, HEIGHT)
    graph = image[HEIGHT // 4 + 1:]
    line = (graph == 235).all(axis=2)
    rows_fast = np.flatnonzero(line[:, 50])
    rows_hold = np.flatnonzero(line[:, 250])
    # the fast part fills the band between pos 10 and pos 90, the hold is a thin line near the bottom
    assert rows_fast.size > 0.7 * graph.shape[0]
    assert rows_hold.size <= 3 and rows_hold.min() > 0.8 * graph.shape[0]
    assert not line[:, 350].any()  # no actions, nothing drawn beyond the held last position
    assert (image[HEIGHT // 4 + 1:, 350] == (24, 24, 24)).all(axis=1).sum() > 0.9 * graph.shape[0]


def test_palette_order_and_black_for_no_motion():
    colours = speed_colours(np.array([0.0, 30.0, 150.0, 250.0, 320.0, 600.0])).astype(int)
    assert colours[0].tolist() == [0, 0, 0]
    b, g, r = colours.T
    assert b[1] > r[1] and b[2] > r[2]  # slow: blue, cyan
    assert g[3] > b[3] and g[4] > b[4]  # medium: green, yellow
    assert r[5] > g[5] and r[5] > b[5]  # fast: red


def test_real_script_and_empty_script_render(shared_funscripts):
    script = read_funscript(next(f for f in shared_funscripts if f.name == "real_13.funscript"))
    image = render_heatmap(script, 1000, 160)
    assert image.shape == (160, 1000, 3)
    assert (image[:40].sum(axis=2) > 0).mean() > 0.9  # a dense real script is moving almost everywhere
    empty = render_heatmap(Funscript(), 64, 32)
    assert (empty[:8] == 0).all()
    with pytest.raises(ValueError):
        render_heatmap(script, 8, 100)


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    target = tmp_path / "heat.png"
    write_heatmap(sections(), target, WIDTH, HEIGHT)
    assert np.array_equal(cv2.imread(str(target)), render_heatmap(sections(), WIDTH, HEIGHT))
    before = target.read_bytes()
    with pytest.raises(AutofunscriptError, match="already exists"):
        write_heatmap(Funscript(), target, WIDTH, HEIGHT)
    assert target.read_bytes() == before
    write_heatmap(Funscript(), target, WIDTH, HEIGHT, force=True)
    assert target.read_bytes() != before
    with pytest.raises(AutofunscriptError, match="PNG"):
        write_heatmap(Funscript(), tmp_path / "heat.jpg", WIDTH, HEIGHT)
    assert [p.name for p in tmp_path.iterdir()] == ["heat.png"]


def test_written_heatmap_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o027)
    try:
        write_heatmap(sections(), tmp_path / "heat.png", WIDTH, HEIGHT)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "heat.png").stat().st_mode) == 0o640


@pytest.mark.parametrize("out, message", [
    ("folder.png", "folder.png: is a folder; give the PNG file's name (such as {tmp}/folder.png/heatmap.png)"),
    ("missing/heat.png", "missing/heat.png: folder {tmp}/missing does not exist"),
    ("notes.txt/heat.png", "notes.txt/heat.png: {tmp}/notes.txt is a file, not a folder"),
])
def test_a_bad_place_for_the_picture_is_named(tmp_path, out, message):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AutofunscriptError) as error:
        write_heatmap(sections(), tmp_path / out, WIDTH, HEIGHT, force=True)
    assert str(error.value) == f"{tmp_path}/{message.format(tmp=tmp_path)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "notes.txt"]
    assert list((tmp_path / "folder.png").iterdir()) == []


def test_heatmap_command_writes_the_requested_size(tmp_path):
    script = tmp_path / "s.funscript"
    write_funscript(sections(), script)
    out = tmp_path / "heat.png"
    result = subprocess.run([sys.executable, "-m", "autofunscript", "heatmap", script, "--out", out,
                             "--width", "300", "--height", "90"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(out)).shape == (90, 300, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.png", "s.funscript"]
