"""ActivityNet-protocol evaluation: official numbers on the public fixtures, the official
behaviours on hand-built cases, and agreement with a plain reference loop on random cases."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from adatad.evaluation import (
    EvaluationInputError,
    evaluate_detection,
    evaluate_proposals,
    load_ground_truth,
    metric_path,
    parse_tiou_thresholds,
)
from adatad.evaluation.cli import main


FIXTURE_CASES = {"anet_val": "validation", "thumos14_test": "test"}
# The CLI spellings of the fixtures' np.linspace thresholds.
FIXTURE_THRESHOLD_SPECS = {"anet_val": "0.5:0.95:0.05", "thumos14_test": "0.3:0.7:0.1"}


# ---------------------------------------------------------------------------------------------
# Plain reference loops of the official algorithms (one detection, one threshold at a time)
# ---------------------------------------------------------------------------------------------


def reference_tiou(start, end, gt_start, gt_end):
    intersection = max(0.0, min(end, gt_end) - max(start, gt_start))
    union = (gt_end - gt_start) + (end - start) - intersection
    if union == 0:
        return math.nan if intersection == 0 else math.inf
    return intersection / union


def reference_interpolated_ap(hits, num_positives):
    tp_cumsum = np.cumsum(np.array(hits, dtype=float))
    fp_cumsum = np.cumsum(1.0 - np.array(hits, dtype=float))
    precision = [0.0] + list(tp_cumsum / (tp_cumsum + fp_cumsum)) + [0.0]
    recall = [0.0] + list(tp_cumsum / num_positives) + [1.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    terms = [(recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall)) if recall[i] != recall[i - 1]]
    return float(np.sum(np.array(terms)))


def reference_detection_ap(database, results, thresholds, subset):
    """(num_thresholds, num_classes) AP, classes in first-appearance order."""
    class_index, instances = {}, []
    for video_id, entry in database.items():
        if entry["subset"] != subset:
            continue
        for annotation in entry["annotations"]:
            label = class_index.setdefault(annotation["label"], len(class_index))
            instances.append((video_id, float(annotation["segment"][0]), float(annotation["segment"][1]), label))
    detections = [
        (video_id, float(d["segment"][0]), float(d["segment"][1]), class_index[d["label"]], d["score"])
        for video_id, video_detections in results.items()
        for d in video_detections
    ]
    ap = np.zeros((len(thresholds), len(class_index)))
    for label in range(len(class_index)):
        class_instances = [inst for inst in instances if inst[3] == label]
        class_detections = [det for det in detections if det[3] == label]
        if not class_detections:
            continue
        order = np.array([det[4] for det in class_detections], dtype=float).argsort()[::-1]
        for t, threshold in enumerate(thresholds):
            taken, hits = set(), []
            for i in order:
                video_id, start, end = class_detections[i][:3]
                candidates = [j for j, inst in enumerate(class_instances) if inst[0] == video_id]
                tious = np.array(
                    [reference_tiou(start, end, *class_instances[j][1:3]) for j in candidates], dtype=float
                )
                hit = 0
                for k in tious.argsort()[::-1]:
                    if tious[k] < threshold:
                        break
                    if candidates[k] in taken:
                        continue
                    taken.add(candidates[k])
                    hit = 1
                    break
                hits.append(hit)
            ap[t, label] = reference_interpolated_ap(hits, len(class_instances))
    return ap


def reference_average_recall(database, results, thresholds, subset, max_avg_nr_proposals):
    videos, instances = [], {}
    for video_id, entry in database.items():
        if entry["subset"] == subset and entry["annotations"]:
            videos.append(video_id)
            instances[video_id] = [tuple(map(float, a["segment"])) for a in entry["annotations"]]
    total = sum(len(v) for v in results.values())
    ratio = max_avg_nr_proposals * len(videos) / total
    score_tables, total_kept = [], 0
    for video_id in videos:
        proposals = results.get(video_id, [])
        if not proposals:
            score_tables.append(np.zeros((len(instances[video_id]), 1)))
            continue
        order = np.array([p["score"] for p in proposals], dtype=float).argsort()[::-1]
        kept = min(int(len(proposals) * ratio), len(proposals))
        total_kept += kept
        table = np.empty((len(instances[video_id]), kept))
        for column, i in enumerate(order[:kept]):
            start, end = map(float, proposals[i]["segment"])
            for row, (gt_start, gt_end) in enumerate(instances[video_id]):
                table[row, column] = reference_tiou(start, end, gt_start, gt_end)
        score_tables.append(table)
    fractions = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(len(videos)) / total_kept)
    recall = np.empty((len(thresholds), 100))
    for t, threshold in enumerate(thresholds):
        matches, positives = np.zeros(100), 0
        for table in score_tables:
            positives += table.shape[0]
            budgets = np.minimum((table.shape[1] * fractions).astype(int), table.shape[1])
            for j, budget in enumerate(budgets):
                matches[j] += np.count_nonzero((table[:, :budget] >= threshold).sum(axis=1))
        recall[t] = matches / positives
    return recall


# ---------------------------------------------------------------------------------------------
# Public fixtures: the official evaluator's own numbers
# ---------------------------------------------------------------------------------------------


def fixture_paths(tests_dir, case):
    folder = tests_dir / "fixtures" / "anet_eval_public" / case
    expected = json.loads((folder / "expected.json").read_text())
    return folder / "ground_truth.json", folder / "predictions.json", expected


def assert_matches_expected(ap_per_class, mean_ap, average_map, expected):
    assert set(ap_per_class) == set(expected["ap"])
    for label, values in expected["ap"].items():
        # Bit-identical per-class AP (same float operations as the official code).
        assert list(ap_per_class[label]) == values, label
    np.testing.assert_allclose(mean_ap, expected["mAP"], rtol=0, atol=1e-12)
    assert abs(average_map - expected["average_mAP"]) < 1e-12


@pytest.mark.parametrize("case", sorted(FIXTURE_CASES))
def test_public_fixture_python_api(tests_dir, case):
    gt_path, pred_path, expected = fixture_paths(tests_dir, case)
    result = evaluate_detection(gt_path, pred_path, expected["tiou_thresholds"], subset=FIXTURE_CASES[case])
    assert result["tiou_thresholds"] == expected["tiou_thresholds"]
    assert list(result["mAP_per_tiou"]) == expected["tiou_thresholds"]
    assert_matches_expected(
        result["ap_per_class"], list(result["mAP_per_tiou"].values()), result["average_mAP"], expected
    )
    assert result["num_ground_truth_instances"] == expected["n_gt_instances"]
    assert result["num_predictions"] == expected["n_predictions_loaded"]
    # Class order is first appearance in the file (Python 3 reading order), so means equal the py3 port exactly.
    assert list(result["mAP_per_tiou"].values()) == expected["crosscheck_py3_port"]["mAP"]


@pytest.mark.parametrize("case", sorted(FIXTURE_CASES))
def test_public_fixture_cli(tests_dir, case, tmp_path, capsys):
    gt_path, pred_path, expected = fixture_paths(tests_dir, case)
    spec = FIXTURE_THRESHOLD_SPECS[case]
    output = tmp_path / "metrics.json"
    argv = ["--ground-truth", str(gt_path), "--predictions", str(pred_path), "--tiou-thresholds", spec,
            "--subset", FIXTURE_CASES[case], "--output", str(output)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f"{100 * expected['average_mAP']:7.2f}" in table
    written = json.loads(output.read_text())
    # Keys are the exact thresholds (shortest repr), in threshold order.
    assert list(written["mAP_per_tiou"]) == [repr(t) for t in expected["tiou_thresholds"]]
    assert_matches_expected(
        written["ap_per_class"], list(written["mAP_per_tiou"].values()), written["average_mAP"], expected
    )


@pytest.mark.slow
def test_public_fixture_evaluate_load(tests_dir):
    import evaluate

    metric = evaluate.load(metric_path())
    for case, subset in FIXTURE_CASES.items():
        gt_path, pred_path, expected = fixture_paths(tests_dir, case)
        database = json.loads(gt_path.read_text())["database"]
        results = json.loads(pred_path.read_text())["results"]
        videos = [v for v, entry in database.items() if entry["subset"] == subset]
        videos += [v for v in results if v not in set(videos)]
        references, predictions = [], []
        for video_id in videos:
            annotations = (
                database[video_id]["annotations"]
                if video_id in database and database[video_id]["subset"] == subset
                else []
            )
            references.append(
                {
                    "video_id": video_id,
                    "segments": [a["segment"] for a in annotations],
                    "labels": [a["label"] for a in annotations],
                }
            )
            detections = results.get(video_id, [])
            predictions.append({
                "video_id": video_id,
                "segments": [d["segment"] for d in detections],
                "labels": [d["label"] for d in detections],
                "scores": [d["score"] for d in detections],
            })
        # Two batches, as a training loop would add them.
        half = len(videos) // 2
        metric.add_batch(predictions=predictions[:half], references=references[:half])
        metric.add_batch(predictions=predictions[half:], references=references[half:])
        result = metric.compute(tiou_thresholds=expected["tiou_thresholds"])
        assert_matches_expected(
            result["ap_per_class"], list(result["mAP_per_tiou"].values()), result["average_mAP"], expected
        )


@pytest.mark.slow
def test_cli_process_imports_no_torch(tests_dir, tmp_path):
    gt_path, pred_path, expected = fixture_paths(tests_dir, "thumos14_test")
    code = (
        "import sys; from adatad.evaluation.cli import main; "
        f"rc = main(['--ground-truth', {str(gt_path)!r}, '--predictions', {str(pred_path)!r}, "
        "'--tiou-thresholds', '0.3:0.7:0.1', '--subset', 'test', '--quiet']); "
        "heavy = [m for m in ('torch', 'transformers', 'pandas', 'datasets', 'evaluate') if m in sys.modules]; "
        "print(heavy); sys.exit(rc)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Official behaviours on hand-built cases (expected values derived by hand)
# ---------------------------------------------------------------------------------------------


def make_ground_truth(videos, subset="validation"):
    """videos: {video_id: [(start, end, label), ...]} -> ActivityNet layout."""
    return {
        "version": "VERSION 1.3",
        "taxonomy": [],
        "database": {
            video_id: {"subset": subset, "duration": 100.0,
                       "annotations": [{"segment": [s, e], "label": label} for s, e, label in instances]}
            for video_id, instances in videos.items()
        },
    }


def make_predictions(videos):
    """videos: {video_id: [(start, end, label, score), ...]} -> submission layout."""
    return {
        "version": "VERSION 1.3",
        "external_data": {},
        "results": {
            video_id: [{"segment": [s, e], "label": label, "score": score} for s, e, label, score in detections]
            for video_id, detections in videos.items()
        },
    }


def test_tied_scores_follow_numpy_argsort_reversed():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    # Same score: argsort keeps [0, 1] (two elements), reversed the LATER detection (a miss) comes first.
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.5), (50.0, 60.0, "jump", 0.5)]})
    result = evaluate_detection(gt, predictions, [0.5])
    # miss (precision 0/1), then hit (precision 1/2 at recall 1): AP = 0.5.
    assert result["ap_per_class"]["jump"] == [0.5]
    swapped = make_predictions({"v1": [(50.0, 60.0, "jump", 0.5), (0.0, 10.0, "jump", 0.5)]})
    assert evaluate_detection(gt, swapped, [0.5])["ap_per_class"]["jump"] == [1.0]


def test_duplicates_after_first_are_false_positives():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump"), (20.0, 30.0, "jump")]})
    predictions = make_predictions({"v1": [
        (0.0, 10.0, "jump", 0.9),   # hit A
        (0.0, 10.0, "jump", 0.8),   # duplicate of A: false positive
        (20.0, 30.0, "jump", 0.7),  # hit B
    ]})
    result = evaluate_detection(gt, predictions, [0.5])
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; envelope -> 0.5 * 1 + 0.5 * 2/3.
    assert result["ap_per_class"]["jump"][0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)


def test_best_free_instance_is_taken_in_descending_tiou_order():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump"), (2.0, 12.0, "jump")]})
    # The first detection takes (0, 10) (tIoU 1); the second has tIoU 9/11 with both instances,
    # so at 0.7 it takes the free (2, 12).
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9), (1.0, 11.0, "jump", 0.8)]})
    assert evaluate_detection(gt, predictions, [0.7])["ap_per_class"]["jump"] == [1.0]
    # At 0.85 (> 9/11) the second detection is a false positive: AP = 1/2 * 1.
    assert evaluate_detection(gt, predictions, [0.85])["ap_per_class"]["jump"] == [0.5]


def test_class_without_predictions_gets_zero_and_a_warning(caplog):
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")], "v2": [(0.0, 10.0, "run")]})
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9)]})
    result = evaluate_detection(gt, predictions, [0.5, 0.7])
    assert result["ap_per_class"] == {"jump": [1.0, 1.0], "run": [0.0, 0.0]}
    assert result["mAP_per_tiou"] == {0.5: 0.5, 0.7: 0.5}  # the empty class still counts in the mean
    assert any("1 ground-truth class(es) have no prediction" in w and "'run'" in w for w in result["warnings"])
    assert any("'run'" in record.getMessage() for record in caplog.records)


def test_detections_outside_the_subset_are_false_positives():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    gt["database"]["train1"] = {"subset": "training", "annotations": [{"segment": [0.0, 10.0], "label": "jump"}]}
    # A perfect detection on a training video ranks first and is a false positive.
    predictions = make_predictions({"train1": [(0.0, 10.0, "jump", 0.9)], "v1": [(0.0, 10.0, "jump", 0.8)]})
    result = evaluate_detection(gt, predictions, [0.5], subset="validation")
    assert result["ap_per_class"]["jump"] == [0.5]
    assert any("1 prediction(s) on 1 video(s) not in the subset 'validation'" in w for w in result["warnings"])
    # With subset="training" the training detection (ranked first) is the hit: AP 1.
    assert evaluate_detection(gt, predictions, [0.5], subset="training")["ap_per_class"]["jump"] == [1.0]


def test_videos_without_predictions_are_misses():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")], "v2": [(0.0, 10.0, "jump")]})
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9)]})
    # recall reaches 1/2 at precision 1.
    assert evaluate_detection(gt, predictions, [0.5])["ap_per_class"]["jump"] == [0.5]


def test_zero_union_counts_as_a_match_and_is_warned_once():
    gt = make_ground_truth({"v1": [(5.0, 5.0, "jump"), (3.0, 7.0, "run")]})
    predictions = make_predictions({"v1": [
        (5.0, 5.0, "jump", 0.9),  # zero-length vs zero-length: 0/0 tIoU, a match
        (7.0, 3.0, "run", 0.8),   # exact mirror of (3, 7): union 4 - 4 - 0 = 0, a match
        (8.0, 2.0, "run", 0.7),   # inverted, union -2: tIoU -0.0, not a match
    ]})
    result = evaluate_detection(gt, predictions, [0.5, 0.95])
    assert result["ap_per_class"] == {"jump": [1.0, 1.0], "run": [1.0, 1.0]}
    segment_warnings = [w for w in result["warnings"] if "zero-length or inverted" in w]
    assert len(segment_warnings) == 1 and segment_warnings[0].startswith("3 prediction(s)")
    assert any(w.startswith("1 ground-truth instance(s) have end <= start") for w in result["warnings"])


@pytest.mark.parametrize("bad", [(50.0, 60.0, float("nan")), (float("nan"), 60.0, 0.5), (50.0, float("inf"), 0.5)])
def test_non_finite_predictions_are_an_error_naming_the_video(bad):
    # The official code ranks a NaN score first and may count a NaN tIoU as a match: refused here.
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9), (bad[0], bad[1], "jump", bad[2])]})
    with pytest.raises(EvaluationInputError, match=r"video 'v1', detection 1 has a NaN or infinite value"):
        evaluate_detection(gt, predictions, [0.5])


def test_threshold_is_inclusive():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    predictions = make_predictions({"v1": [(0.0, 4.0, "jump", 0.9)]})  # tIoU exactly 0.4
    result = evaluate_detection(gt, predictions, "0.39999999999999997,0.4,0.5")
    assert result["ap_per_class"]["jump"] == [1.0, 1.0, 0.0]


def test_threshold_specs():
    np.testing.assert_array_equal(parse_tiou_thresholds("0.5:0.95:0.05"), np.linspace(0.5, 0.95, 10))
    assert parse_tiou_thresholds("0.5:0.95:0.05")[8] == 0.8999999999999999
    assert parse_tiou_thresholds("0.3:0.7:0.1").tolist() == [0.3, 0.39999999999999997, 0.5, 0.6, 0.7]
    assert parse_tiou_thresholds("0.1:0.5:0.1").tolist() == np.linspace(0.1, 0.5, 5).tolist()
    assert parse_tiou_thresholds("0.3, 0.4,0.5").tolist() == [0.3, 0.4, 0.5]
    assert parse_tiou_thresholds("0.5").tolist() == [0.5]
    for bad in ("0.5:0.95", "0.5:0.95:0.07", "a,b", "", "0.5:0.4:0.1", "nan", "1.5", "-0.1,0.5", "0.5,0.5"):
        with pytest.raises(EvaluationInputError, match="tIoU thresholds"):
            parse_tiou_thresholds(bad)


def test_unknown_label_is_a_clear_error_or_a_counted_warning(tmp_path):
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    pred_file = tmp_path / "preds.json"
    pred_file.write_text(json.dumps(make_predictions({"v1": [
        (0.0, 10.0, "jump", 0.5), (0.0, 10.0, "Jumping", 0.9), (0.0, 10.0, "Jumping", 0.8)]})))
    with pytest.raises(EvaluationInputError) as error:
        evaluate_detection(gt, pred_file, [0.5])
    message = str(error.value)
    assert "'Jumping'" in message and str(pred_file) in message and "--ignore-unknown-labels" in message
    result = evaluate_detection(gt, pred_file, [0.5], ignore_unknown_labels=True)
    # Dropped, not counted as false positives.
    assert result["ap_per_class"]["jump"] == [1.0]
    assert result["num_predictions_ignored"] == 2 and result["num_predictions"] == 1
    assert any(w.startswith("2 prediction(s)") and "'Jumping'" in w for w in result["warnings"])


def test_malformed_inputs_name_the_file_and_key(tmp_path):
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")]})
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": {"v1": [')
    with pytest.raises(EvaluationInputError, match=r"broken\.json.*not valid JSON"):
        evaluate_detection(gt, broken, [0.5])
    with pytest.raises(EvaluationInputError, match="does not exist"):
        evaluate_detection(gt, tmp_path / "missing.json", [0.5])

    cases = {
        "no_score": ({"results": {"v1": [{"segment": [0, 1], "label": "jump"}]}}, r"\['v1'\]\[0\] has no 'score' key"),
        "bad_segment": ({"results": {"v1": [{"segment": [0, 1, 2], "label": "jump", "score": 1}]}},
                        r"\['v1'\]\[0\]\['segment'\] must be a \[start, end\] pair"),
        "none_score": ({"results": {"v1": [{"segment": [0, 1], "label": "jump", "score": 0.3},
                                           {"segment": [0, 1], "label": "jump", "score": None}]}},
                       r"\['v1'\]\[1\]\['score'\] must be a number"),
        "not_a_list": ({"results": {"v1": {"segment": [0, 1]}}}, r"\['v1'\] has no 'segments' key"),
        "no_results": ({"version": "VERSION 1.3", "result": {}}, "has no 'results' key"),
    }
    for name, (content, pattern) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(EvaluationInputError, match=pattern) as error:
            evaluate_detection(gt, path, [0.5])
        assert str(path) in str(error.value), name

    bad_gt = tmp_path / "bad_gt.json"
    bad_gt.write_text(json.dumps({"database": {"v1": {"subset": "validation", "annotations": [{"segment": [0, 1]}]}}}))
    with pytest.raises(EvaluationInputError, match=r"bad_gt\.json.*\['v1'\]\['annotations'\]\[0\].*'label'"):
        load_ground_truth(bad_gt)
    with pytest.raises(EvaluationInputError, match=r"no video in subset 'testing'.*'validation'"):
        load_ground_truth(gt, subset="testing")


def test_empty_results_give_zero_map_with_warnings():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")], "v2": [(0.0, 10.0, "run")]})
    result = evaluate_detection(gt, {"version": "VERSION 1.3", "results": {}}, "0.5:0.95:0.05")
    assert result["average_mAP"] == 0.0 and result["num_predictions"] == 0
    assert any("2 ground-truth class(es) have no prediction" in w for w in result["warnings"])


def test_in_memory_post_processing_outputs():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump"), (20.0, 30.0, "run")]})
    records = {"v1": [{"segment": [0.0, 10.0], "label": "jump", "score": 0.9},
                      {"segment": [20.0, 31.0], "label": "run", "score": 0.8}]}
    expected = evaluate_detection(gt, {"results": records}, [0.5, 0.95])
    assert evaluate_detection(gt, records, [0.5, 0.95])["ap_per_class"] == expected["ap_per_class"]
    # Arrays per video (as post-processing returns them), integer labels mapped by class_names.
    arrays = {
        "v1": {
            "segments": np.array([[0.0, 10.0], [20.0, 31.0]]),
            "labels": np.array([0, 1]),
            "scores": np.array([0.9, 0.8]),
        }
    }
    by_id = evaluate_detection(gt, arrays, [0.5, 0.95], class_names=["jump", "run"])
    assert by_id["ap_per_class"] == expected["ap_per_class"] == {"jump": [1.0, 1.0], "run": [1.0, 0.0]}
    flat = [dict(video_id="v1", **record) for record in records["v1"]]
    assert evaluate_detection(gt, flat, [0.5, 0.95])["ap_per_class"] == expected["ap_per_class"]


def test_thumos_style_ground_truth_with_string_segments_and_no_duration(tests_dir):
    gt = load_ground_truth(tests_dir / "data" / "annotations" / "thumos14" / "thumos_gt.json", subset="test")
    assert len(gt.video_ids) == 210 and len(gt.class_names) == 20
    database = json.loads((tests_dir / "data" / "annotations" / "thumos14" / "thumos_gt.json").read_text())["database"]
    # Ground truth written back as predictions (score 1) scores AP 1 everywhere.
    results = {v: [{"segment": a["segment"], "label": a["label"], "score": 1.0} for a in e["annotations"]]
               for v, e in database.items() if e["subset"] == "test"}
    result = evaluate_detection(gt, results, "0.3:0.7:0.1")
    assert result["average_mAP"] == 1.0


def test_actions_layout_ground_truth_with_class_ids():
    database = {"a": {"subset": "testing", "duration": 9.0, "actions": [[3, 1.0, 4.0], [7, 5.0, 8.0]]}}
    predictions = {
        "a": [{"segment": [1.0, 4.0], "label": 3, "score": 0.6}, {"segment": [5.0, 7.0], "label": 7, "score": 0.5}]
    }
    result = evaluate_detection(database, predictions, [0.5, 0.7], subset="testing")
    assert result["ap_per_class"] == {3: [1.0, 1.0], 7: [1.0, 0.0]}


def test_cli_errors_and_ignore_flag(tmp_path, capsys):
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(make_ground_truth({"v1": [(0.0, 10.0, "jump")]})))
    pred_file = tmp_path / "pred.json"
    pred_file.write_text(json.dumps(make_predictions({"v1": [(0.0, 10.0, "jump", 0.5), (0.0, 10.0, "fly", 0.9)]})))
    argv = ["--ground-truth", str(gt_file), "--predictions", str(pred_file), "--tiou-thresholds", "0.5"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "adatad-eval: error:" in err and "'fly'" in err and str(pred_file) in err
    output = tmp_path / "out" / "metrics.json"
    assert main(argv + ["--ignore-unknown-labels", "--output", str(output)]) == 0
    captured = capsys.readouterr()
    assert "warning: 1 prediction(s)" in captured.err and "'fly'" in captured.err
    written = json.loads(output.read_text())
    assert written["mAP_per_tiou"] == {"0.5": 1.0} and written["average_mAP"] == 1.0
    assert written["ap_per_class"] == {"jump": [1.0]} and written["num_predictions_ignored"] == 1


# ---------------------------------------------------------------------------------------------
# Random cases against the reference loop (ties, duplicates, crowded videos, odd segments)
# ---------------------------------------------------------------------------------------------


def random_case(seed):
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c", "d"]
    database, results = {}, {}
    for v in range(12):
        video_id = f"vid{v}"
        subset = "validation" if v < 10 else "training"
        # Some videos are crowded with one class (groups of up to ~40 instances).
        crowded = v in (2, 7)
        count = int(rng.integers(25, 40)) if crowded else int(rng.integers(0, 6))
        annotations = []
        for _ in range(count):
            start = float(rng.integers(0, 90))
            length = float(rng.integers(0, 12))  # integer grid: many exact tIoU ties, some zero length
            label = "a" if crowded else labels[int(rng.integers(0, 3))]  # class "d" never in ground truth
            annotations.append({"segment": [start, start + length], "label": label})
        if annotations and rng.random() < 0.3:
            annotations.append(dict(annotations[0]))  # duplicate ground truth
        database[video_id] = {"subset": subset, "annotations": annotations}
        detections = []
        for annotation in annotations:
            for _ in range(int(rng.integers(0, 4))):
                start, end = annotation["segment"]
                jitter = rng.integers(-3, 4, size=2).astype(float)
                segment = [start + jitter[0], end + jitter[1]]
                if rng.random() < 0.05:
                    segment = segment[::-1]  # inverted
                label = annotation["label"] if rng.random() < 0.8 else labels[int(rng.integers(0, 3))]
                detections.append({"segment": segment, "label": label, "score": float(rng.integers(0, 10)) / 10})
        for _ in range(int(rng.integers(0, 8))):
            start = float(rng.integers(0, 90))
            detections.append({"segment": [start, start + float(rng.integers(0, 20))],
                               "label": labels[int(rng.integers(0, 3))], "score": float(rng.integers(0, 10)) / 10})
        if detections and v != 4:
            results[video_id] = detections
    results["unseen_video"] = [{"segment": [0.0, 5.0], "label": "a", "score": 0.95}]
    return {"database": database}, {"results": results}


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_the_reference_loop(seed):
    gt, predictions = random_case(seed)
    thresholds = parse_tiou_thresholds("0.1:0.9:0.1")
    expected = reference_detection_ap(gt["database"], predictions["results"], thresholds, "validation")
    result = evaluate_detection(gt, predictions, thresholds)
    got = np.array(list(result["ap_per_class"].values())).T
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(result["mAP_per_tiou"].values()), expected.mean(axis=1), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Proposals (AR@AN)
# ---------------------------------------------------------------------------------------------


def test_average_recall_hand_case():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "x"), (20.0, 30.0, "x")], "v2": [(0.0, 10.0, "x")]})
    proposals = {"v1": [{"segment": [0.0, 10.0], "score": 0.9}, {"segment": [50.0, 60.0], "score": 0.8},
                        {"segment": [20.0, 30.0], "score": 0.7}, {"segment": [70.0, 80.0], "score": 0.1}],
                 "v2": [{"segment": [0.0, 9.0], "score": 0.5}, {"segment": [40.0, 45.0], "score": 0.4}]}
    result = evaluate_proposals(gt, proposals, [0.5], max_avg_nr_proposals=3)
    # ratio = 3 * 2 / 6 = 1: all 6 proposals kept; the AN grid is 3 * j / 100, j = 1..100.
    # v1: its 1st proposal hits (0, 10), its 3rd hits (20, 30); v2: its 1st hits (tIoU 0.9).
    # A video with n proposals looks at the first int(n * j / 100) of them.
    recall = np.array(result["recall_per_tiou"][0.5])
    an = np.array(result["average_number_of_proposals"])
    np.testing.assert_allclose(an, np.arange(1, 101) / 100 * 3)
    budgets_v1 = np.minimum((4 * (np.arange(1, 101) / 100.0 * 1.0)).astype(int), 4)
    budgets_v2 = np.minimum((2 * (np.arange(1, 101) / 100.0 * 1.0)).astype(int), 2)
    expected = ((budgets_v1 >= 1).astype(int) + (budgets_v1 >= 3) + (budgets_v2 >= 1)) / 3
    np.testing.assert_allclose(recall, expected)
    # None of AN = 1, 5, 10, 50, 100 lies on the grid 0.03, 0.06, ..., 3.
    assert result["AR@AN"] == {}
    assert result["average_recall"] == recall.tolist()


@pytest.mark.parametrize("seed", range(3))
def test_average_recall_matches_the_reference_loop(seed):
    gt, predictions = random_case(seed)
    proposals = {
        v: [{"segment": d["segment"], "score": d["score"]} for d in dets] for v, dets in predictions["results"].items()
    }
    thresholds = parse_tiou_thresholds("0.5:0.95:0.05")
    for max_avg in (2, 5):
        expected = reference_average_recall(gt["database"], proposals, thresholds, "validation", max_avg)
        result = evaluate_proposals(gt, proposals, thresholds, max_avg_nr_proposals=max_avg)
        np.testing.assert_allclose(np.array(list(result["recall_per_tiou"].values())), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result["average_recall"], expected.mean(axis=0), rtol=0, atol=1e-12)


def test_blocked_videos_are_left_out_of_both_sides():
    gt = make_ground_truth({"v1": [(0.0, 10.0, "jump")], "v2": [(0.0, 10.0, "jump")]})
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9)], "v2": [(50.0, 60.0, "jump", 0.95)]})
    assert evaluate_detection(gt, predictions, [0.5])["ap_per_class"]["jump"] == [0.25]
    # Without v2 its instance (a miss) and its detection (a false positive ranked first) are gone.
    result = evaluate_detection(gt, predictions, [0.5], blocked_videos=["v2"])
    assert result["ap_per_class"]["jump"] == [1.0] and result["num_ground_truth_videos"] == 1


def test_cli_proposal_task(tmp_path, capsys):
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(make_ground_truth({"v1": [(0.0, 10.0, "x")], "v2": [(0.0, 10.0, "x")]})))
    pred_file = tmp_path / "proposals.json"
    proposals = {"v1": [{"segment": [0.0, 10.0], "score": 0.9}], "v2": [{"segment": [30.0, 40.0], "score": 0.9}]}
    pred_file.write_text(json.dumps({"results": proposals}))
    output = tmp_path / "ar.json"
    argv = ["--ground-truth", str(gt_file), "--predictions", str(pred_file), "--task", "proposal",
            "--max-avg-proposals", "1", "--tiou-thresholds", "0.5", "--output", str(output)]
    assert main(argv) == 0
    assert "AR (%)" in capsys.readouterr().out
    written = json.loads(output.read_text())
    # One of two instances is found once each video may use its single proposal (AN = 1).
    assert written["AR@AN"] == {"1": 0.5}
    assert written["average_recall"][-1] == 0.5


def test_opentad_ground_truth_clean_up_is_opt_in():
    gt = make_ground_truth({"v1": [
        (0.0, 10.0, "jump"),
        (0.0005, 10.0009, "jump"),  # within 1e-3 s of the first, same label: removed
        (0.0, 10.0, "run"),         # same time, other label: kept
        (5.0, 5.0, "sit"),          # zero length: removed, and with it the class
    ]})
    predictions = make_predictions({"v1": [(0.0, 10.0, "jump", 0.9), (0.0, 10.0, "run", 0.8), (5.0, 5.0, "sit", 0.7)]})
    official = evaluate_detection(gt, predictions, [0.5])
    # Official: the duplicate is a miss (recall 1/2) and the zero-length pair matches (0/0 tIoU).
    assert official["ap_per_class"] == {"jump": [0.5], "run": [1.0], "sit": [1.0]}
    cleaned = evaluate_detection(gt, predictions, [0.5], remove_duplicate_instances=True, ignore_unknown_labels=True)
    assert cleaned["ap_per_class"] == {"jump": [1.0], "run": [1.0]}
    assert cleaned["num_predictions_ignored"] == 1
    assert any(
        w.startswith("2 ground-truth instance(s) with end <= start or a same-label duplicate")
        for w in cleaned["warnings"]
    )
