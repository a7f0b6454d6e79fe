"""The time grid: seconds <-> frames <-> detector features, evaluation windows and the frame samplers.

Pure numpy (no torch, no `datasets`): the video processor and the sliding-window rows of `adatad.annotations` place time
with these functions, and a saved model folder carries this module instead of the annotation loaders.

- `seconds_to_frames`, `seconds_to_grid`, `grid_to_seconds`: OpenTAD's three conversions between seconds and
  the feature grid (`"frame_count"`: THUMOS-14, Multi-THUMOS, Ego4D; `"fixed_fps"`: EPIC-Kitchens, Charades;
  `"resize"`: ActivityNet); `video_meta_to_seconds`: `grid_to_seconds` for one model input's video meta;
- `window_bounds`: the snippet ranges of OpenTAD's sliding windows; `read_stride`: frames between two decoded frames;
- `sample_resize`, `sample_sliding_window`, `sample_random_trunc`: frame indices, padding mask and ground truth
  on the grid for one model input (OpenTAD's `LoadFrames`), returned as a `FrameSample`.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ConversionMode = Literal["frame_count", "fixed_fps", "resize"]
# OpenTAD's random_trunc tries this many window starts before giving up on keeping a ground-truth segment.
RANDOM_TRUNC_MAX_TRIES = 200


def _as_segments(segments) -> np.ndarray:
    # (num_segments, 2), float64
    return np.asarray(segments, dtype=np.float64).reshape(-1, 2)


def _frame_rate(mode, duration, num_frames, fps) -> float:
    if mode == "frame_count":
        if num_frames is None or not duration:
            raise ValueError("mode 'frame_count' needs num_frames and a positive duration "
                             "(fps = num_frames / duration).")
        return num_frames / duration
    if mode == "fixed_fps":
        if fps is None or fps <= 0:
            raise ValueError("mode 'fixed_fps' needs a positive fps (OpenTAD configs use 30 for EPIC and Charades).")
        return float(fps)
    raise ValueError(f"mode must be 'frame_count', 'fixed_fps' or 'resize', got {mode!r}.")


def seconds_to_frames(
    segments, *, mode: Literal["frame_count", "fixed_fps"], duration: float | None = None,
    num_frames: int | None = None, fps: float | None = None,
) -> np.ndarray:
    """Segments in seconds -> frame numbers, truncated toward zero as OpenTAD's `int(...)` does.

    `mode="frame_count"` (THUMOS, Multi-THUMOS, Ego4D): `int(seconds / duration * num_frames)`.
    `mode="fixed_fps"` (EPIC-Kitchens, Charades): `int(seconds * fps)`.

    Returns:
        float64 array (num_segments, 2) holding whole frame numbers.
    """
    segments = _as_segments(segments)
    if mode == "frame_count":
        _frame_rate(mode, duration, num_frames, fps)
        return np.trunc(segments / duration * num_frames)
    return np.trunc(segments * _frame_rate(mode, duration, num_frames, fps))


def seconds_to_grid(
    segments, *, mode: ConversionMode, duration: float, num_frames: int | None = None,
    fps: float | None = None, snippet_stride: int | None = None, window_start_frame: int = 0,
    offset_frames: int = 0, resize_length: int | None = None,
) -> np.ndarray:
    """Segments in seconds -> feature-grid units (the model's `labels["segments"]`).

    `mode="resize"` (ActivityNet): `clip(seconds / duration, 0, 1) * resize_length`.
    Otherwise frames (see `seconds_to_frames`) then
    `(frames - window_start_frame - offset_frames) / snippet_stride` (window_start_frame = 0 for a
    whole, padded video).

    Returns:
        float64 array (num_segments, 2).
    """
    segments = _as_segments(segments)
    if mode == "resize":
        if resize_length is None or not duration:
            raise ValueError("mode 'resize' needs resize_length and a positive duration.")
        return np.clip(segments / duration, 0.0, 1.0) * resize_length
    if not snippet_stride:
        raise ValueError(f"mode {mode!r} needs snippet_stride (frames between two features).")
    frames = seconds_to_frames(segments, mode=mode, duration=duration, num_frames=num_frames, fps=fps)
    return (frames - window_start_frame - offset_frames) / snippet_stride


def grid_to_seconds(
    grid_segments, *, mode: ConversionMode, duration: float, num_frames: int | None = None,
    fps: float | None = None, snippet_stride: int | None = None, window_start_frame: int = 0,
    offset_frames: int = 0, resize_length: int | None = None,
):
    """Feature-grid segments -> seconds, clipped to [0, duration] (OpenTAD's `convert_to_seconds`).

    `mode="resize"`: `grid / resize_length * duration`; otherwise
    `(grid * snippet_stride + window_start_frame + offset_frames) / fps` with fps =
    `num_frames / duration` ("frame_count") or the given fps ("fixed_fps").
    Takes the same arguments as `seconds_to_grid`.

    Returns:
        (num_segments, 2) seconds: a torch tensor of the input's dtype for a tensor (post-processing computes in
        float32, as OpenTAD does), else a float64 array.
    """
    # Tensors keep their type: this module imports no torch, and tensors and arrays share the arithmetic and `clip`.
    is_tensor = not isinstance(grid_segments, np.ndarray) and hasattr(grid_segments, "clamp")
    grid_segments = grid_segments.reshape(-1, 2) if is_tensor else _as_segments(grid_segments)
    if mode == "resize":
        if resize_length is None or not duration:
            raise ValueError("mode 'resize' needs resize_length and a positive duration.")
        seconds = grid_segments / resize_length * duration
    else:
        if not snippet_stride:
            raise ValueError(f"mode {mode!r} needs snippet_stride (frames between two features).")
        frame_rate = _frame_rate(mode, duration, num_frames, fps)
        seconds = (grid_segments * snippet_stride + window_start_frame + offset_frames) / frame_rate
    return seconds.clip(0.0, duration)


def video_meta_to_seconds(grid_segments, meta: dict):
    """`grid_to_seconds` with the arguments of one video meta (`AdaTADVideoProcessor.video_meta`): `video_id`,
    `duration` (s), `sampling_method` (`"resize"`: with `resize_length`; otherwise, or when absent, with the video's
    `fps` and `snippet_stride`, `window_start_frame` and `offset_frames` (0 when absent)). Errors name the video."""
    name = meta.get("video_id", "<unnamed video>")
    if "duration" not in meta or not meta["duration"] > 0:
        raise ValueError(f"video meta of {name!r} has duration {meta.get('duration')!r}; it must be > 0 seconds.")
    if meta.get("sampling_method") != "resize" and meta.get("fps") == -1:
        raise ValueError(f"video meta of {name!r} has fps -1, OpenTAD's mark of resize mode: set sampling_method "
                         "'resize' instead (`adatad.opentad.meta_from_opentad` converts OpenTAD's metas).")
    try:
        if meta.get("sampling_method") == "resize":
            return grid_to_seconds(grid_segments, mode="resize", duration=float(meta["duration"]),
                                   resize_length=meta.get("resize_length"))
        return grid_to_seconds(
            grid_segments, mode="fixed_fps", duration=float(meta["duration"]), fps=meta.get("fps"),
            snippet_stride=meta.get("snippet_stride"), window_start_frame=meta.get("window_start_frame", 0),
            offset_frames=meta.get("offset_frames", 0),
        )
    except ValueError as error:
        raise ValueError(f"video meta of {name!r}: {error}") from None


def window_bounds(num_snippets: int, window_size: int, window_stride: int) -> list[tuple[int, int]]:
    """[start, end) snippet ranges of OpenTAD's windows for a video of `num_snippets` snippets."""
    bounds = []
    for index in range(max(1, num_snippets // window_stride)):
        start, end = index * window_stride, index * window_stride + window_size
        if end > num_snippets:
            # the last window is right-aligned to the video end and stops the loop
            bounds.append((max(0, num_snippets - window_size), num_snippets))
            break
        bounds.append((start, end))
    return bounds


@dataclass
class FrameSample:
    """Frames to decode and what they mean on the feature grid.

    Attributes:
        frame_indices: int64 `(feature_length * scale_factor,)` frame indices (edge-padded).
        mask: bool `(feature_length,)`, True for feature steps backed by real frames.
        segments: float32 `(num_segments, 2)` ground truth (start, end) in feature-grid units, or None.
        labels: int64 `(num_segments,)` class ids, or None.
        window_start_frame: first frame of the window (0 for `resize` and whole-video sampling).
    """

    frame_indices: np.ndarray
    mask: np.ndarray
    segments: np.ndarray | None = None
    labels: np.ndarray | None = None
    window_start_frame: int = 0


def read_stride(snippet_stride: int, scale_factor: int) -> int:
    """Frames between two decoded frames: `snippet_stride // scale_factor` (an error unless it divides exactly)."""
    if snippet_stride < scale_factor or snippet_stride % scale_factor:
        raise ValueError(
            f"`snippet_stride` ({snippet_stride}) must be a multiple of `scale_factor` ({scale_factor}): frames "
            f"are read every snippet_stride // scale_factor frames."
        )
    return snippet_stride // scale_factor


def _pad_to_window(indices: np.ndarray, window_size: int, scale_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge-pad frame indices to `window_size * scale_factor` and build the feature mask (OpenTAD layout)."""
    num_wanted = window_size * scale_factor
    mask = np.zeros(window_size, dtype=bool)
    # Feature steps with a full set of `scale_factor` real frames are valid, as in OpenTAD.
    mask[: min(len(indices), num_wanted) // scale_factor] = True
    if len(indices) < num_wanted:
        indices = np.pad(indices, (0, num_wanted - len(indices)), mode="edge")
    return indices.astype(np.int64), mask


def sample_resize(
    num_frames: int, resize_length: int, scale_factor: int, segments_seconds=None, labels=None, duration=None
) -> FrameSample:
    """Resize the whole video to `resize_length * scale_factor` frames (ActivityNet).

    Frame `i` is read at `(i + 0.5) * stride - 0.5` with `stride = num_frames / (resize_length * scale_factor)`,
    clipped and rounded half-to-even (numpy). The mask is all ones of length `resize_length`. Ground truth in
    seconds is mapped to the grid as `clip(seconds / duration, 0, 1) * resize_length`.
    """
    num_wanted = resize_length * scale_factor
    stride = num_frames / num_wanted
    indices = np.arange(stride / 2 - 0.5, num_frames + stride / 2 - 0.5, stride)
    # Float accumulation in arange can yield one point too many; the grid is defined by its first num_wanted.
    indices = np.clip(indices[:num_wanted], 0, num_frames - 1).round().astype(np.int64)
    sample = FrameSample(indices, np.ones(resize_length, dtype=bool))
    if segments_seconds is not None:
        if not duration or duration <= 0:
            raise ValueError("`duration` (seconds) is needed to map ground truth onto the resize grid")
        segments = np.asarray(segments_seconds, dtype=np.float64).reshape(-1, 2)
        sample.segments = (np.clip(segments / duration, 0.0, 1.0) * resize_length).astype(np.float32)
        sample.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    return sample


def sample_sliding_window(
    num_frames: int,
    window_size: int,
    scale_factor: int,
    snippet_stride: int,
    window_start_frame: int = 0,
    window_end_frame: int | None = None,
    segments=None,
    labels=None,
) -> FrameSample:
    """One sliding window of `window_size` features starting at frame `window_start_frame` (evaluation).

    Frames are read every `snippet_stride // scale_factor` frames; the window covers feature steps
    `window_start_frame // snippet_stride` to `window_end_frame // snippet_stride` (default: `window_size`
    steps), is edge-padded past the end of the video, and its mask has `num_real_frames // scale_factor` ones.
    `segments` (already in window feature-grid units) and `labels` are passed through.
    """
    frame_stride = read_stride(snippet_stride, scale_factor)
    all_indices = np.arange(0, num_frames, frame_stride)
    feature_start = int(window_start_frame / snippet_stride)
    if window_end_frame is None:
        feature_end = feature_start + window_size - 1
    else:
        feature_end = int(window_end_frame / snippet_stride)
    start = min(feature_start * scale_factor, len(all_indices))
    end = min((feature_end + 1) * scale_factor, len(all_indices), start + window_size * scale_factor)
    if end <= start:
        raise ValueError(
            f"the window starting at frame {window_start_frame} lies past the end of the video "
            f"({num_frames} decodable frames)"
        )
    indices, mask = _pad_to_window(all_indices[start:end], window_size, scale_factor)
    sample = FrameSample(indices, mask, window_start_frame=int(window_start_frame))
    if segments is not None:
        sample.segments = np.asarray(segments, dtype=np.float32).reshape(-1, 2)
        sample.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    return sample


def sample_random_trunc(
    num_frames: int,
    window_size: int,
    scale_factor: int,
    snippet_stride: int,
    segments,
    labels,
    trunc_thresh: float,
    crop_ratio: Sequence[float] | None,
    rng: random.Random,
) -> FrameSample:
    """Random training crop of `window_size` features (OpenTAD `LoadFrames(method="random_trunc")`).

    `segments` are ground truth in whole-video feature-grid units. Frames are read every
    `snippet_stride // scale_factor` frames. A video not longer than the window is first shortened to a random
    length in `[round(crop_ratio[0] * L), round(crop_ratio[1] * L)]` (unless that equals L). Up to 200 window
    starts are drawn until at least one segment keeps `intersection / length >= trunc_thresh`; kept segments
    are clipped to the window, shifted to it and returned in feature-grid units with their labels.
    """
    frame_stride = read_stride(snippet_stride, scale_factor)
    all_indices = np.arange(0, num_frames, frame_stride)
    # Work in frame-index units (feature steps * scale_factor), as OpenTAD does.
    gt = np.asarray(segments, dtype=np.float64).reshape(-1, 2) * scale_factor
    gt_labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    length = len(all_indices)
    trunc_len = window_size * scale_factor

    keep_whole_video = False
    if length <= trunc_len:
        if crop_ratio is None:
            keep_whole_video = True
        else:
            trunc_len = rng.randint(
                max(round(crop_ratio[0] * length), 1), min(round(crop_ratio[1] * length), length)
            )
            keep_whole_video = trunc_len == length

    if keep_whole_video:
        indices, kept_segments, kept_labels = all_indices, gt, gt_labels
    else:
        lengths = np.abs(gt[:, 1] - gt[:, 0])
        for _ in range(RANDOM_TRUNC_MAX_TRIES if len(gt) else 1):
            start = rng.randint(0, length - trunc_len)
            end = start + trunc_len
            left = np.maximum(start, gt[:, 0])
            right = np.minimum(end, gt[:, 1])
            intersection = np.clip(right - left, 0, None)
            # Zero-length segments can never be kept (OpenTAD divides by zero and compares NaN).
            ratio = np.divide(intersection, lengths, out=np.zeros_like(intersection), where=lengths > 0)
            keep = (ratio >= trunc_thresh) & (lengths > 0)
            if keep.any():
                break
        indices = all_indices[start:end]
        kept_segments = np.stack([left[keep], right[keep]], axis=1) - start
        kept_labels = gt_labels[keep]

    indices, mask = _pad_to_window(indices, window_size, scale_factor)
    return FrameSample(
        indices,
        mask,
        segments=(kept_segments / scale_factor).astype(np.float32).reshape(-1, 2),
        labels=kept_labels.astype(np.int64),
    )
