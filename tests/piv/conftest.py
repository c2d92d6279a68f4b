"""Fixtures for the PIV card-edge tests: a store with a card whose PIV slots are filled (piv_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from piv_support import PivHome, make_piv_home


@pytest.fixture
def piv_home(tmp_path: Path) -> PivHome:
    return make_piv_home(tmp_path / "vsc-home")
