"""Record the outputs of mmaction2 1.1.0's `ImgAug(transforms="default")` ops with imgaug 0.4.0.

Not run by the tests: it needs imgaug, which adatad does not depend on. It writes `recorded.npz` (inputs and
outputs) and `recorded.json` (versions and parameters) next to this file; `tests/test_augmentation.py` compares
`adatad.augmentation` with them. See README.md in this folder for the environment and the command.

Each op is built as mmaction2's `ImgAug.imgaug_builder` builds it (`getattr(iaa, type)`, else
`iaa.pillike`), with the magnitudes of `ImgAug.default_transforms` (level 9/10) and a fixed sign, and applied
with `augment_image` to fixed uint8 images. Cutout gets a fixed position (imgaug draws it uniformly in [0, 1]).
Pairs of ops go through `SomeOf(n=2)` with exactly those two children, which applies both in list order.
"""

import json
import sys
from pathlib import Path

import numpy as np

if tuple(int(part) for part in np.__version__.split(".")[:2]) >= (1, 24):
    # imgaug 0.4.0 uses `np.bool`; mmaction2 1.1.0 applies the same alias.
    np.bool = bool

import cv2
import imgaug
import imgaug.augmenters as iaa
import PIL
import skimage

HERE = Path(__file__).resolve().parent
LEVEL = 9 / 10


def make_images() -> dict[str, np.ndarray]:
    """Structured test images: gradients, blocks and noise, with channels of different ranges.

    `large` has more than 64*64 values (H*W*C; imgaug's numpy equalize path, the one training frames take);
    `small` has fewer (imgaug hands equalize to PIL there); a block sets both images' blue maximum below 255
    with many pixels, where the two equalize paths differ; `flat` has a channel with a single value and a
    narrow range in the others (autocontrast / equalize corner cases)."""
    rng = np.random.RandomState(0)
    images = {}
    for name, (height, width) in {"large": (64, 80), "small": (24, 32)}.items():
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        red = 30 + 170 * x / (width - 1)
        green = 255 * (0.5 + 0.5 * np.sin(x / 5.0) * np.cos(y / 7.0))
        blue = 90 + 70 * y / (height - 1)
        image = np.stack([red, green, blue], axis=-1)
        image += rng.normal(0, 6, image.shape)
        image[height // 4 : height // 2, width // 5 : width // 2] = (250, 20, 200)
        image[height // 2 : 3 * height // 4, width // 2 : 4 * width // 5] = (5, 240, 40)
        images[name] = np.clip(np.round(image), 0, 255).astype(np.uint8)
    flat = np.empty((64, 64, 3), dtype=np.uint8)
    flat[..., 0] = 77
    flat[..., 1] = rng.randint(100, 140, (64, 64))
    flat[..., 2] = np.clip(np.round(rng.normal(128, 3, (64, 64))), 0, 255)
    images["flat"] = flat
    return images


def build(cfg: dict):
    """mmaction2's `ImgAug.imgaug_builder` for a flat (child-less) config."""
    args = dict(cfg)
    op_type = args.pop("type")
    cls = getattr(iaa, op_type) if hasattr(iaa, op_type) else getattr(iaa.pillike, op_type)
    return cls(**args)


def op_configs(sign: int) -> dict[str, dict]:
    """`ImgAug.default_transforms` children with the random sign replaced by `sign`."""
    return {
        "shear_x": {"type": "ShearX", "shear": 17.19 * LEVEL * sign},
        "shear_y": {"type": "ShearY", "shear": 17.19 * LEVEL * sign},
        "translate_x": {"type": "TranslateX", "percent": 0.2 * LEVEL * sign},
        "translate_y": {"type": "TranslateY", "percent": 0.2 * LEVEL * sign},
        "rotate": {"type": "Rotate", "rotate": 30 * LEVEL * sign},
        "posterize": {"type": "Posterize", "nb_bits": max(1, int(4 * LEVEL))},
        "solarize": {"type": "Solarize", "threshold": 256 * LEVEL},
        "color": {"type": "EnhanceColor", "factor": 1.8 * LEVEL + 0.1},
        "contrast": {"type": "EnhanceContrast", "factor": 1.8 * LEVEL + 0.1},
        "brightness": {"type": "EnhanceBrightness", "factor": 1.8 * LEVEL + 0.1},
        "sharpness": {"type": "EnhanceSharpness", "factor": 1.8 * LEVEL + 0.1},
        "autocontrast": {"type": "Autocontrast", "cutoff": 0},
        "equalize": {"type": "Equalize"},
        "invert": {"type": "Invert", "p": 1.0},
    }


# Ops whose result depends on the image's histogram: the only ones also recorded on `flat`.
HISTOGRAM = ("contrast", "autocontrast", "equalize")
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
CUTOUT_CENTERS = ((0.5, 0.5), (0.03, 0.9), (0.97, 0.11), (0.31, 0.0))
PAIRS = (("rotate", "solarize"), ("shear_y", "equalize"), ("contrast", "invert"), ("translate_x", "sharpness"))


def main():
    images = make_images()
    arrays = {f"input/{name}": image for name, image in images.items()}
    for sign in (1, -1):
        configs = op_configs(sign)
        for op, cfg in configs.items():
            if sign == -1 and op not in GEOMETRIC:
                continue
            for name, image in images.items():
                if name == "flat" and op not in HISTOGRAM:
                    continue
                arrays[f"{op}/{sign:+d}/{name}"] = build(cfg).augment_image(image.copy())
    for index, (center_x, center_y) in enumerate(CUTOUT_CENTERS):
        # mmaction2's Cutout config with the uniform position replaced by a fixed one.
        cutout = iaa.Cutout(nb_iterations=1, size=0.2 * LEVEL, squared=True, position=(center_x, center_y))
        for name in ("large", "small"):
            image = images[name]
            arrays[f"cutout/{index}/{name}"] = cutout.augment_image(image.copy())
    configs = op_configs(1)
    for first, second in PAIRS:
        pair = iaa.SomeOf(n=2, children=[build(configs[first]), build(configs[second])])
        for name in ("large", "small"):
            image = images[name]
            arrays[f"pair/{first}+{second}/{name}"] = pair.augment_image(image.copy())
    np.savez_compressed(HERE / "recorded.npz", **arrays)
    meta = {
        "versions": {
            "python": sys.version.split()[0],
            "imgaug": imgaug.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "scikit-image": skimage.__version__,
            "Pillow": PIL.__version__,
        },
        "level": LEVEL,
        "ops": {op: cfg for op, cfg in op_configs(1).items()},
        "geometric_signs": [1, -1],
        "cutout": {"size": 0.2 * LEVEL, "squared": True, "centers_xy": CUTOUT_CENTERS},
        "pairs": PAIRS,
        "keys": sorted(arrays),
    }
    (HERE / "recorded.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(arrays)} arrays to {HERE / 'recorded.npz'}")


if __name__ == "__main__":
    main()
