"""`adatad-estimate-memory` (also `python -m adatad.estimate_memory`): the estimated peak training memory per device
of a preset (`adatad.memory_estimation`), as a table or JSON."""

import argparse
import json
import sys

from .memory_estimation import (
    BACKBONE_DEFAULTS,
    CONFIG_DEFAULTS,
    PRECISION_BYTES,
    MemoryEstimate,
    estimate_training_memory,
    preset_defaults,
    read_preset,
)
from .presets import PresetError


def format_estimate(name: str, estimate: MemoryEstimate, settings: dict) -> str:
    gib = 2**30
    lines = [
        f"{name}: {settings['num_frames']} frames, batch size {settings['batch_size']} per device, "
        f"{settings['precision']}, gradient checkpointing {'on' if settings['gradient_checkpointing'] else 'off'}",
        f"  parameters: {estimate.total_parameters / 1e6:.1f} M, trainable {estimate.trainable_parameters / 1e6:.1f} M",
    ]
    for part in ("weights", "gradients", "optimizer_states", "activations"):
        lines.append(f"  {part.replace('_', ' '):17s} {getattr(estimate, part) / gib:8.2f} GiB")
    lines.append(f"  {'peak (total)':17s} {estimate.total / gib:8.2f} GiB")
    return "\n".join(lines)


# Bounds of the command-line values: far beyond any device (a 768-frame sample of VideoMAE-S already needs
# gigabytes), so anything larger is a typo, not a plan.
MAX_NUM_FRAMES = 1_000_000
MAX_BATCH_SIZE = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="adatad-estimate-memory",
        description="Estimated peak training memory per device of an AdaTAD preset (weights, gradients, AdamW states, "
        "activations). Unset options take the preset's own training settings.",
    )
    parser.add_argument("--preset", required=True,
                        help="a shipped preset's name (`python -m adatad.presets` lists them) or a preset JSON path")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per sample (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="videos per device (default: the preset's)")
    parser.add_argument("--precision", choices=tuple(PRECISION_BYTES), default=None,
                        help="autocast dtype of the forward (default: the preset's mixed_precision)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="activation checkpointing of the ViT blocks (default: the preset's)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON (bytes)")
    args = parser.parse_args(argv)
    try:
        preset = read_preset(args.preset)
    except PresetError as error:
        parser.error(str(error))
    settings = preset_defaults(preset)
    for key in ("batch_size", "precision", "gradient_checkpointing"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    model = preset["model"]
    if args.num_frames is not None:
        settings["num_frames"] = args.num_frames
    else:
        settings["num_frames"] = model.get("num_frames", CONFIG_DEFAULTS["num_frames"])
    frames_per_chunk = (model.get("backbone_config") or {}).get("num_frames", BACKBONE_DEFAULTS["num_frames"])
    if not frames_per_chunk <= settings["num_frames"] <= MAX_NUM_FRAMES or settings["num_frames"] % frames_per_chunk:
        parser.error(
            f"--num-frames must be a positive multiple of the chunk length {frames_per_chunk}, at most "
            f"{MAX_NUM_FRAMES}, got {settings['num_frames']}"
        )
    if not 1 <= settings["batch_size"] <= MAX_BATCH_SIZE:
        parser.error(f"--batch-size (videos per device) must be in [1, {MAX_BATCH_SIZE}], got {settings['batch_size']}")
    estimate = estimate_training_memory(
        model, settings["batch_size"], settings["precision"], settings["gradient_checkpointing"], settings["num_frames"]
    )
    name = preset.get("name", args.preset)
    if args.json:
        print(json.dumps({"preset": name, **settings, **estimate.as_dict()}, indent=1))
    else:
        print(format_estimate(name, estimate, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
