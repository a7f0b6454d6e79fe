"""Evaluation of `training/run_tad.py`: detections of the model on the evaluation rows, scored as OpenTAD's evaluator
does, the metrics as printed and as written, and the predictions file."""

import json
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from accelerate import Accelerator
from accelerate.logging import get_logger

from adatad.atomic_files import write_text_atomically
from adatad.evaluation import evaluate_detection, evaluate_topk_recall
from adatad.post_processing import to_activitynet_submission

from tad_data import MAX_DROPPED_SHARE, EvaluationData, on_device

logger = get_logger(__name__)



@torch.no_grad()
def evaluate(model, dataloader, processor, accelerator, evaluation: EvaluationData) -> dict:
    """Detections of `model` on the evaluation rows (named by the video classifier when there is one), merged per
    video, scored with ActivityNet mAP as OpenTAD's evaluator does (and top-k recall where the preset asks for it)."""
    model.eval()
    results = []
    for batch in tqdm(dataloader, desc="evaluating", disable=not accelerator.is_local_main_process, leave=False):
        batch = on_device(batch, processor)
        with accelerator.autocast():
            outputs = model(batch["pixel_values"], masks=batch["masks"])
        detections = processor.post_process_temporal_detection(
            outputs, batch["video_metas"], merge_windows=False, video_classifier=evaluation.video_classifier
        )
        detections = [
            {key: (value.cpu() if torch.is_tensor(value) else value) for key, value in result.items()}
            for result in detections
        ]
        # Batch by batch: on the last batch accelerate drops the rows it repeated to give every process a full
        # batch, so every window and video is scored once.
        results.extend(accelerator.gather_for_metrics(detections, use_gather_object=True))
    if processor.sampling_method == "sliding_window":
        results = processor.merge_window_detections(results)
    predictions = to_activitynet_submission(results)
    config = evaluation.config
    metrics = evaluate_detection(
        evaluation.ground_truth,
        predictions,
        tiou_thresholds=config["tiou_thresholds"],
        subset=None,
        # OpenTAD's evaluator ignores detections of classes absent from the evaluation ground truth; more than a
        # few of them stop the run below.
        ignore_unknown_labels=True,
        # OpenTAD's evaluator (behind AdaTAD's published numbers) drops zero-length and duplicate ground truth.
        remove_duplicate_instances=True,
    )
    # Classes of the model with no ground truth in the evaluation subset (a small validation split may lack one): their
    # detections cannot be scored and leave the mAP, as in OpenTAD's evaluator, with a count. Labels the model does not
    # have (a video classifier's) count against MAX_DROPPED_SHARE below.
    scored = set(metrics["ap_per_class"])
    without_ground_truth = {} if evaluation.video_classifier is not None else Counter(
        d["label"] for video in predictions.values() for d in video if d["label"] not in scored
    )
    expected_drops = sum(without_ground_truth.values()) if scored & set(processor.class_names or ()) else 0
    if expected_drops:
        logger.warning(
            f"{sum(without_ground_truth.values())} predictions of {len(without_ground_truth)} class(es) without "
            f"ground truth in the evaluation subset {config['subset']!r} ({sorted(without_ground_truth)}) left out of "
            f"the mAP, which averages the {len(scored)} classes that have ground truth (as OpenTAD's evaluator does)",
            main_process_only=True,
        )
    num_predictions = metrics["num_predictions"] + metrics["num_predictions_ignored"]
    if metrics["num_predictions_ignored"] - expected_drops > MAX_DROPPED_SHARE * num_predictions:
        labels = sorted({d["label"] for video in predictions.values() for d in video} - scored)
        hint = (
            " The detector is class-agnostic (`data.class_agnostic`) and no `evaluation.external_classifier_file` "
            "names its detections."
            if evaluation.video_classifier is None and processor.class_names == ["action"]
            else ""
        )
        raise ValueError(
            f"{metrics['num_predictions_ignored']} of {num_predictions} predictions have labels that the evaluation "
            f"ground truth (subset {config['subset']!r}) does not have: {labels[:10]}.{hint} Their mAP would be "
            "meaningless; check the class names of the annotation file, the class map and the video classifier."
        )
    metrics["num_videos_without_classifier_scores"] = len(evaluation.videos_without_classifier_scores)
    if config["recall_top_k"]:
        metrics.update(
            evaluate_topk_recall(
                evaluation.ground_truth,
                predictions,
                tiou_thresholds=config["tiou_thresholds"],
                top_k=config["recall_top_k"],
                subset=None,
            )
        )
    metrics["predictions"] = predictions
    return metrics


def metrics_summary(metrics: dict) -> dict:
    """The part of `evaluate`'s metrics written to `eval_results.json`."""
    keys = (
        "mAP_per_tiou", "average_mAP", "ap_per_class", "recall_per_tiou", "average_recall",
        "opentad_evaluates_this_epoch",
    )
    return {key: metrics[key] for key in keys if key in metrics}


def format_metrics(metrics: dict) -> str:
    header = " | ".join(f"mAP@{float(t):.2f}" for t in metrics["mAP_per_tiou"]) + " | average"
    values = " | ".join(f"{100 * v:9.2f}" for v in metrics["mAP_per_tiou"].values())
    lines = [header, f"{values} | {100 * metrics['average_mAP']:7.2f}"]
    for k, average in metrics.get("average_recall", {}).items():
        recalls = " | ".join(f"{100 * by_k[k]:9.2f}" for by_k in metrics["recall_per_tiou"].values())
        lines.append(f"{recalls} | {100 * average:7.2f}   (R@{k}x)")
    return "\n".join(lines)


def save_predictions(accelerator: Accelerator, args, output_dir: Path, metrics: dict, ground_truth: dict):
    if not accelerator.is_main_process:
        return
    write_text_atomically(output_dir / "predictions.json", json.dumps({"results": metrics["predictions"]}))
    write_text_atomically(output_dir / "ground_truth.json", json.dumps(ground_truth))
    if args.plot_timeline:
        from adatad.visualization import plot_timeline

        picture = plot_timeline(
            ground_truth, metrics["predictions"], output_dir / "timeline.png", max_videos=args.plot_timeline
        )
        accelerator.print(f"ground truth vs detections of {args.plot_timeline} held-out videos: {picture}")
