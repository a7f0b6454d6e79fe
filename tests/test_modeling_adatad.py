"""Tiny-config tests of AdaTADConfig / AdaTADForTemporalDetection, in the style of transformers' model tests."""

import copy

import pytest
import torch

from transformers import AutoConfig, AutoModel

from adatad import AdaTADConfig, AdaTADForTemporalDetection, AdaTADModel


class AdaTADModelTester:
    def __init__(
        self,
        batch_size=2,
        num_frames=32,
        frames_per_chunk=8,
        image_size=32,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        feature_length=16,
        num_labels=3,
    ):
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.frames_per_chunk = frames_per_chunk
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.feature_length = feature_length
        self.num_labels = num_labels

    def get_config(self, **overrides):
        kwargs = dict(
            backbone_config=dict(
                hidden_size=self.hidden_size,
                num_hidden_layers=self.num_hidden_layers,
                num_attention_heads=self.num_attention_heads,
                intermediate_size=4 * self.hidden_size,
                image_size=self.image_size,
                patch_size=self.patch_size,
                num_frames=self.frames_per_chunk,
                tubelet_size=2,
            ),
            num_frames=self.num_frames,
            image_size=self.image_size,
            feature_length=self.feature_length,
            projection_hidden_size=32,
            projection_arch=(2, 1, 1),
            projection_num_heads=4,
            head_hidden_size=32,
            max_seq_len=self.feature_length,
            fpn_strides=(1, 2),
            fpn_regression_ranges=((0, 4), (4, 10000)),
            num_labels=self.num_labels,
            backbone_drop_path_rate=0.0,
            projection_path_drop_rate=0.0,
        )
        kwargs.update(overrides)
        return AdaTADConfig(**kwargs)

    def prepare_inputs(self, batch_size=None, seed=0):
        generator = torch.Generator().manual_seed(seed)
        batch_size = batch_size or self.batch_size
        pixel_values = torch.randn(
            batch_size, self.num_frames, 3, self.image_size, self.image_size, generator=generator
        )
        masks = torch.ones(batch_size, self.feature_length, dtype=torch.bool)
        labels = [
            {"segments": torch.tensor([[1.0, 6.0], [8.0, 14.5]]), "labels": torch.tensor([0, 2])}
            for _ in range(batch_size)
        ]
        return pixel_values, masks, labels


@pytest.fixture
def tester():
    return AdaTADModelTester()


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="tuning_mode"):
        AdaTADConfig(tuning_mode="lora")
    with pytest.raises(ValueError, match="num_frames"):
        AdaTADConfig(num_frames=100)
    with pytest.raises(ValueError, match="adapter_layer_indices"):
        AdaTADConfig(adapter_layer_indices=[0, 12])
    with pytest.raises(ValueError, match="fpn_strides"):
        AdaTADConfig(projection_arch=(2, 2, 3))
    with pytest.raises(ValueError, match="frozen"):
        AdaTADConfig(tuning_mode="frozen", adapter_layer_indices=[0])


def test_config_round_trip_and_auto_config(tmp_path):
    config = AdaTADConfig(num_labels=7, tuning_mode="side", adapter_layer_indices=[6, 11])
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AdaTADConfig)
    assert loaded.num_labels == 7
    assert loaded.adapter_layer_indices == [6, 11]
    assert loaded.backbone_config.layer_norm_eps == 1e-6
    assert loaded.backbone_config.num_attention_heads == 6


def test_output_shapes(tester):
    config = tester.get_config()
    model = AdaTADForTemporalDetection(config).eval()
    pixel_values, masks, _ = tester.prepare_inputs()
    with torch.no_grad():
        outputs = model(pixel_values, masks=masks)
    assert outputs.backbone_features.shape == (tester.batch_size, tester.hidden_size, tester.feature_length)
    assert len(outputs.logits) == config.num_fpn_levels
    for level, stride in enumerate(config.fpn_strides):
        length = tester.feature_length // stride
        assert outputs.logits[level].shape == (tester.batch_size, length, tester.num_labels)
        assert outputs.pred_offsets[level].shape == (tester.batch_size, length, 2)
        assert outputs.points[level].shape == (length, 4)
        assert outputs.feature_mask[level].shape == (tester.batch_size, length)
    assert outputs.loss is None


def test_loss_and_parts(tester):
    model = AdaTADForTemporalDetection(tester.get_config()).train()
    pixel_values, masks, labels = tester.prepare_inputs()
    outputs = model(pixel_values, masks=masks, labels=labels)
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    assert {"cls_loss", "reg_loss"} <= set(outputs.loss_dict)
    outputs.loss.backward()


EXPECTED_TRAINABLE_BACKBONE = {
    "adapter": lambda name: "adapter" in name,
    "side": lambda name: "side_adapters" in name,
    "frozen": lambda name: False,
    "full": lambda name: True,
}


@pytest.mark.parametrize("tuning_mode", ["adapter", "side", "frozen", "full"])
def test_trainable_parameters_per_tuning_mode(tester, tuning_mode):
    overrides = {"tuning_mode": tuning_mode}
    if tuning_mode in ("adapter", "side"):
        overrides["adapter_layer_indices"] = [1] if tuning_mode == "adapter" else [0, 1]
    model = AdaTADForTemporalDetection(tester.get_config(**overrides)).train()
    for name, parameter in model.named_parameters():
        expected = name.startswith("detector.") or EXPECTED_TRAINABLE_BACKBONE[tuning_mode](name)
        assert parameter.requires_grad == expected, name

    # Gradients reach exactly the trainable parameters.
    pixel_values, masks, labels = tester.prepare_inputs()
    model(pixel_values, masks=masks, labels=labels).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    backbone_with_grad = {name for name in with_grad if name.startswith("model.")}
    backbone_trainable = {name for name in trainable if name.startswith("model.")}
    assert backbone_with_grad == backbone_trainable
    assert with_grad <= trainable


def test_adapter_starts_as_identity(tester):
    # Zero-initialised up-projections: a fresh adapter model computes the plain ViT's features.
    config = tester.get_config(adapter_layer_indices=[0, 1])
    with_adapters = AdaTADModel(config).eval()
    frozen = AdaTADModel(tester.get_config(tuning_mode="frozen")).eval()
    state = {k: v for k, v in with_adapters.state_dict().items() if "adapter" not in k}
    frozen.load_state_dict(state)
    pixel_values, _, _ = tester.prepare_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            with_adapters(pixel_values).last_hidden_state, frozen(pixel_values).last_hidden_state
        )


def test_temporal_adapter_mixes_chunks(tester):
    # The ViT attends within a chunk; only the TIA's temporal conv crosses chunk borders. Changing the second chunk
    # changes the first chunk's features with adapters, and leaves them alone without.
    pixel_values, _, _ = tester.prepare_inputs(batch_size=1)
    changed = pixel_values.clone()
    changed[:, tester.frames_per_chunk : 2 * tester.frames_per_chunk] += 1.0
    steps_per_chunk = tester.feature_length // (tester.num_frames // tester.frames_per_chunk)
    first_chunk = slice(0, steps_per_chunk - 1)  # the interpolation also blends the step at the border

    def first_chunk_change(config):
        model = AdaTADModel(config).eval()
        for name, parameter in model.named_parameters():
            if "up_proj.weight" in name:
                torch.nn.init.normal_(parameter, std=0.5)
        with torch.no_grad():
            before = model(pixel_values).last_hidden_state[..., first_chunk]
            after = model(changed).last_hidden_state[..., first_chunk]
        return (before - after).abs().max().item()

    assert first_chunk_change(tester.get_config(adapter_layer_indices=[0, 1])) > 1e-3
    assert first_chunk_change(tester.get_config(tuning_mode="frozen")) == 0.0
    assert first_chunk_change(tester.get_config(adapter_type="plain", adapter_layer_indices=[0, 1])) == 0.0


def test_position_embeddings_interpolated_for_other_sizes(tester):
    config = tester.get_config(image_size=48)
    model = AdaTADForTemporalDetection(config).eval()
    pixel_values = torch.randn(1, tester.num_frames, 3, 48, 48)
    with torch.no_grad():
        outputs = model(pixel_values)
    assert outputs.backbone_features.shape == (1, tester.hidden_size, tester.feature_length)


def test_save_load_round_trip_with_auto_model(tester, tmp_path):
    model = AdaTADForTemporalDetection(tester.get_config()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "AdaTADForTemporalDetection"
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        torch.testing.assert_close(original[key], restored[key], rtol=0, atol=0, msg=key)
    # q/v biases survive (transformers v5 once dropped VideoMAE's q_bias/v_bias silently).
    bias = restored["model.backbone.layers.0.attention.attention.query.bias"]
    assert bias.abs().sum() > 0 or original["model.backbone.layers.0.attention.attention.query.bias"].abs().sum() == 0
    pixel_values, masks, _ = tester.prepare_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values, masks=masks).logits[0], loaded(pixel_values, masks=masks).logits[0]
        )


def test_default_config_round_trip_with_trust_remote_code(tmp_path):
    model = AdaTADForTemporalDetection(AdaTADConfig())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("attention.attention.query.bias") or name.endswith("attention.attention.value.bias"):
                parameter.normal_()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "configuration_adatad.py").is_file() and (tmp_path / "modeling_adatad.py").is_file()
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key


@pytest.mark.parametrize("tuning_mode", ["adapter", "side", "full"])
def test_gradient_checkpointing_gives_same_gradients(tester, tuning_mode):
    config = tester.get_config(tuning_mode=tuning_mode, adapter_layer_indices=[0, 1])
    model = AdaTADForTemporalDetection(config).train()
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing_enable()
    pixel_values, masks, labels = tester.prepare_inputs()
    model(pixel_values, masks=masks, labels=labels).loss.backward()
    checkpointed(pixel_values, masks=masks, labels=labels).loss.backward()
    for (name, parameter), (_, other) in zip(model.named_parameters(), checkpointed.named_parameters()):
        if parameter.grad is not None:
            torch.testing.assert_close(parameter.grad, other.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_padding_beyond_mask_changes_nothing(tester):
    # Masks act from the detector on: features past the mask must not influence valid outputs. As in OpenTAD, the
    # first (unmasked-input) embedding conv still reads one step past the border, so the noise starts one step later.
    model = AdaTADForTemporalDetection(tester.get_config()).eval()
    pixel_values, masks, _ = tester.prepare_inputs(batch_size=1)
    masks[:, 10:] = False
    with torch.no_grad():
        features = model.model(pixel_values).last_hidden_state
        noisy = features.clone()
        noisy[..., 11:] = torch.randn_like(noisy[..., 11:]) * 100
        clean_out = model.detector(features, masks)
        noisy_out = model.detector(noisy, masks)
    for level, mask in enumerate(clean_out.feature_mask):
        valid = mask[0]
        torch.testing.assert_close(clean_out.logits[level][0][valid], noisy_out.logits[level][0][valid])
        torch.testing.assert_close(clean_out.pred_offsets[level][0][valid], noisy_out.pred_offsets[level][0][valid])


def test_batch_of_one_equals_batch_of_three(tester):
    model = AdaTADForTemporalDetection(tester.get_config()).eval()
    pixel_values, masks, _ = tester.prepare_inputs(batch_size=3)
    with torch.no_grad():
        batched = model(pixel_values, masks=masks)
        single = model(pixel_values[1:2], masks=masks[1:2])
    for level in range(len(batched.logits)):
        torch.testing.assert_close(batched.logits[level][1:2], single.logits[level], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.pred_offsets[level][1:2], single.pred_offsets[level], rtol=1e-4, atol=1e-5)


def test_parameter_groups_follow_adatad_recipe(tester):
    model = AdaTADForTemporalDetection(tester.get_config(adapter_layer_indices=[1]))
    groups = {group["name"]: group for group in model.get_parameter_groups(detector_lr=1e-4, adapter_lr=2e-4)}
    assert set(groups) == {"adapter", "detector", "detector_no_decay"}
    assert groups["adapter"]["lr"] == 2e-4 and groups["detector"]["lr"] == 1e-4
    assert groups["detector_no_decay"]["weight_decay"] == 0.0
    grouped = sum(len(group["params"]) for group in groups.values())
    assert grouped == sum(1 for p in model.parameters() if p.requires_grad)
    decayed = {id(p) for p in groups["detector"]["params"]}
    for module in model.detector.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name == "bias":
                assert id(parameter) not in decayed


def test_clear_errors_for_bad_inputs(tester):
    model = AdaTADForTemporalDetection(tester.get_config()).eval()
    with pytest.raises(ValueError, match="5-D"):
        model(torch.randn(tester.num_frames, 3, 32, 32))
    with pytest.raises(ValueError, match="num_frames"):
        model(torch.randn(1, tester.num_frames - 8, 3, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, tester.num_frames, 32, 32, 3))


def test_non_finite_loss_is_returned_for_the_training_loop(tester):
    # Like every transformers model, the loss comes back as computed: the training loop decides what a non-finite
    # one means (run_tad.py skips the update), and no check waits for the device inside forward.
    model = AdaTADForTemporalDetection(tester.get_config()).train()
    pixel_values, masks, labels = tester.prepare_inputs()
    pixel_values[0, 0, 0, 0, 0] = float("nan")
    outputs = model(pixel_values, masks=masks, labels=labels)
    assert not torch.isfinite(outputs.loss)
    # Without labels (inference) non-finite features are still refused by name.
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        model.eval()(pixel_values, masks=masks)


