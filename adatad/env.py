"""`adatad-env` (also `python -m adatad.env`): versions, devices and video decoders for bug reports."""

from __future__ import annotations

import argparse
import json
import os

ENV_PACKAGES = (
    "torch", "torchvision", "transformers", "accelerate", "huggingface_hub", "datasets", "evaluate", "safetensors",
    "numpy",
)
# Video decoders (the processor's `decode_backend`) and optional extras.
ENV_DECODERS = ("decord", "av", "torchcodec")
ENV_OPTIONAL = ("matplotlib", "tensorboard", "deepspeed")


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict:
    """Versions, devices and video decoders, for bug reports (`adatad-env`)."""
    import platform

    from . import __version__

    report = {
        "adatad": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in ENV_PACKAGES},
        "decoders": {name: _version(name) for name in ENV_DECODERS},
        "optional": {name: _version(name) for name in ENV_OPTIONAL},
    }
    if report["decoders"]["av"] != "not installed":
        try:
            import av

            report["decoders"]["av (ffmpeg libavcodec)"] = ".".join(map(str, av.library_versions["libavcodec"]))
        except Exception as error:  # a broken install is what the report is for: show it, do not stop
            report["decoders"]["av (ffmpeg libavcodec)"] = f"error: {error}"
    devices = {}
    try:
        import torch

        devices["torch threads"] = torch.get_num_threads()
        devices["cuda"] = torch.version.cuda or "not built with CUDA"
        devices["cuda available"] = torch.cuda.is_available()
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            properties = torch.cuda.get_device_properties(index)
            devices[f"cuda:{index}"] = (
                f"{properties.name}, {properties.total_memory / 2**30:.1f} GiB, compute capability "
                f"{properties.major}.{properties.minor}"
            )
        if torch.cuda.is_available():
            devices["bf16 supported"] = torch.cuda.is_bf16_supported()
        devices["mps available"] = torch.backends.mps.is_available()
    except Exception as error:
        devices["error"] = f"{type(error).__name__}: {error}"
    report["devices"] = devices
    report["environment"] = {
        name: os.environ[name]
        for name in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
        if name in os.environ
    }
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point of `adatad-env`: prints the environment report (text, or JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="adatad-env", description="Versions, devices and video decoders, to paste into a bug report."
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, item in value.items():
                print(f"  {name}: {item}")
        else:
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
