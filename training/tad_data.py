"""Data of `training/run_tad.py`: video rows of the preset's annotation file, the training and evaluation datasets,
OpenTAD's batch order and batch sizes on any number of processes, and the data loaders."""

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from accelerate import Accelerator
from accelerate.logging import get_logger

from adatad import annotations
from adatad.post_processing import ExternalVideoClassifier
from adatad.dataset_transforms import TemporalDetectionTransform, collate_temporal_detection
from adatad.processing_adatad import AdaTADVideoProcessor

from tad_errors import RunError

logger = get_logger(__name__)

# OpenTAD's training `DistributedSampler` keeps torch's default seed (0) whatever `--seed` says, so its data order is
# the same in every run; the run seed fixes everything else (initialisation, drop path, augmentation).
OPENTAD_SAMPLER_SEED = 0
# When more than this share of the predictions is dropped (labels the ground truth does not have, videos the video
# classifier does not score), the setup is wrong (class names, classifier file), not a few stray detections: the
# evaluation stops with the reason instead of reporting a low mAP.
MAX_DROPPED_SHARE = 0.05
# ActivityNet's training ground truth: segments not longer than this share of their video are dropped with
# `data.filter_gt` (OpenTAD's AnetResizeDataset).
RESIZE_FILTER_GT_SHARE = 0.01


def load_video_rows(preset: dict, paths: dict, subset: str):
    """Video rows (`adatad.annotations` schema) of one subset of the preset's annotation file, video paths resolved."""
    data_config = preset["data"]
    rows = annotations.load_database_json(
        paths["annotation_file"],
        subset=subset,
        class_map=str(paths["class_map_file"]) if paths["class_map_file"] else None,
        ignore_labels=data_config["ignore_labels"],
        blocked_videos=paths["blocked_videos_file"],
        video_dir=paths["video_dir"],
        video_prefix=data_config["video_prefix"],
        video_extension=data_config["video_extension"],
        missing_videos=data_config["missing_videos"],
    )
    if len(rows) == 0:
        raise ValueError(f"no videos of subset {subset!r} in {paths['annotation_file']}")
    if data_config["class_agnostic"]:
        # ActivityNet: one "action" class; the external video classifier names the detections at evaluation.
        rows = rows.cast_column("labels", annotations.annotation_features(["action"])["labels"])
        rows = rows.map(lambda row: {"labels": [0] * len(row["labels"])})
    return rows


def filter_training_rows(rows, preset: dict):
    """OpenTAD's training ground truth: with `data.filter_gt`, segments too short to learn from are dropped (resize
    mode, ActivityNet: not longer than 1% of the video; otherwise, EPIC: no length, or outside the video), and
    videos left without a segment are dropped (OpenTAD drops them from every training set)."""
    data_config = preset["data"]
    resize = data_config["conversion_mode"] == "resize"

    def kept_segments(row):
        if not data_config["filter_gt"]:
            return row["segments"], row["labels"]
        duration = row["duration"]
        offset = data_config["offset_frames"] / row["fps"] if data_config["offset_frames"] else 0.0
        kept = [
            (segment, label)
            for segment, label in zip(row["segments"], row["labels"])
            if (
                (segment[1] - segment[0]) / duration > RESIZE_FILTER_GT_SHARE
                if resize
                else segment[1] > segment[0] and segment[1] > offset and segment[0] - offset <= duration
            )
        ]
        return [segment for segment, _ in kept], [label for _, label in kept]

    rows = rows.map(lambda row: dict(zip(("segments", "labels"), kept_segments(row))), features=rows.features)
    rows = rows.filter(lambda row: len(row["segments"]) > 0)
    if len(rows) == 0:
        raise ValueError(
            f"no training video of {preset['data']['annotation_file']} has a segment left after `data.filter_gt`."
        )
    return rows


def read_blocked_videos(path: Path | None) -> list[str]:
    """`evaluation.blocked_videos_file`: a JSON list of video ids, the layout OpenTAD's evaluator reads."""
    if path is None:
        return []
    try:
        blocked = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read `evaluation.blocked_videos_file` {path}: {error}") from error
    if not isinstance(blocked, list) or not all(isinstance(video_id, str) for video_id in blocked):
        raise ValueError(f"`evaluation.blocked_videos_file` {path} must be a JSON list of video ids.")
    return blocked


@dataclass
class EvaluationData:
    """What scoring needs besides the model's detections.

    Attributes:
        ground_truth: `{"database": ...}` of `evaluation.subset`, without the blocked videos and `data.ignore_labels`.
        config: the preset's `evaluation` section.
        video_classifier: names class-agnostic detections (ActivityNet), or None.
        videos_without_classifier_scores: evaluation videos left out because the classifier has no scores for them
            (at most `MAX_DROPPED_SHARE` of them).
    """

    ground_truth: dict
    config: dict
    video_classifier: ExternalVideoClassifier | None = None
    videos_without_classifier_scores: list[str] = field(default_factory=list)


def build_evaluation_data(preset: dict, paths: dict, processor: AdaTADVideoProcessor):
    """Evaluation rows (windows in sliding-window mode) and the `EvaluationData` OpenTAD's test engine and evaluator
    use: the evaluator's blocked videos leave ground truth and rows (so they get no predictions), ignored labels
    leave the ground truth, and the preset's external video classifier is loaded."""
    data_config, evaluation_config = preset["data"], preset["evaluation"]
    blocked = set(read_blocked_videos(paths["eval_blocked_videos_file"]))
    eval_rows = load_video_rows(preset, paths, data_config["test_subset"])
    eval_rows = eval_rows.filter(lambda row: row["video_id"] not in blocked)
    ground_truth = annotations.load_database_json(
        paths["annotation_file"],
        subset=evaluation_config["subset"],
        ignore_labels=data_config["ignore_labels"],
        blocked_videos=blocked,
    )
    evaluation = EvaluationData(annotations.to_database_json(ground_truth), evaluation_config)
    if paths["external_classifier_file"] is not None:
        classifier = ExternalVideoClassifier.from_json(
            paths["external_classifier_file"],
            topk=evaluation_config["external_classifier_top_k"],
            style=evaluation_config["external_classifier_kind"],
        )
        missing = [video_id for video_id in eval_rows["video_id"] if video_id not in classifier.video_scores]
        if len(missing) > MAX_DROPPED_SHARE * len(eval_rows):
            raise ValueError(
                f"the video classifier {paths['external_classifier_file']} has no scores for {len(missing)} of the "
                f"{len(eval_rows)} evaluation videos (e.g. {missing[:5]}): their detections could not be named. Check "
                "that `evaluation.external_classifier_file` belongs to this annotation file and its video ids match "
                "(e.g. a 'v_' prefix)."
            )
        if missing:
            logger.warning(
                f"the video classifier has no scores for {len(missing)} evaluation videos; left out: {missing}"
            )
            missing_ids = set(missing)
            eval_rows = eval_rows.filter(lambda row: row["video_id"] not in missing_ids)
        evaluation.video_classifier = classifier
        evaluation.videos_without_classifier_scores = missing
    if processor.sampling_method == "sliding_window":
        eval_rows = annotations.expand_sliding_windows(
            eval_rows,
            window_size=processor.window_size,
            snippet_stride=processor.snippet_stride,
            mode=data_config["conversion_mode"],
            fps=data_config["fps"],
            overlap=data_config["window_overlap"],
            offset_frames=data_config["offset_frames"],
            test_mode=True,
        )
    eval_transform = TemporalDetectionTransform(processor, mode="eval", **transform_kwargs(preset))
    return eval_rows.with_transform(eval_transform), evaluation


def transform_kwargs(preset: dict) -> dict:
    data_config = preset["data"]
    return dict(
        grid_conversion=data_config["conversion_mode"] if data_config["conversion_mode"] != "resize" else "frame_count",
        conversion_fps=data_config["fps"],
        on_error=data_config["on_video_error"],
        # Loader rows stay uint8 (a quarter of the bytes to collate, pin and copy); `on_device` normalises them.
        return_uint8=True,
    )


def on_device(batch: dict, processor: AdaTADVideoProcessor) -> dict:
    """A loader batch as the model takes it: its uint8 frames normalised on the device they were moved to."""
    batch["pixel_values"] = processor.normalize_pixel_values(batch["pixel_values"])
    return batch


def build_datasets(preset: dict, paths: dict, processor: AdaTADVideoProcessor, seed: int):
    """Training rows (decoded lazily with augmentation), evaluation rows and their `EvaluationData`."""
    train_rows = filter_training_rows(load_video_rows(preset, paths, preset["data"]["train_subset"]), preset)
    train_transform = TemporalDetectionTransform(processor, mode="train", seed=seed, **transform_kwargs(preset))
    eval_dataset, evaluation = build_evaluation_data(preset, paths, processor)
    return train_rows.with_transform(train_transform), eval_dataset, evaluation, train_transform


class OpenTADTrainBatchSampler:
    """The training batches of OpenTAD's per-rank loaders, in the order accelerate hands them out.

    OpenTAD gives each of `num_processes` ranks a `DistributedSampler(shuffle=True, drop_last=True, seed)` (the
    permutation of epoch `e` drawn from `seed + e`, cut to a multiple of the ranks; OpenTAD leaves `seed` at torch's
    default 0, `OPENTAD_SAMPLER_SEED`, which the training loop passes) read in batches of
    `batch_size` that keep the last, smaller batch. This sampler yields, step by step, the batch of rank 0, then
    rank 1, ...; accelerate's sharding gives batch `i` to process `i % num_processes`, so every process trains on
    exactly its OpenTAD batches and the prepared loader has OpenTAD's per-rank length.
    """

    def __init__(self, num_samples: int, num_processes: int, batch_size: int, seed: int):
        # Not `batch_size`: accelerate's sharding would pad the last, smaller batches to that size.
        self.per_rank_batch_size = batch_size
        self.samplers = [
            DistributedSampler(range(num_samples), num_replicas=num_processes, rank=rank, shuffle=True, seed=seed,
                               drop_last=True)
            for rank in range(num_processes)
        ]

    def set_epoch(self, epoch: int):
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.samplers) * math.ceil(len(self.samplers[0]) / self.per_rank_batch_size)

    def __iter__(self):
        per_rank = [list(sampler) for sampler in self.samplers]
        for start in range(0, len(per_rank[0]), self.per_rank_batch_size):
            for indices in per_rank:
                yield indices[start : start + self.per_rank_batch_size]


def batch_sizes(preset: dict, num_processes: int) -> int:
    """Videos per process and forward pass: `training.global_batch_size` over processes and accumulation steps."""
    training = preset["training"]
    global_batch_size, accumulation = training["global_batch_size"], training["gradient_accumulation_steps"]
    divisor = num_processes * accumulation
    if global_batch_size % divisor:
        raise RunError(
            f"`training.global_batch_size` ({global_batch_size}) must be divisible by the number of processes "
            f"({num_processes}) times `training.gradient_accumulation_steps` ({accumulation}); e.g. --set "
            f"training.global_batch_size={math.ceil(global_batch_size / divisor) * divisor}."
        )
    return global_batch_size // divisor


def recipe_drift_warning(preset: dict, paper_batch_size: int, num_processes: int, per_device_batch_size: int):
    """A warning when this run's per-device batch or effective batch (processes x per-device batch x accumulation)
    differs from the paper's (`training.reference_num_gpus` GPUs sharing the preset file's `global_batch_size`), with
    the accumulation that restores the paper's effective batch at its per-GPU batch. None when both agree (e.g. the
    paper's 2 GPUs as 1 process accumulating 2 steps) or the preset names no paper run (0 GPUs)."""
    training = preset["training"]
    reference_gpus = training["reference_num_gpus"]
    if reference_gpus == 0:
        return None
    accumulation = training["gradient_accumulation_steps"]
    paper_per_gpu = paper_batch_size // reference_gpus
    effective = num_processes * per_device_batch_size * accumulation
    if per_device_batch_size == paper_per_gpu and effective == paper_batch_size:
        return None
    message = (
        f"this run trains {num_processes} process(es) x {per_device_batch_size} videos x {accumulation} accumulation "
        f"step(s) = {effective} videos per optimizer step; the paper trained {reference_gpus} GPUs x {paper_per_gpu} "
        f"videos = {paper_batch_size} (`training.reference_num_gpus`). The loss normaliser counts positives per "
        "device, so results can differ. "
    )
    if paper_batch_size % (num_processes * paper_per_gpu) == 0:
        restore = paper_batch_size // (num_processes * paper_per_gpu)
        return message + (
            f"To restore the paper's effective batch with its per-GPU batch on {num_processes} process(es): --set "
            f"training.global_batch_size={paper_batch_size} training.gradient_accumulation_steps={restore}"
        )
    return message + (
        f"{num_processes} processes x {paper_per_gpu} videos do not divide the paper's batch of {paper_batch_size}; "
        f"run on {reference_gpus} processes to reproduce it."
    )


def build_dataloaders(preset: dict, args, accelerator: Accelerator, train_dataset, eval_dataset, seed: int):
    """Training loader over `OpenTADTrainBatchSampler` and evaluation loader, both still to be prepared; returns them
    with the batch sampler (whose `set_epoch` draws each epoch's order)."""
    num_processes = accelerator.num_processes
    num_workers = data_workers(preset, args, accelerator)
    on_gpu = accelerator.device.type == "cuda"
    if accelerator.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Leave a core to each data-loading worker: oversubscribed CPU threads make a step 10-30x slower.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_processes - num_workers))
    per_device_batch_size = batch_sizes(preset, num_processes)
    global_batch_size = preset["training"]["global_batch_size"]
    if len(train_dataset) < global_batch_size:
        raise RunError(
            f"the training subset has {len(train_dataset)} videos, fewer than one global batch ({global_batch_size}); "
            "lower `training.global_batch_size` with --set."
        )
    batch_sampler = OpenTADTrainBatchSampler(
        len(train_dataset), num_processes, per_device_batch_size, OPENTAD_SAMPLER_SEED
    )
    # Own generators: creating a loader iterator must not draw from the global RNG, or a resumed run would shift the
    # drop-path randomness of every later step.
    train_dataloader = DataLoader(
        train_dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate_temporal_detection,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        # Pinned host batches make the copy to a GPU asynchronous. Workers are not persistent: each epoch's workers
        # must see the epoch that `set_epoch` gave the transform. Each keeps 2 batches in flight (the default).
        pin_memory=on_gpu,
    )
    eval_batch_size = args.eval_batch_size or per_device_batch_size
    eval_dataloader = build_eval_dataloader(eval_dataset, eval_batch_size, num_workers, seed, on_gpu)
    return train_dataloader, eval_dataloader, batch_sampler


def build_eval_dataloader(eval_dataset, batch_size: int, num_workers: int, seed: int, on_gpu=False) -> DataLoader:
    """The evaluation loader (still to be prepared), in the dataset's order."""
    # Its own generator, like the training loader's: creating the iterator leaves the global RNG alone.
    return DataLoader(
        eval_dataset,
        batch_size=batch_size,
        collate_fn=collate_temporal_detection,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=on_gpu,
    )


def data_workers(preset: dict, args, accelerator: Accelerator) -> int:
    """`--num_workers`, else the preset's `data.num_workers`, raised on a GPU to every core this process can have: one
    worker decodes and augments a few hundred frames a second, a GPU trains on thousands (docs/performance.md)."""
    if args.num_workers is not None:
        return args.num_workers
    workers = preset["data"]["num_workers"]
    if accelerator.device.type == "cuda":
        workers = max(workers, (os.cpu_count() or 1) // accelerator.num_processes - 1)
    return workers
