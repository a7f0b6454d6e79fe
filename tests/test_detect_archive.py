"""Archives and near-online detection: part files, `--resume` after a kill, `--video-list`, sharding with
`accelerate launch`, `detector.stream(...)` and `adatad-detect --follow`, each compared with the plain offline run
(one process, one call over the whole video). Real clips from tests/data/videos, a tiny random AdaTAD model."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from adatad.detect import PartFiles, main, shard
from adatad.pipeline_adatad import load_detection_pipeline
from adatad.synthetic import write_mp4
from test_pipeline import save_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = ["--no-progress", "--device", "cpu", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_adatad"))


@pytest.fixture(scope="module")
def detector(model_folder):
    detector = load_detection_pipeline(model_folder, device="cpu")
    detector.video_processor.max_segments = 10**6  # no per-video cap: streamed == offline exactly
    return detector


@pytest.fixture
def archive(tests_dir, tmp_path):
    """Three videos with distinct ids (two copies of demo.mp4 under other names, and test.avi)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    videos = tests_dir / "data" / "videos"
    shutil.copy(videos / "demo.mp4", folder / "a_demo.mp4")
    shutil.copy(videos / "test.avi", folder / "b_test.avi")
    shutil.copy(videos / "demo.mp4", folder / "c_demo.mp4")
    return folder


def detect_command(*arguments):
    return [sys.executable, "-m", "adatad.detect", *map(str, arguments)]


def environment():
    python_path = str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=python_path)


def as_set(detections):
    return sorted((d["label"], d["score"], d["segment"][0], d["segment"][1]) for d in detections)


# ------------------------------------------------------------------------------------------------------
# Part files
# ------------------------------------------------------------------------------------------------------


def test_part_file_keeps_whole_lines_and_cuts_a_torn_one(tmp_path):
    parts = PartFiles(tmp_path / "out.json.parts")
    parts.write_settings({"model": "m"})
    with parts.writer(0, 1) as write:
        write({"video_id": "a", "detections": []})
    path = parts.folder / "part-00000-of-00001.jsonl"
    with open(path, "ab") as handle:  # a kill in the middle of the second line
        handle.write(b'{"video_id": "b", "detec')
    assert list(parts.records()) == ["a"]
    with parts.writer(0, 1) as write:  # the next run appends after the last whole line
        write({"video_id": "c", "detections": []})
    lines = path.read_text().splitlines()
    assert lines == ['{"video_id": "a", "detections": []}', '{"video_id": "c", "detections": []}']
    assert list(parts.records()) == ["a", "c"]


def test_shards_are_round_robin_and_cover_every_video_once():
    videos = [Path(f"v{i}.mp4") for i in range(7)]
    shards = [shard(videos, index, 3) for index in range(3)]
    assert shards[0] == [Path("v0.mp4"), Path("v3.mp4"), Path("v6.mp4")]
    assert sorted(v for s in shards for v in s) == sorted(videos)


def test_video_list_and_a_left_over_parts_folder(model_folder, archive, tmp_path, capsys):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# the archive\n{archive / 'b_test.avi'}\n\n{archive / 'a_demo.mp4'}\n")
    output = tmp_path / "out.jsonl"
    assert main(["--video-list", str(listing), "--model", str(model_folder), "--output", str(output), *FAST]) == 0
    assert [json.loads(line)["video"] for line in output.read_text().splitlines()][0] == "b_test"
    assert not (tmp_path / "out.jsonl.parts").exists()  # removed once the output is written

    with PartFiles(tmp_path / "out.jsonl.parts").writer(0, 1) as write:  # an earlier run, stopped after a video
        write({"video_id": "a_demo", "video": "a_demo.mp4", "duration": 10.0, "detections": []})
    with pytest.raises(SystemExit) as exit_info:
        main([str(archive / "a_demo.mp4"), "--model", str(model_folder), "--output", str(output), *FAST])
    assert exit_info.value.code == 2
    assert "add --resume" in capsys.readouterr().err


def test_resume_refuses_other_settings(model_folder, archive, tmp_path, capsys):
    output = tmp_path / "out.json"
    parts = PartFiles(tmp_path / "out.json.parts")
    parts.write_settings(
        {"model": str(model_folder), "threshold": 0.5, "top_k": None, "precision": "fp32", "dtype": "fp32"}
    )
    with parts.writer(0, 1) as write:  # one video finished with those settings
        write({"video_id": "a_demo", "video": "a_demo.mp4", "duration": 10.0, "detections": []})
    with pytest.raises(SystemExit) as exit_info:
        main([str(archive), "--model", str(model_folder), "--output", str(output), "--resume", *FAST])
    assert exit_info.value.code == 2
    assert "threshold 0.5 -> 0.0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------
# A killed run, resumed; several processes
# ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_after_its_first_video_resumes_to_the_uninterrupted_result(model_folder, archive, tmp_path):
    reference = tmp_path / "reference.json"
    arguments = [archive, "--model", model_folder, *FAST]
    assert main([*map(str, arguments), "--output", str(reference)]) == 0  # the uninterrupted run, in-process

    output = tmp_path / "killed.json"
    part = tmp_path / "killed.json.parts" / "part-00000-of-00001.jsonl"
    process = subprocess.Popen(detect_command(*arguments, "--output", output), env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (part.exists() and part.read_text().count("\n") >= 1) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [json.loads(line)["video_id"] for line in part.read_text().splitlines()]
    assert 1 <= len(done) < 3 and not output.exists(), "the kill must land between the first and the last video"

    result = subprocess.run(detect_command(*arguments, "--output", output, "--resume"), capture_output=True,
                            text=True, env=environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--resume: {len(done)} of 3 video(s) already done" in result.stdout
    assert output.read_bytes() == reference.read_bytes()
    assert not part.parent.exists()


@pytest.mark.slow
def test_two_accelerate_processes_give_the_one_process_result(model_folder, archive, tmp_path):
    reference, sharded = tmp_path / "one.csv", tmp_path / "two.csv"
    arguments = [archive, "--model", model_folder, "--no-progress", "--threads", "1"]
    assert main([*map(str, arguments), "--output", str(reference)]) == 0  # one process: this one
    # accelerate starts several local CPU processes through its multi-GPU launcher; ACCELERATE_USE_CPU=true makes
    # them a gloo group (training/configs/cpu_2proc.yaml explains why).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(REPO_ROOT / "training" / "configs" / "cpu_2proc.yaml"), "-m", "adatad.detect"]
    result = subprocess.run([*launch, *map(str, arguments), "--output", str(sharded)], capture_output=True, text=True,
                            env=dict(environment(), ACCELERATE_USE_CPU="true"), timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sharded.read_bytes() == reference.read_bytes()
    assert len(reference.read_text().splitlines()) > 100


# ------------------------------------------------------------------------------------------------------
# Near-online
# ------------------------------------------------------------------------------------------------------


def decoded_frames(detector, video):
    decoded = detector.video_processor.decode(video, lambda info: np.arange(info.num_frames))
    return decoded.frames.permute(0, 2, 3, 1).contiguous(), decoded.info.fps


@pytest.mark.parametrize("chunk", [1, 37])
def test_streamed_detections_are_the_offline_ones(detector, tests_dir, chunk):
    video = tests_dir / "data" / "videos" / "demo.mp4"
    offline = detector(str(video), threshold=0.0)
    frames, fps = decoded_frames(detector, video)
    stream = detector.stream(fps=fps, threshold=0.0)
    streamed, before_the_end = [], 0
    for first in range(0, len(frames), chunk):
        found = stream.push(frames[first : first + chunk])
        seen = min(first + chunk, len(frames)) / fps
        # final means settled before the frames seen so far: nothing in the future can reach them
        assert all(d["segment"][1] <= seen for d in found)
        streamed += found
    before_the_end = len(streamed)
    streamed += stream.finish()
    assert stream.late_candidates == 0
    assert 0 < before_the_end < len(offline), "some detections must come out before the video ends"
    assert as_set(streamed) == as_set(offline)


def test_streaming_keeps_the_threshold_and_min_score_rule(detector, tests_dir):
    video = tests_dir / "data" / "videos" / "test.avi"
    frames, fps = decoded_frames(detector, video)
    processor = detector.video_processor
    # min_score above every score of one class: NMS then keeps only that class's first pick over the whole video
    original = processor.min_score
    processor.min_score = 0.45
    try:
        offline = detector(str(video), threshold=0.3)
        stream = detector.stream(fps=fps, threshold=0.3)
        streamed = [d for first in range(0, len(frames), 20) for d in stream.push(frames[first : first + 20])]
        streamed += stream.finish()
    finally:
        processor.min_score = original
    assert as_set(streamed) == as_set(offline)
    assert all(d["score"] >= 0.3 for d in streamed)


@pytest.mark.slow
def test_follow_on_a_growing_file_gives_the_offline_result(model_folder, detector, tests_dir, tmp_path):
    frames, fps = decoded_frames(detector, tests_dir / "data" / "videos" / "demo.mp4")
    complete = tmp_path / "complete.mkv"
    write_mp4(complete, frames.numpy(), fps)  # MKV: readable while it is being written
    growing = tmp_path / "growing.mkv"
    data = complete.read_bytes()

    def write_slowly():
        with open(growing, "wb") as handle:
            for first in range(0, len(data), len(data) // 8 + 1):
                handle.write(data[first : first + len(data) // 8 + 1])
                handle.flush()
                time.sleep(0.5)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    followed = tmp_path / "followed.json"
    result = subprocess.run(
        detect_command(growing, "--follow", "--follow-timeout", "3", "--model", model_folder, "--output", followed,
                       *FAST),
        capture_output=True, text=True, env=environment(), timeout=600,
    )
    writer.join()
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    offline = tmp_path / "offline.json"
    assert main([str(complete), "--model", str(model_folder), "--output", str(offline), *FAST]) == 0
    expected = json.loads(offline.read_text())["results"]["complete"]
    assert as_set(json.loads(followed.read_text())["results"]["growing"]) == as_set(expected)
    assert sorted((d["label"], d["score"], d["start"], d["end"]) for d in lines) == as_set(expected)


def test_window_batches_of_a_long_video_are_the_preprocessed_windows(detector, tests_dir):
    processor = detector.video_processor
    video = tests_dir / "data" / "videos" / "demo.mp4"
    whole = processor([str(video)])
    batches = list(processor.iter_window_batches(str(video), batch_size=3))
    assert [len(b["video_metas"]) for b in batches][:-1] == [3] * (len(batches) - 1)
    assert torch.equal(torch.cat([b["pixel_values"] for b in batches]), whole["pixel_values"])
    assert torch.equal(torch.cat([b["masks"] for b in batches]), whole["masks"])
    assert [m for b in batches for m in b["video_metas"]] == whole["video_metas"]
