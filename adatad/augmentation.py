"""Training augmentation of AdaTAD's clips: OpenTAD's `mmaction.ImgAug(transforms="default")` in torch.

Every AdaTAD training pipeline in OpenTAD applies mmaction2 1.1.0's `ImgAug(transforms="default")`: imgaug
0.4.0's `SomeOf(n=2)` over 15 ops at level 9/10. `ImgAugDefault` reproduces it on uint8 clips
`(num_frames, 3, height, width)` without imgaug (unmaintained):

- the op list and magnitudes of `ImgAug.default_transforms`: ShearX/ShearY 17.19 * 0.9 degrees, TranslateX/
  TranslateY 0.2 * 0.9 of the width/height, Rotate 30 * 0.9 degrees, Posterize to `int(4 * 0.9)` = 3 bits,
  Solarize above `256 * 0.9` (pixels >= 230 inverted), EnhanceColor/Contrast/Brightness/Sharpness with the
  factor 1.8 * 0.9 + 0.1 = 1.72, Autocontrast (cutoff 0), Equalize, Invert, Cutout (one square of side
  0.2 * 0.9 of the height, filled with 128, centred uniformly in the image);
- the sign of each geometric op is drawn once, when the pipeline is built (mmaction2 calls `random.choice`
  in `default_transforms`), not per clip; `ImgAugDefault.for_seed` makes those calls as an OpenTAD run with
  the same seed does;
- `SomeOf(n=2)` picks 2 distinct ops uniformly and applies them in list order (`random_order=False`);
- one draw per clip (mmaction2's `to_deterministic()`), applied to every frame.

Each op follows what imgaug 0.4.0 runs for uint8 RGB images, so that outputs match it pixel for pixel
(measured in `tests/test_augmentation.py` against `tests/data/imgaug_default/`):

- geometric ops: imgaug's matrix (rotation about the pixel centre `(w/2 - 0.5, h/2 - 0.5)`, shear as
  scikit-image >= 0.21 builds it, translation in pixels = fraction * size) warped as OpenCV's `warpAffine`
  does (bilinear on a 1/32 pixel grid with 15-bit fixed-point weights, constant border 0);
- enhance ops: Pillow's `ImageEnhance` (float32 blend with the degenerate image, truncation; luma
  `(19595 R + 38470 G + 7471 B + 2^15) >> 16`; the 3x3 SMOOTH filter with border pixels kept);
- autocontrast and equalize: imgaug's per-channel lookup tables (its numpy paths, and for equalize on
  images of fewer than 64 * 64 values (H * W * 3) Pillow's, whose step leaves out the highest occupied bin
  instead of bin 255).

`TorchvisionRandAugment` keeps torchvision's `RandAugment` as the named alternative.
"""

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

LEVEL = 9 / 10
SHEAR_DEGREES = 17.19 * LEVEL
TRANSLATE_FRACTION = 0.2 * LEVEL
ROTATE_DEGREES = 30 * LEVEL
POSTERIZE_BITS = max(1, int(4 * LEVEL))
SOLARIZE_THRESHOLD = 256 * LEVEL
ENHANCE_FACTOR = 1.8 * LEVEL + 0.1
CUTOUT_SIZE = 0.2 * LEVEL
CUTOUT_FILL = 128
NUM_OPS = 2

# `ImgAug.default_transforms` order, which is also the order `SomeOf` applies the chosen ops in.
OPS = (
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "posterize",
    "solarize",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "autocontrast",
    "equalize",
    "invert",
    "cutout",
)
SIGNED_OPS = OPS[:5]

# imgaug builds the shear-y matrix by rotating with this truncated pi (geometric.py, `to_matrix`).
_IMGAUG_PI = 3.141592
# Under this many values (H * W * 3: imgaug compares `image.size`, although its comment says H * W) imgaug
# 0.4.0 equalizes through Pillow (`_EQUALIZE_USE_PIL_BELOW`).
_EQUALIZE_PIL_BELOW = 64 * 64
# `apply_op` and `warp_affine` run this many frames at a time: every op is per frame, and small chunks keep the
# temporaries (a few int16/uint16 copies of the chunk) in the CPU cache whatever the clip length (measured on
# 160x160 frames, one thread: chunks of 4 frames run the warps and the enhance ops 1.5-2x faster than chunks of 64).
_FRAME_CHUNK = 4


def _check_clip(frames: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"expected a uint8 clip of shape (num_frames, 3, height, width), got {tuple(frames.shape)} "
            f"{frames.dtype}"
        )


# ----------------------------------------------------------------------------------------------------------
# Geometric ops
# ----------------------------------------------------------------------------------------------------------


def _affine(a: float, b: float, c: float, d: float, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    return torch.tensor([[a, b, tx], [c, d, ty], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _sk_affine(rotation: float = 0.0, shear: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """scikit-image (>= 0.21) `AffineTransform(rotation=, shear=, translation=)` with unit scale."""
    cos, sin, tan = math.cos(rotation), math.sin(rotation), math.tan(shear)
    return _affine(cos, -(tan * cos + sin), sin, -(tan * sin - cos), tx, ty)


def imgaug_affine_matrix(
    height: int,
    width: int,
    rotate_degrees: float = 0.0,
    shear_x_degrees: float = 0.0,
    shear_y_degrees: float = 0.0,
    translate_x_fraction: float = 0.0,
    translate_y_fraction: float = 0.0,
) -> torch.Tensor:
    """The `(3, 3)` float64 source-to-output matrix imgaug 0.4.0's `Affine` builds for an image."""
    shift_x, shift_y = width / 2.0 - 0.5, height / 2.0 - 0.5
    # imgaug composes with scikit-image's `+` (apply left first): topleft, -90 deg, shear y, +90 deg,
    # rotation/shear x/translation, back to the centre.
    steps = [
        _affine(1, 0, 0, 1, -shift_x, -shift_y),
        _sk_affine(rotation=-_IMGAUG_PI / 2),
        _sk_affine(shear=math.radians(shear_y_degrees)),
        _sk_affine(rotation=_IMGAUG_PI / 2),
        _sk_affine(
            rotation=math.radians(rotate_degrees),
            shear=math.radians(shear_x_degrees),
            tx=translate_x_fraction * width,
            ty=translate_y_fraction * height,
        ),
        _affine(1, 0, 0, 1, shift_x, shift_y),
    ]
    matrix = steps[0]
    for step in steps[1:]:
        matrix = step @ matrix
    return matrix


def warp_affine(frames: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """OpenCV `warpAffine(src, matrix[:2], (W, H), INTER_LINEAR, BORDER_CONSTANT, 0)` on a uint8 clip.

    As OpenCV: the matrix is inverted in float64; source positions are rounded to 1/1024 pixel, then to the
    1/32 grid of its interpolation table; the 4 neighbours get integer weights summing to 2^15 and the sum is
    rounded; neighbours outside the image count as 0.
    """
    _check_clip(frames)
    num_frames, channels, height, width = frames.shape
    table = _warp_table(matrix, height, width)
    output = np.empty((num_frames * channels, height * width), dtype=np.uint8)
    # Temporaries reused by every chunk (they stay in the CPU cache; fresh ones would cost page faults).
    rows = min(_FRAME_CHUNK, num_frames) * channels
    buffers = (np.empty((rows, height * width), dtype=np.uint8),) + tuple(
        np.empty((rows, height * width), dtype=np.uint16) for _ in range(4)
    )
    for start in range(0, num_frames, _FRAME_CHUNK):
        chunk = frames[start : start + _FRAME_CHUNK]
        # Padded by one zero pixel, so that coordinates outside the image read 0.
        planes = torch.nn.functional.pad(chunk, (1, 1, 1, 1)).reshape(chunk.shape[0] * channels, -1).numpy()
        _warp_planes(planes, table, output[start * channels : (start + chunk.shape[0]) * channels], buffers)
    return torch.from_numpy(output).view(num_frames, channels, height, width)


def _warp_table(matrix: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, ...]:
    """OpenCV's source neighbours and fixed-point weights of every output pixel: `(i00, i01, i10, i11)` flat indices
    into a plane padded by one pixel, and the uint16 weights `(wx0, wx1, wy0, wy1)` in 0..32, each `(1, H * W)`."""
    m = matrix.to(torch.float64)
    det = float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
    inv_det = 1.0 / det if det != 0 else 0.0
    a00, a01 = float(m[1, 1]) * inv_det, float(m[0, 1]) * -inv_det
    a10, a11 = float(m[1, 0]) * -inv_det, float(m[0, 0]) * inv_det
    b0 = -a00 * float(m[0, 2]) - a01 * float(m[1, 2])
    b1 = -a10 * float(m[0, 2]) - a11 * float(m[1, 2])

    ab_scale, inter_bits = 1024, 5
    round_delta = ab_scale // (1 << inter_bits) // 2
    xs = torch.arange(width, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64)
    # torch.round rounds half to even, as OpenCV's cvRound.
    x_delta = torch.round(a00 * xs * ab_scale).long()
    y_delta = torch.round(a10 * xs * ab_scale).long()
    x_row = torch.round((a01 * ys + b0) * ab_scale).long() + round_delta
    y_row = torch.round((a11 * ys + b1) * ab_scale).long() + round_delta
    x_fixed = (x_row[:, None] + x_delta[None, :]) >> (10 - inter_bits)
    y_fixed = (y_row[:, None] + y_delta[None, :]) >> (10 - inter_bits)
    x0, fx = x_fixed >> inter_bits, x_fixed & 31
    y0, fy = y_fixed >> inter_bits, y_fixed & 31

    # Index into the frame padded by one zero pixel; coordinates outside land on the padding.
    padded_width = width + 2

    def flat_index(y, x):
        return ((y.clamp(-1, height) + 1) * padded_width + x.clamp(-1, width) + 1).view(-1).numpy()

    indices = (flat_index(y0, x0), flat_index(y0, x0 + 1), flat_index(y0 + 1, x0), flat_index(y0 + 1, x0 + 1))
    weights = tuple(weight.view(1, -1).numpy().astype(np.uint16) for weight in (32 - fx, fx, 32 - fy, fy))
    return indices + weights


def _warp_planes(
    planes: np.ndarray, table: tuple[np.ndarray, ...], output: np.ndarray, buffers: tuple[np.ndarray, ...]
):
    """Bilinear interpolation of padded uint8 planes `(n, (H + 2) * (W + 2))` into `output` `(n, H * W)`, through
    `buffers` (one uint8 and four uint16 arrays of at least `n` rows)."""
    i00, i01, i10, i11, wx0, wx1, wy0, wy1 = table
    pixels, top, bottom, high, spare = (buffer[: len(planes)] for buffer in buffers)
    # OpenCV: (sum of 32 * wx * wy * pixel + 2^14) >> 15 with wx, wy in 0..32. Equal to
    # (wy0 * h0 + wy1 * h1 + 2^9) >> 10 with the row sums h = wx0 * left + wx1 * right (<= 8160), evaluated
    # exactly in uint16 by splitting h = 32 * a + b: (A + ((B + 2^9) >> 5)) >> 5 with A, B the a and b sums.
    for row_sum, (left, right) in ((top, (i00, i01)), (bottom, (i10, i11))):
        np.multiply(np.take(planes, left, axis=1, out=pixels), wx0, out=row_sum)
        np.add(row_sum, np.multiply(np.take(planes, right, axis=1, out=pixels), wx1, out=spare), out=row_sum)
    # A = (top >> 5) * wy0 + (bottom >> 5) * wy1
    np.multiply(np.right_shift(top, 5, out=high), wy0, out=high)
    np.add(high, np.multiply(np.right_shift(bottom, 5, out=spare), wy1, out=spare), out=high)
    # B = (top & 31) * wy0 + (bottom & 31) * wy1, then (A + ((B + 2^9) >> 5)) >> 5
    np.multiply(np.bitwise_and(top, 31, out=top), wy0, out=top)
    np.add(top, np.multiply(np.bitwise_and(bottom, 31, out=bottom), wy1, out=bottom), out=top)
    np.right_shift(np.add(top, 512, out=top), 5, out=top)
    np.copyto(output, np.right_shift(np.add(high, top, out=high), 5, out=high), casting="unsafe")


def shear_x(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    """imgaug `ShearX(shear=degrees)` (bilinear, constant 0 border)."""
    return warp_affine(frames, imgaug_affine_matrix(*frames.shape[-2:], shear_x_degrees=degrees))


def shear_y(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    """imgaug `ShearY(shear=degrees)`."""
    return warp_affine(frames, imgaug_affine_matrix(*frames.shape[-2:], shear_y_degrees=degrees))


def translate_x(frames: torch.Tensor, fraction: float) -> torch.Tensor:
    """imgaug `TranslateX(percent=fraction)`: shift by `fraction * width` pixels."""
    return warp_affine(frames, imgaug_affine_matrix(*frames.shape[-2:], translate_x_fraction=fraction))


def translate_y(frames: torch.Tensor, fraction: float) -> torch.Tensor:
    """imgaug `TranslateY(percent=fraction)`: shift by `fraction * height` pixels."""
    return warp_affine(frames, imgaug_affine_matrix(*frames.shape[-2:], translate_y_fraction=fraction))


def rotate(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    """imgaug `Rotate(rotate=degrees)` about the image centre."""
    return warp_affine(frames, imgaug_affine_matrix(*frames.shape[-2:], rotate_degrees=degrees))


# ----------------------------------------------------------------------------------------------------------
# Pixel ops
# ----------------------------------------------------------------------------------------------------------


def _as_planes(frames: torch.Tensor) -> np.ndarray:
    """uint8 `(num_frames * 3, H * W)` numpy view (a copy when `frames` is not contiguous)."""
    return frames.contiguous().numpy().reshape(frames.shape[0] * frames.shape[1], -1)


def _apply_lut(frames: torch.Tensor, lut: np.ndarray) -> torch.Tensor:
    """Map every value through one 256-entry uint8 table."""
    return torch.from_numpy(np.take(lut, frames.contiguous().numpy()))


def _apply_plane_luts(frames: torch.Tensor, luts: np.ndarray) -> torch.Tensor:
    """Map each `(frame, channel)` plane through its own table, `luts` uint8 `(num_frames * 3, 256)`."""
    planes = _as_planes(frames)
    output = np.empty_like(planes)
    # 256 planes at a time: (plane << 8) | value indexes their concatenated tables with uint16.
    offsets = np.arange(256, dtype=np.uint16)[:, None] << 8
    for start in range(0, planes.shape[0], 256):
        block = planes[start : start + 256]
        output[start : start + 256] = np.take(luts[start : start + 256].reshape(-1), offsets[: len(block)] | block)
    return torch.from_numpy(output).view(frames.shape)


def _histograms(frames: torch.Tensor) -> np.ndarray:
    """`(num_frames * 3, 256)` int64 histograms of every plane."""
    planes = _as_planes(frames)
    offsets = np.arange(256, dtype=np.uint16)[:, None] << 8
    counts = [
        np.bincount((offsets[: len(block)] | block).reshape(-1), minlength=len(block) * 256).reshape(-1, 256)
        for block in (planes[start : start + 256] for start in range(0, planes.shape[0], 256))
    ]
    return np.concatenate(counts)


def posterize(frames: torch.Tensor, bits: int) -> torch.Tensor:
    """imgaug `Posterize(nb_bits=bits)`: keep the `bits` highest bits of each value."""
    if not 1 <= bits <= 8:
        raise ValueError(f"posterize keeps 1..8 bits, got {bits}")
    return frames & (0xFF ^ ((1 << (8 - bits)) - 1))


def solarize(frames: torch.Tensor, threshold: float) -> torch.Tensor:
    """imgaug `Solarize(threshold=threshold)`: values >= `int(threshold)` are inverted."""
    values = np.arange(256)
    return _apply_lut(frames, np.where(values >= int(threshold), 255 - values, values).astype(np.uint8))


def invert(frames: torch.Tensor) -> torch.Tensor:
    """imgaug `Invert(p=1)`."""
    return 255 - frames


@functools.lru_cache(maxsize=8)
def _blend_table(factor: float) -> np.ndarray:
    """Pillow's `Image.blend(degenerate, image, factor)` for every uint8 pair, `[degenerate, value]`.

    Pillow computes `(float)(d + alpha * (v - d))` with a float32 `alpha` (each operation rounded, no fused
    multiply-add), clips to 0..255 and truncates."""
    values = torch.arange(256, dtype=torch.float32)
    degenerate, value = values[:, None], values[None, :]
    alpha = torch.tensor(factor, dtype=torch.float32)
    blended = torch.add(degenerate, torch.mul(value - degenerate, alpha))
    return blended.clamp_(0, 255).to(torch.uint8).numpy()


def _blend_pixels(degenerate: torch.Tensor, frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with a per-pixel degenerate image (uint8, broadcastable to `frames`)."""
    index = (degenerate.to(torch.int16) << 8) | frames.to(torch.int16)
    table = _blend_table(factor).reshape(-1)
    return torch.from_numpy(np.take(table, index.contiguous().numpy().view(np.uint16)))


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L: `(19595 R + 38470 G + 7471 B + 2^15) >> 16`, `(num_frames, 1, H, W)` uint8."""
    rgb = frames.to(torch.int32)
    return ((rgb[:, 0:1] * 19595 + rgb[:, 1:2] * 38470 + rgb[:, 2:3] * 7471 + 0x8000) >> 16).to(torch.uint8)


def enhance_color(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow `ImageEnhance.Color(image).enhance(factor)` per frame: blend with the frame's luma."""
    return _blend_pixels(_luma(frames), frames, factor)


def enhance_contrast(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow `ImageEnhance.Contrast`: blend with each frame's mean luma, rounded to an integer."""
    luma = _luma(frames)
    count = luma[0].numel()
    means = [int(total / count + 0.5) for total in luma.view(luma.shape[0], -1).sum(1, dtype=torch.int64).tolist()]
    luts = _blend_table(factor)[np.repeat(means, frames.shape[1])]
    return _apply_plane_luts(frames, luts)


def enhance_brightness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow `ImageEnhance.Brightness`: blend with black."""
    return _apply_lut(frames, _blend_table(factor)[0])


# (2 * N + 13) // 26 for every weighted sum N of the SMOOTH kernel (0 .. 13 * 255).
_SMOOTH_TABLE = ((2 * np.arange(13 * 255 + 1) + 13) // 26).astype(np.uint8)


def smooth_filter(frames: torch.Tensor) -> torch.Tensor:
    """Pillow's `ImageFilter.SMOOTH` (3x3, weights 1 around 5, / 13) on uint8; border pixels are kept.

    Pillow sums in float32 with the kernel divided by 13 and a rounding offset 0.5, then truncates. Its
    result equals the integer `(2 * N + 13) // 26` of the weighted sum `N`: `0.5 + N / 13` is never within
    1/26 of an integer, far beyond float32 rounding at these magnitudes."""
    height, width = frames.shape[-2:]
    if height < 3 or width < 3:
        return frames.clone()
    source = frames.to(torch.int16)
    rows = source[..., :, :-2] + source[..., :, 1:-1] + source[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    weighted = box + 4 * source[..., 1:-1, 1:-1]
    output = frames.clone()
    output[..., 1:-1, 1:-1] = torch.from_numpy(np.take(_SMOOTH_TABLE, weighted.numpy()))
    return output


def enhance_sharpness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow `ImageEnhance.Sharpness`: blend with the SMOOTH-filtered frame."""
    return _blend_pixels(smooth_filter(frames), frames, factor)


def autocontrast(frames: torch.Tensor) -> torch.Tensor:
    """imgaug `pillike.Autocontrast(cutoff=0)`: stretch each channel's [min, max] to [0, 255] per frame."""
    low = frames.amin(dim=(-2, -1)).to(torch.float64).view(-1, 1)
    high = frames.amax(dim=(-2, -1)).to(torch.float64).view(-1, 1)
    stretch = high > low
    scale = torch.where(stretch, 255.0 / torch.where(stretch, high - low, 1.0), 1.0)
    offset = torch.where(stretch, -low * scale, 0.0)
    values = torch.arange(256, dtype=torch.float64)
    # imgaug: `np.clip(arange * scale + offset, 0, 255).astype(uint8)`; identity where max <= min.
    luts = (values * scale + offset).clamp_(0, 255).to(torch.uint8)
    return _apply_plane_luts(frames, luts.numpy())


def equalize(frames: torch.Tensor) -> torch.Tensor:
    """imgaug `pillike.Equalize`: per-channel histogram equalization of each frame (PIL's lookup table)."""
    histograms = _histograms(frames)
    total = histograms.sum(-1)
    occupied = histograms > 0
    if frames[0].numel() >= _EQUALIZE_PIL_BELOW:
        left_out = histograms[:, 255]
    else:
        # Pillow leaves out the highest occupied bin.
        last = 255 - np.argmax(occupied[:, ::-1], axis=-1)
        left_out = histograms[np.arange(len(histograms)), last]
    step = (total - left_out) // 255
    identity = (occupied.sum(-1) <= 1) | (step == 0)
    step = np.where(identity, 1, step)
    before = np.concatenate([np.zeros_like(histograms[:, :1]), np.cumsum(histograms, -1)[:, :-1]], -1)
    luts = ((step // 2)[:, None] + before) // step[:, None]
    luts = np.where(identity[:, None], np.arange(256), np.minimum(luts, 255)).astype(np.uint8)
    return _apply_plane_luts(frames, luts)


def cutout_box(
    height: int, width: int, center_x: float, center_y: float, size: float = CUTOUT_SIZE
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of imgaug's squared `Cutout` centred at `(center_x, center_y)` (fractions).

    imgaug: a `size` x `size` box (fractions of width and height) around the centre, then squared about its
    horizontal centre to the side `size * height`; corners truncated with `int()` and clipped to the image.
    """
    x1, x2 = (center_x - size / 2) * width, (center_x + size / 2) * width
    y1, y2 = (center_y - size / 2) * height, (center_y + size / 2) * height
    half = (y2 - y1) / 2
    x_center = x1 + (x2 - x1) / 2
    x1, x2 = x_center - half, x_center + half
    left, right = (min(max(int(value), 0), width) for value in (x1, x2))
    top, bottom = (min(max(int(value), 0), height) for value in (y1, y2))
    return top, left, bottom, right


def cutout(
    frames: torch.Tensor, center_x: float, center_y: float, size: float = CUTOUT_SIZE, fill: int = CUTOUT_FILL
) -> torch.Tensor:
    """imgaug `Cutout(nb_iterations=1, size=size, squared=True)` with its default constant fill 128."""
    top, left, bottom, right = cutout_box(*frames.shape[-2:], center_x, center_y, size)
    output = frames.clone()
    output[..., top:bottom, left:right] = fill
    return output


# ----------------------------------------------------------------------------------------------------------
# The pipelines
# ----------------------------------------------------------------------------------------------------------


def apply_op(
    frames: torch.Tensor, op: str, sign: int = 1, cutout_center: Sequence[float] = (0.5, 0.5)
) -> torch.Tensor:
    """One op of `OPS` at mmaction2's default magnitude; `sign` applies to the geometric ops, `cutout_center`
    (x, y fractions) to cutout."""
    _check_clip(frames)
    if op in SIGNED_OPS or frames.shape[0] <= _FRAME_CHUNK:  # the warps chunk themselves (one table per clip)
        return _apply_op_chunk(frames, op, sign, cutout_center)
    output = torch.empty(frames.shape, dtype=torch.uint8)
    for start in range(0, frames.shape[0], _FRAME_CHUNK):
        output[start : start + _FRAME_CHUNK] = _apply_op_chunk(
            frames[start : start + _FRAME_CHUNK], op, sign, cutout_center
        )
    return output


def _apply_op_chunk(frames: torch.Tensor, op: str, sign: int, cutout_center: Sequence[float]) -> torch.Tensor:
    if op == "shear_x":
        return shear_x(frames, sign * SHEAR_DEGREES)
    if op == "shear_y":
        return shear_y(frames, sign * SHEAR_DEGREES)
    if op == "translate_x":
        return translate_x(frames, sign * TRANSLATE_FRACTION)
    if op == "translate_y":
        return translate_y(frames, sign * TRANSLATE_FRACTION)
    if op == "rotate":
        return rotate(frames, sign * ROTATE_DEGREES)
    if op == "posterize":
        return posterize(frames, POSTERIZE_BITS)
    if op == "solarize":
        return solarize(frames, SOLARIZE_THRESHOLD)
    if op == "color":
        return enhance_color(frames, ENHANCE_FACTOR)
    if op == "contrast":
        return enhance_contrast(frames, ENHANCE_FACTOR)
    if op == "brightness":
        return enhance_brightness(frames, ENHANCE_FACTOR)
    if op == "sharpness":
        return enhance_sharpness(frames, ENHANCE_FACTOR)
    if op == "autocontrast":
        return autocontrast(frames)
    if op == "equalize":
        return equalize(frames)
    if op == "invert":
        return invert(frames)
    if op == "cutout":
        return cutout(frames, *cutout_center)
    raise ValueError(f"unknown augmentation op {op!r}; expected one of {OPS}")


@dataclass(frozen=True)
class ImgAugDraw:
    """One clip's draw: the chosen ops (in application order) and the cutout centre (x, y fractions)."""

    ops: tuple[str, ...]
    cutout_center: tuple[float, float]


@dataclass(frozen=True)
class ImgAugDefault:
    """mmaction2 1.1.0 `ImgAug(transforms="default")` on uint8 clips `(num_frames, 3, height, width)`.

    Build it once per pipeline (`ImgAugDefault.create(generator)` draws the geometric signs, as mmaction2 does
    when the pipeline is built), then call it per clip with that clip's generator: 2 distinct ops of `OPS`,
    applied in list order, one draw shared by every frame.

    Args:
        signs: `{op: +1 or -1}` for the 5 geometric ops (`SIGNED_OPS`).
    """

    signs: dict[str, int]

    def __post_init__(self):
        if set(self.signs) != set(SIGNED_OPS) or any(sign not in (-1, 1) for sign in self.signs.values()):
            raise ValueError(f"`signs` must map each of {SIGNED_OPS} to +1 or -1, got {self.signs}")

    @classmethod
    def for_seed(cls, seed: int) -> "ImgAugDefault":
        """The signs of an OpenTAD run started with `--seed seed`: OpenTAD's `set_seed` seeds Python's `random`,
        and the first draws from it are mmaction2's `random.choice([-1, 1])` calls, one per geometric op in
        `SIGNED_OPS` order, when the training dataset builds its pipeline."""
        rng = random.Random(seed)
        return cls(signs={op: rng.choice((-1, 1)) for op in SIGNED_OPS})

    @classmethod
    def create(cls, generator: torch.Generator) -> "ImgAugDefault":
        """Draw the geometric signs (each +1 or -1 with probability 1/2) from `generator`."""
        draws = torch.randint(0, 2, (len(SIGNED_OPS),), generator=generator).tolist()
        return cls(signs={op: 2 * draw - 1 for op, draw in zip(SIGNED_OPS, draws)})

    def draw(self, generator: torch.Generator) -> ImgAugDraw:
        """A clip's draw: `SomeOf(n=2)` (a uniform 2-subset, kept in list order) and a uniform cutout centre.

        The cutout centre is drawn every time, so the generator advances the same way whatever ops are chosen.
        """
        chosen = sorted(torch.randperm(len(OPS), generator=generator)[:NUM_OPS].tolist())
        center_x, center_y = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        return ImgAugDraw(ops=tuple(OPS[index] for index in chosen), cutout_center=(center_x, center_y))

    def apply(self, frames: torch.Tensor, draw: ImgAugDraw) -> torch.Tensor:
        """Apply a draw to every frame of the clip."""
        for op in draw.ops:
            frames = apply_op(frames, op, sign=self.signs.get(op, 1), cutout_center=draw.cutout_center)
        return frames

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(frames, self.draw(generator))


@dataclass(frozen=True)
class TorchvisionRandAugment:
    """torchvision `RandAugment(num_ops, magnitude)` with one draw per clip, taken from `generator`."""

    num_ops: int = 2
    magnitude: int = 9

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from torchvision.transforms import v2

        augment = v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude)
        # torchvision draws from the global torch RNG: fork it so the draw follows `generator` only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            return augment(frames.contiguous())


__all__ = [
    "OPS",
    "SIGNED_OPS",
    "ImgAugDefault",
    "ImgAugDraw",
    "TorchvisionRandAugment",
    "apply_op",
    "autocontrast",
    "cutout",
    "cutout_box",
    "enhance_brightness",
    "enhance_color",
    "enhance_contrast",
    "enhance_sharpness",
    "equalize",
    "imgaug_affine_matrix",
    "invert",
    "posterize",
    "rotate",
    "shear_x",
    "shear_y",
    "smooth_filter",
    "solarize",
    "translate_x",
    "translate_y",
    "warp_affine",
]
