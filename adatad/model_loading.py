"""`from_pretrained` that refuses incomplete weights: transformers initialises every tensor a weights file lacks at
random and only logs it, so a folder missing (say) the classification head would give detections and an mAP from a
random head. Every loader of the package (the detection pipeline, `adatad-detect`, `run_tad.py --eval_only --model`
and `--pretrained_model`) goes through `load_complete_model`, which first compares the weights' shapes (read from the
file headers) with the model's configuration.

Not part of a saved model folder's code: the folder's own modules never import it.
"""

import fnmatch
import json
import os
from collections.abc import Sequence
from pathlib import Path

# The parts a model converted from a pretrained VideoMAE backbone initialises instead of loading: the detector and
# the adapters (fnmatch patterns of tensor names).
BACKBONE_MODEL_NEW_PARTS = ("detector.*", "*adapter*")
# How many missing tensor names an error shows before counting the rest.
MAX_NAMES_SHOWN = 8


class MissingWeightsError(ValueError):
    """A model folder whose weights lack tensors the model needs, or hold tensors of other shapes than its
    configuration gives them; the message names the folder and the tensors."""


def _names(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMES_SHOWN])
    return shown + (f" and {len(keys) - MAX_NAMES_SHOWN} more" if len(keys) > MAX_NAMES_SHOWN else "")


def load_complete_model(model_class, folder: str | os.PathLike, *, new_parts: Sequence[str] = (), **kwargs):
    """`model_class.from_pretrained(folder, **kwargs)` that raises when the weights lack a tensor of the model or hold
    one of another shape.

    Args:
        model_class: a transformers model class or auto class (`AdaTADForTemporalDetection`, `AutoModel`).
        folder: the model folder.
        new_parts: fnmatch patterns of tensors expected to be new (initialised, not loaded), e.g. `"detector.*"` for
            a converted backbone that has no detector yet; any other missing tensor is an error.
        kwargs: passed to `from_pretrained` (`config`, `dtype`, `trust_remote_code`, ...).

    Returns:
        `(model, new_keys)`: the model and the names of the tensors it initialised because they are new.

    Raises:
        MissingWeightsError: naming the folder and the missing or misshapen tensors (and, when some were expected,
            which parts may be new). Shapes are checked before `from_pretrained`, which would stop with a traceback
            advising `ignore_mismatched_sizes=True` (random tensors in place of the mismatched ones).
    """
    mismatched = mismatched_weight_shapes(folder, kwargs.get("config"))
    if mismatched:
        raise MissingWeightsError(
            f"{len(mismatched)} weight tensor(s) in '{folder}' do not fit the model's configuration ("
            + "; ".join(mismatched[:3]) + (", ..." if len(mismatched) > 3 else "")
            + "): the weights belong to another model (another backbone size or class count); convert, train or save "
            "the matching one with save_pretrained."
        )
    model, info = model_class.from_pretrained(folder, output_loading_info=True, **kwargs)
    missing = sorted(info["missing_keys"])
    new_keys = [key for key in missing if any(fnmatch.fnmatchcase(key, pattern) for pattern in new_parts)]
    unexpected = [key for key in missing if key not in new_keys]
    if unexpected:
        expected = f" (only {', '.join(new_parts)} may be new)" if new_parts else ""
        raise MissingWeightsError(
            f"the weights in '{folder}' lack {len(unexpected)} tensor(s) of the model{expected}: {_names(unexpected)}; "
            "they would be random, so the model is refused. Save the folder again with save_pretrained, or convert "
            "the checkpoint again."
        )
    return model, new_keys


def mismatched_weight_shapes(folder: str | os.PathLike, config=None) -> list[str]:
    """Tensors of the folder's `*.safetensors` files whose shape differs from what the model `config` (an
    `AdaTADConfig`; None: the folder's own `config.json` when it describes an AdaTAD model) gives them, as
    `"name (file) vs (config)"` lines; empty when all agree, the folder has no safetensors files or is not an
    AdaTAD model.

    Only the file headers are read, and the model is built on the meta device (no memory for its weights).
    """
    from .configuration_adatad import AdaTADConfig

    if config is None:
        config_file = Path(folder) / "config.json"
        if not config_file.is_file():
            return []
        if json.loads(config_file.read_text()).get("model_type") != AdaTADConfig.model_type:
            return []
        config = AdaTADConfig.from_pretrained(folder)
    if getattr(config, "model_type", None) != AdaTADConfig.model_type:
        return []
    import torch
    from safetensors import safe_open

    from .modeling_adatad import AdaTADForTemporalDetection

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return []
    with torch.device("meta"):
        model = AdaTADForTemporalDetection(config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = []
    for file in files:
        with safe_open(file, framework="pt") as weights:
            for name in weights.keys():
                shape = tuple(weights.get_slice(name).get_shape())
                if name in expected and shape != expected[name]:
                    problems.append(f"{name} {shape} in {file.name} vs {expected[name]} from the config")
    return problems
