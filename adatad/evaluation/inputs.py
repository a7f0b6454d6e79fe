"""ActivityNet-protocol evaluation, its inputs: ground truth and predictions (files or objects) read into flat
arrays (`GroundTruth`, `Detections`), tIoU thresholds parsed, and every bad input reported with the file, key and fix.
numpy and the standard library only."""

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..strict_json import DuplicateJSONKeyError, object_without_duplicate_keys


DEFAULT_SUBSET = "validation"
# How many offending names a message lists before it says "and N more".
_MAX_NAMES_IN_MESSAGE = 10

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


def list_names(names: Sequence[Any]) -> str:
    """The first names for a message, then "and N more"."""
    shown = ", ".join(repr(name) for name in list(names)[:_MAX_NAMES_IN_MESSAGE])
    if len(names) > _MAX_NAMES_IN_MESSAGE:
        shown += f" and {len(names) - _MAX_NAMES_IN_MESSAGE} more"
    return shown


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
            f"tIoU thresholds must lie in [0, 1] (a tIoU is a ratio of lengths), got {list_names(outside.tolist())}"
        )
    values, counts = np.unique(thresholds, return_counts=True)
    if np.any(counts > 1):
        raise EvaluationInputError(
            f"tIoU thresholds must be distinct (each would count twice in the average mAP), repeated: "
            f"{list_names(values[counts > 1].tolist())}"
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
            f"(subsets present: {list_names(sorted(map(str, subsets_seen)))}); "
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
            f"{list_names(videos)}); fix or remove these instances, a NaN tIoU would count as a match"
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
                f"predictions {name} has no 'results' key (keys: {list_names(list(data))}); the submission layout is "
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
        f"{len(videos)} video(s): {list_names(videos)}. Drop them or fix the model output (a NaN usually means "
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
            + f": {list_names(unknown)}. Fix the label names, or pass --ignore-unknown-labels "
            "(ignore_unknown_labels=True) to drop those detections"
        )
    return labels, num_unknown, unknown


def read_video_list(path: str) -> list[str]:
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
