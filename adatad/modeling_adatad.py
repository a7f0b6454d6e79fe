"""PyTorch AdaTAD: VideoMAE with Temporal-Informative Adapters and an ActionFormer detector."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.videomae.modeling_videomae import VideoMAEEmbeddings, VideoMAELayer
from transformers.utils import ModelOutput

from .configuration_adatad import AdaTADConfig


# ======================================================================================
# Backbone: VideoMAE with temporal adapters (written by the lead)
# ======================================================================================

def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability `drop_prob`, rescale the rest."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    mask_shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = torch.empty(mask_shape, dtype=hidden_states.dtype, device=hidden_states.device).bernoulli_(keep_prob)
    return hidden_states * mask / keep_prob


class AdaTADDropPath(nn.Module):
    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

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
        self.temporal_conv = nn.Conv1d(
            adapter_hidden_size, adapter_hidden_size, kernel_size, padding=kernel_size // 2, groups=adapter_hidden_size
        )
        self.pointwise_conv = nn.Conv1d(adapter_hidden_size, adapter_hidden_size, 1)
        self.up_proj = nn.Linear(adapter_hidden_size, hidden_size)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        batch_size, temporal_size, height, width = video_grid
        adapted = self.act(self.down_proj(hidden_states))
        chunk_batch, num_tokens, channels = adapted.shape
        # (batch_size * num_chunks, t * h * w, c) -> (batch_size * h * w, c, num_chunks * t)
        sequence = adapted.reshape(batch_size, temporal_size, height, width, channels)
        sequence = sequence.permute(0, 2, 3, 4, 1).reshape(batch_size * height * width, channels, temporal_size)
        sequence = self.pointwise_conv(self.temporal_conv(sequence))
        # (batch_size * h * w, c, num_chunks * t) -> (batch_size * num_chunks, t * h * w, c)
        sequence = sequence.reshape(batch_size, height, width, channels, temporal_size).permute(0, 4, 1, 2, 3)
        adapted = adapted + sequence.reshape(chunk_batch, num_tokens, channels)
        output = self.up_proj(adapted) * self.gamma
        return hidden_states + output if self.residual else output


class AdaTADPlainAdapter(nn.Module):
    """Bottleneck adapter without temporal mixing: `x + gamma * up(GELU(down(x)))` (the ablation baseline)."""

    def __init__(self, hidden_size: int, adapter_hidden_size: int):
        super().__init__()
        self.down_proj = nn.Linear(hidden_size, adapter_hidden_size)
        self.act = nn.GELU()
        self.up_proj = nn.Linear(adapter_hidden_size, hidden_size)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        return hidden_states + self.up_proj(self.act(self.down_proj(hidden_states))) * self.gamma


class AdaTADVideoMAELayer(VideoMAELayer):
    """transformers' `VideoMAELayer` plus stochastic depth and an optional adapter after the MLP residual.

    The attention, MLP and norms are VideoMAE's own modules (same parameter names, so VideoMAE weights load as they
    are); only the residual wiring changes, to add drop path and the adapter as AdaTAD does.
    """

    def __init__(self, config, drop_path_rate: float, adapter: nn.Module | None = None):
        super().__init__(config)
        self.drop_path = AdaTADDropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.adapter = adapter

    def forward(self, hidden_states: torch.Tensor, video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        attention_output = self.attention(self.layernorm_before(hidden_states))
        hidden_states = hidden_states + self.drop_path(attention_output)
        mlp_output = self.output.dense(self.intermediate(self.layernorm_after(hidden_states)))
        hidden_states = hidden_states + self.drop_path(self.output.dropout(mlp_output))
        if self.adapter is not None:
            hidden_states = self.adapter(hidden_states, video_grid)
        return hidden_states


class AdaTADSideAdapters(nn.Module):
    """AdaTAD-dagger's side network: one temporal adapter per tapped block, summed onto the last tapped output.

    `output = taps[-1] + sum_i adapter_i(taps[i])`; the taps come from a backbone run without gradients, so training
    keeps no backbone activations.
    """

    def __init__(self, hidden_size: int, adapter_hidden_size: int, kernel_size: int, num_taps: int):
        super().__init__()
        self.adapters = nn.ModuleList(
            AdaTADTemporalAdapter(hidden_size, adapter_hidden_size, kernel_size, residual=False) for _ in range(num_taps)
        )

    def forward(self, taps: list[torch.Tensor], video_grid: tuple[int, int, int, int]) -> torch.Tensor:
        output = taps[-1]
        for adapter, tap in zip(self.adapters, taps):
            output = output + adapter(tap, video_grid)
        return output


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
        drop_path_rates = [rate.item() for rate in torch.linspace(0, config.backbone_drop_path_rate, depth)]
        in_block_adapters = config.tuning_mode in ("adapter", "full")
        self.layers = nn.ModuleList(
            AdaTADVideoMAELayer(
                vit_config,
                drop_path_rate=drop_path_rates[index] if config.tuning_mode != "side" else 0.0,
                adapter=self._make_adapter(config) if in_block_adapters and index in config.adapter_layer_indices else None,
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

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.check_pixel_values(pixel_values)
        batch_size, num_frames, num_channels, height, width = pixel_values.shape
        num_chunks = num_frames // self.config.frames_per_chunk
        # (batch_size, num_frames, c, h, w) -> (batch_size * num_chunks, frames_per_chunk, c, h, w)
        chunks = pixel_values.reshape(batch_size * num_chunks, self.config.frames_per_chunk, num_channels, height, width)

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
            for index, layer in enumerate(self.layers):
                with torch.set_grad_enabled(torch.is_grad_enabled() and index >= first_trainable):
                    hidden_states = layer(hidden_states, video_grid)

        # (batch_size * num_chunks, t * h * w, c) -> mean over space -> (batch_size, c, num_chunks * t)
        hidden_size = hidden_states.shape[-1]
        features = hidden_states.reshape(batch_size, num_chunks * tokens_t, tokens_h * tokens_w, hidden_size).mean(2)
        features = features.transpose(1, 2).float()
        # (batch_size, c, num_chunks * t) -> (batch_size, c, feature_length)
        return F.interpolate(features, size=self.config.feature_length, mode="linear", align_corners=False)


# BACKBONE-SECTION-END


# ======================================================================================
# Detector: ActionFormer projection, identity FPN, heads, points, losses
# ======================================================================================

# DETECTOR-SECTION-END


# ======================================================================================
# Pretrained model and task model (written by the lead)
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


class AdaTADPreTrainedModel(PreTrainedModel):
    config_class = AdaTADConfig
    config: AdaTADConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AdaTADVideoMAELayer"]
    _supports_sdpa = True

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
                kernel_size = module.temporal_conv.kernel_size[0]
                init.normal_(module.temporal_conv.weight, std=math.sqrt(2.0 / kernel_size))
                init.zeros_(module.temporal_conv.bias)
                init.normal_(module.pointwise_conv.weight, std=math.sqrt(2.0 / module.pointwise_conv.in_channels))
                init.zeros_(module.pointwise_conv.bias)
        init_detector_weights(module, self.config)

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
        self.backbone = AdaTADBackbone(config)
        self.post_init()
        self._apply_tuning_mode()

    def forward(self, pixel_values: torch.FloatTensor, **kwargs) -> AdaTADModelOutput:
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

    def freeze_backbone(self):
        """Freeze the whole ViT (adapters included): only the detector trains."""
        for parameter in self.model.parameters():
            parameter.requires_grad = False

    def get_parameter_groups(
        self,
        detector_lr: float,
        adapter_lr: float,
        backbone_lr: float = 0.0,
        weight_decay: float = 0.05,
    ) -> list[dict]:
        """AdamW parameter groups with AdaTAD's learning rates and weight-decay rules.

        Adapters (every backbone parameter named `adapter`) get `adapter_lr` with weight decay; other trainable
        backbone parameters (`full` mode) get `backbone_lr`; detector weights of linear and convolution layers get
        `detector_lr` with weight decay, and its biases, norms and scales `detector_lr` without. Frozen parameters
        are left out. Each group carries a `name` for logging.
        """
        decayed_detector = {id(module.weight) for module in self.detector.modules() if isinstance(module, (nn.Linear, nn.Conv1d))}
        groups = {
            "adapter": {"params": [], "lr": adapter_lr, "weight_decay": weight_decay},
            "backbone": {"params": [], "lr": backbone_lr, "weight_decay": weight_decay},
            "detector": {"params": [], "lr": detector_lr, "weight_decay": weight_decay},
            "detector_no_decay": {"params": [], "lr": detector_lr, "weight_decay": 0.0},
        }
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("model."):
                groups["adapter" if "adapter" in name else "backbone"]["params"].append(parameter)
            else:
                groups["detector" if id(parameter) in decayed_detector else "detector_no_decay"]["params"].append(parameter)
        return [{"name": name, **group} for name, group in groups.items() if group["params"]]

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        masks: torch.BoolTensor | None = None,
        labels: list[dict] | None = None,
        **kwargs,
    ) -> AdaTADTemporalDetectionOutput:
        features = self.model(pixel_values).last_hidden_state
        if masks is not None and masks.shape != (features.shape[0], features.shape[-1]):
            raise ValueError(
                f"`masks` has shape {tuple(masks.shape)}, expected (batch_size, feature_length) = "
                f"({features.shape[0]}, {features.shape[-1]})."
            )
        if labels is not None and len(labels) != features.shape[0]:
            raise ValueError(f"`labels` has {len(labels)} entries for a batch of {features.shape[0]} videos.")
        detection = self.detector(features, masks, labels)
        if detection.loss is not None and not torch.isfinite(detection.loss):
            parts = {name: float(value) for name, value in detection.loss_dict.items()}
            raise FloatingPointError(
                f"AdaTAD loss is not finite ({float(detection.loss)}; parts {parts}); inputs finite: "
                f"{bool(torch.isfinite(pixel_values).all())}. Stopping instead of training on NaN: lower the "
                "learning rate, check the labels' segments, or enable gradient clipping."
            )
        return AdaTADTemporalDetectionOutput(
            loss=detection.loss,
            loss_dict=detection.loss_dict,
            logits=detection.logits,
            pred_offsets=detection.pred_offsets,
            points=detection.points,
            feature_mask=detection.feature_mask,
            backbone_features=features,
        )


AutoModel.register(AdaTADConfig, AdaTADForTemporalDetection, exist_ok=True)
AdaTADConfig.register_for_auto_class()
AdaTADForTemporalDetection.register_for_auto_class("AutoModel")

__all__ = ["AdaTADPreTrainedModel", "AdaTADModel", "AdaTADForTemporalDetection", "AdaTADTemporalDetectionOutput"]
