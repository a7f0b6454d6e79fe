"""ActivityNet-protocol evaluation, its metrics: temporal IoU, matching of ranked detections to ground truth,
interpolated average precision, and the public entry points `evaluate_detection` (mAP), `evaluate_proposals`
(AR@AN) and `evaluate_topk_recall` (Ego4D-MQ's R@kx). numpy and the standard library only."""

import importlib.resources
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .inputs import (
    DEFAULT_SUBSET,
    Detections,
    EvaluationInputError,
    GroundTruth,
    list_names,
    load_ground_truth,
    load_predictions,
    parse_tiou_thresholds,
)


logger = logging.getLogger(__name__)

DEFAULT_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# Matching builds its tIoU tables for this many bytes of detections at a time (see `match_detections`);
# a table row costs about `_TIOU_TEMPORARIES` float64 values plus a few bools per threshold per instance.
_MATCHING_CHUNK_BYTES = 64 * 2**20
_TIOU_TEMPORARIES = 8


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
            f"(as in the official code): {list_names(outside)}"
        )
        if len(outside) == len(detections.video_ids):
            message += "; no predicted video id matches the ground truth: check the id format (e.g. a 'v_' prefix)"
        messages.append(message)
    if detections.num_unknown_label_ignored:
        messages.append(
            f"{detections.num_unknown_label_ignored} prediction(s) in {detections.source} with a label that has no "
            f"ground truth were ignored: {list_names(list(detections.unknown_labels))}"
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
            f"threshold (as in the official code): {list_names(classes_without_predictions)}"
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


def metric_path() -> str:
    """Path of the `evaluate` metric module: `evaluate.load(adatad.evaluation.metric_path())`."""
    return str(importlib.resources.files("adatad.metrics") / "temporal_detection_map")
