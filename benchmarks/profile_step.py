"""Where one AdaTAD training step (or inference call) spends time and memory: torch.profiler with `profile_memory`.

The model is the one `bench_vs_opentad.py` measures (VideoMAE-S sized, 160x160, ActionFormer 512 wide, 20 classes,
random weights), built at `--frames`. Prints the operators with the most CPU time and the most memory allocated by
the operator itself, and the number of tensor allocations.

Usage:
    python benchmarks/profile_step.py [--frames 64] [--mode adapter|fullft|infer] [--no-checkpointing] [--rows 15]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_opentad import HARNESS_DEFAULTS, build_adatad  # noqa: E402


def allocation_count(table) -> int:
    """Tensors allocated during the profiled call: calls of the allocating factory operators."""
    return sum(event.count for event in table if event.key in ("aten::empty", "aten::empty_strided"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--mode", choices=["adapter", "fullft", "infer"], default="adapter")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, pixel_values, masks, labels = build_adatad(
        dict(HARNESS_DEFAULTS, frames=args.frames), full_finetuning=args.mode == "fullft"
    )
    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.mode == "infer":
        model.eval()
        with torch.no_grad(), torch.profiler.profile(activities=activities, profile_memory=True) as profiler:
            start = time.perf_counter()
            model(pixel_values, masks=masks)
    else:
        model.train()
        if not args.no_checkpointing:
            model.activation_checkpointing_enable()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        with torch.profiler.profile(activities=activities, profile_memory=True) as profiler:
            start = time.perf_counter()
            model(pixel_values, masks=masks, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    table = profiler.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(table.table(sort_by="self_cpu_memory_usage", row_limit=args.rows))
    print(f"{args.mode} {args.frames} frames: {seconds:.2f} s under the profiler, {allocation_count(table)} tensor "
          "allocations")


if __name__ == "__main__":
    main()
