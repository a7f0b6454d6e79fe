"""Bad input that used to end in a raw traceback, a misleading message or a silently accepted value.

Each case is one row: the input, the fragment the one error line must contain, and the exit status.
"""

import json

import pytest

from adatad import evaluation

GROUND_TRUTH = {
    "database": {
        "v1": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label": "jump"}]},
        "v2": {"subset": "test", "annotations": [{"segment": [2.0, 5.0], "label": "run"}]},
    }
}
PREDICTIONS = {
    "results": {
        "v1": [{"segment": [1.0, 3.0], "label": "jump", "score": 0.9}],
        "v2": [{"segment": [2.0, 4.0], "label": "run", "score": 0.8}],
    }
}


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _with(data, change):
    data = json.loads(json.dumps(data))
    change(data)
    return data


EVAL_CASES = {
    "threshold count": ([], {}, ["--tiou-thresholds", "0.5:0.95:1e-7"], "more than 1000"),
    "threshold list": ([], {}, ["--tiou-thresholds", ",".join(str(i / 2000) for i in range(1001))], "at most 1000"),
    "proposal count overflow": (
        ["--task", "proposal"], {}, ["--max-avg-proposals", "1e308"], "at most the number of proposals"
    ),
    "deep JSON": ([], {"ground_truth": "[" * 100000 + "]" * 100000}, [], "nests JSON arrays or objects too deeply"),
    "score as text": (
        [], {"predictions": _with(PREDICTIONS, lambda d: d["results"]["v1"][0].update(score="0.9"))}, [],
        "video 'v1', detection 0 has score '0.9'",
    ),
    "score as boolean": (
        [], {"predictions": _with(PREDICTIONS, lambda d: d["results"]["v2"][0].update(score=True))}, [],
        "video 'v2', detection 0 has score True",
    ),
    "subset null": (
        [], {"ground_truth": _with(GROUND_TRUTH, lambda d: d["database"]["v2"].update(subset=None))}, [],
        "['v2']['subset'] must be a string",
    ),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_adatad_eval_refuses_with_one_line(case, tmp_path, capsys):
    task, files, flags, fragment = EVAL_CASES[case]
    ground_truth = _write(tmp_path / "gt.json", files.get("ground_truth", GROUND_TRUTH))
    predictions = _write(tmp_path / "pred.json", files.get("predictions", PREDICTIONS))
    argv = ["--ground-truth", ground_truth, "--predictions", predictions, "--subset", "test", *task, *flags]
    assert evaluation.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adatad-eval: error: ") and fragment in err[0], err


def test_adatad_eval_cases_are_valid_without_the_change(tmp_path, capsys):
    """The base files evaluate, so each refusal above comes from its one change."""
    argv = ["--ground-truth", _write(tmp_path / "gt.json", GROUND_TRUTH),
            "--predictions", _write(tmp_path / "pred.json", PREDICTIONS), "--subset", "test"]
    assert evaluation.main(argv) == 0
    assert evaluation.main(argv + ["--task", "proposal", "--max-avg-proposals", "2"]) == 0


MEMORY_CASES = {
    "negative frames": (["--num-frames", "-768"], "--num-frames must be a positive multiple"),
    "zero frames": (["--num-frames", "0"], "--num-frames must be a positive multiple"),
    "huge batch": (["--batch-size", str(10**12)], "--batch-size (videos per device) must be in [1, 1024]"),
}


@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_estimate_memory_refuses_values_out_of_range(case, capsys):
    from adatad.memory_estimation import main

    flags, fragment = MEMORY_CASES[case]
    with pytest.raises(SystemExit) as exit_status:
        main(["--preset", "synthetic-tiny", *flags])
    assert exit_status.value.code == 2
    assert fragment in capsys.readouterr().err


def test_opentad_config_reader_bounds_a_range_too_long_for_len(tmp_path):
    from adatad.opentad_config import OpenTADConfigError, load_opentad_config

    config = tmp_path / "config.py"
    config.write_text("x = len(range(10**30))\n")
    with pytest.raises(OpenTADConfigError, match=r"config\.py:1: `range\(10 \*\* 30\)` gives a value of 10{30} items"):
        load_opentad_config(config)
    config.write_text("x = list(range(10, 0, -3))\n")
    assert load_opentad_config(config)["x"] == [10, 7, 4, 1]
