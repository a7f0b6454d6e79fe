"""Post-processing of AdaTAD detector outputs: candidate segments -> action segments in seconds.

The pipeline reproduces OpenTAD's (`SingleStageDetector.post_processing`, `batched_nms` and its C++
soft-NMS, `convert_to_seconds` (here `time_grid.video_meta_to_seconds`), the external classifiers and the
sliding-window merge of the test engine) in PyTorch and numpy (the NMS engine is `adatad/nms.py`):

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

from .nms import SOFT_NMS_METHODS, hard_nms_groups, soft_nms_groups
from .time_grid import video_meta_to_seconds

NMSMethod = Literal["gaussian", "linear", "improved_gaussian", "vanilla", "hard", "none"]
# Votes are computed in row blocks so that memory stays bounded for many thousand candidates.
_VOTING_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class PostProcessingSettings:
    """The post-processing settings and their one set of defaults (OpenTAD's AdaTAD values), one name per knob.

    A preset's `post_processing` section, `AdaTADVideoProcessor`'s attributes (saved in
    `video_preprocessor_config.json`), the keyword arguments of `post_process_temporal_detection` and the NMS
    functions below all use these names; OpenTAD's names appear only in the OpenTAD converter.

    Args:
        pre_nms_thresh: candidates (point, class) with a score below this are dropped before NMS.
        pre_nms_topk: at most this many candidates per video (or window) go into NMS.
        nms_method: `"gaussian"` (OpenTAD `method=2`, the only one AdaTAD configs use): every remaining
            candidate's score is multiplied by `exp(-iou**2 / nms_sigma)`; `"linear"` (`method=1`):
            by `1 - iou` when `iou >= nms_iou_threshold`; `"improved_gaussian"` (`method=3`, BMN): the
            Gaussian decay only when `iou >= nms_t1 + nms_t2 * length_of_picked_segment`; `"vanilla"`
            (`method=0`): score set to 0 when `iou >= nms_iou_threshold` (the segment stays, with score
            0, unless `min_score > 0`); `"hard"` (`use_soft_nms=False`): classic greedy NMS that drops
            segments with `iou >= nms_iou_threshold`; `"none"` (OpenTAD `nms=None`): no NMS at all.
        nms_sigma: Gaussian decay parameter. Note the decay divides by `nms_sigma`, not `2 * nms_sigma**2`.
        min_score: soft-NMS drops a candidate as soon as its decayed score falls below this value;
            hard NMS first keeps only scores strictly above it (when it is > 0).
        max_segments: OpenTAD's `max_seg_num`: cap per class (multiclass) and on the merged result.
        multiclass: NMS per class independently (`True`) or once over all classes (`False`).
        voting_thresh: class-agnostic mode only: when > 0, every kept segment is replaced by the
            score-weighted mean of all input candidates with IoU >= `voting_thresh` with it.
        nms_iou_threshold, nms_t1, nms_t2: see `nms_method`.
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
        allowed = SOFT_NMS_METHODS + ("hard", "none")
        if self.nms_method not in allowed:
            raise ValueError(f"`nms_method` must be one of {allowed}, got {self.nms_method!r}.")
        if self.nms_method in ("gaussian", "improved_gaussian") and not self.nms_sigma > 0:
            raise ValueError(f"`nms_sigma` must be > 0 for Gaussian soft-NMS, got {self.nms_sigma}.")
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


def decode_segments(points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Stride-unit distances to start and end -> (start, end) on the feature grid, for the detector's loss and for
    `decode_candidates`: `start = position - offset_start * stride`, `end = position + offset_end * stride`.

    Args:
        points: `(num_points, 4)` = (position, reg_range_min, reg_range_max, stride).
        offsets: `(..., num_points, 2)` distances in units of each point's stride.

    Returns:
        `(..., num_points, 2)` segments in feature-grid units (not clipped).
    """
    starts = points[:, 0] - offsets[..., 0] * points[:, 3]
    ends = points[:, 0] + offsets[..., 1] * points[:, 3]
    return torch.stack((starts, ends), dim=-1)


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
    proposals = decode_segments(all_points, offsets)  # (batch_size, num_points, 2)
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


def soft_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    settings: PostProcessingSettings = PostProcessingSettings(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS, run independently for every group of candidates, with the results of OpenTAD's C++
    `softnms_1d_cpu`: its float32 arithmetic (length = end - start + 1e-6, IoU = inter / (len_a + len_b -
    inter), glibc's `expf` for the Gaussian decay), its drops below `min_score` and its tie-breaking.
    The cost grows with the number of overlapping candidate pairs, not with the square of the number of
    candidates (`adatad.nms` says how).

    Args:
        segments: `(num_candidates, 2)` float32 (start, end).
        scores: `(num_candidates,)` float32.
        group_ids: `(num_candidates,)` integer group of each candidate (the class for per-class NMS);
            `None` = one group.
        settings: `PostProcessingSettings` with a soft `nms_method` (`gaussian`, `linear`, `improved_gaussian`,
            `vanilla`).

    Returns:
        `(keep, kept_scores)`: candidate indices and their decayed scores, grouped by ascending
        group id and, inside a group, in selection order (non-increasing scores).
    """
    if settings.nms_method not in SOFT_NMS_METHODS:
        raise ValueError(f"`soft_nms` needs a soft method {SOFT_NMS_METHODS}, got {settings.nms_method!r}.")
    segments = segments.detach().cpu().float().reshape(-1, 2).numpy()
    scores = scores.detach().cpu().float().reshape(-1).numpy()
    if group_ids is None:
        group_ids = np.zeros(scores.shape[0], dtype=np.int64)
    else:
        group_ids = group_ids.detach().cpu().long().reshape(-1).numpy()
    keep, kept_scores = soft_nms_groups(
        segments,
        scores,
        group_ids,
        method=settings.nms_method,
        sigma=settings.nms_sigma,
        min_score=settings.min_score,
        iou_threshold=settings.nms_iou_threshold,
        t1=settings.nms_t1,
        t2=settings.nms_t2,
    )
    return torch.from_numpy(keep), torch.from_numpy(kept_scores)


def hard_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    settings: PostProcessingSettings = PostProcessingSettings(nms_method="hard"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS per group (OpenTAD `use_soft_nms=False`): candidates sorted by score, each kept one
    removes the later ones with IoU >= `iou_threshold`. With `min_score > 0` only scores strictly above
    it enter. Same return layout as `soft_nms` (scores unchanged)."""
    scores = scores.detach().cpu().float().reshape(-1)
    if group_ids is None:
        group_ids = torch.zeros(scores.shape[0], dtype=torch.long)
    keep = hard_nms_groups(
        segments.detach().cpu().float().reshape(-1, 2).numpy(),
        scores.numpy(),
        group_ids.detach().cpu().long().reshape(-1).numpy(),
        iou_threshold=settings.nms_iou_threshold,
        min_score=settings.min_score,
    )
    keep = torch.from_numpy(keep)
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
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, settings: PostProcessingSettings
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
    candidates: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], settings: PostProcessingSettings
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
    if settings.nms_method == "none" or not prepared:
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

    nms_function = hard_nms if settings.nms_method == "hard" else soft_nms
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
    nms_settings: PostProcessingSettings | None = None,
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
        candidates = batched_nms_videos(candidates, settings)
    entries = [
        _finish_entry(*candidates[b], video_metas[b], video_ids[b], class_names, video_classifier)
        for b in range(len(video_metas))
    ]
    if sliding_window and merge_windows:
        return merge_sliding_windows(entries, settings, threshold=threshold, top_k=top_k)
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
