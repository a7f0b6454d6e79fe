"""`adatad-detect`: temporal action detection on video files from the command line.

    adatad-detect VIDEO_OR_FOLDER... --model DIR_OR_REPO_ID [--trust-remote-code] [--output detections.json|-]
                  [--format json|srt|vtt|csv|jsonl] [--threshold T] [--top-k K] [--plot timeline.png]
                  [--batch-size N] [--device cpu|cuda|cuda:1] [--precision fp32|bf16|fp16] [--on-error skip|raise]
                  [--threads N] [--ground-truth annotations.json] [--no-progress] [--debug]

Formats (`--format`, default from the `--output` extension, else json):
  json   the ActivityNet result layout `{"version": "VERSION 1.3", "results": {video_id: [{"label", "score",
         "segment": [start_s, end_s]}]}, "external_data": {}}` that `adatad-eval` reads (video id = file name
         without extension);
  csv    one file, columns `video,start,end,label,score`;
  jsonl  one file, one `{"video", "start", "end", "label", "score"}` object per line;
  srt, vtt  subtitles showing the action names (and scores) while they happen; with several videos one file per
         video beside --output, named `<output stem>.<video id>.<srt|vtt>`.
`--output -` writes to standard output (one video for srt/vtt).

Threshold: json, csv and jsonl keep every detection by default (threshold 0: mAP needs the whole ranked list, up to
the processor's `max_segments` per video); srt, vtt and the `--plot` picture are for viewing and keep scores >= 0.3
by default. An explicit `--threshold` applies to all of them.

The model folder is loaded with the installed adatad classes; no Python file in it runs unless
`--trust-remote-code` is given (only for folders whose code you have read), and even then the installed classes are
used where they apply (transformers prefers registered classes): the folder's code runs only for a model the installed
package does not provide. `--model` also takes a Hub repo id
(`owner/name`), read from the Hugging Face cache without network access when it is there.

Outputs are written under a temporary name in the target folder and renamed when complete. Nothing is written when
no video succeeds (an earlier result file stays as it was), and an output path that is one of the inputs, or the
same for --output and --plot, is refused before any model work.

A video that cannot be decoded, or whose detector outputs are NaN or infinite (the window is named), is reported
and skipped by default, so a folder run finishes the other videos; `--on-error raise` stops at the first one.
Exit status: 0 all videos done; 1 some or all videos skipped or stopped, or an unexpected error (`--debug` shows
its traceback); 2 bad arguments (unusable model folder or repo id, model/processor mismatch, no videos, repeated
video ids, values out of range, output not writable or equal to an input).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from .atomic_files import OutputPathError, check_output_path, write_text_atomically

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
ACTIVITYNET_VERSION = "VERSION 1.3"
FORMATS = ("json", "srt", "vtt", "csv", "jsonl")
SUBTITLE_FORMATS = ("srt", "vtt")
# Default thresholds when --threshold is not given: the whole ranked list for files meant for evaluation or
# analysis, the confident detections for what people look at.
EVALUATION_THRESHOLD = 0.0
VIEWING_THRESHOLD = 0.3
STDOUT = "-"


def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatad-detect",
        description="Detect actions in videos with an AdaTAD model folder (model + AdaTADVideoProcessor).",
        epilog="Exit status: 0 all videos done; 1 some or all videos skipped (undecodable, or NaN/infinite detector "
        "outputs) or stopped by --on-error raise, or an unexpected error; 2 bad arguments (unusable --model, "
        "values out of range, output not writable or equal to an input).",
    )
    parser.add_argument(
        "videos", nargs="+", metavar="VIDEO",
        help="video files, or folders whose video files (by extension, not recursive) are all processed",
    )
    parser.add_argument(
        "--model", required=True,
        help="folder with config.json, weights and video_preprocessor_config.json, or a Hub repo id "
        "owner/name[@revision] (from the Hugging Face cache when it is there)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="allow running the Python files inside the model folder for classes the installed adatad does not "
        "provide (only for folders whose code you have read); without it no code from the folder runs",
    )
    parser.add_argument(
        "--threshold", type=probability, default=None,
        help=f"keep detections with score >= this, in [0, 1] (default {EVALUATION_THRESHOLD} for json/csv/jsonl: "
        f"the whole ranked list adatad-eval needs; {VIEWING_THRESHOLD} for srt/vtt and --plot)",
    )
    parser.add_argument("--top-k", type=positive_int, default=None, help="keep at most this many detections per video")
    parser.add_argument(
        "--output", default="detections.json",
        help="file to write (default detections.json); '-' for standard output",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default=None,
        help="output format (default: from the --output extension, else json); srt/vtt with several videos: one "
        "file per video beside --output",
    )
    parser.add_argument(
        "--plot", default=None, help="also draw a timeline PNG of the detections here (needs matplotlib)"
    )
    parser.add_argument(
        "--plot-max-videos", type=positive_int, default=8, help="videos drawn in the timeline (default 8)"
    )
    parser.add_argument(
        "--ground-truth", default=None,
        help="optional ActivityNet-style annotation JSON ({'database': {video_id: {...}}}) drawn above the detections",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1, help="windows per model call (default 1)")
    parser.add_argument(
        "--device", default=None, help="'cpu', 'cuda', 'cuda:1', ... (default: first accelerator, else CPU)"
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype (default fp32)"
    )
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="dtype the weights are loaded in (default fp32); bf16/fp16 halve the model's memory",
    )
    parser.add_argument(
        "--on-error", choices=("skip", "raise"), default="skip",
        help="undecodable video or NaN/infinite detector outputs: report and go on with the others (skip, default) "
        "or stop (raise)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None,
        help="torch CPU threads for the model (default: torch's choice; 1 is faster on a machine shared with "
        "other jobs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
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


def output_format(args) -> str:
    if args.format is not None:
        return args.format
    suffix = Path(args.output).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else "json"


def output_paths(output: str, fmt: str, video_ids: list[str]) -> dict[str | None, Path]:
    """Where each file goes: `{None: path}` for one file holding every video, else `{video_id: path}`."""
    path = Path(output)
    if fmt not in SUBTITLE_FORMATS or len(video_ids) == 1:
        return {None: path}
    return {video_id: path.with_name(f"{path.stem}.{video_id}.{fmt}") for video_id in video_ids}


def check_outputs(targets: list[tuple[str, Path]], inputs: list[Path], parser: argparse.ArgumentParser) -> None:
    """Refuses a target (`(option, path)`) that is an input or another target, or that cannot be written; before any
    model work."""
    seen: dict[Path, str] = {}
    for option, target in targets:
        resolved = target.resolve()
        if resolved in seen:
            parser.error(f"{option} '{target}' is also {seen[resolved]}; give them different paths")
        seen[resolved] = option
        try:
            check_output_path(option, target, [("input", source) for source in inputs])
        except OutputPathError as error:
            parser.error(str(error))


# -- formats ---------------------------------------------------------------------------------------------------


def _rows(results: dict[str, list[dict]]):
    for video_id, detections in results.items():
        for detection in detections:
            start, end = detection["segment"]
            yield video_id, start, end, detection["label"], detection["score"]


def to_json(results: dict[str, list[dict]]) -> str:
    return json.dumps({"version": ACTIVITYNET_VERSION, "results": results, "external_data": {}}, indent=2) + "\n"


def to_csv(results: dict[str, list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "start", "end", "label", "score"])
    writer.writerows(_rows(results))
    return buffer.getvalue()


def to_jsonl(results: dict[str, list[dict]]) -> str:
    return "".join(
        json.dumps({"video": video, "start": start, "end": end, "label": label, "score": score}) + "\n"
        for video, start, end, label, score in _rows(results)
    )


def _timestamp(seconds: float, separator: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{milliseconds:03d}"


def to_subtitles(detections: list[dict], fmt: str) -> str:
    """SRT or WebVTT cues in time order, each showing `label (score)` over its segment."""
    separator = "," if fmt == "srt" else "."
    cues = []
    ordered = sorted(detections, key=lambda d: (d["segment"][0], -d["score"]))
    for number, detection in enumerate(ordered, start=1):
        start, end = detection["segment"]
        timing = f"{_timestamp(start, separator)} --> {_timestamp(end, separator)}"
        text = f"{detection['label']} ({detection['score']:.2f})"
        cues.append(f"{number}\n{timing}\n{text}\n" if fmt == "srt" else f"{timing}\n{text}\n")
    body = "\n".join(cues)
    return body if fmt == "srt" else "WEBVTT\n\n" + body


def render(results: dict[str, list[dict]], fmt: str, video_id: str | None) -> str:
    if fmt in SUBTITLE_FORMATS:
        return to_subtitles(results[video_id] if video_id is not None else next(iter(results.values())), fmt)
    return {"json": to_json, "csv": to_csv, "jsonl": to_jsonl}[fmt](results)


# -- main ------------------------------------------------------------------------------------------------------


def detect_main(argv: list[str] | None = None) -> int:
    """Entry point of `adatad-detect`; returns the exit status (0 ok, 1 videos skipped or an error, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _detect(args, parser)
    except KeyboardInterrupt:
        print("adatad-detect: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(
            f"adatad-detect: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _detect(args, parser: argparse.ArgumentParser) -> int:
    fmt = output_format(args)
    to_stdout = args.output == STDOUT
    viewing = fmt in SUBTITLE_FORMATS
    threshold = (
        args.threshold if args.threshold is not None else (VIEWING_THRESHOLD if viewing else EVALUATION_THRESHOLD)
    )
    plot_threshold = args.threshold if args.threshold is not None else VIEWING_THRESHOLD
    videos = collect_videos(args.videos, parser)
    video_ids = [video.stem for video in videos]
    if to_stdout and viewing and len(videos) > 1:
        parser.error(f"--output - holds one {fmt} file: give one video, or a file path for one {fmt} file per video")
    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: pip install 'adatad[plot]'")
    ground_truth = read_ground_truth(args.ground_truth, parser) if args.ground_truth else {}

    targets = {} if to_stdout else output_paths(args.output, fmt, video_ids)
    outputs = [("--output", path) for path in targets.values()] + ([("--plot", Path(args.plot))] if args.plot else [])
    inputs = list(videos) + ([Path(args.ground_truth)] if args.ground_truth else [])
    model_path = Path(args.model)
    if model_path.is_dir():
        inputs += [p for p in model_path.iterdir() if p.is_file()]
    check_outputs(outputs, inputs, parser)
    report = sys.stderr if to_stdout else sys.stdout

    # Heavy imports only once the arguments are known to be usable (keeps `--help` and usage errors fast).
    import torch
    from tqdm.auto import tqdm

    from .memory_estimation import limit_cpu_heap_fragmentation
    from .pipeline_adatad import (
        PRECISIONS,
        ModelFolderError,
        ModelProcessorMismatchError,
        NonFiniteDetectorOutputError,
        is_decode_error,
        load_detection_pipeline,
    )

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu"):
        # On CPU, freed activations go back to the system instead of fragmenting the heap.
        limit_cpu_heap_fragmentation()
    pipeline_kwargs = {"batch_size": args.batch_size, "dtype": PRECISIONS[args.dtype] or torch.float32}
    if args.device is not None:
        pipeline_kwargs["device"] = args.device
    try:
        detector = load_detection_pipeline(args.model, trust_remote_code=args.trust_remote_code, **pipeline_kwargs)
    except (ModelFolderError, ModelProcessorMismatchError) as error:
        parser.error(str(error))
    except Exception as error:
        if args.debug:
            raise
        if "trust_remote_code" in str(error) and not args.trust_remote_code:
            parser.error(
                f"'{args.model}' is not a model the installed adatad can load (its config.json asks for the folder's "
                "own Python code); read that code, then pass --trust-remote-code to run it"
            )
        parser.error(f"cannot load the model from '{args.model}': {error}")

    results, skipped, durations = {}, [], {}
    with tqdm(total=0, unit="window", desc="windows", disable=args.no_progress, file=sys.stderr) as progress:
        try:
            for video in detector.detect(
                videos, threshold=threshold, top_k=args.top_k, on_error=args.on_error, precision=args.precision,
                progress=progress,
            ):
                if video.error is not None:
                    skipped.append(video)
                    progress.write(f"skipped {video.video}: {video.error}")
                    continue
                results[video.video_id] = video.detections
                durations[video.video_id] = video.duration
        except Exception as error:
            if not (is_decode_error(error) or isinstance(error, NonFiniteDetectorOutputError)):
                raise
            progress.close()
            print(f"adatad-detect: error: {error} (stopped: --on-error raise; nothing written)", file=sys.stderr)
            return 1

    if not results:
        print(
            f"adatad-detect: error: none of the {len(videos)} video(s) gave detections (see the reasons below); "
            "nothing written" + ("" if to_stdout else f", '{args.output}' left as it was"),
            file=sys.stderr,
        )
        _report_skipped(skipped, len(videos))
        return 1

    num_detections = sum(len(detections) for detections in results.values())
    if to_stdout:
        sys.stdout.write(render(results, fmt, None))
        sys.stdout.flush()
        written = "standard output"
    else:
        for video_id, path in targets.items():
            if video_id is None or video_id in results:
                write_text_atomically(path, render(results, fmt, video_id))
        written = ", ".join(str(path) for video_id, path in targets.items() if video_id is None or video_id in results)
    print(
        f"wrote {num_detections} detections (score >= {threshold}) for {len(results)} video(s) to {written}",
        file=report,
    )
    if fmt == "json" and threshold > 0:
        print(
            f"note: --threshold {threshold} cut the ranked lists; adatad-eval's mAP needs them whole (--threshold 0)",
            file=report,
        )

    if args.plot:
        plot_path = _plot(args, results, durations, ground_truth, plot_threshold)
        print(f"wrote the timeline of {min(len(results), args.plot_max_videos)} video(s) to {plot_path}", file=report)
    if skipped:
        _report_skipped(skipped, len(videos))
        return 1
    return 0


def _report_skipped(skipped: list, num_videos: int) -> None:
    print(f"{len(skipped)} of {num_videos} video(s) were skipped:", file=sys.stderr)
    for video in skipped:
        print(f"  {video.video}: {getattr(video.error, 'reason', video.error)}", file=sys.stderr)


def read_ground_truth(path: str, parser: argparse.ArgumentParser) -> dict:
    """`{video_id: {"annotations": [...], ...}}` from an ActivityNet-style JSON (with or without `database`)."""
    try:
        annotations = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        parser.error(f"cannot read --ground-truth '{path}': {error}")
    annotations = annotations.get("database", annotations) if isinstance(annotations, dict) else None
    if not isinstance(annotations, dict):
        parser.error(f"--ground-truth '{path}' must be {{'database': {{video_id: {{'annotations': [...]}}}}}}")
    return annotations


def _plot(args, results: dict, durations: dict, ground_truth: dict, threshold: float) -> Path:
    from .visualization import plot_timeline

    video_ids = list(results)[: args.plot_max_videos]
    # The decoded duration sets the time axis; annotations (if any) come from --ground-truth.
    database = {
        video_id: {**ground_truth.get(video_id, {"annotations": []}), "duration": durations[video_id]}
        for video_id in video_ids
    }
    target = Path(args.plot)
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix or ".png"
    )
    os.close(descriptor)
    try:
        plot_timeline(
            {"database": database}, results, temporary, video_ids=video_ids, score_threshold=threshold
        )
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# -- adatad-env ------------------------------------------------------------------------------------------------

ENV_PACKAGES = (
    "torch", "torchvision", "transformers", "accelerate", "huggingface_hub", "datasets", "evaluate", "safetensors",
    "numpy",
)
# Video decoders (the processor's `decode_backend`) and optional extras.
ENV_DECODERS = ("decord", "av", "torchcodec")
ENV_OPTIONAL = ("matplotlib", "tensorboard", "deepspeed")


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict:
    """Versions, devices and video decoders, for bug reports (`adatad-env`)."""
    import platform

    from . import __version__

    report = {
        "adatad": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in ENV_PACKAGES},
        "decoders": {name: _version(name) for name in ENV_DECODERS},
        "optional": {name: _version(name) for name in ENV_OPTIONAL},
    }
    if report["decoders"]["av"] != "not installed":
        try:
            import av

            report["decoders"]["av (ffmpeg libavcodec)"] = ".".join(map(str, av.library_versions["libavcodec"]))
        except Exception as error:  # a broken install is what the report is for: show it, do not stop
            report["decoders"]["av (ffmpeg libavcodec)"] = f"error: {error}"
    devices = {}
    try:
        import torch

        devices["torch threads"] = torch.get_num_threads()
        devices["cuda"] = torch.version.cuda or "not built with CUDA"
        devices["cuda available"] = torch.cuda.is_available()
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            properties = torch.cuda.get_device_properties(index)
            devices[f"cuda:{index}"] = (
                f"{properties.name}, {properties.total_memory / 2**30:.1f} GiB, compute capability "
                f"{properties.major}.{properties.minor}"
            )
        if torch.cuda.is_available():
            devices["bf16 supported"] = torch.cuda.is_bf16_supported()
        devices["mps available"] = torch.backends.mps.is_available()
    except Exception as error:
        devices["error"] = f"{type(error).__name__}: {error}"
    report["devices"] = devices
    report["environment"] = {
        name: os.environ[name]
        for name in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
        if name in os.environ
    }
    return report


def env_main(argv: list[str] | None = None) -> int:
    """Entry point of `adatad-env`: prints the environment report (text, or JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="adatad-env", description="Versions, devices and video decoders, to paste into a bug report."
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, item in value.items():
                print(f"  {name}: {item}")
        else:
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(detect_main())
