"""`adatad-eval` (also `python -m adatad.evaluation.cli`): ActivityNet-protocol mAP or AR@AN of a prediction file,
printed as a table or written as JSON."""

import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ..atomic_files import OutputPathError, check_output_path, write_text_atomically
from .inputs import DEFAULT_SUBSET, EvaluationInputError, read_video_list
from .metrics import evaluate_detection, evaluate_proposals

# The metrics log their input warnings under `adatad.evaluation.metrics`; the command line prints them through the
# package's logger, their parent.
logger = logging.getLogger("adatad.evaluation")
def _format_table(result: dict[str, Any], per_class: bool) -> str:
    lines = []
    if per_class:
        width = max(len(str(label)) for label in result["ap_per_class"])
        header = " ".join(f"{t:>6.3g}" for t in result["tiou_thresholds"])
        lines.append(f"{'class':<{width}} {header}")
        for label, values in result["ap_per_class"].items():
            lines.append(f"{str(label):<{width}} " + " ".join(f"{100 * v:6.2f}" for v in values))
        lines.append("")
    lines.append("tIoU     mAP (%)")
    for threshold, value in result["mAP_per_tiou"].items():
        lines.append(f"{threshold:<8.3g} {100 * value:7.2f}")
    lines.append(f"{'average':<8} {100 * result['average_mAP']:7.2f}")
    lines.append(
        f"({result['num_classes']} classes, {result['num_ground_truth_instances']} ground-truth instances in "
        f"{result['num_ground_truth_videos']} videos, {result['num_predictions']} predictions)"
    )
    return "\n".join(lines)


def _format_proposal_table(result: dict[str, Any]) -> str:
    lines = ["AN       AR (%)"]
    for budget, value in result["AR@AN"].items():
        lines.append(f"{budget:<8} {100 * value:7.2f}")
    lines.append(f"AUC      {result['auc']:7.2f}")
    return "\n".join(lines)


def _json_ready(value):
    """Dict keys as JSON writes them (floats as their shortest repr), recursively."""
    if isinstance(value, dict):
        return {(repr(k) if isinstance(k, float) else str(k)): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`adatad-eval`: ActivityNet-protocol mAP (or AR@AN) of a prediction file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="adatad-eval",
        description="ActivityNet-protocol temporal action detection mAP (identical to the official evaluator), "
        "or AR@AN for proposals.",
        epilog="exit status: 0 evaluated; 1 bad input (a file, a value in it, a flag value out of range, or an "
        "--output that cannot be written or is one of the inputs), with one 'adatad-eval: error:' line; "
        "2 command-line usage error (unknown or missing flag).",
    )
    parser.add_argument("--ground-truth", required=True, help="ground-truth JSON (ActivityNet 'database' layout)")
    parser.add_argument(
        "--predictions", required=True, help="prediction JSON (ActivityNet submission layout, 'results')"
    )
    parser.add_argument(
        "--tiou-thresholds",
        default="0.5:0.95:0.05",
        help="'start:stop:step' (official np.linspace values) or a comma list (default: 0.5:0.95:0.05)",
    )
    subset_group = parser.add_mutually_exclusive_group()
    subset_group.add_argument(
        "--subset", default=DEFAULT_SUBSET, help="ground-truth subset to evaluate (default: validation)"
    )
    subset_group.add_argument("--all-subsets", action="store_true", help="evaluate every ground-truth video")
    parser.add_argument(
        "--output", help="write the metrics as JSON to this file; '-' writes them to standard output (the table then "
        "goes to standard error)"
    )
    parser.add_argument(
        "--ignore-unknown-labels",
        action="store_true",
        help="drop predictions whose label has no ground truth in the subset (counted warning) instead of failing",
    )
    parser.add_argument("--blocked-videos", help="JSON list or text file (one id per line) of video ids to leave out")
    parser.add_argument(
        "--remove-duplicate-instances",
        action="store_true",
        help="drop ground truth with end <= start and same-label duplicates within 1e-3 s, as OpenTAD's evaluator "
        "(with --ignore-unknown-labels this reproduces OpenTAD's numbers; the official evaluator keeps them)",
    )
    parser.add_argument("--task", choices=("detection", "proposal"), default="detection")
    parser.add_argument(
        "--max-avg-proposals", type=float, default=None, help="proposal task: largest AN (default: all proposals)"
    )
    parser.add_argument("--per-class", action="store_true", help="also print AP of every class")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("adatad-eval: warning: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    level = logger.level
    if args.quiet:
        logger.setLevel(logging.ERROR)
    subset = None if args.all_subsets else args.subset
    try:
        to_stdout = args.output == "-"
        if args.output and not to_stdout:
            inputs = [("ground-truth", args.ground_truth), ("predictions", args.predictions)]
            if args.blocked_videos:
                inputs.append(("blocked-videos", args.blocked_videos))
            output = check_output_path("--output", args.output, inputs)
        blocked = read_video_list(args.blocked_videos) if args.blocked_videos else ()
        if args.task == "detection":
            result = evaluate_detection(
                args.ground_truth,
                args.predictions,
                tiou_thresholds=args.tiou_thresholds,
                subset=subset,
                ignore_unknown_labels=args.ignore_unknown_labels,
                blocked_videos=blocked,
                remove_duplicate_instances=args.remove_duplicate_instances,
            )
            table = _format_table(result, args.per_class)
        else:
            result = evaluate_proposals(
                args.ground_truth,
                args.predictions,
                tiou_thresholds=args.tiou_thresholds,
                max_avg_nr_proposals=args.max_avg_proposals,
                subset=subset,
                blocked_videos=blocked,
            )
            table = _format_proposal_table(result)
        if to_stdout:
            sys.stdout.write(json.dumps(_json_ready(result), indent=1) + "\n")
        elif args.output:
            try:
                write_text_atomically(output, json.dumps(_json_ready(result), indent=1))
            except OSError as error:
                raise EvaluationInputError(f"--output {args.output!r} could not be written: {error}") from error
    except (EvaluationInputError, OutputPathError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"adatad-eval: error: {error}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)
    if not args.quiet:
        print(table, file=sys.stderr if to_stdout else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
