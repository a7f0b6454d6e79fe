"""Evaluation as OpenTAD runs it, in training and on its own: ActivityNet's video-classifier fusion and blocked
videos, ignored labels, Ego4D-MQ's top-k recall, training ground-truth filtering, the pretrained-backbone check,
`--eval_only` and exact two-process evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate import PartialState

from adatad import annotations
from adatad import presets
from adatad.evaluation import evaluate_topk_recall
from adatad.synthetic import generate_synthetic_activitynet

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "training"))
import run_tad  # noqa: E402
import tad_data  # noqa: E402
from tiny_run_overrides import TINY_RUN_OVERRIDES  # noqa: E402

# synthetic-tiny-anet shrunk to seconds per epoch, adapters in both layers, validation every epoch.
TINY = TINY_RUN_OVERRIDES + [
    "model.adapter_layer_indices=[0,1]",
    "data.resize_length=32",
    "training.max_epoch=2",
    "training.end_epoch=2",
    "training.val_start_epoch=0",
    "training.val_interval=1",
]
NUM_VAL_VIDEOS = 7  # 2 blocked -> 5 evaluated: an odd number, so two processes need a padded last batch


@pytest.fixture(scope="module")
def anet_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic-anet")
    generate_synthetic_activitynet(
        root, num_train_videos=8, num_val_videos=NUM_VAL_VIDEOS, num_frames=48, min_num_frames=32, frame_size=32, seed=3
    )
    return root


@pytest.fixture(scope="module")
def trained(anet_data, tmp_path_factory):
    """A 2-epoch synthetic-tiny-anet run (4 steps), evaluated after each epoch."""
    output_dir = tmp_path_factory.mktemp("trained")
    result = train(anet_data, output_dir)
    return output_dir, result


def train(data_dir, output_dir, *flags, overrides=()):
    argv = ["--preset", "synthetic-tiny-anet", "--data_dir", str(data_dir), "--output_dir", str(output_dir), *flags]
    return run_tad.training_function(run_tad.parse_args([*argv, "--set", *TINY, *overrides]))


def tiny_preset(data_dir, *overrides):
    preset = presets.load_preset("synthetic-tiny-anet")
    preset["data"]["root"] = str(data_dir)
    return presets.apply_overrides(preset, [*TINY, *overrides])


# ---------------------------------------------------------------------------------------------------------------------
# Ego4D-MQ's top-k recall, against hand-computed values
# ---------------------------------------------------------------------------------------------------------------------


def database(videos):
    return {
        "database": {
            v: {"subset": "val", "annotations": [{"segment": s, "label": l} for s, l in a]} for v, a in videos.items()
        }
    }


def results(videos):
    return {"results": {v: [{"segment": s, "label": l, "score": c} for s, l, c in d] for v, d in videos.items()}}


def test_topk_recall_counts_instances_covered_by_the_top_k_times_n_detections():
    ground_truth = database({"a": [([0, 10], "x"), ([20, 30], "x")], "b": [([0, 5], "y")]})
    predictions = results(
        {
            # Class x in video a (2 instances): the top 2 for R@1x are the 0.95 miss and the 0.9 detection of [20, 30]
            # (tIoU 9/10); the exact hit of [0, 10] (0.5) only enters the top 10 of R@5x.
            "a": [([0, 10], "x", 0.5), ([21, 30], "x", 0.9), ([50, 60], "x", 0.95)],
            # Class y in video b (1 instance): its one detection has tIoU 4/5; the x detection is x's, in a video
            # without x ground truth, and changes nothing.
            "b": [([0, 4], "y", 0.3), ([0, 5], "x", 0.9)],
        }
    )
    recall = evaluate_topk_recall(
        ground_truth, predictions, tiou_thresholds=[0.5, 0.85, 0.95], top_k=[1, 5], subset="val"
    )
    # Per class then averaged: x = 1/2, y = 1/1 at 0.5; x = 1/2 (the 0.9 one), y = 0 at 0.85 for R@1x.
    assert recall["recall_per_tiou"][0.5] == {1: pytest.approx(0.75), 5: pytest.approx(1.0)}
    assert recall["recall_per_tiou"][0.85] == {1: pytest.approx(0.25), 5: pytest.approx(0.5)}
    # At 0.95 only the exact [0, 10] detection counts, and only inside the top 5x.
    assert recall["recall_per_tiou"][0.95] == {1: pytest.approx(0.0), 5: pytest.approx(0.25)}
    assert recall["average_recall"][1] == pytest.approx((0.75 + 0.25 + 0.0) / 3)


def test_topk_recall_has_no_one_to_one_matching_and_ignores_unknown_labels_and_videos():
    # One detection covering both instances of a video recalls both (OpenTAD counts, per instance, whether any of
    # the top detections overlaps it); detections of an unknown class or of a video without ground truth are ignored.
    ground_truth = database({"a": [([0, 10], "x"), ([0, 10.5], "x")]})
    predictions = results({"a": [([0, 10], "x", 0.8), ([0, 10], "z", 0.99)], "elsewhere": [([0, 10], "x", 0.99)]})
    recall = evaluate_topk_recall(ground_truth, predictions, tiou_thresholds=[0.9], top_k=[1], subset="val")
    assert recall["recall_per_tiou"][0.9][1] == pytest.approx(1.0)


def test_topk_recall_of_a_class_without_detections_is_zero_and_duplicates_are_removed():
    # The duplicate of [0, 10] (same label, within 1e-3 s) is dropped as OpenTAD's evaluator drops it: x has 1
    # instance, recalled; y has none of its 2 instances detected.
    ground_truth = database({"a": [([0, 10], "x"), ([0.0005, 10], "x")], "b": [([0, 5], "y"), ([6, 9], "y")]})
    predictions = results({"a": [([1, 10], "x", 0.5)]})
    recall = evaluate_topk_recall(ground_truth, predictions, tiou_thresholds=[0.5], top_k=[1], subset="val")
    assert recall["recall_per_tiou"][0.5][1] == pytest.approx((1.0 + 0.0) / 2)


def test_topk_recall_rejects_non_positive_k():
    with pytest.raises(ValueError, match="top_k"):
        evaluate_topk_recall(database({"a": [([0, 1], "x")]}), results({}), top_k=[0], subset="val")


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation data: blocked videos, ignored labels, video classifier
# ---------------------------------------------------------------------------------------------------------------------


def test_blocked_videos_leave_ground_truth_and_evaluation_rows(anet_data):
    blocked = json.loads((anet_data / "blocked.json").read_text())
    assert len(blocked) == 2
    preset = tiny_preset(anet_data)
    processor = run_tad.AdaTADVideoProcessor(**presets.processor_kwargs(preset))
    eval_rows, evaluation = run_tad.build_evaluation_data(preset, presets.resolve_data_paths(preset), processor)
    evaluated = set(eval_rows.with_format(None)["video_id"])
    assert len(evaluated) == NUM_VAL_VIDEOS - 2 and not evaluated & set(blocked)
    assert set(evaluation.ground_truth["database"]) == evaluated
    assert evaluation.video_classifier is not None and evaluation.video_classifier.topk == 2


def test_ignored_labels_leave_the_evaluation_ground_truth(anet_data):
    database_json = json.loads((anet_data / "annotations.json").read_text())["database"]
    ignored = next(a["label"] for v in database_json.values() if v["subset"] == "validation" for a in v["annotations"])
    preset = tiny_preset(anet_data, f'data.ignore_labels=["{ignored}"]')
    processor = run_tad.AdaTADVideoProcessor(**presets.processor_kwargs(preset))
    _, evaluation = run_tad.build_evaluation_data(preset, presets.resolve_data_paths(preset), processor)
    labels = {a["label"] for v in evaluation.ground_truth["database"].values() for a in v["annotations"]}
    assert labels and ignored not in labels


def write_classifier(data_dir, tmp_path, keep):
    classifier = json.loads((data_dir / "video_classifier.json").read_text())
    classifier["results"] = {video_id: scores for video_id, scores in classifier["results"].items() if keep(video_id)}
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(classifier))
    return path


def test_many_videos_without_classifier_scores_stop_the_evaluation(anet_data, tmp_path):
    path = write_classifier(anet_data, tmp_path, keep=lambda video_id: video_id.endswith("0"))
    preset = tiny_preset(anet_data, f"evaluation.external_classifier_file={path}")
    processor = run_tad.AdaTADVideoProcessor(**presets.processor_kwargs(preset))
    with pytest.raises(ValueError, match=r"no scores for 4 of the 5 evaluation videos"):
        run_tad.build_evaluation_data(preset, presets.resolve_data_paths(preset), processor)


def test_a_few_videos_without_classifier_scores_are_left_out(anet_data, tmp_path, monkeypatch):
    path = write_classifier(anet_data, tmp_path, keep=lambda video_id: not video_id.endswith("0000"))
    preset = tiny_preset(anet_data, f"evaluation.external_classifier_file={path}")
    processor = run_tad.AdaTADVideoProcessor(**presets.processor_kwargs(preset))
    monkeypatch.setattr(tad_data, "MAX_DROPPED_SHARE", 0.25)
    PartialState()  # the warning goes through accelerate's logger, as in a run
    eval_rows, evaluation = run_tad.build_evaluation_data(preset, presets.resolve_data_paths(preset), processor)
    assert evaluation.videos_without_classifier_scores == ["synthetic_validation_0000"]
    assert "synthetic_validation_0000" not in eval_rows.with_format(None)["video_id"]
    assert len(eval_rows) == NUM_VAL_VIDEOS - 3
    # Left out of the predictions only: its ground truth still counts (as misses).
    assert "synthetic_validation_0000" in evaluation.ground_truth["database"]


def test_class_agnostic_detections_without_a_classifier_stop_with_the_reason(anet_data, tmp_path):
    no_classifier = [f"evaluation.external_classifier_{part}=null" for part in ("file", "kind", "top_k")]
    with pytest.raises(ValueError, match="class-agnostic"):
        train(anet_data, tmp_path, "--max_train_steps", "1", overrides=no_classifier)


# ---------------------------------------------------------------------------------------------------------------------
# Training ground truth, backbone check
# ---------------------------------------------------------------------------------------------------------------------


def training_rows(tmp_path, videos, **data):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"database": videos}))
    preset = presets.load_preset("synthetic-tiny-anet")
    preset["data"].update(data)
    rows = annotations.load_database_json(path, subset="training")
    return tad_data.filter_training_rows(rows, preset)


def video(duration, segments):
    return {
        "subset": "training",
        "duration": duration,
        "frame": 10 * duration,
        "annotations": [{"segment": s, "label": "x"} for s in segments],
    }


def test_filter_gt_drops_segments_of_at_most_one_percent_and_videos_left_empty(tmp_path):
    videos = {
        "kept": video(100.0, [[0.0, 1.0], [10.0, 11.5], [20.0, 40.0]]),  # 1% of the video is dropped, 1.5% kept
        "emptied": video(100.0, [[5.0, 5.5]]),
        "no_segments": video(50.0, []),
    }
    rows = training_rows(tmp_path, videos)
    assert rows["video_id"] == ["kept"]
    assert rows[0]["segments"] == [[10.0, 11.5], [20.0, 40.0]] and rows[0]["labels"] == [0, 0]
    assert annotations.class_names_of(rows) == ["x"]


def test_without_filter_gt_only_videos_without_segments_are_dropped(tmp_path):
    videos = {"kept": video(100.0, [[0.0, 1.0]]), "no_segments": video(50.0, [])}
    rows = training_rows(tmp_path, videos, filter_gt=False)
    assert rows["video_id"] == ["kept"] and rows[0]["segments"] == [[0.0, 1.0]]


def test_filter_gt_outside_resize_mode_drops_empty_and_outside_segments(tmp_path):
    videos = {"v": video(10.0, [[2.0, 2.0], [3.0, 4.0], [10.5, 12.0], [0.1, 0.2]])}
    rows = training_rows(tmp_path, videos, conversion_mode="frame_count")
    # OpenTAD's padding datasets: a length above 0 and a start inside the video; the short segment stays.
    assert rows[0]["segments"] == [[3.0, 4.0], [0.1, 0.2]]


def test_paper_preset_without_a_pretrained_backbone_stops_with_the_conversion_command():
    preset = presets.load_preset("e2e_anet_videomae_b_192x4_160_adapter")
    args = run_tad.parse_args(["--preset", preset["name"]])
    with pytest.raises(run_tad.RunError) as error:
        run_tad.check_backbone_source(preset, args)
    message = str(error.value)
    assert "\n" not in message  # printed as the one `error:` line, exit status 2
    assert "convert_videomae_to_adatad.py --checkpoint pretrained/" + preset["backbone_checkpoint"] in message
    assert "--arch b" in message and "--allow_random_backbone" in message
    run_tad.check_backbone_source(preset, run_tad.parse_args(["--preset", preset["name"], "--allow_random_backbone"]))
    run_tad.check_backbone_source(preset, run_tad.parse_args(["--preset", preset["name"], "--pretrained_model", "x"]))
    synthetic = presets.load_preset("synthetic-tiny-anet")
    run_tad.check_backbone_source(synthetic, run_tad.parse_args(["--preset", "synthetic-tiny-anet"]))


# ---------------------------------------------------------------------------------------------------------------------
# Training evaluation, --eval_only, two processes
# ---------------------------------------------------------------------------------------------------------------------


def test_training_evaluation_names_detections_with_the_classifier(trained, anet_data):
    output_dir, result = trained
    metrics = result["last"]
    classes = json.loads((anet_data / "video_classifier.json").read_text())["class"]
    predictions = json.loads((output_dir / "predictions.json").read_text())["results"]
    blocked = json.loads((anet_data / "blocked.json").read_text())
    assert len(predictions) == NUM_VAL_VIDEOS - 2 and not set(predictions) & set(blocked)
    labels = {d["label"] for detections in predictions.values() for d in detections}
    assert labels and labels <= set(classes)
    # Top 2 classes per video: every detection twice, once per class.
    for detections in predictions.values():
        first, second = (
            {d["label"] for d in detections[: len(detections) // 2]},
            {d["label"] for d in detections[len(detections) // 2 :]},
        )
        assert len(first) == len(second) == 1 and first != second
    assert metrics["num_predictions_ignored"] == 0 and metrics["num_predictions"] > 0
    assert list(metrics["mAP_per_tiou"]) == presets.load_preset("synthetic-tiny-anet")["evaluation"]["tiou_thresholds"]


def eval_only(data_dir, model_dir, output_dir, *flags):
    argv = ["--preset", "synthetic-tiny-anet", "--data_dir", str(data_dir), "--output_dir", str(output_dir)]
    return [*argv, "--eval_only", "--model", str(model_dir), *flags, "--set", *TINY]


def test_eval_only_reproduces_the_training_evaluation(trained, anet_data, tmp_path):
    output_dir, _ = trained
    run_tad.main(eval_only(anet_data, output_dir / "last", tmp_path))
    training_results = json.loads((output_dir / "last" / "eval_results.json").read_text())
    results = json.loads((tmp_path / "eval_results.json").read_text())
    for key in ("mAP_per_tiou", "average_mAP", "ap_per_class"):
        assert results[key] == training_results[key], key
    assert json.loads((tmp_path / "predictions.json").read_text()) == json.loads(
        (output_dir / "predictions.json").read_text()
    )
    assert not list(tmp_path.glob(".*.tmp"))


def test_eval_only_takes_a_classifier_override(trained, anet_data, tmp_path):
    output_dir, _ = trained
    # Classifier scores that name every video with the wrong classes: detections keep their places, mAP drops to 0.
    classifier = json.loads((anet_data / "video_classifier.json").read_text())
    classifier["results"] = {v: [1.0 - s for s in scores] for v, scores in classifier["results"].items()}
    path = tmp_path / "inverted.json"
    path.write_text(json.dumps(classifier))
    argv = eval_only(anet_data, output_dir / "last", tmp_path / "eval")
    metrics = run_tad.evaluation_function(run_tad.parse_args([*argv, f"evaluation.external_classifier_file={path}"]))
    assert metrics["average_mAP"] == 0.0 and metrics["num_predictions"] > 0


def test_recall_is_reported_beside_map_when_the_preset_asks(trained, anet_data, tmp_path):
    output_dir, _ = trained
    run_tad.main([*eval_only(anet_data, output_dir / "last", tmp_path), "evaluation.recall_top_k=[1,5]"])
    results = json.loads((tmp_path / "eval_results.json").read_text())
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    ground_truth = json.loads((output_dir / "ground_truth.json").read_text())
    expected = evaluate_topk_recall(
        ground_truth, predictions, tiou_thresholds=list(map(float, results["mAP_per_tiou"])), subset=None
    )
    assert results["recall_per_tiou"] == json.loads(json.dumps(expected["recall_per_tiou"]))
    assert set(results["average_recall"]) == {"1", "5"}
    metrics = {**expected, "mAP_per_tiou": {0.5: 0.25, 0.95: 0.0}, "average_mAP": 0.125}
    metrics["recall_per_tiou"] = {0.5: {1: 0.5, 5: 0.75}, 0.95: {1: 0.0, 5: 0.25}}
    metrics["average_recall"] = {1: 0.25, 5: 0.5}
    assert run_tad.format_metrics(metrics).splitlines()[2:] == [
        "    50.00 |      0.00 |   25.00   (R@1x)",
        "    75.00 |     25.00 |   50.00   (R@5x)",
    ]


def test_eval_only_needs_a_model_folder():
    with pytest.raises(SystemExit):
        run_tad.parse_args(["--preset", "synthetic-tiny-anet", "--eval_only"])


def test_two_process_evaluation_scores_every_video_once(trained, anet_data, tmp_path):
    output_dir, _ = trained
    # One video per batch: 5 videos over 2 processes, so accelerate repeats one to fill the last round.
    flags = ["--eval_batch_size", "1"]
    run_tad.main(eval_only(anet_data, output_dir / "last", tmp_path / "one", *flags))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "training" / "configs" / "cpu_2proc.yaml"), str(REPO_ROOT / "training" / "run_tad.py"),
        *eval_only(anet_data, output_dir / "last", tmp_path / "two", *flags),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    one = json.loads((tmp_path / "one" / "predictions.json").read_text())["results"]
    two = json.loads((tmp_path / "two" / "predictions.json").read_text())["results"]
    assert len(two) == NUM_VAL_VIDEOS - 2
    # A video scored twice would carry its detections twice.
    assert {v: len(d) for v, d in two.items()} == {v: len(d) for v, d in one.items()}
    assert two == one
    assert json.loads((tmp_path / "two" / "eval_results.json").read_text())["average_mAP"] == json.loads(
        (tmp_path / "one" / "eval_results.json").read_text()
    )["average_mAP"]
