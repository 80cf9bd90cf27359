"""Batch shell: find videos, generate a script beside each one on local processes or a Dask/Ray cluster.

Every engine runs the same per-video function, `process_video`, which never raises: a video that cannot be
read becomes a "failed" outcome and the rest go on. A script set is written only when its video is finished,
by `write_funscript(..., replace_axes=True)`: every file goes to a temp file first, then all are renamed into
place, the main script last. So an existing main script means "done", and a rerun after a crash, Ctrl+C or
SIGTERM skips exactly the finished videos.

Workers talk back over a small channel (progress messages one way, a stop flag the other); each engine
provides its own: a multiprocessing queue and event, a Dask Queue and Event, or a Ray actor.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from autofunscript import __version__
from autofunscript.errors import AutofunscriptError
from autofunscript.pipeline import GenerateOptions, settings_note, describe_rivals, generate
from autofunscript.script.funscript import (Funscript, atomic_write_text, axis_path, check_output_path,
                                            read_funscript, write_funscript)
from autofunscript.script.stats import FAST_POS_PER_S, script_stats
from autofunscript.video import VIDEO_EXTENSIONS

log = logging.getLogger("autofunscript")

ENGINES = ("local", "dask", "ray")
REPORT_SUFFIXES = (".json", ".html")

WRITTEN, SKIPPED, FAILED, INTERRUPTED = "written", "skipped", "failed", "interrupted"

PROGRESS_INTERVAL_S = 0.25  # workers report (and look for a stop request) at most this often
POLL_INTERVAL_S = 0.1
HEATMAP_SIZE = (400, 72)
NO_WORKERS_TIMEOUT_S = 60.0  # a cluster without workers for this long is taken as broken


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- finding the videos ------------------------------------------------------------------------------


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_video_name(name: str) -> bool:
    return not _is_hidden(name) and Path(name).suffix.lower() in VIDEO_EXTENSIONS


def _videos_in(folder: Path, recursive: bool) -> Iterator[Path]:
    if not recursive:
        yield from sorted(p for p in folder.iterdir() if p.is_file() and _is_video_name(p.name))
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))  # sorted in place: os.walk visits in this order
        yield from (Path(root) / f for f in sorted(files) if _is_video_name(f))


def find_videos(paths: Sequence[Path], recursive: bool = False) -> list[Path]:
    """Videos named directly or found in folders (sorted, hidden files skipped), each once, in argument order.

    A named file is taken as a video whatever its extension (a failure to decode it says if it is not one),
    except a funscript, which a shell pattern such as `folder/*` names beside its video.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            candidates: Iterator[Path] = _videos_in(path, recursive)
        elif path.is_file():
            if path.name.lower().endswith(".funscript"):
                log.warning("%s: a funscript, not a video; skipped", path)
                continue
            candidates = iter([path])
        else:
            raise AutofunscriptError(f"{path}: no such file or folder")
        for video in candidates:
            # the same name in the same folder, however reached; a symlink under another name is a video of
            # its own, as a player looks for the script beside the name it opens
            key = video.parent.resolve() / video.name
            if key not in seen:
                seen.add(key)
                found.append(video)
    return found


def script_path_for(video: Path) -> Path:
    """Where OpenFunscripter looks for a video's script: same folder, same stem."""
    return video.with_suffix(".funscript")


# --- the per-video function ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoJob:
    index: int  # position in the batch's video list
    video: Path
    script: Path
    options: GenerateOptions
    force: bool = False


@dataclass
class VideoOutcome:
    video: Path
    script: Path
    status: str  # WRITTEN, SKIPPED, FAILED or INTERRUPTED
    seconds: float = 0.0  # wall time spent on the video
    video_seconds: float = 0.0
    frames: int = 0
    actions: int = 0
    strokes: int = 0
    max_speed: float = 0.0  # pos/s of the fastest segment in the script
    fast_segments: int = 0  # segments above FAST_POS_PER_S
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (WRITTEN, SKIPPED)


class WorkerChannel(Protocol):
    """The worker's side of an engine's channel."""

    def report(self, index: int, done_s: float, total_s: float) -> None: ...

    def stop_requested(self) -> bool: ...


class _StopRequested(Exception):
    """Raised from the progress callback to abandon a video when the batch is being stopped."""


class _Reporter:
    """Progress callback for `generate`: forwards progress and honours stop requests, both throttled."""

    def __init__(self, channel: WorkerChannel, index: int) -> None:
        self.channel, self.index = channel, index
        self.last = float("-inf")

    def __call__(self, done_s: float, total_s: float) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        if self.channel.stop_requested():
            raise _StopRequested
        self.channel.report(self.index, done_s, total_s)


def _describe_script(outcome: VideoOutcome, script: Funscript) -> None:
    stats = script_stats(script)
    outcome.actions, outcome.strokes = stats.actions, stats.strokes
    outcome.max_speed, outcome.fast_segments = stats.max_speed, stats.fast_segments
    outcome.video_seconds = outcome.video_seconds or stats.duration_s  # a skipped video's length, from its script
    if not stats.strokes:
        outcome.warnings.append("no strokes: the script barely moves")
    if stats.fast_segments:
        outcome.warnings.append(f"{_count(stats.fast_segments, 'segment')} faster than {FAST_POS_PER_S:g} pos/s "
                                f"(fastest {stats.max_speed:.0f})")


class _WarningCollector(logging.Handler):
    """Keeps the warnings logged while one video is processed, for its outcome (and off the worker's stderr).

    A worker process usually runs one video at a time, and then every warning is that video's, whichever
    thread (the decoder's, say) logged it. Where videos share a process (Dask threads), a warning goes to
    the video whose thread logged it or whose path it names; one that fits none is left out of the outcomes.
    """

    _active: list[_WarningCollector] = []
    _lock = threading.Lock()

    def __init__(self, video: Path) -> None:
        super().__init__(logging.WARNING)
        self.video, self.thread = str(video), threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            alone = len(self._active) == 1
        return alone or record.thread == self.thread or self.video in record.getMessage()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _WarningCollector:
        with self._lock:
            self._active.append(self)
        log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        log.removeHandler(self)
        with self._lock:
            self._active.remove(self)


def process_video(job: VideoJob, channel: WorkerChannel) -> VideoOutcome:
    """Generate and write one video's script. Never raises for a bad video: the outcome says what happened."""
    with _WarningCollector(job.video) as collector:
        outcome = _process_video(job, channel)
    outcome.warnings[:0] = collector.messages  # what generate logged, before the batch's own remarks
    return outcome


def _process_video(job: VideoJob, channel: WorkerChannel) -> VideoOutcome:
    started = time.perf_counter()
    outcome = VideoOutcome(job.video, job.script, FAILED)
    if job.script.exists() and not job.force:
        outcome.status = SKIPPED  # another run finished it since the batch was planned
        return outcome
    if channel.stop_requested():
        outcome.status = INTERRUPTED
        return outcome
    try:
        result = generate(job.video, job.options, _Reporter(channel, job.index))
        if result.partial:
            outcome.status = INTERRUPTED  # a partial script would pass for a finished one on the next run
        else:
            write_funscript(result.script, job.script, force=job.force, replace_axes=True)
            outcome.status = WRITTEN
            outcome.frames, outcome.video_seconds = result.frames, result.seconds_of_video
            outcome.warnings += result.report.notes
            if result.rivals:
                outcome.warnings.append(describe_rivals(result.rivals))
            _describe_script(outcome, result.script)
    except _StopRequested:
        outcome.status = INTERRUPTED
    except AutofunscriptError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a decoder or library failure on one file must not stop the batch
        outcome.error = f"{job.video}: {type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - started
    return outcome


# --- engines ------------------------------------------------------------------------------------------


class Engine(Protocol):
    """Runs process_video somewhere; the batch loop polls handles and drains progress."""

    workers: int

    def submit(self, job: VideoJob) -> Any: ...

    def done(self, handle: Any) -> bool: ...

    def outcome(self, handle: Any) -> VideoOutcome: ...

    def progress(self) -> list[tuple[int, float, float]]: ...

    def request_stop(self) -> None: ...

    def close(self) -> None: ...


class _LocalChannel:
    def __init__(self, queue: Any, stop: Any) -> None:
        self.queue, self.stop = queue, stop

    def report(self, index: int, done_s: float, total_s: float) -> None:
        self.queue.put((index, done_s, total_s))

    def stop_requested(self) -> bool:
        import multiprocessing

        # a parent killed outright (SIGKILL) can no longer ask: its worker stops rather than finish unwatched
        parent = multiprocessing.parent_process()
        return self.stop.is_set() or (parent is not None and not parent.is_alive())


def _run_in_child(job: VideoJob, queue: Any, stop: Any, sender: Any) -> None:
    # Ctrl+C and a service manager's SIGTERM reach the whole process group: the parent alone decides, and
    # tells workers via the stop event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    outcome = process_video(job, _LocalChannel(queue, stop))
    try:
        sender.send(outcome)
    except OSError:  # the parent is gone: there is no one to tell
        pass
    sender.close()


@dataclass(eq=False)  # a handle: hashed by identity
class _LocalTask:
    job: VideoJob
    process: Any = None
    receiver: Any = None
    outcome: VideoOutcome | None = None


class _LocalEngine:
    """One fresh process per video, `workers` at a time: a worker that dies (a decoder crash, the out-of-memory
    killer) takes only its own video down, and memory is returned after every video."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        # Not fork: the parent runs threads (progress display) that a fork would copy mid-lock. The fork
        # server imports the pipeline once and forks each worker from that, ready to run.
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload([__name__])
        self.workers = workers
        self.channel = _LocalChannel(self.context.Queue(), self.context.Event())
        self.waiting: deque[_LocalTask] = deque()
        self.running: list[_LocalTask] = []

    def submit(self, job: VideoJob) -> _LocalTask:
        task = _LocalTask(job)
        self.waiting.append(task)
        self._start_waiting()
        return task

    def _start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.workers:
            task = self.waiting.popleft()
            task.receiver, sender = self.context.Pipe(duplex=False)
            task.process = self.context.Process(target=_run_in_child, daemon=True, name=f"video-{task.job.index}",
                                                args=(task.job, self.channel.queue, self.channel.stop, sender))
            task.process.start()
            sender.close()  # the child holds the only sending end, so its death ends the pipe
            self.running.append(task)

    def done(self, task: _LocalTask) -> bool:
        if task.outcome is None and task.process is not None:
            exited = not task.process.is_alive()  # read before polling: a dead child's outcome is already sent
            if task.receiver.poll():
                try:
                    task.outcome = task.receiver.recv()
                except EOFError:  # the child died without sending: the pipe only says it closed
                    exited = True
            if task.outcome is None and exited:
                task.process.join()
                task.outcome = VideoOutcome(task.job.video, task.job.script, FAILED,
                                            error=f"{task.job.video}: the worker process died "
                                                  f"(exit code {task.process.exitcode}); nothing written")
            if task.outcome is not None:
                task.process.join()
                task.receiver.close()
                self.running.remove(task)
                self._start_waiting()
        return task.outcome is not None

    def outcome(self, task: _LocalTask) -> VideoOutcome:
        assert task.outcome is not None, "outcome() before done()"
        return task.outcome

    def progress(self) -> list[tuple[int, float, float]]:
        import queue

        messages = []
        try:
            while True:
                messages.append(self.channel.queue.get_nowait())
        except queue.Empty:
            return messages

    def request_stop(self) -> None:
        self.channel.stop.set()

    def close(self) -> None:
        self.waiting.clear()
        self.channel.stop.set()  # only reached with videos running after a second Ctrl+C or an error
        for task in self.running:
            task.process.join(timeout=10)
            if task.process.is_alive():
                task.process.kill()
                task.process.join()
        self.channel.queue.close()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl+C while a local cluster starts its processes, so they inherit the ignoring."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _DaskChannel:
    """Names of a Dask Queue and Event; bound to the worker's client on first use."""

    def __init__(self, queue_name: str, event_name: str) -> None:
        self.queue_name, self.event_name = queue_name, event_name
        self._queue: Any = None
        self._event: Any = None

    def __getstate__(self) -> dict:
        return {"queue_name": self.queue_name, "event_name": self.event_name}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["queue_name"], state["event_name"])

    def report(self, index: int, done_s: float, total_s: float) -> None:
        if self._queue is None:
            from distributed import Queue

            self._queue = Queue(self.queue_name)
        self._queue.put([index, float(done_s), float(total_s)])

    def stop_requested(self) -> bool:
        if self._event is None:
            from distributed import Event

            self._event = Event(self.event_name)
        return self._event.is_set()


class _DaskEngine:
    def __init__(self, workers: int, address: str | None) -> None:
        try:
            from distributed import Client, Event, LocalCluster, Queue
        except ImportError:
            raise AutofunscriptError("--engine dask needs Dask distributed: "
                                     "pip install 'autofunscript[dask]'") from None
        self.cluster = None
        self.address = address
        if address:
            try:
                self.client = Client(address, timeout="10s")
            except (OSError, ValueError, TypeError) as exc:  # unreachable, or not an address (no port, http://)
                raise AutofunscriptError(f"{address}: cannot reach the Dask scheduler ({exc})") from None
        else:
            with _sigint_ignored():  # its worker processes inherit that: only we handle Ctrl+C
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.workers = max(sum(self.client.nthreads().values()), 1)
        self.channel = _DaskChannel(f"autofunscript-progress-{uuid.uuid4().hex}",
                                    f"autofunscript-stop-{uuid.uuid4().hex}")
        self.queue = Queue(self.channel.queue_name, client=self.client)
        self.stop = Event(self.channel.event_name, client=self.client)
        self.submitted: dict[str, tuple[Any, VideoJob]] = {}  # by task key: future and job
        self.worker_seen = self.worker_checked = time.monotonic()

    def submit(self, job: VideoJob) -> Any:
        future = self.client.submit(process_video, job, self.channel, pure=False,
                                    key=f"video-{job.index}-{uuid.uuid4().hex}")
        self.submitted[future.key] = future, job
        return future

    def done(self, handle: Any) -> bool:
        return handle.done()

    def outcome(self, handle: Any) -> VideoOutcome:
        if handle.cancelled():  # by request_stop, before it started
            job = self.submitted[handle.key][1]
            return VideoOutcome(job.video, job.script, INTERRUPTED)
        return handle.result()

    def progress(self) -> list[tuple[int, float, float]]:
        self._check_workers()
        return [tuple(m) for m in self.queue.get(batch=True)]

    def _check_workers(self) -> None:
        """Fail rather than wait forever on a scheduler without workers (none started, or all gone)."""
        now = time.monotonic()
        if now - self.worker_checked < 1.0:
            return
        self.worker_checked = now
        if self.client.nthreads():
            self.worker_seen = now
        elif now - self.worker_seen > NO_WORKERS_TIMEOUT_S:
            raise AutofunscriptError(f"{self.address or 'local cluster'}: the Dask scheduler has had no workers "
                                     f"for {NO_WORKERS_TIMEOUT_S:.0f} s; finished scripts are kept")

    def request_stop(self) -> None:
        self.stop.set()
        # Tasks not yet on a worker are cancelled, so a stop needs no worker (there may be none). Any task that
        # starts from here on sees the stop flag and returns at once, so the race with cancel is harmless.
        started = {key for keys in self.client.processing().values() for key in keys}
        self.client.cancel([f for key, (f, _) in self.submitted.items() if key not in started and not f.done()])

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _RayChannelState:
    """Held by a Ray actor: progress messages waiting for the driver, and the stop flag."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, float, float]] = []
        self.stop = False

    def push(self, index: int, done_s: float, total_s: float) -> None:
        self.messages.append((index, done_s, total_s))

    def drain(self) -> list[tuple[int, float, float]]:
        messages, self.messages = self.messages, []
        return messages

    def set_stop(self) -> None:
        self.stop = True

    def stopped(self) -> bool:
        return self.stop


class _RayChannel:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def report(self, index: int, done_s: float, total_s: float) -> None:
        self.actor.push.remote(index, done_s, total_s)

    def stop_requested(self) -> bool:
        import ray

        return ray.get(self.actor.stopped.remote())


class _RayEngine:
    def __init__(self, workers: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise AutofunscriptError("--engine ray needs Ray: pip install 'autofunscript[ray]'") from None
        self.ray = ray
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                with _sigint_ignored():
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR)
        except (ConnectionError, ValueError) as exc:  # unreachable, or not an address
            raise AutofunscriptError(f"{address or 'local Ray'}: cannot reach the Ray cluster ({exc})") from None
        self.workers = max(int(ray.cluster_resources().get("CPU", 1)), 1)
        self.channel = _RayChannel(ray.remote(_RayChannelState).remote())
        self.task = ray.remote(num_cpus=1)(process_video)

    def submit(self, job: VideoJob) -> Any:
        return self.task.remote(job, self.channel)

    def done(self, handle: Any) -> bool:
        ready, _ = self.ray.wait([handle], timeout=0)
        return bool(ready)

    def outcome(self, handle: Any) -> VideoOutcome:
        return self.ray.get(handle)

    def progress(self) -> list[tuple[int, float, float]]:
        return self.ray.get(self.channel.actor.drain.remote())

    def request_stop(self) -> None:
        self.ray.get(self.channel.actor.set_stop.remote())

    def close(self) -> None:
        self.ray.shutdown()


@contextmanager
def open_engine(name: str, workers: int, address: str | None = None) -> Iterator[Engine]:
    """An engine with `workers` slots (a cluster at `address` decides its own size)."""
    if name == "local":
        if address:
            raise AutofunscriptError("--address needs a cluster engine (--engine dask or --engine ray)")
        engine: Any = _LocalEngine(workers)
    elif name == "dask":
        engine = _DaskEngine(workers, address)
    elif name == "ray":
        engine = _RayEngine(workers, address)
    else:
        raise AutofunscriptError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    try:
        yield engine
    finally:
        engine.close()


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --- the batch loop -----------------------------------------------------------------------------------


class BatchListener(Protocol):
    def started(self, jobs: list[VideoJob], workers: int) -> None: ...

    def progress(self, job: VideoJob, done_s: float, total_s: float) -> None: ...

    def finished(self, outcome: VideoOutcome) -> None: ...


@dataclass
class BatchResult:
    outcomes: list[VideoOutcome]  # one per video, in the order found
    elapsed_s: float
    stop_signal: int  # the signal (Ctrl+C, SIGTERM) that stopped the run; 0 if none
    engine: str
    workers: int

    @property
    def interrupted(self) -> bool:
        return self.stop_signal != 0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]


OTHER_SETTINGS = "made with other settings than this run's (--force regenerates it)"


def _made_with_other_settings(script: Path, options: GenerateOptions) -> bool:
    """Whether a finished script's notes (as generate writes them) name settings other than `options`.

    Resuming skips by file alone, so a rerun with changed options would quietly keep the old scripts;
    a script without such notes (made by hand or by another tool) is not judged.
    """
    try:
        notes = json.loads(script.read_text(encoding="utf-8"))["metadata"]["notes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(notes, str) or "settings: " not in notes:
        return False
    ours = f"settings: {settings_note(options)}"
    return f"{ours};" not in notes and not notes.endswith(ours)


def plan_jobs(videos: Sequence[Path], options: GenerateOptions,
              force: bool) -> tuple[list[VideoJob], dict[int, VideoOutcome]]:
    """Jobs for the videos still to do, and outcomes decided without running anything (skips, clashes)."""
    jobs: list[VideoJob] = []
    decided: dict[int, VideoOutcome] = {}
    owner: dict[Path, Path] = {}
    for index, video in enumerate(videos):
        script = script_path_for(video)
        first = owner.setdefault(script.resolve(), video)
        in_the_way = [p for p in (script, *(axis_path(script, axis) for axis in options.axes)) if p.is_dir()]
        if first is not video:
            decided[index] = VideoOutcome(video, script, FAILED,
                                          error=f"{video}: its script {script.name} is also {first.name}'s; rename one")
        elif in_the_way:
            decided[index] = VideoOutcome(video, script, FAILED, error=f"{video}: a folder is where its script "
                                          f"goes ({in_the_way[0]}); move or rename the folder")
        elif script.exists() and not force:
            decided[index] = VideoOutcome(video, script, SKIPPED)
            if _made_with_other_settings(script, options):
                decided[index].warnings.append(OTHER_SETTINGS)
        else:
            jobs.append(VideoJob(index, video, script, options, force))
    return jobs, decided


class _StopSignals:
    """Turn the first Ctrl+C or SIGTERM into a stop request (remembered in `signum`); a second one interrupts at once.

    A KeyboardInterrupt can land anywhere, even in a finaliser where Python swallows it, so the batch loop
    polls a flag instead. SIGTERM is handled like Ctrl+C, as the default (dying at once) would leave local
    workers running on their own. Signals are left alone outside the main thread and where they are ignored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    @property
    def stopping(self) -> bool:
        return self.signum != 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _drive(engine: Engine, jobs: list[VideoJob],
           listener: BatchListener | None) -> tuple[dict[int, VideoOutcome], int]:
    """Run the jobs to the end, or on Ctrl+C or SIGTERM stop the workers and collect what they finished.

    Returns the outcomes by job index and the signal that stopped the run (0 if none).
    """
    pending = {engine.submit(job): job for job in jobs}
    by_index = {job.index: job for job in jobs}
    outcomes: dict[int, VideoOutcome] = {}

    with _StopSignals() as stop:
        def collect() -> None:
            for index, done_s, total_s in engine.progress():
                if listener is not None and index in by_index and index not in outcomes:
                    listener.progress(by_index[index], done_s, total_s)
            for handle in [h for h in pending if engine.done(h)]:
                job = pending.pop(handle)
                try:
                    outcome = engine.outcome(handle)
                except Exception as exc:  # the worker died: the video is not done
                    outcome = VideoOutcome(job.video, job.script, INTERRUPTED if stop.stopping else FAILED,
                                           error=f"{job.video}: worker failed ({type(exc).__name__}: {exc})")
                outcomes[job.index] = outcome
                if listener is not None:
                    listener.finished(outcome)

        try:
            while pending and not stop.stopping:
                collect()
                time.sleep(POLL_INTERVAL_S)
        except KeyboardInterrupt:  # raised by a listener, or Ctrl+C outside the main thread's handler
            stop.signum = signal.SIGINT
        if stop.stopping:
            engine.request_stop()  # running videos stop at their next progress report, queued ones at their start
            while pending:
                collect()
                time.sleep(POLL_INTERVAL_S)
    return outcomes, stop.signum


def run_jobs(jobs: list[VideoJob], *, engine: str = "local", workers: int | None = None, address: str | None = None,
             listener: BatchListener | None = None) -> tuple[dict[int, VideoOutcome], int, int]:
    """Run jobs on an engine: their outcomes by job index, the signal that stopped the run (0 if none: see
    _drive), and the workers used."""
    if not jobs:
        return {}, 0, 0
    with open_engine(engine, min(workers or default_workers(), len(jobs)), address) as runner:
        if listener is not None:
            listener.started(jobs, runner.workers)
        outcomes, stop_signal = _drive(runner, jobs, listener)
        return outcomes, stop_signal, runner.workers


def run_batch(videos: Sequence[Path], options: GenerateOptions = GenerateOptions(), *, engine: str = "local",
              workers: int | None = None, address: str | None = None, force: bool = False,
              listener: BatchListener | None = None) -> BatchResult:
    """Generate a script beside each video; videos that already have one are skipped unless `force`."""
    started = time.perf_counter()
    jobs, outcomes = plan_jobs(videos, options, force)
    if listener is not None:
        for index in sorted(outcomes):
            listener.finished(outcomes[index])
    ran, stop_signal, slots = run_jobs(jobs, engine=engine, workers=workers, address=address, listener=listener)
    outcomes.update(ran)
    for job in jobs:  # only after Ctrl+C can a job lack an outcome
        outcomes.setdefault(job.index, VideoOutcome(job.video, job.script, INTERRUPTED))
    return BatchResult([outcomes[i] for i in range(len(videos))], time.perf_counter() - started, stop_signal,
                       engine, slots)


# --- reports ------------------------------------------------------------------------------------------


def load_scripts(result: BatchResult) -> list[Funscript | None]:
    """Each finished video's script (None for the others); fills in the stats of skipped videos."""
    scripts: list[Funscript | None] = []
    for outcome in result.outcomes:
        script = None
        if outcome.ok:
            try:
                script = read_funscript(outcome.script)
            except AutofunscriptError as exc:
                outcome.warnings.append(f"script unreadable: {exc}")
            else:
                if outcome.status == SKIPPED:
                    _describe_script(outcome, script)
        scripts.append(script)
    return scripts


def report_data(result: BatchResult, options: GenerateOptions) -> dict[str, Any]:
    videos = []
    for outcome in result.outcomes:
        item = asdict(outcome)
        item["video"], item["script"] = str(outcome.video), str(outcome.script)
        item["seconds"] = round(outcome.seconds, 3)
        item["video_seconds"] = round(outcome.video_seconds, 3)
        item["max_speed"] = round(outcome.max_speed, 1)
        videos.append(item)
    return {
        "generator": f"autofunscript {__version__}",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "engine": result.engine,
        "workers": result.workers,
        "elapsed_s": round(result.elapsed_s, 3),
        "interrupted": result.interrupted,
        "counts": {status: result.count(status) for status in (WRITTEN, SKIPPED, FAILED, INTERRUPTED)},
        "settings": _settings_dict(options),
        "videos": videos,
    }


def _settings_dict(options: GenerateOptions) -> dict[str, Any]:
    settings = asdict(options)
    if options.poi is not None:
        settings["poi"] = asdict(options.poi)
    return json.loads(json.dumps(settings, default=str))


def heatmap_png(script: Funscript, width: int = HEATMAP_SIZE[0], height: int = HEATMAP_SIZE[1]) -> bytes:
    import cv2

    from autofunscript.script.heatmap import render_heatmap

    ok, encoded = cv2.imencode(".png", render_heatmap(script, width, height))
    if not ok:
        raise AutofunscriptError("heatmap PNG encoding failed")
    return encoded.tobytes()


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; background: #181818; color: #ddd; margin: 2em; }
table { border-collapse: collapse; } th, td { padding: 6px 10px; border-bottom: 1px solid #333; text-align: left;
vertical-align: middle; } th { color: #aaa; font-weight: 600; } td.num { text-align: right; }
.written { color: #6c6; } .skipped { color: #8ac; } .failed { color: #f66; } .interrupted { color: #fb4; }
.warn { color: #fb4; } .error { color: #f66; } img { display: block; } small { color: #999; }
td.notes { min-width: 18em; max-width: 28em; }
"""


def report_html(result: BatchResult, options: GenerateOptions, scripts: Sequence[Funscript | None]) -> str:
    data = report_data(result, options)
    rows = []
    for outcome, item, script in zip(result.outcomes, data["videos"], scripts, strict=True):
        picture = ""
        if script is not None and len(script):
            encoded = base64.b64encode(heatmap_png(script)).decode("ascii")
            picture = f'<img alt="heatmap of {html.escape(outcome.script.name)}" src="data:image/png;base64,{encoded}">'
        notes = [f'<div class="warn">{html.escape(w)}</div>' for w in outcome.warnings]
        if outcome.error:
            notes.append(f'<div class="error">{html.escape(outcome.error)}</div>')
        rows.append(
            f'<tr><td title="{html.escape(item["video"])}">{html.escape(outcome.video.name)}'
            f'<br><small>{html.escape(str(outcome.video.parent))}</small></td>'
            f'<td class="{outcome.status}">{outcome.status}</td>'
            f'<td class="num">{f"{outcome.seconds:.1f}" if outcome.status != SKIPPED else ""}</td>'
            f'<td class="num">{outcome.video_seconds:.1f}</td>'
            f'<td class="num">{outcome.strokes}</td><td class="num">{outcome.actions}</td>'
            f'<td class="num">{outcome.max_speed:.0f}</td><td class="notes">{"".join(notes)}</td>'
            f'<td>{picture}</td></tr>'
        )
    counts = ", ".join(f"{n} {status}" for status, n in data["counts"].items() if n)
    ran_on = f" ({html.escape(result.engine)} engine, {_count(result.workers, 'worker')})" if result.workers else ""
    stopped = "; interrupted" if result.interrupted else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>autofunscript batch report</title>"
        f"<style>{_HTML_STYLE}</style></head><body>\n"
        f"<h1>autofunscript batch report</h1>\n<p>{html.escape(counts)} in {result.elapsed_s:.1f} s"
        f"{ran_on}{stopped}. "
        f"<small>{html.escape(data['generator'])}, {html.escape(data['finished'])}</small></p>\n"
        "<table><thead><tr><th>video</th><th>status</th><th>time (s)</th><th>length (s)</th><th>strokes</th>"
        "<th>actions</th><th>top speed</th><th>warnings</th><th>heatmap</th></tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )


_REPORT_MARKS = ('"generator": "autofunscript ', "<title>autofunscript batch report</title>")


def _is_a_report(path: Path) -> bool:
    """Whether a file is an earlier batch report (which a run replaces), judged by its first bytes."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512).decode("utf-8", "replace")
    except OSError:
        return False
    return any(mark in head for mark in _REPORT_MARKS)


def check_report_path(path: Path) -> None:
    """Refuse a report path before any video is started: after hours of work is too late to hear of a typo."""
    if not path.is_dir() and path.suffix.lower() not in REPORT_SUFFIXES:
        raise AutofunscriptError(f"{path}: the report is JSON or HTML, name the file *.json or *.html")
    check_output_path(path, force=True, what="report file")  # replacing is judged below
    if path.exists() and not _is_a_report(path):
        raise AutofunscriptError(f"{path}: exists and is not a batch report; choose another name")


def write_report(result: BatchResult, options: GenerateOptions, path: Path) -> None:
    """JSON or HTML by the file's suffix; an earlier report is replaced, as it describes the whole batch."""
    check_report_path(path)  # again: the file system may have changed during the run
    scripts = load_scripts(result)
    if path.suffix.lower() == ".json":
        text = json.dumps(report_data(result, options), indent=2) + "\n"
    else:
        text = report_html(result, options, scripts)
    atomic_write_text(path, text, force=True)


# --- the command-line face ----------------------------------------------------------------------------


def outcome_line(outcome: VideoOutcome) -> str:
    if outcome.status == WRITTEN:
        line = (f"written  {outcome.script}: {outcome.actions} actions, {outcome.strokes} strokes, "
                f"{outcome.video_seconds:.0f} s of video in {outcome.seconds:.1f} s")
        return "; ".join([line, *outcome.warnings])
    if outcome.status == SKIPPED:
        return "; ".join([f"skipped  {outcome.video}: {outcome.script.name} exists", *outcome.warnings])
    if outcome.status == FAILED:
        return f"failed   {outcome.error}"
    return f"stopped  {outcome.video}: interrupted, nothing written"


class ProgressDisplay:
    """An overall bar with ETA, one bar per running video, and a line per finished video."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                             transient=True, disable=not console.is_terminal)
        self.overall: TaskID | None = None
        self.running: dict[Path, TaskID] = {}
        self.fractions: dict[Path, float] = {}
        self.done = 0

    def __enter__(self) -> ProgressDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def started(self, jobs: list[VideoJob], workers: int) -> None:
        self.overall = self.bars.add_task(f"{_count(len(jobs), 'video')}, {workers} at a time", total=len(jobs))

    def progress(self, job: VideoJob, done_s: float, total_s: float) -> None:
        if job.video not in self.running:
            self.running[job.video] = self.bars.add_task(f"  {job.video.name}", total=1.0)
        fraction = min(max(done_s / total_s, 0.0), 1.0) if total_s > 0 else 0.0
        self.fractions[job.video] = fraction
        self.bars.update(self.running[job.video], completed=fraction)
        self._update_overall()

    def finished(self, outcome: VideoOutcome) -> None:
        if outcome.status == SKIPPED:
            log.debug(outcome_line(outcome))
            return
        task = self.running.pop(outcome.video, None)
        if task is not None:
            self.bars.remove_task(task)
        self.fractions.pop(outcome.video, None)
        self.done += 1
        self._update_overall()
        self.console.print(outcome_line(outcome), markup=False, highlight=False, soft_wrap=True)

    def _update_overall(self) -> None:
        if self.overall is not None:
            self.bars.update(self.overall, completed=self.done + sum(self.fractions.values()))


def summary_line(result: BatchResult) -> str:
    counts = [f"{result.count(status)} {status}" for status in (WRITTEN, SKIPPED, FAILED, INTERRUPTED)
              if result.count(status) or status in (WRITTEN, FAILED)]
    return f"{_count(len(result.outcomes), 'video')}: {', '.join(counts)} in {result.elapsed_s:.1f} s"


EXIT_SOME_FAILED = 1


def run_cli(paths: Sequence[Path], options: GenerateOptions, *, recursive: bool, engine: str, workers: int | None,
            address: str | None, force: bool, report: Path | None) -> int:
    """The `batch` command: returns 0 when every video has a script, 1 when some failed, 130 after Ctrl+C
    (143 after SIGTERM)."""
    if report is not None:
        check_report_path(report)
    if address and workers:
        log.warning("--workers is ignored with --address: the cluster at %s has the workers it has", address)
    videos = find_videos(paths, recursive)
    if not videos:
        where = ", ".join(map(str, paths))
        raise AutofunscriptError(f"{where}: no videos found ({' '.join(sorted(VIDEO_EXTENSIONS))}"
                                 f"{'' if recursive else '; --recursive looks into subfolders'})")
    console = Console(highlight=False)
    with ProgressDisplay(console) as display:
        result = run_batch(videos, options, engine=engine, workers=workers, address=address, force=force,
                           listener=display)
    console.print(summary_line(result), markup=False, soft_wrap=True)
    if older := sum(OTHER_SETTINGS in o.warnings for o in result.outcomes if o.status == SKIPPED):
        console.print(f"note: {_count(older, 'skipped script')} made with other settings than this run's; "
                      "--force regenerates every script", markup=False, soft_wrap=True)
    if report is not None:
        write_report(result, options, report)
        console.print(f"report: {report}", markup=False, soft_wrap=True)
    if result.interrupted:
        console.print("interrupted: finished scripts are kept; run the same command again to do the rest",
                      markup=False, soft_wrap=True)
        return 128 + result.stop_signal  # the shell's convention: 130 after Ctrl+C, 143 after SIGTERM
    return EXIT_SOME_FAILED if result.failed else 0
