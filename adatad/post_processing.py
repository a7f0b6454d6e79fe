"""Post-processing of AdaTAD detector outputs: candidate segments -> action segments in seconds.

The pipeline reproduces OpenTAD's (`SingleStageDetector.post_processing`, `batched_nms` and its C++
soft-NMS, `convert_to_seconds` (here `time_grid.video_meta_to_seconds`), the external classifiers and the
sliding-window merge of the test engine) in plain, vectorised PyTorch:

1. `decode_candidates`: per-level logits / offsets / points / masks -> per video `proposals`
   `(num_candidates, 2)` in feature-grid units and `scores` `(num_candidates, num_classes)`.
2. `select_pre_nms_candidates`: score threshold + top-k over the flattened `(candidate, class)` scores.
3. `batched_nms`: soft-NMS (Gaussian by default) per class or class-agnostic, segment voting,
   `max_segments` cap.
4. `video_meta_to_seconds`, then labels (class names, or fusion with an `ExternalVideoClassifier`),
   then OpenTAD's rounding (2 decimals for seconds, 4 for scores).
5. Sliding windows: windows are not NMS'd on their own; all windows of a video are concatenated and
   one `batched_nms` runs on the rounded seconds (`merge_sliding_windows`).

`post_process_temporal_detection` runs the whole pipeline and returns one dict per video
`{"video_id", "scores", "labels", "label_names", "segments"}`; `to_activitynet_submission` turns
those into the ActivityNet result JSON layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .time_grid import video_meta_to_seconds

NMSMethod = Literal["gaussian", "linear", "improved_gaussian", "vanilla", "hard", "none"]
_SOFT_NMS_METHODS = ("gaussian", "linear", "improved_gaussian", "vanilla")
# Votes are computed in row blocks so that memory stays bounded for many thousand candidates.
_VOTING_BLOCK_ELEMENTS = 4_000_000
# Soft-NMS decay: above this many remaining elements only the overlapping candidates are decayed
# (far fewer exp calls); below it one dense multiply over all of them is cheaper.
_DENSE_DECAY_MAX_ELEMENTS = 2048
# Soft-NMS checks every this many steps whether finished rows should leave the state.
_ROW_COMPACTION_INTERVAL = 8
# Candidate indices travel inside the float32 soft-NMS state, exact up to 2**24.
_MAX_SOFT_NMS_CANDIDATES = 2**24


@dataclass(frozen=True)
class PostProcessingSettings:
    """The post-processing settings and their one set of defaults (OpenTAD's AdaTAD values).

    `AdaTADVideoProcessor` stores these fields under the same names (so they travel in
    `video_preprocessor_config.json`), `post_process_temporal_detection` takes them as keyword arguments, and
    `NMSSettings` takes its defaults from here.

    Args:
        pre_nms_thresh: candidates (point, class) with a score below this are dropped before NMS.
        pre_nms_topk: at most this many candidates per video (or window) go into NMS.
        nms_method, nms_sigma, min_score, max_segments, multiclass, voting_thresh, nms_iou_threshold,
            nms_t1, nms_t2: see `NMSSettings` (`nms_method` = `method`, `nms_sigma` = `sigma`,
            `nms_iou_threshold` = `iou_threshold`, `nms_t1`/`nms_t2` = `t1`/`t2`).
    """

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    nms_method: NMSMethod = "gaussian"
    nms_sigma: float = 0.7
    min_score: float = 0.0
    max_segments: int = 2000
    multiclass: bool = True
    voting_thresh: float = 0.7
    nms_iou_threshold: float = 0.0
    nms_t1: float = 0.0
    nms_t2: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.pre_nms_thresh <= 1.0:
            raise ValueError(f"`pre_nms_thresh` must be in [0, 1], got {self.pre_nms_thresh}.")
        if int(self.pre_nms_topk) != self.pre_nms_topk or self.pre_nms_topk <= 0:
            raise ValueError(f"`pre_nms_topk` must be a positive integer, got {self.pre_nms_topk}.")
        self.nms_settings()  # validates the NMS fields

    def nms_settings(self) -> NMSSettings:
        return NMSSettings(
            method=self.nms_method,
            sigma=self.nms_sigma,
            min_score=self.min_score,
            max_segments=self.max_segments,
            multiclass=self.multiclass,
            voting_thresh=self.voting_thresh,
            iou_threshold=self.nms_iou_threshold,
            t1=self.nms_t1,
            t2=self.nms_t2,
        )


@dataclass(frozen=True)
class NMSSettings:
    """Settings of `batched_nms` (names follow OpenTAD's `batched_nms` arguments where they exist).

    Args:
        method: `"gaussian"` (OpenTAD `method=2`, the only one AdaTAD configs use): every remaining
            candidate's score is multiplied by `exp(-iou**2 / sigma)`; `"linear"` (`method=1`):
            by `1 - iou` when `iou >= iou_threshold`; `"improved_gaussian"` (`method=3`, BMN): the
            Gaussian decay only when `iou >= t1 + t2 * length_of_picked_segment`; `"vanilla"`
            (`method=0`): score set to 0 when `iou >= iou_threshold` (the segment stays, with score
            0, unless `min_score > 0`); `"hard"` (`use_soft_nms=False`): classic greedy NMS that drops
            segments with `iou >= iou_threshold`; `"none"` (OpenTAD `nms=None`): no NMS at all.
        sigma: Gaussian decay parameter. Note the decay divides by `sigma`, not `2 * sigma**2`.
        min_score: soft-NMS drops a candidate as soon as its decayed score falls below this value;
            hard NMS first keeps only scores strictly above it (when it is > 0).
        max_segments: OpenTAD's `max_seg_num`: cap per class (multiclass) and on the merged result.
        multiclass: soft-NMS per class independently (`True`) or once over all classes (`False`).
        voting_thresh: class-agnostic mode only: when > 0, every kept segment is replaced by the
            score-weighted mean of all input candidates with IoU >= `voting_thresh` with it.
        iou_threshold, t1, t2: see `method`.
    """

    method: NMSMethod = PostProcessingSettings.nms_method
    sigma: float = PostProcessingSettings.nms_sigma
    min_score: float = PostProcessingSettings.min_score
    max_segments: int = PostProcessingSettings.max_segments
    multiclass: bool = PostProcessingSettings.multiclass
    voting_thresh: float = PostProcessingSettings.voting_thresh
    iou_threshold: float = PostProcessingSettings.nms_iou_threshold
    t1: float = PostProcessingSettings.nms_t1
    t2: float = PostProcessingSettings.nms_t2

    def __post_init__(self):
        allowed = _SOFT_NMS_METHODS + ("hard", "none")
        if self.method not in allowed:
            raise ValueError(f"`nms_method` must be one of {allowed}, got {self.method!r}.")
        if self.method in ("gaussian", "improved_gaussian") and not self.sigma > 0:
            raise ValueError(f"`nms_sigma` must be > 0 for Gaussian soft-NMS, got {self.sigma}.")
        if int(self.max_segments) != self.max_segments or self.max_segments <= 0:
            raise ValueError(f"`max_segments` must be a positive integer, got {self.max_segments}.")
        if not 0 <= self.voting_thresh <= 1:
            raise ValueError(f"`voting_thresh` must be a tIoU in [0, 1] (0 disables voting), got {self.voting_thresh}.")


def _field(container: Any, name: str):
    """Reads `name` from a mapping (e.g. a `ModelOutput` or dict) or an attribute-style object."""
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


# ---------------------------------------------------------------------------------------------
# 1. Decoding
# ---------------------------------------------------------------------------------------------


def decode_candidates(
    logits: Sequence[torch.Tensor],
    pred_offsets: Sequence[torch.Tensor],
    points: Sequence[torch.Tensor],
    feature_mask: Sequence[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Turns per-level head outputs into per-video candidate segments and class probabilities.

    Same computation as OpenTAD's `AnchorFreeHead.forward_test`: levels are concatenated in order,
    `start = position - offset_start * stride`, `end = position + offset_end * stride` (not clipped),
    `scores = sigmoid(logits)`, and only points whose mask is True are kept.

    Args:
        logits: per level `(batch_size, num_points_l, num_classes)` raw classification logits.
        pred_offsets: per level `(batch_size, num_points_l, 2)` distances to start/end in units of
            the level stride.
        points: per level `(num_points_l, 4)` = (position, reg_range_min, reg_range_max, stride).
        feature_mask: per level `(batch_size, num_points_l)` bool, True = valid point.

    Returns:
        `(proposals, scores)`: two lists with one entry per video, `proposals[b]` of shape
        `(num_valid_points_b, 2)` in feature-grid units and `scores[b]` of shape
        `(num_valid_points_b, num_classes)`, both float32.
    """
    num_levels = len(logits)
    if not (len(pred_offsets) == len(points) == len(feature_mask) == num_levels) or num_levels == 0:
        raise ValueError(
            "`logits`, `pred_offsets`, `points` and `feature_mask` must be non-empty lists with one entry "
            f"per FPN level; got {len(logits)}, {len(pred_offsets)}, {len(points)}, {len(feature_mask)} levels."
        )
    for level in range(num_levels):
        batch_size, num_points, _ = logits[level].shape
        if pred_offsets[level].shape != (batch_size, num_points, 2):
            raise ValueError(
                f"`pred_offsets[{level}]` has shape {tuple(pred_offsets[level].shape)}, expected "
                f"{(batch_size, num_points, 2)} to match `logits[{level}]`."
            )
        if points[level].shape != (num_points, 4):
            raise ValueError(f"`points[{level}]` has shape {tuple(points[level].shape)}, expected {(num_points, 4)}.")
        if feature_mask[level].shape != (batch_size, num_points):
            raise ValueError(
                f"`feature_mask[{level}]` has shape {tuple(feature_mask[level].shape)}, "
                f"expected {(batch_size, num_points)}."
            )

    all_points = torch.cat([p.float() for p in points], dim=0)  # (num_points, 4)
    offsets = torch.cat([o.float() for o in pred_offsets], dim=1)  # (batch_size, num_points, 2)
    position, stride = all_points[:, 0][None], all_points[:, 3][None]
    starts = position - offsets[:, :, 0] * stride
    ends = position + offsets[:, :, 1] * stride
    proposals = torch.stack((starts, ends), dim=-1)  # (batch_size, num_points, 2)
    scores = torch.cat([l.float() for l in logits], dim=1).sigmoid()  # (batch_size, num_points, num_classes)
    masks = torch.cat([m.bool() for m in feature_mask], dim=1)  # (batch_size, num_points)
    return (
        [proposals[b][masks[b]] for b in range(proposals.shape[0])],
        [scores[b][masks[b]] for b in range(scores.shape[0])],
    )


# ---------------------------------------------------------------------------------------------
# 2. Pre-NMS selection
# ---------------------------------------------------------------------------------------------


def select_pre_nms_candidates(
    proposals: torch.Tensor, scores: torch.Tensor, pre_nms_thresh: float = 0.001, pre_nms_topk: int = 2000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Picks the (segment, class) pairs that go into NMS, as OpenTAD does.

    With several classes the `(num_candidates, num_classes)` scores are flattened, pairs with
    `score > pre_nms_thresh` are kept, sorted by descending score and cut to `pre_nms_topk`; the
    candidate index is `flat_index // num_classes` and the label `flat_index % num_classes`.
    With a single class (ActivityNet) there is no filtering and no sorting at all: every candidate
    goes to NMS with label 0.

    Returns:
        `(segments (num_selected, 2), scores (num_selected,), labels (num_selected,) int64)`.
    """
    if proposals.ndim != 2 or proposals.shape[-1] != 2 or scores.ndim != 2 or scores.shape[0] != proposals.shape[0]:
        raise ValueError(
            "`proposals` must be (num_candidates, 2) and `scores` (num_candidates, num_classes); got "
            f"{tuple(proposals.shape)} and {tuple(scores.shape)}."
        )
    num_classes = scores.shape[-1]
    if num_classes == 1:
        return proposals, scores.squeeze(-1), torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)

    flat_scores = scores.flatten()  # (num_candidates * num_classes,)
    above_thresh = flat_scores > pre_nms_thresh
    kept_scores = flat_scores[above_thresh]
    flat_indices = above_thresh.nonzero(as_tuple=True)[0]
    num_topk = min(int(pre_nms_topk), flat_indices.shape[0])
    kept_scores, order = kept_scores.sort(descending=True)
    kept_scores = kept_scores[:num_topk]
    flat_indices = flat_indices[order[:num_topk]]
    candidate_indices = torch.div(flat_indices, num_classes, rounding_mode="floor")
    labels = flat_indices % num_classes
    return proposals[candidate_indices], kept_scores, labels


# ---------------------------------------------------------------------------------------------
# 3. NMS
# ---------------------------------------------------------------------------------------------


def _pad_groups(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lays out candidates as `(num_groups, max_group_size)` rows, one row per group id (ascending),
    keeping the input order inside each row. Returns (row of each candidate, its column, group sizes)."""
    _, row, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    order = torch.sort(row, stable=True).indices
    starts = torch.cumsum(sizes, 0) - sizes
    column = torch.empty_like(row)
    column[order] = torch.arange(row.shape[0]) - starts[row[order]]
    return row, column, sizes


def _decay_weights(ovr: torch.Tensor, picked_length: torch.Tensor, settings: NMSSettings) -> torch.Tensor:
    """Soft-NMS score multiplier for overlaps `ovr` with the segment just picked."""
    if settings.method == "gaussian":
        return torch.exp(-(ovr * ovr) / settings.sigma)
    if settings.method == "linear":
        return torch.where(ovr >= settings.iou_threshold, 1 - ovr, torch.ones_like(ovr))
    if settings.method == "improved_gaussian":
        applies = ovr >= (settings.t1 + settings.t2 * picked_length)
        return torch.where(applies, torch.exp(-(ovr * ovr) / settings.sigma), torch.ones_like(ovr))
    # vanilla
    return torch.where(ovr >= settings.iou_threshold, torch.zeros_like(ovr), torch.ones_like(ovr))


def soft_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    settings: NMSSettings = NMSSettings(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS, run independently (and simultaneously) for every group of candidates.

    Reproduces OpenTAD's C++ `softnms_1d_cpu` step by step, including its float32 arithmetic
    (length = end - start + 1e-6, IoU = inter / (len_a + len_b - inter)) and its in-place swaps,
    so that ties between equal scores are broken exactly as OpenTAD breaks them. Each step is
    vectorised over all groups and all remaining candidates: pick the highest remaining score
    (first one on ties), decay every other remaining score, drop those below `min_score`.

    Speed-up with identical results: candidates of a group that are not connected by overlaps never
    change each other's scores, so each overlap cluster runs as its own row (the loop then takes as
    many steps as the largest cluster, not the largest group) and the clusters' picks are interleaved
    by score, as OpenTAD's single loop interleaves them. Where that interleaving or a pick inside a
    cluster would hinge on two exactly equal scores (OpenTAD then decides by its memory layout), the
    group is recomputed as one row.

    Args:
        segments: `(num_candidates, 2)` float32 (start, end).
        scores: `(num_candidates,)` float32.
        group_ids: `(num_candidates,)` integer group of each candidate (the class for per-class NMS);
            `None` = one group.
        settings: `NMSSettings` with a soft method (`gaussian`, `linear`, `improved_gaussian`, `vanilla`).

    Returns:
        `(keep, kept_scores)`: candidate indices and their decayed scores, grouped by ascending
        group id and, inside a group, in selection order (non-increasing scores).
    """
    if settings.method not in _SOFT_NMS_METHODS:
        raise ValueError(f"`soft_nms` needs a soft method {_SOFT_NMS_METHODS}, got {settings.method!r}.")
    num_candidates = segments.shape[0]
    if num_candidates == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float32)
    if num_candidates > _MAX_SOFT_NMS_CANDIDATES:
        raise ValueError(
            f"soft-NMS takes at most {_MAX_SOFT_NMS_CANDIDATES} candidates per call, got {num_candidates}."
        )
    segments = segments.detach().cpu().float()
    scores = scores.detach().cpu().float()
    group_ids = torch.zeros(num_candidates, dtype=torch.long) if group_ids is None else group_ids.detach().cpu().long()
    # Clusters are independent when a zero overlap leaves a score untouched (not so for vanilla
    # soft-NMS with iou_threshold <= 0, which zeroes every other score) and every IoU between
    # clusters is a plain 0 (finite values, no reversed segment).
    clusters_independent = (
        (settings.method != "vanilla" or settings.iou_threshold > 0)
        and bool(torch.isfinite(segments).all() and torch.isfinite(scores).all())
        and bool((segments[:, 1] >= segments[:, 0]).all())
    )
    if not clusters_independent:
        keep, kept_scores, _ = _soft_nms_rows(segments, scores, group_ids, settings)
        return keep, kept_scores

    # OpenTAD's first step drops every candidate below `min_score` except the group's first pick,
    # whatever its cluster; do that up front so that clusters start from the same candidates.
    first_pick = _first_index_of_group_max(scores, group_ids)
    candidates = torch.where((scores >= settings.min_score) | first_pick)[0]
    cluster_ids = _overlap_clusters(segments[candidates], group_ids[candidates])
    keep, kept_scores, tied_clusters = _soft_nms_rows(
        segments[candidates], scores[candidates], cluster_ids, settings, detect_ties=True
    )
    keep = candidates[keep]
    kept_groups = group_ids[keep]
    # interleave the clusters of each group by descending score: OpenTAD's pick order
    order = kept_scores.sort(descending=True, stable=True).indices
    order = order[kept_groups[order].sort(stable=True).indices]
    keep, kept_scores, kept_groups = keep[order], kept_scores[order], kept_groups[order]

    # groups in which a pick had an exactly equal competitor (inside a cluster or across clusters)
    cluster_group = torch.zeros(int(cluster_ids.max()) + 1, dtype=torch.long)
    cluster_group[cluster_ids] = group_ids[candidates]
    tied_groups = cluster_group[tied_clusters]
    equal_neighbours = (kept_scores[1:] == kept_scores[:-1]) & (kept_groups[1:] == kept_groups[:-1])
    tied_groups = torch.cat((tied_groups, kept_groups[1:][equal_neighbours]))
    if tied_groups.numel() == 0:
        return keep, kept_scores
    redo = torch.where(torch.isin(group_ids, tied_groups))[0]
    redo_keep, redo_scores, _ = _soft_nms_rows(segments[redo], scores[redo], group_ids[redo], settings)
    untouched = ~torch.isin(kept_groups, tied_groups)
    keep = torch.cat((keep[untouched], redo[redo_keep]))
    kept_scores = torch.cat((kept_scores[untouched], redo_scores))
    by_group = group_ids[keep].sort(stable=True).indices
    return keep[by_group], kept_scores[by_group]


def _first_index_of_group_max(scores: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Bool mask of the first candidate (input order) holding its group's highest score."""
    _, group_index = torch.unique(group_ids, return_inverse=True)
    group_max = torch.full((int(group_index.max()) + 1,), float("-inf")).scatter_reduce(0, group_index, scores, "amax")
    is_max = scores == group_max[group_index]
    positions = torch.arange(scores.shape[0])
    first = torch.full_like(group_max, scores.shape[0], dtype=torch.long).scatter_reduce(
        0, group_index[is_max], positions[is_max], "amin"
    )
    mask = torch.zeros_like(is_max)
    mask[first] = True
    return mask


def _float_order_key(values: torch.Tensor) -> torch.Tensor:
    """int64 keys in [0, 2**32) that sort like the float32 `values`: IEEE sign-magnitude bits made
    monotonic (negative floats reversed below the positive ones)."""
    bits = values.contiguous().view(torch.int32).long()
    return torch.where(bits < 0, -1 - bits, bits + 2**31)


def _overlap_clusters(segments: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Cluster id per candidate: connected components of "overlaps with" inside each group
    (a sweep by start time), numbered so that ascending cluster ids follow ascending group ids."""
    order = segments[:, 0].sort(stable=True).indices
    order = order[group_ids[order].sort(stable=True).indices]
    groups = group_ids[order]
    new_group = torch.ones_like(groups, dtype=torch.bool)
    new_group[1:] = groups[1:] != groups[:-1]
    group_rank = torch.cumsum(new_group, 0) - 1
    # running maximum of the end times inside each group, exactly: the group rank in the high bits
    # keeps the running maximum from leaking across groups
    end_keys = _float_order_key(segments[order, 1]) + (group_rank << 33)
    running_end = torch.cummax(end_keys, 0).values
    previous_end = torch.cat((running_end.new_zeros(1), running_end[:-1]))
    start_keys = _float_order_key(segments[order, 0]) + (group_rank << 33)
    new_cluster = new_group | (start_keys >= previous_end)  # no positive overlap with anything before
    cluster_ids = torch.empty_like(groups)
    cluster_ids[order] = torch.cumsum(new_cluster, 0) - 1
    return cluster_ids


def _soft_nms_rows(
    segments: torch.Tensor,
    scores: torch.Tensor,
    row_ids: torch.Tensor,
    settings: NMSSettings,
    detect_ties: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The soft-NMS loop over rows of candidates (one row per distinct `row_ids` value), all rows
    stepping together. Returns `soft_nms`'s `(keep, kept_scores)` plus, with `detect_ties`, the row
    ids in which some pick had an exactly equal competitor."""
    num_candidates = segments.shape[0]
    row, column, sizes = _pad_groups(row_ids)
    num_rows, num_columns = sizes.shape[0], int(sizes.max())

    # state[field, row, column]: 0/1 = start/end, 2 = current score, 3 = length (+1e-6 as OpenTAD),
    # 4 = candidate index (exact in float32 below 2**24 candidates). Column `step` receives the pick
    # of that step and is never written again, so at the end each row holds its picks in order.
    state = torch.zeros(5, num_rows, num_columns)
    state[0, row, column] = segments[:, 0]
    state[1, row, column] = segments[:, 1]
    state[2, row, column] = scores
    state[3, row, column] = segments[:, 1] - segments[:, 0] + 1e-6
    state[4, row, column] = torch.arange(num_candidates, dtype=torch.float32)
    remaining = sizes.clone()  # candidates still in play per row (picked ones included)
    width = num_columns  # no row has candidates in play at or beyond this column
    columns = torch.arange(num_columns)
    first_column = torch.zeros(num_rows, 1, dtype=torch.long)
    single_row = num_rows == 1
    # Decay factors are >= 0, so a drop below `min_score` is only possible if a score can get there.
    drops_possible = settings.min_score > 0 or bool((scores < settings.min_score).any())
    # Every method except vanilla with iou_threshold <= 0 leaves a score exactly unchanged when the
    # overlap is 0, so on wide rows only the overlapping candidates are decayed (fewer exp calls).
    sparse_decay_allowed = settings.method != "vanilla" or settings.iou_threshold > 0

    tied_rows = torch.zeros(num_rows, dtype=torch.bool)
    # Finished rows are moved out of `state` once they are half of it, so long rows do not drag short ones along.
    row_of_state = torch.arange(num_rows)  # row id index of each row of `state`
    finished_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    tied_by_row = torch.zeros(num_rows, dtype=torch.bool)

    step = 0
    while step < width:
        if num_rows > 1 and step % _ROW_COMPACTION_INTERVAL == 0:
            active = remaining > step
            if int(active.sum()) <= num_rows // 2:
                finished = ~active
                keep_mask = columns[None] < remaining[finished][:, None]
                rows_of_picks = row_of_state[finished][:, None].expand_as(keep_mask)[keep_mask]
                finished_parts.append((state[4][finished][keep_mask], state[2][finished][keep_mask], rows_of_picks))
                tied_by_row[row_of_state[finished]] = tied_rows[finished]
                state, remaining, tied_rows, row_of_state = (
                    state[:, active],
                    remaining[active],
                    tied_rows[active],
                    row_of_state[active],
                )
                num_rows = state.shape[1]
                first_column = first_column[:num_rows]
                single_row = num_rows == 1
                width = int(remaining.max())
        tail = state[:, :, step:width]  # (5, num_rows, width - step)
        current = tail[2]
        if not single_row:
            in_play = columns[step:width] < remaining[:, None]  # (num_rows, width - step)
            current = current.masked_fill(~in_play, float("-inf"))
        best = current.argmax(dim=1, keepdim=True)  # first maximum, like the C++ strict `<` scan
        if detect_ties:
            tied_rows |= ((current == current.gather(1, best)).sum(1) > 1) & (remaining > step)
        # swap the picked candidate into column `step`, as the C++ loop does
        swap = torch.cat((first_column, best), dim=1).expand(5, num_rows, 2)
        tail.scatter_(2, swap, tail.gather(2, torch.cat((best, first_column), dim=1).expand(5, num_rows, 2)))

        picked_start, picked_end, _, picked_length, _ = tail[:, :, :1].unbind(0)  # each (num_rows, 1)
        start, end, score, length, _ = tail[:, :, 1:].unbind(0)  # each (num_rows, width - step - 1)
        inter = (torch.minimum(picked_end, end) - torch.maximum(picked_start, start)).clamp_(min=0)
        ovr = inter.div_(picked_length + length - inter)
        if sparse_decay_allowed and ovr.numel() > _DENSE_DECAY_MAX_ELEMENTS:
            overlapping = (ovr != 0).nonzero(as_tuple=True)
            weights = _decay_weights(ovr[overlapping], picked_length[overlapping[0], 0], settings)
            score.index_put_(overlapping, score[overlapping] * weights)
        else:
            score.mul_(_decay_weights(ovr, picked_length, settings))

        if drops_possible:
            in_play_rest = columns[step + 1 : width] < remaining[:, None]
            dropped = (score < settings.min_score) & in_play_rest
            if bool(dropped.any()):
                _drop_like_opentad(tail[:, :, 1:], dropped, in_play_rest)
                active = remaining > step
                remaining = torch.where(active, step + 1 + (in_play_rest & ~dropped).sum(1), remaining)
                width = int(remaining.max())
        step += 1

    keep_mask = columns[None] < remaining[:, None]  # columns = selection order
    finished_parts.append(
        (state[4][keep_mask], state[2][keep_mask], row_of_state[:, None].expand_as(keep_mask)[keep_mask])
    )
    tied_by_row[row_of_state] = tied_rows
    keep, kept_scores, rows_of_picks = (torch.cat(part) for part in zip(*finished_parts))
    by_row = rows_of_picks.sort(stable=True).indices  # rows ascending by row id
    return keep[by_row].long(), kept_scores[by_row], torch.unique(row_ids)[tied_by_row]


def _drop_like_opentad(state: torch.Tensor, dropped: torch.Tensor, in_play: torch.Tensor) -> None:
    """Removes `dropped` candidates from `state` (fields, rows, columns) in place, with the layout
    OpenTAD's C++ loop produces.

    OpenTAD scans left to right and overwrites a dropped candidate with the last candidate still in
    play (re-checking it). The result: kept candidates left of the new end stay where they are, and
    the holes left of it are filled, left to right, with the kept candidates right of it taken from
    the far right. Reproducing the layout keeps later tie-breaking identical to OpenTAD.
    """
    kept = in_play & ~dropped
    new_length = kept.sum(1, keepdim=True)  # (num_rows, 1)
    local = torch.arange(dropped.shape[1])[None]
    holes = dropped & (local < new_length)
    fillers = kept & (local >= new_length)
    if not bool(holes.any()):
        return
    hole_rank = holes.cumsum(1) - 1
    filler_rank = fillers.flip(1).cumsum(1).flip(1) - 1  # 0 = rightmost filler
    filler_rows, filler_columns = fillers.nonzero(as_tuple=True)
    source_by_rank = torch.zeros_like(dropped, dtype=torch.long)
    source_by_rank[filler_rows, filler_rank[filler_rows, filler_columns]] = filler_columns
    hole_rows, hole_columns = holes.nonzero(as_tuple=True)
    source_columns = source_by_rank[hole_rows, hole_rank[hole_rows, hole_columns]]
    state[:, hole_rows, hole_columns] = state[:, hole_rows, source_columns]


def hard_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    settings: NMSSettings = NMSSettings(method="hard"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS per group (OpenTAD `use_soft_nms=False`): candidates sorted by score, each kept one
    removes the later ones with IoU >= `iou_threshold`. With `min_score > 0` only scores strictly above
    it enter. Same return layout as `soft_nms` (scores unchanged)."""
    segments = segments.detach().cpu().float()
    scores = scores.detach().cpu().float()
    if group_ids is None:
        group_ids = torch.zeros(segments.shape[0], dtype=torch.long)
    group_ids = group_ids.detach().cpu()
    keep_per_group = []
    for group in torch.unique(group_ids):
        members = torch.where(group_ids == group)[0]
        if settings.min_score > 0:
            members = members[scores[members] > settings.min_score]
        order = members[scores[members].sort(descending=True).indices]
        starts, ends = segments[order, 0], segments[order, 1]
        lengths = ends - starts + 1e-6
        alive = torch.ones(order.shape[0], dtype=torch.bool)
        for position in range(order.shape[0]):
            if not bool(alive[position]):
                continue
            inter = (
                torch.minimum(ends[position], ends[position + 1 :])
                - torch.maximum(starts[position], starts[position + 1 :])
            ).clamp(min=0)
            ovr = inter / (lengths[position] + lengths[position + 1 :] - inter)
            alive[position + 1 :] &= ~(ovr >= settings.iou_threshold)
        keep_per_group.append(order[alive])
    keep = torch.cat(keep_per_group) if keep_per_group else torch.zeros(0, dtype=torch.long)
    return keep, scores[keep]


def segment_voting(
    kept_segments: torch.Tensor, candidate_segments: torch.Tensor, candidate_scores: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Replaces each kept segment by the score-weighted mean of the candidates overlapping it.

    Voters are ALL candidates that entered NMS (also those soft-NMS dropped or decayed), weighted by
    their original score, with IoU >= `iou_threshold` (plain IoU, no +1e-6), as OpenTAD's `seg_voting`.
    A kept segment without any voter (only possible for zero-length segments, whose IoU is 0/0) keeps
    its own position, where OpenTAD would return NaN.
    """
    if kept_segments.shape[0] == 0 or candidate_segments.shape[0] == 0:
        return kept_segments.clone()
    candidate_lengths = candidate_segments[:, 1] - candidate_segments[:, 0]
    block = max(1, _VOTING_BLOCK_ELEMENTS // candidate_segments.shape[0])
    voted = []
    for first in range(0, kept_segments.shape[0], block):
        kept = kept_segments[first : first + block]
        left = torch.maximum(kept[:, None, 0], candidate_segments[None, :, 0])
        right = torch.minimum(kept[:, None, 1], candidate_segments[None, :, 1])
        inter = (right - left).clamp(min=0)  # (num_kept, num_candidates)
        iou = inter / ((kept[:, 1] - kept[:, 0])[:, None] + candidate_lengths[None] - inter)
        weights = (iou >= iou_threshold).to(candidate_scores.dtype) * candidate_scores[None]
        weights = weights / weights.sum(dim=1, keepdim=True)
        block_voted = weights @ candidate_segments
        voted.append(torch.where(torch.isnan(block_voted), kept, block_voted))
    return torch.cat(voted)


def batched_nms(
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, settings: NMSSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS over one video's candidates, with OpenTAD `batched_nms` semantics.

    Multiclass: NMS per class, each class capped at `max_segments`, results concatenated by ascending
    class id. Class-agnostic: one NMS, capped at `max_segments`, then segment voting if
    `voting_thresh > 0` (voting only exists in this mode). Finally everything is sorted by
    descending score and capped at `max_segments`.

    Args:
        segments: `(N, 2)` candidates, scores: `(N,)`, labels: `(N,)` non-negative class ids.

    Returns:
        `(segments (M, 2), scores (M,), labels (M,))` sorted by descending score.
    """
    return batched_nms_videos([(segments, scores, labels)], settings)[0]


def batched_nms_videos(
    candidates: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], settings: NMSSettings
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`batched_nms` of several videos in one go: every (video, class) pair (every video in
    class-agnostic mode) is its own soft-NMS group, so the videos share the soft-NMS steps.
    Results are identical to calling `batched_nms` per video.

    Args:
        candidates: per video `(segments (N_v, 2), scores (N_v,), labels (N_v,))`.

    Returns:
        Per video `(segments, scores, labels)` sorted by descending score.
    """
    prepared = [
        (
            segments.detach().cpu().float().reshape(-1, 2),
            scores.detach().cpu().float().reshape(-1),
            labels.detach().cpu().reshape(-1),
        )
        for segments, scores, labels in candidates
    ]
    if settings.method == "none" or not prepared:
        return prepared
    sizes = torch.tensor([scores.shape[0] for _, scores, _ in prepared])
    segments = torch.cat([p[0] for p in prepared])
    scores = torch.cat([p[1] for p in prepared])
    labels = torch.cat([p[2] for p in prepared])
    video = torch.repeat_interleave(torch.arange(len(prepared)), sizes)
    if settings.multiclass:
        class_ids = labels.long()
        if class_ids.numel() and int(class_ids.min()) < 0:
            raise ValueError(f"labels must be non-negative class ids, got {int(class_ids.min())}.")
        num_class_ids = int(class_ids.max()) + 1 if class_ids.numel() else 1
        groups = video * num_class_ids + class_ids  # ascending group id = video, then class
    else:
        groups = video

    nms_function = hard_nms if settings.method == "hard" else soft_nms
    keep, kept_scores = nms_function(segments, scores, groups, settings)
    # cap per group (per class, or the class-agnostic list): `keep` is grouped, so rank = running count
    _, group_sizes = torch.unique_consecutive(groups[keep], return_counts=True)
    group_starts = torch.repeat_interleave(torch.cumsum(group_sizes, 0) - group_sizes, group_sizes)
    under_cap = (torch.arange(keep.shape[0]) - group_starts) < settings.max_segments
    keep, kept_scores = keep[under_cap], kept_scores[under_cap]

    results = []
    video_starts = (torch.cumsum(sizes, 0) - sizes).tolist()
    kept_video = video[keep]
    for index, (first, size) in enumerate(zip(video_starts, sizes.tolist())):
        in_video = kept_video == index
        video_keep, video_scores = keep[in_video], kept_scores[in_video]
        video_segments = segments[video_keep]
        if not settings.multiclass and settings.voting_thresh > 0:
            candidates_of_video = slice(first, first + size)
            video_segments = segment_voting(
                video_segments, segments[candidates_of_video], scores[candidates_of_video], settings.voting_thresh
            )
        order = video_scores.sort(descending=True).indices[: settings.max_segments]
        results.append((video_segments[order], video_scores[order], labels[video_keep][order]))
    return results


# ---------------------------------------------------------------------------------------------
# 4. Seconds, labels, rounding
# ---------------------------------------------------------------------------------------------


def _video_id(meta: Mapping[str, Any], index: int) -> str:
    video_id = meta.get("video_id", meta.get("video_name"))
    if video_id is None:
        raise ValueError(f"video_metas[{index}] has neither 'video_id' nor 'video_name'; add the video's id.")
    return str(video_id)


def _round_like_opentad(segments: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Python `round` (exact decimal rounding of the float32 value), 2 decimals for seconds and 4 for
    scores, as OpenTAD stores its results; returned as float32 like OpenTAD's sliding-window merge reads them."""
    rounded_segments = torch.tensor([[round(v, 2) for v in pair] for pair in segments.tolist()], dtype=torch.float32)
    rounded_scores = torch.tensor([round(v, 4) for v in scores.tolist()], dtype=torch.float32)
    return rounded_segments.reshape(-1, 2), rounded_scores


class ExternalVideoClassifier:
    """Video-level class scores fused with class-agnostic detections (ActivityNet).

    For each of the `topk` best video-level classes, all detections are duplicated with that class:
    `style="cuhk"` (OpenTAD `CUHKANETClassifier`) scores them `score * class_score`,
    `style="standard"` (OpenTAD `StandardClassifier`) `sqrt(score * class_score)`, optionally after a
    softmax over the video-level scores (`apply_softmax`).

    Args:
        video_scores: `{video_id: [score per class]}`.
        class_names: names of the classifier's classes, in score order.
        topk: number of classes per video.
        style: `"cuhk"` or `"standard"`.
        apply_softmax: softmax the video-level scores first (any style).
        source: where the scores came from, for error messages.
    """

    def __init__(
        self,
        video_scores: Mapping[str, Sequence[float]],
        class_names: Sequence[str],
        *,
        topk: int = 2,
        style: Literal["cuhk", "standard"] = "cuhk",
        apply_softmax: bool = False,
        source: str = "<in memory>",
    ):
        if style not in ("cuhk", "standard"):
            raise ValueError(f"`style` must be 'cuhk' or 'standard', got {style!r}.")
        if not 1 <= topk <= len(class_names):
            raise ValueError(f"`topk` must be between 1 and the number of classes ({len(class_names)}), got {topk}.")
        self.video_scores = video_scores
        self.class_names = list(class_names)
        self.topk = topk
        self.style = style
        self.apply_softmax = apply_softmax
        self.source = source

    @classmethod
    def from_json(cls, path: str | Path, **kwargs) -> ExternalVideoClassifier:
        """Reads `{"results": {video_id: [scores]}, "class" or "classes": [names]}`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the video classifier JSON {path}: {error}") from error
        names = data.get("class", data.get("classes")) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or names is None:
            raise ValueError(
                f"video classifier JSON {path} must hold 'results' ({{video_id: [scores]}}) "
                "and 'class' or 'classes' (names)."
            )
        return cls(data["results"], names, source=str(path), **kwargs)

    def top_classes(self, video_id: str) -> tuple[list[int], list[float]]:
        """Indices and scores of the `topk` best classes of one video."""
        if video_id not in self.video_scores:
            raise ValueError(f"video {video_id!r} has no scores in the video classifier ({self.source}).")
        class_scores = np.asarray(self.video_scores[video_id], dtype=np.float64)
        if class_scores.shape != (len(self.class_names),):
            raise ValueError(
                f"video {video_id!r} has {class_scores.size} classifier scores in {self.source}, "
                f"expected {len(self.class_names)}."
            )
        if self.apply_softmax:
            class_scores = np.exp(class_scores) / np.sum(np.exp(class_scores))
        # numpy's sorts, so that ties between class scores are broken as OpenTAD breaks them
        if self.style == "cuhk":
            ranked = np.argsort(-class_scores)[: self.topk]
        else:
            ranked = np.argsort(class_scores)[::-1][: self.topk]
        return [int(i) for i in ranked], [float(class_scores[i]) for i in ranked]

    def fuse(
        self, video_id: str, segments: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Duplicates `segments (N, 2)` / `scores (N,)` for each top class.

        Returns `(segments (topk*N, 2), labels (topk*N,) classifier class ids, scores (topk*N,))`, class by class."""
        class_ids, class_scores = self.top_classes(video_id)
        segments, scores = segments.detach().cpu(), scores.detach().cpu().float()
        # numpy's float32 sqrt (what OpenTAD applies to the tensor) is correctly rounded; torch's may differ by one ulp
        fused = [
            scores * s if self.style == "cuhk" else torch.from_numpy(np.sqrt((scores * s).numpy()))
            for s in class_scores
        ]
        labels = torch.tensor(class_ids, dtype=torch.long).repeat_interleave(segments.shape[0])
        return segments.repeat(len(class_ids), 1), labels, torch.cat(fused)


# ---------------------------------------------------------------------------------------------
# 5. Whole pipeline
# ---------------------------------------------------------------------------------------------


def _label_names(labels: torch.Tensor, names: Sequence[str]) -> list[str]:
    return [names[i] for i in labels.tolist()]


def _finish_entry(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    meta: Mapping[str, Any],
    video_id: str,
    class_names: Sequence[str] | None,
    video_classifier: ExternalVideoClassifier | None,
) -> dict:
    """Grid segments of one video or window -> seconds, labels (or classifier fusion), OpenTAD rounding."""
    seconds = video_meta_to_seconds(segments, meta)
    if video_classifier is not None:
        seconds, labels, scores = video_classifier.fuse(video_id, seconds, scores)
        names = video_classifier.class_names
    else:
        names = class_names
    seconds, scores = _round_like_opentad(seconds, scores)
    labels = labels.long()
    return {
        "video_id": video_id,
        "scores": scores,
        "labels": labels,
        "label_names": _label_names(labels, names),
        "segments": seconds,
    }


def check_threshold_and_top_k(threshold: float, top_k: int | None) -> None:
    """Refuses a `threshold` outside [0, 1] (NaN included) and a `top_k` that is not a positive integer."""
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"`threshold` must be a number in [0, 1] (scores are probabilities), got {threshold!r}.")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"`top_k` must be a positive integer or None (keep all), got {top_k!r}.")


def keep_best_detections(result: dict, threshold: float = 0.0, top_k: int | None = None) -> dict:
    """Keeps detections scoring `>= threshold` (compared at the 4 decimals the scores are rounded to), then the
    `top_k` best; the order of the kept entries is unchanged."""
    scores = [round(score, 4) for score in result["scores"].tolist()]
    kept = [i for i, score in enumerate(scores) if score >= threshold]
    if top_k is not None and len(kept) > top_k:
        best = sorted(kept, key=lambda i: -scores[i])[:top_k]  # stable: ties keep their order
        kept = sorted(best)
    if len(kept) == len(scores):
        return result
    index = torch.tensor(kept, dtype=torch.long)
    return {
        **result,
        "scores": result["scores"][index],
        "labels": result["labels"][index],
        "label_names": [result["label_names"][i] for i in kept],
        "segments": result["segments"].reshape(-1, 2)[index],
    }


def merge_sliding_windows(
    window_results: Sequence[dict],
    nms_settings: NMSSettings | PostProcessingSettings | None = None,
    *,
    threshold: float = 0.0,
    top_k: int | None = None,
) -> list[dict]:
    """Merges window results of the same video into one result per video (OpenTAD's test engine).

    All windows of a video (in the given order) are concatenated and ONE `batched_nms` runs on their
    rounded seconds; labels are grouped by name (numbered by first appearance, as OpenTAD does),
    results are rounded again. No re-weighting by window position.

    Args:
        window_results: per window, dicts as returned by `post_process_temporal_detection(...,
            sliding_window=True, merge_windows=False)`: they hold `video_id`, `scores`, `labels`,
            `label_names` and `segments` in seconds, without NMS.
        nms_settings: settings of the per-video NMS (default: `PostProcessingSettings()`).
        threshold, top_k: as in `post_process_temporal_detection`, applied to each merged video.

    Returns:
        One dict per video, in order of first appearance.
    """
    check_threshold_and_top_k(threshold, top_k)
    if nms_settings is None:
        nms_settings = PostProcessingSettings()
    if isinstance(nms_settings, PostProcessingSettings):
        nms_settings = nms_settings.nms_settings()
    by_video: dict[str, list[dict]] = {}
    for window in window_results:
        by_video.setdefault(window["video_id"], []).append(window)
    candidates, name_orders, ids_of_names = [], [], []
    for windows in by_video.values():
        names = [name for w in windows for name in w["label_names"]]
        ids = torch.cat([w["labels"].reshape(-1).long() for w in windows]).tolist()
        name_order = list(dict.fromkeys(names))  # labels numbered by first appearance, as OpenTAD
        number_of_name = {name: number for number, name in enumerate(name_order)}
        group = torch.tensor([number_of_name[n] for n in names], dtype=torch.long)
        segments = torch.cat([w["segments"].reshape(-1, 2).float() for w in windows])
        scores = torch.cat([w["scores"].reshape(-1).float() for w in windows])
        candidates.append((segments, scores, group))
        name_orders.append(name_order)
        ids_of_names.append(dict(zip(names, ids)))

    merged = []
    nms_results = batched_nms_videos(candidates, nms_settings)
    for video_id, (segments, scores, group), name_order, id_of_name in zip(
        by_video, nms_results, name_orders, ids_of_names
    ):
        segments, scores = _round_like_opentad(segments, scores)
        label_names = [name_order[g] for g in group.tolist()]
        result = {
            "video_id": video_id,
            "scores": scores,
            "labels": torch.tensor([id_of_name[n] for n in label_names], dtype=torch.long),
            "label_names": label_names,
            "segments": segments,
        }
        merged.append(keep_best_detections(result, threshold, top_k))
    return merged


def post_process_temporal_detection(
    outputs: Any,
    video_metas: Sequence[Mapping[str, Any]],
    *,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    threshold: float = 0.0,
    top_k: int | None = None,
    settings: PostProcessingSettings | None = None,
    sliding_window: bool = False,
    merge_windows: bool = True,
    video_classifier: ExternalVideoClassifier | None = None,
    **setting_overrides,
) -> list[dict]:
    """Raw detector outputs -> detections in seconds, one dict per video.

    Args:
        outputs: either the model output (`AdaTADTemporalDetectionOutput` or any mapping/object with
            per-level `logits`, `pred_offsets`, `points`, `feature_mask`), or a mapping/object with
            per-video `proposals` (list of `(K_b, 2)`, grid units) and `scores` (list of
            `(K_b, num_classes)` probabilities), i.e. already decoded candidates.
        video_metas: one dict per batch entry (`AdaTADVideoProcessor.video_meta`): `video_id`, `duration` (s),
            `sampling_method` (`"resize"`: with `resize_length`; else with `fps`, `snippet_stride`,
            `window_start_frame` (default 0) and `offset_frames` (default 0)).
        class_names: names of the detector's classes: a list (index = label id) or a mapping
            `{label_id: name}` such as `config.id2label`. Required unless `video_classifier` provides
            the labels.
        threshold: keep detections scoring at least this (after NMS; default 0: keep the whole ranked list,
            which is what mAP evaluation needs).
        top_k: keep at most this many detections per video, the best ones (after NMS and `threshold`;
            default None: no cap beyond `max_segments`).
        settings: the `PostProcessingSettings` to use (default: `PostProcessingSettings()`).
        setting_overrides: any `PostProcessingSettings` field by name (e.g. `nms_sigma=0.5`), replacing the
            one in `settings`.
        sliding_window: batch entries are windows (THUMOS/EPIC/Ego4D style): no NMS per window;
            windows of the same video are merged with one NMS on the rounded seconds.
        merge_windows: with `sliding_window`, `False` returns one un-merged dict per window, to be
            merged later with `merge_sliding_windows` (which then takes `threshold` and `top_k`) once all
            windows of a video are collected.
        video_classifier: optional `ExternalVideoClassifier` fused after NMS (ActivityNet).

    Returns:
        List of `{"video_id": str, "scores": (N,) float32, "labels": (N,) int64, "label_names":
        list[str], "segments": (N, 2) float32 seconds}`, sorted by descending score (with a
        video classifier: class by class), rounded like OpenTAD (2 decimals seconds, 4 decimals
        scores). With a video classifier, `labels` index the classifier's class names. The list can be
        passed as-is as `predictions` to the `temporal_detection_map` metric (`adatad.evaluation.metric_path()`).
    """
    unknown = sorted(set(setting_overrides) - set(PostProcessingSettings.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"post_process_temporal_detection() got unknown arguments {unknown}; post-processing settings are "
            f"{sorted(PostProcessingSettings.__dataclass_fields__)}."
        )
    settings = replace(settings or PostProcessingSettings(), **setting_overrides)
    check_threshold_and_top_k(threshold, top_k)
    if sliding_window and not merge_windows and (threshold > 0 or top_k is not None):
        raise ValueError(
            "`threshold`/`top_k` apply to whole videos: with merge_windows=False pass them to merge_sliding_windows."
        )
    nms_settings = settings.nms_settings()
    if isinstance(class_names, Mapping):
        class_names = [class_names[i] for i in range(len(class_names))]
    if _field(outputs, "proposals") is not None:
        proposals, scores = list(_field(outputs, "proposals")), list(_field(outputs, "scores"))
    else:
        fields = {name: _field(outputs, name) for name in ("logits", "pred_offsets", "points", "feature_mask")}
        missing = [name for name, value in fields.items() if value is None]
        if missing:
            raise ValueError(
                f"`outputs` lacks {missing}: pass the model output (logits, pred_offsets, points, feature_mask) "
                "or decoded candidates (proposals, scores)."
            )
        proposals, scores = decode_candidates(**fields)
    if not (len(proposals) == len(scores) == len(video_metas)):
        raise ValueError(
            f"got {len(proposals)} proposal sets, {len(scores)} score sets and {len(video_metas)} video metas; "
            "pass one meta per batch entry."
        )
    video_ids = [_video_id(meta, i) for i, meta in enumerate(video_metas)]
    if not sliding_window and len(set(video_ids)) != len(video_ids):
        raise ValueError(
            f"video ids repeat in one batch ({video_ids}); for windows of one video pass sliding_window=True."
        )
    for b, (video_scores, meta) in enumerate(zip(scores, video_metas)):
        num_classes = video_scores.shape[-1]
        if video_classifier is None and (class_names is None or len(class_names) != num_classes):
            raise ValueError(
                f"`class_names` must name the detector's {num_classes} classes (got "
                f"{None if class_names is None else len(class_names)} names) "
                "unless a `video_classifier` gives the labels."
            )
        check_finite_candidates(proposals[b], video_scores, video_ids[b], meta)

    candidates = [
        select_pre_nms_candidates(
            proposals[b].detach().cpu().float(),
            scores[b].detach().cpu().float(),
            settings.pre_nms_thresh,
            settings.pre_nms_topk,
        )
        for b in range(len(video_metas))
    ]
    if not sliding_window:
        # windows are NMS'd only after merging; whole videos now, all in one batched call
        candidates = batched_nms_videos(candidates, nms_settings)
    entries = [
        _finish_entry(*candidates[b], video_metas[b], video_ids[b], class_names, video_classifier)
        for b in range(len(video_metas))
    ]
    if sliding_window and merge_windows:
        return merge_sliding_windows(entries, nms_settings, threshold=threshold, top_k=top_k)
    if sliding_window:
        return entries
    return [keep_best_detections(entry, threshold, top_k) for entry in entries]


class NonFiniteDetectorOutputError(FloatingPointError):
    """The detector produced NaN or infinite scores for a video (or one of its windows)."""

    def __init__(self, video_id: str, window_start_frame: int | None, count: int, total: int):
        self.video_id = video_id
        self.window_start_frame = window_start_frame
        where = f"video {video_id!r}" + (
            "" if window_start_frame is None else f", window starting at frame {window_start_frame}"
        )
        super().__init__(
            f"{where}: {count} of {total} detector scores and segment bounds are NaN or infinite (a damaged "
            "checkpoint, or an fp16 "
            "overflow: try fp32); no detections can be trusted there."
        )


def check_finite_candidates(
    proposals: torch.Tensor, scores: torch.Tensor, video_id: str, meta: Mapping[str, Any]
) -> None:
    """Raises `NonFiniteDetectorOutputError` naming the video and window when candidate segments or scores hold
    NaN or infinity (the score threshold would otherwise drop them silently and report no detections)."""
    finite = torch.cat([torch.isfinite(proposals).reshape(-1), torch.isfinite(scores).reshape(-1)])
    if not bool(finite.all()):
        window = meta.get("window_start_frame") if meta.get("sampling_method") != "resize" else None
        raise NonFiniteDetectorOutputError(video_id, window, int((~finite).sum()), finite.numel())


def to_activitynet_submission(results: Sequence[dict]) -> dict[str, list[dict]]:
    """`{video_id: [{"segment": [start, end], "label": name, "score": score}, ...]}` (the `results`
    part of an ActivityNet submission), rounded as OpenTAD writes it. Entries of repeated video ids
    are appended in order."""
    submission: dict[str, list[dict]] = {}
    for result in results:
        detections = submission.setdefault(result["video_id"], [])
        for (start, end), name, score in zip(
            result["segments"].tolist(), result["label_names"], result["scores"].tolist()
        ):
            detections.append({"segment": [round(start, 2), round(end, 2)], "label": name, "score": round(score, 4)})
    return submission
