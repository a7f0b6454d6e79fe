"""Speed of `adatad-eval` against a straightforward loop of the official ActivityNet algorithm.

Case: the 4,728 ActivityNet-1.3 validation videos (real ground truth from
`tests/data/annotations/activitynet`, `v_` prefix dropped as in the official files) and
~60k generated, noisy detections (fixed seed), 10 tIoU thresholds 0.5:0.95:0.05.

Timed in one run:
- `adatad-eval` as a whole process (interpreter start-up, imports, JSON loading, evaluation,
  table), started with `subprocess` like a user would in a loop;
- the same evaluation through the Python API (files already on disk, interpreter warm);
- baseline "official loop": the official algorithm written out plainly in this file, one class
  at a time, one detection at a time (pandas `iterrows`, `groupby`), one threshold at a time,
  as `Evaluation/eval_detection.py` does it (run serially: its joblib threads share one GIL);
- baseline "plain loop": the same loop without pandas (lists and numpy only), to show how much
  of the official time is pandas overhead.

All per-class AP arrays are compared; the script fails if any number differs.

With `--crowded-video N`, the case is instead the worst case for memory: one video, one class,
`--crowded-instances` ground-truth instances and N detections of that class on it (fixed seed).
`adatad-eval` runs once as a child process and its peak resident memory (`ru_maxrss` of that
child) and wall time are printed; `--check-against-loop` also compares every AP with the plain
loop (slow for large N).

Usage:
    python benchmarks/bench_eval.py [--shared-dir tests] [--work-dir /tmp/adatad-bench-eval]
        [--num-predictions 60000] [--repeats 3] [--skip-official-loop] [--output results.json]
    python benchmarks/bench_eval.py --crowded-video 1000000 [--crowded-instances 200] [--crowded-task proposal]
        [--output results.json]
"""

import argparse
import csv
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


REPO_ROOT = Path(__file__).resolve().parents[1]
THRESHOLD_SPEC = "0.5:0.95:0.05"


# ---------------------------------------------------------------------------------------------
# Benchmark case
# ---------------------------------------------------------------------------------------------


def build_ground_truth(shared_dir: Path) -> dict:
    """ActivityNet-1.3 validation ground truth in the official `database` layout."""
    annotation_dir = shared_dir / "data" / "annotations" / "activitynet"
    with open(annotation_dir / "video_info_new.csv", newline="") as file:
        subset_of = {row["video"]: row["subset"] for row in csv.DictReader(file)}
    with open(annotation_dir / "anet_anno_action.json") as file:
        annotations = json.load(file)
    database = {}
    for name, entry in annotations.items():
        if subset_of.get(name) != "validation":
            continue
        database[name[2:] if name.startswith("v_") else name] = {
            "subset": "validation",
            "duration": entry["duration_second"],
            "annotations": [{"segment": a["segment"], "label": a["label"]} for a in entry["annotations"]],
        }
    return {"version": "VERSION 1.3", "taxonomy": [], "database": database}


def generate_predictions(ground_truth: dict, num_predictions: int, seed: int = 2024) -> dict:
    """Noisy detections: jittered copies of every instance plus background, ~num_predictions in all."""
    rng = np.random.default_rng(seed)
    database = ground_truth["database"]
    labels = sorted({a["label"] for entry in database.values() for a in entry["annotations"]})
    per_video = num_predictions / len(database)
    results = {}
    for video_id, entry in database.items():
        duration = float(entry["duration"])
        detections, scores = [], []
        for annotation in entry["annotations"]:
            start, end = annotation["segment"]
            length = max(end - start, 0.1)
            for _ in range(int(rng.integers(2, 7))):
                sigma = length * rng.uniform(0.02, 0.6)
                new_start = float(np.clip(start + rng.normal(0, sigma), 0, duration))
                new_end = float(np.clip(end + rng.normal(0, sigma), new_start, duration))
                label = annotation["label"] if rng.random() < 0.85 else labels[int(rng.integers(len(labels)))]
                overlap = max(0.0, min(end, new_end) - max(start, new_start))
                tiou = overlap / max(max(end, new_end) - min(start, new_start), 1e-9)
                detections.append((new_start, new_end, label))
                scores.append(0.6 * tiou + 0.4 * rng.beta(2, 2))
        video_labels = [a["label"] for a in entry["annotations"]] or labels
        target = rng.poisson(per_video)
        while len(detections) < target:
            center = rng.uniform(0, duration)
            half = duration * rng.beta(1.5, 4) / 2
            label = (
                video_labels[int(rng.integers(len(video_labels)))]
                if rng.random() < 0.5
                else labels[int(rng.integers(len(labels)))]
            )
            detections.append((max(center - half, 0.0), min(center + half, duration), label))
            scores.append(0.5 * rng.beta(1.5, 4))
        results[video_id] = [
            {"label": label, "score": round(float(score), 6), "segment": [round(s, 3), round(e, 3)]}
            for (s, e, label), score in zip(detections, scores)
        ]
    return {"version": "VERSION 1.3", "external_data": {}, "results": results}


def crowded_case(num_predictions: int, num_instances: int, seed: int = 2024):
    """One 1-hour video, one class: `num_instances` ground-truth instances and `num_predictions`
    detections around them (scores on a 0.001 grid, so many ties)."""
    rng = np.random.default_rng(seed)
    duration = 3600.0
    starts = np.sort(rng.uniform(0, duration - 30, num_instances))
    ends = starts + rng.uniform(1, 30, num_instances)
    database = {"crowded": {"subset": "validation", "duration": duration, "annotations": [
        {"segment": [round(float(s), 3), round(float(e), 3)], "label": "action"} for s, e in zip(starts, ends)]}}
    anchor = rng.integers(0, num_instances, num_predictions)
    jitter = rng.normal(0, 3, (num_predictions, 2))
    pred_starts = np.round(starts[anchor] + jitter[:, 0], 3)
    pred_ends = np.round(np.maximum(ends[anchor] + jitter[:, 1], pred_starts + 0.1), 3)
    scores = np.round(rng.uniform(0, 1, num_predictions), 3)
    results = {"crowded": [{"segment": [s, e], "label": "action", "score": c}
                           for s, e, c in zip(pred_starts.tolist(), pred_ends.tolist(), scores.tolist())]}
    return ({"version": "VERSION 1.3", "taxonomy": [], "database": database},
            {"version": "VERSION 1.3", "external_data": {}, "results": results})


def peak_rss_of_process(command, env):
    """(wall seconds, peak resident set size in bytes) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def run_crowded(args, env, parse_thresholds):
    ground_truth, predictions = crowded_case(args.crowded_video, args.crowded_instances)
    gt_path, pred_path, metrics_path = (
        args.work_dir / "ground_truth.json", args.work_dir / "predictions.json", args.work_dir / "metrics.json"
    )
    gt_path.write_text(json.dumps(ground_truth))
    pred_path.write_text(json.dumps(predictions))
    del ground_truth, predictions
    command, command_name = adatad_eval_command()
    command = command + ["--ground-truth", str(gt_path), "--predictions", str(pred_path), "--task", args.crowded_task,
                         "--tiou-thresholds", THRESHOLD_SPEC, "--output", str(metrics_path), "--quiet"]
    wall, peak = peak_rss_of_process(command, env)
    metrics = json.loads(metrics_path.read_text())
    score_name = "average_mAP" if args.crowded_task == "detection" else "auc"
    measurements = {
        "case": {"videos": 1, "classes": 1, "instances": args.crowded_instances, "predictions": args.crowded_video,
                 "task": args.crowded_task, "tiou_thresholds": THRESHOLD_SPEC, score_name: metrics[score_name],
                 "predictions_file_bytes": pred_path.stat().st_size},
        "adatad_eval_command": command_name,
        "adatad_eval_process_s": wall,
        "adatad_eval_peak_rss_bytes": peak,
    }
    print(f"case: 1 video, 1 class, {args.crowded_instances} instances, {args.crowded_video} detections "
          f"({pred_path.stat().st_size / 2**20:.0f} MiB of JSON)")
    print(f"{command_name} --task {args.crowded_task}: {wall:.1f} s wall, peak RSS {peak / 2**20:.0f} MiB, "
          f"{score_name} {metrics[score_name]:.6f}")
    if args.check_against_loop and args.crowded_task == "detection":
        ours = np.array(list(metrics["ap_per_class"].values())).T
        plain = plain_loop(gt_path, pred_path, parse_thresholds(THRESHOLD_SPEC))
        if not np.array_equal(plain, ours):
            raise SystemExit(f"plain loop differs: max |diff| = {np.abs(plain - ours).max()}")
        measurements["numbers_identical_to_plain_loop"] = True
        print("every AP identical to the plain loop")
    return measurements


# ---------------------------------------------------------------------------------------------
# Baselines: the official algorithm, written out plainly
# ---------------------------------------------------------------------------------------------


def _read_case(gt_path, pred_path, subset):
    with open(gt_path) as file:
        database = json.load(file)["database"]
    with open(pred_path) as file:
        results = json.load(file)["results"]
    class_index = {}
    gt_rows = []
    for video_id, entry in database.items():
        if entry["subset"] != subset:
            continue
        for annotation in entry["annotations"]:
            class_index.setdefault(annotation["label"], len(class_index))
            gt_rows.append(
                (
                    video_id,
                    float(annotation["segment"][0]),
                    float(annotation["segment"][1]),
                    class_index[annotation["label"]],
                )
            )
    pred_rows = [
        (video_id, float(d["segment"][0]), float(d["segment"][1]), class_index[d["label"]], d["score"])
        for video_id, detections in results.items()
        for d in detections
    ]
    return class_index, gt_rows, pred_rows


def _tiou(start, end, gt_segments):
    inter = (np.minimum(end, gt_segments[:, 1]) - np.maximum(start, gt_segments[:, 0])).clip(0)
    union = (gt_segments[:, 1] - gt_segments[:, 0]) + (end - start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _interpolated_ap(tp_row, fp_row, num_positives):
    tp_cumsum, fp_cumsum = np.cumsum(tp_row), np.cumsum(fp_row)
    precision = np.hstack([[0], tp_cumsum / (tp_cumsum + fp_cumsum), [0]])
    recall = np.hstack([[0], tp_cumsum / num_positives, [1]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    changes = np.where(recall[1:] != recall[:-1])[0] + 1
    return np.sum((recall[changes] - recall[changes - 1]) * precision[changes])


def official_loop(gt_path, pred_path, thresholds, subset="validation"):
    """Official structure: pandas frames, per class `groupby`, `iterrows`, per threshold scan."""
    import pandas as pd

    class_index, gt_rows, pred_rows = _read_case(gt_path, pred_path, subset)
    ground_truth = pd.DataFrame(gt_rows, columns=["video-id", "t-start", "t-end", "label"])
    prediction = pd.DataFrame(pred_rows, columns=["video-id", "t-start", "t-end", "label", "score"])
    ap = np.zeros((len(thresholds), len(class_index)))
    gt_by_class, pred_by_class = ground_truth.groupby("label"), prediction.groupby("label")
    present = set(prediction["label"].unique())
    for class_id in class_index.values():
        if class_id not in present:
            continue
        class_gt = gt_by_class.get_group(class_id).reset_index(drop=True)
        class_pred = pred_by_class.get_group(class_id).reset_index(drop=True)
        class_pred = class_pred.loc[class_pred["score"].values.argsort()[::-1]].reset_index(drop=True)
        taken = np.full((len(thresholds), len(class_gt)), -1)
        tp = np.zeros((len(thresholds), len(class_pred)))
        fp = np.zeros((len(thresholds), len(class_pred)))
        gt_by_video = class_gt.groupby("video-id")
        videos_with_gt = set(class_gt["video-id"])
        for i, row in class_pred.iterrows():
            if row["video-id"] not in videos_with_gt:
                fp[:, i] = 1
                continue
            video_gt = gt_by_video.get_group(row["video-id"]).reset_index()
            tiou = _tiou(row["t-start"], row["t-end"], video_gt[["t-start", "t-end"]].values)
            order = tiou.argsort()[::-1]
            for t, threshold in enumerate(thresholds):
                for j in order:
                    if tiou[j] < threshold:
                        fp[t, i] = 1
                        break
                    gt_row = video_gt.loc[j]["index"]
                    if taken[t, gt_row] >= 0:
                        continue
                    tp[t, i] = 1
                    taken[t, gt_row] = i
                    break
                if fp[t, i] == 0 and tp[t, i] == 0:
                    fp[t, i] = 1
        for t in range(len(thresholds)):
            ap[t, class_id] = _interpolated_ap(tp[t], fp[t], float(len(class_gt)))
    return ap


def plain_loop(gt_path, pred_path, thresholds, subset="validation"):
    """The same algorithm with lists and dicts instead of pandas."""
    class_index, gt_rows, pred_rows = _read_case(gt_path, pred_path, subset)
    ap = np.zeros((len(thresholds), len(class_index)))
    for class_id in class_index.values():
        class_gt = [row for row in gt_rows if row[3] == class_id]
        class_pred = [row for row in pred_rows if row[3] == class_id]
        if not class_pred:
            continue
        gt_by_video = {}
        for number, row in enumerate(class_gt):
            gt_by_video.setdefault(row[0], []).append(number)
        gt_segments = np.array([row[1:3] for row in class_gt])
        order = np.array([row[4] for row in class_pred], dtype=float).argsort()[::-1]
        taken = np.zeros((len(thresholds), len(class_gt)), dtype=bool)
        tp = np.zeros((len(thresholds), len(class_pred)))
        for rank, i in enumerate(order):
            video_id, start, end = class_pred[i][:3]
            members = gt_by_video.get(video_id)
            if members is None:
                continue
            tiou = _tiou(start, end, gt_segments[members])
            gt_order = tiou.argsort()[::-1]
            for t, threshold in enumerate(thresholds):
                for j in gt_order:
                    if tiou[j] < threshold:
                        break
                    if taken[t, members[j]]:
                        continue
                    taken[t, members[j]] = True
                    tp[t, rank] = 1
                    break
        for t in range(len(thresholds)):
            ap[t, class_id] = _interpolated_ap(tp[t], 1 - tp[t], float(len(class_gt)))
    return ap


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def adatad_eval_command():
    """The installed console script if there is one next to this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("adatad-eval")
    if script.exists():
        return [str(script)], "adatad-eval"
    return [sys.executable, "-m", "adatad.evaluation.cli"], "python -m adatad.evaluation.cli"


def _children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_process(command, repeats, env):
    """Wall-clock and CPU seconds (user + system) of each run of a child process."""
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start, start = _children_cpu_s(), time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu_s() - cpu_start)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr}")
    return wall, cpu


def timed(function, *args):
    """(result, wall seconds, CPU seconds of this process)."""
    cpu_start, start = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start, time.process_time() - cpu_start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared-dir", type=Path, default=REPO_ROOT / "tests", help="folder holding data/annotations (default: tests)"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/adatad-bench-eval"))
    parser.add_argument("--num-predictions", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-official-loop", action="store_true", help="skip the slow pandas baseline")
    parser.add_argument("--output", type=Path, help="write the measurements as JSON")
    parser.add_argument("--crowded-video", type=int, metavar="N",
                        help="memory case instead: N detections of one class on one video (peak RSS of adatad-eval)")
    parser.add_argument("--crowded-instances", type=int, default=200, help="ground-truth instances of that video")
    parser.add_argument("--crowded-task", choices=("detection", "proposal"), default="detection",
                        help="crowded case: evaluate detections (mAP) or proposals (AR@AN)")
    parser.add_argument("--check-against-loop", action="store_true",
                        help="crowded case: compare mAP with the plain loop")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    from adatad.evaluation import evaluate_detection, parse_tiou_thresholds

    # The case has zero-length generated detections; their counted warning is not news here.
    logging.getLogger("adatad.evaluation").setLevel(logging.ERROR)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    if args.crowded_video:
        measurements = run_crowded(args, env, parse_tiou_thresholds)
        if args.output:
            args.output.write_text(json.dumps(measurements, indent=1))
        shutil.rmtree(args.work_dir, ignore_errors=True)
        return
    gt_path, pred_path, metrics_path = (
        args.work_dir / "ground_truth.json", args.work_dir / "predictions.json", args.work_dir / "metrics.json"
    )
    ground_truth = build_ground_truth(args.shared_dir)
    predictions = generate_predictions(ground_truth, args.num_predictions)
    gt_path.write_text(json.dumps(ground_truth))
    pred_path.write_text(json.dumps(predictions))
    num_predictions = sum(len(v) for v in predictions["results"].values())
    num_instances = sum(len(e["annotations"]) for e in ground_truth["database"].values())
    thresholds = parse_tiou_thresholds(THRESHOLD_SPEC)
    print(f"case: {len(ground_truth['database'])} videos, {num_instances} instances, {num_predictions} predictions, "
          f"{len(thresholds)} thresholds ({THRESHOLD_SPEC})")

    command, command_name = adatad_eval_command()
    command = command + ["--ground-truth", str(gt_path), "--predictions", str(pred_path),
                         "--tiou-thresholds", THRESHOLD_SPEC, "--subset", "validation",
                         "--output", str(metrics_path), "--quiet"]
    process_times, process_cpu = time_process(command, args.repeats, env)
    cli_metrics = json.loads(metrics_path.read_text())
    ours = np.array(list(cli_metrics["ap_per_class"].values())).T  # (thresholds, classes)

    api_times = []
    for _ in range(args.repeats):
        api_result, wall, _ = timed(evaluate_detection, gt_path, pred_path, thresholds)
        api_times.append(wall)
    assert np.array_equal(np.array(list(api_result["ap_per_class"].values())).T, ours)

    plain, plain_time, plain_cpu = timed(plain_loop, gt_path, pred_path, thresholds)
    if not np.array_equal(plain, ours):
        raise SystemExit(f"plain loop differs: max |diff| = {np.abs(plain - ours).max()}")

    measurements = {
        "case": {"videos": len(ground_truth["database"]), "instances": num_instances, "predictions": num_predictions,
                 "tiou_thresholds": THRESHOLD_SPEC, "average_mAP": cli_metrics["average_mAP"]},
        "adatad_eval_process_s": process_times,
        "adatad_eval_process_cpu_s": process_cpu,
        "adatad_eval_command": command_name,
        "python_api_s": api_times,
        "plain_loop_s": plain_time,
        "plain_loop_cpu_s": plain_cpu,
        "numbers_identical": True,
    }
    if not args.skip_official_loop:
        official, measurements["official_loop_s"], measurements["official_loop_cpu_s"] = timed(
            official_loop, gt_path, pred_path, thresholds
        )
        if not np.array_equal(official, ours):
            raise SystemExit(f"official loop differs: max |diff| = {np.abs(official - ours).max()}")

    process, cpu = statistics.median(process_times), statistics.median(process_cpu)
    api = statistics.median(api_times)
    print(f"average mAP {cli_metrics['average_mAP']:.6f}; every per-class AP identical across all methods")
    print(f"{command_name} whole process (median of {args.repeats}): {process:.3f} s wall, {cpu:.3f} s CPU")
    print(f"Python API evaluate_detection (median of {args.repeats}): {api:.3f} s wall")
    print(f"baseline plain loop (no pandas): {plain_time:.2f} s wall, {plain_cpu:.2f} s CPU "
          f"-> {plain_time / process:.1f}x (wall) / {plain_cpu / cpu:.1f}x (CPU) the process")
    if "official_loop_s" in measurements:
        official_time, official_cpu = measurements["official_loop_s"], measurements["official_loop_cpu_s"]
        measurements["speedup_vs_official_loop_wall"] = official_time / process
        measurements["speedup_vs_official_loop_cpu"] = official_cpu / cpu
        print(f"baseline official loop (pandas): {official_time:.2f} s wall, {official_cpu:.2f} s CPU "
              f"-> {official_time / process:.1f}x (wall) / {official_cpu / cpu:.1f}x (CPU) the process")
    if args.output:
        args.output.write_text(json.dumps(measurements, indent=1))
    shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
