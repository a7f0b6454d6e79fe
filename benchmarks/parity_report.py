"""Max absolute difference between AdaTAD and OpenTAD per tensor group, for every parity fixture folder.

    python benchmarks/parity_report.py [FIXTURE_DIR ...]

Without arguments it reads every `opentad_*` folder under tests/fixtures (and ADATAD_PARITY_FIXTURES), exactly as
tests/test_opentad_parity.py does, and prints a Markdown table.
"""

import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from conftest import opentad_fixture_dirs  # noqa: E402
from test_opentad_parity import Fixture, convert_opentad_state_dict, disable_stochastic_layers, record_backbone  # noqa: E402


def max_differences(folder: Path) -> dict:
    fixture = Fixture(folder)
    groups = defaultdict(float)

    def note(group, actual, expected):
        groups[group] = max(groups[group], (actual.float() - expected.float()).abs().max().item())

    model = fixture.build_model().eval()
    records = {}
    record_backbone(model, records)
    with torch.no_grad():
        outputs = model(fixture.pixel_values(), masks=fixture.inputs["masks"], labels=fixture.labels())
    for name, value in records.items():
        if name in fixture.outputs:
            note("backbone: " + name.split(".")[1], value, fixture.outputs[name])
    note("backbone: features", outputs.backbone_features, fixture.outputs["backbone.features"])
    for level, expected in enumerate(fixture.indexed("head.cls_logits")):
        note("head: logits", outputs.logits[level].transpose(1, 2), expected)
    for level, expected in enumerate(fixture.indexed("head.reg_offsets")):
        note("head: offsets", outputs.pred_offsets[level].transpose(1, 2), expected)
    for part in ("cls_loss", "reg_loss"):
        note("loss: eval", outputs.loss_dict[part], fixture.outputs[f"loss.eval.{part}"])

    model = fixture.build_model().train()
    disable_stochastic_layers(model)
    outputs = model(fixture.pixel_values(), masks=fixture.inputs["masks"], labels=fixture.labels())
    for part in ("cls_loss", "reg_loss"):
        note("loss: train", outputs.loss_dict[part], fixture.outputs[f"loss.train.{part}"])
    outputs.loss.backward()
    expected_grads, _ = convert_opentad_state_dict({k[len("grad.") :]: v for k, v in fixture.grads.items()})
    for name, parameter in model.named_parameters():
        if name in expected_grads:
            group = "grad: backbone adapters" if name.startswith("model.") else "grad: detector"
            note(group, parameter.grad, expected_grads[name])
    return dict(groups)


def main(argv=None):
    folders = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or opentad_fixture_dirs()
    results = {folder.name: max_differences(folder) for folder in folders}
    groups = sorted({group for result in results.values() for group in result})
    print("| tensor group | " + " | ".join(results) + " |")
    print("| --- |" + " --- |" * len(results))
    for group in groups:
        cells = [f"{results[name][group]:.1e}" if group in results[name] else "n/a" for name in results]
        print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
