"""`autofunscript tune` end to end on real scripts from ../shared/data/funscripts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from autofunscript import __version__
from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.script.postprocess import speeds
from test_generate_cli import assert_refused, run_cli

# 611 hand-made actions over 73 s, with metadata (creator, duration, ...) and moves up to 455 pos/s
REAL = "real_04.funscript"
KEEP_EVERYTHING = ("--simplify", "0", "--max-speed", "0")  # with these, tune changes only what is asked


@pytest.fixture
def real(shared_funscripts, tmp_path) -> Path:
    source = next(p for p in shared_funscripts if p.name == REAL)
    return Path(shutil.copy(source, tmp_path / "real.funscript"))


def tuned(script: Path, *options: str) -> Funscript:
    """tune SCRIPT --out SCRIPT's folder/tuned.funscript OPTIONS..., checked and read back."""
    out = script.parent / "tuned.funscript"
    run = run_cli("tune", script, "--out", out, *options)
    assert run.code == 0, run.err
    assert run.out.startswith(f"{out}: ") and "Traceback" not in run.err
    return read_funscript(out)


def test_nothing_asked_nothing_changed_on_every_shared_script(shared_funscripts, tmp_path):
    for source in shared_funscripts:
        original = read_funscript(source)
        folder = tmp_path / source.stem
        folder.mkdir()
        result = tuned(Path(shutil.copy(source, folder / source.name)), *KEEP_EVERYTHING)
        if original.at[0] < 0:  # written strictly: cut at 0 at the position the script has there
            later = original.at > 0
            at_zero = round(float(np.interp(0, original.at, original.pos)))
            original = original.copy_with(np.r_[0, original.at[later]], np.r_[at_zero, original.pos[later]])
        np.testing.assert_array_equal(result.at, original.at, err_msg=source.name)
        np.testing.assert_array_equal(result.pos, original.pos, err_msg=source.name)


def test_default_output_is_beside_the_script_with_notes_and_metadata_kept(real):
    original = json.loads(real.read_text())
    run = run_cli("tune", real)
    assert run.code == 0, run.err
    out = real.with_name("real.tuned.funscript")
    assert run.out.startswith(f"{out}: 611 -> ")
    data = json.loads(out.read_text())
    metadata = data["metadata"]
    for key in ("creator", "description", "license", "bookmarks", "chapters"):
        assert metadata[key] == original["metadata"][key]
    assert metadata["duration"] == 74  # 73 in the file, but its last action is at 73.28 s
    assert f"tuned by autofunscript {__version__} (range=(0, 100), max_speed=400.0, smooth_ms=0.0, simplify=2.0" \
        in metadata["notes"]
    assert sorted(os.listdir(real.parent)) == ["real.funscript", "real.tuned.funscript"]


def test_range_maps_positions_linearly(real):
    original = read_funscript(real)
    result = tuned(real, "--range", "20,80", *KEEP_EVERYTHING)
    np.testing.assert_array_equal(result.at, original.at)
    np.testing.assert_array_equal(result.pos, np.rint(20 + original.pos * 0.6))
    assert result.pos.min() >= 20 and result.pos.max() <= 80


def test_invert_flips_positions(real):
    original = read_funscript(real)
    result = tuned(real, "--invert", *KEEP_EVERYTHING)
    np.testing.assert_array_equal(result.at, original.at)
    np.testing.assert_array_equal(result.pos, 100 - original.pos)


def test_offset_shifts_times(real):
    original = read_funscript(real)
    result = tuned(real, "--offset", "150", *KEEP_EVERYTHING)
    np.testing.assert_array_equal(result.at, original.at + 150)
    np.testing.assert_array_equal(result.pos, original.pos)


def test_max_speed_caps_every_move_and_says_how_many(real):
    original = read_funscript(real)
    assert speeds(original.at, original.pos).max() > 400
    run = run_cli("tune", real, "--out", real.parent / "capped.funscript", "--max-speed", "200", "--simplify", "0")
    assert run.code == 0, run.err
    assert "segments slowed to 200 pos/s (fastest was 455)" in run.out
    result = read_funscript(real.parent / "capped.funscript")
    np.testing.assert_array_equal(result.at, original.at)
    assert speeds(result.at, result.pos).max() <= 200


def test_simplify_drops_only_points_near_the_line_and_keeps_timing(real):
    original = read_funscript(real)
    result = tuned(real, "--simplify", "10", "--max-speed", "0")
    assert len(result) < 0.9 * len(original)
    assert np.isin(result.at, original.at).all()  # kept points keep their exact time and position
    kept = np.isin(original.at, result.at)
    np.testing.assert_array_equal(result.pos, original.pos[kept])
    assert np.abs(result.sample(original.at) - original.pos).max() <= 10 + 1


def test_smooth_takes_the_edge_off(real):
    original = read_funscript(real)
    result = tuned(real, "--smooth", "80", "--max-speed", "0")
    grid = np.arange(original.at[0], original.at[-1], 10)

    def wiggle(script: Funscript) -> float:  # total distance travelled
        return float(np.abs(np.diff(script.sample(grid))).sum())

    assert wiggle(result) < 0.95 * wiggle(original)
    assert speeds(result.at, result.pos).max() < speeds(original.at, original.pos).max()
    assert np.corrcoef(result.sample(grid), original.sample(grid))[0, 1] > 0.8


def test_existing_output_needs_force(real):
    out = real.with_name("real.tuned.funscript")
    out.write_text("mine")
    before = set(os.listdir(real.parent))
    run = run_cli("tune", real)
    assert_refused(run, out, real.parent, before)
    assert "already exists (use --force to overwrite)" in run.err and out.read_text() == "mine"
    run = run_cli("tune", real, "--force")
    assert run.code == 0, run.err
    assert len(read_funscript(out)) > 100


BAD_SCRIPTS = {
    "malformed": b'{"actions": [{"at": 0, "pos": 10},',
    "empty": b"",
    "not_json": b"\x00\x01binary",
    "no_actions": b'{"version": "1.0"}',
}


@pytest.mark.parametrize("kind", [*sorted(BAD_SCRIPTS), "missing", "folder"])
def test_bad_script_is_one_error_line_and_writes_nothing(tmp_path, kind):
    script = tmp_path / f"{kind}.funscript"
    if kind == "folder":
        script.mkdir()
    elif kind != "missing":
        script.write_bytes(BAD_SCRIPTS[kind])
    before = set(os.listdir(tmp_path))
    run = run_cli("tune", script)
    assert_refused(run, script, tmp_path, before)
    assert run.out == ""


@pytest.mark.parametrize("out", ["nowhere/x.funscript", "folder"])
def test_impossible_output_is_refused(real, out):
    (real.parent / "folder").mkdir()
    target = real.parent / out
    before = set(os.listdir(real.parent))
    for force in ([], ["--force"]):
        assert_refused(run_cli("tune", real, "--out", target, *force), target, real.parent, before)


@pytest.mark.parametrize("option", [["--range", "50,50"], ["--range", "a,b"], ["--max-speed", "-5"],
                                    ["--smooth", "-1"], ["--simplify", "-1"], ["--smooth", "inf"],
                                    ["--smooth", "nan"], ["--max-speed", "nan"], ["--offset", "99999999999999"],
                                    ["--range", "20.5,80"]])
def test_bad_option_is_a_usage_error(real, option):
    before = set(os.listdir(real.parent))
    run = run_cli("tune", real, *option)
    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.splitlines()[-1].startswith("Error: Invalid value")
    assert set(os.listdir(real.parent)) == before
