"""Video decoding: a video file -> the uint8 RGB frames at chosen indices, with decord, PyAV or torchcodec.

`decode_video` opens a file, lets the caller choose frame indices from the file's `VideoInfo` and decodes only
those frames; a file that no backend can read raises `VideoDecodeError` naming the file, a diagnosis and every
backend tried. `WindowFrameCache` keeps the transformed frames of the previous evaluation window, so that the
next, overlapping window decodes only its new frames.
"""

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

DECODE_BACKENDS = ("decord", "pyav", "torchcodec")
# "auto" tries these in order: PyAV (seeking through the packet index, converting only the requested frames) is
# faster than decord on the same frames and gives the same pixels; torchcodec is opt-in (it needs system FFmpeg
# libraries and lost the benchmark).
AUTO_DECODE_ORDER = ("pyav", "decord")
# A decoder may report a frame or two fewer than the container header (B-frame reordering, edit lists);
# anything beyond this is treated as a truncated file.
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_RATIO = 0.01


class VideoDecodeError(RuntimeError):
    """A video file could not be decoded; the message names the file, the diagnosis and every backend tried."""

    def __init__(self, path, reason: str, attempts: Sequence[tuple[str, str]] = ()):
        self.path = str(path)
        self.reason = reason
        self.attempts = list(attempts)
        tried = "; ".join(f"{backend}: {error}" for backend, error in self.attempts) or "none"
        super().__init__(f"Cannot decode video '{self.path}': {reason}. Backends tried -> {tried}")


@dataclass
class VideoInfo:
    """What a decoder reports about a video file.

    `num_frames` is the number of decodable frames according to the backend that opened the file (the
    total OpenTAD samples from); `header_num_frames` is the container header's count (0 when unknown).
    """

    path: str
    backend: str
    num_frames: int
    fps: float
    header_num_frames: int = 0

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def _diagnose_file(path: Path, attempts: Sequence[tuple[str, str]] = ()) -> str:
    """Short human reason for a file that no backend could open."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    if attempts and all(error.startswith("not installed") for _, error in attempts):
        names = " and ".join(name for name, _ in attempts)
        return (
            f"no decoder is available ({names} not installed), so the file was not read; install one "
            "(pip install decord, or pip install av) or choose an installed decode_backend"
        )
    stream_types = _stream_types(path)
    if stream_types is not None and "video" not in stream_types:
        if "audio" in stream_types:
            return "the file has an audio stream but no video stream (an audio-only file)"
        return f"the file has no video stream (streams: {sorted(stream_types) or 'none'})"
    with open(path, "rb") as handle:
        head = handle.read(64)
    looks_like_text = all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head)
    if looks_like_text:
        return f"the file is not a video (it starts with text: {head[:32]!r})"
    return f"the file ({size} bytes) is corrupt or truncated (e.g. an MP4 whose index/moov atom is missing)"


def _stream_types(path: Path) -> set[str] | None:
    """Kinds of stream in the container ("video", "audio", ...) per PyAV; None if PyAV cannot tell."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            return {stream.type for stream in container.streams}
    except Exception:  # PyAV raises its own error types for unreadable files: then nothing is known
        return None


def _file_version(path: str) -> tuple[str, int, int]:
    """(path, modification time, size): what tells a file's cached facts from a rewritten file's."""
    stat = os.stat(path)
    return path, stat.st_mtime_ns, stat.st_size


def _read_header_frame_count(path: str) -> int:
    """Frame count written in the container header (PyAV, no decoding); 0 if unknown or unreadable.

    Read once per file version: a data loader opens the same video for every window and epoch."""
    return _header_frame_count(*_file_version(path))


@functools.lru_cache(maxsize=4096)
def _header_frame_count(path: str, mtime_ns: int, size: int) -> int:
    try:
        import av
    except ImportError:
        return 0
    try:
        with av.open(path) as container:
            return int(container.streams.video[0].frames) if container.streams.video else 0
    except Exception:
        return 0


def _to_rgb_frames(frames: np.ndarray, path: str, backend: str) -> torch.Tensor:
    """[n, H, W, 3] uint8 array -> [n, 3, H, W] uint8 tensor (a channels-last view, no copy)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise RuntimeError(f"{backend} returned frames of shape {tuple(frames.shape)} and dtype {frames.dtype}")
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


class _DecordReader:
    """decord: random access through the container index, `get_batch` decodes only the requested frames."""

    name = "decord"

    def __init__(self, path: str, num_threads: int):
        # Optional backend: the try block also keeps transformers' remote-code import check from requiring it.
        try:
            import decord
        except ImportError:
            raise

        self.path = path
        self._reader = decord.VideoReader(path, num_threads=num_threads)
        self.num_frames = len(self._reader)
        # decord applies the container's display rotation itself.
        self.fps = float(self._reader.get_avg_fps())

    def read(self, indices: np.ndarray) -> torch.Tensor:
        frames = self._reader.get_batch(indices.tolist()).asnumpy()
        return _to_rgb_frames(frames, self.path, self.name)


# 8 bytes per frame (an hour at 30 fps: 0.9 MB), kept for the files a process read last.
@functools.lru_cache(maxsize=64)
def _frame_index(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The video stream's frame timestamps in display order and the positions of its keyframes, read from the
    packets without decoding (the whole file is read once per file version); None when a packet has no timestamp
    or two share one."""
    import av

    timestamps, keyframe = [], []
    with av.open(path) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:  # the empty packet at the end flushes the decoder
                if packet.pts is None:
                    return None
                timestamps.append(packet.pts)
                keyframe.append(packet.is_keyframe)
    order = np.argsort(timestamps, kind="stable")
    timestamps = np.asarray(timestamps, dtype=np.int64)[order]
    if len(timestamps) == 0 or np.any(timestamps[1:] == timestamps[:-1]):
        return None
    return timestamps, np.flatnonzero(np.asarray(keyframe, dtype=bool)[order])


class _FrameTimestampMismatch(Exception):
    """Decoded frames do not carry the timestamps of the container's packets (then frames are counted instead)."""


class _PyAVReader:
    """PyAV: seeks to the keyframe before each requested run of frames, decodes forward and converts to RGB only
    the requested frames, straight into one output array.

    Frames are numbered by their timestamps in display order, as decord numbers them; a file whose packets carry
    no timestamps is decoded from its start, counting frames. One `VideoReformatter` converts every frame (FFmpeg's
    swscale with its default settings: decord's pixels exactly)."""

    name = "pyav"

    def __init__(self, path: str, num_threads: int):
        import av

        self.path = path
        self._av = av
        self._num_threads = num_threads
        with av.open(path) as container:
            if not container.streams.video:
                raise RuntimeError("the file has no video stream")
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.guessed_rate or 0)
            self.num_frames = int(stream.frames)
            if self.num_frames <= 0:
                # Some containers (MKV, WebM) do not store a frame count: count the video packets instead.
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        from av.video.reformatter import VideoReformatter

        order = np.argsort(indices, kind="stable")
        targets = indices[order].tolist()
        output: np.ndarray | None = None
        rotation = 0
        reformatter = VideoReformatter()

        def store(position: int, frame):
            """Convert `frame` to RGB into the output row of `targets[position]`."""
            nonlocal output, rotation
            rgb = reformatter.reformat(frame, format="rgb24")
            plane = rgb.planes[0]
            # Rows may be padded beyond width * 3 bytes.
            pixels = np.frombuffer(plane, dtype=np.uint8).reshape(rgb.height, plane.line_size)[:, : rgb.width * 3]
            if output is None:
                output = np.empty((len(targets), rgb.height, rgb.width, 3), dtype=np.uint8)
            output[order[position]] = pixels.reshape(rgb.height, rgb.width, 3)
            rotation = frame.rotation

        index = _frame_index(*_file_version(self.path))
        try:
            if index is None:
                raise _FrameTimestampMismatch
            self._read_seeking(targets, store, *index)
        except _FrameTimestampMismatch:
            self._read_from_start(targets, store)
        frames = _to_rgb_frames(output, self.path, self.name)
        # PyAV does not apply the display matrix; rotate like decord and video players do (counter-clockwise).
        if rotation % 360:
            frames = torch.rot90(frames, k=round(rotation / 90) % 4, dims=(2, 3))
        return frames

    def _open(self):
        container = self._av.open(self.path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self._num_threads
        return container, stream

    def _truncated(self, num_decoded: int, requested: int) -> RuntimeError:
        return RuntimeError(
            f"only {num_decoded} frames could be decoded but frame {requested} was requested (the header "
            f"announces {self.num_frames}): the file is truncated"
        )

    def _read_seeking(self, targets: list[int], store, timestamps: np.ndarray, keyframes: np.ndarray):
        """Decode `targets` (ascending) through the packet index: a seek whenever a keyframe lies between the
        decoder's position and the next requested frame, so that frames before it are not decoded."""
        if targets[-1] >= len(timestamps):
            raise self._truncated(len(timestamps), targets[-1])
        container, stream = self._open()
        with container:
            frames, last_decoded, previous = None, -1, None
            for position, target in enumerate(targets):
                if target == last_decoded and previous is not None:  # a repeated index
                    store(position, previous)
                    continue
                keyframe = int(keyframes[max(np.searchsorted(keyframes, target, side="right") - 1, 0)])
                if frames is None or keyframe > last_decoded + 1:
                    container.seek(int(timestamps[keyframe]), stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                for frame in frames:
                    found = np.searchsorted(timestamps, frame.pts) if frame.pts is not None else len(timestamps)
                    if found >= len(timestamps) or timestamps[found] != frame.pts:
                        raise _FrameTimestampMismatch
                    last_decoded = int(found)
                    if last_decoded == target:
                        previous = frame
                        store(position, frame)
                        break
                    if last_decoded > target:  # the frame was never output (e.g. a seek past it)
                        raise _FrameTimestampMismatch
                else:
                    raise self._truncated(last_decoded + 1, target)

    def _read_from_start(self, targets: list[int], store):
        """Decode from the first frame, counting frames (files without usable timestamps)."""
        container, stream = self._open()
        with container:
            position, num_decoded = 0, 0
            for frame_index, frame in enumerate(container.decode(stream)):
                num_decoded = frame_index + 1
                while position < len(targets) and targets[position] == frame_index:
                    store(position, frame)
                    position += 1
                if position == len(targets):
                    return
        raise self._truncated(num_decoded, targets[-1])


class _TorchCodecReader:
    """torchcodec: index-based exact seeking (needs FFmpeg shared libraries on the system)."""

    name = "torchcodec"

    def __init__(self, path: str, num_threads: int):
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError:
            raise

        self.path = path
        self._decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=num_threads)
        metadata = self._decoder.metadata
        self.num_frames = int(metadata.num_frames or 0)
        self.fps = float(metadata.average_fps or 0)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        return self._decoder.get_frames_at(indices.tolist()).data


_READERS = {"decord": _DecordReader, "pyav": _PyAVReader, "torchcodec": _TorchCodecReader}


def _candidate_backends(backend: str) -> tuple[str, ...]:
    if backend == "auto":
        return AUTO_DECODE_ORDER
    if backend not in DECODE_BACKENDS:
        raise ValueError(f"`decode_backend` must be 'auto' or one of {DECODE_BACKENDS}, got {backend!r}.")
    return (backend,)


@dataclass
class DecodedVideo:
    """Frames read from a file: `frames` uint8 `(num_frames, 3, height, width)`, the file's info and the sample."""

    frames: torch.Tensor
    info: VideoInfo
    sample: Any = None


def _frame_indices_of(sample) -> np.ndarray:
    """Frame indices of a `FrameSample`, a list of them (concatenated) or a plain index array."""
    if isinstance(sample, (list, tuple)) and sample and hasattr(sample[0], "frame_indices"):
        return np.concatenate([np.asarray(item.frame_indices, dtype=np.int64) for item in sample])
    return np.asarray(getattr(sample, "frame_indices", sample), dtype=np.int64).reshape(-1)


class _DecoderError(Exception):
    """A backend failed while decoding frames (raised through a `read_frames` hook of `decode_video`)."""


def decode_video(
    path: str | os.PathLike,
    select_frames: Callable[[VideoInfo], Any],
    backend: str = "auto",
    num_threads: int = 4,
    read_frames: Callable[[Callable[[np.ndarray], torch.Tensor], np.ndarray, VideoInfo], torch.Tensor] | None = None,
) -> DecodedVideo:
    """Open a video, choose frame indices from its info, and decode only those frames.

    Args:
        path: the video file.
        select_frames: called with the `VideoInfo` of the opened file; returns an integer array of frame
            indices, a `FrameSample` or a list of `FrameSample`s (their indices concatenated); kept as `sample`.
        backend: `"auto"` (PyAV, then decord if PyAV fails on this file), `"decord"`,
            `"pyav"` or `"torchcodec"`.
        num_threads: decoder threads.
        read_frames: optional `(decode, unique_indices, info) -> frames`, called instead of `decode(unique_indices)`
            with the sorted distinct indices; it may transform the frames or decode only some of them (the
            evaluation loader reuses the frames that consecutive windows share). Its first dimension must follow
            `unique_indices`.

    Returns:
        `DecodedVideo` with frames in the order of the requested indices (duplicates allowed).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, truncated (fewer decodable frames than the
            container header announces) or undecodable; the message names the file and every backend tried.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "the file does not exist (check the video folder and file extension)")
    path_str = str(path)
    attempts: list[tuple[str, str]] = []
    header_num_frames = None
    for name in _candidate_backends(backend):
        try:
            reader = _READERS[name](path_str, num_threads)
        except ImportError as error:
            attempts.append((name, f"not installed ({error})"))
            continue
        except Exception as error:  # every backend raises its own exception types for unreadable files
            attempts.append((name, f"cannot open ({type(error).__name__}: {str(error).strip()[:200]})"))
            continue
        if header_num_frames is None:
            header_num_frames = _read_header_frame_count(path_str)
        info = VideoInfo(path_str, name, reader.num_frames, reader.fps, header_num_frames)
        if info.num_frames <= 0:
            attempts.append((name, "reports 0 frames"))
            continue
        missing = header_num_frames - info.num_frames
        if missing > max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_RATIO * header_num_frames):
            # Sampling from the decodable part would silently misplace every frame in time.
            raise VideoDecodeError(
                path,
                f"the file is truncated: the container header announces {header_num_frames} frames but only "
                f"{info.num_frames} are decodable; re-download or re-encode the video",
                attempts + [(name, f"opened, {info.num_frames} decodable frames")],
            )
        sample = select_frames(info)
        indices = _frame_indices_of(sample)
        if indices.size == 0:
            raise ValueError(f"no frames were selected from video '{path_str}' ({info.num_frames} frames)")
        if indices.min() < 0 or indices.max() >= info.num_frames:
            raise ValueError(
                f"frame indices {int(indices.min())}..{int(indices.max())} are outside video '{path_str}' "
                f"({info.num_frames} frames, backend {name})"
            )
        # Decode each distinct frame once (edge padding and overlapping windows repeat indices), in file order.
        in_order = bool(np.all(indices[1:] > indices[:-1]))
        unique_indices, inverse = (indices, None) if in_order else np.unique(indices, return_inverse=True)

        def decode(wanted: np.ndarray, reader=reader) -> torch.Tensor:
            try:
                return reader.read(wanted)
            except Exception as error:  # every backend raises its own exception types for undecodable data
                raise _DecoderError(f"{type(error).__name__}: {str(error).strip()[:200]}") from error

        try:
            frames = decode(unique_indices) if read_frames is None else read_frames(decode, unique_indices, info)
        except _DecoderError as error:
            attempts.append((name, f"decoding failed ({error})"))
            continue
        return DecodedVideo(frames if inverse is None else frames[torch.from_numpy(inverse)], info, sample)
    raise VideoDecodeError(path, _diagnose_file(path, attempts), attempts)


class WindowFrameCache:
    """The frames of the previous evaluation window, resized and cropped, by frame index.

    Consecutive evaluation windows of a video overlap (by half in AdaTAD's test settings) and a frame's evaluation
    transform does not depend on its window, so a window read right after its neighbour decodes and transforms only
    its new frames; OpenTAD decodes every window whole. It holds one window (uint8, the size of one model input)
    and is keyed by the file's path, modification time and size, the backend and the transform settings.
    `TemporalDetectionTransform` keeps one per data-loader worker for evaluation.
    """

    def __init__(self):
        self.key = None
        self.indices = np.empty(0, dtype=np.int64)
        self.frames: torch.Tensor | None = None

    def read(self, key, indices: np.ndarray, make: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """Frames of the sorted distinct `indices`: cached ones reused, the others from `make(missing_indices)`."""
        if key == self.key and self.frames is not None:
            positions = np.minimum(np.searchsorted(self.indices, indices), len(self.indices) - 1)
            cached = self.indices[positions] == indices
        else:
            positions, cached = None, np.zeros(len(indices), dtype=bool)
        if cached.all():
            frames = self.frames[torch.from_numpy(positions)]
        elif not cached.any():
            frames = make(indices)
        else:
            new = make(indices[~cached])
            frames = torch.empty((len(indices), *new.shape[1:]), dtype=new.dtype)
            frames[torch.from_numpy(~cached)] = new
            frames[torch.from_numpy(cached)] = self.frames[torch.from_numpy(positions[cached])]
        self.key, self.indices, self.frames = key, indices, frames
        return frames


__all__ = [
    "DECODE_BACKENDS",
    "DecodedVideo",
    "VideoDecodeError",
    "VideoInfo",
    "WindowFrameCache",
    "decode_video",
]
