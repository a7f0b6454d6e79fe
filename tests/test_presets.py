"""Training presets (`adatad/presets/`: the schema and loader, and the shipped `*.json` files) and accelerate configs
(`training/configs`)."""

import ast
import dataclasses
import functools
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from adatad import presets
from adatad.post_processing import PostProcessingSettings
from conftest import REPO_ROOT

TRAINING_DIR = REPO_ROOT / "training"
CONFIGS_DIR = TRAINING_DIR / "configs"
ALL_PRESETS = presets.list_presets()


# ---------------------------------------------------------------------------------------------------------
# The seed README's result tables
# ---------------------------------------------------------------------------------------------------------

SEED_TABLE_ROWS_PER_DATASET = {
    "activitynet-1.3": 8,
    "thumos-14": 7,
    "epic-kitchens-100-noun": 1,
    "epic-kitchens-100-verb": 1,
    "ego4d-mq": 1,
    "multi-thumos": 6,
}
# Backbone column -> ViT width.
SEED_BACKBONE_WIDTH = {
    "VideoMAE-S": 384,
    "VideoMAE-B": 768,
    "VideoMAE-L": 1024,
    "VideoMAE-H": 1280,
    "VideoMAEV2-g": 1408,
    "VideoMAE-Noun": 1024,
    "VideoMAE-Verb": 1024,
    "InternVideo1-MQ": 1024,
}
SEED_CLASSIFIER_FILE = {
    "CUHK": "cuhk_val_simp_7.json",
    "InternVideo": "new_3ensemble_uniformerv2_large_only_global_anet_16x10x3.json",
    "InternVideo2": "anet_UMTv2_6B_k710+K40_f16_frozenTuning.json_converted.json",
}


def seed_result_rows(seed_readme: Path) -> list[dict]:
    """Every result-table row of the seed README as {column header: cell}, plus `config_stem`."""
    rows, header = [], None
    for line in seed_readme.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "Config" in cells:
            header = cells
        elif header is not None and not set(cells[0]) <= set(":- "):
            row = dict(zip(header, cells))
            link = re.search(r"\[config\]\(([^)]+)\)", row["Config"]).group(1)
            row["config_stem"] = Path(link).name.removesuffix(".py")
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def seed_rows(tests_dir):
    return seed_result_rows(tests_dir / "seed" / "AdaTAD-README.md")


def test_seed_readme_has_24_result_rows(seed_rows):
    assert len(seed_rows) == 24
    assert len({row["config_stem"] for row in seed_rows}) == 24


def test_every_seed_row_has_a_preset_with_its_numbers(seed_rows):
    per_dataset = {}
    for row in seed_rows:
        stem = row["config_stem"]
        assert stem in ALL_PRESETS, f"no preset for seed README row {stem}"
        preset = presets.load_preset(stem, validate=False)
        assert preset["opentad_config"].endswith(f"/{stem}.py")
        average = next(float(value) for column, value in row.items() if column.startswith("ave. mAP"))
        assert preset["paper"]["average_mAP"] == average, stem
        table_map = {
            column.removeprefix("mAP@"): float(value) for column, value in row.items() if column.startswith("mAP@")
        }
        assert preset["paper"]["mAP"] == table_map, stem
        # The paper's per-tIoU columns are a subset of the thresholds the preset evaluates.
        assert {float(tiou) for tiou in table_map} <= set(preset["evaluation"]["tiou_thresholds"]), stem
        per_dataset[preset["dataset"]] = per_dataset.get(preset["dataset"], 0) + 1
    assert per_dataset == SEED_TABLE_ROWS_PER_DATASET


def test_seed_rows_match_preset_settings(seed_rows):
    """Frames, image size, backbone, AdaTAD vs AdaTAD-dagger and classifier columns agree with the preset."""
    for row in seed_rows:
        preset = presets.load_preset(row["config_stem"], validate=False)
        model = preset["model"]
        frames = [int(part) for part in row["Frames"].split("x")]
        assert model["num_frames"] == frames[0] * (frames[1] if len(frames) == 2 else 1), row["config_stem"]
        assert model["image_size"] == int(row["Img Size"]), row["config_stem"]
        assert model["backbone_config"]["hidden_size"] == SEED_BACKBONE_WIDTH[row["Backbone"]], row["config_stem"]
        # "AdaTAD" or AdaTAD-dagger (the seed file stores the dagger as mojibake, so compare with the plain name).
        expected_mode = "adapter" if row["Setting"] == "AdaTAD" else "side"
        assert model["tuning_mode"] == expected_mode, row["config_stem"]
        if "Classifier" in row:
            classifier_file = Path(preset["evaluation"]["external_classifier_file"]).name
            assert classifier_file == SEED_CLASSIFIER_FILE[row["Classifier"]], row["config_stem"]
        assert preset["training"]["reference_num_gpus"] == int(row["GPUs"]), row["config_stem"]


# ---------------------------------------------------------------------------------------------------------
# Every preset
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_preset_loads_and_builds_its_model_config(name):
    preset = presets.load_preset(name)  # validates, including AdaTADConfig(**preset["model"])
    assert preset["name"] == name
    config = presets.build_model_config(preset)
    model = preset["model"]
    assert config.tuning_mode == model["tuning_mode"]
    assert config.adapter_layer_indices == model["adapter_layer_indices"]
    assert config.num_labels == model["num_labels"]
    assert config.backbone_config.hidden_size == model["backbone_config"]["hidden_size"]
    assert config.num_chunks * config.frames_per_chunk == model["num_frames"]
    assert config.num_fpn_levels == len(model["fpn_strides"])
    if preset["data"]["class_agnostic"]:
        assert config.num_labels == 1


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_preset_builds_a_matching_video_processor(name):
    from adatad.processing_adatad import AdaTADVideoProcessor

    preset = presets.load_preset(name, validate=False)
    processor = AdaTADVideoProcessor(**presets.processor_kwargs(preset))
    for train in (True, False):
        assert processor.feature_length(train) == preset["model"]["feature_length"]
        assert processor.frames_per_sample(train) == preset["model"]["num_frames"]
    assert processor.crop_size.height == preset["model"]["image_size"]
    assert processor.post_processing_settings() == PostProcessingSettings(**preset["post_processing"])


def test_post_processing_section_names_the_settings_the_processor_stores():
    from adatad.processing_adatad import AdaTADVideoProcessor

    stored = dataclasses.asdict(AdaTADVideoProcessor(nms_sigma=0.25).post_processing_settings())
    changed = {name for name, value in stored.items() if value != getattr(PostProcessingSettings, name)}
    assert changed == {"nms_sigma"}  # the processor's value, not a default, reaches the settings
    processor_fields = {name for name in stored if hasattr(AdaTADVideoProcessor, name)}
    assert set(presets.POST_PROCESSING_TYPES) == processor_fields
    assert set(presets.POST_PROCESSING_TYPES) <= {field.name for field in dataclasses.fields(PostProcessingSettings)}


def test_preset_with_the_old_post_processing_keys_names_their_new_place(tmp_path):
    preset = presets.load_preset("synthetic-tiny")
    preset["model"]["post_nms_sigma"] = preset["post_processing"].pop("nms_sigma")
    with pytest.raises(presets.PresetError, match=r"`model.post_nms_sigma` -> `post_processing.nms_sigma`"):
        presets.validate_preset(preset)


def test_invalid_post_processing_value_is_a_preset_error():
    preset = presets.load_preset("synthetic-tiny")
    preset["post_processing"]["voting_thresh"] = 1.5
    with pytest.raises(presets.PresetError, match=r"`post_processing`: `voting_thresh` must be a tIoU in \[0, 1\]"):
        presets.validate_preset(preset)


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_shipped_file_is_in_canonical_format(name):
    text = (presets.SHIPPED_PRESETS / f"{name}.json").read_text()
    assert presets.dump_preset(json.loads(text)) == text


def test_baselines_pair_with_an_adapter_preset():
    baselines = [name for name in ALL_PRESETS if name.endswith(("_frozen", "_fullft"))]
    assert len(baselines) == 20  # S/B/L/H/g x frozen/full x ActivityNet/THUMOS-14, as OpenTAD defines them
    for name in baselines:
        preset = presets.load_preset(name, validate=False)
        adapter = presets.load_preset(name.rsplit("_", 1)[0] + "_adapter", validate=False)
        assert preset["paper"] is None
        assert preset["model"]["tuning_mode"] == ("frozen" if name.endswith("_frozen") else "full")
        assert preset["model"]["adapter_layer_indices"] == []
        assert preset["model"]["backbone_config"] == adapter["model"]["backbone_config"]
        assert preset["dataset"] == adapter["dataset"]
        assert preset["backbone_checkpoint"] == adapter["backbone_checkpoint"]
        # OpenTAD fine-tunes the backbone at 1e-5 and freezes it (no gradients, no augmentation) otherwise.
        assert preset["training"]["backbone_lr"] == (0.0 if name.endswith("_frozen") else 1e-5)
        assert preset["processor"]["do_random_resized_crop"] == name.endswith("_fullft")


def test_synthetic_tiny_matches_the_synthetic_generator():
    from adatad import synthetic

    defaults = synthetic.SyntheticDatasetConfig()
    preset = presets.load_preset("synthetic-tiny")
    data, model = preset["data"], preset["model"]
    assert model["num_labels"] == len(defaults.class_names)
    assert (data["annotation_file"], data["class_map_file"], data["video_dir"]) == (
        synthetic.ANNOTATION_FILENAME,
        synthetic.CLASS_FILENAME,
        synthetic.VIDEOS_DIRNAME,
    )
    assert (data["train_subset"], data["test_subset"]) == ("training", "validation")
    assert set(synthetic.SUBSET_SEED_KEYS) == {"training", "validation"}
    assert model["image_size"] == defaults.frame_size == preset["processor"]["size"]["shortest_edge"]
    # One window covers at most one whole generated video, and the longest action fits in it.
    window_frames = data["window_size"] * data["snippet_stride"]
    assert defaults.max_action_frames <= window_frames <= defaults.num_frames
    # moving_left is moving_right mirrored in time, and a horizontal flip turns one into the other: no flips.
    assert preset["processor"]["do_flip"] is False
    assert preset["backbone_checkpoint"] is None and preset["training"]["mixed_precision"] == "no"


SYNTHETIC_PRESETS = ["synthetic-tiny", "synthetic-tiny-frozen", "synthetic-tiny-full", "synthetic-tiny-side"]


@pytest.mark.parametrize("name", SYNTHETIC_PRESETS)
def test_synthetic_preset_builds_a_model_that_trains(name):
    """The CPU presets are the only ones small enough to instantiate: one training step on a random batch."""
    import torch

    from adatad.modeling_adatad import AdaTADForTemporalDetection

    preset = presets.load_preset(name)
    config = presets.build_model_config(preset)
    torch.manual_seed(0)
    model = AdaTADForTemporalDetection(config).train()
    size = preset["model"]["image_size"]
    pixel_values = torch.randn(2, config.num_frames, 3, size, size)
    masks = torch.ones(2, config.feature_length, dtype=torch.bool)
    labels = [{"segments": torch.tensor([[4.0, 20.0], [30.0, 58.0]]), "labels": torch.tensor([0, 3])}] * 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and immune to a loaded machine
    try:
        outputs = model(pixel_values=pixel_values, masks=masks, labels=labels)
        outputs.loss.backward()
    finally:
        torch.set_num_threads(threads)
    assert torch.isfinite(outputs.loss)
    assert len(outputs.logits) == len(preset["model"]["fpn_strides"])
    assert outputs.logits[0].shape == (2, config.feature_length, preset["model"]["num_labels"])
    backbone_grads = [p.grad is not None for n, p in model.named_parameters() if "adapter" not in n and "backbone" in n]
    assert any(backbone_grads) == (config.tuning_mode == "full")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_synthetic_variants_differ_only_in_tuning():
    base = presets.load_preset("synthetic-tiny")
    allowed = {
        ("model", "tuning_mode"),
        ("model", "adapter_layer_indices"),
        ("training", "adapter_lr"),
        ("training", "adapter_weight_decay"),
        ("training", "backbone_lr"),
        ("training", "backbone_weight_decay"),
    }
    modes = {}
    for name in ("synthetic-tiny-frozen", "synthetic-tiny-full", "synthetic-tiny-side"):
        variant = presets.load_preset(name)
        modes[name] = variant["model"]["tuning_mode"]
        for section in presets.SECTION_TYPES.keys() | {"model"}:
            changed = {(section, key) for key in base[section] if base[section][key] != variant[section][key]}
            assert changed <= allowed, (name, changed - allowed)
    assert modes == {"synthetic-tiny-frozen": "frozen", "synthetic-tiny-full": "full", "synthetic-tiny-side": "side"}


def test_every_schema_key_is_documented():
    documented = presets.__doc__
    keys = list(presets.TOP_LEVEL_TYPES)
    for types in presets.SECTION_TYPES.values():
        keys.extend(types)
    missing = [key for key in keys if f"`{key}`" not in documented]
    assert not missing, f"keys not described in the adatad.presets docstring: {missing}"


# ---------------------------------------------------------------------------------------------------------
# Every preset key has a reader
# ---------------------------------------------------------------------------------------------------------

def _reader(dotted: str):
    module_name, function_name = dotted.split(".")
    if module_name == "presets":
        return getattr(presets, function_name)
    sys.path.insert(0, str(TRAINING_DIR))
    try:
        return getattr(importlib.import_module(module_name), function_name)
    finally:
        sys.path.remove(str(TRAINING_DIR))


def strings_in_code(function) -> set:
    """The string constants of a function's code, its docstring left out: the keys it can index a preset with."""
    definition = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    body = definition.body[1:] if ast.get_docstring(definition) else definition.body
    return {
        node.value
        for statement in body
        for node in ast.walk(statement)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


@functools.cache
def reader_strings(dotted: str) -> set:
    return strings_in_code(_reader(dotted))


def unread_keys(preset: dict) -> list:
    """Keys of `preset` that nothing reads: a `model` key that is no AdaTADConfig field, a processor key that is no
    AdaTADVideoProcessor argument, any other key without a declared reader whose code names it."""
    from adatad.processing_adatad import AdaTADVideoProcessorKwargs

    processor_arguments = set(typing.get_type_hints(AdaTADVideoProcessorKwargs))
    unread = []
    sections = (*presets.SECTION_TYPES, "model")
    for key in (*preset, *(f"{section}.{key}" for section in sections for key in preset[section])):
        section, _, name = key.rpartition(".")
        if key in presets.SECTION_TYPES or key == "model":
            continue
        if section == "model":
            read = name in presets.model_config_fields()
        elif section in ("processor", "post_processing") or (
            section == "data" and name in presets.PROCESSOR_SAMPLING_KEYS
        ):
            # null: not used by this preset (e.g. window keys under resize sampling); set values reach the processor.
            value = preset[section][name]
            read = name in processor_arguments and (value is None or name in presets.processor_kwargs(preset))
        else:
            read = key in presets.KEY_READERS and name in reader_strings(presets.KEY_READERS[key])
        if not read:
            unread.append(key)
    return unread


def test_every_key_of_every_preset_has_a_reader():
    # Validation (each preset builds its AdaTADConfig) is tested above; here only the keys matter.
    unread = {name: unread_keys(presets.load_preset(name, validate=False)) for name in ALL_PRESETS}
    assert not {name: keys for name, keys in unread.items() if keys}


def test_the_reader_check_can_fail():
    preset = presets.load_preset("synthetic-tiny")
    preset["training"]["unknown_knob"] = 1
    preset["processor"]["not_an_argument"] = True
    preset["model"]["not_a_field"] = 0
    assert set(unread_keys(preset)) == {"training.unknown_knob", "processor.not_an_argument", "model.not_a_field"}
    # A declared reader that does not name the key (only its docstring would) is caught.
    assert "warmup_start_lr" in strings_in_code(_reader("run_tad.build_schedule"))
    assert "warmup_start_lr" not in strings_in_code(_reader("run_tad.build_optimizer"))


def test_declared_readers_name_schema_keys():
    schema = set(presets.TOP_LEVEL_TYPES) | {
        f"{section}.{key}" for section, types in presets.SECTION_TYPES.items() for key in types
    }
    assert set(presets.KEY_READERS) <= schema


# ---------------------------------------------------------------------------------------------------------
# Loading, validating, overriding
# ---------------------------------------------------------------------------------------------------------


def test_load_preset_from_an_edited_copy(tmp_path):
    preset = presets.load_preset("synthetic-tiny")
    preset["training"]["end_epoch"] = 5
    path = tmp_path / "my-preset.json"
    presets.save_preset(preset, path)
    assert presets.load_preset(path) == preset


def test_unknown_preset_names_the_closest_match():
    with pytest.raises(presets.PresetError, match="e2e_thumos_videomae_s_768x1_160_adapter"):
        presets.load_preset("e2e_thumos_videomae_s_768x1_160_adaptr")
    with pytest.raises(presets.PresetError, match="does not exist"):
        presets.load_preset("no/such/preset.json")


def test_overrides_set_values_without_touching_the_original():
    preset = presets.load_preset("synthetic-tiny")
    result = presets.apply_overrides(
        preset,
        [
            "training.detector_lr=2e-4",
            "model.adapter_layer_indices=[0,1]",
            "processor.size.shortest_edge=72",
            'processor.train_size={"shortest_edge": 80}',
            "data.root=/datasets/synthetic",
            "training.ema_decay=null",
            "model.adapter_kernel_size=5",  # an AdaTADConfig field the preset leaves at its default
        ],
    )
    assert result["training"]["detector_lr"] == 2e-4
    assert result["model"]["adapter_layer_indices"] == [0, 1]
    assert result["processor"]["size"] == {"shortest_edge": 72}
    assert result["processor"]["train_size"] == {"shortest_edge": 80}
    assert result["data"]["root"] == "/datasets/synthetic"
    assert result["training"]["ema_decay"] is None
    assert presets.build_model_config(result).adapter_kernel_size == 5
    assert presets.resolve_data_paths(result)["annotation_file"] == Path("/datasets/synthetic/annotations.json")
    assert preset == presets.load_preset("synthetic-tiny")


def test_override_switching_tuning_mode():
    preset = presets.load_preset("synthetic-tiny")
    frozen = presets.apply_overrides(
        preset, ["model.tuning_mode=frozen", "model.adapter_layer_indices=[]", "training.adapter_lr=null"]
    )
    assert presets.build_model_config(frozen).tuning_mode == "frozen"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.detector_rl=2e-4", r"unknown override key 'training\.detector_rl'.*training\.detector_lr"),
        ("model.adapter_layer_indice=[0]", r"unknown override key.*model\.adapter_layer_indices"),
        ("model.not_a_config_field=1", r"unknown override key 'model\.not_a_config_field'"),
        ("trainingdetector_lr=1", r"unknown override key 'trainingdetector_lr'"),
        ("training.detector_lr", r"must look like KEY=VALUE"),
        ("training.max_epoch=ten", r"`training\.max_epoch` must be int"),
        ("training.gradient_checkpointing=1", r"`training\.gradient_checkpointing` must be bool"),
        ("model.num_frames=128", r"`model\.num_frames` \(128\) must be `data\.window_size` x `data\.scale_factor`"),
        ("data.scale_factor=3", r"`data\.snippet_stride` \(1\) must be a multiple of `data\.scale_factor` \(3\)"),
        ("model.tuning_mode=frozen", r"`training\.adapter_lr` must be set for tuning modes"),
        ("model.adapter_layer_indices=[7]", r"does not make a valid AdaTADConfig.*out of range"),
        ("training.mixed_precision=fp8", r"`training\.mixed_precision` must be one of"),
        ("training.end_epoch=50", r"`training\.end_epoch` \(50\) <= `training\.max_epoch` \(30\)"),
        ("training.detector_lr=-1e-4", r"`training\.detector_lr` must be > 0, got -0\.0001"),
        ("training.adapter_lr=-1", r"`training\.adapter_lr` must be >= 0, got -1"),
        ("training.warmup_start_lr=-1e-6", r"`training\.warmup_start_lr` must be >= 0"),
        ("training.ema_decay=1", r"`training\.ema_decay` must be >= 0 and < 1, got 1"),
        ("training.logging_steps=0", r"`training\.logging_steps` must be >= 1, got 0"),
        ("training.gradient_accumulation_steps=0", r"`training\.gradient_accumulation_steps` must be >= 1"),
        ("training.warmup_epochs=30", r"`training\.warmup_epochs` \(30\) must be smaller than `training\.max_epoch`"),
        ("data.on_video_error=ignore", r"`data\.on_video_error` must be one of \['raise', 'skip'\]"),
        ("data.missing_videos=true", r"`data\.missing_videos` must be str, got true"),
    ],
)
def test_bad_overrides_are_rejected_with_a_message(override, message):
    with pytest.raises(presets.PresetError, match=message):
        presets.apply_overrides(presets.load_preset("synthetic-tiny"), [override])


def test_error_policies_are_optional_keys_with_defaults(tmp_path):
    preset = presets.load_preset("synthetic-tiny")
    assert (preset["data"]["on_video_error"], preset["data"]["missing_videos"]) == ("raise", "raise")
    skipping = presets.apply_overrides(preset, ["data.on_video_error=skip", "data.missing_videos=skip"])
    assert (skipping["data"]["on_video_error"], skipping["data"]["missing_videos"]) == ("skip", "skip")
    path = tmp_path / "skipping.json"
    presets.save_preset(skipping, path)
    assert presets.load_preset(path) == skipping
    assert not list(tmp_path.glob(".*incomplete"))


def test_validation_names_missing_unknown_and_mistyped_keys():
    preset = presets.load_preset("synthetic-tiny")
    missing = json.loads(json.dumps(preset))
    del missing["training"]["seed"]
    with pytest.raises(presets.PresetError, match=r"`training` is missing keys \['seed'\]"):
        presets.validate_preset(missing)
    unknown = json.loads(json.dumps(preset))
    unknown["data"]["windowsize"] = 64
    with pytest.raises(presets.PresetError, match=r"unknown keys \['windowsize'\]"):
        presets.validate_preset(unknown)
    mistyped = json.loads(json.dumps(preset))
    mistyped["training"]["detector_lr"] = True
    with pytest.raises(presets.PresetError, match=r"`training\.detector_lr` must be int or float, got true"):
        presets.validate_preset(mistyped)


def test_preset_table_lists_every_preset_with_its_target():
    lines = presets.format_preset_table().splitlines()
    assert len(lines) == len(ALL_PRESETS) + 1
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(ALL_PRESETS)
    assert rows["e2e_thumos_videomae_s_768x1_160_adapter"][1:] == ["thumos-14", "69.03"]
    assert rows["e2e_anet_videomaev2_g_192x4_224_adapter_internvideo2"][1:] == ["activitynet-1.3", "42.90"]
    assert rows["synthetic-tiny"][1:] == ["synthetic", "-"]


@pytest.mark.slow
def test_command_line_prints_the_table_and_overridden_presets(capsys):
    listing = subprocess.run(
        [sys.executable, "-m", "adatad.presets"], capture_output=True, text=True, check=True, timeout=120
    )
    assert listing.stdout.strip() == presets.format_preset_table()
    assert presets.main(["synthetic-tiny", "training.seed=7"]) == 0
    assert json.loads(capsys.readouterr().out)["training"]["seed"] == 7
    assert presets.main(["synthetic-tiny", "training.sed=7"]) == 2
    assert "training.seed" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# accelerate configs
# ---------------------------------------------------------------------------------------------------------

# file -> (distributed type, processes, mixed precision, ZeRO stage)
ACCELERATE_CONFIGS = {
    "single_gpu.yaml": ("NO", 1, "fp16", None),
    "multi_gpu_2.yaml": ("MULTI_GPU", 2, "fp16", None),
    "multi_gpu_4.yaml": ("MULTI_GPU", 4, "fp16", None),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 2, "fp16", 2),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 2, "fp16", 3),
    "cpu_2proc.yaml": ("MULTI_GPU", 2, "no", None),
}


def _validated_launch_args(config_file: Path):
    """What `accelerate launch --config_file FILE script.py` makes of the file (without launching)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "script.py"])
    return _validate_launch_command(args)


def test_accelerate_config_folder_holds_the_documented_files():
    assert sorted(path.name for path in CONFIGS_DIR.glob("*.yaml")) == sorted(ACCELERATE_CONFIGS)


@pytest.mark.parametrize("file_name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_parses(file_name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = CONFIGS_DIR / file_name
    distributed_type, num_processes, mixed_precision, zero_stage = ACCELERATE_CONFIGS[file_name]
    config = load_config_from_file(str(path))  # rejects unknown keys
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == distributed_type
    assert config.num_processes == num_processes
    assert config.mixed_precision == mixed_precision
    text = path.read_text()
    assert text.startswith("#") and "accelerate launch --config_file training/configs/" + file_name in text

    args, _, _ = _validated_launch_args(path)
    assert args.num_processes == num_processes
    assert args.use_deepspeed == (zero_stage is not None)
    assert args.multi_gpu == (distributed_type == "MULTI_GPU")
    if zero_stage is not None:
        assert int(args.zero_stage) == zero_stage


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_config_builds_a_valid_deepspeed_setup(zero_stage, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults, _ = _validated_launch_args(CONFIGS_DIR / f"deepspeed_zero{zero_stage}.yaml")
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, environment = prepare_deepspeed_cmd_env(args)
    for key, value in environment.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()  # what each launched process builds from that environment
    config = plugin.deepspeed_config
    assert config["zero_optimization"]["stage"] == zero_stage
    assert config["gradient_clipping"] == 1.0
    assert config["gradient_accumulation_steps"] == 1
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] == (zero_stage == 3)

    deepspeed_config = pytest.importorskip(
        "deepspeed.runtime.config", reason="deepspeed is not installed (pip install deepspeed) to validate the JSON"
    )
    # accelerate fills the "auto" batch sizes from the prepared data loader and fp16 from mixed_precision.
    resolved = dict(config, train_batch_size=2, train_micro_batch_size_per_gpu=2, fp16={"enabled": True})
    checked = deepspeed_config.DeepSpeedConfig(resolved)
    assert checked.zero_optimization_stage == zero_stage
    assert checked.gradient_clipping == 1.0


DISTRIBUTED_CHECK = """
import torch
from accelerate import Accelerator

accelerator = Accelerator()
total = accelerator.reduce(torch.tensor([float(accelerator.process_index + 1)]), reduction="sum")
print(f"rank={accelerator.process_index} world={accelerator.num_processes} "
      f"type={accelerator.distributed_type.value} backend={accelerator.state.backend} sum={total.item()}", flush=True)
accelerator.end_training()
"""


@pytest.mark.slow
def test_cpu_two_process_config_runs_a_gloo_group(tmp_path):
    script = tmp_path / "distributed_check.py"
    script.write_text(DISTRIBUTED_CHECK)
    accelerate = Path(sys.executable).with_name("accelerate")
    environment = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [str(accelerate), "launch", "--config_file", str(CONFIGS_DIR / "cpu_2proc.yaml"), str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=environment,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = sorted(re.findall(r"rank=\d world=\d type=\w+ backend=\w+ sum=[\d.]+", result.stdout))
    assert reports == [
        "rank=0 world=2 type=MULTI_CPU backend=gloo sum=3.0",
        "rank=1 world=2 type=MULTI_CPU backend=gloo sum=3.0",
    ]
