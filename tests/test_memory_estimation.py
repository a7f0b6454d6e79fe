"""The arithmetic of `adatad.memory_estimation` (parameter counts, memory parts, the command), its agreement with the
recorded side-by-side peaks of the AdaTAD step, and the CPU allocator setting. The comparison with the steady-state
peaks of `benchmarks/bench_train.py` is `benchmarks/bench_memory_estimate.py` (too slow for a unit test)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adatad import AdaTADConfig, AdaTADForTemporalDetection
from adatad.presets import SHIPPED_PRESETS
from adatad.estimate_memory import main
from adatad.memory_estimation import (
    BLOCK_TENSORS_FROZEN,
    DETECTOR_TENSORS_PER_STEP,
    RECOMPUTED_BLOCK_TENSORS_FROZEN,
    SIDE_ADAPTER_BOTTLENECK_TENSORS,
    estimate_training_memory,
    parameter_counts,
    trainable_parameters,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

TINY = dict(
    backbone_config=dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=16,
        num_frames=8, tubelet_size=2,
    ),
    num_frames=32, image_size=32, feature_length=16, projection_hidden_size=24, projection_arch=(2, 1, 2),
    projection_num_heads=4, head_hidden_size=16, max_seq_len=16, fpn_strides=(1, 2, 4),
    fpn_regression_ranges=((0, 4), (4, 8), (8, 10000)), num_labels=5,
)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(tuning_mode="adapter"),
        dict(tuning_mode="adapter", adapter_type="plain", adapter_layer_indices=[1, 2]),
        dict(tuning_mode="side"),
        dict(tuning_mode="frozen"),
        dict(tuning_mode="full", projection_path_drop_rate=0.0, head_num_convs=3),
    ],
    ids=["adapter", "plain", "side", "frozen", "full"],
)
def test_parameter_counts_match_the_model(overrides):
    fields = {**TINY, **overrides}
    model = AdaTADForTemporalDetection(AdaTADConfig(**fields))
    assert sum(parameter_counts(fields).values()) == sum(p.numel() for p in model.parameters())
    assert trainable_parameters(fields) == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_paper_preset_counts_videomae_s():
    preset = json.loads((SHIPPED_PRESETS / "e2e_thumos_videomae_s_768x1_160_adapter.json").read_text())
    # AdaTADForTemporalDetection of this preset: 49,581,736 parameters, 27,702,568 trainable (bench_train.py).
    assert sum(parameter_counts(preset["model"]).values()) == 49_581_736
    assert trainable_parameters(preset["model"]) == 27_702_568


def test_memory_parts_follow_the_parameters_and_the_tokens():
    fields = dict(tuning_mode="adapter", num_frames=256, feature_length=256, max_seq_len=256)
    plain = estimate_training_memory(fields)
    trainable, total = plain.trainable_parameters, plain.total_parameters
    assert (plain.weights, plain.gradients, plain.optimizer_states) == (4 * total, 4 * trainable, 8 * trainable)
    assert plain.total == plain.weights + plain.gradients + plain.optimizer_states + plain.activations

    tokens = 256 // 2 * 10 * 10  # 160x160 frames, 16x16 patches, tubelets of 2
    token_tensor = tokens * 384 * 4
    detector = DETECTOR_TENSORS_PER_STEP * 256 * 512 * 4
    assert plain.activations == round(12 * BLOCK_TENSORS_FROZEN * token_tensor) + detector
    # Checkpointing: one kept tensor per trainable block (12), then either the detector's backward or the recomputed
    # step, one after the other.
    checkpointed = estimate_training_memory(fields, gradient_checkpointing=True)
    recomputed = round(RECOMPUTED_BLOCK_TENSORS_FROZEN * token_tensor)
    assert checkpointed.activations == round(12 * token_tensor) + max(recomputed, detector)
    assert checkpointed.activations < plain.activations
    # Twice the videos: twice the activations, the same parameters.
    doubled = estimate_training_memory(fields, batch_size=2, gradient_checkpointing=True)
    assert doubled.activations == 2 * checkpointed.activations
    assert doubled.optimizer_states == checkpointed.optimizer_states
    # bf16 autocast: half-size activations, a cached bf16 copy of the trainable weights.
    half = estimate_training_memory(fields, precision="bf16", gradient_checkpointing=True)
    assert half.activations * 2 == checkpointed.activations
    assert half.weights == checkpointed.weights + 2 * trainable
    # More frames than the preset: only the backbone part grows.
    longer = estimate_training_memory(fields, num_frames=512)
    assert longer.activations - detector == 2 * (plain.activations - detector)


@pytest.mark.parametrize("results", ["bench_vs_opentad_256_quarters.json", "bench_vs_opentad_768_quarters.json"])
def test_checkpointed_estimate_within_15_percent_of_the_measured_adatad_step(results):
    # The harness measures the first step: its peak holds activations and gradients, AdamW's states come after.
    report = json.loads((RESULTS / results).read_text())
    frames = report["config"]["frames"]
    measured_mib = report["summary"]["adatad.adatad.mem_mb"]  # the harness's "MB" are MiB of RSS
    estimate = estimate_training_memory(
        dict(tuning_mode="adapter", num_frames=frames, feature_length=frames, max_seq_len=frames),
        gradient_checkpointing=True,
    )
    estimated_mib = (estimate.activations + estimate.gradients) / 2**20
    assert abs(estimated_mib / measured_mib - 1) <= 0.15, (frames, measured_mib, estimated_mib)


def test_side_and_frozen_keep_no_block_activations():
    frozen = estimate_training_memory(dict(tuning_mode="frozen"), gradient_checkpointing=True)
    assert frozen.activations == DETECTOR_TENSORS_PER_STEP * 768 * 512 * 4
    side = estimate_training_memory(dict(tuning_mode="side"))
    token_tensor = 384 * 100 * 384 * 4
    bottleneck = SIDE_ADAPTER_BOTTLENECK_TENSORS * 96 / 384
    assert side.activations == frozen.activations + round(6 * (1 + bottleneck) * token_tensor)
    side_checkpointed = estimate_training_memory(dict(tuning_mode="side"), gradient_checkpointing=True)
    assert side_checkpointed.activations == frozen.activations + round((6 + bottleneck) * token_tensor)


def test_command_prints_the_parts_and_json(capsys):
    assert main(["--preset", "e2e_thumos_videomae_s_768x1_160_adapter"]) == 0
    text = capsys.readouterr().out
    for word in ("weights", "gradients", "optimizer states", "activations", "peak (total)", "fp16", "checkpointing on"):
        assert word in text
    assert main(["--preset", "e2e_thumos_videomae_s_768x1_160_adapter", "--num-frames", "256", "--batch-size", "2",
                 "--precision", "fp32", "--no-gradient-checkpointing", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = estimate_training_memory(
        json.loads((SHIPPED_PRESETS / "e2e_thumos_videomae_s_768x1_160_adapter.json").read_text())["model"],
        batch_size=2, precision="fp32", gradient_checkpointing=False, num_frames=256,
    )
    assert result["total"] == expected.total and result["num_frames"] == 256 and result["batch_size"] == 2


def test_command_errors_name_the_problem(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "no_such_preset"])
    assert exit_info.value.code == 2 and "no_such_preset" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit):
        main(["--preset", str(broken)])
    assert "broken.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--preset", "e2e_thumos_videomae_s_768x1_160_adapter", "--num-frames", "100"])
    assert "multiple of the chunk length 16" in capsys.readouterr().err


def test_fixed_mmap_threshold_returns_freed_blocks_to_the_system():
    # 2 MiB blocks after a 4 MiB block was freed: glibc's adaptive threshold (now 4 MiB) serves them from the heap,
    # where they stay resident once freed while a later block pins the heap's top; with the threshold fixed at
    # 128 KiB each block is its own mapping and goes back to the system when freed.
    program = textwrap.dedent("""
        import ctypes, os, sys
        from adatad.memory_estimation import limit_cpu_heap_fragmentation
        if sys.argv[1] == "fixed":
            assert limit_cpu_heap_fragmentation()
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        big = libc.malloc(4 << 20); ctypes.memset(big, 1, 4 << 20); libc.free(big)
        blocks = []
        for _ in range(20):
            block = libc.malloc(2 << 20); ctypes.memset(block, 1, 2 << 20); blocks.append(block)
        before = rss()
        for block in blocks[:-1]:
            libc.free(block)
        print((before - rss()) >> 20)
    """)
    released = {}
    for setting in ("adaptive", "fixed"):
        result = subprocess.run([sys.executable, "-c", program, setting], capture_output=True, text=True, check=True)
        released[setting] = int(result.stdout)
    assert released["fixed"] >= 36, released  # 19 blocks of 2 MiB back to the system
    assert released["adaptive"] <= 4, released  # kept in the heap
