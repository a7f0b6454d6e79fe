"""Checkpoint conversion: the OpenTAD config reader, VideoMAE checkpoints in every source layout, and OpenTAD AdaTAD
checkpoints + configs reproducing the recorded OpenTAD outputs of the parity fixtures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoVideoProcessor, VideoMAEConfig, VideoMAEForVideoClassification

from adatad.opentad_config import OpenTADConfigError, load_opentad_config
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "conversion_scripts"))
from convert_opentad_to_adatad import (  # noqa: E402
    adatad_from_opentad_config,
    convert_opentad_checkpoint,
    main as convert_opentad_main,
)
from convert_videomae_to_adatad import ConversionError, convert_videomae_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


# ----------------------------------------------------------------------------------------------------------
# Writing OpenTAD-style Python configs
# ----------------------------------------------------------------------------------------------------------


class Expr(str):
    """Python source to write as is (a variable or arithmetic), not as a string literal."""


def to_python(value, indent: int = 0) -> str:
    """Render plain values the way OpenTAD configs are written: `dict(key=value)` calls, lists, tuples."""
    pad = "    " * (indent + 1)
    if isinstance(value, Expr):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "dict()"
        items = ",\n".join(f"{pad}{key}={to_python(item, indent + 1)}" for key, item in value.items())
        return f"dict(\n{items},\n{'    ' * indent})"
    if isinstance(value, list):
        return "[" + ", ".join(to_python(item, indent) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(to_python(item, indent) for item in value) + ",)"
    return repr(value)


def write_config(path: Path, **assignments) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(f"{name} = {to_python(value)}" for name, value in assignments.items()) + "\n")
    return path


def write_fixture_config(fixture: Path, folder: Path) -> Path:
    """The fixture's `opentad_model_cfg` (+ a test pipeline and its post-processing) as an OpenTAD config split
    over three files like `configs/adatad/thumos/*.py`: a model base with stale values that the child replaces
    (nested merge, list replacement, `_delete_`), a dataset base, and the child that defines `window_size`-style
    variables and uses them in arithmetic."""
    fixture_config = json.loads((fixture / "config.json").read_text())
    model_cfg = fixture_config["opentad_model_cfg"]
    video_shape = load_file(fixture / "inputs.safetensors")["video"].shape  # [B, 1, 3, T, H, W]
    frame_size = int(video_shape[-1])
    vit = model_cfg["backbone"]["backbone"]
    total_frames = vit["total_frames"]
    post_steps = model_cfg["backbone"]["custom"]["post_processing_pipeline"]
    window_size = next((step["size"] for step in post_steps if step["type"] == "Interpolate"), None)
    window_size = window_size or total_frames // vit.get("num_frames", 16) * (
        vit.get("num_frames", 16) // vit.get("tubelet_size", 2)
    )
    assert total_frames % window_size == 0, "fixture not expressible as window_size * scale_factor"
    post = fixture_config["post_processing"]
    snippet_stride = post["metas"][0]["snippet_stride"]

    # Model base: the real detector settings of the fixture, but a stale ViT (replaced via _delete_) and stale
    # class count / strides (replaced by the child's nested dicts).
    base_model = dict(model_cfg)
    base_model["backbone"] = dict(type="mmaction.Recognizer3D", backbone=dict(type="VisionTransformerCP", depth=99))
    base_model["rpn_head"] = dict(model_cfg["rpn_head"], num_classes=20)
    base_model["rpn_head"]["prior_generator"] = dict(
        model_cfg["rpn_head"]["prior_generator"], strides=[1, 2, 4, 8, 16, 32]
    )
    write_config(folder / "_base_" / "models" / "tiny_actionformer.py", model=base_model)

    test_pipeline = [
        dict(type="PrepareVideoInfo", format="mp4"),
        dict(type="mmaction.DecordInit", num_threads=2),
        dict(type="LoadFrames", num_clips=1, method="sliding_window", scale_factor=Expr("scale_factor")),
        dict(type="mmaction.DecordDecode"),
        dict(type="mmaction.Resize", scale=(-1, frame_size)),
        dict(type="mmaction.CenterCrop", crop_size=frame_size),
        dict(type="mmaction.FormatShape", input_format="NCTHW"),
        dict(type="ConvertToTensor", keys=["imgs"]),
        dict(type="Collect", inputs="imgs", keys=["masks"]),
    ]
    write_config(
        folder / "_base_" / "datasets" / "tiny_dataset.py",
        window_size=16,  # stale: the child overrides it, as THUMOS' 768 overrides the dataset base's 256
        scale_factor=1,
        dataset=dict(
            test=dict(
                type="ThumosSlidingDataset",
                feature_stride=snippet_stride,
                sample_stride=1,
                window_size=Expr("window_size"),
                window_overlap_ratio=0.5,
                pipeline=test_pipeline,
            )
        ),
    )

    backbone = json.loads(json.dumps(model_cfg["backbone"]))
    backbone["_delete_"] = True
    backbone["backbone"]["total_frames"] = Expr("window_size * scale_factor")
    for step in backbone["custom"]["pre_processing_pipeline"] + backbone["custom"]["post_processing_pipeline"]:
        if "t1" in step:
            step["t1"] = Expr(f"window_size * scale_factor // {vit.get('num_frames', 16)}")
        if step["type"] == "Interpolate":
            step["size"] = Expr("window_size")
    nms = {key: post["nms"][key] for key in ("sigma", "max_seg_num", "min_score", "multiclass", "voting_thresh")}
    child = write_config(
        folder / "configs" / "adatad" / "tiny" / "e2e_tiny_adapter.py",
        _base_=["../../../_base_/datasets/tiny_dataset.py", "../../../_base_/models/tiny_actionformer.py"],
        window_size=window_size,
        scale_factor=total_frames // window_size,
        model=dict(
            backbone=backbone,
            rpn_head=dict(
                num_classes=model_cfg["rpn_head"]["num_classes"],
                prior_generator=dict(strides=model_cfg["rpn_head"]["prior_generator"]["strides"]),
            ),
        ),
        dataset=dict(test=dict(window_size=Expr("window_size"))),
        post_processing=dict(
            pre_nms_thresh=post["pre_nms_thresh"], pre_nms_topk=post["pre_nms_topk"], nms=dict(use_soft_nms=True, **nms)
        ),
    )
    # The reader must give back exactly the fixture's model config.
    assert json.loads(json.dumps(load_opentad_config(child)["model"])) == model_cfg
    return child


def write_opentad_checkpoint(fixture: Path, path: Path) -> None:
    """The fixture weights as OpenTAD saves a trained model: DDP `module.` prefixes, the EMA weights (what OpenTAD
    tests with, here the fixture's) under `state_dict_ema` and different raw weights under `state_dict`."""
    weights = load_file(fixture / "weights.safetensors")
    ema = {f"module.{key}": tensor for key, tensor in weights.items()}
    raw = {key: tensor + 0.5 if tensor.is_floating_point() else tensor for key, tensor in ema.items()}
    optimizer = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    scheduler = {"last_epoch": 700, "base_lrs": [1e-4], "_get_lr_called_within_step": False}
    torch.save(
        {"epoch": 7, "state_dict": raw, "optimizer": optimizer, "scheduler": scheduler, "state_dict_ema": ema}, path
    )


def fixture_pixel_values(fixture: Path):
    """The fixture video, normalised as AdaTADVideoProcessor does, in the model's (B, T, 3, H, W) layout."""
    inputs = load_file(fixture / "inputs.safetensors")
    video = inputs["video"][:, 0]  # [B, 3, T, H, W], 0..255
    video = video.permute(0, 2, 1, 3, 4) / 255.0  # [B, T, 3, H, W]
    video = (video - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return video, inputs["masks"]


def assert_matches_fixture(folder: Path, fixture: Path):
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    expected = load_file(fixture / "outputs.safetensors")
    pixel_values, masks = fixture_pixel_values(fixture)
    with torch.no_grad():
        outputs = model(pixel_values, masks=masks)
    torch.testing.assert_close(outputs.backbone_features, expected["backbone.features"], atol=1e-4, rtol=1e-4)
    for level, (logits, offsets) in enumerate(zip(outputs.logits, outputs.pred_offsets)):
        torch.testing.assert_close(logits.transpose(1, 2), expected[f"head.cls_logits.{level}"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(offsets.transpose(1, 2), expected[f"head.reg_offsets.{level}"], atol=1e-4, rtol=1e-4)
    return model


# ----------------------------------------------------------------------------------------------------------
# OpenTAD config reader
# ----------------------------------------------------------------------------------------------------------


def test_config_reader_inherits_like_opentad(tmp_path):
    # Mimics configs/adatad/thumos: dataset base (window 256) + model base, a ViT-S child that sets
    # window_size = 768 and derived values, and a ViT-B grandchild that only overrides a few nested values.
    write_config(
        tmp_path / "_base_" / "datasets" / "thumos.py",
        annotation_path="data/thumos-14/annotations/thumos_14_anno.json",
        window_size=256,
        dataset=dict(
            train=dict(
                type="ThumosPaddingDataset", ann_file=Expr("annotation_path"), feature_stride=4, sample_stride=1
            ),
            test=dict(type="ThumosSlidingDataset", window_size=Expr("window_size"), window_overlap_ratio=0.5),
        ),
        evaluation=dict(type="mAP", tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7]),
    )
    write_config(
        tmp_path / "_base_" / "models" / "actionformer.py",
        model=dict(
            type="ActionFormer",
            projection=dict(in_channels=2048, arch=(2, 2, 5), attn_cfg=dict(n_head=4, n_mha_win_size=19)),
            rpn_head=dict(num_classes=20, prior_generator=dict(strides=[1, 2, 4, 8, 16, 32])),
        ),
        post_processing=dict(nms=dict(sigma=0.5, max_seg_num=100), external_cls=dict(type="CUHKANETClassifier")),
    )
    (tmp_path / "configs" / "adatad" / "thumos").mkdir(parents=True)
    (tmp_path / "configs" / "adatad" / "thumos" / "vit_s.py").write_text(
        '"""ViT-S."""\n'
        "_base_ = [\n"
        '    "../../../_base_/datasets/thumos.py",  # dataset config\n'
        '    "../../../_base_/models/actionformer.py",\n'
        "]\n"
        "window_size = 768\n"
        "scale_factor = 1\n"
        "chunk_num = window_size * scale_factor // 16  # 48 chunks\n"
        "dataset = dict(test=dict(window_size=window_size))\n"
        "model = dict(\n"
        "    backbone=dict(backbone=dict(embed_dims=384, total_frames=window_size * scale_factor,\n"
        "                                adapter_index=list(range(12)), drop_path_rate=0.1, mean=[-1.5, 2 ** 3])),\n"
        "    projection=dict(in_channels=384, max_seq_len=window_size, attn_cfg=dict(n_mha_win_size=-1)),\n"
        ")\n"
        "post_processing = dict(nms=dict(sigma=0.7), external_cls=dict(_delete_=True, type='PseudoClassifier'))\n"
        'work_dir = f"exps/thumos/s_{window_size}x{scale_factor}"\n'
    )
    (tmp_path / "configs" / "adatad" / "thumos" / "vit_b.py").write_text(
        '_base_ = ["vit_s.py"]\n'
        "model = dict(backbone=dict(backbone=dict(embed_dims=768, adapter_index=list(range(6, 12)))))\n"
        "optimizer = dict(custom=[dict(name='adapter', lr=1e-4)])\n"
    )

    cfg = load_opentad_config(tmp_path / "configs" / "adatad" / "thumos" / "vit_b.py")

    assert cfg["window_size"] == 768 and cfg["chunk_num"] == 48
    # A value computed in the dataset base keeps the base's window (mmengine semantics); the child overrides it.
    assert cfg["dataset"]["test"] == dict(type="ThumosSlidingDataset", window_size=768, window_overlap_ratio=0.5)
    assert cfg["dataset"]["train"]["ann_file"] == "data/thumos-14/annotations/thumos_14_anno.json"
    assert cfg["model"]["backbone"]["backbone"] == dict(
        embed_dims=768, total_frames=768, adapter_index=[6, 7, 8, 9, 10, 11], drop_path_rate=0.1, mean=[-1.5, 8]
    )
    assert cfg["model"]["projection"] == dict(
        in_channels=384, arch=(2, 2, 5), attn_cfg=dict(n_head=4, n_mha_win_size=-1), max_seq_len=768
    )
    assert cfg["model"]["rpn_head"]["prior_generator"]["strides"] == [1, 2, 4, 8, 16, 32]
    assert cfg["post_processing"] == dict(
        nms=dict(sigma=0.7, max_seg_num=100), external_cls=dict(type="PseudoClassifier")
    )
    assert cfg["work_dir"] == "exps/thumos/s_768x1"
    assert cfg["optimizer"] == dict(custom=[dict(name="adapter", lr=1e-4)])
    assert "_base_" not in cfg


def test_config_reader_base_reference_and_errors(tmp_path):
    write_config(tmp_path / "a.py", model=dict(neck=dict(num_levels=6)), lr=0.1)
    write_config(tmp_path / "b.py", lr=0.2)
    (tmp_path / "ref.py").write_text('_base_ = "a.py"\nlevels = {{_base_.model.neck.num_levels}}\nscaled = lr * 10\n')
    cfg = load_opentad_config(tmp_path / "ref.py")
    assert cfg["levels"] == 6 and cfg["scaled"] == pytest.approx(1.0)

    cases = {
        "dup.py": ('_base_ = ["a.py", "b.py"]\n', "defined in two of its base files"),
        "import.py": ("import os\n", "imports are not supported"),
        "call.py": ("x = open('f')\n", "call of `open` is not allowed"),
        "name.py": ("x = y + 1\n", "name `y` is not defined"),
        "missing.py": ('_base_ = "nope.py"\n', "not found"),
        "merge.py": ('_base_ = "a.py"\nmodel = 3\n', None),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        if message is None:
            assert load_opentad_config(tmp_path / name)["model"] == 3  # a non-dict value replaces the base dict
            continue
        with pytest.raises(OpenTADConfigError, match=message) as error:
            load_opentad_config(tmp_path / name)
        assert name in str(error.value) or "nope.py" in str(error.value)
    (tmp_path / "bad_merge.py").write_text('_base_ = "b.py"\nlr = dict(x=1)\n')
    with pytest.raises(OpenTADConfigError, match="cannot be merged"):
        load_opentad_config(tmp_path / "bad_merge.py")


# ----------------------------------------------------------------------------------------------------------
# VideoMAE checkpoints in every source layout
# ----------------------------------------------------------------------------------------------------------

TINY_DETECTOR = dict(
    num_frames=8,
    image_size=32,
    feature_length=4,
    projection_hidden_size=32,
    projection_arch=[2, 1, 1],
    fpn_strides=[1, 2],
    fpn_regression_ranges=[[0, 4], [4, 10000]],
    head_hidden_size=32,
    max_seq_len=4,
    num_labels=3,
)
TINY_VIT = dict(num_frames=4, image_size=32)


@pytest.fixture(scope="module")
def tiny_videomae(tmp_path_factory):
    """A tiny transformers VideoMAE classifier with non-zero q/v biases, saved as a transformers folder."""
    torch.manual_seed(0)
    config = VideoMAEConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
        patch_size=16, num_frames=4, tubelet_size=2, layer_norm_eps=1e-6, qv_bias=True, use_mean_pooling=True,
        num_labels=5,
    )
    model = VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    folder = tmp_path_factory.mktemp("hf_videomae")
    model.save_pretrained(folder)
    return model, folder


def original_layout(model) -> dict:
    """The tiny model's weights named as the original VideoMAE release (fused qkv, q_bias/v_bias, fc1/fc2)."""
    state = {key.removeprefix("videomae."): tensor for key, tensor in model.state_dict().items()}
    out = {
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "fc_norm.weight": state["fc_norm.weight"],
        "fc_norm.bias": state["fc_norm.bias"],
        "head.weight": state["classifier.weight"],
        "head.bias": state["classifier.bias"],
    }
    for n in range(model.config.num_hidden_layers):
        layer, block = f"encoder.layer.{n}.", f"blocks.{n}."
        attention = layer + "attention.attention."
        out[block + "attn.qkv.weight"] = torch.cat(
            [state[attention + f"{p}.weight"] for p in ("query", "key", "value")]
        )
        out[block + "attn.q_bias"] = state[attention + "query.bias"]
        out[block + "attn.v_bias"] = state[attention + "value.bias"]
        for source, target in [
            ("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("attention.output.dense", "attn.proj"),
            ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"),
        ]:
            for kind in ("weight", "bias"):
                out[f"{block}{target}.{kind}"] = state[f"{layer}{source}.{kind}"]
    return out


def mmaction_layout(model) -> dict:
    renames = {
        "patch_embed.proj.": "patch_embed.projection.",
        "mlp.fc1.": "mlp.layers.0.0.",
        "mlp.fc2.": "mlp.layers.1.",
    }
    out = {}
    for key, tensor in original_layout(model).items():
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key.replace("head.", "cls_head.fc_cls.") if key.startswith("head.") else f"backbone.{key}"] = tensor
    return out


def pretraining_layout(model) -> dict:
    out = {
        f"encoder.{key}": tensor
        for key, tensor in original_layout(model).items()
        if not key.startswith(("head", "fc_norm"))
    }
    out.update({
        "encoder.norm.weight": torch.ones(32), "encoder.norm.bias": torch.zeros(32),
        "mask_token": torch.zeros(1, 1, 16), "encoder_to_decoder.weight": torch.zeros(16, 32),
        "decoder.blocks.0.norm1.weight": torch.ones(16), "decoder.head.weight": torch.zeros(1536, 16),
    })
    return out


def reference_features(model, pixel_values):
    """What AdaTAD's backbone must give with fresh (identity) adapters: transformers VideoMAE run per 4-frame chunk,
    tokens averaged over space, chunks concatenated in time (feature_length = tokens, so no resampling)."""
    batch, frames = pixel_values.shape[:2]
    chunks = pixel_values.reshape(batch * frames // 4, 4, *pixel_values.shape[2:])
    with torch.no_grad():
        tokens = model.videomae(chunks).last_hidden_state  # [B * chunks, 2 * 2 * 2, C]
    features = tokens.reshape(batch, frames // 4 * 2, 4, -1).mean(2)  # [B, chunks * t, C]
    return features.transpose(1, 2)


@pytest.mark.parametrize(
    "layout",
    ["original", "mmaction2", "pretraining", "transformers_folder", "transformers_file", "transformers_q_bias"],
)
def test_videomae_layouts_round_trip(layout, tiny_videomae, tmp_path):
    model, hf_folder = tiny_videomae
    if layout == "transformers_folder":
        checkpoint = hf_folder
    elif layout == "transformers_file":
        checkpoint = tmp_path / "videomae.bin"
        torch.save(model.state_dict(), checkpoint)
    elif layout == "transformers_q_bias":
        # Hub checkpoints saved by older transformers name the biases `q_bias` / `v_bias`.
        checkpoint = tmp_path / "model.safetensors"
        renamed = {
            key.replace("query.bias", "q_bias").replace("value.bias", "v_bias"): tensor.contiguous()
            for key, tensor in model.state_dict().items()
        }
        save_file(renamed, checkpoint)
    else:
        state, wrapper = {
            "original": (original_layout(model), "module"),
            "mmaction2": (mmaction_layout(model), "state_dict"),
            "pretraining": (pretraining_layout(model), "model"),
        }[layout]
        checkpoint = tmp_path / "videomae.pth"
        torch.save({wrapper: state, "meta": {"epoch": 1}}, checkpoint)
    # Only a transformers folder says how many heads, which chunk length and which position-table size it has.
    if layout == "transformers_folder":
        options = dict(config_overrides=dict(TINY_DETECTOR))
    else:
        options = dict(num_attention_heads=4, config_overrides=dict(TINY_DETECTOR, backbone_config=TINY_VIT))
    output = tmp_path / "adatad"
    converted, report = convert_videomae_checkpoint(checkpoint, output, **options)

    assert converted.config.backbone_config.num_attention_heads == 4
    assert converted.config.backbone_config.layer_norm_eps == 1e-6
    # patch embedding (2) + per block: 2 norms x 2, q/k/v weights, q/v biases, 3 linears x 2 (15)
    assert len(report.loaded) == 2 + 2 * 15
    assert all(key.startswith("detector.") or "adapter" in key for key in report.initialised)
    if layout != "pretraining":
        assert any("head" in key or "classifier" in key for key in report.unused)

    reloaded = AutoModel.from_pretrained(output, trust_remote_code=True).eval()
    hf_state = model.state_dict()
    for n in range(2):
        for name in ("query", "value"):
            saved = reloaded.state_dict()[f"model.backbone.layers.{n}.attention.attention.{name}.bias"]
            source = hf_state[f"videomae.encoder.layer.{n}.attention.attention.{name}.bias"]
            assert torch.count_nonzero(source) > 0
            torch.testing.assert_close(saved, source, rtol=0, atol=0)

    pixel_values = torch.randn(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = reloaded(pixel_values).backbone_features
    torch.testing.assert_close(features, reference_features(model, pixel_values), atol=1e-5, rtol=1e-5)


def test_videomae_conversion_refuses_bad_input(tiny_videomae, tmp_path):
    model, _ = tiny_videomae
    state = original_layout(model)
    options = dict(config_overrides=dict(TINY_DETECTOR, backbone_config=TINY_VIT))
    output = tmp_path / "out"

    pickled = tmp_path / "pickled.pth"
    torch.save({"module": state, "args": argparse_like()}, pickled)
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert_videomae_checkpoint(pickled, output, num_attention_heads=4, **options)

    missing = tmp_path / "missing.pth"
    torch.save({"module": {k: v for k, v in state.items() if k != "blocks.1.attn.v_bias"}}, missing)
    with pytest.raises(ConversionError, match="layers.1.attention.attention.value.bias"):
        convert_videomae_checkpoint(missing, output, num_attention_heads=4, **options)

    clean = tmp_path / "clean.pth"
    torch.save({"module": state}, clean)
    with pytest.raises(ConversionError, match="--arch b means hidden size 768"):
        convert_videomae_checkpoint(clean, output, arch="b", **options)

    unknown = tmp_path / "unknown.pth"
    torch.save({"module": {**state, "blocks.0.attn.rel_pos": torch.zeros(3)}}, unknown)
    with pytest.raises(ConversionError, match="blocks.0.attn.rel_pos"):
        convert_videomae_checkpoint(unknown, output, num_attention_heads=4, **options)
    assert not output.exists()  # failed conversions write nothing

    _, report = convert_videomae_checkpoint(
        unknown, output, num_attention_heads=4, allow_unused=["*.rel_pos"], verify=False, **options
    )
    assert "blocks.0.attn.rel_pos" not in report.unused + report.loaded
    assert (output / "model.safetensors").is_file()


class argparse_like:  # noqa: N801 - stands for any pickled Python object (e.g. an argparse.Namespace)
    pass


# ----------------------------------------------------------------------------------------------------------
# OpenTAD checkpoints + configs -> the recorded OpenTAD outputs
# ----------------------------------------------------------------------------------------------------------


def test_opentad_fixture_conversion(opentad_fixture, tmp_path):
    config_file = write_fixture_config(opentad_fixture, tmp_path / "opentad")
    checkpoint = tmp_path / "epoch_7.pth"
    write_opentad_checkpoint(opentad_fixture, checkpoint)
    output = tmp_path / "converted"

    model, processor, report = convert_opentad_checkpoint(checkpoint, config_file, output, use_ema=True)

    # Every model tensor comes from the checkpoint; only the fixed position table and the unused pooling norm
    # of the ViT are left out.
    assert not report.initialised
    assert len(report.loaded) == len(model.state_dict())
    assert {key.split("backbone.model.backbone.")[-1] for key in report.unused} <= {
        "pos_embed", "fc_norm.weight", "fc_norm.bias"
    }
    assert_matches_fixture(output, opentad_fixture)

    fixture_config = json.loads((opentad_fixture / "config.json").read_text())
    loaded_processor = AutoVideoProcessor.from_pretrained(output, trust_remote_code=True)
    frame_size = load_file(opentad_fixture / "inputs.safetensors")["video"].shape[-1]
    assert loaded_processor.sampling_method == "sliding_window"
    assert loaded_processor.crop_size["height"] == frame_size
    assert loaded_processor.frames_per_sample() == model.config.num_frames
    assert loaded_processor.feature_length() == model.config.feature_length
    assert loaded_processor.snippet_stride == fixture_config["post_processing"]["metas"][0]["snippet_stride"]
    assert loaded_processor.nms_sigma == fixture_config["post_processing"]["nms"]["sigma"]
    assert loaded_processor.max_segments == fixture_config["post_processing"]["nms"]["max_seg_num"]

    # The raw (non-EMA) weights are a different model: converting them must not reproduce the fixture.
    convert_opentad_checkpoint(checkpoint, config_file, tmp_path / "raw", verify=False)
    with pytest.raises(AssertionError):
        assert_matches_fixture(tmp_path / "raw", opentad_fixture)


@pytest.mark.slow
def test_opentad_conversion_cli_and_key_checks(tests_dir, tmp_path):
    fixture = tests_dir / "fixtures" / "opentad_public"
    config_file = write_fixture_config(fixture, tmp_path / "opentad")
    checkpoint = tmp_path / "best.pth"
    write_opentad_checkpoint(fixture, checkpoint)

    script = REPO_ROOT / "conversion_scripts" / "convert_opentad_to_adatad.py"
    command = [sys.executable, str(script), "--checkpoint", str(checkpoint), "--config", str(config_file)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    class_map = tmp_path / "category_idx.txt"
    class_map.write_text("BaseballPitch\nBasketballDunk\nBilliards\n")
    result = subprocess.run(
        command + ["--output", str(tmp_path / "cli"), "--use-ema", "--class-map", str(class_map)],
        capture_output=True, text=True, env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert "saved AdaTAD model and processor" in result.stdout
    model = assert_matches_fixture(tmp_path / "cli", fixture)
    assert model.config.id2label == {0: "BaseballPitch", 1: "BasketballDunk", 2: "Billiards"}
    processor = AutoVideoProcessor.from_pretrained(tmp_path / "cli", trust_remote_code=True)
    assert processor.class_names == ["BaseballPitch", "BasketballDunk", "Billiards"]

    # A checkpoint that lacks a detector tensor fails, naming it, unless --allow-missing says it is expected.
    weights = torch.load(checkpoint, weights_only=True)
    del weights["state_dict"]["module.rpn_head.cls_head.bias"]
    weights["state_dict"]["module.rpn_head.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save({"state_dict": weights["state_dict"]}, broken)
    with pytest.raises(SystemExit, match="rpn_head.extra.weight"):
        convert_opentad_main(
            ["--checkpoint", str(broken), "--config", str(config_file), "--output", str(tmp_path / "bad")]
        )
    with pytest.raises(ConversionError, match="detector.head.classification_head.bias"):
        convert_opentad_checkpoint(
            broken, config_file, tmp_path / "bad", allow_unused=["rpn_head.extra.*"], verify=False
        )
    _, _, report = convert_opentad_checkpoint(
        broken, config_file, tmp_path / "bad", allow_unused=["rpn_head.extra.*"],
        allow_missing=["detector.head.classification_head.bias"], verify=False,
    )
    assert report.initialised == ["detector.head.classification_head.bias"]
    assert "rpn_head.extra.weight" in report.unused

    with pytest.raises(ConversionError, match="no `state_dict_ema`"):
        convert_opentad_checkpoint(broken, config_file, tmp_path / "bad_ema", use_ema=True)


def thumos_like_pipelines(method: str, frame_size: int, scale_factor: int, train_method: str):
    train = [
        dict(type="PrepareVideoInfo", format="mp4"),
        dict(type="mmaction.DecordInit", num_threads=4),
        dict(type="LoadFrames", num_clips=1, method=train_method, trunc_len=Expr("window_size"), trunc_thresh=0.75,
             crop_ratio=[0.9, 1.0], scale_factor=scale_factor),
        dict(type="mmaction.DecordDecode"),
        dict(type="mmaction.Resize", scale=(-1, 182)),
        dict(type="mmaction.RandomResizedCrop"),
        dict(type="mmaction.Resize", scale=(frame_size, frame_size), keep_ratio=False),
        dict(type="mmaction.Flip", flip_ratio=0.5),
        dict(type="mmaction.ImgAug", transforms="default"),
        dict(type="mmaction.ColorJitter"),
        dict(type="mmaction.FormatShape", input_format="NCTHW"),
        dict(type="Collect", inputs="imgs", keys=["masks", "gt_segments", "gt_labels"]),
    ]
    test = [
        dict(type="mmaction.DecordInit", num_threads=4),
        dict(type="LoadFrames", num_clips=1, method=method, scale_factor=scale_factor),
        dict(type="mmaction.DecordDecode"),
        dict(type="mmaction.Resize", scale=(-1, frame_size)),
        dict(type="mmaction.CenterCrop", crop_size=frame_size),
        dict(type="mmaction.FormatShape", input_format="NCTHW"),
    ]
    return train, test


@pytest.mark.parametrize("dataset", ["thumos", "anet"])
def test_processor_settings_from_opentad_config(dataset, tests_dir, tmp_path):
    # THUMOS-style (sliding windows of 768 features, snippet stride 4, random truncation in training) and
    # ActivityNet-style (whole video resized to 192 features x 4 frames, class-agnostic with an external
    # classifier) configs, on a tiny fixture model so that config_from_opentad accepts them.
    fixture = tests_dir / "fixtures" / "opentad_public"
    model_cfg = json.loads((fixture / "config.json").read_text())["opentad_model_cfg"]
    write_config(tmp_path / "model.py", model=model_cfg)
    (tmp_path / "classes.txt").write_text("".join(f"action {i}\n" for i in range(3)))
    resize = dataset == "anet"
    train, test = thumos_like_pipelines(
        "resize" if resize else "sliding_window", 32, scale_factor=4 if resize else 1,
        train_method="resize" if resize else "random_trunc",
    )
    length = {"resize_length": 16} if resize else {"window_size": 64, "feature_stride": 4, "sample_stride": 1,
                                                    "window_overlap_ratio": 0.25}
    model_cfg = json.loads(json.dumps(model_cfg))
    if resize:  # 64 frames -> 16 features, as ANet's 768 frames -> 192
        model_cfg["backbone"]["custom"]["post_processing_pipeline"][-1]["size"] = 16
        model_cfg["projection"]["max_seq_len"] = 16
    post = dict(nms=dict(use_soft_nms=True, sigma=0.75, max_seg_num=100, min_score=0.001, multiclass=not resize,
                         voting_thresh=0.9))
    if resize:
        post["external_cls"] = dict(type="CUHKANETClassifier", path="cuhk_val_simp_7.json", topk=2)
    else:
        post.update(pre_nms_topk=8000, pre_nms_thresh=0.002)
    config_file = write_config(
        tmp_path / "child.py",
        _base_="model.py",
        window_size=64,
        class_map=str(tmp_path / "classes.txt"),
        model=dict(backbone=dict(custom=model_cfg["backbone"]["custom"]), projection=model_cfg["projection"]),
        dataset=dict(train=dict(pipeline=train, **length), test=dict(pipeline=test, **length)),
        post_processing=post,
    )

    config, processor, notes = adatad_from_opentad_config(config_file)

    assert processor.sampling_method == ("resize" if resize else "sliding_window")
    assert processor.train_sampling_method == ("resize" if resize else "random_trunc")
    assert processor.frames_per_sample() == config.num_frames == 64
    assert processor.feature_length() == config.feature_length == (16 if resize else 64)
    assert processor.size["shortest_edge"] == 32 and processor.crop_size["height"] == 32 and config.image_size == 32
    assert processor.train_size["shortest_edge"] == 182
    assert processor.do_random_resized_crop and processor.do_flip and processor.do_color_jitter
    assert processor.augmentation == "imgaug_default"
    assert (processor.nms_sigma, processor.max_segments, processor.min_score) == (0.75, 100, 0.001)
    assert processor.multiclass == (not resize)
    assert not [key for key in config.to_dict() if key.startswith("post_")]  # the processor is their one place
    assert processor.class_names == ["action 0", "action 1", "action 2"] and config.id2label[2] == "action 2"
    if resize:
        assert any("external_cls" in note for note in notes)
    else:
        assert (processor.snippet_stride, processor.window_overlap, processor.trunc_thresh) == (4, 0.25, 0.75)
        assert (processor.pre_nms_topk, processor.pre_nms_thresh) == (8000, 0.002)

    bad = write_config(tmp_path / "bad.py", _base_="child.py", post_processing=dict(nms=dict(method=1)))
    with pytest.raises(ConversionError, match="Gaussian soft-NMS"):
        adatad_from_opentad_config(bad)
    bad = write_config(
        tmp_path / "bad_window.py", _base_="child.py", dataset=dict(test=dict(window_size=128, resize_length=8))
    )
    with pytest.raises(ConversionError, match="the model expects 64 frames"):
        adatad_from_opentad_config(bad)


def test_opentad_conversion_never_mixes_into_an_existing_model_folder(tests_dir, tmp_path, capsys):
    fixture = tests_dir / "fixtures" / "opentad_public"
    config_file = write_fixture_config(fixture, tmp_path / "opentad")
    checkpoint = tmp_path / "best.pth"
    write_opentad_checkpoint(fixture, checkpoint)
    # A model folder as training leaves it: weights, config, its evaluation and preset.
    output = tmp_path / "model"
    output.mkdir()
    earlier = {"config.json": '{"model_type": "adatad"}', "model.safetensors": "weights",
               "eval_results.json": '{"average_mAP": 0.61}', "preset.json": "{}"}
    for name, text in earlier.items():
        (output / name).write_text(text)
    argv = ["--checkpoint", str(checkpoint), "--config", str(config_file), "--output", str(output), "--use-ema"]
    with pytest.raises(SystemExit, match=r"already holds a model \(config.json\); pass --overwrite"):
        convert_opentad_main(argv)
    assert {path.name: path.read_text() for path in output.iterdir()} == earlier

    convert_opentad_main([*argv, "--overwrite"])
    # The new folder replaced the old one whole: no earlier file is left beside the new weights.
    assert not {"eval_results.json", "preset.json"} & {path.name for path in output.iterdir()}
    assert_matches_fixture(output, fixture)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pth", "model", "opentad"]

    # A folder holding an input is refused even with --overwrite: replacing it would delete the checkpoint.
    inside = tmp_path / "model" / "best.pth"
    inside.write_bytes(checkpoint.read_bytes())
    with pytest.raises(SystemExit, match="holds the checkpoint"):
        convert_opentad_main(["--checkpoint", str(inside), "--config", str(config_file), "--output", str(output),
                              "--use-ema", "--overwrite"])
    assert inside.is_file()
