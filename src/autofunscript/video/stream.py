"""Video decoding with PyAV: probing, fast sequential frames and seeking, with exact timestamps.

Every consumer (generate, viewer, model, batch) reads frames through here, so the decode loop is the
product's speed budget: decoding runs on FFmpeg's frame threads, and a producer thread scales each
frame (one swscale pass, see picture.py) and hands it over through a small bounded queue, so decoding
overlaps the consumer's own work while memory stays flat.

Times are always the stream's presentation timestamps, never index/fps, so variable frame rate,
B-frames and late starts come out exact. They count from the container's start time (the earliest
stream), which is where a player's clock starts, so a script made from them plays in sync even when
the video starts later than the audio.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from autofunscript.clock import parse_clock
from autofunscript.errors import VideoError, input_file_size
from autofunscript.video.picture import PictureMaker, PicturePlan, plan_picture

log = logging.getLogger("autofunscript")

# Bigger frames than this are refused: decoding them on a CPU is impractically slow and a corrupt
# header can claim any size. 8K (7680x4320) and 8K VR (8192x4096) are well inside.
MAX_FRAME_PIXELS = 8192 * 8192
# The queue between the decode thread and the consumer: a few frames are enough to smooth out
# jitter, more only costs memory (bounded in bytes too, for full-size 8K frames).
QUEUE_FRAMES = 8
QUEUE_BYTES = 64 * 1024 * 1024
# Seeks land on the keyframe at or before a decode timestamp, and a keyframe is presented a few frames
# after it is decoded, so seek a little before the wanted time; if the keyframe found still lies after
# it, go back further in steps of at least SEEK_BACKOFF_S.
SEEK_MARGIN_S = 0.2
SEEK_BACKOFF_S = 1.0
# read_at decodes forward instead of seeking when the wanted time is this close after the current frame.
READ_FORWARD_S = 2.0
# A file whose frames stop this much short of the duration its index promised is truncated or damaged.
TRUNCATION_SLACK_S = 0.5
# Give up on a file after this many read errors in a row (the rest of it is unreadable).
MAX_CONSECUTIVE_READ_ERRORS = 20

# The deblocking filter is skipped where no error can propagate (frames nothing references): a few
# percent faster, and the pictures change by < 0.02 grey levels on average.
DEBLOCKED = {"skip_loop_filter": "noref"}
# For motion analysis it is skipped on every frame: about 10 % less CPU (1080p H.264), which is most of
# what separates generate from plain decoding. The unfiltered block edges carry into the frames that
# reference them and grow over a GOP until the next keyframe (0.3-1 grey level on average at 320 px wide
# on the real clips); the cell velocities at keyframes rise about as much as the encoder's own keyframe
# pumping moves them. The accuracy suite's means rise on hard and vr and move by under 0.01 elsewhere,
# though single cases move both ways (docs/history.md, Accuracy, session 14). Not for pictures a person watches:
# blocking shows at full size.
UNDEBLOCKED = {"skip_loop_filter": "all"}


@dataclass(frozen=True)
class VideoInfo:
    """What probe() learns about a video.

    width/height are the upright display size (after rotation; pixel aspect ratio is ignored).
    fps is the average frame rate of the frames' timestamps where the container indexes every frame
    (MP4/MOV: headers there can be wrong), else the stream header's average. duration_s is where the last
    frame ends, on the same clock as Frame.time_s. frame_count is exact when frame_count_exact is True,
    otherwise an estimate from duration and fps. rotation is the clockwise turn (0/90/180/270) applied to
    frames to make them upright.
    """

    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    rotation: int
    has_audio: bool
    frame_count_exact: bool
    codec: str


@dataclass(frozen=True)
class Frame:
    """One output frame.

    index counts frames in presentation order from the file's first frame (after a seek it is exact where
    the container indexes every frame, MP4/MOV, and round(time_s * fps) elsewhere). time_s is the
    presentation time in seconds from the start of the video. image is HxW uint8 grey, or HxWx3 BGR.
    """

    index: int
    time_s: float
    image: np.ndarray


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, timing and rotation, decoding its first frame to prove it is decodable."""
    with _Decoder(Path(path)) as decoder:
        return decoder.probe()


def open_video(path: str | Path) -> VideoStream:
    """Open a video for reading frames: `with open_video(p) as video: for frame in video.frames(): ...`."""
    return VideoStream(probe(path))


class VideoStream:
    """A probed video. frames() may run several times (each run decodes on its own); read_at() keeps
    one decoder open between calls so that stepping through nearby times is cheap."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self._seeker: _Seeker | None = None
        self._read_maker: PictureMaker | None = None

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._seeker is not None:
            self._seeker.close()
            self._seeker = None

    def plan(self, width: int | None = None, color: bool = False, eye: str | None = None) -> PicturePlan:
        """The output size and format that frames()/read_at() with these arguments produce."""
        return plan_picture(self.info.width, self.info.height, self.info.rotation, width, color, eye)

    def frames(self, start_s: float = 0.0, end_s: float | None = None, width: int | None = None,
               color: bool = False, eye: str | None = None, deblock: bool = True) -> Iterator[Frame]:
        """Frames with start_s <= time_s < end_s, in presentation order.

        width scales the output (height keeps the aspect, even) during decoding; eye picks one half of a
        VR frame ("sbs": left half, "ou": top half) before scaling, so width is the eye's width. start_s
        seeks to the keyframe before it and decodes forward. Damaged packets are skipped and a truncated
        file ends early, each with one logged warning. deblock=False skips the deblocking filter
        (faster; for analysis, not for display).
        """
        plan = self.plan(width, color, eye)
        capacity = max(2, min(QUEUE_FRAMES, QUEUE_BYTES // plan.bytes_per_frame))
        handoff: queue.Queue = queue.Queue(maxsize=capacity)
        stop = threading.Event()
        producer = threading.Thread(
            target=_produce, args=(self.info, plan, start_s, end_s, deblock, handoff, stop),
            name=f"decode {self.info.path.name}", daemon=True)
        producer.start()
        try:
            while True:
                item = handoff.get()
                if isinstance(item, Frame):
                    yield item
                elif isinstance(item, BaseException):
                    raise item
                else:
                    return
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    handoff.get(timeout=0.05)
                except queue.Empty:
                    pass
            producer.join()

    def read_at(self, time_s: float, width: int | None = None, color: bool = False,
                eye: str | None = None) -> Frame:
        """The frame on screen at time_s: the last one with time_s <= the wanted time (the first frame
        before the video starts, the last one after it ends)."""
        if self._seeker is None:
            self._seeker = _Seeker(self.info)
        index, frame_time, frame = self._seeker.frame_at(time_s)
        plan = self.plan(width, color, eye)
        if self._read_maker is None or self._read_maker.plan != plan:
            self._read_maker = PictureMaker(plan)
        return Frame(index, frame_time, self._read_maker(frame))


@dataclass
class _Decoded:
    index: int
    time_s: float
    frame: av.VideoFrame


class _Decoder:
    """One open container decoding its video stream, with damage accounting."""

    def __init__(self, path: Path, fps: float = 0.0, deblock: bool = True) -> None:
        self.path = path
        self.deblock = deblock
        self._open()
        self.time_base = self.stream.time_base or Fraction(1, 90000)
        start_us = self.container.start_time
        self.start_pts = (round(Fraction(start_us, 1_000_000) / self.time_base) if start_us is not None
                          else self.stream.start_time or 0)
        self.sample_dts = _sample_decode_times(self.container, self.stream)
        self.damaged_packets = 0
        self.read_failed = False
        self._fps = fps  # the probed rate: numbers frames after a seek where the container has no index

    def _open(self) -> None:
        self.container = _open_container(self.path)
        try:
            self.stream = _video_stream(self.container, self.path)
            codec = self.stream.codec_context
            codec.thread_type = "AUTO"
            codec.options = dict(DEBLOCKED if self.deblock else UNDEBLOCKED)
        except BaseException:
            self.container.close()
            raise
        self._fresh = True

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def probe(self) -> VideoInfo:
        stream, path = self.stream, self.path
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_FRAME_PIXELS:
            raise VideoError(f"{path}: frame size {width}x{height} is larger than 8192x8192 pixels")
        first = next(self.decode_from(0.0), None)
        if first is None:
            raise VideoError(f"{path}: no decodable video frames")
        if first.frame.width * first.frame.height > MAX_FRAME_PIXELS:
            raise VideoError(f"{path}: frame size {first.frame.width}x{first.frame.height} is larger than "
                             "8192x8192 pixels")
        rotation = _upright_rotation(first.frame.rotation)
        width, height = first.frame.width, first.frame.height
        if rotation in (90, 270):
            width, height = height, width
        fps, duration_s, frame_count, exact = self._timing(first.time_s)
        return VideoInfo(path=path, width=width, height=height, fps=fps, duration_s=duration_s,
                         frame_count=frame_count, rotation=rotation,
                         has_audio=bool(self.container.streams.audio), frame_count_exact=exact,
                         codec=stream.codec_context.name)

    def _timing(self, first_time_s: float) -> tuple[float, float, int, bool]:
        """(fps, duration_s, frame_count, frame_count_exact); duration_s is where the last frame ends.

        Where every frame is indexed (MP4/MOV) the header is not trusted: edit lists make it count frames
        the decoder drops. There a constant rate (nearly all decode steps equal) takes that step, a variable
        one the average between the first and last frames' presentation times.
        """
        dts = self.sample_dts
        fps = _constant_rate(dts, self.time_base) if dts is not None else None
        last_time_s = self._last_frame_time_s()
        if last_time_s is not None and self._indexed_past_file_end():
            last_time_s = None  # the packets left in the file stop early: only the index knows the video's length
        if fps is None:
            if dts is not None and last_time_s is not None and last_time_s > first_time_s:
                fps = (len(dts) - 1) / (last_time_s - first_time_s)
            else:
                fps = next((float(rate) for rate in (self.stream.average_rate, self.stream.guessed_rate)
                            if rate and 0 < float(rate) < 1000), 25.0)
        if last_time_s is not None:
            duration_s = last_time_s + 1 / fps
            promised_s = self._promised_end_s(first_time_s, fps) if dts is None else None
            if promised_s is not None and duration_s < promised_s - TRUNCATION_SLACK_S:
                duration_s = promised_s  # the file stops before its header says the video ends: cut short
        elif dts is not None:
            duration_s = first_time_s + len(dts) / fps
        elif self.stream.duration:
            duration_s = first_time_s + float(self.stream.duration * self.time_base)
        else:
            duration_s = (self.container.duration or 0) / 1_000_000
        if dts is not None:
            return fps, duration_s, len(dts), True
        return fps, duration_s, max(1, round((duration_s - first_time_s) * fps)), False

    def _promised_end_s(self, first_time_s: float, fps: float) -> float | None:
        """Where the header, written before the frames, says the video stream ends, in the frames' time (from the
        stream's start): Matroska's DURATION tag of the stream, an AVI header's frame count. None where the header
        says nothing of its own (MPEG-TS), or only for every stream at once (the audio may run longer)."""
        tag = duration_tag(self.stream.metadata)
        if tag:
            try:
                # ffmpeg counts it from zero; a muxer counting from the stream's start makes the promise shorter,
                # so a file read this way is never wrongly called cut short
                return parse_clock(tag) - float(self.start_pts * self.time_base)
            except ValueError:
                return None
        if self.stream.frames and self.container.format.name == "avi":
            return first_time_s + self.stream.frames / fps
        return None

    def _indexed_past_file_end(self) -> bool:
        """Whether the index places the last frame's data beyond the end of the file: the file was cut short
        after its index was written (in front, as for streaming), so the last packets in it are not the video's
        end (nor do they give its frame rate), and the index's promise is what decoding is checked against."""
        entries = self.stream.index_entries if self.sample_dts is not None else None
        return bool(entries) and entries[-1].pos + entries[-1].size > self.path.stat().st_size

    def _last_frame_time_s(self) -> float | None:
        """The last frame's presentation time, read from the packets at the end of the file.

        Headers of formats without a full index disagree on whether a duration counts from zero or from
        the start time, and some have none; the timestamps themselves are unambiguous.
        """
        header_s = max(float((self.stream.duration or 0) * self.time_base), (self.container.duration or 0) / 1e6)
        if header_s <= 0:
            return None
        self._fresh = False  # whatever happens, the next decode must seek back to the start
        last_pts = None
        try:
            beyond_end = self.start_pts + math.ceil(Fraction(header_s + 60) / self.time_base)
            self.container.seek(beyond_end, stream=self.stream, backward=True)
            for packet in self.container.demux(self.stream):
                if packet.pts is not None and (last_pts is None or packet.pts > last_pts):
                    last_pts = packet.pts
        except av.error.FFmpegError:
            return None
        if last_pts is None:
            return None
        return float((last_pts - self.start_pts) * self.time_base)

    def decode_from(self, start_s: float) -> Iterator[_Decoded]:
        """Decoded frames in presentation order, starting at or (usually) a little before start_s."""
        target = start_s - SEEK_MARGIN_S
        while True:
            frames = self._decode_after_seek(target)
            first = next(frames, None)
            if target <= 0 or (first is not None and first.time_s <= start_s):
                if first is not None:
                    yield first
                    yield from frames
                return
            frames.close()
            # the seek landed after start_s (keyframe presented late, or an approximate seek): go further back
            target -= max(SEEK_BACKOFF_S, first.time_s - start_s if first is not None else 0.0)

    def _decode_after_seek(self, target_s: float) -> Iterator[_Decoded]:
        if target_s > 0:
            self._seek(target_s)
        elif not self._fresh:
            # Reopen rather than seek to zero: timestamp seeks in formats without an index (MPEG-TS) can
            # land after the first frame, and frames are only counted exactly from the very first one.
            self.container.close()
            self._open()
        self._fresh = False
        codec = self.stream.codec_context
        index: int | None = 0 if target_s <= 0 else None
        last_time = -math.inf
        for packet in itertools.chain(self._packets(), [None]):  # None drains the frames the decoder holds
            if index is None and packet is not None:
                index = self._sample_number(packet.dts)
            for frame in self._decode(codec, packet):
                last_time = self._frame_time(frame, last_time)
                if index is None:
                    index = round(last_time * self._fps)
                yield _Decoded(index, last_time, frame)
                index += 1

    def _seek(self, target_s: float) -> None:
        target_pts = self.start_pts + math.floor(Fraction(max(target_s, 0.0)) / self.time_base)
        try:
            self.container.seek(target_pts, stream=self.stream, backward=True)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot seek ({exc.strerror})") from None

    def _sample_number(self, dts: int | None) -> int | None:
        """The frame number of a keyframe that decoding restarts at, from the container's index."""
        if self.sample_dts is None or dts is None:
            return None
        return bisect.bisect_left(self.sample_dts, dts)

    def _frame_time(self, frame: av.VideoFrame, previous: float) -> float:
        if frame.pts is None:  # elementary streams without timestamps: assume the nominal rate
            return previous + 1 / (self._fps or 25.0) if previous > -math.inf else 0.0
        return float((frame.pts - self.start_pts) * self.time_base)

    def _packets(self) -> Iterator[av.Packet]:
        """The video stream's packets; read errors are counted and skipped, many in a row end the file."""
        errors_in_a_row = 0
        while True:
            try:
                for packet in self.container.demux(self.stream):
                    errors_in_a_row = 0
                    if packet.size:  # empty packets are PyAV's end-of-stream markers: we drain ourselves
                        yield packet
                return
            except av.error.FFmpegError:
                self.damaged_packets += 1
                errors_in_a_row += 1
                if errors_in_a_row >= MAX_CONSECUTIVE_READ_ERRORS:
                    self.read_failed = True
                    return

    def _decode(self, codec: av.codec.context.CodecContext, packet: av.Packet | None) -> list[av.VideoFrame]:
        try:
            frames = codec.decode(packet)
        except av.error.EOFError:
            return []
        except av.error.FFmpegError:
            self.damaged_packets += 1
            return []
        for frame in frames:
            if frame.is_corrupt:
                self.damaged_packets += 1
        return frames

    def warn_damage(self) -> None:
        if self.damaged_packets:
            log.warning("%s: skipped %d damaged packet(s) or frame(s)", self.path, self.damaged_packets)


class _Seeker:
    """read_at()'s decoder: remembers where it is so that small steps forward need no seek."""

    def __init__(self, info: VideoInfo) -> None:
        self.decoder = _Decoder(info.path, fps=info.fps)
        self._frames: Iterator[_Decoded] | None = None
        self._current: _Decoded | None = None
        self._next: _Decoded | None = None

    def close(self) -> None:
        self.decoder.close()

    def frame_at(self, time_s: float) -> tuple[int, float, av.VideoFrame]:
        current = self._current
        near_ahead = current is not None and current.time_s <= time_s < current.time_s + READ_FORWARD_S
        if not near_ahead:
            self._frames = self.decoder.decode_from(time_s)
            self._current, self._next = None, None
        self._advance_to(time_s)
        if self._current is None:
            raise VideoError(f"{self.decoder.path}: no frame could be decoded near {time_s:.3f} s")
        return self._current.index, self._current.time_s, self._current.frame

    def _advance_to(self, time_s: float) -> None:
        assert self._frames is not None
        while True:
            if self._next is None:
                self._next = next(self._frames, None)
                if self._next is None:  # end of the video: keep the last frame
                    return
            if self._current is not None and self._next.time_s > time_s:
                return
            self._current, self._next = self._next, None


def _produce(info: VideoInfo, plan: PicturePlan, start_s: float, end_s: float | None, deblock: bool,
             handoff: queue.Queue, stop: threading.Event) -> None:
    """The decode thread behind VideoStream.frames(): decode, convert, queue; errors go to the consumer."""

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    decoder = None
    try:
        decoder = _Decoder(info.path, fps=info.fps, deblock=deblock)
        make_picture = PictureMaker(plan)
        last_time = None
        finished = True
        for decoded in decoder.decode_from(start_s):
            if decoded.time_s < start_s:
                continue
            if end_s is not None and decoded.time_s >= end_s:
                break
            if not hand_over(Frame(decoded.index, decoded.time_s, make_picture(decoded.frame))):
                finished = False
                break
            last_time = decoded.time_s
        else:
            _warn_if_cut_short(info, decoder, start_s, last_time)
        decoder.warn_damage()
        if finished:
            hand_over(None)
    except BaseException as exc:  # the consumer re-raises it in its own thread
        hand_over(exc)
    finally:
        if decoder is not None:
            decoder.close()


def _warn_if_cut_short(info: VideoInfo, decoder: _Decoder, start_s: float, last_time: float | None) -> None:
    ended_s = start_s if last_time is None else last_time + 1 / info.fps
    if decoder.read_failed or ended_s < info.duration_s - TRUNCATION_SLACK_S:
        log.warning("%s: decoding stopped at %.2f s of %.2f s (file truncated or damaged); later frames are missing",
                    info.path, ended_s, info.duration_s)


def _open_container(path: Path) -> av.container.InputContainer:
    size = input_file_size(path, VideoError, "a video")
    if size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a video or an unknown/damaged format ({exc.strerror})") from None
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):  # FFmpeg's image readers
        container.close()
        raise VideoError(f"{path}: a still image, not a video")
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    # cover art in audio files is a one-picture "video" stream; it is not a video
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        what = "audio only, no video stream" if container.streams.audio else "no video stream"
        raise VideoError(f"{path}: {what}")
    return streams[0]


def _sample_decode_times(container: av.container.InputContainer,
                         stream: av.video.stream.VideoStream) -> list[int] | None:
    """Every frame's decode timestamp, sorted, when the container indexes every frame (MP4/MOV); else None.

    Samples an edit list cuts away are flagged as discarded: the decoder drops them, so they are no frames.
    """
    if "mp4" not in container.format.name or not stream.frames:
        return None
    entries = stream.index_entries
    if len(entries) != stream.frames:
        return None
    return sorted(entry.timestamp for entry in entries if not entry.is_discard)


def duration_tag(metadata: dict[str, str]) -> str | None:
    """A Matroska stream's DURATION tag. FFmpeg names a tag with a language other than "und" NAME-lang, and
    mkvmerge has written it as English, so DURATION-eng is the same promise."""
    for key, value in metadata.items():
        if key.upper() == "DURATION" or key.upper().startswith("DURATION-"):
            return value
    return None


def _constant_rate(decode_times: list[int], time_base: Fraction) -> float | None:
    """The frame rate when nearly all steps between decode times are equal, else None."""
    steps = np.diff(decode_times)
    if len(steps) == 0:
        return None
    step = float(np.median(steps))
    if step <= 0 or np.mean(steps == step) < 0.9:
        return None
    return 1 / float(step * time_base)


def _upright_rotation(counterclockwise: float | int) -> int:
    """The display matrix's counterclockwise angle as the clockwise turn (0/90/180/270) that makes frames upright."""
    return int(round(-counterclockwise / 90)) % 4 * 90
