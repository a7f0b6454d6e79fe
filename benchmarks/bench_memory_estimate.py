"""Check `adatad.memory_estimation` against measured training-step peaks, and tabulate it for every paper preset.

The measurements are `benchmarks/bench_train.py` results (CPU peak RSS above the weights, glibc's mmap threshold fixed,
fp32, batch size 1). The estimate is the steady-state peak: compare it with runs that include a warm-up step
(`--warmup 1`, AdamW states alive in the measured step). For each measured configuration this prints measured and
estimated GiB (weights left out of both) and the relative error; `--presets` adds the estimate of every preset in
`adatad/presets/` (paper presets only: names starting with `e2e_`) with its own training settings.

Usage:
    python benchmarks/bench_memory_estimate.py RESULTS.json [RESULTS.json ...] [--presets] [--output table.md]
"""

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adatad.memory_estimation import (  # noqa: E402
    estimate_training_memory,
    preset_defaults,
    read_preset,
)
from adatad.presets import list_presets  # noqa: E402
from bench_train import BACKBONES  # noqa: E402

GIB = 2**30


def measured_case_config(settings: dict, entry: dict) -> dict:
    """The AdaTADConfig fields bench_train.py built for `entry`."""
    frames = entry["frames"]
    return dict(
        tuning_mode=entry["mode"],
        num_frames=frames,
        feature_length=frames,
        max_seq_len=frames,
        image_size=settings.get("image_size", 160),
        backbone_config=BACKBONES[settings.get("backbone", "small")],
    )


def validation_rows(results_paths: list[Path]) -> list[dict]:
    rows = []
    for path in results_paths:
        report = json.loads(path.read_text())
        settings = report["settings"]
        if settings.get("warmup", 0) < 1:
            raise SystemExit(f"{path}: measured without a warm-up step; the estimate is the steady-state peak")
        if settings.get("autocast_bf16"):
            raise SystemExit(f"{path}: bf16 autocast run; this check compares fp32 runs")
        for entry in report["results"]:
            if entry["status"] != "ok":
                continue
            estimate = estimate_training_memory(
                measured_case_config(settings, entry), batch_size=settings.get("batch_size", 1), precision="fp32",
                gradient_checkpointing=entry["checkpointing"],
            )
            above_weights = estimate.total - estimate.weights
            rows.append({
                "backbone": settings.get("backbone", "small"),
                "variant": entry["variant"],
                "frames": entry["frames"],
                "measured_gib": entry["peak_memory_bytes"] / GIB,
                "estimated_gib": above_weights / GIB,
                "error": above_weights / entry["peak_memory_bytes"] - 1,
                "source": str(path),
            })
    return sorted(rows, key=lambda r: (r["backbone"], r["variant"], r["frames"]))


def preset_rows() -> list[dict]:
    rows = []
    for name in list_presets():
        if not name.startswith("e2e_"):
            continue
        preset = read_preset(name)
        settings = preset_defaults(preset)
        estimate = estimate_training_memory(preset["model"], **settings)
        rows.append({"preset": preset["name"], **settings, **{k: v / GIB for k, v in estimate.as_dict().items()
                                                              if k not in ("total_parameters", "trainable_parameters")},
                     "trainable_m": estimate.trainable_parameters / 1e6, "total_m": estimate.total_parameters / 1e6})
    return rows


def markdown(validation: list[dict], presets: list[dict]) -> str:
    lines = []
    if validation:
        lines += ["| ViT | variant | frames | measured GiB | estimated GiB | error |", "|---|---|---:|---:|---:|---:|"]
        for r in validation:
            lines.append(f"| {r['backbone']} | {r['variant']} | {r['frames']} | {r['measured_gib']:.2f} | "
                         f"{r['estimated_gib']:.2f} | {100 * r['error']:+.0f}% |")
        worst = max(validation, key=lambda r: abs(r["error"]))
        lines.append(f"\nLargest error: {100 * worst['error']:+.1f}% ({worst['backbone']} {worst['variant']} "
                     f"{worst['frames']} frames), {len(validation)} configurations.")
    if presets:
        lines += ["", "| preset | batch/device | precision | ckpt | params (M) | trainable (M) | weights | gradients | "
                  "optimizer | activations | total GiB |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in presets:
            lines.append(
                f"| {r['preset']} | {r['batch_size']} | {r['precision']} | "
                f"{'on' if r['gradient_checkpointing'] else 'off'}"
                f" | {r['total_m']:.0f} | {r['trainable_m']:.1f} | {r['weights']:.2f} | {r['gradients']:.2f} | "
                f"{r['optimizer_states']:.2f} | {r['activations']:.2f} | **{r['total']:.2f}** |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", type=Path, help="bench_train.py JSON files measured with --warmup 1")
    parser.add_argument("--presets", action="store_true", help="also tabulate every paper preset")
    parser.add_argument("--output", type=Path, help="write the Markdown tables here too")
    args = parser.parse_args()
    table = markdown(validation_rows(args.results), preset_rows() if args.presets else [])
    print(table)
    if args.output:
        temporary = args.output.with_name(args.output.name + ".tmp")
        temporary.write_text(table + "\n")
        temporary.replace(args.output)


if __name__ == "__main__":
    main()
