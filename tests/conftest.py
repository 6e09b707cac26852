import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIGS = ROOT / "configs"

needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(),
                                  reason="../shared (real datasets and weights) is not present")
