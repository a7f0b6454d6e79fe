"""The command lines of the custom-dataset tools: `adatad-convert-annotations`, `adatad-validate-data` and
`adatad-suggest-preset`."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import presets
from ..argparse_types import positive_int
from ..atomic_files import OutputPathError, check_not_an_input
from .conversion import convert_annotations, write_atomic
from .preset_suggestion import BACKBONE_PRESETS, build_custom_preset, dataset_statistics, suggest_settings
from .readers import class_names_from_file, read_annotations
from .records import CLASS_MAP_FILENAME, DEFAULT_SUBSET, CustomDataError, ValidationReport
from .validation import check_annotations, locate_videos, training_subset, validate_annotations


def _print_report(report: ValidationReport, stream=None) -> None:
    print(report.summary(), file=stream or sys.stdout)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-convert-annotations`: exit 0 when written, 1 when the data or a file has errors (nothing written),
    2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="adatad-convert-annotations",
        description="Convert a CSV / JSONL of `video,start,end,label[,subset,fps,duration]` rows, an ActivityNet-style "
        "JSON, or a folder of videos with one such file, to annotations.json + category_idx.txt for training.",
    )
    parser.add_argument("source", help="annotation file (.csv, .jsonl, .json) or folder of videos + one such file")
    parser.add_argument("--output-dir", required=True, help="folder for annotations.json and category_idx.txt")
    parser.add_argument("--video-dir", help="folder of the videos (default: the source folder); probed for durations")
    parser.add_argument("--class-map", help="class names, one per line (default: every label, sorted)")
    parser.add_argument("--default-subset", default=DEFAULT_SUBSET, help="subset of rows without one (%(default)s)")
    parser.add_argument("--train-subset", help="the training subset (default: 'training' or 'train')")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--skip-broken-videos", action="store_true", help="leave undecodable videos out (listed)")
    parser.add_argument("--clip-segments", action="store_true", help="clip segments reaching past the video's ends")
    parser.add_argument("--decode-backend", default="auto", choices=("auto", "decord", "pyav", "torchcodec"))
    args = parser.parse_args(argv)
    try:
        written, report = convert_annotations(
            args.source, args.output_dir, video_dir=args.video_dir, class_map=args.class_map,
            default_subset=args.default_subset, train_subset=args.train_subset,
            unlabelled_subsets=args.unlabelled_subset, skip_broken_videos=args.skip_broken_videos,
            clip_segments=args.clip_segments, decode_backend=args.decode_backend,
        )
    except CustomDataError as error:
        print(f"adatad-convert-annotations: error: {error}", file=sys.stderr)
        return 1
    _print_report(report)
    if written is None:
        print(f"nothing written to {args.output_dir}", file=sys.stderr)
        return 1
    print(f"wrote {written['annotation_file']} and {written['class_map_file']}")
    return 0


def validate_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-validate-data`: exit 0 when valid (warnings allowed), 1 on errors (also a file that cannot be read
    at all), 2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="adatad-validate-data",
        description="Check a temporal action detection dataset and print a report (counts per problem, first rows).",
    )
    parser.add_argument("annotations", help="annotation file (.csv, .jsonl, .json) or folder of videos + one file")
    parser.add_argument("--video-dir", help="folder of the videos: each must exist and decode")
    parser.add_argument("--class-map", help="class names, one per line (default: category_idx.txt beside a .json)")
    parser.add_argument("--train-subset", help="the training subset (default: 'training' or 'train')")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--no-decode", action="store_true", help="only check that video files exist")
    parser.add_argument("--max-examples", type=int, default=5, help="offending rows shown per problem (default 5)")
    args = parser.parse_args(argv)
    try:
        report = validate_annotations(
            args.annotations, video_dir=args.video_dir, class_map=args.class_map, train_subset=args.train_subset,
            unlabelled_subsets=args.unlabelled_subset, decode_videos=not args.no_decode, max_examples=args.max_examples,
        )
    except CustomDataError as error:
        print(f"adatad-validate-data: error: {error}", file=sys.stderr)
        return 1
    _print_report(report)
    return 0 if report.ok else 1


def suggest_main(argv: Sequence[str] | None = None) -> int:
    """`adatad-suggest-preset`: print suggested settings with the reasoning and write a training preset."""
    parser = argparse.ArgumentParser(
        prog="adatad-suggest-preset",
        description="Suggest window size, snippet stride, scale factor, FPN regression ranges and max_seq_len from a "
        "converted dataset, and write a preset for training/run_tad.py --preset FILE.",
    )
    parser.add_argument("annotations", help="annotations.json written by adatad-convert-annotations")
    parser.add_argument("--video-dir", required=True, help="folder of the videos")
    parser.add_argument("--backbone", required=True, choices=sorted(BACKBONE_PRESETS),
                        help="backbone (and the shipped preset its other settings come from)")
    parser.add_argument("--output", required=True, help="preset JSON file to write")
    parser.add_argument("--name", help="preset and dataset name (default: the output file name)")
    parser.add_argument("--train-subset", default=None, help="training subset (default: 'training' or 'train')")
    parser.add_argument("--test-subset", default=None, help="evaluation subset (default: the other labelled subset)")
    parser.add_argument("--unlabelled-subset", action="append", default=[], help="subset allowed to have no labels")
    parser.add_argument("--max-window-size", type=positive_int, default=768,
                        help="cap on the window in features (768)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="override preset fields; repeatable (every --set adds its overrides)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    try:
        shipped = [Path(str(path)) for path in presets.SHIPPED_PRESETS.iterdir() if path.name.endswith(".json")]
        class_map = Path(args.annotations).with_name(CLASS_MAP_FILENAME)
        inputs = [("annotations", args.annotations), ("class map", class_map)]
        check_not_an_input("--output", output, inputs + [("shipped preset", path) for path in shipped])
    except OutputPathError as error:
        print(f"adatad-suggest-preset: error: {error}", file=sys.stderr)
        return 1
    try:
        report = ValidationReport(args.annotations)
        records = read_annotations(args.annotations, report=report)
        check_annotations(records, report, class_names=class_names_from_file(Path(records.source).with_name(
            CLASS_MAP_FILENAME)), train_subset=args.train_subset, unlabelled_subsets=args.unlabelled_subset,
            require_timing=True)
        if not report.ok:
            _print_report(report, sys.stderr)
            print("adatad-suggest-preset: error: fix the data first (adatad-validate-data)", file=sys.stderr)
            return 1
        subsets = [name for name, count in report.segments_per_subset.items() if count]
        train = training_subset(subsets, args.train_subset)
        test = args.test_subset or next((name for name in subsets if name != train), None)
        if train is None or test is None:
            raise CustomDataError(f"{records.source}: need a training and an evaluation subset, found {subsets}; "
                                  "pass --train-subset and --test-subset.")
        locate_videos(records, Path(args.video_dir), ValidationReport(args.video_dir))
        extensions = sorted({Path(v.video_path).suffix for v in records.videos.values() if v.video_path})
        if len(extensions) != 1:
            raise CustomDataError(f"{args.video_dir}: the training loader reads one video extension, found "
                                  f"{extensions or 'no videos'}; rename or re-encode the videos to one container.")
        segments, durations, fps_values, num_train = dataset_statistics(records, train)
        settings = suggest_settings(segments, durations, float(np.median(fps_values)),
                                    max_window_size=args.max_window_size)
        if max(fps_values) > 1.1 * min(fps_values):
            # frame_count sampling counts each video's own frames, so one feature step lasts a different time
            settings.reasoning.append(
                f"frame rates vary from {min(fps_values):g} to {max(fps_values):g} fps: a feature step is "
                f"snippet_stride frames of each video, so its length in seconds varies; re-encode the videos to one "
                "frame rate for equal steps"
            )
        name = args.name or output.stem
        preset = build_custom_preset(
            settings, backbone=args.backbone, name=name, data_root=Path(records.source).parent,
            video_dir=args.video_dir, video_extension=extensions[0], class_names=report.class_names,
            train_subset=train, test_subset=test, num_train_videos=num_train, overrides=args.set,
        )
        write_atomic(output, presets.dump_preset(preset))
    except (CustomDataError, ValueError) as error:
        print(f"adatad-suggest-preset: error: {error}", file=sys.stderr)
        return 1
    print("suggested settings:")
    for line in settings.reasoning:
        print(f"  - {line}")
    if args.set:
        print(f"  overrides applied after the suggestions: {' '.join(args.set)}")
    print(f"wrote {output} (backbone {args.backbone}, {len(report.class_names)} classes, train {train!r}, "
          f"evaluate {test!r}); train with: accelerate launch training/run_tad.py --preset {output}")
    return 0
