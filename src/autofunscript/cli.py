"""Command-line shell. Every command is a thin wrapper over library functions.

Errors the user can fix are AutofunscriptError: printed as one line, exit 2. Ctrl+C exits 130.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import click

from autofunscript import __version__
from autofunscript.clock import format_clock, parse_clock
from autofunscript.errors import AutofunscriptError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _OneLineHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("autofunscript")
    logger.handlers[:] = [_OneLineHandler()]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autofunscript")
@click.option("-v", "--verbose", is_flag=True, help="Print debug messages.")
def cli(verbose: bool) -> None:
    """Watch a video, write a funscript."""
    _setup_logging(verbose)


def parse_pair(text: str, what: str, cast=float) -> tuple:
    kind = "whole numbers" if cast is int else "numbers"
    try:
        a, b = (cast(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{what} must be two {kind} like 10,90, got {text!r}") from None
    if not all(-1e9 < x < 1e9 for x in (a, b)):  # nan and inf fail too; math.isfinite overflows on huge ints
        raise click.BadParameter(f"{what} must be two finite numbers, got {text!r}")
    return a, b


class Number(click.FloatRange):
    """A finite number, optionally within bounds: click's FloatRange lets nan (and inf without a bound) through,
    and they fail deep inside the work or, worse, pass as no limit at all."""

    name = "number"

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class VideoTime(click.ParamType):
    """A time in a video: seconds (90, 12.5) or a clock reading as players show it (1:30, 1:02:03.5)."""

    name = "time"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_clock(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


VIDEO_TIME = VideoTime()
START_OPTION = click.option("--start", "start_s", default=0.0, type=VIDEO_TIME, metavar="T",
                            help="Start time: seconds, or H:MM:SS / M:SS.")
END_OPTION = click.option("--end", "end_s", type=VIDEO_TIME, metavar="T", help="End time: seconds, or H:MM:SS / M:SS.")


# ----------------------------------------------------------------------------------------------
# commands (each adds itself below this line)
# ----------------------------------------------------------------------------------------------


# A smoothing sigma beyond seconds flattens every stroke, and its cost grows with it (1e9 ms took a minute).
MAX_SMOOTH_MS = 10_000
# An offset corrects a lag of milliseconds, or moves a script onto a clip cut from a longer video: hours at
# most. Past a day it is a typo, and past ten days the script it made could not be read back.
MAX_OFFSET_MS = 24 * 3600 * 1000


def _post_options(func):
    """Options shared by generate and tune (the post-processing knobs)."""
    options = [
        click.option("--range", "range_", default="0,100", show_default=True, metavar="MIN,MAX",
                     help="Position range of the output (generate: of the stroke; extra axes keep 0-100)."),
        click.option("--max-speed", default=400.0, show_default=True, type=Number(min=0), metavar="N",
                     help="Speed limit in pos/s (0: none)."),
        click.option("--smooth", "smooth_ms", default=None, type=Number(0, MAX_SMOOTH_MS), metavar="MS",
                     help="Gaussian smoothing sigma in ms."),
        click.option("--simplify", default=2.0, show_default=True, type=Number(0, 100), metavar="EPS",
                     help="Drop points within EPS positions of the line through their neighbours."),
        click.option("--invert", is_flag=True, help="Flip positions (100 - pos; generate: the stroke's only)."),
        click.option("--offset", "offset_ms", default=0, show_default=True,
                     type=click.IntRange(-MAX_OFFSET_MS, MAX_OFFSET_MS), metavar="MS",
                     help="Shift all actions by MS (positive = later)."),
        click.option("--force", is_flag=True, help="Overwrite existing output files."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _post_settings(range_: str, max_speed: float, smooth_ms: float | None, simplify: float, invert: bool,
                   offset_ms: int, default_smooth: float):
    from autofunscript.script.postprocess import PostSettings

    lo, hi = parse_pair(range_, "--range", int)
    if not (0 <= lo <= 100 and 0 <= hi <= 100 and lo != hi):
        raise click.BadParameter(f"--range must be two different values in 0-100, got {range_!r}")
    return PostSettings(range=(lo, hi), max_speed=max_speed,
                        smooth_ms=default_smooth if smooth_ms is None else smooth_ms,
                        simplify=simplify, invert=invert, offset_ms=offset_ms)


def _check_writable(paths, force: bool = False) -> None:
    from autofunscript.script.funscript import check_output_path

    for target in paths:
        check_output_path(target, force)


def _generate_options(func):
    """Options shared by generate and batch: what to analyse, then the post-processing knobs."""
    options = [
        click.option("--method", type=click.Choice(["flow", "model"]), default="flow", show_default=True,
                     help="flow: the classical generator; model: the trained model (shipped weights)."),
        click.option("--poi", metavar="X,Y", help="Point of interest in pixels, or 0-1 fractions of the frame."),
        click.option("--poi-size", type=Number(min=0, min_open=True), metavar="N",
                     help="POI box size in pixels (default: frame height / 4)."),
        START_OPTION,
        END_OPTION,
        click.option("--vr", type=click.Choice(["sbs", "ou"]), help="VR layout: analyse one eye."),
        click.option("--axes", default="", metavar="LIST", help="Extra axes to write as sibling files: sway,roll,surge."),
    ]
    func = _post_options(func)
    for option in reversed(options):
        func = option(func)
    return func


def _generate_settings(method: str, poi: str | None, poi_size: float | None, start_s: float, end_s: float | None,
                       vr: str | None, axes: str, **post):
    """The GenerateOptions that the _generate_options values ask for."""
    from autofunscript.pipeline import EXTRA_AXES, GenerateOptions, Poi

    settings = _post_settings(**post, default_smooth=0.0)
    if end_s is not None and end_s <= start_s:
        raise click.BadParameter(f"--end {end_s:g} must be after --start {start_s:g}")
    if poi_size is not None and not poi:
        raise click.BadParameter("--poi-size needs --poi (the automatic ROI finds its own size)")
    axis_names = tuple(dict.fromkeys(a.strip().lower() for a in axes.split(",") if a.strip()))
    unknown = [a for a in axis_names if a not in EXTRA_AXES]
    if unknown:
        raise click.BadParameter(f"unknown axes {unknown}; choose from {', '.join(EXTRA_AXES)}")
    poi_value = None
    if poi:
        x, y = parse_pair(poi, "--poi")
        poi_value = Poi(x, y, poi_size, relative=0 <= x <= 1 and 0 <= y <= 1)
    return GenerateOptions(method=method, start_s=start_s, end_s=end_s, vr=vr, poi=poi_value, axes=axis_names,
                           post=settings)


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output path (default: VIDEO's stem + .funscript).")
@click.option("--initial-position", type=Number(0, 100), metavar="P",
              help="The known position (0-100) at --start, given to the model (--method model only).")
@_generate_options
def generate(video: Path, out: Path | None, force: bool, initial_position: float | None, **settings) -> int:
    """Track the motion in VIDEO and write VIDEO.funscript beside it."""
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from autofunscript.pipeline import describe_rivals
    from autofunscript.pipeline import generate as run_generate
    from autofunscript.script.funscript import axis_path, write_funscript

    options = _generate_settings(**settings)
    if initial_position is not None:
        if options.method != "model":
            raise click.BadParameter("--initial-position needs --method model (the flow generator has no use for it)")
        options = replace(options, initial_position=initial_position)
    if not video.exists():
        raise AutofunscriptError(f"{video}: no such file")
    if video.suffix.lower() == ".funscript":
        raise AutofunscriptError(f"{video}: is a funscript, not a video (tune post-processes a script)")
    out = out or video.with_suffix(".funscript")
    if out.resolve() == video.resolve():
        raise AutofunscriptError(f"{out}: is the video itself; choose another --out")
    _check_writable([out, *(axis_path(out, a) for a in options.axes)], force)
    # the bar goes to stderr so stdout holds only the result; piped, it would only print stray blank lines
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[fps]:>6.0f} fps"), TimeRemainingColumn(), transient=True,
                  console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(video.name, total=1.0, fps=0.0)
        frames = [0]

        def progress(done_s: float, total_s: float) -> None:
            frames[0] += 1
            if frames[0] % 15 == 0:
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, completed=min(done_s / total_s, 1.0), fps=frames[0] / elapsed)

        result = run_generate(video, options, progress)
    written = write_funscript(result.script, out, force=True)
    speed = result.seconds_of_video / max(result.elapsed_s, 1e-9)
    click.echo(f"{out}: {len(result.script)} actions, {result.frames} frames in {result.elapsed_s:.1f} s "
               f"({result.frames / max(result.elapsed_s, 1e-9):.0f} fps, {speed:.1f}x real time), "
               f"{len(result.cut_times_s)} scene cuts")
    for extra in written[1:]:
        click.echo(f"{extra}: extra axis")
    for note in result.report.notes:
        click.echo(f"post-processing: {note}")
    if result.rivals:
        click.echo(f"warning: {describe_rivals(result.rivals)}", err=True)
    if result.partial:
        click.echo("interrupted: wrote the part done so far (marked partial in notes; --force redoes it whole)",
                   err=True)
        return EXIT_INTERRUPTED
    return 0


@cli.command()
@click.argument("script_path", metavar="SCRIPT", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output path (default: SCRIPT's stem + .tuned.funscript).")
@_post_options
def tune(script_path: Path, out: Path | None, force: bool, **post) -> None:
    """Apply range, smoothing, simplification and speed limits to an existing script."""
    from autofunscript.script.funscript import read_funscript, write_funscript
    from autofunscript.script.postprocess import tune as run_tune

    settings = _post_settings(**post, default_smooth=0.0)
    script = read_funscript(script_path)
    stem = script_path.name[: -len(".funscript")] if script_path.name.endswith(".funscript") else script_path.stem
    out = out or script_path.with_name(f"{stem}.tuned.funscript")
    _check_writable([out], force)
    try:
        at, pos, report = run_tune(script.at, script.pos, settings)
    except AutofunscriptError as exc:  # an offset that leaves nothing after 0 s
        raise AutofunscriptError(f"{script_path}: {exc}") from None
    tuned = script.copy_with(at, pos)
    tuned.axes = {}
    notes = str(tuned.metadata.get("notes", "") or "")
    applied = ", ".join(f"{name}={value}" for name, value in vars(settings).items())
    tuned.metadata["notes"] = (notes + "; " if notes else "") + f"tuned by autofunscript {__version__} ({applied})"
    write_funscript(tuned, out, force=True)
    click.echo(f"{out}: {len(script)} -> {len(tuned)} actions" + "".join(f"; {note}" for note in report.notes))


@cli.command()
@click.argument("scripts", metavar="SCRIPT...", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(scripts: tuple[Path, ...]) -> int:
    """Validate scripts and summarise their motion; sibling axis files are read too.

    Speeds are pos/s per action-to-action move; the fast/slow shares are of the moving time
    (see README "Metrics"). Exits 2 if any file could not be read.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from autofunscript.script.funscript import read_funscript, sibling_paths
    from autofunscript.script.stats import FAST_POS_PER_S, LONG_GAP_MS, SLOW_POS_PER_S, script_stats

    table = Table(box=None, header_style="bold")
    for title in ("script", "actions", "length", "strokes", "mean pos/s", "max pos/s",
                  f">{FAST_POS_PER_S:.0f}", f"<{SLOW_POS_PER_S:.0f}", f"gaps >{LONG_GAP_MS // 1000}s"):
        table.add_column(title, justify="left" if title == "script" else "right", no_wrap=True)
    failed = 0
    shown_as_axis: set[Path] = set()
    for path in scripts:
        if path.resolve() in shown_as_axis:
            continue
        try:
            script = read_funscript(path, siblings=True)
        except AutofunscriptError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        shown_as_axis.update(p.resolve() for p in sibling_paths(path).values() if p.exists())
        for label, item in [(str(path), script), *((f"{path} [{axis}]", s) for axis, s in script.axes.items())]:
            stats = script_stats(item)
            if stats.actions < 2:  # valid JSON, but nothing a device could play
                click.echo(f"warning: {label}: {'no actions' if not stats.actions else 'a single action'}", err=True)
            gaps = f"{stats.gaps}, longest {stats.longest_gap_s:.0f}s" if stats.gaps else "-"
            table.add_row(escape(label), str(stats.actions), format_clock(stats.duration_s), str(stats.strokes),
                          f"{stats.mean_speed:.0f}", f"{stats.max_speed:.0f}", f"{stats.fast_share:.0%}",
                          f"{stats.slow_share:.0%}", gaps)
    if table.row_count:
        console = Console()
        # piped output has no width to fit; keep each script on one line instead of folding at 80
        console.width = console.width if console.is_terminal else 250
        console.print(table)
    return EXIT_USER_ERROR if failed else 0


@cli.command()
@click.argument("script_path", metavar="SCRIPT", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="PNG file to write.")
@click.option("--width", default=1200, show_default=True, type=click.IntRange(16, 8192), help="Pixels.")
@click.option("--height", default=200, show_default=True, type=click.IntRange(16, 2048), help="Pixels.")
@click.option("--force", is_flag=True, help="Overwrite an existing PNG.")
def heatmap(script_path: Path, out: Path, width: int, height: int, force: bool) -> None:
    """Draw an OFS-style speed heat bar over the position graph of SCRIPT."""
    from autofunscript.script.funscript import read_funscript
    from autofunscript.script.heatmap import write_heatmap

    write_heatmap(read_funscript(script_path), out, width, height, force=force)
    click.echo(f"{out}: {width}x{height} heatmap of {script_path}")


@cli.command("evaluate")
@click.argument("pred_path", metavar="PRED", type=click.Path(path_type=Path))
@click.argument("ref_path", metavar="REF", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--min-swing", default=10.0, show_default=True, type=Number(0, 100, min_open=True),
              help="Smallest position change that makes a reversal.")
@click.option("--fps", default=30.0, show_default=True, type=Number(0, 1000, min_open=True),
              help="Video frame rate; one frame is the `frame` tier's time limit.")
def evaluate_command(pred_path: Path, ref_path: Path, as_json: bool, min_swing: float, fps: float) -> None:
    """Score the predicted script PRED against the reference REF (see README "Metrics")."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from autofunscript.script.evaluate import evaluate
    from autofunscript.script.funscript import read_funscript

    pred, ref = read_funscript(pred_path), read_funscript(ref_path)
    if len(ref) < 2:  # a prediction may be empty (it then scores 0); a reference must span some time
        raise AutofunscriptError(f"{ref_path}: {len(ref)} action{'' if len(ref) == 1 else 's'}, "
                                 "no span of time to score against")
    result = evaluate(pred, ref, min_swing=min_swing, fps=fps)
    if as_json:
        click.echo(json.dumps({"pred": str(pred_path), "ref": str(ref_path), **result.to_dict()}))
        return

    def number(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    tiers = result.tiers.to_dict()
    lag = "prediction late" if result.shift_ms > 0 else "prediction early" if result.shift_ms < 0 else "in sync"
    rows = [
        ("shift", f"{result.shift_ms:+d} ms ({lag})"),
        ("polarity", "inverted (scored flipped)" if result.inverted else "normal"),
        ("pearson r", f"{number(result.pearson, '.3f')} (signed {number(result.pearson_signed, '+.3f')})"),
        ("mae / rmse", f"{number(result.mae, '.1f')} / {number(result.rmse, '.1f')} pos"),
        ("coverage", f"{result.coverage:.0%} of the reference span"),
        ("extrema precision", f"{result.extrema_precision:.3f} ({result.reversals_matched}/{result.reversals_pred})"),
        ("extrema recall", f"{result.extrema_recall:.3f} ({result.reversals_matched}/{result.reversals_ref})"),
        ("extrema F1", f"{result.extrema_f1:.3f}"),
        *((f"tier {name}", f"{t['count']} ({t['share']:.0%})") for name, t in tiers.items()),
        ("strokes ref / pred", f"{result.strokes_ref} / {result.strokes_pred}"),
        ("amplitude error", f"{result.amplitude_error:+.0f} pos"),
        ("speed violations", f"{result.speed_violations} moves, {result.speed_violation_share:.1%} of moving time"),
    ]
    table = Table(box=None, show_header=False, title=escape(f"{pred_path} vs {ref_path}"), title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    Console(soft_wrap=True).print(table)


@cli.command()
@click.option("--script", "script_path", required=True, type=click.Path(path_type=Path),
              help="Reference funscript the subject follows.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="MP4 to write; the truth .funscript and .synth.json go beside it.")
@click.option("--preset", default="easy", show_default=True, metavar="NAME", help="easy, medium, hard, cuts or vr.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Scene, motion and noise seed.")
@click.option("--size", metavar="WxH", help="Frame size (default 640x360; 1280x640 for vr).")
@click.option("--fps", default=30.0, show_default=True, type=float, help="Nominal frame rate.")
@click.option("--vfr", is_flag=True, help="Variable frame rate: jittered frame intervals, real pts in the file.")
@click.option("--start", "start_s", default=0.0, show_default=True, type=float, help="Script time of the first frame (s).")
@click.option("--duration", "duration_s", type=float, help="Seconds to render (default: to the script's end).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
def synth(script_path: Path, out: Path, preset: str, seed: int, size: str | None, fps: float, vfr: bool,
          start_s: float, duration_s: float | None, force: bool) -> None:
    """Render a synthetic clip whose subject moves exactly as the reference script says, with its truth script."""
    from autofunscript.synth.presets import get_preset
    from autofunscript.synth.render import parse_size, render_clip

    get_preset(preset)  # a wrong name is the first thing to hear about, before the paths
    result = render_clip(script_path, out, preset=preset, seed=seed, size=parse_size(size) if size else None,
                         fps=fps, start_s=start_s, duration_s=duration_s, vfr=vfr, force=force)
    length = result.frame_times_s[-1] + 1 / fps
    n_cuts = len(result.cut_times_s)
    cuts = f", {n_cuts} cut{'s' if n_cuts > 1 else ''}" if n_cuts else ""
    click.echo(f"{out}: {result.frame_count} frames, {length:.1f} s, {preset} seed {seed}{cuts}; "
               f"truth {result.truth_path}, per-frame data {result.sidecar}")


@cli.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-r", "--recursive", is_flag=True, help="Look for videos in subfolders too.")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Videos at a time (default: CPU cores; with a cluster engine: the local cluster's size).")
@click.option("--engine", type=click.Choice(["local", "dask", "ray"]), default="local", show_default=True,
              help="local: worker processes here; dask/ray: a cluster at --address, or a local one.")
@click.option("--address", metavar="ADDR", help="Scheduler address of a running Dask or Ray cluster.")
@click.option("--skip-existing", is_flag=True,
              help="Skip videos that already have a script (the default; --force regenerates them).")
@click.option("--report", type=click.Path(path_type=Path), metavar="FILE",
              help="Write a report of every video to FILE.json or FILE.html (an earlier report is replaced).")
@_generate_options
def batch(paths: tuple[Path, ...], recursive: bool, workers: int | None, engine: str, address: str | None,
          skip_existing: bool, report: Path | None, force: bool, **settings) -> int:
    """Write a script beside every video in PATH... (videos or folders), with generate's settings.

    Videos that already have a script are skipped, so after a crash or Ctrl+C the same command resumes.
    Exit code 0: every video has a script; 1: some failed; 130: interrupted (143 by SIGTERM).
    """
    from autofunscript.batch import run_cli

    if skip_existing and force:
        raise click.BadParameter("--skip-existing and --force contradict each other")
    options = _generate_settings(**settings)
    return run_cli(paths, options, recursive=recursive, engine=engine, workers=workers, address=address,
                   force=force, report=report)


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["flow", "model"]), default="flow", show_default=True)
@START_OPTION
@END_OPTION
@click.option("--predict", is_flag=True, help="Predict from the start (as if p was pressed).")
@click.option("--hold", is_flag=True, help="Start on hold at the first frame.")
@click.option("--replay-poi", type=click.Path(path_type=Path), metavar="FILE",
              help="Replay the POI log (.poi.csv) of an earlier session instead of clicking.")
def view(video: Path, method: str, start_s: float, end_s: float | None, predict: bool, hold: bool,
         replay_poi: Path | None) -> int:
    """Play VIDEO in a window and predict as it goes; exports to ./predictions/. Press ? for the keys."""
    # Set before NumPy loads OpenBLAS: the viewer's linear algebra is on tiny matrices, where BLAS threads
    # only add wake-up latency (a 2x2 eigh measured 125 ms instead of 11 ms on a busy 2-core machine).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from autofunscript.viewer import ViewOptions, view as run_view

    run_view(video, ViewOptions(method=method, start_s=start_s, end_s=end_s, predict=predict, hold=hold,
                                replay_poi=replay_poi), echo=click.echo)
    return 0


def _training_options(func):
    """Options shared by train and finetune."""
    options = [
        click.argument("data_dir", type=click.Path(path_type=Path)),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("model"), show_default=True,
                     help="Folder for motion.onnx, its card motion.json and the checkpoint motion.pt."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1)),
        click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 256),
                     help="CPU threads for PyTorch."),
        click.option("--cache", "cache_dir", type=click.Path(path_type=Path),
                     help="Feature cache folder (default: ~/.cache/autofunscript/features)."),
        click.option("--force", is_flag=True, help="Overwrite an earlier model in --out."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_training(data_dir: Path, out_dir: Path, config, settings, cache_dir: Path | None, init_net,
                  force: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from autofunscript.model.train import default_cache_dir, train_folder

    # on a terminal, bars for the clips read and the epochs run, with the per-step lines printed above them
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=console, disable=not console.is_terminal) as bar:
        features = bar.add_task("features", total=None)
        epochs = bar.add_task("epochs", total=settings.epochs, visible=False)

        def say(line: str) -> None:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

        def on_clip(i: int, total: int, pair) -> None:
            bar.update(features, completed=i, total=total)
            say(f"features {i + 1}/{total}: {pair.video.name}")

        def on_epoch(log) -> None:
            bar.update(features, completed=bar.tasks[features].total, visible=False)
            bar.update(epochs, completed=log.epoch, visible=True)
            val = f", val loss {log.val_loss:.3f}, val r {log.val_pearson:.3f}" if log.val_loss is not None else ""
            say(f"epoch {log.epoch}: train loss {log.train_loss:.3f}{val} ({log.seconds:.0f} s)")

        _, card, files = train_folder(data_dir, out_dir, config, settings, cache_dir or default_cache_dir(),
                                      init_net, force, on_clip, on_epoch)
    click.echo(f"{files.onnx}: {card.parameters} parameters, best epoch {card.training['best_epoch']}, "
               f"trained in {card.training['train_seconds']:.0f} s (+{card.training['feature_seconds']:.0f} s "
               f"features); card {files.card}, checkpoint {files.checkpoint}")


@cli.command()
@_training_options
@click.option("--epochs", default=16, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--context", "context_s", default=10.0, show_default=True, help="Context in seconds (2-20).")
@click.option("--inputs", default="flow", show_default=True, help="flow, plus any of edges,mask,patch.")
@click.option("--width", default=64, show_default=True, type=click.IntRange(4, 1024),
              help="Channels of the network.")
@click.option("--no-routing", is_flag=True, help="Predict with the generalist head only (no motion-type router).")
@click.option("--learning-rate", default=3e-3, show_default=True, type=Number(0, 1, min_open=True))
def train(data_dir: Path, out_dir: Path, seed: int, threads: int, cache_dir: Path | None, force: bool, epochs: int,
          context_s: float, inputs: str, width: int, no_routing: bool, learning_rate: float) -> None:
    """Train a model on DATA_DIR: videos with same-named .funscript files (needs the [train] extra)."""
    from autofunscript.model.card import ModelConfig
    from autofunscript.model.train import TrainSettings

    names = [i.strip() for i in inputs.split(",") if i.strip()]
    config = ModelConfig(inputs=tuple(dict.fromkeys(names)), context_s=context_s,  # each input once
                         width=width, routing=not no_routing)
    settings = TrainSettings(epochs=epochs, seed=seed, threads=threads, learning_rate=learning_rate)
    _run_training(data_dir, out_dir, config, settings, cache_dir, None, force)


@cli.command()
@_training_options
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--learning-rate", default=5e-4, show_default=True, type=Number(0, 1, min_open=True))
@click.option("--from", "start", type=click.Path(path_type=Path), metavar="MODEL.onnx",
              help="Weights to start from (default: the shipped model).")
def finetune(data_dir: Path, out_dir: Path, seed: int, threads: int, cache_dir: Path | None, force: bool, epochs: int,
             learning_rate: float, start: Path | None) -> None:
    """Continue training the shipped model (or --from) on DATA_DIR, e.g. your own labelled videos."""
    from autofunscript.model.export import load_onnx_weights
    from autofunscript.model.infer import shipped_model_path
    from autofunscript.model.train import TrainSettings

    net, card = load_onnx_weights(start or shipped_model_path())
    settings = TrainSettings(epochs=epochs, seed=seed, threads=threads, learning_rate=learning_rate)
    _run_training(data_dir, out_dir, card.config, settings, cache_dir, net, force)


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .onnx to write (card beside it).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def export_command(checkpoint: Path, out: Path, force: bool) -> None:
    """Write a training checkpoint (.pt) as ONNX for inference, checked against PyTorch."""
    from autofunscript.model.export import export_model, load_checkpoint

    net, card = load_checkpoint(checkpoint)
    written = export_model(net, card, out, force=force)
    click.echo(f"{out}: {written.parameters} parameters, max |ONNX - PyTorch| "
               f"{written.metrics['onnx_max_abs_error']:.1e}")


def main() -> None:
    """Console entry point: run the group, turning expected failures into one-line errors."""
    try:
        result = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AutofunscriptError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        click.echo("error: out of memory", err=True)
        sys.exit(EXIT_USER_ERROR)
    # commands return an int exit code when "done, but not everything succeeded" (batch, check)
    sys.exit(result if isinstance(result, int) else 0)
