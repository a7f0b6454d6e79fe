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
order and batches are OpenTAD's on any number of processes (docs/training.md). The steps live beside this
script: `tad_data.py` (datasets, OpenTAD's batch order), `tad_model.py` (model, EMA, optimizer, schedule),
`tad_checkpoints.py` (trainer state, checkpoints, log, model folders) and `tad_evaluation.py`.
"""

import argparse
import copy
import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DDPCommunicationHookType, DistributedDataParallelKwargs, ProjectConfiguration, set_seed

from adatad import annotations
from adatad.argparse_types import non_negative_int, positive_int
from adatad.atomic_files import write_text_atomically
from adatad.custom_data import DataValidationError, check_training_data
from adatad.memory_estimation import limit_cpu_heap_fragmentation
from adatad.model_loading import MissingWeightsError, load_complete_model
from adatad.modeling_adatad import AdaTADForTemporalDetection
from adatad.presets import (
    DATASETS,
    PresetError,
    apply_overrides,
    format_preset_table,
    load_preset,
    processor_kwargs,
    resolve_data_paths,
    save_preset,
)
from adatad.processing_adatad import AdaTADVideoProcessor
from adatad.video_decoding import VideoDecodeError
from adatad.synthetic import SyntheticConfigError

# The support modules beside this script (Python puts the script's folder first on `sys.path`).
from tad_checkpoints import (
    LOG_NAME,
    TrainerState,
    append_log,
    find_checkpoint,
    load_checkpoint,
    push_folder,
    remove_incomplete_saves,
    save_checkpoint,
    save_model,
    truncate_log,
)
from tad_data import (
    batch_sizes,
    build_dataloaders,
    build_datasets,
    build_eval_dataloader,
    build_evaluation_data,
    data_workers,
    on_device,
    recipe_drift_warning,
)
from tad_errors import RunError
from tad_evaluation import evaluate, format_metrics, metrics_summary, save_predictions
from tad_model import build_model, build_optimizer, build_schedule, evaluation_model

logger = get_logger(__name__)

# GradScaler skips a step or two whenever it lowers its scale; a run that stays non-finite this long has diverged.
MAX_CONSECUTIVE_NON_FINITE_STEPS = 20


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


# ----------------------------------------------------------------------------------------------------------------------
# Training steps
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


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


# Width of the ViT -> `--arch` of conversion_scripts/convert_videomae_to_adatad.py.
CONVERSION_ARCH_BY_WIDTH = {384: "s", 768: "b", 1024: "l", 1280: "h", 1408: "g"}


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
