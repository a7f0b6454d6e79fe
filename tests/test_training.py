"""Short CPU runs of training/run_tad.py on a tiny synthetic dataset: every tuning mode, learning, resume, 2 processes,
non-finite losses."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adatad import AdaTADForTemporalDetection, presets
from adatad.custom_data import check_training_data
from adatad.synthetic import generate_synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "training"))
import run_tad  # noqa: E402
import tad_checkpoints  # noqa: E402
import tad_data  # noqa: E402
import tad_model  # noqa: E402
from tiny_run_overrides import TINY_RUN_OVERRIDES  # noqa: E402

# A model small enough for a few seconds per epoch, 4 epochs without validation, a checkpoint every epoch.
TINY = TINY_RUN_OVERRIDES + [
    "data.window_size=32",
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


def save_start_weights(folder, preset_name="synthetic-tiny", overrides=()):
    """A model folder with the architecture of `run(..., overrides=overrides, preset=preset_name)`: passed as
    `--pretrained_model`, it fixes the weights the run starts from (backbone, adapters and detector), so a test knows
    what training changed."""
    adapters = "[]" if preset_name.endswith(("frozen", "full")) else "[0,1]"
    overrides = [*TINY, f"model.adapter_layer_indices={adapters}", *overrides]
    preset = presets.apply_overrides(presets.load_preset(preset_name), overrides)
    torch.manual_seed(0)
    AdaTADForTemporalDetection(presets.build_model_config(preset)).save_pretrained(folder)
    return folder


# Which weights each tuning mode trains (the paper's settings): the detector always; of the backbone, the adapters
# inside the blocks (AdaTAD), the side adapters beside them (AdaTAD-dagger), nothing (frozen) or everything (full).
TRAINED_BACKBONE_WEIGHTS = {
    "adapter": lambda key: ".adapter." in key,
    "side": lambda key: ".side_adapters." in key,
    "frozen": lambda key: False,
    "full": lambda key: True,
}
# An adapter starts as the identity (zero up projection): the biases before it get no gradient in the first steps, and
# biases have no weight decay, so they stay as they were.
STILL_AT_START = (".down_proj.bias", ".pointwise_conv.bias", ".temporal_conv.bias")


@pytest.mark.parametrize("tuning_mode", ["adapter", "side", "frozen", "full"])
@pytest.mark.slow
def test_two_training_steps_train_what_the_tuning_mode_trains(synthetic_data, tmp_path, tuning_mode):
    preset = "synthetic-tiny" if tuning_mode == "adapter" else f"synthetic-tiny-{tuning_mode}"
    start = save_start_weights(tmp_path / "start", preset)
    # Two steps: the warm-up starts from a learning rate of 0, so the first step moves no weight.
    result = run(synthetic_data, tmp_path / "run", "--max_train_steps", "2", "--pretrained_model", str(start),
                 preset=preset)
    assert result["global_step"] == 2
    saved = tmp_path / "run" / "last"
    assert (saved / "model.safetensors").is_file() and (saved / "video_preprocessor_config.json").is_file()
    assert json.loads((saved / "config.json").read_text())["tuning_mode"] == tuning_mode
    before, after = model_weights(start), model_weights(saved)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    trained = TRAINED_BACKBONE_WEIGHTS[tuning_mode]
    adapters = tuning_mode in ("adapter", "side")
    expected = {key for key in before if (".backbone." not in key or trained(key))
                and not (adapters and trained(key) and key.endswith(STILL_AT_START))}
    # Frozen weights are bit for bit those the run started from; every trained one moved.
    assert changed == expected, (sorted(changed - expected), sorted(expected - changed))


@pytest.mark.slow
def test_loss_falls_on_a_fixed_batch():
    from adatad import AdaTADConfig, AdaTADForTemporalDetection

    torch.manual_seed(0)
    config = AdaTADConfig(
        backbone_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32
        ),
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


@pytest.mark.slow
def test_resume_is_exact(synthetic_data, tmp_path):
    # Uninterrupted: 3 epochs of 2 steps. Interrupted: stop after step 3 (mid-epoch), resume from `latest`.
    straight = run(synthetic_data, tmp_path / "straight", "--num_epochs", "3", "--checkpointing_steps", "1")
    first = run(
        synthetic_data, tmp_path / "resumed", "--num_epochs", "3", "--checkpointing_steps", "1",
        "--max_train_steps", "3",
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


@pytest.mark.slow
def test_two_process_training_matches_one_process(synthetic_data, tmp_path):
    # Held equal: the loss normaliser (momentum 1; OpenTAD's counts positives per rank) and the drop path (each rank
    # draws its own masks).
    same = ["model.loss_normalizer_momentum=1", "model.projection_path_drop_rate=0"]
    start = save_start_weights(tmp_path / "start", overrides=same)
    common = ["--preset", "synthetic-tiny", "--data_dir", str(synthetic_data), "--num_epochs", "2",
              "--pretrained_model", str(start)]
    overrides = ["--set", *TINY, "model.adapter_layer_indices=[0,1]", *same]
    single = run_tad.training_function(run_tad.parse_args(common + ["--output_dir", str(tmp_path / "one")] + overrides))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "training" / "configs" / "cpu_2proc.yaml"), str(REPO_ROOT / "training" / "run_tad.py"),
        *common, "--output_dir", str(tmp_path / "two"), *overrides,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert single["global_step"] == 2 * 2
    # Same global batch (2 per rank), same data order and seeds, from the same weights: the two runs moved the weights
    # alike, 1 / 28 apart (relative to how far they moved; the drop path left on: 1 / 5, the normaliser too: 2 / 5).
    before = model_weights(start)
    one, two = model_weights(tmp_path / "one" / "last"), model_weights(tmp_path / "two" / "last")
    assert one.keys() == two.keys() == before.keys()
    moved = torch.cat([(one[key] - before[key]).flatten() for key in before]).norm()
    apart = torch.cat([(two[key] - one[key]).flatten() for key in before]).norm()
    assert moved > 0 and apart < 0.1 * moved


@pytest.mark.slow
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


def test_push_to_hub_needs_a_model_id(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tad.parse_args(["--preset", "synthetic-tiny", "--push_to_hub"])
    assert exit_info.value.code == 2 and "--push_to_hub needs --hub_model_id" in capsys.readouterr().err


@pytest.mark.slow
def test_training_without_ema_saves_the_live_weights(synthetic_data, tmp_path):
    result = run(synthetic_data, tmp_path, "--max_train_steps", "1", overrides=["training.ema_decay=null"])
    assert result["global_step"] == 1
    assert (tmp_path / "last" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------------------------------
# Schedule, batches and log: OpenTAD's, on any number of processes
# ----------------------------------------------------------------------------------------------------------------------


def opentad_learning_rates(base_lrs, warmup_steps, total_steps, warmup_start_lr, eta_min, num_steps):
    """The rate of every group at iterations 0..num_steps-1 under OpenTAD's `LinearWarmupCosineAnnealingLR`
    (opentad/cores/scheduler.py), written from its recursive `get_lr`: each rate follows from the group's previous
    one, as OpenTAD's `scheduler.step()` after every iteration computes it."""
    span = total_steps - warmup_steps
    current = [warmup_start_lr] * len(base_lrs)
    history = [list(current)]
    for last_epoch in range(1, num_steps):
        if last_epoch < warmup_steps:
            current = [lr + (base - warmup_start_lr) / (warmup_steps - 1) for lr, base in zip(current, base_lrs)]
        elif last_epoch == warmup_steps:
            current = list(base_lrs)
        elif (last_epoch - 1 - total_steps) % (2 * span) == 0:
            current = [
                lr + (base - eta_min) * (1 - math.cos(math.pi / span)) / 2 for lr, base in zip(current, base_lrs)
            ]
        else:
            ratio = (1 + math.cos(math.pi * (last_epoch - warmup_steps) / span)) / (
                1 + math.cos(math.pi * (last_epoch - warmup_steps - 1) / span)
            )
            current = [ratio * (lr - eta_min) + eta_min for lr in current]
        history.append(list(current))
    return history


def opentad_loader_length(num_videos, num_processes, global_batch_size):
    """Length of OpenTAD's per-rank training loader (opentad/datasets/builder.py): DistributedSampler with
    drop_last=True gives each rank num_videos // num_processes videos, read in batches of
    global_batch_size // num_processes keeping the last, smaller one."""
    return math.ceil((num_videos // num_processes) / (global_batch_size // num_processes))


@pytest.mark.parametrize(
    ("warmup_steps", "total_steps", "warmup_start_lr"), [(4, 8, 0.0), (15, 300, 1e-5), (1, 10, 2e-6), (2, 3, 0.0)]
)
def test_schedule_equals_opentads_for_every_group(warmup_steps, total_steps, warmup_start_lr):
    base_lrs = [1e-4, 0.0, 4e-4]
    parameters = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    optimizer = torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(parameters, base_lrs)])
    schedule = tad_model.WarmupCosineSchedule(optimizer, warmup_steps, total_steps, warmup_start_lr, eta_min=1e-8)
    ours = []
    for _ in range(total_steps):
        ours.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    expected = opentad_learning_rates(base_lrs, warmup_steps, total_steps, warmup_start_lr, 1e-8, total_steps)
    for step, (actual, reference) in enumerate(zip(ours, expected)):
        assert actual == pytest.approx(reference, rel=1e-9, abs=1e-15), step
    # OpenTAD reaches the base rate one step before the warm-up ends (a 1-step warm-up is the start rate alone).
    assert ours[warmup_steps][0] == pytest.approx(base_lrs[0])
    if warmup_steps > 1:
        assert ours[warmup_steps - 1][0] == pytest.approx(base_lrs[0])


def test_batches_are_opentads_per_rank_batches():
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import DataLoader, DistributedSampler

    num_videos, batch_size, seed = 11, 2, 5
    for num_processes in (1, 2, 3, 8):
        sampler = tad_data.OpenTADTrainBatchSampler(num_videos, num_processes, batch_size, seed)
        for epoch in (0, 3):
            sampler.set_epoch(epoch)
            for rank in range(num_processes):
                shard = BatchSamplerShard(sampler, num_processes=num_processes, process_index=rank)
                reference_sampler = DistributedSampler(
                    range(num_videos), num_replicas=num_processes, rank=rank, shuffle=True, seed=seed, drop_last=True
                )
                reference_sampler.set_epoch(epoch)
                reference = [b.tolist() for b in DataLoader(range(num_videos), batch_size, sampler=reference_sampler)]
                assert list(shard) == reference, (num_processes, epoch, rank)
                assert len(shard) == opentad_loader_length(num_videos, num_processes, batch_size * num_processes)


def read_log(output_dir):
    return [json.loads(line) for line in (Path(output_dir) / "log.jsonl").read_text().splitlines()]


def check_logged_rates(records, preset_training, steps_per_epoch, warmup_start_lr, eta_min):
    base = {
        "detector": preset_training["detector_lr"],
        "detector_no_decay": preset_training["detector_lr"],
        "adapter": preset_training["adapter_lr"],
    }
    names = list(base)
    expected = opentad_learning_rates(
        [base[name] for name in names],
        preset_training["warmup_epochs"] * steps_per_epoch,
        preset_training["max_epoch"] * steps_per_epoch,
        warmup_start_lr,
        eta_min,
        max(record["step"] for record in records),
    )
    for record in records:
        assert set(record["lr"]) == set(names), record
        reference = dict(zip(names, expected[record["step"] - 1]))
        for name in names:
            assert record["lr"][name] == pytest.approx(reference[name], rel=1e-9, abs=1e-15), (record["step"], name)


def launch_two_processes(data_dir, output_dir, *flags, overrides=()):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "training" / "configs" / "cpu_2proc.yaml"), str(REPO_ROOT / "training" / "run_tad.py"),
        "--preset", "synthetic-tiny", "--data_dir", str(data_dir), "--output_dir", str(output_dir), *flags,
        "--set", *overrides,
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]


@pytest.mark.slow
def test_two_process_run_logs_opentads_learning_rates_and_resumes_exactly(synthetic_data, tmp_path):
    # 8 training videos, global batch 6 on 2 processes: OpenTAD's rank loaders hold 4 videos in batches 3 + 1.
    overrides = [
        *TINY, "model.adapter_layer_indices=[0,1]", "training.global_batch_size=6", "training.warmup_epochs=2",
        "training.warmup_start_lr=1e-5", "training.eta_min=1e-6", "training.logging_steps=1",
    ]
    flags = ["--num_epochs", "3", "--checkpointing_steps", "1"]
    launch_two_processes(synthetic_data, tmp_path / "straight", *flags, overrides=overrides)
    steps_per_epoch = opentad_loader_length(8, 2, 6)
    assert steps_per_epoch == 2
    records = read_log(tmp_path / "straight")
    assert [record["step"] for record in records] == list(range(1, 3 * steps_per_epoch + 1))
    assert [record["epoch"] for record in records] == [0, 0, 1, 1, 2, 2]
    training = run_tad.apply_overrides(run_tad.load_preset("synthetic-tiny"), overrides)["training"]
    check_logged_rates(records, training, steps_per_epoch, warmup_start_lr=1e-5, eta_min=1e-6)
    assert all(math.isfinite(record["loss"]) and not record["skipped"] for record in records)
    # The resolved preset is written beside the run and beside the model card.
    for folder in (tmp_path / "straight", tmp_path / "straight" / "last"):
        assert json.loads((folder / "preset.json").read_text())["training"]["global_batch_size"] == 6

    # The same run stopped after step 3 (mid-epoch; its later checkpoints and model folders removed), resumed on 2
    # processes: same weights and log as the uninterrupted run.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    for name in ("step_4", "step_5", "step_6"):
        shutil.rmtree(tmp_path / "resumed" / "checkpoints" / name)
    for name in ("best", "last"):
        shutil.rmtree(tmp_path / "resumed" / name)
    launch_two_processes(
        synthetic_data, tmp_path / "resumed", *flags, "--resume_from_checkpoint", "latest", overrides=overrides
    )
    assert read_log(tmp_path / "resumed") == records
    expected, actual = model_weights(tmp_path / "straight" / "last"), model_weights(tmp_path / "resumed" / "last")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_accumulation_schedule_log_and_resume(synthetic_data, tmp_path):
    # Global batch 4 in 2 accumulation steps of 2: 4 loader batches per epoch, 2 optimizer steps.
    overrides = ["training.gradient_accumulation_steps=2", "training.logging_steps=2"]
    flags = ["--num_epochs", "3", "--checkpointing_steps", "1"]
    straight = run(synthetic_data, tmp_path / "straight", *flags, overrides=overrides)
    assert straight["global_step"] == 6
    records = read_log(tmp_path / "straight")
    assert [record["step"] for record in records] == [1, 2, 4, 6]
    training = run_tad.apply_overrides(
        run_tad.load_preset("synthetic-tiny"), [*TINY, "model.adapter_layer_indices=[0,1]", *overrides]
    )["training"]
    check_logged_rates(records, training, steps_per_epoch=2, warmup_start_lr=0.0, eta_min=training["eta_min"])

    # Killed while step 4's checkpoint is written (step 4 is logged already), resumed from `latest` (step 3, in the
    # middle of an epoch and after a full accumulation cycle).
    original_save = tad_model.ModelEma.save

    def killed_at_step_4(self, path):
        if path.parent.name == "step_4" + tad_checkpoints.INCOMPLETE_SUFFIX:
            raise KeyboardInterrupt("killed during the save")
        original_save(self, path)

    tad_model.ModelEma.save = killed_at_step_4
    try:
        with pytest.raises(KeyboardInterrupt):
            run(synthetic_data, tmp_path / "resumed", *flags, overrides=overrides)
    finally:
        tad_model.ModelEma.save = original_save
    checkpoints = sorted(path.name for path in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert checkpoints == ["step_1", "step_2", "step_3", "step_4.incomplete"]
    resumed = run(
        synthetic_data, tmp_path / "resumed", *flags, "--resume_from_checkpoint", "latest", overrides=overrides
    )
    assert resumed["global_step"] == 6
    assert read_log(tmp_path / "resumed") == records
    expected, actual = model_weights(tmp_path / "straight" / "last"), model_weights(tmp_path / "resumed" / "last")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


# ----------------------------------------------------------------------------------------------------------------------
# Non-finite steps
# ----------------------------------------------------------------------------------------------------------------------


class CpuGradScalerAccelerator(run_tad.Accelerator):
    """accelerate keeps a GradScaler only for fp16 on an accelerator device; on CPU this gives the run a real one, so
    that fp16's skip path (scaled backward, unscale, inf check, skipped optimizer step) runs as on a GPU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)


def faulty_forward(monkeypatch, faults: dict):
    """Makes training forward passes (counted from 1) fail: "grad" gives infinite gradients (fp16 overflow in the
    backward), "loss" makes the loss itself NaN."""
    from adatad.modeling_adatad import AdaTADForTemporalDetection

    original = AdaTADForTemporalDetection.forward
    calls = []

    def forward(self, *args, **kwargs):
        if not self.training:
            return original(self, *args, **kwargs)
        calls.append(None)
        fault = faults.get(len(calls), faults.get("all"))
        outputs = original(self, *args, **kwargs)
        if fault == "loss":
            outputs["loss"] = outputs.loss * float("nan")
        if fault == "grad":
            outputs.loss.register_hook(lambda grad: grad * float("inf"))
        return outputs

    monkeypatch.setattr(AdaTADForTemporalDetection, "forward", forward)


def test_non_finite_steps_are_skipped_and_counted(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_tad, "Accelerator", CpuGradScalerAccelerator)
    faulty_forward(monkeypatch, {2: "grad", 3: "loss"})
    result = run(
        synthetic_data, tmp_path, "--num_epochs", "3", "--checkpointing_steps", "1",
        overrides=["training.logging_steps=1"],
    )
    assert result["global_step"] == 6 and result["skipped_steps"] == 2
    records = read_log(tmp_path)
    assert [record["skipped"] for record in records] == [False, True, True, False, False, False]
    assert [record["skipped_steps"] for record in records] == [0, 1, 2, 2, 2, 2]
    assert records[2]["loss"] is None and math.isfinite(records[1]["loss"])
    # Both kinds of skipped step halve the fp16 loss scale, as OpenTAD's GradScaler does (it sees both as non-finite
    # gradients); growth needs 2,000 good steps in a row.
    scales = [
        torch.load(tmp_path / "checkpoints" / f"step_{step}" / "scaler.pt", weights_only=True)["scale"]
        for step in (1, 2, 3, 4)
    ]
    assert scales == [2.0**8, 2.0**7, 2.0**6, 2.0**6]
    # A skipped step leaves the weights as they were; the schedule still advances, as OpenTAD's does. (The loss
    # normaliser, a running count of positives updated by every training forward as in OpenTAD, moves on step 2.)
    after_1, after_3 = model_weights_of_checkpoint(tmp_path, 1), model_weights_of_checkpoint(tmp_path, 3)
    for key in after_1.keys() - {"detector.loss_normalizer"}:
        torch.testing.assert_close(after_3[key], after_1[key], rtol=0, atol=0, msg=key)
    training = run_tad.apply_overrides(
        run_tad.load_preset("synthetic-tiny"), [*TINY, "model.adapter_layer_indices=[0,1]"]
    )["training"]
    check_logged_rates(records, training, steps_per_epoch=2, warmup_start_lr=0.0, eta_min=training["eta_min"])


def model_weights_of_checkpoint(output_dir, step):
    return load_file(Path(output_dir) / "checkpoints" / f"step_{step}" / "model.safetensors")


def test_repeated_non_finite_steps_stop_the_run(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_tad, "Accelerator", CpuGradScalerAccelerator)
    monkeypatch.setattr(run_tad, "MAX_CONSECUTIVE_NON_FINITE_STEPS", 3)
    faulty_forward(monkeypatch, {1: None, "all": "grad"})
    # Steps 2-4 are skipped: the checkpoints of steps 2 and 3 hold step 1's weights, which are finite.
    with pytest.raises(
        FloatingPointError,
        match=r"3 non-finite steps in a row; epoch 1, step 4, videos \['.+'\]; the last good checkpoint is .*step_3",
    ):
        run(synthetic_data, tmp_path, "--num_epochs", "3", "--checkpointing_steps", "1")


@pytest.mark.slow
def test_diverged_run_stops_and_keeps_the_last_good_checkpoint(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_tad, "MAX_CONSECUTIVE_NON_FINITE_STEPS", 3)
    with pytest.raises(FloatingPointError) as error:
        run(
            synthetic_data, tmp_path, "--num_epochs", "4", "--checkpointing_steps", "1",
            overrides=["training.detector_lr=1e12", "training.adapter_lr=1e12", "training.warmup_epochs=0",
                       "training.clip_grad_norm=null"],
        )
    message = str(error.value)
    assert "non-finite steps in a row" in message and "last good checkpoint is" in message
    checkpoints = sorted((tmp_path / "checkpoints").glob("step_*"))
    assert checkpoints
    for checkpoint in checkpoints:
        for name, tensor in load_file(checkpoint / "model.safetensors").items():
            assert torch.isfinite(tensor).all(), f"{checkpoint.name}: {name} is not finite"


# ----------------------------------------------------------------------------------------------------------------------
# Output folders, checkpoints and errors
# ----------------------------------------------------------------------------------------------------------------------


def main_args(data_dir, output_dir, *flags):
    return ["--preset", "synthetic-tiny", "--data_dir", str(data_dir), "--output_dir", str(output_dir), *flags,
            "--set", *TINY, "model.adapter_layer_indices=[0,1]"]


def last_error_line(capsys):
    """The one `error:` line a failed run_tad.main printed last, after checking that no traceback came with it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], lines[-3:]
    return lines[-1]


class PlantedPayload:
    """Unpickling it creates a file: the stand-in for code planted in a shared checkpoint folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_a_planted_pickle_runs_nothing(synthetic_data, tmp_path, capsys):
    run(synthetic_data, tmp_path, "--max_train_steps", "1", "--checkpointing_steps", "1")
    checkpoint = tmp_path / "checkpoints" / "step_1"
    marker = tmp_path / "code-ran"
    torch.save(PlantedPayload(marker), checkpoint / "custom_checkpoint_0.pkl")
    capsys.readouterr()
    code = run_tad.main(main_args(synthetic_data, tmp_path, "--num_epochs", "2", "--resume_from_checkpoint", "latest"))
    error = last_error_line(capsys)
    assert code == 2 and not marker.exists()
    assert "custom_checkpoint_0.pkl" in error and "refusing" in error
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_1"]


def test_output_dir_holding_a_run_is_refused(synthetic_data, tmp_path, capsys):
    run(synthetic_data, tmp_path, "--max_train_steps", "1", "--checkpointing_steps", "1")
    weights = tmp_path / "last" / "model.safetensors"
    before = weights.read_bytes()
    capsys.readouterr()
    assert run_tad.main(main_args(synthetic_data, tmp_path, "--max_train_steps", "2")) == 2
    error = last_error_line(capsys)
    assert "already holds files" in error and "--overwrite_output_dir" in error
    assert weights.read_bytes() == before
    assert run_tad.main(main_args(synthetic_data, tmp_path, "--max_train_steps", "2", "--overwrite_output_dir")) == 0
    assert [record["step"] for record in read_log(tmp_path)] == [1]  # the earlier run's log went with it
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_2"]


@pytest.mark.slow
def test_resume_restores_the_best_score(synthetic_data, tmp_path):
    evaluate_every_epoch = ["training.val_start_epoch=0", "training.val_interval=1"]
    run(synthetic_data, tmp_path, "--num_epochs", "1", overrides=evaluate_every_epoch)
    best = json.loads((tmp_path / "best" / "eval_results.json").read_text())
    assert best["epoch"] == 1
    # A best score no evaluation can beat (mAP <= 1), so that the test does not depend on which epoch scores higher:
    # the resumed run's evaluation must leave best/ alone.
    state_file = tmp_path / "checkpoints" / "step_2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["best_average_mAP"] == best["average_mAP"] and state["best_epoch"] == 1
    state_file.write_text(json.dumps({**state, "best_average_mAP": 1.0}))
    resumed = run(
        synthetic_data, tmp_path, "--num_epochs", "2", "--resume_from_checkpoint", "latest",
        overrides=evaluate_every_epoch,
    )
    assert resumed["best_average_mAP"] == 1.0 and resumed["last"] is not None
    assert json.loads((tmp_path / "best" / "eval_results.json").read_text()) == best


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "training.detector_lr=-1"], r"`training\.detector_lr` must be > 0, got -1"),
        (["--set", "data.on_video_error=ignore"], r"`data\.on_video_error` must be one of \['raise', 'skip'\]"),
        (["--set", "training.gradient_accumulation_steps=3"], r"global_batch_size` \(4\) must be divisible by"),
        (["--num_epochs", "40"], r"--num_epochs 40 goes past the schedule's `training\.max_epoch` \(30\)"),
        (["--resume_from_checkpoint", "no/such/checkpoint"], r"no/such/checkpoint: no such folder"),
        (["--pretrained_model", "no/such/model"], r"no/such/model is not a model folder \(no config\.json\)"),
    ],
)
def test_user_errors_end_with_one_line(synthetic_data, tmp_path, capsys, flags, message):
    argv = [
        "--preset", "synthetic-tiny", "--data_dir", str(synthetic_data), "--output_dir", str(tmp_path / "run"), *flags
    ]
    assert run_tad.main(argv) == 2
    error = last_error_line(capsys)
    assert re.search(message, error), error
    with pytest.raises((run_tad.RunError, run_tad.PresetError)):
        run_tad.main([*argv, "--debug"])


def test_recipe_drift_warning_names_the_accumulation_that_restores_the_paper_batch():
    preset = run_tad.load_preset("e2e_thumos_videomae_s_768x1_160_adapter")  # 2 GPUs x 1 video in the paper
    assert run_tad.recipe_drift_warning(preset, 2, num_processes=2, per_device_batch_size=1) is None
    warning = run_tad.recipe_drift_warning(preset, 2, num_processes=1, per_device_batch_size=2)
    assert "1 process(es) x 2 videos x 1 accumulation" in warning and "2 GPUs x 1 videos = 2" in warning
    assert warning.endswith("--set training.global_batch_size=2 training.gradient_accumulation_steps=2")
    assert "run on 2 processes" in run_tad.recipe_drift_warning(preset, 2, num_processes=4, per_device_batch_size=1)
    accumulating = run_tad.apply_overrides(preset, ["training.gradient_accumulation_steps=2"])
    assert run_tad.recipe_drift_warning(accumulating, 2, num_processes=1, per_device_batch_size=1) is None
    synthetic = run_tad.load_preset("synthetic-tiny")  # no paper run
    assert run_tad.recipe_drift_warning(synthetic, 4, num_processes=3, per_device_batch_size=1) is None


def test_ddp_settings_reach_accelerate():
    preset = run_tad.load_preset("e2e_thumos_videomae_s_768x1_160_adapter")
    # One AcceleratorState per process: keep the precision of the other tests' accelerators.
    args = run_tad.parse_args(["--preset", preset["name"], "--mixed_precision", "no"])
    handler = run_tad.build_accelerator(args, preset, Path("unused")).ddp_handler
    assert handler.static_graph is True and handler.comm_hook == run_tad.DDPCommunicationHookType.FP16
    frozen = run_tad.apply_overrides(preset, ["training.ddp_fp16_compress=false", "training.ddp_static_graph=false"])
    handler = run_tad.build_accelerator(args, frozen, Path("unused")).ddp_handler
    assert handler.static_graph is False and handler.comm_hook == run_tad.DDPCommunicationHookType.NO


def test_start_up_check_stops_on_data_errors_with_the_report(synthetic_data, tmp_path, capsys):
    data_dir = tmp_path / "data"
    shutil.copytree(synthetic_data, data_dir)
    missing = sorted((data_dir / "videos").iterdir())[0]
    missing.unlink()
    argv = ["--preset", "synthetic-tiny", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "run"),
            "--set", *TINY, "model.adapter_layer_indices=[0,1]"]
    assert run_tad.main(argv) == 2
    error = capsys.readouterr().err
    assert "missing_video" in error and missing.name in error
    assert error.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "run" / "checkpoints").exists()
    # With `data.missing_videos=skip` the same data passes the check (the missing video becomes a warning).
    preset = presets.apply_overrides(
        presets.load_preset("synthetic-tiny"), [f"data.root={data_dir}", "data.missing_videos=skip"]
    )
    report = check_training_data(preset, presets.resolve_data_paths(preset))
    assert report.warnings["missing_video"] == 1


# ----------------------------------------------------------------------------------------------------------------------
# Nothing lost: --eval_only's output folder, missing weights, an evaluation interrupted or failing, a class missing
# from the validation split
# ----------------------------------------------------------------------------------------------------------------------


def drop_tensors(source, target, dropped):
    """A copy of the model folder `source` whose weights lack the tensors whose names contain any of `dropped`."""
    from safetensors.torch import save_file

    shutil.copytree(source, target)
    weights = model_weights(target)
    removed = sorted(key for key in weights if any(part in key for part in dropped))
    save_file({k: v for k, v in weights.items() if k not in removed}, target / "model.safetensors",
              metadata={"format": "pt"})
    return removed


@pytest.mark.slow
def test_eval_only_and_pretrained_model_refuse_what_would_lose_or_fake_results(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(synthetic_data, run_dir, "--max_train_steps", "1")
    before = {p: p.read_bytes() for p in run_dir.glob("*.json")}
    assert {"predictions.json", "ground_truth.json"} <= {p.name for p in before}
    capsys.readouterr()
    # --eval_only into the folder of a finished run would replace its predictions.
    assert run_tad.main(main_args(synthetic_data, run_dir, "--eval_only", "--model", str(run_dir / "last"))) == 2
    error = last_error_line(capsys)
    assert "already holds files" in error and "--overwrite_output_dir" in error
    assert {p: p.read_bytes() for p in run_dir.glob("*.json")} == before

    # A model folder without its classification head: refused, naming the tensors, nothing written.
    removed = drop_tensors(run_dir / "last", tmp_path / "headless", ["classification_head"])
    assert removed == ["detector.head.classification_head.bias", "detector.head.classification_head.weight"]
    evaluation = tmp_path / "eval"
    headless = ["--eval_only", "--model", str(tmp_path / "headless")]
    assert run_tad.main(main_args(synthetic_data, evaluation, *headless)) == 2
    error = last_error_line(capsys)
    assert all(name in error for name in removed) and "lack 2 tensor(s)" in error
    assert not evaluation.exists() or not any(evaluation.iterdir())

    # --pretrained_model: a folder without a detector is a backbone to train on (its detector is new); one without a
    # backbone tensor is refused, naming only that tensor.
    drop_tensors(run_dir / "last", tmp_path / "backbone-only", ["detector."])
    flags = ["--max_train_steps", "1", "--pretrained_model", str(tmp_path / "backbone-only")]
    assert run_tad.main(main_args(synthetic_data, tmp_path / "from-backbone", *flags)) == 0
    assert "detector/adapter tensors start from their initial values" in capsys.readouterr().out
    (broken,) = drop_tensors(run_dir / "last", tmp_path / "broken-backbone", ["patch_embeddings.projection.weight"])
    flags = ["--max_train_steps", "1", "--pretrained_model", str(tmp_path / "broken-backbone")]
    assert run_tad.main(main_args(synthetic_data, tmp_path / "from-broken", *flags)) == 2
    error = last_error_line(capsys)
    assert f"lack 1 tensor(s) of the model (only detector.*, *adapter* may be new): {broken};" in error


def test_repeated_set_flags_keep_every_override():
    args = run_tad.parse_args(["--preset", "synthetic-tiny", "--set", "training.seed=7", "data.num_workers=0",
                               "--set", "training.detector_lr=0.5", "--set", "training.seed=8"])
    preset, _ = run_tad.resolve_preset(args)
    assert (preset["training"]["seed"], preset["data"]["num_workers"], preset["training"]["detector_lr"]) == (8, 0, 0.5)


class Interrupted(BaseException):
    """Stands for a kill (Ctrl-C, a preempted job): not an error any code path catches."""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["evaluation", "best", "error"])
def test_an_evaluation_cut_short_is_done_again_on_resume(synthetic_data, tmp_path, monkeypatch, where):
    real_evaluate, real_save_preset = run_tad.evaluate, tad_checkpoints.save_preset

    def evaluate(*args, **kwargs):
        if where == "error":
            raise ValueError("the evaluation failed")
        raise Interrupted

    def save_preset(preset, path):
        real_save_preset(preset, path)
        if ".best.incomplete" in str(path):  # best/ half written: weights and processor, not yet renamed
            raise Interrupted

    if where == "best":
        monkeypatch.setattr(tad_checkpoints, "save_preset", save_preset)
    else:
        monkeypatch.setattr(run_tad, "evaluate", evaluate)
    # A checkpoint every step, so that the step's checkpoint exists before its evaluation starts.
    with pytest.raises(ValueError if where == "error" else Interrupted):
        run(synthetic_data, tmp_path, "--num_epochs", "1", "--checkpointing_steps", "1")
    (checkpoint,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.name == "step_2"]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["pending_evaluation_epoch"] == 1
    assert not (tmp_path / "best").exists() and not (tmp_path / "predictions.json").exists()

    monkeypatch.setattr(run_tad, "evaluate", real_evaluate)
    monkeypatch.setattr(tad_checkpoints, "save_preset", real_save_preset)
    resumed = run(synthetic_data, tmp_path, "--num_epochs", "1", "--resume_from_checkpoint", "latest")
    assert resumed["global_step"] == 2 and resumed["last"] is not None
    for folder in ("best", "last"):
        assert json.loads((tmp_path / folder / "eval_results.json").read_text())["epoch"] == 1
    predictions = json.loads((tmp_path / "predictions.json").read_text())["results"]
    assert predictions == resumed["last"]["predictions"]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["pending_evaluation_epoch"] is None
    assert not [p.name for p in tmp_path.rglob("*") if "incomplete" in p.name or "previous" in p.name]


@pytest.mark.slow
def test_a_class_missing_from_the_validation_split_is_left_out_with_a_count(synthetic_data, tmp_path, caplog):
    data_dir = tmp_path / "data"
    shutil.copytree(synthetic_data, data_dir)
    annotation_file = data_dir / "annotations.json"
    content = json.loads(annotation_file.read_text())
    missing = "shrinking"
    for video in content["database"].values():
        if video["subset"] == "validation":
            video["annotations"] = [a for a in video["annotations"] if a["label"] != missing]
    annotation_file.write_text(json.dumps(content))
    validation_labels = {a["label"] for v in content["database"].values() if v["subset"] == "validation"
                         for a in v["annotations"]}
    assert missing not in validation_labels and validation_labels

    with caplog.at_level("WARNING"):
        result = run(data_dir, tmp_path / "run", "--num_epochs", "1")
    metrics = result["last"]
    assert set(metrics["ap_per_class"]) == validation_labels
    # The warning counts exactly the predictions of the missing class (counted here from the written predictions).
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())["results"]
    dropped = sum(d["label"] == missing for video in predictions.values() for d in video)
    assert dropped > 0
    assert f"{dropped} predictions of 1 class(es) without ground truth" in caplog.text and missing in caplog.text
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
