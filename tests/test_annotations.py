"""Tests for `adatad.annotations`: every real annotation file in tests/data, small files in the formats
that are not available here, validation flags and sliding windows (grid conversion: test_time_grid.py)."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from adatad.annotations import (
    THUMOS14_DETECTION_CLASSES,
    AnnotationError,
    AnnotationOptions,
    annotation_features,
    class_names_of,
    expand_sliding_windows,
    load_activitynet_bsn,
    load_charades_csv,
    load_charades_json,
    load_database_json,
    load_ego4d_moment_queries,
    load_epic_kitchens_100,
    load_multithumos_json,
    load_thumos14_csv,
    load_thumos14_txt,
    read_class_names,
    resolve_video_paths,
    split_by_subset,
    to_database_json,
)
from adatad.time_grid import grid_to_seconds


@pytest.fixture(scope="module")
def annotations_dir(tests_dir):
    return tests_dir / "data" / "annotations"


def segment_multiset(dataset, video_id=None):
    """{video_id: Counter((start, end, label_name))} of a video-row dataset."""
    names = class_names_of(dataset)
    result = {}
    for row in dataset:
        result[row["video_id"]] = Counter(
            (round(s, 6), round(e, 6), names[label]) for (s, e), label in zip(row["segments"], row["labels"])
        )
    return result if video_id is None else result[video_id]


@pytest.mark.slow
def test_import_does_not_pull_torch():
    code = "import sys, adatad.annotations; assert 'torch' not in sys.modules, 'adatad.annotations imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Real files: ActivityNet (BSN layout)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anet(annotations_dir):
    folder = annotations_dir / "activitynet"
    return load_activitynet_bsn(
        folder / "anet_anno_action.json", folder / "video_info_new.csv", class_map=folder / "action_name.txt",
        output_report=True,
    )


@pytest.mark.slow
def test_activitynet_bsn_counts_and_quirks(anet, annotations_dir):
    dataset, report = anet
    assert len(dataset) == 19228
    assert Counter(dataset["subset"]) == {"training": 9649, "validation": 4728, "testing": 4851}
    assert len(class_names_of(dataset)) == 200 and "Mooping floor" in class_names_of(dataset)
    # ids are YouTube ids (one "v_" stripped), like the official database JSON; two real YouTube ids
    # themselves start with "v_" (keys "v_v_UmAH95xls", "v_v_Vg4a8igc0")
    assert {v for v in dataset["video_id"] if v.startswith("v_")} == {"v_UmAH95xls", "v_Vg4a8igc0"}
    first = dataset[0]
    assert first["video_id"] == "QOlSCBRmfWY" and first["num_frames"] == 2067 and first["duration"] == 82.73
    assert first["fps"] == 25.0 and first["segments"] == [[6.195294851794072, 77.73085420904837]]
    assert class_names_of(dataset)[first["labels"][0]] == "Ballet"
    testing = dataset.filter(lambda row: row["subset"] == "testing")
    assert all(len(s) == 0 for s in testing["segments"])
    # real-data quirks are kept and counted, never dropped silently
    assert report.kept["zero_length"] == 12 and report.kept["past_duration"] == 215
    assert report.removed["duplicate"] == 45 and not report.skipped
    zero = {row["video_id"] for row in dataset if row["subset"] == "validation"
            and any(e == s for s, e in row["segments"])}
    assert zero == {"6kgJx6ahgq0", "QhiKgeJV3k0", "e6J_ygZ779A"}


@pytest.mark.slow
def test_activitynet_bsn_validation_instances(annotations_dir):
    folder = annotations_dir / "activitynet"
    validation, report = load_activitynet_bsn(
        folder / "anet_anno_action.json", folder / "video_info_new.csv", subset="validation", deduplicate=False,
        output_report=True,
    )
    assert len(validation) == 4728
    assert sum(len(s) for s in validation["segments"]) == 7293 == report.num_segments
    deduplicated = load_activitynet_bsn(folder / "anet_anno_action.json", folder / "video_info_new.csv",
                                        subset="validation")
    assert sum(len(s) for s in deduplicated["segments"]) == 7293 - 17


@pytest.mark.slow
def test_activitynet_class_name_files_agree(annotations_dir, anet):
    folder = annotations_dir / "activitynet"
    from_txt = read_class_names(folder / "action_name.txt")
    from_csv = read_class_names(folder / "action_name.csv")
    assert from_txt == from_csv and len(from_txt) == 200
    # the file's order is kept (index = line number) even though it is not alphabetical
    # ("Playing ten pins" sits among the B's); without a class map the labels are sorted (OpenTAD)
    assert from_txt[10] == "Playing ten pins" and from_txt != sorted(from_txt)
    assert class_names_of(anet[0]) == from_txt
    folder_default = load_activitynet_bsn(folder / "anet_anno_action.json", folder / "video_info_new.csv",
                                          subset="testing")
    assert class_names_of(folder_default) == sorted(from_txt)


@pytest.mark.slow
def test_activitynet_submission_file_matches_validation(annotations_dir):
    # sample_detection_prediction.json is the validation GT written as predictions (SOURCES.md)
    with open(annotations_dir / "activitynet" / "sample_detection_prediction.json") as f:
        results = json.load(f)["results"]
    assert len(results) == 4926 and sum(len(v) for v in results.values()) == 7654
    validation = load_activitynet_bsn(annotations_dir / "activitynet" / "anet_anno_action.json",
                                      annotations_dir / "activitynet" / "video_info_new.csv",
                                      subset="validation", deduplicate=False)
    names = class_names_of(validation)
    for row in validation:
        expected = Counter((tuple(s), names[l]) for s, l in zip(row["segments"], row["labels"]))
        assert Counter((tuple(p["segment"]), p["label"]) for p in results[row["video_id"]]) == expected


# ---------------------------------------------------------------------------------------------
# Real files: THUMOS-14
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thumos_test(annotations_dir):
    folder = annotations_dir / "thumos14"
    return load_thumos14_txt(
        folder / "annotations_test", class_map=folder / "Class_Index_Detection.txt",
        video_info_csv=folder / "thumos14_test_groundtruth.csv", output_report=True,
    )


def test_thumos_txt_test_counts(thumos_test):
    dataset, report = thumos_test
    assert len(dataset) == 213 and set(dataset["subset"]) == {"test"}
    assert sum(len(s) for s in dataset["segments"]) == 3358
    assert report.removed["ambiguous"] == 99
    assert class_names_of(dataset) == THUMOS14_DETECTION_CLASSES
    empty = [row["video_id"] for row in dataset if not row["segments"]]
    assert empty == ["video_test_0001292"]  # only Ambiguous lines
    row = dataset[dataset["video_id"].index("video_test_0000004")]
    assert row["fps"] == 30.0 and row["num_frames"] > 0 and row["duration"] > 0


def test_thumos_cliffdiving_also_listed_under_diving(thumos_test):
    dataset, _ = thumos_test
    names = class_names_of(dataset)
    checked = 0
    for row in dataset:
        cliff = {tuple(s) for s, l in zip(row["segments"], row["labels"]) if names[l] == "CliffDiving"}
        diving = {tuple(s) for s, l in zip(row["segments"], row["labels"]) if names[l] == "Diving"}
        assert cliff <= diving, row["video_id"]
        checked += len(cliff)
    assert checked > 100


def test_thumos_txt_ambiguous_kept_as_class(annotations_dir):
    dataset = load_thumos14_txt(annotations_dir / "thumos14" / "annotations_test", ambiguous="keep")
    names = class_names_of(dataset)
    assert names[-1] == "Ambiguous" and len(names) == 21 and names[:20] == THUMOS14_DETECTION_CLASSES
    assert sum(len(s) for s in dataset["segments"]) == 3358 + 99
    only_ambiguous = dataset[dataset["video_id"].index("video_test_0001292")]
    assert only_ambiguous["labels"] and {names[l] for l in only_ambiguous["labels"]} == {"Ambiguous"}


def test_thumos_txt_val_counts(annotations_dir):
    folder = annotations_dir / "thumos14"
    dataset, report = load_thumos14_txt(folder / "annotations_val", video_info_csv=folder / "val_video_info.csv",
                                        output_report=True)
    assert len(dataset) == 200 and set(dataset["subset"]) == {"validation"}
    assert sum(len(s) for s in dataset["segments"]) == 3007 and report.removed["ambiguous"] == 89
    assert all(d is not None for d in dataset["duration"]) and all(n > 0 for n in dataset["num_frames"])


@pytest.mark.parametrize(
    "csv_name, txt_folder, info", [
        ("test_Annotation.csv", "annotations_test", "test_video_info.csv"),
        ("val_Annotation.csv", "annotations_val", "val_video_info.csv"),
        ("thumos14_test_groundtruth.csv", "annotations_test", None),
    ],
)
def test_thumos_csv_files_equal_txt_files(annotations_dir, csv_name, txt_folder, info):
    folder = annotations_dir / "thumos14"
    kwargs = {"video_info_csv": folder / info} if info else {}
    from_csv = load_thumos14_csv(folder / csv_name, ambiguous="keep", **kwargs)
    from_txt = load_thumos14_txt(folder / txt_folder, ambiguous="keep")
    assert set(from_csv["subset"]) == set(from_txt["subset"])
    assert segment_multiset(from_csv) == segment_multiset(from_txt)


def test_thumos_video_info_files_agree(annotations_dir):
    folder = annotations_dir / "thumos14"
    afsd = load_thumos14_txt(folder / "annotations_test", video_info_csv=folder / "test_video_info.csv")
    official = load_thumos14_txt(folder / "annotations_test", video_info_csv=folder / "thumos14_test_groundtruth.csv")
    durations = dict(zip(official["video_id"], official["duration"]))
    compared = 0
    for video_id, duration in zip(afsd["video_id"], afsd["duration"]):
        if duration is None:  # test_video_info.csv lacks the Ambiguous-only video
            assert video_id == "video_test_0001292"
            continue
        assert duration == pytest.approx(durations[video_id], abs=0.05)
        compared += 1
    assert compared == 212


def test_thumos_gt_json_string_segments(annotations_dir, thumos_test):
    path = annotations_dir / "thumos14" / "thumos_gt.json"
    dataset, report = load_database_json(path, output_report=True)
    assert len(dataset) == 410 and Counter(dataset["subset"]) == {"test": 210, "train": 200}
    assert sum(len(s) for s in dataset["segments"]) == 6318 and len(class_names_of(dataset)) == 20
    assert report.kept["string_value"] == 2 * 6318  # every start and end is a string in this file
    assert report.kept["no_duration"] == 410 and set(dataset["duration"]) == {None}
    with open(path) as f:
        raw = json.load(f)["database"]["video_test_0000896"]["annotations"][0]
    row = dataset[dataset["video_id"].index("video_test_0000896")]
    assert row["segments"][0] == [float(raw["segment"][0]), float(raw["segment"][1])] == [18.6, 24.8]


# ---------------------------------------------------------------------------------------------
# Real files: EPIC-Kitchens-100, Multi-THUMOS, Charades, Ego4D label map
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, num_classes, used", [("noun", 300, 211), ("verb", 97, 78)])
def test_epic_kitchens_validation(annotations_dir, label, num_classes, used):
    path = annotations_dir / "epic_kitchens_100" / "EPIC_100_validation.csv"
    dataset, report = load_epic_kitchens_100(path, label=label, output_report=True)
    assert len(dataset) == 138 and set(dataset["subset"]) == {"val"}
    assert sum(len(s) for s in dataset["segments"]) == 9668 and report.removed["duplicate"] == 0
    assert len(class_names_of(dataset)) == num_classes
    assert len({l for labels in dataset["labels"] for l in labels}) == used
    row = dataset[dataset["video_id"].index("P01_11")]
    # first CSV row: P01_11_0, 00:00:00.00 -> 00:00:01.89, verb take (0), noun plate (2)
    assert row["segments"][0] == [0.0, 1.89]
    assert class_names_of(dataset)[row["labels"][0]] == {"noun": "plate", "verb": "take"}[label]
    assert row["fps"] == pytest.approx(59.94, abs=0.01) and row["duration"] > 0 and row["num_frames"] is None


def test_epic_timestamps_to_seconds(annotations_dir):
    path = annotations_dir / "epic_kitchens_100" / "EPIC_100_validation.csv"
    dataset = load_epic_kitchens_100(path, label="verb")
    row = dataset[dataset["video_id"].index("P01_11")]
    # P01_11_100: 00:05:27.28 -> 00:05:31.97, verb "wash"
    index = row["segments"].index([327.28, 331.97])
    assert class_names_of(dataset)[row["labels"][index]] == "wash"


@pytest.mark.slow
def test_multithumos(annotations_dir):
    dataset, report = load_multithumos_json(annotations_dir / "multithumos" / "multithumos.json", output_report=True)
    assert len(dataset) == 413 and Counter(dataset["subset"]) == {"training": 200, "testing": 213}
    assert sum(len(s) for s in dataset["segments"]) == 38690
    names = class_names_of(dataset)
    assert len(names) == 65 and names[0] == "class_01" and names[64] == "class_65"
    # ids are 1-based: the first action of video_test_0000896 is [12, 18.6, 24.8] -> index 11
    row = dataset[0]
    assert row["video_id"] == "video_test_0000896" and row["labels"][0] == 11 and names[11] == "class_12"
    assert report.kept["zero_length"] == 7 and report.kept["past_duration"] == 65
    named = load_multithumos_json(annotations_dir / "multithumos" / "multithumos.json",
                                  class_names=[f"action {i}" for i in range(1, 66)])
    assert class_names_of(named)[named[0]["labels"][0]] == "action 12"
    with pytest.raises(AnnotationError, match="65"):
        load_multithumos_json(annotations_dir / "multithumos" / "multithumos.json", class_names=["a", "b"])


@pytest.mark.slow
def test_charades_json(annotations_dir):
    path = annotations_dir / "charades" / "charades.json"
    with pytest.raises(AnnotationError, match=r"charades\.json: video 'AKKWU', field actions\[0\]\.segment: end"):
        load_charades_json(path)
    dataset, report = load_charades_json(path, on_error="skip", output_report=True)
    assert len(dataset) == 9848 and Counter(dataset["subset"]) == {"training": 7985, "testing": 1863}
    assert report.skipped == {"end_before_start": 7}
    assert sum(len(s) for s in dataset["segments"]) == 66500 - 7
    assert len(class_names_of(dataset)) == 157 and class_names_of(dataset)[92] == "c092"
    assert sum(1 for s in dataset["segments"] if not s) == 223
    assert all("end (" in line for line in report.details)


@pytest.mark.slow
def test_charades_csv_equals_json(annotations_dir):
    folder = annotations_dir / "charades"
    from_csv = load_charades_csv(folder / "Charades_v1_test_200.csv")
    assert len(from_csv) == 199 and set(from_csv["subset"]) == {"testing"}
    assert sum(1 for s in from_csv["segments"] if not s) == 8
    from_json = load_charades_json(folder / "charades.json", subset="testing")
    json_rows = {row["video_id"]: row for row in from_json}
    json_segments = segment_multiset(from_json)
    for row, (video_id, segments) in zip(from_csv, segment_multiset(from_csv).items()):
        assert row["duration"] == json_rows[video_id]["duration"]
        assert segments == json_segments[video_id]


def test_ego4d_label_map(annotations_dir):
    names = read_class_names(annotations_dir / "ego4d_mq" / "ego4d_label_map.txt")
    assert len(names) == 110 and len(set(names)) == 110
    assert names[0] == "clean_/_repair_small_equipment_(mower,_trimmer_etc.)"  # id column and quotes removed
    assert not any(name.startswith('"') for name in names)


def test_epic_class_csv(annotations_dir):
    nouns = read_class_names(annotations_dir / "epic_kitchens_100" / "EPIC_100_noun_classes.csv")
    verbs = read_class_names(annotations_dir / "epic_kitchens_100" / "EPIC_100_verb_classes.csv")
    assert len(nouns) == 300 and nouns[:3] == ["tap", "spoon", "plate"]
    assert len(verbs) == 97 and verbs[:2] == ["take", "put"]


def test_anet_eval_fixture_ground_truth(tests_dir):
    path = tests_dir / "fixtures" / "anet_eval_public" / "anet_val" / "ground_truth.json"
    dataset, report = load_database_json(path, subset="validation", deduplicate=False, output_report=True)
    assert len(dataset) == 300 and report.removed == {}
    assert not any(v.startswith("v_") for v in dataset["video_id"]) and all(d > 0 for d in dataset["duration"])


# ---------------------------------------------------------------------------------------------
# Formats written by the tests: ActivityNet official, Ego4D moment queries, OpenTAD JSON
# ---------------------------------------------------------------------------------------------


def write_json(path, content):
    path.write_text(json.dumps(content))
    return path


@pytest.fixture
def activitynet_official(tmp_path):
    # layout of activity_net.v1-3.min.json
    return write_json(tmp_path / "activity_net.v1-3.min.json", {
        "version": "VERSION 1.3",
        "taxonomy": [{"nodeId": 1, "nodeName": "Ballet", "parentId": 0, "parentName": "Dancing"}],
        "database": {
            "QOlSCBRmfWY": {"subset": "training", "duration": 82.73, "resolution": "1920x1080",
                            "url": "https://www.youtube.com/watch?v=QOlSCBRmfWY",
                            "annotations": [{"segment": [6.19, 77.73], "label": "Ballet"}]},
            "sJFgo9H6zNo": {"subset": "validation", "duration": 140.0, "resolution": "640x360", "url": "",
                            "annotations": [{"segment": [0.0, 140.5], "label": "Ballet"},
                                            {"segment": [10.0, 12.0], "label": "Archery"},
                                            {"segment": [10.0, 12.0], "label": "Archery"}]},
            "test_video_1": {"subset": "testing", "duration": 30.0, "resolution": "", "url": "", "annotations": []},
        },
    })


def test_activitynet_official_layout(activitynet_official, tmp_path):
    dataset, report = load_database_json(activitynet_official, output_report=True)
    assert dataset["video_id"] == ["QOlSCBRmfWY", "sJFgo9H6zNo", "test_video_1"]
    assert class_names_of(dataset) == ["Archery", "Ballet"]  # alphabetical, as OpenTAD generates it
    assert dataset["fps"] == [None] * 3 and dataset["num_frames"] == [None] * 3
    assert dataset[1]["segments"] == [[0.0, 140.5], [10.0, 12.0]] and dataset[1]["labels"] == [1, 0]
    assert report.removed["duplicate"] == 1 and report.kept["past_duration"] == 1
    validation = load_database_json(activitynet_official, subset=["validation"])
    assert validation["video_id"] == ["sJFgo9H6zNo"]
    # exact subset match: "valid" is not a substring match of "validation" (OpenTAD pitfall)
    assert len(load_database_json(activitynet_official, subset="valid")) == 0
    blocked = load_database_json(activitynet_official, blocked_videos=["test_video_1"])
    assert blocked["video_id"] == ["QOlSCBRmfWY", "sJFgo9H6zNo"]
    class_file = tmp_path / "category_idx.txt"
    class_file.write_text("Ballet\nArchery\nCricket\n")
    indexed = load_database_json(activitynet_official, class_map=class_file)
    assert class_names_of(indexed) == ["Ballet", "Archery", "Cricket"] and indexed[1]["labels"] == [0, 1]
    subsets = split_by_subset(dataset)
    assert list(subsets) == ["training", "validation", "testing"] and len(subsets["validation"]) == 1


def test_database_json_round_trip(activitynet_official, tmp_path, annotations_dir):
    dataset = load_database_json(activitynet_official)
    written = to_database_json(dataset, tmp_path / "out.json")
    assert set(written) == {"version", "taxonomy", "database"}
    again = load_database_json(tmp_path / "out.json", class_map=class_names_of(dataset))
    assert again.to_list() == dataset.to_list() and again.features == dataset.features
    # with frame counts and fps (OpenTAD layout) too
    multithumos = load_multithumos_json(annotations_dir / "multithumos" / "multithumos.json").select(range(20))
    to_database_json(multithumos, tmp_path / "multithumos_db.json")
    again = load_database_json(tmp_path / "multithumos_db.json", class_map=class_names_of(multithumos))
    assert again.to_list() == multithumos.to_list()


def test_opentad_json_with_frames(tmp_path):
    path = write_json(tmp_path / "thumos_14_anno.json", {"database": {
        "video_validation_0000051": {"subset": "training", "duration": 169.7, "frame": 5091,
                                     "annotations": [{"segment": [67.5, 75.9], "label": "Billiards"},
                                                     {"segment": [1.0, 2.0], "label": "Ambiguous"}]},
    }})
    dataset, report = load_database_json(path, ignore_labels=["Ambiguous"], output_report=True)
    assert class_names_of(dataset) == ["Billiards"] and report.removed["ignored_label"] == 1
    row = dataset[0]
    assert row["num_frames"] == 5091 and row["fps"] == pytest.approx(5091 / 169.7)


EGO4D_BROWSE = "browse_through_clothing_items_on_rack_/_shelf_/_hanger"  # a class of ego4d_label_map.txt


@pytest.fixture
def ego4d_moments(tmp_path):
    def label(name, start, end, clip_start, primary=True):
        return {"label": name, "start_time": start, "end_time": end, "video_start_time": clip_start + start,
                "video_end_time": clip_start + end, "start_frame": int(start * 30), "end_frame": int(end * 30),
                "video_start_frame": int((clip_start + start) * 30), "video_end_frame": int((clip_start + end) * 30),
                "primary": primary}

    return write_json(tmp_path / "moments_val.json", {
        "version": "v2", "date": "220429", "description": "Moment Queries", "manifest": "s3://...",
        "videos": [
            {"video_uid": "video-a", "split": "val", "clips": [
                {"clip_uid": "clip-1", "source_clip_uid": "s1", "video_start_sec": 480.02, "video_end_sec": 960.02,
                 "video_start_frame": 14401, "video_end_frame": 28801,
                 "clip_start_sec": 0.0, "clip_end_sec": 480.0,
                 "annotations": [
                     {"annotator_uid": "ann-1", "labels": [
                         label("use_phone", 10.0, 20.5, 480.02),
                         label("converse_/_interact_with_someone", 30.0, 31.0, 480.02, primary=False)]},
                     {"annotator_uid": "ann-2", "labels": [label("use_phone", 10.0, 20.5, 480.02),
                                                           label(EGO4D_BROWSE, 100.0, 500.0, 480.02)]},
                 ]},
            ]},
            {"video_uid": "video-b", "split": "train", "clips": [
                {"clip_uid": "clip-2", "video_start_sec": -0.5, "video_end_sec": 300.0, "video_start_frame": -15,
                 "video_end_frame": 9000, "annotations": [{"annotator_uid": "x", "labels": [
                     {"label": "use_phone", "video_start_time": 5.0, "video_end_time": 6.0, "primary": True}]}]},
            ]},
        ],
    })


def test_ego4d_moment_queries_layout(ego4d_moments, annotations_dir):
    label_map = annotations_dir / "ego4d_mq" / "ego4d_label_map.txt"
    dataset, report = load_ego4d_moment_queries(ego4d_moments, class_map=label_map, output_report=True)
    assert dataset["video_id"] == ["clip-1", "clip-2"] and dataset["subset"] == ["val", "train"]
    assert len(class_names_of(dataset)) == 110
    clip = dataset[0]
    assert clip["duration"] == 480.0 and clip["num_frames"] == 14400 and clip["fps"] == 30.0
    names = class_names_of(dataset)
    # clip-relative times; the second annotator's identical moment is a duplicate
    assert clip["segments"] == [[10.0, 20.5], [100.0, 500.0]]
    assert [names[l] for l in clip["labels"]] == ["use_phone", EGO4D_BROWSE]
    assert report.removed == {"non_primary": 1, "duplicate": 1} and report.kept["past_duration"] == 1
    # without start_time the clip-relative time comes from video_*_time minus the clip start (clamped at 0)
    assert dataset[1]["segments"] == [[5.0, 6.0]] and dataset[1]["duration"] == 300.0
    all_labels = load_ego4d_moment_queries(ego4d_moments, class_map=label_map, primary_only=False)
    assert len(all_labels[0]["segments"]) == 3
    with pytest.raises(AnnotationError, match=r"clip-1.*labels\[1\]\.segment: segment \[100\.0, 500\.0\] is outside"):
        load_ego4d_moment_queries(ego4d_moments, out_of_bounds="error")


# ---------------------------------------------------------------------------------------------
# Validation flags: each bad-input kind raises (naming file, video, field) or is skipped and counted
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def bad_database(tmp_path):
    return write_json(tmp_path / "bad.json", {"database": {
        "good": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "a"}]},
        "reversed": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [5.0, 4.0], "label": "a"}]},
        "zero": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [3.0, 3.0], "label": "a"}]},
        "past_end": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [8.0, 12.0], "label": "a"}]},
        "outside": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [11.0, 12.0], "label": "a"}]},
        "unknown": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "zzz"}]},
        "empty": {"subset": "training", "duration": 10.0, "annotations": []},
        "malformed": {"subset": "training", "duration": 10.0, "annotations": [{"segment": ["x", 2.0], "label": "a"}]},
        "duplicate": {"subset": "training", "duration": 10.0, "annotations": [
            {"segment": [1.0, 2.0], "label": "a"}, {"segment": [1.0, 2.0], "label": "a"}]},
    }})


@pytest.mark.parametrize(
    "flags, video, field, message", [
        ({}, "reversed", r"annotations\[0\]\.segment", r"end \(4\.0\) < start \(5\.0\)"),
        ({"zero_length": "error"}, "zero", r"annotations\[0\]\.segment", "zero-length"),
        ({"out_of_bounds": "error"}, "past_end", r"annotations\[0\]\.segment", "outside the video"),
        ({"out_of_bounds": "clip"}, "outside", r"annotations\[0\]\.segment", "outside the video"),
        ({"class_map": ["a"]}, "unknown", r"annotations\[0\]\.label", "'zzz' is not in the class map"),
        ({"allow_empty": False}, "empty", "annotations", "no \\(valid\\) segments"),
        ({}, "malformed", r"annotations\[0\]\.segment\[0\]", "'x' is not a finite number"),
    ],
)
def test_bad_input_raises_naming_file_video_field(bad_database, flags, video, field, message):
    # the videos before `video` in the file must pass with these flags, so load only those two
    with open(bad_database) as f:
        database = json.load(f)["database"]
    subset_file = bad_database.with_name(f"only_{video}.json")
    subset_file.write_text(json.dumps({"database": {"good": database["good"], video: database[video]}}))
    flags = {"class_map": ["a"], **flags}
    with pytest.raises(AnnotationError, match=rf"only_{video}\.json: video '{video}', field {field}: .*{message}"):
        load_database_json(subset_file, **flags)


def test_bad_input_skipped_and_counted(bad_database):
    dataset, report = load_database_json(
        bad_database, class_map=["a"], on_error="skip", zero_length="error", out_of_bounds="clip", allow_empty=False,
        output_report=True,
    )
    assert report.skipped == {"end_before_start": 1, "zero_length": 1, "outside_video": 1, "unknown_label": 1,
                              "malformed_segment": 1, "empty_annotations": 6}
    assert report.clipped == 1 and report.removed == {"duplicate": 1}
    assert dataset["video_id"] == ["good", "past_end", "duplicate"]
    assert dataset[1]["segments"] == [[8.0, 10.0]]
    assert len(report.details) == sum(report.skipped.values()) + report.clipped
    assert all("bad.json: video '" in line for line in report.details)
    assert "skipped (errors)" in report.summary() and "clipped" in report.summary()


def test_defaults_keep_real_quirks(bad_database):
    dataset, report = load_database_json(bad_database, on_error="skip", output_report=True)
    rows = {row["video_id"]: row for row in dataset}
    assert rows["zero"]["segments"] == [[3.0, 3.0]] and rows["past_end"]["segments"] == [[8.0, 12.0]]
    assert rows["empty"]["segments"] == [] and "reversed" in rows and rows["reversed"]["segments"] == []
    assert report.kept["zero_length"] == 1 and report.kept["past_duration"] == 2
    kept_both = load_database_json(bad_database, on_error="skip", deduplicate=False)
    assert len(kept_both[kept_both["video_id"].index("duplicate")]["segments"]) == 2


def test_skips_are_logged(bad_database, caplog):
    with caplog.at_level("WARNING", logger="adatad.annotations"):
        load_database_json(bad_database, on_error="skip")
    assert any("skipped (errors)" in record.getMessage() for record in caplog.records)


def test_flag_values_are_checked(bad_database):
    with pytest.raises(ValueError, match="on_error"):
        load_database_json(bad_database, on_error="ignore")
    with pytest.raises(ValueError, match="out_of_bounds"):
        load_database_json(bad_database, out_of_bounds="drop")


def test_malformed_files_name_the_problem(tmp_path, annotations_dir):
    not_json = tmp_path / "broken.json"
    not_json.write_text("{not json")
    with pytest.raises(AnnotationError, match="broken.json: not valid JSON"):
        load_database_json(not_json)
    no_database = write_json(tmp_path / "flat.json", {"v1": {}})
    with pytest.raises(AnnotationError, match="'database'"):
        load_database_json(no_database)
    with pytest.raises(FileNotFoundError, match="does_not_exist.json"):
        load_database_json(tmp_path / "does_not_exist.json")
    txt = tmp_path / "thumos" / "Diving_test.txt"
    txt.parent.mkdir()
    txt.write_text("video_test_1  1.0 2.0\nvideo_test_2  oops\n")
    with pytest.raises(AnnotationError, match=r"video 'video_test_2', field line 2 of Diving_test\.txt"):
        load_thumos14_txt(txt.parent)


def test_class_index_files(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Run\nJump\n\n")
    assert read_class_names(plain) == ["Run", "Jump"]
    with_ids = tmp_path / "ids.txt"
    with_ids.write_text("7 BaseballPitch\n9 BasketballDunk\n")
    assert read_class_names(with_ids) == ["BaseballPitch", "BasketballDunk"]
    gap = tmp_path / "gap.txt"
    gap.write_text("Run\n\nJump\n")
    with pytest.raises(AnnotationError, match="line 2 is empty"):
        read_class_names(gap)
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("Run\nRun\n")
    with pytest.raises(AnnotationError, match="unique"):
        read_class_names(repeated)


# ---------------------------------------------------------------------------------------------
# Video paths
# ---------------------------------------------------------------------------------------------


def test_resolve_video_paths(activitynet_official, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v_QOlSCBRmfWY.mp4").write_bytes(b"")
    (videos / "v_sJFgo9H6zNo.mkv").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"2 of 3 videos have no file.*'sJFgo9H6zNo', 'test_video_1'"):
        load_database_json(activitynet_official, video_dir=videos, video_prefix="v_")
    dataset, report = load_database_json(activitynet_official, video_dir=videos, video_prefix="v_",
                                         video_extension=[".mp4", ".mkv"], missing_videos="skip", output_report=True)
    assert dataset["video_path"] == [str(videos / "v_QOlSCBRmfWY.mp4"), str(videos / "v_sJFgo9H6zNo.mkv")]
    assert report.missing_videos == ["test_video_1"] and report.num_videos == 2
    assert "missing video files: 1: test_video_1" in report.summary()
    assert dataset.features == annotation_features(class_names_of(dataset))
    plain = load_database_json(activitynet_official)
    resolved, missing = resolve_video_paths(plain, videos, prefix="v_", missing_videos="skip")
    assert missing == ["sJFgo9H6zNo", "test_video_1"] and resolved["video_id"] == ["QOlSCBRmfWY"]
    assert resolved.column_names == plain.column_names


# ---------------------------------------------------------------------------------------------
# Sliding windows (hand-computed)
# ---------------------------------------------------------------------------------------------


def video_rows(tmp_path, videos, class_names=("a", "b")):
    path = write_json(tmp_path / "windows.json", {"database": videos})
    return load_database_json(path, class_map=list(class_names))


def test_sliding_windows_hand_computed(tmp_path):
    # 10 s, 100 frames -> fps 10; snippet stride 4 -> centres 0, 4, ..., 96 (25 snippets)
    # window 8, overlap 0.25 -> stride 6 -> range(25 // 6 = 4): [0,8) [6,14) [12,20), then [18,26)
    # passes the end and is right-aligned to [17,25) (centres 68..96)
    rows = video_rows(tmp_path, {"v": {"subset": "validation", "duration": 10.0, "frame": 100, "annotations": [
        {"segment": [1.0, 2.0], "label": "a"},  # frames [10, 20]: inside window 0
        {"segment": [2.5, 5.3], "label": "b"},  # frames [25, 53]: window 1 keeps [25, 52] (27/28 > 0.75)
        {"segment": [8.0, 9.5], "label": "a"},  # frames [80, 95]: last window, fully inside
    ]}})
    windows = expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count", overlap=0.25)
    assert windows["window_index"] == [0, 1, 3]  # window 2 keeps no GT and is dropped
    assert windows["window_start_frame"] == [0, 24, 68]
    assert windows["feature_start_idx"] == [0, 6, 17] and windows["feature_end_idx"] == [7, 13, 24]
    assert windows["grid_segments"] == [[[2.5, 5.0]], [[0.25, 7.0]], [[3.0, 6.75]]]
    assert windows["labels"] == [[0], [1], [0]]
    assert windows["fps"] == [10.0] * 3 and windows["num_frames"] == [100] * 3
    # back to seconds: the clipped GT of window 1 ends at the window's last centre (frame 52)
    back = grid_to_seconds(windows[1]["grid_segments"], mode="frame_count", duration=10.0, num_frames=100,
                           snippet_stride=4, window_start_frame=windows[1]["window_start_frame"])
    np.testing.assert_allclose(back, [[2.5, 5.2]])
    # test mode: every window, no GT
    test_windows = expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count", test_mode=True)
    assert test_windows["window_start_frame"] == [0, 24, 48, 68] and test_windows["grid_segments"] == [[]] * 4


def test_sliding_windows_completeness_threshold(tmp_path):
    # GT frames [90, 99]; last window covers centres [68, 96]: completeness 6/9 = 0.67
    rows = video_rows(tmp_path, {"v": {"subset": "validation", "duration": 10.0, "frame": 100,
                                       "annotations": [{"segment": [9.0, 9.9], "label": "a"}]}})
    assert len(expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count")) == 0
    kept = expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count", ioa_thresh=0.6)
    assert kept["window_start_frame"] == [68] and kept["grid_segments"] == [[[(90 - 68) / 4, (96 - 68) / 4]]]
    # ioa_thresh 0: every window, every GT unclipped (OpenTAD)
    every = expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count", ioa_thresh=0)
    assert len(every) == 4 and every[0]["grid_segments"] == [[90 / 4, 99 / 4]]


def test_sliding_windows_short_video_and_tail(tmp_path):
    rows = video_rows(tmp_path, {
        # 20 frames, stride 4 -> 5 snippets < window 8: one window [0, 5)
        "short": {"subset": "test", "duration": 2.0, "frame": 20,
                  "annotations": [{"segment": [0.5, 1.0], "label": "a"}]},
        # 44 frames -> 11 snippets, window 4, overlap 0.25 -> stride 3 -> range(3): [0,4) [3,7) [6,10);
        # no window passes the end, so snippet 10 (frame 40) is in no window (OpenTAD behaviour)
        "tail": {"subset": "test", "duration": 4.4, "frame": 44, "annotations": []},
    })
    short, report = expand_sliding_windows(rows.select([0]), window_size=8, snippet_stride=4, mode="frame_count",
                                           output_report=True)
    assert report.kept["video_shorter_than_window"] == 1
    assert short["window_start_frame"] == [0] and short["feature_end_idx"] == [4]
    assert short["grid_segments"] == [[[1.25, 2.5]]]
    tail = expand_sliding_windows(rows.select([1]), window_size=4, snippet_stride=4, mode="frame_count",
                                  test_mode=True)
    assert tail["window_start_frame"] == [0, 12, 24] and tail["feature_end_idx"] == [3, 6, 9]


def test_sliding_windows_fixed_fps_and_frame_duplicates(tmp_path):
    # EPIC style: frames = int(duration * 30); GT int(seg * 30)
    rows = video_rows(tmp_path, {"v": {"subset": "val", "duration": 3.0, "annotations": [
        {"segment": [0.5, 1.25], "label": "a"},
        {"segment": [0.51, 1.26], "label": "a"},  # same frames [15, 37]: an exact duplicate in frames
    ]}})
    windows, report = expand_sliding_windows(rows, window_size=8, snippet_stride=16, mode="fixed_fps", fps=30,
                                             output_report=True)
    assert windows["num_frames"] == [90] and windows["fps"] == [30.0]
    assert windows["grid_segments"] == [[[15 / 16, 37 / 16]]] and report.removed["duplicate"] == 1
    assert windows["feature_end_idx"] == [5]  # centres 0, 16, ..., 80


def test_sliding_windows_drop_videos_without_gt_and_need_frames(tmp_path):
    rows = video_rows(tmp_path, {
        "empty": {"subset": "val", "duration": 3.0, "frame": 90, "annotations": []},
        "no_frames": {"subset": "val", "duration": 3.0, "annotations": [{"segment": [0.5, 1.0], "label": "a"}]},
    })
    with pytest.raises(AnnotationError, match="video 'no_frames', field num_frames"):
        expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count")
    windows, report = expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count",
                                             on_error="skip", output_report=True)
    assert len(windows) == 0 and report.removed["video_without_gt"] == 1 and report.skipped["bad_video_field"] == 1
    with pytest.raises(ValueError, match="overlap"):
        expand_sliding_windows(rows, window_size=8, snippet_stride=4, mode="frame_count", overlap=1.0)


def test_sliding_windows_on_real_thumos(thumos_test):
    dataset, _ = thumos_test
    videos = dataset.select(range(5))
    # THUMOS test setting: window 768 features, snippet stride 4 frames, overlap 0.5 -> stride 384
    windows = expand_sliding_windows(videos, window_size=768, snippet_stride=4, mode="frame_count", overlap=0.5,
                                     test_mode=True)
    assert set(windows["video_id"]) == set(videos["video_id"])
    for video in videos:
        rows = [w for w in windows if w["video_id"] == video["video_id"]]
        num_snippets = len(range(0, video["num_frames"], 4))
        starts = [w["feature_start_idx"] for w in rows]
        assert starts[0] == 0 and all(b - a == 384 for a, b in zip(starts[:-2], starts[1:-1]))
        assert 0 < starts[-1] - starts[-2] <= 384 if len(starts) > 1 else num_snippets <= 768 * 2
        for w in rows:
            assert w["window_start_frame"] == 4 * w["feature_start_idx"]
            assert w["feature_end_idx"] - w["feature_start_idx"] + 1 == min(768, num_snippets)
            assert w["feature_end_idx"] < num_snippets


def test_unknown_labels_in_every_id_format(tmp_path):
    charades = tmp_path / "Charades_v1_test.csv"
    charades.write_text("id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
                        "ABC12,s,Kitchen,5,6,Yes,x,cup,y,c010 1.00 2.00;c200 1.00 2.00,10.0\n")
    with pytest.raises(AnnotationError, match=r"video 'ABC12', field line 2, actions\[1\]\.label: label 200"):
        load_charades_csv(charades)
    dataset, report = load_charades_csv(charades, on_error="skip", output_report=True)
    assert dataset[0]["labels"] == [10] and report.skipped == {"unknown_label": 1}

    thumos = tmp_path / "thumos"
    thumos.mkdir()
    (thumos / "Diving_test.txt").write_text("video_test_1 1.0 2.0\n")
    (thumos / "Skating_test.txt").write_text("video_test_1 3.0 4.0\n")
    with pytest.raises(AnnotationError, match=r"field line 1 of Skating_test\.txt\.label: label 'Skating'"):
        load_thumos14_txt(thumos, class_map=THUMOS14_DETECTION_CLASSES)

    epic = tmp_path / "EPIC_100_validation.csv"
    epic.write_text("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
                    "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
                    "P01_01_0,P01,P01_01,00:00:01.000,01:00:01.50,01:00:02.00,1,2,take cup,take,0,cup,999,[],[]\n")
    (tmp_path / "EPIC_100_noun_classes.csv").write_text("id,key,instances,category\n0,tap,[],x\n1,cup,[],x\n")
    (tmp_path / "EPIC_100_video_info.csv").write_text("video_id,duration,fps,resolution\nP01_01,4000.0,50.0,x\n")
    with pytest.raises(AnnotationError, match=r"video 'P01_01', field line 2 \(P01_01_0\)\.label: label 999"):
        load_epic_kitchens_100(epic)
    epic.write_text(epic.read_text().replace(",999,", ",1,"))
    row = load_epic_kitchens_100(epic)[0]
    assert row["segments"] == [[3601.5, 3602.0]] and row["labels"] == [1]  # HH:MM:SS.ff with hours


def test_bad_duration_is_a_video_error(tmp_path):
    path = write_json(tmp_path / "durations.json", {"database": {
        "ok": {"subset": "val", "duration": "12.5", "annotations": [{"segment": [1, 2], "label": "a"}]},
        "negative": {"subset": "val", "duration": -3.0, "annotations": []},
        "text": {"subset": "val", "duration": "long", "annotations": []},
    }})
    with pytest.raises(AnnotationError, match="video 'negative', field duration: duration must be a positive"):
        load_database_json(path)
    dataset, report = load_database_json(path, on_error="skip", output_report=True)
    assert dataset["video_id"] == ["ok"] and dataset["duration"] == [12.5]
    assert report.skipped == {"bad_video_field": 2} and report.kept["string_value"] == 1


# ---------------------------------------------------------------------------------------------
# Shared loader settings: one AnnotationOptions object, or keywords of the call
# ---------------------------------------------------------------------------------------------


def test_options_object_and_keywords_are_the_same_settings(bad_database):
    options = AnnotationOptions(on_error="skip", zero_length="error", output_report=True)
    by_object, object_report = load_database_json(bad_database, options=options)
    by_keywords, keyword_report = load_database_json(bad_database, on_error="skip", zero_length="error",
                                                     output_report=True)
    assert by_object.to_list() == by_keywords.to_list()
    assert object_report.skipped == keyword_report.skipped and object_report.skipped["zero_length"] == 1
    # keywords override the object's fields; the object itself is unchanged (frozen)
    kept, report = load_database_json(bad_database, options=options, zero_length="keep")
    assert report.skipped["zero_length"] == 0 and report.kept["zero_length"] == 1
    assert options.zero_length == "error"


def test_options_reject_unknown_names_and_values(bad_database):
    with pytest.raises(TypeError, match=r"unknown loader argument\(s\) \['on_eror'\]"):
        load_database_json(bad_database, on_eror="skip")
    with pytest.raises(ValueError, match="missing_videos must be 'raise' or 'skip'"):
        AnnotationOptions(missing_videos="ignore")


def test_video_prefix_default_is_the_loaders(tmp_path):
    # BSN ids drop the "v_" of the file names; None puts it back for load_activitynet_bsn, "" for the others
    folder = tmp_path / "bsn"
    folder.mkdir()
    (folder / "anno.json").write_text(json.dumps({"v_abc": {
        "duration_second": 10.0, "duration_frame": 300, "annotations": [{"segment": [1.0, 2.0], "label": "a"}]}}))
    (folder / "info.csv").write_text("video,subset,fps\nv_abc,validation,30\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v_abc.mp4").write_bytes(b"")
    rows = load_activitynet_bsn(folder / "anno.json", folder / "info.csv", video_dir=videos)
    assert rows[0]["video_id"] == "abc" and rows[0]["video_path"] == str(videos / "v_abc.mp4")
    with pytest.raises(FileNotFoundError, match="1 of 1 videos have no file"):
        load_activitynet_bsn(folder / "anno.json", folder / "info.csv", options=AnnotationOptions(video_dir=videos,
                                                                                                   video_prefix=""))
