import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def project_dir(tmp_path):
    return tmp_path / "proj"


@pytest.fixture(scope="session")
def python():
    return sys.executable
