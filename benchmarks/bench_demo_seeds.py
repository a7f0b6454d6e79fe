"""The synthetic demo's result over training seeds: how far `make demo`'s figure is from a lucky draw.

Trains the `synthetic-tiny` preset (the command of `make demo`) once per seed on one synthetic dataset (the
generator's default settings, written once), and reports the last epoch's mAP per tIoU for each seed, their mean,
minimum and maximum, with the load average around each run. Runs are sequential, each in its own process.

Usage:
    python benchmarks/bench_demo_seeds.py [--seeds 42 1 2] [--output-dir outputs/demo-seeds] [--data-dir DIR]
        [--set KEY=VALUE ...]

Writes `<output-dir>/bench_demo_seeds.json` and prints a Markdown table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def train(seed: int, data_dir: Path, output_dir: Path, overrides: list[str]) -> dict:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
        str(REPO_ROOT / "training" / "run_tad.py"), "--preset", "synthetic-tiny", "--seed", str(seed),
        "--data_dir", str(data_dir), "--output_dir", str(output_dir), "--overwrite_output_dir",
    ]
    if overrides:
        command += ["--set", *overrides]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    with (output_dir.parent / f"seed-{seed}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    final = json.loads((output_dir / "last" / "eval_results.json").read_text())
    return {
        "seed": seed,
        "epoch": final["epoch"],
        "mAP_per_tiou": final["mAP_per_tiou"],
        "average_mAP": final["average_mAP"],
        "wall_s": round(time.monotonic() - start, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo-seeds"))
    parser.add_argument("--data-dir", type=Path, default=None, help="default: <output-dir>/data")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    data_dir = args.data_dir or args.output_dir / "data"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "annotations.json").is_file():
        from adatad.synthetic import generate_synthetic_dataset

        generate_synthetic_dataset(data_dir)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    runs = [train(seed, data_dir, args.output_dir / f"seed-{seed}", args.overrides) for seed in args.seeds]
    at_0_5 = [run["mAP_per_tiou"]["0.5"] for run in runs]
    summary = {
        "commit": commit.stdout.strip(),
        "overrides": args.overrides,
        "runs": runs,
        "mAP@0.5": {"mean": statistics.mean(at_0_5), "min": min(at_0_5), "max": max(at_0_5)},
    }
    (args.output_dir / "bench_demo_seeds.json").write_text(json.dumps(summary, indent=2))
    print("| seed | mAP@0.3 | mAP@0.5 | mAP@0.7 | average | wall s | load |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        maps = run["mAP_per_tiou"]
        print(
            f"| {run['seed']} | {100 * maps['0.3']:.2f} | {100 * maps['0.5']:.2f} | {100 * maps['0.7']:.2f} | "
            f"{100 * run['average_mAP']:.2f} | {run['wall_s']} | {run['load_before']}-{run['load_after']} |"
        )
    stats = summary["mAP@0.5"]
    print(f"mAP@0.5 over {len(runs)} seeds: mean {100 * stats['mean']:.2f}, min {100 * stats['min']:.2f}, "
          f"max {100 * stats['max']:.2f}")


if __name__ == "__main__":
    main()
