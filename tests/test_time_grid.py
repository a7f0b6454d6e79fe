"""Tests for `adatad.time_grid`: seconds <-> feature grid, window bounds, and what the module split buys: a saved
model folder carries the processor's numpy time grid, not the annotation loaders, and loads without `datasets`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adatad.opentad import meta_from_opentad
from adatad.time_grid import grid_to_seconds, seconds_to_frames, seconds_to_grid, video_meta_to_seconds, window_bounds


@pytest.mark.slow
def test_import_pulls_neither_torch_nor_datasets():
    code = (
        "import sys, adatad.time_grid; "
        "assert not {'torch', 'datasets'} & set(sys.modules), sorted({'torch', 'datasets'} & set(sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_window_bounds_right_align_the_last_window():
    # 11 snippets, window 4, stride 3: [0,4) [3,7) [6,10); the tail snippet 10 is in no window (OpenTAD's loop)
    assert window_bounds(11, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    # 12 snippets: range(12 // 3 = 4) -> the 4th window [9,13) passes the end and is right-aligned to [8,12)
    assert window_bounds(12, 4, 3) == [(0, 4), (3, 7), (6, 10), (8, 12)]
    # a video shorter than one window gets one shorter window
    assert window_bounds(3, 8, 6) == [(0, 3)]




def test_seconds_to_frames_truncates_like_opentad():
    # THUMOS: int(seg / duration * frame); EPIC/Charades: int(seg * fps)
    frames = seconds_to_frames([[1.0, 2.99]], mode="frame_count", duration=10.0, num_frames=301)
    assert frames.tolist() == [[int(1.0 / 10.0 * 301), int(2.99 / 10.0 * 301)]] == [[30, 89]]  # 89.99 -> 89
    assert seconds_to_frames([[0.5, 1.259]], mode="fixed_fps", fps=30).tolist() == [[15, 37]]


def test_seconds_to_grid_modes():
    # ActivityNet resize: clip(seg / duration, 0, 1) * resize_length
    grid = seconds_to_grid([[10.0, 60.0], [-1.0, 120.0]], mode="resize", duration=100.0, resize_length=192)
    np.testing.assert_allclose(grid, [[19.2, 115.2], [0.0, 192.0]])
    # THUMOS sliding window: (int(seg / duration * frame) - window_start_frame) / snippet_stride
    grid = seconds_to_grid([[10.0, 20.0]], mode="frame_count", duration=100.0, num_frames=3000, snippet_stride=4,
                           window_start_frame=200)
    np.testing.assert_allclose(grid, [[(300 - 200) / 4, (600 - 200) / 4]])


@pytest.mark.parametrize("mode, kwargs", [
    ("frame_count", dict(num_frames=2997, snippet_stride=4)),
    ("fixed_fps", dict(fps=30.0, snippet_stride=16)),
])
def test_grid_round_trip_within_one_frame(mode, kwargs):
    rng = np.random.default_rng(0)
    duration = 100.0
    starts = rng.uniform(0, 90, 200)
    seconds = np.stack([starts, starts + rng.uniform(0.1, 10, 200)], axis=1)
    window_start_frame = 64 if mode == "frame_count" else 0
    grid = seconds_to_grid(seconds, mode=mode, duration=duration, window_start_frame=window_start_frame, **kwargs)
    back = grid_to_seconds(grid, mode=mode, duration=duration, window_start_frame=window_start_frame, **kwargs)
    frame_rate = kwargs.get("fps") or kwargs["num_frames"] / duration
    # truncation to whole frames loses less than one frame, always downwards
    assert np.all(back <= seconds + 1e-9) and np.all(seconds - back < 1.0 / frame_rate + 1e-9)


def test_grid_round_trip_resize_and_clip():
    seconds = np.array([[0.0, 12.5], [40.0, 50.0]])
    grid = seconds_to_grid(seconds, mode="resize", duration=50.0, resize_length=192)
    np.testing.assert_allclose(grid_to_seconds(grid, mode="resize", duration=50.0, resize_length=192), seconds)
    # back-conversion clips to [0, duration]
    out = grid_to_seconds([[-3.0, 500.0]], mode="fixed_fps", fps=10.0, snippet_stride=1, duration=20.0)
    assert out.tolist() == [[0.0, 20.0]]


def test_grid_to_seconds_matches_opentad_fixture(opentad_fixture):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    config = json.loads((opentad_fixture / "config.json").read_text())
    outputs = safetensors_numpy.load_file(str(opentad_fixture / "outputs.safetensors"))
    metas = config["post_processing"]["metas"]
    for index, meta in enumerate(metas):
        seconds = grid_to_seconds(
            outputs[f"post.nms_segments.{index}"], mode="fixed_fps", fps=meta["fps"], duration=meta["duration"],
            snippet_stride=meta["snippet_stride"], window_start_frame=meta["window_start_frame"],
            offset_frames=meta["offset_frames"],
        )
        np.testing.assert_allclose(seconds, outputs[f"post.seconds_segments.{index}"], atol=1e-4)


def test_conversion_argument_errors():
    with pytest.raises(ValueError, match="num_frames"):
        seconds_to_grid([[0, 1]], mode="frame_count", duration=10.0, snippet_stride=4)
    with pytest.raises(ValueError, match="fps"):
        grid_to_seconds([[0, 1]], mode="fixed_fps", duration=10.0, snippet_stride=4)
    with pytest.raises(ValueError, match="resize_length"):
        seconds_to_grid([[0, 1]], mode="resize", duration=10.0)


# Runs in a fresh interpreter that cannot import `datasets` nor the installed `adatad` package, so everything
# comes from the code copied into the saved folder.
LOAD_SAVED_FOLDER = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("datasets", "adatad"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
from transformers import AutoModel, AutoVideoProcessor
folder = sys.argv[1]
processor = AutoVideoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
assert type(processor).__name__ == "AdaTADVideoProcessor", type(processor)
assert not type(processor).__module__.startswith("adatad."), type(processor).__module__
assert str(processor.window_start_frames(300)) == sys.argv[2], processor.window_start_frames(300)
assert "datasets" not in sys.modules
print(type(processor).__module__, type(model).__name__)
"""


@pytest.mark.slow
def test_saved_folder_carries_the_time_grid_not_the_annotation_loaders(tmp_path):
    from adatad import AdaTADConfig, AdaTADForTemporalDetection, AdaTADVideoProcessor

    config = AdaTADConfig(
        backbone_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            image_size=32, patch_size=16, num_frames=8, tubelet_size=2,
        ),
        num_frames=32, image_size=32, feature_length=16, projection_hidden_size=32, projection_arch=(2, 1, 1),
        projection_num_heads=4, head_hidden_size=32, max_seq_len=16, fpn_strides=(1, 2),
        fpn_regression_ranges=((0, 4), (4, 10000)), num_labels=3,
    )
    folder = tmp_path / "model"
    AdaTADForTemporalDetection(config).save_pretrained(folder)
    processor = AdaTADVideoProcessor(window_size=16, scale_factor=2, snippet_stride=4)
    processor.save_pretrained(folder)
    expected_starts = processor.window_start_frames(300)
    assert len(expected_starts) > 1
    code_files = sorted(path.name for path in folder.glob("*.py"))
    # The decoding backends travel with the processor; annotation loaders and the loaders' dataset glue do not.
    assert "data.py" not in code_files and "dataset_transforms.py" not in code_files
    assert {"time_grid.py", "processing_adatad.py", "video_decoding.py", "lean_vit.py"} <= set(code_files), code_files

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SAVED_FOLDER, str(folder), str(expected_starts)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AdaTADForTemporalDetection" in result.stdout


def test_video_metas_name_resize_mode_and_opentad_metas_convert_to_it():
    opentad = {"video_name": "v", "fps": -1, "resize_length": 128, "duration": 64.0, "snippet_stride": 1}
    meta = meta_from_opentad(opentad)
    assert meta == {"video_id": "v", "sampling_method": "resize", "resize_length": 128, "duration": 64.0,
                    "snippet_stride": 1}
    assert video_meta_to_seconds(np.array([[32.0, 64.0]]), meta).tolist() == [[16.0, 32.0]]  # 64 s / 128 steps
    with pytest.raises(ValueError, match=r"'v'.*fps -1.*sampling_method 'resize'"):
        video_meta_to_seconds(np.array([[32.0, 64.0]]), {**meta, "sampling_method": "sliding_window", "fps": -1})
    sliding = meta_from_opentad({"video_name": "w", "fps": 10.0, "snippet_stride": 4, "window_start_frame": 8,
                                 "offset_frames": 2, "duration": 30.0})
    assert sliding["sampling_method"] == "sliding_window"
    assert video_meta_to_seconds(np.array([[5.0, 7.0]]), sliding).tolist() == [[3.0, 3.8]]  # (5 * 4 + 10) / 10
