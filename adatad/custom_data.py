"""Your own dataset: read simple annotation files, check them, convert them to the layout the loaders read, and
suggest training settings from the data.

Input formats (all times in seconds):

- CSV (`.csv`) or JSON Lines (`.jsonl`) with one row per action instance and the columns / keys
  `video, start, end, label`, optionally `subset` (default "training"), `fps` and `duration`. `video` is the file
  name (`clip01.mp4`) or the file name without extension (`clip01`); the video id is always the name without
  extension. A row with `start`, `end` and `label` all empty declares a video without actions.
- ActivityNet-style JSON (`.json`): `{"database": {video_id: {"subset", "duration", "annotations":
  [{"segment": [start, end], "label": name}]}}}`, the layout `adatad.data.load_database_json` reads (`fps` and
  `frame` are used when present).
- A folder: the videos, plus exactly ONE annotation file of the formats above beside them.

Output (`convert_annotations`, `adatad-convert-annotations`): `annotations.json` in the `database` layout above with
`duration`, `fps` and `frame` filled in for every video (from the file, else probed from the video with the
project's decoders) and `category_idx.txt` (one class name per line, index = line number), the files every
training preset reads through `adatad.data.load_database_json`. Files are written under a temporary name in the
target folder and renamed when complete.

`validate_annotations` / `adatad-validate-data` check a dataset in any input format and report every problem with
counts and the first offending rows; `suggest_settings` / `adatad-suggest-preset` derive window size, snippet
stride, scale factor, FPN levels with regression ranges and `max_seq_len` from the segment and video lengths and
write a training preset.

The annotation side imports numpy and `datasets` only; torch is imported only to decode videos.
"""

import argparse
import csv
import io
import json
import math
import os
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np

from . import data as annotation_tables
from .argparse_types import positive_int
from . import presets
from .atomic_files import OutputPathError, check_not_an_input, write_text_atomically


PathLike = str | os.PathLike

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
ANNOTATION_EXTENSIONS = (".csv", ".jsonl", ".json")
REQUIRED_COLUMNS = ("video", "start", "end", "label")
OPTIONAL_COLUMNS = ("subset", "fps", "duration")
DEFAULT_SUBSET = "training"
ANNOTATION_FILENAME = "annotations.json"
CLASS_MAP_FILENAME = "category_idx.txt"
# Subset names taken as the training split when the caller does not name one.
TRAINING_SUBSET_NAMES = ("training", "train")
# A stated duration may differ from the decoded one by this much before it is reported.
DURATION_TOLERANCE_FRAMES = 2
DURATION_TOLERANCE_RATIO = 0.01

# Every problem the validator reports: kind -> (severity, what it means and how to fix it).
PROBLEMS = {
    "bad_row": ("error", "a row or field that cannot be read (missing value, not a number)"),
    "unsafe_video_id": ("error", "a video id with a path separator or '..' (it must be a plain file name)"),
    "duplicate_video_id": ("error", "the same video id twice (JSON key, video file, or rows that disagree on "
                                    "subset/fps/duration)"),
    "inverted_segment": ("error", "a segment whose end is before its start"),
    "zero_length_segment": ("error", "a segment whose end equals its start"),
    "outside_video": ("error", "a segment reaching before 0 or past the video's duration"),
    "subset_without_ground_truth": ("error", "a subset whose videos hold no segment at all"),
    "label_missing_from_training": ("error", "a label of an evaluation subset that the training subset never shows"),
    "unknown_label": ("error", "a label that the class map does not list"),
    "num_labels_mismatch": ("error", "the model's number of classes differs from the class map"),
    "missing_video": ("error", "no video file for an annotated video id"),
    "undecodable_video": ("error", "a video file that the decoders cannot read"),
    "missing_timing": ("error", "a video without duration/fps/frame count that no video file can provide"),
    "no_videos": ("error", "the annotation file holds no video"),
    "label_missing_from_subset": ("warning", "a training label absent from an evaluation subset (its AP cannot "
                                             "be measured there; evaluation leaves its predictions out, counted)"),
    "unused_class": ("warning", "a class-map name that no segment uses"),
    "duplicate_segment": ("warning", "the same (start, end, label) twice in one video (the loaders drop one)"),
    "video_without_segments": ("warning", "a video without segments in a subset that has ground truth"),
    "timing_mismatch": ("warning", "a stated duration that differs from the decoded video"),
    "clipped_segment": ("warning", "a segment reaching outside the video, clipped to it on request (--clip-segments)"),
    "skipped_broken_video": ("warning", "an undecodable video left out on request (--skip-broken-videos)"),
    "unannotated_video_file": ("warning", "a video file in the video folder that the annotations do not name"),
    "no_evaluation_subset": ("warning", "a single subset: no held-out videos to measure mAP on"),
}


class CustomDataError(ValueError):
    """A file that cannot be used at all; the message names the file and the problem."""


class DataValidationError(ValueError):
    """Raised by `check_training_data` when the data has errors; `.report` holds the full `ValidationReport`."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        super().__init__(report.summary())


# ------------------------------------------------------------------------------------------------
# Records and the report
# ------------------------------------------------------------------------------------------------


@dataclass
class SegmentRecord:
    start: float
    end: float
    label: str
    where: str  # e.g. "labels.csv line 7" or "annotations.json database['v1'].annotations[2]"


@dataclass
class VideoRecord:
    video_id: str
    subset: str
    where: str
    duration: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    extension: str | None = None  # from the `video` column when it names a file
    video_path: str | None = None
    segments: list[SegmentRecord] = field(default_factory=list)


@dataclass
class CustomAnnotations:
    """Videos read from one annotation source, before any check (see `read_annotations`)."""

    source: str
    videos: dict[str, VideoRecord]
    video_dir: Path | None = None


@dataclass
class ValidationReport:
    """Problems found in a dataset, by kind (see `PROBLEMS`), with the first offending rows of each kind.

    `errors` and `warnings` count problems per kind; `examples` keeps the first `max_examples` messages of each kind.
    `ok` is True when there is no error (warnings are counted and printed, never hidden).
    """

    source: str
    max_examples: int = 5
    errors: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    videos_per_subset: dict[str, int] = field(default_factory=dict)
    segments_per_subset: dict[str, int] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def add(self, kind: str, message: str) -> None:
        severity = PROBLEMS[kind][0]
        (self.errors if severity == "error" else self.warnings)[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.max_examples:
            shown.append(message)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        videos = ", ".join(f"{name}: {count} videos / {self.segments_per_subset.get(name, 0)} segments"
                           for name, count in self.videos_per_subset.items()) or "no videos"
        lines = [f"{self.source}: {videos}; {len(self.class_names)} classes"]
        for title, counts in (("errors", self.errors), ("warnings", self.warnings)):
            lines.append(f"{sum(counts.values())} {title}" + (":" if counts else ""))
            for kind, count in counts.most_common():
                lines.append(f"  {kind} ({count}): {PROBLEMS[kind][1]}")
                lines.extend(f"    - {message}" for message in self.examples.get(kind, []))
                if count > len(self.examples.get(kind, [])):
                    lines.append(f"    ... and {count - len(self.examples[kind])} more")
        lines.append("VALID" if self.ok else "INVALID: fix the errors above")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file as text (UTF-8, with or without a byte-order mark); a clear error for other encodings."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CustomDataError(
            f"{path}: line {line} is not valid UTF-8 (byte {raw[error.start:error.start + 1]!r} at offset "
            f"{error.start}); save the file as UTF-8 (e.g. in a spreadsheet: 'CSV UTF-8')."
        ) from None


def _video_id_problem(video_id: str) -> str | None:
    if not video_id:
        return "the video id is empty"
    if "/" in video_id or "\\" in video_id or "\0" in video_id or video_id in (".", ".."):
        return (f"video id {video_id!r} is not a plain file name (it has a path separator or is '..'); "
                "give the file name only and pass the folder with --video-dir")
    return None


def _split_video_name(name: str) -> tuple[str, str | None]:
    """'clip.mp4' -> ('clip', '.mp4'); 'clip' -> ('clip', None)."""
    stem, extension = os.path.splitext(name)
    if extension.lower() in VIDEO_EXTENSIONS:
        return stem, extension
    return name, None


# Times, durations, frame counts and rates beyond this (a year of seconds at 30 fps is 9.5e8 frames) are typos;
# larger values would overflow when multiplied into frame counts.
MAX_ANNOTATION_VALUE = 1e9


def _number(value, name: str, where: str, report: ValidationReport, *, positive: bool = False) -> float | None:
    """A number from a cell/field; None (and a `bad_row` problem) when it is not one."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or (positive and number <= 0) or abs(number) > MAX_ANNOTATION_VALUE:
        kind = "a positive number" if positive else "a number"
        report.add("bad_row", f"{where}: `{name}` must be {kind} of seconds/frames up to {MAX_ANNOTATION_VALUE:g}, "
                              f"got {value!r}")
        return None
    return number


def _rows_from_csv(path: Path) -> list[tuple[str, dict]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in (reader.fieldnames or [])]
    repeated = sorted(name for name, count in Counter(columns).items() if count > 1)
    if repeated:
        raise CustomDataError(
            f"{path}: column(s) {repeated} appear more than once in the header; a CSV reader keeps only the last "
            "cell of each, so the others would be lost. Name each column once."
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " The header looks separated by ';', tab or '|': use commas."
        raise CustomDataError(
            f"{path}: missing column(s) {missing}; found {columns or 'no header'}. The first line must name the "
            f"columns {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}).{hint}"
        )
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise CustomDataError(
            f"{path}: unknown column(s) {unknown}; the columns are {', '.join(REQUIRED_COLUMNS)} and optionally "
            f"{', '.join(OPTIONAL_COLUMNS)}."
        )
    rows = []
    for row in reader:
        cells = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
        where = f"{path.name} line {reader.line_num}"
        if None in row:  # more cells than header columns
            cells["__extra__"] = row[None]
        rows.append((where, cells))
    return rows


def _rows_from_jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_reject_duplicate_keys(path, f"line {number}"))
        except json.JSONDecodeError as error:
            raise CustomDataError(f"{path}: line {number} is not valid JSON ({error.msg}).") from None
        except RecursionError:
            raise CustomDataError(f"{path}: line {number} nests JSON too deeply to read.") from None
        if not isinstance(row, dict):
            raise CustomDataError(f"{path}: line {number} must be a JSON object with keys "
                                  f"{', '.join(REQUIRED_COLUMNS)}, got {type(row).__name__}.")
        unknown = [key for key in row if key not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        missing = [key for key in REQUIRED_COLUMNS if key not in row]
        if unknown or missing:
            raise CustomDataError(
                f"{path}: line {number} has keys {sorted(row)}; each line needs {', '.join(REQUIRED_COLUMNS)} "
                f"(optional: {', '.join(OPTIONAL_COLUMNS)})"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else "") + "."
            )
        rows.append((f"{path.name} line {number}", {k: "" if v is None else v for k, v in row.items()}))
    return rows


def _videos_from_rows(rows: list[tuple[str, dict]], default_subset: str, report: ValidationReport):
    videos: dict[str, VideoRecord] = {}
    for where, row in rows:
        if "__extra__" in row:
            report.add("bad_row", f"{where}: more cells than header columns ({row['__extra__']!r}); quote cells "
                                  "that contain commas")
            continue
        name = str(row["video"]).strip()
        video_id, extension = _split_video_name(name)
        problem = _video_id_problem(video_id)
        if problem:
            report.add("unsafe_video_id", f"{where}: {problem}")
            continue
        subset = str(row.get("subset") or default_subset).strip()
        fps = _number(row["fps"], "fps", where, report, positive=True) if row.get("fps") not in (None, "") else None
        duration = (_number(row["duration"], "duration", where, report, positive=True)
                    if row.get("duration") not in (None, "") else None)
        video = videos.get(video_id)
        if video is None:
            video = videos[video_id] = VideoRecord(video_id, subset, where, duration, fps, extension=extension)
        else:
            for name_, old, new in (("subset", video.subset, subset), ("fps", video.fps, fps),
                                    ("duration", video.duration, duration)):
                if new is not None and old is not None and old != new:
                    report.add("duplicate_video_id", f"{where}: video {video_id!r} has {name_} {new!r} here but "
                                                      f"{old!r} at {video.where}")
            video.fps = video.fps if video.fps is not None else fps
            video.duration = video.duration if video.duration is not None else duration
            if extension and video.extension and extension != video.extension:
                report.add("duplicate_video_id", f"{where}: video {video_id!r} is named with extension "
                                                  f"{extension} here but {video.extension} at {video.where}")
        cells = [row["start"], row["end"], row["label"]]
        if all(str(cell).strip() == "" for cell in cells):
            continue  # a video without actions
        label = str(row["label"]).strip()
        if not label:
            report.add("bad_row", f"{where}: video {video_id!r} has a segment without a label")
            continue
        start = _number(row["start"], "start", where, report)
        end = _number(row["end"], "end", where, report)
        if start is not None and end is not None:
            video.segments.append(SegmentRecord(start, end, label, where))
    return videos


def _reject_duplicate_keys(path: Path, where: str = ""):
    def hook(pairs):
        keys = Counter(key for key, _ in pairs)
        repeated = [key for key, count in keys.items() if count > 1]
        if repeated:
            raise CustomDataError(f"{path}: {where + ': ' if where else ''}key(s) {repeated[:5]} appear more than "
                                  "once in one JSON object (duplicate video ids or fields); JSON keeps only the last, "
                                  "so fix the file.")
        return dict(pairs)

    return hook


def _videos_from_database(path: Path, report: ValidationReport) -> dict[str, VideoRecord]:
    try:
        content = json.loads(_read_text(path), object_pairs_hook=_reject_duplicate_keys(path))
    except json.JSONDecodeError as error:
        raise CustomDataError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).") \
            from None
    except RecursionError:
        raise CustomDataError(f"{path}: JSON nested too deeply to read; annotation files nest a few levels.") \
            from None
    if not isinstance(content, dict) or not isinstance(content.get("database"), dict):
        raise CustomDataError(f"{path}: expected a JSON object with a 'database' object mapping video ids to "
                              "{'subset', 'duration', 'annotations': [{'segment': [start, end], 'label'}]} "
                              "(ActivityNet layout).")
    videos: dict[str, VideoRecord] = {}
    for video_id, info in content["database"].items():
        where = f"{path.name} database[{video_id!r}]"
        problem = _video_id_problem(video_id)
        if problem:
            report.add("unsafe_video_id", f"{where}: {problem}")
            continue
        if not isinstance(info, dict) or not isinstance(info.get("subset"), str):
            report.add("bad_row", f"{where}: each video needs a string 'subset'")
            continue
        duration = info.get("duration")
        duration = None if duration is None else _number(duration, "duration", where, report, positive=True)
        fps = info.get("fps")
        fps = None if fps is None else _number(fps, "fps", where, report, positive=True)
        num_frames = info.get("frame")
        num_frames = None if num_frames is None else _number(num_frames, "frame", where, report, positive=True)
        if fps is None and num_frames is not None and duration is not None:
            fps = num_frames / duration  # as adatad.data.load_database_json (OpenTAD's files state no fps)
        video = VideoRecord(video_id, info["subset"], where, duration, fps,
                            None if num_frames is None else int(num_frames))
        annotations = info.get("annotations") or []
        if not isinstance(annotations, list):
            report.add("bad_row", f"{where}: 'annotations' must be a list")
            annotations = []
        for index, annotation in enumerate(annotations):
            at = f"{where}.annotations[{index}]"
            segment = annotation.get("segment") if isinstance(annotation, dict) else None
            label = annotation.get("label") if isinstance(annotation, dict) else None
            if not isinstance(segment, (list, tuple)) or len(segment) != 2 or not isinstance(label, str) or not label:
                report.add("bad_row", f"{at}: expected {{'segment': [start, end], 'label': name}}, got {annotation!r}")
                continue
            start = _number(segment[0], "segment[0]", at, report)
            end = _number(segment[1], "segment[1]", at, report)
            if start is not None and end is not None:
                video.segments.append(SegmentRecord(start, end, label, at))
        videos[video_id] = video
    return videos


def _find_annotation_file(folder: Path) -> Path:
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_EXTENSIONS)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise CustomDataError(
            f"{folder}: a dataset folder holds the videos and exactly one annotation file "
            f"({', '.join(ANNOTATION_EXTENSIONS)}); found {found}. Pass the annotation file itself instead."
        )
    return candidates[0]


def read_annotations(
    path: PathLike, *, default_subset: str = DEFAULT_SUBSET, report: ValidationReport | None = None
) -> CustomAnnotations:
    """Reads videos and segments from a CSV, a JSONL, an ActivityNet-style JSON or a dataset folder.

    Row-level problems (non-numbers, unsafe or conflicting video ids) go to `report` and the row is left out;
    problems with the whole file raise `CustomDataError` naming the file: missing file, wrong columns, non-UTF-8
    text, invalid JSON, duplicate JSON keys, a folder without exactly one annotation file.

    Args:
        path: the annotation file, or a folder holding the videos and one annotation file (then the videos are
            looked up in that folder).
        default_subset: subset of CSV/JSONL rows without a `subset` value.
        report: where row-level problems are recorded (a new report if None; read it back from the caller's).
    """
    path = Path(path)
    report = report if report is not None else ValidationReport(str(path))
    video_dir = None
    if path.is_dir():
        video_dir, path = path, _find_annotation_file(path)
    if not path.is_file():
        raise CustomDataError(f"annotation file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        videos = _videos_from_rows(_rows_from_csv(path), default_subset, report)
    elif suffix == ".jsonl":
        videos = _videos_from_rows(_rows_from_jsonl(path), default_subset, report)
    elif suffix == ".json":
        videos = _videos_from_database(path, report)
    else:
        raise CustomDataError(f"{path}: unknown annotation format {suffix!r}; use .csv, .jsonl or .json "
                              "(ActivityNet 'database' layout).")
    _check_labels(videos, report)
    return CustomAnnotations(str(path), videos, video_dir)


def _check_labels(videos: dict[str, VideoRecord], report: ValidationReport) -> None:
    """Labels are class names in every output (class map, subtitles, model config): a line break or other control
    character is refused (the segment is left out), and one name written in two Unicode forms (NFC and NFD look the
    same but compare different) would become two classes, so that is refused too."""
    spellings: dict[str, dict[str, str]] = {}
    for video in videos.values():
        kept = []
        for segment in video.segments:
            if any(unicodedata.category(character) == "Cc" for character in segment.label):
                report.add("bad_row", f"{segment.where}: label {segment.label!r} holds a line break or another "
                                      "control character; write the class name on one line")
                continue
            spellings.setdefault(unicodedata.normalize("NFC", segment.label), {}).setdefault(
                segment.label, segment.where
            )
            kept.append(segment)
        video.segments = kept
    for name, forms in spellings.items():
        if len(forms) > 1:
            places = " and ".join(f"{form!r} at {where}" for form, where in list(forms.items())[:2])
            report.add("bad_row", f"label {name!r} is written in {len(forms)} Unicode forms ({places}): they look "
                                  "the same but would be different classes; save the file in one form (NFC)")


# ------------------------------------------------------------------------------------------------
# Videos: finding and probing
# ------------------------------------------------------------------------------------------------


def probe_video(path: PathLike, backend: str = "auto"):
    """Opens a video with the project's decoders and decodes its first and last frame.

    Returns:
        `adatad.video_decoding.VideoInfo` (`num_frames`, `fps`, `duration`, `backend`).

    Raises:
        `adatad.video_decoding.VideoDecodeError` naming the file, the diagnosis and each backend tried.
    """
    from .video_decoding import decode_video  # torch: only needed once videos are read

    decoded = decode_video(path, lambda info: np.array([0, info.num_frames - 1]), backend=backend, num_threads=1)
    return decoded.info


def _locate_videos(annotations: CustomAnnotations, video_dir: Path, report: ValidationReport) -> None:
    """Fills `video_path` of every record from `video_dir` (file = id + extension); reports missing and ambiguous
    files and video files that no annotation names."""
    if not video_dir.is_dir():
        raise CustomDataError(f"video folder not found: {video_dir}")
    by_stem: dict[str, list[str]] = {}
    for name in sorted(os.listdir(video_dir)):
        stem, extension = _split_video_name(name)
        if extension is not None and (video_dir / name).is_file():
            by_stem.setdefault(stem, []).append(name)
    for video in annotations.videos.values():
        names = by_stem.get(video.video_id, [])
        if video.extension is not None:
            names = [name for name in names if name == video.video_id + video.extension]
        if not names:
            wanted = video.video_id + (video.extension or ".<mp4, mkv, ...>")
            report.add("missing_video", f"{video.where}: no file {wanted} in {video_dir}")
        elif len(names) > 1:
            report.add("duplicate_video_id", f"{video.where}: several files give video id {video.video_id!r} in "
                                              f"{video_dir}: {names}; keep one or name the file in the annotation")
        else:
            video.video_path = str(video_dir / names[0])
    for stem in sorted(set(by_stem) - set(annotations.videos)):
        report.add("unannotated_video_file", f"{video_dir / by_stem[stem][0]} is not in {annotations.source}")


def _probe_all(annotations: CustomAnnotations, report: ValidationReport, *, backend: str, skip_broken: bool,
               fill_timing: bool) -> None:
    """Decodes every located video: undecodable files are errors (or dropped with `skip_broken`); missing timing is
    filled (`fill_timing`) and stated durations that disagree with the file are reported."""
    from .video_decoding import VideoDecodeError

    for video_id in list(annotations.videos):
        video = annotations.videos[video_id]
        if video.video_path is None:
            continue
        try:
            info = probe_video(video.video_path, backend=backend)
        except (VideoDecodeError, ValueError) as error:
            if skip_broken:
                report.add("skipped_broken_video", f"{video.where}: left out: {error}")
                del annotations.videos[video_id]
            else:
                report.add("undecodable_video", f"{video.where}: {error}")
            continue
        if video.duration is not None and info.fps > 0:
            tolerance = max(DURATION_TOLERANCE_FRAMES / info.fps, DURATION_TOLERANCE_RATIO * info.duration)
            if abs(video.duration - info.duration) > tolerance:
                report.add("timing_mismatch", f"{video.where}: duration {video.duration} s is stated but "
                                              f"{video.video_path} decodes to {info.duration:.3f} s "
                                              f"({info.num_frames} frames at {info.fps:g} fps)")
        if fill_timing:
            video.fps = video.fps if video.fps is not None else info.fps
            video.duration = video.duration if video.duration is not None else info.duration
            video.num_frames = video.num_frames if video.num_frames is not None else info.num_frames


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def _training_subset(subsets: Iterable[str], train_subset: str | None) -> str | None:
    if train_subset is not None:
        return train_subset
    return next((name for name in TRAINING_SUBSET_NAMES if name in subsets), None)


def check_annotations(
    annotations: CustomAnnotations,
    report: ValidationReport,
    *,
    class_names: Sequence[str] | None = None,
    train_subset: str | None = None,
    unlabelled_subsets: Sequence[str] = (),
    num_labels: int | None = None,
    require_timing: bool = False,
    ignore_labels: Sequence[str] = (),
    clip_segments: bool = False,
) -> ValidationReport:
    """Checks records already read (and located/probed if videos are given); fills `report` and returns it.

    Args:
        class_names: the class map; None = every label of the file (then no label can be unknown).
        train_subset: the subset the model trains on; None = "training" or "train" when present.
        unlabelled_subsets: subsets allowed to have no ground truth (e.g. a "test" split without labels).
        num_labels: the model's class count (a preset's `model.num_labels`), compared to the class map.
        require_timing: report videos lacking duration, fps or frame count as errors (training needs them).
        ignore_labels: labels whose segments are left out before checking (THUMOS "Ambiguous").
        clip_segments: clip segments that reach outside [0, duration] to it (in the records, counted as
            `clipped_segment` warnings) instead of reporting them; a segment entirely outside stays an error.
    """
    videos = list(annotations.videos.values())
    if not videos:
        report.add("no_videos", f"{annotations.source}: no video rows")
    labels_by_subset: dict[str, Counter] = {}
    for video in videos:
        labels_by_subset.setdefault(video.subset, Counter())
        report.videos_per_subset[video.subset] = report.videos_per_subset.get(video.subset, 0) + 1
        if require_timing and (video.duration is None or video.fps is None or video.num_frames is None):
            missing = [name for name, value in (("duration", video.duration), ("fps", video.fps),
                                                ("frame", video.num_frames)) if value is None]
            report.add("missing_timing", f"{video.where}: no {', '.join(missing)}; convert the annotations with "
                                         "adatad-convert-annotations --video-dir to fill them from the video")
        seen = set()
        for segment in video.segments:
            if segment.label in ignore_labels:
                continue
            at = f"{segment.where}: video {video.video_id!r}, segment [{segment.start}, {segment.end}]"
            if segment.end < segment.start:
                report.add("inverted_segment", f"{at} ends before it starts")
                continue
            if segment.end == segment.start:
                report.add("zero_length_segment", f"{at} has no length")
                continue
            if segment.start < 0 or (video.duration is not None and segment.end > video.duration):
                limit = math.inf if video.duration is None else video.duration
                if not clip_segments or segment.end <= 0 or segment.start >= limit:
                    report.add("outside_video", f"{at} is outside the video [0, {limit:g}] s")
                    continue
                segment.start, segment.end = max(segment.start, 0.0), min(segment.end, limit)
                report.add("clipped_segment", f"{at} clipped to [{segment.start:g}, {segment.end:g}]")
            key = (segment.start, segment.end, segment.label)
            if key in seen:
                report.add("duplicate_segment", f"{at} {segment.label!r} appears twice")
                continue
            seen.add(key)
            labels_by_subset[video.subset][segment.label] += 1
    report.segments_per_subset = {name: sum(labels.values()) for name, labels in labels_by_subset.items()}

    all_labels = sorted({label for labels in labels_by_subset.values() for label in labels})
    report.class_names = list(class_names) if class_names is not None else all_labels
    if class_names is not None:
        names = set(class_names)
        for video in videos:
            for segment in video.segments:
                if segment.label not in names and segment.label not in ignore_labels:
                    report.add("unknown_label", f"{segment.where}: video {video.video_id!r}: label {segment.label!r} "
                                                f"is not in the class map ({len(names)} classes)")
        used = set(all_labels)
        for name in class_names:
            if name not in used:
                report.add("unused_class", f"class {name!r} of the class map has no segment")
    if num_labels is not None and num_labels != len(report.class_names):
        report.add("num_labels_mismatch", f"the model has {num_labels} classes but the class map has "
                                          f"{len(report.class_names)} ({report.class_names[:5]}...); set "
                                          f"model.num_labels={len(report.class_names)}")

    for subset, labels in labels_by_subset.items():
        if not labels and subset not in unlabelled_subsets:
            report.add("subset_without_ground_truth",
                       f"subset {subset!r} has {report.videos_per_subset[subset]} videos but no valid segment; "
                       "training drops such videos and evaluation has nothing to score (name it with "
                       "--unlabelled-subset if it is meant to be unlabelled)")
    for video in videos:
        if not video.segments and labels_by_subset[video.subset]:
            report.add("video_without_segments", f"{video.where}: video {video.video_id!r} of subset "
                                                 f"{video.subset!r} has no segment (training skips it)")
    train = _training_subset(labels_by_subset, train_subset)
    if len(labels_by_subset) == 1:
        report.add("no_evaluation_subset", f"every video is in subset {next(iter(labels_by_subset))!r}; set the "
                                           "`subset` of some videos to e.g. 'validation' to evaluate on them")
    if train is not None and train not in labels_by_subset:
        report.add("subset_without_ground_truth", f"the training subset {train!r} has no video (subsets: "
                                                  f"{sorted(labels_by_subset)})")
    labelled = {name: labels for name, labels in labels_by_subset.items() if labels}
    if train in labelled:
        # Labels the model never trains on cannot be detected; training labels absent elsewhere cannot be scored.
        pairs = [(subset, train) for subset in labelled if subset != train]
    else:
        pairs = [(subset, other) for subset in labelled for other in labelled if subset != other]
    for subset, reference in pairs:
        for label in sorted(set(labelled[subset]) - set(labelled[reference])):
            report.add("label_missing_from_training", f"label {label!r} has {labelled[subset][label]} segments in "
                                                      f"subset {subset!r} but none in {reference!r}")
        if reference == train:
            for label in sorted(set(labelled[train]) - set(labelled[subset])):
                report.add("label_missing_from_subset", f"label {label!r} is in {train!r} but has no segment in "
                                                        f"{subset!r}")
    return report


def _class_names_for(path: PathLike | None) -> list[str] | None:
    if path is None:
        return None
    try:
        return annotation_tables.read_class_names(path)
    except (FileNotFoundError, annotation_tables.AnnotationError) as error:
        raise CustomDataError(str(error)) from None
    except UnicodeDecodeError:
        _read_text(Path(path))  # raises the error that names the line
        raise


def validate_annotations(
    annotations: PathLike,
    *,
    video_dir: PathLike | None = None,
    class_map: PathLike | None = None,
    train_subset: str | None = None,
    unlabelled_subsets: Sequence[str] = (),
    decode_videos: bool = True,
    decode_backend: str = "auto",
    max_examples: int = 5,
) -> ValidationReport:
    """Checks a dataset in any input format (see the module docstring) and returns the report.

    With `video_dir` (or a dataset folder) every annotated video must have a file, and with `decode_videos` every
    file must decode (first and last frame); durations the file states are compared with the decoded ones.
    A `category_idx.txt` beside a `.json` annotation file is used as the class map unless `class_map` is given.

    Raises:
        CustomDataError: the annotation file itself cannot be used (see `read_annotations`).
    """
    report = ValidationReport(str(annotations), max_examples=max_examples)
    records = read_annotations(annotations, report=report)
    report.source = records.source
    if class_map is None and Path(records.source).suffix == ".json":
        beside = Path(records.source).with_name(CLASS_MAP_FILENAME)
        class_map = beside if beside.is_file() else None
    folder = Path(video_dir) if video_dir is not None else records.video_dir
    if folder is not None:
        _locate_videos(records, folder, report)
        if decode_videos:
            _probe_all(records, report, backend=decode_backend, skip_broken=False, fill_timing=True)
    return check_annotations(records, report, class_names=_class_names_for(class_map), train_subset=train_subset,
                             unlabelled_subsets=unlabelled_subsets)


def check_training_data(
    preset: dict,
    paths: dict,
    *,
    decode_videos: bool = False,
    segment_problems: str = "error",
) -> ValidationReport:
    """Training start-up check of a preset's data; raises `DataValidationError` (with the report) on errors.

    Checks the preset's annotation file (`paths["annotation_file"]`, `database` layout) against its class map
    (`paths["class_map_file"]`), `model.num_labels`, its subsets (`data.train_subset`, `data.test_subset`: both
    need ground truth; labels of the evaluation subset must occur in training) and, when `paths["video_dir"]` is
    set, that every video file exists (`data.video_prefix` + id + `data.video_extension`) and, with
    `decode_videos`, decodes. Every video needs duration, fps and frame count.

    Args:
        preset: a loaded preset (`adatad.presets.load_preset`).
        paths: `resolve_data_paths(preset)`.
        decode_videos: also open every video (slow on big datasets; the data loader reports bad files anyway).
        segment_problems: "error" (custom data) or "warning": the official benchmark files hold segments past the
            video end and zero-length segments that their evaluation keeps, so pass "warning" for shipped
            benchmark presets. Missing videos are warnings when the preset's `data.missing_videos` is "skip".

    Returns:
        the report (warnings only) when the data is usable.
    """
    if segment_problems not in ("error", "warning"):
        raise ValueError(f"segment_problems must be 'error' or 'warning', got {segment_problems!r}.")
    data = preset["data"]
    report = ValidationReport(str(paths["annotation_file"]))
    records = read_annotations(paths["annotation_file"], report=report)
    blocked = annotation_tables._read_id_list(paths.get("blocked_videos_file"))
    for video_id in blocked:
        records.videos.pop(video_id, None)
    wanted = {data["train_subset"], data["test_subset"]}
    records.videos = {k: v for k, v in records.videos.items() if v.subset in wanted}
    if not any(video.subset == data["test_subset"] for video in records.videos.values()):
        report.add("subset_without_ground_truth", f"the evaluation subset {data['test_subset']!r} (data.test_subset) "
                                                  f"has no video in {records.source}")
    if paths.get("video_dir") is not None:
        video_dir = Path(paths["video_dir"])
        for video in records.videos.values():
            candidate = video_dir / f"{data['video_prefix']}{video.video_id}{data['video_extension']}"
            if candidate.is_file():
                video.video_path = str(candidate)
            else:
                report.add("missing_video", f"{video.where}: no file {candidate}")
        if decode_videos:
            _probe_all(records, report, backend="auto", skip_broken=False, fill_timing=False)
    class_names = _class_names_for(paths.get("class_map_file"))
    if class_names is not None and data["ignore_labels"]:
        class_names = [name for name in class_names if name not in data["ignore_labels"]]
    num_labels = None if data["class_agnostic"] else preset["model"]["num_labels"]
    check_annotations(records, report, class_names=class_names, train_subset=data["train_subset"],
                      num_labels=num_labels, require_timing=data["conversion_mode"] == "frame_count",
                      ignore_labels=data["ignore_labels"])
    demoted = ["missing_video"] if data.get("missing_videos") == "skip" else []
    if segment_problems == "warning":
        demoted += ["outside_video", "zero_length_segment"]
    for kind in demoted:
        if kind in report.errors:
            report.warnings[kind] = report.errors.pop(kind)
    if not report.ok:
        raise DataValidationError(report)
    return report


# ------------------------------------------------------------------------------------------------
# Writing (atomic)
# ------------------------------------------------------------------------------------------------


def write_atomic(path: PathLike, text: str) -> Path:
    """`write_text_atomically` with a clear error when the target folder is missing.

    Raises:
        CustomDataError: the target folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CustomDataError(f"cannot write {path}: the folder {path.parent} does not exist (create it first).")
    write_text_atomically(path, text)
    return path


def to_video_rows(annotations: CustomAnnotations, class_names: Sequence[str]):
    """The records as an `adatad.data` video-row `datasets.Dataset` (segments sorted by start)."""
    import datasets

    index = {name: i for i, name in enumerate(class_names)}
    rows = {name: [] for name in annotation_tables.annotation_features([]).keys()}
    for video in annotations.videos.values():
        segments = sorted(video.segments, key=lambda s: (s.start, s.end, s.label))
        for name, value in (
            ("video_id", video.video_id), ("video_path", video.video_path), ("duration", video.duration),
            ("fps", video.fps), ("num_frames", video.num_frames), ("subset", video.subset),
            ("segments", [[s.start, s.end] for s in segments]), ("labels", [index[s.label] for s in segments]),
        ):
            rows[name].append(value)
    return datasets.Dataset.from_dict(rows, features=annotation_tables.annotation_features(class_names))


def convert_annotations(
    source: PathLike,
    output_dir: PathLike,
    *,
    video_dir: PathLike | None = None,
    class_map: PathLike | None = None,
    default_subset: str = DEFAULT_SUBSET,
    train_subset: str | None = None,
    unlabelled_subsets: Sequence[str] = (),
    skip_broken_videos: bool = False,
    clip_segments: bool = False,
    decode_backend: str = "auto",
) -> tuple[dict[str, Path] | None, ValidationReport]:
    """Converts a CSV / JSONL / ActivityNet JSON / dataset folder to `annotations.json` + `category_idx.txt`.

    Every video is located in `video_dir` (or the dataset folder) and decoded (first and last frame) to fill the
    duration, fps and frame count the file does not state. Nothing is written when the data has errors (the
    report says why); the class map is the given one or every label sorted alphabetically (OpenTAD's rule).

    Args:
        source: the annotation file or dataset folder.
        output_dir: folder for the two files; created when its parent exists.
        video_dir: folder of the videos (default: the dataset folder). Without videos the file must state
            `duration` and `fps` for every video (the frame count is then `round(duration * fps)`).
        skip_broken_videos: leave undecodable videos out (counted, listed) instead of failing.
        clip_segments: clip segments that reach past the video's ends instead of failing.
        See `check_annotations` for the other arguments.

    Returns:
        `({"annotation_file": path, "class_map_file": path} or None when nothing was written, report)`.
    """
    output_dir = Path(output_dir)
    if not output_dir.parent.is_dir():
        raise CustomDataError(f"cannot write to {output_dir}: its parent folder {output_dir.parent} does not exist.")
    report = ValidationReport(str(source))
    records = read_annotations(source, default_subset=default_subset, report=report)
    report.source = records.source
    inputs = [("source annotation", records.source), ("--class-map", class_map)]
    try:
        for name in (CLASS_MAP_FILENAME, ANNOTATION_FILENAME):
            check_not_an_input("--output-dir", output_dir / name, inputs)
    except OutputPathError as error:
        raise CustomDataError(str(error).replace("output path", "--output-dir")) from None
    class_names = _class_names_for(class_map)
    folder = Path(video_dir) if video_dir is not None else records.video_dir
    if folder is not None:
        _locate_videos(records, folder, report)
        _probe_all(records, report, backend=decode_backend, skip_broken=skip_broken_videos, fill_timing=True)
    for video in records.videos.values():
        if video.num_frames is None and video.duration is not None and video.fps is not None:
            video.num_frames = int(round(video.duration * video.fps))
    check_annotations(records, report, class_names=class_names, train_subset=train_subset,
                      unlabelled_subsets=unlabelled_subsets, require_timing=True, clip_segments=clip_segments)
    if not report.ok:
        return None, report
    rows = to_video_rows(records, report.class_names)
    content = annotation_tables.to_database_json(rows)
    output_dir.mkdir(exist_ok=True)
    # The class map first: annotations.json is the file a user looks for, so it appears only once both are complete.
    class_map_file = write_atomic(output_dir / CLASS_MAP_FILENAME, "".join(f"{name}\n" for name in report.class_names))
    annotation_file = write_atomic(output_dir / ANNOTATION_FILENAME, json.dumps(content, indent=1) + "\n")
    return {"annotation_file": annotation_file, "class_map_file": class_map_file}, report


# ------------------------------------------------------------------------------------------------
# Settings suggested from the data
# ------------------------------------------------------------------------------------------------

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


def _dataset_statistics(records: CustomAnnotations, train_subset: str):
    train = [video for video in records.videos.values() if video.subset == train_subset]
    segments = [s.end - s.start for video in train for s in video.segments if s.end > s.start]
    durations = [video.duration for video in train if video.duration]
    fps_values = [video.fps for video in records.videos.values() if video.fps]
    if not segments or not durations or not fps_values:
        raise CustomDataError(f"{records.source}: the training subset {train_subset!r} needs videos with durations, "
                              "fps and segments to suggest settings; convert it with adatad-convert-annotations "
                              "--video-dir first.")
    return segments, durations, fps_values, len(train)


# ------------------------------------------------------------------------------------------------
# Command lines
# ------------------------------------------------------------------------------------------------


def _print_report(report: ValidationReport, stream=None) -> None:
    print(report.summary(), file=stream or sys.stdout)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-convert-annotations`: exit 0 when written, 1 when the data or a file has errors (nothing written),
    2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="adatad-convert-annotations",
        description="Convert a CSV / JSONL of `video,start,end,label[,subset,fps,duration]` rows, an ActivityNet-style "
        "JSON, or a folder of videos with one such file, to annotations.json + category_idx.txt for training.",
    )
    parser.add_argument("source", help="annotation file (.csv, .jsonl, .json) or folder of videos + one such file")
    parser.add_argument("--output-dir", required=True, help="folder for annotations.json and category_idx.txt")
    parser.add_argument("--video-dir", help="folder of the videos (default: the source folder); probed for durations")
    parser.add_argument("--class-map", help="class names, one per line (default: every label, sorted)")
    parser.add_argument("--default-subset", default=DEFAULT_SUBSET, help="subset of rows without one (%(default)s)")
    parser.add_argument("--train-subset", help="the training subset (default: 'training' or 'train')")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--skip-broken-videos", action="store_true", help="leave undecodable videos out (listed)")
    parser.add_argument("--clip-segments", action="store_true", help="clip segments reaching past the video's ends")
    parser.add_argument("--decode-backend", default="auto", choices=("auto", "decord", "pyav", "torchcodec"))
    args = parser.parse_args(argv)
    try:
        written, report = convert_annotations(
            args.source, args.output_dir, video_dir=args.video_dir, class_map=args.class_map,
            default_subset=args.default_subset, train_subset=args.train_subset,
            unlabelled_subsets=args.unlabelled_subset, skip_broken_videos=args.skip_broken_videos,
            clip_segments=args.clip_segments, decode_backend=args.decode_backend,
        )
    except CustomDataError as error:
        print(f"adatad-convert-annotations: error: {error}", file=sys.stderr)
        return 1
    _print_report(report)
    if written is None:
        print(f"nothing written to {args.output_dir}", file=sys.stderr)
        return 1
    print(f"wrote {written['annotation_file']} and {written['class_map_file']}")
    return 0


def validate_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-validate-data`: exit 0 when valid (warnings allowed), 1 on errors (also a file that cannot be read
    at all), 2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="adatad-validate-data",
        description="Check a temporal action detection dataset and print a report (counts per problem, first rows).",
    )
    parser.add_argument("annotations", help="annotation file (.csv, .jsonl, .json) or folder of videos + one file")
    parser.add_argument("--video-dir", help="folder of the videos: each must exist and decode")
    parser.add_argument("--class-map", help="class names, one per line (default: category_idx.txt beside a .json)")
    parser.add_argument("--train-subset", help="the training subset (default: 'training' or 'train')")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--no-decode", action="store_true", help="only check that video files exist")
    parser.add_argument("--max-examples", type=int, default=5, help="offending rows shown per problem (default 5)")
    args = parser.parse_args(argv)
    try:
        report = validate_annotations(
            args.annotations, video_dir=args.video_dir, class_map=args.class_map, train_subset=args.train_subset,
            unlabelled_subsets=args.unlabelled_subset, decode_videos=not args.no_decode, max_examples=args.max_examples,
        )
    except CustomDataError as error:
        print(f"adatad-validate-data: error: {error}", file=sys.stderr)
        return 1
    _print_report(report)
    return 0 if report.ok else 1


def suggest_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-suggest-preset`: print suggested settings with the reasoning and write a training preset."""
    parser = argparse.ArgumentParser(
        prog="adatad-suggest-preset",
        description="Suggest window size, snippet stride, scale factor, FPN regression ranges and max_seq_len from a "
        "converted dataset, and write a preset for training/run_tad.py --preset FILE.",
    )
    parser.add_argument("annotations", help="annotations.json written by adatad-convert-annotations")
    parser.add_argument("--video-dir", required=True, help="folder of the videos")
    parser.add_argument("--backbone", required=True, choices=sorted(BACKBONE_PRESETS),
                        help="backbone (and the shipped preset its other settings come from)")
    parser.add_argument("--output", required=True, help="preset JSON file to write")
    parser.add_argument("--name", help="preset and dataset name (default: the output file name)")
    parser.add_argument("--train-subset", default=None, help="training subset (default: 'training' or 'train')")
    parser.add_argument("--test-subset", default=None, help="evaluation subset (default: the other labelled subset)")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--max-window-size", type=positive_int, default=768,
                        help="cap on the window in features (768)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="override preset fields; repeatable (every --set adds its overrides)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    try:
        shipped = [Path(str(path)) for path in presets.SHIPPED_PRESETS.iterdir() if path.name.endswith(".json")]
        class_map = Path(args.annotations).with_name(CLASS_MAP_FILENAME)
        inputs = [("annotations", args.annotations), ("class map", class_map)]
        check_not_an_input("--output", output, inputs + [("shipped preset", path) for path in shipped])
    except OutputPathError as error:
        print(f"adatad-suggest-preset: error: {error}", file=sys.stderr)
        return 1
    try:
        report = ValidationReport(args.annotations)
        records = read_annotations(args.annotations, report=report)
        check_annotations(records, report, class_names=_class_names_for(Path(records.source).with_name(
            CLASS_MAP_FILENAME)), train_subset=args.train_subset, unlabelled_subsets=args.unlabelled_subset,
            require_timing=True)
        if not report.ok:
            _print_report(report, sys.stderr)
            print("adatad-suggest-preset: error: fix the data first (adatad-validate-data)", file=sys.stderr)
            return 1
        subsets = [name for name, count in report.segments_per_subset.items() if count]
        train = _training_subset(subsets, args.train_subset)
        test = args.test_subset or next((name for name in subsets if name != train), None)
        if train is None or test is None:
            raise CustomDataError(f"{records.source}: need a training and an evaluation subset, found {subsets}; "
                                  "pass --train-subset and --test-subset.")
        _locate_videos(records, Path(args.video_dir), ValidationReport(args.video_dir))
        extensions = sorted({Path(v.video_path).suffix for v in records.videos.values() if v.video_path})
        if len(extensions) != 1:
            raise CustomDataError(f"{args.video_dir}: the training loader reads one video extension, found "
                                  f"{extensions or 'no videos'}; rename or re-encode the videos to one container.")
        segments, durations, fps_values, num_train = _dataset_statistics(records, train)
        settings = suggest_settings(segments, durations, float(np.median(fps_values)),
                                    max_window_size=args.max_window_size)
        if max(fps_values) > 1.1 * min(fps_values):
            # frame_count sampling counts each video's own frames, so one feature step lasts a different time
            settings.reasoning.append(
                f"frame rates vary from {min(fps_values):g} to {max(fps_values):g} fps: a feature step is "
                f"snippet_stride frames of each video, so its length in seconds varies; re-encode the videos to one "
                "frame rate for equal steps"
            )
        name = args.name or output.stem
        preset = build_custom_preset(
            settings, backbone=args.backbone, name=name, data_root=Path(records.source).parent,
            video_dir=args.video_dir, video_extension=extensions[0], class_names=report.class_names,
            train_subset=train, test_subset=test, num_train_videos=num_train, overrides=args.set,
        )
        write_atomic(output, presets.dump_preset(preset))
    except (CustomDataError, ValueError) as error:
        print(f"adatad-suggest-preset: error: {error}", file=sys.stderr)
        return 1
    print("suggested settings:")
    for line in settings.reasoning:
        print(f"  - {line}")
    if args.set:
        print(f"  overrides applied after the suggestions: {' '.join(args.set)}")
    print(f"wrote {output} (backbone {args.backbone}, {len(report.class_names)} classes, train {train!r}, "
          f"evaluate {test!r}); train with: accelerate launch training/run_tad.py --preset {output}")
    return 0
