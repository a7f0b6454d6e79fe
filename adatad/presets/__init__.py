"""Training presets: one JSON file per experiment, shipped in this package (`adatad/presets/*.json`), loaded,
checked and overridden here.

Every row of AdaTAD's result tables (OpenTAD `configs/adatad/README.md`) has a preset named after the stem of its
OpenTAD config, e.g. `e2e_thumos_videomae_s_768x1_160_adapter`; the frozen-backbone (`*_frozen`) and full
fine-tuning (`*_fullft`) baselines OpenTAD defines for ActivityNet and THUMOS-14, the VideoMAE-S side-adapter
config (`e2e_thumos_videomae_s_768x1_160_side`) and the CPU-sized `synthetic-tiny*` presets complete the set.
A preset is plain data: copy a file, edit it and pass its path instead of a name.

Command line: `python -m adatad.presets` prints one line per preset (name, dataset, the paper's average mAP);
`python -m adatad.presets NAME [KEY=VALUE ...]` prints the preset after the overrides.

Schema (every file has exactly these keys; `null` means "not used by this preset"):

- `name` (str): the preset name (the file stem).
- `description` (str): one line for people: setting, backbone, dataset, frames, image size.
- `dataset` (str): `activitynet-1.3`, `thumos-14`, `epic-kitchens-100-noun`, `epic-kitchens-100-verb`, `ego4d-mq`,
  `multi-thumos`, `charades`, `synthetic` or `synthetic-activitynet` (the synthetic data of
  `adatad.synthetic.DATASET_GENERATORS`, written into `data.root` on first use); any other name is a custom dataset
  (`paper` and `opentad_config` null), as `adatad-suggest-preset` writes (docs/custom-dataset.md).
- `opentad_config` (str or null): path of the matching config inside OpenTAD (`sming256/OpenTAD`).
- `paper` (dict or null): the seed README's numbers, `{"average_mAP": x, "mAP": {"0.5": x, ...}}` (percent; only
  the tIoUs the table shows; Charades and the ActivityNet 200-class head, which the seed README leaves out: OpenTAD's
  `configs/adatad/README.md`). null for the baselines and the synthetic presets.
- `backbone_checkpoint` (str or null): file name of the pretrained VideoMAE checkpoint the user must supply
  (OpenTAD's `pretrained/` name; convert it with `conversion_scripts/`). null: random initialisation.
- `model` (dict): keyword arguments of `AdaTADConfig` exactly as that class names them (plus `num_labels`):
  `backbone_config` (VideoMAE sizes: `hidden_size`, `num_hidden_layers`, `num_attention_heads`,
  `intermediate_size`, `patch_size`, `image_size` (position-embedding size, 224), `num_frames` (frames per
  chunk, 16), `tubelet_size`), `tuning_mode`, `adapter_layer_indices`, `adapter_mlp_ratio`,
  `backbone_drop_path_rate`, `num_frames` (all chunks), `image_size`, `feature_length`, `projection_*`,
  `max_seq_len`, `fpn_strides`, `fpn_regression_ranges`, `head_*`, `num_labels`, `loss_*`.
  Any other `AdaTADConfig` field may be added.
- `data` (dict), where to find the videos and how to cut them into samples. Sampling keys carry the names of
  `AdaTADVideoProcessor`'s arguments:
    - `annotation_format`: `"database_json"`, the ActivityNet/OpenTAD `{"database": ...}` JSON every preset uses
      (`adatad.annotations.load_database_json`; other formats convert to it with `adatad.annotations.to_database_json`).
    - `root`: folder the relative paths below start from (OpenTAD's `data/` layout by default).
    - `annotation_file`, `class_map_file`, `video_dir`: paths relative to `root` (absolute paths are kept).
    - `video_prefix`, `video_extension`: video file = `video_dir/prefix + video_id + extension`.
    - `blocked_videos_file`: list of videos to drop from every split (OpenTAD's `block_list`), or null.
    - `ignore_labels`: labels whose segments are skipped when reading annotations (THUMOS "Ambiguous").
    - `train_subset`, `test_subset`: annotation `subset` values of the training and evaluation videos
      (OpenTAD's third split, "val", only feeds a validation loss that no AdaTAD config computes).
    - `conversion_mode`: how seconds become frames: `"frame_count"` (`frame / duration`), `"fixed_fps"`
      (`fps` below) or `"resize"` (ActivityNet: the whole video is resized to `resize_length` features).
    - `fps`: frame rate for `"fixed_fps"`, else null. `offset_frames`: frames before the first feature (0).
    - `train_sampling_method` (`"random_trunc"` or `"resize"`), `sampling_method` (evaluation:
      `"sliding_window"` or `"resize"`).
    - `window_size` (features per window) or `resize_length` (features per resized video); the other is null.
    - `scale_factor`: frames per feature step; `snippet_stride`: video frames between features (null in resize
      mode). Frames are read every `snippet_stride // scale_factor` frames.
    - `trunc_thresh`: a truncated training segment is kept when this fraction of it stays inside the window.
    - `crop_ratio`: length range of the random crop of a video shorter than the window.
    - `window_overlap`: overlap of evaluation windows. (OpenTAD's `ioa_thresh` has no field: it only filters
      ground truth in non-test sliding windows, and every AdaTAD config trains on truncated or resized videos and
      evaluates its windows in test mode, where OpenTAD ignores it.)
    - `filter_gt`: drop tiny training segments as OpenTAD's dataset classes do (ActivityNet, EPIC).
    - `class_agnostic`: train with every label set to 0 (ActivityNet; classes come from an external
      classifier at evaluation).
    - `num_workers`: data-loader worker processes.
    - Optional (filled in with their defaults when absent): `on_video_error` (`"raise"` or `"skip"`: a training
      or evaluation video that cannot be decoded stops the run, or is skipped and logged) and `missing_videos`
      (`"raise"` or `"skip"`: an annotated video without a file stops the run, or is dropped and listed).
- `processor` (dict): spatial keyword arguments of `AdaTADVideoProcessor`: `size` (evaluation short side),
  `crop_size`, `train_size` (training short side), `do_random_resized_crop`, `random_resized_crop_area`,
  `random_resized_crop_aspect_ratio`, `do_flip`, `flip_ratio`, `augmentation` (`"imgaug_default"`: OpenTAD's
  `ImgAug("default")`, every AdaTAD training pipeline; null: none, the frozen-backbone baselines), `do_color_jitter`.
  `processor_kwargs(preset)` adds the sampling keys of `data` and the `post_processing` section.
- `post_processing` (dict): the `adatad.post_processing.PostProcessingSettings` fields that `AdaTADVideoProcessor`
  stores, under the same names: `pre_nms_thresh`, `pre_nms_topk`, `nms_sigma`, `min_score`, `max_segments`,
  `multiclass`, `voting_thresh`.
- `training` (dict):
    - `global_batch_size`: videos per optimizer step over all processes (OpenTAD's `batch_size` is global);
      `reference_num_gpus`: GPUs of the paper run; `gradient_accumulation_steps`.
    - `detector_lr`, `detector_weight_decay`; `adapter_lr`, `adapter_weight_decay` (null without adapters);
      `backbone_lr`, `backbone_weight_decay` (0 unless the backbone is fine-tuned).
    - `max_epoch` (length of the cosine schedule), `end_epoch` (where training stops; OpenTAD stops early on
      purpose), `warmup_epochs` (linear warm-up from `warmup_start_lr`), `eta_min` (cosine floor).
    - `ema_decay` (exponential moving average of the weights used for evaluation; null: none),
      `clip_grad_norm` (null: no clipping), `mixed_precision` (`"no"`, `"fp16"`, `"bf16"`),
      `ddp_fp16_compress` (fp16 gradient all-reduce), `ddp_static_graph`, `gradient_checkpointing`.
    - `checkpoint_interval` (epochs), `val_start_epoch` and `val_interval` (evaluate after epoch `e`, counted
      from 0, when `e >= val_start_epoch` and `(e + 1) % val_interval == 0`), `logging_steps`, `seed`.
- `evaluation` (dict): `tiou_thresholds`, `subset` (ground-truth subset, exact match), `blocked_videos_file`
  (relative to `data.root`, or null), `external_classifier_file` / `external_classifier_kind` (`"cuhk"`:
  score = proposal x class score; `"standard"`: square root of that product) / `external_classifier_top_k`
  (ActivityNet; null elsewhere), `recall_top_k` (Ego4D-MQ's top-k recall, else null).

Overrides: `apply_overrides(preset, ["training.detector_lr=2e-4", "model.adapter_layer_indices=[0,1]"])`. Keys are
dotted paths into the preset; values are parsed as JSON (`null`, `true`, numbers, lists, objects) and fall back to
a plain string (`data.root=/datasets`). Unknown keys are rejected with the closest known keys.
"""

import argparse
import copy
import dataclasses
import difflib
import json
import os
import sys
from importlib import resources
from pathlib import Path

from ..atomic_files import write_text_atomically

# The shipped preset files, read through importlib.resources so that a wheel install finds them as a checkout does.
SHIPPED_PRESETS = resources.files(__name__)

NUMBER = (int, float)
NULL = type(None)

TOP_LEVEL_TYPES = {
    "name": str,
    "description": str,
    "dataset": str,
    "opentad_config": (str, NULL),
    "paper": (dict, NULL),
    "backbone_checkpoint": (str, NULL),
    "model": dict,
    "data": dict,
    "processor": dict,
    "post_processing": dict,
    "training": dict,
    "evaluation": dict,
}
DATA_TYPES = {
    "annotation_format": str,
    "root": str,
    "annotation_file": str,
    "class_map_file": (str, NULL),
    "video_dir": str,
    "video_prefix": str,
    "video_extension": str,
    "blocked_videos_file": (str, NULL),
    "ignore_labels": list,
    "train_subset": str,
    "test_subset": str,
    "conversion_mode": str,
    "fps": (*NUMBER, NULL),
    "offset_frames": int,
    "train_sampling_method": str,
    "sampling_method": str,
    "window_size": (int, NULL),
    "resize_length": (int, NULL),
    "scale_factor": int,
    "snippet_stride": (int, NULL),
    "trunc_thresh": (*NUMBER, NULL),
    "crop_ratio": (list, NULL),
    "window_overlap": (*NUMBER, NULL),
    "filter_gt": bool,
    "class_agnostic": bool,
    "num_workers": int,
    "on_video_error": str,
    "missing_videos": str,
}
PROCESSOR_TYPES = {
    "size": dict,
    "crop_size": dict,
    "train_size": dict,
    "do_random_resized_crop": bool,
    "random_resized_crop_area": list,
    "random_resized_crop_aspect_ratio": list,
    "do_flip": bool,
    "flip_ratio": NUMBER,
    "augmentation": (str, NULL),
    "do_color_jitter": bool,
}
# The fields of `adatad.post_processing.PostProcessingSettings` that AdaTADVideoProcessor stores (the NMS method and
# its IoU / t1 / t2 thresholds stay at Gaussian soft-NMS, OpenTAD's choice for every AdaTAD config).
POST_PROCESSING_TYPES = {
    "pre_nms_thresh": NUMBER,
    "pre_nms_topk": int,
    "nms_sigma": NUMBER,
    "min_score": NUMBER,
    "max_segments": int,
    "multiclass": bool,
    "voting_thresh": NUMBER,
}
TRAINING_TYPES = {
    "global_batch_size": int,
    "reference_num_gpus": int,
    "gradient_accumulation_steps": int,
    "detector_lr": NUMBER,
    "detector_weight_decay": NUMBER,
    "adapter_lr": (*NUMBER, NULL),
    "adapter_weight_decay": (*NUMBER, NULL),
    "backbone_lr": NUMBER,
    "backbone_weight_decay": NUMBER,
    "max_epoch": int,
    "end_epoch": int,
    "warmup_epochs": NUMBER,
    "warmup_start_lr": NUMBER,
    "eta_min": NUMBER,
    "ema_decay": (*NUMBER, NULL),
    "clip_grad_norm": (*NUMBER, NULL),
    "mixed_precision": str,
    "ddp_fp16_compress": bool,
    "ddp_static_graph": bool,
    "gradient_checkpointing": bool,
    "checkpoint_interval": int,
    "val_start_epoch": int,
    "val_interval": int,
    "logging_steps": int,
    "seed": int,
}
EVALUATION_TYPES = {
    "tiou_thresholds": list,
    "subset": str,
    "blocked_videos_file": (str, NULL),
    "external_classifier_file": (str, NULL),
    "external_classifier_kind": (str, NULL),
    "external_classifier_top_k": (int, NULL),
    "recall_top_k": (list, NULL),
}
SECTION_TYPES = {
    "data": DATA_TYPES,
    "processor": PROCESSOR_TYPES,
    "post_processing": POST_PROCESSING_TYPES,
    "training": TRAINING_TYPES,
    "evaluation": EVALUATION_TYPES,
}
# Keys a preset file may leave out, with the value `load_preset` fills in.
OPTIONAL_KEYS = {"data": {"on_video_error": "raise", "missing_videos": "raise"}}
ERROR_POLICIES = ("raise", "skip")

# Allowed ranges of numeric fields (null values are not checked): (lowest, lowest allowed?, highest, highest allowed?).
RANGES = {
    "training.global_batch_size": (1, True, None, None),
    "training.reference_num_gpus": (0, True, None, None),
    "training.gradient_accumulation_steps": (1, True, None, None),
    "training.detector_lr": (0, False, None, None),
    "training.detector_weight_decay": (0, True, None, None),
    "training.adapter_lr": (0, True, None, None),
    "training.adapter_weight_decay": (0, True, None, None),
    "training.backbone_lr": (0, True, None, None),
    "training.backbone_weight_decay": (0, True, None, None),
    "training.max_epoch": (1, True, None, None),
    "training.warmup_epochs": (0, True, None, None),
    "training.warmup_start_lr": (0, True, None, None),
    "training.eta_min": (0, True, None, None),
    "training.ema_decay": (0, True, 1, False),
    "training.clip_grad_norm": (0, False, None, None),
    "training.checkpoint_interval": (0, True, None, None),
    "training.val_start_epoch": (0, True, None, None),
    "training.val_interval": (1, True, None, None),
    "training.logging_steps": (1, True, None, None),
    "data.num_workers": (0, True, None, None),
    "data.offset_frames": (0, True, None, None),
}

# What reads each preset key (`module.function`; `model.*` keys are AdaTADConfig fields, `processor.*` keys and the
# sampling keys of `data` are AdaTADVideoProcessor arguments). tests/test_presets.py checks that every key of every
# preset is declared here and that each declared function's code reads it.
KEY_READERS = {
    "name": "tad_checkpoints.model_card",
    "description": "tad_checkpoints.model_card",
    "dataset": "tad_checkpoints.model_card",
    "opentad_config": "tad_checkpoints.model_card",
    "paper": "tad_checkpoints.model_card",
    "data.annotation_format": "presets._check_consistency",
    "data.root": "presets.resolve_data_paths",
    "data.annotation_file": "presets.resolve_data_paths",
    "data.class_map_file": "presets.resolve_data_paths",
    "data.video_dir": "presets.resolve_data_paths",
    "data.blocked_videos_file": "presets.resolve_data_paths",
    "data.video_prefix": "tad_data.load_video_rows",
    "data.video_extension": "tad_data.load_video_rows",
    "data.ignore_labels": "tad_data.load_video_rows",
    "data.class_agnostic": "tad_data.load_video_rows",
    "data.missing_videos": "tad_data.load_video_rows",
    "data.train_subset": "tad_data.build_datasets",
    "data.test_subset": "tad_data.build_evaluation_data",
    "data.conversion_mode": "tad_data.build_evaluation_data",
    "data.fps": "tad_data.build_evaluation_data",
    "data.offset_frames": "tad_data.build_evaluation_data",
    "data.on_video_error": "tad_data.transform_kwargs",
    "data.num_workers": "tad_data.data_workers",
    "training.global_batch_size": "tad_data.batch_sizes",
    "training.gradient_accumulation_steps": "run_tad.build_accelerator",
    "training.mixed_precision": "run_tad.build_accelerator",
    "training.ddp_fp16_compress": "run_tad.build_accelerator",
    "training.ddp_static_graph": "run_tad.build_accelerator",
    "training.reference_num_gpus": "tad_data.recipe_drift_warning",
    "training.seed": "run_tad.training_function",
    "training.gradient_checkpointing": "tad_model.build_model",
    "training.ema_decay": "tad_model.build_model",
    "training.detector_lr": "tad_model.build_optimizer",
    "training.detector_weight_decay": "tad_model.build_optimizer",
    "training.adapter_lr": "tad_model.build_optimizer",
    "training.adapter_weight_decay": "tad_model.build_optimizer",
    "training.backbone_lr": "tad_model.build_optimizer",
    "training.backbone_weight_decay": "tad_model.build_optimizer",
    "training.max_epoch": "tad_model.build_schedule",
    "training.warmup_epochs": "tad_model.build_schedule",
    "training.warmup_start_lr": "tad_model.build_schedule",
    "training.eta_min": "tad_model.build_schedule",
    "training.end_epoch": "run_tad.training_function",
    "training.clip_grad_norm": "run_tad.training_function",
    "training.checkpoint_interval": "run_tad.training_function",
    "training.val_start_epoch": "run_tad.training_function",
    "training.val_interval": "run_tad.training_function",
    "training.logging_steps": "run_tad.training_function",
    "evaluation.tiou_thresholds": "tad_evaluation.evaluate",
    "evaluation.subset": "tad_data.build_evaluation_data",
    "evaluation.blocked_videos_file": "presets.resolve_data_paths",
    "evaluation.external_classifier_file": "presets.resolve_data_paths",
    "evaluation.external_classifier_kind": "tad_data.build_evaluation_data",
    "evaluation.external_classifier_top_k": "tad_data.build_evaluation_data",
    "evaluation.recall_top_k": "tad_evaluation.evaluate",
    "data.filter_gt": "tad_data.filter_training_rows",
    "backbone_checkpoint": "run_tad.check_backbone_source",
}

DATASETS = (
    "activitynet-1.3",
    "thumos-14",
    "epic-kitchens-100-noun",
    "epic-kitchens-100-verb",
    "ego4d-mq",
    "multi-thumos",
    "charades",
    "synthetic",
    "synthetic-activitynet",
)
ANNOTATION_FORMATS = ("database_json",)
CONVERSION_MODES = ("frame_count", "fixed_fps", "resize")
TRAIN_SAMPLING_METHODS = ("random_trunc", "resize")
EVAL_SAMPLING_METHODS = ("sliding_window", "resize")
MIXED_PRECISION = ("no", "fp16", "bf16")
EXTERNAL_CLASSIFIER_KINDS = ("cuhk", "standard")

# Earlier preset files kept post-processing in `model.post_*` keys; a file that still does gets an error naming the
# key of the `post_processing` section that replaced each one.
RENAMED_MODEL_KEYS = {
    "post_pre_nms_thresh": "post_processing.pre_nms_thresh",
    "post_pre_nms_topk": "post_processing.pre_nms_topk",
    "post_nms_sigma": "post_processing.nms_sigma",
    "post_min_score": "post_processing.min_score",
    "post_max_segments": "post_processing.max_segments",
    "post_multiclass_nms": "post_processing.multiclass",
    "post_voting_thresh": "post_processing.voting_thresh",
}
# `data` keys that are AdaTADVideoProcessor arguments (the rest describe files and splits).
PROCESSOR_SAMPLING_KEYS = (
    "train_sampling_method",
    "sampling_method",
    "window_size",
    "resize_length",
    "scale_factor",
    "snippet_stride",
    "trunc_thresh",
    "crop_ratio",
    "window_overlap",
)


class PresetError(ValueError):
    """A preset that cannot be used: the message names the preset, the key and what to change."""


def list_presets() -> list[str]:
    """Names of the presets shipped in `adatad/presets/`, sorted."""
    return sorted(entry.name[: -len(".json")] for entry in SHIPPED_PRESETS.iterdir() if entry.name.endswith(".json"))


def _read_json(path) -> dict:
    try:
        preset = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).") from None
    if not isinstance(preset, dict):
        raise PresetError(f"{path}: a preset must be a JSON object, got {type(preset).__name__}.")
    return preset


def load_preset(name_or_path: str | os.PathLike, validate: bool = True) -> dict:
    """Loads a shipped preset by name (`adatad/presets/<name>.json`) or from a JSON file path.

    Args:
        name_or_path: a name from `list_presets()` or the path of a preset file (e.g. an edited copy).
        validate: check the schema and that `AdaTADConfig(**preset["model"])` constructs (see `validate_preset`).

    Returns:
        the preset as a plain dict.
    """
    text = str(name_or_path)
    path = Path(text)
    if not path.is_file():
        if text.endswith(".json") or os.sep in text:
            raise PresetError(f"preset file {text} does not exist.")
        path = SHIPPED_PRESETS / f"{text}.json"
        if not path.is_file():
            close = difflib.get_close_matches(text, list_presets(), n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise PresetError(
                f"unknown preset {text!r}.{hint} Run `python -m adatad.presets` to list all presets, or pass the "
                "path of a preset JSON file."
            )
    preset = _read_json(path)
    for section, defaults in OPTIONAL_KEYS.items():
        if isinstance(preset.get(section), dict):
            for key, value in defaults.items():
                preset[section].setdefault(key, value)
    if validate:
        validate_preset(preset, source=str(path))
    return preset


def _type_names(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is NULL else t.__name__ for t in dict.fromkeys(types))


def _is_instance(value, expected) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    # Python's bool is an int: `true` must not pass for a number, nor `1` for a bool.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _check_keys(mapping: dict, types: dict, where: str, source: str, optional=()):
    missing = [key for key in types if key not in mapping and key not in optional]
    unknown = [key for key in mapping if key not in types]
    if missing or unknown:
        problems = [f"is missing keys {missing}"] * bool(missing) + [f"has unknown keys {unknown}"] * bool(unknown)
        raise PresetError(f"{source}: `{where}` {' and '.join(problems)}.")
    for key, expected in types.items():
        if key in mapping and not _is_instance(mapping[key], expected):
            raise PresetError(
                f"{source}: `{where}.{key}` must be {_type_names(expected)}, got {json.dumps(mapping[key])}."
            )


def model_config_fields() -> set[str]:
    """Keys a preset's `model` section may hold: the fields `AdaTADConfig` declares, plus `num_labels`."""
    from ..configuration_adatad import AdaTADConfig

    own = {field.name for field in dataclasses.fields(AdaTADConfig)} & set(AdaTADConfig.__annotations__)
    return own | {"num_labels", "id2label", "label2id"}


def _check_one_of(value, allowed, key: str, source: str):
    if value not in allowed:
        raise PresetError(f"{source}: `{key}` must be one of {list(allowed)}, got {json.dumps(value)}.")


def _check_consistency(preset: dict, source: str):
    model, data, processor = preset["model"], preset["data"], preset["processor"]
    training, evaluation = preset["training"], preset["evaluation"]
    if preset["dataset"] not in DATASETS and (not preset["dataset"].strip() or preset["paper"] is not None
                                              or preset["opentad_config"] is not None):
        # Any name is a custom dataset (adatad-suggest-preset writes such presets); it has no paper or OpenTAD config.
        raise PresetError(
            f"{source}: `dataset` {json.dumps(preset['dataset'])} is not one of {list(DATASETS)}, so it is a custom "
            "dataset: give it a non-empty name and set `paper` and `opentad_config` to null."
        )
    _check_one_of(data["annotation_format"], ANNOTATION_FORMATS, "data.annotation_format", source)
    _check_one_of(data["conversion_mode"], CONVERSION_MODES, "data.conversion_mode", source)
    _check_one_of(data["train_sampling_method"], TRAIN_SAMPLING_METHODS, "data.train_sampling_method", source)
    _check_one_of(data["sampling_method"], EVAL_SAMPLING_METHODS, "data.sampling_method", source)
    _check_one_of(training["mixed_precision"], MIXED_PRECISION, "training.mixed_precision", source)
    for key in OPTIONAL_KEYS["data"]:
        if key in data:
            _check_one_of(data[key], ERROR_POLICIES, f"data.{key}", source)
    for key, (low, low_allowed, high, high_allowed) in RANGES.items():
        section, name = key.split(".")
        value = preset[section][name]
        if value is None:
            continue
        too_low = low is not None and (value < low or (value == low and not low_allowed))
        too_high = high is not None and (value > high or (value == high and not high_allowed))
        if too_low or too_high:
            bounds = []
            if low is not None:
                bounds.append(f"{'>=' if low_allowed else '>'} {low}")
            if high is not None:
                bounds.append(f"{'<=' if high_allowed else '<'} {high}")
            raise PresetError(f"{source}: `{key}` must be {' and '.join(bounds)}, got {json.dumps(value)}.")

    resize = data["conversion_mode"] == "resize"
    if resize != (data["sampling_method"] == "resize") or resize != (data["train_sampling_method"] == "resize"):
        raise PresetError(
            f"{source}: `data.conversion_mode`, `data.train_sampling_method` and `data.sampling_method` must all be "
            f"'resize' or none of them (got {data['conversion_mode']!r}, {data['train_sampling_method']!r}, "
            f"{data['sampling_method']!r})."
        )
    if resize:
        length_key, feature_length = "resize_length", data["resize_length"]
    else:
        length_key, feature_length = "window_size", data["window_size"]
        stride, scale = data["snippet_stride"], data["scale_factor"]
        if stride is None or stride % scale:
            raise PresetError(
                f"{source}: `data.snippet_stride` ({stride}) must be a multiple of `data.scale_factor` ({scale}): "
                "frames are read every snippet_stride // scale_factor frames."
            )
    if (data["conversion_mode"] == "fixed_fps") != (data["fps"] is not None):
        raise PresetError(f"{source}: `data.fps` must be set exactly when `data.conversion_mode` is 'fixed_fps'.")
    if feature_length is None:
        raise PresetError(f"{source}: `data.{length_key}` must be set for sampling method {data['sampling_method']!r}.")
    if model["feature_length"] != feature_length:
        raise PresetError(
            f"{source}: `model.feature_length` ({model['feature_length']}) must equal `data.{length_key}` "
            f"({feature_length})."
        )
    if model["num_frames"] != feature_length * data["scale_factor"]:
        raise PresetError(
            f"{source}: `model.num_frames` ({model['num_frames']}) must be `data.{length_key}` x `data.scale_factor` "
            f"({feature_length} x {data['scale_factor']} = {feature_length * data['scale_factor']})."
        )
    crop = processor["crop_size"]
    if crop.get("height") != model["image_size"] or crop.get("width") != model["image_size"]:
        raise PresetError(
            f"{source}: `processor.crop_size` ({crop}) must be {model['image_size']}x{model['image_size']} "
            "(`model.image_size`)."
        )
    _check_one_of(processor["augmentation"], ("imgaug_default", "randaugment", None), "processor.augmentation", source)

    tuning_mode = model.get("tuning_mode", "adapter")
    has_adapters = tuning_mode in ("adapter", "side")
    if has_adapters != (training["adapter_lr"] is not None):
        raise PresetError(
            f"{source}: `training.adapter_lr` must be set for tuning modes 'adapter' and 'side' and null otherwise "
            f"(tuning_mode {tuning_mode!r}, adapter_lr {training['adapter_lr']})."
        )
    if (tuning_mode == "full") != (training["backbone_lr"] > 0):
        raise PresetError(
            f"{source}: `training.backbone_lr` must be positive exactly when `model.tuning_mode` is 'full' "
            f"(tuning_mode {tuning_mode!r}, backbone_lr {training['backbone_lr']})."
        )
    if training["warmup_epochs"] >= training["max_epoch"]:
        raise PresetError(
            f"{source}: `training.warmup_epochs` ({training['warmup_epochs']}) must be smaller than "
            f"`training.max_epoch` ({training['max_epoch']}): the cosine decay follows the warm-up."
        )
    if not 0 < training["end_epoch"] <= training["max_epoch"]:
        raise PresetError(
            f"{source}: need 0 < `training.end_epoch` ({training['end_epoch']}) <= `training.max_epoch` "
            f"({training['max_epoch']})."
        )
    classifier = [evaluation[f"external_classifier_{part}"] for part in ("file", "kind", "top_k")]
    if any(value is None for value in classifier) and any(value is not None for value in classifier):
        raise PresetError(
            f"{source}: `evaluation.external_classifier_file`, `_kind` and `_top_k` must be all set or all null."
        )
    if classifier[1] is not None:
        _check_one_of(classifier[1], EXTERNAL_CLASSIFIER_KINDS, "evaluation.external_classifier_kind", source)
    thresholds = evaluation["tiou_thresholds"]
    if not thresholds or not all(_is_instance(t, NUMBER) and 0 < t <= 1 for t in thresholds):
        raise PresetError(f"{source}: `evaluation.tiou_thresholds` must be numbers in (0, 1], got {thresholds}.")
    paper = preset["paper"]
    if paper is not None and (set(paper) != {"average_mAP", "mAP"} or not isinstance(paper["mAP"], dict)):
        raise PresetError(f"{source}: `paper` must be null or {{'average_mAP': x, 'mAP': {{tiou: x}}}}, got {paper}.")


def validate_preset(preset: dict, source: str = "preset", check_model_config: bool = True):
    """Checks a preset: exact key sets and value types of every section, consistency between sections
    (feature length, frame count and image size of model, data and processor; learning rates vs tuning mode;
    epochs), and, with `check_model_config`, that `AdaTADConfig(**preset["model"])` and
    `PostProcessingSettings(**preset["post_processing"])` construct.

    Raises:
        PresetError: naming `source`, the key and the expected value.
    """
    renamed = [key for key in RENAMED_MODEL_KEYS if key in preset.get("model", {})]
    if renamed:
        moves = ", ".join(f"`model.{key}` -> `{RENAMED_MODEL_KEYS[key]}`" for key in renamed)
        raise PresetError(f"{source}: post-processing settings moved from `model` to the `post_processing` section, "
                          f"under the names AdaTADVideoProcessor uses: {moves}. Move them there.")
    _check_keys(preset, TOP_LEVEL_TYPES, "preset", source)
    for section, types in SECTION_TYPES.items():
        _check_keys(preset[section], types, section, source, optional=OPTIONAL_KEYS.get(section, {}))
    unknown_model_keys = sorted(set(preset["model"]) - model_config_fields()) if check_model_config else []
    if unknown_model_keys:
        raise PresetError(f"{source}: `model` has keys AdaTADConfig does not know: {unknown_model_keys}.")
    _check_consistency(preset, source)
    if check_model_config:
        try:
            build_model_config(preset)
        except (TypeError, ValueError) as error:
            raise PresetError(f"{source}: `model` does not make a valid AdaTADConfig: {error}") from error
        from ..post_processing import PostProcessingSettings

        try:
            PostProcessingSettings(**preset["post_processing"])
        except ValueError as error:
            raise PresetError(f"{source}: `post_processing`: {error}") from error


def build_model_config(preset: dict):
    """`AdaTADConfig(**preset["model"])`."""
    from ..configuration_adatad import AdaTADConfig

    return AdaTADConfig(**preset["model"])


def processor_kwargs(preset: dict) -> dict:
    """Keyword arguments of `AdaTADVideoProcessor` for this preset: the `processor` section, the sampling keys
    of `data` (those that are set) and the `post_processing` section."""
    kwargs = copy.deepcopy(preset["processor"])
    kwargs.update({key: preset["data"][key] for key in PROCESSOR_SAMPLING_KEYS if preset["data"][key] is not None})
    kwargs.update(preset["post_processing"])
    return kwargs


def resolve_data_paths(preset: dict) -> dict:
    """Absolute paths of the preset's files: `annotation_file`, `class_map_file`, `video_dir`,
    `blocked_videos_file` (from `data`), `eval_blocked_videos_file` and `external_classifier_file` (from
    `evaluation`); relative entries start at `data.root`, null entries stay None."""
    root = Path(preset["data"]["root"]).expanduser()
    data_files = ("annotation_file", "class_map_file", "video_dir", "blocked_videos_file")
    entries = {key: preset["data"][key] for key in data_files}
    entries["eval_blocked_videos_file"] = preset["evaluation"]["blocked_videos_file"]
    entries["external_classifier_file"] = preset["evaluation"]["external_classifier_file"]
    return {
        key: None if value is None else (root / Path(value).expanduser()).resolve() for key, value in entries.items()
    }


def _dotted_keys(mapping: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, f"{prefix}{key}."))
    return keys


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set_dotted(preset: dict, key: str, value, source: str):
    parts = key.split(".")
    node = preset
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        known = isinstance(node, dict) and part in node
        # AdaTADConfig fields a preset leaves at their default may still be set.
        new_model_field = depth == 1 and parts[0] == "model" and last and part in model_config_fields()
        if not known and not new_model_field:
            candidates = _dotted_keys(preset) + [f"model.{field}" for field in model_config_fields()]
            close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
            hint = f" Close matches: {', '.join(close)}." if close else " Keys look like training.detector_lr."
            raise PresetError(f"{source}: unknown override key {key!r}.{hint}")
        if last:
            node[part] = value
        else:
            node = node[part]


def apply_overrides(preset: dict, overrides: list[str], source: str | None = None) -> dict:
    """Returns a copy of `preset` with `KEY=VALUE` overrides applied, then checks it with `validate_preset`.

    Args:
        preset: a loaded preset (not modified).
        overrides: strings like `"training.detector_lr=2e-4"`, `"model.adapter_layer_indices=[0,1]"`,
            `"processor.size={\\"shortest_edge\\": 192}"` or `"data.root=/datasets"`. VALUE is parsed as JSON,
            or kept as a string when it is not JSON.
        source: name used in error messages (defaults to the preset's name).

    Raises:
        PresetError: for a malformed override, an unknown key (the message lists the closest known keys) or a
            result that fails validation.
    """
    source = source or f"preset {preset.get('name', '?')}"
    result = copy.deepcopy(preset)
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise PresetError(
                f"{source}: override {override!r} must look like KEY=VALUE, e.g. training.detector_lr=2e-4."
            )
        _set_dotted(result, key, _parse_value(text.strip()), source)
    validate_preset(result, source=f"{source} with overrides {overrides}")
    return result


def dump_preset(preset: dict) -> str:
    """The JSON text of a preset as the shipped files are written: two-space indent; lists of plain values or of
    pairs, and dicts of plain values that fit in 100 characters, on one line."""
    plain = (str, int, float, bool, NULL)

    def fits_one_line(value, text: str) -> bool:
        if isinstance(value, dict):
            return all(isinstance(item, plain) for item in value.values()) and len(text) <= 100
        if isinstance(value, list):
            return all(
                isinstance(item, plain) or (isinstance(item, list) and fits_one_line(item, "")) for item in value
            )
        return True

    def render(value, indent: int) -> str:
        text = json.dumps(value, separators=(", ", ": "))
        if not value or fits_one_line(value, text):
            return text
        pad = "  " * (indent + 1)
        if isinstance(value, dict):
            items = [f"{pad}{json.dumps(key)}: {render(item, indent + 1)}" for key, item in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
        return "[\n" + ",\n".join(pad + render(item, indent + 1) for item in value) + "\n" + "  " * indent + "]"

    return render(preset, 0) + "\n"


def save_preset(preset: dict, path: str | os.PathLike):
    """Writes `preset` to `path` in the format of the shipped files (e.g. the resolved preset of a run), under a
    temporary name first so that an interrupted write never leaves half a file."""
    write_text_atomically(path, dump_preset(preset))


def _dataset_order(preset: dict) -> int:
    return DATASETS.index(preset["dataset"]) if preset.get("dataset") in DATASETS else len(DATASETS)


def format_preset_table() -> str:
    """One line per shipped preset: name, dataset and the paper's average mAP it targets ("-" for baselines and
    synthetic presets), ordered by dataset then name."""
    shipped = [_read_json(SHIPPED_PRESETS / f"{name}.json") for name in list_presets()]
    shipped.sort(key=lambda preset: (_dataset_order(preset), preset["name"]))
    width = max(len(preset["name"]) for preset in shipped)
    lines = [f"{'preset':<{width}}  {'dataset':<22}  paper avg mAP"]
    for preset in shipped:
        paper = preset["paper"]
        target = f"{paper['average_mAP']:.2f}" if paper else "-"
        lines.append(f"{preset['name']:<{width}}  {preset['dataset']:<22}  {target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adatad.presets",
        description="List the training presets, or print one preset after KEY=VALUE overrides.",
    )
    parser.add_argument("preset", nargs="?", help="preset name or JSON file; omit to list every preset")
    parser.add_argument("overrides", nargs="*", help="overrides such as training.detector_lr=2e-4")
    args = parser.parse_args(argv)
    if args.preset is None:
        print(format_preset_table())
        return 0
    try:
        preset = apply_overrides(load_preset(args.preset), args.overrides)
    except PresetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(dump_preset(preset), end="")
    return 0
