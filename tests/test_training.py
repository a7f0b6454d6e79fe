"""Short CPU runs of training/run_tad.py on a tiny synthetic dataset: every tuning mode, learning, resume, 2 processes,
non-finite losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adatad.synthetic import generate_synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "training"))
import run_tad  # noqa: E402

# A model small enough for a few seconds per epoch: 2 layers of width 32, 32 frames at 32x32, 3 FPN levels.
TINY = [
    "model.backbone_config.hidden_size=32",
    "model.backbone_config.num_hidden_layers=2",
    "model.backbone_config.intermediate_size=64",
    "model.backbone_config.image_size=32",
    "model.num_frames=32",
    "model.image_size=32",
    "model.feature_length=32",
    "model.max_seq_len=32",
    "model.projection_hidden_size=32",
    "model.head_hidden_size=32",
    "model.projection_arch=[2,1,2]",
    "model.fpn_strides=[1,2,4]",
    "model.fpn_regression_ranges=[[0,4],[4,8],[8,10000]]",
    "data.window_size=32",
    'processor.size={"shortest_edge":32}',
    'processor.crop_size={"height":32,"width":32}',
    'processor.train_size={"shortest_edge":32}',
    "data.num_workers=0",
    "training.warmup_epochs=1",
    "training.max_epoch=4",
    "training.end_epoch=4",
    "training.val_start_epoch=100",
    "training.checkpoint_interval=1",
]


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, num_train_videos=8, num_val_videos=2, num_frames=48, frame_size=32, seed=3)
    return root


def run(data_dir, output_dir, *flags, overrides=(), preset="synthetic-tiny"):
    argv = ["--preset", preset, "--data_dir", str(data_dir), "--output_dir", str(output_dir), *flags]
    adapters = "[]" if preset.endswith(("frozen", "full")) else "[0,1]"
    overrides = [*TINY, f"model.adapter_layer_indices={adapters}", *overrides]
    return run_tad.training_function(run_tad.parse_args([*argv, "--set", *overrides]))


def model_weights(folder):
    return load_file(Path(folder) / "model.safetensors")


@pytest.mark.parametrize("tuning_mode", ["adapter", "side", "frozen", "full"])
def test_one_training_step_per_tuning_mode(synthetic_data, tmp_path, tuning_mode):
    preset = "synthetic-tiny" if tuning_mode == "adapter" else f"synthetic-tiny-{tuning_mode}"
    result = run(synthetic_data, tmp_path, "--max_train_steps", "1", preset=preset)
    assert result["global_step"] == 1
    assert set(result["last"]["mAP_per_tiou"]) and 0.0 <= result["last"]["average_mAP"] <= 1.0
    saved = tmp_path / "last"
    assert (saved / "model.safetensors").is_file() and (saved / "video_preprocessor_config.json").is_file() or (
        saved / "preprocessor_config.json"
    ).is_file()
    config = json.loads((saved / "config.json").read_text())
    assert config["tuning_mode"] == tuning_mode


def test_loss_falls_on_a_fixed_batch():
    from adatad import AdaTADConfig, AdaTADForTemporalDetection

    torch.manual_seed(0)
    config = AdaTADConfig(
        backbone_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32),
        num_frames=32, image_size=32, feature_length=32, max_seq_len=32, projection_hidden_size=32, head_hidden_size=32,
        projection_arch=(2, 1, 2), fpn_strides=(1, 2, 4), fpn_regression_ranges=((0, 4), (4, 8), (8, 10000)),
        num_labels=2, adapter_layer_indices=[0, 1], backbone_drop_path_rate=0.0, projection_path_drop_rate=0.0,
    )
    model = AdaTADForTemporalDetection(config).train()
    optimizer = torch.optim.AdamW(model.get_parameter_groups(detector_lr=1e-3, adapter_lr=1e-3))
    pixel_values = torch.randn(2, 32, 3, 32, 32)
    labels = [
        {"segments": torch.tensor([[2.0, 9.0], [15.0, 28.0]]), "labels": torch.tensor([0, 1])},
        {"segments": torch.tensor([[5.0, 20.0]]), "labels": torch.tensor([1])},
    ]
    def eval_loss():
        # Eval mode normalises by this batch's positives; the train-mode normaliser is an EMA that drifts from 100.
        with torch.no_grad():
            return model.eval()(pixel_values, labels=labels).loss.item()

    initial = eval_loss()
    for _ in range(40):
        loss = model.train()(pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < 0.5 * initial


def test_resume_is_exact(synthetic_data, tmp_path):
    # Uninterrupted: 3 epochs of 2 steps. Interrupted: stop after step 3 (mid-epoch), resume from `latest`.
    straight = run(synthetic_data, tmp_path / "straight", "--num_epochs", "3", "--checkpointing_steps", "1")
    first = run(
        synthetic_data, tmp_path / "resumed", "--num_epochs", "3", "--checkpointing_steps", "1", "--max_train_steps", "3"
    )
    assert first["global_step"] == 3
    resumed = run(
        synthetic_data, tmp_path / "resumed", "--num_epochs", "3", "--checkpointing_steps", "1",
        "--resume_from_checkpoint", "latest",
    )
    assert straight["global_step"] == resumed["global_step"] == 6
    expected, actual = model_weights(tmp_path / "straight" / "last"), model_weights(tmp_path / "resumed" / "last")
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)
    assert straight["last"]["average_mAP"] == resumed["last"]["average_mAP"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_data, tmp_path):
    with pytest.raises(FloatingPointError) as error:
        run(
            synthetic_data, tmp_path, "--num_epochs", "4", "--checkpointing_steps", "1",
            overrides=["training.detector_lr=1e12", "training.adapter_lr=1e12", "training.warmup_epochs=0",
                       "training.clip_grad_norm=null"],
        )
    message = str(error.value)
    assert "step" in message and "checkpoint" in message
    checkpoints = sorted((tmp_path / "checkpoints").glob("step_*"))
    for checkpoint in checkpoints:
        for name, tensor in load_file(checkpoint / "model.safetensors").items():
            assert torch.isfinite(tensor).all(), f"{checkpoint.name}: {name} is not finite"


def test_two_process_training_matches_one_process(synthetic_data, tmp_path):
    common = ["--preset", "synthetic-tiny", "--data_dir", str(synthetic_data), "--num_epochs", "2"]
    overrides = ["--set", *TINY, "model.adapter_layer_indices=[0,1]"]
    single = run_tad.training_function(run_tad.parse_args(common + ["--output_dir", str(tmp_path / "one")] + overrides))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "training" / "configs" / "cpu_2proc.yaml"), str(REPO_ROOT / "training" / "run_tad.py"),
        *common, "--output_dir", str(tmp_path / "two"), *overrides,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    two = json.loads((tmp_path / "two" / "last" / "eval_results.json").read_text())
    one = json.loads((tmp_path / "one" / "last" / "eval_results.json").read_text())
    # Same global batch (2 per rank), same data order and seeds. The loss normaliser counts positives per rank (as in
    # OpenTAD), so the runs differ slightly: compare the evaluation within a tolerance.
    assert abs(two["average_mAP"] - one["average_mAP"]) <= 0.05
    assert single["global_step"] == 2 * 2


def test_saved_folder_has_a_model_card_and_loads_back(synthetic_data, tmp_path):
    from transformers import AutoModel, AutoVideoProcessor

    result = run(synthetic_data, tmp_path, "--max_train_steps", "1", "--hub_model_id", "someone/adatad-synthetic")
    folder = tmp_path / "last"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "pipeline_tag: other" in card
    assert "synthetic-tiny" in card and 'AutoModel.from_pretrained("someone/adatad-synthetic"' in card
    average = f"{100 * result['last']['average_mAP']:.2f} |"
    assert average in card
    # The card's loading snippet works on the saved folder, offline.
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoVideoProcessor.from_pretrained(folder, trust_remote_code=True)
    video = sorted((synthetic_data / "videos").glob("*validation*.mp4"))[0]
    inputs = processor([str(video)], return_tensors="pt")
    with torch.no_grad():
        outputs = model(inputs["pixel_values"], masks=inputs["masks"])
    detections = processor.post_process_temporal_detection(outputs, inputs["video_metas"])
    assert len(detections) == 1 and detections[0]["segments"].shape[-1] == 2


def test_push_to_hub_needs_a_model_id():
    with pytest.raises(ValueError, match="hub_model_id"):
        run_tad.push_folder(Path("."), None)


def test_training_without_ema_saves_the_live_weights(synthetic_data, tmp_path):
    result = run(synthetic_data, tmp_path, "--max_train_steps", "1", overrides=["training.ema_decay=null"])
    assert result["global_step"] == 1
    assert (tmp_path / "last" / "model.safetensors").is_file()
