"""Does the Temporal-Informative Adapter matter? The synthetic demo trained in every tuning mode on one budget.

The synthetic classes differ only in motion (`adatad.synthetic`: moving left vs right, growing vs shrinking), so a
detector has to read temporal information out of the backbone. This benchmark generates the synthetic dataset once
(the generator's default settings, exactly what `make demo` writes) and trains the `synthetic-tiny` preset in each
tuning mode on it, with the same data, epochs, batch size, detector and seed:

    frozen    synthetic-tiny-frozen   the random-init ViT is frozen, only the detector trains
    adapter   synthetic-tiny          AdaTAD: a TIA after every ViT block trains, the ViT stays frozen
    side      synthetic-tiny-side     AdaTAD-dagger: side TIAs on the last blocks, the ViT runs without gradients
    full      synthetic-tiny-full     the whole ViT trains (no adapters)

Each mode is one `accelerate launch --num_processes 1 training/run_tad.py --preset ...` in its own process; its
score is the mAP of the LAST epoch on the held-out `validation` videos (not the best epoch, which would tune on
them). Wall times are only comparable on an equally loaded machine, so the load average is recorded around each
run.

Usage:
    python benchmarks/bench_synthetic.py [--modes frozen adapter side full] [--output-dir outputs/synthetic-bench]
        [--data-dir DIR] [--num-epochs N] [--threads N] [--quick] [--set KEY=VALUE ...]

`--quick` is a smoke run (a 16 + 8 video dataset in `<output-dir>/data-quick`, 2 epochs per mode, under two
minutes): it checks the plumbing; after 8 warm-up steps its mAP is 0 and means nothing. Outputs in `--output-dir`:
one run folder per mode (`<mode>/`, with `train.log`), `bench_synthetic.json` (every number) and
`bench_synthetic.md` (the table).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "frozen": "synthetic-tiny-frozen",
    "adapter": "synthetic-tiny",
    "side": "synthetic-tiny-side",
    "full": "synthetic-tiny-full",
}
QUICK_DATASET = {"num_train_videos": 16, "num_val_videos": 8}
QUICK_EPOCHS = 2
RESULTS_NAME = "bench_synthetic"


def trainable_parameters(preset_name: str, overrides: list[str]) -> int:
    """Number of parameters the optimizer updates in `preset_name` (after `overrides`)."""
    from adatad import presets
    from adatad.modeling_adatad import AdaTADForTemporalDetection

    preset = presets.apply_overrides(presets.load_preset(preset_name), overrides)
    model = AdaTADForTemporalDetection(presets.build_model_config(preset))
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def ensure_dataset(data_dir: Path, quick: bool) -> dict | None:
    """Writes the synthetic dataset into `data_dir` unless its annotation file exists; returns the summary."""
    from adatad.synthetic import ANNOTATION_FILENAME, generate_synthetic_dataset

    if (data_dir / ANNOTATION_FILENAME).is_file():
        print(f"using the synthetic dataset in {data_dir}")
        return None
    print(f"writing the synthetic dataset to {data_dir}")
    return generate_synthetic_dataset(data_dir, **(QUICK_DATASET if quick else {}))


def run_mode(mode: str, args, data_dir: Path, num_epochs: int | None) -> dict:
    """Trains and evaluates one tuning mode in a fresh process; returns its measurements."""
    run_dir = args.output_dir / mode
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO_ROOT / "training" / "run_tad.py"), "--preset", PRESETS[mode],
        "--data_dir", str(data_dir), "--output_dir", str(run_dir), "--overwrite_output_dir",
    ]  # fmt: skip
    if num_epochs is not None:
        command += ["--num_epochs", str(num_epochs)]
    if args.set:
        command += ["--set", *args.set]
    environment = dict(os.environ)
    if args.threads is not None:
        environment["OMP_NUM_THREADS"] = str(args.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    wall_seconds = time.perf_counter() - start
    result = {
        "mode": mode,
        "preset": PRESETS[mode],
        "trainable_parameters": trainable_parameters(PRESETS[mode], args.set or []),
        "wall_seconds": round(wall_seconds, 1),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "return_code": completed.returncode,
    }
    eval_file = run_dir / "last" / "eval_results.json"
    if completed.returncode != 0 or not eval_file.is_file():
        result["error"] = f"run_tad.py exited with {completed.returncode}; see {run_dir / 'train.log'}"
        return result
    evaluation = json.loads(eval_file.read_text())
    result.update(
        epoch=evaluation["epoch"],
        mAP_per_tiou=evaluation["mAP_per_tiou"],
        average_mAP=evaluation["average_mAP"],
        ap_per_class_at_0_5={
            name: values[list(evaluation["mAP_per_tiou"]).index("0.5")]
            for name, values in evaluation["ap_per_class"].items()
            if "0.5" in evaluation["mAP_per_tiou"]
        },
    )
    return result


def format_table(results: list[dict]) -> str:
    """Markdown table: one row per tuning mode, mAP in percent."""
    tious = next((list(r["mAP_per_tiou"]) for r in results if "mAP_per_tiou" in r), [])
    header = ["tuning mode", "preset", "trainable params"] + [f"mAP@{t}" for t in tious] + ["avg mAP", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        row = [result["mode"], f"`{result['preset']}`", f"{result['trainable_parameters']:,}"]
        if "mAP_per_tiou" in result:
            row += [f"{100 * result['mAP_per_tiou'][t]:.1f}" for t in tious] + [f"{100 * result['average_mAP']:.1f}"]
        else:
            row += [result["error"]] + [""] * len(tious)
        row.append(f"{result['wall_seconds'] / 60:.1f} min")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=list(PRESETS), default=list(PRESETS), help="tuning modes")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "outputs" / "synthetic-bench")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="dataset folder (written if missing); default <output-dir>/data"
    )
    parser.add_argument("--num-epochs", type=int, default=None, help="epochs per mode (default: the preset's)")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of each run (default: run_tad.py chooses)"
    )
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="preset overrides applied to every mode")
    parser.add_argument("--quick", action="store_true", help=f"16 + 8 videos, {QUICK_EPOCHS} epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = args.output_dir / ("data-quick" if args.quick else "data")
    if args.quick and args.num_epochs is None:
        args.num_epochs = QUICK_EPOCHS
    return args


def main(argv=None):
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dataset = ensure_dataset(args.data_dir, args.quick)
    results = []
    for mode in args.modes:
        print(f"training {mode} ({PRESETS[mode]}) ...", flush=True)
        results.append(run_mode(mode, args, args.data_dir, args.num_epochs))
        summary = (
            results[-1].get("error") or f"mAP@0.5 {100 * results[-1]['mAP_per_tiou'].get('0.5', float('nan')):.1f}"
        )
        print(f"  {mode}: {summary}, {results[-1]['wall_seconds']:.0f} s", flush=True)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "data_dir": str(args.data_dir),
        "dataset": dataset,
        "num_epochs": args.num_epochs,
        "overrides": args.set or [],
        "total_seconds": round(time.perf_counter() - start, 1),
        "results": results,
    }
    (args.output_dir / f"{RESULTS_NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = format_table(results)
    (args.output_dir / f"{RESULTS_NAME}.md").write_text(table + "\n")
    print(table)
    return 0 if all("error" not in result for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
