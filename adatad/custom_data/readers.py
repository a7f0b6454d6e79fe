"""Custom datasets: read a CSV, a JSON Lines file, an ActivityNet-style JSON or a dataset folder into
`CustomAnnotations` records (row-level problems go to the report, problems with the whole file raise
`CustomDataError`). No torch: the class map is read with `adatad.annotations`."""

import csv
import io
import json
import math
import os
import unicodedata
from collections import Counter
from pathlib import Path

from .. import annotations as annotation_tables
from ..strict_json import DuplicateJSONKeyError, object_without_duplicate_keys
from .records import (
    ANNOTATION_EXTENSIONS,
    DEFAULT_SUBSET,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    VIDEO_EXTENSIONS,
    CustomAnnotations,
    CustomDataError,
    PathLike,
    SegmentRecord,
    ValidationReport,
    VideoRecord,
)


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


def split_video_name(name: str) -> tuple[str, str | None]:
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
            row = json.loads(line, object_pairs_hook=object_without_duplicate_keys)
        except DuplicateJSONKeyError as error:
            raise _repeated_key_error(path, error.key, f"line {number}") from None
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
        video_id, extension = split_video_name(name)
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


def _repeated_key_error(path: Path, key, where: str = "") -> CustomDataError:
    return CustomDataError(f"{path}: {where + ': ' if where else ''}key {key!r} appears more than once in one JSON "
                           "object (duplicate video ids or fields); JSON keeps only the last, so fix the file.")


def _videos_from_database(path: Path, report: ValidationReport) -> dict[str, VideoRecord]:
    try:
        content = json.loads(_read_text(path), object_pairs_hook=object_without_duplicate_keys)
    except DuplicateJSONKeyError as error:
        raise _repeated_key_error(path, error.key) from None
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
            fps = num_frames / duration  # as adatad.annotations.load_database_json (OpenTAD's files state no fps)
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


def class_names_from_file(path: PathLike | None) -> list[str] | None:
    if path is None:
        return None
    try:
        return annotation_tables.read_class_names(path)
    except (FileNotFoundError, annotation_tables.AnnotationError) as error:
        raise CustomDataError(str(error)) from None
    except UnicodeDecodeError:
        _read_text(Path(path))  # raises the error that names the line
        raise
