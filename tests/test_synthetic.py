"""Tests of the synthetic temporal action detection dataset and of the timeline plot."""

import hashlib
import json
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from PIL import Image

from adatad import synthetic
from adatad.synthetic import SyntheticDatasetConfig, generate_synthetic_dataset, render_action_clip
from adatad.visualization import LANE_HEIGHT, LEGEND_MARGIN, LEGEND_ROW_HEIGHT, VIDEO_HEADER_HEIGHT, plot_timeline

# The harder variant of the data (longer actions, resting objects between them, a faster background) than the
# demo's defaults, so that every property below is exercised.
SMALL_SETTINGS = dict(
    num_train_videos=6,
    num_val_videos=3,
    num_frames=64,
    frame_size=64,
    fps=8.0,
    min_action_frames=12,
    max_action_frames=32,
    resting_object_probability=0.5,
    background_speed=(0.2, 0.8),
    seed=3,
)
# Object colours have a channel spread (max - min) of at least ~150, the low-saturation background at most ~45.
OBJECT_CHROMA_THRESHOLD = 100


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("synthetic")
    summary = generate_synthetic_dataset(output_dir, **SMALL_SETTINGS)
    database = json.loads((output_dir / "annotations.json").read_text())["database"]
    return summary, database


def decode_with_decord(path):
    reader = decord.VideoReader(str(path))
    return reader, reader.get_batch(list(range(len(reader)))).asnumpy()


def object_mask(frames):
    """Boolean (num_frames, H, W): pixels of the saturated object (the background is nearly grey)."""
    frames = frames.astype(np.int16)
    return (frames.max(axis=-1) - frames.min(axis=-1)) > OBJECT_CHROMA_THRESHOLD


def object_center_x_and_area(frames):
    mask = object_mask(frames)
    area = mask.sum(axis=(1, 2))
    columns = np.arange(frames.shape[2])
    center_x = (mask.sum(axis=1) * columns).sum(axis=1) / np.maximum(area, 1)
    return center_x, area


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_annotation_file_has_the_documented_layout(small_dataset):
    summary, database = small_dataset
    class_names = open(summary["class_file"]).read().splitlines()
    assert class_names == list(synthetic.DEFAULT_CLASS_NAMES) == summary["class_names"]
    assert sorted(video["subset"] for video in database.values()) == ["training"] * 6 + ["validation"] * 3
    num_actions = 0
    for video_id, video in database.items():
        assert set(video) == {"subset", "duration", "frame", "fps", "annotations"}
        assert video["frame"] == 64 and video["fps"] == 8.0
        assert video["duration"] == pytest.approx(64 / 8.0)
        assert (Path(summary["videos_dir"]) / f"{video_id}.mp4").is_file()
        assert video["annotations"], f"{video_id} has no action"
        previous_end = 0.0
        for annotation in video["annotations"]:
            assert set(annotation) == {"segment", "label"}
            start, end = annotation["segment"]
            assert 0.0 <= previous_end <= start < end <= video["duration"]
            # At least min_action_frames long, on the frame grid.
            assert end - start >= 12 / 8.0 - 1e-9
            assert start * 8.0 == pytest.approx(round(start * 8.0))
            assert annotation["label"] in class_names
            previous_end = end
            num_actions += 1
    counted = sum(sum(per_class.values()) for per_class in summary["num_actions"].values())
    assert counted == num_actions
    assert summary["num_videos"] == {"training": 6, "validation": 3}


def test_generation_is_deterministic_per_seed(small_dataset, tmp_path):
    summary, database = small_dataset
    again = generate_synthetic_dataset(tmp_path / "again", **SMALL_SETTINGS)
    assert json.loads(open(again["annotation_file"]).read())["database"] == database
    for video_id in database:
        first = Path(summary["videos_dir"]) / f"{video_id}.mp4"
        second = Path(again["videos_dir"]) / f"{video_id}.mp4"
        assert file_digest(first) == file_digest(second), video_id

    other_seed = generate_synthetic_dataset(tmp_path / "other", **{**SMALL_SETTINGS, "seed": 4, "num_val_videos": 0})
    other_database = json.loads(open(other_seed["annotation_file"]).read())["database"]
    assert [video["annotations"] for video in other_database.values()] != [
        video["annotations"] for video in database.values() if video["subset"] == "training"
    ]


def test_validation_videos_come_from_a_different_stream(small_dataset):
    summary, database = small_dataset
    videos_dir = Path(summary["videos_dir"])
    for index in range(3):
        assert file_digest(videos_dir / f"synthetic_training_{index:04d}.mp4") != file_digest(
            videos_dir / f"synthetic_validation_{index:04d}.mp4"
        )


def test_videos_decode_with_decord_and_pyav(small_dataset):
    summary, database = small_dataset
    for video_id, video in database.items():
        path = Path(summary["videos_dir"]) / f"{video_id}.mp4"
        reader, decord_frames = decode_with_decord(path)
        assert len(reader) == video["frame"]
        assert decord_frames.shape == (64, 64, 64, 3) and decord_frames.dtype == np.uint8
        assert reader.get_avg_fps() == pytest.approx(8.0)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            pyav_frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        assert pyav_frames.shape == decord_frames.shape
        # Both decode the same stream; only the YUV -> RGB conversion may differ slightly.
        assert np.abs(pyav_frames.astype(np.int16) - decord_frames.astype(np.int16)).mean() < 2.0


def test_decoded_objects_move_as_labelled_and_rest_between_actions(small_dataset):
    summary, database = small_dataset
    checked = {name: 0 for name in synthetic.DEFAULT_CLASS_NAMES}
    resting_frames = 0
    for video_id, video in database.items():
        _, frames = decode_with_decord(Path(summary["videos_dir"]) / f"{video_id}.mp4")
        center_x, area = object_center_x_and_area(frames)
        for annotation in video["annotations"]:
            first = round(annotation["segment"][0] * video["fps"])
            last = round(annotation["segment"][1] * video["fps"]) - 1
            assert area[first] > 20 and area[last] > 20, f"{video_id}: no object during {annotation}"
            label = annotation["label"]
            if label == "moving_left":
                assert center_x[last] - center_x[first] < -8, (video_id, annotation)
            elif label == "moving_right":
                assert center_x[last] - center_x[first] > 8, (video_id, annotation)
            elif label == "growing":
                assert area[last] > 2 * area[first], (video_id, annotation)
            elif label == "shrinking":
                assert area[first] > 2 * area[last], (video_id, annotation)
            checked[label] += 1
        # Outside the annotated segments the object is absent or still: the labels cover all the motion.
        in_action = np.zeros(video["frame"], dtype=bool)
        for annotation in video["annotations"]:
            start, end = (round(value * video["fps"]) for value in annotation["segment"])
            in_action[start:end] = True
        gap_edges = np.flatnonzero(np.diff(np.concatenate([[1], in_action.astype(int), [1]])))
        for gap_start, gap_end in zip(gap_edges[::2], gap_edges[1::2], strict=True):
            gap_area, gap_x = area[gap_start:gap_end], center_x[gap_start:gap_end]
            if gap_end - gap_start < 2 or gap_area.min() <= 20:
                continue
            # Chroma subsampling lets the thresholded outline of a still object flicker by a few pixels.
            assert np.ptp(gap_x) < 1.0, (video_id, gap_start, gap_end)
            assert np.ptp(gap_area) <= max(16, 0.2 * np.median(gap_area)), (video_id, gap_start, gap_end)
            resting_frames += gap_end - gap_start
    assert all(checked.values()), f"every class must occur in the small dataset, got {checked}"
    assert resting_frames > 0, "no gap with a resting object in the small dataset"


@pytest.mark.parametrize(
    "label, twin",
    [("moving_left", "moving_right"), ("growing", "shrinking"), ("rotating_clockwise", "rotating_counterclockwise")],
)
def test_twin_classes_are_the_same_frames_played_backwards(label, twin):
    still = SyntheticDatasetConfig(background_speed=(0.0, 0.0), noise_std=0.0)
    clip = render_action_clip(label, still, num_frames=20, seed=11)
    twin_clip = render_action_clip(twin, still, num_frames=20, seed=11)
    assert clip.shape == (20, 64, 64, 3) and clip.dtype == np.uint8
    # Exactly the same set of frames, so a single frame cannot tell the classes apart ...
    np.testing.assert_array_equal(clip, twin_clip[::-1])
    histograms = sorted(tuple(np.bincount(frame.reshape(-1), minlength=256)) for frame in clip)
    twin_histograms = sorted(tuple(np.bincount(frame.reshape(-1), minlength=256)) for frame in twin_clip)
    assert histograms == twin_histograms
    # ... but the frames do change over time.
    assert np.abs(np.diff(clip.astype(np.int16), axis=0)).sum(axis=(1, 2, 3)).min() > 0


def test_twin_classes_differ_only_in_motion_over_a_moving_background():
    config = SyntheticDatasetConfig()
    left = render_action_clip("moving_left", config, num_frames=24, seed=5)
    right = render_action_clip("moving_right", config, num_frames=24, seed=5)
    grow = render_action_clip("growing", config, num_frames=24, seed=5)
    shrink = render_action_clip("shrinking", config, num_frames=24, seed=5)
    for clip, twin in ((left, right), (grow, shrink)):
        histogram = np.bincount(clip.reshape(-1), minlength=256) / clip.size
        twin_histogram = np.bincount(twin.reshape(-1), minlength=256) / twin.size
        # Same object and background; only where the object covers the background differs per frame.
        assert np.abs(histogram - twin_histogram).sum() < 0.05
    left_x, _ = object_center_x_and_area(left)
    right_x, _ = object_center_x_and_area(right)
    # Frame-to-frame displacement of the object has opposite sign.
    assert np.all(np.diff(left_x) < 0) and np.all(np.diff(right_x) > 0)
    _, grow_area = object_center_x_and_area(grow)
    _, shrink_area = object_center_x_and_area(shrink)
    assert grow_area[-1] > 2 * grow_area[0] and shrink_area[0] > 2 * shrink_area[-1]


def test_optional_rotation_classes_and_other_frame_rates(tmp_path):
    summary = generate_synthetic_dataset(
        tmp_path,
        num_train_videos=2,
        num_val_videos=0,
        num_frames=40,
        frame_size=96,
        fps=12.5,
        class_names=("rotating_clockwise", "rotating_counterclockwise"),
    )
    database = json.loads(open(summary["annotation_file"]).read())["database"]
    labels = {annotation["label"] for video in database.values() for annotation in video["annotations"]}
    assert labels <= {"rotating_clockwise", "rotating_counterclockwise"}
    assert open(summary["class_file"]).read() == "rotating_clockwise\nrotating_counterclockwise\n"
    reader, frames = decode_with_decord(Path(summary["videos_dir"]) / "synthetic_training_0000.mp4")
    assert frames.shape == (40, 96, 96, 3)
    assert reader.get_avg_fps() == pytest.approx(12.5)
    assert database["synthetic_training_0000"]["duration"] == pytest.approx(40 / 12.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"class_names": ("moving_left", "jumping")}, "unknown: \\['jumping'\\]"),
        ({"frame_size": 63}, "`frame_size` \\(63\\) must be an even number"),
        ({"min_action_frames": 40, "max_action_frames": 30}, "`min_action_frames` \\(40\\)"),
        ({"num_frames": 6}, "must not exceed `num_frames` \\(6\\)"),
    ],
)
def test_bad_settings_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        SyntheticDatasetConfig(**overrides)


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(TypeError, match="num_videos"):
        generate_synthetic_dataset(tmp_path, num_videos=3)


def test_command_line_generate(tmp_path, capsys):
    synthetic.main(
        [
            "generate",
            "--output-dir",
            str(tmp_path),
            "--num-train",
            "2",
            "--num-val",
            "1",
            "--num-frames",
            "32",
            "--seed",
            "7",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_videos"] == {"training": 2, "validation": 1}
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "synthetic_training_0000.mp4",
        "synthetic_training_0001.mp4",
        "synthetic_validation_0000.mp4",
    ]
    with pytest.raises(SystemExit):
        synthetic.main(["generate", "--output-dir", str(tmp_path), "--classes", "moving_up"])
    assert "moving_up" in capsys.readouterr().err


def test_activitynet_variant_writes_one_class_per_video_of_varied_length_a_classifier_and_a_blocked_list(tmp_path):
    summary = synthetic.generate_synthetic_activitynet(
        tmp_path, num_train_videos=6, num_val_videos=8, num_frames=40, min_num_frames=24, frame_size=32, seed=5
    )
    database = json.loads((tmp_path / synthetic.ANNOTATION_FILENAME).read_text())["database"]
    lengths = set()
    for video_id, video in database.items():
        assert len({a["label"] for a in video["annotations"]}) == 1, video_id
        assert 24 <= video["frame"] <= 40 and video["duration"] == pytest.approx(video["frame"] / video["fps"])
        assert all(0 <= a["segment"][0] < a["segment"][1] <= video["duration"] for a in video["annotations"])
        with av.open(str(tmp_path / "videos" / f"{video_id}.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == video["frame"], video_id
        lengths.add(video["frame"])
    assert len(lengths) > 1
    classifier = json.loads(Path(summary["classifier_file"]).read_text())
    assert classifier["class"] == list(summary["class_names"])
    validation = {v: video for v, video in database.items() if video["subset"] == "validation"}
    assert set(classifier["results"]) == set(validation)
    # Scores come from the ground truth with noise: the true class of a video is (nearly always) its best class.
    best = [
        classifier["class"][int(np.argmax(classifier["results"][v]))] == video["annotations"][0]["label"]
        for v, video in validation.items()
    ]
    assert sum(best) >= len(best) - 1
    assert all(0.0 <= score <= 1.0 for scores in classifier["results"].values() for score in scores)
    blocked = json.loads(Path(summary["blocked_file"]).read_text())
    assert blocked == summary["blocked_videos"] == ["synthetic_validation_0006", "synthetic_validation_0007"]


def test_command_line_generate_activitynet_keeps_its_settings(tmp_path, capsys):
    synthetic.main(
        ["generate", "--activitynet", "--output-dir", str(tmp_path), "--num-train", "0", "--num-val", "4",
         "--frame-size", "32"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["blocked_videos"] == ["synthetic_validation_0002", "synthetic_validation_0003"]
    settings = synthetic.ACTIVITYNET_SETTINGS
    for video in json.loads((tmp_path / synthetic.ANNOTATION_FILENAME).read_text())["database"].values():
        assert settings["min_num_frames"] <= video["frame"] <= settings["num_frames"]
        assert 1 <= len(video["annotations"]) <= settings["max_actions_per_video"]
        for start, end in (a["segment"] for a in video["annotations"]):
            assert settings["min_action_frames"] <= round((end - start) * video["fps"]) <= settings["max_action_frames"]


def test_activitynet_ingredients_need_one_class_per_video(tmp_path):
    # Two actions per video, dealt from shuffled rounds of the classes: the two differ.
    generate_synthetic_dataset(
        tmp_path, num_train_videos=0, num_val_videos=2, frame_size=32, min_actions_per_video=2, max_actions_per_video=2
    )
    with pytest.raises(ValueError, match="one class per video"):
        synthetic.write_activitynet_ingredients(tmp_path)


def test_varied_video_lengths_need_room_for_an_action():
    with pytest.raises(ValueError, match="min_num_frames"):
        SyntheticDatasetConfig(min_num_frames=4, min_action_frames=8)


def perturbed_predictions(database, seed=0):
    """Fake detections: each ground-truth segment jittered a few times with falling scores, plus a false alarm."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for video_id, video in database.items():
        detections = []
        for annotation in video["annotations"]:
            start, end = annotation["segment"]
            for score in (0.95, 0.5, 0.2):
                jitter = rng.normal(0.0, 0.1 * (end - start), size=2)
                detections.append(
                    {"segment": [start + jitter[0], end + jitter[1]], "label": annotation["label"], "score": score}
                )
        detections.append({"segment": [0.5, 1.5], "label": "growing", "score": 0.3})
        predictions[video_id] = detections
    return predictions


def test_plot_timeline_writes_a_png_of_the_expected_size(small_dataset, tmp_path):
    summary, database = small_dataset
    predictions = perturbed_predictions(database)
    output = plot_timeline(
        {"database": database},
        {"version": "VERSION 1.3", "results": predictions},
        tmp_path / "plots" / "timeline.png",
        class_names=summary["class_names"],
        max_videos=3,
        score_threshold=0.25,
    )
    assert output == tmp_path / "plots" / "timeline.png"
    assert output.stat().st_size > 10_000
    image = np.asarray(Image.open(output).convert("RGB"))
    # 4 classes + 3 score swatches fit one legend row.
    expected_height = round((LEGEND_MARGIN + LEGEND_ROW_HEIGHT + 3 * (VIDEO_HEADER_HEIGHT + 4 * LANE_HEIGHT)) * 100)
    assert image.shape == (expected_height, 1200, 3)
    # The class colours are really drawn (tab10 blue/orange/green/red bars, not an empty canvas).
    assert (image.std(axis=-1) > 40).mean() > 0.01


def test_plot_timeline_without_predictions_and_with_explicit_videos(small_dataset, tmp_path):
    _, database = small_dataset
    output = plot_timeline(
        database, {}, tmp_path / "empty.png", video_ids=["synthetic_validation_0001"], num_detection_lanes=1
    )
    width, height = Image.open(output).size
    assert (width, height) == (
        1200,
        round((LEGEND_MARGIN + LEGEND_ROW_HEIGHT + VIDEO_HEADER_HEIGHT + 2 * LANE_HEIGHT) * 100),
    )


def test_plot_timeline_reports_bad_input(small_dataset, tmp_path):
    _, database = small_dataset
    with pytest.raises(ValueError, match="not_a_video"):
        plot_timeline(database, {}, tmp_path / "x.png", video_ids=["not_a_video"])
    broken = {"synthetic_training_0000": [{"segment": [0.0, 1.0], "label": "growing"}]}
    with pytest.raises(ValueError, match=r"predictions\['synthetic_training_0000'\]\[0\] has no 'score'"):
        plot_timeline(database, broken, tmp_path / "x.png")
    unknown_label = {"synthetic_training_0000": [{"segment": [0.0, 1.0], "label": "jumping", "score": 0.9}]}
    with pytest.raises(ValueError, match="'jumping' is not in `class_names`"):
        plot_timeline(database, unknown_label, tmp_path / "x.png", class_names=list(synthetic.DEFAULT_CLASS_NAMES))


def test_plot_timeline_reads_class_indices_and_numpy_values(small_dataset, tmp_path):
    summary, database = small_dataset
    video_id = "synthetic_validation_0000"
    predictions = {video_id: [{"segment": np.array([1.0, 3.0]), "label": np.int64(2), "score": np.float32(0.8)}]}
    output = plot_timeline(database, predictions, tmp_path / "indices.png", class_names=summary["class_names"])
    assert Image.open(output).size[0] == 1200
    with pytest.raises(ValueError, match="label 7 must be a class name"):
        plot_timeline(database, {video_id: [{"segment": [1, 2], "label": 7, "score": 0.5}]}, tmp_path / "x.png")
