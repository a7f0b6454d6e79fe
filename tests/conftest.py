import os
from pathlib import Path

import pytest

# Everything the tests read lives in the repository: tests/fixtures (OpenTAD parity and evaluation references),
# tests/data (real annotation files and clips) and tests/seed; tests/SOURCES.md gives each file's origin and licence.
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def opentad_fixture_dirs():
    """Every `opentad_*` folder under tests/fixtures plus those listed in ADATAD_PARITY_FIXTURES."""
    dirs = sorted(p for p in (TESTS_DIR / "fixtures").glob("opentad_*") if p.is_dir())
    for entry in os.environ.get("ADATAD_PARITY_FIXTURES", "").split(os.pathsep):
        if entry.strip():
            path = Path(entry.strip()).resolve()
            if not path.is_dir():
                raise pytest.UsageError(f"ADATAD_PARITY_FIXTURES names '{path}', which is not a folder")
            if path not in dirs:
                dirs.append(path)
    return dirs


def pytest_generate_tests(metafunc):
    # Any test that takes `opentad_fixture` runs once per fixture folder, with the folder name as id.
    if "opentad_fixture" in metafunc.fixturenames:
        dirs = opentad_fixture_dirs()
        if not dirs:
            raise pytest.UsageError(f"no OpenTAD parity fixture folders found under {TESTS_DIR / 'fixtures'}")
        metafunc.parametrize("opentad_fixture", dirs, ids=[d.name for d in dirs])


@pytest.fixture(scope="session")
def tests_dir():
    """The repository's tests/ folder, holding fixtures/, data/ and seed/."""
    return TESTS_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread: on a machine shared with other jobs, OpenMP workers that spin-wait
    for descheduled peers make them several times slower (see benchmarks/bench_infer.py); results do not depend
    on it. Modules use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
