"""Soft-NMS where equal scores meet: groups whose picks tie, or whose overlapping candidates tie at the top, run
OpenTAD's loop one pick at a time with its memory layout (adatad/nms.py). Checked against a plain transcription
of OpenTAD's C++ loop and against hand-worked cases."""

import numpy as np
import pytest
from test_post_processing import reference_soft_nms, scalar_soft_nms

from adatad import nms
from adatad.nms import _soft_nms_picks_without_ties, _soft_nms_rounds, expf, soft_nms_groups

METHODS = ("gaussian", "linear", "improved_gaussian", "vanilla")
PARAMS = dict(sigma=0.5, iou_threshold=0.3, t1=0.1, t2=0.02)


def opentad_loop(segments, scores, method, min_score):
    """OpenTAD's `softnms_1d_cpu` for one group, one float32 operation at a time (as `scalar_soft_nms`, with
    glibc's expf for the Gaussian decays). Returns (indices in pick order, picked scores)."""
    f32 = np.float32
    x1 = [f32(s) for s, _ in segments]
    x2 = [f32(e) for _, e in segments]
    sc = [f32(s) for s in scores]
    area = [x2[k] - x1[k] + f32(1e-6) for k in range(len(sc))]
    inds = list(range(len(sc)))
    arrays = (x1, x2, sc, area, inds)
    count, picks, picked = len(sc), [], []
    i = 0
    while i < count:
        best = i
        for pos in range(i + 1, count):
            if sc[best] < sc[pos]:
                best = pos
        for array in arrays:
            array[i], array[best] = array[best], array[i]
        picks.append(inds[i])
        picked.append(sc[i])
        pos = i + 1
        while pos < count:
            inter = max(f32(0), min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            ovr = inter / (area[i] + area[pos] - inter)
            weight = f32(1)
            gaussian = expf(np.array([-(ovr * ovr) / f32(PARAMS["sigma"])], dtype=np.float32))[0]
            if method == "vanilla" and ovr >= f32(PARAMS["iou_threshold"]):
                weight = f32(0)
            elif method == "linear" and ovr >= f32(PARAMS["iou_threshold"]):
                weight = f32(1) - ovr
            elif method == "gaussian":
                weight = gaussian
            elif method == "improved_gaussian" and ovr >= f32(PARAMS["t1"]) + f32(PARAMS["t2"]) * area[i]:
                weight = gaussian
            sc[pos] = sc[pos] * weight
            if sc[pos] < f32(min_score):
                for array in arrays:
                    array[pos] = array[count - 1]
                count -= 1
                continue
            pos += 1
        i += 1
    return picks, picked


def expected_per_group(segments, scores, groups, method, min_score):
    keep, kept = [], []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        picks, picked = opentad_loop(segments[members].tolist(), scores[members].tolist(), method, min_score)
        keep += members[picks].tolist()
        kept += picked
    return keep, np.array(kept, dtype=np.float32)


def tied_candidates(rng, num, num_levels, span):
    """Segments on an integer grid and scores from a few levels: many exact ties, also between overlapping
    candidates at the top."""
    starts = rng.integers(0, span, num).astype(np.float32)
    segments = np.stack((starts, starts + rng.integers(0, 8, num)), 1).astype(np.float32)
    scores = (rng.integers(1, num_levels + 1, num) / num_levels).astype(np.float32)
    return segments, scores


def run_rounds(segments, scores, groups, method, min_score):
    counters = {}
    *_, left = _soft_nms_rounds(
        segments[:, 0], segments[:, 1], scores, groups, method=method, min_score=min_score, counters=counters, **PARAMS
    )
    return left, counters


def test_reference_loop_is_the_scalar_loop_of_the_other_tests():
    # the transcription used here agrees with `scalar_soft_nms` where that one is exact (no exp involved)
    rng = np.random.default_rng(0)
    for method in ("linear", "vanilla"):
        segments, scores = tied_candidates(rng, 40, 3, 30)
        expected = scalar_soft_nms(segments.tolist(), scores.tolist(), method, min_score=0.2, **PARAMS)
        picks, picked = opentad_loop(segments.tolist(), scores.tolist(), method, 0.2)
        assert (picks, [float(s) for s in picked]) == expected


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("min_score", [0.0, 0.001, 0.25])
def test_ties_small_groups_equal_the_loop(method, min_score):
    rng = np.random.default_rng(METHODS.index(method) * 10 + int(min_score * 100))
    stepped_groups = 0
    for _ in range(12):
        segments, scores = tied_candidates(rng, int(rng.integers(2, 60)), int(rng.integers(1, 5)), 40)
        groups = rng.integers(0, 3, scores.shape[0])
        keep, kept_scores = soft_nms_groups(segments, scores, groups, method=method, min_score=min_score, **PARAMS)
        expected_keep, expected_scores = expected_per_group(segments, scores, groups, method, min_score)
        assert keep.tolist() == expected_keep
        assert kept_scores.tobytes() == expected_scores.tobytes()
        left, counters = run_rounds(segments, scores, groups, method, min_score)
        assert left.tolist() == []  # nothing went to the dense step loop
        stepped_groups += counters["stepped_groups"]
    assert stepped_groups > 0  # the ties were handled step by step


def test_tie_at_the_top_follows_the_memory_layout():
    # X [0, 10] and Y [5, 15] tie at 0.5 and overlap; Z (0.9) is picked first and swapped with slot 0, which
    # moves X to Z's slot 2, behind Y (slot 1): Y goes first and decays X (IoU 5/15), not the other way round.
    segments = np.array([[0, 10], [5, 15], [200, 210]], dtype=np.float32)
    scores = np.array([0.5, 0.5, 0.9], dtype=np.float32)
    keep, kept_scores = soft_nms_groups(segments, scores, np.zeros(3, np.int64), method="gaussian", min_score=0.0,
                                        sigma=0.5, iou_threshold=0.0, t1=0.0, t2=0.0)
    length = np.float32(10) + np.float32(1e-6)
    ovr = np.float32(5) / (length + length - np.float32(5))
    decayed = np.float32(0.5) * expf(np.array([-(ovr * ovr) / np.float32(0.5)], dtype=np.float32))[0]
    assert keep.tolist() == [2, 1, 0]
    assert kept_scores.tolist() == [np.float32(0.9), np.float32(0.5), decayed]


def test_tie_after_a_drop_follows_the_memory_layout():
    # slot order 0..4: A [0, 1] 0.4, B [50, 51] 0.4, C [100, 110] 0.9, D [100, 110] 0.5, E [300, 301] 0.4.
    # Step 0 picks C (slot 2, swapped with A: A -> slot 2); D (same segment) decays to 0.5 * exp(-2) = 0.068 < 0.1
    # and is dropped: E, the last in the array, fills D's slot 3. The tie at 0.4 is B (slot 1), A (2), E (3).
    segments = np.array([[0, 1], [50, 51], [100, 110], [100, 110], [300, 301]], dtype=np.float32)
    scores = np.array([0.4, 0.4, 0.9, 0.5, 0.4], dtype=np.float32)
    keep, kept_scores = soft_nms_groups(segments, scores, np.zeros(5, np.int64), method="gaussian", min_score=0.1,
                                        sigma=0.5, iou_threshold=0.0, t1=0.0, t2=0.0)
    assert keep.tolist() == [2, 1, 0, 4]
    assert kept_scores.tolist() == [np.float32(0.9), np.float32(0.4), np.float32(0.4), np.float32(0.4)]


@pytest.mark.parametrize("num_levels", [3, 40])
def test_ties_medium_long_video_equal_the_loop(num_levels):
    # a long video's worth of candidates in 4 classes whose scores take few values (as a barely trained model's,
    # rounded to 4 decimals): every class ties, at the top and among its picks
    rng = np.random.default_rng(num_levels)
    num = 2400
    starts = rng.uniform(0, 1200, num)
    segments = np.stack((starts, starts + rng.uniform(0.5, 15, num)), 1).round(2).astype(np.float32)
    scores = (0.005 + rng.integers(0, num_levels, num) / 10_000).astype(np.float32)
    groups = rng.integers(0, 4, num)
    keep, kept_scores = soft_nms_groups(segments, scores, groups, method="gaussian", min_score=0.001, sigma=0.5,
                                        iou_threshold=0.0, t1=0.0, t2=0.0)
    expected_keep, expected_scores = [], []
    for g in range(4):
        members = np.flatnonzero(groups == g)
        picks, picked = reference_soft_nms(segments[members], scores[members], 0.5, 0.001)
        expected_keep += members[picks].tolist()
        expected_scores += picked
    assert keep.tolist() == expected_keep
    assert kept_scores.tolist() == expected_scores
    left, counters = run_rounds(segments, scores, groups, "gaussian", 0.001)
    assert left.tolist() == [] and counters["stepped_groups"] == 4


def distinct_score_candidates(rng, num, span):
    """Real-valued segments and distinct scores: no tie ever meets at the top."""
    starts = rng.uniform(0, span, num)
    segments = np.stack((starts, starts + rng.uniform(0.1, 12, num)), 1).astype(np.float32)
    return segments, rng.permutation(num).astype(np.float32) / num + np.float32(0.01)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("min_score", [0.0, 0.001, 0.25])
def test_pick_loop_and_rounds_equal_the_loop_without_ties(method, min_score, monkeypatch):
    # small groups without ties take the pick loop; the same inputs forced through the rounds give the same picks
    rng = np.random.default_rng(100 + METHODS.index(method) * 10 + int(min_score * 100))
    for _ in range(6):
        segments, scores = distinct_score_candidates(rng, int(rng.integers(2, 300)), 100)
        groups = rng.integers(0, 4, scores.shape[0])
        expected_keep, expected_scores = expected_per_group(segments, scores, groups, method, min_score)
        picked = _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], scores, groups, method=method,
                                              min_score=min_score, **PARAMS)
        if picked is None:  # vanilla's decays of 0 are left to the rounds
            assert method == "vanilla"
        else:
            by_group = np.argsort(groups[picked[0]], kind="stable")
            assert picked[0][by_group].tolist() == expected_keep
            assert picked[1][by_group].tobytes() == expected_scores.tobytes()
        monkeypatch.setattr(nms, "_PICK_LOOP_MAX_GROUP_SIZE", 0)
        keep, kept_scores = soft_nms_groups(segments, scores, groups, method=method, min_score=min_score, **PARAMS)
        monkeypatch.undo()
        assert keep.tolist() == expected_keep
        assert kept_scores.tobytes() == expected_scores.tobytes()


@pytest.mark.parametrize("method", ["gaussian", "improved_gaussian"])
@pytest.mark.parametrize("block", [1, 7, 500])
def test_pairs_and_exp_in_blocks_of_any_size(method, block, monkeypatch):
    # the decays are computed a block of pairs (and of exponents) at a time; any block size gives the same picks,
    # through the pick loop and through the rounds
    rng = np.random.default_rng(7)
    segments, scores = distinct_score_candidates(rng, 400, 100)
    groups = rng.integers(0, 3, scores.shape[0])
    expected_keep, expected_scores = expected_per_group(segments, scores, groups, method, 0.001)
    monkeypatch.setattr(nms, "_BLOCK", block)
    params = dict(method=method, min_score=0.001, **PARAMS)
    assert _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], scores, groups, **params) is not None
    for pick_loop_max in (1024, 0):
        monkeypatch.setattr(nms, "_PICK_LOOP_MAX_GROUP_SIZE", pick_loop_max)
        keep, kept_scores = soft_nms_groups(segments, scores, groups, **params)
        assert keep.tolist() == expected_keep
        assert kept_scores.tobytes() == expected_scores.tobytes()
    exponents = -rng.uniform(0, 90, 1000).astype(np.float32)
    blocked = expf(exponents)
    monkeypatch.undo()
    assert blocked.tobytes() == expf(exponents).tobytes()


def test_pick_loop_leaves_ties_and_large_groups_to_the_rounds(monkeypatch):
    segments = np.array([[0, 4], [1, 5], [10, 12]], dtype=np.float32)
    tied = np.array([0.9, 0.9, 0.5], dtype=np.float32)  # two overlapping candidates tie at the top
    groups = np.zeros(3, dtype=np.int64)
    params = dict(method="gaussian", min_score=0.001, **PARAMS)
    assert _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], tied, groups, **params) is None
    distinct = np.array([0.9, 0.8, 0.5], dtype=np.float32)
    assert _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], distinct, groups, **params) is not None
    monkeypatch.setattr(nms, "_PICK_LOOP_MAX_GROUP_SIZE", 2)
    assert _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], distinct, groups, **params) is None


def test_pick_loop_leaves_uneven_overlaps_to_the_rounds():
    # one long segment over 300 short ones that overlap nothing else: a table row per candidate as wide as the
    # longest run would be almost empty, so the pick loop declines and the rounds decide, with the same result
    starts = np.arange(300, dtype=np.float32) * 3
    segments = np.concatenate(([[0, 1000]], np.stack((starts, starts + 1), 1))).astype(np.float32)
    scores = (np.random.default_rng(0).permutation(301) / 301 + 0.01).astype(np.float32)
    groups = np.zeros(301, dtype=np.int64)
    params = dict(method="gaussian", min_score=0.001, **PARAMS)
    assert _soft_nms_picks_without_ties(segments[:, 0], segments[:, 1], scores, groups, **params) is None
    keep, kept_scores = soft_nms_groups(segments, scores, groups, **params)
    expected_keep, expected_scores = expected_per_group(segments, scores, groups, "gaussian", 0.001)
    assert keep.tolist() == expected_keep
    assert kept_scores.tobytes() == expected_scores.tobytes()
