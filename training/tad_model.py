"""Model side of `training/run_tad.py`: the model built from a preset (random, pretrained backbone or saved
folder), OpenTAD's EMA of the weights, the optimizer's parameter groups and OpenTAD's warm-up + cosine schedule."""

import copy
import math
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model

from accelerate import Accelerator

from adatad.model_loading import BACKBONE_MODEL_NEW_PARTS, load_complete_model
from adatad.modeling_adatad import AdaTADForTemporalDetection
from adatad.presets import build_model_config

from tad_errors import RunError


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
