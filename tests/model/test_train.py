"""Training: data checks with clear errors, feature cache, a tiny model that learns, exact ONNX export."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from autofunscript.errors import AutofunscriptError  # noqa: E402
from autofunscript.model.card import ModelConfig  # noqa: E402
from autofunscript.model.train import (  # noqa: E402
    TrainSettings, eye_from_name, find_pairs, load_clip, load_corpus, make_chunks, train, train_folder)
from autofunscript.script.funscript import Funscript, write_funscript  # noqa: E402

TINY = ModelConfig(context_s=2.0, width=16, integrator=4)


def test_pairs_and_vr_names(tiny_corpus: Path):
    pairs = find_pairs(tiny_corpus)
    assert [p.video.name for p in pairs] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert all(p.script == p.video.with_suffix(".funscript") for p in pairs)
    assert eye_from_name("scene_180_LR.mp4") == "sbs" and eye_from_name("x_TB.mkv") == "ou"
    assert eye_from_name("clip0.mp4") is None and eye_from_name("lrp.mp4") is None


def test_video_without_script_is_named(tiny_corpus: Path, tmp_path: Path):
    shutil.copy(tiny_corpus / "clip0.mp4", tmp_path / "lonely.mp4")
    with pytest.raises(AutofunscriptError, match=r"lonely\.mp4: no lonely\.funscript beside it"):
        find_pairs(tmp_path)
    with pytest.raises(AutofunscriptError, match="missing: not a folder"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutofunscriptError, match="empty: no videos"):
        find_pairs(tmp_path / "empty")


def test_script_much_shorter_than_video(tiny_corpus: Path, tmp_path: Path):
    shutil.copy(tiny_corpus / "clip0.mp4", tmp_path / "short.mp4")
    write_funscript(Funscript(at=np.array([0, 1000, 2000]), pos=np.array([0, 100, 0])), tmp_path / "short.funscript")
    with pytest.raises(AutofunscriptError, match=r"short\.funscript: ends at 2\.0 s but the video runs 8\.0 s"):
        load_clip(find_pairs(tmp_path)[0], TINY.spec, None)


@pytest.mark.parametrize("broken", ["video", "script"])
def test_unreadable_files(tiny_corpus: Path, tmp_path: Path, broken: str):
    shutil.copy(tiny_corpus / "clip0.mp4", tmp_path / "bad.mp4")
    shutil.copy(tiny_corpus / "clip0.funscript", tmp_path / "bad.funscript")
    target = tmp_path / ("bad.mp4" if broken == "video" else "bad.funscript")
    target.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AutofunscriptError, match=str(target).replace(".", r"\.")):
        load_clip(find_pairs(tmp_path)[0], TINY.spec, None)


def test_cli_reports_bad_data_in_one_line(tiny_corpus: Path, tmp_path: Path):
    shutil.copy(tiny_corpus / "clip0.mp4", tmp_path / "lonely.mp4")
    done = subprocess.run([sys.executable, "-m", "autofunscript", "train", str(tmp_path), "--out",
                           str(tmp_path / "model")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'lonely.mp4'}: no lonely.funscript beside it "
                                                "(each training video needs its script)"]


def test_features_are_cached(tiny_corpus: Path, tmp_path: Path):
    pair = find_pairs(tiny_corpus)[0]
    first = load_clip(pair, TINY.spec, tmp_path)
    assert len(list(tmp_path.glob("clip0-*.npz"))) == 1
    again = load_clip(pair, TINY.spec, tmp_path)
    assert len(first) == len(again) == 1
    assert np.array_equal(first[0].values, again[0].values) and np.array_equal(first[0].labels, again[0].labels)
    # 8 s of video at the feature rate, with truth in 0-100 that moves
    assert first[0].values.shape == (240, TINY.spec.n_features) and np.ptp(first[0].truth) > 50


@pytest.mark.slow
def test_tiny_model_learns_and_repeats(tiny_corpus: Path, tmp_path: Path):
    clips = load_corpus(find_pairs(tiny_corpus), TINY.spec, tmp_path)
    settings = TrainSettings(epochs=8, threads=1, seed=3, learning_rate=1e-2)
    first = train(clips, TINY, settings)
    losses = [h.train_loss for h in first.history]
    assert losses[-1] < 0.6 * losses[0]
    second = train(clips, TINY, settings)
    assert [h.train_loss for h in second.history] == losses  # seeded and deterministic


@pytest.mark.slow
def test_export_matches_pytorch_and_reloads(tiny_corpus: Path, tmp_path: Path):
    import torch

    from autofunscript.model.export import load_checkpoint, load_onnx_weights
    from autofunscript.model.infer import ModelRunner

    result, card, files = train_folder(tiny_corpus, tmp_path / "model", TINY, TrainSettings(epochs=2, threads=1),
                                       tmp_path / "cache")
    assert card.metrics["onnx_max_abs_error"] < 1e-4
    umask = os.umask(0)
    os.umask(umask)
    # ordinary files, not the private ones temp files start as
    assert {path.stat().st_mode & 0o777 for path in (files.onnx, files.card, files.checkpoint)} == {0o666 & ~umask}
    chunks = make_chunks(load_corpus(find_pairs(tiny_corpus), TINY.spec, tmp_path / "cache"), TINY, None)
    with torch.no_grad():
        expected = result.net(torch.from_numpy(chunks.x))
    got = ModelRunner(files.onnx, threads=1).run(chunks.x)
    for a, b in zip(expected, got):
        assert np.abs(a.numpy() - b).max() < 1e-4
    for net, _ in (load_checkpoint(files.checkpoint), load_onnx_weights(files.onnx)):
        for name, value in result.net.state_dict().items():
            assert torch.equal(net.state_dict()[name], value), name
    with pytest.raises(AutofunscriptError, match="already exists"):
        train_folder(tiny_corpus, tmp_path / "model", TINY, TrainSettings(epochs=1, threads=1), tmp_path / "cache")


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--epochs", "-1"], ["--width", "0"], ["--width", "100000"],
                                    ["--learning-rate", "nan"], ["--learning-rate", "0"], ["--seed", "-1"],
                                    ["--threads", "0"]])
def test_bad_training_option_is_a_usage_error_before_any_work(tiny_corpus: Path, tmp_path: Path, option: list[str]):
    done = subprocess.run([sys.executable, "-m", "autofunscript", "train", str(tiny_corpus), "--out",
                           str(tmp_path / "model"), *option], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Invalid value for '{option[0]}'" in done.stderr and "features" not in done.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("option", ["--out", "--cache"])
def test_a_file_in_place_of_a_folder_is_refused_before_the_features(tiny_corpus: Path, tmp_path: Path, option: str):
    (tmp_path / "afile").write_text("x")
    paths = {"--out": tmp_path / "model", "--cache": tmp_path / "cache", option: tmp_path / "afile"}
    done = subprocess.run([sys.executable, "-m", "autofunscript", "train", str(tiny_corpus),
                           *(str(a) for item in paths.items() for a in item)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "features" not in done.stderr
    assert done.stderr.strip() == f"error: {tmp_path / 'afile'}: is a file, not a folder ({option})"


def test_ctrl_c_while_a_clip_is_read_caches_nothing(stroking_clip: Path, tmp_path: Path):
    """The tracking pass takes Ctrl+C as the end of the video; a clip cut short that way must not be kept."""
    import signal

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    pair = find_pairs(stroking_clip.parent)[0]
    previous = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.2)  # decoding its 20 s takes about a second
    try:
        with pytest.raises(KeyboardInterrupt):
            load_clip(pair, TINY.spec, tmp_path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert list(tmp_path.iterdir()) == []
