"""The suite finds what it reads inside the repository; ADATAD_PARITY_FIXTURES adds parity folders."""

import os

import pytest

from conftest import TESTS_DIR, opentad_fixture_dirs


def test_tests_dir_is_the_tests_folder(tests_dir):
    assert tests_dir == TESTS_DIR
    assert (tests_dir / "fixtures" / "opentad_public" / "config.json").is_file()
    assert (tests_dir / "data" / "videos" / "demo.mp4").is_file()


def test_parity_folders_are_the_repository_ones_plus_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ADATAD_PARITY_FIXTURES", raising=False)
    assert [folder.name for folder in opentad_fixture_dirs()] == ["opentad_public", "opentad_side_public"]
    extra = tmp_path / "opentad_extra"
    extra.mkdir()
    # a folder already found under tests/fixtures is not listed twice
    listed = [str(extra), str(TESTS_DIR / "fixtures" / "opentad_public")]
    monkeypatch.setenv("ADATAD_PARITY_FIXTURES", os.pathsep.join(listed))
    names = [folder.name for folder in opentad_fixture_dirs()]
    assert names == ["opentad_public", "opentad_side_public", "opentad_extra"]
    monkeypatch.setenv("ADATAD_PARITY_FIXTURES", str(tmp_path / "missing"))
    with pytest.raises(pytest.UsageError, match="missing"):
        opentad_fixture_dirs()
