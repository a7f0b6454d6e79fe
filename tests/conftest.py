import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# `../shared` sits beside the clone (CI and developer machines); ADATAD_SHARED_DIR overrides it.
SHARED_DIR = Path(os.environ.get("ADATAD_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


def opentad_fixture_dirs():
    """Every `opentad_*` folder under shared/fixtures plus those listed in ADATAD_PARITY_FIXTURES."""
    fixtures_root = SHARED_DIR / "fixtures"
    dirs = sorted(p for p in fixtures_root.glob("opentad_*") if p.is_dir()) if fixtures_root.is_dir() else []
    for entry in os.environ.get("ADATAD_PARITY_FIXTURES", "").split(os.pathsep):
        if entry.strip():
            path = Path(entry.strip()).resolve()
            if path not in dirs:
                dirs.append(path)
    return dirs


def pytest_generate_tests(metafunc):
    # Any test that takes `opentad_fixture` runs once per fixture folder, with the folder name as id.
    if "opentad_fixture" in metafunc.fixturenames:
        dirs = opentad_fixture_dirs()
        if not dirs:
            raise pytest.UsageError(f"no OpenTAD parity fixture folders found under {SHARED_DIR / 'fixtures'}")
        metafunc.parametrize("opentad_fixture", dirs, ids=[d.name for d in dirs])


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED_DIR.is_dir():
        raise FileNotFoundError(f"shared data folder not found at {SHARED_DIR}; set ADATAD_SHARED_DIR")
    return SHARED_DIR
