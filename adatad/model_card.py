"""Hugging Face model cards for AdaTAD model folders, built with `huggingface_hub.ModelCard` / `ModelCardData`.

One builder for every writer (training's best/ and last/ folders, both converters), so that each card carries the
same metadata: `library_name`, `pipeline_tag` (`other`: the Hub has no temporal action detection task; the task name
is in `tags`), `license`, `base_model`, `datasets`, the measured mAP as `eval_results` (model-index), and the settings
the model was made with (the resolved preset, or the conversion source) in the card's body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TASK = "temporal-action-detection"
# The Hub's pipeline tags have no temporal action detection; `other` is its category for such tasks.
PIPELINE_TAG = "other"
LICENSE = "apache-2.0"

_TEMPLATE = """---
{{ card_data }}
---

{{ body }}
"""


def _eval_results(metrics: Mapping, dataset: str, split: str | None) -> list[EvalResult]:
    """One result per tIoU threshold and one for the average, in percent as papers report them."""
    common = dict(task_type=TASK, task_name="Temporal action detection", dataset_type=dataset, dataset_name=dataset,
                  dataset_split=split)
    results = [
        EvalResult(metric_type="mAP", metric_name=f"mAP@tIoU={float(t):g}", metric_value=round(100 * float(v), 2),
                   metric_args={"tiou": float(t)}, **common)
        for t, v in metrics["mAP_per_tiou"].items()
    ]
    results.append(
        EvalResult(
            metric_type="mAP",
            metric_name="average mAP",
            metric_value=round(100 * float(metrics["average_mAP"]), 2),
            **common,
        )
    )
    return results


def _results_table(metrics: Mapping) -> list[str]:
    thresholds = list(metrics["mAP_per_tiou"])
    return [
        "| " + " | ".join(f"mAP@{float(t):.2f}" for t in thresholds) + " | average mAP |",
        "|" + " --- |" * (len(thresholds) + 1),
        "| " + " | ".join(f"{100 * v:.2f}" for v in metrics["mAP_per_tiou"].values())
        + f" | {100 * metrics['average_mAP']:.2f} |",
    ]


def build_model_card(
    *,
    model_id: str,
    title: str,
    description: str,
    how_made: str,
    dataset: str | None = None,
    base_model: str | None = None,
    metrics: Mapping | None = None,
    eval_split: str | None = None,
    class_names: Sequence[str] | None = None,
    settings: Mapping | None = None,
    settings_title: str = "Settings",
    paper_average_map: float | None = None,
) -> ModelCard:
    """A model card for an AdaTAD folder.

    Args:
        model_id: the Hub repo id (or local folder) used in the card's loading snippets.
        title, description: the card's heading and first paragraph.
        how_made: a Markdown sentence saying how the weights were produced (command, source checkpoint).
        dataset: the dataset the detector was trained or evaluated on (`datasets` and the eval results' dataset).
        base_model: Hub id of the model the weights start from, if it is on the Hub.
        metrics: `adatad.evaluation.evaluate_detection`'s result (`mAP_per_tiou`, `average_mAP`), as measured; None
            when the model was not evaluated (no `eval_results` then).
        eval_split: the evaluated subset (e.g. `validation`).
        class_names: the detector's classes, listed in the card.
        settings: the resolved preset (training) or conversion settings, shown as JSON in the card.
        settings_title: heading of that section.
        paper_average_map: the paper's average mAP for this setting, quoted for comparison.
    """
    if metrics is not None and dataset is None:
        raise ValueError("eval results need the `dataset` they were measured on")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=LICENSE,
        base_model=base_model,
        datasets=[dataset] if dataset else None,
        tags=[TASK, "adatad", "videomae", "video"],
        model_name=title,
        eval_results=_eval_results(metrics, dataset, eval_split) if metrics is not None else None,
    )
    body = [f"# {title}", "", description, "", how_made, "", "## Results", ""]
    if metrics is None:
        body.append("Not evaluated.")
    else:
        split = f" ({eval_split} subset)" if eval_split else ""
        body += [
            f"Measured on {dataset}{split} with the ActivityNet protocol (`adatad-eval`):",
            "",
            *_results_table(metrics),
        ]
    if paper_average_map is not None:
        body += ["", f"The paper's average mAP for this setting: {paper_average_map}."]
    if class_names:
        body += ["", f"## Classes ({len(class_names)})", "", ", ".join(f"`{name}`" for name in class_names)]
    body += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'detector = pipeline("{TASK}", model="{model_id}", trust_remote_code=True)',
        'detector("video.mp4", threshold=0.3)  # [{"label", "score", "segment": [start_s, end_s]}, ...]',
        "```",
        "",
        "With adatad installed, without running code from the model repository:",
        "",
        "```bash",
        f"adatad-detect video.mp4 --model {model_id} --output detections.srt",
        "```",
        "",
        "```python",
        "from transformers import AutoModel, AutoVideoProcessor",
        "",
        f'model = AutoModel.from_pretrained("{model_id}", trust_remote_code=True)',
        f'processor = AutoVideoProcessor.from_pretrained("{model_id}", trust_remote_code=True)',
        'inputs = processor(["video.mp4"], return_tensors="pt")',
        'outputs = model(inputs["pixel_values"], masks=inputs["masks"])',
        'detections = processor.post_process_temporal_detection(outputs, inputs["video_metas"], threshold=0.3)',
        "```",
    ]
    if settings is not None:
        body += ["", f"## {settings_title}", "", "```json", json.dumps(settings, indent=2, default=str), "```"]
    return ModelCard.from_template(card_data, template_str=_TEMPLATE, body="\n".join(body))




def read_eval_results(path) -> dict:
    """The metrics `adatad-eval --output FILE` wrote (`mAP_per_tiou`, `average_mAP`), for a card's eval results."""
    from pathlib import Path

    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the evaluation results {path}: {error}") from error
    if (
        not isinstance(metrics, dict)
        or not isinstance(metrics.get("mAP_per_tiou"), dict)
        or "average_mAP" not in metrics
    ):
        raise ValueError(f"{path} is not an `adatad-eval --output` file: it needs `mAP_per_tiou` and `average_mAP`.")
    return metrics


def push_folder_to_hub(folder, repo_id: str, commit_message: str):
    """Creates the Hub model repo `repo_id` if needed and uploads `folder` (weights, code, processor, card) to it."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True)
    return upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)


__all__ = ["build_model_card", "read_eval_results", "push_folder_to_hub", "PIPELINE_TAG", "TASK"]
