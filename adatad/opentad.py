"""Reading OpenTAD models: its config dicts and its checkpoints' key layout, mapped onto AdaTAD's.

Used by the parity tests and by `conversion_scripts/convert_opentad_to_adatad.py`. Pure tensor/dict code.
"""

import re

import torch

OPENTAD_BACKBONE_PREFIX = "backbone.model.backbone."

# OpenTAD ViT key (after the prefix) -> AdaTAD key under `model.backbone.`; `{n}` is a block, `{i}` a side adapter.
BACKBONE_KEY_RENAMES = [
    (r"patch_embed\.projection\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"layers.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.attn\.q_bias", r"layers.\1.attention.attention.query.bias"),
    (r"blocks\.(\d+)\.attn\.v_bias", r"layers.\1.attention.attention.value.bias"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"layers.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.layers\.0\.0\.(weight|bias)", r"layers.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.layers\.1\.(weight|bias)", r"layers.\1.output.dense.\2"),
    (r"blocks\.(\d+)\.adapter\.(down_proj|up_proj)\.(weight|bias)", r"layers.\1.adapter.\2.\3"),
    (r"blocks\.(\d+)\.adapter\.dwconv\.(weight|bias)", r"layers.\1.adapter.temporal_conv.\2"),
    (r"blocks\.(\d+)\.adapter\.conv\.(weight|bias)", r"layers.\1.adapter.pointwise_conv.\2"),
    (r"blocks\.(\d+)\.adapter\.gamma", r"layers.\1.adapter.gamma"),
    (r"ladders\.adapters\.(\d+)\.(down_proj|up_proj)\.(weight|bias)", r"side_adapters.adapters.\1.\2.\3"),
    (r"ladders\.adapters\.(\d+)\.dwconv\.(weight|bias)", r"side_adapters.adapters.\1.temporal_conv.\2"),
    (r"ladders\.adapters\.(\d+)\.conv\.(weight|bias)", r"side_adapters.adapters.\1.pointwise_conv.\2"),
    (r"ladders\.adapters\.(\d+)\.gamma", r"side_adapters.adapters.\1.gamma"),
]
# Present in OpenTAD checkpoints but not used for detection: the fixed position table (recomputed from its formula),
# the classification-pooling norms and a leftover classifier.
BACKBONE_UNUSED_KEYS = re.compile(r"(pos_embed|fc_norm\.(weight|bias)|norm\.(weight|bias)|cls_head\..*)")


def convert_opentad_backbone_keys(state_dict: dict) -> tuple[dict, list[str]]:
    """Map the ViT part of an OpenTAD AdaTAD state dict (`backbone.model.backbone.*`) to AdaTAD names.

    The fused `qkv` weight is split into query/key/value; `q_bias`/`v_bias` become the query/value biases (the key
    has no bias). Returns the converted tensors (under `model.backbone.`) and the OpenTAD keys deliberately dropped.
    Raises `KeyError` naming any backbone key it cannot place.
    """
    converted, dropped = {}, []
    for key, tensor in state_dict.items():
        if not key.startswith(OPENTAD_BACKBONE_PREFIX):
            continue
        name = key[len(OPENTAD_BACKBONE_PREFIX):]
        qkv = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.weight", name)
        if qkv:
            query, key_weight, value = tensor.chunk(3, dim=0)
            prefix = f"model.backbone.layers.{qkv.group(1)}.attention.attention"
            converted.update({f"{prefix}.query.weight": query, f"{prefix}.key.weight": key_weight, f"{prefix}.value.weight": value})
            continue
        if re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.bias", name):
            raise KeyError(
                f"{key}: a full qkv bias (with a key bias) is not supported; VideoMAE has query and value biases only."
            )
        for pattern, replacement in BACKBONE_KEY_RENAMES:
            if re.fullmatch(pattern, name):
                converted["model.backbone." + re.sub(pattern, replacement, name)] = tensor
                break
        else:
            if BACKBONE_UNUSED_KEYS.fullmatch(name):
                dropped.append(key)
            else:
                raise KeyError(f"OpenTAD backbone key {key!r} has no AdaTAD counterpart.")
    return converted, dropped


# DETECTOR-KEYS-SECTION-END
