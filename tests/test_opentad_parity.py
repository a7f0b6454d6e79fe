"""AdaTAD vs OpenTAD on the reference fixtures: every recorded tensor, the losses and one training step's gradients.

Each fixture folder (every `opentad_*` under tests/fixtures plus those in ADATAD_PARITY_FIXTURES) is driven only by
its own config.json; see the folder's README for what each tensor means and the tolerances used here.
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from adatad.modeling_adatad import AdaTADForTemporalDetection
from adatad.opentad import config_from_opentad, convert_opentad_state_dict

TENSOR_TOLERANCE = dict(atol=1e-4, rtol=1e-4)
LOSS_TOLERANCE = dict(atol=0.0, rtol=1e-4)
GRAD_TOLERANCE = dict(atol=1e-5, rtol=1e-3)
# OpenTAD's ActionDataPreprocessor normalises 0..255 RGB with these; AdaTAD takes the normalised tensor.
OPENTAD_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
OPENTAD_STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)


class Fixture:
    def __init__(self, folder):
        self.folder = folder
        self.config_json = json.loads((folder / "config.json").read_text())
        self.weights = load_file(folder / "weights.safetensors")
        self.inputs = load_file(folder / "inputs.safetensors")
        self.outputs = load_file(folder / "outputs.safetensors")
        self.grads = load_file(folder / "grads.safetensors")

    def indexed(self, prefix):
        """Recorded tensors `prefix.0`, `prefix.1`, ... in index order."""
        count = sum(1 for key in self.outputs if key.startswith(prefix + ".") and key[len(prefix) + 1 :].isdigit())
        return [self.outputs[f"{prefix}.{i}"] for i in range(count)]

    def build_model(self):
        input_size = self.inputs["video"].shape[-1]
        config = config_from_opentad(self.config_json["opentad_model_cfg"], image_size=input_size)
        model = AdaTADForTemporalDetection(config)
        converted, _ = convert_opentad_state_dict(self.weights)
        missing, unexpected = model.load_state_dict(converted, strict=False)
        assert not unexpected, unexpected
        assert not missing, missing
        return model

    def pixel_values(self):
        video = self.inputs["video"]  # (batch, clips=1, 3, frames, height, width), 0..255
        assert video.shape[1] == 1, "one clip per video"
        normalised = (video[:, 0] - OPENTAD_MEAN) / OPENTAD_STD
        return normalised.permute(0, 2, 1, 3, 4).contiguous()  # (batch, frames, 3, height, width)

    def labels(self):
        batch_size = self.inputs["masks"].shape[0]
        return [
            {"segments": self.inputs[f"gt_segments.{b}"], "labels": self.inputs[f"gt_labels.{b}"]}
            for b in range(batch_size)
        ]


def disable_stochastic_layers(model):
    # The fixtures were recorded with every drop path / dropout set to p=0 (config.json run.stochastic_layers_disabled).
    for module in model.modules():
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
        if isinstance(module, (nn.Dropout, nn.Dropout1d)):
            module.p = 0.0


def record_backbone(model, records):
    backbone = model.model.backbone
    hooks = [
        backbone.embeddings.patch_embeddings.projection.register_forward_hook(
            lambda m, i, o: records.__setitem__("backbone.patch_embed_output", o.flatten(2).transpose(1, 2))
        ),
        backbone.embeddings.register_forward_hook(lambda m, i, o: records.__setitem__("backbone.embeddings", o[0])),
    ]
    for index, layer in enumerate(backbone.layers):
        hooks.append(
            layer.register_forward_hook(
                lambda m, i, o, index=index: records.__setitem__(f"backbone.block_outputs.{index}", o)
            )
        )
    if backbone.side_adapters is not None:
        hooks.append(
            backbone.side_adapters.register_forward_hook(
                lambda m, i, o: records.__setitem__("backbone.ladder_output", o)
            )
        )
    return hooks


def assert_close(actual, expected, name, **tolerance):
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual.float(), expected.float(), msg=lambda m: f"{name}: {m}", **tolerance)


@pytest.fixture
def fixture(opentad_fixture):
    return Fixture(opentad_fixture)


def test_backbone_matches_opentad(fixture):
    model = fixture.build_model().eval()
    records = {}
    hooks = record_backbone(model, records)
    with torch.no_grad():
        features = model.model(fixture.pixel_values()).last_hidden_state
    for hook in hooks:
        hook.remove()
    compared = 0
    for name, expected in fixture.outputs.items():
        if name in records:
            assert_close(records[name], expected, name, **TENSOR_TOLERANCE)
            compared += 1
    # Block outputs after the last tapped block are not computed in side mode (nothing reads them).
    tapped_last = max(model.config.adapter_layer_indices, default=0)
    expected_blocks = len(model.model.backbone.layers) if model.config.tuning_mode != "side" else tapped_last + 1
    assert compared >= 2 + expected_blocks
    # `backbone.feature_map` is the last block output reshaped to (batch * chunks, C, t, h, w).
    if model.config.tuning_mode == "side":
        last_block = records["backbone.ladder_output"]
    else:
        last_block = records[f"backbone.block_outputs.{len(model.model.backbone.layers) - 1}"]
    feature_map = fixture.outputs["backbone.feature_map"]
    assert_close(last_block, feature_map.flatten(2).transpose(1, 2), "backbone.feature_map", **TENSOR_TOLERANCE)
    assert_close(features, fixture.outputs["backbone.features"], "backbone.features", **TENSOR_TOLERANCE)


def test_model_outputs_and_eval_loss_match_opentad(fixture):
    model = fixture.build_model().eval()
    with torch.no_grad():
        outputs = model(fixture.pixel_values(), masks=fixture.inputs["masks"], labels=fixture.labels())
    assert_close(
        outputs.backbone_features, fixture.outputs["backbone.features"], "backbone.features", **TENSOR_TOLERANCE
    )
    for level, expected in enumerate(fixture.indexed("head.cls_logits")):
        assert_close(outputs.logits[level].transpose(1, 2), expected, f"head.cls_logits.{level}", **TENSOR_TOLERANCE)
    for level, expected in enumerate(fixture.indexed("head.reg_offsets")):
        assert_close(
            outputs.pred_offsets[level].transpose(1, 2), expected, f"head.reg_offsets.{level}", **TENSOR_TOLERANCE
        )
    for level, expected in enumerate(fixture.indexed("head.points")):
        assert_close(outputs.points[level], expected, f"head.points.{level}", **TENSOR_TOLERANCE)
    for level, expected in enumerate(fixture.indexed("neck.masks")):
        assert torch.equal(outputs.feature_mask[level], expected), f"neck.masks.{level}"
    for part in ("cls_loss", "reg_loss"):
        assert_close(
            outputs.loss_dict[part], fixture.outputs[f"loss.eval.{part}"], f"loss.eval.{part}", **LOSS_TOLERANCE
        )
    assert_close(outputs.loss, fixture.outputs["loss.eval.cost"], "loss.eval.cost", **LOSS_TOLERANCE)
    assert int(outputs.loss_dict["num_pos"]) == int(fixture.outputs["loss.num_pos"])


def test_training_step_losses_and_gradients_match_opentad(fixture):
    model = fixture.build_model().train()
    disable_stochastic_layers(model)
    normalizer_before = model.detector.loss_normalizer.clone()
    assert_close(
        normalizer_before,
        fixture.outputs["loss.train.loss_normalizer_before"],
        "loss_normalizer_before",
        **LOSS_TOLERANCE,
    )
    outputs = model(fixture.pixel_values(), masks=fixture.inputs["masks"], labels=fixture.labels())
    for part in ("cls_loss", "reg_loss"):
        assert_close(
            outputs.loss_dict[part], fixture.outputs[f"loss.train.{part}"], f"loss.train.{part}", **LOSS_TOLERANCE
        )
    assert_close(outputs.loss, fixture.outputs["loss.train.cost"], "loss.train.cost", **LOSS_TOLERANCE)
    assert_close(
        outputs.loss_dict["loss_normalizer"],
        fixture.outputs["loss.train.loss_normalizer_used"],
        "loss_normalizer_used",
        **LOSS_TOLERANCE,
    )
    outputs.loss.backward()

    expected_grads, _ = convert_opentad_state_dict({k[len("grad."):]: v for k, v in fixture.grads.items()})
    actual_grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    # The same parameters train: adapters (or side adapters) and the detector, nothing else of the ViT.
    assert set(actual_grads) == set(expected_grads), (
        f"only ours: {sorted(set(actual_grads) - set(expected_grads))}; "
        f"only OpenTAD's: {sorted(set(expected_grads) - set(actual_grads))}"
    )
    for name, expected in expected_grads.items():
        assert_close(actual_grads[name], expected, f"grad {name}", **GRAD_TOLERANCE)


def test_detector_matches_opentad(opentad_fixture):
    """The ActionFormer detector alone, fed OpenTAD's recorded backbone features: padding, every projection and FPN
    level, logits, offsets, points, targets, eval and train losses (normaliser EMA) and the detector gradients."""
    from adatad.modeling_adatad import AdaTADDetector
    from adatad.opentad import convert_opentad_detector_keys

    fixture = Fixture(opentad_fixture)
    # the frame size only matters to the backbone: the ViT's own img_size will do
    config = config_from_opentad(fixture.config_json["opentad_model_cfg"])
    detector = AdaTADDetector(config)
    prefix = "detector."
    converted = {k[len(prefix) :]: v for k, v in convert_opentad_detector_keys(fixture.weights).items()}
    detector.load_state_dict(converted, strict=True)
    features, masks, labels = fixture.outputs["backbone.features"], fixture.inputs["masks"], fixture.labels()
    largest_difference = {}

    def check(group, actual, expected, name, **tolerance):
        difference = (actual.float() - expected.float()).abs().max().item() if expected.numel() else 0.0
        largest_difference[group] = max(largest_difference.get(group, 0.0), difference)
        assert_close(actual, expected, name, **tolerance)

    detector.eval()
    with torch.no_grad():
        padded, padded_masks = detector.pad_features(features, masks)
        outputs = detector(features, masks, labels)
        cls_targets, reg_targets = detector.assign_targets(outputs.points, labels)
    check("projection.input", padded, fixture.outputs["projection.input"], "projection.input", **TENSOR_TOLERANCE)
    assert torch.equal(padded_masks, fixture.outputs["projection.input_masks"]), "projection.input_masks"
    per_level = {
        "projection.feats": outputs.projection_hidden_states,
        "projection.masks": outputs.feature_mask,
        "neck.feats": outputs.fpn_hidden_states,
        "neck.masks": outputs.feature_mask,
        # ours are (batch, T_l, channels), OpenTAD's (batch, channels, T_l)
        "head.cls_logits": [logits.transpose(1, 2) for logits in outputs.logits],
        "head.reg_offsets": [offsets.transpose(1, 2) for offsets in outputs.pred_offsets],
        "head.points": outputs.points,
    }
    for prefix, actual_levels in per_level.items():
        expected_levels = fixture.indexed(prefix)
        assert len(actual_levels) == len(expected_levels) == config.num_fpn_levels, prefix
        for level, (actual, expected) in enumerate(zip(actual_levels, expected_levels)):
            if expected.dtype == torch.bool:
                assert torch.equal(actual, expected), f"{prefix}.{level}"
            else:
                check(prefix, actual, expected, f"{prefix}.{level}", **TENSOR_TOLERANCE)
    check("targets", cls_targets, fixture.outputs["targets.gt_cls"], "targets.gt_cls", **TENSOR_TOLERANCE)
    check("targets", reg_targets, fixture.outputs["targets.gt_reg"], "targets.gt_reg", **TENSOR_TOLERANCE)
    for part in ("cls_loss", "reg_loss", "cost"):
        actual = outputs.loss if part == "cost" else outputs.loss_dict[part]
        check("loss.eval", actual, fixture.outputs[f"loss.eval.{part}"], f"loss.eval.{part}", **LOSS_TOLERANCE)
    assert int(outputs.loss_dict["num_pos"]) == int(fixture.outputs["loss.num_pos"])
    # eval mode divides by the batch's own positive count and leaves the EMA buffer alone
    assert float(outputs.loss_dict["loss_normalizer"]) == max(int(fixture.outputs["loss.num_pos"]), 1)

    detector.train()
    disable_stochastic_layers(detector)
    assert_close(
        detector.loss_normalizer, fixture.outputs["loss.train.loss_normalizer_before"], "loss_normalizer_before",
        **LOSS_TOLERANCE,
    )
    outputs = detector(features, masks, labels)
    for part in ("cls_loss", "reg_loss", "cost"):
        actual = outputs.loss if part == "cost" else outputs.loss_dict[part]
        check("loss.train", actual, fixture.outputs[f"loss.train.{part}"], f"loss.train.{part}", **LOSS_TOLERANCE)
    used = fixture.outputs["loss.train.loss_normalizer_used"]
    check("loss_normalizer", outputs.loss_dict["loss_normalizer"], used, "loss_normalizer_used", **LOSS_TOLERANCE)
    assert_close(detector.loss_normalizer, used, "loss_normalizer buffer after the step", **LOSS_TOLERANCE)
    outputs.loss.backward()

    detector_grads = {k[len("grad.") :]: v for k, v in fixture.grads.items() if not k.startswith("grad.backbone.")}
    expected_grads = {k[len("detector.") :]: v for k, v in convert_opentad_detector_keys(detector_grads).items()}
    actual_grads = {name: p.grad for name, p in detector.named_parameters()}
    assert set(expected_grads) == set(actual_grads), sorted(set(expected_grads) ^ set(actual_grads))
    for name, expected in expected_grads.items():
        assert actual_grads[name] is not None, f"no gradient for detector.{name}"
        check("grads", actual_grads[name], expected, f"grad detector.{name}", **GRAD_TOLERANCE)
    # shown with `pytest -s`: the numbers quoted in docs/model.md ("Parity with OpenTAD (detector alone)")
    summary = ", ".join(f"{group} {value:.1e}" for group, value in largest_difference.items())
    print(f"\n{opentad_fixture.name} detector max abs differences: {summary}")


def test_post_processing_matches_opentad(opentad_fixture):
    # pre-NMS candidates, soft-NMS output, seconds and detections.json; rule in tests/opentad_post_checks.py
    from opentad_post_checks import check_post_processing

    check_post_processing(opentad_fixture)
