"""Tests of adatad.post_processing on hand-built cases and the public OpenTAD fixture tensors."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from adatad.post_processing import (
    ExternalVideoClassifier,
    NonFiniteDetectorOutputError,
    PostProcessingSettings,
    batched_nms,
    batched_nms_videos,
    decode_candidates,
    decode_segments,
    hard_nms,
    merge_sliding_windows,
    post_process_temporal_detection,
    segment_voting,
    select_pre_nms_candidates,
    soft_nms,
    to_activitynet_submission,
)
from adatad.nms import _soft_nms_rounds, expf
from adatad.time_grid import video_meta_to_seconds
from opentad_post_checks import check_post_processing

METHOD_CODES = {"vanilla": 0, "linear": 1, "gaussian": 2, "improved_gaussian": 3}


def scalar_soft_nms(segments, scores, method, sigma=0.5, min_score=0.0, iou_threshold=0.0, t1=0.0, t2=0.0):
    """Scalar float32 soft-NMS written from the description of OpenTAD's C++ loop (one candidate at a
    time, swap of the best into place, dropped candidates overwritten by the last one in play).
    Returns (candidate indices in pick order, picked scores)."""
    f32 = np.float32
    starts = [f32(s) for s, _ in segments]
    ends = [f32(e) for _, e in segments]
    current = [f32(s) for s in scores]
    lengths = [ends[k] - starts[k] + f32(1e-6) for k in range(len(segments))]
    index = list(range(len(segments)))
    arrays = (starts, ends, current, lengths, index)
    picks, picked_scores = [], []
    count, step = len(segments), 0
    while step < count:
        best = step
        for position in range(step + 1, count):
            if current[best] < current[position]:
                best = position
        for array in arrays:
            array[step], array[best] = array[best], array[step]
        picks.append(index[step])
        picked_scores.append(float(current[step]))
        position = step + 1
        while position < count:
            inter = max(f32(0), min(ends[step], ends[position]) - max(starts[step], starts[position]))
            ovr = inter / (lengths[step] + lengths[position] - inter)
            weight = f32(1)
            if METHOD_CODES[method] == 0 and ovr >= iou_threshold:
                weight = f32(0)
            elif METHOD_CODES[method] == 1 and ovr >= iou_threshold:
                weight = f32(1) - ovr
            elif METHOD_CODES[method] == 2:
                weight = f32(np.exp(-(ovr * ovr) / f32(sigma)))
            elif METHOD_CODES[method] == 3 and ovr >= f32(t1) + f32(t2) * lengths[step]:
                weight = f32(np.exp(-(ovr * ovr) / f32(sigma)))
            current[position] = current[position] * weight
            if current[position] < f32(min_score):
                for array in arrays:
                    array[position] = array[count - 1]
                count -= 1
                continue
            position += 1
        step += 1
    return picks, picked_scores


def grid_candidates(generator, num, num_score_levels):
    """Integer-grid segments and scores from a few levels, so that many scores tie exactly."""
    starts = torch.randint(0, 30, (num,), generator=generator).float()
    lengths = torch.randint(1, 8, (num,), generator=generator).float()
    scores = (torch.randint(1, num_score_levels + 1, (num,), generator=generator).float() / num_score_levels)
    return torch.stack((starts, starts + lengths), 1), scores


# ---------------------------------------------------------------------------------------------
# soft-NMS against the scalar reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "vanilla"])
@pytest.mark.parametrize("min_score", [0.0, 0.2])
def test_soft_nms_matches_scalar_loop_exactly_with_ties_and_drops(method, min_score):
    # linear / vanilla weights are plain IEEE arithmetic, so the match must be exact, including which
    # of several equal scores is picked first (depends on OpenTAD's swap layout after drops).
    generator = torch.Generator().manual_seed(3)
    settings = PostProcessingSettings(nms_method=method, min_score=min_score, nms_iou_threshold=0.3)
    for trial in range(15):
        segments, scores = grid_candidates(generator, 40, 4)
        keep, kept_scores = soft_nms(segments, scores, None, settings)
        picks, picked_scores = scalar_soft_nms(
            segments.tolist(), scores.tolist(), method, min_score=min_score, iou_threshold=0.3
        )
        assert keep.tolist() == picks, f"trial {trial}"
        assert kept_scores.tolist() == picked_scores
    if min_score > 0:
        assert len(picks) < 40  # the drops were exercised


@pytest.mark.parametrize("method", ["gaussian", "improved_gaussian"])
def test_soft_nms_gaussian_matches_scalar_loop(method):
    generator = torch.Generator().manual_seed(5)
    settings = PostProcessingSettings(nms_method=method, nms_sigma=0.7, min_score=0.05, nms_t1=0.1, nms_t2=0.02)
    for _ in range(10):
        segments, _ = grid_candidates(generator, 50, 4)
        scores = torch.rand(50, generator=generator)  # distinct scores: exp may differ by one ulp from libm
        keep, kept_scores = soft_nms(segments, scores, None, settings)
        picks, picked_scores = scalar_soft_nms(
            segments.tolist(), scores.tolist(), method, sigma=0.7, min_score=0.05, t1=0.1, t2=0.02
        )
        assert keep.tolist() == picks
        torch.testing.assert_close(kept_scores, torch.tensor(picked_scores), atol=1e-6, rtol=1e-5)


def test_soft_nms_groups_run_independently():
    generator = torch.Generator().manual_seed(7)
    segments, scores = grid_candidates(generator, 60, 5)
    groups = torch.randint(0, 4, (60,), generator=generator)
    settings = PostProcessingSettings(nms_method="linear", min_score=0.1, nms_iou_threshold=0.2)
    keep, kept_scores = soft_nms(segments, scores, groups, settings)
    expected_keep, expected_scores = [], []
    for group in range(4):
        members = torch.where(groups == group)[0]
        picks, picked = scalar_soft_nms(
            segments[members].tolist(), scores[members].tolist(), "linear", min_score=0.1, iou_threshold=0.2
        )
        expected_keep += members[picks].tolist()
        expected_scores += picked
    assert keep.tolist() == expected_keep
    assert kept_scores.tolist() == expected_scores


def test_gaussian_decay_by_hand():
    # iou([0, 10], [5, 15]) = 5 / 15; the second segment decays by exp(-iou^2 / sigma)
    segments = torch.tensor([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    keep, kept_scores = soft_nms(segments, scores, None, PostProcessingSettings(nms_sigma=0.7))
    assert keep.tolist() == [0, 1, 2]
    expected = 0.8 * math.exp(-((5 / 15) ** 2) / 0.7)
    assert kept_scores[1].item() == pytest.approx(expected, rel=1e-6)
    assert kept_scores[2].item() == pytest.approx(0.5)  # no overlap, no decay


def test_min_score_removes_decayed_segments():
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.002])
    # identical segment: 0.8 * exp(-1 / 0.5) = 0.108 stays above 0.1; the far one keeps 0.002
    keep, kept_scores = soft_nms(segments, scores, None, PostProcessingSettings(min_score=0.1))
    assert keep.tolist() == [0, 1]
    keep, _ = soft_nms(segments, scores, None, PostProcessingSettings(min_score=0.2))
    assert keep.tolist() == [0]


# glibc 2.36's expf (what OpenTAD's compiled loop calls for the Gaussian decay) on inputs where torch's or numpy's
# float32 exp, or exp in double precision rounded to float, give another float32: (x, expf(x)) as float.hex().
GLIBC_EXPF = [
    ("-0x1.6df7acp-9", "0x1.fe928cp-1"),
    ("-0x1.757f1ap-9", "0x1.fe8b0ap-1"),
    ("-0x1.947e9ep-9", "0x1.fe6c22p-1"),
    ("-0x1.9cbd30p-9", "0x1.fe63eap-1"),
    ("-0x1.b565d6p-14", "0x1.fff256p-1"),
    ("-0x1.ca2668p-14", "0x1.fff1aep-1"),
    ("-0x1.4c16bcp-13", "0x1.ffeb3ep-1"),
    ("-0x1.dbbdd0p-13", "0x1.ffe246p-1"),
    ("-0x1.000250p-25", "0x1.fffffep-1"),
    ("-0x1.000596p-25", "0x1.fffffep-1"),
    ("-0x1p+1", "0x1.152aaap-3"),  # exp(-2) = 0.1353352832...
    ("-0x0p+0", "0x1p+0"),
]


def test_expf_equals_glibc_expf():
    x = np.array([float.fromhex(a) for a, _ in GLIBC_EXPF], dtype=np.float32)
    expected = np.array([float.fromhex(b) for _, b in GLIBC_EXPF], dtype=np.float32)
    assert expf(x).tolist() == expected.tolist()
    assert expf(np.array([-200.0], dtype=np.float32)).tolist() == [0.0]  # underflows to +0 as glibc's


def reference_soft_nms(segments, scores, sigma, min_score):
    """OpenTAD's C++ soft-NMS loop written plainly (Gaussian decay), one step per pick with numpy over the
    remaining candidates: swap of the best (first on ties) into place, decay of all others, each dropped
    candidate overwritten by the last one in play. O(n^2). Returns (indices in pick order, picked scores)."""
    f32 = np.float32
    x1 = np.array(segments[:, 0], dtype=f32)
    x2 = np.array(segments[:, 1], dtype=f32)
    sc = np.array(scores, dtype=f32)
    area = (x2 - x1) + f32(1e-6)
    inds = np.arange(sc.shape[0])
    arrays = (x1, x2, sc, area, inds)
    count, picks, picked = sc.shape[0], [], []
    for step in range(sc.shape[0]):
        if step >= count:
            break
        best = step + int(np.argmax(sc[step:count]))
        for array in arrays:
            array[[step, best]] = array[[best, step]]
        picks.append(int(inds[step]))
        picked.append(float(sc[step]))
        rest = slice(step + 1, count)
        inter = np.maximum(f32(0), np.minimum(x2[step], x2[rest]) - np.maximum(x1[step], x1[rest]))
        ovr = inter / (area[step] + area[rest] - inter)
        sc[rest] *= expf(-(ovr * ovr) / f32(sigma))
        position = step + 1
        while True:
            below = np.flatnonzero(sc[position:count] < f32(min_score))
            if below.shape[0] == 0:
                break
            position += int(below[0])
            for array in arrays:
                array[position] = array[count - 1]
            count -= 1
    return picks, picked


def long_video_candidates(seed, video_seconds, rounded):
    """Candidates of a long synthetic video as a sliding-window detector gives them: 60 s windows every 30 s,
    each with a cloud of jittered candidates around the actions it sees and some background ones, 3 classes.
    `rounded`: seconds to 2 decimals and scores to 4, as windows are merged (many exact ties)."""
    rng = np.random.default_rng(seed)
    action_starts = rng.uniform(0, video_seconds, video_seconds // 20)
    actions = [(t, t + rng.uniform(1, 12), int(rng.integers(3))) for t in action_starts]
    segments, scores, labels = [], [], []
    for window_start in range(0, video_seconds - 30, 30):
        window_end = window_start + 60
        for start, end, label in actions:
            if start < window_end and end > window_start:
                k = 10
                segments += list(zip(start + rng.normal(0, 1, k), end + rng.normal(0, 1, k)))
                scores += list(rng.uniform(0.2, 0.9) * rng.uniform(0.3, 1, k))
                labels += [label] * k
        k = 40
        starts = rng.uniform(window_start, window_end, k)
        segments += list(zip(starts, starts + rng.uniform(0.3, 15, k)))
        scores += list(rng.uniform(0.0005, 0.2, k))
        labels += list(rng.integers(0, 3, k))
    segments = np.sort(np.array(segments, dtype=np.float32), axis=1)
    scores = np.array(scores, dtype=np.float32)
    if rounded:
        segments = np.array([[round(float(v), 2) for v in pair] for pair in segments], dtype=np.float32)
        scores = np.array([round(float(v), 4) for v in scores], dtype=np.float32)
    return torch.from_numpy(segments), torch.from_numpy(scores), torch.tensor(labels)


@pytest.mark.parametrize("rounded", [False, True])
def test_soft_nms_on_a_long_video_equals_the_plain_loop(rounded):
    segments, scores, labels = long_video_candidates(11, 600, rounded)
    assert segments.shape[0] > 1000
    settings = PostProcessingSettings(nms_sigma=0.5, min_score=0.001)
    keep, kept_scores = soft_nms(segments, scores, labels, settings)
    expected_keep, expected_scores = [], []
    for label in range(3):
        members = torch.where(labels == label)[0]
        picks, picked = reference_soft_nms(segments[members].numpy(), scores[members].numpy(), 0.5, 0.001)
        expected_keep += members[picks].tolist()
        expected_scores += picked
    assert keep.tolist() == expected_keep
    assert kept_scores.tolist() == expected_scores
    assert len(expected_keep) < segments.shape[0]  # drops below min_score happened
    # the rounds decide every class without the step loop: with rounded scores many picks tie exactly, and their
    # order comes from the replay of OpenTAD's memory layout
    *_, left = _soft_nms_rounds(
        segments[:, 0].numpy(), segments[:, 1].numpy(), scores.numpy(), labels.numpy(), method="gaussian",
        sigma=0.5, min_score=0.001, iou_threshold=0.0, t1=0.0, t2=0.0,
    )
    assert left.tolist() == []


def test_soft_nms_work_grows_linearly_with_video_length():
    # same density of candidates, twice the video: twice the overlapping pairs, each visited at most once per
    # direction, and about the same number of rounds (they follow the local density, not the length)
    work = {}
    for seconds in (600, 1200):
        segments, scores, labels = long_video_candidates(5, seconds, rounded=False)
        counters = {}
        _soft_nms_rounds(
            segments[:, 0].numpy(), segments[:, 1].numpy(), scores.numpy(), labels.numpy(), method="gaussian",
            sigma=0.5, min_score=0.001, iou_threshold=0.0, t1=0.0, t2=0.0, counters=counters,
        )
        assert counters["pair_visits"] <= 2 * counters["pairs"]
        work[seconds] = counters
    assert 1.5 < work[1200]["pairs"] / work[600]["pairs"] < 2.5
    assert work[1200]["rounds"] <= work[600]["rounds"] + 4


def test_soft_nms_far_apart_candidates_do_not_interact():
    # one video's candidates, and the same candidates again 10,000 s later: each half's result is unchanged
    segments, scores, labels = long_video_candidates(3, 300, rounded=False)
    settings = PostProcessingSettings(nms_sigma=0.5, min_score=0.001)
    keep, kept_scores = soft_nms(segments, scores, labels, settings)
    doubled = torch.cat((segments, segments + 10_000))
    keep2, kept_scores2 = soft_nms(doubled, torch.cat((scores, scores * 0.999)), torch.cat((labels, labels)), settings)
    n = segments.shape[0]
    first_half = keep2 < n
    assert sorted(zip(keep2[first_half].tolist(), kept_scores2[first_half].tolist())) == sorted(
        zip(keep.tolist(), kept_scores.tolist())
    )


# ---------------------------------------------------------------------------------------------
# batched NMS, voting, hard NMS
# ---------------------------------------------------------------------------------------------


def test_batched_nms_multiclass_caps_each_class_then_total():
    segments = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [0.0, 1.0], [2.0, 3.0], [6.0, 7.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.85, 0.95])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    out_segments, out_scores, out_labels = batched_nms(segments, scores, labels, PostProcessingSettings(max_segments=2))
    # class 0 keeps 0.9, 0.8; class 1 keeps 0.95, 0.85; then the top 2 overall
    assert out_scores.tolist() == pytest.approx([0.95, 0.9])
    assert out_labels.tolist() == [1, 0]
    out_segments, out_scores, out_labels = batched_nms(segments, scores, labels, PostProcessingSettings(max_segments=3))
    assert out_scores.tolist() == pytest.approx([0.95, 0.9, 0.85])
    assert out_segments.tolist() == [[6.0, 7.0], [0.0, 1.0], [2.0, 3.0]]


def test_class_agnostic_nms_ignores_labels_and_votes():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [0.0, 9.0], [40.0, 50.0]])
    scores = torch.tensor([0.9, 0.6, 0.3, 0.5])
    labels = torch.tensor([0, 1, 2, 0])
    settings = PostProcessingSettings(multiclass=False, voting_thresh=0.85, nms_sigma=0.5, min_score=0.3)
    out_segments, out_scores, out_labels = batched_nms(segments, scores, labels, settings)
    # [1, 10] (iou 0.9) decays to 0.6*exp(-0.81/0.5) = 0.119 < 0.3 and is dropped; [0, 9] likewise;
    # both still vote for [0, 10] with their ORIGINAL scores.
    assert out_scores.tolist() == pytest.approx([0.9, 0.5])
    assert out_labels.tolist() == [0, 0]
    expected_start = (0.9 * 0 + 0.6 * 1 + 0.3 * 0) / 1.8
    expected_end = (0.9 * 10 + 0.6 * 10 + 0.3 * 9) / 1.8
    assert out_segments[0].tolist() == pytest.approx([expected_start, expected_end], rel=1e-6)
    assert out_segments[1].tolist() == [40.0, 50.0]  # only votes for itself


def test_voting_is_off_in_multiclass_mode():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0]])
    scores = torch.tensor([0.9, 0.6])
    labels = torch.tensor([0, 0])
    settings = PostProcessingSettings(multiclass=True, voting_thresh=0.5)
    out_segments, _, _ = batched_nms(segments, scores, labels, settings)
    assert out_segments.tolist() == [[0.0, 10.0], [1.0, 10.0]]


def test_segment_voting_threshold_and_zero_length():
    kept = torch.tensor([[0.0, 10.0], [5.0, 5.0]])
    candidates = torch.tensor([[0.0, 10.0], [0.0, 8.0], [5.0, 5.0]])
    candidate_scores = torch.tensor([1.0, 3.0, 1.0])
    voted = segment_voting(kept, candidates, candidate_scores, 0.8)
    assert voted[0].tolist() == pytest.approx([0.0, (10 + 24) / 4])  # iou([0,10],[0,8]) = 0.8 >= 0.8
    assert voted[1].tolist() == [5.0, 5.0]  # zero length: no voter (OpenTAD: NaN), keeps itself
    voted = segment_voting(kept[:1], candidates, candidate_scores, 0.81)
    assert voted[0].tolist() == [0.0, 10.0]


def test_hard_nms():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [0.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.05])
    hard = PostProcessingSettings(nms_method="hard", nms_iou_threshold=0.5)
    keep, kept_scores = hard_nms(segments, scores, None, hard)
    assert keep.tolist() == [0, 2, 3]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7, 0.05])
    keep, _ = hard_nms(segments, scores, None, replace(hard, min_score=0.1))
    assert keep.tolist() == [0, 2]
    keep, _ = hard_nms(segments, scores, torch.tensor([0, 1, 0, 0]), hard)
    assert keep.tolist() == [0, 2, 3, 1]


def test_nms_method_none_passes_candidates_through():
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0]])
    no_nms = PostProcessingSettings(nms_method="none")
    out = batched_nms(segments, torch.tensor([0.5, 0.9]), torch.tensor([0, 0]), no_nms)
    assert out[1].tolist() == pytest.approx([0.5, 0.9])


def test_nms_settings_validation():
    with pytest.raises(ValueError, match="nms_method"):
        PostProcessingSettings(nms_method="soft")
    with pytest.raises(ValueError, match="max_segments"):
        PostProcessingSettings(max_segments=0)
    with pytest.raises(ValueError, match="nms_sigma"):
        PostProcessingSettings(nms_sigma=0.0)


def test_empty_nms_input():
    out_segments, out_scores, out_labels = batched_nms(
        torch.zeros(0, 2),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
        PostProcessingSettings(multiclass=False, voting_thresh=0.9),
    )
    assert out_segments.shape == (0, 2) and out_scores.shape == (0,) and out_labels.shape == (0,)


# ---------------------------------------------------------------------------------------------
# decoding and pre-NMS selection
# ---------------------------------------------------------------------------------------------


def test_decode_candidates_matches_opentad_fixture(tests_dir):
    outputs = load_file(tests_dir / "fixtures" / "opentad_public" / "outputs.safetensors")
    levels = range(4)
    proposals, scores = decode_candidates(
        logits=[outputs[f"head.cls_logits.{l}"].permute(0, 2, 1) for l in levels],
        pred_offsets=[outputs[f"head.reg_offsets.{l}"].permute(0, 2, 1) for l in levels],
        points=[outputs[f"head.points.{l}"] for l in levels],
        feature_mask=[outputs[f"neck.masks.{l}"] for l in levels],
    )
    for b in range(2):
        torch.testing.assert_close(proposals[b], outputs[f"head.proposals.{b}"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scores[b], outputs[f"head.scores.{b}"], atol=1e-6, rtol=1e-5)


def test_decode_candidates_by_hand_and_shape_errors():
    points = [torch.tensor([[0.0, 0, 4, 1], [1.0, 0, 4, 1]]), torch.tensor([[0.0, 4, 8, 2]])]
    logits = [torch.zeros(1, 2, 1), torch.zeros(1, 1, 1)]
    offsets = [torch.tensor([[[1.0, 2.0], [0.5, 0.5]]]), torch.tensor([[[1.0, 3.0]]])]
    masks = [torch.tensor([[True, False]]), torch.tensor([[True]])]
    proposals, scores = decode_candidates(logits, offsets, points, masks)
    assert proposals[0].tolist() == [[-1.0, 2.0], [-2.0, 6.0]]  # level 2: stride 2
    assert scores[0].tolist() == [[0.5], [0.5]]
    with pytest.raises(ValueError, match="pred_offsets\\[0\\]"):
        decode_candidates(logits, [offsets[0][:, :1], offsets[1]], points, masks)


def test_pre_nms_threshold_topk_and_index_split():
    proposals = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    scores = torch.tensor([[0.1, 0.0005, 0.3], [0.2, 0.9, 0.0001], [0.001, 0.002, 0.5]])
    segments, kept_scores, labels = select_pre_nms_candidates(proposals, scores, pre_nms_thresh=0.001, pre_nms_topk=4)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.5, 0.3, 0.2])
    assert labels.tolist() == [1, 2, 2, 0]
    assert segments.tolist() == [[2.0, 3.0], [4.0, 5.0], [0.0, 1.0], [2.0, 3.0]]
    # 0.001 is not > 0.001: with a huge top-k 7 of 9 pairs pass
    assert select_pre_nms_candidates(proposals, scores, 0.001, 100)[1].shape == (6,)


def test_single_class_skips_pre_nms_selection():
    proposals = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    scores = torch.tensor([[0.00001], [0.5]])
    segments, kept_scores, labels = select_pre_nms_candidates(proposals, scores, pre_nms_thresh=0.1, pre_nms_topk=1)
    assert segments.tolist() == proposals.tolist()  # no threshold, no top-k, no sorting
    assert kept_scores.tolist() == pytest.approx([0.00001, 0.5])
    assert labels.tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# seconds, rounding, whole pipeline
# ---------------------------------------------------------------------------------------------


def test_convert_to_seconds_sliding_and_padding():
    meta = {
        "video_id": "v",
        "fps": 30.0,
        "snippet_stride": 4,
        "window_start_frame": 120,
        "offset_frames": 2,
        "duration": 20.0,
    }
    seconds = video_meta_to_seconds(torch.tensor([[10.0, 20.0], [-5.0, 200.0]]), meta)
    assert seconds[0].tolist() == pytest.approx([(40 + 122) / 30, (80 + 122) / 30])
    assert seconds[1].tolist() == pytest.approx([(-20 + 122) / 30, 20.0])  # end clipped to the duration
    seconds = video_meta_to_seconds(
        torch.tensor([[-40.0, 1.0]]), {"video_id": "v", "fps": 10, "snippet_stride": 1, "duration": 5}
    )
    assert seconds.tolist() == [[0.0, pytest.approx(0.1)]]  # window_start_frame / offset_frames default to 0


def test_convert_to_seconds_resize_mode():
    meta = {"video_id": "v", "sampling_method": "resize", "resize_length": 128, "duration": 64.0}
    seconds = video_meta_to_seconds(torch.tensor([[32.0, 64.0], [-1.0, 130.0]]), meta)
    assert seconds.tolist() == [[16.0, 32.0], [0.0, 64.0]]
    with pytest.raises(ValueError, match="resize_length"):
        video_meta_to_seconds(torch.zeros(1, 2), {"video_id": "v", "sampling_method": "resize", "duration": 1.0})
    with pytest.raises(ValueError, match="'v'.*duration"):
        video_meta_to_seconds(torch.zeros(1, 2), {"video_id": "v", "fps": 30, "snippet_stride": 1, "duration": 0})


def simple_outputs():
    proposals = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 31.0]])
    scores = torch.tensor([[0.912345678, 0.1], [0.5, 0.2], [0.3, 0.712345]])
    return {"proposals": [proposals], "scores": [scores]}


def test_pipeline_rounds_like_opentad_and_builds_submission():
    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0}]
    results = post_process_temporal_detection(
        simple_outputs(), meta, class_names=["a", "b"], nms_sigma=0.7, max_segments=10
    )
    assert len(results) == 1 and results[0]["video_id"] == "vid"
    result = results[0]
    assert result["scores"][0].item() == pytest.approx(0.9123)
    assert result["label_names"][0] == "a" and result["labels"][0].item() == 0
    assert result["segments"].dtype == torch.float32 and result["segments"].shape[1] == 2
    assert float(result["segments"].max()) <= 10.0
    submission = to_activitynet_submission(results)
    first = submission["vid"][0]
    assert first == {"segment": [0.0, 3.33], "label": "a", "score": 0.9123}
    assert json.loads(json.dumps(submission)) == submission
    assert all(d["segment"][1] <= 10.0 for d in submission["vid"])


def test_pipeline_empty_candidates():
    outputs = {"proposals": [torch.zeros(0, 2)], "scores": [torch.zeros(0, 3)]}
    meta = [{"video_id": "v", "fps": 30, "snippet_stride": 4, "duration": 5}]
    for multiclass in (True, False):
        results = post_process_temporal_detection(
            outputs, meta, class_names=["a", "b", "c"], multiclass=multiclass, voting_thresh=0.7
        )
        assert results[0]["segments"].shape == (0, 2) and results[0]["scores"].shape == (0,)
        assert results[0]["label_names"] == []
    # everything under the pre-NMS threshold
    outputs = {"proposals": [torch.ones(4, 2)], "scores": [torch.full((4, 3), 1e-4)]}
    assert post_process_temporal_detection(outputs, meta, class_names=["a", "b", "c"])[0]["scores"].numel() == 0
    assert to_activitynet_submission(results) == {"v": []}


def test_pipeline_accepts_id2label_mapping():
    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0}]
    from_list = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"])
    from_mapping = post_process_temporal_detection(simple_outputs(), meta, class_names={1: "b", 0: "a"})
    assert from_list[0]["label_names"] == from_mapping[0]["label_names"]


def test_one_set_of_post_processing_defaults():
    from adatad.processing_adatad import AdaTADVideoProcessor

    defaults = PostProcessingSettings()
    # OpenTAD's AdaTAD values (configs/adatad/*: soft-NMS sigma 0.7, max_seg_num 2000, voting 0.7, pre-NMS 0.001/2000).
    assert (defaults.nms_sigma, defaults.max_segments, defaults.voting_thresh) == (0.7, 2000, 0.7)
    assert (defaults.pre_nms_thresh, defaults.pre_nms_topk, defaults.multiclass) == (0.001, 2000, True)
    assert AdaTADVideoProcessor().post_processing_settings() == defaults
    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0}]
    plain = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"])
    explicit = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], settings=defaults)
    assert torch.equal(plain[0]["scores"], explicit[0]["scores"])
    changed = post_process_temporal_detection(
        simple_outputs(), meta, class_names=["a", "b"], settings=defaults, max_segments=1
    )
    assert changed[0]["scores"].numel() == 1
    with pytest.raises(TypeError, match=r"unknown arguments \['mulitclass'\]"):
        post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], mulitclass=False)
    with pytest.raises(ValueError, match=r"pre_nms_thresh.*\[0, 1\]"):
        PostProcessingSettings(pre_nms_thresh=float("nan"))


def test_threshold_and_top_k():
    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0}]
    everything = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"])[0]
    scores = everything["scores"].tolist()
    assert len(scores) > 3 and min(scores) < 0.5
    kept = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], threshold=0.5)[0]
    assert kept["scores"].tolist() == [s for s in scores if round(s, 4) >= 0.5]
    assert kept["label_names"] == [n for n, s in zip(everything["label_names"], scores) if round(s, 4) >= 0.5]
    assert torch.equal(kept["segments"], everything["segments"][everything["scores"] >= 0.5])
    top = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], top_k=2)[0]
    assert top["scores"].tolist() == scores[:2] and top["label_names"] == everything["label_names"][:2]
    for bad in (float("nan"), -0.1, 1.5, "0.3"):
        with pytest.raises(ValueError, match=r"`threshold` must be a number in \[0, 1\]"):
            post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], threshold=bad)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="`top_k` must be a positive integer"):
            post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], top_k=bad)
    with pytest.raises(ValueError, match="merge_sliding_windows"):
        post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], sliding_window=True,
                                        merge_windows=False, threshold=0.5)
    windows = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], sliding_window=True,
                                              merge_windows=False)
    merged = merge_sliding_windows(windows, PostProcessingSettings(), threshold=0.5, top_k=1)[0]
    assert merged["scores"].tolist() == scores[:1]


def test_output_goes_into_the_evaluate_metric_as_it_is():
    import evaluate

    from adatad.evaluation import evaluate_detection, metric_path

    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0}]
    results = post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"])
    references = [{"video_id": "vid", "segments": [[0.0, 3.3], [6.0, 10.0]], "labels": ["a", "b"]}]
    metric = evaluate.load(metric_path())
    by_name = metric.compute(predictions=results, references=references, tiou_thresholds=[0.3, 0.5, 0.7])
    expected = evaluate_detection(
        {
            "database": {
                "vid": {
                    "annotations": [{"segment": s, "label": l} for s, l in zip(references[0]["segments"], ["a", "b"])]
                }
            }
        },
        {"results": to_activitynet_submission(results)},
        tiou_thresholds=[0.3, 0.5, 0.7],
        subset=None,
    )
    assert by_name["average_mAP"] == expected["average_mAP"] > 0
    by_id = metric.compute(
        predictions=results, references=[{**references[0], "labels": [0, 1]}], tiou_thresholds=[0.3, 0.5, 0.7]
    )
    assert by_id["average_mAP"] == expected["average_mAP"]


def test_non_finite_detector_outputs_name_the_video_and_window():
    outputs = simple_outputs()
    outputs["scores"][0][1, 0] = float("nan")
    meta = [{"video_id": "vid", "fps": 3.0, "snippet_stride": 1, "duration": 10.0, "window_start_frame": 96}]
    with pytest.raises(
        NonFiniteDetectorOutputError, match=r"video 'vid', window starting at frame 96: 1 of 12 .*NaN or infinite"
    ):
        post_process_temporal_detection(outputs, meta, class_names=["a", "b"], sliding_window=True)
    outputs = simple_outputs()
    outputs["proposals"][0][0, 1] = float("inf")
    with pytest.raises(NonFiniteDetectorOutputError, match=r"video 'vid':"):
        post_process_temporal_detection(
            outputs, [{"video_id": "vid", "sampling_method": "resize", "resize_length": 32, "duration": 10.0}],
            class_names=["a", "b"],
        )


def test_pipeline_input_errors():
    meta = [{"video_id": "v", "fps": 30, "snippet_stride": 4, "duration": 5}]
    with pytest.raises(ValueError, match="class_names"):
        post_process_temporal_detection(simple_outputs(), meta, class_names=["only one"])
    with pytest.raises(ValueError, match="sliding_window=True"):
        two = {"proposals": simple_outputs()["proposals"] * 2, "scores": simple_outputs()["scores"] * 2}
        post_process_temporal_detection(two, meta * 2, class_names=["a", "b"])
    with pytest.raises(ValueError, match="one meta per batch entry"):
        post_process_temporal_detection(simple_outputs(), meta * 2, class_names=["a", "b"])
    with pytest.raises(ValueError, match="lacks"):
        post_process_temporal_detection({"logits": []}, meta, class_names=["a", "b"])
    with pytest.raises(ValueError, match="pre_nms_topk"):
        post_process_temporal_detection(simple_outputs(), meta, class_names=["a", "b"], pre_nms_topk=0)
    with pytest.raises(ValueError, match="video_metas\\[0\\]"):
        post_process_temporal_detection(simple_outputs(), [{"fps": 30, "duration": 5}], class_names=["a", "b"])


def test_pipeline_on_model_outputs_matches_opentad_detections(tests_dir):
    fixture = tests_dir / "fixtures" / "opentad_public"
    outputs = load_file(fixture / "outputs.safetensors")
    post = json.loads((fixture / "config.json").read_text())["post_processing"]
    levels = range(4)
    model_outputs = {
        "logits": [outputs[f"head.cls_logits.{l}"].permute(0, 2, 1) for l in levels],
        "pred_offsets": [outputs[f"head.reg_offsets.{l}"].permute(0, 2, 1) for l in levels],
        "points": [outputs[f"head.points.{l}"] for l in levels],
        "feature_mask": [outputs[f"neck.masks.{l}"] for l in levels],
    }
    nms = post["nms"]
    results = post_process_temporal_detection(
        model_outputs,
        post["metas"],
        class_names=post["class_names"],
        pre_nms_thresh=post["pre_nms_thresh"],
        pre_nms_topk=post["pre_nms_topk"],
        nms_sigma=nms["sigma"],
        min_score=nms["min_score"],
        max_segments=nms["max_seg_num"],
        multiclass=nms["multiclass"],
        voting_thresh=nms["voting_thresh"],
    )
    expected = json.loads((fixture / "detections.json").read_text())
    submission = to_activitynet_submission(results)
    assert list(submission) == list(expected)
    for video_id, detections in expected.items():
        assert len(submission[video_id]) == len(detections)
        for mine, theirs in zip(submission[video_id][:50], detections[:50]):  # decoding differs by ~1e-7
            assert mine["label"] == theirs["label"]
            assert mine["score"] == pytest.approx(theirs["score"], abs=1.01e-4)
            assert mine["segment"] == pytest.approx(theirs["segment"], abs=0.0101)


# ---------------------------------------------------------------------------------------------
# sliding windows
# ---------------------------------------------------------------------------------------------


def window_outputs():
    # window 0 covers frames 0..; window 1 starts at frame 64 (snippet stride 4 -> 16 grid steps)
    proposals = [torch.tensor([[16.0, 24.0], [2.0, 6.0]]), torch.tensor([[0.0, 8.0], [20.0, 30.0]])]
    scores = [torch.tensor([[0.9, 0.0001], [0.0001, 0.6]]), torch.tensor([[0.8, 0.0001], [0.0001, 0.7]])]
    metas = [
        {"video_id": "long", "fps": 16.0, "snippet_stride": 4, "window_start_frame": 0, "duration": 20.0},
        {"video_id": "long", "fps": 16.0, "snippet_stride": 4, "window_start_frame": 64, "duration": 20.0},
    ]
    return {"proposals": proposals, "scores": scores}, metas


def test_sliding_windows_merge_once_per_video_on_rounded_seconds():
    outputs, metas = window_outputs()
    settings = dict(class_names=["jump", "run"], nms_sigma=0.5, max_segments=100, sliding_window=True)
    merged = post_process_temporal_detection(outputs, metas, **settings)
    assert len(merged) == 1 and merged[0]["video_id"] == "long"
    result = merged[0]
    # the same jump [4 s, 6 s] is found by both windows: one NMS -> 0.9 stays, 0.8 decays by exp(-1/0.5)
    jumps = [i for i, n in enumerate(result["label_names"]) if n == "jump"]
    assert [result["segments"][i].tolist() for i in jumps] == [[4.0, 6.0], [4.0, 6.0]]
    assert [result["scores"][i].item() for i in jumps] == pytest.approx([0.9, round(0.8 * math.exp(-2.0), 4)], abs=1e-7)
    assert result["labels"][jumps[0]].item() == 0
    runs = [i for i, n in enumerate(result["label_names"]) if n == "run"]
    assert sorted(result["segments"][i].tolist() for i in runs) == [[0.5, 1.5], [9.0, 11.5]]
    assert result["scores"].tolist() == sorted(result["scores"].tolist(), reverse=True)

    windows = post_process_temporal_detection(outputs, metas, merge_windows=False, **settings)
    assert [w["video_id"] for w in windows] == ["long", "long"]
    assert windows[1]["scores"].tolist() == pytest.approx([0.8, 0.7])  # no NMS inside a window
    remerged = merge_sliding_windows(windows, PostProcessingSettings(nms_sigma=0.5, max_segments=100))
    assert remerged[0]["scores"].tolist() == result["scores"].tolist()
    assert remerged[0]["segments"].tolist() == result["segments"].tolist()


def test_sliding_window_merge_runs_nms_on_rounded_values():
    # two windows report segments that differ by less than the 2-decimal rounding: after rounding they
    # are identical, so the Gaussian decay uses IoU 1 (OpenTAD merges rounded seconds)
    windows = [
        {
            "video_id": "v",
            "scores": torch.tensor([0.5]),
            "labels": torch.tensor([3]),
            "label_names": ["x"],
            "segments": torch.tensor([[1.0, 2.0]]),
        },
        {
            "video_id": "v",
            "scores": torch.tensor([0.4]),
            "labels": torch.tensor([3]),
            "label_names": ["x"],
            "segments": torch.tensor([[1.0, 2.0]]),
        },
    ]
    merged = merge_sliding_windows(windows, PostProcessingSettings(nms_sigma=1.0))
    assert merged[0]["scores"].tolist() == pytest.approx([0.5, round(0.4 * math.exp(-1.0), 4)], abs=1e-7)
    assert merged[0]["labels"].tolist() == [3, 3]


# ---------------------------------------------------------------------------------------------
# external video classifier
# ---------------------------------------------------------------------------------------------


def test_cuhk_classifier_fusion(tmp_path):
    path = tmp_path / "cuhk.json"
    path.write_text(json.dumps({"results": {"vid": [0.1, 0.6, 0.3]}, "class": ["Archery", "Bowling", "Cooking"]}))
    classifier = ExternalVideoClassifier.from_json(path, topk=2, style="cuhk")
    meta = [{"video_id": "vid", "sampling_method": "resize", "resize_length": 10, "duration": 20.0}]
    outputs = {"proposals": [torch.tensor([[0.0, 5.0], [6.0, 8.0]])], "scores": [torch.tensor([[0.8], [0.4]])]}
    result = post_process_temporal_detection(
        outputs, meta, video_classifier=classifier, multiclass=False, nms_sigma=0.5
    )[0]
    assert result["label_names"] == ["Bowling", "Bowling", "Cooking", "Cooking"]
    assert result["labels"].tolist() == [1, 1, 2, 2]
    assert result["scores"].tolist() == pytest.approx(
        [round(0.8 * 0.6, 4), round(0.4 * 0.6, 4), round(0.8 * 0.3, 4), round(0.4 * 0.3, 4)], abs=1e-7
    )
    assert result["segments"].tolist() == [[0.0, 10.0], [12.0, 16.0]] * 2


def test_standard_classifier_fusion_sqrt_and_softmax(tmp_path):
    path = tmp_path / "standard.json"
    path.write_text(json.dumps({"results": {"vid": [1.0, 3.0, 2.0]}, "classes": ["a", "b", "c"]}))
    segments, scores = torch.tensor([[0.0, 1.0]]), torch.tensor([0.64])
    classifier = ExternalVideoClassifier.from_json(path, topk=2, style="standard")
    fused_segments, labels, fused = classifier.fuse("vid", segments, scores)
    assert labels.tolist() == [1, 2]
    assert fused.tolist() == pytest.approx([math.sqrt(0.64 * 3.0), math.sqrt(0.64 * 2.0)])
    assert fused_segments.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    softmax = np.exp([1.0, 3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    classifier = ExternalVideoClassifier.from_json(path, topk=1, style="standard", apply_softmax=True)
    assert classifier.fuse("vid", segments, scores)[2].tolist() == pytest.approx([math.sqrt(0.64 * softmax[1])])


def test_classifier_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"results": {"vid": [1.0]}}))
    with pytest.raises(ValueError, match="bad.json.*'class' or 'classes'"):
        ExternalVideoClassifier.from_json(path)
    classifier = ExternalVideoClassifier({"vid": [0.2, 0.8]}, ["a", "b"], topk=1, source="scores.json")
    with pytest.raises(ValueError, match="'other'.*scores.json"):
        classifier.fuse("other", torch.zeros(1, 2), torch.ones(1))
    with pytest.raises(ValueError, match="topk"):
        ExternalVideoClassifier({"vid": [0.2, 0.8]}, ["a", "b"], topk=3)


# ---------------------------------------------------------------------------------------------
# the OpenTAD parity check itself must fail on wrong data
# ---------------------------------------------------------------------------------------------


def copy_fixture(tests_dir, destination, edit_config=None, edit_outputs=None, edit_detections=None):
    source = tests_dir / "fixtures" / "opentad_public"
    destination.mkdir()
    config = json.loads((source / "config.json").read_text())
    outputs = load_file(source / "outputs.safetensors")
    detections = json.loads((source / "detections.json").read_text())
    for edit, value in ((edit_config, config), (edit_outputs, outputs), (edit_detections, detections)):
        if edit is not None:
            edit(value)
    (destination / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in outputs.items()}, destination / "outputs.safetensors")
    (destination / "detections.json").write_text(json.dumps(detections))
    return destination


def _add_unknown_setting(config):
    config["post_processing"]["score_offset"] = 1.0


def _add_unknown_nms_setting(config):
    config["post_processing"]["nms"]["nms_type"] = "diou"


def _change_sigma(config):
    config["post_processing"]["nms"]["sigma"] = 0.5


def _raise_top_score(outputs):
    outputs["post.nms_scores.0"][0] += 2e-4


def _move_top_segment(outputs):
    outputs["post.nms_segments.0"][0, 1] += 5e-3


def _move_seconds(outputs):
    outputs["post.seconds_segments.1"][3, 0] += 0.01


def _relabel_top_detection(detections):
    detections["video_0"][0]["label"] = "class_2"


def _shift_detection(detections):
    detections["video_1"][0]["segment"][0] += 0.02


def _drop_detection(detections):
    detections["video_1"].pop()


@pytest.mark.parametrize(
    "edits, message",
    [
        (dict(edit_config=_add_unknown_setting), "unknown post_processing settings"),
        (dict(edit_config=_add_unknown_nms_setting), "unknown post_processing.nms settings"),
        (dict(edit_config=_change_sigma), "NMS output differs"),
        (dict(edit_outputs=_raise_top_score), "pick 0: score"),
        (dict(edit_outputs=_move_top_segment), "pick 0: segment"),
        (dict(edit_outputs=_move_seconds), "seconds"),
        (dict(edit_detections=_relabel_top_detection), "label"),
        (dict(edit_detections=_shift_detection), "segment"),
        (dict(edit_detections=_drop_detection), "detections.json"),
    ],
)
def test_parity_check_detects_differences(tests_dir, tmp_path, edits, message):
    folder = copy_fixture(tests_dir, tmp_path / "fixture", **edits)
    with pytest.raises(AssertionError, match=message):
        check_post_processing(folder)


def test_parity_check_passes_on_unchanged_copy(tests_dir, tmp_path):
    check_post_processing(copy_fixture(tests_dir, tmp_path / "fixture"))


def test_nms_of_several_videos_at_once_equals_one_by_one():
    generator = torch.Generator().manual_seed(11)
    videos = []
    for size in (0, 30, 1, 55):
        segments, scores = grid_candidates(generator, size, 6)
        videos.append((segments, scores, torch.randint(0, 3, (size,), generator=generator)))
    for settings in (
        PostProcessingSettings(nms_sigma=0.7, min_score=0.2, max_segments=10),
        PostProcessingSettings(multiclass=False, voting_thresh=0.6, min_score=0.1, max_segments=12),
        PostProcessingSettings(nms_method="hard", nms_iou_threshold=0.4, max_segments=8),
    ):
        together = batched_nms_videos(videos, settings)
        for video, result in zip(videos, together):
            for mine, alone in zip(result, batched_nms(*video, settings)):
                assert torch.equal(mine, alone)


def test_classifier_fusion_with_sliding_windows_merges_by_classifier_label():
    outputs, metas = window_outputs()
    classifier = ExternalVideoClassifier({"long": [0.5, 0.25, 1.0]}, ["x", "y", "z"], topk=2, style="cuhk")
    merged = post_process_temporal_detection(
        outputs, metas, video_classifier=classifier, sliding_window=True, nms_sigma=0.5, max_segments=100
    )[0]
    assert set(merged["label_names"]) == {"z", "x"}
    assert merged["labels"].tolist() == [{"x": 0, "z": 2}[n] for n in merged["label_names"]]
    # 2 windows x 2 candidates x 2 classifier classes; one NMS per class over both windows
    assert merged["scores"].shape == (8,)
    assert merged["scores"][0].item() == pytest.approx(round(0.9 * 1.0, 4))


@pytest.mark.parametrize("score_decimals", [None, 1])
def test_soft_nms_over_separate_clusters_matches_scalar_loop(score_decimals):
    # well separated overlap clusters run as separate rows and are interleaved by score; with
    # rounded scores (exact ties across and inside clusters) the group is recomputed as one row
    generator = torch.Generator().manual_seed(13)
    settings = PostProcessingSettings(nms_method="linear", min_score=0.15, nms_iou_threshold=0.1)
    for _ in range(10):
        cluster = torch.randint(0, 6, (45,), generator=generator)
        starts = cluster * 100.0 + torch.randint(0, 20, (45,), generator=generator)
        segments = torch.stack((starts, starts + torch.randint(1, 10, (45,), generator=generator)), 1)
        scores = torch.rand(45, generator=generator)
        if score_decimals is not None:
            scores = scores.round(decimals=score_decimals)
        keep, kept_scores = soft_nms(segments, scores, None, settings)
        picks, picked_scores = scalar_soft_nms(
            segments.tolist(), scores.tolist(), "linear", min_score=0.15, iou_threshold=0.1
        )
        assert keep.tolist() == picks
        assert kept_scores.tolist() == picked_scores


def test_soft_nms_group_whose_best_score_is_below_min_score():
    # OpenTAD's first pick is kept even below min_score; every other low score is dropped at once
    segments = torch.tensor([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0], [30.0, 31.0]])
    scores = torch.tensor([0.05, 0.08, 0.08, 0.5])
    groups = torch.tensor([0, 0, 0, 1])
    keep, kept_scores = soft_nms(segments, scores, groups, PostProcessingSettings(min_score=0.1))
    assert keep.tolist() == [1, 3]
    assert kept_scores.tolist() == pytest.approx([0.08, 0.5])


def test_decode_segments_by_hand():
    # Two points: position 4 at stride 2 and position 8 at stride 4; distances in stride units.
    points = torch.tensor([[4.0, 0.0, 4.0, 2.0], [8.0, 4.0, 1e4, 4.0]])
    offsets = torch.tensor([[[1.5, 0.5], [0.0, 2.0]], [[2.0, 0.0], [0.25, 0.25]]])  # (batch 2, points 2, 2)
    expected = torch.tensor([[[1.0, 5.0], [8.0, 16.0]], [[0.0, 4.0], [7.0, 9.0]]])
    assert torch.equal(decode_segments(points, offsets), expected)
    assert torch.equal(decode_segments(points, offsets[0]), expected[0])  # no batch dimension (the loss path)
