"""`autofunscript synth` through the real CLI: outputs, one-line errors, no partial files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REF = {"actions": [{"at": 0, "pos": 0}, {"at": 400, "pos": 100}, {"at": 900, "pos": 10}, {"at": 1300, "pos": 90},
                   {"at": 2000, "pos": 0}]}


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autofunscript", "synth", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def ref(tmp_path: Path) -> Path:
    path = tmp_path / "ref.funscript"
    path.write_text(json.dumps(REF))
    return path


def test_writes_clip_truth_and_sidecar(tmp_path: Path, ref: Path) -> None:
    result = run_cli("--script", ref, "--out", "clip.mp4", "--size", "128x72", "--preset", "medium", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "60 frames" in result.stdout
    truth = json.loads((tmp_path / "clip.funscript").read_text())
    assert [a["at"] for a in truth["actions"][:3]] == [0, 33, 67]
    assert truth["actions"][0]["pos"] == 0 and max(a["pos"] for a in truth["actions"]) == 100
    sidecar = json.loads((tmp_path / "clip.synth.json").read_text())
    assert sidecar["frame_count"] == 60 and sidecar["size"] == [128, 72]
    assert (tmp_path / "clip.mp4").stat().st_size > 1000


BAD = {
    "malformed": '{"actions": [{"at": 0, "pos": 10},',
    "one_action": '{"actions": [{"at": 0, "pos": 10}]}',
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_reference_is_one_error_line(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind}.funscript"
    bad.write_text(BAD[kind])
    result = run_cli("--script", bad, "--out", "clip.mp4", "--size", "128x72", cwd=tmp_path)
    assert_refused(result, tmp_path, str(bad))


def test_start_beyond_the_script_is_refused(tmp_path: Path, ref: Path) -> None:
    result = run_cli("--script", ref, "--out", "clip.mp4", "--start", "5", cwd=tmp_path)
    assert_refused(result, tmp_path, "start 5 s is outside the script")


def test_bad_size_and_preset_are_refused(tmp_path: Path, ref: Path) -> None:
    assert_refused(run_cli("--script", ref, "--out", "clip.mp4", "--size", "641x360", cwd=tmp_path), tmp_path,
                   "641x360")
    assert_refused(run_cli("--script", ref, "--out", "clip.mp4", "--preset", "nightmare", cwd=tmp_path), tmp_path,
                   "nightmare")
    # the wrong name is told first, not the missing folder it would have gone to
    assert_refused(run_cli("--script", ref, "--out", "missing/clip.mp4", "--preset", "nightmare", cwd=tmp_path),
                   tmp_path, "unknown synth preset 'nightmare'")


def test_negative_seed_is_a_usage_error(tmp_path: Path, ref: Path) -> None:
    result = run_cli("--script", ref, "--out", "clip.mp4", "--seed", "-1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value for '--seed'" in result.stderr and not list(tmp_path.glob("clip*"))


def assert_refused(result: subprocess.CompletedProcess[str], folder: Path, names: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and names in lines[0], result.stderr
    assert not list(folder.glob("clip*")) and not list(folder.glob(".clip*"))


def test_existing_output_needs_force(tmp_path: Path, ref: Path) -> None:
    (tmp_path / "clip.funscript").write_text("keep me")
    args = ("--script", ref, "--out", "clip.mp4", "--size", "64x36", "--duration", "0.5")
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert (tmp_path / "clip.funscript").read_text() == "keep me" and not (tmp_path / "clip.mp4").exists()
    forced = run_cli(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / "clip.funscript").read_text())["actions"]


def test_truth_may_not_replace_the_reference(tmp_path: Path) -> None:
    ref = tmp_path / "clip.funscript"
    ref.write_text(json.dumps(REF))
    result = run_cli("--script", ref, "--out", "clip.mp4", "--force", cwd=tmp_path)
    assert result.returncode == 2 and "overwrite the reference" in result.stderr
    assert json.loads(ref.read_text()) == REF


def test_ctrl_c_leaves_no_partial_file(tmp_path: Path) -> None:
    ref = tmp_path / "long.funscript"
    ref.write_text(json.dumps({"actions": [{"at": 0, "pos": 0}, {"at": 600_000, "pos": 100}]}))
    proc = subprocess.Popen([sys.executable, "-m", "autofunscript", "synth", "--script", str(ref), "--out",
                             "clip.mp4", "--preset", "hard"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".clip.mp4.*")) or not any(p.stat().st_size for p in tmp_path.glob(".clip.mp4.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "render did not start writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.funscript"]
