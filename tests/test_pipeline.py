"""Tests of the `temporal-action-detection` pipeline and the `adatad-detect` command line, on real clips from
`tests/data/videos` with a tiny random AdaTAD model."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from transformers import pipeline

from adatad import AdaTADConfig, AdaTADForTemporalDetection, AdaTADVideoProcessor
from adatad.pipeline_adatad import (
    ModelProcessorMismatchError,
    TemporalActionDetectionPipeline,
    load_detection_pipeline,
)
from adatad.video_decoding import VideoDecodeError

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["jump", "run", "wave"]
# decord's frame counts and rates (SOURCES.md): duration = frames / fps.
DURATIONS = {"demo.mp4": 10.0, "test.avi": 6.56}


def tiny_config(**overrides):
    kwargs = dict(
        backbone_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            image_size=32, patch_size=16, num_frames=8, tubelet_size=2,
        ),
        num_frames=32, image_size=32, feature_length=16, projection_hidden_size=32, projection_arch=(2, 1, 1),
        projection_num_heads=4, head_hidden_size=32, max_seq_len=16, fpn_strides=(1, 2),
        fpn_regression_ranges=((0, 4), (4, 10000)), num_labels=3,
        # A high prior gives a random model scores around 0.3-0.6, so thresholds have something to filter.
        head_prior_prob=0.3,
    )
    kwargs.update(overrides)
    return AdaTADConfig(**kwargs)


def tiny_processor(**overrides):
    # 16 features x scale_factor 2 = 32 frames per window, a frame every 2 (snippet_stride 4): 8 windows on demo.mp4.
    kwargs = dict(
        window_size=16, scale_factor=2, snippet_stride=4, size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32}, class_names=CLASS_NAMES,
    )
    kwargs.update(overrides)
    return AdaTADVideoProcessor(**kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_tiny_model(folder):
    """A tiny random AdaTAD model and its processor, saved in `folder` (seeded: the same weights every time)."""
    torch.manual_seed(0)
    AdaTADForTemporalDetection(tiny_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_adatad"))


@pytest.fixture(scope="module")
def detector(model_folder):
    return load_detection_pipeline(model_folder, device="cpu")


@pytest.fixture
def videos(tests_dir):
    return tests_dir / "data" / "videos"


def assert_valid_detections(detections, duration):
    assert detections, "a random model with prior 0.3 always yields detections at threshold 0"
    for detection in detections:
        assert set(detection) == {"label", "score", "segment"}
        assert detection["label"] in CLASS_NAMES
        start, end = detection["segment"]
        assert 0.0 <= start <= end <= duration, detection
        assert 0.0 <= detection["score"] <= 1.0
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True)


# ------------------------------------------------------------------------------------------------------
# Pipeline
# ------------------------------------------------------------------------------------------------------


def test_registered_task_builds_the_pipeline(detector):
    assert isinstance(detector, TemporalActionDetectionPipeline)
    assert detector.class_names == CLASS_NAMES
    # The task registered by `import adatad` serves models built in memory (a saved folder names its own pipeline
    # code in config.json, which transformers runs only with trust_remote_code=True).
    built = pipeline("temporal-action-detection", model=AdaTADForTemporalDetection(tiny_config()),
                     video_processor=tiny_processor(), device="cpu")
    assert isinstance(built, TemporalActionDetectionPipeline)


def test_importing_the_package_registers_the_task_without_importing_torch(tmp_path):
    script = (
        "import sys\n"
        "import adatad\n"
        "assert 'torch' not in sys.modules, 'import adatad imported torch'\n"
        "from transformers import pipeline\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "assert 'temporal-action-detection' in PIPELINE_REGISTRY.get_supported_tasks()\n"
        "config = adatad.AdaTADConfig(num_labels=2, backbone_config=dict(hidden_size=32, num_hidden_layers=1, "
        "num_attention_heads=4, intermediate_size=64, image_size=32, num_frames=8), num_frames=32, image_size=32, "
        "feature_length=16, max_seq_len=16, projection_hidden_size=32, head_hidden_size=32, projection_arch=(2, 1, 1), "
        "fpn_strides=(1, 2), fpn_regression_ranges=((0, 4), (4, 10000)))\n"
        "processor = adatad.AdaTADVideoProcessor(window_size=16, scale_factor=2, size={'shortest_edge': 32}, "
        "crop_size={'height': 32, 'width': 32}, class_names=['a', 'b'])\n"
        "detector = pipeline('temporal-action-detection', model=adatad.AdaTADForTemporalDetection(config), "
        "video_processor=processor, device='cpu')\n"
        "print(type(detector).__name__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "TemporalActionDetectionPipeline"


def test_real_clip_gives_segments_in_seconds_within_the_video(detector, videos):
    detections = detector(str(videos / "demo.mp4"), threshold=0.0)
    assert_valid_detections(detections, DURATIONS["demo.mp4"])
    # 10 s of video: predictions must spread over it, not sit on the first window only.
    assert max(d["segment"][1] for d in detections) > 5.0


def test_threshold_keeps_exactly_the_scores_above_it(detector, videos):
    everything = detector(str(videos / "demo.mp4"), threshold=0.0)
    scores = sorted(d["score"] for d in everything)
    threshold = scores[len(scores) // 2]
    kept = detector(str(videos / "demo.mp4"), threshold=threshold)
    assert kept == [d for d in everything if d["score"] >= threshold]
    assert 0 < len(kept) < len(everything)


def test_list_of_videos_matches_single_calls_and_batching(detector, videos):
    paths = [str(videos / "demo.mp4"), str(videos / "test.avi")]
    singles = [detector(path, threshold=0.0) for path in paths]
    batched = detector(paths, threshold=0.0, batch_size=3)
    assert len(batched) == 2
    for name, single, together in zip(("demo.mp4", "test.avi"), singles, batched):
        assert_valid_detections(together, DURATIONS[name])
        # Windows of both videos share model batches; batch composition must not change the result.
        assert len(single) == len(together)
        for a, b in zip(single, together):
            assert a["label"] == b["label"] and a["segment"] == pytest.approx(b["segment"], abs=0.011)
            assert a["score"] == pytest.approx(b["score"], abs=2e-4)


def test_background_decoding_gives_the_same_result_as_inline(detector, videos):
    path = str(videos / "demo.mp4")
    assert detector(path, threshold=0.0, prefetch_batches=0) == detector(path, threshold=0.0, prefetch_batches=3)


def test_detect_reports_windows_and_progress(detector, videos):
    class Progress:
        total, n = 0, 0

        def update(self, n):
            self.n += n

        def refresh(self):
            pass

    progress = Progress()
    paths = [videos / "demo.mp4", videos / "test.avi"]
    results = list(detector.detect(paths, batch_size=2, progress=progress))
    processor = detector.video_processor
    expected = [len(processor.window_start_frames(280)), len(processor.window_start_frames(164))]
    assert [r.num_windows for r in results] == expected
    assert expected[0] > 1  # demo.mp4 is longer than one window: sliding windows are merged
    assert progress.total == progress.n == sum(expected)
    assert [r.video_id for r in results] == ["demo", "test"]
    assert [r.duration for r in results] == pytest.approx([10.0, 6.56])


def test_bf16_autocast_runs(detector, videos):
    detections = detector(str(videos / "test.avi"), threshold=0.0, precision="bf16")
    assert_valid_detections(detections, DURATIONS["test.avi"])


def test_resize_mode_has_one_input_per_video(model_folder, videos):
    model = AdaTADForTemporalDetection.from_pretrained(model_folder)
    processor = tiny_processor(sampling_method="resize", train_sampling_method="resize", resize_length=16)
    resize_detector = TemporalActionDetectionPipeline(model=model, video_processor=processor, device="cpu")
    (result,) = resize_detector.detect([videos / "demo.mp4"], threshold=0.0)
    assert result.num_windows == 1
    assert_valid_detections(result.detections, DURATIONS["demo.mp4"])


# ------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------


def test_broken_video_raises_naming_the_file(detector, videos):
    broken = videos / "bad" / "truncated_demo.mp4"
    with pytest.raises(VideoDecodeError, match="truncated_demo.mp4"):
        detector(str(broken))
    # Default on_error="raise" also stops a list at the broken video.
    with pytest.raises(VideoDecodeError, match="empty.mp4.*0 bytes"):
        detector([str(videos / "test.avi"), str(videos / "bad" / "empty.mp4")])


def test_broken_video_is_skipped_and_reported(detector, videos):
    paths = [str(videos / "test.avi"), str(videos / "bad" / "truncated_test.avi"), str(videos / "demo.mp4"),
             str(videos / "no_such_clip.mp4")]
    results = detector(paths, threshold=0.0, on_error="skip", batch_size=2)
    assert results[1] == [] and results[3] == []
    assert_valid_detections(results[0], DURATIONS["test.avi"])
    assert_valid_detections(results[2], DURATIONS["demo.mp4"])
    truncated, missing = detector.skipped_videos
    assert truncated["video"].endswith("truncated_test.avi")
    assert "164 frames but only 44" in truncated["reason"]
    assert missing["video"].endswith("no_such_clip.mp4") and "does not exist" in missing["reason"]


def test_video_failing_after_some_windows_is_skipped_whole(detector, videos, monkeypatch):
    # A decode error on a later window group of demo.mp4: its earlier windows are already in model batches.
    import adatad.processing_adatad as processing

    original_decode = processing.decode_video
    calls = {"demo": 0}

    def flaky_decode(path, *args, **kwargs):
        if str(path).endswith("demo.mp4"):
            calls["demo"] += 1
            if calls["demo"] == 3:
                raise VideoDecodeError(path, "simulated read error in the middle of the file")
        return original_decode(path, *args, **kwargs)

    monkeypatch.setattr(processing, "decode_video", flaky_decode)
    results = list(detector.detect([videos / "test.avi", videos / "demo.mp4", videos / "test.avi"], threshold=0.0,
                                   on_error="skip", batch_size=2))
    assert calls["demo"] == 3
    assert "simulated read error" in str(results[1].error) and results[1].detections == []
    assert results[0].error is None and results[2].error is None
    assert results[0].detections == results[2].detections != []


def test_closing_the_stream_early_stops_the_decoder_thread(detector, videos):
    stream = detector.detect([videos / "test.avi"] * 4, threshold=0.0)
    next(stream)
    stream.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "adatad-decode"]


def test_model_processor_mismatch_is_detected_at_construction(model_folder):
    model = AdaTADForTemporalDetection.from_pretrained(model_folder)
    with pytest.raises(ModelProcessorMismatchError, match=r"24 frames per input.*`num_frames` = 32"):
        TemporalActionDetectionPipeline(model=model, video_processor=tiny_processor(window_size=12), device="cpu")
    with pytest.raises(ModelProcessorMismatchError, match=r"48x48 frames.*`image_size` is 32x32"):
        TemporalActionDetectionPipeline(
            model=model,
            video_processor=tiny_processor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48}),
            device="cpu",
        )
    with pytest.raises(
        ModelProcessorMismatchError, match=r"masks have 8 feature steps \(resize\).*`feature_length` is 16"
    ):
        # Same frame count (resize_length 8 x scale 4 = 32) but 8 feature steps for a model that expects 16.
        TemporalActionDetectionPipeline(
            model=model,
            video_processor=tiny_processor(sampling_method="resize", resize_length=8, scale_factor=4, snippet_stride=4),
            device="cpu",
        )
    with pytest.raises(ModelProcessorMismatchError, match="names 2 classes but the model predicts 3"):
        TemporalActionDetectionPipeline(
            model=model, video_processor=tiny_processor(class_names=["a", "b"]), device="cpu"
        )
    with pytest.raises(ModelProcessorMismatchError, match="video_preprocessor_config.json"):
        TemporalActionDetectionPipeline(model=model, device="cpu")


def test_missing_model_folder_is_named(tmp_path, model_folder):
    with pytest.raises(FileNotFoundError, match="no_such_model.*does not exist"):
        load_detection_pipeline(tmp_path / "no_such_model")
    model_only = tmp_path / "model_only"
    AdaTADForTemporalDetection(tiny_config()).save_pretrained(model_only)
    with pytest.raises(FileNotFoundError, match="model_only.*lacks video_preprocessor_config.json"):
        load_detection_pipeline(model_only)


# ------------------------------------------------------------------------------------------------------
# Saved folder: the task travels in config.json (custom_pipelines)
# ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_saved_pipeline_loads_in_a_fresh_interpreter_without_adatad(detector, tmp_path, videos):
    folder = tmp_path / "saved"
    detector.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["custom_pipelines"]["temporal-action-detection"]["impl"]
        == "pipeline_adatad.TemporalActionDetectionPipeline"
    )
    assert (folder / "pipeline_adatad.py").is_file() and (folder / "video_preprocessor_config.json").is_file()
    script = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        f"detector = pipeline(model={str(folder)!r}, trust_remote_code=True, device='cpu')\n"
        "assert 'adatad' not in sys.modules, 'used the installed package instead of the saved code'\n"
        f"print(json.dumps([type(detector).__module__, detector({str(videos / 'test.avi')!r}, threshold=0.0)]))\n"
    )
    env = dict(
        os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", PYTHONPATH="", OMP_NUM_THREADS="1"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    module, detections = json.loads(result.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules")
    expected = detector(str(videos / "test.avi"), threshold=0.0)
    assert len(detections) == len(expected)
    assert [d["label"] for d in detections] == [d["label"] for d in expected]


def test_every_folder_the_project_writes_runs_the_pipeline_in_a_fresh_interpreter(
    model_folder, videos, tests_dir, tmp_path
):
    """Training's best/ and last/, both converters and save_pretrained: `pipeline(model=folder, trust_remote_code=True)`
    in an interpreter that cannot import adatad."""
    sys.path.insert(0, str(REPO_ROOT / "conversion_scripts"))
    from convert_opentad_to_adatad import convert_opentad_checkpoint
    from convert_videomae_to_adatad import convert_videomae_checkpoint
    from test_conversion import write_fixture_config, write_opentad_checkpoint
    from test_training import run as run_training
    from transformers import VideoMAEConfig, VideoMAEModel

    from adatad.synthetic import generate_synthetic_dataset

    folders = {"save_pretrained": model_folder}

    fixture = tests_dir / "fixtures" / "opentad_public"
    checkpoint = tmp_path / "opentad.pth"
    write_opentad_checkpoint(fixture, checkpoint)
    folders["from_opentad"] = tmp_path / "from_opentad"
    convert_opentad_checkpoint(
        checkpoint, write_fixture_config(fixture, tmp_path / "opentad"), folders["from_opentad"], use_ema=True
    )

    videomae = tmp_path / "videomae"
    VideoMAEModel(VideoMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                 image_size=32, num_frames=4, tubelet_size=2)).save_pretrained(videomae)
    folders["from_videomae"] = tmp_path / "from_videomae"
    convert_videomae_checkpoint(videomae, folders["from_videomae"], config_overrides=dict(
        num_frames=32, image_size=32, feature_length=16, max_seq_len=16, projection_hidden_size=32, head_hidden_size=32,
        projection_arch=(2, 1, 1), fpn_strides=(1, 2), fpn_regression_ranges=((0, 4), (4, 10000)), num_labels=3))

    data = tmp_path / "synthetic"
    generate_synthetic_dataset(data, num_train_videos=8, num_val_videos=2, num_frames=48, frame_size=32, seed=3)
    run_training(
        data, tmp_path / "run", "--num_epochs", "1", overrides=["training.val_start_epoch=0", "training.val_interval=1"]
    )
    folders["training_best"], folders["training_last"] = tmp_path / "run" / "best", tmp_path / "run" / "last"
    assert json.loads((folders["training_last"] / "config.json").read_text())["id2label"]["0"] != "LABEL_0"

    for name, folder in folders.items():
        config = json.loads((folder / "config.json").read_text())
        assert (
            config["custom_pipelines"]["temporal-action-detection"]["impl"]
            == "pipeline_adatad.TemporalActionDetectionPipeline"
        ), name
        assert (folder / "pipeline_adatad.py").is_file(), name
        assert (folder / "README.md").is_file() or name == "save_pretrained", name
    script = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        f"folders = {json.dumps({name: str(folder) for name, folder in folders.items()})}\n"
        "found = {}\n"
        "for name, folder in folders.items():\n"
        "    detector = pipeline('temporal-action-detection', model=folder, trust_remote_code=True, device='cpu')\n"
        f"    found[name] = [type(detector).__module__, len(detector({str(videos / 'test.avi')!r}, threshold=0.0))]\n"
        "assert 'adatad' not in sys.modules, 'used the installed package instead of the saved code'\n"
        "print(json.dumps(found))\n"
    )
    env = dict(
        os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", PYTHONPATH="", OMP_NUM_THREADS="1"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(found) == sorted(folders)
    for name, (module, _) in found.items():
        assert module.startswith("transformers_modules"), name


def test_forward_rejects_unknown_keyword_arguments():
    model = AdaTADForTemporalDetection(tiny_config()).eval()
    pixel_values = torch.zeros(1, 32, 3, 32, 32)
    # `mask=` for `masks=` used to be swallowed, so padded steps counted as video.
    with pytest.raises(TypeError, match=r"unexpected keyword arguments 'mask' \(did you mean 'masks'\?\)"):
        model(pixel_values, mask=torch.ones(1, 16, dtype=torch.bool))
    with pytest.raises(TypeError, match="'threshold'"):
        model.model(pixel_values, threshold=0.5)


def test_pipeline_threshold_and_top_k(detector, videos):
    everything = detector(str(videos / "test.avi"), threshold=0.0)
    assert detector(str(videos / "test.avi"), threshold=0.0, top_k=3) == everything[:3]
    assert detector(str(videos / "test.avi"), threshold=0.4) == [d for d in everything if d["score"] >= 0.4]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        detector(str(videos / "test.avi"), threshold=float("nan"))


def test_loading_a_folder_with_its_own_code_leaves_the_installed_classes_registered(model_folder):
    from transformers import AutoConfig, AutoModel

    remote = pipeline("temporal-action-detection", model=str(model_folder), trust_remote_code=True, device="cpu")
    assert type(remote).__module__.startswith("transformers_modules")  # the folder's pipeline code ran
    # The folder's copies of the modules were imported; the Auto classes and the task still give the installed ones.
    assert type(AutoConfig.from_pretrained(model_folder)) is AdaTADConfig
    assert type(AutoModel.from_pretrained(model_folder)) is AdaTADForTemporalDetection
    built = pipeline("temporal-action-detection", model=AdaTADForTemporalDetection(tiny_config()),
                     video_processor=tiny_processor(), device="cpu")
    assert type(built) is TemporalActionDetectionPipeline


def test_pipeline_gives_the_detections_of_processor_model_and_post_processing(detector, model_folder, videos):
    """The two ways the README shows, on one video: the pipeline, and processor -> model ->
    `post_process_temporal_detection` by hand."""
    video = str(videos / "demo.mp4")
    model = AdaTADForTemporalDetection.from_pretrained(model_folder).eval()
    processor = AdaTADVideoProcessor.from_pretrained(model_folder)
    inputs = processor([video], return_tensors="pt")
    with torch.no_grad():
        outputs = model(inputs["pixel_values"], masks=inputs["masks"])
    (by_hand,) = processor.post_process_temporal_detection(outputs, inputs["video_metas"], threshold=0.0, top_k=None)
    by_pipeline = detector(video, threshold=0.0)
    assert len(by_pipeline) == len(by_hand["scores"]) > 0
    for detection, segment, score, name in zip(
        by_pipeline, by_hand["segments"].tolist(), by_hand["scores"].tolist(), by_hand["label_names"]
    ):
        assert detection["label"] == name
        assert detection["score"] == pytest.approx(score, abs=1e-6)
        assert detection["segment"] == pytest.approx(segment, abs=1e-6)
