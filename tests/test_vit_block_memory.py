"""The ViT block's memory-lean pieces (adatad/lean_vit.py) compute what the plain PyTorch modules compute.

`RowBlockedMLPFunction` (MLP a block of rows at a time, only its input kept for the backward), the adapter's
convolutions on the token layout and its scaled up-projection, and `add_residual` (residual sums written into the
branch output) are checked against autograd through `nn.Linear`, `nn.GELU` and `nn.Conv1d`, and the whole layer
against transformers' `VideoMAELayer` on the same weights. `SlicedRecomputeFunction` (activation checkpointing that
recomputes a block's attention and MLP a slice of chunks at a time) is checked against plain autograd, alone and in
the model, stochastic depth included.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformers.models.videomae.modeling_videomae import VideoMAELayer

from adatad import AdaTADConfig, AdaTADForTemporalDetection
from adatad.lean_vit import (
    ChannelsLastPointwiseConv,
    RowBlockedMLPFunction,
    ScaledLinear,
    SlicedRecomputeFunction,
    TemporalDepthwiseConv,
    add_residual,
)
from adatad.modeling_adatad import RECOMPUTE_SLICES, AdaTADTemporalAdapter, AdaTADVideoMAELayer

# Bit-for-bit comparisons: a block's products and the whole tensor's split their work the same way on one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 8 rows per block over 20 rows: several blocks and a partial last one, each starting 64-byte aligned as blocks of
# real sizes do (MKL's products may round differently on unaligned rows).
ROWS_PER_BLOCK = 8


def mlp_weights(trainable: bool, bias: bool = True):
    generator = torch.Generator().manual_seed(0)
    w1 = torch.randn(24, 6, generator=generator).requires_grad_(trainable)
    b1 = torch.randn(24, generator=generator).requires_grad_(trainable) if bias else None
    w2 = torch.randn(5, 24, generator=generator).requires_grad_(trainable)
    b2 = torch.randn(5, generator=generator).requires_grad_(trainable) if bias else None
    return w1, b1, w2, b2


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_row_blocked_mlp_matches_autograd(trainable, bias):
    weights = mlp_weights(trainable, bias)
    hidden = torch.randn(20, 6, requires_grad=True)
    grad_output = torch.randn(20, 5)
    output = RowBlockedMLPFunction.apply(hidden, *weights, ROWS_PER_BLOCK)
    reference = F.linear(F.gelu(F.linear(hidden, weights[0], weights[1])), weights[2], weights[3])
    torch.testing.assert_close(output, reference, rtol=0, atol=0)
    inputs = [hidden] + [w for w in weights if w is not None and w.requires_grad]
    grads = torch.autograd.grad(output, inputs, grad_output)
    reference_grads = torch.autograd.grad(reference, inputs, grad_output)
    # The input gradient is autograd's arithmetic row by row; weight gradients are summed over row blocks.
    torch.testing.assert_close(grads[0], reference_grads[0], rtol=0, atol=0)
    for grad, reference_grad in zip(grads[1:], reference_grads[1:]):
        torch.testing.assert_close(grad, reference_grad, rtol=1e-5, atol=1e-5)


def test_row_blocked_mlp_in_bfloat16():
    # What CUDA autocast hands the function (custom_fwd keeps the autocast state): half-precision products in both
    # passes, with the weight gradients summed over blocks.
    w1, b1, w2, b2 = (w.detach().bfloat16().requires_grad_() for w in mlp_weights(trainable=True))
    hidden = torch.randn(20, 6, dtype=torch.bfloat16, requires_grad=True)
    output = RowBlockedMLPFunction.apply(hidden, w1, b1, w2, b2, ROWS_PER_BLOCK)
    reference = F.linear(F.gelu(F.linear(hidden, w1, b1)), w2, b2)
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output, reference, rtol=0, atol=0)
    grads = torch.autograd.grad(output.float().sum(), [hidden, w1, b1, w2, b2])
    reference_grads = torch.autograd.grad(reference.float().sum(), [hidden, w1, b1, w2, b2])
    for grad, reference_grad in zip(grads, reference_grads):
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(grad, reference_grad, rtol=0.02, atol=0.05)


def assert_same_function_and_gradients(output, reference, inputs):
    torch.testing.assert_close(output, reference, rtol=1e-6, atol=1e-6)
    grad_output = torch.randn_like(output)
    grads = torch.autograd.grad(output, inputs, grad_output)
    reference_grads = torch.autograd.grad(reference, inputs, grad_output)
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("time", [1, 2, 9])
def test_temporal_depthwise_conv_matches_conv1d(kernel_size, time):
    conv = TemporalDepthwiseConv(8, kernel_size)
    sequence = torch.randn(2, time, 5, 8, requires_grad=True)
    # (batch, time, space, c) -> (batch * space, c, time), the layout nn.Conv1d reads
    reference = F.conv1d(
        sequence.permute(0, 2, 3, 1).reshape(10, 8, time), conv.weight, conv.bias, padding=kernel_size // 2, groups=8
    )
    reference = reference.reshape(2, 5, 8, time).permute(0, 3, 1, 2)
    assert_same_function_and_gradients(conv(sequence), reference, [sequence, conv.weight, conv.bias])


def test_pointwise_conv_and_scaled_linear_match_the_plain_modules():
    conv = ChannelsLastPointwiseConv(8, 6)
    sequence = torch.randn(2, 3, 5, 8, requires_grad=True)
    reference = F.conv1d(sequence.reshape(-1, 8, 1), conv.weight, conv.bias).reshape(2, 3, 5, 6)
    assert_same_function_and_gradients(conv(sequence), reference, [sequence, conv.weight, conv.bias])
    linear = ScaledLinear(8, 6)
    scale = torch.tensor([0.7], requires_grad=True)
    inputs = torch.randn(4, 8, requires_grad=True)
    reference = F.linear(inputs, linear.weight, linear.bias) * scale
    assert_same_function_and_gradients(
        linear(inputs, scale), reference, [inputs, linear.weight, linear.bias, scale]
    )


def test_add_residual_writes_into_the_branch_only_when_it_keeps_the_dtype():
    residual = torch.randn(3, 4)
    branch = torch.randn(3, 4)
    expected = residual + branch
    result = add_residual(branch, residual)
    assert result.data_ptr() == branch.data_ptr()
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    half_branch = torch.randn(3, 4, dtype=torch.bfloat16)
    result = add_residual(half_branch, residual)
    assert result.dtype == torch.float32 and result.data_ptr() != half_branch.data_ptr()


def vit_layer(adapter: bool, mlp_row_block_size=ROWS_PER_BLOCK) -> AdaTADVideoMAELayer:
    config = AdaTADConfig(
        backbone_config=dict(hidden_size=16, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1),
    )
    config.backbone_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    layer = AdaTADVideoMAELayer(
        config.backbone_config,
        drop_path_rate=0.0,
        adapter=AdaTADTemporalAdapter(16, 4) if adapter else None,
        mlp_row_block_size=mlp_row_block_size,
    )
    if adapter:
        nn.init.normal_(layer.adapter.up_proj.weight)
    return layer


def saved_activation_widths(layer: AdaTADVideoMAELayer) -> set[int]:
    """Last-dim widths of the token tensors autograd keeps for the backward of one frozen-weight layer call."""
    for name, parameter in layer.named_parameters():
        parameter.requires_grad_(name.startswith("adapter."))
    hidden = torch.randn(2, 12, 16, requires_grad=True)
    saved_shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_shapes.append(tuple(t.shape)) or t, lambda t: t):
        layer(hidden, video_grid=(1, 4, 2, 3))
    return {shape[-1] for shape in saved_shapes if len(shape) > 1 and shape[:-1] in ((2, 12), (24,))}


def test_frozen_block_keeps_no_mlp_wide_tensor_for_backward():
    # AdaTAD's frozen block with an adapter: autograd would keep the (tokens, 4 * hidden) pre-activation for GELU.
    widths = saved_activation_widths(vit_layer(adapter=True))
    assert 16 in widths
    assert 64 not in widths
    # The check itself: VideoMAE's own MLP (`mlp_row_block_size=None`) keeps it.
    assert 64 in saved_activation_widths(vit_layer(adapter=True, mlp_row_block_size=None))


def test_replaced_mlp_linear_runs_as_its_own_module():
    # A replaced linear (as LoRA or quantization would do) must not be bypassed by the row-blocked MLP.
    class RecordingLinear(nn.Linear):
        calls = 0

        def forward(self, inputs):
            RecordingLinear.calls += 1
            return super().forward(inputs) * 2

    layer = vit_layer(adapter=False)
    replaced = copy.deepcopy(layer)
    original = replaced.intermediate.dense
    replaced.intermediate.dense = RecordingLinear(original.in_features, original.out_features)
    replaced.intermediate.dense.load_state_dict(original.state_dict())
    hidden = torch.randn(2, 12, 16)
    assert not torch.allclose(replaced(hidden, (1, 4, 2, 3)), layer(hidden, (1, 4, 2, 3)))
    assert RecordingLinear.calls == 1


def test_partitioned_mlp_parameters_run_module_by_module():
    # DeepSpeed ZeRO-3 marks its partitioned parameters with `ds_id` and gathers them only when their own module
    # runs: the row-blocked MLP, which reads fc1 and fc2 together, must then step aside, with the same result.
    layer = vit_layer(adapter=True)
    hidden = torch.randn(2, 12, 16)
    expected = layer(hidden, (1, 4, 2, 3))
    calls = []
    layer.intermediate.dense.register_forward_hook(lambda *args: calls.append("fc1"))
    layer.intermediate.dense.weight.ds_id = 0
    torch.testing.assert_close(layer(hidden, (1, 4, 2, 3)), expected, rtol=1e-6, atol=1e-6)
    assert calls == ["fc1"]


@pytest.mark.parametrize("mlp_row_block_size", [None, ROWS_PER_BLOCK, "auto"])
def test_layer_without_adapter_is_videomae_layer(mlp_row_block_size):
    # No adapter, no drop path: transformers' VideoMAELayer on the same weights, values and input gradients.
    layer = vit_layer(adapter=False, mlp_row_block_size=mlp_row_block_size)
    reference = VideoMAELayer(layer.attention.attention.config).eval()
    reference.load_state_dict(layer.state_dict())
    layer.eval()
    hidden = torch.randn(2, 12, 16, requires_grad=True)
    output = layer(hidden, video_grid=(1, 4, 2, 3))
    expected = reference(hidden)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    grad_output = torch.randn_like(output)
    (grad,) = torch.autograd.grad(output, hidden, grad_output)
    (expected_grad,) = torch.autograd.grad(expected, hidden, grad_output)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


def test_mlp_row_block_size_reaches_every_layer_and_changes_what_is_kept():
    def model(mlp_row_block_size):
        config = AdaTADConfig(
            backbone_config=dict(
                hidden_size=16, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2, image_size=32,
                patch_size=16, num_frames=4,
            ),
            mlp_row_block_size=mlp_row_block_size, num_frames=8, image_size=32, feature_length=8, max_seq_len=8,
            projection_hidden_size=16, head_hidden_size=16, projection_arch=[1, 1, 1], fpn_strides=[1, 2],
            fpn_regression_ranges=[[0, 4], [4, 10000]], num_labels=2,
        )
        torch.manual_seed(0)
        return AdaTADForTemporalDetection(config)

    row_blocked, plain = model(ROWS_PER_BLOCK), model(None)
    assert {layer.mlp_row_block_size for layer in row_blocked.model.backbone.layers} == {ROWS_PER_BLOCK}
    assert 64 not in saved_activation_widths(row_blocked.model.backbone.layers[0])
    assert 64 in saved_activation_widths(plain.model.backbone.layers[0])
    pixel_values = torch.randn(1, 8, 3, 32, 32)
    torch.testing.assert_close(row_blocked(pixel_values).logits[0], plain(pixel_values).logits[0], rtol=0, atol=0)


@pytest.mark.parametrize("value", [0, -3, 2.5, "fast", True])
def test_mlp_row_block_size_is_checked(value):
    with pytest.raises(ValueError, match="mlp_row_block_size"):
        AdaTADConfig(mlp_row_block_size=value)


@pytest.mark.parametrize("inputs_need_grad", [False, True])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_sliced_recompute_matches_autograd(inputs_need_grad, with_prefix):
    # prefix mixes rows (as the adapter mixes chunks); row_wise treats each row alone, with a per-row factor as
    # stochastic depth's keep flags; 7 rows in slices of 3: a partial last slice.
    generator = torch.Generator().manual_seed(0)
    mix = torch.randn(7, 7, generator=generator).requires_grad_()
    weight = torch.randn(5, 5, generator=generator).requires_grad_()
    frozen = torch.randn(5, 5, generator=generator)
    row_factor = torch.rand(7, 1, 1, generator=generator)

    def prefix(inputs):
        return torch.einsum("rs,s...->r...", mix, inputs).tanh() if with_prefix else inputs

    def row_wise(rows_input, rows):
        return (rows_input @ weight).sin() @ frozen * row_factor[rows] + rows_input

    inputs = torch.randn(7, 4, 5, generator=generator).requires_grad_(inputs_need_grad)
    parameters = [mix, weight] if with_prefix else [weight]
    output = SlicedRecomputeFunction.apply(prefix, row_wise, 3, len(parameters) - 1, inputs, *parameters)
    reference = row_wise(prefix(inputs), slice(None))
    torch.testing.assert_close(output, reference, rtol=0, atol=0)
    wanted = [inputs, *parameters] if inputs_need_grad else parameters
    grad_output = torch.randn_like(output)
    grads = torch.autograd.grad(output, wanted, grad_output)
    reference_grads = torch.autograd.grad(reference, wanted, grad_output)
    for grad, reference_grad in zip(grads, reference_grads):
        # `weight`'s gradient is summed over slices; the others follow autograd's arithmetic
        torch.testing.assert_close(grad, reference_grad, rtol=1e-5, atol=1e-6)


def small_model(tuning_mode: str, adapter_layer_indices, drop_path_rate: float):
    config = AdaTADConfig(
        backbone_config=dict(
            hidden_size=16, num_attention_heads=2, intermediate_size=64, num_hidden_layers=3, image_size=32,
            patch_size=16, num_frames=4,
        ),
        tuning_mode=tuning_mode, adapter_layer_indices=adapter_layer_indices, backbone_drop_path_rate=drop_path_rate,
        num_frames=64, image_size=32, feature_length=16, max_seq_len=16, projection_hidden_size=16,
        head_hidden_size=16, projection_arch=[1, 1, 1], fpn_strides=[1, 2], fpn_regression_ranges=[[0, 4], [4, 10000]],
        num_labels=2,
    )
    torch.manual_seed(0)
    return AdaTADForTemporalDetection(config).train()


@pytest.mark.parametrize(
    "tuning_mode, adapter_layer_indices, recomputed_layers, exact",
    # A step recomputes its layer only when something before it trains: with frozen blocks, the previous adapter.
    [("adapter", [0, 1, 2], 2, True), ("adapter", [1], 1, True), ("full", [0, 2], 3, False)],
)
def test_checkpointed_blocks_recompute_in_slices_with_the_same_gradients(
    tuning_mode, adapter_layer_indices, recomputed_layers, exact
):
    # 16 chunks of 4 frames: slices of 2 chunks in the backward. Stochastic depth on: the recomputed slices must
    # apply the draws of the forward, and the forward must draw what the plain model draws.
    model = small_model(tuning_mode, adapter_layer_indices, drop_path_rate=0.5)
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing_enable()
    rows_seen = []
    for layer in checkpointed.model.backbone.layers:
        layer.register_forward_pre_hook(lambda module, args: rows_seen.append(args[0].shape[0]))
    for layer in checkpointed.model.backbone.layers:
        layer.attention.register_forward_pre_hook(lambda module, args: rows_seen.append(args[0].shape[0]))
    pixel_values = torch.randn(1, 64, 3, 32, 32)
    labels = [{"segments": torch.tensor([[1.0, 6.0], [8.0, 14.5]]), "labels": torch.tensor([0, 1])}]
    losses = []
    for candidate in (model, checkpointed):
        torch.manual_seed(1)
        loss = candidate(pixel_values, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    tolerance = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
    for (name, parameter), (_, other) in zip(model.named_parameters(), checkpointed.named_parameters()):
        assert (parameter.grad is None) == (other.grad is None), name
        if parameter.grad is not None:
            torch.testing.assert_close(other.grad, parameter.grad, msg=name, **tolerance)
    # Blocks from the first trainable one on run as slices of 2 of the 16 chunks (never as whole layers), in the
    # forward and again in the backward; the frozen blocks before run whole (the layer and its attention).
    first_trainable = 0 if tuning_mode == "full" else adapter_layer_indices[0]
    assert rows_seen.count(16) == first_trainable * 2
    rows_per_slice = 16 // RECOMPUTE_SLICES
    assert rows_seen.count(rows_per_slice) == (3 - first_trainable + recomputed_layers) * RECOMPUTE_SLICES
