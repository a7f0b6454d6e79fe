#!/usr/bin/env python
"""One command for a CUDA machine: parity on the GPU, a bf16 training step at 768 frames, the memory estimate against
it, inference frames/s, and whether the data loader keeps up with the model. Writes one JSON.

    python benchmarks/gpu_check.py --out gpu_check.json            # a CUDA machine, under 10 minutes
    python benchmarks/gpu_check.py --smoke --out smoke.json        # the same steps on CPU, tiny sizes (tests)

Steps (each one's outcome is recorded, a failing step does not stop the others):

1. `parity`: the OpenTAD parity tests of `tests/test_opentad_parity.py` (backbone taps, outputs and evaluation losses,
   a training step's losses and gradients) on every fixture folder, with the model and tensors on the GPU (fp32,
   TF32 off, the tests' tolerances).
2. `training_step`: the preset `e2e_thumos_videomae_s_768x1_160_adapter` (ViT-S, adapters, activation checkpointing)
   with random weights, its per-GPU batch of 768-frame videos, AdamW, bf16 autocast: median step time and
   `torch.cuda.max_memory_allocated` of a steady-state step (AdamW states alive). With `AdaTADConfig.mlp_row_block_size`
   (when the configuration has it) both with the configured row blocks and with VideoMAE's plain MLP (None).
3. `memory_estimate`: `adatad.memory_estimation.estimate_training_memory` for the same run, against step 2's peak.
4. `inference`: frames/s of the model alone (bf16 autocast, no grad, the preset's evaluation batch).
5. `data_pipeline`: frames/s of the training loader (`TemporalDetectionTransform`, uint8 rows, pinned memory) with
   the preset's `data.num_workers` on a generated 3-minute 320x240 video, against the training step's frames/s:
   `keeps_up` says whether the loader delivers frames faster than the model consumes them.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "training"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(HERE))

PRESET = "e2e_thumos_videomae_s_768x1_160_adapter"
SMOKE_PRESET = "synthetic-tiny"


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


# ----------------------------------------------------------------------------------------------------------------------
# 1. Parity on the device
# ----------------------------------------------------------------------------------------------------------------------


def check_parity(device: torch.device, smoke: bool) -> dict:
    import test_opentad_parity as parity
    from conftest import opentad_fixture_dirs

    def to_device(tensors: dict) -> dict:
        return {name: tensor.to(device) for name, tensor in tensors.items()}

    class DeviceFixture(parity.Fixture):
        def __init__(self, folder):
            super().__init__(folder)
            self.inputs, self.outputs, self.grads = (to_device(t) for t in (self.inputs, self.outputs, self.grads))

        def build_model(self):
            return super().build_model().to(device)

    tests = [parity.test_backbone_matches_opentad, parity.test_model_outputs_and_eval_loss_match_opentad,
             parity.test_training_step_losses_and_gradients_match_opentad]
    folders = opentad_fixture_dirs()[:1] if smoke else opentad_fixture_dirs()
    results = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for folder in folders:
            fixture = DeviceFixture(folder)
            for test in tests:
                name = f"{folder.name}::{test.__name__}"
                try:
                    test(fixture)
                    results[name] = "passed"
                except AssertionError as error:
                    results[name] = f"FAILED: {str(error).splitlines()[0][:300]}"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"device": str(device), "tests": results, "passed": all(r == "passed" for r in results.values())}


# ----------------------------------------------------------------------------------------------------------------------
# 2-4. Training step, memory estimate, inference
# ----------------------------------------------------------------------------------------------------------------------


def random_batch(config, batch_size: int, device: torch.device, processor) -> dict:
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch_size, config.num_frames, 3, config.image_size, config.image_size),
                           dtype=torch.uint8, generator=generator)
    length = config.feature_length
    labels = []
    for _ in range(batch_size):
        longest = max(2, length // 8)
        starts = torch.randint(0, length - longest, (4,), generator=generator).float()
        lengths = torch.randint(1, longest, (4,), generator=generator).float()
        labels.append({"segments": torch.stack([starts, starts + lengths], dim=1).to(device),
                       "labels": torch.randint(0, config.num_labels, (4,), generator=generator).to(device)})
    return {
        # uint8 to the device, normalised there, as run_tad.py does
        "pixel_values": processor.normalize_pixel_values(frames.to(device, non_blocking=True)),
        "masks": torch.ones(batch_size, length, dtype=torch.bool, device=device),
        "labels": labels,
    }


def build_model(preset: dict, device: torch.device, mlp_row_block_size="preset"):
    from adatad.presets import build_model_config

    from adatad.modeling_adatad import AdaTADForTemporalDetection

    config = build_model_config(preset)
    if mlp_row_block_size != "preset":
        config.mlp_row_block_size = mlp_row_block_size
    torch.manual_seed(0)
    model = AdaTADForTemporalDetection(config).to(device)
    if preset["training"]["gradient_checkpointing"]:
        model.activation_checkpointing_enable()
    return model


def training_step(preset: dict, device: torch.device, dtype, batch_size: int, steps: int, processor,
                  mlp_row_block_size="preset") -> dict:
    model = build_model(preset, device, mlp_row_block_size).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = random_batch(model.config, batch_size, device, processor)
    times = []
    for step in range(steps + 1):  # step 0 creates AdamW's states; the peak is measured on the steady state
        if step == 1:
            reset_peak(device)
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(batch["pixel_values"], masks=batch["masks"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step:
            times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    result = {
        "mlp_row_block_size": getattr(model.config, "mlp_row_block_size", "not a setting of this version"),
        "batch_size": batch_size, "frames": model.config.num_frames, "step_times_s": times, "step_time_s": step_time,
        "training_frames_per_s": batch_size * model.config.num_frames / step_time,
        "max_memory_allocated_bytes": peak_bytes(device), "loss": float(loss.detach()),
    }
    del model, optimizer, batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def inference(preset: dict, device: torch.device, dtype, batch_size: int, repeats: int, processor) -> dict:
    model = build_model(preset, device).eval()
    batch = random_batch(model.config, batch_size, device, processor)
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for repeat in range(repeats + 1):  # the first call warms up (kernels, allocator)
            synchronize(device)
            start = time.perf_counter()
            model(batch["pixel_values"], masks=batch["masks"])
            synchronize(device)
            if repeat:
                times.append(time.perf_counter() - start)
    frames = batch_size * model.config.num_frames
    return {"batch_size": batch_size, "frames_per_s": frames / statistics.median(times), "times_s": times}


def memory_estimate(preset: dict, batch_size: int, precision: str, measured: int | None) -> dict:
    from adatad.memory_estimation import estimate_training_memory

    estimate = estimate_training_memory(preset["model"], batch_size=batch_size, precision=precision,
                                        gradient_checkpointing=preset["training"]["gradient_checkpointing"])
    result = {"estimate": estimate.as_dict(), "estimate_total_bytes": estimate.total}
    if measured:
        result["measured_bytes"] = measured
        result["estimate_over_measured"] = estimate.total / measured
    return result


# ----------------------------------------------------------------------------------------------------------------------
# 5. Data pipeline with the preset's loader workers
# ----------------------------------------------------------------------------------------------------------------------


def data_pipeline(preset: dict, processor, device: torch.device, video: Path, batches: int) -> dict:
    import datasets
    from torch.utils.data import DataLoader

    from adatad.annotations import annotation_features
    from adatad.dataset_transforms import TemporalDetectionTransform, collate_temporal_detection

    import decord

    reader = decord.VideoReader(str(video), num_threads=1)
    num_frames, fps = len(reader), float(reader.get_avg_fps())
    del reader
    duration = num_frames / fps
    row = {"video_id": video.stem, "video_path": str(video), "duration": duration, "fps": fps,
           "num_frames": num_frames, "subset": "training", "labels": [0, 0],
           "segments": [[0.1 * duration, 0.3 * duration], [0.6 * duration, 0.8 * duration]]}
    batch_size = max(1, preset["training"]["global_batch_size"] // max(1, preset["training"]["reference_num_gpus"]))
    workers = preset["data"]["num_workers"]
    warm_up = max(1, workers)  # untimed: worker start-up and the first batch of each
    rows = datasets.Dataset.from_list([row] * ((batches + warm_up) * batch_size),
                                      features=annotation_features(["action"]))
    transform = TemporalDetectionTransform(processor, mode="train", seed=0, return_uint8=True)
    loader = DataLoader(rows.with_transform(transform), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_temporal_detection, pin_memory=device.type == "cuda")
    iterator = iter(loader)
    for _ in range(warm_up):
        next(iterator)
    start, frames = time.perf_counter(), 0
    for batch in iterator:
        pixel_values = batch["pixel_values"].to(device, non_blocking=True)
        frames += pixel_values.shape[0] * pixel_values.shape[1]
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"num_workers": workers, "batch_size": batch_size, "frames": frames, "seconds": elapsed,
            "frames_per_s": frames / elapsed, "video": {"frames": num_frames, "fps": fps}}


# ----------------------------------------------------------------------------------------------------------------------


def run_step(report: dict, name: str, function, *args, **kwargs):
    start = time.perf_counter()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        report[name] = function(*args, **kwargs)
    except Exception as error:  # one failing check must not hide the others' results
        report[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
    report[name]["seconds"] = time.perf_counter() - start
    print(f"[gpu_check] {name}: {json.dumps(report[name])[:400]}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--smoke", action="store_true",
                        help=f"CPU, preset {SMOKE_PRESET}, fp32, one parity fixture, a short video (for tests)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--video", type=Path, default=None, help="video for the loader check (default: generated)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from adatad.presets import load_preset, processor_kwargs

    from adatad.processing_adatad import AdaTADVideoProcessor

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if args.smoke:
        torch.set_num_threads(1)  # tiny sizes: threads would only wait on each other on a busy machine
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or --smoke on CPU")
    preset = load_preset(SMOKE_PRESET if args.smoke else PRESET)
    dtype, precision = (None, "fp32") if args.smoke else (torch.bfloat16, "bf16")
    batch_size = max(1, preset["training"]["global_batch_size"] // max(1, preset["training"]["reference_num_gpus"]))
    processor = AdaTADVideoProcessor(**processor_kwargs(preset))
    report = {
        "command": " ".join(sys.argv), "preset": preset["name"], "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "precision": precision, "smoke": args.smoke,
    }
    started = time.perf_counter()
    run_step(report, "parity", check_parity, device, args.smoke)

    from adatad.configuration_adatad import AdaTADConfig

    variants = ["preset"]
    if "mlp_row_block_size" in AdaTADConfig().to_dict():
        variants.append(None)  # VideoMAE's plain MLP, for comparison
    for variant in variants:
        name = "training_step" if variant == "preset" else "training_step_plain_mlp"
        run_step(report, name, training_step, preset, device, dtype, batch_size, args.steps, processor, variant)
    run_step(report, "memory_estimate", memory_estimate, preset, batch_size, precision,
             report["training_step"].get("max_memory_allocated_bytes"))
    run_step(report, "inference", inference, preset, device, dtype, batch_size, args.steps, processor)
    with tempfile.TemporaryDirectory() as folder:
        video = args.video
        if video is None:
            from bench_pipeline import make_video

            video = Path(folder) / "thumoslike.mp4"
            make_video(video, seconds=4 if args.smoke else 180)
        run_step(report, "data_pipeline", data_pipeline, preset, processor, device, video, 2 if args.smoke else 8)
    model_rate = report["training_step"].get("training_frames_per_s")
    data_rate = report["data_pipeline"].get("frames_per_s")
    if model_rate and data_rate:
        report["data_pipeline"]["keeps_up"] = data_rate >= model_rate
        report["data_pipeline"]["data_over_training_frames_per_s"] = data_rate / model_rate
    report["total_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    partial.replace(args.out)
    print(f"[gpu_check] wrote {args.out} in {report['total_seconds']:.0f} s")
    return 0 if all("error" not in report[k] for k in ("parity", "training_step", "inference", "data_pipeline")) else 1


if __name__ == "__main__":
    sys.exit(main())
