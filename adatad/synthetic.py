"""Synthetic temporal action detection videos whose classes differ only in motion.

Every video shows a slowly drifting, textured background. At random times an object (a disc or a
square, each half painted in its own saturated colour) performs one action, then rests or leaves.
Each class has a time-reversed twin with the same distribution of single frames:

- ``moving_right`` / ``moving_left``: the object slides horizontally at a constant speed;
- ``growing`` / ``shrinking``: the object's radius changes at a fixed centre;
- ``rotating_clockwise`` / ``rotating_counterclockwise`` (optional): the object turns in place.

A ``moving_left`` clip is exactly a ``moving_right`` clip played backwards (over a still background),
so a single frame cannot tell the twins apart: a detector has to use temporal information.

Between actions the object is either absent or resting in the pose it starts (or ended) its action
in, so an action boundary is the moment the motion starts or stops, not the moment something
appears. The background drifts in a random direction so that "something moves" alone is no cue.

The output is what the real-data path reads: H.264 MP4 files (yuv420p, decodable by decord and
PyAV), an annotation JSON in OpenTAD's ``database`` layout with segments in seconds, and a
``category_idx.txt`` with one class name per line.

Usage::

    python -m adatad.synthetic generate --output-dir data/synthetic

or from Python::

    from adatad.synthetic import generate_synthetic_dataset
    summary = generate_synthetic_dataset("data/synthetic", num_train_videos=16, num_val_videos=8)
    summary["annotation_file"], summary["videos_dir"], summary["class_file"]
"""

import argparse
import dataclasses
import fractions
import json
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np

# class name -> (kind of motion, played backwards). Twins share the kind, so with the same random draws
# one is the exact time reversal of the other.
MOTIONS = {
    "moving_right": ("translate", False),
    "moving_left": ("translate", True),
    "growing": ("scale", False),
    "shrinking": ("scale", True),
    "rotating_clockwise": ("rotate", False),
    "rotating_counterclockwise": ("rotate", True),
}
DEFAULT_CLASS_NAMES = ("moving_left", "moving_right", "growing", "shrinking")

ANNOTATION_FILENAME = "annotations.json"
CLASS_FILENAME = "category_idx.txt"
VIDEOS_DIRNAME = "videos"
# ActivityNet ingredients (`write_activitynet_ingredients`): a video classifier in the CUHK layout OpenTAD reads
# (`{"results": {video_id: [score per class]}, "class": [names]}`) and the evaluator's blocked-videos JSON list.
CLASSIFIER_FILENAME = "video_classifier.json"
BLOCKED_FILENAME = "blocked.json"

# Subset name -> the second entry of each video's seed, so validation videos come from a different stream.
SUBSET_SEED_KEYS = {"training": 0, "validation": 1}


class SyntheticConfigError(ValueError):
    """A `SyntheticDatasetConfig` setting is out of range; the message names the field."""


@dataclasses.dataclass
class SyntheticDatasetConfig:
    """Settings of the synthetic dataset; every field has a working default.

    The defaults are the dataset of the `synthetic-tiny` demo preset: short, fast actions (8-20 frames) in 64-frame
    videos (one detector window), a slowly drifting background, and no resting object between actions (the
    object is absent there), which a random-init tiny AdaTAD learns on a CPU in minutes. Raise
    ``resting_object_probability`` for the harder variant whose action boundaries are only the start and stop of
    the motion.

    Args:
        num_train_videos: videos in the ``training`` subset.
        num_val_videos: held-out videos in the ``validation`` subset (drawn from a different seed stream).
        num_frames: frames per video; the duration is ``num_frames / fps`` seconds.
        frame_size: height and width of the square frames in pixels (even, for yuv420p).
        fps: frame rate written into the files and the annotation.
        class_names: action classes to draw from, a subset of `MOTIONS`; their order is the class index.
        min_actions_per_video, max_actions_per_video: number of actions drawn per video (fewer when they do
            not fit into ``num_frames``).
        min_action_frames, max_action_frames: length of one action in frames.
        min_gap_frames: background frames between two consecutive actions.
        min_num_frames: None for videos of exactly ``num_frames`` frames; else each video draws its length from
            ``[min_num_frames, num_frames]`` (ActivityNet-style videos of different durations, resized to one
            feature length by the detector).
        one_class_per_video: every action of a video has the same class (ActivityNet: a video shows one
            activity, so a video-level classifier can name its class-agnostic detections).
        resting_object_probability: chance that the object is visible but still during a background gap
            (otherwise it is absent).
        background_speed: range of the background drift speed in pixels per frame.
        noise_std: standard deviation of per-pixel Gaussian noise (0..255 scale) added to every frame.
        crf: H.264 constant rate factor (lower = higher quality, larger files).
        seed: base seed; video ``i`` of a subset draws from the stream ``(seed, subset, 0, i)``, the class
            order of a subset from ``(seed, subset, 1)``, so validation videos never repeat training ones.
    """

    num_train_videos: int = 128
    num_val_videos: int = 32
    num_frames: int = 64
    frame_size: int = 64
    fps: float = 10.0
    class_names: tuple = DEFAULT_CLASS_NAMES
    min_actions_per_video: int = 1
    max_actions_per_video: int = 3
    min_action_frames: int = 8
    max_action_frames: int = 20
    min_gap_frames: int = 4
    min_num_frames: int | None = None
    one_class_per_video: bool = False
    resting_object_probability: float = 0.0
    background_speed: tuple = (0.1, 0.3)
    noise_std: float = 2.0
    crf: int = 18
    seed: int = 0

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        self.background_speed = tuple(float(speed) for speed in self.background_speed)
        unknown = [name for name in self.class_names if name not in MOTIONS]
        if unknown or not self.class_names:
            raise SyntheticConfigError(
                f"`class_names` {list(self.class_names)} must be a non-empty subset of {sorted(MOTIONS)}; "
                f"unknown: {unknown}"
            )
        if len(set(self.class_names)) != len(self.class_names):
            raise SyntheticConfigError(f"`class_names` {list(self.class_names)} contains duplicates")
        if self.frame_size < 32 or self.frame_size % 2:
            raise SyntheticConfigError(
                f"`frame_size` ({self.frame_size}) must be an even number >= 32 (yuv420p needs even sizes)"
            )
        if self.fps <= 0:
            raise SyntheticConfigError(f"`fps` ({self.fps}) must be positive")
        if self.num_train_videos < 0 or self.num_val_videos < 0:
            raise SyntheticConfigError(
                f"`num_train_videos` ({self.num_train_videos}) and `num_val_videos` ({self.num_val_videos}) "
                "must not be negative"
            )
        if not 2 <= self.min_action_frames <= self.max_action_frames:
            raise SyntheticConfigError(
                f"need 2 <= `min_action_frames` ({self.min_action_frames}) <= `max_action_frames` "
                f"({self.max_action_frames})"
            )
        if self.min_action_frames > self.num_frames:
            raise SyntheticConfigError(
                f"`min_action_frames` ({self.min_action_frames}) must not exceed `num_frames` ({self.num_frames})"
            )
        if not 1 <= self.min_actions_per_video <= self.max_actions_per_video:
            raise SyntheticConfigError(
                f"need 1 <= `min_actions_per_video` ({self.min_actions_per_video}) <= `max_actions_per_video` "
                f"({self.max_actions_per_video})"
            )
        if self.min_num_frames is not None and not self.min_action_frames <= self.min_num_frames <= self.num_frames:
            raise SyntheticConfigError(
                f"need `min_action_frames` ({self.min_action_frames}) <= `min_num_frames` ({self.min_num_frames}) "
                f"<= `num_frames` ({self.num_frames})"
            )
        if self.min_gap_frames < 0:
            raise SyntheticConfigError(f"`min_gap_frames` ({self.min_gap_frames}) must not be negative")
        if not 0.0 <= self.resting_object_probability <= 1.0:
            raise SyntheticConfigError(
                f"`resting_object_probability` ({self.resting_object_probability}) must be in [0, 1]"
            )
        if len(self.background_speed) != 2 or not 0 <= self.background_speed[0] <= self.background_speed[1]:
            raise SyntheticConfigError(
                f"`background_speed` {self.background_speed} must be a (low, high) pair with 0 <= low <= high"
            )
        if self.noise_std < 0:
            raise SyntheticConfigError(f"`noise_std` ({self.noise_std}) must not be negative")


@dataclasses.dataclass
class _ObjectTrack:
    """Per-frame appearance and pose of the single object of a video; all arrays have ``num_frames`` rows."""

    visible: np.ndarray  # (num_frames,) bool
    center_x: np.ndarray  # (num_frames,) pixels
    center_y: np.ndarray  # (num_frames,) pixels
    radius: np.ndarray  # (num_frames,) pixels
    angle: np.ndarray  # (num_frames,) radians, measured from +x towards +y (clockwise on screen)
    is_square: np.ndarray  # (num_frames,) bool, disc otherwise
    color_a: np.ndarray  # (num_frames, 3) RGB of the half ahead along `angle`
    color_b: np.ndarray  # (num_frames, 3) RGB of the other half

    @classmethod
    def empty(cls, num_frames):
        zeros = np.zeros(num_frames, dtype=np.float32)
        return cls(
            visible=np.zeros(num_frames, dtype=bool),
            center_x=zeros.copy(),
            center_y=zeros.copy(),
            radius=np.ones(num_frames, dtype=np.float32),
            angle=zeros.copy(),
            is_square=np.zeros(num_frames, dtype=bool),
            color_a=np.zeros((num_frames, 3), dtype=np.float32),
            color_b=np.zeros((num_frames, 3), dtype=np.float32),
        )

    def set_frames(self, frames, appearance, poses):
        """Shows the object with `appearance` and `poses` (dict of arrays or scalars) on the frames `frames`."""
        self.visible[frames] = True
        self.is_square[frames] = appearance["is_square"]
        self.color_a[frames] = appearance["color_a"]
        self.color_b[frames] = appearance["color_b"]
        for name in ("center_x", "center_y", "radius", "angle"):
            getattr(self, name)[frames] = poses[name]


def _hsv_to_rgb(hue, saturation, value):
    """One HSV colour (all in [0, 1]) to RGB on the 0..255 scale."""
    channel_offsets = np.array([5.0, 3.0, 1.0])
    k = (channel_offsets + hue * 6.0) % 6.0
    rgb = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (255.0 * rgb).astype(np.float32)


def _sample_appearance(rng):
    """A disc or square with two saturated halves of clearly different hue (the split makes rotation visible)."""
    hue = rng.uniform()
    return {
        "is_square": bool(rng.uniform() < 0.5),
        "color_a": _hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0)),
        "color_b": _hsv_to_rgb((hue + rng.uniform(0.3, 0.7)) % 1.0, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0)),
    }


def _sample_action_poses(rng, label, num_frames, frame_size):
    """Per-frame pose of one action of class `label` lasting `num_frames` frames.

    The random draws depend only on the kind of motion, never on its direction, so twin classes with
    the same generator state give exactly time-reversed poses.
    """
    kind, reverse = MOTIONS[label]
    # Linear progress from the first to the last frame of the action (both ends included).
    progress = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)
    size = float(frame_size)
    if kind == "translate":
        radius = rng.uniform(0.10, 0.22) * size
        distance = min(rng.uniform(0.35, 0.6) * size, size - 2.0 * radius)
        # The path fits between the borders; max() absorbs rounding when it spans the whole free width.
        start_x = radius + rng.uniform() * max(size - 2.0 * radius - distance, 0.0)
        poses = {
            "center_x": start_x + distance * progress,
            "center_y": np.full(num_frames, rng.uniform(radius, size - radius), dtype=np.float32),
            "radius": np.full(num_frames, radius, dtype=np.float32),
            "angle": np.full(num_frames, rng.uniform(0.0, 2.0 * np.pi), dtype=np.float32),
        }
    elif kind == "scale":
        small_radius = rng.uniform(0.06, 0.10) * size
        large_radius = rng.uniform(0.20, 0.26) * size
        poses = {
            "center_x": np.full(num_frames, rng.uniform(large_radius, size - large_radius), dtype=np.float32),
            "center_y": np.full(num_frames, rng.uniform(large_radius, size - large_radius), dtype=np.float32),
            "radius": small_radius + (large_radius - small_radius) * progress,
            "angle": np.full(num_frames, rng.uniform(0.0, 2.0 * np.pi), dtype=np.float32),
        }
    else:  # rotate
        radius = rng.uniform(0.14, 0.24) * size
        # At most 2 pi over >= 12 frames keeps each step well under pi, so the direction is unambiguous.
        total_turn = rng.uniform(0.75, 2.0) * np.pi
        poses = {
            "center_x": np.full(num_frames, rng.uniform(radius, size - radius), dtype=np.float32),
            "center_y": np.full(num_frames, rng.uniform(radius, size - radius), dtype=np.float32),
            "radius": np.full(num_frames, radius, dtype=np.float32),
            "angle": rng.uniform(0.0, 2.0 * np.pi) + total_turn * progress,
        }
    if reverse:
        poses = {name: values[::-1] for name, values in poses.items()}
    return {name: np.asarray(values, dtype=np.float32) for name, values in poses.items()}


def _render_background(rng, num_frames, config):
    """A smooth, periodic, low-saturation texture drifting at constant velocity: float32 (num_frames, H, W, 3)."""
    size = config.frame_size
    frequency_y = np.fft.fftfreq(size)[:, None]
    frequency_x = np.fft.rfftfreq(size)[None, :]
    # Gaussian low-pass: blobs of roughly 8-12 pixels whatever the frame size.
    low_pass = np.exp(-((frequency_x**2 + frequency_y**2) / 0.09**2))
    # A luminance field and a weak warm/cool tint field: (2, size, size // 2 + 1) half spectra.
    spectra = (np.fft.rfft2(rng.standard_normal((2, size, size))) * low_pass).astype(np.complex64)
    speed = rng.uniform(*config.background_speed)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    velocity_x, velocity_y = speed * np.cos(direction), speed * np.sin(direction)
    # A translation by (dx, dy) is a phase ramp in the Fourier domain: smooth sub-pixel drift, seamless wrap.
    # The ramp factorises into an x part (num_frames, 1, size // 2 + 1) and a y part (num_frames, size, 1).
    times = np.arange(num_frames, dtype=np.float32)[:, None, None]
    phase_x = np.exp(-2j * np.pi * frequency_x[None] * velocity_x * times).astype(np.complex64)
    phase_y = np.exp(-2j * np.pi * frequency_y[None] * velocity_y * times).astype(np.complex64)
    fields = np.fft.irfft2(spectra[None] * (phase_x * phase_y)[:, None], s=(size, size))  # (num_frames, 2, size, size)
    fields /= fields[0].std(axis=(-2, -1), keepdims=True)[None] + 1e-8
    base_color = rng.uniform(115.0, 150.0) + rng.uniform(-8.0, 8.0, size=3)
    warm_cool = np.array([1.0, 0.0, -1.0], dtype=np.float32)
    # (num_frames, size, size, 1) fields times per-channel weights -> (num_frames, size, size, 3)
    luminance, tint = fields[:, 0, :, :, None], fields[:, 1, :, :, None]
    background = base_color.astype(np.float32) + 25.0 * luminance + 6.0 * tint * warm_cool
    return background.astype(np.float32)


def _draw_objects(frames, track):
    """Paints the object of `track` onto `frames` (float32, (num_frames, H, W, 3)) in place, anti-aliased."""
    visible_frames = np.flatnonzero(track.visible)
    if len(visible_frames) == 0:
        return frames
    size = frames.shape[1]
    pixel_centres = np.arange(size, dtype=np.float32) + 0.5
    center_x = track.center_x[visible_frames, None, None]
    center_y = track.center_y[visible_frames, None, None]
    radius = track.radius[visible_frames, None, None]
    cos_angle = np.cos(track.angle[visible_frames])[:, None, None]
    sin_angle = np.sin(track.angle[visible_frames])[:, None, None]
    # Pixel offsets from the centre, rotated into the object's frame: (num_visible, H, W) each, in pixels.
    offset_x = pixel_centres[None, None, :] - center_x
    offset_y = pixel_centres[None, :, None] - center_y
    along = offset_x * cos_angle + offset_y * sin_angle
    across = -offset_x * sin_angle + offset_y * cos_angle
    is_square = track.is_square[visible_frames, None, None]
    distance = np.where(is_square, np.maximum(np.abs(along), np.abs(across)), np.sqrt(along**2 + across**2))
    # Coverage ramps over one pixel at the border and at the colour split, so sub-pixel motion is visible.
    coverage = np.clip(radius - distance + 0.5, 0.0, 1.0)[..., None]
    half_a = np.clip(along + 0.5, 0.0, 1.0)[..., None]
    color = (
        half_a * track.color_a[visible_frames, None, None] + (1.0 - half_a) * track.color_b[visible_frames, None, None]
    )
    frames[visible_frames] = (1.0 - coverage) * frames[visible_frames] + coverage * color
    return frames


def _finish_frames(frames, rng, noise_std):
    """Adds sensor noise (the same on the three channels, like luminance noise) and converts to uint8 RGB."""
    if noise_std > 0:
        frames = frames + noise_std * rng.standard_normal(size=frames.shape[:-1] + (1,), dtype=np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_action_clip(label, config=None, *, num_frames=24, seed=0):
    """Renders one action of class `label` filling a whole clip, over the drifting background.

    With the same `seed`, twin classes (e.g. ``moving_left`` / ``moving_right``) draw the same background,
    object and path; with ``background_speed=(0, 0)`` and ``noise_std=0`` one clip is exactly the other
    played backwards. Useful to look at a class or to check that classes differ only in motion.

    Args:
        label: a class name from `MOTIONS`.
        config: `SyntheticDatasetConfig` for the frame size, background speed and noise (default settings if None).
        num_frames: length of the clip.
        seed: seed of the clip's random stream.

    Returns:
        uint8 array of shape (num_frames, frame_size, frame_size, 3), RGB.
    """
    config = config if config is not None else SyntheticDatasetConfig()
    if label not in MOTIONS:
        raise ValueError(f"unknown action class {label!r}; choose one of {sorted(MOTIONS)}")
    if num_frames < 2:
        raise ValueError(f"`num_frames` ({num_frames}) must be at least 2 for a motion to be visible")
    rng = np.random.default_rng(seed)
    frames = _render_background(rng, num_frames, config)
    track = _ObjectTrack.empty(num_frames)
    track.set_frames(
        slice(None), _sample_appearance(rng), _sample_action_poses(rng, label, num_frames, config.frame_size)
    )
    return _finish_frames(_draw_objects(frames, track), rng, config.noise_std)


def _sample_action_layout(rng, config):
    """Random (start_frame, end_frame) pairs (end exclusive) of the actions of one video, sorted and disjoint."""
    num_actions = int(rng.integers(config.min_actions_per_video, config.max_actions_per_video + 1))
    lengths = rng.integers(config.min_action_frames, config.max_action_frames + 1, size=num_actions)
    # Drop actions from the end until they fit with the minimum gaps between them.
    while len(lengths) > 1 and lengths.sum() + (len(lengths) - 1) * config.min_gap_frames > config.num_frames:
        lengths = lengths[:-1]
    lengths = np.minimum(lengths, config.num_frames)
    spare_frames = config.num_frames - int(lengths.sum()) - (len(lengths) - 1) * config.min_gap_frames
    # Split the spare frames into len(lengths) + 1 gaps (before, between and after the actions).
    cuts = np.sort(rng.integers(0, spare_frames + 1, size=len(lengths)))
    extra_gaps = np.diff(np.concatenate([[0], cuts, [spare_frames]]))
    segments, position = [], int(extra_gaps[0])
    for index, length in enumerate(lengths):
        segments.append((position, position + int(length)))
        position += int(length) + config.min_gap_frames + int(extra_gaps[index + 1])
    return segments


def _balanced_labels(rng, class_names, num_actions):
    """`num_actions` labels in random order in which every class occurs equally often (up to one)."""
    num_rounds = -(-num_actions // len(class_names))
    labels = [name for _ in range(num_rounds) for name in rng.permutation(class_names)]
    return [str(label) for label in labels[:num_actions]]


def _make_video(rng, config, layout, labels):
    """Renders one video with the actions `layout` ([(start_frame, end_frame)]) of classes `labels`.

    Returns (uint8 frames (num_frames, H, W, 3), [(start_frame, end_frame, label)]).
    """
    num_frames, size = config.num_frames, config.frame_size
    frames = _render_background(rng, num_frames, config)
    track = _ObjectTrack.empty(num_frames)
    actions = []
    for (start, end), label in zip(layout, labels, strict=True):
        appearance = _sample_appearance(rng)
        poses = _sample_action_poses(rng, label, end - start, size)
        track.set_frames(slice(start, end), appearance, poses)
        actions.append({"start": start, "end": end, "label": label, "appearance": appearance, "poses": poses})

    # Background gaps: the object is absent, or rests in the pose of a neighbouring action, so that the
    # action boundary is where the motion starts or stops.
    boundaries = [0] + [edge for action in actions for edge in (action["start"], action["end"])] + [num_frames]
    for gap_index in range(len(actions) + 1):
        gap_start, gap_end = boundaries[2 * gap_index], boundaries[2 * gap_index + 1]
        if gap_end <= gap_start or rng.uniform() >= config.resting_object_probability:
            continue
        previous_action = actions[gap_index - 1] if gap_index > 0 else None
        next_action = actions[gap_index] if gap_index < len(actions) else None
        if previous_action is not None and (next_action is None or rng.uniform() < 0.5):
            neighbour, pose_index = previous_action, -1
        else:
            neighbour, pose_index = next_action, 0
        resting_pose = {name: values[pose_index] for name, values in neighbour["poses"].items()}
        track.set_frames(slice(gap_start, gap_end), neighbour["appearance"], resting_pose)

    frames = _finish_frames(_draw_objects(frames, track), rng, config.noise_std)
    return frames, [(action["start"], action["end"], action["label"]) for action in actions]


def write_mp4(path, frames, fps, crf=18):
    """Writes uint8 RGB `frames` (num_frames, H, W, 3) as an H.264 yuv420p MP4 that decord and PyAV read.

    No B-frames and a key frame every two seconds keep random access cheap and the frame count exact.
    One encoder thread keeps the bytes identical between runs.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames for {path} must be uint8 (num_frames, height, width, 3), got {frames.dtype} {frames.shape}"
        )
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0", "g": str(max(1, round(2 * fps)))}
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def generate_synthetic_dataset(output_dir, config=None, **overrides):
    """Writes a synthetic temporal action detection dataset (videos + annotation JSON + class list).

    Layout under `output_dir`::

        videos/synthetic_training_0000.mp4, ..., videos/synthetic_validation_0000.mp4, ...
        annotations.json   {"database": {video_id: {"subset": "training" | "validation", "duration": seconds,
                            "frame": num_frames, "fps": fps, "annotations": [{"segment": [start_s, end_s],
                            "label": name}, ...]}}}
        category_idx.txt   one class name per line, line number = class index

    Segments are sorted, in seconds, with ``start = start_frame / fps`` and ``end = end_frame / fps`` (the
    end frame is exclusive), inside ``[0, duration]``. The same seed gives the same files.

    Args:
        output_dir: folder to write into (created if missing; files of the same name are overwritten).
        config: a `SyntheticDatasetConfig`; default settings if None.
        **overrides: fields of `SyntheticDatasetConfig` to replace, e.g. ``num_train_videos=8, seed=1``.

    Returns:
        dict with ``output_dir``, ``videos_dir``, ``annotation_file``, ``class_file`` (str paths),
        ``class_names``, ``num_videos`` and ``num_actions`` (per subset; actions per class),
        ``num_frames``, ``fps``, ``frame_size``, ``duration_seconds`` (of the longest video), ``mean_action_seconds``,
        ``action_frame_fraction`` (share of frames inside an action) and ``elapsed_seconds``.
    """
    config = config if config is not None else SyntheticDatasetConfig()
    if overrides:
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(SyntheticDatasetConfig)})
        if unknown:
            raise TypeError(f"unknown SyntheticDatasetConfig field(s) {unknown}")
        config = dataclasses.replace(config, **overrides)
    start_time = time.perf_counter()
    output_dir = Path(output_dir)
    videos_dir = output_dir / VIDEOS_DIRNAME
    videos_dir.mkdir(parents=True, exist_ok=True)

    duration = round(config.num_frames / config.fps, 6)
    database = {}
    action_counts = {subset: Counter() for subset in SUBSET_SEED_KEYS}
    action_frames = total_frames = 0
    for subset, num_videos in (("training", config.num_train_videos), ("validation", config.num_val_videos)):
        # Stream (seed, subset, 0, i) draws video i; stream (seed, subset, 1) the class order of the subset.
        video_rngs = [
            np.random.default_rng([config.seed, SUBSET_SEED_KEYS[subset], 0, index]) for index in range(num_videos)
        ]
        # One config per video: only the length differs, drawn first from the video's own stream.
        video_configs = [
            config
            if config.min_num_frames is None
            else dataclasses.replace(config, num_frames=int(rng.integers(config.min_num_frames, config.num_frames + 1)))
            for rng in video_rngs
        ]
        layouts = [_sample_action_layout(rng, video_config) for rng, video_config in zip(video_rngs, video_configs)]
        # Classes are dealt from shuffled rounds over the whole subset, so every class is (nearly) equally frequent.
        label_rng = np.random.default_rng([config.seed, SUBSET_SEED_KEYS[subset], 1])
        if config.one_class_per_video:
            video_labels = _balanced_labels(label_rng, config.class_names, num_videos)
            labels = [[label] * len(layout) for label, layout in zip(video_labels, layouts)]
        else:
            subset_labels = iter(
                _balanced_labels(label_rng, config.class_names, sum(len(layout) for layout in layouts))
            )
            labels = [[next(subset_labels) for _ in layout] for layout in layouts]
        for video_index in range(num_videos):
            video_id = f"synthetic_{subset}_{video_index:04d}"
            video_config = video_configs[video_index]
            frames, actions = _make_video(
                video_rngs[video_index], video_config, layouts[video_index], labels[video_index]
            )
            write_mp4(videos_dir / f"{video_id}.mp4", frames, config.fps, config.crf)
            database[video_id] = {
                "subset": subset,
                "duration": round(video_config.num_frames / config.fps, 6),
                "frame": video_config.num_frames,
                "fps": config.fps,
                "annotations": [
                    {"segment": [round(start / config.fps, 6), round(end / config.fps, 6)], "label": label}
                    for start, end, label in actions
                ],
            }
            action_counts[subset].update(label for _, _, label in actions)
            action_frames += sum(end - start for start, end, _ in actions)
            total_frames += video_config.num_frames

    annotation_file = output_dir / ANNOTATION_FILENAME
    annotation_file.write_text(json.dumps({"database": database}, indent=1) + "\n")
    class_file = output_dir / CLASS_FILENAME
    class_file.write_text("".join(f"{name}\n" for name in config.class_names))

    num_actions_total = sum(sum(counts.values()) for counts in action_counts.values())
    return {
        "output_dir": str(output_dir),
        "videos_dir": str(videos_dir),
        "annotation_file": str(annotation_file),
        "class_file": str(class_file),
        "class_names": list(config.class_names),
        "num_videos": {"training": config.num_train_videos, "validation": config.num_val_videos},
        "num_actions": {
            subset: {name: counts[name] for name in config.class_names} for subset, counts in action_counts.items()
        },
        "num_frames": config.num_frames,
        "fps": config.fps,
        "frame_size": config.frame_size,
        "duration_seconds": duration,
        "mean_action_seconds": round(action_frames / max(num_actions_total, 1) / config.fps, 3),
        "action_frame_fraction": round(action_frames / max(total_frames, 1), 3),
        "elapsed_seconds": round(time.perf_counter() - start_time, 2),
    }


# The `synthetic-tiny-anet` preset's data: ActivityNet's setting in small (one activity per video, videos of
# different lengths that the detector resizes to one feature length, at most two long actions per video).
ACTIVITYNET_SETTINGS = dict(
    one_class_per_video=True,
    min_num_frames=64,
    num_frames=96,
    min_action_frames=16,
    max_action_frames=40,
    max_actions_per_video=2,
)


def write_activitynet_ingredients(output_dir, classifier_noise=0.15, num_blocked_videos=2, seed=0):
    """Writes what ActivityNet's evaluation needs besides the annotations, for a dataset with one class per video:

    - ``video_classifier.json``: video-level class scores of every validation video in the CUHK layout
      (``{"results": {video_id: [score per class]}, "class": [names]}``, `external_classifier_kind` "cuhk"): 1 for
      the video's class and 0 for the others, plus Gaussian noise of std ``classifier_noise``, clipped to [0, 1];
    - ``blocked.json``: a JSON list of the last ``num_blocked_videos`` validation videos, which the evaluation
      leaves out of ground truth and predictions (ActivityNet's `blocked.json`).

    Returns:
        dict with ``classifier_file``, ``blocked_file`` (str paths) and ``blocked_videos`` (ids).
    """
    output_dir = Path(output_dir)
    database = json.loads((output_dir / ANNOTATION_FILENAME).read_text())["database"]
    class_names = (output_dir / CLASS_FILENAME).read_text().split()
    rng = np.random.default_rng([seed, 2])
    results = {}
    for video_id, video in database.items():
        if video["subset"] != "validation":
            continue
        labels = {annotation["label"] for annotation in video["annotations"]}
        if len(labels) != 1:
            raise SyntheticConfigError(
                f"video {video_id} in {output_dir / ANNOTATION_FILENAME} has the classes {sorted(labels)}; a video "
                "classifier needs exactly one class per video (generate with one_class_per_video=True)"
            )
        scores = np.zeros(len(class_names))
        scores[class_names.index(labels.pop())] = 1.0
        scores = np.clip(scores + rng.normal(0.0, classifier_noise, len(class_names)), 0.0, 1.0)
        results[video_id] = [round(float(score), 4) for score in scores]
    if num_blocked_videos >= len(results):
        raise SyntheticConfigError(
            f"`num_blocked_videos` ({num_blocked_videos}) must be smaller than the {len(results)} validation videos"
        )
    blocked = sorted(results)[len(results) - num_blocked_videos :]
    classifier_file = output_dir / CLASSIFIER_FILENAME
    classifier_file.write_text(json.dumps({"results": results, "class": class_names}) + "\n")
    blocked_file = output_dir / BLOCKED_FILENAME
    blocked_file.write_text(json.dumps(blocked) + "\n")
    return {"classifier_file": str(classifier_file), "blocked_file": str(blocked_file), "blocked_videos": blocked}


def generate_synthetic_activitynet(output_dir, **overrides):
    """`generate_synthetic_dataset` with `ACTIVITYNET_SETTINGS` (then ``overrides``), plus
    `write_activitynet_ingredients`; returns the generator's summary updated with the ingredients' paths."""
    summary = generate_synthetic_dataset(output_dir, **{**ACTIVITYNET_SETTINGS, **overrides})
    summary.update(write_activitynet_ingredients(output_dir, seed=overrides.get("seed", 0)))
    return summary


# Generator of each synthetic `dataset` a preset can name.
DATASET_GENERATORS = {"synthetic": generate_synthetic_dataset, "synthetic-activitynet": generate_synthetic_activitynet}


def _add_generate_command(subparsers):
    defaults = SyntheticDatasetConfig()
    parser = subparsers.add_parser(
        "generate",
        help="write synthetic videos, annotations.json and category_idx.txt",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="folder to write the dataset into")
    parser.add_argument("--num-train", type=int, default=defaults.num_train_videos, help="training videos")
    parser.add_argument("--num-val", type=int, default=defaults.num_val_videos, help="held-out validation videos")
    parser.add_argument(
        "--num-frames", type=int, default=None, help=f"frames per video (default: {defaults.num_frames})"
    )
    parser.add_argument("--frame-size", type=int, default=defaults.frame_size, help="frame height and width (even)")
    parser.add_argument("--fps", type=float, default=defaults.fps, help="frame rate")
    parser.add_argument(
        "--classes",
        default=",".join(defaults.class_names),
        help=f"comma-separated action classes, from: {', '.join(MOTIONS)}",
    )
    parser.add_argument(
        "--min-action-frames", type=int, default=None, help=f"shortest action (default: {defaults.min_action_frames})"
    )
    parser.add_argument(
        "--max-action-frames", type=int, default=None, help=f"longest action (default: {defaults.max_action_frames})"
    )
    parser.add_argument(
        "--max-actions-per-video",
        type=int,
        default=None,
        help=f"most actions in one video (default: {defaults.max_actions_per_video})",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="base random seed")
    parser.add_argument(
        "--activitynet",
        action="store_true",
        help="ActivityNet style (the synthetic-tiny-anet data): one class per video and, unless given above, "
        f"{ACTIVITYNET_SETTINGS['min_num_frames']}-{ACTIVITYNET_SETTINGS['num_frames']} frames per video, "
        f"{ACTIVITYNET_SETTINGS['min_action_frames']}-{ACTIVITYNET_SETTINGS['max_action_frames']}-frame actions, at "
        f"most {ACTIVITYNET_SETTINGS['max_actions_per_video']} per video; plus {CLASSIFIER_FILENAME} and "
        f"{BLOCKED_FILENAME}",
    )
    parser.set_defaults(handler=_run_generate)


def _run_generate(args):
    settings = dict(
        num_train_videos=args.num_train,
        num_val_videos=args.num_val,
        frame_size=args.frame_size,
        fps=args.fps,
        class_names=tuple(name.strip() for name in args.classes.split(",") if name.strip()),
        seed=args.seed,
    )
    # Settings left out keep the chosen generator's defaults (`--activitynet`: ACTIVITYNET_SETTINGS).
    optional = ("min_action_frames", "max_action_frames", "max_actions_per_video")
    settings.update({name: getattr(args, name) for name in optional if getattr(args, name) is not None})
    if args.num_frames is not None:
        settings.update(num_frames=args.num_frames, min_num_frames=None)
    generate = generate_synthetic_activitynet if args.activitynet else generate_synthetic_dataset
    print(json.dumps(generate(args.output_dir, **settings), indent=2))


def main(argv=None):
    """Command line: ``python -m adatad.synthetic <command> ...``; each command is one sub-parser."""
    parser = argparse.ArgumentParser(prog="python -m adatad.synthetic", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate_command(subparsers)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except SyntheticConfigError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
