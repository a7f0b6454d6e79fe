# Copyright 2024 The adatad Authors. Licensed under the Apache License, Version 2.0.
"""ActivityNet-protocol evaluation of temporal action detection and proposals.

Detection mAP follows the official ActivityNet evaluator (`activitynet/ActivityNet`,
`Evaluation/eval_detection.py`) number for number, but evaluates every class and every tIoU
threshold with array operations instead of a per-detection Python loop:

1. ground truth of one subset is grouped by (class, video); classes are indexed in order of
   first appearance, as the official code does;
2. detections of each class are ranked with `np.argsort(scores)[::-1]` (the official call, so
   ties fall exactly where the official code puts them);
3. each detection claims, at every threshold at once, the first still-free ground truth of its
   (class, video) group in descending tIoU order (again the official `argsort()[::-1]` order,
   in which a NaN tIoU from a 0/0 union comes first and counts as a match);
4. interpolated AP (VOC 2011 style) per class and threshold, mAP per threshold, average mAP.

Average recall against the average number of proposals per video (AR@AN) follows the official
`Evaluation/eval_proposal.py`.

This module is a leaf: it imports numpy and the standard library only (never torch or
transformers), so `adatad-eval` starts in a fraction of a second.
"""

import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from .atomic_files import OutputPathError, check_output_path, write_text_atomically


logger = logging.getLogger(__name__)

DEFAULT_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
DEFAULT_SUBSET = "validation"
# How many offending names a message lists before it says "and N more".
_MAX_NAMES_IN_MESSAGE = 10
# Matching builds its tIoU tables for this many bytes of detections at a time (see `match_detections`);
# a table row costs about `_TIOU_TEMPORARIES` float64 values plus a few bools per threshold per instance.
_MATCHING_CHUNK_BYTES = 64 * 2**20
_TIOU_TEMPORARIES = 8
# More thresholds than this are finer than 0.001 apart on [0, 1]; the (detections, thresholds) tables of
# the matching would then grow without bound.
MAX_TIOU_THRESHOLDS = 1000


class EvaluationInputError(ValueError):
    """Ground truth or predictions that cannot be evaluated; the message names the file, key and fix."""


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclass
class GroundTruth:
    """Ground-truth instances of one subset, as flat arrays.

    Attributes:
        video_ids: ids of every video of the subset (also those without instances), file order.
        class_names: labels in order of first appearance; the class index of a label is its position.
        video_index: `(num_instances,)` index into `video_ids`.
        segments: `(num_instances, 2)` float64 (start, end) in seconds, values as given.
        labels: `(num_instances,)` class index.
        source: file name (or a description) used in messages.
        subset: the subset that was kept (None = every video).
        num_zero_length_or_inverted: instances with end <= start (kept, as the official code does).
        num_removed_duplicates: instances dropped by `remove_duplicate_instances`.
    """

    video_ids: list[Hashable]
    class_names: list[Hashable]
    video_index: np.ndarray
    segments: np.ndarray
    labels: np.ndarray
    source: str = "<ground truth>"
    subset: str | None = None
    num_zero_length_or_inverted: int = 0
    num_removed_duplicates: int = 0

    @property
    def num_instances(self) -> int:
        return int(self.segments.shape[0])


@dataclass
class Detections:
    """Detections (or proposals) as flat arrays, in the order they were read.

    Attributes:
        video_ids: the predicted video ids; `video_index` points into this list.
        video_index: `(num_detections,)` index into `video_ids`.
        segments: `(num_detections, 2)` float64 (start, end).
        labels: `(num_detections,)` class index into the ground truth's `class_names` (-1 for proposals).
        scores: `(num_detections,)` float64.
        source: file name (or a description) used in messages.
        num_unknown_label_ignored: detections dropped because their label has no ground truth.
        unknown_labels: those labels.
    """

    video_ids: list[Hashable]
    video_index: np.ndarray
    segments: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    source: str = "<predictions>"
    num_unknown_label_ignored: int = 0
    unknown_labels: Sequence[Hashable] = ()

    @property
    def num_detections(self) -> int:
        return int(self.scores.shape[0])


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _list_names(names: Sequence[Any]) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:_MAX_NAMES_IN_MESSAGE])
    if len(names) > _MAX_NAMES_IN_MESSAGE:
        shown += f" and {len(names) - _MAX_NAMES_IN_MESSAGE} more"
    return shown


class DuplicateJSONKeyError(ValueError):
    """A key repeated inside one JSON object (`key` holds it)."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


def object_without_duplicate_keys(pairs: list) -> dict:
    """`object_pairs_hook` for `json.load` that raises `DuplicateJSONKeyError` on a repeated key.

    `json.load` alone keeps the last of repeated keys, so a video id written twice would silently lose
    everything under its first copy. Used by the evaluation and by the annotation loaders (`adatad.data`).
    """
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        raise DuplicateJSONKeyError(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result


def _read_json(source: str | os.PathLike | Mapping | list, what: str):
    """Returns (parsed data, name for messages) for a path or an already parsed object."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as file:
                return json.load(file, object_pairs_hook=object_without_duplicate_keys), path
        except DuplicateJSONKeyError as error:
            raise EvaluationInputError(
                f"{what} file {path!r}: key {error.key!r} appears twice in one JSON object; JSON readers keep "
                "only the last one, so the first would be lost. Merge or rename the two entries"
            ) from None
        except FileNotFoundError:
            raise EvaluationInputError(f"{what} file {path!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise EvaluationInputError(f"{what} file {path!r} cannot be read: {error}") from None
        except json.JSONDecodeError as error:
            raise EvaluationInputError(
                f"{what} file {path!r} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
            ) from None
        except RecursionError:
            raise EvaluationInputError(
                f"{what} file {path!r} nests JSON arrays or objects too deeply to read; neither layout nests more "
                "than five levels"
            ) from None
    return source, f"<in-memory {what}>"


def parse_tiou_thresholds(text: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Parses tIoU thresholds.

    `"start:stop:step"` gives the official `np.linspace(start, stop, n)` values with
    `n = round((stop - start) / step) + 1`, so `"0.5:0.95:0.05"` contains `0.8999999999999999`
    exactly like the official default. `"0.3,0.5,0.7"` (or a single number) gives those values
    as written. A sequence of numbers is taken as is.

    Returns:
        `(num_thresholds,)` float64 array.
    """
    if isinstance(text, str):
        spec = text.strip()
        try:
            if ":" in spec:
                parts = spec.split(":")
                if len(parts) != 3:
                    raise ValueError("expected start:stop:step")
                start, stop, step = (float(part) for part in parts)
                if step <= 0 or stop < start:
                    raise ValueError("need step > 0 and stop >= start")
                intervals = (stop - start) / step
                if intervals >= MAX_TIOU_THRESHOLDS:
                    raise ValueError(f"it gives {intervals + 1:.0f} thresholds, more than {MAX_TIOU_THRESHOLDS}")
                num = int(round(intervals)) + 1
                if abs(intervals - round(intervals)) > 1e-6:
                    raise ValueError(f"(stop - start) / step = {intervals:g} is not a whole number")
                thresholds = np.linspace(start, stop, num)
            else:
                thresholds = np.array([float(part) for part in spec.split(",") if part.strip()], dtype=np.float64)
        except ValueError as error:
            raise EvaluationInputError(
                f"tIoU thresholds {text!r} cannot be parsed ({error}); use 'start:stop:step' such as "
                "'0.5:0.95:0.05' or a comma list such as '0.3,0.4,0.5'"
            ) from None
    else:
        thresholds = np.asarray(text, dtype=np.float64).reshape(-1)
    if thresholds.size > MAX_TIOU_THRESHOLDS:
        raise EvaluationInputError(
            f"{thresholds.size} tIoU thresholds given; at most {MAX_TIOU_THRESHOLDS} are allowed "
            "(0.001 apart on [0, 1])"
        )
    if thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
        raise EvaluationInputError(
            f"tIoU thresholds must be a non-empty list of finite numbers in [0, 1], got {text!r}"
        )
    outside = thresholds[(thresholds < 0) | (thresholds > 1)]
    if outside.size:
        raise EvaluationInputError(
            f"tIoU thresholds must lie in [0, 1] (a tIoU is a ratio of lengths), got {_list_names(outside.tolist())}"
        )
    values, counts = np.unique(thresholds, return_counts=True)
    if np.any(counts > 1):
        raise EvaluationInputError(
            f"tIoU thresholds must be distinct (each would count twice in the average mAP), repeated: "
            f"{_list_names(values[counts > 1].tolist())}"
        )
    return thresholds


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _float_pair(segment, where: str) -> tuple:
    try:
        if len(segment) != 2:
            raise ValueError
        return float(segment[0]), float(segment[1])
    except (TypeError, ValueError):
        raise EvaluationInputError(
            f"{where} must be a [start, end] pair of numbers, got {segment!r}"
        ) from None


def load_ground_truth(
    source: str | os.PathLike | Mapping | GroundTruth,
    subset: str | None = DEFAULT_SUBSET,
    blocked_videos: Sequence[Hashable] = (),
    remove_duplicate_instances: bool = False,
) -> GroundTruth:
    """Reads ground truth of one subset.

    Accepted layouts (a JSON path or the parsed object):
    - ActivityNet: `{"database": {video_id: {"subset", "annotations": [{"segment": [s, e], "label"}]}}}`
      (`duration`, `taxonomy` and `version` are optional; segments may be strings, as in THUMOS
      `thumos_gt.json`);
    - the same per-video mapping without the `database` wrapper;
    - Multi-THUMOS / Charades style entries with `"actions": [[class_id, start, end], ...]`.

    Args:
        source: path, parsed JSON or an already loaded `GroundTruth` (returned as is).
        subset: keep only videos whose `subset` equals this value (official rule);
            None keeps every video.
        blocked_videos: video ids to leave out (the official server-side block list).
        remove_duplicate_instances: drop instances with end <= start and same-label instances
            whose start and end are within 1e-3 s of an earlier kept one of the video, as the
            OpenTAD / ActionFormer evaluators do (the official evaluator keeps them).
    """
    if isinstance(source, GroundTruth):
        return source
    data, name = _read_json(source, "ground truth")
    if not isinstance(data, Mapping):
        raise EvaluationInputError(
            f"ground truth {name}: expected a JSON object with a 'database' key, got {type(data).__name__}"
        )
    if "database" in data:
        database, where_prefix = data["database"], "database"
        if not isinstance(database, Mapping):
            raise EvaluationInputError(f"ground truth {name}: 'database' must map video ids to entries")
    elif "results" in data:
        raise EvaluationInputError(
            f"ground truth {name} has a 'results' key: this looks like a prediction file; pass it as predictions"
        )
    else:
        database, where_prefix = data, ""

    blocked = set(blocked_videos)
    class_index: dict[Hashable, int] = {}
    video_ids: list[Hashable] = []
    video_index, starts, ends, labels = [], [], [], []
    subsets_seen = set()
    for video_id, entry in database.items():
        where = (
            f"ground truth {name}: {where_prefix}[{video_id!r}]"
            if where_prefix
            else f"ground truth {name}: [{video_id!r}]"
        )
        if not isinstance(entry, dict):
            raise EvaluationInputError(
                f"{where} must be an object with 'subset' and 'annotations', got {type(entry).__name__}"
            )
        if subset is not None:
            if "subset" not in entry:
                raise EvaluationInputError(
                    f"{where} has no 'subset' key; add one, or evaluate every video (subset=None / --all-subsets)"
                )
            if not isinstance(entry["subset"], str):
                raise EvaluationInputError(
                    f"{where}['subset'] must be a string such as 'training', 'validation' or 'test', got "
                    f"{entry['subset']!r}; a video with another value would be left out of every subset"
                )
            subsets_seen.add(entry["subset"])
            if entry["subset"] != subset:
                continue
        if video_id in blocked:
            continue
        position = len(video_ids)
        video_ids.append(video_id)
        if "annotations" in entry:
            annotations = entry["annotations"]
            if not isinstance(annotations, list):
                raise EvaluationInputError(f"{where}['annotations'] must be a list")
            try:
                for annotation in annotations:
                    segment, label = annotation["segment"], annotation["label"]
                    if len(segment) != 2 or isinstance(label, (list, dict)):
                        raise ValueError
                    starts.append(float(segment[0]))
                    ends.append(float(segment[1]))
                    labels.append(class_index.setdefault(label, len(class_index)))
                    video_index.append(position)
            except (KeyError, TypeError, ValueError):
                raise _locate_bad_annotation(annotations, where) from None
        elif "actions" in entry:
            for number, action in enumerate(entry["actions"]):
                if not isinstance(action, (list, tuple)) or len(action) != 3:
                    raise EvaluationInputError(
                        f"{where}['actions'][{number}] must be [class_id, start, end], got {action!r}"
                    )
                start, end = _float_pair(action[1:], f"{where}['actions'][{number}][1:]")
                video_index.append(position)
                starts.append(start)
                ends.append(end)
                labels.append(class_index.setdefault(action[0], len(class_index)))
        else:
            raise EvaluationInputError(f"{where} has neither 'annotations' nor 'actions'")

    if subset is not None and not video_ids:
        raise EvaluationInputError(
            f"ground truth {name} has no video in subset {subset!r} "
            f"(subsets present: {_list_names(sorted(map(str, subsets_seen)))}); "
            "pass the right --subset"
        )
    if not labels:
        raise EvaluationInputError(
            f"ground truth {name} has no annotated instance"
            + (f" in subset {subset!r}" if subset is not None else "")
            + "; mAP is undefined"
        )
    segments = np.column_stack([np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)])
    video_index = np.asarray(video_index, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    non_finite = np.flatnonzero(~np.isfinite(segments).all(axis=1))
    if len(non_finite):
        # The official tIoU of a NaN bound is NaN, which passes every threshold: any prediction of the
        # class would match it and the class would score 100% AP.
        videos = list(dict.fromkeys(video_ids[video_index[i]] for i in non_finite))
        raise EvaluationInputError(
            f"ground truth {name}: video {videos[0]!r} has a segment with a NaN or infinite bound "
            f"{segments[non_finite[0]].tolist()} ({len(non_finite)} such instance(s) in {len(videos)} video(s): "
            f"{_list_names(videos)}); fix or remove these instances, a NaN tIoU would count as a match"
        )
    class_names = list(class_index)
    num_removed = 0
    if remove_duplicate_instances:
        keep = _opentad_instance_filter(video_index, segments, labels)
        num_removed = int(np.count_nonzero(~keep))
        video_index, segments, labels = video_index[keep], segments[keep], labels[keep]
        if len(labels) == 0:
            raise EvaluationInputError(f"ground truth {name}: no instance is left after removing duplicates")
        # Classes are re-indexed by first appearance among the kept instances, as OpenTAD does.
        kept_classes, first_seen = np.unique(labels, return_index=True)
        kept_classes = kept_classes[np.argsort(first_seen)]
        new_index = np.full(len(class_names), -1, dtype=np.int64)
        new_index[kept_classes] = np.arange(len(kept_classes))
        labels = new_index[labels]
        class_names = [class_names[c] for c in kept_classes]
    return GroundTruth(
        video_ids=video_ids,
        class_names=class_names,
        video_index=video_index,
        segments=segments,
        labels=labels,
        source=name,
        subset=subset,
        num_zero_length_or_inverted=int(np.count_nonzero(segments[:, 1] <= segments[:, 0])),
        num_removed_duplicates=num_removed,
    )


def _opentad_instance_filter(
    video_index: np.ndarray, segments: np.ndarray, labels: np.ndarray, tolerance: float = 1e-3
):
    """Keep-mask of OpenTAD's `remove_duplicate_annotations`: per video, in file order, drop
    end <= start and same-label instances within `tolerance` (start and end) of a kept one."""
    keep = np.zeros(len(labels), dtype=bool)
    kept_in_video: dict[int, list[int]] = {}
    for i in range(len(labels)):
        start, end = segments[i]
        if end - start <= 0:
            continue
        kept = kept_in_video.setdefault(int(video_index[i]), [])
        if any(
            abs(start - segments[j, 0]) <= tolerance
            and abs(end - segments[j, 1]) <= tolerance
            and labels[j] == labels[i]
            for j in kept
        ):
            continue
        kept.append(i)
        keep[i] = True
    return keep


def _locate_bad_annotation(annotations: list, where: str) -> EvaluationInputError:
    """Names the first malformed ground-truth annotation (slow path, only after a failure)."""
    for number, annotation in enumerate(annotations):
        here = f"{where}['annotations'][{number}]"
        if not isinstance(annotation, dict) or "segment" not in annotation or "label" not in annotation:
            return EvaluationInputError(f"{here} must be an object with 'segment' and 'label', got {annotation!r}")
        try:
            _float_pair(annotation["segment"], f"{here}['segment']")
        except EvaluationInputError as error:
            return error
        if isinstance(annotation["label"], (list, dict)):
            return EvaluationInputError(f"{here}['label'] must be a string or an integer, got {annotation['label']!r}")
    return EvaluationInputError(f"{where}['annotations'] is malformed")


def _locate_bad_detection(detections, where: str, need_label: bool) -> EvaluationInputError | None:
    """Names the first malformed entry of one video's list (slow path, only after a failure)."""
    for number, detection in enumerate(detections):
        here = f"{where}[{number}]"
        if not isinstance(detection, Mapping):
            return EvaluationInputError(
                f"{here} must be an object with 'segment', 'label' and 'score', got {detection!r}"
            )
        for key in ("segment", "score") + (("label",) if need_label else ()):
            if key not in detection:
                return EvaluationInputError(f"{here} has no {key!r} key")
        try:
            _float_pair(detection["segment"], f"{here}['segment']")
        except EvaluationInputError as error:
            return error
        try:
            float(detection["score"])
        except (TypeError, ValueError):
            return EvaluationInputError(f"{here}['score'] must be a number, got {detection['score']!r}")
        if need_label:
            try:
                hash(detection["label"])
            except TypeError:
                return EvaluationInputError(
                    f"{here}['label'] must be a string or an integer, got {detection['label']!r}"
                )
    return None


def _columns_from_records(detections, where: str, need_label: bool):
    """One video's `[{"segment", "label", "score"}]` list -> (segments, labels, scores) lists."""
    if not isinstance(detections, list):
        raise EvaluationInputError(f"{where} must be a list of detections, got {type(detections).__name__}")
    try:
        segments = [detection["segment"] for detection in detections]
        scores = [detection["score"] for detection in detections]
        labels = [detection["label"] for detection in detections] if need_label else None
    except (KeyError, TypeError):
        raise (
            _locate_bad_detection(detections, where, need_label) or EvaluationInputError(f"{where} is malformed")
        ) from None
    return segments, labels, scores


def _columns_from_arrays(entry: Mapping, where: str, need_label: bool):
    """One video's `{"segments": (N, 2), "labels": (N,), "scores": (N,)}` -> lists (post-processing output)."""
    try:
        segments = np.asarray(entry["segments"], dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(entry["scores"], dtype=np.float64).reshape(-1)
        labels = np.asarray(entry["labels"]).reshape(-1).tolist() if need_label else None
    except KeyError as error:
        raise EvaluationInputError(
            f"{where} has no {error.args[0]!r} key (expected 'segments', 'labels', 'scores')"
        ) from None
    except (TypeError, ValueError) as error:
        raise EvaluationInputError(f"{where}: 'segments' must be (N, 2) and 'scores' (N,) numbers ({error})") from None
    if len(scores) != len(segments) or (need_label and len(labels) != len(segments)):
        raise EvaluationInputError(f"{where}: 'segments', 'labels' and 'scores' must have the same length")
    return segments.tolist(), labels, scores.tolist()


def load_predictions(
    source: str | os.PathLike | Mapping | list | Detections,
    ground_truth: GroundTruth | None = None,
    ignore_unknown_labels: bool = False,
    class_names: Sequence[Hashable] | None = None,
    blocked_videos: Sequence[Hashable] = (),
) -> Detections:
    """Reads detections (or, with `ground_truth=None`, label-free proposals).

    Accepted layouts (a JSON path or the parsed object):
    - ActivityNet submission: `{"results": {video_id: [{"segment": [s, e], "label", "score"}]}}`;
    - the same mapping without the `results` wrapper (in-memory output of post-processing);
    - per video `{"segments": (N, 2), "labels": (N,), "scores": (N,)}` arrays;
    - a flat list of `{"video_id", "segment", "label", "score"}`.

    Args:
        ground_truth: gives the class index; None reads proposals (labels not needed).
        ignore_unknown_labels: drop detections whose label has no ground truth in the subset
            (counted) instead of raising; the official code crashes with a `KeyError` there.
        class_names: maps integer labels (class ids) to ground-truth class names.
        blocked_videos: video ids to leave out, as the official code does.
    """
    if isinstance(source, Detections):
        return source
    data, name = _read_json(source, "predictions")
    need_label = ground_truth is not None
    if isinstance(data, list):
        grouped: dict[Hashable, list] = {}
        for number, detection in enumerate(data):
            if not isinstance(detection, Mapping) or "video_id" not in detection:
                raise EvaluationInputError(f"predictions {name}: [{number}] must be an object with a 'video_id' key")
            grouped.setdefault(detection["video_id"], []).append(detection)
        results, where_prefix = grouped, ""
    elif isinstance(data, Mapping):
        if "results" in data:
            results, where_prefix = data["results"], "results"
            if not isinstance(results, Mapping):
                raise EvaluationInputError(f"predictions {name}: 'results' must map video ids to lists of detections")
        elif "database" in data:
            raise EvaluationInputError(
                f"predictions {name} has a 'database' key: this looks like a ground-truth file; pass it as ground truth"
            )
        elif "version" in data or "external_data" in data:
            raise EvaluationInputError(
                f"predictions {name} has no 'results' key (keys: {_list_names(list(data))}); the submission layout is "
                '{"results": {video_id: [{"segment", "label", "score"}]}}'
            )
        else:
            results, where_prefix = data, ""
    else:
        raise EvaluationInputError(
            f"predictions {name}: expected a JSON object with a 'results' key, got {type(data).__name__}"
        )

    blocked = set(blocked_videos)
    video_ids: list[Hashable] = []
    counts, all_segments, all_labels, all_scores = [], [], [], []
    for video_id, detections in results.items():
        if video_id in blocked:
            continue
        where = f"predictions {name}: " + (f"{where_prefix}[{video_id!r}]" if where_prefix else f"[{video_id!r}]")
        if isinstance(detections, dict):
            segments, labels, scores = _columns_from_arrays(detections, where, need_label)
        else:
            segments, labels, scores = _columns_from_records(detections, where, need_label)
        video_ids.append(video_id)
        counts.append(len(segments))
        all_segments.extend(segments)
        all_scores.extend(scores)
        if need_label:
            all_labels.extend(labels)

    try:
        segments = np.array(all_segments, dtype=np.float64) if all_segments else np.empty((0, 2))
        scores = np.array(all_scores, dtype=np.float64).reshape(-1)
        if segments.ndim != 2 or segments.shape[1] != 2:
            raise ValueError("segments are not pairs")
        # numpy turns None into NaN silently; the official code would fail on it.
        for values, flat in ((segments, all_segments), (scores, all_scores)):
            for i in np.flatnonzero(np.isnan(values).any(axis=-1) if values.ndim == 2 else np.isnan(values)):
                if flat[i] is None or (isinstance(flat[i], (list, tuple)) and None in flat[i]):
                    raise ValueError("None value")
    except (TypeError, ValueError):
        # Bulk conversion failed: find the exact entry to name it.
        for video_id, detections in results.items():
            where = f"predictions {name}: " + (f"{where_prefix}[{video_id!r}]" if where_prefix else f"[{video_id!r}]")
            error = None if isinstance(detections, dict) else _locate_bad_detection(detections, where, need_label)
            if error is not None:
                raise error from None
        raise EvaluationInputError(
            f"predictions {name}: segments must be [start, end] pairs and scores numbers"
        ) from None
    video_index = np.repeat(np.arange(len(video_ids), dtype=np.int64), counts)
    _check_score_types(all_scores, video_index, video_ids, counts, name)
    _check_finite_detections(segments, scores, video_index, video_ids, counts, name)

    num_ignored, unknown = 0, []
    if need_label:
        labels, num_ignored, unknown = _map_labels(all_labels, ground_truth, class_names, name, ignore_unknown_labels)
        if num_ignored:
            keep = labels >= 0
            segments, scores, video_index, labels = segments[keep], scores[keep], video_index[keep], labels[keep]
    else:
        labels = np.full(scores.shape, -1, dtype=np.int64)
    return Detections(
        video_ids=video_ids,
        video_index=video_index,
        segments=segments,
        labels=labels,
        scores=scores,
        source=name,
        num_unknown_label_ignored=num_ignored,
        unknown_labels=unknown,
    )


def _check_score_types(scores: list, video_index, video_ids, counts, name: str) -> None:
    """Refuses scores written as text or as true/false: numpy would read "0.9" and true as numbers, so a
    file written by a broken exporter would be ranked as if its scores were real."""
    first = next((i for i, score in enumerate(scores) if isinstance(score, (str, bytes, bool, np.bool_))), None)
    if first is None:
        return
    video = int(video_index[first])
    position = first - int(np.sum(counts[:video]))
    raise EvaluationInputError(
        f"predictions {name}: video {video_ids[video]!r}, detection {position} has score {scores[first]!r}; "
        "scores must be JSON numbers, not strings or true/false"
    )


def _check_finite_detections(segments, scores, video_index, video_ids, counts, name: str) -> None:
    """Refuses NaN or infinite bounds and scores: the official code would rank a NaN score first and
    could count a NaN tIoU as a match, so such a file gives a meaningless mAP without failing."""
    bad = np.flatnonzero(~(np.isfinite(segments).all(axis=1) & np.isfinite(scores)))
    if not len(bad):
        return
    first = int(bad[0])
    video = int(video_index[first])
    position = first - int(np.sum(counts[:video]))
    videos = list(dict.fromkeys(video_ids[video_index[i]] for i in bad))
    raise EvaluationInputError(
        f"predictions {name}: video {video_ids[video]!r}, detection {position} has a NaN or infinite value "
        f"(segment {segments[first].tolist()}, score {scores[first]!r}); {len(bad)} such detection(s) in "
        f"{len(videos)} video(s): {_list_names(videos)}. Drop them or fix the model output (a NaN usually means "
        "the detector overflowed)"
    )


def _map_labels(raw_labels: list, ground_truth: GroundTruth, class_names, name: str, ignore_unknown: bool):
    """Predicted labels -> ground-truth class index (-1 = unknown), with the unknown-label policy."""
    class_index = {label: index for index, label in enumerate(ground_truth.class_names)}
    if class_names is not None:
        # Integer class ids (e.g. straight from post-processing) are translated to names first.
        names = list(class_names)
        for class_id, class_name in enumerate(names):
            if class_name in class_index and class_id not in class_index:
                class_index[class_id] = class_index[class_name]
    try:
        labels = np.array([class_index.get(label, -1) for label in raw_labels], dtype=np.int64)
    except TypeError:
        bad = next(label for label in raw_labels if not isinstance(label, Hashable))
        raise EvaluationInputError(f"predictions {name}: label {bad!r} must be a string or an integer") from None
    unknown_mask = labels < 0
    if not unknown_mask.any():
        return labels, 0, []
    unknown = list(dict.fromkeys(raw_labels[i] for i in np.flatnonzero(unknown_mask)))
    num_unknown = int(np.count_nonzero(unknown_mask))
    if not ignore_unknown:
        raise EvaluationInputError(
            f"predictions {name}: {num_unknown} detection(s) have a label with no ground truth in "
            f"{ground_truth.source}" + (f" (subset {ground_truth.subset!r})" if ground_truth.subset is not None else "")
            + f": {_list_names(unknown)}. Fix the label names, or pass --ignore-unknown-labels "
            "(ignore_unknown_labels=True) to drop those detections"
        )
    return labels, num_unknown, unknown


# ---------------------------------------------------------------------------------------------
# Matching and average precision
# ---------------------------------------------------------------------------------------------


def segment_tiou(detection_segments: np.ndarray, gt_segments: np.ndarray) -> np.ndarray:
    """Temporal IoU with the official formula and float evaluation order.

    Args:
        detection_segments: `(..., 2)`.
        gt_segments: `(..., 2)`, broadcastable against `detection_segments`.

    Returns:
        tIoU of the broadcast shape without the last axis. A zero union (zero-length vs
        zero-length, or an exact mirror of an inverted segment) gives NaN, as in the official
        code, where NaN then counts as a match.
    """
    inter_start = np.maximum(detection_segments[..., 0], gt_segments[..., 0])
    inter_end = np.minimum(detection_segments[..., 1], gt_segments[..., 1])
    intersection = (inter_end - inter_start).clip(0)
    union = (
        (gt_segments[..., 1] - gt_segments[..., 0])
        + (detection_segments[..., 1] - detection_segments[..., 0])
        - intersection
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def rank_detections_per_class(labels: np.ndarray, scores: np.ndarray, num_classes: int):
    """Official ranking: per class, detections in reading order sorted with `argsort()[::-1]`.

    Returns:
        ranked: `(num_detections,)` detection indices, class 0 first, each class by decreasing score.
        class_offsets: `(num_classes + 1,)` where class c occupies `ranked[offsets[c]:offsets[c + 1]]`.
    """
    by_class = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=num_classes)
    class_offsets = np.concatenate([[0], np.cumsum(counts)])
    ranked = np.empty_like(by_class)
    for class_id in range(num_classes):
        start, stop = class_offsets[class_id], class_offsets[class_id + 1]
        members = by_class[start:stop]
        # The exact call of the official code on the exact array (reading order): same tie order.
        ranked[start:stop] = members[np.ascontiguousarray(scores[members]).argsort()[::-1]]
    return ranked, class_offsets


def match_detections(
    ground_truth: GroundTruth, detections: Detections, tiou_thresholds: np.ndarray, ranked: np.ndarray
) -> np.ndarray:
    """Greedy official matching for all classes and thresholds at once.

    Walking detections in `ranked` order, each detection takes the first free ground truth of
    its (class, video) in descending-tIoU order (`argsort()[::-1]`, NaN first) whose tIoU is
    >= the threshold or NaN; a ground truth is taken at most once per threshold.

    Beyond O(num_detections) index arrays, memory is bounded: the tIoU tables are built for about
    `_MATCHING_CHUNK_BYTES` of detections at a time, also when one (class, video) group holds
    millions of detections.

    Returns:
        `(num_detections, num_thresholds)` bool, True = true positive (indexed like `detections`).
    """
    num_thresholds = len(tiou_thresholds)
    true_positive = np.zeros((detections.num_detections, num_thresholds), dtype=bool)
    if detections.num_detections == 0:
        return true_positive

    # Ground-truth groups: instances sorted by (class, video), file order kept inside a group.
    num_videos = len(ground_truth.video_ids)
    gt_key = ground_truth.labels * num_videos + ground_truth.video_index
    gt_order = np.argsort(gt_key, kind="stable")
    group_keys, group_starts, group_sizes = np.unique(gt_key[gt_order], return_index=True, return_counts=True)

    # Detections -> group (only videos of the ground truth subset can have one).
    position_of_video = {video_id: position for position, video_id in enumerate(ground_truth.video_ids)}
    video_to_gt = np.array([position_of_video.get(video_id, -1) for video_id in detections.video_ids], dtype=np.int64)
    det_video = video_to_gt[detections.video_index] if len(video_to_gt) else np.empty(0, np.int64)
    det_key = detections.labels * num_videos + det_video
    group = np.searchsorted(group_keys, det_key).clip(max=len(group_keys) - 1)
    has_group = (det_video >= 0) & (group_keys[group] == det_key)

    # Grouped detections in ranked order, then stably by group: rank inside the group.
    ranked_grouped = ranked[has_group[ranked]]
    ranked_grouped = ranked_grouped[np.argsort(group[ranked_grouped], kind="stable")]
    grouped_group = group[ranked_grouped]
    first_in_group = np.searchsorted(grouped_group, grouped_group, side="left")
    rank_in_group = np.arange(len(ranked_grouped)) - first_in_group
    sizes = group_sizes[grouped_group]

    # Bucket by padded width (power of two of the group size) to keep arrays dense.
    widths = 1 << np.ceil(np.log2(sizes)).astype(np.int64)
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    for width in np.unique(widths):
        in_bucket = widths == width
        dets = ranked_grouped[in_bucket]
        det_group = grouped_group[in_bucket]
        det_rank = rank_in_group[in_bucket]

        # Groups by decreasing number of detections, rows ordered by (rank, group): step k is one
        # contiguous block holding the k-th detection of the first `active` groups.
        bucket_groups, local_group = np.unique(det_group, return_inverse=True)
        group_counts = np.bincount(local_group)
        by_count = np.argsort(-group_counts, kind="stable")
        local_group = np.argsort(by_count)[local_group]
        counts_desc = group_counts[by_count]
        step_order = np.lexsort((local_group, det_rank))
        dets = dets[step_order]
        det_group = det_group[step_order]
        num_steps = int(counts_desc[0])
        # active[k] = groups with more than k detections; block_starts[k] = first row of step k.
        active_per_step = np.searchsorted(-counts_desc, -np.arange(num_steps), side="left")
        block_starts = np.concatenate([[0], np.cumsum(active_per_step)])

        # The tIoU tables of a bucket are (rows, width) and (rows, thresholds, width): built for a
        # chunk of consecutive steps at a time, so memory stays bounded however many detections
        # share one (class, video) group.
        chunk_rows = max(1, _MATCHING_CHUNK_BYTES // (int(width) * (8 * _TIOU_TEMPORARIES + 3 * num_thresholds)))
        taken = np.zeros((len(bucket_groups), num_thresholds, width), dtype=bool)
        group_range, threshold_range = np.arange(len(bucket_groups)), np.arange(num_thresholds)
        first_step = 0
        while first_step < num_steps:
            last_step = max(
                first_step + 1,
                int(np.searchsorted(block_starts, block_starts[first_step] + chunk_rows, side="right")) - 1,
            )
            chunk = slice(int(block_starts[first_step]), int(block_starts[last_step]))
            eligible, sorted_columns = _eligible_instances(
                ground_truth, detections, dets[chunk], det_group[chunk], int(width), thresholds,
                gt_order, group_starts, group_sizes,
            )
            for step in range(first_step, last_step):
                active = int(active_per_step[step])
                block = slice(int(block_starts[step]) - chunk.start, int(block_starts[step + 1]) - chunk.start)
                if width == 1:
                    # One instance per group (most ActivityNet videos): no order to follow.
                    hit = eligible[block, :, 0] & ~taken[:active, :, 0]
                    taken[:active, :, 0] |= hit
                else:
                    # Plain fancy indexing (not take_along_axis): a crowded group runs this once per detection.
                    columns = sorted_columns[block]
                    group_index = group_range[:active, None]
                    taken_sorted = taken[group_index[:, :, None], threshold_range[None, :, None], columns[:, None, :]]
                    free = eligible[block] & ~taken_sorted
                    choice = free.argmax(axis=2)  # (active, num_thresholds): first free eligible instance
                    hit = free[group_index, threshold_range[None, :], choice]
                    group_rows, threshold_cols = np.nonzero(hit)
                    chosen_columns = columns[group_index, choice]
                    taken[group_rows, threshold_cols, chosen_columns[group_rows, threshold_cols]] = True
                true_positive[dets[chunk][block]] = hit
            first_step = last_step
    return true_positive


def _eligible_instances(
    ground_truth: GroundTruth,
    detections: Detections,
    dets: np.ndarray,
    det_group: np.ndarray,
    width: int,
    thresholds: np.ndarray,
    gt_order: np.ndarray,
    group_starts: np.ndarray,
    group_sizes: np.ndarray,
):
    """For detections `dets` of groups `det_group` (all of padded size `width`): which instances each
    detection may take at each threshold, columns in the official descending-tIoU order.

    Returns:
        eligible: `(num_dets, num_thresholds, width)` bool, tIoU >= threshold or NaN (a NaN tIoU passes
            `tiou < threshold` in the official loop); padding columns are False.
        sorted_columns: `(num_dets, width)` position inside the group of each column.
    """
    num_dets = len(dets)
    sorted_tiou = np.full((num_dets, width), -np.inf)
    sorted_columns = np.zeros((num_dets, width), dtype=np.int64)
    det_sizes = group_sizes[det_group]
    for size in np.unique(det_sizes):
        rows = np.flatnonzero(det_sizes == size)
        gt_rows = gt_order[group_starts[det_group[rows]][:, None] + np.arange(size)]  # (rows, size)
        tiou = segment_tiou(detections.segments[dets[rows]][:, None, :], ground_truth.segments[gt_rows])
        # Same call as the official code on each row of the same length: same tie order.
        preference = tiou.argsort(axis=1)[:, ::-1]
        sorted_tiou[rows, :size] = np.take_along_axis(tiou, preference, axis=1)
        sorted_columns[rows, :size] = preference
    eligible = (sorted_tiou[:, None, :] >= thresholds[None, :, None]) | np.isnan(sorted_tiou)[:, None, :]
    return eligible, sorted_columns


def interpolated_average_precision(true_positive: np.ndarray, num_positives: int) -> np.ndarray:
    """VOC 2011 interpolated AP of ranked hits, one row per threshold, as the official code.

    Args:
        true_positive: `(num_thresholds, num_ranked)` bool, detections by decreasing score.
        num_positives: ground-truth instances of the class.

    Returns:
        `(num_thresholds,)` AP. Evaluated with the same float operations (and the same
        summation over the same compacted array) as the official code, so values are
        bit-identical.
    """
    # One threshold at a time: the float temporaries are then (num_ranked,), not (num_thresholds, num_ranked).
    return np.array([_interpolated_average_precision_row(row, num_positives) for row in true_positive])


def _interpolated_average_precision_row(true_positive: np.ndarray, num_positives: int) -> float:
    hits = true_positive.astype(np.float64)
    tp_cumsum = np.cumsum(hits)
    fp_cumsum = np.cumsum(1.0 - hits)
    recall = tp_cumsum / float(num_positives)
    precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    padded_precision = np.concatenate([[0.0], precision, [0.0]])
    padded_recall = np.concatenate([[0.0], recall, [1.0]])
    # Precision envelope: maximum of everything to the right.
    envelope = np.maximum.accumulate(padded_precision[::-1])[::-1]
    recall_changes = padded_recall[1:] != padded_recall[:-1]
    areas = (padded_recall[1:] - padded_recall[:-1]) * envelope[1:]
    return np.sum(areas[recall_changes])


def compute_detection_ap(
    ground_truth: GroundTruth, detections: Detections, tiou_thresholds: np.ndarray
) -> np.ndarray:
    """Per-class AP at every threshold.

    Returns:
        `(num_thresholds, num_classes)` AP, classes in ground-truth order (as the official `ap`).
    """
    num_classes = len(ground_truth.class_names)
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    ranked, class_offsets = rank_detections_per_class(detections.labels, detections.scores, num_classes)
    true_positive = match_detections(ground_truth, detections, thresholds, ranked)
    ranked_hits = true_positive[ranked].T  # (num_thresholds, num_detections) in ranked order
    num_positives = np.bincount(ground_truth.labels, minlength=num_classes)
    average_precision = np.zeros((len(thresholds), num_classes))
    for class_id in range(num_classes):
        start, stop = class_offsets[class_id], class_offsets[class_id + 1]
        if stop > start:
            average_precision[:, class_id] = interpolated_average_precision(
                ranked_hits[:, start:stop], num_positives[class_id]
            )
    return average_precision


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _input_warnings(ground_truth: GroundTruth, detections: Detections, label_free: bool = False) -> list[str]:
    """Counted warnings about inputs the official code accepts silently."""
    messages = []
    if ground_truth.num_removed_duplicates:
        messages.append(
            f"{ground_truth.num_removed_duplicates} ground-truth instance(s) with end <= start or a same-label "
            "duplicate within 1e-3 s were removed (remove_duplicate_instances, as OpenTAD)"
        )
    if ground_truth.num_zero_length_or_inverted:
        messages.append(
            f"{ground_truth.num_zero_length_or_inverted} ground-truth instance(s) have end <= start; "
            "kept as the official code does"
        )
    segments = detections.segments
    bad_segments = int(np.count_nonzero(~(segments[:, 1] > segments[:, 0])))
    if bad_segments:
        messages.append(
            f"{bad_segments} prediction(s) in {detections.source} are zero-length or inverted (end <= start); "
            "evaluated as the official code does (a 0/0 tIoU with such a ground truth counts as a match)"
        )
    gt_videos = set(ground_truth.video_ids)
    outside = [video_id for video_id in detections.video_ids if video_id not in gt_videos]
    if outside:
        num_outside = int(
            np.isin(detections.video_index, [i for i, v in enumerate(detections.video_ids) if v not in gt_videos]).sum()
        )
        subset = f" subset {ground_truth.subset!r} of" if ground_truth.subset is not None else ""
        consequence = "ignored" if label_free else "false positives"
        message = (
            f"{num_outside} prediction(s) on {len(outside)} video(s) not in the{subset} ground truth "
            f"count as {consequence} "
            f"(as in the official code): {_list_names(outside)}"
        )
        if len(outside) == len(detections.video_ids):
            message += "; no predicted video id matches the ground truth: check the id format (e.g. a 'v_' prefix)"
        messages.append(message)
    if detections.num_unknown_label_ignored:
        messages.append(
            f"{detections.num_unknown_label_ignored} prediction(s) in {detections.source} with a label that has no "
            f"ground truth were ignored: {_list_names(list(detections.unknown_labels))}"
        )
    return messages


def evaluate_detection(
    ground_truth: str | os.PathLike | Mapping | GroundTruth,
    predictions: str | os.PathLike | Mapping | list | Detections,
    tiou_thresholds: str | Sequence[float] | np.ndarray = DEFAULT_TIOU_THRESHOLDS,
    subset: str | None = DEFAULT_SUBSET,
    ignore_unknown_labels: bool = False,
    class_names: Sequence[Hashable] | None = None,
    blocked_videos: Sequence[Hashable] = (),
    remove_duplicate_instances: bool = False,
) -> dict[str, Any]:
    """ActivityNet detection mAP, identical to the official evaluator.

    Args:
        ground_truth: ground truth path / parsed JSON / `GroundTruth` (see `load_ground_truth`).
        predictions: predictions path / parsed JSON / in-memory per-video results / `Detections`
            (see `load_predictions`).
        tiou_thresholds: thresholds, or a string `"0.5:0.95:0.05"` / `"0.3,0.5,0.7"`.
        subset: ground-truth subset to evaluate (official default "validation"); None = all videos.
        ignore_unknown_labels: drop (and count) detections whose label has no ground truth
            instead of raising `EvaluationInputError`.
        class_names: class id -> name, for integer predicted labels.
        blocked_videos: video ids left out of ground truth and predictions.
        remove_duplicate_instances: OpenTAD's ground-truth clean-up (see `load_ground_truth`);
            with `ignore_unknown_labels=True` this reproduces OpenTAD's `mAP` evaluator.

    Returns:
        dict with `tiou_thresholds` (list), `mAP_per_tiou` ({threshold: mAP}, threshold order),
        `average_mAP`, `ap_per_class` ({label: [AP per threshold]}, ground-truth class order),
        `num_classes`, `num_ground_truth_videos`, `num_ground_truth_instances`,
        `num_predictions`, `num_predictions_ignored`, and `warnings` (list of messages, also
        logged).
    """
    thresholds = parse_tiou_thresholds(tiou_thresholds)
    gt = load_ground_truth(
        ground_truth,
        subset=subset,
        blocked_videos=blocked_videos,
        remove_duplicate_instances=remove_duplicate_instances,
    )
    detections = load_predictions(
        predictions,
        gt,
        ignore_unknown_labels=ignore_unknown_labels,
        class_names=class_names,
        blocked_videos=blocked_videos,
    )
    messages = _input_warnings(gt, detections)

    average_precision = compute_detection_ap(gt, detections, thresholds)
    classes_without_predictions = [
        gt.class_names[c] for c in np.flatnonzero(np.bincount(detections.labels, minlength=len(gt.class_names)) == 0)
    ]
    if classes_without_predictions:
        messages.append(
            f"{len(classes_without_predictions)} ground-truth class(es) have no prediction and get AP 0 at every "
            f"threshold (as in the official code): {_list_names(classes_without_predictions)}"
        )
    for message in messages:
        logger.warning(message)

    mean_ap = average_precision.mean(axis=1)
    return {
        "tiou_thresholds": thresholds.tolist(),
        "mAP_per_tiou": dict(zip(thresholds.tolist(), mean_ap.tolist())),
        "average_mAP": float(mean_ap.mean()),
        "ap_per_class": {label: average_precision[:, c].tolist() for c, label in enumerate(gt.class_names)},
        "num_classes": len(gt.class_names),
        "num_ground_truth_videos": len(gt.video_ids),
        "num_ground_truth_instances": gt.num_instances,
        "num_predictions": detections.num_detections,
        "num_predictions_ignored": detections.num_unknown_label_ignored,
        "warnings": messages,
    }


def evaluate_proposals(
    ground_truth: str | os.PathLike | Mapping | GroundTruth,
    proposals: str | os.PathLike | Mapping | list | Detections,
    tiou_thresholds: str | Sequence[float] | np.ndarray = DEFAULT_TIOU_THRESHOLDS,
    max_avg_nr_proposals: float | None = None,
    subset: str | None = DEFAULT_SUBSET,
    blocked_videos: Sequence[Hashable] = (),
) -> dict[str, Any]:
    """Average recall vs average number of proposals per video (AR@AN), as the official
    `Evaluation/eval_proposal.py` (`average_recall_vs_avg_nr_proposals`).

    Labels are ignored. Per video, proposals are ranked with `argsort()[::-1]` on their scores
    and cut to `int(n * ratio)`; recall at each of 100 proposal budgets is the fraction of
    ground-truth instances with at least one proposal of tIoU >= threshold among the first ones.

    Returns:
        dict with `tiou_thresholds`, `average_number_of_proposals` (100 AN values),
        `average_recall` (AR at each AN), `recall_per_tiou` ({threshold: [recall at each AN]}),
        `AR@AN` ({AN: AR} for AN in 1, 5, 10, 50, 100 when on the grid), `auc` (area under the
        AR-AN curve in percent of the largest AN, as the official script prints it),
        counts and `warnings`.
    """
    thresholds = parse_tiou_thresholds(tiou_thresholds)
    if max_avg_nr_proposals is not None and not (np.isfinite(max_avg_nr_proposals) and max_avg_nr_proposals > 0):
        raise EvaluationInputError(
            f"the maximum average number of proposals per video must be a positive finite number (or unset for "
            f"all proposals), got {max_avg_nr_proposals!r}"
        )
    gt = load_ground_truth(ground_truth, subset=subset, blocked_videos=blocked_videos)
    detections = load_predictions(proposals, None, blocked_videos=blocked_videos)
    messages = _input_warnings(gt, detections, label_free=True)
    for message in messages:
        logger.warning(message)

    # Official video list: videos with at least one instance, in order of first appearance.
    gt_videos_with_instances, first_seen = np.unique(gt.video_index, return_index=True)
    gt_videos_with_instances = gt_videos_with_instances[np.argsort(first_seen)]
    num_videos = len(gt_videos_with_instances)
    num_proposals_total = detections.num_detections
    if num_proposals_total == 0:
        raise EvaluationInputError(f"proposals {detections.source} contain no proposal; AR@AN is undefined")
    if max_avg_nr_proposals is None:
        max_avg_nr_proposals = float(num_proposals_total) / num_videos
    elif max_avg_nr_proposals > num_proposals_total:
        # An average above the file's total count of proposals is no average of this file; values this large
        # also overflow the official proportion (max * videos / proposals) to infinity.
        raise EvaluationInputError(
            f"the maximum average number of proposals per video must be at most the number of proposals in "
            f"{detections.source} ({num_proposals_total}), got {max_avg_nr_proposals!r}"
        )
    ratio = max_avg_nr_proposals * float(num_videos) / num_proposals_total

    position_of_video = {gt.video_ids[v]: row for row, v in enumerate(gt_videos_with_instances)}
    proposal_row = np.array([position_of_video.get(v, -1) for v in detections.video_ids], dtype=np.int64)
    proposal_row = proposal_row[detections.video_index] if len(proposal_row) else np.empty(0, np.int64)

    gt_row_of_video = np.full(len(gt.video_ids), -1, dtype=np.int64)
    gt_row_of_video[gt_videos_with_instances] = np.arange(num_videos)
    instance_row = gt_row_of_video[gt.video_index]

    # Per video: rank proposals (official call), keep the first int(n * ratio).
    kept_counts = np.zeros(num_videos, dtype=np.int64)
    has_proposals = np.zeros(num_videos, dtype=bool)
    first_hit = np.full((gt.num_instances, len(thresholds)), np.iinfo(np.int64).max, dtype=np.int64)
    by_video = np.argsort(proposal_row, kind="stable")
    video_starts = np.searchsorted(proposal_row[by_video], np.arange(num_videos + 1), side="left")
    instances_by_video = np.argsort(instance_row, kind="stable")
    instance_starts = np.searchsorted(instance_row[instances_by_video], np.arange(num_videos + 1), side="left")
    for row in range(num_videos):
        members = by_video[video_starts[row]:video_starts[row + 1]]
        if len(members) == 0:
            continue
        has_proposals[row] = True
        members = members[np.ascontiguousarray(detections.scores[members]).argsort()[::-1]]
        kept = min(int(len(members) * ratio), len(members))
        kept_counts[row] = kept
        instances = instances_by_video[instance_starts[row]:instance_starts[row + 1]]
        if kept == 0:
            continue
        # (instances, thresholds): index of the first kept proposal reaching the threshold, found chunk by
        # chunk of proposals so that the (instances, thresholds, proposals) table stays bounded.
        first = np.full((len(instances), len(thresholds)), np.iinfo(np.int64).max, dtype=np.int64)
        chunk = max(1, _MATCHING_CHUNK_BYTES // ((8 * _TIOU_TEMPORARIES + len(thresholds)) * max(1, len(instances))))
        for chunk_start in range(0, kept, chunk):
            chunk_members = members[chunk_start:min(chunk_start + chunk, kept)]
            tiou = segment_tiou(detections.segments[chunk_members][None, :, :], gt.segments[instances][:, None, :])
            hits = tiou[:, None, :] >= thresholds[None, :, None]
            new_hits = hits.any(axis=2) & (first == np.iinfo(np.int64).max)
            first[new_hits] = hits.argmax(axis=2)[new_hits] + chunk_start
        first_hit[instances] = first
    total_kept = int(kept_counts.sum())
    if total_kept == 0:
        raise EvaluationInputError(
            f"proposals {detections.source}: no proposal falls on a ground-truth video after the per-video cut; "
            "AR@AN is undefined"
        )

    fractions = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(num_videos) / total_kept)
    # Videos without any proposal behave like one proposal of tIoU 0 in the official code.
    columns = np.where(has_proposals, kept_counts, 1)
    budget = np.minimum((columns[:, None] * fractions[None, :]).astype(np.int64), columns[:, None])  # (videos, 100)
    if np.any(thresholds <= 0):
        no_proposals = ~has_proposals[instance_row]
        first_hit[no_proposals[:, None] & (thresholds[None, :] <= 0)[None, :]] = 0
    # (instances, thresholds, 100) -> recall per threshold and budget.
    matched = first_hit[:, :, None] < budget[instance_row][:, None, :]
    recall = matched.sum(axis=0) / float(gt.num_instances)
    average_recall = recall.mean(axis=0)
    proposals_per_video = fractions * (float(total_kept) / num_videos)
    area = float(
        np.sum((proposals_per_video[1:] - proposals_per_video[:-1]) * (average_recall[1:] + average_recall[:-1]) / 2.0)
    )
    ar_at = {}
    for budget_value in (1, 5, 10, 50, 100):
        close = np.flatnonzero(np.isclose(proposals_per_video, budget_value))
        if len(close):
            ar_at[budget_value] = float(average_recall[close[0]])
    return {
        "tiou_thresholds": thresholds.tolist(),
        "average_number_of_proposals": proposals_per_video.tolist(),
        "average_recall": average_recall.tolist(),
        "recall_per_tiou": dict(zip(thresholds.tolist(), recall.tolist())),
        "AR@AN": ar_at,
        "auc": 100.0 * area / float(proposals_per_video[-1]),
        "num_ground_truth_videos": num_videos,
        "num_ground_truth_instances": gt.num_instances,
        "num_proposals": num_proposals_total,
        "warnings": messages,
    }


def metric_path() -> str:
    """Path of the `evaluate` metric module: `evaluate.load(adatad.evaluation.metric_path())`."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "temporal_detection_map")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _format_table(result: dict[str, Any], per_class: bool) -> str:
    lines = []
    if per_class:
        width = max(len(str(label)) for label in result["ap_per_class"])
        header = " ".join(f"{t:>6.3g}" for t in result["tiou_thresholds"])
        lines.append(f"{'class':<{width}} {header}")
        for label, values in result["ap_per_class"].items():
            lines.append(f"{str(label):<{width}} " + " ".join(f"{100 * v:6.2f}" for v in values))
        lines.append("")
    lines.append("tIoU     mAP (%)")
    for threshold, value in result["mAP_per_tiou"].items():
        lines.append(f"{threshold:<8.3g} {100 * value:7.2f}")
    lines.append(f"{'average':<8} {100 * result['average_mAP']:7.2f}")
    lines.append(
        f"({result['num_classes']} classes, {result['num_ground_truth_instances']} ground-truth instances in "
        f"{result['num_ground_truth_videos']} videos, {result['num_predictions']} predictions)"
    )
    return "\n".join(lines)


def _format_proposal_table(result: dict[str, Any]) -> str:
    lines = ["AN       AR (%)"]
    for budget, value in result["AR@AN"].items():
        lines.append(f"{budget:<8} {100 * value:7.2f}")
    lines.append(f"AUC      {result['auc']:7.2f}")
    return "\n".join(lines)


def _read_video_list(path: str) -> list[str]:
    data, name = _read_json(path, "blocked videos") if path.endswith(".json") else (None, path)
    if data is not None:
        if not isinstance(data, list):
            raise EvaluationInputError(f"blocked videos {name} must be a JSON list of video ids")
        return data
    try:
        with open(path, encoding="utf-8") as file:
            return [line.strip() for line in file if line.strip()]
    except OSError as error:
        raise EvaluationInputError(f"blocked videos file {path!r} cannot be read: {error}") from None


def _json_ready(value):
    """Dict keys as JSON writes them (floats as their shortest repr), recursively."""
    if isinstance(value, dict):
        return {(repr(k) if isinstance(k, float) else str(k)): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def evaluate_topk_recall(
    ground_truth: str | os.PathLike | Mapping | GroundTruth,
    predictions: str | os.PathLike | Mapping | list | Detections,
    tiou_thresholds: str | Sequence[float] | np.ndarray = (0.1, 0.2, 0.3, 0.4, 0.5),
    top_k: Sequence[int] = (1, 5),
    subset: str | None = DEFAULT_SUBSET,
    blocked_videos: Sequence[Hashable] = (),
) -> dict[str, Any]:
    """Ego4D-MQ's top-k× recall ("R@1x", "R@5x"), as OpenTAD's `mAP` evaluator computes it with `top_k`.

    For each ground-truth class and each video with `n` instances of it, the `k * n` highest-scoring detections of
    that class in that video are kept; an instance is recalled at a threshold when any kept detection overlaps it
    with tIoU >= threshold (no one-to-one matching). A class's recall is recalled instances / instances; the result
    is the mean over the ground-truth classes. The ground truth is cleaned as OpenTAD's evaluator cleans it
    (zero-length and same-label duplicate instances removed) and detections whose label the ground truth lacks are
    ignored. tIoU uses OpenTAD's formula (union clipped at 1e-8).

    Args:
        ground_truth, predictions, subset, blocked_videos: as in `evaluate_detection`.
        tiou_thresholds: thresholds (Ego4D-MQ: 0.1 to 0.5).
        top_k: the k of each recall (Ego4D-MQ: 1 and 5).

    Returns:
        dict with `recall_per_tiou` ({threshold: {k: recall}}) and `average_recall` ({k: mean over thresholds}).
    """
    thresholds = parse_tiou_thresholds(tiou_thresholds)
    top_k = [int(k) for k in top_k]
    if not top_k or min(top_k) < 1:
        raise EvaluationInputError(f"top_k must be positive integers, got {top_k}")
    gt = load_ground_truth(ground_truth, subset=subset, blocked_videos=blocked_videos, remove_duplicate_instances=True)
    detections = load_predictions(predictions, gt, ignore_unknown_labels=True, blocked_videos=blocked_videos)
    position_of_video = {video_id: position for position, video_id in enumerate(gt.video_ids)}
    video_positions = np.array([position_of_video.get(v, -1) for v in detections.video_ids], dtype=np.int64)
    detection_video = video_positions[detections.video_index]
    num_classes = len(gt.class_names)
    recalled = np.zeros((len(thresholds), len(top_k), num_classes))
    groups = np.unique(np.stack([gt.labels, gt.video_index], axis=1), axis=0)
    for class_id, video in groups:
        gt_segments = gt.segments[(gt.labels == class_id) & (gt.video_index == video)]
        members = np.flatnonzero((detections.labels == class_id) & (detection_video == video))
        if len(members) == 0:
            continue
        # OpenTAD's call on the detections in reading order, so that ties fall where they fall there.
        ranked = members[detections.scores[members].argsort()[::-1]][: max(top_k) * len(gt_segments)]
        kept = detections.segments[ranked][:, None, :]
        intersection = (
            np.minimum(kept[..., 1], gt_segments[:, 1]) - np.maximum(kept[..., 0], gt_segments[:, 0])
        ).clip(0)
        union = (gt_segments[:, 1] - gt_segments[:, 0]) + (kept[..., 1] - kept[..., 0]) - intersection
        tiou = intersection.astype(float) / union.clip(1e-8)  # (kept detections, instances)
        for k_index, k in enumerate(top_k):
            hits = tiou[: k * len(gt_segments)][None] >= thresholds[:, None, None]
            recalled[:, k_index, class_id] += hits.any(axis=1).sum(axis=1)
    recall = (recalled / np.bincount(gt.labels, minlength=num_classes)).mean(axis=2)
    return {
        "recall_per_tiou": {
            threshold: dict(zip(top_k, values)) for threshold, values in zip(thresholds.tolist(), recall.tolist())
        },
        "average_recall": dict(zip(top_k, recall.mean(axis=0).tolist())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`adatad-eval`: ActivityNet-protocol mAP (or AR@AN) of a prediction file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="adatad-eval",
        description="ActivityNet-protocol temporal action detection mAP (identical to the official evaluator), "
        "or AR@AN for proposals.",
        epilog="exit status: 0 evaluated; 1 bad input (a file, a value in it, a flag value out of range, or an "
        "--output that cannot be written or is one of the inputs), with one 'adatad-eval: error:' line; "
        "2 command-line usage error (unknown or missing flag).",
    )
    parser.add_argument("--ground-truth", required=True, help="ground-truth JSON (ActivityNet 'database' layout)")
    parser.add_argument(
        "--predictions", required=True, help="prediction JSON (ActivityNet submission layout, 'results')"
    )
    parser.add_argument(
        "--tiou-thresholds",
        default="0.5:0.95:0.05",
        help="'start:stop:step' (official np.linspace values) or a comma list (default: 0.5:0.95:0.05)",
    )
    subset_group = parser.add_mutually_exclusive_group()
    subset_group.add_argument(
        "--subset", default=DEFAULT_SUBSET, help="ground-truth subset to evaluate (default: validation)"
    )
    subset_group.add_argument("--all-subsets", action="store_true", help="evaluate every ground-truth video")
    parser.add_argument(
        "--output", help="write the metrics as JSON to this file; '-' writes them to standard output (the table then "
        "goes to standard error)"
    )
    parser.add_argument(
        "--ignore-unknown-labels",
        action="store_true",
        help="drop predictions whose label has no ground truth in the subset (counted warning) instead of failing",
    )
    parser.add_argument("--blocked-videos", help="JSON list or text file (one id per line) of video ids to leave out")
    parser.add_argument(
        "--remove-duplicate-instances",
        action="store_true",
        help="drop ground truth with end <= start and same-label duplicates within 1e-3 s, as OpenTAD's evaluator "
        "(with --ignore-unknown-labels this reproduces OpenTAD's numbers; the official evaluator keeps them)",
    )
    parser.add_argument("--task", choices=("detection", "proposal"), default="detection")
    parser.add_argument(
        "--max-avg-proposals", type=float, default=None, help="proposal task: largest AN (default: all proposals)"
    )
    parser.add_argument("--per-class", action="store_true", help="also print AP of every class")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("adatad-eval: warning: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    level = logger.level
    if args.quiet:
        logger.setLevel(logging.ERROR)
    subset = None if args.all_subsets else args.subset
    try:
        to_stdout = args.output == "-"
        if args.output and not to_stdout:
            inputs = [("ground-truth", args.ground_truth), ("predictions", args.predictions)]
            if args.blocked_videos:
                inputs.append(("blocked-videos", args.blocked_videos))
            output = check_output_path("--output", args.output, inputs)
        blocked = _read_video_list(args.blocked_videos) if args.blocked_videos else ()
        if args.task == "detection":
            result = evaluate_detection(
                args.ground_truth,
                args.predictions,
                tiou_thresholds=args.tiou_thresholds,
                subset=subset,
                ignore_unknown_labels=args.ignore_unknown_labels,
                blocked_videos=blocked,
                remove_duplicate_instances=args.remove_duplicate_instances,
            )
            table = _format_table(result, args.per_class)
        else:
            result = evaluate_proposals(
                args.ground_truth,
                args.predictions,
                tiou_thresholds=args.tiou_thresholds,
                max_avg_nr_proposals=args.max_avg_proposals,
                subset=subset,
                blocked_videos=blocked,
            )
            table = _format_proposal_table(result)
        if to_stdout:
            sys.stdout.write(json.dumps(_json_ready(result), indent=1) + "\n")
        elif args.output:
            try:
                write_text_atomically(output, json.dumps(_json_ready(result), indent=1))
            except OSError as error:
                raise EvaluationInputError(f"--output {args.output!r} could not be written: {error}") from error
    except (EvaluationInputError, OutputPathError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"adatad-eval: error: {error}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)
    if not args.quiet:
        print(table, file=sys.stderr if to_stdout else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
