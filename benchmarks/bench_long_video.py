"""Does a long video cost what its length says? `adatad-detect` on a short and a long synthetic video, side by side.

Uses `--model` (a folder of the `synthetic-tiny` shape, e.g. a trained one) or writes a tiny random-init model of
that preset (64x64 frames, 64-frame windows overlapping by half), writes one synthetic video per `--minutes` value
(64x64 at 10 fps, a square moving over noise), then runs `python -m adatad.detect VIDEO --profile` on each in a
fresh process, one after the other in this one command. It reports wall time, CPU time (user + system: the fairer
measure on a shared machine), peak resident memory of that process (`wait4`'s `ru_maxrss`), the detections and
the stage times `--profile` prints. The goal of the long-video work: the long/short time ratio at most the length
ratio (x1.2 slack: 20 minutes <= 12x 2 minutes) and the peak memory within 1.1x. The load average is recorded
before and after (ratios are only meaningful from one command on one machine).

Usage:
    python benchmarks/bench_long_video.py [--minutes 2 20] [--model outputs/synthetic-demo/best]
        [--work-dir outputs/bench-long-video] [--threads 1] [--batch-size 1] [--fps 10]
        [--output benchmarks/results/bench_long_video.json]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from adatad.atomic_files import write_text_atomically

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAME_SIZE = 64


def write_model(folder: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "training"))
    import torch
    from adatad.presets import build_model_config, load_preset, processor_kwargs

    from adatad import AdaTADForTemporalDetection, AdaTADVideoProcessor

    preset = load_preset("synthetic-tiny")
    torch.manual_seed(0)
    AdaTADForTemporalDetection(build_model_config(preset)).save_pretrained(folder)
    kwargs = processor_kwargs(preset)
    kwargs["class_names"] = [f"class_{i}" for i in range(preset["model"]["num_labels"])]
    AdaTADVideoProcessor(**kwargs).save_pretrained(folder)


def write_video(path: Path, minutes: float, fps: float) -> int:
    """A square moving over noise, written frame by frame (memory does not grow with the length)."""
    import fractions

    import av

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 60, size=(64, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    num_frames = int(round(minutes * 60 * fps))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = FRAME_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "bf": "0", "g": str(max(1, round(2 * fps)))}
        stream.codec_context.thread_count = 1
        for index in range(num_frames):
            frame = noise[index % len(noise)].copy()
            position = (index * 2) % (FRAME_SIZE - 16)
            frame[24:40, position : position + 16] = 230
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return num_frames


def run_detect(video: Path, model: Path, output: Path, threads: int, batch_size: int) -> dict:
    command = [
        sys.executable, "-m", "adatad.detect", str(video), "--model", str(model), "--output", str(output),
        "--no-progress", "--device", "cpu", "--threads", str(threads), "--batch-size", str(batch_size), "--profile",
    ]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    environment["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
    log = output.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own resource usage (ru_maxrss in KiB on Linux), not the maximum of all children.
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr_text = log.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"adatad-detect failed on {video}:\n{stderr_text[-3000:]}")
    results = json.loads(output.read_text())["results"][video.stem]
    stages = [line.strip() for line in stderr_text.splitlines() if line.startswith("  ")]
    return {
        "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
        "detections": len(results), "stages": stages,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 20.0])
    parser.add_argument("--work-dir", default="outputs/bench-long-video")
    parser.add_argument(
        "--model", default=None,
        help="a model folder of the synthetic-tiny shape, e.g. a trained one (`make demo` leaves "
        "outputs/synthetic-demo/best); default: a random-init one in --work-dir. A random model scores every "
        "candidate near its prior, so its rounded scores tie everywhere, which is not what a trained model gives",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--output", default="benchmarks/results/bench_long_video.json")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else work / "model"
    if not (model / "config.json").is_file():
        write_model(model)
    rows = []
    load_before = os.getloadavg()
    for minutes in args.minutes:
        video = work / f"synthetic_{minutes:g}min.mp4"
        if not video.is_file():
            write_video(video, minutes, args.fps)
        output = work / f"detections_{minutes:g}min.json"
        shutil.rmtree(output.with_name(output.name + ".parts"), ignore_errors=True)  # an interrupted earlier bench
        measured = run_detect(video, model, output, args.threads, args.batch_size)
        rows.append({"minutes": minutes, **measured})
        print(f"{minutes:g} min: {measured['wall_s']:.1f} s wall, {measured['cpu_s']:.1f} s CPU, peak RSS "
              f"{measured['peak_rss_mb']:.0f} MB, "
              f"{measured['detections']} detections", flush=True)
        for line in measured["stages"]:
            print(f"    {line}", flush=True)
    load_after = os.getloadavg()
    first = rows[0]
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print("| video | wall time | wall ratio | CPU time | CPU ratio | length ratio | peak RSS | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['minutes']:g} min | {row['wall_s']:.1f} s | {row['wall_s'] / first['wall_s']:.2f}x | "
              f"{row['cpu_s']:.1f} s | {row['cpu_s'] / first['cpu_s']:.2f}x | {row['minutes'] / first['minutes']:g}x | "
              f"{row['peak_rss_mb']:.0f} MB | {row['peak_rss_mb'] / first['peak_rss_mb']:.2f}x |")
    result = {
        "command": " ".join([Path(sys.argv[0]).name] + list(sys.argv[1:] if argv is None else argv)),
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": vars(args),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output, json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
