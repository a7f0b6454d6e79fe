"""Peak training memory per device of an AdaTAD preset, from an analytic model of the network (no torch needed).

`estimate_training_memory(model_config, ...)` splits the steady-state peak of a training step (forward, backward and
AdamW step, AdamW states alive from the previous step) into

- weights: every parameter in fp32 (mixed precision keeps fp32 master weights; bf16/fp16 autocast adds a half copy
  of the trainable weights, which autocast caches during the forward);
- gradients: the trainable parameters in fp32;
- optimizer states: AdamW's two fp32 moments per trainable parameter;
- activations: what autograd keeps for the backward, counted per ViT block in units of one `(tokens, hidden_size)`
  tensor, plus the detector's, per time step in units of its width.

Without activation checkpointing, the activation counts, in `(tokens, hidden_size)` tensors per block, are fitted to the
steady-state fp32 peaks that `benchmarks/bench_train.py` measures for VideoMAE-S at 64, 256 and 768 frames (checked on
VideoMAE-B, which they were not fitted to), and counting the tensors autograd saves explains them: a block with frozen
weights and an adapter (AdaTAD) saves its input, q, k, v and the attention output, the residual sum, the MLP's input
(the MLP is row-blocked and keeps no 4-wide tensor) and the adapter's input and bottleneck tensors, 10.6 in all, of
which the block input is the previous block's output (8.5 per block); with trainable weights (full fine-tuning) the
linears' inputs are the tensors above, so the count is about the same (8). The detector keeps about 170 tensors of
`projection_hidden_size` per time step of `max_seq_len` (its projection and heads over every FPN level, the attention
maps and the loss over all points), fitted in the `frozen` mode, where the detector is all that trains. Attention is
assumed to be SDPA (no `(tokens, tokens)` map kept); bf16/fp16 autocast is counted as 2 bytes per activation.

Activation checkpointing keeps one tensor per trainable block (the input of the step that runs the previous block's
adapter and this block's attention and MLP, `adatad.lean_vit.SlicedRecomputeFunction`). The detector's backward runs
first and is over before the backbone's recomputation starts, so the peak is the kept tensors plus the larger of the
detector's activations and what the step being recomputed adds (RECOMPUTED_BLOCK_TENSORS: the adapter's output and
the gradients of the step's output, of the adapter's output and of its input, and the attention and MLP tensors of one
quarter of the chunks, which are recomputed a slice at a time). That count is fitted to the first-step peaks that
`benchmarks/bench_vs_opentad.py` measures for VideoMAE-S at 256 and 768 frames (activations and gradients: AdamW's
states do not exist yet at that peak).

`adatad-estimate-memory --preset NAME` (`adatad/estimate_memory.py`) prints the estimate; the validation against
measured peaks is `benchmarks/bench_memory_estimate.py`.
"""

from dataclasses import dataclass

from .presets import PresetError, load_preset
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

# `(tokens, hidden_size)` tensors autograd keeps per ViT block (see the module docstring).
BLOCK_TENSORS_FROZEN = 8.5
BLOCK_TENSORS_TRAINABLE = 8
# With activation checkpointing: what the step being recomputed adds, at the peak of its backward, to the stored
# tensors (one per trainable block). Measured for AdaTAD (frozen blocks); the slices of a quarter of the chunks add
# 1.5 tensors to the 6 that slices of an eighth did, at 256 and at 768 frames alike. Full fine-tuning recomputes the
# same slices and is given the same count (not measured since the slices changed).
RECOMPUTED_BLOCK_TENSORS_FROZEN = 7.5
RECOMPUTED_BLOCK_TENSORS_TRAINABLE = 7.5
# A side adapter (AdaTAD-dagger) keeps its tap (one full-width tensor) and 4 tensors of adapter width: the bottleneck,
# its activation, the temporal convolution's output and the sum.
SIDE_ADAPTER_BOTTLENECK_TENSORS = 4
# Detector tensors of `projection_hidden_size` kept per time step of `max_seq_len`.
DETECTOR_TENSORS_PER_STEP = 170

# Defaults of AdaTADConfig / VideoMAE that presets may leave out.
CONFIG_DEFAULTS = dict(
    tuning_mode="adapter",
    adapter_type="tia",
    adapter_layer_indices=None,
    adapter_mlp_ratio=0.25,
    adapter_kernel_size=3,
    num_frames=768,
    image_size=160,
    feature_length=768,
    projection_hidden_size=512,
    projection_arch=[2, 2, 5],
    projection_kernel_size=3,
    projection_num_heads=4,
    projection_path_drop_rate=0.1,
    projection_use_abs_pos_embed=False,
    max_seq_len=768,
    head_hidden_size=512,
    head_num_convs=2,
    head_kernel_size=3,
    num_labels=20,
)
BACKBONE_DEFAULTS = dict(
    hidden_size=384, num_hidden_layers=12, intermediate_size=1536, patch_size=16, num_frames=16, tubelet_size=2,
    num_channels=3, qv_bias=True,
)


@dataclass
class MemoryEstimate:
    """Bytes per device at the peak of a training step."""

    weights: int
    gradients: int
    optimizer_states: int
    activations: int
    total_parameters: int
    trainable_parameters: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_states + self.activations

    def as_dict(self) -> dict:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer_states": self.optimizer_states,
            "activations": self.activations,
            "total": self.total,
            "total_parameters": self.total_parameters,
            "trainable_parameters": self.trainable_parameters,
        }


def _settings(model_config: dict) -> tuple[dict, dict]:
    config = {**CONFIG_DEFAULTS, **model_config}
    backbone = {**BACKBONE_DEFAULTS, **(model_config.get("backbone_config") or {})}
    if config["adapter_layer_indices"] is None:
        depth = backbone["num_hidden_layers"]
        config["adapter_layer_indices"] = {"adapter": list(range(depth)), "side": list(range(depth // 2, depth))}.get(
            config["tuning_mode"], []
        )
    return config, backbone


def adapter_parameters(hidden_size: int, adapter_hidden_size: int, kernel_size: int, temporal: bool) -> int:
    down_up = 2 * hidden_size * adapter_hidden_size + adapter_hidden_size + hidden_size + 1  # + gamma
    if not temporal:
        return down_up
    depthwise = adapter_hidden_size * kernel_size + adapter_hidden_size
    pointwise = adapter_hidden_size * adapter_hidden_size + adapter_hidden_size
    return down_up + depthwise + pointwise


def parameter_counts(model_config: dict) -> dict:
    """Parameters of AdaTADForTemporalDetection built from `model_config` (a preset's `model` dict), by part."""
    config, backbone = _settings(model_config)
    C, I, depth = backbone["hidden_size"], backbone["intermediate_size"], backbone["num_hidden_layers"]
    patch = backbone["num_channels"] * backbone["tubelet_size"] * backbone["patch_size"] ** 2 * C + C
    qkv_bias = 2 * C if backbone["qv_bias"] else 0
    block = 4 * C * C + qkv_bias + C + 2 * C * I + I + C + 4 * C
    adapter_hidden = int(C * config["adapter_mlp_ratio"])
    one_adapter = adapter_parameters(C, adapter_hidden, config["adapter_kernel_size"], config["adapter_type"] == "tia")
    # `frozen` builds no adapters; the others one per listed block (in the block, or beside it in `side` mode).
    adapters = 0 if config["tuning_mode"] == "frozen" else len(config["adapter_layer_indices"]) * one_adapter

    D, H = config["projection_hidden_size"], config["head_hidden_size"]
    embedding_convs, stem_layers, branch_layers = config["projection_arch"]
    k = config["projection_kernel_size"]
    embedding = 0
    for index in range(embedding_convs):
        embedding += (C if index == 0 else D) * D * k + 2 * D  # bias-free conv + LayerNorm
    attention = 3 * (D * 3 + 2 * D) + 4 * (D * D + D)  # depth-wise q/k/v convs + their norms, q/k/v/out projections
    transformer = 4 * D + attention + 2 * (D * 4 * D) + 4 * D + D
    if config["projection_path_drop_rate"] > 0:
        transformer += 2 * D  # the two affine drop-path scales
    projection = embedding + (stem_layers + branch_layers) * transformer
    levels = branch_layers + 1
    neck = levels * 2 * D
    hk = config["head_kernel_size"]
    head_convs = 2 * sum((D if index == 0 else H) * H * hk + 2 * H for index in range(config["head_num_convs"]))
    head_outputs = (H * config["num_labels"] * hk + config["num_labels"]) + (H * 2 * hk + 2)
    head = head_convs + head_outputs + levels
    return {
        "backbone": patch + depth * block,
        "adapters": adapters,
        "detector": projection + neck + head,
    }


def trainable_parameters(model_config: dict) -> int:
    config, _ = _settings(model_config)
    counts = parameter_counts(model_config)
    mode = config["tuning_mode"]
    if mode == "full":
        return counts["backbone"] + counts["adapters"] + counts["detector"]
    return counts["adapters"] + counts["detector"]


def activation_bytes(
    model_config: dict, batch_size: int, precision: str, gradient_checkpointing: bool, num_frames: int | None = None
) -> int:
    """Activations autograd keeps at the peak of the backward (see the module docstring for the counts)."""
    config, backbone = _settings(model_config)
    frames = num_frames or config["num_frames"]
    element = PRECISION_BYTES[precision]
    C, depth = backbone["hidden_size"], backbone["num_hidden_layers"]
    grid = config["image_size"] // backbone["patch_size"]
    tokens = batch_size * (frames // backbone["tubelet_size"]) * grid * grid
    token_tensor = tokens * C * element

    mode = config["tuning_mode"]
    indices = config["adapter_layer_indices"]
    if mode == "full":
        blocks_with_grad = depth
        per_block, recomputed = BLOCK_TENSORS_TRAINABLE, RECOMPUTED_BLOCK_TENSORS_TRAINABLE
    elif mode == "adapter" and indices:
        blocks_with_grad = depth - min(indices)
        per_block, recomputed = BLOCK_TENSORS_FROZEN, RECOMPUTED_BLOCK_TENSORS_FROZEN
    else:
        blocks_with_grad, per_block, recomputed = 0, 0, 0
    detector_length = max(config["max_seq_len"], config["feature_length"])
    detector_width = config["projection_hidden_size"]
    detector_bytes = DETECTOR_TENSORS_PER_STEP * batch_size * detector_length * detector_width * element
    if blocks_with_grad and gradient_checkpointing:
        # One kept tensor per trainable block; on top of them, the detector's backward runs first and is done before
        # the backbone's recomputation starts, so the larger of the two sets the peak.
        kept = round(blocks_with_grad * token_tensor)
        return kept + max(round(recomputed * token_tensor), detector_bytes)
    backbone_bytes = round(blocks_with_grad * per_block * token_tensor)
    if mode == "side":
        adapter_fraction = int(C * config["adapter_mlp_ratio"]) / C
        # The taps of the no-grad backbone stay alive until the side network's backward has used them; checkpointed
        # side adapters keep nothing else but the one being recomputed.
        side_adapters_kept = 1 if gradient_checkpointing else len(indices)
        bottleneck = side_adapters_kept * SIDE_ADAPTER_BOTTLENECK_TENSORS * adapter_fraction
        backbone_bytes = round((len(indices) + bottleneck) * token_tensor)
    return backbone_bytes + detector_bytes


def estimate_training_memory(
    model_config: dict,
    batch_size: int = 1,
    precision: str = "fp32",
    gradient_checkpointing: bool = False,
    num_frames: int | None = None,
) -> MemoryEstimate:
    """Peak training memory per device for `model_config` (a preset's `model` dict or AdaTADConfig fields).

    `num_frames` overrides the preset's frames per sample (the detector's length stays the preset's
    `max_seq_len`/`feature_length`); `precision` is the autocast dtype of the forward (weights, gradients and AdamW
    states stay fp32)."""
    if precision not in PRECISION_BYTES:
        raise ValueError(f"`precision` must be one of {list(PRECISION_BYTES)}, got {precision!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    counts = parameter_counts(model_config)
    total = sum(counts.values())
    trainable = trainable_parameters(model_config)
    weights = 4 * total + (2 * trainable if precision != "fp32" else 0)
    return MemoryEstimate(
        weights=weights,
        gradients=4 * trainable,
        optimizer_states=8 * trainable,
        activations=activation_bytes(model_config, batch_size, precision, gradient_checkpointing, num_frames),
        total_parameters=total,
        trainable_parameters=trainable,
    )


def limit_cpu_heap_fragmentation(mmap_threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold, so that every freed tensor above `mmap_threshold` bytes goes back to the system.

    By default glibc raises the threshold to the size of each freed mmapped block (up to 32 MiB); tensors below it
    then come from the heap, where freed blocks stay resident and fragment: a CPU training step of AdaTAD at 256
    frames held about twice its live tensors that way (`benchmarks/bench_vs_opentad.py --default-malloc`). Setting
    the threshold (as `MALLOC_MMAP_THRESHOLD_` does) turns that adjustment off. Training and detection commands call
    this once at start on CPU. Returns False where the C library has no `mallopt` (not glibc): nothing changed.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3  # glibc's M_MMAP_THRESHOLD
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)))


def read_preset(name_or_path: str) -> dict:
    """A shipped preset by name (`adatad/presets/NAME.json`) or a preset JSON by path; only its `model` section must
    be complete (the rest falls back to `preset_defaults`)."""
    preset = load_preset(name_or_path, validate=False)
    if not isinstance(preset.get("model"), dict):
        raise PresetError(f"{name_or_path}: a preset needs a `model` object with the AdaTADConfig fields.")
    return preset


def preset_defaults(preset: dict) -> dict:
    """Batch size per device, precision and checkpointing as the preset trains."""
    training = preset.get("training", {})
    per_device = max(1, training.get("global_batch_size", 1) // max(1, training.get("reference_num_gpus", 1)))
    precision = {"no": "fp32", None: "fp32"}.get(training.get("mixed_precision"), training.get("mixed_precision"))
    return {
        "batch_size": per_device,
        "precision": precision if precision in PRECISION_BYTES else "fp32",
        "gradient_checkpointing": bool(training.get("gradient_checkpointing", False)),
    }
