"""Convert an OpenTAD AdaTAD checkpoint and its config file into an AdaTAD model + video processor folder.

Usage:

    python conversion_scripts/convert_opentad_to_adatad.py \
        --checkpoint exps/thumos/adatad/e2e_actionformer_videomae_s_768x1_160_adapter/gpu2_id0/checkpoint/best.pth \
        --config configs/adatad/thumos/e2e_thumos_videomae_s_768x1_160_adapter.py \
        --output adatad-thumos-videomae-s --use-ema

The folder then loads with `AutoModel.from_pretrained(folder, trust_remote_code=True)` and
`AutoVideoProcessor.from_pretrained(folder, trust_remote_code=True)`.

- The config is OpenTAD's Python file (with its `_base_` files beside it, as in the OpenTAD repository), read
  without mmengine (`adatad.opentad_config`). Its `model` block becomes the `AdaTADConfig`
  (`adatad.opentad.config_from_opentad`); its test data pipeline (frame sampling, window or resize length, scale
  factor, snippet stride, frame size), training pipeline and `post_processing` settings become the
  `AdaTADVideoProcessor` settings.
- The checkpoint is read with `torch.load(weights_only=True)` only. OpenTAD saves the trained weights under
  `state_dict` and their exponential moving average under `state_dict_ema`, with DDP's `module.` prefix; OpenTAD
  evaluates with the EMA weights, so `--use-ema` reproduces its test results.
- Every checkpoint tensor must land in the model and every model tensor must come from the checkpoint, unless
  `--allow-missing` / `--allow-unused` patterns say otherwise; the folder is reloaded and compared before it is
  written to `--output`.
- The folder gets a model card (README.md, `adatad.model_card`): `--dataset` names the data, `--eval-results` adds
  the mAP that `adatad-eval --output FILE` measured with the converted folder; `--push_to_hub REPO` uploads the folder.
"""

import argparse
from dataclasses import asdict
from pathlib import Path

from adatad.opentad import (
    OPENTAD_BACKBONE_PREFIX,
    config_from_opentad,
    convert_opentad_backbone_keys,
    convert_opentad_detector_keys,
)
from adatad.model_card import build_model_card, push_folder_to_hub, read_eval_results
from adatad.opentad_config import OpenTADConfigError, load_opentad_config
from adatad.modeling_adatad import AdaTADForTemporalDetection
from adatad.processing_adatad import AdaTADVideoProcessor

# The converters share the checkpoint reading, key checks and save-and-verify step.
from convert_videomae_to_adatad import (
    EXIT_STATUS_HELP,
    ConversionError,
    ConversionReport,
    find_state_dict,
    exit_with_error,
    format_keys,
    load_checkpoint_file,
    load_converted_weights,
    matches_any,
    OVERWRITE_HELP,
    check_output_folder,
    save_model_folder,
    strip_prefix,
)

# Pipeline steps that only move data around (decoding, tensor conversion, collection): nothing to configure.
PASSIVE_PIPELINE_STEPS = {
    "PrepareVideoInfo",
    "mmaction.DecordDecode",
    "mmaction.FormatShape",
    "ConvertToTensor",
    "Collect",
}
# OpenTAD `post_processing` (and its `nms` dict) -> AdaTADVideoProcessor post-processing settings.
POST_PROCESSING_FIELDS = {"pre_nms_thresh": "pre_nms_thresh", "pre_nms_topk": "pre_nms_topk"}
NMS_FIELDS = {
    "sigma": "nms_sigma",
    "min_score": "min_score",
    "max_seg_num": "max_segments",
    "multiclass": "multiclass",
    "voting_thresh": "voting_thresh",
}
# `nms` keys without an AdaTAD setting: OpenTAD always runs Gaussian soft-NMS (method 2), for which the IoU threshold
# and the linear-decay thresholds t1/t2 do nothing.
NMS_IGNORED = {"use_soft_nms", "iou_threshold", "method", "t1", "t2"}
POST_PROCESSING_IGNORED = {"nms", "external_cls", "save_dict"}
# Keys of OpenTAD's mmaction Recognizer3D that are not the ViT and not used for detection.
UNUSED_WRAPPER_KEYS = ["backbone.model.cls_head.*"]


def _steps_by_type(pipeline) -> dict:
    steps = {}
    for step in pipeline or []:
        kind = step.get("type")
        if kind in PASSIVE_PIPELINE_STEPS:
            continue
        if kind == "mmaction.Resize" and kind in steps:
            kind = "mmaction.Resize#2"  # training: short-side resize, then the resize to the crop size
        steps[kind] = step
    return steps


def _short_side(step: dict, where: str) -> int:
    scale = tuple(step.get("scale", ()))
    if len(scale) != 2 or scale[0] != -1 or step.get("keep_ratio", True) is False:
        raise ConversionError(f"{where}: `{step}` is not a short-side resize `scale=(-1, size)`; not supported.")
    return int(scale[1])


def processor_settings_from_opentad(cfg: dict, config_file) -> tuple[dict, list[str]]:
    """`AdaTADVideoProcessor` kwargs from an OpenTAD config's `dataset.test` / `dataset.train` and
    `post_processing`, plus notes on settings the processor does not carry (printed by the converter)."""
    notes = []
    datasets = cfg.get("dataset") or {}
    test = datasets.get("test") or datasets.get("val")
    if not test:
        raise ConversionError(
            f"{config_file}: no `dataset.test` (or `dataset.val`) section, so the processor settings (sampling, "
            "frame size) are unknown. Convert with the full OpenTAD config, as used for testing."
        )
    settings = {}
    where = f"{config_file}: dataset.test.pipeline"
    steps = _steps_by_type(test.get("pipeline"))
    unsupported = sorted(set(steps) - {"mmaction.DecordInit", "LoadFrames", "mmaction.Resize", "mmaction.CenterCrop"})
    if unsupported:
        raise ConversionError(f"{where}: steps {unsupported} are not supported by AdaTADVideoProcessor.")
    load = steps.get("LoadFrames")
    if load is None:
        raise ConversionError(f"{where}: no LoadFrames step.")
    method = load.get("method")
    if method not in ("sliding_window", "resize"):
        raise ConversionError(
            f"{where}: LoadFrames method {method!r}; the processor supports sliding_window and resize."
        )
    settings["sampling_method"] = method
    settings["scale_factor"] = int(load.get("scale_factor", 1))
    if method == "resize":
        settings["resize_length"] = int(test["resize_length"])
    else:
        settings["window_size"] = int(test["window_size"])
        settings["window_overlap"] = float(test.get("window_overlap_ratio", 0.0))
        settings["snippet_stride"] = int(test.get("feature_stride", 1)) * int(test.get("sample_stride", 1))
    if "fps" in test:
        notes.append(
            f"the test dataset fixes fps={test['fps']} (OpenTAD converts seconds with it); the processor uses each "
            "video's own frame rate."
        )
    if "mmaction.DecordInit" in steps:
        settings["decode_num_threads"] = int(steps["mmaction.DecordInit"].get("num_threads", 4))
    if "mmaction.Resize" not in steps or "mmaction.CenterCrop" not in steps:
        raise ConversionError(f"{where}: expected a short-side Resize and a CenterCrop (AdaTAD's test pipeline).")
    settings["size"] = {"shortest_edge": _short_side(steps["mmaction.Resize"], where)}
    crop = steps["mmaction.CenterCrop"].get("crop_size")
    crop_height, crop_width = (crop, crop) if isinstance(crop, int) else tuple(crop)[::-1]
    settings["crop_size"] = {"height": int(crop_height), "width": int(crop_width)}

    train = datasets.get("train")
    if train:
        settings.update(_train_settings(train, settings, f"{config_file}: dataset.train.pipeline", notes))

    post = cfg.get("post_processing") or {}
    nms = post.get("nms") or {}
    for source, fields in ((post, POST_PROCESSING_FIELDS), (nms, NMS_FIELDS)):
        for name, processor_field in fields.items():
            if name in source:
                settings[processor_field] = source[name]
    unknown = sorted(set(post) - set(POST_PROCESSING_FIELDS) - POST_PROCESSING_IGNORED) + [
        f"nms.{name}" for name in sorted(set(nms) - set(NMS_FIELDS) - NMS_IGNORED)
    ]
    if unknown:
        raise ConversionError(f"{config_file}: post_processing settings {unknown} are not supported.")
    if not nms.get("use_soft_nms", True) or nms.get("method", 2) != 2:
        raise ConversionError(
            f"{config_file}: post_processing.nms {nms} asks for another NMS than OpenTAD's Gaussian soft-NMS "
            "(use_soft_nms=True, method=2), the only one AdaTAD implements."
        )
    if post.get("external_cls"):
        classifier = post["external_cls"]
        notes.append(
            f"post_processing.external_cls {classifier.get('type')} "
            f"({classifier.get('path')}, top-{classifier.get('topk')}) "
            "is not stored: pass the classifier JSON to post_process_temporal_detection (`video_classifier=`)."
        )
    return settings, notes


def _train_settings(train: dict, test_settings: dict, where: str, notes: list) -> dict:
    steps = _steps_by_type(train.get("pipeline"))
    settings = {}
    load = steps.get("LoadFrames", {})
    if load.get("method") in ("random_trunc", "resize"):
        settings["train_sampling_method"] = load["method"]
    if load.get("method") == "random_trunc":
        settings["trunc_thresh"] = float(load.get("trunc_thresh", 0.5))
        crop_ratio = load.get("crop_ratio")
        settings["crop_ratio"] = list(crop_ratio) if crop_ratio is not None else None
        if load.get("trunc_len") != test_settings.get("window_size"):
            notes.append(
                f"training window {load.get('trunc_len')} differs from the test window; the processor uses one."
            )
    if load.get("scale_factor", 1) != test_settings["scale_factor"]:
        notes.append("training and test scale factors differ; the processor uses the test one.")
    if "mmaction.Resize" in steps:
        settings["train_size"] = {"shortest_edge": _short_side(steps["mmaction.Resize"], where)}
    settings["do_random_resized_crop"] = "mmaction.RandomResizedCrop" in steps
    if "mmaction.RandomResizedCrop" in steps:
        crop = steps["mmaction.RandomResizedCrop"]
        settings["random_resized_crop_area"] = list(crop.get("area_range", (0.08, 1.0)))
        settings["random_resized_crop_aspect_ratio"] = list(crop.get("aspect_ratio_range", (3 / 4, 4 / 3)))
    final_resize = steps.get("mmaction.Resize#2")
    if final_resize is not None and tuple(final_resize.get("scale", ())) != (
        test_settings["crop_size"]["width"],
        test_settings["crop_size"]["height"],
    ):
        notes.append(f"training frames are resized to {final_resize.get('scale')}, test frames cropped to "
                     f"{test_settings['crop_size']}; the processor uses the test size for both.")
    settings["do_flip"] = "mmaction.Flip" in steps
    if "mmaction.Flip" in steps:
        settings["flip_ratio"] = float(steps["mmaction.Flip"].get("flip_ratio", 0.5))
    imgaug = steps.get("mmaction.ImgAug")
    settings["augmentation"] = (
        "imgaug_default" if imgaug is not None and imgaug.get("transforms") == "default" else None
    )
    if imgaug is not None and settings["augmentation"] is None:
        notes.append(
            f"mmaction.ImgAug(transforms={imgaug.get('transforms')!r}) has no counterpart: training runs without it."
        )
    settings["do_color_jitter"] = "mmaction.ColorJitter" in steps
    return settings


def read_class_names(class_map: Path | None, num_labels: int, notes: list) -> list[str] | None:
    """Class names from OpenTAD's class map (one name per line, index = line number), when it matches."""
    if class_map is None or not class_map.is_file():
        notes.append("no class map found: labels are reported as class ids (pass --class-map FILE for names).")
        return None
    names = [line.strip() for line in class_map.read_text().splitlines() if line.strip()]
    if len(names) != num_labels:
        notes.append(f"class map {class_map} lists {len(names)} names for {num_labels} classes: not used.")
        return None
    return names


def convert_opentad_state_dict(state_dict: dict, allow_unused=()) -> tuple[dict, list[str]]:
    """OpenTAD detector state dict (without `module.`) -> AdaTAD names, and the source keys not used."""
    skipped = [key for key in state_dict if matches_any(key, [*UNUSED_WRAPPER_KEYS, *allow_unused])]
    kept = {key: tensor for key, tensor in state_dict.items() if key not in skipped}
    # Both key mappers ignore `backbone.*` keys outside the ViT; none may pass unnoticed.
    stray = [key for key in kept if key.startswith("backbone.") and not key.startswith(OPENTAD_BACKBONE_PREFIX)]
    if stray:
        raise ConversionError(
            f"backbone keys outside the ViT that no rule knows:\n{format_keys(stray)}\n"
            "Name them with --allow-unused PATTERN if they can be skipped."
        )
    try:
        backbone, dropped = convert_opentad_backbone_keys(kept)
        detector = convert_opentad_detector_keys(kept)
    except KeyError as error:
        raise ConversionError(f"{error.args[0]} (name keys to skip with --allow-unused PATTERN)") from error
    return {**backbone, **detector}, skipped + dropped


def adatad_from_opentad_config(config_file: str | Path, class_map: str | Path | None = None):
    """The `AdaTADConfig` and `AdaTADVideoProcessor` an OpenTAD config describes (no weights involved).

    Args:
        config_file: the OpenTAD Python config (its `_base_` files must be reachable).
        class_map: class-name file (one per line); defaults to the config's `class_map` if that path exists.

    Returns:
        `(config, processor, notes)`; `notes` lists OpenTAD settings the folder does not carry.
    """
    config_file = Path(config_file)
    try:
        cfg = load_opentad_config(config_file)
    except OpenTADConfigError as error:
        raise ConversionError(str(error)) from error
    if "model" not in cfg:
        raise ConversionError(f"{config_file}: no `model` section.")
    processor_settings, notes = processor_settings_from_opentad(cfg, config_file)

    crop = processor_settings["crop_size"]
    if crop["height"] != crop["width"]:
        raise ConversionError(f"{config_file}: non-square test crop {crop}; AdaTAD models take square frames.")
    try:
        config = config_from_opentad(cfg["model"], image_size=crop["height"])
    except ValueError as error:
        raise ConversionError(f"{config_file}: {error}") from error
    resize = processor_settings["sampling_method"] == "resize"
    feature_length = processor_settings["resize_length" if resize else "window_size"]
    num_frames = feature_length * processor_settings["scale_factor"]
    if (config.feature_length, config.num_frames) != (feature_length, num_frames):
        raise ConversionError(
            f"{config_file}: the model expects {config.num_frames} frames -> {config.feature_length} features, but "
            f"the test pipeline gives {num_frames} frames -> {feature_length}."
        )

    if class_map is None and cfg.get("class_map"):
        class_map = cfg["class_map"]
    class_names = read_class_names(Path(class_map) if class_map else None, config.num_labels, notes)
    if class_names is not None:
        config.id2label = dict(enumerate(class_names))
        config.label2id = {name: index for index, name in enumerate(class_names)}
        processor_settings["class_names"] = class_names
    try:
        processor = AdaTADVideoProcessor(**processor_settings)
    except ValueError as error:
        raise ConversionError(f"{config_file}: the test pipeline gives invalid processor settings: {error}") from error
    return config, processor, notes


def convert_opentad_checkpoint(
    checkpoint: str | Path,
    config_file: str | Path,
    output_dir: str | Path,
    use_ema: bool = False,
    allow_missing=(),
    allow_unused=(),
    class_map: str | Path | None = None,
    verify: bool = True,
    dataset: str | None = None,
    eval_results: dict | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
) -> tuple[AdaTADForTemporalDetection, AdaTADVideoProcessor, ConversionReport]:
    """Convert an OpenTAD AdaTAD checkpoint + config into an AdaTAD model and processor folder.

    Args:
        checkpoint: OpenTAD `.pth` (`state_dict` / `state_dict_ema`, `module.` prefixes) or a bare state dict.
        config_file: the OpenTAD Python config used to train it (its `_base_` files must be reachable).
        output_dir: destination folder.
        use_ema: convert `state_dict_ema` (what OpenTAD evaluates with) instead of `state_dict`.
        allow_missing: fnmatch patterns of AdaTAD tensors that may keep their initial values.
        allow_unused: fnmatch patterns of checkpoint keys to skip.
        class_map: class-name file (one per line); defaults to the config's `class_map` if that path exists.
        verify: reload the written folder and compare it with the converted weights.
        dataset, eval_results, model_id: for the model card: the dataset, the metrics `adatad-eval` measured with
            this model (`read_eval_results`), and the repo id used in its loading snippets (default: `output_dir`).
        overwrite: replace an `output_dir` that holds files, e.g. an earlier model (see `check_output_folder`).

    Returns:
        The model, the processor and the conversion report.
    """
    checkpoint = Path(checkpoint)
    inputs = [("checkpoint", checkpoint), ("config", config_file), ("class map", class_map)]
    check_output_folder(output_dir, inputs, overwrite)
    config, processor, notes = adatad_from_opentad_config(config_file, class_map)

    wrapper = "state_dict_ema" if use_ema else "state_dict"
    raw = load_checkpoint_file(checkpoint)
    if isinstance(raw, dict) and "state_dict_ema" in raw and not use_ema:
        notes.append(
            "the checkpoint also holds `state_dict_ema`, which OpenTAD evaluates with: add --use-ema for that."
        )
    if use_ema and isinstance(raw, dict) and "state_dict_ema" not in raw:
        raise ConversionError(
            f"{checkpoint}: --use-ema given but there is no `state_dict_ema` (keys: {sorted(raw)[:10]})."
        )
    state_dict, where = find_state_dict(raw, checkpoint, wrappers=(wrapper,))
    state_dict = strip_prefix(state_dict, "module.")
    print(f"{checkpoint}: {len(state_dict)} tensors under {where}")
    converted, unused = convert_opentad_state_dict(state_dict, allow_unused)

    model = AdaTADForTemporalDetection(config)
    report = ConversionReport(unused=unused)
    load_converted_weights(model, converted, allow_missing, report, checkpoint)
    del raw, state_dict, converted  # the model holds its own copy; the verification needs the memory

    card = build_model_card(
        model_id=model_id or str(output_dir),
        title=f"AdaTAD: {Path(config_file).stem}",
        description="AdaTAD (VideoMAE backbone with temporal-informative adapters, ActionFormer detector), converted "
        "from an OpenTAD checkpoint.",
        how_made=f"Converted with `conversion_scripts/convert_opentad_to_adatad.py` from `{checkpoint.name}` "
        f"({'EMA' if use_ema else 'trained'} weights) and the OpenTAD config `{Path(config_file).name}`.",
        dataset=dataset,
        metrics=eval_results,
        class_names=processor.class_names,
        settings={"post_processing": asdict(processor.post_processing_settings()), "notes": notes},
        settings_title="Conversion settings",
    )

    def save_processor_and_card(folder):
        processor.save_pretrained(folder)
        reloaded = AdaTADVideoProcessor.from_pretrained(folder)
        if reloaded.to_dict() != processor.to_dict():
            raise ConversionError("the saved video processor reads back with different settings.")
        card.save(Path(folder) / "README.md")

    save_model_folder(model, output_dir, save_processor_and_card, verify=verify)
    print(report.summary())
    for note in notes:
        print(f"note: {note}")
    print(f"saved AdaTAD model and processor to {output_dir}")
    return model, processor, report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_STATUS_HELP)
    parser.add_argument("--checkpoint", required=True, help="OpenTAD checkpoint (.pth)")
    parser.add_argument("--config", required=True, help="OpenTAD Python config the checkpoint was trained with")
    parser.add_argument("--output", required=True, help="folder for the AdaTAD model and processor")
    parser.add_argument("--use-ema", action="store_true", help="convert the EMA weights (what OpenTAD tests with)")
    parser.add_argument("--class-map", help="class names, one per line (default: the config's class_map if present)")
    parser.add_argument(
        "--allow-missing", nargs="*", default=[], metavar="PATTERN", help="AdaTAD tensors that may stay initialised"
    )
    parser.add_argument("--allow-unused", nargs="*", default=[], metavar="PATTERN", help="checkpoint keys to skip")
    parser.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare check")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    parser.add_argument("--dataset", help="dataset the checkpoint was trained on, for the model card (e.g. thumos-14)")
    parser.add_argument(
        "--eval-results",
        metavar="FILE",
        help="metrics JSON from `adatad-eval --output FILE`, as the card's eval results",
    )
    parser.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", metavar="REPO",
                        help="upload the folder to this Hub model repo (e.g. your-name/adatad-thumos-s)")
    args = parser.parse_args(argv)
    if args.eval_results and not args.dataset:
        parser.error("--eval-results needs --dataset (the data the mAP was measured on)")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        eval_results = read_eval_results(args.eval_results) if args.eval_results else None
        convert_opentad_checkpoint(
            args.checkpoint,
            args.config,
            args.output,
            use_ema=args.use_ema,
            allow_missing=args.allow_missing,
            allow_unused=args.allow_unused,
            class_map=args.class_map,
            verify=not args.no_verify,
            dataset=args.dataset,
            eval_results=eval_results,
            model_id=args.push_to_hub,
            overwrite=args.overwrite,
        )
    except (ConversionError, OSError, ValueError) as error:
        exit_with_error(error, args.debug)
    if args.push_to_hub:
        push_folder_to_hub(args.output, args.push_to_hub, "AdaTAD converted from OpenTAD")
        print(f"uploaded {args.output} to https://huggingface.co/{args.push_to_hub}")


if __name__ == "__main__":
    main()
