"""AdaTADVideoProcessor: decoding (real and broken clips), OpenTAD frame sampling, spatial pipeline, dataset glue."""

import fractions
import json
import os
import random
import subprocess
import sys

import av
import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoVideoProcessor

from adatad import processing_adatad, video_decoding
from adatad.annotations import expand_sliding_windows
from adatad.dataset_transforms import TemporalDetectionTransform, collate_temporal_detection
from adatad.processing_adatad import AdaTADVideoProcessor, color_jitter, random_resized_crop_box
from adatad.time_grid import sample_random_trunc, sample_resize, sample_sliding_window
from adatad.video_decoding import VideoDecodeError, WindowFrameCache, decode_video

REAL_CLIPS = {  # file: (frames, fps) as SOURCES.md states them
    "demo.mp4": (280, 28.0),
    "test.avi": (164, 25.0),
    "test_video_structuralize.mp4": (300, 30000 / 1001),
    "demo_spatiotemporal_det.mp4": (57, 6.0),
}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def small_processor(**kwargs):
    settings = dict(
        window_size=16, snippet_stride=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        train_size={"shortest_edge": 36}, class_names=["a", "b"],
    )
    settings.update(kwargs)
    return AdaTADVideoProcessor(**settings)


def write_video(path, frames, codec="mpeg4", pix_fmt="yuv420p", pts_ms=None, rotation=None):
    """Encode uint8 RGB frames (T, H, W, 3) with PyAV; `pts_ms` gives variable frame timing."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.time_base = fractions.Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def patterned_frames(num_frames, height, width):
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    frames[:, : height // 4, : width // 4] = 255  # a bright top-left corner shows any rotation
    frames[..., 1] = (np.arange(num_frames) * 10 % 250)[:, None, None]
    return frames


# ------------------------------------------------------------------------------------------------------
# Save / load
# ------------------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip_through_auto_video_processor(tmp_path):
    processor = small_processor(sampling_method="resize", train_sampling_method="resize", resize_length=8,
                                scale_factor=2, nms_sigma=0.4, max_segments=50, multiclass=False,
                                voting_thresh=0.9, decode_backend="pyav", augmentation="randaugment")
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert saved["auto_map"]["AutoVideoProcessor"] == "processing_adatad.AdaTADVideoProcessor"
    for key, value in [("sampling_method", "resize"), ("resize_length", 8), ("scale_factor", 2),
                       ("nms_sigma", 0.4), ("multiclass", False), ("class_names", ["a", "b"]),
                       ("decode_backend", "pyav"), ("augmentation", "randaugment"),
                       ("crop_size", {"height": 32, "width": 32})]:
        assert saved[key] == value, key

    loaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is AdaTADVideoProcessor
    assert loaded.to_dict() == processor.to_dict()
    overridden = AutoVideoProcessor.from_pretrained(tmp_path, window_size=32)
    assert overridden.window_size == 32


@pytest.mark.slow
def test_saved_folder_loads_with_trust_remote_code_in_a_fresh_interpreter(tmp_path):
    folder = tmp_path / "model"
    small_processor(window_size=24).save_pretrained(folder)
    assert (folder / "processing_adatad.py").is_file()
    # A fresh interpreter that never imports `adatad`: the class must come from the files saved beside it.
    script = (
        "from transformers import AutoVideoProcessor\n"
        f"p = AutoVideoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
        "import sys; assert 'adatad' not in sys.modules, 'loaded the installed package'\n"
        "print(type(p).__name__, p.window_size, type(p).__module__)\n"
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = ""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    name, window_size, module = result.stdout.split()[-3:]
    assert (name, window_size) == ("AdaTADVideoProcessor", "24")
    assert "transformers_modules" in module


def test_invalid_settings_name_the_field():
    with pytest.raises(ValueError, match="sampling_method"):
        AdaTADVideoProcessor(sampling_method="padding")
    with pytest.raises(ValueError, match="snippet_stride"):
        AdaTADVideoProcessor(snippet_stride=6, scale_factor=4)
    with pytest.raises(ValueError, match="decode_backend"):
        AdaTADVideoProcessor(decode_backend="opencv")
    with pytest.raises(ValueError, match="crop_size"):
        AdaTADVideoProcessor(size={"shortest_edge": 100}, crop_size={"height": 160, "width": 160})


# ------------------------------------------------------------------------------------------------------
# Decoding real and broken files
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clip_decodes_identically_with_decord_and_pyav(tests_dir, name):
    path = tests_dir / "data" / "videos" / name
    expected_frames, expected_fps = REAL_CLIPS[name]
    every_frame = lambda info: np.arange(info.num_frames)  # noqa: E731
    with_decord = decode_video(path, every_frame, backend="decord")
    with_pyav = decode_video(path, every_frame, backend="pyav")
    for decoded in (with_decord, with_pyav):
        assert decoded.info.num_frames == expected_frames
        assert decoded.info.fps == pytest.approx(expected_fps, rel=1e-4)
        assert decoded.frames.dtype == torch.uint8 and decoded.frames.shape[:2] == (expected_frames, 3)
    # Both convert with FFmpeg's swscale at its default settings: the same pixels, value for value.
    assert torch.equal(with_decord.frames, with_pyav.frames)
    # PyAV seeking to keyframes for a few scattered frames gives the frames it decoded from the start.
    scattered = np.sort(np.random.default_rng(0).choice(expected_frames, size=min(12, expected_frames), replace=False))
    sought = decode_video(path, lambda info: scattered, backend="pyav").frames
    assert torch.equal(sought, with_pyav.frames[torch.from_numpy(scattered)])


def test_decord_seeks_requested_frames_in_any_order(tests_dir):
    path = tests_dir / "data" / "videos" / "demo.mp4"
    everything = decode_video(path, lambda info: np.arange(info.num_frames), backend="decord").frames
    wanted = np.array([279, 0, 140, 140, 5])
    for backend in ("decord", "pyav"):
        picked = decode_video(path, lambda info: wanted, backend=backend).frames
        assert torch.equal(picked, everything[wanted])


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated_demo.mp4", "corrupt or truncated"),
        ("empty.mp4", "empty \\(0 bytes\\)"),
        ("not_a_video.mp4", "not a video"),
        ("truncated_test.avi", "truncated"),
        ("missing.mp4", "does not exist"),
    ],
)
def test_broken_files_give_a_clear_error(tests_dir, backend, name, reason):
    path = tests_dir / "data" / "videos" / "bad" / name
    with pytest.raises(VideoDecodeError, match=reason) as raised:
        decode_video(path, lambda info: np.arange(info.num_frames), backend=backend)
    message = str(raised.value)
    assert str(path) in message
    if name != "missing.mp4":
        # In auto mode a truncation found by decord is final (PyAV would decode the same 44 frames).
        tried = {"auto": ["decord", "pyav"], "decord": ["decord"], "pyav": ["pyav"]}[backend]
        if backend == "auto" and name == "truncated_test.avi":
            tried = ["decord"]
        for tried_backend in tried:
            assert f"{tried_backend}:" in message


def test_truncated_avi_reports_header_and_decodable_frame_counts(tests_dir):
    path = tests_dir / "data" / "videos" / "bad" / "truncated_test.avi"
    with pytest.raises(VideoDecodeError, match="announces 164 frames but only 44 are decodable"):
        decode_video(path, lambda info: np.arange(info.num_frames), backend="decord")
    # PyAV trusts the header (164 frames) and finds out while decoding: it must not hand back fewer frames.
    with pytest.raises(VideoDecodeError, match="only 44 frames could be decoded"):
        decode_video(path, lambda info: np.arange(info.num_frames), backend="pyav")


def test_rotation_metadata_is_applied_by_both_backends(tmp_path):
    path = tmp_path / "rotated.mp4"
    write_video(path, patterned_frames(6, 32, 48), rotation=90)
    frames = {
        backend: decode_video(path, lambda info: np.arange(info.num_frames), backend=backend).frames
        for backend in ("decord", "pyav")
    }
    # Displayed upright: 48 rows x 32 columns, the bright corner rotated counter-clockwise to bottom-left.
    for decoded in frames.values():
        assert decoded.shape == (6, 3, 48, 32)
        assert decoded[0, 0, -4:, :4].float().mean() > 200 and decoded[0, 0, :4, :4].float().mean() < 50
    assert (frames["decord"].int() - frames["pyav"].int()).abs().float().mean() < 0.5


def test_variable_frame_rate_falls_back_to_pyav(tmp_path):
    path = tmp_path / "vfr.mp4"
    pts = np.cumsum([0] + [40 if index % 2 else 80 for index in range(11)]).tolist()
    write_video(path, patterned_frames(12, 32, 48), pts_ms=pts)
    decoded = decode_video(path, lambda info: np.arange(info.num_frames))
    # decord 0.6 returns 4-channel frames for this file and raises; auto mode must recover with PyAV.
    assert decoded.info.backend in ("decord", "pyav")
    assert decoded.frames.shape == (12, 3, 32, 48)
    green = decoded.frames[:, 1, 16, 24].float()
    assert torch.allclose(green, torch.arange(12) * 10.0, atol=6)


def test_odd_sized_and_very_short_video_go_through_the_processor(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, patterned_frames(5, 17, 33), codec="libx264", pix_fmt="yuv444p")
    processor = small_processor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    batch = processor(str(path))
    # 5 frames, snippet stride 4 -> snippets at frames 0 and 4: one window, 2 valid features of 16.
    assert batch["pixel_values"].shape == (1, 16, 3, 16, 16)
    assert batch["masks"].tolist() == [[True, True] + [False] * 14]
    assert batch["video_metas"][0]["duration"] == pytest.approx(5 / 25)


# ------------------------------------------------------------------------------------------------------
# Frame sampling (OpenTAD LoadFrames), hand-computed
# ------------------------------------------------------------------------------------------------------


def test_resize_sampling():
    # 10 frames -> 4 (resize_length 2 x scale 2): stride 2.5, positions 0.75, 3.25, 5.75, 8.25.
    sample = sample_resize(10, resize_length=2, scale_factor=2, segments_seconds=[[1.0, 4.0], [8.0, 12.0]],
                           labels=[1, 0], duration=10.0)
    assert sample.frame_indices.tolist() == [1, 3, 6, 8]
    assert sample.mask.tolist() == [True, True]
    np.testing.assert_allclose(sample.segments, [[0.2, 0.8], [1.6, 2.0]], rtol=1e-6)  # clipped to the video
    assert sample.labels.tolist() == [1, 0]
    # Halves round to even like numpy (8 frames -> 4: positions 0.5, 2.5, 4.5, 6.5).
    assert sample_resize(8, 4, 1).frame_indices.tolist() == [0, 2, 4, 6]
    # Upsampling a short video repeats frames.
    assert sample_resize(3, 6, 1).frame_indices.tolist() == [0, 0, 1, 1, 2, 2]


def test_sliding_window_sampling():
    # 30 frames, snippet stride 4, scale 2 -> a frame every 2: 0, 2, ..., 28 (15 frames).
    first = sample_sliding_window(30, window_size=4, scale_factor=2, snippet_stride=4, window_start_frame=0)
    assert first.frame_indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert first.mask.all()
    # Window at frame 16 = feature 4 -> frames 16..28 (7 frames), edge-padded; 7 // 2 = 3 valid features.
    last = sample_sliding_window(30, 4, 2, 4, window_start_frame=16, segments=[[0.5, 2.0]], labels=[1])
    assert last.frame_indices.tolist() == [16, 18, 20, 22, 24, 26, 28, 28]
    assert last.mask.tolist() == [True, True, True, False]
    assert last.window_start_frame == 16 and last.segments.tolist() == [[0.5, 2.0]]
    # An explicit window end (last snippet) shortens the window like OpenTAD's feature_end_idx.
    short = sample_sliding_window(30, 4, 2, 4, window_start_frame=0, window_end_frame=4)
    assert short.frame_indices.tolist() == [0, 2, 4, 6, 6, 6, 6, 6]
    assert short.mask.tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="past the end"):
        sample_sliding_window(30, 4, 2, 4, window_start_frame=64)


def test_random_trunc_keeps_only_windows_with_enough_ground_truth():
    # 12 frames, window 8: starts 0..4. GT [1, 9.5] keeps >= 0.9 only for start 1 (8 / 8.5); GT [10, 13]
    # never reaches 0.9 (at most [10, 12] = 2 / 3) and lies outside that window, so it is dropped.
    for seed in range(20):
        sample = sample_random_trunc(12, window_size=8, scale_factor=1, snippet_stride=1,
                                     segments=[[1.0, 9.5], [10.0, 13.0]], labels=[3, 4], trunc_thresh=0.9,
                                     crop_ratio=[0.9, 1.0], rng=random.Random(seed))
        assert sample.frame_indices.tolist() == list(range(1, 9))
        np.testing.assert_allclose(sample.segments, [[0.0, 8.0]])
        assert sample.labels.tolist() == [3] and sample.mask.all()


def test_random_trunc_with_scale_factor_maps_back_to_feature_grid():
    # snippet stride 4, scale 2: a frame every 2; GT feature [1, 3] = index units [2, 6]; window 4 features.
    seen_starts = set()
    for seed in range(30):
        sample = sample_random_trunc(40, window_size=4, scale_factor=2, snippet_stride=4, segments=[[1.0, 3.0]],
                                     labels=[0], trunc_thresh=1.0, crop_ratio=None, rng=random.Random(seed))
        start = sample.frame_indices[0] // 2  # in index units
        seen_starts.add(int(start))
        assert sample.frame_indices.tolist() == list(range(2 * start, 2 * start + 16, 2))
        np.testing.assert_allclose(sample.segments, [[(2 - start) / 2, (6 - start) / 2]])
    assert seen_starts == {0, 1, 2}


def test_random_trunc_short_video_crop_and_padding():
    lengths = set()
    for seed in range(40):
        sample = sample_random_trunc(5, window_size=8, scale_factor=1, snippet_stride=1, segments=[[0.0, 5.0]],
                                     labels=[0], trunc_thresh=0.5, crop_ratio=[0.9, 1.0], rng=random.Random(seed))
        valid = int(sample.mask.sum())
        lengths.add(valid)
        assert len(sample.frame_indices) == 8 and sample.mask[:valid].all()
        assert (sample.frame_indices[valid:] == sample.frame_indices[valid - 1]).all()  # edge padding
        if valid == 5:  # whole video kept: GT untouched, like OpenTAD
            np.testing.assert_allclose(sample.segments, [[0.0, 5.0]])
        else:
            np.testing.assert_allclose(sample.segments[:, 1] - sample.segments[:, 0], [4.0])
    # randint(round(0.9 * 5), 5) = 4 or 5
    assert lengths == {4, 5}
    # Seeded draws are reproducible.
    draw = lambda: sample_random_trunc(100, 8, 1, 1, [[10.0, 20.0]], [0], 0.3, None, random.Random(7))  # noqa: E731
    assert draw().frame_indices.tolist() == draw().frame_indices.tolist()


def test_processor_sample_frames_dispatches_on_mode():
    processor = small_processor(window_size=4, snippet_stride=2, sampling_method="sliding_window")
    assert processor.sample_frames(20, window_start_frame=4).frame_indices.tolist() == [4, 6, 8, 10]
    # 10 snippets, window stride int(4 * 0.5) = 2 snippets: 10 // 2 = 5 windows, the fifth right-aligned onto
    # the fourth (OpenTAD repeats it; post-processing merges the duplicate detections).
    assert processor.window_start_frames(20) == [0, 4, 8, 12, 12]
    with pytest.raises(ValueError, match="segments"):
        processor.sample_frames(20, train=True)


# ------------------------------------------------------------------------------------------------------
# Spatial pipeline
# ------------------------------------------------------------------------------------------------------


def test_eval_transform_resizes_short_side_center_crops_and_normalises():
    processor = small_processor(size={"shortest_edge": 20}, crop_size={"height": 16, "width": 16})
    frames = torch.randint(0, 256, (3, 3, 24, 34), dtype=torch.uint8)
    output = processor.transform_frames(frames)
    assert output.shape == (3, 3, 16, 16) and output.dtype == torch.float32
    # short side 24 -> 20, long side int(34 * 20 / 24 + 0.5) = 28; crop offsets (20 - 16) // 2, (28 - 16) // 2
    resized = F.interpolate(frames.float(), size=(20, 28), mode="bilinear", align_corners=False)
    expected = ((resized[..., 2:18, 6:22] / 255) - MEAN) / STD
    assert (output - expected).abs().max() < 0.02  # uint8 resize rounds to whole levels (1/255/0.225)
    constant = torch.full((2, 3, 20, 20), 200, dtype=torch.uint8)
    torch.testing.assert_close(
        processor.transform_frames(constant)[:, :, 0, 0], ((200 / 255 - MEAN) / STD)[:, :, 0, 0].expand(2, 3)
    )
    # Channels-last input is accepted too.
    torch.testing.assert_close(processor.transform_frames(frames.permute(0, 2, 3, 1)), output)


def test_train_transform_is_seeded_and_one_draw_per_clip():
    processor = small_processor()
    frame = torch.randint(0, 256, (1, 3, 40, 60), dtype=torch.uint8)
    clip = frame.expand(6, -1, -1, -1).clone()
    first = processor.transform_frames(clip, train=True, generator=torch.Generator().manual_seed(3))
    again = processor.transform_frames(clip, train=True, generator=torch.Generator().manual_seed(3))
    other = processor.transform_frames(clip, train=True, generator=torch.Generator().manual_seed(4))
    assert first.shape == (6, 3, 32, 32)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    # Identical input frames stay identical: crop, flip, ImgAug and jitter are drawn once per clip.
    assert (first - first[:1]).abs().max() == 0


def test_train_flip_and_crop_only():
    processor = small_processor(augmentation=None, do_color_jitter=False, do_random_resized_crop=False,
                                flip_ratio=1.0, train_size={"shortest_edge": 32})
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    flipped = processor.transform_frames(frames, train=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, processor.transform_frames(frames.flip(-1)))


def test_uint8_output_normalised_later_equals_the_float_output():
    frames = torch.randint(0, 256, (4, 3, 40, 60), dtype=torch.uint8)
    processor = small_processor()
    for train in (False, True):
        uint8 = processor.transform_frames(frames, train=train, generator=torch.Generator().manual_seed(2),
                                           return_uint8=True)
        assert uint8.dtype == torch.uint8 and uint8.is_contiguous() and uint8.shape == (4, 3, 32, 32)
        expected = (uint8.float() / 255 - MEAN) / STD  # the model's normalisation, computed here by hand
        torch.testing.assert_close(processor.normalize_pixel_values(uint8), expected)
        torch.testing.assert_close(
            processor.transform_frames(frames, train=train, generator=torch.Generator().manual_seed(2)), expected
        )
    # A batch (..., 3, H, W) and another dtype.
    batch = processor.normalize_pixel_values(uint8[None], dtype=torch.bfloat16)
    assert batch.dtype == torch.bfloat16 and batch.shape == (1, 4, 3, 32, 32)


def test_evaluation_frames_match_opentad_within_one_level(tests_dir):
    """OpenTAD's test transforms (decord, mmaction2 Resize(-1, 160) with OpenCV, CenterCrop 160) recorded on real
    clips; torch's uint8 bilinear rounds differently from OpenCV's fixed point by at most one level."""
    recorded = np.load(tests_dir / "data" / "opentad_eval_frames.npz")
    processor = small_processor(size={"shortest_edge": 160}, crop_size={"height": 160, "width": 160},
                                decode_backend="decord")
    for name, indices in (("demo.mp4", [0, 140, 279]), ("test.avi", [80])):
        expected = torch.from_numpy(recorded[name.replace(".", "_")]).permute(0, 3, 1, 2).int()
        decoded = decode_video(tests_dir / "data" / "videos" / name, lambda info, i=indices: np.array(i))
        uint8 = processor.transform_frames(decoded.frames, return_uint8=True)
        difference = (uint8.int() - expected).abs()
        assert difference.max() <= 1, name
        assert (difference > 0).float().mean() < 0.3, name
        # The float output is the same frames normalised.
        levels = processor.transform_frames(decoded.frames) * STD * 255 + MEAN * 255
        assert (levels - expected).abs().max() <= 1 + 1e-3, name


def test_window_frame_cache_makes_only_the_frames_it_does_not_hold():
    requested = []

    def make(indices):
        requested.append(indices.tolist())
        return torch.from_numpy(indices).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.uint8)

    cache = WindowFrameCache()
    first = cache.read("key", np.arange(0, 16, 2), make)
    second = cache.read("key", np.arange(8, 24, 2), make)
    assert requested == [list(range(0, 16, 2)), list(range(16, 24, 2))]
    assert first[:, 0, 0, 0].tolist() == list(range(0, 16, 2))
    assert second[:, 0, 0, 0].tolist() == list(range(8, 24, 2))
    cache.read("key", np.arange(8, 24, 2), make)  # everything held: nothing made
    cache.read("other file", np.arange(8, 12, 2), make)  # another key: nothing reused
    assert requested[2:] == [[8, 10]]


def test_overlapping_evaluation_windows_decode_only_their_new_frames(tests_dir, monkeypatch):
    decoded_counts = []
    original_read = video_decoding._DecordReader.read

    def counting_read(self, indices):
        decoded_counts.append(len(indices))
        return original_read(self, indices)

    monkeypatch.setattr(video_decoding._DecordReader, "read", counting_read)
    rows = video_rows(tests_dir).select([0])
    windows = expand_sliding_windows(rows, window_size=32, snippet_stride=4, mode="frame_count", overlap=0.5,
                                     test_mode=True)
    processor = small_processor(window_size=32, window_overlap=0.5, decode_backend="decord")
    dataset = windows.with_transform(TemporalDetectionTransform(processor, mode="eval", return_uint8=True))
    rows_uint8 = [dataset[index]["pixel_values"] for index in range(len(dataset))]
    # Windows of 32 snippets starting at snippets 0, 16, 32, 38 (the last right-aligned): 32, then 16, 16 and 6 new.
    assert decoded_counts == [32, 16, 16, 6]
    reference = small_processor(window_size=32, window_overlap=0.5).preprocess(rows[0]["video_path"], return_uint8=True)
    assert all(row.dtype == torch.uint8 for row in rows_uint8)
    assert torch.equal(torch.stack(rows_uint8), reference["pixel_values"])


def test_long_video_is_processed_a_group_of_windows_at_a_time(tmp_path, monkeypatch):
    reads = []
    original_read = video_decoding._PyAVReader.read

    def recording_read(self, indices):
        reads.append(indices.copy())
        return original_read(self, indices)

    monkeypatch.setattr(video_decoding._PyAVReader, "read", recording_read)
    processor = small_processor(decode_backend="pyav")  # windows of 16 frames, one every 4 video frames
    largest_reads = {}
    for num_frames in (200, 400):
        path = tmp_path / f"long_{num_frames}.mp4"
        write_video(path, patterned_frames(num_frames, 32, 48))
        reads.clear()
        batch = processor.preprocess(str(path))
        starts = processor.window_start_frames(num_frames)
        assert len(starts) >= 6 and batch["pixel_values"].shape[0] == len(starts)
        # Every frame of every window decoded exactly once, a group of windows at a time.
        wanted = np.unique(np.concatenate([processor.sample_frames(num_frames, window_start_frame=start).frame_indices
                                           for start in starts]))
        everything = np.concatenate(reads)
        assert sorted(everything.tolist()) == wanted.tolist()
        largest_reads[num_frames] = max(len(read) for read in reads)
        assert largest_reads[num_frames] <= processing_adatad.PREPROCESS_WINDOWS_PER_PASS * 16
        # The same rows as each window transformed on its own, from every frame decoded by PyAV in one go.
        with av.open(str(path)) as container:
            every_frame = torch.from_numpy(np.stack([frame.to_ndarray(format="rgb24")
                                                     for frame in container.decode(video=0)]))
        for row, start in enumerate(starts):
            indices = processor.sample_frames(num_frames, window_start_frame=start).frame_indices
            alone = processor.transform_frames(every_frame[torch.from_numpy(indices)])
            assert torch.equal(batch["pixel_values"][row], alone), row
        # Batches of 2 windows: the same rows, never more than 2 windows' frames decoded at once.
        reads.clear()
        batches = list(processor.iter_window_batches(str(path), batch_size=2, return_uint8=True))
        assert max(len(read) for read in reads) <= 2 * 16
        assert sorted(np.concatenate(reads).tolist()) == wanted.tolist()
        rows = torch.cat([item["pixel_values"] for item in batches])
        assert rows.dtype == torch.uint8 and torch.equal(processor.normalize_pixel_values(rows), batch["pixel_values"])
        assert [meta["window_start_frame"] for item in batches for meta in item["video_metas"]] == starts
    # Twice the video, the same largest read: what is held does not grow with the video's length.
    assert largest_reads[400] == largest_reads[200]


def test_header_frame_count_is_read_once_per_file_version(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, patterned_frames(8, 32, 32))
    video_decoding._header_frame_count.cache_clear()
    for _ in range(3):
        decode_video(path, lambda info: np.arange(2))
    assert video_decoding._header_frame_count.cache_info().misses == 1
    write_video(path, patterned_frames(12, 32, 32))  # rewritten: a new size (and modification time)
    assert decode_video(path, lambda info: np.arange(2)).info.header_num_frames == 12
    assert video_decoding._header_frame_count.cache_info().misses == 2


def test_random_resized_crop_box_stays_inside_and_falls_back_to_center():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, height, width = random_resized_crop_box(40, 60, (0.08, 1.0), (3 / 4, 4 / 3), generator)
        assert 0 <= top and top + height <= 40 and 0 <= left and left + width <= 60
        assert 0.08 * 2400 * 0.8 <= height * width <= 2400
    # An impossible area (the whole frame at aspect 4/3 of a 10x100 frame) falls back to the centered square.
    assert random_resized_crop_box(10, 100, (1.0, 1.0), (4 / 3, 4 / 3), generator) == (0, 45, 10, 10)


# ------------------------------------------------------------------------------------------------------
# End to end on real clips
# ------------------------------------------------------------------------------------------------------


def test_real_clip_through_processor_has_model_layout(tests_dir):
    path = tests_dir / "data" / "videos" / "demo.mp4"  # 280 frames, 28 fps -> 70 snippets of stride 4
    processor = small_processor(window_size=32, window_overlap=0.5)
    batch = processor(str(path))
    starts = [meta["window_start_frame"] for meta in batch["video_metas"]]
    assert starts == [0, 64, 128, 152]  # window stride 16 snippets; the last one right-aligned (70 - 32)
    assert batch["pixel_values"].shape == (4, 32, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["masks"].dtype == torch.bool and batch["masks"].all()
    assert batch["video_metas"][0] == {"video_id": "demo", "sampling_method": "sliding_window", "fps": 28.0,
                                      "duration": 10.0, "snippet_stride": 4, "window_start_frame": 0,
                                      "offset_frames": 0}
    # A decoded array gives the same as the file.
    decoded = decode_video(path, lambda info: np.arange(info.num_frames)).frames
    from_array = processor(decoded.permute(0, 2, 3, 1).numpy(), fps=[28.0])
    torch.testing.assert_close(from_array["pixel_values"], batch["pixel_values"])

    resize = small_processor(sampling_method="resize", resize_length=8, scale_factor=2)
    resized = resize(str(path))
    assert resized["pixel_values"].shape == (1, 16, 3, 32, 32) and resized["masks"].all()
    assert resized["video_metas"][0]["sampling_method"] == "resize" and resized["video_metas"][0]["resize_length"] == 8


def video_rows(tests_dir):
    features = datasets.Features({
        "video_id": datasets.Value("string"), "video_path": datasets.Value("string"),
        "duration": datasets.Value("float64"), "fps": datasets.Value("float64"),
        "num_frames": datasets.Value("int64"), "subset": datasets.Value("string"),
        "segments": datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=2)),
        "labels": datasets.Sequence(datasets.ClassLabel(names=["a", "b"])),
    })
    videos = tests_dir / "data" / "videos"
    return datasets.Dataset.from_dict({
        "video_id": ["demo", "avi", "empty"],
        "video_path": [str(videos / "demo.mp4"), str(videos / "test.avi"), str(videos / "bad" / "empty.mp4")],
        "duration": [10.0, 6.56, 1.0], "fps": [28.0, 25.0, 25.0], "num_frames": [280, 164, 25],
        "subset": ["train"] * 3, "segments": [[[1.0, 3.0], [5.0, 9.0]], [[0.5, 6.0]], [[0.1, 0.5]]],
        "labels": [[0, 1], [1], [0]],
    }, features=features)


def test_training_transform_and_collator(tests_dir):
    rows = video_rows(tests_dir)
    processor = small_processor(window_size=32)
    transform = TemporalDetectionTransform(processor, mode="train", seed=0, on_error="skip")
    dataset = rows.with_transform(transform)
    batch = collate_temporal_detection([dataset[0], dataset[1], dataset[2]])
    assert batch["pixel_values"].shape == (2, 32, 3, 32, 32) and batch["masks"].shape == (2, 32)
    assert [meta["video_id"] for meta in batch["video_metas"]] == ["demo", "avi"]
    assert len(batch["skipped_videos"]) == 1 and batch["skipped_videos"][0]["video_id"] == "empty"
    assert "empty (0 bytes)" in batch["skipped_videos"][0]["reason"]
    # test.avi: 164 frames -> 41 snippets > 32: a random window; GT frames int(s / 6.56 * 164) / 4 on the grid.
    avi = batch["labels"][1]
    assert avi["labels"].tolist() == [1] and avi["segments"].dtype == torch.float32
    assert 0 <= avi["segments"].min() and avi["segments"].max() <= 32
    # Same seed and epoch -> same draws; another epoch -> other draws.
    again = collate_temporal_detection([rows.with_transform(transform)[1]])
    torch.testing.assert_close(again["pixel_values"][0], batch["pixel_values"][1])
    transform.set_epoch(1)
    assert not torch.equal(collate_temporal_detection([dataset[1]])["pixel_values"][0], batch["pixel_values"][1])

    strict = rows.with_transform(TemporalDetectionTransform(processor, mode="train", seed=0))
    with pytest.raises(VideoDecodeError, match="video id 'empty'"):
        strict[2]


def test_eval_windows_transform_matches_processor_call(tests_dir):
    rows = video_rows(tests_dir).select([0])
    windows = expand_sliding_windows(rows, window_size=32, snippet_stride=4, mode="frame_count", overlap=0.5,
                                     test_mode=True)
    processor = small_processor(window_size=32, window_overlap=0.5)
    dataset = windows.with_transform(TemporalDetectionTransform(processor, mode="eval"))
    batch = collate_temporal_detection([dataset[index] for index in range(len(dataset))])
    direct = processor(rows[0]["video_path"])
    assert [meta["window_start_frame"] for meta in batch["video_metas"]] == [
        meta["window_start_frame"] for meta in direct["video_metas"]]
    torch.testing.assert_close(batch["pixel_values"], direct["pixel_values"])
    assert batch["labels"] is not None and all(len(item["segments"]) == 0 for item in batch["labels"])


def test_post_processing_uses_the_saved_settings(tests_dir):
    processor = small_processor(window_size=8, snippet_stride=4, max_segments=3, class_names=["a", "b"])
    metas = [processor.video_meta("demo", 28.0, 10.0, 0), processor.video_meta("demo", 28.0, 10.0, 32)]
    candidates = {
        "proposals": [torch.tensor([[0.0, 4.0], [1.0, 5.0], [6.0, 8.0], [2.0, 3.0]])] * 2,
        "scores": [torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.05, 0.7], [0.3, 0.6]])] * 2,
    }
    results = processor.post_process_temporal_detection(candidates, metas)
    assert len(results) == 1 and results[0]["video_id"] == "demo"  # windows of one video merged
    assert len(results[0]["scores"]) == 3  # max_segments
    assert results[0]["segments"].min() >= 0 and results[0]["segments"].max() <= 10.0
    assert set(results[0]["label_names"]) <= {"a", "b"}
    more = processor.post_process_temporal_detection(candidates, metas, max_segments=100)
    assert len(more[0]["scores"]) > 3
    best = processor.post_process_temporal_detection(candidates, metas, max_segments=100, threshold=0.5, top_k=2)
    assert best[0]["scores"].tolist() == [s for s in more[0]["scores"].tolist() if round(s, 4) >= 0.5][:2]
    windows = processor.post_process_temporal_detection(candidates, metas, merge_windows=False)
    merged = processor.merge_window_detections(windows, threshold=0.5, top_k=2)
    assert merged[0]["scores"].tolist() == [s for s in results[0]["scores"].tolist() if round(s, 4) >= 0.5][:2]


def test_color_jitter_folds_the_mmaction_ops_exactly():
    frames = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    output = color_jitter(frames, 0.5, 0.5, 0.5, 0.0, torch.Generator().manual_seed(5))
    # Reference: the same draws applied op by op, as mmaction2 does on each frame.
    generator = torch.Generator().manual_seed(5)
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    factors = [0.5 + u[0], 0.5 + u[1], 0.5 + u[2]]
    reference = frames.double()
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    for op in torch.randperm(4, generator=generator).tolist():
        if op == 0:
            reference = reference * factors[0]
        elif op == 1:
            mean = (reference * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
            reference = factors[1] * reference + (1 - factors[1]) * mean
        elif op == 2:
            reference = factors[2] * reference + (1 - factors[2]) * (reference * weights).sum(1, keepdim=True)
    reference = reference.clamp(0, 255).floor()
    assert (output.double() - reference).abs().max() <= 1  # float32 vs float64 at the truncation boundary
    assert (output.double() != reference).float().mean() < 0.01


def test_hue_shift_keeps_grey_and_luma():
    grey = torch.full((2, 3, 4, 4), 120, dtype=torch.uint8)
    shifted = color_jitter(grey, 0.0, 0.0, 0.0, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, grey)
    colour = torch.tensor([150, 100, 90], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    for seed in range(5):
        out = color_jitter(colour, 0.0, 0.0, 0.0, 0.1, torch.Generator().manual_seed(seed))
        luma = lambda x: 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # noqa: E731
        assert (luma(out) - luma(colour.float())).abs().max() <= 1.0


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_every_step_on_cpu(tmp_path, tests_dir):
    out = tmp_path / "gpu_check.json"
    script = tests_dir.parent / "benchmarks" / "gpu_check.py"
    subprocess.run([sys.executable, str(script), "--smoke", "--steps", "1", "--out", str(out)], check=True,
                   timeout=1200, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert report["smoke"] and report["device"] == "cpu"
    assert report["parity"]["passed"] and len(report["parity"]["tests"]) == 3, report["parity"]
    step = report["training_step"]
    assert step["frames"] == 64 and np.isfinite(step["loss"]) and step["step_time_s"] > 0, step
    assert report["memory_estimate"]["estimate_total_bytes"] > 0
    assert report["inference"]["frames_per_s"] > 0
    pipeline = report["data_pipeline"]
    assert pipeline["frames"] == 2 * pipeline["batch_size"] * 64 and pipeline["frames_per_s"] > 0, pipeline
    assert isinstance(pipeline["keeps_up"], bool)
