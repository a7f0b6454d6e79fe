"""Tests of the `adatad-detect` command line: formats, thresholds, output safety, model loading without the folder's
code, Hub repo ids from the cache, non-finite detector outputs and exit statuses. Real clips from
`tests/data/videos`, a tiny random AdaTAD model."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import torch

from adatad import AdaTADForTemporalDetection
from adatad.detect import main as detect_main
from adatad.pipeline_adatad import load_detection_pipeline
from adatad.post_processing import NonFiniteDetectorOutputError
from test_pipeline import DURATIONS, assert_valid_detections, save_tiny_model, tiny_config, tiny_processor

FAST = ["--no-progress", "--device", "cpu", "--threads", "1"]
REPO_ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_adatad"))


@pytest.fixture
def videos(tests_dir):
    return tests_dir / "data" / "videos"


def run_cli(*arguments, env=None, cwd=None):
    """`adatad-detect` in a fresh interpreter (what a user runs)."""
    command = [sys.executable, "-m", "adatad.detect", *map(str, arguments)]
    environment = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment)


# ------------------------------------------------------------------------------------------------------
# JSON output, plot, skipped videos, exit statuses
# ------------------------------------------------------------------------------------------------------


def test_cli_writes_json_and_plot_and_skips_broken_video(model_folder, videos, tmp_path):
    output, plot = tmp_path / "out" / "detections.json", tmp_path / "timeline.png"
    result = run_cli(
        videos / "demo.mp4", videos / "bad" / "not_a_video.mp4", "--model", model_folder, "--threshold", "0.3",
        "--output", output, "--plot", plot, "--batch-size", "4", "--device", "cpu", "--threads", "1", cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # one video skipped
    assert "not_a_video.mp4" in result.stderr and "not a video" in result.stderr
    assert "window" in result.stderr  # the progress bar
    submission = json.loads(output.read_text())
    assert submission["version"] == "VERSION 1.3" and submission["external_data"] == {}
    assert list(submission["results"]) == ["demo"]
    detections = submission["results"]["demo"]
    assert_valid_detections(detections, DURATIONS["demo.mp4"])
    assert min(d["score"] for d in detections) >= 0.3
    assert "cut the ranked lists" in result.stdout  # a thresholded JSON says it is not for adatad-eval
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "timeline.png"]  # no temporary files left


def test_cli_folder_argument_ground_truth_and_success_status(model_folder, videos, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "clip.avi").symlink_to(videos / "test.avi")
    (folder / "notes.txt").write_text("not a video, ignored by extension")
    ground_truth = tmp_path / "gt.json"
    ground_truth.write_text(json.dumps({"database": {"clip": {"annotations": [{"segment": [1, 2], "label": "run"}]}}}))
    output, plot = tmp_path / "detections.json", tmp_path / "timeline.png"
    status = detect_main([str(folder), "--model", str(model_folder), "--output", str(output), "--threshold", "0",
                          "--plot", str(plot), "--ground-truth", str(ground_truth), *FAST])
    assert status == 0
    results = json.loads(output.read_text())["results"]
    assert list(results) == ["clip"]
    assert_valid_detections(results["clip"], DURATIONS["test.avi"])
    assert "for 1 video(s)" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_keeps_the_whole_ranked_list_by_default(model_folder, videos, tmp_path, capsys):
    output = tmp_path / "detections.json"
    assert detect_main([str(videos / "test.avi"), "--model", str(model_folder), "--output", str(output), *FAST]) == 0
    detections = json.loads(output.read_text())["results"]["test"]
    # A random model with prior 0.3 scores many detections below the viewing threshold: they must stay for mAP.
    assert min(d["score"] for d in detections) < 0.3
    assert "score >= 0.0" in capsys.readouterr().out
    top = tmp_path / "top.json"
    assert (
        detect_main(
            [str(videos / "test.avi"), "--model", str(model_folder), "--output", str(top), "--top-k", "3", *FAST]
        )
        == 0
    )
    assert json.loads(top.read_text())["results"]["test"] == detections[:3]


def test_cli_on_error_raise_stops_with_the_reason(model_folder, videos, tmp_path, capsys):
    output = tmp_path / "detections.json"
    status = detect_main([str(videos / "bad" / "empty.mp4"), "--model", str(model_folder), "--output", str(output),
                          "--on-error", "raise", *FAST])
    assert status == 1
    assert "empty.mp4" in capsys.readouterr().err
    assert not output.exists()


def test_cli_every_video_failing_keeps_the_earlier_result(model_folder, videos, tmp_path, capsys):
    output = tmp_path / "detections.json"
    output.write_text('{"results": {"earlier": []}}')
    status = detect_main([str(tmp_path / "typo.mp4"), str(videos / "bad" / "empty.mp4"), "--model", str(model_folder),
                          "--output", str(output), *FAST])
    assert status == 1
    err = capsys.readouterr().err
    assert "none of the 2 video(s)" in err and "left as it was" in err and "typo.mp4" in err
    assert output.read_text() == '{"results": {"earlier": []}}'
    assert [p.name for p in tmp_path.iterdir()] == ["detections.json"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["VIDEO", "--model", "MISSING"], "does_not_exist.*does not exist"),
        (["VIDEO", "VIDEO", "--model", "MODEL"], "both give the video id 'demo'"),
        (["VIDEO", "--model", "MODEL", "--batch-size", "0"], r"--batch-size: must be an integer >= 1, got '0'"),
        (["VIDEO", "--model", "MODEL", "--ground-truth", "MISSING"], "cannot read --ground-truth .*does_not_exist"),
        (["VIDEO", "--model", "MODEL", "--threshold", "nan"], r"--threshold: must be a number in \[0, 1\], got 'nan'"),
        (["VIDEO", "--model", "MODEL", "--threshold", "1.5"], r"--threshold: must be a number in \[0, 1\], got '1.5'"),
        (["VIDEO", "--model", "MODEL", "--threshold", "-0.1"], r"--threshold: must be a number in \[0, 1\]"),
        (["VIDEO", "--model", "MODEL", "--top-k", "0"], r"--top-k: must be an integer >= 1"),
        (["VIDEO", "--model", "MODEL", "--threads", "-1"], r"--threads: must be an integer >= 1"),
        (["VIDEO", "--model", "MODEL", "--format", "xml"], r"--format: invalid choice"),
        (["VIDEO", "--model", "../relative/nowhere"], "relative/nowhere.*does not exist"),
        (["VIDEO", "VIDEO2", "--model", "MODEL", "--output", "-", "--format", "srt"], "--output - holds one srt file"),
    ],
)
def test_cli_usage_errors_exit_2(arguments, message, model_folder, videos, tmp_path, capsys):
    replacements = {"VIDEO": str(videos / "demo.mp4"), "VIDEO2": str(videos / "test.avi"), "MODEL": str(model_folder),
                    "MISSING": str(tmp_path / "does_not_exist")}
    arguments = [replacements.get(argument, argument) for argument in arguments]
    if arguments.count(str(videos / "demo.mp4")) == 2:
        # Same id from two different files.
        arguments[1] = str(tmp_path / "demo.mp4")
    with pytest.raises(SystemExit) as exit_info:
        detect_main(arguments + ["--output", str(tmp_path / "out.json")] * ("--output" not in arguments))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_cli_mismatched_model_folder_exits_2(tmp_path, videos, capsys):
    folder = tmp_path / "mismatched"
    AdaTADForTemporalDetection(tiny_config()).save_pretrained(folder)
    tiny_processor(window_size=32).save_pretrained(folder)
    with pytest.raises(SystemExit) as exit_info:
        detect_main(
            [str(videos / "demo.mp4"), "--model", str(folder), "--device", "cpu", "--output", str(tmp_path / "o.json")]
        )
    assert exit_info.value.code == 2
    assert "64 frames per input" in capsys.readouterr().err


def test_cli_broken_model_folder_exits_2_with_one_line_and_debug_shows_the_traceback(
    model_folder, tmp_path, videos, capsys
):
    folder = tmp_path / "broken"
    shutil.copytree(model_folder, folder)
    (folder / "config.json").write_text("{ not json")
    arguments = [str(videos / "demo.mp4"), "--model", str(folder), "--output", str(tmp_path / "o.json"), *FAST]
    with pytest.raises(SystemExit) as exit_info:
        detect_main(arguments)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"cannot load the model from '.*broken'", err) and "Traceback" not in err
    (folder / "config.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        detect_main(arguments)
    assert exit_info.value.code == 2
    assert "lacks config.json" in capsys.readouterr().err
    shutil.copy(model_folder / "config.json", folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception) as debug_info:  # --debug: the original exception, not a one-line exit
        detect_main(arguments + ["--debug"])
    assert not isinstance(debug_info.value, SystemExit)


# ------------------------------------------------------------------------------------------------------
# Output safety
# ------------------------------------------------------------------------------------------------------


def test_cli_refuses_to_write_over_an_input(model_folder, videos, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    shutil.copy(videos / "demo.mp4", video)
    original = video.read_bytes()
    for arguments, message in [
        (["--output", str(video)], "--output '.*clip.mp4' is the input file"),
        (["--output", str(tmp_path / "sub" / ".." / "clip.mp4")], "is the input file"),
        (
            ["--output", str(tmp_path / "d.json"), "--plot", str(tmp_path / "d.json")],
            "--plot '.*d.json' is also --output",
        ),
        (["--output", str(model_folder / "config.json")], "is the input file"),
    ]:
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(SystemExit) as exit_info:
            detect_main([str(video), "--model", str(model_folder), *arguments, *FAST])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err)
    assert video.read_bytes() == original
    assert not (tmp_path / "d.json").exists()


def test_cli_checks_the_output_location_before_loading_the_model(videos, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # The model does not exist either: the output is checked first, so that error is the one reported.
    with pytest.raises(SystemExit) as exit_info:
        detect_main(
            [str(videos / "demo.mp4"), "--model", str(tmp_path / "no_model"), "--output", str(blocker / "out.json")]
        )
    assert exit_info.value.code == 2
    assert re.search(r"cannot write --output '.*a_file/out.json'", capsys.readouterr().err)
    folder_output = tmp_path / "folder.json"
    folder_output.mkdir()
    with pytest.raises(SystemExit):
        detect_main([str(videos / "demo.mp4"), "--model", str(tmp_path / "no_model"), "--output", str(folder_output)])
    assert "is a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------------


def test_srt_parses_back_to_the_same_segments(model_folder, videos, tmp_path):
    json_output, srt_output = tmp_path / "d.json", tmp_path / "demo.srt"
    common = [str(videos / "demo.mp4"), "--model", str(model_folder), "--threshold", "0.3", *FAST]
    assert detect_main(common + ["--output", str(json_output)]) == 0
    assert detect_main(common + ["--output", str(srt_output)]) == 0  # format from the extension
    detections = json.loads(json_output.read_text())["results"]["demo"]
    subtitles = list(srt.parse(srt_output.read_text()))
    assert len(subtitles) == len(detections) > 0
    parsed = sorted(
        (
            s.start.total_seconds(),
            s.end.total_seconds(),
            s.content.rsplit(" (", 1)[0],
            float(s.content.rsplit("(", 1)[1][:-1]),
        )
        for s in subtitles
    )
    expected = sorted((d["segment"][0], d["segment"][1], d["label"], round(d["score"], 2)) for d in detections)
    for got, want in zip(parsed, expected):
        assert got[0] == pytest.approx(want[0], abs=1e-3) and got[1] == pytest.approx(want[1], abs=1e-3)
        assert got[2:] == want[2:]
    starts = [s.start for s in subtitles]
    assert starts == sorted(starts)  # cues in time order, as players expect


def test_several_videos_one_subtitle_file_each_and_one_csv_jsonl(model_folder, videos, tmp_path):
    inputs = [str(videos / "demo.mp4"), str(videos / "test.avi"), "--model", str(model_folder), *FAST]
    assert detect_main(inputs + ["--output", str(tmp_path / "subs.vtt")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subs.demo.vtt", "subs.test.vtt"]
    vtt = (tmp_path / "subs.test.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    cue_times = re.findall(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)$", vtt, flags=re.M)
    assert cue_times and len(cue_times) == vtt.count(" --> ")

    assert detect_main(inputs + ["--output", str(tmp_path / "all.json")]) == 0
    results = json.loads((tmp_path / "all.json").read_text())["results"]
    assert detect_main(inputs + ["--output", str(tmp_path / "all.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert {row["video"] for row in rows} == {"demo", "test"}
    assert len(rows) == sum(len(d) for d in results.values())
    assert [
        (r["label"], float(r["start"]), float(r["end"]), float(r["score"])) for r in rows if r["video"] == "test"
    ] == [(d["label"], *d["segment"], d["score"]) for d in results["test"]]
    assert detect_main(inputs + ["--output", str(tmp_path / "all.txt"), "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "all.txt").read_text().splitlines()]
    assert [(x["video"], x["start"], x["end"], x["label"], x["score"]) for x in lines] == [
        (row["video"], float(row["start"]), float(row["end"]), row["label"], float(row["score"])) for row in rows
    ]


def test_output_dash_writes_to_standard_output(model_folder, videos, tmp_path, capsys):
    assert (
        detect_main([str(videos / "test.avi"), "--model", str(model_folder), "--output", "-", "--format", "csv", *FAST])
        == 0
    )
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert rows and {row["video"] for row in rows} == {"test"}
    assert "wrote" in captured.err and "standard output" in captured.err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------------
# Model folders: no code from the folder without --trust-remote-code; Hub repo ids from the cache
# ------------------------------------------------------------------------------------------------------


def test_folder_code_runs_only_with_trust_remote_code(model_folder, videos, tmp_path, capsys):
    folder = tmp_path / "downloaded"
    shutil.copytree(model_folder, folder)
    marker = tmp_path / "planted_code_ran"
    for name in ("modeling_adatad.py", "processing_adatad.py", "configuration_adatad.py", "pipeline_adatad.py"):
        with (folder / name).open("a") as module:
            module.write(f"\nimport pathlib\npathlib.Path({str(marker)!r}).write_text({name!r})\n")
    arguments = [str(videos / "test.avi"), "--model", str(folder), "--output", str(tmp_path / "d.json"), *FAST]
    assert detect_main(arguments) == 0
    assert not marker.exists()
    assert json.loads((tmp_path / "d.json").read_text())["results"]["test"]
    load_detection_pipeline(folder, device="cpu")
    assert not marker.exists()

    # A folder whose model the installed package does not provide needs its own code: refused without the flag ...
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "adatad-variant"}))
    with pytest.raises(SystemExit) as exit_info:
        detect_main(arguments)
    assert exit_info.value.code == 2
    assert "pass --trust-remote-code" in capsys.readouterr().err
    assert not marker.exists()
    # ... and run with it (in a fresh interpreter with its own module cache).
    result = run_cli(*arguments, "--trust-remote-code", env={"HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists()


def test_model_given_as_a_hub_repo_id_is_read_from_the_cache_offline(model_folder, videos, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-adatad"
    shutil.copytree(model_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    output = tmp_path / "d.json"
    result = run_cli(videos / "test.avi", "--model", "someone/tiny-adatad", "--output", output, *FAST, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_valid_detections(json.loads(output.read_text())["results"]["test"], DURATIONS["test.avi"])
    missing = run_cli(videos / "test.avi", "--model", "someone/not-cached", "--output", output, *FAST, env=env)
    assert missing.returncode == 2
    assert "someone/not-cached" in missing.stderr and "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------------------------------
# Non-finite detector outputs
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan_adatad")
    model = AdaTADForTemporalDetection(tiny_config())
    with torch.no_grad():
        model.detector.head.classification_head.bias.fill_(float("nan"))
    model.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def test_non_finite_outputs_skip_the_video_naming_the_window(nan_model_folder, videos, tmp_path, capsys):
    output = tmp_path / "d.json"
    status = detect_main([str(videos / "demo.mp4"), "--model", str(nan_model_folder), "--output", str(output), *FAST])
    assert status == 1
    err = capsys.readouterr().err
    assert re.search(r"demo.mp4'?, window starting at frame 0: \d+ of \d+ .*NaN or infinite", err), err
    assert "wrote 0 detections" not in err and not output.exists()
    status = detect_main([str(videos / "demo.mp4"), "--model", str(nan_model_folder), "--output", str(output),
                          "--on-error", "raise", *FAST])
    assert status == 1 and "NaN or infinite" in capsys.readouterr().err


def test_non_finite_outputs_raise_in_the_pipeline(nan_model_folder, videos):
    detector = load_detection_pipeline(nan_model_folder, device="cpu")
    with pytest.raises(NonFiniteDetectorOutputError, match="window starting at frame 0"):
        detector(str(videos / "test.avi"))
    detections = detector([str(videos / "test.avi")], on_error="skip")
    assert detections == [[]] and "NaN or infinite" in detector.skipped_videos[0]["reason"]


# ------------------------------------------------------------------------------------------------------
# Packaging: version, dependency ranges, optional extras, adatad-env
# ------------------------------------------------------------------------------------------------------

def test_one_version_and_dependency_ranges_this_machine_satisfies():
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from setuptools.config.setupcfg import read_configuration

    import adatad

    configuration = read_configuration(REPO_ROOT / "setup.cfg")
    assert configuration["metadata"]["version"] == adatad.__version__
    requirements = {Requirement(r).name: Requirement(r) for r in configuration["options"]["install_requires"]}
    for name in ("torch", "torchvision"):
        installed = version(name).split("+")[0]
        assert "==" not in str(requirements[name].specifier), f"{name} is pinned, not a range"
        assert requirements[name].specifier.contains(installed), (name, installed, requirements[name])
    # Plotting and tracking are extras, not hard dependencies.
    assert not {"matplotlib", "tensorboard"} & set(requirements)
    extras = configuration["options"]["extras_require"]
    assert any(r.startswith("matplotlib") for r in extras["plot"]) and any(
        r.startswith("tensorboard") for r in extras["tracking"]
    )


def test_plotting_without_matplotlib_says_which_extra_to_install(tmp_path):
    script = "import sys; sys.modules['matplotlib'] = None\nimport adatad.visualization\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode != 0 and "pip install 'adatad[plot]'" in result.stderr


def test_adatad_env_reports_versions_devices_and_decoders(capsys):
    from adatad.env import main as env_main

    assert env_main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (
        report["packages"]["torch"] == torch.__version__.split("+")[0]
        or report["packages"]["torch"] == torch.__version__
    )
    assert report["devices"]["cuda available"] == torch.cuda.is_available()
    assert set(report["decoders"]) >= {"decord", "av", "torchcodec"}
    assert env_main([]) == 0
    assert "decoders:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------
# Sharing: model cards and --push_to_hub (upload monkeypatched: no network)
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def uploads(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kwargs: calls.append(("create", repo_id)))

    def upload_folder(repo_id, folder_path, **kwargs):
        calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def test_videomae_converter_writes_a_card_and_pushes(tmp_path, uploads):
    from huggingface_hub import ModelCard
    from transformers import VideoMAEConfig, VideoMAEModel

    sys.path.insert(0, str(REPO_ROOT / "conversion_scripts"))
    import convert_videomae_to_adatad

    source = tmp_path / "videomae"
    VideoMAEModel(VideoMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                 image_size=32, num_frames=4, tubelet_size=2)).save_pretrained(source)
    output = tmp_path / "converted"
    convert_videomae_to_adatad.main([
        "--checkpoint", str(source), "--output", str(output), "--num-frames", "32", "--image-size", "32",
        "--feature-length", "16", "--base-model", "MCG-NJU/videomae-small-finetuned-kinetics",
        "--push_to_hub", "someone/videomae-s-adatad",
    ])
    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "other" and "temporal-action-detection" in card.data.tags
    assert card.data.base_model == "MCG-NJU/videomae-small-finetuned-kinetics" and card.data.license == "apache-2.0"
    assert card.data.eval_results is None  # nothing measured: no made-up numbers
    assert 'model="someone/videomae-s-adatad"' in card.text
    assert (output / "video_preprocessor_config.json").is_file()
    assert uploads[0] == ("create", "someone/videomae-s-adatad")
    assert uploads[1][:2] == ("upload", "someone/videomae-s-adatad") and "README.md" in uploads[1][2]


def test_opentad_converter_card_carries_the_measured_map(tests_dir, tmp_path, uploads):
    from huggingface_hub import ModelCard

    sys.path.insert(0, str(REPO_ROOT / "conversion_scripts"))
    import convert_opentad_to_adatad
    from test_conversion import write_fixture_config, write_opentad_checkpoint

    fixture = tests_dir / "fixtures" / "opentad_public"
    checkpoint = tmp_path / "opentad.pth"
    write_opentad_checkpoint(fixture, checkpoint)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"mAP_per_tiou": {"0.3": 0.8123, "0.5": 0.7}, "average_mAP": 0.75615}))
    output = tmp_path / "converted"
    convert_opentad_to_adatad.main([
        "--checkpoint", str(checkpoint), "--config", str(write_fixture_config(fixture, tmp_path / "opentad")),
        "--output", str(output), "--use-ema", "--dataset", "thumos-14", "--eval-results", str(metrics),
        "--push-to-hub", "someone/adatad-fixture",
    ])
    card = ModelCard.load(output / "README.md")
    assert card.data.datasets == ["thumos-14"] and card.data.pipeline_tag == "other"
    values = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert values == {"mAP@tIoU=0.3": 81.23, "mAP@tIoU=0.5": 70.0, "average mAP": 75.61}
    assert all(result.dataset_type == "thumos-14" for result in card.data.eval_results)
    assert [call[0] for call in uploads] == ["create", "upload"]
    with pytest.raises(SystemExit):
        convert_opentad_to_adatad.parse_args(
            ["--checkpoint", "c", "--config", "x", "--output", "o", "--eval-results", "m"]
        )


def test_training_model_card_parses_with_eval_results_and_the_resolved_preset():
    from huggingface_hub import ModelCard

    sys.path.insert(0, str(REPO_ROOT / "training"))
    import tad_checkpoints

    from adatad.presets import load_preset

    preset = load_preset("synthetic-tiny")
    metrics = {"mAP_per_tiou": {0.5: 0.5, 0.75: 0.25}, "average_mAP": 0.375}
    card = ModelCard(tad_checkpoints.model_card(preset, metrics, "someone/adatad-synthetic"))
    assert card.data.pipeline_tag == "other" and card.data.datasets == [preset["dataset"]]
    values = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert values == {"mAP@tIoU=0.5": 50.0, "mAP@tIoU=0.75": 25.0, "average mAP": 37.5}
    assert {result.dataset_split for result in card.data.eval_results} == {preset["evaluation"]["subset"]}
    resolved = json.loads(card.text.split("## Resolved preset")[1].split("```json")[1].split("```")[0])
    assert resolved == json.loads(json.dumps(preset))
    assert ModelCard(tad_checkpoints.model_card(preset, None, "x")).data.eval_results is None
