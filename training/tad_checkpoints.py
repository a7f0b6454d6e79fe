"""Checkpoints of `training/run_tad.py`: the trainer state, `save_state` folders written under a temporary name and
renamed when complete, resume (position, random states, EMA), the JSON-lines log, and the `save_pretrained` model
folders (best/, last/) with their model card."""

import dataclasses
import json
import pickle
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import RNG_STATE_NAME
from accelerate.utils import load as load_weights_only

from adatad.atomic_files import write_text_atomically
from adatad.model_card import build_model_card
from adatad.presets import save_preset

from tad_errors import RunError
from tad_evaluation import metrics_summary
from tad_model import evaluation_model

logger = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)$")
INCOMPLETE_SUFFIX = ".incomplete"
TRAINER_STATE_NAME = "trainer_state.json"
EMA_WEIGHTS_NAME = "ema.safetensors"
LOG_NAME = "log.jsonl"


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


def truncate_log(path: Path, last_step: int):
    """Drops records after `last_step` (a resumed run goes on from its checkpoint, not from the last logged step)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
        write_text_atomically(path, "".join(line + "\n" for line in lines))


def append_log(path: Path, record: dict):
    with path.open("a") as log:
        log.write(json.dumps(record) + "\n")


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
