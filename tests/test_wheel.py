"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual environment that
sees the dependencies (torch, transformers, ...) but not the source tree, and every console script run from another
folder, from the presets to a trained model's detections (docs/custom-dataset.md's walk-through, verbatim)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adatad import presets
from conftest import REPO_ROOT
from test_custom_dataset import walkthrough_commands

pytestmark = pytest.mark.slow

# What `pip wheel` reads: setup.cfg names README.md as the long description and builds the `adatad*` packages.
BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md")
PRESET = "e2e_thumos_videomae_s_768x1_160_adapter"


def run(command: list, cwd: Path, env: dict, timeout: int = 600) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"`{' '.join(map(str, command))}` exited {result.returncode}:\n" \
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def dependency_paths() -> list[str]:
    """The site-packages folders this interpreter imports the dependencies from. Written into a `.pth` file, they are
    plain sys.path entries: the `.pth` files inside them (an editable install of adatad among them) are not run."""
    return [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(environment for subprocesses, the wheel environment's bin folder, a folder outside the repository)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO_ROOT / "adatad", source / "adatad",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in BUILD_INPUTS:
        shutil.copy(REPO_ROOT / name, source / name)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true",
               HF_HUB_OFFLINE="1")
    # Offline: the build uses this environment's setuptools (bdist_wheel is part of setuptools since 70.1).
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir",
         root / "dist", source], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("adatad-*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=env)
    python = venv / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=root, env=env).strip())
    (site_packages / "dependencies.pth").write_text("\n".join(dependency_paths()) + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=root, env=env)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    outside = root / "work"
    outside.mkdir()
    return env, venv / "bin", outside


def test_adatad_comes_from_the_wheel_with_every_preset(installed):
    env, bin_dir, outside = installed
    where = run(["python", "-c", "import adatad; print(adatad.__file__)"], cwd=outside, env=env).strip()
    assert Path(where).is_relative_to(bin_dir.parent) and not Path(where).is_relative_to(REPO_ROOT), where
    # The table lists every shipped file, read through importlib.resources from the installed package.
    assert run(["python", "-m", "adatad.presets"], cwd=outside, env=env).strip() == presets.format_preset_table()
    estimate = run(["adatad-estimate-memory", "--preset", PRESET, "--json"], cwd=outside, env=env)
    numbers = json.loads(estimate)
    assert numbers["preset"] == PRESET and numbers["num_frames"] == 768 and numbers["precision"] == "fp16"
    assert numbers["total_parameters"] > 20e6
    assert "adatad: " in run(["adatad-env"], cwd=outside, env=env)
    assert "--trust-remote-code" in run(["adatad-detect", "--help"], cwd=outside, env=env)
    assert "usage: run_tad.py" in run(["python", REPO_ROOT / "training" / "run_tad.py", "--help"], cwd=outside, env=env)


def test_custom_dataset_walkthrough_runs_verbatim_with_the_installed_scripts(installed):
    """docs/custom-dataset.md's walk-through, every bash block exactly as written, with the wheel's console scripts
    on PATH: convert, validate, suggest a preset, train two steps with `accelerate launch training/run_tad.py`,
    evaluate the predictions, detect on a held-out video."""
    env, bin_dir, work = installed
    # `pip install adatad` puts accelerate's own script next to adatad's; the wheel venv reads accelerate through
    # dependencies.pth, so its script is written here.
    accelerate = bin_dir / "accelerate"
    accelerate.write_text(f'#!/bin/sh\nexec "{bin_dir / "python"}" -c '
                          f'"import sys; from accelerate.commands.accelerate_cli import main; sys.exit(main())" "$@"\n')
    accelerate.chmod(0o755)
    (work / "training").symlink_to(REPO_ROOT / "training")
    blocks = walkthrough_commands()
    assert len(blocks) == 5
    outputs = [run(["bash", "-e", "-c", block], cwd=work, env=env, timeout=900) for block in blocks]

    demo = work / "demo"
    database = json.loads((demo / "raw" / "annotations.json").read_text())["database"]
    assert set(json.loads((demo / "data" / "annotations.json").read_text())["database"]) == set(database)
    assert "VALID" in outputs[2] and "wrote demo/data/annotations.json" in outputs[2]
    assert "snippet_stride" in outputs[3] and "window_size" in outputs[3]
    preset = presets.load_preset(demo / "demo-actions.json")
    labels = {action["label"] for video in database.values() for action in video["annotations"]}
    assert preset["dataset"] == "demo-actions" and preset["model"]["num_labels"] == len(labels) == 4
    assert (demo / "run" / "last" / "model.safetensors").is_file()
    held_out = sorted(video_id for video_id, video in database.items() if video["subset"] == "validation")
    assert sorted(json.loads((demo / "run" / "predictions.json").read_text())["results"]) == held_out
    assert "mAP" in outputs[4]
    assert list(json.loads((demo / "detections.json").read_text())["results"]) == ["synthetic_validation_0000"]
