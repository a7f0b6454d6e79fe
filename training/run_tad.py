#!/usr/bin/env python
"""Train and evaluate AdaTAD with Accelerate: one CPU, one GPU, many GPUs or DeepSpeed.

    accelerate launch training/run_tad.py --preset e2e_thumos_videomae_s_768x1_160_adapter \
        --data_dir data/thumos-14 --pretrained_model pretrained/videomae-s --output_dir runs/thumos-s

    accelerate launch training/run_tad.py --preset synthetic-tiny --output_dir runs/synthetic   # CPU demo

A preset (adatad/presets/*.json) holds every number of the matching OpenTAD config; any field can be changed
with `--set training.adapter_lr=1e-4 model.adapter_layer_indices=[6,7,8]`. `--list-presets` prints them all.

`training_function` reads top to bottom like accelerate's `complete_nlp_example.py`: preset and output folder,
accelerator, data, model, optimizer, one `prepare`, the schedule from the prepared loader, resume, then the loop of
`train_step`s with logging, evaluation, checkpoints and the best/last `save_pretrained` folders. The schedule, data
order and batches are OpenTAD's on any number of processes (docs/training-loop.md).
"""

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import os
import pickle
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import (
    RNG_STATE_NAME,
    DDPCommunicationHookType,
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    set_seed,
)
from accelerate.utils import load as load_weights_only

from adatad.presets import (
    DATASETS,
    PresetError,
    apply_overrides,
    build_model_config,
    format_preset_table,
    load_preset,
    processor_kwargs,
    resolve_data_paths,
    save_preset,
)

from adatad import data as annotations  # noqa: E402
from adatad.atomic_files import write_text_atomically  # noqa: E402
from adatad.custom_data import DataValidationError, check_training_data  # noqa: E402
from adatad.evaluation import evaluate_detection, evaluate_topk_recall  # noqa: E402
from adatad.memory_estimation import limit_cpu_heap_fragmentation  # noqa: E402
from adatad.configuration_adatad import AdaTADConfig  # noqa: E402
from adatad.model_loading import (  # noqa: E402
    BACKBONE_MODEL_NEW_PARTS,
    MissingWeightsError,
    load_complete_model,
    mismatched_weight_shapes,
)
from adatad.modeling_adatad import AdaTADForTemporalDetection  # noqa: E402
from adatad.model_card import build_model_card  # noqa: E402
from adatad.post_processing import ExternalVideoClassifier, to_activitynet_submission  # noqa: E402
from adatad.dataset_transforms import TemporalDetectionTransform, collate_temporal_detection  # noqa: E402
from adatad.processing_adatad import AdaTADVideoProcessor  # noqa: E402
from adatad.synthetic import SyntheticConfigError  # noqa: E402
from adatad.video_decoding import VideoDecodeError  # noqa: E402

logger = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)$")
INCOMPLETE_SUFFIX = ".incomplete"
TRAINER_STATE_NAME = "trainer_state.json"
EMA_WEIGHTS_NAME = "ema.safetensors"
LOG_NAME = "log.jsonl"
# GradScaler skips a step or two whenever it lowers its scale; a run that stays non-finite this long has diverged.
MAX_CONSECUTIVE_NON_FINITE_STEPS = 20
# OpenTAD's training `DistributedSampler` keeps torch's default seed (0) whatever `--seed` says, so its data order is
# the same in every run; the run seed fixes everything else (initialisation, drop path, augmentation).
OPENTAD_SAMPLER_SEED = 0


class RunError(Exception):
    """A run that cannot start or go on because of what it was given; `main` prints the message as one line."""


# Errors caused by the user's inputs (preset, data, flags, checkpoints) or a diverged run: one line, no traceback.
USER_ERRORS = (
    RunError,
    PresetError,
    annotations.AnnotationError,
    VideoDecodeError,
    SyntheticConfigError,
    FileNotFoundError,
    FloatingPointError,
    DataValidationError,
    MissingWeightsError,
)


# ----------------------------------------------------------------------------------------------------------------------
# Preset and output folder
# ----------------------------------------------------------------------------------------------------------------------


def resolve_preset(args) -> tuple[dict, dict]:
    """The preset of this run (after `--data_dir` and `--set`) and the preset as its file gives it (the paper's setup,
    for the recipe-drift warning)."""
    reference = load_preset(args.preset)
    preset = copy.deepcopy(reference)
    if args.data_dir:
        preset["data"]["root"] = args.data_dir
    return apply_overrides(preset, args.set or []), reference


def check_output_dir(output_dir: Path, args):
    """Refuses a folder that holds files unless the run resumes or `--overwrite_output_dir` is given (for
    `--eval_only` too: its predictions would replace those of the run in the folder)."""
    resuming = args.resume_from_checkpoint and not args.eval_only
    if resuming or not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not args.overwrite_output_dir:
        what = (
            "pass --overwrite_output_dir to replace its predictions.json and eval_results.json"
            if args.eval_only
            else "pass --resume_from_checkpoint latest to continue that run, --overwrite_output_dir to train over it"
        )
        raise RunError(f"--output_dir {output_dir} already holds files; {what}, or choose an empty folder.")


def clear_previous_run(output_dir: Path):
    """For `--overwrite_output_dir`: the earlier run's checkpoints and log go, so that `latest` and the log belong to
    this run only (best/, last/ and the predictions are replaced when this run writes them)."""
    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    (output_dir / LOG_NAME).unlink(missing_ok=True)


def build_accelerator(args, preset: dict, output_dir: Path) -> Accelerator:
    training = preset["training"]
    # OpenTAD's DDP options: a static graph (needed with activation checkpointing) and the fp16 all-reduce hook.
    ddp_kwargs = DistributedDataParallelKwargs(
        static_graph=training["ddp_static_graph"],
        comm_hook=DDPCommunicationHookType.FP16 if training["ddp_fp16_compress"] else DDPCommunicationHookType.NO,
    )
    return Accelerator(
        gradient_accumulation_steps=training["gradient_accumulation_steps"],
        mixed_precision=args.mixed_precision or training["mixed_precision"],
        log_with=args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # The schedule counts optimizer steps and also steps when the GradScaler skips one, as OpenTAD's does.
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[ddp_kwargs],
    )


# When more than this share of the predictions is dropped (labels the ground truth does not have, videos the video
# classifier does not score), the setup is wrong (class names, classifier file), not a few stray detections: the
# evaluation stops with the reason instead of reporting a low mAP.
MAX_DROPPED_SHARE = 0.05
# ActivityNet's training ground truth: segments not longer than this share of their video are dropped with
# `data.filter_gt` (OpenTAD's AnetResizeDataset).
RESIZE_FILTER_GT_SHARE = 0.01
# Width of the ViT -> `--arch` of conversion_scripts/convert_videomae_to_adatad.py.
CONVERSION_ARCH_BY_WIDTH = {384: "s", 768: "b", 1024: "l", 1280: "h", 1408: "g"}


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------


def load_video_rows(preset: dict, paths: dict, subset: str):
    """Video rows (adatad.data schema) of one subset of the preset's annotation file, with resolved video paths."""
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


# ----------------------------------------------------------------------------------------------------------------------
# Model, optimizer and schedule
# ----------------------------------------------------------------------------------------------------------------------


class ModelEma:
    """Exponential moving average of every float tensor of a model's state dict (parameters and buffers), updated
    after each optimizer step and used for evaluation, as AdaTAD does (decay 0.999). Checkpoints hold it as
    safetensors (`save`/`load`), never pickled."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.detach(), 1.0 - self.decay)
            else:
                ema_value.copy_(value)

    def save(self, path: Path):
        save_safetensors_model(self.module, str(path))

    def load(self, path: Path):
        load_safetensors_model(self.module, str(path), device=str(next(self.module.parameters()).device))


def check_weights_fit(folder, config: AdaTADConfig, flag: str):
    """Refuses a model folder whose weights have other shapes than `config` gives them (before `from_pretrained`,
    which stops with a traceback and suggests loading random tensors in their place)."""
    mismatched = mismatched_weight_shapes(folder, config)
    if mismatched:
        raise RunError(
            f"{flag} {folder}: {len(mismatched)} weight tensor(s) do not fit the model it is loaded as ("
            + "; ".join(mismatched[:3]) + (", ..." if len(mismatched) > 3 else "")
            + "): a checkpoint of another backbone size or class count; convert or train the matching one."
        )


def build_model(preset: dict, args, class_names: list, accelerator: Accelerator):
    """The model (converted VideoMAE weights from `--pretrained_model`, else random) and its EMA copy (or None)."""
    training = preset["training"]
    config = build_model_config(preset)
    if args.pretrained_model and not (Path(args.pretrained_model) / "config.json").is_file():
        raise RunError(
            f"--pretrained_model {args.pretrained_model} is not a model folder (no config.json); convert a VideoMAE "
            "checkpoint with conversion_scripts/convert_videomae_to_adatad.py and pass its output folder."
        )
    if args.pretrained_model:
        # A converted VideoMAE (conversion_scripts/convert_videomae_to_adatad.py): its backbone weights, the preset's
        # adapters and detector, freshly initialised where the folder lacks them; a missing backbone tensor is an error.
        check_weights_fit(args.pretrained_model, config, "--pretrained_model")
        model, new_keys = load_complete_model(
            AdaTADForTemporalDetection, args.pretrained_model, new_parts=BACKBONE_MODEL_NEW_PARTS, config=config
        )
        if new_keys:
            accelerator.print(
                f"--pretrained_model {args.pretrained_model}: {len(new_keys)} detector/adapter tensors start from "
                f"their initial values (expected new parts: {', '.join(BACKBONE_MODEL_NEW_PARTS)})"
            )
    else:
        model = AdaTADForTemporalDetection(config)
    if config.num_labels != len(class_names):
        raise RunError(
            f"`model.num_labels` ({config.num_labels}) differs from the {len(class_names)} classes of the training "
            f"annotations {class_names[:5]}...; --set model.num_labels={len(class_names)}."
        )
    model.config.id2label = dict(enumerate(class_names))
    model.config.label2id = {name: index for index, name in enumerate(class_names)}
    if training["gradient_checkpointing"]:
        model.activation_checkpointing_enable()
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None and deepspeed.zero_stage == 3 and training["ema_decay"] is not None:
        raise RunError(
            "ZeRO-3 shards the parameters, so the weight EMA cannot read them; run with --set training.ema_decay=null "
            "(evaluation then uses the live weights) or use ZeRO-2."
        )
    ema = ModelEma(model, decay=training["ema_decay"]) if training["ema_decay"] is not None else None
    return model, ema


def build_optimizer(model, training: dict) -> torch.optim.Optimizer:
    """AdamW over the model's named parameter groups (detector, detector_no_decay, adapter, backbone)."""
    return torch.optim.AdamW(
        model.get_parameter_groups(
            detector_lr=training["detector_lr"],
            adapter_lr=training["adapter_lr"] or 0.0,
            backbone_lr=training["backbone_lr"],
            detector_weight_decay=training["detector_weight_decay"],
            adapter_weight_decay=training["adapter_weight_decay"] or 0.0,
            backbone_weight_decay=training["backbone_weight_decay"],
        )
    )


class WarmupCosineSchedule(torch.optim.lr_scheduler.LRScheduler):
    """OpenTAD's `LinearWarmupCosineAnnealingLR` in closed form, stepped once per optimizer step, for every group.

    Step `s` (from 0) with base rate `b`, `W` warm-up and `T` total steps: `s < W` gives
    `warmup_start_lr + s (b - warmup_start_lr) / (W - 1)` (OpenTAD reaches `b` at step `W - 1`); after it,
    `eta_min + (b - eta_min) (1 + cos(pi (s - W) / (T - W))) / 2`. Without warm-up (`W = 0`) the cosine starts at
    `b` (OpenTAD would hold `warmup_start_lr` at step 0 and decay from there).
    """

    def __init__(self, optimizer, warmup_steps: float, total_steps: int, warmup_start_lr: float, eta_min: float):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.warmup_start_lr = warmup_start_lr
        self.eta_min = eta_min
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_lr + step * (base_lr - self.warmup_start_lr) / max(self.warmup_steps - 1, 1)
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress)) / 2

    def get_lr(self):
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]


def build_schedule(optimizer, training: dict, steps_per_epoch: int) -> WarmupCosineSchedule:
    """`training.warmup_epochs` and `training.max_epoch` in optimizer steps of this run (OpenTAD multiplies them by
    its per-rank loader length, which equals `steps_per_epoch` without accumulation)."""
    return WarmupCosineSchedule(
        optimizer,
        warmup_steps=training["warmup_epochs"] * steps_per_epoch,
        total_steps=training["max_epoch"] * steps_per_epoch,
        warmup_start_lr=training["warmup_start_lr"],
        eta_min=training["eta_min"],
    )


def evaluation_model(accelerator: Accelerator, model, ema):
    return ema.module if ema is not None else accelerator.unwrap_model(model)


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints and resume
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainerState:
    """What a checkpoint holds besides accelerate's state: position, best evaluation so far, an evaluation still to
    do, non-finite step counts, and the process layout the position is counted in."""

    global_step: int = 0
    best_average_mAP: float | None = None
    best_epoch: int | None = None
    # The epoch (from 1) whose evaluation had not finished writing its results when this checkpoint was saved: a
    # resumed run evaluates it again before training on.
    pending_evaluation_epoch: int | None = None
    skipped_steps: int = 0
    consecutive_skipped_steps: int = 0
    num_processes: int = 1
    steps_per_epoch: int = 0


def find_checkpoint(output_dir: Path, resume_from: str) -> Path | None:
    """`resume_from` itself, or for `latest` the newest complete `checkpoints/step_N` (one with its trainer state);
    incomplete saves (a kill or a full disk during the save) are skipped with a warning."""
    if resume_from != "latest":
        return Path(resume_from)
    folder = output_dir / "checkpoints"
    candidates = sorted(
        (p for p in folder.glob("step_*") if CHECKPOINT_PATTERN.search(p.name)),
        key=lambda p: int(CHECKPOINT_PATTERN.search(p.name).group(1)),
        reverse=True,
    )
    incomplete = sorted(p.name for p in folder.glob(f"step_*{INCOMPLETE_SUFFIX}"))
    incomplete += [p.name for p in candidates if not (p / TRAINER_STATE_NAME).is_file()]
    if incomplete:
        logger.warning(f"skipping incomplete checkpoints in {folder}: {incomplete}", main_process_only=True)
    return next((p for p in candidates if (p / TRAINER_STATE_NAME).is_file()), None)


def save_checkpoint(accelerator: Accelerator, model, ema, state: TrainerState, output_dir: Path, total_limit=None):
    """accelerate's `save_state` plus EMA weights (safetensors) and the trainer state, written under
    `step_N.incomplete` and renamed when complete, so that an interrupted save never looks like a checkpoint."""
    # Never overwrite the last good checkpoint with diverged weights.
    bad = [name for name, p in accelerator.unwrap_model(model).named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(
            f"non-finite weights after step {state.global_step} ({bad[:3]}...); not saving them. The last good "
            f"checkpoint is {find_checkpoint(output_dir, 'latest')}. Lower the learning rate or clip gradients."
        )
    folder = output_dir / "checkpoints"
    final = folder / f"step_{state.global_step}"
    trainer_state = json.dumps(dataclasses.asdict(state), indent=2)
    if (final / TRAINER_STATE_NAME).is_file():
        # This step is saved already (--checkpointing_steps, then the epoch end): only the best score may be newer.
        if accelerator.is_main_process:
            write_text_atomically(final / TRAINER_STATE_NAME, trainer_state)
        accelerator.wait_for_everyone()
        return
    temporary = folder / f"{final.name}{INCOMPLETE_SUFFIX}"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.save(temporary / EMA_WEIGHTS_NAME)
        (temporary / TRAINER_STATE_NAME).write_text(trainer_state)
        if final.exists():
            # A folder of that name without trainer state: an interrupted save of another tool or version.
            shutil.rmtree(final)
        temporary.rename(final)
        if total_limit:
            checkpoints = sorted(
                (p for p in folder.glob("step_*") if CHECKPOINT_PATTERN.search(p.name)),
                key=lambda p: int(CHECKPOINT_PATTERN.search(p.name).group(1)),
            )
            for old in checkpoints[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def remove_incomplete_saves(output_dir: Path):
    """What an interrupt left behind: checkpoints and model folders still under their temporary names. A model folder
    caught between its two renames (`save_model`) gets its earlier version back."""
    for leftover in (output_dir / "checkpoints").glob(f"step_*{INCOMPLETE_SUFFIX}"):
        shutil.rmtree(leftover)
    for name in ("best", "last"):
        target, previous = output_dir / name, output_dir / f".{name}.previous"
        if previous.is_dir() and not target.exists():
            previous.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
        shutil.rmtree(output_dir / f".{name}{INCOMPLETE_SUFFIX}", ignore_errors=True)


def load_checkpoint(accelerator: Accelerator, ema, checkpoint: Path, num_processes: int, steps_per_epoch: int):
    """Restores a checkpoint written by `save_checkpoint` and returns its `TrainerState`. Refuses folders holding
    pickled custom objects (loading them runs code) and checkpoints of another process layout or data size."""
    if not (checkpoint / TRAINER_STATE_NAME).is_file():
        raise RunError(
            f"{checkpoint} is not a complete run_tad.py checkpoint (no {TRAINER_STATE_NAME}); pass "
            "--resume_from_checkpoint latest, or another checkpoints/step_N folder."
        )
    pickled = sorted(p.name for p in checkpoint.glob("custom_checkpoint_*.pkl"))
    if pickled:
        raise RunError(
            f"{checkpoint} holds {pickled}: pickled objects that accelerate would load with weights_only=False, "
            "which runs any code they carry. run_tad.py never writes them (EMA weights are ema.safetensors); refusing "
            "to load this checkpoint. Resume from a checkpoint written by this version, or delete those files if you "
            "trust their origin."
        )
    state = read_trainer_state(checkpoint)
    if (state.num_processes, state.steps_per_epoch) != (num_processes, steps_per_epoch):
        raise RunError(
            f"{checkpoint} was written by {state.num_processes} process(es) with {state.steps_per_epoch} steps per "
            f"epoch; this run has {num_processes} with {steps_per_epoch}. Resume with the same number of processes, "
            "batch settings and data, or start a new run."
        )
    if ema is not None and not (checkpoint / EMA_WEIGHTS_NAME).is_file():
        raise RunError(f"{checkpoint} has no {EMA_WEIGHTS_NAME} but the preset uses an EMA (`training.ema_decay`).")
    check_random_states(checkpoint, accelerator.process_index)
    try:
        accelerator.load_state(str(checkpoint))
        if ema is not None:
            ema.load(checkpoint / EMA_WEIGHTS_NAME)
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError, OSError) as error:
        if isinstance(error, torch.OutOfMemoryError):
            raise
        # torch's own message on a refused pickle advises weights_only=False, which would run the file's code.
        reason = "not a weights-only PyTorch file" if isinstance(error, pickle.UnpicklingError) else (
            str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RunError(
            f"{checkpoint} cannot be loaded ({reason}): a file of it is truncated, corrupt or not written by "
            "run_tad.py. Resume from another checkpoints/step_N folder (or `latest` after removing this one)."
        ) from error
    return state


def read_trainer_state(checkpoint: Path) -> TrainerState:
    """The checkpoint's `trainer_state.json`, refused by field when a value cannot be one a run wrote: a tampered
    `global_step` would otherwise move the run past its last epoch and end it, exit status 0, without training."""
    path = checkpoint / TRAINER_STATE_NAME
    try:
        values = json.loads(path.read_text())
        state = TrainerState(**values)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as error:
        raise RunError(f"{path} is not a trainer state written by run_tad.py ({error}).") from None

    def natural(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    problems = [
        f"`{name}` must be an integer >= 0, got {getattr(state, name)!r}"
        for name in ("global_step", "skipped_steps", "consecutive_skipped_steps", "num_processes", "steps_per_epoch")
        if not natural(getattr(state, name))
    ]
    step = CHECKPOINT_PATTERN.search(checkpoint.name)
    if not problems and step and state.global_step != int(step.group(1)):
        problems.append(f"`global_step` is {state.global_step} in the folder of step {step.group(1)}")
    if not problems and not state.consecutive_skipped_steps <= state.skipped_steps <= state.global_step:
        problems.append("the skipped-step counts must satisfy consecutive <= skipped <= global_step")
    if not (state.best_average_mAP is None or (isinstance(state.best_average_mAP, (int, float))
                                               and 0 <= state.best_average_mAP <= 1)):
        problems.append(f"`best_average_mAP` must be null or in [0, 1], got {state.best_average_mAP!r}")
    if not (state.best_epoch is None or (natural(state.best_epoch) and state.best_epoch >= 1)):
        problems.append(f"`best_epoch` must be null or a positive integer, got {state.best_epoch!r}")
    if problems:
        raise RunError(f"{path}: {'; '.join(problems)}. This file was not written by run_tad.py as it is.")
    return state


def check_random_states(checkpoint: Path, process_index: int):
    """accelerate skips random states it cannot read with a log line at INFO level, and the resumed run then
    differs from an uninterrupted one without a word; refuse such a checkpoint instead."""
    path = checkpoint / f"{RNG_STATE_NAME}_{process_index}.pkl"
    if not path.is_file():
        raise RunError(f"{checkpoint} has no {path.name}: the resumed run would not repeat the uninterrupted one.")
    try:
        # accelerate's weights-only loader, which allows the numpy random state it writes.
        states = load_weights_only(path, map_location="cpu")
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError):
        states = None
    if not isinstance(states, dict) or not {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(states):
        raise RunError(
            f"{path} is not the random-state file accelerate writes (random, numpy and torch states, weights-only); "
            "the resumed run would not repeat the uninterrupted one. Resume from another checkpoint."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Training steps and log
# ----------------------------------------------------------------------------------------------------------------------


def train_step(accelerator: Accelerator, model, optimizer, batch: dict, clip_grad_norm) -> tuple[dict, bool]:
    """One micro-batch: forward, backward and, at the end of an accumulation cycle, the optimizer step.

    Returns the loss parts as tensors on the device (read only at logging steps: reading one waits for the device)
    and whether this cycle's update was skipped. A non-finite loss is backpropagated like any other: its non-finite
    gradients, summed over the processes by DDP, make every process skip the cycle's update, as OpenTAD's loop does
    (the GradScaler's check under fp16, which also lowers the scale; the gradient norm's otherwise).
    """
    update_skipped = False
    with accelerator.accumulate(model):
        outputs = model(batch["pixel_values"], masks=batch["masks"], labels=batch["labels"])
        accelerator.backward(outputs.loss)
        if accelerator.sync_gradients:
            gradient_norm = accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm or math.inf)
            scaler = accelerator.scaler
            update_skipped = (
                gradient_norm is not None
                and not (scaler is not None and scaler.is_enabled())
                and not bool(torch.isfinite(gradient_norm))
            )
            if not update_skipped:
                optimizer.step()
        optimizer.zero_grad()
    losses = {"loss": outputs.loss.detach(), **{k: v.detach() for k, v in outputs.loss_dict.items()}}
    return losses, update_skipped


def step_losses(accelerator: Accelerator, micro_batch_losses: list) -> dict:
    """Mean over this step's micro-batches and all processes (every process calls it at the same steps); a
    non-finite loss is logged as None."""
    names = list(micro_batch_losses[0])
    values = torch.stack([torch.stack([losses[name].float() for name in names]) for losses in micro_batch_losses])
    means = dict(zip(names, accelerator.reduce(values.mean(dim=0), reduction="mean").tolist()))
    return means if math.isfinite(means["loss"]) else {"loss": None}


def describe_losses(micro_batch_losses: list) -> str:
    """This process's loss parts of a skipped step, for the warning and the error that name it."""
    return "; ".join(
        ", ".join(f"{name} {float(value):.4g}" for name, value in losses.items()) for losses in micro_batch_losses
    )


def truncate_log(path: Path, last_step: int):
    """Drops records after `last_step` (a resumed run goes on from its checkpoint, not from the last logged step)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
        write_text_atomically(path, "".join(line + "\n" for line in lines))


def append_log(path: Path, record: dict):
    with path.open("a") as log:
        log.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation, model folders
# ----------------------------------------------------------------------------------------------------------------------


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


def checkpoint_note(folder: str, preset: dict) -> str:
    """What a training run's `best/` or `last/` holds, for its `eval_results.json` and model card. `best/` is chosen by
    average mAP on the evaluation subset, the one its metrics are measured on (THUMOS-14 and ActivityNet have no other
    held-out split); OpenTAD never selects a checkpoint by mAP, so `last/` is the one to compare with the paper."""
    subset = preset["evaluation"]["subset"]
    if folder == "best":
        return (
            f"This folder (best/) holds the evaluated epoch with the highest average mAP on the {subset!r} subset, the "
            "subset its metrics are measured on, so they are an optimistic estimate; OpenTAD does not select by mAP: "
            "compare last/ with the paper."
        )
    return f"This folder ({folder}/) holds the model after the last trained epoch, the one to compare with the paper."


def model_card(preset: dict, metrics: dict | None, model_id: str, note: str = "") -> str:
    """A Hugging Face model card: what was trained on what, the measured mAP and how to load it."""
    command = f"`accelerate launch training/run_tad.py --preset {preset['name']}`"
    if preset["opentad_config"]:
        command += f" (OpenTAD config: `{preset['opentad_config']}`)"
    return str(
        build_model_card(
            model_id=model_id,
            title=f"AdaTAD: {preset['name']}",
            description=preset["description"],
            how_made=f"Trained with {command}; the resolved preset is below. {note}".strip(),
            dataset=preset["dataset"],
            metrics=metrics,
            eval_split=preset["evaluation"]["subset"],
            settings=preset,
            settings_title="Resolved preset",
            paper_average_map=(preset.get("paper") or {}).get("average_mAP"),
        )
    )


def push_folder(folder: Path, repo_id: str):
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True)
    upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=f"AdaTAD {folder.name} weights")


def format_metrics(metrics: dict) -> str:
    header = " | ".join(f"mAP@{float(t):.2f}" for t in metrics["mAP_per_tiou"]) + " | average"
    values = " | ".join(f"{100 * v:9.2f}" for v in metrics["mAP_per_tiou"].values())
    lines = [header, f"{values} | {100 * metrics['average_mAP']:7.2f}"]
    for k, average in metrics.get("average_recall", {}).items():
        recalls = " | ".join(f"{100 * by_k[k]:9.2f}" for by_k in metrics["recall_per_tiou"].values())
        lines.append(f"{recalls} | {100 * average:7.2f}   (R@{k}x)")
    return "\n".join(lines)


def save_model(accelerator: Accelerator, model, ema, processor, preset: dict, args, target: Path, metrics, epoch: int):
    """A `save_pretrained` folder (EMA weights when the preset keeps an EMA, else the live ones) with the processor,
    the resolved preset, the model card and the evaluation, written beside `target` and swapped in when complete."""
    accelerator.wait_for_everyone()
    # Without EMA the live weights are saved; under ZeRO-3 every process takes part in gathering them.
    state_dict = None if ema is not None else accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    temporary = target.with_name(f".{target.name}{INCOMPLETE_SUFFIX}")
    shutil.rmtree(temporary, ignore_errors=True)
    evaluation_model(accelerator, model, ema).save_pretrained(temporary, state_dict=state_dict)
    processor.save_pretrained(temporary)
    save_preset(preset, temporary / "preset.json")
    note = checkpoint_note(target.name, preset)
    if metrics is not None:
        summary = {"epoch": epoch + 1, "checkpoint": note, **metrics_summary(metrics)}
        (temporary / "eval_results.json").write_text(json.dumps(summary, indent=2))
    (temporary / "README.md").write_text(model_card(preset, metrics, args.hub_model_id or str(target), note))
    previous = target.with_name(f".{target.name}.previous")
    if target.exists():
        target.rename(previous)
    temporary.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


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


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def check_backbone_source(preset: dict, args):
    """A preset that names a pretrained VideoMAE (`backbone_checkpoint`) must get it (`--pretrained_model`): adapters
    on a random frozen ViT learn nothing useful. `--allow_random_backbone` is the explicit way round."""
    checkpoint = preset["backbone_checkpoint"]
    if checkpoint is None or args.pretrained_model or args.allow_random_backbone:
        return
    arch = CONVERSION_ARCH_BY_WIDTH.get(preset["model"]["backbone_config"]["hidden_size"])
    arch_flag = f" --arch {arch}" if arch else ""
    raise RunError(
        f"preset {preset['name']} starts from the pretrained VideoMAE {checkpoint}, "
        "but no --pretrained_model was given. Convert the checkpoint once with "
        f"`python conversion_scripts/convert_videomae_to_adatad.py --checkpoint pretrained/{checkpoint}{arch_flag} "
        f"--output pretrained/{Path(checkpoint).stem}-adatad`, "
        f"then pass --pretrained_model pretrained/{Path(checkpoint).stem}-adatad "
        "(or --allow_random_backbone to train on a randomly initialised backbone on purpose)."
    )


def generate_missing_synthetic_data(preset: dict, paths: dict, accelerator):
    """A synthetic preset's data is written into `data.root` on first use (main process, the others wait)."""
    from adatad.synthetic import DATASET_GENERATORS

    if preset["dataset"] not in DATASET_GENERATORS or paths["annotation_file"].is_file():
        return
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            accelerator.print(f"writing the {preset['dataset']} dataset to {preset['data']['root']}")
            DATASET_GENERATORS[preset["dataset"]](preset["data"]["root"])


def check_data(preset: dict, paths: dict, accelerator):
    """The rules of `adatad-validate-data` on the preset's annotations before any model is built: errors stop the run
    with the report, warnings are printed. The benchmarks' own files keep segments past the video end and of zero
    length that their evaluation keeps, so for them those are warnings."""
    segment_problems = "warning" if preset["dataset"] in DATASETS else "error"
    report = check_training_data(preset, paths, segment_problems=segment_problems)
    if report.warnings:
        accelerator.print(report.summary())


def training_function(args) -> dict:
    # Preset, output folder and accelerator.
    preset, reference = resolve_preset(args)
    check_backbone_source(preset, args)
    training = preset["training"]
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args)
    accelerator = build_accelerator(args, preset, output_dir)
    # Every process has looked at the folder before the main process writes into it.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    if args.report_to:
        accelerator.init_trackers("adatad", config={"preset": preset["name"], **training})
    end_epoch = training["end_epoch"] if args.num_epochs is None else args.num_epochs
    if end_epoch > training["max_epoch"]:
        raise RunError(
            f"--num_epochs {end_epoch} goes past the schedule's `training.max_epoch` ({training['max_epoch']}); "
            f"raise it with --set training.max_epoch={end_epoch} or train fewer epochs."
        )
    seed = training["seed"] if args.seed is None else args.seed
    # Seed before building the model so the seed also fixes the initialisation of detector and adapters.
    set_seed(seed)

    # Data.
    paths = resolve_data_paths(preset)
    generate_missing_synthetic_data(preset, paths, accelerator)
    check_data(preset, paths, accelerator)
    # Only now that the data passed its check: an error above leaves an earlier run in the folder untouched.
    if accelerator.is_main_process:
        if args.overwrite_output_dir and not args.resume_from_checkpoint:
            clear_previous_run(output_dir)
        save_preset(preset, output_dir / "preset.json")
    accelerator.wait_for_everyone()
    processor = AdaTADVideoProcessor(**processor_kwargs(preset))
    with accelerator.main_process_first():
        train_dataset, eval_dataset, evaluation, train_transform = build_datasets(preset, paths, processor, seed)
    processor.class_names = annotations.class_names_of(train_dataset)
    train_dataloader, eval_dataloader, batch_sampler = build_dataloaders(
        preset, args, accelerator, train_dataset, eval_dataset, seed
    )
    per_device_batch_size = batch_sizes(preset, accelerator.num_processes)
    drift = recipe_drift_warning(
        preset, reference["training"]["global_batch_size"], accelerator.num_processes, per_device_batch_size
    )
    if drift:
        logger.warning(drift, main_process_only=True)

    # Model, optimizer and schedule: the schedule counts the steps of the prepared (per-process) loader.
    model, ema = build_model(preset, args, processor.class_names, accelerator)
    optimizer = build_optimizer(model, training)
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None and deepspeed.is_auto("train_micro_batch_size_per_gpu"):
        # accelerate reads it from the loader's batch_size, which a batch sampler leaves unset.
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = per_device_batch_size
    model, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader
    )
    accumulation = training["gradient_accumulation_steps"]
    steps_per_epoch = math.ceil(len(train_dataloader) / accumulation)
    scheduler = accelerator.prepare(build_schedule(optimizer.optimizer, training, steps_per_epoch))
    if ema is not None:
        ema.module.to(accelerator.device)

    # Checkpoint and resume: the trainer state gives the position, best score and non-finite step counts.
    state = TrainerState(num_processes=accelerator.num_processes, steps_per_epoch=steps_per_epoch)
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            accelerator.print(f"no complete checkpoint under {output_dir / 'checkpoints'}; starting from scratch")
        elif not checkpoint.is_dir():
            raise RunError(f"--resume_from_checkpoint {checkpoint}: no such folder; pass `latest` or a step_N folder.")
        else:
            accelerator.print(f"resuming from {checkpoint}")
            state = load_checkpoint(accelerator, ema, checkpoint, accelerator.num_processes, steps_per_epoch)
    log_path = output_dir / LOG_NAME
    if accelerator.is_main_process:
        truncate_log(log_path, state.global_step)
        if args.resume_from_checkpoint:
            remove_incomplete_saves(output_dir)
    starting_epoch = state.global_step // steps_per_epoch
    resume_batches = (state.global_step % steps_per_epoch) * accumulation

    # The last optimizer step of this run (at the end of epoch `end_epoch`, or --max_train_steps).
    last_step = min(end_epoch * steps_per_epoch, args.max_train_steps or end_epoch * steps_per_epoch)

    def run_evaluation(epoch: int, last_epoch: bool) -> dict:
        """Evaluates after `epoch` (from 0) and keeps `best/` (and after the last epoch `last/` and the predictions).
        The epoch's checkpoint is saved first, marking the evaluation pending, and the mark is cleared once every
        result is written: an evaluation error or an interrupt never loses trained epochs, and a resumed run
        evaluates again instead of going on without results."""
        state.pending_evaluation_epoch = epoch + 1
        save_checkpoint(accelerator, model, ema, state, output_dir, args.checkpoints_total_limit)
        try:
            metrics = evaluate(
                evaluation_model(accelerator, model, ema), eval_dataloader, processor, accelerator, evaluation
            )
        except FloatingPointError as error:
            raise FloatingPointError(
                f"{error} [evaluation after epoch {epoch + 1}, step {state.global_step}; the checkpoint of that step "
                f"is {find_checkpoint(output_dir, 'latest')}]"
            ) from error
        # The last epoch is evaluated too, for last/; where OpenTAD would not score it (EPIC), that is labelled.
        scheduled = epoch >= training["val_start_epoch"] and (epoch + 1) % training["val_interval"] == 0
        metrics["opentad_evaluates_this_epoch"] = scheduled
        weights = "EMA" if ema is not None else "live"
        extra = "" if scheduled else "; an extra evaluation after the last epoch, which OpenTAD's schedule skips"
        accelerator.print(f"epoch {epoch + 1} ({weights} weights{extra}):\n{format_metrics(metrics)}")
        if args.report_to:
            accelerator.log({"eval/average_mAP": metrics["average_mAP"]}, step=state.global_step)
        if state.best_average_mAP is None or metrics["average_mAP"] > state.best_average_mAP:
            state.best_average_mAP, state.best_epoch = metrics["average_mAP"], epoch + 1
            save_model(accelerator, model, ema, processor, preset, args, output_dir / "best", metrics, epoch)
        if last_epoch:
            save_model(accelerator, model, ema, processor, preset, args, output_dir / "last", metrics, epoch)
            save_predictions(accelerator, args, output_dir, metrics, evaluation.ground_truth)
        state.pending_evaluation_epoch = None
        save_checkpoint(accelerator, model, ema, state, output_dir, args.checkpoints_total_limit)
        return metrics

    metrics = None
    if state.pending_evaluation_epoch is not None:
        epoch = state.pending_evaluation_epoch - 1
        accelerator.print(f"the evaluation after epoch {epoch + 1} did not finish; evaluating again")
        metrics = run_evaluation(epoch, last_epoch=state.global_step >= last_step)
    if state.global_step >= last_step:
        starting_epoch = end_epoch  # nothing left to train

    # Train.
    progress = tqdm(
        total=end_epoch * steps_per_epoch,
        initial=state.global_step,
        desc="training",
        disable=not accelerator.is_local_main_process,
    )
    for epoch in range(starting_epoch, end_epoch):
        model.train()
        train_dataloader.set_epoch(epoch)
        batch_sampler.set_epoch(epoch)
        train_transform.set_epoch(epoch)
        batches = train_dataloader
        if epoch == starting_epoch and resume_batches:
            batches = accelerator.skip_first_batches(train_dataloader, resume_batches)
        micro_batch_losses, step_videos = [], []
        for batch in batches:
            batch = on_device(batch, processor)
            if batch["skipped_videos"]:
                logger.warning(f"skipped undecodable videos: {batch['skipped_videos']}")
            losses, update_skipped = train_step(accelerator, model, optimizer, batch, training["clip_grad_norm"])
            step_videos += [meta["video_id"] for meta in batch["video_metas"]]
            micro_batch_losses.append(losses)
            if not accelerator.sync_gradients:
                continue
            # One optimizer step done, or skipped for non-finite gradients (a non-finite loss gives them).
            skipped = update_skipped or accelerator.optimizer_step_was_skipped
            learning_rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
            scheduler.step()
            if ema is not None:
                ema.update(accelerator.unwrap_model(model))
            state.global_step += 1
            state.skipped_steps += int(skipped)
            state.consecutive_skipped_steps = state.consecutive_skipped_steps + 1 if skipped else 0
            if state.consecutive_skipped_steps >= MAX_CONSECUTIVE_NON_FINITE_STEPS:
                raise FloatingPointError(
                    f"non-finite loss or gradients ({describe_losses(micro_batch_losses)}) "
                    f"[{state.consecutive_skipped_steps} non-finite steps in a row; epoch {epoch}, step "
                    f"{state.global_step}, videos {step_videos}; the last good checkpoint is "
                    f"{find_checkpoint(output_dir, 'latest')}]"
                )
            if skipped:
                logger.warning(
                    f"step {state.global_step}: non-finite loss or gradients ({describe_losses(micro_batch_losses)}), "
                    f"update skipped ({state.skipped_steps} skipped so far)"
                )
            progress.update(1)
            if state.global_step == 1 or state.global_step % training["logging_steps"] == 0:
                losses = step_losses(accelerator, micro_batch_losses)
                record = {
                    "step": state.global_step,
                    "epoch": epoch,
                    "lr": learning_rates,
                    **losses,
                    "skipped": skipped,
                    "skipped_steps": state.skipped_steps,
                }
                if accelerator.is_main_process:
                    append_log(log_path, record)
                    progress.set_postfix(loss=losses["loss"])
                if args.report_to:
                    scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
                    scalars.update({f"lr/{name}": lr for name, lr in learning_rates.items()})
                    accelerator.log(scalars, step=state.global_step)
            micro_batch_losses, step_videos = [], []
            if args.checkpointing_steps and state.global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, model, ema, state, output_dir, args.checkpoints_total_limit)
            if args.max_train_steps and state.global_step >= args.max_train_steps:
                break
        last_epoch = state.global_step >= last_step
        # OpenTAD's rule: evaluate after epoch `epoch` (from 0) when epoch >= val_start_epoch and (epoch + 1) % N == 0.
        if last_epoch or (epoch >= training["val_start_epoch"] and (epoch + 1) % training["val_interval"] == 0):
            metrics = run_evaluation(epoch, last_epoch)
        elif training["checkpoint_interval"] and (epoch + 1) % training["checkpoint_interval"] == 0:
            save_checkpoint(accelerator, model, ema, state, output_dir, args.checkpoints_total_limit)
        if last_epoch:
            break
    progress.close()

    if args.push_to_hub and accelerator.is_main_process:
        push_folder(output_dir / ("best" if state.best_average_mAP is not None else "last"), args.hub_model_id)
    accelerator.end_training()
    return {
        "last": metrics,
        "best_average_mAP": state.best_average_mAP,
        "global_step": state.global_step,
        "skipped_steps": state.skipped_steps,
        "output_dir": str(output_dir),
    }


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def evaluation_function(args) -> dict:
    """Evaluation only (OpenTAD's `tools/test.py`): the model folder `--model` on the preset's test split, through the
    same data, post-processing and scoring as evaluation during training; writes `OUTPUT_DIR/eval_results.json` (the
    layout of a training run's) and `OUTPUT_DIR/predictions.json`."""
    preset, _ = resolve_preset(args)
    check_output_dir(Path(args.output_dir), args)
    accelerator = Accelerator(mixed_precision=args.mixed_precision or preset["training"]["mixed_precision"])
    paths = resolve_data_paths(preset)
    generate_missing_synthetic_data(preset, paths, accelerator)
    model_dir = Path(args.model)
    processor = AdaTADVideoProcessor(**processor_kwargs(preset))
    # The detector's class names are those of its training annotations, saved with it.
    processor.class_names = AdaTADVideoProcessor.from_pretrained(model_dir).class_names
    with accelerator.main_process_first():
        eval_dataset, evaluation = build_evaluation_data(preset, paths, processor)
    check_weights_fit(model_dir, AdaTADConfig.from_pretrained(model_dir), "--model")
    model, _ = load_complete_model(AdaTADForTemporalDetection, model_dir)
    model.to(accelerator.device)
    training = preset["training"]
    # Training's evaluation batch by default, so that the numbers match those of the training run.
    batch_size = args.eval_batch_size or training["global_batch_size"] // (
        accelerator.num_processes * training["gradient_accumulation_steps"]
    )
    eval_dataloader = accelerator.prepare(
        build_eval_dataloader(eval_dataset, max(1, batch_size), data_workers(preset, args, accelerator),
                              training["seed"], on_gpu=accelerator.device.type == "cuda")
    )
    metrics = evaluate(model, eval_dataloader, processor, accelerator, evaluation)
    accelerator.print(f"{model_dir}:\n{format_metrics(metrics)}")
    if accelerator.is_main_process:
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(output_dir / "predictions.json", json.dumps({"results": metrics["predictions"]}))
        summary = {"model": str(model_dir), **metrics_summary(metrics)}
        write_text_atomically(output_dir / "eval_results.json", json.dumps(summary, indent=2))
    accelerator.end_training()
    return metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="preset name (see --list-presets) or path to a preset JSON file")
    parser.add_argument("--list-presets", action="store_true", help="print every preset and exit")
    parser.add_argument(
        "--set",
        nargs="*",
        action="extend",
        metavar="KEY=VALUE",
        help="override preset fields, e.g. training.adapter_lr=1e-4; repeatable: every --set adds its overrides (for "
        "a key given twice the last value wins)",
    )
    parser.add_argument(
        "--data_dir", help="dataset root (the preset's `data.root`): annotation file, class map, videos"
    )
    parser.add_argument("--output_dir", default="runs/adatad", help="checkpoints, logs and the best/last model folders")
    parser.add_argument(
        "--overwrite_output_dir", action="store_true", help="train into a folder that holds a run (its checkpoints go)"
    )
    parser.add_argument("--pretrained_model", help="folder from conversion_scripts/convert_videomae_to_adatad.py")
    parser.add_argument(
        "--allow_random_backbone",
        action="store_true",
        help="train a preset that names a pretrained VideoMAE (`backbone_checkpoint`) without --pretrained_model",
    )
    parser.add_argument(
        "--eval_only",
        action="store_true",
        help="evaluate the model folder --model on the preset's test split; write OUTPUT_DIR/eval_results.json and "
        "OUTPUT_DIR/predictions.json",
    )
    parser.add_argument(
        "--model", help="with --eval_only: a saved model folder (e.g. OUTPUT_DIR/best of a training run)"
    )
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument(
        "--num_workers",
        type=non_negative_int,
        default=None,
        help="data-loading workers per process (default: the preset's)",
    )
    parser.add_argument("--eval_batch_size", type=positive_int, default=None)
    parser.add_argument(
        "--num_epochs", type=positive_int, default=None, help="stop after this many epochs (default: the preset's)"
    )
    parser.add_argument(
        "--max_train_steps", type=positive_int, default=None, help="stop after this many optimizer steps"
    )
    parser.add_argument(
        "--checkpointing_steps", type=positive_int, default=None,
        help="also save_state every N steps (besides the preset's epochs)",
    )
    parser.add_argument(
        "--checkpoints_total_limit", type=positive_int, default=None, help="keep only the newest N checkpoints"
    )
    parser.add_argument("--resume_from_checkpoint", help="a checkpoint folder, or `latest`")
    parser.add_argument("--report_to", default=None, help="tracker, e.g. tensorboard")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--plot_timeline", type=non_negative_int, default=0, metavar="N",
        help="draw ground truth vs detections of N evaluation videos",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the best (else last) model folder")
    parser.add_argument("--hub_model_id", help="repository for --push_to_hub, e.g. your-name/adatad-thumos-s")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors caused by inputs")
    args = parser.parse_args(argv)
    if not args.list_presets and not args.preset:
        parser.error("--preset is required (see --list-presets)")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id (e.g. your-name/adatad-thumos-s)")
    if args.eval_only != bool(args.model):
        parser.error("--eval_only and --model go together: --eval_only --model FOLDER")
    if args.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        parser.error("--report_to tensorboard needs tensorboard: pip install 'adatad[tracking]'")
    return args


def main(argv=None) -> int:
    """Exit codes: 0 done, 2 an error in the inputs (flags, preset, data, checkpoint) or a diverged run, printed as
    one line (`--debug` shows the traceback)."""
    args = parse_args(argv)
    if args.list_presets:
        print(format_preset_table())
        return 0
    if not torch.cuda.is_available():
        # On CPU, freed activations go back to the system instead of fragmenting the heap (about half the resident
        # memory of a 256-frame step: docs/performance.md).
        limit_cpu_heap_fragmentation()
    try:
        if args.eval_only:
            evaluation_function(args)
        else:
            training_function(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        hint = " Check --data_dir and the preset's `data` paths." if isinstance(error, FileNotFoundError) else ""
        if isinstance(error, DataValidationError):
            # The report lists each kind of problem with its first rows; its last line says what to do.
            print(error.report.summary(), file=sys.stderr)
            error = RunError(
                f"{error.report.source}: the data has errors (report above); `adatad-validate-data` checks it"
            )
        print(f"error: {' '.join(str(error).split())}{hint} (--debug shows the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
