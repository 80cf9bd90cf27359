"""Funscript I/O against the real shared files, odd layouts made here, and random action lists."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autofunscript.script.funscript import (
    MAX_ABS_AT_MS,
    Funscript,
    read_funscript,
    to_json_dict,
    write_funscript,
)


def _by_name(files: list[Path], name: str) -> Path:
    return next(f for f in files if f.name == name)


def _assert_strict_layout(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data)[:5] == ["actions", "version", "inverted", "range", "metadata"], path
    at = [a["at"] for a in data["actions"]]
    pos = [a["pos"] for a in data["actions"]]
    assert all(type(v) is int for v in at + pos), path
    assert all(a < b for a, b in zip(at, at[1:])), path
    assert all(0 <= p <= 100 for p in pos), path
    assert isinstance(data["version"], str) and isinstance(data["inverted"], bool)
    duration = data["metadata"]["duration"]
    assert type(duration) is int
    # seconds: never more than a second past the last action unless the source said so
    assert duration >= (at[-1] / 1000 if at else 0)


def test_every_shared_file_survives_two_write_read_cycles(shared_funscripts, tmp_path):
    for source in shared_funscripts:
        first = read_funscript(source)
        out1 = tmp_path / "one" / source.name
        out2 = tmp_path / "two" / source.name
        out1.parent.mkdir(exist_ok=True)
        out2.parent.mkdir(exist_ok=True)

        write_funscript(first, out1)
        _assert_strict_layout(out1)
        again = read_funscript(out1)
        assert np.array_equal(again.at, first.at) and np.array_equal(again.pos, first.pos), source.name
        assert again.extra == first.extra, source.name
        assert (again.version, again.inverted, again.range) == (first.version, first.inverted, first.range)
        assert again.duration_s == pytest.approx(math.ceil(first.duration_s)), source.name

        write_funscript(again, out2)
        assert read_funscript(out2) == again, source.name
        assert out2.read_bytes() == out1.read_bytes(), source.name


def test_duration_in_milliseconds_becomes_seconds(shared_funscripts, tmp_path):
    script = read_funscript(_by_name(shared_funscripts, "real_07.funscript"))
    assert script.duration_s == 149
    write_funscript(script, tmp_path / "out.funscript")
    assert json.loads((tmp_path / "out.funscript").read_text())["metadata"]["duration"] == 149



def test_duration_in_seconds_stays_seconds_when_the_actions_stop_early():
    """6 is more than 20 times a last action at 0.1 s, but read as 6 ms it would not reach that action."""
    early = Funscript(at=np.array([0, 100]), pos=np.array([0, 100]), metadata={"duration": 6})
    assert early.duration_s == 6
    in_ms = Funscript(at=np.array([0, 100]), pos=np.array([0, 100]), metadata={"duration": 6000})
    assert in_ms.duration_s == 6

def test_unsorted_actions_are_sorted(shared_funscripts, caplog):
    source = _by_name(shared_funscripts, "real_14.funscript")
    raw = json.loads(source.read_text())["actions"]
    script = read_funscript(source)
    assert np.all(np.diff(script.at) > 0)
    assert sorted(a["at"] for a in raw) == script.at.tolist()
    assert script.at[-1] == 2906083
    assert "not in time order" in caplog.text


def test_negative_times_kept_and_duplicates_dropped(shared_funscripts, caplog):
    source = _by_name(shared_funscripts, "real_16.funscript")
    raw = json.loads(source.read_text())["actions"]
    script = read_funscript(source)
    assert script.at[0] == -86399920
    assert len(script) == len({a["at"] for a in raw}) == len(raw) - 7
    assert np.all(np.diff(script.at) > 0)
    assert "3 actions before 0 s (kept as read" in caplog.text and "7 duplicate times dropped" in caplog.text



@pytest.mark.parametrize("times, message", [([0, 500, 500, 900], "1 duplicate times dropped"),
                                            ([0, 900, 500, 500], "actions sorted, 1 duplicate times dropped")])
def test_the_repair_message_says_only_what_was_done(tmp_path, caplog, times, message):
    path = tmp_path / "dup.funscript"
    path.write_text(json.dumps({"actions": [{"at": t, "pos": 50} for t in times]}))
    read_funscript(path)
    assert caplog.messages == [f"{path}: {message}"]

def test_integer_version_is_read_as_text(shared_funscripts, tmp_path):
    script = read_funscript(_by_name(shared_funscripts, "real_06.funscript"))
    assert script.version == "1.0"
    write_funscript(script, tmp_path / "out.funscript")
    assert json.loads((tmp_path / "out.funscript").read_text())["version"] == "1.0"


def test_extra_keys_are_kept(shared_funscripts, tmp_path):
    source = _by_name(shared_funscripts, "real_02.funscript")
    original = json.loads(source.read_text())
    write_funscript(read_funscript(source), tmp_path / "out.funscript")
    written = json.loads((tmp_path / "out.funscript").read_text())
    for key in ("rawActions", "bookmark", "simulatorPresets", "clips"):
        assert written[key] == original[key]
    assert written["range"] == 90


def test_sibling_axes_are_read_and_written_back(shared_funscripts, tmp_path):
    main = _by_name(shared_funscripts, "real_12.funscript")
    script = read_funscript(main, siblings=True)
    assert set(script.axes) == {"roll", "surge", "sway"}
    for axis, axis_script in script.axes.items():
        assert axis_script == read_funscript(main.with_name(f"real_12.{axis}.funscript"))
    assert read_funscript(main).axes == {}

    written = write_funscript(script, tmp_path / "copy.funscript")
    assert sorted(p.name for p in written) == sorted(p.name for p in tmp_path.iterdir()) == [
        "copy.funscript", "copy.roll.funscript", "copy.surge.funscript", "copy.sway.funscript"]
    again = read_funscript(tmp_path / "copy.funscript", siblings=True)
    for axis in script.axes:
        assert np.array_equal(again.axes[axis].at, script.axes[axis].at)
        assert np.array_equal(again.axes[axis].pos, script.axes[axis].pos)


def test_v11_axes_array_is_written_as_sibling_files(tmp_path):
    source = tmp_path / "multi.funscript"
    source.write_text(json.dumps({
        "version": "1.1",
        "actions": [{"at": 0, "pos": 0}, {"at": 500, "pos": 100}],
        "axes": [
            {"id": "R1", "actions": [{"at": 0, "pos": 40}, {"at": 700, "pos": 60}]},
            {"id": "L1", "actions": [{"at": 100, "pos": 10}, {"at": 300, "pos": 90}]},
        ],
    }))
    script = read_funscript(source)
    assert set(script.axes) == {"roll", "surge"}
    assert script.axes["roll"].pos.tolist() == [40, 60]

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    write_funscript(script, out_dir / "multi.funscript")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "multi.funscript", "multi.roll.funscript", "multi.surge.funscript"]
    assert "axes" not in json.loads((out_dir / "multi.funscript").read_text())
    surge = json.loads((out_dir / "multi.surge.funscript").read_text())
    assert surge["actions"] == [{"at": 100, "pos": 10}, {"at": 300, "pos": 90}]
    again = read_funscript(out_dir / "multi.funscript", siblings=True)
    assert again.axes["roll"].at.tolist() == [0, 700]


@pytest.mark.parametrize("text, message", [
    ('{"actions": [{"at": 0, "pos": 10},\n  {"at": 100, ', r"JSON cut off at line 2 \(the file ends too early\)"),
    ('{"actions": [{"at": 0 "pos": 10}]}', r"malformed JSON \(Expecting ',' delimiter at line 1 column 23\)"),
], ids=["cut off", "malformed"])
def test_a_broken_file_says_whether_it_was_cut_off_or_malformed(tmp_path, text, message):
    path = tmp_path / "broken.funscript"
    path.write_text(text)
    with pytest.raises(Exception, match=r"broken\.funscript: " + message):
        read_funscript(path)


def test_refuses_to_overwrite_any_target_without_force(tmp_path):
    script = Funscript(at=[0, 100], pos=[0, 100], axes={"roll": Funscript(at=[0], pos=[50])})
    (tmp_path / "s.roll.funscript").write_text("keep")
    with pytest.raises(Exception, match="already exists"):
        write_funscript(script, tmp_path / "s.funscript")
    assert not (tmp_path / "s.funscript").exists()
    assert (tmp_path / "s.roll.funscript").read_text() == "keep"
    write_funscript(script, tmp_path / "s.funscript", force=True)
    assert read_funscript(tmp_path / "s.roll.funscript").pos.tolist() == [50]


def test_replace_axes_overwrites_a_leftover_axis_but_not_a_main_script(tmp_path):
    """Batch's resume: an axis file without its main script is a leftover of a run that did not finish."""
    script = Funscript(at=[0, 100], pos=[0, 100], axes={"roll": Funscript(at=[0], pos=[50])})
    (tmp_path / "s.roll.funscript").write_text("leftover")
    write_funscript(script, tmp_path / "s.funscript", replace_axes=True)
    assert read_funscript(tmp_path / "s.roll.funscript").pos.tolist() == [50]
    with pytest.raises(Exception, match="s.funscript: already exists"):
        write_funscript(script, tmp_path / "s.funscript", replace_axes=True)



def test_a_full_disk_leaves_no_file_of_the_set_and_names_the_one_that_failed(tmp_path):
    """A limit on file size (RLIMIT_FSIZE, in a child process) makes writes fail as on a full disk. The large
    roll axis fails after the small pitch axis's temp file was written: nothing of the set may remain, no
    temp file either, or a main script would stand for a finished run without its axes."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        from autofunscript.script.funscript import Funscript, write_funscript
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        roll = Funscript(at=np.arange(0, 3_000_000, 100), pos=np.tile([0, 100], 15_000))
        pitch = Funscript(at=[0, 100], pos=[20, 80])  # written first (axes keep their order), then cleaned up
        script = Funscript(at=[0, 100], pos=[0, 100], axes={{"pitch": pitch, "roll": roll}})
        try:
            write_funscript(script, {str(tmp_path / "s.funscript")!r})
        except Exception as exc:
            print(type(exc).__name__, exc)
        """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.startswith("AutofunscriptError ") and "Traceback" not in run.stderr, run.stderr
    assert f"{tmp_path / 's.roll.funscript'}: cannot write (File too large)" in run.stdout
    assert list(tmp_path.iterdir()) == []

# ---- properties -------------------------------------------------------------------------------

_times = st.one_of(st.integers(-MAX_ABS_AT_MS, MAX_ABS_AT_MS),
                   st.floats(-MAX_ABS_AT_MS, MAX_ABS_AT_MS, allow_nan=False),
                   st.integers(0, 5000))  # small ints make duplicate times likely
_positions = st.one_of(st.integers(-300, 400), st.floats(-300, 400, allow_nan=False))
_actions = st.lists(st.tuples(_times, _positions), max_size=60)
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_normalised(script: Funscript) -> None:
    assert script.at.dtype == np.int64 and script.pos.dtype == np.int64
    assert np.all(np.diff(script.at) > 0)
    assert np.all((script.pos >= 0) & (script.pos <= 100))


@_settings
@given(actions=_actions)
def test_reading_any_action_list_gives_sorted_unique_ints(tmp_path, actions):
    path = tmp_path / "raw.funscript"
    path.write_text(json.dumps({"actions": [{"at": a, "pos": p} for a, p in actions]}))
    script = read_funscript(path)
    _assert_normalised(script)
    # the last written entry wins for a duplicate time, as in editors
    expected: dict[int, int] = {}
    for a, p in actions:
        expected[int(np.rint(a))] = int(np.clip(np.rint(p), 0, 100))
    assert dict(zip(script.at.tolist(), script.pos.tolist())) == expected


@_settings
@given(actions=_actions)
def test_write_read_write_is_byte_identical(tmp_path, actions):
    at = np.array([a for a, _ in actions], float)
    pos = np.array([p for _, p in actions], float)
    script = Funscript.from_samples(at, pos)
    first, second = tmp_path / "first.funscript", tmp_path / "second.funscript"
    write_funscript(script, first, force=True)
    again = read_funscript(first)
    _assert_normalised(again)
    assert np.array_equal(again.at, script.at) and np.array_equal(again.pos, script.pos)
    write_funscript(again, second, force=True)
    assert second.read_bytes() == first.read_bytes()
    assert json.loads(first.read_text()) == to_json_dict(again)


def test_written_scripts_get_the_usual_permissions(tmp_path):
    import os

    from autofunscript.script.funscript import Funscript, write_funscript

    target = tmp_path / "perm.funscript"
    write_funscript(Funscript(at=[0, 100], pos=[0, 100]), target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
