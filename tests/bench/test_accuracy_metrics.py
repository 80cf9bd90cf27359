"""The accuracy bench's own measures (bench/accuracy.py): the sub-frame reversal check and the playable reference."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from autofunscript.script.funscript import Funscript, write_funscript
from autofunscript.script.postprocess import speeds

_SPEC = importlib.util.spec_from_file_location(
    "accuracy_bench", Path(__file__).resolve().parents[2] / "bench" / "accuracy.py")
accuracy = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(accuracy)


def test_within_frame_of_subframe_counts_same_kind_reversals_within_one_frame(tmp_path):
    # reference turns at 1.010 s (peak), 2.020 s (trough), 3.030 s (peak); frames every 40 ms
    sidecar = tmp_path / "clip.json"
    sidecar.write_text(json.dumps({"frame_step_s": 0.04, "reversals": [
        {"kind": "peak", "t_s": 1.010}, {"kind": "trough", "t_s": 2.020}, {"kind": "peak", "t_s": 3.030}]}))
    script = tmp_path / "clip.funscript"
    # peak 30 ms off (in), trough 50 ms off (out), last peak 10 ms off (in); a trough right at 3.03 s must
    # not count for the peak there
    write_funscript(Funscript(at=np.array([0, 1040, 2070, 3040, 3500]), pos=np.array([50, 100, 0, 100, 0])),
                    script)
    assert accuracy.within_frame_of_subframe(script, sidecar) == 2 / 3
    assert accuracy.within_frame_of_subframe(script, tmp_path / "missing.json") is None


def test_playable_reference_keeps_to_the_device_speed_limit():
    at = np.arange(0, 5000, 100)  # 0-100 strokes every 100 ms: 1000 pos/s
    fast = Funscript(at=at, pos=np.where(np.arange(at.size) % 2, 100, 0))
    limited = accuracy.playable(fast)
    assert speeds(fast.at, fast.pos).max() == 1000
    assert speeds(limited.at, limited.pos).max() <= 400 + 1e-9
    slow = Funscript(at=np.arange(0, 5000, 500), pos=np.where(np.arange(10) % 2, 100, 0))
    assert np.array_equal(accuracy.playable(slow).pos, slow.pos)


def test_counts_compare_the_referenced_kind_of_turn_and_leave_out_the_ends(tmp_path):
    sidecar = tmp_path / "clip.json"
    sidecar.write_text(json.dumps({"count": 4, "count_of": "troughs", "count_name": "push-ups",
                                   "secondary": {"steps": 5}}))
    script = tmp_path / "clip.funscript"
    # starts and ends low: those ends are not push-ups; two interior troughs, three interior peaks
    write_funscript(Funscript(at=np.arange(0, 7000, 1000), pos=np.array([0, 100, 10, 90, 5, 95, 20])), script)
    assert accuracy.counts(script, sidecar) == {"count": 2, "count_ref": 4, "count_name": "push-ups",
                                                "steps": 2, "steps_ref": 5}
    peaks = tmp_path / "peaks.json"
    peaks.write_text(json.dumps({"count": 3, "count_of": "peaks", "count_name": "swings"}))
    assert accuracy.counts(script, peaks) == {"count": 3, "count_ref": 3, "count_name": "swings"}
    assert accuracy.counts(script, tmp_path / "missing.json") == {}
