"""Your own dataset: reading CSV / JSONL / ActivityNet JSON / folders, conversion with video probing, the validator's
problems, bad input, suggested settings, the custom preset, and the docs walk-through run command by command."""

import configparser
import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from adatad import annotations as annotation_tables
from adatad.custom_data import (
    CustomDataError,
    DataValidationError,
    build_custom_preset,
    check_training_data,
    convert_annotations,
    read_annotations,
    suggest_settings,
    validate_annotations,
)
from adatad.custom_data import validation as custom_data_validation
from adatad.custom_data.cli import convert_main, suggest_main, validate_main
from adatad.custom_data.conversion import write_atomic
from adatad.custom_data.preset_suggestion import MIN_BACKBONE_FPS
from adatad.custom_data.records import PROBLEMS
from adatad import presets
from adatad.synthetic import generate_synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "custom-dataset.md"


def write_csv(path, rows, header=("video", "start", "end", "label", "subset")):
    with open(path, "w", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


GOOD_ROWS = [
    ("a.mp4", 1.0, 2.5, "run", "training", 10, 8.0),
    ("a.mp4", 4.0, 6.0, "jump", "training", 10, 8.0),
    ("b.mp4", 0.5, 3.0, "jump", "training", 10, 6.0),
    ("c.mp4", 2.0, 4.0, "run", "validation", 10, 5.0),
    ("c.mp4", 0.0, 1.0, "jump", "validation", 10, 5.0),
]
GOOD_HEADER = ("video", "start", "end", "label", "subset", "fps", "duration")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five synthetic clips (3 training, 2 validation, 32 frames at 10 fps) and their answer key as a CSV."""
    root = tmp_path_factory.mktemp("clips")
    generate_synthetic_dataset(root, num_train_videos=3, num_val_videos=2, num_frames=32, frame_size=32,
                               max_action_frames=12, seed=5, class_names=("moving_left", "moving_right"))
    database = json.loads((root / "annotations.json").read_text())["database"]
    rows = [(vid + ".mp4", *a["segment"], a["label"], info["subset"])
            for vid, info in database.items() for a in info["annotations"]]
    write_csv(root / "videos" / "labels.csv", rows)
    return root, database


def copy_videos(clips, target):
    root, _ = clips
    shutil.copytree(root / "videos", target)
    return target


# ------------------------------------------------------------------------------------------------
# Reading and converting
# ------------------------------------------------------------------------------------------------


def test_csv_without_videos_converts_to_the_loader_layout(tmp_path):
    source = write_csv(tmp_path / "labels.csv", GOOD_ROWS, GOOD_HEADER)
    written, report = convert_annotations(source, tmp_path / "out")
    assert report.ok, report.summary()
    assert written["annotation_file"] == tmp_path / "out" / "annotations.json"
    assert (tmp_path / "out" / "category_idx.txt").read_text() == "jump\nrun\n"
    rows = annotation_tables.load_database_json(written["annotation_file"], class_map=written["class_map_file"])
    by_id = {row["video_id"]: row for row in rows}
    assert sorted(by_id) == ["a", "b", "c"]
    assert by_id["a"]["segments"] == [[1.0, 2.5], [4.0, 6.0]] and by_id["a"]["labels"] == [1, 0]
    assert by_id["a"]["duration"] == 8.0 and by_id["a"]["fps"] == 10 and by_id["a"]["num_frames"] == 80
    assert by_id["c"]["subset"] == "validation"


def test_jsonl_and_activitynet_json_give_the_same_output_as_csv(tmp_path):
    write_csv(tmp_path / "labels.csv", GOOD_ROWS, GOOD_HEADER)
    with open(tmp_path / "labels.jsonl", "w") as f:
        for row in GOOD_ROWS:
            f.write(json.dumps(dict(zip(GOOD_HEADER, row))) + "\n")
    convert_annotations(tmp_path / "labels.csv", tmp_path / "from_csv")
    convert_annotations(tmp_path / "labels.jsonl", tmp_path / "from_jsonl")
    # the converter's own output is ActivityNet-style JSON: converting it again changes nothing
    convert_annotations(tmp_path / "from_csv" / "annotations.json", tmp_path / "from_json")
    expected = (tmp_path / "from_csv" / "annotations.json").read_text()
    assert (tmp_path / "from_jsonl" / "annotations.json").read_text() == expected
    assert (tmp_path / "from_json" / "annotations.json").read_text() == expected


def test_folder_of_videos_fills_timing_by_probing(clips, tmp_path):
    root, database = clips
    written, report = convert_annotations(root / "videos", tmp_path / "out")
    assert report.ok, report.summary()
    converted = json.loads(written["annotation_file"].read_text())["database"]
    assert sorted(converted) == sorted(database)
    for video_id, info in database.items():
        assert converted[video_id]["frame"] == 32 and converted[video_id]["fps"] == pytest.approx(10.0)
        assert converted[video_id]["duration"] == pytest.approx(3.2)
        assert [a["segment"] for a in converted[video_id]["annotations"]] == [a["segment"] for a in info["annotations"]]


def test_stated_duration_that_disagrees_with_the_video_is_a_warning(clips, tmp_path):
    videos = copy_videos(clips, tmp_path / "videos")
    rows = list(csv.reader(open(videos / "labels.csv")))
    header, body = rows[0] + ["duration"], [row + ["9.5"] for row in rows[1:]]
    write_csv(videos / "labels.csv", body, header)
    report = validate_annotations(videos)
    assert report.warnings["timing_mismatch"] == 5 and report.ok
    assert "decodes to 3.200 s" in report.examples["timing_mismatch"][0]


# ------------------------------------------------------------------------------------------------
# The validator: one test per problem kind
# ------------------------------------------------------------------------------------------------


def report_for(tmp_path, rows, header=GOOD_HEADER, **kwargs):
    return validate_annotations(write_csv(tmp_path / "labels.csv", rows, header), **kwargs)


@pytest.mark.parametrize(
    "rows, kind",
    [
        ([("a", 3.0, 2.0, "run", "training", 10, 8)], "inverted_segment"),
        ([("a", 2.0, 2.0, "run", "training", 10, 8)], "zero_length_segment"),
        ([("a", 7.0, 8.5, "run", "training", 10, 8)], "outside_video"),
        ([("a", -0.5, 1.0, "run", "training", 10, 8)], "outside_video"),
        ([("a", "x", 1.0, "run", "training", 10, 8)], "bad_row"),
        ([("a", 1.0, 2.0, "", "training", 10, 8)], "bad_row"),
        ([("../a", 1.0, 2.0, "run", "training", 10, 8)], "unsafe_video_id"),
        ([("a", 1.0, 2.0, "run", "validation", 10, 8)], "duplicate_video_id"),  # one video in two subsets
        ([("a", 1.0, 2.0, "run", "training", 25, 8)], "duplicate_video_id"),  # two frame rates
        ([("c", "", "", "", "test", 10, 5)], "subset_without_ground_truth"),
        ([("c", 1.0, 2.0, "swim", "validation", 10, 5)], "label_missing_from_training"),
    ],
)
def test_each_error_is_counted_with_its_row(tmp_path, rows, kind):
    base = [("a", 1.0, 2.0, "run", "training", 10, 8), ("b", 1.0, 2.0, "run", "validation", 10, 8)]
    report = report_for(tmp_path, base + rows)
    assert report.errors[kind] >= 1 and not report.ok, report.summary()
    assert "labels.csv line 4" in report.examples[kind][0] or kind in ("subset_without_ground_truth",
                                                                       "label_missing_from_training")
    assert set(report.errors) == {kind}, report.summary()


def test_class_map_mismatch_and_unused_classes(tmp_path):
    (tmp_path / "classes.txt").write_text("run\nswim\n")
    report = report_for(tmp_path, GOOD_ROWS, class_map=tmp_path / "classes.txt")
    assert report.errors["unknown_label"] == 3  # every "jump" segment
    assert report.warnings["unused_class"] == 1 and "swim" in report.examples["unused_class"][0]


def test_warnings_are_counted_and_printed_but_do_not_fail(tmp_path, capsys):
    rows = GOOD_ROWS + [("a.mp4", 1.0, 2.5, "run", "training", 10, 8.0), ("d.mp4", "", "", "", "validation", 10, 5),
                        ("e.mp4", 1.0, 2.0, "walk", "training", 10, 5)]
    source = write_csv(tmp_path / "labels.csv", rows, GOOD_HEADER)
    assert validate_main([str(source)]) == 0
    out = capsys.readouterr().out
    for kind in ("duplicate_segment", "video_without_segments", "label_missing_from_subset"):
        assert re.search(rf"{kind} \(1\)", out), out
    assert "3 warnings" in out and "VALID" in out


def test_missing_and_undecodable_videos_are_errors_naming_the_file(clips, tmp_path, capsys):
    videos = copy_videos(clips, tmp_path / "videos")
    (videos / "synthetic_training_0000.mp4").unlink()
    (videos / "synthetic_training_0001.mp4").write_bytes(b"")
    (videos / "synthetic_training_0002.mp4").write_text("this is a text file, not a video")
    good = (videos / "synthetic_validation_0000.mp4").read_bytes()
    (videos / "synthetic_validation_0001.mp4").write_bytes(good[: len(good) // 2])
    assert validate_main([str(videos / "labels.csv"), "--video-dir", str(videos)]) == 1
    out = capsys.readouterr().out
    assert "missing_video (1)" in out and "no file synthetic_training_0000.mp4" in out
    assert "undecodable_video (3)" in out
    assert "synthetic_training_0001.mp4" in out and "empty" in out
    assert "synthetic_training_0002.mp4" in out and "not a video" in out
    assert "synthetic_validation_0001.mp4" in out
    # only existence is checked without decoding
    report = validate_annotations(videos / "labels.csv", video_dir=videos, decode_videos=False)
    assert report.errors == {"missing_video": 1}


def test_duplicate_keys_in_json_and_two_files_with_one_id(clips, tmp_path):
    (tmp_path / "dup.json").write_text('{"database": {"a": {"subset": "training", "annotations": []}, '
                                       '"a": {"subset": "validation", "annotations": []}}}')
    with pytest.raises(CustomDataError, match=r"dup.json.*key 'a' appears more than once"):
        validate_annotations(tmp_path / "dup.json")
    videos = copy_videos(clips, tmp_path / "videos")
    shutil.copy(videos / "synthetic_training_0000.mp4", videos / "synthetic_training_0000.mkv")
    rows = [("synthetic_training_0000", 0.1, 0.5, "moving_left", "training")]
    write_csv(videos / "labels.csv", rows)
    report = validate_annotations(videos, decode_videos=False)
    assert report.errors["duplicate_video_id"] == 1
    assert "synthetic_training_0000.mkv" in report.examples["duplicate_video_id"][0]
    assert report.warnings["unannotated_video_file"] == 4


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def test_csv_with_wrong_columns_names_the_file_and_the_columns(tmp_path, capsys):
    source = write_csv(tmp_path / "labels.csv", [("a", 1, 2, "run")], header=("clip", "t0", "t1", "action"))
    assert validate_main([str(source)]) == 1
    err = capsys.readouterr().err
    assert str(source) in err and "missing column(s) ['video', 'start', 'end', 'label']" in err
    (tmp_path / "semi.csv").write_text("video;start;end;label\na;1;2;run\n")
    assert convert_main([str(tmp_path / "semi.csv"), "--output-dir", str(tmp_path / "out")]) == 1
    assert "separated by ';'" in capsys.readouterr().err and not (tmp_path / "out").exists()
    (tmp_path / "extra.csv").write_text("video,start,end,label,camera\na,1,2,run,left\n")
    with pytest.raises(CustomDataError, match=r"extra.csv: unknown column\(s\) \['camera'\]"):
        read_annotations(tmp_path / "extra.csv")


def test_non_utf8_bytes_name_the_file_and_line(tmp_path, capsys):
    source = tmp_path / "labels.csv"
    source.write_bytes("video,start,end,label\na,1,2,run\nb,1,2,caf\xe9\n".encode("latin-1"))
    assert validate_main([str(source)]) == 1
    err = capsys.readouterr().err
    assert f"{source}: line 3 is not valid UTF-8" in err
    # a byte-order mark (spreadsheet "CSV UTF-8") is fine
    source.write_bytes("\ufeffvideo,start,end,label\na,1,2,caf\xe9\n".encode("utf-8"))
    assert read_annotations(source).videos["a"].segments[0].label == "caf\xe9"


def test_video_id_with_dotdot_is_rejected_and_never_looked_up(tmp_path):
    (tmp_path / "secret.mp4").write_bytes(b"not for you")
    videos = tmp_path / "videos"
    videos.mkdir()
    source = write_csv(tmp_path / "labels.csv", [("../secret.mp4", 1, 2, "run", "training"),
                                                 ("..\\secret", 1, 2, "run", "training")])
    report = validate_annotations(source, video_dir=videos)
    assert report.errors["unsafe_video_id"] == 2
    assert "labels.csv line 2: video id '../secret' is not a plain file name" in report.examples["unsafe_video_id"][0]
    assert "missing_video" not in report.errors and "undecodable_video" not in report.errors


def test_folder_with_broken_videos_fails_or_skips_them_on_request(clips, tmp_path, capsys):
    videos = copy_videos(clips, tmp_path / "videos")
    (videos / "synthetic_training_0001.mp4").write_text("not a video")
    output = tmp_path / "out"
    assert convert_main([str(videos), "--output-dir", str(output)]) == 1
    captured = capsys.readouterr()
    assert "undecodable_video (1)" in captured.out and "synthetic_training_0001.mp4" in captured.out
    assert "nothing written" in captured.err and not output.exists()
    assert convert_main([str(videos), "--output-dir", str(output), "--skip-broken-videos"]) == 0
    assert "skipped_broken_video (1)" in capsys.readouterr().out
    written = json.loads((output / "annotations.json").read_text())["database"]
    assert "synthetic_training_0001" not in written and len(written) == 4


def test_output_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    source = write_csv(tmp_path / "labels.csv", GOOD_ROWS, GOOD_HEADER)
    target = tmp_path / "no" / "such" / "folder"
    assert convert_main([str(source), "--output-dir", str(target)]) == 1
    assert f"its parent folder {target.parent} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    with pytest.raises(CustomDataError, match="does not exist"):
        write_atomic(target / "preset.json", "{}")


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "annotations.json"
    target.write_text("old")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new " * 1000)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json"]


def test_interrupted_conversion_writes_nothing(clips, tmp_path, monkeypatch):
    root, _ = clips
    calls = []

    def probe_then_interrupt(path, backend="auto"):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_probe(path, backend)

    real_probe = custom_data_validation.probe_video
    monkeypatch.setattr(custom_data_validation, "probe_video", probe_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert_annotations(root / "videos", tmp_path / "out")
    assert len(calls) == 3
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_dir_equal_to_the_source_folder_never_rewrites_an_input(tmp_path, capsys):
    # An ActivityNet-style annotations.json with a segment past its video's end, converted into its own folder
    # with --clip-segments: the original bounds would be lost.
    database = {"database": {"a": {"subset": "training", "duration": 8.0, "fps": 10,
                                   "annotations": [{"segment": [6.0, 9.5], "label": "run"}]},
                             "b": {"subset": "validation", "duration": 6.0, "fps": 10,
                                   "annotations": [{"segment": [1.0, 2.0], "label": "run"}]}}}
    source = tmp_path / "annotations.json"
    source.write_text(json.dumps(database))
    class_map = tmp_path / "category_idx.txt"
    class_map.write_text("run\nwalk\n")
    before = {path: path.read_bytes() for path in (source, class_map)}
    assert convert_main([str(source), "--output-dir", str(tmp_path), "--clip-segments"]) == 1
    assert "is the source annotation file" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    labels = write_csv(tmp_path / "elsewhere" / "labels.csv", GOOD_ROWS, GOOD_HEADER)
    # The class map given with --class-map, in the output folder under the name the output takes.
    assert convert_main([str(labels), "--output-dir", str(tmp_path), "--class-map", str(class_map)]) == 1
    assert "is the --class-map file" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (source, class_map)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json", "category_idx.txt", "elsewhere"]


def test_suggest_preset_never_writes_over_its_input_or_a_shipped_preset(clips, tmp_path, capsys):
    root, _ = clips
    written, _ = convert_annotations(root / "videos", tmp_path / "data")
    source = written["annotation_file"]
    shipped = Path(str(presets.SHIPPED_PRESETS / "synthetic-tiny.json"))
    before = {path: path.read_bytes() for path in (source, shipped)}
    for output, what in ((source, "annotations"), (shipped, "shipped preset")):
        argv = [str(source), "--video-dir", str(root / "videos"), "--backbone", "videomae-s", "--output", str(output)]
        assert suggest_main(argv) == 1
        assert f"is the {what} file" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (source, shipped)} == before


# ------------------------------------------------------------------------------------------------
# Suggested settings and the custom preset
# ------------------------------------------------------------------------------------------------


def test_suggestions_on_thumos14_match_adatads_thumos_setting(tests_dir):
    annotations = tests_dir / "data" / "annotations" / "thumos14"
    rows = annotation_tables.load_thumos14_txt(annotations / "annotations_val",
                                              video_info_csv=annotations / "val_video_info.csv")
    segments = [end - start for row in rows for start, end in row["segments"] if end > start]
    settings = suggest_settings(segments, rows["duration"], 30.0)
    thumos = presets.load_preset("e2e_thumos_videomae_s_768x1_160_adapter", validate=False)
    assert settings.snippet_stride == thumos["data"]["snippet_stride"] == 4
    assert settings.scale_factor == thumos["data"]["scale_factor"] == 1
    assert settings.window_size == thumos["data"]["window_size"] == 768
    assert settings.max_seq_len == thumos["model"]["max_seq_len"]
    assert settings.fpn_strides == thumos["model"]["fpn_strides"]
    assert settings.fpn_regression_ranges == thumos["model"]["fpn_regression_ranges"]
    assert any("snippet_stride 4" in line for line in settings.reasoning)


@pytest.mark.parametrize(
    "fps, short, long, video", [(10, 1.0, 2.0, 6.4), (30, 0.3, 200.0, 1200.0), (25, 5.0, 40.0, 30.0)]
)
def test_suggestions_satisfy_the_model_constraints(fps, short, long, video):
    segments = [short] * 10 + [long] * 10
    settings = suggest_settings(segments, [video] * 20, fps)
    assert settings.window_size % settings.fpn_strides[-1] == 0
    assert settings.window_size * settings.scale_factor % 16 == 0
    assert settings.snippet_stride % settings.scale_factor == 0
    assert fps * settings.scale_factor / settings.snippet_stride >= MIN_BACKBONE_FPS or (
        settings.scale_factor == settings.snippet_stride)
    # the long segments fit twice in a window
    assert settings.window_size * settings.seconds_per_feature >= 2 * long - 1e-9


def test_custom_preset_validates_and_presets_accept_any_dataset_name(clips, tmp_path):
    root, _ = clips
    written, _ = convert_annotations(root / "videos", tmp_path / "data")
    settings = suggest_settings([1.0, 1.2], [3.2, 3.2], 10.0)
    preset = build_custom_preset(
        settings, backbone="videomae-s", name="my-kitchen", data_root=tmp_path / "data", video_dir=root / "videos",
        video_extension=".mp4", class_names=["moving_left", "moving_right"], train_subset="training",
        test_subset="validation", num_train_videos=3,
    )
    presets.validate_preset(preset)
    assert preset["dataset"] == "my-kitchen" and preset["model"]["num_labels"] == 2
    assert preset["model"]["backbone_config"]["hidden_size"] == 384  # ViT-S
    assert preset["model"]["feature_length"] == settings.window_size
    assert preset["model"]["projection_arch"][2] == len(settings.fpn_strides) - 1
    assert preset["training"]["global_batch_size"] == 2  # THUMOS' batch, fewer than the 3 training videos
    paths = presets.resolve_data_paths(preset)
    assert paths["annotation_file"] == written["annotation_file"].resolve()
    with pytest.raises(presets.PresetError, match="custom dataset"):
        presets.validate_preset({**preset, "paper": {"average_mAP": 1.0, "mAP": {}}})


def test_training_startup_check(clips, tmp_path):
    root, _ = clips
    convert_annotations(root / "videos", tmp_path / "data")
    preset = build_custom_preset(
        suggest_settings([1.0, 1.2], [3.2, 3.2], 10.0), backbone="tiny", name="clips", data_root=tmp_path / "data",
        video_dir=root / "videos", video_extension=".mp4", class_names=["moving_left", "moving_right"],
        train_subset="training", test_subset="validation", num_train_videos=3,
    )
    paths = presets.resolve_data_paths(preset)
    report = check_training_data(preset, paths, decode_videos=True)
    assert report.ok and report.videos_per_subset == {"training": 3, "validation": 2}
    with pytest.raises(DataValidationError, match="num_labels_mismatch") as error:
        check_training_data({**preset, "model": {**preset["model"], "num_labels": 5}}, paths)
    assert error.value.report.errors == {"num_labels_mismatch": 1}
    with pytest.raises(DataValidationError, match="missing_video"):
        check_training_data({**preset, "data": {**preset["data"], "video_extension": ".mkv"}}, paths)
    with pytest.raises(DataValidationError, match="the evaluation subset 'test'"):
        check_training_data({**preset, "data": {**preset["data"], "test_subset": "test"}}, paths)
    # OpenTAD's annotation files state `frame` and `duration` but no fps: fps = frame / duration, as the loader does
    database = json.loads(paths["annotation_file"].read_text())
    for video in database["database"].values():
        del video["fps"]
    paths["annotation_file"].write_text(json.dumps(database))
    assert check_training_data(preset, paths).ok
    # segments past the video end: errors for custom data, warnings for benchmark files that contain them
    database = json.loads(paths["annotation_file"].read_text())
    first = next(iter(database["database"].values()))
    first["annotations"][0]["segment"][1] = first["duration"] + 5
    paths["annotation_file"].write_text(json.dumps(database))
    with pytest.raises(DataValidationError, match="outside_video"):
        check_training_data(preset, paths)
    assert check_training_data(preset, paths, segment_problems="warning").warnings["outside_video"] == 1


# ------------------------------------------------------------------------------------------------
# Docs and command lines
# ------------------------------------------------------------------------------------------------


def test_every_problem_kind_is_documented():
    text = DOC.read_text()
    for kind, (severity, _) in PROBLEMS.items():
        assert f"| `{kind}` |" in text, kind


def test_report_example_in_the_docs_is_what_the_validator_prints(tmp_path, capsys, monkeypatch):
    text = DOC.read_text()
    example = text[text.index("For this\n`labels.csv`:"):]
    blocks = re.findall(r"```text\n(.*?)```", example, re.S)
    (tmp_path / "labels.csv").write_text(blocks[0])
    monkeypatch.chdir(tmp_path)
    assert validate_main(["labels.csv"]) == 1
    assert capsys.readouterr().out == blocks[1]


def console_scripts():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    entries = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.split(" = ") for line in (entry.strip() for entry in entries))


def test_entry_points_are_declared():
    scripts = console_scripts()
    assert scripts["adatad-convert-annotations"] == "adatad.custom_data.cli:convert_main"
    assert scripts["adatad-validate-data"] == "adatad.custom_data.cli:validate_main"
    assert scripts["adatad-suggest-preset"] == "adatad.custom_data.cli:suggest_main"


def walkthrough_commands():
    text = DOC.read_text()
    section = text[text.index("<!-- walkthrough:start -->"):text.index("<!-- walkthrough:end -->")]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_single_subset_and_unreadable_class_map(tmp_path, capsys):
    rows = [row for row in GOOD_ROWS if row[4] == "training"]
    report = report_for(tmp_path, rows)
    assert report.ok and report.warnings["no_evaluation_subset"] == 1
    (tmp_path / "classes.txt").write_bytes("run\njump\ncaf\xe9\n".encode("latin-1"))
    source = tmp_path / "labels.csv"
    assert validate_main([str(source), "--class-map", str(tmp_path / "classes.txt")]) == 1
    assert "classes.txt: line 3 is not valid UTF-8" in capsys.readouterr().err


def test_startup_check_passes_on_the_shipped_synthetic_preset(clips):
    root, _ = clips
    preset = presets.apply_overrides(presets.load_preset("synthetic-tiny"), [f"data.root={root}", "model.num_labels=2"])
    report = check_training_data(preset, presets.resolve_data_paths(preset), decode_videos=True)
    assert report.ok and sum(report.segments_per_subset.values()) > 0


def test_clip_segments_on_request(tmp_path):
    rows = GOOD_ROWS + [("a.mp4", 7.5, 8.3, "run", "training", 10, 8.0),
                        ("c.mp4", 6.0, 7.0, "run", "validation", 10, 5)]
    source = write_csv(tmp_path / "labels.csv", rows, GOOD_HEADER)
    written, report = convert_annotations(source, tmp_path / "out")
    assert written is None and report.errors == {"outside_video": 2}
    written, report = convert_annotations(source, tmp_path / "out", clip_segments=True)
    # the segment entirely after the end of video c cannot be clipped
    assert written is None and report.errors == {"outside_video": 1} and report.warnings["clipped_segment"] == 1
    source = write_csv(tmp_path / "labels.csv", rows[:-1], GOOD_HEADER)
    written, report = convert_annotations(source, tmp_path / "out", clip_segments=True)
    assert report.ok and report.warnings["clipped_segment"] == 1
    database = json.loads(written["annotation_file"].read_text())["database"]
    assert [7.5, 8.0] in [a["segment"] for a in database["a"]["annotations"]]


def test_format_examples_in_the_docs_read_back_alike(tmp_path):
    text = DOC.read_text()
    schema = text[text.index("## The annotation schema"):text.index("## Walk-through")]
    csv_text, jsonl_text, json_text = re.findall(r"```text\n(.*?)```", schema, re.S)
    for name, content in (("labels.csv", csv_text), ("labels.jsonl", jsonl_text), ("labels.json", json_text)):
        (tmp_path / name).write_text(content)
    from_csv = read_annotations(tmp_path / "labels.csv").videos
    from_jsonl = read_annotations(tmp_path / "labels.jsonl").videos
    from_json = read_annotations(tmp_path / "labels.json").videos
    expected = [(3.2, 7.9, "pour"), (12.0, 15.5, "stir")]
    assert [(s.start, s.end, s.label) for s in from_csv["kitchen_01"].segments] == expected
    assert [(s.start, s.end, s.label) for s in from_json["kitchen_01"].segments] == expected
    assert from_jsonl["kitchen_01"].segments[0].label == "pour" and from_csv["kitchen_02"].subset == "validation"
    assert from_json["kitchen_01"].num_frames == 1800
