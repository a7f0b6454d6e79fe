# Copyright 2024 The adatad Authors. Licensed under the Apache License, Version 2.0.
"""ActivityNet-protocol temporal action detection mAP as an `evaluate` metric.

Load it offline from its folder (no Hub access):

    import evaluate
    from adatad.evaluation import metric_path

    metric = evaluate.load(metric_path())
    metric.add_batch(predictions=[...], references=[...])
    result = metric.compute(tiou_thresholds="0.5:0.95:0.05")

The numbers come from `adatad.evaluation.evaluate_detection`, identical to the official
ActivityNet evaluator.
"""

import datasets
import evaluate

from adatad.evaluation import DEFAULT_TIOU_THRESHOLDS, EvaluationInputError, evaluate_detection


_DESCRIPTION = """\
Mean average precision of temporal action detection under the ActivityNet protocol: detections
of each class are ranked by score, greedily matched to free ground-truth instances of the same
video at each tIoU threshold, and scored with the interpolated (VOC 2011) AP of the official
`activitynet/ActivityNet` `Evaluation/eval_detection.py`; mAP is the mean over ground-truth
classes and `average_mAP` the mean over thresholds.
"""

_KWARGS_DESCRIPTION = """
One example per video.

Args:
    predictions: list of `{"video_id": str, "segments": [[start, end], ...], "labels": [...],
        "scores": [...]}` (segments in seconds; labels all strings or all integers), or the output of
        `post_process_temporal_detection` as it is (tensors; class ids in `labels`, their names in
        `label_names`: the names are matched against string references, the ids against integer ones).
    references: list of `{"video_id": str, "segments": [[start, end], ...], "labels": [...]}`,
        the same videos in the same order (a video without ground truth has empty lists).
    tiou_thresholds: list of floats or a string "start:stop:step" (official `np.linspace`
        values) / "0.3,0.5,0.7". Default 0.5:0.95:0.05.
    class_names: optional list of class names; then predicted labels are class ids (integers,
        or their decimal strings) and are mapped to these names before matching.
    ignore_unknown_labels: drop predictions whose label has no ground truth (counted in
        `num_predictions_ignored`) instead of raising.
    remove_duplicate_instances: drop references with end <= start and same-label duplicates
        within 1e-3 s (OpenTAD's evaluator; the official one keeps them).

Returns:
    `mAP_per_tiou` ({threshold: mAP}), `average_mAP`, `ap_per_class` ({label: [AP per threshold]}),
    `tiou_thresholds`, counts and `warnings`.

Examples:
    >>> metric = evaluate.load(adatad.evaluation.metric_path())
    >>> result = metric.compute(
    ...     predictions=[{"video_id": "a", "segments": [[1.0, 5.0]], "labels": ["jump"], "scores": [0.9]}],
    ...     references=[{"video_id": "a", "segments": [[1.0, 5.5]], "labels": ["jump"]}],
    ...     tiou_thresholds=[0.5],
    ... )
    >>> result["average_mAP"]
    1.0
"""

_CITATION = """\
@inproceedings{caba2015activitynet,
  title={ActivityNet: A Large-Scale Video Benchmark for Human Activity Understanding},
  author={Caba Heilbron, Fabian and Escorcia, Victor and Ghanem, Bernard and Niebles, Juan Carlos},
  booktitle={CVPR},
  year={2015}
}
"""


def _features(prediction_label_type: str, reference_label_type: str) -> datasets.Features:
    segments = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))
    return datasets.Features(
        {
            "predictions": {
                "video_id": datasets.Value("string"),
                "segments": segments,
                "labels": datasets.Sequence(datasets.Value(prediction_label_type)),
                "scores": datasets.Sequence(datasets.Value("float64")),
            },
            "references": {
                "video_id": datasets.Value("string"),
                "segments": segments,
                "labels": datasets.Sequence(datasets.Value(reference_label_type)),
            },
        }
    )


def _references_use_names(references) -> bool:
    """Whether the references label by class name (else by class id); True when no reference has a label."""
    for reference in references or ():
        for label in reference["labels"]:
            return isinstance(label, str)
    return True


def _plain_prediction(prediction, use_names: bool):
    """`post_process_temporal_detection`'s output (tensors, `label_names`) -> this metric's lists; others unchanged."""
    if "label_names" not in prediction:
        return prediction
    labels = prediction["label_names"] if use_names else prediction["labels"]
    return {
        "video_id": prediction["video_id"],
        "segments": [[float(start), float(end)] for start, end in _as_list(prediction["segments"])],
        "labels": [label if use_names else int(label) for label in _as_list(labels)],
        "scores": [float(score) for score in _as_list(prediction["scores"])],
    }


def _as_list(values):
    return values.tolist() if hasattr(values, "tolist") else list(values)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TemporalDetectionMAP(evaluate.Metric):
    """ActivityNet-protocol detection mAP over several tIoU thresholds (official numbers)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Class names or class ids on both sides, or predicted class ids with `class_names`.
            features=[_features("string", "string"), _features("int64", "string"), _features("int64", "int64")],
            reference_urls=["https://github.com/activitynet/ActivityNet/blob/master/Evaluation/eval_detection.py"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """`evaluate.Metric.add_batch`; predictions may be `post_process_temporal_detection`'s output as it is."""
        if predictions is not None:
            names = _references_use_names(references)
            predictions = [_plain_prediction(prediction, names) for prediction in predictions]
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """`evaluate.Metric.add`; the prediction may be one `post_process_temporal_detection` result as it is."""
        if prediction is not None:
            prediction = _plain_prediction(prediction, _references_use_names([reference] if reference else None))
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(
        self,
        predictions,
        references,
        tiou_thresholds=DEFAULT_TIOU_THRESHOLDS,
        class_names=None,
        ignore_unknown_labels=False,
        remove_duplicate_instances=False,
    ):
        database, results = {}, {}
        for number, (prediction, reference) in enumerate(zip(predictions, references)):
            video_id = reference["video_id"]
            if prediction["video_id"] != video_id:
                raise EvaluationInputError(
                    f"example {number}: prediction is for video {prediction['video_id']!r} but the reference is for "
                    f"{video_id!r}; pass predictions and references of the same videos in the same order"
                )
            if len(reference["segments"]) != len(reference["labels"]):
                raise EvaluationInputError(f"reference of video {video_id!r}: 'segments' and 'labels' differ in length")
            entry = database.setdefault(video_id, {"annotations": []})
            entry["annotations"].extend(
                {"segment": segment, "label": label}
                for segment, label in zip(reference["segments"], reference["labels"])
            )
            labels = prediction["labels"]
            if class_names is not None:
                # Class ids may arrive as decimal strings when the first example fixed the string format.
                labels = [class_names[int(label)] for label in labels]
            video_results = results.setdefault(video_id, {"segments": [], "labels": [], "scores": []})
            video_results["segments"].extend(prediction["segments"])
            video_results["labels"].extend(labels)
            video_results["scores"].extend(prediction["scores"])
        return evaluate_detection(
            {"database": database},
            {"results": results},
            tiou_thresholds=tiou_thresholds,
            subset=None,
            ignore_unknown_labels=ignore_unknown_labels,
            remove_duplicate_instances=remove_duplicate_instances,
        )
