"""Bad input through the real CLI: one `error:` line naming the file, non-zero exit, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = {"actions": [{"at": 0, "pos": 10}, {"at": 400, "pos": 90}, {"at": 800, "pos": 10}, {"at": 1200, "pos": 90}]}

BAD_INPUTS: dict[str, bytes | None] = {
    "malformed_json": b'{"actions": [{"at": 0, "pos": 10},',
    "missing_actions": b'{"version": "1.0", "inverted": false}',
    "actions_is_dict": b'{"actions": {"at": 0, "pos": 10}}',
    "pos_is_string": b'{"actions": [{"at": 0, "pos": "10"}]}',
    "absurd_time": b'{"actions": [{"at": 0, "pos": 10}, {"at": 1e15, "pos": 90}]}',
    "not_a_number": b'{"actions": [{"at": NaN, "pos": 10}]}',
    "top_level_list": b'[{"at": 0, "pos": 10}]',
    "deeply_nested": b'{"actions": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "empty_file": b"",
    "non_utf8": b'{"actions": [], "title": "\xff\xfe\xfa"}',
    "directory": None,
    "missing_file": None,
}


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autofunscript", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def assert_one_error_line(result: subprocess.CompletedProcess[str], names: Path) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and str(names) in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "good.funscript").write_text(json.dumps(GOOD))
    (tmp_path / "out").mkdir()
    return tmp_path


def make_bad(workdir: Path, kind: str) -> Path:
    path = workdir / f"{kind}.funscript"
    content = BAD_INPUTS[kind]
    if kind == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_script_is_one_error_line_in_every_command(workdir, kind):
    bad = make_bad(workdir, kind)
    good = workdir / "good.funscript"
    out = workdir / "out"
    commands = [
        ["check", bad],
        ["heatmap", bad, "--out", out / "heat.png"],
        ["evaluate", bad, good],
        ["evaluate", good, bad, "--json"],
    ]
    for args in commands:
        result = run_cli(*args, cwd=workdir)
        assert_one_error_line(result, bad)
        assert result.stdout == "", args
    assert list(out.iterdir()) == []


def test_check_reports_good_files_but_fails_for_a_bad_one(workdir):
    bad = make_bad(workdir, "pos_is_string")
    result = run_cli("check", "good.funscript", bad, cwd=workdir)
    assert_one_error_line(result, bad)
    assert "good.funscript" in result.stdout


def test_check_warns_of_a_script_a_device_cannot_play(workdir):
    (workdir / "empty.funscript").write_text('{"actions": []}')
    (workdir / "one.funscript").write_text('{"actions": [{"at": 0, "pos": 50}]}')
    result = run_cli("check", "empty.funscript", "one.funscript", "good.funscript", cwd=workdir)
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["warning: empty.funscript: no actions",
                                          "warning: one.funscript: a single action"]


def _unwritable_targets(workdir: Path) -> list[Path]:
    (workdir / "a_file").write_text("not a folder")
    return [workdir / "a_file" / "heat.png", workdir / "no_such_folder" / "heat.png"]


def test_heatmap_into_unwritable_place(workdir):
    before = sorted(workdir.rglob("*"))
    for target in _unwritable_targets(workdir):
        result = run_cli("heatmap", "good.funscript", "--out", target, cwd=workdir)
        assert_one_error_line(result, target)
    assert sorted(workdir.rglob("*")) == sorted([*before, workdir / "a_file"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_heatmap_into_read_only_folder(workdir):
    locked = workdir / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = run_cli("heatmap", "good.funscript", "--out", locked / "heat.png", cwd=workdir)
        assert_one_error_line(result, locked / "heat.png")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_heatmap_keeps_existing_output_without_force(workdir):
    target = workdir / "out" / "heat.png"
    target.write_bytes(b"precious")
    result = run_cli("heatmap", "good.funscript", "--out", target, cwd=workdir)
    assert_one_error_line(result, target)
    assert "--force" in result.stderr
    assert target.read_bytes() == b"precious"
    assert [p.name for p in target.parent.iterdir()] == ["heat.png"]

    forced = run_cli("heatmap", "good.funscript", "--out", target, "--force", cwd=workdir)
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in target.parent.iterdir()] == ["heat.png"]
