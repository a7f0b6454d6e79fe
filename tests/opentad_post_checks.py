"""Parity check of adatad.post_processing against an OpenTAD fixture folder.

`check_post_processing(fixture_dir)` reads ONLY the folder's `config.json` -> `post_processing`
block (settings, video metas, class names), the recorded post-processing inputs
`head.proposals.{b}` / `head.scores.{b}` and the recorded outputs `post.pre_nms_*`, `post.nms_*`,
`post.seconds_segments.*` and `detections.json`, runs adatad's post-processing and asserts that every
stage matches within the fixture README's tolerances.

Comparison rule for the NMS output (README: "compare the NMS output sorted by score; scores atol
1e-4, segments atol 1e-3 (grid units) ... compare the top entries strictly and the tail loosely"):

* Entries are compared per NMS group (one class in multiclass NMS, everything in class-agnostic NMS),
  each group in selection order (= descending score). Across groups only scores/counts are compared,
  because near-equal scores of different classes may legitimately interleave differently.
* Soft-NMS makes later picks depend on earlier ones only through WHICH candidate is picked at each
  step. We rebuild the decayed-score trajectory of every group from the candidates and measure, at
  every pick, the margin between the picked score and the best remaining one. While every margin is
  at least `TIE_MARGIN_RELATIVE` (1e-5) times the picked score, the pick order is determined:
  float32 implementations differ by about 1e-7 relative per decay step (one ulp of exp and of the
  product), far below that margin. Those "top" entries must match position by position (label,
  score 1e-4, segment 1e-3 grid units, seconds, and the rounded detections).
* From the first pick decided by a smaller margin on (the "tail"), a different but equally valid
  tie-break may swap near-equal candidates. Since the IoU decay is symmetric, such a swap exchanges
  which segment carries which score but keeps the sequence of scores: the tail must have the same
  score sequence (1e-4), and every tail segment must exist among the other side's segments of the
  same group (1e-3). Counts must be equal, except for entries whose score is within 1e-4 of a
  cut-off (`min_score`, or the lowest kept score when `max_seg_num` capped the list).
* One documented deviation: OpenTAD's segment voting turns a zero-length segment (no voter, IoU 0/0)
  into NaN; adatad keeps the segment. Reference NaN segments therefore require a zero-length segment here.

Unknown keys in `post_processing` or its `nms` block make the check fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from adatad.opentad import meta_from_opentad
from adatad.post_processing import (
    PostProcessingSettings,
    batched_nms,
    post_process_temporal_detection,
    select_pre_nms_candidates,
    soft_nms,
    to_activitynet_submission,
)
from adatad.time_grid import video_meta_to_seconds

SCORE_ATOL = 1e-4
SEGMENT_ATOL = 1e-3  # feature-grid units
TIE_MARGIN_RELATIVE = 1e-5
PRE_NMS_ATOL = 1e-6  # pre-NMS candidates are copies of the recorded inputs

POST_PROCESSING_KEYS = {"pre_nms_thresh", "pre_nms_topk", "nms", "sliding_window", "metas", "class_names", "note"}
# OpenTAD `batched_nms` defaults, used for keys the fixture does not give.
NMS_DEFAULTS = {
    "iou_threshold": 0.0,
    "min_score": 0.0,
    "max_seg_num": 100,
    "use_soft_nms": True,
    "multiclass": True,
    "sigma": 0.5,
    "voting_thresh": 0.0,
    "method": 2,
    "t1": 0.0,
    "t2": 0.0,
}
SOFT_METHODS = {0: "vanilla", 1: "linear", 2: "gaussian", 3: "improved_gaussian"}
# Meta keys OpenTAD's post-processing reads (`video_name`, and those of its `convert_to_seconds`); it ignores the rest.
META_KEYS = ("fps", "duration", "resize_length", "snippet_stride", "offset_frames", "window_start_frame")


def read_post_processing_config(fixture_dir: Path) -> tuple[dict, PostProcessingSettings | None]:
    """Validated `post_processing` block and the matching `PostProcessingSettings` (None = OpenTAD `nms=None`)."""
    config_path = fixture_dir / "config.json"
    config = json.loads(config_path.read_text())
    if "post_processing" not in config:
        raise AssertionError(f"{config_path} has no 'post_processing' block")
    post = config["post_processing"]
    unknown = set(post) - POST_PROCESSING_KEYS
    if unknown:
        raise AssertionError(
            f"{config_path}: unknown post_processing settings {sorted(unknown)}; the check cannot honour them"
        )
    for key in ("metas", "class_names"):
        if key not in post:
            raise AssertionError(f"{config_path}: post_processing lacks {key!r}")
    if post.get("nms") is None:
        return post, None
    unknown = set(post["nms"]) - set(NMS_DEFAULTS)
    if unknown:
        raise AssertionError(f"{config_path}: unknown post_processing.nms settings {sorted(unknown)}")
    nms = {**NMS_DEFAULTS, **post["nms"]}
    if nms["use_soft_nms"]:
        if nms["method"] not in SOFT_METHODS:
            raise AssertionError(f"{config_path}: unknown soft-NMS method {nms['method']!r} (OpenTAD knows 0-3)")
        method = SOFT_METHODS[nms["method"]]
    else:
        method = "hard"
    settings = PostProcessingSettings(
        nms_method=method,
        nms_sigma=nms["sigma"],
        min_score=nms["min_score"],
        max_segments=nms["max_seg_num"],
        multiclass=nms["multiclass"],
        voting_thresh=nms["voting_thresh"],
        nms_iou_threshold=nms["iou_threshold"],
        nms_t1=nms["t1"],
        nms_t2=nms["t2"],
    )
    return post, settings


def adatad_meta(meta: dict, index: int, config_path: Path) -> dict:
    if "video_name" not in meta:
        raise AssertionError(f"{config_path}: post_processing.metas[{index}] has no 'video_name'")
    return meta_from_opentad({key: meta[key] for key in ("video_name", *META_KEYS) if key in meta})


def seconds_per_grid_unit(meta: dict) -> float:
    if meta["sampling_method"] == "resize":
        return meta["duration"] / meta["resize_length"]
    return meta["snippet_stride"] / meta["fps"]


def pick_margins(
    segments: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    keep: torch.Tensor,
    settings: PostProcessingSettings,
) -> torch.Tensor:
    """For every pick of `keep` (soft-NMS order), the margin between its score at selection time and
    the best other candidate of its group still in play then. Rebuilt independently of the step loop:
    score of candidate c before pick j = original score * prod_{i<j} decay(pick_i, c)."""
    margins = torch.full((keep.shape[0],), float("inf"))
    for group in torch.unique(groups[keep]):
        pick_positions = torch.where(groups[keep] == group)[0]
        picks = keep[pick_positions]
        members = torch.where(groups == group)[0]
        if members.shape[0] < 2:
            continue
        seg, seg_picks = segments[members].double(), segments[picks].double()
        lengths = seg[:, 1] - seg[:, 0] + 1e-6
        pick_lengths = seg_picks[:, 1] - seg_picks[:, 0] + 1e-6
        inter = (
            torch.minimum(seg_picks[:, None, 1], seg[None, :, 1])
            - torch.maximum(seg_picks[:, None, 0], seg[None, :, 0])
        ).clamp(min=0)
        ovr = inter / (pick_lengths[:, None] + lengths[None] - inter)  # (num_picks, num_members)
        if settings.nms_method == "gaussian":
            decay = torch.exp(-(ovr**2) / settings.nms_sigma)
        elif settings.nms_method == "improved_gaussian":
            decay = torch.where(
                ovr >= settings.nms_t1 + settings.nms_t2 * pick_lengths[:, None],
                torch.exp(-(ovr**2) / settings.nms_sigma),
                1.0,
            )
        elif settings.nms_method == "linear":
            decay = torch.where(ovr >= settings.nms_iou_threshold, 1 - ovr, 1.0)
        else:
            decay = torch.where(ovr >= settings.nms_iou_threshold, 0.0, 1.0)
        before_pick = torch.cat((torch.ones(1, members.shape[0], dtype=torch.float64), torch.cumprod(decay, 0)[:-1]))
        trajectory = scores[members].double()[None] * before_pick  # score of each member before each pick
        member_position = {int(m): k for k, m in enumerate(members)}
        picked_at = torch.full((members.shape[0],), picks.shape[0])
        for step, pick in enumerate(picks.tolist()):
            picked_at[member_position[pick]] = step
        steps = torch.arange(picks.shape[0])[:, None]
        # a member competes at step j if not picked before or at j and not yet dropped below min_score
        competing = (picked_at[None] > steps) & (trajectory >= settings.min_score - 1e-12)
        best_other = trajectory.masked_fill(~competing, float("-inf")).max(dim=1).values
        picked_score = trajectory[torch.arange(picks.shape[0]), [member_position[p] for p in picks.tolist()]]
        margins[pick_positions] = (picked_score - best_other).float()
    return margins


def _near_cutoff(scores: torch.Tensor, cutoff: float | None) -> int:
    return 0 if cutoff is None else int(((scores - cutoff).abs() <= SCORE_ATOL).sum())


def compare_nms_outputs(
    where: str,
    mine: dict,
    reference: dict,
    fragile_from: dict,
    settings: PostProcessingSettings,
    seconds_atol: float,
) -> list[tuple[int, int]]:
    """Applies the module docstring's rule; `mine`/`reference` hold `segments`, `scores`, `labels`,
    `seconds` of one video in output order. Returns (reference index, my index) pairs of the strict part."""
    errors = []
    strict_pairs = []
    multiclass = settings.multiclass and settings.nms_method != "none"
    capped = reference["scores"].shape[0] >= settings.max_segments or mine["scores"].shape[0] >= settings.max_segments
    lowest = (
        min(float(reference["scores"].min()), float(mine["scores"].min()))
        if capped and reference["scores"].numel()
        else None
    )
    min_score_cutoff = settings.min_score if settings.min_score > 0 and settings.nms_method != "hard" else None
    allowed_count_difference = _near_cutoff(reference["scores"], min_score_cutoff) + _near_cutoff(
        reference["scores"], lowest
    )
    if abs(reference["scores"].shape[0] - mine["scores"].shape[0]) > allowed_count_difference:
        errors.append(f"{reference['scores'].shape[0]} reference detections, {mine['scores'].shape[0]} here")

    groups = torch.unique(torch.cat((reference["labels"], mine["labels"]))) if multiclass else [None]
    for group in groups:
        ref_index = (
            torch.arange(reference["labels"].shape[0])
            if group is None
            else torch.where(reference["labels"] == group)[0]
        )
        my_index = torch.arange(mine["labels"].shape[0]) if group is None else torch.where(mine["labels"] == group)[0]
        name = "all classes" if group is None else f"class {int(group)}"
        strict = min(
            fragile_from.get(None if group is None else int(group), math.inf), ref_index.shape[0], my_index.shape[0]
        )
        for k in range(int(strict)):
            r, m = int(ref_index[k]), int(my_index[k])
            if reference["labels"][r] != mine["labels"][m]:
                errors.append(
                    f"{name} pick {k}: label {int(mine['labels'][m])} vs reference {int(reference['labels'][r])}"
                )
            if abs(float(reference["scores"][r] - mine["scores"][m])) > SCORE_ATOL:
                errors.append(
                    f"{name} pick {k}: score {float(mine['scores'][m]):.6g} "
                    f"vs reference {float(reference['scores'][r]):.6g}"
                )
            if torch.isnan(reference["segments"][r]).any():
                # OpenTAD's voting gives NaN to a zero-length segment (no voter); adatad keeps the segment
                if mine["segments"][m][0] != mine["segments"][m][1]:
                    errors.append(
                        f"{name} pick {k}: reference NaN (zero-length voting) "
                        f"but segment {mine['segments'][m].tolist()}"
                    )
                strict_pairs.append((r, m))
                continue
            if (reference["segments"][r] - mine["segments"][m]).abs().max() > SEGMENT_ATOL:
                errors.append(
                    f"{name} pick {k}: segment {mine['segments'][m].tolist()} "
                    f"vs reference {reference['segments'][r].tolist()}"
                )
            if (reference["seconds"][r] - mine["seconds"][m]).abs().max() > seconds_atol:
                errors.append(
                    f"{name} pick {k}: seconds {mine['seconds'][m].tolist()} "
                    f"vs reference {reference['seconds'][r].tolist()}"
                )
            strict_pairs.append((r, m))
        # tail: same score sequence, segments present on the other side (boundary entries excepted)
        ref_tail, my_tail = ref_index[int(strict) :], my_index[int(strict) :]
        common = min(ref_tail.shape[0], my_tail.shape[0])
        score_gap = (reference["scores"][ref_tail[:common]] - mine["scores"][my_tail[:common]]).abs()
        if common and score_gap.max() > SCORE_ATOL:
            errors.append(f"{name} tail: scores differ by up to {float(score_gap.max()):.3g}")
        for side, this, tail, other, other_index in (
            ("here", mine, my_tail, reference, ref_index),
            ("in the reference", reference, ref_tail, mine, my_index),
        ):
            for t in tail.tolist():
                score = float(this["scores"][t])
                at_boundary = (min_score_cutoff is not None and abs(score - min_score_cutoff) <= SCORE_ATOL) or (
                    lowest is not None and abs(score - lowest) <= SCORE_ATOL
                )
                distances = (other["segments"][other_index] - this["segments"][t]).abs().amax(dim=1)
                if not at_boundary and (distances.numel() == 0 or distances.min() > SEGMENT_ATOL):
                    errors.append(f"{name} tail: segment {this['segments'][t].tolist()} ({side}) has no counterpart")
    if errors:
        shown = "\n  ".join(errors[:20])
        raise AssertionError(f"{where}: NMS output differs from OpenTAD ({len(errors)} problems):\n  {shown}")
    return strict_pairs


def _rounded_close(mine: float, reference: float, reference_unrounded: float, decimals: int, atol: float) -> bool:
    """Equal after rounding, or one rounding unit apart because the true value sits within `atol` of a
    rounding midpoint."""
    unit = 10.0**-decimals
    if abs(mine - reference) <= 1e-9:
        return True
    midpoint_distance = abs((reference_unrounded / unit) % 1.0 - 0.5) * unit
    return abs(mine - reference) <= unit + 1e-9 and midpoint_distance <= atol


def compare_detection_entries(
    where: str, mine: list, reference: list, pairs, reference_scores, reference_seconds, seconds_atol
):
    errors = []
    for r, m in pairs:
        theirs, ours = reference[r], mine[m]
        if ours["label"] != theirs["label"]:
            errors.append(f"entry {r}: label {ours['label']!r} vs {theirs['label']!r}")
        if not _rounded_close(ours["score"], theirs["score"], float(reference_scores[r]), 4, SCORE_ATOL):
            errors.append(f"entry {r}: score {ours['score']} vs {theirs['score']}")
        if any(math.isnan(value) for value in theirs["segment"]):
            continue  # zero-length segment voted to NaN by OpenTAD (see compare_nms_outputs)
        for k in range(2):
            if not _rounded_close(
                ours["segment"][k], theirs["segment"][k], float(reference_seconds[r][k]), 2, seconds_atol
            ):
                errors.append(f"entry {r}: segment {ours['segment']} vs {theirs['segment']}")
                break
    if errors:
        raise AssertionError(
            f"{where}: detections.json differs ({len(errors)} problems):\n  " + "\n  ".join(errors[:20])
        )


def check_post_processing(fixture_dir: Path) -> None:
    """Asserts that adatad's post-processing reproduces the fixture's recorded OpenTAD post-processing."""
    fixture_dir = Path(fixture_dir)
    config_path = fixture_dir / "config.json"
    post, settings = read_post_processing_config(fixture_dir)
    outputs = load_file(fixture_dir / "outputs.safetensors")
    detections = json.loads((fixture_dir / "detections.json").read_text())
    num_entries = sum(1 for key in outputs if key.startswith("head.proposals."))
    if num_entries != len(post["metas"]):
        raise AssertionError(f"{fixture_dir}: {num_entries} recorded proposal sets but {len(post['metas'])} metas")
    metas = [adatad_meta(meta, i, config_path) for i, meta in enumerate(post["metas"])]
    sliding = bool(post.get("sliding_window", False))
    pre_nms_thresh = post.get("pre_nms_thresh", 0.001)
    pre_nms_topk = post.get("pre_nms_topk", 2000)
    proposals = [outputs[f"head.proposals.{b}"] for b in range(num_entries)]
    scores = [outputs[f"head.scores.{b}"] for b in range(num_entries)]

    # whole pipeline, driven by the same settings
    settings_kwargs = {}
    if settings is not None:
        settings_kwargs = dict(settings=settings)
    else:
        settings_kwargs = dict(nms_method="none")
    results = post_process_temporal_detection(
        {"proposals": proposals, "scores": scores},
        metas,
        class_names=post["class_names"],
        pre_nms_thresh=pre_nms_thresh,
        pre_nms_topk=pre_nms_topk,
        sliding_window=sliding,
        merge_windows=False,  # OpenTAD's post_processing (what detections.json records) does not merge windows
        **settings_kwargs,
    )
    submission = to_activitynet_submission(results)
    if set(submission) != set(detections):
        raise AssertionError(
            f"{fixture_dir}: videos {sorted(submission)} here, {sorted(detections)} in detections.json"
        )

    offset_in_video: dict[str, int] = {}
    for b in range(num_entries):
        where = f"{fixture_dir.name} entry {b} ({metas[b]['video_id']})"
        segments, pre_scores, labels = select_pre_nms_candidates(proposals[b], scores[b], pre_nms_thresh, pre_nms_topk)
        for name, value in (("segments", segments), ("scores", pre_scores), ("labels", labels)):
            expected = outputs[f"post.pre_nms_{name}.{b}"]
            if expected.shape != value.shape or not torch.allclose(
                value.double(), expected.double(), atol=PRE_NMS_ATOL, rtol=0
            ):
                raise AssertionError(f"{where}: pre-NMS {name} differ from post.pre_nms_{name}.{b}")

        seconds_atol = SEGMENT_ATOL * seconds_per_grid_unit(metas[b]) + 1e-6 * max(1.0, float(metas[b]["duration"]))
        has_nms_record = f"post.nms_scores.{b}" in outputs
        if sliding or settings is None:
            if has_nms_record:
                raise AssertionError(
                    f"{where}: post.nms_* recorded although OpenTAD runs no NMS here (sliding window or nms=None)"
                )
            reference = {"segments": segments, "scores": pre_scores, "labels": labels}
            pairs = [(k, k) for k in range(pre_scores.shape[0])]
        else:
            if not has_nms_record:
                raise AssertionError(f"{where}: outputs.safetensors lacks post.nms_*.{b}")
            reference = {name: outputs[f"post.nms_{name}.{b}"] for name in ("segments", "scores", "labels")}
            reference["labels"] = reference["labels"].long()
            nms_segments, nms_scores, nms_labels = batched_nms(segments, pre_scores, labels, settings)
            fragile_from = {}
            if settings.nms_method not in ("hard", "none"):
                groups = labels if settings.multiclass else torch.zeros_like(labels)
                keep, my_pick_scores = soft_nms(segments, pre_scores, groups, settings)
                margins = pick_margins(segments, pre_scores, groups, keep, settings)
                for group in torch.unique(groups[keep]).tolist():
                    in_group = torch.where(groups[keep] == group)[0]
                    picked_scores = my_pick_scores[in_group]
                    fragile = torch.where(margins[in_group] < TIE_MARGIN_RELATIVE * picked_scores)[0]
                    key = group if settings.multiclass else None
                    fragile_from[key] = int(fragile[0]) if fragile.numel() else math.inf
            mine = {
                "segments": nms_segments,
                "scores": nms_scores,
                "labels": nms_labels.long(),
                "seconds": video_meta_to_seconds(nms_segments, metas[b]),
            }
            reference["seconds"] = outputs[f"post.seconds_segments.{b}"]
            pairs = compare_nms_outputs(where, mine, reference, fragile_from, settings, seconds_atol)
            segments = nms_segments

        reference_seconds = outputs[f"post.seconds_segments.{b}"]
        if sliding or settings is None:
            my_seconds = video_meta_to_seconds(segments, metas[b])
            if (
                my_seconds.shape != reference_seconds.shape
                or (my_seconds - reference_seconds).abs().max() > seconds_atol
            ):
                raise AssertionError(f"{where}: seconds differ from post.seconds_segments.{b}")

        # detections.json: OpenTAD appends the entries of every batch entry of a video in order
        video_id = metas[b]["video_id"]
        start = offset_in_video.get(video_id, 0)
        count = outputs[f"post.seconds_segments.{b}"].shape[0]
        my_count = results[b]["scores"].shape[0]
        offset_in_video[video_id] = start + count
        reference_entries = detections[video_id][start : start + count]
        my_start = sum(results[k]["scores"].shape[0] for k in range(b) if results[k]["video_id"] == video_id)
        my_entries = submission[video_id][my_start : my_start + my_count]
        if len(reference_entries) != count:
            raise AssertionError(
                f"{where}: detections.json has {len(reference_entries)} entries where post.* has {count}"
            )
        compare_detection_entries(
            where, my_entries, reference_entries, pairs, reference["scores"], reference_seconds, seconds_atol
        )
    for video_id, entries in detections.items():
        if offset_in_video.get(video_id, 0) != len(entries):
            raise AssertionError(
                f"{fixture_dir.name}: detections.json has {len(entries)} entries for {video_id}, "
                f"post.* account for {offset_in_video.get(video_id, 0)}"
            )
