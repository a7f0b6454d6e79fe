"""PyTorch AdaTAD: VideoMAE with Temporal-Informative Adapters and an ActionFormer detector."""

import difflib
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.videomae.modeling_videomae import VideoMAEEmbeddings, VideoMAELayer
from transformers.utils import ModelOutput

from .configuration_adatad import AdaTADConfig
from .lean_vit import (
    ChannelsLastPointwiseConv,
    ScaledLinear,
    SlicedRecomputeFunction,
    TemporalDepthwiseConv,
    add_residual,
    row_blocked_mlp,
)
from .post_processing import decode_segments


# ======================================================================================
# Backbone: VideoMAE with temporal adapters
# ======================================================================================

def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability `drop_prob`, rescale the rest."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep = draw_drop_path_keep(hidden_states.shape[0], drop_prob, hidden_states.dtype, hidden_states.device)
    return hidden_states / (1.0 - drop_prob) * keep.view((-1,) + (1,) * (hidden_states.ndim - 1))


def draw_drop_path_keep(batch_size: int, drop_prob: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`(batch_size,)` ones and zeros: which samples of a stochastic-depth branch are kept."""
    keep_prob = 1.0 - drop_prob
    # floor(keep_prob + U[0, 1)) is 1 with probability keep_prob: the same draws as OpenTAD's (mmcv) DropPath.
    return (torch.rand(batch_size, dtype=dtype, device=device) + keep_prob).floor()


class AdaTADDropPath(nn.Module):
    """Stochastic depth of a ViT block's branch, with its per-sample draw separate from its use: a block draws once
    per call and may then apply the draw to slices of the batch (`AdaTADBackbone` recomputes blocks chunk by chunk)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def draw(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """`(batch_size,)` keep flags for one call, or None when nothing is dropped (eval mode, `drop_prob` 0)."""
        if self.drop_prob == 0.0 or not self.training:
            return None
        return draw_drop_path_keep(batch_size, self.drop_prob, dtype, device)

    def forward(self, branch: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """`branch / (1 - drop_prob) * keep`, written into `branch`: a fresh output that autograd does not keep."""
        if keep is None:
            return branch
        return branch.div_(1.0 - self.drop_prob).mul_(keep.view((-1,) + (1,) * (branch.ndim - 1)))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def interpolate_position_embeddings(
    position_embeddings: torch.Tensor, temporal_size: int, grid_size: int, target_size: tuple[int, int]
) -> torch.Tensor:
    """Bicubically resize a fixed (t, h, w) position table to another spatial grid, per temporal slot.

    Args:
        position_embeddings: `(1, temporal_size * grid_size**2, hidden_size)`.
        temporal_size: temporal slots of the table (frames per chunk / tubelet size); never resized.
        grid_size: side of the spatial grid the table was built for (image size / patch size).
        target_size: `(height, width)` of the patch grid of the actual input.

    Returns:
        `(1, temporal_size * height * width, hidden_size)`.
    """
    if (grid_size, grid_size) == tuple(target_size):
        return position_embeddings
    hidden_size = position_embeddings.shape[-1]
    # (1, t * g * g, hidden_size) -> (t, hidden_size, g, g)
    table = position_embeddings.reshape(temporal_size, grid_size, grid_size, hidden_size).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=target_size, mode="bicubic", align_corners=False)
    # (t, hidden_size, h, w) -> (1, t * h * w, hidden_size)
    return table.permute(0, 2, 3, 1).reshape(1, -1, hidden_size)


class AdaTADVideoMAEEmbeddings(VideoMAEEmbeddings):
    """VideoMAE patch + fixed sin-cos position embeddings, for any input size.

    transformers' VideoMAE refuses inputs whose size differs from `image_size`; AdaTAD feeds 160x160 or 192x192 frames
    to ViTs whose position table was built for 224x224, so the table is bicubically interpolated (as OpenTAD does).

    Input: `(batch_size * num_chunks, frames_per_chunk, num_channels, height, width)`.
    Output: `(batch_size * num_chunks, t * h * w, hidden_size)` with `t = frames_per_chunk / tubelet_size`,
    `h = height // patch_size`, `w = width // patch_size`, and the grid `(t, h, w)`.
    """

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        projection = self.patch_embeddings.projection
        # (batch_size * num_chunks, frames, channels, height, width) -> (..., channels, frames, height, width)
        patches = projection(pixel_values.permute(0, 2, 1, 3, 4))
        grid = tuple(patches.shape[2:])
        # (batch, hidden_size, t, h, w) -> (batch, t * h * w, hidden_size)
        embeddings = patches.flatten(2).transpose(1, 2)
        patch_size = self.patch_embeddings.patch_size[0]
        pretrained_grid = self.patch_embeddings.image_size[0] // patch_size
        position_embeddings = interpolate_position_embeddings(
            self.position_embeddings.to(device=embeddings.device, dtype=embeddings.dtype),
            temporal_size=grid[0],
            grid_size=pretrained_grid,
            target_size=grid[1:],
        )
        return embeddings + position_embeddings, grid


class AdaTADTemporalAdapter(nn.Module):
    """Temporal-Informative Adapter (TIA).

    A bottleneck whose hidden features are mixed along time by a depth-wise convolution that runs over the tokens of
    ALL chunks of a video, so information crosses chunk borders even though the ViT attends within one chunk only:
    `a = GELU(down(x))`, `y = gamma * up(a + pointwise(depthwise_t(a)))`, output `x + y` (`residual=True`, inside a
    block) or `y` (side adapter, whose residual is the ladder sum). `up` starts at zero, so a new adapter is the
    identity.

    Input and output: `(batch_size * num_chunks, t * h * w, hidden_size)`; `video_grid` is
    `(batch_size, num_chunks * t, h, w)`.
    """

    def __init__(self, hidden_size: int, adapter_hidden_size: int, kernel_size: int = 3, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.down_proj = nn.Linear(hidden_size, adapter_hidden_size)
        self.act = nn.GELU()
        self.temporal_conv = TemporalDepthwiseConv(adapter_hidden_size, kernel_size)
        self.pointwise_conv = ChannelsLastPointwiseConv(adapter_hidden_size, adapter_hidden_size)
        self.up_proj = ScaledLinear(adapter_hidden_size, hidden_size)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        batch_size, temporal_size, height, width = video_grid
        adapted = self.act(self.down_proj(hidden_states))
        chunk_batch, num_tokens, channels = adapted.shape
        # (batch_size * num_chunks, t * h * w, c) -> (batch_size, num_chunks * t, h * w, c): a view, chunks in order
        sequence = adapted.view(batch_size, temporal_size, height * width, channels)
        sequence = self.pointwise_conv(self.temporal_conv(sequence))
        adapted = add_residual(sequence.view(chunk_batch, num_tokens, channels), adapted)
        output = self.up_proj(adapted, self.gamma)
        return add_residual(output, hidden_states) if self.residual else output


class AdaTADPlainAdapter(nn.Module):
    """Bottleneck adapter without temporal mixing: `x + gamma * up(GELU(down(x)))` (the ablation baseline)."""

    def __init__(self, hidden_size: int, adapter_hidden_size: int):
        super().__init__()
        self.down_proj = nn.Linear(hidden_size, adapter_hidden_size)
        self.act = nn.GELU()
        self.up_proj = ScaledLinear(adapter_hidden_size, hidden_size)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        output = self.up_proj(self.act(self.down_proj(hidden_states)), self.gamma)
        return add_residual(output, hidden_states)


class AdaTADVideoMAELayer(VideoMAELayer):
    """transformers' `VideoMAELayer` plus stochastic depth and an optional adapter after the MLP residual.

    The attention, MLP and norms are VideoMAE's own modules (same parameter names, so VideoMAE weights load as they
    are); only the residual wiring changes, to add drop path and the adapter as AdaTAD does. Residual sums are written
    into the branch outputs, and the MLP may run a block of token rows at a time (`mlp_row_block_size`): both give
    VideoMAE's result with fewer tensors kept for the backward pass.
    """

    def __init__(
        self,
        config,
        drop_path_rate: float,
        adapter: nn.Module | None = None,
        mlp_row_block_size: int | str | None = None,
    ):
        super().__init__(config)
        self.drop_path = AdaTADDropPath(drop_path_rate)
        self.adapter = adapter
        self.mlp_row_block_size = mlp_row_block_size
        self.exact_gelu = config.hidden_act == "gelu"
        # Every row of the batch (one chunk of a video) goes through attention and MLP alone: nothing random mixes
        # them but stochastic depth, whose draws `draw_drop_path` makes once per call.
        self.chunks_independent = config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        hidden_states = self.attention_and_mlp(hidden_states, self.draw_drop_path(hidden_states))
        if self.adapter is not None:
            hidden_states = self.adapter(hidden_states, video_grid)
        return hidden_states

    def draw_drop_path(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Stochastic depth's keep flags `(batch_size,)` of the attention and the MLP branch for one call (None when
        nothing is dropped), drawn in the dtype the branches will have, in the order OpenTAD draws them."""
        device = hidden_states.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden_states.dtype
        keep_attention = self.drop_path.draw(hidden_states.shape[0], dtype, device)
        if keep_attention is None:
            return None
        return keep_attention, self.drop_path.draw(hidden_states.shape[0], dtype, device)

    def attention_and_mlp(
        self,
        hidden_states: torch.Tensor,
        keep: tuple[torch.Tensor, torch.Tensor] | None,
        row_blocked_mlp: bool = True,
    ) -> torch.Tensor:
        """The block up to its adapter: `x + attention(LN(x))`, then `+ MLP(LN(.))`, each branch under stochastic depth
        with the keep flags `keep` (rows of `hidden_states`, from `draw_drop_path`). `row_blocked_mlp=False` runs
        VideoMAE's own MLP whatever `mlp_row_block_size` says."""
        keep_attention, keep_mlp = keep if keep is not None else (None, None)
        branch = self.drop_path(self.attention(self.layernorm_before(hidden_states)), keep_attention)
        hidden_states = add_residual(branch, hidden_states)
        rows_per_block = self.mlp_row_block_size if row_blocked_mlp else None
        mlp_output = self._mlp(self.layernorm_after(hidden_states), rows_per_block)
        branch = self.drop_path(self.output.dropout(mlp_output), keep_mlp)
        return add_residual(branch, hidden_states)

    def _mlp(self, hidden_states: torch.Tensor, rows_per_block: int | str | None) -> torch.Tensor:
        """`output.dense(intermediate(hidden_states))`, row-blocked where `rows_per_block` asks and it applies."""
        fc1, fc2 = self.intermediate.dense, self.output.dense
        if rows_per_block == "auto":
            rows_per_block = 1024 if hidden_states.device.type == "cpu" else None
        row_blocks_apply = (
            rows_per_block is not None
            and self.exact_gelu
            # A replaced linear (LoRA, quantized) runs as its own module.
            and type(fc1) is nn.Linear
            and type(fc2) is nn.Linear
            # DeepSpeed ZeRO-3 gathers a partitioned parameter only when its own module runs.
            and not hasattr(fc1.weight, "ds_id")
            # The function follows CUDA autocast (custom_fwd); under CPU autocast autograd's path keeps the dtypes.
            and not torch.is_autocast_enabled("cpu")
        )
        if not row_blocks_apply:
            return fc2(self.intermediate(hidden_states))
        return row_blocked_mlp(hidden_states, fc1, fc2, rows_per_block)


class AdaTADSideAdapters(nn.Module):
    """AdaTAD-dagger's side network: one temporal adapter per tapped block, summed onto the last tapped output.

    `output = taps[-1] + sum_i adapter_i(taps[i])`; the taps come from a backbone run without gradients, so training
    keeps no backbone activations.
    """

    def __init__(self, hidden_size: int, adapter_hidden_size: int, kernel_size: int, num_taps: int):
        super().__init__()
        self.adapters = nn.ModuleList(
            AdaTADTemporalAdapter(hidden_size, adapter_hidden_size, kernel_size, residual=False)
            for _ in range(num_taps)
        )

    # Set by `activation_checkpointing_enable()`: each side adapter then recomputes its activations in backward.
    gradient_checkpointing = False

    def forward(self, taps: list[torch.Tensor], video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        output = taps[-1]
        for adapter, tap in zip(self.adapters, taps):
            if checkpointing:
                output = output + self._gradient_checkpointing_func(adapter.__call__, tap, video_grid)
            else:
                output = output + adapter(tap, video_grid)
        return output


# Activation checkpointing recomputes a ViT block's attention and MLP this many slices of chunks at a time.
RECOMPUTE_SLICES = 4


class AdaTADBackbone(nn.Module):
    """Frozen (or trainable) VideoMAE that reads a long video in chunks and returns one feature per time step.

    Input: `pixel_values` `(batch_size, num_frames, num_channels, height, width)`, normalised.
    Output: `(batch_size, hidden_size, feature_length)`: token features averaged over space, chunks concatenated
    in time, then linearly interpolated to `config.feature_length`.
    """

    def __init__(self, config: AdaTADConfig):
        super().__init__()
        self.config = config
        vit_config = config.backbone_config
        self.embeddings = AdaTADVideoMAEEmbeddings(vit_config)
        depth = vit_config.num_hidden_layers
        # On the CPU even under a meta default device (`adatad.model_loading.mismatched_weight_shapes` builds the
        # model there).
        drop_path_rates = torch.linspace(0, config.backbone_drop_path_rate, depth, device="cpu").tolist()
        in_block_adapters = config.tuning_mode in ("adapter", "full")
        self.layers = nn.ModuleList(
            AdaTADVideoMAELayer(
                vit_config,
                drop_path_rate=drop_path_rates[index] if config.tuning_mode != "side" else 0.0,
                adapter=(
                    self._make_adapter(config) if in_block_adapters and index in config.adapter_layer_indices else None
                ),
                mlp_row_block_size=config.mlp_row_block_size,
            )
            for index in range(depth)
        )
        self.side_adapters = None
        if config.tuning_mode == "side":
            self.side_adapters = AdaTADSideAdapters(
                vit_config.hidden_size,
                config.adapter_hidden_size,
                config.adapter_kernel_size,
                num_taps=len(config.adapter_layer_indices),
            )

    @staticmethod
    def _make_adapter(config: AdaTADConfig) -> nn.Module:
        hidden_size = config.backbone_config.hidden_size
        if config.adapter_type == "plain":
            return AdaTADPlainAdapter(hidden_size, config.adapter_hidden_size)
        return AdaTADTemporalAdapter(hidden_size, config.adapter_hidden_size, config.adapter_kernel_size)

    def _first_trainable_layer(self) -> int:
        """Index of the first layer whose output needs gradients; layers before it run without autograd."""
        if self.config.tuning_mode == "full":
            return 0
        if self.config.tuning_mode == "adapter" and self.config.adapter_layer_indices:
            return self.config.adapter_layer_indices[0]
        return len(self.layers)

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        config = self.config
        if pixel_values.ndim != 5:
            raise ValueError(
                "`pixel_values` must be 5-D (batch_size, num_frames, num_channels, height, width), got shape "
                f"{tuple(pixel_values.shape)}."
            )
        _, num_frames, num_channels, height, width = pixel_values.shape
        if num_channels != config.backbone_config.num_channels:
            raise ValueError(
                f"`pixel_values` has {num_channels} channels in dim 2, expected {config.backbone_config.num_channels}: "
                "the layout is (batch_size, num_frames, num_channels, height, width)."
            )
        if num_frames != config.num_frames:
            raise ValueError(
                f"`pixel_values` has {num_frames} frames but the model was configured for `num_frames`="
                f"{config.num_frames}; sample the video to {config.num_frames} frames (the processor does this)."
            )

    def _recompute_in_slices(self) -> bool:
        """Whether activation checkpointing of the trainable blocks runs through `SlicedRecomputeFunction`: in
        training with checkpointing on, in-block adapters (or none), no dropout inside blocks, no DeepSpeed ZeRO-3
        partitioned parameters (gathered only when their own module runs) and no CPU autocast (the function follows
        CUDA autocast only). Otherwise each block is checkpointed whole."""
        layers = self.layers
        return (
            self.training
            and torch.is_grad_enabled()
            and self.side_adapters is None
            and all(layer.gradient_checkpointing and layer.chunks_independent for layer in layers)
            and not any(hasattr(parameter, "ds_id") for parameter in layers.parameters())
            and not torch.is_autocast_enabled("cpu")
        )

    def _forward_layers_in_slices(
        self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int], first_layer: int
    ) -> torch.Tensor:
        """Layers `first_layer:` with activation checkpointing, each step keeping one `(tokens, hidden_size)` tensor:
        step `i` is layer `i-1`'s adapter then layer `i`'s attention and MLP (`SlicedRecomputeFunction`, which
        recomputes the attention and MLP `1 / RECOMPUTE_SLICES` of the chunks at a time); the last adapter is
        checkpointed on its own."""
        rows_per_slice = max(1, math.ceil(hidden_states.shape[0] / RECOMPUTE_SLICES))
        previous_adapter = None
        for layer in self.layers[first_layer:]:
            keep = layer.draw_drop_path(hidden_states)

            # A slice is a few chunks: the MLP's 4-wide tensors of one slice are small, and VideoMAE's own MLP saves
            # the row-blocked MLP's second pass over fc1 (the same memory peak, 12% less CPU time at 256 frames).
            def row_wise(rows_input, rows, layer=layer, keep=keep):
                keep_rows = None if keep is None else tuple(k[rows] for k in keep)
                return layer.attention_and_mlp(rows_input, keep_rows, row_blocked_mlp=False)

            def prefix(inputs, adapter=previous_adapter):
                return inputs if adapter is None else adapter(inputs, video_grid)

            prefix_parameters = [] if previous_adapter is None else list(previous_adapter.parameters())
            row_wise_parameters = [p for name, p in layer.named_parameters() if not name.startswith("adapter.")]
            parameters = [p for p in prefix_parameters if p.requires_grad]
            num_prefix_parameters = len(parameters)
            parameters += [p for p in row_wise_parameters if p.requires_grad]
            hidden_states = SlicedRecomputeFunction.apply(
                prefix, row_wise, rows_per_slice, num_prefix_parameters, hidden_states, *parameters
            )
            previous_adapter = layer.adapter
        if previous_adapter is not None:
            hidden_states = self.layers[-1]._gradient_checkpointing_func(
                previous_adapter.__call__, hidden_states, video_grid
            )
        return hidden_states

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.check_pixel_values(pixel_values)
        batch_size, num_frames, num_channels, height, width = pixel_values.shape
        num_chunks = num_frames // self.config.frames_per_chunk
        # (batch_size, num_frames, c, h, w) -> (batch_size * num_chunks, frames_per_chunk, c, h, w)
        chunks = pixel_values.reshape(
            batch_size * num_chunks, self.config.frames_per_chunk, num_channels, height, width
        )

        first_trainable = self._first_trainable_layer()
        with torch.set_grad_enabled(torch.is_grad_enabled() and first_trainable == 0):
            hidden_states, (tokens_t, tokens_h, tokens_w) = self.embeddings(chunks)
        video_grid = (batch_size, num_chunks * tokens_t, tokens_h, tokens_w)

        if self.side_adapters is not None:
            taps = []
            with torch.no_grad():
                for index, layer in enumerate(self.layers[: self.config.adapter_layer_indices[-1] + 1]):
                    hidden_states = layer(hidden_states, video_grid)
                    if index in self.config.adapter_layer_indices:
                        taps.append(hidden_states)
            hidden_states = self.side_adapters(taps, video_grid)
        else:
            sliced_from = first_trainable if self._recompute_in_slices() else len(self.layers)
            for index, layer in enumerate(self.layers[:sliced_from]):
                with torch.set_grad_enabled(torch.is_grad_enabled() and index >= first_trainable):
                    hidden_states = layer(hidden_states, video_grid)
            if sliced_from < len(self.layers):
                hidden_states = self._forward_layers_in_slices(hidden_states, video_grid, sliced_from)

        # (batch_size * num_chunks, t * h * w, c) -> mean over space -> (batch_size, c, num_chunks * t)
        hidden_size = hidden_states.shape[-1]
        # The spatial mean accumulates in float32 even for bf16/fp16 weights; the features keep the model's dtype.
        features = hidden_states.reshape(batch_size, num_chunks * tokens_t, tokens_h * tokens_w, hidden_size)
        features = features.mean(2, dtype=torch.float32).to(hidden_states.dtype).transpose(1, 2)
        # (batch_size, c, num_chunks * t) -> (batch_size, c, feature_length)
        return F.interpolate(features, size=self.config.feature_length, mode="linear", align_corners=False)


# ======================================================================================
# Detector: ActionFormer projection, identity FPN, heads, points, losses
# ======================================================================================

@dataclass
class AdaTADDetectorOutput(ModelOutput):
    """
    Output of [`AdaTADDetector`]. Per-level entries are lists ordered from the finest FPN level (stride 1) to the
    coarsest; `T_l` is the length of level `l` after padding to `max_seq_len`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            `cls_loss + reg_loss` (the regression part already weighted by `loss_regression_weight`).
        loss_dict (`dict[str, torch.Tensor]`, *optional*, returned when `labels` are given):
            `cls_loss` (sigmoid focal loss), `reg_loss` (DIoU loss times its weight), `num_pos` (positive valid
            points) and `loss_normalizer` (the divisor both losses used).
        logits (`list[torch.FloatTensor]`, each `(batch_size, T_l, num_labels)`):
            Classification logits per point (before the sigmoid, not masked).
        pred_offsets (`list[torch.FloatTensor]`, each `(batch_size, T_l, 2)`):
            Distances from each point to the segment start and end in units of the level stride (after ReLU).
        points (`list[torch.FloatTensor]`, each `(T_l, 4)`):
            `(position on the feature grid, regression range min, regression range max, stride)` of every point.
        feature_mask (`list[torch.BoolTensor]`, each `(batch_size, T_l)`):
            True where a point lies on valid (non-padded) input.
        projection_hidden_states (`list[torch.FloatTensor]`, each `(batch_size, projection_hidden_size, T_l)`):
            Projection (Conv1D transformer) output per level.
        fpn_hidden_states (`list[torch.FloatTensor]`, each `(batch_size, projection_hidden_size, T_l)`):
            Identity-FPN output per level (LayerNorm over channels), the input of the heads.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict | None = None
    logits: list | None = None
    pred_offsets: list | None = None
    points: list | None = None
    feature_mask: list | None = None
    projection_hidden_states: list | None = None
    fpn_hidden_states: list | None = None


def downsample_mask(mask: torch.BoolTensor, length: int) -> torch.BoolTensor:
    """Nearest-neighbour resampling of a `(batch_size, T)` mask to `(batch_size, length)` (keeps step `i * T // length`,
    i.e. every second step for a stride-2 convolution), as ActionFormer does."""
    resized = F.interpolate(mask[:, None].float(), size=length, mode="nearest")
    return resized[:, 0].bool()


def sinusoid_position_table(length: int, channels: int) -> torch.Tensor:
    """Fixed sin/cos table of shape `(channels, length)`: channel `2i` is `sin(t / 10000^(2i/channels))`, channel
    `2i+1` the matching cosine. Computed in float64 and returned as float32."""
    positions = torch.arange(length, dtype=torch.float64)[:, None]
    exponents = (2 * (torch.arange(channels) // 2)).double() / channels
    angles = positions / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponents)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    # (length, channels) -> (channels, length)
    return table.T.float()


def masked_global_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.BoolTensor
) -> torch.Tensor:
    """Softmax attention over every valid key step.

    Args:
        query: `(batch_size, num_heads, query_length, head_dim)`, already multiplied by `head_dim ** -0.5`.
        key, value: `(batch_size, num_heads, key_length, head_dim)`.
        key_mask: `(batch_size, key_length)`, True on valid steps.

    Returns:
        `(batch_size, num_heads, query_length, head_dim)`.
    """
    scores = query @ key.transpose(-2, -1)
    # The dtype's minimum instead of -inf: identical weights (exp underflows to 0) but no NaN for an all-padded video.
    scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1) @ value


def masked_local_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.BoolTensor, half_window: int
) -> torch.Tensor:
    """Softmax attention of every step `t` over the valid key steps `t - half_window .. t + half_window`.

    Only the `2 * half_window + 1` scores of each window are computed, so memory grows linearly with the length. With
    a window that covers the whole sequence the result equals [`masked_global_attention`].

    Args:
        query: `(batch_size, num_heads, length, head_dim)`, already multiplied by `head_dim ** -0.5`.
        key, value: `(batch_size, num_heads, length, head_dim)`.
        key_mask: `(batch_size, length)`, True on valid steps.
        half_window: number of neighbours attended on each side.

    Returns:
        `(batch_size, num_heads, length, head_dim)`.
    """
    window = 2 * half_window + 1
    # (batch, heads, length, head_dim) -> (batch, heads, length, head_dim, window): keys t - w .. t + w of step t
    key_windows = F.pad(key, (0, 0, half_window, half_window)).unfold(2, window, 1)
    value_windows = F.pad(value, (0, 0, half_window, half_window)).unfold(2, window, 1)
    # (batch, length) -> (batch, length, window); steps outside the sequence are invalid keys
    window_mask = F.pad(key_mask.float(), (half_window, half_window)).unfold(1, window, 1) > 0
    scores = torch.einsum("bhtd,bhtdw->bhtw", query, key_windows)
    scores = scores.masked_fill(~window_mask[:, None], torch.finfo(scores.dtype).min)
    probabilities = scores.softmax(dim=-1)
    return torch.einsum("bhtw,bhtdw->bhtd", probabilities, value_windows)


class AdaTADConv1d(nn.Conv1d):
    """`nn.Conv1d` with "same" padding (`kernel_size // 2`) that records how ActionFormer initialises its bias.

    Args:
        bias_init (`float` or `None`, defaults to 0.0): initial bias value; `None` keeps PyTorch's default uniform
            bias (ActionFormer's regression output layer).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        bias_init: float | None = 0.0,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=bias
        )
        self.bias_init = bias_init


class AdaTADMaskedConv1d(AdaTADConv1d):
    """Convolution that zeroes padded time steps of its output.

    Input `(batch_size, in_channels, T)` with mask `(batch_size, T)`; output `(batch_size, out_channels, T_out)` with
    mask `(batch_size, T_out)`, `T_out = ceil(T / stride)`; a strided convolution keeps every `stride`-th mask step.
    """

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.BoolTensor]:
        hidden_states = super().forward(hidden_states)
        if mask.shape[-1] != hidden_states.shape[-1]:
            mask = downsample_mask(mask, hidden_states.shape[-1])
        return hidden_states * mask[:, None].to(hidden_states.dtype), mask


class AdaTADChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a `(batch_size, channels, T)` sequence."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch_size, channels, T) -> (batch_size, T, channels) and back
        return super().forward(hidden_states.transpose(1, 2)).transpose(1, 2)


class AdaTADConvBlock(nn.Module):
    """Masked convolution (no bias) -> channel LayerNorm (eps 1e-6) -> ReLU -> mask; the embedding layers of the
    projection and the layers of both heads. `(batch_size, in_channels, T)` -> `(batch_size, out_channels, T)`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = AdaTADMaskedConv1d(in_channels, out_channels, kernel_size, bias=False)
        self.norm = AdaTADChannelLayerNorm(out_channels, eps=1e-6)
        self.activation = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.BoolTensor]:
        hidden_states, mask = self.conv(hidden_states, mask)
        hidden_states = self.activation(self.norm(hidden_states))
        return hidden_states * mask[:, None].to(hidden_states.dtype), mask


class AdaTADAffineDropPath(nn.Module):
    """Per-channel learnable scale (initialised to 1e-4, LayerScale-style) followed by stochastic depth.

    Input and output `(batch_size, channels, T)`; in training each sample's branch is dropped with probability
    `drop_prob` and the kept ones are divided by `1 - drop_prob`.
    """

    def __init__(self, num_channels: int, drop_prob: float, init_scale: float = 1e-4):
        super().__init__()
        self.drop_prob = drop_prob
        self.init_scale = init_scale
        self.scale = nn.Parameter(torch.full((1, num_channels, 1), init_scale))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(self.scale * hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class AdaTADScale(nn.Module):
    """A learnable scalar that multiplies its input (one per FPN level on the regression output)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.init_value = init_value
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states * self.scale


class AdaTADMaskedConvAttention(nn.Module):
    """Multi-head self-attention whose queries, keys and values first pass a depth-wise convolution (which also
    downsamples by `stride`) and a LayerNorm, then a 1x1 projection. Padded key steps get no attention weight.

    Input `(batch_size, hidden_size, T)` with mask `(batch_size, T)`; output `(batch_size, hidden_size, T / stride)`
    with the downsampled mask. `window_size > 1` restricts every step to its `window_size // 2` neighbours on each
    side (local attention); otherwise attention is global.
    """

    def __init__(self, hidden_size: int, num_heads: int, stride: int, window_size: int, dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by the number of heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = 1.0 / math.sqrt(self.head_dim)
        self.half_window = window_size // 2 if window_size > 1 else None
        kernel_size = stride + 1 if stride > 1 else 3
        depthwise = dict(kernel_size=kernel_size, stride=stride, groups=hidden_size, bias=False)
        self.query_conv = AdaTADMaskedConv1d(hidden_size, hidden_size, **depthwise)
        self.key_conv = AdaTADMaskedConv1d(hidden_size, hidden_size, **depthwise)
        self.value_conv = AdaTADMaskedConv1d(hidden_size, hidden_size, **depthwise)
        self.query_norm = AdaTADChannelLayerNorm(hidden_size)
        self.key_norm = AdaTADChannelLayerNorm(hidden_size)
        self.value_norm = AdaTADChannelLayerNorm(hidden_size)
        self.query = AdaTADConv1d(hidden_size, hidden_size)
        self.key = AdaTADConv1d(hidden_size, hidden_size)
        self.value = AdaTADConv1d(hidden_size, hidden_size)
        self.output = AdaTADConv1d(hidden_size, hidden_size)
        self.output_dropout = nn.Dropout(dropout)

    def _split_heads(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch_size, num_heads * head_dim, T) -> (batch_size, num_heads, T, head_dim)
        batch_size = hidden_states.shape[0]
        return hidden_states.view(batch_size, self.num_heads, self.head_dim, -1).transpose(2, 3)

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.BoolTensor]:
        batch_size, hidden_size, _ = hidden_states.shape
        query, query_mask = self.query_conv(hidden_states, mask)
        key, key_mask = self.key_conv(hidden_states, mask)
        value, _ = self.value_conv(hidden_states, mask)
        query = self._split_heads(self.query(self.query_norm(query))) * self.scaling
        key = self._split_heads(self.key(self.key_norm(key)))
        value = self._split_heads(self.value(self.value_norm(value)))
        if self.half_window is None:
            context = masked_global_attention(query, key, value, key_mask)
        else:
            context = masked_local_attention(query, key, value, key_mask, self.half_window)
        # (batch_size, num_heads, T', head_dim) -> (batch_size, hidden_size, T')
        context = context.transpose(2, 3).reshape(batch_size, hidden_size, -1)
        output = self.output_dropout(self.output(context))
        return output * query_mask[:, None].to(output.dtype), query_mask


class AdaTADTransformerMLP(nn.Module):
    """Two 1x1 convolutions with GELU and dropout: `(batch_size, hidden_size, T)` -> same shape."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float):
        super().__init__()
        self.fc1 = AdaTADConv1d(hidden_size, intermediate_size)
        self.activation = nn.GELU()
        self.dropout1 = nn.Dropout(dropout)
        self.fc2 = AdaTADConv1d(intermediate_size, hidden_size)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout1(self.activation(self.fc1(hidden_states)))
        return self.dropout2(self.fc2(hidden_states))


class AdaTADTransformerLayer(nn.Module):
    """Pre-LN transformer layer of the projection, optionally downsampling by `stride`.

    `x' = maxpool(x) * mask' + drop_path(attention(LN(x)))`, `out = x' + drop_path(mlp(LN(x')) * mask')`. Input
    `(batch_size, hidden_size, T)` with mask `(batch_size, T)`; output `(batch_size, hidden_size, T / stride)` with the
    downsampled mask. `drop_path_rate == 0` leaves out the per-channel branch scales (as ActionFormer does).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        stride: int = 1,
        window_size: int = -1,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.layernorm_before = AdaTADChannelLayerNorm(hidden_size)
        self.attention = AdaTADMaskedConvAttention(hidden_size, num_heads, stride, window_size, dropout)
        if stride > 1:
            self.skip_pool = nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2)
        else:
            self.skip_pool = nn.Identity()
        self.layernorm_after = AdaTADChannelLayerNorm(hidden_size)
        self.mlp = AdaTADTransformerMLP(hidden_size, 4 * hidden_size, dropout)
        if drop_path_rate > 0:
            self.attention_drop_path = AdaTADAffineDropPath(hidden_size, drop_path_rate)
            self.mlp_drop_path = AdaTADAffineDropPath(hidden_size, drop_path_rate)
        else:
            self.attention_drop_path = nn.Identity()
            self.mlp_drop_path = nn.Identity()

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.BoolTensor]:
        attention_output, mask = self.attention(self.layernorm_before(hidden_states), mask)
        valid = mask[:, None].to(attention_output.dtype)
        hidden_states = self.skip_pool(hidden_states) * valid + self.attention_drop_path(attention_output)
        mlp_output = self.mlp(self.layernorm_after(hidden_states)) * valid
        return hidden_states + self.mlp_drop_path(mlp_output), mask


class AdaTADAbsolutePositionEmbedding(nn.Module):
    """Adds a fixed sinusoidal table (scaled by `hidden_size ** -0.5`) to the valid steps of `(batch_size, hidden_size,
    T)` features. Training refuses sequences longer than `max_seq_len`; at inference a longer (or equally long)
    sequence gets the table linearly resized to its length, as ActionFormer does."""

    def __init__(self, hidden_size: int, max_seq_len: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.max_seq_len = max_seq_len
        self.register_buffer("table", self.build_table(), persistent=False)

    def build_table(self) -> torch.Tensor:
        # (1, hidden_size, max_seq_len)
        return (sinusoid_position_table(self.max_seq_len, self.hidden_size) / self.hidden_size**0.5)[None]

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> torch.Tensor:
        length = hidden_states.shape[-1]
        table = self.table
        if self.training and length > self.max_seq_len:
            raise ValueError(
                f"The detector input has {length} steps, more than `max_seq_len` ({self.max_seq_len}) that the "
                "absolute position embedding was built for; raise `max_seq_len` or shorten the training windows."
            )
        if not self.training and length >= self.max_seq_len:
            table = F.interpolate(table, size=length, mode="linear", align_corners=False)
        table = table[:, :, :length].to(hidden_states.dtype)
        return hidden_states + table * mask[:, None].to(hidden_states.dtype)


class AdaTADProjection(nn.Module):
    """ActionFormer's Conv1D-transformer projection: optional channel dropout of the input, `projection_arch[0]`
    embedding conv blocks, optional absolute position embedding, `projection_arch[1]` stem transformer layers at full
    resolution, then `projection_arch[2]` transformer layers that each halve the length. Every stem/branch output
    is one FPN level.

    Input `(batch_size, in_channels, T)` with mask `(batch_size, T)`; output a list of `projection_arch[2] + 1`
    levels `(batch_size, projection_hidden_size, T / 2**l)` and their masks `(batch_size, T / 2**l)`.
    """

    def __init__(self, config: AdaTADConfig, in_channels: int):
        super().__init__()
        hidden_size = config.projection_hidden_size
        num_embedding, num_stem, num_branch = config.projection_arch
        if num_embedding == 0 and in_channels != hidden_size:
            raise ValueError(
                f"`projection_arch` {config.projection_arch} has no embedding convolution, so the backbone width "
                f"({in_channels}) must equal `projection_hidden_size` ({hidden_size})."
            )
        windows = config.projection_attention_window
        windows = list(windows) if isinstance(windows, (list, tuple)) else [windows] * (num_branch + 1)
        self.input_dropout = (
            nn.Dropout1d(config.projection_input_drop_rate) if config.projection_input_drop_rate > 0 else nn.Identity()
        )
        self.embedding = nn.ModuleList(
            [
                AdaTADConvBlock(in_channels if i == 0 else hidden_size, hidden_size, config.projection_kernel_size)
                for i in range(num_embedding)
            ]
        )
        self.position_embedding = (
            AdaTADAbsolutePositionEmbedding(hidden_size, config.max_seq_len)
            if config.projection_use_abs_pos_embed
            else None
        )
        layer_kwargs = dict(
            hidden_size=hidden_size,
            num_heads=config.projection_num_heads,
            dropout=config.projection_dropout,
            drop_path_rate=config.projection_path_drop_rate,
        )
        self.stem = nn.ModuleList(
            [AdaTADTransformerLayer(stride=1, window_size=windows[0], **layer_kwargs) for _ in range(num_stem)]
        )
        self.branch = nn.ModuleList(
            [AdaTADTransformerLayer(stride=2, window_size=windows[1 + i], **layer_kwargs) for i in range(num_branch)]
        )

    def forward(self, hidden_states: torch.Tensor, mask: torch.BoolTensor) -> tuple[list, list]:
        hidden_states = self.input_dropout(hidden_states)
        for layer in self.embedding:
            hidden_states, mask = layer(hidden_states, mask)
        if self.position_embedding is not None:
            hidden_states = self.position_embedding(hidden_states, mask)
        for layer in self.stem:
            hidden_states, mask = layer(hidden_states, mask)
        level_states, level_masks = [hidden_states], [mask]
        for layer in self.branch:
            hidden_states, mask = layer(hidden_states, mask)
            level_states.append(hidden_states)
            level_masks.append(mask)
        return level_states, level_masks


class AdaTADIdentityFPN(nn.Module):
    """The identity FPN: one channel LayerNorm (eps 1e-6) per level, masks unchanged."""

    def __init__(self, hidden_size: int, num_levels: int):
        super().__init__()
        self.norms = nn.ModuleList([AdaTADChannelLayerNorm(hidden_size, eps=1e-6) for _ in range(num_levels)])

    def forward(self, level_states: list) -> list:
        return [norm(hidden_states) for norm, hidden_states in zip(self.norms, level_states)]


class AdaTADDetectionHead(nn.Module):
    """Classification and regression heads shared by all FPN levels.

    Each head is `head_num_convs` masked conv blocks and an output convolution; the regression output is multiplied by
    a learnable per-level scale and passed through ReLU. The classifier bias starts at `-log((1 - p) / p)` with
    `p = head_prior_prob`, so every class starts with foreground probability `p`.

    Input: lists of `(batch_size, in_channels, T_l)` features and `(batch_size, T_l)` masks. Output: lists of logits
    `(batch_size, T_l, num_labels)` and offsets `(batch_size, T_l, 2)`, neither masked.
    """

    def __init__(self, config: AdaTADConfig):
        super().__init__()
        in_channels, hidden_size = config.projection_hidden_size, config.head_hidden_size
        kernel_size = config.head_kernel_size
        self.classification_convs = nn.ModuleList(
            [
                AdaTADConvBlock(in_channels if i == 0 else hidden_size, hidden_size, kernel_size)
                for i in range(config.head_num_convs)
            ]
        )
        self.regression_convs = nn.ModuleList(
            [
                AdaTADConvBlock(in_channels if i == 0 else hidden_size, hidden_size, kernel_size)
                for i in range(config.head_num_convs)
            ]
        )
        head_in = hidden_size if config.head_num_convs > 0 else in_channels
        prior_prob = config.head_prior_prob
        prior_bias = -math.log((1 - prior_prob) / prior_prob) if prior_prob > 0 else None
        self.classification_head = AdaTADConv1d(head_in, config.num_labels, kernel_size, bias_init=prior_bias)
        self.regression_head = AdaTADConv1d(head_in, 2, kernel_size, bias_init=None)
        self.scales = nn.ModuleList([AdaTADScale(1.0) for _ in range(config.num_fpn_levels)])

    def forward(self, level_states: list, level_masks: list) -> tuple[list, list]:
        logits, offsets = [], []
        for level, (hidden_states, mask) in enumerate(zip(level_states, level_masks)):
            classification_states = regression_states = hidden_states
            for layer in self.classification_convs:
                classification_states, _ = layer(classification_states, mask)
            for layer in self.regression_convs:
                regression_states, _ = layer(regression_states, mask)
            # (batch_size, num_labels, T_l) -> (batch_size, T_l, num_labels)
            logits.append(self.classification_head(classification_states).transpose(1, 2))
            level_offsets = F.relu(self.scales[level](self.regression_head(regression_states)))
            # (batch_size, 2, T_l) -> (batch_size, T_l, 2)
            offsets.append(level_offsets.transpose(1, 2))
        return logits, offsets


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet), element-wise.

    Args:
        logits: any shape, raw scores.
        targets: same shape, (possibly smoothed) binary targets in [0, 1].
        alpha: weight of the positive term (`1 - alpha` for the negative one); a negative value disables it.
        gamma: focusing exponent on `1 - p_t`.

    Returns:
        Float32 tensor of the shape of `logits`, the unreduced loss.
    """
    logits, targets = logits.float(), targets.float()
    probabilities = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    loss = cross_entropy * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss_1d(pred_segments: torch.Tensor, target_segments: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Distance-IoU loss of 1D segments, pair by pair: `1 - IoU + (center distance / enclosing length)^2`.

    Args:
        pred_segments: `(num_segments, 2)` predicted (start, end).
        target_segments: `(num_segments, 2)` target (start, end).
        eps: lower bound of the union and of the squared enclosing length.

    Returns:
        `(num_segments,)` unreduced loss.
    """
    pred_start, pred_end = pred_segments[:, 0], pred_segments[:, 1]
    target_start, target_end = target_segments[:, 0], target_segments[:, 1]
    intersection = (torch.min(pred_end, target_end) - torch.max(pred_start, target_start)).clamp(min=0)
    union = (pred_end - pred_start) + (target_end - target_start) - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.max(pred_end, target_end) - torch.min(pred_start, target_start)
    center_distance = ((target_start + target_end) / 2 - (pred_start + pred_end) / 2).abs()
    diou = iou - center_distance * center_distance / (enclosing * enclosing).clamp(min=eps)
    return 1 - diou


@torch.no_grad()
def assign_targets(
    points: torch.Tensor,
    segments: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    center_sample_radius: float,
    filter_similar_gt: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ActionFormer label assignment for one video.

    A point is positive for a ground-truth segment when it lies within `center_sample_radius * stride` of the
    segment's center (and inside the segment), and its largest distance to the segment's boundaries lies in the
    point's regression range. Among several matching segments the shortest wins; with `filter_similar_gt` every
    segment within 1e-3 of that length also gives its class.

    Args:
        points: `(num_points, 4)` all levels' points, `(position, range min, range max, stride)`.
        segments: `(num_segments, 2)` ground truth (start, end) on the feature grid.
        labels: `(num_segments,)` class ids.
        num_labels: number of classes.
        center_sample_radius: center-sampling radius in strides.
        filter_similar_gt: give a point the classes of all equally short matching segments.

    Returns:
        `cls_targets` `(num_points, num_labels)` in {0, 1} and `reg_targets` `(num_points, 2)`, the distances to the
        start and end of the assigned segment divided by the stride (for negative points: of the first segment).
    """
    num_points, num_segments = points.shape[0], segments.shape[0]
    if num_segments == 0:
        return segments.new_zeros((num_points, num_labels)), segments.new_zeros((num_points, 2))
    # (num_points, 1) each
    positions, range_min, range_max, strides = (points[:, column, None] for column in range(4))
    lengths = (segments[:, 1] - segments[:, 0])[None].repeat(num_points, 1)
    # (num_points, num_segments) each
    starts, ends = segments[None, :, 0], segments[None, :, 1]
    reg_targets = torch.stack((positions - starts, ends - positions), dim=-1)
    centers = 0.5 * (starts + ends)
    center_min = torch.maximum(centers - strides * center_sample_radius, starts)
    center_max = torch.minimum(centers + strides * center_sample_radius, ends)
    inside_center = torch.minimum(positions - center_min, center_max - positions) > 0
    max_distance = reg_targets.max(dim=-1)[0]
    inside_range = (max_distance >= range_min) & (max_distance <= range_max)
    lengths = lengths.masked_fill(~(inside_center & inside_range), float("inf"))
    min_length, min_index = lengths.min(dim=1)
    matched = lengths < float("inf")
    if filter_similar_gt:
        matched = matched & (lengths <= min_length[:, None] + 1e-3)
    one_hot = F.one_hot(labels.long(), num_labels).to(reg_targets.dtype)
    # Several segments with the same class at one point still give a target of 1.
    cls_targets = (matched.to(reg_targets.dtype) @ one_hot).clamp(min=0.0, max=1.0)
    reg_targets = reg_targets[torch.arange(num_points, device=points.device), min_index] / strides
    return cls_targets, reg_targets


class AdaTADDetector(nn.Module):
    """
    The ActionFormer detector of AdaTAD: features padded to `max_seq_len`, [`AdaTADProjection`],
    [`AdaTADIdentityFPN`], [`AdaTADDetectionHead`], points per level, and (with labels) the focal + DIoU loss.

    `forward(features, masks=None, labels=None)`:
        features (`torch.FloatTensor` of shape `(batch_size, backbone_config.hidden_size, T)`): backbone features.
        masks (`torch.BoolTensor` of shape `(batch_size, T)`, *optional*): True on valid steps (default: all).
        labels (`list[dict]`, *optional*): per video `segments` `(N, 2)` float (start, end) in feature-grid units and
            `labels` `(N,)` class ids.

    Inputs shorter than `max_seq_len` are zero-padded (mask False) to it; longer ones up to a multiple of the largest
    stride (times the attention window where local attention is used). The loss normaliser is an EMA of the number
    of positive points, kept in the `loss_normalizer` buffer and updated in training mode only; in eval mode the
    losses are divided by the batch's own positive count.
    """

    def __init__(self, config: AdaTADConfig):
        super().__init__()
        self.num_labels = config.num_labels
        self.max_seq_len = config.max_seq_len
        self.strides = list(config.fpn_strides)
        self.regression_ranges = [list(r) for r in config.fpn_regression_ranges]
        self.center_sample_radius = config.loss_center_sample_radius
        self.filter_similar_gt = config.loss_filter_similar_gt
        self.label_smoothing = config.loss_label_smoothing
        self.regression_weight = config.loss_regression_weight
        self.normalizer_momentum = config.loss_normalizer_momentum
        self.focal_alpha = config.loss_focal_alpha
        self.focal_gamma = config.loss_focal_gamma
        windows = config.projection_attention_window
        windows = list(windows) if isinstance(windows, (list, tuple)) else [windows] * config.num_fpn_levels
        # Lengths must split evenly into every level and, with local attention, into whole windows of every level.
        self.pad_multiple = max(s * (w // 2) * 2 if w > 1 else s for s, w in zip(self.strides, windows))
        self.in_channels = config.backbone_config.hidden_size

        self.projection = AdaTADProjection(config, self.in_channels)
        self.neck = AdaTADIdentityFPN(config.projection_hidden_size, config.num_fpn_levels)
        self.head = AdaTADDetectionHead(config)
        self.register_buffer("loss_normalizer", torch.tensor(float(config.loss_normalizer_init)))
        for module in self.modules():
            init_detector_weights(module, config)

    def pad_features(
        self, features: torch.Tensor, masks: torch.BoolTensor
    ) -> tuple[torch.Tensor, torch.BoolTensor]:
        """Zero-pad `(batch_size, channels, T)` features and their `(batch_size, T)` masks to `max_seq_len`, or, when
        longer, to the next multiple of the padding factor."""
        length = features.shape[-1]
        if length == self.max_seq_len:
            return features, masks
        target = self.max_seq_len if length < self.max_seq_len else -(-length // self.pad_multiple) * self.pad_multiple
        features = F.pad(features, (0, target - length))
        masks = F.pad(masks, (0, target - length), value=False)
        return features, masks

    def get_points(self, lengths: list[int], device: torch.device) -> list[torch.Tensor]:
        """Points of each level: `(T_l, 4)` rows `(l-th step * stride, range min, range max, stride)`."""
        points = []
        for length, stride, (range_min, range_max) in zip(lengths, self.strides, self.regression_ranges):
            positions = torch.arange(length, dtype=torch.float32, device=device) * stride
            level = torch.empty((length, 4), dtype=torch.float32, device=device)
            level[:, 0] = positions
            level[:, 1] = range_min
            level[:, 2] = range_max
            level[:, 3] = stride
            points.append(level)
        return points

    def assign_targets(self, points: list[torch.Tensor], labels: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets of a batch over all levels' points: `(batch_size, num_points, num_labels)` classes and
        `(batch_size, num_points, 2)` stride-normalised distances (see [`assign_targets`])."""
        all_points = torch.cat(points, dim=0)
        cls_targets, reg_targets = [], []
        for video in labels:
            video_cls, video_reg = assign_targets(
                all_points,
                video["segments"].to(device=all_points.device, dtype=all_points.dtype),
                video["labels"].to(all_points.device),
                self.num_labels,
                self.center_sample_radius,
                self.filter_similar_gt,
            )
            cls_targets.append(video_cls)
            reg_targets.append(video_reg)
        return torch.stack(cls_targets), torch.stack(reg_targets)

    def compute_loss(
        self, logits: list, offsets: list, masks: list, points: list, labels: list[dict]
    ) -> tuple[torch.Tensor, dict]:
        """Focal loss over all valid points plus weighted DIoU loss over the positive ones, both divided by the
        loss normaliser. Returns `(loss, loss_dict)`."""
        cls_targets, reg_targets = self.assign_targets(points, labels)
        valid = torch.cat(masks, dim=1)
        positive = (cls_targets.sum(-1) > 0) & valid
        num_pos = int(positive.sum())
        if self.training:
            # An EMA of the positive count keeps the loss scale steady across small batches.
            normalizer = self.normalizer_momentum * self.loss_normalizer + (1 - self.normalizer_momentum) * max(
                num_pos, 1
            )
            self.loss_normalizer.copy_(normalizer)
        else:
            normalizer = max(num_pos, 1)

        targets = cls_targets[valid] * (1 - self.label_smoothing) + self.label_smoothing / (self.num_labels + 1)
        cls_loss = sigmoid_focal_loss(torch.cat(logits, dim=1)[valid], targets, self.focal_alpha, self.focal_gamma)
        cls_loss = cls_loss.sum() / normalizer

        all_points = torch.cat(points, dim=0)
        pred_segments = decode_segments(all_points, torch.cat(offsets, dim=1))[positive]
        target_segments = decode_segments(all_points, reg_targets)[positive]
        if num_pos == 0:
            reg_loss = pred_segments.sum() * 0
        else:
            reg_loss = diou_loss_1d(pred_segments, target_segments).sum() / normalizer
        if self.regression_weight > 0:
            reg_loss = reg_loss * self.regression_weight
        else:
            # Auto-balance: scale the regression loss to the size of the classification loss.
            reg_loss = reg_loss * (cls_loss.detach() / max(reg_loss.item(), 0.01))
        loss_dict = {
            "cls_loss": cls_loss,
            "reg_loss": reg_loss,
            "num_pos": torch.tensor(num_pos, device=valid.device),
            "loss_normalizer": torch.as_tensor(normalizer, dtype=torch.float32, device=valid.device).detach(),
        }
        return cls_loss + reg_loss, loss_dict

    def _check_inputs(self, features: torch.Tensor, masks: torch.BoolTensor | None, labels: list[dict] | None):
        if features.ndim != 3 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"detector `features` must be (batch_size, {self.in_channels}, length), got {tuple(features.shape)}."
            )
        # Inference only: in training a non-finite loss is the loop's to handle (a check here would wait for the
        # device on every step).
        if labels is None and not torch.isfinite(features).all():
            raise FloatingPointError(
                "detector `features` contain NaN or infinite values: check `pixel_values` for NaN/inf and the backbone "
                "weights (a diverged training run produces them too)."
            )
        batch_size, _, length = features.shape
        if masks is not None and (masks.dtype != torch.bool or tuple(masks.shape) != (batch_size, length)):
            raise ValueError(
                f"`masks` must be a bool tensor of shape ({batch_size}, {length}), got {masks.dtype} "
                f"{tuple(masks.shape)}."
            )
        if labels is None:
            return
        if len(labels) != batch_size:
            raise ValueError(f"`labels` has {len(labels)} entries for a batch of {batch_size} videos.")
        for index, video in enumerate(labels):
            if not isinstance(video, dict) or "segments" not in video or "labels" not in video:
                raise ValueError(f"`labels[{index}]` must be a dict with `segments` and `labels`.")
            segments, classes = video["segments"], video["labels"]
            if segments.ndim != 2 or segments.shape[1] != 2 or classes.shape != (segments.shape[0],):
                raise ValueError(
                    f"`labels[{index}]`: `segments` must be (N, 2) and `labels` (N,), got {tuple(segments.shape)} "
                    f"and {tuple(classes.shape)}."
                )
            if not torch.isfinite(segments).all():
                raise ValueError(f"`labels[{index}]['segments']` contains NaN or infinite values.")
            if classes.numel() and (classes.min() < 0 or classes.max() >= self.num_labels):
                raise ValueError(
                    f"`labels[{index}]['labels']` has class ids outside [0, {self.num_labels}): {classes.tolist()}."
                )

    def forward(
        self,
        features: torch.FloatTensor,
        masks: torch.BoolTensor | None = None,
        labels: list[dict] | None = None,
    ) -> AdaTADDetectorOutput:
        self._check_inputs(features, masks, labels)
        if masks is None:
            masks = torch.ones(features.shape[0], features.shape[-1], dtype=torch.bool, device=features.device)
        features, masks = self.pad_features(features, masks)
        level_states, level_masks = self.projection(features, masks)
        fpn_states = self.neck(level_states)
        logits, offsets = self.head(fpn_states, level_masks)
        points = self.get_points([states.shape[-1] for states in level_states], features.device)
        loss = loss_dict = None
        if labels is not None:
            loss, loss_dict = self.compute_loss(logits, offsets, level_masks, points, labels)
        return AdaTADDetectorOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits,
            pred_offsets=offsets,
            points=points,
            feature_mask=level_masks,
            projection_hidden_states=level_states,
            fpn_hidden_states=fpn_states,
        )


def init_detector_weights(module: nn.Module, config: AdaTADConfig) -> None:
    """Initialise one detector module as ActionFormer/OpenTAD does; other modules are left alone.

    Convolutions: PyTorch's default weight init (kaiming-uniform, a=sqrt(5)) and a zero bias, except the classifier
    (prior-probability bias) and the regression output (PyTorch's default bias); LayerNorms 1/0; branch scales of
    the drop paths 1e-4; per-level regression scales 1; the loss normaliser `loss_normalizer_init`; the absolute
    position table recomputed. Uses `transformers.initialization`, so tensors loaded from a checkpoint are kept.
    Called for every module by `AdaTADPreTrainedModel._init_weights` and by `AdaTADDetector.__init__`.
    """
    if isinstance(module, AdaTADConv1d):
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        if module.bias is not None:
            if module.bias_init is None:
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
            else:
                init.constant_(module.bias, module.bias_init)
    elif isinstance(module, AdaTADChannelLayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, AdaTADAffineDropPath):
        init.constant_(module.scale, module.init_scale)
    elif isinstance(module, AdaTADScale):
        init.constant_(module.scale, module.init_value)
    elif isinstance(module, AdaTADAbsolutePositionEmbedding):
        init.copy_(module.table, module.build_table())
    elif isinstance(module, AdaTADDetector):
        init.constant_(module.loss_normalizer, float(config.loss_normalizer_init))


# ======================================================================================
# Pretrained model and task model
# ======================================================================================


@dataclass
class AdaTADModelOutput(ModelOutput):
    """
    Output of [`AdaTADModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_size, feature_length)`):
            Backbone features, one per time step of the detector's input grid.
    """

    last_hidden_state: torch.FloatTensor | None = None


@dataclass
class AdaTADTemporalDetectionOutput(ModelOutput):
    """
    Output of [`AdaTADForTemporalDetection`]. Per-level tensors are lists ordered from the finest FPN level (stride 1)
    to the coarsest; `T_l` is the length of level `l`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            `cls_loss + loss_regression_weight * reg_loss`, both divided by the positive-count normaliser.
        loss_dict (`dict[str, torch.Tensor]`, *optional*, returned when `labels` are given):
            `cls_loss`, `reg_loss`, `num_pos` and the `loss_normalizer` used.
        logits (`list[torch.FloatTensor]`, each `(batch_size, T_l, num_labels)`):
            Classification logits per point (before the sigmoid, not masked).
        pred_offsets (`list[torch.FloatTensor]`, each `(batch_size, T_l, 2)`):
            Distances from each point to the segment start and end, in units of the level's stride (after ReLU).
        points (`list[torch.FloatTensor]`, each `(T_l, 4)`):
            `(position on the feature grid, regression range min, regression range max, stride)` of every point.
        feature_mask (`list[torch.BoolTensor]`, each `(batch_size, T_l)`):
            True where a point lies on valid (non-padded) input.
        backbone_features (`torch.FloatTensor` of shape `(batch_size, hidden_size, feature_length)`):
            The backbone output the detector saw.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict | None = None
    logits: list | None = None
    pred_offsets: list | None = None
    points: list | None = None
    feature_mask: list | None = None
    backbone_features: torch.FloatTensor | None = None


# The pipeline task every saved model folder declares in config.json; its code, pipeline_adatad.py, is copied beside
# the model code so that `pipeline(model=folder, trust_remote_code=True)` needs no installed adatad.
PIPELINE_TASK = "temporal-action-detection"
CUSTOM_PIPELINES = {
    PIPELINE_TASK: {
        "impl": "pipeline_adatad.TemporalActionDetectionPipeline",
        "pt": ["AutoModel"],
        "tf": [],
        "type": "video",
    }
}


def reject_unknown_arguments(method: str, kwargs: dict, known: tuple[str, ...]) -> None:
    """A misspelt keyword (`mask=` for `masks=`) would otherwise be ignored and silently change the results."""
    if kwargs:
        hints = [f"{name!r} (did you mean {difflib.get_close_matches(name, known, n=1)[0]!r}?)"
                 if difflib.get_close_matches(name, known, n=1) else repr(name) for name in sorted(kwargs)]
        raise TypeError(f"{method}() got unexpected keyword arguments {', '.join(hints)}; it takes {', '.join(known)}.")


class AdaTADPreTrainedModel(PreTrainedModel):
    config_class = AdaTADConfig
    config: AdaTADConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AdaTADVideoMAELayer"]
    # The ViT's attention is VideoMAE's, which dispatches on `backbone_config._attn_implementation` to every interface
    # transformers registers; the detector's masked attention is its own and does not depend on it.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (AdaTADTemporalAdapter, AdaTADPlainAdapter)):
            init.trunc_normal_(module.down_proj.weight, std=0.02)
            init.zeros_(module.down_proj.bias)
            # A zero up-projection makes every new adapter the identity: training starts from the pretrained ViT.
            init.zeros_(module.up_proj.weight)
            init.zeros_(module.up_proj.bias)
            init.ones_(module.gamma)
            if isinstance(module, AdaTADTemporalAdapter):
                kernel_size = module.temporal_conv.kernel_size
                init.normal_(module.temporal_conv.weight, std=math.sqrt(2.0 / kernel_size))
                init.zeros_(module.temporal_conv.bias)
                init.normal_(module.pointwise_conv.weight, std=math.sqrt(2.0 / module.pointwise_conv.in_channels))
                init.zeros_(module.pointwise_conv.bias)
        init_detector_weights(module, self.config)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the `temporal-action-detection` task in config.json and its code,
        so that every folder written (training, converters, user code) works with `pipeline(...)`."""
        self.config.custom_pipelines = CUSTOM_PIPELINES
        super().save_pretrained(save_directory, *args, **kwargs)
        pipeline_code = Path(__file__).with_name("pipeline_adatad.py")
        if kwargs.get("is_main_process", True) and pipeline_code.is_file():
            shutil.copy(pipeline_code, Path(save_directory) / pipeline_code.name)

    def _apply_tuning_mode(self):
        """Freeze what `config.tuning_mode` says is frozen: in the backbone, only adapter weights (named `adapter`)
        train in `adapter` and `side` mode, nothing in `frozen` mode, everything in `full` mode."""
        for name, parameter in self.named_parameters():
            if ".backbone." not in f".{name}":
                continue
            mode = self.config.tuning_mode
            parameter.requires_grad = mode == "full" or (mode in ("adapter", "side") and "adapter" in name)


class AdaTADModel(AdaTADPreTrainedModel):
    """
    The AdaTAD backbone: VideoMAE applied chunk by chunk with Temporal-Informative Adapters, returning one feature
    vector per time step of the detector grid, `(batch_size, hidden_size, feature_length)`.
    """

    def __init__(self, config: AdaTADConfig):
        super().__init__(config)
        # VideoMAE's attention reads the implementation from its own config: use the one chosen for the model.
        config.backbone_config._attn_implementation = config._attn_implementation
        self.backbone = AdaTADBackbone(config)
        self.post_init()
        self._apply_tuning_mode()

    def forward(self, pixel_values: torch.FloatTensor, **kwargs) -> AdaTADModelOutput:
        reject_unknown_arguments("AdaTADModel.forward", kwargs, ("pixel_values",))
        return AdaTADModelOutput(last_hidden_state=self.backbone(pixel_values))


class AdaTADForTemporalDetection(AdaTADPreTrainedModel):
    """
    AdaTAD for temporal action detection: the [`AdaTADModel`] backbone followed by an ActionFormer detector.

    `forward(pixel_values, masks=None, labels=None)`:
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Normalised frames, as [`AdaTADVideoProcessor`] returns them.
        masks (`torch.BoolTensor` of shape `(batch_size, feature_length)`, *optional*):
            True on valid time steps of the feature grid (windows padded past the end of a video are False).
            Masks act from the detector on; padded frames still pass through the backbone, as in AdaTAD.
        labels (`list[dict]`, *optional*):
            One dict per video: `segments` `(num_actions, 2)` float (start, end) in feature-grid units (one unit =
            one feature step; the processor converts seconds to this grid) and `labels` `(num_actions,)` class ids.

    Returns [`AdaTADTemporalDetectionOutput`]; turn it into segments in seconds with
    `AdaTADVideoProcessor.post_process_temporal_detection`.
    """

    def __init__(self, config: AdaTADConfig):
        super().__init__(config)
        self.model = AdaTADModel(config)
        self.detector = AdaTADDetector(config)
        self.post_init()
        self._apply_tuning_mode()

    def get_parameter_groups(
        self,
        detector_lr: float,
        adapter_lr: float,
        backbone_lr: float = 0.0,
        detector_weight_decay: float = 0.05,
        adapter_weight_decay: float = 0.05,
        backbone_weight_decay: float = 0.0,
    ) -> list[dict]:
        """AdamW parameter groups with AdaTAD's learning rates and weight-decay rules.

        Adapters (every backbone parameter named `adapter`) get `adapter_lr`; other trainable backbone parameters
        (`full` mode) get `backbone_lr`; in the detector only weights of linear and convolution layers decay, its
        biases, norms and scales do not. Frozen parameters are left out. Each group carries a `name` for logging.
        """
        decayed = {id(m.weight) for m in self.detector.modules() if isinstance(m, (nn.Linear, nn.Conv1d))}
        groups = {
            "adapter": {"params": [], "lr": adapter_lr, "weight_decay": adapter_weight_decay},
            "backbone": {"params": [], "lr": backbone_lr, "weight_decay": backbone_weight_decay},
            "detector": {"params": [], "lr": detector_lr, "weight_decay": detector_weight_decay},
            "detector_no_decay": {"params": [], "lr": detector_lr, "weight_decay": 0.0},
        }
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("model."):
                groups["adapter" if "adapter" in name else "backbone"]["params"].append(parameter)
            else:
                groups["detector" if id(parameter) in decayed else "detector_no_decay"]["params"].append(parameter)
        return [{"name": name, **group} for name, group in groups.items() if group["params"]]

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        masks: torch.BoolTensor | None = None,
        labels: list[dict] | None = None,
        **kwargs,
    ) -> AdaTADTemporalDetectionOutput:
        reject_unknown_arguments("AdaTADForTemporalDetection.forward", kwargs, ("pixel_values", "masks", "labels"))
        features = self.model(pixel_values).last_hidden_state
        if masks is not None and masks.shape != (features.shape[0], features.shape[-1]):
            raise ValueError(
                f"`masks` has shape {tuple(masks.shape)}, expected (batch_size, feature_length) = "
                f"({features.shape[0]}, {features.shape[-1]})."
            )
        if labels is not None and len(labels) != features.shape[0]:
            raise ValueError(f"`labels` has {len(labels)} entries for a batch of {features.shape[0]} videos.")
        detection = self.detector(features, masks, labels)
        return AdaTADTemporalDetectionOutput(
            loss=detection.loss,
            loss_dict=detection.loss_dict,
            logits=detection.logits,
            pred_offsets=detection.pred_offsets,
            points=detection.points,
            feature_mask=detection.feature_mask,
            backbone_features=features,
        )


# Only the installed package registers: the copy of this file in a saved model folder, imported when a folder is
# loaded with trust_remote_code=True, must not replace the installed classes for every later load.
if __package__ == "adatad":
    AutoModel.register(AdaTADConfig, AdaTADForTemporalDetection, exist_ok=True)
AdaTADConfig.register_for_auto_class()
AdaTADForTemporalDetection.register_for_auto_class("AutoModel")

__all__ = [
    "AdaTADPreTrainedModel", "AdaTADModel", "AdaTADForTemporalDetection", "AdaTADTemporalDetectionOutput",
]
