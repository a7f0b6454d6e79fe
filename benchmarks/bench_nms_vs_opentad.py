"""Soft-NMS side by side: adatad's `batched_nms` against OpenTAD's compiled `nms_1d_cpu.softnms`.

Both run on the same candidates in the same process, alternating, and their outputs are compared bit for bit
(segments, scores, labels, order). The candidates are those of a long video: random segments (0.5-20.5 s) in
a video whose length grows with their number (0.06 s of video per candidate: 2,000 candidates = 120 s,
20,000 = 1,200 s, 200,000 = 3 h 20 min), 4 classes, uniform scores; per-class Gaussian soft-NMS with
sigma 0.5, min score 0.001 and no cap on the number of segments (OpenTAD's `batched_nms` with
`multiclass=True`). Since the density is the same at every size, time / candidates shows how the cost grows
with video length.

OpenTAD's C++ op is compiled at start-up from an OpenTAD checkout with `torch.utils.cpp_extension.load`
(needs a C++ compiler and ninja); OpenTAD's own `nms.py` wraps it, loaded from the checkout by path.

Usage:
    python benchmarks/bench_nms_vs_opentad.py --opentad-root /path/to/OpenTAD \\
        [--sizes 2000 20000 200000] [--repeats 5] [--opentad-max-seconds 60] [--output results.json]

`--opentad-max-seconds`: after one OpenTAD run longer than this, that size is not repeated for OpenTAD
(its cost grows with the square of the candidates; 200,000 take minutes). `--round-like-merge`: seconds
rounded to 2 decimals and scores to 4 first, as the sliding-window merge sees them (many exact ties).
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adatad.atomic_files import write_text_atomically
from adatad.post_processing import PostProcessingSettings, batched_nms

SECONDS_PER_CANDIDATE = 0.06
NUM_CLASSES = 4
SIGMA = 0.5
MIN_SCORE = 0.001


def load_opentad_batched_nms(opentad_root: Path, build_dir: Path):
    """OpenTAD's `batched_nms` over its C++ op compiled from `opentad_root`."""
    from torch.utils.cpp_extension import load

    nms_dir = opentad_root / "opentad" / "models" / "utils" / "post_processing" / "nms"
    if not (nms_dir / "nms_cpu.cpp").is_file():
        raise SystemExit(f"error: {nms_dir / 'nms_cpu.cpp'} not found; pass --opentad-root (an OpenTAD checkout).")
    build_dir.mkdir(parents=True, exist_ok=True)
    sys.modules["nms_1d_cpu"] = load(
        name="nms_1d_cpu", sources=[str(nms_dir / "nms_cpu.cpp")], build_directory=str(build_dir), verbose=False
    )
    spec = importlib.util.spec_from_file_location("opentad_nms", nms_dir / "nms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.batched_nms


def long_video_candidates(num: int, seed: int = 0, round_like_merge: bool = False):
    """Random candidates of a video of `num * 0.06` seconds: float32 segments, scores, int64 labels."""
    generator = torch.Generator().manual_seed(seed)
    video_seconds = num * SECONDS_PER_CANDIDATE
    starts = torch.rand(num, generator=generator, dtype=torch.float64) * video_seconds
    lengths = torch.rand(num, generator=generator, dtype=torch.float64) * 20 + 0.5
    segments = torch.stack((starts, starts + lengths), 1).float()
    scores = torch.rand(num, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (num,), generator=generator)
    if round_like_merge:
        segments = torch.tensor([[round(v, 2) for v in pair] for pair in segments.tolist()], dtype=torch.float32)
        scores = torch.tensor([round(v, 4) for v in scores.tolist()], dtype=torch.float32)
    return segments, scores, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opentad-root", type=Path, default=os.environ.get("OPENTAD_ROOT"))
    parser.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "adatad-bench-nms-build")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--opentad-max-seconds", type=float, default=60.0)
    parser.add_argument("--round-like-merge", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/bench_nms_vs_opentad.json"))
    args = parser.parse_args(argv)
    if args.opentad_root is None:
        parser.error("pass --opentad-root or set OPENTAD_ROOT (an OpenTAD checkout)")
    opentad_batched_nms = load_opentad_batched_nms(args.opentad_root, args.build_dir)
    torch.set_num_threads(1)  # OpenTAD's loop is single-threaded; so is the comparison

    load_before = os.getloadavg()
    rows = []
    for num in args.sizes:
        segments, scores, labels = long_video_candidates(num, round_like_merge=args.round_like_merge)
        settings = PostProcessingSettings(nms_method="gaussian", nms_sigma=SIGMA, min_score=MIN_SCORE, max_segments=num)
        times = {"opentad": [], "adatad": []}
        page_faults = {"opentad": [], "adatad": []}  # minor faults: fresh memory the system maps and clears
        identical = True
        for repeat in range(args.repeats):
            if repeat == 0 or max(times["opentad"]) <= args.opentad_max_seconds:
                faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                reference = opentad_batched_nms(
                    segments, scores, labels, iou_threshold=0.0, min_score=MIN_SCORE, max_seg_num=num,
                    use_soft_nms=True, multiclass=True, sigma=SIGMA, voting_thresh=0.0, method=2,
                )
                times["opentad"].append(time.perf_counter() - start)
                page_faults["opentad"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            mine = batched_nms(segments, scores, labels, settings)
            times["adatad"].append(time.perf_counter() - start)
            page_faults["adatad"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            identical &= all(torch.equal(a, b) for a, b in zip(reference, mine))
        row = {
            "candidates": num,
            "video_seconds": num * SECONDS_PER_CANDIDATE,
            "kept": int(mine[0].shape[0]),
            "identical": identical,
            "opentad_seconds": statistics.median(times["opentad"]),
            "adatad_seconds": statistics.median(times["adatad"]),
            "opentad_runs": len(times["opentad"]),
            "adatad_runs": len(times["adatad"]),
            "opentad_page_faults": statistics.median(page_faults["opentad"]),
            "adatad_page_faults": statistics.median(page_faults["adatad"]),
        }
        row["speed_ratio_adatad_over_opentad"] = row["opentad_seconds"] / row["adatad_seconds"]
        rows.append(row)
        print(
            f"{num:>8} candidates ({row['video_seconds']:>7.0f} s video, {row['kept']} kept): "
            f"OpenTAD {row['opentad_seconds']:.4f} s, adatad {row['adatad_seconds']:.4f} s, "
            f"adatad {row['speed_ratio_adatad_over_opentad']:.2f}x OpenTAD's speed, identical: {identical}",
            flush=True,
        )
    for smaller, larger in zip(rows, rows[1:]):
        factor = larger["candidates"] / smaller["candidates"]
        print(
            f"{smaller['candidates']} -> {larger['candidates']} candidates ({factor:g}x the video): time x"
            f"{larger['opentad_seconds'] / smaller['opentad_seconds']:.1f} OpenTAD, "
            f"x{larger['adatad_seconds'] / smaller['adatad_seconds']:.1f} adatad"
        )
    result = {
        "command": " ".join(
            [Path(sys.argv[0]).name]
            + [a.replace(str(args.opentad_root), "/path/to/OpenTAD") for a in (argv or sys.argv[1:])]
        ),
        "case": {
            "seconds_per_candidate": SECONDS_PER_CANDIDATE,
            "segment_lengths_seconds": [0.5, 20.5],
            "classes": NUM_CLASSES,
            "sigma": SIGMA,
            "min_score": MIN_SCORE,
            "method": "gaussian, per class",
            "rounded_like_merge": args.round_like_merge,
        },
        "rows": rows,
        "all_identical": all(row["identical"] for row in rows),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": 1},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.output, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    if not result["all_identical"]:
        raise SystemExit("error: adatad's results differ from OpenTAD's")


if __name__ == "__main__":
    main()
