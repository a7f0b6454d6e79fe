"""Bad input that used to end in a raw traceback, a misleading message or a silently accepted value.

Each case is one row: the input, the fragment the one error line must contain, and the exit status.
"""

import json
import shutil

import pytest

from adatad.evaluation import cli as evaluation_cli

GROUND_TRUTH = {
    "database": {
        "v1": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label": "jump"}]},
        "v2": {"subset": "test", "annotations": [{"segment": [2.0, 5.0], "label": "run"}]},
    }
}
PREDICTIONS = {
    "results": {
        "v1": [{"segment": [1.0, 3.0], "label": "jump", "score": 0.9}],
        "v2": [{"segment": [2.0, 4.0], "label": "run", "score": 0.8}],
    }
}


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _with(data, change):
    data = json.loads(json.dumps(data))
    change(data)
    return data


EVAL_CASES = {
    "threshold count": ([], {}, ["--tiou-thresholds", "0.5:0.95:1e-7"], "more than 1000"),
    "threshold list": ([], {}, ["--tiou-thresholds", ",".join(str(i / 2000) for i in range(1001))], "at most 1000"),
    "proposal count overflow": (
        ["--task", "proposal"], {}, ["--max-avg-proposals", "1e308"], "at most the number of proposals"
    ),
    "deep JSON": ([], {"ground_truth": "[" * 100000 + "]" * 100000}, [], "nests JSON arrays or objects too deeply"),
    "score as text": (
        [], {"predictions": _with(PREDICTIONS, lambda d: d["results"]["v1"][0].update(score="0.9"))}, [],
        "video 'v1', detection 0 has score '0.9'",
    ),
    "score as boolean": (
        [], {"predictions": _with(PREDICTIONS, lambda d: d["results"]["v2"][0].update(score=True))}, [],
        "video 'v2', detection 0 has score True",
    ),
    "subset null": (
        [], {"ground_truth": _with(GROUND_TRUTH, lambda d: d["database"]["v2"].update(subset=None))}, [],
        "['v2']['subset'] must be a string",
    ),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_adatad_eval_refuses_with_one_line(case, tmp_path, capsys):
    task, files, flags, fragment = EVAL_CASES[case]
    ground_truth = _write(tmp_path / "gt.json", files.get("ground_truth", GROUND_TRUTH))
    predictions = _write(tmp_path / "pred.json", files.get("predictions", PREDICTIONS))
    argv = ["--ground-truth", ground_truth, "--predictions", predictions, "--subset", "test", *task, *flags]
    assert evaluation_cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adatad-eval: error: ") and fragment in err[0], err


def test_adatad_eval_cases_are_valid_without_the_change(tmp_path, capsys):
    """The base files evaluate, so each refusal above comes from its one change."""
    argv = ["--ground-truth", _write(tmp_path / "gt.json", GROUND_TRUTH),
            "--predictions", _write(tmp_path / "pred.json", PREDICTIONS), "--subset", "test"]
    assert evaluation_cli.main(argv) == 0
    assert evaluation_cli.main(argv + ["--task", "proposal", "--max-avg-proposals", "2"]) == 0


MEMORY_CASES = {
    "negative frames": (["--num-frames", "-768"], "--num-frames must be a positive multiple"),
    "zero frames": (["--num-frames", "0"], "--num-frames must be a positive multiple"),
    "huge batch": (["--batch-size", str(10**12)], "--batch-size (videos per device) must be in [1, 1024]"),
}


@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_estimate_memory_refuses_values_out_of_range(case, capsys):
    from adatad.estimate_memory import main

    flags, fragment = MEMORY_CASES[case]
    with pytest.raises(SystemExit) as exit_status:
        main(["--preset", "synthetic-tiny", *flags])
    assert exit_status.value.code == 2
    assert fragment in capsys.readouterr().err


def test_opentad_config_reader_bounds_a_range_too_long_for_len(tmp_path):
    from adatad.opentad_config import OpenTADConfigError, load_opentad_config

    config = tmp_path / "config.py"
    config.write_text("x = len(range(10**30))\n")
    with pytest.raises(OpenTADConfigError, match=r"config\.py:1: `range\(10 \*\* 30\)` gives a value of 10{30} items"):
        load_opentad_config(config)
    config.write_text("x = list(range(10, 0, -3))\n")
    assert load_opentad_config(config)["x"] == [10, 7, 4, 1]


PROCESSOR_CASES = {
    "scale_factor 0": ({"scale_factor": 0}, "`scale_factor` must be a positive integer, got 0"),
    "huge short side": ({"size": {"shortest_edge": 100000}}, "`size['shortest_edge']` must be a whole number"),
    "zero std": ({"image_std": [0, 0, 0]}, "`image_std` must be 3 positive finite numbers"),
    "NaN rescale": ({"rescale_factor": float("nan")}, "`rescale_factor` must be a positive finite number"),
    "negative threads": ({"decode_num_threads": -1}, "`decode_num_threads` must be an integer >= 0"),
    "nms_sigma 0": ({"nms_sigma": 0}, "`nms_sigma` must be > 0"),
    "unknown field": ({"windw_size": 5}, "unknown AdaTADVideoProcessor setting(s) ['windw_size'] (did you mean "
                                         "'window_size' for 'windw_size'?)"),
    "zero crop": ({"crop_size": {"height": 0, "width": 160}}, "`crop_size['height']` must be a whole number"),
    "two means": ({"image_mean": [0.5, 0.5]}, "`image_mean` must be 3 finite numbers"),
    "flip ratio": ({"flip_ratio": 2}, "`flip_ratio` must be in [0, 1]"),
}


@pytest.mark.parametrize("case", list(PROCESSOR_CASES))
def test_processor_refuses_bad_settings_when_built(case, tmp_path):
    from adatad.processing_adatad import AdaTADVideoProcessor

    settings, fragment = PROCESSOR_CASES[case]
    with pytest.raises(ValueError) as error:
        AdaTADVideoProcessor(**settings)
    assert fragment in str(error.value)
    # The same from a saved folder (a hand-edited video_preprocessor_config.json).
    AdaTADVideoProcessor().save_pretrained(tmp_path)
    config = tmp_path / "video_preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **settings}))
    with pytest.raises(ValueError) as error:
        AdaTADVideoProcessor.from_pretrained(tmp_path)
    assert fragment in str(error.value)


def test_processor_refuses_bad_clips_and_argument_lists():
    import numpy as np
    import torch

    from adatad.processing_adatad import AdaTADVideoProcessor

    processor = AdaTADVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                     sampling_method="resize", resize_length=4)
    with pytest.raises(ValueError, match=r"3 channels.*\(16, 2, 32, 32\)"):
        processor.transform_frames(torch.zeros(16, 2, 32, 32, dtype=torch.uint8))
    clips = [np.zeros((16, 32, 32, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"`video_ids` has 1 entries for 2 video\(s\)"):
        processor.preprocess(clips, video_ids=["a"], fps=[30, 30])
    with pytest.raises(ValueError, match=r"`fps` has 1 entries for 2 video\(s\)"):
        processor.preprocess(clips, video_ids=["a", "b"], fps=[30])
    for bad in (5, None):
        with pytest.raises(TypeError, match=f"got {type(bad).__name__}"):
            processor.preprocess(bad)
    # resize mode: resize_length 4 features x scale_factor 1 frame, one row per video
    assert processor.preprocess(clips, video_ids=["a", "b"], fps=[30, 30])["pixel_values"].shape[:2] == (2, 4)


def test_pipeline_refuses_what_is_not_a_path_or_a_list_of_paths():
    from adatad.pipeline_adatad import TemporalActionDetectionPipeline

    for bad in (5, None):
        with pytest.raises(TypeError, match=f"a video file path .* or a list of them, got {type(bad).__name__}"):
            TemporalActionDetectionPipeline.__call__(object.__new__(TemporalActionDetectionPipeline), bad)


def test_subtitle_cues_keep_a_label_on_one_line():
    from adatad.detect import to_subtitles

    detections = [{"label": "jump\n\n99\n00:00:00,000 --> 00:09:00,000\nfake", "score": 0.9, "segment": [1.0, 2.0]}]
    for fmt in ("srt", "vtt"):
        text = to_subtitles(detections, fmt)
        assert text.count("-->") == 1  # the cue's own timing line only
        assert "jump 99 00:00:00,000 -> 00:09:00,000 fake (0.90)" in text
        assert text.rstrip("\n").split("\n\n")[-1].count("\n") == (2 if fmt == "srt" else 1)


DETECT_CASES = {
    "meta device": (["--device", "meta"], "--device 'meta' is a 'meta' device, which cannot run a model"),
    "unknown device": (["--device", "gpu0"], "--device 'gpu0' is not a torch device name"),
    "plot not png": (["--plot", "{tmp}/x.json"], "--plot '{tmp}/x.json' must end in .png"),
}


@pytest.mark.parametrize("case", list(DETECT_CASES))
def test_adatad_detect_refuses_bad_flags_before_loading_the_model(case, tests_dir, tmp_path, capsys):
    from adatad.detect import main as detect_main

    flags, fragment = DETECT_CASES[case]
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    with pytest.raises(SystemExit) as exit_status:
        detect_main([str(tests_dir / "data" / "videos" / "demo.mp4"), "--model", str(tmp_path / "no-model"),
                     "--output", str(tmp_path / "out.json"), *flags])
    assert exit_status.value.code == 2
    assert fragment.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "x.json").exists()


# ----------------------------------------------------------------------------------------------------------------------
# training/run_tad.py: checkpoints, trainer state, output folder, preset values
# ----------------------------------------------------------------------------------------------------------------------


def _run_tad():
    import sys

    from conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "training"))
    import run_tad

    return run_tad


TRAINER_STATE_CASES = {
    "global_step 1e30": ({"global_step": 1e30}, "`global_step` must be an integer >= 0, got 1e+30"),
    "negative skipped": ({"skipped_steps": -1}, "`skipped_steps` must be an integer >= 0, got -1"),
    "step of another folder": ({"global_step": 7}, "`global_step` is 7 in the folder of step 1"),
    "more skipped than steps": ({"skipped_steps": 5}, "consecutive <= skipped <= global_step"),
    "best mAP 3": ({"best_average_mAP": 3}, "`best_average_mAP` must be null or in [0, 1], got 3"),
    "unknown key": ({"epoch": 3}, "is not a trainer state written by run_tad.py"),
    "text step": ({"global_step": "1"}, "`global_step` must be an integer >= 0, got '1'"),
}


@pytest.fixture(scope="module")
def tiny_checkpoint_run(tmp_path_factory):
    from adatad.synthetic import generate_synthetic_dataset
    from tiny_run_overrides import TINY_RUN_OVERRIDES

    run_tad = _run_tad()
    root = tmp_path_factory.mktemp("tiny_run")
    generate_synthetic_dataset(root / "data", num_train_videos=4, num_val_videos=2, num_frames=48, frame_size=32,
                               seed=3)
    overrides = [*TINY_RUN_OVERRIDES, "data.window_size=32", "training.max_epoch=4", "training.end_epoch=4",
                 "training.val_start_epoch=100", "training.global_batch_size=2", "model.adapter_layer_indices=[0,1]"]
    argv = ["--preset", "synthetic-tiny", "--data_dir", str(root / "data"), "--output_dir", str(root / "run"),
            "--max_train_steps", "1", "--checkpointing_steps", "1", "--set", *overrides]
    run_tad.training_function(run_tad.parse_args(argv))
    return root, argv


def _resume(run_tad, argv, output_dir):
    argv = list(argv)
    argv[argv.index("--output_dir") + 1] = str(output_dir)
    argv[argv.index("--max_train_steps") + 1] = "2"
    flags = argv.index("--set")
    return run_tad.main([*argv[:flags], "--resume_from_checkpoint", "latest", *argv[flags:]])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRAINER_STATE_CASES))
def test_tampered_trainer_state_is_refused_by_field(case, tiny_checkpoint_run, tmp_path):
    run_tad = _run_tad()
    import tad_checkpoints

    root, _ = tiny_checkpoint_run
    checkpoint = tmp_path / "step_1"
    shutil.copytree(root / "run" / "checkpoints" / "step_1", checkpoint)
    state_file = checkpoint / "trainer_state.json"
    change, fragment = TRAINER_STATE_CASES[case]
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), **change}))
    with pytest.raises(run_tad.RunError) as error:
        tad_checkpoints.read_trainer_state(checkpoint)
    assert fragment in str(error.value)


@pytest.mark.slow
def test_resume_refuses_a_broken_checkpoint_with_one_line(tiny_checkpoint_run, tmp_path, capsys):
    run_tad = _run_tad()
    root, argv = tiny_checkpoint_run
    cases = {
        "global_step": ("trainer_state.json", lambda path: path.write_text(
            json.dumps({**json.loads(path.read_text()), "global_step": 1e30}))),
        "weights": ("model.safetensors", lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])),
        "random states": ("random_states_0.pkl", lambda path: path.write_bytes(b"not a torch file")),
    }
    fragments = {
        "global_step": "`global_step` must be an integer >= 0, got 1e+30",
        "weights": "cannot be loaded (",
        "random states": "random_states_0.pkl is not the random-state file accelerate writes",
    }
    for name, (file_name, damage) in cases.items():
        output_dir = tmp_path / name.replace(" ", "_")
        shutil.copytree(root / "run", output_dir)
        damage(output_dir / "checkpoints" / "step_1" / file_name)
        before = sorted(p.name for p in output_dir.iterdir())
        assert _resume(run_tad, argv, output_dir) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and fragments[name] in err[-1], (name, err[-3:])
        assert "weights_only=False" not in "\n".join(err)
        assert sorted(p.name for p in output_dir.iterdir()) == before


@pytest.mark.slow
def test_overwrite_output_dir_keeps_the_earlier_run_when_the_data_check_fails(tiny_checkpoint_run, tmp_path, capsys):
    run_tad = _run_tad()
    root, argv = tiny_checkpoint_run
    output_dir = tmp_path / "earlier"
    shutil.copytree(root / "run", output_dir)
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    annotation = next(data.glob("*.json"))
    broken = json.loads(annotation.read_text())
    first = next(iter(broken["database"].values()))
    first["annotations"][0]["segment"] = [5.0, 1.0]  # inverted: the data check refuses it
    annotation.write_text(json.dumps(broken))
    argv = list(argv)
    argv[argv.index("--output_dir") + 1] = str(output_dir)
    argv[argv.index("--data_dir") + 1] = str(data)
    before = {p.relative_to(output_dir): p.read_bytes() for p in output_dir.rglob("*") if p.is_file()}
    assert run_tad.main([*argv[:argv.index("--set")], "--overwrite_output_dir", *argv[argv.index("--set"):]]) == 2
    assert "the data has errors" in capsys.readouterr().err
    assert {p.relative_to(output_dir): p.read_bytes() for p in output_dir.rglob("*") if p.is_file()} == before


def test_negative_num_labels_is_reported_as_given(capsys, tmp_path):
    run_tad = _run_tad()
    argv = ["--preset", "synthetic-tiny", "--output_dir", str(tmp_path / "run"), "--data_dir", str(tmp_path / "data"),
            "--set", "model.num_labels=-3"]
    assert run_tad.main(argv) == 2
    assert "`num_labels` must be at least 1, got -3." in capsys.readouterr().err


def test_weights_of_another_class_count_are_refused_by_name_before_loading(tests_dir, tmp_path, capsys):
    from test_pipeline import save_tiny_model

    from adatad import AdaTADConfig
    from adatad.detect import main as detect_main

    folder = save_tiny_model(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    num_labels = len(config["id2label"])
    config["id2label"] = {str(i): f"class {i}" for i in range(num_labels + 2)}
    config["label2id"] = {f"class {i}": i for i in range(num_labels + 2)}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_status:
        detect_main([str(tests_dir / "data" / "videos" / "demo.mp4"), "--model", str(folder),
                     "--output", str(tmp_path / "out.json"), "--device", "cpu", "--no-progress"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert f"detector.head.classification_head.bias ({num_labels},) in model.safetensors vs ({num_labels + 2},)" in err
    assert "ignore_mismatched_sizes" not in err and "Traceback" not in err
    # the loader every entry point uses (run_tad.py --model / --pretrained_model too) refuses it before from_pretrained
    from adatad import AdaTADForTemporalDetection
    from adatad.model_loading import MissingWeightsError, load_complete_model

    with pytest.raises(MissingWeightsError, match=r"2 weight tensor\(s\) in .* do not fit the model's configuration"):
        load_complete_model(AdaTADForTemporalDetection, folder)
    with pytest.raises(MissingWeightsError, match=r"do not fit"):
        load_complete_model(AdaTADForTemporalDetection, folder, config=AdaTADConfig.from_pretrained(folder))


# ----------------------------------------------------------------------------------------------------------------------
# Annotation files
# ----------------------------------------------------------------------------------------------------------------------


def _thumos_txt_folder(tmp_path, tests_dir, change):
    folder = tmp_path / "annotations_val"
    shutil.copytree(tests_dir / "data" / "annotations" / "thumos14" / "annotations_val", folder)
    path = folder / "BaseballPitch_val.txt"
    path.write_bytes(change(path.read_bytes()))
    return folder


def test_thumos_txt_that_is_not_utf8_is_named_with_its_line(tmp_path, tests_dir):
    from adatad.annotations import AnnotationError, load_thumos14_txt

    folder = _thumos_txt_folder(tmp_path, tests_dir, lambda data: data.replace(b"\n", b"\nvideo_\xff 1 2\n", 1))
    with pytest.raises(AnnotationError, match=r"BaseballPitch_val\.txt: line 2 is not UTF-8 text \(byte 0xff\)"):
        load_thumos14_txt(folder)


@pytest.mark.parametrize("video_id", ["../../etc/passwd", "/abs/video", "a/../../b", "..\\\\x"])
def test_video_ids_that_leave_the_video_folder_are_refused(tmp_path, tests_dir, video_id):
    from adatad.annotations import AnnotationError, load_thumos14_txt

    folder = _thumos_txt_folder(tmp_path, tests_dir, lambda data: data + f"{video_id} 1.0 2.0\n".encode())
    with pytest.raises(AnnotationError, match="may not be an absolute path or contain '..'"):
        load_thumos14_txt(folder)
    dataset = load_thumos14_txt(folder, on_error="skip")
    assert video_id not in dataset["video_id"] and len(dataset) > 0


NFD_JUMP = "Sauté".replace("é", "e\u0301")
CONVERTER_CASES = {
    "1e308 duration": ("big.csv", "video,start,end,label,duration,fps,subset\na.mp4,1,2,jump,1e308,30,training\n"
                       "b.mp4,1,2,jump,5,30,validation\n", "`duration` must be a positive number of seconds/frames "
                       "up to 1e+09, got '1e308'"),
    "repeated CSV column": ("rows.csv", "video,start,end,label,start\na.mp4,1,2,jump,3\n",
                            "column(s) ['start'] appear more than once in the header"),
    "JSONL key twice": ("rows.jsonl", '{"video": "a.mp4", "start": 1, "end": 2, "label": "jump", "label": "run"}\n',
                        "line 1: key 'label' appears more than once in one JSON object"),
    "label with a line break": ("rows.jsonl", '{"video": "a.mp4", "start": 1, "end": 2, "label": "jump\\n\\n2"}\n',
                                "label 'jump\\n\\n2' holds a line break or another control character"),
    "NFC and NFD label": ("rows.jsonl", json.dumps({"video": "a.mp4", "start": 1, "end": 2, "label": "Sauté"}) + "\n"
                          + json.dumps({"video": "b.mp4", "start": 1, "end": 2, "label": NFD_JUMP}) + "\n",
                          "label 'Sauté' is written in 2 Unicode forms"),
}


@pytest.mark.parametrize("case", list(CONVERTER_CASES))
def test_adatad_convert_annotations_refuses_with_the_row(case, tmp_path, capsys):
    from adatad.custom_data.cli import convert_main

    name, text, fragment = CONVERTER_CASES[case]
    (tmp_path / name).write_text(text, encoding="utf8")
    assert convert_main([str(tmp_path / name), "--output-dir", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert fragment in captured.out + captured.err
    assert not (tmp_path / "out").exists()


def test_adatad_suggest_preset_refuses_a_zero_window(tmp_path, capsys):
    from adatad.custom_data.cli import suggest_main

    with pytest.raises(SystemExit) as exit_status:
        suggest_main([str(tmp_path / "annotations.json"), "--video-dir", str(tmp_path), "--backbone",
                      "videomae-s", "--output", str(tmp_path / "p.json"), "--max-window-size", "0"])
    assert exit_status.value.code == 2
    assert "--max-window-size: must be an integer >= 1, got '0'" in capsys.readouterr().err


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_a_refused_pickle_never_gets_the_weights_only_false_advice(tests_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file
    from test_pipeline import save_tiny_model

    from adatad.detect import main as detect_main

    folder = save_tiny_model(tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**weights, "extra": _RunsCode()}, folder / "pytorch_model.bin")
    with pytest.raises(SystemExit) as exit_status:
        detect_main([str(tests_dir / "data" / "videos" / "demo.mp4"), "--model", str(folder),
                     "--output", str(tmp_path / "out.json"), "--device", "cpu", "--no-progress"])
    assert exit_status.value.code == 2
    captured = capsys.readouterr()
    assert "is a pickle holding more than tensors" in captured.err
    assert "weights_only=False" not in captured.err and "this pickle ran code" not in captured.out


@pytest.mark.parametrize("name", ["annotations.json", "rows.jsonl"])
def test_deeply_nested_annotation_json_is_one_error(tmp_path, name):
    from adatad.custom_data import CustomDataError, read_annotations
    from adatad.annotations import AnnotationError, load_database_json

    path = tmp_path / name
    path.write_text("[" * 100000 + "]" * 100000 + "\n")
    with pytest.raises(CustomDataError, match="nest"):
        read_annotations(path)
    if name.endswith(".json"):
        with pytest.raises(AnnotationError, match="nested too deeply"):
            load_database_json(path)
