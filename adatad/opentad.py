"""Reading OpenTAD models: its config dicts, its checkpoints' key layout and its video metas, mapped onto AdaTAD's.

Used by the parity tests and by `conversion_scripts/convert_opentad_to_adatad.py`. Pure tensor/dict code.
"""

import re

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
            converted.update(
                {f"{prefix}.query.weight": query, f"{prefix}.key.weight": key_weight, f"{prefix}.value.weight": value}
            )
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


# OpenTAD detector key (projection / neck / rpn_head) -> AdaTAD key under `detector.`.
DETECTOR_KEY_RENAMES = [
    (r"projection\.embed\.(\d+)\.conv\.weight", r"projection.embedding.\1.conv.weight"),
    (r"projection\.embed\.(\d+)\.norm\.(weight|bias)", r"projection.embedding.\1.norm.\2"),
    (r"projection\.(stem|branch)\.(\d+)\.ln1\.(weight|bias)", r"projection.\1.\2.layernorm_before.\3"),
    (r"projection\.(stem|branch)\.(\d+)\.ln2\.(weight|bias)", r"projection.\1.\2.layernorm_after.\3"),
    (
        r"projection\.(stem|branch)\.(\d+)\.attn\.(query|key|value)_conv\.conv\.weight",
        r"projection.\1.\2.attention.\3_conv.weight",
    ),
    (
        r"projection\.(stem|branch)\.(\d+)\.attn\.(query|key|value)_norm\.(weight|bias)",
        r"projection.\1.\2.attention.\3_norm.\4",
    ),
    (
        r"projection\.(stem|branch)\.(\d+)\.attn\.(query|key|value)\.(weight|bias)",
        r"projection.\1.\2.attention.\3.\4",
    ),
    (r"projection\.(stem|branch)\.(\d+)\.attn\.proj\.(weight|bias)", r"projection.\1.\2.attention.output.\3"),
    (r"projection\.(stem|branch)\.(\d+)\.mlp\.0\.(weight|bias)", r"projection.\1.\2.mlp.fc1.\3"),
    (r"projection\.(stem|branch)\.(\d+)\.mlp\.3\.(weight|bias)", r"projection.\1.\2.mlp.fc2.\3"),
    (r"projection\.(stem|branch)\.(\d+)\.drop_path_attn\.scale", r"projection.\1.\2.attention_drop_path.scale"),
    (r"projection\.(stem|branch)\.(\d+)\.drop_path_mlp\.scale", r"projection.\1.\2.mlp_drop_path.scale"),
    (r"neck\.fpn_norms\.(\d+)\.(weight|bias)", r"neck.norms.\1.\2"),
    (r"rpn_head\.cls_convs\.(\d+)\.conv\.weight", r"head.classification_convs.\1.conv.weight"),
    (r"rpn_head\.cls_convs\.(\d+)\.norm\.(weight|bias)", r"head.classification_convs.\1.norm.\2"),
    (r"rpn_head\.reg_convs\.(\d+)\.conv\.weight", r"head.regression_convs.\1.conv.weight"),
    (r"rpn_head\.reg_convs\.(\d+)\.norm\.(weight|bias)", r"head.regression_convs.\1.norm.\2"),
    (r"rpn_head\.cls_head\.(weight|bias)", r"head.classification_head.\1"),
    (r"rpn_head\.reg_head\.(weight|bias)", r"head.regression_head.\1"),
    (r"rpn_head\.scale\.(\d+)\.scale", r"head.scales.\1.scale"),
    (r"rpn_head\.loss_normalizer", r"loss_normalizer"),
]
OPENTAD_DETECTOR_PREFIXES = ("projection.", "neck.", "rpn_head.")
# The absolute position table is a non-persistent buffer in OpenTAD too; if a checkpoint carries it anyway, it is
# recomputed from its formula.
DETECTOR_UNUSED_KEYS = re.compile(r"projection\.pos_embed")


def convert_opentad_detector_keys(state_dict: dict) -> dict:
    """Map the ActionFormer part of an OpenTAD state dict (`projection.*`, `neck.*`, `rpn_head.*`) to AdaTAD names
    under `detector.` (the `detector` attribute of `AdaTADForTemporalDetection`).

    Backbone keys (`backbone.*`) are skipped (see `convert_opentad_backbone_keys`). The `rpn_head.loss_normalizer`
    EMA buffer becomes `detector.loss_normalizer` as float32 (OpenTAD saves its initial value as an integer).
    Raises `KeyError` naming every key that is neither backbone nor a known detector key.
    """
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        if key.startswith("backbone."):
            continue
        if not key.startswith(OPENTAD_DETECTOR_PREFIXES):
            unknown.append(key)
            continue
        for pattern, replacement in DETECTOR_KEY_RENAMES:
            if re.fullmatch(pattern, key):
                name = "detector." + re.sub(pattern, replacement, key)
                converted[name] = tensor.float() if key == "rpn_head.loss_normalizer" else tensor
                break
        else:
            if not DETECTOR_UNUSED_KEYS.fullmatch(key):
                unknown.append(key)
    if unknown:
        raise KeyError(
            f"OpenTAD detector keys without an AdaTAD counterpart: {unknown}. Supported: the Conv1DTransformerProj "
            "projection (single input, no relative position encoding), the FPNIdentity neck and the "
            "ActionFormerHead."
        )
    return converted


def _check_known_keys(section: str, config: dict, known: set):
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(
            f"OpenTAD `{section}` settings {unknown} are not supported by AdaTAD (known: {sorted(known)})."
        )


def _require(section: str, name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"OpenTAD `{section}.{name}` = {value!r} is not supported; AdaTAD supports {allowed}.")


def _squash(ops) -> str:
    """An einops pattern without spaces, for comparison."""
    return "".join(str(ops).split())


def _opentad_backbone_kwargs(wrapper: dict) -> dict:
    """AdaTADConfig kwargs of OpenTAD's `mmaction.Recognizer3D` wrapper around a VideoMAE ViT: with TIA adapters
    (`VisionTransformerAdapter`, tuning mode `adapter`), side adapters (`VisionTransformerLadder`, `side`) or none
    (`VisionTransformerCP`: `frozen` when the wrapper freezes the backbone, else `full`)."""
    _require("backbone", "type", wrapper.get("type"), ["mmaction.Recognizer3D"])
    _check_known_keys("backbone", wrapper, {"type", "backbone", "data_preprocessor", "custom"})
    vit = dict(wrapper.get("backbone") or {})
    custom = wrapper.get("custom") or {}
    frozen = bool(custom.get("freeze_backbone", False))
    vit_types = {"VisionTransformerAdapter": "adapter", "VisionTransformerLadder": "side", "VisionTransformerCP": None}
    _require("backbone.backbone", "type", vit.get("type"), list(vit_types))
    tuning_mode = vit_types[vit["type"]] or ("frozen" if frozen else "full")
    known = {
        "type", "img_size", "patch_size", "in_channels", "embed_dims", "depth", "num_heads", "mlp_ratio",
        "qkv_bias", "qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "norm_cfg", "num_frames",
        "tubelet_size", "use_mean_pooling", "pretrained", "return_feat_map", "with_cp", "init_cfg",
    }
    if tuning_mode in ("adapter", "side"):
        known |= {"adapter_mlp_ratio", "total_frames", "adapter_index"}
        # the wrapper's freeze would also freeze the adapters
        _require("backbone.custom", "freeze_backbone", frozen, [False])
    else:
        known |= {"frozen_layers"}
        _require("backbone.backbone", "frozen_layers", vit.get("frozen_layers", -1), [-1])
    _check_known_keys("backbone.backbone", vit, known)
    # Defaults are those of OpenTAD's VisionTransformerAdapter / VisionTransformerLadder.
    embed_dims = vit.get("embed_dims", 768)
    norm_cfg = vit.get("norm_cfg", {"type": "LN", "eps": 1e-6})
    _require("backbone.backbone", "norm_cfg.type", norm_cfg.get("type"), ["LN"])
    _require("backbone.backbone", "in_channels", vit.get("in_channels", 3), [3])
    _require("backbone.backbone", "qk_scale", vit.get("qk_scale"), [None])
    _require("backbone.backbone", "drop_rate", vit.get("drop_rate", 0.0), [0, 0.0])
    _require("backbone.backbone", "attn_drop_rate", vit.get("attn_drop_rate", 0.0), [0, 0.0])
    _require("backbone.backbone", "return_feat_map", vit.get("return_feat_map", tuning_mode == "side"), [True])
    num_frames = vit.get("num_frames", 16)
    tubelet_size = vit.get("tubelet_size", 2)
    pre = custom.get("pre_processing_pipeline") or []
    if tuning_mode in ("adapter", "side"):
        total_frames = vit.get("total_frames", 768)
    else:
        # VisionTransformerCP does not know the video length: it is the chunk count of the pre-processing times the
        # chunk length.
        total_frames = (pre[0].get("t1", 0) if pre else 0) * num_frames
    default_index = {"adapter": [3, 5, 7, 11], "side": list(range(6, 12))}.get(tuning_mode, [])
    backbone_config = dict(
        hidden_size=embed_dims,
        num_hidden_layers=vit.get("depth", 12),
        num_attention_heads=vit.get("num_heads", 12),
        intermediate_size=int(embed_dims * vit.get("mlp_ratio", 4.0)),
        layer_norm_eps=norm_cfg.get("eps", 1e-5),
        image_size=vit.get("img_size", 224),
        patch_size=vit.get("patch_size", 16),
        num_frames=num_frames,
        tubelet_size=tubelet_size,
        qv_bias=bool(vit.get("qkv_bias", True)),
        use_mean_pooling=bool(vit.get("use_mean_pooling", True)),
    )
    kwargs = dict(
        backbone_config=backbone_config,
        tuning_mode=tuning_mode,
        adapter_type="tia",
        adapter_layer_indices=list(vit.get("adapter_index", default_index)),
        adapter_mlp_ratio=vit.get("adapter_mlp_ratio", 0.25),
        adapter_kernel_size=3,
        backbone_drop_path_rate=vit.get("drop_path_rate", 0.0),
        num_frames=total_frames,
    )

    preprocessor = wrapper.get("data_preprocessor") or {}
    _check_known_keys("backbone.data_preprocessor", preprocessor, {"type", "mean", "std", "format_shape"})
    for name, expected in (("mean", [123.675, 116.28, 103.53]), ("std", [58.395, 57.12, 57.375])):
        value = preprocessor.get(name, expected)
        if len(value) != 3 or any(abs(a - b) > 1e-3 for a, b in zip(value, expected)):
            raise ValueError(
                f"OpenTAD `backbone.data_preprocessor.{name}` = {value}; AdaTAD's processor normalises with the "
                f"ImageNet values {expected} (on 0..255)."
            )
    _require("backbone.data_preprocessor", "format_shape", preprocessor.get("format_shape", "NCTHW"), ["NCTHW"])

    _check_known_keys(
        "backbone.custom",
        custom,
        {
            "pretrain", "pre_processing_pipeline", "post_processing_pipeline", "norm_eval", "freeze_backbone",
            # memory-only options: they change what is stored for backward, not what is computed
            "temporal_checkpointing", "temporal_checkpointing_chunk_num", "temporal_checkpointing_chunk_dim",
        },
    )
    num_chunks = total_frames // num_frames
    if [step.get("type") for step in pre] != ["Rearrange"] or (pre[0].get("t1"), _squash(pre[0].get("ops"))) != (
        num_chunks,
        "bnc(t1t)hw->(bt1)ncthw",
    ):
        raise ValueError(
            f"OpenTAD `backbone.custom.pre_processing_pipeline` {pre} is not supported; AdaTAD expects one Rearrange "
            f"'b n c (t1 t) h w -> (b t1) n c t h w' with t1 = total_frames / num_frames = {num_chunks}."
        )
    post = custom.get("post_processing_pipeline") or []
    post_types = [step.get("type") for step in post]
    if (
        post_types not in (["Reduce", "Rearrange"], ["Reduce", "Rearrange", "Interpolate"])
        or any(step.get("t1", num_chunks) != num_chunks for step in post)
        or [_squash(step.get("ops")) for step in post[:2]] != ["bncthw->bct", "(bt1)ct->bc(t1t)"]
    ):
        raise ValueError(
            f"OpenTAD `backbone.custom.post_processing_pipeline` {post} is not supported; AdaTAD expects mean Reduce "
            f"over (h, w), Rearrange '(b t1) c t -> b c (t1 t)' with t1 = {num_chunks}, and optionally Interpolate."
        )
    _require("backbone.custom.post_processing_pipeline[0]", "reduction", post[0].get("reduction", "mean"), ["mean"])
    if len(post) == 3:
        _require("backbone.custom.post_processing_pipeline[2]", "mode", post[2].get("mode", "linear"), ["linear"])
        kwargs["feature_length"] = int(post[2].get("size", 128))
    else:
        kwargs["feature_length"] = num_chunks * (num_frames // tubelet_size)
    return kwargs


def _opentad_detector_kwargs(model_cfg: dict, backbone_width: int) -> dict:
    """AdaTADConfig kwargs of OpenTAD's ActionFormer projection / neck / rpn_head settings."""
    projection = dict(model_cfg.get("projection") or {})
    _require("projection", "type", projection.get("type"), ["Conv1DTransformerProj"])
    _check_known_keys(
        "projection",
        projection,
        {
            "type", "in_channels", "out_channels", "arch", "conv_cfg", "norm_cfg", "attn_cfg", "path_pdrop",
            "use_abs_pe", "max_seq_len", "input_pdrop",
        },
    )
    hidden_size = projection.get("out_channels")
    if not isinstance(hidden_size, int) or projection.get("in_channels") != backbone_width:
        raise ValueError(
            f"OpenTAD `projection` in/out channels ({projection.get('in_channels')}, {hidden_size}) are not "
            f"supported: AdaTAD needs one input of the backbone width ({backbone_width}) and an int output width."
        )
    conv_cfg = projection.get("conv_cfg")
    if not conv_cfg or "kernel_size" not in conv_cfg:
        raise ValueError("OpenTAD `projection.conv_cfg` must give `kernel_size` (and optionally `proj_pdrop`).")
    _check_known_keys("projection.conv_cfg", conv_cfg, {"kernel_size", "proj_pdrop"})
    _require("projection", "norm_cfg", projection.get("norm_cfg"), [{"type": "LN"}])
    attn_cfg = projection.get("attn_cfg") or {}
    _check_known_keys("projection.attn_cfg", attn_cfg, {"n_head", "n_mha_win_size", "attn_pdrop"})
    window = attn_cfg.get("n_mha_win_size", -1)
    kwargs = dict(
        projection_hidden_size=hidden_size,
        projection_arch=list(projection.get("arch", (2, 2, 5))),
        projection_kernel_size=conv_cfg["kernel_size"],
        projection_dropout=conv_cfg.get("proj_pdrop", 0.0),
        projection_num_heads=attn_cfg["n_head"],
        projection_attention_window=list(window) if isinstance(window, (list, tuple)) else window,
        projection_path_drop_rate=projection.get("path_pdrop", 0.0),
        projection_input_drop_rate=projection.get("input_pdrop", 0.0),
        projection_use_abs_pos_embed=bool(projection.get("use_abs_pe", False)),
        max_seq_len=projection.get("max_seq_len", 2304),
    )
    num_levels = kwargs["projection_arch"][2] + 1

    neck = dict(model_cfg.get("neck") or {})
    _require("neck", "type", neck.get("type"), ["FPNIdentity"])
    _check_known_keys(
        "neck",
        neck,
        {"type", "in_channels", "out_channels", "num_levels", "scale_factor", "start_level", "end_level", "norm_cfg"},
    )
    if neck.get("in_channels") != hidden_size or neck.get("out_channels") != hidden_size:
        raise ValueError(f"OpenTAD `neck` channels must equal the projection width {hidden_size}, got {neck}.")
    _require("neck", "num_levels", neck.get("num_levels"), [num_levels])
    _require("neck", "start_level", neck.get("start_level", 0), [0])
    _require("neck", "end_level", neck.get("end_level", -1), [-1, num_levels])
    _require("neck", "norm_cfg", neck.get("norm_cfg", {"type": "LN"}), [{"type": "LN"}])

    head = dict(model_cfg.get("rpn_head") or {})
    _require("rpn_head", "type", head.get("type"), ["ActionFormerHead"])
    _check_known_keys(
        "rpn_head",
        head,
        {
            "type", "num_classes", "in_channels", "feat_channels", "num_convs", "prior_generator", "loss",
            "loss_normalizer", "loss_normalizer_momentum", "center_sample", "center_sample_radius",
            "label_smoothing", "cls_prior_prob", "loss_weight", "filter_similar_gt",
        },
    )
    if head.get("in_channels") != hidden_size:
        raise ValueError(f"OpenTAD `rpn_head.in_channels` must equal the projection width {hidden_size}.")
    _require("rpn_head", "center_sample", head.get("center_sample", "radius"), ["radius"])
    generator = dict(head.get("prior_generator") or {})
    _require("rpn_head.prior_generator", "type", generator.get("type"), ["PointGenerator"])
    _check_known_keys("rpn_head.prior_generator", generator, {"type", "strides", "regression_range", "use_offset"})
    _require("rpn_head.prior_generator", "use_offset", generator.get("use_offset", False), [False])
    losses = dict(head.get("loss") or {})
    cls_loss = dict(losses.get("cls_loss") or {})
    reg_loss = dict(losses.get("reg_loss") or {})
    _require("rpn_head.loss.cls_loss", "type", cls_loss.get("type"), ["FocalLoss"])
    _require("rpn_head.loss.reg_loss", "type", reg_loss.get("type"), ["DIOULoss"])
    _check_known_keys("rpn_head.loss.cls_loss", cls_loss, {"type", "alpha", "gamma"})
    _check_known_keys("rpn_head.loss.reg_loss", reg_loss, {"type"})
    kwargs.update(
        num_labels=head["num_classes"],
        head_hidden_size=head["feat_channels"],
        head_num_convs=head.get("num_convs", 3),
        head_kernel_size=3,
        head_prior_prob=head.get("cls_prior_prob", 0.01),
        fpn_strides=list(generator["strides"]),
        fpn_regression_ranges=[list(r) for r in generator["regression_range"]],
        loss_normalizer_init=float(head.get("loss_normalizer", 100)),
        loss_normalizer_momentum=head.get("loss_normalizer_momentum", 0.9),
        loss_center_sample_radius=head.get("center_sample_radius", 1.5),
        loss_label_smoothing=head.get("label_smoothing", 0.0),
        loss_regression_weight=head.get("loss_weight", 1.0),
        loss_filter_similar_gt=bool(head.get("filter_similar_gt", True)),
        loss_focal_alpha=cls_loss.get("alpha", 0.25),
        loss_focal_gamma=cls_loss.get("gamma", 2.0),
    )
    return kwargs


def config_from_opentad(model_cfg: dict, image_size: int | None = None, **overrides):
    """Build an `AdaTADConfig` from an OpenTAD AdaTAD model config dict (`cfg.model`: type ActionFormer, an
    `mmaction.Recognizer3D` backbone wrapping `VisionTransformerAdapter` (tuning mode `adapter`) or
    `VisionTransformerLadder` (`side`), `Conv1DTransformerProj`, `FPNIdentity`, `ActionFormerHead`).

    Args:
        model_cfg: the model dict, plain values (e.g. a fixture's `opentad_model_cfg`).
        image_size: frame size fed to the model (a data-pipeline setting OpenTAD keeps outside the model config);
            defaults to the ViT's `img_size` (no position-embedding interpolation).
        overrides: further `AdaTADConfig` kwargs (e.g. post-processing settings), applied last.

    Settings missing from `model_cfg` take OpenTAD's class defaults. Raises `ValueError` naming any setting AdaTAD
    cannot reproduce (other classes, norms, losses, pipelines, dropouts, a frozen wrapper).
    """
    from .configuration_adatad import AdaTADConfig

    _require("model", "type", model_cfg.get("type"), ["ActionFormer"])
    _check_known_keys("model", model_cfg, {"type", "backbone", "projection", "neck", "rpn_head"})
    kwargs = _opentad_backbone_kwargs(model_cfg.get("backbone") or {})
    kwargs.update(_opentad_detector_kwargs(model_cfg, kwargs["backbone_config"]["hidden_size"]))
    kwargs["image_size"] = image_size if image_size is not None else kwargs["backbone_config"]["image_size"]
    kwargs.update(overrides)
    return AdaTADConfig(**kwargs)


def convert_opentad_state_dict(state_dict: dict) -> tuple[dict, list[str]]:
    """Map a whole OpenTAD AdaTAD state dict to `AdaTADForTemporalDetection` names.

    Returns the converted tensors and the OpenTAD keys deliberately dropped (fixed position table, unused norms).
    """
    backbone, dropped = convert_opentad_backbone_keys(state_dict)
    return {**backbone, **convert_opentad_detector_keys(state_dict)}, dropped


# Keys of an OpenTAD video meta that AdaTAD's post-processing reads under the same name.
OPENTAD_META_KEYS = ("duration", "resize_length", "snippet_stride", "offset_frames", "window_start_frame")


def meta_from_opentad(meta: dict) -> dict:
    """An OpenTAD video meta as `AdaTADVideoProcessor.video_meta` writes it: `video_name` -> `video_id`, and OpenTAD's
    `fps == -1` (resize mode) -> `sampling_method="resize"` (else `"sliding_window"`, the video's `fps` kept)."""
    if "video_name" not in meta or "fps" not in meta:
        raise ValueError(f"an OpenTAD video meta needs 'video_name' and 'fps', got keys {sorted(meta)}.")
    resize = meta["fps"] == -1
    converted = {"video_id": meta["video_name"], "sampling_method": "resize" if resize else "sliding_window"}
    if not resize:
        converted["fps"] = meta["fps"]
    converted.update({key: meta[key] for key in OPENTAD_META_KEYS if key in meta})
    return converted
