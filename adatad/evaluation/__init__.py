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

Modules: `inputs` (ground truth, predictions, thresholds), `metrics` (tIoU, matching, AP, the entry points),
`cli` (`adatad-eval`). The package is a leaf: numpy and the standard library only (never torch or transformers),
so `adatad-eval` starts in a fraction of a second.
"""

from .inputs import (
    DEFAULT_SUBSET,
    Detections,
    EvaluationInputError,
    GroundTruth,
    load_ground_truth,
    load_predictions,
    parse_tiou_thresholds,
)
from .metrics import (
    DEFAULT_TIOU_THRESHOLDS,
    evaluate_detection,
    evaluate_proposals,
    evaluate_topk_recall,
    metric_path,
)

__all__ = [
    "DEFAULT_SUBSET",
    "DEFAULT_TIOU_THRESHOLDS",
    "Detections",
    "EvaluationInputError",
    "GroundTruth",
    "evaluate_detection",
    "evaluate_proposals",
    "evaluate_topk_recall",
    "load_ground_truth",
    "load_predictions",
    "metric_path",
    "parse_tiou_thresholds",
]
