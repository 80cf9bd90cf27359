"""Batch generation over real small clips: discovery, skipping, failures, Ctrl+C, engines and reports."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from autofunscript import cli
from autofunscript.batch import (FAILED, INTERRUPTED, SKIPPED, WRITTEN, BatchResult, VideoOutcome, find_videos,
                                 plan_jobs, run_batch, run_jobs, write_report)
from autofunscript.pipeline import GenerateOptions
from autofunscript.script.funscript import read_funscript

GOOD_CLIPS = ("alpha.mp4", "beta.mp4", "gamma.mp4")
OPTIONS = GenerateOptions(axes=("roll",))


def make_clip(path: Path, seconds: float = 2.5, period_s: float = 0.8, seed: int = 0, fps: int = 25) -> Path:
    """A textured block stroking up and down over a textured background, 160x120 H.264."""
    rng = np.random.default_rng(seed)
    width, height, side = 160, 120, 40
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    block = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            image = background.copy()
            top = round(height / 2 - side / 2 + 30 * np.sin(2 * np.pi * i / fps / period_s))
            image[top:top + side, 60:60 + side] = block
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 2000, 16000)) * 0.3).astype(np.float32)[None, :]
        for chunk in np.array_split(samples, 16, axis=1):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            frame.rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(GOOD_CLIPS):
        make_clip(folder / name, period_s=0.6 + 0.2 * seed, seed=seed)
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(9).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    make_audio_only(folder / "sound.mp4")
    return folder


def run_main(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The real console entry point, in-process: exit code, stdout, stderr."""
    argv = sys.argv
    sys.argv = ["autofunscript", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and content, hidden files included."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One CLI batch over 3 good clips, a corrupt file and an audio-only file, with an HTML report."""
    folder = make_folder(tmp_path_factory.mktemp("batch") / "videos")
    report = folder.parent / "report.html"
    result = subprocess.run([sys.executable, "-m", "autofunscript", "batch", str(folder), "--workers", "2",
                             "--axes", "roll", "--report", str(report)], capture_output=True, text=True, timeout=300)
    return {"folder": folder, "report": report, "proc": result}


# --- discovery -----------------------------------------------------------------------------------------


def test_find_videos_is_sorted_skips_hidden_and_non_videos_and_recurses_on_request(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MKV", "c.webm", "notes.txt", "a.funscript", ".hidden.mp4",
                 "sub/d.mov", "sub/deeper/e.avi", ".cache/f.mp4", "sub/.g.wmv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = lambda videos: [str(v.relative_to(tmp_path)) for v in videos]  # noqa: E731
    assert names(find_videos([tmp_path])) == ["a.MKV", "b.mp4", "c.webm"]
    assert names(find_videos([tmp_path], recursive=True)) == ["a.MKV", "b.mp4", "c.webm", "sub/d.mov",
                                                               "sub/deeper/e.avi"]
    # a named file comes first, once, even though the folder also holds it
    assert names(find_videos([tmp_path / "c.webm", tmp_path])) == ["c.webm", "a.MKV", "b.mp4"]


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symlinks")
def test_a_symlink_under_another_name_gets_its_own_script_and_one_video_reached_twice_is_done_once(
        first_run: dict, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(first_run["folder"] / "alpha.mp4", folder / "alpha.mp4")
    (folder / "nice name.mp4").symlink_to("alpha.mp4")
    (tmp_path / "shortcut").symlink_to(folder)
    videos = find_videos([folder / "alpha.mp4", tmp_path / "shortcut", folder])
    assert videos == [folder / "alpha.mp4", tmp_path / "shortcut" / "nice name.mp4"]
    result = run_batch(videos, OPTIONS, workers=2)
    assert [o.status for o in result.outcomes] == [WRITTEN, WRITTEN]
    assert _scripts_of(folder)["nice name.funscript"] == _scripts_of(folder)["alpha.funscript"]


def test_find_videos_refuses_a_missing_path_and_skips_named_funscripts(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from autofunscript.errors import AutofunscriptError

    with pytest.raises(AutofunscriptError, match="nothing-here: no such file or folder"):
        find_videos([tmp_path / "nothing-here"])
    (tmp_path / "clip.funscript").write_text("{}")
    (tmp_path / "clip.roll.funscript").write_text("{}")
    assert find_videos([tmp_path / "clip.funscript", tmp_path / "clip.roll.funscript"]) == []
    assert "clip.funscript: a funscript, not a video; skipped" in caplog.text
    assert "clip.roll.funscript: a funscript, not a video; skipped" in caplog.text


def test_transport_streams_are_found_and_named_files_are_tried_whatever_their_extension(tmp_path: Path) -> None:
    for name in ("broadcast.ts", "camcorder.MTS", "bluray.m2ts"):
        make_clip(tmp_path / name)
    shutil.copy(tmp_path / "broadcast.ts", tmp_path / "download.bin")
    (tmp_path / "notes.txt").write_text("not a video")
    videos = find_videos([tmp_path, tmp_path / "download.bin", tmp_path / "notes.txt"])
    assert [v.name for v in videos] == ["bluray.m2ts", "broadcast.ts", "camcorder.MTS", "download.bin", "notes.txt"]
    result = run_batch(videos, OPTIONS, workers=2)
    assert [o.status for o in result.outcomes] == [WRITTEN] * 4 + [FAILED]
    assert result.failed[0].error.startswith(f"{tmp_path / 'notes.txt'}: not a video")
    assert len(read_funscript(tmp_path / "download.funscript")) > 10


# --- the CLI over good and broken files ---------------------------------------------------------------


def test_batch_writes_good_scripts_reports_broken_files_and_exits_non_zero(first_run: dict) -> None:
    folder, proc = first_run["folder"], first_run["proc"]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for name in GOOD_CLIPS:
        script = read_funscript(folder / name.replace(".mp4", ".funscript"))
        assert len(script) > 10 and script.pos.max() - script.pos.min() > 40
        assert len(read_funscript(folder / name.replace(".mp4", ".roll.funscript"))) > 1
    assert not (folder / "corrupt.funscript").exists() and not (folder / "sound.funscript").exists()
    assert re.search(r"^failed +.*corrupt\.mp4: ", proc.stdout, re.M)
    assert re.search(r"^failed +.*sound\.mp4: ", proc.stdout, re.M)
    assert "5 videos: 3 written, 2 failed" in proc.stdout
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_scripts_match_what_generate_writes(first_run: dict, tmp_path: Path, capsys) -> None:
    video = shutil.copy(first_run["folder"] / "beta.mp4", tmp_path / "beta.mp4")
    assert run_main("generate", video, "--axes", "roll", capsys=capsys)[0] == 0
    for suffix in (".funscript", ".roll.funscript"):
        alone = read_funscript(tmp_path / f"beta{suffix}")
        batched = read_funscript(first_run["folder"] / f"beta{suffix}")
        assert np.array_equal(alone.at, batched.at) and np.array_equal(alone.pos, batched.pos)


def test_html_report_lists_every_video_with_status_and_embedded_heatmaps(first_run: dict) -> None:
    page = first_run["report"].read_text()
    for name in GOOD_CLIPS:
        assert re.search(rf">{re.escape(name)}<.*?class=\"written\">written<", page)
    for name in ("corrupt.mp4", "sound.mp4"):
        assert re.search(rf">{re.escape(name)}<.*?class=\"failed\">failed<.*?class=\"error\">[^<]*{name}", page)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(GOOD_CLIPS)
    heatmap = cv2.imdecode(np.frombuffer(base64.b64decode(images[0]), np.uint8), cv2.IMREAD_COLOR)
    assert heatmap.shape == (72, 400, 3) and heatmap.std() > 10


def test_rerun_skips_finished_videos_and_writes_a_json_report(first_run: dict, capsys) -> None:
    folder = first_run["folder"]
    before = snapshot(folder)
    report = folder.parent / "again.json"
    code, out, err = run_main("batch", folder, "--skip-existing", "--report", report, capsys=capsys)
    assert code == 1  # the broken files are still broken
    assert snapshot(folder) == before
    assert "5 videos: 0 written, 3 skipped, 2 failed" in out
    data = json.loads(report.read_text())
    assert data["counts"] == {"written": 0, "skipped": 3, "failed": 2, "interrupted": 0}
    by_name = {Path(v["video"]).name: v for v in data["videos"]}
    assert list(by_name) == ["alpha.mp4", "beta.mp4", "corrupt.mp4", "gamma.mp4", "sound.mp4"]
    for name in GOOD_CLIPS:
        video = by_name[name]
        assert video["status"] == SKIPPED and video["script"] == str(folder / name.replace(".mp4", ".funscript"))
        assert video["strokes"] >= 4 and video["actions"] > 10
    assert by_name["corrupt.mp4"]["status"] == FAILED and "corrupt.mp4" in by_name["corrupt.mp4"]["error"]
    assert data["settings"]["post"]["max_speed"] == 400.0


def test_report_warns_about_flat_and_too_fast_scripts(tmp_path: Path) -> None:
    flat = {"actions": [{"at": 0, "pos": 50}, {"at": 5000, "pos": 50}]}
    fast = {"actions": [{"at": t, "pos": 0 if i % 2 else 100} for i, t in enumerate(range(0, 4000, 100))]}
    for name, script in (("flat", flat), ("fast", fast)):
        (tmp_path / f"{name}.mp4").write_bytes(b"not decoded: the video is skipped")
        (tmp_path / f"{name}.funscript").write_text(json.dumps(script))
    result = run_batch(find_videos([tmp_path]))
    assert result.workers == 0 and [o.status for o in result.outcomes] == [SKIPPED, SKIPPED]
    write_report(result, OPTIONS, tmp_path / "report.json")
    videos = {Path(v["video"]).stem: v for v in json.loads((tmp_path / "report.json").read_text())["videos"]}
    assert videos["flat"]["warnings"] == ["no strokes: the script barely moves"]
    assert videos["fast"]["strokes"] == 39 and videos["fast"]["max_speed"] == 1000.0
    assert videos["fast"]["warnings"] == ["39 segments faster than 400 pos/s (fastest 1000)"]


def test_report_points_out_a_second_rhythmic_motion(tmp_path: Path) -> None:
    from test_pipeline import SIZE, Block, cfr_times, eased, encode, render, stroke_plan

    times = cfr_times(4.0)
    blocks = [Block(80, eased(times, *stroke_plan(4.0, seed=1)), seed=3),
              Block(240, eased(times, *stroke_plan(4.0, seed=2, min_s=1.0, max_s=1.4)), seed=4)]
    video = encode(tmp_path / "two.mp4", render(SIZE, blocks), times)
    result = run_batch([video], workers=1)
    assert [o.status for o in result.outcomes] == [WRITTEN]
    assert any(w.startswith("another motion with a rhythm of its own") and "--poi 0." in w
               for w in result.outcomes[0].warnings), result.outcomes[0].warnings


def test_force_regenerates_and_a_folder_of_finished_videos_exits_zero(first_run: dict, tmp_path: Path,
                                                                      capsys) -> None:
    for name in GOOD_CLIPS[:2]:
        shutil.copy(first_run["folder"] / name, tmp_path / name)
    (tmp_path / "alpha.funscript").write_text('{"actions": [{"at": 0, "pos": 0}, {"at": 500, "pos": 100}]}')
    code, out, _ = run_main("batch", tmp_path, "--workers", "1", capsys=capsys)
    assert code == 0 and "2 videos: 1 written, 1 skipped, 0 failed" in out
    assert len(read_funscript(tmp_path / "alpha.funscript")) == 2  # kept: it may be a hand-edited script
    code, out, _ = run_main("batch", tmp_path, "--workers", "1", "--force", capsys=capsys)
    assert code == 0 and "2 videos: 2 written, 0 failed" in out
    assert len(read_funscript(tmp_path / "alpha.funscript")) > 10


@pytest.mark.parametrize("args, message", [
    (["--engine", "local", "--address", "127.0.0.1:1"], "--address needs a cluster engine"),
    (["--report", "out.txt"], "out.txt: the report is JSON or HTML"),
    (["--report", "missing/report.json"], "folder missing does not exist"),
])
def test_bad_batch_arguments_are_one_line_errors(first_run: dict, args: list[str], message: str, capsys) -> None:
    code, out, err = run_main("batch", first_run["folder"], *args, capsys=capsys)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("engine, extra", [("ray", "autofunscript[ray]"), ("dask", "autofunscript[dask]")])
def test_a_cluster_engine_without_its_package_names_the_extra(first_run: dict, engine: str, extra: str,
                                                              monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, engine if engine == "ray" else "distributed", None)  # as if not installed
    code, _, err = run_main("batch", first_run["folder"], "--force", "--engine", engine, capsys=capsys)
    assert code == 2 and err.startswith("error: ") and extra in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in first_run["folder"].glob("*.funscript")) == sorted(
        name.replace(".mp4", suffix) for name in GOOD_CLIPS for suffix in (".funscript", ".roll.funscript"))


def test_a_folder_without_videos_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run_main("batch", tmp_path, capsys=capsys)
    assert code == 2 and "no videos found" in err and "--recursive" in err


def test_two_videos_with_one_script_name_fail_instead_of_overwriting(tmp_path: Path) -> None:
    make_clip(tmp_path / "same.mp4")
    shutil.copy(tmp_path / "same.mp4", tmp_path / "same.mkv")
    result = run_batch(find_videos([tmp_path]), workers=1)
    statuses = {o.video.name: o.status for o in result.outcomes}
    assert statuses == {"same.mkv": WRITTEN, "same.mp4": FAILED}
    assert "same.funscript is also same.mkv's" in result.failed[0].error


class _KillsTheWorker:
    """Unpickling this in a worker ends the worker process at once, as a decoder crash would."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_worker_that_dies_fails_only_its_own_video(first_run: dict, tmp_path: Path) -> None:
    for name in GOOD_CLIPS:
        shutil.copy(first_run["folder"] / name, tmp_path / name)
    jobs, decided = plan_jobs(find_videos([tmp_path]), OPTIONS, force=False)
    assert not decided
    jobs[1] = replace(jobs[1], options=_KillsTheWorker())
    outcomes, stop_signal, _ = run_jobs(jobs, workers=2)
    assert stop_signal == 0
    assert [outcomes[i].status for i in range(3)] == [WRITTEN, FAILED, WRITTEN]
    assert "beta.mp4: the worker process died (exit code 3)" in outcomes[1].error
    assert sorted(p.name for p in tmp_path.glob("*.funscript")) == [
        "alpha.funscript", "alpha.roll.funscript", "gamma.funscript", "gamma.roll.funscript"]


# --- Ctrl+C --------------------------------------------------------------------------------------------


class _InterruptAfterFirst:
    """A listener that presses Ctrl+C (in the driver) as soon as the first video is written."""

    def __init__(self) -> None:
        self.finished_outcomes: list[VideoOutcome] = []

    def started(self, jobs, workers) -> None:
        pass

    def progress(self, job, done_s, total_s) -> None:
        pass

    def finished(self, outcome: VideoOutcome) -> None:
        self.finished_outcomes.append(outcome)
        if outcome.status == WRITTEN and sum(o.status == WRITTEN for o in self.finished_outcomes) == 1:
            raise KeyboardInterrupt


def test_interrupt_keeps_finished_scripts_writes_nothing_half_and_a_rerun_completes(tmp_path: Path) -> None:
    for i in range(4):
        make_clip(tmp_path / f"clip{i}.mp4", seconds=2.0 + i, seed=i)
    videos = find_videos([tmp_path])
    result: BatchResult = run_batch(videos, workers=1, listener=_InterruptAfterFirst())
    assert result.interrupted
    statuses = [o.status for o in result.outcomes]
    # one worker: the first video is done, the last one cannot have started; one between may have finished
    assert statuses[0] == WRITTEN and statuses[-1] == INTERRUPTED and set(statuses) == {WRITTEN, INTERRUPTED}
    written = [o.script.name for o in result.outcomes if o.status == WRITTEN]
    assert sorted(p.name for p in tmp_path.glob("*.funscript")) == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    rerun = run_batch(videos, workers=2)
    assert [o.status for o in rerun.outcomes] == [SKIPPED if s == WRITTEN else WRITTEN for s in statuses]


def _session_processes(session: int) -> list[int]:
    """Pids of the live processes in a session (zombies excluded), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _session_ends(session: int, within_s: float) -> bool:
    """Whether every process of the session is gone within `within_s` (the fork server takes a moment)."""
    deadline = time.monotonic() + within_s
    while _session_processes(session):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("signum, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143),
                                                    (signal.SIGTERM, True, 143)])
def test_ctrl_c_or_sigterm_stops_the_workers_and_leaves_only_whole_scripts(tmp_path: Path, signum: int,
                                                                           to_group: bool, code: int) -> None:
    for i in range(4):
        make_clip(tmp_path / f"clip{i}.mp4", seconds=6.0, seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "autofunscript", "batch", str(tmp_path), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()  # the first finished video; the second worker is busy with another
        assert first.startswith("written "), first + proc.stderr.read()
        # a terminal's Ctrl+C and a service manager's stop reach the whole group; `kill PID` only the batch
        os.killpg(proc.pid, signum) if to_group else os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
        # less than a video's time: a worker left running would still be at it, and write its script later
        assert _session_ends(proc.pid, within_s=1.0), "worker processes outlived the batch"
    finally:
        if proc.poll() is None or _session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err + out and err == ""
    assert "interrupted" in out
    scripts = sorted(tmp_path.glob("*.funscript"))
    assert 1 <= len(scripts) < 4
    for script in scripts:
        assert len(read_funscript(script)) > 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- cluster engines -----------------------------------------------------------------------------------


def _scripts_of(folder: Path) -> dict[str, tuple[list[int], list[int]]]:
    return {p.name: (read_funscript(p).at.tolist(), read_funscript(p).pos.tolist())
            for p in sorted(folder.glob("*.funscript"))}


def test_dask_cluster_engine_writes_the_same_scripts(first_run: dict, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    for name in (*GOOD_CLIPS, "corrupt.mp4"):
        shutil.copy(first_run["folder"] / name, tmp_path / name)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        result = run_batch(find_videos([tmp_path]), OPTIONS, engine="dask", address=cluster.scheduler_address)
    assert result.workers == 2
    assert [o.status for o in result.outcomes] == [WRITTEN, WRITTEN, FAILED, WRITTEN]
    assert _scripts_of(tmp_path) == _scripts_of(first_run["folder"])


@pytest.mark.slow
def test_ray_engine_on_a_local_cluster_writes_the_same_scripts(first_run: dict, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    # Not alpha: Ray runs tasks with OMP_NUM_THREADS=1, and the pipeline's script for alpha changes with the
    # BLAS thread count (a pipeline issue, seen with `OMP_NUM_THREADS=1 autofunscript generate` too).
    for name in GOOD_CLIPS[1:]:
        shutil.copy(first_run["folder"] / name, tmp_path / name)
    result = run_batch(find_videos([tmp_path]), OPTIONS, engine="ray", workers=2)
    assert [o.status for o in result.outcomes] == [WRITTEN, WRITTEN]
    expected = {k: v for k, v in _scripts_of(first_run["folder"]).items() if k.split(".")[0] in ("beta", "gamma")}
    assert _scripts_of(tmp_path) == expected


@pytest.fixture()
def workerless_scheduler():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_a_dask_scheduler_without_workers_is_an_error_not_a_hang(first_run: dict, workerless_scheduler: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from autofunscript import batch
    from autofunscript.errors import AutofunscriptError

    monkeypatch.setattr(batch, "NO_WORKERS_TIMEOUT_S", 2.0)
    started = time.monotonic()
    with pytest.raises(AutofunscriptError, match=f"{workerless_scheduler}: the Dask scheduler has had no workers"):
        run_batch(find_videos([first_run["folder"] / "alpha.mp4"]), OPTIONS, engine="dask",
                  address=workerless_scheduler, force=True)
    assert time.monotonic() - started < 10


def test_ctrl_c_stops_at_once_on_a_dask_scheduler_without_workers(first_run: dict, tmp_path: Path,
                                                                 workerless_scheduler: str) -> None:
    import threading

    for name in GOOD_CLIPS:
        shutil.copy(first_run["folder"] / name, tmp_path / name)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # the batch loop takes it as Ctrl+C
    started = time.monotonic()
    result = run_batch(find_videos([tmp_path]), OPTIONS, engine="dask", address=workerless_scheduler)
    assert result.stop_signal == signal.SIGINT and time.monotonic() - started < 10
    assert [o.status for o in result.outcomes] == [INTERRUPTED] * 3 and not list(tmp_path.glob("*.funscript"))


@pytest.mark.parametrize("address, message", [("bogus", "missing port number"), ("http://x", "unknown address scheme")])
def test_a_bad_dask_address_is_a_one_line_error(first_run: dict, address: str, message: str, capsys) -> None:
    pytest.importorskip("distributed")
    code, _, err = run_main("batch", first_run["folder"], "--engine", "dask", "--address", address, capsys=capsys)
    assert code == 2 and err.startswith(f"error: {address}: cannot reach the Dask scheduler") and message in err
    assert len(err.splitlines()) == 1


def test_warnings_logged_by_generate_land_in_the_videos_outcome(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mkv", seconds=6.0).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(full[:len(full) * 6 // 10])  # Matroska keeps its 6 s header
    (tmp_path / "full.mkv").unlink()
    make_clip(tmp_path / "whole.mkv")
    result = run_batch(find_videos([tmp_path]), OPTIONS, workers=2)  # each in a worker process
    cut, whole = result.outcomes
    assert cut.status == WRITTEN and whole.status == WRITTEN
    assert any(re.fullmatch(rf"{re.escape(str(cut.video))}: decoding stopped at [\d.]+ s of 6.00 s .*", w)
               for w in cut.warnings), cut.warnings
    assert not any("decoding stopped" in w for w in whole.warnings)


@pytest.mark.parametrize("report, message", [
    ("taken", "taken: is a folder; give the report file's name"),
    ("a-file/report.json", "a-file/report.json: {tmp}/a-file is a file, not a folder"),
    ("notes.html", "notes.html: exists and is not a batch report; choose another name"),
])
def test_a_bad_report_path_is_refused_before_any_video_starts(tmp_path: Path, report: str, message: str,
                                                              capsys) -> None:
    make_clip(tmp_path / "clip.mp4")
    (tmp_path / "taken").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "notes.html").write_text("<html>someone's own page</html>")
    code, _, err = run_main("batch", tmp_path, "--report", tmp_path / report, capsys=capsys)
    assert code == 2 and err == f"error: {tmp_path}/{message.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "clip.funscript").exists()
    assert (tmp_path / "notes.html").read_text() == "<html>someone's own page</html>"


def test_an_earlier_report_is_replaced(first_run: dict, tmp_path: Path, capsys) -> None:
    shutil.copy(first_run["folder"] / "alpha.mp4", tmp_path / "alpha.mp4")
    shutil.copy(first_run["folder"] / "alpha.funscript", tmp_path / "alpha.funscript")
    shutil.copy(first_run["report"], tmp_path / "earlier.html")
    for report in (tmp_path / "report.json", tmp_path / "earlier.html"):
        before = report.read_text() if report.exists() else None
        for _ in range(2):
            code, out, err = run_main("batch", tmp_path, "--report", report, capsys=capsys)
            assert code == 0 and "1 video: 0 written, 1 skipped, 0 failed" in out and f"report: {report}" in out, err
        assert report.read_text() != before and "alpha.mp4" in report.read_text()


@pytest.mark.parametrize("folder_name", ["clip.funscript", "clip.roll.funscript"])
def test_a_folder_where_a_script_goes_fails_that_video_with_a_clear_message(first_run: dict, tmp_path: Path,
                                                                            folder_name: str) -> None:
    shutil.copy(first_run["folder"] / "alpha.mp4", tmp_path / "clip.mp4")
    (tmp_path / folder_name).mkdir()
    for force in (False, True):
        result = run_batch(find_videos([tmp_path]), OPTIONS, workers=1, force=force)
        (outcome,) = result.outcomes
        assert outcome.status == FAILED and outcome.error == (
            f"{tmp_path / 'clip.mp4'}: a folder is where its script goes ({tmp_path / folder_name}); "
            "move or rename the folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["clip.mp4", folder_name])


def test_a_rerun_with_other_settings_says_which_skipped_scripts_were_made_otherwise(first_run: dict, tmp_path: Path,
                                                                                    capsys) -> None:
    folder = first_run["folder"]
    code, out, _ = run_main("batch", folder, "--axes", "roll", capsys=capsys)  # the first run's settings
    assert code == 1 and "note:" not in out
    code, out, _ = run_main("batch", folder, "--axes", "roll", "--max-speed", "300", capsys=capsys)
    assert code == 1 and "note: 3 skipped scripts made with other settings than this run's; --force regenerates" in out
    jobs, decided = plan_jobs([folder / "alpha.mp4", folder / "beta.mp4"], OPTIONS, force=False)
    assert not jobs and [o.warnings for o in decided.values()] == [[], []]
    (tmp_path / "hand.mp4").write_bytes(b"x")  # a hand-made script has no settings to compare
    (tmp_path / "hand.funscript").write_text('{"actions": [], "metadata": {"notes": "my own"}}')
    assert plan_jobs([tmp_path / "hand.mp4"], replace(OPTIONS, axes=()), force=False)[1][0].warnings == []

