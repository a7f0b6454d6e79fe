#!/usr/bin/env python
"""adatad's video data pipeline side by side with OpenTAD's: frames per second per core, same video, same frames.

AdaTAD trains and evaluates end to end: every sample decodes and transforms hundreds of frames on the CPU while the
model runs on the GPU, so the data pipeline's frames per second per core bound the speed a user sees on any machine.
This driver measures OpenTAD's pipeline (the preset's OpenTAD config: its `pipeline` of mmaction2 transforms) and
adatad's (the preset's processor through the training/evaluation loaders and the inference path) on one
3-minute 320x240 30 fps H.264 video, one thread each, alternating the two in fresh processes (A B A B ...) so that
machine noise hits both alike, and prints CPU-time medians and ratios (adatad / OpenTAD, higher is better).

Cases (preset `e2e_thumos_videomae_s_768x1_160_adapter`, 768 frames per window, stride 4, 160x160):
    decode      decoding alone, the same frame indices of each test window (OpenTAD: decord; adatad: the processor's
                `decode_backend`, PyAV by default: the same pixels)
    test        evaluation one window at a time, as a test loader reads it (adatad also: `test_all`, all windows
                from one decoder pass, the inference path)
    train       training samples: random truncation, random resized crop, flip, ImgAug("default"), colour jitter
    *_uint8     adatad handing uint8 frames to the device (normalised there), against OpenTAD without its
                normalisation (which OpenTAD runs in the model, on the device)
and a pixel check: frame indices and masks equal, decoded frames equal, model inputs within one uint8 level.

Needs OpenTAD (an extracted checkout at commit 3dd7b032d7a074bec9665001e4e7f9d1b71405b5, `--opentad-root`) and a
Python environment with its dependencies and decord (`--opentad-python`; docs/performance.md says how to build it).
OpenTAD's training case needs imgaug, which needs numpy < 2: `--opentad-train-path` is a folder put first on
OpenTAD's PYTHONPATH for that case (`pip install --target FOLDER imgaug==0.4.0 numpy==1.26.4 ...`).

    python benchmarks/bench_pipeline.py --opentad-python OPENTAD_VENV/bin/python --opentad-root OPENTAD \
        --opentad-train-path IMGAUG_FOLDER --out pipeline.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
WORKER = HERE / "bench_pipeline_worker.py"
SOURCE_CLIPS = ["demo.mp4", "test_video_structuralize.mp4", "test.avi"]
# (label, OpenTAD case, adatad case, compare with OpenTAD without its normalisation)
COMPARISONS = {
    "decode": [("decode only (same indices)", "decode", "decode", False)],
    "test": [
        ("test, one window at a time", "test", "test", False),
        ("test, all windows in one decode pass", "test", "test_all", False),
        ("test, one window at a time, uint8 out", "test", "test_uint8", True),
        ("test, all windows in one pass, uint8 out", "test", "test_all_uint8", True),
    ],
    "train": [
        ("train (truncation, crop, flip, ImgAug, jitter)", "train", "train", False),
        ("train, uint8 out", "train", "train_uint8", True),
    ],
}


def make_video(target: Path, seconds: int = 180, width: int = 320, height: int = 240, fps: int = 30):
    """A THUMOS-like H.264 video from the real clips in tests/data/videos: each clip resized a little larger than the
    frame and panned across it, mirrored on every other pass, so that no pass repeats the previous one exactly."""
    import av
    import torch
    import torch.nn.functional as F

    clips = []
    for name in SOURCE_CLIPS:
        with av.open(str(REPO_ROOT / "tests" / "data" / "videos" / name)) as container:
            clips.append(np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + ".partial" + target.suffix)
    total, written, loop = seconds * fps, 0, 0
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        while written < total:
            for clip in clips:
                scale = 1.15 + 0.05 * (loop % 3)
                new_height = round(height * scale)
                new_width = max(round(clip.shape[2] * new_height / clip.shape[1]), int(width * 1.1))
                frames = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
                frames = F.interpolate(frames, size=(new_height, new_width), mode="bilinear", antialias=True)
                frames = frames.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                for index, frame in enumerate(frames[: total - written]):
                    progress = index / max(len(frames) - 1, 1)
                    left = int((new_width - width) * (progress if loop % 2 == 0 else 1 - progress))
                    top = (new_height - height) // 2
                    frame = frame[top : top + height, left : left + width]
                    if loop % 2:
                        frame = frame[:, ::-1]
                    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                    for packet in stream.encode(video_frame):
                        container.mux(packet)
                written = min(total, written + len(frames))
            loop += 1
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(target)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load_average(line: str) -> str:
    return line.split("load average:")[-1].strip()


UNSUPPORTED = 3  # the worker's exit status for a case the measured adatad does not have


def run_worker(args, impl: str, case: str, tag: str, profile: bool = False) -> dict | None:
    """One fresh process measuring one case; None when the measured adatad does not have the case."""
    python = args.opentad_python if impl == "opentad" else args.adatad_python
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if impl == "opentad" and case == "train" and args.opentad_train_path:
        env["PYTHONPATH"] = str(args.opentad_train_path)
    if impl == "adatad":
        env["PYTHONPATH"] = str(args.project)
    out = args.work_dir / f"{tag}.json"
    command = [python, str(WORKER), "--impl", impl, "--case", case, "--video", str(args.video), "--work-dir",
               str(args.work_dir), "--samples", str(args.samples), "--opentad-root", str(args.opentad_root),
               "--project", str(args.project), "--out", str(out)]
    if profile:
        command += ["--profile", str(args.work_dir / f"{tag}.prof")]
    before = uptime()
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    after = uptime()
    if process.returncode == UNSUPPORTED:
        print(f"{tag}: skipped ({process.stderr.strip()})", flush=True)
        return None
    if process.returncode != 0:
        sys.stderr.write(process.stdout[-3000:] + process.stderr[-3000:])
        raise SystemExit(f"{tag} failed (exit {process.returncode})")
    result = json.loads(out.read_text())
    result.update(uptime_before=before, uptime_after=after)
    if "frames" in result:
        print(f"{tag}: {result['frames']} frames, CPU {result['cpu_s']:.2f} s ({result['frames_per_s_cpu']:.1f} "
              f"frames/s), wall {result['wall_s']:.2f} s | load {load_average(before)} -> {load_average(after)}",
              flush=True)
    return result


def pixel_check(args) -> dict:
    """Frame indices, masks, decoded frames and model inputs of window 1, OpenTAD's against adatad's."""
    opentad = run_worker(args, "opentad", "check", "check_opentad")
    adatad = run_worker(args, "adatad", "check", "check_adatad")
    load = lambda name: np.load(args.work_dir / name)  # noqa: E731
    decoded = load("opentad_window1_uint8.npy").astype(np.int16) - load("adatad_window1_uint8.npy").astype(np.int16)
    # OpenTAD's input is (x - mean) / std with mean/std in 0..255 units: a difference times std is in uint8 levels.
    std = np.array([58.395, 57.12, 57.375], dtype=np.float64).reshape(1, 3, 1, 1)
    levels = np.abs(load("opentad_window1_input.npy").astype(np.float64) - load("adatad_window1_input.npy")) * std
    return {
        "windows": len(opentad["windows"]),
        "frame_indices_equal": [w["frame_indices"] for w in opentad["windows"]]
        == [w["frame_indices"] for w in adatad["windows"]],
        "masks_equal": [w["mask"] for w in opentad["windows"]] == [w["mask"] for w in adatad["windows"]],
        "decoded_max_abs_diff": int(np.abs(decoded).max()),
        "input_max_diff_uint8_levels": float(levels.max()),
        "input_share_differing": float((levels > 0.5).mean()),
        "row_vs_one_pass_max_abs_diff": adatad["row_vs_one_pass_max_abs_diff"],
    }


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for case in (case for case in COMPARISONS if any(run["group"] == case for run in runs)):
        for label, opentad_case, adatad_case, without_normalize in COMPARISONS[case]:
            opentad = [run for run in runs if run["impl"] == "opentad" and run["case"] == opentad_case]
            adatad = [run for run in runs if run["impl"] == "adatad" and run["case"] == adatad_case]
            if not opentad or not adatad:
                continue
            opentad_fps = statistics.median(
                run["frames"] / (run["cpu_s"] - (run.get("normalize_cpu_s", 0.0) if without_normalize else 0.0))
                for run in opentad
            )
            adatad_fps = statistics.median(run["frames_per_s_cpu"] for run in adatad)
            group = [run for run in runs if run["group"] == case]
            rows.append({
                "case": label, "opentad_case": opentad_case + (" without normalisation" if without_normalize else ""),
                "adatad_case": adatad_case, "rounds": len(adatad), "opentad_frames_per_s_cpu": opentad_fps,
                "adatad_frames_per_s_cpu": adatad_fps, "ratio": adatad_fps / opentad_fps,
                "adatad_frames_per_s_cpu_rounds": [run["frames_per_s_cpu"] for run in adatad],
                "load": f"{load_average(group[0]['uptime_before'])} -> {load_average(group[-1]['uptime_after'])}",
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| case | OpenTAD frames/s | adatad frames/s | ratio | load (1/5/15 min) before -> after |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['case']} | {row['opentad_frames_per_s_cpu']:.1f} | {row['adatad_frames_per_s_cpu']:.1f} "
                     f"| {row['ratio']:.2f}x | {row['load']} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opentad-python", required=True, help="python of an environment with OpenTAD's dependencies")
    parser.add_argument("--opentad-root", type=Path, default=os.environ.get("OPENTAD_ROOT"), help="OpenTAD checkout")
    parser.add_argument("--opentad-train-path", type=Path, default=None,
                        help="folder with imgaug and numpy < 2, first on OpenTAD's path in the train case")
    parser.add_argument("--adatad-python", default=sys.executable)
    parser.add_argument("--project", type=Path, default=REPO_ROOT, help="the adatad checkout to measure")
    parser.add_argument("--cases", default="decode,test,train", help=f"comma-separated, of {list(COMPARISONS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="training samples per run")
    parser.add_argument("--video", type=Path, default=None, help="default: made in --work-dir on first use")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs") / "bench_pipeline")
    parser.add_argument("--no-check", action="store_true", help="skip the pixel check")
    parser.add_argument("--profile", action="store_true", help="also write cProfile stats of one adatad run per case")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: WORK_DIR/results.json)")
    args = parser.parse_args(argv)
    if args.opentad_root is None:
        parser.error("--opentad-root (or OPENTAD_ROOT) is needed")
    args.cases = args.cases.split(",")
    unknown = sorted(set(args.cases) - set(COMPARISONS))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(COMPARISONS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.video is None:
        args.video = args.work_dir / "thumoslike_320x240_30fps_180s.mp4"
        if not args.video.is_file():
            print(f"making {args.video}", flush=True)
            make_video(args.video)
    args.video, args.work_dir, args.project = args.video.resolve(), args.work_dir.resolve(), args.project.resolve()
    out = args.out or args.work_dir / "results.json"
    report = {"command": " ".join(sys.argv), "project": str(args.project), "rounds": args.rounds,
              "samples": args.samples, "start": uptime(), "runs": []}
    if not args.no_check:
        report["pixel_check"] = pixel_check(args)
        print(json.dumps(report["pixel_check"]), flush=True)
    for case in args.cases:
        plan = [("opentad", opentad_case) for opentad_case in dict.fromkeys(c[1] for c in COMPARISONS[case])]
        plan += [("adatad", adatad_case) for adatad_case in dict.fromkeys(c[2] for c in COMPARISONS[case])]
        for round_index in range(args.rounds):
            for impl, worker_case in list(plan):
                result = run_worker(args, impl, worker_case, f"{worker_case}_{impl}_r{round_index}")
                if result is None:
                    plan.remove((impl, worker_case))
                    continue
                result.update(group=case, round=round_index)
                report["runs"].append(result)
                save(report, out)  # what is finished is kept if a later run fails
        if args.profile:
            for adatad_case in (worker_case for impl, worker_case in plan if impl == "adatad"):
                run_worker(args, "adatad", adatad_case, f"profile_{adatad_case}", profile=True)
    report["end"] = uptime()
    report["summary"] = summarize(report["runs"])
    save(report, out)
    print(markdown(report["summary"]))


def save(report: dict, out: Path):
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    partial.replace(out)


if __name__ == "__main__":
    main()
