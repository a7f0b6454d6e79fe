"""Custom datasets: training settings suggested from the segment and video lengths (window size, snippet stride,
scale factor, FPN levels with regression ranges, `max_seq_len`) and the training preset built from them."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import presets
from .records import ANNOTATION_FILENAME, CLASS_MAP_FILENAME, CustomAnnotations, CustomDataError, PathLike


# VideoMAE checkpoints were pretrained on Kinetics clips sampled every 4th frame of 30 fps video (`16x4x1`): about
# 7.5 frames per second. AdaTAD keeps the backbone near that rate (THUMOS: every 4th frame; EPIC, Ego4D: every 2nd).
MIN_BACKBONE_FPS = 7.5
# ActionFormer detects a segment from the feature points inside it; a handful of points per short action is what the
# benchmark settings give (THUMOS: 0.13 s per feature, its short actions last 1-2 s).
MIN_FEATURES_PER_SHORT_SEGMENT = 4
MAX_SNIPPET_STRIDE = 16  # EPIC-Kitchens' setting, the coarsest of AdaTAD's configs
DEFAULT_FPN_LEVELS = 6  # ActionFormer's default: strides 1..32


@dataclass
class SuggestedSettings:
    """Data-driven starting values for a sliding-window (THUMOS-style) training preset; `reasoning` says why."""

    snippet_stride: int
    scale_factor: int
    window_size: int
    max_seq_len: int
    fpn_strides: list[int]
    fpn_regression_ranges: list[list[int]]
    seconds_per_feature: float
    reasoning: list[str]


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def suggest_settings(
    segment_seconds: Sequence[float],
    video_seconds: Sequence[float],
    fps: float,
    *,
    max_window_size: int = 768,
) -> SuggestedSettings:
    """Window size, snippet stride, scale factor, FPN levels, regression ranges and `max_seq_len` from the data.

    Rules (each printed with its numbers in `reasoning`):
    - snippet stride: video frames per feature step, the largest power of two (at most 16) that still gives the 10th
      percentile segment at least 4 feature points;
    - scale factor: frames the backbone reads per feature step, so that it sees at least 7.5 frames per second (the
      rate VideoMAE was pretrained at); frames are read every snippet_stride // scale_factor frames;
    - FPN levels: ActionFormer's 6 (strides 1..32, ranges (0,4),(4,8),...,(64,inf) in features), one more level per
      doubling of the 95th percentile segment beyond 128 features, fewer when the window would leave the coarsest
      level fewer than 4 points;
    - window size: long enough for the 99th percentile segment twice over (random truncation keeps a segment only
      if most of it is inside the window) and for the 90th percentile video when that fits `max_window_size`
      (memory grows with window x scale factor); a multiple of the coarsest stride and of 16 frames;
    - max_seq_len = window size (the detector pads shorter inputs to it).

    Args:
        segment_seconds: lengths of all training segments.
        video_seconds: durations of all training videos.
        fps: the videos' frame rate (the median if it varies).
        max_window_size: cap on the window in features (768 = THUMOS / EPIC).
    """
    if not len(segment_seconds) or not len(video_seconds) or not fps or fps <= 0:
        raise ValueError("suggest_settings needs segment lengths, video durations and a positive fps.")
    segments = np.asarray(segment_seconds, dtype=np.float64)
    videos = np.asarray(video_seconds, dtype=np.float64)
    p10, p50, p95, p99 = (float(np.percentile(segments, q)) for q in (10, 50, 95, 99))
    video_p50, video_p90 = float(np.percentile(videos, 50)), float(np.percentile(videos, 90))
    reasoning = [
        f"segments: 10th percentile {p10:.2f} s, median {p50:.2f} s, 95th {p95:.2f} s, 99th {p99:.2f} s; "
        f"videos: median {video_p50:.1f} s, 90th percentile {video_p90:.1f} s; {fps:g} fps"
    ]

    frames_per_point = p10 * fps / MIN_FEATURES_PER_SHORT_SEGMENT
    snippet_stride = 1
    while snippet_stride * 2 <= min(frames_per_point, MAX_SNIPPET_STRIDE):
        snippet_stride *= 2
    seconds_per_feature = snippet_stride / fps
    reasoning.append(
        f"snippet_stride {snippet_stride}: one feature every {snippet_stride} frames ({seconds_per_feature:.3f} s) "
        f"gives the short (10th percentile, {p10:.2f} s) segments {p10 / seconds_per_feature:.1f} feature points "
        f"(at least {MIN_FEATURES_PER_SHORT_SEGMENT} wanted; power of two, at most {MAX_SNIPPET_STRIDE})"
    )

    frame_stride = snippet_stride
    while frame_stride > 1 and fps / frame_stride < MIN_BACKBONE_FPS:
        frame_stride //= 2
    scale_factor = snippet_stride // frame_stride
    reasoning.append(
        f"scale_factor {scale_factor}: the backbone reads every {frame_stride} frame(s), {fps / frame_stride:.1f} "
        f"frames per second (VideoMAE was pretrained at about {MIN_BACKBONE_FPS:g}); cost grows with window x "
        "scale factor"
    )

    def features(seconds):
        return seconds / seconds_per_feature

    levels = DEFAULT_FPN_LEVELS
    while features(p95) > 2 ** (levels + 1) and levels < 10:
        levels += 1
    window = max(2 * features(p99), min(features(video_p90), max_window_size), 16)
    while levels > 2 and window / 2 ** (levels - 1) < 4:
        levels -= 1
    # model.num_frames = window x scale_factor must fill whole 16-frame backbone chunks
    multiple = math.lcm(2 ** (levels - 1), 16 // math.gcd(16, scale_factor))
    window_size = _round_up(window, multiple)
    reasoning.append(
        f"window_size {window_size} features ({window_size * seconds_per_feature:.1f} s, "
        f"{window_size * scale_factor} frames into the backbone): at least twice the 99th percentile segment "
        f"(2 x {features(p99):.0f} features), and the 90th percentile video ({features(video_p90):.0f} features) "
        f"up to {max_window_size}, rounded up to a multiple of {multiple}"
    )
    strides = [2 ** level for level in range(levels)]
    ranges = [[0, 4]] + [[4 * 2 ** (level - 1), 4 * 2 ** level] for level in range(1, levels)]
    ranges[-1][1] = 10000
    long_level = next(level for level, (_, upper) in enumerate(ranges) if features(p95) < upper)
    reasoning.append(
        f"{levels} FPN levels (strides {strides}), regression ranges {ranges} in features: the 95th percentile "
        f"segment ({features(p95):.0f} features) is regressed by level {long_level} (stride {strides[long_level]}); "
        f"the coarsest level keeps {window_size // strides[-1]} points per window"
    )
    reasoning.append(f"max_seq_len {window_size}: the window length, a multiple of the coarsest stride {strides[-1]}")
    return SuggestedSettings(snippet_stride, scale_factor, window_size, window_size, strides, ranges,
                             seconds_per_feature, reasoning)


# Backbones a custom preset can start from: name -> the shipped preset whose model, optimiser and augmentation it
# copies (THUMOS-14's sliding-window presets: the route a custom dataset takes).
BACKBONE_PRESETS = {
    "videomae-s": "e2e_thumos_videomae_s_768x1_160_adapter",
    "videomae-b": "e2e_thumos_videomae_b_768x1_160_adapter",
    "videomae-l": "e2e_thumos_videomae_l_768x1_160_adapter",
    "videomae-h": "e2e_thumos_videomae_h_768x1_160_adapter",
    "videomaev2-g": "e2e_thumos_videomaev2_g_768x1_160_adapter",
    "tiny": "synthetic-tiny",  # random-init CPU demo model
}


def build_custom_preset(
    settings: SuggestedSettings,
    *,
    backbone: str,
    name: str,
    data_root: PathLike,
    video_dir: PathLike,
    video_extension: str,
    class_names: Sequence[str],
    train_subset: str,
    test_subset: str,
    num_train_videos: int,
    overrides: Sequence[str] = (),
) -> dict:
    """A training preset for a converted dataset: the backbone's shipped preset with the suggested sampling and
    detector geometry, the dataset's files, classes and subsets, then `overrides` (`KEY=VALUE`, as `--set`).

    The result passes `presets.validate_preset`; `training/run_tad.py --preset FILE` accepts it after `save_preset`.
    """
    if backbone not in BACKBONE_PRESETS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONE_PRESETS)}.")
    preset = presets.load_preset(BACKBONE_PRESETS[backbone], validate=False)
    model, data, training = preset["model"], preset["data"], preset["training"]
    levels = len(settings.fpn_strides)
    preset.update(
        name=name,
        description=f"AdaTAD on the custom dataset {name}, {backbone} backbone ({BACKBONE_PRESETS[backbone]}), "
                    f"window {settings.window_size} x {settings.scale_factor}, "
                    f"snippet stride {settings.snippet_stride}",
        dataset=name,
        opentad_config=None,
        paper=None,
    )
    data.update(
        root=str(Path(data_root).resolve()), annotation_file=ANNOTATION_FILENAME, class_map_file=CLASS_MAP_FILENAME,
        video_dir=str(Path(video_dir).resolve()), video_prefix="", video_extension=video_extension,
        blocked_videos_file=None, ignore_labels=[], train_subset=train_subset, test_subset=test_subset,
        conversion_mode="frame_count", fps=None, train_sampling_method="random_trunc", sampling_method="sliding_window",
        window_size=settings.window_size, resize_length=None, scale_factor=settings.scale_factor,
        snippet_stride=settings.snippet_stride, class_agnostic=False,
    )
    model.update(
        num_frames=settings.window_size * settings.scale_factor, feature_length=settings.window_size,
        max_seq_len=settings.max_seq_len, fpn_strides=settings.fpn_strides,
        fpn_regression_ranges=settings.fpn_regression_ranges, num_labels=len(class_names),
        projection_arch=[*model["projection_arch"][:2], levels - 1],
    )
    if isinstance(model.get("projection_attention_window"), list):
        model["projection_attention_window"] = model["projection_attention_window"][:1] * levels
    model.pop("id2label", None)
    model.pop("label2id", None)
    # run_tad.py needs at least one full global batch of training videos.
    training["global_batch_size"] = max(1, min(training["global_batch_size"], num_train_videos))
    preset["evaluation"]["subset"] = test_subset
    return presets.apply_overrides(preset, list(overrides), source=f"custom preset {name}")


def dataset_statistics(records: CustomAnnotations, train_subset: str):
    train = [video for video in records.videos.values() if video.subset == train_subset]
    segments = [s.end - s.start for video in train for s in video.segments if s.end > s.start]
    durations = [video.duration for video in train if video.duration]
    fps_values = [video.fps for video in records.videos.values() if video.fps]
    if not segments or not durations or not fps_values:
        raise CustomDataError(f"{records.source}: the training subset {train_subset!r} needs videos with durations, "
                              "fps and segments to suggest settings; convert it with adatad-convert-annotations "
                              "--video-dir first.")
    return segments, durations, fps_values, len(train)
