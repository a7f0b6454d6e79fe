"""`datasets` glue of the training and evaluation loaders: annotation rows -> model inputs, lazily, and a collator.

`TemporalDetectionTransform` plugs an `AdaTADVideoProcessor` into `datasets.Dataset.with_transform`: frames are
decoded only when a row is read. `collate_temporal_detection` stacks its rows into model batches. A saved model
folder does not carry this module: it is for training and evaluation loops, not for loading a model.
"""

import random
import zlib

import numpy as np
import torch
from transformers.utils import logging

from .processing_adatad import AdaTADVideoProcessor
from .time_grid import FrameSample, seconds_to_grid
from .video_decoding import VideoDecodeError, VideoInfo, WindowFrameCache

logger = logging.get_logger(__name__)


class TemporalDetectionTransform:
    """Batch transform for `datasets.Dataset.with_transform` / `set_transform`: rows -> model inputs, lazily.

    Rows come from `adatad.annotations`: video rows (`video_id`, `video_path`, `duration`, `fps`, `num_frames`,
    `segments` in seconds, `labels`) or window rows of `adatad.annotations.expand_sliding_windows` (adding
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
                    "video rows with adatad.annotations.expand_sliding_windows first"
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


__all__ = ["TemporalDetectionTransform", "collate_temporal_detection"]
