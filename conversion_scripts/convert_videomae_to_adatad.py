"""Convert a pretrained VideoMAE / VideoMAEv2 checkpoint into an AdaTAD model folder.

The ViT weights become the backbone of a new `AdaTADForTemporalDetection`; its adapters and detector are freshly
initialised (adapters start as the identity), ready for training with `training/run_tad.py`.

Accepted sources (the layout is recognised from the key names):

- original VideoMAE / VideoMAEv2 releases (`.pth`): fine-tuned checkpoints under `"module"`, pre-training ones
  under `"model"` with an `encoder.` prefix; timm-style names `blocks.N.attn.qkv.weight` (fused q/k/v) with
  `q_bias` / `v_bias`, `blocks.N.mlp.fc1`, `patch_embed.proj`;
- mmaction2 / OpenTAD `pretrained/` files (`"state_dict"`, `backbone.blocks.N.mlp.layers.0.0`,
  `backbone.patch_embed.projection`);
- transformers' `VideoMAEModel` / `VideoMAEForVideoClassification` / `VideoMAEForPreTraining` weights
  (`.safetensors`, `.bin`, or a model folder, whose `config.json` then supplies the head count and LayerNorm eps).

Usage:

    python conversion_scripts/convert_videomae_to_adatad.py \
        --checkpoint vit-small-p16_videomae-k400-pre_16x4x1_kinetics-400_my.pth --arch s --output videomae-s-adatad

The architecture (width, depth, patch size, MLP width, q/v biases) is read from the tensor shapes; the number of
attention heads cannot be, so it comes from `--arch` (S 6, B 12, L 16, H 16, g 16), `--num-attention-heads`, a
transformers `config.json`, or the standard width table. Checkpoints are read with `torch.load(weights_only=True)`
only. The written folder is reloaded and compared with the converted tensors and the in-memory model's outputs
before it replaces anything in `--output`.

The folder also gets a video processor matching the model's frames, feature length and frame size (so that
`pipeline("temporal-action-detection", model=folder, trust_remote_code=True)` runs on it; its detector is untrained
until `training/run_tad.py` trains it) and a model card (`--base-model` names the Hub repo of the source weights);
`--push_to_hub REPO` uploads the folder.
"""

import argparse
import copy
import fnmatch
import json
import os
import pickle
import traceback
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adatad.configuration_adatad import AdaTADConfig
from adatad.model_card import build_model_card, push_folder_to_hub
from adatad.model_loading import BACKBONE_MODEL_NEW_PARTS
from adatad.modeling_adatad import AdaTADForTemporalDetection
from adatad.processing_adatad import AdaTADVideoProcessor
from adatad.opentad import OPENTAD_BACKBONE_PREFIX, convert_opentad_backbone_keys

# Standard VideoMAE / VideoMAEv2 sizes: (hidden size, depth, attention heads). The giant model uses patch 14 and an
# MLP of int(1408 * 48 / 11) = 6144; both are read from the tensor shapes.
VIDEOMAE_ARCHS = {
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
    "h": (1280, 32, 16),
    "g": (1408, 40, 16),
}
HEADS_BY_HIDDEN_SIZE = {hidden: heads for hidden, _, heads in VIDEOMAE_ARCHS.values()}

# Wrapper keys of the checkpoint dicts, tried in this order: OpenTAD/mmaction2, VideoMAE fine-tuned, pre-trained.
STATE_DICT_WRAPPERS = ("state_dict", "module", "model")

# Original (timm-style) VideoMAE names -> mmaction2 names, which `convert_opentad_backbone_keys` maps to AdaTAD.
TIMM_TO_MMACTION_RENAMES = [
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.projection.\1"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.layers.0.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.layers.1.\2"),
]
# transformers VideoMAE names -> AdaTAD names (under `model.backbone.`): the layers are VideoMAE's own modules.
TRANSFORMERS_RENAMES = [
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.q_bias", r"layers.\1.attention.attention.query.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.v_bias", r"layers.\1.attention.attention.value.bias"),
    (
        r"encoder\.layer\.(\d+)\.(layernorm_before|layernorm_after|attention\.attention\.query|attention\.attention\.key"
        r"|attention\.attention\.value|attention\.output\.dense|intermediate\.dense|output\.dense)\.(weight|bias)",
        r"layers.\1.\2.\3",
    ),
]
# Source keys that are not part of a detection backbone: classifiers, pooling norms (AdaTAD pools the raw tokens),
# the pre-training decoder, and the fixed sin-cos position table (AdaTAD recomputes it from its formula).
UNUSED_SOURCE_KEYS = re.compile(
    r"(head|cls_head|classifier|fc_norm|norm|layernorm|decoder|encoder_to_decoder|mask_token|pos_embed"
    r"|embeddings\.position_embeddings)(\..*)?"
)


OVERWRITE_HELP = (
    "replace an --output folder that already holds files (a model): the new folder is built beside it and swapped in "
    "whole, so none of the old files stay"
)


class ConversionError(ValueError):
    """A checkpoint that cannot be converted as asked: the message names the file, the keys and the fix."""


EXIT_STATUS_HELP = (
    "exit status: 0 converted; 1 the input cannot be converted or the output cannot be written (one 'error:' "
    "message; --debug adds the traceback); 2 command-line usage error."
)


# ----------------------------------------------------------------------------------------------------------
# Reading checkpoints (shared with convert_opentad_to_adatad.py)
# ----------------------------------------------------------------------------------------------------------


def load_checkpoint_file(path: str | Path):
    """Read a checkpoint: a `.safetensors` file, a transformers model folder, or a torch pickle (`.pth`, `.pt`,
    `.bin`) loaded with `torch.load(weights_only=True)`, which refuses pickled code and arbitrary objects.

    Returns the loaded object (a dict of tensors or a dict wrapping one).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise ConversionError(f"{path}: folder without *.safetensors or pytorch_model*.bin weights.")
        state_dict = {}
        for file in files:
            state_dict.update(load_checkpoint_file(file))
        return state_dict
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as error:
            raise ConversionError(
                f"{path} is not a valid safetensors file ({error}); is the download complete?"
            ) from None
    not_a_checkpoint = (
        f"{path} is not a PyTorch checkpoint: pass the .pth/.pt/.bin file written by torch.save, a .safetensors "
        "file or a transformers model folder"
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        raise ConversionError(f"{not_a_checkpoint} (the file is empty or truncated)") from None
    except RuntimeError as error:
        # torch.save writes a ZIP archive; a truncated download fails in its ZIP reader.
        if "PytorchStreamReader" not in str(error):
            raise ConversionError(f"{not_a_checkpoint} ({type(error).__name__}: {error})") from None
        raise ConversionError(
            f"{path} is an incomplete or corrupt PyTorch checkpoint (the ZIP archive cannot be read); "
            "download or copy it again"
        ) from None
    except pickle.UnpicklingError as error:
        # Only a refused class ("Unsupported global") means a real pickle of Python objects; any other
        # refusal (an unknown opcode, a bad load key) means the bytes are not a checkpoint at all.
        if "global" not in str(error).lower().replace("globals", ""):
            raise ConversionError(f"{not_a_checkpoint} (the bytes are not a pickle torch.load can read)") from None
        raise ConversionError(
            f"{path} holds Python objects other than tensors and plain containers, so it was not loaded: this "
            "converter only reads checkpoints with torch.load(weights_only=True), because unpickling arbitrary "
            "objects can run code. If you trust the file, save its weights alone and convert that file:\n"
            f"    python -c \"import torch; c = torch.load('{path}', weights_only=False); "
            f"torch.save({{k: c[k] for k in ('state_dict', 'state_dict_ema', 'module', 'model') if k in c}}, "
            f"'{path.with_suffix('.weights.pth')}')\"\n"
            f"(refused: {str(error).splitlines()[0]})"
        ) from error
    except Exception as error:
        # torch.load's legacy reader unpickles a magic number first; arbitrary bytes fail there in many ways
        # (KeyError, ValueError, IndexError, ...), none of which a real checkpoint raises.
        raise ConversionError(f"{not_a_checkpoint} ({type(error).__name__}: {error})") from None


def is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def find_state_dict(checkpoint, path, wrappers=STATE_DICT_WRAPPERS) -> tuple[dict, str]:
    """The tensor dict inside a checkpoint, unwrapping `wrappers` keys (first match, repeatedly).

    Returns the state dict and where it was found (e.g. `"module"`, `"state_dict"` or `"<top level>"`).
    """
    where = []
    while not is_state_dict(checkpoint):
        if not isinstance(checkpoint, dict):
            raise ConversionError(f"{path}: expected a dict of tensors, found {type(checkpoint).__name__}.")
        wrapper = next((key for key in wrappers if key in checkpoint), None)
        if wrapper is None:
            raise ConversionError(
                f"{path}: no tensors at the top level and none of the wrapper keys {list(wrappers)} "
                f"(found keys: {sorted(checkpoint)[:10]})."
            )
        where.append(wrapper)
        checkpoint = checkpoint[wrapper]
    return checkpoint, ".".join(where) or "<top level>"


def strip_prefix(state_dict: dict, prefix: str) -> dict:
    """Remove `prefix` from every key that has it (e.g. DDP's `module.`)."""
    return {(key[len(prefix):] if key.startswith(prefix) else key): value for key, value in state_dict.items()}


def matches_any(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def format_keys(keys, limit: int = 25) -> str:
    keys = sorted(keys)
    shown = "\n".join(f"    {key}" for key in keys[:limit])
    return shown + (f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class ConversionReport:
    """What a conversion did with every tensor, printed at the end and kept for tests."""

    loaded: list[str] = field(default_factory=list)  # model keys filled from the checkpoint
    initialised: list[str] = field(default_factory=list)  # model keys absent from the checkpoint (allowed)
    unused: list[str] = field(default_factory=list)  # checkpoint keys deliberately not used

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from the checkpoint"]
        if self.initialised:
            lines.append(f"freshly initialised (not in the checkpoint, allowed) {len(self.initialised)} tensors:")
            lines.append(format_keys(self.initialised, limit=10))
        if self.unused:
            lines.append(f"unused checkpoint tensors ({len(self.unused)}):")
            lines.append(format_keys(self.unused, limit=40))
        return "\n".join(lines)


def load_converted_weights(model, converted: dict, allow_missing, report: ConversionReport, source) -> None:
    """Load AdaTAD-named tensors into `model`, failing on unknown keys, shape mismatches and missing keys that no
    `allow_missing` pattern (fnmatch, e.g. `"detector.*"`) covers."""
    model_state = model.state_dict()
    unexpected = [key for key in converted if key not in model_state]
    if unexpected:
        raise ConversionError(
            f"{source}: these converted tensors have no place in the AdaTAD model built from the config (the config "
            f"and the checkpoint disagree, e.g. adapter blocks, tuning mode or depth):\n{format_keys(unexpected)}"
        )
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(model_state[key].shape)}"
        for key, tensor in converted.items()
        if tuple(tensor.shape) != tuple(model_state[key].shape)
    ]
    if mismatched:
        raise ConversionError(
            f"{source}: tensor shapes differ between the checkpoint and the model built from the config:\n"
            f"{format_keys(mismatched)}"
        )
    missing = [key for key in model_state if key not in converted]
    not_allowed = [key for key in missing if not matches_any(key, allow_missing)]
    if not_allowed:
        raise ConversionError(
            f"{source}: {len(not_allowed)} model tensors are missing from the checkpoint:\n{format_keys(not_allowed)}\n"
            "If they are expected to start from their initial values, name them with --allow-missing PATTERN "
            "(fnmatch patterns on the AdaTAD names above, e.g. 'detector.*')."
        )
    model.load_state_dict(converted, strict=False)
    report.loaded.extend(converted)
    report.initialised.extend(missing)


def shrunk_config(config: AdaTADConfig) -> AdaTADConfig:
    """The same architecture on a tiny input (2 chunks of a 2x2-patch frame): every weight shape is unchanged,
    so the converted tensors load into it, but a forward pass costs little even for a ViT-g."""
    small = copy.deepcopy(config)
    backbone = small.backbone_config
    patch = backbone.patch_size if isinstance(backbone.patch_size, int) else backbone.patch_size[0]
    small.num_frames = 2 * backbone.num_frames
    small.image_size = 2 * patch
    small.feature_length = min(config.max_seq_len, small.num_frames // backbone.tubelet_size)
    return small


def check_output_folder(output_dir: str | Path, inputs, overwrite: bool) -> Path:
    """Before any work: refuses an `--output` that is a file, or a folder holding files (a model, say) unless
    `overwrite`, and always one holding an input (`(what, path)` pairs), which replacing the folder would delete."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"--output {output_dir} is a file; give a folder for the model.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return output_dir
    folder = output_dir.resolve()
    for what, path in inputs:
        if path is not None and folder in (Path(path).resolve(), *Path(path).resolve().parents):
            raise ConversionError(
                f"--output {output_dir} holds the {what} {path}, which replacing the folder would delete; choose "
                "another folder."
            )
    if not overwrite:
        holds = "a model (config.json)" if (output_dir / "config.json").is_file() else "files"
        raise ConversionError(
            f"--output {output_dir} already holds {holds}; pass --overwrite to replace the whole folder, or choose a "
            "new or empty folder."
        )
    return output_dir


def save_model_folder(model, output_dir: str | Path, save_extra, verify: bool = True) -> None:
    """Writes the model folder beside `output_dir` (`save_pretrained`, then `save_extra(folder)` for the processor
    and card), checks it (`verify_saved_model`) and swaps it in whole: an earlier folder of that name is replaced
    with none of its files left, and a failed or interrupted conversion leaves it as it was."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.", suffix=".incomplete"))
    previous = output_dir.with_name(f".{output_dir.name}.previous")
    try:
        # mkdtemp makes the folder private; give it the permissions of a plain mkdir.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        model.save_pretrained(staging)
        save_extra(staging)
        if verify:
            verify_saved_model(model, staging)
        shutil.rmtree(previous, ignore_errors=True)
        if output_dir.exists():
            output_dir.rename(previous)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def verify_saved_model(model, folder: str | Path, atol: float = 1e-5) -> None:
    """Reloads the model saved in `folder` and checks it against `model`.

    Checks: the config reads back unchanged; every tensor of the reloaded model equals the in-memory one (so no
    weight is dropped or renamed on the way, e.g. VideoMAE's q/v biases); and, on a fixed small input, the reloaded
    model's backbone features, logits and offsets equal those of the in-memory weights.
    """
    config = model.config
    state = model.state_dict()  # not modified below: reloading only reads it
    reloaded_config = AdaTADConfig.from_pretrained(folder)
    saved_fields, read_fields = config.to_dict(), reloaded_config.to_dict()
    changed = {
        key: (value, read_fields.get(key))
        for key, value in saved_fields.items()
        if read_fields.get(key) != value and key not in ("transformers_version", "auto_map")
    }
    if changed:
        raise ConversionError(f"the saved config reads back differently (saved, read): {changed}")

    small_config = shrunk_config(reloaded_config)
    reloaded, loading_info = AdaTADForTemporalDetection.from_pretrained(
        folder, config=small_config, output_loading_info=True
    )
    problems = {name: keys for name, keys in loading_info.items() if keys and name != "error_msgs"}
    if problems:
        raise ConversionError(f"reloading the saved model reported {problems}")
    reloaded_state = reloaded.state_dict()
    differing = [
        key
        for key, tensor in state.items()
        if key not in reloaded_state or not torch.equal(reloaded_state[key], tensor)
    ]
    if differing:
        raise ConversionError(
            "after save_pretrained/from_pretrained these tensors are missing or changed (not saved):\n"
            f"{format_keys(differing)}"
        )

    reference = AdaTADForTemporalDetection(shrunk_config(config))
    reference.load_state_dict(state)
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(
        1, small_config.num_frames, 3, small_config.image_size, small_config.image_size, generator=generator
    )
    with torch.no_grad():
        expected = reference.eval()(pixel_values)
        actual = reloaded.eval()(pixel_values)
    for name in ("backbone_features", "logits", "pred_offsets"):
        for index, (want, got) in enumerate(zip(_as_list(expected[name]), _as_list(actual[name]))):
            if not torch.isfinite(want).all():
                raise ConversionError(f"the converted model gives non-finite `{name}` on a fixed input.")
            if not torch.allclose(got, want, atol=atol, rtol=atol):
                difference = (got - want).abs().max().item()
                raise ConversionError(f"the reloaded model's `{name}`[{index}] differs by {difference:.3g}.")


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ----------------------------------------------------------------------------------------------------------
# VideoMAE layouts
# ----------------------------------------------------------------------------------------------------------


def detect_layout(state_dict: dict) -> str:
    """`"transformers"`, `"mmaction2"`, `"pretraining"` (original, `encoder.` prefix) or `"original"`."""
    keys = list(state_dict)
    if any(key.startswith(OPENTAD_BACKBONE_PREFIX) for key in keys):
        raise ConversionError(
            "this is an OpenTAD detector checkpoint (keys `backbone.model.backbone.*`): convert it with "
            "conversion_scripts/convert_opentad_to_adatad.py and its OpenTAD config."
        )
    if any(key.startswith(("videomae.", "encoder.layer.", "embeddings.patch_embeddings.")) for key in keys):
        return "transformers"
    if any(key.startswith("backbone.blocks.") for key in keys):
        return "mmaction2"
    if any(key.startswith("encoder.blocks.") for key in keys):
        return "pretraining"
    if any(key.startswith("blocks.") for key in keys):
        return "original"
    raise ConversionError(f"no VideoMAE layout recognised; first keys: {keys[:8]}")


def convert_videomae_keys(state_dict: dict, layout: str) -> tuple[dict, list[str], list[str]]:
    """Map a VideoMAE state dict in `layout` to AdaTAD names under `model.backbone.`.

    Returns `(converted, unused, unknown)`: the AdaTAD tensors, the source keys deliberately not used (classifier,
    pooling norm, decoder, position table) and the source keys no rule knows (the caller fails on those).
    """
    converted, unused, unknown = {}, [], []
    if layout == "transformers":
        for key, tensor in state_dict.items():
            name = key[len("videomae."):] if key.startswith("videomae.") else key
            key_bias = re.fullmatch(r"encoder\.layer\.(\d+)\.attention\.attention\.key\.bias", name)
            if key_bias:
                # VideoMAE's key projection has no bias; a checkpoint that stores one must store zeros.
                if torch.count_nonzero(tensor):
                    raise ConversionError(f"{key}: a non-zero key bias cannot be represented (VideoMAE has none).")
                unused.append(key)
                continue
            for pattern, replacement in TRANSFORMERS_RENAMES:
                if re.fullmatch(pattern, name):
                    converted["model.backbone." + re.sub(pattern, replacement, name)] = tensor
                    break
            else:
                (unused if UNUSED_SOURCE_KEYS.fullmatch(name) else unknown).append(key)
        return converted, unused, unknown

    prefix = {"mmaction2": "backbone.", "pretraining": "encoder."}.get(layout, "")
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            (unused if UNUSED_SOURCE_KEYS.fullmatch(key) else unknown).append(key)
            continue
        name = key[len(prefix):]
        for pattern, replacement in TIMM_TO_MMACTION_RENAMES:
            name = re.sub(f"^{pattern}$", replacement, name)
        if UNUSED_SOURCE_KEYS.fullmatch(name):
            unused.append(key)
            continue
        try:
            mapped, dropped = convert_opentad_backbone_keys({OPENTAD_BACKBONE_PREFIX + name: tensor})
        except KeyError:
            unknown.append(key)
            continue
        if dropped:
            unused.append(key)
        converted.update(mapped)
    return converted, unused, unknown


def infer_backbone_config(
    converted: dict, arch: str | None, num_attention_heads: int | None, hf_config: dict | None
) -> dict:
    """VideoMAE config fields from the converted tensor shapes plus what shapes cannot tell (heads, eps)."""
    projection = converted.get("model.backbone.embeddings.patch_embeddings.projection.weight")
    if projection is None:
        raise ConversionError("the checkpoint has no patch embedding (`patch_embed.proj.weight` or equivalent).")
    hidden_size, num_channels, tubelet_size, patch_size, _ = projection.shape
    layer_indices = {int(m.group(1)) for key in converted if (m := re.match(r"model\.backbone\.layers\.(\d+)\.", key))}
    depth = max(layer_indices) + 1
    if layer_indices != set(range(depth)):
        raise ConversionError(f"blocks {sorted(set(range(depth)) - layer_indices)} are missing from the checkpoint.")
    intermediate_size = converted["model.backbone.layers.0.intermediate.dense.weight"].shape[0]
    qv_bias = "model.backbone.layers.0.attention.attention.query.bias" in converted
    hf_config = hf_config or {}

    if arch is not None:
        arch_hidden, arch_depth, arch_heads = VIDEOMAE_ARCHS[arch]
        if (arch_hidden, arch_depth) != (hidden_size, depth):
            raise ConversionError(
                f"--arch {arch} means hidden size {arch_hidden} and {arch_depth} blocks, but the checkpoint has "
                f"hidden size {hidden_size} and {depth} blocks."
            )
    if num_attention_heads is None:
        if arch is not None:
            num_attention_heads = VIDEOMAE_ARCHS[arch][2]
        elif "num_attention_heads" in hf_config:
            num_attention_heads = hf_config["num_attention_heads"]
        elif hidden_size in HEADS_BY_HIDDEN_SIZE:
            num_attention_heads = HEADS_BY_HIDDEN_SIZE[hidden_size]
            print(
                f"note: {num_attention_heads} attention heads assumed for hidden size {hidden_size} "
                "(pass --arch to be explicit)"
            )
        else:
            raise ConversionError(
                f"hidden size {hidden_size} is not a standard VideoMAE width; pass --num-attention-heads."
            )
    if hidden_size % num_attention_heads:
        raise ConversionError(f"hidden size {hidden_size} is not divisible by {num_attention_heads} attention heads.")
    return dict(
        hidden_size=int(hidden_size),
        num_hidden_layers=depth,
        num_attention_heads=int(num_attention_heads),
        intermediate_size=int(intermediate_size),
        patch_size=int(patch_size),
        tubelet_size=int(tubelet_size),
        num_channels=int(num_channels),
        qv_bias=qv_bias,
        # Every VideoMAE / VideoMAEv2 release was trained with LayerNorm eps 1e-6; a transformers config says its own.
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-6),
        image_size=hf_config.get("image_size", 224),
        num_frames=hf_config.get("num_frames", 16),
        use_mean_pooling=hf_config.get("use_mean_pooling", True),
    )


def read_transformers_config(checkpoint: Path) -> dict | None:
    config_file = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    return config if config.get("model_type") == "videomae" else None


def convert_videomae_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    arch: str | None = None,
    num_attention_heads: int | None = None,
    config_overrides: dict | None = None,
    allow_missing=(),
    allow_unused=(),
    verify: bool = True,
    base_model: str | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
) -> tuple[AdaTADForTemporalDetection, ConversionReport]:
    """Convert a VideoMAE checkpoint into an AdaTAD model folder (see the module docstring).

    Args:
        checkpoint: the source file or transformers model folder.
        output_dir: where `save_pretrained` writes the AdaTAD model.
        arch: `"s"`, `"b"`, `"l"`, `"h"` or `"g"`; checked against the tensor shapes; sets the head count.
        num_attention_heads: explicit head count (overrides `arch`).
        config_overrides: `AdaTADConfig` fields for the new model (`num_labels`, `num_frames`, `image_size`,
            `tuning_mode`, detector sizes, ...); the backbone fields come from the checkpoint.
        allow_missing: extra fnmatch patterns of AdaTAD tensors that may stay at their initial values (the
            detector and the adapters always do).
        allow_unused: fnmatch patterns of source keys that no rule knows but that may be ignored.
        verify: reload the written folder and compare (see `verify_saved_model`).
        base_model: Hub repo id of the source weights, for the model card.
        model_id: the repo id used in the card's loading snippets (default: `output_dir`).
        overwrite: replace an `output_dir` that holds files (see `check_output_folder`).

    Returns:
        The converted model and the report of loaded / initialised / unused tensors.
    """
    checkpoint = Path(checkpoint)
    check_output_folder(output_dir, [("checkpoint", checkpoint)], overwrite)
    state_dict, where = find_state_dict(load_checkpoint_file(checkpoint), checkpoint)
    state_dict = strip_prefix(state_dict, "module.")
    layout = detect_layout(state_dict)
    print(f"{checkpoint}: {len(state_dict)} tensors under {where}, {layout} layout")

    converted, unused, unknown = convert_videomae_keys(state_dict, layout)
    unknown = [key for key in unknown if not matches_any(key, allow_unused)]
    if unknown:
        raise ConversionError(
            f"{checkpoint}: {len(unknown)} keys match no VideoMAE rule:\n{format_keys(unknown)}\n"
            "If they can be ignored, name them with --allow-unused PATTERN."
        )
    backbone = infer_backbone_config(converted, arch, num_attention_heads, read_transformers_config(checkpoint))
    overrides = dict(config_overrides or {})
    backbone.update(overrides.pop("backbone_config", {}))
    try:
        config = AdaTADConfig(backbone_config=backbone, **overrides)
    except ValueError as error:
        raise ConversionError(f"invalid AdaTAD settings (flags or --config-overrides): {error}") from None
    model = AdaTADForTemporalDetection(config)

    report = ConversionReport(unused=unused)
    load_converted_weights(model, converted, [*BACKBONE_MODEL_NEW_PARTS, *allow_missing], report, checkpoint)
    del state_dict, converted  # the model holds its own copy; the verification needs the memory
    processor = processor_for(config)
    card = build_model_card(
        model_id=model_id or str(output_dir),
        title=f"AdaTAD initialised from {checkpoint.name}",
        description="An AdaTAD model whose VideoMAE backbone comes from a pretrained checkpoint; its adapters and "
        "detector are freshly initialised, so it needs training (`training/run_tad.py --pretrained_model`) before its "
        "detections mean anything.",
        how_made=f"Converted with `conversion_scripts/convert_videomae_to_adatad.py` from `{checkpoint.name}` "
        f"({layout} layout).",
        base_model=base_model,
        settings={"backbone_config": backbone, **overrides},
        settings_title="Conversion settings",
    )

    def save_processor_and_card(folder):
        processor.save_pretrained(folder)
        card.save(Path(folder) / "README.md")

    save_model_folder(model, output_dir, save_processor_and_card, verify=verify)
    print(report.summary())
    print(
        f"saved AdaTAD model ({backbone['hidden_size']}-wide, {backbone['num_hidden_layers']} blocks) to {output_dir}"
    )
    return model, report


def processor_for(config: AdaTADConfig) -> AdaTADVideoProcessor:
    """The evaluation processor that feeds this model: sliding windows of `feature_length` feature steps, each
    `num_frames` frames at `image_size` (resized short side, centre crop); classes from `id2label`."""
    if config.num_frames % config.feature_length:
        raise ConversionError(
            f"`num_frames` ({config.num_frames}) must be a multiple of `feature_length` ({config.feature_length}) for "
            "the video processor's windows."
        )
    return AdaTADVideoProcessor(
        sampling_method="sliding_window",
        window_size=config.feature_length,
        scale_factor=config.num_frames // config.feature_length,
        size={"shortest_edge": config.image_size},
        crop_size={"height": config.image_size, "width": config.image_size},
        class_names=[config.id2label[i] for i in range(config.num_labels)],
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_STATUS_HELP)
    parser.add_argument(
        "--checkpoint", required=True, help="VideoMAE .pth/.bin/.safetensors file or transformers folder"
    )
    parser.add_argument("--output", required=True, help="folder for the AdaTAD model")
    parser.add_argument(
        "--arch", choices=sorted(VIDEOMAE_ARCHS), help="ViT size (checked against the shapes; sets heads)"
    )
    parser.add_argument("--num-attention-heads", type=int, help="attention heads, if not a standard --arch")
    parser.add_argument("--num-labels", type=int, help="action classes of the new detector")
    parser.add_argument("--num-frames", type=int, help="frames per model input (all chunks)")
    parser.add_argument("--image-size", type=int, help="input frame size (position embeddings are interpolated)")
    parser.add_argument("--feature-length", type=int, help="detector feature sequence length")
    parser.add_argument("--tuning-mode", choices=["adapter", "side", "frozen", "full"])
    parser.add_argument(
        "--config-overrides",
        help="JSON object (or a .json file) of further AdaTADConfig fields, e.g. '{\"projection_hidden_size\": 256}'",
    )
    parser.add_argument(
        "--allow-missing", nargs="*", default=[], metavar="PATTERN", help="AdaTAD tensors that may stay initialised"
    )
    parser.add_argument(
        "--allow-unused", nargs="*", default=[], metavar="PATTERN", help="unknown source keys to ignore"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare check")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    parser.add_argument("--base-model", help="Hub repo id of the source weights, for the model card")
    parser.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", metavar="REPO",
                        help="upload the folder to this Hub model repo (e.g. your-name/videomae-s-adatad)")
    return parser.parse_args(argv)


def parse_config_overrides(text: str | None) -> dict:
    if not text:
        return {}
    source = Path(text)
    try:
        overrides = json.loads(source.read_text() if source.suffix == ".json" and source.is_file() else text)
    except json.JSONDecodeError as error:
        raise ConversionError(f"--config-overrides is not valid JSON ({error}): {text!r}") from error
    if not isinstance(overrides, dict):
        raise ConversionError(f"--config-overrides must be a JSON object, got {overrides!r}")
    return overrides


def main(argv=None):
    args = parse_args(argv)
    try:
        overrides = parse_config_overrides(args.config_overrides)
        for name in ("num_labels", "num_frames", "image_size", "feature_length", "tuning_mode"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        convert_videomae_checkpoint(
            args.checkpoint,
            args.output,
            arch=args.arch,
            num_attention_heads=args.num_attention_heads,
            config_overrides=overrides,
            allow_missing=args.allow_missing,
            allow_unused=args.allow_unused,
            verify=not args.no_verify,
            base_model=args.base_model,
            model_id=args.push_to_hub,
            overwrite=args.overwrite,
        )
    except (ConversionError, OSError) as error:
        exit_with_error(error, args.debug)
    if args.push_to_hub:
        push_folder_to_hub(args.output, args.push_to_hub, "AdaTAD initialised from a VideoMAE checkpoint")
        print(f"uploaded {args.output} to https://huggingface.co/{args.push_to_hub}")


def exit_with_error(error: Exception, debug: bool):
    """Ends a converter on a user error: the message (no traceback unless `--debug`), exit status 1."""
    if debug:
        traceback.print_exc()
    sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
