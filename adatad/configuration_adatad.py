"""AdaTAD model configuration."""

import math

from transformers import AutoConfig, PreTrainedConfig, VideoMAEConfig
from transformers.configuration_utils import SubConfigSpec

TUNING_MODES = ("adapter", "side", "frozen", "full")
ADAPTER_TYPES = ("tia", "plain")

# VideoMAE-S as used by AdaTAD (and OpenTAD): 6 heads, LayerNorm eps 1e-6, q/v biases, mean pooling.
VIDEOMAE_SMALL = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    intermediate_size=1536,
    layer_norm_eps=1e-6,
    image_size=224,
    patch_size=16,
    num_frames=16,
    tubelet_size=2,
    qv_bias=True,
    use_mean_pooling=True,
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# (field, test, allowed values as the error message states them), checked by `AdaTADConfig._check_ranges`.
_FIELD_RANGES = (
    ("adapter_mlp_ratio", lambda v: _is_real(v) and v > 0, "a positive number"),
    ("adapter_kernel_size", lambda v: _is_int(v) and v >= 1 and v % 2 == 1, "a positive odd int (same-length conv)"),
    ("backbone_drop_path_rate", lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1)"),
    ("num_frames", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("image_size", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("feature_length", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("projection_hidden_size", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("projection_kernel_size", lambda v: _is_int(v) and v >= 1 and v % 2 == 1, "a positive odd int (same-length conv)"),
    ("projection_num_heads", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("projection_path_drop_rate", lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1)"),
    ("projection_input_drop_rate", lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1)"),
    ("projection_dropout", lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1)"),
    ("projection_use_abs_pos_embed", lambda v: isinstance(v, bool), "True or False"),
    ("max_seq_len", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("head_hidden_size", lambda v: _is_int(v) and v >= 1, "a positive int"),
    ("head_num_convs", lambda v: _is_int(v) and v >= 0, "a non-negative int"),
    ("head_kernel_size", lambda v: _is_int(v) and v >= 1 and v % 2 == 1, "a positive odd int (same-length conv)"),
    ("head_prior_prob", lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1) (0: no prior bias)"),
    ("loss_center_sample_radius", lambda v: _is_real(v) and v > 0, "a positive number of strides"),
    ("loss_label_smoothing", lambda v: _is_real(v) and 0 <= v <= 1, "in [0, 1] (larger values make the loss negative)"),
    (
        "loss_regression_weight",
        lambda v: _is_real(v) and (v > 0 or v == -1),
        "a positive weight, or -1 to balance it automatically",
    ),
    ("loss_normalizer_init", lambda v: _is_real(v) and v > 0, "a positive number"),
    ("loss_normalizer_momentum", lambda v: _is_real(v) and 0 <= v <= 1, "in [0, 1]"),
    ("loss_focal_alpha", lambda v: _is_real(v) and v <= 1, "in [0, 1], or negative to disable the weighting"),
    ("loss_focal_gamma", lambda v: _is_real(v) and v >= 0, "a non-negative number"),
    ("loss_filter_similar_gt", lambda v: isinstance(v, bool), "True or False"),
    ("initializer_range", lambda v: _is_real(v) and v >= 0, "a non-negative number"),
)


class AdaTADConfig(PreTrainedConfig):
    r"""
    Configuration of an AdaTAD temporal action detector: a VideoMAE backbone (`backbone_config`) that sees the
    video in chunks of `backbone_config.num_frames` frames, Temporal-Informative Adapters (TIA) that mix
    information across all chunks, and an ActionFormer detector (projection, identity FPN, heads).

    The defaults are the THUMOS-14 VideoMAE-S AdaTAD preset (768 frames at 160x160, 20 classes).

    Backbone and adapters:
        backbone_config (`VideoMAEConfig` or `dict`): the ViT. `image_size` is the size its fixed position
            embeddings were built for (224 for every published VideoMAE); `num_frames` is the chunk length.
        tuning_mode (`str`, defaults to `"adapter"`): `"adapter"` (AdaTAD: frozen backbone, TIA inside the
            blocks train), `"side"` (AdaTAD-dagger: frozen backbone run without gradients, side adapters on
            tapped blocks), `"frozen"` (frozen backbone, no adapters), `"full"` (everything trains).
        adapter_type (`str`, defaults to `"tia"`): `"tia"` (temporal depth-wise conv across the whole video) or
            `"plain"` (bottleneck MLP only).
        adapter_layer_indices (`list[int]`, *optional*): blocks that get an adapter (`adapter` mode) or are
            tapped by side adapters (`side` mode). Defaults to every block in `adapter` mode, the second half in
            `side` mode and none in `frozen`/`full` mode.
        adapter_mlp_ratio (`float`, defaults to 0.25): adapter hidden size = int(hidden_size * ratio).
        adapter_kernel_size (`int`, defaults to 3): kernel of the temporal depth-wise convolution.
        backbone_drop_path_rate (`float`, defaults to 0.1): stochastic depth, linear over the blocks; it stays
            active in training even though the backbone is frozen, as in AdaTAD.
        num_frames (`int`, defaults to 768): frames per sample fed to the model (all chunks together).
        mlp_row_block_size (`int`, `"auto"` or `None`, defaults to `"auto"`): run each ViT block's MLP this many
            token rows at a time, keeping only its input for the backward pass (less memory, one more `fc1` product
            per step; same result). `None` runs VideoMAE's own MLP. `"auto"`: 1024 rows on a CPU, where it was
            measured faster and leaner, VideoMAE's MLP on other devices. Blocks that activation checkpointing
            recomputes a slice of chunks at a time run VideoMAE's MLP on each slice, whose 4-wide tensors are small.
        image_size (`int`, defaults to 160): input frame size; the position embeddings are bicubically
            interpolated when it differs from `backbone_config.image_size`.
        feature_length (`int`, defaults to 768): length of the backbone feature sequence handed to the detector
            (the chunk tokens are linearly interpolated to it: the window size, or ActivityNet's resize length).

    Detector (ActionFormer):
        projection_hidden_size (`int`, defaults to 512): width of the projection, FPN and heads.
        projection_arch (`list[int]`, defaults to `[2, 2, 5]`): (embedding convs, stem transformer layers,
            branch transformer layers); the FPN has `branch + 1` levels.
        projection_kernel_size (`int`, defaults to 3): kernel of the embedding convolutions.
        projection_num_heads (`int`, defaults to 4): attention heads of the transformer layers.
        projection_attention_window (`int` or `list[int]`, defaults to -1): local attention window per FPN level
            (-1 = global attention); one int applies to every level.
        projection_path_drop_rate (`float`, defaults to 0.1): drop path of the transformer layers.
        projection_input_drop_rate (`float`, defaults to 0.0): channel dropout on the projection input.
        projection_dropout (`float`, defaults to 0.0): dropout inside the transformer layers.
        projection_use_abs_pos_embed (`bool`, defaults to `False`): add a fixed sinusoidal position embedding.
        max_seq_len (`int`, defaults to 768): inputs shorter than this are padded to it.
        fpn_strides (`list[int]`): stride of each FPN level, in feature steps.
        fpn_regression_ranges (`list[list[float]]`): (min, max) regression range of each FPN level.
        head_hidden_size (`int`, defaults to 512): width of the classification and regression heads.
        head_num_convs (`int`, defaults to 2): convolutions before each head's output layer.
        head_kernel_size (`int`, defaults to 3): kernel of the head convolutions.
        head_prior_prob (`float`, defaults to 0.01): initial foreground probability of the classifier.
        num_labels (`int`, defaults to 20): number of action classes (1 for class-agnostic ActivityNet).

    Losses:
        loss_center_sample_radius (`float`, defaults to 1.5): center sampling radius, in strides.
        loss_label_smoothing (`float`, defaults to 0.0): label smoothing of the focal loss targets.
        loss_regression_weight (`float`, defaults to 1.0): weight of the DIoU loss (-1: balanced automatically).
        loss_normalizer_init (`float`, defaults to 100): initial value of the positive-count normaliser EMA.
        loss_normalizer_momentum (`float`, defaults to 0.9): momentum of that EMA.
        loss_focal_alpha (`float`, defaults to 0.25), loss_focal_gamma (`float`, defaults to 2.0): focal loss.
        loss_filter_similar_gt (`bool`, defaults to `True`): a point inside several matching ground-truth segments
            takes the classes of the shortest and of those within 1e-3 of its length (OpenTAD's `filter_similar_gt`);
            `False`: the classes of every matching segment. The regression target is the shortest segment's either way.

    Post-processing settings are not part of the model: the video processor carries them
    (`adatad.post_processing.PostProcessingSettings`).

    Example:

    ```python
    >>> from adatad import AdaTADConfig, AdaTADForTemporalDetection
    >>> config = AdaTADConfig()  # THUMOS-14, VideoMAE-S, 768 frames at 160x160
    >>> model = AdaTADForTemporalDetection(config)
    ```"""

    model_type = "adatad"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=VideoMAEConfig, init_kwargs=VIDEOMAE_SMALL)}

    backbone_config: dict | PreTrainedConfig | None = None
    tuning_mode: str = "adapter"
    adapter_type: str = "tia"
    adapter_layer_indices: list[int] | None = None
    adapter_mlp_ratio: float = 0.25
    adapter_kernel_size: int = 3
    backbone_drop_path_rate: float = 0.1
    mlp_row_block_size: int | str | None = "auto"
    num_frames: int = 768
    image_size: int = 160
    feature_length: int = 768

    projection_hidden_size: int = 512
    projection_arch: list[int] | tuple[int, ...] = (2, 2, 5)
    projection_kernel_size: int = 3
    projection_num_heads: int = 4
    projection_attention_window: int | list[int] = -1
    projection_path_drop_rate: float = 0.1
    projection_input_drop_rate: float = 0.0
    projection_dropout: float = 0.0
    projection_use_abs_pos_embed: bool = False
    max_seq_len: int = 768
    fpn_strides: list[int] | tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    fpn_regression_ranges: list | tuple = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    head_hidden_size: int = 512
    head_num_convs: int = 2
    head_kernel_size: int = 3
    head_prior_prob: float = 0.01

    loss_center_sample_radius: float = 1.5
    loss_label_smoothing: float = 0.0
    loss_regression_weight: float = 1.0
    loss_normalizer_init: float = 100.0
    loss_normalizer_momentum: float = 0.9
    loss_focal_alpha: float = 0.25
    loss_focal_gamma: float = 2.0
    loss_filter_similar_gt: bool = True

    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if kwargs.get("num_labels") is None and kwargs.get("id2label") is None and self.id2label is None:
            kwargs["num_labels"] = 20
        num_labels = kwargs.get("num_labels")
        if num_labels is not None and (type(num_labels) is not int or num_labels < 1):
            # Checked here: transformers turns num_labels into range(num_labels) labels, so -3 would read as 0.
            raise ValueError(f"`num_labels` must be at least 1, got {num_labels!r}.")
        if self.backbone_config is None:
            self.backbone_config = VideoMAEConfig(**VIDEOMAE_SMALL)
        elif isinstance(self.backbone_config, dict):
            # Unset fields take AdaTAD's VideoMAE values (e.g. LayerNorm eps 1e-6), not VideoMAEConfig's.
            backbone_kwargs = {k: v for k, v in self.backbone_config.items() if k != "model_type"}
            self.backbone_config = VideoMAEConfig(**{**VIDEOMAE_SMALL, **backbone_kwargs})
        self.projection_arch = [int(n) for n in self.projection_arch]
        self.fpn_strides = [int(s) for s in self.fpn_strides]
        self.fpn_regression_ranges = [[float(lo), float(hi)] for lo, hi in self.fpn_regression_ranges]
        if self.adapter_layer_indices is None:
            depth = self.backbone_config.num_hidden_layers
            self.adapter_layer_indices = {
                "adapter": list(range(depth)),
                "side": list(range(depth // 2, depth)),
            }.get(self.tuning_mode, [])
        self.adapter_layer_indices = sorted(int(i) for i in self.adapter_layer_indices)
        super().__post_init__(**kwargs)
        self._check_ranges()
        self._check_values()

    @property
    def frames_per_chunk(self) -> int:
        return self.backbone_config.num_frames

    @property
    def num_chunks(self) -> int:
        return self.num_frames // self.backbone_config.num_frames

    @property
    def num_fpn_levels(self) -> int:
        return self.projection_arch[2] + 1

    @property
    def adapter_hidden_size(self) -> int:
        return int(self.backbone_config.hidden_size * self.adapter_mlp_ratio)

    def _check_ranges(self):
        """Every scalar field within the range the model can use; NaN and infinity fail every range."""
        for name, is_allowed, allowed in _FIELD_RANGES:
            value = getattr(self, name)
            if not is_allowed(value):
                raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")
        windows = self.projection_attention_window
        for window in windows if isinstance(windows, (list, tuple)) else [windows]:
            if not (_is_int(window) and (window == -1 or window >= 1)):
                raise ValueError(
                    f"`projection_attention_window` must be -1 (global attention) or a positive int, per level or for "
                    f"all levels, got {windows!r}."
                )
        for level, (low, high) in enumerate(self.fpn_regression_ranges):
            if not (0 <= low < high):
                raise ValueError(
                    f"`fpn_regression_ranges[{level}]` must be (min, max) with 0 <= min < max, got {[low, high]}."
                )

    def _check_values(self):
        backbone = self.backbone_config
        row_block = self.mlp_row_block_size
        if not (row_block is None or row_block == "auto" or (_is_int(row_block) and row_block >= 1)):
            raise ValueError(
                f"`mlp_row_block_size` must be a positive int, \"auto\" or None (VideoMAE's own MLP), "
                f"got {row_block!r}."
            )
        if self.tuning_mode not in TUNING_MODES:
            raise ValueError(f"`tuning_mode` must be one of {TUNING_MODES}, got {self.tuning_mode!r}.")
        if self.adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"`adapter_type` must be one of {ADAPTER_TYPES}, got {self.adapter_type!r}.")
        if self.tuning_mode == "side" and self.adapter_type != "tia":
            raise ValueError("`tuning_mode='side'` uses temporal side adapters; set `adapter_type='tia'`.")
        depth = backbone.num_hidden_layers
        bad = [i for i in self.adapter_layer_indices if not 0 <= i < depth]
        if bad:
            raise ValueError(
                f"`adapter_layer_indices` {bad} out of range: the backbone has {depth} layers (valid 0..{depth - 1})."
            )
        if len(set(self.adapter_layer_indices)) != len(self.adapter_layer_indices):
            raise ValueError(f"`adapter_layer_indices` has duplicates: {self.adapter_layer_indices}.")
        if self.tuning_mode == "frozen" and self.adapter_layer_indices:
            raise ValueError(
                "`tuning_mode='frozen'` trains no adapters: leave `adapter_layer_indices` unset or empty "
                f"(got {self.adapter_layer_indices}); use `tuning_mode='adapter'` to train adapters."
            )
        if self.tuning_mode == "side" and not self.adapter_layer_indices:
            raise ValueError("`tuning_mode='side'` needs at least one tapped block in `adapter_layer_indices`.")
        if self.adapter_layer_indices and self.adapter_hidden_size < 1:
            raise ValueError(
                f"`adapter_mlp_ratio` ({self.adapter_mlp_ratio}) gives an adapter width of 0 for hidden size "
                f"{backbone.hidden_size}."
            )
        if backbone.num_frames % backbone.tubelet_size:
            raise ValueError(
                f"`backbone_config.num_frames` (frames per chunk, {backbone.num_frames}) must be divisible by "
                f"`backbone_config.tubelet_size` ({backbone.tubelet_size})."
            )
        if self.num_frames <= 0 or self.num_frames % backbone.num_frames:
            raise ValueError(
                f"`num_frames` ({self.num_frames}) must be a positive multiple of the chunk size "
                f"`backbone_config.num_frames` ({backbone.num_frames})."
            )
        patch = backbone.patch_size if isinstance(backbone.patch_size, int) else backbone.patch_size[0]
        if self.image_size < patch:
            raise ValueError(f"`image_size` ({self.image_size}) is smaller than the patch size ({patch}).")
        if self.feature_length <= 0:
            raise ValueError(f"`feature_length` must be positive, got {self.feature_length}.")
        if len(self.projection_arch) != 3 or min(self.projection_arch) < 0:
            raise ValueError(
                "`projection_arch` must be three non-negative ints (embedding convs, stem layers, branch layers), "
                f"got {self.projection_arch}."
            )
        levels = self.num_fpn_levels
        if len(self.fpn_strides) != levels or len(self.fpn_regression_ranges) != levels:
            raise ValueError(
                f"`projection_arch` {self.projection_arch} gives {levels} FPN levels, but `fpn_strides` has "
                f"{len(self.fpn_strides)} and `fpn_regression_ranges` has {len(self.fpn_regression_ranges)} entries."
            )
        expected_strides = [2**level for level in range(levels)]
        if self.fpn_strides != expected_strides:
            raise ValueError(
                f"`fpn_strides` must be {expected_strides} (each branch layer halves the length), "
                f"got {self.fpn_strides}."
            )
        windows = self.projection_attention_window
        if isinstance(windows, (list, tuple)) and len(windows) != levels:
            raise ValueError(
                f"`projection_attention_window` lists {len(windows)} windows but there are {levels} FPN levels."
            )
        if self.projection_hidden_size % self.projection_num_heads:
            raise ValueError(
                f"`projection_hidden_size` ({self.projection_hidden_size}) must be divisible by "
                f"`projection_num_heads` ({self.projection_num_heads})."
            )
        if self.max_seq_len % self.fpn_strides[-1]:
            raise ValueError(
                f"`max_seq_len` ({self.max_seq_len}) must be divisible by the largest FPN stride "
                f"({self.fpn_strides[-1]})."
            )
        if self.num_labels < 1:
            raise ValueError(f"`num_labels` must be at least 1, got {self.num_labels}.")


# Only the installed package registers: the copy of this file in a saved model folder, imported when a folder is
# loaded with trust_remote_code=True, must not replace the installed classes for every later load.
if __package__ == "adatad":
    AutoConfig.register(AdaTADConfig.model_type, AdaTADConfig, exist_ok=True)

__all__ = ["AdaTADConfig"]
