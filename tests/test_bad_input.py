"""Hostile but realistic input to the evaluation, config, annotation, decoding and conversion entry points
(issue 15): nothing lost, no silent wrong number, no hang, and one clear error line naming the culprit."""

import importlib
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import torch

from adatad import AdaTADConfig
from adatad import evaluation
from adatad.annotations import AnnotationError, load_activitynet_bsn, load_database_json, load_ego4d_moment_queries
from adatad.annotations import load_multithumos_json, load_thumos14_csv
from adatad.evaluation import EvaluationInputError, evaluate_detection, evaluate_proposals
from adatad.evaluation.cli import main
from adatad.opentad_config import OpenTADConfigError, load_opentad_config
from adatad.video_decoding import VideoDecodeError, decode_video
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "conversion_scripts"))
from convert_videomae_to_adatad import ConversionError, load_checkpoint_file  # noqa: E402


GROUND_TRUTH = {"database": {
    "v1": {"subset": "validation", "annotations": [{"segment": [0.0, 10.0], "label": "jump"}]},
    "v2": {"subset": "validation", "annotations": [{"segment": [5.0, 9.0], "label": "jump"}]},
}}
PREDICTIONS = {"results": {"v1": [{"segment": [0.0, 10.0], "label": "jump", "score": 0.9}]}}


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def run_eval(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adatad-eval: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ---------------------------------------------------------------------------------------------
# Item 3 (evaluation part): --output never replaces an input, is checked first, written atomically
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["ground-truth", "predictions"])
def test_eval_output_equal_to_an_input_is_refused_and_the_input_kept(tmp_path, capsys, which):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = write_json(tmp_path / "pred.json", PREDICTIONS)
    target = gt if which == "ground-truth" else predictions
    before = target.read_bytes()
    # A different spelling of the same file (through a symlinked folder) is the same file.
    (tmp_path / "link").symlink_to(tmp_path)
    for spelling in (target, tmp_path / "link" / target.name):
        code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", spelling)
        assert code == 1
        assert_one_error_line(err, f"is the {which} file")
        assert target.read_bytes() == before


def test_eval_unwritable_output_fails_before_the_evaluation(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    # Broken predictions: had the evaluation run first, the error would be about them.
    predictions = write_json(tmp_path / "pred.json", {"results": {"v1": [{"segment": "bad"}]}})
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", blocker / "m.json")
    assert code == 1
    assert_one_error_line(err, "--output", "cannot be written")


def test_eval_output_is_written_atomically(tmp_path, capsys, monkeypatch):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = write_json(tmp_path / "pred.json", PREDICTIONS)
    output = tmp_path / "out" / "metrics.json"
    assert run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", output, "--quiet")[0] == 0
    first = output.read_text()
    assert json.loads(first)["average_mAP"] == 0.5

    import adatad.atomic_files

    real_fdopen = adatad.atomic_files.os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(adatad.atomic_files.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", output)
    assert code == 1
    assert_one_error_line(err, "could not be written", "No space left")
    # The previous result is intact and no temporary file is left behind.
    assert output.read_text() == first
    assert sorted(p.name for p in output.parent.iterdir()) == ["metrics.json"]


# ---------------------------------------------------------------------------------------------
# Item 9: non-finite ground truth (and predictions) is an error naming the video
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_ground_truth_is_an_error_naming_the_video(tmp_path, capsys, bound):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GROUND_TRUTH).replace("[5.0, 9.0]", f"[5.0, {bound}]"))
    predictions = write_json(tmp_path / "pred.json", {"results": {
        "v1": [{"segment": [0.0, 10.0], "label": "jump", "score": 0.9}],
        "v2": [{"segment": [50.0, 60.0], "label": "jump", "score": 0.8}],
    }})
    with pytest.raises(EvaluationInputError, match=r"video 'v2' has a segment with a NaN or infinite bound"):
        evaluate_detection(gt, predictions, [0.5])
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions)
    assert code == 1
    assert_one_error_line(err, "'v2'", "NaN or infinite")


def test_non_finite_predictions_are_an_error_naming_the_video(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = tmp_path / "pred.json"
    predictions.write_text('{"results": {"v2": [{"segment": [5.0, 9.0], "label": "jump", "score": NaN}]}}')
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions)
    assert code == 1
    assert_one_error_line(err, "video 'v2', detection 0", "NaN or infinite")


def test_a_video_written_twice_in_an_evaluation_file_is_an_error(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = tmp_path / "pred.json"
    detection = '{"segment": [0.0, 10.0], "label": "jump", "score": 0.9}'
    predictions.write_text(f'{{"results": {{"v1": [{detection}], "v2": [], "v1": []}}}}')
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions)
    assert code == 1
    assert_one_error_line(err, "key 'v1' appears twice")


# ---------------------------------------------------------------------------------------------
# Item 10: bounded arithmetic in the OpenTAD config reader
# ---------------------------------------------------------------------------------------------


HOSTILE_CONFIGS = [
    ("x = 10 ** 10 ** 8", "integer of about"),
    ("x = 'a' * 10 ** 10", "repeat a sequence"),
    ("x = [0] * 10 ** 9", "repeat a sequence"),
    ("x = list(range(10 ** 12))", "items"),
    ("x = sum(range(10 ** 12))", "items"),
    ("a = 'x' * 1000000\nb = a + a", "items"),
    ("x = f'{1:999999999}'", "format spec"),
    ("x = 10.0 ** 10 ** 3", "too large for a float"),
]


def test_config_reader_refuses_huge_arithmetic_fast(tmp_path):
    # In a child process: before the bound, `10 ** 10 ** 8` runs for minutes and cannot be interrupted.
    script = textwrap.dedent(f"""
        import pathlib, sys
        from adatad.opentad_config import OpenTADConfigError, load_opentad_config
        for number, (text, expected) in enumerate({HOSTILE_CONFIGS!r}):
            path = pathlib.Path({str(tmp_path)!r}) / f"config_{{number}}.py"
            path.write_text(text)
            try:
                load_opentad_config(path)
            except OpenTADConfigError as error:
                assert expected in str(error) and str(path) in str(error), (text, str(error))
            else:
                sys.exit(f"accepted: {{text}}")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_config_reader_keeps_ordinary_arithmetic(tmp_path):
    path = tmp_path / "config.py"
    path.write_text("a = 2 ** 10\nb = [1, 2] * 3\nc = 'ab' * 2\nd = list(range(4))\ne = 10 ** 300\nf = f'{a:05d}'\n")
    assert load_opentad_config(path) == {"a": 1024, "b": [1, 2, 1, 2, 1, 2], "c": "abab", "d": [0, 1, 2, 3],
                                         "e": 10 ** 300, "f": "01024"}
    path.write_text("x = 2 ** 2000\n")
    with pytest.raises(OpenTADConfigError, match=r"config.py:1: .*limited to 1024 bits"):
        load_opentad_config(path)


# ---------------------------------------------------------------------------------------------
# Item 11: matching within a bounded working set, same numbers
# ---------------------------------------------------------------------------------------------


def crowded_group(num_detections, num_instances, seed=0):
    """One video, one class: many detections around a few hundred instances (scores on a 0.01 grid: ties)."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 3600, num_instances))
    ends = starts + rng.uniform(1, 30, num_instances)
    anchor = rng.integers(0, num_instances, num_detections)
    jitter = np.round(rng.normal(0, 3, (num_detections, 2)))
    ground_truth = {"database": {"v": {"subset": "validation", "annotations": [
        {"segment": [float(s), float(e)], "label": "a"} for s, e in zip(np.round(starts), np.round(ends))]}}}
    predictions = {"results": {"v": [
        {"segment": [float(s), float(e)], "label": "a", "score": float(c)}
        for s, e, c in zip(np.round(starts[anchor]) + jitter[:, 0], np.round(ends[anchor]) + jitter[:, 1],
                           np.round(rng.uniform(0, 1, num_detections), 2))]}}
    return ground_truth, predictions


def test_crowded_group_matches_the_reference_loop():
    from test_evaluation import reference_detection_ap

    ground_truth, predictions = crowded_group(1500, 40)
    thresholds = evaluation.parse_tiou_thresholds("0.1:0.9:0.1")
    expected = reference_detection_ap(ground_truth["database"], predictions["results"], thresholds, "validation")
    got = np.array(list(evaluate_detection(ground_truth, predictions, thresholds)["ap_per_class"].values())).T
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_chunked_matching_gives_identical_numbers(monkeypatch, seed):
    from test_evaluation import random_case

    cases = [random_case(seed), crowded_group(800, 30, seed)]
    thresholds = evaluation.parse_tiou_thresholds("0.1:0.9:0.1")
    whole = [evaluate_detection(gt, predictions, thresholds)["ap_per_class"] for gt, predictions in cases]
    # One step per chunk, and a few steps per chunk: every table split at every possible place.
    for chunk_bytes in (1, 5000):
        monkeypatch.setattr(evaluation.metrics, "_MATCHING_CHUNK_BYTES", chunk_bytes)
        chunked = [evaluate_detection(gt, predictions, thresholds)["ap_per_class"] for gt, predictions in cases]
        assert chunked == whole  # bit-identical


@pytest.mark.parametrize("seed", range(3))
def test_chunked_average_recall_gives_identical_numbers(monkeypatch, seed):
    from test_evaluation import random_case

    gt, predictions = random_case(seed)
    crowded_gt, crowded_predictions = crowded_group(800, 30, seed)
    cases = [(gt, predictions), (crowded_gt, crowded_predictions)]
    whole = [evaluate_proposals(g, p, "0.1:0.9:0.1", max_avg_nr_proposals=50) for g, p in cases]
    for chunk_bytes in (1, 5000):
        monkeypatch.setattr(evaluation.metrics, "_MATCHING_CHUNK_BYTES", chunk_bytes)
        chunked = [evaluate_proposals(g, p, "0.1:0.9:0.1", max_avg_nr_proposals=50) for g, p in cases]
        for got, expected in zip(chunked, whole):
            assert got["recall_per_tiou"] == expected["recall_per_tiou"] and got["auc"] == expected["auc"]


def test_one_crowded_group_evaluates_in_bounded_memory():
    # 20,000 detections on one (class, video) group of 256 instances. Peak of the allocations made during the
    # evaluation (tracemalloc sees numpy's buffers): 394 MiB before chunking, 70 MiB after.
    rng = np.random.default_rng(0)
    num, size = 20000, 256
    starts = np.sort(rng.uniform(0, 3600, size))
    ends = starts + rng.uniform(1, 30, size)
    ground_truth = evaluation.GroundTruth(
        ["v"], ["a"], np.zeros(size, np.int64), np.column_stack([starts, ends]), np.zeros(size, np.int64)
    )
    anchor = rng.integers(0, size, num)
    jitter = rng.normal(0, 3, (num, 2))
    segments = np.column_stack([starts[anchor] + jitter[:, 0], ends[anchor] + jitter[:, 1] + 5])
    detections = evaluation.Detections(
        ["v"], np.zeros(num, np.int64), segments, np.zeros(num, np.int64), rng.uniform(0, 1, num)
    )
    tracemalloc.start()
    try:
        evaluate_detection(ground_truth, detections, "0.5:0.95:0.05")
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert peak_mib < 150, f"the evaluation allocated up to {peak_mib:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# Unclear errors: evaluation flags
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--tiou-thresholds", "0.5,1.5"], "[0, 1]"),
        (["--tiou-thresholds=-0.1:0.5:0.1"], "[0, 1]"),
        (["--tiou-thresholds", "nan"], "[0, 1]"),
        (["--tiou-thresholds", "0.5,0.7,0.5"], "distinct"),
        (["--task", "proposal", "--max-avg-proposals", "0"], "positive finite number"),
        (["--task", "proposal", "--max-avg-proposals", "-5"], "positive finite number"),
        (["--task", "proposal", "--max-avg-proposals", "nan"], "positive finite number"),
    ],
)
def test_eval_flag_values_out_of_range_are_refused_with_the_range(tmp_path, capsys, flags, fragment):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = write_json(tmp_path / "pred.json", PREDICTIONS)
    code, out, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, *flags)
    assert code == 1 and out == ""
    assert_one_error_line(err, fragment)


def test_eval_debug_shows_the_traceback_and_help_states_the_exit_codes(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", tmp_path / "missing.json", "--debug")
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("adatad-eval: error:")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "exit status: 0" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exit_info:
        main(["--predictions", "p.json"])  # usage error: --ground-truth missing
    assert exit_info.value.code == 2


def test_proposal_budget_is_validated_in_the_api_too():
    with pytest.raises(EvaluationInputError, match="positive finite"):
        evaluate_proposals(GROUND_TRUTH, PREDICTIONS, [0.5], max_avg_nr_proposals=0)


# ---------------------------------------------------------------------------------------------
# Unclear errors: AdaTADConfig validates every field it promises to
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("loss_label_smoothing", 5.0, "in [0, 1]"),
        ("loss_label_smoothing", math.nan, "in [0, 1]"),
        ("projection_num_heads", 0, "positive int"),
        ("head_prior_prob", 1.0, "in [0, 1)"),
        ("head_kernel_size", 4, "positive odd int"),
        ("backbone_drop_path_rate", 1.5, "in [0, 1)"),
        ("loss_focal_gamma", -1.0, "non-negative"),
        ("loss_regression_weight", 0.0, "-1 to balance"),
        ("max_seq_len", -768, "positive int"),
        ("projection_attention_window", [9, 9, 0, 9, 9, 9], "-1 (global attention) or a positive int"),
        ("fpn_regression_ranges", [[0, 4], [8, 4], [8, 16], [16, 32], [32, 64], [64, 10000]], "0 <= min < max"),
    ],
)
def test_config_fields_out_of_range_are_refused_with_the_range(field, value, fragment):
    with pytest.raises(ValueError, match=rf"`{field}.*` must be .*{re.escape(fragment)}"):
        AdaTADConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("nms_sigma", 0.0, "> 0"),
        ("voting_thresh", 2.0, "in [0, 1]"),
        ("voting_thresh", math.nan, "in [0, 1]"),
        ("max_segments", 0, "positive integer"),
        ("pre_nms_thresh", math.nan, "in [0, 1]"),
    ],
)
def test_post_processing_settings_out_of_range_are_refused_with_the_range(field, value, fragment):
    from adatad.post_processing import PostProcessingSettings

    with pytest.raises(ValueError, match=rf"`{field}` must be .*{re.escape(fragment)}"):
        PostProcessingSettings(**{field: value})


def test_default_and_round_tripped_configs_stay_valid(tmp_path):
    config = AdaTADConfig(loss_label_smoothing=0.1, loss_regression_weight=-1, loss_focal_alpha=-1)
    config.save_pretrained(tmp_path)
    assert AdaTADConfig.from_pretrained(tmp_path).loss_label_smoothing == 0.1


# ---------------------------------------------------------------------------------------------
# Unclear errors: annotation loaders
# ---------------------------------------------------------------------------------------------


VIDEO = {"subset": "training", "duration": 10, "annotations": [{"segment": [1, 2], "label": "a"}]}
OK_CLIP = {"clip_uid": "ok", "video_start_sec": 0, "video_end_sec": 10, "video_start_frame": 0, "video_end_frame": 300,
           "annotations": []}


@pytest.mark.parametrize(
    "name, load",
    [
        (
            "frame NaN",
            lambda p, **k: load_database_json(
                write_text(
                    p,
                    '{"database": {"v1": {"subset": "training", '
                    '"frame": NaN, "annotations": []}, "ok": ' + json.dumps(VIDEO) + "}}",
                ),
                **k,
            ),
        ),
        (
            "annotations not a list",
            lambda p, **k: load_database_json(
                write_json(p, {"database": {"v1": {**VIDEO, "annotations": 5}, "ok": VIDEO}}), **k
            ),
        ),
        (
            "label a list",
            lambda p, **k: load_database_json(
                write_json(
                    p,
                    {"database": {"v1": {**VIDEO, "annotations": [{"segment": [1, 2], "label": ["a"]}]}, "ok": VIDEO}},
                ),
                **k,
            ),
        ),
        (
            "bsn entry not an object",
            lambda p, **k: load_activitynet_bsn(
                write_json(p, {"v_a": 5, "v_ok": {"duration_second": 5, "annotations": []}}),
                write_text(p.with_suffix(".csv"), "video,subset,fps\nv_a,training,30\nv_ok,training,30\n"),
                **k,
            ),
        ),
        (
            "bsn frame count text",
            lambda p, **k: load_activitynet_bsn(
                write_json(
                    p,
                    {
                        "v_a": {"duration_second": 5, "duration_frame": "x", "annotations": []},
                        "v_ok": {"duration_second": 5, "annotations": []},
                    },
                ),
                write_text(p.with_suffix(".csv"), "video,subset,fps\nv_a,training,30\nv_ok,training,30\n"),
                **k,
            ),
        ),
        (
            "ego4d clip not an object",
            lambda p, **k: load_ego4d_moment_queries(
                write_json(p, {"videos": [{"split": "train", "clips": [5, OK_CLIP]}]}), **k
            ),
        ),
        (
            "actions not a list",
            lambda p, **k: load_multithumos_json(
                write_json(
                    p,
                    {
                        "v": {"subset": "training", "duration": 10, "actions": 5},
                        "ok": {"subset": "training", "actions": []},
                    },
                ),
                **k,
            ),
        ),
    ],
)
def test_malformed_annotation_fields_raise_the_loader_error_and_follow_skip(tmp_path, name, load):
    with pytest.raises(AnnotationError, match=r"video .*field"):
        load(tmp_path / "annotations.json")
    dataset, report = load(tmp_path / "annotations.json", on_error="skip", output_report=True)
    assert sum(report.skipped.values()) == 1 and len(report.details) == 1
    assert "ok" in dataset["video_id"]  # the good video stays


def write_text(path, text):
    path.write_text(text)
    return path


def test_thumos_ground_truth_csv_with_a_bad_label_index_is_an_annotation_error(tmp_path):
    path = write_text(tmp_path / "thumos14_test_groundtruth.csv",
                      "video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx\n"
                      "v1,1,2,30,60,100,30,3000,x\n")
    with pytest.raises(AnnotationError, match=r"line 2, video 'v1', field label-idx"):
        load_thumos14_csv(path)


def test_missing_annotations_key_is_not_silently_an_empty_video(tmp_path):
    path = write_json(tmp_path / "a.json", {"database": {
        "v1": VIDEO, "v2": {"subset": "training", "duration": 5, "annotation": [{"segment": [1, 2], "label": "a"}]}}})
    with pytest.raises(AnnotationError, match=r"video 'v2', field annotations: the entry has no 'annotations' key"):
        load_database_json(path)
    dataset, report = load_database_json(path, on_error="skip", output_report=True)
    assert dataset["video_id"] == ["v1"] and report.skipped["bad_video_field"] == 1


def test_duplicate_json_keys_are_an_error(tmp_path):
    path = write_text(
        tmp_path / "a.json", f'{{"database": {{"v1": {json.dumps(VIDEO)}, "v1": {json.dumps(VIDEO)}}}}}'
    )
    with pytest.raises(AnnotationError, match=r"key 'v1' appears twice"):
        load_database_json(path)


# ---------------------------------------------------------------------------------------------
# Unclear errors: decoding and conversion
# ---------------------------------------------------------------------------------------------


def test_audio_only_file_is_reported_as_audio_only(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="audio stream but no video stream") as error:
        decode_video(path, lambda info: [0])
    assert "corrupt" not in error.value.reason


def test_missing_decoder_is_not_reported_as_a_corrupt_file(tmp_path, monkeypatch):
    import adatad.video_decoding as decoding

    def not_installed(path, num_threads):
        raise ImportError("No module named 'decord'")

    monkeypatch.setitem(decoding._READERS, "decord", not_installed)
    path = tmp_path / "video.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(VideoDecodeError, match=r"no decoder is available \(decord not installed\)") as error:
        decode_video(path, lambda info: [0], backend="decord")
    assert "corrupt" not in str(error.value)


@pytest.mark.parametrize("content", [os.urandom(4096), b"hello world\n", b""], ids=["random", "text", "empty"])
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match="is not a PyTorch checkpoint") as error:
        load_checkpoint_file(path)
    assert "weights_only=False" not in str(error.value)


def test_a_pickle_of_python_objects_still_gets_the_trust_message(tmp_path):
    import argparse

    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ConversionError, match="holds Python objects other than tensors"):
        load_checkpoint_file(path)


@pytest.mark.parametrize("script", ["convert_videomae_to_adatad", "convert_opentad_to_adatad"])
def test_converters_end_with_one_error_line_and_exit_1(tmp_path, capsys, script):
    converter = importlib.import_module(script)
    path = tmp_path / "model.pth"
    path.write_bytes(os.urandom(4096))
    config = tmp_path / "config.py"
    config.write_text("model = dict()\n")
    argv = ["--checkpoint", str(path), "--output", str(tmp_path / "out")]
    argv += ["--config", str(config)] if script == "convert_opentad_to_adatad" else ["--num-labels", "3"]
    with pytest.raises(SystemExit) as exit_info:
        converter.main(argv)
    # A SystemExit carrying a message: the interpreter prints it on standard error and exits with status 1.
    message = exit_info.value.code
    assert isinstance(message, str), message
    stderr = capsys.readouterr().err + message + "\n"
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in stderr and len(error_lines) == 1, stderr
    with pytest.raises(SystemExit) as exit_info:
        converter.main(["--help"])
    assert exit_info.value.code == 0
    assert "exit status: 0" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------------------------------------
# Issue 22: outputs never replace devices or pipes; `-` is standard output in every command
# ---------------------------------------------------------------------------------------------


def test_eval_output_dash_writes_the_metrics_to_standard_output(tmp_path, capsys, monkeypatch):
    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = write_json(tmp_path / "pred.json", PREDICTIONS)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", "-")
    assert code == 0
    # v1 found at every threshold, v2 missed: AP 0.5 (hand-computed), the JSON alone on standard output.
    assert json.loads(out)["average_mAP"] == 0.5
    assert "mAP" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "pred.json"]


def test_eval_output_to_a_fifo_is_written_into(tmp_path, capsys):
    import stat

    gt = write_json(tmp_path / "gt.json", GROUND_TRUTH)
    predictions = write_json(tmp_path / "pred.json", PREDICTIONS)
    fifo = tmp_path / "metrics.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, _, err = run_eval(capsys, "--ground-truth", gt, "--predictions", predictions, "--output", fifo, "--quiet")
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert code == 0, err
    assert json.loads(received)["average_mAP"] == 0.5
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_detect_and_the_pipeline_loader_refuse_a_model_without_its_classification_head(tmp_path, tests_dir, capsys):
    from safetensors.torch import load_file, save_file

    from adatad.detect import main as detect_main
    from adatad.pipeline_adatad import ModelFolderError, load_detection_pipeline
    from test_pipeline import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    removed = sorted(key for key in weights if "classification_head" in key)
    assert removed == ["detector.head.classification_head.bias", "detector.head.classification_head.weight"]
    save_file({k: v for k, v in weights.items() if k not in removed}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ModelFolderError, match="lack 2 tensor"):
        load_detection_pipeline(folder, device="cpu")
    output = tmp_path / "detections.json"
    with pytest.raises(SystemExit) as exit_status:
        detect_main([str(tests_dir / "data" / "videos" / "test.avi"), "--model", str(folder), "--output", str(output)])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert all(name in error for name in removed) and "refused" in error
    assert not output.exists()
