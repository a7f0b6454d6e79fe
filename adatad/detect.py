"""`adatad-detect` (also `python -m adatad.detect`): temporal action detection on video files from the command line.

    adatad-detect VIDEO_OR_FOLDER... --model DIR_OR_REPO_ID [--video-list paths.txt] [--trust-remote-code]
                  [--output detections.json|-] [--format json|srt|vtt|csv|jsonl] [--threshold T] [--top-k K]
                  [--plot timeline.png] [--batch-size N] [--device cpu|cuda|cuda:1] [--precision fp32|bf16|fp16]
                  [--on-error skip|raise] [--resume] [--profile] [--follow [--follow-timeout S]]
                  [--threads N] [--ground-truth annotations.json] [--no-progress] [--debug]
    accelerate launch --num_processes N -m adatad.detect ...   (the same command, its videos shared by N processes)

Archives: every finished video is appended at once, as one JSON line, to this process's part file in
`<output>.parts/` (flushed and fsync'ed), so an interrupted run (Ctrl-C, a kill, a crash) keeps every finished video
and `--resume` goes on with the others. The requested format is assembled from the parts at the end, written
atomically, and the parts folder is removed. Under `accelerate launch` process `i` of `N` takes videos `i, i + N,
i + 2N, ...` of the input list (folders sorted by name), writes its own part file, and the main process assembles
the one result after every process is done: the same bytes as a one-process run.

`--follow VIDEO`: near-online detection on a file still being written (a recording): windows run as soon as their
frames are in the file, the detections that no later frame can change are printed as JSON lines on standard error
as they become final, and the run ends when the file has not grown for `--follow-timeout` seconds.

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
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from .argparse_types import positive_float, positive_int, probability
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatad-detect",
        description="Detect actions in videos with an AdaTAD model folder (model + AdaTADVideoProcessor).",
        epilog="Exit status: 0 all videos done; 1 some or all videos skipped (undecodable, or NaN/infinite detector "
        "outputs) or stopped by --on-error raise, or an unexpected error; 2 bad arguments (unusable --model, "
        "values out of range, output not writable or equal to an input).",
    )
    parser.add_argument(
        "videos", nargs="*", metavar="VIDEO",
        help="video files, or folders whose video files (by extension, not recursive) are all processed",
    )
    parser.add_argument(
        "--video-list", action="append", default=[], metavar="FILE",
        help="a text file listing videos (files or folders), one path a line (blank lines and lines starting "
        "with # are ignored; relative paths are relative to the current folder); may be repeated",
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
    parser.add_argument(
        "--resume", action="store_true",
        help="go on with an interrupted run: videos already in <output>.parts/ are not processed again (the run's "
        "settings must be the same)",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="print the seconds spent in each stage (decoding, model, window post-processing, merging, writing)",
    )
    parser.add_argument(
        "--follow", action="store_true",
        help="one video file that is still being written: detect as its frames arrive, print final detections as "
        "JSON lines on standard error as they become final, stop when the file stops growing",
    )
    parser.add_argument(
        "--follow-timeout", type=positive_float, default=10.0,
        help="with --follow: seconds without growth after which the file is considered complete (default 10)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    return parser


def read_video_list(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The paths of a `--video-list` file: one a line, blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"cannot read --video-list '{path}': {error}")
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


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
    if not videos:
        parser.error("no videos: give video files or folders, or --video-list FILE")
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


# Device types that hold real tensors and run a model; `meta` and the like hold shapes only.
RUNNING_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "npu", "hpu")


def check_device(name: str, parser: argparse.ArgumentParser) -> str:
    """`--device` as torch reads it, refused by name unless it is a device of this machine that can run a model."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        parser.error(f"--device '{name}' is not a torch device name; use cpu, cuda or cuda:N")
    if device.type not in RUNNING_DEVICE_TYPES:
        parser.error(f"--device '{name}' is a '{device.type}' device, which cannot run a model; use cpu or cuda")
    backend = getattr(torch, device.type, None) if device.type != "cpu" else None
    if backend is not None and not (hasattr(backend, "is_available") and backend.is_available()):
        parser.error(f"--device '{name}': no {device.type} device is available on this machine; use cpu")
    if backend is not None and device.index is not None and hasattr(backend, "device_count"):
        if device.index >= backend.device_count():
            parser.error(f"--device '{name}': this machine has {backend.device_count()} {device.type} device(s)")
    return name


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


def _cue_text(label) -> str:
    """A label as one line of cue text: a line break would end the cue early and `-->` would start a new one, so
    whitespace runs become one space and `-->` becomes `->` (json, csv and jsonl keep labels as they are)."""
    return " ".join(str(label).split()).replace("-->", "->")


def to_subtitles(detections: list[dict], fmt: str) -> str:
    """SRT or WebVTT cues in time order, each showing `label (score)` over its segment."""
    separator = "," if fmt == "srt" else "."
    cues = []
    ordered = sorted(detections, key=lambda d: (d["segment"][0], -d["score"]))
    for number, detection in enumerate(ordered, start=1):
        start, end = detection["segment"]
        timing = f"{_timestamp(start, separator)} --> {_timestamp(end, separator)}"
        text = f"{_cue_text(detection['label'])} ({detection['score']:.2f})"
        cues.append(f"{number}\n{timing}\n{text}\n" if fmt == "srt" else f"{timing}\n{text}\n")
    body = "\n".join(cues)
    return body if fmt == "srt" else "WEBVTT\n\n" + body


def render(results: dict[str, list[dict]], fmt: str, video_id: str | None) -> str:
    if fmt in SUBTITLE_FORMATS:
        return to_subtitles(results[video_id] if video_id is not None else next(iter(results.values())), fmt)
    return {"json": to_json, "csv": to_csv, "jsonl": to_jsonl}[fmt](results)


# -- part files: what survives an interruption ------------------------------------------------------------------

PARTS_SUFFIX = ".parts"
RUN_SETTINGS_FILE = "run.json"


class PartFiles:
    """The `<output>.parts/` folder of a run: `run.json` (the settings that shape detections, checked by
    `--resume`) and one JSON-lines file per process, `part-<index>-of-<count>.jsonl`, one line per finished video:
    `{"video_id", "video", "duration", "detections"}`, or `{"video_id", "video", "error"}` for a skipped one."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def read_settings(self) -> dict | None:
        path = self.folder / RUN_SETTINGS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_settings(self, settings: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.folder / RUN_SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")

    def records(self) -> dict[str, dict]:
        """The last record of every video id over all part files. A last line without its newline (the process was
        killed while writing it) is ignored; any other unreadable line is an error naming the file and line."""
        records: dict[str, dict] = {}
        for path in sorted(self.folder.glob("part-*.jsonl")):
            text = path.read_text(encoding="utf-8")
            lines = text.split("\n")
            for number, line in enumerate(lines, start=1):
                if not line or (number == len(lines)):  # the text after the last newline: empty, or a torn line
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {number}: not a JSON record ({error}); remove the line") from None
                records[record["video_id"]] = record
        return records

    @contextmanager
    def writer(self, process_index: int, num_processes: int):
        """Appends records to this process's part file; each one is on disk (flush + fsync) when `write` returns."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{process_index:05d}-of-{num_processes:05d}.jsonl"
        with open(path, "a+b") as handle:
            # A line torn by a kill would swallow the next record: cut the file back to its last whole line.
            handle.seek(0)
            content = handle.read()
            if content and not content.endswith(b"\n"):
                handle.truncate(content.rfind(b"\n") + 1)

            def write(record: dict) -> None:
                handle.write((json.dumps(record) + "\n").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())

            yield write


def shard(videos: list[Path], process_index: int, num_processes: int) -> list[Path]:
    """The videos process `process_index` of `num_processes` takes: every `num_processes`-th, starting at its index
    (round-robin over the input order, the same on every process and machine)."""
    return videos[process_index::num_processes]


class StageTimer:
    """Seconds per stage (`--profile`): `with timer("model"): ...`, or `timer.add(stage, seconds)` from the
    pipeline's threads (each stage is timed by one thread)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def report(self, wall: float, prefix: str = "") -> str:
        lines = [f"{prefix}time per stage (decoding, merging and writing overlap the model; total wall {wall:.2f} s):"]
        for stage, seconds in self.seconds.items():
            lines.append(f"{prefix}  {stage:<28} {seconds:9.2f} s")
        return "\n".join(lines)


def _distributed_state():
    """accelerate's process state: one process for a plain run, N under `accelerate launch --num_processes N`."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # `accelerate launch --cpu` (or ACCELERATE_USE_CPU=true) asks for a gloo group of CPU processes, which
    # PartialState joins only when told. Processes wait for the slowest at the end: a shard may take days.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=timedelta(days=7))


# -- main ------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of `adatad-detect` and `python -m adatad.detect`; returns the exit status (0 ok, 1 videos skipped
    or an error, 2 bad arguments, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _detect(args, parser)
    except KeyboardInterrupt:
        print("adatad-detect: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(
            f"adatad-detect: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _threshold(args, fmt: str) -> float:
    if args.threshold is not None:
        return args.threshold
    return VIEWING_THRESHOLD if fmt in SUBTITLE_FORMATS else EVALUATION_THRESHOLD


def _load_detector(args, parser: argparse.ArgumentParser, device=None):
    """The pipeline of `--model` on `device`; loading problems are usage errors (exit 2)."""
    import torch

    from .memory_estimation import limit_cpu_heap_fragmentation
    from .pipeline_adatad import PRECISIONS, ModelFolderError, ModelProcessorMismatchError, load_detection_pipeline

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = check_device(args.device, parser) if args.device is not None else device
    if str(device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu"):
        # On CPU, freed activations go back to the system instead of fragmenting the heap.
        limit_cpu_heap_fragmentation()
    pipeline_kwargs = {"batch_size": args.batch_size, "dtype": PRECISIONS[args.dtype] or torch.float32}
    if device is not None:
        pipeline_kwargs["device"] = device
    try:
        return load_detection_pipeline(args.model, trust_remote_code=args.trust_remote_code, **pipeline_kwargs)
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
        if "weights_only" in str(error):
            # Never pass on torch's advice to retry with weights_only=False: that would run the file's code.
            parser.error(
                f"cannot load the model from '{args.model}': a weights file in it is a pickle holding more than "
                "tensors, which is refused because loading it would run code; use a folder with model.safetensors "
                "(what save_pretrained writes)"
            )
        parser.error(f"cannot load the model from '{args.model}': {error}")


def _detect(args, parser: argparse.ArgumentParser) -> int:
    wall_start = time.perf_counter()
    fmt = output_format(args)
    to_stdout = args.output == STDOUT
    viewing = fmt in SUBTITLE_FORMATS
    threshold = _threshold(args, fmt)
    plot_threshold = args.threshold if args.threshold is not None else VIEWING_THRESHOLD
    listed = [path for list_file in args.video_list for path in read_video_list(list_file, parser)]
    videos = collect_videos(list(args.videos) + listed, parser)
    if args.follow:
        return _follow(args, parser, videos, threshold)
    video_ids = [video.stem for video in videos]
    if to_stdout and viewing and len(videos) > 1:
        parser.error(f"--output - holds one {fmt} file: give one video, or a file path for one {fmt} file per video")
    if to_stdout and args.resume:
        parser.error("--resume needs an --output file (its parts are kept beside it); --output - keeps nothing")
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
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        parser.error(f"--plot '{args.plot}' must end in .png: the timeline is written as a PNG picture")
    report = sys.stderr if to_stdout else sys.stdout

    state = _distributed_state()
    timer = StageTimer()
    # Loading problems are usage errors: before anything is written.
    with timer("loading the model"):
        detector = _load_detector(args, parser, device=state.device if state.num_processes > 1 else None)
    # What shapes the detections: a resumed run must not mix parts made with other settings.
    run_settings = {
        "model": str(args.model), "threshold": threshold, "top_k": args.top_k, "precision": args.precision,
        "dtype": args.dtype,
    }
    if to_stdout:
        if state.num_processes > 1:
            parser.error("--output - with several processes: give an --output file, the processes share its parts")
        parts = PartFiles(Path(tempfile.mkdtemp(prefix="adatad-detect-")))
    else:
        parts = PartFiles(Path(args.output).with_name(Path(args.output).name + PARTS_SUFFIX))
        has_finished_videos = parts.folder.exists() and bool(parts.records())
        if has_finished_videos and not args.resume:
            parser.error(
                f"'{parts.folder}' holds the finished videos of an earlier run of this command that did not end: "
                "add --resume to go on with it, or remove the folder to start again"
            )
        earlier = parts.read_settings() if has_finished_videos else None
        if earlier is not None and earlier != run_settings:
            changed = ", ".join(
                f"{key} {earlier.get(key)!r} -> {value!r}" for key, value in run_settings.items()
                if earlier.get(key) != value
            )
            parser.error(f"--resume: '{parts.folder}' was made with other settings ({changed}); use the same ones")
        state.wait_for_everyone()  # every process checked before the main one creates the folder
        if state.is_main_process:
            parts.write_settings(run_settings)
    state.wait_for_everyone()

    finished = {video_id for video_id, record in parts.records().items() if "error" not in record}
    my_share = shard(videos, state.process_index, state.num_processes)
    my_videos = [video for video in my_share if video.stem not in finished]
    if finished and state.is_main_process:
        print(f"--resume: {len(finished)} of {len(videos)} video(s) already done in '{parts.folder}'", file=report)

    from tqdm.auto import tqdm

    from .pipeline_adatad import NonFiniteDetectorOutputError, is_decode_error

    process_name = f"process {state.process_index}/{state.num_processes}: " if state.num_processes > 1 else ""
    my_skipped = 0
    try:
        with parts.writer(state.process_index, state.num_processes) as write_record, tqdm(
            total=0, unit="window", desc=f"{process_name}windows", disable=args.no_progress or not my_videos,
            file=sys.stderr, position=state.process_index,
        ) as progress:
            for video in detector.detect(
                my_videos, threshold=threshold, top_k=args.top_k, on_error=args.on_error, precision=args.precision,
                progress=progress, timings=timer,
            ):
                record = {"video_id": video.video_id, "video": video.video}
                if video.error is not None:
                    my_skipped += 1
                    progress.write(f"skipped {video.video}: {video.error}")
                    record["error"] = str(getattr(video.error, "reason", video.error))
                else:
                    record.update(duration=video.duration, detections=video.detections)
                with timer("writing the part line"):
                    write_record(record)
    except (KeyboardInterrupt, Exception) as error:
        stopped_for_a_video = is_decode_error(error) or isinstance(error, NonFiniteDetectorOutputError)
        if to_stdout or not parts.records():
            # a temporary folder (nothing can resume from it), or no finished video to keep
            shutil.rmtree(parts.folder, ignore_errors=True)
            kept = "nothing written"
        else:
            kept = f"the finished videos are kept in '{parts.folder}': run the same command with --resume to go on"
        if isinstance(error, KeyboardInterrupt):
            print(f"adatad-detect: interrupted; {kept}", file=sys.stderr)
            return 130
        if not stopped_for_a_video:
            raise
        print(f"adatad-detect: error: {error} (stopped: --on-error raise; {kept})", file=sys.stderr)
        return 1

    state.wait_for_everyone()
    status = 1 if my_skipped else 0
    if state.is_main_process:
        status = _assemble(args, parts, videos, targets, fmt, threshold, plot_threshold, ground_truth, report, timer)
    if args.profile:
        print(timer.report(time.perf_counter() - wall_start, prefix=process_name), file=sys.stderr)
    return status


def _assemble(args, parts, videos, targets, fmt, threshold, plot_threshold, ground_truth, report, timer) -> int:
    """Main process, once every process is done: the parts -> the requested output (atomically), then the parts
    folder goes."""
    to_stdout = args.output == STDOUT
    records = parts.records()
    results, durations, skipped = {}, {}, []
    for video in videos:
        record = records.get(video.stem)
        if record is None or "error" in record:
            skipped.append((video, "no result" if record is None else record["error"]))
            continue
        results[video.stem] = record["detections"]
        durations[video.stem] = record["duration"]

    if not results:
        print(
            f"adatad-detect: error: none of the {len(videos)} video(s) gave detections (see the reasons below); "
            "nothing written" + ("" if to_stdout else f", '{args.output}' left as it was"),
            file=sys.stderr,
        )
        _report_skipped(skipped, len(videos))
        shutil.rmtree(parts.folder, ignore_errors=True)
        return 1

    num_detections = sum(len(detections) for detections in results.values())
    with timer("assembling the output"):
        if to_stdout:
            sys.stdout.write(render(results, fmt, None))
            sys.stdout.flush()
            written = "standard output"
        else:
            for video_id, path in targets.items():
                if video_id is None or video_id in results:
                    write_text_atomically(path, render(results, fmt, video_id))
            written = ", ".join(
                str(path) for video_id, path in targets.items() if video_id is None or video_id in results
            )
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
    shutil.rmtree(parts.folder, ignore_errors=True)
    if skipped:
        _report_skipped(skipped, len(videos))
        return 1
    return 0


def _report_skipped(skipped: list[tuple[Path, str]], num_videos: int) -> None:
    print(f"{len(skipped)} of {num_videos} video(s) were skipped:", file=sys.stderr)
    for video, reason in skipped:
        print(f"  {video}: {reason}", file=sys.stderr)


# -- --follow: a file still being written ---------------------------------------------------------------------

FOLLOW_POLL_SECONDS = 0.5
FOLLOW_CHUNK_FRAMES = 64


def read_growing_video(path: Path, timeout: float, poll_seconds: float = FOLLOW_POLL_SECONDS):
    """Yields `(fps, frames)`, uint8 `(T, H, W, 3)` chunks of a video file that is still being written (a container
    readable while it grows: MKV, MPEG-TS, WebM, ...), until the file has not grown for `timeout` seconds.

    Each pass reopens the file, seeks to the key frame before the last frame read and decodes on from there. The
    last frame of a pass is held back while the file grows (it may come from a packet still being written)."""
    import av
    import numpy as np
    import torch

    last_pts, size, last_growth = None, -1, time.monotonic()
    while True:
        current_size = path.stat().st_size if path.exists() else 0
        if current_size != size:
            size, last_growth = current_size, time.monotonic()
        settled = time.monotonic() - last_growth >= timeout
        frames, pts_list, fps = [], [], None
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or stream.guessed_rate or 0)
                if last_pts is not None:
                    container.seek(last_pts, stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if last_pts is not None and frame.pts is not None and frame.pts <= last_pts:
                        continue
                    frames.append(frame.to_ndarray(format="rgb24"))
                    pts_list.append(frame.pts)
        except (av.error.FFmpegError, IndexError, OSError):
            pass  # not readable yet (no header, or a stream still being set up): try again
        if frames and not settled:
            frames, pts_list = frames[:-1], pts_list[:-1]
        for first in range(0, len(frames), FOLLOW_CHUNK_FRAMES):
            yield fps, torch.from_numpy(np.stack(frames[first : first + FOLLOW_CHUNK_FRAMES]))
        if pts_list:
            last_pts = pts_list[-1]
        if settled:
            return
        if not frames:
            time.sleep(poll_seconds)


def _follow(args, parser: argparse.ArgumentParser, videos: list[Path], threshold: float) -> int:
    """`--follow`: near-online detection on one growing file; final detections go to standard output as JSON lines
    as they become final, the whole result to --output (in its format) at the end."""
    if len(videos) != 1:
        parser.error(f"--follow takes one video file, got {len(videos)}")
    if args.resume or args.plot:
        parser.error("--follow writes its result at the end; --resume and --plot do not apply")
    (video,) = videos
    fmt = output_format(args)
    to_stdout = args.output == STDOUT
    if not to_stdout:
        check_outputs([("--output", Path(args.output))], [video], parser)
    detector = _load_detector(args, parser)
    stream, detections = None, []
    started = time.perf_counter()

    def emit(found: list[dict], video_seconds: float) -> None:
        for detection in found:
            start, end = detection["segment"]
            line = {"video": video.stem, "start": start, "end": end, "label": detection["label"],
                    "score": detection["score"], "emitted_at_video_second": round(video_seconds, 3)}
            print(json.dumps(line), flush=True)
        detections.extend(found)

    for fps, frames in read_growing_video(video, args.follow_timeout):
        if stream is None:
            if not fps > 0:
                print(f"adatad-detect: error: '{video}' reports no frame rate", file=sys.stderr)
                return 1
            stream = detector.stream(fps=fps, threshold=threshold, precision=args.precision)
        emit(stream.push(frames), stream.num_frames / fps)
    if stream is None:
        print(f"adatad-detect: error: no frame of '{video}' could be decoded", file=sys.stderr)
        return 1
    emit(stream.finish(), stream.num_frames / stream.fps)
    detections.sort(key=lambda d: -d["score"])
    if args.top_k is not None:
        detections = detections[: args.top_k]
    if not to_stdout:
        write_text_atomically(args.output, render({video.stem: detections}, fmt, None))
    print(
        f"followed {stream.num_frames} frames of '{video}' in {time.perf_counter() - started:.1f} s: "
        f"{len(detections)} detections" + ("" if to_stdout else f", written to {args.output}"),
        file=sys.stderr,
    )
    if stream.late_candidates:
        print(f"warning: {stream.late_candidates} candidates started before settled detections", file=sys.stderr)
    return 0


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




if __name__ == "__main__":
    sys.exit(main())
