"""Custom datasets: the records read from a user's annotation file, the problems the checks report and the report
itself (standard library only)."""

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


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
