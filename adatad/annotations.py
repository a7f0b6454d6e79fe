"""Annotation indexing: temporal action detection benchmarks as `datasets.Dataset` tables.

Every loader reads one annotation format and returns a `datasets.Dataset` with ONE ROW PER VIDEO
and these columns (the names are a contract other modules rely on):

| column       | type                          | meaning                                                      |
| ------------ | ----------------------------- | ------------------------------------------------------------ |
| `video_id`   | string                        | the id used by the annotation file (and by evaluation)       |
| `video_path` | string or None                | resolved file path when `video_dir` is given, else None      |
| `duration`   | float64 or None               | seconds; None when the format does not state it              |
| `fps`        | float64 or None               | frames per second as the annotation states it                |
| `num_frames` | int64 or None                 | frame count as the annotation states it                      |
| `subset`     | string                        | subset name as written in the source (e.g. "validation")     |
| `segments`   | list of [start, end] float64  | action instances in seconds                                  |
| `labels`     | list of `ClassLabel`          | one class index per segment; names in `features["labels"]`  |

Convention: a loader returns ONE `Dataset` holding every subset of the file (filter with
`subset=` at load time, by exact name, or split afterwards with `split_by_subset`).

Every loader takes `subset` (a name or list of names; keeps videos whose subset is EXACTLY one of them;
OpenTAD tests `subset in subset_name`, a substring test for strings, this module never does that) and the
settings all loaders share: validation (`on_error`, `zero_length`, `out_of_bounds`, `allow_empty`,
`deduplicate`), video files (`video_dir`, `video_prefix`, `video_extension`, `missing_videos`) and
`output_report`, given as one `AnnotationOptions` object (`options=`) or as keywords of the call. The report
is logged (WARNING when anything was skipped, clipped or missing, INFO otherwise) under the `adatad.annotations` logger.

Segments with end < start and labels missing from the class map are always errors (raised or
skipped). Nothing is dropped silently: every skip, clip and removal is counted in the report.

`expand_sliding_windows` turns video rows into OpenTAD's sliding-window rows without decoding any
video, and `to_database_json` writes video rows back to the ActivityNet/OpenTAD `database` JSON layout.
Seconds <-> feature-grid arithmetic lives in `adatad.time_grid`.

This module imports numpy, `datasets`, `adatad.time_grid` and `adatad.strict_json` only (no torch).
"""

import csv
import json
import logging
import math
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, Optional
from collections.abc import Callable, Iterable, Sequence

import datasets
import numpy as np

from .time_grid import seconds_to_frames, window_bounds
from .strict_json import DuplicateJSONKeyError, object_without_duplicate_keys


logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
ClassMap = PathLike | Sequence[str] | None
OnError = Literal["raise", "skip"]
ZeroLength = Literal["keep", "error"]
OutOfBounds = Literal["keep", "clip", "error"]
MissingVideos = Literal["raise", "skip"]

THUMOS_AMBIGUOUS_LABEL = "Ambiguous"

_ERROR_FIX = "Fix the annotation, or pass on_error='skip' to drop it (skips are counted in the report)."


class AnnotationError(ValueError):
    """Raised for bad annotation input; the message names the file, the video and the field."""


@dataclass(frozen=True)
class AnnotationOptions:
    """How a loader validates, finds videos and reports: the settings every loader shares.

    Pass them as an object (`options=AnnotationOptions(on_error="skip")`, reusable across loaders) or as keywords
    of the loader call (`load_thumos14_txt(folder, on_error="skip")`); keywords override the object's fields.

    Attributes:
        on_error: `"raise"` raises `AnnotationError` naming the file, the video and the field; `"skip"` drops the
            offending segment (or video) and counts it in the report.
        zero_length: `"keep"` keeps segments with end == start (the official files contain them and the official
            ActivityNet evaluator keeps them); `"error"` treats them as errors.
        out_of_bounds: segments reaching outside [0, duration]: `"keep"` (the official files contain segments
            ending after the duration), `"clip"` (a segment entirely outside is then an error) or `"error"`.
            Checked only when the duration is known.
        allow_empty: keep videos without segments (test subsets have none); with False an empty video is an error.
        deduplicate: remove exact duplicate (start, end, label) instances of a video, as OpenTAD's
            `filter_same_annotation` does (the number removed is in the report).
        video_dir, video_prefix, video_extension, missing_videos: see `resolve_video_paths`; `video_prefix=None`
            is the loader's own default (`"v_"` for `load_activitynet_bsn`, else `""`).
        output_report: return `(dataset, AnnotationReport)` instead of the dataset (like transformers'
            `output_loading_info`).
    """

    on_error: OnError = "raise"
    zero_length: ZeroLength = "keep"
    out_of_bounds: OutOfBounds = "keep"
    allow_empty: bool = True
    deduplicate: bool = True
    video_dir: PathLike | None = None
    video_prefix: str | None = None
    video_extension: str | Sequence[str] = ".mp4"
    missing_videos: MissingVideos = "raise"
    output_report: bool = False

    def __post_init__(self):
        for name, allowed in (("on_error", ("raise", "skip")), ("zero_length", ("keep", "error")),
                              ("out_of_bounds", ("keep", "clip", "error")), ("missing_videos", ("raise", "skip"))):
            if getattr(self, name) not in allowed:
                choices = " or ".join(repr(value) for value in allowed)
                raise ValueError(f"{name} must be {choices}, got {getattr(self, name)!r}.")

    @classmethod
    def of(cls, options: Optional["AnnotationOptions"], overrides: dict[str, object]) -> "AnnotationOptions":
        """`options` (default: all defaults) with the loader call's keyword `overrides` applied."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown loader argument(s) {unknown}; the shared options are {sorted(names)}.")
        return replace(options if options is not None else cls(), **overrides)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


@dataclass
class AnnotationReport:
    """What a loader did with its input, beyond copying it.

    Attributes:
        source: the annotation file (or folder) that was read.
        num_videos / num_segments: rows and segments in the returned dataset.
        videos_per_subset: rows per subset in the returned dataset.
        skipped: errors handled with `on_error="skip"`, by kind (`end_before_start`,
            `unknown_label`, `outside_video`, `zero_length`, `malformed_segment`,
            `empty_annotations`, `bad_video_field`). `bad_video_field` and `empty_annotations`
            count videos; the other kinds count segments.
        clipped: segments clipped to [0, duration] (`out_of_bounds="clip"`).
        removed: instances or videos removed on purpose, by reason (`duplicate`, `ambiguous`,
            `non_primary`, `blocked_video`, `ignored_label`).
        kept: real-data quirks kept as they are, by kind (`zero_length`, `past_duration`,
            `before_zero` segments; `string_value` numbers written as strings; `no_duration` videos).
        missing_videos: ids of videos whose file was not found under `video_dir`.
        details: one message per skipped or clipped item (file, video, field, reason).
    """

    source: str
    num_videos: int = 0
    num_segments: int = 0
    videos_per_subset: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    clipped: int = 0
    removed: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    missing_videos: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        """True when error handling changed what reached the dataset (skips, clips, missing videos)."""
        return bool(sum(self.skipped.values()) or self.clipped or self.missing_videos)

    def summary(self) -> str:
        """A short multi-line text for logs."""
        lines = [
            f"{self.source}: {self.num_videos} videos, {self.num_segments} segments "
            f"({', '.join(f'{k}: {v}' for k, v in self.videos_per_subset.items()) or 'no subsets'})"
        ]
        if self.skipped:
            lines.append(f"  skipped (errors): {dict(self.skipped)}")
        if self.clipped:
            lines.append(f"  clipped to [0, duration]: {self.clipped} segments")
        if self.removed:
            lines.append(f"  removed on purpose: {dict(self.removed)}")
        if self.kept:
            lines.append(f"  kept as in the source: {dict(self.kept)}")
        if self.missing_videos:
            shown = ", ".join(self.missing_videos[:10])
            more = f" (+{len(self.missing_videos) - 10} more)" if len(self.missing_videos) > 10 else ""
            lines.append(f"  missing video files: {len(self.missing_videos)}: {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------------------------------
# Class maps
# ------------------------------------------------------------------------------------------------

# A leading id token such as "7", "000" or "c092" that some class-index files put before the name.
_LEADING_ID = re.compile(r"^\s*([A-Za-z]?\d+)\s+(\S.*?)\s*$")


def read_class_names(path: PathLike) -> list[str]:
    """Reads a class-index file: one class per line, class index = line number (0-based).

    Accepted layouts:
    - plain names, one per line (OpenTAD `category_idx.txt`, ActivityNet `action_name.txt`);
    - `<id> <name>` lines, e.g. THUMOS `Class_Index_Detection.txt` (`7 BaseballPitch`, the id is
      the UCF101 index and is dropped: the index is still the line number), Ego4D
      `ego4d_label_map.txt` (`000<TAB>"name"`, quotes stripped) or Charades `c000 name`;
      the id column is recognised only when EVERY line has one;
    - CSV files: EPIC-Kitchens `EPIC_100_{noun,verb}_classes.csv` (names = `key`, index = `id`)
      or a one-column CSV with a header (ActivityNet `action_name.csv`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-index file not found: {path}")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise AnnotationError(f"{path}: class-index CSV has no rows.")
        columns = list(rows[0])
        if "id" in columns and "key" in columns:
            by_id = {int(row["id"]): row["key"] for row in rows}
            if sorted(by_id) != list(range(len(by_id))):
                raise AnnotationError(f"{path}: column 'id' must number the classes 0..{len(by_id) - 1} without gaps.")
            names = [by_id[i] for i in range(len(by_id))]
        elif len(columns) == 1:
            names = [row[columns[0]].strip() for row in rows]
        else:
            raise AnnotationError(
                f"{path}: unknown class-index CSV columns {columns}; expected 'id,key,...' (EPIC-Kitchens) "
                "or a single name column."
            )
    else:
        with open(path, encoding="utf8") as f:
            lines = [line.rstrip("\r\n") for line in f]
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise AnnotationError(f"{path}: line {number} is empty; the class index is the line number, so "
                                      "empty lines are not allowed.")
        matches = [_LEADING_ID.match(line) for line in lines]
        if lines and all(matches):
            names = [m.group(2) for m in matches]
        else:
            names = [line.strip() for line in lines]
        names = [name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name for name in names]
    _check_unique_names(names, str(path))
    return names


def _check_unique_names(names: Sequence[str], source: str) -> None:
    duplicated = [name for name, count in Counter(names).items() if count > 1]
    if duplicated:
        raise AnnotationError(f"{source}: class names must be unique; repeated: {duplicated[:10]}.")


def _class_names_from(class_map: ClassMap, labels_seen: Iterable[str]) -> list[str]:
    """Class map from a file or list; if None, every label of the file sorted alphabetically (OpenTAD)."""
    if class_map is None:
        return sorted(set(labels_seen))
    if isinstance(class_map, (str, os.PathLike)):
        return read_class_names(class_map)
    names = [str(name) for name in class_map]
    _check_unique_names(names, "class_map")
    return names


def annotation_features(class_names: Sequence[str]) -> datasets.Features:
    """The `datasets.Features` of a video-row dataset (see the module docstring)."""
    return datasets.Features(
        {
            "video_id": datasets.Value("string"),
            "video_path": datasets.Value("string"),
            "duration": datasets.Value("float64"),
            "fps": datasets.Value("float64"),
            "num_frames": datasets.Value("int64"),
            "subset": datasets.Value("string"),
            "segments": datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=2)),
            "labels": datasets.Sequence(datasets.ClassLabel(names=list(class_names))),
        }
    )


def class_names_of(dataset: datasets.Dataset) -> list[str]:
    """Class names of a video-row or window-row dataset, in class-index order."""
    return list(dataset.features["labels"].feature.names)


# ------------------------------------------------------------------------------------------------
# Validation core shared by all loaders
# ------------------------------------------------------------------------------------------------


@dataclass
class _RawSegment:
    start: object  # as read from the file: number or numeric string
    end: object
    label: object  # class name (str) or class id (int), looked up in the label index
    where: str  # field path inside the source, e.g. "annotations[3]" or "line 12 of Diving_test.txt"


@dataclass
class _RawVideo:
    video_id: str
    subset: str
    duration: object  # number, numeric string or None: the builder parses and checks it
    fps: float | None
    num_frames: int | None
    segments: list[_RawSegment]


class _IndexBuilder:
    """Validates raw videos against the user's flags and assembles the dataset."""

    def __init__(self, source, class_names, label_index, options: "AnnotationOptions"):
        self.source = str(source)
        self.class_names = list(class_names)
        self.label_index = label_index
        self.options = options
        self.on_error = options.on_error
        self.zero_length = options.zero_length
        self.out_of_bounds = options.out_of_bounds
        self.allow_empty = options.allow_empty
        self.deduplicate = options.deduplicate
        self.report = AnnotationReport(source=self.source)
        self.rows = {name: [] for name in annotation_features([]).keys()}

    def error(self, kind: str, video_id: str, where: str, message: str) -> None:
        """Raises, or records a skip of `kind` (the caller then drops the item)."""
        text = f"{self.source}: video {video_id!r}, field {where}: {message}"
        if self.on_error == "raise":
            raise AnnotationError(f"{text}. {_ERROR_FIX}")
        self.report.skipped[kind] += 1
        self.report.details.append(f"skipped: {text}")

    def _number(self, value, video_id, where, kind="malformed_segment") -> float | None:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            else:
                self.report.kept["string_value"] += 1
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            number = None
        if number is None or not math.isfinite(number):
            self.error(kind, video_id, where, f"{value!r} is not a finite number")
            return None
        return number

    def add(self, video: _RawVideo) -> None:
        vid = video.video_id
        if isinstance(vid, str) and (vid.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", vid)):
            # The id names the video file inside the video folder; `..` or an absolute path would leave it.
            self.error("bad_video_field", vid, "video id",
                       "a video id may not be an absolute path or contain '..' (it names a file in the video folder)")
            return
        duration = video.duration
        if duration is None:
            self.report.kept["no_duration"] += 1
        else:
            duration = self._number(duration, vid, "duration", kind="bad_video_field")
            if duration is None:
                return
            if duration <= 0:
                self.error("bad_video_field", vid, "duration",
                           f"duration must be a positive number of seconds, got {duration}")
                return
        segments, labels, seen = [], [], set()
        for raw in video.segments:
            start = self._number(raw.start, vid, f"{raw.where}.segment[0]")
            if start is None:
                continue
            end = self._number(raw.end, vid, f"{raw.where}.segment[1]")
            if end is None:
                continue
            try:
                label = self.label_index.get(raw.label)
            except TypeError:  # an unhashable label such as a list
                label = None
            if label is None:
                self.error("unknown_label", vid, f"{raw.where}.label",
                           f"label {raw.label!r} is not in the class map ({len(self.class_names)} classes)")
                continue
            if end < start:
                self.error("end_before_start", vid, f"{raw.where}.segment", f"end ({end}) < start ({start})")
                continue
            if end == start:
                if self.zero_length == "error":
                    self.error("zero_length", vid, f"{raw.where}.segment", f"zero-length segment [{start}, {end}]")
                    continue
                self.report.kept["zero_length"] += 1
            if duration is not None and (start < 0 or end > duration):
                if self.out_of_bounds == "error" or (
                    self.out_of_bounds == "clip" and (end <= 0 or start >= duration)
                ):
                    self.error("outside_video", vid, f"{raw.where}.segment",
                               f"segment [{start}, {end}] is outside the video [0, {duration}]")
                    continue
                if self.out_of_bounds == "clip":
                    clipped_start, clipped_end = max(start, 0.0), min(end, duration)
                    self.report.clipped += 1
                    self.report.details.append(
                        f"clipped: {self.source}: video {vid!r}, field {raw.where}.segment: "
                        f"[{start}, {end}] -> [{clipped_start}, {clipped_end}] (duration {duration})"
                    )
                    start, end = clipped_start, clipped_end
                else:
                    self.report.kept["past_duration" if end > duration else "before_zero"] += 1
            if self.deduplicate:
                key = (start, end, label)
                if key in seen:
                    self.report.removed["duplicate"] += 1
                    continue
                seen.add(key)
            segments.append([start, end])
            labels.append(label)
        if not segments and not self.allow_empty:
            self.error("empty_annotations", vid, "annotations",
                       "the video has no (valid) segments; pass allow_empty=True to keep it")
            return
        for name, value in (
            ("video_id", vid), ("video_path", None), ("duration", duration), ("fps", video.fps),
            ("num_frames", video.num_frames), ("subset", video.subset), ("segments", segments), ("labels", labels),
        ):
            self.rows[name].append(value)

    def build(self) -> datasets.Dataset:
        dataset = datasets.Dataset.from_dict(self.rows, features=annotation_features(self.class_names))
        self.report.num_videos = len(dataset)
        self.report.num_segments = sum(len(s) for s in self.rows["segments"])
        self.report.videos_per_subset = dict(Counter(self.rows["subset"]))
        return dataset


def _subset_filter(subset: str | Sequence[str] | None) -> Callable[[str], bool]:
    if subset is None:
        return lambda name: True
    wanted = {subset} if isinstance(subset, str) else set(subset)
    return lambda name: name in wanted


def _finish(builder: _IndexBuilder, default_video_prefix: str = ""):
    """Builds the dataset, resolves video paths, logs the report and returns what the caller asked for."""
    options = builder.options
    dataset = builder.build()
    report = builder.report
    if options.video_dir is not None:
        prefix = default_video_prefix if options.video_prefix is None else options.video_prefix
        dataset, missing = resolve_video_paths(
            dataset, options.video_dir, prefix=prefix, extension=options.video_extension,
            missing_videos=options.missing_videos,
        )
        report.missing_videos = missing
        report.num_videos = len(dataset)
        report.num_segments = sum(len(s) for s in dataset["segments"])
        report.videos_per_subset = dict(Counter(dataset["subset"]))
    (logger.warning if report.needs_attention else logger.info)(report.summary())
    return (dataset, report) if options.output_report else dataset


def _read_json(path: PathLike):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf8") as f:
            return json.load(f, object_pairs_hook=object_without_duplicate_keys)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not valid JSON ({error}).") from error
    except RecursionError:
        raise AnnotationError(f"{path}: JSON nested too deeply to read; annotation files nest a few levels.") from None
    except DuplicateJSONKeyError as error:
        raise AnnotationError(
            f"{path}: key {error.key!r} appears twice in one JSON object; JSON readers keep only the last one, "
            "so the first would be lost. Merge or rename the two entries."
        ) from None


def _read_csv(path: PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, newline="", encoding="utf8") as f:
        reader = csv.DictReader(f)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}.")
        return list(reader)


class _BadVideoField(ValueError):
    """A per-video field that cannot be used; loaders report it with `_IndexBuilder.error` (raise or skip)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def _optional_float(value, name) -> float | None:
    """A positive finite number, or None when absent; raises `_BadVideoField` otherwise."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _BadVideoField(name, f"{value!r} is not a number") from None
    if not (math.isfinite(number) and number > 0):
        raise _BadVideoField(name, f"{value!r} must be a positive finite number")
    return number


def _optional_count(value, name) -> int | None:
    number = _optional_float(value, name)
    return None if number is None else int(number)


# ------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------


def load_database_json(
    path: PathLike,
    *,
    subset: str | Sequence[str] | None = None,
    class_map: ClassMap = None,
    ignore_labels: Sequence[str] = (),
    blocked_videos: PathLike | Iterable[str] | None = None,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads a `{"database": {video_id: {...}}}` JSON: ActivityNet-1.3 and OpenTAD's layout.

    Covers the official `activity_net.v1-3.min.json` (`subset`, `duration`, `annotations` with
    `segment` and `label`; `url`, `resolution`, `version`, `taxonomy` are ignored), every
    annotation JSON OpenTAD writes (THUMOS-14, Multi-THUMOS, Ego4D-MQ, EPIC-Kitchens: the same keys
    plus `frame`, sometimes `fps`) and AFSD's `thumos_gt.json` (segments written as numeric
    strings, no `duration`: counted as `kept["string_value"]` / `kept["no_duration"]`).

    `num_frames` = `frame` if present; `fps` = `fps` if present, else `frame / duration` (OpenTAD).
    Videos without `annotations` (test subsets) get no segments.

    Args:
        path: the JSON file.
        class_map: class-index file or list of names; None = every label of the file (all subsets),
            sorted alphabetically, as OpenTAD generates it.
        ignore_labels: labels to drop (e.g. `["Ambiguous"]` for THUMOS), counted as
            `removed["ignored_label"]`; they are left out of a generated class map.
        blocked_videos: ids (or a text file with one id per line, or a JSON list) of videos to
            leave out, like OpenTAD's `block_list` / the evaluator's `blocked_videos`.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    content = _read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get("database"), dict):
        raise AnnotationError(f"{path}: expected a JSON object with a 'database' object (ActivityNet/OpenTAD layout).")
    database = content["database"]
    ignored = set(ignore_labels)
    blocked = _read_id_list(blocked_videos)

    labels_seen = []
    for video_id, info in database.items():
        annotations = info.get("annotations") if isinstance(info, dict) else None
        for annotation in annotations if isinstance(annotations, list) else []:
            label = annotation.get("label") if isinstance(annotation, dict) else None
            if isinstance(label, str) and label not in ignored:
                labels_seen.append(label)
    class_names = _class_names_from(class_map, labels_seen)
    builder = _IndexBuilder(path, class_names, {name: i for i, name in enumerate(class_names)},
                            AnnotationOptions.of(options, option_overrides))
    keep_subset = _subset_filter(subset)
    for video_id, info in database.items():
        if not isinstance(info, dict) or not isinstance(info.get("subset"), str):
            builder.error("bad_video_field", video_id, "subset", "each database entry needs a string 'subset'")
            continue
        if not keep_subset(info["subset"]):
            continue
        if video_id in blocked:
            builder.report.removed["blocked_video"] += 1
            continue
        duration = info.get("duration")
        try:
            num_frames = _optional_count(info.get("frame"), "frame")
            fps = _optional_float(info.get("fps"), "fps")
        except _BadVideoField as error:
            builder.error("bad_video_field", video_id, error.name, str(error))
            continue
        if fps is None and num_frames is not None and isinstance(duration, (int, float)) and duration > 0:
            fps = num_frames / duration
        if "annotations" not in info:
            # A misspelt key would otherwise turn an annotated video into one without actions.
            builder.error("bad_video_field", video_id, "annotations",
                          "the entry has no 'annotations' key; write \"annotations\": [] for a video without actions")
            continue
        annotations = info["annotations"] if info["annotations"] is not None else []
        if not isinstance(annotations, list):
            builder.error("bad_video_field", video_id, "annotations", "'annotations' must be a list")
            continue
        raw_segments = []
        for index, annotation in enumerate(annotations):
            where = f"annotations[{index}]"
            segment = annotation.get("segment") if isinstance(annotation, dict) else None
            if not isinstance(segment, (list, tuple)) or len(segment) != 2:
                builder.error("malformed_segment", video_id, f"{where}.segment",
                              f"expected [start, end], got {segment!r}")
                continue
            label = annotation.get("label")
            if isinstance(label, str) and label in ignored:
                builder.report.removed["ignored_label"] += 1
                continue
            raw_segments.append(_RawSegment(segment[0], segment[1], label, where))
        builder.add(_RawVideo(str(video_id), info["subset"], duration, fps, num_frames, raw_segments))
    return _finish(builder)


def _read_id_list(ids: PathLike | Iterable[str] | None) -> set:
    if ids is None:
        return set()
    if isinstance(ids, (str, os.PathLike)):
        path = Path(ids)
        if not path.is_file():
            raise FileNotFoundError(f"blocked-video list not found: {path}")
        if path.suffix.lower() == ".json":
            return set(_read_json(path))
        with open(path, encoding="utf8") as f:
            return {line.strip() for line in f if line.strip()}
    return set(ids)


def load_activitynet_bsn(
    annotation_json: PathLike,
    video_info_csv: PathLike,
    *,
    subset: str | Sequence[str] | None = None,
    class_map: ClassMap = None,
    strip_prefix: str = "v_",
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads ActivityNet-1.3 in the BSN/BMN layout: `anet_anno_action.json` + `video_info_new.csv`.

    The JSON maps `v_<youtube id>` to `duration_second`, `duration_frame` and `annotations`; the
    subset of each video is the `subset` column of the CSV (`video,numFrame,seconds,fps,rfps,
    subset,featureFrame`). `video_id` is the YouTube id with `strip_prefix` removed, so ids match
    the official `database` JSON and evaluation; `video_prefix="v_"` puts the prefix back when
    looking for video files. `num_frames` = `duration_frame`, `fps` = the CSV `fps` column.

    Args:
        annotation_json: `anet_anno_action.json`.
        video_info_csv: `video_info_new.csv`.
        class_map: e.g. `action_name.txt`; None = the labels sorted alphabetically (same 200 names).
        strip_prefix: removed from the start of each JSON key to form `video_id`.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    annotations_by_video = _read_json(annotation_json)
    info_rows = _read_csv(video_info_csv, ["video", "subset", "fps"])
    info_by_video = {row["video"]: row for row in info_rows}
    if not isinstance(annotations_by_video, dict):
        raise AnnotationError(f"{annotation_json}: expected a JSON object mapping video names to entries (BSN layout).")
    labels_seen = [a.get("label") for v in annotations_by_video.values() if isinstance(v, dict)
                   for a in (v.get("annotations") if isinstance(v.get("annotations"), list) else [])
                   if isinstance(a, dict)]
    class_names = _class_names_from(class_map, [label for label in labels_seen if isinstance(label, str)])
    source = f"{annotation_json} + {Path(video_info_csv).name}"
    builder = _IndexBuilder(source, class_names, {name: i for i, name in enumerate(class_names)},
                            AnnotationOptions.of(options, option_overrides))
    keep_subset = _subset_filter(subset)
    for key, info in annotations_by_video.items():
        row = info_by_video.get(key)
        if row is None:
            builder.error("bad_video_field", key, "subset", f"video is not listed in {Path(video_info_csv).name}")
            continue
        if not keep_subset(row["subset"]):
            continue
        video_id = key[len(strip_prefix):] if strip_prefix and key.startswith(strip_prefix) else key
        if not isinstance(info, dict):
            builder.error("bad_video_field", video_id, "entry", f"expected an object with 'annotations', got {info!r}")
            continue
        if not isinstance(info.get("annotations"), list):
            builder.error("bad_video_field", video_id, "annotations",
                          "the entry needs an 'annotations' list (\"annotations\": [] for a video without actions)")
            continue
        duration = info.get("duration_second")
        try:
            num_frames = _optional_count(info.get("duration_frame"), "duration_frame")
            fps = _optional_float(row["fps"], "fps")
        except _BadVideoField as error:
            builder.error("bad_video_field", video_id, error.name, str(error))
            continue
        raw_segments = []
        for index, annotation in enumerate(info["annotations"]):
            segment = annotation.get("segment") if isinstance(annotation, dict) else None
            if not isinstance(segment, (list, tuple)) or len(segment) != 2:
                builder.error("malformed_segment", video_id, f"annotations[{index}].segment",
                              f"expected [start, end], got {segment!r}")
                continue
            raw_segments.append(_RawSegment(segment[0], segment[1], annotation.get("label"), f"annotations[{index}]"))
        builder.add(_RawVideo(video_id, row["subset"], duration, fps, num_frames, raw_segments))
    return _finish(builder, default_video_prefix="v_")


def load_thumos14_txt(
    annotation_dir: PathLike,
    *,
    subset: str | None = None,
    class_map: ClassMap = None,
    video_info_csv: PathLike | None = None,
    ambiguous: Literal["drop", "keep"] = "drop",
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads THUMOS-14's original per-class files (`annotations_val/`, `annotations_test/`).

    Each `<Class>_<split>.txt` holds `video_name start end` lines (seconds, runs of spaces);
    `readme.txt` is ignored. Every video named in any file (the `Ambiguous` file included) becomes
    a row, so the test folder gives 213 videos even though `video_test_0001292` has only
    Ambiguous lines.

    Official quirk, preserved: every CliffDiving instance is ALSO listed in `Diving_*.txt`, so the
    same interval appears twice with the two labels (both are kept: they are not duplicates, and
    the official evaluation counts both).

    Args:
        annotation_dir: the folder of per-class txt files.
        subset: the subset name to write in the rows; None = `"validation"` for `*_val.txt` files,
            `"test"` for `*_test.txt` files.
        class_map: e.g. `Class_Index_Detection.txt` (`<UCF101 id> <Name>`, index = line number);
            None = the class file names sorted alphabetically (the same order).
        video_info_csv: optional per-video durations: AFSD's `{val,test}_video_info.csv`
            (`video,fps,...,count`: duration = count / fps) or `thumos14_test_groundtruth.csv`
            (`video-name,...,video-duration,frame-rate,video-frames`). Without it `duration` is None
            (and bounds are not checked).
        ambiguous: `"drop"` (default) leaves the `Ambiguous` lines out (counted as
            `removed["ambiguous"]`), as OpenTAD's THUMOS datasets skip them in training;
            `"keep"` keeps them as a class named `Ambiguous`, appended after the class map.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"THUMOS-14 annotation folder not found: {annotation_dir}")
    if ambiguous not in ("drop", "keep"):
        raise ValueError(f"ambiguous must be 'drop' or 'keep', got {ambiguous!r}.")
    files = sorted(p for p in annotation_dir.glob("*.txt") if re.fullmatch(r".+_(val|test)\.txt", p.name))
    if not files:
        raise AnnotationError(f"{annotation_dir}: no '<Class>_val.txt' or '<Class>_test.txt' files found.")
    splits = {p.stem.rsplit("_", 1)[1] for p in files}
    if len(splits) > 1:
        raise AnnotationError(f"{annotation_dir}: mixes '_val' and '_test' files; keep one split per folder.")
    subset_name = subset or {"val": "validation", "test": "test"}[splits.pop()]
    file_classes = [p.stem.rsplit("_", 1)[0] for p in files]
    class_names = _class_names_from(class_map, [c for c in file_classes if c != THUMOS_AMBIGUOUS_LABEL])
    if ambiguous == "keep" and THUMOS_AMBIGUOUS_LABEL not in class_names:
        class_names.append(THUMOS_AMBIGUOUS_LABEL)

    video_info = _read_thumos_video_info(video_info_csv) if video_info_csv is not None else {}
    builder = _IndexBuilder(annotation_dir, class_names, {name: i for i, name in enumerate(class_names)},
                            AnnotationOptions.of(options, option_overrides))
    segments_by_video: dict[str, list[_RawSegment]] = {}
    for path, class_name in zip(files, file_classes):
        try:
            # Read whole (the files are small) so that a bad byte is reported with its line; universal newlines as
            # when iterating over the open file.
            lines = io.StringIO(path.read_bytes().decode("utf8"), newline=None)
        except UnicodeDecodeError as error:
            line = path.read_bytes()[: error.start].count(b"\n") + 1
            raise AnnotationError(
                f"{path}: line {line} is not UTF-8 text (byte {error.object[error.start]:#04x}); the THUMOS "
                "annotation files are plain ASCII: save the file as UTF-8"
            ) from None
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"line {number} of {path.name}"
            try:
                video_id, start, end = parts[0], float(parts[1]), float(parts[2])
                if len(parts) != 3:
                    raise ValueError
            except (IndexError, ValueError):
                builder.error("malformed_segment", parts[0], where,
                              f"expected 'video_name start end', got {line.strip()!r}")
                continue
            video_segments = segments_by_video.setdefault(video_id, [])
            if class_name == THUMOS_AMBIGUOUS_LABEL and ambiguous == "drop":
                builder.report.removed["ambiguous"] += 1
                continue
            video_segments.append(_RawSegment(start, end, class_name, where))
    for video_id in sorted(segments_by_video):
        duration, fps, num_frames = video_info.get(video_id, (None, None, None))
        builder.add(_RawVideo(video_id, subset_name, duration, fps, num_frames, segments_by_video[video_id]))
    return _finish(builder)


def _read_thumos_video_info(path: PathLike) -> dict[str, tuple[float, float, int]]:
    """{video: (duration, fps, num_frames)} from AFSD's video-info CSV or the ground-truth CSV."""
    with open(path, newline="", encoding="utf8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        rows = list(reader)
    info = {}
    if {"video", "fps", "count"} <= columns:
        for number, row in enumerate(rows, start=2):
            try:
                fps, count = _optional_float(row["fps"], "fps"), _optional_count(row["count"], "count")
            except _BadVideoField as error:
                raise AnnotationError(
                    f"{path}: line {number}, video {row['video']!r}, field {error.name}: {error}."
                ) from None
            info[row["video"]] = (count / fps, fps, count) if fps and count else (None, fps, count)
    elif {"video-name", "video-duration", "frame-rate", "video-frames"} <= columns:
        for number, row in enumerate(rows, start=2):
            info[row["video-name"]] = _thumos_ground_truth_video_info(row, path, number)
    else:
        raise AnnotationError(
            f"{path}: unknown video-info CSV columns {sorted(columns)}; expected 'video,fps,count' (AFSD) or "
            "'video-name,video-duration,frame-rate,video-frames' (thumos14_test_groundtruth.csv)."
        )
    return info


def _thumos_ground_truth_video_info(row: dict[str, str], path, number: int) -> tuple[float, float, int]:
    """(duration, fps, num_frames) of a `thumos14_test_groundtruth.csv` row."""
    try:
        return (
            _optional_float(row["video-duration"], "video-duration"),
            _optional_float(row["frame-rate"], "frame-rate"),
            _optional_count(row["video-frames"], "video-frames"),
        )
    except _BadVideoField as error:
        raise AnnotationError(
            f"{path}: line {number}, video {row['video-name']!r}, field {error.name}: {error}."
        ) from None


# The 20 THUMOS-14 detection classes in index order (alphabetical = `Class_Index_Detection.txt`
# order); `thumos14_test_groundtruth.csv` stores labels as indices into this list (-1 = Ambiguous).
THUMOS14_DETECTION_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]


def load_thumos14_csv(
    path: PathLike,
    *,
    subset: str | None = None,
    class_map: ClassMap = None,
    video_info_csv: PathLike | None = None,
    ambiguous: Literal["drop", "keep"] = "drop",
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads THUMOS-14 from a one-row-per-instance CSV (the per-class txt files, flattened).

    Two layouts are recognised by their header:
    - AFSD's `{val,test}_Annotation.csv`: `video,type,type_idx,start,end,startFrame,endFrame`
      (label = `type`; durations from `video_info_csv`, as in `load_thumos14_txt`);
    - `thumos14_test_groundtruth.csv`: `video-name,t-init,t-end,f-init,f-end,video-duration,
      frame-rate,video-frames,label-idx` (label = `label-idx` into the class map, -1 = Ambiguous;
      duration, fps and frame count come from the row).

    Args:
        subset: None = `"test"` if the file name contains "test", else `"validation"`.
        class_map: None = the labels sorted alphabetically (AFSD layout) or
            `THUMOS14_DETECTION_CLASSES` (ground-truth layout, whose labels are indices).
        ambiguous: as in `load_thumos14_txt`.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    path = Path(path)
    if ambiguous not in ("drop", "keep"):
        raise ValueError(f"ambiguous must be 'drop' or 'keep', got {ambiguous!r}.")
    rows = _read_csv(path, [])
    columns = set(rows[0]) if rows else set()
    if {"video", "type", "start", "end"} <= columns:
        keys = dict(video="video", start="start", end="end")
        row_labels = [row["type"] for row in rows]
        class_names = _class_names_from(class_map, [name for name in row_labels if name != THUMOS_AMBIGUOUS_LABEL])
        video_info = _read_thumos_video_info(video_info_csv) if video_info_csv is not None else {}
    elif {"video-name", "t-init", "t-end", "label-idx", "video-duration"} <= columns:
        keys = dict(video="video-name", start="t-init", end="t-end")
        class_names = _class_names_from(THUMOS14_DETECTION_CLASSES if class_map is None else class_map, [])
        row_labels = []
        for number, row in enumerate(rows, start=2):
            index = int(row["label-idx"]) if re.fullmatch(r"\s*-?\d+\s*", row["label-idx"] or "") else None
            if index == -1:
                row_labels.append(THUMOS_AMBIGUOUS_LABEL)
            elif index is not None and 0 <= index < len(class_names):
                row_labels.append(class_names[index])
            else:
                raise AnnotationError(f"{path}: line {number}, video {row['video-name']!r}, field label-idx: "
                                      f"{row['label-idx']!r} is not -1 (Ambiguous) or a class index below "
                                      f"{len(class_names)}.")
        video_info = {row["video-name"]: _thumos_ground_truth_video_info(row, path, number)
                      for number, row in enumerate(rows, start=2)}
    else:
        raise AnnotationError(
            f"{path}: unknown THUMOS-14 CSV columns {sorted(columns)}; expected AFSD's "
            "'video,type,type_idx,start,end,...' or 'video-name,t-init,t-end,...,label-idx'."
        )
    if ambiguous == "keep" and THUMOS_AMBIGUOUS_LABEL not in class_names:
        class_names.append(THUMOS_AMBIGUOUS_LABEL)
    subset_name = subset or ("test" if "test" in path.stem.lower() else "validation")
    builder = _IndexBuilder(path, class_names, {name: i for i, name in enumerate(class_names)},
                            AnnotationOptions.of(options, option_overrides))
    segments_by_video: dict[str, list[_RawSegment]] = {}
    for number, (row, label) in enumerate(zip(rows, row_labels), start=2):
        video_segments = segments_by_video.setdefault(row[keys["video"]], [])
        if label == THUMOS_AMBIGUOUS_LABEL and ambiguous == "drop":
            builder.report.removed["ambiguous"] += 1
            continue
        video_segments.append(_RawSegment(row[keys["start"]], row[keys["end"]], label, f"line {number}"))
    for video_id, raw in segments_by_video.items():
        for segment in raw:  # CSV cells are text by nature; only JSON strings count as a quirk
            segment.start, segment.end = _csv_number(segment.start), _csv_number(segment.end)
        duration, fps, num_frames = video_info.get(video_id, (None, None, None))
        builder.add(_RawVideo(video_id, subset_name, duration, fps, num_frames, raw))
    return _finish(builder)


def _csv_number(text: str):
    """A CSV cell as float, or the text unchanged (the builder then reports a malformed segment)."""
    try:
        return float(text)
    except ValueError:
        return text


def _epic_timestamp_to_seconds(value: str) -> float:
    hours, minutes, seconds = value.split(":")
    # rounding removes float noise of the sum; the source has at most 3 decimals
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 6)


def load_epic_kitchens_100(
    annotation_csv: PathLike,
    *,
    label: Literal["noun", "verb"] = "noun",
    classes_csv: PathLike | None = None,
    video_info_csv: PathLike | None = None,
    subset: str | None = None,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads EPIC-Kitchens-100 action segments (`EPIC_100_{train,validation}.csv`) for nouns or verbs.

    Rows of the CSV are narrations (`video_id,start_timestamp,stop_timestamp,...,verb_class,...,
    noun_class`); they are grouped per `video_id`. Timestamps `HH:MM:SS.ff` become seconds. The
    class index is the EPIC class id (`noun_class` / `verb_class`) and the class names are the
    `key` column of `EPIC_100_{label}_classes.csv` (300 nouns, 97 verbs, all listed even if never
    annotated; OpenTAD's noun head uses the 293 annotated ones). `duration` and `fps` come from
    `EPIC_100_video_info.csv` (original frame rate); `num_frames` is None (not stated).
    A CSV without the class column (`EPIC_100_test_timestamps.csv`) gives unlabelled videos.

    Args:
        annotation_csv: the narration CSV.
        label: `"noun"` or `"verb"`.
        classes_csv: defaults to `EPIC_100_{label}_classes.csv` beside `annotation_csv`.
        video_info_csv: defaults to `EPIC_100_video_info.csv` beside `annotation_csv`.
        subset: None = from the file name as OpenTAD names EPIC subsets (`train`, `val`, `test`).
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    if label not in ("noun", "verb"):
        raise ValueError(f"label must be 'noun' or 'verb', got {label!r}.")
    annotation_csv = Path(annotation_csv)
    classes_csv = Path(classes_csv) if classes_csv else annotation_csv.with_name(f"EPIC_100_{label}_classes.csv")
    video_info_csv = Path(video_info_csv) if video_info_csv else annotation_csv.with_name("EPIC_100_video_info.csv")
    if subset is None:
        stem = annotation_csv.stem.lower()
        subset = "test" if "test" in stem else "val" if "validation" in stem or stem.endswith("_val") else "train"
    class_names = read_class_names(classes_csv)
    info = {row["video_id"]: row for row in _read_csv(video_info_csv, ["video_id", "duration", "fps"])}
    rows = _read_csv(annotation_csv, ["video_id", "start_timestamp", "stop_timestamp"])
    class_column = f"{label}_class"
    labelled = bool(rows) and class_column in rows[0]
    builder = _IndexBuilder(annotation_csv, class_names, {i: i for i in range(len(class_names))},
                            AnnotationOptions.of(options, option_overrides))
    segments_by_video: dict[str, list[_RawSegment]] = {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        video_segments = segments_by_video.setdefault(row["video_id"], [])
        if not labelled:
            continue
        where = f"line {number} ({row.get('narration_id', '')})"
        try:
            start = _epic_timestamp_to_seconds(row["start_timestamp"])
            end = _epic_timestamp_to_seconds(row["stop_timestamp"])
            class_id = int(row[class_column])
        except ValueError:
            builder.error("malformed_segment", row["video_id"], where,
                          f"bad timestamp or {class_column}: {row['start_timestamp']!r}, {row['stop_timestamp']!r}, "
                          f"{row[class_column]!r}")
            continue
        video_segments.append(_RawSegment(start, end, class_id, where))
    for video_id, raw in segments_by_video.items():
        video_info = info.get(video_id)
        if video_info is None:
            builder.error("bad_video_field", video_id, "duration", f"video is not listed in {video_info_csv.name}")
            continue
        try:
            fps = _optional_float(video_info["fps"], "fps")
        except _BadVideoField as error:
            builder.error("bad_video_field", video_id, error.name, f"{error} (in {video_info_csv.name})")
            continue
        builder.add(_RawVideo(video_id, subset, video_info["duration"], fps, None, raw))
    return _finish(builder)


def load_ego4d_moment_queries(
    path: PathLike,
    *,
    subset: str | Sequence[str] | None = None,
    class_map: ClassMap = None,
    primary_only: bool = True,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads an Ego4D moment-queries file (`moments_{train,val,test_unannotated}.json`).

    Published layout: `{"videos": [{"video_uid", "split", "clips": [{"clip_uid",
    "video_start_sec", "video_end_sec", "video_start_frame", "video_end_frame", "annotations":
    [{"annotator_uid", "labels": [{"label", "start_time", "end_time", "video_start_time",
    "video_end_time", "primary", ...}]}]}]}]}`.

    One row per CLIP (the unit the MQ benchmark detects in; AdaTAD's videos are the trimmed clips),
    `video_id` = `clip_uid`, `subset` = the video's `split`. As in OpenTAD's converter:
    `duration` = `video_end_sec - max(video_start_sec, 0)` (rounded to 4 decimals), `num_frames` =
    `video_end_frame - max(video_start_frame, 0)`, `fps` = `num_frames / duration`. Segment times
    are `start_time` / `end_time`, which the schema defines relative to the clip (falling back to
    `video_start_time - video_start_sec` when absent). All annotators' labels are pooled; exact
    duplicates across annotators are removed by `deduplicate`.

    Args:
        path: the moments JSON.
        class_map: e.g. `ego4d_label_map.txt` (110 classes); None = labels sorted alphabetically.
        primary_only: keep only labels with `primary: true` (OpenTAD and ActionFormer do); the
            others are counted as `removed["non_primary"]`.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    content = _read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get("videos"), list):
        raise AnnotationError(f"{path}: expected a JSON object with a 'videos' list (Ego4D moment-queries layout).")

    def objects(value):
        # Malformed entries are reported by the main loop below; here they are only left out.
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []

    def clip_labels(clip):
        for annotator in objects(clip.get("annotations")):
            yield from objects(annotator.get("labels"))

    labels_seen = [item.get("label") for video in objects(content["videos"]) for clip in objects(video.get("clips"))
                   for item in clip_labels(clip) if item.get("primary", True) or not primary_only]
    class_names = _class_names_from(class_map, [label for label in labels_seen if isinstance(label, str)])
    builder = _IndexBuilder(path, class_names, {name: i for i, name in enumerate(class_names)},
                            AnnotationOptions.of(options, option_overrides))
    keep_subset = _subset_filter(subset)
    for video_index, video in enumerate(content["videos"]):
        if not isinstance(video, dict):
            builder.error("bad_video_field", f"videos[{video_index}]", f"videos[{video_index}]",
                          f"expected an object with 'split' and 'clips', got {video!r}")
            continue
        split = video.get("split")
        if not isinstance(split, str):
            builder.error("bad_video_field", str(video.get("video_uid", f"videos[{video_index}]")), "split",
                          "each video needs a string 'split'")
            continue
        if not keep_subset(split):
            continue
        for clip_index, clip in enumerate(video.get("clips") or []):
            if not isinstance(clip, dict):
                builder.error("bad_video_field", str(video.get("video_uid", f"videos[{video_index}]")),
                              f"videos[{video_index}].clips[{clip_index}]", f"expected a clip object, got {clip!r}")
                continue
            clip_id = clip.get("clip_uid")
            try:
                clip_start = max(float(clip["video_start_sec"]), 0.0)
                duration = round(float(clip["video_end_sec"]) - clip_start, 4)
                num_frames = int(clip["video_end_frame"]) - max(int(clip["video_start_frame"]), 0)
            except (KeyError, TypeError, ValueError) as error:
                builder.error("bad_video_field", str(clip_id), f"videos[{video_index}].clips[{clip_index}]",
                              f"clip needs numeric video_start_sec/video_end_sec/video_start_frame/video_end_frame "
                              f"({error!r})")
                continue
            raw_segments = []
            for annotator_index, annotator in enumerate(clip.get("annotations") or []):
                labels = annotator.get("labels") if isinstance(annotator, dict) else None
                if not isinstance(labels, list):
                    builder.error("malformed_segment", str(clip_id), f"annotations[{annotator_index}]",
                                  f"expected an object with a 'labels' list, got {annotator!r}")
                    continue
                for label_index, item in enumerate(labels):
                    if not isinstance(item, dict):
                        builder.error(
                            "malformed_segment",
                            str(clip_id),
                            f"annotations[{annotator_index}].labels[{label_index}]",
                            f"expected a label object, got {item!r}",
                        )
                        continue
                    if primary_only and not item.get("primary", True):
                        builder.report.removed["non_primary"] += 1
                        continue
                    if "start_time" in item and "end_time" in item:
                        start, end = item["start_time"], item["end_time"]
                    else:
                        start = _shift(item.get("video_start_time"), -clip_start)
                        end = _shift(item.get("video_end_time"), -clip_start)
                    raw_segments.append(_RawSegment(start, end, item.get("label"),
                                                    f"annotations[{annotator_index}].labels[{label_index}]"))
            fps = num_frames / duration if duration > 0 else None
            builder.add(_RawVideo(str(clip_id), split, duration, fps, num_frames, raw_segments))
    return _finish(builder)


def _shift(value, offset):
    return value + offset if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _id_class_names(class_names: ClassMap, num_classes: int, default_name: Callable[[int], str]) -> list[str]:
    if class_names is None:
        return [default_name(i) for i in range(num_classes)]
    if isinstance(class_names, (str, os.PathLike)):
        names = read_class_names(class_names)
    else:
        names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise AnnotationError(f"class_names has {len(names)} names but num_classes is {num_classes}.")
    _check_unique_names(names, "class_names")
    return names


def _load_actions_json(path, *, first_class_id, class_names, subset, options):
    """`{video_id: {"subset", "duration", "actions": [[class_id, start, end], ...]}}` (super-events layout)."""
    content = _read_json(path)
    if not isinstance(content, dict):
        raise AnnotationError(f"{path}: expected a JSON object mapping video ids to entries.")
    label_index = {first_class_id + i: i for i in range(len(class_names))}
    builder = _IndexBuilder(path, class_names, label_index, options)
    keep_subset = _subset_filter(subset)
    for video_id, info in content.items():
        if not isinstance(info, dict) or not isinstance(info.get("subset"), str):
            builder.error("bad_video_field", video_id, "subset", "each entry needs a string 'subset'")
            continue
        if not keep_subset(info["subset"]):
            continue
        actions = info.get("actions") or []
        if not isinstance(actions, list):
            builder.error("bad_video_field", video_id, "actions", f"'actions' must be a list, got {actions!r}")
            continue
        raw_segments = []
        for index, action in enumerate(actions):
            if not isinstance(action, (list, tuple)) or len(action) != 3:
                builder.error("malformed_segment", video_id, f"actions[{index}]",
                              f"expected [class_id, start, end], got {action!r}")
                continue
            raw_segments.append(_RawSegment(action[1], action[2], action[0], f"actions[{index}]"))
        builder.add(_RawVideo(video_id, info["subset"], info.get("duration"), None, None, raw_segments))
    return _finish(builder)


def load_multithumos_json(
    path: PathLike,
    *,
    class_names: ClassMap = None,
    num_classes: int = 65,
    subset: str | Sequence[str] | None = None,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads Multi-THUMOS `multithumos.json` (`{vid: {subset, duration, actions: [[class_id, start, end]]}}`).

    Class ids in this file are 1-BASED (1..65): class index = id - 1. No class-name list is
    published with it, so names default to `class_01` ... `class_65` (name = original id); pass
    `class_names` (list or one-name-per-line file, in id order) to use real names.
    `fps` and `num_frames` are None (not in the file).

    Args:
        path: `multithumos.json`.
        class_names: names in class-id order, or None for `class_{id:02d}`.
        num_classes: 65 for Multi-THUMOS.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    names = _id_class_names(class_names, num_classes, lambda i: f"class_{i + 1:02d}")
    return _load_actions_json(path, first_class_id=1, class_names=names, subset=subset,
                              options=AnnotationOptions.of(options, option_overrides))


def load_charades_json(
    path: PathLike,
    *,
    class_names: ClassMap = None,
    num_classes: int = 157,
    subset: str | Sequence[str] | None = None,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads Charades `charades.json` (same layout as Multi-THUMOS, class ids 0-based, 0..156).

    Names default to the Charades action codes `c000` ... `c156` (the codes of the original CSV);
    pass `class_names` (e.g. `Charades_v1_classes.txt`, `c000 Holding some clothes` lines) for the
    descriptions. The real file contains 7 training segments with end < start: with the default
    `on_error="raise"` they raise; load with `on_error="skip"` to drop (and count) them.

    Args:
        path: `charades.json`.
        class_names: names in class-id order, or None for `c{id:03d}`.
        num_classes: 157 for Charades.
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    names = _id_class_names(class_names, num_classes, lambda i: f"c{i:03d}")
    return _load_actions_json(path, first_class_id=0, class_names=names, subset=subset,
                              options=AnnotationOptions.of(options, option_overrides))


def load_charades_csv(
    path: PathLike,
    *,
    class_names: ClassMap = None,
    num_classes: int = 157,
    subset: str | None = None,
    options: AnnotationOptions | None = None,
    **option_overrides,
):
    """Loads an original Charades CSV (`Charades_v1_{train,test}.csv`).

    Columns used: `id`, `length` (duration, seconds) and `actions` (`c092 11.90 21.20;c147 0.00
    12.60`, empty for videos without actions). Class index = the number of the `cNNN` code.

    Args:
        path: the CSV.
        class_names: as in `load_charades_json`.
        subset: None = `"testing"` if the file name contains "test", else `"training"` (the names
            `charades.json` uses).
        options, **option_overrides: the settings every loader shares (see `AnnotationOptions`).
    """
    path = Path(path)
    names = _id_class_names(class_names, num_classes, lambda i: f"c{i:03d}")
    subset = subset or ("testing" if "test" in path.stem.lower() else "training")
    rows = _read_csv(path, ["id", "actions", "length"])
    builder = _IndexBuilder(path, names, {i: i for i in range(len(names))},
                            AnnotationOptions.of(options, option_overrides))
    for number, row in enumerate(rows, start=2):
        raw_segments = []
        for index, action in enumerate(a for a in row["actions"].split(";") if a.strip()):
            where = f"line {number}, actions[{index}]"
            parts = action.split()
            match = re.fullmatch(r"c(\d+)", parts[0]) if len(parts) == 3 else None
            if match is None:
                builder.error("malformed_segment", row["id"], where, f"expected 'cNNN start end', got {action!r}")
                continue
            raw_segments.append(_RawSegment(_csv_number(parts[1]), _csv_number(parts[2]), int(match.group(1)), where))
        builder.add(_RawVideo(row["id"], subset, _csv_number(row["length"]) if row["length"] else None, None, None,
                              raw_segments))
    return _finish(builder)


# ------------------------------------------------------------------------------------------------
# Video paths, subsets, writing back
# ------------------------------------------------------------------------------------------------


def resolve_video_paths(
    dataset: datasets.Dataset,
    video_dir: PathLike,
    *,
    prefix: str = "",
    extension: str | Sequence[str] = ".mp4",
    missing_videos: MissingVideos = "raise",
) -> tuple[datasets.Dataset, list[str]]:
    """Fills `video_path` with `video_dir / (prefix + video_id + extension)`.

    Args:
        dataset: a video-row dataset.
        video_dir: the folder holding the videos (looked up once, not recursively).
        prefix: put before the id (OpenTAD's ActivityNet videos are `v_<id>.mp4`).
        extension: one extension, or several tried in order (e.g. `[".mp4", ".mkv", ".webm"]`).
        missing_videos: `"raise"` raises `FileNotFoundError` listing the count and the first names;
            `"skip"` drops those rows.

    Returns:
        `(dataset, missing)`: the dataset with paths (missing rows dropped in skip mode) and the
        sorted ids of videos whose file was not found.
    """
    if missing_videos not in ("raise", "skip"):
        raise ValueError(f"missing_videos must be 'raise' or 'skip', got {missing_videos!r}.")
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise FileNotFoundError(f"video folder not found: {video_dir}")
    extensions = [extension] if isinstance(extension, str) else list(extension)
    present = set(os.listdir(video_dir))
    paths, missing = [], []
    for video_id in dataset["video_id"]:
        name = next((f"{prefix}{video_id}{ext}" for ext in extensions if f"{prefix}{video_id}{ext}" in present), None)
        paths.append(str(video_dir / name) if name else None)
        if name is None:
            missing.append(video_id)
    if missing and missing_videos == "raise":
        shown = ", ".join(repr(m) for m in missing[:10])
        raise FileNotFoundError(
            f"{len(missing)} of {len(dataset)} videos have no file in {video_dir} (looked for "
            f"'{prefix}<video_id>{extensions[0]}'{' and other extensions' if len(extensions) > 1 else ''}): "
            f"{shown}{' ...' if len(missing) > 10 else ''}. Check video_dir/video_prefix/video_extension, or pass "
            "missing_videos='skip' to drop them (they are listed in the report)."
        )
    column_order = dataset.column_names
    dataset = dataset.remove_columns("video_path").add_column("video_path", paths, feature=datasets.Value("string"))
    dataset = dataset.select_columns(column_order)
    if missing:
        dataset = dataset.select([i for i, path in enumerate(paths) if path is not None])
    return dataset, sorted(missing)


def split_by_subset(dataset: datasets.Dataset) -> datasets.DatasetDict:
    """`DatasetDict` keyed by the `subset` column (keys in order of first appearance)."""
    indices: dict[str, list[int]] = {}
    for index, name in enumerate(dataset["subset"]):
        indices.setdefault(name, []).append(index)
    return datasets.DatasetDict({name: dataset.select(rows) for name, rows in indices.items()})


def to_database_json(
    dataset: datasets.Dataset, path: PathLike | None = None, *, version: str = "VERSION 1.3"
) -> dict:
    """Writes video rows to the ActivityNet/OpenTAD `database` JSON layout (and returns the dict).

    Each video: `subset`, `duration` (when known), `frame` (= `num_frames`, when known), `fps`
    (when known; OpenTAD and the ActivityNet evaluator ignore it) and `annotations` with
    `segment` [start, end] seconds and `label` names. `load_database_json` reads it back to the
    same rows (labels indexed by the order of `class_names_of(dataset)` if that list is passed
    as `class_map`).
    """
    names = class_names_of(dataset)
    database = {}
    for row in dataset:
        entry = {"subset": row["subset"]}
        if row["duration"] is not None:
            entry["duration"] = row["duration"]
        if row["num_frames"] is not None:
            entry["frame"] = row["num_frames"]
        if row["fps"] is not None:
            entry["fps"] = row["fps"]
        entry["annotations"] = [
            {"segment": [start, end], "label": names[label]}
            for (start, end), label in zip(row["segments"], row["labels"])
        ]
        if row["video_id"] in database:
            raise AnnotationError(f"video id {row['video_id']!r} appears twice; the database layout needs unique ids.")
        database[row["video_id"]] = entry
    content = {"version": version, "taxonomy": [], "database": database}
    if path is not None:
        with open(path, "w", encoding="utf8") as f:
            json.dump(content, f)
    return content


# ------------------------------------------------------------------------------------------------
# Sliding windows (OpenTAD SlidingWindowDataset)
# ------------------------------------------------------------------------------------------------


def window_features(class_names: Sequence[str]) -> datasets.Features:
    """The `datasets.Features` of a window-row dataset (see `expand_sliding_windows`)."""
    return datasets.Features(
        {
            "video_id": datasets.Value("string"),
            "video_path": datasets.Value("string"),
            "duration": datasets.Value("float64"),
            "fps": datasets.Value("float64"),
            "num_frames": datasets.Value("int64"),
            "subset": datasets.Value("string"),
            "window_index": datasets.Value("int64"),
            "window_start_frame": datasets.Value("int64"),
            "feature_start_idx": datasets.Value("int64"),
            "feature_end_idx": datasets.Value("int64"),
            "grid_segments": datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=2)),
            "labels": datasets.Sequence(datasets.ClassLabel(names=list(class_names))),
        }
    )


def _gt_completeness(gt_frames: np.ndarray, window_first: float, window_last: float):
    """(completeness, truncated): GT clipped to the window's [first, last] snippet centre, over its length."""
    # (num_gt,), zero for GT not overlapping the window
    completeness = np.zeros(len(gt_frames))
    overlaps = (gt_frames[:, 0] < window_last) & (gt_frames[:, 1] > window_first)
    inside = gt_frames[overlaps]
    truncated_length = np.minimum(inside[:, 1], window_last) - np.maximum(inside[:, 0], window_first)
    completeness[overlaps] = truncated_length / np.maximum(inside[:, 1] - inside[:, 0], 1e-6)
    # (num_gt, 2)
    truncated = np.stack([np.maximum(gt_frames[:, 0], window_first), np.minimum(gt_frames[:, 1], window_last)], axis=1)
    return completeness, truncated


def expand_sliding_windows(
    dataset: datasets.Dataset,
    *,
    window_size: int,
    snippet_stride: int,
    mode: Literal["frame_count", "fixed_fps"],
    fps: float | None = None,
    overlap: float = 0.25,
    ioa_thresh: float = 0.75,
    test_mode: bool = False,
    offset_frames: int = 0,
    filter_gt: bool = False,
    on_error: OnError = "raise",
    output_report: bool = False,
):
    """Expands video rows into window rows exactly as OpenTAD's `SlidingWindowDataset`.

    Per video: frames = `num_frames` ("frame_count") or `int(duration * fps)` ("fixed_fps");
    snippet centres `arange(0, frames, snippet_stride)`; window stride
    `int(window_size * (1 - overlap))`; `max(1, num_snippets // window_stride)` windows of
    `window_size` snippets, the first one that would pass the video end is right-aligned
    (`start = max(0, num_snippets - window_size)`, shorter when the video is shorter than a window)
    and is the last. Like OpenTAD, when no window passes the end the loop simply stops, so the
    last `num_snippets % window_stride` snippets can be left out (e.g. 11 snippets, window 4,
    stride 3 -> windows [0,4), [3,7), [6,10)).

    GT seconds -> frames with `seconds_to_frames(mode)` (exact duplicates in frames removed again,
    as OpenTAD does after its own conversion; with `filter_gt` GT with `end - start <= 0` frames
    are dropped). Unless `test_mode`: videos without GT are dropped; in each window GT is clipped
    to [first, last] snippet centre and kept when (clipped length / length) > `ioa_thresh`;
    windows keeping none are dropped (with `ioa_thresh <= 0`, every window keeps every GT,
    unclipped, as OpenTAD does). In `test_mode` every window is kept and carries no GT.

    Window rows: the video columns (`fps` = the conversion fps: `num_frames / duration` or the
    given fps; `num_frames` = the frames used for snippets), `window_index`, `window_start_frame`
    (first snippet centre), `feature_start_idx` = `window_start_frame // snippet_stride`,
    `feature_end_idx` (last snippet centre // snippet_stride; the window holds
    `feature_end_idx - feature_start_idx + 1` valid features), `grid_segments` =
    `(frames - window_start_frame - offset_frames) / snippet_stride` and `labels`.
    Seconds come back with `grid_to_seconds(..., window_start_frame=row["window_start_frame"])`.

    Args:
        dataset: video rows from any loader.
        window_size: features per window (768 THUMOS/EPIC, 1800 Ego4D, 512 Charades).
        snippet_stride: frames between features (`feature_stride * sample_stride`: 4, 16, 8, 4).
        mode: "frame_count" (THUMOS, Multi-THUMOS, Ego4D) or "fixed_fps" (EPIC, Charades).
        fps: the config fps for "fixed_fps" (30).
        overlap: window overlap ratio (0.25 val, 0.5 test; 0 for Ego4D).
        ioa_thresh: GT completeness threshold for non-test windows.
        test_mode: keep every window, without GT.
        offset_frames: OpenTAD's `offset_frames` (0 in every AdaTAD config).
        filter_gt: drop GT with no length in frames.
        on_error: "raise" or "skip" for videos lacking what the mode needs (`num_frames`,
            `duration`) or with no frames.
        output_report: also return an `AnnotationReport` (`removed["video_without_gt"]`,
            `removed["window_without_gt"]`, `removed["duplicate"]`, `removed["filtered_gt"]`,
            `kept["video_shorter_than_window"]` (one shorter window, as OpenTAD), skips).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    window_stride = int(window_size * (1 - overlap))
    if window_size < 1 or window_stride < 1:
        raise ValueError(f"window_size ({window_size}) * (1 - overlap ({overlap})) must be at least 1.")
    if snippet_stride < 1:
        raise ValueError(f"snippet_stride must be a positive number of frames, got {snippet_stride}.")
    if mode not in ("frame_count", "fixed_fps"):
        raise ValueError(f"mode must be 'frame_count' or 'fixed_fps' (resize mode has no windows), got {mode!r}.")
    if mode == "frame_count" and fps is not None:
        raise ValueError("mode 'frame_count' takes fps = num_frames / duration from each row; do not pass fps.")
    builder = _IndexBuilder("sliding windows", class_names_of(dataset), {}, AnnotationOptions(on_error=on_error))
    report = builder.report
    columns = {name: [] for name in window_features([]).keys()}
    for row in dataset:
        vid, duration = row["video_id"], row["duration"]
        if not duration or duration <= 0:
            builder.error("bad_video_field", vid, "duration",
                          f"sliding windows need a positive duration, got {duration}")
            continue
        if mode == "frame_count":
            if not row["num_frames"]:
                builder.error("bad_video_field", vid, "num_frames", "mode 'frame_count' needs num_frames (frame count)")
                continue
            num_frames, frame_rate = int(row["num_frames"]), row["num_frames"] / duration
        else:
            if not fps or fps <= 0:
                raise ValueError("mode 'fixed_fps' needs a positive fps (30 in OpenTAD's EPIC/Charades configs).")
            num_frames, frame_rate = int(duration * fps), float(fps)
        centres = np.arange(0, num_frames, snippet_stride)
        if len(centres) == 0:
            builder.error("bad_video_field", vid, "num_frames", f"the video has no frames ({num_frames})")
            continue
        if len(centres) < window_size:
            # not an error: OpenTAD gives such a video one shorter window, padded by the frame sampler
            report.kept["video_shorter_than_window"] += 1

        gt_frames = np.zeros((0, 2))
        gt_labels = np.zeros((0,), dtype=np.int64)
        if not test_mode:
            gt_frames = seconds_to_frames(row["segments"], mode=mode, duration=duration, num_frames=num_frames, fps=fps)
            gt_labels = np.asarray(row["labels"], dtype=np.int64)
            if filter_gt:
                keep = gt_frames[:, 1] - gt_frames[:, 0] > 0
                if not keep.all():
                    report.removed["filtered_gt"] += int((~keep).sum())
                gt_frames, gt_labels = gt_frames[keep], gt_labels[keep]
            # OpenTAD removes exact (segment, label) duplicates again after its own frame conversion
            seen, unique = set(), []
            for index, ((gt_start, gt_end), label) in enumerate(zip(gt_frames.tolist(), gt_labels.tolist())):
                if (gt_start, gt_end, label) not in seen:
                    seen.add((gt_start, gt_end, label))
                    unique.append(index)
            if len(unique) < len(gt_frames):
                report.removed["duplicate"] += len(gt_frames) - len(unique)
            gt_frames, gt_labels = gt_frames[unique], gt_labels[unique]
            if len(gt_frames) == 0:
                report.removed["video_without_gt"] += 1
                continue

        for window_index, (start, end) in enumerate(window_bounds(len(centres), window_size, window_stride)):
            window_centres = centres[start:end]
            first, last = float(window_centres[0]), float(window_centres[-1])
            if test_mode:
                window_gt, window_labels = gt_frames, gt_labels
            elif ioa_thresh > 0:
                completeness, truncated = _gt_completeness(gt_frames, first, last)
                keep = completeness > ioa_thresh
                if not keep.any():
                    report.removed["window_without_gt"] += 1
                    continue
                window_gt, window_labels = truncated[keep], gt_labels[keep]
            else:
                window_gt, window_labels = gt_frames, gt_labels
            for name, value in (
                ("video_id", vid), ("video_path", row["video_path"]), ("duration", duration), ("fps", frame_rate),
                ("num_frames", num_frames), ("subset", row["subset"]), ("window_index", window_index),
                ("window_start_frame", int(first)), ("feature_start_idx", int(first // snippet_stride)),
                ("feature_end_idx", int(last // snippet_stride)),
                ("grid_segments", ((window_gt - first - offset_frames) / snippet_stride).tolist()),
                ("labels", window_labels.tolist()),
            ):
                columns[name].append(value)
    windows = datasets.Dataset.from_dict(columns, features=window_features(class_names_of(dataset)))
    report.num_videos = len(set(columns["video_id"]))
    report.num_segments = sum(len(s) for s in columns["grid_segments"])
    videos = dict.fromkeys(zip(columns["video_id"], columns["subset"]))  # distinct (video, subset), in order
    report.videos_per_subset = dict(Counter(subset for _, subset in videos))
    report.source = f"sliding windows ({len(windows)} windows)"
    (logger.warning if report.needs_attention else logger.info)(report.summary())
    return (windows, report) if output_report else windows
