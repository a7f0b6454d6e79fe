"""The 1-D NMS engine: soft-NMS and greedy NMS with the arithmetic of OpenTAD's compiled CPU op.

`post_processing.py` wraps these functions with its settings classes; this module knows only arrays.

OpenTAD's `softnms_1d_cpu` runs, per class, a loop over all remaining candidates: pick the highest score
(the first in memory on ties), multiply every other remaining score by a decay of its overlap with the
pick, drop those that fall below `min_score`. That costs O(n^2) in the number of candidates. Here the
same result comes from rounds over the overlap graph: a candidate whose current score is strictly higher
than that of every remaining candidate it overlaps is picked before all of them, whatever happens elsewhere,
so every such local maximum of a round is picked at once, and its decays are applied to its neighbours.
Every candidate's score is the product of its decays taken in the global pick order (descending pick
score), as OpenTAD multiplies them, so scores are bit-identical. A round costs the live overlaps; the
number of rounds follows the local density of candidates, not the length of the video. Small groups (up to
`_PICK_LOOP_MAX_GROUP_SIZE` candidates, a short video's classes) skip the rounds' fixed cost while no tie meets
at the top of a group: they run one pick per group at a time over a table of precomputed decays
(`_soft_nms_picks_without_ties`), where the layout decides nothing.

Exact ties decide OpenTAD's pick order through its memory layout (in-place swaps and drops). Where equal pick
scores only decide the order of the output, a replay of that layout along the picks gives it (one step per
pick). Where the layout also changes a score (two overlapping candidates meeting at the top with the same score,
or two equal-score picks decaying the same candidate), the group (class) runs OpenTAD's loop one pick at a time
(`_soft_nms_steps`): the layout is kept as OpenTAD keeps it, the next pick comes from a heap keyed by (score,
memory slot), and a step costs the pick's overlaps, not a scan of every remaining candidate. A group whose top
stalls on such a tie leaves the rounds at once. Inputs the rounds and steps do not cover (negative scores,
reversed segments, vanilla soft-NMS with `iou_threshold <= 0`, where a zero overlap still zeroes a score) run
through the dense step loop (`_sequential_soft_nms`), O(n^2) per group.
"""

from __future__ import annotations

import array
import heapq
from typing import NamedTuple

import numpy as np
import torch

SOFT_NMS_METHODS = ("gaussian", "linear", "improved_gaussian", "vanilla")
# Candidate indices travel inside the float32 state of the step loop, exact up to 2**24.
MAX_SOFT_NMS_CANDIDATES = 2**24
# Step loop: above this many remaining elements only the overlapping candidates are decayed (far fewer
# exp calls); below it one dense multiply over all of them is cheaper.
_DENSE_DECAY_MAX_ELEMENTS = 2048
# Groups up to this size run pick by pick over their overlaps while no tie meets at the top: the rounds' fixed cost
# per round is then larger than the picks' (a pick costs the group count plus its overlaps, rounds a sweep).
_PICK_LOOP_MAX_GROUP_SIZE = 1024
# Step loop: every this many steps finished rows leave the state.
_ROW_COMPACTION_INTERVAL = 8

# --- float32 exp, bit-identical to glibc's expf (what OpenTAD's C++ `std::exp(float)` calls) ------------
# glibc evaluates expf in double precision: x * 32/ln2 = k + r, exp(x) = 2^(k/32) * p(r), then one rounding to
# float. Doing the same double-precision steps here reproduces every result bit for bit (checked on every
# float32 in [-2, 0]); torch's and numpy's vectorised float32 exp differ from it in the last bit on some inputs.
_EXP_TABLE_BITS = 5
_EXP_N = 1 << _EXP_TABLE_BITS
_EXP_TABLE = np.array(
    [np.float64(2.0 ** (i / _EXP_N)).view(np.uint64) - np.uint64(i << (52 - _EXP_TABLE_BITS)) for i in range(_EXP_N)],
    dtype=np.uint64,
)
_EXP_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * _EXP_N
_EXP_SHIFT = float.fromhex("0x1.8p+52")
_EXP_POLY = (
    float.fromhex("0x1.c6af84b912394p-5") / _EXP_N**3,
    float.fromhex("0x1.ebfce50fac4f3p-3") / _EXP_N**2,
    float.fromhex("0x1.62e42ff0c52d6p-1") / _EXP_N,
)
_EXP_UNDERFLOW = np.float32(float.fromhex("-0x1.9fe368p6"))  # below this expf returns +0


# Elements per block where a computation runs block by block: the block's temporaries (float64 here) stay in the
# cache and are reused from one block to the next, where whole-array temporaries would be fresh memory that the
# system maps and clears on every call.
_BLOCK = 8192


def expf(x: np.ndarray) -> np.ndarray:
    """glibc's `expf` for finite float32 `x <= 0` (the soft-NMS exponents), as a float32 array."""
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(-1)
    result = np.empty(flat.shape[0], dtype=np.float32)
    for low in range(0, flat.shape[0], _BLOCK):
        result[low : low + _BLOCK] = _glibc_expf(flat[low : low + _BLOCK])
    return result.reshape(x.shape)


def _glibc_expf(x: np.ndarray) -> np.ndarray:
    """glibc's `expf` steps in double precision (see above)."""
    z = np.multiply(x, np.float64(_EXP_INV_LN2_N))  # in double precision
    shifted = z + _EXP_SHIFT  # rounds z to an integer k, held in the low mantissa bits
    k = shifted.view(np.uint64)
    scale_bits = _EXP_TABLE.take(k & np.uint64(_EXP_N - 1))
    scale_bits += k << np.uint64(52 - _EXP_TABLE_BITS)
    shifted -= _EXP_SHIFT  # (k is a view of it, used up)
    r = z
    r -= shifted
    c0, c1, c2 = _EXP_POLY
    # ((c0 * r + c1) * (r * r) + (c2 * r + 1)) * 2^(k/N)
    y = r * r
    poly = r * c0
    poly += c1
    poly *= y
    r *= c2
    r += 1.0
    poly += r
    poly *= scale_bits.view(np.float64)
    y = poly.astype(np.float32)
    if x.shape[0] and x.min() < _EXP_UNDERFLOW:
        y[x < _EXP_UNDERFLOW] = 0
    return y


def decay_weights(
    ovr: np.ndarray,
    picked_length: np.ndarray,
    method: str,
    sigma: float,
    iou_threshold: float,
    t1: float,
    t2: float,
) -> np.ndarray:
    """Soft-NMS score multipliers (float32) for overlaps `ovr` with the picked segments, as OpenTAD's loop."""
    f32 = np.float32
    if method == "gaussian":
        exponent = np.multiply(ovr, ovr)
        exponent /= f32(-sigma)  # = -(ovr * ovr) / sigma, bit for bit
        return expf(exponent)
    if method == "linear":
        return np.where(ovr >= f32(iou_threshold), f32(1) - ovr, f32(1)).astype(np.float32)
    if method == "improved_gaussian":
        applies = ovr >= f32(t1) + f32(t2) * picked_length
        return np.where(applies, expf(-(ovr * ovr) / f32(sigma)), f32(1)).astype(np.float32)
    if method == "vanilla":
        return np.where(ovr >= f32(iou_threshold), f32(0), f32(1)).astype(np.float32)
    raise ValueError(f"unknown soft-NMS method {method!r}; expected one of {SOFT_NMS_METHODS}.")


def _float_order_key(values: np.ndarray) -> np.ndarray:
    """int64 keys in [0, 2**32) that sort like the float32 `values` (sign-magnitude bits made monotonic)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -1 - bits, bits + 2**31)


def _sweep(start: np.ndarray, end: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segments sorted by (group, start) -> `(order, stop)`: `stop[i]` is the first sorted position after the
    segments that start before the end of sorted segment `i` (same group); segments `i + 1 .. stop[i] - 1`
    are the later-starting segments it can overlap."""
    start, end = start + np.float32(0), end + np.float32(0)  # -0.0 -> +0.0, so that the keys sort like the floats
    order = np.lexsort((start, group))
    start_keys = (group[order].astype(np.int64) << 32) | _float_order_key(start[order])
    end_keys = (group[order].astype(np.int64) << 32) | _float_order_key(end[order])
    return order, np.searchsorted(start_keys, end_keys, side="left")


class _NeighbourMax:
    """Per segment (in sweep order), the highest current score among the segments that start inside it or
    contain its start (a superset of the segments it overlaps), in O(n log n) per call with no per-pair work.

    A segment's later-starting neighbours are one run of positions `i + 1 .. stop[i] - 1`: a sparse table gives
    the run's maximum. Its earlier-starting neighbours are those whose run covers its position: the same table
    read backwards (each run's score written on two power-of-two blocks, pushed down level by level) gives the
    maximum over the runs covering each position."""

    def __init__(self, stop: np.ndarray):
        n = stop.shape[0]
        first = np.arange(1, n + 1)
        run_length = stop - first
        self.has_run = run_length > 0
        lengths = run_length[self.has_run]
        self.levels = int(np.frexp(lengths.max())[1]) if lengths.shape[0] else 1
        level = np.frexp(lengths)[1] - 1  # floor(log2(length))
        self.n = n
        self.query_left = level * n + first[self.has_run]
        self.query_right = level * n + stop[self.has_run] - (1 << level)
        # the backward table: each run's score goes to two blocks; contributions sorted once by block
        blocks = np.concatenate((self.query_left, self.query_right))
        self.block_order = np.argsort(blocks, kind="stable")
        sorted_blocks = blocks[self.block_order]
        self.block_starts, _ = _runs(sorted_blocks)
        self.block_ids = sorted_blocks[self.block_starts]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """`scores`: current score per segment, -inf for segments out of play."""
        n, levels = self.n, self.levels
        table = np.full((levels, n), -np.inf, dtype=np.float32)
        table[0] = scores
        for k in range(1, levels):
            half = 1 << (k - 1)
            np.maximum(table[k - 1, : n - half], table[k - 1, half:], out=table[k, : n - half])
        result = np.full(n, -np.inf, dtype=np.float32)
        flat = table.reshape(-1)
        result[self.has_run] = np.maximum(flat[self.query_left], flat[self.query_right])

        covering = np.full((levels, n), -np.inf, dtype=np.float32)
        run_scores = scores[self.has_run]
        contributions = np.concatenate((run_scores, run_scores))[self.block_order]
        if contributions.shape[0]:
            covering.reshape(-1)[self.block_ids] = np.maximum.reduceat(contributions, self.block_starts)
        for k in range(levels - 1, 0, -1):
            half = 1 << (k - 1)
            np.maximum(covering[k - 1], covering[k], out=covering[k - 1])
            np.maximum(covering[k - 1, half:], covering[k, : n - half], out=covering[k - 1, half:])
        return np.maximum(result, covering[0], out=result)


class _OverlappingPairs(NamedTuple):
    """Pairs of overlapping same-group segments, in sweep order (group, start): `order` maps sweep
    positions to input indices and `stop` is `_sweep`'s; pair `k` is `first[k] < second[k]` (sweep positions,
    sorted by `first`), `weight_first[k]` the decay of `second` when `first` is picked, `weight_second[k]` that of
    `first` when `second` is picked (the same array unless the method is improved_gaussian)."""

    order: np.ndarray
    stop: np.ndarray
    first: np.ndarray
    second: np.ndarray
    weight_first: np.ndarray
    weight_second: np.ndarray


def _overlapping_pairs(
    start: np.ndarray,
    end: np.ndarray,
    group: np.ndarray,
    method: str,
    sigma: float,
    iou_threshold: float,
    t1: float,
    t2: float,
    sweep: tuple[np.ndarray, np.ndarray] | None = None,
) -> _OverlappingPairs:
    """`sweep`, when given, is `_sweep(start, end, group)`."""
    order, stop = _sweep(start, end, group) if sweep is None else sweep
    counts = _later_overlap_counts(stop)
    num_pairs = int(counts.sum())
    index = np.int32 if num_pairs < 2**31 else np.int64
    first, second = np.empty(num_pairs, dtype=index), np.empty(num_pairs, dtype=index)
    weight_first = np.empty(num_pairs, dtype=np.float32)
    weight_second = np.empty(num_pairs, dtype=np.float32) if method == "improved_gaussian" else weight_first
    low = 0
    for block in _pair_decay_blocks(start[order], end[order], counts, method, sigma, iou_threshold, t1, t2):
        high = low + block[0].shape[0]
        first[low:high], second[low:high], weight_first[low:high], weight_second[low:high] = block
        low = high
    return _OverlappingPairs(order, stop, first, second, weight_first, weight_second)


def _later_overlap_counts(stop: np.ndarray) -> np.ndarray:
    """Per sweep position, how many later-starting segments it can overlap: one run after it."""
    return np.maximum(stop - np.arange(1, stop.shape[0] + 1), 0)


def _pair_decay_blocks(
    start: np.ndarray,
    end: np.ndarray,
    counts: np.ndarray,
    method: str,
    sigma: float,
    iou_threshold: float,
    t1: float,
    t2: float,
):
    """The overlapping pairs as `(first, second, decay of second when first is picked, decay of first when second is
    picked)`, about `_BLOCK` pairs at a time (whole runs): sweep positions, `second` in `first`'s run, in order of
    `first` then `second`. `start`, `end` in sweep order, `counts` = `_later_overlap_counts`. Overlaps are OpenTAD's
    float32 ones: inter / (len_a + len_b - inter), lengths end - start + 1e-6; in sweep order the later start is
    `second`'s."""
    f32 = np.float32
    length = (end - start) + f32(1e-6)
    run_ends = np.cumsum(counts)
    total = int(run_ends[-1]) if run_ends.shape[0] else 0
    bounds = np.searchsorted(run_ends, np.arange(_BLOCK, total, _BLOCK), side="right").tolist()
    for low, high in zip([0, *bounds], [*bounds, counts.shape[0]]):
        block_counts = counts[low:high]
        first = np.repeat(np.arange(low, high, dtype=np.int64), block_counts)
        # second = first + 1 + the pair's place in first's run
        second = np.arange(1, first.shape[0] + 1, dtype=np.int64)
        second += np.repeat(np.arange(low, high) - (np.cumsum(block_counts) - block_counts), block_counts)
        inter = end[first]
        np.minimum(inter, end[second], out=inter)
        inter -= start[second]
        np.maximum(inter, f32(0), out=inter)
        length_first, length_second = length[first], length[second]
        ovr = length_second + length_first
        ovr -= inter
        np.divide(inter, ovr, out=ovr)
        weight_first = decay_weights(ovr, length_first, method, sigma, iou_threshold, t1, t2)
        weight_second = weight_first
        if method == "improved_gaussian":  # the only decay that depends on which segment is picked
            weight_second = decay_weights(ovr, length_second, method, sigma, iou_threshold, t1, t2)
        yield first, second, weight_first, weight_second


class _OverlapGraph(NamedTuple):
    """Overlapping pairs as directed edges grouped by source (sweep positions): the neighbours of `i` are
    `others[edge_start[i]:edge_start[i + 1]]`, `out_weight` the decay each receives when `i` is picked,
    `in_weight` the decay `i` receives when that neighbour is picked. A source's edges are those to
    earlier-starting segments, then those to later-starting ones."""

    edge_start: np.ndarray
    others: np.ndarray
    out_weight: np.ndarray
    in_weight: np.ndarray


def _overlap_graph(pairs: _OverlappingPairs) -> _OverlapGraph:
    n = pairs.order.shape[0]
    first, second, weight_first, weight_second = pairs.first, pairs.second, pairs.weight_first, pairs.weight_second
    effective = weight_first != 1  # a pair whose decays are both 1 changes nothing
    if weight_second is not weight_first:
        effective |= weight_second != 1
    if not effective.all():
        first, second = first[effective], second[effective]
        symmetric = weight_second is weight_first
        weight_first = weight_first[effective]
        weight_second = weight_first if symmetric else weight_second[effective]
    to_later = np.bincount(first, minlength=n)
    to_earlier = np.bincount(second, minlength=n)
    edge_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(to_later + to_earlier, out=edge_start[1:])
    others = np.empty(2 * first.shape[0], dtype=first.dtype)
    out_weight = np.empty(2 * first.shape[0], dtype=np.float32)
    # pairs come sorted by `first`, so only the edges from `second` need sorting
    by_second = _stable_argsort(second, n)
    position = np.arange(first.shape[0], dtype=np.int64)
    position += np.repeat(edge_start[:-1] - np.cumsum(to_earlier) + to_earlier, to_earlier)
    others[position], out_weight[position] = first[by_second], weight_second[by_second]
    position_later = np.arange(first.shape[0], dtype=np.int64)
    position_later += np.repeat(edge_start[:-1] + to_earlier - np.cumsum(to_later) + to_later, to_later)
    others[position_later], out_weight[position_later] = second, weight_first
    in_weight = out_weight
    if weight_second is not weight_first:
        in_weight = np.empty_like(out_weight)
        in_weight[position], in_weight[position_later] = weight_first[by_second], weight_second
    return _OverlapGraph(edge_start, others, out_weight, in_weight)


# --- soft-NMS -------------------------------------------------------------------------------------------


def soft_nms_groups(
    segments: np.ndarray,
    scores: np.ndarray,
    group_ids: np.ndarray,
    method: str,
    sigma: float,
    min_score: float,
    iou_threshold: float,
    t1: float,
    t2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """OpenTAD's soft-NMS run independently for every group (e.g. class) of candidates.

    Args:
        segments: `(n, 2)` float32 (start, end); scores: `(n,)` float32; group_ids: `(n,)` int64.
        method, sigma, min_score, iou_threshold, t1, t2: as OpenTAD's `softnms_1d_cpu`.

    Returns:
        `(keep, kept_scores)`: candidate indices (int64) and decayed scores (float32), grouped by ascending
        group id and, inside a group, in OpenTAD's selection order.
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"soft-NMS needs a soft method {SOFT_NMS_METHODS}, got {method!r}.")
    n = scores.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if n > MAX_SOFT_NMS_CANDIDATES:
        raise ValueError(f"soft-NMS takes at most {MAX_SOFT_NMS_CANDIDATES} candidates per call, got {n}.")
    params = dict(method=method, sigma=sigma, min_score=min_score, iou_threshold=iou_threshold, t1=t1, t2=t2)
    start, end = segments[:, 0], segments[:, 1]
    # the pick loop and, where it declines, the rounds start from the same sweep: sorted once
    pairs = None
    if _overlaps_alone_decay(start, end, scores, method, iou_threshold):
        group = np.unique(group_ids, return_inverse=True)[1]
        sweep = _sweep(start, end, group)
        picked = _soft_nms_picks_without_ties(start, end, scores, group_ids, sweep=sweep, **params)
        if picked is not None:
            return picked
        pairs = _overlapping_pairs(start, end, group, method, sigma, iou_threshold, t1, t2, sweep=sweep)
    keep, kept_scores, sequential_groups = _soft_nms_rounds(start, end, scores, group_ids, pairs=pairs, **params)
    if sequential_groups.shape[0]:
        redo = np.flatnonzero(np.isin(group_ids, sequential_groups))
        redo_keep, redo_scores = _sequential_soft_nms(segments[redo], scores[redo], group_ids[redo], **params)
        keep = np.concatenate((keep, redo[redo_keep]))
        kept_scores = np.concatenate((kept_scores, redo_scores))
    by_group = np.argsort(group_ids[keep], kind="stable")
    return keep[by_group], kept_scores[by_group]


def _overlaps_alone_decay(start, end, scores, method: str, iou_threshold: float) -> bool:
    """Whether only overlapping candidates decay each other, and never upwards: a zero overlap leaves a score
    untouched (not so for vanilla with iou_threshold <= 0), scores are >= 0, and overlaps are plain (finite values,
    no reversed segment). The rounds and the pick loop rely on it; other inputs take the dense step loop."""
    return (
        (method != "vanilla" or iou_threshold > 0)
        and bool(np.isfinite(start).all() and np.isfinite(end).all() and np.isfinite(scores).all())
        and bool((scores >= 0).all() and (end >= start).all())
    )


def _soft_nms_picks_without_ties(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    group_ids: np.ndarray,
    *,
    method: str,
    sigma: float,
    min_score: float,
    iou_threshold: float,
    t1: float,
    t2: float,
    sweep: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """OpenTAD's loop one pick at a time, every group at once, for groups of up to `_PICK_LOOP_MAX_GROUP_SIZE`
    candidates. While each pick is the only candidate of its group at the top score, the memory layout decides
    nothing, so a pick only multiplies the precomputed decays of the candidates it overlaps (one row of a dense
    table per candidate). Returns `(keep, kept_scores)`, grouped by group and in pick order inside each, or None
    for inputs it does not take: larger groups, inputs outside `_overlaps_alone_decay`, overlaps so uneven that the
    table would be mostly empty, decays of 0, a group whose best starts below `min_score`, and any tie at the top of
    a group (then the rounds decide). `sweep`, when given, is `_sweep` of these inputs, which then pass
    `_overlaps_alone_decay`."""
    f32 = np.float32
    n = scores.shape[0]
    unique_ids, group, sizes = np.unique(group_ids, return_inverse=True, return_counts=True)
    width = int(sizes.max())
    if width > _PICK_LOOP_MAX_GROUP_SIZE:
        return None
    if sweep is None:
        if not _overlaps_alone_decay(start, end, scores, method, iou_threshold):
            return None
        sweep = _sweep(start, end, group)
    order, stop = sweep
    num_groups = unique_ids.shape[0]
    # Each group is a row of a table of current scores: its candidates in sweep order between `span` empty cells on
    # either side; -inf marks empty, picked or dropped cells. Window w, a view, is cells w .. w + 2 * span: the
    # pick in cell w + span and its neighbours in sweep order. Where that table would be mostly empty, the rounds
    # take the input.
    counts = _later_overlap_counts(stop)
    span = max(int(counts.max()), 1)
    row_width = width + 2 * span
    num_cells = num_groups * row_width
    if num_cells * (2 * span + 1) > 16 * int(counts.sum()) + 2**16:
        return None
    group_of_position = np.repeat(np.arange(num_groups), sizes)
    first_position_of_row = np.cumsum(sizes) - sizes
    first_window_of_row = np.arange(num_groups) * row_width
    cell = np.arange(n) + (first_window_of_row + span - first_position_of_row)[group_of_position]
    current = np.full(num_cells, -np.inf, dtype=f32)
    current[cell] = scores[order]
    table = current.reshape(num_groups, row_width)
    minimum = f32(min_score)
    # OpenTAD drops a candidate once its score falls below `min_score`; here it stays in the table, below every
    # candidate in play, and a group is done when its best is below `min_score`. That needs each group's best to
    # start at `min_score` or above (OpenTAD keeps a lower best alone); the rounds take other inputs.
    if (table.max(1) < minimum).any():
        return None
    windows = np.lib.stride_tricks.sliding_window_view(current, 2 * span + 1, writeable=True)
    decay_factors = _pick_decay_factors(start[order], end[order], counts, span, method, sigma, iou_threshold, t1, t2)
    # a decay of 0 would turn a picked cell's -inf into NaN (see the loop); the rounds take such inputs
    if decay_factors is None:
        return None

    # the candidate at place p of row r's candidate cells: window r * row_width + p, sweep position start_r + p
    candidate_cells = table[:, span : span + width]
    minimum_value = float(minimum)
    picked_positions, picked_scores = [], []
    while True:
        place = candidate_cells.argmax(1)
        window = place + first_window_of_row
        values = windows[window]
        top = values[:, span : span + 1].copy()
        if min(top.ravel().tolist()) < minimum_value:  # a group is done
            active = top[:, 0] >= minimum
            if not active.any():
                break
            window, values, top = window[active], values[active], top[active]
            place = place[active] + first_position_of_row[active]
        else:
            place += first_position_of_row
        picked_positions.append(place)
        picked_scores.append(top)
        values[:, span] = -np.inf
        # a candidate tied with the pick: one it decays shows here, any other is picked next at the same score
        if np.count_nonzero(values == top):
            return None
        values *= decay_factors.take(place, axis=0)
        windows[window] = values
    picked_positions = np.concatenate(picked_positions)
    picked_scores = np.concatenate(picked_scores).ravel()
    picked_groups = group_of_position[picked_positions]
    by_group = np.argsort(picked_groups, kind="stable")
    picked_positions, picked_scores, picked_groups = (
        picked_positions[by_group], picked_scores[by_group], picked_groups[by_group]
    )
    if ((picked_groups[1:] == picked_groups[:-1]) & (picked_scores[1:] == picked_scores[:-1])).any():
        return None
    return order[picked_positions], picked_scores


def _pick_decay_factors(
    start: np.ndarray,
    end: np.ndarray,
    counts: np.ndarray,
    span: int,
    method: str,
    sigma: float,
    iou_threshold: float,
    t1: float,
    t2: float,
) -> np.ndarray | None:
    """The decays a pick at sweep position p applies to its window, sweep positions p - span .. p + span, as row p of
    an `(n, 2 * span + 1)` array (1 for the pick itself and where they do not overlap); None if a decay is 0.
    `start`, `end` in sweep order, `counts` = `_later_overlap_counts`."""
    n, width = start.shape[0], 2 * span + 1
    # `span` rows of ones above the table let the left halves be read as diagonals of the right halves
    table = np.empty((span + n, width), dtype=np.float32)
    table[:, span:] = 1
    flat = table.reshape(-1)
    symmetric = method != "improved_gaussian"
    if not symmetric:
        table[span:, :span] = 1
    for first, second, weight_first, weight_second in _pair_decay_blocks(
        start, end, counts, method, sigma, iou_threshold, t1, t2
    ):
        if not weight_first.all() or (not symmetric and not weight_second.all()):
            return None
        # pair (i, j): the decay of j when i is picked is cell (span + i, span + j - i), flat position
        # i * (width - 1) + j + span * (width + 1)
        slot = first * (width - 1)
        slot += second
        slot += span * (width + 1)
        flat[slot] = weight_first
        if not symmetric:  # the decay of i when j is picked: cell (span + j, span + i - j)
            slot = second * (width - 1)
            slot += first
            slot += span * (width + 1)
            flat[slot] = weight_second
    if symmetric:
        # the decay of i when j is picked, cell (span + j, span + i - j), equals that of j when i is: cell
        # (span + j, m) is cell (j + m, 2 * span - m), flat position j * width + 2 * span + m * (width - 1)
        table[span:, :span] = np.lib.stride_tricks.as_strided(
            flat[2 * span :], shape=(n, span), strides=(width * flat.itemsize, (width - 1) * flat.itemsize)
        )
    return table[span:]


def _soft_nms_rounds(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    group_ids: np.ndarray,
    *,
    method: str,
    sigma: float,
    min_score: float,
    iou_threshold: float,
    t1: float,
    t2: float,
    counters: dict | None = None,
    pairs: _OverlappingPairs | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft-NMS by rounds of local maxima, groups with ties step by step (module docstring). Returns `(keep,
    kept_scores, groups_left)`: the picks of every group it decided, in selection order inside each group, and
    the group ids left for the dense step loop (all of them for inputs the rounds do not cover, else none).
    `counters`, when given, receives the work done (rounds, pair visits, groups run step by step), for tests.
    `pairs`, when given, are `_overlapping_pairs` of these inputs, which then pass `_overlaps_alone_decay`."""
    f32 = np.float32
    unique_ids, group = np.unique(group_ids, return_inverse=True)
    if pairs is None:
        if not _overlaps_alone_decay(start, end, scores, method, iou_threshold):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), unique_ids
        pairs = _overlapping_pairs(start, end, group, method, sigma, iou_threshold, t1, t2)
    num_groups = unique_ids.shape[0]
    # candidates are handled in sweep order (group, start); `order` maps back to the input
    order, stop, graph = pairs.order, pairs.stop, _overlap_graph(pairs)
    edge_start, others, out_weight, in_weight = graph
    group, initial = group[order], scores[order].astype(np.float32)
    n = initial.shape[0]
    group_max = np.full(num_groups, -np.inf, dtype=np.float32)
    np.maximum.at(group_max, group, initial)
    # A group whose best score is below `min_score` keeps only its first best candidate (OpenTAD's first step
    # drops all others); otherwise the first step drops every candidate below `min_score`.
    low_groups = group_max < f32(min_score)
    alive = (initial >= f32(min_score)) & ~low_groups[group]
    current = initial.copy()
    neighbour_max = _NeighbourMax(stop)

    picked = np.zeros(n, dtype=bool)
    stepped = np.zeros(num_groups, dtype=bool)  # groups run step by step (ties that change scores)
    log = _DecayLog(n)
    group_bounds = np.searchsorted(group, np.arange(num_groups + 1))  # sweep order is grouped
    rounds = pair_visits = 0
    while alive.any():
        rounds += 1
        ready = alive & (current > neighbour_max(np.where(alive, current, f32(-np.inf))))
        if not ready.any():
            # in every group left, overlapping candidates tie at the top: OpenTAD's memory layout orders them
            stepped[group[alive]] = True
            alive[stepped[group]] = False
            continue
        picks = np.flatnonzero(ready)
        picked[picks] = True
        alive[picks] = False

        # decays of this round's picks on their live neighbours, generated in descending pick score
        picks = picks[np.argsort(-current[picks], kind="stable")]
        counts = edge_start[picks + 1] - edge_start[picks]
        edges = np.repeat(edge_start[picks] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        pair_visits += edges.shape[0]
        live = alive[others[edges]]
        if live.any():
            edges = edges[live]
            pick_score = np.repeat(current[picks], counts)[live]
            _apply_decays(current, initial, log, others[edges], pick_score, out_weight[edges])
            alive &= ~(current < f32(min_score))

    # exact ties among a group's pick scores: OpenTAD's layout decides their order (and the order of their decays)
    keep = np.flatnonzero(picked & ~stepped[group])
    kept_scores = current[keep]
    kept_group = group[keep]
    by_rank = np.lexsort((-kept_scores, kept_group))
    keep, kept_scores, kept_group = keep[by_rank], kept_scores[by_rank], kept_group[by_rank]
    tied = (kept_scores[1:] == kept_scores[:-1]) & (kept_group[1:] == kept_group[:-1])
    for g in np.unique(kept_group[1:][tied]):
        in_group = np.flatnonzero(kept_group == g)
        ordered = _order_ties_like_opentad(
            np.flatnonzero(group == g), keep[in_group], order, initial, current, picked, log, min_score,
            graph,
        )
        if ordered is None:
            stepped[g] = True
        else:
            keep[in_group] = ordered
    # Groups where the layout changes scores (overlapping candidates tied at the top, or equal-score picks
    # decaying the same candidate) run OpenTAD's loop one pick at a time.
    if stepped.any():
        rounds_decided = ~stepped[kept_group]
        parts = [(keep[rounds_decided], kept_scores[rounds_decided])]
        for g in np.flatnonzero(stepped).tolist():
            members = np.arange(group_bounds[g], group_bounds[g + 1])
            parts.append(_soft_nms_steps(members, order, initial, f32(min_score), graph))
        keep, kept_scores = (np.concatenate(part) for part in zip(*parts))
    keep = order[keep]
    # groups below min_score: their first best candidate in input order (OpenTAD's first step)
    for g in np.flatnonzero(low_groups):
        members = np.flatnonzero(group_ids == unique_ids[g])
        best = members[np.argmax(scores[members])]
        keep, kept_scores = np.append(keep, best), np.append(kept_scores, scores[best])
    if counters is not None:
        counters.update(
            rounds=rounds, pair_visits=pair_visits, pairs=int(pairs.first.shape[0]), stepped_groups=int(stepped.sum())
        )
    return keep, kept_scores, np.zeros(0, dtype=unique_ids.dtype)


def _soft_nms_steps(
    members: np.ndarray, order: np.ndarray, initial: np.ndarray, min_score: np.float32, graph: _OverlapGraph
) -> tuple[np.ndarray, np.ndarray]:
    """OpenTAD's loop for one group (sweep indices `members`), one pick at a time, with its memory layout; each
    step costs the pick's overlaps and a few heap operations instead of a scan of all remaining candidates.

    The layout: slot `k` holds `at_slot[k]` (a local id, the rank in input order); a step swaps the pick into
    the next slot and overwrites each dropped candidate with the last one still in the array (the net effect:
    holes left of the new end are filled, left to right, with the survivors right of it taken from the far
    right). The next pick is the highest score, the lowest slot among equal ones, from a heap keyed (-score,
    slot): a decayed candidate's entry is refreshed when it comes up, a moved one gets a new entry at once.
    Returns (picks as sweep indices, their scores), in OpenTAD's order."""
    by_input = members[np.argsort(order[members], kind="stable")]
    size = by_input.shape[0]
    local = np.empty(initial.shape[0], dtype=np.int64)
    local[by_input] = np.arange(size)
    # plain Python from here: most steps touch a handful of candidates, too few for numpy calls to pay.
    # array('f') stores float32: a product of two float32 values is exact in a Python float, and storing it
    # rounds it to float32 once, as OpenTAD's float multiply does.
    score = array.array("f", initial[by_input].tobytes())  # by local id
    first_edge, last_edge = graph.edge_start[members[0]], graph.edge_start[members[-1] + 1]
    others = local[graph.others[first_edge:last_edge]].tolist()
    out_weight = graph.out_weight[first_edge:last_edge].tolist()
    edge_lo = (graph.edge_start[by_input] - first_edge).tolist()
    edge_hi = (graph.edge_start[by_input + 1] - first_edge).tolist()
    min_score = float(min_score)
    in_play = [True] * size
    untouched = [True] * size  # never decayed nor moved: its key is still (-initial score, input rank)
    slot_of, at_slot = list(range(size)), list(range(size))
    count = size
    initially_low = [k for k in range(size) if score[k] < min_score]
    by_initial = np.lexsort((np.arange(size), -initial[by_input])).tolist()  # the untouched ones, best first
    next_untouched = 0
    touched: list[tuple[float, int, int]] = []  # heap of (-score, slot, local id)
    picks, picked_scores = [], []
    heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
    step = 0
    while True:
        while next_untouched < size and not (untouched[k := by_initial[next_untouched]] and in_play[k]):
            next_untouched += 1
        while touched:
            negative_score, slot, k = touched[0]
            if not in_play[k] or slot_of[k] != slot:
                heappop(touched)  # picked or dropped, or moved (a newer entry holds its slot)
            elif -negative_score != score[k]:
                heapreplace(touched, (-score[k], slot, k))  # decayed since
            else:
                break
        if next_untouched < size:
            k = by_initial[next_untouched]
            if touched and touched[0] < (-score[k], k, k):
                k = heappop(touched)[2]
        elif touched:
            k = heappop(touched)[2]
        else:
            break
        current, slot = score[k], slot_of[k]
        front = at_slot[step]
        at_slot[step], slot_of[k] = k, step
        at_slot[slot], slot_of[front] = front, slot
        in_play[k] = False
        picks.append(k)
        picked_scores.append(current)
        gone = []
        for e in range(edge_lo[k], edge_hi[k]):
            m = others[e]
            if in_play[m]:
                score[m] = score[m] * out_weight[e]
                if score[m] < min_score:
                    gone.append(m)
                elif untouched[m]:
                    untouched[m] = False
                    heappush(touched, (-score[m], slot_of[m], m))
        if front != k and in_play[front]:
            untouched[front] = False
            heappush(touched, (-score[front], slot_of[front], front))
        if step == 0:
            gone = list(set(gone).union(initially_low))
        if gone:
            for m in gone:
                in_play[m] = False
            new_count = count - len(gone)
            holes = sorted(s for s in (slot_of[m] for m in gone) if s < new_count)
            fillers = [at_slot[t] for t in range(count - 1, new_count - 1, -1) if in_play[at_slot[t]]]
            for hole, filler in zip(holes, fillers):
                at_slot[hole], slot_of[filler] = filler, hole
                untouched[filler] = False
                heappush(touched, (-score[filler], hole, filler))
            count = new_count
        step += 1
    return by_input[np.array(picks, dtype=np.int64)], np.array(picked_scores, dtype=np.float32)


def _order_ties_like_opentad(
    members: np.ndarray,
    picks: np.ndarray,
    order: np.ndarray,
    initial: np.ndarray,
    current: np.ndarray,
    picked: np.ndarray,
    log: _DecayLog,
    min_score: float,
    graph: _OverlapGraph,
) -> np.ndarray | None:
    """OpenTAD's pick order for a group whose picks include equal scores, or None where its layout would also
    change a score (two equal-score picks decaying the same candidate).

    `picks` (sweep indices, by descending pick score) are replayed through OpenTAD's memory layout: the group's
    candidates start in input order; each step swaps the pick into place and moves dropped candidates out
    (holes filled from the end); among equal scores the one in the lowest slot goes first."""
    f32 = np.float32
    pick_scores = current[picks]
    # a candidate whose decays include two equal pick scores: OpenTAD's order of those picks sets its bits
    log_scores = np.sort(log.pick_score[members], axis=1)
    if ((log_scores[:, 1:] == log_scores[:, :-1]) & np.isfinite(log_scores[:, 1:])).any():
        return None
    # drop step of every dropped candidate: the pick after which its decays, in pick order, fall below min_score
    dropped = members[~picked[members]]
    initially_low = dropped[initial[dropped] < f32(min_score)]
    decayed = dropped[initial[dropped] >= f32(min_score)]
    edge_start, others, _, in_weight = graph
    counts = edge_start[decayed + 1] - edge_start[decayed]
    edge = np.repeat(edge_start[decayed] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    row = np.repeat(np.arange(decayed.shape[0]), counts)
    by_pick = picked[others[edge]]
    edge, row = edge[by_pick], row[by_pick]
    sort = np.lexsort((-current[others[edge]], row))
    edge, row = edge[sort], row[sort]
    run_start, run_length = _runs(row)
    width = int(run_length.max()) if run_length.shape[0] else 0
    column = np.arange(edge.shape[0]) - np.repeat(run_start, run_length)
    factors = np.ones((decayed.shape[0], width + 1), dtype=np.float32)
    factors[:, 0] = initial[decayed]
    factors[row, column + 1] = in_weight[edge]
    scores_by_column = np.full((decayed.shape[0], width + 2), -np.inf, dtype=np.float32)
    scores_by_column[row, column + 1] = current[others[edge]]
    pickers = np.full((decayed.shape[0], width + 1), -1, dtype=np.int64)
    pickers[row, column + 1] = others[edge]
    below = np.multiply.accumulate(factors, axis=1) < f32(min_score)
    if decayed.shape[0] and not below.any(axis=1).all():
        return None  # not the process the rounds described (cannot happen; refuse rather than guess)
    crossing = np.argmax(below, axis=1)
    # equal pick scores up to the crossing (or right after it) make the drop step depend on the layout
    ahead = np.arange(width + 1)[None] <= crossing[:, None]
    if (ahead & (scores_by_column[:, 1:] == scores_by_column[:, :-1]) & np.isfinite(scores_by_column[:, 1:])).any():
        return None
    drop_pick = pickers[np.arange(decayed.shape[0]), crossing]

    # the replay, in group-local slots (input order)
    local = np.empty(initial.shape[0], dtype=np.int64)
    by_input = members[np.argsort(order[members], kind="stable")]
    local[by_input] = np.arange(by_input.shape[0])
    drops_at: dict[int, list[int]] = {}
    for k, j in zip(local[decayed].tolist(), drop_pick.tolist()):
        drops_at.setdefault(j, []).append(k)
    slot_of = list(range(by_input.shape[0]))
    at_slot = list(range(by_input.shape[0]))
    dropped_now = set()
    count = len(at_slot)
    result = []
    pick_list, score_list = picks.tolist(), pick_scores.tolist()
    step, i = 0, 0
    while i < len(pick_list):
        level_end = i
        while level_end < len(pick_list) and score_list[level_end] == score_list[i]:
            level_end += 1
        level = pick_list[i:level_end]
        while level:
            chosen = min(level, key=lambda p: slot_of[local[p]])
            level.remove(chosen)
            p = int(local[chosen])
            result.append(chosen)
            s, front = slot_of[p], at_slot[step]
            at_slot[step], slot_of[p] = p, step
            at_slot[s], slot_of[front] = front, s
            gone = drops_at.get(chosen, [])
            if step == 0:
                gone = gone + local[initially_low].tolist()
            if gone:
                dropped_now = set(gone)
                new_count = count - len(gone)
                holes = sorted(slot_of[k] for k in gone if slot_of[k] < new_count)
                fillers = [at_slot[t] for t in range(count - 1, new_count - 1, -1) if at_slot[t] not in dropped_now]
                for hole, filler in zip(holes, fillers):
                    at_slot[hole], slot_of[filler] = filler, hole
                count = new_count
            step += 1
        i = level_end
    return np.array(result, dtype=np.int64)


class _DecayLog:
    """The decays applied so far to each candidate, as (pick score, weight) slots, to recompute a score in
    OpenTAD's order when a round brings a decay from a higher pick than one already applied. The width grows
    when a candidate receives more decays than there are slots."""

    def __init__(self, n: int, width: int = 16):
        self.pick_score = np.full((n, width), -np.inf, dtype=np.float32)
        self.weight = np.ones((n, width), dtype=np.float32)
        self.count = np.zeros(n, dtype=np.int64)
        self.lowest = np.full(n, np.inf, dtype=np.float32)  # lowest pick score applied so far

    def add(self, target, pick_score, w, run_start, run_length):
        slot = self.count[target] + np.arange(target.shape[0]) - np.repeat(run_start, run_length)
        if slot.max() >= self.weight.shape[1]:
            grow = max(int(slot.max()) + 1, 2 * self.weight.shape[1]) - self.weight.shape[1]
            self.pick_score = np.pad(self.pick_score, ((0, 0), (0, grow)), constant_values=-np.inf)
            self.weight = np.pad(self.weight, ((0, 0), (0, grow)), constant_values=1)
        flat = target * self.weight.shape[1] + slot
        self.pick_score.reshape(-1)[flat] = pick_score
        self.weight.reshape(-1)[flat] = w
        self.count[target[run_start]] += run_length

    def replay(self, initial: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of `rows`: initial score times their decays in descending pick score, one multiply at a time
        (empty slots hold weight 1, which changes nothing)."""
        width = self.weight.shape[1]
        order = np.argsort(-self.pick_score[rows], axis=1, kind="stable")
        factors = np.empty((rows.shape[0], width + 1), dtype=np.float32)
        factors[:, 0] = initial[rows]
        factors[:, 1:] = self.weight.reshape(-1)[order + (rows * width)[:, None]]
        return np.multiply.reduce(factors, axis=1)


def _apply_decays(
    current: np.ndarray,
    initial: np.ndarray,
    log: _DecayLog,
    target: np.ndarray,
    pick_score: np.ndarray,
    w: np.ndarray,
) -> None:
    """Multiplies this round's decays into `current`, in descending pick score per candidate (OpenTAD's
    order; the entries come in descending pick score).

    A round may pick a low local maximum before a higher pick elsewhere whose decay reaches the same
    candidate in a later round; such a candidate's score is recomputed from its initial score and its log."""
    order = _stable_argsort(target, current.shape[0])
    target, pick_score, w = target[order], pick_score[order], w[order]
    run_start, run_length = _runs(target)
    run_target = target[run_start]
    late = pick_score[run_start] >= log.lowest[run_target]  # the run's first entry is its highest
    log.lowest[run_target] = np.minimum(log.lowest[run_target], pick_score[run_start + run_length - 1])
    log.add(target, pick_score, w, run_start, run_length)
    if not late.any():
        _multiply_runs(current, w, run_start, run_length, target)
        return
    in_order = ~np.repeat(late, run_length)
    _multiply_runs(current, w[in_order], *_runs(target[in_order]), target[in_order])
    late_targets = run_target[late]
    current[late_targets] = log.replay(initial, late_targets)


def _stable_argsort(ids: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of integer ids in [0, bound): as uint16 when they fit (numpy radix-sorts those)."""
    return np.argsort(ids.astype(np.uint16) if bound <= 2**16 else ids, kind="stable")


def _runs(sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each run of equal values in `sorted_ids`."""
    if sorted_ids.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    run_start = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    return run_start, np.diff(run_start, append=sorted_ids.shape[0])


def _multiply_runs(
    current: np.ndarray, w: np.ndarray, run_start: np.ndarray, run_length: np.ndarray, target: np.ndarray
) -> None:
    """current[t] *= w for each entry, in the given order inside each run of one target `t`: one float32
    multiply at a time, as OpenTAD's loop (numpy's `multiply.reduceat` multiplies a slice left to right)."""
    if run_start.shape[0] == 0:
        return
    run_target = target[run_start]
    first = run_start + np.arange(run_start.shape[0])  # each run's slot for the current score
    factors = np.empty(w.shape[0] + run_start.shape[0], dtype=np.float32)
    factors[first] = current[run_target]
    factors[np.arange(w.shape[0]) + np.repeat(np.arange(1, run_start.shape[0] + 1), run_length)] = w
    current[run_target] = np.multiply.reduceat(factors, first)


# --- the step loop: OpenTAD's algorithm step by step, with its memory layout -------------------------


def _sequential_soft_nms(
    segments: np.ndarray,
    scores: np.ndarray,
    group_ids: np.ndarray,
    *,
    method: str,
    sigma: float,
    min_score: float,
    iou_threshold: float,
    t1: float,
    t2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """OpenTAD's loop, one row per group, all rows stepping together: pick the highest remaining score (first
    in the row on ties), swap it into place, decay the rest, drop those below `min_score` with OpenTAD's
    layout. Exact for every input, O(n^2) per group: used for inputs the rounds and `_soft_nms_steps` do not cover
    (negative scores, reversed segments, vanilla soft-NMS with `iou_threshold <= 0`)."""
    params = dict(method=method, sigma=sigma, iou_threshold=iou_threshold, t1=t1, t2=t2)
    segments_t = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32))
    scores_t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    num_candidates = scores_t.shape[0]
    row, column, sizes = _pad_groups(torch.from_numpy(np.ascontiguousarray(group_ids)))
    num_rows, num_columns = sizes.shape[0], int(sizes.max())

    # state[field, row, column]: 0/1 = start/end, 2 = current score, 3 = length (+1e-6 as OpenTAD),
    # 4 = candidate index (exact in float32 below 2**24 candidates). Column `step` receives the pick
    # of that step and is never written again, so at the end each row holds its picks in order.
    state = torch.zeros(5, num_rows, num_columns)
    state[0, row, column] = segments_t[:, 0]
    state[1, row, column] = segments_t[:, 1]
    state[2, row, column] = scores_t
    state[3, row, column] = segments_t[:, 1] - segments_t[:, 0] + 1e-6
    state[4, row, column] = torch.arange(num_candidates, dtype=torch.float32)
    remaining = sizes.clone()  # candidates still in play per row (picked ones included)
    width = num_columns  # no row has candidates in play at or beyond this column
    columns = torch.arange(num_columns)
    first_column = torch.zeros(num_rows, 1, dtype=torch.long)
    single_row = num_rows == 1
    # Decay factors are >= 0, so a drop below `min_score` is only possible if a score can get there.
    drops_possible = min_score > 0 or bool((scores_t < min_score).any())
    # Every method except vanilla with iou_threshold <= 0 leaves a score exactly unchanged when the
    # overlap is 0, so on wide rows only the overlapping candidates are decayed (fewer exp calls).
    sparse_decay_allowed = method != "vanilla" or iou_threshold > 0

    # Finished rows are moved out of `state` once they are half of it, so long rows do not drag short ones along.
    row_of_state = torch.arange(num_rows)  # row index of each row of `state`
    finished_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    step = 0
    while step < width:
        if num_rows > 1 and step % _ROW_COMPACTION_INTERVAL == 0:
            active = remaining > step
            if int(active.sum()) <= num_rows // 2:
                finished = ~active
                keep_mask = columns[None] < remaining[finished][:, None]
                rows_of_picks = row_of_state[finished][:, None].expand_as(keep_mask)[keep_mask]
                finished_parts.append((state[4][finished][keep_mask], state[2][finished][keep_mask], rows_of_picks))
                state, remaining, row_of_state = state[:, active], remaining[active], row_of_state[active]
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
        # swap the picked candidate into column `step`, as the C++ loop does
        swap = torch.cat((first_column, best), dim=1).expand(5, num_rows, 2)
        tail.scatter_(2, swap, tail.gather(2, torch.cat((best, first_column), dim=1).expand(5, num_rows, 2)))

        picked_start, picked_end, _, picked_length, _ = tail[:, :, :1].unbind(0)  # each (num_rows, 1)
        start, end, score, length, _ = tail[:, :, 1:].unbind(0)  # each (num_rows, width - step - 1)
        inter = (torch.minimum(picked_end, end) - torch.maximum(picked_start, start)).clamp_(min=0)
        ovr = inter.div_(picked_length + length - inter)
        if sparse_decay_allowed and ovr.numel() > _DENSE_DECAY_MAX_ELEMENTS:
            overlapping = (ovr != 0).nonzero(as_tuple=True)
            weights = decay_weights(
                ovr[overlapping].numpy(), picked_length[overlapping[0], 0].numpy(), **params
            )
            score.index_put_(overlapping, score[overlapping] * torch.from_numpy(weights))
        else:
            weights = decay_weights(ovr.numpy(), picked_length.expand_as(ovr).numpy(), **params)
            score.mul_(torch.from_numpy(weights))

        if drops_possible:
            in_play_rest = columns[step + 1 : width] < remaining[:, None]
            dropped = (score < min_score) & in_play_rest
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
    keep, kept_scores, rows_of_picks = (torch.cat(part) for part in zip(*finished_parts))
    by_row = rows_of_picks.sort(stable=True).indices  # rows ascending by group id
    return keep[by_row].long().numpy(), kept_scores[by_row].numpy()


def _pad_groups(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lays out candidates as `(num_groups, max_group_size)` rows, one row per group id (ascending),
    keeping the input order inside each row. Returns (row of each candidate, its column, group sizes)."""
    _, row, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    order = torch.sort(row, stable=True).indices
    starts = torch.cumsum(sizes, 0) - sizes
    column = torch.empty_like(row)
    column[order] = torch.arange(row.shape[0]) - starts[row[order]]
    return row, column, sizes


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


# --- greedy NMS -----------------------------------------------------------------------------------------


def hard_nms_groups(
    segments: np.ndarray, scores: np.ndarray, group_ids: np.ndarray, iou_threshold: float, min_score: float
) -> np.ndarray:
    """Greedy NMS per group (OpenTAD `use_soft_nms=False`): candidates sorted by score, each kept one removes
    the later ones with IoU >= `iou_threshold`. With `min_score > 0` only scores strictly above it enter.
    Returns the kept indices grouped by ascending group id, by descending score inside a group."""
    segments_t = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32))
    scores_t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    group_t = torch.from_numpy(np.ascontiguousarray(group_ids))
    keep_per_group = []
    for group in torch.unique(group_t):
        members = torch.where(group_t == group)[0]
        if min_score > 0:
            members = members[scores_t[members] > min_score]
        order = members[scores_t[members].sort(descending=True).indices]
        starts, ends = segments_t[order, 0], segments_t[order, 1]
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
            alive[position + 1 :] &= ~(ovr >= iou_threshold)
        keep_per_group.append(order[alive])
    keep = torch.cat(keep_per_group) if keep_per_group else torch.zeros(0, dtype=torch.long)
    return keep.numpy()
