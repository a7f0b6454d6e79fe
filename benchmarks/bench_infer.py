"""Inference throughput: the `temporal-action-detection` pipeline end to end vs the model alone.

Setting (VideoMAE-S-like, random weights: the cost does not depend on the values): ViT-S (12 layers, hidden 384,
6 heads, chunks of 16 frames) at 160x160 with the ActionFormer detector, `--window-frames` frames per window
(scale factor 1), on a real clip read every `--snippet-stride` frames (default: `demo.mp4`, 280 frames, stride 2:
140 snippets -> 2 overlapping windows of 128 frames).

For each tuning mode and precision, `--repeats` times, alternating:

- pipeline: `pipe(video)` = decode + transforms (background thread) + model + per-window post-processing +
  sliding-window merge (worker thread); the time of each stage is recorded too (stages overlap, so their sum
  can exceed the wall time; `overlap_s` = sum of stages - wall time, i.e. stage time hidden behind others);
- model alone: the same windows, decoded beforehand (`processor.preprocess`), through `model(...)` in batches
  of `--batch-size`, same autocast (run after the pipeline in even repeats, before it in odd ones).

Throughput = model-input frames (windows x frames per window) per second; the ratio pipeline / model alone is
the share of model throughput the pipeline keeps (goal >= 90%). `adapter`/`frozen`/`full` run the same
inference graph (adapters in every block; frozen/full differ only in what trains), `side` runs side adapters
on the tapped half of the blocks. Precision `bf16`/`fp16` = `torch.autocast` on the model call (fp16 on CUDA
only). The machine may be shared: `os.getloadavg()` is recorded around every run and medians are reported.

    python benchmarks/bench_infer.py                               # adapter + side, fp32 + bf16, CPU (or CUDA)
    python benchmarks/bench_infer.py --modes adapter --precisions fp32 --repeats 5 --output bench.json
    python benchmarks/bench_infer.py --loop 4 --modes adapter --precisions bf16   # 4 x demo.mp4: 8 windows
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import torch
from bench_decode import loop_clip

from adatad import AdaTADConfig, AdaTADForTemporalDetection, AdaTADVideoProcessor
from adatad.pipeline_adatad import PRECISIONS, TemporalActionDetectionPipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO_ROOT / "tests" / "data" / "videos" / "demo.mp4"


def build_model_and_processor(args, mode: str):
    frames = args.window_frames
    config = AdaTADConfig(
        backbone_config=dict(num_hidden_layers=args.num_layers),
        tuning_mode=mode,
        num_frames=frames,
        feature_length=frames,
        max_seq_len=frames,
        image_size=args.image_size,
        num_labels=20,
    )
    torch.manual_seed(0)
    model = AdaTADForTemporalDetection(config).eval()
    processor = AdaTADVideoProcessor(
        window_size=frames,
        scale_factor=1,
        snippet_stride=args.snippet_stride,
        size={"shortest_edge": args.image_size},
        crop_size={"height": args.image_size, "width": args.image_size},
    )
    return model, processor


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model_alone(pipe, pixel_values, masks, batch_size, precision) -> float:
    """Seconds for all pre-decoded windows through the model (inputs moved to the device inside the timing)."""
    device = pipe.device
    dtype = PRECISIONS[precision]
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for first in range(0, pixel_values.shape[0], batch_size):
            outputs = pipe.model(
                pixel_values=pixel_values[first : first + batch_size].to(device),
                masks=masks[first : first + batch_size].to(device),
            )
            [logits.float().cpu() for logits in outputs.logits]  # results must reach the host, as in the pipeline
    synchronize(device)
    return time.perf_counter() - start


class StageTimer:
    """Wraps the pipeline's stages on the instance to add up the seconds spent in each (any thread)."""

    STAGES = {"preprocess": "decode_transform_s", "_forward": "model_s", "postprocess": "merge_s"}

    def __init__(self, pipe):
        self.totals = dict.fromkeys(self.STAGES.values(), 0.0)
        for method_name, key in self.STAGES.items():
            setattr(pipe, method_name, self._timed(getattr(pipe, method_name), key, pipe.device))

    def _timed(self, function, key, device):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            if key == "model_s":
                synchronize(device)
            self.totals[key] += time.perf_counter() - start
            return result

        return timed

    def reset(self):
        for key in self.totals:
            self.totals[key] = 0.0


def time_pipeline(pipe, timer, video, batch_size, precision, prefetch_batches) -> dict:
    timer.reset()
    synchronize(pipe.device)
    start = time.perf_counter()
    pipe(str(video), batch_size=batch_size, precision=precision, threshold=0.0, prefetch_batches=prefetch_batches)
    wall = time.perf_counter() - start
    stages = dict(timer.totals)
    # The per-window candidate decoding runs in the calling thread right after the model: the rest of the wall time.
    return {"wall_s": wall, **stages, "overlap_s": sum(stages.values()) - wall}


def run(args) -> list[dict]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for mode in args.modes:
        model, processor = build_model_and_processor(args, mode)
        pipe = TemporalActionDetectionPipeline(model=model, video_processor=processor, device=device)
        timer = StageTimer(pipe)
        start = time.perf_counter()
        inputs = processor.preprocess(str(args.video))
        predecode_s = time.perf_counter() - start
        num_windows, frames_per_window = inputs["pixel_values"].shape[:2]
        frames = num_windows * frames_per_window
        print(f"[{mode}] {num_windows} windows x {frames_per_window} frames of {args.video.name}, "
              f"decode+transform alone {predecode_s:.2f} s", flush=True)
        for precision in args.precisions:
            if precision == "fp16" and device.type != "cuda":
                print("  fp16 autocast is CUDA-only here; skipped")
                continue
            # Warm-up (allocator, kernels, autocast caches): one window through the model.
            time_model_alone(pipe, inputs["pixel_values"][:1], inputs["masks"][:1], 1, precision)
            runs = []
            for repeat in range(args.repeats):
                load_before = os.getloadavg()[0]
                measurements = {
                    "pipeline": lambda: time_pipeline(
                        pipe, timer, args.video, args.batch_size, precision, args.prefetch_batches
                    ),
                    "model_alone_s": lambda: time_model_alone(
                        pipe, inputs["pixel_values"], inputs["masks"], args.batch_size, precision
                    ),
                }
                if args.compare_inline:
                    measurements["inline_s"] = lambda: time_pipeline(
                        pipe, timer, args.video, args.batch_size, precision, prefetch_batches=0
                    )["wall_s"]
                # Rotate the order so that a load change on the shared machine does not favour one of them.
                names = list(measurements)
                names = names[repeat % len(names) :] + names[: repeat % len(names)]
                measured = {name: measurements[name]() for name in names}
                run_record = {**measured.pop("pipeline"), **measured, "loadavg_1min": [load_before, os.getloadavg()[0]]}
                runs.append(run_record)
                inline = (
                    f", pipeline without overlap {frames / run_record['inline_s']:.2f}" if args.compare_inline else ""
                )
                print(f"  {precision} run {repeat + 1}: pipeline {frames / run_record['wall_s']:.2f} frames/s, "
                      f"model alone {frames / run_record['model_alone_s']:.2f}{inline} (load {load_before:.1f})",
                      flush=True)
            pipeline_fps = statistics.median(frames / r["wall_s"] for r in runs)
            model_fps = statistics.median(frames / r["model_alone_s"] for r in runs)
            rows.append(
                {
                    "mode": mode,
                    "precision": precision,
                    "device": device.type if device.type != "cuda" else torch.cuda.get_device_name(device),
                    "threads": torch.get_num_threads(),
                    "frames": int(frames),
                    "pipeline_fps": pipeline_fps,
                    "model_fps": model_fps,
                    "ratio": statistics.median(r["model_alone_s"] / r["wall_s"] for r in runs),
                    "inline_ratio": statistics.median(r["model_alone_s"] / r["inline_s"] for r in runs)
                    if args.compare_inline
                    else None,
                    "decode_transform_s": statistics.median(r["decode_transform_s"] for r in runs),
                    "merge_s": statistics.median(r["merge_s"] for r in runs),
                    "overlap_s": statistics.median(r["overlap_s"] for r in runs),
                    "loadavg_1min_median": statistics.median(v for r in runs for v in r["loadavg_1min"]),
                    "runs": runs,
                }
            )
    return rows


def print_table(rows, args):
    print()
    print(f"video {args.video.name}, ViT-S ({args.num_layers} layers) {args.image_size}x{args.image_size}, "
          f"{args.window_frames} frames/window, batch {args.batch_size}, median of {args.repeats}")
    print("| mode | precision | device | threads | pipeline frames/s | model alone frames/s | pipeline / model | "
          "decode+transform s | merge s | hidden by overlap s | load avg (1 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['mode']} | {row['precision']} | {row['device']} | {row['threads']} | {row['pipeline_fps']:.2f} | "
            f"{row['model_fps']:.2f} | {100 * row['ratio']:.1f}% | {row['decode_transform_s']:.2f} | "
            f"{row['merge_s']:.2f} | {row['overlap_s']:.2f} | {row['loadavg_1min_median']:.1f} |"
        )
    if args.compare_inline:
        print("\npipeline / model alone without overlap (prefetch_batches=0): " + ", ".join(
            f"{row['mode']} {row['precision']} {100 * row['inline_ratio']:.1f}%" for row in rows
        ))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument(
        "--modes", nargs="+", choices=("adapter", "side", "frozen", "full"), default=["adapter", "side"]
    )
    parser.add_argument("--precisions", nargs="+", choices=sorted(PRECISIONS), default=["fp32", "bf16"])
    parser.add_argument(
        "--loop", type=int, default=1,
        help="play the clip this many times back to back (remuxed, no re-encoding) for more windows per video",
    )
    parser.add_argument("--window-frames", type=int, default=128, help="frames per window (multiple of 32)")
    parser.add_argument("--snippet-stride", type=int, default=2, help="read every n-th video frame")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--num-layers", type=int, default=12, help="ViT-S depth (12 = VideoMAE-S)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per model call")
    parser.add_argument("--prefetch-batches", type=int, default=2, help="pipeline decode-ahead (0 = no overlap)")
    parser.add_argument(
        "--compare-inline", action="store_true",
        help="also time the pipeline with prefetch_batches=0 (decoding in the calling thread, no overlap)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', ...")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--output", type=Path, help="write all measurements as JSON")
    args = parser.parse_args()
    if not args.video.is_file():
        parser.error(f"video '{args.video}' not found; pass --video")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if args.loop > 1:
            looped = Path(folder) / f"{args.video.stem}_x{args.loop}{args.video.suffix}"
            with av.open(str(args.video)) as reader:
                clip_frames = reader.streams.video[0].frames
            loop_clip(args.video, looped, args.loop * clip_frames)
            args.video = looped
        rows = run(args)
    print_table(rows, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()}; "
          f"{os.cpu_count()} CPUs; torch {torch.__version__}")
    if args.output:
        args.output.write_text(
            json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
