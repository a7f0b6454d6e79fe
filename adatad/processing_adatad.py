"""AdaTAD video processor: video file -> sampled frames -> normalised `pixel_values` + feature `masks`.

The processor reproduces OpenTAD's end-to-end data pipeline (`LoadFrames` + mmaction2 transforms):

1. decoding (decord first, PyAV as fallback, torchcodec on request), seeking only the frames needed;
2. frame sampling on the feature grid: `resize` (ActivityNet), `sliding_window` (THUMOS/EPIC/Ego4D/...
   evaluation) and `random_trunc` (training), with padding masks and ground truth in feature-grid units;
3. spatial transforms on the whole clip at once (one random draw per clip, applied to every frame):
   short-side resize + center crop (evaluation) or short-side resize + random resized crop + square resize +
   flip + OpenTAD's `ImgAug("default")` (`adatad.augmentation`) + colour jitter (training), then rescale 1/255
   and ImageNet mean/std.

`TemporalDetectionTransform` plugs it into `datasets.Dataset.with_transform` and `collate_temporal_detection`
builds model batches. `AdaTADVideoProcessor.post_process_temporal_detection` turns model outputs into
segments in seconds with the post-processing settings saved in the processor's JSON.
"""

import difflib
import functools
import math
import os
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoVideoProcessor
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor

from .augmentation import ImgAugDefault, TorchvisionRandAugment
from .configuration_adatad import AdaTADConfig
from .post_processing import PostProcessingSettings, merge_sliding_windows
from .post_processing import post_process_temporal_detection as _post_process_temporal_detection
from .time_grid import (
    FrameSample,
    read_stride,
    sample_random_trunc,
    sample_resize,
    sample_sliding_window,
    seconds_to_grid,
    window_bounds,
)

logger = logging.get_logger(__name__)

DECODE_BACKENDS = ("decord", "pyav", "torchcodec")
# "auto" tries these in order; torchcodec is opt-in (it needs system FFmpeg libraries and lost the benchmark).
AUTO_DECODE_ORDER = ("decord", "pyav")
EVAL_SAMPLING_METHODS = ("sliding_window", "resize")
TRAIN_SAMPLING_METHODS = ("random_trunc", "resize")
AUGMENTATIONS = ("imgaug_default", "randaugment")
# A decoder may report a frame or two fewer than the container header (B-frame reordering, edit lists);
# anything beyond this is treated as a truncated file.
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_RATIO = 0.01


# ----------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------


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


class _PyAVReader:
    """PyAV: sequential decoding up to the last requested frame, converting only the requested ones."""

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
        wanted = set(indices.tolist())
        last_wanted = int(indices.max())
        decoded: dict[int, np.ndarray] = {}
        rotation = 0
        num_decoded = 0
        with self._av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self._num_threads
            for frame_index, frame in enumerate(container.decode(stream)):
                num_decoded = frame_index + 1
                if frame_index in wanted:
                    decoded[frame_index] = frame.to_ndarray(format="rgb24")
                    rotation = frame.rotation
                if frame_index >= last_wanted:
                    break
        if last_wanted >= num_decoded:
            raise RuntimeError(
                f"only {num_decoded} frames could be decoded but frame {last_wanted} was requested (the header "
                f"announces {self.num_frames}): the file is truncated"
            )
        frames = _to_rgb_frames(np.stack([decoded[index] for index in indices.tolist()]), self.path, self.name)
        # PyAV does not apply the display matrix; rotate like decord and video players do (counter-clockwise).
        if rotation % 360:
            frames = torch.rot90(frames, k=round(rotation / 90) % 4, dims=(2, 3))
        return frames


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
        backend: `"auto"` (decord, then PyAV if decord is missing or fails on this file), `"decord"`,
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


# ----------------------------------------------------------------------------------------------------------
# Spatial transforms on whole clips ([num_frames, 3, H, W] tensors)
# ----------------------------------------------------------------------------------------------------------


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_height, new_width) with the short side at `short_side`, rounded like mmcv's `rescale_size`."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize (no antialias, like OpenCV's INTER_LINEAR used by mmaction2) of a uint8/float clip."""
    if frames.shape[-2:] == (height, width):
        return frames
    # uint8 bilinear has a fast channels-last CPU kernel; decoders hand us channels-last views already.
    return F.interpolate(
        frames.contiguous(memory_format=torch.channels_last), size=(height, width), mode="bilinear",
        align_corners=False, antialias=False,
    )


def random_resized_crop_box(
    height: int,
    width: int,
    area_range: Sequence[float],
    aspect_ratio_range: Sequence[float],
    generator: torch.Generator,
    max_attempts: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) as mmaction2's `RandomResizedCrop` draws it.

    `max_attempts` (area, log-uniform aspect ratio) candidates are drawn at once; the first that fits wins,
    at a uniformly random position; otherwise the centered square of side `min(height, width)`.
    """
    log_ratios = torch.empty(max_attempts, dtype=torch.float64).uniform_(
        math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1]), generator=generator
    )
    areas = torch.empty(max_attempts, dtype=torch.float64).uniform_(*area_range, generator=generator) * height * width
    ratios = torch.exp(log_ratios)
    crop_widths = torch.round(torch.sqrt(areas * ratios)).long().tolist()
    crop_heights = torch.round(torch.sqrt(areas / ratios)).long().tolist()
    for crop_height, crop_width in zip(crop_heights, crop_widths):
        if 0 < crop_height <= height and 0 < crop_width <= width:
            left = int(torch.randint(0, width - crop_width + 1, (1,), generator=generator))
            top = int(torch.randint(0, height - crop_height + 1, (1,), generator=generator))
            return top, left, crop_height, crop_width
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


# mmaction2's luma weights (contrast and saturation blend towards this grey).
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


def _hue_rotation(fraction_of_circle: float) -> torch.Tensor:
    """3x3 RGB matrix rotating hue by `fraction_of_circle` turns (through YIQ)."""
    angle = 2 * math.pi * fraction_of_circle
    rotation = torch.tensor(
        [[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]], dtype=torch.float64
    )
    return torch.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


def color_jitter(
    frames: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """mmaction2 `ColorJitter` on a clip (0..255): one factor set and one op order per clip.

    Brightness/contrast/saturation factors are uniform in `[1 - x, 1 + x]`, the hue shift in `[-hue, hue]`
    (OpenCV hue units `int(h * 255)` of its 0..180 circle). As in mmaction2: brightness multiplies, contrast
    blends with each frame's mean luma, saturation with the per-pixel luma, and values are clipped to 0..255
    and truncated to whole levels at the end. Every op is affine in the pixels, so the whole chain is folded
    into one 3x3 colour matrix plus a per-frame offset and applied in a single pass over the clip.

    Differences from mmaction2 (documented, cheap on whole clips): the hue shift is a rotation of the YIQ
    chroma plane instead of OpenCV's HSV round trip (which also clips to uint8 in the middle of the chain),
    and the op order is drawn per clip (mmaction2 draws it once per pipeline). Without clipping in between the
    four ops commute, so the order does not change the result beyond float rounding (docs/augmentation.md).

    Args:
        frames: `(num_frames, 3, height, width)` uint8 or float in 0..255.

    Returns:
        uint8 `(num_frames, 3, height, width)` (mmaction2's whole levels: clipped to 0..255, then truncated).
    """
    factors = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    b = 1 - brightness + 2 * brightness * factors[0]
    c = 1 - contrast + 2 * contrast * factors[1]
    s = 1 - saturation + 2 * saturation * factors[2]
    h = -hue + 2 * hue * factors[3]
    luma = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)
    frames = torch.empty(frames.shape, dtype=torch.float32).copy_(frames)
    # Per-frame channel means: the contrast op needs the mean luma of the image as transformed so far.
    # (num_frames, 3)
    channel_means = frames.mean(dim=(2, 3)).double()
    matrix = torch.eye(3, dtype=torch.float64)
    offset = torch.zeros(frames.shape[0], 3, dtype=torch.float64)
    for op in torch.randperm(4, generator=generator).tolist():
        if op == 0 and b != 1:
            matrix, offset = b * matrix, b * offset
        elif op == 1 and c != 1:
            # (num_frames,) mean luma of the current image = luma . (matrix @ mean + offset)
            mean_luma = (channel_means @ matrix.T + offset) @ luma
            matrix, offset = c * matrix, c * offset + (1 - c) * mean_luma[:, None]
        elif op == 2 and s != 1:
            blend = s * torch.eye(3, dtype=torch.float64) + (1 - s) * torch.ones(3, 1, dtype=torch.float64) * luma
            matrix, offset = blend @ matrix, offset @ blend.T
        elif op == 3 and int(h * 255) != 0:
            # OpenCV stores hue in 0..180 for uint8, so a shift of k units is k/180 of the colour circle.
            rotation = _hue_rotation(int(h * 255) / 180)
            matrix, offset = rotation @ matrix, offset @ rotation.T
    # out[t] = offset[t] + matrix @ frames[t] over (3, H * W), in one pass; truncating to uint8 after clipping to
    # 0..255 is mmaction2's floor.
    output = torch.baddbmm(
        offset.float()[:, :, None], matrix.float().expand(frames.shape[0], 3, 3), frames.view(frames.shape[0], 3, -1)
    )
    return output.clamp_(0, 255).to(torch.uint8).view(frames.shape)


# ----------------------------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------------------------


# Keys transformers writes into video_preprocessor_config.json beside the settings.
_SAVED_METADATA_KEYS = frozenset({"auto_map", "video_processor_type", "processor_class", "image_processor_type"})
# Frames larger than this on a side are a typo (a 100,000-pixel short side would need terabytes per clip).
MAX_FRAME_SIDE = 4096


class AdaTADVideoProcessorKwargs(VideosKwargs, total=False):
    """Settings of `AdaTADVideoProcessor` beyond transformers' `VideosKwargs` (all saved in its JSON)."""

    sampling_method: str
    train_sampling_method: str
    window_size: int
    window_overlap: float
    resize_length: int
    scale_factor: int
    snippet_stride: int
    trunc_thresh: float
    crop_ratio: list[float] | None
    decode_backend: str
    decode_num_threads: int
    train_size: dict[str, int]
    do_random_resized_crop: bool
    random_resized_crop_area: list[float]
    random_resized_crop_aspect_ratio: list[float]
    do_flip: bool
    flip_ratio: float
    augmentation: str | None
    rand_augment_num_ops: int
    rand_augment_magnitude: int
    do_color_jitter: bool
    color_jitter_brightness: float
    color_jitter_contrast: float
    color_jitter_saturation: float
    color_jitter_hue: float
    pre_nms_thresh: float
    pre_nms_topk: int
    nms_sigma: float
    min_score: float
    max_segments: int
    multiclass: bool
    voting_thresh: float
    class_names: list[str] | None


class AdaTADVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor of AdaTAD: decodes videos, samples frames on the detector's feature grid, applies the
    spatial pipeline and normalises, producing `pixel_values` `(batch_size, num_frames, 3, height, width)`
    float32 and `masks` `(batch_size, feature_length)` bool for `AdaTADForTemporalDetection`.

    The defaults are the THUMOS-14 setting (768 features, snippet stride 4, 160x160 frames). ActivityNet uses
    `sampling_method="resize"`, `train_sampling_method="resize"`, `resize_length=192`, `scale_factor=4`.

    Sampling:
        sampling_method (`str`, defaults to `"sliding_window"`): evaluation sampling, `"sliding_window"` or
            `"resize"`.
        train_sampling_method (`str`, defaults to `"random_trunc"`): training sampling, `"random_trunc"` or
            `"resize"`.
        window_size (`int`, defaults to 768): features per window (sliding window / random truncation).
        window_overlap (`float`, defaults to 0.5): overlap of consecutive evaluation windows when the processor
            splits a whole video itself (OpenTAD: 0.25 validation, 0.5 test).
        resize_length (`int`, defaults to 192): features per video in `"resize"` mode.
        scale_factor (`int`, defaults to 1): frames per feature step (frames read = features * scale_factor).
        snippet_stride (`int`, defaults to 4): video frames between consecutive features; frames are read every
            `snippet_stride // scale_factor` frames.
        trunc_thresh (`float`, defaults to 0.75): random truncation keeps a segment when at least this fraction
            of it lies inside the window.
        crop_ratio (`list[float]`, defaults to `[0.9, 1.0]`): length range of the random crop of a video that
            is not longer than the window (`None` disables it).

    Decoding:
        decode_backend (`str`, defaults to `"auto"`): `"auto"` (decord, falling back to PyAV), `"decord"`,
            `"pyav"` or `"torchcodec"`.
        decode_num_threads (`int`, defaults to 4): decoder threads.

    Spatial (evaluation: `size` short side, then `crop_size` center crop; training: `train_size` short side,
    random resized crop and resize to `crop_size` (or, without `do_random_resized_crop`, a `crop_size` center
    crop, as OpenTAD's frozen-backbone pipelines), flip, `augmentation`, colour jitter):
        size (`dict`, defaults to `{"shortest_edge": 160}`), crop_size (`dict`, defaults to 160x160),
        train_size (`dict`, defaults to `{"shortest_edge": 182}`),
        do_random_resized_crop (`bool`, defaults to `True`), random_resized_crop_area (defaults to
        `[0.08, 1.0]`), random_resized_crop_aspect_ratio (defaults to `[3/4, 4/3]`),
        do_flip (`bool`, defaults to `True`), flip_ratio (`float`, defaults to 0.5),
        augmentation (`str` or `None`, defaults to `"imgaug_default"`): `"imgaug_default"`: mmaction2's
        `ImgAug(transforms="default")`, which every AdaTAD training pipeline of OpenTAD uses
        (`adatad.augmentation.ImgAugDefault`: 2 of 15 imgaug ops per clip, geometric signs fixed per
        pipeline); `"randaugment"`: torchvision `RandAugment(num_ops=rand_augment_num_ops,
        magnitude=rand_augment_magnitude)` (defaults 2 and 9); `None`: none,
        do_color_jitter (`bool`, defaults to `True`) with `color_jitter_brightness/contrast/saturation` 0.5 and
        `color_jitter_hue` 0.1 (mmaction2 defaults),
        image_mean / image_std (ImageNet), rescale_factor (1/255).

    Post-processing (used by `post_process_temporal_detection`; defaults from `PostProcessingSettings`):
        pre_nms_thresh, pre_nms_topk, nms_sigma, min_score, max_segments, multiclass, voting_thresh,
        class_names (`list[str]` or `None`).
    """

    valid_kwargs = AdaTADVideoProcessorKwargs
    model_input_names = ["pixel_values", "masks"]

    # Spatial (transformers names for the evaluation path).
    resample = PILImageResampling.BILINEAR
    size = {"shortest_edge": 160}
    crop_size = {"height": 160, "width": 160}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = list(IMAGENET_DEFAULT_MEAN)
    image_std = list(IMAGENET_DEFAULT_STD)
    do_convert_rgb = True
    # Training augmentation.
    train_size = {"shortest_edge": 182}
    do_random_resized_crop = True
    random_resized_crop_area = [0.08, 1.0]
    random_resized_crop_aspect_ratio = [3 / 4, 4 / 3]
    do_flip = True
    flip_ratio = 0.5
    augmentation = "imgaug_default"
    rand_augment_num_ops = 2
    rand_augment_magnitude = 9
    do_color_jitter = True
    color_jitter_brightness = 0.5
    color_jitter_contrast = 0.5
    color_jitter_saturation = 0.5
    color_jitter_hue = 0.1
    # Sampling.
    sampling_method = "sliding_window"
    train_sampling_method = "random_trunc"
    window_size = 768
    window_overlap = 0.5
    resize_length = 192
    scale_factor = 1
    snippet_stride = 4
    trunc_thresh = 0.75
    crop_ratio = [0.9, 1.0]
    # Decoding.
    decode_backend = "auto"
    decode_num_threads = 4
    # Post-processing: the defaults live in PostProcessingSettings, the one place for them.
    pre_nms_thresh = PostProcessingSettings.pre_nms_thresh
    pre_nms_topk = PostProcessingSettings.pre_nms_topk
    nms_sigma = PostProcessingSettings.nms_sigma
    min_score = PostProcessingSettings.min_score
    max_segments = PostProcessingSettings.max_segments
    multiclass = PostProcessingSettings.multiclass
    voting_thresh = PostProcessingSettings.voting_thresh
    class_names = None

    def __init__(self, **kwargs):
        if "do_rand_augment" in kwargs:
            raise ValueError(
                "`do_rand_augment` was replaced by `augmentation`: 'imgaug_default' (OpenTAD's ImgAug, the default), "
                "'randaugment' (torchvision's RandAugment) or None (none)."
            )
        known = set(self.valid_kwargs.__annotations__)
        unknown = sorted(set(kwargs) - known - _SAVED_METADATA_KEYS)
        if unknown:
            # transformers would drop them without a word, so a misspelt setting would keep its default.
            hints = [
                f"{close[0]!r} for {name!r}" for name in unknown if (close := difflib.get_close_matches(name, known, 1))
            ]
            raise ValueError(
                f"unknown AdaTADVideoProcessor setting(s) {unknown}"
                + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                + "; the settings are listed in the class docstring."
            )
        super().__init__(**kwargs)
        self._check_settings()

    def _check_values(self):
        """Ranges of the numeric settings, checked when the processor is built rather than deep in decoding,
        normalisation or post-processing."""
        for name in ("scale_factor", "window_size", "resize_length", "rand_augment_num_ops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        threads = self.decode_num_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"`decode_num_threads` must be an integer >= 0 (0: the decoder decides), got {threads!r}.")
        sides = [("size['shortest_edge']", (self.size or {}).get("shortest_edge")),
                 ("train_size['shortest_edge']", (self.train_size or {}).get("shortest_edge")),
                 ("crop_size['height']", (self.crop_size or {}).get("height")),
                 ("crop_size['width']", (self.crop_size or {}).get("width"))]
        for name, value in sides:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= MAX_FRAME_SIDE):
                raise ValueError(f"`{name}` must be a whole number of pixels in [1, {MAX_FRAME_SIDE}], got {value!r}.")
        if not (isinstance(self.rescale_factor, (int, float)) and math.isfinite(self.rescale_factor)
                and self.rescale_factor > 0):
            raise ValueError(f"`rescale_factor` must be a positive finite number (1/255), got {self.rescale_factor!r}.")
        for name, positive in (("image_mean", False), ("image_std", True)):
            values = getattr(self, name)
            if (not isinstance(values, (list, tuple)) or len(values) != 3
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not positive)
                               for v in values)):
                wanted = "3 positive finite numbers (dividing by 0 gives infinite pixels)" if positive else (
                    "3 finite numbers")
                raise ValueError(f"`{name}` must be {wanted}, one per RGB channel, got {values!r}.")
        for name in ("flip_ratio", "trunc_thresh"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")
        # The post-processing fields are checked here, before any video is decoded or any model runs.
        self.post_processing_settings()

    def _check_settings(self):
        self._check_values()
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"`augmentation` must be one of {AUGMENTATIONS} or None, got {self.augmentation!r}.")
        if self.sampling_method not in EVAL_SAMPLING_METHODS:
            raise ValueError(f"`sampling_method` must be one of {EVAL_SAMPLING_METHODS}, got {self.sampling_method!r}.")
        if self.train_sampling_method not in TRAIN_SAMPLING_METHODS:
            raise ValueError(
                f"`train_sampling_method` must be one of {TRAIN_SAMPLING_METHODS}, got {self.train_sampling_method!r}."
            )
        _candidate_backends(self.decode_backend)
        if self.sampling_method == "sliding_window" or self.train_sampling_method == "random_trunc":
            read_stride(self.snippet_stride, self.scale_factor)
        if not 0 <= self.window_overlap < 1:
            raise ValueError(f"`window_overlap` must be in [0, 1), got {self.window_overlap}.")
        crop = self.crop_size
        for name, value in (("size", self.size), ("train_size", self.train_size)):
            if not value or not value.get("shortest_edge"):
                raise ValueError(
                    f"`{name}` must be {{'shortest_edge': int}} (the short side to resize to), got {value}."
                )
        if self.size.shortest_edge < min(crop.height, crop.width):
            raise ValueError(
                f"`size['shortest_edge']` ({self.size.shortest_edge}) is smaller than `crop_size` "
                f"({crop.height}x{crop.width}); the center crop would not fit."
            )
        if not self.do_random_resized_crop and self.train_size["shortest_edge"] < min(crop.height, crop.width):
            raise ValueError(
                f"`train_size['shortest_edge']` ({self.train_size['shortest_edge']}) is smaller than `crop_size` "
                f"({crop.height}x{crop.width}); without `do_random_resized_crop` training crops the center, which "
                "would not fit."
            )

    # -- sizes ---------------------------------------------------------------------------------------------

    def feature_length(self, train: bool = False) -> int:
        """Length of `masks` (the detector's feature sequence) in the given mode."""
        method = self.train_sampling_method if train else self.sampling_method
        return self.resize_length if method == "resize" else self.window_size

    def frames_per_sample(self, train: bool = False) -> int:
        """Frames per model input (`num_frames` of `pixel_values`)."""
        return self.feature_length(train) * self.scale_factor

    # -- sampling ------------------------------------------------------------------------------------------

    def sample_frames(
        self,
        num_frames: int,
        train: bool = False,
        window_start_frame: int = 0,
        window_end_frame: int | None = None,
        segments=None,
        labels=None,
        duration: float | None = None,
        rng: random.Random | None = None,
    ) -> FrameSample:
        """Choose frame indices (and map ground truth) for a video of `num_frames` decodable frames.

        Args:
            num_frames: decodable frames of the video.
            train: use `train_sampling_method` (else `sampling_method`).
            window_start_frame / window_end_frame: the window (sliding-window mode; end = its last snippet).
            segments: ground truth; in seconds for `"resize"` (needs `duration`), in whole-video feature-grid
                units for `"random_trunc"`, in window feature-grid units for `"sliding_window"`.
            labels: class ids of `segments`.
            rng: random source for `"random_trunc"` (a seeded `random.Random` makes it reproducible).
        """
        method = self.train_sampling_method if train else self.sampling_method
        if method == "resize":
            return sample_resize(num_frames, self.resize_length, self.scale_factor, segments, labels, duration)
        if method == "sliding_window":
            return sample_sliding_window(
                num_frames, self.window_size, self.scale_factor, self.snippet_stride, window_start_frame,
                window_end_frame, segments, labels,
            )
        if segments is None:
            raise ValueError("`random_trunc` sampling needs ground-truth `segments` and `labels`")
        return sample_random_trunc(
            num_frames, self.window_size, self.scale_factor, self.snippet_stride, segments, labels,
            self.trunc_thresh, self.crop_ratio, rng if rng is not None else random.Random(),
        )

    def window_start_frames(self, num_frames: int) -> list[int]:
        """First frames of the evaluation inputs covering a whole video: `[0]` in `resize` mode (one input per
        video), else OpenTAD's sliding windows (`adatad.time_grid.window_bounds` with `window_overlap`)."""
        if self.sampling_method == "resize":
            return [0]
        num_snippets = len(range(0, num_frames, self.snippet_stride))
        window_stride = max(1, int(self.window_size * (1 - self.window_overlap)))
        bounds = window_bounds(num_snippets, self.window_size, window_stride)
        return [start * self.snippet_stride for start, _ in bounds]

    # -- decoding ------------------------------------------------------------------------------------------

    def decode(self, video_path, select_frames: Callable[[VideoInfo], Any], backend: str | None = None) -> DecodedVideo:
        """`decode_video` with this processor's backend and thread settings."""
        return decode_video(
            video_path, select_frames, backend=backend or self.decode_backend, num_threads=self.decode_num_threads
        )

    def decode_windows(
        self,
        video,
        select_samples: Callable[[VideoInfo], Sequence[FrameSample]],
        train: bool = False,
        generator: torch.Generator | None = None,
        fps: float | None = None,
        backend: str | None = None,
        augmentation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        return_uint8: bool = False,
        frame_cache: WindowFrameCache | None = None,
    ) -> tuple[VideoInfo, list[tuple[FrameSample, torch.Tensor]]]:
        """Model inputs of one video: decode the frames of every sample in one pass, then transform each.

        The one place that turns a video into windows: `preprocess`, the detection pipeline and
        `TemporalDetectionTransform` all call it. Frames shared by overlapping samples are decoded once, and in
        evaluation (where a frame's transform does not depend on its window) resized and cropped once.

        Args:
            video: a path, or a decoded uint8 clip `(T, H, W, 3)` / `(T, 3, H, W)` (numpy or torch; needs `fps`).
            select_samples: called with the video's `VideoInfo`; returns the `FrameSample`s to build (e.g. from
                `sample_frames` for each of `window_start_frames(info.num_frames)`).
            train / generator / augmentation / return_uint8: passed to `transform_frames`.
            fps: frame rate of a decoded clip (paths use the decoder's average rate).
            backend: override of `decode_backend`.
            frame_cache: evaluation only: a `WindowFrameCache` that keeps the transformed frames of the previous
                call, so that a window overlapping the previous one of the same file decodes only its new frames.

        Returns:
            the `VideoInfo` and, per sample, `(sample, pixel_values)` with `pixel_values` float32 (uint8 with
            `return_uint8`) `(len(sample.frame_indices), 3, H, W)`.
        """
        if isinstance(video, (str, os.PathLike)):
            read_frames = None
            if not train:

                def read_frames(decode, unique_indices, info):
                    if frame_cache is None:
                        return self._evaluation_frames(decode(unique_indices))
                    key = (*_file_version(info.path), info.backend, self._evaluation_settings())
                    return frame_cache.read(
                        key, unique_indices, lambda missing: self._evaluation_frames(decode(missing))
                    )

            decoded = decode_video(
                video, select_samples, backend=backend or self.decode_backend,
                num_threads=self.decode_num_threads, read_frames=read_frames,
            )
            info, samples, frames = decoded.info, decoded.sample, decoded.frames
        else:
            clip = torch.as_tensor(video)
            if clip.ndim != 4 or clip.dtype != torch.uint8:
                raise ValueError(
                    f"expected a uint8 clip (T, H, W, 3) or (T, 3, H, W), got {tuple(clip.shape)} {clip.dtype}"
                )
            if fps is None:
                raise ValueError("`fps` is needed for decoded clips (to convert predictions to seconds)")
            if clip.shape[1] != 3 and clip.shape[-1] == 3:
                clip = clip.permute(0, 3, 1, 2)
            info = VideoInfo("<decoded clip>", "none", clip.shape[0], float(fps))
            samples = select_samples(info)
            unique_indices, inverse = np.unique(_frame_indices_of(samples), return_inverse=True)
            frames = clip[torch.from_numpy(unique_indices)]
            if not train:
                frames = self._evaluation_frames(frames)
            frames = frames[torch.from_numpy(inverse)]
        windows, offset = [], 0
        for sample in samples:
            count = len(sample.frame_indices)
            clip_frames = frames[offset : offset + count]
            if train:
                pixel_values = self.transform_frames(
                    clip_frames, train=True, generator=generator, augmentation=augmentation, return_uint8=return_uint8
                )
            else:
                pixel_values = clip_frames.contiguous() if return_uint8 else self.normalize_pixel_values(clip_frames)
            windows.append((sample, pixel_values))
            offset += count
        return info, windows

    # -- spatial -------------------------------------------------------------------------------------------

    def transform_frames(
        self,
        frames: torch.Tensor,
        train: bool = False,
        generator: torch.Generator | None = None,
        augmentation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        return_uint8: bool = False,
    ) -> torch.Tensor:
        """Spatial pipeline + normalisation of one clip.

        Args:
            frames: uint8 `(num_frames, 3, height, width)` RGB (or `(num_frames, height, width, 3)`).
            train: random resized crop / flip / `augmentation` / colour jitter instead of center crop.
            generator: random source of the training draws (one draw per clip, shared by all its frames).
            augmentation: the pipeline's augmentation from `build_augmentation` (its geometric signs are drawn
                once per pipeline, as in mmaction2); by default one is built for this clip from `generator`.
            return_uint8: stop before normalisation and return the uint8 frames (a quarter of the bytes to stack
                and copy to the model's device; `normalize_pixel_values` then runs there).

        Returns:
            float32 `(num_frames, 3, crop_height, crop_width)`, normalised (contiguous uint8 with `return_uint8`).
        """
        if frames.ndim != 4:
            raise ValueError(f"expected a clip of shape (num_frames, 3, H, W), got {tuple(frames.shape)}")
        if frames.shape[1] != 3 and frames.shape[-1] == 3:
            # (num_frames, height, width, 3) -> (num_frames, 3, height, width)
            frames = frames.permute(0, 3, 1, 2)
        if frames.shape[1] != 3:
            raise ValueError(
                f"expected RGB frames with 3 channels, (num_frames, 3, H, W) or (num_frames, H, W, 3), got a clip "
                f"of shape {tuple(frames.shape)}"
            )
        if frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 RGB frames (0..255), got dtype {frames.dtype}")
        if train:
            frames = self._training_frames(frames, generator, augmentation)
        else:
            frames = self._evaluation_frames(frames)
        return frames.contiguous() if return_uint8 else self.normalize_pixel_values(frames)

    def _evaluation_settings(self) -> tuple:
        """What the evaluation transform of a frame depends on (the key of a `WindowFrameCache`)."""
        return self.do_resize, self.size.shortest_edge, self.do_center_crop, self.crop_size.height, self.crop_size.width

    def _evaluation_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Short-side resize + center crop of uint8 frames `(n, 3, H, W)` (a strided view: no copy for the crop)."""
        if self.do_resize:
            frames = resize_frames(frames, *short_side_size(*frames.shape[-2:], self.size.shortest_edge))
        if self.do_center_crop:
            frames = self._center_crop(frames)
        return frames

    def _training_frames(
        self,
        frames: torch.Tensor,
        generator: torch.Generator | None,
        augmentation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    ) -> torch.Tensor:
        """Resize, random resized crop, resize to `crop_size`, flip, augmentation, colour jitter; uint8 throughout."""
        crop_height, crop_width = self.crop_size.height, self.crop_size.width
        height, width = frames.shape[-2:]
        generator = generator if generator is not None else torch.Generator().manual_seed(random.getrandbits(63))
        frames = resize_frames(frames, *short_side_size(height, width, self.train_size["shortest_edge"]))
        if self.do_random_resized_crop:
            top, left, box_height, box_width = random_resized_crop_box(
                *frames.shape[-2:], self.random_resized_crop_area, self.random_resized_crop_aspect_ratio, generator
            )
            frames = frames[..., top : top + box_height, left : left + box_width]
            frames = resize_frames(frames, crop_height, crop_width)
        else:
            # OpenTAD's pipelines without a random crop (the frozen-backbone baselines) centre-crop, never squash.
            frames = self._center_crop(frames)
        if self.do_flip and float(torch.rand(1, generator=generator)) < self.flip_ratio:
            frames = frames.flip(-1)
        if self.augmentation is not None:
            augmentation = augmentation if augmentation is not None else self.build_augmentation(generator)
            frames = augmentation(frames, generator)
        if self.do_color_jitter:
            frames = color_jitter(
                frames, self.color_jitter_brightness, self.color_jitter_contrast,
                self.color_jitter_saturation, self.color_jitter_hue, generator,
            )
        return frames

    def _center_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """The `crop_size` box at the center (mmaction2's `CenterCrop`: offsets rounded down)."""
        crop_height, crop_width = self.crop_size.height, self.crop_size.width
        height, width = frames.shape[-2:]
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
        if top < 0 or left < 0:
            raise ValueError(f"frames of {height}x{width} are smaller than crop_size {crop_height}x{crop_width}")
        return frames[..., top : top + crop_height, left : left + crop_width]

    def build_augmentation(
        self, generator: torch.Generator | None = None, seed: int | None = None
    ) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
        """The training augmentation named by `augmentation`, a callable `(uint8 clip, generator) -> clip`, or
        `None`. Build it once per data pipeline: `"imgaug_default"` draws its geometric signs here, as an OpenTAD
        run started with the run `seed` draws them (`ImgAugDefault.for_seed`), else from `generator` (fresh
        randomness when both are `None`)."""
        if self.augmentation == "imgaug_default":
            if seed is not None:
                return ImgAugDefault.for_seed(seed)
            generator = generator if generator is not None else torch.Generator().manual_seed(random.getrandbits(63))
            return ImgAugDefault.create(generator)
        if self.augmentation == "randaugment":
            return TorchvisionRandAugment(self.rand_augment_num_ops, self.rand_augment_magnitude)
        return None

    def normalize_pixel_values(self, pixel_values: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 frames `(..., 3, H, W)` (0..255) -> contiguous `(x * rescale_factor - mean) / std` in `dtype`, on the
        tensor's device: the last step of `transform_frames`, or the first one on the model's device for frames
        left uint8 (`return_uint8=True`), where it costs a fraction of the model's time and the copy to the device
        moves a quarter of the bytes."""
        if pixel_values.dtype != torch.uint8:  # normalising twice would go unnoticed until the results were wrong
            raise ValueError(f"expected uint8 frames (0..255), got dtype {pixel_values.dtype}")
        # Casting into a contiguous buffer also turns channels-last views (decoders, crops) into the model's layout.
        output = torch.empty(pixel_values.shape, dtype=dtype, device=pixel_values.device)
        output.copy_(pixel_values)
        scale = torch.ones(3)
        shift = torch.zeros(3)
        if self.do_rescale:
            scale = scale * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32)
            std = torch.tensor(self.image_std, dtype=torch.float32)
            scale, shift = scale / std, -mean / std
        view = (3, 1, 1)
        output.mul_(scale.to(dtype=dtype, device=output.device).view(view))
        return output.add_(shift.to(dtype=dtype, device=output.device).view(view))

    # -- end-to-end ----------------------------------------------------------------------------------------

    def preprocess(
        self,
        videos,
        window_start_frames: Sequence[int] | None = None,
        video_ids: Sequence[str] | None = None,
        fps: Sequence[float] | None = None,
        decode_backend: str | None = None,
        return_tensors: str | None = "pt",
        return_uint8: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Evaluation inputs for whole videos (no augmentation).

        Args:
            videos: a path or decoded clip (uint8 `(T, H, W, 3)` or `(T, 3, H, W)`, numpy or torch), or a list.
            window_start_frames: in sliding-window mode, one window start per video; by default every video is
                split into all windows covering it (`window_start_frames(num_frames)`), one batch row each.
            video_ids: names used in `video_metas` (default: file stem or `video_{i}`).
            fps: frame rate per video for decoded clips (paths use the decoder's average rate).
            decode_backend: override of `decode_backend`.
            return_tensors: `"pt"` (tensors are always built with torch).
            return_uint8: leave `pixel_values` uint8, to be normalised on the model's device with
                `normalize_pixel_values` (a quarter of the bytes to copy there).

        Returns:
            `BatchFeature` with `pixel_values` float32 (uint8 with `return_uint8`) `(num_rows, num_frames, 3, H, W)`,
            `masks` bool `(num_rows, feature_length)` and `video_metas` (one dict per row, for post-processing).
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; settings are processor attributes")
        if return_tensors not in ("pt", None):
            raise ValueError(f"only PyTorch tensors are produced (return_tensors='pt'), got {return_tensors!r}")
        single = isinstance(videos, (str, os.PathLike, np.ndarray, torch.Tensor))
        if not single and not isinstance(videos, (list, tuple)):
            raise TypeError(
                "`videos` must be a video path, a decoded clip (numpy array or torch tensor) or a list of them, got "
                f"{type(videos).__name__}"
            )
        videos = [videos] if single else list(videos)
        for name, values in (("window_start_frames", window_start_frames), ("video_ids", video_ids), ("fps", fps)):
            if values is not None and len(values) != len(videos):
                raise ValueError(f"`{name}` has {len(values)} entries for {len(videos)} video(s); give one per video")

        pixel_values, masks, metas = [], [], []
        for index, video in enumerate(videos):
            is_path = isinstance(video, (str, os.PathLike))
            video_id = video_ids[index] if video_ids else (Path(video).stem if is_path else f"video_{index}")
            only_start = None if window_start_frames is None else int(window_start_frames[index])

            def select_samples(info, only_start=only_start):
                if only_start is not None and self.sampling_method != "resize":
                    starts = [only_start]
                else:
                    starts = self.window_start_frames(info.num_frames)
                return [self.sample_frames(info.num_frames, window_start_frame=start) for start in starts]

            try:
                info, windows = self.decode_windows(
                    video, select_samples, fps=None if fps is None else fps[index], backend=decode_backend,
                    return_uint8=True,
                )
            except ValueError as error:
                if is_path:
                    raise
                raise ValueError(f"video {index}: {error}") from error
            for sample, clip in windows:
                pixel_values.append(clip)
                masks.append(torch.from_numpy(sample.mask))
                metas.append(self.video_meta(video_id, info.fps, info.duration, sample.window_start_frame))
        # Stacked as uint8 and normalised once: no float copy of every window.
        pixel_values = torch.stack(pixel_values)
        if not return_uint8:
            pixel_values = self.normalize_pixel_values(pixel_values)
        return BatchFeature(data={"pixel_values": pixel_values, "masks": torch.stack(masks), "video_metas": metas})

    def iter_window_batches(
        self,
        video,
        batch_size: int = 1,
        video_id: str | None = None,
        fps: float | None = None,
        decode_backend: str | None = None,
    ):
        """What `preprocess(video)` returns for one video, `batch_size` windows at a time: for long videos, whose
        windows together would not fit in memory. Each batch decodes only its own windows' frames.

        Post-process each batch with `post_process_temporal_detection(outputs, batch["video_metas"],
        merge_windows=False)`, collect the per-window results and merge them once with `merge_window_detections`.

        Yields:
            `BatchFeature`s with `pixel_values`, `masks` and `video_metas` as `preprocess` (at most `batch_size` rows).
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        is_path = isinstance(video, (str, os.PathLike))
        video_id = video_id or (Path(video).stem if is_path else "video_0")
        starts: list[int] | None = None
        first = 0
        while starts is None or first < len(starts):

            def select_samples(info, first=first):
                nonlocal starts
                if starts is None:
                    starts = self.window_start_frames(info.num_frames)
                batch_starts = starts[first : first + batch_size]
                return [self.sample_frames(info.num_frames, window_start_frame=start) for start in batch_starts]

            info, windows = self.decode_windows(video, select_samples, fps=fps, backend=decode_backend)
            yield BatchFeature(
                data={
                    "pixel_values": torch.stack([clip for _, clip in windows]),
                    "masks": torch.stack([torch.from_numpy(sample.mask) for sample, _ in windows]),
                    "video_metas": [
                        self.video_meta(video_id, info.fps, info.duration, sample.window_start_frame)
                        for sample, _ in windows
                    ],
                }
            )
            first += batch_size

    def video_meta(self, video_id: str, fps: float, duration: float, window_start_frame: int = 0) -> dict:
        """What post-processing needs to map one row's predictions back to seconds in its video."""
        meta = {
            "video_id": video_id,
            "sampling_method": self.sampling_method,
            "fps": float(fps),
            "duration": float(duration),
            "snippet_stride": int(self.snippet_stride),
            "window_start_frame": int(window_start_frame),
            "offset_frames": 0,
        }
        if self.sampling_method == "resize":
            meta["resize_length"] = int(self.resize_length)
        return meta

    def post_processing_settings(self) -> PostProcessingSettings:
        """This processor's post-processing settings (saved in video_preprocessor_config.json)."""
        return PostProcessingSettings(
            pre_nms_thresh=self.pre_nms_thresh,
            pre_nms_topk=self.pre_nms_topk,
            nms_sigma=self.nms_sigma,
            min_score=self.min_score,
            max_segments=self.max_segments,
            multiclass=self.multiclass,
            voting_thresh=self.voting_thresh,
        )

    def post_process_temporal_detection(
        self,
        outputs,
        video_metas: Sequence[dict],
        threshold: float = 0.0,
        top_k: int | None = None,
        **overrides,
    ) -> list[dict]:
        """Model outputs -> one `{"video_id", "segments" (seconds), "scores", "labels", "label_names"}` per video.

        Calls `adatad.post_processing.post_process_temporal_detection` with this processor's
        `post_processing_settings()` and `class_names`, and `sliding_window=True` when `sampling_method` is
        `"sliding_window"` (windows of one video are merged). The result goes as-is into the
        `temporal_detection_map` metric as `predictions`.

        Args:
            outputs: `AdaTADTemporalDetectionOutput` of a batch.
            video_metas: the batch's `video_metas` (from `preprocess` or `collate_temporal_detection`).
            threshold: keep detections scoring at least this (default 0: the whole ranked list, as mAP needs).
            top_k: keep at most this many detections per video (default None: all).
            overrides: any `PostProcessingSettings` field, `class_names`, `video_classifier` or `merge_windows`.
        """
        settings = {
            "settings": self.post_processing_settings(),
            "class_names": self.class_names,
            "sliding_window": self.sampling_method == "sliding_window",
        }
        settings.update(overrides)
        return _post_process_temporal_detection(outputs, video_metas, threshold=threshold, top_k=top_k, **settings)

    def merge_window_detections(
        self, window_results: Sequence[dict], threshold: float = 0.0, top_k: int | None = None
    ) -> list[dict]:
        """Merge per-window results of `post_process_temporal_detection(..., merge_windows=False)` into one result per
        video: the windows of a video are concatenated and go through one NMS on their rounded seconds, as OpenTAD's
        test engine does. Use it once the windows of a video are collected (e.g. across batches or processes);
        `threshold` and `top_k` as in `post_process_temporal_detection`."""
        return merge_sliding_windows(window_results, self.post_processing_settings(), threshold=threshold, top_k=top_k)

# ----------------------------------------------------------------------------------------------------------
# Dataset glue: lazy decoding with `datasets.Dataset.with_transform` and a collator
# ----------------------------------------------------------------------------------------------------------


class TemporalDetectionTransform:
    """Batch transform for `datasets.Dataset.with_transform` / `set_transform`: rows -> model inputs, lazily.

    Rows come from `adatad.data`: video rows (`video_id`, `video_path`, `duration`, `fps`, `num_frames`,
    `segments` in seconds, `labels`) or window rows of `adatad.data.expand_sliding_windows` (adding
    `window_start_frame`, `feature_end_idx` and `grid_segments` in window feature-grid units). Frames are
    decoded only when a row is accessed, so nothing is decoded ahead of time or written to disk.

    Per mode and processor setting:
        - train + `random_trunc` (video rows): GT seconds -> whole-video grid (`seconds_to_grid` with
          `grid_conversion`), then a random window with the GT clipped/shifted into it;
        - `resize` (video rows, train or eval): GT seconds -> `clip(s / duration, 0, 1) * resize_length`;
        - eval + `sliding_window` (window rows): the row's window, its `grid_segments` as GT.

    Args:
        processor: the `AdaTADVideoProcessor`.
        mode: `"train"` (augmentation, training sampling) or `"eval"`.
        grid_conversion: how OpenTAD maps GT seconds to frames for random truncation: `"frame_count"`
            (THUMOS, Multi-THUMOS, Ego4D: `int(s / duration * num_frames)`) or `"fixed_fps"` (EPIC,
            Charades: `int(s * conversion_fps)`).
        conversion_fps: the config frame rate of `"fixed_fps"` (30 in OpenTAD's EPIC/Charades configs).
        seed: makes augmentation and random truncation reproducible: each row's random draws depend only on
            (seed, epoch, video id, window start), the augmentation's per-pipeline draws (`ImgAug` signs) on the
            seed alone. `None` draws fresh randomness.
        on_error: `"raise"` (default): a video that cannot be decoded raises `VideoDecodeError` naming the
            video id and file; `"skip"`: the row is marked (`skip_reason`) and `collate_temporal_detection`
            drops it and reports it in the batch's `skipped_videos` (also logged).
        return_uint8: rows carry uint8 `pixel_values`, normalised on the model's device with the processor's
            `normalize_pixel_values` (what `run_tad.py` does on a GPU: a quarter of the bytes to collate and copy).

    In evaluation, each transform (one per data-loader worker) keeps the frames of the window it read last
    (`WindowFrameCache`), so that the next window of the same video decodes only the frames it does not share.
    """

    def __init__(
        self,
        processor: AdaTADVideoProcessor,
        mode: str = "eval",
        grid_conversion: str = "frame_count",
        conversion_fps: float | None = None,
        seed: int | None = None,
        on_error: str = "raise",
        return_uint8: bool = False,
    ):
        if mode not in ("train", "eval"):
            raise ValueError(f"`mode` must be 'train' or 'eval', got {mode!r}.")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"`on_error` must be 'raise' or 'skip', got {on_error!r}.")
        if grid_conversion not in ("frame_count", "fixed_fps"):
            raise ValueError(f"`grid_conversion` must be 'frame_count' or 'fixed_fps', got {grid_conversion!r}.")
        self.processor = processor
        self.mode = mode
        self.grid_conversion = grid_conversion
        self.conversion_fps = conversion_fps
        self.seed = seed
        self.on_error = on_error
        self.return_uint8 = return_uint8
        self.frame_cache = WindowFrameCache() if mode == "eval" else None
        self.epoch = 0
        # Built once per pipeline, as mmaction2 builds `ImgAug`: its geometric signs stay fixed for the run
        # (the same on every process and data-loader worker for a given seed, and OpenTAD's for that seed).
        self.augmentation = processor.build_augmentation(seed=seed) if mode == "train" else None

    def set_epoch(self, epoch: int):
        """Change the augmentation draws per epoch (call before each epoch, like a `DistributedSampler`)."""
        self.epoch = int(epoch)

    def _random_sources(self, video_id: str, window_start_frame: int) -> tuple[random.Random, torch.Generator]:
        if self.seed is None:
            entropy = np.random.SeedSequence().entropy
        else:
            entropy = [self.seed, self.epoch, zlib.crc32(video_id.encode("utf-8")), window_start_frame]
        state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)
        return random.Random(int(state[0])), torch.Generator().manual_seed(int(state[1]) & (2**63 - 1))

    def _sample(self, row: dict, info: VideoInfo, rng: random.Random) -> FrameSample:
        processor, train = self.processor, self.mode == "train"
        method = processor.train_sampling_method if train else processor.sampling_method
        labels = row.get("labels")
        if method == "resize":
            duration = row.get("duration") or info.duration
            return processor.sample_frames(
                info.num_frames, train=train, segments=row.get("segments"), labels=labels, duration=duration
            )
        if method == "sliding_window":
            if "window_start_frame" not in row:
                raise ValueError(
                    f"video {row.get('video_id')!r}: sliding-window evaluation needs window rows; expand the "
                    "video rows with adatad.data.expand_sliding_windows first"
                )
            end_frame = (
                row["feature_end_idx"] * processor.snippet_stride if row.get("feature_end_idx") is not None else None
            )
            return processor.sample_frames(
                info.num_frames, window_start_frame=row["window_start_frame"], window_end_frame=end_frame,
                segments=row.get("grid_segments"), labels=labels,
            )
        # random_trunc: whole-video ground truth on the feature grid, as OpenTAD's padding datasets give it.
        num_frames = row.get("num_frames") or info.num_frames
        duration = row.get("duration") or info.duration
        grid = seconds_to_grid(
            row.get("segments") or [], mode=self.grid_conversion, duration=duration, num_frames=num_frames,
            fps=self.conversion_fps, snippet_stride=processor.snippet_stride,
        )
        return processor.sample_frames(info.num_frames, train=True, segments=grid, labels=labels or [], rng=rng)

    def _process_row(self, row: dict) -> dict:
        processor = self.processor
        video_id = row.get("video_id") or str(row.get("video_path"))
        window_start = int(row.get("window_start_frame") or 0)
        rng, generator = self._random_sources(video_id, window_start)
        if not row.get("video_path"):
            raise VideoDecodeError(
                f"<no path for video {video_id!r}>", "the row has no `video_path` (pass video_dir to the loader)"
            )
        info, [(sample, pixel_values)] = processor.decode_windows(
            row["video_path"], lambda info: [self._sample(row, info, rng)], train=self.mode == "train",
            generator=generator, augmentation=self.augmentation, return_uint8=self.return_uint8,
            frame_cache=self.frame_cache,
        )
        fps = row.get("fps") or info.fps
        duration = row.get("duration") or info.duration
        return {
            "pixel_values": pixel_values,
            "masks": torch.from_numpy(sample.mask),
            "segments": None if sample.segments is None else torch.from_numpy(sample.segments),
            "labels": None if sample.labels is None else torch.from_numpy(sample.labels),
            "video_meta": processor.video_meta(video_id, fps, duration, sample.window_start_frame),
            "skip_reason": None,
        }

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        num_rows = len(next(iter(batch.values())))
        outputs = {key: [] for key in ("pixel_values", "masks", "segments", "labels", "video_meta", "skip_reason")}
        for index in range(num_rows):
            row = {key: values[index] for key, values in batch.items()}
            try:
                result = self._process_row(row)
            except VideoDecodeError as error:
                message = f"video {row.get('video_id')!r}: {error}"
                if self.on_error == "raise":
                    raise VideoDecodeError(
                        error.path, f"{error.reason} (video id {row.get('video_id')!r})", error.attempts
                    ) from error
                logger.warning(f"skipping {message}")
                result = dict.fromkeys(outputs)
                result["video_meta"] = {"video_id": row.get("video_id")}
                result["skip_reason"] = message
            for key in outputs:
                outputs[key].append(result[key])
        return outputs


def collate_temporal_detection(features: list[dict]) -> dict:
    """Collate rows of `TemporalDetectionTransform` into a model batch.

    Returns:
        dict with `pixel_values` `(batch_size, num_frames, 3, H, W)` (float32, or uint8 from rows made with
        `return_uint8`), `masks` bool
        `(batch_size, feature_length)`, `labels` (list of `{"segments": (N, 2) feature-grid float32,
        "labels": (N,) int64}`, or None when the rows carry no ground truth), `video_metas` (list of dicts for
        `post_process_temporal_detection`) and `skipped_videos` (list of `{"video_id", "reason"}` for rows
        dropped because their video could not be decoded with `on_error="skip"`).

    Raises:
        RuntimeError: every row of the batch was skipped (the message lists them).
    """
    kept = [feature for feature in features if feature.get("skip_reason") is None]
    skipped = [
        {"video_id": feature["video_meta"].get("video_id"), "reason": feature["skip_reason"]}
        for feature in features
        if feature.get("skip_reason") is not None
    ]
    if not kept:
        raise RuntimeError(f"every video of this batch failed to decode: {skipped}")
    has_labels = all(feature.get("segments") is not None for feature in kept)
    return {
        "pixel_values": torch.stack([feature["pixel_values"] for feature in kept]),
        "masks": torch.stack([feature["masks"] for feature in kept]),
        "labels": [
            {"segments": feature["segments"].float(), "labels": feature["labels"].long()} for feature in kept
        ]
        if has_labels
        else None,
        "video_metas": [feature["video_meta"] for feature in kept],
        "skipped_videos": skipped,
    }


AdaTADVideoProcessor.register_for_auto_class("AutoVideoProcessor")
# Only the installed package registers: the copy of this file in a saved model folder, imported when a folder is
# loaded with trust_remote_code=True, must not replace the installed classes for every later load.
if __package__ == "adatad":
    AutoVideoProcessor.register(AdaTADConfig, AdaTADVideoProcessor, exist_ok=True)

__all__ = [
    "AdaTADVideoProcessor",
    "TemporalDetectionTransform",
    "collate_temporal_detection",
    "DecodedVideo",
    "VideoDecodeError",
    "VideoInfo",
    "WindowFrameCache",
    "decode_video",
]
