import os
import stat

import pytest

from adatad.atomic_files import write_text_atomically


def test_writes_the_text_verbatim_with_the_permissions_of_a_plain_open(tmp_path):
    path = write_text_atomically(tmp_path / "out.csv", "a,b\r\nc,d\r\n")
    assert path.read_bytes() == b"a,b\r\nc,d\r\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("previous")
    with pytest.raises(TypeError):
        write_text_atomically(path, 12345)  # not text: fails while writing the temporary file
    assert path.read_text() == "previous"

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, "new")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomically(tmp_path / "missing" / "out.json", "{}")
    assert not (tmp_path / "missing").exists()


def test_check_output_path_refuses_an_input_in_any_spelling_and_a_folder(tmp_path):
    from adatad.atomic_files import OutputPathError, check_output_path

    source = tmp_path / "gt.json"
    source.write_text("{}")
    (tmp_path / "hard.json").hardlink_to(source)
    for spelling in (source, tmp_path / "sub" / ".." / "gt.json", tmp_path / "hard.json"):
        with pytest.raises(OutputPathError, match=r"--output '.*' is the ground-truth file"):
            check_output_path("--output", spelling, [("ground-truth", source)])
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_path("--output", tmp_path, [])
    target = check_output_path("--output", tmp_path / "new" / "metrics.json", [("ground-truth", source)])
    assert target.parent.is_dir() and not target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == []
