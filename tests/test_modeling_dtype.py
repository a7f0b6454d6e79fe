"""bf16/fp16 loading end to end (model, pipeline, `adatad-detect`) and the attention implementations of the ViT."""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, pipeline

from adatad import AdaTADForTemporalDetection
from adatad.detect import main as detect_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_modeling_adatad import AdaTADModelTester  # noqa: E402
from test_pipeline import DURATIONS, assert_valid_detections, tiny_config, tiny_processor  # noqa: E402

# Tolerances against the fp32 model on the same weights and input: bf16 keeps 8 bits of mantissa (relative step
# 2**-8 = 0.4%), fp16 11 bits (2**-11 = 0.05%); the tiny model's logits are O(1), features O(1).
TOLERANCES = {torch.bfloat16: dict(atol=0.1, rtol=0.05), torch.float16: dict(atol=0.02, rtol=0.01)}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    tester = AdaTADModelTester()
    folder = tmp_path_factory.mktemp("adatad_dtype")
    model = AdaTADForTemporalDetection(tester.get_config()).eval()
    model.save_pretrained(folder)
    return folder, model, tester


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_from_pretrained_in_half_precision_matches_fp32(saved_model, dtype):
    folder, reference, tester = saved_model
    model = AutoModel.from_pretrained(folder, dtype=dtype, trust_remote_code=True).eval()
    assert {parameter.dtype for parameter in model.parameters()} == {dtype}
    pixel_values, masks, labels = tester.prepare_inputs()
    with torch.no_grad():
        expected = reference(pixel_values, masks=masks)
        output = model(pixel_values.to(dtype), masks=masks)
    assert output.backbone_features.dtype == dtype and output.logits[0].dtype == dtype
    torch.testing.assert_close(output.backbone_features.float(), expected.backbone_features, **TOLERANCES[dtype])
    for logits, expected_logits in zip(output.logits, expected.logits):
        torch.testing.assert_close(logits.float(), expected_logits, **TOLERANCES[dtype])
    for offsets, expected_offsets in zip(output.pred_offsets, expected.pred_offsets):
        torch.testing.assert_close(offsets.float(), expected_offsets, **TOLERANCES[dtype])
    # Training runs too: a finite loss and gradients in the model's dtype.
    model.train()
    loss = model(pixel_values.to(dtype), masks=masks, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    gradient = model.model.backbone.layers[0].adapter.down_proj.weight.grad
    assert gradient.dtype == dtype and torch.isfinite(gradient).all()


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_adatad_pipeline")
    AdaTADForTemporalDetection(tiny_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def test_pipeline_loaded_in_bf16_gives_the_fp32_detections(pipeline_folder, tests_dir):
    torch.set_num_threads(1)
    video = str(tests_dir / "data" / "videos" / "test.avi")
    kwargs = dict(model=str(pipeline_folder), trust_remote_code=True, device="cpu")
    reference = pipeline("temporal-action-detection", **kwargs)(video, threshold=0.0)
    detector = pipeline("temporal-action-detection", dtype=torch.bfloat16, **kwargs)
    assert detector.model.dtype == torch.bfloat16
    detections = detector(video, threshold=0.0)
    assert_valid_detections(detections, DURATIONS["test.avi"])
    # The strongest detections agree: same labels, scores within bf16 rounding, segments within a feature step.
    top, top_reference = detections[0], reference[0]
    assert top["label"] == top_reference["label"]
    assert top["score"] == pytest.approx(top_reference["score"], abs=0.02)
    assert top["segment"] == pytest.approx(top_reference["segment"], abs=0.5)


def test_cli_dtype_bf16_writes_detections(pipeline_folder, tests_dir, tmp_path):
    output = tmp_path / "detections.json"
    video = tests_dir / "data" / "videos" / "test.avi"
    status = detect_main([
        str(video), "--model", str(pipeline_folder), "--dtype", "bf16", "--threshold", "0.0", "--output", str(output),
        "--device", "cpu", "--threads", "1", "--no-progress",
    ])
    assert status == 0
    assert_valid_detections(json.loads(output.read_text())["results"]["test"], DURATIONS["test.avi"])


@pytest.mark.parametrize("implementation", ["eager", "sdpa", "flex_attention"])
def test_attention_implementations_agree(implementation):
    tester = AdaTADModelTester()
    torch.manual_seed(0)
    reference = AdaTADForTemporalDetection(tester.get_config()).eval()
    model = AdaTADForTemporalDetection(tester.get_config(attn_implementation=implementation)).eval()
    model.load_state_dict(reference.state_dict())
    assert model.config.backbone_config._attn_implementation == implementation
    pixel_values, masks, _ = tester.prepare_inputs()
    with torch.no_grad():
        expected = reference(pixel_values, masks=masks).backbone_features
        features = model(pixel_values, masks=masks).backbone_features
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)
