"""Custom datasets: find and probe the videos, check the records (subsets, labels, segments, timing) and the
training start-up check of a preset's data. Torch is imported only to decode videos."""

import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .. import annotations as annotation_tables
from .readers import class_names_from_file, read_annotations, split_video_name
from .records import (
    CLASS_MAP_FILENAME,
    DURATION_TOLERANCE_FRAMES,
    DURATION_TOLERANCE_RATIO,
    TRAINING_SUBSET_NAMES,
    CustomAnnotations,
    CustomDataError,
    DataValidationError,
    PathLike,
    ValidationReport,
)


def probe_video(path: PathLike, backend: str = "auto"):
    """Opens a video with the project's decoders and decodes its first and last frame.

    Returns:
        `adatad.video_decoding.VideoInfo` (`num_frames`, `fps`, `duration`, `backend`).

    Raises:
        `adatad.video_decoding.VideoDecodeError` naming the file, the diagnosis and each backend tried.
    """
    from ..video_decoding import decode_video  # torch: only needed once videos are read

    decoded = decode_video(path, lambda info: np.array([0, info.num_frames - 1]), backend=backend, num_threads=1)
    return decoded.info


def locate_videos(annotations: CustomAnnotations, video_dir: Path, report: ValidationReport) -> None:
    """Fills `video_path` of every record from `video_dir` (file = id + extension); reports missing and ambiguous
    files and video files that no annotation names."""
    if not video_dir.is_dir():
        raise CustomDataError(f"video folder not found: {video_dir}")
    by_stem: dict[str, list[str]] = {}
    for name in sorted(os.listdir(video_dir)):
        stem, extension = split_video_name(name)
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


def probe_videos(annotations: CustomAnnotations, report: ValidationReport, *, backend: str, skip_broken: bool,
                 fill_timing: bool) -> None:
    """Decodes every located video: undecodable files are errors (or dropped with `skip_broken`); missing timing is
    filled (`fill_timing`) and stated durations that disagree with the file are reported."""
    from ..video_decoding import VideoDecodeError

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


def training_subset(subsets: Iterable[str], train_subset: str | None) -> str | None:
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
    train = training_subset(labels_by_subset, train_subset)
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
        locate_videos(records, folder, report)
        if decode_videos:
            probe_videos(records, report, backend=decode_backend, skip_broken=False, fill_timing=True)
    return check_annotations(records, report, class_names=class_names_from_file(class_map), train_subset=train_subset,
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
            probe_videos(records, report, backend="auto", skip_broken=False, fill_timing=False)
    class_names = class_names_from_file(paths.get("class_map_file"))
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
