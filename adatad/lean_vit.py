"""Memory-lean pieces of AdaTAD's ViT block and temporal adapter.

Each computes what a plain PyTorch composition computes, while keeping fewer `(tokens, hidden_size)` tensors alive
for the backward pass. The model uses them through `AdaTADVideoMAELayer` and `AdaTADTemporalAdapter`; the
MLP's row blocks are switched by `AdaTADConfig.mlp_row_block_size`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def add_residual(branch: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """`residual + branch`, written into `branch` when it has the sum's dtype and shape.

    Every branch passed here is a fresh tensor that autograd does not keep for the backward (a linear's output, a
    drop-path product), so the sum needs no new `(tokens, hidden_size)` tensor. Under autocast a half-precision branch
    is added out of place, so the residual stream keeps float32.
    """
    if branch.dtype == residual.dtype and branch.shape == residual.shape:
        return branch.add_(residual)
    return residual + branch


class RowBlockedMLPFunction(torch.autograd.Function):
    """`fc2(gelu(fc1(x)))` computed `rows_per_block` token rows at a time, keeping only `x` for the backward pass.

    A ViT MLP is four times wider than the tokens it reads: autograd keeps the `(tokens, 4 * hidden_size)`
    pre-activation (and GELU's output when `fc2` trains) and holds three such tensors in the backward. Here no
    full-width tensor exists at once; the backward recomputes each block's pre-activation (one more `fc1` product).
    Rows are independent in an MLP, so the result is that of the plain composition. Under CUDA autocast the products
    run in the autocast dtype in both passes (`custom_fwd` / `custom_bwd`).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, rows, fc1_weight, fc1_bias, fc2_weight, fc2_bias, rows_per_block):
        # rows: (tokens, hidden_size) -> (tokens, fc2 out_features)
        ctx.save_for_backward(rows, fc1_weight, fc1_bias, fc2_weight)
        ctx.has_fc2_bias = fc2_bias is not None
        ctx.rows_per_block = rows_per_block
        output_blocks = [
            F.linear(F.gelu(F.linear(block, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)
            for block in rows.split(rows_per_block)
        ]
        return torch.cat(output_blocks)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output):
        rows, fc1_weight, fc1_bias, fc2_weight = ctx.saved_tensors
        needs_input, needs_fc1_weight, needs_fc1_bias, needs_fc2_weight, needs_fc2_bias, _ = ctx.needs_input_grad
        # Weight gradients are summed over blocks in the weights' own dtype.
        grad_fc1_weight = torch.zeros_like(fc1_weight) if needs_fc1_weight else None
        grad_fc1_bias = torch.zeros_like(fc1_bias) if needs_fc1_bias else None
        grad_fc2_weight = torch.zeros_like(fc2_weight) if needs_fc2_weight else None
        grad_fc2_bias = grad_output.sum(0).to(fc2_weight.dtype) if ctx.has_fc2_bias and needs_fc2_bias else None
        grad_input_blocks = []
        for block, grad_block in zip(rows.split(ctx.rows_per_block), grad_output.split(ctx.rows_per_block)):
            with torch.enable_grad():
                pre_activation = F.linear(block, fc1_weight, fc1_bias).detach().requires_grad_()
                activation = F.gelu(pre_activation)
            grad_activation = grad_block.matmul(fc2_weight)
            # GELU's derivative as autograd computes it for the plain composition.
            (grad_pre_activation,) = torch.autograd.grad(activation, pre_activation, grad_activation)
            if needs_fc2_weight:
                grad_fc2_weight += grad_block.t().matmul(activation.detach()).to(fc2_weight.dtype)
            if needs_fc1_weight:
                grad_fc1_weight += grad_pre_activation.t().matmul(block).to(fc1_weight.dtype)
            if needs_fc1_bias:
                grad_fc1_bias += grad_pre_activation.sum(0).to(fc1_bias.dtype)
            if needs_input:
                grad_input_blocks.append(grad_pre_activation.matmul(fc1_weight))
        grad_input = None
        if needs_input:
            grad_input = torch.cat(grad_input_blocks).to(rows.dtype)
        return grad_input, grad_fc1_weight, grad_fc1_bias, grad_fc2_weight, grad_fc2_bias, None


def row_blocked_mlp(hidden_states: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, rows_per_block: int) -> torch.Tensor:
    """`fc2(gelu(fc1(hidden_states)))` through `RowBlockedMLPFunction`, for any leading dims."""
    rows = hidden_states.reshape(-1, hidden_states.shape[-1])
    output = RowBlockedMLPFunction.apply(rows, fc1.weight, fc1.bias, fc2.weight, fc2.bias, rows_per_block)
    return output.view(*hidden_states.shape[:-1], output.shape[-1])


class TemporalDepthwiseConv(nn.Module):
    """A depth-wise convolution over time (zero padding `kernel_size // 2`) of channels-last tokens.

    Input and output: `(batch_size, time, space, channels)`. The parameters have `nn.Conv1d(channels, channels,
    kernel_size, groups=channels)`'s shapes and names (`weight` `(channels, 1, kernel_size)`, `bias`), so checkpoints
    of the convolution load as they are; the computation is one multiply-add per tap on time-shifted slices, in the
    tokens' own layout: no transposed copies of the sequence.
    """

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd for a same-length convolution, got {kernel_size}.")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        bound = 1 / math.sqrt(kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        half = self.kernel_size // 2
        weight = self.weight.reshape(-1, self.kernel_size)
        output = torch.addcmul(self.bias, sequence, weight[:, half])
        for tap in range(self.kernel_size):
            shift = tap - half
            # output[t] += weight[:, tap] * sequence[t + shift], zero outside the sequence
            if shift < 0:
                output[:, -shift:].addcmul_(sequence[:, :shift], weight[:, tap])
            elif shift > 0:
                output[:, :-shift].addcmul_(sequence[:, shift:], weight[:, tap])
        return output

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}, kernel_size={self.kernel_size}"


class ChannelsLastPointwiseConv(nn.Module):
    """`nn.Conv1d(in_channels, out_channels, 1)` over the last dim of channels-last tokens: a linear layer that
    keeps the convolution's parameter shapes (`weight` `(out_channels, in_channels, 1)`, `bias`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        bound = 1 / math.sqrt(in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return F.linear(sequence, self.weight[:, :, 0], self.bias)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.weight.shape[0]}"


class ScaledLinear(nn.Linear):
    """`nn.Linear` whose output is multiplied by `scale`, applied to the weight and bias instead of the output.

    The same function, but autograd then keeps no output-sized tensor for the scale's gradient: for an adapter's
    up-projection that is one `(tokens, hidden_size)` tensor less per block in the backward pass.
    """

    def forward(self, inputs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return F.linear(inputs, self.weight * scale, self.bias * scale)


class SlicedRecomputeFunction(torch.autograd.Function):
    """`row_wise(prefix(inputs))`, keeping only `inputs` for the backward pass, which recomputes `prefix` whole and
    `row_wise` one slice of batch rows at a time.

    For AdaTAD's ViT, `row_wise` is a block's attention and MLP, which read each chunk of a video (one row of the
    batch) alone, and `prefix` the previous block's adapter, whose temporal convolution mixes chunks but costs little.
    Activation checkpointing of whole blocks recomputes a block at once, so every tensor the block keeps for its
    backward exists at the same time; here only one slice's do, and the input kept is the adapter's instead of the
    block's. The arithmetic is the same per row; gradients of the `row_wise` parameters are summed over slices.

    `row_wise(rows_input, rows)` receives the rows `rows` (a `slice`) of `prefix`'s output; `parameters` are the
    trainable tensors `prefix` (the first `num_prefix_parameters`) and `row_wise` read, so that their gradients
    return through this function. Under CUDA autocast both passes run in the autocast dtype.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, prefix, row_wise, rows_per_slice, num_prefix_parameters, inputs, *parameters):
        ctx.save_for_backward(inputs)
        ctx.prefix, ctx.row_wise, ctx.rows_per_slice = prefix, row_wise, rows_per_slice
        ctx.num_prefix_parameters = num_prefix_parameters
        ctx.parameters = parameters
        with torch.no_grad():
            hidden = prefix(inputs)
            output = torch.empty_like(hidden)
            for start in range(0, len(hidden), rows_per_slice):
                rows = slice(start, start + rows_per_slice)
                output[rows] = row_wise(hidden[rows], rows)
        return output

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output):
        (inputs,) = ctx.saved_tensors
        prefix_parameters = ctx.parameters[: ctx.num_prefix_parameters]
        row_wise_parameters = ctx.parameters[ctx.num_prefix_parameters :]
        with torch.enable_grad():
            leaf_inputs = inputs.detach().requires_grad_(ctx.needs_input_grad[4])
            hidden = ctx.prefix(leaf_inputs)
        grad_hidden = torch.empty_like(hidden)
        row_wise_grads = [None] * len(row_wise_parameters)
        for start in range(0, len(hidden), ctx.rows_per_slice):
            rows = slice(start, start + ctx.rows_per_slice)
            rows_input = hidden[rows].detach().requires_grad_()
            with torch.enable_grad():
                rows_output = ctx.row_wise(rows_input, rows)
            grads = torch.autograd.grad(
                rows_output, (rows_input, *row_wise_parameters), grad_output[rows], allow_unused=True
            )
            del rows_output
            grad_hidden[rows] = grads[0]
            row_wise_grads = [
                total if grad is None else grad if total is None else total.add_(grad)
                for total, grad in zip(row_wise_grads, grads[1:])
            ]
        prefix_grads = [None] * len(prefix_parameters)
        grad_inputs = None
        if hidden is leaf_inputs:
            grad_inputs = grad_hidden if leaf_inputs.requires_grad else None
        elif hidden.requires_grad:
            wanted = ((leaf_inputs,) if leaf_inputs.requires_grad else ()) + tuple(prefix_parameters)
            grads = list(torch.autograd.grad(hidden, wanted, grad_hidden, allow_unused=True))
            grad_inputs = grads.pop(0) if leaf_inputs.requires_grad else None
            prefix_grads = grads
        return (None, None, None, None, grad_inputs, *prefix_grads, *row_wise_grads)
