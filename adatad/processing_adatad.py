"""AdaTAD video processor: video file -> sampled frames -> normalised `pixel_values` + feature `masks`.

The processor reproduces OpenTAD's end-to-end data pipeline (`LoadFrames` + mmaction2 transforms):

1. decoding (`adatad.video_decoding`), seeking only the frames needed;
2. frame sampling on the feature grid: `resize` (ActivityNet), `sliding_window` (THUMOS/EPIC/Ego4D/...
   evaluation) and `random_trunc` (training), with padding masks and ground truth in feature-grid units;
3. spatial transforms on the whole clip at once (one random draw per clip, applied to every frame):
   short-side resize + center crop (evaluation) or short-side resize + random resized crop + square resize +
   flip + OpenTAD's `ImgAug("default")` (`adatad.augmentation`) + colour jitter (training), then rescale 1/255
   and ImageNet mean/std.

`AdaTADVideoProcessor.post_process_temporal_detection` turns model outputs into segments in seconds with the
post-processing settings saved in the processor's JSON. The training and evaluation loaders read it through
`adatad.dataset_transforms` (not part of a saved model folder).
"""

import difflib
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoVideoProcessor
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import VideosKwargs
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
    window_bounds,
)
from .video_decoding import (
    DecodedVideo,
    VideoInfo,
    WindowFrameCache,
    _candidate_backends,
    _file_version,
    _frame_indices_of,
    decode_video,
)

EVAL_SAMPLING_METHODS = ("sliding_window", "resize")
TRAIN_SAMPLING_METHODS = ("random_trunc", "resize")
AUGMENTATIONS = ("imgaug_default", "randaugment")
# `preprocess` decodes and transforms a video this many windows at a time, writing each group into its output.
PREPROCESS_WINDOWS_PER_PASS = 4


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
    order = torch.randperm(4, generator=generator).tolist()
    output = torch.empty(frames.shape, dtype=torch.uint8)
    # A few frames at a time, through two float buffers reused for every chunk: they stay in the CPU cache between
    # the passes below (and fresh buffers per chunk would cost page faults).
    buffer = torch.empty((min(_JITTER_FRAME_CHUNK, frames.shape[0]), *frames.shape[1:]), dtype=torch.float32)
    jittered = torch.empty((buffer.shape[0], 3, buffer[0, 0].numel()), dtype=torch.float32)
    for start in range(0, frames.shape[0], _JITTER_FRAME_CHUNK):
        count = min(_JITTER_FRAME_CHUNK, frames.shape[0] - start)
        chunk = buffer[:count].copy_(frames[start : start + count])
        matrix, offset = _color_jitter_affine(chunk, b, c, s, h, order)
        # out[t] = offset[t] + matrix @ frames[t] over (3, H * W), in one pass; truncating to uint8 after clipping to
        # 0..255 is mmaction2's floor.
        torch.baddbmm(offset.float()[:, :, None], matrix.float().expand(count, 3, 3), chunk.view(count, 3, -1),
                      out=jittered[:count])
        output[start : start + count] = jittered[:count].clamp_(0, 255).view(chunk.shape)
    return output


# `color_jitter` and the normalisation on a CPU run this many frames at a time (160x160: 5 MB of float32).
_JITTER_FRAME_CHUNK = 16
_NORMALIZE_FRAME_CHUNK = 8


def _color_jitter_affine(
    frames: torch.Tensor, b: float, c: float, s: float, h: float, order: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour matrix `(3, 3)` and the per-frame offsets `(num_frames, 3)` of the jitter ops in `order`, for
    float frames `(num_frames, 3, H, W)` (the contrast op needs each frame's mean luma)."""
    luma = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)
    # Per-frame channel means: the contrast op needs the mean luma of the image as transformed so far.
    # (num_frames, 3)
    channel_means = frames.mean(dim=(2, 3)).double()
    matrix = torch.eye(3, dtype=torch.float64)
    offset = torch.zeros(frames.shape[0], 3, dtype=torch.float64)
    for op in order:
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
    return matrix, offset


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
        decode_backend (`str`, defaults to `"auto"`): `"auto"` (PyAV, falling back to decord), `"decord"`,
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
        info, samples, frames = self._sampled_frames(video, select_samples, train, fps, backend, frame_cache)
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

    def _sampled_frames(
        self, video, select_samples, train: bool, fps: float | None, backend: str | None,
        frame_cache: WindowFrameCache | None,
    ) -> tuple[VideoInfo, Sequence[FrameSample], torch.Tensor]:
        """The uint8 frames of every sample of `decode_windows`, one after the other (in evaluation already resized
        and cropped: views of the frames decoded once, whatever the overlap)."""
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
        return info, samples, frames

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
        # Writing into a contiguous buffer also turns channels-last views (decoders, crops) into the model's layout.
        output = torch.empty(pixel_values.shape, dtype=dtype, device=pixel_values.device)
        return self._normalize_into(output, pixel_values)

    def _normalize_into(self, output: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """`normalize_pixel_values` written into `output` (same shape, the float dtype wanted)."""
        scale = torch.ones(3)
        shift = torch.zeros(3)
        if self.do_rescale:
            scale = scale * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32)
            std = torch.tensor(self.image_std, dtype=torch.float32)
            scale, shift = scale / std, -mean / std
        scale = scale.to(dtype=output.dtype, device=output.device).view(3, 1, 1)
        shift = shift.to(dtype=output.dtype, device=output.device).view(3, 1, 1)
        if output.device.type != "cpu" or output.ndim < 4:
            # uint8 * float lands in `output` in one pass (no float copy of the frames first).
            return torch.mul(pixel_values, scale, out=output).add_(shift)
        # On a CPU, a few frames at a time: the shift is added while the scaled frames are still in the cache.
        frames_out = output.view(-1, *output.shape[-3:])
        frames_in = pixel_values.reshape(frames_out.shape)
        for start in range(0, frames_out.shape[0], _NORMALIZE_FRAME_CHUNK):
            chunk = frames_out[start : start + _NORMALIZE_FRAME_CHUNK]
            torch.mul(frames_in[start : start + _NORMALIZE_FRAME_CHUNK], scale, out=chunk).add_(shift)
        return output

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
        """Evaluation inputs for whole videos (no augmentation), every window at once.

        The rows are filled `PREPROCESS_WINDOWS_PER_PASS` windows at a time (each frame decoded once), so memory is
        the output itself; for long videos, whose windows together do not fit in memory, use
        `iter_window_batches`, which holds one batch whatever the video's length.

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

        blocks, masks, metas = [], [], []
        for index, video in enumerate(videos):
            is_path = isinstance(video, (str, os.PathLike))
            video_id = video_ids[index] if video_ids else (Path(video).stem if is_path else f"video_{index}")
            only_start = None if window_start_frames is None else int(window_start_frames[index])
            block = None
            try:
                for num_windows, first, info, samples, frames in self._window_groups(
                    video, PREPROCESS_WINDOWS_PER_PASS, fps=None if fps is None else fps[index],
                    decode_backend=decode_backend, only_start=only_start,
                ):
                    if block is None:
                        # The video's rows, filled one group of windows at a time: nothing else grows with its length.
                        shape = (num_windows, len(samples[0].frame_indices), *frames.shape[1:])
                        block = torch.empty(shape, dtype=torch.uint8 if return_uint8 else torch.float32)
                    self._write_windows(block[first : first + len(samples)], frames)
                    masks.extend(torch.from_numpy(sample.mask) for sample in samples)
                    metas.extend(self.video_meta(video_id, info.fps, info.duration, sample.window_start_frame)
                                 for sample in samples)
            except ValueError as error:
                if is_path:
                    raise
                raise ValueError(f"video {index}: {error}") from error
            blocks.append(block)
        pixel_values = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        return BatchFeature(data={"pixel_values": pixel_values, "masks": torch.stack(masks), "video_metas": metas})

    def _write_windows(self, rows: torch.Tensor, frames: torch.Tensor):
        """Window frames (uint8, the windows one after the other) into `rows` `(windows, frames, 3, H, W)`: copied,
        or normalised straight into a float `rows`."""
        frames = frames.reshape(rows.shape)  # splits the first dimension: a view
        if rows.dtype == torch.uint8:
            rows.copy_(frames)
        else:
            self._normalize_into(rows, frames)

    def _window_groups(
        self,
        video,
        group_size: int,
        fps: float | None = None,
        decode_backend: str | None = None,
        only_start: int | None = None,
    ):
        """The evaluation windows of one video, `group_size` at a time, in order: yields `(num_windows, first,
        info, samples, frames)`, `frames` the uint8 frames of the group's windows one after the other.

        One `WindowFrameCache` carries the frames shared with the previous group, so every frame is decoded and
        resized once, and at most a group of windows is held at a time. `only_start`: just the window starting
        there (sliding-window mode)."""
        cache = WindowFrameCache() if isinstance(video, (str, os.PathLike)) else None
        starts: list[int] | None = None
        first = 0
        while starts is None or first < len(starts):

            def select_samples(info, first=first):
                nonlocal starts
                if starts is None:
                    resize = self.sampling_method == "resize"
                    starts = [only_start] if only_start is not None and not resize else self.window_start_frames(
                        info.num_frames
                    )
                return [
                    self.sample_frames(info.num_frames, window_start_frame=start)
                    for start in starts[first : first + group_size]
                ]

            info, samples, frames = self._sampled_frames(
                video, select_samples, train=False, fps=fps, backend=decode_backend, frame_cache=cache
            )
            yield len(starts), first, info, samples, frames
            first += group_size

    def iter_window_batches(
        self,
        video,
        batch_size: int = 1,
        video_id: str | None = None,
        fps: float | None = None,
        decode_backend: str | None = None,
        return_uint8: bool = False,
    ):
        """What `preprocess(video)` returns for one video, `batch_size` windows at a time: for long videos, whose
        windows together would not fit in memory. Memory stays that of one batch whatever the video's length: each
        batch decodes only the frames the previous batch did not have (every frame is decoded once).

        Post-process each batch with `post_process_temporal_detection(outputs, batch["video_metas"],
        merge_windows=False)`, collect the per-window results and merge them once with `merge_window_detections`.

        Yields:
            `BatchFeature`s with `pixel_values`, `masks` and `video_metas` as `preprocess` (at most `batch_size` rows).
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        is_path = isinstance(video, (str, os.PathLike))
        video_id = video_id or (Path(video).stem if is_path else "video_0")
        groups = self._window_groups(video, batch_size, fps=fps, decode_backend=decode_backend)
        for _, _, info, samples, frames in groups:
            shape = (len(samples), len(samples[0].frame_indices), *frames.shape[1:])
            pixel_values = torch.empty(shape, dtype=torch.uint8 if return_uint8 else torch.float32)
            self._write_windows(pixel_values, frames)
            yield BatchFeature(
                data={
                    "pixel_values": pixel_values,
                    "masks": torch.stack([torch.from_numpy(sample.mask) for sample in samples]),
                    "video_metas": [
                        self.video_meta(video_id, info.fps, info.duration, sample.window_start_frame)
                        for sample in samples
                    ],
                }
            )

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


AdaTADVideoProcessor.register_for_auto_class("AutoVideoProcessor")
# Only the installed package registers: the copy of this file in a saved model folder, imported when a folder is
# loaded with trust_remote_code=True, must not replace the installed classes for every later load.
if __package__ == "adatad":
    AutoVideoProcessor.register(AdaTADConfig, AdaTADVideoProcessor, exist_ok=True)

__all__ = ["AdaTADVideoProcessor"]
