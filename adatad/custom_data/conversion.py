"""Custom datasets: convert a user's annotation file to the `annotations.json` + `category_idx.txt` pair every
training preset reads (written under a temporary name and renamed when complete)."""

import json
from collections.abc import Sequence
from pathlib import Path

from .. import annotations as annotation_tables
from ..atomic_files import OutputPathError, check_not_an_input, write_text_atomically
from .readers import class_names_from_file, read_annotations
from .records import (
    ANNOTATION_FILENAME,
    CLASS_MAP_FILENAME,
    DEFAULT_SUBSET,
    CustomAnnotations,
    CustomDataError,
    PathLike,
    ValidationReport,
)
from .validation import check_annotations, locate_videos, probe_videos


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
    """The records as an `adatad.annotations` video-row `datasets.Dataset` (segments sorted by start)."""
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
    class_names = class_names_from_file(class_map)
    folder = Path(video_dir) if video_dir is not None else records.video_dir
    if folder is not None:
        locate_videos(records, folder, report)
        probe_videos(records, report, backend=decode_backend, skip_broken=skip_broken_videos, fill_timing=True)
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
