"""`adatad.augmentation` against outputs of the original ops (imgaug 0.4.0 as mmaction2 1.1.0 builds them,
recorded in tests/data/imgaug_default/), plus the SomeOf draw, per-clip and per-pipeline behaviour and the
processor's `augmentation` setting."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from adatad import augmentation, presets
from adatad.augmentation import OPS, SIGNED_OPS, ImgAugDefault, ImgAugDraw, TorchvisionRandAugment, apply_op
from adatad.dataset_transforms import TemporalDetectionTransform
from adatad.processing_adatad import AdaTADVideoProcessor

DATA = Path(__file__).resolve().parent / "data" / "imgaug_default"
RECORDED = np.load(DATA / "recorded.npz")
META = json.loads((DATA / "recorded.json").read_text())
OUTPUT_KEYS = [key for key in META["keys"] if not key.startswith("input/")]

# Every op reproduces imgaug exactly on the recordings, geometric ops included: the warp follows OpenCV's
# fixed-point bilinear interpolation (1/32 pixel grid, 15-bit weights), so image edges match too.
TOLERANCE = 0


def as_clip(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W)."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def as_image(clip: torch.Tensor) -> np.ndarray:
    return clip[0].permute(1, 2, 0).numpy()


def reproduce(key: str) -> np.ndarray:
    """Our output for a recorded key (see tests/data/imgaug_default/README.md for the key layout)."""
    kind, variant, image_name = key.split("/")
    clip = as_clip(RECORDED[f"input/{image_name}"])
    if kind == "cutout":
        center = META["cutout"]["centers_xy"][int(variant)]
        return as_image(apply_op(clip, "cutout", cutout_center=center))
    if kind == "pair":
        draw = ImgAugDraw(ops=tuple(variant.split("+")), cutout_center=(0.5, 0.5))
        return as_image(ImgAugDefault(signs=dict.fromkeys(SIGNED_OPS, 1)).apply(clip, draw))
    return as_image(apply_op(clip, kind, sign=int(variant)))


def test_recording_covers_every_op_both_signs_and_both_equalize_paths():
    recorded_ops = {key.split("/")[0] for key in OUTPUT_KEYS}
    assert recorded_ops == set(OPS) | {"pair"}
    for op in SIGNED_OPS:
        assert f"{op}/-1/large" in OUTPUT_KEYS and f"{op}/+1/large" in OUTPUT_KEYS
    # The small image takes imgaug's PIL equalize, the large one its numpy equalize (fewer / more than 64 * 64
    # values); the inputs are chosen so that the two paths give different results.
    assert RECORDED["input/small"].size < 64 * 64 <= RECORDED["input/large"].size
    assert (DATA / "recorded.npz").stat().st_size < 1_000_000


@pytest.mark.parametrize("key", OUTPUT_KEYS)
def test_op_matches_imgaug_recording(key):
    expected = RECORDED[key]
    ours = reproduce(key)
    assert ours.shape == expected.shape and ours.dtype == np.uint8
    difference = np.abs(ours.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= TOLERANCE, (
        f"{key}: max abs difference {difference.max()}, {np.count_nonzero(difference)} values differ"
    )


@pytest.mark.parametrize("op", SIGNED_OPS)
def test_geometric_sign_matters(op):
    # Guards the comparison above: the two signs give different recorded images, so a wrong sign would fail.
    assert not np.array_equal(RECORDED[f"{op}/+1/large"], RECORDED[f"{op}/-1/large"])


def test_equalize_paths_differ_on_the_recorded_images(monkeypatch):
    small, large = as_clip(RECORDED["input/small"]), as_clip(RECORDED["input/large"])
    monkeypatch.setattr(augmentation, "_EQUALIZE_PIL_BELOW", 0)
    assert not np.array_equal(as_image(augmentation.equalize(small)), RECORDED["equalize/+1/small"])
    monkeypatch.setattr(augmentation, "_EQUALIZE_PIL_BELOW", 10**9)
    assert not np.array_equal(as_image(augmentation.equalize(large)), RECORDED["equalize/+1/large"])


def pillow_smooth_float32(image: np.ndarray) -> np.ndarray:
    """Pillow's ImagingFilter3x3 for SMOOTH, operation by operation in float32 (rows y+1, y, y-1)."""
    one, five = np.float32(1) / np.float32(13), np.float32(5) / np.float32(13)
    source = image.astype(np.float32)
    output = image.copy()
    for y in range(1, image.shape[0] - 1):
        for x in range(1, image.shape[1] - 1):
            total = np.float32(0.5)
            for dy, middle in ((1, one), (0, five), (-1, one)):
                row = source[y + dy]
                total = total + (row[x - 1] * one + row[x] * middle + row[x + 1] * one)
            output[y, x] = np.clip(total, 0, 255).astype(np.uint8)
    return output


def test_integer_smooth_equals_pillows_float32_sums():
    # The recordings cover sharpness on the test images; this covers the integer form on many more sums,
    # including saturated and flat neighbourhoods.
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (40, 50), generator=generator, dtype=torch.uint8),
              torch.randint(0, 2, (40, 50), generator=generator, dtype=torch.uint8) * 255,
              torch.randint(250, 256, (40, 50), generator=generator, dtype=torch.uint8)]
    for image in images:
        ours = augmentation.smooth_filter(image[None, None].expand(1, 3, -1, -1).contiguous())[0, 0].numpy()
        np.testing.assert_array_equal(ours, pillow_smooth_float32(image.numpy()))


def test_ops_accept_channels_last_and_chunked_clips(monkeypatch):
    image = RECORDED["input/large"]
    clip = torch.from_numpy(np.stack([image, image[::-1].copy(), image[:, ::-1].copy()])).permute(0, 3, 1, 2)
    strided = clip.contiguous(memory_format=torch.channels_last)
    expected = {op: apply_op(clip.contiguous(), op, cutout_center=(0.2, 0.7)) for op in OPS}
    for op in OPS:
        torch.testing.assert_close(apply_op(strided, op, cutout_center=(0.2, 0.7)), expected[op])
    # Long clips run in chunks of frames; the result does not depend on the chunking.
    monkeypatch.setattr(augmentation, "_FRAME_CHUNK", 2)
    for op in OPS:
        torch.testing.assert_close(apply_op(clip, op, cutout_center=(0.2, 0.7)), expected[op])


def test_magnitudes_are_mmaction2_default_level_9_of_10():
    assert augmentation.SHEAR_DEGREES == pytest.approx(15.471)
    assert augmentation.TRANSLATE_FRACTION == pytest.approx(0.18)
    assert augmentation.ROTATE_DEGREES == pytest.approx(27.0)
    assert augmentation.POSTERIZE_BITS == 3
    assert int(augmentation.SOLARIZE_THRESHOLD) == 230
    assert augmentation.ENHANCE_FACTOR == pytest.approx(1.72)
    assert augmentation.CUTOUT_SIZE == pytest.approx(0.18) and augmentation.CUTOUT_FILL == 128
    assert len(OPS) == 15 and augmentation.NUM_OPS == 2


def test_some_of_picks_two_distinct_ops_in_list_order_uniformly():
    pipeline = ImgAugDefault.create(torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    draws = [pipeline.draw(generator) for _ in range(3000)]
    counts = Counter(op for draw in draws for op in draw.ops)
    for draw in draws:
        assert len(draw.ops) == 2 and len(set(draw.ops)) == 2
        assert OPS.index(draw.ops[0]) < OPS.index(draw.ops[1])
        assert all(0 <= value < 1 for value in draw.cutout_center)
    # Each op is in a uniform 2-subset with probability 2/15: 400 of 3000 expected, sd about 18.6.
    assert set(counts) == set(OPS)
    assert all(320 < count < 480 for count in counts.values()), counts
    assert len({draw.ops for draw in draws}) == 15 * 14 // 2


def test_one_draw_per_clip_applies_to_every_frame():
    image = RECORDED["input/large"]
    frames = torch.from_numpy(np.stack([image, image[::-1].copy()])).permute(0, 3, 1, 2)
    pipeline = ImgAugDefault(signs=dict.fromkeys(SIGNED_OPS, -1))
    pairs = [("shear_x", "cutout"), ("rotate", "equalize"), ("contrast", "sharpness"), ("translate_y", "autocontrast")]
    for first, second in pairs:
        draw = ImgAugDraw(ops=(first, second), cutout_center=(0.3, 0.6))
        clip = pipeline.apply(frames, draw)
        for index in range(len(frames)):
            torch.testing.assert_close(clip[index : index + 1], pipeline.apply(frames[index : index + 1], draw))
    # Calling the pipeline draws once from the clip's generator and applies that draw to all frames.
    called = pipeline(frames, torch.Generator().manual_seed(5))
    torch.testing.assert_close(called, pipeline.apply(frames, pipeline.draw(torch.Generator().manual_seed(5))))
    identical = frames[:1].expand(4, -1, -1, -1)
    for seed in range(10):
        output = pipeline(identical, torch.Generator().manual_seed(seed))
        assert (output.int() - output[:1].int()).abs().max() == 0


def test_pipeline_signs_are_applied_and_fixed_per_pipeline():
    image = as_clip(RECORDED["input/large"])
    negative = ImgAugDefault(signs=dict.fromkeys(SIGNED_OPS, -1))
    for op in SIGNED_OPS:
        draw = ImgAugDraw(ops=(op,), cutout_center=(0.5, 0.5))
        np.testing.assert_array_equal(as_image(negative.apply(image, draw)), RECORDED[f"{op}/-1/large"])
    # Signs come from the generator that builds the pipeline, each +1 or -1.
    signs = [ImgAugDefault.create(torch.Generator().manual_seed(seed)).signs for seed in range(40)]
    assert signs[0] == ImgAugDefault.create(torch.Generator().manual_seed(0)).signs
    for op in SIGNED_OPS:
        assert {entry[op] for entry in signs} == {-1, 1}
    with pytest.raises(ValueError, match="signs"):
        ImgAugDefault(signs={"rotate": 1})


def processor(**kwargs) -> AdaTADVideoProcessor:
    settings = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
                "train_size": {"shortest_edge": 36}}
    settings.update(kwargs)
    return AdaTADVideoProcessor(**settings)


def test_processor_setting_names_the_augmentation(tmp_path):
    assert AdaTADVideoProcessor().augmentation == "imgaug_default"
    assert isinstance(processor().build_augmentation(torch.Generator().manual_seed(0)), ImgAugDefault)
    randaugment = processor(augmentation="randaugment", rand_augment_magnitude=5).build_augmentation()
    assert randaugment == TorchvisionRandAugment(2, 5)
    assert processor(augmentation=None).build_augmentation() is None
    with pytest.raises(ValueError, match="augmentation"):
        processor(augmentation="imgaug")
    with pytest.raises(ValueError, match="replaced by `augmentation`"):
        processor(do_rand_augment=True)
    for value in (None, "randaugment", "imgaug_default"):
        processor(augmentation=value).save_pretrained(tmp_path / str(value))
        saved = json.loads((tmp_path / str(value) / "video_preprocessor_config.json").read_text())
        assert saved["augmentation"] == value
        assert AdaTADVideoProcessor.from_pretrained(tmp_path / str(value)).augmentation == value


def test_transform_frames_applies_the_given_augmentation_between_flip_and_jitter():
    frames = torch.from_numpy(np.stack([RECORDED["input/large"]] * 3)).permute(0, 3, 1, 2)
    plain = processor(augmentation=None, do_color_jitter=False, do_random_resized_crop=False, do_flip=False)
    augmented = processor(do_color_jitter=False, do_random_resized_crop=False, do_flip=False)
    pipeline = ImgAugDefault(signs=dict.fromkeys(SIGNED_OPS, 1))
    seen = []

    def invert_only(clip, generator):
        seen.append(clip.shape)
        return pipeline.apply(clip, ImgAugDraw(ops=("invert",), cutout_center=(0.5, 0.5)))

    generator = torch.Generator().manual_seed(0)
    output = augmented.transform_frames(frames, train=True, generator=generator, augmentation=invert_only)
    reference = plain.transform_frames(255 - frames, train=True, generator=torch.Generator().manual_seed(0))
    # Resizing to 32x32 happens before the augmentation: the inverted resize equals the resized inversion
    # up to rounding of the bilinear resize.
    assert seen == [(3, 3, 32, 32)]
    assert (output - reference).abs().max() < 0.05
    # Seeded: the default (built from the clip's generator) gives the same clip twice.
    first = augmented.transform_frames(frames, train=True, generator=torch.Generator().manual_seed(1))
    again = augmented.transform_frames(frames, train=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, again)
    unaugmented = plain.transform_frames(frames, train=True, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(first, unaugmented)


def test_training_transform_builds_one_augmentation_per_pipeline_from_its_seed():
    video_processor = processor()
    first = TemporalDetectionTransform(video_processor, mode="train", seed=3)
    second = TemporalDetectionTransform(video_processor, mode="train", seed=3)
    assert isinstance(first.augmentation, ImgAugDefault) and first.augmentation == second.augmentation
    first.set_epoch(4)
    assert first.augmentation == second.augmentation
    signs = {
        tuple(TemporalDetectionTransform(video_processor, mode="train", seed=seed).augmentation.signs.values())
        for seed in range(20)
    }
    assert len(signs) > 1
    assert TemporalDetectionTransform(video_processor, mode="eval", seed=3).augmentation is None
    assert TemporalDetectionTransform(processor(augmentation=None), mode="train", seed=3).augmentation is None


def test_presets_name_opentad_augmentation():
    for name in presets.list_presets():
        preset = presets.load_preset(name, validate=False)
        # OpenTAD's adapter, side-adapter and full fine-tuning configs all run ImgAug("default"); the frozen
        # baselines only center-crop; the synthetic presets train without augmentation.
        expected = None if name.endswith("_frozen") or name.startswith("synthetic") else "imgaug_default"
        assert preset["processor"]["augmentation"] == expected, name
        assert presets.processor_kwargs(preset)["augmentation"] == expected
    preset = presets.load_preset("synthetic-tiny")
    with pytest.raises(presets.PresetError, match="processor.augmentation"):
        overridden = presets.apply_overrides(preset, ["processor.augmentation=imgaug"])
        presets.validate_preset(overridden, check_model_config=False)


def test_training_without_random_resized_crop_center_crops_as_opentad_frozen_pipelines():
    # OpenTAD's frozen-backbone configs train on Resize(short side 160) -> CenterCrop(160). A frame already at
    # the training short side is only cropped: the middle columns, untouched, never the whole frame squashed.
    columns = torch.arange(64, dtype=torch.uint8).expand(2, 3, 40, 64)
    center = processor(train_size={"shortest_edge": 40}, do_random_resized_crop=False, do_flip=False,
                       augmentation=None, do_color_jitter=False, do_normalize=False, do_rescale=False)
    output = center.transform_frames(columns.clone(), train=True, generator=torch.Generator().manual_seed(0))
    assert output.shape == (2, 3, 32, 32)
    assert output[0, 0, 0].tolist() == list(range(16, 48))  # (64 - 32) // 2 = 16: mmaction2 CenterCrop offsets
    assert output[0, 0, :, 0].tolist() == [16.0] * 32
    with pytest.raises(ValueError, match="train_size"):
        processor(train_size={"shortest_edge": 20}, do_random_resized_crop=False)


def test_run_seed_gives_the_signs_mmaction2_draws_in_an_opentad_run_with_that_seed():
    import random

    for seed in (0, 42, 7):
        # OpenTAD's set_seed, then mmaction2's default_transforms: random.choice([-1, 1]) for ShearX, ShearY,
        # TranslateX, TranslateY, Rotate, in that order (the first draws from Python's global generator).
        random.seed(seed)
        expected = dict(zip(("shear_x", "shear_y", "translate_x", "translate_y", "rotate"),
                            (random.choice([-1, 1]) for _ in range(5))))
        assert ImgAugDefault.for_seed(seed).signs == expected
        assert TemporalDetectionTransform(processor(), mode="train", seed=seed).augmentation.signs == expected


def test_color_jitter_op_order_does_not_change_the_clip(monkeypatch):
    # mmaction2 draws ColorJitter's op order once per pipeline, here once per clip. Here the four ops are folded
    # into one affine map without clipping in between, and brightness, contrast, saturation and the luma-preserving
    # hue rotation commute, so every one of the 24 orders gives the same clip: the different draw has no effect.
    import itertools

    from adatad.processing_adatad import color_jitter

    clip = torch.from_numpy(np.stack([RECORDED["input/large"]] * 2)).permute(0, 3, 1, 2)
    for seed in range(5):
        outputs = []
        for order in itertools.permutations(range(4)):
            monkeypatch.setattr(torch, "randperm", lambda n, generator=None, order=order: torch.tensor(order))
            outputs.append(color_jitter(clip, 0.5, 0.5, 0.5, 0.1, torch.Generator().manual_seed(seed)))
        monkeypatch.undo()
        assert not torch.equal(outputs[0], clip)
        for output in outputs[1:]:
            # Within one level: truncation to whole levels after float rounding.
            assert (output.short() - outputs[0].short()).abs().max() <= 1
