#!/usr/bin/env python
"""Train and evaluate AdaTAD with Accelerate: one CPU, one GPU, many GPUs or DeepSpeed.

    accelerate launch training/run_tad.py --preset e2e_thumos_videomae_s_768x1_160_adapter \
        --data_dir data/thumos-14 --pretrained_model pretrained/videomae-s --output_dir runs/thumos-s

    accelerate launch training/run_tad.py --preset synthetic-tiny --output_dir runs/synthetic   # CPU demo

A preset (training/presets/*.json) holds every number of the matching OpenTAD config; any field can be changed
with `--set training.adapter_lr=1e-4 model.adapter_layer_indices=[6,7,8]`. `--list-presets` prints them all.

The loop follows accelerate's `complete_nlp_example.py`: seed, data, model, optimizer and schedule, one `prepare`,
resumable `save_state` checkpoints named `step_{n}`, EMA weights for evaluation, best/last `save_pretrained` folders.
"""

import argparse
import copy
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from presets import (  # noqa: E402
    apply_overrides,
    build_model_config,
    format_preset_table,
    load_preset,
    processor_kwargs,
    resolve_data_paths,
)

from adatad import data as annotations  # noqa: E402
from adatad.evaluation import evaluate_detection  # noqa: E402
from adatad.modeling_adatad import AdaTADForTemporalDetection  # noqa: E402
from adatad.model_card import build_model_card  # noqa: E402
from adatad.post_processing import to_activitynet_submission  # noqa: E402
from adatad.processing_adatad import (  # noqa: E402
    AdaTADVideoProcessor,
    TemporalDetectionTransform,
    collate_temporal_detection,
)

logger = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)$")


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
        missing_videos=data_config.get("missing_videos", "raise"),
    )
    if len(rows) == 0:
        raise ValueError(f"no videos of subset {subset!r} in {paths['annotation_file']}")
    if data_config["class_agnostic"]:
        # ActivityNet: one "action" class; the external video classifier names the detections at evaluation.
        rows = rows.cast_column("labels", annotations.annotation_features(["action"])["labels"])
        rows = rows.map(lambda row: {"labels": [0] * len(row["labels"])})
    return rows


def build_datasets(preset: dict, paths: dict, processor: AdaTADVideoProcessor, seed: int):
    """Training rows (decoded lazily with augmentation), evaluation rows (windows in sliding-window mode) and the
    evaluation ground truth in the ActivityNet `database` layout."""
    data_config = preset["data"]
    train_rows = load_video_rows(preset, paths, data_config["train_subset"])
    eval_rows = load_video_rows(preset, paths, data_config["test_subset"])
    ground_truth = annotations.load_database_json(paths["annotation_file"], subset=preset["evaluation"]["subset"])
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
    transform_kwargs = dict(
        grid_conversion=data_config["conversion_mode"] if data_config["conversion_mode"] != "resize" else "frame_count",
        conversion_fps=data_config["fps"],
        on_error=data_config.get("on_video_error", "raise"),
    )
    train_transform = TemporalDetectionTransform(processor, mode="train", seed=seed, **transform_kwargs)
    eval_transform = TemporalDetectionTransform(processor, mode="eval", **transform_kwargs)
    return (
        train_rows.with_transform(train_transform),
        eval_rows.with_transform(eval_transform),
        annotations.to_database_json(ground_truth),
        train_transform,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Optimisation helpers
# ----------------------------------------------------------------------------------------------------------------------


class ModelEma:
    """Exponential moving average of every float tensor of a model's state dict (parameters and buffers), updated
    after each optimizer step and used for evaluation, as AdaTAD does (decay 0.999)."""

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

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict):
        self.module.load_state_dict(state_dict)


def warmup_cosine_schedule(optimizer, warmup_steps: int, total_steps: int, eta_min: float):
    """Linear warm-up from 0, then cosine to `eta_min` at `total_steps` (AdaTAD stops at `end_epoch`, before the
    cosine completes), stepped per optimizer step."""

    def factor(base_lr):
        def lr_lambda(step):
            if step < warmup_steps:
                return step / max(1, warmup_steps)
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            floor = eta_min / base_lr if base_lr > 0 else 0.0
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return lr_lambda

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(group["lr"]) for group in optimizer.param_groups])


def find_checkpoint(output_dir: Path, resume_from: str) -> Path | None:
    if resume_from != "latest":
        return Path(resume_from)
    checkpoints = [p for p in (output_dir / "checkpoints").glob("step_*") if CHECKPOINT_PATTERN.search(p.name)]
    return max(checkpoints, key=lambda p: int(CHECKPOINT_PATTERN.search(p.name).group(1)), default=None)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, dataloader, processor, accelerator, ground_truth: dict, evaluation_config: dict) -> dict:
    """Detections of `model` on the evaluation rows, merged per video, scored with ActivityNet mAP."""
    model.eval()
    results = []
    for batch in tqdm(dataloader, desc="evaluating", disable=not accelerator.is_local_main_process, leave=False):
        with accelerator.autocast():
            outputs = model(batch["pixel_values"], masks=batch["masks"])
        detections = processor.post_process_temporal_detection(outputs, batch["video_metas"], merge_windows=False)
        results.extend(
            {key: (value.cpu() if torch.is_tensor(value) else value) for key, value in result.items()}
            for result in detections
        )
    results = accelerator.gather_for_metrics(results, use_gather_object=True)
    if processor.sampling_method == "sliding_window":
        results = processor.merge_window_detections(results)
    predictions = to_activitynet_submission(results)
    metrics = evaluate_detection(
        ground_truth,
        predictions,
        tiou_thresholds=evaluation_config["tiou_thresholds"],
        subset=None,
        # Classes absent from the evaluation videos cannot be scored (the official code would crash); their
        # detections are dropped and counted in the metrics' warnings.
        ignore_unknown_labels=True,
        # OpenTAD's evaluator (behind AdaTAD's published numbers) drops zero-length and duplicate ground truth.
        remove_duplicate_instances=True,
    )
    metrics["predictions"] = predictions
    return metrics


def model_card(preset: dict, metrics: dict | None, model_id: str) -> str:
    """A Hugging Face model card: what was trained on what, the measured mAP and how to load it."""
    command = f"`accelerate launch training/run_tad.py --preset {preset['name']}`"
    if preset["opentad_config"]:
        command += f" (OpenTAD config: `{preset['opentad_config']}`)"
    return str(
        build_model_card(
            model_id=model_id,
            title=f"AdaTAD: {preset['name']}",
            description=preset["description"],
            how_made=f"Trained with {command}; the resolved preset is below.",
            dataset=preset["dataset"],
            metrics=metrics,
            eval_split=preset["evaluation"]["subset"],
            settings=preset,
            settings_title="Resolved preset",
            paper_average_map=(preset.get("paper") or {}).get("average_mAP"),
        )
    )


def push_folder(folder: Path, repo_id: str | None):
    if not repo_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/adatad-thumos-s)")
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True)
    upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=f"AdaTAD {folder.name} weights")


def format_metrics(metrics: dict) -> str:
    header = " | ".join(f"mAP@{float(t):.2f}" for t in metrics["mAP_per_tiou"]) + " | average"
    values = " | ".join(f"{100 * v:9.2f}" for v in metrics["mAP_per_tiou"].values())
    return f"{header}\n{values} | {100 * metrics['average_mAP']:7.2f}"


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def training_function(args) -> dict:
    preset = load_preset(args.preset)
    if args.data_dir:
        preset["data"]["root"] = args.data_dir
    preset = apply_overrides(preset, args.set or [])
    training = preset["training"]
    output_dir = Path(args.output_dir)
    gradient_accumulation_steps = training["gradient_accumulation_steps"]
    accelerator = Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=args.mixed_precision or training["mixed_precision"],
        log_with=args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        step_scheduler_with_optimizer=False,
    )
    if args.report_to:
        accelerator.init_trackers("adatad", config={"preset": preset["name"], **training})

    num_workers = preset["data"]["num_workers"] if args.num_workers is None else args.num_workers
    if accelerator.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Leave a core to each data-loading worker: oversubscribed CPU threads make a step 10-30x slower.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // accelerator.num_processes - num_workers))

    seed = training["seed"] if args.seed is None else args.seed
    # Seed before building the model so the seed also fixes the initialisation of detector and adapters.
    set_seed(seed)

    paths = resolve_data_paths(preset)
    if preset["dataset"] == "synthetic" and not paths["annotation_file"].is_file():
        with accelerator.main_process_first():
            if accelerator.is_main_process:
                from adatad.synthetic import generate_synthetic_dataset

                accelerator.print(f"writing the synthetic dataset to {preset['data']['root']}")
                generate_synthetic_dataset(preset["data"]["root"])
    processor = AdaTADVideoProcessor(**processor_kwargs(preset))
    with accelerator.main_process_first():
        train_dataset, eval_dataset, ground_truth, train_transform = build_datasets(preset, paths, processor, seed)
    processor.class_names = annotations.class_names_of(train_dataset)

    global_batch_size = training["global_batch_size"]
    if global_batch_size % (accelerator.num_processes * gradient_accumulation_steps):
        raise ValueError(
            f"`training.global_batch_size` ({global_batch_size}) must be divisible by the number of processes "
            f"({accelerator.num_processes}) times `gradient_accumulation_steps` ({gradient_accumulation_steps})."
        )
    per_device_batch_size = global_batch_size // (accelerator.num_processes * gradient_accumulation_steps)
    if len(train_dataset) < global_batch_size:
        raise ValueError(
            f"the training subset has {len(train_dataset)} videos, fewer than one global batch ({global_batch_size})."
        )
    # Own generators: creating a loader iterator must not draw from the global RNG, or a resumed run would shift the
    # drop-path randomness of every later step.
    train_dataloader = DataLoader(
        train_dataset,
        batch_size=per_device_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_temporal_detection,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    eval_dataloader = DataLoader(
        eval_dataset,
        batch_size=args.eval_batch_size or per_device_batch_size,
        collate_fn=collate_temporal_detection,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )

    config = build_model_config(preset)
    if args.pretrained_model:
        # A converted VideoMAE (conversion_scripts/convert_videomae_to_adatad.py): its backbone weights, the preset's
        # adapters and detector, freshly initialised.
        model = AdaTADForTemporalDetection.from_pretrained(args.pretrained_model, config=config)
    else:
        model = AdaTADForTemporalDetection(config)
    if config.num_labels != len(processor.class_names):
        raise ValueError(
            f"`model.num_labels` ({config.num_labels}) differs from the {len(processor.class_names)} classes of the "
            f"training annotations {processor.class_names[:5]}...; set `model.num_labels`."
        )
    model.config.id2label = dict(enumerate(processor.class_names))
    model.config.label2id = {name: index for index, name in enumerate(processor.class_names)}
    if training["gradient_checkpointing"]:
        model.activation_checkpointing_enable()

    optimizer = torch.optim.AdamW(
        model.get_parameter_groups(
            detector_lr=training["detector_lr"],
            adapter_lr=training["adapter_lr"] or 0.0,
            backbone_lr=training["backbone_lr"],
            detector_weight_decay=training["detector_weight_decay"],
            adapter_weight_decay=training["adapter_weight_decay"] or 0.0,
            backbone_weight_decay=training["backbone_weight_decay"],
        )
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / gradient_accumulation_steps)
    max_epochs, end_epoch = training["max_epoch"], training["end_epoch"] or training["max_epoch"]
    if args.num_epochs is not None:
        end_epoch = args.num_epochs
    scheduler = warmup_cosine_schedule(
        optimizer,
        warmup_steps=int(training["warmup_epochs"] * steps_per_epoch),
        total_steps=max_epochs * steps_per_epoch,
        eta_min=training["eta_min"],
    )
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None and deepspeed.zero_stage == 3 and training["ema_decay"] is not None:
        raise ValueError(
            "ZeRO-3 shards the parameters, so the weight EMA cannot read them; run with --set training.ema_decay=null "
            "(evaluation then uses the live weights) or use ZeRO-2."
        )
    ema = ModelEma(model, decay=training["ema_decay"]) if training["ema_decay"] is not None else None

    model, optimizer, train_dataloader, eval_dataloader, scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, scheduler
    )
    if ema is not None:
        ema.module.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    def evaluation_model():
        return ema.module if ema is not None else accelerator.unwrap_model(model)

    # Resume: the step number in the checkpoint folder name gives epoch and position inside it.
    global_step, starting_epoch, resume_batches = 0, 0, 0
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            accelerator.print(f"no checkpoint under {output_dir / 'checkpoints'}; starting from scratch")
        else:
            accelerator.print(f"resuming from {checkpoint}")
            accelerator.load_state(str(checkpoint))
            global_step = int(CHECKPOINT_PATTERN.search(checkpoint.name).group(1))
            starting_epoch = global_step // steps_per_epoch
            resume_batches = (global_step % steps_per_epoch) * gradient_accumulation_steps

    def save_checkpoint():
        # Never overwrite the last good checkpoint with diverged weights.
        bad = [name for name, p in accelerator.unwrap_model(model).named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(
                f"non-finite weights after step {global_step} ({bad[:3]}...); not saving them. The last good "
                f"checkpoint is {find_checkpoint(output_dir, 'latest')}. Lower the learning rate or clip gradients."
            )
        accelerator.save_state(str(output_dir / "checkpoints" / f"step_{global_step}"))
        if accelerator.is_main_process and args.checkpoints_total_limit:
            checkpoints = sorted(
                (output_dir / "checkpoints").glob("step_*"), key=lambda p: int(CHECKPOINT_PATTERN.search(p.name).group(1))
            )
            for old in checkpoints[: -args.checkpoints_total_limit]:
                shutil.rmtree(old)

    def save_model(folder: str, metrics: dict | None):
        target = output_dir / folder
        accelerator.wait_for_everyone()
        # Without EMA the live weights are saved; under ZeRO-3 every process takes part in gathering them.
        state_dict = None if ema is not None else accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            evaluation_model().save_pretrained(target, state_dict=state_dict)
            processor.save_pretrained(target)
            if metrics is not None:
                summary = {k: metrics[k] for k in ("mAP_per_tiou", "average_mAP", "ap_per_class")}
                (target / "eval_results.json").write_text(json.dumps({"epoch": epoch + 1, **summary}, indent=2))
            (target / "README.md").write_text(model_card(preset, metrics, args.hub_model_id or str(target)))

    checkpoint_epochs = training["checkpoint_interval"]
    eval_interval, eval_start = training["val_interval"], training["val_start_epoch"]
    best_metrics, metrics = None, None
    progress = tqdm(
        total=end_epoch * steps_per_epoch, initial=global_step, desc="training", disable=not accelerator.is_local_main_process
    )
    for epoch in range(starting_epoch, end_epoch):
        model.train()
        train_dataloader.set_epoch(epoch)
        train_transform.set_epoch(epoch)
        batches = train_dataloader
        if epoch == starting_epoch and resume_batches:
            batches = accelerator.skip_first_batches(train_dataloader, resume_batches)
        for batch in batches:
            if batch["skipped_videos"]:
                logger.warning(f"skipped undecodable videos: {batch['skipped_videos']}")
            with accelerator.accumulate(model):
                try:
                    outputs = model(batch["pixel_values"], masks=batch["masks"], labels=batch["labels"])
                except FloatingPointError as error:
                    video_ids = [meta["video_id"] for meta in batch["video_metas"]]
                    raise FloatingPointError(
                        f"{error} [epoch {epoch}, step {global_step}, videos {video_ids}; the last good checkpoint is "
                        f"{find_checkpoint(output_dir, 'latest')}]"
                    ) from error
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and training["clip_grad_norm"]:
                    accelerator.clip_grad_norm_(model.parameters(), training["clip_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            if ema is not None:
                ema.update(accelerator.unwrap_model(model))
            global_step += 1
            progress.update(1)
            logs = {"loss": outputs.loss.detach().item(), **{k: float(v.detach()) for k, v in outputs.loss_dict.items()}}
            logs.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            if args.report_to:
                accelerator.log(logs, step=global_step)
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                save_checkpoint()
            if args.max_train_steps and global_step >= args.max_train_steps:
                break
        last_epoch = epoch + 1 == end_epoch or bool(args.max_train_steps and global_step >= args.max_train_steps)
        if last_epoch or (checkpoint_epochs and (epoch + 1) % checkpoint_epochs == 0):
            save_checkpoint()
        # OpenTAD's rule: evaluate after epoch `epoch` (from 0) when epoch >= val_start_epoch and (epoch + 1) % N == 0.
        if last_epoch or (epoch >= eval_start and (epoch + 1) % eval_interval == 0):
            metrics = evaluate(evaluation_model(), eval_dataloader, processor, accelerator, ground_truth, preset["evaluation"])
            weights = "EMA" if ema is not None else "live"
            accelerator.print(f"epoch {epoch + 1} ({weights} weights):\n{format_metrics(metrics)}")
            if args.report_to:
                accelerator.log({"eval/average_mAP": metrics["average_mAP"]}, step=global_step)
            if best_metrics is None or metrics["average_mAP"] > best_metrics["average_mAP"]:
                best_metrics = metrics
                save_model("best", metrics)
        if last_epoch:
            break
    progress.close()
    save_model("last", metrics)
    if accelerator.is_main_process and metrics is not None:
        (output_dir / "predictions.json").write_text(json.dumps({"results": metrics["predictions"]}))
        (output_dir / "ground_truth.json").write_text(json.dumps(ground_truth))
        if args.plot_timeline:
            from adatad.visualization import plot_timeline

            picture = plot_timeline(
                ground_truth, metrics["predictions"], output_dir / "timeline.png", max_videos=args.plot_timeline
            )
            accelerator.print(f"ground truth vs detections of {args.plot_timeline} held-out videos: {picture}")
    if args.push_to_hub and accelerator.is_main_process:
        push_folder(output_dir / ("best" if best_metrics is not None else "last"), args.hub_model_id)
    accelerator.end_training()
    return {"last": metrics, "best": best_metrics, "global_step": global_step, "output_dir": str(output_dir)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="preset name (see --list-presets) or path to a preset JSON file")
    parser.add_argument("--list-presets", action="store_true", help="print every preset and exit")
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override preset fields, e.g. training.adapter_lr=1e-4")
    parser.add_argument("--data_dir", help="dataset root (the preset's `data.root`): annotation file, class map, videos")
    parser.add_argument("--output_dir", default="runs/adatad", help="checkpoints, logs and the best/last model folders")
    parser.add_argument("--pretrained_model", help="folder from conversion_scripts/convert_videomae_to_adatad.py")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--num_workers", type=int, default=None, help="data-loading workers per process (default: the preset's)")
    parser.add_argument("--eval_batch_size", type=int, default=None)
    parser.add_argument("--num_epochs", type=int, default=None, help="stop after this many epochs (default: the preset's)")
    parser.add_argument("--max_train_steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument(
        "--checkpointing_steps", type=int, default=None, help="also save_state every N steps (besides the preset's epochs)"
    )
    parser.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    parser.add_argument("--resume_from_checkpoint", help="a checkpoint folder, or `latest`")
    parser.add_argument("--report_to", default=None, help="tracker, e.g. tensorboard")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--plot_timeline", type=int, default=0, metavar="N", help="draw ground truth vs detections of N evaluation videos"
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the best (else last) model folder")
    parser.add_argument("--hub_model_id", help="repository for --push_to_hub, e.g. your-name/adatad-thumos-s")
    args = parser.parse_args(argv)
    if not args.list_presets and not args.preset:
        parser.error("--preset is required (see --list-presets)")
    if args.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        parser.error("--report_to tensorboard needs tensorboard: pip install 'adatad[tracking]'")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list_presets:
        print(format_preset_table())
        return
    training_function(args)


if __name__ == "__main__":
    main()
