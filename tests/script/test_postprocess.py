import numpy as np
import pytest

from autofunscript.errors import AutofunscriptError
from autofunscript.script.extrema import find_reversals
from autofunscript.script.postprocess import (
    PostSettings,
    _own_extremes,
    _picture_interval,
    drop_quick_wiggles,
    finish,
    limit_speed,
    local_normalise,
    monotone_between,
    robust_normalise,
    soft_clip,
    speeds,
    stroke_normalise,
    to_actions,
    tune,
)


def sine(freq=1.0, seconds=10.0, fps=30.0, amp=40.0, centre=50.0):
    t = np.arange(0, seconds, 1 / fps) * 1000.0
    return t, centre + amp * np.sin(2 * np.pi * freq * t / 1000.0)


def test_find_reversals_ignores_jitter_below_swing():
    t, x = sine()
    noisy = x + np.random.default_rng(1).normal(0, 1.5, x.size)
    rev = find_reversals(noisy, min_swing=10)
    # 10 s at 1 Hz: 10 peaks and 10 troughs, plus both ends (each 10+ away from its neighbour)
    assert len(rev) == 22
    assert np.all(rev.kind[1:] != rev.kind[:-1])


def test_to_actions_keeps_every_reversal_within_a_frame():
    t, x = sine(freq=2.5)
    at, pos = to_actions(t, x, PostSettings())
    true_peaks = (np.arange(25) + 0.25) / 2.5 * 1000.0
    peaks = at[pos >= 89]
    assert len(peaks) == 25
    assert np.abs(peaks - true_peaks).max() <= 34


def test_centred_turns_time_a_noisy_pendulum_within_a_frame():
    # a slow swing whose turns fall between frames, tracked with a little noise: the highest sample of
    # a nearly flat turn is picked by the noise, the middle between its flanks is not
    fps, period_s = 30.0, 1.6
    t = np.arange(0, 20, 1 / fps) * 1000.0
    phase = 0.37  # of a frame: no turn lands on a frame
    x = 50 + 45 * np.cos(2 * np.pi * (t / 1000.0 - phase / fps) / period_s)
    x += np.random.default_rng(3).normal(0, 0.6, x.size)
    true_peaks = (np.arange(1, 13) * period_s + phase / fps) * 1000.0  # the first one is the clip's start

    def peak_errors(centre_turns):
        at, pos = to_actions(t, x, PostSettings(), centre_turns=centre_turns)
        assert np.all(np.diff(at) > 0)
        rev = find_reversals(pos.astype(float), 10)
        peaks = at[rev.index[rev.kind == 1]][1:]
        assert len(peaks) == true_peaks.size
        return np.abs(peaks - true_peaks)

    plain, centred = peak_errors(False), peak_errors(True)
    frame_ms = 1000.0 / fps
    assert np.mean(plain > frame_ms / 2) > 0.3  # the noise does move the highest sample
    assert centred.max() < frame_ms / 2
    assert centred.mean() < 0.5 * plain.mean()


@pytest.mark.parametrize("seed", range(4))
def test_centred_turns_are_not_read_early_from_a_flat_rounded_top(seed):
    # a slow swing fitted to the full range: its tips sit in soft_clip's knee, where a few frames round to
    # the same position as the turn, and a reader of the script takes the first action of a flat top
    fps, period_s, phase = 30.0, 1.6, 0.37
    t = np.arange(0, 20, 1 / fps) * 1000.0
    u = 0.5 + 0.5 * np.cos(2 * np.pi * (t / 1000.0 - phase / fps) / period_s)
    x = 100 * soft_clip(u) + np.random.default_rng(seed).normal(0, 0.3, t.size)
    true_peaks = (np.arange(1, 13) * period_s + phase / fps) * 1000.0
    at, pos = to_actions(t, x, PostSettings(), centre_turns=True)
    rev = find_reversals(pos.astype(float), 10)
    peaks = at[rev.index[rev.kind == 1]][1:]
    assert len(peaks) == true_peaks.size
    assert np.abs(peaks - true_peaks).max() < 1000.0 / fps / 2


def test_a_flat_bottom_is_read_where_its_turn_is_centred():
    # a pendulum's flat trough whose least sample is two frames late: centring moves the turn back to the
    # middle, up to the kept point where the flat begins, which rounds to the same position; a reader takes the
    # first action of a flat, so that point goes (it was measured from the late sample, 4 frames away, and kept)
    fps, period_s = 30.0, 1.6
    frame_ms = 1000.0 / fps
    t = np.arange(int(10 * fps)) * frame_ms
    x = 50 - 48 * np.cos(2 * np.pi * t / 1000.0 / period_s)  # troughs every 48 frames
    troughs = np.arange(48, t.size - 30, 48)
    for k in troughs:
        x[k - 2 : k + 3] = [2.2, 2.2, 2.2, 2.2, 2.0]
    at, pos = to_actions(t, x, PostSettings(), centre_turns=True)
    rev = find_reversals(pos.astype(float), 10)
    found = at[rev.index[rev.kind == -1]][1:-1]  # the first and last are the clip's ends
    assert np.abs(found - troughs * frame_ms).max() < frame_ms / 2


def test_picture_interval_counts_repeated_frames_once():
    # turn centring may move a turn two pictures; a 25 fps picture stored at 50 fps repeats every frame
    rng = np.random.default_rng(2)
    t50 = np.arange(0, 10, 1 / 50.0) * 1000.0
    picture = 50 + 45 * np.cos(2 * np.pi * np.floor(t50 / 40.0) * 40.0 / 2000.0)
    repeated = picture + np.repeat(rng.normal(0, 0.8, t50.size // 2), 2) + rng.normal(0, 0.02, t50.size)
    assert _picture_interval(t50, repeated) == pytest.approx(40.0, rel=0.05)
    t30 = np.arange(0, 10, 1 / 30.0) * 1000.0
    moving = 50 + 45 * np.cos(2 * np.pi * t30 / 2000.0) + rng.normal(0, 0.8, t30.size)
    assert _picture_interval(t30, moving) == pytest.approx(1000.0 / 30.0)
    still = 50 + rng.normal(0, 0.8, t30.size)  # nothing but noise: no pattern of repeats either
    assert _picture_interval(t30, still) == pytest.approx(1000.0 / 30.0)


def test_centred_turns_leave_fast_strokes_and_sharp_symmetric_turns_alone():
    fps = 30.0
    t = np.arange(0, 10, 1 / fps) * 1000.0
    fast = 50 + 40 * np.sin(2 * np.pi * 2.5 * t / 1000.0 + 0.3)  # turns 6 frames apart
    assert np.array_equal(to_actions(t, fast, PostSettings())[0], to_actions(t, fast, PostSettings(), True)[0])
    # a slow triangle wave with its corners on frames: the middle between the flanks is the corner
    triangle = 50 + 40 * (4 * np.abs((t / 2000.0) % 1 - 0.5) - 1)
    at, pos = to_actions(t, triangle, PostSettings(), centre_turns=True)
    rev = find_reversals(pos.astype(float), 10)
    corners = at[rev.index][1:-1]  # the ends are the clip's
    assert len(corners) == 9 and np.abs(corners - np.rint(corners / 1000.0) * 1000.0).max() <= 1


def _direction_changes(pos: np.ndarray) -> int:
    moves = np.sign(np.diff(pos.astype(float)))
    moves = moves[moves != 0]
    return int((moves[1:] != moves[:-1]).sum())


def test_monotone_actions_flatten_wiggles_on_holds_and_keep_every_reversal():
    # strokes with holds at the top and bottom, where a tracker's pixel steps wiggle by a few positions
    fps = 30.0
    t = np.arange(0, 12, 1 / fps) * 1000.0
    phase = (t / 1000.0) % 3.0  # 1 s up, 0.5 s hold at the top, 1 s down, 0.5 s hold at the bottom
    x = np.select([phase < 1, phase < 1.5, phase < 2.5], [10 + 80 * phase, 90, 90 - 80 * (phase - 1.5)], 10.0)
    held = (phase >= 1) & (phase < 1.5) | (phase >= 2.5)
    x = x + np.where(held, 2.5 * np.sign(np.sin(2 * np.pi * t / 200.0)), 0.0)  # +-2.5 every 100 ms on holds
    _, plain_pos = to_actions(t, x, PostSettings())
    at, pos = to_actions(t, x, PostSettings(), monotone=True)
    found = find_reversals(x, PostSettings().min_swing).index
    turns = found[(found > 0) & (found < x.size - 1)]  # the clip's ends are not turns
    assert turns.size == 8
    # without the fit the holds buzz: direction changes on top of the strokes' turns
    assert _direction_changes(plain_pos) > 2 * turns.size
    # with it only the strokes' turns are left, each at its own time and level
    assert _direction_changes(pos) == turns.size
    for index in turns:
        assert np.rint(x[index]) in pos[at == np.rint(t[index])]
    assert pos.size < plain_pos.size


def test_monotone_actions_keep_turns_too_quick_to_be_reversals():
    # 60 fps strokes turning every 50 ms (under min_interval_ms): dropped as reversals, yet they are strokes,
    # not wiggles, and keep their shape (the same actions as without the fit)
    t = np.arange(0, 2, 1 / 60) * 1000.0
    x = 50 + 30 * np.abs(((t / 100.0) % 1.0) * 2 - 1)
    assert PostSettings().min_interval_ms > 50
    plain_at, plain_pos = to_actions(t, x, PostSettings())
    at, pos = to_actions(t, x, PostSettings(), monotone=True)
    assert _direction_changes(pos) >= 35
    assert np.array_equal(at, plain_at) and np.array_equal(pos, plain_pos)


def test_monotone_between_is_the_closest_one_way_fit_and_keeps_the_anchors():
    x = np.array([10.0, 30.0, 25.0, 40.0, 38.0, 42.0, 90.0, 60.0, 65.0, 20.0])
    fitted = monotone_between(x, [0, 6, 9])
    assert np.all(np.diff(fitted[:7]) >= 0) and np.all(np.diff(fitted[6:]) <= 0)
    assert fitted[[0, 6, 9]].tolist() == [10.0, 90.0, 20.0]
    # each wiggle becomes the mean of what it pooled: the least change that makes the stretch one-way
    assert fitted[1] == fitted[2] == 27.5 and fitted[3] == fitted[4] == 39.0 and fitted[7] == fitted[8] == 62.5


def test_existing_scripts_keep_their_small_moves():
    # tune simplifies a hand-made script without flattening it: a vibration of 4 positions on a hold stays
    at = np.arange(0, 2000, 100, dtype=np.int64)
    pos = np.array([0, 100, 50, 54, 50, 54, 50, 54, 50, 54, 50, 54, 50, 100, 0, 100, 0, 100, 0, 100])
    _, tuned_pos, _ = tune(at, pos, PostSettings(max_speed=0))
    assert _direction_changes(tuned_pos) == _direction_changes(pos)


@pytest.mark.parametrize("monotone", [False, True])
def test_to_actions_keeps_a_lone_sample_and_nothing(monotone):
    at, pos = to_actions(np.array([1000.4]), np.array([120.0]), PostSettings(), centre_turns=True, monotone=monotone)
    assert at.tolist() == [1000] and pos.tolist() == [100]
    at, pos = to_actions(np.zeros(0), np.zeros(0), PostSettings(), monotone=monotone)
    assert at.size == 0 and pos.size == 0 and at.dtype == pos.dtype == np.int64


def test_to_actions_simplifies_straight_lines():
    t = np.arange(0, 2000, 10.0)
    x = np.interp(t, [0, 1000, 2000], [0, 100, 0])
    at, pos = to_actions(t, x, PostSettings(simplify=1.0))
    assert at.tolist() == [0, 1000, 1990]


def test_robust_normalise_uses_full_range_despite_outliers():
    x = np.concatenate([np.sin(np.linspace(0, 20, 1000)) * 3, [50.0]])
    y = robust_normalise(x, 0, 100)
    assert y.min() < 3 and y.max() <= 100
    assert np.percentile(y, 90) > 80


def test_range_fitting_keeps_overshooting_tips_at_their_time():
    # strokes of changing depth: the deep ones overshoot the fitted range; a hard clip would flatten
    # their tips and the reversal would be read where the flat top starts, early
    t = np.arange(0, 12, 1 / 30)
    raw = (1 + 0.5 * (np.arange(t.size) // 60 % 2)) * np.sin(2 * np.pi * 0.5 * t)
    y = local_normalise(raw, 0, 100, 90)
    assert 0 <= y.min() and y.max() <= 100 and np.ptp(y) > 95
    true_tips = find_reversals(raw, 10 * np.ptp(raw) / 100).index
    fitted_tips = find_reversals(y, 10).index
    assert fitted_tips.size == true_tips.size
    assert np.abs(fitted_tips - true_tips).max() <= 1


def test_local_normalise_gives_full_strokes_through_a_zoom_and_a_drifting_level():
    t = np.arange(0, 30, 1 / 30)
    depth = np.linspace(20, 40, t.size)  # the camera zooms in: strokes grow twofold in pixels
    raw = 3 * t + depth * np.sin(2 * np.pi * 1.2 * t)  # and the tracker's level wanders
    for y in (local_normalise(raw, 0, 100, 90), local_normalise(raw, 10, 90, 90)):
        lo, hi = y.min(), y.max()
        for part in np.array_split(y, 6):  # every 5 s uses (nearly) the whole range
            assert part.min() < lo + 20 and part.max() > hi - 20
    assert np.ptp(robust_normalise(raw, 0, 100)[:150]) < 60  # one range for the window: the start is shallow


def test_local_normalise_keeps_pauses_and_lone_excursions_small():
    t = np.arange(0, 30, 1 / 30)
    raw = 20 * np.sin(2 * np.pi * t)
    raw[300:600] = 0.3 * np.sin(2 * np.pi * 7 * t[300:600])  # 10 s pause with sub-pixel jitter
    raw[750] = 200  # one frame of a lost match
    y = local_normalise(raw, 0, 100, 90)
    assert np.abs(y[300:600] - 50).max() < 15  # the pause is not blown up into strokes
    strokes = y[800:]
    assert strokes.min() < 10 and strokes.max() > 90  # the excursion did not squash the strokes after it


def test_stroke_normalise_follows_a_wandering_level_stroke_by_stroke_and_keeps_a_hold_at_the_top():
    t = np.arange(0, 30, 1 / 30)
    # 1.5 Hz strokes on a level that wanders more than their depth; 4-8 s the subject holds at the top
    phase = 2 * np.pi * 1.5 * np.where(t < 4, t, np.where(t < 8, 4, t - 4))
    raw = 40 * np.sin(2 * np.pi * t / 24) + 30 * np.cos(phase)
    y = stroke_normalise(raw, 0, 100, 60)
    tips = find_reversals(y, 10)
    inner = (tips.index > 0) & (tips.index < t.size - 1)
    assert y[tips.index[inner & (tips.kind > 0)]].min() > 90
    assert y[tips.index[inner & (tips.kind < 0)]].max() < 10
    assert y[(t > 4.2) & (t < 7.8)].min() > 90
    running = local_normalise(raw, 0, 100, 90)  # a 3 s running range lags the wander
    tips = find_reversals(running, 10)
    assert running[tips.index[tips.kind < 0]].max() > 15


def test_stroke_normalise_keeps_pauses_and_shallow_strokes_small():
    t = np.arange(0, 30, 1 / 30)
    raw = 20 * np.sin(2 * np.pi * t)
    raw[300:600] = 0.3 * np.sin(2 * np.pi * 7 * t[300:600])  # 10 s pause with sub-pixel jitter
    raw[690:750] *= 0.2  # two strokes a fifth as deep as the others
    y = stroke_normalise(raw, 0, 100, 90)
    assert np.abs(y[300:600] - 50).max() < 15
    assert y[727] - y[712] < 50  # trough to peak of the middle shallow swing
    assert y[800:].min() < 10 and y[800:].max() > 90


def test_stroke_envelopes_pass_through_the_signals_own_tips():
    t = np.arange(0, 20, 1 / 30)
    raw = 30 * np.cos(2 * np.pi * 0.5 * t)
    on_a_copy = find_reversals(raw + 12 * t, 5)  # a copy whose level moves turns a few frames off the tips
    own = find_reversals(raw, 5)
    assert on_a_copy.index.size == own.index.size and not np.array_equal(on_a_copy.index, own.index)
    assert np.array_equal(_own_extremes(raw, on_a_copy), own.index)


def test_limit_speed_enforces_bound_and_keeps_centre():
    at = np.arange(0, 2000, 100)
    pos = np.tile([0, 100], 10)
    limited, changed = limit_speed(at, pos, 400.0)
    assert changed == 19
    assert speeds(at, limited).max() <= 400.0
    assert abs(limited.mean() - 50) < 3


def test_limit_speed_keeps_the_shape_of_fast_irregular_strokes():
    # a turn every 2-3 frames at 30 fps, depths from 40 to 100: up to 3x what a device can do
    rng = np.random.default_rng(3)
    n = 400
    at = np.rint(np.cumsum(rng.integers(2, 4, n)) * 100 / 3).astype(np.int64)
    pos = np.rint(np.where(np.arange(n) % 2 == 0, rng.uniform(0, 30, n), rng.uniform(70, 100, n))).astype(np.int64)
    limited, changed = limit_speed(at, pos, 400.0)
    assert changed > 0 and speeds(at, limited).max() <= 400.0
    # each stroke keeps its direction and the deeper strokes stay the deeper ones (pairwise pulling and
    # a forward clamp alone scramble them: correlation about -0.2 here)
    assert np.corrcoef(limited, pos)[0, 1] > 0.9
    assert np.all(np.sign(np.diff(limited)) == np.sign(np.diff(pos)))
    assert abs(limited.mean() - pos.mean()) < 3


def test_limit_speed_leaves_slow_scripts_alone():
    at = np.arange(0, 5000, 500)
    pos = np.tile([20, 80], 5)
    limited, changed = limit_speed(at, pos, 400.0)
    assert changed == 0 and limited.tolist() == pos.tolist()


def test_drop_quick_wiggles_keeps_alternation():
    t = np.arange(0, 1000, 10.0)
    idx = np.array([0, 30, 33, 60, 90])
    kept = drop_quick_wiggles(t, idx, 60)
    assert kept.tolist() == [0, 60, 90]


def test_a_negative_offset_cuts_the_script_at_zero():
    at = np.array([0, 400, 800, 1200])
    pos = np.array([0, 100, 0, 100])
    at2, pos2, report = finish(at, pos, PostSettings(offset_ms=-600, max_speed=0))
    assert at2.tolist() == [0, 200, 600] and pos2.tolist() == [50, 0, 100]
    assert report.notes == ["2 actions before 0 s cut at 0 (players reject negative times)"]
    with pytest.raises(AutofunscriptError, match=r"every action is before 0 s with an offset of -5000 ms "
                                                 r"\(the last at -3.8 s\)"):
        finish(at, pos, PostSettings(offset_ms=-5000, max_speed=0))
    # just short of 0 is told in ms, not as "-0.0 s"
    with pytest.raises(AutofunscriptError, match=r"\(the last at -1 ms\)"):
        finish(at, pos, PostSettings(offset_ms=-1201, max_speed=0))
    _, _, report = finish(at, pos, PostSettings(offset_ms=-200, max_speed=0))
    assert report.notes == ["1 action before 0 s cut at 0 (players reject negative times)"]


def test_times_read_before_zero_are_cut_at_zero_without_an_offset():
    """A script read with negative times (tolerated on reading) is written strictly: nothing before 0."""
    at2, pos2, report = finish(np.array([-1000, -500, 500, 1000]), np.array([0, 100, 0, 100]),
                               PostSettings(max_speed=0))
    assert at2.tolist() == [0, 500, 1000] and pos2.tolist() == [50, 0, 100]
    assert report.notes == ["2 actions before 0 s cut at 0 (players reject negative times)"]


def test_finish_inverts_and_offsets():
    at = np.array([0, 500, 1000])
    pos = np.array([0, 100, 0])
    at2, pos2, report = finish(at, pos, PostSettings(invert=True, offset_ms=250, max_speed=0))
    assert at2.tolist() == [250, 750, 1250]
    assert pos2.tolist() == [100, 0, 100]
    assert report.speed_limited_segments == 0


@pytest.mark.parametrize("lo,hi", [(10, 90), (30, 70), (90, 10)])
def test_tune_rescales_range(lo, hi):
    at = np.arange(0, 4000, 250)
    pos = np.tile([0, 100], 8)
    _, pos2, _ = tune(at, pos, PostSettings(range=(lo, hi), max_speed=0))
    assert {int(pos2.min()), int(pos2.max())} == {min(lo, hi), max(lo, hi)}


def test_tune_smoothing_keeps_stroke_count():
    at = np.arange(0, 10000, 250)
    pos = np.tile([5, 95], 20)
    at2, pos2, _ = tune(at, pos, PostSettings(smooth_ms=40, max_speed=0))
    assert len(find_reversals(pos2, 20)) == len(find_reversals(pos, 20))
