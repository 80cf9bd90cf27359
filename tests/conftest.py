from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_funscripts() -> list[Path]:
    files = sorted((SHARED / "funscripts").glob("*.funscript"))
    if not files:
        pytest.skip("../shared/data/funscripts not present")
    return files
