"""`adatad-detect`: temporal action detection on video files from the command line.

    adatad-detect VIDEO_OR_FOLDER... --model DIR [--threshold 0.3] [--output detections.json]
                  [--plot timeline.png] [--batch-size N] [--device cpu|cuda|cuda:1] [--precision fp32|bf16|fp16]
                  [--on-error skip|raise] [--threads N] [--ground-truth annotations.json] [--no-progress]

Writes the detections in the ActivityNet submission layout
`{"version": "VERSION 1.3", "results": {video_id: [{"label", "score", "segment": [start_s, end_s]}]},
"external_data": {}}` (video id = file name without extension) and, with `--plot`, a timeline picture.

A video that cannot be decoded is reported (file and decoder's reason) and skipped by default, so a folder run
finishes the other videos; the exit status is then 1. `--on-error raise` stops at the first such video instead.
Exit status 2: bad arguments (missing model folder, model/processor mismatch, no videos, repeated video ids).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
ACTIVITYNET_VERSION = "VERSION 1.3"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatad-detect",
        description="Detect actions in videos with an AdaTAD model folder (model + AdaTADVideoProcessor).",
    )
    parser.add_argument(
        "videos", nargs="+", metavar="VIDEO",
        help="video files, or folders whose video files (by extension, not recursive) are all processed",
    )
    parser.add_argument("--model", required=True, help="folder with config.json, weights and video_preprocessor_config.json")
    parser.add_argument("--threshold", type=float, default=0.3, help="keep detections with score >= this (default 0.3)")
    parser.add_argument("--output", default="detections.json", help="JSON file to write (default detections.json)")
    parser.add_argument("--plot", default=None, help="also draw a timeline PNG of the detections here")
    parser.add_argument("--plot-max-videos", type=int, default=8, help="videos drawn in the timeline (default 8)")
    parser.add_argument(
        "--ground-truth", default=None,
        help="optional ActivityNet-style annotation JSON ({'database': {video_id: {...}}}) drawn above the detections",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="windows per model call (default 1)")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda', 'cuda:1', ... (default: first accelerator, else CPU)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype (default fp32)")
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="dtype the weights are loaded in (default fp32); bf16/fp16 halve the model's memory",
    )
    parser.add_argument(
        "--on-error", choices=("skip", "raise"), default="skip",
        help="undecodable video: report and go on with the others (skip, default) or stop (raise)",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads for the model (default: torch's choice; 1 is faster on a machine shared with other jobs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def collect_videos(arguments: list[str], parser: argparse.ArgumentParser) -> list[Path]:
    """Expand folders to their video files; keep files as given (a missing file is reported when decoded)."""
    videos = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                parser.error(f"folder '{path}' holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            videos.extend(found)
        else:
            videos.append(path)
    first_path_of_id: dict[str, Path] = {}
    for video in videos:
        other = first_path_of_id.setdefault(video.stem, video)
        if other != video:
            parser.error(
                f"'{other}' and '{video}' both give the video id '{video.stem}' (the file name without "
                "extension, the key in the JSON); rename one or run them separately"
            )
    return videos


def detect_main(argv: list[str] | None = None) -> int:
    """Entry point of `adatad-detect`; returns the exit status (0 ok, 1 some videos skipped, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.plot_max_videos < 1:
        parser.error(f"--plot-max-videos must be >= 1, got {args.plot_max_videos}")
    videos = collect_videos(args.videos, parser)
    ground_truth = read_ground_truth(args.ground_truth, parser) if args.ground_truth else {}

    # Heavy imports only once the arguments are known to be usable (keeps `--help` and usage errors fast).
    import torch
    from tqdm.auto import tqdm

    from .pipeline_adatad import PRECISIONS, ModelProcessorMismatchError, is_decode_error, load_detection_pipeline

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pipeline_kwargs = {"batch_size": args.batch_size, "dtype": PRECISIONS[args.dtype] or torch.float32}
    if args.device is not None:
        pipeline_kwargs["device"] = args.device
    try:
        detector = load_detection_pipeline(args.model, **pipeline_kwargs)
    except (FileNotFoundError, ModelProcessorMismatchError) as error:
        parser.error(str(error))

    results, skipped, durations = {}, [], {}
    with tqdm(total=0, unit="window", desc="windows", disable=args.no_progress, file=sys.stderr) as progress:
        try:
            for video in detector.detect(
                videos, threshold=args.threshold, on_error=args.on_error, precision=args.precision, progress=progress
            ):
                if video.error is not None:
                    skipped.append(video)
                    progress.write(f"skipped {video.video}: {video.error}")
                    continue
                results[video.video_id] = video.detections
                durations[video.video_id] = video.duration
        except Exception as error:
            if not is_decode_error(error):
                raise
            progress.close()
            print(f"adatad-detect: error: {error} (stopped: --on-error raise; nothing written)", file=sys.stderr)
            return 1

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    submission = {"version": ACTIVITYNET_VERSION, "results": results, "external_data": {}}
    output.write_text(json.dumps(submission, indent=2))
    num_detections = sum(len(detections) for detections in results.values())
    print(f"wrote {num_detections} detections (score >= {args.threshold}) for {len(results)} video(s) to {output}")

    if args.plot and results:
        plot_path = _plot(args, results, durations, ground_truth)
        print(f"wrote the timeline of {min(len(results), args.plot_max_videos)} video(s) to {plot_path}")
    elif args.plot:
        print(f"no timeline written to {args.plot}: no video was decoded", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} of {len(videos)} video(s) could not be decoded and were skipped:", file=sys.stderr)
        for video in skipped:
            print(f"  {video.video}: {video.error.reason}", file=sys.stderr)
        return 1
    return 0


def read_ground_truth(path: str, parser: argparse.ArgumentParser) -> dict:
    """`{video_id: {"annotations": [...], ...}}` from an ActivityNet-style JSON (with or without `database`)."""
    try:
        annotations = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        parser.error(f"cannot read --ground-truth '{path}': {error}")
    annotations = annotations.get("database", annotations) if isinstance(annotations, dict) else None
    if not isinstance(annotations, dict):
        parser.error(f"--ground-truth '{path}' must be {{'database': {{video_id: {{'annotations': [...]}}}}}}")
    return annotations


def _plot(args, results: dict, durations: dict, ground_truth: dict) -> Path:
    from .visualization import plot_timeline

    video_ids = list(results)[: args.plot_max_videos]
    # The decoded duration sets the time axis; annotations (if any) come from --ground-truth.
    database = {
        video_id: {**ground_truth.get(video_id, {"annotations": []}), "duration": durations[video_id]}
        for video_id in video_ids
    }
    return plot_timeline(
        {"database": database}, results, args.plot, video_ids=video_ids, score_threshold=args.threshold
    )


if __name__ == "__main__":
    sys.exit(detect_main())
