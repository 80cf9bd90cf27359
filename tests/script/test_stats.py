"""Script summary figures on scripts whose answers are worked out by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autofunscript.script.funscript import Funscript, read_funscript
from autofunscript.script.stats import script_stats


def test_hand_made_script():
    script = Funscript(
        at=[0, 1000, 1100, 13100, 16100, 19100],
        # 100 pos/s, 1000 pos/s (fast), a 12 s gap, a 3 s hold, 10 pos/s (slow)
        pos=[0, 100, 0, 50, 50, 80],
    )
    stats = script_stats(script)
    assert stats.actions == 6
    assert (stats.first_s, stats.last_s, stats.duration_s) == (0.0, 19.1, 19.1)
    assert stats.moving_s == pytest.approx(4.1)
    assert stats.mean_speed == pytest.approx(230 / 4.1)
    assert stats.max_speed == pytest.approx(1000)
    assert stats.fast_segments == 1
    assert stats.fast_share == pytest.approx(0.1 / 4.1)
    assert stats.slow_share == pytest.approx(3.0 / 4.1)
    assert (stats.gaps, stats.longest_gap_s) == (1, 12.0)
    assert stats.strokes == 3  # trough 0, peak 100, trough 0, peak 80


def test_swing_below_the_minimum_is_not_a_stroke():
    script = Funscript(at=[0, 500, 1000, 1500], pos=[50, 55, 50, 55])
    assert script_stats(script).strokes == 0
    assert script_stats(script, min_swing=5).strokes == 3


def test_empty_and_single_action_scripts():
    for script in (Funscript(), Funscript(at=[500], pos=[30])):
        stats = script_stats(script)
        assert stats.strokes == stats.gaps == stats.fast_segments == 0
        assert stats.mean_speed == stats.max_speed == stats.fast_share == stats.slow_share == 0.0


def test_real_regular_fixture(shared_funscripts):
    stats = script_stats(read_funscript(next(f for f in shared_funscripts if f.name == "real_05.funscript")))
    assert stats.actions == 37 and stats.strokes == 36
    # 80-pos strokes: ten at 100 ms (800 pos/s), twenty at 200 ms (400, not above), six at 400 ms
    assert stats.mean_speed == pytest.approx(36 * 80 / 7.4) and stats.max_speed == pytest.approx(800)
    assert stats.fast_segments == 10 and stats.fast_share == pytest.approx(1.0 / 7.4)
    assert stats.slow_share == 0.0
    assert stats.gaps == 0


def test_check_command_lists_axes_and_reading_warnings(shared_funscripts, tmp_path):
    main = next(f for f in shared_funscripts if f.name == "real_12.funscript")
    unsorted = next(f for f in shared_funscripts if f.name == "real_14.funscript")
    result = subprocess.run([sys.executable, "-m", "autofunscript", "check", main, unsorted],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if ".funscript" in line]
    assert len(rows) == 5  # real_12 and its three axes, real_14
    assert any("[roll]" in row for row in rows)
    assert result.stderr.splitlines() == [f"warning: {unsorted}: actions were not in time order (sorted)"]
