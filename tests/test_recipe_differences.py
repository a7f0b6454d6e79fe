"""Where the training recipe used to differ from OpenTAD's: data order, GradScaler back-off, paper presets."""

import json
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT
from torch.utils.data import DataLoader, DistributedSampler

from adatad import presets

sys.path.insert(0, str(REPO_ROOT / "training"))
import run_tad  # noqa: E402
from tiny_run_overrides import TINY_RUN_OVERRIDES  # noqa: E402


def test_training_order_is_opentads_default_sampler_seed_whatever_the_run_seed():
    # OpenTAD's build_dataloader never passes `seed` to DistributedSampler: torch's default 0 in every run.
    preset = presets.apply_overrides(presets.load_preset("synthetic-tiny"), ["training.global_batch_size=2"])
    args = SimpleNamespace(num_workers=0, eval_batch_size=1)
    accelerator = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    videos = list(range(9))
    _, _, batch_sampler = run_tad.build_dataloaders(preset, args, accelerator, videos, videos, seed=42)
    for epoch in (0, 2):
        batch_sampler.set_epoch(epoch)
        reference = DistributedSampler(videos, num_replicas=1, rank=0, shuffle=True, drop_last=True)
        reference.set_epoch(epoch)
        assert list(batch_sampler) == [batch.tolist() for batch in DataLoader(videos, 2, sampler=reference)]


def test_paper_preset_without_pretrained_model_is_one_line_and_exit_2(tmp_path, capsys):
    argv = ["--preset", "e2e_thumos_videomae_s_768x1_160_adapter", "--data_dir", str(tmp_path),
            "--output_dir", str(tmp_path / "run")]
    assert run_tad.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: preset e2e_thumos_videomae_s_768x1_160_adapter starts from")
    assert "--pretrained_model" in err[0] and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_best_and_last_say_what_they_hold_and_the_extra_last_evaluation_is_labelled(tmp_path):
    from adatad.synthetic import generate_synthetic_dataset

    data = tmp_path / "data"
    generate_synthetic_dataset(data, num_train_videos=4, num_val_videos=2, num_frames=48, frame_size=32, seed=3)
    # OpenTAD's rule with val_start_epoch 0 and val_interval 2 scores epoch 2 only; epoch 3 (the last) is extra.
    overrides = [*TINY_RUN_OVERRIDES, "data.window_size=32", "training.max_epoch=4", "training.end_epoch=4",
                 "model.adapter_layer_indices=[0,1]", "training.val_start_epoch=0",
                 "training.val_interval=2"]
    argv = ["--preset", "synthetic-tiny", "--data_dir", str(data), "--output_dir", str(tmp_path / "run"),
            "--num_epochs", "3", "--set", *overrides]
    run_tad.training_function(run_tad.parse_args(argv))
    last = json.loads((tmp_path / "run" / "last" / "eval_results.json").read_text())
    assert last["epoch"] == 3 and last["opentad_evaluates_this_epoch"] is False
    assert last["checkpoint"].startswith("This folder (last/) holds the model after the last trained epoch")
    best = json.loads((tmp_path / "run" / "best" / "eval_results.json").read_text())
    assert best["opentad_evaluates_this_epoch"] is (best["epoch"] == 2)
    assert "highest average mAP on the 'validation' subset" in best["checkpoint"]
    assert best["checkpoint"] in (tmp_path / "run" / "best" / "README.md").read_text()
