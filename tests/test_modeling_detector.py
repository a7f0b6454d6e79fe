"""Tiny-config tests of the ActionFormer detector (`AdaTADDetector`): shapes, padding, masks, local vs global
attention, batch consistency, label assignment, losses, normaliser EMA, initialisation and input errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from adatad import AdaTADConfig
from adatad.modeling_adatad import (
    AdaTADAffineDropPath,
    AdaTADConv1d,
    AdaTADDetector,
    AdaTADForTemporalDetection,
    assign_targets,
    diou_loss_1d,
    masked_global_attention,
    masked_local_attention,
    sigmoid_focal_loss,
)

BACKBONE_WIDTH = 24


def make_config(**overrides):
    kwargs = dict(
        backbone_config=dict(
            hidden_size=BACKBONE_WIDTH, num_hidden_layers=1, num_attention_heads=4, intermediate_size=48
        ),
        projection_hidden_size=32,
        projection_arch=(2, 1, 2),
        projection_num_heads=4,
        max_seq_len=32,
        fpn_strides=(1, 2, 4),
        fpn_regression_ranges=((0, 4), (4, 8), (8, 10000)),
        head_hidden_size=32,
        num_labels=3,
    )
    kwargs.update(overrides)
    return AdaTADConfig(**kwargs)


def make_detector(seed=0, **overrides):
    """A detector whose every parameter is perturbed (branch scales set to 1), so that every path matters."""
    torch.manual_seed(seed)
    detector = AdaTADDetector(make_config(**overrides))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in detector.named_parameters():
            if name.endswith("drop_path.scale"):
                parameter.fill_(1.0)
            else:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return detector.eval()


def random_features(batch_size, length, seed=0):
    return torch.randn(batch_size, BACKBONE_WIDTH, length, generator=torch.Generator().manual_seed(seed))


def example_labels():
    return [
        {"segments": torch.tensor([[2.0, 9.0], [12.0, 30.0]]), "labels": torch.tensor([0, 2])},
        {"segments": torch.tensor([[4.0, 6.5]]), "labels": torch.tensor([1])},
    ]


def test_output_shapes_per_level():
    detector = make_detector(projection_arch=(1, 2, 3), fpn_strides=(1, 2, 4, 8), max_seq_len=64,
                             fpn_regression_ranges=((0, 4), (4, 8), (8, 16), (16, 10000)), num_labels=5)
    with torch.no_grad():
        outputs = detector(random_features(2, 64), labels=None)
    assert outputs.loss is None and outputs.loss_dict is None
    assert len(outputs.logits) == len(outputs.pred_offsets) == len(outputs.points) == len(outputs.feature_mask) == 4
    for level, stride in enumerate((1, 2, 4, 8)):
        length = 64 // stride
        assert outputs.logits[level].shape == (2, length, 5)
        assert outputs.pred_offsets[level].shape == (2, length, 2)
        assert outputs.feature_mask[level].shape == (2, length) and outputs.feature_mask[level].all()
        assert outputs.projection_hidden_states[level].shape == (2, 32, length)
        assert outputs.fpn_hidden_states[level].shape == (2, 32, length)
        points = outputs.points[level]
        assert points.shape == (length, 4)
        assert torch.equal(points[:, 0], torch.arange(length, dtype=torch.float32) * stride)
        assert (points[:, 3] == stride).all()
        assert (outputs.pred_offsets[level] >= 0).all()
    assert torch.equal(outputs.points[3][0, 1:3], torch.tensor([16.0, 10000.0]))


def test_short_inputs_are_padded_to_max_seq_len_and_long_ones_to_the_padding_factor():
    detector = make_detector()
    with torch.no_grad():
        outputs = detector(random_features(1, 20))
    assert [mask.shape[-1] for mask in outputs.feature_mask] == [32, 16, 8]
    assert outputs.feature_mask[0][0, :20].all() and not outputs.feature_mask[0][0, 20:].any()
    assert int(outputs.feature_mask[1].sum()) == 10
    with torch.no_grad():
        outputs = detector(random_features(1, 37))
    assert outputs.feature_mask[0].shape[-1] == 40  # next multiple of the largest stride (4)
    # local attention: the padding factor also covers whole windows (stride 4 * 2 * (5 // 2) = 16 on the last level)
    windowed = make_detector(projection_attention_window=5)
    assert windowed.pad_multiple == 16
    with torch.no_grad():
        outputs = windowed(random_features(1, 37))
    assert outputs.feature_mask[0].shape[-1] == 48


def test_padding_content_beyond_the_first_convolution_does_not_change_valid_outputs():
    # Masks act from the first convolution on (as in OpenTAD, where the backbone sees padded frames): only the
    # kernel_size // 2 steps right after the valid part can reach valid outputs.
    detector = make_detector(projection_attention_window=[5, 5, -1])
    valid_length = 19
    features = random_features(1, 32)
    masks = torch.zeros(1, 32, dtype=torch.bool)
    masks[:, :valid_length] = True
    garbage = features.clone()
    garbage[:, :, valid_length + 1 :] = 1e3 * torch.randn(1, BACKBONE_WIDTH, 32 - valid_length - 1)
    with torch.no_grad():
        clean, noisy = detector(features, masks), detector(garbage, masks)
    for level, mask in enumerate(clean.feature_mask):
        valid = mask[0]
        assert valid.any()
        torch.testing.assert_close(noisy.logits[level][0, valid], clean.logits[level][0, valid], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            noisy.pred_offsets[level][0, valid], clean.pred_offsets[level][0, valid], atol=1e-5, rtol=1e-5
        )
        # padded steps of the projection output are exactly zero
        assert (clean.projection_hidden_states[level][0][:, ~valid] == 0).all()


@pytest.mark.parametrize("use_abs_pos_embed", [False, True])
def test_local_attention_equals_global_when_the_window_covers_the_sequence(use_abs_pos_embed):
    global_detector = make_detector(projection_attention_window=-1, projection_use_abs_pos_embed=use_abs_pos_embed)
    local_detector = make_detector(projection_attention_window=65, projection_use_abs_pos_embed=use_abs_pos_embed)
    local_detector.load_state_dict(global_detector.state_dict())
    masks = torch.ones(2, 32, dtype=torch.bool)
    masks[1, 23:] = False
    features = random_features(2, 32)
    with torch.no_grad():
        expected, actual = global_detector(features, masks), local_detector(features, masks)
    for level in range(3):
        torch.testing.assert_close(actual.logits[level], expected.logits[level], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(actual.pred_offsets[level], expected.pred_offsets[level], atol=1e-5, rtol=1e-5)
    # and a narrow window really is local: it changes the result
    narrow = make_detector(projection_attention_window=3)
    narrow.load_state_dict(global_detector.state_dict())
    with torch.no_grad():
        local = narrow(features, masks)
    assert not torch.allclose(local.logits[0], expected.logits[0], atol=1e-3)


def test_local_attention_matches_a_dense_banded_reference():
    generator = torch.Generator().manual_seed(3)
    query, key, value = (torch.randn(2, 3, 11, 4, generator=generator) for _ in range(3))
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, 7:] = False
    half_window = 2
    positions = torch.arange(11)
    band = (positions[:, None] - positions[None, :]).abs() <= half_window
    scores = query @ key.transpose(-2, -1)
    allowed = band[None, None] & key_mask[:, None, None, :]
    reference = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ value
    actual = masked_local_attention(query, key, value, key_mask, half_window)
    valid_queries = key_mask  # same steps
    torch.testing.assert_close(
        actual.transpose(1, 2)[valid_queries], reference.transpose(1, 2)[valid_queries], atol=1e-6, rtol=1e-5
    )
    # a window wider than the sequence is global attention
    torch.testing.assert_close(
        masked_local_attention(query, key, value, key_mask, 20),
        masked_global_attention(query, key, value, key_mask),
        atol=1e-6,
        rtol=1e-5,
    )


def test_batch_of_one_matches_batch_of_three():
    detector = make_detector(projection_attention_window=[5, -1, -1])
    features = random_features(3, 32, seed=1)
    masks = torch.ones(3, 32, dtype=torch.bool)
    masks[0, 25:] = False
    masks[2, 9:] = False
    with torch.no_grad():
        batched = detector(features, masks)
        for index in range(3):
            single = detector(features[index : index + 1], masks[index : index + 1])
            for level in range(3):
                torch.testing.assert_close(single.logits[level][0], batched.logits[level][index], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(
                    single.pred_offsets[level][0], batched.pred_offsets[level][index], atol=1e-5, rtol=1e-5
                )
                assert torch.equal(single.feature_mask[level][0], batched.feature_mask[level][index])


def hand_points():
    # level 0: stride 1, positions 0..11, range [0, 4]; level 1: stride 2, positions 0, 2, ..., 10, range [4, inf]
    level0 = torch.tensor([[float(t), 0.0, 4.0, 1.0] for t in range(12)])
    level1 = torch.tensor([[float(2 * t), 4.0, 10000.0, 2.0] for t in range(6)])
    return torch.cat([level0, level1])


def test_center_sampling_and_regression_ranges_on_a_hand_built_case():
    points = hand_points()
    segments = torch.tensor([[2.0, 6.0], [0.0, 12.0]])
    labels = torch.tensor([1, 0])
    cls_targets, reg_targets = assign_targets(points, segments, labels, num_labels=3, center_sample_radius=1.5)
    positive = cls_targets.sum(-1) > 0
    # [2, 6]: center 4, sampling region (2.5, 5.5) on stride 1 -> points 3, 4, 5, all within range [0, 4].
    # On stride 2 its region (2, 6) holds point 4, but its largest distance (2) is below that level's range.
    # [0, 12]: center 6; on stride 1 points 5..7 are too far from a boundary (> 4); on stride 2 the region (3, 9)
    # holds points 4, 6, 8, with largest distances 8, 6, 8 inside [4, inf].
    assert positive.nonzero().flatten().tolist() == [3, 4, 5, 12 + 2, 12 + 3, 12 + 4]
    assert cls_targets[3:6].tolist() == [[0, 1, 0]] * 3
    assert cls_targets[14:17].tolist() == [[1, 0, 0]] * 3
    assert reg_targets[3:6].tolist() == [[1, 3], [2, 2], [3, 1]]
    # distances divided by the stride (2)
    assert reg_targets[14:17].tolist() == [[2, 4], [3, 3], [4, 2]]


def test_overlapping_segments_pick_the_shortest_and_filter_similar_gt():
    points = hand_points()
    # both segments cover point 4 of level 0; [2, 6] is shorter
    segments = torch.tensor([[2.0, 6.0], [1.0, 7.0]])
    labels = torch.tensor([1, 2])
    filtered, reg = assign_targets(points, segments, labels, 3, 1.5, filter_similar_gt=True)
    unfiltered, _ = assign_targets(points, segments, labels, 3, 1.5, filter_similar_gt=False)
    assert filtered[4].tolist() == [0, 1, 0]
    assert unfiltered[4].tolist() == [0, 1, 1]
    assert reg[4].tolist() == [2, 2]
    # equally long segments both give their class when filtered
    twins, _ = assign_targets(points, torch.tensor([[2.0, 6.0], [2.0, 6.0]]), torch.tensor([0, 2]), 3, 1.5)
    assert twins[4].tolist() == [1, 0, 1]
    # no ground truth: all negatives
    empty_cls, empty_reg = assign_targets(points, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3, 1.5)
    assert empty_cls.shape == (18, 3) and not empty_cls.any() and not empty_reg.any()


def test_sigmoid_focal_loss_on_hand_computed_values():
    logits = torch.tensor([0.0, 0.0])
    targets = torch.tensor([1.0, 0.0])
    expected = torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)
    # a confident correct prediction costs almost nothing, a confident wrong one a lot
    confident = sigmoid_focal_loss(torch.tensor([6.0, 6.0]), torch.tensor([1.0, 0.0]))
    assert confident[0] < 1e-6 < 1.0 < confident[1]
    # against torchvision's independent implementation
    torchvision_ops = pytest.importorskip("torchvision.ops")
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 4, generator=generator)
    targets = (torch.rand(50, 4, generator=generator) > 0.7).float()
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, 0.25, 2.0),
        torchvision_ops.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none"),
    )


def test_diou_loss_on_hand_computed_values():
    pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [3.0, 5.0]])
    target = torch.tensor([[1.0, 3.0], [2.0, 3.0], [3.0, 5.0]])
    # overlap: IoU 1/3, center distance 1, enclosing 3 -> 1 - (1/3 - 1/9)
    # disjoint: IoU 0, center distance 2, enclosing 3 -> 1 + 4/9; identical -> 0
    expected = torch.tensor([1 - (1 / 3 - 1 / 9), 1 + 4 / 9, 0.0])
    torch.testing.assert_close(diou_loss_1d(pred, target), expected)


def test_losses_and_loss_normalizer_ema():
    detector = make_detector(loss_normalizer_init=50.0, loss_normalizer_momentum=0.8)
    features = random_features(2, 32)
    with torch.no_grad():
        outputs = detector(features, labels=example_labels())
    num_pos = int(outputs.loss_dict["num_pos"])
    assert num_pos > 0
    assert float(outputs.loss_dict["loss_normalizer"]) == num_pos
    assert float(detector.loss_normalizer) == 50.0  # eval mode leaves the EMA alone
    torch.testing.assert_close(outputs.loss, outputs.loss_dict["cls_loss"] + outputs.loss_dict["reg_loss"])

    detector.train()
    for module in detector.modules():
        if isinstance(module, AdaTADAffineDropPath):
            module.drop_prob = 0.0
    # two forwards before one backward (gradient accumulation) must not trip over the in-place EMA update
    first = detector(features, labels=example_labels())
    second = detector(features, labels=example_labels())
    (first.loss + second.loss).backward()
    expected_first = 0.8 * 50.0 + 0.2 * num_pos
    expected_second = 0.8 * expected_first + 0.2 * num_pos
    assert float(first.loss_dict["loss_normalizer"]) == pytest.approx(expected_first, rel=1e-6)
    assert float(detector.loss_normalizer) == pytest.approx(expected_second, rel=1e-6)
    # the same losses, scaled by the normaliser
    torch.testing.assert_close(
        first.loss_dict["cls_loss"] * expected_first, outputs.loss_dict["cls_loss"] * num_pos, rtol=1e-4, atol=1e-6
    )
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in detector.parameters())


def test_regression_weight_and_auto_balance():
    weighted = make_detector(loss_regression_weight=2.0)
    balanced = make_detector(loss_regression_weight=-1)
    plain = make_detector()
    features = random_features(2, 32)
    with torch.no_grad():
        reference = plain(features, labels=example_labels()).loss_dict
        doubled = weighted(features, labels=example_labels()).loss_dict
        auto = balanced(features, labels=example_labels()).loss_dict
    torch.testing.assert_close(doubled["reg_loss"], 2 * reference["reg_loss"])
    # auto-balance scales the regression loss to the classification loss
    torch.testing.assert_close(auto["reg_loss"], reference["cls_loss"])


def test_batch_without_ground_truth_has_finite_zero_regression_loss():
    detector = make_detector().train()
    labels = [{"segments": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    outputs = detector(random_features(2, 32), labels=labels)
    assert int(outputs.loss_dict["num_pos"]) == 0
    assert float(outputs.loss_dict["reg_loss"].detach()) == 0.0
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in detector.parameters() if p.grad is not None)


def test_label_smoothing_targets():
    smooth = make_detector(loss_label_smoothing=0.1)
    plain = make_detector()
    features = random_features(2, 32)
    with torch.no_grad():
        smoothed = smooth(features, labels=example_labels()).loss_dict["cls_loss"]
        reference = plain(features, labels=example_labels())
    logits = torch.cat(reference.logits, dim=1)[torch.cat(reference.feature_mask, dim=1)]
    targets, _ = plain.assign_targets(reference.points, example_labels())
    targets = targets[torch.cat(reference.feature_mask, dim=1)] * 0.9 + 0.1 / 4
    expected = sigmoid_focal_loss(logits, targets).sum() / reference.loss_dict["loss_normalizer"]
    torch.testing.assert_close(smoothed, expected)


def test_fresh_detector_has_actionformer_initialisation():
    config = make_config(head_prior_prob=0.01, loss_normalizer_init=200)
    for detector in (AdaTADDetector(config), AdaTADForTemporalDetection(config).detector):
        prior_bias = -math.log(99)
        torch.testing.assert_close(detector.head.classification_head.bias, torch.full((3,), prior_bias))
        assert float(detector.loss_normalizer) == 200.0
        for name, module in detector.named_modules():
            if isinstance(module, AdaTADConv1d):
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                # PyTorch's default (kaiming-uniform, a=sqrt(5)): uniform in +-1/sqrt(fan_in)
                assert module.weight.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6, name
                assert module.weight.std() > 0.4 / math.sqrt(fan_in), name
                if module.bias is not None and module is not detector.head.classification_head:
                    if module is detector.head.regression_head:
                        assert module.bias.abs().max() <= 1 / math.sqrt(fan_in) and module.bias.abs().sum() > 0
                    else:
                        assert not module.bias.any(), name
            elif isinstance(module, AdaTADAffineDropPath):
                assert torch.equal(module.scale, torch.full_like(module.scale, 1e-4)), name
        for name, parameter in detector.named_parameters():
            if "norm" in name.split(".")[-2] or name.split(".")[-2].startswith("layernorm"):
                expected = 1.0 if name.endswith("weight") else 0.0
                assert (parameter == expected).all(), name
            if name.startswith("head.scales."):
                assert float(parameter.detach()) == 1.0


def test_absolute_position_embedding_refuses_over_long_training_inputs():
    detector = make_detector(projection_use_abs_pos_embed=True)
    with torch.no_grad():
        outputs = detector(random_features(1, 40))  # eval: the table is resized to the padded length
    assert outputs.feature_mask[0].shape[-1] == 40
    detector.train()
    with pytest.raises(ValueError, match="max_seq_len"):
        detector(random_features(1, 40))


def test_bad_inputs_raise_clear_errors():
    detector = make_detector()
    features = random_features(2, 32)
    broken = features.clone()
    broken[0, 0, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        detector(broken)
    broken[0, 0, 3] = float("inf")
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        detector(broken)
    with pytest.raises(ValueError, match=f"\\(batch_size, {BACKBONE_WIDTH}, length\\)"):
        detector(torch.randn(2, BACKBONE_WIDTH + 1, 32))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        detector(features, torch.ones(2, 31, dtype=torch.bool))
    labels = example_labels()
    labels[1] = {"segments": torch.tensor([[1.0, float("nan")]]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"labels\[1\]\['segments'\]"):
        detector(features, labels=labels)
    labels[1] = {"segments": torch.tensor([[1.0, 3.0]]), "labels": torch.tensor([3])}
    with pytest.raises(ValueError, match="class ids outside"):
        detector(features, labels=labels)
    with pytest.raises(ValueError, match="2 entries for a batch of 1"):
        detector(features[:1], labels=example_labels())


def test_downsampled_masks_keep_every_second_step():
    detector = make_detector()
    masks = torch.zeros(1, 32, dtype=torch.bool)
    masks[0, :13] = True
    with torch.no_grad():
        outputs = detector(random_features(1, 32), masks)
    # step i of a stride-2 level is valid when step 2 * i of the level below is
    assert int(outputs.feature_mask[1].sum()) == 7
    assert int(outputs.feature_mask[2].sum()) == 4
    assert torch.equal(outputs.feature_mask[1][0], F.pad(masks[0, ::2], (0, 0)))


def test_save_and_load_keep_the_position_table_and_the_normaliser(tmp_path):
    # The absolute position table is a non-persistent buffer: it must be rebuilt, not left empty, on loading.
    from transformers import AutoModel

    config = AdaTADConfig(
        backbone_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=32,
            patch_size=16, num_frames=8, tubelet_size=2,
        ),
        num_frames=16,
        image_size=32,
        feature_length=16,
        projection_hidden_size=32,
        projection_arch=(1, 1, 1),
        projection_num_heads=4,
        projection_use_abs_pos_embed=True,
        projection_attention_window=[5, -1],
        head_hidden_size=32,
        max_seq_len=16,
        fpn_strides=(1, 2),
        fpn_regression_ranges=((0, 4), (4, 10000)),
        num_labels=3,
        loss_normalizer_init=150.0,
    )
    model = AdaTADForTemporalDetection(config).eval()
    with torch.no_grad():
        model.detector.loss_normalizer.fill_(123.5)  # as after some training steps
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True).eval()
    table = loaded.detector.projection.position_embedding.table
    expected_table = model.detector.projection.position_embedding.build_table()
    assert torch.equal(table, expected_table) and table.abs().sum() > 0
    assert float(loaded.detector.loss_normalizer) == 123.5
    pixel_values = torch.randn(1, 16, 3, 32, 32)
    with torch.no_grad():
        expected, actual = model(pixel_values), loaded(pixel_values)
    for level in range(2):
        assert torch.equal(actual.logits[level], expected.logits[level])


# OpenTAD config and key mapping (adatad/opentad.py)


def opentad_model_cfg(tests_dir):
    import json

    return json.loads((tests_dir / "fixtures" / "opentad_public" / "config.json").read_text())["opentad_model_cfg"]


def test_config_from_opentad_maps_detector_settings(tests_dir):
    import copy

    from adatad.opentad import config_from_opentad

    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    model_cfg["projection"].update(
        attn_cfg=dict(n_head=4, n_mha_win_size=[9, 9, 5, -1]), use_abs_pe=True, input_pdrop=0.2, max_seq_len=128
    )
    model_cfg["projection"]["conv_cfg"]["proj_pdrop"] = 0.1
    model_cfg["rpn_head"].update(
        label_smoothing=0.1, loss_weight=-1, filter_similar_gt=False, loss_normalizer=250, num_convs=3
    )
    del model_cfg["rpn_head"]["cls_prior_prob"]  # falls back to OpenTAD's default
    config = config_from_opentad(model_cfg)
    assert config.projection_attention_window == [9, 9, 5, -1]
    assert config.projection_use_abs_pos_embed and config.projection_input_drop_rate == 0.2
    assert config.projection_dropout == 0.1 and config.max_seq_len == 128
    assert (config.loss_label_smoothing, config.loss_regression_weight) == (0.1, -1)
    assert not config.loss_filter_similar_gt and config.loss_normalizer_init == 250.0
    assert config.head_num_convs == 3 and config.head_prior_prob == 0.01
    assert config.fpn_regression_ranges == [[0, 4], [4, 8], [8, 16], [16, 10000]]
    assert config.image_size == 32  # defaults to the ViT's img_size
    assert config_from_opentad(model_cfg, image_size=48, num_labels=7).image_size == 48


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("rpn_head", "center_sample", "none", "center_sample"),
        ("rpn_head", "loss", {"cls_loss": {"type": "FocalLoss"}, "reg_loss": {"type": "GIOULoss"}}, "reg_loss"),
        ("projection", "norm_cfg", {"type": "GN", "num_groups": 16}, "norm_cfg"),
        ("projection", "type", "ConvSingleProj", "projection.type"),
        ("neck", "type", "FPN", "neck.type"),
        ("neck", "num_levels", 6, "num_levels"),
        ("rpn_head", "prior_generator", {"type": "PointGenerator", "strides": [1, 2, 4, 8],
                                         "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]],
                                         "use_offset": True}, "use_offset"),
        ("projection", "unknown_option", 1, "unknown_option"),
    ],
)
def test_config_from_opentad_rejects_unsupported_settings(tests_dir, section, key, value, message):
    import copy

    from adatad.opentad import config_from_opentad

    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    model_cfg[section][key] = value
    with pytest.raises(ValueError, match=message):
        config_from_opentad(model_cfg)


def test_config_from_opentad_rejects_unsupported_backbones(tests_dir):
    import copy

    from adatad.opentad import config_from_opentad

    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    model_cfg["backbone"]["backbone"]["type"] = "VisionTransformer"
    with pytest.raises(ValueError, match="backbone.backbone.type"):
        config_from_opentad(model_cfg)
    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    model_cfg["backbone"]["data_preprocessor"]["mean"] = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="mean"):
        config_from_opentad(model_cfg)
    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    model_cfg["backbone"]["custom"]["post_processing_pipeline"][2]["mode"] = "nearest"
    with pytest.raises(ValueError, match="mode"):
        config_from_opentad(model_cfg)


def test_detector_key_mapping_round_trips_and_names_unknown_keys():
    from adatad.opentad import convert_opentad_detector_keys

    detector = make_detector(projection_path_drop_rate=0.1)
    ours = set(detector.state_dict())
    opentad_keys = {
        "projection.embed.0.conv.weight", "projection.embed.1.norm.bias", "projection.stem.0.ln1.weight",
        "projection.branch.1.attn.key_conv.conv.weight", "projection.branch.1.attn.proj.bias",
        "projection.stem.0.mlp.3.weight", "projection.branch.0.drop_path_mlp.scale", "neck.fpn_norms.2.weight",
        "rpn_head.cls_convs.1.norm.weight", "rpn_head.reg_head.bias", "rpn_head.scale.2.scale",
        "rpn_head.loss_normalizer", "backbone.model.backbone.blocks.0.norm1.weight",
    }
    converted = convert_opentad_detector_keys({key: torch.tensor(100) for key in opentad_keys})
    assert len(converted) == len(opentad_keys) - 1  # the backbone key is left to the backbone converter
    assert {key[len("detector."):] for key in converted} <= ours
    assert converted["detector.loss_normalizer"].dtype == torch.float32
    with pytest.raises(KeyError, match="projection.stem.0.attn.rel_pe"):
        convert_opentad_detector_keys({"projection.stem.0.attn.rel_pe": torch.zeros(1)})
    with pytest.raises(KeyError, match="roi_head.fc.weight"):
        convert_opentad_detector_keys({"roi_head.fc.weight": torch.zeros(1)})


def test_config_from_opentad_maps_plain_vit_to_frozen_and_full(tests_dir):
    import copy

    from adatad.opentad import config_from_opentad

    model_cfg = copy.deepcopy(opentad_model_cfg(tests_dir))
    vit = model_cfg["backbone"]["backbone"]
    vit["type"] = "VisionTransformerCP"
    for key in ("total_frames", "adapter_index", "adapter_mlp_ratio"):
        del vit[key]
    full = config_from_opentad(model_cfg)
    assert (full.tuning_mode, full.adapter_layer_indices, full.num_frames) == ("full", [], 64)
    model_cfg["backbone"]["custom"]["freeze_backbone"] = True
    assert config_from_opentad(model_cfg).tuning_mode == "frozen"
    vit["adapter_index"] = [0]  # not a VisionTransformerCP setting
    with pytest.raises(ValueError, match="adapter_index"):
        config_from_opentad(model_cfg)
