"""Evaluation metrics on scripts whose relation to the reference is known by construction."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from autofunscript.script.evaluate import evaluate
from autofunscript.script.funscript import Funscript, read_funscript, write_funscript


def stroking(seed: int = 1, strokes: int = 120) -> Funscript:
    """Irregular strokes: varying tempo and depth, so no shift but the true one lines them up."""
    rng = np.random.default_rng(seed)
    at = 1000 + np.cumsum(rng.uniform(250, 700, strokes))
    pos = np.where(np.arange(strokes) % 2 == 0, rng.uniform(0, 35, strokes), rng.uniform(65, 100, strokes))
    return Funscript.from_samples(at, pos)


def test_script_against_itself_is_perfect():
    ref = stroking()
    result = evaluate(ref, ref)
    assert result.extrema_f1 == 1.0 and result.mae == 0.0 and result.rmse == 0.0
    assert result.shift_ms == 0 and not result.inverted
    assert result.pearson == pytest.approx(1.0)
    assert result.coverage == 1.0
    assert result.tiers.frame == result.reversals_ref == len(ref)
    assert result.strokes_ref == result.strokes_pred == len(ref) - 1
    assert result.amplitude_error == 0.0


@pytest.mark.parametrize("lag_ms", [200, -340, 990])
def test_constant_lag_is_found_and_aligned_away(lag_ms):
    ref = stroking(seed=2)
    late = ref.copy_with(ref.at + lag_ms, ref.pos)
    result = evaluate(late, ref)
    assert abs(result.shift_ms - lag_ms) <= 20
    assert result.extrema_f1 == 1.0
    assert result.pearson > 0.99 and not result.inverted


def test_inverted_copy_is_flagged_and_scored_after_flipping():
    ref = stroking(seed=3)
    result = evaluate(ref.copy_with(ref.at, 100 - ref.pos), ref)
    assert result.inverted
    assert result.pearson_signed == pytest.approx(-1.0) and result.pearson == pytest.approx(1.0)
    assert result.mae == 0.0 and result.extrema_f1 == 1.0


def test_flat_and_jittering_predictions_score_badly():
    ref = stroking(seed=4)
    flat = Funscript(at=[ref.at[0], ref.at[-1]], pos=[50, 50])
    rng = np.random.default_rng(0)
    jitter = Funscript(at=ref.at, pos=50 + rng.integers(-4, 5, len(ref)))  # below the 10-pos swing
    for pred in (flat, jitter):
        result = evaluate(pred, ref)
        assert result.extrema_f1 < 0.2
        assert result.pearson < 0.3 and not result.inverted
        assert result.mae > 10
        assert result.amplitude_error < -40
        assert result.tiers.miss == result.reversals_ref


def test_half_coverage_halves_recall_but_not_precision():
    ref = stroking(seed=5, strokes=200)
    middle = (ref.at[0] + ref.at[-1]) / 2
    keep = ref.at <= middle
    result = evaluate(ref.copy_with(ref.at[keep], ref.pos[keep]), ref)
    assert result.extrema_recall == pytest.approx(0.5, abs=0.05)
    assert result.extrema_precision == 1.0
    assert result.coverage == pytest.approx(0.5, abs=0.05)
    assert result.mae == 0.0  # scored only where the prediction exists


def test_tiers_bucket_each_reference_reversal_once():
    at = np.arange(40) * 500 + 1000
    pos = np.where(np.arange(40) % 2 == 0, 20, 80)
    ref = Funscript(at=at, pos=pos)
    pred_at, pred_pos = at.copy(), pos.copy()
    pred_at[10] += 10  # frame: within a frame at 30 fps, pos exact
    pred_at[11] += 50  # close: < 66 ms
    pred_pos[12] += 10  # near: pos off by 10
    pred_at[13] += 90
    pred_pos[13] += 20  # miss: pos off by 20
    result = evaluate(Funscript(at=pred_at, pos=pred_pos), ref)
    assert result.shift_ms == 0
    assert (result.tiers.frame, result.tiers.close, result.tiers.near, result.tiers.miss) == (37, 1, 1, 1)
    # at 10 fps a frame is 100 ms, so the 50 ms reversal is a frame hit too
    assert evaluate(Funscript(at=pred_at, pos=pred_pos), ref, fps=10).tiers.frame == 38
    assert result.extrema_f1 == 1.0  # all within the 100 ms matching tolerance
    assert result.to_dict()["tiers"]["near"] == {"count": 1, "share": 0.025}


def test_matching_is_one_to_one_and_kind_aware():
    ref = Funscript(at=[0, 1000, 2000], pos=[0, 100, 0])
    # two peaks near the one reference peak: only one may match; the extra one costs precision
    pred = Funscript(at=[0, 960, 1000, 1040, 2000], pos=[0, 100, 60, 100, 0])
    result = evaluate(pred, ref, min_swing=30)
    assert result.reversals_ref == 3 and result.reversals_pred == 5
    assert result.reversals_matched == 3
    assert result.extrema_precision == pytest.approx(3 / 5)
    assert result.extrema_recall == 1.0


def test_shallow_fast_prediction_reports_amplitude_and_speed():
    ref = stroking(seed=6)
    shallow = ref.copy_with(ref.at, 50 + (ref.pos - 50) // 2)
    result = evaluate(shallow, ref)
    ref_amp = np.median(np.abs(np.diff(ref.pos)))
    assert result.amplitude_error == pytest.approx(-ref_amp / 2, abs=1.5)
    assert result.speed_violations == 0

    spiky = Funscript(at=[0, 100, 200, 1200], pos=[0, 100, 0, 100])  # two 1000 pos/s moves, one at 100
    spiky_result = evaluate(spiky, spiky)
    assert spiky_result.speed_violations == 2
    assert spiky_result.speed_violation_share == pytest.approx(200 / 1200)
    assert spiky_result.strokes_ref == 3


def test_empty_scripts_follow_the_zero_over_zero_rules():
    empty, ref = Funscript(), stroking(seed=7)
    both = evaluate(empty, empty)
    assert both.extrema_f1 == both.extrema_precision == both.extrema_recall == 1.0
    assert both.mae is None and both.pearson is None
    one = evaluate(empty, ref)
    assert one.extrema_f1 == one.extrema_recall == one.extrema_precision == 0.0
    assert one.coverage == 0.0 and one.mae is None
    assert evaluate(ref, empty).extrema_f1 == 0.0


def test_to_dict_is_plain_json():
    data = evaluate(stroking(seed=8), stroking(seed=9)).to_dict()
    assert json.loads(json.dumps(data)) == data
    for key in ("mae", "rmse", "pearson", "shift_ms", "inverted", "extrema_precision", "extrema_recall",
                "extrema_f1", "strokes_ref", "strokes_pred", "amplitude_error", "tiers"):
        assert key in data
    assert sum(t["count"] for t in data["tiers"].values()) == data["reversals_ref"]


def test_real_script_lagged_and_inverted(shared_funscripts):
    ref = read_funscript(next(f for f in shared_funscripts if f.name == "real_01.funscript"))
    pred = ref.copy_with(ref.at + 300, 100 - ref.pos)
    result = evaluate(pred, ref)
    assert result.shift_ms == 300 and result.inverted
    assert result.extrema_f1 == 1.0 and result.mae == 0.0


def test_evaluate_command_json_and_table(tmp_path):
    ref = stroking(seed=10)
    write_funscript(ref, tmp_path / "ref.funscript")
    write_funscript(ref.copy_with(ref.at + 100, ref.pos), tmp_path / "pred.funscript")
    command = [sys.executable, "-m", "autofunscript", "evaluate", "pred.funscript", "ref.funscript"]
    as_json = subprocess.run([*command, "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0 and as_json.stderr == ""
    data = json.loads(as_json.stdout)  # exactly one object: anything else fails to parse
    assert data["shift_ms"] == 100 and data["extrema_f1"] == 1.0 and data["inverted"] is False
    assert data["tiers"]["frame"]["share"] == 1.0

    table = subprocess.run([*command, "--fps", "60", "--min-swing", "20"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert table.returncode == 0
    assert "+100 ms (prediction late)" in table.stdout and "extrema F1" in table.stdout


def test_evaluate_command_refuses_a_reference_with_no_span_but_scores_an_empty_prediction(tmp_path):
    (tmp_path / "one.funscript").write_text('{"actions":[{"at":500,"pos":50}]}')
    write_funscript(stroking(seed=11), tmp_path / "ref.funscript")
    command = [sys.executable, "-m", "autofunscript", "evaluate"]
    refused = subprocess.run([*command, "ref.funscript", "one.funscript"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == "error: one.funscript: 1 action, no span of time to score against"
    scored = subprocess.run([*command, "one.funscript", "ref.funscript", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0 and json.loads(scored.stdout)["extrema_f1"] == 0.0


def test_times_before_zero_are_not_scored():
    """A wrapped timestamp days before 0 would stretch the scoring grid over those days (gigabytes)."""
    ref = stroking(seed=12)
    early = Funscript(at=np.concatenate([[-800_000_000, -400_000_000], ref.at]),
                      pos=np.concatenate([[0, ref.pos[0]], ref.pos]))  # flat into the first action
    result = evaluate(early, early)
    assert result.mae == 0.0 and result.extrema_f1 == 1.0 and result.coverage == 1.0
    played = Funscript(at=np.concatenate([[0], ref.at]), pos=np.concatenate([[ref.pos[0]], ref.pos]))
    assert evaluate(early, played).to_dict() == evaluate(played, played).to_dict()
